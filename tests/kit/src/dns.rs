//! One DNS client, on hickory-proto: queries built as messages (so every
//! flag and size is the caller's), sent over UDP or TCP, blocking for
//! tests and async for the bench, and answers read back.

use super::error::KitError;
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// How long a blocking exchange waits for its reply.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A query for `name`/`rtype` without EDNS, RD clear.
///
/// # Panics
/// If `name` is not a domain name (callers pass literals).
pub fn question(name: &str, rtype: RecordType) -> Message {
    let name = match Name::from_ascii(name) {
        Ok(name) => name,
        Err(e) => panic!("{name:?} is not a domain name: {e}"),
    };
    let mut message = Message::query();
    message.add_query(Query::query(name, rtype));
    message
}

/// `message` with an OPT record of `size` and, if given, a Client Subnet
/// option for `subnet` (`81.2.69.0/24`).
///
/// # Panics
/// If `subnet` is not a subnet.
pub fn edns(mut message: Message, size: u16, subnet: Option<&str>) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(size);
    if let Some(subnet) = subnet {
        let subnet: ClientSubnet = match subnet.parse() {
            Ok(subnet) => subnet,
            Err(e) => panic!("{subnet:?} is not a client subnet: {e}"),
        };
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    message.set_edns(edns);
    message
}

/// A query with EDNS (1232 bytes) and a Client Subnet option: what a
/// resolver forwards for a client in `subnet`.
pub fn ecs(name: &str, rtype: RecordType, subnet: &str) -> Message {
    edns(question(name, rtype), 1232, Some(subnet))
}

/// The A and AAAA addresses in `message`'s answer section.
pub fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

/// [`addresses`] sorted: a steered answer turns its region's edges from
/// query to query, so tests compare which addresses it holds.
pub fn sorted_addresses(message: &Message) -> Vec<IpAddr> {
    let mut sorted = addresses(message);
    sorted.sort();
    sorted
}

/// The Client Subnet option of `message`'s OPT record.
pub fn subnet_of(message: &Message) -> Option<ClientSubnet> {
    match message.edns.as_ref()?.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
        _ => None,
    }
}

/// The first A record of a NOERROR reply and its TTL, or why there is none.
pub fn steered(reply: &Message) -> Result<(IpAddr, u32), String> {
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(format!("rcode {}", reply.metadata.response_code));
    }
    reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
            _ => None,
        })
        .ok_or_else(|| "no A record".to_owned())
}

/// A reply and its size on the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The message.
    pub message: Message,
    /// Its size in bytes.
    pub len: usize,
}

impl Reply {
    /// The A and AAAA addresses answered.
    pub fn addresses(&self) -> Vec<IpAddr> {
        addresses(&self.message)
    }

    /// The ECS scope echoed, if an ECS option was.
    pub fn scope(&self) -> Option<u8> {
        subnet_of(&self.message).map(|s| s.scope_prefix())
    }
}

fn dns_error(server: SocketAddr) -> impl Fn(String) -> KitError {
    move |reason| KitError::Dns { server, reason }
}

/// Encodes `message`.
pub fn bytes(message: &Message) -> Result<Vec<u8>, String> {
    message.to_vec().map_err(|e| format!("cannot encode: {e}"))
}

/// Sends `message` over UDP from 127.0.0.1 and reads its reply, which must
/// be a response with the query's ID.
pub fn udp(server: SocketAddr, message: &Message) -> Result<Reply, KitError> {
    udp_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server, message)
}

/// [`udp`] from a socket bound to `source`.
pub fn udp_from(source: IpAddr, server: SocketAddr, message: &Message) -> Result<Reply, KitError> {
    let error = dns_error(server);
    let reply = udp_raw(source, server, &bytes(message).map_err(&error)?)?;
    let parsed = Message::from_vec(&reply).map_err(|e| error(format!("unparseable reply: {e}")))?;
    if parsed.metadata.id != message.metadata.id {
        return Err(error(format!(
            "reply ID {} to query {}",
            parsed.metadata.id, message.metadata.id
        )));
    }
    if parsed.metadata.message_type != MessageType::Response {
        return Err(error("a reply without QR".to_owned()));
    }
    Ok(Reply {
        message: parsed,
        len: reply.len(),
    })
}

/// Sends `datagram` over UDP from `source` and returns the first datagram
/// back.
pub fn udp_raw(source: IpAddr, server: SocketAddr, datagram: &[u8]) -> Result<Vec<u8>, KitError> {
    let error = dns_error(server);
    let socket = UdpSocket::bind((source, 0)).map_err(|e| error(format!("bind: {e}")))?;
    socket
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| error(e.to_string()))?;
    socket
        .send_to(datagram, server)
        .map_err(|e| error(format!("send: {e}")))?;
    let mut buffer = vec![0u8; 65_535];
    let (len, _) = socket
        .recv_from(&mut buffer)
        .map_err(|e| error(format!("no reply over UDP: {e}")))?;
    buffer.truncate(len);
    Ok(buffer)
}

/// Sends `message` over a new TCP connection and reads its reply.
pub fn tcp(server: SocketAddr, message: &Message) -> Result<Message, KitError> {
    let error = dns_error(server);
    let mut stream =
        TcpStream::connect_timeout(&server, TIMEOUT).map_err(|e| error(format!("connect: {e}")))?;
    tcp_exchange(&mut stream, &bytes(message).map_err(&error)?)
}

/// Sends `query` framed with its length on `stream`; the reply.
pub fn tcp_exchange(stream: &mut TcpStream, query: &[u8]) -> Result<Message, KitError> {
    let server = stream
        .peer_addr()
        .map_err(KitError::io("read a TCP peer's address"))?;
    let error = dns_error(server);
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| error(e.to_string()))?;
    let length = u16::try_from(query.len()).map_err(|_| error("query too long".to_owned()))?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .map_err(|e| error(format!("write: {e}")))?;
    let mut length = [0u8; 2];
    stream
        .read_exact(&mut length)
        .map_err(|e| error(format!("read the length: {e}")))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream
        .read_exact(&mut reply)
        .map_err(|e| error(format!("read the reply: {e}")))?;
    Message::from_vec(&reply).map_err(|e| error(format!("unparseable reply: {e}")))
}

/// Sends `query` on `socket` to `server` and waits up to `timeout` for
/// the reply with its ID, skipping late replies to earlier queries.
pub async fn ask(
    socket: &tokio::net::UdpSocket,
    server: SocketAddr,
    query: &Message,
    timeout: Duration,
) -> Result<Message, String> {
    socket
        .send_to(&bytes(query)?, server)
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| format!("cannot receive: {e}"))?;
        if from != server {
            continue;
        }
        let reply = Message::from_vec(&buffer[..len]).map_err(|e| format!("malformed: {e}"))?;
        if reply.metadata.id == query.metadata.id {
            return Ok(reply);
        }
    }
}

/// One query over a new TCP connection from `source`, async: the reply's
/// bytes.
pub async fn ask_tcp(source: IpAddr, server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = match source {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source, 0))
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
        .map_err(|e| format!("read: {e}"))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(reply)
}
