//! A UDP DNS load generator: many queries in flight, every answer checked.
//!
//! Why not `dnsperf`: it sends one fixed EDNS Client Subnet option for a
//! whole run and never looks at the answers, and steering is only
//! exercised by clients from many places whose answers are checked. So
//! this generator sends a mix of prepared queries (one per simulated
//! client location), keeps a fixed number in flight on each of a few
//! sockets (sending the next as soon as one is answered), times each one,
//! checks every reply's header (NOERROR, at least one answer) and decodes
//! a sample of them fully to record which addresses each location got.
//!
//! It runs on one thread pinned to the load core and polls its
//! non-blocking sockets instead of sleeping in `epoll`, as `dnsperf` does:
//! the generator must cost less per query than the server it measures.

use crate::pinning::Cores;
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Every how many good replies to a query one is decoded in full to record
/// its addresses (besides the first [`DECODE_FIRST`]).
const DECODE_EVERY: u64 = 64;

/// How many of the first good replies to each query are decoded in full.
const DECODE_FIRST: u64 = 16;

/// One kind of query the generator sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedQuery {
    /// What it stands for (e.g. a country code), for the report.
    pub label: String,
    /// The wire-format query; its first two bytes (the ID) are overwritten
    /// for each send.
    pub packet: Vec<u8>,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct DnsLoadSpec {
    /// The server.
    pub server: SocketAddr,
    /// The queries, sent in turn.
    pub queries: Vec<PreparedQuery>,
    /// How many sockets (client ports).
    pub sockets: usize,
    /// Queries in flight per socket.
    pub outstanding: usize,
    /// How long to send for.
    pub duration: Duration,
    /// When an unanswered query counts as lost (and its slot is reused).
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DnsLoadResult {
    /// Queries sent.
    pub sent: u64,
    /// Replies with NOERROR and at least one answer.
    pub answered: u64,
    /// Replies that were not (another RCODE, or no answer).
    pub bad: u64,
    /// Queries with no reply within the timeout.
    pub lost: u64,
    /// How long the run took, in seconds.
    pub seconds: f64,
    /// Good replies per second.
    pub answers_per_second: f64,
    /// Median latency, in ms.
    pub p50_ms: f64,
    /// 99th percentile latency, in ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, in ms.
    pub p999_ms: f64,
    /// For each query label, the answer addresses seen in the decoded
    /// sample, with counts.
    pub answers: BTreeMap<String, BTreeMap<IpAddr, u64>>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsLoadError {
    /// Bad settings.
    #[error("{0}")]
    Settings(String),
    /// A socket could not be set up.
    #[error("cannot set up a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
}

/// One query in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    sent: Instant,
    query: usize,
}

/// The generator's state while it runs.
struct Run<'a> {
    spec: &'a DnsLoadSpec,
    sockets: Vec<UdpSocket>,
    /// Indexed by query ID: socket `s` owns IDs `s·W .. (s+1)·W`.
    slots: Vec<Option<InFlight>>,
    next_query: usize,
    latencies: crate::stats::Latencies,
    result: DnsLoadResult,
    /// Good replies so far, per query.
    replies: Vec<u64>,
    /// Per socket, how many of its slots are in use: each starts with one
    /// and opens another with every reply until it has all of them, so the
    /// load ramps up instead of arriving as one burst (a burst of hundreds
    /// of datagrams overflows a server's receive buffer before it has
    /// woken up, and would be counted as lost).
    opened: Vec<usize>,
}

