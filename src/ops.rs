//! `meridian outage`, `restore` and `status`: clients of the control API of
//! a running `meridian up` (see `up::control`).

use crate::cli::{OutageArgs, OutageScope, RestoreArgs, StatusArgs};
use crate::up::ProcessState;
use crate::up::control::{Acted, RegionStatus, Status};
use anyhow::{Context, anyhow};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Restores wait for the processes to answer; give them time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Sends one request to the control API and returns its body, turning
/// "nothing listens" and error answers into sentences.
pub(crate) async fn call(
    control: SocketAddr,
    method: reqwest::Method,
    path: &str,
) -> anyhow::Result<bytes::Bytes> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    // The header marks the request as a program's, which the control API
    // requires of every POST (see `config::admin_access`).
    let response = client
        .request(method, format!("http://{control}{path}"))
        .header(config::admin_access::control_header(), "1")
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                anyhow!("no `meridian up` is running (nothing answers on {control}); start one with `meridian up`")
            } else {
                anyhow!("the control API on {control} did not answer: {e}")
            }
        })?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(anyhow!("{}", String::from_utf8_lossy(&body).trim()));
    }
    Ok(body)
}

/// The config the roles run, when a `meridian up` answers on the control
/// API of `config` and was started from the same file (`file`; `None`: the
/// embedded demo): `up --cluster` adds the bus to it, `up --hosts` moves
/// every address. Otherwise `config` itself.
pub fn running_config(
    config: config::Config,
    file: Option<&Path>,
) -> anyhow::Result<config::Config> {
    let asked = runtime()?.block_on(call(config.control.listen, reqwest::Method::GET, "/config"));
    let Ok(body) = asked else {
        // No `up` answers: the config is all there is.
        return Ok(config);
    };
    let answer: crate::up::control::RunningConfig = serde_json::from_slice(&body)?;
    let file = file.map(std::path::absolute).transpose()?;
    match answer.running {
        Some(running) if answer.given == file => Ok(config::Config::load(&running)?),
        _ => Ok(config),
    }
}

/// `meridian outage REGION [--component ...]`
pub fn outage(args: &OutageArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let component = serde_json::to_value(args.component)?;
    let component = component.as_str().unwrap_or("all");
    let mut path = format!("/regions/{}/outage?component={component}", args.region);
    if args.partition {
        path.push_str("&partition=true");
        if let Some(server) = &args.from {
            path.push_str(&format!("&from={server}"));
        }
    }
    let body = runtime()?.block_on(call(config.control.listen, reqwest::Method::POST, &path))?;
    let acted: Acted = serde_json::from_slice(&body)?;
    if args.partition {
        println!("cut: {}", acted.processes.join(", "));
        println!(
            "`meridian restore {}` heals it; watch with `meridian status`",
            args.region
        );
        return Ok(());
    }
    println!("killed (SIGKILL): {}", acted.processes.join(", "));
    match args.component {
        OutageScope::Origin => {
            println!("the region's edge now fails over to the next-nearest origin")
        }
        _ => println!("GeoDNS steers clients away within seconds; watch it with `meridian status`"),
    }
    Ok(())
}

/// `meridian restore REGION`
pub fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let path = format!("/regions/{}/restore", args.region);
    let body = runtime()?.block_on(call(config.control.listen, reqwest::Method::POST, &path))?;
    let acted: Acted = serde_json::from_slice(&body)?;
    if acted.processes.is_empty() {
        println!("{} was already running", args.region);
    } else {
        println!("restored and answering: {}", acted.processes.join(", "));
    }
    Ok(())
}

