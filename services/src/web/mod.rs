//! The web server's router: the GeoJSON/CSV query API, the FDSN event service, Server-Sent Events
//! of new and updated events and the map page, answered from the in-memory [`window::Window`].

mod api;
mod body;
pub mod fdsnws;
mod lean;
pub mod query;
mod render;
mod serve;
mod sse;
pub mod window;

use crate::ops::{self, OpsState};
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
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
    cache: Arc<body::BodyCache>,
}

impl WebState {
    pub fn new(window: Arc<Window>, store: Arc<dyn Store>, assets: PathBuf) -> Self {
        Self { window, store, assets, now: now_us, page_config: json!({ "tiles": null }), cache: Arc::default() }
    }
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
        .route("/api/quakes", get(api::quakes_index))
        .route("/api/quakes/{unid}", get(api::quakes_show))
        .route("/api/stream", get(sse::stream_events))
        .merge(fdsnws::router())
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
