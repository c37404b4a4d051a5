//! How a resource kind is declared: its fields (type, required, default, whether a change is made
//! in place or forces replacement) and outputs. Validation, `schema` and `docs` are all derived
//! from these declarations; the engine never names a kind.

use crate::diag::Diags;
use crate::error::Transient;
use crate::provider::Ops;
use crate::stack::{Resource, Stack};
use serde_json::{json, Value};

/// The type of a field, as written in a stack file.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    String,
    Bool,
    /// An integer within bounds (inclusive).
    Int {
        min: i64,
        max: i64,
    },
    /// An IPv4 network, `10.0.0.0/16`, without host bits.
    Cidr,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A reference `kind.name` to a resource of one of these kinds, which must exist first.
    Ref(&'static [&'static str]),
    /// A reference that does not order creation (a security-group rule naming another group,
    /// or its own: the rule is applied once both exist, so groups may refer to each other).
    Peer(&'static [&'static str]),
    List(&'static FieldType),
    /// A table with these fields (for example a security-group rule).
    Table(&'static [Field]),
    /// A table of string to string (tags).
    StringMap,
    /// The path of a JSON file, relative to the stack file, read when the stack is loaded: the
    /// value is the file's content (a table layout, a policy document).
    JsonFile,
    /// The path of a text file, relative to the stack file, read when the stack is loaded: the
    /// value is the file's text (a host's user data).
    TextFile,
}

/// What changing a field does to the live resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    InPlace,
    /// The resource is destroyed and created again.
    Replace,
    /// Not a property of the resource but how the tool acts on it (how long to wait for a
    /// deployment): passed to the kind, never read back, never a difference.
    Setting,
}

/// How a field bears on who or what may reach or do what: the plan lists its changes in its
/// security section, and a change that broadens access makes `apply` ask again (`--yes` is not
/// enough; `--approve-broadening` is). Declared on the field, so the plan names no kind or field.
#[derive(Debug, Clone, Copy)]
pub enum Security {
    /// Network rules (a security group's `ingress`, `egress`): each rule added broadens; an
    /// `inbound` one from every address (0.0.0.0/0, ::/0) is also public.
    Rules { inbound: bool },
    /// Policy statements (effect, actions, resources, conditions): an Allow added or a Deny
    /// removed broadens.
    Statements,
    /// A list of who or what is granted something (trusted services, attached policies, a
    /// bucket's readers, sign-in callback URLs): an item added broadens.
    Grants,
    /// A protection's setting (a WAF's rules and default action, a second factor, HTTPS only):
    /// `weaker(before, after)` says when a change lowers it (`null` for absent or deleted).
    Guard(fn(&Value, &Value) -> bool),
    /// A setting that makes the resource reachable from the internet when `public(value)`.
    Exposure(fn(&Value) -> bool),
    /// A reference to what exposes this resource (a listener's load balancer): public when that
    /// resource is, by its own [`Security::Exposure`] fields.
    ExposedBy,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    /// The default, as TOML, for docs and schema (`None`: no default).
    pub default: Option<&'static str>,
    pub update: Update,
    pub doc: &'static str,
    /// A list whose order means something (rule priorities): compared item by item, where
    /// other lists are compared as sets.
    pub ordered: bool,
    /// Not written in a stack file: the kind derives it from the other fields when a command
    /// starts ([`Ops::derive`]: an image's digest, from building the image). Readable before
    /// apply as `${kind.name.field}`, so what refers to it shows the new value in a plan.
    pub derived: bool,
    /// Whether and how a change to it is a security change ([`Security`]).
    pub security: Option<Security>,
}

impl Field {
    /// A required field.
    pub const fn required(name: &'static str, ty: FieldType, update: Update, doc: &'static str) -> Self {
        Self { name, ty, required: true, default: None, update, doc, ordered: false, derived: false, security: None }
    }