/// `meridian status`
///
/// With a cluster bus (the config's `[cluster]`, or that of the running
/// `up --cluster`), it also shows every role alive on the bus and the
/// config revision it runs; either part may be missing (a cluster has no
/// `meridian up` on most hosts; the bus may be down) and status still
/// shows the other.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = runtime()?;
    let body = runtime.block_on(call(config.control.listen, reqwest::Method::GET, "/status"));
    let Some(cluster) = running_config(config.clone(), args.config.config.as_deref())?.cluster
    else {
        return print_status(&body?, args.json);
    };
    let roles = runtime.block_on(crate::cluster_status::roles(&cluster));
    if args.json {
        let mut out = match &body {
            Ok(body) => serde_json::from_slice(body)?,
            Err(error) => serde_json::json!({ "control_error": format!("{error:#}") }),
        };
        out["cluster"] = crate::cluster_status::json(&roles);
        println!("{out}");
        return Ok(());
    }
    match &body {
        Ok(body) => print_status(body, false)?,
        Err(error) => println!("{error:#}"),
    }
    println!();
    print!("{}", crate::cluster_status::render(&roles));
    Ok(())
}

/// Prints the control API's status: as it came, or as tables.
fn print_status(body: &[u8], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", String::from_utf8_lossy(body));
        return Ok(());
    }
    let status: Status = serde_json::from_slice(body)?;
    print!("{}", render(&status));
    Ok(())
}

fn state(state: ProcessState) -> &'static str {
    match state {
        ProcessState::Running => "running",
        ProcessState::Killed => "killed",
        ProcessState::Restarting => "restarting",
        ProcessState::Failed => "failed",
    }
}

/// "up", "down" or "unknown", for a view that may be missing.
fn seen(view: Option<bool>) -> &'static str {
    match view {
        Some(true) => "up",
        Some(false) => "down",
        None => "unknown",
    }
}

/// How the GeoDNS servers that answered see a region: `split` when they
/// disagree (the who-sees-what lines below say which sees what).
fn dns_seen(view: Option<bool>, any_answered: bool) -> &'static str {
    match (view, any_answered) {
        (None, true) => "split",
        (view, _) => seen(view),
    }
}

/// How a checker sees a target: up, suspect (a request failed on it
/// lately) or down.
fn health(up: bool, suspect: bool) -> &'static str {
    match (up, suspect) {
        (true, false) => "up",
        (true, true) => "suspect",
        (false, _) => "down",
    }
}

