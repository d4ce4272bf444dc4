//! Scenario `dns-flood`: how much of GeoDNS's service survives a flood.
//!
//! An authoritative server on the Internet is sent garbage all day, and
//! sometimes more than it can take. This scenario measures what real
//! clients still get then, on the real binary:
//!
//! 1. `meridian geodns` runs the demo topology on a loopback block of its
//!    own (`--block`), pinned to one core, with the bench answering the
//!    edges' health checks so every region is up;
//! 2. on the other core, a flood thread sends datagrams from several
//!    sockets (127.B.100.x) as fast as that core can, or at `--rate`: the
//!    test kit's hostile DNS inputs (the fuzz test's corpus, mutated), from
//!    a seed that is printed and replayable with `--seed`;
//! 3. meanwhile probes from another /24 (127.B.200.1) ask the steered name
//!    for known countries every 10 ms over UDP and every 500 ms over a new
//!    TCP connection; a probe counts as answered when the right edge comes
//!    back within a second.
//!
//! The report gives the share of probes answered (the targets), the
//! flood's rate, GeoDNS's replies per CPU-second under it, and what the
//! kernel dropped at GeoDNS's socket (`/proc/net/udp`): a probe lost under
//! a flood the server cannot keep up with was dropped there, with the
//! flood. With `--rate-limit`, GeoDNS runs with `[geodns.rate_limit]`.
//! That no answer is ever wrong, no response is answered and GeoDNS lives
//! through it are correctness, checked on every test run by
//! `dns::dns_hostile_input_never_takes_geodns_down` in `tests/` and by the
//! fuzz test.

use crate::BenchError;
use crate::cpu;
use crate::dns::{self, Client};
use crate::pinning::Cores;
use crate::report::{Row, Run, ScenarioReport};
use crate::stats::LatencySummary;
use crate::targets::target;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use kit::{RateLimit, Topology};
use serde::Serialize;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many inputs the flood's pool holds; it is sent round and round.
const POOL_SIZE: usize = 16_384;

/// Datagrams sent on one socket before its replies are read.
const BURST: usize = 16;

/// The scenario's knobs; the flags of `bench dns-flood` change its preset
/// ([`full`](Self::full) or [`smoke`](Self::smoke)), the others are fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clap::Args)]
pub struct DnsFloodOptions {
    /// Seconds of flood [default: 10; 2 with --smoke].
    #[arg(long = "duration", value_parser = crate::parse_seconds_as_ms, value_name = "SECS", required = false)]
    pub duration_ms: u64,
    /// Flood sockets, each on its own source address, 1-64 [default: 8;
    /// 4 with --smoke].
    #[arg(long, value_name = "N", required = false)]
    pub sockets: usize,
    /// Flood datagrams per second at most [default: as many as the load
    /// core can send; 20000 with --smoke].
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
    /// Countries the probes ask for, comma-separated ISO codes [default:
    /// GB,US,SG].
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub countries: Vec<String>,
    /// Every how many ms a UDP probe is sent.
    #[arg(skip)]
    pub probe_interval_ms: u64,
    /// Every how many ms a TCP probe is made.
    #[arg(skip)]
    pub tcp_probe_interval_ms: u64,
    /// The seed of the flood's datagrams, to replay a run [default: from
    /// the clock; printed].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Run GeoDNS with response-rate limiting ([geodns.rate_limit]) at
    /// this many responses per second per client network; the flood comes
    /// from one /24 and the probes from another [default: off].
    #[arg(long, value_name = "RPS")]
    pub rate_limit: Option<u32>,
    /// The loopback block it runs on.
    #[arg(skip)]
    pub block: u8,
    /// Whether these are the small CI settings.
    #[arg(skip)]
    pub smoke: bool,
}

impl DnsFloodOptions {
    /// 10 s of flood from 8 sockets, as fast as the load core can send;
    /// probes for GB, US and SG.
    pub fn full() -> Self {
        DnsFloodOptions {
            duration_ms: 10_000,
            sockets: 8,
            rate: None,
            countries: ["GB", "US", "SG"].map(str::to_owned).to_vec(),
            probe_interval_ms: 10,
            tcp_probe_interval_ms: 500,
            seed: None,
            rate_limit: None,
            block: 242,
            smoke: false,
        }
    }

