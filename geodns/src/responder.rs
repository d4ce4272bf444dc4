//! What a UDP worker does with one datagram, from the bytes received to
//! the bytes sent: one pipeline, run in one direction.
//!
//! 1. **Worth a reply?** Not from source port 0, at least a header, and
//!    not itself a response (answering answers is how reflection loops
//!    start). Anything else is dropped before it costs more.
//! 2. **Rate limit.** With `[geodns.rate_limit]`, the reply is paid for
//!    from its client network's bucket ([`crate::rate_limit`]): within the
//!    limit it goes on, over it it is dropped here, before anything is
//!    built, or marked to be slipped (step 6). Without it, one branch.
//! 3. **Memo.** A query of the common shape ([`QueryShape`]) is placed
//!    once: its client (the Client Subnet option, else the source) and
//!    the table's decision for it. The answer cache ([`crate::answer_cache`])
//!    looks the reply up by everything it depends on; a remembered one is
//!    sent again with its ID and ECS address patched.
//! 4. **Slow path.** Anything else is parsed by hickory and answered by
//!    the handler ([`GeoDnsHandler::full_reply`]), with the client placed
//!    in step 3 handed on, so the table is consulted once per query.
//! 5. **Remember.** A common-shape query's built reply is kept by the
//!    answer cache for next time.
//! 6. **Slip.** A reply step 2 marked is cut to its header, question and
//!    OPT record, with TC set ([`crate::rate_limit::truncate`]).
//!
//! Both socket loops ([`crate::udp`]) send whatever [`Responder::answer`]
//! writes and nothing else. It is public so that the fuzz test
//! (`geodns/tests/fuzz/`) drives exactly this path, without sockets.

use crate::answer::{Placed, client_of};
use crate::answer_cache::{AnswerCache, QueryShape, Recall};
use crate::handler::{FullReply, GeoDnsHandler};
use crate::rate_limit::{self, Verdict};
use crate::snapshot::Snapshot;
use crate::wire;
use std::net::SocketAddr;
use std::time::Instant;

/// Where the reply to a datagram came from, once it is in the caller's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A remembered reply, patched.
    Remembered,
    /// A reply built by hickory (and remembered if it could be).
    Built,
    /// Nothing to send.
    Nothing,
}

/// What one UDP worker keeps from one datagram to the next: its answer
/// cache. Each worker has its own, so nothing is shared or locked.
#[derive(Default)]
pub struct Responder {
    memo: AnswerCache,
}

impl Responder {
    /// A responder that remembers nothing yet: its first reply to any
    /// datagram is built the full way (hickory's parser and
    /// [`GeoDnsHandler`]).
    pub fn new() -> Self {
        Responder::default()
    }

    /// Writes the reply to `datagram`, received from `source`, into
    /// `reply` (emptied first), answered from `snapshot`; the return value
    /// says where the reply came from, or that there is nothing to send.
    pub fn answer(
        &mut self,
        handler: &GeoDnsHandler,
        snapshot: &Snapshot,
        datagram: &[u8],
        source: SocketAddr,
        reply: &mut Vec<u8>,
    ) -> Served {
        reply.clear();
        if !gets_a_reply(datagram, source) {
            return Served::Nothing;
        }
        let verdict = match &snapshot.rate_limit {
            Some(limiter) => limiter.check(source.ip(), Instant::now()),
            None => Verdict::Send,
        };
        if verdict == Verdict::Drop {
            handler.metrics().rate_limit_dropped();
            return Served::Nothing;
        }
        let served = self.reply(handler, snapshot, datagram, source, reply);
        if served != Served::Nothing && verdict == Verdict::Slip {
            // Never fails on a reply hickory built; if it did, nothing is
            // better than something unread.
            if rate_limit::truncate(reply).is_none() {
                reply.clear();
                handler.metrics().rate_limit_dropped();
                return Served::Nothing;
            }
            handler.metrics().rate_limit_slipped();
        }
        served
    }

