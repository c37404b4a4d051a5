//! The `quake` binary as operators run it: the one-process local mode, and separate producer and
//! consumer processes configured only through the environment (real broker, DynamoDB on moto);
//! SIGTERM drains and exits cleanly.

mod common;

use common::*;
use quake::store::dynamo::DynamoStore;
use quake::store::sqlite::SqliteStore;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("quake starts"))
    }

    /// SIGTERM, then the exit status within `wait`.
    fn terminate(mut self, wait: Duration) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().unwrap();
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(std::time::Instant::now() < deadline, "quake did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quake"));
    // Only what each test sets: no inherited settings.
    for k in ["KAFKA_BROKERS", "DYNAMODB_TABLE", "QUAKE_DB", "QUAKE_REPLAY", "AWS_ENDPOINT_URL"] {
        c.env_remove(k);
    }
    c
}

async fn wait_metric(port: u16, name: &str, at_least: u64, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while metric(port, name).await < at_least {
        assert!(tokio::time::Instant::now() < deadline, "{name} stayed below {at_least}: {}", metric(port, name).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The replay unshifted: every event is older than the web server's window, so each answer about
/// April 2024 comes from the store. Asked while the replay runs (about 10 s, on a loaded machine)
/// and after it; then SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_replays_into_sqlite_and_stops_on_sigterm() {
    let _busy = Busy::start();
    let replay = fixture(REPLAY);
    let expected = expected_final(&fixture_lines(REPLAY));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.sqlite");
    let port = free_port();
    let p = Proc::spawn(
        quake()
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .env("QUAKE_DB", &db)
            .env("QUAKE_REPLAY", &replay)
            // The file's revisions span 9.2 days: about 10 s.
            .env("QUAKE_REPLAY_SPEED", "80000"),
    );
    let april = format!("http://127.0.0.1:{port}/api/quakes?starttime=2024-04-01&endtime=2024-05-01&limit=50000");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let ask = |etag: Option<String>| {
        let (http, april) = (http.clone(), april.clone());
        async move {
            let mut req = http.get(&april);
            if let Some(t) = etag {
                req = req.header("if-none-match", t);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let etag = res.headers()["etag"].to_str().unwrap().to_owned();
            let n = if status == 200 {
                res.json::<serde_json::Value>().await.unwrap()["features"].as_array().unwrap().len()
            } else {
                0
            };
            (status, etag, n)
        }
    };
    let created = r#"quake_events_written_total{outcome="created"}"#;
    wait_metric(port, created, 1, Duration::from_secs(30)).await;
    let (mut during, mut partial, mut first_etag) = (0, 0, None);
    while metric(port, "quake_events_written_total").await < 3171 {
        // Every distinct event stored before the question is in the answer, once the web server
        // followed the write (the consumer wakes it after each batch; 10 s allowed under load).
        let stored = metric(port, created).await as usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let (etag, n) = loop {
            let (status, etag, n) = ask(None).await;
            assert_eq!(status, 200);
            if n >= stored {
                break (etag, n);
            }
            assert!(tokio::time::Instant::now() < deadline, "during the replay: {n} answered, {stored} stored before");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        during += 1;
        partial += usize::from(n < expected.len());
        first_etag.get_or_insert(etag);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("asked {during} times during the replay, {partial} of them with part of it stored");
    assert!(partial >= 3, "the replay was asked about while in flight: {partial} partial answers");
    let (status, etag, n) = ask(None).await;
    assert_eq!((status, n), (200, expected.len()), "after the replay: every distinct event");
    assert_ne!(Some(&etag), first_etag.as_ref(), "a new answer, a new ETag");
    assert_eq!(ask(first_etag).await.0, 200, "the first answer's ETag no longer matches");
    assert_eq!(ask(Some(etag)).await.0, 304, "the last one's does");
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap().status(), 200);
    let st = tokio::task::spawn_blocking(move || p.terminate(Duration::from_secs(20))).await.unwrap();
    assert!(st.success(), "clean exit after SIGTERM: {st:?}");
    let store = SqliteStore::open(&db).unwrap();
    wait_for_store(&store, &expected, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_processes_with_real_broker_and_dynamodb() {
    let Some(brokers) = real_broker() else { return };
    let moto = Moto::start().await;
    let topic = unique("quakes");
    let expected = expected_final(&fixture_lines(REPLAY));
    let (pport, cport) = (free_port(), free_port());
    let env = |c: &mut Command| {
        c.env("KAFKA_BROKERS", &brokers)
            .env("QUAKE_TOPIC", &topic)
            .env("QUAKE_DEAD_LETTER_TOPIC", format!("{topic}.dlq"))
            // A group of its own: other tests' consumers share the broker.
            .env("QUAKE_GROUP", &topic)
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
    };
    let mut cc = quake();
    cc.args(["consumer", "--listen", &format!("127.0.0.1:{cport}"), "--create-table"]).env("DYNAMODB_TABLE", "quakes");
    env(&mut cc);
    let consumer = Proc::spawn(&mut cc);
    let mut pc = quake();
    pc.args(["producer", "--listen", &format!("127.0.0.1:{pport}")]).env("QUAKE_REPLAY", fixture(REPLAY));
    env(&mut pc);
    let producer = Proc::spawn(&mut pc);
    wait_metric(pport, "quake_events_produced_total", 3171, Duration::from_secs(60)).await;
    wait_metric(cport, "quake_events_written_total", 3171, Duration::from_secs(180)).await;
    let st = tokio::task::spawn_blocking(move || producer.terminate(Duration::from_secs(20))).await.unwrap();
    assert!(st.success(), "producer exit: {st:?}");
    let st = tokio::task::spawn_blocking(move || consumer.terminate(Duration::from_secs(30))).await.unwrap();
    assert!(st.success(), "consumer exit: {st:?}");
    let store = DynamoStore::new(moto.dynamodb(), "quakes");
    wait_for_store(&store, &expected, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn producer_without_brokers_says_what_to_do() {
    let out = quake().args(["producer", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kafka-brokers") && err.contains("quake run"), "{err}");
}

/// The production web server: `quake web` following DynamoDB (on moto) written by someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_process_follows_dynamodb() {
    use quake::model::{parse_frame, Envelope, Frame};
    use quake::store::Store;
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), "quakes");
    store.ensure_table().await.unwrap();
    let lines = shifted_to_now(&fixture_lines(REPLAY)[..200]);
    let envs: Vec<Envelope> = stamped(&lines);
    for r in store.upsert_batch(&envs).await {
        r.unwrap();
    }
    let port = free_port();
    let p = Proc::spawn(
        quake()
            .args(["web", "--listen", &format!("127.0.0.1:{port}"), "--feed-poll-ms", "200"])
            .env("DYNAMODB_TABLE", "quakes")
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("QUAKE_ASSETS", assets_dir()),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/readyz")).await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(tokio::time::Instant::now() < deadline, "quake web never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = expected_final(&lines);
    let now = chrono::Utc::now().timestamp_micros();
    let in_month = expected.values().filter(|e| e.time_us >= now - 30 * 86_400_000_000 + 60_000_000).count();
    let body: serde_json::Value =
        reqwest::get(format!("{base}/api/quakes?window=30d")).await.unwrap().json().await.unwrap();
    assert_eq!(body["features"].as_array().unwrap().len(), in_month, "the window loaded from DynamoDB's change feed");

    // A write by another process shows up on the stream within the poll period.
    let mut stream = reqwest::get(format!("{base}/api/stream")).await.unwrap();
    let Ok(Frame::Event(action, event)) = parse_frame(&frame_now("29990909_0000001", 4.4, 1.0, 2.0, "FROM DYNAMODB"))
    else {
        panic!()
    };
    let written = tokio::time::Instant::now();
    store.upsert(&Envelope { action, arrival: i64::MAX / 2, source: "t".into(), event }).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("FROM DYNAMODB") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.expect("SSE within 10 s");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("stream open")));
    }
    println!("DynamoDB write -> SSE frame in {:?}", written.elapsed());
    assert!(written.elapsed() < Duration::from_secs(3));
    let st = tokio::task::spawn_blocking(move || p.terminate(Duration::from_secs(10))).await.unwrap();
    assert!(st.success(), "clean exit: {st:?}");
}

/// The venv's Python with ObsPy (`make venv`).
fn python() -> std::path::PathBuf {
    let p = std::env::var("QUAKE_PYTHON").map(Into::into).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/quake/venv/bin/python")
    });
    assert!(p.exists(), "{} is missing: run `make venv` (it installs ObsPy for this test)", p.display());
    p
}

/// ObsPy's FDSN client against the node with the replay stored: asked while the replay is in
/// flight (each answer holds at least what was stored before it), then every check of
/// `fdsnws_obspy.py` against `/api/quakes` and against the events themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obspy_reads_the_fdsn_event_service() {
    let replay = fixture(REPLAY);
    let expected = expected_final(&fixture_lines(REPLAY));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _p = Proc::spawn(
        quake()
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .env("QUAKE_DB", dir.path().join("q.sqlite"))
            .env("QUAKE_REPLAY", &replay)
            .env("QUAKE_REPLAY_SPEED", "80000"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let text = format!("{base}/fdsnws/event/1/query?starttime=2024-03-01&endtime=2024-05-01&format=text");
    let created = r#"quake_events_written_total{outcome="created"}"#;
    wait_metric(port, created, 1, Duration::from_secs(30)).await;
    let mut during = 0;
    {
        let _busy = Busy::start();
        while metric(port, "quake_events_written_total").await < 3171 {
            let stored = metric(port, created).await as usize;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let res = reqwest::get(&text).await.unwrap();
                let status = res.status().as_u16();
                let n = if status == 200 { res.text().await.unwrap().lines().count() - 1 } else { 0 };
                assert!(status == 200 || status == 204, "status {status} during the replay");
                if n >= stored {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "during the replay: {n} answered, {stored} stored before"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            during += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!("asked the FDSN service {during} times during the replay");
    assert!(during >= 3, "asked while the replay was in flight: {during} times");
    let held: serde_json::Map<String, serde_json::Value> = expected
        .values()
        .map(|e| {
            let v = serde_json::json!({"time": e.time_us, "lastupdate": e.lastupdate_us, "lat": e.lat, "lon": e.lon,
                                       "depth": e.depth_km, "mag": e.mag});
            (e.unid.clone(), v)
        })
        .collect();
    let held_file = dir.path().join("held.json");
    std::fs::write(&held_file, serde_json::to_vec(&held).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fdsnws_obspy.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python()).arg(script).arg(&base).arg(&held_file).output().expect("python runs")
    })
    .await
    .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "ObsPy checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
