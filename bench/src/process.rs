//! Starting the servers a scenario measures, on the test kit's process
//! harness ([`kit::process`]): a peer (nginx, Varnish, gdnsd) is
//! ready when it answers its health check over HTTP, `meridian` when it
//! logs that it listens.

use crate::BenchError;
use kit::Process;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What a scenario that starts its servers itself runs with besides its
/// flags: its loopback block (127.B.x.y; `--block` changes it), how long
/// a server may take to start, and whether it is the smoke preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::Args)]
pub struct Launch {
    /// How long a server may take to answer after starting, in ms.
    #[arg(skip)]
    pub ready_timeout_ms: u64,
    /// The loopback block its servers run on.
    #[arg(skip)]
    pub block: u8,
    /// Whether these are the small CI settings.
    #[arg(skip)]
    pub smoke: bool,
}

impl Launch {
    /// The full run's, on `block`: 30 s to start.
    pub const fn full(block: u8) -> Launch {
        Launch {
            ready_timeout_ms: 30_000,
            block,
            smoke: false,
        }
    }

    /// The smoke preset's: 15 s to start.
    pub const fn smoke(self) -> Launch {
        Launch {
            ready_timeout_ms: 15_000,
            smoke: true,
            ..self
        }
    }

    /// How long a server may take to start.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }
}

/// `127.block.host.1` on `port`: where a scenario puts its servers, one
/// host number each, so that scenarios and tests on other blocks never
/// clash.
pub fn addr(block: u8, host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, block, host, 1], port))
}

/// Starts `program` with `args`, its output captured.
pub fn spawn(program: &Path, args: &[String]) -> Result<Process, BenchError> {
    let mut command = Command::new(program);
    command.args(args);
    Ok(Process::spawn(command, program.display().to_string())?)
}

/// The arguments of an ad-hoc edge in front of one origin
/// (`meridian edge --listen … --origin …`), with a cache budget if given.
pub fn edge_args(listen: SocketAddr, origin: SocketAddr, cache_bytes: Option<u64>) -> Vec<String> {
    let mut args = vec![
        "edge".to_owned(),
        "--listen".to_owned(),
        listen.to_string(),
        "--origin".to_owned(),
        format!("http://{origin}"),
    ];
    if let Some(bytes) = cache_bytes {
        args.extend(["--cache-max-bytes".to_owned(), bytes.to_string()]);
    }
    args
}

/// Waits until `GET http://{addr}{path}` answers 200, for at most
/// `timeout`; fails at once if the process exits.
pub async fn wait_healthy(
    process: &mut Process,
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
        if let Some(status) = process.exit_status() {
            return Err(process.exited(status, &format!("200 from {url}")).into());
        }
        let last = match client.get(&url).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(response) => format!("answered {}", response.status()),
            Err(error) => error_chain(&error),
        };
        if started.elapsed() >= timeout {
            let waiting_for = format!("200 from {url} (last: {last})");
            return Err(process.not_ready(&waiting_for, timeout).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// The largest `/sized/N` object an [`Objects`] origin serves.
pub const MAX_SIZED_BYTES: usize = 64 * 1024 * 1024;

/// The path of an object of `bytes` bytes.
pub fn sized_path(bytes: usize) -> String {
    format!("/sized/{bytes}")
}

/// A body of `len` bytes whose content depends on the position, so a body
/// assembled from the wrong pieces does not compare equal.
pub fn object_body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"meridian-bench-0123456789\n"[i % 26])
        .collect()
}

/// What the origin the edge scenarios measure against serves, on the
/// kit's scripted origin (which counts what reaches it): `/sized/N` is N
/// bytes, any other path `default_bytes`, each after `delay` and with
/// `cache_control`.
#[derive(Debug, Clone, Copy)]
pub struct Objects {
    /// The size of an object not under `/sized/`.
    pub default_bytes: usize,
    /// How long the origin waits before each answer.
    pub delay: Duration,
    /// Every answer's `Cache-Control`.
    pub cache_control: &'static str,
}

impl Objects {
    /// One-byte objects by default, answered at once and fresh for an
    /// hour: what scenarios that measure the edge's hits ask for.
    pub const CACHEABLE: Objects = Objects {
        default_bytes: 1,
        delay: Duration::ZERO,
        cache_control: "public, max-age=3600",
    };

    /// Serves them on block `block`'s origin address (127.B.0.1:8000).
    pub fn serve(self, block: u8) -> Result<kit::ScriptedOrigin, BenchError> {
        let addr = addr(block, 0, 8000);
        let origin = kit::ScriptedOrigin::start(&addr.to_string(), move |request| {
            let size = request
                .path
                .split('?')
                .next()
                .and_then(|path| path.strip_prefix("/sized/"))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n <= MAX_SIZED_BYTES)
                .unwrap_or(self.default_bytes);
            std::thread::sleep(self.delay);
            let headers = vec![("cache-control", self.cache_control.to_owned())];
            kit::Reply::Respond(200, headers, object_body(size))
        })?;
        Ok(origin)
    }
}

/// An ad-hoc edge in front of one origin, the way the single-edge
/// scenarios run it.
pub struct EdgeOnOrigin {
    /// The edge.
    pub edge: Process,
    /// Where it listens: block B's edge address, 127.B.1.1:8080.
    pub listen: SocketAddr,
}

impl EdgeOnOrigin {
    /// Starts `meridian edge` on block `block` in front of `origin`, with
    /// a cache budget if given, and waits (up to `ready_timeout`) until
    /// `GET ready_path` through it answers 200.
    pub async fn start(
        meridian: &Path,
        launch: &Launch,
        origin: &kit::ScriptedOrigin,
        cache_bytes: Option<u64>,
        ready_path: &str,
    ) -> Result<EdgeOnOrigin, BenchError> {
        let listen = addr(launch.block, 1, 8080);
        let args = edge_args(listen, origin.addr, cache_bytes);
        let mut edge = spawn(meridian, &args)?;
        wait_healthy(&mut edge, listen, ready_path, launch.ready_timeout()).await?;
        Ok(EdgeOnOrigin { edge, listen })
    }
}

/// 64 random bits in hex, from the standard library's randomly keyed
/// hasher (no RNG dependency for one name).
pub fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// The GETs of `path` (whatever their query) that reached `origin`.
pub fn fetches(origin: &kit::ScriptedOrigin, path: &str) -> u64 {
    let requests = origin.received();
    let of_path = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.split('?').next() == Some(path));
    of_path.count() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_random() {
        let (a, b) = (super::random_token(), super::random_token());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }
}
