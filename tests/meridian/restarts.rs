//! `meridian up` restarts what dies without being asked to: a `kill -9`
//! of a child is undone within seconds and counted; what `meridian outage`
//! killed stays down; a child that dies at every start is given up on and
//! reported, until `restore`. Blocks 127.175 to 127.177.

use crate::harness::{Up, eventually as within, raw, tcp_listening, up};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Generous: a debug build on a loaded machine starts slowly.
const PATIENCE: Duration = Duration::from_secs(90);

/// `process` (e.g. `edge eu-west 127.175.2.1`) in `up`'s status.
fn process(up: &Up, name: &str) -> Value {
    up.process_status(name).unwrap()
}

/// Polls `condition` until it holds or [`PATIENCE`] passes; false then.
fn eventually(condition: impl FnMut() -> bool) -> bool {
    within(PATIENCE, condition)
}

fn sigkill(pid: &Value) {
    let pid = i32::try_from(pid.as_u64().unwrap()).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

/// Whether the edge at `addr` answers its health check.
fn edge_answers(addr: SocketAddr) -> bool {
    let health = raw::get(addr, "/_meridian/health", "cdn.meridian.test");
    health.is_ok_and(|response| response.status() == 200)
}

#[test]
fn a_killed_edge_is_restarted_and_counted() {
    let up = up(175);
    let edge = up.edge(2);
    let label = format!("edge eu-west {}", edge.ip());
    let before = process(&up, &label);
    assert_eq!(before["state"], "running", "{before}");
    assert_eq!(before["restarts"], 0, "{before}");
    sigkill(&before["pid"]);

    let mut after = Value::Null;
    let restarted = eventually(|| {
        after = process(&up, &label);
        after["state"] == "running" && after["restarts"] == 1 && after["pid"] != before["pid"]
    });
    assert!(restarted, "not restarted: {after}");
    assert!(
        eventually(|| edge_answers(edge)),
        "the edge does not answer"
    );
    let last = after["last_exit"].as_str().unwrap_or_default();
    assert!(last.contains("SIGKILL"), "{after}");
    // The table says so too; the others were never restarted.
    let table = up.command(&["status"]).unwrap().succeeds();
    let line: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&label))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let pid = after["pid"].to_string();
    let address = edge.ip().to_string();
    assert_eq!(
        line,
        ["edge", "eu-west", &address, "running", &pid, "1"],
        "{table}"
    );
    let status = up.status_json().unwrap();
    for p in status["processes"].as_array().unwrap() {
        if p["process"] != label.as_str() {
            assert_eq!(p["restarts"], 0, "{p}");
        }
    }
    let log = up.process.lines().join("\n");
    assert!(
        log.contains(&label) && log.contains("died unexpectedly"),
        "{log}"
    );
}

#[test]
fn what_an_outage_killed_stays_down_while_crashes_are_restarted() {
    let up = up(176);
    let outage = up.command(&["outage", "eu-west", "--component", "edge"]);
    outage.unwrap().succeeds();
    // A crash after the outage: once it has been restarted, the
    // supervisor has had every chance to restart the outage's edge too,
    // whose delay would have started earlier.
    let origin = process(&up, "origin us-east");
    sigkill(&origin["pid"]);
    let mut after = Value::Null;
    assert!(
        eventually(|| {
            after = process(&up, "origin us-east");
            after["restarts"] == 1 && after["state"] == "running"
        }),
        "the crashed origin was not restarted: {after}"
    );
    // The outage of the component `edge` took every edge of the region.
    for addr in up.edges(2) {
        let edge = process(&up, &format!("edge eu-west {}", addr.ip()));
        assert_eq!(edge["state"], "killed", "{edge}");
        assert_eq!(edge["restarts"], 0, "{edge}");
        assert_eq!(edge["pid"], Value::Null, "{edge}");
        assert!(!tcp_listening(addr), "the outage's edge {addr} is back");
    }

    up.command(&["restore", "eu-west"]).unwrap().succeeds();
    for addr in up.edges(2) {
        assert!(edge_answers(addr));
        let edge = process(&up, &format!("edge eu-west {}", addr.ip()));
        assert_eq!(edge["state"], "running", "{edge}");
        assert_eq!(edge["restarts"], 0, "a restore is not a restart: {edge}");
    }
}

#[test]
fn a_crash_loop_is_given_up_on_and_restore_revives_it() {
    let up = up(177);
    let origin: SocketAddr = "127.177.2.2:8000".parse().unwrap();
    // Take eu-west's origin down, then hold its address, so that every
    // start of it from now on dies at once.
    let outage = up.command(&["outage", "eu-west", "--component", "origin"]);
    outage.unwrap().succeeds();
    let squatter = std::net::TcpListener::bind(origin).unwrap();
    // Restored onto a taken address: it fails.
    let stderr = up.command(&["restore", "eu-west"]).unwrap().fails();
    assert!(
        stderr.contains("origin eu-west") && stderr.contains("127.177.2.2:8000"),
        "{stderr}"
    );

    // The supervisor restarts it with growing delays, then gives up.
    let mut seen = Value::Null;
    assert!(
        eventually(|| {
            seen = process(&up, "origin eu-west");
            seen["state"] == "failed"
        }),
        "never given up on: {seen}"
    );
    // Five restarts after the restore's start (six crashes within a
    // minute); more only if the machine is so slow that the crashes spread
    // over more than the window.
    let restarts = seen["restarts"].as_u64().unwrap();
    assert!(restarts >= 5, "{seen}");
    let last = seen["last_exit"].as_str().unwrap_or_default();
    assert!(last.contains("127.177.2.2:8000"), "says why: {seen}");
    // Given up on is given up on: nothing restarts it later.
    std::thread::sleep(Duration::from_secs(1));
    let still = process(&up, "origin eu-west");
    assert_eq!(still["state"], "failed", "{still}");
    assert_eq!(still["restarts"], seen["restarts"], "{still}");
    let log = up.process.lines().join("\n");
    assert!(
        log.contains("crash loop") && log.contains("origin eu-west") && log.contains("giving up"),
        "{log}"
    );
    let table = up.command(&["status"]).unwrap().stdout;
    assert!(
        table.contains("origin eu-west crashed in a loop and was given up on"),
        "{table}"
    );
    // The edge fails over meanwhile; the others are untouched.
    for addr in up.edges(2) {
        let edge = process(&up, &format!("edge eu-west {}", addr.ip()));
        assert_eq!(edge["state"], "running", "{edge}");
    }

    // With its address free again, restore brings it back.
    drop(squatter);
    up.command(&["restore", "eu-west"]).unwrap().succeeds();
    assert!(tcp_listening(origin));
    let revived = process(&up, "origin eu-west");
    assert_eq!(revived["state"], "running", "{revived}");
}
