//! GeoDNS over real sockets: one `meridian geodns` process per test, on
//! 127.60.T.1 (T = the test's number), its regions' edges on 127.61–63.T.x;
//! the rate-limit tests use blocks of their own (127.117 and 127.118), the
//! Client Subnet and zone transfer tests 127.150 and 127.151.
//! The edges do not exist; health checks probe every 300 s, so every edge
//! stays up for the length of a test.
//!
//! Each test asserts one behaviour, with hickory-proto messages built by
//! hand so that every flag and size is under the test's control.

use crate::harness::{GeoDns, RunToEnd, Topology, bin, dns, ip, meridian, tempdir};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use kit::RateLimit;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

pub(crate) use dns::{addresses, ecs, edns, question, sorted_addresses as sorted, subnet_of};

/// AAAA edges of ap-southeast: more than fit in 1232 bytes.
const IPV6_EDGES: usize = 60;

/// The demo topology with GeoDNS on 127.60.`t`.1, several edges per
/// region (127.61-63.`t`.x), 60 IPv6 edges in ap-southeast (and answers
/// of up to 64 addresses, so that all of them are answered), static
/// records and overrides.
fn topology_for(t: u8) -> Topology {
    let mut sg = vec![ip(63, t, 1)];
    sg.extend((1..=IPV6_EDGES).map(|i| format!("fd00:63:{t}::{i:x}").parse::<IpAddr>().unwrap()));
    Topology::demo(60)
        .geodns_on(ip(60, t, 1))
        .quiet_health()
        .max_answers(64)
        .edge_addresses(1, &[ip(61, t, 1), ip(61, t, 2)])
        .edge_addresses(2, &[ip(62, t, 1)])
        .edge_addresses(3, &sg)
        .zone_record("www.meridian.test.", "CNAME", "cdn.meridian.test.")
        .zone_record("mail.meridian.test.", "A", "192.0.2.25")
        .zone_record("meridian.test.", "MX", "10 mail.meridian.test.")
        .zone_record("meridian.test.", "TXT", "v=spf1 -all")
        .override_country("BR", &["ap-southeast"])
        .override_net("192.0.2.0/24", &["eu-west"])
}

/// GeoDNS on [`topology_for`]`(t)`, and its edges' addresses.
struct Server {
    geodns: GeoDns,
    t: u8,
}

impl Server {
    fn start(t: u8) -> Server {
        Server::start_with(t, &topology_for(t))
    }

    fn start_with(t: u8, topology: &Topology) -> Server {
        Server {
            geodns: GeoDns::start(bin(), topology).unwrap(),
            t,
        }
    }

    fn dns(&self) -> SocketAddr {
        self.geodns.dns()
    }

    /// Address `n` of `region` (1 us-east, 2 eu-west, 3 ap-southeast).
    fn edge(&self, region: u8, n: u8) -> IpAddr {
        ip(60 + region, self.t, n)
    }

    /// `message` over UDP; the reply.
    fn udp(&self, message: &Message) -> Message {
        udp(self.dns(), message).0
    }

    /// `name`/`rtype` over UDP, without EDNS.
    fn ask(&self, name: &str, rtype: RecordType) -> Message {
        self.udp(&question(name, rtype))
    }

    /// `name`/`rtype` over UDP for a client in `subnet`, with ECS.
    fn ask_for(&self, subnet: &str, name: &str, rtype: RecordType) -> Message {
        self.udp(&ecs(name, rtype, subnet))
    }
}

/// Sends `message` over UDP; the reply and its size in bytes.
pub(crate) fn udp(server: SocketAddr, message: &Message) -> (Message, usize) {
    let reply = dns::udp(server, message).unwrap();
    (reply.message, reply.len)
}

/// Sends `message` over TCP.
pub(crate) fn tcp(server: SocketAddr, message: &Message) -> Message {
    dns::tcp(server, message).unwrap()
}

/// The value of a metric line, e.g. `meridian_dns_rate_limited_total{action="dropped"}`.
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    crate::harness::metric(text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits until GeoDNS logs a line containing `text`.
pub(crate) fn wait_for_log(geodns: &mut GeoDns, text: &str) {
    geodns
        .process
        .wait_for_line(text, Duration::from_secs(60), |l| l.contains(text))
        .unwrap();
}

#[test]
fn dns_answers_are_authoritative_and_never_recursive() {
    let geodns = Server::start(1);
    let mut query = question("cdn.meridian.test.", RecordType::A);
    query.metadata.recursion_desired = true;
    let reply = geodns.udp(&query);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative, "AA");
    assert!(!reply.metadata.recursion_available, "RA");
    assert!(
        reply.metadata.recursion_desired,
        "RD is copied from the query"
    );
}

#[test]
fn dns_nxdomain_carries_the_soa_with_the_negative_ttl() {
    let geodns = Server::start(2);
    let reply = geodns.ask("nosuch.meridian.test.", RecordType::A);
    let soa = negative(&reply, ResponseCode::NXDomain);
    let RData::SOA(data) = &soa.data else {
        panic!("not a SOA: {soa:?}");
    };
    assert_eq!(soa.name.to_ascii(), "meridian.test.");
    // RFC 2308: the negative TTL is the SOA's MINIMUM (and no more than its TTL).
    assert_eq!(soa.ttl, data.minimum);
    assert_eq!(soa.ttl, 60);
}

