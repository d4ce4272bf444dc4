//! Scenario `connections`: one edge holding many idle keep-alive clients.
//!
//! The product promises that an edge holds 10,000 concurrent keep-alive
//! connections with bounded memory, so a crowd of slow or idle clients
//! cannot exhaust it. This scenario opens that many connections to one
//! `meridian edge`, sends one request on each (a cache hit) and keeps them
//! all open, then checks that each got its response, that a new client is
//! still served promptly, and how much resident memory the connections
//! cost.

use crate::BenchError;
use crate::limits::{self, OpenFileLimit};
use crate::memory::resident_bytes;
use crate::process::Launch;
use crate::process::error_chain;
use crate::process::{EdgeOnOrigin, Objects, sized_path};
use crate::progress::Progress;
use crate::report::{Row, Run, ScenarioReport, mib};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The most resident memory one idle keep-alive connection may cost.
const TARGET_BYTES_PER_CONNECTION: u64 = crate::targets::TARGETS[6].value as u64 * 1024;

/// Connections opened at once while ramping up.
const OPENING_CONCURRENCY: usize = 256;

/// The scenario's knobs; the flags of `bench connections` change its preset
/// ([`full`](Self::full) or [`smoke`](Self::smoke)), the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct ConnectionsOptions {
    /// Connections to hold [default: 10000; 500 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub connections: usize,
    /// How long to hold them before measuring, in ms.
    #[arg(skip)]
    pub hold_ms: u64,
    /// Where and how long it may take to start, and which preset.
    #[command(flatten)]
    #[serde(flatten)]
    pub launch: Launch,
}

impl ConnectionsOptions {
    /// 10,000 connections held for 2 s.
    pub fn full() -> Self {
        ConnectionsOptions {
            connections: 10_000,
            hold_ms: 2_000,
            launch: Launch::full(245),
        }
    }

    /// A quick run for CI: 500 connections.
    pub fn smoke() -> Self {
        ConnectionsOptions {
            connections: 500,
            hold_ms: 500,
            launch: Self::full().launch.smoke(),
        }
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<ConnectionsOptions>,
    /// The bench process's open-file limit.
    pub open_files: OpenFileLimit,
    /// What the run measured.
    #[serde(flatten)]
    pub measured: Measured,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

impl ConnectionsReport {
    /// Resident memory per held connection, in bytes.
    pub fn bytes_per_connection(&self) -> u64 {
        self.measured
            .loaded_rss
            .saturating_sub(self.measured.idle_rss)
            / self.measured.held.max(1) as u64
    }
}

/// A connection held open: it closes when this is dropped.
type Held = SendRequest<Empty<Bytes>>;

/// One GET of `path` on the new connection `stream`, its body read whole;
/// the connection stays open as long as what this returns.
async fn get(stream: TcpStream, path: &str) -> Result<Held, String> {
    let (mut sender, connection) = handshake(TokioIo::new(stream))
        .await
        .map_err(|e| error_chain(&e))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "bench.meridian.test")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await;
    let response = response.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.into_body().collect().await;
    body.map_err(|e| error_chain(&e))?;
    if status != hyper::StatusCode::OK {
        return Err(format!("answered {status}"));
    }
    Ok(sender)
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(
    meridian: &Path,
    options: &ConnectionsOptions,
) -> Result<ConnectionsReport, BenchError> {
    let open_files = limits::raise_open_file_limit();
    let origin = Objects::CACHEABLE.serve(options.launch.block)?;
    let path = sized_path(1024);
    let EdgeOnOrigin { edge, listen } =
        EdgeOnOrigin::start(meridian, &options.launch, &origin, None, &path).await?;
    let idle_rss = resident_bytes(edge.pid()).unwrap_or(0);

    let planned = Duration::from_millis(options.connections as u64 / 5 + options.hold_ms);
    let mut progress = Progress::new(planned);
    let started = Instant::now();
    let opened: Vec<Result<Held, String>> = progress
        .step(
            format!("opening {} connections", options.connections),
            Duration::from_millis(options.connections as u64 / 5),
            open_all(listen, &path, options.connections),
        )
        .await;
    let ramp_ms = started.elapsed().as_secs_f64() * 1000.0;
    progress
        .step(
            "holding them",
            Duration::from_millis(options.hold_ms),
            tokio::time::sleep(Duration::from_millis(options.hold_ms)),
        )
        .await;
    let loaded_rss = resident_bytes(edge.pid()).unwrap_or(0);
    let new_client_ms = new_client(listen, &path).await;
    drop(progress);

    let mut held = 0;
    let mut error_samples = Vec::new();
    for result in &opened {
        match result {
            Ok(_) => held += 1,
            Err(e) if error_samples.len() < 5 => error_samples.push(e.clone()),
            Err(_) => {}
        }
    }
    let failed = opened.len() - held;
    drop(opened);
    if failed > 0 {
        edge.replay();
    }
    Ok(summarize(
        meridian,
        options,
        open_files,
        Measured {
            held,
            failed,
            error_samples,
            ramp_ms,
            idle_rss,
            loaded_rss,
            new_client_ms,
        },
    ))
}

/// Opens `count` connections, each with one request answered.
async fn open_all(addr: SocketAddr, path: &str, count: usize) -> Vec<Result<Held, String>> {
    futures::stream::iter(0..count)
        .map(|_| async move {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tokio::time::timeout(Duration::from_secs(30), get(stream, path))
                .await
                .map_err(|_| "no response within 30 s".to_owned())?
        })
        .buffer_unordered(OPENING_CONCURRENCY)
        .collect()
        .await
}

/// How long a fresh client's request takes, in ms.
async fn new_client(addr: SocketAddr, path: &str) -> Option<f64> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.ok()?;
    let held = tokio::time::timeout(Duration::from_secs(10), get(stream, path)).await;
    held.ok()?.ok()?;
    Some(started.elapsed().as_secs_f64() * 1000.0)
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    /// Connections that got a whole 200 response and stayed open.
    pub held: usize,
    /// Connections that failed (to open, or to get their response).
    pub failed: usize,
    /// The first few errors.
    pub error_samples: Vec<String>,
    /// How long opening all of them took, in ms.
    pub ramp_ms: f64,
    /// The edge's resident memory before, in bytes.
    pub idle_rss: u64,
    /// The edge's resident memory while holding them, in bytes.
    pub loaded_rss: u64,
    /// How long a new client's request took while they were held, in ms.
    pub new_client_ms: Option<f64>,
}

/// Turns what was measured into the report, with its verdicts.
pub fn summarize(
    meridian: &Path,
    options: &ConnectionsOptions,
    open_files: OpenFileLimit,
    measured: Measured,
) -> ConnectionsReport {
    let mut report = ConnectionsReport {
        run: Run::new("connections", meridian, options),
        open_files,
        measured,
        failures: Vec::new(),
        passed: false,
    };
    if report.measured.held < options.connections {
        report.failures.push(format!(
            "only {} of {} connections were answered and held ({} failed: {:?})",
            report.measured.held,
            options.connections,
            report.measured.failed,
            report.measured.error_samples
        ));
    }
    if report.measured.loaded_rss == 0 {
        report
            .failures
            .push("the edge's resident memory could not be read".to_owned());
    } else if report.bytes_per_connection() > TARGET_BYTES_PER_CONNECTION {
        report.failures.push(format!(
            "{} bytes of resident memory per connection (target ≤ {TARGET_BYTES_PER_CONNECTION})",
            report.bytes_per_connection()
        ));
    }
    if report.measured.new_client_ms.is_none() {
        report
            .failures
            .push("a new client was not served while the connections were held".to_owned());
    }
    report.passed = report.failures.is_empty();
    report
}

impl ScenarioReport for ConnectionsReport {
    fn title(&self) -> String {
        format!(
            "connections: {} idle keep-alive clients on one edge",
            self.run.options.connections
        )
    }

