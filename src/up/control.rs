//! The control API of `meridian up`, and the client the CLI uses for it.
//!
//! `POST /regions/{region}/outage?component=edge|origin|all` crashes a
//! region's processes (SIGKILL: a failure, not a shutdown);
//! `POST /regions/{region}/restore` starts them again and returns once they
//! answer; `GET /status` reports every process (state, pid, restarts) and
//! every GeoDNS server's view of every edge, with who sees what. It listens on loopback only (the config
//! refuses anything else), and, like every admin listener, sits behind
//! `config::admin_access`: a request must name this listener in `Host`
//! (421 otherwise, against DNS rebinding), come from no other origin, and
//! a `POST` must carry `X-Meridian-Control` or a JSON body (403 otherwise),
//! which no web page can send here without a CORS preflight that is never
//! granted. The CLI sends the header; a page served from this listener
//! could too, with `fetch`.

use super::{Component, ProcessState, Supervisor};
use crate::cli::OutageScope;
use crate::dns_views::ServerView;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::report::SeenEdge;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::Mutex;

/// How long `status` waits for an edge's admin listener.
const VIEW_TIMEOUT: std::time::Duration = crate::dns_views::VIEW_TIMEOUT;

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
    /// Cut the region's link instead of killing its processes.
    #[serde(default)]
    partition: bool,
    /// With `partition`: cut only the link from this GeoDNS server.
    from: Option<String>,
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
    /// Every GeoDNS server's view of the edges, with who sees what.
    pub geodns: Vec<ServerView>,
    /// Whether any GeoDNS server's admin listener answered.
    pub dns_view_available: bool,
    /// Every process, in the order they are started: origins, edges,
    /// GeoDNS servers.
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
    /// Whether the GeoDNS servers that answered answer with its edges;
    /// `None` when none answered or they disagree (see `dns_views`).
    pub dns_view_up: Option<bool>,
    /// Each GeoDNS server's decision, in config order (`up: None`: it did
    /// not answer).
    pub dns_views: Vec<DnsRegionView>,
}

/// One edge in [`Status`].
#[derive(Debug, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// Its address (one of the region's `edge_addresses`).
    pub address: IpAddr,
    /// Its process.
    pub state: ProcessState,
    /// Whether the GeoDNS servers that answered answer with it; `None`
    /// when none answered or they disagree.
    pub dns_view_up: Option<bool>,
    /// Its view of the origins, in its preference order (`None`: its
    /// admin listener did not answer).
    pub origins: Option<Vec<OriginView>>,
    /// Its view of the other edges of its region, which it fills from
    /// (`None`: its admin listener did not answer).
    pub peers: Option<Vec<SeenEdge>>,
    /// Its cache hit ratio so far.
    pub cache_hit_ratio: Option<f64>,
    /// Its request counters so far (`None`: its admin listener did not
    /// answer).
    #[serde(default)]
    pub traffic: Option<TrafficView>,
    /// Its disk cache tier, if it has one (`None` also when its admin
    /// listener did not answer).
    #[serde(default)]
    pub disk: Option<DiskView>,
}

/// An edge's disk cache tier, as its `/status` reports it
/// (`edge::storage::TierStats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskView {
    /// Objects it holds (none when it could not be opened).
    #[serde(default)]
    pub objects: u64,
    /// Bytes its files occupy.
    #[serde(default)]
    pub bytes: u64,
    /// Why it is failing, if it is.
    #[serde(default)]
    pub failing: Option<String>,
}

/// The part of an edge's `/status` about its cache tiers.
#[derive(Deserialize)]
struct TiersView {
    #[serde(default)]
    disk: Option<DiskView>,
}

/// An edge's request counters since it started, as its `/status` reports
/// them (`edge::metrics::Traffic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficView {
    /// Requests answered.
    pub requests: u64,
    /// Requests moved to another origin after a failure.
    pub origin_retries: u64,
    /// Purge orders applied.
    pub purges: u64,
    /// Body bytes sent from cached pages without a copy.
    pub zero_copy_bytes: u64,
    /// Every response body byte sent to clients (0 from an edge too old
    /// to report it).
    #[serde(default)]
    pub response_body_bytes: u64,
}

/// Whether one GeoDNS server answers with a region's edges.
#[derive(Debug, Serialize, Deserialize)]
pub struct DnsRegionView {
    /// The server (`ns1`).
    pub server: String,
    /// Its decision; `None` when it did not answer.
    pub up: Option<bool>,
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
    #[serde(default)]
    traffic: Option<TrafficView>,
    #[serde(default)]
    tiers: Option<TiersView>,
}

