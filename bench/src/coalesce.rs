//! Scenario `coalesce`: N concurrent misses for one object, one origin fetch.
//!
//! The product promises that any number of concurrent requests for one
//! object that is not yet cached make exactly one origin fetch; the others
//! wait for it (pingora-cache's cache lock) and stream the body as it is
//! written (the edge's storage supports readers of a fill in progress).
//! This scenario checks that promise against the real binary:
//!
//! 1. a [`CountingOrigin`] serves `/object-<random>` after a delay long
//!    enough for every request to reach the edge while the first fetch is
//!    still in flight;
//! 2. `meridian edge --listen ... --origin ...` (ad-hoc mode) runs in front
//!    of it;
//! 3. N clients, each on its own connection, are released at once and GET
//!    the same path;
//! 4. the origin's count for that path must be exactly 1, and every client
//!    must get a 200 with the whole body.
//!
//! The pure part, [`summarize`], turns what was measured into the report.

use crate::BenchError;
use crate::http::size_label;
use crate::limits::{self, OpenFileLimit};
use crate::process::Launch;
use crate::process::{self, EdgeOnOrigin, error_chain};
use crate::report::{Row, Run, ScenarioReport, counts};
use crate::stats::{LatencySummary, millis};
use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// The edge's own health path, answered without an origin.
pub const HEALTH_PATH: &str = "/_meridian/health";

/// What the origin says about the object: cacheable by the edge for 60 s.
pub const OBJECT_CACHE_CONTROL: &str = "public, max-age=60";

/// How many transport error messages the report keeps.
const ERROR_SAMPLES: usize = 5;

/// The scenario's knobs; the flags of `bench coalesce` change its preset
/// ([`full`](Self::full) or [`smoke`](Self::smoke)), the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct CoalesceOptions {
    /// Concurrent requests [default: 1000; 50 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub requests: usize,
    /// The object's size in bytes [default: 102400].
    #[arg(long = "size", value_name = "BYTES", required = false)]
    pub body_bytes: usize,
    /// How long the origin waits before answering [default: 200; 100 with
    /// --smoke].
    #[arg(long, value_name = "MS", required = false)]
    pub origin_delay_ms: u64,
    /// How long one request may take, in milliseconds.
    #[arg(skip)]
    pub request_timeout_ms: u64,
    /// Where and how long it may take to start, and which preset.
    #[command(flatten)]
    #[serde(flatten)]
    pub launch: Launch,
}

impl CoalesceOptions {
    /// The benchmark as the product brief states it: 1000 requests for a
    /// 100 KiB object, the origin answering after 200 ms.
    pub fn full() -> Self {
        CoalesceOptions {
            requests: 1000,
            body_bytes: 100 * 1024,
            origin_delay_ms: 200,
            request_timeout_ms: 30_000,
            launch: Launch::full(243),
        }
    }

    /// A quick run for CI: 50 requests, a 100 ms origin delay, short
    /// timeouts.
    pub fn smoke() -> Self {
        CoalesceOptions {
            requests: 50,
            origin_delay_ms: 100,
            request_timeout_ms: 10_000,
            launch: Self::full().launch.smoke(),
            ..CoalesceOptions::full()
        }
    }
}

/// What one client request saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOutcome {
    /// The status code, or a short name of the transport error.
    pub status: Result<u16, &'static str>,
    /// The transport error in full, if there was one.
    pub error: Option<String>,
    /// The `Cache-Status` header, if any.
    pub cache_status: Option<String>,
    /// The body, if it was read whole.
    pub body: Option<Bytes>,
    /// From release until this request started (how late its task ran).
    pub start_offset: Duration,
    /// From its start to the end of the body (or the error).
    pub latency: Duration,
}

