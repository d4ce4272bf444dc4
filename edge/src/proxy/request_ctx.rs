//! What the edge keeps about one request while Pingora's phases run.

use crate::cache_status::CacheOutcome;
use crate::cacheability::RequestDirectives;
use pingora::http::ResponseHeader;
use std::time::{Instant, SystemTime};

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    /// The normalized host the request is for, once known.
    pub(super) host: Option<String>,
    /// `http` or `https`: how the client reached the edge.
    pub(super) scheme: &'static str,
    /// Origins this request tried, in order.
    pub(super) tried: Vec<usize>,
    /// Where the current try goes.
    pub(super) hop: Option<Hop>,
    /// Whether the current hop's response head arrived.
    pub(super) hop_answered: bool,
    /// This request is a peer fill from another edge of the region: it is
    /// served from the cache or the origins, never sent to a peer.
    pub(super) peer_fill: bool,
    /// The peers to fill this request from, best first (decided at the
    /// first hop; empty for a request not filled from peers).
    pub(super) fill_plan: Option<Vec<usize>>,
    /// How many of `fill_plan` were tried.
    pub(super) peers_tried: usize,
    /// What the cache did, for the metrics.
    pub(super) outcome: Option<CacheOutcome>,
    /// The client's `Cache-Control` directives.
    pub(super) directives: RequestDirectives,
    /// The request's directives refused a fresh stored response.
    pub(super) request_forced: bool,
    /// The origin's 304, while a stored response is being revalidated.
    pub(super) not_modified: Option<ResponseHeader>,
    /// When the current origin was chosen.
    pub(super) origin_started: Option<Instant>,
    /// When this request's time with origins runs out (set on the first try).
    pub(super) origin_deadline: Option<Instant>,
    /// When the request's head arrived.
    pub(super) arrived: Option<SystemTime>,
    /// The edge answered `Expect: 100-continue` itself.
    pub(super) continue_sent: bool,
    /// The cache could not be verified against the cluster's purges (the
    /// bus unreachable): a hit says so in `Cache-Status`.
    pub(super) unverified: bool,
}

/// Where one try of a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hop {
    /// Peer `n` of [`crate::peers::Peers`], for a peer fill.
    Peer(usize),
    /// Origin `n` of [`crate::origins::OriginSet`].
    Origin(usize),
}

impl RequestCtx {
    /// Whether peers are left to try before the origins.
    pub(super) fn peers_left(&self) -> bool {
        self.fill_plan
            .as_ref()
            .is_some_and(|plan| self.peers_tried < plan.len())
    }
}
