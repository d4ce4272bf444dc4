//! Latency statistics: percentiles over measured durations.
//!
//! Percentiles use the nearest-rank method: the p-th percentile of n sorted
//! samples is the one at rank ⌈p/100 · n⌉. It always returns a value that
//! was actually measured (no interpolation), which is what a latency
//! report should show.

use serde::Serialize;
use std::time::Duration;

/// The `p`-th percentile (0–100) of `sorted` (ascending), by nearest rank;
/// `None` when there are no samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let p = p.clamp(0.0, 100.0);
    // ⌈p/100 · n⌉ as a 1-based rank; rank 0 (p = 0) means the minimum.
    // The float lies in 0..=n, so the cast is exact.
    let rank = (p / 100.0 * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Milliseconds, as a float, for reports.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// How many samples.
    pub samples: usize,
    /// The fastest.
    pub min_ms: f64,
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarizes `samples` (in any order); all zeros when empty.
    pub fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |p: f64| percentile(&samples, p).map_or(0.0, millis);
        LatencySummary {
            samples: samples.len(),
            min_ms: at(0.0),
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let samples = ms(1..=100);
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&samples, 100.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(percentile(&samples, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&samples, 0.5), Some(Duration::from_millis(1)));
    }

    #[test]
    fn percentiles_of_few_samples_are_measured_values() {
        let samples = ms([10, 20, 30]);
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&ms([7]), 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn out_of_range_percentiles_are_clamped() {
        let samples = ms([1, 2, 3]);
        assert_eq!(percentile(&samples, -5.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&samples, 250.0), Some(Duration::from_millis(3)));
    }

    #[test]
    fn a_summary_sorts_its_samples() {
        let summary = LatencySummary::from_samples(ms([30, 10, 20, 40]));
        assert_eq!(summary.samples, 4);
        assert_eq!(summary.min_ms, 10.0);
        assert_eq!(summary.p50_ms, 20.0);
        assert_eq!(summary.p99_ms, 40.0);
        assert_eq!(summary.max_ms, 40.0);
        assert_eq!(
            LatencySummary::from_samples(Vec::new()),
            LatencySummary::default()
        );
    }
}
