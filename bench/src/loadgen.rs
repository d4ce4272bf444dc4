//! Keep-alive HTTP load: `wrk` when it is installed, else a built-in one.
//!
//! `wrk` is what people benchmark HTTP servers with, and it is cheap enough
//! per request that one core of it can saturate one core of a server. When
//! it is missing, the built-in generator does the same job on hyper's
//! HTTP/1.1 client connections (one task per connection, each sending its
//! next request as soon as the previous response is read). It costs more
//! CPU per request than wrk, so its numbers are a floor; the report says
//! which generator ran.

use crate::pinning::Cores;
use crate::process::error_chain;
use crate::stats::Latencies;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which load generator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LoadChoice {
    /// `wrk` if installed, else the built-in generator.
    Auto,
    /// `wrk` (fails if it is not installed).
    Wrk,
    /// The built-in generator.
    Builtin,
}

/// The load generator a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadGenerator {
    /// `wrk` at this path.
    Wrk(PathBuf),
    /// hyper connections in this process.
    Builtin,
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// The path requested (the same one every time).
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// How long to send for.
    pub duration: Duration,
    /// Requests spread over many objects instead of `path` alone.
    pub zipf: Option<Zipf>,
}

/// Paths `{path}0` … `{path}{objects - 1}` drawn with Zipf's law
/// (exponent 1: object k is asked for in proportion to 1/(k+1)), and the
/// response field that tells a cache hit: its value starts with `hit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zipf {
    /// How many objects.
    pub objects: usize,
    /// The response field that says whether it was a hit (lower case).
    pub field: &'static str,
    /// How that field's value starts on a hit.
    pub hit: &'static str,
}

impl Zipf {
    /// The cumulative share of requests of objects 0..=k, for each k; a
    /// draw is the first k whose share reaches a uniform number in [0, 1).
    /// (Hand-written: a dozen lines, and the wrk script must compute the
    /// very same table in Lua.)
    pub fn cumulative(&self) -> Vec<f64> {
        let weights = (1..=self.objects).map(|k| 1.0 / k as f64);
        let sums: Vec<f64> = weights
            .scan(0.0, |sum, w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        let total = sums.last().copied().unwrap_or(1.0);
        sums.into_iter().map(|s| s / total).collect()
    }
}

/// The object a uniform draw `u` in [0, 1) picks from `cumulative`.
pub fn zipf_pick(cumulative: &[f64], u: f64) -> usize {
    cumulative
        .partition_point(|&share| share < u)
        .min(cumulative.len().saturating_sub(1))
}

/// What a load run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadResult {
    /// Responses received in full.
    pub requests: u64,
    /// Transport errors (connect, read, write, timeout).
    pub errors: u64,
    /// Responses whose status was not 2xx or 3xx.
    pub bad_status: u64,
    /// How long the run took, in seconds.
    pub seconds: f64,
    /// Responses per second.
    pub requests_per_second: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency, in milliseconds.
    pub p999_ms: f64,
    /// Responses that were cache hits, when counted (see [`Zipf`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hits: Option<u64>,
}

/// Why a load run failed outright.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--load wrk` was asked for and there is none.
    #[error("wrk is not installed (Debian package wrk); use --load builtin")]
    NoWrk,
    /// wrk could not be run or said something unexpected.
    #[error("wrk failed: {0}")]
    Wrk(String),
    /// The built-in generator could not run.
    #[error("the built-in load generator failed: {0}")]
    Builtin(String),
}

impl LoadGenerator {
    /// What a load scenario starts with: room for many connections, the
    /// generator for `choice` (an error names `--load`), and the cores to
    /// pin the servers and the generator to.
    pub fn prepare(
        choice: LoadChoice,
    ) -> Result<(LoadGenerator, crate::pinning::Cores), crate::BenchError> {
        crate::limits::raise_open_file_limit();
        let generator =
            LoadGenerator::choose(choice).map_err(|e| crate::BenchError::invalid("--load", e))?;
        Ok((generator, crate::pinning::Cores::choose()))
    }

    /// The generator for `choice`.
    pub fn choose(choice: LoadChoice) -> Result<LoadGenerator, LoadError> {
        let wrk = crate::peers::find_program("wrk");
        match (choice, wrk) {
            (LoadChoice::Builtin, _) | (LoadChoice::Auto, None) => Ok(LoadGenerator::Builtin),
            (_, Some(wrk)) => Ok(LoadGenerator::Wrk(wrk)),
            (LoadChoice::Wrk, None) => Err(LoadError::NoWrk),
        }
    }

    /// Its name and settings, for the report.
    pub fn describe(&self, connections: usize) -> String {
        match self {
            LoadGenerator::Wrk(path) => {
                format!(
                    "wrk ({}), 1 thread, {connections} connections",
                    path.display()
                )
            }
            LoadGenerator::Builtin => format!(
                "built-in (hyper HTTP/1.1 client), 1 thread, {connections} connections; \
                 install wrk for lower load-generator overhead"
            ),
        }
    }

