//! GeoDNS's admin listener: `/healthz`, `/health` and `/metrics`.
//!
//! `/health` is the edges' health as this GeoDNS sees it (what
//! `meridian status` and `meridian route` show); `/metrics` is Prometheus
//! text. Both read the current snapshot, so they follow reloads.

use crate::metrics::DnsMetrics;
use crate::snapshot::Live;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

#[derive(Clone)]
struct AdminState {
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
}

/// The admin routes.
pub fn router(live: Arc<Live>, metrics: Arc<DnsMetrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/health", get(health_view))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { live, metrics })
}

async fn health_view(State(state): State<AdminState>) -> impl IntoResponse {
    axum::Json(state.live.load().health.snapshot())
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.live.load().health),
    )
}
