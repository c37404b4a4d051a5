//! The web server: the GeoJSON/CSV query API, Server-Sent Events of new and updated events, and
//! the map page, answered from the in-memory [`window::Window`].

pub mod query;
pub mod window;

use crate::model::format_utc;
use crate::ops::{self, OpsState};
use crate::store::{Store, WindowQuery};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use query::{Format, OrderBy, ParamError, QuakeQuery, QueryKey};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use window::{Change, Entry, Window};

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct WebState {
    pub window: Arc<Window>,
    pub store: Arc<dyn Store>,
    pub assets: PathBuf,
    pub now: fn() -> i64,
    /// What the page asks `/api/config` for (basemap choice).
    pub page_config: serde_json::Value,
    cache: Arc<Mutex<BodyCache>>,
}

impl WebState {
    pub fn new(window: Arc<Window>, store: Arc<dyn Store>, assets: PathBuf) -> Self {
        Self {
            window,
            store,
            assets,
            now: now_us,
            page_config: json!({ "tiles": null }),
            cache: Arc::new(Mutex::new(BodyCache::default())),
        }
    }
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Which data an answer was made from, at which version: a kept answer is used only while that
/// version is current. Window-answered queries follow the window's content; store-answered ones
/// (older than the window) follow every change the store's feed shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Window(u64),
    Store(u64),
}

/// Encoded bodies of recent answers: a repeated page view costs a hash lookup, not a
/// serialisation and a compression.
#[derive(Default)]
struct BodyCache {
    bodies: HashMap<(QueryKey, Encoding), (Source, Arc<Encoded>)>,
}

/// Kept answers at most; past it the cache starts over.
const CACHE_MAX: usize = 512;

struct Encoded {
    etag: String,
    body: bytes::Bytes,
    content_type: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    fn from_headers(h: &HeaderMap) -> Self {
        let accept = h.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
        let has = |name: &str| {
            accept.split(',').any(|part| {
                let mut it = part.trim().split(';');
                let token = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| p.trim().replace(' ', "") == "q=0");
                token.eq_ignore_ascii_case(name) && !q_zero
            })
        };
        if has("br") {
            Self::Brotli
        } else if has("gzip") {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

fn encode(body: &[u8], enc: Encoding) -> Vec<u8> {
    match enc {
        Encoding::Identity => body.to_vec(),
        Encoding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            let _ = w.write_all(body);
            w.finish().unwrap_or_default()
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                let _ = w.write_all(body);
            }
            out
        }
    }
}

/// The route a request counts under in `quake_http_requests`: the API's routes, the
/// operations endpoints, or `page` (the map page and anything else), so the series stay few.
fn route_of(path: &str) -> &'static str {
    match path {
        "/api/quakes" => "/api/quakes",
        "/api/stream" => "/api/stream",
        "/api/config" => "/api/config",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        p if p.starts_with("/api/quakes/") => "/api/quakes/{unid}",
        _ => "page",
    }
}

/// Counts and times every request answered through the router.
async fn track(
    State(m): State<crate::metrics::Metrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route_of(req.uri().path());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    m.http(route, res.status().as_u16(), started.elapsed().as_secs_f64());
    res
}

/// The whole application: API, stream, map page and operations endpoints.
pub fn app(state: WebState, ops_state: OpsState) -> Router {
    let page = ServeDir::new(&state.assets).append_index_html_on_directories(true);
    let window = state.window.clone();
    let metrics = ops_state.metrics.clone();
    metrics.sample_with(move |m| {
        m.sse_clients.set(i64::try_from(window.subscribers()).unwrap_or(i64::MAX));
        m.window_events.set(i64::try_from(window.len()).unwrap_or(i64::MAX));
    });
    Router::new()
        .route("/api/quakes", get(quakes_index))
        .route("/api/quakes/{unid}", get(quakes_show))
        .route("/api/stream", get(stream_events))
        .route("/api/config", get(|State(s): State<WebState>| async move { Json(s.page_config.clone()) }))
        .with_state(state)
        .merge(ops::router(ops_state))
        .fallback_service(page)
        // Pre-encoded API answers carry Content-Encoding and pass through untouched; SSE is
        // never compressed (tower-http's default predicate), everything else is.
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Client errors as JSON naming the parameter.
pub struct ApiError(StatusCode, serde_json::Value);

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self(StatusCode::BAD_REQUEST, json!({ "error": e }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, [(header::CACHE_CONTROL, "no-store")], Json(self.1)).into_response()
    }
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "Store read failed.");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": { "message": "the event store is unavailable; retry shortly" } }),
    )
}

