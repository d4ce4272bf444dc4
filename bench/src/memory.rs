//! Scenario `memory`: does the cache stay within its byte budget?
//!
//! The product promises that an edge's cache uses about the memory it is
//! given: resident memory within 10 % of `cache_max_bytes`, whatever the
//! objects. Counting only body bytes would be easy to meet and wrong (every
//! object also costs its headers, its metadata and the allocator's
//! rounding), so this scenario measures what the kernel says:
//!
//! 1. `meridian edge --listen … --origin … --cache-max-bytes B` runs in
//!    front of a [`CountingOrigin`];
//! 2. its resident memory (`VmRSS`) is read once it has served a request
//!    (the idle process: code, runtime, buffers);
//! 3. distinct cacheable objects totalling twice the budget are fetched
//!    through it, so it must evict;
//! 4. its resident memory is read again. The cache's share is the growth
//!    over the idle process, and that over the budget is the checked
//!    ratio; the whole process over the budget is shown too.
//!
//! Run once per object size: many small objects stress per-object
//! overhead, large ones the bodies.

use crate::BenchError;
use crate::http::{parse_size, size_label};
use crate::process::Launch;
use crate::process::{self, EdgeOnOrigin, Objects, sized_path};
use crate::progress::Progress;
use crate::report::{Row, Run, ScenarioReport, mib};
use futures::StreamExt;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// The target: cache memory over its budget.
const TARGET_RATIO: f64 = crate::targets::TARGETS[5].value;

/// Requests in flight while filling.
const CONCURRENCY: usize = 16;

/// The scenario's knobs; the flags of `bench memory` change its preset
/// ([`full`](Self::full) or [`smoke`](Self::smoke)), the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct MemoryOptions {
    /// The cache budget in bytes (1k, 64m, ...) [default: 64m; 4m with
    /// --smoke].
    #[arg(long = "budget", value_parser = |s: &str| parse_size(s).map(|b| b as u64), value_name = "BYTES", required = false)]
    pub budget_bytes: u64,
    /// Object sizes, comma-separated; one run each [default: 1k,100k].
    #[arg(long, value_delimiter = ',', value_parser = parse_size, value_name = "SIZES")]
    pub sizes: Vec<usize>,
    /// How many times the budget is fetched.
    #[arg(skip)]
    pub fill_factor: u64,
    /// Where and how long it may take to start, and which preset.
    #[command(flatten)]
    #[serde(flatten)]
    pub launch: Launch,
}

impl MemoryOptions {
    /// A 64 MiB budget, filled twice over with 1 KiB and with 100 KiB
    /// objects.
    pub fn full() -> Self {
        MemoryOptions {
            budget_bytes: 64 * 1024 * 1024,
            sizes: vec![1024, 100 * 1024],
            fill_factor: 2,
            launch: Launch::full(244),
        }
    }

    /// A quick run for CI: a 4 MiB budget.
    pub fn smoke() -> Self {
        MemoryOptions {
            budget_bytes: 4 * 1024 * 1024,
            launch: Self::full().launch.smoke(),
            ..MemoryOptions::full()
        }
    }
}

/// One run, at one object size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryRun {
    /// The object size.
    pub size: usize,
    /// Objects fetched.
    pub objects: u64,
    /// Fetches that did not get a 200 with the whole body.
    pub failed: u64,
    /// Resident memory before filling, in bytes.
    pub idle_rss: u64,
    /// Resident memory after filling, in bytes.
    pub full_rss: u64,
    /// Objects fetched again at the end, evenly spread over all of them.
    pub sampled: u64,
    /// Of those, how many were still cached (did not reach the origin).
    /// The cache holds at most a budget's worth, 1/fill of what was
    /// fetched: more hits than that mean it holds more than its budget.
    pub sampled_hits: u64,
}

impl MemoryRun {
    /// The most sampled objects that may still be cached: the budget's
    /// share of everything fetched, with 10 % slack for the sample.
    pub fn allowed_hits(&self, fill_factor: u64) -> u64 {
        (self.sampled * 11).div_ceil(10 * fill_factor.max(1))
    }