#[test]
fn dns_nodata_carries_the_soa() {
    let geodns = Server::start(3);
    let reply = geodns.ask("cdn.meridian.test.", RecordType::TXT);
    let soa = negative(&reply, ResponseCode::NoError);
    assert_eq!(soa.record_type(), RecordType::SOA);
}

/// The one record of a negative answer of `rcode` (authoritative, and
/// nothing in its answer section).
fn negative(reply: &Message, rcode: ResponseCode) -> &Record {
    assert_eq!(reply.metadata.response_code, rcode);
    assert!(reply.metadata.authoritative);
    assert!(reply.answers.is_empty());
    let [record] = reply.authorities.as_slice() else {
        panic!("not one record in {:?}", reply.authorities);
    };
    record
}

#[test]
fn dns_names_outside_the_zone_are_refused() {
    let geodns = Server::start(4);
    let reply = geodns.ask("example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.authoritative);
    assert!(reply.answers.is_empty() && reply.authorities.is_empty());
}

#[test]
fn dns_apex_has_soa_and_ns_with_glue() {
    let geodns = Server::start(5);
    let soa = geodns.ask("meridian.test.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let ns = geodns.ask("meridian.test.", RecordType::NS);
    assert_eq!(ns.answers.len(), 1);
    let RData::NS(target) = &ns.answers[0].data else {
        panic!("{:?}", ns.answers);
    };
    assert_eq!(target.0.to_ascii(), "ns1.meridian.test.");
    let glue: Vec<_> = ns
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .collect();
    assert_eq!(glue.len(), 1);
    assert_eq!(glue[0].name.to_ascii(), "ns1.meridian.test.");
    assert_eq!(glue[0].data, RData::A("127.60.5.1".parse().unwrap()));
}

#[test]
fn dns_names_are_case_insensitive() {
    let geodns = Server::start(6);
    let lower = geodns.ask_for("81.2.69.0/24", "cdn.meridian.test.", RecordType::A);
    let mixed = geodns.ask_for("81.2.69.0/24", "CdN.MeRiDiAn.TeSt.", RecordType::A);
    assert_eq!(addresses(&mixed), [geodns.edge(2, 1)]);
    assert_eq!(addresses(&lower), addresses(&mixed));
    // The question is echoed as asked.
    assert_eq!(mixed.queries[0].name().to_ascii(), "CdN.MeRiDiAn.TeSt.");
}

#[test]
fn dns_tcp_answers_like_udp() {
    let geodns = Server::start(7);
    let query = ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
    let over_tcp = tcp(geodns.dns(), &query);
    let over_udp = geodns.udp(&query);
    assert_eq!(over_tcp.metadata.id, query.metadata.id);
    assert_eq!(addresses(&over_tcp), [geodns.edge(2, 1)]);
    assert_eq!(addresses(&over_tcp), addresses(&over_udp));
    assert!(over_tcp.metadata.authoritative);
    // Several queries on one connection.
    let mut stream = TcpStream::connect(geodns.dns()).unwrap();
    for name in ["meridian.test.", "nosuch.meridian.test."] {
        let q = question(name, RecordType::SOA);
        let reply = dns::tcp_exchange(&mut stream, &q.to_vec().unwrap()).unwrap();
        assert_eq!(reply.metadata.id, q.metadata.id);
    }
}

#[test]
fn dns_opt_is_in_the_reply_iff_the_query_had_one() {
    let geodns = Server::start(8);
    let plain = geodns.ask("meridian.test.", RecordType::SOA);
    assert!(plain.edns.is_none());
    let with = geodns.udp(&edns(
        question("meridian.test.", RecordType::SOA),
        4096,
        None,
    ));
    let opt = with.edns.as_ref().expect("an OPT record");
    assert_eq!(opt.version(), 0);
    assert_eq!(opt.max_payload(), 1232, "ours, capped at 1232");
    // Errors keep it too.
    let refused = geodns.udp(&edns(question("example.com.", RecordType::A), 1232, None));
    assert!(refused.edns.is_some());
}

#[test]
fn dns_a_reply_too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let geodns = Server::start(9);
    let sg = "203.116.1.0/24";
    let name = "cdn.meridian.test.";
    // Client sizes 512, 600 and 4096, and no EDNS at all (512).
    for (size, cap) in [
        (Some(512), 512),
        (Some(600), 600),
        (Some(4096), 1232),
        (None, 512),
    ] {
        let query = match size {
            Some(size) => edns(question(name, RecordType::AAAA), size, Some(sg)),
            None => question(name, RecordType::AAAA),
        };
        let (reply, len) = udp(geodns.dns(), &query);
        assert!(len <= cap, "{len} bytes for a client size of {size:?}");
        if size.is_some() {
            // Without ECS the client is loopback, steered to us-east, which
            // has no IPv6 edges; with it, to the 80 of ap-southeast.
            assert!(reply.metadata.truncation, "TC for size {size:?}");
            assert!(reply.answers.is_empty(), "no partial RRset");
            assert!(reply.edns.is_some(), "the OPT record survives truncation");
            assert_eq!(subnet_of(&reply).map(|s| s.source_prefix()), Some(24));
        }
    }
    // Small answers are not truncated even at 512.
    let small = geodns.udp(&edns(question(name, RecordType::A), 512, Some(sg)));
    assert!(!small.metadata.truncation);
    assert_eq!(addresses(&small).len(), 1);
    // The same question over TCP: every address.
    let whole = tcp(geodns.dns(), &ecs(name, RecordType::AAAA, sg));
    assert!(!whole.metadata.truncation);
    assert_eq!(addresses(&whole).len(), IPV6_EDGES);
}

#[test]
fn dns_a_big_answer_to_a_plain_query_is_truncated() {
    // Without EDNS there is no ECS: send this loopback client to the
    // region with 80 IPv6 edges with a network override.
    let topology = topology_for(10).override_net("127.0.0.0/8", &["ap-southeast"]);
    let mut geodns_sg = Server::start_with(10, &topology);
    let query = question("cdn.meridian.test.", RecordType::AAAA);
    let (reply, len) = udp(geodns_sg.dns(), &query);
    assert!(len <= 512, "{len}");
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());
    assert!(reply.edns.is_none(), "no OPT for a query without one");
    let whole = tcp(geodns_sg.dns(), &query);
    assert_eq!(addresses(&whole).len(), IPV6_EDGES);
    assert!(geodns_sg.geodns.process.alive());
}