async fn quakes_index(
    State(s): State<WebState>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let now = (s.now)();
    // Relative windows end at the next whole minute: answers (and their ETags) then stay the
    // same for a minute unless an event changes, so caches and 304s work.
    let anchor = (now / 60_000_000 + 1) * 60_000_000;
    let q = query::parse(&pairs, anchor)?;
    let enc = Encoding::from_headers(&headers);
    let key = (q.key(), enc);
    let (from_window, v) = s.window.covers(q.window.start_us, now);
    let current = if from_window { Source::Window(v.window) } else { Source::Store(v.store) };
    let cached = s.cache.lock().expect("cache lock").bodies.get(&key).filter(|(src, _)| *src == current).cloned();
    if let Some((_, e)) = cached {
        return Ok(respond(&e, enc, &headers, "public, max-age=10"));
    }
    let (entries, source, keep) = if from_window {
        let snap = s.window.query(&q.window);
        (snap.entries, Source::Window(snap.versions.window), true)
    } else {
        // Older than the window: one store Query per day, as documented. `v` was read before
        // the query, so a change the query misses moves the store version past it.
        let read_at = std::time::Instant::now();
        let rows = s.store.window(&WindowQuery { limit: usize::MAX, ..q.window.clone() }).await.map_err(store_error)?;
        let entries = rows
            .into_iter()
            .map(|st| {
                let feature = st.event.to_feature().to_string().into();
                Arc::new(Entry { stored: st, feature })
            })
            .collect();
        // A change seen less than the store's read lag before the query may be missing from its
        // indexes still: such an answer is served but not kept.
        let settled = read_at.saturating_duration_since(v.store_changed_at) >= s.store.read_lag();
        (entries, Source::Store(v.store), settled)
    };
    let (body, ctype) = render(entries, &q);
    let etag = format!("\"{:016x}\"", crate::model::fnv1a(&body));
    let e = Arc::new(Encoded { etag, body: encode(&body, enc).into(), content_type: ctype });
    if keep {
        let mut c = s.cache.lock().expect("cache lock");
        if c.bodies.len() >= CACHE_MAX {
            c.bodies.clear();
        }
        c.bodies.insert(key, (source, e.clone()));
    }
    Ok(respond(&e, enc, &headers, "public, max-age=10"))
}

fn respond(e: &Encoded, enc: Encoding, req: &HeaderMap, cache: &'static str) -> Response {
    let etag = HeaderValue::from_str(&e.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let matches = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == e.etag || t.trim() == "*"));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, e.body.clone()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(e.content_type));
        if let Some(ce) = enc.header() {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(ce));
        }
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    r
}

fn sort(entries: &mut [Arc<Entry>], order: OrderBy) {
    let mag = |e: &Arc<Entry>| e.stored.event.mag.unwrap_or(f64::NEG_INFINITY);
    match order {
        OrderBy::Time => {} // the window answers newest first
        OrderBy::TimeAsc => entries.reverse(),
        OrderBy::Magnitude => entries.sort_by(|a, b| mag(b).total_cmp(&mag(a))),
        OrderBy::MagnitudeAsc => entries.sort_by(|a, b| mag(a).total_cmp(&mag(b))),
    }
}

fn render(mut entries: Vec<Arc<Entry>>, q: &QuakeQuery) -> (Vec<u8>, &'static str) {
    sort(&mut entries, q.order);
    entries.truncate(q.window.limit);
    match q.format {
        Format::GeoJson => {
            let mut out = Vec::with_capacity(64 + entries.len() * 420);
            let _ = write!(
                out,
                r#"{{"type":"FeatureCollection","metadata":{{"count":{},"starttime":"{}","endtime":"{}","attribution":"Data: EMSC-CSEM (CC BY 4.0)"}},"features":["#,
                entries.len(),
                format_utc(q.window.start_us),
                format_utc(q.window.end_us)
            );
            for (i, e) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(e.feature.as_bytes());
            }
            out.extend_from_slice(b"]}");
            (out, "application/geo+json")
        }
        Format::Csv => {
            let mut out =
                String::from("unid,time,lastupdate,latitude,longitude,depth,mag,magtype,flynn_region,auth,evtype\n");
            for e in &entries {
                let ev = &e.stored.event;
                let row = [
                    csv_field(&ev.unid),
                    format_utc(ev.time_us),
                    format_utc(ev.lastupdate_us),
                    ev.lat.to_string(),
                    ev.lon.to_string(),
                    ev.depth_km.to_string(),
                    ev.mag.map(|m| m.to_string()).unwrap_or_default(),
                    csv_field(ev.magtype.as_deref().unwrap_or("")),
                    csv_field(ev.region.as_deref().unwrap_or("")),
                    csv_field(ev.auth.as_deref().unwrap_or("")),
                    csv_field(ev.evtype.as_deref().unwrap_or("")),
                ];
                out.push_str(&row.join(","));
                out.push('\n');
            }
            (out.into_bytes(), "text/csv; charset=utf-8")
        }
    }
}

