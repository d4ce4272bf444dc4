//! Scenario `outage`: the regional-outage drill.
//!
//! The product promises that when a region dies, GeoDNS steers its clients
//! elsewhere within 2 s and back within 3 s of the region's recovery, and
//! that when only a region's origin dies, the region's edge fails over to
//! another region's origin without failing one idempotent request. This
//! drill checks those promises the way users live them:
//!
//! 1. `meridian up` runs the demo topology moved onto a private loopback
//!    block (`127.200.x.y` to `127.215.x.y`: clear of a running demo on
//!    `127.0.x.y` and of the integration tests' blocks), with the demo's
//!    health settings;
//! 2. simulated clients in three countries (GB, US, SG) send a steady
//!    stream of GETs through the edges. Each resolves `cdn.meridian.test`
//!    through GeoDNS with an EDNS Client Subnet of its country, keeps the
//!    answer for its TTL, and on a connection failure re-resolves once and
//!    retries on the new answer, as a browser would;
//! 3. an observer per country asks GeoDNS every 100 ms, to time when its
//!    answer changes; two watchers poll eu-west's edge and GeoDNS's own
//!    health view, to time when the region really died and recovered, and
//!    when GeoDNS noticed;
//! 4. the phases: a baseline; `meridian outage eu-west` (its edge and
//!    origin SIGKILLed); `meridian restore eu-west`; `meridian outage
//!    eu-west --component origin`; `meridian restore eu-west`. A phase holds
//!    for its planned time, and longer (up to a bound) while the change it
//!    is about has not happened yet, so a slow steer is measured rather than
//!    cut off.
//!
//! Clients honour the TTL, so after a recovery they come back only when
//! their cached answer expires: the drill reports that too, because it is
//! what users see, and waits for it before the origin-only outage so that
//! GB's traffic really goes through eu-west's edge again.
//!
//! The pure part, [`summarize`], turns the samples into the report.

use crate::BenchError;
use crate::process::{MeridianProcess, error_chain};
use crate::report::{Row, ScenarioReport};
use crate::stats::{LatencySummary, millis};
use config::{Config, ConfigSource};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// The region the drill takes down.
pub const OUTAGE_REGION: &str = "eu-west";

/// The steered name clients resolve.
pub const STEERED_NAME: &str = "cdn.meridian.test.";

/// The host clients ask the edges for.
pub const HOST: &str = "cdn.meridian.test";

/// The dynamic endpoint (`Cache-Control: no-store`): every request for it
/// reaches an origin, so it is what an origin outage can fail.
pub const WHOAMI_PATH: &str = "/api/whoami";

/// A cacheable asset: served from the edge's cache once warm.
pub const ASSET_PATH: &str = "/assets/1k.bin";

/// The asset's size.
const ASSET_BYTES: usize = 1024;

/// The loopback blocks the drill may use: `127.200.x.y` to `127.215.x.y`.
/// The demo runs on `127.0.x.y`; the integration tests use blocks 41 to 114.
pub const BLOCKS: RangeInclusive<u8> = 200..=215;

/// The product's target: GeoDNS steers away from a dead region within this.
pub const STEER_AWAY_TARGET: Duration = Duration::from_secs(2);

/// The product's target: and back within this of the region's recovery.
pub const STEER_BACK_TARGET: Duration = Duration::from_secs(3);

/// The countries the drill's clients are in.
pub const COUNTRIES: [Country; 3] = [
    Country {
        code: "GB",
        network: Ipv4Addr::new(81, 2, 69, 0),
        prefix: 24,
        home: "eu-west",
    },
    Country {
        code: "US",
        network: Ipv4Addr::new(8, 8, 8, 0),
        prefix: 24,
        home: "us-east",
    },
    Country {
        code: "SG",
        network: Ipv4Addr::new(203, 116, 1, 0),
        prefix: 24,
        home: "ap-southeast",
    },
];

/// The index in [`COUNTRIES`] of the country whose home region goes down.
pub const GB: usize = 0;

/// How long one DNS query may take before it counts as lost.
const DNS_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the watcher of eu-west's edge probes it: finer than the DNS
/// observers, because the recovery it times is what "back within 3 s" is
/// measured from.
const EDGE_WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// How long a watcher's probe may take.
const WATCH_TIMEOUT: Duration = Duration::from_millis(400);

/// How often a phase checks whether what it waits for has happened.
const HOLD_POLL: Duration = Duration::from_millis(50);

/// How often readiness of `meridian up` is polled.
const READY_POLL: Duration = Duration::from_millis(100);

/// How long one readiness poll may take: `up` binds its control port before
/// it starts the topology but answers only once everything is ready, so a
/// poll before that hangs until this timeout.
const READY_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long `meridian outage` / `restore` may take (a restore waits until
/// the restarted processes answer).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// How long `meridian up` gets to stop its children after SIGTERM before
/// it is killed (it gives them 8 s itself).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How many groups of identical request errors the report keeps.
const ERROR_SAMPLES: usize = 5;

/// The drill's knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutageOptions {
    /// How long the baseline runs before the outage, in ms.
    pub baseline_ms: u64,
    /// How long each later phase runs at least, in ms.
    pub phase_ms: u64,
    /// How much longer a phase may run while waiting for the change it is
    /// about (GB steered away; steered back and every client home; the
    /// edge back on its own origin), in ms.
    pub settle_timeout_ms: u64,
    /// Simulated clients per country.
    pub clients_per_country: usize,
    /// Requests per second each client sends.
    pub rate_per_client: u32,
    /// Every Nth request of a client is the cacheable asset, the others
    /// `/api/whoami`; 0 for none.
    pub asset_every: u32,
    /// How often the DNS observers and the GeoDNS health watcher poll, in ms.
    pub observe_interval_ms: u64,
    /// How long one HTTP attempt may take, in ms.
    pub request_timeout_ms: u64,
    /// How long `meridian up` may take to be ready, in ms.
    pub ready_timeout_ms: u64,
    /// The steered answers' TTL, in seconds; `None` keeps the demo's.
    pub steered_ttl_seconds: Option<u32>,
    /// The loopback block (`127.BLOCK.x.y`, within [`BLOCKS`]); `None`
    /// takes the first one whose addresses are all free.
    pub block: Option<u8>,
    /// Whether these are the small CI settings.
    pub smoke: bool,
}

impl OutageOptions {
    /// The drill as the product brief states it, with the demo's 30 s TTL:
    /// a 5 s baseline, then phases of at least 10 s; two clients per
    /// country at 20 requests/s each. About 70 s: after the restore, the
    /// clients come back only when their 30 s TTL runs out.
    pub fn full() -> Self {
        OutageOptions {
            baseline_ms: 5_000,
            phase_ms: 10_000,
            settle_timeout_ms: 40_000,
            clients_per_country: 2,
            rate_per_client: 20,
            asset_every: 4,
            observe_interval_ms: 100,
            request_timeout_ms: 2_000,
            ready_timeout_ms: 60_000,
            steered_ttl_seconds: None,
            block: None,
            smoke: false,
        }
    }

    /// A quick run for CI that still goes through every phase: 2 s and 3 s
    /// phases, one client per country, and a 5 s TTL so the clients come
    /// back home quickly after the restore. About 20 s.
    pub fn smoke() -> Self {
        OutageOptions {
            baseline_ms: 2_000,
            phase_ms: 3_000,
            settle_timeout_ms: 15_000,
            clients_per_country: 1,
            steered_ttl_seconds: Some(5),
            smoke: true,
            ..OutageOptions::full()
        }
    }

    /// Refuses options the drill cannot run with.
    fn check(&self) -> Result<(), BenchError> {
        let invalid = |name, reason: &str| {
            Err(BenchError::InvalidOption {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.clients_per_country == 0 {
            return invalid("--clients", "must be at least 1");
        }
        if self.rate_per_client == 0 {
            return invalid("--rate", "must be at least 1 request per second");
        }
        if self.observe_interval_ms == 0 {
            return invalid("--observe-interval-ms", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return invalid("--request-timeout-ms", "must be at least 1");
        }
        if let Some(block) = self.block
            && !BLOCKS.contains(&block)
        {
            return invalid(
                "--block",
                &format!(
                    "{block} is outside {}..={}: the drill's addresses must not clash with \
                     the demo (127.0.x.y) or the integration tests (127.41-114.x.y)",
                    BLOCKS.start(),
                    BLOCKS.end()
                ),
            );
        }
        Ok(())
    }

    /// The time the drill expects to take, for the progress bar. The
    /// restored phase lasts until the clients' cached answers (taken about
    /// a second into the outage) expire, if that is longer than a phase.
    fn planned(&self, steered_ttl: u32) -> Duration {
        let phase = Duration::from_millis(self.phase_ms);
        let clients_home = (Duration::from_secs(u64::from(steered_ttl) + 1)).saturating_sub(phase);
        Duration::from_millis(self.baseline_ms) + 3 * phase + phase.max(clients_home)
    }
}

impl Default for OutageOptions {
    fn default() -> Self {
        OutageOptions::full()
    }
}

/// A country the drill's clients are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Country {
    /// ISO 3166-1 code.
    pub code: &'static str,
    /// The client subnet its clients send: a network the embedded database
    /// places in the country (the README and the DNS tests use the same).
    pub network: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The region GeoDNS sends it to while everything is up.
    pub home: &'static str,
}

impl Country {
    /// The subnet as `81.2.69.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
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
    /// Only eu-west's origin killed; its edge lives.
    OriginOutage,
    /// eu-west's origin restarted.
    OriginRestored,
}

impl Phase {
    /// Every phase, in the order the drill runs them.
    pub const ALL: [Phase; 5] = [
        Phase::Baseline,
        Phase::RegionOutage,
        Phase::RegionRestored,
        Phase::OriginOutage,
        Phase::OriginRestored,
    ];

    /// The phase as people read it.
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

/// When one phase ran, from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseSpan {
    /// The phase.
    pub phase: Phase,
    /// When it began.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
}

/// A `meridian outage` or `restore` command: when it was started and when
/// it returned, from the start of the load. The killed processes are dead
/// when an outage returns; the restarted ones answer when a restore does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Action {
    /// When the command was started.
    pub issued: Duration,
    /// When it returned.
    pub done: Duration,
}

/// When the drill did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Every phase that ran, in order.
    pub phases: Vec<PhaseSpan>,
    /// `meridian outage eu-west`.
    pub region_outage: Action,
    /// The `meridian restore eu-west` after it.
    pub region_restore: Action,
    /// `meridian outage eu-west --component origin`.
    pub origin_outage: Action,
    /// The `meridian restore eu-west` after it.
    pub origin_restore: Action,
}

/// What one client request saw. A request is one logical GET: when its
/// first attempt fails to connect, the re-resolution and the retry are
/// part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it started, from the start of the load.
    pub at: Duration,
    /// Which client sent it.
    pub client: usize,
    /// The client's country (an index into [`COUNTRIES`]).
    pub country: usize,
    /// Whether it asked for the asset rather than `/api/whoami`.
    pub asset: bool,
    /// The region of the edge its last attempt went to.
    pub edge_region: Option<String>,
    /// The status of a complete response, or why the request failed:
    /// `connect`, `timeout`, `dns: ...`, `HTTP 502`, `short body ...`.
    pub outcome: Result<u16, String>,
    /// The response's `X-Meridian-Origin`: whose origin produced it.
    pub origin_region: Option<String>,
    /// Whether a connection failure made the client re-resolve and retry.
    pub retried: bool,
    /// From its start, through any resolution and retry, to the end of the
    /// body (or the failure).
    pub latency: Duration,
    /// The last transport error in full, if there was one.
    pub error: Option<String>,
}

