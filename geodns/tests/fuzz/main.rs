//! Fuzzing GeoDNS's request path, on stable Rust, inside `cargo test`.
//!
//! There is no nightly toolchain here (so no cargo-fuzz or libFuzzer), and
//! CI runs only the test command; so this is a seeded, mutation-based
//! fuzzer that runs for a bounded time as two ordinary tests:
//!
//! - `udp_request_path` sends every input through
//!   [`geodns::responder::Responder::answer`], exactly what the UDP socket loops
//!   call for each datagram (the answer cache's own reader, or hickory's
//!   parser and the handler), with one responder kept across inputs so
//!   that its cache fills and serves.
//! - `tcp_request_path` hands every input that hickory-server would pass
//!   to the handler over TCP (it parses, and is not a response) to
//!   `GeoDnsHandler::handle_request`, with hickory-server's own
//!   `ResponseHandle` encoding the reply as on a TCP connection. The TCP
//!   framing and the FORMERR for unparseable messages are hickory-server's
//!   and are not driven here.
//!
//! Inputs start from the test kit's corpus of valid queries
//! (`kit::mutation::corpus`, shared with the end-to-end hostile
//! input test and the flood benchmark) and are mutated by its mutators;
//! every outcome is checked ([`check`]); an input whose outcome looks like
//! none before joins the pool.
//!
//! Environment:
//! - `MERIDIAN_FUZZ_SECONDS`: how long each target runs (default 5).
//! - `MERIDIAN_FUZZ_SEED`: the seed (default: from the clock). Always
//!   printed; the same seed makes the same inputs.
//! - `MERIDIAN_FUZZ_INPUTS`: stop after this many inputs instead, so that
//!   a failure found at input N replays exactly with a seed and N + 1.
//! - `MERIDIAN_FUZZ_INPUT`: one input, in hex, to try from every source
//!   (twice, so that the second answer may come from the cache).

mod check;
mod found;

use check::{Outcome, Parsed};
use geodns::responder::{Responder, Served};
use geodns::{DnsMetrics, GeoDnsHandler, Live, Snapshot};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::{BufDnsStreamHandle, Protocol};
use hickory_server::server::{RequestHandler, ResponseHandle};
use kit::mutation::{self, Made, Rng, corpus};
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long each target runs unless `MERIDIAN_FUZZ_SECONDS` says.
const DEFAULT_SECONDS: f64 = 5.0;

/// The pool never grows past this many inputs (seeds included).
const MAX_POOL: usize = 4096;

/// Every this many inputs, an edge's health changes (which empties the
/// answer cache and changes steered answers).
const HEALTH_EVERY: u64 = 5000;

/// How many recent answered inputs may be sent again.
const RECENT: usize = 64;

#[test]
fn udp_request_path() {
    let server = Server::new();
    let mut udp = Udp::new(&server);
    fuzz("udp", &server, true, |input, source| udp.one(input, source));
}

#[test]
fn tcp_request_path() {
    let server = Server::new();
    let mut tcp = Tcp::new(&server);
    fuzz("tcp", &server, false, |input, source| {
        tcp.one(input, source)
    });
}

/// Every input a fuzz target ever failed on ([`found::FOUND`]) passes
/// both targets from every source, twice (the second UDP answer may come
/// from the cache).
#[test]
fn inputs_found_before_pass() {
    let server = Server::new();
    let mut udp = Udp::new(&server);
    let mut tcp = Tcp::new(&server);
    for (what, input) in found::FOUND {
        let input = unhex(input).expect("hex");
        for source in sources() {
            for round in 1..=2 {
                let result = udp
                    .one(&input, source)
                    .and_then(|_| tcp.one(&input, source));
                if let Err(why) = result {
                    panic!("{what}, from {source} (answer {round}): {why}");
                }
            }
        }
    }
}

