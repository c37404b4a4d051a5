//! Health and metrics endpoints of every service: `/healthz` (the process runs), `/readyz` (its
//! dependencies answer) and `/metrics` (Prometheus text; the web server may serve it on an address
//! of its own, away from the load balancer).

use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What `/readyz` checks.
#[derive(Clone, Default)]
pub struct HealthState {
    pub metrics: Metrics,
    /// Named flags that must all be true, e.g. `websocket` connected, `partitions` assigned.
    pub checks: Vec<(&'static str, Arc<AtomicBool>)>,
    pub store: Option<Arc<dyn Store>>,
}

pub fn router(state: HealthState) -> Router {
    probes(state.clone()).merge(Router::new().route("/metrics", get(metrics)).with_state(state))
}

/// `/healthz` and `/readyz` only: what a load balancer asks, on an address it reaches.
pub fn probes(state: HealthState) -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz)).with_state(state)
}

async fn readyz(State(s): State<HealthState>) -> impl IntoResponse {
    let mut failing: Vec<String> =
        s.checks.iter().filter(|(_, ok)| !ok.load(Ordering::Relaxed)).map(|(name, _)| (*name).to_owned()).collect();
    if let Some(store) = &s.store {
        if let Err(e) = store.ping().await {
            failing.push(format!("store: {e}"));
        }
    }
    let status = if failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": failing.is_empty(), "failing": failing })))
}

async fn metrics(State(s): State<HealthState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}
