//! Scenario `outage`: how fast GeoDNS steers around a dead region.
//!
//! The product promises that when a region dies, GeoDNS steers its clients
//! elsewhere within 2 s and back within 3 s of the region's recovery. This
//! scenario measures those times on the real topology, under load:
//!
//! 1. `meridian up` runs the demo on a loopback block of its own
//!    ([`Topology`], `--block`), with the demo's health settings;
//! 2. clients in GB, US and SG send a steady stream of GETs through the
//!    edges, each resolving `cdn.meridian.test` with its country's ECS
//!    subnet, keeping the answer for its TTL and, on a connection failure,
//!    re-resolving once, as a browser does; an observer per country asks
//!    GeoDNS every 100 ms, and a watcher polls eu-west's edge, to time when
//!    it really died and came back;
//! 3. the phases: a baseline; `meridian outage eu-west`; `meridian restore
//!    eu-west`; `meridian outage eu-west --component origin`; `meridian
//!    restore eu-west`. A phase holds for its planned time, and longer (up
//!    to a bound) while what it waits for has not happened, so a slow steer
//!    is measured rather than cut off.
//!
//! The times are held against the targets ([`crate::targets`]); the
//! requests that failed are reported for each phase, as information. That
//! no idempotent request fails while only an origin is down, and that
//! steering happens at all, are correctness, checked on every test run by
//! `failover::an_origin_outage_behind_a_live_edge_fails_no_request` and
//! `up::an_outage_steers_away_and_a_restore_steers_back` in `tests/`.
//!
//! The pure part, [`summarize`], turns the samples into the report.

use crate::BenchError;
use crate::report::{Row, Run, ScenarioReport};
use crate::stats::{LatencySummary, millis};
use crate::targets::target;
use hickory_proto::rr::RecordType;
use kit::{Topology, Up};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The region the drill takes down.
pub const OUTAGE_REGION: &str = "eu-west";

/// The clients' countries: code, ECS subnet, home region.
pub const COUNTRIES: [(&str, &str, &str); 3] = [
    ("GB", "81.2.69.0/24", "eu-west"),
    ("US", "8.8.8.0/24", "us-east"),
    ("SG", "203.116.1.0/24", "ap-southeast"),
];

/// The index in [`COUNTRIES`] of the country whose home goes down.
pub const GB: usize = 0;

/// The drill's knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutageOptions {
    /// How long the baseline runs, in ms.
    pub baseline_ms: u64,
    /// How long each later phase runs at least, in ms.
    pub phase_ms: u64,
    /// How much longer a phase may wait for what it is about, in ms.
    pub settle_timeout_ms: u64,
    /// Simulated clients per country.
    pub clients_per_country: usize,
    /// Requests per second each client sends.
    pub rate_per_client: u32,
    /// How often the observers ask GeoDNS, in ms.
    pub observe_interval_ms: u64,
    /// The steered answers' TTL in seconds; `None` keeps the demo's.
    pub steered_ttl_seconds: Option<u32>,
    /// The loopback block the topology runs on.
    pub block: u8,
    /// Whether these are the small CI settings.
    pub smoke: bool,
}

impl OutageOptions {
    /// A 5 s baseline, phases of at least 10 s, two clients per country at
    /// 20 requests/s, the demo's 30 s TTL (clients come home when it runs
    /// out). About 70 s.
    pub fn full() -> Self {
        OutageOptions {
            baseline_ms: 5_000,
            phase_ms: 10_000,
            settle_timeout_ms: 40_000,
            clients_per_country: 2,
            rate_per_client: 20,
            observe_interval_ms: 100,
            steered_ttl_seconds: None,
            block: 246,
            smoke: false,
        }
    }

    /// A quick run through every phase: 2-3 s phases, one client per
    /// country, a 5 s TTL. About 20 s.
    pub fn smoke() -> Self {
        OutageOptions {
            baseline_ms: 2_000,
            phase_ms: 3_000,
            settle_timeout_ms: 30_000,
            clients_per_country: 1,
            steered_ttl_seconds: Some(5),
            smoke: true,
            ..OutageOptions::full()
        }
    }
}

