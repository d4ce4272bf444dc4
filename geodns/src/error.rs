//! Why GeoDNS could not start or reload, in one enum so that every module
//! that loads or binds reports through it (the crate root only re-exports
//! it, and no module has to reach up to the root for it).

use std::net::SocketAddr;

/// Why GeoDNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum GeoDnsError {
    /// The geo database cannot be used.
    #[error(transparent)]
    Geo(#[from] crate::geo::GeoError),
    /// The config (re-read on reload) is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
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
