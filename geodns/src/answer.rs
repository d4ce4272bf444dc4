//! What a query gets: the pure core behind the handler.
//!
//! [`client_of`] decides which address an answer is tailored to (RFC 7871:
//! the EDNS Client Subnet when it is usable, else the query's source);
//! [`Placed`] carries that client on with the table's decision for it once
//! someone has looked it up ([`GeoTable::decide`]), so it is looked up once
//! per query at most; and [`answer`] turns one question into the sections
//! of a reply: what the zone holds
//! ([`Zone::lookup`](crate::zone::Zone::lookup)), and for a steered name
//! the edges of the first region in the client's order that is up, with
//! the ECS scope that answer depended on. No I/O: the health view is read
//! with atomic loads.
//!
//! A steered answer holds the region's edges that are up, at most
//! `geodns.max_answers` of them, turned by the query's ID: its turn,
//! `id % turns`, picks which of the edges up comes first (turn `t` of
//! `turns` starts at `t * up / turns`, so the starts spread over every
//! edge even in a region larger than `turns`), the others follow in
//! config order, wrapping around. Resolvers choose IDs at random (RFC
//! 5452), so successive queries put each edge first in turn, and clients,
//! which mostly take the first address, spread over the region. The
//! answer stays a pure function of the query: the UDP answer cache keys
//! it by the turn (see [`crate::answer_cache`]), and its byte-for-byte
//! comparison with the full path still compares like with like.

use crate::geo::is_public;
use crate::snapshot::Snapshot;
use crate::steering::choose;
use crate::table::{Decision, GeoTable};
use crate::zone::Outcome;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use ipnet::IpNet;
use std::net::IpAddr;

/// The address an answer is tailored to, and the ECS option to echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Where the client is taken to be.
    pub ip: IpAddr,
    /// The query's ECS option when the answer is based on it, its address
    /// cut to its source prefix.
    pub subnet: Option<ClientSubnet>,
    /// The query's ECS option, used or not: echoed in the reply (with scope
    /// 0 when unused), RFC 7871 §7.2.
    pub echo: Option<ClientSubnet>,
}

/// Which address to answer for: the ECS address when the query has one with
/// a source prefix above 0 and a public address (RFC 7871 §7.1.2: prefix 0
/// asks not to use it; a private address cannot be placed), else `source`.
/// The option to echo has its address cut to its source prefix, whatever
/// the query held (the handler refuses a query whose address has bits past
/// it, RFC 7871 §6; this keeps any that reached here from being echoed).
pub fn client_of(subnet: Option<ClientSubnet>, source: IpAddr) -> Client {
    let Some(s) = subnet else {
        return Client {
            ip: source,
            subnet: None,
            echo: None,
        };
    };
    let addr = truncated(s.addr(), s.source_prefix());
    let echo = Some(ClientSubnet::new(addr, s.source_prefix(), s.scope_prefix()));
    if s.source_prefix() > 0 && is_public(addr) {
        let used = ClientSubnet::new(addr, s.source_prefix(), 0);
        return Client {
            ip: addr,
            subnet: Some(used),
            echo,
        };
    }
    Client {
        ip: source,
        subnet: None,
        echo,
    }
}

/// A client and, once it has been looked up, the table's decision for it.
///
/// The UDP answer cache keys every query by its client's decision, so it
/// looks the decision up first; a query it has not seen then goes to the
/// handler with the decision in hand, and [`answer`] uses it instead of
/// asking the table again. Queries that skip the cache (TCP, uncommon
/// shapes) come without one, and [`answer`] asks the table only if the
/// name is steered.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'s> {
    /// Where the client is taken to be, and the subnet to echo.
    pub client: Client,
    /// The decision of the table the answer is built from for
    /// `client.ip`, if already looked up.
    decision: Option<Decision<'s>>,
}

impl<'s> Placed<'s> {
    /// `client`, its decision not looked up yet.
    pub fn undecided(client: Client) -> Self {
        Placed {
            client,
            decision: None,
        }
    }