    /// An optional field, with its default when it has one.
    pub const fn optional(
        name: &'static str,
        ty: FieldType,
        default: Option<&'static str>,
        update: Update,
        doc: &'static str,
    ) -> Self {
        Self { name, ty, required: false, default, update, doc, ordered: false, derived: false, security: None }
    }

    /// A field the kind derives ([`Field::derived`]).
    pub const fn derived(name: &'static str, ty: FieldType, update: Update, doc: &'static str) -> Self {
        Self { name, ty, required: false, default: None, update, doc, ordered: false, derived: true, security: None }
    }

    /// The same field, a list whose order is compared.
    pub const fn ordered(self) -> Self {
        Self { ordered: true, ..self }
    }

    /// The same field, its changes listed as security changes ([`Security`]).
    pub const fn security(self, how: Security) -> Self {
        Self { security: Some(how), ..self }
    }
}

/// [`Security::Guard`]: a protection removed (a web ACL detached, its association deleted).
pub fn removed(before: &Value, after: &Value) -> bool {
    !before.is_null() && after.is_null()
}

/// [`Security::Guard`]: a switch that was on and is not (HTTPS only).
pub fn turned_off(before: &Value, after: &Value) -> bool {
    before == true && after != true
}

/// [`Security::Guard`]: an item of a list of protections dropped (a WAF's managed rule groups).
pub fn items_dropped(before: &Value, after: &Value) -> bool {
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let after = items(after);
    items(before).iter().any(|x| !after.contains(x))
}

/// The AWS regions a resource may live in (`region`).
pub const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "sa-east-1",
];

/// The `tags` field of every kind AWS tags: the resource's tags besides the stack's own.
pub const TAGS: Field =
    Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own.");

/// Fields every kind has besides its own, declared once here.
pub static COMMON: &[Field] = &[
    Field::optional(
        "region",
        FieldType::Enum(REGIONS),
        None,
        Update::Replace,
        "Region the resource lives in, when not the stack's (a CloudFront-scope WAF or an edge function in us-east-1).",
    ),
    Field::optional(
        "enabled",
        FieldType::Bool,
        None,
        Update::InPlace,
        "false leaves the resource out of the stack (a switch, usually \"${var.NAME}\"): a reference to it is an error, its outputs inside strings are empty text.",
    ),
];

/// `v` (in the declared shape) without the [`COMMON`] fields: what a kind is handed, the common
/// fields being the engine's (where a resource lives is its context's region).
pub fn own(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        for f in COMMON {
            m.remove(f.name);
        }
    }
    v
}

/// A resource kind: the one declaration everything else reads.
pub struct Kind {
    /// The TOML table name: `[vpc.main]`.
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Field],
    /// Attributes known only once the resource exists (`id`, `arn`, ...).
    pub outputs: &'static [(&'static str, &'static str)],
    /// Checks that need more than one field or resource (a subnet inside its VPC, ...).
    pub check: fn(&Resource, &Stack, &mut Diags),
    /// Brings desired and live attributes to one canonical form before they are compared
    /// (a port range written as one port, a protocol's implied ports, ...).
    pub normalize: fn(&mut Value),
    /// What the resource consumes in a month, priced from the snapshot ([`crate::cost`]):
    /// [`crate::cost::free`] for what AWS does not charge.
    pub cost: fn(&crate::cost::model::CostCx<'_>) -> Vec<crate::cost::model::Part>,
    /// The `[usage]` values `cost` reads.
    pub usage: &'static [crate::cost::model::UsageKey],
    /// The AWS side: discover, create, update, delete.
    pub ops: &'static dyn Ops,
    /// Kinds whose resources in the stack this kind's resources are made after, and deleted
    /// before, though no field refers to them: orders AWS needs that no reference shows (an
    /// internet-facing load balancer needs its VPC's gateway attached).
    pub after: &'static [&'static str],
    /// What AWS answers this kind while something settles ([`Transient`]): retried for a
    /// while instead of failing the step.
    pub transient: &'static [Transient],
    /// Whether the resource's name is global across AWS (a bucket, a Cognito domain prefix):
    /// asked for with the account's suffix (`kinds::account`), and said so by the plan.
    pub global_name: bool,
    /// Whether a replacement makes the new resource before deleting the old one (a host whose
    /// service should not stop meanwhile). Only for kinds whose names cannot collide.
    pub create_before_delete: bool,
    /// Outputs an update makes anew (a function's newest published version): a plan shows
    /// what uses them as changing with the resource, their values known once it is applied.
    pub changing_outputs: &'static [&'static str],
}

