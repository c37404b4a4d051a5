//! One abusive client against the production web server (`quake web` on DynamoDB on moto,
//! behind a proxy that counts the store calls): 200 distinct cache-defeating 30-day queries,
//! store-backed year queries, one 50-year span, 400 live streams that never read and ask for the
//! oldest replay, all at once, while a well-behaved client loads the page, asks the API and is
//! pushed a new event. The server's peak RSS stays under 256 MiB, the good client's answers and
//! push arrive (its p99 printed beside the same client's without the load), the store calls a
//! bad request causes are bounded, `/readyz` makes none, `/metrics` is not on the map's address.

use super::*;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use quake::model::{parse_frame, Envelope, Frame};
use quake::store::dynamo::DynamoStore;
use quake::store::Store;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY_US: i64 = 86_400_000_000;
const GOOD: &str = "203.0.113.5:443";

/// DynamoDB calls seen on their way to moto: by operation, and Queries of the time index (what
/// an API request reads; the change feed reads another index).
#[derive(Default)]
struct Calls {
    by_op: HashMap<String, usize>,
    time_queries: usize,
}

type ProxyState = (String, reqwest::Client, Arc<Mutex<Calls>>);

async fn forward(State((upstream, client, calls)): State<ProxyState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let op = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").rsplit('.').next();
    {
        let mut c = calls.lock().unwrap();
        *c.by_op.entry(op.unwrap_or("").to_owned()).or_default() += 1;
        if op == Some("Query") && String::from_utf8_lossy(&body).contains("\"by_time\"") {
            c.time_queries += 1;
        }
    }
    let mut headers = parts.headers.clone();
    for h in ["host", "content-length", "connection", "transfer-encoding"] {
        headers.remove(h);
    }
    let url = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let res = client.request(parts.method, url).headers(headers).body(body).send().await;
    let Ok(res) = res else { return Response::builder().status(502).body(Body::empty()).unwrap() };
    let status = res.status();
    let mut h: HeaderMap = res.headers().clone();
    for k in ["content-length", "connection", "transfer-encoding"] {
        h.remove(k);
    }
    let bytes = res.bytes().await.unwrap_or_default();
    let mut out = Response::builder().status(status).body(Body::from(bytes)).unwrap();
    *out.headers_mut() = h;
    out
}