/// The drill's phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Everything up.
    Baseline,
    /// eu-west's edge and origin killed.
    RegionOutage,
    /// eu-west restarted.
    RegionRestored,
    /// Only eu-west's origin killed.
    OriginOutage,
    /// eu-west's origin restarted.
    OriginRestored,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Baseline,
        Phase::RegionOutage,
        Phase::RegionRestored,
        Phase::OriginOutage,
        Phase::OriginRestored,
    ];

    /// As people read it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::RegionOutage => "region outage",
            Phase::RegionRestored => "region restored",
            Phase::OriginOutage => "origin-only outage",
            Phase::OriginRestored => "origin restored",
        }
    }
}

/// What one client request saw, from the start of the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it started.
    pub at: Duration,
    /// The client's country (index into [`COUNTRIES`]).
    pub country: usize,
    /// The region of the edge its last attempt went to.
    pub edge: Option<String>,
    /// The region whose origin answered (`X-Meridian-Origin`), or why it
    /// failed.
    pub outcome: Result<String, String>,
    /// From its start to the end of the body or the failure.
    pub latency: Duration,
}

/// A sample of something that changes: a GeoDNS answer (a region, or an
/// error) or whether eu-west's edge answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<T> {
    /// When it was seen, from the start of the load.
    pub at: Duration,
    /// What was seen.
    pub value: T,
}

/// Everything one drill measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// When each phase began, from the start of the load (its command
    /// was issued then), and when the last one ended.
    pub phases: Vec<(Phase, Duration)>,
    /// When the drill ended.
    pub end: Duration,
    /// When `meridian restore` returned after the region outage.
    pub region_restored: Duration,
    /// Every client request, in start order.
    pub requests: Vec<RequestRecord>,
    /// GB's GeoDNS answers: the region, or the error.
    pub gb_answers: Vec<Sample<Result<String, String>>>,
    /// Whether eu-west's edge answered its health path.
    pub edge_up: Vec<Sample<bool>>,
}

/// One phase's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// The phase.
    pub phase: Phase,
    /// How long it ran, in ms.
    pub duration_ms: f64,
    /// Requests started in it.
    pub requests: usize,
    /// Those that failed, by reason.
    pub failed: BTreeMap<String, usize>,
    /// Latency of the successful ones.
    pub latency: LatencySummary,
    /// GB's successful requests, by the region of the edge that answered.
    pub gb_edges: BTreeMap<String, usize>,
}

/// The drill's result.
#[derive(Debug, Clone, Serialize)]
pub struct OutageReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<OutageOptions>,
    /// Each phase's requests.
    pub phases: Vec<PhaseReport>,
    /// From `meridian outage` until GeoDNS answered GB with another region.
    pub steered_away_ms: Option<f64>,
    /// From eu-west's edge answering again until GeoDNS answered GB with
    /// eu-west.
    pub steered_back_ms: Option<f64>,
    /// From the recovery until every GB client was on eu-west's edge again
    /// (bounded by the TTL of their cached answers).
    pub clients_home_ms: Option<f64>,
    /// GB's requests through eu-west's edge while its origin was down,
    /// answered by another region's origin, by region.
    pub failed_over_to: BTreeMap<String, usize>,
    /// The targets missed.
    pub failures: Vec<String>,
}

/// Runs the drill against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &OutageOptions) -> Result<OutageReport, BenchError> {
    if options.clients_per_country == 0 || options.rate_per_client == 0 {
        return Err(BenchError::InvalidOption {
            name: "--clients/--rate",
            reason: "need at least one client sending at least 1 request/s".to_owned(),
        });
    }
    let meridian = crate::locate_meridian(Some(meridian))?;
    let mut topology = Topology::demo(options.block);
    if let Some(ttl) = options.steered_ttl_seconds {
        topology = topology.steered_ttl(ttl);
    }
    let up = tokio::task::block_in_place(|| Up::start(&meridian, &topology))?;
    let measured = drive(&up, options).await;
    if measured.is_err() {
        up.process.replay();
    }
    Ok(summarize(&meridian, options, &measured?))
}

/// What the drill's tasks share.
struct Shared {
    topology: Topology,
    t0: Instant,
    stop: AtomicBool,
    /// GB's latest GeoDNS answer, and each client's current edge and
    /// latest origin, for the phases to wait on.
    gb_answer: Mutex<Option<String>>,
    client_edges: Mutex<Vec<Option<String>>>,
    gb_origin: Mutex<Option<String>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn region_of(&self, ip: IpAddr) -> String {
        (1..=3)
            .find(|&r| self.topology.edges(r).iter().any(|e| e.ip() == ip))
            .map_or_else(|| ip.to_string(), |r| self.topology.region_name(r))
    }
}

