//! Images without Docker, against real peers: the `quake` binary imaged twice (one digest),
//! pushed to CNCF distribution (Debian's `docker-registry`) signed in with moto's ECR token, read
//! back with `skopeo`, unpacked with `umoci` and run in a chroot as the image's user until it
//! answers `/api/quakes`; a second push uploads nothing; a package built by Cargo from a stack.

mod common;

use common::{free_port, quake_binary, LocalRegistry, Moto, ECR_PASSWORD};
use provisioner::image::{self, Arch, Spec};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Two EMSC websocket frames (a create and its update) for `quake run --replay`.
const REPLAY: &str = r#"{"action": "create", "data": {"type": "Feature", "geometry": {"type": "Point", "coordinates": [28.5381, 40.115, -7.0]}, "id": "20250305_0000090", "properties": {"source_id": "1779128", "source_catalog": "EMSC-RTS", "lastupdate": "2025-03-05T10:06:56.102425Z", "time": "2025-03-05T09:45:07.0Z", "flynn_region": "WESTERN TURKEY", "lat": 40.115, "lon": 28.5381, "depth": 7.0, "evtype": "ke", "auth": "AFAD", "mag": 1.4, "magtype": "ml", "unid": "20250305_0000090"}}}
{"action": "update", "data": {"type": "Feature", "geometry": {"type": "Point", "coordinates": [28.54, 40.12, -8.0]}, "id": "20250305_0000090", "properties": {"source_id": "1779128", "source_catalog": "EMSC-RTS", "lastupdate": "2025-03-05T10:16:56.0Z", "time": "2025-03-05T09:45:07.0Z", "flynn_region": "WESTERN TURKEY", "lat": 40.12, "lon": 28.54, "depth": 8.0, "evtype": "ke", "auth": "AFAD", "mag": 1.6, "magtype": "ml", "unid": "20250305_0000090"}}}
"#;

fn quake_spec(epoch: u64) -> Spec {
    Spec {
        binary: quake_binary(),
        name: "quake".into(),
        arch: Arch::X86_64,
        epoch,
        files: vec![("/assets/web/index.html".into(), root("assets/web/index.html"))],
        exclude: vec![],
    }
}

fn creds() -> String {
    format!("AWS:{ECR_PASSWORD}")
}

/// The quake image: one digest per binary; pushed once (a second push, under another tag,
/// uploads no blob; a changed binary uploads only its own layer); what skopeo reads back is
/// what was built; unpacked by umoci, it runs as uid 10001 in a chroot with nothing but what
/// the image holds, and serves the events of a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quake_image_is_reproducible_pushed_once_and_runs_as_its_user() {
    let a = image::build(&quake_spec(0)).unwrap();
    let b = image::build(&quake_spec(0)).unwrap();
    assert_eq!(a.digest(), b.digest(), "one binary, one digest");
    assert_eq!(a.layers.len(), 3, "runtime, files, binary");

    let reg = common::registry();
    let client = reg.client();
    let first = client.push("t/quake", &a, "one").await.unwrap();
    assert_eq!(first.blobs_uploaded, 4, "config and three layers: {first:?}");
    assert_eq!(first.bytes_uploaded, a.blobs().map(|b| b.size()).sum::<u64>());
    let again = client.push("t/quake", &b, "two").await.unwrap();
    assert_eq!((again.blobs_uploaded, again.bytes_uploaded, again.blobs_present), (0, 0, 4), "{again:?}");
    let mut tags = client.tags("t/quake").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["one", "two"]);

    // A new binary: only its layer and the config go up.
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("quake");
    let mut bytes = std::fs::read(quake_binary()).unwrap();
    // A change inside the program (a message in its read-only data): bytes after the last
    // section would not count, the image keeps only what the ELF file's sections hold.
    let at = bytes.windows(27).position(|w| w == b"Live map and API listening.").expect("the message is in the binary");
    bytes[at] = b'l';
    std::fs::write(&changed, bytes).unwrap();
    let c = image::build(&Spec { binary: changed, ..quake_spec(0) }).unwrap();
    assert_ne!(c.digest(), a.digest());
    let third = client.push("t/quake", &c, "three").await.unwrap();
    assert_eq!((third.blobs_uploaded, third.blobs_present), (2, 2), "{third:?}");
    assert_eq!(third.bytes_uploaded, c.config.size() + c.layers[2].size());

    // Read back by another client of the same protocol.
    let reference = format!("docker://{}/t/quake@{}", reg.host, a.digest());
    let inspect: serde_json::Value = serde_json::from_str(&LocalRegistry::skopeo(&[
        "inspect",
        "--creds",
        &creds(),
        "--tls-verify=false",
        &reference,
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], a.digest());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);
    let config: serde_json::Value = serde_json::from_str(&LocalRegistry::skopeo(&[
        "inspect",
        "--config",
        "--creds",
        &creds(),
        "--tls-verify=false",
        &reference,
    ]))
    .unwrap();
    assert_eq!(config["config"]["User"], "10001:10001");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/quake");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");

    // Pulled back and unpacked: nothing but the image.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    LocalRegistry::skopeo(&[
        "copy",
        "--src-creds",
        &creds(),
        "--src-tls-verify=false",
        &reference,
        &format!("oci:{}:quake", layout.display()),
    ]);
    let rootfs = work.path().join("rootfs");
    let out = Command::new("umoci")
        .args(["raw", "unpack", "--image", &format!("{}:quake", layout.display())])
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    assert!(rootfs.join("usr/local/bin/quake").is_file());
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    for absent in ["bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg"] {
        assert!(!rootfs.join(absent).exists(), "{absent} is not in the image");
    }

    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg(format!("--userspec={}:{}", image::UID, image::UID)).arg(&rootfs).args(args);
        c
    };
    let v = chroot(&["/usr/local/bin/quake", "--version"]).output().unwrap();
    assert!(v.status.success(), "quake --version in the image: {}", String::from_utf8_lossy(&v.stderr));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("quake "), "{v:?}");

    std::fs::write(rootfs.join("var/lib/app/replay.jsonl"), REPLAY).unwrap();
    let port = free_port();
    let mut server = chroot(&[
        "/usr/local/bin/quake",
        "run",
        "--replay",
        "/var/lib/app/replay.jsonl",
        "--replay-shift",
        "--backfill-hours",
        "0",
        "--db",
        "/var/lib/app/quakes.sqlite",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/api/quakes")).send().await {
            let text = r.text().await.unwrap_or_default();
            if text.contains("20250305_0000090") {
                break text;
            }
        }
        if Instant::now() > deadline || server.try_wait().unwrap().is_some() {
            let _ = server.kill();
            let out = server.wait_with_output().unwrap();
            panic!("the image's quake never served the replay: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("\"mag\":1.6"), "the newer revision is served: {body}");
    let page = http.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
    assert!(page.status().is_success(), "the map page from the image's files: {}", page.status());
    let _ = server.kill();
    let _ = server.wait();
    // What the server wrote belongs to the image's user, not root.
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(rootfs.join("var/lib/app/quakes.sqlite")).unwrap());
    assert_eq!(owner, image::UID);
}

