//! GeoDNS's Prometheus metrics.
//!
//! Every counter a query touches is created up front, so counting a query
//! is a few atomic adds, never a label lookup on the hot path. The counters
//! per region are created with each loaded config ([`DnsMetrics::steered_counters`]),
//! since a reload may add or rename regions.

use crate::health::HealthView;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Query types counted by name; everything else is `other`.
const QUERY_TYPES: [(RecordType, &str); 6] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::ANY, "ANY"),
    (RecordType::SOA, "SOA"),
    (RecordType::NS, "NS"),
    (RecordType::TXT, "TXT"),
];

/// Response codes counted by name; everything else is `other`.
const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::BADVERS, "BADVERS"),
];

/// What one answered query adds to the metrics. Kept apart from the
/// counting itself ([`DnsMetrics::count`]) so that a reply the UDP answer
/// cache sends again counts exactly as the first one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The question's type (NULL for a query without exactly one).
    pub qtype: RecordType,
    /// The reply's code.
    pub rcode: ResponseCode,
    /// Answered from the query's ECS option with a steered answer.
    pub ecs: bool,
    /// The region whose edges a steered answer gave.
    pub region: Option<usize>,
    /// The client's country, for a steered answer's flow
    /// ([`crate::flows`]); unknown for other answers.
    pub country: crate::flows::CountryId,
}

/// The counters, and the registry that renders them.
pub struct DnsMetrics {
    registry: Registry,
    /// `[qtype][rcode]`, with the last index of each for `other`.
    queries: Vec<Vec<IntCounter>>,
    ecs_queries: IntCounter,
    /// Steered answers, by region name.
    steered: IntCounterVec,
    edge_up: IntGaugeVec,
    edge_probed_up: IntGaugeVec,
    vantage_points: IntGauge,
    reloads: IntCounter,
    reload_failures: IntCounter,
    /// UDP replies over the rate limit, by what happened to them.
    rate_limit_dropped: IntCounter,
    rate_limit_slipped: IntCounter,
}

fn qtype_index(qtype: RecordType) -> usize {
    QUERY_TYPES
        .iter()
        .position(|(t, _)| *t == qtype)
        .unwrap_or(QUERY_TYPES.len())
}

fn rcode_index(rcode: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|(c, _)| *c == rcode)
        .unwrap_or(RCODES.len())
}

