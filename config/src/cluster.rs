//! `[cluster]`: the message bus (NATS with JetStream) that carries purges,
//! config revisions and role reports between hosts. Without the section,
//! Meridian runs as a single host: purges are HTTP requests to each edge
//! and config changes are files and SIGHUP.

use crate::fields::{TimeoutMs, Within};
use crate::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[cluster]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterFile {
    /// The NATS servers, e.g. `["nats://10.0.0.5:4222"]`; a client
    /// connects to one and fails over to the others.
    pub nats_urls: Vec<String>,
    /// A NATS credentials file (user JWT and NKey seed), relative to the
    /// config file.
    pub credentials_file: Option<String>,
    /// PEM bundle the NATS servers' certificates are verified against;
    /// setting it requires TLS.
    pub ca_file: Option<String>,
    /// A client certificate and its key (PEM), for servers that verify
    /// clients; both or neither.
    pub client_cert_file: Option<String>,
    /// The client certificate's private key.
    pub client_key_file: Option<String>,
    /// How long `meridian purge` waits for every live edge to apply a purge.
    #[serde(default = "default_purge_timeout")]
    pub purge_timeout_ms: TimeoutMs,
    /// How long an edge trusts its cache after it last saw that it had
    /// applied every purge on the bus; below `purge_timeout_ms`.
    #[serde(default = "default_verified_for")]
    pub verified_for_ms: TimeoutMs,
    /// Where each role keeps the last config revision it applied, so it
    /// starts without the bus; relative to the config file.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// How often each role reports itself (role, revision) on the bus; a
    /// role silent for three times this long is taken as gone.
    #[serde(default = "default_report_interval")]
    pub report_interval_ms: Within<100, 60_000>,
    /// How many NATS servers keep a copy of the purge stream and the
    /// buckets: 1 for one server, 3 for the cluster of three (one per
    /// region) a deployment should run.
    #[serde(default = "default_replicas")]
    pub replicas: Within<1, 5>,
}

fn default_replicas() -> Within<1, 5> {
    Within::new_unchecked(1)
}

fn default_purge_timeout() -> TimeoutMs {
    Within::new_unchecked(2_000)
}

fn default_verified_for() -> TimeoutMs {
    Within::new_unchecked(1_000)
}

fn default_state_dir() -> String {
    "/var/lib/meridian".to_owned()
}

fn default_report_interval() -> Within<100, 60_000> {
    Within::new_unchecked(1_000)
}

/// The message bus every role of a multi-host deployment uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The NATS servers (`nats://` or `tls://` URLs, `host:port`).
    pub nats_urls: Vec<String>,
    /// NATS credentials (JWT and seed), if the servers require them.
    pub credentials_file: Option<PathBuf>,
    /// Authorities the servers' certificates are checked against; TLS is
    /// required when set.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// How long `meridian purge` waits for acknowledgements.
    pub purge_timeout: Duration,
    /// How long an edge's cache stays verified after the edge last saw it
    /// had applied every purge (always shorter than `purge_timeout`, so an
    /// edge that did not acknowledge a purge in time never serves from its
    /// cache before it has caught up).
    pub verified_for: Duration,
    /// Where roles keep the last applied config revision.
    pub state_dir: PathBuf,
    /// How often a role reports itself on the bus.
    pub report_interval: Duration,
    /// Copies of the purge stream and the buckets the servers keep.
    pub replicas: usize,
}

