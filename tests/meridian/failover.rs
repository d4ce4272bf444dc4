//! Edge → origin failover: own region first, then the nearest others;
//! idempotent requests move on, a POST is never sent twice.

use crate::harness::{Cdn, Reply, ScriptedOrigin, Setup, Topology, blocking, dns, edge, up};
use std::time::Duration;

/// A reply of `status` with `body`.
fn respond(status: u16, body: &str) -> Reply {
    Reply::Respond(status, vec![], body.as_bytes().to_vec())
}

/// A topology on `block` whose failed origins are tried first again at
/// once, so each request starts at the edge's own region, and whose active
/// health checks never mark an origin down during a test (a slow probe on
/// a loaded machine would otherwise reorder the origins): these tests are
/// about what happens to one request.
fn without_cool_down(block: u8) -> Topology {
    Topology::demo(block)
        .origin_suspect(Duration::from_millis(1))
        .health_down_after(100)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_is_never_replayed_once_its_body_went_out() {
    let b = 50;
    let us = ScriptedOrigin::start(&format!("127.{b}.1.2:8000"), |_| {
        Reply::Respond(
            200,
            vec![("cache-control", "no-store".into())],
            b"from us-east".to_vec(),
        )
    })
    .unwrap();
    let ap =
        ScriptedOrigin::start(&format!("127.{b}.3.2:8000"), |_| respond(200, "from ap")).unwrap();
    let eu = Setup::eu_west(&without_cool_down(b), |r| {
        match (r.method.as_str(), r.path.as_str()) {
            // Read the whole request, then die without answering.
            ("POST", "/order") => Reply::Close,
            ("POST", "/pay") | ("GET", "/item") => respond(503, "busy"),
            _ => respond(404, ""),
        }
    });

    // The origin died after reading the POST: the edge must not send it again.
    let answer = eu.cdn.post("/order", "one order").await;
    assert_eq!(answer.status, 502);
    assert!(
        answer.cache_status().contains("detail="),
        "says why: {answer:?}"
    );
    assert_eq!(eu.origin.count("POST", "/order"), 1);
    assert_eq!(
        us.count("POST", "/order") + ap.count("POST", "/order"),
        0,
        "the POST was replayed"
    );

    // A 5xx to a POST is passed through, not retried elsewhere.
    assert_eq!(eu.cdn.post("/pay", "x").await.status, 503);
    assert_eq!(eu.origin.count("POST", "/pay"), 1);
    assert_eq!(us.count("POST", "/pay"), 0);

    // The 503 marked eu-west's origin suspect, for the 1 ms (at most 2 ms,
    // counted in whole ms) this topology allows: past that, a GET tries
    // it first again. Without the wait, a fast enough client skipped it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The same failure for a GET moves on to the next-nearest origin.
    let answer = eu.get("/item").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-origin"), "us-east");
    assert_eq!(answer.text(), "from us-east");
    let counts = [eu.origin.count("GET", "/item"), us.count("GET", "/item")];
    assert_eq!((counts, ap.count("GET", "/item")), ([1, 1], 0));
    // X-Forwarded-For names the client once, on every attempt.
    let received = us.received();
    let item = received.iter().find(|r| r.path == "/item").unwrap();
    assert_eq!(item.headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_moves_on_when_the_origin_refuses_connections() {
    let b = 51;
    // No eu-west origin at all: connections are refused, nothing is sent.
    let us =
        ScriptedOrigin::start(&format!("127.{b}.1.2:8000"), |_| respond(201, "created")).unwrap();
    let edge = edge(&without_cool_down(b), 2);
    let answer = Cdn::via(edge.addr).post("/order", "one order").await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.header("x-meridian-origin"), "us-east");
    assert_eq!(us.count("POST", "/order"), 1);
    assert_eq!(us.received()[0].body, b"one order");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_origin_fails_the_edge_says_why() {
    // No origins anywhere.
    let edge = edge(&without_cool_down(52), 2);
    let answer = Cdn::via(edge.addr).get("/x").await;
    assert_eq!(answer.status, 502);
    let status = answer.cache_status();
    assert!(status.contains("detail=origin-unreachable"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_outage_behind_a_live_edge_fails_no_request() {
    let up = up(49);
    let cdn = Cdn::via(up.edge(2));
    let load = tokio::spawn(async move {
        let mut regions = Vec::new();
        for _ in 0..400 {
            let answer = cdn.get("/api/whoami").await;
            assert_eq!(
                answer.status, 200,
                "a request failed during the origin outage"
            );
            regions.push(answer.header("x-meridian-origin").to_owned());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        regions
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocking(|| up.command(&["outage", "eu-west", "--component", "origin"]))
        .unwrap()
        .succeeds();
    let regions = load.await.unwrap();
    assert_eq!(regions.first().map(String::as_str), Some("eu-west"));
    assert_eq!(
        regions.last().map(String::as_str),
        Some("us-east"),
        "failed over to the nearest other region"
    );
    assert!(
        !regions.iter().any(|r| r == "ap-southeast"),
        "us-east is nearer than ap-southeast"
    );

    // GeoDNS still sends GB clients to eu-west: its edge is fine.
    let query = dns::ecs(
        "cdn.meridian.test.",
        hickory_proto::rr::RecordType::A,
        "81.2.69.0/24",
    );
    let answer = dns::udp(up.dns(), &query).unwrap();
    assert!(answer.addresses().contains(&up.edge(2).ip()));

    // The edge's own view of its origins shows in `meridian status`.
    let status = blocking(|| up.status_json()).unwrap();
    let origins = &status["regions"][1]["edges"][0]["origins"];
    assert_eq!(origins[0]["region"], "eu-west");
    assert!(
        origins[0]["suspect"] == true || origins[0]["up"] == false,
        "{origins}"
    );
}
