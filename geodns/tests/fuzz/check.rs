//! The invariants every input's outcome must keep, and what the outcome
//! was (for the summary, and for keeping inputs that did something new).

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::LowerName;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::serialize::binary::BinDecoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::Queries;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The largest UDP reply GeoDNS sends (`handler::MAX_UDP_PAYLOAD`).
pub const MAX_UDP: usize = 1232;

/// The largest UDP reply to a client that did not say (RFC 1035 §4.2.1).
pub const PLAIN_UDP: usize = 512;

/// What became of one input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// For the summary: the reply's RCODE, or why there was none.
    pub label: String,
    /// The reply had TC set.
    pub truncated: bool,
    /// The reply came from the answer cache.
    pub remembered: bool,
    /// The input was a query hickory parses, and was answered.
    pub answered: bool,
    /// Enough of the reply's make-up to tell new behaviour from old: an
    /// input whose outcome has a shape not seen before joins the pool.
    pub shape: Vec<u16>,
}

impl Outcome {
    /// No reply, labelled `label`; `shape` tells it from other outcomes.
    pub fn no_reply(label: String, shape: Vec<u16>) -> Outcome {
        Outcome {
            label,
            truncated: false,
            remembered: false,
            answered: false,
            shape,
        }
    }

    fn dropped(why: &str) -> Outcome {
        Outcome::no_reply(format!("dropped: {why}"), vec![])
    }
}

/// What hickory makes of an input: the server's view, which the replies
/// are checked against.
pub enum Parsed {
    /// Shorter than a header: nothing to answer with.
    Short,
    /// QR is set: a response, never to be answered.
    Response,
    /// A query's header, but the rest does not parse.
    Garbled,
    /// A query.
    Query(Box<Request>),
}

impl Parsed {
    /// Reads `input` as a request received from `source` over `protocol`.
    pub fn read(input: &[u8], source: SocketAddr, protocol: Protocol) -> Parsed {
        if input.len() < 12 {
            return Parsed::Short;
        }
        if input[2] & 0x80 != 0 {
            return Parsed::Response;
        }
        match Request::from_bytes(input.to_vec(), source, protocol) {
            Ok(request) => Parsed::Query(Box::new(request)),
            Err(_) => Parsed::Garbled,
        }
    }
}

/// A UDP input's outcome: `reply` is what the responder wrote, `None` when
/// it said there was nothing to send.
pub fn udp(input: &[u8], source: SocketAddr, reply: Option<&[u8]>) -> Result<Outcome, String> {
    if let Some(reply) = reply
        && reply.len() > MAX_UDP
    {
        return Err(format!("a UDP reply of {} bytes", reply.len()));
    }
    if source.port() == 0 {
        return match reply {
            None => Ok(Outcome::dropped("source port 0")),
            Some(_) => Err("a reply to source port 0".into()),
        };
    }
    match (Parsed::read(input, source, Protocol::Udp), reply) {
        (Parsed::Short, None) => Ok(Outcome::dropped("shorter than a header")),
        (Parsed::Response, None) => Ok(Outcome::dropped("a response (QR set)")),
        (Parsed::Short, Some(_)) => Err("a reply to a datagram shorter than a header".into()),
        (Parsed::Response, Some(_)) => {
            Err("a reply to a response (QR set): that is how reflection loops start".into())
        }
        (Parsed::Garbled | Parsed::Query(_), None) => Err(format!(
            "no reply to a query of {} bytes (only short datagrams and responses are dropped)",
            input.len()
        )),
        (Parsed::Garbled, Some(reply)) => format_error(input, reply),
        (Parsed::Query(request), Some(reply)) => {
            let limit = request.edns.as_ref().map_or(PLAIN_UDP, |edns| {
                usize::from(edns.max_payload()).clamp(PLAIN_UDP, MAX_UDP)
            });
            if reply.len() > limit {
                return Err(format!(
                    "a reply of {} bytes to a client that takes at most {limit}",
                    reply.len()
                ));
            }
            answer(input, &request, reply)
        }
    }
}

