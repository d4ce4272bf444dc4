//! Health from more than one place: what the other vantage points say.
//!
//! A GeoDNS that cannot reach a region must not steer the world away from
//! a region its clients can still reach. So besides its own probes, each
//! GeoDNS hears from the other vantage points once per probe interval:
//!
//! - the other GeoDNS servers of the config: their own probes' view of
//!   every edge (`probed_up` in their `/health`), never their decisions,
//!   so that views never echo between servers;
//! - the edges: what each sees of its region's other edges (`peers` in its
//!   `/status`, see [`config::report`]); an edge that publishes none, or
//!   reports on another region's edges, does not count for them.
//!
//! What they said goes on a [`Board`] with the time it was heard; a
//! vantage point silent for longer than `health.silent_after_ms` is
//! forgotten and stops counting, so a GeoDNS that hears from no one
//! decides on its own probes, as a single GeoDNS always did. The decision
//! itself ([`config::Quorum`]) is made by `crate::health::HealthView`,
//! which holds a board and runs the exchange: this module knows nothing of
//! it.
//!
//! How views travel is behind [`Transport`]: today [`http::HttpPolling`]
//! polls every vantage point's admin listener; a message bus can carry the
//! same reports without the board or the decision changing.

pub mod bus;
pub mod http;

use config::report::SeenEdge;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one vantage point says it sees, as heard once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Who: `geodns ns2`, `edge 127.0.2.3:9080`.
    pub vantage: String,
    /// The edges it sees, by data-plane address.
    pub edges: Vec<SeenEdge>,
}

/// How a GeoDNS hears the other vantage points: one exchange per probe
/// interval.
pub trait Transport: Send {
    /// Offers `own` (this server's own probes' view) to the others, and
    /// returns what the other vantage points said since the last exchange
    /// (nothing from those that did not answer). Polling over HTTP
    /// publishes nothing here (its view is served on `/health`) and asks
    /// each vantage point; a message bus would publish `own` and drain
    /// what it received.
    fn exchange(&mut self, own: &[SeenEdge]) -> impl Future<Output = Vec<Report>> + Send;
}

/// What the other vantage points said last, and when it was heard.
#[derive(Debug, Clone, Default)]
pub struct Board {
    heard: BTreeMap<String, Heard>,
}

#[derive(Debug, Clone)]
struct Heard {
    at: Instant,
    edges: HashMap<SocketAddr, bool>,
}

impl Board {
    /// Keeps `report` as what its vantage point says now, heard `at`;
    /// whether what it says changed.
    pub fn record(&mut self, report: Report, at: Instant) -> bool {
        let edges: HashMap<SocketAddr, bool> =
            report.edges.iter().map(|e| (e.addr, e.up)).collect();
        let changed = self
            .heard
            .get(&report.vantage)
            .is_none_or(|before| before.edges != edges);
        self.heard.insert(report.vantage, Heard { at, edges });
        changed
    }

    /// Forgets every vantage point not heard from within `silent_after`
    /// before `now`; their names.
    pub fn forget_silent(&mut self, now: Instant, silent_after: Duration) -> Vec<String> {
        let silent: Vec<String> = self
            .heard
            .iter()
            .filter(|(_, heard)| now.saturating_duration_since(heard.at) > silent_after)
            .map(|(vantage, _)| vantage.clone())
            .collect();
        for vantage in &silent {
            self.heard.remove(vantage);
        }
        silent
    }

    /// What every vantage point that counts says of `edge`, by name.
    pub fn views_of(&self, edge: SocketAddr) -> impl Iterator<Item = (&str, bool)> {
        self.heard
            .iter()
            .filter_map(move |(vantage, heard)| Some((vantage.as_str(), *heard.edges.get(&edge)?)))
    }

    /// How many vantage points count.
    pub fn len(&self) -> usize {
        self.heard.len()
    }

    /// Whether no vantage point counts.
    pub fn is_empty(&self) -> bool {
        self.heard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `addr` seen up or down (also for the transports' tests).
    pub(super) fn seen(addr: &str, up: bool) -> SeenEdge {
        SeenEdge {
            addr: addr.parse().unwrap(),
            up,
        }
    }

    fn report(vantage: &str, edges: &[(&str, bool)]) -> Report {
        Report {
            vantage: vantage.into(),
            edges: edges.iter().map(|(a, up)| seen(a, *up)).collect(),
        }
    }

    #[test]
    fn the_board_keeps_each_vantage_points_last_word_until_it_falls_silent() {
        let mut board = Board::default();
        let start = Instant::now();
        let edge: SocketAddr = "127.0.2.1:8080".parse().unwrap();
        assert!(board.record(report("geodns ns2", &[("127.0.2.1:8080", true)]), start));
        assert!(
            !board.record(
                report("geodns ns2", &[("127.0.2.1:8080", true)]),
                start + Duration::from_millis(500)
            ),
            "the same word again changes nothing"
        );
        assert!(board.record(
            report("geodns ns2", &[("127.0.2.1:8080", false)]),
            start + Duration::from_secs(1)
        ));
        assert!(board.record(
            report("edge 127.0.2.3:9080", &[("127.0.2.1:8080", true)]),
            start + Duration::from_secs(2)
        ));
        let views: Vec<(&str, bool)> = board.views_of(edge).collect();
        assert_eq!(
            views,
            [("edge 127.0.2.3:9080", true), ("geodns ns2", false)]
        );
        // An edge nobody reports on has no views.
        assert_eq!(board.views_of("127.0.9.9:8080".parse().unwrap()).count(), 0);

        // ns2 was last heard at 1 s: at 3.5 s, with 2 s of silence allowed,
        // it no longer counts; the edge heard at 2 s still does.
        let forgotten =
            board.forget_silent(start + Duration::from_millis(3500), Duration::from_secs(2));
        assert_eq!(forgotten, ["geodns ns2"]);
        assert_eq!(board.len(), 1);
        let views: Vec<(&str, bool)> = board.views_of(edge).collect();
        assert_eq!(views, [("edge 127.0.2.3:9080", true)]);
        assert!(
            board
                .forget_silent(start + Duration::from_secs(4), Duration::from_secs(2))
                .is_empty()
        );
        assert_eq!(
            board.forget_silent(start + Duration::from_secs(5), Duration::from_secs(2)),
            ["edge 127.0.2.3:9080"]
        );
        assert!(board.is_empty());
    }
}
