//! Faults against real peers: consumers killed mid-stream, a websocket dropped while FDSN holds
//! the missed events, a Kafka broker taken down with its partitions moved, and mutated frames.

mod common;

use common::*;
use quake::model::{parse_frame, Envelope, Frame};
use quake::producer::{run_live, LiveConfig};
use quake::store::sqlite::SqliteStore;
use quake::store::{Store, WindowQuery};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("q.sqlite")).unwrap());
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_ten_times_loses_nothing_and_never_regresses() {
    let lines = fixture_lines(REPLAY);
    let expected = expected_final(&lines);
    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store.clone());
    let ingest = p.ingest();
    let producer = tokio::spawn(async move {
        for (i, l) in lines.iter().enumerate() {
            ingest.frame("replay", l).await.unwrap();
            // Spread the replay over a few seconds so kills land in the middle of it.
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for kill in 0..10 {
        let (_token, task) = p.consumer("store");
        let alive = Duration::from_millis(rng.random_range(150..900));
        tokio::time::sleep(alive).await;
        task.abort(); // the task dies wherever it is: mid-batch, mid-write, mid-commit
        let _ = task.await;
        // No stored event may ever hold an older version than one already seen for it.
        check_no_regression(store.as_ref(), kill).await;
    }
    producer.await.unwrap();
    let (token, task) = p.consumer("store");
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(120)).await;
    token.cancel();
    task.await.unwrap();
}

async fn check_no_regression(store: &dyn Store, round: usize) {
    static SEEN: std::sync::Mutex<Option<HashMap<String, quake::model::Version>>> = std::sync::Mutex::new(None);
    let all = store.window(&WindowQuery::new(0, i64::MAX / 2)).await.unwrap();
    let mut guard = SEEN.lock().unwrap();
    let seen = guard.get_or_insert_with(HashMap::new);
    for s in all {
        if let Some(prev) = seen.get(&s.event.unid) {
            assert!(s.version >= *prev, "round {round}: {} went back from {prev:?} to {:?}", s.event.unid, s.version);
        }
        seen.insert(s.event.unid.clone(), s.version);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_drop_is_caught_up_from_fdsn() {
    // A live socket delivers in revision order; the replay file is in snapshot order.
    let mut lines = fixture_lines(REPLAY);
    lines.truncate(1200);
    lines.sort_by_key(|l| match parse_frame(l) {
        Ok(Frame::Event(_, e)) => e.lastupdate_us,
        _ => 0,
    });
    let (drop_at, missed) = (500, 300);
    // EMSC's catalogue at the time of the reconnect: the newest version of everything so far.
    let catalogue: Vec<serde_json::Value> =
        expected_final(&lines[..drop_at + missed]).values().map(|e| e.to_feature()).collect();
    let expected = expected_final(&lines);
    let missed_unids: Vec<String> = expected_final(&lines[drop_at..drop_at + missed]).into_keys().collect();
    let emsc = FakeEmsc::start(lines).await;
    *emsc.state.catalogue.lock().unwrap() = catalogue;
    *emsc.state.drop_at.lock().unwrap() = Some(drop_at);
    emsc.state.skip_on_drop.store(missed, Ordering::SeqCst);

    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store.clone());
    let (token, task) = p.consumer("store");
    let mut cfg = LiveConfig::new(&emsc.ws_url, &emsc.fdsn_url);
    cfg.backfill_hours = 0;
    cfg.backoff_base = Duration::from_millis(100);
    let stop = CancellationToken::new();
    let producer = tokio::spawn(run_live(cfg, p.ingest(), Arc::new(AtomicBool::new(false)), stop.clone()));
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(60)).await;
    assert_eq!(emsc.state.connections.load(Ordering::SeqCst), 2, "one reconnect");
    assert_eq!(p.metrics.reconnects.get(), 1);
    let reqs = emsc.state.fdsn_requests.lock().unwrap().clone();
    assert!(reqs.iter().any(|q| q.contains_key("updatedafter")), "catch-up asked FDSN: {reqs:?}");
    assert!(missed_unids.len() > 100, "the gap held {} events", missed_unids.len());
    for u in &missed_unids {
        assert!(store.get(u).await.unwrap().is_some(), "missed event {u} not caught up");
    }
    stop.cancel();
    token.cancel();
    producer.await.unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_websocket_is_detected_by_missing_pongs() {
    // A server that accepts, then never reads or answers: pings go unanswered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acc = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            // Finish the handshake, then hold the socket without ever polling it again.
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                held.push(ws);
            }
        }
    });
    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store);
    let mut cfg = LiveConfig::new(&url, "http://127.0.0.1:9/none");
    cfg.backfill_hours = 0;
    cfg.ping_interval = Duration::from_millis(100);
    cfg.dead_after = Duration::from_millis(350);
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(50);
    let stop = CancellationToken::new();
    let producer = tokio::spawn(run_live(cfg, p.ingest(), Arc::new(AtomicBool::new(false)), stop.clone()));
    // Each silent link is given up after `dead_after`, then the producer connects again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Counted once the producer's side of the handshake is done: the server's accept alone
    // comes earlier, and a stop right after it raced the count.
    while p.metrics.reconnects.get() < 2 {
        let n = accepted.load(Ordering::SeqCst);
        assert!(tokio::time::Instant::now() < deadline, "reconnected after silent links: {n} accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    producer.await.unwrap();
    assert!(accepted.load(Ordering::SeqCst) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_and_leader_moved_loses_nothing() {
    let lines = fixture_lines(REPLAY);
    let expected = expected_final(&lines);
    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store.clone());
    let (token, task) = p.consumer("store");
    let ingest = p.ingest();
    let (half_tx, half_rx) = tokio::sync::oneshot::channel();
    let producer = tokio::spawn(async move {
        let mut half = Some(half_tx);
        for (i, l) in lines.iter().enumerate() {
            ingest.frame("replay", l).await.unwrap();
            if i == lines.len() / 2 {
                let _ = half.take().unwrap().send(());
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    half_rx.await.unwrap();
    {
        let cluster = p.broker.as_ref().unwrap().cluster();
        cluster.broker_down(1).unwrap();
        for part in 0..3 {
            cluster.partition_leader("quakes", part, Some(2)).unwrap();
            cluster.partition_leader("quakes.dlq", 0, Some(3)).unwrap();
        }
    }
    producer.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.broker.as_ref().unwrap().cluster().broker_up(1).unwrap();
    assert!(p.publisher.flush(Duration::from_secs(60)).await, "every message acknowledged");
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(90)).await;
    token.cancel();
    task.await.unwrap();
}

/// 1000 mutated real frames: truncated, wrong types, huge strings, missing fields.
fn mutations(lines: &[String], n: usize) -> Vec<(String, &'static str)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let line = &lines[rng.random_range(0..lines.len())];
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let props = v.pointer_mut("/data/properties").unwrap().as_object_mut().unwrap();
        let kind = out.len() % 5;
        let text = match kind {
            0 => {
                let cut = rng.random_range(1..line.len() - 1);
                line[..cut].to_owned()
            }
            1 => {
                let (k, bad) = [
                    ("mag", serde_json::json!("4.5")),
                    ("lat", serde_json::json!([1])),
                    ("time", serde_json::json!(1712800000)),
                    ("unid", serde_json::json!({"a": 1})),
                    ("depth", serde_json::json!(true)),
                    ("flynn_region", serde_json::json!(12.5e300)),
                ][rng.random_range(0..6)]
                .clone();
                if k == "flynn_region" {
                    // A number is tolerated for text fields; make it an array instead.
                    props.insert(k.into(), serde_json::json!(["x"]));
                } else {
                    props.insert(k.into(), bad);
                }
                v.to_string()
            }
            2 => {
                let huge = "X".repeat(rng.random_range(10_000..200_000));
                let k = ["flynn_region", "unid", "auth", "magtype"][rng.random_range(0..4)];
                props.insert(k.into(), serde_json::json!(huge));
                v.to_string()
            }
            3 => {
                match rng.random_range(0..3) {
                    0 => {
                        props.remove("unid");
                        v.as_object_mut().unwrap().get_mut("data").unwrap().as_object_mut().unwrap().remove("id");
                    }
                    1 => {
                        props.remove("time");
                    }
                    _ => {
                        v.as_object_mut().unwrap().remove("data");
                    }
                }
                v.to_string()
            }
            _ => {
                props.insert("lat".into(), serde_json::json!(rng.random_range(90.5..1000.0)));
                v.to_string()
            }
        };
        out.push((text, ["truncated", "wrong type", "huge string", "missing field", "out of range"][kind]));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_mutated_frames_all_dead_lettered_with_reasons() {
    let lines = fixture_lines(REPLAY);
    let muts = mutations(&lines, 1000);
    for (m, kind) in &muts {
        assert!(parse_frame(m).is_err(), "{kind} mutation was accepted: {}", &m[..m.len().min(300)]);
    }
    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store.clone());
    let (token, task) = p.consumer("store");
    let ingest = p.ingest();
    for (m, _) in &muts {
        ingest.frame("ws", m).await.unwrap();
    }
    // Nothing crashed: a good frame afterwards still goes all the way through.
    let good = &lines[0];
    ingest.frame("ws", good).await.unwrap();
    let expected = expected_final(std::slice::from_ref(good));
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(30)).await;

    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.topics.brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .unwrap();
    dlq.subscribe(&[&p.topics.dead_letter]).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < 1000 {
        let m = tokio::time::timeout(Duration::from_secs(20), dlq.recv()).await.expect("dead letters arrive").unwrap();
        let h = m.headers().expect("dead letter has headers");
        let reason = h.iter().find(|h| h.key == "reason").and_then(|h| h.value).expect("reason header");
        reasons.push(String::from_utf8_lossy(reason).into_owned());
        // The payload is the frame as received, so it can be inspected and replayed.
        assert!(m.payload().is_some_and(|p| !p.is_empty()));
    }
    assert!(reasons.iter().all(|r| !r.is_empty()));
    assert!(reasons.iter().any(|r| r.starts_with("not JSON")));
    assert!(reasons.iter().any(|r| r.contains("longer than")));
    assert!(reasons.iter().any(|r| r.contains("outside [-90, 90]")));
    assert_eq!(p.metrics.dead_lettered.get_or_create(&quake::metrics::StageLabel { stage: "ws".into() }).get(), 1000);
    assert_eq!(store.window(&WindowQuery::new(0, i64::MAX / 2)).await.unwrap().len(), 1);
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_on_the_topic_are_dead_lettered_by_the_consumer() {
    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store.clone());
    let producer: rdkafka::producer::FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &p.topics.brokers).create().unwrap();
    for payload in ["{not json", "{\"action\":\"create\"}", "[]"] {
        producer
            .send(rdkafka::producer::FutureRecord::to("quakes").key("k").payload(payload), Duration::from_secs(5))
            .await
            .unwrap();
    }
    let good = fixture_lines(REPLAY).remove(0);
    let Ok(Frame::Event(action, event)) = parse_frame(&good) else { panic!() };
    let env = Envelope { action, arrival: 1, source: "test".into(), event: event.clone() };
    p.publisher.publish(&env).await.unwrap();
    let (token, task) = p.consumer("store");
    let expected = HashMap::from([(event.unid.clone(), event)]);
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while p.metrics.dead_lettered.get_or_create(&quake::metrics::StageLabel { stage: "consumer".into() }).get() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "poison messages dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_delivery_through_kafka_ends_in_the_same_state() {
    let lines = fixture_lines(REPLAY);
    let expected = expected_final(&lines);
    // Envelopes stamped in file order, then published in a random order.
    let mut envs: Vec<Envelope> = stamped(&lines);
    envs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
    let (_dir, store) = sqlite();
    let p = Pipeline::mock(store.clone());
    for e in &envs {
        p.publisher.publish(e).await.unwrap();
    }
    let (token, task) = p.consumer("store");
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(60)).await;
    token.cancel();
    task.await.unwrap();
}

/// Wraps a store and answers a share of writes with throttling, as DynamoDB does under load.
struct Throttling {
    inner: Arc<dyn Store>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Throttling {
    async fn upsert(&self, env: &Envelope) -> Result<quake::store::WriteOutcome, quake::store::StoreError> {
        self.inner.upsert(env).await
    }
    async fn upsert_batch(
        &self,
        envs: &[Envelope],
    ) -> Vec<Result<quake::store::WriteOutcome, quake::store::StoreError>> {
        // Every third batch is refused as a whole, before anything is written.
        if self.calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(3) {
            return envs.iter().map(|_| Err(quake::store::StoreError::Throttled("test".into()))).collect();
        }
        self.inner.upsert_batch(envs).await
    }
    async fn get(&self, unid: &str) -> Result<Option<quake::store::Stored>, quake::store::StoreError> {
        self.inner.get(unid).await
    }
    async fn window(&self, q: &WindowQuery) -> Result<Vec<quake::store::Stored>, quake::store::StoreError> {
        self.inner.window(q).await
    }
    async fn changes_since(&self, c: i64, l: usize) -> Result<quake::store::Changes, quake::store::StoreError> {
        self.inner.changes_since(c, l).await
    }
    async fn ping(&self) -> Result<(), quake::store::StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_store_writes_are_retried_until_stored() {
    let lines = fixture_lines(REPLAY);
    let expected = expected_final(&lines);
    let (_dir, inner) = sqlite();
    let store: Arc<dyn Store> = Arc::new(Throttling { inner, calls: Default::default() });
    let p = Pipeline::mock(store.clone());
    let (token, task) = p.consumer("store");
    let ingest = p.ingest();
    for l in &lines {
        ingest.frame("replay", l).await.unwrap();
    }
    wait_for_store(store.as_ref(), &expected, Duration::from_secs(120)).await;
    assert!(p.metrics.store_retries.get() > 0, "throttling was hit and retried");
    assert_eq!(
        p.metrics.dead_lettered.get_or_create(&quake::metrics::StageLabel { stage: "consumer".into() }).get(),
        0
    );
    token.cancel();
    task.await.unwrap();
}