#[test]
fn dns_edns_version_1_gets_badvers() {
    let geodns = Server::start(12);
    let mut query = question("meridian.test.", RecordType::SOA);
    let mut opt = Edns::new();
    opt.set_version(1);
    opt.set_max_payload(1232);
    query.set_edns(opt);
    let reply = geodns.udp(&query);
    // RCODE 16 is BADVERS in an OPT's extended RCODE (hickory's decoder
    // names 16 after TSIG's BADSIG, which shares the number).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(u16::from(ResponseCode::BADVERS), 16);
    assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));
    assert!(reply.answers.is_empty());
}

#[test]
fn dns_two_questions_get_formerr() {
    let geodns = Server::start(13);
    let mut query = question("meridian.test.", RecordType::SOA);
    query.add_query(Query::query(
        Name::from_ascii("cdn.meridian.test.").unwrap(),
        RecordType::A,
    ));
    let reply = geodns.udp(&query);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert!(reply.answers.is_empty());
}

#[test]
fn dns_update_and_notify_get_notimp() {
    let geodns = Server::start(14);
    for op_code in [OpCode::Update, OpCode::Notify] {
        let mut query = question("meridian.test.", RecordType::SOA);
        query.metadata.op_code = op_code;
        let reply = geodns.udp(&query);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NotImp,
            "{op_code:?}"
        );
    }
}

#[test]
fn dns_any_returns_at_most_one_rrset() {
    let geodns = Server::start(15);
    for name in [
        "cdn.meridian.test.",
        "meridian.test.",
        "mail.meridian.test.",
    ] {
        let reply = geodns.ask(name, RecordType::ANY);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(!reply.answers.is_empty(), "{name}");
        let first = (
            reply.answers[0].name.clone(),
            reply.answers[0].record_type(),
        );
        assert!(
            reply
                .answers
                .iter()
                .all(|r| (r.name.clone(), r.record_type()) == first),
            "{name}: {:?}",
            reply.answers
        );
    }
}

#[test]
fn dns_ipv6_client_subnet_is_steered() {
    let geodns = Server::start(16);
    let reply = geodns.ask_for("2001:4860:4860::/48", "cdn.meridian.test.", RecordType::A);
    // 2001:4860::/32 is Google's, in the US: us-east's two edges.
    assert_eq!(sorted(&reply), [geodns.edge(1, 1), geodns.edge(1, 2)]);
    let subnet = subnet_of(&reply).unwrap();
    assert_eq!(subnet.source_prefix(), 48);
    assert_eq!(subnet.addr(), "2001:4860:4860::".parse::<IpAddr>().unwrap());
    assert!((1..=48).contains(&subnet.scope_prefix()), "{subnet:?}");
}

