//! The up/down state machine behind every health check.
//!
//! Both GeoDNS (probing edges) and edges (probing origins) apply the
//! `[health]` thresholds the same way, so the rule lives next to the
//! settings that define it.

/// The up/down state machine of one checked target. Pure: fed probe results, it says
/// when the state flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    up: bool,
    /// Consecutive results that disagree with `up`.
    against: u32,
}

impl Hysteresis {
    /// A target believed up until probes say otherwise: a freshly started
    /// checker keeps using it while its first probes run.
    pub fn new_up() -> Self {
        Hysteresis {
            up: true,
            against: 0,
        }
    }

    /// Whether the target is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one probe result; returns the new state if it flipped.
    pub fn record(&mut self, success: bool, down_after: u32, up_after: u32) -> Option<bool> {
        if success == self.up {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = if self.up { down_after } else { up_after };
        if self.against >= needed.max(1) {
            self.up = !self.up;
            self.against = 0;
            Some(self.up)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_down_after_n_failures_and_up_after_m_successes() {
        let mut h = Hysteresis::new_up();
        assert_eq!(h.record(false, 2, 3), None);
        assert!(h.is_up());
        assert_eq!(h.record(false, 2, 3), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), Some(true));
    }

    #[test]
    fn one_lost_probe_does_not_flap() {
        let mut h = Hysteresis::new_up();
        for _ in 0..10 {
            assert_eq!(h.record(false, 2, 2), None);
            assert_eq!(h.record(true, 2, 2), None);
        }
        assert!(h.is_up());
        // Same when down: one success among failures does not bring it back.
        h.record(false, 2, 2);
        h.record(false, 2, 2);
        assert!(!h.is_up());
        for _ in 0..10 {
            assert_eq!(h.record(true, 2, 2), None);
            assert_eq!(h.record(false, 2, 2), None);
        }
        assert!(!h.is_up());
    }

    #[test]
    fn a_threshold_of_one_flips_at_once() {
        let mut h = Hysteresis::new_up();
        assert_eq!(h.record(false, 1, 1), Some(false));
        assert_eq!(h.record(true, 1, 1), Some(true));
    }
}
