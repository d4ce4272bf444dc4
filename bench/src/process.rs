//! Running the `meridian` binary under test as a child process.
//!
//! A scenario starts the real binary, waits until it answers its health
//! check (with a deadline, noticing if it died instead), measures, and lets
//! the [`MeridianProcess`] guard kill it on drop. The child's stdout and
//! stderr are kept (the last lines of them) so that a scenario that fails
//! can replay them: the first question about a failed benchmark is what the
//! server said.

use crate::BenchError;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many of the child's output lines are kept for a replay.
const KEPT_LINES: usize = 2000;

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);

/// A free TCP port on 127.0.0.1: bound at port 0, read, and released.
///
/// Another process could take it before the child binds it; on loopback,
/// during a benchmark, that race is rare enough, and the child then fails
/// to start with a clear "cannot listen" error.
pub fn free_local_addr() -> Result<SocketAddr, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Io {
        action: "find a free port on 127.0.0.1",
        source,
    })?;
    listener.local_addr().map_err(|source| BenchError::Io {
        action: "read a bound socket's address",
        source,
    })
}

/// The arguments of an ad-hoc edge in front of one origin
/// (`meridian edge --listen … --origin …`), with a cache budget if given.
pub fn edge_args(listen: SocketAddr, origin_url: String, cache_bytes: Option<u64>) -> Vec<String> {
    let mut args = vec![
        "edge".to_owned(),
        "--listen".to_owned(),
        listen.to_string(),
        "--origin".to_owned(),
        origin_url,
    ];
    if let Some(bytes) = cache_bytes {
        args.extend(["--cache-max-bytes".to_owned(), bytes.to_string()]);
    }
    args
}

/// The child's output lines, shared with the threads that read them.
type Lines = Arc<Mutex<VecDeque<String>>>;

/// A running `meridian` (or a peer server), killed (SIGKILL) with all its
/// descendants and reaped on drop: a peer like nginx leaves its worker
/// running when only its master is killed.
pub struct MeridianProcess {
    child: Child,
    binary: PathBuf,
    output: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl MeridianProcess {
    /// Starts `binary` with `args`, capturing its output.
    pub fn spawn(binary: &Path, args: &[String]) -> Result<Self, BenchError> {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                path: binary.to_path_buf(),
                source,
            })?;
        let output: Lines = Arc::default();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(keep_lines(stdout, output.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(keep_lines(stderr, output.clone()));
        }
        Ok(MeridianProcess {
            child,
            binary: binary.to_path_buf(),
            output,
            readers,
        })
    }

    /// Waits until `GET http://{addr}{path}` answers 200, for at most
    /// `timeout`. Fails at once if the process exits. On failure the
    /// process's output is replayed to stderr.
    pub async fn wait_healthy(
        &mut self,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(0)
            .build()?;
        let url = format!("http://{addr}{path}");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.replay_output();
                return Err(BenchError::Exited { status });
            }
            let last = match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(response) => format!("answered {}", response.status()),
                Err(error) => error_chain(&error),
            };
            if started.elapsed() >= timeout {
                self.replay_output();
                return Err(BenchError::NotReady {
                    addr,
                    path: path.to_owned(),
                    waited: timeout,
                    last,
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.exit_status().is_some()
    }

    /// How the process exited, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The binary it runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Asks it to stop (SIGTERM); it may take its time.
    pub fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Kills it and all its descendants (SIGKILL), reaps it, and waits for
    /// the rest of its output. Doing it again does nothing.
    pub fn kill(&mut self) {
        // The descendants first: once the parent is gone they are orphans
        // and harder to find.
        if self.exit_status().is_none() {
            for pid in crate::cpu::descendants(self.child.id()) {
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
        self.join_output();
    }

    /// Waits for the output readers; they finish once the process's pipes
    /// close (when it and its children have exited).
    pub fn join_output(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The output lines kept so far.
    pub fn output(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Prints the output kept so far to stderr, framed.
    pub fn replay_output(&self) {
        eprintln!("--- output of {} ---", self.binary.display());
        for line in self.output() {
            eprintln!("{line}");
        }
        eprintln!("--- end of output ---");
    }
}

impl Drop for MeridianProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.replay_output();
        }
    }
}

/// Reads `stream` line by line into `lines` (the last [`KEPT_LINES`]).
fn keep_lines(stream: impl Read + Send + 'static, lines: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    })
}

/// An error and its sources, joined with ": " (reqwest's own message
/// rarely says why).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_address_can_be_bound_again() {
        let addr = free_local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        TcpListener::bind(addr).unwrap();
    }

    #[tokio::test]
    async fn a_process_that_exits_is_not_waited_for() {
        let addr = free_local_addr().unwrap();
        let mut process =
            MeridianProcess::spawn(Path::new("/bin/sh"), &["-c".into(), "echo bye >&2".into()])
                .unwrap();
        let err = process
            .wait_healthy(addr, "/", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, BenchError::Exited { .. }), "{err}");
        drop(process);
    }

    #[test]
    fn output_is_kept_for_a_replay() {
        let mut process = MeridianProcess::spawn(
            Path::new("/bin/sh"),
            &["-c".into(), "echo out; echo err >&2".into()],
        )
        .unwrap();
        let _ = process.child.wait();
        for reader in process.readers.drain(..) {
            reader.join().unwrap();
        }
        let mut output = process.output();
        output.sort();
        assert_eq!(output, ["err", "out"]);
    }
}
