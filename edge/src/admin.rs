//! The edge's admin listener: `/healthz`, `/status`, `/metrics` and
//! `/purge`.
//!
//! It listens apart from the data plane (loopback by default), so nothing
//! here is reachable by the clients the edge serves. `/status` is what
//! `meridian status` shows for this edge: its view of every origin, of the
//! other edges of its region (`peers`, [`config::report::SeenEdge`], which
//! GeoDNS may count as another vantage point), and its cache hit ratio.
//! `/purge` needs the configured bearer token.
//!
//! Every route is behind `config::admin_access` (the rule all admin
//! listeners share): a request must be addressed to this listener (its
//! `Host`), come from no other origin, and a `POST` must be one no web page
//! can send cross-origin unasked; so a browser on this machine cannot be
//! made to purge, nor to read `/status` after rebinding a name to it.

use crate::metrics::{CacheSummary, EdgeMetrics, Traffic};
use crate::origins::{OriginSet, OriginStatus};
use crate::peers::Peers;
use crate::purging;
use crate::storage::MemoryStorage;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cluster::purge::Purge;
use config::admin_access::{self, AdminAccess};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    /// The edge's region.
    pub region: String,
    /// Its origins.
    pub origins: Arc<OriginSet>,
    /// The other edges of its region.
    pub peers: Arc<Peers>,
    /// Its counters.
    pub metrics: Arc<EdgeMetrics>,
    /// Its cache.
    pub storage: &'static MemoryStorage,
    /// The token purges need; `None`: purging is disabled.
    pub token: Option<Arc<str>>,
    /// Whether its cache is verified against the cluster's purges; `None`
    /// for a single host.
    pub verified: Option<Arc<cluster::feed::Verified>>,
}

/// `GET /status`.
#[derive(Debug, Serialize)]
pub struct EdgeStatus {
    /// The edge's region.
    pub region: String,
    /// Its origins in preference order, with their health.
    pub origins: Vec<OriginStatus>,
    /// The other edges of its region as its health checks see them (the
    /// field is named by [`config::report::EDGE_PEERS_FIELD`]).
    pub peers: Vec<config::report::SeenEdge>,
    /// Its cache.
    pub cache: CacheSummary,
    /// Its request counters.
    pub traffic: Traffic,
    /// Lookups answered per cache tier, and its disk tier's state.
    pub tiers: crate::storage::TierStats,
}

/// `POST /purge`'s answer.
#[derive(Debug, Deserialize, Serialize)]
pub struct PurgeResult {
    /// Objects removed or marked stale.
    pub purged: usize,
}

/// The admin routes of a listener bound to `listen`.
pub fn router(state: AdminState, listen: SocketAddr) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/purge", post(purge))
        .with_state(state);
    admin_access::guard(routes, AdminAccess::new(listen))
}

async fn status(State(state): State<AdminState>) -> impl IntoResponse {
    axum::Json(EdgeStatus {
        region: state.region.clone(),
        origins: state.origins.snapshot(),
        peers: state.peers.seen(),
        cache: state.metrics.summary(state.storage),
        traffic: state.metrics.traffic(),
        tiers: state.storage.tier_stats(),
    })
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state
            .metrics
            .render(state.storage, state.verified.as_deref().map(|v| v.holds())),
    )
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, format!("{reason}\n")).into_response()
}

async fn purge(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return refuse(
            StatusCode::FORBIDDEN,
            "purging is disabled: set edge.admin_token",
        );
    };
    if !admin_access::bearer_matches(&headers, token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a valid Authorization: Bearer token is required",
        );
    }
    let request: Purge = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("bad purge request: {e}")),
    };
    let purged = match purging::apply(state.storage, &state.metrics, &request) {
        Ok(purged) => purged,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, &reason),
    };
    // Answered once the disk tier has deleted what was purged, so an edge
    // that crashes right after never finds it again. (A purge from the
    // cluster bus needs no wait: the bus replays what the disk did not
    // record as applied.)
    let storage = state.storage;
    if tokio::task::spawn_blocking(move || storage.flush_disk())
        .await
        .is_err()
    {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "the disk cache failed");
    }
    axum::Json(PurgeResult { purged }).into_response()
}
