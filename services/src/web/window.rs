//! The web server's in-memory window of recent events, kept current from the store's change
//! feed, so a page view costs no database read; every applied change becomes an SSE event.

use crate::model::Version;
use crate::store::{Store, Stored, WindowQuery};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// This window's own arrival order of changes. Feed positions need not arrive in order
    /// (DynamoDB's are writers' clocks, seen through an eventually consistent index), so
    /// "already sent" is decided by this, never by `id`.
    pub pos: u64,
    pub kind: &'static str,
    pub feature: Arc<str>,
}

/// What the window's content and the store's content were at one moment, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Moves whenever what the window holds changes (an event in it changed, arrived, left).
    pub window: u64,
    /// Moves whenever the change feed shows anything new, inside the horizon or not: history,
    /// backfill and revisions of old events change store-backed answers without touching the
    /// window.
    pub store: u64,
    /// When `store` last moved.
    pub store_changed_at: Instant,
    /// The feed position the window has read up to.
    pub cursor: i64,
}

/// Matching entries with the versions they reflect, read under one lock.
pub struct Snapshot {
    pub entries: Vec<Arc<Entry>>,
    pub versions: Versions,
}

/// Events outside the horizon remembered by version, so that the feed's overlap re-reads of
/// them are not taken for news; cleared when it grows past this (costing one spurious move).
const OUTSIDE_MAX: usize = 100_000;

struct Inner {
    by_unid: HashMap<String, Arc<Entry>>,
    by_time: BTreeMap<(i64, String), Arc<Entry>>,
    version: u64,
    store_version: u64,
    store_changed_at: Instant,
    outside: HashMap<String, Version>,
    cursor: i64,
    /// Newest origin time dropped to keep the window within its size: queries reaching back to
    /// it or before are not answered from here.
    size_floor: i64,
    next_pos: u64,
    recent: VecDeque<Change>,
    /// Highest id dropped from `recent`: clients behind it cannot resume.
    evicted: i64,
}

impl Inner {
    fn versions(&self) -> Versions {
        Versions {
            window: self.version,
            store: self.store_version,
            store_changed_at: self.store_changed_at,
            cursor: self.cursor,
        }
    }

    /// Records that the store changed outside the horizon; false when the feed repeats itself.
    fn note_outside(&mut self, s: &Stored) -> bool {
        if self.outside.get(&s.event.unid).is_some_and(|v| *v >= s.version) {
            return false;
        }
        if self.outside.len() >= OUTSIDE_MAX {
            self.outside.clear();
        }
        self.outside.insert(s.event.unid.clone(), s.version);
        true
    }
}

pub struct Window {
    /// The crate's one policy on locks: parking_lot's, which do not poison. A holder that
    /// panics fails its own request, not every later one; the sections under these locks make
    /// no call that can panic between their first and last write, and an open SQLite
    /// transaction rolls back when dropped.
    inner: RwLock<Inner>,
    /// Origin times older than now minus this are dropped (queries further back go to the store).
    pub horizon: Duration,
    max_events: usize,
    replay_capacity: usize,
    /// How far behind its cursor the store's feed may still deliver a change (cursor units):
    /// a resuming client is re-sent that much, so a late change is not lost between servers.
    feed_overlap: i64,
    tx: broadcast::Sender<Change>,
    /// True once the first page of the change feed is in: `/readyz` waits for it.
    loaded_flag: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the last read of the change feed succeeded: `/readyz` reports the store from
    /// it, so a probe costs no call of its own (DescribeTable is a control-plane call with a
    /// low account quota, and `/readyz` is asked by every load balancer node).
    feed_flag: Arc<std::sync::atomic::AtomicBool>,
}

