//! What operators watch: `/readyz` (the database and the job runner) and `/metrics`
//! (Prometheus, behind a token), with the middleware that times every request.

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;

use super::Draining;
use crate::{metrics::QueueFigures, visits::AppState};

/// Middleware: times every request and counts it by its route template and status.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".into());
    let response = next.run(request).await;
    state.metrics.observe_http(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: for a bearer of the configured token; 404 when none is configured.
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.settings.metrics_token.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::crypto::constant_time_eq(offered.as_bytes(), token.expose_secret().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a metrics token is required",
        )
            .into_response();
    }
    let queue = QueueFigures {
        jobs: crate::jobs::census(&state.db).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "counting jobs for metrics failed");
            Vec::new()
        }),
        runner_up: state.runner.is_up(),
        result_receipts: crate::visits::receipts_waiting(&state.db)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "counting result receipts for metrics failed");
                0
            }),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&queue),
    )
        .into_response()
}

/// `GET /readyz`: 200 while the database answers and, where this instance runs jobs, its job
/// runner runs; 503 saying which is not (a load balancer stops sending work here), and 503 at
/// once when the instance is told to stop (it drains: `serve.rs`).
pub async fn readyz(State(state): State<AppState>, draining: Draining) -> Response {
    if draining.is_on() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: this instance is stopping",
        )
            .into_response();
    }
    if !state.db.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
    }
    if state.settings.jobs.run_in_background && !state.runner.is_up() {
        return (StatusCode::SERVICE_UNAVAILABLE, "job runner not running").into_response();
    }
    (StatusCode::OK, "ready").into_response()
}
