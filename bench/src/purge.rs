//! Scenario `purge`: purges on the cluster bus of `meridian up --cluster` (six edges): N timed
//! one by one, publish to last announcement; K back to back; one per object an eu-west edge
//! holds while it is stopped, timed from SIGCONT, then asked for with `only-if-cached`.

use crate::{BenchError, drill::DrillReport, drill::Measure, report::Run, stats::Latencies};
use cluster::purge::{Announcements, Purge, store};
use futures::{StreamExt, TryStreamExt};
use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
use std::{path::Path, time::Duration, time::Instant};

/// Purges awaiting the stream's acknowledgement at once, back to back.
const WINDOW: usize = 256;
/// The object every purge names, with a query of its own.
const ASSET: &str = "http://cdn.meridian.test:8080/assets/1k.bin";

/// The scenario's knobs: a preset ([`full`](Self::full), [`smoke`](Self::smoke)) and its flags.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, clap::Args)]
pub struct PurgeOptions {
    /// Purges timed, and objects purged during the stop [default: 1000; 20 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub purges: usize,
    /// How long that edge is stopped [default: 10000; 2000 with --smoke].
    #[arg(long, value_name = "MS", required = false)]
    pub pause_ms: u64,
    /// Purges published back to back [default: 5000; 200 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub burst: usize,
    /// The loopback block of the topology, its bus on 127.B.0.1:4222.
    #[arg(skip)]
    pub block: u8,
}

impl PurgeOptions {
    /// As issue 16 asks: 1,000 purges, a 10 s stop, 5,000 back to back.
    pub fn full() -> Self {
        PurgeOptions {
            purges: 1000,
            pause_ms: 10_000,
            burst: 5000,
            block: 247,
        }
    }

    /// A quick run for CI: 20 purges, a 2 s stop, 200 back to back.
    pub fn smoke() -> Self {
        PurgeOptions {
            purges: 20,
            pause_ms: 2000,
            burst: 200,
            block: 247,
        }
    }
}

/// The scenario's result.
pub type PurgeReport = DrillReport<PurgeOptions>;

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &PurgeOptions) -> Result<PurgeReport, BenchError> {
    let meridian = crate::locate_meridian(Some(meridian))?;
    let state = tempfile::tempdir().map_err(BenchError::io("make a state directory"))?;
    let nats = crate::process::addr(options.block, 0, 4222);
    let topology = kit::Topology::demo(options.block);
    let topology = topology.cluster(nats, state.path(), Duration::from_secs(2));
    let up =
        tokio::task::block_in_place(|| kit::Up::start_with(&meridian, &topology, &["--cluster"]))?;
    let settings = topology.config()?.cluster.expect("[cluster]");
    let bus = cluster::Bus::connect(&settings, "bench", cluster::Connect::Now).await?;
    let edges = verified_edges(&bus).await?;
    let purge = |url| Purge {
        urls: vec![url],
        ..Purge::default()
    };
    let urls = |from, n| (from..from + n).map(|v: usize| format!("{ASSET}?v={v}"));

    let (mut latency, mut late) = (Latencies::default(), 0);
    for url in urls(0, options.purges) {
        let outcome = cluster::purge::publish(&bus, &purge(url), &edges).await?;
        late += usize::from(!outcome.pending.is_empty());
        latency.record(outcome.slowest().unwrap_or(settings.purge_timeout));
    }
    let now = async { Ok(None) };
    let took = purge_all(&bus, urls(0, options.burst).map(purge), &edges, now).await?;
    let rate = took.map(|took| (options.burst as f64 / took.as_secs_f64()) as usize);

    let stopped = up.edge(2);
    let process = format!("edge eu-west {}", stopped.ip());
    let objects: Vec<String> = urls(options.burst, options.purges).collect();
    let http = reqwest::Client::builder().no_proxy();
    let http = http.resolve("cdn.meridian.test", stopped).build()?;
    for url in &objects {
        http.get(url).send().await?.bytes().await?;
    }
    // With `only-if-cached`, 504 means "not in its own cache"; anything else counts as served.
    let from_cache = async || {
        let mut served = 0;
        for url in &objects {
            let asked = http.get(url).header("cache-control", "only-if-cached");
            served += usize::from(asked.send().await.map_or(true, |r| r.status() != 504));
        }
        served
    };
    let cached = from_cache().await;
    up.signal(&process, SIGSTOP)?;
    let resume = Instant::now() + Duration::from_millis(options.pause_ms);
    let resumed = async {
        tokio::time::sleep_until(resume.into()).await;
        up.signal(&process, SIGCONT).map(|()| Some(Instant::now()))
    };
    let paused = [cluster::edge_name("eu-west", stopped)];
    let caught = purge_all(&bus, objects.iter().cloned().map(purge), &paused, resumed).await?;
    let served = from_cache().await;

    let l = latency.summary();
    let ms = |metric, ms: f64| Measure::of(metric, Some(ms), format!("{ms:.1} ms"));
    let measures = vec![
        Measure::count("late", Some(late)).info("timed purges some edge had not applied in 2 s"),
        ms("p50", l.p50_ms),
        ms("p99", l.p99_ms),
        ms("max", l.max_ms).info("slowest timed purge"),
        Measure::count("cached", Some(cached)).info("objects in the stopped edge's cache before"),
        Measure::time("catch_up", caught),
        Measure::count("served_purged", Some(served)),
        Measure::count("rate", rate).info("purges per second back to back, 6 edges applying"),
    ];
    let (block, purges) = (options.block, options.purges);
    let title = format!("{purges} purges timed, 6 edges on up --cluster, 127.{block}.x.y");
    let (run, nothing) = (Run::new("purge", &meridian, options), Default::default());
    Ok(DrillReport::new(run, &title, false, &nothing, measures))
}

/// The names of the demo's six edges, once each reports a verified cache.
async fn verified_edges(bus: &cluster::Bus) -> Result<Vec<String>, BenchError> {
    for _ in 0..300 {
        let roles = cluster::reports::alive(bus).await?.into_iter();
        let edges = roles.filter(|r| r.role == "edge" && r.verified == Some(true));
        let edges: Vec<String> = edges.map(|r| r.name).collect();
        if edges.len() == 6 {
            return Ok(edges);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::invalid("bus", "6 verified edges in 30 s"))
}

/// Stores `purges` ([`WINDOW`] awaiting the stream at once), runs `then`, and waits until every
/// one of `edges` announced the last: how long after the moment `then` gives (else the first
/// store) the last did, or `None` if one did not within 30 s.
async fn purge_all(
    bus: &cluster::Bus,
    purges: impl Iterator<Item = Purge>,
    edges: &[String],
    then: impl Future<Output = Result<Option<Instant>, kit::KitError>>,
) -> Result<Option<Duration>, BenchError> {
    let (mut heard, started) = (Announcements::listen(bus).await?, Instant::now());
    let stored = futures::stream::iter(purges).map(|purge| async move { store(bus, &purge).await });
    let sequences: Vec<u64> = stored.buffered(WINDOW).try_collect().await?;
    let started = then.await?.unwrap_or(started);
    let last = sequences.into_iter().max().unwrap_or_default();
    let outcome = heard.outcome(edges, last, started, started + Duration::from_secs(30));
    Ok(outcome.await.slowest())
}
