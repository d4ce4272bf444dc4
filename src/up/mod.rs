//! `meridian up`: the whole topology on one machine, supervised.
//!
//! Starts every role as a child process of this same binary (an origin and
//! an edge per region, and GeoDNS), waits until each answers on its data
//! plane, prints one line per endpoint, and on Ctrl-C or SIGTERM stops them
//! all and exits only when they are gone. If a child fails at start, the
//! others are stopped and the error names the role, its address and the
//! child's own error message.

mod child;
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
use std::time::Duration;
use tokio::time::Instant;

/// How long the whole topology may take to answer (debug builds are slow).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// How often readiness and liveness are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One role to run: how to start it, where it listens, how to probe it.
struct Role {
    label: String,
    args: Vec<OsString>,
    /// Where users reach it, for the endpoint line and error messages.
    endpoint: String,
    probes: Vec<Probe>,
}

/// `meridian up`
pub fn run(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
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
    for region in &config.regions {
        let probe_addr = reachable(region.origin_listen);
        roles.push(Role {
            label: format!("origin {}", region.name),
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
    for region in &config.regions {
        let addrs = region.edge_http_addrs(&config.edge);
        roles.push(Role {
            label: format!("edge {}", region.name),
            args: with_config(vec![
                "edge".into(),
                "--region".into(),
                region.name.clone().into(),
            ]),
            endpoint: addrs
                .iter()
                .map(|a| format!("http://{a}"))
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
    let roles = roles(&config, config_path.as_deref());
    let mut shutdown = std::pin::pin!(shutdown_signal());

    let mut children: Vec<Child> = Vec::new();
    for role in &roles {
        match Child::spawn(&role.label, &exe, &role.args) {
            Ok(child) => children.push(child),
            Err(e) => {
                stop_all(&mut children).await;
                return Err(e);
            }
        }
    }

    tokio::select! {
        ready = wait_until_ready(&roles, &mut children) => {
            if let Err(e) = ready {
                stop_all(&mut children).await;
                return Err(e);
            }
        }
        _ = &mut shutdown => {
            stop_all(&mut children).await;
            return Ok(());
        }
    }

    print_endpoints(&config, &roles);

    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => {
                for (child, reported) in children.iter_mut().zip(reported.iter_mut()) {
                    if !*reported && let Some(status) = child.exited() {
                        *reported = true;
                        tracing::warn!(child = %child.label, %status, "exited; the rest keep running");
                    }
                }
            }
        }
    }
    eprintln!("stopping...");
    stop_all(&mut children).await;
    eprintln!("stopped");
    Ok(())
}

/// Waits until every role passes its probes; fails as soon as a child
/// exits, or when the start timeout passes.
async fn wait_until_ready(roles: &[Role], children: &mut [Child]) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pending: Vec<usize> = (0..roles.len()).collect();
    let mut last_failure = vec![String::new(); roles.len()];
    while !pending.is_empty() {
        let mut still_pending = Vec::new();
        for &i in &pending {
            let (role, child) = (&roles[i], &mut children[i]);
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
                if let Err(failure) = probe.check(&http).await {
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
                    roles[i].label,
                    roles[i].endpoint,
                    last_failure[i]
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    Ok(())
}

fn print_endpoints(config: &Config, roles: &[Role]) {
    println!("meridian is up ({}):", config.source);
    for role in roles {
        println!("  {:<24} {}", role.label, role.endpoint);
    }
    if let (Some(name), Some(region)) = (config.zone.steered_names.first(), config.regions.first())
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
    }
    println!("Ctrl-C stops everything.");
}

/// SIGTERM to every child, then SIGKILL to any still running after the
/// grace period; returns when all have exited.
async fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        if child.exited().is_none() {
            child.terminate();
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for child in children.iter_mut() {
        child.wait_or_kill(deadline).await;
    }
}
