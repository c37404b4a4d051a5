//! No stale answers: the web server's kept answers (encoded bodies, ETags, the stream's resume
//! ring) follow every store write that can change them, on SQLite and on DynamoDB (moto), with
//! the real change-feed follower, asked while writes are in flight on a loaded machine.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use quake::health::HealthState;
use quake::model::{Action, Envelope, Event};
use quake::store::dynamo::DynamoStore;
use quake::store::sqlite::SqliteStore;
use quake::store::Store;
use quake::web::window::{follow, Window};
use quake::web::{app, WebState};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The query: a month the in-memory window (30 days back from now) does not hold.
const APRIL: &str = "/api/quakes?starttime=2024-04-01&endtime=2024-05-01&limit=50000";

fn ev(unid: &str, time: &str, mag: f64) -> Event {
    let t = quake::model::parse_utc(time).unwrap();
    Event {
        unid: unid.into(),
        time_us: t,
        lastupdate_us: t + 600_000_000,
        lat: 38.0,
        lon: 23.0,
        depth_km: 10.0,
        mag: Some(mag),
        magtype: Some("ml".into()),
        region: Some("GREECE".into()),
        auth: Some("EMSC".into()),
        evtype: Some("ke".into()),
        source_id: Some("1".into()),
        source_catalog: Some("EMSC-RTS".into()),
    }
}

fn now_iso(minus_hours: i64) -> String {
    quake::model::format_utc(chrono::Utc::now().timestamp_micros() - minus_hours * 3_600_000_000)
}

/// A store with the real follower and router in front of it.
struct Server {
    store: Arc<dyn Store>,
    window: Arc<Window>,
    router: axum::Router,
    arrival: AtomicI64,
    stop: CancellationToken,
}

impl Server {
    fn start(store: Arc<dyn Store>) -> Self {
        let window =
            Arc::new(Window::new(Duration::from_secs(30 * 86_400), 100_000).with_feed_overlap(store.feed_overlap()));
        let stop = CancellationToken::new();
        tokio::spawn(follow(
            window.clone(),
            store.clone(),
            Arc::new(tokio::sync::Notify::new()),
            Duration::from_millis(100),
            quake::web::now_us,
            stop.clone(),
        ));
        let router = app(WebState::new(window.clone(), store.clone(), assets_dir()), HealthState::default());
        Self { store, window, router, arrival: AtomicI64::new(0), stop }
    }

    async fn write(&self, e: Event) {
        let arrival = self.arrival.fetch_add(1, Ordering::SeqCst) + 1;
        self.store.upsert(&Envelope { action: Action::Create, arrival, source: "t".into(), event: e }).await.unwrap();
    }

