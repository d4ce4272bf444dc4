//! Sending sealed bodies with sendfile(2), and the response head with them.
//!
//! [`SendfileApp`] wraps every plain-TCP client connection in a
//! [`SendfileStream`]. Pingora's HTTP/1 writer writes the response head,
//! then the body, each as a byte slice, and sends each at once. For a cache
//! hit the edge asks the stream to hold the response ([`hold_response`]):
//! it keeps the small writes (up to [`HELD_BYTES`]) instead of passing them
//! on. A small body then leaves with its head in one send at the flush
//! that ends the response. When a slice of a sealed body comes instead, the
//! held head goes to the socket with `MSG_MORE` and the body follows with
//! sendfile, so TCP puts the head and the body's first bytes into one
//! segment. Either way: one packet, and one wake-up of the client, fewer
//! per response. Everything else is passed on to Pingora's own stream as
//! before; held bytes always go first.

use super::{MIN_BYTES, find};
use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::sendfile::sendfile;
use nix::sys::socket::{MsgFlags, send};
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};

/// The most a connection holds back. A response head is a few hundred
/// bytes; a small body with it stays well under this too, and bigger
/// writes are passed on at once.
pub const HELD_BYTES: usize = 16 * 1024;

/// The room for held bytes a connection keeps between responses.
const HELD_KEPT_BYTES: usize = 4 * 1024;

/// A server application whose plain-TCP connections send sealed bodies
/// with sendfile. See the module documentation.
pub struct SendfileApp<A> {
    app: Arc<A>,
    sent: IntCounter,
}

impl<A> SendfileApp<A> {
    /// Wraps `app`; `sent` counts the bytes sent without a copy.
    pub fn new(app: A, sent: IntCounter) -> Self {
        SendfileApp {
            app: Arc::new(app),
            sent,
        }
    }
}

#[async_trait]
impl<A> ServerApp for SendfileApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = SendfileStream::wrap(stream, self.sent.clone());
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// A client connection that sends slices of sealed bodies with sendfile.
/// Only plain TCP connections are wrapped: TLS must encrypt every byte in
/// user space anyway.
pub struct SendfileStream {
    inner: Stream,
    socket: RawFd,
    /// Set by [`hold_response`]: the response's small writes are held
    /// until a flush or a sealed body comes.
    holding: AtomicBool,
    /// Small writes not yet passed on: the response head, and a small body.
    /// See [`HELD_BYTES`].
    held: Vec<u8>,
    /// Whether the inner stream may have bytes buffered that it has not
    /// sent yet (anything written to it since its last flush).
    inner_unflushed: bool,
    /// A registration of the socket for writability, made the first time
    /// it is found full (see [`SendfileStream::poll_writable`]).
    writable: Option<AsyncFd<OwnedFd>>,
    sent: IntCounter,
}

impl std::fmt::Debug for SendfileStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendfileStream")
            .field("inner", &self.inner)
            .field("held", &self.held.len())
            .finish()
    }
}

impl SendfileStream {
    /// Wraps `stream` if it is a plain TCP connection; returns it unchanged
    /// otherwise.
    pub fn wrap(stream: Stream, sent: IntCounter) -> Stream {
        match Self::new(stream, sent) {
            Ok(wrapped) => Box::new(wrapped),
            Err(stream) => stream,
        }
    }

    /// Wraps `stream`, or gives it back if it is not plain TCP.
    fn new(stream: Stream, sent: IntCounter) -> Result<Self, Stream> {
        let Some(tcp) = stream.as_any().downcast_ref::<TcpStream>() else {
            return Err(stream);
        };
        let socket = tcp.as_raw_fd();
        Ok(SendfileStream {
            inner: stream,
            socket,
            holding: AtomicBool::new(false),
            held: Vec::new(),
            inner_unflushed: false,
            writable: None,
            sent,
        })
    }

