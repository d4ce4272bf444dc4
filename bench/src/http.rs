//! Scenario `http`: cache hits per second, latency and CPU, side by side.
//!
//! The product promises an edge that serves cache hits faster than the
//! caches its users would otherwise pick. This scenario measures that on
//! the real binary:
//!
//! 1. a [`CountingOrigin`] serves `/sized/N` objects, cacheable for an hour;
//! 2. `meridian edge --listen … --origin …` (ad-hoc mode) runs in front of
//!    it, pinned to one core, and with `--compare` so do nginx
//!    (`proxy_cache`) and Varnish (`-s malloc`), one after another, pinned
//!    to the same core and tuned as [`crate::peers`] describes;
//! 3. for each object size, each server is warmed (the object fetched until
//!    the origin stops seeing requests for it), then loaded for the run's
//!    duration by the load generator on the other core;
//! 4. the report gives requests/s, p50/p99/p99.9 latency, the server's CPU
//!    time per request (from `/proc`), and whether any request reached the
//!    origin during the run (it must not: these are cache hits);
//! 5. with `--compare`, Meridian's requests/s over the faster peer's, and
//!    the two p99s, at each size; the targets are checked at 1 KiB and
//!    100 KiB.
//!
//! The pure part, [`summarize`], turns measurements into the report.

use crate::BenchError;
use crate::cpu::CpuTime;
use crate::loadgen::{LoadChoice, LoadGenerator, LoadResult, LoadSpec};
use crate::peers::{HttpPeer, Skipped};
use crate::pinning::Cores;
use crate::process::Launch;
use crate::process::{self, fetches, sized_path};
use crate::report::{Row, Run, ScenarioReport};
use crate::stats::median;
use crate::targets::target;
use crate::turns::{Schedule, UnderTest, take_turns};
use kit::{Process, ScriptedOrigin};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The `Host` every request carries.
const HOST: &str = "bench.meridian.test";

/// The sizes at which the speed target (`targets`: `http`/`ratio`)
/// applies.
const TARGET_SIZES: [usize; 2] = [1024, 100 * 1024];

/// The scenario's knobs; the flags of `bench http` change its preset
/// ([`full`](Self::full) or [`smoke`](Self::smoke)), the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct HttpOptions {
    /// Object sizes, comma-separated (1k, 100k, 1m or bytes) [default:
    /// 1k,100k,1m].
    #[arg(long, value_delimiter = ',', value_parser = parse_size, value_name = "SIZES", display_order = 1)]
    pub sizes: Vec<usize>,
    /// Seconds of load per server, size and round [default: 5; 1 with
    /// --smoke].
    #[arg(long = "duration", value_parser = crate::parse_seconds_as_ms, value_name = "SECS", required = false, display_order = 2)]
    pub duration_ms: u64,
    /// Rounds; the servers take turns and the report gives medians
    /// [default: 3; 1 with --smoke].
    // Each server's median: a noisy machine spoils single runs.
    #[arg(long, value_name = "N", required = false, display_order = 3)]
    pub rounds: usize,
    /// Load before the first round, not measured (lets every server reach
    /// its steady state: threads started, buffers grown), in ms.
    #[arg(skip)]
    pub warmup_ms: u64,
    /// Concurrent keep-alive connections [default: 32; 8 with --smoke].
    #[arg(long, value_name = "N", required = false, display_order = 4)]
    pub connections: usize,
    /// Also run nginx (proxy_cache) and Varnish (-s malloc), tuned, on the
    /// same core in front of the same origin, and print the ratios.
    #[arg(long, display_order = 0)]
    pub compare: bool,
    /// The load generator: wrk when installed (auto), or the built-in one.
    #[arg(long, value_enum, default_value_t = LoadChoice::Auto, display_order = 5)]
    pub load: LoadChoice,
    /// Every server's cache budget, in bytes.
    #[arg(skip)]
    pub cache_bytes: u64,
    /// Where and how long it may take to start, and which preset.
    #[command(flatten)]
    #[serde(flatten)]
    pub launch: Launch,
}

