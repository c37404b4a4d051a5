//! Reading a stack file's parts: the TOML itself, `[variables]`, `[stack]`, and the resource
//! tables of the known kinds; then the checks across resources.

use super::values::{item_span, key_span, Ctx};
use super::{checks, Resource, Span, Stack, StackOutput, Val};
use crate::diag::{closest, Diags};
use crate::schema::{Kind, COMMON};
use std::collections::BTreeMap;
use toml_edit::{Item, Value};

/// What a variable declared without a default (`name = { example = "..." }`: an address, an
/// e-mail, something a person must choose) becomes when nobody gave it a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unset {
    /// An error naming it and how to give it: for everything that may reach AWS.
    Refuse,
    /// Its example: for what never leaves this machine and does not depend on it (`cost`).
    Example,
}

/// Parses and checks a stack of the kinds in `kinds`. `vars` overrides the file's variables
/// (`--var`, environment); a variable without a default must be among them.
pub fn parse(kinds: &[&'static Kind], file: &str, src: &str, vars: &BTreeMap<String, String>) -> Result<Stack, Diags> {
    parse_with(kinds, file, src, vars, Unset::Refuse)
}

/// [`parse`], with `unset` saying what a variable without a default becomes when not given.
pub fn parse_with(
    kinds: &[&'static Kind],
    file: &str,
    src: &str,
    vars: &BTreeMap<String, String>,
    unset: Unset,
) -> Result<Stack, Diags> {
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

    let dir = std::path::Path::new(file).parent().unwrap_or(std::path::Path::new("."));
    let variables = variables(root, src, dir, vars, unset, &mut d);
    let ctx = Ctx { src, vars: &variables, dir };
    let (name, region, tags) = header(root, &ctx, whole, &mut d);
    let prices = prices(root, &ctx, &mut d);
    let usage = usage(root, kinds, src, &mut d);
    let (resources, disabled) = resources(root, kinds, &ctx, &mut d);
    let outputs = stack_outputs(root, &ctx, &disabled, &mut d);
    let stack = Stack {
        file: file.to_owned(),
        name,
        region,
        tags,
        resources,
        disabled,
        outputs,
        prices,
        usage,
        variables: variables.clone(),
    };
    checks::references(&stack, &mut d);
    checks::tags(&stack, &mut d);
    checks::outputs(&stack, &mut d);
    checks::stack_outputs(&stack, &mut d);
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

/// The variables (`${var.NAME}`): the files `stack.variables_from` names (shared data such as
/// the pinned images), then `[variables]`, then `vars`, each overriding the one before. Read
/// first: resources may use them anywhere in a string. A variable declared as
/// `{ example = "..." }` has no default: a placeholder that deploys (an alert address at
/// example.org) would send mail nowhere without a word, so it must be given (see [`Unset`]).
fn variables(
    root: &toml_edit::Table,
    src: &str,
    dir: &std::path::Path,
    vars: &BTreeMap<String, String>,
    unset: Unset,
    d: &mut Diags,
) -> BTreeMap<String, String> {
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    if let Some(item) = root.get("stack").and_then(|s| s.get("variables_from")) {
        let span = item_span(item, src);
        let files: Option<Vec<&str>> =
            item.as_array().map(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>()).unwrap_or(None);
        match files {
            Some(files) => {
                for f in files {
                    variables_file(&dir.join(f), f, span.clone(), &mut variables, d);
                }
            }
            None => d.error(
                "wrong-type",
                span,
                "`stack.variables_from` must be an array of paths",
                Some("e.g. variables_from = [\"../assets/pins.toml\"]".into()),
            ),
        }
    }
    if let Some(item) = root.get("variables") {
        match item.as_table_like() {
            Some(t) => {
                for (k, v) in t.iter() {
                    if let Some(s) = v.as_value().and_then(Value::as_str) {
                        variables.insert(k.to_owned(), s.to_owned());
                        continue;
                    }
                    let example = v.as_table_like().filter(|t| t.len() == 1).and_then(|t| t.get("example"));
                    match example.and_then(|e| e.as_value()).and_then(Value::as_str) {
                        Some(_) if vars.contains_key(k) || variables.contains_key(k) => {}
                        Some(example) => {
                            if unset == Unset::Refuse {
                                d.error(
                                    "missing-variable",
                                    item_span(v, src),
                                    format!("variable `{k}` has no default: it is yours to choose"),
                                    Some(format!(
                                        "pass --var {k}={example} (your value), or set PROVISIONER_VAR_{k} in the \
                                         environment"
                                    )),
                                );
                            }
                            variables.insert(k.to_owned(), example.to_owned());
                        }
                        None => d.error(
                            "wrong-type",
                            item_span(v, src),
                            format!(
                                "variable `{k}` must be a string, or {{ example = \"...\" }} for one without a default"
                            ),
                            Some("write the default in quotes, e.g. waf_rate_limit = \"500\"".into()),
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

/// One variables file: a TOML table of strings (`name = "value"`), its problems reported at
/// `variables_from` with the file's own line.
fn variables_file(path: &std::path::Path, rel: &str, span: Span, into: &mut BTreeMap<String, String>, d: &mut Diags) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            d.error(
                "bad-file",
                span,
                format!("variables_from \"{rel}\": cannot read {}: {e}", path.display()),
                Some("the path is relative to the stack file".into()),
            );
            return;
        }
    };
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let doc = match toml_edit::Document::parse(text.as_str()) {
        Ok(doc) => doc,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            d.error(
                "bad-file",
                span,
                format!("{rel}:{}: not valid TOML: {}", line(at), e.message().trim()),
                Some(format!("fix {rel}")),
            );
            return;
        }
    };
    for (k, v) in doc.as_table().iter() {
        match v.as_value().and_then(Value::as_str) {
            Some(s) => {
                into.insert(k.to_owned(), s.to_owned());
            }
            None => d.error(
                "wrong-type",
                span.clone(),
                format!("{rel}:{}: variable `{k}` must be a string", v.span().map_or(0, |s| line(s.start))),
                Some(format!("write it in quotes in {rel}")),
            ),
        }
    }
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
                                        if let Some(p) = checks::tag_problem(tk, &v) {
                                            d.error("bad-tag", item_span(tv, src), format!("stack.tags: {p}"), None);
                                        }
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
                    // Read with the variables, before everything else; the prices on their own.
                    "variables_from" | "prices" => {}
                    other => d.error(
                        "unknown-field",
                        key_span(t.get_key_value(other).map(|(k, _)| k), src).unwrap_or(span),
                        format!("unknown field `stack.{other}`"),
                        closest(other, ["name", "region", "tags", "variables_from", "prices"])
                            .or(Some("`[stack]` has name, region, tags, variables_from and prices".into())),
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

/// `[stack] prices`: the price snapshot, a path relative to the stack file; the one built into
/// the binary when the stack names none.
fn prices(root: &toml_edit::Table, ctx: &Ctx<'_>, d: &mut Diags) -> std::sync::Arc<crate::cost::prices::PriceBook> {
    let embedded = crate::cost::prices::PriceBook::embedded;
    let Some(item) = root.get("stack").and_then(|s| s.get("prices")) else { return embedded() };
    let span = item_span(item, ctx.src);
    let Some(rel) = item.as_str() else {
        d.error(
            "wrong-type",
            span,
            "`stack.prices` must be a path",
            Some("e.g. prices = \"../assets/prices/aws.toml\"".into()),
        );
        return embedded();
    };
    let path = ctx.dir.join(rel);
    let parsed = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|text| crate::cost::prices::PriceBook::parse(&text));
    match parsed {
        Ok(book) => std::sync::Arc::new(book),
        Err(e) => {
            d.error(
                "bad-file",
                span,
                format!("prices \"{rel}\": {e}"),
                Some("the path is relative to the stack file; docs/cost.md \"Cost\" describes the snapshot".into()),
            );
            embedded()
        }
    }
}

/// `[usage]`: numbers the cost of usage-priced parts is computed from, each a key some kind
/// reads (`provisioner docs` lists them).
fn usage(root: &toml_edit::Table, kinds: &[&'static Kind], src: &str, d: &mut Diags) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Some(item) = root.get("usage") else { return out };
    let Some(t) = item.as_table_like() else {
        d.error(
            "wrong-type",
            item_span(item, src),
            "`usage` must be a table",
            Some("[usage]\nweb_requests = 172800".into()),
        );
        return out;
    };
    let known: Vec<&str> = {
        let mut k: Vec<&str> = kinds.iter().flat_map(|k| k.usage.iter().map(|u| u.name)).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    for (k, v) in t.iter() {
        let span = item_span(v, src);
        if !known.contains(&k) {
            d.error(
                "unknown-usage",
                key_span(t.get_key_value(k).map(|(k, _)| k), src).unwrap_or(span),
                format!("no kind reads usage `{k}`"),
                closest(k, known.iter().copied()).or(Some(format!("usage keys: {}", known.join(", ")))),
            );
            continue;
        }
        let n = match v.as_value() {
            Some(Value::Integer(i)) => Some(*i.value() as f64),
            Some(Value::Float(f)) => Some(*f.value()),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n >= 0.0 => {
                out.insert(k.to_owned(), n);
            }
            _ => d.error(
                "wrong-type",
                span,
                format!("usage `{k}` must be a number of 0 or more"),
                Some(format!("e.g. {k} = 1000000 (a number, without quotes)")),
            ),
        }
    }
    out
}

/// The resource tables `[kind.name]` of the known kinds, each field read by its declaration;
/// and the addresses of those left out with `enabled = false`, whose outputs inside the others'
/// strings become empty text (a host's user data sees "no logging host" as an empty address).
fn resources(
    root: &toml_edit::Table,
    kinds: &[&'static Kind],
    ctx: &Ctx<'_>,
    d: &mut Diags,
) -> (Vec<Resource>, Vec<String>) {
    let (mut resources, disabled) = read_resources(root, kinds, ctx, d);
    if !disabled.is_empty() {
        let off = |a: &str, _: &str| disabled.iter().any(|x| x == a).then(String::new);
        for r in &mut resources {
            for (v, _) in r.fields.values_mut() {
                blank(v, &off);
            }
        }
    }
    (resources, disabled)
}

fn blank(v: &mut Val, off: &dyn Fn(&str, &str) -> Option<String>) {
    match v {
        Val::Str(s) => *s = crate::schema::substitute(s, off),
        Val::List(items) => items.iter_mut().for_each(|(i, _)| blank(i, off)),
        Val::Table(t) => t.values_mut().for_each(|(i, _)| blank(i, off)),
        _ => {}
    }
}

fn read_resources(
    root: &toml_edit::Table,
    kinds: &[&'static Kind],
    ctx: &Ctx<'_>,
    d: &mut Diags,
) -> (Vec<Resource>, Vec<String>) {
    let src = ctx.src;
    let (mut resources, mut disabled) = (Vec::new(), Vec::new());
    for (kind_name, item) in root.iter() {
        if matches!(kind_name, "stack" | "variables" | "outputs" | "usage") {
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
            let mut fields = ctx.fields(kind.fields, COMMON, rt, &format!("{kind_name}.{rname}"), rspan.clone(), d);
            // A switch of the loader, never a setting of the resource.
            if let Some((Val::Bool(false), _)) = fields.remove("enabled") {
                disabled.push(format!("{kind_name}.{rname}"));
                continue;
            }
            resources.push(Resource { kind, name: rname.to_owned(), span: rspan, fields });
        }
    }
    (resources, disabled)
}

/// `[outputs]`: `name = "text with ${kind.name.output}"`, or a list of such texts of which the
/// first whose resources are all in the stack is used (so a switch that leaves a host out can
/// point the same output at the host that took over its job).
fn stack_outputs(root: &toml_edit::Table, ctx: &Ctx<'_>, disabled: &[String], d: &mut Diags) -> Vec<StackOutput> {
    let src = ctx.src;
    let Some(item) = root.get("outputs") else { return Vec::new() };
    let Some(t) = item.as_table_like() else {
        d.error(
            "wrong-type",
            item_span(item, src),
            "`outputs` must be a table",
            Some("[outputs]\nmap = \"${load_balancer.web.url}\"".into()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, v) in t.iter() {
        let span = item_span(v, src);
        let texts: Option<Vec<&str>> = match v.as_value() {
            Some(Value::String(s)) => Some(vec![s.value().as_str()]),
            Some(Value::Array(a)) => a.iter().map(Value::as_str).collect(),
            _ => None,
        };
        let Some(texts) = texts.filter(|t| !t.is_empty()) else {
            d.error(
                "wrong-type",
                span,
                format!("outputs.{name} must be a text or a list of texts"),
                Some("e.g. grafana = [\"http://${instance.logging.public_ip}:3000/\", \"...\"]".into()),
            );
            continue;
        };
        let texts: Vec<String> = texts.into_iter().filter_map(|t| ctx.subst_refs(t, span.clone(), d)).collect();
        let usable = texts
            .iter()
            .find(|t| crate::schema::interpolations(t).iter().all(|(a, _)| !disabled.iter().any(|x| x == a)));
        match usable {
            Some(t) => out.push(StackOutput { name: name.to_owned(), template: t.clone(), span }),
            None if !texts.is_empty() => d.error(
                "disabled-reference",
                span,
                format!("every text of outputs.{name} uses a resource that is disabled"),
                Some("add a text that uses only resources of this stack".into()),
            ),
            None => {}
        }
    }
    out
}
