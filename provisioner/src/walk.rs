//! The apply walker: carries out steps over their graph with bounded parallelism. Retryable
//! errors are retried with backoff and jitter up to a per-step deadline; a failure skips
//! everything that waits for it; a cancel starts nothing new and lets running work finish.
//! Steps are identified by whatever id the caller gives them (the engine's address + phase).

use crate::error::OpError;
use crate::plan::Action;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a step id must be: ordered, printable, shareable between tasks.
pub trait Id: Ord + Clone + std::fmt::Debug + std::fmt::Display + Send + Sync + 'static {}
impl<T: Ord + Clone + std::fmt::Debug + std::fmt::Display + Send + Sync + 'static> Id for T {}

/// One step: its id, and the action it carries out (for progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<K> {
    pub id: K,
    pub action: Action,
}

/// Carries out one step against the cloud. Implementations are idempotent (client tokens,
/// tags at birth), so a retry or a rerun after a crash never duplicates.
#[async_trait]
pub trait Executor<K: Id>: Send + Sync {
    async fn execute(&self, node: &Node<K>) -> Result<(), OpError>;
}

#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub parallelism: usize,
    /// Overall time one step may take, retries included.
    pub resource_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            parallelism: 10,
            resource_timeout: Duration::from_secs(15 * 60),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(20),
        }
    }
}

/// What happened to each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<K> {
    pub done: Vec<K>,
    /// Each failed step with its error as the kind or the engine gave it (its class says
    /// whether the step was left for later).
    pub failed: Vec<(K, OpError)>,
    /// Not attempted: a dependency failed, or the walk was cancelled first.
    pub skipped: Vec<K>,
}

impl<K> Default for Report<K> {
    fn default() -> Self {
        Self { done: Vec::new(), failed: Vec::new(), skipped: Vec::new() }
    }
}

impl<K> Report<K> {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// Progress events for live output.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<K> {
    Started(K, Action),
    Retrying(K, String),
    Finished(K, Result<(), OpError>, Duration),
}

/// Runs steps over their graph: `waits_for` edges `(a, b)` mean `a` starts only after `b`
/// succeeded (the engine decides them: creates after what they refer to, deletes after what
/// refers to them, a replacement's old half before its new half).
pub async fn walk<K: Id>(
    nodes: &[Node<K>],
    waits_for: &[(K, K)],
    exec: Arc<dyn Executor<K>>,
    opts: &WalkOptions,
    progress: Option<mpsc::UnboundedSender<Progress<K>>>,
    cancel: CancellationToken,
) -> Report<K> {
    let mut report = Report::default();
    let ids: BTreeSet<&K> = nodes.iter().map(|n| &n.id).collect();
    let mut pending: BTreeMap<K, BTreeSet<K>> = nodes
        .iter()
        .map(|n| {
            let before =
                waits_for.iter().filter(|(a, b)| *a == n.id && ids.contains(b)).map(|(_, b)| b.clone()).collect();
            (n.id.clone(), before)
        })
        .collect();
    let by_id: BTreeMap<&K, &Node<K>> = nodes.iter().map(|n| (&n.id, n)).collect();
    let sem = Arc::new(Semaphore::new(opts.parallelism.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<(K, Result<(), OpError>)>();
    let mut running = 0usize;
    loop {
        // Start everything whose prerequisites are done, unless cancelled.
        if !cancel.is_cancelled() {
            let ready: Vec<K> = pending.iter().filter(|(_, b)| b.is_empty()).map(|(a, _)| a.clone()).collect();
            for id in ready {
                pending.remove(&id);
                running += 1;
                let node = by_id[&id].clone();
                let (exec, sem, tx, opts, progress) =
                    (exec.clone(), sem.clone(), tx.clone(), opts.clone(), progress.clone());
                tokio::spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let res = run_one(&node, exec.as_ref(), &opts, progress.as_ref()).await;
                    let _ = tx.send((node.id, res));
                });
            }
        }
        if running == 0 {
            break;
        }
        let (id, res) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = cancel.cancelled(), if !cancel.is_cancelled() => continue,
        };
        running -= 1;
        match res {
            Ok(()) => {
                for b in pending.values_mut() {
                    b.remove(&id);
                }
                report.done.push(id);
            }
            Err(e) => {
                // Everything that waits for it, directly or not, is skipped.
                let mut stack = vec![id.clone()];
                while let Some(x) = stack.pop() {
                    let dependents: Vec<K> =
                        pending.iter().filter(|(_, b)| b.contains(&x)).map(|(a, _)| a.clone()).collect();
                    for d in dependents {
                        pending.remove(&d);
                        report.skipped.push(d.clone());
                        stack.push(d);
                    }
                }
                report.failed.push((id, e));
            }
        }
    }
    // Cancelled (or blocked): what never started is skipped.
    report.skipped.extend(pending.into_keys());
    report
}

