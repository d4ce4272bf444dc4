//! HTTPS at the edges: a rustls client that trusts only the development CA.

use crate::harness::{
    Cdn, Edge, RunToEnd, ScriptedOrigin, Topology, blocking, edge, eventually, meridian, ok,
    tcp_listening, tempdir,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn install_provider() {
    // The edges use ring; so do these clients. Installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS connection to `addr` for `name`, trusting `ca_pem` and offering
/// `alpn`, reads on it giving up after `read_timeout` (the handshake
/// happens on first use).
fn connect(
    addr: SocketAddr,
    name: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
    read_timeout: Duration,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(client_config(ca_pem, alpn), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(read_timeout)).unwrap();
    rustls::StreamOwned::new(connection, socket)
}

/// A raw rustls handshake: the leaf certificate the server sent, or the error.
fn handshake(addr: SocketAddr, name: &str, ca_pem: &str) -> Result<Vec<u8>, String> {
    let mut tls = connect(addr, name, ca_pem, &[], Duration::from_secs(3));
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec())
}

/// An open HTTPS connection (HTTP/1.1) that can send several requests.
pub(crate) struct KeepAlive(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

impl KeepAlive {
    pub(crate) fn open(addr: SocketAddr, ca_pem: &str) -> KeepAlive {
        let alpn: &[&[u8]] = &[b"http/1.1"];
        let read_timeout = Duration::from_secs(3);
        KeepAlive(connect(addr, NAME, ca_pem, alpn, read_timeout))
    }

    /// GETs `path` and returns the response head and body (the response
    /// must carry a Content-Length).
    pub(crate) fn get(&mut self, path: &str) -> (String, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: cdn.meridian.test\r\n\r\n");
        self.0.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&answer).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    return (head, answer[end + 4..end + 4 + length].to_vec());
                }
            }
            let n = self.0.read(&mut buf).unwrap();
            assert!(n > 0, "the connection closed");
            answer.extend_from_slice(&buf[..n]);
        }
    }

    /// GETs the health path and returns the status line.
    fn health(&mut self) -> String {
        let (head, _) = self.get("/_meridian/health");
        head.lines().next().unwrap_or_default().to_owned()
    }
}

/// The protocol ALPN settles on when the client offers `offered`.
fn negotiated(addr: SocketAddr, offered: &[&[u8]]) -> Option<Vec<u8>> {
    let mut tls = connect(
        addr,
        NAME,
        certs::DEV_CA_PEM,
        offered,
        Duration::from_secs(3),
    );
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls.conn.alpn_protocol().map(<[u8]>::to_vec)
}

/// The name the development certificate is for.
const NAME: &str = "cdn.meridian.test";

#[tokio::test(flavor = "multi_thread")]
async fn https_offers_http2_and_caches_like_http() {
    let b = 110;
    let generated =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(100));
    let date = generated.clone();
    let origin = ScriptedOrigin::start(&format!("127.{b}.2.2:8000"), move |_| {
        ok(
            &[("cache-control", "max-age=600"), ("date", &date)],
            "secure body",
        )
    })
    .unwrap();
    let (edge, tls_addr) = blocking(|| https_edge(&Topology::demo(b)));
    let (h2, h1) = blocking(|| {
        let both: &[&[u8]] = &[b"h2", b"http/1.1"];
        let only_h1: &[&[u8]] = &[b"http/1.1"];
        (negotiated(tls_addr, both), negotiated(tls_addr, only_h1))
    });
    assert_eq!(h2.as_deref(), Some(&b"h2"[..]), "h2 negotiated by ALPN");
    assert_eq!(h1.as_deref(), Some(&b"http/1.1"[..]));
    let (first, second) = blocking(|| {
        let mut connection = KeepAlive::open(tls_addr, certs::DEV_CA_PEM);
        (connection.get("/asset"), connection.get("/asset"))
    });
    assert!(first.0.starts_with("HTTP/1.1 200"), "{}", first.0);
    assert!(
        first.0.contains("cache-status: meridian; fwd=miss; stored"),
        "{}",
        first.0
    );
    assert_eq!(first.1, b"secure body");
    assert!(
        second.0.contains("cache-status: meridian; hit"),
        "{}",
        second.0
    );
    assert_eq!(second.1, b"secure body");
    // A hit over TLS carries the stored Date too.
    assert!(
        second.0.contains(&format!("Date: {generated}")),
        "{}",
        second.0
    );
    // Origins hear that the client used HTTPS.
    assert_eq!(origin.received()[0].headers["x-forwarded-proto"], "https");
    // Plain HTTP keeps working beside it, with its own cache entry.
    let plain = Cdn::via(edge.addr).get("/asset").await;
    assert_eq!(plain.status, 200);
    assert!(!plain.is_hit(), "{plain:?}");
}

