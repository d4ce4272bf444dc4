use super::*;
use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn counter() -> IntCounter {
    IntCounter::new("sent", "bytes sent from pages").expect("counter")
}

/// A connected pair on loopback: the server side as the edge wraps it,
/// and the client side.
async fn pair(ip: &str) -> (Stream, TcpStream) {
    let (server, client) = accepted(ip).await;
    (ClientStream::wrap(server, counter()), client)
}

/// A connected pair on loopback: the server side unwrapped.
async fn accepted(ip: &str) -> (Stream, TcpStream) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr"));
    let (client, accepted) = tokio::join!(client, listener.accept());
    let accepted = accepted.expect("accept").0;
    #[cfg(target_os = "linux")]
    // Room for a whole test body: what a send takes then never depends on
    // when the client's acknowledgements come back.
    nix::sys::socket::setsockopt(&accepted, nix::sys::socket::sockopt::SndBuf, &(1 << 20))
        .expect("SO_SNDBUF");
    (Box::new(L4Stream::from(accepted)), client.expect("connect"))
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
}

async fn read_all(mut client: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    client.read_to_end(&mut received).await.expect("read");
    received
}

#[tokio::test]
async fn writes_of_a_response_not_held_go_out_at_once() {
    // Pingora streams a body of known length without flushing between its
    // pieces: each must reach the client as it is written.
    let (mut server, mut client) = pair("127.0.31.6").await;
    hold_response(&server, None);
    server.write_all(b"held").await.expect("write");
    server.flush().await.expect("flush");
    server.write_all(b" then streamed").await.expect("write");
    let mut received = vec![0; 18];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut received))
        .await
        .expect("the unflushed write arrived")
        .expect("read");
    assert_eq!(&received, b"held then streamed");
}

#[tokio::test]
async fn held_writes_keep_their_order_around_larger_ones() {
    let (mut server, client) = pair("127.0.31.2").await;
    let large = body(HELD_BYTES + 1);
    hold_response(&server, None);
    server.write_all(b"first ").await.expect("write");
    server.write_all(&large).await.expect("write");
    server.write_all(b" last").await.expect("write");
    server.shutdown().await.expect("shutdown");
    let mut expected = b"first ".to_vec();
    expected.extend_from_slice(&large);
    expected.extend_from_slice(b" last");
    assert!(
        read_all(client).await == expected,
        "bytes out of order or lost"
    );
}

#[tokio::test]
async fn an_idle_connection_does_not_keep_a_large_buffer() {
    let (tcp, _client) = accepted("127.0.31.4").await;
    let mut stream = ClientStream::new(tcp, counter());
    *stream.holding.get_mut() = true;
    stream.write_all(&body(HELD_BYTES)).await.expect("write");
    assert_eq!(stream.held.len(), HELD_BYTES, "small writes are held");
    stream.flush().await.expect("flush");
    assert!(stream.held.is_empty());
    assert_eq!(stream.held.capacity(), 0);
    *stream.holding.get_mut() = true;
    stream
        .write_all(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        .await
        .expect("write");
    stream.flush().await.expect("flush");
    assert!(
        stream.held.capacity() > 0,
        "a small buffer stays for the next head"
    );
}

/// A head as Pingora's HTTP/1 writer makes it, `Date` set to now.
const HEAD_WITH_NOW: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: Thu, 03 Dec 2026 13:29:25 GMT\r\nConnection: keep-alive\r\n\r\n";

#[tokio::test]
async fn a_held_head_carries_the_stored_date() {
    let (mut server, client) = pair("127.0.31.7").await;
    // Any HTTP date form the origin used is written as an IMF-fixdate.
    hold_response(&server, Some(b"Monday, 01-Jan-24 00:00:00 GMT"));
    server.write_all(HEAD_WITH_NOW).await.expect("head");
    server.write_all(b"ok").await.expect("body");
    server.shutdown().await.expect("shutdown");
    let received = String::from_utf8(read_all(client).await).expect("text");
    assert!(
        received.contains("\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n"),
        "{received}"
    );
    assert!(received.ends_with("\r\n\r\nok"), "{received}");
}

#[tokio::test]
async fn a_streamed_hit_gets_its_stored_date_and_the_body_as_it_comes() {
    let (mut server, mut client) = pair("127.0.31.8").await;
    stored_date(&server, Some(b"Mon, 01 Jan 2024 00:00:00 GMT"));
    server.write_all(HEAD_WITH_NOW).await.expect("head");
    server.write_all(b"o").await.expect("body");
    // Not held: the first piece goes out without waiting for a flush.
    let mut received = vec![0; HEAD_WITH_NOW.len() + 1];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut received))
        .await
        .expect("the head and the first piece arrived")
        .expect("read");
    let text = String::from_utf8(received).expect("text");
    assert!(
        text.contains("Date: Mon, 01 Jan 2024 00:00:00 GMT"),
        "{text}"
    );
    // The next response is left alone.
    server.write_all(b"k").await.expect("body");
    server.write_all(HEAD_WITH_NOW).await.expect("head");
    server.shutdown().await.expect("shutdown");
    let rest = String::from_utf8(read_all(client).await).expect("text");
    assert!(
        rest.contains("Date: Thu, 03 Dec 2026 13:29:25 GMT"),
        "{rest}"
    );
}