/// Everything measured in one run, before it is summarized.
#[derive(Debug, Clone)]
pub struct Measured {
    /// One outcome per request.
    pub outcomes: Vec<RequestOutcome>,
    /// From releasing the requests until the last one finished.
    pub wall_time: Duration,
    /// How many requests for the object reached the origin.
    pub origin_fetches: u64,
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct CoalesceReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<CoalesceOptions>,
    /// The object's path.
    pub path: String,
    /// The bench process's open-file limit.
    pub open_files: OpenFileLimit,
    /// How many requests were sent.
    pub requests_sent: usize,
    /// Responses per status code (`error: KIND` for transport errors).
    pub responses_by_status: BTreeMap<String, usize>,
    /// Requests that did not get a 200 with the origin's exact body.
    pub failed_requests: usize,
    /// The first few transport errors, in full.
    pub error_samples: Vec<String>,
    /// 200 responses whose body had the object's length.
    pub bodies_right_length: usize,
    /// 200 responses whose body was byte-identical to the object.
    pub bodies_intact: usize,
    /// Requests for the object that reached the origin (target: 1).
    pub origin_fetches: u64,
    /// Responses per `Cache-Status` value (`(none)` when a response had
    /// none; transport errors are not counted here).
    pub cache_status: BTreeMap<String, usize>,
    /// From releasing the requests until the last one finished, in ms.
    pub wall_time_ms: f64,
    /// From releasing the requests until the last one started, in ms:
    /// well below the origin delay means they all overlapped the fetch.
    pub dispatch_spread_ms: f64,
    /// Latency of the requests that succeeded, each from its own start to
    /// the end of its body.
    pub latency: LatencySummary,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &CoalesceOptions) -> Result<CoalesceReport, BenchError> {
    if options.requests == 0 {
        return Err(BenchError::invalid("--requests", "must be at least 1"));
    }
    let open_files = limits::raise_open_file_limit();
    if !open_files.fits(options.requests) {
        eprintln!(
            "warning: the open-file limit ({}) leaves too little room for {} sockets; \
             expect \"too many open files\" errors",
            open_files.describe(),
            options.requests
        );
    }

    let objects = process::Objects {
        default_bytes: options.body_bytes,
        delay: Duration::from_millis(options.origin_delay_ms),
        cache_control: OBJECT_CACHE_CONTROL,
    };
    let origin = objects.serve(options.launch.block)?;
    let EdgeOnOrigin { edge, listen } =
        EdgeOnOrigin::start(meridian, &options.launch, &origin, None, HEALTH_PATH).await?;

    // A path no run has used: the object is cold even if this edge were
    // not brand new.
    let path = format!("/object-{}", process::random_token());
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.requests)
        .timeout(Duration::from_millis(options.request_timeout_ms))
        .build()?;
    let url = format!("http://{listen}{path}");
    let (outcomes, wall_time) = fire(&client, &url, options.requests).await;
    let measured = Measured {
        outcomes,
        wall_time,
        origin_fetches: process::fetches(&origin, &path),
    };
    let report = summarize(
        meridian,
        options,
        path,
        open_files,
        &Bytes::from(process::object_body(options.body_bytes)),
        measured,
    );
    if !report.passed {
        edge.replay();
    }
    Ok(report)
}

/// Sends `n` GETs of `url` at once, each on its own connection, and
/// returns their outcomes and the wall time.
async fn fire(client: &reqwest::Client, url: &str, n: usize) -> (Vec<RequestOutcome>, Duration) {
    // Every task is spawned and parked first, then all are released
    // together. Opening N connections still takes the client real time
    // (about 0.1 ms each on two shared cores), so how late the last request
    // started is measured and reported rather than assumed.
    let barrier = Arc::new(Barrier::new(n + 1));
    // The release instant, taken by whichever task runs first.
    let released = Arc::new(std::sync::OnceLock::new());
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let released = released.clone();
            let client = client.clone();
            let url = url.to_owned();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let released = *released.get_or_init(Instant::now);
                one_request(&client, &url, released).await
            })
        })
        .collect();
    barrier.wait().await;
    let started = *released.get_or_init(Instant::now);
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| RequestOutcome {
            status: Err("task"),
            error: Some(format!("the request task failed: {e}")),
            cache_status: None,
            body: None,
            start_offset: Duration::ZERO,
            latency: started.elapsed(),
        }));
    }
    (outcomes, started.elapsed())
}

