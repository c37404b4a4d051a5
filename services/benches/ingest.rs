//! `make bench`: ingest throughput (replay -> producer -> Kafka mock cluster -> consumer ->
//! store), the same into DynamoDB on moto, and the RSS of separate producer and consumer
//! processes. Prints numbers and ratios against references measured in the same run.

#[path = "../tests/common/probe.rs"]
mod probe;

use probe::{free_port, metric, rss_kb};
use quake::consumer::{self, ConsumerConfig};
use quake::ingest::Ingest;
use quake::kafka::{LocalBroker, Publisher, Topics};
use quake::metrics::Metrics;
use quake::store::dynamo::DynamoStore;
use quake::store::sqlite::SqliteStore;
use quake::store::Store;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn shared() -> PathBuf {
    std::env::var("QUAKE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn replay_lines() -> Vec<String> {
    let p = shared().join("fixtures/emsc/replay_2024-04-11_to_18.jsonl");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (the benchmark needs ../shared/fixtures)", p.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The replay repeated until `n` lines, each repetition with its own unids so every line is a
/// real write, not a skipped repeat.
fn repeated(lines: &[String], n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut k = 0;
    while out.len() < n {
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let unid = v.pointer("/data/properties/unid").unwrap().as_str().unwrap();
            out.push(l.replace(unid, &format!("{unid}r{k}")));
            if out.len() == n {
                break;
            }
        }
        k += 1;
    }
    out
}

fn written(m: &Metrics) -> u64 {
    ["created", "updated", "unchanged", "older"].iter().map(|o| m.written_count(o)).sum()
}

async fn pipeline_rate(lines: &[String], store: Arc<dyn Store>, label: &str) -> f64 {
    let broker = LocalBroker::start(1, &[("quakes", 3), ("quakes.dlq", 1)]).unwrap();
    let topics =
        Topics { brokers: broker.bootstrap_servers(), events: "quakes".into(), dead_letter: "quakes.dlq".into() };
    let metrics = Metrics::new();
    let publisher = Publisher::new(topics.clone(), metrics.clone()).unwrap();
    let ingest = Ingest::new(publisher.clone(), metrics.clone());
    let token = CancellationToken::new();
    let cfg = ConsumerConfig::new(&topics.brokers, "quakes", "bench");
    let task = tokio::spawn(consumer::run(
        cfg,
        store,
        publisher.clone(),
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
        token.clone(),
    ));
    // Let the consumer join before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    for l in lines {
        ingest.frame("replay", l).await.unwrap();
    }
    let produced = start.elapsed().as_secs_f64();
    let n = lines.len() as u64;
    while written(&metrics) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    token.cancel();
    let _ = task.await;
    let rate = n as f64 / secs;
    println!("{label}: {n} events in {secs:.2} s = {rate:.0} events/s (all parsed and enqueued after {produced:.2} s)");
    rate
}

/// Reference: the same payloads through bare rdkafka on the same mock cluster, no parsing, no store.
async fn raw_kafka_rate(lines: &[String]) -> f64 {
    let broker = LocalBroker::start(1, &[("raw", 3)]).unwrap();
    let bs = broker.bootstrap_servers();
    let producer: FutureProducer = quake::kafka::producer_config(&bs).create().unwrap();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("group.id", "raw")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["raw"]).unwrap();
    let start = Instant::now();
    let mut futs = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let key = i.to_string();
        futs.push(
            producer.send_result(FutureRecord::to("raw").key(&key).payload(l.as_str())).map_err(|(e, _)| e).unwrap(),
        );
    }
    for f in futs {
        f.await.unwrap().unwrap();
    }
    for _ in 0..lines.len() {
        consumer.recv().await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = lines.len() as f64 / secs;
    println!("reference, bare rdkafka produce+consume of the same bytes: {rate:.0} msgs/s");
    rate
}

