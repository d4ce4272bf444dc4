//! The two ways a hit is answered — the fast path straight from storage,
//! and Pingora's cache — give the same answer: the same requests through an
//! edge with the fast path and one without, compared field by field.

use crate::harness::{Received, Reply, ScriptedOrigin, Topology, edge, metric, raw};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What both origins answer: a spread of what gets stored.
fn script(r: &Received) -> Reply {
    let cacheable = |extra: &[(&'static str, &str)], body: Vec<u8>| {
        let mut headers = vec![
            ("cache-control", "public, max-age=600".to_owned()),
            ("etag", "\"v1\"".to_owned()),
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT".to_owned()),
            ("content-type", "application/octet-stream".to_owned()),
        ];
        headers.extend(extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
        Reply::Respond(200, headers, body)
    };
    match r.path.as_str() {
        "/small" => cacheable(&[], vec![b's'; 1024]),
        "/large" => cacheable(&[], (0..200_000u32).map(|i| (i % 251) as u8).collect()),
        "/empty" => cacheable(&[], Vec::new()),
        "/tagged" => cacheable(
            &[
                ("surrogate-key", "a b"),
                ("x-custom", "kept"),
                ("content-language", "en"),
            ],
            b"tagged".to_vec(),
        ),
        "/moved" => Reply::Respond(
            301,
            vec![
                ("location", "/small".to_owned()),
                ("cache-control", "max-age=600".to_owned()),
            ],
            Vec::new(),
        ),
        _ => Reply::Respond(
            404,
            vec![("cache-control", "max-age=600".to_owned())],
            b"none".to_vec(),
        ),
    }
}

/// A response as compared: status, fields (minus those that tell the
/// time), body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: String,
    fields: BTreeMap<String, String>,
    ttl: Option<i64>,
    body: Vec<u8>,
}

fn exchange(edge: SocketAddr, method: &str, path: &str) -> Answer {
    let request = raw::request(method, path, "cdn.meridian.test", &[], "");
    let response = raw::exchange(edge, request.as_bytes(), raw::QUIET).unwrap();
    assert!(response.closed, "the whole response: {response:?}");
    let mut fields = BTreeMap::new();
    let mut ttl = None;
    for (name, value) in response.fields() {
        let value = value.to_owned();
        match name.as_str() {
            // When the answer was made, and how old the object was then.
            "date" | "age" => {}
            // Its remaining freshness, in whole seconds, may tick between
            // the two requests; compared within a second below.
            "cache-status" => {
                let (kind, rest) = value.rsplit_once("; ttl=").unwrap_or((&value, ""));
                ttl = rest.parse().ok();
                fields.insert(name, kind.to_owned());
            }
            _ => {
                assert!(fields.insert(name.clone(), value).is_none(), "{name} twice");
            }
        }
    }
    Answer {
        status: response.status_line().to_owned(),
        fields,
        ttl,
        body: response.body,
    }
}

fn fast_path_hits(block: u8) -> u64 {
    let admin = SocketAddr::from(([127, block, 2, 1], 9080));
    let metrics = raw::get(admin, "/metrics", &admin.to_string())
        .unwrap()
        .text();
    let name = "meridian_edge_fast_path_hits_total";
    metric(&metrics, name).unwrap_or_else(|| panic!("no fast-path counter in {metrics}"))
}

#[test]
fn the_fast_path_and_the_full_path_answer_the_same() {
    let (fast, full) = (205, 206);
    let _origins =
        [fast, full].map(|b| ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), script).unwrap());
    let fast_edge = edge(&Topology::demo(fast), 2);
    let full_edge = edge(&Topology::demo(full).plain_hit_fast_path(false), 2);
    let paths = [
        "/small", "/large", "/empty", "/tagged", "/moved", "/missing",
    ];
    for path in paths {
        // Stored by both.
        exchange(fast_edge.addr, "GET", path);
        exchange(full_edge.addr, "GET", path);
    }
    for path in paths {
        for method in ["GET", "HEAD"] {
            let a = exchange(fast_edge.addr, method, path);
            let b = exchange(full_edge.addr, method, path);
            assert!(
                a.fields["cache-status"].starts_with("meridian; hit"),
                "{method} {path}: {a:?}"
            );
            assert_eq!(a.status, b.status, "{method} {path}");
            assert_eq!(a.fields, b.fields, "{method} {path}");
            assert_eq!(a.body, b.body, "{method} {path}");
            let (ta, tb) = (a.ttl.unwrap(), b.ttl.unwrap());
            assert!((ta - tb).abs() <= 1, "{method} {path}: ttl {ta} vs {tb}");
        }
    }
    // Each edge took the path it was told to.
    assert_eq!(fast_path_hits(fast), 12);
    assert_eq!(fast_path_hits(full), 0);
}
