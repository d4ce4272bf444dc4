//! Scenario `dns-flood`: GeoDNS keeps answering correctly while flooded.
//!
//! An authoritative DNS server on the Internet is sent garbage all day, and
//! sometimes far more of it than it can answer. What must hold then is
//! that it never answers wrongly, never answers a response, never dies,
//! and that its real clients still get through. This scenario shows that
//! on the real binary:
//!
//! 1. `meridian geodns` runs with the `dns` scenario's topology
//!    ([`crate::dns::Addresses`]) moved to addresses of its own (GeoDNS on
//!    127.0.220.1, the edges' health-check stand-ins on 127.0.221.1 to
//!    127.0.223.1), pinned to one core;
//! 2. on the other core, a flood thread sends datagrams from several
//!    sockets (127.0.220.100 and up) as fast as that core can: random
//!    bytes, truncated queries, queries with garbage after them, absurd
//!    section counts, compression-pointer loops, responses (which must
//!    never be answered), and valid steered queries for random ECS
//!    subnets (answer-cache hits and misses alike); it counts the replies
//!    by rcode, telling each reply's datagram kind by its ID;
//! 3. meanwhile a probe (from 127.0.221.100, another /24 than the flood)
//!    sends a steered query with a known country's ECS subnet every 10 ms
//!    over UDP and every 500 ms over a new TCP connection, and checks each
//!    reply: within 1 s, parses, its ID, AA, NOERROR, exactly the edge
//!    address of that country's region, and the ECS option echoed with a
//!    scope;
//! 4. after the flood, GeoDNS must still be running and answer both
//!    protocols correctly.
//!
//! The report also counts what the kernel dropped at GeoDNS's socket
//! because its receive buffer was full (`/proc/net/udp`), and GeoDNS's CPU
//! time: a probe lost under a flood the server cannot keep up with was
//! dropped there, with the flood, before GeoDNS could see it. With
//! `--rate-limit`, GeoDNS runs with `[geodns.rate_limit]`, and the flood's
//! network gets its replies withheld.
//!
//! The flood's datagrams come from a pool generated up front from a seed
//! (printed, and `--seed` replays it), so that the flood thread spends its
//! core on sending rather than on building messages.
//!
//! With `--compare`, gdnsd 3 takes a turn after Meridian: the `dns`
//! scenario's gdnsd setup (the same zone, the same database, a per-country
//! map exported from Meridian's steering) on 127.0.220.2, pinned to the
//! same core, under the same pool from the same seed at the same rate for
//! the same time, with the same probes. Its readiness check only passes
//! when it gives every probe's country the edge Meridian gives it, so the
//! probes check its answers against the same addresses. Its numbers are
//! reported next to Meridian's, with the ratio of their UDP probe success
//! rates; they are information, not targets.

use crate::BenchError;
use crate::cpu;
use crate::dns::{self, Addresses, Client};
use crate::peers::{Skipped, find_program};
use crate::pinning::Cores;
use crate::process::MeridianProcess;
use crate::progress::Progress;
use crate::report::{Row, ScenarioReport};
use crate::stats::LatencySummary;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The scenario's loopback addresses: GeoDNS on 127.0.220.1 (and gdnsd,
/// when compared, on 127.0.220.2), the regions on 127.0.221-223.x.
/// (127.0.216-219 are the `dns` scenario's.)
const ADDRESSES: Addresses = Addresses {
    geodns: 220,
    regions: [221, 222, 223],
};

/// The flood's sockets are bound to 127.0.220.100, .101, ... one address
/// each.
const FLOOD_FIRST_HOST: u8 = 100;

/// The most flood sockets (so their addresses stay within 127.0.220.x).
const MAX_FLOOD_SOCKETS: usize = 64;

/// Every probe, the readiness check and the check after the flood ask
/// from here: another /24 than the flood, so that a per-network response
/// rate limit, were one configured, would not charge them for it.
const PROBE_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 221, 100);

/// How many datagrams the flood's pool holds; it is sent round and round,
/// each time with a new ID.
const POOL_SIZE: usize = 16_384;

/// The longest random datagram.
const MAX_RANDOM_LEN: usize = 600;

/// Datagrams sent on one socket before its replies are read.
const BURST: usize = 16;

/// How long the flood keeps reading replies after it stops sending.
const DRAIN: Duration = Duration::from_millis(200);

/// The share of UDP probes that must be answered correctly: not all of
/// them, because a datagram that arrives while GeoDNS's receive buffer is
/// full is dropped by the kernel, probe or not.
const TARGET_UDP_FRACTION: f64 = 0.99;

/// How long the check after the flood may take to get correct answers
/// over both protocols.
const AFTER_FLOOD_TIMEOUT: Duration = Duration::from_secs(5);

/// How many error descriptions a report keeps.
const SAMPLES: usize = 5;

/// The scenario's knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsFloodOptions {
    /// How long the flood lasts, in ms.
    pub duration_ms: u64,
    /// Flood sockets, each on its own source address.
    pub sockets: usize,
    /// Datagrams per second the flood may send; `None`: as many as the
    /// load core can.
    pub rate: Option<u64>,
    /// Countries whose clients the probes simulate (ISO codes).
    pub countries: Vec<String>,
    /// Every how many ms a UDP probe is sent.
    pub probe_interval_ms: u64,
    /// Every how many ms a TCP probe is made.
    pub tcp_probe_interval_ms: u64,
    /// When a probe without a correct reply counts as lost, in ms.
    pub probe_timeout_ms: u64,
    /// The flood's seed; `None`: from the clock.
    pub seed: Option<u64>,
    /// With a value, GeoDNS runs with `[geodns.rate_limit]` at this many
    /// responses per second per client network (the flood comes from one
    /// /24, the probes from another); `None`: the `dns` scenario's
    /// topology, without it.
    pub rate_limit: Option<u32>,
    /// How long GeoDNS may take to answer correctly after starting, ms.
    pub ready_timeout_ms: u64,
    /// Whether gdnsd takes a turn under the same flood after Meridian.
    pub compare: bool,
    /// Whether these are the small CI settings.
    pub smoke: bool,
}

impl DnsFloodOptions {
    /// 10 s of flood from 8 sockets, as fast as the load core can send;
    /// probes for GB, US and SG (one per region).
    pub fn full() -> Self {
        DnsFloodOptions {
            duration_ms: 10_000,
            sockets: 8,
            rate: None,
            countries: ["GB", "US", "SG"].map(str::to_owned).to_vec(),
            probe_interval_ms: 10,
            tcp_probe_interval_ms: 500,
            probe_timeout_ms: 1_000,
            seed: None,
            rate_limit: None,
            ready_timeout_ms: 30_000,
            compare: false,
            smoke: false,
        }
    }

    /// A quick run for CI: 2 s from 4 sockets at 20,000 datagrams/s, so
    /// that the smoke tests running next to it keep their cores.
    pub fn smoke() -> Self {
        DnsFloodOptions {
            duration_ms: 2_000,
            sockets: 4,
            rate: Some(20_000),
            ready_timeout_ms: 15_000,
            smoke: true,
            ..DnsFloodOptions::full()
        }
    }
}

/// What a flood datagram is; the low four bits of its ID say which, so a
/// reply tells what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloodKind {
    /// Random bytes, 0 to 600 of them, without the QR bit.
    RandomBytes,
    /// Random bytes with the QR bit set: a "response", never answered.
    RandomResponse,
    /// A valid query cut short.
    Truncated,
    /// A valid query with random bytes after it.
    TrailingGarbage,
    /// A valid query whose section counts are absurd.
    AbsurdCounts,
    /// A question or record name whose compression pointers loop, point
    /// into the header or past the end.
    PointerLoop,
    /// A well-formed response (QR set): never answered.
    Response,
    /// The steered name's A or AAAA with a random ECS subnet.
    Steered,
    /// Other valid queries: the apex, names outside the zone, missing
    /// names and types.
    OtherQuery,
}

impl FloodKind {
    /// Every kind, in ID order.
    pub const ALL: [FloodKind; 9] = [
        FloodKind::RandomBytes,
        FloodKind::RandomResponse,
        FloodKind::Truncated,
        FloodKind::TrailingGarbage,
        FloodKind::AbsurdCounts,
        FloodKind::PointerLoop,
        FloodKind::Response,
        FloodKind::Steered,
        FloodKind::OtherQuery,
    ];

    /// Its code in the low four bits of a datagram's ID.
    fn code(self) -> u16 {
        self as u16
    }

    fn from_code(code: u16) -> Option<FloodKind> {
        FloodKind::ALL.get(usize::from(code)).copied()
    }

    /// Whether the datagram is a response, which must never be answered.
    pub fn is_response(self) -> bool {
        matches!(self, FloodKind::RandomResponse | FloodKind::Response)
    }

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            FloodKind::RandomBytes => "random bytes",
            FloodKind::RandomResponse => "random bytes with QR set",
            FloodKind::Truncated => "truncated queries",
            FloodKind::TrailingGarbage => "queries with garbage after them",
            FloodKind::AbsurdCounts => "absurd section counts",
            FloodKind::PointerLoop => "compression-pointer loops",
            FloodKind::Response => "responses (QR set)",
            FloodKind::Steered => "steered queries, random ECS",
            FloodKind::OtherQuery => "other valid queries",
        }
    }
}

/// One datagram of the flood's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodDatagram {
    /// What it is.
    pub kind: FloodKind,
    /// Its bytes; the first two (when there are two) are replaced by an
    /// ID carrying the kind each time it is sent.
    pub bytes: Vec<u8>,
}

/// The generator of the flood's pool: one seed makes the same pool.
type Rng = ChaCha8Rng;

/// `count` flood datagrams from `seed`, every kind represented: about a
/// fifth random bytes, a fifth steered queries, and a tenth each of the
/// other kinds.
pub fn flood_pool(seed: u64, count: usize) -> Vec<FloodDatagram> {
    let mut rng = Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            // The first datagrams go through every kind once, so that even
            // a tiny pool has them all.
            let pick = if i < 10 { i } else { rng.random_range(0..10) };
            let (kind, bytes) = match pick {
                0 | 1 => random_bytes(&mut rng),
                2 => (FloodKind::Truncated, truncated(&mut rng)),
                3 => (FloodKind::TrailingGarbage, trailing_garbage(&mut rng)),
                4 => (FloodKind::AbsurdCounts, absurd_counts(&mut rng)),
                5 => (FloodKind::PointerLoop, pointer_loop(&mut rng)),
                6 => (FloodKind::Response, response(&mut rng)),
                7 | 8 => (FloodKind::Steered, steered_query(&mut rng)),
                _ => (FloodKind::OtherQuery, other_query(&mut rng)),
            };
            FloodDatagram { kind, bytes }
        })
        .collect()
}

