//! Pins of third-party images (`assets/pins.toml`): each `NAME_image = "host/repo:tag@sha256:..."`
//! checked against, or refreshed from, the digest its registry gives the tag today, over the
//! OCI distribution API (anonymous bearer tokens as Docker Hub and ghcr.io hand them out), so
//! the operator needs no Docker, skopeo or crane to keep the hosts' images pinned.

use reqwest::{header, StatusCode};

/// The manifest types a tag may name: a multi-platform index first, so the pin is the digest
/// every architecture shares.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `[host/]repository:tag[@sha256:hex]`, as Docker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// As written (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub host: String,
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, digest) = match s.split_once('@') {
            Some((n, d))
                if d.starts_with("sha256:") && d.len() == 71 && d[7..].chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                (n, Some(d.to_owned()))
            }
            Some((_, d)) => return Err(format!("`{d}` is not a sha256 digest")),
            None => (s, None),
        };
        // The tag is after the last `:` that follows the last `/` (a port has a `/` after it).
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
            None => return Err(format!("`{s}` has no tag: pin a version (name:1.2.3), not whatever is newest")),
        };
        // Docker's rule: the first part is a host when it has a `.` or a `:`, or is localhost.
        let (host, repository) = match path.split_once('/') {
            Some((h, r)) if h.contains('.') || h.contains(':') || h == "localhost" => (h.to_owned(), r.to_owned()),
            _ => ("docker.io".to_owned(), path.to_owned()),
        };
        let repository =
            if host == "docker.io" && !repository.contains('/') { format!("library/{repository}") } else { repository };
        if repository.is_empty() || tag.is_empty() || tag == "latest" {
            return Err(format!("`{s}`: pin a version tag, not `latest`"));
        }
        Ok(Self { host, repository, tag: tag.to_owned(), digest })
    }

    /// The reference with `digest` (the host and repository spelt as they were).
    pub fn with_digest(&self, s: &str, digest: &str) -> String {
        let name = s.split_once('@').map_or(s, |(n, _)| n);
        format!("{name}@{digest}")
    }

    /// The registry's API base: Docker Hub's is not its name; a loopback one speaks plain HTTP
    /// (as Docker treats it).
    fn base(&self) -> String {
        match self.host.as_str() {
            "docker.io" => "https://registry-1.docker.io".into(),
            h if h.starts_with("localhost") || h.starts_with("127.") => format!("http://{h}"),
            h => format!("https://{h}"),
        }
    }
}

/// The digest `r`'s registry gives its tag now. `basic` (`user:password`) answers a registry
/// that asks for credentials; a bearer challenge is answered with an anonymous pull token.
pub async fn resolve(http: &reqwest::Client, r: &Reference, basic: Option<&str>) -> Result<String, String> {
    let url = format!("{}/v2/{}/manifests/{}", r.base(), r.repository, r.tag);
    let head = |auth: Option<String>| {
        let mut q = http.head(&url).header(header::ACCEPT, ACCEPT);
        if let Some(a) = auth {
            q = q.header(header::AUTHORIZATION, a);
        }
        q.send()
    };
    let fail = |e: reqwest::Error| format!("{url}: {}", chain(&e));
    let mut resp = head(None).await.map_err(fail)?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let auth = match challenge.split_once(' ') {
            Some((scheme, params)) if scheme.eq_ignore_ascii_case("bearer") => {
                format!("Bearer {}", token(http, params, &r.repository).await?)
            }
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") => match basic {
                Some(b) => format!("Basic {}", aws_smithy_types::base64::encode(b.as_bytes())),
                None => {
                    return Err(format!(
                        "{}: the registry asks for credentials (PROVISIONER_PIN_AUTH=user:password)",
                        r.host
                    ))
                }
            },
            _ => return Err(format!("{url}: 401 without a challenge this client knows ({challenge})")),
        };
        resp = head(Some(auth)).await.map_err(fail)?;
    }
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{url}: no Docker-Content-Digest in the answer"))
}

/// An error with its causes (reqwest's own text leaves out why: DNS, TLS, refused).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// An anonymous pull token from the challenge's realm (`realm="...",service="...",scope="..."`).
async fn token(http: &reqwest::Client, params: &str, repository: &str) -> Result<String, String> {
    let field = |name: &str| {
        params.split(',').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_owned())
        })
    };
    let realm = field("realm").ok_or_else(|| format!("a bearer challenge without a realm: {params}"))?;
    let scope = field("scope").unwrap_or_else(|| format!("repository:{repository}:pull"));
    let mut url = reqwest::Url::parse(&realm).map_err(|e| format!("the token realm `{realm}`: {e}"))?;
    url.query_pairs_mut().append_pair("scope", &scope);
    if let Some(s) = field("service") {
        url.query_pairs_mut().append_pair("service", &s);
    }
    let resp = http.get(url).send().await.map_err(|e| format!("{realm}: {}", chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{realm}: {}", resp.status()));
    }
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.map_err(|e| format!("{realm}: {e}"))?)
        .map_err(|e| format!("{realm}: {e}"))?;
    body.get("token")
        .or_else(|| body.get("access_token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{realm}: no token in the answer"))
}

