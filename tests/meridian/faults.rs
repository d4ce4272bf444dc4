//! Faults: origins that hang or talk nonsense, and GeoDNS going away.

use crate::harness::{
    GeoDns, Received, Reply, ScriptedOrigin, Setup, Topology, bin, blocking, dns, ok,
};
use hickory_proto::rr::RecordType;
use std::time::{Duration, Instant};

/// An origin that answers after 5 s: later than any test waits.
fn hang(_: &Received) -> Reply {
    std::thread::sleep(Duration::from_secs(5));
    ok(&[], "too late")
}

/// The demo on `block` whose origins are never marked down by a health
/// check during a test (so each request meets them in order).
fn without_health_marking(block: u8) -> Topology {
    Topology::demo(block).health_down_after(100)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_hangs_times_out_then_fails_over() {
    let b = 100;
    let topology = without_health_marking(b).origin_read_timeout(Duration::from_millis(500));
    let _us =
        ScriptedOrigin::start(&format!("127.{b}.1.2:8000"), |_| ok(&[], "from us-east")).unwrap();
    let s = Setup::eu_west(&topology, hang);
    let started = Instant::now();
    let answer = s.get("/slow").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-meridian-origin"), "us-east");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_origins_get_no_more_than_the_total_timeout() {
    let b = 115;
    // Each read could wait 10 s, but the request as a whole gets 1.2 s.
    let topology = without_health_marking(b).origin_total_timeout(Duration::from_millis(1200));
    let us = ScriptedOrigin::start(&format!("127.{b}.1.2:8000"), hang).unwrap();
    let eu = Setup::eu_west(&topology, hang);
    let started = Instant::now();
    let answer = eu.get("/slow").await;
    let took = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(
        answer.cache_status().contains("detail=origin-timeout"),
        "{answer:?}"
    );
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    // The first origin had the whole budget; none was left for another.
    assert_eq!(eu.origin.count("GET", "/slow"), 1);
    assert_eq!(us.count("GET", "/slow"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_trickles_is_cut_off_by_the_total_timeout() {
    // One byte every 100 ms never trips the read timeout, but 100 bytes
    // take 10 s, far beyond the 1 s total.
    let topology = without_health_marking(116)
        .origin_read_timeout(Duration::from_millis(500))
        .origin_total_timeout(Duration::from_millis(1000));
    let s = Setup::eu_west(&topology, |_| Reply::Trickle {
        headers: vec![("cache-control", "max-age=60".to_owned())],
        length: 100,
        every: Duration::from_millis(100),
    });
    for attempt in 1..=2 {
        let started = Instant::now();
        let response = s.cdn.response("/trickle").await;
        assert_eq!(response.status(), 200);
        assert!(
            response.bytes().await.is_err(),
            "a cut-off body must not look complete"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        // Nothing was stored: the next request goes to the origin again.
        assert_eq!(s.origin.count("GET", "/trickle"), attempt);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_sends_garbage_gets_a_502() {
    let s = Setup::ad_hoc(101, &[], |_| {
        Reply::Raw(b"SSH-2.0-OpenSSH_9.6\r\nthis is not HTTP\r\n\r\n".to_vec())
    });
    let answer = s.get("/x").await;
    assert_eq!(answer.status, 502);
    assert!(answer.cache_status().contains("detail="), "{answer:?}");
    assert_eq!(s.origin.count("GET", "/x"), 1);
    // The edge is fine afterwards.
    assert_eq!(s.get("/_meridian/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_head_full_of_garbage_does_not_flood_the_log() {
    let mut s = Setup::ad_hoc(204, &[], |_| {
        let mut garbage = b"HTTP/1.1 200 OK\r\nX-Bad\x01Field: ".to_vec();
        garbage.extend(std::iter::repeat_n(b'g', 60_000));
        garbage.extend_from_slice(b"\r\n\r\n");
        Reply::Raw(garbage)
    });
    let long_path = format!("/{}", "p".repeat(8000));
    assert_eq!(s.get(&long_path).await.status, 502);
    // The failure is logged, once, and briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("request failed")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no failure logged: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines.extend(s.edge.process.new_lines());
    }
    for line in &lines {
        assert!(
            line.len() <= 2048,
            "a log line of {} bytes: {line:.300}",
            line.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn geodns_going_away_leaves_the_edges_serving() {
    let topology = Topology::demo(102);
    let s = Setup::eu_west(&topology, |_| {
        ok(&[("cache-control", "max-age=60")], "content")
    });
    let start_geodns = || blocking(|| GeoDns::start(bin(), &topology).unwrap());
    let geodns = start_geodns();
    assert_eq!(s.get("/a").await.status, 200);
    drop(geodns);
    // No GeoDNS: the edge neither knows nor cares.
    for _ in 0..5 {
        assert_eq!(s.get("/a").await.status, 200);
    }
    // Back: it answers at once, and its fresh health checks see the edge up.
    let geodns = start_geodns();
    let query = dns::ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
    let answer = blocking(|| dns::udp(geodns.dns(), &query)).unwrap();
    assert!(answer.addresses().contains(&topology.edge(2).ip()));
}
