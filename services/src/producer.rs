//! The producer: EMSC's websocket (with pings, dead-link detection, reconnects and an FDSN
//! catch-up after each connect), an FDSN backfill at start, and file replay, all publishing
//! through one [`Ingest`] that stamps arrival order and dead-letters what cannot be parsed.

use crate::backoff::Backoff;
use crate::fdsn::{self, FdsnQuery};
use crate::ingest::Ingest;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Settings of the live source.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub ws_url: String,
    pub fdsn_url: String,
    pub ping_interval: Duration,
    /// Declared dead when nothing (not even a pong) arrived for this long.
    pub dead_after: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Hours of FDSN history published at start (0 = none).
    pub backfill_hours: u32,
    /// How far before the watermark a catch-up starts, for clock and indexing slack at EMSC.
    pub catchup_margin: Duration,
}

impl LiveConfig {
    pub fn new(ws_url: &str, fdsn_url: &str) -> Self {
        Self {
            ws_url: ws_url.to_owned(),
            fdsn_url: fdsn_url.to_owned(),
            ping_interval: Duration::from_secs(15),
            dead_after: Duration::from_secs(40),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backfill_hours: 24,
            catchup_margin: Duration::from_secs(60),
        }
    }
}

/// Runs the live source until `shutdown`: connect, read, reconnect; backfill and catch-up run
/// beside the socket so live frames are never held up by them.
pub async fn run_live(cfg: LiveConfig, ingest: Ingest, connected: Arc<AtomicBool>, shutdown: CancellationToken) {
    let http = fdsn::client();
    let mut backoff = Backoff::new(cfg.backoff_base, cfg.backoff_max);
    let mut first = true;
    if cfg.backfill_hours > 0 {
        let start = chrono::Utc::now().timestamp_micros() - i64::from(cfg.backfill_hours) * 3_600_000_000;
        let q = FdsnQuery::Window { start_us: start };
        tokio::spawn(fdsn::publish_all(http.clone(), cfg.fdsn_url.clone(), q, ingest.clone(), shutdown.clone()));
    }
    while !shutdown.is_cancelled() {
        let attempt = tokio::select! {
            r = tokio_tungstenite::connect_async(cfg.ws_url.as_str()) => r,
            _ = shutdown.cancelled() => break,
        };
        match attempt {
            Ok((ws, _)) => {
                if !first {
                    ingest.metrics().reconnects.inc();
                }
                tracing::info!(url = %cfg.ws_url, reconnect = !first, "Websocket connected.");
                connected.store(true, Ordering::Relaxed);
                let wm = ingest.watermark();
                if !first && wm > 0 {
                    let since = wm - cfg.catchup_margin.as_micros() as i64;
                    let q = FdsnQuery::UpdatedAfter { since_us: since };
                    tokio::spawn(fdsn::publish_all(
                        http.clone(),
                        cfg.fdsn_url.clone(),
                        q,
                        ingest.clone(),
                        shutdown.clone(),
                    ));
                }
                first = false;
                let began = Instant::now();
                let why = session(ws, &cfg, &ingest, &shutdown).await;
                connected.store(false, Ordering::Relaxed);
                if shutdown.is_cancelled() {
                    break;
                }
                tracing::warn!(reason = %why, "Websocket session ended; reconnecting.");
                // A link that held for a while is healthy again: start the backoff from scratch.
                if began.elapsed() > cfg.dead_after {
                    backoff.reset();
                }
            }
            Err(e) => tracing::warn!(error = %e, url = %cfg.ws_url, "Websocket connect failed."),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection: read frames, ping on schedule, give up when the peer goes silent.
async fn session(ws: Ws, cfg: &LiveConfig, ingest: &Ingest, shutdown: &CancellationToken) -> String {
    let (mut tx, mut rx) = ws.split();
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return "shutdown".into();
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > cfg.dead_after {
                    return format!("no pong or frame for {:?}", last_heard.elapsed());
                }
                if let Err(e) = tx.send(Message::Ping(Vec::new().into())).await {
                    return format!("ping failed: {e}");
                }
            }
            msg = rx.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        if let Err(e) = ingest.frame("ws", t.as_str()).await {
                            tracing::error!(error = %e, "Could not publish a frame.");
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let text = String::from_utf8_lossy(&b);
                        if let Err(e) = ingest.frame("ws", &text).await {
                            tracing::error!(error = %e, "Could not publish a frame.");
                        }
                    }
                    Some(Ok(Message::Close(c))) => return format!("closed by server: {c:?}"),
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong, raw frame
                    Some(Err(e)) => return format!("read error: {e}"),
                    None => return "stream ended".into(),
                }
            }
        }
    }
}

/// Replays a file of websocket messages, one per line. `speed` compresses the gaps between the
/// lines' `lastupdate` times (1 = real time, 60 = a minute per second); 0 = as fast as possible.
pub async fn replay(
    path: &std::path::Path,
    speed: f64,
    shift: bool,
    ingest: &Ingest,
    shutdown: &CancellationToken,
) -> std::io::Result<u64> {
    use tokio::io::AsyncBufReadExt;
    let offset = if shift { shift_to_now(path).await? } else { 0 };
    let file = tokio::fs::File::open(path).await?;
    let mut lines = tokio::io::BufReader::new(file).lines();
    let mut count = 0u64;
    let mut prev: Option<i64> = None;
    while let Some(line) = lines.next_line().await? {
        let line = if offset != 0 { shifted(&line, offset).unwrap_or(line) } else { line };
        if shutdown.is_cancelled() {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        if speed > 0.0 {
            if let Some(t) = line_lastupdate(&line) {
                if let Some(p) = prev {
                    let gap = ((t - p).max(0) as f64 / speed) as u64;
                    tokio::time::sleep(Duration::from_micros(gap.min(3_600_000_000))).await;
                }
                prev = Some(prev.map_or(t, |p| p.max(t)));
            }
        }
        if let Err(e) = ingest.frame("replay", &line).await {
            tracing::error!(error = %e, "Could not publish a replayed line.");
        }
        count += 1;
    }
    Ok(count)
}

/// Microseconds to add so the file's newest `lastupdate` becomes now.
async fn shift_to_now(path: &std::path::Path) -> std::io::Result<i64> {
    let text = tokio::fs::read_to_string(path).await?;
    let newest = text.lines().filter_map(line_lastupdate).max().unwrap_or(0);
    Ok(if newest > 0 { chrono::Utc::now().timestamp_micros() - newest } else { 0 })
}

/// The line with its origin and revision times moved by `offset` µs (other fields untouched).
pub fn shifted(line: &str, offset: i64) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(line).ok()?;
    let props = v.pointer_mut("/data/properties")?.as_object_mut()?;
    for key in ["time", "lastupdate"] {
        let t = crate::model::parse_utc(props.get(key)?.as_str()?)?;
        props.insert(key.into(), serde_json::Value::String(crate::model::format_utc(t + offset)));
    }
    Some(v.to_string())
}

fn line_lastupdate(line: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    crate::model::parse_utc(v.pointer("/data/properties/lastupdate")?.as_str()?)
}