impl Run<'_> {
    /// Sends a query on `slot` (its ID), the next one in turn.
    fn send(&mut self, slot: usize) {
        let query = self.next_query;
        self.next_query = (self.next_query + 1) % self.spec.queries.len();
        let socket = &self.sockets[slot / self.spec.outstanding];
        let mut packet = self.spec.queries[query].packet.clone();
        let id = u16::try_from(slot).unwrap_or(0).to_be_bytes();
        packet[..2].copy_from_slice(&id);
        match socket.send(&packet) {
            Ok(_) => {
                self.result.sent += 1;
                self.slots[slot] = Some(InFlight {
                    sent: Instant::now(),
                    query,
                });
            }
            // A full socket buffer: the slot stays empty and is retried
            // when timeouts are swept.
            Err(_) => self.slots[slot] = None,
        }
    }

    /// Reads every reply waiting on socket `index`; returns how many.
    fn receive(&mut self, index: usize, buffer: &mut [u8]) -> usize {
        let mut count = 0;
        loop {
            let received = self.sockets[index].recv(buffer);
            let len = match received {
                Ok(len) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return count,
                // ICMP port unreachable and the like: nothing to read.
                Err(_) => return count,
            };
            count += 1;
            let Some(reply) = buffer.get(..len).filter(|r| r.len() >= 12) else {
                continue;
            };
            let slot = usize::from(u16::from_be_bytes([reply[0], reply[1]]));
            let owned = (index * self.spec.outstanding..(index + 1) * self.spec.outstanding)
                .contains(&slot);
            let Some(in_flight) = self.slots.get(slot).copied().flatten().filter(|_| owned) else {
                // A late reply to a query already counted lost.
                continue;
            };
            self.latencies.record(in_flight.sent.elapsed());
            self.check(reply, in_flight.query);
            self.send(slot);
            if self.opened[index] < self.spec.outstanding {
                let new_slot = index * self.spec.outstanding + self.opened[index];
                self.opened[index] += 1;
                self.send(new_slot);
            }
        }
    }

    /// Counts `reply` good or bad; decodes the first few replies to each
    /// query and then one in [`DECODE_EVERY`].
    fn check(&mut self, reply: &[u8], query: usize) {
        let rcode = reply[3] & 0x0f;
        let answers = u16::from_be_bytes([reply[6], reply[7]]);
        if rcode != 0 || answers == 0 {
            self.result.bad += 1;
            return;
        }
        self.result.answered += 1;
        let replies = &mut self.replies[query];
        *replies += 1;
        if *replies > DECODE_FIRST && !replies.is_multiple_of(DECODE_EVERY) {
            return;
        }
        let Ok(message) = Message::from_vec(reply) else {
            return;
        };
        let label = &self.spec.queries[query].label;
        let seen = self.result.answers.entry(label.clone()).or_default();
        for record in &message.answers {
            let address = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                _ => continue,
            };
            *seen.entry(address).or_default() += 1;
        }
    }

    /// Counts queries older than the timeout as lost and reuses their
    /// slots (and refills slots whose send failed).
    fn sweep(&mut self) {
        let now = Instant::now();
        let opened: Vec<usize> = (0..self.sockets.len())
            .flat_map(|s| {
                let first = s * self.spec.outstanding;
                first..first + self.opened[s]
            })
            .collect();
        for slot in opened {
            match self.slots[slot] {
                Some(in_flight) if now.duration_since(in_flight.sent) < self.spec.timeout => {}
                Some(_) => {
                    self.result.lost += 1;
                    self.send(slot);
                }
                None => self.send(slot),
            }
        }
    }
}

