//! The FDSN event web service (fdsnws-event 1.2) at `/fdsnws/event/1/`: `query` in QuakeML,
//! text or GeoJSON, `version`, `application.wadl`, `catalogs`, `contributors`, and errors in
//! the specification's text format, so seismologists' clients (ObsPy, SeisComP) use this node as
//! they use EMSC's or USGS's.

pub mod params;
pub mod quakeml;

use super::api::{fetch, minute_anchor, Failed, Origin, STORE_ROWS_MAX};
use super::body::{respond, AnswerKey, Encoded, Encoding};
use super::limits::Refused;
use super::render::{geojson, sort};
use super::window::Entry;
use super::WebState;
use crate::model::format_utc;
use crate::store::WindowQuery;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use params::{FdsnFormat, FdsnQuery, MAX_EVENTS};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The specification version this service implements.
pub const VERSION: &str = "1.2.0";
const BASE: &str = "/fdsnws/event/1";

pub fn router() -> Router<WebState> {
    Router::new()
        .route(&format!("{BASE}/"), get(index))
        .route(BASE, get(index))
        .route(&format!("{BASE}/query"), get(query))
        .route(&format!("{BASE}/version"), get(|| async { plain(VERSION) }))
        .route(&format!("{BASE}/application.wadl"), get(wadl))
        .route(&format!("{BASE}/catalogs"), get(catalogs))
        .route(&format!("{BASE}/contributors"), get(contributors))
}

fn plain(body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// An error in the FDSN text format: code, detail, the request and when it came.
struct FdsnError {
    status: StatusCode,
    detail: String,
    uri: String,
    at_us: i64,
}

impl IntoResponse for FdsnError {
    fn into_response(self) -> Response {
        let body = format!(
            "Error {}: {}\n\n{}\n\nUsage details are available from {BASE}/\n\nRequest:\n{}\n\nRequest Submitted:\n{}\n\nService version:\n{VERSION}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.detail,
            self.uri,
            format_utc(self.at_us),
        );
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body)
            .into_response()
    }
}

async fn query(
    State(s): State<WebState>,
    uri: Uri,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let now = (s.now)();
    let fail = |status: StatusCode, detail: String| FdsnError { status, detail, uri: uri.to_string(), at_us: now };
    let q = match pairs.map_err(|e| e.body_text()).and_then(|Query(p)| {
        params::parse(&p, minute_anchor(now))
            .map_err(|e| format!("{}: {}. Accepted: {}.", e.parameter, e.message, e.accepted))
    }) {
        Ok(q) => q,
        Err(detail) => return fail(StatusCode::BAD_REQUEST, detail).into_response(),
    };
    let enc = Encoding::from_headers(&headers);
    let no_data = || {
        if q.nodata == 404 {
            fail(StatusCode::NOT_FOUND, "No events match the request.".into()).into_response()
        } else {
            (StatusCode::NO_CONTENT, [(header::CACHE_CONTROL, "public, max-age=10")]).into_response()
        }
    };
    if let Some(id) = &q.eventid {
        let entry = match s.window.get(id) {
            Some(e) => Some(e),
            None => match s.guard.store_read(s.store.get(id)).await {
                Ok(Ok(st)) => st.map(|st| {
                    let feature = st.event.to_feature().to_string().into();
                    Arc::new(Entry { stored: st, feature })
                }),
                Ok(Err(_)) => return unavailable(fail),
                Err(r) => return refused(r, fail),
            },
        };
        return match entry {
            Some(e) => {
                let (body, ctype) = render(&[e], &q);
                respond(&Encoded::new(&body, enc, ctype), enc, &headers, "public, max-age=30")
            }
            None => no_data(),
        };
    }
    let key = AnswerKey::Fdsn(q.key());
    let origin = Origin::of(&s, q.window.start_us, now);
    if let Some(e) = s.cache.get(&key, enc, origin.current()) {
        return respond(&e, enc, &headers, "public, max-age=10");
    }
    // FDSN's own filters (depth, circle, type, ...) and offsets apply after the read: the store
    // reads the whole range, up to the most one answer may hold.
    let got = match fetch(&s, &origin, &q.window, false).await {
        Ok(g) => g,
        Err(Failed::Store(_)) => return unavailable(fail),
        Err(Failed::Refused(r)) => return refused(r, fail),
        Err(Failed::TooMany) => {
            let detail = format!(
                "More than {STORE_ROWS_MAX} events lie in the time range and box; one answer holds at most {MAX_EVENTS}. Narrow it."
            );
            return fail(StatusCode::PAYLOAD_TOO_LARGE, detail).into_response();
        }
    };
    let mut entries: Vec<Arc<Entry>> = got.entries.into_iter().filter(|e| q.matches(&e.stored.event)).collect();
    let n = entries.len().saturating_sub(q.skip).min(q.limit.unwrap_or(usize::MAX));
    if n > MAX_EVENTS {
        let detail = format!(
            "The request matches {n} events; one answer holds at most {MAX_EVENTS}. Narrow it, or page with limit and offset."
        );
        return fail(StatusCode::PAYLOAD_TOO_LARGE, detail).into_response();
    }
    sort(&mut entries, q.order);
    let page: Vec<Arc<Entry>> = entries.into_iter().skip(q.skip).take(n).collect();
    if page.is_empty() {
        return no_data();
    }
    let (body, ctype) = render(&page, &q);
    let e = Arc::new(Encoded::new(&body, enc, ctype));
    if got.keep {
        s.cache.put(key, enc, got.source, e.clone());
    }
    respond(&e, enc, &headers, "public, max-age=10")
}

