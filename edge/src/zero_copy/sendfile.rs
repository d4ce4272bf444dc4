//! Sending sealed bodies with sendfile(2), and the response head with them
//! (Linux, plain TCP).
//!
//! [`Socket`] is a client connection's socket as the connection's writer
//! ([`crate::connection::ClientStream`]) uses it beside Pingora's own
//! stream: to send a slice of a sealed body straight from its file, and to
//! send the response head ahead of it with `MSG_MORE`, so that TCP puts the
//! head and the body's first bytes into one segment instead of two.

#![allow(unsafe_code)]

use super::MIN_BYTES;
use super::sealed::find;
use nix::errno::Errno;
use nix::sys::sendfile::sendfile;
use nix::sys::socket::{MsgFlags, send};
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as TcpStream;
use prometheus::IntCounter;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A plain-TCP client socket, for sends that bypass Pingora's stream.
pub(crate) struct Socket {
    fd: RawFd,
    /// A registration of the socket for writability, made the first time
    /// it is found full (see [`Socket::poll_writable`]).
    writable: Option<AsyncFd<OwnedFd>>,
    /// Bytes sent from pages, without a copy.
    sent: IntCounter,
}

impl Socket {
    /// The socket under `stream`, if it is a plain TCP connection (TLS must
    /// encrypt every byte in user space anyway).
    pub(crate) fn of(stream: &Stream, sent: IntCounter) -> Option<Socket> {
        let tcp = stream.as_any().downcast_ref::<TcpStream>()?;
        Some(Socket {
            fd: tcp.as_raw_fd(),
            writable: None,
            sent,
        })
    }

    /// The socket, borrowed.
    fn borrowed(&self) -> BorrowedFd<'_> {
        // SAFETY: `fd` is the descriptor of the connection's stream, which
        // the same `ClientStream` owns; it stays open as long as this does.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// Whether `buf` lies in a sealed body (and is worth a sendfile).
    pub(crate) fn is_sealed(&self, buf: &[u8]) -> bool {
        buf.len() >= MIN_BYTES && find(buf).is_some()
    }

    /// Sends `buf` from the sealed body it lies in; `None` means "write it
    /// the ordinary way" (it is not in one, or the system would not).
    pub(crate) fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        let (file, offset) = find(buf)?;
        loop {
            let mut from = offset;
            match sendfile(self.borrowed(), &*file, Some(&mut from), buf.len()) {
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

    /// Sends `bytes` (a response head) with `MSG_MORE`: TCP keeps them
    /// until the body that follows fills the segment. Returns how many the
    /// socket took.
    pub(crate) fn poll_send_ahead(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        // nix has no name for MSG_MORE; the C library does.
        let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL;
        loop {
            match send(self.fd, bytes, flags) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(sent) => return Poll::Ready(Ok(sent)),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => match self.poll_writable(cx) {
                    Poll::Ready(Ok(())) => {}
                    waiting => return waiting.map_ok(|()| 0),
                },
                Err(errno) => return Poll::Ready(Err(errno.into())),
            }
        }
    }

    /// Sends what the socket takes of `bytes` now, without waiting; 0 when
    /// it is full.
    pub(crate) fn send_now(&self, bytes: &[u8]) -> io::Result<usize> {
        match send(self.fd, bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(sent) => Ok(sent),
            Err(Errno::EINTR | Errno::EAGAIN) => Ok(0),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Waits until the socket can take more, after a send found it full.
    ///
    /// Only Pingora's stream is registered with the runtime, and the only
    /// way to wait through it is to write through it, which would copy the
    /// body after all. So a connection that finds its socket full gets a
    /// registration of its own, on a duplicate of the descriptor (most
    /// never do: the socket takes a whole body at once).
    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.writable.is_none() {
            let duplicate = self.borrowed().try_clone_to_owned()?;
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
