//! Where GeoDNS sends clients: every GeoDNS server's steered answers per
//! region (its admin `/counters`), summed over the servers, as shares of
//! the last minute. The same answers also carry each server's reload
//! counts, which the event log follows.

use crate::address::reachable;
use geodns::admin::Counters;
use geodns::vantage::http::{MAX_REPORT_BYTES, read_bounded};
use serde::Serialize;
use std::collections::VecDeque;

/// Samples kept: a minute at the collection interval.
const SAMPLES: usize = super::history::SAMPLES;

/// One GeoDNS server's counters (`None`: it did not answer).
pub struct ServerCounters {
    /// The server (`ns1`).
    pub server: String,
    /// What it answered.
    pub counters: Option<Counters>,
}

/// Asks every GeoDNS server of `config` for its counters, all at once.
pub async fn ask_all(http: &reqwest::Client, config: &config::Config) -> Vec<ServerCounters> {
    let token = config.geodns.admin_token.as_deref();
    let asks = config.geodns.servers.iter().map(|server| async move {
        let url = format!("http://{}/counters", reachable(server.admin_listen));
        let mut request = http.get(url).timeout(crate::dns_views::VIEW_TIMEOUT);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let counters = async {
            let response = request.send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = read_bounded(response, MAX_REPORT_BYTES).await?;
            serde_json::from_slice(&body).ok()
        };
        ServerCounters {
            server: server.name.clone(),
            counters: counters.await,
        }
    });
    futures::future::join_all(asks).await
}

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
    /// server that did not answer, or started again, adds nothing).
    pub fn record(&mut self, servers: &[ServerCounters]) {
        self.last.resize(servers.len(), None);
        let mut sample = vec![0u64; self.regions.len()];
        for (server, last) in servers.iter().zip(&mut self.last) {
            let now = server.counters.as_ref().map(|c| {
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
    use geodns::admin::RegionAnswers;

    fn server(name: &str, counts: Option<&[(&str, u64)]>) -> ServerCounters {
        ServerCounters {
            server: name.into(),
            counters: counts.map(|counts| Counters {
                steered: counts
                    .iter()
                    .map(|(region, answers)| RegionAnswers {
                        region: (*region).into(),
                        answers: *answers,
                    })
                    .collect(),
                reloads: 0,
                reload_failures: 0,
            }),
        }
    }

    #[test]
    fn shares_sum_every_servers_new_answers() {
        let mut steering = Steering::new(vec!["us-east".into(), "eu-west".into()]);
        steering.record(&[
            server("ns1", Some(&[("us-east", 100), ("eu-west", 50)])),
            server("ns2", Some(&[("us-east", 7)])),
        ]);
        // Answers before the first sample are not the last minute's.
        assert!(steering.shares().iter().all(|s| s.answers == 0));
        steering.record(&[
            server("ns1", Some(&[("us-east", 103), ("eu-west", 56)])),
            server("ns2", Some(&[("us-east", 8), ("eu-west", 0)])),
        ]);
        // ns2 restarted (its count went down), ns1 did not answer.
        steering.record(&[server("ns1", None), server("ns2", Some(&[("us-east", 1)]))]);
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
