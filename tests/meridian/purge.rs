//! Purging: by URL across every edge with `meridian purge`, by tag, soft,
//! all; only with the token, only on the admin listener.

use crate::harness::{Topology, client_via, edge, up};
use kit::{Reply, ScriptedOrigin, ok};
use std::net::SocketAddr;

const TOKEN: &str = "meridian-demo-purge-token";

fn is_hit(response: &reqwest::Response) -> bool {
    response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("meridian; hit")
}

#[tokio::test(flavor = "multi_thread")]
async fn meridian_purge_makes_the_next_fetch_a_miss_on_every_edge() {
    let up = tokio::task::block_in_place(|| up(53));
    let url = "http://cdn.meridian.test:8080/assets/100k.bin";
    for region in 1..=3 {
        let client = client_via(up.edge(region));
        client.get(url).send().await.unwrap();
        assert!(is_hit(&client.get(url).send().await.unwrap()));
    }
    let output = tokio::task::block_in_place(|| up.command(&["purge", url])).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for region in ["us-east", "eu-west", "ap-southeast"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(region))
            .unwrap_or_default();
        assert!(line.ends_with("purged 1"), "{stdout}");
    }
    for region in 1..=3 {
        let response = client_via(up.edge(region)).get(url).send().await.unwrap();
        assert!(!is_hit(&response), "edge {region} still had it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_need_the_token_and_the_admin_listener() {
    let b = 54;
    let origin = ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), |r| {
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
        let tag = if r.path.starts_with("/red") {
            "red"
        } else {
            "blue"
        };
        ok(
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"e\""),
                ("surrogate-key", tag),
            ],
            &format!("object {}", r.path),
        )
    })
    .unwrap();
    let topology = Topology::demo(b);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let client = client_via(edge.addr);
    let admin: SocketAddr = topology.edge_admin(2);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |path: &str| format!("http://cdn.meridian.test:8080{path}");
    for path in ["/red/1", "/red/2", "/blue/1"] {
        client.get(url(path)).send().await.unwrap();
    }
    let purge = |body: &'static str, token: Option<&'static str>| {
        let mut request = http
            .post(format!("http://{admin}/purge"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // No token, a wrong token: refused, nothing purged.
    assert_eq!(purge(r#"{"all": true}"#, None).await.unwrap().status(), 401);
    assert_eq!(
        purge(r#"{"all": true}"#, Some("meridian-demo-purge-tokeX"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(is_hit(&client.get(url("/red/1")).send().await.unwrap()));
    // PURGE on the public port: refused, and never forwarded.
    let method = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let refused = client.request(method, url("/red/1")).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    assert!(origin.received().iter().all(|r| r.method != "PURGE"));
    assert!(is_hit(&client.get(url("/red/1")).send().await.unwrap()));

    // By tag: exactly the tagged objects.
    let response = purge(r#"{"tags": ["red"]}"#, Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"purged":2}"#);
    assert!(!is_hit(&client.get(url("/red/1")).send().await.unwrap()));
    assert!(!is_hit(&client.get(url("/red/2")).send().await.unwrap()));
    assert!(is_hit(&client.get(url("/blue/1")).send().await.unwrap()));

    // Soft: kept, but revalidated on next use.
    let before = origin
        .received()
        .iter()
        .filter(|r| r.headers.contains_key("if-none-match"))
        .count();
    let body = r#"{"urls": ["http://cdn.meridian.test/blue/1"], "soft": true}"#;
    assert_eq!(purge(body, Some(TOKEN)).await.unwrap().status(), 200);
    let response = client.get(url("/blue/1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let after = origin
        .received()
        .iter()
        .filter(|r| r.headers.contains_key("if-none-match"))
        .count();
    assert_eq!(
        after,
        before + 1,
        "a soft purge revalidates instead of refetching"
    );

    // Everything.
    let response = purge(r#"{"all": true}"#, Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!is_hit(&client.get(url("/blue/1")).send().await.unwrap()));
    // Malformed requests are refused with a reason.
    let response = purge(r#"{"urls": ["not a url"]}"#, Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
