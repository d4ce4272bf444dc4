//! A pair of GeoDNS servers, and health seen from more than one place:
//! the demo's two servers (`ns1`, `ns2`), each its own `meridian geodns
//! --server NAME` process, on blocks 127.30–39.
//!
//! The edges are stand-ins ([`FakeEdge`]) that answer health probes, and
//! that a test can cut off from one source address (a partition between
//! one nameserver and a region) or from everyone (the region is gone).
//! Each server probes from an address of its own (`probe_from`), so a
//! stand-in tells the two servers' probes apart.

use crate::harness::{GeoDns, Topology, bin, dns, eventually, ip};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Long enough for a health change on a loaded machine (probes every
/// 300 ms, two in a row to change; 5 s for a silent server to stop
/// counting).
const WITHIN: Duration = Duration::from_secs(30);

/// GB, DE, US and SG clients, by ECS subnet.
const SUBNETS: [&str; 4] = ["81.2.69.0/24", "5.9.0.0/24", "8.8.8.0/24", "203.116.1.0/24"];

/// Who a stand-in edge answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// Everyone: 200 to every probe.
    Everyone,
    /// Everyone but these sources, whose connections are closed unanswered.
    AllBut(HashSet<IpAddr>),
    /// No one.
    NoOne,
}

/// An edge stand-in: answers `200 ok` to whoever it reaches; a connection
/// from a source it does not reach is closed at once, as a broken link
/// would lose it. Hand-written (a few lines over std) because the kit's
/// scripted origin cannot see who is asking.
struct FakeEdge {
    addr: SocketAddr,
    reach: Arc<Mutex<Reach>>,
    stop: Arc<AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl FakeEdge {
    fn start(addr: SocketAddr) -> FakeEdge {
        let listener = TcpListener::bind(addr).unwrap();
        let reach = Arc::new(Mutex::new(Reach::Everyone));
        let stop = Arc::new(AtomicBool::new(false));
        let (who, stopping) = (reach.clone(), stop.clone());
        let accepting = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let reached = match (&*who.lock().unwrap(), stream.peer_addr()) {
                    (Reach::Everyone, _) => true,
                    (Reach::AllBut(cut), Ok(peer)) => !cut.contains(&peer.ip()),
                    (Reach::NoOne, _) | (_, Err(_)) => false,
                };
                if reached {
                    std::thread::spawn(move || answer(stream));
                }
            }
        });
        FakeEdge {
            addr,
            reach,
            stop,
            accepting: Some(accepting),
        }
    }

    fn reach(&self, reach: Reach) {
        *self.reach.lock().unwrap() = reach;
    }
}

/// Reads one request head and answers `200 ok`.
fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
}

impl Drop for FakeEdge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// The demo on `block` with its two GeoDNS servers probing every 300 ms
/// from 127.B.0.11 (ns1) and 127.B.0.12 (ns2), and a stand-in for every
/// region's edge. A server stops counting the other after 5 s of silence:
/// long enough that polls lost on a loaded machine never make it decide
/// alone by accident.
fn pair(block: u8) -> (Topology, Vec<FakeEdge>) {
    // One edge per region: the fake edges stand for a region each.
    let topology = (1..=3)
        .fold(Topology::demo(block), Topology::single_edge)
        .health(Duration::from_millis(300), Duration::from_millis(250))
        .silent_after(Duration::from_secs(5))
        .probe_from(0, ip(block, 0, 11))
        .probe_from(1, ip(block, 0, 12));
    let edges = (1..=3)
        .map(|region| FakeEdge::start(topology.edge(region)))
        .collect();
    (topology, edges)
}

/// [`pair`], with both servers started.
fn running_pair(block: u8) -> (Topology, Vec<FakeEdge>, GeoDns, GeoDns) {
    let (topology, edges) = pair(block);
    let ns1 = GeoDns::start_server(bin(), &topology, 0).unwrap();
    let ns2 = GeoDns::start_server(bin(), &topology, 1).unwrap();
    (topology, edges, ns1, ns2)
}

/// The addresses a server answers `cdn.meridian.test A` with for `subnet`,
/// and the ECS scope of its reply.
fn steered(server: SocketAddr, subnet: &str) -> (Vec<IpAddr>, Option<u8>) {
    let reply = dns::udp(
        server,
        &dns::ecs(
            "cdn.meridian.test.",
            hickory_proto::rr::RecordType::A,
            subnet,
        ),
    )
    .unwrap();
    // The order turns with the query's ID; the set is the answer.
    let mut addresses = reply.addresses();
    addresses.sort();
    (addresses, reply.scope())
}

