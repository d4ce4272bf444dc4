//! Scenario `dns`: steered answers per server CPU-second, next to gdnsd.
//!
//! The product promises a GeoDNS at least as efficient as gdnsd, the
//! server its users would otherwise run. This scenario measures that on the
//! real binary:
//!
//! 1. the demo topology is moved onto a loopback block of its own
//!    ([`kit::Topology`], `--block`, so a running demo is left
//!    alone), and the bench answers the edges' health checks itself, so
//!    every region is up;
//! 2. `meridian geodns` runs pinned to one core with one UDP thread; with
//!    `--compare`, gdnsd 3 (`plugin_geoip`, one UDP thread) runs next to it
//!    on the same core, given the same database, the same zone and the same
//!    steering: its per-country map is generated from Meridian's own
//!    decision for each country, so both must give every client the same
//!    answer (checked);
//! 3. the load generator ([`crate::dnsload`]) sends `cdn.meridian.test. A`
//!    with an EDNS Client Subnet option from each of several countries, on
//!    the other core, in rounds that alternate between the servers;
//! 4. the report gives answers/s, latency, and answers per server
//!    CPU-second (the target: at least gdnsd's), and which address each
//!    country got from each server.

use crate::BenchError;
use crate::dnsload::{self, DnsLoadResult, DnsLoadSpec, PreparedQuery};
use crate::gdnsd;
use crate::peers::{Skipped, find_program};
use crate::pinning::Cores;
use crate::process::Launch;
use crate::report::{Row, Run, ScenarioReport};
use crate::stats::median;
use crate::targets::target;
use crate::turns::{Schedule, UnderTest, take_turns};
use geodns::{GeoDatabase, Steering};
use hickory_proto::rr::RecordType;
use kit::{Process, Topology};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// The steered name every query asks for.
const STEERED_NAME: &str = "cdn.meridian.test.";

/// The share of queries a server may lose (UDP under full load drops a
/// few when a receive buffer overflows; more means something is wrong).
const MAX_LOST_FRACTION: f64 = 0.001;

/// The scenario's knobs; the flags of `bench dns` change its preset
/// ([`full`](Self::full) or [`smoke`](Self::smoke)), the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct DnsOptions {
    /// Countries whose clients are simulated, comma-separated ISO codes
    /// [default: GB,US,DE,FR,JP,SG,AU,BR,IN,ZA].
    #[arg(long, value_delimiter = ',', value_name = "CODES", display_order = 1)]
    pub countries: Vec<String>,
    /// Seconds of load per server and round [default: 5; 1 with --smoke].
    #[arg(long = "duration", value_parser = crate::parse_seconds_as_ms, value_name = "SECS", required = false, display_order = 2)]
    pub duration_ms: u64,
    /// Rounds; the report gives medians [default: 3; 1 with --smoke].
    #[arg(long, value_name = "N", required = false, display_order = 3)]
    pub rounds: usize,
    /// Unmeasured load before the first round, in ms.
    #[arg(skip)]
    pub warmup_ms: u64,
    /// Client sockets.
    #[arg(skip)]
    pub sockets: usize,
    /// Queries in flight per client socket [default: 64; 16 with --smoke].
    #[arg(long, value_name = "N", required = false, display_order = 4)]
    pub outstanding: usize,
    /// Also run gdnsd 3 (plugin_geoip) with the same zone, database and
    /// steering, on the same core, and print the ratio.
    #[arg(long, display_order = 0)]
    pub compare: bool,
    /// Where and how long it may take to start, and which preset.
    #[command(flatten)]
    #[serde(flatten)]
    pub launch: Launch,
}

impl DnsOptions {
    /// Ten countries on six continents, three rounds of 5 s, 4 sockets with
    /// 64 queries in flight each.
    pub fn full() -> Self {
        DnsOptions {
            countries: ["GB", "US", "DE", "FR", "JP", "SG", "AU", "BR", "IN", "ZA"]
                .map(str::to_owned)
                .to_vec(),
            duration_ms: 5_000,
            rounds: 3,
            warmup_ms: 1_000,
            sockets: 4,
            outstanding: 64,
            compare: false,
            launch: Launch::full(241),
        }
    }