/// Starts the load, runs the phases, stops the load, collects.
async fn drive(up: &Up, options: &OutageOptions) -> Result<Measured, BenchError> {
    let countries: Vec<usize> = (0..COUNTRIES.len())
        .flat_map(|c| std::iter::repeat_n(c, options.clients_per_country))
        .collect();
    let shared = Arc::new(Shared {
        topology: up.topology.clone(),
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        gb_answer: Mutex::new(None),
        client_edges: Mutex::new(vec![None; countries.len()]),
        gb_origin: Mutex::new(None),
    });
    let period = Duration::from_secs_f64(1.0 / f64::from(options.rate_per_client));
    let clients: Vec<_> = countries
        .iter()
        .enumerate()
        .map(|(id, &country)| tokio::spawn(client(id, country, period, shared.clone())))
        .collect();
    let observe = Duration::from_millis(options.observe_interval_ms);
    let observer = tokio::spawn(observe_gb(observe, shared.clone()));
    let watcher = tokio::spawn(watch_edge(shared.clone()));

    let phases = run_phases(up, options, &shared, &countries).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut measured = Measured {
        end: shared.now(),
        ..Measured::default()
    };
    for task in clients {
        measured.requests.extend(task.await.unwrap_or_default());
    }
    measured.requests.sort_by_key(|r| r.at);
    measured.gb_answers = observer.await.unwrap_or_default();
    measured.edge_up = watcher.await.unwrap_or_default();
    (measured.phases, measured.region_restored) = phases?;
    Ok(measured)
}

/// The phases; see the module documentation.
async fn run_phases(
    up: &Up,
    options: &OutageOptions,
    shared: &Shared,
    countries: &[usize],
) -> Result<(Vec<(Phase, Duration)>, Duration), BenchError> {
    let phase = Duration::from_millis(options.phase_ms);
    let longest = phase + Duration::from_millis(options.settle_timeout_ms);
    let home_of = |c: usize| COUNTRIES[c].2;
    let gb_away = || {
        lock(&shared.gb_answer)
            .as_deref()
            .is_some_and(|r| r != OUTAGE_REGION)
    };
    let all_home = || {
        lock(&shared.gb_answer).as_deref() == Some(OUTAGE_REGION)
            && lock(&shared.client_edges)
                .iter()
                .zip(countries)
                .all(|(edge, &c)| edge.as_deref() == Some(home_of(c)))
    };
    let own_origin = || lock(&shared.gb_origin).as_deref() == Some(OUTAGE_REGION);
    let baseline = Duration::from_millis(options.baseline_ms);
    let mut phases = vec![(Phase::Baseline, shared.now())];
    hold(baseline, baseline, || true).await;

    let steps: [Step; 4] = [
        (Phase::RegionOutage, &["outage", OUTAGE_REGION], &gb_away),
        (
            Phase::RegionRestored,
            &["restore", OUTAGE_REGION],
            &all_home,
        ),
        (
            Phase::OriginOutage,
            &["outage", OUTAGE_REGION, "--component", "origin"],
            &|| false,
        ),
        (
            Phase::OriginRestored,
            &["restore", OUTAGE_REGION],
            &own_origin,
        ),
    ];
    let mut region_restored = Duration::ZERO;
    for (next, command, done) in steps {
        phases.push((next, shared.now()));
        let output = tokio::task::block_in_place(|| up.command(command))?;
        if !output.status.success() {
            return Err(BenchError::InvalidOption {
                name: "the drill",
                reason: format!(
                    "`meridian {}` failed: {}",
                    command.join(" "),
                    output.stderr.trim()
                ),
            });
        }
        if next == Phase::RegionRestored {
            region_restored = shared.now();
        }
        let most = if next == Phase::OriginOutage {
            phase
        } else {
            longest
        };
        hold(phase, most, done).await;
    }
    Ok((phases, region_restored))
}

/// A phase, the command that starts it, and what it waits for.
type Step<'a> = (Phase, &'a [&'a str], &'a dyn Fn() -> bool);

