//! Latency percentiles, from an HdrHistogram.
//!
//! A run records millions of latencies; a histogram with fixed relative
//! precision (three significant digits, 1 µs to an hour) holds them in
//! bounded memory and gives any percentile, where a sorted vector of every
//! sample would grow with the run.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Milliseconds, as a float, for reports.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The median of `values`: the lower middle one for an even count; 0
/// for none. (Of a few rounds' numbers, where a histogram is overkill.)
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len().saturating_sub(1) / 2;
    values.get(middle).copied().unwrap_or(0.0)
}

/// Recorded latencies, in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // Bounds of 1 µs to one hour with 3 significant digits are valid
        // for HdrHistogram (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
        Latencies(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency (clamped to the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds every latency `other` recorded.
    pub fn merge(&mut self, other: &Latencies) {
        // Both have the same bounds, so nothing is out of range.
        let _ = self.0.add(&other.0);
    }

    /// How many were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (0–100) in milliseconds; 0 when empty.
    pub fn ms_at(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(p.clamp(0.0, 100.0) / 100.0) as f64 / 1000.0
    }

    /// The distribution, summarised.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            samples: usize::try_from(self.len()).unwrap_or(usize::MAX),
            min_ms: if self.is_empty() {
                0.0
            } else {
                self.0.min() as f64 / 1000.0
            },
            p50_ms: self.ms_at(50.0),
            p90_ms: self.ms_at(90.0),
            p99_ms: self.ms_at(99.0),
            max_ms: if self.is_empty() {
                0.0
            } else {
                self.0.max() as f64 / 1000.0
            },
        }
    }
}

impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(samples: I) -> Self {
        let mut latencies = Latencies::default();
        for sample in samples {
            latencies.record(sample);
        }
        latencies
    }
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
    pub fn from_samples(samples: impl IntoIterator<Item = Duration>) -> Self {
        samples.into_iter().collect::<Latencies>().summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_are_within_the_histograms_precision() {
        let latencies: Latencies = ms(1..=100).into_iter().collect();
        assert_eq!(latencies.len(), 100);
        for (p, expected) in [(50.0, 50.0), (99.0, 99.0), (100.0, 100.0), (0.0, 1.0)] {
            let got = latencies.ms_at(p);
            assert!((got - expected).abs() <= expected * 0.001, "p{p}: {got}");
        }
    }

    #[test]
    fn a_median_is_the_lower_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0, 4.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn a_summary_of_nothing_is_zeros() {
        assert_eq!(
            LatencySummary::from_samples(Vec::new()),
            LatencySummary::default()
        );
        let summary = LatencySummary::from_samples(ms([30, 10, 20, 40]));
        assert_eq!(summary.samples, 4);
        assert!((summary.min_ms - 10.0).abs() < 0.02, "{summary:?}");
        assert!((summary.max_ms - 40.0).abs() < 0.05, "{summary:?}");
    }
}
