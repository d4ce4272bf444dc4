//! Meridian's roles started on a [`Topology`]: `meridian up`, one edge,
//! GeoDNS alone. Each writes its topology to a directory of its own, starts
//! the binary it is given, and is ready when the process says it listens
//! (and, for TCP, accepts). Dropping one kills it; if the test is
//! panicking, its output is replayed.

use super::error::KitError;
use super::http;
use super::process::{Process, Ran};
use super::topology::Topology;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// The config file a role runs with, in a scratch directory of its own
/// that lives as long as the role.
struct ConfigFile {
    path: PathBuf,
    _dir: TempDir,
}

/// Writes `topology` to a scratch directory and starts `binary ARGS
/// --config FILE` as `name`, with `RUST_LOG=log` if given.
fn launch(
    binary: &Path,
    topology: &Topology,
    args: &[&str],
    log: Option<&str>,
    name: String,
) -> Result<(Process, ConfigFile), KitError> {
    let dir = temp_dir()?;
    let path = topology.write(dir.path())?;
    let mut command = Command::new(binary);
    command.args(args).arg("--config").arg(&path);
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    let process = Process::spawn(command, name)?;
    Ok((process, ConfigFile { path, _dir: dir }))
}

/// A running `meridian up`.
pub struct Up {
    /// The process.
    pub process: Process,
    /// The topology it runs.
    pub topology: Topology,
    binary: PathBuf,
    config: ConfigFile,
}

impl Up {
    /// Starts `binary up` on `topology` and waits until its control API
    /// listens (`up` serves it once every role answers).
    pub fn start(binary: &Path, topology: &Topology) -> Result<Up, KitError> {
        Up::start_with(binary, topology, &[])
    }

    /// [`Up::start`] with `flags` after `up` (`--hosts`, say).
    pub fn start_with(binary: &Path, topology: &Topology, flags: &[&str]) -> Result<Up, KitError> {
        let name = format!("meridian up on 127.{}", topology.block());
        let args: Vec<&str> = ["up"].iter().chain(flags).copied().collect();
        let (mut process, config) = launch(binary, topology, &args, Some("info"), name)?;
        let control = topology.control();
        process.wait_listening("HTTP", READY, |l| {
            l.addr == control && l.line.contains("(control API)")
        })?;
        Ok(Up {
            process,
            topology: topology.clone(),
            binary: binary.to_path_buf(),
            config,
        })
    }

    /// GeoDNS's address.
    pub fn dns(&self) -> SocketAddr {
        self.topology.dns()
    }

    /// Region `region`'s first edge.
    pub fn edge(&self, region: u8) -> SocketAddr {
        self.topology.edge(region)
    }

    /// Every edge of region `region`, in config order.
    pub fn edges(&self, region: u8) -> Vec<SocketAddr> {
        self.topology.edges(region)
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config.path
    }

    /// Runs `meridian ARGS --config <its config>` to the end.
    pub fn command(&self, args: &[&str]) -> Result<Ran, KitError> {
        let mut command = Command::new(&self.binary);
        Ran::run(command.args(args).arg("--config").arg(&self.config.path))
    }

    /// `meridian status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value, KitError> {
        let ran = self.command(&["status", "--json"])?;
        serde_json::from_str(&ran.stdout).map_err(|e| {
            KitError::Config(format!(
                "`meridian status --json` printed no JSON ({e}): {}",
                ran.stderr
            ))
        })
    }

    /// The entry of `process` (`edge eu-west`, say) in `meridian status
    /// --json`: its state, pid, restarts and last exit.
    pub fn process_status(&self, process: &str) -> Result<serde_json::Value, KitError> {
        let status = self.status_json()?;
        let processes = status["processes"].as_array();
        let found = processes.and_then(|all| all.iter().find(|p| p["process"] == process));
        found
            .cloned()
            .ok_or_else(|| KitError::Config(format!("no {process} in {status}")))
    }

    /// Sends `signal` to `process` (`edge eu-west 127.0.2.1`, `nats`) by
    /// the pid `meridian status` gives.
    pub fn signal(&self, process: &str, signal: nix::sys::signal::Signal) -> Result<(), KitError> {
        let status = self.process_status(process)?;
        let pid = status["pid"]
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok());
        let pid = pid.ok_or_else(|| KitError::Config(format!("{process} has no pid: {status}")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(|e| KitError::io(format!("send {signal} to {process}"))(e.into()))
    }
}