impl HttpOptions {
    /// The benchmark as the product brief states it: 1 KiB, 100 KiB and
    /// 1 MiB hits, three rounds of 5 s each, 32 connections.
    pub fn full() -> Self {
        HttpOptions {
            sizes: vec![1024, 100 * 1024, 1024 * 1024],
            duration_ms: 5_000,
            rounds: 3,
            warmup_ms: 1_000,
            connections: 32,
            compare: false,
            load: LoadChoice::Auto,
            cache_bytes: 256 * 1024 * 1024,
            launch: Launch::full(240),
        }
    }

    /// A quick run for CI: every size for one second, once.
    pub fn smoke() -> Self {
        HttpOptions {
            duration_ms: 1000,
            rounds: 1,
            warmup_ms: 200,
            connections: 8,
            launch: Self::full().launch.smoke(),
            ..HttpOptions::full()
        }
    }
}

/// Which server a measurement is of; serialized as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    /// Meridian's edge.
    Meridian,
    /// A peer.
    #[serde(untagged)]
    Peer(HttpPeer),
}

impl Server {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Server::Meridian => "meridian",
            Server::Peer(peer) => peer.name(),
        }
    }
}

/// One run of one server at one size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Round {
    /// What the load generator saw.
    pub load: LoadResult,
    /// The server's CPU time during the run; `None` when `/proc` could not
    /// tell.
    pub cpu: Option<CpuTime>,
    /// Requests for the object that reached the origin during the run
    /// (0: every response was a cache hit).
    pub origin_fetches: u64,
}

impl Round {
    /// Server CPU per request, in microseconds.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.load.requests > 0)
            .then(|| cpu.total().as_secs_f64() * 1e6 / self.load.requests as f64)
    }
}

/// One server at one size, over all rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    /// The server.
    pub server: Server,
    /// The object size in bytes.
    pub size: usize,
    /// Every round's numbers.
    pub rounds: Vec<Round>,
    /// The median of each number over the rounds (errors, bad statuses
    /// and hits are totals).
    pub median: LoadResult,
    /// The median server CPU per request, in microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// Requests that reached the origin during all rounds.
    pub origin_fetches: u64,
}

impl Measurement {
    /// Summarizes the rounds of `server` at `size`.
    pub fn from_rounds(server: Server, size: usize, rounds: Vec<Round>) -> Measurement {
        let of =
            |field: fn(&LoadResult) -> f64| median(rounds.iter().map(|r| field(&r.load)).collect());
        let median_load = LoadResult {
            requests: of(|l| l.requests as f64) as u64,
            errors: rounds.iter().map(|r| r.load.errors).sum(),
            bad_status: rounds.iter().map(|r| r.load.bad_status).sum(),
            seconds: of(|l| l.seconds),
            requests_per_second: of(|l| l.requests_per_second),
            p50_ms: of(|l| l.p50_ms),
            p99_ms: of(|l| l.p99_ms),
            p999_ms: of(|l| l.p999_ms),
            hits: rounds.iter().map(|r| r.load.hits).sum(),
        };
        let cpu: Vec<f64> = rounds
            .iter()
            .filter_map(Round::cpu_us_per_request)
            .collect();
        Measurement {
            server,
            size,
            median: median_load,
            cpu_us_per_request: (!cpu.is_empty()).then(|| median(cpu)),
            origin_fetches: rounds.iter().map(|r| r.origin_fetches).sum(),
            rounds,
        }
    }

    /// Whether every round was clean: no errors, no bad statuses, all hits.
    pub fn clean(&self) -> bool {
        self.median.errors == 0 && self.median.bad_status == 0 && self.origin_fetches == 0
    }
}

/// Meridian against the faster peer at one size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The object size.
    pub size: usize,
    /// The peer with the most requests/s at this size.
    pub best_peer: Server,
    /// Meridian's requests/s over the peer's.
    pub ratio: f64,
    /// Meridian's p99, in ms.
    pub meridian_p99_ms: f64,
    /// The peer's p99, in ms.
    pub peer_p99_ms: f64,
    /// Whether the targets apply at this size.
    pub checked: bool,
    /// Whether they were met (always `true` when not checked).
    pub met: bool,
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<HttpOptions>,
    /// The load generator and its settings.
    pub load_generator: String,
    /// Which cores ran what.
    pub cores: String,
    /// Every server at every size.
    pub measurements: Vec<Measurement>,
    /// Meridian against the faster peer, per size (with `--compare`).
    pub comparisons: Vec<Comparison>,
    /// Peers that could not run, and why.
    pub skipped: Vec<Skipped>,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

