//! The edge's admin listener: `/healthz`, `/status` and `/metrics`.
//!
//! It listens apart from the data plane (loopback by default), so nothing
//! here is reachable by the clients the edge serves. `/status` is what
//! `meridian status` shows for this edge: its view of every origin and its
//! cache hit ratio.

use crate::metrics::{CacheSummary, EdgeMetrics};
use crate::origins::{OriginSet, OriginStatus};
use crate::storage::MemoryStorage;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    /// The edge's region.
    pub region: String,
    /// Its origins.
    pub origins: Arc<OriginSet>,
    /// Its counters.
    pub metrics: Arc<EdgeMetrics>,
    /// Its cache.
    pub storage: &'static MemoryStorage,
}

/// `GET /status`.
#[derive(Debug, serde::Serialize)]
pub struct EdgeStatus {
    /// The edge's region.
    pub region: String,
    /// Its origins in preference order, with their health.
    pub origins: Vec<OriginStatus>,
    /// Its cache.
    pub cache: CacheSummary,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn status(State(state): State<AdminState>) -> impl IntoResponse {
    axum::Json(EdgeStatus {
        region: state.region.clone(),
        origins: state.origins.snapshot(),
        cache: state.metrics.summary(state.storage),
    })
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.storage),
    )
}
