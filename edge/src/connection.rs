//! The client connection under Pingora's HTTP writer.
//!
//! [`ClientConnections`] wraps every client connection (plain TCP and TLS)
//! in a [`ClientStream`] before Pingora's HTTP application reads from it.
//! Pingora writes each response as byte slices and offers no hook between
//! its HTTP/1 writer and the socket; these three things need one:
//!
//! - **One send per hit.** For a hit the proxy asks the connection to hold
//!   the response's writes ([`hold_response`]): a small body then leaves
//!   with its head in one send at the flush that ends the response, and
//!   where zero-copy sends are available ([`crate::zero_copy`], Linux,
//!   plain TCP) a sealed body goes out with sendfile, its head sent ahead
//!   with `MSG_MORE` so that it rides in the body's first segment.
//!   Streamed responses (misses) are never held: Pingora does not flush
//!   between the pieces of a body of known length, and expects each to go
//!   out as it is written.
//! - **The stored `Date`.** Pingora's HTTP/1 writer sets every response's
//!   `Date` to now. A hit must carry the stored response's (RFC 9110
//!   §6.6.1: `Date` is when the origin made it; a cache adds `Age`), so the
//!   proxy hands it over with the hold, and the connection writes it into
//!   the head before the head leaves. (HTTP/2 heads are compressed by the
//!   time they pass here; Pingora's HTTP/2 writer keeps its own `Date`.)
//! - **Pingora's own error head.** A request head Pingora cannot parse at
//!   all (a target beyond what a URI may hold, more than 256 fields, a
//!   megabyte of head) is answered by Pingora itself, before the proxy sees
//!   the request, with a fixed `400` naming Pingora in `Server`. The
//!   connection knows what the client sent since the last response, so it
//!   puts the edge's own answer in its place: `414` for a target too long,
//!   `431` for a head too large, else `400` (see
//!   [`framing::refusal_for_unreadable_head`]).
//!
//! Held bytes always go out before anything written after them, including
//! on shutdown.

use crate::framing::{self, HeadSeen};
use crate::zero_copy::Socket;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The most a connection holds back. A response head is a few hundred
/// bytes; a small body with it stays well under this too, and bigger
/// writes are passed on at once.
pub const HELD_BYTES: usize = 16 * 1024;

/// The room for held bytes a connection keeps between responses.
const HELD_KEPT_BYTES: usize = 4 * 1024;