/// A TCP message's outcome, with the reply the handler sent (`None` if it
/// sent none) and the UDP reply to the same bytes (from the full path).
pub fn tcp(
    request: &Request,
    input: &[u8],
    reply: Option<&[u8]>,
    udp_reply: Option<&[u8]>,
) -> Result<Outcome, String> {
    let Some(reply) = reply else {
        return Err("the handler sent no reply over TCP".into());
    };
    let outcome = answer(input, request, reply)?;
    if outcome.truncated {
        return Err("TC set over TCP: the client has nowhere else to retry".into());
    }
    // Over UDP the same reply, unless it had to be truncated there.
    if let Some(udp_reply) = udp_reply
        && udp_reply.get(2).is_some_and(|flags| flags & 0x02 == 0)
        && udp_reply != reply
    {
        return Err(format!(
            "the TCP reply differs from the untruncated UDP reply {}",
            crate::hex(udp_reply)
        ));
    }
    Ok(outcome)
}

/// The FORMERR a query whose body hickory cannot parse gets: its header
/// only, the query's ID and opcode, QR set, nothing else.
fn format_error(input: &[u8], reply: &[u8]) -> Result<Outcome, String> {
    if reply.len() != 12 {
        return Err(format!(
            "a reply of {} bytes to a query hickory cannot parse (a FORMERR header is 12)",
            reply.len()
        ));
    }
    if reply[..2] != input[..2] {
        return Err("the FORMERR's ID is not the query's".into());
    }
    let opcode = |flags: u8| (flags >> 3) & 0x0f;
    if reply[2] & 0x80 == 0 || opcode(reply[2]) != opcode(input[2]) {
        return Err("the FORMERR is not a response with the query's opcode".into());
    }
    if reply[3] & 0x0f != 1 || reply[4..].iter().any(|&b| b != 0) {
        return Err("the reply to an unparseable query is not a bare FORMERR".into());
    }
    Ok(Outcome {
        label: "FORMERR (unparseable)".into(),
        truncated: false,
        remembered: false,
        answered: false,
        shape: vec![1],
    })
}

/// What every reply to a query hickory parsed must be.
fn answer(input: &[u8], request: &Request, reply: &[u8]) -> Result<Outcome, String> {
    let message = Message::from_vec(reply).map_err(|e| format!("the reply does not parse: {e}"))?;
    let metadata = &message.metadata;
    let id = u16::from_be_bytes([input[0], input[1]]);
    if metadata.id != id {
        return Err(format!(
            "the reply's ID {:#06x} is not the query's {id:#06x}",
            metadata.id
        ));
    }
    if metadata.message_type != MessageType::Response {
        return Err("the reply does not have QR set".into());
    }
    if metadata.op_code != request.metadata.op_code {
        return Err("the reply's opcode is not the query's".into());
    }
    if metadata.recursion_available {
        return Err("RA set: GeoDNS never recurses".into());
    }
    if message.edns.is_some() != request.edns.is_some() {
        return Err(
            "the reply has an OPT record iff the query had one, and this one does not".into(),
        );
    }
    let asked = request.queries.queries();
    let rcode = u16::from(metadata.response_code);
    if question_reads_header(input, asked.len()) {
        // Echoed byte for byte, the question would read the reply's
        // header, which differs from the query's.
        if rcode != 1 || !message.queries.is_empty() {
            return Err(
                "a question that points into the header must get FORMERR, without the question"
                    .into(),
            );
        }
    } else {
        let echoed = message.queries.len() == asked.len()
            && message.queries.iter().zip(asked).all(|(echo, asked)| {
                LowerName::from(echo.name()) == *asked.name()
                    && echo.query_type() == asked.query_type()
                    && echo.query_class() == asked.query_class()
            });
        if !echoed {
            return Err("the reply's question section is not the query's".into());
        }
    }
    if metadata.truncation
        && !(message.answers.is_empty()
            && message.authorities.is_empty()
            && message.additionals.is_empty())
    {
        return Err("TC set on a reply that still holds records".into());
    }
    let ecs_echoed = message
        .edns
        .as_ref()
        .is_some_and(|edns| edns.option(EdnsCode::Subnet).is_some());
    client_subnet(request, &message)?;
    Ok(Outcome {
        label: rcode_name(rcode),
        truncated: metadata.truncation,
        remembered: false,
        answered: true,
        shape: vec![
            2,
            rcode,
            u16::from(metadata.truncation),
            u16::from(metadata.authoritative),
            message.answers.len().min(4) as u16,
            message.authorities.len().min(2) as u16,
            message.additionals.len().min(2) as u16,
            u16::from(message.edns.is_some()),
            u16::from(ecs_echoed),
            message.queries.first().map_or(0, |q| q.query_type().into()),
        ],
    })
}