    /// The cache's memory (growth over idle) over the budget.
    pub fn cache_ratio(&self, budget: u64) -> f64 {
        self.full_rss.saturating_sub(self.idle_rss) as f64 / budget as f64
    }

    /// The whole process over the budget.
    pub fn process_ratio(&self, budget: u64) -> f64 {
        self.full_rss as f64 / budget as f64
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<MemoryOptions>,
    /// One run per size.
    pub runs: Vec<MemoryRun>,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

/// Resident memory of process `pid`, from `/proc/PID/status`.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// The part of it that is pages of files on disk it maps (`RssFile`: its
/// binary, and a disk cache's bodies), which the kernel may drop at will.
pub fn file_backed_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "RssFile:")
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&status, field)
}

fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &MemoryOptions) -> Result<MemoryReport, BenchError> {
    if options.sizes.is_empty() || options.budget_bytes == 0 || options.fill_factor == 0 {
        return Err(BenchError::invalid(
            "--sizes/--budget",
            "need a size and a budget",
        ));
    }
    let total: u64 = options
        .sizes
        .iter()
        .map(|&s| options.budget_bytes * options.fill_factor / s as u64)
        .sum();
    let mut progress = Progress::new(Duration::from_millis(total.max(1)));
    let mut runs = Vec::new();
    for &size in &options.sizes {
        let objects = (options.budget_bytes * options.fill_factor).div_ceil(size as u64);
        let label = format!("filling with {objects} objects of {}", size_label(size));
        let planned = Duration::from_millis(objects);
        let run = progress
            .step(label, planned, one_size(meridian, options, size, objects))
            .await?;
        progress.println(format!(
            "{}: cache {:.2}× its budget",
            size_label(size),
            run.cache_ratio(options.budget_bytes)
        ));
        runs.push(run);
    }
    drop(progress);
    Ok(summarize(meridian, options, runs))
}

async fn one_size(
    meridian: &Path,
    options: &MemoryOptions,
    size: usize,
    objects: u64,
) -> Result<MemoryRun, BenchError> {
    let origin = Objects::CACHEABLE.serve(options.launch.block)?;
    let path = sized_path(size);
    let warm = format!("{path}?warm");
    let budget = Some(options.budget_bytes);
    let EdgeOnOrigin { edge, listen } =
        EdgeOnOrigin::start(meridian, &options.launch, &origin, budget, &warm).await?;
    let idle_rss = resident_bytes(edge.pid()).unwrap_or(0);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{listen}{path}");
    let fetch = |i: u64| {
        let client = client.clone();
        let url = format!("{base}?object={i}");
        async move {
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok_and(|b| b.len() == size),
                _ => false,
            }
        }
    };
    let failed = futures::stream::iter(0..objects)
        .map(fetch)
        .buffer_unordered(CONCURRENCY)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await as u64;
    let full_rss = resident_bytes(edge.pid()).unwrap_or(0);
    // Which objects the cache kept is its eviction policy's business
    // (quick_cache's CLOCK-Pro keeps objects that came early unless newer
    // ones are asked for twice); how many it kept is the budget's.
    let sampled = objects.min(200);
    let before = process::fetches(&origin, &path);
    for n in 0..sampled {
        fetch(n * objects / sampled).await;
    }
    let sampled_hits = sampled - (process::fetches(&origin, &path) - before).min(sampled);
    if failed > 0 {
        edge.replay();
    }
    Ok(MemoryRun {
        size,
        objects,
        failed,
        idle_rss,
        full_rss,
        sampled,
        sampled_hits,
    })
}

