//! Where GeoDNS sends each country's clients: the last minute of steered
//! answers per (client country, region), from one or more GeoDNS servers'
//! counters ([`Counters::flows`]), summed, as shares of each country's
//! answers: the arcs of the live view's map and their list.
//!
//! Memory is bounded by the country table, not by clients: the servers
//! count per [`CountryId`] (every ISO code, `unknown`, `other`), and what
//! a server reports that names no such country or no region of the
//! config is dropped. What is shown is bounded again: the [`NAMED`]
//! countries with the most answers, the rest summed as `other`.

use crate::admin::Counters;
use crate::flows::{CountryId, OTHER, UNKNOWN, country_name, parse_country};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

use super::SAMPLES;

/// How many countries a snapshot names; the others are summed as `other`.
pub const NAMED: usize = 12;

/// One country's answers with one region in the last minute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowShare {
    /// An uppercase ISO code, `unknown` (no country: not drawn) or `other`
    /// (the countries past the [`NAMED`], and codes the table lacks).
    pub country: String,
    /// The region its clients were sent to.
    pub region: String,
    /// Answers in the last minute, every server's.
    pub answers: u64,
    /// `answers` over the country's answers (to every region).
    pub share: f64,
    /// `answers` over all steered answers (how thick its arc is).
    pub of_all: f64,
    /// The country's representative point (`config::countries`); `None`
    /// for `unknown` and `other`, which have no place on the map.
    pub latitude: Option<f64>,
    /// See `latitude`.
    pub longitude: Option<f64>,
}

/// Answers per (country, region index).
type Cells = HashMap<(CountryId, usize), u64>;

/// The last minute of steered answers per country and region.
pub struct Flows {
    regions: Vec<String>,
    /// Per sample: the answers since the sample before, per cell.
    window: VecDeque<Cells>,
    /// Per server: its counts at the last sample.
    last: Vec<Option<Cells>>,
}

impl Flows {
    /// For the regions `regions`.
    pub fn new(regions: Vec<String>) -> Flows {
        Flows {
            regions,
            window: VecDeque::new(),
            last: Vec::new(),
        }
    }

    /// A server's counts as cells, dropping what names no known country
    /// or region.
    fn cells(&self, counters: &Counters) -> Cells {
        let mut cells = Cells::new();
        for flow in &counters.flows {
            let region = self.regions.iter().position(|r| *r == flow.region);
            if let (Some(country), Some(region)) = (parse_country(&flow.country), region) {
                *cells.entry((country, region)).or_default() += flow.answers;
            }
        }
        cells
    }

    /// Adds one sample: what each server answered since the last one (a
    /// server that did not answer, `None`, adds nothing; one whose count
    /// went down, restarted or reloaded, adds nothing for that cell).
    pub fn record(&mut self, servers: &[Option<&Counters>]) {
        self.last.resize(servers.len(), None);
        let mut sample = Cells::new();
        for (i, server) in servers.iter().enumerate() {
            let now = server.map(|c| self.cells(c));
            if let (Some(before), Some(now)) = (&self.last[i], &now) {
                for (cell, n) in now {
                    let new = n.saturating_sub(before.get(cell).copied().unwrap_or(0));
                    if new > 0 {
                        *sample.entry(*cell).or_default() += new;
                    }
                }
            }
            self.last[i] = now;
        }
        if self.window.len() == SAMPLES {
            self.window.pop_front();
        }
        self.window.push_back(sample);
    }

