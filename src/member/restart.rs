//! Restarting the process in place, for a config revision an edge or an
//! origin cannot take while running (neither reloads its config).
//!
//! The process executes itself again (`/proc/self/exe`, the same
//! arguments and environment): the PID stays, so `meridian up`'s
//! supervisor and systemd see no crash, and the new image starts from the
//! applied file the member has just written. Its listening sockets close
//! with the old image (they are close-on-exec) and open again when the new
//! one binds: for that moment, about as long as the role takes to start,
//! new connections are refused and requests in flight are cut. An edge's
//! in-memory cache starts empty (its region's peers and origin fill it
//! again). That is why a member restarts only for a revision that changes
//! the role's own settings.

/// Replaces this process with a fresh run of the same command line; only
/// returns if that failed, with why.
pub fn restart_in_place() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    // The new image inherits the calling thread's signal mask; a thread of
    // an async runtime may have signals blocked, and the new process must
    // still stop on SIGTERM.
    if let Err(error) = nix::sys::signal::SigSet::empty().thread_set_mask() {
        return std::io::Error::other(format!("cannot clear the signal mask: {error}"));
    }
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| "meridian".into());
    std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(args)
        .exec()
}
