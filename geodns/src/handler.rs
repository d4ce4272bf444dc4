//! The DNS request handler: the full answer to a query, whichever way it
//! came. hickory-server hands it each query parsed from a TCP connection
//! (`RequestHandler`); the UDP responder hands it each datagram the answer
//! cache cannot answer ([`GeoDnsHandler::full_reply`]), which hickory then
//! parses here.
//!
//! Thin on purpose. It checks the query is one it answers (opcode, one
//! question, EDNS version, a Client Subnet option as RFC 7871 §6 requires,
//! see [`crate::ecs`]), takes the current [`Snapshot`], asks
//! [`answer`](crate::answer) what the reply holds, and writes it:
//! authoritative (AA), never recursive (RA clear), an OPT record iff the
//! query had one, the ECS option echoed with its scope, and over UDP at most
//! min(client's size, 1232) bytes. A reply that does not fit is sent with TC
//! set and no records, so the client retries over TCP (RFC 2181 §9) and
//! never caches a partial RRset.
//!
//! Both transports take one path, [`GeoDnsHandler::respond`]: check,
//! answer, count, cut to the client's size, and hand hickory's response
//! builder the result. Only where the bytes go differs: to hickory-server's
//! response handle for TCP, into the responder's buffer for UDP. The error
//! replies are here too: FORMERR (header only) to a datagram hickory cannot
//! parse, SERVFAIL when a TCP reply cannot be sent.

use crate::answer::{Placed, Reply, answer, client_of};
use crate::ecs::{self, EcsError};
use crate::metrics::{Counts, DnsMetrics};
use crate::snapshot::{Live, Snapshot};
use crate::wire;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest UDP response Meridian sends: the 2020 DNS flag day's value,
/// which avoids IP fragmentation on practically every path.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The largest UDP response to a query without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_PAYLOAD: u16 = 512;

/// Header, plus an OPT record with an ECS option at its largest.
const FIXED_OVERHEAD: usize = wire::HEADER + 11 + 4 + 4 + 16;

/// Answers queries from the current snapshot; reloads replace it whole.
#[derive(Clone)]
pub struct GeoDnsHandler {
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
}

/// A reply worked out ([`GeoDnsHandler::respond`]): everything hickory's
/// response builder needs, whichever transport sends it.
struct Prepared<'s> {
    metadata: Metadata,
    edns: Option<Edns>,
    reply: Option<Reply<'s>>,
    counts: Counts,
    /// The question section to send instead of the query's: an empty one
    /// when the query's cannot be echoed (see [`echoes_faithfully`]).
    question: Option<Queries>,
    /// The most bytes the reply may take: the client's UDP size, or no
    /// limit over TCP.
    limit: u16,
}

/// What a UDP reply built the full way is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FullReply {
    /// The answer to a query, counted as this.
    Answer(Counts),
    /// FORMERR to a datagram hickory cannot parse: no answer, not counted.
    FormatError,
}

impl GeoDnsHandler {
    /// A handler answering from whatever snapshot `live` holds at each query.
    pub fn new(live: Arc<Live>, metrics: Arc<DnsMetrics>) -> Self {
        GeoDnsHandler { live, metrics }
    }

    /// The current snapshot, for one query.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.live.load()
    }

    /// Adds one answered query to the metrics.
    pub(crate) fn count(&self, snapshot: &Snapshot, counts: &Counts) {
        self.metrics.count(&snapshot.steered, counts);
        if let Some(region) = counts.region {
            snapshot.flows.count(counts.country, region);
        }
    }

    /// The metrics, for what the UDP path counts itself.
    pub(crate) fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// The reply to `datagram`, received over UDP from `source`, built the
    /// full way (hickory parses it, [`GeoDnsHandler::respond`] answers it
    /// from `snapshot`) and written into `out`, which is emptied first;
    /// `None` when nothing is to be sent.
    ///
    /// `placed`, when given, is the client as the answer cache placed this
    /// very datagram, with the table's decision: read from its Client
    /// Subnet option with [`crate::ecs`], as the handler would read it, so
    /// it is used as is instead of being worked out again.
    pub(crate) fn full_reply(
        &self,
        snapshot: &Snapshot,
        datagram: &[u8],
        source: SocketAddr,
        placed: Option<Placed<'_>>,
        out: &mut Vec<u8>,
    ) -> Option<FullReply> {
        out.clear();
        let request = match Request::from_bytes(datagram.to_vec(), source, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => return format_error(datagram, out).then_some(FullReply::FormatError),
        };
        // Never answer answers: that is how reflection loops start.
        if request.metadata.message_type == MessageType::Response {
            return None;
        }
        let prepared = self.respond(snapshot, &request, placed);
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(prepared.limit);
        match prepared.response(&request).destructive_emit(&mut encoder) {
            Ok(_) => Some(FullReply::Answer(prepared.counts)),
            Err(error) => {
                tracing::debug!(%error, "could not encode a DNS response");
                out.clear();
                None
            }
        }
    }

    /// The one path of every query, UDP or TCP: checks it, answers it from
    /// `snapshot` (for the client `placed`, or the one its source and
    /// Client Subnet option give), counts it, and cuts it to what the
    /// client takes (TC and no records when the answer does not fit).
    fn respond<'s>(
        &self,
        snapshot: &'s Snapshot,
        request: &Request,
        placed: Option<Placed<'s>>,
    ) -> Prepared<'s> {
        let mut prepared = prepare(snapshot, request, placed);
        self.count(snapshot, &prepared.counts);
        if prepared.must_truncate(request) {
            prepared.metadata.truncation = true;
            prepared.reply = None;
        }
        prepared
    }
}

