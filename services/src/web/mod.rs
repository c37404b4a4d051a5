//! The web server's router: the GeoJSON/CSV query API, the FDSN event service, Server-Sent Events
//! of new and updated events and the map page, answered from the in-memory [`window::Window`].

mod api;
mod body;
pub mod fdsnws;
pub mod limits;
pub mod query;
mod render;
mod serve;
mod sse;
mod sse_raw;
pub mod window;

use crate::health::{self, HealthState};
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use limits::{Guard, Limits, Refused};
use query::ParamError;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use window::Window;

pub use serve::serve;
pub use sse::{stream_frames, StreamFrame};

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct WebState {
    pub window: Arc<Window>,
    pub store: Arc<dyn Store>,
    pub assets: PathBuf,
    pub now: fn() -> i64,
    /// What the page asks `/api/config` for (basemap choice).
    pub page_config: serde_json::Value,
    /// What one client may make the server do, and the slots and streams taken now.
    pub guard: Arc<Guard>,
    cache: Arc<body::BodyCache>,
}

impl WebState {
    pub fn new(window: Arc<Window>, store: Arc<dyn Store>, assets: PathBuf) -> Self {
        Self::with_limits(window, store, assets, Limits::default())
    }

    pub fn with_limits(window: Arc<Window>, store: Arc<dyn Store>, assets: PathBuf, limits: Limits) -> Self {
        Self {
            window,
            store,
            assets,
            now: now_us,
            page_config: json!({ "tiles": null }),
            cache: Arc::new(body::BodyCache::new(limits.cache_bytes)),
            guard: Arc::new(Guard::new(limits)),
        }
    }

    /// The page's Content-Security-Policy: its own scripts, styles, data and stream only (and
    /// the online tiles' origin when configured), no framing, no plugins.
    fn csp(&self) -> HeaderValue {
        let tiles = self.page_config["tiles"].as_str().and_then(origin_of).unwrap_or_default();
        let policy = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: {tiles}; \
             connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'"
        );
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'self'"))
    }
}

/// `https://tile.example.org` of a tile URL template, when it is one.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'{' | b'}'));
    // `{s}.tile.example.org` serves from subdomains: allow them all.
    ok.then(|| format!("{scheme}://{}", host.replace("{s}", "*")))
}

/// Security headers on every answer: no MIME sniffing, no referrer to other sites, and the
/// page's Content-Security-Policy.
async fn secure(State(csp): State<HeaderValue>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
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
        "/fdsnws/event/1/query" => "/fdsnws/event/1/query",
        p if p.starts_with("/fdsnws/event/1") => "/fdsnws/event/1/*",
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

/// The whole application: API, stream, map page and operations endpoints (`/metrics` too when
/// `metrics_here`; otherwise the operations endpoints get a listener of their own).
pub fn app(state: WebState, health_state: HealthState) -> Router {
    app_with(state, health_state, true)
}

/// [`app`], with `/metrics` only where `metrics_here` says.
pub fn app_with(state: WebState, health_state: HealthState, metrics_here: bool) -> Router {
    let page = ServeDir::new(&state.assets).append_index_html_on_directories(true);
    let window = state.window.clone();
    let guard = state.guard.clone();
    let csp = state.csp();
    let metrics = health_state.metrics.clone();
    metrics.sample_with(move |m| {
        m.sse_clients.set(i64::try_from(guard.streams_open().max(window.subscribers())).unwrap_or(i64::MAX));
        m.window_events.set(i64::try_from(window.len()).unwrap_or(i64::MAX));
    });
    let probes = if metrics_here { health::router(health_state) } else { health::probes(health_state) };
    Router::new()
        .route("/api/quakes", get(api::quakes_index))
        .route("/api/quakes/{unid}", get(api::quakes_show))
        .route("/api/stream", get(sse::stream_events))
        .merge(fdsnws::router())
        .route("/api/config", get(|State(s): State<WebState>| async move { Json(s.page_config.clone()) }))
        .with_state(state)
        .merge(probes)
        .fallback_service(page)
        // Pre-encoded API answers carry Content-Encoding and pass through untouched; SSE is
        // never compressed (tower-http's default predicate), everything else is.
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(csp, secure))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Client errors as JSON naming the parameter, and requests turned away by a bound.
pub enum ApiError {
    Status(StatusCode, serde_json::Value),
    Refused(Refused),
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self::Status(StatusCode::BAD_REQUEST, json!({ "error": e }))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Status(status, body) => (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response(),
            Self::Refused(r) => r.response(),
        }
    }
}
