//! A plan as a graph of typed steps (address + phase): creates after what they refer to,
//! deletes after what refers to them, the halves of a replacement, security-group peer rules
//! once both groups exist, and the orders AWS needs that no reference shows.

use super::inventory::Inventory;
use crate::plan::{Action, Plan};
use crate::schema::{refs, Kind};
use crate::stack::{desired, Stack};
use crate::walk::Node;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

/// What a step does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Create,
    Update,
    /// A resource leaving the stack.
    Delete,
    /// The old half of a replacement (deleted before the new half is made).
    DeleteOld,
    /// Rules naming groups created in the same apply, once those exist.
    Peers,
    /// Rules naming other groups removed before any of them is deleted.
    Unpeer,
}

/// A step of an apply: a resource and what is done to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    pub address: String,
    pub phase: Phase,
}

impl StepId {
    fn new(address: &str, phase: Phase) -> Self {
        Self { address: address.to_owned(), phase }
    }

    pub(super) fn deletes(&self) -> bool {
        matches!(self.phase, Phase::Delete | Phase::DeleteOld)
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.address;
        match self.phase {
            Phase::Create | Phase::Update | Phase::Delete => f.write_str(a),
            Phase::DeleteOld => write!(f, "{a} (old)"),
            Phase::Peers => write!(f, "{a} (peer rules)"),
            Phase::Unpeer => write!(f, "{a} (drop peer rules)"),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) kind: &'static Kind,
    /// Where it runs: the resource's desired region, or for deletes the one it was found in.
    pub(super) region: String,
}

/// The steps of an apply and the order between them.
pub(super) struct StepGraph {
    pub(super) nodes: Vec<(Node<StepId>, Step)>,
    /// `(a, b)`: step `a` starts after step `b` succeeded.
    pub(super) edges: Vec<(StepId, StepId)>,
    /// Desired attributes by address, references as addresses.
    pub(super) want: BTreeMap<String, Value>,
}

/// The steps of applying `plan` and the `(a, b)` "a waits for b" edges between them (for
/// measuring the critical path).
pub fn graph(stack: &Stack, inv: &Inventory, plan: &Plan) -> (Vec<StepId>, Vec<(StepId, StepId)>) {
    let g = steps(stack, inv, plan);
    (g.nodes.into_iter().map(|(n, _)| n.id).collect(), g.edges)
}

/// Builds the step graph of a plan.
pub(super) fn steps(stack: &Stack, inv: &Inventory, plan: &Plan) -> StepGraph {
    let actual = inv.actual();
    let mut want: BTreeMap<String, Value> = BTreeMap::new();
    for r in &stack.resources {
        want.insert(r.address(), desired(r, stack));
    }
    let action: BTreeMap<&str, Action> = plan.resources.iter().map(|r| (r.address.as_str(), r.action)).collect();
    let kind_of = |a: &str| stack.get(a).map(|r| r.kind).or_else(|| inv.live.get(a).map(|f| f.kind));
    let fwd = |a: &str| matches!(action.get(a), Some(Action::Create | Action::Update | Action::Replace));
    let del = |a: &str| match action.get(a) {
        Some(Action::Replace) => Some(StepId::new(a, Phase::DeleteOld)),
        Some(Action::Delete) => Some(StepId::new(a, Phase::Delete)),
        _ => None,
    };
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    let region = |id: &StepId| match (id.deletes() || id.phase == Phase::Unpeer, inv.live.get(&id.address)) {
        (true, Some(f)) => f.region.clone(),
        _ => match (stack.get(&id.address), inv.live.get(&id.address)) {
            (Some(r), _) => stack.region_of(r).to_owned(),
            (None, Some(f)) => f.region.clone(),
            (None, None) => stack.region.clone(),
        },
    };
    let mut node = |id: StepId, kind: &'static Kind, action: Action| {
        let region = region(&id);
        nodes.push((Node { id, action }, Step { kind, region }));
    };
    for rc in plan.resources.iter().filter(|r| r.action != Action::NoOp) {
        let a = rc.address.as_str();
        let Some(kind) = kind_of(a) else { continue };
        let wanted_refs = want.get(a).map(|v| refs(kind.fields, v)).unwrap_or_default();
        let actual_refs = actual.get(a).map(|(_, v)| refs(kind.fields, v)).unwrap_or_default();
        if fwd(a) {
            let (phase, act) = if rc.action == Action::Update {
                (Phase::Update, Action::Update)
            } else {
                (Phase::Create, Action::Create)
            };
            let me = StepId::new(a, phase);
            node(me.clone(), kind, act);
            for (t, peer) in &wanted_refs {
                if !peer && fwd(t) {
                    let phase =
                        if action.get(t.as_str()) == Some(&Action::Update) { Phase::Update } else { Phase::Create };
                    edges.push((me.clone(), StepId::new(t, phase)));
                }
            }
            let late: Vec<&String> = wanted_refs
                .iter()
                .filter(|(t, peer)| {
                    *peer && t != a && matches!(action.get(t.as_str()), Some(Action::Create | Action::Replace))
                })
                .map(|(t, _)| t)
                .collect();
            if !late.is_empty() {
                let id = StepId::new(a, Phase::Peers);
                node(id.clone(), kind, Action::Update);
                edges.push((id.clone(), me.clone()));
                edges.extend(late.into_iter().map(|t| (id.clone(), StepId::new(t, Phase::Create))));
            }
        }
        if let Some(d) = del(a) {
            node(d.clone(), kind, Action::Delete);
            if rc.action == Action::Replace && kind.create_before_delete {
                edges.push((d.clone(), StepId::new(a, Phase::Create)));
            } else if rc.action == Action::Replace {
                edges.push((StepId::new(a, Phase::Create), d.clone()));
            }
            if actual_refs.iter().any(|(t, peer)| *peer && t != a) {
                let id = StepId::new(a, Phase::Unpeer);
                node(id.clone(), kind, Action::Update);
                edges.push((d.clone(), id));
            }
        }
    }
    // Deletions wait for whatever still refers to the resource to go or let go first.
    for rc in plan.resources.iter() {
        let z = rc.address.as_str();
        let Some(kind) = kind_of(z) else { continue };
        for (x, peer) in actual.get(z).map(|(_, v)| refs(kind.fields, v)).unwrap_or_default() {
            let Some(dx) = del(&x) else { continue };
            if x == z {
                continue;
            }
            if peer {
                if del(z).is_some() {
                    edges.push((dx.clone(), StepId::new(z, Phase::Unpeer)));
                }
            } else if let Some(dz) = del(z) {
                edges.push((dx.clone(), dz));
            }
            // A plain delete also waits for in-place updates that drop the reference, and so
            // does the old half of a replacement whose new half comes first (the updates move
            // to it); the old half of any other replacement cannot: those updates wait for its
            // new half, which waits for the old half to go.
            let old_goes_last =
                action.get(x.as_str()) == Some(&Action::Replace) && kind_of(&x).is_some_and(|k| k.create_before_delete);
            if (action.get(x.as_str()) == Some(&Action::Delete) || old_goes_last) && rc.action == Action::Update {
                edges.push((dx, StepId::new(z, Phase::Update)));
            }
        }
    }
    // Orders no reference shows (see `Ops::after`): made after, deleted before.
    let phase = |a: &str| if action.get(a) == Some(&Action::Update) { Phase::Update } else { Phase::Create };
    for rc in plan.resources.iter().filter(|r| r.action != Action::NoOp) {
        let a = rc.address.as_str();
        let Some(after) = kind_of(a).map(|k| k.after).filter(|k| !k.is_empty()) else { continue };
        for b in plan.resources.iter().map(|r| r.address.as_str()) {
            if a == b || !kind_of(b).is_some_and(|k| after.contains(&k.name)) {
                continue;
            }
            if fwd(a) && fwd(b) {
                add_unless_cycle(&mut edges, StepId::new(a, phase(a)), StepId::new(b, phase(b)));
            }
            if let (Some(da), Some(db)) = (del(a), del(b)) {
                add_unless_cycle(&mut edges, db, da);
            }
        }
    }
    // A value read back that is another resource's output (a function version's ARN in a
    // distribution, written `${lambda_function.edge.version_arn}`) orders deletes as the
    // interpolation ordered creates: the user goes first.
    let by_output: BTreeMap<&str, &str> = inv
        .live
        .iter()
        .flat_map(|(a, f)| f.live.outputs.values().filter_map(Value::as_str).map(move |v| (v, a.as_str())))
        .filter(|(v, _)| v.len() > 20)
        .collect();
    for (z, f) in &inv.live {
        let Some(dz) = del(z) else { continue };
        let mut used = BTreeSet::new();
        crate::schema::each_string(&f.live.attrs, &mut |s| {
            if let Some(x) = by_output.get(s).filter(|x| **x != z.as_str()) {
                used.insert(*x);
            }
        });
        for x in used {
            if let Some(dx) = del(x) {
                add_unless_cycle(&mut edges, dx, dz.clone());
            }
        }
    }
    edges.sort();
    edges.dedup();
    StepGraph { nodes, edges, want }
}

/// Adds "`a` waits for `b`" unless `b` already waits for `a`, directly or not: orders that no
/// reference declares (see `Ops::after`, values that are outputs) only add to the declared
/// ones, and never lock a walk in a cycle.
pub(super) fn add_unless_cycle(edges: &mut Vec<(StepId, StepId)>, a: StepId, b: StepId) {
    let mut seen = BTreeSet::new();
    let mut todo = vec![&b];
    while let Some(x) = todo.pop() {
        if *x == a {
            return;
        }
        if seen.insert(x) {
            todo.extend(edges.iter().filter(|(from, _)| from == x).map(|(_, to)| to));
        }
    }
    edges.push((a, b));
}