impl RequestRecord {
    /// Whether it got a whole, successful response.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// One GeoDNS answer to an observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSample {
    /// When the answer arrived, from the start of the load.
    pub at: Duration,
    /// The country asked for (an index into [`COUNTRIES`]).
    pub country: usize,
    /// The region whose edge was answered, or why there was no answer.
    pub answer: Result<String, String>,
}

/// One look at whether something is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSample {
    /// When the look ended, from the start of the load.
    pub at: Duration,
    /// What it saw.
    pub up: bool,
}

/// Everything measured in one drill, before it is summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// The phases and commands.
    pub timeline: Timeline,
    /// Every client request, in start order.
    pub requests: Vec<RequestRecord>,
    /// Every observer answer, in time order.
    pub dns: Vec<DnsSample>,
    /// GeoDNS's own view of eu-west (its `/health`), in time order.
    pub dns_view: Vec<HealthSample>,
    /// Whether eu-west's edge answered its health path, in time order.
    pub edge_health: Vec<HealthSample>,
    /// Each client's country, by client number.
    pub client_countries: Vec<usize>,
}

/// The topology the drill ran on, read back from its validated config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillSetup {
    /// The loopback block: every address is `127.BLOCK.x.y`.
    pub block: u8,
    /// GeoDNS's UDP and TCP address.
    pub geodns: SocketAddr,
    /// The control API of `meridian up`.
    pub control: SocketAddr,
    /// The steered answers' TTL.
    pub steered_ttl_seconds: u32,
    /// Time between two health probes of one edge.
    pub health_interval_ms: u64,
    /// Consecutive failed probes that mark an edge down.
    pub health_down_after: u32,
    /// Consecutive good probes that mark it up again.
    pub health_up_after: u32,
    /// Each region's first edge address.
    pub edges: BTreeMap<String, IpAddr>,
}

impl DrillSetup {
    fn of(block: u8, config: &Config) -> DrillSetup {
        DrillSetup {
            block,
            geodns: config.geodns.listen,
            control: config.control.listen,
            steered_ttl_seconds: config.zone.steered_ttl_seconds,
            health_interval_ms: u64::try_from(config.health.interval.as_millis())
                .unwrap_or(u64::MAX),
            health_down_after: config.health.down_after,
            health_up_after: config.health.up_after,
            edges: config
                .regions
                .iter()
                .filter_map(|r| Some((r.name.clone(), *r.edge_addresses.first()?)))
                .collect(),
        }
    }
}

/// One phase's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// The phase.
    pub phase: Phase,
    /// When it began, from the start of the load, in ms.
    pub start_ms: f64,
    /// How long it ran, in ms.
    pub duration_ms: f64,
    /// Requests started in it.
    pub requests_sent: usize,
    /// Those that did not get a whole successful response.
    pub failed: usize,
    /// Failed requests per reason.
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Requests that re-resolved and retried after a connection failure.
    pub retried: usize,
    /// Latency of the successful requests.
    pub latency: LatencySummary,
    /// Successful requests per country and per region of the edge that
    /// answered: `{"GB": {"eu-west": 90, "us-east": 10}}`.
    pub edges: BTreeMap<String, BTreeMap<String, usize>>,
}

/// The region outage's timings, in ms. "After the kill" counts from when
/// `meridian outage` was started; "after recovery" from when eu-west's
/// edge first answered its health path again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionOutageTimes {
    /// How long `meridian outage eu-west` took (the kill and its reply).
    pub outage_command_ms: f64,
    /// Until GeoDNS's `/health` said eu-west was down.
    pub detected_down_ms: Option<f64>,
    /// Until GeoDNS first answered GB with another region (target ≤ 2 s).
    pub steered_away_ms: Option<f64>,
    /// Which region that was.
    pub steered_to: Option<String>,
    /// From `meridian restore` until eu-west's edge answered again.
    pub recovered_ms: Option<f64>,
    /// How long `meridian restore eu-west` took.
    pub restore_command_ms: f64,
    /// After recovery, until GeoDNS's `/health` said eu-west was up.
    pub detected_up_ms: Option<f64>,
    /// After recovery, until GeoDNS answered GB with eu-west again
    /// (target ≤ 3 s).
    pub steered_back_ms: Option<f64>,
    /// After recovery, until every GB client had a request answered by
    /// eu-west's edge again (bounded by their cached answers' TTL).
    pub clients_home_ms: Option<f64>,
}

/// The origin-only outage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OriginOutageSummary {
    /// Requests of every client in the phase (all idempotent GETs).
    pub requests: usize,
    /// Those that failed (target: 0).
    pub failed: usize,
    /// GB's `/api/whoami` requests answered through eu-west's edge.
    pub gb_whoami_via_edge: usize,
    /// Of those, how many each other region's origin answered.
    pub answered_by_other_origin: BTreeMap<String, usize>,
    /// GeoDNS answers to the GB observer while the origin was down.
    pub gb_dns_answers: usize,
    /// Of those, answers with another region than eu-west (target: 0).
    pub gb_dns_elsewhere: usize,
    /// Of those, queries that got no answer.
    pub gb_dns_errors: usize,
    /// After `meridian restore` returned (the origin answers), until a GB
    /// `/api/whoami` was answered by eu-west's origin again, in ms.
    pub back_on_own_origin_ms: Option<f64>,
}

/// One change of a country's GeoDNS answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsChange {
    /// When the new answer arrived, from the start of the load, in ms.
    pub at_ms: u64,
    /// The country.
    pub country: &'static str,
    /// The region now answered, or `error: ...`.
    pub answer: String,
}

/// The drill's result.
#[derive(Debug, Clone, Serialize)]
pub struct OutageReport {
    /// Always `outage`.
    pub scenario: &'static str,
    /// The binary measured.
    pub meridian: PathBuf,
    /// The options it ran with.
    pub options: OutageOptions,
    /// The topology it ran on.
    pub setup: DrillSetup,
    /// The clients' countries.
    pub countries: Vec<Country>,
    /// Each phase's requests.
    pub phases: Vec<PhaseReport>,
    /// The region outage's timings.
    pub region_outage: RegionOutageTimes,
    /// The origin-only outage.
    pub origin_outage: OriginOutageSummary,
    /// Every change of a country's GeoDNS answer.
    pub dns_changes: Vec<DnsChange>,
    /// The request errors in full, grouped by phase, country, edge and
    /// message, with counts (the first few groups).
    pub error_samples: Vec<String>,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

impl OutageReport {
    /// The report of `phase`, if it ran.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

/// Runs the drill against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &OutageOptions) -> Result<OutageReport, BenchError> {
    options.check()?;
    // Before any address is probed: a missing binary is the likeliest
    // mistake, and says how to fix it.
    if !meridian.is_file() {
        return Err(BenchError::MissingMeridian {
            path: meridian.to_path_buf(),
        });
    }
    let (block, text, config) = choose_block(options.block, options.steered_ttl_seconds)?;
    let setup = DrillSetup::of(block, &config);
    let targets = Targets::of(&config)?;
    let mut topology = Topology::start(meridian, &text, block)?;
    topology
        .wait_ready(
            config.control.listen,
            Duration::from_millis(options.ready_timeout_ms),
        )
        .await?;
    let measured = async {
        check_home_steering(&targets).await?;
        drive(&topology, targets, options, setup.steered_ttl_seconds).await
    }
    .await;
    // Stopped on every path, so an error midway leaves nothing running.
    topology.stop().await;
    let measured = match measured {
        Ok(measured) => measured,
        Err(error) => {
            topology.process.replay_output();
            return Err(error);
        }
    };
    let report = summarize(meridian, options, setup, &measured);
    if !report.passed {
        topology.process.replay_output();
    }
    Ok(report)
}

/// A [`BenchError`] for a step of the drill that failed for a reason that
/// is not an OS error (a command's own error message, a wrong answer).
fn drill_error(action: &'static str, message: String) -> BenchError {
    BenchError::Io {
        action,
        source: std::io::Error::other(message),
    }
}

/// Locks `mutex`, even if a task panicked while holding it: the values are
/// plain samples, never left half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The topology: config, addresses, the `meridian up` process.
// ---------------------------------------------------------------------------

/// The demo topology moved onto `127.BLOCK.x.y`, as TOML text: every
/// `127.0.x.y` address (bare, with a port, or in an `http://` URL) becomes
/// `127.BLOCK.x.y`, and the steered TTL becomes `steered_ttl_seconds` when
/// given. Everything else, the health settings above all, stays the demo's.
///
/// The edit is structural (on the parsed TOML, not on its text), so it
/// follows the demo wherever an address is; [`choose_block`] then checks
/// that the validated result has nothing left outside the block.
pub fn drill_config_text(
    block: u8,
    steered_ttl_seconds: Option<u32>,
) -> Result<String, BenchError> {
    let mut table: toml::Table = config::DEMO_TOML.parse().map_err(|e: toml::de::Error| {
        drill_error("read the embedded demo config", e.to_string())
    })?;
    for (_, value) in table.iter_mut() {
        move_to_block(value, block);
    }
    if let Some(ttl) = steered_ttl_seconds {
        let zone = table
            .get_mut("zone")
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| {
                drill_error(
                    "set the drill's TTL",
                    "the demo config has no [zone]".to_owned(),
                )
            })?;
        zone.insert(
            "steered_ttl_seconds".to_owned(),
            toml::Value::Integer(i64::from(ttl)),
        );
    }
    toml::to_string(&table).map_err(|e| drill_error("write the drill's config", e.to_string()))
}

/// Rewrites every `127.0.` address inside `value` onto `127.BLOCK.`.
fn move_to_block(value: &mut toml::Value, block: u8) {
    match value {
        toml::Value::String(text) => {
            if let Some(moved) = moved_address(text, block) {
                *text = moved;
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|v| move_to_block(v, block)),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| move_to_block(v, block)),
        _ => {}
    }
}

/// `127.0.X.Y...` (optionally after `http://`) as `127.BLOCK.X.Y...`;
/// `None` for anything else.
fn moved_address(text: &str, block: u8) -> Option<String> {
    let (scheme, rest) = match text.strip_prefix("http://") {
        Some(rest) => ("http://", rest),
        None => ("", text),
    };
    let rest = rest.strip_prefix("127.0.")?;
    Some(format!("{scheme}127.{block}.{rest}"))
}