/// One GET, read to the end; `released` is when all requests were let go.
async fn one_request(client: &reqwest::Client, url: &str, released: Instant) -> RequestOutcome {
    let started = Instant::now();
    let start_offset = started.saturating_duration_since(released);
    let failed = |error: reqwest::Error, cache_status: Option<String>| RequestOutcome {
        status: Err(error_kind(&error)),
        error: Some(error_chain(&error)),
        cache_status,
        body: None,
        start_offset,
        latency: started.elapsed(),
    };
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(error) => return failed(error, None),
    };
    let status = response.status().as_u16();
    let values: Vec<&str> = response
        .headers()
        .get_all("cache-status")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let cache_status = (!values.is_empty()).then(|| values.join(", "));
    match response.bytes().await {
        Ok(body) => RequestOutcome {
            status: Ok(status),
            error: None,
            cache_status,
            body: Some(body),
            start_offset,
            latency: started.elapsed(),
        },
        Err(error) => failed(error, cache_status),
    }
}

/// A short name for what kind of transport error `error` is.
fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else if error.is_request() {
        "request"
    } else {
        "other"
    }
}

/// Turns what was measured into the report, with its verdicts. `object`
/// is the body the origin served.
pub fn summarize(
    meridian: &Path,
    options: &CoalesceOptions,
    path: String,
    open_files: OpenFileLimit,
    object: &Bytes,
    measured: Measured,
) -> CoalesceReport {
    let mut responses_by_status = BTreeMap::new();
    let mut cache_status = BTreeMap::new();
    let mut error_samples = Vec::new();
    let mut bodies_right_length = 0;
    let mut bodies_intact = 0;
    let mut latencies = Vec::new();
    for outcome in &measured.outcomes {
        let status_key = match outcome.status {
            Ok(code) => code.to_string(),
            Err(kind) => format!("error: {kind}"),
        };
        *responses_by_status.entry(status_key).or_insert(0) += 1;
        // Only responses have a Cache-Status; transport errors are counted
        // by status alone.
        if outcome.status.is_ok() || outcome.cache_status.is_some() {
            let cache_key = outcome
                .cache_status
                .clone()
                .unwrap_or_else(|| "(none)".to_owned());
            *cache_status.entry(cache_key).or_insert(0) += 1;
        }
        if let Some(error) = &outcome.error
            && error_samples.len() < ERROR_SAMPLES
        {
            error_samples.push(error.clone());
        }
        if outcome.status != Ok(200) {
            continue;
        }
        let Some(body) = &outcome.body else { continue };
        if body.len() == object.len() {
            bodies_right_length += 1;
        }
        if body == object {
            bodies_intact += 1;
            latencies.push(outcome.latency);
        }
    }
    let requests_sent = measured.outcomes.len();
    let dispatch_spread = measured
        .outcomes
        .iter()
        .map(|o| o.start_offset)
        .max()
        .unwrap_or_default();
    let failed_requests = requests_sent - bodies_intact;

    let mut failures = Vec::new();
    if failed_requests > 0 {
        failures.push(format!(
            "{failed_requests} of {requests_sent} requests did not get a 200 with the whole \
             object (responses: {}; right-length bodies: {bodies_right_length})",
            counts(&responses_by_status)
        ));
    }
    match measured.origin_fetches {
        1 => {}
        0 => failures.push(format!("the origin saw no request for {path}")),
        n => failures.push(format!(
            "the origin saw {n} fetches for {path}, not 1: the {requests_sent} concurrent \
             misses were not coalesced into one (Cache-Status seen: {})",
            counts(&cache_status)
        )),
    }

    CoalesceReport {
        run: Run::new("coalesce", meridian, options),
        path,
        open_files,
        requests_sent,
        responses_by_status,
        failed_requests,
        error_samples,
        bodies_right_length,
        bodies_intact,
        origin_fetches: measured.origin_fetches,
        cache_status,
        wall_time_ms: millis(measured.wall_time),
        dispatch_spread_ms: millis(dispatch_spread),
        latency: LatencySummary::from_samples(latencies),
        passed: failures.is_empty(),
        failures,
    }
}