    fn rows(&self) -> Vec<Row> {
        let measured = &self.measured;
        vec![
            Row::info("open files (soft / hard)", self.open_files.describe()),
            Row::checked(
                "connections answered and held",
                format!("{} ({} failed)", measured.held, measured.failed),
                format!("{}", self.run.options.connections),
                measured.held >= self.run.options.connections,
            ),
            Row::info("time to open them", format!("{:.0} ms", measured.ramp_ms)),
            Row::info(
                "edge resident memory idle / holding",
                format!("{} / {}", mib(measured.idle_rss), mib(measured.loaded_rss)),
            ),
            Row::checked(
                "resident memory per connection",
                format!("{:.1} KiB", self.bytes_per_connection() as f64 / 1024.0),
                format!("≤ {} KiB", TARGET_BYTES_PER_CONNECTION / 1024),
                measured.loaded_rss > 0
                    && self.bytes_per_connection() <= TARGET_BYTES_PER_CONNECTION,
            ),
            Row::checked(
                "a new client meanwhile",
                measured
                    .new_client_ms
                    .map_or("not served".to_owned(), |ms| format!("{ms:.1} ms")),
                "served",
                measured.new_client_ms.is_some(),
            ),
        ]
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_must_be_held_within_the_memory_bound() {
        let measured = Measured {
            held: 10_000,
            failed: 0,
            error_samples: Vec::new(),
            ramp_ms: 900.0,
            idle_rss: 20 << 20,
            loaded_rss: (20 << 20) + 10_000 * 30 * 1024,
            new_client_ms: Some(1.0),
        };
        let options = ConnectionsOptions::full();
        let judge =
            |m: &Measured| summarize(Path::new("m"), &options, Default::default(), m.clone());
        let report = judge(&measured);
        assert!(report.passed, "{:?}", report.failures);
        assert_eq!(report.bytes_per_connection(), 30 * 1024);
        let fat = Measured {
            loaded_rss: (20 << 20) + 10_000 * 100 * 1024,
            ..measured.clone()
        };
        assert!(!judge(&fat).passed);
        let dropped = Measured {
            held: 9_990,
            failed: 10,
            ..measured
        };
        assert!(!judge(&dropped).passed);
    }
}