/// What became of one pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// The registry's digest differs from the file's (or the file had none): the new one.
    Changed {
        was: Option<String>,
        now: String,
    },
    Failed(String),
}

/// The key recording when, and against which registry, a pin was last verified
/// (`kafka_image_verified = "2026-12-07T21:50:00Z docker.io"`): written by `pin --write`, asked
/// for by `apply` ([`unverified`]).
pub fn verified_key(name: &str) -> String {
    format!("{name}_verified")
}

/// The pins among `variables` (`*_image` values with a digest) that no `pin --write` verified.
pub fn unverified(variables: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    variables
        .iter()
        .filter(|(k, v)| k.ends_with("_image") && v.contains("@sha256:"))
        .filter(|(k, _)| variables.get(&verified_key(k)).is_none_or(|v| v.trim().is_empty()))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Checks (or, with `write`, refreshes) every `*_image` of the pins file at `path`; comments
/// and order are kept. With `write`, each pin the registry answered for is recorded as
/// verified, with the time and the registry. Returns each name with what became of it.
pub async fn pin_file(
    path: &std::path::Path,
    write: bool,
    basic: Option<&str>,
) -> Result<Vec<(String, Outcome)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
    let http =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let names: Vec<String> = doc.iter().filter(|(k, _)| k.ends_with("_image")).map(|(k, _)| k.to_owned()).collect();
    let mut out = Vec::new();
    let mut recorded = false;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for name in names {
        let Some(s) = doc[&name].as_str().map(str::to_owned) else {
            out.push((name, Outcome::Failed("not a string".into())));
            continue;
        };
        let outcome = match Reference::parse(&s) {
            Err(e) => Outcome::Failed(e),
            Ok(r) => match resolve(&http, &r, basic).await.inspect(|_| {
                if write {
                    doc[&verified_key(&name)] = toml_edit::value(format!("{now} {}", r.host));
                    recorded = true;
                }
            }) {
                Err(e) => Outcome::Failed(e),
                Ok(d) if r.digest.as_deref() == Some(d.as_str()) => Outcome::Unchanged,
                Ok(d) => {
                    if write {
                        // Keeps the key's comments: only the value is replaced.
                        let mut v = toml_edit::Value::from(r.with_digest(&s, &d));
                        if let Some(old) = doc[&name].as_value() {
                            *v.decor_mut() = old.decor().clone();
                        }
                        doc[&name] = toml_edit::Item::Value(v);
                    }
                    Outcome::Changed { was: r.digest.clone(), now: d }
                }
            },
        };
        out.push((name, outcome));
    }
    if write && (recorded || out.iter().any(|(_, o)| matches!(o, Outcome::Changed { .. }))) {
        std::fs::write(path, doc.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0bc1bb2478f45b6cea78864df86acdc11e8df2c5172477819a4d12942cbe5d40";

    #[test]
    fn references_are_read_as_docker_reads_them() {
        let r = Reference::parse(&format!("docker.io/apache/kafka:4.1.1@{D}")).unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag.as_str(), r.digest.as_deref()),
            ("docker.io", "apache/kafka", "4.1.1", Some(D))
        );
        assert_eq!(r.base(), "https://registry-1.docker.io");
        let r = Reference::parse("nginx:1.27").unwrap();
        assert_eq!((r.host.as_str(), r.repository.as_str()), ("docker.io", "library/nginx"));
        let r = Reference::parse("127.0.0.1:5000/test/app:1.0").unwrap();
        assert_eq!((r.host.as_str(), r.repository.as_str(), r.tag.as_str()), ("127.0.0.1:5000", "test/app", "1.0"));
        assert_eq!(r.base(), "http://127.0.0.1:5000");
        assert_eq!(Reference::parse("ghcr.io/grafana/alloy:v1").unwrap().base(), "https://ghcr.io");
        assert!(Reference::parse("127.0.0.1:5000/test/app").unwrap_err().contains("no tag"));
        assert!(Reference::parse("grafana/loki:latest").is_err());
        assert!(Reference::parse("grafana/loki:3@sha256:abc").unwrap_err().contains("not a sha256"));
        assert_eq!(
            r.with_digest(&format!("127.0.0.1:5000/test/app:1.0@{D}"), "sha256:ff"),
            "127.0.0.1:5000/test/app:1.0@sha256:ff"
        );
    }
}