    /// The window's flows: the [`NAMED`] countries with the most answers,
    /// then `other` and `unknown`; within a country, regions in order.
    pub fn shares(&self) -> Vec<FlowShare> {
        let mut sums = Cells::new();
        for sample in &self.window {
            for (cell, n) in sample {
                *sums.entry(*cell).or_default() += n;
            }
        }
        let mut countries: HashMap<&'static str, u64> = HashMap::new();
        for ((country, _), n) in &sums {
            *countries.entry(country_name(*country)).or_default() += n;
        }
        let mut ranked: Vec<(&'static str, u64)> = countries
            .into_iter()
            .filter(|(name, _)| *name != OTHER && *name != UNKNOWN)
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let named: Vec<&'static str> = ranked.iter().take(NAMED).map(|(n, _)| *n).collect();
        // Per shown country (named ones, then other, then unknown), per region.
        let shown: Vec<&'static str> = named.iter().copied().chain([OTHER, UNKNOWN]).collect();
        let mut table = vec![vec![0u64; self.regions.len()]; shown.len()];
        for ((country, region), n) in &sums {
            let name = country_name(*country);
            let row = shown.iter().position(|s| *s == name).unwrap_or(named.len());
            if let Some(cell) = table.get_mut(row).and_then(|r| r.get_mut(*region)) {
                *cell += n;
            }
        }
        let all: u64 = table.iter().flatten().sum();
        let ratio = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let mut flows = Vec::new();
        for (name, row) in shown.iter().zip(&table) {
            let total: u64 = row.iter().sum();
            let point = config::countries::country_centroid(name);
            for (region, &answers) in self.regions.iter().zip(row) {
                if answers == 0 {
                    continue;
                }
                flows.push(FlowShare {
                    country: (*name).to_owned(),
                    region: region.clone(),
                    answers,
                    share: ratio(answers, total),
                    of_all: ratio(answers, all),
                    latitude: point.map(|p| p.latitude),
                    longitude: point.map(|p| p.longitude),
                });
            }
        }
        flows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::FlowAnswers;

    fn server(flows: &[(&str, &str, u64)]) -> Counters {
        Counters {
            steered: Vec::new(),
            reloads: 0,
            reload_failures: 0,
            flows: flows
                .iter()
                .map(|(country, region, answers)| FlowAnswers {
                    country: (*country).into(),
                    region: (*region).into(),
                    answers: *answers,
                })
                .collect(),
        }
    }

    fn regions() -> Vec<String> {
        vec!["us-east".into(), "eu-west".into()]
    }

    #[test]
    fn shares_are_per_country_over_the_last_minute() {
        let mut flows = Flows::new(regions());
        let ns1 = server(&[("GB", "eu-west", 10), ("US", "us-east", 5)]);
        flows.record(&[Some(&ns1)]);
        // Answers before the first sample are not the last minute's.
        assert!(flows.shares().is_empty());
        let ns1 = server(&[
            ("GB", "eu-west", 19),
            ("GB", "us-east", 1),
            ("US", "us-east", 7),
            ("unknown", "us-east", 4),
            // Neither a country nor a region of the config: dropped.
            ("Narnia", "eu-west", 1000),
            ("GB", "mars", 1000),
        ]);
        flows.record(&[Some(&ns1)]);
        let shares = flows.shares();
        let find = |country: &str, region: &str| {
            shares
                .iter()
                .find(|s| s.country == country && s.region == region)
                .cloned()
        };
        let gb = find("GB", "eu-west").unwrap();
        assert_eq!(gb.answers, 9);
        assert!((gb.share - 0.9).abs() < 1e-9, "{gb:?}");
        assert!((gb.of_all - 9.0 / 16.0).abs() < 1e-9, "{gb:?}");
        assert_eq!(gb.latitude, Some(54.0));
        assert_eq!(find("GB", "us-east").unwrap().answers, 1);
        assert_eq!(find("US", "us-east").unwrap().answers, 2);
        let unknown = find("unknown", "us-east").unwrap();
        assert_eq!((unknown.answers, unknown.latitude), (4, None));
        assert_eq!(shares.len(), 4, "{shares:?}");
        assert_eq!(shares[0].country, "GB", "most answers first");
        // A minute on, the window is empty again.
        for _ in 0..SAMPLES {
            flows.record(&[Some(&ns1)]);
        }
        assert!(flows.shares().is_empty());
    }

    #[test]
    fn countries_past_the_named_ones_are_summed_as_other() {
        let codes: Vec<&str> = (0..40)
            .filter_map(|i| config::countries::country_code(i * 5))
            .collect();
        assert_eq!(codes.len(), 40);
        let mut flows = Flows::new(regions());
        let zero: Vec<(&str, &str, u64)> = codes.iter().map(|c| (*c, "eu-west", 0)).collect();
        flows.record(&[Some(&server(&zero))]);
        // Country i gets i + 1 answers; the database's own code `EU` is
        // `other` from the start.
        let mut counts: Vec<(&str, &str, u64)> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, "eu-west", i as u64 + 1))
            .collect();
        counts.push(("other", "eu-west", 3));
        flows.record(&[Some(&server(&counts))]);
        let shares = flows.shares();
        assert_eq!(shares.len(), NAMED + 1, "{shares:?}");
        assert_eq!(shares[0].country, codes[39]);
        let other = shares.iter().find(|s| s.country == OTHER).unwrap();
        let named: u64 = (40 - NAMED as u64 + 1..=40).sum();
        let total: u64 = (1..=40).sum::<u64>() + 3;
        assert_eq!(other.answers, total - named);
        assert_eq!(other.latitude, None);
    }

    #[test]
    fn a_restarted_or_silent_server_adds_nothing() {
        let mut flows = Flows::new(regions());
        flows.record(&[Some(&server(&[("GB", "eu-west", 50)])), None]);
        flows.record(&[
            Some(&server(&[("GB", "eu-west", 2)])),
            Some(&server(&[("US", "us-east", 9)])),
        ]);
        assert!(flows.shares().is_empty(), "{:?}", flows.shares());
        flows.record(&[
            Some(&server(&[("GB", "eu-west", 5)])),
            Some(&server(&[("US", "us-east", 10)])),
        ]);
        let shares = flows.shares();
        assert_eq!(shares.iter().map(|s| s.answers).collect::<Vec<_>>(), [3, 1]);
    }
}
