//! Stack files: TOML parsed with spans into resources of the declared kinds, variables resolved,
//! and every problem (syntax, kinds, fields, types, references, cycles, kind checks) reported
//! together before anything talks to AWS.

use crate::diag::{closest, Diags};
use crate::kinds;
use crate::schema::{Field, FieldType, Kind, COMMON};
use petgraph::graph::DiGraph;
use std::collections::BTreeMap;
use std::ops::Range;
use toml_edit::{Item, Value};

pub type Span = Range<usize>;

/// A checked field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<(Val, Span)>),
    Table(BTreeMap<String, (Val, Span)>),
    /// Present but already reported as wrong: later checks treat it as there but unknown, so
    /// one mistake gives one diagnostic.
    Invalid,
}

impl Val {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: &'static Kind,
    pub name: String,
    /// The `[kind.name]` header.
    pub span: Span,
    pub fields: BTreeMap<String, (Val, Span)>,
}

impl Resource {
    /// `kind.name`: how other resources refer to this one.
    pub fn address(&self) -> String {
        format!("{}.{}", self.kind.name, self.name)
    }

    pub fn str(&self, field: &str) -> Option<(&str, Span)> {
        self.fields.get(field).and_then(|(v, s)| v.as_str().map(|x| (x, s.clone())))
    }
}

#[derive(Debug)]
pub struct Stack {
    pub file: String,
    pub name: String,
    pub region: String,
    pub tags: BTreeMap<String, String>,
    pub resources: Vec<Resource>,
}

impl Stack {
    /// The region `r` lives in: its own `region`, or the stack's.
    pub fn region_of<'a>(&'a self, r: &'a Resource) -> &'a str {
        r.fields.get("region").and_then(|(v, _)| v.as_str()).unwrap_or(&self.region)
    }

    pub fn get(&self, address: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.address() == address)
    }

    /// Edges `from -> to` where `from` refers to `to` (so `to` must exist first).
    pub fn references(&self) -> Vec<(String, String, Span)> {
        let mut out = Vec::new();
        for r in &self.resources {
            for f in r.kind.fields {
                if let Some((v, s)) = r.fields.get(f.name) {
                    collect_refs(&f.ty, v, s, &mut |to, span| out.push((r.address(), to.to_owned(), span)));
                }
            }
        }
        out
    }
}

fn collect_refs(ty: &FieldType, v: &Val, span: &Span, f: &mut dyn FnMut(&str, Span)) {
    if let Val::Str(s) = v {
        for (address, _) in crate::schema::interpolations(s) {
            f(address, span.clone());
        }
    }
    match (ty, v) {
        (FieldType::Ref(_), Val::Str(s)) => f(s, span.clone()),
        (FieldType::StringMap, Val::Table(t)) => {
            for (iv, is) in t.values() {
                collect_refs(&FieldType::String, iv, is, f);
            }
        }
        (FieldType::List(inner), Val::List(items)) => {
            for (iv, is) in items {
                collect_refs(inner, iv, is, f);
            }
        }
        (FieldType::Table(fields), Val::Table(t)) => {
            for fd in *fields {
                if let Some((iv, is)) = t.get(fd.name) {
                    collect_refs(&fd.ty, iv, is, f);
                }
            }
        }
        _ => {}
    }
}

/// A stack for unit tests, which must be valid.
#[cfg(test)]
pub(crate) fn test_stack(src: &str) -> Stack {
    load("t.toml", src, &BTreeMap::new()).unwrap_or_else(|d| panic!("{:?}", d.items))
}