/// Waits at least `min`, then until `done()` holds or `max` has passed.
async fn hold(min: Duration, max: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while start.elapsed() < max && (start.elapsed() < min || !done()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asks GeoDNS where `country`'s clients go: the edge and the answer's TTL.
async fn resolve(
    socket: &tokio::net::UdpSocket,
    shared: &Shared,
    country: usize,
) -> Result<(IpAddr, u32), String> {
    let query = kit::dns::ecs("cdn.meridian.test.", RecordType::A, COUNTRIES[country].1);
    let server = shared.topology.dns();
    let reply = kit::dns::ask(socket, server, &query, Duration::from_secs(1)).await?;
    kit::dns::steered(&reply)
}

async fn dns_socket() -> Option<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()
}

/// One client: a GET every `period` (every fourth for the cacheable
/// asset, the others `/api/whoami`) until the drill stops.
async fn client(
    id: usize,
    country: usize,
    period: Duration,
    shared: Arc<Shared>,
) -> Vec<RequestRecord> {
    let Some(socket) = dns_socket().await else {
        return Vec::new();
    };
    let port = shared.topology.edge(1).port();
    let mut cached: Option<(IpAddr, Instant)> = None;
    let mut records = Vec::new();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for sent in 1u64.. {
        ticks.tick().await;
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let path = if sent % 4 == 0 {
            "/assets/1k.bin"
        } else {
            "/api/whoami"
        };
        let mut outcome = Err("not sent".to_owned());
        let mut edge = None;
        for attempt in 0..2 {
            if attempt == 1 || cached.is_none_or(|(_, expires)| Instant::now() >= expires) {
                match resolve(&socket, &shared, country).await {
                    Ok((ip, ttl)) => {
                        cached = Some((ip, Instant::now() + Duration::from_secs(u64::from(ttl))));
                    }
                    Err(e) => {
                        outcome = Err(format!("dns: {e}"));
                        break;
                    }
                }
            }
            let Some((ip, _)) = cached else { break };
            let region = shared.region_of(ip);
            lock(&shared.client_edges)[id] = Some(region.clone());
            edge = Some(region);
            match get(SocketAddr::new(ip, port), path).await {
                // A connection failure: re-resolve once and retry.
                Err(e) if e.is_connect() && attempt == 0 => outcome = Err("connect".to_owned()),
                Err(e) => {
                    outcome = Err(if e.is_timeout() {
                        "timeout"
                    } else {
                        "transport"
                    }
                    .to_owned());
                    break;
                }
                Ok((status, origin)) => {
                    outcome = if (200..300).contains(&status) {
                        Ok(origin)
                    } else {
                        Err(format!("HTTP {status}"))
                    };
                    break;
                }
            }
        }
        if country == GB
            && path == "/api/whoami"
            && let Ok(origin) = &outcome
        {
            *lock(&shared.gb_origin) = Some(origin.clone());
        }
        records.push(RequestRecord {
            at: started.saturating_duration_since(shared.t0),
            country,
            edge,
            outcome,
            latency: started.elapsed(),
        });
    }
    records
}

/// GETs `path` on the edge at `addr` (a new connection, as after a fresh
/// resolution): the status and `X-Meridian-Origin`.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), reqwest::Error> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("cdn.meridian.test", addr)
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://cdn.meridian.test:{}{path}", addr.port());
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    let origin = response
        .headers()
        .get("x-meridian-origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(cache)")
        .to_owned();
    response.bytes().await?;
    Ok((status, origin))
}

/// Asks GeoDNS where GB's clients go every `interval`.
async fn observe_gb(
    interval: Duration,
    shared: Arc<Shared>,
) -> Vec<Sample<Result<String, String>>> {
    let Some(socket) = dns_socket().await else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let answer = resolve(&socket, &shared, GB)
            .await
            .map(|(ip, _)| shared.region_of(ip));
        *lock(&shared.gb_answer) = answer.as_ref().ok().cloned();
        samples.push(Sample {
            at: shared.now(),
            value: answer,
        });
        tokio::time::sleep(interval).await;
    }
    samples
}

