//! Scenario `disk`: a catalogue four times the memory budget, served from
//! the disk tier (issue #17), next to nginx's `proxy_cache` on the same
//! disk.
//!
//! 1. The origin serves `--objects` objects of 100 KiB (`/d/0`, `/d/1`, …),
//!    cacheable for an hour. The edge runs with `--cache-bytes` of
//!    `--memory-mib` and a disk tier of twice the catalogue in a directory
//!    under `/var/tmp` (a real disk, not tmpfs), pinned to one core; with
//!    `--compare`, nginx (tuned as [`crate::peers`] says) with the same disk
//!    budget, its `proxy_cache_path` under `/var/tmp` too. nginx has no
//!    memory tier of its own: the kernel's page cache is its memory, and
//!    the edge's disk hits are read from the same page cache.
//! 2. Warm-up: every object fetched once, then again while the cache
//!    directory holds fewer files than objects (at most three passes); the
//!    readiness check's fetch of `/d/0` (under another `Host`) is one more.
//! 3. Rounds of Zipf-distributed load (exponent 1, [`Zipf`]), the servers
//!    taking turns ([`take_turns`]): requests/s, p99, CPU per request,
//!    the hit ratio (`Cache-Status: meridian; hit…`, nginx's
//!    `X-Cache-Status: HIT`) and the resident memory after the rounds.
//! 4. Restart: under Zipf load from [`PROBES`] clients, the edge is killed
//!    with SIGKILL and started again on the same directory; the time from
//!    its start to the first hit (which can only come from disk: memory
//!    starts empty), and the hit ratio over the next `restart_window`.
//! 5. Index bytes per object: two idle edges with the same budgets, one
//!    on the full directory (measured once it logs its rebuild), one on an
//!    empty directory; the difference of their resident memory less mapped
//!    file pages (`RssFile`: the index is heap) over the objects found.

use crate::BenchError;
use crate::http::{Measurement, Round, Server, describe};
use crate::loadgen::{LoadChoice, LoadGenerator, LoadSpec, Zipf, zipf_pick};
use crate::memory::{file_backed_bytes, resident_bytes};
use crate::peers::{HttpPeer, Skipped};
use crate::pinning::Cores;
use crate::process::{self, Launch};
use crate::report::{Row, Run, ScenarioReport, mib};
use crate::targets::target;
use crate::turns::{Schedule, UnderTest, take_turns};
use futures::StreamExt;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `Host` every request carries, and the objects' path prefix.
const HOST: &str = "bench.meridian.test";
const PREFIX: &str = "/d/";
/// Clients that load the edge through its restart.
const PROBES: usize = 8;

/// The scenario's knobs; flags change its preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct DiskOptions {
    /// The memory budget, in MiB [default: 64; the size: 256].
    #[arg(long = "memory-mib", value_name = "MIB", required = false)]
    pub memory_mib: u64,
    /// Objects of 100 KiB [default: 2560, four times 64 MiB; the issue's
    /// size: 10240].
    #[arg(long, value_name = "N", required = false)]
    pub objects: usize,
    /// Seconds of load per server and round [default: 10; 1 with --smoke].
    #[arg(long = "duration", value_parser = crate::parse_seconds_as_ms, value_name = "SECS", required = false)]
    pub duration_ms: u64,
    /// Rounds; the report gives medians [default: 3; 1 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub rounds: usize,
    /// Concurrent keep-alive connections [default: 32; 4 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub connections: usize,
    /// Also run nginx (proxy_cache on the same disk) and print the ratios.
    #[arg(long)]
    pub compare: bool,
    /// The load generator: wrk when installed (auto), or the built-in one.
    #[arg(long, value_enum, default_value_t = LoadChoice::Auto)]
    pub load: LoadChoice,
    /// Each object's size in bytes.
    #[arg(skip)]
    pub object_bytes: usize,
    /// How long the restart's hit ratio is counted, in ms.
    #[arg(skip)]
    pub restart_window_ms: u64,
    /// Where and how long it may take to start, and which preset.
    #[command(flatten)]
    #[serde(flatten)]
    pub launch: Launch,
}

impl DiskOptions {
    /// Scaled down for two cores: 64 MiB of memory, 256 MiB of objects.
    pub fn full() -> Self {
        DiskOptions {
            memory_mib: 64,
            objects: 2560,
            duration_ms: 10_000,
            rounds: 3,
            connections: 32,
            compare: false,
            load: LoadChoice::Auto,
            object_bytes: 100 * 1024,
            restart_window_ms: 10_000,
            launch: Launch::full(251),
        }
    }

