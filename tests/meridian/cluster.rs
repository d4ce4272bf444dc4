//! The cluster bus (NATS with JetStream) carrying purges: a purge reaches an
//! edge that was paused when it was sent, before that edge serves from its
//! cache again; a purge with the bus down fails and loses nothing; an edge
//! without the bus serves, saying its cache is unverified.
//!
//! Every test runs a real `nats-server` (Debian package `nats-server`,
//! which `.ci/run` installs); without one they say so and pass nothing.

use crate::harness::raw;
use crate::harness::{Cdn, Ran, Setup, Topology, Up, bin, blocking, metric, ok};
use kit::nats::NatsServer;
use nix::sys::signal::{Signal, kill};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tempfile::tempdir;

pub(crate) const ASSET: &str = "/assets/1k.bin";
const URL: &str = "http://cdn.meridian.test:8080/assets/1k.bin";

/// Whether the tests can run; if not, why, printed.
fn nats_missing() -> bool {
    let missing = !NatsServer::installed();
    if missing {
        eprintln!("skipped: nats-server is not installed (Debian: apt-get install nats-server)");
    }
    missing
}

/// Two directories, for the roles' state and the server's streams; `None`
/// (the test is skipped) without nats-server.
fn bus_dirs() -> Option<(tempfile::TempDir, tempfile::TempDir)> {
    (!nats_missing()).then(|| (tempdir().unwrap(), tempdir().unwrap()))
}

/// Fails if `stdout` of `meridian purge` says `edge` applied the purge.
pub(crate) fn not_applied_by(stdout: &str, edge: SocketAddr) {
    let line = stdout.lines().find(|l| l.contains(&edge.to_string()));
    assert!(!line.is_some_and(|l| l.contains("applied in")), "{stdout}");
}

fn bus_addr(block: u8) -> SocketAddr {
    SocketAddr::from(([127, block, 0, 4], 4222))
}

/// The demo on `block` with `[cluster]` on the bus at 127.B.0.4:4222.
fn clustered(block: u8, state: &std::path::Path) -> Topology {
    Topology::demo(block).cluster(bus_addr(block), state, Duration::from_secs(2))
}

/// The pid of the process `up` runs as `label`.
fn pid_of(up: &Up, label: &str) -> nix::unistd::Pid {
    let status = up.process_status(label).unwrap();
    let pid = status["pid"].as_i64().unwrap_or_else(|| panic!("{status}"));
    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap())
}

/// Fetches `ASSET` through `edge` until it is a hit.
async fn make_hit(edge: SocketAddr) {
    let cdn = Cdn::via(edge);
    cdn.get(ASSET).await;
    let answer = cdn.get(ASSET).await;
    assert!(answer.is_hit(), "{edge}: {}", answer.cache_status());
}