/// Parses and checks a stack. `vars` overrides the file's variables (`--var`, environment).
pub fn load(file: &str, src: &str, vars: &BTreeMap<String, String>) -> Result<Stack, Diags> {
    let mut d = Diags::default();
    let doc = match toml_edit::Document::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            d.error(
                "syntax",
                span,
                format!("not valid TOML: {}", e.message().trim()),
                Some("fix the TOML syntax at this place".into()),
            );
            return Err(d);
        }
    };
    let root = doc.as_table();
    let whole = 0..src.len().min(1);

    // Variables first: resources may use them anywhere in a string.
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    if let Some(item) = root.get("variables") {
        match item.as_table_like() {
            Some(t) => {
                for (k, v) in t.iter() {
                    match v.as_value().and_then(Value::as_str) {
                        Some(s) => {
                            variables.insert(k.to_owned(), s.to_owned());
                        }
                        None => d.error(
                            "wrong-type",
                            item_span(v, src),
                            format!("variable `{k}` must be a string"),
                            Some("write the default in quotes, e.g. admin_cidr = \"203.0.113.7/32\"".into()),
                        ),
                    }
                }
            }
            None => d.error("wrong-type", item_span(item, src), "`variables` must be a table", None),
        }
    }
    for (k, v) in vars {
        variables.insert(k.clone(), v.clone());
    }
    let ctx = Ctx { src, vars: &variables };

    let (mut name, mut region, mut tags) = (String::new(), String::new(), BTreeMap::new());
    match root.get("stack").and_then(Item::as_table_like) {
        Some(t) => {
            for (k, v) in t.iter() {
                let span = item_span(v, src);
                match k {
                    "name" | "region" => match v.as_value().and_then(Value::as_str) {
                        Some(s) => {
                            let s = ctx.subst(s, span.clone(), &mut d).unwrap_or_default();
                            if k == "name" {
                                name = s;
                            } else {
                                region = s;
                            }
                        }
                        None => d.error("wrong-type", span, format!("`stack.{k}` must be a string"), None),
                    },
                    "tags" => match v.as_table_like() {
                        Some(tt) => {
                            for (tk, tv) in tt.iter() {
                                match tv.as_value().and_then(Value::as_str) {
                                    Some(s) => {
                                        let v = ctx.subst(s, item_span(tv, src), &mut d).unwrap_or_default();
                                        tags.insert(tk.to_owned(), v);
                                    }
                                    None => d.error(
                                        "wrong-type",
                                        item_span(tv, src),
                                        format!("tag `{tk}` must be a string"),
                                        None,
                                    ),
                                }
                            }
                        }
                        None => d.error("wrong-type", span, "`stack.tags` must be a table of strings", None),
                    },
                    other => d.error(
                        "unknown-field",
                        key_span(t.get_key_value(other).map(|(k, _)| k), src).unwrap_or(span),
                        format!("unknown field `stack.{other}`"),
                        closest(other, ["name", "region", "tags"])
                            .or(Some("`[stack]` has name, region and tags".into())),
                    ),
                }
            }
            if name.is_empty() {
                d.error(
                    "missing-field",
                    whole.clone(),
                    "`stack.name` is required",
                    Some("add name = \"prod\" under [stack]".into()),
                );
            }
            if region.is_empty() {
                d.error(
                    "missing-field",
                    whole.clone(),
                    "`stack.region` is required",
                    Some("add region = \"eu-central-1\" under [stack]".into()),
                );
            }
        }
        None => d.error(
            "missing-field",
            whole.clone(),
            "a stack needs a [stack] table",
            Some("start the file with [stack] name = \"...\" region = \"...\"".into()),
        ),
    }

    let mut resources = Vec::new();
    for (kind_name, item) in root.iter() {
        if kind_name == "stack" || kind_name == "variables" {
            continue;
        }
        let kspan =
            key_span(root.get_key_value(kind_name).map(|(k, _)| k), src).unwrap_or_else(|| item_span(item, src));
        let Some(kind) = kinds::find(kind_name) else {
            d.error(
                "unknown-kind",
                kspan,
                format!("unknown resource kind `{kind_name}`"),
                closest(kind_name, kinds::all().iter().map(|k| k.name))
                    .or(Some(format!("kinds: {}", kinds::all().iter().map(|k| k.name).collect::<Vec<_>>().join(", ")))),
            );
            continue;
        };
        let Some(table) = item.as_table() else {
            d.error("wrong-type", kspan, format!("`{kind_name}` must hold named tables: [{kind_name}.<name>]"), None);
            continue;
        };
        for (rname, ritem) in table.iter() {
            let rspan =
                key_span(table.get_key_value(rname).map(|(k, _)| k), src).unwrap_or_else(|| item_span(ritem, src));
            if !rname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                d.error(
                    "bad-name",
                    rspan.clone(),
                    format!("resource name `{rname}` has characters other than letters, digits, `_` and `-`"),
                    None,
                );
            }
            let Some(rt) = ritem.as_table_like() else {
                d.error("wrong-type", rspan, format!("`{kind_name}.{rname}` must be a table"), None);
                continue;
            };
            let fields = ctx.fields(kind.fields, COMMON, rt, &format!("{kind_name}.{rname}"), rspan.clone(), &mut d);
            resources.push(Resource { kind, name: rname.to_owned(), span: rspan, fields });
        }
    }
    let stack = Stack { file: file.to_owned(), name, region, tags, resources };
    check_references(&stack, &mut d);
    check_outputs(&stack, &mut d);
    check_cycles(&stack, &mut d);
    for r in &stack.resources {
        (r.kind.check)(r, &stack, &mut d);
    }
    if d.is_empty() {
        Ok(stack)
    } else {
        d.items.sort_by_key(|x| x.span.start);
        Err(d)
    }
}