/// RFC 4180 quoting; a leading formula character is neutralised so a spreadsheet shows text.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn quakes_show(
    State(s): State<WebState>,
    Path(unid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let feature: Arc<str> = match s.window.get(&unid) {
        Some(e) => e.feature.clone(),
        None => match s.store.get(&unid).await.map_err(store_error)? {
            Some(st) => st.event.to_feature().to_string().into(),
            None => {
                return Err(ApiError(
                    StatusCode::NOT_FOUND,
                    json!({ "error": { "parameter": "unid", "message": format!("no event {unid:?}"), "accepted": "an EMSC unid such as 20240411_0000003" } }),
                ))
            }
        },
    };
    let enc = Encoding::from_headers(&headers);
    let e = Encoded {
        etag: format!("\"{:016x}\"", crate::model::fnv1a(feature.as_bytes())),
        body: encode(feature.as_bytes(), enc).into(),
        content_type: "application/geo+json",
    };
    Ok(respond(&e, enc, &headers, "public, max-age=30"))
}

/// One frame of the event stream, whichever server path writes it.
pub enum StreamFrame {
    Hello(usize),
    Change(Change),
    /// The client missed more than is held: reload the list.
    Reset,
}

impl StreamFrame {
    fn to_sse(&self) -> SseEvent {
        match self {
            Self::Hello(n) => SseEvent::default().event("hello").data(json!({ "events": n }).to_string()),
            Self::Change(c) => SseEvent::default().id(c.id.to_string()).event(c.kind).data(&*c.feature),
            Self::Reset => SseEvent::default().event("reset").data("reload"),
        }
    }

    /// The same frame in the text/event-stream wire format.
    pub fn to_wire(&self) -> String {
        match self {
            Self::Hello(n) => format!("event: hello\ndata: {}\n\n", json!({ "events": n })),
            // Features are single-line JSON, so one data line carries them.
            Self::Change(c) => format!("id: {}\nevent: {}\ndata: {}\n\n", c.id, c.kind, c.feature),
            Self::Reset => "event: reset\ndata: reload\n\n".to_owned(),
        }
    }
}

/// What a client gets: `hello`, then what it missed since `last` (or `reset`), then every
/// change as it happens; a client that falls behind the bounded buffer gets `reset`.
pub fn stream_frames(window: &Window, last: Option<i64>) -> impl Stream<Item = StreamFrame> + Send + 'static {
    // Subscribe before reading the backlog so nothing falls between the two; what is in both is
    // told apart by arrival position, not by feed id (feed ids may arrive out of order).
    let rx = window.subscribe();
    let (missed, sent) = window.resume(last);
    let backlog: Vec<StreamFrame> = match missed {
        Some(m) => m.into_iter().map(StreamFrame::Change).collect(),
        None => vec![StreamFrame::Reset],
    };
    let hello = StreamFrame::Hello(window.len());
    let live = stream::unfold(rx, move |mut rx| async move {
        match rx.recv().await {
            Ok(c) => Some((Some(c), rx)),
            Err(RecvError::Lagged(_)) => Some((None, rx)),
            Err(RecvError::Closed) => None,
        }
    })
    .filter_map(move |c| {
        let out = match c {
            // Held when the backlog was read: sent in it, or known to the client already.
            Some(c) if sent.is_some_and(|p| c.pos <= p) => None,
            Some(c) => Some(StreamFrame::Change(c)),
            None => Some(StreamFrame::Reset),
        };
        async move { out }
    });
    stream::iter(std::iter::once(hello).chain(backlog)).chain(live)
}

/// `Last-Event-ID` (header) or `lastEventId` (query, for a first connect that resumes).
fn last_event_id(header: Option<&str>, query: Option<&str>) -> Option<i64> {
    header.or(query).and_then(|v| v.trim().parse().ok())
}

