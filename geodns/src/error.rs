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
    /// The config (on start, or on a reload) has no server of this
    /// process's name.
    #[error("the config has no GeoDNS server named {name:?} (it has {known})")]
    NoSuchServer {
        /// The process's server.
        name: String,
        /// The config's servers, by name.
        known: String,
    },
}

impl GeoDnsError {
    /// The error for a config without server `name`.
    pub fn no_such_server(config: &config::Config, name: &str) -> Self {
        let known: Vec<&str> = config
            .geodns
            .servers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        GeoDnsError::NoSuchServer {
            name: name.to_owned(),
            known: known.join(", "),
        }
    }
}

/// The index in `config.geodns.servers` of the server called `name`.
pub fn server_index(config: &config::Config, name: &str) -> Result<usize, GeoDnsError> {
    config
        .geodns
        .servers
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| GeoDnsError::no_such_server(config, name))
}