#[derive(Deserialize)]
struct CacheView {
    hit_ratio: f64,
}

/// An error answer: a status code and a sentence (also what the
/// supervisor refuses a partition with).
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

/// The supervisor, shared by the control API, the live view and the loop
/// that reaps children.
pub type Shared = Arc<Mutex<Supervisor>>;

/// The control routes over the running supervisor, unguarded: the caller
/// puts them behind `config::admin_access` with the live view's
/// ([`super::listener_routes`]).
pub fn routes(supervisor: Shared) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/config", get(running_config))
        .route("/regions/{region}/outage", post(outage))
        .route("/regions/{region}/restore", post(restore))
        .with_state(supervisor)
}

/// `GET /config`: the config file `up` was given and the one its roles
/// run, which `up --cluster` and `up --hosts` make from it; commands given
/// the same file use the roles' to reach the bus or the moved edges.
async fn running_config(State(supervisor): State<Shared>) -> axum::Json<RunningConfig> {
    let supervisor = supervisor.lock().await;
    let (given, running) = supervisor.running_config();
    axum::Json(RunningConfig {
        given: given.map(std::path::Path::to_path_buf),
        running: running.map(std::path::Path::to_path_buf),
    })
}

/// `GET /config`'s answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RunningConfig {
    /// The config file `up` was given; `None`: the embedded demo.
    pub given: Option<std::path::PathBuf>,
    /// The config file the roles run; `None`: the embedded demo.
    pub running: Option<std::path::PathBuf>,
}

async fn outage(
    State(supervisor): State<Shared>,
    Path(region): Path<String>,
    Query(query): Query<OutageQuery>,
) -> Result<axum::Json<Acted>, Failure> {
    let mut supervisor = supervisor.lock().await;
    if query.partition {
        let cut = supervisor.partition(&region, query.from.as_deref(), true)?;
        tracing::warn!(%region, %cut, "simulated partition");
        return Ok(axum::Json(Acted {
            processes: vec![cut],
        }));
    }
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
    let healed = supervisor.heal(&region)?;
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
    let processes: Vec<String> = healed
        .into_iter()
        .chain(stopped.iter().map(|&i| supervisor.roles[i].label.clone()))
        .collect();
    tracing::info!(%region, ?processes, "restored");
    Ok(axum::Json(Acted { processes }))
}

async fn status(State(supervisor): State<Shared>) -> axum::Json<Status> {
    axum::Json(gather(&supervisor).await)
}

/// The whole topology now: every process from the supervisor, and what
/// every GeoDNS server and edge says (asked without holding the lock).
pub async fn gather(supervisor: &Shared) -> Status {
    let (mut report, config, edge_admins, http) = {
        let supervisor = supervisor.lock().await;
        // Every region has its edges and an origin (`roles` makes them); a
        // missing one would be reported failed.
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
                        traffic: None,
                        disk: None,
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
                    dns_views: Vec::new(),
                }
            })
            .collect();
        let report = Status {
            geodns: Vec::new(),
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
            supervisor.config.clone(),
            edge_admins,
            supervisor.http.clone(),
        )
    };
    // Asked without holding the lock: a server may be slow or gone.
    let (views, edge_views) = tokio::join!(
        crate::dns_views::ask_all(&http, &config),
        futures::future::join_all(edge_admins.iter().map(|addr| edge_view(&http, *addr)))
    );
    report.dns_view_available = views.iter().any(|v| v.regions.is_some());
    for region in &mut report.regions {
        region.dns_views = views
            .iter()
            .map(|view| DnsRegionView {
                server: view.server.clone(),
                up: view.region_up(&region.region),
            })
            .collect();
        region.dns_view_up = agreed(region.dns_views.iter().filter_map(|v| v.up));
        for edge in &mut region.edges {
            edge.dns_view_up = agreed(
                views
                    .iter()
                    .filter_map(|view| view.edge_up(&region.region, edge.address)),
            );
        }
    }
    report.geodns = views;
    let edges = report.regions.iter_mut().flat_map(|r| r.edges.iter_mut());
    for (edge, view) in edges.zip(edge_views) {
        if let Ok(view) = view {
            edge.origins = Some(view.origins);
            edge.peers = Some(view.peers);
            edge.cache_hit_ratio = Some(view.cache.hit_ratio);
            edge.traffic = view.traffic;
            edge.disk = view.tiers.and_then(|tiers| tiers.disk);
        }
    }
    report
}

/// The one value all of `values` have; `None` when there are none or they
/// differ.
fn agreed(mut values: impl Iterator<Item = bool>) -> Option<bool> {
    let first = values.next()?;
    values.all(|v| v == first).then_some(first)
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
