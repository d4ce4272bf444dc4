//! The UDP fast path: a few threads answering datagrams straight off the
//! socket.
//!
//! hickory-server turns every UDP datagram into a tokio task and sends the
//! answer back through a channel to a task that owns the socket; measured
//! here, that machinery costs more than answering does, and held GeoDNS to
//! about half of gdnsd's answers per CPU-second. The DNS work stays
//! hickory's: each datagram is parsed into hickory-server's `Request` and
//! answered by the same [`GeoDnsHandler`] code as TCP queries, and replies
//! are built with hickory-proto. Only the socket loop is ours: one blocking
//! `recv_from`/`send_to` loop per core, all on clones of one socket (so a
//! second server on the same address still fails with "address in use").
//! TCP stays with hickory-server.
//!
//! With `[geodns.rate_limit]`, every reply a datagram would get, remembered
//! or built, is first paid for from its client network's bucket
//! ([`crate::rate_limit`]): within the limit it is sent, over it it is
//! dropped before anything is built, or every `slip`th time built and sent
//! truncated. Without it, one branch per datagram is all this costs.

use crate::answer_cache::AnswerCache;
pub use crate::answer_cache::Served;
use crate::handler::{Counts, GeoDnsHandler};
use crate::rate_limit::Verdict;
use crate::snapshot::Snapshot;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often an idle worker checks whether it should stop.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Largest datagram read; anything longer is not a query worth answering.
const MAX_DATAGRAM: usize = 4096;

/// The running UDP workers.
pub struct UdpWorkers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    /// Starts `count` workers answering on `socket`.
    pub fn spawn(socket: UdpSocket, handler: GeoDnsHandler, count: usize) -> std::io::Result<Self> {
        socket.set_read_timeout(Some(STOP_CHECK_INTERVAL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let socket = socket.try_clone()?;
            let (stop, handler) = (stop.clone(), handler.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{index}"))
                .spawn(move || serve(&socket, &handler, &stop))?;
            threads.push(thread);
        }
        Ok(UdpWorkers { stop, threads })
    }

    /// Stops the workers and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// One worker: receives datagrams, answers them, until told to stop.
/// Linux receives and sends up to [`BATCH`] datagrams per system call.
fn serve(socket: &UdpSocket, handler: &GeoDnsHandler, stop: &AtomicBool) {
    #[cfg(target_os = "linux")]
    batched::serve(socket, handler, stop);
    #[cfg(not(target_os = "linux"))]
    serve_one_by_one(socket, handler, stop);
}

/// The portable loop: one `recv_from` and one `send_to` per datagram.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn serve_one_by_one(socket: &UdpSocket, handler: &GeoDnsHandler, stop: &AtomicBool) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut reply = Vec::with_capacity(usize::from(crate::handler::MAX_UDP_PAYLOAD));
    let mut responder = Responder::new();
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buffer) {
            Ok((length, source)) => {
                let snapshot = handler.snapshot();
                let served =
                    responder.answer(handler, &snapshot, &buffer[..length], source, &mut reply);
                if served != Served::Nothing {
                    // A client that cannot be reached is its own problem.
                    let _ = socket.send_to(&reply, source);
                }
            }
            Err(e) if is_quiet(&e) => {}
            Err(error) => {
                // ICMP errors from earlier sends surface here (e.g.
                // ConnectionRefused); they concern one client, not us.
                tracing::debug!(%error, "UDP receive error");
            }
        }
    }
}

/// Errors that only mean "nothing arrived yet".
fn is_quiet(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// How many datagrams one system call receives or sends at most.
#[cfg(target_os = "linux")]
const BATCH: usize = 32;

/// Receiving and sending many datagrams per system call (`recvmmsg`,
/// `sendmmsg`), as gdnsd does. Under load, the per-call cost of entering
/// the kernel and finding the socket is paid once per batch instead of
/// twice per query; and a client woken by the first reply of a batch is
/// usually still awake for the rest, which saves the wake-ups.
#[cfg(target_os = "linux")]
mod batched {
    use super::{BATCH, MAX_DATAGRAM, Responder, Served, is_quiet};
    use crate::handler::GeoDnsHandler;
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
    use std::io::{IoSlice, IoSliceMut};
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) fn serve(socket: &UdpSocket, handler: &GeoDnsHandler, stop: &AtomicBool) {
        let fd = socket.as_raw_fd();
        let mut buffers = vec![vec![0u8; MAX_DATAGRAM]; BATCH];
        let mut receive = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut replies: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| Vec::with_capacity(usize::from(crate::handler::MAX_UDP_PAYLOAD)))
            .collect();
        let mut received: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(BATCH);
        let mut responder = Responder::new();
        while !stop.load(Ordering::Relaxed) {
            received.clear();
            {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                    .collect();
                // Blocks until at least one datagram (or the socket's read
                // timeout), then takes whatever else is already queued.
                match recvmmsg(
                    fd,
                    &mut receive,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(messages) => {
                        for message in messages {
                            received.push((message.bytes, message.address.and_then(socket_addr)));
                        }
                    }
                    Err(errno) => {
                        let error = std::io::Error::from(errno);
                        if !is_quiet(&error) {
                            tracing::debug!(%error, "UDP receive error");
                        }
                        continue;
                    }
                }
            }
            let snapshot = handler.snapshot();
            let mut destinations: Vec<Option<SockaddrStorage>> = Vec::with_capacity(received.len());
            let mut answered = 0;
            for (index, &(length, source)) in received.iter().enumerate() {
                // A datagram longer than the buffer was cut: not a query
                // worth answering (MAX_DATAGRAM is far above any).
                let (Some(source), Some(datagram)) = (source, buffers[index].get(..length)) else {
                    continue;
                };
                let reply = &mut replies[answered];
                if responder.answer(handler, &snapshot, datagram, source, reply) != Served::Nothing
                {
                    destinations.push(Some(SockaddrStorage::from(source)));
                    answered += 1;
                }
            }
            send_all(fd, &mut send, &replies[..answered], &destinations);
        }
    }

    /// Sends `replies[i]` to `destinations[i]`, all of them, in as few
    /// calls as the kernel allows. A reply the kernel refuses (a client
    /// that cannot be reached) is dropped: it is that client's problem.
    fn send_all(
        fd: std::os::fd::RawFd,
        headers: &mut MultiHeaders<SockaddrStorage>,
        replies: &[Vec<u8>],
        destinations: &[Option<SockaddrStorage>],
    ) {
        let mut next = 0;
        while next < replies.len() {
            let slices: Vec<[IoSlice<'_>; 1]> =
                replies[next..].iter().map(|r| [IoSlice::new(r)]).collect();
            match sendmmsg(
                fd,
                headers,
                slices.iter(),
                &destinations[next..],
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let sent = results.count();
                    // Zero sent means the first one failed: skip it.
                    next += sent.max(1);
                }
                Err(errno) => {
                    tracing::debug!(error = %std::io::Error::from(errno), "UDP send error");
                    next += 1;
                }
            }
        }
    }

    /// A received datagram's source, as a std address.
    fn socket_addr(address: SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = address.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        address
            .as_sockaddr_in6()
            .map(|v6| SocketAddr::V6((*v6).into()))
    }
}

