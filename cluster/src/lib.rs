//! The cluster bus: how the roles of a multi-host deployment hear of
//! purges, config revisions and each other, on NATS with JetStream.
//!
//! Meridian does not build its own replicated log: JetStream keeps the
//! purges in a stream (file-backed, replicated when the servers are
//! clustered) that every edge reads through its own durable consumer, so an
//! edge that was away replays what it missed; the config is a key in a
//! key-value bucket every role watches; every role keeps its report (what
//! it is, which config revision it runs) in another bucket whose entries
//! expire, so the bucket's keys are the roles alive.
//!
//! - [`Bus`]: one connection, with the deployment's credentials and TLS.
//! - [`purge`]: a purge order, publishing one and waiting for the edges.
//! - [`feed`]: an edge's side: applying every purge in order, and whether
//!   its cache can be trusted now ([`feed::Verified`]).
//! - [`health`]: what each vantage point sees of the edges (GeoDNS's
//!   health quorum over the bus).
//! - [`reports`]: what each role says about itself, and who is alive.
//! - [`config_store`]: the config revisions.

mod buckets;
pub mod config_store;
pub mod feed;
pub mod health;
pub mod purge;
pub mod reports;

use async_nats::jetstream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The stream purges are kept in.
pub const PURGE_STREAM: &str = "MERIDIAN_PURGES";
/// The subject purges are published on.
pub const PURGE_SUBJECT: &str = "meridian.purge";
/// The subject edges announce an applied purge on (plain NATS, not kept).
pub const APPLIED_SUBJECT: &str = "meridian.applied";
/// The bucket of config revisions.
pub const CONFIG_BUCKET: &str = "meridian_config";
/// The bucket of role reports.
pub const ROLES_BUCKET: &str = "meridian_roles";

/// How long a connection attempt may take before the bus counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the bus could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No NATS server answered.
    #[error("cannot reach the cluster bus at {urls}: {reason}")]
    Unreachable {
        /// The configured servers.
        urls: String,
        /// What went wrong.
        reason: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read cluster.credentials_file {}: {source}", file.display())]
    Credentials {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A JetStream request failed.
    #[error("cluster bus: {0}")]
    JetStream(String),
}

impl BusError {
    pub(crate) fn jetstream(what: &str, error: impl std::fmt::Display) -> BusError {
        BusError::JetStream(format!("{what}: {error}"))
    }
}

/// When [`Bus::connect`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Once connected, or with [`BusError::Unreachable`]: for commands,
    /// which should fail at once when the bus is down.
    Now,
    /// At once; the client keeps trying in the background: for roles,
    /// which serve without the bus.
    InBackground,
}

/// A connection to the bus.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    settings: Arc<config::Cluster>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("nats_urls", &self.settings.nats_urls)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects to the deployment's NATS servers as `name` (shown in the
    /// servers' connection lists).
    pub async fn connect(
        settings: &config::Cluster,
        name: &str,
        when: Connect,
    ) -> Result<Bus, BusError> {
        let mut options = match &settings.credentials_file {
            Some(file) => async_nats::ConnectOptions::with_credentials_file(file)
                .await
                .map_err(|source| BusError::Credentials {
                    file: file.clone(),
                    source,
                })?,
            None => async_nats::ConnectOptions::new(),
        }
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        // A role never gives up on the bus: it serves without it and
        // catches up when it is back.
        .max_reconnects(None);
        if let Some(ca) = &settings.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &settings.client_identity {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if when == Connect::InBackground {
            options = options.retry_on_initial_connect();
        }
        let urls = settings.nats_urls.join(", ");
        let addrs = settings
            .nats_urls
            .iter()
            .map(|url| url.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BusError::Unreachable {
                urls: urls.clone(),
                reason: e.to_string(),
            })?;
        // A login in a URL (`nats://user:password@host`, or
        // `nats://token@host`) is what NATS clients take it for; this
        // client only reads it from its options.
        if let Some(addr) = addrs.iter().find(|a| a.username().is_some()) {
            let user = addr.username().unwrap_or_default().to_owned();
            options = match addr.password() {
                Some(password) => options.user_and_password(user, password.to_owned()),
                None => options.token(user),
            };
        }
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(addrs))
            .await
            .map_err(|_| BusError::Unreachable {
                urls: urls.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| BusError::Unreachable {
                urls,
                reason: e.to_string(),
            })?;
        let jetstream = jetstream::new(client.clone());
        Ok(Bus {
            client,
            jetstream,
            settings: Arc::new(settings.clone()),
        })
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The `[cluster]` settings it was made with.
    pub fn settings(&self) -> &config::Cluster {
        &self.settings
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Sends everything buffered; commands call it before they exit.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client
            .flush()
            .await
            .map_err(|e| BusError::jetstream("flush", e))
    }
}

/// The name an edge has on the bus: in its report, its purge consumer's
/// name and its acknowledgements.
pub fn edge_name(region: &str, addr: std::net::SocketAddr) -> String {
    format!("edge {region} {addr}")
}

/// A name the bus accepts as a key or a consumer name: letters, digits,
/// `-` and `_` (everything else becomes `-`).
pub fn bus_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bus_names_keep_only_safe_characters() {
        assert_eq!(
            super::bus_name("edge eu-west 127.0.2.1:8080"),
            "edge-eu-west-127-0-2-1-8080"
        );
        assert_eq!(super::bus_name("[::1]:80>*"), "---1--80--");
    }
}