/// A running `meridian edge`.
pub struct Edge {
    /// The process.
    pub process: Process,
    /// Its data-plane address (HTTP).
    pub addr: SocketAddr,
    config: Option<ConfigFile>,
}

impl Edge {
    /// Starts region `region`'s first edge on `topology`.
    pub fn start(binary: &Path, topology: &Topology, region: u8) -> Result<Edge, KitError> {
        Edge::start_nth(binary, topology, region, 0)
    }

    /// Starts `binary edge --region <region's name> --address <its
    /// edge number nth's address>` (0-based, in config order) on `topology`.
    pub fn start_nth(
        binary: &Path,
        topology: &Topology,
        region: u8,
        nth: usize,
    ) -> Result<Edge, KitError> {
        let name = topology.region_name(region);
        let Some(addr) = topology.edges(region).get(nth).copied() else {
            return Err(KitError::Config(format!("region {name} has no edge {nth}")));
        };
        let address = addr.ip().to_string();
        let args = ["edge", "--region", &name, "--address", &address];
        let label = format!("edge {name} {address}");
        let (process, config) = launch(binary, topology, &args, None, label)?;
        Edge::ready(process, addr, Some(config))
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
        Edge::ready(process, listen, None)
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
        config: Option<ConfigFile>,
    ) -> Result<Edge, KitError> {
        process.wait_listening("HTTP", READY, |l| l.addr == addr)?;
        // Pingora logs its listeners before it binds them.
        process.wait_accepting(addr, READY)?;
        Ok(Edge {
            process,
            addr,
            config,
        })
    }

    /// The config file it runs with (none for an ad-hoc edge).
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_ref().map(|c| c.path.as_path())
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
    config: ConfigFile,
}

impl GeoDns {
    /// Starts `binary geodns` on `topology` (its first server, named with
    /// `--server` when it has several) and waits until it listens for UDP
    /// and TCP.
    pub fn start(binary: &Path, topology: &Topology) -> Result<GeoDns, KitError> {
        let flags = match topology.geodns_servers() {
            1 => Vec::new(),
            _ => vec!["--server".to_owned(), topology.geodns_name(0)],
        };
        GeoDns::start_with(binary, topology, 0, &flags)
    }

    /// Starts `binary geodns --server NAME` for GeoDNS server `server`
    /// (0-based) of `topology`.
    pub fn start_server(
        binary: &Path,
        topology: &Topology,
        server: usize,
    ) -> Result<GeoDns, KitError> {
        let flags = ["--server".to_owned(), topology.geodns_name(server)];
        GeoDns::start_with(binary, topology, server, &flags)
    }

    /// Starts `binary geodns FLAGS` on `topology`, which must make it run
    /// server `server` (0-based).
    fn start_with(
        binary: &Path,
        topology: &Topology,
        server: usize,
        flags: &[String],
    ) -> Result<GeoDns, KitError> {
        let dns = topology.dns_of(server);
        let mut args = vec!["geodns"];
        args.extend(flags.iter().map(String::as_str));
        let log = Some("info,hickory_server=warn");
        let (mut process, config) =
            launch(binary, topology, &args, log, format!("geodns on {dns}"))?;
        process.wait_listening("UDP", READY, |l| l.addr == dns)?;
        process.wait_listening("TCP", READY, |l| l.addr == dns)?;
        Ok(GeoDns {
            process,
            dns,
            admin: topology.geodns_admin_of(server),
            config,
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
        &self.config.path
    }

    /// Writes `topology` as its config file, for a reload (not validated:
    /// a reload of a bad file is something to test).
    pub fn rewrite(&self, topology: &Topology) -> Result<(), KitError> {
        let path = &self.config.path;
        std::fs::write(path, topology.toml())
            .map_err(KitError::io(format!("write {}", path.display())))
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
        let response = http::get(self.admin, "/metrics", &self.admin.to_string())?;
        Ok(response.text())
    }

    /// Its `/health` (every edge: in the answers or not, what its own
    /// probes see, and who else sees what), parsed.
    pub fn health(&self) -> Result<serde_json::Value, KitError> {
        let response = http::get(self.admin, "/health", &self.admin.to_string())?;
        serde_json::from_str(&response.text()).map_err(|e| {
            KitError::Config(format!(
                "GeoDNS's /health is not JSON ({e}): {}",
                response.whole()
            ))
        })
    }
}

/// The value of the metric line `name` (`meridian_dns_reloads_total`, or
/// with labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// `127.block.a.b`.
pub fn ip(block: u8, a: u8, b: u8) -> IpAddr {
    IpAddr::from([127, block, a, b])
}