/// Every address the topology listens on, with whether it is UDP.
fn listen_addrs(config: &Config) -> Vec<(SocketAddr, bool)> {
    let mut addrs = vec![
        (config.control.listen, false),
        (config.geodns.listen, false),
        (config.geodns.listen, true),
        (config.geodns.admin_listen, false),
    ];
    for region in &config.regions {
        addrs.extend(
            region
                .edge_http_addrs(&config.edge)
                .into_iter()
                .map(|a| (a, false)),
        );
        addrs.extend(
            region
                .edge_https_addrs(&config.edge)
                .into_iter()
                .map(|a| (a, false)),
        );
        addrs.push((region.edge_admin_addr(&config.edge), false));
        addrs.push((region.origin_listen, false));
    }
    addrs
}

/// Why `addr` cannot be bound now, if it cannot.
fn bind_error(addr: SocketAddr, udp: bool) -> Option<std::io::Error> {
    let bound = if udp {
        std::net::UdpSocket::bind(addr).map(drop)
    } else {
        std::net::TcpListener::bind(addr).map(drop)
    };
    bound.err()
}

/// The block to run on, its config text and the validated config: `block`
/// if given, else the first of [`BLOCKS`] whose every listen address can be
/// bound. A clash is refused here, with the address and the reason, rather
/// than as a half-started topology.
fn choose_block(
    block: Option<u8>,
    steered_ttl_seconds: Option<u32>,
) -> Result<(u8, String, Config), BenchError> {
    let candidates: Vec<u8> = match block {
        Some(block) => vec![block],
        None => BLOCKS.collect(),
    };
    let mut last_clash = String::new();
    for block in candidates {
        let text = drill_config_text(block, steered_ttl_seconds)?;
        let config = Config::from_toml(
            &text,
            ConfigSource::File(PathBuf::from("<outage drill config>")),
        )
        .map_err(|e| drill_error("validate the drill's config", e.to_string()))?;
        let addrs = listen_addrs(&config);
        if let Some((addr, _)) = addrs.iter().find(|(addr, _)| !in_block(addr.ip(), block)) {
            return Err(drill_error(
                "move the demo topology onto the drill's loopback block",
                format!("{addr} in the demo config is not a 127.0.x.y address the drill can move"),
            ));
        }
        let clash = addrs
            .iter()
            .find_map(|&(addr, udp)| Some((addr, udp, bind_error(addr, udp)?)));
        match clash {
            None => return Ok((block, text, config)),
            Some((addr, udp, error)) => {
                let proto = if udp { "UDP" } else { "TCP" };
                last_clash = format!("cannot bind {proto} {addr}: {error}");
                if error.kind() == std::io::ErrorKind::AddrNotAvailable {
                    last_clash
                        .push_str(" (on macOS, add the loopback aliases first: see README.md)");
                }
            }
        }
    }
    let which = match block {
        Some(block) => format!("loopback block 127.{block}.x.y is in use"),
        None => format!(
            "every loopback block from 127.{}.x.y to 127.{}.x.y is in use (is another drill running?)",
            BLOCKS.start(),
            BLOCKS.end()
        ),
    };
    Err(drill_error(
        "find free addresses for the drill",
        format!("{which}; last: {last_clash}"),
    ))
}

/// Whether `ip` is `127.BLOCK.x.y`.
fn in_block(ip: IpAddr, block: u8) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [127, block])
}