#[tokio::test]
async fn no_date_or_a_bad_one_leaves_the_head_alone() {
    for date in [None, Some(&b"yesterday"[..])] {
        let (mut server, client) = pair("127.0.31.9").await;
        hold_response(&server, date);
        server.write_all(HEAD_WITH_NOW).await.expect("head");
        server.shutdown().await.expect("shutdown");
        assert_eq!(read_all(client).await, HEAD_WITH_NOW);
    }
}

/// Writes Pingora's own answer to a head it could not parse, after the
/// client sent `request`; returns what the client got.
async fn pingoras_answer_to(request: &[u8]) -> String {
    let (mut server, mut client) = pair("127.0.31.10").await;
    client.write_all(request).await.expect("send");
    let mut buf = vec![0; request.len()];
    server.read_exact(&mut buf).await.expect("read");
    let mut head = pingora::protocols::http::ServerSession::generate_error(400);
    head.insert_header("connection", "close").expect("header");
    let mut wire = Vec::new();
    head.header_to_h1_wire(&mut wire);
    let mut response = b"HTTP/1.1 400 Bad Request\r\n".to_vec();
    response.extend_from_slice(&wire);
    response.extend_from_slice(b"\r\n");
    server.write_all(&response).await.expect("write");
    server.flush().await.expect("flush");
    server.shutdown().await.expect("shutdown");
    String::from_utf8(read_all(client).await).expect("text")
}

#[tokio::test]
async fn pingoras_answer_to_an_unreadable_head_is_replaced_by_the_edges() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let answer = pingoras_answer_to(long.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
        "{answer}"
    );
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        (0..300)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect::<String>()
    );
    let answer = pingoras_answer_to(many.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(!answer.to_ascii_lowercase().contains("pingora"), "{answer}");
    assert!(answer.contains("cache-status: meridian; detail=headers-too-large"));
}

#[tokio::test]
async fn other_heads_lose_only_pingoras_name() {
    let (mut server, client) = pair("127.0.31.11").await;
    server
        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    server.shutdown().await.expect("shutdown");
    assert_eq!(
        read_all(client).await,
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
    );
}

#[tokio::test]
async fn a_body_that_starts_like_a_head_is_not_touched() {
    let (mut server, client) = pair("127.0.31.12").await;
    let mut payload = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\n".to_vec();
    payload.extend(body(HELD_BYTES * 2));
    // A large body write is not a head Pingora wrote on its own: but even
    // if it looks like one, only whole heads Pingora makes are rewritten,
    // and those are never this large.
    server
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("head");
    server.shutdown().await.expect("shutdown");
    assert_eq!(
        read_all(client).await,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    );
}