struct Ctx<'a> {
    src: &'a str,
    vars: &'a BTreeMap<String, String>,
}

impl Ctx<'_> {
    /// Replaces `${var.NAME}`; an undefined name is reported at the value (and gives `None`).
    fn subst(&self, s: &str, span: Span, d: &mut Diags) -> Option<String> {
        let before = d.items.len();
        let out = self.subst_inner(s, span, false, d);
        (d.items.len() == before).then_some(out)
    }

    /// As [`Ctx::subst`], keeping `${kind.name.output}` for the engine to fill in (checked once
    /// every resource is read).
    fn subst_refs(&self, s: &str, span: Span, d: &mut Diags) -> Option<String> {
        let before = d.items.len();
        let out = self.subst_inner(s, span, true, d);
        (d.items.len() == before).then_some(out)
    }

    fn subst_inner(&self, s: &str, span: Span, refs: bool, d: &mut Diags) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                d.error("bad-variable", span.clone(), "`${` without a closing `}`", Some("write ${var.NAME}".into()));
                return out;
            };
            let expr = &after[..end];
            match expr.strip_prefix("var.") {
                Some(name) => match self.vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => d.error(
                        "undefined-variable",
                        span.clone(),
                        format!("variable `{name}` is not defined"),
                        closest(name, self.vars.keys().map(String::as_str)).or(Some(format!(
                            "define it under [variables], or pass --var {name}=VALUE (or PROVISIONER_VAR_{name})"
                        ))),
                    ),
                },
                None if refs && crate::schema::output_ref(expr).is_some() => {
                    out.push_str("${");
                    out.push_str(expr);
                    out.push('}');
                }
                None if refs => d.error(
                    "bad-variable",
                    span.clone(),
                    format!("`${{{expr}}}` is neither a variable nor another resource's output"),
                    Some("write ${var.NAME} or ${kind.name.output}".into()),
                ),
                None => d.error(
                    "bad-variable",
                    span.clone(),
                    format!("`${{{expr}}}` is not a variable"),
                    Some("write ${var.NAME}".into()),
                ),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The fields of a table declared by `spec`, and by `common` (for a resource: [`COMMON`]).
    fn fields(
        &self,
        spec: &'static [Field],
        common: &'static [Field],
        t: &dyn toml_edit::TableLike,
        path: &str,
        whole: Span,
        d: &mut Diags,
    ) -> BTreeMap<String, (Val, Span)> {
        let mut out = BTreeMap::new();
        for (k, v) in t.iter() {
            let span = item_span(v, self.src);
            let kspan = key_span(t.get_key_value(k).map(|(k, _)| k), self.src).unwrap_or(span.clone());
            let Some(f) = spec.iter().chain(common).find(|f| f.name == k) else {
                let names = || spec.iter().chain(common).map(|f| f.name);
                d.error(
                    "unknown-field",
                    kspan,
                    format!("unknown field `{k}` in {path}"),
                    closest(k, names()).or(Some(format!("fields: {}", names().collect::<Vec<_>>().join(", ")))),
                );
                continue;
            };
            let val = self.value(&f.ty, v, &format!("{path}.{k}"), d).unwrap_or(Val::Invalid);
            out.insert(k.to_owned(), (val, span));
        }
        for f in spec.iter().filter(|f| f.required) {
            if !out.contains_key(f.name) && t.get(f.name).is_none() {
                d.error(
                    "missing-field",
                    whole.clone(),
                    format!("{path} needs `{}` ({})", f.name, f.ty.describe()),
                    Some(format!("{}: {}", f.name, f.doc)),
                );
            }
        }
        out
    }

    fn value(&self, ty: &FieldType, item: &Item, path: &str, d: &mut Diags) -> Option<Val> {
        let span = item_span(item, self.src);
        let wrong = |d: &mut Diags| {
            d.error("wrong-type", span.clone(), format!("{path} must be {}", ty.describe()), None);
            None
        };
        match ty {
            FieldType::Table(fields) => match item.as_table_like() {
                Some(t) => Some(Val::Table(self.fields(fields, &[], t, path, span.clone(), d))),
                None => wrong(d),
            },
            FieldType::StringMap => match item.as_table_like() {
                Some(t) => {
                    let mut m = BTreeMap::new();
                    for (k, v) in t.iter() {
                        match v.as_value().and_then(Value::as_str) {
                            Some(s) => {
                                let sp = item_span(v, self.src);
                                let v = self.subst_refs(s, sp.clone(), d).map_or(Val::Invalid, Val::Str);
                                m.insert(k.to_owned(), (v, sp));
                            }
                            None => {
                                d.error(
                                    "wrong-type",
                                    item_span(v, self.src),
                                    format!("{path}.{k} must be a string"),
                                    None,
                                );
                            }
                        }
                    }
                    Some(Val::Table(m))
                }
                None => wrong(d),
            },
            FieldType::List(inner) => match item.as_value().and_then(Value::as_array) {
                Some(a) => {
                    let mut items = Vec::new();
                    for (i, v) in a.iter().enumerate() {
                        let it = Item::Value(v.clone());
                        let sp = v.span().unwrap_or(span.clone());
                        if let Some(val) = self.value_at(inner, &it, sp.clone(), &format!("{path}[{i}]"), d) {
                            items.push((val, sp));
                        }
                    }
                    Some(Val::List(items))
                }
                None => match item.as_array_of_tables() {
                    Some(aot) if matches!(inner, FieldType::Table(_)) => {
                        let FieldType::Table(fields) = inner else { return None };
                        let mut items = Vec::new();
                        for (i, t) in aot.iter().enumerate() {
                            let sp = t.span().unwrap_or(span.clone());
                            items.push((
                                Val::Table(self.fields(fields, &[], t, &format!("{path}[{i}]"), sp.clone(), d)),
                                sp,
                            ));
                        }
                        Some(Val::List(items))
                    }
                    _ => wrong(d),
                },
            },
            _ => self.value_at(ty, item, span, path, d),
        }
    }

    /// Scalars (and tables inside arrays, whose span comes from the array element).
    fn value_at(&self, ty: &FieldType, item: &Item, span: Span, path: &str, d: &mut Diags) -> Option<Val> {
        let wrong = |d: &mut Diags, extra: Option<String>| {
            d.error("wrong-type", span.clone(), format!("{path} must be {}", ty.describe()), extra);
            None
        };
        let v = item.as_value();
        match ty {
            FieldType::String => match v.and_then(Value::as_str) {
                Some(s) => Some(self.subst_refs(s, span.clone(), d).map_or(Val::Invalid, Val::Str)),
                None => wrong(d, None),
            },
            FieldType::Bool => match v.and_then(Value::as_bool) {
                Some(b) => Some(Val::Bool(b)),
                None => wrong(d, Some("write true or false, without quotes".into())),
            },
            FieldType::Int { min, max } => match v.and_then(Value::as_integer) {
                Some(i) if (*min..=*max).contains(&i) => Some(Val::Int(i)),
                Some(i) => {
                    d.error("out-of-range", span.clone(), format!("{path} = {i} is outside {min}..={max}"), None);
                    None
                }
                None => wrong(d, None),
            },
            FieldType::Cidr => match v.and_then(Value::as_str) {
                Some(s) => {
                    let s = self.subst(s, span.clone(), d)?;
                    match s.parse::<ipnet::Ipv4Net>() {
                        Ok(n) if n.trunc() == n => Some(Val::Str(s)),
                        Ok(n) => {
                            d.error(
                                "bad-cidr",
                                span.clone(),
                                format!("{path} = \"{s}\" has host bits set"),
                                Some(format!("did you mean \"{}\"?", n.trunc())),
                            );
                            None
                        }
                        Err(_) => {
                            d.error(
                                "bad-cidr",
                                span.clone(),
                                format!("{path} = \"{s}\" is not an IPv4 CIDR"),
                                Some("write it like \"10.0.1.0/24\"".into()),
                            );
                            None
                        }
                    }
                }
                None => wrong(d, None),
            },
            FieldType::Enum(options) => match v.and_then(Value::as_str) {
                Some(s) if options.contains(&s) => Some(Val::Str(s.to_owned())),
                Some(s) => {
                    d.error(
                        "bad-value",
                        span.clone(),
                        format!("{path} = \"{s}\" is not {}", ty.describe()),
                        closest(s, options.iter().copied()),
                    );
                    None
                }
                None => wrong(d, None),
            },
            FieldType::Ref(_) | FieldType::Peer(_) => match v.and_then(Value::as_str) {
                Some(s) => Some(Val::Str(s.to_owned())),
                None => wrong(d, Some("a reference is a string: vpc = \"vpc.main\"".into())),
            },
            FieldType::Table(fields) => match item
                .as_table_like()
                .or_else(|| v.and_then(Value::as_inline_table).map(|t| t as &dyn toml_edit::TableLike))
            {
                Some(t) => Some(Val::Table(self.fields(fields, &[], t, path, span.clone(), d))),
                None => wrong(d, None),
            },
            FieldType::List(_) | FieldType::StringMap => self.value(ty, item, path, d),
        }
    }
}