    /// A quick run for CI: one round of one second.
    pub fn smoke() -> Self {
        DnsOptions {
            duration_ms: 1_000,
            rounds: 1,
            warmup_ms: 200,
            outstanding: 16,
            launch: Self::full().launch.smoke(),
            ..DnsOptions::full()
        }
    }
}

/// One simulated client location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    /// Its country.
    pub country: String,
    /// The ECS subnet its queries carry.
    pub subnet: String,
    /// The edge address Meridian's steering gives it.
    pub expected: IpAddr,
    /// That edge's region.
    pub region: String,
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsServer {
    /// `meridian geodns`.
    Meridian,
    /// gdnsd with `plugin_geoip`.
    Gdnsd,
}

impl DnsServer {
    fn name(self) -> &'static str {
        match self {
            DnsServer::Meridian => "meridian",
            DnsServer::Gdnsd => "gdnsd",
        }
    }
}

/// One round of one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsRound {
    /// What the generator saw.
    pub load: DnsLoadResult,
    /// The server's CPU time, in seconds; `None` if `/proc` could not say.
    pub cpu_seconds: Option<f64>,
}

impl DnsRound {
    /// Good answers per second of server CPU.
    pub fn answers_per_cpu_second(&self) -> Option<f64> {
        let cpu = self.cpu_seconds.filter(|&s| s > 0.0)?;
        Some(self.load.answered as f64 / cpu)
    }
}

/// One server over all rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsMeasurement {
    /// The server.
    pub server: DnsServer,
    /// Every round.
    pub rounds: Vec<DnsRound>,
    /// Median answers per second.
    pub answers_per_second: f64,
    /// Median answers per server CPU-second.
    pub answers_per_cpu_second: Option<f64>,
    /// Median latencies, in ms.
    pub p50_ms: f64,
    /// Median p99, in ms.
    pub p99_ms: f64,
    /// Median p99.9, in ms.
    pub p999_ms: f64,
    /// Replies that were not NOERROR with an answer, over all rounds.
    pub bad: u64,
    /// Queries never answered, over all rounds.
    pub lost: u64,
    /// Per country, the addresses seen in the decoded sample.
    pub answers: BTreeMap<String, BTreeMap<IpAddr, u64>>,
}

impl DnsMeasurement {
    /// Summarizes `rounds` of `server`.
    pub fn from_rounds(server: DnsServer, rounds: Vec<DnsRound>) -> Self {
        let of = |f: fn(&DnsLoadResult) -> f64| median(rounds.iter().map(|r| f(&r.load)).collect());
        let per_cpu: Vec<f64> = rounds
            .iter()
            .filter_map(DnsRound::answers_per_cpu_second)
            .collect();
        let mut answers: BTreeMap<String, BTreeMap<IpAddr, u64>> = BTreeMap::new();
        for round in &rounds {
            for (country, seen) in &round.load.answers {
                let total = answers.entry(country.clone()).or_default();
                for (address, count) in seen {
                    *total.entry(*address).or_default() += count;
                }
            }
        }
        DnsMeasurement {
            server,
            answers_per_second: of(|l| l.answers_per_second),
            answers_per_cpu_second: (!per_cpu.is_empty()).then(|| median(per_cpu)),
            p50_ms: of(|l| l.p50_ms),
            p99_ms: of(|l| l.p99_ms),
            p999_ms: of(|l| l.p999_ms),
            bad: rounds.iter().map(|r| r.load.bad).sum(),
            lost: rounds.iter().map(|r| r.load.lost).sum(),
            answers,
            rounds,
        }
    }