/// Zero-copy sends (Linux, not the portable build): counted in TCP
/// segments, which is what they are for.
#[cfg(all(target_os = "linux", not(feature = "portable")))]
#[allow(unsafe_code)]
mod zero_copy_sends {
    use super::*;
    use crate::zero_copy::{MIN_BYTES, seal};
    use bytes::Bytes;
    use std::os::fd::AsRawFd;

    /// Segments that carried data into `socket` so far (TCP_INFO).
    fn data_segments_in(socket: &TcpStream) -> u32 {
        let mut info: nix::libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
        // SAFETY: `info` is a `tcp_info` of `len` bytes the kernel fills in.
        let status = unsafe {
            nix::libc::getsockopt(
                socket.as_raw_fd(),
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_INFO,
                std::ptr::from_mut(&mut info).cast(),
                &mut len,
            )
        };
        assert_eq!(status, 0, "TCP_INFO: {}", io::Error::last_os_error());
        info.tcpi_data_segs_in
    }

    /// Sends `head` and then `body` from a fresh connection; returns the
    /// bytes the client received and the number of segments they took.
    async fn send_fresh(ip: &str, head: &[u8], body: &Bytes) -> (Vec<u8>, u32) {
        let (mut server, mut client) = pair(ip).await;
        let before = data_segments_in(&client);
        hold_response(&server, None);
        server.write_all(head).await.expect("head");
        server.write_all(body).await.expect("body");
        server.flush().await.expect("flush");
        let mut received = vec![0; head.len() + body.len()];
        client.read_exact(&mut received).await.expect("read");
        (received, data_segments_in(&client) - before)
    }

    #[tokio::test]
    async fn the_head_rides_in_the_first_segment_of_a_sealed_body() {
        let data = body(MIN_BYTES + 8 * 1024);
        let sealed = seal(&[Bytes::from(data.clone())], data.len()).expect("sealed");
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 40960\r\n\r\n";
        let (received, with_head) = send_fresh("127.0.31.1", head, &sealed).await;
        assert_eq!(&received[..head.len()], head);
        assert!(received[head.len()..] == data[..], "the body's bytes");
        // How many segments TCP cuts the body alone into on a fresh
        // connection (the same on every one): the head adds none.
        let (_, body_alone) = send_fresh("127.0.31.1", b"", &sealed).await;
        assert_eq!(with_head, body_alone);
    }

    #[tokio::test]
    async fn a_held_response_leaves_in_one_send_at_its_flush() {
        let (mut server, mut client) = pair("127.0.31.5").await;
        let before = data_segments_in(&client);
        hold_response(&server, None);
        server
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("head");
        server.write_all(&body(1024)).await.expect("body");
        server.flush().await.expect("flush");
        let mut received = vec![0; 19 + 1024];
        client.read_exact(&mut received).await.expect("read");
        assert_eq!(data_segments_in(&client) - before, 1);
    }

    #[tokio::test]
    async fn a_chunked_sealed_body_keeps_its_framing() {
        let (mut server, client) = pair("127.0.31.3").await;
        let data = body(MIN_BYTES);
        let sealed = seal(&[Bytes::from(data.clone())], data.len()).expect("sealed");
        let size = format!("{:x}\r\n", data.len());
        let slices = [
            io::IoSlice::new(size.as_bytes()),
            io::IoSlice::new(&sealed),
            io::IoSlice::new(b"\r\n"),
        ];
        let mut expected = Vec::new();
        for slice in &slices {
            expected.extend_from_slice(slice);
        }
        hold_response(&server, None);
        let mut remaining = expected.len();
        let mut offset = 0;
        while remaining > 0 {
            // Resubmit what is left, as a writer of vectored I/O does.
            let mut rest = Vec::new();
            let mut skip = offset;
            for slice in &slices {
                if skip >= slice.len() {
                    skip -= slice.len();
                    continue;
                }
                rest.push(io::IoSlice::new(&slice[skip..]));
                skip = 0;
            }
            let written = server.write_vectored(&rest).await.expect("write");
            assert!(written > 0);
            offset += written;
            remaining -= written;
        }
        server.shutdown().await.expect("shutdown");
        assert!(
            read_all(client).await == expected,
            "chunk framing or body lost"
        );
    }
}
