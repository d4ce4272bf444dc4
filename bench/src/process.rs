//! Starting the servers a scenario measures, on the test kit's process
//! harness ([`kit::process`]): a peer (nginx, Varnish, gdnsd) is
//! ready when it answers its health check over HTTP, `meridian` when it
//! logs that it listens.

use crate::BenchError;
use kit::{KitError, Process};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Starts `meridian` (or whatever `program` wraps it, a `taskset`) as an
/// ad-hoc edge listening on `listen`, and waits until it accepts
/// connections.
pub fn start_edge(
    program: &Path,
    args: &[String],
    listen: SocketAddr,
) -> Result<Process, BenchError> {
    let mut process = spawn(program, args)?;
    tokio::task::block_in_place(|| {
        process.wait_listening("HTTP", READY, |l| l.addr == listen)?;
        process.wait_accepting(listen, READY)
    })?;
    Ok(process)
}

/// How long a server may take to be ready.
pub const READY: Duration = Duration::from_secs(60);

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
            return Err(KitError::Exited {
                name: process.binary().display().to_string(),
                status,
                waiting_for: format!("200 from {url}"),
                log: process.log_excerpt(),
            }
            .into());
        }
        let last = match client.get(&url).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(response) => format!("answered {}", response.status()),
            Err(error) => error_chain(&error),
        };
        if started.elapsed() >= timeout {
            return Err(KitError::NotReady {
                name: process.binary().display().to_string(),
                waiting_for: format!("200 from {url} (last: {last})"),
                waited: timeout,
                log: process.log_excerpt(),
            }
            .into());
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

/// The largest `/sized/N` object an [`object_origin`] serves.
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

/// The origin the edge scenarios measure against, on the kit's scripted
/// origin (which counts what reaches it): `/sized/N` is N bytes, any other
/// path `default_bytes`, each after `delay` and with `cache_control`.
pub fn object_origin(
    addr: SocketAddr,
    default_bytes: usize,
    delay: Duration,
    cache_control: &'static str,
) -> Result<kit::ScriptedOrigin, BenchError> {
    let origin = kit::ScriptedOrigin::start(&addr.to_string(), move |request| {
        let size = request
            .path
            .split('?')
            .next()
            .and_then(|path| path.strip_prefix("/sized/"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= MAX_SIZED_BYTES)
            .unwrap_or(default_bytes);
        std::thread::sleep(delay);
        let headers = vec![("cache-control", cache_control.to_owned())];
        kit::Reply::Respond(200, headers, object_body(size))
    })?;
    Ok(origin)
}

/// The GETs of `path` (whatever their query) that reached `origin`.
pub fn fetches(origin: &kit::ScriptedOrigin, path: &str) -> u64 {
    let requests = origin.received();
    let of_path = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.split('?').next() == Some(path));
    of_path.count() as u64
}
