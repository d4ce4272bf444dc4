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
//! The protocol work (parsing, TCP framing, truncation) is hickory-server's;
//! [`handler`] is the thin piece between it and the pure modules.

pub mod admin;
pub mod centroids;
pub mod geo;
pub mod handler;
pub mod health;
pub mod metrics;
pub mod steering;
pub mod zone;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use geo::GeoDatabase;
pub use handler::GeoDnsHandler;
pub use health::HealthView;
pub use metrics::DnsMetrics;
pub use steering::Steering;
pub use zone::Zone;

/// A TCP connection that sends no query for this long is closed, so idle
/// or slow clients cannot hold connections open.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Responses buffered per TCP connection before the writer waits.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Why GeoDNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum GeoDnsError {
    /// The geo database cannot be used.
    #[error(transparent)]
    Geo(#[from] geo::GeoError),
    /// The zone cannot be built.
    #[error(transparent)]
    Zone(#[from] zone::ZoneError),
    /// A listen address cannot be bound.
    #[error("cannot listen for {protocol} on {addr}: {source}")]
    Bind {
        /// UDP or TCP.
        protocol: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("DNS server failed: {0}")]
    Server(String),
}

/// Builds the handler for `config`: loads the geo database and the zone.
/// Steering reads edge health from `health`; answers are counted in `metrics`.
pub fn handler_for(
    config: &config::Config,
    health: Arc<HealthView>,
    metrics: Arc<DnsMetrics>,
) -> Result<GeoDnsHandler, GeoDnsError> {
    let geo = GeoDatabase::from_config(&config.geodns.geo_database)?;
    tracing::info!(database = geo.description(), "geo database loaded");
    let zone = Zone::from_config(config)?;
    Ok(GeoDnsHandler::new(
        zone,
        geo,
        Steering::from_config(config),
        health,
        config.health.fail_open,
        metrics,
    ))
}

/// Binds `config.geodns.listen` for UDP and TCP, starts health-checking
/// every edge, and serves until `shutdown` resolves. Everything is loaded
/// and checked before anything is bound.
pub async fn run(
    config: &config::Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GeoDnsError> {
    let health = HealthView::from_config(config);
    let region_names: Vec<String> = config.regions.iter().map(|r| r.name.clone()).collect();
    let metrics = Arc::new(
        DnsMetrics::new(&region_names, health.clone())
            .map_err(|e| GeoDnsError::Server(e.to_string()))?,
    );
    let handler = handler_for(config, health.clone(), metrics.clone())?;
    let addr = config.geodns.listen;
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|source| GeoDnsError::Bind {
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
    let admin_addr = config.geodns.admin_listen;
    let admin = tokio::net::TcpListener::bind(admin_addr)
        .await
        .map_err(|source| GeoDnsError::Bind {
            protocol: "HTTP",
            addr: admin_addr,
            source,
        })?;
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_server = axum::serve(admin, admin::router(health.clone(), metrics))
        .with_graceful_shutdown(async {
            let _ = admin_stopped.await;
        });
    tracing::info!("listening for HTTP on {admin_addr}");
    let admin_task = tokio::spawn(async move {
        if let Err(error) = admin_server.await {
            tracing::error!(%error, "admin listener failed");
        }
    });
    let (stop_checks, checks_stopped) = tokio::sync::oneshot::channel::<()>();
    let checks = tokio::spawn(health::run_checks(
        health,
        config.health.clone(),
        config.edge.health_path.clone(),
        async {
            let _ = checks_stopped.await;
        },
    ));
    let served = serve(handler, udp, tcp, shutdown).await;
    let _ = stop_checks.send(());
    let _ = stop_admin.send(());
    let _ = checks.await;
    let _ = admin_task.await;
    served
}

/// Serves DNS on already-bound sockets until `shutdown` resolves.
pub async fn serve(
    handler: GeoDnsHandler,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GeoDnsError> {
    let udp_addr = udp
        .local_addr()
        .map_err(|e| GeoDnsError::Server(e.to_string()))?;
    let tcp_addr = tcp
        .local_addr()
        .map_err(|e| GeoDnsError::Server(e.to_string()))?;
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    tracing::info!("listening for UDP on {udp_addr}");
    tracing::info!("listening for TCP on {tcp_addr}");
    shutdown.await;
    tracing::info!("shutting down");
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| GeoDnsError::Server(e.to_string()))
}
