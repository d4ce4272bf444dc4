//! Reloading the config and the geo database on SIGHUP, without dropping
//! or mis-answering a query.
//!
//! A reload reads the config file again (and the database it names) and
//! builds a whole new [`Snapshot`] on a blocking thread while the old one
//! keeps answering; then it stops the old health checks, carries the health
//! of every edge that remains over to the new view, swaps the snapshot in
//! with one atomic store, and starts checking the new view. A query is
//! answered from the snapshot it started with, entirely.
//!
//! A config or database that does not load is refused: the reason is logged,
//! `meridian_dns_reload_failures_total` counts it, and the running snapshot
//! stays. The listen addresses are bound once; a reload that changes them
//! says so and applies everything else.

use crate::GeoDnsError;
use crate::health::Checks;
use crate::metrics::DnsMetrics;
use crate::snapshot::{Live, Snapshot};
use std::future::Future;
use std::sync::Arc;

/// SIGHUP deliveries, once [`Hangups::listen`] has replaced the default
/// action (terminate) with "reload".
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Starts catching SIGHUP.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Hangups {
                signal: Some(signal(SignalKind::hangup())?),
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Hangups {})
        }
    }

    /// No signals: reloads happen only when asked through [`Reloader`].
    pub fn none() -> Self {
        Hangups {
            #[cfg(unix)]
            signal: None,
        }
    }

    /// The next SIGHUP; never, without one.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Keeps GeoDNS's background work going until `shutdown`: the health checks
/// of the current snapshot, and a reload on every SIGHUP.
pub async fn upkeep(
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    mut hangups: Hangups,
    shutdown: impl Future<Output = ()>,
) {
    let mut reloader = Reloader::start(live, metrics);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                // The outcome is logged and counted inside.
                let _ = reloader.reload().await;
            }
        }
    }
    reloader.stop().await;
}

/// Owns the health checks of the live snapshot and replaces the snapshot.
pub struct Reloader {
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    checks: Option<Checks>,
}

impl Reloader {
    /// Starts health-checking the edges of the snapshot `live` holds.
    pub fn start(live: Arc<Live>, metrics: Arc<DnsMetrics>) -> Self {
        let current = live.load_full();
        let checks = Checks::start(current.health.clone(), &current.config);
        Reloader {
            live,
            metrics,
            checks: Some(checks),
        }
    }

    /// Reloads the config from where the live one came from. On failure
    /// the live snapshot stays, and the error says why.
    pub async fn reload(&mut self) -> Result<(), GeoDnsError> {
        let old = self.live.load_full();
        let source = old.config.source.clone();
        let metrics = self.metrics.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let config = match &source {
                config::ConfigSource::File(path) => config::Config::load(path)?,
                config::ConfigSource::Embedded => config::Config::demo(),
            };
            Snapshot::load(config, &metrics)
        })
        .await
        .map_err(|e| GeoDnsError::Server(format!("the reload task failed: {e}")))
        .and_then(|loaded| loaded);
        let new = match loaded {
            Ok(new) => new,
            Err(error) => {
                self.metrics.reload_failed();
                tracing::error!(
                    %error,
                    "reload refused; still serving the configuration loaded before"
                );
                return Err(error);
            }
        };
        for (key, was, now) in [
            (
                "geodns.listen",
                old.config.geodns.listen,
                new.config.geodns.listen,
            ),
            (
                "geodns.admin_listen",
                old.config.geodns.admin_listen,
                new.config.geodns.admin_listen,
            ),
        ] {
            if was != now {
                tracing::warn!(
                    "{key} changed from {was} to {now}: that takes a restart; everything else is reloaded"
                );
            }
        }
        if old.config.geodns.admin_token != new.config.geodns.admin_token {
            tracing::warn!(
                "geodns.admin_token changed: that takes a restart; the admin listener keeps the token it started with"
            );
        }
        // No prober may write into the old view after its states are copied.
        if let Some(checks) = self.checks.take() {
            checks.stop().await;
        }
        new.health.carry_over(&old.health);
        let health = new.health.clone();
        let regions = new.config.region_names().join(", ");
        let config = new.config.clone();
        self.live.store(Arc::new(new));
        self.checks = Some(Checks::start(health, &config));
        self.metrics.reloaded();
        tracing::info!(source = %config.source, %regions, "configuration reloaded");
        Ok(())
    }

    /// Stops the health checks.
    pub async fn stop(mut self) {
        if let Some(checks) = self.checks.take() {
            checks.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn at(live: &Live, ip: &str) -> Vec<usize> {
        live.load()
            .table
            .decide(ip.parse::<IpAddr>().unwrap())
            .order
            .to_vec()
    }

    #[tokio::test]
    async fn a_reload_swaps_everything_and_a_bad_one_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("geodns-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meridian.toml");
        // Long health intervals: the edges do not exist, and this test is
        // not about their probes.
        let base = config::DEMO_TOML.replace("interval_ms = 500", "interval_ms = 300000");
        std::fs::write(&path, &base).unwrap();
        let metrics = Arc::new(DnsMetrics::new().unwrap());
        let config = config::Config::load(&path).unwrap();
        let live = Arc::new(Live::from_pointee(
            Snapshot::load(config, &metrics).unwrap(),
        ));
        let mut reloader = Reloader::start(live.clone(), metrics.clone());
        live.load().health.set_edge(0, 0, false);
        assert_eq!(at(&live, "81.2.69.1"), [1, 0, 2]);

        // GB now goes to ap-southeast first; eu-west's edge moves.
        let changed = base.replace("127.0.2.1", "127.0.2.5").replacen(
            "[health]",
            "[geodns.overrides]\ncountries = { GB = [\"ap-southeast\"] }\n\n[health]",
            1,
        );
        std::fs::write(&path, &changed).unwrap();
        reloader.reload().await.unwrap();
        assert_eq!(at(&live, "81.2.69.1"), [2, 1, 0]);
        let snapshot = live.load();
        assert!(!snapshot.health.edge_up(0, 0), "us-east's edge stays down");
        assert!(snapshot.health.edge_up(1, 0), "the moved edge starts up");
        assert!(
            metrics
                .render(&snapshot.health)
                .contains("meridian_dns_reloads_total 1")
        );

        // Broken: refused, and nothing changes.
        std::fs::write(
            &path,
            changed.replace("latitude = 53.35", "latitude = 153.35"),
        )
        .unwrap();
        let error = reloader.reload().await.unwrap_err();
        assert!(error.to_string().contains("region[1].latitude"), "{error}");
        assert_eq!(at(&live, "81.2.69.1"), [2, 1, 0]);
        // A database that is not one: refused too.
        let bad_db = dir.join("bad.mmdb");
        std::fs::write(&bad_db, b"not a database").unwrap();
        std::fs::write(
            &path,
            changed.replace("geo_database = \"embedded\"", "geo_database = \"bad.mmdb\""),
        )
        .unwrap();
        let error = reloader.reload().await.unwrap_err();
        assert!(error.to_string().contains("bad.mmdb"), "{error}");
        assert_eq!(at(&live, "81.2.69.1"), [2, 1, 0]);
        let text = metrics.render(&live.load().health);
        assert!(
            text.contains("meridian_dns_reload_failures_total 2"),
            "{text}"
        );
        reloader.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
