//! What the disk tier counts, and whether its disk is working: the numbers
//! behind its metrics and the line `status` shows.
//!
//! A failing disk fails every operation; logging each would flood the log
//! at request rate. So a failure is logged when the disk goes from working
//! to failing (and when the reason changes), and recovery once; the
//! counters carry the rest.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the disk tier, all since the start.
#[derive(Debug, Default)]
pub struct DiskHealth {
    /// Objects written to disk.
    pub writes: AtomicU64,
    /// Objects not written because the writer queue was full.
    pub writes_dropped: AtomicU64,
    /// Objects evicted to stay within the disk budget.
    pub evictions: AtomicU64,
    /// Files found damaged (torn, truncated, changed) and deleted.
    pub damaged: AtomicU64,
    /// Operations the disk refused: writes, reads, deletions.
    pub errors: AtomicU64,
    /// How long the last index rebuild took, in milliseconds.
    pub rebuild_millis: AtomicU64,
    /// Why the disk is failing right now, if it is.
    failing: Mutex<Option<String>>,
}

impl DiskHealth {
    /// Counts `what` failing with `error`, logging it if the disk was
    /// working (or failing for another reason) until now.
    pub fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let reason = format!("{what}: {error}");
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.as_deref() != Some(reason.as_str()) {
            tracing::warn!("disk cache failing ({reason}); serving from memory and origins");
            *failing = Some(reason);
        }
    }

    /// Notes a write that succeeded: the disk works (again).
    pub fn succeeded(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.take().is_some() {
            tracing::info!("disk cache working again");
        }
    }

    /// Why the disk is failing, if it is: for `status`.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_shown_until_a_success() {
        let health = DiskHealth::default();
        assert_eq!(health.failing(), None);
        health.failed("write", &"No space left on device");
        health.failed("write", &"No space left on device");
        assert_eq!(health.errors.load(Ordering::Relaxed), 2);
        assert_eq!(
            health.failing().as_deref(),
            Some("write: No space left on device")
        );
        health.succeeded();
        assert_eq!(health.failing(), None);
    }
}