/// Runs `spec` on this thread, pinned to the load core of `cores`.
/// Blocks for `spec.duration`: call it from a blocking thread.
pub fn run(spec: &DnsLoadSpec, cores: &Cores) -> Result<DnsLoadResult, DnsLoadError> {
    let in_flight = spec.sockets.saturating_mul(spec.outstanding);
    if spec.queries.is_empty() || in_flight == 0 || in_flight > usize::from(u16::MAX) {
        return Err(DnsLoadError::Settings(format!(
            "need queries and 1..=65535 queries in flight (got {} queries, {in_flight} in flight)",
            spec.queries.len()
        )));
    }
    if spec.queries.iter().any(|q| q.packet.len() < 12) {
        return Err(DnsLoadError::Settings(
            "a query shorter than a DNS header".into(),
        ));
    }
    cores.pin_current_thread_to_load();
    let bind: SocketAddr = match spec.server {
        SocketAddr::V4(_) => "127.0.0.1:0",
        SocketAddr::V6(_) => "[::1]:0",
    }
    .parse()
    .map_err(|_| DnsLoadError::Settings("bad local address".into()))?;
    let sockets = (0..spec.sockets)
        .map(|_| {
            let socket = UdpSocket::bind(bind)?;
            socket.connect(spec.server)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(DnsLoadError::Socket)?;

    let mut run = Run {
        spec,
        sockets,
        slots: vec![None; in_flight],
        next_query: 0,
        latencies: crate::stats::Latencies::default(),
        result: DnsLoadResult::default(),
        replies: vec![0; spec.queries.len()],
        opened: vec![1; spec.sockets],
    };
    let started = Instant::now();
    let deadline = started + spec.duration;
    for socket in 0..spec.sockets {
        run.send(socket * spec.outstanding);
    }
    let mut buffer = vec![0u8; 4096];
    let mut last_sweep = Instant::now();
    loop {
        let mut received = 0;
        for index in 0..run.sockets.len() {
            received += run.receive(index, &mut buffer);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now.duration_since(last_sweep) >= spec.timeout / 4 {
            run.sweep();
            last_sweep = now;
        }
        if received == 0 {
            // Nothing arrived: give the core away, in case the server
            // shares it (an unpinned run on a small machine).
            std::thread::yield_now();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut result = run.result;
    let latencies = run.latencies;
    let at = |p| latencies.ms_at(p);
    result.seconds = seconds;
    result.answers_per_second = result.answered as f64 / seconds;
    result.p50_ms = at(50.0);
    result.p99_ms = at(99.0);
    result.p999_ms = at(99.9);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Query, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, Record, RecordType};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An `A` query for `label.`, labelled `label`.
    fn query(label: &str) -> PreparedQuery {
        let mut message = Message::query();
        let name = Name::from_ascii(format!("{label}.")).unwrap();
        message.add_query(Query::query(name, RecordType::A));
        let packet = message.to_vec().unwrap();
        PreparedQuery {
            label: label.to_owned(),
            packet,
        }
    }

    /// A tiny UDP server answering `good.` with 192.0.2.1 and anything
    /// else with NXDOMAIN, until `stop` is set.
    fn tiny_server(stop: Arc<AtomicBool>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                let request = Message::from_vec(&buffer[..len]).unwrap();
                let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
                let query = request.queries[0].clone();
                if query.name().to_ascii() == "good." {
                    let a = RData::A(A::new(192, 0, 2, 1));
                    reply.add_answer(Record::from_rdata(query.name().clone(), 30, a));
                } else {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                reply.add_query(query);
                let _ = socket.send_to(&reply.to_vec().unwrap(), from);
            }
        });
        addr
    }

    #[test]
    fn it_counts_good_and_bad_replies_and_samples_answers() {
        let stop = Arc::new(AtomicBool::new(false));
        let spec = DnsLoadSpec {
            server: tiny_server(stop.clone()),
            queries: vec![query("good"), query("bad")],
            sockets: 2,
            outstanding: 4,
            duration: Duration::from_millis(300),
            timeout: Duration::from_millis(500),
        };
        let result = run(&spec, &Cores::UNPINNED).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(result.answered > 10, "{result:?}");
        // Queries alternate, so about half the replies are NXDOMAIN.
        let ratio = result.bad as f64 / result.answered as f64;
        assert!((0.5..2.0).contains(&ratio), "{result:?}");
        assert_eq!(result.lost, 0);
        assert!(result.sent >= result.answered + result.bad);
        let good: Vec<_> = result.answers["good"].keys().collect();
        assert_eq!(good, [&IpAddr::from([192, 0, 2, 1])]);
        assert!(!result.answers.contains_key("bad"));
        assert!(result.p50_ms <= result.p99_ms);
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let spec = DnsLoadSpec {
            server: "127.0.0.1:53".parse().unwrap(),
            queries: Vec::new(),
            sockets: 1,
            outstanding: 1,
            duration: Duration::from_millis(1),
            timeout: Duration::from_millis(1),
        };
        assert!(run(&spec, &Cores::UNPINNED).is_err());
        let (queries, sockets, outstanding) = (vec![query("x")], 1000, 1000);
        let too_many = DnsLoadSpec {
            queries,
            sockets,
            outstanding,
            ..spec
        };
        assert!(run(&too_many, &Cores::UNPINNED).is_err());
    }
}