#[test]
fn the_wrong_name_or_an_untrusted_ca_fails_verification() {
    let (_edge, tls_addr) = https_edge(&Topology::demo(111));
    handshake(tls_addr, "cdn.meridian.test", certs::DEV_CA_PEM).unwrap();
    handshake(tls_addr, "anything.meridian.test", certs::DEV_CA_PEM).unwrap();
    let wrong_name = handshake(tls_addr, "evil.example", certs::DEV_CA_PEM);
    assert!(
        wrong_name.is_err(),
        "a certificate for another name was accepted"
    );
    let other_ca = generate(30);
    let untrusted = handshake(tls_addr, "cdn.meridian.test", &other_ca.ca_cert_pem);
    assert!(untrusted.is_err(), "verified without the development CA");
}

/// A TLS 1.1 ClientHello, written by hand: rustls clients cannot speak it.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two TLS 1.1 cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn tls_1_1_is_refused() {
    let (_edge, tls_addr) = https_edge(&Topology::demo(112));
    let mut socket = TcpStream::connect(tls_addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.write_all(&tls11_client_hello()).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    // Either an alert record (0x15) or a closed connection; never a
    // ServerHello (a handshake record, 0x16).
    assert_ne!(
        answer.first(),
        Some(&0x16),
        "the edge negotiated TLS 1.1: {answer:02x?}"
    );
    // The edge still serves modern clients.
    handshake(tls_addr, "cdn.meridian.test", certs::DEV_CA_PEM).unwrap();
}

/// A CA and a certificate for cdn.meridian.test it signs.
fn generate(valid_days: u32) -> certs::DevCerts {
    let spec = certs::DevCertSpec {
        names: vec![NAME.into()],
        ip_addresses: vec![],
        valid_days,
    };
    certs::generate(&spec).unwrap()
}

/// [`generate`], written to `dir`.
fn issue(dir: &std::path::Path, valid_days: u32) -> certs::DevCerts {
    let generated = generate(valid_days);
    std::fs::write(dir.join("chain.pem"), &generated.edge_chain_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &generated.edge_key_pem).unwrap();
    generated
}

fn with_files(block: u8, dir: &std::path::Path) -> Topology {
    Topology::demo(block).certificate_files(&dir.join("chain.pem"), &dir.join("key.pem"))
}

#[test]
fn certificates_reload_on_sighup_without_dropping_connections() {
    let b = 113;
    let dir = tempdir();
    let first = issue(dir.path(), 30);
    let (edge, tls_addr) = https_edge(&with_files(b, dir.path()));
    let before = handshake(tls_addr, "cdn.meridian.test", &first.ca_cert_pem).unwrap();
    // A connection opened before the reload...
    let mut established = KeepAlive::open(tls_addr, &first.ca_cert_pem);
    assert!(established.health().contains("200"));
    let second = issue(dir.path(), 30);
    edge.signal(nix::sys::signal::Signal::SIGHUP);
    let mut after = Vec::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            match handshake(tls_addr, "cdn.meridian.test", &second.ca_cert_pem) {
                Ok(leaf) => {
                    after = leaf;
                    true
                }
                Err(_) => false,
            }
        }),
        "the new certificate was never served"
    );
    assert_ne!(before, after);
    // ...keeps working on its old certificate.
    assert!(established.health().contains("200"));
    // A broken replacement is refused; the new certificate stays.
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    edge.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        handshake(tls_addr, "cdn.meridian.test", &second.ca_cert_pem).unwrap(),
        after
    );
}

