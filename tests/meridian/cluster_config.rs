//! Config revisions on the cluster bus: `meridian config publish`, and
//! GeoDNS, an edge and an origin with `[cluster]` following them, against
//! a real `nats-server` (Debian package `nats-server`; skipped without it).
//!
//! Loopback blocks 236 and 237.

use crate::harness::*;
use hickory_proto::rr::RecordType;
use kit::Process;
use kit::nats::NatsServer;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// How long a role may take to take a revision (a restart of a debug
/// build included) or to report it.
const FOLLOWS: Duration = Duration::from_secs(60);

/// A real nats-server on 127.B.0.9:4222, or `None` (and a message naming
/// the package) when it is not installed.
fn nats(block: u8, store: &Path) -> Option<NatsServer> {
    if !NatsServer::installed() {
        eprintln!("skipped: nats-server is not installed (Debian package `nats-server`)");
        return None;
    }
    let addr = SocketAddr::from(([127, block, 0, 9], 4222));
    Some(NatsServer::start(addr, store).unwrap())
}

/// The demo on `block`, one GeoDNS server and one edge in eu-west, on the
/// bus at `nats`, with `probe.meridian.test` answering `probe`.
fn topology(block: u8, nats: &NatsServer, state: &Path, probe: &str) -> Topology {
    Topology::demo(block)
        .single_geodns()
        .quiet_health()
        .single_edge(2)
        .cluster(nats.addr(), state, Duration::from_secs(2))
        .zone_record("probe.meridian.test.", "A", probe)
}

/// What `probe.meridian.test` answers now.
fn probe(geodns: &GeoDns) -> Vec<IpAddr> {
    dns::udp(
        geodns.dns(),
        &dns::question("probe.meridian.test.", RecordType::A),
    )
    .map(|reply| reply.addresses())
    .unwrap_or_default()
}

fn ip_of(text: &str) -> Vec<IpAddr> {
    vec![text.parse().unwrap()]
}

