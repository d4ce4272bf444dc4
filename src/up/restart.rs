//! When `up` restarts a child that died without being asked to: the policy,
//! as a pure function of when it crashed before.
//!
//! A crashed edge or origin is started again after a delay that doubles
//! with each crash close to the last ones (0.5 s, 1 s, 2 s, 4 s, then 4 s
//! again), so a child that dies once comes back at once and one that keeps
//! dying does not spin a core. Crashes older than the window are forgotten:
//! a child that ran for a minute starts from the shortest delay again. The
//! sixth crash within the window is a crash loop: `up` gives up on that
//! child (state `failed`), says so in its log, and leaves it to `meridian
//! restore`. Kills by `meridian outage` are not crashes and never get here.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// How crashes are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The delay after a first crash.
    pub first_delay: Duration,
    /// The longest delay; each further crash in the window doubles it up
    /// to this.
    pub max_delay: Duration,
    /// This many crashes within `window` is a crash loop: no more restarts.
    pub crash_limit: usize,
    /// How far back crashes count.
    pub window: Duration,
}

/// The policy of `meridian up`.
pub const POLICY: RestartPolicy = RestartPolicy {
    first_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(4),
    crash_limit: 6,
    window: Duration::from_secs(60),
};

/// What to do about a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start it again after this delay; `crash` is its number within the
    /// window (1 for a first crash).
    RestartIn {
        /// How long to wait.
        delay: Duration,
        /// Crashes within the window, this one included.
        crash: usize,
    },
    /// A crash loop: `crashes` within the window. Leave it down.
    GiveUp {
        /// Crashes within the window, this one included.
        crashes: usize,
    },
}

/// One child's recent crashes.
#[derive(Debug, Default)]
pub struct Crashes {
    /// When it crashed, oldest first, none older than the window.
    times: VecDeque<Instant>,
}

impl Crashes {
    /// Records a crash at `now` and says what to do about it.
    pub fn record(&mut self, now: Instant, policy: &RestartPolicy) -> AfterCrash {
        while self
            .times
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > policy.window)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        let crash = self.times.len();
        if crash >= policy.crash_limit {
            return AfterCrash::GiveUp { crashes: crash };
        }
        // Doubling per crash; the exponent is capped so the multiplication
        // cannot overflow whatever the limit (2^16 half-seconds is beyond
        // any sensible cap anyway).
        let doublings = u32::try_from(crash - 1).unwrap_or(u32::MAX).min(16);
        let delay = policy
            .first_delay
            .saturating_mul(1 << doublings)
            .min(policy.max_delay);
        AfterCrash::RestartIn { delay, crash }
    }

    /// Forgets every crash: `restore` gives a child a fresh start.
    pub fn clear(&mut self) {
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart(ms: u64, crash: usize) -> AfterCrash {
        AfterCrash::RestartIn {
            delay: Duration::from_millis(ms),
            crash,
        }
    }

    /// Crash times (seconds after the first) → the decision after each.
    fn decisions(policy: &RestartPolicy, at: &[f64]) -> Vec<AfterCrash> {
        let start = Instant::now();
        let mut crashes = Crashes::default();
        at.iter()
            .map(|&s| crashes.record(start + Duration::from_secs_f64(s), policy))
            .collect()
    }

    #[test]
    fn delays_double_to_the_cap_and_a_crash_loop_is_given_up() {
        let table: &[(&[f64], &[AfterCrash])] = &[
            // One crash: back after half a second.
            (&[0.0], &[restart(500, 1)]),
            // Crashing at once after every start: 0.5, 1, 2, 4, 4 s, then
            // the sixth crash within a minute is a loop.
            (
                &[0.0, 0.6, 1.7, 3.8, 7.9, 12.0],
                &[
                    restart(500, 1),
                    restart(1000, 2),
                    restart(2000, 3),
                    restart(4000, 4),
                    restart(4000, 5),
                    AfterCrash::GiveUp { crashes: 6 },
                ],
            ),
            // Crashes more than a minute apart are each a first crash.
            (
                &[0.0, 61.0, 122.0, 183.0, 244.0, 305.0, 366.0],
                &[
                    restart(500, 1),
                    restart(500, 1),
                    restart(500, 1),
                    restart(500, 1),
                    restart(500, 1),
                    restart(500, 1),
                    restart(500, 1),
                ],
            ),
            // Old crashes leave the window: the count and the delay drop.
            (
                &[0.0, 1.0, 2.0, 50.0, 62.5],
                &[
                    restart(500, 1),
                    restart(1000, 2),
                    restart(2000, 3),
                    restart(4000, 4),
                    restart(1000, 2),
                ],
            ),
            // Exactly a window apart still counts.
            (&[0.0, 60.0], &[restart(500, 1), restart(1000, 2)]),
        ];
        for (at, expected) in table {
            assert_eq!(decisions(&POLICY, at), *expected, "crashes at {at:?}");
        }
    }

    #[test]
    fn restore_forgets_the_crashes() {
        let start = Instant::now();
        let mut crashes = Crashes::default();
        for s in 0..6 {
            crashes.record(start + Duration::from_secs(s), &POLICY);
        }
        crashes.clear();
        assert_eq!(
            crashes.record(start + Duration::from_secs(7), &POLICY),
            restart(500, 1)
        );
    }

    #[test]
    fn large_limits_and_delays_saturate_instead_of_overflowing() {
        let policy = RestartPolicy {
            first_delay: Duration::from_secs(u64::MAX / 4),
            max_delay: Duration::MAX,
            crash_limit: 100,
            window: Duration::MAX,
        };
        let at: Vec<f64> = (0..40).map(f64::from).collect();
        let last = *decisions(&policy, &at).last().unwrap();
        assert_eq!(
            last,
            AfterCrash::RestartIn {
                delay: Duration::MAX,
                crash: 40
            }
        );
    }
}