    /// A quick run for CI: 4 MiB of memory, 16 MiB of objects.
    pub fn smoke() -> Self {
        let full = Self::full();
        DiskOptions {
            memory_mib: 4,
            objects: 160,
            duration_ms: 1000,
            rounds: 1,
            connections: 4,
            restart_window_ms: 2000,
            launch: full.launch.smoke(),
            ..full
        }
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }

    /// Twice the catalogue, for the edge and nginx alike: everything fits.
    fn disk_bytes(&self) -> u64 {
        2 * (self.objects * self.object_bytes) as u64
    }
}

/// One server's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Served {
    /// Its rounds and their medians.
    pub measurement: Measurement,
    /// Hits over responses, all rounds together.
    pub hit_ratio: f64,
    /// Files in its cache directory after the warm-up.
    pub files_after_warmup: usize,
    /// Resident memory of its processes after the rounds, in bytes.
    pub rss: u64,
    /// The part of it that is mapped pages of files on disk, in bytes.
    pub rss_files: u64,
}

/// The edge killed under load and started again on its directory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restart {
    /// From the new process's start to its first hit, in ms.
    pub first_hit_ms: Option<f64>,
    /// Hits over responses in the window after the start.
    pub hit_ratio: f64,
    /// Responses in that window.
    pub responses: u64,
    /// Requests that failed (refused while it was down) in that window.
    pub errors: u64,
    /// The edge's log line on its index rebuild.
    pub rebuild: Option<String>,
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<DiskOptions>,
    /// The load generator and which cores ran what.
    pub setup: String,
    /// Meridian, then nginx if it ran.
    pub servers: Vec<Served>,
    /// The restart.
    pub restart: Restart,
    /// Resident bytes of the disk index per object (see the module notes).
    pub index_bytes_per_object: Option<f64>,
    /// Peers that could not run, and why.
    pub skipped: Vec<Skipped>,
}

/// How `server` says a response was a hit.
fn zipf_for(server: Server, objects: usize) -> Zipf {
    let (field, hit) = match server {
        Server::Meridian => ("cache-status", "meridian; hit"),
        Server::Peer(_) => ("x-cache-status", "HIT"),
    };
    Zipf {
        objects,
        field,
        hit,
    }
}

/// A scratch directory on the real disk, removed on drop.
fn disk_workdir() -> Result<tempfile::TempDir, BenchError> {
    tempfile::Builder::new()
        .prefix("meridian-bench-disk-")
        .tempdir_in("/var/tmp")
        .map_err(BenchError::io("create a scratch directory under /var/tmp"))
}

/// The edge's program and arguments: ad hoc, with both tiers, pinned.
fn edge_command(meridian: &Path, o: &DiskOptions, at: usize, dir: &Path) -> (String, Vec<String>) {
    let (listen, origin) = (edge_addr(o, at), process::addr(o.launch.block, 0, 8000));
    let mut args = process::edge_args(listen, origin, Some(o.memory_bytes()));
    args.extend(["--cache-dir".into(), dir.display().to_string()]);
    args.extend(["--cache-disk-bytes".into(), o.disk_bytes().to_string()]);
    Cores::choose().server_command(meridian, &args)
}