/// `meridian config publish` of `topology`; the revision it published.
fn publish(dir: &tempfile::TempDir, name: &str, topology: &Topology) -> u64 {
    let file = topology.write_unchecked(dir.path(), name).unwrap();
    let out = meridian()
        .args(["config", "publish"])
        .arg(&file)
        .ran()
        .succeeds();
    out.trim()
        .strip_prefix("published revision ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("publish said {out:?}"))
}

/// The roles alive on the bus, as `meridian status --json` shows them:
/// (name, revision, refused revision and reason).
type Reported = Vec<(String, Option<u64>, Option<(u64, String)>)>;

fn reported(config: &Path) -> Reported {
    let ran = meridian()
        .args(["status", "--json", "--config"])
        .arg(config)
        .ran();
    let Ok(status) = serde_json::from_str::<serde_json::Value>(&ran.stdout) else {
        return Vec::new();
    };
    let roles = status["cluster"]["roles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    roles
        .iter()
        .map(|role| {
            let refused = role["refused"].as_array().map(|r| {
                (
                    r[0].as_u64().unwrap_or_default(),
                    r[1].as_str().unwrap_or_default().to_owned(),
                )
            });
            (
                role["name"].as_str().unwrap_or_default().to_owned(),
                role["revision"].as_u64(),
                refused,
            )
        })
        .collect()
}

/// Waits until every one of `names` reports `check`.
fn wait_reports(
    config: &Path,
    names: &[String],
    what: &str,
    check: impl Fn(Option<u64>, &Option<(u64, String)>) -> bool,
) {
    let mut last = Vec::new();
    let all = eventually(FOLLOWS, || {
        last = reported(config);
        names.iter().all(|name| {
            last.iter()
                .any(|(n, revision, refused)| n == name && check(*revision, refused))
        })
    });
    assert!(all, "not every role reports {what}: {last:?}");
}

/// `meridian origin --region eu-west` on `topology`, written to `dir`.
fn origin(dir: &Path, topology: &Topology) -> Process {
    let config = topology.write(dir).unwrap();
    let mut command = meridian();
    command
        .args(["origin", "--region", "eu-west", "--config"])
        .arg(config);
    let mut process = Process::spawn(command, "origin eu-west").unwrap();
    process
        .wait_accepting(topology.origin(2), kit::roles::READY)
        .unwrap();
    process
}

/// The `Cache-Control` the origin gives its static files.
fn asset_cache_control(origin: SocketAddr) -> String {
    raw::get(origin, "/assets/1k.bin", "cdn.meridian.test")
        .ok()
        .and_then(|r| r.field("cache-control").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn every_role_follows_a_published_revision_and_refuses_a_bad_one() {
    let dir = tempdir();
    let state = dir.path().join("state");
    let Some(nats) = nats(236, &dir.path().join("nats")) else {
        return;
    };
    let first = topology(236, &nats, &state, "192.0.2.1");
    let geodns = GeoDns::start(bin(), &first).unwrap();
    let mut edge = Edge::start(bin(), &first, 2).unwrap();
    let origin_dir = tempdir();
    let mut origin = origin(origin_dir.path(), &first);
    let own = first.write(dir.path()).unwrap();
    let names = [
        "geodns".to_owned(),
        format!("edge eu-west {}", first.edge(2)),
        "origin eu-west".to_owned(),
    ];
    wait_reports(&own, &names, "its own file", |revision, refused| {
        revision.is_none() && refused.is_none()
    });
    assert_eq!(probe(&geodns), ip_of("192.0.2.1"));

    // A zone change: GeoDNS answers by it; the edge and the origin record
    // it without restarting (nothing of theirs changed).
    let zone_only = topology(236, &nats, &state, "192.0.2.2");
    let one = publish(&dir, "one.toml", &zone_only);
    wait_reports(&own, &names, "the zone revision", |r, _| r == Some(one));
    assert!(
        eventually(FOLLOWS, || probe(&geodns) == ip_of("192.0.2.2")),
        "GeoDNS still answers {:?}",
        probe(&geodns)
    );
    for (role, process) in [("edge", &mut edge.process), ("origin", &mut origin)] {
        let says = format!("cluster config revision {one} changes nothing for this {role}");
        assert!(
            eventually(FOLLOWS, || process
                .lines()
                .iter()
                .any(|l| l.contains(&says))),
            "the {role} did not say {says:?}:\n{}",
            process.log_excerpt()
        );
    }

    // A change of the edge's and the origin's own settings: both restart
    // in place (the same process) into it.
    let settings = zone_only
        .clone()
        .raw("edge.cache_max_bytes", 33_554_432)
        .raw("origin.asset_max_age_seconds", 1234);
    let two = publish(&dir, "two.toml", &settings);
    wait_reports(&own, &names, "the settings revision", |r, _| r == Some(two));
    assert!(
        eventually(FOLLOWS, || asset_cache_control(first.origin(2))
            .contains("max-age=1234")),
        "the origin did not restart into revision {two}: {:?}",
        asset_cache_control(first.origin(2))
    );
    edge.process
        .wait_accepting(first.edge(2), kit::roles::READY)
        .unwrap();
    for (role, process) in [("edge", &mut edge.process), ("origin", &mut origin)] {
        assert!(
            process
                .lines()
                .iter()
                .any(|l| l.contains("restarting in place")),
            "the {role} says nothing of a restart:\n{}",
            process.log_excerpt()
        );
        assert!(process.alive(), "the {role}'s process is gone");
    }

    // A bad file is refused before it reaches the bus.
    let bad = settings.clone().latitude(2, 153.0);
    let file = bad.write_unchecked(dir.path(), "bad.toml").unwrap();
    let refused = meridian()
        .args(["config", "publish"])
        .arg(&file)
        .ran()
        .fails();
    assert!(refused.contains("region[1].latitude"), "{refused}");
    assert!(refused.contains("nothing published"), "{refused}");
    let single = Topology::demo(236).single_geodns();
    let file = single.write_unchecked(dir.path(), "single.toml").unwrap();
    let refused = meridian()
        .args(["config", "publish"])
        .arg(&file)
        .ran()
        .fails();
    assert!(
        refused.contains("publishing needs [cluster] to know where the bus is"),
        "{refused}"
    );

    // The same bad config put straight into the bucket, as a buggy or
    // hostile peer would: every role refuses it and keeps revision two.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let settings_config = first.config().unwrap();
    let bus_settings = settings_config.cluster.as_ref().unwrap();
    let three = runtime.block_on(async {
        let bus = cluster::Bus::connect(bus_settings, "test peer", cluster::Connect::Now)
            .await
            .unwrap();
        cluster::config_store::publish(&bus, &bad.toml())
            .await
            .unwrap()
    });
    wait_reports(&own, &names, "revision three refused", |r, refused| {
        r == Some(two)
            && refused
                .as_ref()
                .is_some_and(|(n, why)| *n == three && why.contains("region[1].latitude"))
    });
    assert_eq!(probe(&geodns), ip_of("192.0.2.2"));
    assert!(asset_cache_control(first.origin(2)).contains("max-age=1234"));
    let error = format!("refusing cluster config revision {three}");
    assert!(
        geodns.process.lines().iter().any(|l| l.contains(&error)),
        "{}",
        geodns.process.log_excerpt()
    );

    // The next good revision is taken, and the refusal is history.
    let fixed = topology(236, &nats, &state, "192.0.2.3")
        .raw("edge.cache_max_bytes", 33_554_432)
        .raw("origin.asset_max_age_seconds", 1234);
    let four = publish(&dir, "four.toml", &fixed);
    wait_reports(&own, &names, "revision four", |r, refused| {
        r == Some(four) && refused.is_none()
    });
    assert!(eventually(FOLLOWS, || probe(&geodns) == ip_of("192.0.2.3")));

    // Status without the bus says so, and still works.
    let mut nats = nats;
    nats.stop();
    let out = meridian()
        .args(["status", "--config"])
        .arg(&own)
        .ran()
        .succeeds();
    assert!(
        out.contains("CLUSTER: unknown (cannot reach the cluster bus"),
        "{out}"
    );
}

#[test]
fn a_role_restarted_while_the_bus_is_down_starts_from_its_applied_revision() {
    let dir = tempdir();
    let state = dir.path().join("state");
    let Some(mut nats) = nats(237, &dir.path().join("nats")) else {
        return;
    };
    let first = topology(237, &nats, &state, "192.0.2.1");
    let geodns = GeoDns::start(bin(), &first).unwrap();
    let one = publish(&dir, "one.toml", &topology(237, &nats, &state, "192.0.2.2"));
    assert!(
        eventually(FOLLOWS, || probe(&geodns) == ip_of("192.0.2.2")),
        "GeoDNS did not take revision {one}"
    );
    let applied = state.join("geodns.applied.toml");
    assert!(
        std::fs::read_to_string(&applied)
            .unwrap()
            .starts_with(&format!("# meridian: cluster config revision {one}\n"))
    );

    // The bus goes down, GeoDNS restarts with its own file saying .1: it
    // starts at once, from the revision it applied.
    nats.stop();
    drop(geodns);
    let geodns = GeoDns::start(bin(), &first).unwrap();
    assert_eq!(probe(&geodns), ip_of("192.0.2.2"));
    let says = format!("starting from cluster config revision {one}");
    assert!(
        geodns.process.lines().iter().any(|l| l.contains(&says)),
        "{}",
        geodns.process.log_excerpt()
    );

    // A corrupt applied file is ignored, with a warning: its own file.
    drop(geodns);
    std::fs::write(&applied, "not a revision").unwrap();
    let geodns = GeoDns::start(bin(), &first).unwrap();
    assert_eq!(probe(&geodns), ip_of("192.0.2.1"));
    assert!(
        geodns
            .process
            .lines()
            .iter()
            .any(|l| l.contains("ignoring") && l.contains("geodns.applied.toml")),
        "{}",
        geodns.process.log_excerpt()
    );
}
