//! What the live view shows, made from one [`Status`] of the whole
//! topology: each region's health (with the reason, in words), its edges
//! with their sparklines, and each GeoDNS server's decisions.

use super::history::{History, Series};
use crate::up::ProcessState;
use crate::up::control::{RegionStatus, Status};
use serde::Serialize;
use std::net::IpAddr;

/// A region's health as the page draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every process runs and GeoDNS answers with every edge.
    Up,
    /// It serves, but something of it is missing (an edge, its origin,
    /// GeoDNS's agreement).
    Degraded,
    /// No client is sent there: no edge runs, or GeoDNS steers away.
    Down,
}

impl Health {
    /// The word the page and the event log use.
    pub fn word(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// A process state in words, as `meridian status` writes it.
pub fn state_word(state: ProcessState) -> &'static str {
    match state {
        ProcessState::Running => "running",
        ProcessState::Killed => "killed",
        ProcessState::Restarting => "restarting",
        ProcessState::Failed => "failed",
    }
}

/// Where a region is, from the config.
#[derive(Debug, Clone, Serialize)]
pub struct Place {
    /// Its name.
    pub name: String,
    /// Its city, when the config names one.
    pub city: Option<String>,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// One region on the page.
#[derive(Debug, Serialize)]
pub struct RegionView {
    #[serde(flatten)]
    place: Place,
    /// Its health.
    pub health: Health,
    /// Why, in words.
    pub reason: String,
    origin: ProcessState,
    /// Each GeoDNS server's decision (`None`: it did not answer).
    dns: Vec<ServerDecision>,
    edges: Vec<EdgeView>,
}

#[derive(Debug, Serialize)]
struct ServerDecision {
    server: String,
    up: Option<bool>,
}

/// One edge on the page.
#[derive(Debug, Serialize)]
struct EdgeView {
    address: IpAddr,
    state: ProcessState,
    /// Whether GeoDNS answers with it (`None`: unknown or disputed).
    steered: Option<bool>,
    hit_ratio: Option<f64>,
    series: Series,
}

/// A region's health and why, from its processes and GeoDNS's view.
/// `dns_available`: whether any GeoDNS server answered at all.
pub fn region_health(region: &RegionStatus, dns_available: bool) -> (Health, String) {
    let total = region.edges.len();
    let running = region
        .edges
        .iter()
        .filter(|e| e.state == ProcessState::Running)
        .count();
    if running == 0 {
        let state = state_word(region.edge);
        return (Health::Down, format!("no edge running: edges {state}"));
    }
    if region.dns_view_up == Some(false) {
        return (Health::Down, "GeoDNS steers clients away".to_owned());
    }
    if running < total {
        return (
            Health::Degraded,
            format!("{running} of {total} edges running"),
        );
    }
    if region.origin != ProcessState::Running {
        let state = state_word(region.origin);
        return (Health::Degraded, format!("origin {state}"));
    }
    if !dns_available {
        return (Health::Degraded, "no GeoDNS server answers".to_owned());
    }
    if region.dns_view_up.is_none() {
        return (Health::Degraded, "GeoDNS servers disagree".to_owned());
    }
    let left_out = region
        .edges
        .iter()
        .filter(|e| e.dns_view_up == Some(false))
        .count();
    if left_out > 0 {
        return (
            Health::Degraded,
            format!("GeoDNS leaves out {left_out} of {total} edges"),
        );
    }
    (Health::Up, "serving".to_owned())
}

/// Every region of `status`, placed by `places` (config order, as
/// `status` has them), with the series of `history`.
pub fn regions(status: &Status, places: &[Place], history: &History) -> Vec<RegionView> {
    status
        .regions
        .iter()
        .zip(places)
        .map(|(region, place)| {
            let (health, reason) = region_health(region, status.dns_view_available);
            RegionView {
                place: place.clone(),
                health,
                reason,
                origin: region.origin,
                dns: region
                    .dns_views
                    .iter()
                    .map(|v| ServerDecision {
                        server: v.server.clone(),
                        up: v.up,
                    })
                    .collect(),
                edges: region
                    .edges
                    .iter()
                    .map(|edge| EdgeView {
                        address: edge.address,
                        state: edge.state,
                        steered: edge.dns_view_up,
                        hit_ratio: edge.cache_hit_ratio,
                        series: history.series(&region.region, edge.address),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::up::control::EdgeStatus;

    fn region(edges: &[ProcessState], origin: ProcessState, dns: Option<bool>) -> RegionStatus {
        RegionStatus {
            region: "eu-west".into(),
            edge: edges
                .iter()
                .copied()
                .find(|s| *s != ProcessState::Running)
                .unwrap_or(ProcessState::Running),
            edges: edges
                .iter()
                .enumerate()
                .map(|(i, &state)| EdgeStatus {
                    address: IpAddr::from([127, 0, 2, 1 + 2 * i as u8]),
                    state,
                    dns_view_up: dns,
                    origins: None,
                    peers: None,
                    cache_hit_ratio: None,
                    traffic: None,
                    disk: None,
                })
                .collect(),
            origin,
            dns_view_up: dns,
            dns_views: Vec::new(),
        }
    }

    #[test]
    fn health_follows_processes_then_geodns() {
        use ProcessState::{Killed, Running};
        let table = [
            (
                region(&[Running, Running], Running, Some(true)),
                true,
                Health::Up,
            ),
            (
                region(&[Killed, Killed], Killed, Some(true)),
                true,
                Health::Down,
            ),
            (region(&[Killed, Killed], Running, None), true, Health::Down),
            (
                region(&[Running, Running], Running, Some(false)),
                true,
                Health::Down,
            ),
            (
                region(&[Running, Killed], Running, Some(true)),
                true,
                Health::Degraded,
            ),
            (
                region(&[Running, Running], Killed, Some(true)),
                true,
                Health::Degraded,
            ),
            (
                region(&[Running, Running], Running, None),
                true,
                Health::Degraded,
            ),
            (
                region(&[Running, Running], Running, None),
                false,
                Health::Degraded,
            ),
        ];
        for (region, dns_available, expected) in table {
            let (health, reason) = region_health(&region, dns_available);
            assert_eq!(health, expected, "{reason}: {region:?}");
            assert!(!reason.is_empty());
        }
    }
}