/// The drill's config file, removed on drop.
struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    /// Writes `text` to a file named after this process and `block`, so two
    /// drills never share one.
    fn write(text: &str, block: u8) -> Result<ConfigFile, BenchError> {
        let path = std::env::temp_dir().join(format!(
            "meridian-outage-drill-{}-{block}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).map_err(|source| BenchError::Io {
            action: "write the drill's config file",
            source,
        })?;
        Ok(ConfigFile { path })
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running `meridian up` on the drill's config. On drop, whatever
/// happened, it is stopped (SIGTERM so it stops its children in order, then
/// SIGKILL) and the config file is removed; its children die with it
/// either way (they have a parent-death signal).
struct Topology {
    process: MeridianProcess,
    // Dropped after `Drop::drop` has stopped the process.
    config: ConfigFile,
}

impl Topology {
    /// Writes the config and starts `meridian up --config FILE`.
    fn start(binary: &Path, text: &str, block: u8) -> Result<Topology, BenchError> {
        let config = ConfigFile::write(text, block)?;
        let args = [
            "up".to_owned(),
            "--config".to_owned(),
            config.path.display().to_string(),
        ];
        Ok(Topology {
            process: MeridianProcess::spawn(binary, &args)?,
            config,
        })
    }

    /// Waits until the control API answers `GET /status`: `up` serves it
    /// only once every GeoDNS, edge and origin answers on its data plane.
    /// Fails at once if `up` exits (a port taken after all, a bad binary).
    async fn wait_ready(
        &mut self,
        control: SocketAddr,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(READY_ATTEMPT_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()?;
        let url = format!("http://{control}/status");
        loop {
            if let Some(status) = self.process.exit_status() {
                self.process.join_output();
                self.process.replay_output();
                return Err(BenchError::Exited { status });
            }
            let last = match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(response) => format!("answered {}", response.status()),
                Err(error) => error_chain(&error),
            };
            if started.elapsed() >= timeout {
                self.process.replay_output();
                return Err(BenchError::NotReady {
                    addr: control,
                    path: "/status".to_owned(),
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Runs `meridian ARGS --config FILE` (`outage`, `restore`) and says
    /// when it started and returned, from `t0`.
    async fn control(&self, t0: Instant, args: &[&str]) -> Result<Action, BenchError> {
        let issued = t0.elapsed();
        let output = tokio::time::timeout(
            COMMAND_TIMEOUT,
            tokio::process::Command::new(self.process.binary())
                .args(args)
                .arg("--config")
                .arg(&self.config.path)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await;
        let done = t0.elapsed();
        let failed = |reason: String| {
            drill_error(
                "drive the drill",
                format!("`meridian {}` failed: {reason}", args.join(" ")),
            )
        };
        let output = match output {
            Err(_) => return Err(failed(format!("no answer within {COMMAND_TIMEOUT:?}"))),
            Ok(Err(source)) => {
                return Err(BenchError::Spawn {
                    path: self.process.binary().to_path_buf(),
                    source,
                });
            }
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            return Err(failed(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(Action { issued, done })
    }

    /// Stops `up` (SIGTERM, then SIGKILL after [`STOP_GRACE`]) without
    /// blocking the runtime, and collects the rest of its output.
    async fn stop(&mut self) {
        if self.process.exited() {
            return;
        }
        self.process.terminate();
        let deadline = Instant::now() + STOP_GRACE;
        while !self.process.exited() && Instant::now() < deadline {
            tokio::time::sleep(HOLD_POLL).await;
        }
        self.process.kill();
    }
}

impl Drop for Topology {
    /// A graceful stop first; the process's own guard then kills whatever
    /// is left and replays the output if the drill panicked.
    fn drop(&mut self) {
        if !self.process.exited() {
            self.process.terminate();
            let deadline = Instant::now() + STOP_GRACE;
            while !self.process.exited() && Instant::now() < deadline {
                std::thread::sleep(HOLD_POLL);
            }
        }
    }
}

/// Where the drill's clients and watchers reach the topology.
#[derive(Debug, Clone)]
struct Targets {
    /// GeoDNS (UDP).
    dns: SocketAddr,
    /// GeoDNS's admin listener (`/health`).
    dns_admin: SocketAddr,
    /// The edges' HTTP port.
    http_port: u16,
    /// Every edge address and its region.
    edges: Vec<(IpAddr, String)>,
    /// eu-west's edge health URL.
    outage_edge_health: String,
}

impl Targets {
    fn of(config: &Config) -> Result<Targets, BenchError> {
        let region = config
            .region(OUTAGE_REGION)
            .map_err(|e| drill_error("find the region to take down", e.to_string()))?;
        let edge = region
            .edge_http_addrs(&config.edge)
            .first()
            .copied()
            .ok_or_else(|| {
                drill_error(
                    "find the region to take down",
                    format!("{OUTAGE_REGION} has no edge address"),
                )
            })?;
        Ok(Targets {
            dns: config.geodns.listen,
            dns_admin: config.geodns.admin_listen,
            http_port: config.edge.http_port,
            edges: config
                .regions
                .iter()
                .flat_map(|r| r.edge_addresses.iter().map(|ip| (*ip, r.name.clone())))
                .collect(),
            outage_edge_health: format!("http://{edge}{}", config.edge.health_path),
        })
    }

    /// The region whose edge `ip` is.
    fn region_of(&self, ip: IpAddr) -> String {
        self.edges.iter().find(|(edge, _)| *edge == ip).map_or_else(
            || format!("unknown edge {ip}"),
            |(_, region)| region.clone(),
        )
    }
}

// ---------------------------------------------------------------------------
// DNS: the stub resolver of the simulated clients and observers.
// ---------------------------------------------------------------------------

/// One steered answer: the first A record and its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// The edge address answered.
    pub address: IpAddr,
    /// How long it may be cached, in seconds.
    pub ttl: u32,
}

/// A query for [`STEERED_NAME`] A with an EDNS Client Subnet option for
/// `country` (RFC 7871): what a resolver in that country forwards.
fn steered_query(country: &Country) -> Result<Message, String> {
    let name = Name::from_ascii(STEERED_NAME).map_err(|e| format!("bad name: {e}"))?;
    let mut query = Message::query();
    query.add_query(Query::query(name, RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(
            IpAddr::V4(country.network),
            country.prefix,
            0,
        )));
    query.set_edns(edns);
    Ok(query)
}

/// The steered answer in `reply`, or why there is none.
pub fn answer_of(reply: &Message) -> Result<Resolution, String> {
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(format!("rcode {}", reply.metadata.response_code));
    }
    reply
        .answers
        .iter()
        .find_map(|record| match &record.data {
            RData::A(a) => Some(Resolution {
                address: IpAddr::V4(a.0),
                ttl: record.ttl,
            }),
            _ => None,
        })
        .ok_or_else(|| "no A record in the answer".to_owned())
}

/// A UDP socket for DNS queries.
async fn dns_socket() -> Result<UdpSocket, BenchError> {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|source| BenchError::Io {
            action: "bind a UDP socket for DNS queries",
            source,
        })
}

/// Asks `server` where `country`'s clients go. Answers that are not for
/// this query (a late reply to an earlier one that timed out) are skipped.
async fn resolve(
    socket: &UdpSocket,
    server: SocketAddr,
    country: &Country,
) -> Result<Resolution, String> {
    let query = steered_query(country)?;
    let bytes = query
        .to_vec()
        .map_err(|e| format!("cannot encode the query: {e}"))?;
    socket
        .send_to(&bytes, server)
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let deadline = tokio::time::Instant::now() + DNS_TIMEOUT;
    let mut buffer = [0u8; 4096];
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| format!("cannot receive: {e}"))?;
        if from != server {
            continue;
        }
        let Ok(reply) = Message::from_vec(&buffer[..len]) else {
            return Err("malformed answer".to_owned());
        };
        if reply.metadata.id == query.metadata.id {
            return answer_of(&reply);
        }
    }
}

/// Fails unless GeoDNS sends every country to its home region: the drill
/// means nothing if GB's clients are not on eu-west to begin with.
async fn check_home_steering(targets: &Targets) -> Result<(), BenchError> {
    let socket = dns_socket().await?;
    for country in &COUNTRIES {
        let action = "check GeoDNS's steering before the drill";
        match resolve(&socket, targets.dns, country).await {
            Ok(answer) if targets.region_of(answer.address) == country.home => {}
            Ok(answer) => {
                return Err(drill_error(
                    action,
                    format!(
                        "GeoDNS on {} sends {} clients ({}) to {}, not {}",
                        targets.dns,
                        country.code,
                        country.subnet(),
                        targets.region_of(answer.address),
                        country.home
                    ),
                ));
            }
            Err(reason) => {
                return Err(drill_error(
                    action,
                    format!(
                        "GeoDNS on {} did not answer for {}: {reason}",
                        targets.dns, country.code
                    ),
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The running drill: clients, observers, watchers, phases.
// ---------------------------------------------------------------------------

/// What the drill's tasks share: the clock, the stop flag, the settings,
/// and the live state the phases wait on and the progress bar shows.
struct Env {
    targets: Targets,
    /// The start of the load: every sample's time is measured from here.
    t0: Instant,
    stop: AtomicBool,
    period: Duration,
    request_timeout: Duration,
    asset_every: u32,
    observe_interval: Duration,
    live: Live,
}

impl Env {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Now, from the start of the load.
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }
}

/// The latest of everything, for the phases and the progress bar.
struct Live {
    sent: AtomicUsize,
    failed: AtomicUsize,
    phase: Mutex<&'static str>,
    /// Each country's latest GeoDNS answer to its observer.
    answers: Mutex<Vec<Option<String>>>,
    /// Each client's current edge region.
    client_edges: Mutex<Vec<Option<String>>>,
    /// Each client's home region.
    client_homes: Vec<&'static str>,
    /// Each country's latest `X-Meridian-Origin` on `/api/whoami`.
    origins: Mutex<Vec<Option<String>>>,
}

impl Live {
    fn new(client_countries: &[usize]) -> Live {
        Live {
            sent: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            phase: Mutex::new(Phase::Baseline.label()),
            answers: Mutex::new(vec![None; COUNTRIES.len()]),
            client_edges: Mutex::new(vec![None; client_countries.len()]),
            client_homes: client_countries
                .iter()
                .map(|&c| COUNTRIES[c].home)
                .collect(),
            origins: Mutex::new(vec![None; COUNTRIES.len()]),
        }
    }

    /// Counts a finished request.
    fn record(&self, record: &RequestRecord) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !record.succeeded() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else if !record.asset
            && let Some(origin) = &record.origin_region
        {
            lock(&self.origins)[record.country] = Some(origin.clone());
        }
    }

    /// Whether GeoDNS's latest answer for GB is another region than eu-west.
    fn gb_away(&self) -> bool {
        matches!(&lock(&self.answers)[GB], Some(region) if region != OUTAGE_REGION)
    }

    /// Whether GeoDNS answers GB with eu-west and every client is on its
    /// home region's edge again.
    fn all_home(&self) -> bool {
        let gb_back = lock(&self.answers)[GB].as_deref() == Some(OUTAGE_REGION);
        let edges = lock(&self.client_edges);
        gb_back
            && edges
                .iter()
                .zip(&self.client_homes)
                .all(|(edge, home)| edge.as_deref() == Some(*home))
    }

    /// Whether GB's latest `/api/whoami` came from eu-west's origin.
    fn gb_on_own_origin(&self) -> bool {
        lock(&self.origins)[GB].as_deref() == Some(OUTAGE_REGION)
    }

    /// One line for the progress bar.
    fn status_line(&self) -> String {
        let gb = lock(&self.answers)[GB]
            .clone()
            .unwrap_or_else(|| "?".to_owned());
        format!(
            "{} · {} requests, {} failed · GB → {gb}",
            lock(&self.phase),
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }
}

/// The progress bar of the whole drill, on stderr when it is a terminal
/// (indicatif hides it otherwise, so CI logs stay clean).
struct ProgressDisplay {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressDisplay {
    fn start(planned: Duration, env: Arc<Env>) -> ProgressDisplay {
        let bar = ProgressBar::new(
            u64::try_from(planned.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        bar.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let ticker = (!bar.is_hidden()).then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    let elapsed = u64::try_from(env.now().as_millis()).unwrap_or(u64::MAX);
                    bar.set_position(elapsed.min(bar.length().unwrap_or(0)));
                    bar.set_message(env.live.status_line());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        ProgressDisplay { bar, ticker }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// What a drill task hands back when the load stops.
enum Samples {
    Requests(Vec<RequestRecord>),
    Dns(Vec<DnsSample>),
    DnsView(Vec<HealthSample>),
    EdgeHealth(Vec<HealthSample>),
}

/// Starts the clients, observers and watchers, runs the phases, stops the
/// load and collects everything measured.
async fn drive(
    topology: &Topology,
    targets: Targets,
    options: &OutageOptions,
    steered_ttl: u32,
) -> Result<Measured, BenchError> {
    let client_countries: Vec<usize> = (0..COUNTRIES.len())
        .flat_map(|country| std::iter::repeat_n(country, options.clients_per_country))
        .collect();
    let env = Arc::new(Env {
        targets,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        period: Duration::from_secs_f64(1.0 / f64::from(options.rate_per_client)),
        request_timeout: Duration::from_millis(options.request_timeout_ms),
        asset_every: options.asset_every,
        observe_interval: Duration::from_millis(options.observe_interval_ms),
        live: Live::new(&client_countries),
    });
    // Dropping the set (on an error below) aborts every task.
    let mut tasks = spawn_load(&env, &client_countries).await?;
    let progress = ProgressDisplay::start(options.planned(steered_ttl), env.clone());
    let timeline = run_phases(topology, &env, options).await;
    env.stop.store(true, Ordering::Relaxed);
    drop(progress);

    let mut measured = Measured {
        timeline: timeline?,
        requests: Vec::new(),
        dns: Vec::new(),
        dns_view: Vec::new(),
        edge_health: Vec::new(),
        client_countries,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Samples::Requests(records)) => measured.requests.extend(records),
            Ok(Samples::Dns(samples)) => measured.dns.extend(samples),
            Ok(Samples::DnsView(samples)) => measured.dns_view = samples,
            Ok(Samples::EdgeHealth(samples)) => measured.edge_health = samples,
            Err(error) => {
                return Err(drill_error(
                    "collect the drill's measurements",
                    format!("a drill task failed: {error}"),
                ));
            }
        }
    }
    measured.requests.sort_by_key(|r| r.at);
    measured.dns.sort_by_key(|s| s.at);
    Ok(measured)
}

/// Starts a client per entry of `client_countries`, an observer per
/// country and the two watchers; they run until `env.stop` is set. Every
/// socket is bound first, so a failure is an error before any load starts.
async fn spawn_load(
    env: &Arc<Env>,
    client_countries: &[usize],
) -> Result<JoinSet<Samples>, BenchError> {
    let mut client_sockets = Vec::with_capacity(client_countries.len());
    for _ in client_countries {
        client_sockets.push(dns_socket().await?);
    }
    let mut observer_sockets = Vec::with_capacity(COUNTRIES.len());
    for _ in &COUNTRIES {
        observer_sockets.push(dns_socket().await?);
    }
    let watch_client = reqwest::Client::builder()
        .no_proxy()
        // A fresh connection per probe: the question is whether the edge
        // accepts connections now.
        .pool_max_idle_per_host(0)
        .timeout(WATCH_TIMEOUT)
        .build()?;

    let mut tasks = JoinSet::new();
    let count = client_countries.len();
    for (id, (&country, socket)) in client_countries.iter().zip(client_sockets).enumerate() {
        // Spread the clients over one period, so the load is steady rather
        // than in bursts.
        let offset = env.period.mul_f64(id as f64 / count as f64);
        let client = SimulatedClient {
            id,
            country,
            socket,
            cached: None,
        };
        let env = env.clone();
        tasks.spawn(async move { Samples::Requests(client.run(offset, env).await) });
    }
    for (country, socket) in observer_sockets.into_iter().enumerate() {
        let env = env.clone();
        tasks.spawn(async move { Samples::Dns(observe(country, socket, env).await) });
    }
    let (env_edge, client_edge) = (env.clone(), watch_client.clone());
    tasks.spawn(async move { Samples::EdgeHealth(watch_edge(client_edge, env_edge).await) });
    let env_view = env.clone();
    tasks.spawn(async move { Samples::DnsView(watch_dns_view(watch_client, env_view).await) });
    Ok(tasks)
}

/// The phases, in order; see the module documentation.
async fn run_phases(
    topology: &Topology,
    env: &Env,
    options: &OutageOptions,
) -> Result<Timeline, BenchError> {
    let baseline = Duration::from_millis(options.baseline_ms);
    let phase = Duration::from_millis(options.phase_ms);
    let longest = phase + Duration::from_millis(options.settle_timeout_ms);
    let mut phases = Vec::with_capacity(Phase::ALL.len());

    let start = begin(env, Phase::Baseline);
    hold(start, baseline, baseline, || true).await;
    phases.push(span(env, Phase::Baseline, start));

    // The whole region dies. Held until GB is steered away, so a slow
    // steer is measured, not cut short by the restore.
    let start = begin(env, Phase::RegionOutage);
    let region_outage = topology.control(env.t0, &["outage", OUTAGE_REGION]).await?;
    hold(start, phase, longest, || env.live.gb_away()).await;
    phases.push(span(env, Phase::RegionOutage, start));

    // Held until GB is steered back and every client has come home (when
    // its cached answer expired), so the origin-only outage below really
    // has GB's traffic on eu-west's edge.
    let start = begin(env, Phase::RegionRestored);
    let region_restore = topology
        .control(env.t0, &["restore", OUTAGE_REGION])
        .await?;
    hold(start, phase, longest, || env.live.all_home()).await;
    phases.push(span(env, Phase::RegionRestored, start));

    let start = begin(env, Phase::OriginOutage);
    let origin_outage = topology
        .control(env.t0, &["outage", OUTAGE_REGION, "--component", "origin"])
        .await?;
    hold(start, phase, phase, || true).await;
    phases.push(span(env, Phase::OriginOutage, start));

    // Held until eu-west's edge uses its own origin again (it avoids an
    // origin that failed for `origin_suspect_ms`).
    let start = begin(env, Phase::OriginRestored);
    let origin_restore = topology
        .control(env.t0, &["restore", OUTAGE_REGION])
        .await?;
    hold(start, phase, longest, || env.live.gb_on_own_origin()).await;
    phases.push(span(env, Phase::OriginRestored, start));

    Ok(Timeline {
        phases,
        region_outage,
        region_restore,
        origin_outage,
        origin_restore,
    })
}

/// Marks `phase` as running and returns when it began.
fn begin(env: &Env, phase: Phase) -> Instant {
    *lock(&env.live.phase) = phase.label();
    Instant::now()
}

/// `phase`'s span, from `start` until now.
fn span(env: &Env, phase: Phase, start: Instant) -> PhaseSpan {
    PhaseSpan {
        phase,
        start: start.saturating_duration_since(env.t0),
        end: env.now(),
    }
}

/// Waits until `min` has passed since `start` and `done()` holds, or until
/// `max` has passed, whichever is first.
async fn hold(start: Instant, min: Duration, max: Duration, done: impl Fn() -> bool) {
    loop {
        let elapsed = start.elapsed();
        if elapsed >= max || (elapsed >= min && done()) {
            return;
        }
        tokio::time::sleep(HOLD_POLL).await;
    }
}

/// One simulated client: its country, its own DNS socket, and the answer
/// it has cached.
struct SimulatedClient {
    id: usize,
    country: usize,
    socket: UdpSocket,
    cached: Option<Cached>,
}

/// A cached GeoDNS answer, and an HTTP client that sends every request for
/// [`HOST`] to it.
struct Cached {
    region: String,
    expires: Instant,
    http: reqwest::Client,
}

/// A response read to its end.
struct Fetched {
    status: u16,
    origin: Option<String>,
    body_bytes: usize,
}

impl SimulatedClient {
    /// Sends a request every `env.period`, starting `offset` after the
    /// start of the load, until the drill stops; returns what each saw.
    async fn run(mut self, offset: Duration, env: Arc<Env>) -> Vec<RequestRecord> {
        let first = tokio::time::Instant::from_std(env.t0 + offset);
        let mut ticks = tokio::time::interval_at(first, env.period);
        // A slow request delays the next ones rather than causing a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut records = Vec::new();
        let mut sent: u64 = 0;
        loop {
            ticks.tick().await;
            if env.stopped() {
                break;
            }
            sent += 1;
            let asset = env.asset_every > 0 && sent.is_multiple_of(u64::from(env.asset_every));
            let record = self.request(asset, &env).await;
            env.live.record(&record);
            records.push(record);
        }
        records
    }

    /// Resolves through GeoDNS and starts a new HTTP client on the answer:
    /// a new connection pool, as a browser opens a new connection after a
    /// failure or to a new address.
    async fn resolve(&mut self, env: &Env) -> Result<(), String> {
        let answer = resolve(&self.socket, env.targets.dns, &COUNTRIES[self.country]).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .resolve(HOST, SocketAddr::new(answer.address, env.targets.http_port))
            .timeout(env.request_timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let region = env.targets.region_of(answer.address);
        lock(&env.live.client_edges)[self.id] = Some(region.clone());
        self.cached = Some(Cached {
            region,
            expires: Instant::now() + Duration::from_secs(u64::from(answer.ttl)),
            http,
        });
        Ok(())
    }

    /// One GET as a real client makes it: resolve if the cached answer
    /// expired; on a connection failure re-resolve once (GeoDNS may have
    /// steered elsewhere by now) and retry on the new answer.
    async fn request(&mut self, asset: bool, env: &Env) -> RequestRecord {
        let started = Instant::now();
        let mut record = RequestRecord {
            at: started.saturating_duration_since(env.t0),
            client: self.id,
            country: self.country,
            asset,
            edge_region: None,
            outcome: Err(String::new()),
            origin_region: None,
            retried: false,
            latency: Duration::ZERO,
            error: None,
        };
        let url = format!(
            "http://{HOST}:{}{}",
            env.targets.http_port,
            if asset { ASSET_PATH } else { WHOAMI_PATH }
        );
        let expired = self
            .cached
            .as_ref()
            .is_none_or(|c| Instant::now() >= c.expires);
        let mut result = self.attempt(&url, expired, env, &mut record).await;
        if let Err(AttemptError::Transport(error)) = &result {
            record.retried = true;
            record.error = Some(error_chain(error));
            result = self.attempt(&url, true, env, &mut record).await;
        }
        record.outcome = match result {
            Ok(fetched) => {
                record.origin_region = fetched.origin;
                if !(200..300).contains(&fetched.status) {
                    Err(format!("HTTP {}", fetched.status))
                } else if asset && fetched.body_bytes != ASSET_BYTES {
                    Err(format!("short body ({} bytes)", fetched.body_bytes))
                } else {
                    Ok(fetched.status)
                }
            }
            Err(AttemptError::Dns(reason)) => Err(format!("dns: {reason}")),
            Err(AttemptError::Transport(error)) => {
                record.error = Some(error_chain(&error));
                Err(error_kind(&error).to_owned())
            }
        };
        record.latency = started.elapsed();
        record
    }

    /// One attempt: resolve first if `resolve_first`, then GET `url` on the
    /// cached answer, noting its edge in `record`.
    async fn attempt(
        &mut self,
        url: &str,
        resolve_first: bool,
        env: &Env,
        record: &mut RequestRecord,
    ) -> Result<Fetched, AttemptError> {
        if resolve_first {
            self.resolve(env).await.map_err(AttemptError::Dns)?;
        }
        let cached = self
            .cached
            .as_ref()
            .ok_or_else(|| AttemptError::Dns("nothing resolved".to_owned()))?;
        record.edge_region = Some(cached.region.clone());
        fetch(&cached.http, url)
            .await
            .map_err(AttemptError::Transport)
    }
}

/// Why an attempt got no response.
enum AttemptError {
    /// GeoDNS gave no usable answer.
    Dns(String),
    /// The edge could not be reached, or the exchange broke off.
    Transport(reqwest::Error),
}

/// GETs `url` and reads the whole body.
async fn fetch(http: &reqwest::Client, url: &str) -> Result<Fetched, reqwest::Error> {
    let response = http.get(url).send().await?;
    let status = response.status().as_u16();
    let origin = response
        .headers()
        .get("x-meridian-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await?;
    Ok(Fetched {
        status,
        origin,
        body_bytes: body.len(),
    })
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
        "connection lost"
    } else {
        "other"
    }
}

/// Asks GeoDNS where `country`'s clients go, every observe interval,
/// until the drill stops.
async fn observe(country: usize, socket: UdpSocket, env: Arc<Env>) -> Vec<DnsSample> {
    let mut ticks = tokio::time::interval(env.observe_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        ticks.tick().await;
        if env.stopped() {
            break;
        }
        let answer = resolve(&socket, env.targets.dns, &COUNTRIES[country])
            .await
            .map(|a| env.targets.region_of(a.address));
        lock(&env.live.answers)[country] = answer.as_ref().ok().cloned();
        samples.push(DnsSample {
            at: env.now(),
            country,
            answer,
        });
    }
    samples
}

/// Probes eu-west's edge health path until the drill stops: when it stops
/// and starts answering is when the region really died and recovered.
async fn watch_edge(client: reqwest::Client, env: Arc<Env>) -> Vec<HealthSample> {
    let mut ticks = tokio::time::interval(EDGE_WATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        ticks.tick().await;
        if env.stopped() {
            break;
        }
        let up = match client.get(&env.targets.outage_edge_health).send().await {
            Ok(response) => response.status() == reqwest::StatusCode::OK,
            Err(_) => false,
        };
        samples.push(HealthSample { at: env.now(), up });
    }
    samples
}

/// One region in GeoDNS's `/health`.
#[derive(Deserialize)]
struct DnsRegionView {
    region: String,
    up: bool,
}

/// Reads GeoDNS's own view of eu-west until the drill stops: when GeoDNS
/// detected the outage and the recovery, apart from when its answers
/// changed. Polls GeoDNS's admin listener cannot answer are skipped.
async fn watch_dns_view(client: reqwest::Client, env: Arc<Env>) -> Vec<HealthSample> {
    let url = format!("http://{}/health", env.targets.dns_admin);
    let mut ticks = tokio::time::interval(env.observe_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        ticks.tick().await;
        if env.stopped() {
            break;
        }
        let Ok(response) = client.get(&url).send().await else {
            continue;
        };
        let Ok(body) = response.bytes().await else {
            continue;
        };
        let Ok(view) = serde_json::from_slice::<Vec<DnsRegionView>>(&body) else {
            continue;
        };
        if let Some(region) = view.iter().find(|r| r.region == OUTAGE_REGION) {
            samples.push(HealthSample {
                at: env.now(),
                up: region.up,
            });
        }
    }
    samples
}

// ---------------------------------------------------------------------------
// Summary: measured data → report (pure).
// ---------------------------------------------------------------------------

/// Turns what was measured into the report, with its verdicts.
pub fn summarize(
    meridian: &Path,
    options: &OutageOptions,
    setup: DrillSetup,
    measured: &Measured,
) -> OutageReport {
    let phases: Vec<PhaseReport> = measured
        .timeline
        .phases
        .iter()
        .map(|span| summarize_phase(span, &measured.requests))
        .collect();
    let region_outage = region_outage_times(measured);
    let origin_outage = origin_outage_summary(measured);
    let failures = verdicts(&phases, &region_outage, &origin_outage);
    OutageReport {
        scenario: "outage",
        meridian: meridian.to_path_buf(),
        options: options.clone(),
        setup,
        countries: COUNTRIES.to_vec(),
        phases,
        region_outage,
        origin_outage,
        dns_changes: dns_changes(&measured.dns),
        error_samples: error_samples(measured),
        passed: failures.is_empty(),
        failures,
    }
}

/// The requests that started within `span`, summarized.
fn summarize_phase(span: &PhaseSpan, requests: &[RequestRecord]) -> PhaseReport {
    let mut report = PhaseReport {
        phase: span.phase,
        start_ms: millis(span.start),
        duration_ms: millis(span.end.saturating_sub(span.start)),
        requests_sent: 0,
        failed: 0,
        failed_by_reason: BTreeMap::new(),
        retried: 0,
        latency: LatencySummary::default(),
        edges: BTreeMap::new(),
    };
    let mut latencies = Vec::new();
    for request in requests
        .iter()
        .filter(|r| r.at >= span.start && r.at < span.end)
    {
        report.requests_sent += 1;
        if request.retried {
            report.retried += 1;
        }
        match &request.outcome {
            Ok(_) => {
                latencies.push(request.latency);
                let region = request
                    .edge_region
                    .clone()
                    .unwrap_or_else(|| "?".to_owned());
                *report
                    .edges
                    .entry(country_code(request.country).to_owned())
                    .or_default()
                    .entry(region)
                    .or_insert(0) += 1;
            }
            Err(reason) => {
                report.failed += 1;
                *report.failed_by_reason.entry(reason.clone()).or_insert(0) += 1;
            }
        }
    }
    report.latency = LatencySummary::from_samples(latencies);
    report
}

/// The country code of index `country`.
fn country_code(country: usize) -> &'static str {
    COUNTRIES.get(country).map_or("?", |c| c.code)
}

/// The region outage's detection, steering and recovery times.
fn region_outage_times(measured: &Measured) -> RegionOutageTimes {
    let t = &measured.timeline;
    let kill = t.region_outage;
    let restore = t.region_restore;
    let gb_dns = || measured.dns.iter().filter(|s| s.country == GB);
    let away = gb_dns().find(|s| {
        s.at >= kill.issued
            && s.at < restore.issued
            && matches!(&s.answer, Ok(region) if region != OUTAGE_REGION)
    });
    let detected_down = measured
        .dns_view
        .iter()
        .find(|s| s.at >= kill.issued && !s.up);
    // The region is back when its edge answers again; if the watcher saw
    // nothing, when `restore` returned (it waits for the edge to answer).
    let edge_back = measured
        .edge_health
        .iter()
        .find(|s| s.at >= restore.issued && s.up)
        .map(|s| s.at);
    let recovered = edge_back.unwrap_or(restore.done);
    // Steering back only means something if it was steered away first.
    let back = away.and_then(|_| {
        gb_dns().find(|s| {
            s.at >= restore.issued
                && s.at < t.origin_outage.issued
                && s.answer.as_deref() == Ok(OUTAGE_REGION)
        })
    });
    let detected_up = measured
        .dns_view
        .iter()
        .find(|s| s.at >= restore.issued && s.up);
    let since = |from: Duration, at: Duration| millis(at.saturating_sub(from));
    RegionOutageTimes {
        outage_command_ms: since(kill.issued, kill.done),
        detected_down_ms: detected_down.map(|s| since(kill.issued, s.at)),
        steered_away_ms: away.map(|s| since(kill.issued, s.at)),
        steered_to: away.and_then(|s| s.answer.clone().ok()),
        recovered_ms: edge_back.map(|at| since(restore.issued, at)),
        restore_command_ms: since(restore.issued, restore.done),
        detected_up_ms: detected_up.map(|s| since(recovered, s.at)),
        steered_back_ms: back.map(|s| since(recovered, s.at)),
        clients_home_ms: clients_home(measured, recovered).map(|at| since(recovered, at)),
    }
}

/// When the last GB client had a request answered by eu-west's edge again
/// after `recovered`; `None` if one never did.
fn clients_home(measured: &Measured, recovered: Duration) -> Option<Duration> {
    let until = measured.timeline.origin_outage.issued;
    let mut latest = None;
    for (client, &country) in measured.client_countries.iter().enumerate() {
        if country != GB {
            continue;
        }
        let home = measured.requests.iter().find(|r| {
            r.client == client
                && r.at >= recovered
                && r.at < until
                && r.succeeded()
                && r.edge_region.as_deref() == Some(OUTAGE_REGION)
        })?;
        latest = latest.max(Some(home.at));
    }
    latest
}

/// What the origin-only outage did to GB's traffic and GeoDNS's answers.
fn origin_outage_summary(measured: &Measured) -> OriginOutageSummary {
    let t = &measured.timeline;
    let (from, until) = (t.origin_outage.issued, t.origin_restore.issued);
    let in_phase: Vec<&RequestRecord> = measured
        .timeline
        .phases
        .iter()
        .find(|s| s.phase == Phase::OriginOutage)
        .map(|span| {
            measured
                .requests
                .iter()
                .filter(|r| r.at >= span.start && r.at < span.end)
                .collect()
        })
        .unwrap_or_default();
    let gb_whoami: Vec<&&RequestRecord> = in_phase
        .iter()
        .filter(|r| {
            r.country == GB
                && !r.asset
                && r.succeeded()
                && r.edge_region.as_deref() == Some(OUTAGE_REGION)
        })
        .collect();
    let mut answered_by_other_origin = BTreeMap::new();
    for request in &gb_whoami {
        let origin = request.origin_region.as_deref().unwrap_or("(none)");
        if origin != OUTAGE_REGION {
            *answered_by_other_origin
                .entry(origin.to_owned())
                .or_insert(0) += 1;
        }
    }
    let gb_dns: Vec<&DnsSample> = measured
        .dns
        .iter()
        .filter(|s| s.country == GB && s.at >= from && s.at < until)
        .collect();
    let back = measured.requests.iter().find(|r| {
        r.country == GB
            && !r.asset
            && r.at >= t.origin_restore.done
            && r.origin_region.as_deref() == Some(OUTAGE_REGION)
    });
    OriginOutageSummary {
        requests: in_phase.len(),
        failed: in_phase.iter().filter(|r| !r.succeeded()).count(),
        gb_whoami_via_edge: gb_whoami.len(),
        answered_by_other_origin,
        gb_dns_answers: gb_dns.len(),
        gb_dns_elsewhere: gb_dns
            .iter()
            .filter(|s| matches!(&s.answer, Ok(region) if region != OUTAGE_REGION))
            .count(),
        gb_dns_errors: gb_dns.iter().filter(|s| s.answer.is_err()).count(),
        back_on_own_origin_ms: back.map(|r| millis(r.at.saturating_sub(t.origin_restore.done))),
    }
}

/// Every change of each country's answer, in time order.
fn dns_changes(samples: &[DnsSample]) -> Vec<DnsChange> {
    let mut last: Vec<Option<String>> = vec![None; COUNTRIES.len()];
    let mut changes = Vec::new();
    for sample in samples {
        let answer = match &sample.answer {
            Ok(region) => region.clone(),
            Err(reason) => format!("error: {reason}"),
        };
        let Some(previous) = last.get_mut(sample.country) else {
            continue;
        };
        if previous.as_deref() != Some(answer.as_str()) {
            changes.push(DnsChange {
                at_ms: u64::try_from(sample.at.as_millis()).unwrap_or(u64::MAX),
                country: country_code(sample.country),
                answer: answer.clone(),
            });
            *previous = Some(answer);
        }
    }
    changes
}

/// The request errors, grouped by phase, country, edge and message (an
/// outage makes many identical ones), in the order they first happened:
/// the first [`ERROR_SAMPLES`] groups, each with its count and time span.
fn error_samples(measured: &Measured) -> Vec<String> {
    struct Group {
        key: (&'static str, usize, String, String),
        count: usize,
        first: Duration,
        last: Duration,
    }
    let mut groups: Vec<Group> = Vec::new();
    for request in &measured.requests {
        let Err(reason) = &request.outcome else {
            continue;
        };
        let phase = measured
            .timeline
            .phases
            .iter()
            .find(|s| request.at >= s.start && request.at < s.end)
            .map_or("?", |s| s.phase.label());
        let key = (
            phase,
            request.country,
            request
                .edge_region
                .clone()
                .unwrap_or_else(|| "no edge".to_owned()),
            request.error.clone().unwrap_or_else(|| reason.clone()),
        );
        match groups.iter_mut().find(|g| g.key == key) {
            Some(group) => {
                group.count += 1;
                group.last = request.at;
            }
            None => groups.push(Group {
                key,
                count: 1,
                first: request.at,
                last: request.at,
            }),
        }
    }
    groups
        .iter()
        .take(ERROR_SAMPLES)
        .map(|g| {
            let (phase, country, edge, message) = &g.key;
            format!(
                "{phase}: {} × {} via {edge}, {:.2}-{:.2} s: {message}",
                g.count,
                country_code(*country),
                g.first.as_secs_f64(),
                g.last.as_secs_f64()
            )
        })
        .collect()
}

/// The targets missed, one sentence each.
fn verdicts(
    phases: &[PhaseReport],
    region: &RegionOutageTimes,
    origin: &OriginOutageSummary,
) -> Vec<String> {
    let mut failures = Vec::new();
    let ran: Vec<Phase> = phases.iter().map(|p| p.phase).collect();
    if ran != Phase::ALL {
        failures.push(format!("the drill did not run every phase: {ran:?}"));
    }
    let away_target = millis(STEER_AWAY_TARGET);
    match region.steered_away_ms {
        Some(ms) if ms <= away_target => {}
        Some(ms) => failures.push(format!(
            "GeoDNS steered GB away from the dead {OUTAGE_REGION} after {}, not within {}",
            seconds(ms),
            seconds(away_target)
        )),
        None => failures.push(format!(
            "GeoDNS never steered GB away from the dead {OUTAGE_REGION}"
        )),
    }
    let back_target = millis(STEER_BACK_TARGET);
    match region.steered_back_ms {
        Some(ms) if ms <= back_target => {}
        Some(ms) => failures.push(format!(
            "GeoDNS steered GB back to {OUTAGE_REGION} {} after it recovered, not within {}",
            seconds(ms),
            seconds(back_target)
        )),
        None => failures.push(format!(
            "GeoDNS did not steer GB back to {OUTAGE_REGION} after it recovered"
        )),
    }
    if origin.failed > 0 {
        failures.push(format!(
            "{} of {} idempotent requests failed while only {OUTAGE_REGION}'s origin was down",
            origin.failed, origin.requests
        ));
    }
    if origin.gb_whoami_via_edge == 0 {
        failures.push(format!(
            "no GB request reached {OUTAGE_REGION}'s edge while its origin was down: \
             the origin failover was not exercised"
        ));
    }
    if origin.gb_dns_elsewhere > 0 || origin.gb_dns_answers == 0 {
        failures.push(format!(
            "GeoDNS answered GB with another region {} of {} times while {OUTAGE_REGION}'s \
             edge was alive (only its origin was down)",
            origin.gb_dns_elsewhere, origin.gb_dns_answers
        ));
    }
    failures
}

/// `0.88 s`.
fn seconds(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

/// `1.2 ms`.
fn ms_label(ms: f64) -> String {
    format!("{ms:.1} ms")
}

/// `key: count, key: count`, in key order.
fn join_counts(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A timing, or what to say when it was never observed.
fn timing(ms: Option<f64>, after: &str) -> String {
    ms.map_or_else(
        || "not observed".to_owned(),
        |ms| format!("{} {after}", seconds(ms)),
    )
}

impl OutageReport {
    /// The rows every phase has: its requests and latency.
    fn phase_rows(&self, phase: &PhaseReport) -> Vec<Row> {
        let mut failed = format!("{} sent, {} failed", phase.requests_sent, phase.failed);
        if !phase.failed_by_reason.is_empty() {
            failed.push_str(&format!(" ({})", join_counts(&phase.failed_by_reason)));
        }
        if phase.retried > 0 {
            failed.push_str(&format!("; {} re-resolved and retried", phase.retried));
        }
        let gb_edges = phase
            .edges
            .get(COUNTRIES[GB].code)
            .map_or_else(|| "none".to_owned(), join_counts);
        vec![
            Row::info(
                format!("{} ({})", phase.phase.label(), seconds(phase.duration_ms)),
                failed,
            ),
            Row::info(
                "  latency p50 / p99",
                format!(
                    "{} / {}",
                    ms_label(phase.latency.p50_ms),
                    ms_label(phase.latency.p99_ms)
                ),
            ),
            Row::info("  GB answered by edge", gb_edges),
        ]
    }

    /// The rows of the region outage's timings, after its phase rows.
    fn region_outage_rows(&self) -> Vec<Row> {
        let r = &self.region_outage;
        let away_ok = r
            .steered_away_ms
            .is_some_and(|ms| ms <= millis(STEER_AWAY_TARGET));
        let mut away = timing(r.steered_away_ms, "after the kill");
        if let Some(to) = &r.steered_to {
            away.push_str(&format!(" (to {to})"));
        }
        vec![
            Row::info("  `meridian outage` took", seconds(r.outage_command_ms)),
            Row::info(
                "  GeoDNS detected it down",
                timing(r.detected_down_ms, "after the kill"),
            ),
            Row::checked(
                "  GB steered away",
                away,
                format!("≤ {}", seconds(millis(STEER_AWAY_TARGET))),
                away_ok,
            ),
        ]
    }

    /// The rows of the recovery's timings, after its phase rows.
    fn recovery_rows(&self) -> Vec<Row> {
        let r = &self.region_outage;
        let back_ok = r
            .steered_back_ms
            .is_some_and(|ms| ms <= millis(STEER_BACK_TARGET));
        vec![
            Row::info(
                "  eu-west's edge answering",
                timing(r.recovered_ms, "after `meridian restore` started"),
            ),
            Row::info(
                "  GeoDNS detected it up",
                timing(r.detected_up_ms, "after recovery"),
            ),
            Row::checked(
                "  GB steered back",
                timing(r.steered_back_ms, "after recovery"),
                format!("≤ {}", seconds(millis(STEER_BACK_TARGET))),
                back_ok,
            ),
            Row::info(
                "  every GB client back",
                match r.clients_home_ms {
                    Some(ms) => format!(
                        "{} after recovery (cached answers live {} s)",
                        seconds(ms),
                        self.setup.steered_ttl_seconds
                    ),
                    None => "not within the phase".to_owned(),
                },
            ),
        ]
    }

    /// The rows of the origin-only outage, after its phase rows.
    fn origin_outage_rows(&self) -> Vec<Row> {
        let o = &self.origin_outage;
        let others: usize = o.answered_by_other_origin.values().sum();
        let mut by_other = format!("{others} of {}", o.gb_whoami_via_edge);
        if !o.answered_by_other_origin.is_empty() {
            by_other.push_str(&format!(" ({})", join_counts(&o.answered_by_other_origin)));
        }
        let mut answers = format!(
            "{} of {} answers",
            o.gb_dns_answers - o.gb_dns_elsewhere - o.gb_dns_errors,
            o.gb_dns_answers
        );
        if o.gb_dns_errors > 0 {
            answers.push_str(&format!(" ({} unanswered)", o.gb_dns_errors));
        }
        vec![
            Row::checked(
                "  failed idempotent requests",
                format!("{} of {}", o.failed, o.requests),
                "0",
                o.failed == 0 && o.gb_whoami_via_edge > 0,
            ),
            Row::info(
                "  GB whoami via eu-west's edge",
                o.gb_whoami_via_edge.to_string(),
            ),
            Row::info("    answered by another origin", by_other),
            Row::checked(
                "  GeoDNS kept GB on eu-west",
                answers,
                "all",
                o.gb_dns_elsewhere == 0 && o.gb_dns_answers > 0,
            ),
        ]
    }
}

impl ScenarioReport for OutageReport {
    fn title(&self) -> String {
        format!(
            "outage: {OUTAGE_REGION} killed, restored, then only its origin killed, under load \
             from clients in {}{}",
            COUNTRIES.map(|c| c.code).join(", "),
            if self.options.smoke { " (smoke)" } else { "" }
        )
    }

    fn rows(&self) -> Vec<Row> {
        let s = &self.setup;
        let o = &self.options;
        let mut rows = vec![
            Row::info("meridian", self.meridian.display().to_string()),
            Row::info(
                "topology",
                format!(
                    "the demo on 127.{}.x.y (GeoDNS {}, control {})",
                    s.block, s.geodns, s.control
                ),
            ),
            Row::info(
                "health checks",
                format!(
                    "every {} ms, down after {}, up after {}",
                    s.health_interval_ms, s.health_down_after, s.health_up_after
                ),
            ),
            Row::info(
                "clients",
                format!(
                    "{} per country at {} req/s each, steered TTL {} s",
                    o.clients_per_country, o.rate_per_client, s.steered_ttl_seconds
                ),
            ),
        ];
        for phase in &self.phases {
            rows.extend(self.phase_rows(phase));
            match phase.phase {
                Phase::RegionOutage => rows.extend(self.region_outage_rows()),
                Phase::RegionRestored => rows.extend(self.recovery_rows()),
                Phase::OriginOutage => rows.extend(self.origin_outage_rows()),
                Phase::OriginRestored => rows.push(Row::info(
                    "  GB back on eu-west's origin",
                    timing(
                        self.origin_outage.back_on_own_origin_ms,
                        "after the origin answered",
                    ),
                )),
                Phase::Baseline => {}
            }
        }
        rows
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            "Clients keep GeoDNS's answer for its TTL; on a connection failure they re-resolve \
             once and retry on the new answer."
                .to_owned(),
            format!(
                "Times after the kill count from the start of `meridian outage`; recovery is when \
                 {OUTAGE_REGION}'s edge first answered its health path again. GeoDNS is asked \
                 every {} ms per country, so its changes are seen within that.",
                self.options.observe_interval_ms
            ),
        ];
        let changes: Vec<String> = self
            .dns_changes
            .iter()
            .filter(|c| c.country == COUNTRIES[GB].code)
            .map(|c| format!("{:.2} s {}", c.at_ms as f64 / 1000.0, c.answer))
            .collect();
        if !changes.is_empty() {
            notes.push(format!("GeoDNS's answers for GB: {}", changes.join(", ")));
        }
        notes.extend(
            self.error_samples
                .iter()
                .map(|e| format!("request error: {e}")),
        );
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Verdict, render_table};
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn request(at: f64, client: usize, country: usize, edge: &str, origin: &str) -> RequestRecord {
        RequestRecord {
            at: s(at),
            client,
            country,
            asset: false,
            edge_region: Some(edge.to_owned()),
            outcome: Ok(200),
            origin_region: Some(origin.to_owned()),
            retried: false,
            latency: Duration::from_millis(2),
            error: None,
        }
    }

    fn failed(at: f64, client: usize, reason: &str) -> RequestRecord {
        RequestRecord {
            outcome: Err(reason.to_owned()),
            origin_region: None,
            retried: true,
            error: Some("connection refused".to_owned()),
            ..request(at, client, GB, "eu-west", "eu-west")
        }
    }

    fn dns(at: f64, country: usize, region: &str) -> DnsSample {
        DnsSample {
            at: s(at),
            country,
            answer: Ok(region.to_owned()),
        }
    }

    fn health(at: f64, up: bool) -> HealthSample {
        HealthSample { at: s(at), up }
    }

    fn action(issued: f64, done: f64) -> Action {
        Action {
            issued: s(issued),
            done: s(done),
        }
    }

    /// A drill in which GeoDNS steers GB away 0.9 s after the kill (at 10 s)
    /// and back 0.8 s after the edge answers again (at 20.1 s), and the
    /// origin-only outage (30 s to 40 s) fails nothing.
    fn measured() -> Measured {
        let bounds = [0.0, 10.0, 20.0, 30.0, 40.0, 45.0];
        let phases = Phase::ALL
            .iter()
            .enumerate()
            .map(|(i, &phase)| PhaseSpan {
                phase,
                start: s(bounds[i]),
                end: s(bounds[i + 1]),
            })
            .collect();
        let mut requests = vec![
            request(1.0, 0, GB, "eu-west", "eu-west"),
            request(1.5, 1, 1, "us-east", "us-east"),
            failed(10.2, 0, "connect"),
            request(11.0, 0, GB, "us-east", "us-east"),
            // Client 0 comes home at 26 s, after its TTL.
            request(21.0, 0, GB, "us-east", "us-east"),
            request(26.0, 0, GB, "eu-west", "eu-west"),
            // The origin-only outage: eu-west's edge answers from us-east.
            request(31.0, 0, GB, "eu-west", "us-east"),
            request(32.0, 0, GB, "eu-west", "us-east"),
            request(33.0, 1, 1, "us-east", "us-east"),
            // Back on its own origin 1.5 s after the restore returned.
            request(42.0, 0, GB, "eu-west", "us-east"),
            request(42.0, 0, GB, "eu-west", "eu-west"),
        ];
        requests.push(RequestRecord {
            asset: true,
            origin_region: None,
            ..request(34.0, 0, GB, "eu-west", "")
        });
        Measured {
            timeline: Timeline {
                phases,
                region_outage: action(10.0, 10.02),
                region_restore: action(20.0, 20.2),
                origin_outage: action(30.0, 30.02),
                origin_restore: action(40.0, 40.5),
            },
            requests,
            dns: vec![
                dns(9.9, GB, "eu-west"),
                dns(10.8, GB, "eu-west"),
                dns(10.9, GB, "us-east"),
                dns(10.9, 1, "us-east"),
                dns(20.8, GB, "us-east"),
                dns(20.9, GB, "eu-west"),
                dns(35.0, GB, "eu-west"),
                dns(36.0, GB, "eu-west"),
            ],
            dns_view: vec![
                health(10.5, true),
                health(10.85, false),
                health(20.5, false),
                health(20.85, true),
            ],
            edge_health: vec![
                health(10.01, false),
                health(20.05, false),
                health(20.1, true),
            ],
            client_countries: vec![GB, 1],
        }
    }

    fn setup() -> DrillSetup {
        let config = Config::from_toml(
            &drill_config_text(200, None).unwrap(),
            ConfigSource::Embedded,
        )
        .unwrap();
        DrillSetup::of(200, &config)
    }

    fn report(measured: &Measured) -> OutageReport {
        summarize(
            Path::new("target/release/meridian"),
            &OutageOptions::full(),
            setup(),
            measured,
        )
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn a_drill_within_targets_passes_with_its_timings() {
        let report = report(&measured());
        assert!(report.passed, "{:?}", report.failures);
        let r = &report.region_outage;
        assert!(close(r.steered_away_ms, 900.0), "{r:?}");
        assert_eq!(r.steered_to.as_deref(), Some("us-east"));
        assert!(close(r.detected_down_ms, 850.0), "{r:?}");
        assert!(close(r.recovered_ms, 100.0), "{r:?}");
        assert!(close(r.steered_back_ms, 800.0), "{r:?}");
        assert!(close(r.detected_up_ms, 750.0), "{r:?}");
        assert!(close(r.clients_home_ms, 5900.0), "{r:?}");
        assert!((r.outage_command_ms - 20.0).abs() < 1e-6);

        let o = &report.origin_outage;
        assert_eq!(o.failed, 0);
        assert_eq!(o.requests, 4);
        assert_eq!(o.gb_whoami_via_edge, 2);
        assert_eq!(o.answered_by_other_origin["us-east"], 2);
        assert_eq!((o.gb_dns_answers, o.gb_dns_elsewhere), (2, 0));
        assert!(close(o.back_on_own_origin_ms, 1500.0), "{o:?}");

        let outage = report.phase(Phase::RegionOutage).unwrap();
        assert_eq!(outage.requests_sent, 2);
        assert_eq!(outage.failed, 1);
        assert_eq!(outage.retried, 1);
        assert_eq!(outage.failed_by_reason["connect"], 1);
        assert_eq!(outage.edges["GB"]["us-east"], 1);
        assert_eq!(
            report.phase(Phase::Baseline).unwrap().edges["US"]["us-east"],
            1
        );

        let rows = report.rows();
        assert!(rows.iter().all(|r| r.verdict != Verdict::Fail), "{rows:?}");
        assert_eq!(
            rows.iter().filter(|r| r.verdict == Verdict::Pass).count(),
            4
        );
        let table = render_table(&report.title(), &rows);
        assert!(
            table.contains("0.90 s after the kill (to us-east)"),
            "{table}"
        );
        assert!(table.contains("0.80 s after recovery"), "{table}");
        assert!(!table.contains("(smoke)"), "{table}");
        let notes = report.notes().join("\n");
        assert!(notes.contains("10.90 s us-east"), "{notes}");
        assert!(notes.contains("connection refused"), "{notes}");
    }

    #[test]
    fn slow_steering_fails_its_rows() {
        let mut m = measured();
        // Away only 2.5 s after the kill; back 3.4 s after recovery.
        m.dns = vec![
            dns(12.4, GB, "eu-west"),
            dns(12.5, GB, "us-east"),
            dns(23.5, GB, "eu-west"),
            dns(35.0, GB, "eu-west"),
        ];
        let report = report(&m);
        assert!(!report.passed);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(
            report.failures[0].contains("after 2.50 s"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[1].contains("3.40 s"),
            "{:?}",
            report.failures
        );
        let failed: Vec<String> = report
            .rows()
            .into_iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| r.metric)
            .collect();
        assert_eq!(failed, ["  GB steered away", "  GB steered back"]);
    }

    #[test]
    fn no_steering_at_all_is_not_a_steer_back() {
        let mut m = measured();
        m.dns.retain(|d| d.answer.as_deref() == Ok("eu-west"));
        let report = report(&m);
        assert_eq!(report.region_outage.steered_away_ms, None);
        assert_eq!(report.region_outage.steered_back_ms, None);
        assert!(report.failures.iter().any(|f| f.contains("never steered")));
        assert!(report.rows().iter().any(|r| r.value == "not observed"));
    }

    #[test]
    fn a_failed_request_behind_a_live_edge_fails_the_drill() {
        let mut m = measured();
        m.requests.push(RequestRecord {
            outcome: Err("HTTP 502".to_owned()),
            ..request(35.0, 0, GB, "eu-west", "")
        });
        m.dns.push(dns(37.0, GB, "us-east"));
        let report = report(&m);
        assert_eq!(report.origin_outage.failed, 1);
        assert_eq!(report.origin_outage.gb_dns_elsewhere, 1);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(report.failures[0].contains("1 of 5 idempotent requests failed"));
        assert!(report.failures[1].contains("another region 1 of 3 times"));
    }

    #[test]
    fn an_origin_outage_no_client_went_through_is_not_a_pass() {
        let mut m = measured();
        m.requests
            .retain(|r| !(r.at >= s(30.0) && r.at < s(40.0) && r.country == GB));
        let report = report(&m);
        assert_eq!(report.origin_outage.failed, 0);
        assert!(
            report.failures.iter().any(|f| f.contains("not exercised")),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn a_client_that_never_came_home_is_reported() {
        let mut m = measured();
        m.requests.retain(|r| r.at != s(26.0));
        let report = report(&m);
        assert_eq!(report.region_outage.clients_home_ms, None);
        // Information only: the targets are about DNS.
        assert!(report.passed, "{:?}", report.failures);
    }

    #[test]
    fn identical_errors_are_grouped_with_counts() {
        let mut m = measured();
        m.requests.push(failed(10.3, 0, "connect"));
        m.requests.push(failed(10.4, 0, "connect"));
        m.requests.push(RequestRecord {
            error: None,
            ..failed(10.5, 0, "dns: timeout")
        });
        m.requests.sort_by_key(|r| r.at);
        let samples = error_samples(&m);
        assert_eq!(
            samples,
            [
                "region outage: 3 × GB via eu-west, 10.20-10.40 s: connection refused",
                "region outage: 1 × GB via eu-west, 10.50-10.50 s: dns: timeout"
            ]
        );
    }

    #[test]
    fn dns_changes_list_each_countrys_transitions() {
        let mut samples = measured().dns;
        samples.insert(
            3,
            DnsSample {
                at: s(10.95),
                country: GB,
                answer: Err("timeout".to_owned()),
            },
        );
        let changes = dns_changes(&samples);
        let gb: Vec<(u64, &str)> = changes
            .iter()
            .filter(|c| c.country == "GB")
            .map(|c| (c.at_ms, c.answer.as_str()))
            .collect();
        assert_eq!(
            gb,
            [
                (9900, "eu-west"),
                (10900, "us-east"),
                (10950, "error: timeout"),
                (20800, "us-east"),
                (20900, "eu-west")
            ]
        );
        assert_eq!(changes.iter().filter(|c| c.country == "US").count(), 1);
    }

    #[test]
    fn the_report_serializes_with_its_verdict() {
        let report = report(&measured());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["scenario"], "outage");
        assert_eq!(json["passed"], true);
        assert_eq!(json["phases"][1]["phase"], "region-outage");
        assert_eq!(json["origin_outage"]["failed"], 0);
        assert_eq!(json["setup"]["steered_ttl_seconds"], 30);
        assert_eq!(json["setup"]["edges"]["eu-west"], "127.200.2.1");
        assert_eq!(json["countries"][0]["network"], "81.2.69.0");
        assert_eq!(json["options"]["phase_ms"], 10_000);
    }

    #[test]
    fn the_drill_config_moves_every_address_onto_its_block() {
        let text = drill_config_text(207, Some(5)).unwrap();
        assert!(!text.contains("127.0."), "{text}");
        let config = Config::from_toml(&text, ConfigSource::Embedded).unwrap();
        assert_eq!(config.geodns.listen, "127.207.0.1:5353".parse().unwrap());
        assert_eq!(
            config.geodns.admin_listen,
            "127.207.0.1:9153".parse().unwrap()
        );
        assert_eq!(config.control.listen, "127.207.0.1:9000".parse().unwrap());
        assert_eq!(config.zone.steered_ttl_seconds, 5);
        let eu = config.region("eu-west").unwrap();
        assert_eq!(
            eu.edge_addresses,
            ["127.207.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(eu.origin_url.authority(), "127.207.2.2:8000");
        assert!(
            listen_addrs(&config)
                .iter()
                .all(|(addr, _)| in_block(addr.ip(), 207))
        );
        // The health settings are the demo's: they are what is measured.
        assert_eq!(config.health, Config::demo().health);
        let demo_ttl = Config::from_toml(
            &drill_config_text(207, None).unwrap(),
            ConfigSource::Embedded,
        )
        .unwrap()
        .zone
        .steered_ttl_seconds;
        assert_eq!(demo_ttl, Config::demo().zone.steered_ttl_seconds);
    }

    #[test]
    fn only_demo_loopback_addresses_move() {
        assert_eq!(
            moved_address("127.0.2.1", 201).as_deref(),
            Some("127.201.2.1")
        );
        assert_eq!(
            moved_address("127.0.0.1:5353", 201).as_deref(),
            Some("127.201.0.1:5353")
        );
        assert_eq!(
            moved_address("http://127.0.2.2:8000", 201).as_deref(),
            Some("http://127.201.2.2:8000")
        );
        assert_eq!(moved_address("10.0.0.1", 201), None);
        assert_eq!(moved_address("127.1.0.1", 201), None);
        assert_eq!(moved_address("eu-west", 201), None);
    }

    #[test]
    fn a_busy_block_is_skipped_or_named() {
        // Hold one of block 215's addresses: an explicit request for it is
        // refused with the address; a free block is found otherwise.
        let held = std::net::TcpListener::bind("127.215.0.1:9000").unwrap();
        let err = choose_block(Some(215), None).err().unwrap().to_string();
        assert!(err.contains("127.215.0.1:9000"), "{err}");
        assert!(err.contains("127.215.x.y is in use"), "{err}");
        let (block, _, config) = choose_block(None, None).unwrap();
        assert_ne!(block, 215);
        assert!(in_block(config.geodns.listen.ip(), block));
        drop(held);
    }

    #[test]
    fn the_plan_includes_the_wait_for_clients_to_come_home() {
        assert_eq!(OutageOptions::full().planned(30), Duration::from_secs(56));
        assert_eq!(OutageOptions::smoke().planned(5), Duration::from_secs(14));
        assert_eq!(OutageOptions::full().planned(5), Duration::from_secs(45));
    }

    #[tokio::test]
    async fn an_up_that_exits_is_reported_not_waited_for() {
        let started = Instant::now();
        let err = run(Path::new("/bin/false"), &OutageOptions::smoke())
            .await
            .unwrap_err();
        assert!(matches!(err, BenchError::Exited { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn options_are_checked() {
        assert!(OutageOptions::full().check().is_ok());
        assert!(OutageOptions::smoke().check().is_ok());
        let err = OutageOptions {
            block: Some(42),
            ..OutageOptions::full()
        }
        .check()
        .unwrap_err();
        assert!(err.to_string().contains("--block"), "{err}");
        let err = OutageOptions {
            rate_per_client: 0,
            ..OutageOptions::smoke()
        }
        .check()
        .unwrap_err();
        assert!(err.to_string().contains("--rate"), "{err}");
    }

    #[test]
    fn the_outage_country_lives_in_the_outage_region() {
        assert_eq!(COUNTRIES[GB].home, OUTAGE_REGION);
        assert_eq!(COUNTRIES[GB].subnet(), "81.2.69.0/24");
        let homes: Vec<&str> = COUNTRIES.iter().map(|c| c.home).collect();
        assert_eq!(homes, ["eu-west", "us-east", "ap-southeast"]);
    }

    #[test]
    fn the_query_carries_the_client_subnet_and_the_answer_is_read() {
        let query = steered_query(&COUNTRIES[GB]).unwrap();
        let bytes = query.to_vec().unwrap();
        let parsed = Message::from_vec(&bytes).unwrap();
        let Some(EdnsOption::Subnet(subnet)) = parsed
            .edns
            .as_ref()
            .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet))
        else {
            panic!("no ECS option: {parsed:?}");
        };
        assert_eq!(subnet.addr(), IpAddr::from([81, 2, 69, 0]));
        assert_eq!(subnet.source_prefix(), 24);

        let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        let name = Name::from_ascii(STEERED_NAME).unwrap();
        reply.answers.push(Record::from_rdata(
            name,
            30,
            RData::A(A::new(127, 200, 2, 1)),
        ));
        assert_eq!(
            answer_of(&reply),
            Ok(Resolution {
                address: IpAddr::from([127, 200, 2, 1]),
                ttl: 30
            })
        );
        reply.answers.clear();
        assert!(answer_of(&reply).unwrap_err().contains("no A record"));
        reply.metadata.response_code = ResponseCode::ServFail;
        assert!(answer_of(&reply).unwrap_err().contains("rcode"));
    }
}