/// Random bytes; their QR bit (when they are long enough to have one)
/// says whether they are a query or a response.
fn random_bytes(rng: &mut Rng) -> (FloodKind, Vec<u8>) {
    let len = rng.random_range(0..=MAX_RANDOM_LEN);
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    let kind = match bytes.get(2) {
        Some(flags) if flags & 0x80 != 0 => FloodKind::RandomResponse,
        _ => FloodKind::RandomBytes,
    };
    (kind, bytes)
}

/// A valid query: mostly the steered name with a random subnet, else one
/// of the other queries.
fn valid_query(rng: &mut Rng) -> Vec<u8> {
    if rng.random_bool(0.6) {
        steered_query(rng)
    } else {
        other_query(rng)
    }
}

/// A valid query cut at a random length (possibly nothing).
fn truncated(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = valid_query(rng);
    let len = rng.random_range(0..bytes.len());
    bytes.truncate(len);
    bytes
}

/// A valid query and 1 to 200 random bytes.
fn trailing_garbage(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = valid_query(rng);
    let mut garbage = vec![0u8; rng.random_range(1..=200)];
    rng.fill(&mut garbage[..]);
    bytes.extend_from_slice(&garbage);
    bytes
}

/// A valid query with one to four of its section counts made absurd.
fn absurd_counts(rng: &mut Rng) -> Vec<u8> {
    const ABSURD: [u16; 5] = [0xffff, 0x8000, 0x1000, 0x0100, 2];
    let mut bytes = valid_query(rng);
    let fields = rng.random_range(1..=4);
    for _ in 0..fields {
        let at = 4 + 2 * rng.random_range(0..4usize);
        let value = if rng.random_bool(0.5) {
            ABSURD[rng.random_range(0..ABSURD.len())]
        } else {
            rng.random_range(2..=u16::MAX)
        };
        bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
    bytes
}

/// A query header and a name whose compression pointers never end well:
/// a pointer to itself, a label and a pointer back to it, two pointers at
/// each other, a pointer into the header, a pointer past the end; in the
/// question, or in the name of an additional record after a valid one.
fn pointer_loop(rng: &mut Rng) -> Vec<u8> {
    // The name's bytes, given the offset where it starts.
    let shapes: [fn(u16, &mut Rng) -> Vec<u8>; 5] = [
        |at, _| pointer(at).to_vec(),
        |at, _| [&[1, b'a'][..], &pointer(at)].concat(),
        |at, _| [pointer(at + 2), pointer(at)].concat(),
        |_, rng| pointer(rng.random_range(0..12)).to_vec(),
        |_, rng| pointer(rng.random_range(0x0200..0x3fff)).to_vec(),
    ];
    let shape = shapes[rng.random_range(0..shapes.len())];
    let id = rng.random::<u16>();
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(&[0x01, 0x00]); // a query, RD
    if rng.random_bool(0.5) {
        // The loop in the question.
        bytes.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        let name = shape(12, rng);
        bytes.extend_from_slice(&name);
        bytes.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    } else {
        // A valid question, then an additional record (an OPT) whose name
        // loops.
        bytes.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
        for label in ["cdn", "meridian", "test"] {
            bytes.push(label.len() as u8);
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.push(0);
        bytes.extend_from_slice(&[0, 1, 0, 1]);
        let at = u16::try_from(bytes.len()).unwrap_or(0);
        let name = shape(at, rng);
        bytes.extend_from_slice(&name);
        // OPT, payload 1232, no extended rcode, version 0, no options.
        bytes.extend_from_slice(&[0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    bytes
}

/// A compression pointer to `offset` (14 bits).
fn pointer(offset: u16) -> [u8; 2] {
    (0xc000 | (offset & 0x3fff)).to_be_bytes()
}

/// A well-formed response: a query with QR set, or a full answer.
fn response(rng: &mut Rng) -> Vec<u8> {
    if rng.random_bool(0.5) {
        let mut bytes = valid_query(rng);
        bytes[2] |= 0x80;
        if rng.random_bool(0.5) {
            bytes[2] |= 0x04; // AA
        }
        return bytes;
    }
    let Ok(name) = Name::from_ascii("cdn.meridian.test.") else {
        return vec![0, 0, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    };
    let mut message = Message::response(rng.random(), OpCode::Query);
    message.metadata.authoritative = true;
    message.add_query(Query::query(name.clone(), RecordType::A));
    let octets: [u8; 4] = rng.random();
    message.add_answer(Record::from_rdata(
        name,
        30,
        RData::A(A::from(Ipv4Addr::from(octets))),
    ));
    message
        .to_vec()
        .unwrap_or_else(|_| vec![0, 0, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// The steered name, A (mostly) or AAAA, with an ECS option for a random
/// subnet: IPv4 from /8 to /32, or IPv6 from /16 to /64, host bits clear.
fn steered_query(rng: &mut Rng) -> Vec<u8> {
    let (address, prefix) = if rng.random_bool(0.8) {
        let prefix: u8 = rng.random_range(8..=32);
        let bits = rng.random::<u32>() & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        (IpAddr::V4(Ipv4Addr::from(bits)), prefix)
    } else {
        let prefix: u8 = rng.random_range(16..=64);
        let bits =
            rng.random::<u128>() & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        (IpAddr::V6(Ipv6Addr::from(bits)), prefix)
    };
    let rtype = if rng.random_bool(0.9) {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    let subnet = ClientSubnet::new(address, prefix, 0);
    query_bytes("cdn.meridian.test.", rtype, Some(subnet), true)
}

/// A valid query that is not for a steered answer: the apex's SOA and NS,
/// a missing name (NXDOMAIN), a missing type (NODATA), a name outside the
/// zone (REFUSED), the nameserver's address; with or without EDNS.
fn other_query(rng: &mut Rng) -> Vec<u8> {
    const QUERIES: [(&str, RecordType); 7] = [
        ("meridian.test.", RecordType::SOA),
        ("meridian.test.", RecordType::NS),
        ("nope.meridian.test.", RecordType::A),
        ("cdn.meridian.test.", RecordType::TXT),
        ("example.com.", RecordType::A),
        ("ns1.meridian.test.", RecordType::A),
        ("cdn.meridian.test.", RecordType::A),
    ];
    let (name, rtype) = QUERIES[rng.random_range(0..QUERIES.len())];
    let edns = rng.random_bool(0.5);
    query_bytes(name, rtype, None, edns)
}

/// The wire bytes of a query for `name` and `rtype`, with an OPT record
/// when `edns` (carrying `subnet` if given).
fn query_bytes(name: &str, rtype: RecordType, subnet: Option<ClientSubnet>, edns: bool) -> Vec<u8> {
    // The ID is replaced each time the datagram is sent.
    let mut message = Message::new(0, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    if let Ok(name) = Name::from_ascii(name) {
        message.add_query(Query::query(name, rtype));
    }
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        if let Some(subnet) = subnet {
            opt.options_mut().insert(EdnsOption::Subnet(subnet));
        }
        message.set_edns(opt);
    }
    // Encoding a query built from valid parts cannot fail; a header alone
    // would still be a datagram worth sending.
    message
        .to_vec()
        .unwrap_or_else(|_| vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
}

/// The short name of a header rcode (its low four bits).
fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        other => format!("RCODE {other}"),
    }
}

/// What one kind of flood datagram got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    /// Datagrams of this kind sent.
    pub sent: u64,
    /// Replies to them, by header rcode.
    pub replies: BTreeMap<String, u64>,
}

impl KindCounts {
    /// Replies of every rcode.
    pub fn replied(&self) -> u64 {
        self.replies.values().sum()
    }
}

/// What the flood sent and got back.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FloodResult {
    /// How long it sent for, in seconds.
    pub seconds: f64,
    /// Datagrams sent.
    pub sent: u64,
    /// Sends the kernel refused (a full buffer, or nobody listening).
    pub send_errors: u64,
    /// Per kind, what was sent and what came back.
    pub kinds: BTreeMap<FloodKind, KindCounts>,
    /// Replies to datagrams with QR set: must be none.
    pub replies_to_responses: u64,
    /// Replies shorter than a header, without QR, or with an ID no flood
    /// datagram had.
    pub odd_replies: u64,
    /// Replies the kernel dropped at the flood's own sockets (their
    /// receive buffers full), from `/proc/net/udp`; `None` if unknown.
    pub replies_dropped: Option<u64>,
    /// GeoDNS's CPU time (user and system) while the flood sent, in
    /// seconds; `None` if `/proc` could not say.
    pub server_cpu_seconds: Option<f64>,
}

impl FloodResult {
    /// Datagrams sent per second.
    pub fn sent_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// All replies, by rcode.
    pub fn replies_by_rcode(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for counts in self.kinds.values() {
            for (rcode, n) in &counts.replies {
                *all.entry(rcode.clone()).or_default() += n;
            }
        }
        all
    }

    /// All replies.
    pub fn replied(&self) -> u64 {
        self.kinds.values().map(KindCounts::replied).sum()
    }
}

/// What the flood thread needs.
struct FloodSpec {
    server: SocketAddr,
    sources: Vec<SocketAddr>,
    pool: Vec<FloodDatagram>,
    deadline: Instant,
    rate: Option<u64>,
    /// GeoDNS's process, whose CPU time is read as the flood starts and
    /// stops.
    server_pid: u32,
}

/// The flood's sockets and counters while it runs.
struct Flood {
    sockets: Vec<UdpSocket>,
    result: FloodResult,
    buffer: Vec<u8>,
}

impl Flood {
    /// Reads every reply waiting on socket `index`.
    fn drain(&mut self, index: usize) {
        loop {
            let len = match self.sockets[index].recv(&mut self.buffer) {
                Ok(len) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // An ICMP error from an earlier send: nothing to read.
                Err(_) => return,
            };
            self.count_reply(len);
        }
    }

    /// Counts the reply in the first `len` bytes of the buffer.
    fn count_reply(&mut self, len: usize) {
        let reply = &self.buffer[..len];
        if reply.len() < 12 || reply[2] & 0x80 == 0 {
            self.result.odd_replies += 1;
            return;
        }
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let Some(kind) = FloodKind::from_code(id & 0x0f) else {
            self.result.odd_replies += 1;
            return;
        };
        if kind.is_response() {
            self.result.replies_to_responses += 1;
        }
        let rcode = rcode_name(reply[3] & 0x0f);
        let counts = self.result.kinds.entry(kind).or_default();
        *counts.replies.entry(rcode).or_default() += 1;
    }
}

/// Runs the flood on this thread, pinned to the load core, until
/// `spec.deadline`, then reads replies for [`DRAIN`] more.
fn flood(mut spec: FloodSpec, cores: Cores) -> Result<FloodResult, BenchError> {
    cores.pin_current_thread_to_load();
    let io = |action| move |source| BenchError::Io { action, source };
    let sockets = spec
        .sources
        .iter()
        .map(|&source| {
            let socket = UdpSocket::bind(source)?;
            socket.connect(spec.server)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io("set up the flood's sockets"))?;
    let mut flood = Flood {
        sockets,
        result: FloodResult::default(),
        buffer: vec![0u8; 65_536],
    };
    for kind in FloodKind::ALL {
        flood.result.kinds.insert(kind, KindCounts::default());
    }
    let mut sent_by_kind = [0u64; FloodKind::ALL.len()];
    let cpu_before = cpu::process_tree_time(spec.server_pid);
    let started = Instant::now();
    let mut next = 0;
    let mut sequence: u16 = 0;
    loop {
        for index in 0..flood.sockets.len() {
            if let Some(rate) = spec.rate {
                // Ahead of the rate: wait (reading replies) until the
                // next burst is due.
                while flood.result.sent as f64 >= started.elapsed().as_secs_f64() * rate as f64
                    && Instant::now() < spec.deadline
                {
                    flood.drain(index);
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            for _ in 0..BURST {
                let pool_len = spec.pool.len();
                let datagram = &mut spec.pool[next];
                next = (next + 1) % pool_len;
                sequence = sequence.wrapping_add(1);
                if datagram.bytes.len() >= 2 {
                    let id = (sequence << 4) | datagram.kind.code();
                    datagram.bytes[..2].copy_from_slice(&id.to_be_bytes());
                }
                match flood.sockets[index].send(&datagram.bytes) {
                    Ok(_) => {
                        flood.result.sent += 1;
                        sent_by_kind[usize::from(datagram.kind.code())] += 1;
                    }
                    Err(_) => {
                        flood.result.send_errors += 1;
                        break;
                    }
                }
            }
            flood.drain(index);
        }
        if Instant::now() >= spec.deadline {
            break;
        }
    }
    flood.result.seconds = started.elapsed().as_secs_f64();
    flood.result.server_cpu_seconds = cpu_before
        .zip(cpu::process_tree_time(spec.server_pid))
        .map(|(before, after)| after.since(&before).total().as_secs_f64());
    let drained = Instant::now() + DRAIN;
    while Instant::now() < drained {
        for index in 0..flood.sockets.len() {
            flood.drain(index);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (kind, sent) in FloodKind::ALL.iter().zip(sent_by_kind) {
        flood.result.kinds.entry(*kind).or_default().sent = sent;
    }
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    flood.result.replies_dropped = flood
        .sockets
        .iter()
        .map(|socket| parse_udp_drops(&table, socket.local_addr().ok()?))
        .sum();
    Ok(flood.result)
}

/// Datagrams the kernel dropped at the UDP socket bound to `local`
/// because its receive buffer was full, as `/proc/net/udp` counts them
/// (its last column); `None` when it has no such socket (not Linux).
fn udp_drops(local: SocketAddr) -> Option<u64> {
    parse_udp_drops(&std::fs::read_to_string("/proc/net/udp").ok()?, local)
}

/// [`udp_drops`] in the text of `/proc/net/udp`. Its local addresses are
/// the IPv4 address's bytes in memory order, printed as a native-endian
/// hex number, then the port in hex.
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

/// The probe query for `client` with `id`.
fn probe_query(client: &Client, id: u16) -> Result<Vec<u8>, BenchError> {
    let mut query = dns::ecs_query(&client.subnet)?;
    query[..2].copy_from_slice(&id.to_be_bytes());
    Ok(query)
}

/// Checks a probe's reply: it parses, has `id`, is an authoritative
/// NOERROR response whose A records are exactly `client`'s expected edge,
/// and echoes the client's ECS subnet with a scope. Returns the scope, or
/// what is wrong.
pub fn check_reply(reply: &[u8], id: u16, client: &Client) -> Result<u8, String> {
    let message = Message::from_vec(reply).map_err(|e| format!("does not parse: {e}"))?;
    let meta = &message.metadata;
    if meta.id != id {
        return Err(format!("ID {} for query {id}", meta.id));
    }
    if meta.message_type != MessageType::Response {
        return Err("QR is not set".to_owned());
    }
    if !meta.authoritative {
        return Err("AA is not set".to_owned());
    }
    if meta.response_code != ResponseCode::NoError {
        return Err(format!("rcode {}", meta.response_code));
    }
    if meta.truncation {
        return Err("truncated".to_owned());
    }
    let addresses: Vec<IpAddr> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    if addresses != [client.expected] {
        return Err(format!(
            "{} got {addresses:?}, not {} ({})",
            client.country, client.expected, client.region
        ));
    }
    let asked: ClientSubnet = client
        .subnet
        .parse()
        .map_err(|e| format!("the probe's subnet {}: {e}", client.subnet))?;
    let echoed = message
        .edns
        .as_ref()
        .and_then(|edns| match edns.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
            _ => None,
        })
        .ok_or("no ECS option in the reply")?;
    if echoed.addr() != asked.addr() || echoed.source_prefix() != asked.source_prefix() {
        return Err(format!(
            "ECS echoed as {}/{}, asked {}",
            echoed.addr(),
            echoed.source_prefix(),
            client.subnet
        ));
    }
    Ok(echoed.scope_prefix())
}

/// What the UDP probe saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UdpProbes {
    /// Probes sent.
    pub sent: u64,
    /// Answered correctly within the timeout.
    pub correct: u64,
    /// Answered wrongly (or a reply no probe asked for).
    pub wrong: u64,
    /// Not answered within the timeout.
    pub lost: u64,
    /// Replies that came after their probe was counted lost.
    pub late: u64,
    /// Latency of the correct answers.
    pub latency: LatencySummary,
    /// Per country, the ECS scopes the correct answers carried.
    pub scopes: BTreeMap<String, BTreeSet<u8>>,
    /// The first few wrong answers, described.
    pub wrong_samples: Vec<String>,
}

impl UdpProbes {
    /// The share of probes answered correctly.
    pub fn correct_fraction(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.correct as f64 / self.sent as f64
        }
    }
}

/// What the TCP probe saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TcpProbes {
    /// Probes made (a new connection each).
    pub sent: u64,
    /// Answered correctly within the timeout.
    pub correct: u64,
    /// Answered wrongly.
    pub wrong: u64,
    /// No answer: connection refused or closed, or the timeout.
    pub failed: u64,
    /// Latency of the correct answers, connecting included.
    pub latency: LatencySummary,
    /// The first few wrong answers and failures, described.
    pub samples: Vec<String>,
}

/// What the probes need.
#[derive(Clone)]
struct ProbeSpec {
    server: SocketAddr,
    clients: Vec<Client>,
    interval: Duration,
    timeout: Duration,
    deadline: Instant,
    /// The ID before the first probe's.
    first_id: u16,
}

/// Sends a UDP probe every `spec.interval` until the deadline, for the
/// clients in turn, and checks every reply; then waits out the timeout of
/// the last ones.
async fn probe_udp(spec: ProbeSpec) -> Result<UdpProbes, BenchError> {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from((PROBE_HOST, 0)))
        .await
        .map_err(|source| BenchError::Io {
            action: "bind the UDP probe's socket",
            source,
        })?;
    socket
        .connect(spec.server)
        .await
        .map_err(|source| BenchError::Io {
            action: "connect the UDP probe's socket",
            source,
        })?;
    let mut probes = UdpProbes::default();
    let mut latencies = Vec::new();
    // In flight: ID → (sent at, client).
    let mut in_flight: HashMap<u16, (Instant, usize)> = HashMap::new();
    let mut expired: BTreeSet<u16> = BTreeSet::new();
    let mut id: u16 = spec.first_id;
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer = vec![0u8; 4096];
    let mut sending = true;
    loop {
        let now = Instant::now();
        in_flight.retain(|&id, (sent, _)| {
            let alive = now.duration_since(*sent) < spec.timeout;
            if !alive {
                probes.lost += 1;
                expired.insert(id);
            }
            alive
        });
        if now >= spec.deadline {
            sending = false;
        }
        if !sending && in_flight.is_empty() {
            break;
        }
        let wait = if sending {
            spec.interval
        } else {
            Duration::from_millis(10)
        };
        tokio::select! {
            _ = ticker.tick(), if sending => {
                id = id.wrapping_add(1);
                let index = (probes.sent % spec.clients.len() as u64) as usize;
                let query = probe_query(&spec.clients[index], id)?;
                // A send the kernel refuses is a probe that got no answer.
                let _ = socket.send(&query).await;
                probes.sent += 1;
                in_flight.insert(id, (Instant::now(), index));
            }
            received = socket.recv(&mut buffer) => {
                let Ok(len) = received else { continue };
                let reply = &buffer[..len];
                let reply_id = reply.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                match reply_id.and_then(|id| in_flight.remove(&id).map(|f| (id, f))) {
                    Some((id, (sent, index))) => {
                        let client = &spec.clients[index];
                        match check_reply(reply, id, client) {
                            Ok(scope) => {
                                probes.correct += 1;
                                latencies.push(sent.elapsed());
                                probes.scopes.entry(client.country.clone()).or_default().insert(scope);
                            }
                            Err(e) => {
                                probes.wrong += 1;
                                if probes.wrong_samples.len() < SAMPLES {
                                    probes.wrong_samples.push(format!("UDP: {e}"));
                                }
                            }
                        }
                    }
                    None if reply_id.is_some_and(|id| expired.contains(&id)) => probes.late += 1,
                    None => {
                        probes.wrong += 1;
                        if probes.wrong_samples.len() < SAMPLES {
                            probes.wrong_samples.push(format!(
                                "UDP: a reply with ID {reply_id:?}, which no probe in flight had"
                            ));
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    probes.latency = LatencySummary::from_samples(latencies);
    Ok(probes)
}

/// One query over a new TCP connection from [`PROBE_HOST`]: the reply's
/// bytes, or why there are none.
async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::from((PROBE_HOST, 0)))
        .map_err(|e| format!("bind: {e}"))?;
    let mut stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut length = [0u8; 2];
    stream
        .read_exact(&mut length)
        .await
        .map_err(|e| format!("read the length: {e}"))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| format!("read the reply: {e}"))?;
    Ok(reply)
}

/// One query over TCP for `client`, checked; the scope or what went wrong
/// (`Err((true, ..))` for a wrong answer, `Err((false, ..))` for none).
async fn tcp_probe(
    server: SocketAddr,
    client: &Client,
    id: u16,
    timeout: Duration,
) -> Result<u8, (bool, String)> {
    let query = probe_query(client, id).map_err(|e| (false, e.to_string()))?;
    let reply = tokio::time::timeout(timeout, tcp_exchange(server, &query))
        .await
        .map_err(|_| (false, format!("no answer within {timeout:?}")))?
        .map_err(|e| (false, e))?;
    check_reply(&reply, id, client).map_err(|e| (true, e))
}

/// Makes a TCP probe every `interval` until the deadline, for the clients
/// in turn.
async fn probe_tcp(spec: ProbeSpec, interval: Duration) -> TcpProbes {
    let mut probes = TcpProbes::default();
    let mut latencies = Vec::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut id: u16 = spec.first_id;
    loop {
        ticker.tick().await;
        if Instant::now() >= spec.deadline {
            break;
        }
        id = id.wrapping_add(1);
        let client = &spec.clients[(probes.sent % spec.clients.len() as u64) as usize];
        let started = Instant::now();
        probes.sent += 1;
        match tcp_probe(spec.server, client, id, spec.timeout).await {
            Ok(_) => {
                probes.correct += 1;
                latencies.push(started.elapsed());
            }
            Err((wrong, e)) => {
                if wrong {
                    probes.wrong += 1;
                } else {
                    probes.failed += 1;
                }
                if probes.samples.len() < SAMPLES {
                    probes.samples.push(format!("TCP: {e}"));
                }
            }
        }
    }
    probes.latency = LatencySummary::from_samples(latencies);
    probes
}

/// GeoDNS after the flood.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AfterFlood {
    /// Whether the process was still running.
    pub alive: bool,
    /// How it exited, if it did.
    pub exit: Option<String>,
    /// How long after the flood every client got a correct answer over
    /// UDP and over TCP, in ms; `None` if not within the check's time.
    pub answered_ms: Option<f64>,
    /// The last thing that went wrong, when it did not answer.
    pub error: Option<String>,
}

impl AfterFlood {
    /// Alive, and answering correctly.
    pub fn ok(&self) -> bool {
        self.alive && self.answered_ms.is_some()
    }
}

/// Checks that GeoDNS runs and answers every client correctly over UDP
/// and TCP, trying for [`AFTER_FLOOD_TIMEOUT`].
async fn after_flood(
    process: &mut MeridianProcess,
    server: SocketAddr,
    clients: &[Client],
) -> AfterFlood {
    let started = Instant::now();
    let mut after = AfterFlood::default();
    let socket = match tokio::net::UdpSocket::bind(SocketAddr::from((PROBE_HOST, 0))).await {
        Ok(socket) => socket,
        Err(e) => {
            after.alive = !process.exited();
            after.error = Some(format!("cannot bind a UDP socket: {e}"));
            return after;
        }
    };
    // IDs the probes did not use (they count up from 0 and 0x8000).
    let mut id: u16 = 0x4000;
    let mut buffer = vec![0u8; 4096];
    loop {
        let mut problem = None;
        for client in clients {
            id = id.wrapping_add(1);
            let udp = async {
                let query = probe_query(client, id).map_err(|e| e.to_string())?;
                socket
                    .send_to(&query, server)
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    let (len, _) = socket
                        .recv_from(&mut buffer)
                        .await
                        .map_err(|e| e.to_string())?;
                    // A late reply to an earlier try: read on.
                    if buffer[..len].get(..2) == Some(&id.to_be_bytes()[..]) {
                        return check_reply(&buffer[..len], id, client).map(|_| ());
                    }
                }
            };
            let udp = tokio::time::timeout(Duration::from_secs(1), udp)
                .await
                .unwrap_or_else(|_| Err("no answer within 1 s".to_owned()));
            if let Err(e) = udp {
                problem = Some(format!("UDP, {}: {e}", client.country));
                break;
            }
            if let Err((_, e)) = tcp_probe(server, client, id, Duration::from_secs(1)).await {
                problem = Some(format!("TCP, {}: {e}", client.country));
                break;
            }
        }
        match problem {
            None => {
                after.answered_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                after.error = None;
                break;
            }
            Some(e) => after.error = Some(e),
        }
        if process.exited() || started.elapsed() >= AFTER_FLOOD_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    after.alive = !process.exited();
    if !after.alive {
        after.exit = Some("exited during or after the flood".to_owned());
    }
    after
}

/// What one server's turn under the flood measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerFlood {
    /// The flood.
    pub flood: FloodResult,
    /// The UDP probes.
    pub udp: UdpProbes,
    /// The TCP probes.
    pub tcp: TcpProbes,
    /// Datagrams the kernel dropped at the server's UDP socket during the
    /// flood (its receive buffer full); `None` if unknown.
    pub server_drops: Option<u64>,
    /// The server after the flood.
    pub after: AfterFlood,
}

impl ServerFlood {
    /// Wrong answers over both protocols.
    pub fn wrong(&self) -> u64 {
        self.udp.wrong + self.tcp.wrong
    }

    /// Whether enough UDP probes were answered correctly.
    fn udp_met(&self) -> bool {
        self.udp.sent > 0 && self.udp.correct_fraction() >= TARGET_UDP_FRACTION
    }

    /// Whether every TCP probe was answered correctly.
    fn tcp_met(&self) -> bool {
        self.tcp.sent > 0 && self.tcp.correct == self.tcp.sent
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct DnsFloodReport {
    /// Always `dns-flood`.
    pub scenario: &'static str,
    /// The binary measured.
    pub meridian: PathBuf,
    /// The options it ran with.
    pub options: DnsFloodOptions,
    /// The seed the flood's pool was made from.
    pub seed: u64,
    /// Which cores ran what.
    pub cores: String,
    /// The probes' simulated clients.
    pub clients: Vec<Client>,
    /// Meridian's GeoDNS under the flood (its fields sit at the top level
    /// of the JSON, as they did before there was a comparison).
    #[serde(flatten)]
    pub geodns: ServerFlood,
    /// gdnsd under the same flood, with `--compare`.
    pub gdnsd: Option<ServerFlood>,
    /// Meridian's share of UDP probes answered correctly over gdnsd's:
    /// information, not a target.
    pub udp_ratio: Option<f64>,
    /// Peers that could not run, and why.
    pub skipped: Vec<Skipped>,
    /// The targets missed.
    pub failures: Vec<String>,
    /// Whether every target was met.
    pub passed: bool,
}

/// What Meridian's run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The flood's seed.
    pub seed: u64,
    /// The flood.
    pub flood: FloodResult,
    /// The UDP probes.
    pub udp: UdpProbes,
    /// The TCP probes.
    pub tcp: TcpProbes,
    /// Datagrams dropped at GeoDNS's socket during the flood.
    pub server_drops: Option<u64>,
    /// GeoDNS after the flood.
    pub after: AfterFlood,
}

/// What a comparison with gdnsd gave: its turn, if it had one, and the
/// peers skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compared {
    /// gdnsd's turn under the same flood.
    pub gdnsd: Option<ServerFlood>,
    /// Why a peer did not run.
    pub skipped: Vec<Skipped>,
}

/// Meridian's share of UDP probes answered correctly over gdnsd's; `None`
/// when either sent none or gdnsd answered none correctly.
pub fn udp_ratio(ours: &UdpProbes, theirs: &UdpProbes) -> Option<f64> {
    (ours.sent > 0 && theirs.sent > 0 && theirs.correct > 0)
        .then(|| ours.correct_fraction() / theirs.correct_fraction())
}

/// Turns what was measured into the report, with its verdicts. Only
/// Meridian's numbers have targets; gdnsd's are for comparison.
pub fn summarize(
    meridian: &Path,
    options: &DnsFloodOptions,
    cores: String,
    clients: Vec<Client>,
    measured: Measured,
    compared: Compared,
) -> DnsFloodReport {
    let geodns = ServerFlood {
        flood: measured.flood,
        udp: measured.udp,
        tcp: measured.tcp,
        server_drops: measured.server_drops,
        after: measured.after,
    };
    let udp_ratio = compared
        .gdnsd
        .as_ref()
        .and_then(|theirs| udp_ratio(&geodns.udp, &theirs.udp));
    let mut report = DnsFloodReport {
        scenario: "dns-flood",
        meridian: meridian.to_path_buf(),
        options: options.clone(),
        seed: measured.seed,
        cores,
        clients,
        geodns,
        gdnsd: compared.gdnsd,
        udp_ratio,
        skipped: compared.skipped,
        failures: Vec::new(),
        passed: false,
    };
    let ours = &report.geodns;
    if ours.wrong() > 0 {
        let mut samples = ours.udp.wrong_samples.clone();
        samples.extend(
            ours.tcp
                .samples
                .iter()
                .filter(|s| !s.contains("no answer"))
                .cloned(),
        );
        report.failures.push(format!(
            "{} wrong answers to probes ({} UDP, {} TCP; target: none): {samples:?}",
            ours.wrong(),
            ours.udp.wrong,
            ours.tcp.wrong
        ));
    }
    if ours.flood.replies_to_responses > 0 {
        report.failures.push(format!(
            "{} responses (QR set) were answered (target: none, ever)",
            ours.flood.replies_to_responses
        ));
    }
    if !ours.after.ok() {
        report
            .failures
            .push(match (&ours.after.alive, &ours.after.error) {
                (false, _) => "GeoDNS did not survive the flood".to_owned(),
                (true, error) => format!(
                    "GeoDNS did not answer correctly after the flood: {}",
                    error.as_deref().unwrap_or("no answer")
                ),
            });
    }
    if !ours.udp_met() {
        report.failures.push(format!(
            "{} of {} UDP probes ({:.2} %) were answered correctly (target ≥ {:.0} %; {} lost)",
            ours.udp.correct,
            ours.udp.sent,
            ours.udp.correct_fraction() * 100.0,
            TARGET_UDP_FRACTION * 100.0,
            ours.udp.lost
        ));
    }
    if !ours.tcp_met() {
        report.failures.push(format!(
            "{} of {} TCP probes were answered correctly (target: all): {:?}",
            ours.tcp.correct, ours.tcp.sent, ours.tcp.samples
        ));
    }
    report.passed = report.failures.is_empty();
    report
}

/// Runs the scenario against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &DnsFloodOptions) -> Result<DnsFloodReport, BenchError> {
    if options.countries.is_empty() || options.duration_ms == 0 {
        return Err(BenchError::InvalidOption {
            name: "--countries/--duration",
            reason: "need at least one country and a duration".to_owned(),
        });
    }
    if !(1..=MAX_FLOOD_SOCKETS).contains(&options.sockets) {
        return Err(BenchError::InvalidOption {
            name: "--sockets",
            reason: format!("must be 1 to {MAX_FLOOD_SOCKETS}, got {}", options.sockets),
        });
    }
    if options.probe_interval_ms == 0 || options.tcp_probe_interval_ms == 0 {
        return Err(BenchError::InvalidOption {
            name: "--probe-interval-ms/--tcp-probe-interval-ms",
            reason: "must be at least 1 ms".to_owned(),
        });
    }
    let probes_per_second = 1000 / options.probe_interval_ms + 1;
    if let Some(limit) = options.rate_limit
        && u64::from(limit) < 2 * probes_per_second
    {
        return Err(BenchError::InvalidOption {
            name: "--rate-limit",
            reason: format!(
                "{limit} responses/s would limit the probes themselves ({probes_per_second}/s \
                 from their network): give at least twice that"
            ),
        });
    }
    let seed = options.seed.unwrap_or_else(clock_seed);
    let cores = Cores::choose();
    let topology = ADDRESSES.topology()?;
    let db = dns::embedded_database()?;
    let clients = dns::clients(&options.countries, &db, &topology)?;
    let health = dns::serve_health(&topology).await?;
    let mut compared = Compared::default();
    let gdnsd = if options.compare {
        let found = find_program("gdnsd");
        if found.is_none() {
            compared
                .skipped
                .push(Skipped::not_installed("gdnsd", "gdnsd", "gdnsd"));
        }
        found
    } else {
        None
    };
    for skip in &compared.skipped {
        eprintln!("{}: {}", skip.peer, skip.reason);
    }
    let turn = Turn {
        options,
        seed,
        cores,
        clients: &clients,
    };

    // Meridian's turn; it is stopped before gdnsd's, so that the two never
    // share the core.
    let server = ADDRESSES.geodns_listen();
    let launch = dns::GeoDnsLaunch {
        meridian,
        config: topology_text(options.rate_limit),
        listen: server,
        name: "dns-flood-meridian",
        from: SocketAddr::from((PROBE_HOST, 0)),
        timeout: Duration::from_millis(options.ready_timeout_ms),
    };
    let (mut process, workdir) = dns::start_meridian(launch, &cores, &clients).await?;
    let ours = flood_turn(&turn, "meridian", &mut process, server).await?;
    drop(process);
    drop(workdir);

    if let Some(gdnsd) = gdnsd {
        let server = ADDRESSES.gdnsd_listen();
        let launch = dns::GdnsdLaunch {
            gdnsd: &gdnsd,
            topology: &topology,
            db: &db,
            listen: server,
            name: "dns-flood-gdnsd",
            from: SocketAddr::from((PROBE_HOST, 0)),
            timeout: Duration::from_millis(options.ready_timeout_ms),
        };
        // Only the answers Meridian gives will do: the probes check gdnsd
        // against the same addresses, so its config must be equivalent.
        match dns::start_gdnsd(launch, &cores, &clients, |c, a| a == c.expected).await {
            Ok((mut process, _workdir)) => {
                compared.gdnsd = Some(flood_turn(&turn, "gdnsd", &mut process, server).await?);
            }
            Err(e) => compared.skipped.push(Skipped {
                peer: "gdnsd".to_owned(),
                reason: format!("not compared: {e}"),
            }),
        }
    }
    for task in health {
        task.abort();
    }
    Ok(summarize(
        meridian,
        options,
        cores.describe(),
        clients,
        Measured {
            seed,
            flood: ours.flood,
            udp: ours.udp,
            tcp: ours.tcp,
            server_drops: ours.server_drops,
            after: ours.after,
        },
        compared,
    ))
}

/// What every server's turn shares: the same flood, the same probes.
struct Turn<'a> {
    options: &'a DnsFloodOptions,
    seed: u64,
    cores: Cores,
    clients: &'a [Client],
}

/// One server's turn: the pool made from the turn's seed, sent at the
/// turn's rate for its duration at `server` (the process `process`,
/// already answering), while the probes ask it; then the check after the
/// flood. `name` names the server in the progress lines.
async fn flood_turn(
    turn: &Turn<'_>,
    name: &str,
    process: &mut MeridianProcess,
    server: SocketAddr,
) -> Result<ServerFlood, BenchError> {
    let options = turn.options;
    let seed = turn.seed;
    let duration = Duration::from_millis(options.duration_ms);
    let timeout = Duration::from_millis(options.probe_timeout_ms);
    let mut progress = Progress::new(duration + timeout);
    progress.println(format!(
        "dns-flood, {name}: seed {seed} (--seed {seed} replays the same datagrams)"
    ));
    let deadline = Instant::now() + duration;
    let sources = (0..options.sockets)
        .map(|i| {
            let host = FLOOD_FIRST_HOST + u8::try_from(i).unwrap_or(0);
            SocketAddr::from(([127, 0, ADDRESSES.geodns, host], 0))
        })
        .collect();
    let spec = FloodSpec {
        server,
        sources,
        pool: flood_pool(seed, POOL_SIZE),
        deadline,
        rate: options.rate,
        server_pid: process.pid(),
    };
    let probes = ProbeSpec {
        server,
        clients: turn.clients.to_vec(),
        interval: Duration::from_millis(options.probe_interval_ms),
        timeout,
        deadline,
        first_id: 0,
    };
    let tcp_interval = Duration::from_millis(options.tcp_probe_interval_ms);
    let drops_before = udp_drops(server);
    let cores = turn.cores;
    let flooding = tokio::task::spawn_blocking(move || flood(spec, cores));
    let (flooded, udp, tcp) = progress
        .step(
            format!("flooding {name} for {:.1} s", duration.as_secs_f64()),
            duration + timeout,
            async {
                tokio::join!(
                    flooding,
                    probe_udp(probes.clone()),
                    probe_tcp(
                        ProbeSpec {
                            first_id: 0x8000,
                            ..probes.clone()
                        },
                        tcp_interval
                    )
                )
            },
        )
        .await;
    let drops_after = udp_drops(server);
    let flood = flooded.map_err(|e| BenchError::InvalidOption {
        name: "the flood",
        reason: e.to_string(),
    })??;
    let udp = udp?;
    drop(progress);
    let after = after_flood(process, server, turn.clients).await;
    if !after.ok() {
        process.replay_output();
    }
    Ok(ServerFlood {
        flood,
        udp,
        tcp,
        server_drops: drops_before
            .zip(drops_after)
            .map(|(b, a)| a.saturating_sub(b)),
        after,
    })
}

/// The topology GeoDNS runs with: the `dns` scenario's on this
/// scenario's addresses, and with `rate_limit` (responses per second per
/// client network), `[geodns.rate_limit]` at that rate.
fn topology_text(rate_limit: Option<u32>) -> String {
    let mut text = ADDRESSES.topology_text();
    if let Some(rate) = rate_limit {
        text.push_str(&format!(
            "\n[geodns.rate_limit]\nresponses_per_second = {rate}\n"
        ));
    }
    text
}

/// A seed nobody chose: the clock's nanoseconds and the process id.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// "FORMERR 10, NOERROR 5", largest first.
fn describe_rcodes(replies: &BTreeMap<String, u64>) -> String {
    let mut sorted: Vec<(&String, &u64)> = replies.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(rcode, n)| format!("{rcode} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The rows of one server's turn. `server` names it inside the rows
/// ("GeoDNS", "gdnsd"), `prefix` starts every metric, and with `checked`
/// the rows carry the scenario's targets (Meridian's turn); without, they
/// are information (a peer's turn).
fn turn_rows(
    turn: &ServerFlood,
    clients: &[Client],
    server: &str,
    prefix: &str,
    checked: bool,
) -> Vec<Row> {
    let row = |metric: &str, value: String, target: String, met: bool| {
        let metric = format!("{prefix}{metric}");
        if checked {
            Row::checked(metric, value, target, met)
        } else {
            Row::info(metric, value)
        }
    };
    let info = |metric: &str, value: String| Row::info(format!("{prefix}{metric}"), value);
    let flood = &turn.flood;
    let mut rows = vec![info(
        "flood sent",
        format!(
            "{} datagrams in {:.1} s: {:.0}/s ({} sends refused)",
            flood.sent,
            flood.seconds,
            flood.sent_per_second(),
            flood.send_errors
        ),
    )];
    let replied = flood.replied();
    rows.push(info(
        "flood replies",
        format!(
            "{replied} ({:.1} %): {}; no reply {}",
            percent(replied, flood.sent),
            describe_rcodes(&flood.replies_by_rcode()),
            flood.sent.saturating_sub(replied)
        ),
    ));
    let unknown = || "unknown".to_owned();
    rows.push(info(
        "dropped by the kernel, full buffers",
        format!(
            "at {server}'s socket {}; replies at the flood's sockets {}",
            turn.server_drops.map_or_else(unknown, |d| format!(
                "{d} ({:.1} % of the flood)",
                percent(d, flood.sent)
            )),
            flood
                .replies_dropped
                .map_or_else(unknown, |d| d.to_string())
        ),
    ));
    for (kind, counts) in &flood.kinds {
        rows.push(info(
            &format!("  {}", kind.label()),
            format!(
                "{} sent; {}",
                counts.sent,
                describe_replies(&counts.replies)
            ),
        ));
    }
    let responses: u64 = flood
        .kinds
        .iter()
        .filter(|(k, _)| k.is_response())
        .map(|(_, c)| c.sent)
        .sum();
    rows.push(row(
        "responses answered",
        format!("{} of {responses}", flood.replies_to_responses),
        "0".to_owned(),
        flood.replies_to_responses == 0,
    ));
    if flood.odd_replies > 0 {
        rows.push(info("odd replies", flood.odd_replies.to_string()));
    }
    let udp = &turn.udp;
    rows.push(row(
        "UDP probes answered correctly",
        format!(
            "{} of {} ({:.2} %); {} lost, {} of them late",
            udp.correct,
            udp.sent,
            udp.correct_fraction() * 100.0,
            udp.lost,
            udp.late
        ),
        format!("≥ {:.0} %", TARGET_UDP_FRACTION * 100.0),
        turn.udp_met(),
    ));
    rows.push(info(
        "UDP probe latency",
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            udp.latency.p50_ms, udp.latency.p99_ms, udp.latency.max_ms
        ),
    ));
    let scopes: Vec<String> = clients
        .iter()
        .map(|c| {
            let seen = udp
                .scopes
                .get(&c.country)
                .map(|s| {
                    s.iter()
                        .map(|p| format!("/{p}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| "-".to_owned());
            format!(
                "{} via {} → {} scope {seen}",
                c.country, c.subnet, c.expected
            )
        })
        .collect();
    rows.push(info("probe answers", scopes.join("; ")));
    let tcp = &turn.tcp;
    rows.push(row(
        "TCP probes answered correctly",
        format!(
            "{} of {}; p50 {:.2} ms, max {:.2} ms",
            tcp.correct, tcp.sent, tcp.latency.p50_ms, tcp.latency.max_ms
        ),
        "all".to_owned(),
        turn.tcp_met(),
    ));
    rows.push(row(
        "wrong answers (UDP and TCP)",
        turn.wrong().to_string(),
        "0".to_owned(),
        turn.wrong() == 0,
    ));
    // "GeoDNS CPU ...", but "gdnsd: CPU ...", not "gdnsd: gdnsd CPU ...".
    let named = |what: &str| {
        if prefix.is_empty() {
            format!("{server} {what}")
        } else {
            what.to_owned()
        }
    };
    rows.push(info(
        &named("CPU during the flood"),
        flood.server_cpu_seconds.map_or("unknown".to_owned(), |s| {
            format!(
                "{s:.2} s in {:.1} s ({:.0} % of its core)",
                flood.seconds,
                s * 100.0 / flood.seconds.max(f64::EPSILON)
            )
        }),
    ));
    let after = &turn.after;
    let state = match (after.alive, after.answered_ms) {
        (true, Some(ms)) => format!("running; UDP and TCP answered correctly after {ms:.0} ms"),
        (true, None) => format!(
            "running, but not answering correctly: {}",
            after.error.as_deref().unwrap_or("no answer")
        ),
        (false, _) => after.exit.clone().unwrap_or_else(|| "exited".to_owned()),
    };
    rows.push(row(
        &named("after the flood"),
        state,
        "alive and answering".to_owned(),
        after.ok(),
    ));
    rows
}

/// A kind's replies: "FORMERR 10, NOERROR 5", or "no replies".
fn describe_replies(replies: &BTreeMap<String, u64>) -> String {
    if replies.is_empty() {
        "no replies".to_owned()
    } else {
        describe_rcodes(replies)
    }
}

/// How far apart (in percentage points of a kind's replies) two servers'
/// shares of an rcode must be to count as answering that kind differently.
const SHARE_DIFFERENCE: f64 = 10.0;

/// Each rcode's share of `replies`, in percent.
fn rcode_shares(replies: &BTreeMap<String, u64>) -> BTreeMap<&str, f64> {
    let total: u64 = replies.values().sum();
    replies
        .iter()
        .map(|(rcode, &n)| (rcode.as_str(), percent(n, total)))
        .collect()
}

/// "FORMERR 94 %, NOERROR 6 %" (largest first), or "no reply".
fn describe_shares(replies: &BTreeMap<String, u64>) -> String {
    if replies.is_empty() {
        return "no reply".to_owned();
    }
    let mut shares: Vec<(&str, f64)> = rcode_shares(replies).into_iter().collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    shares
        .iter()
        .map(|(rcode, share)| format!("{rcode} {share:.0} %"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kinds of datagram the two servers answered differently, one
/// description each: one replied and the other never did, or an rcode's
/// share of the kind's replies differs by [`SHARE_DIFFERENCE`] points or
/// more. Shares of replies, not counts: the counts differ with how much
/// of the flood each server could take in.
pub fn kinds_answered_differently(ours: &FloodResult, theirs: &FloodResult) -> Vec<String> {
    let empty = BTreeMap::new();
    let replies = |flood: &'_ FloodResult, kind| {
        flood
            .kinds
            .get(&kind)
            .map_or(&empty, |c: &KindCounts| &c.replies)
            .clone()
    };
    FloodKind::ALL
        .iter()
        .filter_map(|&kind| {
            let (a, b) = (replies(ours, kind), replies(theirs, kind));
            let (sa, sb) = (rcode_shares(&a), rcode_shares(&b));
            let rcodes: BTreeSet<&str> = sa.keys().chain(sb.keys()).copied().collect();
            let differ = a.is_empty() != b.is_empty()
                || rcodes.iter().any(|r| {
                    let (x, y) = (sa.get(r).unwrap_or(&0.0), sb.get(r).unwrap_or(&0.0));
                    (x - y).abs() >= SHARE_DIFFERENCE
                });
            differ.then(|| {
                format!(
                    "{}: meridian {}; gdnsd {}",
                    kind.label(),
                    describe_shares(&a),
                    describe_shares(&b)
                )
            })
        })
        .collect()
}

/// The rows that set Meridian's turn next to gdnsd's.
fn comparison_rows(ours: &ServerFlood, theirs: &ServerFlood, ratio: Option<f64>) -> Vec<Row> {
    let ratio = ratio.map_or("-".to_owned(), |r| format!("{r:.3}×"));
    let mut rows = vec![Row::info(
        "UDP probes answered, meridian / gdnsd",
        format!(
            "{:.2} % / {:.2} % = {ratio} (target for meridian alone: ≥ {:.0} %)",
            ours.udp.correct_fraction() * 100.0,
            theirs.udp.correct_fraction() * 100.0,
            TARGET_UDP_FRACTION * 100.0
        ),
    )];
    let differ = kinds_answered_differently(&ours.flood, &theirs.flood);
    rows.push(Row::info(
        "kinds answered differently (shares of replies)",
        if differ.is_empty() {
            format!(
                "none: every kind got the same rcodes from both, in shares within \
                 {SHARE_DIFFERENCE:.0} points"
            )
        } else {
            differ.join("; ")
        },
    ));
    rows
}

impl ScenarioReport for DnsFloodReport {
    fn title(&self) -> String {
        let rate = self
            .options
            .rate
            .map_or("as fast as the load core can".to_owned(), |r| {
                format!("at most {r}/s")
            });
        let limit = self.options.rate_limit.map_or(String::new(), |r| {
            format!("; GeoDNS rate-limited to {r} responses/s per network")
        });
        let compare = if self.gdnsd.is_some() {
            format!(
                "; then gdnsd on {} under the same flood",
                ADDRESSES.gdnsd_listen()
            )
        } else {
            String::new()
        };
        format!(
            "dns-flood: {:.1} s of hostile and valid datagrams from {} sockets, {rate}; \
             probes for {} every {} ms (UDP) and {} ms (TCP); seed {}; {}{limit}{compare}",
            self.options.duration_ms as f64 / 1000.0,
            self.options.sockets,
            self.clients
                .iter()
                .map(|c| c.country.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.options.probe_interval_ms,
            self.options.tcp_probe_interval_ms,
            self.seed,
            self.cores
        )
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = turn_rows(&self.geodns, &self.clients, "GeoDNS", "", true);
        if let Some(gdnsd) = &self.gdnsd {
            rows.extend(turn_rows(gdnsd, &self.clients, "gdnsd", "gdnsd: ", false));
            rows.extend(comparison_rows(&self.geodns, gdnsd, self.udp_ratio));
        }
        rows
    }

    fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.geodns.udp.wrong_samples.clone();
        notes.extend(self.geodns.tcp.samples.iter().cloned());
        if let Some(gdnsd) = &self.gdnsd {
            let samples = gdnsd.udp.wrong_samples.iter().chain(&gdnsd.tcp.samples);
            notes.extend(samples.map(|s| format!("gdnsd, {s}")));
            if self.options.rate_limit.is_some() {
                notes.push(
                    "gdnsd has no response-rate limiting: it ran without, Meridian with".to_owned(),
                );
            }
        }
        notes.extend(self.skipped.iter().map(Skipped::note));
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gb() -> Client {
        Client {
            country: "GB".into(),
            subnet: "81.2.69.0/24".into(),
            expected: "127.0.222.1".parse().unwrap(),
            region: "eu-west".into(),
        }
    }

    /// The reply GeoDNS gives `gb()`'s probe `id`, with `edit` applied.
    fn reply(id: u16, edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let name = Name::from_ascii("cdn.meridian.test.").unwrap();
        let mut message = Message::response(id, OpCode::Query);
        message.metadata.authoritative = true;
        message.add_query(Query::query(name.clone(), RecordType::A));
        message.add_answer(Record::from_rdata(
            name,
            30,
            RData::A(A::new(127, 0, 222, 1)),
        ));
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                "81.2.69.0".parse().unwrap(),
                24,
                18,
            )));
        message.set_edns(edns);
        edit(&mut message);
        message.to_vec().unwrap()
    }

    #[test]
    fn a_correct_reply_passes_and_gives_its_scope() {
        assert_eq!(check_reply(&reply(7, |_| {}), 7, &gb()), Ok(18));
    }

    #[test]
    fn every_way_of_being_wrong_is_caught() {
        let wrong = |bytes: Vec<u8>, id: u16| check_reply(&bytes, id, &gb()).unwrap_err();
        assert!(wrong(reply(7, |_| {}), 8).contains("ID 7"));
        assert!(wrong(reply(7, |m| m.metadata.authoritative = false), 7).contains("AA"));
        assert!(
            wrong(
                reply(7, |m| m.metadata.response_code = ResponseCode::ServFail),
                7
            )
            .contains("rcode")
        );
        assert!(
            wrong(
                reply(7, |m| m.metadata.message_type = MessageType::Query),
                7
            )
            .contains("QR")
        );
        let elsewhere = reply(7, |m| {
            m.answers[0].data = RData::A(A::new(127, 0, 221, 1));
        });
        assert!(wrong(elsewhere, 7).contains("127.0.221.1"));
        let none = reply(7, |m| m.answers.clear());
        assert!(wrong(none, 7).contains("[]"));
        let two = reply(7, |m| {
            let mut extra = m.answers[0].clone();
            extra.data = RData::A(A::new(127, 0, 223, 1));
            m.add_answer(extra);
        });
        assert!(wrong(two, 7).contains("127.0.223.1"));
        let no_ecs = reply(7, |m| m.edns = Some(Edns::new()));
        assert!(wrong(no_ecs, 7).contains("ECS"));
        let other_subnet = reply(7, |m| {
            let mut edns = Edns::new();
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(
                    "81.2.0.0".parse().unwrap(),
                    16,
                    16,
                )));
            m.set_edns(edns);
        });
        assert!(wrong(other_subnet, 7).contains("echoed"));
        assert!(wrong(vec![0, 7, 0x84], 7).contains("parse"));
    }

    #[test]
    fn the_pool_has_every_kind_and_a_seed_makes_the_same_pool() {
        let pool = flood_pool(42, 2_000);
        assert_eq!(pool.len(), 2_000);
        for kind in FloodKind::ALL {
            let n = pool.iter().filter(|d| d.kind == kind).count();
            assert!(n > 0, "{kind:?} is missing");
        }
        assert!(pool == flood_pool(42, 2_000), "the same seed, another pool");
        assert!(pool != flood_pool(43, 2_000), "another seed, the same pool");
        // Even a pool of ten holds every kind but the one random bytes
        // may turn out as (QR set or not).
        let tiny = flood_pool(1, 10);
        let kinds: BTreeSet<FloodKind> = tiny.iter().map(|d| d.kind).collect();
        assert!(kinds.len() >= 8, "{kinds:?}");
    }

    #[test]
    fn each_kind_is_what_it_says() {
        let pool = flood_pool(7, 4_000);
        let (mut loops, mut parsed_loops) = (0, 0);
        for datagram in &pool {
            let bytes = &datagram.bytes;
            let parsed = Message::from_vec(bytes);
            match datagram.kind {
                FloodKind::RandomBytes => {
                    assert!(bytes.len() <= MAX_RANDOM_LEN);
                    assert!(bytes.get(2).is_none_or(|f| f & 0x80 == 0));
                }
                FloodKind::RandomResponse => assert_ne!(bytes[2] & 0x80, 0),
                FloodKind::Response => {
                    assert_eq!(parsed.unwrap().metadata.message_type, MessageType::Response)
                }
                FloodKind::Steered => {
                    let message = parsed.unwrap();
                    assert_eq!(message.queries[0].name().to_ascii(), "cdn.meridian.test.");
                    let edns = message.edns.unwrap();
                    let Some(EdnsOption::Subnet(subnet)) = edns.option(EdnsCode::Subnet) else {
                        panic!("no ECS: {bytes:?}")
                    };
                    // Host bits clear: a valid subnet, answered, not FORMERR.
                    let canonical = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), 0);
                    let text = format!("{}/{}", subnet.addr(), subnet.source_prefix());
                    assert_eq!(text.parse::<ClientSubnet>().unwrap(), canonical);
                }
                FloodKind::OtherQuery => {
                    assert_eq!(parsed.unwrap().metadata.message_type, MessageType::Query)
                }
                FloodKind::Truncated => assert!(bytes.len() < 200),
                FloodKind::TrailingGarbage | FloodKind::AbsurdCounts => {
                    assert!(bytes.len() >= 12);
                    assert_eq!(bytes[2] & 0x80, 0);
                }
                FloodKind::PointerLoop => {
                    // A pointer into the header may land on a zero byte,
                    // which reads as the root name: those parse (and
                    // GeoDNS refuses them itself); loops never do.
                    assert_eq!(bytes[2] & 0x80, 0);
                    if parsed.is_ok() {
                        parsed_loops += 1;
                    }
                    loops += 1;
                }
            }
        }
        assert!(
            loops > 0 && parsed_loops * 4 < loops,
            "{parsed_loops} of {loops}"
        );
    }

    #[test]
    fn a_reply_is_counted_under_the_kind_in_its_id() {
        let mut flood = Flood {
            sockets: Vec::new(),
            result: FloodResult::default(),
            buffer: vec![0u8; 64],
        };
        let mut reply = |id: u16, flags: u8, rcode: u8, len: usize| {
            flood.buffer[..2].copy_from_slice(&id.to_be_bytes());
            flood.buffer[2] = flags;
            flood.buffer[3] = rcode;
            flood.count_reply(len);
        };
        reply((5 << 4) | FloodKind::PointerLoop.code(), 0x81, 1, 12);
        reply((6 << 4) | FloodKind::Steered.code(), 0x84, 0, 40);
        reply((7 << 4) | FloodKind::Response.code(), 0x84, 0, 40);
        reply(15, 0x80, 1, 12); // no such kind
        reply(FloodKind::Steered.code(), 0x00, 0, 40); // not a response
        reply(FloodKind::Steered.code(), 0x80, 0, 5); // too short
        let result = &flood.result;
        assert_eq!(result.kinds[&FloodKind::PointerLoop].replies["FORMERR"], 1);
        assert_eq!(result.kinds[&FloodKind::Steered].replies["NOERROR"], 1);
        assert_eq!(result.replies_to_responses, 1);
        assert_eq!(result.odd_replies, 3);
        assert_eq!(result.replied(), 3);
        assert_eq!(result.replies_by_rcode()["NOERROR"], 2);
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(rcode_name(9), "RCODE 9");
    }

    fn measured() -> Measured {
        let mut kinds = BTreeMap::new();
        kinds.insert(
            FloodKind::Response,
            KindCounts {
                sent: 100_000,
                replies: BTreeMap::new(),
            },
        );
        kinds.insert(
            FloodKind::Steered,
            KindCounts {
                sent: 200_000,
                replies: [("NOERROR".to_owned(), 150_000)].into_iter().collect(),
            },
        );
        Measured {
            seed: 1,
            flood: FloodResult {
                seconds: 10.0,
                sent: 300_000,
                kinds,
                server_cpu_seconds: Some(9.9),
                ..FloodResult::default()
            },
            udp: UdpProbes {
                sent: 1000,
                correct: 995,
                lost: 5,
                ..UdpProbes::default()
            },
            tcp: TcpProbes {
                sent: 20,
                correct: 20,
                ..TcpProbes::default()
            },
            server_drops: Some(0),
            after: AfterFlood {
                alive: true,
                exit: None,
                answered_ms: Some(2.0),
                error: None,
            },
        }
    }

    fn verdict(measured: Measured) -> DnsFloodReport {
        summarize(
            Path::new("meridian"),
            &DnsFloodOptions::full(),
            "pinned".into(),
            vec![gb()],
            measured,
            Compared::default(),
        )
    }

    #[test]
    fn a_clean_run_passes() {
        let report = verdict(measured());
        assert!(report.passed, "{:?}", report.failures);
        assert!(
            report
                .rows()
                .iter()
                .all(|r| r.verdict != crate::report::Verdict::Fail)
        );
        assert!((report.geodns.flood.sent_per_second() - 30_000.0).abs() < 1e-9);
    }

    #[test]
    fn each_target_fails_on_its_own() {
        let fails = |edit: fn(&mut Measured), expect: &str| {
            let mut m = measured();
            edit(&mut m);
            let report = verdict(m);
            assert!(!report.passed, "{expect}");
            assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
            assert!(
                report.failures[0].contains(expect),
                "{:?} lacks {expect:?}",
                report.failures
            );
            assert!(
                report
                    .rows()
                    .iter()
                    .any(|r| r.verdict == crate::report::Verdict::Fail)
            );
        };
        // One wrong answer out of a thousand is one too many.
        fails(
            |m| {
                m.udp.correct -= 1;
                m.udp.wrong = 1;
            },
            "wrong answers",
        );
        fails(
            |m| {
                m.tcp.wrong = 1;
                m.tcp.sent += 1;
                m.tcp.correct += 1;
            },
            "wrong answers",
        );
        fails(|m| m.flood.replies_to_responses = 1, "responses");
        fails(
            |m| {
                m.after.alive = false;
                m.after.answered_ms = None;
            },
            "did not survive",
        );
        fails(
            |m| {
                m.after.answered_ms = None;
                m.after.error = Some("no answer within 1 s".into());
            },
            "after the flood",
        );
        // 98.9 % is under 99 %.
        fails(
            |m| {
                m.udp.correct = 989;
                m.udp.lost = 11;
            },
            "UDP probes",
        );
        fails(
            |m| {
                m.udp = UdpProbes::default();
            },
            "UDP probes",
        );
        fails(
            |m| {
                m.tcp.correct = 19;
                m.tcp.failed = 1;
            },
            "TCP probes",
        );
        fails(|m| m.tcp = TcpProbes::default(), "TCP probes");
    }

    #[test]
    fn ninety_nine_percent_is_enough() {
        let mut m = measured();
        m.udp.correct = 990;
        m.udp.lost = 10;
        assert!(verdict(m).passed);
    }

    /// gdnsd's turn: `correct` of 1000 UDP probes, random bytes ignored
    /// rather than answered FORMERR.
    fn gdnsd_turn(correct: u64) -> ServerFlood {
        let m = measured();
        let mut flood = m.flood.clone();
        flood.kinds.insert(
            FloodKind::RandomBytes,
            KindCounts {
                sent: 50_000,
                replies: BTreeMap::new(),
            },
        );
        ServerFlood {
            flood,
            udp: UdpProbes {
                sent: 1000,
                correct,
                lost: 1000 - correct,
                ..UdpProbes::default()
            },
            tcp: m.tcp,
            server_drops: Some(20_000),
            after: m.after,
        }
    }

    fn compared(report_gdnsd: ServerFlood) -> DnsFloodReport {
        summarize(
            Path::new("meridian"),
            &DnsFloodOptions {
                compare: true,
                ..DnsFloodOptions::full()
            },
            "pinned".into(),
            vec![gb()],
            measured(),
            Compared {
                gdnsd: Some(report_gdnsd),
                skipped: Vec::new(),
            },
        )
    }

    #[test]
    fn the_udp_ratio_is_meridians_success_rate_over_gdnsds() {
        let report = compared(gdnsd_turn(900));
        // 99.5 % against 90.0 %.
        let ratio = report.udp_ratio.unwrap();
        assert!((ratio - 0.995 / 0.9).abs() < 1e-9, "{ratio}");
        let rows = report.rows();
        let row = rows
            .iter()
            .find(|r| r.metric == "UDP probes answered, meridian / gdnsd")
            .unwrap();
        assert_eq!(
            row.value,
            "99.50 % / 90.00 % = 1.106× (target for meridian alone: ≥ 99 %)"
        );
        assert_eq!(row.verdict, crate::report::Verdict::Info);

        let none = UdpProbes {
            sent: 10,
            ..UdpProbes::default()
        };
        assert_eq!(udp_ratio(&measured().udp, &none), None);
        assert_eq!(udp_ratio(&UdpProbes::default(), &measured().udp), None);
        let report = compared(gdnsd_turn(0));
        assert_eq!(report.udp_ratio, None);
        assert!(
            report
                .rows()
                .iter()
                .any(|r| r.value.starts_with("99.50 % / 0.00 % = -"))
        );
    }

    #[test]
    fn gdnsd_is_information_never_a_verdict() {
        // gdnsd lost half the probes, answered wrongly, answered a
        // response and died: Meridian's run still passes, and gdnsd's rows
        // say so without failing.
        let mut theirs = gdnsd_turn(500);
        theirs.udp.wrong = 3;
        theirs.udp.wrong_samples = vec!["UDP: GB got [127.0.221.1]".into()];
        theirs.flood.replies_to_responses = 2;
        theirs.after = AfterFlood {
            alive: false,
            exit: Some("exited during or after the flood".into()),
            ..AfterFlood::default()
        };
        let report = compared(theirs);
        assert!(report.passed, "{:?}", report.failures);
        let rows = report.rows();
        let gdnsd: Vec<&Row> = rows
            .iter()
            .filter(|r| r.metric.starts_with("gdnsd: "))
            .collect();
        assert!(
            gdnsd
                .iter()
                .all(|r| r.verdict == crate::report::Verdict::Info)
        );
        let value = |metric: &str| {
            gdnsd
                .iter()
                .find(|r| r.metric == metric)
                .map(|r| r.value.clone())
                .unwrap_or_else(|| panic!("no {metric:?} in {gdnsd:?}"))
        };
        assert!(value("gdnsd: UDP probes answered correctly").starts_with("500 of 1000 (50.00 %)"));
        assert_eq!(value("gdnsd: wrong answers (UDP and TCP)"), "3");
        assert_eq!(value("gdnsd: responses answered"), "2 of 100000");
        assert!(
            value("gdnsd: dropped by the kernel, full buffers")
                .starts_with("at gdnsd's socket 20000")
        );
        assert_eq!(
            value("gdnsd: after the flood"),
            "exited during or after the flood"
        );
        assert!(value("gdnsd: CPU during the flood").starts_with("9.90 s in 10.0 s"));
        assert_eq!(value("gdnsd:   random bytes"), "50000 sent; no replies");
        // Meridian's own rows keep their names and targets.
        assert!(
            rows.iter().any(|r| r.metric == "GeoDNS after the flood"
                && r.verdict == crate::report::Verdict::Pass)
        );
        assert!(
            report
                .notes()
                .contains(&"gdnsd, UDP: GB got [127.0.221.1]".to_owned())
        );
    }

    #[test]
    fn kinds_answered_differently_are_named() {
        let ours = measured().flood;
        assert!(kinds_answered_differently(&ours, &ours).is_empty());
        let mut ours = ours;
        ours.kinds.insert(
            FloodKind::RandomBytes,
            KindCounts {
                sent: 50_000,
                replies: [("FORMERR".to_owned(), 40_000)].into_iter().collect(),
            },
        );
        let mut theirs = gdnsd_turn(990).flood;
        // The same rcodes in other numbers are not a difference, nor are
        // shares less than ten points apart.
        let steered = [("NOERROR".to_owned(), 91), ("REFUSED".to_owned(), 9)];
        theirs.kinds.get_mut(&FloodKind::Steered).unwrap().replies = steered.into_iter().collect();
        theirs.kinds.insert(
            FloodKind::PointerLoop,
            KindCounts {
                sent: 10,
                replies: [("FORMERR".to_owned(), 5), ("NOERROR".to_owned(), 5)]
                    .into_iter()
                    .collect(),
            },
        );
        ours.kinds.insert(
            FloodKind::PointerLoop,
            KindCounts {
                sent: 100,
                replies: [("FORMERR".to_owned(), 94), ("NOERROR".to_owned(), 6)]
                    .into_iter()
                    .collect(),
            },
        );
        theirs.kinds.remove(&FloodKind::Response);
        theirs.kinds.insert(
            FloodKind::OtherQuery,
            KindCounts {
                sent: 10,
                replies: [("REFUSED".to_owned(), 1), ("NOERROR".to_owned(), 9)]
                    .into_iter()
                    .collect(),
            },
        );
        assert_eq!(
            kinds_answered_differently(&ours, &theirs),
            [
                "random bytes: meridian FORMERR 100 %; gdnsd no reply",
                "compression-pointer loops: meridian FORMERR 94 %, NOERROR 6 %; \
                 gdnsd FORMERR 50 %, NOERROR 50 %",
                "other valid queries: meridian no reply; gdnsd NOERROR 90 %, REFUSED 10 %",
            ]
        );
        let report = compared(gdnsd_turn(990));
        let row = report
            .rows()
            .into_iter()
            .find(|r| r.metric == "kinds answered differently (shares of replies)")
            .unwrap();
        assert!(row.value.starts_with("none: "), "{}", row.value);
    }

    #[test]
    fn without_compare_there_are_no_gdnsd_rows_and_a_skip_is_a_note() {
        let report = verdict(measured());
        assert!(report.gdnsd.is_none() && report.udp_ratio.is_none());
        assert!(!report.rows().iter().any(|r| r.metric.contains("gdnsd")));
        let report = summarize(
            Path::new("meridian"),
            &DnsFloodOptions::full(),
            "pinned".into(),
            vec![gb()],
            measured(),
            Compared {
                gdnsd: None,
                skipped: vec![Skipped::not_installed("gdnsd", "gdnsd", "gdnsd")],
            },
        );
        assert!(report.passed);
        let notes = report.notes();
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("gdnsd: `gdnsd` is not installed")
                    && n.contains("apt-get install gdnsd")),
            "{notes:?}"
        );
        // The JSON keeps Meridian's numbers at the top level.
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["udp"]["sent"].as_u64() == Some(1000), "{json}");
        assert!(json["gdnsd"].is_null());
    }

    #[test]
    fn socket_drops_are_read_from_proc_net_udp() {
        let local = Ipv4Addr::new(127, 0, 220, 1);
        let hex = format!("{:08X}", u32::from_ne_bytes(local.octets()));
        let table = format!(
            "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             \x20 12: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 5\n\
             \x20 13: {hex}:14E9 00000000:0000 07 00000000:00030000 00:00000000 00000000     0        0 2 2 0000000000000000 4242\n"
        );
        let at = |addr: &str| parse_udp_drops(&table, addr.parse().unwrap());
        assert_eq!(at("127.0.220.1:5353"), Some(4242));
        assert_eq!(at("127.0.0.1:53"), Some(5));
        assert_eq!(at("127.0.220.1:53"), None);
        assert_eq!(at("[::1]:53"), None);
        // This machine's own table parses (a socket of ours is in it).
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        if Path::new("/proc/net/udp").exists() {
            assert_eq!(udp_drops(socket.local_addr().unwrap()), Some(0));
        }
    }

    #[test]
    fn the_scenario_has_its_own_addresses() {
        let text = ADDRESSES.topology_text();
        assert_eq!(ADDRESSES.geodns_listen().to_string(), "127.0.220.1:5353");
        assert_eq!(ADDRESSES.gdnsd_listen().to_string(), "127.0.220.2:5353");
        for edge in ["127.0.221.1", "127.0.222.1", "127.0.223.1"] {
            assert!(text.contains(&format!("[\"{edge}\"]")), "{text}");
        }
        let topology = ADDRESSES.topology().unwrap();
        assert!(topology.geodns.rate_limit.is_none());
        assert_eq!(topology_text(None), text);
        let limited =
            config::Config::from_toml(&topology_text(Some(50)), config::ConfigSource::Embedded)
                .unwrap();
        assert!(limited.geodns.rate_limit.is_some());
        for octets in [PROBE_HOST.octets(), [127, 0, 220, FLOOD_FIRST_HOST]] {
            assert!((220..=223).contains(&octets[2]), "{octets:?}");
        }
        assert!(usize::from(FLOOD_FIRST_HOST) + MAX_FLOOD_SOCKETS <= 255);
    }
}
