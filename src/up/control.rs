//! The control API of `meridian up`, and the client the CLI uses for it.
//!
//! `POST /regions/{region}/outage?component=edge|origin|all` crashes a
//! region's processes (SIGKILL: a failure, not a shutdown);
//! `POST /regions/{region}/restore` starts them again and returns once they
//! answer; `GET /status` reports every process (state, pid, restarts) and
//! GeoDNS's view of every edge. It listens on loopback only (the config
//! refuses anything else), and, like every admin listener, sits behind
//! `config::admin_access`: a request must name this listener in `Host`
//! (421 otherwise, against DNS rebinding), come from no other origin, and
//! a `POST` must carry `X-Meridian-Control` or a JSON body (403 otherwise),
//! which no web page can send here without a CORS preflight that is never
//! granted. The CLI sends the header; a page served from this listener
//! could too, with `fetch`.

use super::{Component, ProcessState, Supervisor};
use crate::cli::OutageScope;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::admin_access::{self, AdminAccess};
use config::report::SeenEdge;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long `status` waits for GeoDNS's admin listener.
const VIEW_TIMEOUT: Duration = Duration::from_secs(1);

/// The processes of a region an outage of `scope` takes down.
fn components(scope: OutageScope) -> &'static [Component] {
    match scope {
        OutageScope::All => &[Component::Edge, Component::Origin],
        OutageScope::Edge => &[Component::Edge],
        OutageScope::Origin => &[Component::Origin],
    }
}

#[derive(Debug, Deserialize)]
struct OutageQuery {
    #[serde(default)]
    component: OutageScope,
}

/// The answer to an outage or restore: which processes it acted on.
#[derive(Debug, Serialize, Deserialize)]
pub struct Acted {
    /// The processes, e.g. `edge eu-west`.
    pub processes: Vec<String>,
}

/// `GET /status`: the whole topology.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// The GeoDNS process.
    pub geodns: ProcessState,
    /// Whether GeoDNS's admin listener answered (its view is below).
    pub dns_view_available: bool,
    /// Every process, in the order they are started: origins, edges, GeoDNS.
    pub processes: Vec<ProcessStatus>,
    /// Every region, in config order.
    pub regions: Vec<RegionStatus>,
}

/// One process in [`Status`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Which, e.g. `edge eu-west`.
    pub process: String,
    /// Its state.
    pub state: ProcessState,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    /// Times `up` started it again after it died on its own.
    pub restarts: u32,
    /// How it last died on its own, if it did.
    pub last_exit: Option<String>,
}

/// One region in [`Status`].
#[derive(Debug, Serialize, Deserialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// Its edge processes taken together: `running` when every one runs,
    /// else the state of the first that does not.
    pub edge: ProcessState,
    /// Each of its edges, in config order.
    pub edges: Vec<EdgeStatus>,
    /// Its origin process.
    pub origin: ProcessState,
    /// Whether GeoDNS's health checks consider any of its edges up
    /// (`None`: unknown).
    pub dns_view_up: Option<bool>,
}

/// One edge in [`Status`].
#[derive(Debug, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// Its address (one of the region's `edge_addresses`).
    pub address: IpAddr,
    /// Its process.
    pub state: ProcessState,
    /// Whether GeoDNS's health checks consider it up (`None`: unknown).
    pub dns_view_up: Option<bool>,
    /// Its view of the origins, in its preference order (`None`: its
    /// admin listener did not answer).
    pub origins: Option<Vec<OriginView>>,
    /// Its view of the other edges of its region, which it fills from
    /// (`None`: its admin listener did not answer).
    pub peers: Option<Vec<SeenEdge>>,
    /// Its cache hit ratio so far.
    pub cache_hit_ratio: Option<f64>,
}

/// One origin as an edge sees it.
#[derive(Debug, Serialize, Deserialize)]
pub struct OriginView {
    /// The origin's region.
    pub region: String,
    /// Whether the edge's active checks consider it up.
    pub up: bool,
    /// Whether a request recently failed on it.
    pub suspect: bool,
}

/// An edge's `/status`, as far as `status` needs it.
#[derive(Deserialize)]
struct EdgeView {
    origins: Vec<OriginView>,
    #[serde(default)]
    peers: Vec<SeenEdge>,
    cache: CacheView,
}

#[derive(Deserialize)]
struct CacheView {
    hit_ratio: f64,
}

/// An error answer: a status code and a sentence.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

type Shared = Arc<Mutex<Supervisor>>;

/// The control routes over the running supervisor, for a listener bound
/// to `listen`.
pub fn router(supervisor: Shared, listen: SocketAddr) -> Router {
    let routes = Router::new()
        .route("/status", get(status))
        .route("/regions/{region}/outage", post(outage))
        .route("/regions/{region}/restore", post(restore))
        .with_state(supervisor);
    admin_access::guard(routes, AdminAccess::new(listen))
}

async fn outage(
    State(supervisor): State<Shared>,
    Path(region): Path<String>,
    Query(query): Query<OutageQuery>,
) -> Result<axum::Json<Acted>, Failure> {
    let mut supervisor = supervisor.lock().await;
    let roles = supervisor
        .region_roles(&region, components(query.component))
        .map_err(|e| Failure(StatusCode::NOT_FOUND, e))?;
    let mut processes = Vec::new();
    for index in roles {
        supervisor.kill(index).await;
        processes.push(supervisor.roles[index].label.clone());
    }
    tracing::warn!(%region, ?processes, "simulated outage: killed");
    Ok(axum::Json(Acted { processes }))
}

