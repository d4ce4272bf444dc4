//! A GeoDNS server's own live view, read-only, on its admin listener: each
//! region as this server decides about it (its health view: whether it
//! answers with the region, with which edges), the last minute of its
//! steered answers per region, and a log of its decisions changing and
//! its reloads. It knows no processes, origins or edge counters (those are
//! `meridian up`'s), and offers no buttons.

use super::answers::{RegionShare, Steering};
use super::flows::{FlowShare, Flows};
use super::log::{Entry, Log};
use super::{Feed, INTERVAL, Published, ServerEntry, Stamp, now_ms};
use crate::admin::Counters;
use crate::health::RegionStatus;
use crate::metrics::DnsMetrics;
use crate::snapshot::Live;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    stamp: Stamp,
    controls: bool,
    edge_metrics: bool,
    dns_available: bool,
    geodns: [ServerEntry; 1],
    regions: Vec<Region>,
    answers: Vec<RegionShare>,
    flows: Vec<FlowShare>,
    events: &'a VecDeque<Entry>,
}

#[derive(Serialize)]
struct Region {
    name: String,
    city: Option<String>,
    latitude: f64,
    longitude: f64,
    health: &'static str,
    reason: String,
    dns: [Decision; 1],
    edges: Vec<Edge>,
}

#[derive(Serialize)]
struct Decision {
    server: String,
    up: Option<bool>,
}

#[derive(Serialize)]
struct Edge {
    address: IpAddr,
    steered: Option<bool>,
}

/// What one collection saw that the next compares: each region's health
/// word, and (reloads, refused reloads).
type Seen = (Vec<(String, &'static str)>, (u64, u64));

/// A region's health word and why, as this server decides: down when it
/// steers away, degraded when it leaves some edges out.
fn health(status: Option<&RegionStatus>) -> (&'static str, String) {
    let Some(status) = status else {
        return ("down", "not in this server's health view".to_owned());
    };
    let total = status.edges.len();
    let up = status.edges.iter().filter(|e| e.up).count();
    if !status.up {
        ("down", "this server steers clients away".to_owned())
    } else if up < total {
        ("degraded", format!("answered with {up} of {total} edges"))
    } else {
        ("up", "answered with every edge".to_owned())
    }
}

/// Starts this server's view: collects every [`INTERVAL`] until `stop`.
pub fn start(
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    server: String,
    admin: SocketAddr,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Feed {
    let (publish, feed) = super::channel();
    tokio::spawn(async move {
        tokio::select! {
            () = collect(live, metrics, server, admin, publish) => {}
            () = stop => {}
        }
    });
    feed
}

async fn collect(
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    server: String,
    admin: SocketAddr,
    publish: watch::Sender<Arc<Published>>,
) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut steering: Option<(Vec<String>, Steering, Flows)> = None;
    let mut log = Log::default();
    let mut last: Option<Seen> = None;
    let mut seq = 0;
    loop {
        ticks.tick().await;
        let snapshot = live.load();
        let names: Vec<String> = snapshot
            .config
            .regions
            .iter()
            .map(|r| r.name.clone())
            .collect();
        // A reload may change the regions: their minute starts again.
        if steering
            .as_ref()
            .is_none_or(|(known, _, _)| *known != names)
        {
            let windows = (Steering::new(names.clone()), Flows::new(names.clone()));
            steering = Some((names.clone(), windows.0, windows.1));
        }
        let counters = Counters::of(&snapshot, &metrics);
        let (shares, flows) = match steering.as_mut() {
            Some((_, steering, flows)) => {
                steering.record(&[Some(&counters)]);
                flows.record(&[Some(&counters)]);
                (steering.shares(), flows.shares())
            }
            None => (Vec::new(), Vec::new()),
        };
        let view = snapshot.health.snapshot();
        let regions: Vec<Region> = snapshot
            .config
            .regions
            .iter()
            .map(|region| {
                let status = view.iter().find(|s| s.region == region.name);
                let (health, reason) = health(status);
                Region {
                    name: region.name.clone(),
                    city: region.city.clone(),
                    latitude: region.latitude,
                    longitude: region.longitude,
                    health,
                    reason,
                    dns: [Decision {
                        server: server.clone(),
                        up: status.map(|s| s.up),
                    }],
                    edges: region
                        .edge_addresses
                        .iter()
                        .map(|&address| Edge {
                            address,
                            steered: status
                                .and_then(|s| s.edges.iter().find(|e| e.addr.ip() == address))
                                .map(|e| e.up),
                        })
                        .collect(),
                }
            })
            .collect();
        let at_ms = now_ms();
        let now: Vec<(String, &'static str)> =
            regions.iter().map(|r| (r.name.clone(), r.health)).collect();
        let reloads = (counters.reloads, counters.reload_failures);
        match &last {
            None => {
                log.push(
                    at_ms,
                    "start",
                    format!("GeoDNS {server}: watching {} regions", now.len()),
                );
            }
            Some((before, (reloaded, refused))) => {
                for ((name, health), region) in now.iter().zip(&regions) {
                    let was = before.iter().find(|(n, _)| n == name).map(|(_, h)| *h);
                    if was.is_some_and(|was| was != *health) {
                        let text = format!(
                            "{name}: {} → {health} ({})",
                            was.unwrap_or("-"),
                            region.reason
                        );
                        log.push(at_ms, "health", text);
                    }
                }
                if reloads.0 > *reloaded {
                    log.push(
                        at_ms,
                        "reload",
                        format!("GeoDNS {server} reloaded its config"),
                    );
                }
                if reloads.1 > *refused {
                    let text = format!("GeoDNS {server} refused a reload (kept its config)");
                    log.push(at_ms, "reload", text);
                }
            }
        }
        last = Some((now, reloads));
        seq += 1;
        let view = View {
            stamp: Stamp::new(seq, at_ms),
            controls: false,
            edge_metrics: false,
            dns_available: true,
            geodns: [ServerEntry {
                server: server.clone(),
                admin,
                answered: true,
            }],
            regions,
            answers: shares,
            flows,
            events: log.entries(),
        };
        let Ok(json) = serde_json::to_string(&view) else {
            // Plain data: cannot fail, but must not end the view.
            tracing::error!("cannot encode the live view");
            continue;
        };
        if publish.send(Arc::new(Published { seq, json })).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::EdgeStatus;

    #[test]
    fn a_region_is_as_healthy_as_this_servers_answers() {
        let region = |up, edges: &[bool]| RegionStatus {
            region: "eu-west".into(),
            up,
            edges: edges
                .iter()
                .map(|&up| EdgeStatus {
                    addr: "127.0.2.1:8080".parse().unwrap(),
                    up,
                    probed_up: up,
                    seen_by: Vec::new(),
                })
                .collect(),
        };
        assert_eq!(health(Some(&region(true, &[true, true]))).0, "up");
        assert_eq!(health(Some(&region(true, &[true, false]))).0, "degraded");
        assert_eq!(health(Some(&region(false, &[false, false]))).0, "down");
        assert_eq!(health(None).0, "down");
    }
}