/// Turns what was measured into the report, with its verdicts.
pub fn summarize(meridian: &Path, options: &MemoryOptions, runs: Vec<MemoryRun>) -> MemoryReport {
    let budget = options.budget_bytes;
    let mut failures = Vec::new();
    for run in &runs {
        let label = size_label(run.size);
        if run.failed > 0 {
            failures.push(format!(
                "{label}: {} of {} fetches failed",
                run.failed, run.objects
            ));
        }
        if run.full_rss == 0 {
            failures.push(format!("{label}: resident memory could not be read"));
        } else if run.cache_ratio(budget) > TARGET_RATIO {
            failures.push(format!(
                "{label}: the cache took {:.2}× its budget (target ≤ {TARGET_RATIO:.1}×)",
                run.cache_ratio(budget)
            ));
        }
        if run.sampled_hits > run.allowed_hits(options.fill_factor) {
            failures.push(format!(
                "{label}: {} of {} sampled objects were still cached, more than its budget \
                 allows ({})",
                run.sampled_hits,
                run.sampled,
                run.allowed_hits(options.fill_factor)
            ));
        }
    }
    MemoryReport {
        run: Run::new("memory", meridian, options),
        runs,
        passed: failures.is_empty(),
        failures,
    }
}

impl ScenarioReport for MemoryReport {
    fn title(&self) -> String {
        format!(
            "memory: a {} cache filled {}× over with distinct objects",
            mib(self.run.options.budget_bytes),
            self.run.options.fill_factor
        )
    }

    fn rows(&self) -> Vec<Row> {
        let budget = self.run.options.budget_bytes;
        let mut rows = Vec::new();
        for run in &self.runs {
            let label = size_label(run.size);
            rows.push(Row::info(
                format!("{label}: objects fetched"),
                format!("{} ({} failed)", run.objects, run.failed),
            ));
            rows.push(Row::info(
                format!("{label}: resident memory idle / full"),
                format!("{} / {}", mib(run.idle_rss), mib(run.full_rss)),
            ));
            rows.push(Row::checked(
                format!("{label}: cache memory / budget"),
                format!(
                    "{:.2}× ({} over idle)",
                    run.cache_ratio(budget),
                    mib(run.full_rss.saturating_sub(run.idle_rss))
                ),
                format!("≤ {TARGET_RATIO:.1}×"),
                run.full_rss > 0 && run.cache_ratio(budget) <= TARGET_RATIO,
            ));
            rows.push(Row::info(
                format!("{label}: whole process / budget"),
                format!("{:.2}×", run.process_ratio(budget)),
            ));
            let allowed = run.allowed_hits(self.run.options.fill_factor);
            rows.push(Row::checked(
                format!("{label}: sampled objects still cached"),
                format!("{} of {}", run.sampled_hits, run.sampled),
                format!("≤ {allowed}"),
                run.sampled_hits <= allowed,
            ));
        }
        rows
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmeridian\nVmPeak:\t  1000 kB\nVmRSS:\t   2048 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kb(status, "VmRSS:"), Some(2048 * 1024));
        assert_eq!(parse_status_kb("VmRSS: 12", "VmRSS:"), None);
        assert_eq!(parse_status_kb("nothing", "VmRSS:"), None);
        assert!(resident_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn the_cache_share_is_the_growth_over_idle() {
        let options = MemoryOptions {
            budget_bytes: 100 << 20,
            ..MemoryOptions::full()
        };
        let run = |full_mib: u64, hits: u64| MemoryRun {
            size: 1024,
            objects: 1000,
            failed: 0,
            idle_rss: 20 << 20,
            full_rss: full_mib << 20,
            sampled: 200,
            sampled_hits: hits,
        };
        let judge = |run: MemoryRun| summarize(Path::new("m"), &options, vec![run]);
        let report = judge(run(125, 100));
        assert!(report.passed, "{:?}", report.failures);
        assert!((report.runs[0].cache_ratio(100 << 20) - 1.05).abs() < 1e-9);
        assert!(!judge(run(135, 100)).passed);
        assert_eq!(run(125, 0).allowed_hits(2), 110);
        let failures = judge(run(125, 111)).failures;
        assert!(failures[0].contains("still cached"), "{failures:?}");
    }
}
