//! The product's performance targets, in one declarative table.
//!
//! Each scenario looks its targets up here ([`target`]) to judge what it
//! measured, so a target is stated once: the report's "target" column,
//! the verdicts, `bench targets` and the table in `bench/RESULTS.md`
//! (checked by a test to be exactly [`markdown`]'s output) all come from
//! [`TARGETS`]. Correctness ("no wrong answer", "no failed request") is
//! what the tests in `tests/` check, every run; it is here only for the
//! partition drill, whose failures are counted under load on real hosts.

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

/// A row of the table on one line: scenario, metric, comparison, value,
/// unit, what is measured (a macro only so that each row reads as one).
macro_rules! table {
    ($($scenario:literal $metric:literal $compare:ident $value:literal $unit:literal $what:literal;)*) => {
        [$(Target { scenario: $scenario, metric: $metric, what: $what, compare: Compare::$compare, value: $value, unit: $unit },)*]
    };
}

/// Every target the benchmarks hold the product to.
pub const TARGETS: [Target; 22] = table! {
    "http" "ratio" AtLeast 1.2 "×" "cache hits/s of 1 KiB and 100 KiB, over the faster of nginx and Varnish (with a lower p99)";
    "dns" "ratio" AtLeast 1.0 "×" "steered answers per server CPU-second, over gdnsd's";
    "dns-flood" "udp_answered" AtLeast 99.0 "%" "UDP probes answered while GeoDNS is flooded from a whole core";
    "dns-flood" "tcp_answered" AtLeast 100.0 "%" "TCP probes answered while GeoDNS is flooded";
    "coalesce" "origin_fetches" Exactly 1.0 "" "origin fetches for concurrent misses of one object";
    "memory" "cache_ratio" AtMost 1.1 "×" "resident memory of a full cache, over its byte budget";
    "connections" "per_connection" AtMost 64.0 "KiB" "resident memory per idle keep-alive connection";
    "outage" "steer_away" AtMost 2.0 "s" "GeoDNS steers clients away from a dead region, after the kill";
    "outage" "steer_back" AtMost 3.0 "s" "GeoDNS steers them back, after the region recovers";
    "partition" "dead_edge_listed" AtMost 2.0 "s" "a killed edge stays in the nameservers' answers, at most";
    "partition" "edge_kill_failed" Exactly 0.0 "" "GB requests failed while one of eu-west's two edges is dead";
    "partition" "nameserver_cut_steered" Exactly 0.0 "" "GB answers or requests away from eu-west while ns1 alone is cut from it";
    "partition" "steer_away" AtMost 3.0 "s" "GB steered to us-east, after eu-west is cut off from everyone";
    "partition" "steer_back" AtMost 3.0 "s" "GB steered back to eu-west, after the link heals";
    "partition" "unanswered" Exactly 0.0 "" "queries no nameserver answered while ns1 is dead";
    "partition" "origin_fetches" Exactly 1.0 "" "origin fetches for one new object asked through both eu-west edges at once";
    "purge" "p50" AtMost 50.0 "ms" "a purge by URL applied by every edge, its publish (in-process, no command start-up) to the last announcement, median";
    "purge" "p99" AtMost 150.0 "ms" "the same, 99th percentile";
    "purge" "catch_up" AtMost 1.0 "s" "an edge stopped during purges applied them all, after SIGCONT";
    "purge" "served_purged" Exactly 0.0 "" "objects purged while it was stopped still in its cache after";
    "disk" "hit_ratio" AtLeast 95.0 "%" "hit ratio of Zipf requests over a catalogue 4× the memory budget, after warm-up";
    "disk" "ratio" AtLeast 1.0 "×" "hits/s of that load, over nginx's proxy_cache on the same disk (aim 1.2×)";
};

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
            ("partition", "dead_edge_listed"),
            ("partition", "edge_kill_failed"),
            ("partition", "nameserver_cut_steered"),
            ("partition", "steer_away"),
            ("partition", "steer_back"),
            ("partition", "unanswered"),
            ("partition", "origin_fetches"),
            ("purge", "p50"),
            ("purge", "p99"),
            ("purge", "catch_up"),
            ("purge", "served_purged"),
            ("disk", "hit_ratio"),
            ("disk", "ratio"),
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