/// Whether eu-west's edge answers its health path, every 50 ms.
async fn watch_edge(shared: Arc<Shared>) -> Vec<Sample<bool>> {
    let edge = shared.topology.edge(2);
    let mut samples = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let up = get(edge, "/_meridian/health")
            .await
            .is_ok_and(|(status, _)| status == 200);
        samples.push(Sample {
            at: shared.now(),
            value: up,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    samples
}

/// Turns what was measured into the report (pure).
pub fn summarize(meridian: &Path, options: &OutageOptions, measured: &Measured) -> OutageReport {
    let start_of = |phase: Phase| {
        measured
            .phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, at)| *at)
    };
    let mut phases = Vec::new();
    for (i, &(phase, start)) in measured.phases.iter().enumerate() {
        let end = measured
            .phases
            .get(i + 1)
            .map_or(measured.end, |(_, at)| *at);
        let requests: Vec<&RequestRecord> = measured
            .requests
            .iter()
            .filter(|r| r.at >= start && r.at < end)
            .collect();
        let mut report = PhaseReport {
            phase,
            duration_ms: millis(end.saturating_sub(start)),
            requests: requests.len(),
            failed: BTreeMap::new(),
            latency: LatencySummary::from_samples(
                requests
                    .iter()
                    .filter(|r| r.outcome.is_ok())
                    .map(|r| r.latency),
            ),
            gb_edges: BTreeMap::new(),
        };
        for request in &requests {
            match &request.outcome {
                Err(reason) => *report.failed.entry(reason.clone()).or_default() += 1,
                Ok(_) if request.country == GB => {
                    let edge = request.edge.clone().unwrap_or_default();
                    *report.gb_edges.entry(edge).or_default() += 1;
                }
                Ok(_) => {}
            }
        }
        phases.push(report);
    }

    let kill = start_of(Phase::RegionOutage);
    let restore = start_of(Phase::RegionRestored);
    let origin_outage = start_of(Phase::OriginOutage);
    let answered = |from: Duration, until: Option<Duration>, home: bool| {
        measured.gb_answers.iter().find(|s| {
            s.at >= from
                && until.is_none_or(|u| s.at < u)
                && matches!(&s.value, Ok(region) if (region == OUTAGE_REGION) == home)
        })
    };
    let away = kill.and_then(|kill| answered(kill, restore, false).map(|s| s.at - kill));
    // Recovery: when eu-west's edge first answered again after the restore
    // began (when the restore returned, if the watcher never saw it).
    let recovered = restore.map(|restore| {
        measured
            .edge_up
            .iter()
            .find(|s| s.at >= restore && s.value)
            .map_or(measured.region_restored, |s| s.at)
    });
    let back = recovered
        .filter(|_| away.is_some())
        .and_then(|r| answered(r, origin_outage, true).map(|s| s.at.saturating_sub(r)));
    let clients_home = recovered.and_then(|recovered| {
        let gb_clients_home = measured.requests.iter().find(|r| {
            r.country == GB
                && r.at >= recovered
                && r.outcome.is_ok()
                && r.edge.as_deref() == Some(OUTAGE_REGION)
        });
        gb_clients_home.map(|r| r.at.saturating_sub(recovered))
    });
    let mut failed_over_to = BTreeMap::new();
    let origin_span = origin_outage.zip(start_of(Phase::OriginRestored));
    for request in &measured.requests {
        if let (Some((from, until)), Ok(origin)) = (origin_span, &request.outcome)
            && request.at >= from
            && request.at < until
            && request.country == GB
            && request.edge.as_deref() == Some(OUTAGE_REGION)
            && origin != OUTAGE_REGION
            && origin != "(cache)"
        {
            *failed_over_to.entry(origin.clone()).or_default() += 1;
        }
    }

    let mut failures = Vec::new();
    for (metric, what, time) in [
        ("steer_away", "away from the dead region", away),
        ("steer_back", "back after the recovery", back),
    ] {
        let goal = target("outage", metric);
        match time {
            Some(time) if goal.met(time.as_secs_f64()) => {}
            Some(time) => failures.push(format!(
                "GeoDNS steered GB {what} after {:.2} s (target {})",
                time.as_secs_f64(),
                goal.describe()
            )),
            None => failures.push(format!("GeoDNS was never seen steering GB {what}")),
        }
    }
    OutageReport {
        run: Run::new("outage", meridian, options),
        phases,
        steered_away_ms: away.map(millis),
        steered_back_ms: back.map(millis),
        clients_home_ms: clients_home.map(millis),
        failed_over_to,
        failures,
    }
}

