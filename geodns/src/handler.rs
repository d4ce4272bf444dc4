//! The DNS request handler: hickory-server hands it each parsed query.
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

use crate::answer::{answer, client_of};
use crate::metrics::DnsMetrics;
use crate::snapshot::{Live, Snapshot};
use crate::wire;
use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
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

/// Everything a reply needs, worked out once for both ways of sending it
/// (hickory's TCP server, and the UDP fast path in [`crate::udp`]).
struct Prepared<'s> {
    metadata: Metadata,
    edns: Option<Edns>,
    reply: Option<crate::answer::Reply<'s>>,
    counts: Counts,
    /// Whether the reply may echo the query's question section (see
    /// [`echoes_faithfully`]); if not, it has none.
    echo_question: bool,
}

/// What one answered query adds to the metrics. Kept apart from the
/// counting itself so that an answer served again from
/// [`crate::answer_cache`] counts exactly as the first one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    qtype: RecordType,
    rcode: ResponseCode,
    /// Answered from the query's ECS option with a steered answer.
    ecs: bool,
    /// The region whose edges a steered answer gave.
    region: Option<usize>,
}

/// A UDP reply as wire bytes, and what it counts for.
pub(crate) struct UdpReply {
    pub bytes: Vec<u8>,
    pub counts: Counts,
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
        self.metrics.query(counts.qtype, counts.rcode);
        if counts.ecs {
            self.metrics.ecs_query();
        }
        if let Some(region) = counts.region {
            DnsMetrics::steered(&snapshot.steered, region);
        }
    }

    /// The metrics, for what the UDP path counts itself.
    pub(crate) fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// Checks the query and answers it from `snapshot` (the caller counts
    /// it).
    fn prepare<'s>(&self, snapshot: &'s Snapshot, request: &Request) -> Prepared<'s> {
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

        let echo_question = echoes_faithfully(&request.queries);
        let rcode_only = if !echo_question {
            Some(ResponseCode::FormErr)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.queries().len() != 1 {
            Some(ResponseCode::FormErr)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: we speak EDNS version 0 only.
            Some(ResponseCode::BADVERS)
        } else {
            None
        };
        // RFC 7871 §6: a Client Subnet option a query must not send gets
        // FORMERR. Read from the raw query: hickory's reading of it hides
        // some of what it must not send.
        let subnet = match rcode_only {
            Some(_) => Ok(None),
            None if request.edns.is_none() => Ok(None),
            None => crate::ecs::read_query(request.as_slice()),
        };
        let rcode_only = match subnet {
            Err(_) => Some(ResponseCode::FormErr),
            Ok(_) => rcode_only,
        };
        if let Some(rcode) = rcode_only {
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
                },
                echo_question,
            };
        }

        let query = &request.queries.queries()[0];
        let subnet = subnet.ok().flatten().map(|ecs| ecs.subnet());
        let client = client_of(subnet, request.src().ip());
        let reply = answer(
            snapshot,
            query.name(),
            query.query_type(),
            query.query_class(),
            &client,
        );
        metadata.authoritative = reply.authoritative;
        metadata.response_code = reply.rcode;
        let counts = Counts {
            qtype: query.query_type(),
            rcode: reply.rcode,
            ecs: client.subnet.is_some() && reply.region.is_some(),
            region: reply.region,
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
            echo_question,
        }
    }

    /// The reply to `request` as wire bytes for a UDP client: at most the
    /// client's size, with TC and no records when the answer does not fit.
    /// Counted in the metrics.
    pub(crate) fn udp_reply(&self, snapshot: &Snapshot, request: &Request) -> Option<UdpReply> {
        let mut prepared = self.prepare(snapshot, request);
        self.count(snapshot, &prepared.counts);
        let limit = prepared
            .edns
            .as_ref()
            .map_or(PLAIN_UDP_PAYLOAD, Edns::max_payload);
        if prepared.must_truncate(request, limit) {
            prepared.metadata.truncation = true;
            prepared.reply = None;
        }
        let no_question = (!prepared.echo_question)
            .then(no_question_section)
            .flatten();
        let queries = no_question.as_ref().unwrap_or(&request.queries);
        let builder = MessageResponseBuilder::new(queries, prepared.edns.as_ref());
        let mut buffer = Vec::with_capacity(usize::from(limit));
        let mut encoder = BinEncoder::new(&mut buffer);
        encoder.set_max_size(limit);
        let emitted = match &prepared.reply {
            Some(reply) => builder
                .build(
                    prepared.metadata,
                    reply.answers.iter().copied(),
                    std::iter::empty(),
                    reply.authority.iter(),
                    reply.additionals.iter(),
                )
                .destructive_emit(&mut encoder),
            None => builder
                .build_no_records(prepared.metadata)
                .destructive_emit(&mut encoder),
        };
        match emitted {
            Ok(_) => Some(UdpReply {
                bytes: buffer,
                counts: prepared.counts,
            }),
            Err(error) => {
                tracing::debug!(%error, "could not encode a DNS response");
                None
            }
        }
    }
}

impl Prepared<'_> {
    /// Whether the reply's records cannot fit in `limit` bytes.
    fn must_truncate(&self, request: &Request, limit: u16) -> bool {
        let Some(reply) = &self.reply else {
            return false;
        };
        let estimate = FIXED_OVERHEAD
            + request.queries.as_bytes().len()
            + wire_bound(reply.answers.iter().copied())
            + wire_bound(reply.authority.iter())
            + wire_bound(reply.additionals.iter());
        if estimate <= usize::from(limit) {
            return false;
        }
        let response = MessageResponseBuilder::new(&request.queries, self.edns.as_ref()).build(
            self.metadata,
            reply.answers.iter().copied(),
            std::iter::empty(),
            reply.authority.iter(),
            reply.additionals.iter(),
        );
        !fits(response, limit)
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
        let mut prepared = self.prepare(&snapshot, request);
        self.count(&snapshot, &prepared.counts);
        let limit = match request.protocol() {
            Protocol::Udp => prepared
                .edns
                .as_ref()
                .map_or(PLAIN_UDP_PAYLOAD, Edns::max_payload),
            _ => u16::MAX,
        };
        if prepared.must_truncate(request, limit) {
            prepared.metadata.truncation = true;
            prepared.reply = None;
        }
        let no_question = (!prepared.echo_question)
            .then(no_question_section)
            .flatten();
        let queries = no_question.as_ref().unwrap_or(&request.queries);
        let builder = MessageResponseBuilder::new(queries, prepared.edns.as_ref());
        match &prepared.reply {
            Some(reply) => {
                let response = builder.build(
                    prepared.metadata,
                    reply.answers.iter().copied(),
                    std::iter::empty(),
                    reply.authority.iter(),
                    reply.additionals.iter(),
                );
                send(&mut response_handle, response, request).await
            }
            None => {
                let response = builder.build_no_records(prepared.metadata);
                send(&mut response_handle, response, request).await
            }
        }
    }
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
}