fn ms_label(ms: f64) -> String {
    format!("{ms:.1} ms")
}

impl ScenarioReport for CoalesceReport {
    fn title(&self) -> String {
        format!(
            "coalesce: {} concurrent GETs of one cold {} object through one edge, \
             origin delay {} ms{}",
            self.requests_sent,
            size_label(self.run.options.body_bytes),
            self.run.options.origin_delay_ms,
            if self.run.options.launch.smoke {
                " (smoke)"
            } else {
                ""
            }
        )
    }

    fn rows(&self) -> Vec<Row> {
        let all = self.requests_sent;
        let all_200 = self.responses_by_status.get("200") == Some(&all);
        let mut rows = vec![
            Row::info("meridian", self.run.meridian.display().to_string()),
            Row::info("object", format!("{} ({OBJECT_CACHE_CONTROL})", self.path)),
            Row::info("open files (soft / hard)", self.open_files.describe()),
            Row::info("requests sent", all.to_string()),
            Row::checked(
                "responses by status",
                counts(&self.responses_by_status),
                "all 200",
                all_200,
            ),
            Row::checked(
                "bodies of the right length",
                format!("{} / {all}", self.bodies_right_length),
                "all",
                self.bodies_right_length == all,
            ),
            Row::checked(
                "bodies identical to the origin's",
                format!("{} / {all}", self.bodies_intact),
                "all",
                self.bodies_intact == all,
            ),
            Row::checked(
                "origin fetches for the object",
                self.origin_fetches.to_string(),
                crate::targets::target("coalesce", "origin_fetches").describe(),
                crate::targets::target("coalesce", "origin_fetches")
                    .met(self.origin_fetches as f64),
            ),
        ];
        let mut by_count: Vec<(&String, &usize)> = self.cache_status.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (i, (value, count)) in by_count.into_iter().enumerate() {
            let metric = if i == 0 { "Cache-Status seen" } else { "" };
            rows.push(Row::info(metric, format!("{count} × {value}")));
        }
        rows.extend([
            Row::info(
                "last request started after",
                format!(
                    "{} (origin delay {} ms)",
                    ms_label(self.dispatch_spread_ms),
                    self.run.options.origin_delay_ms
                ),
            ),
            Row::info("wall time", ms_label(self.wall_time_ms)),
            Row::info("latency p50", ms_label(self.latency.p50_ms)),
            Row::info("latency p90", ms_label(self.latency.p90_ms)),
            Row::info("latency p99", ms_label(self.latency.p99_ms)),
            Row::info(
                "latency min / max",
                format!(
                    "{} / {}",
                    ms_label(self.latency.min_ms),
                    ms_label(self.latency.max_ms)
                ),
            ),
        ]);
        rows
    }

    fn notes(&self) -> Vec<String> {
        self.error_samples
            .iter()
            .map(|e| format!("request error: {e}"))
            .collect()
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Verdict, render_table};

    const OBJECT: Bytes = Bytes::from_static(b"0123456789");
    const MISS: &str = "meridian; fwd=miss; stored; ttl=60";
    const HIT: &str = "meridian; hit; ttl=60";

    fn ok(cache_status: &str, ms: u64) -> RequestOutcome {
        RequestOutcome {
            status: Ok(200),
            error: None,
            cache_status: Some(cache_status.to_owned()),
            body: Some(OBJECT),
            start_offset: Duration::from_millis(ms / 10),
            latency: Duration::from_millis(ms),
        }
    }