/// Lowers `[cluster]`; `path` resolves file names against the config's
/// directory.
pub(crate) fn lower(
    file: ClusterFile,
    source: &ConfigSource,
    path: impl Fn(&str) -> PathBuf,
) -> Result<Cluster, ConfigError> {
    let error = |key: &str, reason: String| ConfigError::new(source, key, reason);
    if file.nats_urls.is_empty() {
        return Err(error(
            "cluster.nats_urls",
            "lists no NATS server; remove [cluster] to run as a single host".into(),
        ));
    }
    for (i, url) in file.nats_urls.iter().enumerate() {
        check_nats_url(url).map_err(|reason| error(&format!("cluster.nats_urls[{i}]"), reason))?;
    }
    let client_identity = match (&file.client_cert_file, &file.client_key_file) {
        (Some(cert), Some(key)) => Some((path(cert), path(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(error(
                "cluster.client_key_file",
                "is required with cluster.client_cert_file".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(error(
                "cluster.client_cert_file",
                "is required with cluster.client_key_file".into(),
            ));
        }
    };
    let purge_timeout = Duration::from_millis(file.purge_timeout_ms.get());
    let verified_for = Duration::from_millis(file.verified_for_ms.get());
    if verified_for >= purge_timeout {
        return Err(error(
            "cluster.verified_for_ms",
            format!(
                "must be below cluster.purge_timeout_ms ({} ms): an edge that has not \
                 acknowledged a purge when `meridian purge` gives up must no longer trust its cache",
                purge_timeout.as_millis()
            ),
        ));
    }
    if file.state_dir.is_empty() {
        return Err(error("cluster.state_dir", "is empty".into()));
    }
    Ok(Cluster {
        nats_urls: file.nats_urls,
        credentials_file: file.credentials_file.as_deref().map(&path),
        ca_file: file.ca_file.as_deref().map(&path),
        client_identity,
        purge_timeout,
        verified_for,
        state_dir: path(&file.state_dir),
        report_interval: Duration::from_millis(file.report_interval_ms.get()),
        replicas: usize::try_from(file.replicas.get()).unwrap_or(1),
    })
}

/// A NATS server URL: `nats://` or `tls://` (or a bare `host:port`, which
/// NATS clients take as `nats://`), with a host and a port.
fn check_nats_url(url: &str) -> Result<(), String> {
    let rest = match url.split_once("://") {
        Some(("nats" | "tls", rest)) => rest,
        Some((scheme, _)) => return Err(format!("{url:?}: scheme {scheme:?} is not nats or tls")),
        None => url,
    };
    let Some((host, port)) = nats_authority(rest).rsplit_once(':') else {
        return Err(format!(
            "{url:?} has no port (NATS listens on 4222 by default)"
        ));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("{url:?} is not host:port"));
    }
    Ok(())
}

/// The `host:port` of a NATS server URL: without its scheme, its login
/// (`user:password@`, `token@`) and a trailing `/`.
pub fn nats_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    authority.trim_end_matches('/')
}

impl Cluster {
    /// The file a role keeps its last applied config revision in.
    pub fn applied_config_file(&self, role: &str) -> PathBuf {
        self.state_dir.join(format!("{role}.applied.toml"))
    }

    /// The first NATS server (there is always one): where `up --cluster`
    /// runs the bus.
    pub fn first_server(&self) -> &str {
        self.nats_urls.first().map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::check_nats_url;
    use crate::{Config, ConfigSource, DEMO_TOML};

    fn with_cluster(section: &str) -> Result<Config, String> {
        let text = format!("{DEMO_TOML}\n[cluster]\n{section}\n");
        Config::from_toml(&text, ConfigSource::File("/etc/meridian/m.toml".into()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_cluster_section_is_read_with_its_defaults() {
        let config = with_cluster(r#"nats_urls = ["nats://10.0.0.5:4222"]"#).unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.nats_urls, ["nats://10.0.0.5:4222"]);
        assert_eq!(cluster.purge_timeout, std::time::Duration::from_secs(2));
        assert_eq!(cluster.verified_for, std::time::Duration::from_secs(1));
        assert_eq!(cluster.state_dir, std::path::Path::new("/var/lib/meridian"));
        let relative = with_cluster(
            "nats_urls = [\"tls://n:4443\"]\nca_file = \"ca.pem\"\nstate_dir = \"state\"",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            relative.ca_file.unwrap(),
            std::path::Path::new("/etc/meridian/ca.pem")
        );
        assert_eq!(
            relative.state_dir,
            std::path::Path::new("/etc/meridian/state")
        );
        assert!(
            Config::from_toml(DEMO_TOML, ConfigSource::Embedded)
                .unwrap()
                .cluster
                .is_none()
        );
    }

    #[test]
    fn bad_cluster_sections_name_the_key() {
        for (section, key) in [
            ("nats_urls = []", "cluster.nats_urls"),
            ("nats_urls = [\"http://x:1\"]", "cluster.nats_urls[0]"),
            (
                "nats_urls = [\"n:4222\"]\npurge_timeout_ms = 1000\nverified_for_ms = 1000",
                "cluster.verified_for_ms",
            ),
            (
                "nats_urls = [\"n:4222\"]\nclient_cert_file = \"c.pem\"",
                "cluster.client_key_file",
            ),
            (
                "nats_urls = [\"n:4222\"]\nreport_interval_ms = 5",
                "cluster.report_interval_ms",
            ),
            ("nats_urls = [\"n:4222\"]\nbus = 1", "cluster"),
        ] {
            let error = with_cluster(section).unwrap_err();
            assert!(error.contains(key), "{section}: {error}");
            assert!(error.contains("/etc/meridian/m.toml"), "{error}");
        }
    }

    #[test]
    fn nats_urls_need_a_known_scheme_a_host_and_a_port() {
        for good in [
            "nats://127.0.0.1:4222",
            "tls://nats.example:4443",
            "10.0.0.5:4222",
            "nats://user:secret@10.0.0.5:4222",
        ] {
            assert_eq!(check_nats_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://x:4222",
            "nats://x",
            "nats://:4222",
            "nats://x:0",
            "nats://x:port",
        ] {
            assert!(check_nats_url(bad).is_err(), "{bad}");
        }
    }
}