/// Fetches `ASSET` through `cdn` until the answer is no hit (the edge has
/// applied the purge), for up to 20 s; fails the test if any hit on the
/// way is presented as verified. Whether it got there.
pub(crate) async fn until_purged(cdn: &Cdn) -> bool {
    for _ in 0..200 {
        let answer = cdn.get(ASSET).await;
        let status = answer.cache_status().to_owned();
        assert!(
            !answer.is_hit() || status.contains("detail=unverified"),
            "the purged object served as verified: {status}"
        );
        if answer.status == 200 && !answer.is_hit() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_edge_never_serves_what_was_purged_while_it_was_stopped() {
    if nats_missing() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // Edges trust their cache for a quarter of the purge timeout: 1.5 s.
    let topology = Topology::demo(160).cluster(bus_addr(160), state.path(), Duration::from_secs(6));
    // `up --cluster` runs the bus itself, where `[cluster]` says.
    let up = blocking(|| Up::start_with(bin(), &topology, &["--cluster"]).unwrap());
    let paused = up.edge(2);
    let others: Vec<SocketAddr> = (1..=3)
        .flat_map(|region| up.edges(region))
        .filter(|edge| *edge != paused)
        .collect();
    make_hit(paused).await;
    make_hit(others[0]).await;
    let pid = pid_of(&up, &format!("edge eu-west {}", paused.ip()));
    kill(pid, Signal::SIGSTOP).unwrap();
    // Purged once the edge's last pull has expired (pulls last a lease),
    // so the server keeps the purge until the edge asks again.
    std::thread::sleep(Duration::from_millis(2500));
    let stdout = blocking(|| up.command(&["purge", URL]).unwrap().succeeds());
    // The next request is sent while the edge is still stopped (the kernel
    // takes the connection and the bytes), so it is there the moment the
    // edge runs again; and the bus is held still for a moment after that,
    // so the edge cannot have read the purge before the request is served
    // unless it waits for it.
    let bus = pid_of(&up, "nats");
    kill(bus, Signal::SIGSTOP).unwrap();
    let mut waiting = std::net::TcpStream::connect(paused).unwrap();
    let request = raw::request("GET", ASSET, "cdn.meridian.test:8080", &[], "");
    waiting.write_all(request.as_bytes()).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    kill(bus, Signal::SIGCONT).unwrap();
    let mut bytes = Vec::new();
    waiting.read_to_end(&mut bytes).unwrap();
    let first = raw::Response::parse(&bytes, true);
    assert_eq!(first.status(), 200, "{}", first.whole());
    let status = first.field("cache-status").unwrap_or_default();
    assert!(
        !status.contains("; hit"),
        "served the purged object: {status}"
    );
    // The live edges said they applied it; the paused one did not.
    for edge in &others {
        let line = stdout
            .lines()
            .find(|l| l.contains(&edge.to_string()))
            .unwrap_or_else(|| panic!("{edge} missing: {stdout}"));
        assert!(line.contains("applied in"), "{stdout}");
    }
    // Stopped longer than three report intervals, it no longer counts as
    // live (if it still did, it would be listed as not having applied it).
    not_applied_by(&stdout, paused);
    let answer = Cdn::via(others[0]).get(ASSET).await;
    assert!(!answer.is_hit(), "{}", answer.cache_status());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_with_the_bus_down_fails_and_a_stored_one_survives_the_bus_restarting() {
    let Some((state, store)) = bus_dirs() else {
        return;
    };
    let mut bus = blocking(|| NatsServer::start(bus_addr(161), store.path()).unwrap());
    let topology = clustered(161, state.path());
    let up = blocking(|| Up::start(bin(), &topology).unwrap());
    let paused = up.edge(2);
    make_hit(paused).await;
    let pid = pid_of(&up, &format!("edge eu-west {}", paused.ip()));
    kill(pid, Signal::SIGSTOP).unwrap();
    let stdout = blocking(|| up.command(&["purge", URL]).unwrap().succeeds());
    not_applied_by(&stdout, paused);

    blocking(|| bus.stop());
    let stderr = blocking(|| up.command(&["purge", "--all"]).unwrap().fails());
    assert!(stderr.contains("cannot reach the cluster bus"), "{stderr}");
    assert!(stderr.contains("nothing was purged"), "{stderr}");

    // The stored purge is still there when the bus is back: the edge
    // applies it as it resumes, and no hit it serves is a verified one.
    blocking(|| bus.restart().unwrap());
    kill(pid, Signal::SIGCONT).unwrap();
    let caught_up = until_purged(&Cdn::via(paused)).await;
    assert!(caught_up, "the edge never applied the stored purge");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_without_the_bus_serves_unverified_until_the_bus_is_back() {
    let Some((state, store)) = bus_dirs() else {
        return;
    };
    let topology = clustered(162, state.path());
    let setup = Setup::eu_west(&topology, |_| {
        ok(&[("cache-control", "max-age=600")], "an asset")
    });
    let admin = topology.edge_admin(2);
    let cdn = setup.cdn.clone();
    cdn.get(ASSET).await;
    let answer = cdn.get(ASSET).await;
    assert!(answer.is_hit(), "{}", answer.cache_status());
    assert!(
        answer.cache_status().ends_with("; detail=unverified"),
        "{}",
        answer.cache_status()
    );
    let metrics = crate::harness::get_text(&format!("http://{admin}/metrics")).await;
    assert_eq!(metric(&metrics, "meridian_edge_cache_verified"), Some(0));
    assert!(metric(&metrics, "meridian_edge_unverified_hits_total").unwrap_or(0) >= 1);

    let _bus = blocking(|| NatsServer::start(bus_addr(162), store.path()).unwrap());
    let mut verified = false;
    for _ in 0..100 {
        let answer = cdn.get(ASSET).await;
        if answer.is_hit() && !answer.cache_status().contains("unverified") {
            verified = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        verified,
        "the cache never became verified with the bus back"
    );
    let metrics = crate::harness::get_text(&format!("http://{admin}/metrics")).await;
    assert_eq!(metric(&metrics, "meridian_edge_cache_verified"), Some(1));
}

/// The `authorization` block of the shipped `deploy/nats/nats-server.conf`,
/// with test passwords.
fn shipped_permissions() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/nats-server.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("\nauthorization {")
        .expect("an authorization block");
    let end = start + text[start..].find("\n}\n").expect("its end") + 3;
    text[start..end]
        .replace("ROLE_PASSWORD", "role-secret")
        .replace("OPERATOR_PASSWORD", "operator-secret")
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_shipped_permissions_roles_follow_purges_and_only_operators_send_them() {
    let Some((state, store)) = bus_dirs() else {
        return;
    };
    let dir = tempdir().unwrap();
    let addr = bus_addr(165);
    let _bus = blocking(|| {
        NatsServer::start_configured(addr, store.path(), &shipped_permissions()).unwrap()
    });
    let topology = clustered(165, state.path());
    let roles = topology
        .clone()
        .nats_url(&format!("nats://role:role-secret@{addr}"));
    let operators = topology.nats_url(&format!("nats://operator:operator-secret@{addr}"));
    let operator_config = operators.write(dir.path()).unwrap();
    let up = blocking(|| Up::start(bin(), &roles).unwrap());
    let edge = up.edge(2);
    make_hit(edge).await;

    // A role's credentials cannot purge, nor publish a config.
    let refused = blocking(|| up.command(&["purge", URL]).unwrap().fails());
    assert!(refused.contains("purge"), "{refused}");
    let publish = blocking(|| {
        up.command(&["config", "publish", up.config_path().to_str().unwrap()])
            .unwrap()
            .fails()
    });
    assert!(!publish.is_empty());
    assert!(Cdn::via(edge).get(ASSET).await.is_hit(), "a role purged");

    // An operator's can; every edge, on the role's credentials, applies it.
    let stdout = blocking(|| {
        let mut purge = std::process::Command::new(bin());
        purge.args(["purge", URL, "--config"]).arg(&operator_config);
        Ran::run(&mut purge).unwrap().succeeds()
    });
    assert_eq!(stdout.matches("applied in").count(), 6, "{stdout}");
    assert!(!Cdn::via(edge).get(ASSET).await.is_hit());
}
