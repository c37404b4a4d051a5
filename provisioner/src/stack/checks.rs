//! Checks across resources: references name existing resources of the right kind, outputs used
//! in strings exist, and references form no cycle.

use super::{Resource, Span, Stack, Val};
use crate::diag::{closest, Diags};
use crate::schema::FieldType;
use petgraph::graph::DiGraph;
use std::collections::BTreeMap;

/// Every reference names an existing resource of an allowed kind.
pub(super) fn references(stack: &Stack, d: &mut Diags) {
    for r in &stack.resources {
        for f in r.kind.fields {
            let Some((v, s)) = r.fields.get(f.name) else { continue };
            ref_value(stack, &f.ty, v, s, &r.address(), f.name, d);
        }
    }
}

fn ref_value(stack: &Stack, ty: &FieldType, v: &Val, span: &Span, from: &str, field: &str, d: &mut Diags) {
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
            } else if stack.disabled.iter().any(|x| x == s) {
                d.error(
                    "disabled-reference",
                    span.clone(),
                    format!("{from}.{field} refers to `{s}`, which is disabled (enabled = false)"),
                    Some(format!("enable `{s}`, or disable `{from}` with it")),
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
                ref_value(stack, inner, iv, is, from, field, d);
            }
        }
        (FieldType::Table(fields), Val::Table(t)) => {
            for fd in *fields {
                if let Some((iv, is)) = t.get(fd.name) {
                    ref_value(stack, &fd.ty, iv, is, from, &format!("{field}.{}", fd.name), d);
                }
            }
        }
        _ => {}
    }
}

/// Every `${kind.name.output}` names a resource of this stack and an output its kind has.
pub(super) fn outputs(stack: &Stack, d: &mut Diags) {
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
            interpolations(stack, &r.address(), s, span, d);
        }
    }
}

/// The same for the texts of `[outputs]`.
pub(super) fn stack_outputs(stack: &Stack, d: &mut Diags) {
    for o in &stack.outputs {
        interpolations(stack, &format!("outputs.{}", o.name), &o.template, &o.span, d);
    }
}

fn interpolations(stack: &Stack, from: &str, s: &str, span: &Span, d: &mut Diags) {
    for (address, output) in crate::schema::interpolations(s) {
        let Some(target) = stack.get(address) else {
            let names: Vec<String> = stack.resources.iter().map(Resource::address).collect();
            d.error(
                "missing-reference",
                span.clone(),
                format!("{from} uses `${{{address}.{output}}}`, but `{address}` is not in this stack"),
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
                format!("{from} uses `${{{address}.{output}}}`, but a {} has no output `{output}`", target.kind.name),
                closest(output, outputs.iter().copied()).or(Some(format!(
                    "outputs of {}: {}",
                    target.kind.name,
                    outputs.join(", ")
                ))),
            );
        }
    }
}

/// What AWS's tagging rules (shared by every service this tool uses) say of one tag, if it
/// breaks them: keys of 1 to 128 and values of up to 256 characters, letters, digits, spaces
/// and `_ . : / = + - @`; no `aws:` key (AWS's own); not this tool's ownership tags.
pub(super) fn tag_problem(key: &str, value: &str) -> Option<String> {
    let allowed = |s: &str| s.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c));
    // Another resource's output (`${kind.name.output}`) is known only at apply: the text
    // around it is checked, its length is not.
    let text = crate::schema::substitute(value, &|_, _| Some(String::new()));
    let (outputs, value) = (text != value, text.as_str());
    let (k, v) = (key.chars().count(), if outputs { 0 } else { value.chars().count() });
    if !(1..=128).contains(&k) {
        Some(format!("tag key `{key}` has {k} characters; AWS takes 1 to 128"))
    } else if v > 256 {
        Some(format!("the value of tag `{key}` has {v} characters; AWS takes up to 256"))
    } else if !allowed(key) || !allowed(value) {
        Some(format!("tag `{key}` = `{value}` has a character AWS refuses in tags"))
    } else if key.to_ascii_lowercase().starts_with("aws:") {
        Some(format!("tag key `{key}`: keys starting with `aws:` are AWS's own"))
    } else if key.starts_with("provisioner:") {
        Some(format!("tag key `{key}`: `provisioner:` keys are this tool's ownership tags"))
    } else {
        None
    }
}

/// Every resource's own tags against AWS's rules ([`tag_problem`]), and the count a resource
/// ends up with (the stack's, its own and the two ownership tags) against AWS's 50.
pub(super) fn tags(stack: &Stack, d: &mut Diags) {
    for r in &stack.resources {
        let Some((Val::Table(own), span)) = r.fields.get("tags") else { continue };
        for (k, (v, s)) in own {
            if let Some(p) = tag_problem(k, v.as_str().unwrap_or_default()) {
                d.error("bad-tag", s.clone(), format!("{}: {p}", r.address()), None);
            }
        }
        let n = stack.tags.keys().chain(own.keys()).collect::<std::collections::BTreeSet<_>>().len() + 2;
        if n > 50 {
            d.error(
                "too-many-tags",
                span.clone(),
                format!(
                    "{} would carry {n} tags (the stack's, its own, two of this tool's); AWS takes 50",
                    r.address()
                ),
                None,
            );
        }
    }
}

/// References must form a DAG: a cycle is reported once, with its path.
pub(super) fn cycles(stack: &Stack, d: &mut Diags) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OpError;
    use crate::schema::{Field, FieldType, Kind, Update};
    use crate::stack::Val;
    use serde_json::Value;
    use std::collections::BTreeMap;

    static NODE: Kind = Kind::new("node", "test kind", &NoAws)
        .fields(&[Field::optional("after", FieldType::Ref(&["node"]), None, Update::InPlace, "dependency")])
        .outputs(&[]);

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
        let stack = |rs| Stack {
            file: "t".into(),
            name: "t".into(),
            region: "r".into(),
            tags: BTreeMap::new(),
            resources: rs,
            disabled: vec![],
            outputs: vec![],
            prices: crate::cost::prices::PriceBook::embedded(),
            usage: BTreeMap::new(),
            variables: BTreeMap::new(),
        };
        let mut d = Diags::default();
        cycles(
            &stack(vec![node("a", Some("node.b"), 1), node("b", Some("node.c"), 5), node("c", Some("node.a"), 9)]),
            &mut d,
        );
        assert_eq!(d.items.len(), 1);
        assert_eq!(d.items[0].code, "cycle");
        assert!(d.items[0].message.contains("node.a -> node.b -> node.c -> node.a"), "{}", d.items[0].message);
        let mut d = Diags::default();
        cycles(&stack(vec![node("a", Some("node.a"), 1)]), &mut d);
        assert_eq!(d.items.len(), 1, "a self-reference is a cycle");
        let mut d = Diags::default();
        cycles(&stack(vec![node("a", Some("node.b"), 1), node("b", Some("node.c"), 5), node("c", None, 9)]), &mut d);
        assert!(d.is_empty());
    }
}
