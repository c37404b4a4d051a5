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
use query::{Format, OrderBy, ParamError, QuakeQuery};
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

/// Encoded bodies of recent answers, valid for one window version: a repeated page view costs
/// a hash lookup, not a serialisation and a compression.
#[derive(Default)]
struct BodyCache {
    version: u64,
    bodies: HashMap<(String, Encoding), Arc<Encoded>>,
}

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

/// The whole application: API, stream, map page and operations endpoints.
pub fn app(state: WebState, ops_state: OpsState) -> Router {
    let page = ServeDir::new(&state.assets).append_index_html_on_directories(true);
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
    let key = format!("{q:?}");
    let version = s.window.version();
    let cached = {
        let mut c = s.cache.lock().expect("cache lock");
        if c.version != version || c.bodies.len() > 512 {
            c.version = version;
            c.bodies.clear();
        }
        c.bodies.get(&(key.clone(), enc)).cloned()
    };
    let encoded = match cached {
        Some(e) => e,
        None => {
            let entries = if s.window.covers(q.window.start_us, now) {
                s.window.query(&q.window)
            } else {
                // Older than the window: one store Query per day, as documented.
                s.store
                    .window(&WindowQuery { limit: usize::MAX, ..q.window.clone() })
                    .await
                    .map_err(store_error)?
                    .into_iter()
                    .map(|st| {
                        let feature = st.event.to_feature().to_string().into();
                        Arc::new(Entry { stored: st, feature })
                    })
                    .collect()
            };
            let (body, ctype) = render(entries, &q);
            let etag = format!("\"{:016x}\"", fnv(&body));
            let e = Arc::new(Encoded { etag, body: encode(&body, enc).into(), content_type: ctype });
            s.cache.lock().expect("cache lock").bodies.insert((key, enc), e.clone());
            e
        }
    };
    Ok(respond(&encoded, enc, &headers, "public, max-age=10"))
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

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        etag: format!("\"{:016x}\"", fnv(feature.as_bytes())),
        body: encode(feature.as_bytes(), enc).into(),
        content_type: "application/geo+json",
    };
    Ok(respond(&e, enc, &headers, "public, max-age=30"))
}

fn sse_event(c: &Change) -> SseEvent {
    SseEvent::default().id(c.id.to_string()).event(c.kind).data(&*c.feature)
}

/// `GET /api/stream`: `created` and `updated` events with the change-feed position as id. A
/// reconnecting browser sends `Last-Event-ID` and first gets what it missed; a client that fell
/// too far behind gets `reset` (reload the list) instead of holding anyone up.
async fn stream_events(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let last: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(params.get("lastEventId").map(String::as_str))
        .and_then(|v| v.trim().parse().ok());
    // Subscribe before reading the backlog so nothing falls between the two.
    let rx = s.window.subscribe();
    let (backlog, mut high): (Vec<SseEvent>, i64) = match last {
        None => (Vec::new(), s.window.cursor()),
        Some(id) => match s.window.since(id) {
            Some(missed) => {
                let high = missed.last().map_or(id, |c| c.id);
                (missed.iter().map(sse_event).collect(), high)
            }
            None => (vec![SseEvent::default().event("reset").data("reload")], s.window.cursor()),
        },
    };
    let hello = SseEvent::default().event("hello").data(json!({ "events": s.window.len() }).to_string());
    let live = stream::unfold(rx, move |mut rx| async move {
        match rx.recv().await {
            Ok(c) => Some((Some(c), rx)),
            Err(RecvError::Lagged(_)) => Some((None, rx)),
            Err(RecvError::Closed) => None,
        }
    })
    .filter_map(move |c| {
        let out = match c {
            Some(c) if c.id <= high => None, // already sent from the backlog
            Some(c) => {
                high = high.max(c.id);
                Some(sse_event(&c))
            }
            None => Some(SseEvent::default().event("reset").data("reload")),
        };
        async move { out }
    });
    let all: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(stream::iter(std::iter::once(hello).chain(backlog)).chain(live).map(Ok));
    (
        [(header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(all).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
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
