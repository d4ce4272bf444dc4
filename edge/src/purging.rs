//! Applying a purge to the cache: the one path both an `POST /purge` on
//! the admin listener (a single host) and a purge read from the cluster
//! bus take; and the bus's side of an edge (`PurgeFeed`).

use crate::metrics::EdgeMetrics;
use crate::peers::Peers;
use crate::storage::MemoryStorage;
use crate::{host, key};
use cluster::feed::{Applying, Verified};
use cluster::health::{HealthReport, Vantage};
use cluster::purge::Purge;
use cluster::reports::RoleReport;
use pingora::cache::key::CacheHashKey;
use std::sync::Arc;
use tokio::sync::watch;

/// Removes (or, soft, marks stale) what `purge` names; how many objects,
/// or why it names something that is not a URL of this CDN. Nothing is
/// purged when one URL is unreadable.
pub fn apply(
    storage: &MemoryStorage,
    metrics: &EdgeMetrics,
    purge: &Purge,
) -> Result<usize, String> {
    let keys = keys_of(purge)?;
    let mut purged = 0;
    if purge.all {
        purged += storage.purge_all();
    }
    for key in keys {
        purged += usize::from(storage.purge_key(&key.primary_bin(), purge.soft));
    }
    for tag in &purge.tags {
        purged += storage.purge_tag(tag, purge.soft);
    }
    metrics.purged(purged);
    tracing::info!(
        purged,
        urls = purge.urls.len(),
        tags = purge.tags.len(),
        all = purge.all,
        soft = purge.soft,
        "purge"
    );
    Ok(purged)
}

/// The cache keys of an absolute URL: the same resource is stored once per
/// scheme (a request over HTTPS has its own entry), and purging a URL means
/// the resource, so both go.
fn url_keys(url: &str) -> Option<[pingora::cache::CacheKey; 2]> {
    let uri: http::Uri = url.parse().ok()?;
    uri.scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    let host = host::normalize(uri.authority()?.as_str())?;
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some([
        key::cache_key("http", &host, path),
        key::cache_key("https", &host, path),
    ])
}

/// How an edge takes part in a cluster: the bus it reads purges from, its
/// name there, whether its cache is verified, and what it reports.
#[derive(Debug, Clone)]
pub struct ClusterLink {
    /// `[cluster]`.
    pub bus: config::Cluster,
    /// Its name on the bus ([`cluster::edge_name`]).
    pub name: String,
    /// Its region.
    pub region: String,
    /// Its data-plane address.
    pub addr: std::net::SocketAddr,
    /// Whether its cache holds nothing purged on the bus.
    pub verified: Arc<Verified>,
    /// Its report on the bus; the edge keeps `verified` in it up to date,
    /// whoever runs the edge may change the rest (the config revision).
    pub report: Arc<watch::Sender<RoleReport>>,
}

/// Two links are the same settings when they name the same bus and edge:
/// the verification and the report are the running edge's state, not
/// settings (a cluster member compares settings to decide whether a
/// config revision needs a restart).
impl PartialEq for ClusterLink {
    fn eq(&self, other: &Self) -> bool {
        self.bus == other.bus && self.name == other.name
    }
}

impl ClusterLink {
    /// The link of the edge of `region` at `addr`.
    pub fn new(bus: &config::Cluster, region: &str, addr: std::net::SocketAddr) -> ClusterLink {
        let name = cluster::edge_name(region, addr);
        let (report, _) = watch::channel(RoleReport::new("edge", name.clone()));
        ClusterLink {
            bus: bus.clone(),
            name,
            region: region.to_owned(),
            addr,
            verified: Arc::new(Verified::new(bus.verified_for)),
            report: Arc::new(report),
        }
    }
}

