//! Test harness: real peers started per test (moto server, librdkafka mock cluster, a local
//! EMSC websocket + FDSN server) and helpers to read the shared real-data fixtures.
#![allow(dead_code)]

pub mod hostile;
mod probe;
pub use probe::*;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures_util::{SinkExt, StreamExt};
use quake::consumer::{self, ConsumerConfig};
use quake::kafka::{LocalBroker, Publisher, Topics};
use quake::metrics::Metrics;
use quake::model::{parse_feature, parse_frame, Envelope, Event, Frame};
use quake::store::{Store, WindowQuery};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub const REPLAY: &str = "emsc/replay_2024-04-11_to_18.jsonl";

/// A file of `../shared/fixtures/`; panics with a clear message when it is absent, so a missing
/// fixture never passes silently.
pub fn fixture(rel: &str) -> PathBuf {
    let base = std::env::var("QUAKE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let p = base.join("fixtures").join(rel);
    assert!(p.exists(), "fixture {} is missing: these tests need ../shared/fixtures beside the project", p.display());
    p
}

pub fn fixture_lines(rel: &str) -> Vec<String> {
    std::fs::read_to_string(fixture(rel))
        .expect("readable fixture")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The state the store must end in: the last message of each `unid`, in the given order.
pub fn expected_final(lines: &[String]) -> HashMap<String, Event> {
    let mut m = HashMap::new();
    for l in lines {
        if let Ok(Frame::Event(_, e)) = parse_frame(l) {
            m.insert(e.unid.clone(), e);
        }
    }
    m
}

/// Every event message of the lines as an envelope, arrival stamped in line order.
pub fn stamped(lines: &[String]) -> Vec<Envelope> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match parse_frame(l) {
            Ok(Frame::Event(action, event)) => {
                Some(Envelope { action, arrival: i as i64 + 1, source: "replay".into(), event })
            }
            _ => None,
        })
        .collect()
}

/// The real broker `make test` starts (QUAKE_TEST_KAFKA). Without it a test fails, unless
/// QUAKE_SKIP_BROKER_TIER=1 says the tier is skipped on purpose.
pub fn real_broker() -> Option<String> {
    match std::env::var("QUAKE_TEST_KAFKA") {
        Ok(b) => Some(b),
        Err(_) => {
            assert_eq!(
                std::env::var("QUAKE_SKIP_BROKER_TIER").as_deref(),
                Ok("1"),
                "QUAKE_TEST_KAFKA is not set: run through `make test`, or set QUAKE_SKIP_BROKER_TIER=1"
            );
            None
        }
    }
}

/// A moto server on a free port, killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub async fn start() -> Self {
        let bin = std::env::var("QUAKE_MOTO_SERVER").unwrap_or_else(|_| {
            format!("{}/.cache/quake/venv/bin/moto_server", std::env::var("HOME").unwrap_or_default())
        });
        assert!(
            std::path::Path::new(&bin).exists(),
            "moto_server not found at {bin}: run `make deps` (or set QUAKE_MOTO_SERVER)"
        );
        let port = free_port();
        // Waited for in Drop.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(format!("{url}/moto-api/")).send().await.is_ok() {
                return Self { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer on {url}");
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("eu-central-1"))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fake EMSC serves: websocket frames per connection and an FDSN catalogue.
#[derive(Default)]
pub struct EmscState {
    /// Frames to send, consumed by the connections in turn.
    pub frames: Mutex<Vec<String>>,
    pub next: AtomicUsize,
    /// Close the current connection abruptly once `next` reaches this index.
    pub drop_at: Mutex<Option<usize>>,
    /// Frames skipped (sent to nobody) when the drop happens: what the producer missed.
    pub skip_on_drop: AtomicUsize,
    pub catalogue: Mutex<Vec<Value>>,
    pub connections: AtomicUsize,
    pub fdsn_requests: Mutex<Vec<HashMap<String, String>>>,
    /// Delay between frames.
    pub pace: Mutex<Duration>,
    pub done: AtomicBool,
}

pub struct FakeEmsc {
    pub state: Arc<EmscState>,
    pub ws_url: String,
    pub fdsn_url: String,
}

