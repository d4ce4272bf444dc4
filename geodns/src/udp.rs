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

use crate::handler::GeoDnsHandler;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

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

fn serve(socket: &UdpSocket, handler: &GeoDnsHandler, stop: &AtomicBool) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buffer) {
            Ok((length, source)) => {
                if let Some(reply) = reply_to(handler, &buffer[..length], source) {
                    // A client that cannot be reached is its own problem.
                    let _ = socket.send_to(&reply, source);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                // ICMP errors from earlier sends surface here (e.g.
                // ConnectionRefused); they concern one client, not us.
                tracing::debug!(%error, "UDP receive error");
            }
        }
    }
}

/// The bytes to send back for one datagram, if any.
fn reply_to(handler: &GeoDnsHandler, datagram: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    // Port 0 cannot be answered, and answering it could hit anything.
    if source.port() == 0 {
        return None;
    }
    let request = match Request::from_bytes(datagram.to_vec(), source, Protocol::Udp) {
        Ok(request) => request,
        Err(_) => return format_error(datagram),
    };
    // Never answer answers: that is how reflection loops start.
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let snapshot = handler.snapshot();
    handler.udp_reply(&snapshot, &request)
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