fn item_span(item: &Item, src: &str) -> Span {
    let s = match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        Item::None => None,
    };
    s.unwrap_or(0..src.len().min(1))
}

fn key_span(key: Option<&toml_edit::Key>, _src: &str) -> Option<Span> {
    key.and_then(toml_edit::Key::span)
}

/// Every reference names an existing resource of an allowed kind.
fn check_references(stack: &Stack, d: &mut Diags) {
    for r in &stack.resources {
        for f in r.kind.fields {
            let Some((v, s)) = r.fields.get(f.name) else { continue };
            check_ref_value(stack, &f.ty, v, s, &r.address(), f.name, d);
        }
    }
}

fn check_ref_value(stack: &Stack, ty: &FieldType, v: &Val, span: &Span, from: &str, field: &str, d: &mut Diags) {
    match (ty, v) {
        (FieldType::Ref(kinds) | FieldType::Peer(kinds), Val::Str(s)) => {
            let kind = s.split('.').next().unwrap_or("");
            if !kinds.contains(&kind) {
                d.error(
                    "wrong-reference",
                    span.clone(),
                    format!("{from}.{field} must refer to a {} , not `{s}`", kinds.join(" or ")),
                    Some(format!("write \"{}.<name>\"", kinds[0])),
                );
            } else if stack.get(s).is_none() {
                let same: Vec<String> =
                    stack.resources.iter().filter(|r| r.kind.name == kind).map(Resource::address).collect();
                d.error(
                    "missing-reference",
                    span.clone(),
                    format!("{from}.{field} refers to `{s}`, which is not in this stack"),
                    closest(s, same.iter().map(String::as_str))
                        .or(Some(format!("declare [{s}] or refer to an existing {kind}"))),
                );
            }
        }
        (FieldType::List(inner), Val::List(items)) => {
            for (iv, is) in items {
                check_ref_value(stack, inner, iv, is, from, field, d);
            }
        }
        (FieldType::Table(fields), Val::Table(t)) => {
            for fd in *fields {
                if let Some((iv, is)) = t.get(fd.name) {
                    check_ref_value(stack, &fd.ty, iv, is, from, &format!("{field}.{}", fd.name), d);
                }
            }
        }
        _ => {}
    }
}