    /// 2 s from 4 sockets at 20,000 datagrams/s, gentle on a shared CI box.
    pub fn smoke() -> Self {
        DnsFloodOptions {
            duration_ms: 2_000,
            sockets: 4,
            rate: Some(20_000),
            smoke: true,
            ..DnsFloodOptions::full()
        }
    }
}

/// What the probes of one protocol saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Probes {
    /// Probes sent.
    pub sent: u64,
    /// Answered with the right edge within the timeout.
    pub answered: u64,
    /// Answered otherwise (information: correctness is the tests' job).
    pub other: u64,
    /// Latency of the answered ones.
    pub latency: LatencySummary,
}

impl Probes {
    /// The share answered, in percent.
    pub fn percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * self.answered as f64 / self.sent as f64
        }
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct DnsFloodReport {
    /// What ran.
    #[serde(flatten)]
    pub run: Run<DnsFloodOptions>,
    /// The flood's seed.
    pub seed: u64,
    /// Where the server and the load ran.
    pub cores: String,
    /// Datagrams the flood sent, and for how long (s).
    pub flood_sent: u64,
    /// How long it sent, in seconds.
    pub flood_seconds: f64,
    /// Replies the flood got.
    pub flood_replies: u64,
    /// GeoDNS's CPU time during the flood, in seconds.
    pub server_cpu_seconds: Option<f64>,
    /// Datagrams the kernel dropped at GeoDNS's socket, full.
    pub server_drops: Option<u64>,
    /// The UDP probes.
    pub udp: Probes,
    /// The TCP probes.
    pub tcp: Probes,
    /// The targets missed.
    pub failures: Vec<String>,
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &DnsFloodOptions) -> Result<DnsFloodReport, BenchError> {
    if options.countries.is_empty()
        || options.duration_ms == 0
        || !(1..=64).contains(&options.sockets)
    {
        return Err(BenchError::invalid(
            "--countries/--duration/--sockets",
            "need a country, a duration and 1 to 64 sockets",
        ));
    }
    let seed = options.seed.unwrap_or_else(kit::mutation::clock_seed);
    let cores = Cores::choose();
    let mut topology = dns::single_edges(Topology::demo(options.block).single_geodns());
    if let Some(rate) = options.rate_limit {
        topology = topology.rate_limit(RateLimit {
            responses_per_second: rate,
            burst: None,
            slip: None,
        });
    }
    let config = topology.config()?;
    let db = dns::embedded_database()?;
    let clients = dns::clients(&options.countries, &db, &config)?;
    let health = dns::serve_health(&config).await?;
    let probe_host = Ipv4Addr::new(127, options.block, 200, 1);
    let server = topology.dns();
    let (from, timeout) = (SocketAddr::from((probe_host, 0)), Duration::from_secs(60));
    let started = dns::start_meridian(meridian, &topology, from, timeout, &cores, &clients);
    let (process, _workdir) = started.await?;
    eprintln!("dns-flood: seed {seed} (--seed {seed} replays the same datagrams)");

    let sources: Vec<SocketAddr> = (0..options.sockets)
        .map(|i| SocketAddr::from(([127, options.block, 100, 1 + i as u8], 0)))
        .collect();
    let pool = kit::mutation::inputs(seed, POOL_SIZE);
    // The flood's time starts once its datagrams exist: making them takes
    // a debug build on a busy machine seconds, once the whole window.
    let deadline = Instant::now() + Duration::from_millis(options.duration_ms);
    let (rate, pid) = (options.rate, process.pid());
    let drops_before = udp_drops(server);
    let flooding = tokio::task::spawn_blocking(move || {
        flood(server, &sources, pool, deadline, rate, pid, cores)
    });
    let (udp_every, tcp_every) = (options.probe_interval_ms, options.tcp_probe_interval_ms);
    let udp = probe(server, probe_host, &clients, udp_every, deadline, false);
    let tcp = probe(server, probe_host, &clients, tcp_every, deadline, true);
    let (flooded, udp, tcp) = tokio::join!(flooding, udp, tcp);
    let drops_after = udp_drops(server);
    for task in health {
        task.abort();
    }
    let flooded = flooded.map_err(|e| BenchError::invalid("the flood", e))??;
    let mut report = DnsFloodReport {
        run: Run::new("dns-flood", meridian, options),
        seed,
        cores: cores.describe(),
        flood_sent: flooded.sent,
        flood_seconds: flooded.seconds,
        flood_replies: flooded.replies,
        server_cpu_seconds: flooded.cpu_seconds,
        server_drops: drops_before
            .zip(drops_after)
            .map(|(b, a)| a.saturating_sub(b)),
        udp: udp?,
        tcp: tcp?,
        failures: Vec::new(),
    };
    report.failures = report.failures();
    Ok(report)
}

