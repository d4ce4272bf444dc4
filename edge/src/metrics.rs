//! The edge's counters: what its cache did and what its origins did.
//!
//! Counted once per request, at its end; every counter is created up front
//! so counting is an atomic add. Rendered as Prometheus text on the admin
//! listener, and summarized (hit ratio) for `meridian status`.

use crate::cache_status::{CacheOutcome, ForwardReason};
use crate::storage::MemoryStorage;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry,
};
use std::time::Duration;

mod tiers;

/// The edge's metrics.
pub struct EdgeMetrics {
    registry: Registry,
    hits: IntCounter,
    stale_hits: IntCounter,
    misses: IntCounter,
    stale: IntCounter,
    revalidated: IntCounter,
    uncacheable: IntCounter,
    bypass: IntCounter,
    other: IntCounter,
    coalesced: IntCounter,
    fast_path_hits: IntCounter,
    origin_latency: Histogram,
    evictions: IntGauge,
    variant_evictions: IntGauge,
    abandoned_fills: IntGauge,
    /// `[1xx..5xx]`, index = status / 100 - 1.
    responses: Vec<IntCounter>,
    origin_retries: IntCounter,
    purged: IntCounter,
    purges: IntCounter,
    catch_up_waits: IntCounter,
    unverified_hits: IntCounter,
    verified: IntGauge,
    objects: IntGauge,
    bytes: IntGauge,
    zero_copy_bytes: IntCounter,
    tiers: tiers::TierGauges,
    response_body_bytes: IntCounter,
    /// By [`PeerFillSent`], in its order.
    peer_fills_sent: Vec<IntCounter>,
    /// By [`PeerFillReceived`], in its order.
    peer_fills_received: Vec<IntCounter>,
}

/// How a peer fill this edge sent (see [`crate::peers`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFillSent {
    /// The peer answered (not with a 5xx).
    Filled,
    /// The peer answered with a 5xx.
    ServerError,
    /// No answer: the connection or the request failed before the
    /// response's head.
    Failed,
    /// The peer's response broke off after its head.
    Broken,
}

impl PeerFillSent {
    const ALL: [PeerFillSent; 4] = [
        PeerFillSent::Filled,
        PeerFillSent::ServerError,
        PeerFillSent::Failed,
        PeerFillSent::Broken,
    ];

    fn label(self) -> &'static str {
        match self {
            PeerFillSent::Filled => "filled",
            PeerFillSent::ServerError => "server-error",
            PeerFillSent::Failed => "failed",
            PeerFillSent::Broken => "broken",
        }
    }
}

/// How a peer fill this edge received (as an object's owner) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFillReceived {
    /// Served from this edge's cache.
    Hit,
    /// Fetched from an origin (once for every edge that asked together).
    Fetched,
    /// Answered with a 5xx, or not at all.
    Failed,
    /// Answered by this edge itself (an unknown host, say).
    Local,
    /// Marked as a peer fill, from an address that is no peer's: refused
    /// as a loop.
    Refused,
}

impl PeerFillReceived {
    const ALL: [PeerFillReceived; 5] = [
        PeerFillReceived::Hit,
        PeerFillReceived::Fetched,
        PeerFillReceived::Failed,
        PeerFillReceived::Local,
        PeerFillReceived::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            PeerFillReceived::Hit => "hit",
            PeerFillReceived::Fetched => "fetched",
            PeerFillReceived::Failed => "failed",
            PeerFillReceived::Local => "local",
            PeerFillReceived::Refused => "refused",
        }
    }
}

/// The cache summary `meridian status` shows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CacheSummary {
    /// Requests answered from cache.
    pub hits: u64,
    /// Cacheable requests that went to an origin (misses and stale).
    pub misses: u64,
    /// hits / (hits + misses); 0 before any cacheable request.
    pub hit_ratio: f64,
    /// Objects stored.
    pub objects: u64,
    /// Bytes charged against the budget.
    pub bytes: u64,
}

/// Counters since the edge started, as its `/status` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Requests answered, whatever the cache did with them.
    pub requests: u64,
    /// Requests moved to another origin after a failure.
    pub origin_retries: u64,
    /// Purge orders applied.
    pub purges: u64,
    /// Body bytes sent straight from cached pages (the zero-copy path;
    /// other bytes are not counted).
    pub zero_copy_bytes: u64,
    /// Every response body byte sent to clients: hits, misses, copied or
    /// not, streamed, error pages.
    pub response_body_bytes: u64,
}

