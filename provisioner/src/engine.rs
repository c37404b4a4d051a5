//! The engine: finds what a stack owns (by tag, one describe per kind present), turns it into
//! the declared shape for the plan, and carries a plan out through the kinds' operations as a
//! graph of steps. It knows no kind by name: everything comes from the declarations.

use crate::error::{settle, Class, OpError};
use crate::kinds;
use crate::plan::{Action, Actual, Plan};
use crate::provider::{Cx, Live, ID_TAG, STACK_TAG};
use crate::schema::{drop_peer_items, refs, visit_refs, Kind};
use crate::stack::{desired, Stack, Val};
use crate::walk::{walk, Executor, Node, Progress, Report, WalkOptions};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One resource the stack owns: its kind, the region it lives in, and what was read.
#[derive(Debug, Clone)]
pub struct Found {
    pub kind: &'static Kind,
    pub region: String,
    pub live: Live,
}

/// What the stack owns, by address. A second resource claiming an address (a duplicate) gets
/// the address `kind.name#id`, so the plan deletes it.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub live: BTreeMap<String, Found>,
    /// The stack's region: a resource found elsewhere has its `region` attribute.
    pub home: String,
    /// Kinds not read, and why: an endpoint other than AWS's that lacks their API, for kinds
    /// the stack does not declare (see [`discover`]).
    pub unread: Vec<String>,
}

impl Inventory {
    fn ids(&self) -> BTreeMap<String, String> {
        self.live.iter().map(|(a, f)| (a.clone(), f.live.id.clone())).collect()
    }

    /// Attributes in the declared shape with references as addresses: what `plan` compares.
    /// Ownership tags are bookkeeping and left out.
    pub fn actual(&self) -> Actual {
        // By id and kind: kinds may share ids (an association is known by its load balancer's).
        let by_id: BTreeMap<(&str, &str), &str> = self
            .live
            .iter()
            .filter(|(a, _)| !a.contains('#'))
            .map(|(a, f)| ((f.live.id.as_str(), f.kind.name), a.as_str()))
            .collect();
        self.live
            .iter()
            .map(|(addr, Found { kind, region, live: l })| {
                let mut v = l.attrs.clone();
                v["region"] = if *region == self.home { Value::Null } else { json!(region) };
                crate::schema::visit_refs_of_kinds(kind.fields, &mut v, &mut |x, kinds| {
                    let id = x.as_str().unwrap_or_default();
                    if let Some(a) = kinds.iter().find_map(|k| by_id.get(&(id, *k))) {
                        *x = json!(a);
                    }
                });
                if let Some(Value::Object(tags)) = v.get_mut("tags") {
                    tags.retain(|k, _| !k.starts_with("provisioner:"));
                }
                (kind.normalize)(&mut v);
                (addr.clone(), (*kind, v))
            })
            .collect()
    }

    /// The regions other than the stack's where something was found.
    pub fn elsewhere(&self) -> BTreeSet<String> {
        self.live.values().map(|f| f.region.clone()).filter(|r| *r != self.home).collect()
    }

    /// Each resource's id and declared outputs.
    pub fn outputs(&self) -> Value {
        Value::Object(
            self.live
                .iter()
                .map(|(a, f)| {
                    let mut o = Map::new();
                    o.insert("id".into(), json!(f.live.id));
                    o.extend(f.live.outputs.clone());
                    (a.clone(), Value::Object(o))
                })
                .collect(),
        )
    }
}

