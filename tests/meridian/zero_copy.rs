//! Large cache hits sent straight from sealed pages (sendfile): the bytes a
//! client gets are exactly the origin's, ranges included, for fast and slow
//! readers, and a body purged mid-send still arrives unchanged.

use crate::harness::{Cdn, Received, Reply, Setup, Topology, blocking, get_text, metric, raw};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// `len` bytes that differ per `version`, so a mix-up shows.
fn body(len: usize, version: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ version as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn cacheable(body: Vec<u8>) -> Reply {
    Reply::Respond(200, vec![("cache-control", "max-age=600".to_owned())], body)
}

/// eu-west's edge of the demo on `block` in front of `script`, and the
/// edge's admin listener.
fn setup(block: u8, script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> (Setup, Cdn) {
    let topology = Topology::demo(block);
    let admin = Cdn::at(topology.edge_admin(2));
    (Setup::eu_west(&topology, script), admin)
}

/// The edge's `meridian_edge_zero_copy_bytes_total`.
async fn zero_copy_bytes(admin: &Cdn) -> u64 {
    let text = get_text(&admin.url("/metrics")).await;
    let name = "meridian_edge_zero_copy_bytes_total";
    metric(&text, name).unwrap_or_else(|| panic!("no zero-copy counter in\n{text}"))
}

/// The counter once it reads `expected`, or what it reads after 5 s. The
/// edge counts a `sendfile` just after the kernel took the bytes, so a
/// client that has read them all may ask before the count moved (on a
/// loaded machine the sending thread can be preempted between the two);
/// bytes that were copied instead never make it move.
async fn zero_copy_bytes_reaching(admin: &Cdn, expected: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = zero_copy_bytes(admin).await;
        if now == expected || std::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_hits_are_sent_from_sealed_pages_byte_for_byte() {
    let b = 127;
    let large = body(1024 * 1024 + 123, 1);
    let served = large.clone();
    let (s, admin) = setup(b, move |r| {
        if r.path == "/small" {
            cacheable(body(1024, 2))
        } else {
            cacheable(served.clone())
        }
    });

    // The miss streams the fill as it arrives: copied, not from pages.
    let miss = s.get("/large").await;
    assert!(
        miss.cache_status().contains("fwd=miss"),
        "{}",
        miss.cache_status()
    );
    assert!(miss.body == large);
    assert_eq!(zero_copy_bytes(&admin).await, 0);

    // The hit: every byte, every one of them sent from the sealed pages.
    let hit = s.get("/large").await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert!(hit.body == large);
    let after_hit = zero_copy_bytes_reaching(&admin, large.len() as u64).await;
    assert_eq!(after_hit, large.len() as u64);

    // A range of it: the right slice, from the right offset of the file.
    let range = s
        .get_with("/large", &[("range", "bytes=100000-699999")])
        .await;
    assert_eq!(range.status, 206);
    assert!(range.body == large[100_000..700_000]);
    let expected = after_hit + 600_000;
    assert_eq!(zero_copy_bytes_reaching(&admin, expected).await, expected);

    // Several ranges: Pingora assembles the multipart body (a copy), which
    // must still hold the right parts in order.
    let ranges = [("range", "bytes=0-49999,500000-599999")];
    let multi = s.get_with("/large", &ranges).await;
    assert_eq!(multi.status, 206);
    let first = find(&multi.body, &large[..50_000]).expect("first part");
    let second = find(&multi.body, &large[500_000..600_000]).expect("second part");
    assert!(first < second);
    let after_ranges = zero_copy_bytes(&admin).await;

    // Small objects stay on the heap and are copied with their head.
    for _ in 0..2 {
        assert!(s.get("/small").await.body == body(1024, 2));
    }
    // HEAD sends no body at all.
    let head = s
        .cdn
        .send(s.cdn.request(reqwest::Method::HEAD, "/large"))
        .await;
    assert_eq!(head.header("content-length"), large.len().to_string());
    assert_eq!(zero_copy_bytes(&admin).await, after_ranges);

    // Over TLS (its own cache entry: the scheme is part of the key) the
    // stored pages are read and encrypted as usual, never sent raw.
    let tls_addr: SocketAddr = format!("127.{b}.2.1:8443").parse().unwrap();
    let (head, secure) = blocking(|| {
        crate::tls::wait_for(tls_addr);
        let mut connection = crate::tls::KeepAlive::open(tls_addr, certs::DEV_CA_PEM);
        let _miss = connection.get("/large");
        connection.get("/large")
    });
    assert!(head.contains("cache-status: meridian; hit"), "{head}");
    assert!(secure == large, "TLS hit differs from the origin's body");
    assert_eq!(zero_copy_bytes(&admin).await, after_ranges);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_gets_every_byte_even_when_the_body_is_purged_and_replaced() {
    // Larger than what the kernel buffers on loopback, so the edge finds
    // the socket full and must wait for the reader.
    const LEN: usize = 12 * 1024 * 1024;
    let version = Arc::new(AtomicUsize::new(1));
    let served = version.clone();
    let (s, admin) = setup(128, move |_| {
        cacheable(body(LEN, served.load(Ordering::SeqCst)))
    });
    let original = body(LEN, 1);
    assert!(s.get("/big").await.body == original);

    // A raw client asks for the stored body and then reads nothing for a
    // while: the edge fills the socket and waits.
    let mut slow = TcpStream::connect(s.edge.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = raw::request("GET", "/big", "cdn.meridian.test:8080", &[], "");
    slow.write_all(request.as_bytes()).unwrap();
    let mut first = vec![0; 64 * 1024];
    slow.read_exact(&mut first).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile the object is purged and stored again with other bytes.
    version.store(2, Ordering::SeqCst);
    let urls = r#"{"urls": ["http://cdn.meridian.test/big"]}"#;
    let purged = crate::purge::purge(&admin, urls, Some(crate::purge::TOKEN)).await;
    assert_eq!(purged.status, 200);
    for _ in 0..2 {
        assert!(s.get("/big").await.body == body(LEN, 2));
    }

    // The slow client still gets exactly the body it asked for.
    let mut rest = Vec::new();
    blocking(|| slow.read_to_end(&mut rest)).unwrap();
    first.extend_from_slice(&rest);
    let slow = raw::Response::parse(&first, true);
    assert_eq!(slow.status(), 200, "{}", slow.head);
    assert!(
        slow.field("cache-status")
            .is_some_and(|c| c.starts_with("meridian; hit"))
    );
    assert!(slow.body == original, "the slow reader got other bytes");
    // Both hits went out from pages, every byte, the slow one included.
    assert_eq!(
        zero_copy_bytes_reaching(&admin, 2 * LEN as u64).await,
        2 * LEN as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_stored_from_a_chunked_response_is_sent_from_pages_too() {
    let large = body(200 * 1024 + 7, 3);
    let served = large.clone();
    let (s, admin) = setup(129, move |_| {
        // No Content-Length: the body arrives in chunks of 64 KiB.
        let mut raw = b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
        for chunk in served.chunks(64 * 1024) {
            raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            raw.extend_from_slice(chunk);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        Reply::Raw(raw)
    });
    assert!(s.get("/chunked").await.body == large);
    let hit = s.get("/chunked").await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert!(hit.body == large);
    assert_eq!(
        zero_copy_bytes_reaching(&admin, large.len() as u64).await,
        large.len() as u64
    );
}