async fn run_one<K: Id>(
    node: &Node<K>,
    exec: &dyn Executor<K>,
    opts: &WalkOptions,
    progress: Option<&mpsc::UnboundedSender<Progress<K>>>,
) -> Result<(), OpError> {
    let started = Instant::now();
    let deadline = started + opts.resource_timeout;
    let say = |p: Progress<K>| {
        if let Some(tx) = progress {
            let _ = tx.send(p);
        }
    };
    say(Progress::Started(node.id.clone(), node.action));
    let mut backoff = crate::backoff::Backoff::new(opts.backoff_base, opts.backoff_max);
    let res = loop {
        match exec.execute(node).await {
            Ok(()) => break Ok(()),
            Err(e) if !e.is_retryable() => break Err(e),
            // Not found is retried too: an id right after its creation is not visible yet.
            Err(e) => {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    let message = format!("gave up after {:?}: {}", started.elapsed(), e.message);
                    break Err(OpError { message, ..e });
                }
                say(Progress::Retrying(node.id.clone(), e.brief()));
                tokio::time::sleep(delay).await;
            }
        }
    };
    say(Progress::Finished(node.id.clone(), res.clone(), started.elapsed()));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Class;
    use std::sync::Mutex;

    /// Records the order of operations and fails or throttles where told.
    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<(String, &'static str)>>,
        running: Mutex<usize>,
        max_running: Mutex<usize>,
        fail: Vec<&'static str>,
        throttle_first: Mutex<BTreeMap<String, u32>>,
        /// Cancelled as the first operation starts: a Ctrl-C while work is running.
        cancel_on_start: Option<CancellationToken>,
    }

    #[async_trait]
    impl Executor<String> for Fake {
        async fn execute(&self, c: &Node<String>) -> Result<(), OpError> {
            if let Some(n) = self.throttle_first.lock().unwrap().get_mut(&c.id) {
                if *n > 0 {
                    *n -= 1;
                    return Err(OpError::retryable("Test", "Throttling"));
                }
            }
            {
                let mut r = self.running.lock().unwrap();
                *r += 1;
                let mut m = self.max_running.lock().unwrap();
                *m = (*m).max(*r);
            }
            self.log.lock().unwrap().push((c.id.clone(), "start"));
            if let Some(t) = &self.cancel_on_start {
                t.cancel();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.log.lock().unwrap().push((c.id.clone(), "end"));
            *self.running.lock().unwrap() -= 1;
            if self.fail.contains(&c.id.as_str()) {
                return Err(OpError::fatal("Test", "InvalidParameterValue"));
            }
            Ok(())
        }
    }

    fn net_plan(action: Action) -> (Vec<Node<String>>, Vec<(String, String)>) {
        let addrs = ["vpc.v", "subnet.a", "subnet.b", "internet_gateway.i", "route_table.r", "security_group.s"];
        let deps = [
            ("subnet.a", "vpc.v"),
            ("subnet.b", "vpc.v"),
            ("internet_gateway.i", "vpc.v"),
            ("route_table.r", "vpc.v"),
            ("route_table.r", "internet_gateway.i"),
            ("route_table.r", "subnet.a"),
            ("route_table.r", "subnet.b"),
            ("security_group.s", "vpc.v"),
        ];
        let nodes = addrs.iter().map(|a| Node { id: (*a).to_owned(), action }).collect();
        (nodes, deps.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect())
    }

    fn opts(p: usize) -> WalkOptions {
        WalkOptions {
            parallelism: p,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..Default::default()
        }
    }

    fn pos(log: &[(String, &str)], addr: &str, ev: &str) -> usize {
        log.iter().position(|(a, e)| a == addr && *e == ev).unwrap_or_else(|| panic!("{addr} {ev} in {log:?}"))
    }

    #[tokio::test]
    async fn creates_follow_dependencies_deletes_go_in_reverse() {
        let (plan, deps) = net_plan(Action::Create);
        let fake = Arc::new(Fake::default());
        let r = walk(&plan, &deps, fake.clone(), &opts(10), None, CancellationToken::new()).await;
        assert!(r.ok() && r.done.len() == 6, "{r:?}");
        let log = fake.log.lock().unwrap().clone();
        for (a, b) in &deps {
            assert!(pos(&log, b, "end") < pos(&log, a, "start"), "{a} started before {b} ended");
        }
        assert!(*fake.max_running.lock().unwrap() >= 3, "independent resources ran together");

        let (plan, deps) = net_plan(Action::Delete);
        let fake = Arc::new(Fake::default());
        let back: Vec<(String, String)> = deps.iter().map(|(a, b)| (b.clone(), a.clone())).collect();
        let r = walk(&plan, &back, fake.clone(), &opts(10), None, CancellationToken::new()).await;
        assert!(r.ok());
        let log = fake.log.lock().unwrap().clone();
        for (a, b) in &deps {
            assert!(pos(&log, a, "end") < pos(&log, b, "start"), "{b} deleted before its dependent {a}");
        }
    }

    #[tokio::test]
    async fn parallelism_is_bounded() {
        let (plan, deps) = net_plan(Action::Create);
        let fake = Arc::new(Fake::default());
        walk(&plan, &deps, fake.clone(), &opts(1), None, CancellationToken::new()).await;
        assert_eq!(*fake.max_running.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_failure_skips_its_dependents_only() {
        let (plan, deps) = net_plan(Action::Create);
        let fake = Arc::new(Fake { fail: vec!["subnet.a"], ..Default::default() });
        let r = walk(&plan, &deps, fake.clone(), &opts(10), None, CancellationToken::new()).await;
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].0, "subnet.a");
        // The error as the executor gave it, typed up to the caller (no text to parse).
        let e = &r.failed[0].1;
        assert_eq!((e.class, e.op.as_str(), e.message.as_str()), (Class::Fatal, "Test", "InvalidParameterValue"));
        assert_eq!(r.skipped, ["route_table.r"]);
        assert_eq!(r.done.len(), 4);
    }

    #[tokio::test]
    async fn throttling_is_retried_until_it_passes() {
        let (plan, deps) = net_plan(Action::Create);
        let fake = Arc::new(Fake::default());
        fake.throttle_first.lock().unwrap().insert("vpc.v".into(), 3);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = walk(&plan, &deps, fake.clone(), &opts(10), Some(tx), CancellationToken::new()).await;
        assert!(r.ok(), "{r:?}");
        let mut retries = 0;
        while let Ok(p) = rx.try_recv() {
            if matches!(p, Progress::Retrying(ref a, _) if a == "vpc.v") {
                retries += 1;
            }
        }
        assert_eq!(retries, 3);
    }

    #[tokio::test]
    async fn cancel_finishes_running_work_and_starts_nothing_new() {
        let (plan, deps) = net_plan(Action::Create);
        let cancel = CancellationToken::new();
        let fake = Arc::new(Fake { cancel_on_start: Some(cancel.clone()), ..Default::default() });
        let r = walk(&plan, &deps, fake.clone(), &opts(10), None, cancel).await;
        assert_eq!(r.done, ["vpc.v"], "the running create finished");
        assert_eq!(r.skipped.len(), 5);
        let log = fake.log.lock().unwrap().clone();
        assert_eq!(log.iter().filter(|(_, e)| *e == "start").count(), 1);
    }
}