impl DnsMetrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let queries_vec = IntCounterVec::new(
            Opts::new(
                "meridian_dns_queries_total",
                "DNS queries answered, by query type and response code",
            ),
            &["qtype", "rcode"],
        )?;
        registry.register(Box::new(queries_vec.clone()))?;
        let qtype_names = QUERY_TYPES.iter().map(|(_, n)| *n).chain(["other"]);
        let queries = qtype_names
            .map(|qtype| {
                RCODES
                    .iter()
                    .map(|(_, n)| *n)
                    .chain(["other"])
                    .map(|rcode| queries_vec.with_label_values(&[qtype, rcode]))
                    .collect()
            })
            .collect();
        let ecs_queries = IntCounter::new(
            "meridian_dns_ecs_queries_total",
            "Queries whose answer was tailored to an EDNS Client Subnet",
        )?;
        registry.register(Box::new(ecs_queries.clone()))?;
        let steered_vec = IntCounterVec::new(
            Opts::new(
                "meridian_dns_steered_answers_total",
                "Steered answers, by the region answered",
            ),
            &["region"],
        )?;
        registry.register(Box::new(steered_vec.clone()))?;
        let edge_up = IntGaugeVec::new(
            Opts::new(
                "meridian_dns_edge_up",
                "1 when GeoDNS answers with the edge: a quorum of the vantage points that report does not see it down",
            ),
            &["region", "edge"],
        )?;
        registry.register(Box::new(edge_up.clone()))?;
        let edge_probed_up = IntGaugeVec::new(
            Opts::new(
                "meridian_dns_edge_probed_up",
                "1 when this GeoDNS's own probes see the edge up",
            ),
            &["region", "edge"],
        )?;
        registry.register(Box::new(edge_probed_up.clone()))?;
        let vantage_points = IntGauge::new(
            "meridian_dns_vantage_points",
            "Other vantage points (GeoDNS servers, edges) whose reports count now",
        )?;
        registry.register(Box::new(vantage_points.clone()))?;
        let reloads = IntCounter::new(
            "meridian_dns_reloads_total",
            "Configuration and geo database reloads that took effect",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        let reload_failures = IntCounter::new(
            "meridian_dns_reload_failures_total",
            "Reloads refused (bad config or database); the running one stayed",
        )?;
        registry.register(Box::new(reload_failures.clone()))?;
        let rate_limited_vec = IntCounterVec::new(
            Opts::new(
                "meridian_dns_rate_limited_total",
                "UDP replies over the rate limit, by action: dropped (nothing sent) or slipped (sent truncated)",
            ),
            &["action"],
        )?;
        registry.register(Box::new(rate_limited_vec.clone()))?;
        Ok(DnsMetrics {
            registry,
            queries,
            ecs_queries,
            steered: steered_vec,
            edge_up,
            edge_probed_up,
            vantage_points,
            reloads,
            reload_failures,
            rate_limit_dropped: rate_limited_vec.with_label_values(&["dropped"]),
            rate_limit_slipped: rate_limited_vec.with_label_values(&["slipped"]),
        })
    }

    /// The steered-answer counters of `region_names`, by region index, for
    /// [`DnsMetrics::steered`]. Counts survive reloads: a region keeps its
    /// counter as long as it keeps its name.
    pub fn steered_counters(&self, region_names: &[&str]) -> Vec<IntCounter> {
        region_names
            .iter()
            .map(|r| self.steered.with_label_values(&[*r]))
            .collect()
    }

    /// Counts one answered query, as `counts` says, with the steered
    /// counters of the config that answered it
    /// ([`DnsMetrics::steered_counters`]).
    pub fn count(&self, steered: &[IntCounter], counts: &Counts) {
        self.query(counts.qtype, counts.rcode);
        if counts.ecs {
            self.ecs_query();
        }
        if let Some(region) = counts.region {
            DnsMetrics::steered(steered, region);
        }
    }

    /// Counts one answered query.
    pub fn query(&self, qtype: RecordType, rcode: ResponseCode) {
        if let Some(counter) = self
            .queries
            .get(qtype_index(qtype))
            .and_then(|row| row.get(rcode_index(rcode)))
        {
            counter.inc();
        }
    }

    /// Counts a query answered from its ECS option.
    pub fn ecs_query(&self) {
        self.ecs_queries.inc();
    }

    /// Counts a steered answer with `region`'s edges, given the counters of
    /// the config that answered ([`DnsMetrics::steered_counters`]).
    pub fn steered(counters: &[IntCounter], region: usize) {
        if let Some(counter) = counters.get(region) {
            counter.inc();
        }
    }

    /// Counts a UDP reply the rate limit dropped.
    pub fn rate_limit_dropped(&self) {
        self.rate_limit_dropped.inc();
    }

    /// Counts a UDP reply the rate limit sent truncated instead.
    pub fn rate_limit_slipped(&self) {
        self.rate_limit_slipped.inc();
    }

    /// Counts a reload that took effect.
    pub fn reloaded(&self) {
        self.reloads.inc();
    }

    /// Counts a reload that was refused.
    pub fn reload_failed(&self) {
        self.reload_failures.inc();
    }

    /// Reloads that took effect and reloads refused, since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (self.reloads.get(), self.reload_failures.get())
    }

    /// The Prometheus text exposition of every metric, with the edges'
    /// state as `health` (the current view) has it.
    pub fn render(&self, health: &HealthView) -> String {
        // Edges a reload removed must not linger.
        self.edge_up.reset();
        self.edge_probed_up.reset();
        for region in health.snapshot() {
            for edge in &region.edges {
                let labels = [region.region.as_str(), &edge.addr.to_string()];
                self.edge_up
                    .with_label_values(&labels)
                    .set(i64::from(edge.up));
                self.edge_probed_up
                    .with_label_values(&labels)
                    .set(i64::from(edge.probed_up));
            }
        }
        self.vantage_points
            .set(i64::try_from(health.vantage_points()).unwrap_or(i64::MAX));
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
    fn counts_render_with_meridian_names() {
        let config = config::Config::demo();
        let health = HealthView::from_config(&config);
        let metrics = DnsMetrics::new().unwrap();
        let steered = metrics.steered_counters(&config.region_names());
        metrics.query(RecordType::A, ResponseCode::NoError);
        metrics.query(RecordType::A, ResponseCode::NoError);
        metrics.query(RecordType::MX, ResponseCode::Refused);
        metrics.ecs_query();
        DnsMetrics::steered(&steered, 1);
        metrics.reloaded();
        metrics.reload_failed();
        metrics.reload_failed();
        metrics.rate_limit_dropped();
        metrics.rate_limit_dropped();
        metrics.rate_limit_slipped();
        health.set_edge(2, 0, false);
        let text = metrics.render(&health);
        // The shipped Grafana dashboard asks only for what GeoDNS exports.
        let queried = kit::grafana::queried_metrics("meridian_dns_");
        assert!(queried.len() > 5, "{queried:?}");
        let exported = kit::grafana::exported_metrics(&text);
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(unknown.is_empty(), "the dashboard asks for {unknown:?}");
        assert!(
            text.contains(r#"meridian_dns_queries_total{qtype="A",rcode="NOERROR"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_dns_queries_total{qtype="other",rcode="REFUSED"} 1"#),
            "{text}"
        );
        assert!(text.contains("meridian_dns_ecs_queries_total 1"), "{text}");
        assert!(
            text.contains(r#"meridian_dns_steered_answers_total{region="eu-west"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_dns_edge_up{edge="127.0.3.1:8080",region="ap-southeast"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_dns_edge_up{edge="127.0.2.1:8080",region="eu-west"} 1"#),
            "{text}"
        );
        assert!(text.contains("meridian_dns_reloads_total 1"), "{text}");
        assert!(
            text.contains("meridian_dns_reload_failures_total 2"),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_dns_rate_limited_total{action="dropped"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"meridian_dns_rate_limited_total{action="slipped"} 1"#),
            "{text}"
        );
        // After a reload that dropped ap-southeast, its edge is gone.
        let text = config::DEMO_TOML.replace("\"ap-southeast\"]", "]");
        let cut = text.rfind("[[region]]").unwrap();
        let smaller =
            config::Config::from_toml(&text[..cut], config::ConfigSource::Embedded).unwrap();
        let rendered = metrics.render(&HealthView::from_config(&smaller));
        assert!(!rendered.contains("127.0.3.1"), "{rendered}");
    }
}