impl ClusterLink {
    /// Whether the cache may be used as verified: at once while the lease
    /// holds; otherwise the cache may hold what the cluster purged while
    /// this edge was not reading the purge stream, so the request waits
    /// (at most `verified_for`) for the edge to catch up. `false`: serve,
    /// and say the hit is unverified.
    pub async fn cache_verified(&self, metrics: &EdgeMetrics) -> bool {
        if self.verified.holds() {
            return true;
        }
        metrics.catch_up_wait();
        self.verified.wait(self.bus.verified_for).await
    }
}

/// Follows the purge stream for as long as the edge runs; reports the
/// edge, and publishes what it sees of its region's other edges every
/// `health_interval` (GeoDNS counts it as a vantage point).
pub async fn follow(
    link: ClusterLink,
    storage: &'static MemoryStorage,
    metrics: Arc<EdgeMetrics>,
    peers: Arc<Peers>,
    health_interval: std::time::Duration,
) {
    let bus = match cluster::Bus::connect(&link.bus, &link.name, cluster::Connect::InBackground)
        .await
    {
        Ok(bus) => bus,
        Err(error) => {
            // Only a bad credentials file gets here (the connection itself
            // is retried in the background): the cache stays unverified.
            tracing::error!(%error, "cannot use the cluster bus; serving with an unverified cache");
            return;
        }
    };
    let keep = |sequence| storage.purges_applied_up_to(sequence);
    let position = cluster::feed::Position {
        resume_after: storage.resume_purges_after(),
        keep: &keep,
    };
    let feed = cluster::feed::follow(
        bus.clone(),
        link.name.clone(),
        &link.verified,
        position,
        |purge| match apply(storage, &metrics, purge) {
            Ok(purged) => Applying::Purged(purged),
            Err(reason) => Applying::Refused(reason),
        },
    );
    let reporting = cluster::reports::keep_reporting(bus.clone(), link.report.subscribe());
    let seeing = async {
        let mut ticks = tokio::time::interval(health_interval);
        loop {
            ticks.tick().await;
            let report = HealthReport {
                vantage: link.name.clone(),
                from: Vantage::Edge {
                    region: link.region.clone(),
                    addr: link.addr,
                },
                edges: peers.seen(),
            };
            if let Err(error) = cluster::health::publish(&bus, &report).await {
                tracing::debug!(%error, "cannot publish this edge's view of its peers");
            }
        }
    };
    let verification = async {
        loop {
            let verified = Some(link.verified.holds());
            link.report.send_if_modified(|report| {
                std::mem::replace(&mut report.verified, verified) != verified
            });
            tokio::time::sleep(link.bus.report_interval / 2).await;
        }
    };
    tokio::select! {
        _ = feed => {}
        _ = reporting => {}
        () = verification => {}
        () = seeing => {}
    }
}

/// Checks that every URL of `purge` can be purged (before publishing it).
pub fn check(purge: &Purge) -> Result<(), String> {
    keys_of(purge).map(drop)
}

/// The cache keys of every URL of `purge`, or which URL has none.
fn keys_of(purge: &Purge) -> Result<Vec<pingora::cache::CacheKey>, String> {
    let mut keys = Vec::with_capacity(purge.urls.len() * 2);
    for url in &purge.urls {
        let both = url_keys(url).ok_or_else(|| format!("not an absolute http(s) URL: {url:?}"))?;
        keys.extend(both);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keys_match_request_keys_for_both_schemes() {
        let [http, https] = url_keys("http://CDN.Meridian.Test:8080/assets/1k.bin?x=1").unwrap();
        let from_request = key::cache_key("http", "cdn.meridian.test", "/assets/1k.bin?x=1");
        assert_eq!(http.primary_bin(), from_request.primary_bin());
        let from_tls = key::cache_key("https", "cdn.meridian.test", "/assets/1k.bin?x=1");
        assert_eq!(https.primary_bin(), from_tls.primary_bin());
        assert!(url_keys("/relative").is_none());
        assert!(url_keys("ftp://host/x").is_none());
    }
}