/// What one UDP worker keeps from one datagram to the next: its remembered
/// replies (the `answer_cache` module).
///
/// Both socket loops answer every datagram they receive with
/// [`Responder::answer`] and send whatever it wrote; nothing else decides
/// what goes back. It is public so that the fuzz test
/// (`geodns/tests/fuzz/`) drives exactly this path, without sockets.
#[derive(Default)]
pub struct Responder {
    cache: AnswerCache,
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
        let verdict = match &snapshot.rate_limit {
            // Datagrams that get no reply take nothing from the bucket.
            Some(limiter) if gets_a_reply(datagram, source) => {
                limiter.check(source.ip(), Instant::now())
            }
            _ => Verdict::Send,
        };
        if verdict == Verdict::Drop {
            reply.clear();
            handler.metrics().rate_limit_dropped();
            return Served::Nothing;
        }
        let served = self.cache.reply(handler, snapshot, datagram, source, reply);
        if served != Served::Nothing && verdict == Verdict::Slip {
            // Never fails on a reply hickory built; if it did, nothing is
            // better than something unread.
            if crate::rate_limit::truncate(reply).is_none() {
                reply.clear();
                handler.metrics().rate_limit_dropped();
                return Served::Nothing;
            }
            handler.metrics().rate_limit_slipped();
        }
        served
    }
}

/// Whether the full path would answer `datagram` at all: not from port 0,
/// long enough to have a header, and not itself a response.
fn gets_a_reply(datagram: &[u8], source: SocketAddr) -> bool {
    source.port() != 0 && datagram.len() >= 12 && datagram[2] & 0x80 == 0
}

/// A reply built the full way: hickory parses the datagram, the handler
/// answers it.
pub(crate) struct FullReply {
    /// The wire bytes.
    pub bytes: Vec<u8>,
    /// What the answer counted for; `None` for a FORMERR to a datagram
    /// hickory could not parse (not an answer).
    pub counts: Option<Counts>,
}

/// The bytes to send back for one datagram, if any, the full way.
pub(crate) fn full_reply(
    handler: &GeoDnsHandler,
    snapshot: &Snapshot,
    datagram: &[u8],
    source: SocketAddr,
) -> Option<FullReply> {
    // Too short for a header, or a response: never answered either way,
    // so not worth a copy and a parse (a flood is mostly such datagrams).
    if datagram.len() < 12 || datagram[2] & 0x80 != 0 {
        return None;
    }
    let request = match Request::from_bytes(datagram.to_vec(), source, Protocol::Udp) {
        Ok(request) => request,
        Err(_) => {
            return format_error(datagram).map(|bytes| FullReply {
                bytes,
                counts: None,
            });
        }
    };
    // Never answer answers: that is how reflection loops start.
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let reply = handler.udp_reply(snapshot, &request)?;
    Some(FullReply {
        bytes: reply.bytes,
        counts: Some(reply.counts),
    })
}

/// FORMERR for a datagram whose header parses but whose body does not;
/// nothing for one too short to have a header (RFC 1035 gives it no id to
/// answer with).
fn format_error(datagram: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(datagram)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let reply = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    reply.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbled_body_gets_formerr_and_a_short_datagram_nothing() {
        let mut datagram = vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        datagram.extend_from_slice(&[0xff, 0xff, 0xff]);
        let reply = format_error(&datagram).unwrap();
        assert_eq!(&reply[..2], &[0x12, 0x34], "same id");
        assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
        assert_ne!(reply[2] & 0x80, 0, "a response");
        assert!(format_error(&[0x12, 0x34, 0x01]).is_none());
        // A garbled response is not answered.
        let mut response = datagram.clone();
        response[2] |= 0x80;
        assert!(format_error(&response).is_none());
    }
}