#[test]
fn dns_aaaa_answers_come_from_ipv6_edges() {
    let geodns = Server::start(17);
    let sg = tcp(
        geodns.dns(),
        &ecs("cdn.meridian.test.", RecordType::AAAA, "203.116.1.0/24"),
    );
    let v6 = addresses(&sg);
    assert_eq!(v6.len(), IPV6_EDGES);
    assert!(v6.iter().all(IpAddr::is_ipv6));
    assert!(v6.contains(&"fd00:63:17::1".parse::<IpAddr>().unwrap()));
    // eu-west has no IPv6 edge: NODATA with the SOA.
    let gb = geodns.ask_for("81.2.69.0/24", "cdn.meridian.test.", RecordType::AAAA);
    assert!(gb.answers.is_empty());
    assert_eq!(gb.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn dns_every_edge_of_a_region_is_returned() {
    let geodns = Server::start(18);
    let us = geodns.ask_for("8.8.8.0/24", "cdn.meridian.test.", RecordType::A);
    assert_eq!(sorted(&us), [geodns.edge(1, 1), geodns.edge(1, 2)]);
    assert!(us.answers.iter().all(|r| r.ttl == 30));
}

/// A query for `cdn.meridian.test.` of type `qtype`, built byte by byte,
/// with an OPT record (1232 bytes) holding `options` when given.
fn raw_query(id: u16, qtype: u16, options: Option<&[u8]>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(options.is_some())]);
    q.extend_from_slice(b"\x03cdn\x08meridian\x04test\x00");
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some(options) = options {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
        q.extend_from_slice(options);
    }
    q
}

/// A Client Subnet option, with its length as the bytes given make it.
fn subnet_option(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
    let mut option = vec![0, 8];
    option.extend_from_slice(&u16::try_from(4 + address.len()).unwrap().to_be_bytes());
    option.extend_from_slice(&family.to_be_bytes());
    option.extend_from_slice(&[source, scope]);
    option.extend_from_slice(address);
    option
}

/// Sends raw `bytes` over UDP and over TCP; both replies.
fn raw_udp_and_tcp(server: SocketAddr, bytes: &[u8]) -> [Message; 2] {
    let reply = dns::udp_raw(IpAddr::from([127, 0, 0, 1]), server, bytes).unwrap();
    let over_udp = Message::from_vec(&reply).unwrap();
    let mut stream = TcpStream::connect(server).unwrap();
    let over_tcp = dns::tcp_exchange(&mut stream, bytes).unwrap();
    [over_udp, over_tcp]
}

#[test]
fn dns_client_subnets_that_break_rfc_7871_get_formerr() {
    let geodns = GeoDns::start(bin(), &Topology::demo(150).quiet_health()).unwrap();
    let ecs = subnet_option;
    let mut two = ecs(1, 24, 0, &[81, 2, 69]);
    two.extend(ecs(1, 24, 0, &[8, 8, 8]));
    let mut cut = ecs(1, 24, 0, &[81, 2, 69]);
    cut[3] += 2;
    for (what, option) in [
        // 51.2.79.0 as a /20: bits 20-23 set past the prefix.
        ("bits past the prefix", ecs(1, 20, 0, &[51, 2, 0x4f])),
        ("an extra address octet", ecs(1, 24, 0, &[81, 2, 69, 142])),
        ("a scope in the query", ecs(1, 24, 16, &[81, 2, 69])),
        ("family 3", ecs(3, 24, 0, &[81, 2, 69])),
        ("a /33 for IPv4", ecs(1, 33, 0, &[81, 2, 69, 142, 0])),
        ("a /129 for IPv6", ecs(2, 129, 0, &[0x20; 17])),
        ("two subnets", two),
        ("a subnet running past its record", cut),
    ] {
        // Each asked twice: the second time must not come from a cache.
        for id in [0x5100, 0x5101] {
            let query = raw_query(id, 1, Some(&option));
            for (reply, over) in raw_udp_and_tcp(geodns.dns(), &query)
                .iter()
                .zip(["UDP", "TCP"])
            {
                assert_eq!(reply.metadata.id, id, "{what} over {over}");
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::FormErr,
                    "{what} over {over}"
                );
                assert!(reply.answers.is_empty(), "{what} over {over}");
                assert_eq!(subnet_of(reply), None, "{what} over {over}: nothing echoed");
            }
        }
    }
    // The same client's /20 as RFC 7871 says to send it: answered, and
    // echoed as sent, with a scope.
    let good = raw_query(0x5200, 1, Some(&ecs(1, 20, 0, &[51, 2, 0x40])));
    for reply in raw_udp_and_tcp(geodns.dns(), &good) {
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&reply).len(), 2, "eu-west's two edges");
        let echo = subnet_of(&reply).unwrap();
        assert_eq!(echo.addr(), IpAddr::from([51, 2, 64, 0]));
        assert_eq!(echo.source_prefix(), 20);
    }
}

#[test]
fn dns_zone_transfers_are_refused() {
    let geodns = GeoDns::start(bin(), &Topology::demo(151).quiet_health()).unwrap();
    // AXFR (252) and IXFR (251), with and without EDNS; the steered name
    // and the apex.
    for (qtype, name) in [(252u16, "AXFR"), (251, "IXFR")] {
        for options in [None, Some(&[][..])] {
            let mut query = raw_query(0x7100, qtype, options);
            for reply in raw_udp_and_tcp(geodns.dns(), &query) {
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::Refused,
                    "{name}"
                );
                assert!(
                    reply.answers.is_empty() && reply.authorities.is_empty(),
                    "{name}"
                );
                assert!(!reply.metadata.authoritative, "{name}");
            }
            // The apex: `meridian.test.`, by cutting the `cdn` label.
            query.drain(12..16);
            for reply in raw_udp_and_tcp(geodns.dns(), &query) {
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::Refused,
                    "{name}"
                );
                assert_eq!(reply.queries[0].name().to_ascii(), "meridian.test.");
                assert!(reply.answers.is_empty(), "{name}");
            }
        }
    }
}