/// Every `${kind.name.output}` names a resource of this stack and an output its kind has.
fn check_outputs(stack: &Stack, d: &mut Diags) {
    fn strings<'a>(v: &'a Val, span: &'a Span, out: &mut Vec<(&'a str, &'a Span)>) {
        match v {
            Val::Str(s) => out.push((s, span)),
            Val::List(items) => items.iter().for_each(|(v, s)| strings(v, s, out)),
            Val::Table(t) => t.values().for_each(|(v, s)| strings(v, s, out)),
            _ => {}
        }
    }
    for r in &stack.resources {
        let mut found = Vec::new();
        for (v, s) in r.fields.values() {
            strings(v, s, &mut found);
        }
        for (s, span) in found {
            for (address, output) in crate::schema::interpolations(s) {
                let Some(target) = stack.get(address) else {
                    let names: Vec<String> = stack.resources.iter().map(Resource::address).collect();
                    d.error(
                        "missing-reference",
                        span.clone(),
                        format!("{} uses `${{{address}.{output}}}`, but `{address}` is not in this stack", r.address()),
                        closest(address, names.iter().map(String::as_str))
                            .or(Some(format!("declare [{address}] or use an existing resource"))),
                    );
                    continue;
                };
                let outputs: Vec<&str> = target.kind.outputs.iter().map(|(n, _)| *n).collect();
                if output != "id" && !outputs.contains(&output) {
                    d.error(
                        "unknown-output",
                        span.clone(),
                        format!(
                            "{} uses `${{{address}.{output}}}`, but a {} has no output `{output}`",
                            r.address(),
                            target.kind.name
                        ),
                        closest(output, outputs.iter().copied()).or(Some(format!(
                            "outputs of {}: {}",
                            target.kind.name,
                            outputs.join(", ")
                        ))),
                    );
                }
            }
        }
    }
}

