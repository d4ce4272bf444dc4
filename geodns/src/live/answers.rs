//! Where GeoDNS sends clients: steered answers per region, from one or
//! more GeoDNS servers' counters ([`Counters`]), summed, as shares of the
//! last minute.

use crate::admin::Counters;
use serde::Serialize;
use std::collections::VecDeque;

use super::SAMPLES;

/// One region's share of the steered answers of the last minute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionShare {
    /// The region.
    pub region: String,
    /// Answers with its edges in the last minute, every server's.
    pub answers: u64,
    /// `answers` over all regions' (0 when there were none).
    pub share: f64,
}

/// The last minute of steered answers per region.
pub struct Steering {
    regions: Vec<String>,
    /// Per sample, per region (in `regions`' order): answers since the
    /// sample before.
    window: VecDeque<Vec<u64>>,
    /// Per server: its counts per region at the last sample.
    last: Vec<Option<Vec<u64>>>,
}

impl Steering {
    /// For the regions `regions`, in the order shares are given.
    pub fn new(regions: Vec<String>) -> Steering {
        Steering {
            regions,
            window: VecDeque::new(),
            last: Vec::new(),
        }
    }

    /// Adds one sample: what each server answered since the last one (a
    /// server that did not answer, `None`, or started again adds nothing).
    pub fn record(&mut self, servers: &[Option<&Counters>]) {
        self.last.resize(servers.len(), None);
        let mut sample = vec![0u64; self.regions.len()];
        for (server, last) in servers.iter().zip(&mut self.last) {
            let now = server.map(|c| {
                self.regions
                    .iter()
                    .map(|name| {
                        c.steered
                            .iter()
                            .find(|r| r.region == *name)
                            .map_or(0, |r| r.answers)
                    })
                    .collect::<Vec<u64>>()
            });
            if let (Some(before), Some(now)) = (last.as_ref(), now.as_ref()) {
                for (total, (b, n)) in sample.iter_mut().zip(before.iter().zip(now)) {
                    *total += n.saturating_sub(*b);
                }
            }
            *last = now;
        }
        if self.window.len() == SAMPLES {
            self.window.pop_front();
        }
        self.window.push_back(sample);
    }

    /// Each region's answers and share over the window.
    pub fn shares(&self) -> Vec<RegionShare> {
        let mut answers = vec![0u64; self.regions.len()];
        for sample in &self.window {
            for (total, n) in answers.iter_mut().zip(sample) {
                *total += n;
            }
        }
        let all: u64 = answers.iter().sum();
        self.regions
            .iter()
            .zip(answers)
            .map(|(region, answers)| RegionShare {
                region: region.clone(),
                answers,
                share: if all == 0 {
                    0.0
                } else {
                    answers as f64 / all as f64
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::RegionAnswers;

    fn server(counts: Option<&[(&str, u64)]>) -> Option<Counters> {
        counts.map(|counts| Counters {
            steered: counts
                .iter()
                .map(|(region, answers)| RegionAnswers {
                    region: (*region).into(),
                    answers: *answers,
                })
                .collect(),
            reloads: 0,
            reload_failures: 0,
            flows: Vec::new(),
        })
    }

    #[test]
    fn shares_sum_every_servers_new_answers() {
        let mut steering = Steering::new(vec!["us-east".into(), "eu-west".into()]);
        let first = [
            server(Some(&[("us-east", 100), ("eu-west", 50)])),
            server(Some(&[("us-east", 7)])),
        ];
        steering.record(&[first[0].as_ref(), first[1].as_ref()]);
        // Answers before the first sample are not the last minute's.
        assert!(steering.shares().iter().all(|s| s.answers == 0));
        let second = [
            server(Some(&[("us-east", 103), ("eu-west", 56)])),
            server(Some(&[("us-east", 8), ("eu-west", 0)])),
        ];
        steering.record(&[second[0].as_ref(), second[1].as_ref()]);
        // ns2 restarted (its count went down), ns1 did not answer.
        let third = server(Some(&[("us-east", 1)]));
        steering.record(&[None, third.as_ref()]);
        let shares = steering.shares();
        assert_eq!(shares[0].answers, 4);
        assert_eq!(shares[1].answers, 6);
        assert!((shares[1].share - 0.6).abs() < 1e-9, "{shares:?}");
        for _ in 0..SAMPLES {
            steering.record(&[]);
        }
        assert!(
            steering.shares().iter().all(|s| s.answers == 0),
            "a minute on"
        );
    }
}
