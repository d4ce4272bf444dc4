//! The drills' engine, shared by `outage` ([`crate::outage`]) and
//! `partition` ([`crate::partition`]): `meridian up` on the demo topology
//! (on loopback, or with `--hosts`: every process on a network host of its
//! own, the addresses moved to a /16 of their own), steady load from
//! clients in GB, US and SG, and a list of phases ([`Step`]) that break
//! and heal things.
//!
//! Each client resolves `cdn.meridian.test` with its country's ECS subnet
//! as a resolver does (ns1, then ns2 when ns1 does not answer), keeps the
//! answer for its TTL and, when an edge cannot be reached, tries the other
//! answered edge and then re-resolves once, as a browser does. An observer
//! asks every nameserver for GB's answer every 100 ms, and a watcher polls
//! eu-west's first edge. A phase holds for its planned time, and longer (up
//! to a bound) while what it waits for has not happened, so a slow steer is
//! measured rather than cut off. [`phase_reports`] and [`DrillReport`] turn
//! the samples into the table, each scenario its own measures.

use crate::BenchError;
use crate::report::{Row, Run, ScenarioReport, counts};
use crate::stats::{LatencySummary, millis};
use crate::targets::target;
use hickory_proto::rr::RecordType;
use kit::{Topology, Up};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The region the drills break.
pub const OUTAGE_REGION: &str = "eu-west";

/// The clients' countries: code, ECS subnet, home region.
pub const COUNTRIES: [(&str, &str, &str); 3] = [
    ("GB", "81.2.69.0/24", "eu-west"),
    ("US", "8.8.8.0/24", "us-east"),
    ("SG", "203.116.1.0/24", "ap-southeast"),
];

/// The index in [`COUNTRIES`] of the country whose home goes down.
pub const GB: usize = 0;

/// How long a client waits for one nameserver before asking the next.
const NAMESERVER_TIMEOUT: Duration = Duration::from_millis(400);

/// The drills' knobs; the flags of `bench outage` and `bench partition`
/// change their preset ([`full`](Self::full) or [`smoke`](Self::smoke)),
/// the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct DrillOptions {
    /// How long the baseline runs [default: 5000; 2000 with --smoke].
    #[arg(long, value_name = "MS", required = false, display_order = 1)]
    pub baseline_ms: u64,
    /// How long each phase runs at least [default: 10000; 3000 with
    /// --smoke].
    #[arg(long, value_name = "MS", required = false, display_order = 0)]
    pub phase_ms: u64,
    /// How much longer a phase may wait for what it is about, in ms.
    #[arg(skip)]
    pub settle_timeout_ms: u64,
    /// Simulated clients per country [default: 2; 1 with --smoke].
    #[arg(
        long = "clients",
        value_name = "N",
        required = false,
        display_order = 2
    )]
    pub clients_per_country: usize,
    /// Requests per second of each client [default: 20].
    #[arg(long = "rate", value_name = "N", required = false, display_order = 3)]
    pub rate_per_client: u32,
    /// How often the observer asks GeoDNS, in ms.
    #[arg(skip)]
    pub observe_interval_ms: u64,
    /// TTL of steered answers in seconds [default: the demo's 30; 5 with
    /// --smoke].
    #[arg(long = "steered-ttl", value_name = "SECONDS", display_order = 4)]
    pub steered_ttl_seconds: Option<u32>,
    /// The loopback block the topology's config is written on.
    #[arg(skip)]
    pub block: u8,
    /// `up --hosts` with the addresses moved to this /16 (its first two
    /// octets); `None` runs on loopback.
    #[arg(skip)]
    pub hosts_subnet: Option<[u8; 2]>,
    /// Whether these are the small CI settings.
    #[arg(skip)]
    pub smoke: bool,
}

impl DrillOptions {
    /// A 5 s baseline, phases of at least 10 s, two clients per country at
    /// 20 requests/s, the demo's 30 s TTL, on loopback block 246.
    pub fn full() -> Self {
        DrillOptions {
            baseline_ms: 5_000,
            phase_ms: 10_000,
            settle_timeout_ms: 40_000,
            clients_per_country: 2,
            rate_per_client: 20,
            observe_interval_ms: 100,
            steered_ttl_seconds: None,
            block: 246,
            hosts_subnet: None,
            smoke: false,
        }
    }

