//! Purging: by URL across every edge with `meridian purge`, by tag, soft,
//! all; only with the token, only on the admin listener.

use crate::harness::{Answer, Cdn, Reply, Setup, Topology, blocking, ok, up};
use std::net::SocketAddr;

pub(crate) const TOKEN: &str = "meridian-demo-purge-token";

/// `POST /purge` with `body` to the admin listener of `admin`, with
/// `token` as its bearer token if given.
pub(crate) async fn purge(admin: &Cdn, body: &'static str, token: Option<&str>) -> Answer {
    let mut request = admin.request(reqwest::Method::POST, "/purge");
    request = request
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    admin.send(request).await
}

#[tokio::test(flavor = "multi_thread")]
async fn meridian_purge_makes_the_next_fetch_a_miss_on_every_edge() {
    let up = up(53);
    let path = "/assets/100k.bin";
    let edges: Vec<SocketAddr> = (1..=3).flat_map(|region| up.edges(region)).collect();
    assert_eq!(edges.len(), 6, "two edges per region");
    for edge in &edges {
        let cdn = Cdn::via(*edge);
        cdn.get(path).await;
        assert!(cdn.get(path).await.is_hit(), "{edge}");
    }
    let url = "http://cdn.meridian.test:8080/assets/100k.bin";
    let stdout = blocking(|| up.command(&["purge", url])).unwrap().succeeds();
    assert_eq!(stdout.lines().count(), 6, "one line per edge: {stdout}");
    for line in stdout.lines() {
        assert!(line.ends_with("purged 1"), "{stdout}");
    }
    // `only-if-cached` asks each edge for what it holds, and nothing else:
    // a request it cannot answer from its cache gets 504 (RFC 9111), and
    // no fill, from a peer or an origin, puts the object back meanwhile.
    for edge in &edges {
        let answer = Cdn::via(*edge)
            .get_with(path, &[("cache-control", "only-if-cached")])
            .await;
        assert_eq!(answer.status, 504, "edge {edge} still had it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_need_the_token_and_the_admin_listener() {
    let topology = Topology::demo(54);
    let s = Setup::eu_west(&topology, |r| {
        if r.headers.get("if-none-match").map(String::as_str) == Some("\"e\"") {
            return Reply::Respond(
                304,
                vec![
                    ("etag", "\"e\"".into()),
                    ("cache-control", "max-age=60".into()),
                ],
                vec![],
            );
        }
        // `/red/1` is tagged `red`, `/blue/1` `blue`.
        let tag = r.path.split('/').nth(1).unwrap_or_default();
        ok(
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"e\""),
                ("surrogate-key", tag),
            ],
            &format!("object {}", r.path),
        )
    });
    let admin = Cdn::at(topology.edge_admin(2));
    let all = r#"{"all": true}"#;
    for path in ["/red/1", "/red/2", "/blue/1"] {
        s.get(path).await;
    }
    let get = |path: &'static str| s.get(path);

    // No token, a wrong token: refused, nothing purged.
    assert_eq!(purge(&admin, all, None).await.status, 401);
    let wrong = Some("meridian-demo-purge-tokeX");
    assert_eq!(purge(&admin, all, wrong).await.status, 401);
    assert!(get("/red/1").await.is_hit());
    // PURGE on the public port: refused, and never forwarded.
    let method = reqwest::Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(
        s.cdn.send(s.cdn.request(method, "/red/1")).await.status,
        405
    );
    assert!(s.origin.received().iter().all(|r| r.method != "PURGE"));
    assert!(get("/red/1").await.is_hit());

    // By tag: exactly the tagged objects.
    let answer = purge(&admin, r#"{"tags": ["red"]}"#, Some(TOKEN)).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, r#"{"purged":2}"#)
    );
    assert!(!get("/red/1").await.is_hit());
    assert!(!get("/red/2").await.is_hit());
    assert!(get("/blue/1").await.is_hit());

    // Soft: kept, but revalidated on next use.
    let revalidations = || {
        let received = s.origin.received();
        received
            .iter()
            .filter(|r| r.headers.contains_key("if-none-match"))
            .count()
    };
    let before = revalidations();
    let body = r#"{"urls": ["http://cdn.meridian.test/blue/1"], "soft": true}"#;
    assert_eq!(purge(&admin, body, Some(TOKEN)).await.status, 200);
    assert_eq!(s.get("/blue/1").await.status, 200);
    assert_eq!(
        revalidations(),
        before + 1,
        "a soft purge revalidates instead of refetching"
    );

    // Everything.
    assert_eq!(purge(&admin, all, Some(TOKEN)).await.status, 200);
    assert!(!get("/blue/1").await.is_hit());
    // Malformed requests are refused with a reason.
    let malformed = purge(&admin, r#"{"urls": ["not a url"]}"#, Some(TOKEN)).await;
    assert_eq!(malformed.status, 400);
}