/// References must form a DAG: a cycle is reported once, with its path.
fn check_cycles(stack: &Stack, d: &mut Diags) {
    let mut g: DiGraph<String, Span> = DiGraph::new();
    let mut idx = BTreeMap::new();
    for r in &stack.resources {
        idx.insert(r.address(), g.add_node(r.address()));
    }
    for (from, to, span) in stack.references() {
        if let (Some(&a), Some(&b)) = (idx.get(&from), idx.get(&to)) {
            g.add_edge(a, b, span);
        }
    }
    for scc in petgraph::algo::tarjan_scc(&g) {
        let is_cycle = scc.len() > 1 || g.find_edge(scc[0], scc[0]).is_some();
        if !is_cycle {
            continue;
        }
        let mut names: Vec<String> = scc.iter().map(|n| g[*n].clone()).collect();
        names.sort();
        let first = idx[&names[0]];
        let span = g.edges(first).next().map(|e| e.weight().clone()).unwrap_or(0..0);
        names.push(names[0].clone());
        d.error(
            "cycle",
            span,
            format!("references form a cycle: {}", names.join(" -> ")),
            Some("remove one of these references; resources are created in reference order".into()),
        );
    }
}

/// TOML value to JSON (for schema defaults).
pub fn toml_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::String(s) => serde_json::json!(s.value()),
        Value::Integer(i) => serde_json::json!(i.value()),
        Value::Float(f) => serde_json::json!(f.value()),
        Value::Boolean(b) => serde_json::json!(b.value()),
        Value::Datetime(dt) => serde_json::json!(dt.value().to_string()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        Value::InlineTable(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.to_owned(), toml_to_json(v))).collect())
        }
    }
}