    fn report(outcomes: Vec<RequestOutcome>, origin_fetches: u64) -> CoalesceReport {
        let measured = Measured {
            outcomes,
            wall_time: Duration::from_millis(250),
            origin_fetches,
        };
        let (options, limit) = (CoalesceOptions::smoke(), OpenFileLimit::default());
        let path = "/object-x".to_owned();
        summarize(Path::new("m"), &options, path, limit, &OBJECT, measured)
    }

    #[test]
    fn one_fetch_and_whole_bodies_pass() {
        let report = report(vec![ok(MISS, 210), ok(HIT, 220), ok(HIT, 230)], 1);
        assert!(report.passed, "{:?}", report.failures);
        assert_eq!(report.failed_requests, 0);
        assert_eq!(report.bodies_intact, 3);
        assert_eq!(
            (report.cache_status[HIT], report.cache_status[MISS]),
            (2, 1)
        );
        let p50 = report.latency.p50_ms;
        assert!((p50 - 220.0).abs() < 0.5, "{:?}", report.latency);
        assert_eq!(report.wall_time_ms, 250.0);
        assert_eq!(report.dispatch_spread_ms, 23.0);
        assert!(report.rows().iter().all(|r| r.verdict != Verdict::Fail));
        // Most frequent Cache-Status first.
        let table = render_table(&report.title(), &report.rows());
        let hit_at = table.find("2 × meridian; hit").unwrap();
        let miss_at = table.find("1 × meridian; fwd=miss").unwrap();
        assert!(hit_at < miss_at, "{table}");
        assert!(table.contains("(smoke)"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["scenario"], "coalesce");
        assert_eq!(json["origin_fetches"], 1);
        assert_eq!(json["passed"], true);
        assert_eq!(json["options"]["requests"], 50);
    }

    #[test]
    fn more_or_fewer_than_one_fetch_fails() {
        let two = report(vec![ok(MISS, 1), ok(MISS, 2)], 2);
        assert!(!two.passed);
        let [failure] = two.failures.as_slice() else {
            panic!("{:?}", two.failures)
        };
        assert!(
            failure.contains("2 fetches") && failure.contains(MISS),
            "{failure}"
        );
        let rows = two.rows();
        let fetch_row = rows
            .iter()
            .find(|r| r.metric == "origin fetches for the object");
        assert_eq!(fetch_row.unwrap().verdict, Verdict::Fail);
        let none = report(vec![ok(HIT, 1)], 0);
        assert!(!none.passed);
        assert!(none.failures[0].contains("no request"));
    }

    #[test]
    fn errors_and_short_bodies_are_failed_requests() {
        let short = RequestOutcome {
            body: Some(Bytes::from_static(b"01234")),
            ..ok(HIT, 5)
        };
        let garbled = RequestOutcome {
            body: Some(Bytes::from_static(b"9876543210")),
            ..ok(HIT, 5)
        };
        let timeout = RequestOutcome {
            status: Err("timeout"),
            error: Some("operation timed out".to_owned()),
            cache_status: None,
            body: None,
            ..ok(HIT, 10_000)
        };
        let bad_gateway = RequestOutcome {
            status: Ok(502),
            ..ok("meridian; fwd=uri-miss", 5)
        };
        let outcomes = vec![ok(HIT, 5), short, garbled, timeout, bad_gateway];
        let report = report(outcomes, 1);
        assert!(!report.passed);
        assert_eq!(report.failed_requests, 4);
        assert_eq!(report.bodies_right_length, 2);
        assert_eq!(report.bodies_intact, 1);
        let by_status = &report.responses_by_status;
        assert_eq!(
            (
                by_status["200"],
                by_status["error: timeout"],
                by_status["502"]
            ),
            (3, 1, 1)
        );
        assert!(!report.cache_status.contains_key("(none)"));
        assert_eq!(report.cache_status["meridian; fwd=uri-miss"], 1);
        assert_eq!(report.notes(), ["request error: operation timed out"]);
        assert_eq!(report.error_samples, ["operation timed out"]);
        assert_eq!(report.latency.samples, 1);
    }
}