fn edge_addr(o: &DiskOptions, at: usize) -> std::net::SocketAddr {
    process::addr(o.launch.block, at as u8, 8080)
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &DiskOptions) -> Result<DiskReport, BenchError> {
    if options.objects == 0 || options.connections == 0 || options.rounds == 0 {
        return Err(BenchError::invalid(
            "--objects/--connections/--rounds",
            "must be > 0",
        ));
    }
    let (generator, cores) = LoadGenerator::prepare(options.load)?;
    let origin = process::Objects {
        default_bytes: options.object_bytes,
        ..process::Objects::CACHEABLE
    }
    .serve(options.launch.block)?;
    let (mut servers, mut skipped) = (vec![Server::Meridian], Vec::new());
    if options.compare {
        match HttpPeer::Nginx.locate() {
            Ok(_) => servers.push(Server::Peer(HttpPeer::Nginx)),
            Err(skip) => skipped.push(skip),
        }
    }
    let (mut running, mut files) = (Vec::new(), Vec::new());
    for (at, &server) in (1..).zip(&servers) {
        let workdir = disk_workdir()?;
        let listen = edge_addr(options, at);
        let (program, args) = match server {
            Server::Meridian => edge_command(meridian, options, at, workdir.path()),
            Server::Peer(peer) => {
                let program = peer
                    .locate()
                    .map_err(|s| BenchError::invalid("peer", s.reason))?;
                let args =
                    peer.prepare(workdir.path(), listen, origin.addr, options.disk_bytes())?;
                cores.server_command(&program, &args)
            }
        };
        let mut process = process::spawn(Path::new(&program), &args)?;
        let ready = options.launch.ready_timeout();
        process::wait_healthy(&mut process, listen, &format!("{PREFIX}0"), ready).await?;
        files.push(warm(listen, options, workdir.path()).await?);
        running.push(UnderTest {
            server,
            listen,
            process,
            workdir,
        });
    }

    let schedule = Schedule {
        warmup: Duration::from_millis(options.duration_ms / 2),
        per_run: Duration::from_millis(options.duration_ms),
        rounds: options.rounds,
    };
    let label = |server: &Server, _: &()| format!("{} Zipf", server.name());
    let turn = async |target: &UnderTest<Server>, _: &(), duration| {
        let spec = LoadSpec {
            addr: target.listen,
            path: PREFIX.to_owned(),
            host: HOST.to_owned(),
            connections: options.connections,
            duration,
            zipf: Some(zipf_for(target.server, options.objects)),
        };
        let before = origin.received().len();
        let (load, cpu) = target.cpu_during(generator.run(&spec, &cores)).await;
        let load = load.map_err(|e| BenchError::invalid("load generator", e))?;
        let origin_fetches = (origin.received().len() - before) as u64;
        Ok(Round {
            load,
            cpu,
            origin_fetches,
        })
    };
    let turns = take_turns(&running, &[()], schedule, &skipped, label, turn).await?;
    let mut served = Vec::new();
    for ((target, mut rounds), files_after_warmup) in running.iter().zip(turns).zip(files) {
        let rounds = rounds.remove(0);
        let responses: u64 = rounds.iter().map(|r| r.load.requests).sum();
        let hits: u64 = rounds.iter().filter_map(|r| r.load.hits).sum();
        let tree = kit::tree::tree_of(target.process.pid(), &kit::tree::all_processes());
        served.push(Served {
            measurement: Measurement::from_rounds(target.server, options.object_bytes, rounds),
            hit_ratio: hits as f64 / responses.max(1) as f64,
            files_after_warmup,
            rss: tree.iter().copied().filter_map(resident_bytes).sum(),
            rss_files: tree.into_iter().filter_map(file_backed_bytes).sum(),
        });
    }
    running.truncate(1);
    let mut edge = running.remove(0);
    let restart = restart(&mut edge, meridian, options).await?;
    edge.process.kill();
    let index_bytes_per_object = index_bytes_per_object(meridian, options, &edge.workdir).await?;
    Ok(DiskReport {
        run: Run::new("disk", meridian, options),
        setup: format!(
            "{}; {}",
            generator.describe(options.connections),
            cores.describe()
        ),
        servers: served,
        restart,
        index_bytes_per_object,
        skipped,
    })
}

/// Fetches every object through the server at `listen`, again while
/// `dir` holds fewer cached files than objects (three passes at most);
/// returns how many it holds.
async fn warm(
    listen: std::net::SocketAddr,
    options: &DiskOptions,
    dir: &Path,
) -> Result<usize, BenchError> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    for _ in 0..3 {
        let fetch = |k| {
            let request = client.get(format!("http://{listen}{PREFIX}{k}"));
            async move { request.header("host", HOST).send().await?.bytes().await }
        };
        let fetched = futures::stream::iter(0..options.objects).map(fetch);
        let failed = fetched
            .buffer_unordered(8)
            .filter(|r| std::future::ready(r.is_err()));
        if let Some(Err(error)) = Box::pin(failed).next().await {
            return Err(BenchError::invalid("warm-up", process::error_chain(&error)));
        }
        // Files land as the writers get to them: wait until their count
        // stops growing for a second.
        let mut last = (cached_files(dir), Instant::now());
        while last.0 < options.objects && last.1.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = cached_files(dir);
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
        if last.0 >= options.objects {
            break;
        }
    }
    Ok(cached_files(dir))
}

/// Files under `dir` named by 32 hex digits: a cached object, for the
/// edge's disk tier (its key hash) and for nginx (the MD5 of its key).
fn cached_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let count = |entry: std::fs::DirEntry| match entry.file_type() {
        Ok(kind) if kind.is_dir() => cached_files(&entry.path()),
        _ => {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            usize::from(name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        }
    };
    entries.flatten().map(count).sum()
}