/// Used by kinds that read tables inside lists.
pub fn table_str<'a>(t: &'a BTreeMap<String, (Val, Span)>, k: &str) -> Option<&'a str> {
    t.get(k).and_then(|(v, _)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OpError;
    use crate::schema::{no_check, Field, FieldType, Kind, Update};
    use serde_json::Value;

    static NODE: Kind = Kind {
        name: "node",
        doc: "test kind",
        fields: &[Field::optional("after", FieldType::Ref(&["node"]), None, Update::InPlace, "dependency")],
        outputs: &[],
        check: no_check,
        normalize: crate::schema::as_is,
        ops: &NoAws,
    };

    /// The test kind never reaches AWS: these tests stop at validation.
    struct NoAws;

    #[async_trait::async_trait]
    impl crate::provider::Ops for NoAws {
        async fn discover(&self, _: &crate::provider::Cx) -> Result<Vec<crate::provider::Live>, OpError> {
            Err(OpError::fatal("Test", "test kind"))
        }
        async fn create(&self, _: &crate::provider::Cx, _: &str, _: &Value, _: &str) -> Result<String, OpError> {
            Err(OpError::fatal("Test", "test kind"))
        }
        async fn update(&self, _: &crate::provider::Cx, _: &str, _: &Value, _: &Value) -> Result<(), OpError> {
            Err(OpError::fatal("Test", "test kind"))
        }
        async fn delete(&self, _: &crate::provider::Cx, _: &str, _: &Value) -> Result<(), OpError> {
            Err(OpError::fatal("Test", "test kind"))
        }
    }

    fn node(name: &str, after: Option<&str>, at: usize) -> Resource {
        let mut fields = BTreeMap::new();
        if let Some(a) = after {
            fields.insert("after".to_owned(), (Val::Str(a.to_owned()), at..at + 1));
        }
        Resource { kind: &NODE, name: name.to_owned(), span: at..at + 1, fields }
    }

    #[test]
    fn cycles_are_found_with_their_path_and_chains_are_not() {
        let stack =
            |rs| Stack { file: "t".into(), name: "t".into(), region: "r".into(), tags: BTreeMap::new(), resources: rs };
        let mut d = Diags::default();
        check_cycles(
            &stack(vec![node("a", Some("node.b"), 1), node("b", Some("node.c"), 5), node("c", Some("node.a"), 9)]),
            &mut d,
        );
        assert_eq!(d.items.len(), 1);
        assert_eq!(d.items[0].code, "cycle");
        assert!(d.items[0].message.contains("node.a -> node.b -> node.c -> node.a"), "{}", d.items[0].message);
        let mut d = Diags::default();
        check_cycles(&stack(vec![node("a", Some("node.a"), 1)]), &mut d);
        assert_eq!(d.items.len(), 1, "a self-reference is a cycle");
        let mut d = Diags::default();
        check_cycles(
            &stack(vec![node("a", Some("node.b"), 1), node("b", Some("node.c"), 5), node("c", None, 9)]),
            &mut d,
        );
        assert!(d.is_empty());
    }
}
