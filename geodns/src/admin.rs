//! GeoDNS's admin listener: `/healthz`, `/health` and `/metrics`.
//!
//! `/health` is the edges' health as this GeoDNS sees it (what
//! `meridian status` and `meridian route` show); `/metrics` is Prometheus
//! text. Both read the current snapshot, so they follow reloads.
//!
//! Every route is behind `config::admin_access`, the rule all admin
//! listeners share: only requests addressed to this listener (its `Host`)
//! and from no other origin, so a web page cannot read the health view
//! after rebinding a name to it. With `geodns.admin_token` (required off
//! loopback) every route also needs `Authorization: Bearer <token>`. The
//! address and the token are read at start; changing them takes a restart.

use crate::metrics::DnsMetrics;
use crate::snapshot::Live;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use config::admin_access::{self, AdminAccess};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
struct AdminState {
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
}

/// The admin routes of a listener bound to `listen`, behind `token` if
/// one is configured.
pub fn router(
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    listen: SocketAddr,
    token: Option<&str>,
) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/health", get(health_view))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { live, metrics });
    admin_access::guard(routes, AdminAccess::new(listen).with_token(token))
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
