//! Carrying the step graph out through the kinds' operations: references resolved to ids as
//! they become known, a half-made resource read again before a retry, outputs learnt when used.

use super::inventory::Inventory;
use super::steps::{steps, Phase, Step, StepGraph, StepId};
use crate::error::{settle, OpError};
use crate::plan::{Action, Plan};
use crate::provider::{Cx, Live, ID_TAG, STACK_TAG};
use crate::schema::{drop_peer_items, visit_refs};
use crate::stack::Stack;
use crate::walk::{walk, Executor, Node, Progress, Report, WalkOptions};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Carries steps out against AWS, keeping ids and last-applied attributes as it goes.
struct Exec {
    cx: Cx,
    steps: BTreeMap<StepId, Step>,
    /// Desired attributes by address, references as addresses.
    want: BTreeMap<String, Value>,
    /// What the run learns as it goes, behind one lock (see [`RunState`]).
    state: Mutex<RunState>,
    /// Id and attributes of the old halves of replacements whose new half is made first, by
    /// address (the address's id is the new one's once it exists).
    old: BTreeMap<String, (String, Value)>,
    /// Kind and region of every resource the stack declares or owns, to read one again.
    places: BTreeMap<String, Step>,
    /// This run, for client tokens.
    run: u64,
}

/// What a run learns as it goes: each step reads and writes it briefly, never across a call
/// to AWS, so one lock serves all of it.
#[derive(Default)]
struct RunState {
    /// AWS ids by address.
    ids: BTreeMap<String, String>,
    /// Attributes as they are live (id space), by address.
    have: BTreeMap<String, Value>,
    /// Outputs (`id` included) by address, for `${kind.name.output}`.
    outputs: BTreeMap<String, Map<String, Value>>,
    /// Per step: attempts so far and when the first began.
    attempts: BTreeMap<StepId, (u32, std::time::Instant)>,
    /// `(address, id)` of everything made in this run.
    created: Vec<(String, String)>,
}

impl Exec {
    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        let ids = self.state().ids.clone();
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
        let outputs = self.state().outputs.clone();
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
        let mut v = crate::schema::own(&v);
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
        if let Some(l) = found.first() {
            let mut o = l.outputs.clone();
            o.insert("id".into(), json!(l.id));
            let mut s = self.state();
            s.ids.insert(address.to_owned(), l.id.clone());
            s.have.insert(address.to_owned(), l.attrs.clone());
            s.outputs.insert(address.to_owned(), o);
        }
        Ok(())
    }

    /// Reads again the resources whose outputs `want` uses and that were made in this run
    /// (their outputs are known only from a read).
    async fn learn_outputs(&self, want: &Value) -> Result<(), OpError> {
        for target in crate::schema::interpolated(want) {
            let (known, made) = {
                let s = self.state();
                (s.outputs.contains_key(&target), s.ids.contains_key(&target))
            };
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
        let mut s = self.state();
        s.ids.insert(address.to_owned(), id.to_owned());
        // Its other outputs are read when something uses them.
        s.outputs.remove(address);
        s.created.push((address.to_owned(), id.to_owned()));
    }
}

#[async_trait]
impl Executor<StepId> for Exec {
    async fn execute(&self, node: &Node<StepId>) -> Result<(), OpError> {
        let sid = &node.id;
        let step = self.steps.get(sid).ok_or_else(|| OpError::fatal("walk", format!("unknown step {sid}")))?;
        let (attempt, first) = {
            let mut s = self.state();
            let n = s.attempts.entry(sid.clone()).or_insert((0, std::time::Instant::now()));
            n.0 += 1;
            *n
        };
        self.attempt(sid, step, attempt).await.map_err(|e| settle(e, step.kind.transient, first.elapsed()))
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
        let (id, have) = {
            let s = self.state();
            (s.ids.get(address).cloned(), s.have.get(address).cloned())
        };
        if let (Phase::DeleteOld, Some((old_id, old_have))) = (sid.phase, self.old.get(address)) {
            return ops.delete(&cx, old_id, old_have).await;
        }
        let applied = match (sid.phase, id, have) {
            (Phase::Delete | Phase::DeleteOld, Some(id), have) => {
                ops.delete(&cx, &id, &have.unwrap_or(Value::Null)).await?;
                let mut s = self.state();
                s.ids.remove(address);
                s.have.remove(address);
                s.outputs.remove(address);
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
                        self.state().have.insert(address.clone(), have);
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
                    self.state().outputs.remove(address);
                }
                want
            }
            (_, None, _) => return Err(OpError::retryable(sid.to_string(), format!("{address} does not exist yet"))),
        };
        self.state().have.insert(address.clone(), applied);
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
        .filter(|f| f.kind.create_before_delete)
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
        state: Mutex::new(RunState { ids, have, outputs, ..RunState::default() }),
        places,
        old,
        run: rand::random(),
    });
    let nodes: Vec<Node<StepId>> = nodes.into_iter().map(|(n, _)| n).collect();
    let report = walk(&nodes, &edges, exec.clone(), opts, progress, cancel).await;
    let created = exec.state().created.clone();
    Outcome { report, created }
}
