//! `meridian up`: the whole topology on one machine, supervised.
//!
//! Starts every role as a child process of this same binary (an origin per
//! region, an edge per edge address, and each GeoDNS server), waits until each answers on its data
//! plane, prints one line per endpoint, and on Ctrl-C or SIGTERM stops them
//! all and exits only when they are gone. If a child fails at start, the
//! others are stopped and the error names the role, its address and the
//! child's own error message.
//!
//! While it runs it serves a control API on loopback ([`control`]) through
//! which `meridian outage`, `restore` and `status` crash, restart and
//! inspect a region's processes, and at its root a live view of the
//! topology in a browser ([`live`]).
//!
//! A child that dies without being asked to (a crash, `kill -9`) is started
//! again, after a delay that grows while it keeps dying, and given up on in
//! a crash loop ([`restart`]); what `meridian outage` killed stays down
//! until `meridian restore`, and nothing is restarted once `up` is stopping.

mod bus;
mod child;
pub mod control;
mod hosts;
mod live;
mod probe;
mod relocate;
mod restart;

use crate::address::reachable;
use crate::cli::UpArgs;
use crate::roles::shutdown_signal;
use anyhow::{Context, anyhow};
use child::Child;
use config::Config;
use probe::Probe;
use restart::{AfterCrash, Crashes, POLICY};
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long the whole topology may take to answer (debug builds are slow).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// How long the control API's open connections get to finish when `up`
/// stops.
const CONTROL_STOP_GRACE: Duration = Duration::from_secs(2);

/// How often readiness and liveness are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long an exited child's last output may take to be read (its pipe
/// closes as it exits, so this is a bound, not a wait).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Which kind of process a role is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A region's origin.
    Origin,
    /// A region's edge.
    Edge,
    /// A GeoDNS server.
    GeoDns,
    /// The cluster bus (`up --cluster`).
    Bus,
}

/// One role to run: how to start it, where it listens, how to probe it.
struct Role {
    label: String,
    component: Component,
    /// Index of its region in the config; `None` for a GeoDNS server.
    region: Option<usize>,
    /// An edge's address (one of its region's `edge_addresses`).
    address: Option<IpAddr>,
    /// Its host under `up --hosts` (see [`hosts`]).
    host: String,
    /// What it runs: `None` is `meridian` itself.
    program: Option<&'static str>,
    args: Vec<OsString>,
    /// Where users reach it, for the endpoint line and error messages.
    endpoint: String,
    probes: Vec<Probe>,
}

/// What `up` knows about one role's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessState {
    /// Running.
    Running,
    /// Killed on purpose by `meridian outage`; stays down until `restore`.
    Killed,
    /// Died on its own; it is started again when its delay is over.
    Restarting,
    /// Died too often in a row (a crash loop); left down until `restore`.
    Failed,
}

/// One role's process and its history.
struct Process {
    /// The child, while one is started.
    child: Option<Child>,
    state: ProcessState,
    /// Times `up` started it again after it died on its own.
    restarts: u32,
    /// Its recent crashes, for the restart policy.
    crashes: Crashes,
    /// When a `Restarting` process is started again.
    restart_at: Option<Instant>,
    /// How it last ended without being asked to, and its last error line.
    last_exit: Option<String>,
}

/// The running topology: its roles and their processes.
pub struct Supervisor {
    config: Config,
    /// The file `up` was given (absolute; `None`: the embedded demo).
    given_config: Option<PathBuf>,
    /// The file the roles run (see [`Supervisor::running_config`]).
    config_path: Option<PathBuf>,
    exe: PathBuf,
    roles: Vec<Role>,
    /// One per role, in the same order.
    processes: Vec<Process>,
    http: reqwest::Client,
    /// The network and the moved config of `up --hosts`; removed when the
    /// supervisor is dropped, after its children are stopped.
    hosts: Option<hosts::OnHosts>,
    /// The bus of `up --cluster`, kept for its directory (the server's
    /// streams, the roles' state), which is removed when `up` stops.
    _bus: Option<bus::LocalBus>,
    /// The links cut by `outage --partition`, until `restore` heals them:
    /// (region, the GeoDNS server it is cut off from; `None`: everyone).
    cuts: Vec<(String, Option<String>)>,
}

