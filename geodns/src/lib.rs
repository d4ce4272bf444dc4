//! GeoDNS: the authoritative DNS server that steers clients to regions.
//!
//! It answers for one zone (`meridian.test.` in the demo). Its steered names
//! (`cdn.meridian.test`) are answered with the edge addresses of the region
//! nearest the client: the EDNS Client Subnet address when the query carries
//! one, else the query's source address, located with a GeoIP2-schema
//! database ([`geo`]) and ranked by great-circle distance ([`steering`]).
//! Everything else in the zone is static ([`zone`]); names outside it are
//! refused, because this is an authoritative server, never a resolver.
//!
//! The database is read once per load into a [`table`] of every address's
//! region order (with overrides applied), which also gives the ECS scope.
//! A load produces a [`Snapshot`]; SIGHUP builds a new one and swaps it in
//! ([`reload`]) without dropping a query.
//!
//! UDP replies can be rate limited per client network ([`rate_limit`]),
//! against reflection attacks; TCP replies never are.
//!
//! The protocol work (parsing, TCP framing) is hickory-server's; [`handler`]
//! is the thin piece between it and the pure modules ([`answer`]). UDP
//! datagrams are read by our own socket loops ([`udp`]), and each goes
//! through one pipeline ([`responder`]): rate limit, the per-worker answer
//! cache, the handler for what the cache has not seen, and the slip.

pub mod admin;
pub mod answer;
mod answer_cache;
mod ecs;
pub mod error;
pub mod explain;
pub mod flows;
pub mod geo;
pub mod handler;
pub mod health;
pub mod live;
pub mod metrics;
pub mod rate_limit;
pub mod reload;
pub mod responder;
pub mod snapshot;
pub mod steering;
pub mod table;
#[cfg(test)]
mod testing;
pub mod udp;
pub mod vantage;
pub mod wire;
pub mod zone;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use error::GeoDnsError;
pub use geo::{GeoDatabase, LoadLimit};
pub use handler::GeoDnsHandler;
pub use health::HealthView;
pub use metrics::DnsMetrics;
pub use snapshot::{Checked, Live, Snapshot, check};
pub use steering::Steering;
pub use table::GeoTable;
pub use zone::Zone;

/// A TCP connection that sends no query for this long is closed, so idle
/// or slow clients cannot hold connections open.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Responses buffered per TCP connection before the writer waits.
const TCP_RESPONSE_BUFFER: usize = 32;

/// How long the admin listener's open connections get to finish at
/// shutdown (a live view whose reader stalled would hold it for ever).
const ADMIN_STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs GeoDNS server `server` (a name from `config.geodns.servers`):
/// binds its listen address for UDP and TCP, starts health-checking every
/// edge and hearing from the other vantage points, reloads on SIGHUP, and
/// serves until `shutdown` resolves. Everything is loaded and checked
/// before anything is bound.
///
/// `requests`, if given, asks for reloads from a given source: a member of
/// a cluster sends the revision it has just written to its applied file
/// (and a SIGHUP then reloads that file too, the live config's source).
pub async fn run(
    config: &config::Config,
    server: &str,
    requests: Option<tokio::sync::mpsc::Receiver<config::ConfigSource>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GeoDnsError> {
    let me = error::server_index(config, server)?;
    let metrics = Arc::new(DnsMetrics::new().map_err(|e| GeoDnsError::Server(e.to_string()))?);
    // From here on SIGHUP means "reload", no longer "terminate".
    let mut hangups = reload::Hangups::listen().map_err(|e| GeoDnsError::Server(e.to_string()))?;
    if let Some(requests) = requests {
        hangups = hangups.with_requests(requests);
    }
    let snapshot = Snapshot::load(config.clone(), &metrics)?;
    let live = Arc::new(Live::from_pointee(snapshot));
    let this = &config.geodns.servers[me];
    tracing::info!(
        server = %this.name,
        servers = config.geodns.servers.len(),
        "GeoDNS server {} of the config",
        this.name
    );
    let addr = this.listen;
    let udp = std::net::UdpSocket::bind(addr).map_err(|source| GeoDnsError::Bind {
        protocol: "UDP",
        addr,
        source,
    })?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| GeoDnsError::Bind {
            protocol: "TCP",
            addr,
            source,
        })?;
    let admin_addr = this.admin_listen;
    let admin = tokio::net::TcpListener::bind(admin_addr)
        .await
        .map_err(|source| GeoDnsError::Bind {
            protocol: "HTTP",
            addr: admin_addr,
            source,
        })?;
    let admin_local = admin.local_addr().map_err(|source| GeoDnsError::Bind {
        protocol: "HTTP",
        addr: admin_addr,
        source,
    })?;
    let (stop_view, view_stopped) = stop_switch();
    let view = live::server::start(
        live.clone(),
        metrics.clone(),
        this.name.clone(),
        admin_local,
        view_stopped,
    );
    let admin_routes = admin::router(
        live.clone(),
        metrics.clone(),
        view,
        admin_local,
        config.geodns.admin_token.as_deref(),
    );
    let (stop_admin, admin_stopped) = stop_switch();
    let admin = axum::serve::ListenerExt::tap_io(admin, live::bound_send_buffer);
    let admin_server = axum::serve(admin, admin_routes).with_graceful_shutdown(admin_stopped);
    tracing::info!("listening for HTTP on {admin_addr}");
    let mut admin_task = tokio::spawn(async move {
        if let Err(error) = admin_server.await {
            tracing::error!(%error, "admin listener failed");
        }
    });
    let (stop_upkeep, upkeep_stopped) = stop_switch();
    let upkeep = tokio::spawn(reload::upkeep(
        live.clone(),
        metrics.clone(),
        this.name.clone(),
        hangups,
        upkeep_stopped,
    ));
    let served = serve(GeoDnsHandler::new(live, metrics), udp, tcp, shutdown).await;
    let _ = stop_upkeep.send(());
    // The live view's streams end with its collector; a connection whose
    // reader stalled gets a bound, then is dropped with the listener.
    let _ = stop_view.send(());
    let _ = stop_admin.send(());
    let _ = upkeep.await;
    if tokio::time::timeout(ADMIN_STOP_GRACE, &mut admin_task)
        .await
        .is_err()
    {
        admin_task.abort();
    }
    served
}

/// Serves DNS on already-bound sockets until `shutdown` resolves: UDP on
/// one worker thread per core ([`udp`]), TCP through hickory-server.
pub async fn serve(
    handler: GeoDnsHandler,
    udp: std::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GeoDnsError> {
    let server_error = |e: std::io::Error| GeoDnsError::Server(e.to_string());
    let udp_addr = udp.local_addr().map_err(server_error)?;
    let tcp_addr = tcp.local_addr().map_err(server_error)?;
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let udp_workers =
        udp::UdpWorkers::spawn(udp, handler.clone(), workers).map_err(server_error)?;
    let mut server = hickory_server::Server::new(handler);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    tracing::info!("listening for UDP on {udp_addr}");
    tracing::info!("listening for TCP on {tcp_addr}");
    shutdown.await;
    tracing::info!("shutting down");
    tokio::task::spawn_blocking(move || udp_workers.stop())
        .await
        .map_err(|e| GeoDnsError::Server(e.to_string()))?;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| GeoDnsError::Server(e.to_string()))
}

/// A stop switch: the future resolves once the sender is fired or dropped.
fn stop_switch() -> (
    tokio::sync::oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (fire, fired) = tokio::sync::oneshot::channel::<()>();
    (fire, async move {
        let _ = fired.await;
    })
}
