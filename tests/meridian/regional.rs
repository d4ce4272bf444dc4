//! Several edges per region: GeoDNS answers with the region's edges that
//! are up, and the edges of a region fill their misses from each other so
//! that the region asks its origin once per object (peer fill). Blocks
//! 127.20 to 127.23.

use crate::harness::{
    Edge, GeoDns, Received, ScriptedOrigin, Topology, bin, dns, eventually, metric, ok, raw,
};
use hickory_proto::rr::RecordType;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Generous: a debug build on a loaded machine is slow to start.
const PATIENCE: Duration = Duration::from_secs(60);

/// Edges whose health checks never mark a peer down while a test runs
/// (a peer that starts later than another is not taken for dead), so
/// both edges see the same peers up and agree on every object's owner;
/// a dead peer is still passed over, when a fill on it fails.
fn steady(block: u8) -> Topology {
    Topology::demo(block).quiet_health()
}

/// A client that sends every request for cdn.meridian.test to `edge`.
fn client_via(edge: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .resolve("cdn.meridian.test", edge)
        .build()
        .unwrap()
}

/// The body of `GET path` from an edge's admin listener.
fn admin_get(admin: SocketAddr, path: &str) -> String {
    raw::get(admin, path, &admin.to_string()).unwrap().text()
}