/// Kills the edge with SIGKILL under load from [`PROBES`] clients and
/// starts it again on the same directory; see the module notes.
async fn restart(
    edge: &mut UnderTest<Server>,
    meridian: &Path,
    options: &DiskOptions,
) -> Result<Restart, BenchError> {
    let window = Duration::from_millis(options.restart_window_ms);
    let deadline = Instant::now() + window / 4 + window;
    let shares = Arc::new(zipf_for(Server::Meridian, options.objects).cumulative());
    let url = format!("http://{}{PREFIX}", edge.listen);
    // Each probe's requests: when sent, when answered, whether a hit
    // (`None`: it failed).
    let probes: Vec<_> = (0..PROBES as u64)
        .map(|seed| {
            let (shares, url) = (shares.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(2))
                    .build()?;
                let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
                let mut outcomes = Vec::new();
                while Instant::now() < deadline {
                    let (k, sent) = (zipf_pick(&shares, rng.random()), Instant::now());
                    let request = client.get(format!("{url}{k}")).header("host", HOST);
                    let outcome = match request.send().await {
                        Ok(response) => {
                            let status = response.headers().get("cache-status").cloned();
                            let hit =
                                status.is_some_and(|v| v.as_bytes().starts_with(b"meridian; hit"));
                            response.bytes().await.ok().map(|_| hit)
                        }
                        Err(_) => None,
                    };
                    outcomes.push((sent, Instant::now(), outcome));
                    if outcome.is_none() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Ok::<_, reqwest::Error>(outcomes)
            })
        })
        .collect();
    tokio::time::sleep(window / 4).await;
    edge.process.kill();
    let started = Instant::now();
    let (program, args) = edge_command(meridian, options, 1, edge.workdir.path());
    edge.process = process::spawn(Path::new(&program), &args)?;
    let mut after = Vec::new();
    for probe in probes {
        let outcomes = probe.await.ok().and_then(Result::ok).unwrap_or_default();
        // Only requests sent to the new process.
        after.extend(outcomes.into_iter().filter(|(sent, ..)| *sent >= started));
    }
    let first_hit = (after.iter().filter(|(.., hit)| *hit == Some(true)))
        .map(|(_, answered, _)| *answered - started)
        .min();
    let responses = after.iter().filter(|(.., o)| o.is_some()).count() as u64;
    let hits = after.iter().filter(|(.., o)| *o == Some(true)).count() as u64;
    Ok(Restart {
        first_hit_ms: first_hit.map(|d| d.as_secs_f64() * 1e3),
        hit_ratio: hits as f64 / responses.max(1) as f64,
        responses,
        errors: after.len() as u64 - responses,
        rebuild: (edge.process.lines().into_iter()).find(|l| l.contains("objects found")),
    })
}

/// Resident memory less mapped file pages (the index is heap) of an idle
/// edge on `full` (once rebuilt) less that of one on an empty directory,
/// per object found; `None` if unmeasurable.
async fn index_bytes_per_object(
    meridian: &Path,
    options: &DiskOptions,
    full: &tempfile::TempDir,
) -> Result<Option<f64>, BenchError> {
    let empty = disk_workdir()?;
    let mut measured = Vec::new();
    for dir in [full.path(), empty.path()] {
        let (program, args) = edge_command(meridian, options, 1, dir);
        let mut edge = process::spawn(Path::new(&program), &args)?;
        let timeout = options.launch.ready_timeout();
        let line = edge.wait_for_line("the disk index rebuilt", timeout, |l| {
            l.contains("objects found")
        })?;
        // Its allocations settle once the rebuild's thread is done.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let objects = line
            .split("cache: ")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        let objects: Option<u64> = objects.and_then(|n| n.parse().ok());
        let pid = edge.pid();
        let heap = resident_bytes(pid).zip(file_backed_bytes(pid));
        measured.push((heap.map(|(rss, files)| rss - files), objects));
        edge.kill();
    }
    let [(Some(full_rss), Some(objects)), (Some(empty_rss), _)] = measured[..] else {
        return Ok(None);
    };
    Ok((objects > 0).then(|| (full_rss as f64 - empty_rss as f64) / objects as f64))
}