    async fn get(&self, uri: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(uri);
        if let Some(t) = if_none_match {
            req = req.header("if-none-match", t);
        }
        let res = self.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    /// unid -> magnitude of a GeoJSON answer, and its ETag.
    async fn answer(&self, uri: &str) -> (Vec<(String, f64)>, String) {
        let (st, h, body) = self.get(uri, None).await;
        assert_eq!(st, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut out: Vec<(String, f64)> = v["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["id"].as_str().unwrap().to_owned(), f["properties"]["mag"].as_f64().unwrap()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        (out, h["etag"].to_str().unwrap().to_owned())
    }

    /// Asks `uri` until `done` holds for its answer; the follower polls every 100 ms.
    async fn until(&self, uri: &str, what: &str, done: impl Fn(&[(String, f64)]) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (a, etag) = self.answer(uri).await;
            if done(&a) {
                return etag;
            }
            assert!(tokio::time::Instant::now() < deadline, "{uri}: never {what}; last answer {a:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn has(a: &[(String, f64)], unid: &str, mag: f64) -> bool {
    a.iter().any(|(u, m)| u == unid && *m == mag)
}

/// The case, then the same flaw looked for elsewhere: CSV, one event, an event revised
/// out of the window, and answers asked for while a writer is busy.
async fn answers_follow_the_store(store: Arc<dyn Store>) {
    let _busy = Busy::start();
    let s = Server::start(store);
    s.write(ev("20240411_0000001", "2024-04-11T01:00:00Z", 3.0)).await;
    s.write(ev("20240412_0000002", "2024-04-12T02:00:00Z", 4.0)).await;
    s.write(ev("NOW_0000001", &now_iso(2), 2.5)).await;
    s.until("/api/quakes?window=24h", "shows the recent event", |a| a.len() == 1).await;
    let etag1 = s.until(APRIL, "holds the history", |a| a.len() == 2).await;
    let csv1 = s.get(&format!("{APRIL}&format=csv"), None).await.2;
    // Asked again unchanged: the same ETag, and 304 for it.
    assert_eq!(s.answer(APRIL).await.1, etag1);
    assert_eq!(s.get(APRIL, Some(&etag1)).await.0, StatusCode::NOT_MODIFIED);

    // Writes outside the window: history, and a revision of an old event (EMSC sends them).
    s.write(ev("20240415_0000003", "2024-04-15T03:00:00Z", 5.0)).await;
    let mut revised = ev("20240411_0000001", "2024-04-11T01:00:00Z", 3.3);
    revised.lastupdate_us += 86_400_000_000;
    s.write(revised).await;
    let etag2 = s
        .until(APRIL, "shows the new event and the revision", |a| {
            a.len() == 3 && has(a, "20240415_0000003", 5.0) && has(a, "20240411_0000001", 3.3)
        })
        .await;
    assert_ne!(etag2, etag1, "a changed answer has a new ETag");
    let (st, _, body) = s.get(APRIL, Some(&etag1)).await;
    assert_eq!(st, StatusCode::OK, "the old ETag no longer matches");
    assert!(!body.is_empty());
    assert_eq!(s.get(APRIL, Some(&etag2)).await.0, StatusCode::NOT_MODIFIED, "the new ETag does");
    let csv2 = String::from_utf8(s.get(&format!("{APRIL}&format=csv"), None).await.2).unwrap();
    assert_ne!(csv1, csv2.as_bytes());
    assert!(csv2.contains("20240415_0000003") && csv2.contains(",3.3,"), "CSV follows too: {csv2}");
    let (st, _, one) = s.get("/api/quakes/20240411_0000001", None).await;
    assert_eq!(st, StatusCode::OK);
    let one: serde_json::Value = serde_json::from_slice(&one).unwrap();
    assert_eq!(one["properties"]["mag"], 3.3, "one event in its last version");

    // A write that does not change the answer does not change its ETag.
    s.write(ev("NOW_0000002", &now_iso(1), 2.0)).await;
    s.until("/api/quakes?window=24h", "shows the second recent event", |a| a.len() == 2).await;
    assert_eq!(s.answer(APRIL).await.1, etag2, "ETag moves only when the answer does");

    // An event held in the window revised to an origin before it: it leaves the window's
    // answers and appears in the history's.
    let mut moved = ev("NOW_0000001", "2024-04-20T00:00:00Z", 2.5);
    moved.lastupdate_us = chrono::Utc::now().timestamp_micros();
    s.write(moved).await;
    s.until("/api/quakes?window=30d", "drops the event revised out of it", |a| a.len() == 1 && a[0].0 == "NOW_0000002")
        .await;
    s.until(APRIL, "shows the event revised into it", |a| a.len() == 4 && has(a, "NOW_0000001", 2.5)).await;

    // In flight: a writer adds history while readers ask. Answers follow the store through its
    // change feed, so each must hold every write acknowledged before it was asked for within
    // the follower's period (100 ms here; 10 s allowed for the loaded machine): a kept answer
    // that missed them never would.
    let written = Arc::new(AtomicUsize::new(4));
    let writer = {
        let (store, written) = (s.store.clone(), written.clone());
        let arrival = s.arrival.load(Ordering::SeqCst);
        tokio::spawn(async move {
            for i in 0..120 {
                let day = 1 + i % 28;
                let e = ev(&format!("202404{day:02}_1{i:06}"), &format!("2024-04-{day:02}T12:00:00.{i:06}Z"), 1.0);
                let env =
                    Envelope { action: Action::Create, arrival: arrival + 1 + i as i64, source: "w".into(), event: e };
                store.upsert(&env).await.unwrap();
                written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut asked = 0;
    while !writer.is_finished() {
        let before = written.load(Ordering::SeqCst);
        s.until(APRIL, &format!("holds the {before} events stored before asking"), |a| a.len() >= before).await;
        asked += 1;
    }
    writer.await.unwrap();
    assert!(asked >= 3, "asked while writing: {asked} times");
    let total = written.load(Ordering::SeqCst);
    s.until(APRIL, "holds every write", |a| a.len() == total).await;
    let etag3 = s.answer(APRIL).await.1;
    assert_eq!(s.get(APRIL, Some(&etag3)).await.0, StatusCode::NOT_MODIFIED);
    let n = s.window.len();
    assert_eq!(n, 1, "the window holds only the recent event: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_sqlite() {
    answers_follow_the_store(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_dynamodb() {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), "stale");
    store.ensure_table().await.unwrap();
    answers_follow_the_store(Arc::new(store)).await;
}

/// A store whose indexes lag its writes (as DynamoDB's GSIs do), counting window reads.
struct Lagging {
    inner: SqliteStore,
    lag: Duration,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Lagging {
    async fn upsert(&self, env: &Envelope) -> Result<quake::store::WriteOutcome, quake::store::StoreError> {
        self.inner.upsert(env).await
    }
    async fn get(&self, unid: &str) -> Result<Option<quake::store::Stored>, quake::store::StoreError> {
        self.inner.get(unid).await
    }
    async fn window(
        &self,
        q: &quake::store::WindowQuery,
    ) -> Result<Vec<quake::store::Stored>, quake::store::StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.window(q).await
    }
    async fn changes_since(
        &self,
        cursor: i64,
        limit: usize,
    ) -> Result<quake::store::Changes, quake::store::StoreError> {
        self.inner.changes_since(cursor, limit).await
    }
    async fn ping(&self) -> Result<(), quake::store::StoreError> {
        Ok(())
    }
    fn read_lag(&self) -> Duration {
        self.lag
    }
}

/// An answer read from the store sooner than its read lag after a change may miss that change:
/// it is served, not kept. Once the lag has passed, the answer is kept again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_read_before_the_store_settled_are_not_kept() {
    let store = Arc::new(Lagging {
        inner: SqliteStore::in_memory().unwrap(),
        lag: Duration::from_millis(1500),
        reads: AtomicUsize::new(0),
    });
    let s = Server::start(store.clone());
    s.write(ev("20240411_0000001", "2024-04-11T01:00:00Z", 3.0)).await;
    s.until(APRIL, "holds the event", |a| a.len() == 1).await;
    let reads = store.reads.load(Ordering::SeqCst);
    s.answer(APRIL).await;
    s.answer(APRIL).await;
    assert_eq!(store.reads.load(Ordering::SeqCst), reads + 2, "within the lag every answer is read again");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // The lag counts from when the server saw the change, which a loaded machine delays: ask
    // until an answer is kept (bounded), then every further answer comes from it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let before = store.reads.load(Ordering::SeqCst);
        s.answer(APRIL).await;
        s.answer(APRIL).await;
        if store.reads.load(Ordering::SeqCst) <= before + 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no answer kept 10 s after the lag");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = store.reads.load(Ordering::SeqCst);
    for _ in 0..3 {
        s.answer(APRIL).await;
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), settled, "after it, one read is kept and reused");
}
