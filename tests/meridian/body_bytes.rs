//! What an edge counts as served: `meridian_edge_response_body_bytes_total`
//! rises by exactly each response's body, whatever its path (a miss
//! streamed from the origin, a small hit copied, a large hit sent from
//! sealed pages, a range), and not at all for a HEAD. It is what the live
//! view's "bytes served" follows. Block 127.249.

use crate::harness::{Cdn, Reply, Setup, Topology, get_text, metric};
use std::time::{Duration, Instant};

const NAME: &str = "meridian_edge_response_body_bytes_total";

/// The edge's counter now.
async fn served(admin: &Cdn) -> u64 {
    let text = get_text(&admin.url("/metrics")).await;
    metric(&text, NAME).unwrap_or_else(|| panic!("no {NAME} in\n{text}"))
}

/// The counter once it reads `expected`, or what it reads after 5 s: the
/// edge counts a request when it is done, which may be just after its
/// client read the last byte.
async fn served_reaching(admin: &Cdn, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = served(admin).await;
        if now == expected || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_body_byte_sent_is_counted_once() {
    let topology = Topology::demo(249);
    let admin = Cdn::at(topology.edge_admin(2));
    let s = Setup::eu_west(&topology, |r| {
        let len = if r.path == "/large" {
            200 * 1024 + 7
        } else {
            5000
        };
        let cache = ("cache-control", "max-age=600".to_owned());
        Reply::Respond(200, vec![cache], vec![b'x'; len])
    });
    let mut expected = served(&admin).await;
    for (path, fields, len) in [
        // A miss (streamed from the origin), then its hit (copied).
        ("/small", &[][..], 5000),
        ("/small", &[][..], 5000),
        // A large miss, its hit from sealed pages, and a range of it.
        ("/large", &[][..], 200 * 1024 + 7),
        ("/large", &[][..], 200 * 1024 + 7),
        ("/large", &[("range", "bytes=100-1099")][..], 1000),
    ] {
        let answer = s.get_with(path, fields).await;
        assert_eq!(answer.body.len(), len, "{path} {fields:?}");
        expected += len as u64;
        assert_eq!(
            served_reaching(&admin, expected).await,
            expected,
            "after {path} {fields:?}"
        );
    }
    // A HEAD sends no body: nothing more, even a while later.
    let head = s
        .cdn
        .send(s.cdn.request(reqwest::Method::HEAD, "/large"))
        .await;
    assert_eq!(head.status, 200);
    let after_head = served(&admin).await;
    let get = s.get("/small").await;
    assert_eq!(get.body.len(), 5000);
    assert_eq!(
        served_reaching(&admin, after_head + 5000).await,
        expected + 5000,
        "the HEAD counted a body"
    );
}