/// A stack's `image` built from a Cargo package: `plan` runs Cargo, images the binary and shows
/// the digest it will push; `apply` pushes it; the next plan is empty; another binary is an
/// in-place change of the digest; `destroy` deletes its manifests from the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_builds_its_package_pushes_by_digest_and_deletes_on_destroy() {
    let krate = tempfile::tempdir().unwrap();
    std::fs::create_dir(krate.path().join("src")).unwrap();
    std::fs::write(
        krate.path().join("Cargo.toml"),
        "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    let main = krate.path().join("src/main.rs");
    std::fs::write(&main, "fn main() { println!(\"hello\"); }\n").unwrap();
    // Its own target directory: the workspace's is not this crate's.
    let target = krate.path().join("target");

    let moto = Moto::start().await;
    let reg = common::registry();
    let stack = krate.path().join("stack.toml");
    std::fs::write(
        &stack,
        "[stack]\nname = \"img\"\nregion = \"eu-central-1\"\n\n[ecr_repository.apps]\n\n\
         [image.hello]\nrepository = \"ecr_repository.apps\"\npackage = \"hello\"\nworkspace = \"Cargo.toml\"\nprofile = \"dev\"\n",
    )
    .unwrap();
    let stack = stack.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = common::cli(&moto.url).env("CARGO_TARGET_DIR", &target).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let r = run(&["plan", stack]);
    assert_eq!(r.0, 2, "{r:?}");
    let digest =
        r.1.split("+ digest").nth(1).and_then(|s| s.split('"').nth(1)).unwrap_or_else(|| panic!("{}", r.1)).to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert!(target.join("debug/hello").is_file(), "cargo built the package");

    let r = run(&["apply", stack, "--yes"]);
    assert_eq!(r.0, 0, "{r:?}");
    let client = reg.client();
    let tags = client.tags("img/apps").await.unwrap();
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(tags[0].starts_with("hello-") && tags[0].ends_with(digest.trim_start_matches("sha256:")), "{tags:?}");
    assert!(client.manifest("img/apps", &digest).await.unwrap().is_some());
    let r = run(&["plan", stack]);
    assert_eq!(r.0, 0, "nothing to push again: {r:?}");
    let r = run(&["outputs", stack]);
    assert!(r.1.contains(&format!("image.hello.digest = {digest}")), "{}", r.1);
    assert!(r.1.contains(&format!("dkr.ecr.eu-central-1.amazonaws.com/img/apps@{digest}")), "{}", r.1);

    std::fs::write(&main, "fn main() { println!(\"hello again\"); }\n").unwrap();
    let r = run(&["plan", stack]);
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.1.contains(&format!("~ digest = \"{digest}\" -> \"sha256:")), "{}", r.1);
    assert!(r.1.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{}", r.1);
    let r = run(&["apply", stack, "--yes"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert_eq!(client.tags("img/apps").await.unwrap().len(), 2, "the older push stays for a rollback");
    assert_eq!(run(&["plan", stack]).0, 0);

    let r = run(&["destroy", stack, "--yes"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(client.manifest("img/apps", &digest).await.unwrap().is_none(), "its manifests are deleted");
}

/// An image for another CPU than the build host's says what it needs.
#[test]
fn another_architecture_is_explained() {
    let e = image::cargo_build(&root("Cargo.toml"), "quake", "quake", "dev", Arch::Arm64).unwrap_err().to_string();
    assert!(e.contains("rustup target add aarch64-unknown-linux-gnu"), "{e}");
}
