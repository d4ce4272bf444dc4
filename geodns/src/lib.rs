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

pub mod centroids;
pub mod geo;
pub mod handler;
pub mod steering;
pub mod zone;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use geo::GeoDatabase;
pub use handler::GeoDnsHandler;
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
pub fn handler_for(config: &config::Config) -> Result<GeoDnsHandler, GeoDnsError> {
    let geo = GeoDatabase::from_config(&config.geodns.geo_database)?;
    tracing::info!(database = geo.description(), "geo database loaded");
    let zone = Zone::from_config(config)?;
    Ok(GeoDnsHandler::new(zone, geo, Steering::from_config(config)))
}

/// Binds `config.geodns.listen` for UDP and TCP and serves until `shutdown`
/// resolves. Everything is loaded and checked before anything is bound.
pub async fn run(
    config: &config::Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GeoDnsError> {
    let handler = handler_for(config)?;
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
    serve(handler, udp, tcp, shutdown).await
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