    /// A quick run through every phase: 2-3 s phases, one client per
    /// country, a 5 s TTL.
    pub fn smoke() -> Self {
        DrillOptions {
            baseline_ms: 2_000,
            phase_ms: 3_000,
            settle_timeout_ms: 30_000,
            clients_per_country: 1,
            steered_ttl_seconds: Some(5),
            smoke: true,
            ..DrillOptions::full()
        }
    }

    /// Where `addr` of the topology's config is while the drill runs: the
    /// same, or moved onto the hosts' subnet as `up --hosts` moves it.
    pub fn host(&self, addr: SocketAddr) -> SocketAddr {
        match (self.hosts_subnet, addr.ip()) {
            (Some([a, b]), IpAddr::V4(ip)) if ip.is_loopback() => {
                let [_, _, c, d] = ip.octets();
                SocketAddr::new(IpAddr::from([a, b, c, d]), addr.port())
            }
            _ => addr,
        }
    }

    /// The drill's DNS sockets' address: loopback, or this machine's own
    /// address on the hosts' network (never 127.0.0.1 there: no route).
    fn source(&self) -> IpAddr {
        let own = |[a, b]: [u8; 2]| IpAddr::from([a, b, 255, 254]);
        self.hosts_subnet.map_or(IpAddr::from([127, 0, 0, 1]), own)
    }
}

/// What starts a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the baseline.
    Nothing,
    /// `meridian ARGS`, against the running `up`.
    Meridian(&'static [&'static str]),
    /// SIGKILL to the process `meridian status` names so (`geodns ns1`).
    Kill(String),
}