/// The head Pingora writes for a request head it could not parse.
const PINGORA_BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\n";

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`): always this long.
const HTTP_DATE_BYTES: usize = 29;

/// A server application whose client connections are [`ClientStream`]s.
pub struct ClientConnections<A> {
    app: Arc<A>,
    zero_copy_sent: IntCounter,
}

impl<A> ClientConnections<A> {
    /// Wraps `app`; `zero_copy_sent` counts the bytes sent without a copy.
    pub fn new(app: A, zero_copy_sent: IntCounter) -> Self {
        ClientConnections {
            app: Arc::new(app),
            zero_copy_sent,
        }
    }
}

#[async_trait]
impl<A> ServerApp for ClientConnections<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = ClientStream::wrap(stream, self.zero_copy_sent.clone());
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// A client connection, as seen from under Pingora's HTTP writer. See the
/// module documentation.
pub struct ClientStream {
    inner: Stream,
    /// The plain-TCP socket, where zero-copy sends are available.
    socket: Option<Socket>,
    /// Set by [`hold_response`]: the response's small writes are held
    /// until a flush or a sealed body comes.
    holding: AtomicBool,
    /// Set by [`hold_response`]: the stored `Date` to write into the head.
    stored_date: Mutex<Option<[u8; HTTP_DATE_BYTES]>>,
    /// Small writes not yet passed on: the response head, and a small body.
    held: Vec<u8>,
    /// Whether the inner stream may have bytes buffered that it has not
    /// sent yet (anything written to it since its last flush).
    inner_unflushed: bool,
    /// What the client sent since the last response began.
    head_seen: HeadSeen,
    /// Whether a response was written since the client last sent bytes.
    wrote_since_read: bool,
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("inner", &self.inner)
            .field("zero_copy", &self.socket.is_some())
            .field("held", &self.held.len())
            .finish()
    }
}

impl ClientStream {
    /// Wraps `stream`.
    pub fn wrap(stream: Stream, zero_copy_sent: IntCounter) -> Stream {
        Box::new(Self::new(stream, zero_copy_sent))
    }

    fn new(stream: Stream, zero_copy_sent: IntCounter) -> Self {
        let socket = Socket::of(&stream, zero_copy_sent);
        ClientStream {
            inner: stream,
            socket,
            holding: AtomicBool::new(false),
            stored_date: Mutex::new(None),
            held: Vec::new(),
            inner_unflushed: false,
            head_seen: HeadSeen::default(),
            wrote_since_read: false,
        }
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

    /// Writes `bufs` through the inner stream, after the held bytes.
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

    /// A response head about to be written: the edge's own answer in place
    /// of Pingora's fixed 400 for an unreadable head, Pingora's name taken
    /// out of any other head it wrote itself, or the stored `Date` written
    /// in. `None`: `head` goes out as it is.
    fn rewrite_head(&mut self, head: &[u8]) -> Option<Vec<u8>> {
        if head.starts_with(PINGORA_BAD_REQUEST) {
            let refusal = framing::refusal_for_unreadable_head(&self.head_seen);
            return Some(framing::refusal_head(refusal));
        }
        // Only the status line is looked at: heads start with it, and the
        // search must not walk a body that happens to start like one.
        let line_end = head
            .iter()
            .take(64)
            .position(|&b| b == b'\r')
            .filter(|&i| head.get(i + 1) == Some(&b'\n'))?;
        let server_line = b"\r\nServer: Pingora\r\n";
        if head[line_end..].starts_with(server_line) {
            let mut rewritten = head[..line_end + 2].to_vec();
            rewritten.extend_from_slice(&head[line_end + server_line.len()..]);
            return Some(rewritten);
        }
        let date = self
            .stored_date
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let mut stamped = head.to_vec();
        stamp_date(&mut stamped, &date);
        Some(stamped)
    }

    /// Writes `buf` the ordinary way: a head rewritten if need be, held if
    /// the response is being held, else through the inner stream.
    fn poll_write_one(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.starts_with(b"HTTP/1.")
            && let Some(head) = self.rewrite_head(buf)
        {
            // A head Pingora wrote whole: kept here until what follows it
            // (its body, or the flush that ends it), and sent before that.
            self.held.extend_from_slice(&head);
            return Poll::Ready(Ok(buf.len()));
        }
        let bufs = [io::IoSlice::new(buf)];
        if self.hold(&bufs) {
            return Poll::Ready(Ok(buf.len()));
        }
        self.poll_write_through(cx, &bufs)
    }

    /// Sends `buf`, a slice of a sealed body, from its file: what was
    /// written before goes first (anything the inner stream buffered, then
    /// the held head, sent ahead to wait in the socket for the body's first
    /// bytes). `None`: write it the ordinary way.
    fn poll_zero_copy(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        if !self.socket.as_ref()?.is_sealed(buf) {
            return None;
        }
        *self.holding.get_mut() = false;
        if self.inner_unflushed {
            match self.poll_flush_inner(cx) {
                Poll::Ready(Ok(())) => {}
                flushing => return Some(flushing.map_ok(|()| 0)),
            }
        }
        while !self.held.is_empty() {
            let socket = self.socket.as_mut()?;
            match socket.poll_send_ahead(cx, &self.held) {
                Poll::Ready(Ok(sent)) => self.consume_held(sent),
                other => return Some(other.map_ok(|_| 0)),
            }
        }
        self.socket.as_mut()?.poll_sendfile(cx, buf)
    }
}

/// Writes `date` over the `Date` field's value in `head`, if `head` is a
/// whole response head whose `Date` has an IMF-fixdate value (as Pingora
/// writes it).
fn stamp_date(head: &mut [u8], date: &[u8; HTTP_DATE_BYTES]) {
    if !head.starts_with(b"HTTP/1.") {
        return;
    }
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let name = b"\r\ndate: ";
    let field = head[..end]
        .windows(name.len())
        .position(|w| w.eq_ignore_ascii_case(name));
    let Some(field) = field else { return };
    let value = field + name.len();
    if head.get(value + HTTP_DATE_BYTES..value + HTTP_DATE_BYTES + 2) == Some(b"\r\n") {
        head[value..value + HTTP_DATE_BYTES].copy_from_slice(date);
    }
}

/// Asks `stream`, if it is a [`ClientStream`], to hold the writes of the
/// response about to be written until it is flushed or a sealed body
/// follows, so that they leave together, and to give it `stored_date`
/// (see [`stored_date`]).
///
/// Only for a response written whole at once and then flushed, as Pingora
/// does with a complete stored body (a hit). A streamed response must not
/// be held.
pub fn hold_response(stream: &Stream, stored_date: Option<&[u8]>) {
    if let Some(stream) = stream.as_any().downcast_ref::<ClientStream>() {
        stream.holding.store(true, Ordering::Relaxed);
        set_stored_date(stream, stored_date);
    }
}

/// Asks `stream`, if it is a [`ClientStream`], to write `stored_date` (the
/// stored response's `Date`, when it is a valid HTTP date) into the head of
/// the response about to be written, in place of the `Date` Pingora's
/// writer sets to now.
pub fn stored_date(stream: &Stream, stored_date: Option<&[u8]>) {
    if let Some(stream) = stream.as_any().downcast_ref::<ClientStream>() {
        set_stored_date(stream, stored_date);
    }
}

fn set_stored_date(stream: &ClientStream, stored_date: Option<&[u8]>) {
    // Any HTTP date the origin sent, as the IMF-fixdate Pingora writes.
    let date = stored_date
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .map(httpdate::fmt_http_date)
        .and_then(|d| <[u8; HTTP_DATE_BYTES]>::try_from(d.as_bytes()).ok());
    *stream
        .stored_date
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = date;
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wrote_since_read = true;
        if let Some(sent) = self.poll_zero_copy(cx, buf) {
            return sent;
        }
        self.poll_write_one(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote_since_read = true;
        // A chunked body arrives as (chunk size, data, CRLF): hold what
        // comes before a sealed slice, then send the slice.
        let sealed = match &self.socket {
            Some(socket) => bufs.iter().position(|b| socket.is_sealed(b)),
            None => None,
        };
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
            let sent = match &self.socket {
                Some(socket) => socket.send_now(&self.held)?,
                None => 0,
            };
            self.consume_held(sent);
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

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let arrived = &buf.filled()[before..];
        if !arrived.is_empty() {
            let this = &mut *self;
            if std::mem::take(&mut this.wrote_since_read) {
                this.head_seen = HeadSeen::default();
            }
            this.head_seen.saw(arrived);
        }
        Poll::Ready(Ok(()))
    }
}

// Everything else Pingora asks of a connection is the inner stream's.

#[async_trait]
impl Shutdown for ClientStream {
    /// Shuts down through this stream, so that held bytes go out first.
    async fn shutdown(&mut self) {
        if let Err(error) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!(%error, "could not shut the connection down cleanly");
        }
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

/// TLS, when the connection has it: its negotiated protocol (ALPN) is what
/// tells Pingora to speak HTTP/2.
impl Ssl for ClientStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
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

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests;