/// A region's edge processes counted by state: `2 running`, or
/// `1 running, 1 killed`.
fn edge_states(region: &RegionStatus) -> String {
    let order = [
        ProcessState::Running,
        ProcessState::Restarting,
        ProcessState::Killed,
        ProcessState::Failed,
    ];
    order
        .iter()
        .filter_map(|wanted| {
            let count = region.edges.iter().filter(|e| e.state == *wanted).count();
            (count > 0).then(|| format!("{count} {}", state(*wanted)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status tables: every process, every region, then every edge.
fn render(status: &Status) -> String {
    let mut out = format!(
        "{:<30} {:<11} {:<8} {}\n",
        "PROCESS", "STATE", "PID", "RESTARTS"
    );
    for process in &status.processes {
        let pid = process
            .pid
            .map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        out.push_str(&format!(
            "{:<30} {:<11} {:<8} {}\n",
            process.process,
            state(process.state),
            pid,
            process.restarts
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<16} {:<22} {:<10} {}\n",
        "REGION", "EDGES", "ORIGIN", "DNS SEES REGION"
    ));
    for region in &status.regions {
        out.push_str(&format!(
            "{:<16} {:<22} {:<10} {}\n",
            region.region,
            edge_states(region),
            state(region.origin),
            dns_seen(region.dns_view_up, status.dns_view_available),
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<16} {:<16} {:<10} {:<9} {:<9} {:<24} {}\n",
        "EDGE", "REGION", "STATE", "DNS SEES", "HIT RATIO", "SEES PEERS", "SEES ORIGINS"
    ));
    for region in &status.regions {
        for edge in &region.edges {
            let ratio = edge
                .cache_hit_ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0));
            let peers = edge.peers.as_ref().map_or_else(
                || "-".to_owned(),
                |peers| match peers.as_slice() {
                    [] => "none".to_owned(),
                    peers => peers
                        .iter()
                        .map(|p| format!("{} {}", p.addr.ip(), seen(Some(p.up))))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            );
            let origins = edge.origins.as_ref().map_or_else(
                || "-".to_owned(),
                |origins| {
                    origins
                        .iter()
                        .map(|o| format!("{} {}", o.region, health(o.up, o.suspect)))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            out.push_str(&format!(
                "{:<16} {:<16} {:<10} {:<9} {:<9} {:<24} {}\n",
                edge.address.to_string(),
                region.region,
                state(edge.state),
                seen(edge.dns_view_up),
                ratio,
                peers,
                origins
            ));
        }
    }
    for region in &status.regions {
        for edge in &region.edges {
            let Some(disk) = &edge.disk else { continue };
            let state = match &disk.failing {
                Some(reason) => format!("FAILING ({reason}); serving from memory and origins"),
                None => format!("{} objects, {} MiB", disk.objects, disk.bytes >> 20),
            };
            out.push_str(&format!("disk cache of {}: {state}\n", edge.address));
        }
    }
    if status.dns_view_available {
        out.push_str(
            "\nWHO SEES WHAT (each GeoDNS server: answered or steered away, its own probes, the other vantage points it counts)\n",
        );
        for region in &status.regions {
            out.push_str(&format!("  {}:\n", region.region));
            out.push_str(&crate::dns_views::who_sees_what(
                &status.geodns,
                &region.region,
                "    ",
            ));
        }
    } else {
        out.push_str("(no GeoDNS server's admin listener answered, so their view is unknown)\n");
    }
    for process in &status.processes {
        if process.state == ProcessState::Failed {
            out.push_str(&format!(
                "{} crashed in a loop and was given up on; last: {}\n",
                process.process,
                process.last_exit.as_deref().unwrap_or("unknown")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns_views::ServerView;
    use crate::up::control::{EdgeStatus, OriginView, ProcessStatus, RegionStatus};
    use config::report::SeenEdge;

    #[test]
    fn the_table_shows_processes_and_both_health_views() {
        let process = |name: &str, state, pid, restarts| ProcessStatus {
            process: name.into(),
            state,
            pid,
            restarts,
            last_exit: (state == ProcessState::Failed)
                .then(|| "exit status: 1; last error: error: cannot listen".into()),
        };
        let eu_edge = |up, probed_up, seen_by| {
            vec![geodns::health::RegionStatus {
                region: "eu-west".into(),
                up,
                edges: vec![geodns::health::EdgeStatus {
                    addr: "127.0.2.1:8080".parse().unwrap(),
                    up,
                    probed_up,
                    seen_by,
                }],
            }]
        };
        let status = Status {
            geodns: vec![
                ServerView::numbered(1, Some(eu_edge(false, false, Vec::new()))),
                ServerView::numbered(2, None),
            ],
            dns_view_available: true,
            processes: vec![
                process("origin us-east", ProcessState::Running, Some(41), 0),
                process("origin eu-west", ProcessState::Failed, None, 5),
                process("edge us-east 127.0.1.1", ProcessState::Running, Some(43), 2),
                process("edge us-east 127.0.1.3", ProcessState::Running, Some(44), 0),
                process("edge eu-west 127.0.2.1", ProcessState::Killed, None, 0),
                process("edge eu-west 127.0.2.3", ProcessState::Killed, None, 0),
                process("geodns ns1", ProcessState::Running, Some(45), 0),
                process("geodns ns2", ProcessState::Killed, None, 0),
            ],
            regions: vec![
                RegionStatus {
                    region: "us-east".into(),
                    edge: ProcessState::Running,
                    edges: vec![
                        EdgeStatus {
                            address: "127.0.1.1".parse().unwrap(),
                            state: ProcessState::Running,
                            dns_view_up: Some(true),
                            origins: Some(vec![
                                OriginView {
                                    region: "us-east".into(),
                                    up: true,
                                    suspect: false,
                                },
                                OriginView {
                                    region: "eu-west".into(),
                                    up: false,
                                    suspect: true,
                                },
                            ]),
                            peers: Some(vec![SeenEdge {
                                addr: "127.0.1.3:8080".parse().unwrap(),
                                up: true,
                            }]),
                            cache_hit_ratio: Some(0.5),
                            traffic: None,
                            disk: Some(crate::up::control::DiskView {
                                objects: 12,
                                bytes: 3 << 20,
                                failing: None,
                            }),
                        },
                        EdgeStatus {
                            address: "127.0.1.3".parse().unwrap(),
                            state: ProcessState::Running,
                            dns_view_up: Some(false),
                            origins: None,
                            peers: None,
                            cache_hit_ratio: None,
                            traffic: None,
                            disk: Some(crate::up::control::DiskView {
                                failing: Some("read-only file system".into()),
                                ..Default::default()
                            }),
                        },
                    ],
                    origin: ProcessState::Running,
                    dns_view_up: Some(true),
                    dns_views: Vec::new(),
                },
                RegionStatus {
                    region: "eu-west".into(),
                    edge: ProcessState::Killed,
                    edges: ["127.0.2.1", "127.0.2.3"]
                        .map(|address| EdgeStatus {
                            address: address.parse().unwrap(),
                            state: ProcessState::Killed,
                            dns_view_up: Some(false),
                            origins: None,
                            peers: None,
                            cache_hit_ratio: None,
                            traffic: None,
                            disk: None,
                        })
                        .into(),
                    origin: ProcessState::Killed,
                    dns_view_up: Some(false),
                    dns_views: Vec::new(),
                },
            ],
        };
        let table = render(&status);
        let words = |prefix: &str| -> Vec<String> {
            let line = table.lines().find(|l| l.starts_with(prefix)).unwrap();
            line.split_whitespace().map(str::to_owned).collect()
        };
        // Regions: their edges counted by state.
        assert_eq!(
            words("eu-west"),
            ["eu-west", "2", "killed", "killed", "down"]
        );
        assert_eq!(
            words("us-east"),
            ["us-east", "2", "running", "running", "up"]
        );
        // Disk tiers: what they hold, or that they fail.
        assert!(
            table.contains("disk cache of 127.0.1.1: 12 objects, 3 MiB"),
            "{table}"
        );
        assert!(
            table.contains("disk cache of 127.0.1.3: FAILING (read-only file system)"),
            "{table}"
        );
        // Every edge on a line of its own.
        let edge = table.lines().find(|l| l.starts_with("127.0.1.1")).unwrap();
        assert!(edge.contains("running") && edge.contains("50%"), "{table}");
        assert!(edge.contains("127.0.1.3 up"), "its peer: {table}");
        assert!(edge.contains("us-east up, eu-west down"), "{table}");
        assert_eq!(
            words("127.0.1.3"),
            ["127.0.1.3", "us-east", "running", "down", "-", "-", "-"]
        );
        assert_eq!(
            words("127.0.2.3"),
            ["127.0.2.3", "eu-west", "killed", "down", "-", "-", "-"]
        );
        assert_eq!(
            words("edge us-east 127.0.1.1"),
            ["edge", "us-east", "127.0.1.1", "running", "43", "2"]
        );
        assert_eq!(
            words("edge eu-west 127.0.2.1"),
            ["edge", "eu-west", "127.0.2.1", "killed", "-", "0"]
        );
        assert_eq!(
            words("origin eu-west"),
            ["origin", "eu-west", "failed", "-", "5"]
        );
        // Who sees what, server by server.
        let lines: Vec<&str> = table.lines().collect();
        let at = lines.iter().position(|l| l.trim() == "eu-west:").unwrap();
        let ns1: Vec<&str> = lines[at + 1].split_whitespace().collect();
        assert_eq!(
            ns1[..5],
            ["ns1", "127.0.2.1:8080", "steered", "away", "own"],
            "{table}"
        );
        assert!(
            lines[at + 2].contains("ns2") && lines[at + 2].contains("did not answer"),
            "{table}"
        );
        assert!(
            table.contains(
                "origin eu-west crashed in a loop and was given up on; last: exit status: 1"
            ),
            "{table}"
        );
    }
}