#[test]
fn dns_ecs_scope_says_what_the_answer_depended_on() {
    let geodns = Server::start(19);
    let cdn = "cdn.meridian.test.";
    let gb = geodns.ask_for("81.2.69.0/24", cdn, RecordType::A);
    assert_eq!(addresses(&gb), [geodns.edge(2, 1)]);
    let subnet = subnet_of(&gb).unwrap();
    assert_eq!(
        (subnet.addr(), subnet.source_prefix()),
        ("81.2.69.0".parse().unwrap(), 24),
        "family, source prefix and address are echoed"
    );
    assert!((1..=29).contains(&subnet.scope_prefix()), "{subnet:?}");
    // Source prefix 0: not used; answered for the source (loopback:
    // default order, us-east), scope 0.
    let zero = geodns.ask_for("81.2.69.0/0", cdn, RecordType::A);
    assert!(addresses(&zero).contains(&geodns.edge(1, 1)));
    assert_eq!(subnet_of(&zero).unwrap().scope_prefix(), 0);
    // A private subnet cannot be placed: ignored, scope 0.
    let private = geodns.ask_for("10.1.2.0/24", cdn, RecordType::A);
    assert!(addresses(&private).contains(&geodns.edge(1, 1)));
    assert_eq!(subnet_of(&private).unwrap().scope_prefix(), 0);
    // Answers that do not depend on the client: scope 0.
    for (name, rtype) in [
        ("meridian.test.", RecordType::SOA),
        ("meridian.test.", RecordType::NS),
        ("nosuch.meridian.test.", RecordType::A),
        ("example.com.", RecordType::A),
        ("mail.meridian.test.", RecordType::A),
    ] {
        let reply = geodns.ask_for("81.2.69.0/24", name, rtype);
        assert_eq!(
            subnet_of(&reply).unwrap().scope_prefix(),
            0,
            "{name} {rtype}"
        );
    }
}

#[test]
fn dns_static_records_and_cnames() {
    let geodns = Server::start(20);
    // A CNAME to the steered name: the alias, then the client's edges.
    let www = geodns.ask_for("81.2.69.0/24", "www.meridian.test.", RecordType::A);
    assert_eq!(www.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(www.answers[0].name.to_ascii(), "www.meridian.test.");
    assert_eq!(addresses(&www), [geodns.edge(2, 1)]);
    assert!(
        subnet_of(&www).unwrap().scope_prefix() > 0,
        "steered, so scoped"
    );
    let mx = geodns.ask("meridian.test.", RecordType::MX);
    let RData::MX(data) = &mx.answers[0].data else {
        panic!("{:?}", mx.answers);
    };
    assert_eq!(
        (data.preference, data.exchange.to_ascii().as_str()),
        (10, "mail.meridian.test.")
    );
    assert_eq!(
        mx.additionals
            .iter()
            .filter(|r| r.record_type() == RecordType::A)
            .count(),
        1,
        "the exchange's address as additional data"
    );
    let txt = geodns.ask("meridian.test.", RecordType::TXT);
    let RData::TXT(text) = &txt.answers[0].data else {
        panic!("{:?}", txt.answers);
    };
    assert_eq!(&*text.txt_data[0], b"v=spf1 -all");
    let mail = geodns.ask("mail.meridian.test.", RecordType::A);
    assert_eq!(addresses(&mail), ["192.0.2.25".parse::<IpAddr>().unwrap()]);
    assert_eq!(mail.answers[0].ttl, 3600);
}

#[test]
fn dns_overrides_from_the_config_decide_first() {
    let geodns = Server::start(21);
    // Brazil is nearest us-east, but the config sends it to ap-southeast.
    let br = geodns.ask_for("200.160.2.0/24", "cdn.meridian.test.", RecordType::A);
    assert_eq!(addresses(&br), [geodns.edge(3, 1)]);
    // A network override beats distance and the default.
    let net = geodns.ask_for("192.0.2.0/24", "cdn.meridian.test.", RecordType::A);
    assert_eq!(addresses(&net), [geodns.edge(2, 1)]);
    assert_eq!(subnet_of(&net).unwrap().scope_prefix(), 24);
}

/// Queries `cdn` for a GB client over and over until told to stop; every
/// reply's first address, or a description of what went wrong.
fn query_continuously(
    server: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<IpAddr, String>>> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut results = Vec::new();
        let mut buffer = vec![0u8; 4096];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let query = ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
            socket.send_to(&query.to_vec().unwrap(), server).unwrap();
            let result = match socket.recv_from(&mut buffer) {
                Ok((len, _)) => match Message::from_vec(&buffer[..len]) {
                    Ok(reply) if reply.metadata.id != query.metadata.id => Err(format!(
                        "id {} for {}",
                        reply.metadata.id, query.metadata.id
                    )),
                    Ok(reply) => match addresses(&reply).as_slice() {
                        [one] if reply.metadata.response_code == ResponseCode::NoError => Ok(*one),
                        other => Err(format!("{:?}: {other:?}", reply.metadata.response_code)),
                    },
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(format!("no reply: {e}")),
            };
            results.push(result);
        }
        results
    })
}

