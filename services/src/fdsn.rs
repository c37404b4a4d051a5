//! EMSC's FDSN event service: paged JSON queries for the start-up backfill and the catch-up
//! after every reconnect.

use crate::backoff::Backoff;
use crate::ingest::Ingest;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Features per page; EMSC answers up to a few thousand, smaller pages retry cheaper.
const PAGE: usize = 500;

/// Which events to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdsnQuery {
    /// Origin time since (backfill).
    Window { start_us: i64 },
    /// Revised since (catch-up).
    UpdatedAfter { since_us: i64 },
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("quake/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static HTTP client settings")
}

fn fdsn_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()).unwrap_or_default()
}

/// The query string of one page (FDSN's `offset` counts from 1).
pub fn page_params(q: FdsnQuery, offset: usize) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("format", "json".to_owned()),
        ("orderby", "time-asc".to_owned()),
        ("limit", PAGE.to_string()),
        ("offset", offset.to_string()),
        ("nodata", "204".to_owned()),
    ];
    match q {
        FdsnQuery::Window { start_us } => p.push(("starttime", fdsn_time(start_us))),
        FdsnQuery::UpdatedAfter { since_us } => p.push(("updatedafter", fdsn_time(since_us))),
    }
    p
}

/// Fetches one page; an empty 204 (FDSN's "no data") is an empty page.
pub async fn fetch_page(
    http: &reqwest::Client,
    base: &str,
    q: FdsnQuery,
    offset: usize,
) -> Result<Vec<serde_json::Value>, String> {
    let res = http.get(base).query(&page_params(q, offset)).send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    if status == reqwest::StatusCode::NO_CONTENT || status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
    // `metadata.count` may exceed what is returned: count the features themselves.
    match v.get("features") {
        Some(serde_json::Value::Array(a)) => Ok(a.clone()),
        _ if v.get("type").and_then(|t| t.as_str()) == Some("Feature") => Ok(vec![v]),
        _ => Err("answer has no features array".into()),
    }
}

/// Pages through the query and publishes every feature; retries each page with backoff.
pub async fn publish_all(
    http: reqwest::Client,
    base: String,
    q: FdsnQuery,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let mut offset = 1;
    let mut total = 0usize;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut failures = 0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match fetch_page(&http, &base, q, offset).await {
            Ok(features) => {
                backoff.reset();
                failures = 0;
                let n = features.len();
                for f in &features {
                    if let Err(e) = ingest.feature(f).await {
                        tracing::error!(error = %e, "Could not publish an FDSN feature.");
                    }
                }
                total += n;
                if n < PAGE {
                    break;
                }
                offset += n;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, ?q, offset, "FDSN page failed; retrying.");
                if failures > 8 {
                    tracing::error!(?q, "FDSN query abandoned after repeated failures.");
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
    tracing::info!(?q, events = total, "FDSN query published.");
}
