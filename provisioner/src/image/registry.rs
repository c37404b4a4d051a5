//! A client of the OCI distribution API (what ECR, Docker Hub and CNCF distribution serve):
//! push an image (blobs the registry already holds are not sent again), list tags, read and
//! delete manifests. Basic authentication, as ECR's `GetAuthorizationToken` gives it.

use super::{Blob, Image, MANIFEST};
use reqwest::{header, Method, RequestBuilder, Response, StatusCode};

#[derive(Debug, thiserror::Error)]
#[error("{op} {repo}: {detail}")]
pub struct RegistryError {
    pub op: &'static str,
    pub repo: String,
    pub detail: String,
    /// Worth retrying (a network error, a 5xx, 429).
    pub transient: bool,
}

/// What a push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_present: usize,
}

/// One registry: its base URL (`https://<account>.dkr.ecr.<region>.amazonaws.com`) and
/// credentials.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
    /// `Basic <base64 user:password>`; never logged.
    auth: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Registry {
    /// `basic` is the base64 of `user:password` (ECR's authorization token is exactly that).
    pub fn new(base: &str, basic: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            auth: basic.map(|b| format!("Basic {b}")),
        }
    }

    fn req(&self, method: Method, url: &str) -> RequestBuilder {
        let url = if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        };
        let r = self.http.request(method, url);
        match &self.auth {
            Some(a) => r.header(header::AUTHORIZATION, a),
            None => r,
        }
    }

    async fn send(&self, op: &'static str, repo: &str, r: RequestBuilder) -> Result<Response, RegistryError> {
        r.send().await.map_err(|e| RegistryError { op, repo: repo.to_owned(), detail: e.to_string(), transient: true })
    }

    /// Whether the registry holds blob `digest` in `repo`.
    pub async fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let r = self.send("HEAD blob", repo, self.req(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))).await?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(failure("HEAD blob", repo, r).await),
        }
    }

    /// Uploads one blob: start a session, send the bytes in one PATCH, close it with the
    /// digest (the sequence ECR requires; CNCF distribution accepts it too).
    async fn upload(&self, repo: &str, blob: &Blob) -> Result<(), RegistryError> {
        let op = "upload blob";
        let r = self.send(op, repo, self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))).await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(failure(op, repo, r).await);
        }
        let at = location(op, repo, &r)?;
        let r = self
            .send(
                op,
                repo,
                self.req(Method::PATCH, &at)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, format!("0-{}", blob.size().saturating_sub(1)))
                    .body(blob.data.as_ref().clone()),
            )
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(failure(op, repo, r).await);
        }
        let at = location(op, repo, &r)?;
        let sep = if at.contains('?') { '&' } else { '?' };
        let r = self
            .send(
                op,
                repo,
                self.req(Method::PUT, &format!("{at}{sep}digest={}", blob.digest)).header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(failure(op, repo, r).await);
        }
        Ok(())
    }

    /// Pushes `image` to `repo` under `tag`: every blob the registry lacks, then the manifest.
    pub async fn push(&self, repo: &str, image: &Image, tag: &str) -> Result<Pushed, RegistryError> {
        let mut done = Pushed::default();
        for blob in image.blobs() {
            if self.has_blob(repo, &blob.digest).await? {
                done.blobs_present += 1;
                continue;
            }
            self.upload(repo, blob).await?;
            done.blobs_uploaded += 1;
            done.bytes_uploaded += blob.size();
        }
        let op = "PUT manifest";
        let r = self
            .send(
                op,
                repo,
                self.req(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
                    .header(header::CONTENT_TYPE, MANIFEST)
                    .body(image.manifest.data.as_ref().clone()),
            )
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(failure(op, repo, r).await);
        }
        if let Some(d) = r.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            if d != image.digest() {
                return Err(RegistryError {
                    op,
                    repo: repo.to_owned(),
                    detail: format!("the registry stored {d}, not {}", image.digest()),
                    transient: false,
                });
            }
        }
        Ok(done)
    }

    /// Every tag of `repo` (none when the registry has no such repository yet).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let op = "list tags";
        let mut out = Vec::new();
        let mut next = Some(format!("/v2/{repo}/tags/list?n=1000"));
        while let Some(url) = next.take() {
            let r = self.send(op, repo, self.req(Method::GET, &url)).await?;
            if r.status() == StatusCode::NOT_FOUND {
                return Ok(out);
            }
            if !r.status().is_success() {
                return Err(failure(op, repo, r).await);
            }
            // Pagination per the distribution spec: `Link: </v2/...?last=x&n=y>; rel="next"`.
            next = r
                .headers()
                .get(header::LINK)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.split_once('<').and_then(|(_, rest)| rest.split_once('>')))
                .map(|(u, _)| u.to_owned());
            let bytes = r.bytes().await.map_err(|e| RegistryError {
                op,
                repo: repo.to_owned(),
                detail: e.to_string(),
                transient: true,
            })?;
            let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError {
                op,
                repo: repo.to_owned(),
                detail: format!("not a tag list: {e}"),
                transient: false,
            })?;
            out.extend(body["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)));
        }
        Ok(out)
    }

    /// The manifest `reference` (a tag or digest) names, as stored.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let op = "GET manifest";
        let accept = format!("{MANIFEST}, application/vnd.docker.distribution.manifest.v2+json");
        let r = self
            .send(
                op,
                repo,
                self.req(Method::GET, &format!("/v2/{repo}/manifests/{reference}")).header(header::ACCEPT, accept),
            )
            .await?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| RegistryError { op, repo: repo.to_owned(), detail: e.to_string(), transient: true })?
                    .to_vec(),
            )),
            _ => Err(failure(op, repo, r).await),
        }
    }

    /// Deletes the manifest `digest` (and so every tag on it); gone already is success.
    pub async fn delete(&self, repo: &str, digest: &str) -> Result<(), RegistryError> {
        let op = "DELETE manifest";
        let r = self.send(op, repo, self.req(Method::DELETE, &format!("/v2/{repo}/manifests/{digest}"))).await?;
        match r.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(failure(op, repo, r).await),
        }
    }
}

fn location(op: &'static str, repo: &str, r: &Response) -> Result<String, RegistryError> {
    r.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned).ok_or_else(|| RegistryError {
        op,
        repo: repo.to_owned(),
        detail: "the registry gave no upload location".into(),
        transient: false,
    })
}

/// An error answer, with the registry's own codes (`{"errors": [{"code", "message"}]}`).
async fn failure(op: &'static str, repo: &str, r: Response) -> RegistryError {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let codes: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .into_iter()
        .flatten()
        .map(|e| format!("{}: {}", e["code"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("")))
        .collect();
    let hint = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        " (the registry refused the credentials: the ECR token comes from GetAuthorizationToken with the caller's role)"
    } else {
        ""
    };
    let detail = if codes.is_empty() {
        format!("HTTP {status}{hint}")
    } else {
        format!("HTTP {status}: {}{hint}", codes.join("; "))
    };
    RegistryError {
        op,
        repo: repo.to_owned(),
        detail,
        transient: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
    }
}
