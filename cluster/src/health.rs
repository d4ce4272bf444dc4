//! Health reports on the bus: what each vantage point (every GeoDNS
//! server's own probes, every edge's view of its region's other edges)
//! sees, published once per probe interval on plain NATS (only fresh views
//! matter, so nothing is stored). GeoDNS's `vantage::bus` reads them the
//! way `vantage::http` polls admin listeners.

use crate::{Bus, BusError};
use config::report::SeenEdge;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The subject health reports are published on.
pub const HEALTH_SUBJECT: &str = "meridian.health";

/// One vantage point's view, as published.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct HealthReport {
    /// Who: `geodns ns2`, or an edge's [`crate::edge_name`].
    pub vantage: String,
    /// What it is.
    pub from: Vantage,
    /// The edges it sees, by data-plane address.
    pub edges: Vec<SeenEdge>,
}

/// The kind of vantage point a report comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vantage {
    /// A GeoDNS server, by its name in the config: its own probes.
    Geodns(String),
    /// An edge of `region` at `addr`: counted only for that region's
    /// edges, and only if the reader's config has it there.
    Edge {
        /// Its region.
        region: String,
        /// Its data-plane address.
        addr: SocketAddr,
    },
}

/// Publishes `report` (nothing is kept: a vantage point not heard from is
/// forgotten by the readers after `health.silent_after_ms`).
pub async fn publish(bus: &Bus, report: &HealthReport) -> Result<(), BusError> {
    let body = serde_json::to_vec(report).expect("a report serializes");
    bus.client()
        .publish(HEALTH_SUBJECT, body.into())
        .await
        .map_err(|e| BusError::jetstream("cannot publish a health report", e))
}

/// The reports heard, in order (a stream of NATS messages).
pub type Heard = async_nats::Subscriber;

/// Every report published from now on.
pub async fn subscribe(bus: &Bus) -> Result<Heard, BusError> {
    bus.client()
        .subscribe(HEALTH_SUBJECT)
        .await
        .map_err(|e| BusError::jetstream("cannot subscribe to health reports", e))
}
