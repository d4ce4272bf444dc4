//! The kit's error, and the small helpers every part of it uses.

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
    /// A [`KitError::Io`] for `action`.
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
