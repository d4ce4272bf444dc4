//! Faults: origins that hang or talk nonsense, and GeoDNS going away.

use crate::harness::{GeoDns, Topology, ad_hoc, bin, client_via, dns, edge};
use hickory_proto::rr::RecordType;
use kit::{Reply, ScriptedOrigin, ok};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_hangs_times_out_then_fails_over() {
    let b = 100;
    let _eu = ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), |_| {
        std::thread::sleep(Duration::from_secs(5));
        ok(&[], "too late")
    })
    .unwrap();
    let _us =
        ScriptedOrigin::start(&format!("127.{b}.1.2:8000"), |_| ok(&[], "from us-east")).unwrap();
    let topology = Topology::demo(b)
        .origin_read_timeout(Duration::from_millis(500))
        .health_down_after(100);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let started = Instant::now();
    let response = client_via(edge.addr)
        .get("http://cdn.meridian.test:8080/slow")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-meridian-origin"], "us-east");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_origins_get_no_more_than_the_total_timeout() {
    let b = 115;
    let hang = |_: &kit::Received| {
        std::thread::sleep(Duration::from_secs(5));
        ok(&[], "too late")
    };
    let eu = ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), hang).unwrap();
    let us = ScriptedOrigin::start(&format!("127.{b}.1.2:8000"), hang).unwrap();
    // Each read could wait 10 s, but the request as a whole gets 1.2 s.
    let topology = Topology::demo(b)
        .origin_total_timeout(Duration::from_millis(1200))
        .health_down_after(100);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let started = Instant::now();
    let response = client_via(edge.addr)
        .get("http://cdn.meridian.test:8080/slow")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("detail=origin-timeout"),
        "{:?}",
        response.headers()
    );
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    // The first origin had the whole budget; none was left for another.
    assert_eq!(eu.count("GET", "/slow"), 1);
    assert_eq!(us.count("GET", "/slow"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_trickles_is_cut_off_by_the_total_timeout() {
    let b = 116;
    // One byte every 100 ms never trips the read timeout, but 100 bytes
    // take 10 s, far beyond the 1 s total.
    let origin = ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), |_| Reply::Trickle {
        headers: vec![("cache-control", "max-age=60".to_owned())],
        length: 100,
        every: Duration::from_millis(100),
    })
    .unwrap();
    let topology = Topology::demo(b)
        .origin_read_timeout(Duration::from_millis(500))
        .origin_total_timeout(Duration::from_millis(1000))
        .health_down_after(100);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let client = client_via(edge.addr);
    for attempt in 1..=2 {
        let started = Instant::now();
        let response = client
            .get("http://cdn.meridian.test:8080/trickle")
            .send()
            .await
            .unwrap();
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
        assert_eq!(origin.count("GET", "/trickle"), attempt);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_sends_garbage_gets_a_502() {
    let b = 101;
    let origin = ScriptedOrigin::start(&format!("127.{b}.0.2:8000"), |_| {
        Reply::Raw(b"SSH-2.0-OpenSSH_9.6\r\nthis is not HTTP\r\n\r\n".to_vec())
    })
    .unwrap();
    let edge = tokio::task::block_in_place(|| ad_hoc(b, &[]));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{}/x", edge.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("detail=")
    );
    assert_eq!(origin.count("GET", "/x"), 1);
    // The edge is fine afterwards.
    let health = client
        .get(format!("http://{}/_meridian/health", edge.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_head_full_of_garbage_does_not_flood_the_log() {
    let b = 204;
    let _origin = ScriptedOrigin::start(&format!("127.{b}.0.2:8000"), |_| {
        let mut garbage = b"HTTP/1.1 200 OK\r\nX-Bad\x01Field: ".to_vec();
        garbage.extend(std::iter::repeat_n(b'g', 60_000));
        garbage.extend_from_slice(b"\r\n\r\n");
        Reply::Raw(garbage)
    })
    .unwrap();
    let mut edge = tokio::task::block_in_place(|| ad_hoc(b, &[]));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let long_path = format!("/{}", "p".repeat(8000));
    let response = client
        .get(format!("http://{}{long_path}", edge.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    // The failure is logged, once, and briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("request failed")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no failure logged: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines.extend(edge.process.new_lines());
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
    let b = 102;
    let _origin = ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), |_| {
        ok(&[("cache-control", "max-age=60")], "content")
    })
    .unwrap();
    let topology = Topology::demo(b);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let client = client_via(edge.addr);
    let geodns = tokio::task::block_in_place(|| GeoDns::start(bin(), &topology)).unwrap();
    assert_eq!(
        client
            .get("http://cdn.meridian.test:8080/a")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    drop(geodns);
    // No GeoDNS: the edge neither knows nor cares.
    for _ in 0..5 {
        assert_eq!(
            client
                .get("http://cdn.meridian.test:8080/a")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Back: it answers at once, and its fresh health checks see the edge up.
    let geodns = tokio::task::block_in_place(|| GeoDns::start(bin(), &topology)).unwrap();
    let query = dns::ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
    let answer = tokio::task::block_in_place(|| dns::udp(geodns.dns(), &query)).unwrap();
    assert_eq!(answer.addresses(), [topology.edge(2).ip()]);
}