    /// Sends `spec`'s load, on the load generator's core of `cores`.
    pub async fn run(&self, spec: &LoadSpec, cores: &Cores) -> Result<LoadResult, LoadError> {
        match self {
            LoadGenerator::Wrk(wrk) => run_wrk(wrk, spec, cores).await,
            LoadGenerator::Builtin => {
                let spec = spec.clone();
                let cores = *cores;
                tokio::task::spawn_blocking(move || run_builtin(&spec, &cores))
                    .await
                    .map_err(|e| LoadError::Builtin(e.to_string()))?
            }
        }
    }
}

/// The Lua script that makes wrk print its totals, percentiles and hits
/// (-1: not counted) on one machine-readable line (wrk's own report
/// rounds and omits p99.9).
const WRK_SCRIPT: &str = r#"
threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local e, hits = summary.errors, 0
  for _, t in ipairs(threads) do hits = hits + (t:get("hits") or -1) end
  io.write(string.format(
    "meridian-bench %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), hits))
end
"#;

/// What the script adds for a [`Zipf`] load: each request's path drawn
/// as [`zipf_pick`] draws it (every request formatted once, up front: wrk
/// then costs less per request), and the hits counted.
fn wrk_zipf_script(zipf: &Zipf, path: &str) -> String {
    let (n, field, hit) = (zipf.objects, zipf.field, zipf.hit);
    format!(
        r#"
hits = 0
local n, shares, sum = {n}, {{}}, 0
for k = 1, n do sum = sum + 1 / k; shares[k] = sum end
for k = 1, n do shares[k] = shares[k] / sum end
local requests = {{}}
init = function(args)
  math.randomseed(os.time())
  for k = 1, n do requests[k] = wrk.format(nil, "{path}" .. (k - 1)) end
end
request = function()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if shares[mid] < u then lo = mid + 1 else hi = mid end
  end
  return requests[lo]
end
response = function(status, headers, body)
  for name, value in pairs(headers) do
    if string.lower(name) == "{field}" and string.sub(value, 1, {len}) == "{hit}" then
      hits = hits + 1
    end
  end
end
"#,
        len = hit.len()
    )
}

async fn run_wrk(wrk: &Path, spec: &LoadSpec, cores: &Cores) -> Result<LoadResult, LoadError> {
    let script =
        std::env::temp_dir().join(format!("meridian-bench-wrk-{}.lua", std::process::id()));
    let zipf = spec.zipf.as_ref().map(|z| wrk_zipf_script(z, &spec.path));
    let text = format!("{WRK_SCRIPT}{}", zipf.unwrap_or_default());
    std::fs::write(&script, text).map_err(|e| LoadError::Wrk(e.to_string()))?;
    let seconds = spec.duration.as_secs().max(1);
    let args = [
        "-t1".to_owned(),
        format!("-c{}", spec.connections),
        format!("-d{seconds}s"),
        "--timeout".to_owned(),
        "10s".to_owned(),
        "-H".to_owned(),
        format!("Host: {}", spec.host),
        "-s".to_owned(),
        script.display().to_string(),
        format!("http://{}{}", spec.addr, spec.path),
    ];
    let (program, args) = cores.load_command(wrk, &args);
    let output = tokio::process::Command::new(&program)
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| LoadError::Wrk(format!("cannot run {program}: {e}")));
    let _ = std::fs::remove_file(&script);
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(LoadError::Wrk(format!(
            "{} exited with {}: {}{}",
            wrk.display(),
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    parse_wrk(&stdout)
        .ok_or_else(|| LoadError::Wrk(format!("no result line in its output: {}", stdout.trim())))
}

/// Reads the script's `meridian-bench …` line from wrk's output.
fn parse_wrk(stdout: &str) -> Option<LoadResult> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("meridian-bench "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [
        requests,
        duration_us,
        connect,
        read,
        write,
        timeout,
        status,
        p50,
        p99,
        p999,
        hits,
    ] = v.as_slice()
    else {
        return None;
    };
    let seconds = duration_us / 1e6;
    Some(LoadResult {
        requests: *requests as u64,
        errors: (connect + read + write + timeout) as u64,
        bad_status: *status as u64,
        seconds,
        requests_per_second: if seconds > 0.0 {
            requests / seconds
        } else {
            0.0
        },
        p50_ms: p50 / 1000.0,
        p99_ms: p99 / 1000.0,
        p999_ms: p999 / 1000.0,
        hits: (*hits >= 0.0).then_some(*hits as u64),
    })
}

/// What one built-in connection measured.
#[derive(Default)]
struct ConnectionTally {
    latencies: Latencies,
    errors: u64,
    bad_status: u64,
    hits: u64,
    last_error: Option<String>,
}

/// Runs the built-in generator on this (blocking-pool) thread, pinned to
/// the load core, on a single-threaded runtime: one core of load, like
/// `wrk -t1`.
fn run_builtin(spec: &LoadSpec, cores: &Cores) -> Result<LoadResult, LoadError> {
    cores.pin_current_thread_to_load();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Builtin(e.to_string()))?;
    let started = Instant::now();
    let deadline = started + spec.duration;
    let tallies = runtime.block_on(async {
        let tasks: Vec<_> = (0..spec.connections)
            .map(|_| tokio::spawn(one_connection(spec.clone(), deadline)))
            .collect();
        let mut tallies = Vec::with_capacity(tasks.len());
        for task in tasks {
            tallies.push(task.await.unwrap_or_default());
        }
        tallies
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Latencies::default();
    let (mut errors, mut bad_status, mut hits, mut last_error) = (0, 0, 0, None);
    for tally in tallies {
        latencies.merge(&tally.latencies);
        errors += tally.errors;
        bad_status += tally.bad_status;
        hits += tally.hits;
        last_error = last_error.or(tally.last_error);
    }
    if latencies.is_empty() {
        return Err(LoadError::Builtin(format!(
            "no response at all from {}{} ({})",
            spec.addr,
            spec.path,
            last_error.unwrap_or_else(|| "no error seen".to_owned())
        )));
    }
    let ms = |p| latencies.ms_at(p);
    let requests = latencies.len();
    Ok(LoadResult {
        requests,
        errors,
        bad_status,
        seconds,
        requests_per_second: requests as f64 / seconds,
        p50_ms: ms(50.0),
        p99_ms: ms(99.0),
        p999_ms: ms(99.9),
        hits: spec.zipf.is_some().then_some(hits),
    })
}

/// One keep-alive connection sending requests back to back until
/// `deadline`, reconnecting after an error.
async fn one_connection(spec: LoadSpec, deadline: Instant) -> ConnectionTally {
    let mut tally = ConnectionTally::default();
    while Instant::now() < deadline {
        if let Err(error) = requests_on_one_connection(&spec, deadline, &mut tally).await {
            tally.errors += 1;
            tally.last_error = Some(error);
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

async fn requests_on_one_connection(
    spec: &LoadSpec,
    deadline: Instant,
    tally: &mut ConnectionTally,
) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(spec.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| error_chain(&e))?;
    tokio::spawn(connection);
    let shares = spec.zipf.as_ref().map(Zipf::cumulative);
    // Seeded from the standard library's random hasher keys: each
    // connection draws its own sequence.
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while Instant::now() < deadline {
        let path = match &shares {
            Some(shares) => format!("{}{}", spec.path, zipf_pick(shares, rng.random())),
            None => spec.path.clone(),
        };
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, spec.host.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| error_chain(&e))?;
        let ok = response.status().is_success() || response.status().is_redirection();
        let hit = spec.zipf.as_ref().is_some_and(|z| {
            let value = response.headers().get(z.field);
            value.is_some_and(|v| v.as_bytes().starts_with(z.hit.as_bytes()))
        });
        tally.hits += u64::from(hit);
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| error_chain(&e))?;
        tally.latencies.record(started.elapsed());
        if !ok {
            tally.bad_status += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_results_are_read_from_the_script_line() {
        let stdout = "Running 10s test @ http://127.0.0.1:8080/x\n  1 threads\n\
                      meridian-bench 650000 10000000 0 1 0 2 3 410 1850 3100 -1\n";
        let result = parse_wrk(stdout).unwrap();
        assert_eq!(result.requests, 650_000);
        assert_eq!(result.errors, 3);
        assert_eq!(result.bad_status, 3);
        assert_eq!(result.seconds, 10.0);
        assert_eq!(result.requests_per_second, 65_000.0);
        assert_eq!(result.p50_ms, 0.41);
        assert_eq!(result.p99_ms, 1.85);
        assert_eq!(result.p999_ms, 3.1);
        assert_eq!(result.hits, None);
        let counted = parse_wrk("meridian-bench 10 1000000 0 0 0 0 0 1 2 3 9").unwrap();
        assert_eq!(counted.hits, Some(9));
        assert_eq!(parse_wrk("no line"), None);
        assert_eq!(parse_wrk("meridian-bench 1 2 3"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_builtin_generator_measures_a_real_server() {
        let origin = kit::ScriptedOrigin::start("127.0.0.1:0", |r| {
            if r.path == "/nope" {
                kit::Reply::Respond(404, vec![], vec![])
            } else {
                kit::ok(&[("cache-control", "public, max-age=60")], "x")
            }
        })
        .unwrap();
        let spec = LoadSpec {
            addr: origin.addr,
            path: "/object-x".into(),
            host: "bench.test".into(),
            connections: 4,
            duration: Duration::from_millis(300),
            zipf: None,
        };
        let cores = Cores::UNPINNED;
        let result = LoadGenerator::Builtin.run(&spec, &cores).await.unwrap();
        assert!(result.requests > 10, "{result:?}");
        assert_eq!(result.errors, 0);
        assert_eq!(result.bad_status, 0);
        assert_eq!(origin.count("GET", "/object-x") as u64, result.requests);
        assert!(result.p50_ms <= result.p99_ms && result.p99_ms <= result.p999_ms);

        let missing = LoadSpec {
            path: "/nope".into(),
            ..spec
        };
        let result = LoadGenerator::Builtin.run(&missing, &cores).await.unwrap();
        assert_eq!(result.bad_status, result.requests);
    }
}