/// Starts the release binary as separate producer and consumer processes against a mock
/// cluster hosted here, replays the file, and reads their RSS during and after the replay.
async fn process_rss(lines: &[String]) {
    let exe =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join("release/quake");
    if !exe.exists() {
        println!("RSS: {} not built; run `cargo build --release -p quake` first", exe.display());
        return;
    }
    let broker = LocalBroker::start(1, &[("quakes", 3), ("quakes.dlq", 1)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replay.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (pport, cport) = (free_port(), free_port());
    let common = |port: u16| {
        vec![
            "--kafka-brokers".to_owned(),
            broker.bootstrap_servers(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ]
    };
    let mut producer = std::process::Command::new(&exe)
        .arg("producer")
        .args(common(pport))
        .args(["--replay", file.to_str().unwrap(), "--speed", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut consumer = std::process::Command::new(&exe)
        .arg("consumer")
        .args(common(cport))
        .args(["--db", dir.path().join("q.sqlite").to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut pmax, mut cmax) = (0, 0);
    let start = Instant::now();
    let mut done = None;
    // Sample while the replay flows, then 3 s more of idle: the steady state.
    while done.is_none_or(|d: Instant| d.elapsed() < Duration::from_secs(3))
        && start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pmax = pmax.max(rss_kb(producer.id()).unwrap_or(0));
        cmax = cmax.max(rss_kb(consumer.id()).unwrap_or(0));
        if done.is_none() && metric(cport, "quake_events_written_total").await >= lines.len() as u64 {
            println!("separate processes stored {} events in {:.2} s", lines.len(), start.elapsed().as_secs_f64());
            done = Some(Instant::now());
        }
    }
    let (p, c) = (rss_kb(producer.id()).unwrap_or(0), rss_kb(consumer.id()).unwrap_or(0));
    println!(
        "RSS producer: {:.1} MB at steady state (peak {:.1} MB while replaying), target <= 30 MB",
        p as f64 / 1024.0,
        pmax as f64 / 1024.0
    );
    println!(
        "RSS consumer: {:.1} MB at steady state (peak {:.1} MB while storing), target <= 30 MB",
        c as f64 / 1024.0,
        cmax as f64 / 1024.0
    );
    let _ = producer.kill();
    let _ = consumer.kill();
    let _ = producer.wait();
    let _ = consumer.wait();
}

async fn moto_dynamo() -> Option<(std::process::Child, aws_sdk_dynamodb::Client)> {
    let bin = std::env::var("QUAKE_MOTO_SERVER").ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-central-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("t", "t", None, None, "t"))
        .build();
    Some((child, aws_sdk_dynamodb::Client::from_conf(conf)))
}

#[tokio::main]
async fn main() {
    let lines = replay_lines();
    let n: usize = std::env::var("BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let many = repeated(&lines, n);
    println!("== ingest: replay -> producer -> Kafka (mock cluster) -> consumer -> store");
    let reference = raw_kafka_rate(&many).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("b.sqlite")).unwrap());
    let rate = pipeline_rate(&many, sqlite, "pipeline into SQLite").await;
    println!(
        "  ratio to the 20000 events/s target: {:.2}x; to bare rdkafka: {:.2}x",
        rate / 20_000.0,
        rate / reference
    );

    println!("== the same into DynamoDB on moto server ({} events)", lines.len());
    match moto_dynamo().await {
        Some((mut child, client)) => {
            let store = DynamoStore::new(client.clone(), "bench");
            store.ensure_table().await.unwrap();
            let rate =
                pipeline_rate(&repeated(&lines, lines.len()), Arc::new(store), "pipeline into DynamoDB/moto").await;
            // Reference: unconditional PutItems of the same count, 16 at a time, on the same moto.
            let start = Instant::now();
            let sem = Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = Vec::new();
            for i in 0..lines.len() {
                let c = client.clone();
                let permit = sem.clone().acquire_owned().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let _p = permit;
                    c.put_item()
                        .table_name("bench")
                        .item("unid", aws_sdk_dynamodb::types::AttributeValue::S(format!("raw{i}")))
                        .send()
                        .await
                        .unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let raw = lines.len() as f64 / start.elapsed().as_secs_f64();
            println!("reference, bare PutItem on the same moto: {raw:.0} items/s; pipeline/reference {:.2}x (moto is the limit)", rate / raw);
            let _ = child.kill();
        }
        None => println!("QUAKE_MOTO_SERVER not set: skipped (run through `make bench`)"),
    }
    println!("== RSS of separate processes");
    process_rss(&lines).await;
}