/// `meridian up`
pub fn run(args: &UpArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    if let Some(region) = config.regions.iter().find(|r| r.origin_url.tls) {
        anyhow::bail!(
            "{}'s origin_url is {}, but `meridian up` runs the demo origins, \
             which serve plain HTTP only; with your own HTTPS origins, run \
             `meridian geodns` and one `meridian edge --region NAME` per region",
            region.name,
            region.origin_url
        );
    }
    let config_path = args
        .config
        .config
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .context("cannot resolve the config path")?;
    let mut bus = match args.cluster {
        true => Some(bus::LocalBus::prepare(&config, config_path.as_deref())?),
        false => None,
    };
    let given_config = config_path.clone();
    let (config, config_path) = match &bus {
        Some(bus) => (bus.config.clone(), Some(bus.config_path.clone())),
        None => (config, config_path),
    };
    let (config, config_path, hosts) = match args.hosts {
        false => (config, config_path, None),
        true => {
            let (hosts, moved) =
                hosts::OnHosts::prepare(config_path.as_deref(), args.hosts_subnet, bus.is_some())?;
            let path = hosts.config_path.clone();
            if let Some(bus) = &mut bus {
                bus.moved_with(&moved, &path)?;
            }
            (moved, Some(path), Some(hosts))
        }
    };
    // One thread: children are spawned from it, which keeps their
    // parent-death signal tied to a thread that lives as long as `up`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(supervise(config, (given_config, config_path), hosts, bus))
}

fn roles(config: &Config, config_path: Option<&Path>, bus: Option<&bus::LocalBus>) -> Vec<Role> {
    let with_config = |mut args: Vec<OsString>| {
        if let Some(path) = config_path {
            args.push("--config".into());
            args.push(path.into());
        }
        args
    };
    let mut roles = Vec::new();
    // The bus first: the roles connect to it as they start.
    if let Some(bus) = bus {
        roles.push(Role {
            label: "nats".to_owned(),
            component: Component::Bus,
            region: None,
            address: None,
            host: bus::HOST.to_owned(),
            program: Some(bus::PROGRAM),
            args: bus.args.clone(),
            endpoint: format!("nats://{} (cluster bus)", bus.listen),
            probes: vec![Probe::Tcp { addr: bus.listen }],
        });
    }
    for (index, region) in config.regions.iter().enumerate() {
        let probe_addr = reachable(region.origin_listen);
        roles.push(Role {
            label: format!("origin {}", region.name),
            component: Component::Origin,
            region: Some(index),
            address: None,
            host: hosts::origin_host(&region.name),
            program: None,
            args: with_config(vec![
                "origin".into(),
                "--region".into(),
                region.name.clone().into(),
            ]),
            endpoint: format!("http://{}", region.origin_listen),
            probes: vec![Probe::Http {
                url: format!("http://{probe_addr}/healthz"),
            }],
        });
    }
    // One edge process per edge address, as on real hosts.
    for (index, region) in config.regions.iter().enumerate() {
        for (nth, &address) in region.edge_addresses.iter().enumerate() {
            let http = SocketAddr::new(address, config.edge.http_port);
            let https = config
                .edge
                .https_port
                .map(|port| format!(" https://{}", SocketAddr::new(address, port)));
            roles.push(Role {
                label: format!("edge {} {address}", region.name),
                component: Component::Edge,
                region: Some(index),
                address: Some(address),
                host: hosts::edge_host(&region.name, nth),
                program: None,
                args: with_config(vec![
                    "edge".into(),
                    "--region".into(),
                    region.name.clone().into(),
                    "--address".into(),
                    address.to_string().into(),
                ]),
                endpoint: format!("http://{http}{}", https.unwrap_or_default()),
                probes: vec![Probe::Http {
                    url: format!("http://{http}{}", config.edge.health_path),
                }],
            });
        }
    }
    // One process per GeoDNS server: each probes the edges itself and
    // serves the zone alone if the other is gone.
    let several = config.geodns.servers.len() > 1;
    for server in &config.geodns.servers {
        let mut args: Vec<OsString> = vec!["geodns".into()];
        if several {
            args.extend(["--server".into(), server.name.clone().into()]);
        }
        roles.push(Role {
            label: match several {
                true => format!("geodns {}", server.name),
                false => "geodns".to_owned(),
            },
            component: Component::GeoDns,
            region: None,
            address: None,
            host: server.name.clone(),
            program: None,
            args: with_config(args),
            endpoint: format!("dns://{} (UDP and TCP)", server.listen),
            probes: vec![Probe::Dns {
                server: reachable(server.listen),
                zone: config.zone.name.to_string(),
            }],
        });
    }
    roles
}