#[test]
fn dns_reload_under_load_never_fails_a_query() {
    let mut server = Server::start(22);
    let geodns = &mut server.geodns;
    let (old, new) = (ip(62, 22, 1), ip(62, 22, 5));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = query_continuously(geodns.dns(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));

    // Move eu-west's edge and reload.
    let moved = topology_for(22).edge_addresses(2, &[new]);
    geodns.rewrite(&moved).unwrap();
    geodns.hang_up();
    wait_for_log(geodns, "configuration reloaded");
    let deadline = Instant::now() + Duration::from_secs(5);
    let gb = ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
    while dns::udp(geodns.dns(), &gb).unwrap().addresses() != [new] {
        assert!(Instant::now() < deadline, "the new address never answered");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A broken config: refused, and the new address keeps answering.
    geodns.rewrite(&moved.latitude(2, 153.35)).unwrap();
    geodns.hang_up();
    wait_for_log(geodns, "reload refused");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = load.join().unwrap();

    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        results.len()
    );
    let answers: Vec<IpAddr> = results.into_iter().map(Result::unwrap).collect();
    assert!(
        answers.iter().all(|a| *a == old || *a == new),
        "{answers:?}"
    );
    assert_eq!(answers.first(), Some(&old));
    assert_eq!(
        answers.last(),
        Some(&new),
        "a refused reload changes nothing"
    );
    // Once the new address answers, the old one never comes back.
    let first_new = answers.iter().position(|a| *a == new).unwrap();
    assert!(answers[first_new..].iter().all(|a| *a == new));

    let refused = geodns
        .process
        .lines()
        .iter()
        .find(|l| l.contains("reload refused"))
        .cloned()
        .unwrap();
    assert!(refused.contains("region[1].latitude"), "{refused}");
    let metrics = geodns.metrics().unwrap();
    assert!(
        metrics.contains("meridian_dns_reloads_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meridian_dns_reload_failures_total 1"),
        "{metrics}"
    );
    assert!(geodns.process.alive());
}