/// Retries a read while AWS throttles, with full-jitter backoff, for up to `limit`.
async fn with_retry<T, F, Fut>(limit: Duration, mut f: F) -> Result<T, OpError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OpError>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_millis(12_800));
    loop {
        match f().await {
            Err(e) if e.class == Class::Retryable => {
                let delay = backoff.next_delay();
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// The regions a stack may own resources in: its own and every one a resource names.
pub fn regions(stack: &Stack) -> Vec<String> {
    let mut r: BTreeSet<String> = stack.resources.iter().map(|x| stack.region_of(x).to_owned()).collect();
    r.insert(stack.region.clone());
    r.into_iter().collect()
}

/// Finds everything `stack` owns: every kind discovers its own resources in every region the
/// stack uses and in `also` (regions it used before), all at once (one discovery pass, so a
/// service's kinds can share one read).
///
/// An endpoint other than AWS's (`AWS_ENDPOINT_URL`: an emulator) may lack a service or an API
/// (moto has no CloudFront VPC origins). When such an endpoint answers a kind's discovery
/// without an AWS error code, and the stack declares no resource of that kind, the kind is not
/// read and [`Inventory::unread`] says so; against AWS itself, or for a kind the stack uses,
/// every failure stays an error.
pub async fn discover(cx: &Cx, stack: &Stack, also: &BTreeSet<String>) -> Result<Inventory, OpError> {
    let limit = Duration::from_secs(120);
    let pass = cx.discovery_pass();
    let mut all: BTreeSet<String> = regions(stack).into_iter().collect();
    all.extend(also.iter().cloned());
    let jobs: Vec<(&'static Kind, String)> =
        all.into_iter().flat_map(|r| kinds::all().iter().map(move |k| (*k, r.clone()))).collect();
    let declared: BTreeSet<&str> = stack.resources.iter().map(|r| r.kind.name).collect();
    let declared = &declared;
    let found = futures::future::try_join_all(jobs.into_iter().map(|(k, region)| {
        let cx = pass.in_region(&region);
        async move {
            match with_retry(limit, || k.ops.discover(&cx)).await {
                Ok(l) => Ok((k, region, l, None)),
                Err(e)
                    if cx.endpoint_url().is_some()
                        && e.code.is_none()
                        && e.class == Class::Fatal
                        && !declared.contains(k.name) =>
                {
                    let why =
                        format!("{} in {region}: the endpoint answered {} without an AWS error code", k.name, e.op);
                    Ok((k, region, Vec::new(), Some(why)))
                }
                Err(e) => Err(e),
            }
        }
    }))
    .await?;
    let mut inv = Inventory { home: stack.region.clone(), ..Inventory::default() };
    for (kind, region, lives, unread) in found {
        inv.unread.extend(unread);
        for l in lives {
            let mut addr = l.address.clone();
            // An address that is not this kind's (a hand-edited tag) cannot be planned as
            // declared: it is kept under the kind, so it is deleted.
            if addr.split_once('.').is_none_or(|(k, n)| k != kind.name || n.is_empty()) {
                addr = format!("{}.{}", kind.name, l.id);
            }
            if inv.live.contains_key(&addr) {
                addr = format!("{addr}#{}", l.id);
            }
            inv.live.insert(addr, Found { kind, region: region.clone(), live: l });
        }
    }
    Ok(inv)
}

/// Plans `stack` against the inventory.
pub fn plan(stack: &Stack, inv: &Inventory) -> Plan {
    crate::plan::plan(stack, &inv.actual(), &inv.outputs())
}

/// The resources `plan` deletes (or replaces) that AWS will not delete as they are, each with
/// what lifts the protection: checked before an apply deletes anything, since a walk would
/// first delete what hangs off them (a pool's users, a table's replicas) and then fail.
pub fn protected(inv: &Inventory, plan: &Plan) -> Vec<(String, &'static str)> {
    plan.resources
        .iter()
        .filter(|r| matches!(r.action, Action::Delete | Action::Replace))
        .filter_map(|r| {
            let f = inv.live.get(&r.address)?;
            f.kind.ops.protected(&f.live.attrs).map(|how| (r.address.clone(), how))
        })
        .collect()
}

/// Plans `stack` leaving `keep` and everything they refer to, directly or not, as they are
/// (a destroy that keeps what is protected and what it needs); also returns all it keeps.
pub fn plan_keeping(stack: &Stack, inv: &Inventory, keep: &[String]) -> (Plan, BTreeSet<String>) {
    let actual = inv.actual();
    let mut kept = BTreeSet::new();
    let mut todo = keep.to_vec();
    while let Some(a) = todo.pop() {
        if let (true, Some((k, v))) = (kept.insert(a.clone()), actual.get(&a)) {
            todo.extend(refs(k.fields, v).into_iter().map(|(t, _)| t).filter(|t| actual.contains_key(t)));
        }
    }
    let rest: Actual = actual.into_iter().filter(|(a, _)| !kept.contains(a)).collect();
    (crate::plan::plan(stack, &rest, &inv.outputs()), kept)
}

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

    fn deletes(&self) -> bool {
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
struct Step {
    kind: &'static Kind,
    /// Where it runs: the resource's desired region, or for deletes the one it was found in.
    region: String,
}

/// The steps of an apply and the order between them.
struct StepGraph {
    nodes: Vec<(Node<StepId>, Step)>,
    /// `(a, b)`: step `a` starts after step `b` succeeded.
    edges: Vec<(StepId, StepId)>,
    /// Desired attributes by address, references as addresses.
    want: BTreeMap<String, Value>,
}

/// The steps of applying `plan` and the `(a, b)` "a waits for b" edges between them (for
/// measuring the critical path).
pub fn graph(stack: &Stack, inv: &Inventory, plan: &Plan) -> (Vec<StepId>, Vec<(StepId, StepId)>) {
    let g = steps(stack, inv, plan);
    (g.nodes.into_iter().map(|(n, _)| n.id).collect(), g.edges)
}

/// Builds the step graph of a plan.
fn steps(stack: &Stack, inv: &Inventory, plan: &Plan) -> StepGraph {
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
            if rc.action == Action::Replace && kind.ops.create_before_delete() {
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
            let old_goes_last = action.get(x.as_str()) == Some(&Action::Replace)
                && kind_of(&x).is_some_and(|k| k.ops.create_before_delete());
            if (action.get(x.as_str()) == Some(&Action::Delete) || old_goes_last) && rc.action == Action::Update {
                edges.push((dx, StepId::new(z, Phase::Update)));
            }
        }
    }
    // Orders no reference shows (see `Ops::after`): made after, deleted before.
    let phase = |a: &str| if action.get(a) == Some(&Action::Update) { Phase::Update } else { Phase::Create };
    for rc in plan.resources.iter().filter(|r| r.action != Action::NoOp) {
        let a = rc.address.as_str();
        let Some(after) = kind_of(a).map(|k| k.ops.after()).filter(|k| !k.is_empty()) else { continue };
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
fn add_unless_cycle(edges: &mut Vec<(StepId, StepId)>, a: StepId, b: StepId) {
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

/// Carries steps out against AWS, keeping ids and last-applied attributes as it goes.
struct Exec {
    cx: Cx,
    steps: BTreeMap<StepId, Step>,
    /// Desired attributes by address, references as addresses.
    want: BTreeMap<String, Value>,
    ids: Mutex<BTreeMap<String, String>>,
    /// Attributes as they are live (id space), by address.
    have: Mutex<BTreeMap<String, Value>>,
    /// Id and attributes of the old halves of replacements whose new half is made first, by
    /// address (the address's id is the new one's once it exists).
    old: BTreeMap<String, (String, Value)>,
    /// Outputs (`id` included) by address, for `${kind.name.output}`.
    outputs: Mutex<BTreeMap<String, Map<String, Value>>>,
    /// Kind and region of every resource the stack declares or owns, to read one again.
    places: BTreeMap<String, Step>,
    /// Per step: attempts so far and when the first began.
    attempts: Mutex<BTreeMap<StepId, (u32, std::time::Instant)>>,
    created: Mutex<Vec<(String, String)>>,
    /// This run, for client tokens.
    run: u64,
}

impl Exec {
    /// Desired attributes with references resolved to ids and ownership tags added; rules
    /// naming a group without an id yet are left for the peer step (or fail if `all_peers`).
    fn resolve(&self, id: &StepId, step: &Step, all_peers: bool) -> Result<Value, OpError> {
        let mut v = self
            .want
            .get(&id.address)
            .cloned()
            .ok_or_else(|| OpError::fatal("resolve", format!("{} is not in the stack", id.address)))?;
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !all_peers {
            drop_peer_items(step.kind.fields, &mut v, &|t| ids.contains_key(t));
        }
        let mut missing = None;
        visit_refs(step.kind.fields, &mut v, &mut |x, _| match x.as_str().and_then(|a| ids.get(a)) {
            Some(id) => *x = json!(id),
            None => missing = x.as_str().map(str::to_owned),
        });
        if let Some(m) = missing {
            return Err(OpError::retryable("resolve", format!("{m} has no id yet")));
        }
        let outputs = self.outputs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let known = |a: &str, o: &str| {
            let v = outputs.get(a)?.get(o)?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        crate::schema::substitute_all(&mut v, &known);
        if let Some(m) = crate::schema::interpolated(&v).first() {
            return Err(OpError::retryable("resolve", format!("{m} has no such output yet")));
        }
        // Common fields are the engine's (where it runs is the context's region): a kind sees
        // only its own.
        if let Value::Object(m) = &mut v {
            for f in crate::schema::COMMON {
                m.remove(f.name);
            }
        }
        if let Some(Value::Object(tags)) = v.get_mut("tags") {
            tags.insert(STACK_TAG.into(), json!(self.cx.stack));
            tags.insert(ID_TAG.into(), json!(id.address));
        }
        Ok(v)
    }

    /// After a failed attempt the resource may be half made: read it again (one describe of
    /// its kind) so the retry continues from what exists instead of creating a second one.
    /// Also how the outputs of a resource made in this run become known.
    async fn refresh(&self, address: &str, step: &Step) -> Result<(), OpError> {
        let lives = step.kind.ops.discover(&self.cx.in_region(&step.region)).await?;
        // The old half of a replacement made new-first is not what a retry continues from.
        let old = self.old.get(address).map(|(id, _)| id.as_str());
        let found: Vec<&Live> = lives.iter().filter(|l| l.address == address && Some(l.id.as_str()) != old).collect();
        let (mut ids, mut have, mut outputs) = (
            self.ids.lock().unwrap_or_else(|p| p.into_inner()),
            self.have.lock().unwrap_or_else(|p| p.into_inner()),
            self.outputs.lock().unwrap_or_else(|p| p.into_inner()),
        );
        if let Some(l) = found.first() {
            ids.insert(address.to_owned(), l.id.clone());
            have.insert(address.to_owned(), l.attrs.clone());
            let mut o = l.outputs.clone();
            o.insert("id".into(), json!(l.id));
            outputs.insert(address.to_owned(), o);
        }
        Ok(())
    }

    /// Reads again the resources whose outputs `want` uses and that were made in this run
    /// (their outputs are known only from a read).
    async fn learn_outputs(&self, want: &Value) -> Result<(), OpError> {
        for target in crate::schema::interpolated(want) {
            let known = self.outputs.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&target);
            let made = self.ids.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&target);
            if let (false, true, Some(place)) = (known, made, self.places.get(&target)) {
                self.refresh(&target, place).await?;
            }
        }
        Ok(())
    }

    /// The client token of a create: the same for every attempt of this run (the SDK's and the
    /// walker's retries), new in the next run. A rerun after a crash is kept from duplicating by
    /// tag-at-birth and discovery, and a fresh token lets a resource deleted out of band be
    /// made again (an old token would answer the deleted one).
    fn token(&self, address: &str, want: &Value) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.cx.stack, address, want.to_string(), self.run).hash(&mut h);
        format!("provisioner-{:016x}", h.finish())
    }
}

impl Exec {
    /// Records a resource made in this run under `address`.
    fn made(&self, address: &str, id: &str) {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).insert(address.to_owned(), id.to_owned());
        // Its other outputs are read when something uses them.
        self.outputs.lock().unwrap_or_else(|p| p.into_inner()).remove(address);
        self.created.lock().unwrap_or_else(|p| p.into_inner()).push((address.to_owned(), id.to_owned()));
    }
}

#[async_trait]
impl Executor<StepId> for Exec {
    async fn execute(&self, node: &Node<StepId>) -> Result<(), OpError> {
        let sid = &node.id;
        let step = self.steps.get(sid).ok_or_else(|| OpError::fatal("walk", format!("unknown step {sid}")))?;
        let (attempt, first) = {
            let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let n = a.entry(sid.clone()).or_insert((0, std::time::Instant::now()));
            n.0 += 1;
            *n
        };
        self.attempt(sid, step, attempt).await.map_err(|e| settle(e, step.kind.ops.transient(), first.elapsed()))
    }
}

impl Exec {
    async fn attempt(&self, sid: &StepId, step: &Step, attempt: u32) -> Result<(), OpError> {
        if attempt > 1 && !sid.deletes() {
            self.refresh(&sid.address, step).await?;
        }
        if let Some(w) = self.want.get(&sid.address).filter(|_| !sid.deletes()) {
            self.learn_outputs(w).await?;
        }
        let ops = step.kind.ops;
        let cx = self.cx.in_region(&step.region);
        let address = &sid.address;
        let id = self.ids.lock().unwrap_or_else(|p| p.into_inner()).get(address).cloned();
        let have = self.have.lock().unwrap_or_else(|p| p.into_inner()).get(address).cloned();
        if let (Phase::DeleteOld, Some((old_id, old_have))) = (sid.phase, self.old.get(address)) {
            return ops.delete(&cx, old_id, old_have).await;
        }
        let applied = match (sid.phase, id, have) {
            (Phase::Delete | Phase::DeleteOld, Some(id), have) => {
                ops.delete(&cx, &id, &have.unwrap_or(Value::Null)).await?;
                self.ids.lock().unwrap_or_else(|p| p.into_inner()).remove(address);
                self.have.lock().unwrap_or_else(|p| p.into_inner()).remove(address);
                self.outputs.lock().unwrap_or_else(|p| p.into_inner()).remove(address);
                return Ok(());
            }
            (Phase::Delete | Phase::DeleteOld, None, _) => return Ok(()),
            (Phase::Create, None, _) => {
                let want = self.resolve(sid, step, false)?;
                let slot = Arc::default();
                let made =
                    ops.create(&cx.creating(Arc::clone(&slot)), address, &want, &self.token(address, &want)).await;
                let born = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                let id = match (made, born) {
                    (Ok(id), _) => id,
                    // Made, then a later call failed: the retry updates this one (see `Cx::born`).
                    (Err(e), Some((id, have))) => {
                        self.made(address, &id);
                        self.have.lock().unwrap_or_else(|p| p.into_inner()).insert(address.clone(), have);
                        return Err(e);
                    }
                    (Err(e), None) => return Err(e),
                };
                self.made(address, &id);
                want
            }
            (Phase::Unpeer, Some(id), Some(have)) => {
                let mut want = have.clone();
                drop_peer_items(step.kind.fields, &mut want, &|_| false);
                ops.update(&cx, &id, &have, &want).await?;
                want
            }
            // Create found it already there (a retry, a rerun), Update, Peers: bring it to want.
            (phase, Some(id), have) => {
                let want = self.resolve(sid, step, phase == Phase::Peers)?;
                ops.update(&cx, &id, &have.unwrap_or(Value::Null), &want).await?;
                if phase == Phase::Update {
                    // An update may change outputs (an image's digest): read again when used.
                    self.outputs.lock().unwrap_or_else(|p| p.into_inner()).remove(address);
                }
                want
            }
            (_, None, _) => return Err(OpError::retryable(sid.to_string(), format!("{address} does not exist yet"))),
        };
        self.have.lock().unwrap_or_else(|p| p.into_inner()).insert(address.clone(), applied);
        Ok(())
    }
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: Report<StepId>,
    /// `(address, id)` of everything created.
    pub created: Vec<(String, String)>,
}

/// Applies `plan` (made from `stack` and `inv`). For a destroy, `stack` has no resources.
pub async fn apply(
    cx: &Cx,
    stack: &Stack,
    inv: &Inventory,
    plan: &Plan,
    opts: &WalkOptions,
    progress: Option<mpsc::UnboundedSender<Progress<StepId>>>,
    cancel: CancellationToken,
) -> Outcome {
    let StepGraph { nodes, edges, want } = steps(stack, inv, plan);
    let mut places: BTreeMap<String, Step> =
        inv.live.iter().map(|(a, f)| (a.clone(), Step { kind: f.kind, region: f.region.clone() })).collect();
    for r in &stack.resources {
        places.insert(r.address(), Step { kind: r.kind, region: stack.region_of(r).to_owned() });
    }
    let outputs = inv
        .live
        .iter()
        .map(|(a, f)| {
            let mut o = f.live.outputs.clone();
            o.insert("id".into(), json!(f.live.id));
            (a.clone(), o)
        })
        .collect();
    // Replacements whose new half comes first: the address starts without an id, so the
    // create step makes the new resource; the old one is deleted by its own id.
    let old: BTreeMap<String, (String, Value)> = plan
        .resources
        .iter()
        .filter(|r| r.action == Action::Replace)
        .filter_map(|r| inv.live.get(&r.address))
        .filter(|f| f.kind.ops.create_before_delete())
        .map(|f| (f.live.address.clone(), (f.live.id.clone(), f.live.attrs.clone())))
        .collect();
    let mut ids = inv.ids();
    let mut have: BTreeMap<String, Value> = inv.live.iter().map(|(a, f)| (a.clone(), f.live.attrs.clone())).collect();
    let mut outputs: BTreeMap<String, Map<String, Value>> = outputs;
    for a in old.keys() {
        ids.remove(a);
        have.remove(a);
        outputs.remove(a);
    }
    let exec = Arc::new(Exec {
        cx: cx.clone(),
        steps: nodes.iter().map(|(n, s)| (n.id.clone(), s.clone())).collect(),
        want,
        outputs: Mutex::new(outputs),
        places,
        old,
        ids: Mutex::new(ids),
        have: Mutex::new(have),
        attempts: Mutex::default(),
        created: Mutex::default(),
        run: rand::random(),
    });
    let nodes: Vec<Node<StepId>> = nodes.into_iter().map(|(n, _)| n).collect();
    let report = walk(&nodes, &edges, exec.clone(), opts, progress, cancel).await;
    let created = exec.created.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Outcome { report, created }
}

/// The context for a stack and a DynamoDB client (for the lock) in its region; the standard
/// configuration applies (credential chain, profiles, `AWS_ENDPOINT_URL`), so the same binary
/// runs against AWS or an emulator. Clients of other services and regions are made on first use.
pub async fn connect(stack: &Stack) -> (Cx, aws_sdk_dynamodb::Client) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(stack.region.clone()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .load()
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    (Cx::new(conf, &stack.name, &stack.region), ddb)
}

/// Fills in every derived field ([`crate::schema::Field::derived`]) of every resource from its
/// kind (an image's digest, by building the image): once per command, before a plan.
pub fn derive(stack: &mut Stack) -> Result<(), String> {
    let dir = std::path::Path::new(&stack.file).parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let bill = || crate::cost::of_stack(stack);
    let on = crate::provider::Derive { dir: &dir, stack: &stack.name, bill: &bill };
    let derived: Vec<Option<Map<String, Value>>> = stack
        .resources
        .iter()
        .map(|r| {
            if !r.kind.fields.iter().any(|f| f.derived) {
                return Ok(None);
            }
            // What a kind is handed: its own fields, not the common ones.
            let mut want = desired(r, stack);
            if let Some(m) = want.as_object_mut() {
                crate::schema::COMMON.iter().for_each(|f| drop(m.remove(f.name)));
            }
            r.kind.ops.derive(&want, &on).map(Some).map_err(|e| format!("{}: {e}", r.address()))
        })
        .collect::<Result<_, String>>()?;
    for (r, got) in stack.resources.iter_mut().zip(derived) {
        let Some(got) = got else { continue };
        for f in r.kind.fields.iter().filter(|f| f.derived) {
            let v = match got.get(f.name) {
                Some(Value::String(s)) => Val::Str(s.clone()),
                Some(Value::Bool(b)) => Val::Bool(*b),
                Some(Value::Number(n)) if n.is_i64() => Val::Int(n.as_i64().unwrap_or_default()),
                other => return Err(format!("{}: the kind derived no {} ({other:?})", r.address(), f.name)),
            };
            r.fields.insert(f.name.to_owned(), (v, r.span.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kinds::test_stack as stack;

    const SRC: &str = r#"
[stack]
name = "t"
region = "eu-central-1"
[vpc.main]
cidr = "10.0.0.0/16"
[subnet.a]
vpc = "vpc.main"
cidr = "10.0.1.0/24"
az = "a"
[security_group.alb]
vpc = "vpc.main"
description = "alb"
egress = [{ protocol = "tcp", from_port = 8080, group = "security_group.web" }]
[security_group.web]
vpc = "vpc.main"
description = "web"
ingress = [{ protocol = "tcp", from_port = 8080, group = "security_group.alb" }]
"#;

    /// What exists when `s` was applied, with each address standing in for its id.
    fn applied(s: &Stack) -> Inventory {
        let mut inv = Inventory { home: s.region.clone(), ..Inventory::default() };
        for r in &s.resources {
            let live = Live { id: r.address(), address: r.address(), attrs: desired(r, s), outputs: Map::new() };
            inv.live.insert(r.address(), Found { kind: r.kind, region: s.region.clone(), live });
        }
        inv
    }

    /// Whether `a` waits for `b`, both as the CLI prints step ids.
    fn has(edges: &[(StepId, StepId)], a: &str, b: &str) -> bool {
        edges.iter().any(|(x, y)| x.to_string() == a && y.to_string() == b)
    }

    #[test]
    fn groups_that_admit_each_other_get_their_rules_once_both_exist() {
        let s = stack(SRC);
        let inv = Inventory::default();
        let (nodes, edges) = graph(&s, &inv, &plan(&s, &inv));
        let peers = StepId { address: "security_group.alb".into(), phase: Phase::Peers };
        assert!(nodes.contains(&peers), "{nodes:?}");
        assert_eq!(peers.to_string(), "security_group.alb (peer rules)");
        assert!(has(&edges, "security_group.alb (peer rules)", "security_group.web"), "{edges:?}");
        assert!(has(&edges, "security_group.web (peer rules)", "security_group.alb"), "{edges:?}");
        // The groups themselves wait only for their VPC, so there is no cycle.
        assert!(has(&edges, "security_group.alb", "vpc.main"));
        assert!(!has(&edges, "security_group.alb", "security_group.web"), "{edges:?}");
    }

    #[test]
    fn destroy_drops_cross_group_rules_before_deleting_and_deletes_children_first() {
        let s = stack(SRC);
        let inv = applied(&s);
        let empty = Stack { resources: vec![], ..stack(SRC) };
        let (nodes, edges) = graph(&empty, &inv, &plan(&empty, &inv));
        assert!(has(&edges, "security_group.alb", "security_group.web (drop peer rules)"), "{edges:?}");
        assert!(has(&edges, "security_group.web", "security_group.alb (drop peer rules)"), "{edges:?}");
        assert!(has(&edges, "vpc.main", "subnet.a") && has(&edges, "vpc.main", "security_group.alb"), "{edges:?}");
        assert_eq!(nodes.len(), 6, "4 deletes and 2 rule steps: {nodes:?}");
    }

    #[test]
    fn what_aws_orders_without_a_reference_is_ordered_both_ways() {
        let src = format!(
            "{SRC}[subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\
             [internet_gateway.igw]\nvpc = \"vpc.main\"\n\
             [load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\n"
        );
        let s = stack(&src);
        let empty = Inventory::default();
        let (_, edges) = graph(&s, &empty, &plan(&s, &empty));
        assert!(has(&edges, "load_balancer.web", "internet_gateway.igw"), "{edges:?}");
        let inv = applied(&s);
        let gone = Stack { resources: vec![], ..stack(&src) };
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "internet_gateway.igw", "load_balancer.web"), "{edges:?}");
    }

    #[test]
    fn protection_is_found_before_a_destroy_or_a_replacement_and_kept_with_what_it_needs() {
        let src = format!(
            "{SRC}[subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\
             [load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\ndeletion_protection = true\n"
        );
        let s = stack(&src);
        let inv = applied(&s);
        let gone = Stack { resources: vec![], ..stack(&src) };
        let destroy = plan(&gone, &inv);
        let found = protected(&inv, &destroy);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "load_balancer.web");
        assert!(found[0].1.contains("deletion_protection = false"), "{}", found[0].1);
        // Replaced (internal forces it): refused the same way.
        let moved =
            stack(&src.replace("deletion_protection = true\n", "deletion_protection = true\ninternal = true\n"));
        assert_eq!(protected(&inv, &plan(&moved, &inv)).len(), 1);
        // Kept: the balancer and the subnets and VPC it needs; the groups go.
        let (rest, kept) = plan_keeping(&gone, &inv, &["load_balancer.web".to_owned()]);
        let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
        assert_eq!(kept, ["load_balancer.web", "subnet.a", "subnet.b", "vpc.main"]);
        let deleted: Vec<&str> =
            rest.resources.iter().filter(|r| r.action == Action::Delete).map(|r| r.address.as_str()).collect();
        assert_eq!(deleted, ["security_group.alb", "security_group.web"]);
    }

    #[test]
    fn a_value_that_is_another_resources_output_orders_its_delete_first() {
        let s = stack(SRC);
        let mut inv = applied(&s);
        let arn = "arn:aws:ec2:eu-central-1:123456789012:subnet/subnet-0123456789abcdef0";
        inv.live.get_mut("subnet.a").unwrap().live.outputs.insert("arn".into(), json!(arn));
        inv.live.get_mut("security_group.web").unwrap().live.attrs["tags"] = json!({"uses": arn});
        let gone = Stack { resources: vec![], ..stack(SRC) };
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "subnet.a", "security_group.web"), "{edges:?}");
        assert!(!has(&edges, "subnet.a", "security_group.alb"), "{edges:?}");
        // Both ways round (each uses the other's output): one order, never a cycle.
        let vpc_arn = "arn:aws:ec2:eu-central-1:123456789012:vpc/vpc-0123456789abcdef0";
        inv.live.get_mut("vpc.main").unwrap().live.outputs.insert("arn".into(), json!(vpc_arn));
        inv.live.get_mut("subnet.a").unwrap().live.attrs["tags"] = json!({"uses": vpc_arn});
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "vpc.main", "subnet.a"), "the declared reference: {edges:?}");
        inv.live.get_mut("vpc.main").unwrap().live.attrs["tags"] = json!({"uses": arn});
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "vpc.main", "subnet.a") && !has(&edges, "subnet.a", "vpc.main"), "{edges:?}");
    }

    #[test]
    fn a_replacement_made_new_first_moves_its_dependents_before_the_old_half_goes() {
        let src = format!(
            "{SRC}[subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\
             [load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\n\
             [target_group.web]\nvpc = \"vpc.main\"\nport = 8080\n\
             [listener.http]\nload_balancer = \"load_balancer.web\"\nport = 80\ntarget_group = \"target_group.web\"\n"
        );
        let old = stack(&src);
        let inv = applied(&old);
        let new = stack(&src.replace("port = 8080\n", "port = 8081\n"));
        let p = plan(&new, &inv);
        let (_, edges) = graph(&new, &inv, &p);
        // The new group, then the listener moves to it, then the old group goes.
        assert!(has(&edges, "target_group.web (old)", "target_group.web"), "{edges:?}");
        assert!(has(&edges, "listener.http", "target_group.web"), "{edges:?}");
        assert!(has(&edges, "target_group.web (old)", "listener.http"), "{edges:?}");
        assert!(!has(&edges, "target_group.web", "target_group.web (old)"), "no cycle: {edges:?}");
    }

    #[test]
    fn a_replacement_deletes_dependents_first_and_recreates_in_order() {
        let old = stack(SRC);
        let inv = applied(&old);
        let new = stack(&SRC.replacen("10.0.0.0/16", "10.1.0.0/16", 1).replace("10.0.1.0/24", "10.1.1.0/24"));
        let p = plan(&new, &inv);
        let (_, edges) = graph(&new, &inv, &p);
        // Old halves in reverse order, new halves in order, each new after its old.
        assert!(has(&edges, "vpc.main (old)", "subnet.a (old)"), "{edges:?}");
        assert!(has(&edges, "vpc.main", "vpc.main (old)") && has(&edges, "subnet.a", "vpc.main"), "{edges:?}");
        assert!(has(&edges, "subnet.a", "subnet.a (old)"), "{edges:?}");
        // The groups are replaced with the VPC (their vpc field forces it).
        assert!(p.resources.iter().all(|r| r.action == Action::Replace), "{p:?}");
        assert!(has(&edges, "vpc.main (old)", "security_group.alb (old)"), "{edges:?}");
        assert!(has(&edges, "security_group.alb (old)", "security_group.alb (drop peer rules)"), "{edges:?}");
    }
}