/// "1 KiB", "100 KiB", "1 MiB", or bytes.
pub fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Parses a size: `1024`, `1k`, `100k`, `1m` (powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix(['k', 'm']) {
        Some(digits) if lower.ends_with('k') => (digits, 1024),
        Some(digits) => (digits, 1024 * 1024),
        None => (lower.as_str(), 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|&n| n > 0 && n <= process::MAX_SIZED_BYTES)
        .ok_or_else(|| format!("{text:?} is not a size between 1 and 64m (e.g. 1k, 100k, 1m)"))
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &HttpOptions) -> Result<HttpReport, BenchError> {
    if options.sizes.is_empty() || options.connections == 0 || options.duration_ms == 0 {
        return Err(BenchError::invalid(
            "--sizes/--connections/--duration",
            "need at least one size, one connection and a duration",
        ));
    }
    let (generator, cores) = LoadGenerator::prepare(options.load)?;
    let origin = process::Objects::CACHEABLE.serve(options.launch.block)?;

    let mut servers = vec![Server::Meridian];
    let mut skipped = Vec::new();
    if options.compare {
        for peer in HttpPeer::ALL {
            match peer.locate() {
                Ok(_) => servers.push(Server::Peer(peer)),
                Err(skip) => skipped.push(skip),
            }
        }
    }
    let mut running = Vec::new();
    for (host, &server) in (1..).zip(&servers) {
        let workdir = crate::peers::workdir()?;
        let listen = process::addr(options.launch.block, host, 8080);
        let mut process = start_server(
            server,
            meridian,
            workdir.path(),
            listen,
            &origin,
            options,
            &cores,
        )?;
        process::wait_healthy(
            &mut process,
            listen,
            &sized_path(options.sizes[0]),
            options.launch.ready_timeout(),
        )
        .await?;
        for &size in &options.sizes {
            warm(listen, &sized_path(size), &origin).await?;
        }
        running.push(UnderTest {
            server,
            listen,
            process,
            workdir,
        });
    }

    let schedule = Schedule {
        warmup: Duration::from_millis(options.warmup_ms),
        per_run: Duration::from_millis(options.duration_ms),
        rounds: options.rounds,
    };
    let label = |server: &Server, &size: &usize| format!("{} {}", server.name(), size_label(size));
    let turn = async |target: &UnderTest<Server>, &size: &usize, duration| {
        let path = sized_path(size);
        let spec = LoadSpec {
            addr: target.listen,
            path: path.clone(),
            host: HOST.to_owned(),
            connections: options.connections,
            duration,
            zipf: None,
        };
        let before = fetches(&origin, &path);
        let (load, cpu) = target.cpu_during(generator.run(&spec, &cores)).await;
        let origin_fetches = fetches(&origin, &path) - before;
        let load = load.map_err(|e| BenchError::invalid("load generator", e))?;
        Ok(Round {
            load,
            cpu,
            origin_fetches,
        })
    };
    let sizes = &options.sizes;
    let turns = take_turns(&running, sizes, schedule, &skipped, label, turn).await?;
    let mut measurements = Vec::new();
    for (target, at_sizes) in running.iter().zip(turns) {
        for (&size, rounds) in sizes.iter().zip(at_sizes) {
            let measurement = Measurement::from_rounds(target.server, size, rounds);
            if !measurement.clean() {
                target.process.replay();
            }
            measurements.push(measurement);
        }
    }
    // Every server (and its children) is killed here.
    drop(running);
    Ok(summarize(
        meridian,
        options,
        generator.describe(options.connections),
        cores.describe(),
        measurements,
        skipped,
    ))
}

/// Starts `server` in front of `origin` on `listen`, pinned to the server
/// core. Its scratch files go in `workdir`.
fn start_server(
    server: Server,
    meridian: &Path,
    workdir: &Path,
    listen: SocketAddr,
    origin: &ScriptedOrigin,
    options: &HttpOptions,
    cores: &Cores,
) -> Result<Process, BenchError> {
    let (program, args) = match server {
        Server::Meridian => cores.server_command(
            meridian,
            &process::edge_args(listen, origin.addr, Some(options.cache_bytes)),
        ),
        Server::Peer(peer) => {
            let program = peer
                .locate()
                .map_err(|skip| BenchError::invalid("peer", skip.reason))?;
            let args = peer.prepare(workdir, listen, origin.addr, options.cache_bytes)?;
            cores.server_command(&program, &args)
        }
    };
    process::spawn(Path::new(&program), &args)
}

/// Fetches `path` through the server until it is a cache hit: until a GET
/// no longer reaches the origin. Waits for the server to come up first.
async fn warm(listen: SocketAddr, path: &str, origin: &ScriptedOrigin) -> Result<(), BenchError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("http://{listen}{path}");
    let started = std::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        let before = fetches(origin, path);
        match client.get(&url).header("host", HOST).send().await {
            Ok(response) if response.status() == 200 => {
                let complete = response.bytes().await.is_ok();
                if complete && before > 0 && fetches(origin, path) == before {
                    return Ok(());
                }
                last = "not yet cached".to_owned();
            }
            Ok(response) => last = format!("answered {}", response.status()),
            Err(error) => last = process::error_chain(&error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::invalid(
        "warm-up",
        format!("{url} never became a cache hit (last: {last})"),
    ))
}

/// "65,432 req/s, p50 0.41 ms, p99 1.85 ms, p99.9 3.10 ms", then the CPU
/// per request, errors and origin fetches when there are any.
fn describe_numbers(
    load: &LoadResult,
    cpu_us_per_request: Option<f64>,
    origin_fetches: u64,
) -> String {
    let mut text = format!(
        "{} req/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        thousands(load.requests_per_second),
        load.p50_ms,
        load.p99_ms,
        load.p999_ms
    );
    if let Some(cpu) = cpu_us_per_request {
        text.push_str(&format!(", {cpu:.1} µs CPU/req"));
    }
    if load.errors > 0 || load.bad_status > 0 {
        text.push_str(&format!(
            ", {} errors, {} bad statuses",
            load.errors, load.bad_status
        ));
    }
    if origin_fetches > 0 {
        text.push_str(&format!(", {origin_fetches} origin fetches"));
    }
    text
}

/// A measurement's medians on one line.
pub fn describe(m: &Measurement) -> String {
    describe_numbers(&m.median, m.cpu_us_per_request, m.origin_fetches)
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let numbers = describe_numbers(&self.load, self.cpu_us_per_request(), self.origin_fetches);
        f.write_str(&numbers)
    }
}

