//! A server under test as a child process.
//!
//! Every Meridian listener logs one stable line, `listening for {proto} on
//! {addr}`, so a test learns where a process listens, and that it is up,
//! from the process itself rather than by polling addresses it guessed.
//! The output of both pipes is kept (the last [`KEPT_LINES`] lines) and
//! replayed when the test panics, because the first question about a
//! failed test is what the server said; and the process, with everything
//! it started, is killed on drop, so a failed test leaves nothing behind.

use super::error::{KitError, lock, tcp_listening};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How many output lines are kept.
pub const KEPT_LINES: usize = 20_000;

/// How many of them an error message quotes.
const QUOTED_LINES: usize = 200;

/// The captured output and whether both pipes have closed.
#[derive(Default)]
struct Output {
    lines: VecDeque<String>,
    /// Lines ever read (the ones dropped from the front included).
    total: usize,
    open_pipes: usize,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// A running child, killed with its descendants on drop.
pub struct Process {
    child: Child,
    name: String,
    binary: PathBuf,
    output: Shared,
    /// Lines already handed out by [`Process::new_lines`].
    seen: usize,
}

/// One `listening for {proto} on {addr} ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `HTTP`, `HTTPS`, `UDP`, `TCP`.
    pub proto: String,
    /// The address.
    pub addr: SocketAddr,
    /// The whole line, for what follows the address (`(admin)`, ...).
    pub line: String,
}

impl Process {
    /// Starts `command` (its stdout and stderr captured, no stdin); `name`
    /// says what it is in messages.
    pub fn spawn(mut command: Command, name: impl Into<String>) -> Result<Process, KitError> {
        let binary = PathBuf::from(command.get_program());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| KitError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let output: Shared = Arc::default();
        if let Some(stdout) = child.stdout.take() {
            read_lines(stdout, output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            read_lines(stderr, output.clone());
        }
        Ok(Process {
            child,
            name: name.into(),
            binary,
            output,
            seen: 0,
        })
    }

    /// The program it runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The output lines kept so far, stdout and stderr interleaved.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.output.0).lines.iter().cloned().collect()
    }

    /// The lines that arrived since the last call.
    pub fn new_lines(&mut self) -> Vec<String> {
        let output = lock(&self.output.0);
        let first = output.total - output.lines.len();
        let skip = self.seen.saturating_sub(first);
        self.seen = output.total;
        output.lines.iter().skip(skip).cloned().collect()
    }

    /// Every `listening for ...` line so far.
    pub fn listeners(&self) -> Vec<Listener> {
        lock(&self.output.0)
            .lines
            .iter()
            .filter_map(|line| parse_listener(line))
            .collect()
    }

    /// Waits until a line satisfies `wanted` and returns it; fails if the
    /// process exits first or `within` passes.
    pub fn wait_for_line(
        &mut self,
        waiting_for: &str,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<String, KitError> {
        let deadline = Instant::now() + within;
        loop {
            {
                let (output, changed) = &*self.output;
                let guard = lock(output);
                if let Some(line) = guard.lines.iter().find(|l| wanted(l)) {
                    return Ok(line.clone());
                }
                // A short wait, then a look at whether the child exited.
                let _ = changed.wait_timeout(guard, Duration::from_millis(100));
            }
            if let Some(status) = self.exit_status() {
                // Its last words may still be in the pipes.
                self.wait_for_pipes(Duration::from_secs(2));
                if let Some(line) = lock(&self.output.0).lines.iter().find(|l| wanted(l)) {
                    return Ok(line.clone());
                }
                return Err(self.exited(status, waiting_for));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(waiting_for, within));
            }
        }
    }

    /// Waits for the `listening for {proto} on ...` line whose rest
    /// satisfies `which`, and returns the address it names.
    pub fn wait_listening(
        &mut self,
        proto: &str,
        within: Duration,
        which: impl Fn(&Listener) -> bool,
    ) -> Result<SocketAddr, KitError> {
        let line = self.wait_for_line(&format!("listening for {proto}"), within, |line| {
            parse_listener(line).is_some_and(|l| l.proto == proto && which(&l))
        })?;
        parse_listener(&line)
            .map(|l| l.addr)
            .ok_or_else(|| KitError::Config(format!("unreadable listener line {line:?}")))
    }

    /// Waits until a TCP connection to `addr` is accepted (a listener may
    /// log its address before its socket is bound).
    pub fn wait_accepting(&mut self, addr: SocketAddr, within: Duration) -> Result<(), KitError> {
        self.poll(&format!("connections on {addr}"), within, || {
            tcp_listening(addr)
                .then_some(())
                .ok_or_else(|| "refused".to_owned())
        })
    }