/// One phase: its name, what starts it, and what it waits for after its
/// planned time, up to the settle timeout (`None`: it ends on time).
pub struct Step(&'static str, Action, Option<fn(&Shared) -> bool>);

impl Step {
    /// Phase `phase`, begun by `action`, held for its planned time.
    pub fn new(phase: &'static str, action: Action) -> Step {
        Step(phase, action, None)
    }

    /// The same, held longer (up to the settle timeout) until `done`.
    pub fn until(self, done: fn(&Shared) -> bool) -> Step {
        Step(self.0, self.1, Some(done))
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

/// Something seen at a time, from the start of the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<T> {
    /// When it was seen.
    pub at: Duration,
    /// What was seen.
    pub value: T,
}

/// One nameserver's answer for GB: which (0 for ns1), and the edges
/// answered with their regions, or the error.
pub type Answer = (usize, Result<Vec<(IpAddr, String)>, String>);

/// The region of a steered answer (its edges are all in one).
pub fn region_of(answer: &Answer) -> Option<&str> {
    let edges = answer.1.as_ref().ok()?;
    edges.first().map(|(_, region)| region.as_str())
}

/// Everything one drill measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// When each phase began (its action was taken then) and when its
    /// action had been taken, from the start of the load.
    pub phases: Vec<(&'static str, Duration, Duration)>,
    /// When the drill ended.
    pub end: Duration,
    /// How many nameservers were asked.
    pub servers: usize,
    /// Every client request, in start order.
    pub requests: Vec<RequestRecord>,
    /// Every nameserver's answers for GB.
    pub gb_answers: Vec<Sample<Answer>>,
    /// Whether eu-west's first edge answered its health path.
    pub edge_up: Vec<Sample<bool>>,
}

impl Measured {
    /// When `phase` began, when its action had been taken, and when it
    /// ended.
    pub fn span(&self, phase: &str) -> Option<(Duration, Duration, Duration)> {
        let i = self.phases.iter().position(|p| p.0 == phase)?;
        let end = self.phases.get(i + 1).map_or(self.end, |p| p.1);
        Some((self.phases[i].1, self.phases[i].2, end))
    }

    /// The first time in `[from, until)` at which every nameserver's latest
    /// answer met `test`.
    pub fn all_answered(
        &self,
        (from, until): (Duration, Duration),
        test: impl Fn(&Answer) -> bool,
    ) -> Option<Duration> {
        let mut met = vec![false; self.servers.max(1)];
        let window = self.gb_answers.iter().filter(|s| s.at >= from);
        for sample in window.take_while(|s| s.at < until) {
            if let Some(slot) = met.get_mut(sample.value.0) {
                *slot = test(&sample.value);
            }
            if met.iter().all(|&m| m) {
                return Some(sample.at);
            }
        }
        None
    }
}

/// Starts `meridian up` on the demo topology the options describe.
pub fn start(meridian: &Path, options: &DrillOptions) -> Result<(PathBuf, Up), BenchError> {
    if options.clients_per_country == 0 || options.rate_per_client == 0 {
        return Err(BenchError::invalid(
            "--clients/--rate",
            "need at least one client sending at least 1 request/s",
        ));
    }
    let meridian = crate::locate_meridian(Some(meridian))?;
    let mut topology = Topology::demo(options.block);
    if let Some(ttl) = options.steered_ttl_seconds {
        topology = topology.steered_ttl(ttl);
    }
    let subnet = options.hosts_subnet.map(|[a, b]| format!("{a}.{b}.0.0/16"));
    let flags: Vec<&str> = match &subnet {
        Some(subnet) => vec!["--hosts", "--hosts-subnet", subnet],
        None => Vec::new(),
    };
    let up = tokio::task::block_in_place(|| Up::start_with(&meridian, &topology, &flags))?;
    Ok((meridian, up))
}

/// What the drill's tasks share.
pub struct Shared {
    options: DrillOptions,
    topology: Topology,
    countries: Vec<usize>,
    t0: Instant,
    stop: AtomicBool,
    /// Each nameserver's latest GB region, each client's current edge's
    /// region and GB's latest origin, for the phases to wait on.
    gb_answer: Mutex<Vec<Option<String>>>,
    client_edges: Mutex<Vec<Option<String>>>,
    gb_origin: Mutex<Option<String>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn region_of(&self, ip: IpAddr) -> String {
        let ours =
            |r: &u8| (self.topology.edges(*r).iter()).any(|&e| self.options.host(e).ip() == ip);
        (1..=3)
            .find(ours)
            .map_or_else(|| ip.to_string(), |r| self.topology.region_name(r))
    }

    /// The nameservers, in the order resolvers ask them.
    fn nameservers(&self) -> Vec<SocketAddr> {
        let servers = 0..self.topology.geodns_servers();
        (servers.map(|s| self.options.host(self.topology.dns_of(s)))).collect()
    }

    /// Whether every nameserver answers GB with eu-west (`home`), or
    /// every one with another region.
    fn gb_answered(&self, home: bool) -> bool {
        let answers = lock(&self.gb_answer);
        let is = |r: &Option<String>| r.as_deref().is_some_and(|r| (r == OUTAGE_REGION) == home);
        answers.iter().all(is)
    }
}

/// Whether every nameserver answers GB with another region.
pub fn gb_away(shared: &Shared) -> bool {
    shared.gb_answered(false)
}

/// Whether every nameserver answers GB with eu-west.
pub fn gb_home(shared: &Shared) -> bool {
    shared.gb_answered(true)
}

/// Whether GB is answered with eu-west and every client is home.
pub fn all_home(shared: &Shared) -> bool {
    let edges = lock(&shared.client_edges);
    let home = |(edge, &c): (&Option<String>, &usize)| edge.as_deref() == Some(COUNTRIES[c].2);
    gb_home(shared) && edges.iter().zip(&shared.countries).all(home)
}

/// Whether GB's latest request was answered by eu-west's origin.
pub fn own_origin(shared: &Shared) -> bool {
    lock(&shared.gb_origin).as_deref() == Some(OUTAGE_REGION)
}

/// Starts the load, runs the steps, stops the load, collects.
pub async fn drive(
    up: &Up,
    options: &DrillOptions,
    steps: Vec<Step>,
) -> Result<Measured, BenchError> {
    let countries: Vec<usize> = (0..COUNTRIES.len())
        .flat_map(|c| std::iter::repeat_n(c, options.clients_per_country))
        .collect();
    let servers = up.topology.geodns_servers();
    let shared = Arc::new(Shared {
        options: options.clone(),
        topology: up.topology.clone(),
        client_edges: Mutex::new(vec![None; countries.len()]),
        countries,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        gb_answer: Mutex::new(vec![None; servers]),
        gb_origin: Mutex::new(None),
    });
    let period = Duration::from_secs_f64(1.0 / f64::from(options.rate_per_client));
    let clients: Vec<_> = (shared.countries.iter().enumerate())
        .map(|(id, &country)| tokio::spawn(client(id, country, period, shared.clone())))
        .collect();
    let observe = Duration::from_millis(options.observe_interval_ms);
    let observer = tokio::spawn(observe_gb(observe, shared.clone()));
    let watcher = tokio::spawn(watch_edge(shared.clone()));

    let phases = run_steps(up, options, &shared, steps).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut measured = Measured {
        end: shared.now(),
        servers,
        ..Measured::default()
    };
    for task in clients {
        measured.requests.extend(task.await.unwrap_or_default());
    }
    measured.requests.sort_by_key(|r| r.at);
    measured.gb_answers = observer.await.unwrap_or_default();
    measured.edge_up = watcher.await.unwrap_or_default();
    measured.phases = phases?;
    Ok(measured)
}

/// Takes each step and holds its phase.
async fn run_steps(
    up: &Up,
    options: &DrillOptions,
    shared: &Shared,
    steps: Vec<Step>,
) -> Result<Vec<(&'static str, Duration, Duration)>, BenchError> {
    let mut phases = Vec::new();
    for (i, Step(phase, action, until)) in steps.into_iter().enumerate() {
        let began = shared.now();
        tokio::task::block_in_place(|| act(up, &action))?;
        phases.push((phase, began, shared.now()));
        let planned = if i == 0 {
            options.baseline_ms
        } else {
            options.phase_ms
        };
        let min = Duration::from_millis(planned);
        let max = until.map_or(min, |_| {
            min + Duration::from_millis(options.settle_timeout_ms)
        });
        let start = Instant::now();
        let waiting = || until.is_some_and(|done| !done(shared));
        while start.elapsed() < max && (start.elapsed() < min || waiting()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(phases)
}

/// Takes `action` on the topology `up` runs.
fn act(up: &Up, action: &Action) -> Result<(), BenchError> {
    let failed = |reason: String| BenchError::invalid("the drill", reason);
    match action {
        Action::Nothing => Ok(()),
        Action::Meridian(command) => {
            let output = up.command(command)?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = output.stderr.trim();
            Err(failed(format!(
                "`meridian {}` failed: {stderr}",
                command.join(" ")
            )))
        }
        Action::Kill(process) => Ok(up.signal(process, nix::sys::signal::Signal::SIGKILL)?),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asks nameserver `server` where `country`'s clients go: the edges and
/// the answer's TTL.
async fn resolve(
    socket: &tokio::net::UdpSocket,
    server: SocketAddr,
    country: usize,
) -> Result<(Vec<IpAddr>, u32), String> {
    let query = kit::dns::ecs("cdn.meridian.test.", RecordType::A, COUNTRIES[country].1);
    let reply = kit::dns::ask(socket, server, &query, NAMESERVER_TIMEOUT).await?;
    let (_, ttl) = kit::dns::steered(&reply)?;
    Ok((kit::dns::addresses(&reply), ttl))
}

/// Resolves as a resolver does: each nameserver in turn until one answers.
async fn resolve_any(
    socket: &tokio::net::UdpSocket,
    shared: &Shared,
    country: usize,
) -> Result<(Vec<IpAddr>, u32), String> {
    let mut error = "no nameserver".to_owned();
    for server in shared.nameservers() {
        match resolve(socket, server, country).await {
            Ok(answer) => return Ok(answer),
            Err(e) => error = e,
        }
    }
    Err(error)
}

async fn dns_socket(shared: &Shared) -> Option<tokio::net::UdpSocket> {
    let source = SocketAddr::new(shared.options.source(), 0);
    tokio::net::UdpSocket::bind(source).await.ok()
}

/// One client: a GET every `period` (every fourth for the cacheable
/// asset, the others `/api/whoami`) until the drill stops.
async fn client(
    id: usize,
    country: usize,
    period: Duration,
    shared: Arc<Shared>,
) -> Vec<RequestRecord> {
    let Some(socket) = dns_socket(&shared).await else {
        return Vec::new();
    };
    let port = shared.topology.edge(1).port();
    let mut cached: Option<(Vec<IpAddr>, Instant)> = None;
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
        'attempts: for attempt in 0..2 {
            let expired = |(_, expires): &(Vec<IpAddr>, Instant)| Instant::now() >= *expires;
            if attempt == 1 || cached.as_ref().is_none_or(expired) {
                match resolve_any(&socket, &shared, country).await {
                    Ok((ips, ttl)) => {
                        cached = Some((ips, Instant::now() + Duration::from_secs(u64::from(ttl))));
                    }
                    Err(e) => {
                        outcome = Err(format!("dns: {e}"));
                        break;
                    }
                }
            }
            let Some((ips, _)) = &cached else { break };
            // Each client starts on an edge of its own, as resolvers'
            // rotations spread them, and tries the others in turn.
            for &ip in ips
                .iter()
                .cycle()
                .skip(id % ips.len().max(1))
                .take(ips.len())
            {
                let region = shared.region_of(ip);
                lock(&shared.client_edges)[id] = Some(region.clone());
                edge = Some(region);
                outcome = match get(SocketAddr::new(ip, port), path).await {
                    // Not reached: the next edge, then re-resolve.
                    Err(e) if e.is_connect() => Err("connect".to_owned()),
                    Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                    Err(_) => Err("transport".to_owned()),
                    Ok((status, _)) if !(200..300).contains(&status) => {
                        Err(format!("HTTP {status}"))
                    }
                    Ok((_, origin)) => Ok(origin),
                };
                if outcome.as_ref().is_err_and(|e| e == "connect") {
                    continue;
                }
                break 'attempts;
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
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), reqwest::Error> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("cdn.meridian.test", addr)
        // A partitioned edge drops packets: give up on it as a browser
        // does, well before the request's own timeout.
        .connect_timeout(Duration::from_millis(500))
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

/// Asks every nameserver where GB's clients go, every `interval`.
async fn observe_gb(interval: Duration, shared: Arc<Shared>) -> Vec<Sample<Answer>> {
    let Some(socket) = dns_socket(&shared).await else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        for (server, addr) in shared.nameservers().into_iter().enumerate() {
            let edges = resolve(&socket, addr, GB).await.map(|(ips, _)| {
                let regions = ips.iter().map(|&ip| shared.region_of(ip));
                ips.iter().copied().zip(regions).collect()
            });
            let answer = (server, edges);
            if let Some(latest) = lock(&shared.gb_answer).get_mut(server) {
                *latest = region_of(&answer).map(str::to_owned);
            }
            let at = shared.now();
            samples.push(Sample { at, value: answer });
        }
        tokio::time::sleep(interval).await;
    }
    samples
}

/// Whether eu-west's first edge answers its health path, every 50 ms.
async fn watch_edge(shared: Arc<Shared>) -> Vec<Sample<bool>> {
    let edge = shared.options.host(shared.topology.edge(2));
    let mut samples = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let health = get(edge, "/_meridian/health").await;
        let value = health.is_ok_and(|(status, _)| status == 200);
        samples.push(Sample {
            at: shared.now(),
            value,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    samples
}

/// One phase's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// The phase.
    pub phase: &'static str,
    /// How long it ran, in ms.
    pub duration_ms: f64,
    /// Requests started in it.
    pub requests: usize,
    /// Those that failed, by reason.
    pub failed: BTreeMap<String, usize>,
    /// GB's requests that failed.
    pub gb_failed: usize,
    /// Latency of the successful ones.
    pub latency: LatencySummary,
    /// GB's successful requests, by the region of the edge that answered.
    pub gb_edges: BTreeMap<String, usize>,
}

/// Each phase's requests (pure).
pub fn phase_reports(measured: &Measured) -> Vec<PhaseReport> {
    let mut phases = Vec::new();
    for &(phase, _, _) in &measured.phases {
        let Some((start, _, end)) = measured.span(phase) else {
            continue;
        };
        let requests: Vec<&RequestRecord> = (measured.requests.iter())
            .filter(|r| r.at >= start && r.at < end)
            .collect();
        let served = requests.iter().filter(|r| r.outcome.is_ok());
        let mut report = PhaseReport {
            phase,
            duration_ms: millis(end.saturating_sub(start)),
            requests: requests.len(),
            failed: BTreeMap::new(),
            gb_failed: 0,
            latency: LatencySummary::from_samples(served.map(|r| r.latency)),
            gb_edges: BTreeMap::new(),
        };
        for request in &requests {
            match &request.outcome {
                Err(reason) => {
                    *report.failed.entry(reason.clone()).or_default() += 1;
                    report.gb_failed += usize::from(request.country == GB);
                }
                Ok(_) if request.country == GB => {
                    let edge = request.edge.clone().unwrap_or_default();
                    *report.gb_edges.entry(edge).or_default() += 1;
                }
                Ok(_) => {}
            }
        }
        phases.push(report);
    }
    phases
}

/// One measure of a drill, a row of its table: held against the target
/// of its scenario named `metric` (and labelled with what the target
/// says), or information with a label of its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    /// Its key; for a checked measure, its target's.
    pub metric: &'static str,
    /// What it is, for information; `None` for a checked measure.
    pub label: Option<&'static str>,
    /// The value, in seconds or a count; `None` when never seen.
    pub value: Option<f64>,
    /// The value as shown.
    pub shown: String,
}

impl Measure {
    /// A value, checked against its target, shown as `shown`.
    pub fn of(metric: &'static str, value: Option<f64>, shown: String) -> Measure {
        let label = None;
        Measure {
            metric,
            label,
            value,
            shown,
        }
    }

    /// A time, checked against its target.
    pub fn time(metric: &'static str, time: Option<Duration>) -> Measure {
        let seconds = time.map(|t| t.as_secs_f64());
        let shown = seconds.map_or("not seen".to_owned(), |s| format!("{s:.2} s"));
        Measure::of(metric, seconds, shown)
    }

    /// A count, checked against its target.
    pub fn count(metric: &'static str, count: Option<usize>) -> Measure {
        let shown = count.map_or("not measured".to_owned(), |n| n.to_string());
        Measure::of(metric, count.map(|n| n as f64), shown)
    }

    /// This measure as information, labelled `label`: not checked.
    pub fn info(self, label: &'static str) -> Measure {
        let label = Some(label);
        Measure { label, ..self }
    }
}

/// A drill's result: each phase's requests, and its measures (or another
/// scenario's that is made of measures, with `O` its options).
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport<O = DrillOptions> {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<O>,
    /// What it did, in a line.
    pub title: String,
    /// Each phase's requests.
    pub phases: Vec<PhaseReport>,
    /// What was measured.
    pub measures: Vec<Measure>,
    /// The targets missed.
    pub failures: Vec<String>,
}

impl<O: Clone + Serialize> DrillReport<O> {
    /// The report of `run` (titled `title`, marked if a `smoke` run) with
    /// what was `measured` in its phases and these measures.
    pub fn new(
        run: Run<O>,
        title: &str,
        smoke: bool,
        measured: &Measured,
        measures: Vec<Measure>,
    ) -> Self {
        let smoke = if smoke { " (smoke)" } else { "" };
        let mut report = DrillReport {
            title: format!("{}: {title}{smoke}", run.scenario),
            run,
            phases: phase_reports(measured),
            measures,
            failures: Vec::new(),
        };
        report.failures = report.failures();
        report
    }

    /// The value of measure `metric`.
    pub fn value(&self, metric: &str) -> Option<f64> {
        self.measures.iter().find(|m| m.metric == metric)?.value
    }
}

impl<O: Clone + Serialize> ScenarioReport for DrillReport<O> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn rows(&self) -> Vec<Row> {
        let phase = |p: &PhaseReport| {
            Row::info(
                format!("{} ({:.1} s)", p.phase, p.duration_ms / 1000.0),
                format!(
                    "{} requests, failed: {}; p50 {:.1} ms, p99 {:.1} ms; GB via {}",
                    p.requests,
                    counts(&p.failed),
                    p.latency.p50_ms,
                    p.latency.p99_ms,
                    counts(&p.gb_edges)
                ),
            )
        };
        let measure = |m: &Measure| {
            if let Some(label) = m.label {
                return Row::info(label, m.shown.clone());
            }
            let goal = target(self.run.scenario, m.metric);
            let met = m.value.is_some_and(|v| goal.met(v));
            Row::checked(goal.what, m.shown.clone(), goal.describe(), met)
        };
        let phases = self.phases.iter().map(phase);
        phases.chain(self.measures.iter().map(measure)).collect()
    }
}