/// 65432.1 → "65,432".
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Compares Meridian with the faster clean peer at every size.
fn compare(measurements: &[Measurement], sizes: &[usize]) -> Vec<Comparison> {
    sizes
        .iter()
        .filter_map(|&size| {
            let at_size = |want: fn(&Server) -> bool| {
                measurements
                    .iter()
                    .filter(move |m| m.size == size && want(&m.server))
            };
            let ours = at_size(|s| *s == Server::Meridian).next()?;
            let peer = at_size(|s| *s != Server::Meridian)
                .filter(|m| m.clean())
                .max_by(|a, b| {
                    a.median
                        .requests_per_second
                        .total_cmp(&b.median.requests_per_second)
                })?;
            let ratio = ours.median.requests_per_second / peer.median.requests_per_second.max(1e-9);
            let checked = TARGET_SIZES.contains(&size);
            let met = !checked
                || (ours.clean()
                    && target("http", "ratio").met(ratio)
                    && ours.median.p99_ms < peer.median.p99_ms);
            Some(Comparison {
                size,
                best_peer: peer.server,
                ratio,
                meridian_p99_ms: ours.median.p99_ms,
                peer_p99_ms: peer.median.p99_ms,
                checked,
                met,
            })
        })
        .collect()
}

/// Turns what was measured into the report, with its verdicts.
pub fn summarize(
    meridian: &Path,
    options: &HttpOptions,
    load_generator: String,
    cores: String,
    measurements: Vec<Measurement>,
    skipped: Vec<Skipped>,
) -> HttpReport {
    let comparisons = compare(&measurements, &options.sizes);
    let mut failures = Vec::new();
    for m in measurements.iter().filter(|m| m.server == Server::Meridian) {
        if !m.clean() {
            failures.push(format!(
                "meridian at {}: {} transport errors, {} bad statuses, {} origin fetches \
                 (every request must be a cache hit)",
                size_label(m.size),
                m.median.errors,
                m.median.bad_status,
                m.origin_fetches
            ));
        }
    }
    for c in comparisons.iter().filter(|c| !c.met) {
        failures.push(format!(
            "at {}: meridian served {:.2}× {}'s requests/s with p99 {:.2} ms against {:.2} ms \
             (target {} with a lower p99)",
            size_label(c.size),
            c.ratio,
            c.best_peer.name(),
            c.meridian_p99_ms,
            c.peer_p99_ms,
            target("http", "ratio").describe()
        ));
    }
    HttpReport {
        run: Run::new("http", meridian, options),
        load_generator,
        cores,
        measurements,
        comparisons,
        skipped,
        passed: failures.is_empty(),
        failures,
    }
}