async fn supervise(
    config: Config,
    (given_config, config_path): (Option<PathBuf>, Option<PathBuf>),
    hosts: Option<hosts::OnHosts>,
    bus: Option<bus::LocalBus>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the meridian binary")?;
    // Bound first: if another `up` holds the control port, say so before
    // starting anything.
    let control_addr = config.control.listen;
    let control_listener = tokio::net::TcpListener::bind(control_addr)
        .await
        .with_context(|| format!("cannot listen for the control API on {control_addr} (is another `meridian up` running?)"))?;
    let control_local = control_listener
        .local_addr()
        .context("cannot read the control API's address")?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let roles = roles(&config, config_path.as_deref(), bus.as_ref());
    let count = roles.len();
    let mut supervisor = Supervisor {
        config,
        given_config,
        config_path,
        exe,
        roles,
        processes: (0..count)
            .map(|_| Process {
                child: None,
                state: ProcessState::Running,
                restarts: 0,
                crashes: Crashes::default(),
                restart_at: None,
                last_exit: None,
            })
            .collect(),
        http,
        hosts,
        _bus: bus,
        cuts: Vec::new(),
    };
    let mut shutdown = std::pin::pin!(shutdown_signal());

    for index in 0..count {
        if let Err(e) = supervisor.spawn(index) {
            supervisor.stop_all().await;
            return Err(e);
        }
    }
    let all: Vec<usize> = (0..count).collect();
    tokio::select! {
        ready = supervisor.wait_until_ready(&all) => {
            if let Err(e) = ready {
                supervisor.stop_all().await;
                return Err(e);
            }
        }
        _ = &mut shutdown => {
            supervisor.stop_all().await;
            return Ok(());
        }
    }

    supervisor.print_endpoints();
    let config = supervisor.config.clone();
    let supervisor = Arc::new(Mutex::new(supervisor));
    let (stop_live, live_stopped) = tokio::sync::oneshot::channel::<()>();
    let live = live::start(supervisor.clone(), &config, live_stopped);
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control_server = axum::serve(
        axum::serve::ListenerExt::tap_io(control_listener, geodns::live::bound_send_buffer),
        listener_routes(supervisor.clone(), live, control_local),
    )
    .with_graceful_shutdown(async {
        let _ = control_stopped.await;
    });
    let control = tokio::spawn(async move {
        if let Err(error) = control_server.await {
            tracing::error!(%error, "control API failed");
        }
    });
    tracing::info!("listening for HTTP on {control_addr} (control API)");

    // Once the loop ends nothing is reaped or restarted any more: what
    // exits during the shutdown below stays down.
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => supervisor.lock().await.reap(Instant::now()).await,
        }
    }
    eprintln!("stopping...");
    // The live view's streams end with its collector; then the control
    // listener's graceful shutdown has no open page to wait for.
    let _ = stop_live.send(());
    let _ = stop_control.send(());
    // A connection whose client stopped reading (a stalled browser tab)
    // would hold the graceful shutdown for ever: it gets a bound, then
    // the listener is dropped with its connections.
    let mut control = control;
    if tokio::time::timeout(CONTROL_STOP_GRACE, &mut control)
        .await
        .is_err()
    {
        tracing::warn!(
            "control API connections still open after {CONTROL_STOP_GRACE:?}; closing them"
        );
        control.abort();
    }
    supervisor.lock().await.stop_all().await;
    eprintln!("stopped");
    Ok(())
}

/// Everything the control listener on `listen` serves (the control API
/// and the live view), behind `config::admin_access`.
fn listener_routes(
    supervisor: control::Shared,
    live: geodns::live::Feed,
    listen: SocketAddr,
) -> axum::Router {
    let routes = control::routes(supervisor).merge(geodns::live::routes(live));
    config::admin_access::guard(routes, config::admin_access::AdminAccess::new(listen))
}

impl Supervisor {
    /// The config file the roles run (`None`: the embedded demo): the
    /// one `up` was given, or the one it made for `--cluster` or `--hosts`.
    fn running_config(&self) -> (Option<&Path>, Option<&Path>) {
        (self.given_config.as_deref(), self.config_path.as_deref())
    }

