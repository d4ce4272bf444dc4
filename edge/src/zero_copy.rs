//! Zero-copy sends of large cached bodies, where the system offers them.
//!
//! A cache hit of a 100 KiB object spends most of its CPU time copying the
//! body from the cache into the socket's buffers. nginx avoids that copy by
//! serving its cache files with sendfile(2), which hands the kernel's own
//! pages of a file to TCP. On Linux the edge does the same, in two halves:
//! [`sealed`] keeps each large stored body in a sealed memory file, and
//! [`sendfile`] sends slices of those files to plain-TCP clients without a
//! copy, the response head riding in the body's first segment
//! (`MSG_MORE`). The client connection ([`crate::connection`]) asks for
//! both.
//!
//! Elsewhere (and on Linux with the `portable` feature, which CI builds to
//! keep this path honest) bodies stay on the heap and are written as
//! Pingora writes them: [`seal`] declines and there is never a
//! [`Socket`]. Every behaviour but the copy is the same.

/// Bodies this large or larger are sealed, and slices this large or larger
/// are sent with sendfile. Below it, copying costs less than a file (pages
/// are 4 KiB, so a small body would waste much of its last page) and the
/// copy can share one send with the response head.
#[cfg_attr(
    not(all(target_os = "linux", not(feature = "portable"))),
    allow(dead_code)
)]
pub const MIN_BYTES: usize = 32 * 1024;

#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod sealed;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod sendfile;

#[cfg(all(test, target_os = "linux", not(feature = "portable")))]
pub use sealed::page_bytes;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub use sealed::{footprint, map_file, seal};
#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub(crate) use sendfile::Socket;

/// Whether this build sends sealed bodies without copying them.
#[cfg(test)]
pub const ENABLED: bool = cfg!(all(target_os = "linux", not(feature = "portable")));

/// Without zero-copy sends, bodies stay on the heap.
#[cfg(not(all(target_os = "linux", not(feature = "portable"))))]
pub fn seal(_chunks: &[bytes::Bytes], _len: usize) -> Option<bytes::Bytes> {
    None
}

/// Without zero-copy sends, cache files' bodies are read, not mapped.
#[cfg(not(all(target_os = "linux", not(feature = "portable"))))]
pub fn map_file(_file: std::fs::File, _offset: usize, _len: usize) -> Option<bytes::Bytes> {
    None
}

/// Without zero-copy sends, no body is in pages of its own.
#[cfg(not(all(target_os = "linux", not(feature = "portable"))))]
pub fn footprint(_body: &bytes::Bytes) -> Option<usize> {
    None
}

/// Without zero-copy sends there is no socket to send from: a type with no
/// values, so the connection's zero-copy branches compile to nothing.
#[cfg(not(all(target_os = "linux", not(feature = "portable"))))]
pub(crate) enum Socket {}

#[cfg(not(all(target_os = "linux", not(feature = "portable"))))]
impl Socket {
    pub(crate) fn of(
        _stream: &pingora::protocols::Stream,
        _sent: prometheus::IntCounter,
    ) -> Option<Socket> {
        None
    }

    pub(crate) fn is_sealed(&self, _buf: &[u8]) -> bool {
        match *self {}
    }

    pub(crate) fn poll_sendfile(
        &mut self,
        _cx: &mut std::task::Context<'_>,
        _buf: &[u8],
    ) -> Option<std::task::Poll<std::io::Result<usize>>> {
        match *self {}
    }

    pub(crate) fn poll_send_ahead(
        &mut self,
        _cx: &mut std::task::Context<'_>,
        _bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match *self {}
    }

    pub(crate) fn send_now(&self, _bytes: &[u8]) -> std::io::Result<usize> {
        match *self {}
    }
}