    /// No bad replies, and at most [`MAX_LOST_FRACTION`] of queries lost.
    pub fn clean(&self) -> bool {
        let sent: u64 = self.rounds.iter().map(|r| r.load.sent).sum();
        self.bad == 0 && self.lost as f64 <= sent as f64 * MAX_LOST_FRACTION
    }

    /// The one address `country` got, or a description of what it got.
    fn answer_for(&self, country: &str) -> Result<IpAddr, String> {
        let seen = self.answers.get(country);
        match seen.map(|s| s.keys().collect::<Vec<_>>()).as_deref() {
            Some([only]) => Ok(**only),
            Some([]) | None => Err("no answer sampled".to_owned()),
            Some(several) => Err(format!("several answers: {several:?}")),
        }
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct DnsReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<DnsOptions>,
    /// Which cores ran what.
    pub cores: String,
    /// The simulated clients.
    pub clients: Vec<Client>,
    /// Each server's numbers.
    pub measurements: Vec<DnsMeasurement>,
    /// Meridian's answers per CPU-second over gdnsd's.
    pub ratio: Option<f64>,
    /// Peers that could not run.
    pub skipped: Vec<Skipped>,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

/// The demo topology on block `block`, validated: GeoDNS on
/// 127.B.0.1:5353 (gdnsd, when compared, on 127.B.0.2:5353), one edge per
/// region on 127.B.1-3.1 (as gdnsd answers each region with one address,
/// so both servers send the same answer, and every client gets one).
pub fn topology(block: u8) -> Result<(Topology, config::Config), BenchError> {
    // One GeoDNS, measured alone (gdnsd takes the demo's second address).
    let topology = single_edges(Topology::demo(block).single_geodns());
    let config = topology.config()?;
    Ok((topology, config))
}

/// `topology` with only the first edge of each of its three regions.
pub fn single_edges(topology: Topology) -> Topology {
    (1..=3).fold(topology, Topology::single_edge)
}

/// Where gdnsd answers next to GeoDNS on `block`.
pub fn gdnsd_listen(block: u8) -> SocketAddr {
    SocketAddr::from(([127, block, 0, 2], 5353))
}

/// The clients of `countries`: each one's ECS subnet (from the first
/// network the database places in that country) and the answer Meridian's
/// steering gives it.
pub fn clients(
    countries: &[String],
    db: &GeoDatabase,
    topology: &config::Config,
) -> Result<Vec<Client>, BenchError> {
    let known = db
        .countries()
        .map_err(|e| BenchError::invalid("the geo database", e))?;
    let steering = Steering::from_config(topology);
    countries
        .iter()
        .map(|code| {
            let code = code.to_ascii_uppercase();
            let sample = known.get(&code).ok_or_else(|| {
                BenchError::invalid(
                    "--countries",
                    format!("the database places no IPv4 network in {code:?}"),
                )
            })?;
            let (address, prefix) = sample.network;
            let source_prefix = prefix.max(24);
            let ip = IpAddr::V4(address);
            let order = steering.order_for(ip, Some(&sample.location));
            let region = order
                .regions
                .first()
                .and_then(|&i| topology.regions.get(i))
                .ok_or_else(|| BenchError::invalid("the benchmark topology", "no regions"))?;
            let expected = region.edge_addresses.first().copied().ok_or_else(|| {
                BenchError::invalid(
                    "the benchmark topology",
                    format!("region {} has no edge address", region.name),
                )
            })?;
            Ok(Client {
                country: code,
                subnet: format!("{}/{source_prefix}", network_of(address, source_prefix)),
                expected,
                region: region.name.clone(),
            })
        })
        .collect()
}

/// `address` with its host bits cleared.
fn network_of(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(address) & mask)
}

/// A wire-format `A` query for the steered name with `subnet` as ECS.
pub(crate) fn ecs_query(subnet: &str) -> Result<Vec<u8>, BenchError> {
    let parsed: Result<hickory_proto::rr::rdata::opt::ClientSubnet, _> = subnet.parse();
    let invalid = |reason: String| BenchError::invalid("a query", reason);
    parsed.map_err(|e| invalid(format!("{subnet}: {e}")))?;
    kit::dns::bytes(&kit::dns::ecs(STEERED_NAME, RecordType::A, subnet)).map_err(invalid)
}

/// Answers every HTTP request with 200: the edges' health checks, so that
/// GeoDNS sees every region up.
pub(crate) async fn serve_health(
    topology: &config::Config,
) -> Result<Vec<tokio::task::JoinHandle<()>>, BenchError> {
    let mut tasks = Vec::new();
    for region in &topology.regions {
        for addr in region.edge_http_addrs(&topology.edge) {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(BenchError::io("answer the edges' health checks"))?;
            let app = axum::Router::new().fallback(|| async { "ok\n" });
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
    }
    Ok(tasks)
}

/// Waits until `server` gives every client its expected answer (GeoDNS
/// first has to see the regions up), asking from a socket bound to `from`.
pub(crate) async fn wait_steering(
    process: &mut Process,
    server: SocketAddr,
    from: SocketAddr,
    clients: &[Client],
    timeout: Duration,
    accept: impl Fn(&Client, IpAddr) -> bool,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let socket = tokio::net::UdpSocket::bind(from)
        .await
        .map_err(BenchError::io("bind a UDP socket"))?;
    let mut last = String::from("no reply");
    loop {
        let mut all = true;
        for client in clients {
            match ask(&socket, server, &client.subnet).await {
                Ok(address) if accept(client, address) => {}
                Ok(address) => {
                    all = false;
                    last = format!("{} got {address}", client.country);
                }
                Err(e) => {
                    all = false;
                    last = e;
                }
            }
        }
        if all {
            return Ok(());
        }
        if !process.alive() || started.elapsed() > timeout {
            return Err(BenchError::invalid(
                "server",
                format!(
                    "{server} did not answer as expected within {timeout:?}: {last}\n{}",
                    process.log_excerpt()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One query; the first address of the reply.
async fn ask(
    socket: &tokio::net::UdpSocket,
    server: SocketAddr,
    subnet: &str,
) -> Result<IpAddr, String> {
    let query = kit::dns::ecs(STEERED_NAME, RecordType::A, subnet);
    let reply = kit::dns::ask(socket, server, &query, Duration::from_millis(500)).await?;
    kit::dns::steered(&reply).map(|(address, _)| address)
}

/// Where the readiness checks of this scenario ask from: any port on
/// 127.0.0.1.
const LOCAL_ANY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Starts `meridian` `geodns` on `topology`, pinned to the server core of
/// `cores`, and waits (up to `timeout`, asking from `from`) until it gives
/// every one of `clients` its expected answer. Returns the process and the
/// scratch directory holding its config, which must live as long as it
/// does.
pub(crate) async fn start_meridian(
    meridian: &Path,
    topology: &Topology,
    from: SocketAddr,
    timeout: Duration,
    cores: &Cores,
    clients: &[Client],
) -> Result<(Process, tempfile::TempDir), BenchError> {
    let workdir = crate::peers::workdir()?;
    let config = topology.write(workdir.path())?.display().to_string();
    let args = ["geodns".to_owned(), "--config".to_owned(), config];
    let (program, args) = cores.server_command(meridian, &args);
    let mut process = crate::process::spawn(Path::new(&program), &args)?;
    let expected = |c: &Client, a| a == c.expected;
    wait_steering(
        &mut process,
        topology.dns(),
        from,
        clients,
        timeout,
        expected,
    )
    .await?;
    Ok((process, workdir))
}

/// The embedded geo database, which GeoDNS also uses: the bench reads it
/// to choose each simulated client's subnet.
pub(crate) fn embedded_database() -> Result<GeoDatabase, BenchError> {
    GeoDatabase::embedded().map_err(|e| BenchError::invalid("the geo database", e))
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &DnsOptions) -> Result<DnsReport, BenchError> {
    if options.countries.is_empty() || options.rounds == 0 || options.duration_ms == 0 {
        return Err(BenchError::invalid(
            "--countries/--rounds/--duration",
            "need at least one country, one round and a duration",
        ));
    }
    let cores = Cores::choose();
    let (topology, config) = topology(options.launch.block)?;
    let db = embedded_database()?;
    let clients = clients(&options.countries, &db, &config)?;
    let queries = clients
        .iter()
        .map(|c| {
            Ok(PreparedQuery {
                label: c.country.clone(),
                packet: ecs_query(&c.subnet)?,
            })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let health = serve_health(&config).await?;

    let mut skipped = Vec::new();
    let gdnsd = options.compare.then(|| find_program("gdnsd")).flatten();
    if options.compare && gdnsd.is_none() {
        skipped.push(Skipped::not_installed("gdnsd", "gdnsd", "gdnsd"));
    }

    let mut running = Vec::new();
    let timeout = options.launch.ready_timeout();
    let started = start_meridian(meridian, &topology, LOCAL_ANY, timeout, &cores, &clients);
    let (process, workdir) = started.await?;
    running.push(UnderTest {
        server: DnsServer::Meridian,
        listen: topology.dns(),
        process,
        workdir,
    });

    if let Some(gdnsd) = gdnsd {
        let listen = gdnsd_listen(options.launch.block);
        let (mut process, workdir) = gdnsd::start(&gdnsd, &config, &db, listen, &cores)?;
        // Any answer will do here: whether gdnsd agrees is measured.
        wait_steering(
            &mut process,
            listen,
            LOCAL_ANY,
            &clients,
            timeout,
            |_, _| true,
        )
        .await?;
        running.push(UnderTest {
            server: DnsServer::Gdnsd,
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
    let turn = async |target: &UnderTest<DnsServer>, _: &(), duration| {
        let spec = DnsLoadSpec {
            server: target.listen,
            queries: queries.clone(),
            sockets: options.sockets,
            outstanding: options.outstanding,
            duration,
            timeout: Duration::from_secs(1),
        };
        let (load, cpu) = target.cpu_during(load(spec, cores)).await;
        let cpu_seconds = cpu.map(|cpu| cpu.total().as_secs_f64());
        Ok(DnsRound {
            load: load?,
            cpu_seconds,
        })
    };
    let label = |server: &DnsServer, _: &()| server.name().to_owned();
    let turns = take_turns(&running, &[()], schedule, &skipped, label, turn).await?;
    let measurements: Vec<DnsMeasurement> = (running.iter().zip(turns))
        .map(|(target, turns)| DnsMeasurement::from_rounds(target.server, turns.concat()))
        .collect();
    drop(running);
    for task in health {
        task.abort();
    }
    Ok(summarize(
        meridian,
        options,
        cores.describe(),
        clients,
        measurements,
        skipped,
    ))
}

/// Runs the load generator on a blocking thread.
async fn load(spec: DnsLoadSpec, cores: Cores) -> Result<DnsLoadResult, BenchError> {
    tokio::task::spawn_blocking(move || dnsload::run(&spec, &cores))
        .await
        .map_err(|e| BenchError::invalid("load generator", e))?
        .map_err(|e| BenchError::invalid("load generator", e))
}

fn describe_numbers(
    answers_per_second: f64,
    per_cpu: Option<f64>,
    latency: (f64, f64, f64),
    bad: u64,
    lost: u64,
) -> String {
    let mut text = format!(
        "{:.0} answers/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        answers_per_second, latency.0, latency.1, latency.2
    );
    if let Some(per_cpu) = per_cpu {
        text.push_str(&format!(", {per_cpu:.0} answers per CPU-second"));
    }
    if bad > 0 || lost > 0 {
        text.push_str(&format!(", {bad} bad, {lost} lost"));
    }
    text
}

impl std::fmt::Display for DnsRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let load = &self.load;
        let latency = (load.p50_ms, load.p99_ms, load.p999_ms);
        let per_cpu = self.answers_per_cpu_second();
        let numbers = describe_numbers(
            load.answers_per_second,
            per_cpu,
            latency,
            load.bad,
            load.lost,
        );
        f.write_str(&numbers)
    }
}

fn describe(m: &DnsMeasurement) -> String {
    describe_numbers(
        m.answers_per_second,
        m.answers_per_cpu_second,
        (m.p50_ms, m.p99_ms, m.p999_ms),
        m.bad,
        m.lost,
    )
}

/// Turns what was measured into the report, with its verdicts.
pub fn summarize(
    meridian: &Path,
    options: &DnsOptions,
    cores: String,
    clients: Vec<Client>,
    measurements: Vec<DnsMeasurement>,
    skipped: Vec<Skipped>,
) -> DnsReport {
    let mut failures = Vec::new();
    let ours = measurements
        .iter()
        .find(|m| m.server == DnsServer::Meridian);
    let theirs = measurements.iter().find(|m| m.server == DnsServer::Gdnsd);
    if let Some(ours) = ours.filter(|o| !o.clean()) {
        failures.push(format!(
            "meridian: {} bad replies and {} lost queries (target: no bad replies, \
             at most {MAX_LOST_FRACTION} of queries lost)",
            ours.bad, ours.lost
        ));
    }
    for (m, client) in measurements
        .iter()
        .flat_map(|m| clients.iter().map(move |c| (m, c)))
    {
        let (country, expected) = (&client.country, client.expected);
        match m.answer_for(country) {
            Ok(address) if address == expected => {}
            Ok(address) if m.server == DnsServer::Meridian => failures.push(format!(
                "meridian sent {country} clients to {address}, not {expected} ({})",
                client.region
            )),
            Ok(address) => failures.push(format!(
                "gdnsd sent {country} clients to {address}, Meridian to {expected}: the \
                 servers are not configured alike, so the comparison is unfair"
            )),
            Err(e) => failures.push(format!("{}, {country}: {e}", m.server.name())),
        }
    }
    let ratio = ours
        .and_then(|o| o.answers_per_cpu_second)
        .zip(theirs.and_then(|t| t.answers_per_cpu_second))
        .map(|(o, t)| o / t);
    let goal = target("dns", "ratio");
    if let Some(ratio) = ratio
        && !goal.met(ratio)
    {
        failures.push(format!(
            "meridian answered {ratio:.2}× gdnsd's queries per CPU-second (target {})",
            goal.describe()
        ));
    }
    DnsReport {
        run: Run::new("dns", meridian, options),
        cores,
        clients,
        measurements,
        ratio,
        skipped,
        passed: failures.is_empty(),
        failures,
    }
}

impl ScenarioReport for DnsReport {
    fn title(&self) -> String {
        format!(
            "dns: steered A queries with ECS from {} countries, {} sockets × {} in flight, \
             median of {} rounds of {:.1} s; {}",
            self.clients.len(),
            self.run.options.sockets,
            self.run.options.outstanding,
            self.run.options.rounds,
            self.run.options.duration_ms as f64 / 1000.0,
            self.cores
        )
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for m in &self.measurements {
            let value = describe(m);
            if m.server == DnsServer::Meridian {
                rows.push(Row::checked(
                    m.server.name(),
                    value,
                    "no bad replies, ≤ 0.1 % lost",
                    m.clean(),
                ));
            } else {
                rows.push(Row::info(m.server.name(), value));
            }
        }
        if let Some(ratio) = self.ratio {
            rows.push(Row::checked(
                "answers per CPU-second, meridian / gdnsd",
                format!("{ratio:.2}×"),
                target("dns", "ratio").describe(),
                target("dns", "ratio").met(ratio),
            ));
        }
        for client in &self.clients {
            let got: Vec<String> = self
                .measurements
                .iter()
                .map(|m| match m.answer_for(&client.country) {
                    Ok(address) => format!("{} {address}", m.server.name()),
                    Err(e) => format!("{} ({e})", m.server.name()),
                })
                .collect();
            let right = self
                .measurements
                .iter()
                .all(|m| m.answer_for(&client.country) == Ok(client.expected));
            rows.push(Row::checked(
                format!("{} via {}", client.country, client.subnet),
                got.join(", "),
                format!("{} ({})", client.expected, client.region),
                right,
            ));
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

    fn db() -> GeoDatabase {
        GeoDatabase::embedded().unwrap()
    }

    #[test]
    fn clients_get_the_region_meridian_steers_them_to() {
        let (_, topology) = topology(241).unwrap();
        let countries = ["GB", "US", "SG"].map(str::to_owned);
        let clients = clients(&countries, &db(), &topology).unwrap();
        let regions: Vec<&str> = clients.iter().map(|c| c.region.as_str()).collect();
        assert_eq!(regions, ["eu-west", "us-east", "ap-southeast"]);
        assert_eq!(clients[0].expected.to_string(), "127.241.2.1");
        let unknown = super::clients(&["QQ".to_owned()], &db(), &topology);
        assert!(unknown.is_err());
    }

    #[test]
    fn queries_carry_the_subnet() {
        let packet = ecs_query("81.2.69.0/24").unwrap();
        let message = hickory_proto::op::Message::from_vec(&packet).unwrap();
        assert_eq!(message.queries[0].name().to_ascii(), STEERED_NAME);
        let edns = message.edns.unwrap();
        assert!(matches!(
            edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet),
            Some(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(_))
        ));
        assert_eq!(
            network_of(Ipv4Addr::new(81, 2, 69, 142), 24),
            Ipv4Addr::new(81, 2, 69, 0)
        );
        assert_eq!(
            network_of(Ipv4Addr::new(81, 2, 69, 142), 0),
            Ipv4Addr::UNSPECIFIED
        );
    }

    fn measured(server: DnsServer, per_cpu: f64, gb: &str) -> DnsMeasurement {
        let load = DnsLoadResult {
            answered: 1000,
            sent: 1000,
            answers_per_second: 1000.0,
            answers: BTreeMap::from([("GB".into(), BTreeMap::from([(gb.parse().unwrap(), 10)]))]),
            ..DnsLoadResult::default()
        };
        let cpu_seconds = Some(1000.0 / per_cpu);
        DnsMeasurement::from_rounds(server, vec![DnsRound { load, cpu_seconds }])
    }

    /// The report on Meridian answering GB with `answer` at `per_cpu`
    /// answers per CPU-second, against gdnsd's 100,000 with the right one.
    fn against_gdnsd(per_cpu: f64, answer: &str) -> DnsReport {
        let gb = Client {
            country: "GB".into(),
            subnet: "81.2.69.0/24".into(),
            expected: "127.0.218.1".parse().unwrap(),
            region: "eu-west".into(),
        };
        let ours = measured(DnsServer::Meridian, per_cpu, answer);
        let theirs = measured(DnsServer::Gdnsd, 100_000.0, "127.0.218.1");
        let (options, meridian) = (DnsOptions::full(), Path::new("meridian"));
        summarize(
            meridian,
            &options,
            "pinned".into(),
            vec![gb],
            vec![ours, theirs],
            Vec::new(),
        )
    }

    #[test]
    fn the_ratio_is_per_cpu_second_and_answers_must_agree() {
        let report = against_gdnsd(150_000.0, "127.0.218.1");
        assert!((report.ratio.unwrap() - 1.5).abs() < 1e-9);
        assert!(report.passed, "{:?}", report.failures);

        let report = against_gdnsd(90_000.0, "127.0.217.1");
        assert!(!report.passed);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        let gb_row = report
            .rows()
            .into_iter()
            .find(|r| r.metric == "GB via 81.2.69.0/24");
        assert_eq!(gb_row.unwrap().verdict, crate::report::Verdict::Fail);
    }
}