/// The kit's mutators aim at names with a reader of their own (the kit
/// cannot depend on GeoDNS, whose tests use it): it must end every name,
/// at every offset of every kind of input, where GeoDNS's reader does.
#[test]
fn the_mutators_find_names_where_geodns_does() {
    let mut rng = Rng::seed_from_u64(0x6e61_6d65_7300_0001);
    let pool = corpus::seeds();
    let mutated = (0..20_000).map(|_| mutation::next(&mut rng, &pool).0);
    for input in pool.iter().cloned().chain(mutated) {
        for at in 0..=input.len() {
            assert_eq!(
                mutation::wire::name_end(&input, at),
                geodns::wire::name_end(&input, at),
                "the name at {at} of {}",
                hex(&input)
            );
        }
    }
}

/// The UDP target: one responder kept across inputs, as a UDP worker
/// keeps one across datagrams.
struct Udp<'s> {
    server: &'s Server,
    responder: Responder,
    reply: Vec<u8>,
    reference: Vec<u8>,
}

impl<'s> Udp<'s> {
    fn new(server: &'s Server) -> Self {
        Udp {
            server,
            responder: Responder::new(),
            reply: Vec::new(),
            reference: Vec::new(),
        }
    }

    /// Answers `input` from `source` as the UDP loops do, and checks it.
    fn one(&mut self, input: &[u8], source: SocketAddr) -> Result<Outcome, String> {
        let (handler, snapshot) = (&self.server.handler, self.server.live.load());
        let served = self
            .responder
            .answer(handler, &snapshot, input, source, &mut self.reply);
        let sent = (served != Served::Nothing).then_some(self.reply.as_slice());
        let mut outcome = check::udp(input, source, sent).map_err(|why| with_reply(why, sent))?;
        if served == Served::Remembered {
            // A responder that remembers nothing answers the full way:
            // hickory's parser and the handler.
            outcome.remembered = true;
            let full =
                Responder::new().answer(handler, &snapshot, input, source, &mut self.reference);
            if full == Served::Nothing || self.reference != self.reply {
                return Err(format!(
                    "the remembered reply {} is not the full path's {}",
                    hex(&self.reply),
                    hex(&self.reference)
                ));
            }
        }
        Ok(outcome)
    }
}

/// The TCP target: the handler as hickory-server's TCP loop calls it.
struct Tcp<'s> {
    server: &'s Server,
    runtime: tokio::runtime::Runtime,
    reference: Vec<u8>,
}

impl<'s> Tcp<'s> {
    fn new(server: &'s Server) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        Tcp {
            server,
            runtime,
            reference: Vec::new(),
        }
    }

    /// Hands `input` to the handler if hickory-server would (it parses and
    /// is not a response), with hickory-server's `ResponseHandle` encoding
    /// the reply for TCP, and checks the reply; and checks it equals the
    /// UDP reply to the same bytes, unless that one had to be truncated.
    fn one(&mut self, input: &[u8], source: SocketAddr) -> Result<Outcome, String> {
        let request = match Parsed::read(input, source, Protocol::Tcp) {
            Parsed::Short => return Ok(dropped("shorter than a header (hickory-server)")),
            Parsed::Response => return Ok(dropped("a response (hickory-server)")),
            Parsed::Garbled => return Ok(dropped("unparseable (hickory-server's FORMERR)")),
            Parsed::Query(request) => request,
        };
        let handler = &self.server.handler;
        let (stream, mut sent) = BufDnsStreamHandle::new(source);
        let handle = ResponseHandle::new(source, stream, Protocol::Tcp);
        self.runtime
            .block_on(handler.handle_request::<_, TokioTime>(&request, handle));
        let reply = sent.get_mut().get_mut().try_recv().ok();
        let reply = reply.as_ref().map(|message| message.bytes());
        if sent.get_mut().get_mut().try_recv().is_ok() {
            return Err("two replies to one query".into());
        }
        let snapshot = self.server.live.load();
        let udp = Responder::new().answer(handler, &snapshot, input, source, &mut self.reference);
        let udp = (udp != Served::Nothing).then_some(self.reference.as_slice());
        check::tcp(&request, input, reply, udp).map_err(|why| with_reply(why, reply))
    }
}

/// The handler and the snapshot it answers from, as the unit tests build
/// them, from the corpus's topology.
struct Server {
    handler: GeoDnsHandler,
    live: Arc<Live>,
}