#[test]
fn route_explains_a_decision_with_health_from_the_running_geodns() {
    let geodns = Server::start(23);
    let route = |ip: &str, config: &std::path::Path| {
        let ran = meridian().args(["route", ip, "--config"]).arg(config).ran();
        ran.succeeds()
    };
    let text = route("81.2.69.142", geodns.geodns.config_path());
    let position = |needle: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
    };
    assert!(position("1. eu-west") < position("2. us-east"), "{text}");
    assert!(text.contains("country       GB"), "{text}");
    assert!(text.contains("country's centroid"), "{text}");
    assert!(text.contains("rule          distance"), "{text}");
    assert!(text.contains("ECS scope     /"), "{text}");
    assert!(
        text.contains(" up"),
        "health from the running GeoDNS:\n{text}"
    );
    assert!(
        text.contains(&format!("→ {} (eu-west)", geodns.edge(2, 1))),
        "{text}"
    );
    // The scope it reports is the one GeoDNS answers with.
    let scope: u8 = text
        .lines()
        .find_map(|l| l.strip_prefix("ECS scope     /"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let reply = geodns.ask_for("81.2.69.142/32", "cdn.meridian.test.", RecordType::A);
    assert_eq!(subnet_of(&reply).unwrap().scope_prefix(), scope);
    // An override, named as the rule.
    let brazil = route("200.160.2.3", geodns.geodns.config_path());
    assert!(brazil.contains("geodns.overrides.countries BR"), "{brazil}");
    // Without a GeoDNS, health is unknown.
    drop(geodns);
    let dir = tempdir();
    let path = topology_for(24).write(dir.path()).unwrap();
    let offline = route("81.2.69.142", &path);
    assert!(offline.contains("unknown"), "{offline}");
}

#[test]
fn dns_hostile_input_never_takes_geodns_down() {
    // What `bench dns-flood` used to check on every run, here once: under
    // a flood of hostile datagrams no probe is answered wrongly, no
    // response is answered, and GeoDNS lives on. (How many probes get
    // through a flood is the benchmark's measurement.)
    let mut server = Server::start(25);
    let addr = server.dns();

    // TCP first, and kept open while the UDP flood runs: a length prefix
    // promising 65535 bytes and a short body, an idle connection, garbage,
    // and a zero length.
    let mut held = Vec::new();
    for opening in [
        &[0xff, 0xff, 1, 2, 3][..],
        &[],
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0, 0],
    ] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(opening).unwrap();
        held.push(stream);
    }
    // The fuzz test's corpus and mutators, from a fixed seed.
    let mut inputs = kit::mutation::inputs(0x5eed_1234_abcd_0042, 8020).into_iter();
    for body in inputs.by_ref().take(20) {
        // Hostile messages over TCP, properly framed.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut framed = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        let _ = stream.write_all(&framed);
    }

    // The flood from one socket; responses (QR set) from another, whose
    // replies must never come; a GB probe every 50 datagrams from a third,
    // whose every reply must be right.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let responses = UdpSocket::bind("127.0.0.1:0").unwrap();
    let probes = UdpSocket::bind("127.0.0.1:0").unwrap();
    for socket in [&flood, &responses, &probes] {
        socket.set_nonblocking(true).unwrap();
    }
    let (mut sent, mut replies, mut probed, mut answered) = (0, 0, 0u16, 0);
    let mut buffer = vec![0u8; 65_535];
    for (i, mut datagram) in inputs.enumerate() {
        let socket = match datagram.get_mut(2) {
            Some(flags) if i % 2 == 0 => {
                *flags |= 0x80;
                &responses
            }
            _ => &flood,
        };
        if socket.send_to(&datagram, addr).is_ok() {
            sent += 1;
        }
        if i % 50 == 0 {
            probed += 1;
            let mut probe = ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
            probe.metadata.id = probed;
            let _ = probes.send_to(&probe.to_vec().unwrap(), addr);
            // Let the server keep up, and drain what it answered.
            std::thread::sleep(Duration::from_millis(2));
            while flood.recv_from(&mut buffer).is_ok() {
                replies += 1;
            }
            while let Ok((len, _)) = probes.recv_from(&mut buffer) {
                let reply = Message::from_vec(&buffer[..len]).unwrap();
                assert!((1..=probed).contains(&reply.metadata.id), "{reply:?}");
                assert_eq!(addresses(&reply), [server.edge(2, 1)], "{reply:?}");
                answered += 1;
            }
        }
    }
    assert!(sent > 7000, "{sent}");
    eprintln!(
        "hostile input: {sent} datagrams sent, {replies} replies read, \
         {answered} of {probed} probes answered"
    );

    // Still alive, still right, over UDP and TCP, with the odd TCP
    // connections still open.
    assert!(server.geodns.process.alive(), "geodns died");
    let reply = server.ask_for("81.2.69.0/24", "cdn.meridian.test.", RecordType::A);
    assert_eq!(addresses(&reply), [server.edge(2, 1)]);
    let reply = tcp(
        addr,
        &ecs("cdn.meridian.test.", RecordType::A, "8.8.8.0/24"),
    );
    assert!(addresses(&reply).contains(&server.edge(1, 1)));
    // The answered probe shows GeoDNS has read past every response sent
    // before it: none of them was answered.
    assert!(
        responses.recv_from(&mut buffer).is_err(),
        "a response was answered"
    );
    let log = server.geodns.process.lines();
    let panics: Vec<&String> = log.iter().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{panics:?}");
    drop(held);
}

/// The demo topology on 127.`block`.x.y (GeoDNS on 127.`block`.0.1) with
/// `rate_limit`, if given: 1 reply per second, a burst of 5, and `slip`.
/// Clients use 127.`block`.8.8 and 127.`block`.9.9, two other /24s of the
/// block.
fn rate_limited(block: u8, slip: Option<u32>) -> Topology {
    let topology = Topology::demo(block).quiet_health();
    match slip {
        Some(slip) => topology.rate_limit(RateLimit {
            responses_per_second: 1,
            burst: Some(5),
            slip: Some(slip),
        }),
        None => topology,
    }
}

/// The queries of a flood: how many there are, and how many full answers a
/// limit of 1 reply per second and a burst of 5 lets through at most.
const FLOOD: u16 = 50;
const FLOOD_BURST: usize = 5;

/// What came back from a flood of [`FLOOD`] queries from one address.
struct Flood {
    /// Replies with the answer.
    full: usize,
    /// Replies with TC set and no records.
    slipped: usize,
    /// From the first query sent to the last reply read: the server
    /// handled every query within it.
    span: Duration,
}

impl Flood {
    /// The queries that got no reply.
    fn dropped(&self) -> usize {
        usize::from(FLOOD) - self.full - self.slipped
    }

    /// Asserts that the full answers were what a bucket of
    /// [`FLOOD_BURST`], refilled at 1 per second, pays for: the whole
    /// burst, and at most one more per second of the flood's span.
    fn assert_limited_by_the_bucket(&self) {
        let most_allowed = FLOOD_BURST + self.span.as_secs() as usize;
        assert!(
            (FLOOD_BURST..=most_allowed).contains(&self.full),
            "{} full answers in {:?}",
            self.full,
            self.span
        );
    }
}