impl ScenarioReport for DiskReport {
    fn title(&self) -> String {
        let o = &self.run.options;
        format!(
            "disk: {} objects of {} KiB ({} MiB), memory {} MiB, disk {} MiB, Zipf s=1; \
             median of {} rounds of {:.1} s; {}",
            o.objects,
            o.object_bytes >> 10,
            (o.objects * o.object_bytes) >> 20,
            o.memory_mib,
            o.disk_bytes() >> 20,
            o.rounds,
            o.duration_ms as f64 / 1e3,
            self.setup
        )
    }

    fn rows(&self) -> Vec<Row> {
        let (o, r) = (&self.run.options, &self.restart);
        let (hits, speed) = (target("disk", "hit_ratio"), target("disk", "ratio"));
        let mut rows = Vec::new();
        for s in &self.servers {
            let (server, budget) = (s.measurement.server, o.memory_mib);
            let name = |what: &str| format!("{}: {what}", server.name());
            let files = format!("{} of {} objects", s.files_after_warmup, o.objects);
            let ratio = format!("{:.2} %", s.hit_ratio * 100.0);
            let (rss, file_pages) = (mib(s.rss), mib(s.rss_files));
            let rss =
                format!("{rss}, of which {file_pages} file pages (memory budget {budget} MiB)");
            rows.extend([
                Row::info(name("cached files after warm-up"), files),
                Row::info(name("Zipf load"), describe(&s.measurement)),
                match server {
                    Server::Meridian => Row::checked(
                        name("hit ratio"),
                        ratio,
                        hits.describe(),
                        hits.met(s.hit_ratio * 100.0),
                    ),
                    Server::Peer(_) => Row::info(name("hit ratio"), ratio),
                },
                Row::info(name("resident memory after"), rss),
            ]);
        }
        if let [ours, peer] = &self.servers[..] {
            let (ours, peer) = (&ours.measurement, &peer.measurement);
            let ratio = ours.median.requests_per_second / peer.median.requests_per_second.max(1e-9);
            let cpu = (ours.cpu_us_per_request.zip(peer.cpu_us_per_request))
                .map_or("CPU not measured".into(), |(a, b)| {
                    format!("{:.2}× the CPU per request", a / b)
                });
            let value = format!("{ratio:.2}× req/s, {cpu}");
            rows.push(Row::checked(
                "meridian / nginx",
                value,
                speed.describe(),
                speed.met(ratio),
            ));
        }
        let first = r
            .first_hit_ms
            .map_or("none".into(), |ms| format!("{ms:.0} ms"));
        let window = format!("restart: first {:.0} s", o.restart_window_ms as f64 / 1e3);
        let (ratio, responses, errors) = (r.hit_ratio * 100.0, r.responses, r.errors);
        let after = format!("{ratio:.2} % hits of {responses} responses, {errors} failed requests");
        let rebuilt = r.rebuild.as_deref().and_then(|l| l.split("cache: ").nth(1));
        let index =
            (self.index_bytes_per_object).map_or("not measured".into(), |b| format!("{b:.0} B"));
        rows.extend([
            Row::info("restart: first hit after the start", first),
            Row::info(window, after),
            Row::info("restart: index rebuilt", rebuilt.unwrap_or("not logged")),
            Row::info("index: resident bytes per object", index),
        ]);
        rows
    }

    fn notes(&self) -> Vec<String> {
        self.skipped.iter().map(Skipped::note).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_favour_the_first_objects_in_proportion() {
        let shares = zipf_for(Server::Meridian, 4).cumulative();
        // 1, 1/2, 1/3, 1/4 over 25/12.
        let expected = [0.48, 0.72, 0.88, 1.0];
        for (share, want) in shares.iter().zip(expected) {
            assert!((share - want).abs() < 1e-9, "{shares:?}");
        }
        assert_eq!(zipf_pick(&shares, 0.0), 0);
        assert_eq!(zipf_pick(&shares, 0.5), 1);
        assert_eq!(zipf_pick(&shares, 0.95), 3);
        assert_eq!(zipf_pick(&shares, 1.0), 3);
    }

    #[test]
    fn cached_files_are_those_named_by_a_key_hash() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("v1/objects/ab");
        std::fs::create_dir_all(&folder).unwrap();
        for name in ["ab0123456789abcdef0123456789abcd", "lock", "ab01.tmp"] {
            std::fs::write(folder.join(name), "x").unwrap();
        }
        assert_eq!(cached_files(dir.path()), 1);
        assert_eq!(cached_files(&dir.path().join("missing")), 0);
    }
}