impl Server {
    fn new() -> Server {
        let config = corpus::topology()
            .config()
            .expect("the fuzz config is valid");
        let metrics = Arc::new(DnsMetrics::new().expect("metrics"));
        let snapshot = Snapshot::load(config, &metrics).expect("the snapshot loads");
        let live = Arc::new(Live::from_pointee(snapshot));
        Server {
            handler: GeoDnsHandler::new(live.clone(), metrics),
            live,
        }
    }
}

/// What the environment asks for.
struct Settings {
    seed: u64,
    duration: Duration,
    inputs: Option<u64>,
    input: Option<Vec<u8>>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let seconds = var("MERIDIAN_FUZZ_SECONDS").map_or(DEFAULT_SECONDS, |v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .unwrap_or_else(|| panic!("MERIDIAN_FUZZ_SECONDS={v:?} is not a number of seconds"))
        });
        let seed = var("MERIDIAN_FUZZ_SEED").map_or_else(mutation::clock_seed, |v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("MERIDIAN_FUZZ_SEED={v:?} is not a u64"))
        });
        let inputs = var("MERIDIAN_FUZZ_INPUTS").map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("MERIDIAN_FUZZ_INPUTS={v:?} is not a count"))
        });
        let input = var("MERIDIAN_FUZZ_INPUT")
            .map(|v| unhex(v.trim()).unwrap_or_else(|| panic!("MERIDIAN_FUZZ_INPUT is not hex")));
        Settings {
            seed,
            duration: Duration::from_secs_f64(seconds),
            inputs,
            input,
        }
    }
}

/// Where queries come from: loopback and private (placed by the default
/// order), and addresses in each region's part of the world, of both
/// families.
fn sources() -> [SocketAddr; 7] {
    let google_dns = Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888);
    [
        SocketAddr::from(([127, 0, 0, 1], 5000)),
        SocketAddr::from(([81, 2, 69, 142], 5353)),
        SocketAddr::from(([8, 8, 8, 8], 40000)),
        SocketAddr::from(([203, 116, 1, 1], 1024)),
        SocketAddr::from(([10, 1, 2, 3], 53)),
        SocketAddr::from((google_dns, 53000)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, 5353)),
    ]
}

