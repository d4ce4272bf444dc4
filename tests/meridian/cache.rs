//! The edge cache against RFC 9111, one behaviour per test, each through a
//! real edge process in front of a scripted origin.

use crate::harness::{Edge, Topology, ad_hoc, client_via, edge, get_text};
use kit::{Received, Reply, ScriptedOrigin, ok};
use reqwest::header::HeaderMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An ad-hoc edge on 127.`block`.0.1:8080 in front of a scripted origin on
/// 127.`block`.0.2:8000.
struct Setup {
    origin: ScriptedOrigin,
    edge: Edge,
    client: reqwest::Client,
}

impl Setup {
    fn new(block: u8, script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Setup {
        Self::with_flags(block, &[], script)
    }

    /// An ad-hoc edge started with more flags.
    fn with_flags(
        block: u8,
        flags: &[&str],
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Setup {
        let origin = ScriptedOrigin::start(&format!("127.{block}.0.2:8000"), script).unwrap();
        let edge = tokio::task::block_in_place(|| ad_hoc(block, flags));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Setup {
            origin,
            edge,
            client,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge.addr)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().await.unwrap().to_vec())
    }
}

fn cache_status(headers: &HeaderMap) -> String {
    headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn is_hit(headers: &HeaderMap) -> bool {
    cache_status(headers).starts_with("meridian; hit")
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_responses_are_hits_and_carry_age() {
    let s = Setup::new(70, |_| ok(&[("cache-control", "max-age=60")], "body"));
    let (_, first, _) = s.get("/a", &[]).await;
    assert_eq!(cache_status(&first), "meridian; fwd=miss; stored; ttl=60");
    let (status, second, body) = s.get("/a", &[]).await;
    assert_eq!((status, body.as_slice()), (200, b"body".as_slice()));
    assert!(is_hit(&second), "{}", cache_status(&second));
    assert!(second.contains_key("age"));
    assert_eq!(
        second["cache-control"], "max-age=60",
        "the origin's Cache-Control passes unchanged"
    );
    assert_eq!(s.origin.count("GET", "/a"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_age_it_arrived_with_counts_against_its_freshness() {
    let s = Setup::new(71, |_| {
        ok(&[("cache-control", "max-age=100"), ("age", "98")], "old")
    });
    s.get("/a", &[]).await;
    let (_, hit, _) = s.get("/a", &[]).await;
    assert!(is_hit(&hit));
    let age: u64 = hit["age"].to_str().unwrap().parse().unwrap();
    assert!(
        age >= 98,
        "Age is the object's age, not time in this cache: {age}"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, later, _) = s.get("/a", &[]).await;
    assert!(
        !is_hit(&later),
        "stale after 100 - 98 s: {}",
        cache_status(&later)
    );
    assert_eq!(s.origin.count("GET", "/a"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_must_not_be_stored_is_not() {
    let s = Setup::new(72, |r| match r.path.as_str() {
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
    for path in ["/no-store", "/private", "/cookie", "/no-freshness"] {
        s.get(path, &[]).await;
        let (_, second, _) = s.get(path, &[]).await;
        assert!(!is_hit(&second), "{path} was stored");
        assert_eq!(s.origin.count("GET", path), 2, "{path}");
    }
    let auth = [("authorization", "Bearer secret")];
    s.get("/auth", &auth).await;
    let (_, second, _) = s.get("/auth", &auth).await;
    assert!(
        !is_hit(&second),
        "a response to an Authorization request was stored"
    );
    s.get("/auth-public", &auth).await;
    let (_, second, _) = s.get("/auth-public", &auth).await;
    assert!(is_hit(&second), "public allows storing it");
}

#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_takes_precedence_for_the_edge() {
    let s = Setup::new(73, |r| match r.path.as_str() {
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
    s.get("/cdn-longer", &[]).await;
    let (_, second, _) = s.get("/cdn-longer", &[]).await;
    assert!(is_hit(&second));
    assert_eq!(
        second["cache-control"], "no-store",
        "downstream caches still get Cache-Control"
    );
    s.get("/cdn-no-store", &[]).await;
    let (_, second, _) = s.get("/cdn-no-store", &[]).await;
    assert!(!is_hit(&second));
}

/// An origin that answers `If-None-Match: "v1"` with 304 and counts them.
/// Full responses carry `cache_control`, 304s `refreshed_cache_control`.
fn revalidating_origin(
    cache_control: &'static str,
    refreshed_cache_control: &'static str,
    revalidations: Arc<AtomicUsize>,
) -> impl Fn(&Received) -> Reply {
    move |r| {
        if r.headers.get("if-none-match").map(String::as_str) == Some("\"v1\"") {
            revalidations.fetch_add(1, Ordering::SeqCst);
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
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_response_is_revalidated_and_its_headers_refreshed() {
    let revalidations = Arc::new(AtomicUsize::new(0));
    // The 304 extends the freshness: `Date` has whole seconds, so a refreshed
    // `max-age=1` could already be stale when the next request arrives.
    let s = Setup::new(
        74,
        revalidating_origin("max-age=1", "max-age=60", revalidations.clone()),
    );
    s.get("/r", &[]).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, revalidated, body) = s.get("/r", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"version one");
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
    let status_header = cache_status(&revalidated);
    assert!(
        status_header.contains("fwd=stale") && status_header.contains("fwd-status=304"),
        "{status_header}"
    );
    let (_, hit, _) = s.get("/r", &[]).await;
    assert!(is_hit(&hit));
    assert_eq!(
        hit["x-refreshed"], "yes",
        "stored headers are updated from the 304"
    );
    assert_eq!(hit["cache-control"], "max-age=60");
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cache_is_stored_but_revalidated_every_time() {
    let revalidations = Arc::new(AtomicUsize::new(0));
    let s = Setup::new(
        75,
        revalidating_origin(
            "no-cache, max-age=60",
            "no-cache, max-age=60",
            revalidations.clone(),
        ),
    );
    s.get("/n", &[]).await;
    for _ in 0..3 {
        let (status, _, body) = s.get("/n", &[]).await;
        assert_eq!((status, body.as_slice()), (200, b"version one".as_slice()));
    }
    assert_eq!(revalidations.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_conditionals_and_head_are_answered_from_cache() {
    let s = Setup::new(76, |_| {
        ok(
            &[("cache-control", "max-age=60"), ("etag", "\"e\"")],
            "0123456789",
        )
    });
    s.get("/c", &[]).await;
    let (status, headers, body) = s.get("/c", &[("if-none-match", "\"e\"")]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert!(is_hit(&headers));
    let head = s.client.head(s.url("/c")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(is_hit(head.headers()));
    assert_eq!(head.headers()["content-length"], "10");
    assert_eq!(s.origin.count("GET", "/c"), 1);
    assert_eq!(s.origin.count("HEAD", "/c"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_miss_fetches_and_stores_the_get() {
    let s = Setup::new(77, |_| ok(&[("cache-control", "max-age=60")], "full body"));
    let head = s.client.head(s.url("/h")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let (_, hit, body) = s.get("/h", &[]).await;
    assert!(is_hit(&hit));
    assert_eq!(body, b"full body");
    assert_eq!(
        s.origin.count("GET", "/h"),
        1,
        "the edge asked for the whole object"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_directives_are_honoured() {
    let revalidations = Arc::new(AtomicUsize::new(0));
    let s = Setup::new(
        78,
        revalidating_origin("max-age=60", "max-age=60", revalidations.clone()),
    );
    // only-if-cached on a cold object: 504, and the origin never asked.
    let (status, headers, _) = s.get("/d", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, 504);
    assert!(cache_status(&headers).contains("only-if-cached"));
    assert_eq!(s.origin.count("GET", "/d"), 0);
    s.get("/d", &[]).await;
    let (status, headers, _) = s.get("/d", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, 200);
    assert!(is_hit(&headers));
    // no-cache: a fresh stored response is revalidated first.
    let (_, headers, _) = s.get("/d", &[("cache-control", "no-cache")]).await;
    assert!(
        cache_status(&headers).contains("fwd=request"),
        "{}",
        cache_status(&headers)
    );
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
    // Pragma: no-cache from HTTP/1.0 clients too.
    s.get("/d", &[("pragma", "no-cache")]).await;
    assert_eq!(revalidations.load(Ordering::SeqCst), 2);
    // max-age=0: the client wants nothing older than now.
    s.get("/d", &[("cache-control", "max-age=0")]).await;
    assert_eq!(revalidations.load(Ordering::SeqCst), 3);
    // min-fresh beyond the remaining freshness.
    s.get("/d", &[("cache-control", "min-fresh=3600")]).await;
    assert_eq!(revalidations.load(Ordering::SeqCst), 4);
    // An ordinary request is a hit again.
    let (_, headers, _) = s.get("/d", &[]).await;
    assert!(is_hit(&headers));
    assert_eq!(revalidations.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_stale_serves_a_stale_response() {
    let s = Setup::new(79, |_| ok(&[("cache-control", "max-age=1")], "x"));
    s.get("/m", &[]).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, headers, _) = s.get("/m", &[("cache-control", "max-stale=60")]).await;
    assert!(is_hit(&headers), "{}", cache_status(&headers));
    assert_eq!(s.origin.count("GET", "/m"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_stores_one_variant_per_normalized_accept_encoding() {
    let s = Setup::new(80, |r| {
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
    let chrome = [("accept-encoding", "gzip, deflate, br, zstd")];
    let firefox = [("accept-encoding", "gzip, deflate, br")];
    let (_, _, body) = s.get("/v", &chrome).await;
    assert_eq!(body, b"for br", "the origin got the normalized value");
    let (_, headers, body) = s.get("/v", &firefox).await;
    assert!(is_hit(&headers), "equivalent encodings share the variant");
    assert_eq!(body, b"for br");
    let (_, headers, body) = s.get("/v", &[("accept-encoding", "gzip")]).await;
    assert!(!is_hit(&headers));
    assert_eq!(body, b"for gzip");
    let (_, headers, body) = s.get("/v", &[]).await;
    assert!(!is_hit(&headers));
    assert_eq!(body, b"for identity");
    let (_, headers, body) = s.get("/v", &chrome).await;
    assert!(is_hit(&headers));
    assert_eq!(body, b"for br");
    assert_eq!(s.origin.count("GET", "/v"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_are_served_from_the_cached_object() {
    let s = Setup::new(81, |_| {
        ok(&[("cache-control", "max-age=60")], "0123456789abcdefghij")
    });
    let (status, headers, body) = s.get("/range", &[("range", "bytes=2-5")]).await;
    assert_eq!(status, 206, "a range miss still answers the range");
    assert_eq!(body, b"2345");
    assert_eq!(headers["content-range"], "bytes 2-5/20");
    let (status, headers, body) = s.get("/range", &[("range", "bytes=-3")]).await;
    assert_eq!((status, body.as_slice()), (206, b"hij".as_slice()));
    assert!(is_hit(&headers));
    let (status, headers, body) = s.get("/range", &[("range", "bytes=0-1,10-11")]).await;
    assert_eq!(status, 206);
    let content_type = headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("multipart/byteranges"),
        "{content_type}"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("01") && text.contains("ab") && text.contains("bytes 10-11/20"),
        "{text}"
    );
    let (status, _, _) = s.get("/range", &[("range", "bytes=50-60")]).await;
    assert_eq!(status, 416);
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
    let s = Setup::new(82, |r| match (r.method.as_str(), r.path.as_str()) {
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
    for path in ["/items", "/items/7", "/items/8"] {
        s.get(path, &[]).await;
        assert!(is_hit(&s.get(path, &[]).await.1), "{path}");
    }
    let created = s
        .client
        .post(s.url("/items"))
        .body("new")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(
        !is_hit(&s.get("/items", &[]).await.1),
        "the POSTed URL is invalidated"
    );
    assert!(
        !is_hit(&s.get("/items/7", &[]).await.1),
        "its Location is invalidated"
    );
    assert!(
        is_hit(&s.get("/items/8", &[]).await.1),
        "other URLs are not"
    );
    let put = s
        .client
        .put(s.url("/items/8"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert!(!is_hit(&s.get("/items/8", &[]).await.1));
    let received = s.origin.received();
    let put = received.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.body, b"payload", "request bodies pass through");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let version = Arc::new(AtomicUsize::new(0));
    let counter = version.clone();
    let s = Setup::new(83, move |_| {
        let v = counter.fetch_add(1, Ordering::SeqCst);
        // The refresh stays fresh, so polling for it cannot start another.
        let cache_control = if v == 0 {
            "max-age=1, stale-while-revalidate=30"
        } else {
            "max-age=60"
        };
        ok(&[("cache-control", cache_control)], &format!("v{v}"))
    });
    s.get("/swr", &[]).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, headers, body) = s.get("/swr", &[]).await;
    assert_eq!(body, b"v0", "the stale body, at once");
    assert!(is_hit(&headers), "{}", cache_status(&headers));
    // The background refresh lands shortly.
    let mut refreshed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, headers, body) = s.get("/swr", &[]).await;
        if body == b"v1" && is_hit(&headers) {
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
    let s = Setup::new(84, move |_| {
        if fail.load(Ordering::SeqCst) > 0 {
            Reply::Respond(500, vec![], b"broken".to_vec())
        } else {
            ok(&[("cache-control", "max-age=1, stale-if-error=60")], "good")
        }
    });
    s.get("/sie", &[]).await;
    failing.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, _, body) = s.get("/sie", &[]).await;
    assert_eq!((status, body.as_slice()), (200, b"good".as_slice()));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_for_one_object_cause_one_origin_fetch() {
    let s = Setup::new(85, |_| {
        std::thread::sleep(Duration::from_millis(300));
        ok(&[("cache-control", "max-age=60")], &"x".repeat(100_000))
    });
    let mut requests = Vec::new();
    for _ in 0..200 {
        let (client, url) = (s.client.clone(), s.url("/cold"));
        requests.push(tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (
                response.status().as_u16(),
                response.bytes().await.unwrap().len(),
            )
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), (200, 100_000));
    }
    assert_eq!(s.origin.count("GET", "/cold"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_body_is_never_a_success_or_a_hit() {
    let s = Setup::new(86, |_| Reply::Truncated {
        headers: vec![("cache-control", "max-age=60".into())],
        promised: 100_000,
        sent: vec![b'x'; 1000],
    });
    for _ in 0..2 {
        // The edge may abort before or after sending headers; either way the
        // client must see a failure, never a complete-looking response.
        match s.client.get(s.url("/t")).send().await {
            Err(_) => {}
            Ok(response) if response.status() == 200 => {
                assert!(!is_hit(response.headers()), "a truncated body was stored");
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

#[tokio::test(flavor = "multi_thread")]
async fn unknown_headers_pass_both_ways() {
    let s = Setup::new(87, |r| {
        let seen = r
            .headers
            .get("x-custom-request")
            .cloned()
            .unwrap_or_default();
        ok(
            &[("x-custom-response", "from origin"), ("x-echo", &seen)],
            "x",
        )
    });
    // Response fields pass; an unknown request field reaches the origin
    // of a GET only when the operator lists it (see `forwarding`).
    let (_, headers, _) = s.get("/p", &[("x-custom-request", "from client")]).await;
    assert_eq!(headers["x-custom-response"], "from origin");
    assert_eq!(headers["x-echo"], "");
    let listed = Setup::with_flags(88, &["--forward-header", "X-Custom-Request"], |r| {
        let seen = r
            .headers
            .get("x-custom-request")
            .cloned()
            .unwrap_or_default();
        ok(&[("x-echo", &seen)], "x")
    });
    let (_, headers, _) = listed
        .get("/p", &[("x-custom-request", "from client")])
        .await;
    assert_eq!(headers["x-echo"], "from client");
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

/// One raw HTTP/1.1 exchange on its own connection: the status line and
/// the body's length.
fn raw_get(edge: std::net::SocketAddr, path: &str, extra: &str) -> (String, usize) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(edge).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: cdn.meridian.test\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, answer.len() - head_end)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_forced_revalidations_make_one_origin_request() {
    const SIZE: usize = 4 << 20;
    let gate = Gate::default();
    let held = gate.clone();
    let s = Setup::new(190, move |r| {
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
    let (status, length) = tokio::task::block_in_place(|| raw_get(edge, "/big", ""));
    assert!(status.contains("200"), "{status}");
    assert_eq!(length, SIZE);
    // Twenty clients force a revalidation, in every way a client can, all
    // before the origin answers the first.
    let ways = [
        "Cache-Control: no-cache\r\n",
        "Cache-Control: max-age=0\r\n",
        "Pragma: no-cache\r\n",
        "Cache-Control: min-fresh=3600\r\n",
    ];
    let (sent, all_sent) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let sent = sent.clone();
            let way = ways[i % ways.len()];
            std::thread::spawn(move || {
                let _ = sent.send(());
                raw_get(edge, "/big", way)
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
        let (status, length) = tokio::task::block_in_place(|| client.join().unwrap());
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
    let origin = ScriptedOrigin::start("127.191.2.2:8000", |_| {
        ok(&[("cache-control", "max-age=600")], "cached")
    })
    .unwrap();
    let topology = Topology::demo(191).honor_client_no_cache(false);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let client = client_via(edge.addr);
    let url = "http://cdn.meridian.test:8080/a";
    client.get(url).send().await.unwrap();
    for (name, value) in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("cache-control", "min-fresh=9999"),
        ("pragma", "no-cache"),
    ] {
        let response = client.get(url).header(name, value).send().await.unwrap();
        assert!(
            is_hit(response.headers()),
            "{name}: {value}: {}",
            cache_status(response.headers())
        );
    }
    assert_eq!(origin.count("GET", "/a"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_sent_as_a_list_counts_its_first_member() {
    let s = Setup::new(192, |r| match r.path.as_str() {
        "/list" => ok(
            &[("cache-control", "max-age=3600"), ("age", "7200, 0")],
            "x",
        ),
        _ => ok(&[("cache-control", "max-age=3600"), ("age", "soon")], "x"),
    });
    s.get("/list", &[]).await;
    let (_, second, _) = s.get("/list", &[]).await;
    assert!(!is_hit(&second), "{}", cache_status(&second));
    assert_eq!(s.origin.count("GET", "/list"), 2);
    // An invalid Age is ignored: fresh for its max-age.
    s.get("/invalid", &[]).await;
    let (_, second, _) = s.get("/invalid", &[]).await;
    assert!(is_hit(&second), "{}", cache_status(&second));
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_named_in_connection_are_neither_stored_nor_forwarded() {
    let s = Setup::new(193, |r| {
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
    for _ in 0..2 {
        let (_, headers, _) = s
            .get("/a", &[("connection", "x-hop"), ("x-hop", "1")])
            .await;
        assert!(!headers.contains_key("x-secret"), "{headers:?}");
        assert_eq!(headers["x-saw-hop"], "no");
    }
    // A POST keeps its unknown fields, but not those named in Connection.
    let response = s
        .client
        .post(s.url("/form"))
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-other", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-saw-hop"], "no");
    let post = s
        .origin
        .received()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(post.headers.contains_key("x-other"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_the_edge_does_not_know_invalidates_like_post() {
    let s = Setup::new(194, |_| ok(&[("cache-control", "max-age=600")], "x"));
    s.get("/a", &[]).await;
    let (_, hit, _) = s.get("/a", &[]).await;
    assert!(is_hit(&hit));
    let method = reqwest::Method::from_bytes(b"M-SEARCH").unwrap();
    let response = s.client.request(method, s.url("/a")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, after, _) = s.get("/a", &[]).await;
    assert!(!is_hit(&after), "{}", cache_status(&after));
    assert_eq!(s.origin.count("GET", "/a"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cdn_cache_control_of_the_wrong_type_is_ignored_whole() {
    let s = Setup::new(195, |r| {
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
    for path in ["/string", "/decimal", "/token"] {
        s.get(path, &[]).await;
        let (_, second, _) = s.get(path, &[]).await;
        assert!(!is_hit(&second), "{path}: Cache-Control: no-store applies");
    }
    s.get("/valid", &[]).await;
    let (_, second, _) = s.get("/valid", &[]).await;
    assert!(is_hit(&second), "{}", cache_status(&second));
}

#[tokio::test(flavor = "multi_thread")]
async fn range_corners_follow_rfc_9110() {
    let s = Setup::new(196, |_| {
        ok(&[("cache-control", "max-age=600")], &"x".repeat(1024))
    });
    s.get("/r", &[]).await;
    // A zero-length suffix is unsatisfiable.
    let (status, headers, body) = s.get("/r", &[("range", "bytes=-0")]).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], "bytes */1024");
    assert!(body.is_empty());
    // An invalid range is ignored: the whole representation.
    for range in ["bytes=5-2", "bytes=0-1,5-2", "bytes=x-1"] {
        let (status, _, body) = s.get("/r", &[("range", range)]).await;
        assert_eq!((status, body.len()), (200, 1024), "{range}");
    }
    // A satisfiable spec next to a zero-length suffix is served alone.
    let (status, headers, body) = s.get("/r", &[("range", "bytes=-0,0-9")]).await;
    assert_eq!((status, body.len()), (206, 10));
    assert_eq!(headers["content-range"], "bytes 0-9/1024");
    assert_eq!(s.origin.count("GET", "/r"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_keeps_at_most_its_maximum_of_variants() {
    let origin = ScriptedOrigin::start("127.203.2.2:8000", |r| {
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
    })
    .unwrap();
    let topology = Topology::demo(203).cache_max_variants(4);
    let edge = tokio::task::block_in_place(|| edge(&topology, 2));
    let client = client_via(edge.addr);
    let url = "http://cdn.meridian.test:8080/v";
    let get = |language: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(url)
                .header("accept-language", &language)
                .send()
                .await
                .unwrap();
            let hit = is_hit(response.headers());
            (hit, response.text().await.unwrap())
        }
    };
    // Forty languages no one speaks: each its own variant.
    for i in 0..40 {
        let (_, body) = get(format!("x-{i}")).await;
        assert_eq!(body, format!("in x-{i}"));
    }
    let metrics = get_text("http://127.203.2.1:9080/metrics").await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(value("meridian_edge_cache_objects") <= 4, "{metrics}");
    assert!(
        value("meridian_edge_cache_variant_evictions") >= 36,
        "{metrics}"
    );
    // The newest are kept, and each is still served as its own variant.
    let (hit, body) = get("x-39".to_owned()).await;
    assert!(hit);
    assert_eq!(body, "in x-39");
    assert_eq!(origin.count("GET", "/v"), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_carries_the_stored_date() {
    let generated =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(100));
    let date = generated.clone();
    let s = Setup::new(208, move |_| {
        ok(
            &[("cache-control", "max-age=600"), ("date", &date)],
            "dated",
        )
    });
    s.get("/d", &[]).await;
    for headers in [
        &[][..],
        // The full path: a range, and a conditional that is not met.
        &[("range", "bytes=0-1")][..],
        &[("if-none-match", "\"other\"")][..],
    ] {
        let (_, hit, _) = s.get("/d", headers).await;
        assert!(is_hit(&hit), "{headers:?}: {}", cache_status(&hit));
        assert_eq!(hit["date"], generated.as_str(), "{headers:?}");
        let age: u64 = hit["age"].to_str().unwrap().parse().unwrap();
        assert!(age >= 100, "{headers:?}: Age {age}");
    }
}
