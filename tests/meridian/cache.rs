//! The edge cache against RFC 9111, one behaviour per test, each through a
//! real edge process in front of a scripted origin.

use crate::harness::{Received, Reply, Setup, Topology, blocking, get_text, metric, ok, raw};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An ad-hoc edge on 127.`block`.0.1:8080 in front of a scripted origin
/// on 127.`block`.0.2:8000.
fn setup(block: u8, script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Setup {
    Setup::ad_hoc(block, &[], script)
}

/// GET `path` for the range `spec`.
async fn range(s: &Setup, path: &str, spec: &str) -> crate::harness::Answer {
    s.get_with(path, &[("range", spec)]).await
}

/// Whether the second of two GETs of each of `paths` is a hit.
async fn second_is_hit(s: &Setup, paths: &[&str]) -> Vec<bool> {
    let mut hits = Vec::new();
    for path in paths {
        s.get(path).await;
        hits.push(s.get(path).await.is_hit());
    }
    hits
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_responses_are_hits_and_carry_age() {
    let s = setup(70, |_| ok(&[("cache-control", "max-age=60")], "body"));
    let first = s.get("/a").await;
    // Freshness left when the head went out: 60 s, less however long the
    // edge took (a loaded machine can take over half a second, which
    // rounds to 59).
    let status = first.cache_status();
    let ttl = status.strip_prefix("meridian; fwd=miss; stored; ttl=");
    let ttl: u32 = ttl
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!((55..=60).contains(&ttl), "{status}");
    let second = s.get("/a").await;
    assert_eq!((second.status, second.text().as_str()), (200, "body"));
    assert!(second.is_hit(), "{}", second.cache_status());
    assert!(second.headers.contains_key("age"));
    assert_eq!(
        second.header("cache-control"),
        "max-age=60",
        "the origin's Cache-Control passes unchanged"
    );
    assert_eq!(s.origin.count("GET", "/a"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_age_it_arrived_with_counts_against_its_freshness() {
    let s = setup(71, |_| {
        ok(&[("cache-control", "max-age=100"), ("age", "98")], "old")
    });
    s.get("/a").await;
    let hit = s.get("/a").await;
    assert!(hit.is_hit());
    let age: u64 = hit.header("age").parse().unwrap();
    assert!(
        age >= 98,
        "Age is the object's age, not time in this cache: {age}"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = s.get("/a").await;
    assert!(
        !later.is_hit(),
        "stale after 100 - 98 s: {}",
        later.cache_status()
    );
    assert_eq!(s.origin.count("GET", "/a"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_must_not_be_stored_is_not() {
    let s = setup(72, |r| match r.path.as_str() {
        "/no-store" => ok(&[("cache-control", "no-store")], "x"),
        "/private" => ok(&[("cache-control", "private, max-age=60")], "x"),
        "/cookie" => ok(
            &[("cache-control", "max-age=60"), ("set-cookie", "session=1")],
            "x",
        ),
        "/no-freshness" => ok(&[("etag", "\"1\"")], "x"),
        "/auth" => ok(&[("cache-control", "max-age=60")], "x"),
        "/auth-public" => ok(&[("cache-control", "public, max-age=60")], "x"),
        _ => Reply::Respond(404, vec![], vec![]),
    });
    let paths = ["/no-store", "/private", "/cookie", "/no-freshness"];
    assert_eq!(second_is_hit(&s, &paths).await, [false; 4], "{paths:?}");
    for path in paths {
        assert_eq!(s.origin.count("GET", path), 2, "{path}");
    }
    let auth = [("authorization", "Bearer secret")];
    s.get_with("/auth", &auth).await;
    let second = s.get_with("/auth", &auth).await;
    assert!(
        !second.is_hit(),
        "a response to an Authorization request was stored"
    );
    s.get_with("/auth-public", &auth).await;
    let second = s.get_with("/auth-public", &auth).await;
    assert!(second.is_hit(), "public allows storing it");
}

#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_takes_precedence_for_the_edge() {
    let s = setup(73, |r| match r.path.as_str() {
        "/cdn-longer" => ok(
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
            "x",
        ),
        _ => ok(
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store"),
            ],
            "x",
        ),
    });
    s.get("/cdn-longer").await;
    let second = s.get("/cdn-longer").await;
    assert!(second.is_hit());
    assert_eq!(
        second.header("cache-control"),
        "no-store",
        "downstream caches still get Cache-Control"
    );
    assert_eq!(second_is_hit(&s, &["/cdn-no-store"]).await, [false]);
}

/// An ad-hoc edge on `block` in front of an origin that answers
/// `If-None-Match: "v1"` with 304, and how many times it did. Full
/// responses carry `cache_control`, 304s `refreshed_cache_control`.
fn revalidating(
    block: u8,
    cache_control: &'static str,
    refreshed_cache_control: &'static str,
) -> (Setup, Arc<AtomicUsize>) {
    let revalidations = Arc::new(AtomicUsize::new(0));
    let counted = revalidations.clone();
    let s = setup(block, move |r| {
        if r.headers.get("if-none-match").map(String::as_str) == Some("\"v1\"") {
            counted.fetch_add(1, Ordering::SeqCst);
            Reply::Respond(
                304,
                vec![
                    ("etag", "\"v1\"".into()),
                    ("cache-control", refreshed_cache_control.into()),
                    ("x-refreshed", "yes".into()),
                ],
                vec![],
            )
        } else {
            ok(
                &[("cache-control", cache_control), ("etag", "\"v1\"")],
                "version one",
            )
        }
    });
    (s, revalidations)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_response_is_revalidated_and_its_headers_refreshed() {
    // The 304 extends the freshness: `Date` has whole seconds, so a refreshed
    // `max-age=1` could already be stale when the next request arrives.
    let (s, revalidations) = revalidating(74, "max-age=1", "max-age=60");
    s.get("/r").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let revalidated = s.get("/r").await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.body, b"version one");
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
    let status_header = revalidated.cache_status();
    assert!(
        status_header.contains("fwd=stale") && status_header.contains("fwd-status=304"),
        "{status_header}"
    );
    let hit = s.get("/r").await;
    assert!(hit.is_hit());
    assert_eq!(
        hit.header("x-refreshed"),
        "yes",
        "stored headers are updated from the 304"
    );
    assert_eq!(hit.header("cache-control"), "max-age=60");
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cache_is_stored_but_revalidated_every_time() {
    let no_cache = "no-cache, max-age=60";
    let (s, revalidations) = revalidating(75, no_cache, no_cache);
    s.get("/n").await;
    for _ in 0..3 {
        let again = s.get("/n").await;
        assert_eq!((again.status, again.text().as_str()), (200, "version one"));
    }
    assert_eq!(revalidations.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_conditionals_and_head_are_answered_from_cache() {
    let s = setup(76, |_| {
        ok(
            &[("cache-control", "max-age=60"), ("etag", "\"e\"")],
            "0123456789",
        )
    });
    s.get("/c").await;
    let conditional = s.get_with("/c", &[("if-none-match", "\"e\"")]).await;
    assert_eq!(conditional.status, 304);
    assert!(conditional.body.is_empty());
    assert!(conditional.is_hit());
    let head = s.cdn.send(s.cdn.request(reqwest::Method::HEAD, "/c")).await;
    assert_eq!(head.status, 200);
    assert!(head.is_hit());
    assert_eq!(head.header("content-length"), "10");
    assert_eq!(s.origin.count("GET", "/c"), 1);
    assert_eq!(s.origin.count("HEAD", "/c"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_miss_fetches_and_stores_the_get() {
    let s = setup(77, |_| ok(&[("cache-control", "max-age=60")], "full body"));
    let head = s.cdn.send(s.cdn.request(reqwest::Method::HEAD, "/h")).await;
    assert_eq!(head.status, 200);
    let hit = s.get("/h").await;
    assert!(hit.is_hit());
    assert_eq!(hit.body, b"full body");
    assert_eq!(
        s.origin.count("GET", "/h"),
        1,
        "the edge asked for the whole object"
    );
}

/// A HEAD miss is answered as soon as the origin's head arrives, while the
/// edge still stores the body it fetched with a GET. The connection the
/// client got that answer on must then either serve its next request or
/// say `Connection: close` first: a keep-alive connection closed under the
/// client's next request is a failed request (seen as a flaky failure of
/// the test above when the origin's body came late).
#[test]
fn a_head_miss_whose_body_is_still_coming_never_breaks_the_next_request() {
    use std::io::{Read, Write};
    let s = setup(140, |_| Reply::Trickle {
        headers: vec![("cache-control", "max-age=60".to_owned())],
        length: 10,
        every: Duration::from_millis(40),
    });
    let mut connection = std::net::TcpStream::connect(s.edge.addr).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!("HEAD /slow HTTP/1.1\r\nHost: {}\r\n\r\n", s.edge.addr);
    connection.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        assert_eq!(
            connection.read(&mut byte).unwrap(),
            1,
            "no answer to the HEAD"
        );
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    if answer.contains("connection: close") {
        return;
    }
    let get = format!(
        "GET /slow HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.edge.addr
    );
    connection.write_all(get.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = connection.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("xxxxxxxxxx"),
        "the HEAD's answer said keep-alive, and the next request got {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_directives_are_honoured() {
    let (s, revalidations) = revalidating(78, "max-age=60", "max-age=60");
    let only_if_cached = [("cache-control", "only-if-cached")];
    // only-if-cached on a cold object: 504, and the origin never asked.
    let cold = s.get_with("/d", &only_if_cached).await;
    assert_eq!(cold.status, 504);
    assert!(cold.cache_status().contains("only-if-cached"));
    assert_eq!(s.origin.count("GET", "/d"), 0);
    s.get("/d").await;
    let cached = s.get_with("/d", &only_if_cached).await;
    assert_eq!(cached.status, 200);
    assert!(cached.is_hit());
    // no-cache: a fresh stored response is revalidated first.
    let forced = s.get_with("/d", &[("cache-control", "no-cache")]).await;
    assert!(
        forced.cache_status().contains("fwd=request"),
        "{}",
        forced.cache_status()
    );
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
    // Pragma: no-cache from HTTP/1.0 clients too; max-age=0: the client
    // wants nothing older than now; min-fresh beyond the remaining
    // freshness.
    for (n, field) in [
        ("pragma", "no-cache"),
        ("cache-control", "max-age=0"),
        ("cache-control", "min-fresh=3600"),
    ]
    .iter()
    .enumerate()
    {
        s.get_with("/d", &[*field]).await;
        assert_eq!(revalidations.load(Ordering::SeqCst), n + 2, "{field:?}");
    }
    // An ordinary request is a hit again.
    assert!(s.get("/d").await.is_hit());
    assert_eq!(revalidations.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_stale_serves_a_stale_response() {
    let s = setup(79, |_| ok(&[("cache-control", "max-age=1")], "x"));
    s.get("/m").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = s.get_with("/m", &[("cache-control", "max-stale=60")]).await;
    assert!(stale.is_hit(), "{}", stale.cache_status());
    assert_eq!(s.origin.count("GET", "/m"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_stores_one_variant_per_normalized_accept_encoding() {
    let s = setup(80, |r| {
        let encoding = r
            .headers
            .get("accept-encoding")
            .cloned()
            .unwrap_or_default();
        ok(
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
            &format!("for {encoding}"),
        )
    });
    let chrome = "gzip, deflate, br, zstd";
    // (Accept-Encoding sent, a hit, the body); the first one tells the
    // origin got the normalized value.
    for (encoding, hit, body) in [
        (Some(chrome), false, "for br"),
        // Equivalent encodings share the variant.
        (Some("gzip, deflate, br"), true, "for br"),
        (Some("gzip"), false, "for gzip"),
        (None, false, "for identity"),
        (Some(chrome), true, "for br"),
    ] {
        let fields: Vec<_> = encoding
            .map(|e| ("accept-encoding", e))
            .into_iter()
            .collect();
        let answer = s.get_with("/v", &fields).await;
        assert_eq!(
            (answer.is_hit(), answer.text().as_str()),
            (hit, body),
            "{encoding:?}"
        );
    }
    assert_eq!(s.origin.count("GET", "/v"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_are_served_from_the_cached_object() {
    let s = setup(81, |_| {
        ok(&[("cache-control", "max-age=60")], "0123456789abcdefghij")
    });
    let first = range(&s, "/range", "bytes=2-5").await;
    assert_eq!(first.status, 206, "a range miss still answers the range");
    assert_eq!(first.body, b"2345");
    assert_eq!(first.header("content-range"), "bytes 2-5/20");
    let suffix = range(&s, "/range", "bytes=-3").await;
    assert_eq!((suffix.status, suffix.text().as_str()), (206, "hij"));
    assert!(suffix.is_hit());
    let two = range(&s, "/range", "bytes=0-1,10-11").await;
    assert_eq!(two.status, 206);
    let content_type = two.header("content-type");
    assert!(
        content_type.starts_with("multipart/byteranges"),
        "{content_type}"
    );
    let text = two.text();
    assert!(
        text.contains("01") && text.contains("ab") && text.contains("bytes 10-11/20"),
        "{text}"
    );
    assert_eq!(range(&s, "/range", "bytes=50-60").await.status, 416);
    assert!(
        s.origin
            .received()
            .iter()
            .all(|r| !r.headers.contains_key("range")),
        "the origin never saw a Range"
    );
    assert_eq!(s.origin.count("GET", "/range"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_write_invalidates_what_it_changed() {
    let s = setup(82, |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/items") => Reply::Respond(
            201,
            vec![("location", "/items/7".into())],
            b"created".to_vec(),
        ),
        ("PUT", _) => ok(&[], "updated"),
        _ => ok(
            &[("cache-control", "max-age=60")],
            &format!("item at {}", r.path),
        ),
    });
    let paths = ["/items", "/items/7", "/items/8"];
    assert_eq!(second_is_hit(&s, &paths).await, [true; 3]);
    assert_eq!(s.cdn.post("/items", "new").await.status, 201);
    assert!(
        !s.get("/items").await.is_hit(),
        "the POSTed URL is invalidated"
    );
    assert!(
        !s.get("/items/7").await.is_hit(),
        "its Location is invalidated"
    );
    assert!(s.get("/items/8").await.is_hit(), "other URLs are not");
    let put = s
        .cdn
        .request(reqwest::Method::PUT, "/items/8")
        .body("payload");
    assert_eq!(s.cdn.send(put).await.status, 200);
    assert!(!s.get("/items/8").await.is_hit());
    let received = s.origin.received();
    let put = received.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.body, b"payload", "request bodies pass through");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let version = Arc::new(AtomicUsize::new(0));
    let counter = version.clone();
    let s = setup(83, move |_| {
        let v = counter.fetch_add(1, Ordering::SeqCst);
        // The refresh stays fresh, so polling for it cannot start another.
        let cache_control = if v == 0 {
            "max-age=1, stale-while-revalidate=30"
        } else {
            "max-age=60"
        };
        ok(&[("cache-control", cache_control)], &format!("v{v}"))
    });
    s.get("/swr").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = s.get("/swr").await;
    assert_eq!(stale.body, b"v0", "the stale body, at once");
    assert!(stale.is_hit(), "{}", stale.cache_status());
    // The background refresh lands shortly.
    let mut refreshed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = s.get("/swr").await;
        if again.body == b"v1" && again.is_hit() {
            refreshed = true;
            break;
        }
    }
    assert!(refreshed, "the background revalidation did not land");
    assert_eq!(s.origin.count("GET", "/swr"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_serves_the_stale_copy_when_the_origin_fails() {
    let failing = Arc::new(AtomicUsize::new(0));
    let fail = failing.clone();
    let s = setup(84, move |_| {
        if fail.load(Ordering::SeqCst) > 0 {
            Reply::Respond(500, vec![], b"broken".to_vec())
        } else {
            ok(&[("cache-control", "max-age=1, stale-if-error=60")], "good")
        }
    });
    s.get("/sie").await;
    failing.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = s.get("/sie").await;
    assert_eq!((stale.status, stale.text().as_str()), (200, "good"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_for_one_object_cause_one_origin_fetch() {
    let s = setup(85, |_| {
        std::thread::sleep(Duration::from_millis(300));
        ok(&[("cache-control", "max-age=60")], &"x".repeat(100_000))
    });
    let mut requests = Vec::new();
    for _ in 0..200 {
        let cdn = s.cdn.clone();
        requests.push(tokio::spawn(async move {
            let answer = cdn.get("/cold").await;
            (answer.status, answer.body.len())
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), (200, 100_000));
    }
    assert_eq!(s.origin.count("GET", "/cold"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_body_is_never_a_success_or_a_hit() {
    let s = setup(86, |_| Reply::Truncated {
        headers: vec![("cache-control", "max-age=60".into())],
        promised: 100_000,
        sent: vec![b'x'; 1000],
    });
    for _ in 0..2 {
        // The edge may abort before or after sending headers; either way the
        // client must see a failure, never a complete-looking response.
        match s.cdn.request(reqwest::Method::GET, "/t").send().await {
            Err(_) => {}
            Ok(response) if response.status() == 200 => {
                let cache_status = crate::harness::header(response.headers(), "cache-status");
                assert!(
                    !cache_status.starts_with("meridian; hit"),
                    "a truncated body was stored"
                );
                assert!(
                    response.bytes().await.is_err(),
                    "a truncated body looked complete"
                );
            }
            Ok(response) => assert!(response.status().is_server_error(), "{}", response.status()),
        }
    }
    assert_eq!(s.origin.count("GET", "/t"), 2);
}

/// An origin that echoes the request's `X-Custom-Request` in `X-Echo`,
/// with `fields` besides.
fn echo(fields: &'static [(&'static str, &'static str)]) -> impl Fn(&Received) -> Reply {
    move |r| {
        let seen = r
            .headers
            .get("x-custom-request")
            .cloned()
            .unwrap_or_default();
        let mut headers: Vec<(&'static str, &str)> = fields.to_vec();
        headers.push(("x-echo", &seen));
        ok(&headers, "x")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_headers_pass_both_ways() {
    let s = setup(87, echo(&[("x-custom-response", "from origin")]));
    let custom = [("x-custom-request", "from client")];
    // Response fields pass; an unknown request field reaches the origin
    // of a GET only when the operator lists it (see `forwarding`).
    let answer = s.get_with("/p", &custom).await;
    assert_eq!(answer.header("x-custom-response"), "from origin");
    assert_eq!(answer.header("x-echo"), "");
    let flags = ["--forward-header", "X-Custom-Request"];
    let listed = Setup::ad_hoc(88, &flags, echo(&[]));
    let answer = listed.get_with("/p", &custom).await;
    assert_eq!(answer.header("x-echo"), "from client");
}

/// Holds the origin's answers until the test opens it (or 20 s pass).
#[derive(Clone, Default)]
struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, changed) = &*self.0;
        let guard = open.lock().unwrap();
        let _ = changed
            .wait_timeout_while(guard, Duration::from_secs(20), |open| !*open)
            .unwrap();
    }

    fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

/// A GET of `/big` with the `extra` field, if any, on its own connection:
/// the status line and the body's length.
fn raw_get_big(edge: std::net::SocketAddr, extra: Option<&str>) -> (String, usize) {
    let fields: Vec<&str> = extra.into_iter().collect();
    let request = raw::request("GET", "/big", "cdn.meridian.test", &fields, "");
    let response = raw::exchange(edge, request.as_bytes(), raw::QUIET).unwrap();
    (response.status_line().to_owned(), response.body.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_forced_revalidations_make_one_origin_request() {
    const SIZE: usize = 4 << 20;
    let gate = Gate::default();
    let held = gate.clone();
    let s = setup(190, move |r| {
        let headers = vec![
            ("etag", "\"v1\"".to_owned()),
            ("cache-control", "max-age=600".to_owned()),
        ];
        if r.headers.contains_key("if-none-match") {
            held.wait();
            return Reply::Respond(304, headers, vec![]);
        }
        Reply::Respond(200, headers, vec![b'x'; SIZE])
    });
    let edge = s.edge.addr;
    let (status, length) = blocking(|| raw_get_big(edge, None));
    assert!(status.contains("200"), "{status}");
    assert_eq!(length, SIZE);
    // Twenty clients force a revalidation, in every way a client can, all
    // before the origin answers the first.
    let ways = [
        "Cache-Control: no-cache",
        "Cache-Control: max-age=0",
        "Pragma: no-cache",
        "Cache-Control: min-fresh=3600",
    ];
    let (sent, all_sent) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let sent = sent.clone();
            let way = ways[i % ways.len()];
            std::thread::spawn(move || {
                let _ = sent.send(());
                raw_get_big(edge, Some(way))
            })
        })
        .collect();
    for _ in 0..20 {
        all_sent.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // Every request is at the edge before the origin answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gate.open();
    for client in clients {
        let (status, length) = blocking(|| client.join().unwrap());
        assert!(status.contains("200"), "{status}");
        assert_eq!(length, SIZE);
    }
    let received = s.origin.received();
    assert_eq!(
        received.len(),
        2,
        "one fetch and one revalidation, not one per client: {:?}",
        received.iter().map(|r| &r.headers).collect::<Vec<_>>()
    );
    assert_eq!(received[1].headers["if-none-match"], "\"v1\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_can_be_told_to_ignore_client_cache_bypass() {
    let topology = Topology::demo(191).honor_client_no_cache(false);
    let s = Setup::eu_west(&topology, |_| {
        ok(&[("cache-control", "max-age=600")], "cached")
    });
    s.get("/a").await;
    for field in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("cache-control", "min-fresh=9999"),
        ("pragma", "no-cache"),
    ] {
        let answer = s.get_with("/a", &[field]).await;
        assert!(answer.is_hit(), "{field:?}: {}", answer.cache_status());
    }
    assert_eq!(s.origin.count("GET", "/a"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_sent_as_a_list_counts_its_first_member() {
    let s = setup(192, |r| match r.path.as_str() {
        "/list" => ok(
            &[("cache-control", "max-age=3600"), ("age", "7200, 0")],
            "x",
        ),
        _ => ok(&[("cache-control", "max-age=3600"), ("age", "soon")], "x"),
    });
    // An invalid Age is ignored: fresh for its max-age.
    let hits = second_is_hit(&s, &["/list", "/invalid"]).await;
    assert_eq!(hits, [false, true]);
    assert_eq!(s.origin.count("GET", "/list"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_named_in_connection_are_neither_stored_nor_forwarded() {
    let s = setup(193, |r| {
        let seen = if r.headers.contains_key("x-hop") {
            "yes"
        } else {
            "no"
        };
        ok(
            &[
                ("cache-control", "max-age=600"),
                ("connection", "x-secret"),
                ("x-secret", "origin's own"),
                ("x-saw-hop", seen),
            ],
            "x",
        )
    });
    let hop = [("connection", "x-hop"), ("x-hop", "1")];
    for _ in 0..2 {
        let answer = s.get_with("/a", &hop).await;
        assert!(!answer.headers.contains_key("x-secret"), "{answer:?}");
        assert_eq!(answer.header("x-saw-hop"), "no");
    }
    // A POST keeps its unknown fields, but not those named in Connection.
    let post = s.cdn.request(reqwest::Method::POST, "/form");
    let post = post.header("connection", "x-hop").header("x-hop", "1");
    let answer = s.cdn.send(post.header("x-other", "1")).await;
    assert_eq!(answer.header("x-saw-hop"), "no");
    let received = s.origin.received();
    let post = received.iter().find(|r| r.method == "POST").unwrap();
    assert!(post.headers.contains_key("x-other"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_the_edge_does_not_know_invalidates_like_post() {
    let s = setup(194, |_| ok(&[("cache-control", "max-age=600")], "x"));
    assert_eq!(second_is_hit(&s, &["/a"]).await, [true]);
    let method = reqwest::Method::from_bytes(b"M-SEARCH").unwrap();
    assert_eq!(s.cdn.send(s.cdn.request(method, "/a")).await.status, 200);
    let after = s.get("/a").await;
    assert!(!after.is_hit(), "{}", after.cache_status());
    assert_eq!(s.origin.count("GET", "/a"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cdn_cache_control_of_the_wrong_type_is_ignored_whole() {
    let s = setup(195, |r| {
        let cdn = match r.path.as_str() {
            "/string" => "max-age=\"3600\"",
            "/decimal" => "max-age=1.5",
            "/token" => "max-age=abc",
            _ => "max-age=3600",
        };
        ok(
            &[("cache-control", "no-store"), ("cdn-cache-control", cdn)],
            "x",
        )
    });
    // Where CDN-Cache-Control is of the wrong type, Cache-Control:
    // no-store applies.
    let paths = ["/string", "/decimal", "/token", "/valid"];
    let hits = second_is_hit(&s, &paths).await;
    assert_eq!(hits, [false, false, false, true], "{paths:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn range_corners_follow_rfc_9110() {
    let s = setup(196, |_| {
        ok(&[("cache-control", "max-age=600")], &"x".repeat(1024))
    });
    s.get("/r").await;
    // A zero-length suffix is unsatisfiable.
    let unsatisfiable = range(&s, "/r", "bytes=-0").await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), "bytes */1024");
    assert!(unsatisfiable.body.is_empty());
    // An invalid range is ignored: the whole representation.
    for spec in ["bytes=5-2", "bytes=0-1,5-2", "bytes=x-1"] {
        let whole = range(&s, "/r", spec).await;
        assert_eq!((whole.status, whole.body.len()), (200, 1024), "{spec}");
    }
    // A satisfiable spec next to a zero-length suffix is served alone.
    let alone = range(&s, "/r", "bytes=-0,0-9").await;
    assert_eq!((alone.status, alone.body.len()), (206, 10));
    assert_eq!(alone.header("content-range"), "bytes 0-9/1024");
    assert_eq!(s.origin.count("GET", "/r"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_keeps_at_most_its_maximum_of_variants() {
    let topology = Topology::demo(203).cache_max_variants(4);
    let s = Setup::eu_west(&topology, |r| {
        let language = r
            .headers
            .get("accept-language")
            .cloned()
            .unwrap_or_default();
        ok(
            &[
                ("cache-control", "max-age=600"),
                ("vary", "Accept-Language"),
            ],
            &format!("in {language}"),
        )
    });
    // Forty languages no one speaks: each its own variant.
    for i in 0..40 {
        let language = format!("x-{i}");
        let answer = s.get_with("/v", &[("accept-language", &language)]).await;
        assert_eq!(answer.text(), format!("in {language}"));
    }
    let metrics = get_text("http://127.203.2.1:9080/metrics").await;
    let value = |name: &str| metric(&metrics, name).unwrap_or_else(|| panic!("no {name}"));
    assert!(value("meridian_edge_cache_objects") <= 4, "{metrics}");
    assert!(
        value("meridian_edge_cache_variant_evictions") >= 36,
        "{metrics}"
    );
    // The newest are kept, and each is still served as its own variant.
    let newest = s.get_with("/v", &[("accept-language", "x-39")]).await;
    assert!(newest.is_hit());
    assert_eq!(newest.text(), "in x-39");
    assert_eq!(s.origin.count("GET", "/v"), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_carries_the_stored_date() {
    let generated =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(100));
    let date = generated.clone();
    let s = setup(208, move |_| {
        ok(
            &[("cache-control", "max-age=600"), ("date", &date)],
            "dated",
        )
    });
    s.get("/d").await;
    for fields in [
        &[][..],
        // The full path: a range, and a conditional that is not met.
        &[("range", "bytes=0-1")][..],
        &[("if-none-match", "\"other\"")][..],
    ] {
        let hit = s.get_with("/d", fields).await;
        assert!(hit.is_hit(), "{fields:?}: {}", hit.cache_status());
        assert_eq!(hit.header("date"), generated.as_str(), "{fields:?}");
        let age: u64 = hit.header("age").parse().unwrap();
        assert!(age >= 100, "{fields:?}: Age {age}");
    }
}