    /// The socket, borrowed.
    fn socket(&self) -> BorrowedFd<'_> {
        // SAFETY: `socket` is the descriptor of `inner`, which this value
        // owns; it stays open as long as `self` does.
        unsafe { BorrowedFd::borrow_raw(self.socket) }
    }

    /// Sends `buf` from the sealed body it lies in, if it does; `None` means
    /// "write it the ordinary way" (it is not in a sealed body).
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        if buf.len() < MIN_BYTES {
            return None;
        }
        let (file, offset) = find(buf)?;
        *self.holding.get_mut() = false;
        // What was written before goes first: anything the inner stream
        // buffered, then the held head, which waits in the socket for the
        // body's first bytes.
        if self.inner_unflushed {
            match self.poll_flush_inner(cx) {
                Poll::Ready(Ok(())) => {}
                flushing => return Some(flushing.map_ok(|()| 0)),
            }
        }
        match self.poll_send_held_ahead(cx) {
            Poll::Ready(Ok(())) => {}
            sending => return Some(sending.map_ok(|()| 0)),
        }
        loop {
            let mut from = offset;
            match sendfile(self.socket(), &*file, Some(&mut from), buf.len()) {
                Ok(0) => return None,
                Ok(sent) => {
                    self.sent.inc_by(sent as u64);
                    return Some(Poll::Ready(Ok(sent)));
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => match self.poll_writable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    waiting => return Some(waiting.map_ok(|()| 0)),
                },
                Err(errno) => return Some(Poll::Ready(Err(errno.into()))),
            }
        }
    }

    /// Sends the held bytes straight to the socket with `MSG_MORE`: TCP
    /// keeps them until the body that follows fills the segment, so the
    /// head and the body's first bytes arrive in one packet instead of two.
    fn poll_send_held_ahead(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // nix has no name for MSG_MORE; the C library does.
        let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL;
        while !self.held.is_empty() {
            match send(self.socket, &self.held, flags) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(sent) => {
                    self.consume_held(sent);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => ready!(self.poll_writable(cx))?,
                Err(errno) => return Poll::Ready(Err(errno.into())),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Forgets the first `n` held bytes, which are on their way. A
    /// connection keeps a little room for the next response head; an idle
    /// one does not keep a large buffer it once needed.
    fn consume_held(&mut self, n: usize) {
        self.held.drain(..n);
        if self.held.is_empty() && self.held.capacity() > HELD_KEPT_BYTES {
            self.held = Vec::new();
        }
    }

    /// Passes the held bytes on to the inner stream, in order.
    fn poll_release_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            self.inner_unflushed = true;
            let taken = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if taken == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume_held(taken);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `buf` through the inner stream, after the held bytes.
    fn poll_write_through(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_release_held(cx))?;
        self.inner_unflushed = true;
        match bufs {
            [buf] => Pin::new(&mut self.inner).poll_write(cx, buf),
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    /// Flushes the inner stream.
    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.inner_unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Holds `bufs` if the response is being held and they fit; says
    /// whether it did.
    fn hold(&mut self, bufs: &[io::IoSlice<'_>]) -> bool {
        if !*self.holding.get_mut() {
            return false;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held.len() + len > HELD_BYTES {
            return false;
        }
        for buf in bufs {
            self.held.extend_from_slice(buf);
        }
        true
    }

    /// Waits until the socket can take more, after a send found it full.
    ///
    /// Only the inner stream is registered with the runtime, and the only
    /// way to wait through it is to write through it, which would copy the
    /// body after all. So a connection that finds its socket full gets a
    /// registration of its own, on a duplicate of the descriptor (most
    /// never do: the socket takes a whole body at once).
    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.writable.is_none() {
            let duplicate = self.socket().try_clone_to_owned()?;
            // SAFETY: the descriptor is owned by the `AsyncFd` from here on,
            // so it stays open and the same for the registration's life.
            let writable =
                unsafe { AsyncFd::register_with_interest(duplicate, Interest::WRITABLE) }?;
            self.writable = Some(writable);
        }
        let Some(writable) = &self.writable else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        match writable.poll_write_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                // The readiness seen was from before the send found the
                // socket full: forget it and wait for the next.
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Asks `stream`, if it is a [`SendfileStream`], to hold the writes of the
/// response about to be written until it is flushed or a sealed body
/// follows, so that they leave together: the head and a small body in one
/// send, or the head in the first segment of a sealed body.
///
/// Only for a response written whole at once and then flushed, as Pingora
/// does with a body of known length written in one piece (a cache hit). A
/// streamed response must not be held: Pingora does not flush between the
/// pieces of a body of known length, and expects each to go out as it is
/// written.
pub fn hold_response(stream: &Stream) {
    if let Some(stream) = stream.as_any().downcast_ref::<SendfileStream>() {
        stream.holding.store(true, Ordering::Relaxed);
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(sent) = self.poll_sendfile(cx, buf) {
            return sent;
        }
        let bufs = [io::IoSlice::new(buf)];
        if self.hold(&bufs) {
            return Poll::Ready(Ok(buf.len()));
        }
        self.poll_write_through(cx, &bufs)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A chunked body arrives as (chunk size, data, CRLF): hold what
        // comes before a sealed slice, then send the slice.
        let sealed = bufs
            .iter()
            .position(|b| b.len() >= MIN_BYTES && find(b).is_some());
        let before = &bufs[..sealed.unwrap_or(bufs.len())];
        let before_len: usize = before.iter().map(|b| b.len()).sum();
        if before_len > 0 {
            if self.hold(before) {
                return Poll::Ready(Ok(before_len));
            }
            return self.poll_write_through(cx, before);
        }
        match sealed {
            Some(i) => self.poll_write(cx, &bufs[i]),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        *self.holding.get_mut() = false;
        if !self.inner_unflushed && !self.held.is_empty() {
            // Nothing waits in the inner stream, so the held bytes (a whole
            // small response, typically) can go out from here, without
            // another copy. Whatever the socket does not take goes through
            // the inner stream, which waits for room.
            match send(self.socket, &self.held, MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => {
                    self.consume_held(sent);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(errno) => return Poll::Ready(Err(errno.into())),
            }
        }
        ready!(self.poll_release_held(cx))?;
        self.poll_flush_inner(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        *self.holding.get_mut() = false;
        ready!(self.poll_release_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

// Everything else Pingora asks of a connection is the inner stream's.

#[async_trait]
impl Shutdown for SendfileStream {
    /// Shuts down through this stream, so that held bytes go out first.
    async fn shutdown(&mut self) {
        if let Err(error) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!(%error, "could not shut the connection down cleanly");
        }
    }
}

impl UniqueID for SendfileStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

/// Plain TCP: no TLS to report (the defaults say so).
impl Ssl for SendfileStream {}

impl GetTimingDigest for SendfileStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for SendfileStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for SendfileStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for SendfileStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zero_copy::seal;
    use bytes::Bytes;
    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn counter() -> IntCounter {
        IntCounter::new("sent", "bytes sent from pages").expect("counter")
    }

    /// A connected pair on loopback: the server side wrapped as the edge
    /// wraps it, and the client side.
    async fn pair(ip: &str) -> (Stream, TcpStream) {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"));
        let (client, accepted) = tokio::join!(client, listener.accept());
        let accepted = accepted.expect("accept").0;
        // Room for a whole test body: what a send takes then never depends
        // on when the client's acknowledgements come back.
        nix::sys::socket::setsockopt(&accepted, nix::sys::socket::sockopt::SndBuf, &(1 << 20))
            .expect("SO_SNDBUF");
        let server: Stream = Box::new(L4Stream::from(accepted));
        (
            SendfileStream::wrap(server, counter()),
            client.expect("connect"),
        )
    }

    /// Segments that carried data into `socket` so far (TCP_INFO).
    fn data_segments_in(socket: &TcpStream) -> u32 {
        let mut info: nix::libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
        // SAFETY: `info` is a `tcp_info` of `len` bytes the kernel fills in.
        let status = unsafe {
            nix::libc::getsockopt(
                socket.as_raw_fd(),
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_INFO,
                std::ptr::from_mut(&mut info).cast(),
                &mut len,
            )
        };
        assert_eq!(status, 0, "TCP_INFO: {}", io::Error::last_os_error());
        info.tcpi_data_segs_in
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
    }

    /// Sends `head` and then `body` from a fresh connection; returns the
    /// bytes the client received and the number of segments they took.
    async fn send_fresh(ip: &str, head: &[u8], body: &Bytes) -> (Vec<u8>, u32) {
        let (mut server, mut client) = pair(ip).await;
        let before = data_segments_in(&client);
        hold_response(&server);
        server.write_all(head).await.expect("head");
        server.write_all(body).await.expect("body");
        server.flush().await.expect("flush");
        let mut received = vec![0; head.len() + body.len()];
        client.read_exact(&mut received).await.expect("read");
        (received, data_segments_in(&client) - before)
    }

    #[tokio::test]
    async fn the_head_rides_in_the_first_segment_of_a_sealed_body() {
        let data = body(MIN_BYTES + 8 * 1024);
        let sealed = seal(&[Bytes::from(data.clone())], data.len()).expect("sealed");
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 40960\r\n\r\n";
        let (received, with_head) = send_fresh("127.0.31.1", head, &sealed).await;
        assert_eq!(&received[..head.len()], head);
        assert!(received[head.len()..] == data[..], "the body's bytes");
        // How many segments TCP cuts the body alone into on a fresh
        // connection (the same on every one): the head adds none.
        let (_, body_alone) = send_fresh("127.0.31.1", b"", &sealed).await;
        assert_eq!(with_head, body_alone);
    }

    #[tokio::test]
    async fn a_held_response_leaves_in_one_send_at_its_flush() {
        let (mut server, mut client) = pair("127.0.31.5").await;
        let before = data_segments_in(&client);
        hold_response(&server);
        server
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("head");
        server.write_all(&body(1024)).await.expect("body");
        server.flush().await.expect("flush");
        let mut received = vec![0; 19 + 1024];
        client.read_exact(&mut received).await.expect("read");
        assert_eq!(data_segments_in(&client) - before, 1);
    }

    #[tokio::test]
    async fn writes_of_a_response_not_held_go_out_at_once() {
        // Pingora streams a body of known length without flushing between
        // its pieces: each must reach the client as it is written.
        let (mut server, mut client) = pair("127.0.31.6").await;
        hold_response(&server);
        server.write_all(b"held").await.expect("write");
        server.flush().await.expect("flush");
        server.write_all(b" then streamed").await.expect("write");
        let mut received = vec![0; 18];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut received))
            .await
            .expect("the unflushed write arrived")
            .expect("read");
        assert_eq!(&received, b"held then streamed");
    }

    #[tokio::test]
    async fn held_writes_keep_their_order_around_larger_ones() {
        let (mut server, mut client) = pair("127.0.31.2").await;
        let large = body(HELD_BYTES + 1);
        hold_response(&server);
        server.write_all(b"first ").await.expect("write");
        server.write_all(&large).await.expect("write");
        server.write_all(b" last").await.expect("write");
        server.shutdown().await.expect("shutdown");
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.expect("read");
        let mut expected = b"first ".to_vec();
        expected.extend_from_slice(&large);
        expected.extend_from_slice(b" last");
        assert!(received == expected, "bytes out of order or lost");
    }

    #[tokio::test]
    async fn a_chunked_sealed_body_keeps_its_framing() {
        let (mut server, mut client) = pair("127.0.31.3").await;
        let data = body(MIN_BYTES);
        let sealed = seal(&[Bytes::from(data.clone())], data.len()).expect("sealed");
        let size = format!("{:x}\r\n", data.len());
        let slices = [
            io::IoSlice::new(size.as_bytes()),
            io::IoSlice::new(&sealed),
            io::IoSlice::new(b"\r\n"),
        ];
        let mut expected = Vec::new();
        for slice in &slices {
            expected.extend_from_slice(slice);
        }
        hold_response(&server);
        let mut remaining = expected.len();
        let mut offset = 0;
        while remaining > 0 {
            // Resubmit what is left, as a writer of vectored I/O does.
            let mut rest = Vec::new();
            let mut skip = offset;
            for slice in &slices {
                if skip >= slice.len() {
                    skip -= slice.len();
                    continue;
                }
                rest.push(io::IoSlice::new(&slice[skip..]));
                skip = 0;
            }
            let written = server.write_vectored(&rest).await.expect("write");
            assert!(written > 0);
            offset += written;
            remaining -= written;
        }
        server.shutdown().await.expect("shutdown");
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.expect("read");
        assert!(received == expected, "chunk framing or body lost");
    }

    #[tokio::test]
    async fn an_idle_connection_does_not_keep_a_large_buffer() {
        let listener = TcpListener::bind(("127.0.31.4", 0)).await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"));
        let (client, accepted) = tokio::join!(client, listener.accept());
        let _client = client.expect("connect");
        let tcp: Stream = Box::new(L4Stream::from(accepted.expect("accept").0));
        let Ok(mut stream) = SendfileStream::new(tcp, counter()) else {
            panic!("a TCP stream is wrapped");
        };
        *stream.holding.get_mut() = true;
        stream.write_all(&body(HELD_BYTES)).await.expect("write");
        assert_eq!(stream.held.len(), HELD_BYTES, "small writes are held");
        stream.flush().await.expect("flush");
        assert!(stream.held.is_empty());
        assert_eq!(stream.held.capacity(), 0);
        *stream.holding.get_mut() = true;
        stream
            .write_all(b"HTTP/1.1 304 Not Modified\r\n\r\n")
            .await
            .expect("write");
        stream.flush().await.expect("flush");
        assert!(
            stream.held.capacity() > 0,
            "a small buffer stays for the next head"
        );
    }
}