/// The edge's counter `name` (with its labels), from its admin listener.
fn counter(admin: SocketAddr, name: &str) -> u64 {
    let text = admin_get(admin, "/metrics");
    metric(&text, name).unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn sent(admin: SocketAddr, outcome: &str) -> u64 {
    counter(
        admin,
        &format!("meridian_edge_peer_fills_sent_total{{outcome=\"{outcome}\"}}"),
    )
}

fn received(admin: SocketAddr, outcome: &str) -> u64 {
    counter(
        admin,
        &format!("meridian_edge_peer_fills_received_total{{outcome=\"{outcome}\"}}"),
    )
}

/// Which of `edges` owns `path` when all of them are up.
fn owner_of(path: &str, edges: &[SocketAddr]) -> SocketAddr {
    let key = edge::peers::url_key("http", "cdn.meridian.test", path);
    edge::peers::owner(&key, &edges[1..], edges[0]).unwrap_or(edges[0])
}

/// The origin of eu-west on `topology`: every object cacheable for a
/// minute, after a pause that lets concurrent requests pile up on it.
fn slow_origin(topology: &Topology) -> ScriptedOrigin {
    ScriptedOrigin::start(&topology.origin(2).to_string(), |r: &Received| {
        std::thread::sleep(Duration::from_millis(300));
        ok(
            &[("cache-control", "max-age=60")],
            &format!("object {}", r.path),
        )
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_region_fetches_an_object_from_its_origin_once_however_many_edges_ask() {
    let topology = steady(20);
    let origin = slow_origin(&topology);
    let edges = topology.edges(2);
    let admins = topology.edge_admins(2);
    let mut running: Vec<Option<Edge>> = tokio::task::block_in_place(|| {
        (0..2)
            .map(|nth| Some(Edge::start_nth(bin(), &topology, 2, nth).unwrap()))
            .collect()
    });
    // Each publishes the other as its peer, up.
    for (admin, other) in admins.iter().zip(edges.iter().rev()) {
        let status: serde_json::Value = serde_json::from_str(&tokio::task::block_in_place(|| {
            admin_get(*admin, "/status")
        }))
        .unwrap();
        assert_eq!(
            status["peers"],
            serde_json::json!([{ "addr": other.to_string(), "up": true }]),
            "{status}"
        );
    }

    // 24 concurrent cold requests for one object, spread over both edges.
    let path = "/regional/shared.bin";
    let url = format!("http://cdn.meridian.test:8080{path}");
    let requests = (0..24).map(|i| {
        let client = client_via(edges[i % 2]);
        let url = url.clone();
        tokio::spawn(async move {
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        })
    });
    for body in futures::future::join_all(requests).await {
        assert_eq!(body.unwrap(), format!("object {path}"));
    }
    assert_eq!(
        origin.count("GET", path),
        1,
        "one origin fetch for the region"
    );
    // The owner fetched it; the other edge filled from the owner.
    let owner = owner_of(path, &edges);
    let (owner_at, other_at) = if owner == edges[0] { (0, 1) } else { (1, 0) };
    tokio::task::block_in_place(|| {
        assert_eq!(sent(admins[owner_at], "filled"), 0, "the owner asks no one");
        let fills = sent(admins[other_at], "filled");
        assert!(fills >= 1, "the other edge filled from the owner");
        assert_eq!(sent(admins[other_at], "failed"), 0);
        // Each fill the owner answered: with the one fetch, or from its
        // cache (when one of its own clients' requests fetched it).
        let answered = received(admins[owner_at], "fetched") + received(admins[owner_at], "hit");
        assert_eq!(answered, fills);
        assert_eq!(received(admins[other_at], "fetched"), 0);
    });

    // The owner dies: the other edge still serves the object it holds,
    // and fills a new object the dead edge owned from the origin.
    running[owner_at] = None;
    let survivor = client_via(edges[other_at]);
    let again = survivor.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), format!("object {path}"));
    let orphan = (0..)
        .map(|i| format!("/regional/orphan-{i}.bin"))
        .find(|p| owner_of(p, &edges) == owner)
        .unwrap();
    let response = survivor
        .get(format!("http://cdn.meridian.test:8080{orphan}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), format!("object {orphan}"));
    assert_eq!(origin.count("GET", &orphan), 1);
    tokio::task::block_in_place(|| {
        assert!(
            sent(admins[other_at], "failed") >= 1,
            "it tried the owner first"
        );
    });
    drop(running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_fill_is_honoured_only_from_a_peer_and_never_sent_on() {
    let b = 22;
    // eu-west has two edges; only the first runs, in front of this origin.
    let topology = steady(b);
    let origin = ScriptedOrigin::start(&topology.origin(2).to_string(), |r: &Received| {
        ok(
            &[("cache-control", "max-age=60")],
            &format!("object {}", r.path),
        )
    })
    .unwrap();
    let edges = topology.edges(2);
    let admin = topology.edge_admin(2);
    let _edge = tokio::task::block_in_place(|| Edge::start_nth(bin(), &topology, 2, 0)).unwrap();
    let from = |ip: IpAddr| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(ip)
            .resolve("cdn.meridian.test", edges[0])
            .build()
            .unwrap()
    };
    let stranger = from(IpAddr::from([127, b, 0, 9]));
    let peer = from(edges[1].ip());
    let mark = "meridian.test; fill=peer";

    // A client that marks its request as a fill gets what a loop gets.
    let forged = stranger
        .get("http://cdn.meridian.test:8080/forged")
        .header("cdn-loop", mark)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 508);
    assert_eq!(origin.count("GET", "/forged"), 0);
    // From the peer's address: served, from the origin, and never sent on
    // to a peer (the running edge's only peer is the one asking, which
    // is not even running: a fill sent to it would fail).
    let path = "/regional/asked-by-a-peer.bin";
    let url = format!("http://cdn.meridian.test:8080{path}");
    let filled = peer
        .get(&url)
        .header("cdn-loop", mark)
        .send()
        .await
        .unwrap();
    assert_eq!(filled.status(), 200);
    assert_eq!(filled.text().await.unwrap(), format!("object {path}"));
    assert_eq!(origin.count("GET", path), 1);
    // The origin sees both steps in `CDN-Loop` (RFC 8586 appends).
    let fetched = origin.received().pop().unwrap();
    assert_eq!(
        fetched.headers.get("cdn-loop").map(String::as_str),
        Some("meridian.test; fill=peer, meridian.test"),
        "{fetched:?}"
    );
    // A fill of an object this edge holds is a hit.
    let hit = peer
        .get(&url)
        .header("cdn-loop", mark)
        .send()
        .await
        .unwrap();
    assert!(
        hit.headers()["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("meridian; hit"),
        "{:?}",
        hit.headers()
    );
    // Still a loop from the peer's address when it is not marked as a
    // fill, or has been through this CDN twice.
    for looped in ["meridian.test", "meridian.test; fill=peer, meridian.test"] {
        let response = peer
            .get("http://cdn.meridian.test:8080/looped")
            .header("cdn-loop", looped)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 508, "{looped}");
    }
    // And a fill is held to the hosts this CDN serves.
    let foreign = peer
        .get(format!("http://{}/x", edges[0]))
        .header("host", "evil.example")
        .header("cdn-loop", mark)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 421);
    assert_eq!(origin.count("GET", "/looped"), 0);
    tokio::task::block_in_place(|| {
        assert_eq!(received(admin, "refused"), 1);
        assert_eq!(received(admin, "fetched"), 1);
        assert_eq!(received(admin, "hit"), 1);
        assert_eq!(received(admin, "local"), 1, "the foreign host");
        assert_eq!(sent(admin, "failed"), 0, "nothing was sent on to a peer");
        assert_eq!(sent(admin, "filled"), 0);
    });
}

/// The sorted addresses GeoDNS answers a GB client with.
fn gb_answer(dns_server: SocketAddr) -> Vec<IpAddr> {
    let query = dns::ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
    let reply = dns::udp(dns_server, &query).unwrap();
    dns::sorted_addresses(&reply.message)
}

#[test]
fn a_dead_edge_leaves_the_answer_and_the_other_stays() {
    let topology = Topology::demo(21);
    let edges: Vec<IpAddr> = topology.edges(2).iter().map(SocketAddr::ip).collect();
    let geodns = GeoDns::start(bin(), &topology).unwrap();
    let first = Edge::start_nth(bin(), &topology, 2, 0).unwrap();
    let second = Edge::start_nth(bin(), &topology, 2, 1).unwrap();
    // GB's answer holds both of eu-west's edges.
    assert!(
        eventually(PATIENCE, || gb_answer(geodns.dns()) == edges),
        "{:?}",
        gb_answer(geodns.dns())
    );
    // One dies: it leaves the answer within the health window (a probe
    // every 500 ms, down after 2 failures), and the other never does.
    drop(second);
    let killed = Instant::now();
    let mut answers = Vec::new();
    let left = eventually(PATIENCE, || {
        let answer = gb_answer(geodns.dns());
        answers.push(answer.clone());
        answer == [edges[0]]
    });
    assert!(left, "{answers:?}");
    eprintln!(
        "the dead edge left GB's answer after {:?}",
        killed.elapsed()
    );
    assert!(
        answers.iter().all(|a| a.contains(&edges[0])),
        "the live edge left the answer: {answers:?}"
    );
    drop(first);
}

#[test]
fn an_edge_must_say_which_of_its_regions_edges_it_is() {
    let dir = crate::harness::tempdir();
    let config = Topology::demo(23).write(dir.path()).unwrap();
    for (address, reason) in [
        (
            None,
            "eu-west has 2 edges (127.23.2.1, 127.23.2.3): say which one this is with --address",
        ),
        (
            Some("127.23.1.1"),
            "127.23.1.1 is not an edge address of eu-west; its edges are 127.23.2.1, 127.23.2.3",
        ),
    ] {
        let mut command = crate::harness::meridian();
        command.args(["edge", "--region", "eu-west"]);
        if let Some(address) = address {
            command.args(["--address", address]);
        }
        let output = command.arg("--config").arg(&config).output().unwrap();
        assert!(!output.status.success(), "{address:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!("{}: region[1].edge_addresses: {reason}", config.display());
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(!crate::harness::tcp_listening(
            "127.23.2.1:8080".parse().unwrap()
        ));
    }
}
