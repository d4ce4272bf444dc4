//! The product's performance targets, in one declarative table.
//!
//! Each scenario looks its targets up here ([`target`]) to judge what it
//! measured, so a target is stated once: the report's "target" column,
//! the verdicts, `bench targets` and the table in `bench/RESULTS.md`
//! (checked by a test to be exactly [`markdown`]'s output) all come from
//! [`TARGETS`]. Correctness ("no wrong answer", "no failed request") is
//! not here: that is what the tests in `tests/` check, every run.

/// How a measured value is held against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The value must be at least the target.
    AtLeast,
    /// The value must be at most the target.
    AtMost,
    /// The value must be the target.
    Exactly,
}

/// One target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The scenario that measures it (`bench <scenario>`).
    pub scenario: &'static str,
    /// Its key within the scenario.
    pub metric: &'static str,
    /// What is measured, for people.
    pub what: &'static str,
    /// How the value is compared.
    pub compare: Compare,
    /// The target value.
    pub value: f64,
    /// The unit the value is in (`×`, `%`, `s`, `KiB`, or none).
    pub unit: &'static str,
}

/// Every target the benchmarks hold the product to.
pub const TARGETS: [Target; 9] = [
    Target {
        scenario: "http",
        metric: "ratio",
        what: "cache hits/s of 1 KiB and 100 KiB, over the faster of nginx and Varnish (with a lower p99)",
        compare: Compare::AtLeast,
        value: 1.2,
        unit: "×",
    },
    Target {
        scenario: "dns",
        metric: "ratio",
        what: "steered answers per server CPU-second, over gdnsd's",
        compare: Compare::AtLeast,
        value: 1.0,
        unit: "×",
    },
    Target {
        scenario: "dns-flood",
        metric: "udp_answered",
        what: "UDP probes answered while GeoDNS is flooded from a whole core",
        compare: Compare::AtLeast,
        value: 99.0,
        unit: "%",
    },
    Target {
        scenario: "dns-flood",
        metric: "tcp_answered",
        what: "TCP probes answered while GeoDNS is flooded",
        compare: Compare::AtLeast,
        value: 100.0,
        unit: "%",
    },
    Target {
        scenario: "coalesce",
        metric: "origin_fetches",
        what: "origin fetches for concurrent misses of one object",
        compare: Compare::Exactly,
        value: 1.0,
        unit: "",
    },
    Target {
        scenario: "memory",
        metric: "cache_ratio",
        what: "resident memory of a full cache, over its byte budget",
        compare: Compare::AtMost,
        value: 1.1,
        unit: "×",
    },
    Target {
        scenario: "connections",
        metric: "per_connection",
        what: "resident memory per idle keep-alive connection",
        compare: Compare::AtMost,
        value: 64.0,
        unit: "KiB",
    },
    Target {
        scenario: "outage",
        metric: "steer_away",
        what: "GeoDNS steers clients away from a dead region, after the kill",
        compare: Compare::AtMost,
        value: 2.0,
        unit: "s",
    },
    Target {
        scenario: "outage",
        metric: "steer_back",
        what: "GeoDNS steers them back, after the region recovers",
        compare: Compare::AtMost,
        value: 3.0,
        unit: "s",
    },
];

/// The target `metric` of `scenario`.
///
/// # Panics
/// If there is none: scenarios name their targets as constants, and the
/// tests below look every one of them up.
pub fn target(scenario: &str, metric: &str) -> &'static Target {
    match TARGETS
        .iter()
        .find(|t| t.scenario == scenario && t.metric == metric)
    {
        Some(target) => target,
        None => panic!("no target {scenario}/{metric} in the table"),
    }
}

impl Target {
    /// Whether `value` meets the target.
    pub fn met(&self, value: f64) -> bool {
        match self.compare {
            Compare::AtLeast => value >= self.value,
            Compare::AtMost => value <= self.value,
            Compare::Exactly => value == self.value,
        }
    }

    /// `≥ 1.2×`, `≤ 2 s`, `exactly 1`.
    pub fn describe(&self) -> String {
        let sign = match self.compare {
            Compare::AtLeast => "≥ ",
            Compare::AtMost => "≤ ",
            Compare::Exactly => "exactly ",
        };
        let space = if self.unit.is_empty() || self.unit == "×" || self.unit == "%" {
            ""
        } else {
            " "
        };
        format!("{sign}{}{space}{}", self.value, self.unit)
    }
}

/// The table as Markdown, as `bench/RESULTS.md` shows it.
pub fn markdown() -> String {
    let mut text = String::from("| scenario | what | target |\n|---|---|---|\n");
    for t in &TARGETS {
        text.push_str(&format!(
            "| `{}` | {} | {} |\n",
            t.scenario,
            t.what,
            t.describe()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_finds_its_targets() {
        for (scenario, metric) in [
            ("http", "ratio"),
            ("dns", "ratio"),
            ("dns-flood", "udp_answered"),
            ("dns-flood", "tcp_answered"),
            ("coalesce", "origin_fetches"),
            ("memory", "cache_ratio"),
            ("connections", "per_connection"),
            ("outage", "steer_away"),
            ("outage", "steer_back"),
        ] {
            target(scenario, metric);
        }
        // `memory` and `connections` read theirs as constants, by index.
        assert_eq!(
            (TARGETS[5].scenario, TARGETS[5].metric),
            ("memory", "cache_ratio")
        );
        assert_eq!(
            (TARGETS[6].scenario, TARGETS[6].metric),
            ("connections", "per_connection")
        );
    }

    #[test]
    fn the_http_target_is_what_the_product_promises() {
        let http = target("http", "ratio");
        assert_eq!(http.value, 1.2);
        assert!(!http.met(1.1) && http.met(1.2));
        assert_eq!(http.describe(), "≥ 1.2×");
        assert_eq!(target("outage", "steer_away").describe(), "≤ 2 s");
        assert_eq!(target("coalesce", "origin_fetches").describe(), "exactly 1");
    }

    #[test]
    fn results_md_shows_this_table() {
        let results = include_str!("../RESULTS.md");
        assert!(
            results.contains(&markdown()),
            "bench/RESULTS.md must hold the targets table as `bench targets` prints it:\n{}",
            markdown()
        );
    }
}
