//! Reading a stack file's parts: the TOML itself, `[variables]`, `[stack]`, and the resource
//! tables of the known kinds; then the checks across resources.

use super::values::Ctx;
use super::{checks, Resource, Span, Stack};
use crate::diag::{closest, Diags};
use crate::schema::{Kind, COMMON};
use std::collections::BTreeMap;
use toml_edit::{Item, Value};

/// Parses and checks a stack of the kinds in `kinds`. `vars` overrides the file's variables
/// (`--var`, environment).
pub fn parse(kinds: &[&'static Kind], file: &str, src: &str, vars: &BTreeMap<String, String>) -> Result<Stack, Diags> {
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

    let variables = variables(root, src, vars, &mut d);
    let dir = std::path::Path::new(file).parent().unwrap_or(std::path::Path::new("."));
    let ctx = Ctx { src, vars: &variables, dir };
    let (name, region, tags) = header(root, &ctx, whole, &mut d);
    let resources = resources(root, kinds, &ctx, &mut d);
    let stack = Stack { file: file.to_owned(), name, region, tags, resources };
    checks::references(&stack, &mut d);
    checks::outputs(&stack, &mut d);
    checks::cycles(&stack, &mut d);
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

/// `[variables]` (the defaults of `${var.NAME}`), overridden by `vars`. Read first: resources
/// may use them anywhere in a string.
fn variables(
    root: &toml_edit::Table,
    src: &str,
    vars: &BTreeMap<String, String>,
    d: &mut Diags,
) -> BTreeMap<String, String> {
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
    variables
}

/// `[stack]`: name, region and tags.
fn header(
    root: &toml_edit::Table,
    ctx: &Ctx<'_>,
    whole: Span,
    d: &mut Diags,
) -> (String, String, BTreeMap<String, String>) {
    let src = ctx.src;
    let (mut name, mut region, mut tags) = (String::new(), String::new(), BTreeMap::new());
    match root.get("stack").and_then(Item::as_table_like) {
        Some(t) => {
            for (k, v) in t.iter() {
                let span = item_span(v, src);
                match k {
                    "name" | "region" => match v.as_value().and_then(Value::as_str) {
                        Some(s) => {
                            let s = ctx.subst(s, span.clone(), d).unwrap_or_default();
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
                                        let v = ctx.subst(s, item_span(tv, src), d).unwrap_or_default();
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

    (name, region, tags)
}

/// The resource tables `[kind.name]` of the known kinds, each field read by its declaration.
fn resources(root: &toml_edit::Table, kinds: &[&'static Kind], ctx: &Ctx<'_>, d: &mut Diags) -> Vec<Resource> {
    let src = ctx.src;
    let mut resources = Vec::new();
    for (kind_name, item) in root.iter() {
        if kind_name == "stack" || kind_name == "variables" {
            continue;
        }
        let kspan =
            key_span(root.get_key_value(kind_name).map(|(k, _)| k), src).unwrap_or_else(|| item_span(item, src));
        let Some(kind) = kinds.iter().copied().find(|k| k.name == kind_name) else {
            d.error(
                "unknown-kind",
                kspan,
                format!("unknown resource kind `{kind_name}`"),
                closest(kind_name, kinds.iter().map(|k| k.name))
                    .or(Some(format!("kinds: {}", kinds.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")))),
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
            let fields = ctx.fields(kind.fields, COMMON, rt, &format!("{kind_name}.{rname}"), rspan.clone(), d);
            resources.push(Resource { kind, name: rname.to_owned(), span: rspan, fields });
        }
    }
    resources
}

pub(super) fn item_span(item: &Item, src: &str) -> Span {
    let s = match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        Item::None => None,
    };
    s.unwrap_or(0..src.len().min(1))
}

pub(super) fn key_span(key: Option<&toml_edit::Key>, _src: &str) -> Option<Span> {
    key.and_then(toml_edit::Key::span)
}