    /// `client` with its decision in `table`, which must be the table of
    /// the snapshot the answer will be built from.
    pub fn decided(table: &'s GeoTable, client: Client) -> Self {
        Placed {
            client,
            decision: Some(table.decide(client.ip)),
        }
    }

    /// The decision, if it was looked up.
    pub fn decision(&self) -> Option<Decision<'s>> {
        self.decision
    }
}

/// `addr` with every bit after `prefix` cleared: clients should send it so
/// (RFC 7871 §6), and an answer must not depend on bits they did not mean.
fn truncated(addr: IpAddr, prefix: u8) -> IpAddr {
    // A prefix longer than the family's addresses leaves every bit.
    IpNet::new(addr, prefix).map_or(addr, |net| net.network())
}

/// The sections of a reply, borrowed from the snapshot.
#[derive(Debug, PartialEq)]
pub struct Reply<'s> {
    /// NOERROR, NXDOMAIN, REFUSED, or SERVFAIL (every region down, fail-closed).
    pub rcode: ResponseCode,
    /// Whether the AA bit is set: for every name in the zone.
    pub authoritative: bool,
    /// The answer section.
    pub answers: Vec<&'s Record>,
    /// The authority section: the SOA of negative answers.
    pub authority: &'s [Record],
    /// The additional section: glue.
    pub additionals: &'s [Record],
    /// The ECS scope prefix to echo: how much of the client's address the
    /// answer depended on; 0 when it did not depend on it.
    pub scope: u8,
    /// The region whose edges answered, for a steered answer.
    pub region: Option<usize>,
    /// The client's country, for a steered answer (else unknown).
    pub country: crate::flows::CountryId,
}

/// Which of `count` addresses a steered answer holds, in order, for a
/// query whose ID is `id`: at most `max`, starting where the query's turn
/// (`id % turns`) falls among the addresses, and wrapping around.
pub fn taken_in_turn(
    count: usize,
    id: u16,
    turns: usize,
    max: usize,
) -> impl Iterator<Item = usize> {
    let turns = turns.max(1);
    let start = usize::from(id) % turns * count / turns;
    (0..count.min(max)).map(move |k| (start + k) % count)
}

