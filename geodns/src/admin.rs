//! GeoDNS's admin listener: `/healthz`, `/health`, `/counters`,
//! `/metrics`, and the live view read-only (`/`, `/events`, `/snapshot`:
//! [`crate::live`]).
//!
//! `/health` is the edges' health as this GeoDNS sees it (what
//! `meridian status` and `meridian route` show); `/counters` is steered
//! answers per region and reloads since start, and answers per client
//! country and region since the config's load, as JSON (what the live view
//! of `meridian up` follows); `/metrics` is Prometheus text. Both read the current snapshot, so they follow reloads.
//!
//! Every route is behind `config::admin_access`, the rule all admin
//! listeners share: only requests addressed to this listener (its `Host`)
//! and from no other origin, so a web page cannot read the health view
//! after rebinding a name to it. With `geodns.admin_token` (required off
//! loopback) every route also needs `Authorization: Bearer <token>`. The
//! address and the token are read at start; changing them takes a restart.

use crate::live::Feed;
use crate::metrics::DnsMetrics;
use crate::snapshot::{Live, Snapshot};
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

/// The admin routes of a listener bound to `listen` (with the live view
/// fed by `view`), behind `token` if one is configured.
pub fn router(
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    view: Feed,
    listen: SocketAddr,
    token: Option<&str>,
) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/health", get(health_view))
        .route("/counters", get(counters))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { live, metrics })
        .merge(crate::live::routes(view));
    admin_access::guard(routes, AdminAccess::new(listen).with_token(token))
}

async fn health_view(State(state): State<AdminState>) -> impl IntoResponse {
    axum::Json(state.live.load().health.snapshot())
}

/// `GET /counters`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Steered answers since start, per region of the running config, in
    /// its order.
    pub steered: Vec<RegionAnswers>,
    /// Reloads that took effect since start.
    pub reloads: u64,
    /// Reloads refused since start.
    pub reload_failures: u64,
    /// Steered answers per client country and region since the running
    /// config was loaded (a reload starts them again), only those with
    /// answers: at most every country of the country table, `unknown` and
    /// `other`, times the regions.
    #[serde(default)]
    pub flows: Vec<FlowAnswers>,
}

/// Steered answers to clients of one country with one region's edges.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowAnswers {
    /// An uppercase ISO 3166-1 alpha-2 code, `unknown` or `other`
    /// ([`crate::flows`]).
    pub country: String,
    /// The region.
    pub region: String,
    /// Answers.
    pub answers: u64,
}

/// Steered answers with one region's edges.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RegionAnswers {
    /// The region.
    pub region: String,
    /// Answers since start.
    pub answers: u64,
}

impl Counters {
    /// The counters of `snapshot` and `metrics` now.
    pub fn of(snapshot: &Snapshot, metrics: &DnsMetrics) -> Counters {
        let steered = snapshot
            .config
            .regions
            .iter()
            .zip(&snapshot.steered)
            .map(|(region, counter)| RegionAnswers {
                region: region.name.clone(),
                answers: counter.get(),
            })
            .collect();
        let (reloads, reload_failures) = metrics.reload_counts();
        let flows = snapshot
            .flows
            .totals()
            .into_iter()
            .filter_map(|(country, region, answers)| {
                Some(FlowAnswers {
                    country: crate::flows::country_name(country).to_owned(),
                    region: snapshot.config.regions.get(region)?.name.clone(),
                    answers,
                })
            })
            .collect();
        Counters {
            steered,
            reloads,
            reload_failures,
            flows,
        }
    }
}

async fn counters(State(state): State<AdminState>) -> impl IntoResponse {
    axum::Json(Counters::of(&state.live.load(), &state.metrics))
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
