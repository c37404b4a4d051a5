//! `provisioner pin` against a real registry (CNCF distribution, Debian's `docker-registry`,
//! with a login) and through a front that plays Docker Hub's anonymous token service (a bearer
//! challenge, a token endpoint, then the registry): a stale pin is reported and the file left
//! alone, `--write` takes the tag's digest keeping the comments, a tag pushed again is caught,
//! a registry that wants a login without one is a clear error.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn pin(file: &std::path::Path, args: &[&str], login: bool) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    c.arg("pin").args(args).arg(file);
    if login {
        c.env("PROVISIONER_PIN_AUTH", format!("AWS:{}", common::ECR_PASSWORD));
    } else {
        c.env_remove("PROVISIONER_PIN_AUTH");
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// An image of `binary`, as the provisioner builds its own.
fn image_of(binary: &str) -> provisioner::image::Image {
    let spec = provisioner::image::Spec {
        binary: binary.into(),
        name: "app".into(),
        arch: provisioner::image::Arch::parse("x86_64").unwrap(),
        epoch: 0,
        files: vec![],
        exclude: vec![],
    };
    provisioner::image::build(&spec).unwrap()
}

/// Plays Docker Hub's front door: a request without the token gets a bearer challenge naming a
/// token endpoint here; the token endpoint hands out a token for the scope asked; a request
/// with it goes on to `registry` with the registry's own login. Counts the tokens handed out.
fn token_front(registry: &str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let tokens = Arc::new(AtomicUsize::new(0));
    let (registry, me, count) = (registry.to_owned(), host.clone(), tokens.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let Some(first) = head.first() else { continue };
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let header = |name: &str| {
                head.iter().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let reply = if path.starts_with("/token?") {
                let asked = path.contains("scope=repository%3Apins%2Fapp%3Apull") && path.contains("service=front");
                if asked {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"token":"tok-123","expires_in":300}"#;
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                }
            } else if header("authorization").as_deref() == Some("Bearer tok-123") {
                let (status, digest) = forward(&registry, &path, &header("accept").unwrap_or_default());
                format!("HTTP/1.1 {status}\r\ndocker-content-digest: {digest}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            } else {
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"http://{me}/token\",service=\"front\",scope=\"repository:pins/app:pull\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (host, tokens)
}

/// `HEAD path` on the registry with its login: (status line's code and reason, digest).
fn forward(registry: &str, path: &str, accept: &str) -> (String, String) {
    let mut s = TcpStream::connect(registry).unwrap();
    let login = common::base64_of(&format!("AWS:{}", common::ECR_PASSWORD));
    write!(s, "HEAD {path} HTTP/1.1\r\nhost: {registry}\r\naccept: {accept}\r\nauthorization: Basic {login}\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status =
        answer.lines().next().unwrap_or_default().split_once(' ').map_or("502 Bad Gateway", |(_, s)| s).to_owned();
    let digest = answer
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("docker-content-digest"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_checked_and_written_against_the_registry() {
    let registry = common::registry();
    let client = registry.client();
    let first = image_of("/usr/bin/true");
    client.push("pins/app", &first, "1.0").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pins.toml");
    let zeros = format!("sha256:{}", "0".repeat(64));
    let stale = format!(
        "# the app, version 1.0\napp_image = \"{}/pins/app:1.0@{zeros}\"\n\n# not an image\nother = \"x\"\n",
        registry.host
    );
    std::fs::write(&file, &stale).unwrap();

    let (code, out) = pin(&file, &[], true);
    assert_eq!(code, 1, "a stale pin fails the check: {out}");
    assert!(out.contains(&format!("app_image: the tag is now {}", first.digest())), "{out}");
    assert!(out.contains("pin --write"), "says what to do: {out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stale, "a check writes nothing");

    let (code, out) = pin(&file, &[], false);
    assert!(code == 1 && out.contains("asks for credentials"), "{out}");

    let (code, out) = pin(&file, &["--write"], true);
    assert_eq!(code, 0, "{out}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.starts_with(&stale.replace(&zeros, first.digest())),
        "only the digest changes, comments kept: {written}"
    );
    // ... and the verification is recorded: when, against which registry.
    let doc: toml_edit::DocumentMut = written.parse().unwrap();
    let verified = doc["app_image_verified"].as_str().unwrap();
    assert!(verified.ends_with(&format!(" {}", registry.host)) && verified.contains('T'), "{verified}");
    let vars: std::collections::BTreeMap<String, String> =
        doc.iter().filter_map(|(k, v)| Some((k.to_owned(), v.as_str()?.to_owned()))).collect();
    assert!(provisioner::image::pin::unverified(&vars).is_empty(), "{vars:?}");
    let mut before = vars.clone();
    before.remove("app_image_verified");
    assert_eq!(provisioner::image::pin::unverified(&before), ["app_image"]);
    let (code, out) = pin(&file, &[], true);
    assert!(code == 0 && out.contains("app_image: pinned digest is the tag's"), "{out}");

    // The tag pushed again with other content: the pin no longer holds.
    let second = image_of("/usr/bin/false");
    client.push("pins/app", &second, "1.0").await.unwrap();
    let (code, out) = pin(&file, &[], true);
    assert!(code == 1 && out.contains(second.digest()) && out.contains(first.digest()), "{out}");

    // Docker Hub's way: a bearer challenge answered with an anonymous token.
    let (front, tokens) = token_front(&registry.host);
    std::fs::write(&file, format!("app_image = \"{front}/pins/app:1.0\"\n")).unwrap();
    let (code, out) = pin(&file, &["--write"], false);
    assert_eq!(code, 0, "{out}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with(&format!("app_image = \"{front}/pins/app:1.0@{}\"\n", second.digest())), "{written}");
    assert!(written.contains("app_image_verified = "), "{written}");
    assert!(tokens.load(Ordering::SeqCst) >= 1, "the token endpoint was asked");

    // The repository's own pins file parses: every entry a tag and a digest.
    let ours = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/pins.toml")).unwrap();
    let doc: toml_edit::DocumentMut = ours.parse().unwrap();
    for (k, v) in doc.iter().filter(|(k, _)| !k.ends_with("_verified")) {
        let r = provisioner::image::pin::Reference::parse(v.as_str().unwrap()).unwrap_or_else(|e| panic!("{k}: {e}"));
        assert!(r.digest.is_some() && r.host == "docker.io", "{k}");
    }
}