/// Checks `request` and answers it from `snapshot`, uncounted and uncut.
fn prepare<'s>(
    snapshot: &'s Snapshot,
    request: &Request,
    placed: Option<Placed<'s>>,
) -> Prepared<'s> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = false;

    // Our OPT record: present iff the query had one (RFC 6891 §6.1.1),
    // its size the smaller of the client's and ours.
    let mut edns = request.edns.as_ref().map(|query_edns| {
        let mut edns = Edns::new();
        edns.set_version(0);
        edns.set_max_payload(
            query_edns
                .max_payload()
                .clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
        );
        edns
    });
    let limit = match request.protocol() {
        Protocol::Udp => edns.as_ref().map_or(PLAIN_UDP_PAYLOAD, Edns::max_payload),
        _ => u16::MAX,
    };

    let echo_question = echoes_faithfully(&request.queries);
    let checked = if !echo_question {
        Err(ResponseCode::FormErr)
    } else if request.metadata.op_code != OpCode::Query {
        Err(ResponseCode::NotImp)
    } else {
        match request.queries.queries() {
            // RFC 6891 §6.1.3: we speak EDNS version 0 only.
            [_] if request.edns.as_ref().is_some_and(|e| e.version() > 0) => {
                Err(ResponseCode::BADVERS)
            }
            // RFC 7871 §6: a Client Subnet option a query must not send.
            [query] => place(request, placed)
                .map(|placed| (query, placed))
                .map_err(|_| ResponseCode::FormErr),
            _ => Err(ResponseCode::FormErr),
        }
    };
    let (query, placed) = match checked {
        Ok(checked) => checked,
        Err(rcode) => {
            if let Some(edns) = edns.as_mut() {
                edns.set_rcode_high(rcode.high());
            }
            metadata.response_code = rcode;
            let qtype = match request.queries.queries() {
                [query] => query.query_type(),
                _ => RecordType::NULL,
            };
            return Prepared {
                metadata,
                edns,
                reply: None,
                counts: Counts {
                    qtype,
                    rcode,
                    ecs: false,
                    region: None,
                    country: crate::flows::unknown(),
                },
                question: (!echo_question).then(no_question_section).flatten(),
                limit,
            };
        }
    };

    let reply = answer(
        snapshot,
        query.name(),
        query.query_type(),
        query.query_class(),
        &placed,
        request.metadata.id,
    );
    let client = &placed.client;
    metadata.authoritative = reply.authoritative;
    metadata.response_code = reply.rcode;
    let counts = Counts {
        qtype: query.query_type(),
        rcode: reply.rcode,
        ecs: client.subnet.is_some() && reply.region.is_some(),
        region: reply.region,
        country: reply.country,
    };
    if let Some(edns) = edns.as_mut()
        && let Some(subnet) = client.echo
    {
        let echoed = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), reply.scope);
        edns.options_mut().insert(EdnsOption::Subnet(echoed));
    }
    Prepared {
        metadata,
        edns,
        reply: Some(reply),
        counts,
        question: None,
        limit,
    }
}

/// The client `request` is answered for: `placed` when the caller placed
/// it already, else its Client Subnet option (read with [`crate::ecs`],
/// never hickory's reading) or its source; an error for an option RFC
/// 7871 §6 forbids.
fn place<'s>(request: &Request, placed: Option<Placed<'s>>) -> Result<Placed<'s>, EcsError> {
    if let Some(placed) = placed {
        return Ok(placed);
    }
    let subnet = match &request.edns {
        Some(_) => ecs::read_query(request.as_slice())?.map(|ecs| ecs.subnet()),
        None => None,
    };
    Ok(Placed::undecided(client_of(subnet, request.src().ip())))
}