async fn restore(
    State(supervisor): State<Shared>,
    Path(region): Path<String>,
) -> Result<axum::Json<Acted>, Failure> {
    let mut supervisor = supervisor.lock().await;
    let roles = supervisor
        .region_roles(&region, &[Component::Origin, Component::Edge])
        .map_err(|e| Failure(StatusCode::NOT_FOUND, e))?;
    let stopped: Vec<usize> = roles
        .into_iter()
        .filter(|&i| supervisor.processes[i].state != ProcessState::Running)
        .collect();
    for &index in &stopped {
        supervisor
            .revive(index)
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    }
    supervisor
        .wait_until_ready(&stopped)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let processes: Vec<String> = stopped
        .iter()
        .map(|&i| supervisor.roles[i].label.clone())
        .collect();
    tracing::info!(%region, ?processes, "restored");
    Ok(axum::Json(Acted { processes }))
}

async fn status(State(supervisor): State<Shared>) -> axum::Json<Status> {
    let (mut report, admin, admin_token, edge_admins, http) = {
        let supervisor = supervisor.lock().await;
        // Every region has its edges and an origin, and there is one
        // GeoDNS (`roles` makes them); a missing one would be reported
        // failed.
        let state_of = |region: Option<usize>, component: Component| {
            supervisor
                .roles
                .iter()
                .position(|r| r.region == region && r.component == component)
                .map_or(ProcessState::Failed, |i| supervisor.processes[i].state)
        };
        let edge_state = |region: usize, address: IpAddr| {
            supervisor
                .roles
                .iter()
                .position(|r| r.region == Some(region) && r.address == Some(address))
                .map_or(ProcessState::Failed, |i| supervisor.processes[i].state)
        };
        let geodns = state_of(None, Component::GeoDns);
        let processes = supervisor
            .roles
            .iter()
            .zip(&supervisor.processes)
            .map(|(role, process)| ProcessStatus {
                process: role.label.clone(),
                state: process.state,
                pid: process.child.as_ref().and_then(|c| c.pid()),
                restarts: process.restarts,
                last_exit: process.last_exit.clone(),
            })
            .collect();
        let regions = supervisor
            .config
            .regions
            .iter()
            .enumerate()
            .map(|(i, region)| {
                let edges: Vec<EdgeStatus> = region
                    .edge_addresses
                    .iter()
                    .map(|&address| EdgeStatus {
                        address,
                        state: edge_state(i, address),
                        dns_view_up: None,
                        origins: None,
                        peers: None,
                        cache_hit_ratio: None,
                    })
                    .collect();
                RegionStatus {
                    region: region.name.clone(),
                    edge: edges
                        .iter()
                        .map(|e| e.state)
                        .find(|s| *s != ProcessState::Running)
                        .unwrap_or(ProcessState::Running),
                    edges,
                    origin: state_of(Some(i), Component::Origin),
                    dns_view_up: None,
                }
            })
            .collect();
        let report = Status {
            geodns,
            dns_view_available: false,
            processes,
            regions,
        };
        // Region by region, edge by edge: the order of `regions[].edges`.
        let edge_admins: Vec<SocketAddr> = supervisor
            .config
            .regions
            .iter()
            .flat_map(|r| r.edge_admin_addrs(&supervisor.config.edge))
            .collect();
        (
            report,
            supervisor.config.geodns.admin_listen,
            supervisor.config.geodns.admin_token.clone(),
            edge_admins,
            supervisor.http.clone(),
        )
    };
    // Asked without holding the lock: GeoDNS may be slow or gone.
    if let Ok(view) = dns_view(&http, admin, admin_token.as_deref()).await {
        report.dns_view_available = true;
        for region in &mut report.regions {
            let seen = view.iter().find(|v| v.region == region.region);
            region.dns_view_up = seen.map(|v| v.up);
            for edge in &mut region.edges {
                edge.dns_view_up = seen.and_then(|v| {
                    v.edges
                        .iter()
                        .find(|e| e.addr.ip() == edge.address)
                        .map(|e| e.up)
                });
            }
        }
    }
    let views =
        futures::future::join_all(edge_admins.iter().map(|addr| edge_view(&http, *addr))).await;
    let edges = report.regions.iter_mut().flat_map(|r| r.edges.iter_mut());
    for (edge, view) in edges.zip(views) {
        if let Ok(view) = view {
            edge.origins = Some(view.origins);
            edge.peers = Some(view.peers);
            edge.cache_hit_ratio = Some(view.cache.hit_ratio);
        }
    }
    axum::Json(report)
}

async fn edge_view(http: &reqwest::Client, admin: SocketAddr) -> Result<EdgeView, String> {
    let response = http
        .get(format!("http://{admin}/status"))
        .timeout(VIEW_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// GeoDNS's `/health` entries, as far as `status` needs them.
#[derive(Deserialize)]
struct DnsRegionView {
    region: String,
    up: bool,
    #[serde(default)]
    edges: Vec<DnsEdgeView>,
}

/// One edge in GeoDNS's `/health`.
#[derive(Deserialize)]
struct DnsEdgeView {
    addr: SocketAddr,
    up: bool,
}

/// GeoDNS's `/health`, with `geodns.admin_token` when there is one.
async fn dns_view(
    http: &reqwest::Client,
    admin: SocketAddr,
    token: Option<&str>,
) -> Result<Vec<DnsRegionView>, String> {
    let mut request = http.get(format!("http://{admin}/health"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .timeout(VIEW_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("GeoDNS's /health answered {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}
