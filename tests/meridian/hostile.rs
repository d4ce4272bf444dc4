//! Hostile HTTP input against an edge, each test named after the attack.
//! Raw TCP, because HTTP client libraries refuse to send these.

use crate::harness::{Cdn, Setup, Topology, edge, ok, raw};
use kit::{RecordingOrigin, Reply, ScriptedOrigin};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends raw bytes, returns everything the edge answered until it closed
/// the connection (or went quiet for 3 s), and whether it closed it.
fn exchange(edge: SocketAddr, raw: &[u8]) -> (String, bool) {
    let response = raw::exchange(edge, raw, Duration::from_secs(3)).unwrap();
    (response.whole(), response.closed)
}

/// A GET of `target` for `cdn.meridian.test`, with the `fields` besides;
/// its status line and its whole answer.
fn get(edge: SocketAddr, target: &str, fields: &[&str]) -> String {
    let request = raw::request("GET", target, "cdn.meridian.test", fields, "");
    exchange(edge, request.as_bytes()).0
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// eu-west's edge of the demo on `block`, in front of an origin whose
/// cacheable page names the path and any `X-Forwarded-Host`.
fn target(block: u8) -> Setup {
    Setup::eu_west(&Topology::demo(block), |r| {
        let forwarded_host = r
            .headers
            .get("x-forwarded-host")
            .cloned()
            .unwrap_or_default();
        ok(
            &[("cache-control", "max-age=60")],
            &format!("page for host [{forwarded_host}] at {}", r.path),
        )
    })
}

fn smuggle(block: u8, name: &str, raw: &str, expected: &str) {
    let t = target(block);
    let (answer, closed) = exchange(t.edge.addr, raw.as_bytes());
    assert!(status_line(&answer).contains(expected), "{name}: {answer}");
    assert!(
        closed,
        "{name}: the connection stayed open after a refused request"
    );
    assert!(
        t.origin.received().is_empty(),
        "{name}: reached the origin: {:?}",
        t.origin.received()
    );
}

#[test]
fn request_smuggling_content_length_with_transfer_encoding() {
    smuggle(
        90,
        "CL.TE",
        "POST / HTTP/1.1\r\nHost: cdn.meridian.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        "400",
    );
}

#[test]
fn request_smuggling_duplicate_content_length() {
    smuggle(
        91,
        "CL.CL",
        "POST / HTTP/1.1\r\nHost: cdn.meridian.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        "400",
    );
    smuggle(
        92,
        "CL.CL differing",
        "POST / HTTP/1.1\r\nHost: cdn.meridian.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "400",
    );
}

#[test]
fn request_smuggling_obsolete_line_folding() {
    smuggle(
        93,
        "obs-fold",
        "GET / HTTP/1.1\r\nHost: cdn.meridian.test\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        "400",
    );
}

/// Whether `bytes`, one connection's worth as an origin received it, hold
/// a request that ended: its head, and a body that is complete by its own
/// framing (a last chunk, or as many bytes as `Content-Length` says).
fn holds_a_complete_request(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = &text[..head_end];
    let body = &text[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.starts_with("0\r\n") || body.contains("\r\n0\r\n");
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    body.len() >= length
}

#[test]
fn request_smuggling_bad_chunk_size() {
    malformed_bodies_never_complete_at_the_origin(94);
}

/// Bodies whose framing breaks after the head was accepted: the client gets
/// 400 (or the connection closes), and no origin ever receives a request
/// that ends, so none can act on one.
fn malformed_bodies_never_complete_at_the_origin(block: u8) {
    let origin = RecordingOrigin::start(&format!("127.{block}.2.2:8000")).unwrap();
    let edge = edge(&Topology::demo(block), 2);
    let cases = [
        (
            "bad chunk size",
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "overflowing chunk size",
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "LF-only chunk lines",
            "Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
        ),
        (
            "chunk longer than its size",
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        ),
        (
            "body shorter than its length",
            "Content-Length: 10\r\n\r\nabc",
        ),
    ];
    for (name, rest) in cases {
        let mut stream = TcpStream::connect(edge.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let path = name.replace(' ', "-");
        let head = format!("POST /{path} HTTP/1.1\r\nHost: cdn.meridian.test\r\n");
        stream
            .write_all(format!("{head}{rest}").as_bytes())
            .unwrap();
        // The short body: the client gives up and closes its side.
        if name.starts_with("body shorter") {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || status_line(&answer).contains("400"),
            "{name}: {answer}"
        );
    }
    // Give the edge time to pass on anything it was going to.
    std::thread::sleep(Duration::from_millis(500));
    for seen in origin.seen() {
        assert!(
            !holds_a_complete_request(&seen),
            "an origin received a complete request: {:?}",
            String::from_utf8_lossy(&seen)
        );
        // A body of declared size is read whole before any origin is
        // asked, so a short one never even shows an origin its head.
        assert!(
            !seen.starts_with(b"POST /body-shorter"),
            "an origin saw the head of a request whose body never came: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
}

#[test]
fn an_upload_that_expects_100_continue_gets_it_from_the_edge() {
    let block = 202;
    let origin = ScriptedOrigin::start(&format!("127.{block}.2.2:8000"), |r| {
        ok(&[], &format!("got {} bytes", r.body.len()))
    })
    .unwrap();
    let edge = edge(&Topology::demo(block), 2);
    let mut stream = TcpStream::connect(edge.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nHost: cdn.meridian.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream.write_all(b"hello").unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("got 5 bytes") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let received = origin.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, b"hello");
    assert!(!received[0].headers.contains_key("expect"));
}

#[test]
fn an_http2_body_that_contradicts_its_content_length_never_reaches_an_origin() {
    let block = 201;
    let origin =
        ScriptedOrigin::start(&format!("127.{block}.2.2:8000"), |_| ok(&[], "done")).unwrap();
    let _edge = edge(&Topology::demo(block), 2);
    let tls_addr: SocketAddr = format!("127.{block}.2.1:8443").parse().unwrap();
    crate::tls::wait_for(tls_addr);
    let mut h2 = crate::tls::Http2::open(tls_addr);
    // HEADERS without END_STREAM, declaring no body; then a DATA frame.
    h2.headers(
        1,
        &[
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/upload"),
            (":authority", "cdn.meridian.test"),
            ("content-length", "0"),
        ],
        false,
    );
    h2.data(1, b"smuggled", true);
    let frames = h2.frames_for(Duration::from_secs(2));
    assert!(
        frames
            .iter()
            .any(|(kind, stream)| *stream == 1 && (*kind == 3 || *kind == 1)),
        "the stream was neither reset nor answered: {frames:?}"
    );
    assert_eq!(
        origin.count("POST", "/upload"),
        0,
        "{:?}",
        origin.received()
    );
}

#[test]
fn request_smuggling_transfer_encoding_not_chunked() {
    smuggle(
        95,
        "TE chunked-not-last",
        "POST / HTTP/1.1\r\nHost: cdn.meridian.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "400",
    );
}

#[test]
fn oversized_request_header() {
    let t = target(96);
    let big = format!("X-Big: {}", "a".repeat(70_000));
    let answer = get(t.edge.addr, "/", &[&big]);
    assert!(
        status_line(&answer).contains("431"),
        "{}",
        status_line(&answer)
    );
    assert!(t.origin.received().is_empty());
    // Still serving.
    let health = raw::get(t.edge.addr, "/_meridian/health", "x").unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn heads_too_large_for_any_parser_get_414_or_431_and_name_no_software() {
    let t = target(207);
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: cdn.meridian.test\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: cdn.meridian.test\r\n{}\r\n",
        (0..300)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect::<String>()
    );
    for (raw, expected) in [(long_target, "414"), (many_fields, "431")] {
        let (answer, closed) = exchange(t.edge.addr, raw.as_bytes());
        assert!(status_line(&answer).contains(expected), "{answer}");
        assert!(!answer.to_ascii_lowercase().contains("pingora"), "{answer}");
        assert!(closed);
    }
    assert!(t.origin.received().is_empty());
}

#[test]
fn open_proxy_through_host_absolute_form_and_connect() {
    let t = target(97);
    for raw in [
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\nHost: cdn.meridian.test\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let (answer, _) = exchange(t.edge.addr, raw.as_bytes());
        assert!(
            status_line(&answer).contains("421") || status_line(&answer).contains("400"),
            "{raw:?}: {answer}"
        );
    }
    let (answer, _) = exchange(
        t.edge.addr,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    );
    assert!(status_line(&answer).contains("405"), "{answer}");
    assert!(t.origin.received().is_empty(), "{:?}", t.origin.received());
}

/// Request fields origins are known to trust to rebuild the URL, the
/// scheme, the method or the client, none of which is in the cache key.
const UNKEYED_FIELDS: [&str; 19] = [
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-original-url",
    "x-rewrite-url",
    "x-host",
    "forwarded",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-original-host",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-http-method-override",
    "x-envoy-original-path",
    // Not a known one: on a cacheable request, unknown fields do not pass.
    "x-made-up-yesterday",
    "x-real-ip",
];

#[tokio::test(flavor = "multi_thread")]
async fn cache_poisoning_through_unkeyed_headers() {
    // An origin that shapes its page by every field it is given.
    let origin = ScriptedOrigin::start("127.98.2.2:8000", |r| {
        let mut shaped: Vec<String> = UNKEYED_FIELDS
            .iter()
            .filter_map(|name| r.headers.get(*name).map(|v| format!("{name}={v}")))
            .filter(|field| field != "x-forwarded-proto=http")
            .collect();
        shaped.sort();
        ok(
            &[("cache-control", "max-age=60")],
            &format!("page at {} shaped by [{}]", r.path, shaped.join(" ")),
        )
    })
    .unwrap();
    let edge = edge(&Topology::demo(98), 2);
    let cdn = Cdn::via(edge.addr);
    for (i, name) in UNKEYED_FIELDS.iter().enumerate() {
        let path = format!("/page{i}");
        let poisoned = cdn.get_with(&path, &[(*name, "evil.example")]).await;
        let expected = format!("page at /page{i} shaped by []");
        assert_eq!(poisoned.text(), expected, "{name}");
        assert_eq!(cdn.get(&path).await.text(), expected, "{name}");
    }
    // A POST is never stored: it keeps unknown fields, but not one that
    // impersonates a proxy.
    let post = cdn.request(reqwest::Method::POST, "/form");
    let post = post.header("x-forwarded-host", "evil.example");
    let post = cdn.send(post.header("x-made-up-yesterday", "1")).await;
    assert_eq!(
        post.text(),
        "page at /form shaped by [x-made-up-yesterday=1]"
    );
    let received = origin.received();
    assert!(
        received
            .iter()
            .all(|r| r.headers["x-forwarded-proto"] == "http")
    );
    assert!(
        received
            .iter()
            .all(|r| r.headers["cdn-loop"] == "meridian.test")
    );
}

#[test]
fn an_absolute_target_of_another_scheme_is_refused() {
    let t = target(197);
    let answer = get(t.edge.addr, "https://cdn.meridian.test/p", &[]);
    assert!(status_line(&answer).contains("400"), "{answer}");
    assert!(answer.contains("detail=scheme-mismatch"), "{answer}");
    // The connection's own scheme is fine, and reaches the origin in
    // origin form.
    let answer = get(t.edge.addr, "http://cdn.meridian.test/p", &[]);
    assert!(status_line(&answer).contains("200"), "{answer}");
    let received = t.origin.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].path, "/p");
}

#[test]
fn trace_is_refused_and_never_forwarded() {
    let t = target(198);
    for method in ["TRACE", "TRACK"] {
        let (answer, _) = exchange(
            t.edge.addr,
            format!("{method} / HTTP/1.1\r\nHost: cdn.meridian.test\r\nCookie: secret=1\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(status_line(&answer).contains("405"), "{method}: {answer}");
        assert!(!answer.contains("secret"), "{method} echoed the request");
    }
    assert!(t.origin.received().is_empty());
}

#[test]
fn a_request_that_already_went_through_this_cdn_is_a_loop() {
    let t = target(199);
    let answer = get(t.edge.addr, "/a", &["CDN-Loop: other-cdn, meridian.test"]);
    assert!(status_line(&answer).contains("508"), "{answer}");
    assert!(t.origin.received().is_empty());
    // Another CDN's mark is just passed on, with ours after it.
    let answer = get(t.edge.addr, "/b", &["CDN-Loop: other-cdn"]);
    assert!(status_line(&answer).contains("200"), "{answer}");
    assert_eq!(
        t.origin.received()[0].headers["cdn-loop"],
        "other-cdn, meridian.test"
    );
}

#[test]
fn an_origin_head_too_large_is_a_502_that_names_no_software() {
    let block = 200;
    let origin = ScriptedOrigin::start(&format!("127.{block}.2.2:8000"), |r| {
        let big = "v".repeat(8 * 1024);
        let fields: Vec<(&'static str, String)> = match r.path.as_str() {
            "/huge" => [
                "x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g", "x-h", "x-i",
            ]
            .iter()
            .map(|name| (*name, big.clone()))
            .collect(),
            _ => vec![("cache-control", "max-age=60".to_owned())],
        };
        Reply::Respond(200, fields, b"body".to_vec())
    })
    .unwrap();
    let edge = edge(&Topology::demo(block), 2);
    let answer = get(edge.addr, "/huge", &[]);
    assert!(status_line(&answer).contains("502"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("pingora"), "{answer}");
    assert!(!answer.contains("vvvv"), "the origin's head leaked");
    // Still serving, and the next origin head is fine.
    let answer = get(edge.addr, "/ok", &[]);
    assert!(status_line(&answer).contains("200"), "{answer}");
    assert!(origin.count("GET", "/huge") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_key_confusion_through_path_encoding() {
    let t = target(99);
    let body_of = |answer: &str| {
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    // Equivalent spellings share one entry...
    let first = get(t.edge.addr, "/a%62c", &[]);
    let second = get(t.edge.addr, "/abc", &[]);
    assert!(second.contains("cache-status: meridian; hit"), "{second}");
    assert_eq!(body_of(&first), body_of(&second));
    // ...and different resources never do.
    for path in ["/a%2Fb", "/a/b", "/a//b", "/x/../a", "/A%62C"] {
        let answer = get(t.edge.addr, path, &[]);
        assert!(
            !answer.contains("meridian; hit"),
            "{path} was served another path's entry: {answer}"
        );
    }
    assert_eq!(
        t.origin.count("GET", "/a%62c") + t.origin.count("GET", "/abc"),
        1
    );
}

/// Whether the edge closed `stream` within `within`, while the client
/// dribbles `drip` (if any) every 200 ms.
fn closed_within(stream: &mut TcpStream, within: Duration, drip: Option<&[u8]>) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        if let Some(bytes) = drip
            && stream.write_all(bytes).is_err()
        {
            return true;
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A response (e.g. 408 or 400) before closing is fine.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// The demo on `block` with short client deadlines: 1 s for a request
/// head, 1 s per stalled body read or response write.
fn slow_client_target(block: u8) -> Setup {
    let topology = Topology::demo(block)
        .client_header_timeout(Duration::from_secs(1))
        .client_io_timeout(Duration::from_secs(1));
    Setup::eu_west(&topology, |r| ok(&[], &format!("{} bytes", r.body.len())))
}

#[test]
fn slowloris_trickling_headers_is_cut_off() {
    let t = slow_client_target(123);
    // Each byte arrives long before Pingora's 60 s per-read timeout; the
    // whole head never does.
    let mut slow = TcpStream::connect(t.edge.addr).unwrap();
    slow.write_all(b"GET /a HTTP/1.1\r\nHost: cdn.meridian.test\r\n")
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(4), Some(b"X")),
        "a trickled head kept its connection"
    );
    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(t.edge.addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(4), None));
    // And so is an idle kept-alive one, after a complete exchange.
    let mut idle = TcpStream::connect(t.edge.addr).unwrap();
    idle.write_all(b"GET /a HTTP/1.1\r\nHost: cdn.meridian.test\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(4), None));
    // Nothing of the trickled request reached the origin; prompt clients
    // are served as before.
    assert_eq!(t.origin.count("GET", "/a"), 1);
    let answer = get(t.edge.addr, "/b", &[]);
    assert!(status_line(&answer).contains("200"), "{answer}");
}

#[test]
fn slow_body_stalling_mid_upload_is_cut_off() {
    let t = slow_client_target(124);
    let mut stream = TcpStream::connect(t.edge.addr).unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: cdn.meridian.test\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(5), None),
        "a stalled upload kept its connection"
    );
    // The origin never got a complete body to act on.
    assert_eq!(t.origin.count("POST", "/upload"), 0);
}
