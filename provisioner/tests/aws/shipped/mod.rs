//! The services' image as the full production stack pushed it, run: pulled from the registry by
//! the digest the stack deployed, unpacked by umoci, and its entry point run in a chroot of that
//! root filesystem as the image's user (its binary, its libraries, its `/assets`, nothing from
//! the work tree): `quake web` with the environment of the ECS task definition the stack
//! registered, against the stack's table on moto; the producer and consumer against the real
//! broker (noida-db); Chromium loads the map through it.

#[path = "../../../../services/tests/common/cdp.rs"]
mod cdp;

use super::common::{self, free_port, LocalRegistry, Moto, ECR_PASSWORD};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process in the image's root filesystem, killed when dropped.
struct InImage(Child);

impl Drop for InImage {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `args` run in `rootfs` as the image's user, its output to `<rootfs>/../<name>.log`.
fn chroot(rootfs: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Command {
    // By its path: the child's PATH below is the image's, which has no chroot.
    let mut c = Command::new("/usr/sbin/chroot");
    c.arg(format!("--userspec={}:{}", provisioner::image::UID, provisioner::image::UID)).arg(rootfs).args(args);
    // The image's environment only (PATH and the CA bundle, as its config sets them), and what
    // the deployment sets.
    c.env_clear().env("PATH", "/usr/local/bin").env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt");
    for (k, v) in env {
        c.env(k, v);
    }
    let log = std::fs::File::create(rootfs.with_file_name(format!("{name}.log"))).unwrap();
    c.stdout(Stdio::null()).stderr(log);
    c
}

/// The last lines each process in the image wrote, for a failure's message.
fn logs(rootfs: &Path) -> String {
    let mut out = String::new();
    for name in ["web", "consumer", "producer", "producer-new"] {
        let text = std::fs::read_to_string(rootfs.with_file_name(format!("{name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        out.push_str(&format!("\n--- {name}:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
    }
    out
}

/// Pulls `repo@digest` from the test registry and unpacks it; returns the root filesystem.
fn unpack(work: &Path, repo: &str, digest: &str) -> PathBuf {
    let reg = common::registry();
    let reference = format!("docker://{}/{repo}@{digest}", reg.host);
    let layout = work.join("oci");
    LocalRegistry::skopeo(&[
        "copy",
        "--src-creds",
        &format!("AWS:{ECR_PASSWORD}"),
        "--src-tls-verify=false",
        &reference,
        &format!("oci:{}:shipped", layout.display()),
    ]);
    let rootfs = work.join("rootfs");
    let out = Command::new("umoci")
        .args(["raw", "unpack", "--image", &format!("{}:shipped", layout.display())])
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    rootfs
}

/// The environment and command of the web service's container, as the stack registered them.
async fn task_definition(moto: &Moto, cluster: &str, service: &str) -> (Vec<(String, String)>, Vec<String>) {
    let ecs = moto.ecs();
    let d = ecs.describe_services().cluster(cluster).services(service).send().await.unwrap();
    let td = d.services()[0].task_definition().unwrap().to_owned();
    let t = ecs.describe_task_definition().task_definition(td).send().await.unwrap();
    let c = &t.task_definition().unwrap().container_definitions()[0];
    let env = c
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap_or_default().to_owned(), kv.value().unwrap_or_default().to_owned()))
        .collect();
    (env, c.command().to_vec())
}

/// A file of the shared fixtures (`QUAKE_SHARED`, else `../shared` beside the checkout).
fn shared(rel: &str) -> PathBuf {
    let dir = std::env::var("QUAKE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let p = dir.join(rel);
    assert!(p.is_file(), "{} is missing: the shared fixtures sit beside the checkout", p.display());
    p
}

/// A websocket frame of EMSC's format for an event now.
fn frame_now(unid: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::json!({"action": "create", "data": {"type": "Feature", "id": unid,
        "geometry": {"type": "Point", "coordinates": [23.7, 38.0, -10.0]},
        "properties": {"unid": unid, "time": now, "lastupdate": now, "lat": 38.0, "lon": 23.7, "depth": 10.0,
            "mag": 5.1, "magtype": "mw", "flynn_region": "SHIPPED IMAGE TEST", "auth": "EMSC", "evtype": "ke",
            "source_id": "1", "source_catalog": "EMSC-RTS"}}})
    .to_string()
}

/// Runs the pushed image of the full production stack named `stack` and loads its map.
pub async fn the_shipped_image_serves_the_whole_map(moto: &Moto, stack: &str, repo: &str, digest: &str, table: &str) {
    let work = tempfile::tempdir().unwrap();
    let rootfs = unpack(work.path(), repo, digest);
    // The page whole, without what only development uses.
    for f in [
        "index.html",
        "app.js",
        "list.js",
        "lapse.js",
        "alerts.js",
        "land.js",
        "style.css",
        "vendor/leaflet/leaflet.js",
    ] {
        assert!(rootfs.join("assets/web").join(f).is_file(), "/assets/web/{f} is in the image");
    }
    for absent in ["node_modules", "package.json", "package-lock.json"] {
        assert!(!rootfs.join("assets/web").join(absent).exists(), "/assets/web/{absent} is not in the image");
    }

    let aws = |mut env: Vec<(String, String)>| {
        env.extend(
            [
                ("AWS_ENDPOINT_URL", moto.url.as_str()),
                ("AWS_REGION", common::REGION),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env
    };
    let (mut env, command) = task_definition(moto, &format!("{stack}-main"), "web").await;
    assert_eq!(command, ["web"], "the service runs `quake web`");
    let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get(&env, "DYNAMODB_TABLE").as_deref(), Some(table));
    assert_eq!(get(&env, "QUAKE_ASSETS").as_deref(), Some("/assets/web"));
    // Its port here: others may be in use by tests beside this one.
    let port = free_port();
    env.retain(|(k, _)| k != "QUAKE_LISTEN" && k != "QUAKE_METRICS_LISTEN");
    env.push(("QUAKE_LISTEN".into(), format!("127.0.0.1:{port}")));
    let mut args = vec!["/usr/local/bin/quake"];
    args.extend(command.iter().map(String::as_str));
    let _web = InImage(chroot(&rootfs, "web", &args, &aws(env)).spawn().expect("chroot runs the image's quake"));

    // Events through the image's producer and consumer and the real broker; without one (a test
    // run outside `make test`), written to the table directly.
    let lines: Vec<String> = std::fs::read_to_string(shared("fixtures/emsc/replay_2024-04-11_to_18.jsonl"))
        .unwrap()
        .lines()
        .take(300)
        .map(str::to_owned)
        .collect();
    let unids: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["data"]["properties"]["unid"].as_str().map(str::to_owned))
        .collect();
    std::fs::write(rootfs.join("var/lib/app/replay.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(rootfs.join("var/lib/app/new.jsonl"), frame_now("29991231_0000009") + "\n").unwrap();
    let kafka = std::env::var("QUAKE_TEST_KAFKA").ok();
    assert!(
        kafka.is_some() || std::env::var("QUAKE_SKIP_BROKER_TIER").as_deref() == Ok("1"),
        "QUAKE_TEST_KAFKA is not set: run through `make test`, or set QUAKE_SKIP_BROKER_TIER=1"
    );
    let topic = format!("shipped-{}", std::process::id());
    let kafka_env = |brokers: &str| {
        vec![
            ("KAFKA_BROKERS".to_owned(), brokers.to_owned()),
            ("QUAKE_TOPIC".to_owned(), topic.clone()),
            ("QUAKE_DEAD_LETTER_TOPIC".to_owned(), format!("{topic}.dlq")),
            ("DYNAMODB_TABLE".to_owned(), table.to_owned()),
            // A group of its own: other tests' consumers share this broker.
            ("QUAKE_GROUP".to_owned(), topic.clone()),
        ]
    };
    let produce = |name: &str, file: &str, brokers: &str| {
        let listen = format!("127.0.0.1:{}", free_port());
        let args = [
            "/usr/local/bin/quake",
            "producer",
            "--replay",
            file,
            "--replay-shift",
            "--backfill-hours",
            "0",
            "--listen",
            &listen,
        ];
        InImage(chroot(&rootfs, name, &args, &kafka_env(brokers)).spawn().unwrap())
    };
    let mut running = Vec::new();
    match &kafka {
        Some(brokers) => {
            let listen = format!("127.0.0.1:{}", free_port());
            let args = ["/usr/local/bin/quake", "consumer", "--listen", listen.as_str()];
            running.push(InImage(chroot(&rootfs, "consumer", &args, &aws(kafka_env(brokers))).spawn().unwrap()));
            running.push(produce("producer", "/var/lib/app/replay.jsonl", brokers));
        }
        None => {
            eprintln!(
                "QUAKE_SKIP_BROKER_TIER=1: events written to the table directly, not through the image's services"
            );
            let store = quake::store::dynamo::DynamoStore::new(moto.dynamodb(), table);
            let lines = quake_lines_shifted(&lines);
            for r in quake::store::Store::upsert_batch(&store, &lines).await {
                r.unwrap();
            }
        }
    }

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = match http.get(format!("{base}/api/quakes?window=30d")).send().await {
            Ok(r) if r.status().is_success() => {
                r.json::<serde_json::Value>().await.map(|v| v["features"].as_array().map_or(0, Vec::len)).unwrap_or(0)
            }
            _ => 0,
        };
        if n == unids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the image's services stored {n} of {} events{}",
            unids.len(),
            logs(&rootfs)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let b = cdp::Browser::start(1280, 800).await;
    b.goto(&format!("{base}/?window=30d")).await;
    b.wait_for("document.body.dataset.loaded === 'true'", Duration::from_secs(30), "the page to load").await;
    let n = unids.len();
    b.wait_for(&format!("document.querySelectorAll('path.quake').length === {n}"), Duration::from_secs(20), "symbols")
        .await;
    b.wait_for("document.getElementById('conn').dataset.state === 'live'", Duration::from_secs(20), "live").await;
    match &kafka {
        Some(brokers) => running.push(produce("producer-new", "/var/lib/app/new.jsonl", brokers)),
        None => {
            let store = quake::store::dynamo::DynamoStore::new(moto.dynamodb(), table);
            let env = quake_lines_shifted(&[frame_now("29991231_0000009")]);
            quake::store::Store::upsert(&store, &env[0]).await.unwrap();
        }
    }
    b.wait_for(
        "!!document.querySelector('path.quake[data-unid=\"29991231_0000009\"]')",
        Duration::from_secs(30),
        "the new event pushed live",
    )
    .await;
    let responses = b.responses.lock().unwrap().clone();
    assert!(responses.iter().any(|(u, _)| u.ends_with("/list.js")), "{responses:?}");
    let failed: Vec<&(String, u16)> = responses.iter().filter(|(u, s)| u.starts_with("http") && *s != 200).collect();
    assert!(failed.is_empty(), "every request of the page 200: {failed:?}");
    assert!(b.errors.lock().unwrap().is_empty(), "{:?}", b.errors.lock().unwrap());
    assert!(b.console.lock().unwrap().is_empty(), "{:?}", b.console.lock().unwrap());
    drop(running);
}

/// Envelopes of websocket frames, shifted so the last revision is now (as `--replay-shift`).
fn quake_lines_shifted(lines: &[String]) -> Vec<quake::model::Envelope> {
    let mut envs: Vec<quake::model::Envelope> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match quake::model::parse_frame(l) {
            Ok(quake::model::Frame::Event(action, event)) => {
                Some(quake::model::Envelope { action, arrival: i as i64 + 1, source: "t".into(), event })
            }
            _ => None,
        })
        .collect();
    let last = envs.iter().map(|e| e.event.lastupdate_us).max().unwrap_or(0);
    let shift = chrono::Utc::now().timestamp_micros() - last;
    for e in &mut envs {
        e.event.time_us += shift;
        e.event.lastupdate_us += shift;
    }
    envs
}