impl Kind {
    /// A kind with no fields or outputs but `id`, no checks, attributes compared as AWS reports
    /// them and nothing to pay: the builder methods below add what a kind has besides.
    pub const fn new(name: &'static str, doc: &'static str, ops: &'static dyn Ops) -> Self {
        Self {
            name,
            doc,
            fields: &[],
            outputs: &[("id", "The resource's id")],
            check: no_check,
            normalize: as_is,
            cost: crate::cost::model::free,
            usage: &[],
            ops,
            after: &[],
            transient: &[],
            global_name: false,
            create_before_delete: false,
            changing_outputs: &[],
        }
    }

    pub const fn fields(self, fields: &'static [Field]) -> Self {
        Self { fields, ..self }
    }

    /// Its outputs, `id` first.
    pub const fn outputs(self, outputs: &'static [(&'static str, &'static str)]) -> Self {
        Self { outputs, ..self }
    }

    pub const fn check(self, check: fn(&Resource, &Stack, &mut Diags)) -> Self {
        Self { check, ..self }
    }

    pub const fn normalize(self, normalize: fn(&mut Value)) -> Self {
        Self { normalize, ..self }
    }

    /// What it costs, from the `[usage]` keys it reads.
    pub const fn cost(
        self,
        cost: fn(&crate::cost::model::CostCx<'_>) -> Vec<crate::cost::model::Part>,
        usage: &'static [crate::cost::model::UsageKey],
    ) -> Self {
        Self { cost, usage, ..self }
    }

    pub const fn after(self, after: &'static [&'static str]) -> Self {
        Self { after, ..self }
    }

    pub const fn transient(self, transient: &'static [Transient]) -> Self {
        Self { transient, ..self }
    }

    pub const fn global_name(self) -> Self {
        Self { global_name: true, ..self }
    }

    pub const fn create_before_delete(self) -> Self {
        Self { create_before_delete: true, ..self }
    }

    pub const fn changing_outputs(self, outputs: &'static [&'static str]) -> Self {
        Self { changing_outputs: outputs, ..self }
    }

    /// The kind's own fields, then the [`COMMON`] ones.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static Field> {
        self.fields.iter().chain(COMMON)
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The default for `check` when a kind needs none.
pub fn no_check(_: &Resource, _: &Stack, _: &mut Diags) {}

/// The default for `normalize` when AWS reports attributes exactly as declared.
pub fn as_is(_: &mut Value) {}

/// Calls `f` on every reference in `v`, an object with the declared `fields`, with whether it is
/// a peer reference (one that does not order creation). `f` may rewrite the reference.
pub fn visit_refs(fields: &[Field], v: &mut Value, f: &mut dyn FnMut(&mut Value, bool)) {
    walk_refs(fields, v, &mut |x, ty| f(x, matches!(ty, FieldType::Peer(_))));
}

/// Calls `f` on every reference in `v` with the kinds it may name (several kinds may share an
/// id: a load balancer and its WAF association, a role and its instance profile).
pub fn visit_refs_of_kinds(fields: &[Field], v: &mut Value, f: &mut dyn FnMut(&mut Value, &[&str])) {
    walk_refs(fields, v, &mut |x, ty| match ty {
        FieldType::Ref(k) | FieldType::Peer(k) => f(x, k),
        _ => {}
    });
}