#[test]
fn a_bad_certificate_is_refused_at_start_with_its_path() {
    let b = 114;
    let dir = tempdir();
    std::fs::write(dir.path().join("chain.pem"), "garbage").unwrap();
    std::fs::write(dir.path().join("key.pem"), "garbage").unwrap();
    let config = with_files(b, dir.path()).write(dir.path()).unwrap();
    let edge = [
        "edge",
        "--region",
        "eu-west",
        "--address",
        &format!("127.{b}.2.1"),
        "--config",
    ];
    let stderr = meridian().args(edge).arg(&config).ran().fails();
    assert!(
        stderr.contains(&dir.path().join("chain.pem").display().to_string()),
        "{stderr}"
    );
    assert!(
        !tcp_listening(format!("127.{b}.2.1:8080").parse().unwrap()),
        "bound anyway"
    );
    // Expired.
    issue(dir.path(), 0);
    std::thread::sleep(Duration::from_millis(1100));
    let stderr = meridian().args(edge).arg(&config).ran().fails();
    assert!(stderr.contains("expired"), "{stderr}");
}

/// Region 2's edge of `topology`, once its HTTPS listener accepts; and
/// that listener's address.
fn https_edge(topology: &Topology) -> (Edge, SocketAddr) {
    let edge = edge(topology, 2);
    let tls_addr = topology.edge_https(2);
    wait_for(tls_addr);
    (edge, tls_addr)
}

/// Waits until `addr` accepts connections (an edge logs its HTTPS
/// listener before its HTTP one is up, but binds them together).
pub(crate) fn wait_for(addr: SocketAddr) {
    assert!(
        eventually(Duration::from_secs(60), || tcp_listening(addr)),
        "{addr} never listened"
    );
}

#[test]
fn an_idle_http2_connection_is_closed_like_an_idle_http1_one() {
    let topology = Topology::demo(126).client_header_timeout(Duration::from_secs(1));
    let (_edge, tls_addr) = https_edge(&topology);
    // The client preface and an empty SETTINGS frame, then nothing.
    let Http2(mut tls) = Http2::open(tls_addr);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = loop {
        if started.elapsed() > Duration::from_secs(5) {
            break false;
        }
        match tls.read(&mut buf) {
            Ok(0) => break true,
            // SETTINGS, its ACK, and a GOAWAY before the close.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break true,
        }
    };
    assert!(closed, "an idle HTTP/2 connection stayed open");
}

/// A raw HTTP/2 client over TLS, writing frames by hand so a test can
/// send what well-behaved client libraries refuse to (a DATA frame that
/// contradicts `content-length`, say).
pub(crate) struct Http2(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Http2 {
    pub(crate) fn open(addr: SocketAddr) -> Http2 {
        let h2: &[&[u8]] = &[b"h2"];
        let read_timeout = Duration::from_millis(200);
        let mut stream = connect(addr, NAME, certs::DEV_CA_PEM, h2, read_timeout);
        // The client preface and an empty SETTINGS frame.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        Http2(stream)
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.0.write_all(&frame).unwrap();
    }

    /// A HEADERS frame, each field a literal without indexing (RFC 7541
    /// §6.2.2), names and values under 127 bytes.
    pub(crate) fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0);
            block.push(u8::try_from(name.len()).unwrap());
            block.extend_from_slice(name.as_bytes());
            block.push(u8::try_from(value.len()).unwrap());
            block.extend_from_slice(value.as_bytes());
        }
        let flags = 0x4 | u8::from(end_stream);
        self.frame(1, flags, stream, &block);
    }

    pub(crate) fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        self.frame(0, u8::from(end_stream), stream, data);
    }

    /// The (type, stream) of every frame the server sends for `wait`.
    pub(crate) fn frames_for(&mut self, wait: Duration) -> Vec<(u8, u32)> {
        let started = Instant::now();
        let mut received = Vec::new();
        let mut buf = [0u8; 16384];
        while started.elapsed() < wait {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let mut frames = Vec::new();
        let mut rest = &received[..];
        while rest.len() >= 9 {
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let stream = u32::from_be_bytes([rest[5] & 0x7f, rest[6], rest[7], rest[8]]);
            frames.push((rest[3], stream));
            rest = &rest[(9 + length).min(rest.len())..];
        }
        frames
    }
}
