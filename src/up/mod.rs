//! `meridian up`: the whole topology on one machine, supervised.
//!
//! Starts every role as a child process of this same binary (an origin and
//! an edge per region, and GeoDNS), waits until each answers on its data
//! plane, prints one line per endpoint, and on Ctrl-C or SIGTERM stops them
//! all and exits only when they are gone. If a child fails at start, the
//! others are stopped and the error names the role, its address and the
//! child's own error message.
//!
//! While it runs it serves a control API on loopback ([`control`]) through
//! which `meridian outage`, `restore` and `status` crash, restart and
//! inspect a region's processes.

mod child;
pub mod control;
mod probe;

use crate::cli::ConfigArg;
use crate::roles::{load_config, shutdown_signal};
use anyhow::{Context, anyhow};
use child::Child;
use config::Config;
use probe::Probe;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long the whole topology may take to answer (debug builds are slow).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// How often readiness and liveness are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Which kind of process a role is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A region's origin.
    Origin,
    /// A region's edge.
    Edge,
    /// The GeoDNS server.
    GeoDns,
}

/// One role to run: how to start it, where it listens, how to probe it.
struct Role {
    label: String,
    component: Component,
    /// Index of its region in the config; `None` for GeoDNS.
    region: Option<usize>,
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
    /// Killed on purpose by `meridian outage`.
    Killed,
    /// Exited on its own.
    Exited,
}

/// The running topology: its roles and their processes.
pub struct Supervisor {
    config: Config,
    exe: PathBuf,
    roles: Vec<Role>,
    children: Vec<Option<Child>>,
    states: Vec<ProcessState>,
    http: reqwest::Client,
}

/// `meridian up`
pub fn run(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    if let Some(region) = config.regions.iter().find(|r| r.origin_url.tls) {
        anyhow::bail!(
            "{}'s origin_url is {}, but `meridian up` runs the demo origins, \
             which serve plain HTTP only; with your own HTTPS origins, run \
             `meridian geodns` and one `meridian edge --region NAME` per region",
            region.name,
            region.origin_url
        );
    }
    let config_path = arg
        .config
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .context("cannot resolve the config path")?;
    // One thread: children are spawned from it, which keeps their
    // parent-death signal tied to a thread that lives as long as `up`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(supervise(config, config_path))
}

fn roles(config: &Config, config_path: Option<&Path>) -> Vec<Role> {
    let with_config = |mut args: Vec<OsString>| {
        if let Some(path) = config_path {
            args.push("--config".into());
            args.push(path.into());
        }
        args
    };
    let mut roles = Vec::new();
    for (index, region) in config.regions.iter().enumerate() {
        let probe_addr = reachable(region.origin_listen);
        roles.push(Role {
            label: format!("origin {}", region.name),
            component: Component::Origin,
            region: Some(index),
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
    for (index, region) in config.regions.iter().enumerate() {
        let addrs = region.edge_http_addrs(&config.edge);
        roles.push(Role {
            label: format!("edge {}", region.name),
            component: Component::Edge,
            region: Some(index),
            args: with_config(vec![
                "edge".into(),
                "--region".into(),
                region.name.clone().into(),
            ]),
            endpoint: addrs
                .iter()
                .map(|a| format!("http://{a}"))
                .chain(
                    region
                        .edge_https_addrs(&config.edge)
                        .iter()
                        .map(|a| format!("https://{a}")),
                )
                .collect::<Vec<_>>()
                .join(" "),
            probes: addrs
                .iter()
                .map(|addr| Probe::Http {
                    url: format!("http://{addr}{}", config.edge.health_path),
                })
                .collect(),
        });
    }
    roles.push(Role {
        label: "geodns".to_owned(),
        component: Component::GeoDns,
        region: None,
        args: with_config(vec!["geodns".into()]),
        endpoint: format!("dns://{} (UDP and TCP)", config.geodns.listen),
        probes: vec![Probe::Dns {
            server: reachable(config.geodns.listen),
            zone: config.zone.name.clone(),
        }],
    });
    roles
}

/// A wildcard listen address is probed on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => ([127, 0, 0, 1], v4.port()).into(),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, v6.port()).into()
        }
        other => other,
    }
}

async fn supervise(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the meridian binary")?;
    // Bound first: if another `up` holds the control port, say so before
    // starting anything.
    let control_addr = config.control.listen;
    let control_listener = tokio::net::TcpListener::bind(control_addr)
        .await
        .with_context(|| format!("cannot listen for the control API on {control_addr} (is another `meridian up` running?)"))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let roles = roles(&config, config_path.as_deref());
    let count = roles.len();
    let mut supervisor = Supervisor {
        config,
        exe,
        roles,
        children: (0..count).map(|_| None).collect(),
        states: vec![ProcessState::Running; count],
        http,
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
    let supervisor = Arc::new(Mutex::new(supervisor));
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control_server = axum::serve(control_listener, control::router(supervisor.clone()))
        .with_graceful_shutdown(async {
            let _ = control_stopped.await;
        });
    let control = tokio::spawn(async move {
        if let Err(error) = control_server.await {
            tracing::error!(%error, "control API failed");
        }
    });
    tracing::info!("listening for HTTP on {control_addr} (control API)");

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => supervisor.lock().await.reap(),
        }
    }
    eprintln!("stopping...");
    let _ = stop_control.send(());
    let _ = control.await;
    supervisor.lock().await.stop_all().await;
    eprintln!("stopped");
    Ok(())
}

impl Supervisor {
    /// Starts role `index`'s process.
    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let role = &self.roles[index];
        let child = Child::spawn(&role.label, &self.exe, &role.args)?;
        self.children[index] = Some(child);
        self.states[index] = ProcessState::Running;
        Ok(())
    }

    /// Notices children that exited on their own.
    fn reap(&mut self) {
        for (index, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Some(status) = child.exited()
            {
                tracing::warn!(child = %child.label, %status, "exited; the rest keep running");
                *slot = None;
                self.states[index] = ProcessState::Exited;
            }
        }
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
                let Some(child) = self.children[i].as_mut() else {
                    return Err(anyhow!("{} is not running", role.label));
                };
                if let Some(status) = child.exited() {
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
            println!("  {:<24} {}", role.label, role.endpoint);
        }
        println!("  {:<24} http://{}", "control API", config.control.listen);
        if let (Some(name), Some(region)) =
            (config.zone.steered_names.first(), config.regions.first())
        {
            let host = name.trim_end_matches('.');
            let dns = config.geodns.listen;
            let edge = region.edge_http_addrs(&config.edge)[0];
            println!("try:");
            println!(
                "  dig @{} -p {} {host} A +subnet=81.2.69.0/24 +short",
                dns.ip(),
                dns.port()
            );
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
        for child in self.children.iter_mut().flatten() {
            if child.exited().is_none() {
                child.terminate();
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for child in self.children.iter_mut().flatten() {
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

    /// Crashes role `index` (SIGKILL), as a regional failure would.
    async fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            child.kill();
            child.wait().await;
        }
        self.states[index] = ProcessState::Killed;
    }
}
