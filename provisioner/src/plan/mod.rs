//! The plan: a value saying, per resource, what happens and why. The action comes from one pure
//! function over the kind's declaration (which fields force replacement); rendering (terraform
//! style, a separate security section, JSON) reads only the value.

use crate::schema::{own, FieldType, Kind, Update};
use crate::stack::{desired, Resource, Stack};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub mod security;
pub use security::SecurityChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
}

/// One attribute that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttrChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceChange {
    pub address: String,
    pub kind: String,
    pub action: Action,
    pub changes: Vec<AttrChange>,
    /// Why a replacement is needed: the fields that force it.
    pub replace_reasons: Vec<String>,
    /// Why AWS cannot make this change in one apply, when it cannot: nothing is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// A resource to be made whose name is global across AWS (see `Ops::global_name`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub global_name: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub resources: Vec<ResourceChange>,
    pub security: Vec<SecurityChange>,
    /// The monthly bill before and after (list prices of the stack's snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::Delta>,
}

impl Plan {
    /// (to add, to change, to destroy), a replacement counting as one add and one destroy.
    pub fn summary(&self) -> (usize, usize, usize) {
        let mut s = (0, 0, 0);
        for r in &self.resources {
            match r.action {
                Action::Create => s.0 += 1,
                Action::Update => s.1 += 1,
                Action::Replace => {
                    s.0 += 1;
                    s.2 += 1
                }
                Action::Delete => s.2 += 1,
                Action::NoOp => {}
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.resources.iter().any(|r| r.action != Action::NoOp)
    }

    /// The security changes that widen access (see [`security`]): `apply` asks before them.
    pub fn broadening(&self) -> Vec<&SecurityChange> {
        self.security.iter().filter(|s| s.broadening).collect()
    }

    /// The changes AWS cannot make in one apply, with why: `(address, reason)`.
    pub fn refused(&self) -> Vec<(&str, &str)> {
        self.resources.iter().filter_map(|r| Some((r.address.as_str(), r.refused.as_deref()?))).collect()
    }
}

/// What exists, by address: each resource's kind and attributes in the declared shape.
pub type Actual = BTreeMap<String, (&'static Kind, Value)>;

/// The one function that chooses an action: from the declaration's replacement flags and the
/// differences between desired and actual attributes. `None` = absent on that side.
pub fn diff(kind: &Kind, address: &str, desired: Option<&Value>, actual: Option<&Value>) -> ResourceChange {
    let mk = |action, changes, replace_reasons| ResourceChange {
        address: address.to_owned(),
        kind: kind.name.to_owned(),
        action,
        changes,
        replace_reasons,
        refused: None,
        global_name: matches!(action, Action::Create | Action::Replace) && kind.global_name,
    };
    match (desired, actual) {
        (None, None) => mk(Action::NoOp, vec![], vec![]),
        (Some(d), None) => mk(Action::Create, all_fields(kind, d, true), vec![]),
        (None, Some(a)) => mk(Action::Delete, all_fields(kind, a, false), vec![]),
        (Some(d), Some(a)) => {
            let mut changes = Vec::new();
            for f in kind.all_fields().filter(|f| f.update != Update::Setting) {
                let (before, after) =
                    (a.get(f.name).cloned().unwrap_or(Value::Null), d.get(f.name).cloned().unwrap_or(Value::Null));
                if !(if f.ordered { before == after } else { same(&f.ty, &before, &after) }) {
                    changes.push(AttrChange {
                        field: f.name.to_owned(),
                        before,
                        after,
                        forces_replacement: f.update == Update::Replace,
                    });
                }
            }
            if !changes.is_empty() {
                let forced = kind.ops.forces(&own(a), &own(d));
                for c in changes.iter_mut().filter(|c| forced.contains(&c.field.as_str())) {
                    c.forces_replacement = true;
                }
            }
            let reasons: Vec<String> =
                changes.iter().filter(|c| c.forces_replacement).map(|c| c.field.clone()).collect();
            let action = if changes.is_empty() {
                Action::NoOp
            } else if reasons.is_empty() {
                Action::Update
            } else {
                Action::Replace
            };
            let mut rc = mk(action, changes, reasons);
            if action == Action::Update {
                rc.refused = kind.ops.refuse(&own(a), &own(d));
            }
            rc
        }
    }
}

/// Equality that ignores order where order has no meaning (rules, associations).
fn same(ty: &FieldType, a: &Value, b: &Value) -> bool {
    match (ty, a, b) {
        (FieldType::List(_), Value::Array(x), Value::Array(y)) => {
            let key = |v: &Value| v.to_string();
            let mut x: Vec<String> = x.iter().map(key).collect();
            let mut y: Vec<String> = y.iter().map(key).collect();
            x.sort();
            y.sort();
            x == y
        }
        (FieldType::List(_), Value::Null, Value::Array(y)) | (FieldType::List(_), Value::Array(y), Value::Null) => {
            y.is_empty()
        }
        (FieldType::StringMap, Value::Null, Value::Object(m))
        | (FieldType::StringMap, Value::Object(m), Value::Null) => m.is_empty(),
        _ => a == b,
    }
}

fn all_fields(kind: &Kind, v: &Value, creating: bool) -> Vec<AttrChange> {
    kind.all_fields()
        .filter_map(|f| {
            let x = v.get(f.name).cloned().unwrap_or(Value::Null);
            if x.is_null() {
                return None;
            }
            let (before, after) = if creating { (Value::Null, x) } else { (x, Value::Null) };
            Some(AttrChange { field: f.name.to_owned(), before, after, forces_replacement: false })
        })
        .collect()
}

/// Plans `stack` against what exists: `actual` maps addresses (from the ownership tags) to
/// their attributes in the declared shape, `outputs` addresses to their `id` and outputs (for
/// `${kind.name.output}`; one not known yet stays as written, so it shows as a change).
/// Deletes come only from "exists, no longer declared".
pub fn plan(stack: &Stack, actual: &Actual, outputs: &Value) -> Plan {
    let mut p = Plan::default();
    let mut wanted = BTreeMap::new();
    let mut after: Vec<(String, &'static Kind, Value)> = Vec::new();
    // Each resource's desired attributes, once: every pass below reads them.
    let declared: Vec<(&Resource, Value)> = stack.resources.iter().map(|r| (r, desired(r, stack))).collect();
    // A derived field is known before apply (an image's digest): it wins over what exists.
    let derived: BTreeMap<(String, &str), Value> =
        declared
            .iter()
            .flat_map(|(r, d)| {
                r.kind.fields.iter().filter(|f| f.derived).filter_map(move |f| {
                    d.get(f.name).filter(|v| !v.is_null()).map(|v| ((r.address(), f.name), v.clone()))
                })
            })
            .collect();
    // Outputs a change makes anew (a function's published version) are not known until it is
    // applied: what uses them changes with it.
    let changing: BTreeSet<(String, &str)> = declared
        .iter()
        .filter(|(r, _)| !r.kind.changing_outputs.is_empty())
        .filter(|(r, d)| {
            let mut resolved = d.clone();
            crate::schema::substitute_all(&mut resolved, &|a: &str, o: &str| {
                let v = derived.get(&(a.to_owned(), o)).or_else(|| outputs.get(a)?.get(o))?;
                Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            });
            let change = diff(r.kind, &r.address(), Some(&resolved), actual.get(&r.address()).map(|(_, v)| v));
            matches!(change.action, Action::Update | Action::Replace)
        })
        .flat_map(|(r, _)| r.kind.changing_outputs.iter().map(move |o| (r.address(), *o)))
        .collect();
    let known = |a: &str, o: &str| {
        if changing.contains(&(a.to_owned(), o)) {
            return None;
        }
        let v = derived.get(&(a.to_owned(), o)).or_else(|| outputs.get(a)?.get(o))?;
        Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    // What the stack makes reachable from the internet (a listener on it is too).
    let public: BTreeSet<String> =
        declared.iter().filter(|(r, d)| security::exposed(r.kind, d)).map(|(r, _)| r.address()).collect();
    for (r, d) in declared {
        let addr = r.address();
        let mut resolved = d.clone();
        crate::schema::substitute_all(&mut resolved, &known);
        let have = actual.get(&addr).map(|(_, v)| v);
        let change = diff(r.kind, &addr, Some(&resolved), have);
        security::changes(r.kind, &addr, Some(&resolved), have, &public, &mut p.security);
        p.resources.push(change);
        after.push((addr.clone(), r.kind, resolved));
        wanted.insert(addr, (r.kind, d));
    }
    cascade_replacements(&mut p, &wanted);
    for (addr, (kind, a)) in actual {
        if stack.get(addr).is_some() {
            continue;
        }
        security::changes(kind, addr, None, Some(a), &public, &mut p.security);
        p.resources.push(diff(kind, addr, None, Some(a)));
    }
    p.cost = Some(cost(stack, actual, &after));
    p
}

/// The bill of what exists and of what the stack wants. Both sides are priced in the stack's
/// order (then what left the file), so a free tier is used up by the same resources on both and
/// an unchanged resource shows no difference.
fn cost(stack: &Stack, actual: &Actual, after: &[(String, &'static Kind, Value)]) -> crate::cost::Delta {
    use crate::cost::{breakdown, delta, Item};
    let region = |v: &Value| v.get("region").and_then(Value::as_str).unwrap_or(&stack.region).to_owned();
    let order: Vec<&String> = after
        .iter()
        .map(|(a, _, _)| a)
        .filter(|a| actual.contains_key(*a))
        .chain(actual.keys().filter(|a| stack.get(a).is_none()))
        .collect();
    // Settings are the tool's, never read back: what exists has them as the stack says (a
    // distribution's `traffic` decides which usage prices it on both sides).
    let wanted: BTreeMap<&String, &Value> = after.iter().map(|(a, _, v)| (a, v)).collect();
    let have: Vec<(String, &'static Kind, Value)> = order
        .into_iter()
        .filter_map(|a| {
            let (k, v) = actual.get(a)?;
            let mut v = v.clone();
            if let (Some(w), Some(obj)) = (wanted.get(a), v.as_object_mut()) {
                for f in k.all_fields().filter(|f| f.update == Update::Setting) {
                    if let Some(x) = w.get(f.name) {
                        obj.insert(f.name.to_owned(), x.clone());
                    }
                }
            }
            Some((a.clone(), *k, v))
        })
        .collect();
    // A cost function reads the kind's own fields (typed), the region apart.
    let priced = |side: &[(String, &'static Kind, Value)]| -> Vec<(String, &'static Kind, Value, String)> {
        side.iter().map(|(a, k, v)| (a.clone(), *k, own(v), region(v))).collect()
    };
    let (have, after) = (priced(&have), priced(after));
    fn items<'a>(side: &'a [(String, &'static Kind, Value, String)]) -> Vec<Item<'a>> {
        side.iter()
            .map(|(a, k, v, r)| Item { address: a.clone(), kind: k.name, cost: k.cost, attrs: v, region: r.clone() })
            .collect()
    }
    let (before, after) = (items(&have), items(&after));
    delta(&breakdown(&before, &stack.prices, &stack.usage), &breakdown(&after, &stack.prices, &stack.usage))
}

/// A resource that refers to a replaced one must follow it to the new id: through a field that
/// forces replacement it is replaced too, otherwise it is updated in place. Repeats until no
/// more change, so replacements travel down chains.
fn cascade_replacements(p: &mut Plan, wanted: &BTreeMap<String, (&'static Kind, Value)>) {
    loop {
        let replaced: Vec<String> =
            p.resources.iter().filter(|r| r.action == Action::Replace).map(|r| r.address.clone()).collect();
        let mut changed = false;
        for rc in p.resources.iter_mut().filter(|r| matches!(r.action, Action::NoOp | Action::Update)) {
            let Some((kind, d)) = wanted.get(&rc.address) else { continue };
            for f in kind.fields {
                let Some(v) = d.get(f.name) else { continue };
                let hit = crate::schema::refs(std::slice::from_ref(f), &json!({ f.name: v }))
                    .iter()
                    .any(|(t, _)| replaced.contains(t));
                if !hit || rc.changes.iter().any(|c| c.field == f.name) {
                    continue;
                }
                let forces = f.update == Update::Replace;
                rc.changes.push(AttrChange {
                    field: f.name.to_owned(),
                    before: v.clone(),
                    after: v.clone(),
                    forces_replacement: forces,
                });
                if forces {
                    rc.replace_reasons.push(f.name.to_owned());
                    rc.action = Action::Replace;
                } else if rc.action == Action::NoOp {
                    rc.action = Action::Update;
                }
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// A value as it would be written in a stack file: `"x"`, `[1, 2]`, `{ key = "v" }` (absent
/// fields left out).
fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            let fields: Vec<String> =
                m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{} = {}", key(k), show(v))).collect();
            if fields.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", fields.join(", "))
            }
        }
        other => other.to_string(),
    }
}

/// A table key, quoted when TOML needs it (`"provisioner:id"`).
fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_owned()
    } else {
        Value::String(k.to_owned()).to_string()
    }
}

/// The lines of one attribute change: lists and tables element by element, so a long rule list
/// shows what changed rather than two long lines.
fn attr_lines(action: Action, c: &AttrChange, width: usize) -> Vec<String> {
    let pad = " ".repeat(10);
    match (action, &c.before, &c.after) {
        (Action::Create | Action::Delete, _, _) => {
            let (sym, v) = if action == Action::Create { ('+', &c.after) } else { ('-', &c.before) };
            match v {
                Value::Array(items) if items.len() > 1 || items.iter().any(Value::is_object) => {
                    let mut out = vec![format!("      {sym} {:<width$} = [", c.field)];
                    out.extend(items.iter().map(|i| format!("{pad}{sym} {},", show(i))));
                    out.push(format!("{}]", " ".repeat(8)));
                    out
                }
                _ => vec![format!("      {sym} {:<width$} = {}", c.field, show(v))],
            }
        }
        (_, a, b) if a == b => {
            vec![format!("      ~ {:<width$} = {} (refers to a replaced resource)", c.field, show(b))]
        }
        (_, Value::Array(x), Value::Array(y)) => {
            let mut out = vec![format!("      ~ {:<width$} = [", c.field)];
            out.extend(x.iter().filter(|i| !y.contains(i)).map(|i| format!("{pad}- {},", show(i))));
            out.extend(y.iter().filter(|i| !x.contains(i)).map(|i| format!("{pad}+ {},", show(i))));
            let same = y.iter().filter(|i| x.contains(i)).count();
            if same > 0 {
                out.push(format!("{pad}  # ({same} unchanged)"));
            }
            out.push(format!("{}]", " ".repeat(8)));
            out
        }
        (_, Value::Object(x), Value::Object(y)) => {
            let mut out = vec![format!("      ~ {:<width$} = {{", c.field)];
            for (k, v) in x.iter().filter(|(k, _)| !y.contains_key(*k)) {
                out.push(format!("{pad}- {} = {}", key(k), show(v)));
            }
            for (k, v) in y {
                match x.get(k) {
                    None => out.push(format!("{pad}+ {} = {}", key(k), show(v))),
                    Some(old) if old != v => out.push(format!("{pad}~ {} = {} -> {}", key(k), show(old), show(v))),
                    Some(_) => {}
                }
            }
            out.push(format!("{}}}", " ".repeat(8)));
            out
        }
        (_, a, b) => vec![format!("      ~ {:<width$} = {} -> {}", c.field, show(a), show(b))],
    }
}

/// Renders the plan like terraform. `color` adds ANSI colours to the symbols.
pub fn render(p: &Plan, color: bool) -> String {
    let paint = |code: &str, s: &str| if color { format!("\u{1b}[{code}m{s}\u{1b}[0m") } else { s.to_owned() };
    let mut out = String::new();
    for r in p.resources.iter().filter(|r| r.action != Action::NoOp) {
        let (sym, verb) = match r.action {
            Action::Create => (paint("32", "+"), "will be created"),
            Action::Update => (paint("33", "~"), "will be updated in place"),
            Action::Replace => (paint("31", "-/+"), "must be replaced"),
            Action::Delete => (paint("31", "-"), "will be destroyed"),
            Action::NoOp => continue,
        };
        out.push_str(&format!("  # {} {verb}\n{sym:>3} {} {{\n", r.address, r.address));
        let width = r.changes.iter().map(|c| c.field.len()).max().unwrap_or(0);
        for c in &r.changes {
            let lines = attr_lines(r.action, c, width);
            for (i, line) in lines.into_iter().enumerate() {
                out.push_str(&line);
                if i == 0 && c.forces_replacement {
                    out.push_str(&paint("31", " # forces replacement"));
                }
                out.push('\n');
            }
        }
        if r.global_name {
            out.push_str("    # its name is global across AWS: asked for as <stack>-<name>-<account suffix>\n");
        }
        if let Some(why) = &r.refused {
            out.push_str(&paint("31", &format!("    # cannot be applied: {why}\n")));
        }
        out.push_str("    }\n\n");
    }
    out.push_str(&security::render(&p.security));
    let (a, c, d) = p.summary();
    if p.has_changes() {
        out.push_str(&format!("Plan: {a} to add, {c} to change, {d} to destroy.\n"));
    } else {
        out.push_str("No changes. The infrastructure matches the stack.\n");
    }
    if let Some(c) = &p.cost {
        out.push('\n');
        out.push_str(&crate::cost::render_delta(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::kinds::test_stack as stack;

    const BASE: &str = r#"
[stack]
name = "t"
region = "eu-central-1"
[vpc.main]
cidr = "10.0.0.0/16"
[subnet.a]
vpc = "vpc.main"
cidr = "10.0.1.0/24"
az = "a"
[security_group.web]
vpc = "vpc.main"
description = "web"
ingress = [{ protocol = "tcp", from_port = 443, cidr = "0.0.0.0/0" }]
"#;

    /// What exists when `s` was applied as declared.
    pub(super) fn actual_of(s: &Stack) -> Actual {
        s.resources.iter().map(|r| (r.address(), (r.kind, desired(r, s)))).collect()
    }

    #[test]
    fn everything_new_is_created_and_in_sync_is_no_change() {
        let s = stack(BASE);
        let p = plan(&s, &BTreeMap::new(), &Value::Null);
        assert_eq!(p.summary(), (3, 0, 0));
        assert!(p.resources.iter().all(|r| r.action == Action::Create));
        let p = plan(&s, &actual_of(&s), &Value::Null);
        assert!(!p.has_changes());
        assert!(render(&p, false).contains("No changes."));
    }

    #[test]
    fn in_place_and_forcing_changes_get_their_actions_and_symbols() {
        let old = stack(BASE);
        let new = stack(
            &BASE
                .replace("cidr = \"10.0.1.0/24\"", "cidr = \"10.0.2.0/24\"")
                .replace("cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/16\"\ndns_hostnames = false"),
        );
        let p = plan(&new, &actual_of(&old), &Value::Null);
        let by = |a: &str| p.resources.iter().find(|r| r.address == a).unwrap();
        assert_eq!(by("vpc.main").action, Action::Update);
        assert_eq!(by("subnet.a").action, Action::Replace);
        assert_eq!(by("subnet.a").replace_reasons, ["cidr"]);
        assert_eq!(by("security_group.web").action, Action::NoOp);
        assert_eq!(p.summary(), (1, 1, 1));
        let text = render(&p, false);
        assert!(text.contains("-/+ subnet.a"), "{text}");
        assert!(
            text.contains("~ cidr") && text.contains("\"10.0.1.0/24\" -> \"10.0.2.0/24\" # forces replacement"),
            "{text}"
        );
        assert!(text.contains("  ~ vpc.main") && text.contains("dns_hostnames = true -> false"), "{text}");
        assert!(text.contains("Plan: 1 to add, 1 to change, 1 to destroy."), "{text}");
    }

    #[test]
    fn resources_that_left_the_file_are_deleted_and_rule_changes_are_listed() {
        let old = stack(&format!("{BASE}\n[eip.old]\n"));
        let new = stack(&BASE.replace(
            "ingress = [{ protocol = \"tcp\", from_port = 443, cidr = \"0.0.0.0/0\" }]",
            "ingress = [{ protocol = \"tcp\", from_port = 80, cidr = \"0.0.0.0/0\", description = \"HTTP\" }]",
        ));
        let p = plan(&new, &actual_of(&old), &Value::Null);
        assert_eq!(p.resources.iter().find(|r| r.address == "eip.old").unwrap().action, Action::Delete);
        assert_eq!(p.security.len(), 2);
        let text = render(&p, false);
        assert!(text.contains("Security changes:\n  + security_group.web ingress tcp 80 0.0.0.0/0 (HTTP) [broadening, public]\n  - security_group.web ingress tcp 443 0.0.0.0/0\n"), "{text}");
        assert!(text.contains("  - eip.old {"), "{text}");
        // Lists change element by element, in stack-file notation.
        assert!(
            text.contains(
                "      ~ ingress = [\n          - { cidr = \"0.0.0.0/0\", from_port = 443, protocol = \"tcp\", self = false, to_port = 443 },\n          + { cidr = \"0.0.0.0/0\", description = \"HTTP\", from_port = 80, protocol = \"tcp\", self = false, to_port = 80 },\n        ]"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["resources"].as_array().unwrap().len(), 4);
    }

    /// A host added and one of two tasks removed: the plan prices both sides from the same
    /// snapshot. t3.small $0.024 an hour, 20 GB of gp3 at $0.0952, its public address; a task of
    /// 0.25 vCPU at $0.04656 and 0.5 GB at $0.00511 an hour (eu-central-1).
    #[test]
    fn a_plan_shows_what_it_does_to_the_monthly_bill() {
        let app = |tasks: u32, host: bool| {
            let host = if host { "[instance.h]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.p\"\n" } else { "" };
            stack(&format!(
                "{BASE}[subnet.p]\nvpc = \"vpc.main\"\ncidr = \"10.0.9.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n\
                 [ecs_cluster.c]\n[ecs_service.s]\ncluster = \"ecs_cluster.c\"\nimage = \"i\"\ndesired_count = {tasks}\n\
                 subnets = [\"subnet.a\"]\nsecurity_groups = [\"security_group.web\"]\n{host}"
            ))
        };
        let (old, new) = (app(2, false), app(1, true));
        let p = plan(&new, &actual_of(&old), &Value::Null);
        let host = 730.0 * 0.024 + 20.0 * 0.0952 + 730.0 * 0.005;
        let task = 730.0 * (0.25 * 0.04656 + 0.5 * 0.00511);
        let c = p.cost.as_ref().unwrap();
        assert!((c.delta - (host - task)).abs() < 1e-6, "{c:?}");
        assert!((c.before - 2.0 * task).abs() < 1e-6 && (c.after - (task + host)).abs() < 1e-6, "{c:?}");
        let by = |a: &str| c.resources.iter().find(|r| r.address == a).unwrap().delta;
        assert!((by("instance.h") - host).abs() < 1e-6 && (by("ecs_service.s") + task).abs() < 1e-6);
        assert_eq!(c.resources.len(), 2, "only what changes cost: {c:?}");
        let text = render(&p, false);
        assert!(text.contains("Monthly cost: $20.72 -> $33.44 (+$12.71; prices of "), "{text}");
        assert!(text.contains("instance.h        +$23.07  ($0.00 -> $23.07)"), "{text}");
        let json = serde_json::to_value(&p).unwrap();
        assert!((json["cost"]["delta"].as_f64().unwrap() - (host - task)).abs() < 1e-6, "{json}");

        let p = plan(&new, &actual_of(&new), &Value::Null);
        let c = p.cost.as_ref().unwrap();
        assert!(c.resources.is_empty() && c.delta == 0.0, "{c:?}");
        assert!(render(&p, false).contains("Monthly cost: $33.44 (unchanged; prices of "));
    }

    #[test]
    fn rule_order_does_not_matter() {
        let two = |a: &str, b: &str| {
            stack(&BASE.replace(
                "ingress = [{ protocol = \"tcp\", from_port = 443, cidr = \"0.0.0.0/0\" }]",
                &format!("ingress = [{a}, {b}]"),
            ))
        };
        let r1 = "{ protocol = \"tcp\", from_port = 443, cidr = \"0.0.0.0/0\" }";
        let r2 = "{ protocol = \"tcp\", from_port = 80, cidr = \"0.0.0.0/0\" }";
        let p = plan(&two(r1, r2), &actual_of(&two(r2, r1)), &Value::Null);
        assert!(!p.has_changes());
        assert!(p.security.is_empty());
    }

    #[test]
    fn an_ordered_list_is_compared_in_order() {
        let acl = |groups: &str| {
            stack(&format!(
                "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[waf_web_acl.web]\nmanaged_rule_groups = [{groups}]\n"
            ))
        };
        let (a, b) = ("\"AWSManagedRulesCommonRuleSet\"", "\"AWSManagedRulesKnownBadInputsRuleSet\"");
        let p = plan(&acl(&format!("{a}, {b}")), &actual_of(&acl(&format!("{b}, {a}"))), &Value::Null);
        assert!(p.has_changes(), "rule priorities changed: {p:?}");
        let p = plan(&acl(&format!("{a}, {b}")), &actual_of(&acl(&format!("{a}, {b}"))), &Value::Null);
        assert!(!p.has_changes());
    }
}
