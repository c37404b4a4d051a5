//! The web server's in-memory window of recent events, kept current from the store's change
//! feed, so a page view costs no database read; every applied change becomes an SSE event.

use crate::store::{Store, Stored, WindowQuery};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// One event as the window holds it, with its Feature pre-serialised once.
#[derive(Debug)]
pub struct Entry {
    pub stored: Stored,
    pub feature: Arc<str>,
}

/// A change pushed to browsers.
#[derive(Debug, Clone)]
pub struct Change {
    /// The store's change-feed position: the SSE event id, stable across web servers.
    pub id: i64,
    pub kind: &'static str,
    pub feature: Arc<str>,
}

struct Inner {
    by_unid: HashMap<String, Arc<Entry>>,
    by_time: BTreeMap<(i64, String), Arc<Entry>>,
    /// Bumped on every applied change: part of ETags and cache keys.
    version: u64,
    cursor: i64,
    recent: VecDeque<Change>,
    /// Highest id dropped from `recent`: clients behind it cannot resume.
    evicted: i64,
}

pub struct Window {
    inner: RwLock<Inner>,
    /// Origin times older than now minus this are dropped (queries further back go to the store).
    pub horizon: Duration,
    max_events: usize,
    replay_capacity: usize,
    tx: broadcast::Sender<Change>,
    /// True once the first page of the change feed is in: `/readyz` waits for it.
    loaded_flag: Arc<std::sync::atomic::AtomicBool>,
}

impl Window {
    pub fn new(horizon: Duration, max_events: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: RwLock::new(Inner {
                by_unid: HashMap::new(),
                by_time: BTreeMap::new(),
                version: 0,
                cursor: 0,
                recent: VecDeque::new(),
                evicted: i64::MIN,
            }),
            horizon,
            max_events,
            replay_capacity: 10_000,
            tx,
            loaded_flag: Arc::default(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    pub fn version(&self) -> u64 {
        self.inner.read().expect("window lock").version
    }

    pub fn loaded(&self) -> bool {
        self.loaded_flag.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The flag behind [`Window::loaded`], for readiness checks.
    pub fn loaded_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.loaded_flag.clone()
    }

    pub fn len(&self) -> usize {
        self.inner.read().expect("window lock").by_unid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn horizon_start(&self, now_us: i64) -> i64 {
        now_us - self.horizon.as_micros() as i64
    }

    /// Whether a query's start lies inside what the window holds.
    pub fn covers(&self, start_us: i64, now_us: i64) -> bool {
        start_us >= self.horizon_start(now_us)
    }

    /// Applies one page of the change feed; returns how many changes were new.
    pub fn apply(&self, page: Vec<Stored>, cursor: i64, now_us: i64) -> usize {
        let start = self.horizon_start(now_us);
        let mut changes = Vec::new();
        {
            let mut g = self.inner.write().expect("window lock");
            g.cursor = g.cursor.max(cursor);
            for s in page {
                let known = g.by_unid.get(&s.event.unid).cloned();
                if let Some(k) = &known {
                    // The feed is at-least-once: the same or an older version is nothing new.
                    if k.stored.version >= s.version {
                        continue;
                    }
                }
                if let Some(k) = &known {
                    g.by_time.remove(&(k.stored.event.time_us, k.stored.event.unid.clone()));
                }
                if s.event.time_us < start {
                    g.by_unid.remove(&s.event.unid);
                    continue;
                }
                let feature: Arc<str> = s.event.to_feature().to_string().into();
                let change = Change {
                    id: s.seq,
                    kind: if known.is_some() { "updated" } else { "created" },
                    feature: feature.clone(),
                };
                let entry = Arc::new(Entry { stored: s, feature });
                g.by_time.insert((entry.stored.event.time_us, entry.stored.event.unid.clone()), entry.clone());
                g.by_unid.insert(entry.stored.event.unid.clone(), entry);
                changes.push(change);
            }
            // Bounded: the oldest events go first when the window is over its size.
            while g.by_time.len() > self.max_events {
                if let Some(((_, unid), _)) = g.by_time.pop_first() {
                    g.by_unid.remove(&unid);
                }
            }
            if !changes.is_empty() {
                g.version += 1;
                for c in &changes {
                    g.recent.push_back(c.clone());
                }
                while g.recent.len() > self.replay_capacity {
                    if let Some(c) = g.recent.pop_front() {
                        g.evicted = g.evicted.max(c.id);
                    }
                }
            }
        }
        self.loaded_flag.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in &changes {
            // No receivers is fine: nobody is watching.
            let _ = self.tx.send(c.clone());
        }
        changes.len()
    }

    /// Drops events whose origin time left the horizon.
    pub fn prune(&self, now_us: i64) {
        let start = self.horizon_start(now_us);
        let mut g = self.inner.write().expect("window lock");
        let old: Vec<(i64, String)> = g.by_time.range(..(start, String::new())).map(|(k, _)| k.clone()).collect();
        if old.is_empty() {
            return;
        }
        for k in old {
            g.by_time.remove(&k);
            g.by_unid.remove(&k.1);
        }
        g.version += 1;
    }

    pub fn get(&self, unid: &str) -> Option<Arc<Entry>> {
        self.inner.read().expect("window lock").by_unid.get(unid).cloned()
    }

    /// Matching entries, newest first (the caller re-sorts for other orders).
    pub fn query(&self, q: &WindowQuery) -> Vec<Arc<Entry>> {
        let g = self.inner.read().expect("window lock");
        let lo = (q.start_us, String::new());
        let mut out = Vec::new();
        for (_, e) in g.by_time.range(lo..).rev() {
            if e.stored.event.time_us > q.end_us {
                continue;
            }
            if q.matches(&e.stored.event) {
                out.push(e.clone());
            }
        }
        out
    }

    /// Changes after `last_id` still held for resuming clients; `None` when `last_id` is older
    /// than what is held (the client must reload).
    pub fn since(&self, last_id: i64) -> Option<Vec<Change>> {
        let g = self.inner.read().expect("window lock");
        if last_id < g.evicted {
            return None;
        }
        Some(g.recent.iter().filter(|c| c.id > last_id).cloned().collect())
    }

    pub fn cursor(&self) -> i64 {
        self.inner.read().expect("window lock").cursor
    }
}

/// Follows the store's change feed into the window until `shutdown`. `wake` lets an in-process
/// consumer announce a write so it shows at once; otherwise the feed is polled every `every`.
pub async fn follow(
    window: Arc<Window>,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    every: Duration,
    now: fn() -> i64,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let cursor = window.cursor();
        match store.changes_since(cursor, 5000).await {
            Ok(page) => {
                failures = 0;
                let full = page.events.len() >= 5000;
                window.apply(page.events, page.cursor, now());
                if full {
                    continue; // more to read right away
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = %e, "Change feed read failed; retrying.");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => { window.prune(now()); }
        }
    }
}