/// `a: 1, b: 2`.
fn counts(counts: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn timing(ms: Option<f64>) -> String {
    ms.map_or_else(
        || "not seen".to_owned(),
        |ms| format!("{:.2} s", ms / 1000.0),
    )
}

impl ScenarioReport for OutageReport {
    fn title(&self) -> String {
        format!(
            "outage: {OUTAGE_REGION} killed, restored, then only its origin killed, under load \
             from GB, US and SG on 127.{}.x.y{}",
            self.run.options.block,
            if self.run.options.smoke {
                " (smoke)"
            } else {
                ""
            }
        )
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for phase in &self.phases {
            rows.push(Row::info(
                format!(
                    "{} ({:.1} s)",
                    phase.phase.label(),
                    phase.duration_ms / 1000.0
                ),
                format!(
                    "{} requests, failed: {}; p50 {:.1} ms, p99 {:.1} ms; GB via {}",
                    phase.requests,
                    counts(&phase.failed),
                    phase.latency.p50_ms,
                    phase.latency.p99_ms,
                    counts(&phase.gb_edges)
                ),
            ));
        }
        for (label, metric, ms) in [
            (
                "GB steered away, after the kill",
                "steer_away",
                self.steered_away_ms,
            ),
            (
                "GB steered back, after the recovery",
                "steer_back",
                self.steered_back_ms,
            ),
        ] {
            let goal = target("outage", metric);
            let met = ms.is_some_and(|ms| goal.met(ms / 1000.0));
            rows.push(Row::checked(label, timing(ms), goal.describe(), met));
        }
        rows.push(Row::info(
            "every GB client back, after the recovery",
            timing(self.clients_home_ms),
        ));
        rows.push(Row::info(
            "GB failed over to, origin down",
            counts(&self.failed_over_to),
        ));
        rows
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn answer(at: f64, region: &str) -> Sample<Result<String, String>> {
        Sample {
            at: s(at),
            value: Ok(region.to_owned()),
        }
    }

    fn request(at: f64, edge: &str, origin: &str) -> RequestRecord {
        RequestRecord {
            at: s(at),
            country: GB,
            edge: Some(edge.to_owned()),
            outcome: Ok(origin.to_owned()),
            latency: Duration::from_millis(2),
        }
    }

    /// A run whose phases start 10 s apart and end at 45 s, with nothing
    /// recorded.
    fn ten_second_phases() -> Measured {
        Measured {
            phases: Phase::ALL
                .iter()
                .copied()
                .zip([0.0, 10.0, 20.0, 30.0, 40.0].map(s))
                .collect(),
            end: s(45.0),
            ..Measured::default()
        }
    }

    #[test]
    fn steering_is_timed_from_the_kill_and_from_the_recovery() {
        let measured = Measured {
            region_restored: s(21.0),
            requests: vec![
                request(1.0, "eu-west", "eu-west"),
                RequestRecord {
                    outcome: Err("connect".to_owned()),
                    ..request(10.2, "eu-west", "")
                },
                request(25.0, "eu-west", "eu-west"),
                request(31.0, "eu-west", "us-east"),
            ],
            gb_answers: vec![
                answer(5.0, "eu-west"),
                answer(10.9, "us-east"),
                answer(20.5, "us-east"),
                answer(21.3, "eu-west"),
            ],
            edge_up: vec![
                Sample {
                    at: s(10.1),
                    value: false,
                },
                Sample {
                    at: s(20.5),
                    value: true,
                },
            ],
            ..ten_second_phases()
        };
        let report = summarize(Path::new("meridian"), &OutageOptions::smoke(), &measured);
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1.0);
        assert!(near(report.steered_away_ms, 900.0), "{report:?}");
        assert!(near(report.steered_back_ms, 800.0), "{report:?}");
        assert!(near(report.clients_home_ms, 4500.0), "{report:?}");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.phases[1].failed["connect"], 1);
        assert_eq!(report.failed_over_to["us-east"], 1);
    }

    #[test]
    fn a_slow_or_missing_steer_misses_its_target() {
        let measured = Measured {
            gb_answers: vec![answer(13.0, "us-east")],
            ..ten_second_phases()
        };
        let report = summarize(Path::new("meridian"), &OutageOptions::smoke(), &measured);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(
            report.failures[0].contains("3.00 s"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[1].contains("never"),
            "{:?}",
            report.failures
        );
    }
}