    /// Steps 3 to 5: the reply, remembered or built (and then remembered
    /// if it can be).
    fn reply(
        &mut self,
        handler: &GeoDnsHandler,
        snapshot: &Snapshot,
        datagram: &[u8],
        source: SocketAddr,
        reply: &mut Vec<u8>,
    ) -> Served {
        let Some(shape) = QueryShape::read(datagram) else {
            return match handler.full_reply(snapshot, datagram, source, None, reply) {
                Some(_) => Served::Built,
                None => Served::Nothing,
            };
        };
        let client = client_of(shape.ecs().map(|ecs| ecs.subnet()), source.ip());
        let placed = Placed::decided(&snapshot.table, client);
        let miss = match self.memo.recall(snapshot, &shape, &placed, reply) {
            Recall::Hit(counts) => {
                handler.count(snapshot, &counts);
                return Served::Remembered;
            }
            Recall::Miss(miss) => miss,
        };
        match handler.full_reply(snapshot, datagram, source, Some(placed), reply) {
            Some(FullReply::Answer(counts)) => {
                self.memo.remember(snapshot, miss, &shape, reply, counts);
                Served::Built
            }
            // A FORMERR to a query hickory could not parse: sent, never
            // remembered.
            Some(FullReply::FormatError) => Served::Built,
            None => Served::Nothing,
        }
    }
}