impl FakeEmsc {
    pub async fn start(frames: Vec<String>) -> Self {
        let state = Arc::new(EmscState { frames: Mutex::new(frames), ..Default::default() });
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_url = format!("ws://{}/standing_order/websocket", ws.local_addr().unwrap());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = ws.accept().await else { return };
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(mut sock) = tokio_tungstenite::accept_async(tcp).await else { return };
                    st.connections.fetch_add(1, Ordering::SeqCst);
                    loop {
                        let i = st.next.load(Ordering::SeqCst);
                        let drop_at = *st.drop_at.lock().unwrap();
                        if drop_at == Some(i) {
                            *st.drop_at.lock().unwrap() = None;
                            st.next.fetch_add(st.skip_on_drop.load(Ordering::SeqCst), Ordering::SeqCst);
                            // Abrupt: no close frame, the TCP connection just goes away.
                            return;
                        }
                        let frame = st.frames.lock().unwrap().get(i).cloned();
                        let Some(frame) = frame else {
                            st.done.store(true, Ordering::SeqCst);
                            // Quiet, like EMSC between events: answer pings, wait for more frames.
                            tokio::select! {
                                m = sock.next() => if !matches!(m, Some(Ok(_))) { return },
                                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                            }
                            continue;
                        };
                        if sock.send(Message::Text(frame.into())).await.is_err() {
                            return;
                        }
                        st.next.fetch_add(1, Ordering::SeqCst);
                        let pace = *st.pace.lock().unwrap();
                        if !pace.is_zero() {
                            tokio::time::sleep(pace).await;
                        }
                    }
                });
            }
        });
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fdsn_url = format!("http://{}/fdsnws/event/1/query", http.local_addr().unwrap());
        let app =
            axum::Router::new().route("/fdsnws/event/1/query", axum::routing::get(fdsn)).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        Self { state, ws_url, fdsn_url }
    }
}

/// FDSN semantics as EMSC answers them: `updatedafter`, `starttime`, 1-based `offset`, `limit`,
/// `orderby=time-asc`, and an empty 204 when nothing matches.
async fn fdsn(State(st): State<Arc<EmscState>>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    st.fdsn_requests.lock().unwrap().push(q.clone());
    let t = |k: &str| q.get(k).and_then(|s| quake::model::parse_utc(s));
    let updated_after = t("updatedafter");
    let start = t("starttime");
    let mut hits: Vec<(i64, Value)> = st
        .catalogue
        .lock()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let e = parse_feature(f).ok()?;
            if updated_after.is_some_and(|u| e.lastupdate_us <= u) || start.is_some_and(|s| e.time_us < s) {
                return None;
            }
            Some((e.time_us, f.clone()))
        })
        .collect();
    hits.sort_by_key(|(t, _)| *t);
    let offset: usize = q.get("offset").and_then(|s| s.parse().ok()).unwrap_or(1);
    let limit: usize = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let page: Vec<Value> = hits.into_iter().skip(offset.saturating_sub(1)).take(limit).map(|(_, f)| f).collect();
    if page.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    // EMSC's count may exceed the features: make it wrong on purpose.
    let body =
        serde_json::json!({"type": "FeatureCollection", "metadata": {"count": page.len() + 3}, "features": page});
    axum::Json(body).into_response()
}

/// Broker, topics, publisher and a consumer task, all real, around a store.
pub struct Pipeline {
    pub broker: Option<LocalBroker>,
    pub topics: Topics,
    pub metrics: Metrics,
    pub publisher: Publisher,
    pub store: Arc<dyn Store>,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

impl Pipeline {
    /// With the in-process mock cluster (3 brokers, 3 partitions, replication 3).
    pub fn mock(store: Arc<dyn Store>) -> Self {
        let topics = ("quakes", "quakes.dlq");
        let broker = LocalBroker::start(3, &[(topics.0, 3), (topics.1, 1)]).unwrap();
        let t = Topics { brokers: broker.bootstrap_servers(), events: topics.0.into(), dead_letter: topics.1.into() };
        Self::with(Some(broker), t, store)
    }

    /// With a real broker at `brokers` (topics auto-created, unique per test).
    pub fn real(brokers: &str, store: Arc<dyn Store>) -> Self {
        let events = unique("quakes");
        let t = Topics { brokers: brokers.into(), dead_letter: format!("{events}.dlq"), events };
        Self::with(None, t, store)
    }

    fn with(broker: Option<LocalBroker>, topics: Topics, store: Arc<dyn Store>) -> Self {
        let metrics = Metrics::new();
        let publisher = Publisher::new(topics.clone(), metrics.clone()).unwrap();
        Self { broker, topics, metrics, publisher, store }
    }

    pub fn ingest(&self) -> quake::ingest::Ingest {
        quake::ingest::Ingest::new(self.publisher.clone(), self.metrics.clone())
    }

    /// Starts a consumer in `group`; returns its shutdown token and task.
    pub fn consumer(&self, group: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        self.consumer_notifying(group, None)
    }