impl ScenarioReport for HttpReport {
    fn title(&self) -> String {
        format!(
            "http: cache hits, {} connections, median of {} rounds of {:.1} s; load: {}; {}",
            self.run.options.connections,
            self.run.options.rounds,
            self.run.options.duration_ms as f64 / 1000.0,
            self.load_generator,
            self.cores
        )
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for &size in &self.run.options.sizes {
            for m in self.measurements.iter().filter(|m| m.size == size) {
                let label = format!("{} {}", size_label(size), m.server.name());
                if m.server == Server::Meridian {
                    rows.push(Row::checked(
                        label,
                        describe(m),
                        "all hits, no errors",
                        m.clean(),
                    ));
                } else {
                    rows.push(Row::info(label, describe(m)));
                }
            }
            if let Some(c) = self.comparisons.iter().find(|c| c.size == size) {
                let label = format!("{} meridian / {}", size_label(size), c.best_peer.name());
                let value = format!(
                    "{:.2}× req/s; p99 {:.2} ms vs {:.2} ms",
                    c.ratio, c.meridian_p99_ms, c.peer_p99_ms
                );
                if c.checked {
                    let goal = format!("{}, lower p99", target("http", "ratio").describe());
                    rows.push(Row::checked(label, value, goal, c.met));
                } else {
                    rows.push(Row::info(label, value));
                }
            }
        }
        rows
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }

    fn notes(&self) -> Vec<String> {
        self.skipped.iter().map(Skipped::note).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    /// A 5 s round at `rps` with `p99` (ms) and `errors`, costing 10 µs of
    /// CPU per request.
    fn round(rps: f64, p99: f64, errors: u64) -> Round {
        let load = LoadResult {
            requests: (rps * 5.0) as u64,
            errors,
            seconds: 5.0,
            requests_per_second: rps,
            p50_ms: p99 / 4.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            ..LoadResult::default()
        };
        let user = Duration::from_secs_f64(rps * 5.0 * 10e-6);
        let cpu = Some(CpuTime {
            user,
            system: Duration::ZERO,
        });
        Round {
            load,
            cpu,
            origin_fetches: 0,
        }
    }

    fn measured(server: Server, size: usize, rps: f64, p99: f64) -> Measurement {
        Measurement::from_rounds(server, size, vec![round(rps, p99, 0)])
    }

    const NGINX: Server = Server::Peer(HttpPeer::Nginx);
    const VARNISH: Server = Server::Peer(HttpPeer::Varnish);

    #[test]
    fn rounds_are_summarized_by_their_medians() {
        let rounds = vec![
            round(70e3, 9.0, 0),
            round(40e3, 1.0, 1),
            round(65e3, 2.0, 0),
        ];
        let m = Measurement::from_rounds(Server::Meridian, 1024, rounds);
        assert_eq!(m.median.requests_per_second, 65_000.0);
        assert_eq!(m.median.p99_ms, 2.0);
        assert_eq!(m.median.errors, 1);
        assert!(!m.clean());
        assert!((m.cpu_us_per_request.unwrap() - 10.0).abs() < 1e-6);
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("100K"), Ok(102_400));
        assert_eq!(parse_size("1m"), Ok(1_048_576));
        assert_eq!(parse_size("777"), Ok(777));
        assert!(parse_size("0").is_err());
        assert!(parse_size("65m").is_err());
        assert!(parse_size("big").is_err());
        assert_eq!(size_label(1024), "1 KiB");
        assert_eq!(size_label(102_400), "100 KiB");
        assert_eq!(size_label(1_048_576), "1 MiB");
        assert_eq!(size_label(777), "777 B");
        assert_eq!(thousands(65_432.4), "65,432");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }

