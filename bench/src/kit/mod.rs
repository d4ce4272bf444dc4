//! The test kit: what the end-to-end tests (`tests/meridian/`), the bench
//! scenarios and the GeoDNS fuzz test share to run and talk to Meridian.
//!
//! Before it there were three process harnesses, five ways of moving the
//! demo to other addresses (mostly `.replace()` on config text, which
//! silently does nothing once the text it looks for changes), three DNS
//! query builders, three DNS mutators and three temporary-directory types.
//! Now there is one of each:
//!
//! - [`process`]: a child process with its output captured, its
//!   `listening for {proto} on {addr}` lines scraped, its log replayed when
//!   a test fails, and its whole process tree killed on drop;
//! - [`roles`]: `meridian up`, `edge` and `geodns` started on a
//!   [`Topology`], each ready when its listeners say so;
//! - [`topology`]: the demo topology moved onto a private loopback block
//!   (`127.B.x.y`), changed through typed setters on the parsed TOML and
//!   validated by the config crate before any process sees it;
//! - [`dns`]: one DNS client on hickory-proto, blocking for tests and
//!   async for the bench;
//! - [`origin`]: an origin whose every answer a test scripts (and which
//!   counts what it got), and one that records raw bytes;
//! - [`mutation`]: the seed corpus and mutators of DNS messages, used by
//!   the fuzz test, the hostile-input test and the flood benchmark.
//!
//! Temporary directories are `tempfile`'s.
//!
//! The kit returns errors rather than panicking where a bench run could
//! hit them; the typed setters of [`Topology`] panic on misuse (a region
//! that does not exist), which is a bug in the caller.

pub mod dns;
pub mod mutation;
pub mod origin;
pub mod process;
pub mod roles;
pub mod topology;

pub use origin::{Received, RecordingOrigin, Reply, ScriptedOrigin, ok};
pub use process::Process;
pub use roles::{Edge, GeoDns, Up};
pub use topology::{RateLimit, Topology};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong in the kit.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// A program could not be started.
    #[error("cannot start {}: {source}", binary.display())]
    Spawn {
        /// The program.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A process exited before it was ready.
    #[error("{name} exited with {status} before {waiting_for}\n{log}")]
    Exited {
        /// What it was.
        name: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What was awaited.
        waiting_for: String,
        /// Its output so far.
        log: String,
    },
    /// A process did not get ready in time.
    #[error("{name} did not show {waiting_for} within {waited:?}\n{log}")]
    NotReady {
        /// What it was.
        name: String,
        /// What was awaited.
        waiting_for: String,
        /// How long.
        waited: Duration,
        /// Its output so far.
        log: String,
    },
    /// A local OS operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A topology the config crate refuses.
    #[error("the topology does not validate: {0}")]
    Config(String),
    /// A DNS exchange failed or was answered wrongly.
    #[error("DNS with {server}: {reason}")]
    Dns {
        /// The server asked.
        server: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

impl KitError {
    /// An [`KitError::Io`] for `action`.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> KitError {
        let action = action.into();
        move |source| KitError::Io { action, source }
    }
}

/// Locks `mutex` even if a thread panicked holding it: the kit's shared
/// values (log lines, counters, recordings) are never left half-written.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether anything accepts TCP connections on `addr` now.
pub fn tcp_listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Polls `condition` every 50 ms until it holds (true) or `within`
/// passes (false): for conditions a test waits on, never a fixed sleep.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