    /// A consumer that tells `stored` after each batch (as in the one-process mode).
    pub fn consumer_notifying(
        &self,
        group: &str,
        stored: Option<Arc<tokio::sync::Notify>>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let token = CancellationToken::new();
        let mut cfg = ConsumerConfig::new(&self.topics.brokers, &self.topics.events, group);
        cfg.session_timeout = Duration::from_secs(6);
        cfg.stored = stored;
        let fut = consumer::run(
            cfg,
            self.store.clone(),
            self.publisher.clone(),
            self.metrics.clone(),
            Arc::new(AtomicBool::new(false)),
            token.clone(),
        );
        let task = tokio::spawn(async move {
            fut.await.expect("consumer runs");
        });
        (token, task)
    }
}

/// Waits until the store holds exactly `expected` (by window count and by each `get`).
pub async fn wait_for_store(store: &dyn Store, expected: &HashMap<String, Event>, timeout: Duration) {
    let (lo, hi) = expected.values().fold((i64::MAX, i64::MIN), |(a, b), e| (a.min(e.time_us), b.max(e.time_us)));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let all = store.window(&WindowQuery::new(lo, hi)).await.unwrap();
        if all.len() == expected.len() && all.iter().all(|s| expected.get(&s.event.unid) == Some(&s.event)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store has {} events, {} matching, expected {} distinct",
            all.len(),
            all.iter().filter(|s| expected.get(&s.event.unid) == Some(&s.event)).count(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Each unid exactly once, with the values of its last message.
    for (unid, e) in expected {
        let got = store.get(unid).await.unwrap().unwrap_or_else(|| panic!("{unid} missing"));
        assert_eq!(&got.event, e, "{unid} does not hold its last message");
    }
}

/// The whole local product in this process: fake EMSC -> producer -> mock Kafka -> consumer ->
/// SQLite -> window -> web server on a free port.
pub struct LiveStack {
    pub url: String,
    pub emsc: FakeEmsc,
    pub pipeline: Pipeline,
    pub window: Arc<quake::web::window::Window>,
    stop: CancellationToken,
    consumer: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    _dir: tempfile::TempDir,
}

pub fn assets_dir() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/web");
    assert!(p.join("vendor/leaflet/leaflet.js").exists(), "map page libraries missing: run `make deps`");
    p
}

impl LiveStack {
    pub async fn start(frames: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(quake::store::sqlite::SqliteStore::open(&dir.path().join("q.sqlite")).unwrap());
        let pipeline = Pipeline::mock(store.clone());
        let stop = CancellationToken::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let consumer = pipeline.consumer_notifying("store", Some(wake.clone()));
        let window = Arc::new(quake::web::window::Window::new(Duration::from_secs(30 * 86_400), 200_000));
        tokio::spawn(quake::web::window::follow(
            window.clone(),
            store.clone(),
            wake,
            Duration::from_millis(500),
            quake::web::now_us,
            stop.clone(),
        ));
        let state = quake::web::WebState::new(window.clone(), store.clone(), assets_dir());
        let app = quake::web::app(
            state.clone(),
            quake::health::HealthState { metrics: pipeline.metrics.clone(), checks: vec![], store: Some(store) },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(quake::web::serve(listener, app, state, stop.clone()));
        let emsc = FakeEmsc::start(frames).await;
        let mut cfg = quake::producer::LiveConfig::new(&emsc.ws_url, &emsc.fdsn_url);
        cfg.backfill_hours = 0;
        tokio::spawn(quake::producer::run_live(cfg, pipeline.ingest(), Arc::new(AtomicBool::new(false)), stop.clone()));
        Self { url, emsc, pipeline, window, stop, consumer: Some(consumer), _dir: dir }
    }

    /// Stops everything and waits for the consumer to leave its group: a Kafka consumer
    /// dropped while the runtime shuts down can block in its close.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some((token, task)) = self.consumer.take() {
            token.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// Sends one more websocket frame.
    pub fn push(&self, frame: String) {
        self.emsc.state.frames.lock().unwrap().push(frame);
    }
}

impl Drop for LiveStack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Replay lines with their times moved so the newest revision is now.
pub fn shifted_to_now(lines: &[String]) -> Vec<String> {
    let newest = lines
        .iter()
        .filter_map(|l| match parse_frame(l) {
            Ok(Frame::Event(_, e)) => Some(e.lastupdate_us),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let offset = chrono::Utc::now().timestamp_micros() - newest;
    lines.iter().map(|l| quake::producer::shifted(l, offset).unwrap_or_else(|| l.clone())).collect()
}