/// Sends [`FLOOD`] UDP queries for the steered name from `source` as fast
/// as it can, then reads replies until none came for 3 s. Every reply must
/// be a full answer or a slip, each to a different query.
fn flood_from(source: Ipv4Addr, server: SocketAddr) -> Flood {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let started = Instant::now();
    for id in 1..=FLOOD {
        let mut query = edns(question("cdn.meridian.test.", RecordType::A), 1232, None);
        query.metadata.id = id;
        socket.send_to(&query.to_vec().unwrap(), server).unwrap();
    }
    let mut flood = Flood {
        full: 0,
        slipped: 0,
        span: Duration::ZERO,
    };
    let mut seen = Vec::new();
    let mut buffer = vec![0u8; 65_535];
    while let Ok((len, from)) = socket.recv_from(&mut buffer) {
        flood.span = started.elapsed();
        assert_eq!(from, server);
        let reply = Message::from_vec(&buffer[..len]).unwrap();
        let id = reply.metadata.id;
        assert!((1..=FLOOD).contains(&id) && !seen.contains(&id), "{id}");
        seen.push(id);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert!(reply.metadata.authoritative, "AA, as the full answer has");
        assert_eq!(reply.queries.len(), 1, "the question is echoed");
        assert_eq!(reply.queries[0].name().to_ascii(), "cdn.meridian.test.");
        assert!(reply.edns.is_some(), "OPT, as the query had one");
        if reply.metadata.truncation {
            assert!(reply.answers.is_empty(), "a slip has no records");
            assert!(reply.authorities.is_empty() && reply.additionals.is_empty());
            flood.slipped += 1;
        } else {
            assert_eq!(addresses(&reply).len(), 2, "the full answer");
            flood.full += 1;
        }
    }
    flood
}

/// One UDP query from `source`, which must be answered.
fn udp_from(source: Ipv4Addr, server: SocketAddr, message: &Message) -> Message {
    dns::udp_from(source.into(), server, message)
        .unwrap()
        .message
}

/// One TCP query from `source`.
fn tcp_from(source: Ipv4Addr, server: SocketAddr, message: &Message) -> Message {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let query = message.to_vec().unwrap();
    let reply = runtime
        .block_on(dns::ask_tcp(source.into(), server, &query))
        .unwrap();
    Message::from_vec(&reply).unwrap()
}

const DROPPED: &str = r#"meridian_dns_rate_limited_total{action="dropped"}"#;
const SLIPPED: &str = r#"meridian_dns_rate_limited_total{action="slipped"}"#;

#[test]
fn dns_rate_limit_slips_and_drops_a_flood_from_one_network() {
    let geodns = GeoDns::start(bin(), &rate_limited(117, Some(2))).unwrap();
    let limited = Ipv4Addr::new(127, 117, 8, 8);

    let flood = flood_from(limited, geodns.dns());
    // The bucket starts full, and refills at 1 per second.
    flood.assert_limited_by_the_bucket();
    // Every second limited reply slipped, the others dropped.
    let limited_replies = usize::from(FLOOD) - flood.full;
    assert_eq!(flood.slipped, limited_replies / 2);
    assert!(flood.dropped() >= 1 && flood.slipped >= 1);
    let metrics = geodns.metrics().unwrap();
    assert_eq!(metric(&metrics, SLIPPED), flood.slipped as u64, "{metrics}");
    assert_eq!(
        metric(&metrics, DROPPED),
        flood.dropped() as u64,
        "{metrics}"
    );

    // Another /24 has its own bucket.
    let query = edns(question("cdn.meridian.test.", RecordType::A), 1232, None);
    let other = udp_from(Ipv4Addr::new(127, 117, 9, 9), geodns.dns(), &query);
    assert!(!other.metadata.truncation);
    assert_eq!(addresses(&other).len(), 2, "us-east's two edges");

    // TCP is never limited, not even for the flooded network.
    for _ in 0..10 {
        let reply = tcp_from(limited, geodns.dns(), &query);
        assert!(!reply.metadata.truncation);
        assert_eq!(addresses(&reply).len(), 2);
    }
}

#[test]
fn dns_rate_limit_is_off_without_the_table_and_follows_reloads() {
    let mut geodns = GeoDns::start(bin(), &rate_limited(118, None)).unwrap();
    let client = Ipv4Addr::new(127, 118, 8, 8);
    let unlimited = flood_from(client, geodns.dns());
    assert_eq!((unlimited.full, unlimited.slipped), (usize::from(FLOOD), 0));

    // Reloaded with a limit that slips every limited reply.
    let wait_for_reloads = |geodns: &GeoDns, n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&geodns.metrics().unwrap(), "meridian_dns_reloads_total") < n {
            assert!(Instant::now() < deadline, "no reload");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    geodns.rewrite(&rate_limited(118, Some(1))).unwrap();
    geodns.hang_up();
    wait_for_reloads(&geodns, 1);
    let limited = flood_from(client, geodns.dns());
    limited.assert_limited_by_the_bucket();
    assert_eq!(limited.dropped(), 0, "slip = 1 sends every limited reply");
    assert_eq!(
        metric(&geodns.metrics().unwrap(), SLIPPED),
        limited.slipped as u64
    );

    // And reloaded without it again.
    geodns.rewrite(&rate_limited(118, None)).unwrap();
    geodns.hang_up();
    wait_for_reloads(&geodns, 2);
    let unlimited = flood_from(client, geodns.dns());
    assert_eq!((unlimited.full, unlimited.slipped), (usize::from(FLOOD), 0));
    assert!(geodns.process.alive());
}