impl<'s> Prepared<'s> {
    /// The response as hickory's builder makes it: the question (the
    /// query's, or none), the OPT record, and the reply's records, if any
    /// are left.
    fn response<'p>(
        &'p self,
        request: &'p Request,
    ) -> MessageResponse<
        'p,
        'p,
        impl Iterator<Item = &'p Record> + Send + 'p,
        impl Iterator<Item = &'p Record> + Send + 'p,
        impl Iterator<Item = &'p Record> + Send + 'p,
        impl Iterator<Item = &'p Record> + Send + 'p,
    > {
        let queries = self.question.as_ref().unwrap_or(&request.queries);
        let (answers, authority, additionals): (&'p [&'p Record], &'p [Record], &'p [Record]) =
            match &self.reply {
                Some(reply) => (&reply.answers, reply.authority, reply.additionals),
                None => (&[], &[], &[]),
            };
        MessageResponseBuilder::new(queries, self.edns.as_ref()).build(
            self.metadata,
            answers.iter().copied(),
            std::iter::empty(),
            authority.iter(),
            additionals.iter(),
        )
    }

    /// Whether the reply's records cannot fit in its limit.
    fn must_truncate(&self, request: &Request) -> bool {
        let Some(reply) = &self.reply else {
            return false;
        };
        let estimate = FIXED_OVERHEAD
            + request.queries.as_bytes().len()
            + wire_bound(reply.answers.iter().copied())
            + wire_bound(reply.authority.iter())
            + wire_bound(reply.additionals.iter());
        if estimate <= usize::from(self.limit) {
            return false;
        }
        !fits(self.response(request), self.limit)
    }
}

#[async_trait::async_trait]
impl RequestHandler for GeoDnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let snapshot = self.live.load();
        let prepared = self.respond(&snapshot, request, None);
        send(&mut response_handle, prepared.response(request), request).await
    }
}

/// FORMERR for a datagram whose header parses but whose body does not,
/// written into `out`; `false` (nothing to send) for one too short to have
/// a header (RFC 1035 gives it no id to answer with), or a response.
fn format_error(datagram: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(header) = Header::read(&mut BinDecoder::new(datagram)) else {
        return false;
    };
    if header.metadata.message_type == MessageType::Response {
        return false;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let reply = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    out.clear();
    if reply.emit(&mut BinEncoder::new(out)).is_err() {
        out.clear();
        return false;
    }
    true
}

/// Whether `queries`, copied byte for byte into the reply (hickory's
/// response builder echoes the question as the client sent it), says the
/// same there. It does not if a name in it is compressed with a pointer
/// into the header, directly or through another pointer: no name lives in
/// a header (RFC 1035 §4.1.4 points only at prior names), and the reply's
/// header differs from the query's, so the echo would spell another name,
/// or none, and the client could not match or even parse the reply. Such
/// a query gets FORMERR with no question section.
fn echoes_faithfully(queries: &Queries) -> bool {
    wire::questions_stay_in_section(queries.as_bytes(), queries.queries().len())
}

/// An empty question section, for a reply that must not echo the query's.
fn no_question_section() -> Option<Queries> {
    Queries::read(&mut BinDecoder::new(&[]), 0).ok()
}

/// Whether `response` encodes within `limit` bytes without dropping a
/// record. Only asked when [`wire_bound`] cannot rule truncation out.
fn fits<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    limit: u16,
) -> bool {
    let mut buffer = Vec::with_capacity(usize::from(limit));
    let mut encoder = BinEncoder::new(&mut buffer);
    encoder.set_max_size(limit);
    response
        .destructive_emit(&mut encoder)
        .is_ok_and(|header| !header.truncation)
}

/// An upper bound of the encoded size of `records`, without compression.
/// Exact enough for the records a zone holds; anything else counts as too
/// big, which only costs a trial encoding.
fn wire_bound<'a>(records: impl Iterator<Item = &'a Record>) -> usize {
    records
        .map(|record| {
            // Name::len is the text form with its final dot; the wire form
            // is one byte longer.
            let name = |n: &hickory_proto::rr::Name| n.len() + 2;
            let data = match &record.data {
                RData::A(_) => 4,
                RData::AAAA(_) => 16,
                RData::CNAME(cname) => name(&cname.0),
                RData::NS(ns) => name(&ns.0),
                RData::MX(mx) => 2 + name(&mx.exchange),
                RData::TXT(txt) => txt.txt_data.iter().map(|s| s.len() + 1).sum(),
                RData::SOA(soa) => name(&soa.mname) + name(&soa.rname) + 20,
                _ => usize::from(u16::MAX),
            };
            name(&record.name) + 10 + data
        })
        .sum()
}