/// The reply to one question about `qname`/`qtype` in class `qclass`, for
/// the client `placed`, asked in a query whose ID is `id` (which of a
/// region's edges come first, see the module's documentation).
pub fn answer<'s>(
    snapshot: &'s Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    qclass: DNSClass,
    placed: &Placed<'s>,
    id: u16,
) -> Reply<'s> {
    let client = &placed.client;
    let mut reply = Reply {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers: Vec::new(),
        authority: &[],
        additionals: &[],
        scope: 0,
        region: None,
        country: crate::flows::unknown(),
    };
    // Another class, or a zone transfer: this server does not transfer its
    // zone (more servers are run from the same config file instead).
    if qclass != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        reply.rcode = ResponseCode::Refused;
        reply.authoritative = false;
        return reply;
    }
    let zone = &snapshot.zone;
    let lookup = zone.lookup(qname, qtype);
    reply.answers = lookup.chain;
    match lookup.outcome {
        Outcome::Refused => {
            reply.rcode = ResponseCode::Refused;
            reply.authoritative = false;
        }
        Outcome::Answer {
            answers,
            additionals,
        } => {
            reply.answers.extend(answers);
            reply.additionals = additionals;
        }
        Outcome::Steered { name, record_type } => {
            let decision = placed
                .decision
                .unwrap_or_else(|| snapshot.table.decide(client.ip));
            reply.country = decision.country;
            if client.subnet.is_some() {
                reply.scope = decision.scope;
            }
            let health = &snapshot.health;
            let fail_open = snapshot.config.health.fail_open;
            match choose(decision.order, |r| health.region_up(r), fail_open) {
                Some(choice) => {
                    let records = zone.steered_records(name, choice.region, record_type);
                    // Only the edges that are up; all of them when failing
                    // open with everything down.
                    let up: Vec<&Record> = records
                        .iter()
                        .filter(|r| choice.fail_open || health.edge_up(choice.region, r.edge))
                        .map(|r| &r.record)
                        .collect();
                    let before = reply.answers.len();
                    let max = snapshot.config.geodns.max_answers;
                    reply
                        .answers
                        .extend(taken_in_turn(up.len(), id, zone.turns(), max).map(|i| up[i]));
                    if reply.answers.len() == before {
                        // The region has no address of this family: NODATA.
                        reply.authority = zone.negative_soa();
                    }
                    reply.region = Some(choice.region);
                }
                None => reply.rcode = ResponseCode::ServFail,
            }
        }
        Outcome::NoData => reply.authority = zone.negative_soa(),
        Outcome::NxDomain => {
            reply.rcode = ResponseCode::NXDomain;
            reply.authority = zone.negative_soa();
        }
        Outcome::Elsewhere => {}
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::DnsMetrics;
    use std::str::FromStr;
    use std::sync::OnceLock;

    /// The demo, plus AAAA edges for ap-southeast and a few static records;
    /// built once (the table takes a moment in debug builds). Tests share
    /// it, so none of them changes its health.
    fn snapshot() -> &'static Snapshot {
        static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
        SNAPSHOT.get_or_init(build)
    }

    fn build() -> Snapshot {
        let text = config::DEMO_TOML
                .replace(
                    "edge_addresses = [\"127.0.3.1\", \"127.0.3.3\"]",
                    "edge_addresses = [\"127.0.3.1\", \"127.0.3.3\", \"::3:1\"]",
                )
                .replacen(
                    "[geodns]",
                    "[[zone.records]]\nname = \"www.meridian.test\"\ntype = \"CNAME\"\nvalue = \"cdn.meridian.test\"\n\
                     [[zone.records]]\nname = \"docs.meridian.test\"\ntype = \"CNAME\"\nvalue = \"docs.example.com\"\n\n[geodns]",
                    1,
                );
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        Snapshot::load(config, &DnsMetrics::new().unwrap()).unwrap()
    }

    fn ecs(subnet: &str) -> Client {
        client_of(Some(subnet.parse().unwrap()), "127.0.0.1".parse().unwrap())
    }

    fn ask<'s>(
        snapshot: &'s Snapshot,
        name: &str,
        qtype: RecordType,
        client: &Client,
    ) -> Reply<'s> {
        let name = LowerName::from_str(name).unwrap();
        let lazily = answer(
            snapshot,
            &name,
            qtype,
            DNSClass::IN,
            &Placed::undecided(*client),
            0,
        );
        // The decision looked up beforehand gives the same reply.
        let decided = Placed::decided(&snapshot.table, *client);
        assert_eq!(
            answer(snapshot, &name, qtype, DNSClass::IN, &decided, 0),
            lazily
        );
        lazily
    }

    fn addresses(reply: &Reply<'_>) -> Vec<String> {
        reply
            .answers
            .iter()
            .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            .map(|r| r.data.to_string())
            .collect()
    }

    #[test]
    fn the_echoed_subnet_is_cut_to_its_source_prefix() {
        let source: IpAddr = "192.0.2.53".parse().unwrap();
        // 51.2.79.0/20 as sent with bits 20-23 set.
        let sent = ClientSubnet::new("51.2.79.0".parse().unwrap(), 20, 0);
        let client = client_of(Some(sent), source);
        let echo = client.echo.unwrap();
        assert_eq!(echo.addr(), "51.2.64.0".parse::<IpAddr>().unwrap());
        assert_eq!((echo.source_prefix(), echo.scope_prefix()), (20, 0));
        assert_eq!(client.ip, echo.addr());
        let v6 = ClientSubnet::new("2001:db8:ffff::".parse().unwrap(), 33, 0);
        let echo = client_of(Some(v6), source).echo.unwrap();
        assert_eq!(echo.addr(), "2001:db8:8000::".parse::<IpAddr>().unwrap());
    }

    /// The decision a caller looked up already is the one answered with:
    /// the table is not asked again (here, the decision is another
    /// client's, so asking again would answer otherwise).
    #[test]
    fn a_decision_handed_on_is_used_not_looked_up_again() {
        let snapshot = snapshot();
        let gb = ecs("81.2.69.0/24");
        let handed = Placed {
            client: ecs("8.8.8.0/24"),
            decision: Some(snapshot.table.decide(gb.ip)),
        };
        let name = LowerName::from_str("cdn.meridian.test.").unwrap();
        let reply = answer(snapshot, &name, RecordType::A, DNSClass::IN, &handed, 0);
        assert_eq!(addresses(&reply), ["127.0.2.1", "127.0.2.3"], "gb's region");
        assert_eq!(reply.scope, snapshot.table.decide(gb.ip).scope);
        let own = answer(
            snapshot,
            &name,
            RecordType::A,
            DNSClass::IN,
            &Placed::undecided(handed.client),
            0,
        );
        assert_eq!(
            addresses(&own),
            ["127.0.1.1", "127.0.1.3"],
            "the client's own region"
        );
    }

    #[test]
    fn zone_transfers_are_refused() {
        let snapshot = snapshot();
        let client = client_of(None, "127.0.0.1".parse().unwrap());
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            for name in ["meridian.test.", "cdn.meridian.test.", "example.com."] {
                let reply = ask(snapshot, name, qtype, &client);
                assert_eq!(reply.rcode, ResponseCode::Refused, "{name} {qtype}");
                assert!(!reply.authoritative);
                assert!(reply.answers.is_empty() && reply.authority.is_empty());
            }
        }
    }

    #[test]
    fn usable_subnets_are_used_and_others_ignored() {
        let source: IpAddr = "192.0.2.53".parse().unwrap();
        let used = client_of(Some("81.2.69.142/24".parse().unwrap()), source);
        assert_eq!(
            used.ip,
            "81.2.69.0".parse::<IpAddr>().unwrap(),
            "cut to /24"
        );
        assert_eq!(used.subnet.unwrap().source_prefix(), 24);
        for ignored in ["81.2.69.0/0", "10.1.2.0/24", "127.0.0.1/32", "fd00::/48"] {
            let client = client_of(Some(ignored.parse().unwrap()), source);
            assert_eq!(client.ip, source, "{ignored}");
            assert_eq!(client.subnet, None, "{ignored}");
            assert!(client.echo.is_some(), "{ignored} is still echoed");
        }
        let plain = client_of(None, source);
        assert_eq!((plain.subnet, plain.echo), (None, None));
    }

    #[test]
    fn steered_answers_follow_the_subnet_with_a_scope() {
        let snapshot = snapshot();
        let gb = ask(
            snapshot,
            "cdn.meridian.test.",
            RecordType::A,
            &ecs("81.2.69.0/24"),
        );
        assert_eq!(addresses(&gb), ["127.0.2.1", "127.0.2.3"]);
        assert_eq!(gb.region, Some(1));
        assert!((1..=29).contains(&gb.scope), "{}", gb.scope);
        assert!(gb.authoritative);
        let us = ask(
            snapshot,
            "cdn.meridian.test.",
            RecordType::A,
            &ecs("8.8.8.0/24"),
        );
        assert_eq!(addresses(&us), ["127.0.1.1", "127.0.1.3"]);
        let v6 = ask(
            snapshot,
            "cdn.meridian.test.",
            RecordType::A,
            &ecs("2001:4860:4860::/48"),
        );
        assert_eq!(addresses(&v6), ["127.0.1.1", "127.0.1.3"]);
        assert!(v6.scope > 0 && v6.scope <= 48 + 16, "{}", v6.scope);
        // Every address of the region, in config order.
        let sg = ask(
            snapshot,
            "cdn.meridian.test.",
            RecordType::A,
            &ecs("203.116.1.0/24"),
        );
        assert_eq!(addresses(&sg), ["127.0.3.1", "127.0.3.3"]);
        let sg6 = ask(
            snapshot,
            "cdn.meridian.test.",
            RecordType::AAAA,
            &ecs("203.116.1.0/24"),
        );
        assert_eq!(addresses(&sg6), ["::3:1"]);
        // A region without IPv6 edges: NODATA with the SOA.
        let gb6 = ask(
            snapshot,
            "cdn.meridian.test.",
            RecordType::AAAA,
            &ecs("81.2.69.0/24"),
        );
        assert!(gb6.answers.is_empty());
        assert_eq!(gb6.authority.len(), 1);
    }

    #[test]
    fn answers_that_do_not_depend_on_the_client_have_scope_zero() {
        let snapshot = snapshot();
        let client = ecs("81.2.69.0/24");
        for (name, qtype) in [
            ("meridian.test.", RecordType::SOA),
            ("meridian.test.", RecordType::NS),
            ("nosuch.meridian.test.", RecordType::A),
            ("cdn.meridian.test.", RecordType::TXT),
            ("example.com.", RecordType::A),
            ("docs.meridian.test.", RecordType::A),
        ] {
            assert_eq!(
                ask(snapshot, name, qtype, &client).scope,
                0,
                "{name} {qtype}"
            );
        }
        // Without a usable subnet there is nothing to scope.
        let private = ecs("10.0.0.0/8");
        assert_eq!(
            ask(snapshot, "cdn.meridian.test.", RecordType::A, &private).scope,
            0
        );
        // Loopback sources get the default order: us-east.
        assert_eq!(
            addresses(&ask(
                snapshot,
                "cdn.meridian.test.",
                RecordType::A,
                &private
            )),
            ["127.0.1.1", "127.0.1.3"]
        );
    }

    #[test]
    fn negative_and_refused_answers() {
        let snapshot = snapshot();
        let client = client_of(None, "127.0.0.1".parse().unwrap());
        let nx = ask(snapshot, "nosuch.meridian.test.", RecordType::A, &client);
        assert_eq!(
            (nx.rcode, nx.answers.len(), nx.authority.len()),
            (ResponseCode::NXDomain, 0, 1)
        );
        assert_eq!(nx.authority[0].ttl, 60);
        let refused = ask(snapshot, "example.com.", RecordType::A, &client);
        assert_eq!(refused.rcode, ResponseCode::Refused);
        assert!(!refused.authoritative);
        let chaos = answer(
            snapshot,
            &LowerName::from_str("meridian.test.").unwrap(),
            RecordType::SOA,
            DNSClass::CH,
            &Placed::undecided(client),
            0,
        );
        assert_eq!(chaos.rcode, ResponseCode::Refused);
    }

    #[test]
    fn a_cname_to_a_steered_name_is_steered_and_scoped() {
        let snapshot = snapshot();
        let reply = ask(
            snapshot,
            "www.meridian.test.",
            RecordType::A,
            &ecs("81.2.69.0/24"),
        );
        assert_eq!(reply.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(addresses(&reply), ["127.0.2.1", "127.0.2.3"]);
        assert!(reply.scope > 0);
        let elsewhere = ask(
            snapshot,
            "docs.meridian.test.",
            RecordType::A,
            &ecs("81.2.69.0/24"),
        );
        assert_eq!(elsewhere.answers.len(), 1);
        assert_eq!(elsewhere.rcode, ResponseCode::NoError);
        assert!(elsewhere.authority.is_empty());
    }

    #[test]
    fn unhealthy_regions_are_skipped_and_down_edges_left_out() {
        let snapshot = &build();
        let health = &snapshot.health;
        let gb = ecs("81.2.69.0/24");
        let sg = ecs("203.116.1.0/24");
        health.set_edge(2, 0, false);
        let partial = addresses(&ask(snapshot, "cdn.meridian.test.", RecordType::A, &sg));
        assert_eq!(partial, ["127.0.3.3"]);
        health.set_edge(1, 0, false);
        let one_left = ask(snapshot, "cdn.meridian.test.", RecordType::A, &gb);
        assert_eq!(addresses(&one_left), ["127.0.2.3"]);
        assert_eq!(one_left.region, Some(1));
        health.set_edge(1, 1, false);
        let moved = ask(snapshot, "cdn.meridian.test.", RecordType::A, &gb);
        assert_eq!(addresses(&moved), ["127.0.1.1", "127.0.1.3"]);
        assert_eq!(moved.region, Some(0));
        // Everything down: fail open to the nearest, with all its edges.
        for region in 0..3 {
            for edge in 0..3 {
                health.set_edge(region, edge, false);
            }
        }
        let open = ask(snapshot, "cdn.meridian.test.", RecordType::A, &gb);
        assert_eq!(addresses(&open), ["127.0.2.1", "127.0.2.3"]);
    }

    #[test]
    fn addresses_are_taken_in_turn_at_most_max() {
        let taken = |count, id, turns, max| -> Vec<usize> {
            taken_in_turn(count, id, turns, max).collect()
        };
        // Six turns over three addresses: each first in two of them.
        assert_eq!(taken(3, 0, 6, 8), [0, 1, 2]);
        assert_eq!(taken(3, 1, 6, 8), [0, 1, 2]);
        assert_eq!(taken(3, 2, 6, 8), [1, 2, 0]);
        assert_eq!(taken(3, 5, 6, 8), [2, 0, 1]);
        assert_eq!(taken(3, 9, 6, 2), [1, 2], "id 9 is turn 3");
        assert_eq!(taken(1, 9, 6, 8), [0]);
        assert!(taken(0, 3, 6, 8).is_empty());
        let firsts = |count: usize, turns: usize| -> Vec<usize> {
            (0..turns as u16)
                .map(|id| taken(count, id, turns, 1)[0])
                .collect()
        };
        // Fewer up than the turns were made for: still every one first
        // in some turn.
        assert_eq!(firsts(4, 6), [0, 0, 1, 2, 2, 3]);
        // More addresses than turns: the starts spread over all of them,
        // so answers of `max` addresses cover the whole region.
        assert_eq!(firsts(80, 4), [0, 20, 40, 60]);
        let covered: std::collections::BTreeSet<usize> = (0..4u16)
            .flat_map(|id| taken_in_turn(80, id, 4, 20))
            .collect();
        assert_eq!(covered.len(), 80);
    }

    /// eu-west with three edges and `max_answers = 2`: each edge comes
    /// first in turn, answers hold two, and an edge that is down leaves
    /// the turns to the others.
    #[test]
    fn a_steered_answer_takes_the_edges_up_in_turn() {
        let text = config::DEMO_TOML
            .replace(
                "edge_addresses = [\"127.0.2.1\", \"127.0.2.3\"]",
                "edge_addresses = [\"127.0.2.1\", \"127.0.2.3\", \"127.0.2.5\"]",
            )
            .replace("# max_answers = 8", "max_answers = 2");
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        let snapshot = Snapshot::load(config, &DnsMetrics::new().unwrap()).unwrap();
        assert_eq!(snapshot.zone.turns(), 6);
        let name = LowerName::from_str("cdn.meridian.test.").unwrap();
        let gb = Placed::decided(&snapshot.table, ecs("81.2.69.0/24"));
        let asked = |id: u16| {
            addresses(&answer(
                &snapshot,
                &name,
                RecordType::A,
                DNSClass::IN,
                &gb,
                id,
            ))
        };
        assert_eq!(asked(0), ["127.0.2.1", "127.0.2.3"]);
        assert_eq!(asked(2), ["127.0.2.3", "127.0.2.5"]);
        assert_eq!(asked(4), ["127.0.2.5", "127.0.2.1"]);
        assert_eq!(asked(1), asked(0));
        assert_eq!(asked(6 * 1000 + 2), asked(2), "only the turn counts");
        snapshot.health.set_edge(1, 1, false);
        assert_eq!(asked(0), ["127.0.2.1", "127.0.2.5"]);
        assert_eq!(asked(3), ["127.0.2.5", "127.0.2.1"]);
        // A region of two is answered whole, in both orders.
        let us = Placed::decided(&snapshot.table, ecs("8.8.8.0/24"));
        let reply = answer(&snapshot, &name, RecordType::A, DNSClass::IN, &us, 3);
        assert_eq!(addresses(&reply), ["127.0.1.3", "127.0.1.1"]);
    }
}
