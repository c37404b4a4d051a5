//! What a stack owns, read from AWS (by tag, one describe per kind present) into the declared
//! shape, and the plans made against it (whole, or keeping what is protected).

use crate::error::{Class, OpError};
use crate::kinds;
use crate::plan::{Action, Actual, Plan};
use crate::provider::{Cx, Live};
use crate::schema::{refs, Kind};
use crate::stack::Stack;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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
    pub(super) fn ids(&self) -> BTreeMap<String, String> {
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
            f.kind.ops.protected(&crate::schema::own(&f.live.attrs)).map(|how| (r.address.clone(), how))
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