/// What the flood thread counted.
struct Flooded {
    sent: u64,
    seconds: f64,
    replies: u64,
    cpu_seconds: Option<f64>,
}

/// Sends `pool` round and round from sockets bound to `sources`, pinned
/// to the load core, until `deadline`, reading (and counting) replies.
fn flood(
    server: SocketAddr,
    sources: &[SocketAddr],
    pool: Vec<Vec<u8>>,
    deadline: Instant,
    rate: Option<u64>,
    server_pid: u32,
    cores: Cores,
) -> Result<Flooded, BenchError> {
    cores.pin_current_thread_to_load();
    let sockets = sources
        .iter()
        .map(|&source| {
            let socket = UdpSocket::bind(source)?;
            socket.connect(server)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(BenchError::io("set up the flood's sockets"))?;
    let cpu_before = cpu::process_tree_time(server_pid);
    let started = Instant::now();
    let mut buffer = vec![0u8; 65_536];
    let (mut sent, mut replies, mut next) = (0u64, 0u64, 0usize);
    let mut drain = |socket: &UdpSocket, replies: &mut u64| loop {
        match socket.recv(&mut buffer) {
            Ok(_) => *replies += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => return,
        }
    };
    while Instant::now() < deadline && !pool.is_empty() {
        for socket in &sockets {
            if let Some(rate) = rate
                && sent as f64 >= started.elapsed().as_secs_f64() * rate as f64
            {
                drain(socket, &mut replies);
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            for _ in 0..BURST {
                if socket.send(&pool[next]).is_ok() {
                    sent += 1;
                }
                next = (next + 1) % pool.len();
            }
            drain(socket, &mut replies);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_before
        .zip(cpu::process_tree_time(server_pid))
        .map(|(before, after)| after.since(&before).total().as_secs_f64());
    std::thread::sleep(Duration::from_millis(200));
    for socket in &sockets {
        drain(socket, &mut replies);
    }
    Ok(Flooded {
        sent,
        seconds,
        replies,
        cpu_seconds,
    })
}

/// Datagrams the kernel dropped at the UDP socket bound to `local`
/// because its receive buffer was full, from `/proc/net/udp` (its last
/// column); `None` where there is no such file or socket.
fn udp_drops(local: SocketAddr) -> Option<u64> {
    parse_udp_drops(&std::fs::read_to_string("/proc/net/udp").ok()?, local)
}

/// [`udp_drops`] in the text of `/proc/net/udp`, whose local addresses are
/// an IPv4 address's bytes in memory order printed as a native-endian hex
/// number, then the port in hex.
fn parse_udp_drops(table: &str, local: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(local) = local else {
        return None;
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ip, port) = fields.get(1)?.split_once(':')?;
        let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
        let port = u16::from_str_radix(port, 16).ok()?;
        (ip == *local.ip() && port == local.port())
            .then(|| fields.last()?.parse().ok())
            .flatten()
    })
}

/// Whether `reply` gives `client` its edge.
fn right(reply: &Message, client: &Client) -> bool {
    kit::dns::steered(reply).is_ok_and(|(ip, _)| ip == client.expected)
}

/// A probe every `interval_ms` until `deadline`, the clients in turn,
/// over UDP from a socket of its own on `from`, or (`tcp`) over a new TCP
/// connection from `from` each time; each waits up to a second for its
/// reply.
async fn probe(
    server: SocketAddr,
    from: Ipv4Addr,
    clients: &[Client],
    interval_ms: u64,
    deadline: Instant,
    tcp: bool,
) -> Result<Probes, BenchError> {
    let socket = if tcp {
        None
    } else {
        Some(tokio::net::UdpSocket::bind((from, 0)).await)
    };
    let socket = socket
        .transpose()
        .map_err(BenchError::io("bind the UDP probe's socket"))?;
    let mut probes = Probes::default();
    let mut latencies = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(interval_ms.max(1)));
    if !tcp {
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let wait = Duration::from_secs(1);
    while Instant::now() < deadline {
        ticks.tick().await;
        let client = &clients[(probes.sent % clients.len() as u64) as usize];
        let query = kit::dns::ecs("cdn.meridian.test.", RecordType::A, &client.subnet);
        probes.sent += 1;
        let started = Instant::now();
        // `None`: no reply; `Some(None)`: one that does not parse.
        let reply = if let Some(socket) = &socket {
            kit::dns::ask(socket, server, &query, wait)
                .await
                .ok()
                .map(Some)
        } else {
            let bytes = kit::dns::bytes(&query).map_err(|e| BenchError::invalid("a probe", e))?;
            let exchange = kit::dns::ask_tcp(IpAddr::V4(from), server, &bytes);
            let reply = tokio::time::timeout(wait, exchange)
                .await
                .ok()
                .and_then(Result::ok);
            reply.map(|reply| Message::from_vec(&reply).ok())
        };
        match reply {
            Some(Some(reply)) if right(&reply, client) => {
                probes.answered += 1;
                latencies.push(started.elapsed());
            }
            Some(_) => probes.other += 1,
            None => {}
        }
    }
    probes.latency = LatencySummary::from_samples(latencies);
    Ok(probes)
}

impl ScenarioReport for DnsFloodReport {
    fn title(&self) -> String {
        let limit = self
            .run
            .options
            .rate_limit
            .map_or_else(String::new, |r| format!(", rate limit {r}/s per network"));
        format!(
            "dns-flood: {:.1} s of hostile datagrams from {} sockets, seed {}{limit}; {}",
            self.flood_seconds, self.run.options.sockets, self.seed, self.cores
        )
    }

    fn rows(&self) -> Vec<Row> {
        let per_second = self.flood_sent as f64 / self.flood_seconds.max(1e-9);
        let mut rows = vec![
            Row::info(
                "flood",
                format!("{} datagrams, {per_second:.0}/s", self.flood_sent),
            ),
            Row::info("replies to the flood", self.flood_replies.to_string()),
        ];
        if let Some(cpu) = self.server_cpu_seconds.filter(|c| *c > 0.0) {
            rows.push(Row::info(
                "GeoDNS replies per CPU-second",
                format!("{:.0} ({cpu:.2} s of CPU)", self.flood_replies as f64 / cpu),
            ));
        }
        if let Some(drops) = self.server_drops {
            rows.push(Row::info(
                "dropped by the kernel at GeoDNS",
                drops.to_string(),
            ));
        }
        for (metric, probes, label) in [
            ("udp_answered", &self.udp, "UDP probes answered"),
            ("tcp_answered", &self.tcp, "TCP probes answered"),
        ] {
            let goal = target("dns-flood", metric);
            rows.push(Row::checked(
                label,
                format!(
                    "{:.2} % of {} (p50 {:.2} ms, p99 {:.2} ms; {} otherwise)",
                    probes.percent(),
                    probes.sent,
                    probes.latency.p50_ms,
                    probes.latency.p99_ms,
                    probes.other
                ),
                goal.describe(),
                goal.met(probes.percent()),
            ));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_are_read_from_proc_net_udp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                     1: 0100007F:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0 17\n";
        let local: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        assert_eq!(parse_udp_drops(table, local), Some(17));
        assert_eq!(
            parse_udp_drops(table, "127.0.0.2:5353".parse().unwrap()),
            None
        );
    }

    #[test]
    fn probes_below_their_targets_fail() {
        let probes = |answered| Probes {
            sent: 1000,
            answered,
            ..Probes::default()
        };
        let mut report = DnsFloodReport {
            run: Run::new(
                "dns-flood",
                Path::new("meridian"),
                &DnsFloodOptions::smoke(),
            ),
            seed: 1,
            cores: String::new(),
            flood_sent: 1,
            flood_seconds: 1.0,
            flood_replies: 1,
            server_cpu_seconds: None,
            server_drops: None,
            udp: probes(995),
            tcp: probes(1000),
            failures: Vec::new(),
        };
        assert!(report.failures().is_empty());
        report.udp = probes(970);
        report.tcp = probes(999);
        assert_eq!(report.failures().len(), 2, "{:?}", report.failures());
    }
}
