//! Stack files: TOML parsed with spans into resources of the declared kinds, variables resolved,
//! and every problem (syntax, kinds, fields, types, references, outputs, cycles, kind checks)
//! reported together before anything talks to AWS. This file holds the model; reading is in
//! `load.rs` (the file's parts) and `values.rs` (typed values), the checks across resources in
//! `checks.rs`.

mod checks;
mod load;
mod values;

pub use load::{parse, parse_with, Unset};

use crate::schema::{Field, FieldType, Kind};
use serde_json::Value as JsonValue;
use std::collections::BTreeMap;
use std::ops::Range;
use toml_edit::Value;

pub type Span = Range<usize>;

/// A checked field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<(Val, Span)>),
    Table(BTreeMap<String, (Val, Span)>),
    /// The content of a [`FieldType::JsonFile`].
    Json(serde_json::Value),
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
    /// Addresses declared with `enabled = false`: not part of the stack.
    pub disabled: Vec<String>,
    /// `[outputs]`: what `apply` and `outputs` print for people.
    pub outputs: Vec<StackOutput>,
    /// The price snapshot (`[stack] prices`, or the one built in).
    pub prices: std::sync::Arc<crate::cost::prices::PriceBook>,
    /// `[usage]`: the assumptions the cost of usage-priced parts is computed from.
    pub usage: BTreeMap<String, f64>,
    /// The variables as resolved (`variables_from`, `[variables]`, the command line): for
    /// checks of what they hold (pins never verified).
    pub variables: BTreeMap<String, String>,
}

/// One entry of `[outputs]` (the map's URL, Grafana's): text with `${kind.name.output}`.
#[derive(Debug, Clone)]
pub struct StackOutput {
    pub name: String,
    pub template: String,
    pub span: Span,
}

impl StackOutput {
    /// The text with every output filled in from `outputs` (as [`crate::engine::Inventory::outputs`]
    /// gives them); `None` while one is not known.
    pub fn render(&self, outputs: &serde_json::Value) -> Option<String> {
        let known = |a: &str, o: &str| {
            let v = outputs.get(a)?.get(o).filter(|v| !v.is_null())?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        let s = crate::schema::substitute(&self.template, &known);
        crate::schema::interpolations(&s).is_empty().then_some(s)
    }
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

/// The desired attributes of a resource as JSON: defaults filled in, the stack's tags merged
/// under the resource's own, `region` only when it is not the stack's, in the kind's canonical
/// form.
pub fn desired(r: &Resource, stack: &Stack) -> JsonValue {
    let mut v = fields_json(r.kind.all_fields(), &r.fields);
    if v.get("region").and_then(JsonValue::as_str) == Some(stack.region.as_str()) {
        v["region"] = JsonValue::Null;
    }
    if r.kind.fields.iter().any(|f| f.name == "tags") {
        let mut tags: serde_json::Map<String, JsonValue> =
            stack.tags.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        if let Some(own) = v.get("tags").and_then(JsonValue::as_object) {
            tags.extend(own.clone());
        }
        v["tags"] = JsonValue::Object(tags);
    }
    (r.kind.normalize)(&mut v);
    v
}

fn fields_json<'a>(spec: impl IntoIterator<Item = &'a Field>, fields: &BTreeMap<String, (Val, Span)>) -> JsonValue {
    let mut m = serde_json::Map::new();
    for f in spec {
        let v = match fields.get(f.name) {
            Some((v, _)) => val_json(&f.ty, v),
            None => {
                f.default.and_then(|d| d.parse::<toml_edit::Value>().ok()).map_or(JsonValue::Null, |v| toml_to_json(&v))
            }
        };
        m.insert(f.name.to_owned(), v);
    }
    JsonValue::Object(m)
}

fn val_json(ty: &FieldType, v: &Val) -> JsonValue {
    match (ty, v) {
        (_, Val::Str(s)) => serde_json::json!(s),
        (_, Val::Int(i)) => serde_json::json!(i),
        (_, Val::Bool(b)) => serde_json::json!(b),
        (FieldType::JsonFile, Val::Json(v)) => v.clone(),
        (FieldType::List(inner), Val::List(items)) => {
            JsonValue::Array(items.iter().map(|(x, _)| val_json(inner, x)).collect())
        }
        (FieldType::Table(spec), Val::Table(t)) => fields_json(spec.iter(), t),
        (FieldType::StringMap, Val::Table(t)) => {
            JsonValue::Object(t.iter().map(|(k, (v, _))| (k.clone(), val_json(&FieldType::String, v))).collect())
        }
        _ => JsonValue::Null,
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