impl Window {
    pub fn new(horizon: Duration, max_events: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: RwLock::new(Inner {
                by_unid: HashMap::new(),
                by_time: BTreeMap::new(),
                version: 0,
                store_version: 0,
                store_changed_at: Instant::now(),
                outside: HashMap::new(),
                cursor: 0,
                size_floor: i64::MIN,
                next_pos: 0,
                recent: VecDeque::new(),
                evicted: i64::MIN,
            }),
            horizon,
            max_events,
            replay_capacity: 10_000,
            feed_overlap: 0,
            tx,
            loaded_flag: Arc::default(),
            feed_flag: Arc::default(),
        }
    }

    /// The store's feed overlap ([`Store::feed_overlap`]), for resuming clients.
    pub fn with_feed_overlap(mut self, overlap: i64) -> Self {
        self.feed_overlap = overlap.max(0);
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Streams subscribed now (each browser on the live stream holds one).
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn versions(&self) -> Versions {
        self.inner.read().versions()
    }

    pub fn loaded(&self) -> bool {
        self.loaded_flag.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The flag behind [`Window::loaded`], for readiness checks.
    pub fn loaded_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.loaded_flag.clone()
    }

    /// True while the store's change feed answers (see `feed_flag`).
    pub fn feed_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.feed_flag.clone()
    }

    pub fn len(&self) -> usize {
        self.inner.read().by_unid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn horizon_start(&self, now_us: i64) -> i64 {
        now_us - self.horizon.as_micros() as i64
    }

    /// Whether a query's start lies inside what the window holds (within the horizon, and
    /// after anything dropped to keep the window within its size), with the versions of that
    /// moment: one lock for what every request asks first.
    pub fn covers(&self, start_us: i64, now_us: i64) -> (bool, Versions) {
        let g = self.inner.read();
        (start_us >= self.horizon_start(now_us) && start_us > g.size_floor, g.versions())
    }

    /// Applies one page of the change feed; returns how many changes were new to the window.
    pub fn apply(&self, page: Vec<Stored>, cursor: i64, now_us: i64) -> usize {
        let start = self.horizon_start(now_us);
        let mut changes = Vec::new();
        {
            let mut g = self.inner.write();
            g.cursor = g.cursor.max(cursor);
            let mut store_moved = false;
            for s in page {
                let known = g.by_unid.get(&s.event.unid).cloned();
                // The feed is at-least-once: the same or an older version is nothing new.
                if known.as_ref().is_some_and(|k| k.stored.version >= s.version) {
                    continue;
                }
                if let Some(k) = &known {
                    g.by_time.remove(&(k.stored.event.time_us, k.stored.event.unid.clone()));
                }
                let inside = s.event.time_us >= start;
                if !inside {
                    let news = g.note_outside(&s);
                    if known.is_none() {
                        store_moved |= news;
                        continue;
                    }
                    // A revision moved a held event out of the window: it leaves, and browsers
                    // are told (the page drops what no longer matches its view).
                    g.by_unid.remove(&s.event.unid);
                }
                store_moved = true;
                let feature: Arc<str> = s.event.to_feature().to_string().into();
                let pos = g.next_pos;
                g.next_pos += 1;
                changes.push(Change {
                    id: s.seq,
                    pos,
                    kind: if known.is_some() { "updated" } else { "created" },
                    feature: feature.clone(),
                });
                if inside {
                    g.outside.remove(&s.event.unid);
                    let entry = Arc::new(Entry { stored: s, feature });
                    g.by_time.insert((entry.stored.event.time_us, entry.stored.event.unid.clone()), entry.clone());
                    g.by_unid.insert(entry.stored.event.unid.clone(), entry);
                }
            }
            // Bounded: the oldest events go first when the window is over its size.
            while g.by_time.len() > self.max_events {
                if let Some(((t, unid), _)) = g.by_time.pop_first() {
                    g.by_unid.remove(&unid);
                    g.size_floor = g.size_floor.max(t);
                }
            }
            if store_moved {
                g.store_version += 1;
                g.store_changed_at = Instant::now();
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
        let mut g = self.inner.write();
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
        self.inner.read().by_unid.get(unid).cloned()
    }

    /// Matching entries, newest first (the caller re-sorts for other orders), with the
    /// versions they reflect.
    pub fn query(&self, q: &WindowQuery) -> Snapshot {
        let g = self.inner.read();
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
        Snapshot { entries: out, versions: g.versions() }
    }

    /// What a client resuming after `last_id` may have missed, in arrival order, and the
    /// arrival position of the newest change held, read together (a change applied between two
    /// reads would be neither missed nor live). Missed: every held change with a feed position
    /// after `last_id` minus the feed's overlap, because a change can arrive after one with a
    /// higher position (the page applies repeats idempotently); `None` when part of that was
    /// dropped from the ring (the client must reload). No `last_id`: nothing missed.
    pub fn resume(&self, last_id: Option<i64>) -> (Option<Vec<Change>>, Option<u64>) {
        let g = self.inner.read();
        let head = g.next_pos.checked_sub(1);
        let Some(last_id) = last_id else { return (Some(Vec::new()), head) };
        let from = last_id.saturating_sub(self.feed_overlap);
        if from < g.evicted {
            return (None, head);
        }
        (Some(g.recent.iter().filter(|c| c.id > from).cloned().collect()), head)
    }

    pub fn cursor(&self) -> i64 {
        self.inner.read().cursor
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
    let mut pruned = tokio::time::Instant::now();
    loop {
        // Pruned on a clock of its own: a busy feed (a wake after every write) never lets the
        // sleep below run out, and the window must still drop what left the horizon.
        if pruned.elapsed() >= every {
            window.prune(now());
            pruned = tokio::time::Instant::now();
        }
        let cursor = window.cursor();
        match store.changes_since(cursor, 5000).await {
            Ok(page) => {
                failures = 0;
                window.feed_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                let full = page.events.len() >= 5000;
                window.apply(page.events, page.cursor, now());
                if full {
                    continue; // more to read right away
                }
            }
            Err(e) => {
                failures += 1;
                window.feed_flag.store(false, std::sync::atomic::Ordering::Relaxed);
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = %e, "Change feed read failed; retrying.");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;
    use futures_util::StreamExt;

    const DAY: i64 = 86_400_000_000;
    const NOW: i64 = 1_800_000_000_000_000;

    fn stored(unid: &str, time_us: i64, lastupdate_us: i64, seq: i64) -> Stored {
        Stored {
            event: Event {
                unid: unid.into(),
                time_us,
                lastupdate_us,
                lat: 1.0,
                lon: 2.0,
                depth_km: 3.0,
                mag: Some(4.0),
                magtype: None,
                region: None,
                auth: None,
                evtype: None,
                source_id: None,
                source_catalog: None,
            },
            version: Version { lastupdate_us, arrival: 1 },
            seq,
        }
    }

    fn window() -> Window {
        Window::new(Duration::from_secs(30 * 86_400), 100)
    }

    #[test]
    fn history_moves_the_store_version_only_and_repeats_move_nothing() {
        let w = window();
        let old = stored("OLD", NOW - 40 * DAY, NOW - 40 * DAY, 1);
        let v0 = w.versions();
        assert_eq!(w.apply(vec![old.clone()], 1, NOW), 0);
        let v1 = w.versions();
        assert_eq!(v1.window, v0.window, "nothing the window holds changed");
        assert_eq!(v1.store, v0.store + 1, "but the store did");
        // The feed's overlap re-reads it: no news.
        w.apply(vec![old.clone()], 1, NOW);
        assert_eq!(w.versions().store, v1.store);
        // A revision of the old event is news.
        w.apply(vec![stored("OLD", NOW - 40 * DAY, NOW - DAY, 2)], 2, NOW);
        assert_eq!(w.versions().store, v1.store + 1);
        assert!(w.is_empty());
    }

    #[test]
    fn an_event_revised_out_of_the_window_leaves_it_and_is_told() {
        let w = window();
        let mut rx = w.subscribe();
        w.apply(vec![stored("A", NOW - DAY, NOW - DAY, 1)], 1, NOW);
        assert_eq!(rx.try_recv().unwrap().kind, "created");
        let v = w.versions();
        w.apply(vec![stored("A", NOW - 31 * DAY, NOW, 2)], 2, NOW);
        assert!(w.get("A").is_none() && w.is_empty());
        assert!(w.versions().window > v.window && w.versions().store > v.store);
        let c = rx.try_recv().unwrap();
        assert_eq!((c.kind, c.id), ("updated", 2));
        assert!(w.query(&WindowQuery::new(NOW - 30 * DAY, NOW)).entries.is_empty());
    }

    #[test]
    fn a_window_cut_to_its_size_does_not_claim_what_it_dropped() {
        let w = Window::new(Duration::from_secs(30 * 86_400), 2);
        let page = (0..3).map(|i| stored(&format!("E{i}"), NOW - (10 - i) * DAY, NOW, i + 1)).collect();
        w.apply(page, 3, NOW);
        assert_eq!(w.len(), 2);
        assert!(!w.covers(NOW - 10 * DAY, NOW).0, "E0 was dropped: the store answers from there");
        assert!(w.covers(NOW - 9 * DAY + 1, NOW).0);
    }

    #[tokio::test]
    async fn changes_arriving_out_of_feed_order_reach_live_and_resuming_clients() {
        // DynamoDB's feed positions are writers' clocks: a change with a lower position can
        // show up after a higher one.
        let w = window().with_feed_overlap(5_000_000);
        w.apply(vec![stored("A", NOW - DAY, NOW - DAY, 10_000_000)], 10_000_000, NOW);
        let live = first_ids(&w, None, 2);
        // Resumed at A's position: re-sent the overlap (A again), then the rest.
        let resumed = first_ids(&w, Some(10_000_000), 3);
        w.apply(vec![stored("B", NOW - DAY, NOW - DAY, 9_000_000)], 10_000_000, NOW);
        w.apply(vec![stored("C", NOW - DAY, NOW - DAY, 11_000_000)], 11_000_000, NOW);
        assert_eq!(live.await, [9_000_000, 11_000_000], "the late change is not taken for one already sent");
        assert_eq!(resumed.await, [10_000_000, 9_000_000, 11_000_000]);
        // A client that resumes later is re-sent the overlap, so the late change is not lost.
        let (missed, _) = w.resume(Some(11_000_000));
        let ids: Vec<i64> = missed.unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, [10_000_000, 9_000_000, 11_000_000]);
        // Behind what the ring holds: reload.
        let w = Window { replay_capacity: 1, ..window() };
        w.apply(vec![stored("A", NOW - DAY, NOW, 1), stored("B", NOW - DAY, NOW, 2)], 2, NOW);
        assert!(w.resume(Some(0)).0.is_none() && w.resume(Some(1)).0.is_some());
    }

    /// The ids of the first `n` changes a client gets.
    fn first_ids(w: &Window, last: Option<i64>, n: usize) -> impl std::future::Future<Output = Vec<i64>> {
        let frames = crate::web::stream_frames(w, last, usize::MAX);
        async move {
            frames
                .filter_map(|f| async move {
                    match f {
                        crate::web::StreamFrame::Change(c) => Some(c.id),
                        _ => None,
                    }
                })
                .take(n)
                .collect()
                .await
        }
    }
}
