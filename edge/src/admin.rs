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

use crate::host;
use crate::key;
use crate::metrics::{CacheSummary, EdgeMetrics};
use crate::origins::{OriginSet, OriginStatus};
use crate::peers::Peers;
use crate::storage::MemoryStorage;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::admin_access::{self, AdminAccess};
use pingora::cache::key::CacheHashKey;
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
}

/// `POST /purge`: what to remove.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Absolute URLs, e.g. `http://cdn.meridian.test/assets/1k.bin`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Tags from `Surrogate-Key` / `Cache-Tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Everything.
    #[serde(default)]
    pub all: bool,
    /// Mark stale (revalidate on next use) instead of removing.
    #[serde(default)]
    pub soft: bool,
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
    let request: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("bad purge request: {e}")),
    };
    let mut keys = Vec::new();
    for url in &request.urls {
        match url_keys(url) {
            Some(both) => keys.extend(both),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!("not an absolute http(s) URL: {url:?}"),
                );
            }
        }
    }
    let storage = state.storage;
    let mut purged = 0;
    if request.all {
        purged += storage.purge_all();
    }
    for key in keys {
        purged += usize::from(storage.purge_key(&key.primary_bin(), request.soft));
    }
    for tag in &request.tags {
        purged += storage.purge_tag(tag, request.soft);
    }
    state.metrics.purged(purged);
    tracing::info!(region = %state.region, purged, urls = request.urls.len(), tags = request.tags.len(), all = request.all, soft = request.soft, "purge");
    axum::Json(PurgeResult { purged }).into_response()
}

/// The cache keys of an absolute URL: the same resource is stored once per
/// scheme (a request over HTTPS has its own entry), and purging a URL means
/// the resource, so both go.
fn url_keys(url: &str) -> Option<[pingora::cache::CacheKey; 2]> {
    let uri: http::Uri = url.parse().ok()?;
    uri.scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    let host = host::normalize(uri.authority()?.as_str())?;
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some([
        key::cache_key("http", &host, path),
        key::cache_key("https", &host, path),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keys_match_request_keys_for_both_schemes() {
        let [http, https] = url_keys("http://CDN.Meridian.Test:8080/assets/1k.bin?x=1").unwrap();
        let from_request = key::cache_key("http", "cdn.meridian.test", "/assets/1k.bin?x=1");
        assert_eq!(http.primary_bin(), from_request.primary_bin());
        let from_tls = key::cache_key("https", "cdn.meridian.test", "/assets/1k.bin?x=1");
        assert_eq!(https.primary_bin(), from_tls.primary_bin());
        assert!(url_keys("/relative").is_none());
        assert!(url_keys("ftp://host/x").is_none());
    }
}