async fn counting_proxy(upstream: &str) -> (String, Arc<Mutex<Calls>>) {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let state: ProxyState = (upstream.to_owned(), reqwest::Client::new(), calls.clone());
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

struct Web(Child);

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Status and `Retry-After` of an answer (the body read, as a client would).
async fn answer(r: reqwest::Result<reqwest::Response>) -> (u16, u32) {
    let Ok(r) = r else { return (0, 0) };
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let _ = r.bytes().await;
    (status, retry)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// What a well-behaved viewer does: the page and its modules, then the list it shows, repeatedly.
/// Every answer must be 200; returns each request's latency.
async fn good_client(base: &str) -> Vec<Duration> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut took = Vec::new();
    let paths = ["/", "/app.js", "/list.js", "/lapse.js", "/alerts.js", "/land.js", "/style.css"];
    for round in 0..5 {
        for p in paths.iter().copied().chain(["/api/quakes?window=24h", "/api/quakes?window=7d&minmag=2"]) {
            let t = Instant::now();
            let r = http.get(format!("{base}{p}")).header("cloudfront-viewer-address", GOOD).send().await.unwrap();
            let status = r.status();
            let _ = r.bytes().await.unwrap();
            took.push(t.elapsed());
            assert_eq!(status, StatusCode::OK, "round {round}: {p}");
        }
    }
    took
}

/// What the mix measured.
#[derive(Debug)]
pub struct Report {
    /// The good client's p99 alone, and under the attack.
    pub quiet_p99: Duration,
    pub loaded_p99: Duration,
    /// From the write of a new event to its frame on the good client's stream, under attack.
    pub push: Duration,
    /// The server's peak resident memory before the attack, and after it, MiB.
    pub quiet_peak_mib: f64,
    pub peak_mib: f64,
    /// Store Queries of one year's request, and of the whole attack.
    pub per_year: usize,
    pub attack_queries: usize,
    /// Year requests answered, turned away at once, cut off at the store's time.
    pub year: (usize, usize, usize),
}

/// Runs the mix against `exe web` (a `quake` binary); the attack's 30-day queries ask for
/// `encoding`. Panics when a bound does not hold.
pub async fn run(exe: &std::path::Path, encoding: &'static str) -> Report {
    let moto = Moto::start().await;
    let store = DynamoStore::new(moto.dynamodb(), "quakes");
    store.ensure_table().await.unwrap();
    // A month of events (the window), and history from 40 days to a year back (the store).
    // moto answers a Query by scanning the whole table: a smaller month keeps a year's 335
    // Queries within the store timeout on a loaded machine.
    let lines = shifted_to_now(&fixture_lines(REPLAY)[..1200]);
    let mut envs = stamped(&lines);
    let history: Vec<Envelope> = envs
        .iter()
        .take(400)
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            let back = (40 + (i as i64 % 320)) * DAY_US;
            e.event.unid = format!("OLD_{i:05}");
            e.event.time_us -= back;
            e.event.lastupdate_us -= back;
            e
        })
        .collect();
    envs.extend(history);
    for chunk in envs.chunks(500) {
        for r in store.upsert_batch(chunk).await {
            r.unwrap();
        }
    }
    let (proxy, calls) = counting_proxy(&moto.url).await;
    let (port, mport) = (free_port(), free_port());
    let web = Web(Command::new(exe)
        .args(["web", "--listen", &format!("127.0.0.1:{port}"), "--feed-poll-ms", "200", "--stats-secs", "0"])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .args(["--client-address-header", "cloudfront-viewer-address", "--store-timeout-secs", "30"])
        .env_remove("KAFKA_BROKERS")
        .env("DYNAMODB_TABLE", "quakes")
        .env("AWS_ENDPOINT_URL", &proxy)
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("QUAKE_ASSETS", assets_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("quake web starts"));
    let pid = web.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "quake web never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Probes cost no store call; metrics are not on the map's address.
    let describes = || calls.lock().unwrap().by_op.get("DescribeTable").copied().unwrap_or(0);
    let before = describes();
    for _ in 0..50 {
        assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    }
    assert_eq!(describes(), before, "/readyz calls no DescribeTable");
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 404, "no /metrics beside the map");
    let m = http.get(format!("http://127.0.0.1:{mport}/metrics")).send().await.unwrap();
    assert!(m.status().is_success() && m.text().await.unwrap().contains("quake_http_requests"));

    // Security headers on the page and the API.
    for p in ["/", "/api/quakes?window=1h"] {
        let r = http.get(format!("{base}{p}")).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{p}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{p}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{p}: {csp}");
    }

    // What one bad request can cost the store: a 50-year span none (refused before any read),
    // a year at most one Query per day of it.
    let time_queries = || calls.lock().unwrap().time_queries;
    let t0 = time_queries();
    let r = http.get(format!("{base}/api/quakes?starttime=1976-01-01&endtime=2026-01-01")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("366 days"));
    let now = chrono::Utc::now();
    let year = |i: usize| {
        format!(
            "{base}/api/quakes?starttime={}&endtime={}&minmagnitude=0.{i:04}&orderby=magnitude",
            (now - chrono::Duration::days(365)).format("%Y-%m-%dT%H:%M:%S"),
            (now - chrono::Duration::days(31)).format("%Y-%m-%dT%H:%M:%S"),
        )
    };
    let started = Instant::now();
    let r = http.get(year(0)).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "after {took:?}: {}", r.text().await.unwrap());
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(!body["features"].as_array().unwrap().is_empty(), "the history is answered from the store");
    let per_year = time_queries() - t0;
    assert!((300..=367).contains(&per_year), "one Query per day of the span: {per_year}");

    // The well-behaved client alone.
    let quiet = good_client(&base).await;
    let quiet_peak_mib = peak_rss_mib(pid);

    // The well-behaved client's live stream, opened before the attack.
    let mut stream =
        http.get(format!("{base}/api/stream")).header("cloudfront-viewer-address", GOOD).send().await.unwrap();
    assert_eq!(stream.status(), 200);

    // The attack, all at once.
    let t_attack = time_queries();
    let mut attack = tokio::task::JoinSet::new();
    for i in 0..200 {
        let url = format!("{base}/api/quakes?window=30d&minmagnitude=0.{i:04}1");
        attack.spawn(async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("cloudfront-viewer-address", format!("198.51.100.66:{}", 1000 + i))
                .header("accept-encoding", encoding)
                .send()
                .await;
            ("30d", answer(r).await)
        });
    }
    for i in 1..=40 {
        let url = year(i);
        attack.spawn(async move {
            let r = reqwest::Client::new().get(url).header("cloudfront-viewer-address", "198.51.100.66:1").send().await;
            ("year", answer(r).await)
        });
    }
    attack.spawn(async move {
        let r =
            reqwest::get(format!("http://127.0.0.1:{port}/api/quakes?starttime=1976-01-01&endtime=2026-01-01")).await;
        ("50y", answer(r).await)
    });
    // 400 streams from 400 addresses, asking for everything since the first change, never read.
    let mut silent = Vec::new();
    for i in 0..400u32 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head = format!(
            "GET /api/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\ncloudfront-viewer-address: 10.{}.{}.1:{i}\r\n\r\n",
            i / 250,
            i % 250
        );
        s.write_all(head.as_bytes()).await.unwrap();
        silent.push(s);
    }
    // And 20 more from one address: beyond 16 they are turned away.
    let mut turned_away = 0;
    let mut one_address = Vec::new();
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head =
            format!("GET /api/stream HTTP/1.1\r\nHost: x\r\ncloudfront-viewer-address: 198.51.100.66:{i}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut first = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut first)).await.unwrap().unwrap();
        if &first == b"HTTP/1.1 429" {
            turned_away += 1;
        }
        one_address.push(s);
    }
    assert_eq!(turned_away, 4, "16 streams per address");

    // Meanwhile the well-behaved client: the page, the API, and a pushed event.
    let loaded = good_client(&base).await;
    let Ok(Frame::Event(action, event)) =
        parse_frame(&frame_now("29991111_0000001", 4.4, 1.0, 2.0, "PUSHED UNDER LOAD"))
    else {
        panic!()
    };
    let written = Instant::now();
    store.upsert(&Envelope { action, arrival: i64::MAX / 2, source: "t".into(), event }).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("PUSHED UNDER LOAD") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk()).await.expect("the push arrives");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("stream open")));
    }
    let push = written.elapsed();

    let mut statuses: HashMap<(&str, (u16, u32)), usize> = HashMap::new();
    while let Some(r) = attack.join_next().await {
        *statuses.entry(r.unwrap()).or_default() += 1;
    }
    let attack_queries = time_queries() - t_attack;
    let peak = peak_rss_mib(pid);
    let n = |k: &str, status: u16, retry: u32| statuses.get(&(k, (status, retry))).copied().unwrap_or(0);
    assert_eq!(n("50y", 400, 0), 1);
    assert_eq!(n("30d", 200, 0), 200, "the window answers cache-defeating queries: {statuses:?}");
    // Store-backed: answered, turned away at once (no slot: Retry-After 2) or cut off at the
    // store's time (Retry-After 5); nothing else.
    let (year_ok, busy, slow) = (n("year", 200, 0), n("year", 503, 2), n("year", 503, 5));
    assert_eq!(year_ok + busy + slow, 40, "{statuses:?}");
    assert!(busy > 0, "more than the store-read slots at once are turned away: {statuses:?}");
    assert!(attack_queries <= (year_ok + slow) * 367, "store calls only for requests admitted: {attack_queries}");
    assert!(peak < 256.0, "peak RSS {peak:.0} MiB");
    drop((silent, one_address));
    Report {
        quiet_p99: p99(quiet),
        loaded_p99: p99(loaded),
        push,
        quiet_peak_mib,
        peak_mib: peak,
        per_year,
        attack_queries,
        year: (year_ok, busy, slow),
    }
}