    /// Starts role `index`'s process.
    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let role = &self.roles[index];
        let program = role.program.map_or_else(|| self.exe.clone(), PathBuf::from);
        let child = match &self.hosts {
            Some(hosts) => {
                let (exe, args) = hosts.network.command_in(&role.host, &program, &role.args);
                Child::spawn(&role.label, &exe, &args)?
            }
            None => Child::spawn(&role.label, &program, &role.args)?,
        };
        let process = &mut self.processes[index];
        process.child = Some(child);
        process.state = ProcessState::Running;
        process.restart_at = None;
        Ok(())
    }

    /// Notices children that died on their own and restarts them by the
    /// policy of [`restart`]; starts those whose delay is over at `now`.
    async fn reap(&mut self, now: Instant) {
        for index in 0..self.processes.len() {
            let process = &mut self.processes[index];
            if let Some(child) = process.child.as_mut()
                && let Some(status) = child.exited()
            {
                child.drain(DRAIN_TIMEOUT).await;
                let reason = match child.last_error() {
                    Some(line) => format!("{status}; last error: {line}"),
                    None => status.to_string(),
                };
                process.child = None;
                self.crashed(index, now, reason);
            }
            let process = &self.processes[index];
            if process.state == ProcessState::Restarting
                && process.restart_at.is_some_and(|at| at <= now)
            {
                match self.spawn(index) {
                    Ok(()) => {
                        let process = &mut self.processes[index];
                        process.restarts = process.restarts.saturating_add(1);
                        tracing::info!(
                            child = %self.roles[index].label,
                            restarts = process.restarts,
                            "restarted"
                        );
                    }
                    Err(error) => self.crashed(index, now, format!("{error:#}")),
                }
            }
        }
    }

    /// Role `index` died on its own (or could not be started again) at
    /// `now`, for `reason`: schedules its restart, or gives up on it.
    fn crashed(&mut self, index: usize, now: Instant, reason: String) {
        let label = &self.roles[index].label;
        let process = &mut self.processes[index];
        match process.crashes.record(now, &POLICY) {
            AfterCrash::RestartIn { delay, crash } => {
                tracing::warn!(
                    child = %label,
                    "died unexpectedly ({reason}); restarting it in {delay:?} \
                     (crash {crash} within {:?}; at {} it is a crash loop and stays down)",
                    POLICY.window,
                    POLICY.crash_limit
                );
                process.state = ProcessState::Restarting;
                process.restart_at = Some(now + delay);
            }
            AfterCrash::GiveUp { crashes } => {
                let again = match self.roles[index].region {
                    Some(region) => format!(
                        "`meridian restore {}` starts it again",
                        self.config.regions[region].name
                    ),
                    None => "restart `meridian up` to start it again".to_owned(),
                };
                tracing::error!(
                    child = %label,
                    "crash loop: died {crashes} times within {:?}, last ({reason}); \
                     giving up on it, {again}",
                    POLICY.window
                );
                process.state = ProcessState::Failed;
                process.restart_at = None;
            }
        }
        process.last_exit = Some(reason);
    }

    /// Waits until every role in `indices` passes its probes; fails as soon
    /// as one of their processes exits, or when the start timeout passes.
    async fn wait_until_ready(&mut self, indices: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending = indices.to_vec();
        let mut last_failure = vec![String::new(); self.roles.len()];
        while !pending.is_empty() {
            let mut still_pending = Vec::new();
            for &i in &pending {
                let role = &self.roles[i];
                let Some(child) = self.processes[i].child.as_mut() else {
                    return Err(anyhow!("{} is not running", role.label));
                };
                if let Some(status) = child.exited() {
                    child.drain(DRAIN_TIMEOUT).await;
                    let reason = child
                        .last_error_line()
                        .unwrap_or_else(|| format!("exited with {status}"));
                    return Err(anyhow!(
                        "{} failed to start on {}: {reason}",
                        role.label,
                        role.endpoint
                    ));
                }
                let mut ready = true;
                for probe in &role.probes {
                    if let Err(failure) = probe.check(&self.http).await {
                        last_failure[i] = failure;
                        ready = false;
                        break;
                    }
                }
                if !ready {
                    still_pending.push(i);
                }
            }
            pending = still_pending;
            if let Some(&i) = pending.first() {
                if Instant::now() > deadline {
                    return Err(anyhow!(
                        "{} did not answer on {} within {START_TIMEOUT:?}: {}",
                        self.roles[i].label,
                        self.roles[i].endpoint,
                        last_failure[i]
                    ));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        Ok(())
    }

    fn print_endpoints(&self) {
        let config = &self.config;
        println!("meridian is up ({}):", config.source);
        for role in &self.roles {
            println!("  {:<30} {}", role.label, role.endpoint);
        }
        println!("  {:<30} http://{}", "control API", config.control.listen);
        println!(
            "  {:<30} http://{}/ (open it in a browser)",
            "live view", config.control.listen
        );
        if let (Some(name), Some(region)) =
            (config.zone.steered_names.first(), config.regions.first())
        {
            let host = name.trim_end_matches('.');
            let edge = region.edge_http_addrs(&config.edge)[0];
            println!("try:");
            for server in &config.geodns.servers {
                let dns = reachable(server.listen);
                println!(
                    "  dig @{} -p {} {host} A +subnet=81.2.69.0/24 +short",
                    dns.ip(),
                    dns.port()
                );
            }
            println!(
                "  curl -i --resolve {host}:{}:{} http://{host}:{}/assets/1k.bin -o /dev/null",
                edge.port(),
                edge.ip(),
                edge.port()
            );
            println!(
                "  meridian outage {}   # then dig again, and `meridian status`",
                region.name
            );
        }
        println!("Ctrl-C stops everything.");
    }

    /// SIGTERM to every child, then SIGKILL to any still running after the
    /// grace period; returns when all have exited.
    async fn stop_all(&mut self) {
        for child in self.processes.iter_mut().filter_map(|p| p.child.as_mut()) {
            if child.exited().is_none() {
                child.terminate();
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in self.processes.iter_mut().filter_map(|p| p.child.as_mut()) {
            child.wait_or_kill(deadline).await;
        }
    }

    /// The roles of region `name` of the given components, or an error
    /// listing the known regions.
    fn region_roles(&self, name: &str, components: &[Component]) -> Result<Vec<usize>, String> {
        let Some(region) = self.config.regions.iter().position(|r| r.name == name) else {
            return Err(format!(
                "no region named {name:?}; known regions: {}",
                self.config.region_names().join(", ")
            ));
        };
        Ok(self
            .roles
            .iter()
            .enumerate()
            .filter(|(_, role)| role.region == Some(region) && components.contains(&role.component))
            .map(|(index, _)| index)
            .collect())
    }

    /// Crashes role `index` (SIGKILL), as a regional failure would. It is
    /// not a crash to the restart policy: it stays down (a pending restart
    /// is cancelled) until `restore`.
    async fn kill(&mut self, index: usize) {
        let process = &mut self.processes[index];
        if let Some(mut child) = process.child.take() {
            child.kill();
            child.wait().await;
        }
        process.state = ProcessState::Killed;
        process.restart_at = None;
    }

    /// Cuts region `name` off from everyone, or (`from`) from that GeoDNS
    /// server only; with `cut` false, heals that. Says what it did.
    fn partition(
        &mut self,
        name: &str,
        from: Option<&str>,
        cut: bool,
    ) -> Result<String, control::Failure> {
        use axum::http::StatusCode;
        let Some(hosts) = &self.hosts else {
            return Err(control::Failure(
                StatusCode::CONFLICT,
                "partitions cut network links, which `meridian up --hosts` makes; this `up` runs on loopback: use `meridian outage REGION` (a crash) instead".to_owned(),
            ));
        };
        let region = self
            .config
            .regions
            .iter()
            .position(|r| r.name == name)
            .ok_or_else(|| {
                control::Failure(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no region named {name:?}; known regions: {}",
                        self.config.region_names().join(", ")
                    ),
                )
            })?;
        let failed = |e: anyhow::Error| {
            control::Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
        };
        let what = match from {
            None => {
                hosts.network.set_partitioned(region, cut).map_err(failed)?;
                format!("the network link of {name}")
            }
            Some(server) => {
                if !self.config.geodns.servers.iter().any(|s| s.name == server) {
                    return Err(control::Failure(
                        StatusCode::NOT_FOUND,
                        format!("no GeoDNS server named {server:?}"),
                    ));
                }
                hosts.network.set_cut(server, region, cut).map_err(failed)?;
                format!("the link between {server} and {name}")
            }
        };
        let key = (name.to_owned(), from.map(str::to_owned));
        self.cuts.retain(|c| *c != key);
        if cut {
            self.cuts.push(key);
        }
        Ok(what)
    }

    /// Heals the links of region `name` that `partition` cut; says which.
    fn heal(&mut self, name: &str) -> Result<Vec<String>, control::Failure> {
        let cut: Vec<Option<String>> = self
            .cuts
            .iter()
            .filter(|(region, _)| region == name)
            .map(|(_, from)| from.clone())
            .collect();
        cut.into_iter()
            .map(|from| self.partition(name, from.as_deref(), false))
            .collect()
    }

    /// Starts role `index` again for `restore`, whatever stopped it, with
    /// its crash history forgotten.
    fn revive(&mut self, index: usize) -> anyhow::Result<()> {
        self.processes[index].crashes.clear();
        self.spawn(index)
    }
}
