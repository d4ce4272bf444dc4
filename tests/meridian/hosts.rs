//! `meridian up --hosts`: every GeoDNS server, edge and origin on a network
//! host of its own (a namespace), and partitions as cut links — the short
//! drill. It needs root on Linux and iproute2, and says when it is skipped.
//! Its config is on block 127.24 and moves onto 198.19.0.0/16, a subnet no
//! other test uses.

use crate::harness::{Up, bin, blocking, dns, eventually};
use hickory_proto::rr::RecordType;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// Generous: a debug build on a loaded machine, and health windows.
const WITHIN: Duration = Duration::from_secs(20);

/// Whether this machine lets a test make network namespaces.
fn namespaces_available() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// An address on the hosts' subnet.
fn host(third: u8, fourth: u8) -> IpAddr {
    IpAddr::from([198, 19, third, fourth])
}

/// GB's answer from GeoDNS server `nth` (1 or 2), sorted.
fn gb_from(nth: u8) -> Vec<IpAddr> {
    let server = SocketAddr::new(host(0, nth), 5353);
    let query = dns::ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
    // From this machine's own address on the hosts' network.
    let mut addresses = dns::udp_from(host(255, 254), server, &query)
        .map(|reply| reply.addresses())
        .unwrap_or_default();
    addresses.sort();
    addresses
}

/// Whether both servers answer GB with `edges`.
fn both_answer(edges: &[IpAddr]) -> bool {
    gb_from(1) == edges && gb_from(2) == edges
}

/// What GeoDNS server `server`'s own probes see of `edge`, from `status`.
fn probed_up(up: &Up, server: &str, edge: SocketAddr) -> Option<bool> {
    let status = up.status_json().ok()?;
    let view = status["geodns"]
        .as_array()?
        .iter()
        .find(|v| v["server"] == server)?
        .clone();
    view["regions"]
        .as_array()?
        .iter()
        .flat_map(|r| r["edges"].as_array().cloned().unwrap_or_default())
        .find(|e| e["addr"] == edge.to_string())?["probed_up"]
        .as_bool()
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_are_cut_links_steered_around_by_quorum_and_healed() {
    if !namespaces_available() {
        eprintln!("skipped: `up --hosts` needs root on Linux and iproute2's `ip`");
        return;
    }
    let topology = crate::harness::Topology::demo(24);
    let flags = ["--hosts", "--hosts-subnet", "198.19.0.0/16"];
    let up = blocking(|| Up::start_with(bin(), &topology, &flags).unwrap());
    let pid = up.process.pid();
    let eu = [host(2, 1), host(2, 3)];
    let us = [host(1, 1), host(1, 3)];

    // Both nameservers, each on its own host, send GB to both eu-west
    // edges, which serve from their hosts.
    assert!(blocking(|| eventually(WITHIN, || both_answer(&eu))));
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("cdn.meridian.test", SocketAddr::new(eu[1], 8080))
        .build()
        .unwrap();
    let response = client
        .get("http://cdn.meridian.test:8080/assets/1k.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // ns1 is cut off from eu-west: its own probes see the region down,
    // but it is one vantage point of several: nobody is steered away.
    let edge = SocketAddr::new(eu[0], 8080);
    blocking(|| {
        up.command(&["outage", "eu-west", "--partition", "--from", "ns1"])
            .unwrap()
            .succeeds()
    });
    assert!(
        blocking(|| eventually(WITHIN, || probed_up(&up, "ns1", edge) == Some(false))),
        "ns1 never saw the cut"
    );
    assert_eq!(blocking(|| probed_up(&up, "ns2", edge)), Some(true));
    assert!(
        blocking(|| both_answer(&eu)),
        "a nameserver's partition steered GB away"
    );
    blocking(|| up.command(&["restore", "eu-west"]).unwrap().succeeds());

    // eu-west is cut off from everyone: both steer GB to us-east; healed,
    // back to eu-west.
    blocking(|| {
        up.command(&["outage", "eu-west", "--partition"])
            .unwrap()
            .succeeds()
    });
    assert!(blocking(|| eventually(WITHIN, || both_answer(&us))));
    let restored = blocking(|| up.command(&["restore", "eu-west"]).unwrap().succeeds());
    assert!(
        restored.contains("the network link of eu-west"),
        "{restored}"
    );
    assert!(blocking(|| eventually(WITHIN, || both_answer(&eu))));

    // Stopped, `up` removes its hosts.
    let mut up = up;
    up.process.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(blocking(|| up.process.exit_within(WITHIN)).is_some());
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&format!("meridian-{pid}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_partition_needs_hosts() {
    let up = crate::harness::up(25);
    let ran = up.command(&["outage", "eu-west", "--partition"]).unwrap();
    let stderr = ran.fails();
    assert!(stderr.contains("--hosts"), "{stderr}");
    // Nothing was killed.
    let status = up.status_json().unwrap();
    assert_eq!(status["regions"][1]["origin"], "running", "{status}");
}

/// `up --hosts --cluster`: the bus on a host of its own (on the core), a
/// region cut off from it by a partition catches up on the purge sent
/// meanwhile as soon as the link heals; until it has, no hit it serves
/// is presented as verified. Block 164, moved onto 198.21.0.0/16.
#[tokio::test(flavor = "multi_thread")]
async fn a_region_cut_off_from_the_bus_catches_up_on_purges_when_healed() {
    if !namespaces_available() || !kit::nats::NatsServer::installed() {
        eprintln!("skipped: needs root, iproute2's `ip` and nats-server");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let topology = crate::harness::Topology::demo(164).cluster(
        SocketAddr::from(([127, 164, 0, 4], 4222)),
        state.path(),
        Duration::from_secs(2),
    );
    let flags = ["--hosts", "--hosts-subnet", "198.21.0.0/16", "--cluster"];
    let up = blocking(|| Up::start_with(bin(), &topology, &flags).unwrap());
    let edge = SocketAddr::from(([198, 21, 2, 1], 8080));
    let cdn = crate::harness::Cdn::via(edge);
    cdn.get(crate::cluster::ASSET).await;
    assert!(cdn.get(crate::cluster::ASSET).await.is_hit());

    blocking(|| {
        up.command(&["outage", "eu-west", "--partition"])
            .unwrap()
            .succeeds()
    });
    let url = "http://cdn.meridian.test:8080/assets/1k.bin";
    let stdout = blocking(|| up.command(&["purge", url]).unwrap().succeeds());
    // The bus is on the core: the other regions applied it at once.
    assert!(stdout.contains("edge us-east 198.21.1.1:8080"), "{stdout}");
    crate::cluster::not_applied_by(&stdout, edge);
    blocking(|| up.command(&["restore", "eu-west"]).unwrap().succeeds());

    let caught_up = crate::cluster::until_purged(&cdn).await;
    assert!(
        caught_up,
        "eu-west never applied the purge sent while it was cut off"
    );
}