    #[test]
    fn meridian_is_compared_with_the_faster_clean_peer() {
        let options = HttpOptions {
            sizes: vec![1024, 102_400, 1_048_576],
            compare: true,
            ..HttpOptions::full()
        };
        let mut broken_varnish = measured(VARNISH, 1024, 500_000.0, 0.1);
        broken_varnish.median.errors = 3;
        let report = summarize(
            Path::new("meridian"),
            &options,
            "wrk".into(),
            "pinned".into(),
            vec![
                measured(Server::Meridian, 1024, 72_000.0, 1.0),
                measured(NGINX, 1024, 60_000.0, 1.2),
                broken_varnish,
                measured(Server::Meridian, 102_400, 20_000.0, 2.0),
                measured(NGINX, 102_400, 25_000.0, 1.5),
                measured(VARNISH, 102_400, 22_000.0, 1.9),
                measured(Server::Meridian, 1_048_576, 1_000.0, 40.0),
                measured(VARNISH, 1_048_576, 2_000.0, 30.0),
            ],
            Vec::new(),
        );
        let [small, medium, large] = report.comparisons.as_slice() else {
            panic!("{:?}", report.comparisons)
        };
        let json = serde_json::to_value(&report.comparisons).unwrap();
        assert_eq!(json[0]["best_peer"], "nginx");
        let json = serde_json::to_value(&report.measurements).unwrap();
        assert_eq!(json[0]["server"], "meridian");
        // The broken Varnish run is not a fair peer.
        assert_eq!(small.best_peer, NGINX);
        assert!((small.ratio - 1.2).abs() < 1e-9);
        assert!(small.met);
        assert_eq!(medium.best_peer, NGINX);
        assert!(!medium.met);
        // 1 MiB is reported but not a target.
        assert!(!large.checked && large.met);
        assert!(!report.passed);
        let [failure] = report.failures.as_slice() else {
            panic!("{:?}", report.failures)
        };
        assert!(failure.contains("100 KiB"), "{failure}");

        let rows = report.rows();
        let ratios = rows.iter().filter(|r| r.metric.contains(" / "));
        let verdicts: Vec<_> = ratios.map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Pass, Verdict::Fail, Verdict::Info]);
        assert!(rows[0].value.contains("72,000 req/s"), "{:?}", rows[0]);
        assert!(rows[0].value.contains("10.0 µs CPU/req"), "{:?}", rows[0]);
    }

    #[test]
    fn a_miss_or_an_error_fails_meridian_even_alone() {
        let mut run = measured(Server::Meridian, 1024, 50_000.0, 1.0);
        run.origin_fetches = 2;
        run.median.requests = 7;
        let report = summarize(
            Path::new("meridian"),
            &HttpOptions::smoke(),
            "builtin".into(),
            "not pinned".into(),
            vec![run],
            Vec::new(),
        );
        assert!(report.comparisons.is_empty());
        assert!(!report.passed);
        assert!(report.failures[0].contains("2 origin fetches"));
    }
}