async fn send<'a, R: ResponseHandler>(
    response_handle: &mut R,
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, src = %request.src(), "could not send a DNS response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(question: &[u8], count: usize) -> Queries {
        let mut message = vec![0xab, 0xcd, 0x01, 0x00, 0, count as u8, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(question);
        let mut decoder = BinDecoder::new(&message);
        decoder.read_slice(wire::HEADER).unwrap();
        Queries::read(&mut decoder, count).unwrap()
    }

    #[test]
    fn questions_that_point_into_the_header_are_not_echoed() {
        // cdn.meridian.test A: plain labels.
        let plain = b"\x03cdn\x08meridian\x04test\x00\x00\x01\x00\x01";
        assert!(echoes_faithfully(&queries(plain, 1)));
        // A second question compressed against the first: the same bytes
        // at the same offsets in the reply.
        let mut two = plain.to_vec();
        two.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01]);
        assert!(echoes_faithfully(&queries(&two, 2)));
        // The name is a pointer to the header's flags (found by the fuzz
        // test): "\000." in the query, unparseable in the reply.
        let into_flags = [0xc0, 0x02, 0x00, 0x01, 0x00, 0x01];
        assert!(!echoes_faithfully(&queries(&into_flags, 1)));
        // Through the first question's type field (0xc005), a pointer
        // into the header.
        let mut chained = vec![0x01, b'a', 0x00, 0xc0, 0x05, 0x00, 0x01];
        chained.extend_from_slice(&[0xc0, 0x0f, 0x00, 0x01, 0x00, 0x01]);
        let chained = queries(&chained, 2);
        assert_eq!(chained.queries().len(), 2);
        assert!(!echoes_faithfully(&chained));
    }

    /// A datagram the answer cache placed already is answered for that
    /// placement and its decision, which the handler does not work out
    /// again; without one, the handler places the client itself.
    #[test]
    fn a_placed_datagram_is_answered_with_the_decision_handed_on() {
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::Name;
        let config = config::Config::demo();
        let metrics = Arc::new(DnsMetrics::new().unwrap());
        let live = Arc::new(Live::from_pointee(
            Snapshot::load(config, &metrics).unwrap(),
        ));
        let handler = GeoDnsHandler::new(live.clone(), metrics);
        let snapshot = live.load();
        let mut message = Message::query();
        // ID 0: the region's first edge comes first.
        message.metadata.id = 0;
        message.add_query(Query::query(
            Name::from_ascii("cdn.meridian.test.").unwrap(),
            RecordType::A,
        ));
        let datagram = message.to_vec().unwrap();
        let source: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let address = |reply: &[u8]| {
            Message::from_vec(reply).unwrap().answers[0]
                .data
                .to_string()
        };
        let mut out = Vec::new();
        let own = handler.full_reply(&snapshot, &datagram, source, None, &mut out);
        assert!(matches!(own, Some(FullReply::Answer(c)) if c.region == Some(0)));
        assert_eq!(address(&out), "127.0.1.1", "loopback: the default order");
        let gb = client_of(None, "81.2.69.142".parse().unwrap());
        let placed = Placed::decided(&snapshot.table, gb);
        let handed = handler.full_reply(&snapshot, &datagram, source, Some(placed), &mut out);
        assert!(matches!(handed, Some(FullReply::Answer(c)) if c.region == Some(1)));
        assert_eq!(address(&out), "127.0.2.1", "eu-west, as placed");
    }

    #[test]
    fn a_garbled_body_gets_formerr_and_a_short_datagram_nothing() {
        let mut datagram = vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        datagram.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut reply = vec![0xee; 3];
        assert!(format_error(&datagram, &mut reply));
        assert_eq!(reply.len(), 12, "a header only");
        assert_eq!(&reply[..2], &[0x12, 0x34], "same id");
        assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
        assert_ne!(reply[2] & 0x80, 0, "a response");
        assert!(!format_error(&[0x12, 0x34, 0x01], &mut reply));
        // A garbled response is not answered.
        let mut response = datagram.clone();
        response[2] |= 0x80;
        assert!(!format_error(&response, &mut reply));
    }
}