    /// Calls `ready` every 50 ms until it succeeds; fails if the process
    /// exits first or `within` passes, saying what `ready` last said.
    pub fn poll(
        &mut self,
        waiting_for: &str,
        within: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) -> Result<(), KitError> {
        let deadline = Instant::now() + within;
        loop {
            let last = match ready() {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            if let Some(status) = self.exit_status() {
                return Err(self.exited(status, waiting_for));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(&format!("{waiting_for} (last: {last})"), within));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The error for it having exited with `status` while `waiting_for`.
    pub fn exited(&self, status: ExitStatus, waiting_for: &str) -> KitError {
        KitError::Exited {
            name: self.name.clone(),
            status,
            waiting_for: waiting_for.to_owned(),
            log: self.log_excerpt(),
        }
    }

    /// The error for `waiting_for` not having happened within `waited`.
    pub fn not_ready(&self, waiting_for: &str, waited: Duration) -> KitError {
        KitError::NotReady {
            name: self.name.clone(),
            waiting_for: waiting_for.to_owned(),
            waited,
            log: self.log_excerpt(),
        }
    }

    /// How it exited, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits for it to exit; `None` if it still runs after `within`.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to it (not to its descendants).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Kills its descendants and it (SIGKILL) and reaps it. Doing it
    /// again does nothing.
    pub fn kill(&mut self) {
        // The descendants first: once the parent is gone they are orphans
        // and harder to find (nginx's workers outlive their master).
        if self.exit_status().is_none() {
            for pid in crate::tree::descendants(self.child.id()) {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Prints the kept output to stderr, framed.
    pub fn replay(&self) {
        eprintln!(
            "--- output of {} ({}) ---",
            self.name,
            self.binary.display()
        );
        for line in self.lines() {
            eprintln!("{line}");
        }
        eprintln!("--- end of {} ---", self.name);
    }

    /// The last lines of output, for an error message.
    pub fn log_excerpt(&self) -> String {
        let output = lock(&self.output.0);
        let skip = output.lines.len().saturating_sub(QUOTED_LINES);
        let mut text = format!("--- output of {} ---\n", self.name);
        for line in output.lines.iter().skip(skip) {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("--- end ---");
        text
    }

    /// Waits up to `within` for both pipes to close.
    fn wait_for_pipes(&self, within: Duration) {
        let (output, changed) = &*self.output;
        let guard = lock(output);
        let _ = changed.wait_timeout_while(guard, within, |o| o.open_pipes > 0);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // What it printed as it died is worth waiting a moment for.
            self.wait_for_pipes(Duration::from_secs(2));
            self.replay();
        }
    }
}

/// A command that ran to its end: how it exited and what it printed.
#[derive(Debug, Clone)]
pub struct Ran {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Ran {
    /// Runs `command` to its end, its output captured.
    pub fn run(command: &mut Command) -> Result<Ran, KitError> {
        let output = command.output().map_err(|source| KitError::Spawn {
            binary: PathBuf::from(command.get_program()),
            source,
        })?;
        Ok(Ran::from(output))
    }

    /// Whether it exited with success.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Its standard output, once a test has checked that it succeeded.
    ///
    /// # Panics
    /// If it failed, with what it said.
    pub fn succeeds(self) -> String {
        assert!(self.success(), "{} failed:\n{}", self.status, self.stderr);
        self.stdout
    }

    /// Its standard error, once a test has checked that it failed.
    ///
    /// # Panics
    /// If it succeeded, with what it printed.
    pub fn fails(self) -> String {
        assert!(!self.success(), "it succeeded:\n{}", self.stdout);
        self.stderr
    }
}

impl From<std::process::Output> for Ran {
    fn from(output: std::process::Output) -> Ran {
        Ran {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Reads `stream` line by line into `output` on a thread of its own.
fn read_lines(stream: impl Read + Send + 'static, output: Shared) {
    lock(&output.0).open_pipes += 1;
    std::thread::spawn(move || {
        let (lines, changed) = &*output;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut kept = lock(lines);
            if kept.lines.len() == KEPT_LINES {
                kept.lines.pop_front();
            }
            kept.lines.push_back(line);
            kept.total += 1;
            changed.notify_all();
        }
        lock(lines).open_pipes -= 1;
        changed.notify_all();
    });
}

/// The listener a `listening for {proto} on {addr}` line names, wherever
/// the line has it (after a timestamp and level, or `up`'s `[role]`).
pub fn parse_listener(line: &str) -> Option<Listener> {
    let rest = &line[line.find("listening for ")? + "listening for ".len()..];
    let (proto, rest) = rest.split_once(" on ")?;
    let addr = rest.split_whitespace().next()?.parse().ok()?;
    Some(Listener {
        proto: proto.to_owned(),
        addr,
        line: line.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_lines_are_read_wherever_they_are() {
        let line = "2026-01-01T00:00:00Z  INFO edge: listening for HTTP on 127.9.2.1:9080 (admin)";
        let listener = parse_listener(line).unwrap();
        assert_eq!(listener.proto, "HTTP");
        assert_eq!(listener.addr, "127.9.2.1:9080".parse().unwrap());
        assert!(listener.line.ends_with("(admin)"));
        let relayed = "[geodns] INFO listening for UDP on [::1]:53";
        assert_eq!(parse_listener(relayed).unwrap().proto, "UDP");
        assert_eq!(parse_listener("listening for HTTP on nowhere"), None);
    }

    #[test]
    fn a_process_that_exits_is_not_waited_for_and_its_output_is_quoted() {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "echo out; echo 'bye now' >&2"]);
        let mut process = Process::spawn(command, "sh").unwrap();
        let error = process
            .wait_for_line("a greeting", Duration::from_secs(30), |l| l == "hello")
            .unwrap_err();
        assert!(matches!(error, KitError::Exited { .. }), "{error}");
        assert!(error.to_string().contains("bye now"), "{error}");
        let mut lines = process.lines();
        lines.sort();
        assert_eq!(lines, ["bye now", "out"]);
        assert_eq!(process.new_lines().len(), 2);
        assert!(process.new_lines().is_empty());
    }

    #[test]
    fn a_listening_line_gives_the_address() {
        let mut command = Command::new("/bin/sh");
        command.args([
            "-c",
            "echo 'INFO listening for TCP on 127.0.0.1:5353'; sleep 30",
        ]);
        let mut process = Process::spawn(command, "sh").unwrap();
        let addr = process
            .wait_listening("TCP", Duration::from_secs(30), |_| true)
            .unwrap();
        assert_eq!(addr.port(), 5353);
        assert!(process.alive());
        process.kill();
        assert!(!process.alive());
    }
}
