//! What a vantage point publishes of the edges it sees.
//!
//! GeoDNS does not decide on its own probes alone: a nameserver cut off
//! from a region would steer the world away from a region that is in fact
//! serving. Each GeoDNS also counts what the other vantage points see —
//! the other GeoDNS servers (their own probes, in their admin `/health` as
//! `probed_up`) and the edges (each edge's view of its region's other
//! edges, in its admin `/status` as `peers`, a list of [`SeenEdge`]).
//!
//! The type lives here, next to the `[health]` settings, so that the edges
//! that publish it and the GeoDNS servers that read it share one
//! definition. An edge that publishes no `peers` simply does not count.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The name of the field of an edge's admin `/status` that holds what it
/// sees of its region's other edges.
pub const EDGE_PEERS_FIELD: &str = "peers";

/// One edge as a vantage point sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeenEdge {
    /// The edge's data-plane HTTP address (`127.0.2.1:8080`): what GeoDNS
    /// probes and answers with.
    pub addr: SocketAddr,
    /// Whether the vantage point's own health checks consider it up.
    pub up: bool,
}
