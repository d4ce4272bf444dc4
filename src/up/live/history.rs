//! The last minute of each edge's counters, as the sparklines draw them:
//! requests per second, hit ratio, origin failovers per second and
//! response body bytes served per second (every path: hits, misses,
//! copied or zero-copy), one sample per collection.
//!
//! An edge's counters start again at zero when its process does; a sample
//! whose counter went down is a gap (`null`), never a negative rate.

use crate::up::control::{Status, TrafficView};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// Samples kept per series: a minute at the collection interval.
pub const SAMPLES: usize = geodns::live::SAMPLES;

/// One edge's series, oldest first; `None` where the edge did not answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Requests per second.
    pub rps: VecDeque<Option<f64>>,
    /// Cache hit ratio since the edge started (0..1).
    pub hit_ratio: VecDeque<Option<f64>>,
    /// Requests moved to another origin, per second.
    pub failovers: VecDeque<Option<f64>>,
    /// Response body bytes sent to clients, per second.
    pub bytes: VecDeque<Option<f64>>,
}

impl Series {
    fn push(
        &mut self,
        rps: Option<f64>,
        hit: Option<f64>,
        failovers: Option<f64>,
        bytes: Option<f64>,
    ) {
        // Two decimals are all a sparkline can show; fewer digits to send.
        let round = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
        for (series, value) in [
            (&mut self.rps, rps),
            (&mut self.hit_ratio, hit),
            (&mut self.failovers, failovers),
            (&mut self.bytes, bytes),
        ] {
            if series.len() == SAMPLES {
                series.pop_front();
            }
            series.push_back(round(value));
        }
    }
}

/// Every edge's series and last counters.
#[derive(Default)]
pub struct History {
    edges: HashMap<(String, IpAddr), (Series, Option<TrafficView>)>,
}

/// `(now - before) / seconds`, or `None` when either is unknown or the
/// counter went down (the edge started again).
fn rate(before: Option<u64>, now: Option<u64>, seconds: f64) -> Option<f64> {
    let (before, now) = (before?, now?);
    let delta = now.checked_sub(before)?;
    (seconds > 0.0).then(|| delta as f64 / seconds)
}

impl History {
    /// Adds one sample per edge of `status`, taken `elapsed` after the
    /// previous one.
    pub fn record(&mut self, status: &Status, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for region in &status.regions {
            for edge in &region.edges {
                let key = (region.region.clone(), edge.address);
                let (series, last) = self.edges.entry(key).or_default();
                let now = edge.traffic;
                let field = |t: Option<TrafficView>, f: fn(&TrafficView) -> u64| t.as_ref().map(f);
                series.push(
                    rate(
                        field(*last, |t| t.requests),
                        field(now, |t| t.requests),
                        seconds,
                    ),
                    edge.cache_hit_ratio,
                    rate(
                        field(*last, |t| t.origin_retries),
                        field(now, |t| t.origin_retries),
                        seconds,
                    ),
                    rate(
                        field(*last, |t| t.response_body_bytes),
                        field(now, |t| t.response_body_bytes),
                        seconds,
                    ),
                );
                *last = now;
            }
        }
    }

    /// The series of the edge at `address` of `region` (empty before its
    /// first sample).
    pub fn series(&self, region: &str, address: IpAddr) -> Series {
        self.edges
            .get(&(region.to_owned(), address))
            .map(|(series, _)| series.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_and_restarts_are_gaps() {
        assert_eq!(rate(Some(10), Some(30), 2.0), Some(10.0));
        assert_eq!(rate(Some(30), Some(5), 2.0), None, "a restarted edge");
        assert_eq!(rate(None, Some(5), 2.0), None);
        assert_eq!(rate(Some(5), None, 2.0), None);
        assert_eq!(rate(Some(5), Some(5), 0.0), None);
    }

    #[test]
    fn series_keep_a_minute() {
        let mut series = Series::default();
        for i in 0..SAMPLES + 5 {
            series.push(Some(i as f64), None, None, None);
        }
        assert_eq!(series.rps.len(), SAMPLES);
        assert_eq!(series.rps.front(), Some(&Some(5.0)));
        assert_eq!(series.hit_ratio.len(), SAMPLES);
    }
}
