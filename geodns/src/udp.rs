//! The UDP socket loops: a few threads answering datagrams straight off
//! the socket.
//!
//! hickory-server turns every UDP datagram into a tokio task and sends the
//! answer back through a channel to a task that owns the socket; measured
//! here, that machinery costs more than answering does, and held GeoDNS to
//! about half of gdnsd's answers per CPU-second. So only the socket loop is
//! ours: one blocking loop per core, all on clones of one socket (so a
//! second server on the same address still fails with "address in use").
//! What a datagram gets is decided by the worker's [`Responder`]
//! ([`crate::responder`]); the DNS work behind it stays hickory's. TCP
//! stays with hickory-server.

use crate::handler::{GeoDnsHandler, MAX_UDP_PAYLOAD};
use crate::responder::{Responder, Served};
use std::io::ErrorKind;
use std::net::UdpSocket;
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
    let mut reply = Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD));
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
    use super::{BATCH, MAX_DATAGRAM, MAX_UDP_PAYLOAD, Responder, Served, is_quiet};
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
            .map(|_| Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD)))
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