/// The one walk over references: `f` gets each with its declared type (`Ref` or `Peer`).
fn walk_refs(fields: &[Field], v: &mut Value, f: &mut dyn FnMut(&mut Value, &FieldType)) {
    fn ty(t: &FieldType, v: &mut Value, f: &mut dyn FnMut(&mut Value, &FieldType)) {
        match (t, v) {
            (FieldType::Ref(_) | FieldType::Peer(_), x @ Value::String(_)) => f(x, t),
            (FieldType::List(inner), Value::Array(items)) => items.iter_mut().for_each(|i| ty(inner, i, f)),
            (FieldType::Table(fields), x @ Value::Object(_)) => walk_refs(fields, x, f),
            _ => {}
        }
    }
    for fd in fields {
        if let Some(x) = v.get_mut(fd.name) {
            ty(&fd.ty, x, f);
        }
    }
}

/// The references in `v` (an object with the declared `fields`): `(target, is_peer)`. Outputs
/// used inside strings (`${kind.name.output}`) are references too (never peers).
pub fn refs(fields: &[Field], v: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    visit_refs(fields, &mut v.clone(), &mut |x, peer| {
        if let Some(s) = x.as_str() {
            out.push((s.to_owned(), peer));
        }
    });
    for fd in fields {
        if let Some(x) = v.get(fd.name) {
            out.extend(interpolated(x).into_iter().map(|a| (a, false)));
        }
    }
    out
}

/// Removes from every list the table items that name a peer for which `keep` is false (rules
/// whose peer group does not exist yet, or is about to go).
pub fn drop_peer_items(fields: &[Field], v: &mut Value, keep: &dyn Fn(&str) -> bool) {
    for fd in fields {
        let (FieldType::List(FieldType::Table(inner)), Some(Value::Array(items))) = (&fd.ty, v.get_mut(fd.name)) else {
            continue;
        };
        items.retain(|item| {
            inner.iter().all(|f| match (&f.ty, item.get(f.name).and_then(Value::as_str)) {
                (FieldType::Peer(_), Some(target)) => keep(target),
                _ => true,
            })
        });
    }
}