/// Runs `target` on inputs until the time or the input count runs out;
/// on the first failure or panic, fails the test with the seed and the
/// input. Prints what it ran and what came of it.
fn fuzz(
    name: &str,
    server: &Server,
    udp: bool,
    mut target: impl FnMut(&[u8], SocketAddr) -> Result<Outcome, String>,
) {
    let settings = Settings::from_env();
    let sources = sources();
    let mut one = |input: &[u8], source: SocketAddr| guarded(&mut target, input, source);

    if let Some(input) = &settings.input {
        for (round, source) in sources.iter().flat_map(|s| [(1, *s), (2, *s)]) {
            if let Err(why) = one(input, source) {
                panic!(
                    "fuzz {name}: MERIDIAN_FUZZ_INPUT from {source} (answer {round}): {why}\n  input: {}",
                    hex(input)
                );
            }
        }
        let _ = writeln!(
            std::io::stderr(),
            "fuzz {name}: MERIDIAN_FUZZ_INPUT passed from every source"
        );
        return;
    }

    let seed = settings.seed;
    let budget = match settings.inputs {
        Some(inputs) => format!("{inputs} inputs"),
        None => format!("{:.1} s", settings.duration.as_secs_f64()),
    };
    // Printed past the test harness's capture, so that even a run that
    // dies without unwinding says how to replay it.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {name}: seed {seed} (MERIDIAN_FUZZ_SEED={seed} replays it), {budget}"
    );
    let mut rng = Rng::seed_from_u64(seed);
    let mut pool = corpus::seeds();
    let seeds = pool.len();
    let mut shapes = HashSet::new();
    let mut recent: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(RECENT);
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    let mut made = [0u64; 3];
    let mut truncated = 0u64;
    let mut remembered = 0u64;
    let started = Instant::now();
    let mut count = 0u64;
    loop {
        let done = match settings.inputs {
            Some(inputs) => count >= inputs,
            None => started.elapsed() >= settings.duration,
        };
        if done {
            break;
        }
        if count % HEALTH_EVERY == HEALTH_EVERY - 1 {
            let region = rng.random_range(0..3);
            server
                .live
                .load()
                .health
                .set_edge(region, 0, rng.random_bool(0.5));
        }
        let mut source = sources[rng.random_range(0..sources.len())];
        let (input, how) = if !recent.is_empty() && rng.random_bool(0.2) {
            // A recent input again, mostly from where it came from.
            let (input, from) = &recent[rng.random_range(0..recent.len())];
            if rng.random_bool(0.7) {
                source = *from;
            }
            (mutation::again(&mut rng, input), Made::Again)
        } else {
            mutation::next(&mut rng, &pool)
        };
        if udp && rng.random_bool(0.01) {
            source.set_port(0);
        }
        match one(&input, source) {
            Ok(outcome) => {
                made[match how {
                    Made::Random => 0,
                    Made::Again => 1,
                    Made::Mutated(_) => 2,
                }] += 1;
                truncated += u64::from(outcome.truncated);
                remembered += u64::from(outcome.remembered);
                if shapes.insert(outcome.shape.clone()) {
                    // A full pool keeps its seeds and makes room.
                    if pool.len() < MAX_POOL {
                        pool.push(input.clone());
                    } else {
                        let slot = rng.random_range(seeds.min(MAX_POOL - 1)..MAX_POOL);
                        pool[slot] = input.clone();
                    }
                }
                *labels.entry(outcome.label).or_default() += 1;
                if outcome.answered {
                    if recent.len() == RECENT {
                        recent.swap_remove(rng.random_range(0..RECENT));
                    }
                    recent.push((input, source));
                }
            }
            Err(why) => panic!(
                "fuzz {name} failed at input {count}: {why}\n  \
                 replay: MERIDIAN_FUZZ_SEED={seed} MERIDIAN_FUZZ_INPUTS={} cargo test -p geodns --test fuzz {name}\n  \
                 made: {how:?}\n  source: {source}\n  input ({} bytes): {}",
                count + 1,
                input.len(),
                hex(&input),
            ),
        }
        count += 1;
    }

    let elapsed = started.elapsed().as_secs_f64();
    let rate = count as f64 / elapsed.max(1e-9);
    let outcomes: Vec<String> = labels
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    let cache = if udp {
        format!(", {remembered} answered from the cache (each equal to the full path's)")
    } else {
        String::new()
    };
    let summary = format!(
        "fuzz {name}: {count} inputs in {elapsed:.1} s ({rate:.0}/s), seed {seed}\n  \
         outcomes: {}\n  \
         {truncated} truncated{cache}; \
         inputs: {} random, {} sent again, {} mutated; \
         pool {} ({seeds} seeds), {} outcome shapes",
        outcomes.join(", "),
        made[0],
        made[1],
        made[2],
        pool.len(),
        shapes.len(),
    );
    let _ = writeln!(std::io::stderr(), "{summary}");
}

/// `target`'s verdict on `input`, a panic included.
fn guarded(
    target: &mut impl FnMut(&[u8], SocketAddr) -> Result<Outcome, String>,
    input: &[u8],
    source: SocketAddr,
) -> Result<Outcome, String> {
    let run = AssertUnwindSafe(|| target(input, source));
    std::panic::catch_unwind(run)
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(panic.as_ref()))))
}

/// An outcome that is no reply, for the given reason.
fn dropped(why: &str) -> Outcome {
    Outcome::no_reply(format!("not handled: {why}"), vec![0])
}

/// `why`, with the reply it is about.
fn with_reply(why: String, reply: Option<&[u8]>) -> String {
    match reply {
        Some(reply) => format!("{why}\n  reply ({} bytes): {}", reply.len(), hex(reply)),
        None => why,
    }
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".into()
    }
}

/// Bytes as lowercase hex, for reports and `MERIDIAN_FUZZ_INPUT`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex back to bytes (spaces allowed).
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