impl EdgeMetrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        // prometheus's registering macros panic on an invalid metric name;
        // these names are constants, and every test that makes metrics
        // would fail first.
        let registry = Registry::new();
        let requests = register_int_counter_vec_with_registry!(
            "meridian_edge_requests_total",
            "Requests, by what the cache did with them",
            &["cache"],
            registry
        )?;
        let responses = register_int_counter_vec_with_registry!(
            "meridian_edge_responses_total",
            "Responses sent, by status class",
            &["status"],
            registry
        )?;
        let counter =
            |name: &str, help: &str| register_int_counter_with_registry!(name, help, registry);
        let gauge =
            |name: &str, help: &str| register_int_gauge_with_registry!(name, help, registry);
        let origin_retries = counter(
            "meridian_edge_origin_retries_total",
            "Requests moved to another origin after a failure",
        )?;
        let purged = counter(
            "meridian_edge_purged_objects_total",
            "Objects removed or marked stale by purges",
        )?;
        let purges = counter(
            "meridian_edge_purges_total",
            "Purge orders applied (each may remove any number of objects, none included)",
        )?;
        let catch_up_waits = counter(
            "meridian_edge_purge_catch_up_waits_total",
            "Requests that waited for the edge to read the cluster's purge stream before using its cache",
        )?;
        let unverified_hits = counter(
            "meridian_edge_unverified_hits_total",
            "Hits served while the cache was not verified against the cluster's purges (the bus unreachable)",
        )?;
        let verified = gauge(
            "meridian_edge_cache_verified",
            "1 when the cache holds no object purged on the cluster bus (always, on a single host), 0 when that is not known",
        )?;
        let coalesced = counter(
            "meridian_edge_coalesced_waits_total",
            "Requests that waited for another request's origin fetch instead of making their own",
        )?;
        let fast_path_hits = counter(
            "meridian_edge_fast_path_hits_total",
            "Plain hits answered straight from storage, without Pingora's cache state machine",
        )?;
        let zero_copy_bytes = counter(
            "meridian_edge_zero_copy_bytes_total",
            "Body bytes sent to clients straight from cached pages (sendfile), without a copy",
        )?;
        let response_body_bytes = counter(
            "meridian_edge_response_body_bytes_total",
            "Response body bytes sent to clients, whatever the path (hits, misses, copied or zero-copy, streamed)",
        )?;
        let evictions = gauge(
            "meridian_edge_cache_evictions",
            "Objects evicted to stay within the cache budget since start",
        )?;
        let variant_evictions = gauge(
            "meridian_edge_cache_variant_evictions",
            "Variants of a URL evicted to stay within edge.cache_max_variants since start",
        )?;
        let abandoned_fills = gauge(
            "meridian_edge_cache_fills_abandoned",
            "Responses being stored whose body never completed (nothing stored; clients told \"stored\" in Cache-Status got an aborted body) since start",
        )?;
        let objects = gauge("meridian_edge_cache_objects", "Objects in the cache")?;
        let bytes = gauge(
            "meridian_edge_cache_bytes",
            "Bytes the cache holds, against its budget",
        )?;
        let origin_latency = Histogram::with_opts(
            HistogramOpts::new(
                "meridian_edge_origin_response_seconds",
                "Time from choosing an origin to its response header",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(origin_latency.clone()))?;
        let peer_fills_sent = register_int_counter_vec_with_registry!(
            "meridian_edge_peer_fills_sent_total",
            "Misses this edge filled from the object's owner among its region's edges, by outcome",
            &["outcome"],
            registry
        )?;
        let peer_fills_received = register_int_counter_vec_with_registry!(
            "meridian_edge_peer_fills_received_total",
            "Fills other edges of the region asked of this edge as an object's owner, by outcome",
            &["outcome"],
            registry
        )?;
        let tiers = tiers::TierGauges::register(&registry)?;
        Ok(EdgeMetrics {
            tiers,
            peer_fills_sent: PeerFillSent::ALL
                .iter()
                .map(|o| peer_fills_sent.with_label_values(&[o.label()]))
                .collect(),
            peer_fills_received: PeerFillReceived::ALL
                .iter()
                .map(|o| peer_fills_received.with_label_values(&[o.label()]))
                .collect(),
            hits: requests.with_label_values(&["hit"]),
            stale_hits: requests.with_label_values(&["stale-served"]),
            misses: requests.with_label_values(&["miss"]),
            stale: requests.with_label_values(&["stale"]),
            revalidated: requests.with_label_values(&["revalidated"]),
            uncacheable: requests.with_label_values(&["uncacheable"]),
            bypass: requests.with_label_values(&["bypass"]),
            other: requests.with_label_values(&["other"]),
            coalesced,
            fast_path_hits,
            origin_latency,
            evictions,
            variant_evictions,
            abandoned_fills,
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .iter()
                .map(|class| responses.with_label_values(&[*class]))
                .collect(),
            origin_retries,
            purged,
            purges,
            catch_up_waits,
            unverified_hits,
            verified,
            objects,
            bytes,
            zero_copy_bytes,
            response_body_bytes,
            registry,
        })
    }

    /// Counts one finished request, which sent `body_bytes` of response
    /// body to its client (Pingora's count of what its writer sent: the
    /// application's bytes, not the framing, the same on every path).
    pub fn request(&self, outcome: Option<&CacheOutcome>, status: u16, body_bytes: usize) {
        self.response_body_bytes
            .inc_by(u64::try_from(body_bytes).unwrap_or(u64::MAX));
        let counter = match outcome {
            Some(CacheOutcome::Hit { ttl }) if *ttl < 0 => &self.stale_hits,
            Some(CacheOutcome::Hit { .. }) => &self.hits,
            Some(CacheOutcome::Forward {
                reason,
                stored,
                fwd_status,
                ..
            }) => match reason {
                ForwardReason::Miss | ForwardReason::UriMiss if *stored => &self.misses,
                ForwardReason::Stale | ForwardReason::Request if *fwd_status == Some(304) => {
                    &self.revalidated
                }
                ForwardReason::Stale | ForwardReason::Request => &self.stale,
                ForwardReason::Miss | ForwardReason::UriMiss => &self.uncacheable,
                ForwardReason::Bypass | ForwardReason::Method => &self.bypass,
            },
            Some(CacheOutcome::Local { .. }) | None => &self.other,
        };
        counter.inc();
        if let Some(class) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.responses.get(usize::from(i)))
        {
            class.inc();
        }
    }

    /// Counts a request that waited on another's fetch of the same object.
    pub fn coalesced_wait(&self) {
        self.coalesced.inc();
    }

    /// Counts a request that waited for the purge stream.
    pub fn catch_up_wait(&self) {
        self.catch_up_waits.inc();
    }

    /// Counts a hit served from an unverified cache.
    pub fn unverified_hit(&self) {
        self.unverified_hits.inc();
    }

    /// Counts a plain hit answered by the fast path.
    pub fn fast_path_hit(&self) {
        self.fast_path_hits.inc();
    }

    /// Records how long an origin took to start answering.
    pub fn origin_latency(&self, elapsed: Duration) {
        self.origin_latency.observe(elapsed.as_secs_f64());
    }

    /// Counts a peer fill sent, by how it ended.
    pub fn peer_fill_sent(&self, outcome: PeerFillSent) {
        if let Some(i) = PeerFillSent::ALL.iter().position(|o| *o == outcome) {
            self.peer_fills_sent[i].inc();
        }
    }

    /// Counts a peer fill received, by how it ended.
    pub fn peer_fill_received(&self, outcome: PeerFillReceived) {
        if let Some(i) = PeerFillReceived::ALL.iter().position(|o| *o == outcome) {
            self.peer_fills_received[i].inc();
        }
    }

    /// Counts a request moved to another origin.
    pub fn origin_retry(&self) {
        self.origin_retries.inc();
    }

    /// The counter of body bytes sent without a copy, for the connections
    /// that send them (see [`crate::zero_copy`]).
    pub fn zero_copy_bytes(&self) -> IntCounter {
        self.zero_copy_bytes.clone()
    }

    /// Counts one purge order applied, which removed `count` objects.
    pub fn purged(&self, count: usize) {
        self.purges.inc();
        self.purged.inc_by(count as u64);
    }

    /// The request counters so far, which the live view of `meridian up`
    /// turns into rates.
    pub fn traffic(&self) -> Traffic {
        let outcomes = [
            &self.hits,
            &self.stale_hits,
            &self.misses,
            &self.stale,
            &self.revalidated,
            &self.uncacheable,
            &self.bypass,
            &self.other,
        ];
        Traffic {
            requests: outcomes.iter().map(|c| c.get()).sum(),
            origin_retries: self.origin_retries.get(),
            purges: self.purges.get(),
            zero_copy_bytes: self.zero_copy_bytes.get(),
            response_body_bytes: self.response_body_bytes.get(),
        }
    }

    /// Hits, misses and the cache's size.
    pub fn summary(&self, storage: &MemoryStorage) -> CacheSummary {
        let hits = self.hits.get() + self.stale_hits.get();
        let misses = self.misses.get() + self.stale.get() + self.revalidated.get();
        let hit_ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        CacheSummary {
            hits,
            misses,
            hit_ratio,
            objects: storage.object_count() as u64,
            bytes: storage.used_bytes(),
        }
    }

    /// Prometheus text.
    pub fn render(&self, storage: &MemoryStorage, verified: Option<bool>) -> String {
        self.verified.set(i64::from(verified.unwrap_or(true)));
        let count = u64::try_from(storage.object_count()).unwrap_or(u64::MAX);
        for (gauge, value) in [
            (&self.objects, count),
            (&self.bytes, storage.used_bytes()),
            (&self.evictions, storage.evictions()),
            (&self.variant_evictions, storage.variant_evictions()),
            (&self.abandoned_fills, storage.abandoned_fills()),
        ] {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.tiers.set(&storage.tier_stats());
        // Encoding only fails on a metric with an invalid name, which
        // registering it already refused.
        let families = self.registry.gather();
        TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grafana_dashboard_asks_only_for_what_an_edge_exports() {
        let metrics = EdgeMetrics::new().unwrap();
        let storage = MemoryStorage::new(1 << 20, 1 << 16);
        let exported = kit::grafana::exported_metrics(&metrics.render(&storage, None));
        let queried = kit::grafana::queried_metrics("meridian_edge_");
        assert!(queried.len() > 10, "{queried:?}");
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(unknown.is_empty(), "the dashboard asks for {unknown:?}");
    }

    #[test]
    fn hits_and_misses_make_the_ratio() {
        let metrics = EdgeMetrics::new().unwrap();
        let storage = MemoryStorage::new(1 << 20, 1 << 16);
        let hit = CacheOutcome::Hit { ttl: 10 };
        let miss = CacheOutcome::Forward {
            reason: ForwardReason::Miss,
            fwd_status: None,
            stored: true,
            ttl: Some(10),
            detail: None,
        };
        let uncacheable = CacheOutcome::Forward {
            reason: ForwardReason::UriMiss,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: Some("uncacheable"),
        };
        for _ in 0..3 {
            metrics.request(Some(&hit), 200, 1000);
        }
        metrics.request(Some(&miss), 200, 20);
        metrics.request(Some(&uncacheable), 200, 0);
        metrics.request(None, 502, 7);
        assert_eq!(metrics.traffic().response_body_bytes, 3027);
        let summary = metrics.summary(&storage);
        assert_eq!((summary.hits, summary.misses), (3, 1));
        assert!((summary.hit_ratio - 0.75).abs() < 1e-9);
        let text = metrics.render(&storage, None);
        assert!(
            text.contains(r#"meridian_edge_requests_total{cache="hit"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_edge_requests_total{cache="uncacheable"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_edge_responses_total{status="5xx"} 1"#),
            "{text}"
        );
        assert!(text.contains("meridian_edge_cache_objects 0"), "{text}");
        assert!(text.contains("meridian_edge_cache_evictions 0"), "{text}");
        metrics.origin_latency(Duration::from_millis(3));
        metrics.coalesced_wait();
        let text = metrics.render(&storage, None);
        assert!(
            text.contains("meridian_edge_origin_response_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("meridian_edge_coalesced_waits_total 1"),
            "{text}"
        );
    }

    #[test]
    fn peer_fills_are_counted_by_outcome() {
        let metrics = EdgeMetrics::new().unwrap();
        let storage = MemoryStorage::new(1 << 20, 1 << 16);
        metrics.peer_fill_sent(PeerFillSent::Filled);
        metrics.peer_fill_sent(PeerFillSent::Filled);
        metrics.peer_fill_sent(PeerFillSent::Failed);
        metrics.peer_fill_received(PeerFillReceived::Refused);
        let text = metrics.render(&storage, None);
        for line in [
            r#"meridian_edge_peer_fills_sent_total{outcome="filled"} 2"#,
            r#"meridian_edge_peer_fills_sent_total{outcome="failed"} 1"#,
            r#"meridian_edge_peer_fills_sent_total{outcome="broken"} 0"#,
            r#"meridian_edge_peer_fills_received_total{outcome="refused"} 1"#,
            r#"meridian_edge_peer_fills_received_total{outcome="fetched"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