impl FieldType {
    /// How the type reads in messages and docs.
    pub fn describe(&self) -> String {
        match self {
            Self::String => "string".into(),
            Self::Bool => "boolean".into(),
            Self::Int { min, max } => format!("integer from {min} to {max}"),
            Self::Cidr => "IPv4 CIDR such as \"10.0.0.0/16\"".into(),
            Self::Enum(v) => format!("one of {}", v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")),
            Self::Ref(kinds) | Self::Peer(kinds) => format!("reference \"{}.<name>\"", kinds.join("|")),
            Self::List(t) => format!("array of {}", t.describe()),
            Self::Table(_) => "table".into(),
            Self::StringMap => "table of strings".into(),
            Self::JsonFile => "path of a JSON file, relative to the stack file".into(),
            Self::TextFile => "path of a text file, relative to the stack file; a template: ${var.NAME} and ${kind.name.output} are filled in".into(),
        }
    }

    /// JSON Schema of the type. A number, choice or switch may also be one variable
    /// (`"${var.NAME}"`), checked like a literal once filled in.
    pub fn json_schema(&self) -> Value {
        let or_var = |t: Value| json!({"anyOf": [t, {"type": "string", "pattern": r"^\$\{var\.[A-Za-z0-9_]+\}$"}]});
        match self {
            Self::String => json!({"type": "string"}),
            Self::Bool => or_var(json!({"type": "boolean"})),
            Self::Int { min, max } => or_var(json!({"type": "integer", "minimum": min, "maximum": max})),
            Self::Cidr => {
                json!({"type": "string", "pattern": r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$|^\$\{var\.[A-Za-z0-9_]+\}$"})
            }
            Self::Enum(v) => or_var(json!({"type": "string", "enum": v})),
            Self::Ref(kinds) | Self::Peer(kinds) => {
                let alts = kinds.join("|");
                json!({"type": "string", "pattern": format!(r"^({alts})\.[A-Za-z0-9_-]+$")})
            }
            Self::List(t) => json!({"type": "array", "items": t.json_schema()}),
            Self::Table(fields) => fields_schema(fields.iter()),
            Self::StringMap => json!({"type": "object", "additionalProperties": {"type": "string"}}),
            Self::JsonFile | Self::TextFile => json!({"type": "string"}),
        }
    }
}

/// A value of every field, of its type: what a kind's typed attributes must decode.
#[cfg(test)]
pub fn sample<'a>(fields: impl IntoIterator<Item = &'a Field>) -> Value {
    fn of(ty: &FieldType) -> Value {
        match ty {
            FieldType::String => json!("x"),
            FieldType::Bool => json!(true),
            FieldType::Int { min, .. } => json!(min),
            FieldType::Cidr => json!("10.0.0.0/16"),
            FieldType::Enum(v) => json!(v.first()),
            FieldType::Ref(k) | FieldType::Peer(k) => json!(format!("{}.x", k.first().unwrap_or(&"x"))),
            FieldType::List(t) => json!([of(t)]),
            FieldType::Table(fields) => sample(fields.iter()),
            FieldType::StringMap => json!({"k": "v"}),
            FieldType::JsonFile => json!({}),
            FieldType::TextFile => json!("#cloud-config"),
        }
    }
    Value::Object(fields.into_iter().map(|f| (f.name.to_owned(), of(&f.ty))).collect())
}

/// The `${kind.name.output}` references inside a string, as `(address, output)`.
pub fn interpolations(s: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else { break };
        if let Some(r) = output_ref(&after[..end]) {
            out.push(r);
        }
        rest = &after[end + 1..];
    }
    out
}

/// `kind.name.output` as `(address, output)`; `None` for anything else (variables included).
pub fn output_ref(expr: &str) -> Option<(&str, &str)> {
    let (address, output) = expr.rsplit_once('.')?;
    let (kind, name) = address.split_once('.')?;
    let ident = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (kind != "var" && ident(kind) && ident(name) && ident(output)).then_some((address, output))
}

/// Replaces every `${kind.name.output}` in `s` that `value` knows; the others stay as written.
pub fn substitute(s: &str, value: &dyn Fn(&str, &str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else { break };
        let expr = &after[..end];
        match output_ref(expr).and_then(|(a, o)| value(a, o)) {
            Some(v) => out.push_str(&v),
            None => {
                out.push_str("${");
                out.push_str(expr);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Applies [`substitute`] to every string inside `v`.
pub fn substitute_all(v: &mut Value, value: &dyn Fn(&str, &str) -> Option<String>) {
    match v {
        Value::String(s) if s.contains("${") => *s = substitute(s, value),
        Value::Array(items) => items.iter_mut().for_each(|i| substitute_all(i, value)),
        Value::Object(m) => m.values_mut().for_each(|i| substitute_all(i, value)),
        _ => {}
    }
}

/// Calls `f` on every string in `v`, however deep.
pub fn each_string(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| each_string(i, f)),
        Value::Object(m) => m.values().for_each(|i| each_string(i, f)),
        _ => {}
    }
}

/// The addresses `v` names through `${...}` inside its strings.
pub fn interpolated(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    each_string(v, &mut |s: &str| out.extend(interpolations(s).into_iter().map(|(a, _)| a.to_owned())));
    out.sort();
    out.dedup();
    out
}

/// JSON Schema of a table with these fields.
pub fn fields_schema<'a>(fields: impl IntoIterator<Item = &'a Field>) -> Value {
    let fields: Vec<&Field> = fields.into_iter().collect();
    let mut props = serde_json::Map::new();
    for f in &fields {
        let mut s = f.ty.json_schema();
        s["description"] = json!(f.doc);
        if let Some(d) = f.default {
            if let Ok(v) = d.parse::<toml_edit::Value>() {
                s["default"] = crate::stack::toml_to_json(&v);
            }
        }
        props.insert(f.name.to_owned(), s);
    }
    let required: Vec<&str> = fields.iter().filter(|f| f.required).map(|f| f.name).collect();
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}