/// The Client Subnet rules (RFC 7871 §6, §7.2) as far as hickory's reading
/// of the query shows them: a query whose option has a scope, or address
/// bits past its source prefix, is refused (FORMERR, or NOTIMP or BADVERS
/// when those come first) and nothing is echoed; an echoed option is the
/// query's, with the same family and source prefix and its address, which
/// has no bits past the prefix.
fn client_subnet(request: &Request, reply: &Message) -> Result<(), String> {
    let subnet_of = |edns: Option<&hickory_proto::op::Edns>| match edns?.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
        _ => None,
    };
    let asked = subnet_of(request.edns.as_ref());
    let echoed = subnet_of(reply.edns.as_ref());
    let malformed = asked.is_some_and(|s| s.scope_prefix() != 0 || truncated(s) != s.addr());
    let rcode = u16::from(reply.metadata.response_code);
    if malformed && !matches!(rcode, 1 | 4 | 16) {
        return Err(format!(
            "a query whose Client Subnet option breaks RFC 7871 §6 ({asked:?}) got RCODE {rcode}, not FORMERR"
        ));
    }
    match (asked, echoed) {
        (_, None) => Ok(()),
        (None, Some(echo)) => Err(format!("{echo:?} echoed to a query without one")),
        (Some(_), Some(echo)) if malformed => {
            Err(format!("{echo:?} echoed from a malformed option"))
        }
        (Some(asked), Some(echo)) => {
            let same = echo.addr() == asked.addr()
                && echo.source_prefix() == asked.source_prefix()
                && truncated(echo) == echo.addr();
            if same {
                Ok(())
            } else {
                Err(format!("{echo:?} echoed for {asked:?}"))
            }
        }
    }
}

/// A subnet's address with every bit past its source prefix cleared.
fn truncated(subnet: ClientSubnet) -> IpAddr {
    let prefix = u32::from(subnet.source_prefix());
    match subnet.addr() {
        IpAddr::V4(v4) => {
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            IpAddr::from(Ipv4Addr::from(u32::from(v4) & !host))
        }
        IpAddr::V6(v6) => {
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            IpAddr::from(Ipv6Addr::from(u128::from(v6) & !host))
        }
    }
}

/// Whether reading the query's question section reads its header: with
/// every header byte changed (to 0xff, a pointer nowhere), the questions
/// no longer read, or read otherwise.
fn question_reads_header(input: &[u8], count: usize) -> bool {
    let read = |bytes: &[u8]| {
        let mut decoder = BinDecoder::new(bytes);
        decoder.read_slice(12).ok()?;
        Queries::read(&mut decoder, count).ok()
    };
    let mut changed = input.to_vec();
    changed[..12].fill(0xff);
    match (read(input), read(&changed)) {
        (Some(original), Some(changed)) => original != changed,
        _ => true,
    }
}

/// The usual name of an RCODE.
fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        other => return format!("RCODE {other}"),
    }
    .into()
}