const UNAVAILABLE: &str = "The event store is unavailable; retry shortly.";

/// A request turned away by a bound, in FDSN's error format, with `Retry-After`.
fn refused(r: Refused, fail: impl FnOnce(StatusCode, String) -> FdsnError) -> Response {
    let mut res = fail(r.status(), format!("{}.", r.message())).into_response();
    res.headers_mut().insert(header::RETRY_AFTER, r.retry_after().into());
    res
}

/// A failed store read's answer (the failure is logged where the read ran).
fn unavailable(fail: impl FnOnce(StatusCode, String) -> FdsnError) -> Response {
    fail(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE.into()).into_response()
}

fn render(page: &[Arc<Entry>], q: &FdsnQuery) -> (Vec<u8>, &'static str) {
    match q.format {
        FdsnFormat::Xml => (quakeml::quakeml(page), "application/xml"),
        FdsnFormat::Text => (quakeml::text(page), "text/plain; charset=utf-8"),
        FdsnFormat::Json => (geojson(page, q.window.start_us, q.window.end_us), "application/geo+json"),
    }
}

/// The distinct values of one field over the events the window holds, as `<Xs><X>..</X></Xs>`.
fn listing(s: &WebState, root: &str, field: fn(&crate::model::Event) -> Option<&str>) -> Response {
    let all = s.window.query(&WindowQuery::new(i64::MIN, i64::MAX)).entries;
    let values: BTreeSet<&str> = all.iter().filter_map(|e| field(&e.stored.event)).collect();
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}s>");
    for v in values {
        out.push_str(&format!("<{root}>{}</{root}>", quakeml::esc(v)));
    }
    out.push_str(&format!("</{root}s>\n"));
    ([(header::CONTENT_TYPE, "application/xml")], out).into_response()
}

async fn catalogs(State(s): State<WebState>) -> Response {
    listing(&s, "Catalog", |e| e.source_catalog.as_deref())
}

async fn contributors(State(s): State<WebState>) -> Response {
    listing(&s, "Contributor", |e| e.auth.as_deref())
}

/// The service's own address as the client reached it (behind the load balancer too).
fn base_url(headers: &HeaderMap) -> String {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = h("x-forwarded-host").or(h("host")).unwrap_or("localhost");
    let scheme = h("x-forwarded-proto").filter(|p| *p == "https").unwrap_or("http");
    format!("{scheme}://{}{BASE}/", quakeml::esc(host))
}

async fn wadl(headers: HeaderMap) -> Response {
    let body = include_str!("application.wadl").replace("{BASE}", &base_url(&headers));
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    let body = include_str!("index.html").replace("{BASE}", &base).replace("{VERSION}", VERSION);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
