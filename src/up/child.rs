//! One supervised child process of `meridian up`.
//!
//! A child runs one role of this same binary (`meridian edge --region ...`).
//! Its output is relayed line by line to our stderr, prefixed with its
//! label, and the last lines of its stderr are kept so that a child that
//! dies at start can be reported with its own error message.

use anyhow::Context;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child as Process, Command};

/// How many of a child's last stderr lines are kept for error reports.
const TAIL_LINES: usize = 20;

/// A running child.
pub struct Child {
    /// e.g. `edge eu-west`.
    pub label: String,
    process: Process,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The task relaying its stderr, until [`Child::drain`] waited for it.
    stderr_relay: Option<tokio::task::JoinHandle<()>>,
}

impl Child {
    /// Starts `exe args...` as the child called `label`.
    pub fn spawn(label: &str, exe: &Path, args: &[OsString]) -> anyhow::Result<Child> {
        let mut command = Command::new(exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        {
            // Its own process group: a Ctrl-C in the terminal reaches only
            // `up`, which then stops the children in order.
            command.process_group(0);
            die_with_parent(&mut command);
        }
        let mut process = command
            .spawn()
            .with_context(|| format!("cannot start {label} ({})", exe.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(stdout) = process.stdout.take() {
            tokio::spawn(relay(label.to_owned(), stdout, None));
        }
        let stderr_relay = process
            .stderr
            .take()
            .map(|stderr| tokio::spawn(relay(label.to_owned(), stderr, Some(tail.clone()))));
        Ok(Child {
            label: label.to_owned(),
            process,
            tail,
            stderr_relay,
        })
    }

    /// Its process id, until it has been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Waits for it to exit.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        self.process.wait().await.ok()
    }

    /// The last lines it wrote to stderr, for error messages.
    pub fn last_error_line(&self) -> Option<String> {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter()
            .rev()
            .find(|line| line.contains("error"))
            .or_else(|| tail.back())
            .cloned()
    }

    /// Waits, at most `within`, until everything an exited child wrote to
    /// stderr has been read: its exit can be seen before its last lines,
    /// and those say why it died.
    pub async fn drain(&mut self, within: std::time::Duration) {
        if let Some(relay) = self.stderr_relay.take() {
            let _ = tokio::time::timeout(within, relay).await;
        }
    }

    /// Its last stderr line that reports an error, if any: why it died,
    /// when it says so (a process killed by a signal says nothing).
    pub fn last_error(&self) -> Option<String> {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter()
            .rev()
            .find(|line| line.to_ascii_lowercase().contains("error"))
            .cloned()
    }

    /// Asks it to stop (SIGTERM): it finishes in-flight work and exits.
    pub fn terminate(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.process.id() {
            use nix::sys::signal::{Signal, kill};
            use nix::unistd::Pid;
            let pid = i32::try_from(pid).unwrap_or(i32::MAX);
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            return;
        }
        let _ = self.process.start_kill();
    }

    /// Kills it outright (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.process.start_kill();
    }

    /// Waits for it to exit until `deadline`, then kills it (SIGKILL).
    pub async fn wait_or_kill(&mut self, deadline: tokio::time::Instant) {
        if tokio::time::timeout_at(deadline, self.wait())
            .await
            .is_err()
        {
            tracing::warn!(child = %self.label, "did not stop in time; killing it");
            self.kill();
            self.wait().await;
        }
    }
}

/// Copies a child's output to our stderr, one prefixed line at a time.
async fn relay(
    label: String,
    output: impl AsyncRead + Unpin,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{label}] {line}");
        if let Some(tail) = &tail {
            let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(strip_ansi(&line));
        }
    }
}

/// Removes terminal colour codes so error lines read cleanly when quoted.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes the kernel SIGKILL the child if `up` itself dies, even by SIGKILL,
/// so a crashed launcher never leaves orphaned servers holding ports.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe, and getppid(2).
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died between fork and prctl.
            if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(strip_ansi("\u{1b}[31mERROR\u{1b}[0m boom"), "ERROR boom");
        assert_eq!(strip_ansi("plain"), "plain");
    }
}
