//! The ops endpoints, on their own port: `/metrics` (OpenMetrics text), `/healthz` and `/readyz`
//! (200 `ok`, or 503 with the reason).
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::health::Health;
use super::metrics::Metrics;

/// The OpenMetrics content type prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Ops {
    metrics: Arc<Metrics>,
    health: Health,
}

/// The router of the ops port.
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n") })
        .with_state(Ops { metrics, health })
}

async fn metrics_text(State(ops): State<Ops>) -> Response {
    ops.metrics.refresh();
    ([(header::CONTENT_TYPE, OPENMETRICS)], ops.metrics.encode()).into_response()
}

async fn healthz(State(ops): State<Ops>) -> Response {
    answer(ops.health.healthz())
}

async fn readyz(State(ops): State<Ops>) -> Response {
    answer(ops.health.readyz())
}

fn answer(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}