/// Whether `datagram` from `source` is answered at all: not from port 0
/// (answering it could hit anything), long enough to have a header, and
/// not itself a response. A flood is mostly such datagrams, so they cost
/// neither a bucket's token nor a parse.
fn gets_a_reply(datagram: &[u8], source: SocketAddr) -> bool {
    source.port() != 0 && datagram.len() >= wire::HEADER && datagram[2] & wire::QR == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer_cache::tests::{ecs_option, query};
    use crate::metrics::DnsMetrics;
    use crate::snapshot::Live;
    use std::sync::Arc;

    /// A handler answering from the config `toml`, and what it answers
    /// from.
    fn serving(toml: &str) -> (GeoDnsHandler, Arc<Live>) {
        let config = config::Config::from_toml(toml, config::ConfigSource::Embedded).unwrap();
        let metrics = Arc::new(DnsMetrics::new().unwrap());
        let snapshot = Snapshot::load(config, &metrics).unwrap();
        let live = Arc::new(Live::from_pointee(snapshot));
        (GeoDnsHandler::new(live.clone(), metrics), live)
    }

    /// Datagrams that get no reply (from port 0, shorter than a header,
    /// responses) are dropped before the rate limit: they take nothing
    /// from their network's bucket.
    #[test]
    fn datagrams_without_a_reply_take_no_token() {
        let (handler, live) = serving(&config::DEMO_TOML.replace(
            "# [geodns.rate_limit]",
            "[geodns.rate_limit]\nresponses_per_second = 1\nburst = 1\nslip = 0",
        ));
        let snapshot = live.load();
        let good = query("cdn.meridian.test", None, &[]);
        let mut response = good.clone();
        response[2] |= wire::QR;
        let source: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut port_zero = source;
        port_zero.set_port(0);
        let mut responder = Responder::new();
        let mut out = Vec::new();
        for (datagram, from) in [
            (&good, port_zero),
            (&good[..11].to_vec(), source),
            (&response, source),
        ] {
            for _ in 0..3 {
                let served = responder.answer(&handler, &snapshot, datagram, from, &mut out);
                assert_eq!(served, Served::Nothing);
                assert!(out.is_empty());
            }
        }
        // The one token is still there, and then spent.
        let served = responder.answer(&handler, &snapshot, &good, source, &mut out);
        assert_eq!(served, Served::Built);
        let served = responder.answer(&handler, &snapshot, &good, source, &mut out);
        assert_eq!(served, Served::Nothing, "over the limit: dropped");
    }

    /// The responder's replies against the handler's full path, which places
    /// the client itself and never remembers: byte for byte the same.
    mod against_the_full_path {
        use super::*;
        use hickory_proto::op::{Edns, Message, Query};
        use hickory_proto::rr::rdata::opt::EdnsOption;
        use hickory_proto::rr::{Name, RecordType};

        fn handler() -> (GeoDnsHandler, Arc<Live>) {
            serving(&config::DEMO_TOML.replace(
                "edge_addresses = [\"127.0.3.1\", \"127.0.3.3\"]",
                "edge_addresses = [\"127.0.3.1\", \"127.0.3.3\", \"::3:1\"]",
            ))
        }

        struct Variant {
            name: &'static str,
            rtype: RecordType,
            rd: bool,
            edns: Option<(u16, Option<&'static str>)>,
        }

        fn datagram(variant: &Variant, id: u16, subnet: Option<&str>) -> Vec<u8> {
            let mut message = Message::query();
            message.metadata.id = id;
            message.metadata.recursion_desired = variant.rd;
            message.add_query(Query::query(
                Name::from_ascii(variant.name).unwrap(),
                variant.rtype,
            ));
            if let Some((size, _)) = variant.edns {
                let mut edns = Edns::new();
                edns.set_max_payload(size);
                if let Some(subnet) = subnet {
                    edns.options_mut()
                        .insert(EdnsOption::Subnet(subnet.parse().unwrap()));
                }
                message.set_edns(edns);
            }
            message.to_vec().unwrap()
        }

        /// Every variant, asked with many IDs (of every turn: which edge
        /// a steered answer puts first) and ECS addresses, gets from the
        /// cache exactly the bytes the full path gives; and after a health
        /// change, the new answer.
        #[test]
        fn remembered_replies_are_byte_for_byte_what_hickory_builds() {
            let (handler, live) = handler();
            let names = [
                "cdn.meridian.test.",
                "CdN.MeRiDiAn.TeSt.",
                "meridian.test.",
                "nope.meridian.test.",
                "example.com.",
            ];
            let types = [
                RecordType::A,
                RecordType::AAAA,
                RecordType::SOA,
                RecordType::NS,
            ];
            let ecs_sets: [&[&str]; 6] = [
                &["81.2.69.0/24", "81.2.70.0/24", "2.26.0.0/24"],
                &["8.8.8.0/24", "1.0.0.0/24", "8.8.0.0/16"],
                &["1.0.16.0/24", "203.116.1.0/24"],
                &["10.0.0.0/8", "192.168.1.0/24"],
                &["0.0.0.0/0"],
                &["2001:4860:4860::/56", "2a00:1450::/32"],
            ];
            let sources: [SocketAddr; 2] = [
                "127.0.0.1:5000".parse().unwrap(),
                "81.2.69.142:5353".parse().unwrap(),
            ];
            let mut variants = Vec::new();
            for name in names {
                for rtype in types {
                    for rd in [false, true] {
                        variants.push(Variant {
                            name,
                            rtype,
                            rd,
                            edns: None,
                        });
                        for size in [512, 1232, 4096, 100] {
                            variants.push(Variant {
                                name,
                                rtype,
                                rd,
                                edns: Some((size, None)),
                            });
                        }
                    }
                }
            }
            let mut responder = Responder::new();
            let mut out = Vec::new();
            let mut expected = Vec::new();
            let mut remembered = 0;
            for round in 0..2 {
                for variant in &variants {
                    for (set, subnets) in ecs_sets.iter().enumerate() {
                        let with_ecs = variant.edns.is_some() && variant.rtype == RecordType::A;
                        if !with_ecs && set > 0 {
                            continue;
                        }
                        for (i, subnet) in subnets.iter().enumerate() {
                            for (turn, source) in sources.into_iter().enumerate() {
                                let id = (round * 1000 + set * 100 + i * 10 + turn) as u16 + 7;
                                let bytes = datagram(variant, id, with_ecs.then_some(*subnet));
                                let snapshot = live.load();
                                let served =
                                    responder.answer(&handler, &snapshot, &bytes, source, &mut out);
                                let full = handler.full_reply(
                                    &snapshot,
                                    &bytes,
                                    source,
                                    None,
                                    &mut expected,
                                );
                                assert!(matches!(full, Some(FullReply::Answer(_))));
                                assert_eq!(
                                    out, expected,
                                    "{} {:?} rd={} edns={:?} ecs={subnet} from {source}",
                                    variant.name, variant.rtype, variant.rd, variant.edns
                                );
                                if served == Served::Remembered {
                                    remembered += 1;
                                }
                            }
                        }
                    }
                }
                // Between rounds, eu-west goes down: nothing remembered
                // before may be served after.
                live.load().health.set_edge(1, 0, false);
            }
            assert!(
                remembered > 500,
                "only {remembered} replies were remembered"
            );
        }

        /// A query's Client Subnet option as RFC 7871 §6 forbids: FORMERR,
        /// the same bytes from the answer cache as from hickory and the
        /// handler, never remembered, and no subnet echoed.
        #[test]
        fn malformed_client_subnets_get_formerr_on_both_paths() {
            let (handler, live) = handler();
            let ask = |options: &[u8]| query("cdn.meridian.test", Some(1232), options);
            let ecs = ecs_option;
            let mut variants: Vec<(&str, Vec<u8>)> = vec![
                // The hostile review's query: 51.2.79.0 sent as a /20.
                ("bits past the prefix", ask(&ecs(1, 20, 0, &[51, 2, 0x4f]))),
                (
                    "an extra address octet",
                    ask(&ecs(1, 24, 0, &[81, 2, 69, 0])),
                ),
                ("an extra octet at /0", ask(&ecs(1, 0, 0, &[81]))),
                ("a scope in the query", ask(&ecs(1, 24, 8, &[81, 2, 69]))),
                ("a scope at /0", ask(&ecs(2, 0, 64, &[]))),
                ("family 3", ask(&ecs(3, 8, 0, &[81]))),
                ("a /33 for IPv4", ask(&ecs(1, 33, 0, &[81, 2, 69, 142, 0]))),
                ("a /129 for IPv6", ask(&ecs(2, 129, 0, &[0x20; 17]))),
                ("a short address", ask(&ecs(1, 24, 0, &[81, 2]))),
            ];
            let mut two = ecs(1, 24, 0, &[81, 2, 69]);
            two.extend(ecs(1, 16, 0, &[8, 8]));
            variants.push(("two subnets", ask(&two)));
            let mut cut = ecs(1, 24, 0, &[81, 2, 69]);
            cut[3] += 2;
            variants.push(("a subnet running past its record", ask(&cut)));
            let source: SocketAddr = "127.0.0.1:5000".parse().unwrap();
            let mut responder = Responder::new();
            let mut out = Vec::new();
            let mut full = Vec::new();
            for (what, datagram) in &variants {
                for round in 0..2 {
                    let snapshot = live.load();
                    let served = responder.answer(&handler, &snapshot, datagram, source, &mut out);
                    assert_eq!(served, Served::Built, "{what}, round {round}");
                    assert!(
                        handler
                            .full_reply(&snapshot, datagram, source, None, &mut full)
                            .is_some()
                    );
                    assert_eq!(out, full, "{what}");
                    assert_eq!(out[3] & 0x0f, 1, "{what}: FORMERR");
                    let reply = Message::from_vec(&out).unwrap();
                    assert!(reply.answers.is_empty(), "{what}");
                    // The option hickory cannot even read gets hickory's
                    // bare FORMERR; the others an OPT without a subnet.
                    let subnet = reply
                        .edns
                        .as_ref()
                        .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet));
                    assert!(subnet.is_none(), "{what}: nothing echoed");
                }
            }
            // The well-formed /20 of the same client is answered, and
            // echoed as sent.
            let good = ask(&ecs(1, 20, 0, &[51, 2, 0x40]));
            for round in 0..2 {
                let snapshot = live.load();
                let served = responder.answer(&handler, &snapshot, &good, source, &mut out);
                assert_eq!(served == Served::Remembered, round == 1);
                let reply = Message::from_vec(&out).unwrap();
                assert_eq!(
                    reply.metadata.response_code,
                    hickory_proto::op::ResponseCode::NoError
                );
                match reply
                    .edns
                    .as_ref()
                    .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet))
                {
                    Some(EdnsOption::Subnet(echo)) => {
                        assert_eq!(echo.addr(), std::net::IpAddr::from([51, 2, 64, 0]));
                        assert_eq!(echo.source_prefix(), 20);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// What a slip sends: the full reply to each kind of query, cut by
    /// [`rate_limit::truncate`].
    mod slip {
        use super::*;
        use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        use hickory_proto::rr::{Name, RecordType};
        use rate_limit::truncate;

        fn query(name: &str, rtype: RecordType, edns: Option<Option<&str>>) -> Vec<u8> {
            let mut message = Message::query();
            message.metadata.id = 0x5eed;
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
            if let Some(subnet) = edns {
                let mut edns = Edns::new();
                edns.set_max_payload(1232);
                if let Some(subnet) = subnet {
                    edns.options_mut()
                        .insert(EdnsOption::Subnet(subnet.parse().unwrap()));
                }
                message.set_edns(edns);
            }
            message.to_vec().unwrap()
        }

        /// The replies GeoDNS sends to a few kinds of query, from the
        /// answer cache (remembered or built), as the UDP path has them.
        fn replies() -> Vec<(Vec<u8>, Vec<u8>)> {
            let (handler, live) = serving(config::DEMO_TOML);
            let mut responder = Responder::new();
            let source: SocketAddr = "192.0.2.1:4000".parse().unwrap();
            let queries = [
                query("cdn.meridian.test.", RecordType::A, None),
                query("cdn.meridian.test.", RecordType::A, Some(None)),
                query(
                    "cdn.meridian.test.",
                    RecordType::A,
                    Some(Some("81.2.69.0/24")),
                ),
                query("meridian.test.", RecordType::NS, Some(None)),
                query("nope.meridian.test.", RecordType::A, Some(None)),
                query("example.com.", RecordType::A, Some(None)),
            ];
            let mut replies = Vec::new();
            for _round in 0..2 {
                for query in &queries {
                    let mut out = Vec::new();
                    responder.answer(&handler, &live.load(), query, source, &mut out);
                    replies.push((query.clone(), out));
                }
            }
            replies
        }

        #[test]
        fn a_slip_is_the_reply_truncated_to_its_question_and_opt() {
            for (query, reply) in replies() {
                let query = Message::from_vec(&query).unwrap();
                let full = Message::from_vec(&reply).unwrap();
                let mut slipped = reply.clone();
                truncate(&mut slipped).unwrap();
                let had_records =
                    full.answers.len() + full.authorities.len() + full.additionals.len();
                match had_records {
                    0 => assert_eq!(
                        slipped,
                        [&reply[..2], &[reply[2] | wire::TC], &reply[3..]].concat()
                    ),
                    _ => assert!(slipped.len() < reply.len(), "{query:?}"),
                }
                let slip = Message::from_vec(&slipped).unwrap();
                let name = query.queries[0].name();
                assert_eq!(slip.metadata.id, 0x5eed, "{name}");
                assert_eq!(slip.metadata.message_type, MessageType::Response);
                assert!(slip.metadata.truncation, "{name}: TC");
                assert_eq!(
                    slip.metadata.authoritative, full.metadata.authoritative,
                    "{name}: AA as in the full reply"
                );
                assert!(slip.metadata.recursion_desired, "{name}: RD copied");
                assert!(!slip.metadata.recursion_available, "{name}: RA");
                assert_eq!(slip.metadata.response_code, full.metadata.response_code);
                assert_eq!(slip.queries, query.queries, "{name}: the question");
                assert!(slip.answers.is_empty(), "{name}");
                assert!(slip.authorities.is_empty(), "{name}");
                assert!(slip.additionals.is_empty(), "{name}");
                assert_eq!(slip.edns.is_some(), query.edns.is_some(), "{name}: OPT");
                if let (Some(slip), Some(full)) = (&slip.edns, &full.edns) {
                    assert_eq!(slip.max_payload(), full.max_payload());
                    assert_eq!(
                        slip.option(EdnsCode::Subnet),
                        full.option(EdnsCode::Subnet),
                        "{name}: the echoed ECS"
                    );
                }
            }
            // The kinds asked: an answer, a referral-like NS with glue, an
            // NXDOMAIN with its SOA, a REFUSED without AA.
            let codes: Vec<_> = replies()
                .iter()
                .map(|(_, r)| Message::from_vec(r).unwrap().metadata.response_code)
                .collect();
            assert!(codes.contains(&ResponseCode::NXDomain));
            assert!(codes.contains(&ResponseCode::Refused));
        }

        #[test]
        fn arbitrary_bytes_never_panic_truncation() {
            let mut seeds: Vec<Vec<u8>> = replies().into_iter().map(|(_, r)| r).collect();
            seeds.push(vec![0; 12]);
            for mut bytes in crate::testing::hostile_variants(&seeds, 100) {
                let len = bytes.len();
                if truncate(&mut bytes).is_some() {
                    assert!(bytes.len() <= len, "truncation never grows a reply");
                }
            }
        }
    }
}
