//! Meridian's roles started on a [`Topology`]: `meridian up`, one edge,
//! GeoDNS alone. Each writes its topology to a directory of its own, starts
//! the binary it is given, and is ready when the process says it listens
//! (and, for TCP, accepts). Dropping one kills it; if the test is
//! panicking, its output is replayed.

use super::error::KitError;
use super::process::Process;
use super::topology::Topology;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;

/// How long a role may take to be ready: a debug build on a loaded
/// machine starts slowly.
pub const READY: Duration = Duration::from_secs(90);

fn temp_dir() -> Result<TempDir, KitError> {
    tempfile::Builder::new()
        .prefix("meridian-kit-")
        .tempdir()
        .map_err(KitError::io("create a temporary directory"))
}

/// A running `meridian up`.
pub struct Up {
    /// The process.
    pub process: Process,
    /// The topology it runs.
    pub topology: Topology,
    binary: PathBuf,
    config: PathBuf,
    _dir: TempDir,
}

impl Up {
    /// Starts `binary up` on `topology` and waits until its control API
    /// listens (`up` serves it once every role answers).
    pub fn start(binary: &Path, topology: &Topology) -> Result<Up, KitError> {
        let dir = temp_dir()?;
        let config = topology.write(dir.path())?;
        let mut command = Command::new(binary);
        command
            .args(["up", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info");
        let mut process =
            Process::spawn(command, format!("meridian up on 127.{}", topology.block()))?;
        let control = topology.control();
        process.wait_listening("HTTP", READY, |l| {
            l.addr == control && l.line.contains("(control API)")
        })?;
        Ok(Up {
            process,
            topology: topology.clone(),
            binary: binary.to_path_buf(),
            config,
            _dir: dir,
        })
    }

    /// GeoDNS's address.
    pub fn dns(&self) -> SocketAddr {
        self.topology.dns()
    }

    /// Region `region`'s edge.
    pub fn edge(&self, region: u8) -> SocketAddr {
        self.topology.edge(region)
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Runs `meridian ARGS --config <its config>` to the end.
    pub fn command(&self, args: &[&str]) -> Result<Output, KitError> {
        Command::new(&self.binary)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .map_err(|source| KitError::Spawn {
                binary: self.binary.clone(),
                source,
            })
    }

    /// `meridian status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value, KitError> {
        let output = self.command(&["status", "--json"])?;
        serde_json::from_slice(&output.stdout).map_err(|e| {
            KitError::Config(format!(
                "`meridian status --json` printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        })
    }
}

/// A running `meridian edge`.
pub struct Edge {
    /// The process.
    pub process: Process,
    /// Its data-plane address (HTTP).
    pub addr: SocketAddr,
    config: Option<PathBuf>,
    _dir: TempDir,
}

impl Edge {
    /// Starts `binary edge --region <region's name>` on `topology`.
    pub fn start(binary: &Path, topology: &Topology, region: u8) -> Result<Edge, KitError> {
        let dir = temp_dir()?;
        let config = topology.write(dir.path())?;
        let name = topology.region_name(region);
        let mut command = Command::new(binary);
        command
            .args(["edge", "--region", &name, "--config"])
            .arg(&config);
        let process = Process::spawn(command, format!("edge {name} on 127.{}", topology.block()))?;
        Edge::ready(process, topology.edge(region), Some(config), dir)
    }

    /// `binary edge --listen LISTEN --origin ORIGIN FLAGS...`: one edge in
    /// front of one origin, any Host, no config.
    pub fn ad_hoc(
        binary: &Path,
        listen: SocketAddr,
        origin: &str,
        flags: &[&str],
    ) -> Result<Edge, KitError> {
        let mut command = Command::new(binary);
        command
            .args(["edge", "--listen", &listen.to_string(), "--origin", origin])
            .args(flags);
        Edge::ad_hoc_command(command, listen)
    }

    /// An ad-hoc edge started by `command` (with its environment, say),
    /// which must make it listen on `listen`.
    pub fn ad_hoc_command(command: Command, listen: SocketAddr) -> Result<Edge, KitError> {
        let process = Process::spawn(command, format!("ad-hoc edge on {listen}"))?;
        Edge::ready(process, listen, None, temp_dir()?)
    }

    /// [`Edge::ad_hoc`] on block `block`: 127.B.0.1:8080 in front of
    /// `http://127.B.0.2:8000`.
    pub fn ad_hoc_on(binary: &Path, block: u8, flags: &[&str]) -> Result<Edge, KitError> {
        let listen = SocketAddr::from(([127, block, 0, 1], 8080));
        Edge::ad_hoc(
            binary,
            listen,
            &format!("http://127.{block}.0.2:8000"),
            flags,
        )
    }

    fn ready(
        mut process: Process,
        addr: SocketAddr,
        config: Option<PathBuf>,
        dir: TempDir,
    ) -> Result<Edge, KitError> {
        process.wait_listening("HTTP", READY, |l| l.addr == addr)?;
        // Pingora logs its listeners before it binds them.
        process.wait_accepting(addr, READY)?;
        Ok(Edge {
            process,
            addr,
            config,
            _dir: dir,
        })
    }

    /// The config file it runs with (none for an ad-hoc edge).
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.process.signal(signal);
    }
}

/// A running `meridian geodns`.
pub struct GeoDns {
    /// The process.
    pub process: Process,
    dns: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    _dir: TempDir,
}

impl GeoDns {
    /// Starts `binary geodns` on `topology` and waits until it listens for
    /// UDP and TCP.
    pub fn start(binary: &Path, topology: &Topology) -> Result<GeoDns, KitError> {
        let dir = temp_dir()?;
        let config = topology.write(dir.path())?;
        let mut command = Command::new(binary);
        command
            .args(["geodns", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,hickory_server=warn");
        let dns = topology.dns();
        let mut process = Process::spawn(command, format!("geodns on {dns}"))?;
        process.wait_listening("UDP", READY, |l| l.addr == dns)?;
        process.wait_listening("TCP", READY, |l| l.addr == dns)?;
        Ok(GeoDns {
            process,
            dns,
            admin: topology.geodns_admin(),
            config,
            _dir: dir,
        })
    }

    /// Its DNS address (UDP and TCP).
    pub fn dns(&self) -> SocketAddr {
        self.dns
    }

    /// Its admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Writes `topology` as its config file, for a reload (not validated:
    /// a reload of a bad file is something to test).
    pub fn rewrite(&self, topology: &Topology) -> Result<(), KitError> {
        std::fs::write(&self.config, topology.toml())
            .map_err(KitError::io(format!("write {}", self.config.display())))
    }

    /// SIGHUP: reload.
    pub fn hang_up(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGHUP);
    }

    /// SIGTERM, as a service manager stops it.
    pub fn terminate(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// `GET /metrics` from its admin listener, with the Host it requires.
    pub fn metrics(&self) -> Result<String, KitError> {
        http_get(self.admin, "/metrics")
    }
}

/// The value of the metric line `name` (`meridian_dns_reloads_total`, or
/// with labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// A plain `GET path` to `addr` with `Host: addr` (what admin listeners
/// require), on a connection of its own; the whole answer, head included.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, KitError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(KitError::io(format!("connect to {addr}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(KitError::io("set a read timeout"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(KitError::io(format!("write to {addr}")))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(KitError::io(format!("read from {addr}")))?;
    Ok(answer)
}

/// `127.block.a.b`.
pub fn ip(block: u8, a: u8, b: u8) -> IpAddr {
    IpAddr::from([127, block, a, b])
}