/// `GET /api/stream` over a general HTTP connection (a keep-alive connection that served other
/// requests first); connections that open with this request take the lean path in [`serve`].
async fn stream_events(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let last = last_event_id(
        headers.get("last-event-id").and_then(|v| v.to_str().ok()),
        params.get("lastEventId").map(String::as_str),
    );
    let all: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(stream_frames(&s.window, last).map(|f| Ok(f.to_sse())));
    (
        [(header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(all).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

/// Serves `app` on `listener` until `shutdown`. A connection whose first request is
/// `GET /api/stream` is answered by a small writer of its own instead of a general HTTP/1
/// connection: a browser holds that connection open for hours, and the general one keeps about
/// 30 kB of buffers per client, which 10,000 clients turn into hundreds of megabytes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    window: Arc<Window>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let (app, window, shutdown) = (app.clone(), window.clone(), shutdown.clone());
        tokio::spawn(async move {
            if opens_with_stream(&tcp).await {
                lean::serve_stream(tcp, &window, &shutdown).await;
            } else {
                serve_http(tcp, app, &shutdown).await;
            }
        });
    }
}

/// Peeks at the first bytes without consuming them.
async fn opens_with_stream(tcp: &tokio::net::TcpStream) -> bool {
    const WANT: &[u8] = b"GET /api/stream";
    let mut buf = [0u8; 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 {
            return false;
        }
        let k = n.min(WANT.len());
        if buf[..k] != WANT[..k] {
            return false;
        }
        if n > WANT.len() {
            return matches!(buf[WANT.len()], b' ' | b'?');
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve_http(tcp: tokio::net::TcpStream, app: Router, shutdown: &tokio_util::sync::CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let service = hyper_util::service::TowerToHyperService::new(app);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

mod lean {
    //! The event stream written straight to the socket: read the request head, answer, then
    //! one `write_all` per frame; a few kB per client instead of a full HTTP connection.

    use super::{last_event_id, stream_frames, Window};
    use futures_util::StreamExt;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    const HEAD_MAX: usize = 8192;

    /// The `Last-Event-ID` header or `lastEventId` query parameter of a request head.
    pub(super) fn parse_head(head: &str) -> Option<i64> {
        let mut lines = head.split("\r\n");
        let target = lines.next()?.split(' ').nth(1)?;
        let query = target
            .split_once('?')
            .map(|(_, q)| q)
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lastEventId=")).map(str::to_owned));
        let header = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("last-event-id").then(|| v.trim().to_owned())
        });
        last_event_id(header.as_deref(), query.as_deref())
    }

    pub(super) async fn serve_stream(mut tcp: tokio::net::TcpStream, window: &Window, shutdown: &CancellationToken) {
        let last = {
            let mut head = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            loop {
                let n = match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                };
                head.extend_from_slice(&chunk[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                if head.len() > HEAD_MAX {
                    let _ = tcp.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                }
            }
            parse_head(&String::from_utf8_lossy(&head))
        };
        // Subscribed before the answer starts: a client that sees the stream open may rely on
        // every later change coming through it.
        let frames = stream_frames(window, last);
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                    x-accel-buffering: no\r\nconnection: close\r\n\r\n";
        if tcp.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        tokio::pin!(frames);
        let (mut rd, mut wr) = tcp.split();
        let mut ping = tokio::time::interval(Duration::from_secs(15));
        ping.tick().await;
        let mut sink = [0u8; 64];
        loop {
            tokio::select! {
                f = frames.next() => match f {
                    Some(f) => if wr.write_all(f.to_wire().as_bytes()).await.is_err() { return },
                    None => return,
                },
                _ = ping.tick() => if wr.write_all(b": keep-alive\n\n").await.is_err() { return },
                // The client sends nothing more; a read that ends means it went away.
                r = rd.read(&mut sink) => if !matches!(r, Ok(n) if n > 0) { return },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn last_event_id_from_header_or_query() {
            let h = "GET /api/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 42\r\n\r\n";
            assert_eq!(super::parse_head(h), Some(42));
            assert_eq!(super::parse_head("GET /api/stream?lastEventId=7 HTTP/1.1\r\n\r\n"), Some(7));
            assert_eq!(super::parse_head("GET /api/stream HTTP/1.1\r\n\r\n"), None);
            assert_eq!(super::parse_head("garbage"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("EAST OF GUADELOUPE, LEEWARD ISL."), "\"EAST OF GUADELOUPE, LEEWARD ISL.\"");
        assert_eq!(csv_field("A \"B\""), "\"A \"\"B\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("PLAIN"), "PLAIN");
    }

    #[test]
    fn accept_encoding_prefers_br_then_gzip() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            Encoding::from_headers(&m)
        };
        assert_eq!(h("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(h("gzip"), Encoding::Gzip);
        assert_eq!(h("br;q=0, gzip"), Encoding::Gzip);
        assert_eq!(h("identity"), Encoding::Identity);
    }
}