/// What `server`'s own probes see of `edge`, from its `/health`.
fn probed_up(server: &GeoDns, edge: SocketAddr) -> Option<bool> {
    let health = server.health().ok()?;
    health
        .as_array()?
        .iter()
        .flat_map(|region| region["edges"].as_array().cloned().unwrap_or_default())
        .find(|e| e["addr"] == edge.to_string())
        .and_then(|e| e["probed_up"].as_bool())
}

/// Whether `server` counts a report from `vantage` about `edge`.
fn hears(server: &GeoDns, edge: SocketAddr, vantage: &str) -> bool {
    let Ok(health) = server.health() else {
        return false;
    };
    health.as_array().into_iter().flatten().any(|region| {
        region["edges"].as_array().into_iter().flatten().any(|e| {
            e["addr"] == edge.to_string()
                && e["seen_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["vantage"] == vantage)
        })
    })
}

#[test]
fn both_nameservers_answer_alike_and_either_serves_alone() {
    let b = 30;
    let (topology, _edges, ns1, ns2) = running_pair(b);
    assert_eq!(ns1.dns(), SocketAddr::new(ip(b, 0, 1), 5353));
    assert_eq!(ns2.dns(), SocketAddr::new(ip(b, 0, 2), 5353));
    // Each hears the other.
    let eu = topology.edge(2);
    assert!(
        eventually(WITHIN, || hears(&ns1, eu, "geodns ns2")
            && hears(&ns2, eu, "geodns ns1")),
        "the servers never heard each other: {:?} {:?}",
        ns1.health(),
        ns2.health()
    );
    for subnet in SUBNETS {
        let one = steered(ns1.dns(), subnet);
        assert!(!one.0.is_empty(), "{subnet}: no answer");
        assert_eq!(
            one,
            steered(ns2.dns(), subnet),
            "{subnet}: the servers differ"
        );
    }
    assert_eq!(
        steered(ns1.dns(), "81.2.69.0/24").0,
        [ip(b, 2, 1)],
        "GB → eu-west"
    );

    // ns1 is gone: ns2 alone still serves the zone, steering as before.
    ns1.terminate();
    assert!(
        eventually(WITHIN, || dns::udp(
            ns1.dns(),
            &dns::question("meridian.test.", hickory_proto::rr::RecordType::SOA)
        )
        .is_err()),
        "ns1 still answers"
    );
    for subnet in SUBNETS {
        assert!(
            !steered(ns2.dns(), subnet).0.is_empty(),
            "{subnet}: ns2 alone does not answer"
        );
    }
    assert_eq!(steered(ns2.dns(), "81.2.69.0/24").0, [ip(b, 2, 1)]);
    let soa = dns::udp(
        ns2.dns(),
        &dns::question("meridian.test.", hickory_proto::rr::RecordType::NS),
    )
    .unwrap();
    assert_eq!(
        soa.message.answers.len(),
        2,
        "two NS records: {:?}",
        soa.message
    );
}

#[test]
fn a_nameserver_cut_off_from_a_region_does_not_steer_away_from_it() {
    let b = 31;
    let (topology, edges, ns1, ns2) = running_pair(b);
    let (eu, us) = (topology.edge(2), topology.edge(1));
    assert!(eventually(WITHIN, || hears(&ns1, eu, "geodns ns2")
        && hears(&ns2, eu, "geodns ns1")));

    // The link between ns1 and eu-west breaks: ns1's own probes see it
    // down, ns2's see it up. One of two is no majority: both keep
    // answering eu-west to GB.
    edges[1].reach(Reach::AllBut(HashSet::from([ip(b, 0, 11)])));
    assert!(
        eventually(WITHIN, || probed_up(&ns1, eu) == Some(false)),
        "ns1's probes never saw the cut"
    );
    assert_eq!(probed_up(&ns2, eu), Some(true));
    for server in [&ns1, &ns2] {
        assert_eq!(
            steered(server.dns(), "81.2.69.0/24").0,
            [eu.ip()],
            "a nameserver's partition steered GB away: {:?}",
            server.health()
        );
    }

    // eu-west goes for everyone: both see it, both steer GB to us-east.
    edges[1].reach(Reach::NoOne);
    for server in [&ns1, &ns2] {
        assert!(
            eventually(WITHIN, || steered(server.dns(), "81.2.69.0/24").0
                == [us.ip()]),
            "GB was not steered to us-east: {:?}",
            server.health()
        );
    }
    // It heals: both come back to it.
    edges[1].reach(Reach::Everyone);
    for server in [&ns1, &ns2] {
        assert!(eventually(WITHIN, || steered(server.dns(), "81.2.69.0/24")
            .0
            == [eu.ip()]));
    }

    // ns2 goes silent while ns1 is still cut off from eu-west: once ns2
    // stops counting, ns1 decides on its own probes alone.
    edges[1].reach(Reach::AllBut(HashSet::from([ip(b, 0, 11)])));
    assert!(eventually(WITHIN, || probed_up(&ns1, eu) == Some(false)));
    assert_eq!(
        steered(ns1.dns(), "81.2.69.0/24").0,
        [eu.ip()],
        "ns2 still counts"
    );
    ns2.terminate();
    assert!(
        eventually(WITHIN, || steered(ns1.dns(), "81.2.69.0/24").0 == [us.ip()]),
        "ns1 kept counting a silent ns2: {:?}",
        ns1.health()
    );
}

/// Sends `request` whole to `addr` and reads what comes back until the
/// server closes or 10 s pass; writing may fail once the server has
/// answered and closed.
fn exchange_raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_second_servers_admin_listener_refuses_foreign_hosts_and_oversized_heads() {
    let topology = Topology::demo(32).quiet_health();
    let ns2 = GeoDns::start_server(bin(), &topology, 1).unwrap();
    let admin = ns2.admin();
    assert_eq!(admin, SocketAddr::new(ip(32, 0, 2), 9153));
    let foreign = exchange_raw(
        admin,
        b"GET /health HTTP/1.1\r\nHost: attacker.example:9153\r\nConnection: close\r\n\r\n",
    );
    assert!(foreign.starts_with("HTTP/1.1 421"), "{foreign}");
    let origin = exchange_raw(
        admin,
        format!(
            "GET /health HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://attacker.example\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(origin.starts_with("HTTP/1.1 403"), "{origin}");
    // A head of 1 MiB: refused (431) or cut off, never read whole.
    let mut oversized = format!("GET /health HTTP/1.1\r\nHost: {admin}\r\nX-Filler: ").into_bytes();
    oversized.extend(std::iter::repeat_n(b'a', 1 << 20));
    oversized.extend_from_slice(b"\r\n\r\n");
    let answer = exchange_raw(admin, &oversized);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    // It still serves its view, and the zone.
    assert!(ns2.health().unwrap().is_array());
    let soa = dns::udp(
        ns2.dns(),
        &dns::question("meridian.test.", hickory_proto::rr::RecordType::SOA),
    )
    .unwrap();
    assert_eq!(soa.message.answers.len(), 1);
}

#[test]
fn with_a_cluster_bus_the_nameservers_hear_each_other_over_it() {
    if !kit::nats::NatsServer::installed() {
        eprintln!("skipped: nats-server is not installed (Debian: apt-get install nats-server)");
        return;
    }
    let b = 163;
    let (state, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = SocketAddr::from(([127, b, 0, 4], 4222));
    let mut bus = kit::nats::NatsServer::start(nats, store.path()).unwrap();
    let (topology, edges) = pair(b);
    let topology = topology.cluster(nats, state.path(), Duration::from_secs(2));
    let ns1 = GeoDns::start_server(bin(), &topology, 0).unwrap();
    let ns2 = GeoDns::start_server(bin(), &topology, 1).unwrap();
    let (eu, us) = (topology.edge(2), topology.edge(1));
    assert!(eventually(WITHIN, || hears(&ns1, eu, "geodns ns2")
        && hears(&ns2, eu, "geodns ns1")));

    // ns1 cut from eu-west: ns2's view, heard over the bus, keeps it up.
    edges[1].reach(Reach::AllBut(HashSet::from([ip(b, 0, 11)])));
    assert!(eventually(WITHIN, || probed_up(&ns1, eu) == Some(false)));
    assert_eq!(steered(ns1.dns(), "81.2.69.0/24").0, [eu.ip()]);

    // The views travel only on the bus: without it ns2 goes silent for
    // ns1 (its admin listener still answers, but is not polled), and ns1
    // decides on its own probes.
    bus.stop();
    assert!(
        eventually(WITHIN, || steered(ns1.dns(), "81.2.69.0/24").0 == [us.ip()]),
        "ns1 still heard ns2 without the bus: {:?}",
        ns1.health()
    );
    bus.restart().unwrap();
    assert!(
        eventually(WITHIN, || steered(ns1.dns(), "81.2.69.0/24").0 == [eu.ip()]),
        "ns1 never heard ns2 again: {:?}",
        ns1.health()
    );
}
