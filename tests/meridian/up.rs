//! `meridian up`: the whole topology from one command, and the three journeys.

use crate::harness::{
    Cdn, RunToEnd, Topology, Up, blocking, dns, eventually, get_text, meridian, tcp_listening,
    tempdir, up,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Asks `server` for `name`/`rtype`, with an ECS option for `subnet`
/// when given.
fn ask(server: SocketAddr, name: &str, rtype: RecordType, subnet: Option<&str>) -> dns::Reply {
    let query = dns::edns(dns::question(name, rtype), 1232, subnet);
    dns::udp(server, &query).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The line of `table` that starts with `first`.
fn line_of<'t>(table: &'t str, first: &str) -> &'t str {
    let line = table.lines().find(|l| l.starts_with(first));
    line.unwrap_or_else(|| panic!("no {first} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_topology_steers_caches_and_stops_cleanly() {
    let mut up = up(41);
    let b = up.topology.block();
    let stdout = up.process.lines();

    // One line per endpoint: both nameservers, two edges per region.
    let labels = [
        "geodns ns1".to_owned(),
        "geodns ns2".to_owned(),
        "origin eu-west".to_owned(),
        format!("edge us-east 127.{b}.1.1"),
        format!("edge us-east 127.{b}.1.3"),
        format!("edge eu-west 127.{b}.2.1"),
        format!("edge eu-west 127.{b}.2.3"),
        format!("edge ap-southeast 127.{b}.3.1"),
        format!("edge ap-southeast 127.{b}.3.3"),
    ];
    for label in &labels {
        assert!(
            stdout.iter().any(|l| l.contains(label)),
            "no endpoint line for {label}: {stdout:?}"
        );
    }

    // GeoDNS: clients in three countries reach three regions.
    for (subnet, region) in [
        ("81.2.69.0/24", 2),
        ("5.9.0.0/24", 2),
        ("8.8.8.0/24", 1),
        ("203.116.1.0/24", 3),
    ] {
        let answer = ask(up.dns(), "cdn.meridian.test.", RecordType::A, Some(subnet));
        assert_eq!(answer.message.metadata.response_code, ResponseCode::NoError);
        assert!(answer.message.metadata.authoritative, "AA set");
        assert!(!answer.message.metadata.recursion_available, "RA clear");
        // Every edge of the region, in one order or the other.
        let mut addresses = answer.addresses();
        addresses.sort();
        assert_eq!(
            addresses,
            [
                ip(&format!("127.{b}.{region}.1")),
                ip(&format!("127.{b}.{region}.3"))
            ],
            "{subnet}"
        );
        let scope = answer.scope().expect("the ECS option is echoed");
        assert!((1..=24).contains(&scope), "scope {scope} for {subnet}");
        assert!(answer.message.answers[0].ttl <= 60);
        // The second nameserver, its own process, answers the same.
        let ns2 = ask(
            up.topology.dns_of(1),
            "cdn.meridian.test.",
            RecordType::A,
            Some(subnet),
        );
        let mut ns2_addresses = ns2.addresses();
        ns2_addresses.sort();
        assert_eq!(
            (ns2_addresses, ns2.scope()),
            (addresses, Some(scope)),
            "{subnet} from ns2"
        );
    }
    // Without ECS the source address (loopback) cannot be placed: default order.
    let answer = ask(up.dns(), "cdn.meridian.test.", RecordType::A, None);
    assert!(
        answer.addresses().contains(&ip(&format!("127.{b}.1.1"))),
        "{:?}",
        answer.addresses()
    );
    // The apex is authoritative; other names are refused.
    let soa = ask(up.dns(), "meridian.test.", RecordType::SOA, None);
    assert_eq!(soa.message.answers.len(), 1);
    let refused = ask(up.dns(), "example.com.", RecordType::A, None);
    assert_eq!(
        refused.message.metadata.response_code,
        ResponseCode::Refused
    );

    // Edge: a miss, then a hit, of the same 1024 bytes.
    let eu = Cdn::via(up.edge(2));
    let first = eu.get("/assets/1k.bin").await;
    assert_eq!(first.status, 200);
    let status = first.cache_status();
    assert!(
        status.contains("fwd=miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(first.body.len(), 1024);
    let second = eu.get("/assets/1k.bin").await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert!(second.headers.contains_key("age"));
    assert_eq!(second.body, first.body);

    // Dynamic: names the region, never a hit.
    for _ in 0..2 {
        let whoami = eu.get("/api/whoami").await;
        assert_eq!(whoami.status, 200);
        assert!(!whoami.cache_status().contains("hit"), "{whoami:?}");
        let json = whoami.json();
        assert_eq!(json["region"], "eu-west");
        assert_eq!(json["client"], "127.0.0.1");
    }

    // Both admin listeners expose Prometheus metrics.
    let edge_metrics = get_text(&format!("http://127.{b}.2.1:9080/metrics")).await;
    assert!(
        edge_metrics.contains(r#"meridian_edge_requests_total{cache="hit"} 1"#),
        "{edge_metrics}"
    );
    assert!(
        edge_metrics.contains("meridian_edge_origin_response_seconds_count"),
        "{edge_metrics}"
    );
    let dns_metrics = get_text(&format!("http://127.{b}.0.1:9153/metrics")).await;
    assert!(
        dns_metrics.contains("meridian_dns_queries_total"),
        "{dns_metrics}"
    );

    // An unknown Host is refused by the edge.
    let evil = [("host", "evil.example")];
    let refused = Cdn::at(up.edge(2)).get_with("/assets/1k.bin", &evil).await;
    assert_eq!(refused.status, 421);

    // SIGINT stops everything and frees every port.
    up.process.signal(nix::sys::signal::Signal::SIGINT);
    let status = blocking(|| up.process.exit_within(Duration::from_secs(60)))
        .expect("up exits after SIGINT");
    assert!(status.success(), "clean exit, got {status}");
    for region in 1..=3 {
        for edge in up.edges(region) {
            assert!(!tcp_listening(edge), "edge {edge} still listening");
        }
        let origin = format!("127.{b}.{region}.2:8000").parse().unwrap();
        assert!(!tcp_listening(origin), "origin {region} still listening");
    }
    assert!(!tcp_listening(up.dns()), "GeoDNS still listening on TCP");
    let stderr = up.process.lines().join("\n");
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn a_child_that_cannot_bind_stops_the_whole_start() {
    // Hold eu-west's edge address so that edge cannot start.
    let block = 42;
    let _squatter = std::net::TcpListener::bind(format!("127.{block}.2.1:8080")).unwrap();
    let dir = tempdir();
    let config = Topology::demo(block).write(dir.path()).unwrap();
    let started = Instant::now();
    let stderr = meridian()
        .args(["up", "--config"])
        .arg(&config)
        .ran()
        .fails();
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(error.contains("edge eu-west"), "names the role: {stderr}");
    assert!(
        error.contains(&format!("127.{block}.2.1:8080")),
        "names the address: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(90));
    // The roles that did start were stopped again.
    for addr in [
        format!("127.{block}.1.1:8080"),
        format!("127.{block}.1.2:8000"),
    ] {
        assert!(!tcp_listening(addr.parse().unwrap()), "{addr} left running");
    }
}

/// The addresses of GeoDNS server `server`'s steered answer for
/// `subnet`, sorted (their order turns from query to query).
fn steered(up: &Up, server: usize, subnet: &str) -> Vec<IpAddr> {
    let answer = ask(
        up.topology.dns_of(server),
        "cdn.meridian.test.",
        RecordType::A,
        Some(subnet),
    );
    let mut addresses = answer.addresses();
    addresses.sort();
    addresses
}

/// Polls both GeoDNS servers until GB clients get the edges of region
/// `region` from each, or `within` passes. How long it takes is the
/// bench's `outage` measurement; here it only has to happen.
fn steered_within(up: &Up, region: u8, within: Duration) -> bool {
    let expected: Vec<IpAddr> = up.edges(region).iter().map(|a| a.ip()).collect();
    eventually(within, || {
        (0..up.topology.geodns_servers())
            .all(|server| steered(up, server, "81.2.69.0/24") == expected)
    })
}

#[test]
fn an_outage_steers_away_and_a_restore_steers_back() {
    let up = up(45);
    assert!(steered_within(&up, 2, Duration::from_secs(30)));

    let stdout = up.command(&["outage", "eu-west"]).unwrap().succeeds();
    assert!(
        stdout.contains("edge eu-west") && stdout.contains("origin eu-west"),
        "{stdout}"
    );
    assert!(
        steered_within(&up, 1, Duration::from_secs(60)),
        "GB clients were not steered to us-east"
    );
    for edge in up.edges(2) {
        assert!(
            !tcp_listening(edge),
            "the eu-west edge {edge} still answers"
        );
    }
    // US clients are unaffected.
    let us_edges: Vec<IpAddr> = up.edges(1).iter().map(|a| a.ip()).collect();
    assert_eq!(steered(&up, 0, "8.8.8.0/24"), us_edges);

    let table = up.command(&["status"]).unwrap().succeeds();
    let eu = line_of(&table, "eu-west");
    assert!(eu.contains("killed") && eu.contains("down"), "{table}");
    let json = up.status_json().unwrap();
    assert_eq!(json["regions"][1]["edge"], "killed");
    assert_eq!(json["regions"][0]["dns_view_up"], true);

    up.command(&["restore", "eu-west"]).unwrap().succeeds();
    assert!(
        steered_within(&up, 2, Duration::from_secs(60)),
        "GB clients did not come back to eu-west"
    );
    let table = up.command(&["status"]).unwrap().succeeds();
    let eu = line_of(&table, "eu-west");
    assert!(eu.contains("running") && !eu.contains("down"), "{table}");
}

#[test]
fn control_errors_say_what_to_do() {
    let up = up(46);
    let stderr = up.command(&["outage", "mars"]).unwrap().fails();
    assert!(
        stderr.contains("known regions: us-east, eu-west, ap-southeast"),
        "{stderr}"
    );
    drop(up);

    // With no `up` running on that config's control address:
    let dir = tempdir();
    let config = Topology::demo(47).write(dir.path()).unwrap();
    let stderr = meridian()
        .args(["status", "--config"])
        .arg(&config)
        .ran()
        .fails();
    assert!(
        stderr.contains("no `meridian up` is running") && stderr.contains("meridian up"),
        "{stderr}"
    );
}
