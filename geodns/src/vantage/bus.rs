//! Views over the cluster bus: what [`super::http`] polls, published by
//! every vantage point instead (`cluster::health`). Each exchange publishes
//! this server's own probes and takes every report heard since the last
//! one, the newest per vantage point. An edge's report counts only for the
//! edges of the region it names, and only if this server's config has that
//! edge in that region, as over HTTP. Without the bus this server hears
//! nothing and decides on its own probes.

use super::{Report, Transport};
use cluster::health::{HealthReport, Vantage};
use config::report::SeenEdge;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// The exchange over the bus of GeoDNS server `name`.
pub struct BusReports {
    settings: config::Cluster,
    name: String,
    /// Region name → the region's edges' HTTP addresses, in this config.
    regions: HashMap<String, Vec<SocketAddr>>,
    /// Connected on the first exchange (connecting is asynchronous).
    connection: Option<(cluster::Bus, cluster::health::Heard)>,
}

impl BusReports {
    /// The exchange of server `me` (an index into `config.geodns.servers`)
    /// over `settings`.
    pub fn new(settings: &config::Cluster, config: &config::Config, me: usize) -> BusReports {
        BusReports {
            settings: settings.clone(),
            name: config
                .geodns
                .servers
                .get(me)
                .map_or_else(String::new, |s| s.name.clone()),
            regions: config
                .regions
                .iter()
                .map(|r| (r.name.clone(), r.edge_http_addrs(&config.edge)))
                .collect(),
            connection: None,
        }
    }

    /// What `report` says that counts, as a [`Report`]; `None` for this
    /// server's own, and for an edge outside the region it names.
    fn count(&self, report: HealthReport) -> Option<Report> {
        let edges = match &report.from {
            Vantage::Geodns(name) if *name == self.name => return None,
            Vantage::Geodns(_) => report.edges,
            Vantage::Edge { region, addr } => {
                let members = self.regions.get(region)?;
                if !members.contains(addr) {
                    return None;
                }
                report
                    .edges
                    .into_iter()
                    .filter(|e| members.contains(&e.addr))
                    .collect()
            }
        };
        Some(Report {
            vantage: report.vantage,
            edges,
        })
    }
}

impl Transport for BusReports {
    async fn exchange(&mut self, own: &[SeenEdge]) -> Vec<Report> {
        if self.connection.is_none() {
            let name = format!("geodns {}", self.name);
            let connected =
                cluster::Bus::connect(&self.settings, &name, cluster::Connect::InBackground).await;
            let subscribed = match connected {
                Ok(bus) => cluster::health::subscribe(&bus).await.map(|sub| (bus, sub)),
                Err(error) => Err(error),
            };
            match subscribed {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => {
                    tracing::warn!(%error, "no health reports from the cluster bus; deciding on own probes");
                    return Vec::new();
                }
            }
        }
        let Some((bus, subscriber)) = &mut self.connection else {
            return Vec::new();
        };
        let report = HealthReport {
            vantage: format!("geodns {}", self.name),
            from: Vantage::Geodns(self.name.clone()),
            edges: own.to_vec(),
        };
        if let Err(error) = cluster::health::publish(bus, &report).await {
            tracing::debug!(%error, "cannot publish this server's view");
        }
        // Everything heard since the last exchange, the newest per vantage
        // point, without waiting for more.
        let mut newest: BTreeMap<String, HealthReport> = BTreeMap::new();
        while let Some(Some(message)) = subscriber.next().now_or_never() {
            if let Ok(heard) = serde_json::from_slice::<HealthReport>(&message.payload) {
                newest.insert(heard.vantage.clone(), heard);
            }
        }
        newest
            .into_values()
            .filter_map(|heard| self.count(heard))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::seen;
    use super::*;

    #[test]
    fn edges_count_only_for_their_own_region_and_ourselves_not_at_all() {
        let config = config::Config::demo();
        let settings = config::Config::from_toml(
            &format!(
                "{}\n[cluster]\nnats_urls = [\"127.0.0.1:4222\"]\n",
                config::DEMO_TOML
            ),
            config::ConfigSource::Embedded,
        )
        .unwrap()
        .cluster
        .unwrap();
        let reports = BusReports::new(&settings, &config, 0);
        let own = HealthReport {
            vantage: "geodns ns1".into(),
            from: Vantage::Geodns("ns1".into()),
            edges: vec![seen("127.0.2.1:8080", true)],
        };
        assert_eq!(reports.count(own), None);
        let other = HealthReport {
            vantage: "geodns ns2".into(),
            from: Vantage::Geodns("ns2".into()),
            edges: vec![seen("127.0.2.1:8080", false)],
        };
        assert_eq!(
            reports.count(other).unwrap().edges,
            [seen("127.0.2.1:8080", false)]
        );
        // An eu-west edge on its region's edges and on another region's:
        // only the first counts.
        let edge = HealthReport {
            vantage: "edge eu-west 127.0.2.3:8080".into(),
            from: Vantage::Edge {
                region: "eu-west".into(),
                addr: "127.0.2.3:8080".parse().unwrap(),
            },
            edges: vec![seen("127.0.2.1:8080", true), seen("127.0.1.1:8080", false)],
        };
        assert_eq!(
            reports.count(edge.clone()).unwrap().edges,
            [seen("127.0.2.1:8080", true)]
        );
        // A report claiming an edge the config puts elsewhere, or a region
        // it does not have, says nothing.
        let mut forged = edge.clone();
        forged.from = Vantage::Edge {
            region: "us-east".into(),
            addr: "127.0.2.3:8080".parse().unwrap(),
        };
        assert_eq!(reports.count(forged), None);
        let mut unknown = edge;
        unknown.from = Vantage::Edge {
            region: "mars".into(),
            addr: "127.0.2.3:8080".parse().unwrap(),
        };
        assert_eq!(reports.count(unknown), None);
    }
}
