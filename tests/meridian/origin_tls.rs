//! `https://` origins: edges speak TLS to them and verify their
//! certificates against `edge.origin_ca_file`.

use crate::harness::{
    Cdn, Edge, RunToEnd, Topology, bin, blocking, edge, get_text, meridian, tcp_listening, tempdir,
    write,
};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTPS origin: answers `/healthz` with 200 and anything else with a
/// cacheable 200 naming the path; counts the requests it reads (health
/// checks excluded).
struct HttpsOrigin {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    /// Hosts the edge sent, for checking what the origin saw.
    hosts: Arc<Mutex<Vec<String>>>,
}

impl HttpsOrigin {
    /// Serves on `ip`:8000 with certificates issued for `ip`; those
    /// certificates too, for their CA.
    fn start(ip: &str) -> (HttpsOrigin, certs::DevCerts) {
        let certs = issue_for(ip);
        (HttpsOrigin::serve(&format!("{ip}:8000"), &certs), certs)
    }

    /// Serves on `addr` with `certs`' edge chain and key (whatever names
    /// they were issued for).
    fn serve(addr: &str, certs: &certs::DevCerts) -> HttpsOrigin {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain =
            rustls::pki_types::pem::PemObject::pem_slice_iter(certs.edge_chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
        let key = rustls::pki_types::pem::PemObject::from_pem_slice(certs.edge_key_pem.as_bytes())
            .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (requests.clone(), hosts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (config, count, seen) = (config.clone(), count.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, config, &count, &seen));
            }
        });
        HttpsOrigin {
            addr,
            requests,
            hosts,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    count: &AtomicUsize,
    hosts: &Mutex<Vec<String>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    loop {
        let mut head = Vec::new();
        {
            let mut reader = BufReader::new(&mut tls);
            loop {
                let mut line = String::new();
                // A failed handshake or a closed connection ends here.
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            // GETs only: nothing buffered beyond the head is lost.
        }
        let path = head
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_owned();
        let body = if path == "/healthz" {
            "ok\n".to_owned()
        } else {
            count.fetch_add(1, Ordering::SeqCst);
            if let Some(host) = head
                .iter()
                .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
            {
                hosts.lock().unwrap().push(host.to_owned());
            }
            format!("{path} over TLS\n")
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncache-control: max-age=60\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
    }
}

/// Certificates for an origin reached by address: an IP SAN, no name.
fn issue_for(ip: &str) -> certs::DevCerts {
    certs::generate(&certs::DevCertSpec {
        names: vec![],
        ip_addresses: vec![ip.parse().unwrap()],
        valid_days: 30,
    })
    .unwrap()
}

/// The demo on `block` with eu-west's origin at `https://127.B.2.2:8000`,
/// verified against `ca_file`.
fn with_https_origin(block: u8, ca_file: &std::path::Path) -> Topology {
    Topology::demo(block)
        .https_origin(2)
        .origin_ca_file(ca_file)
}

/// Whether `edge`'s health checks consider eu-west's origin up, polled
/// until it equals `expected` or 5 s pass.
async fn wait_for_origin_health(block: u8, expected: bool) -> bool {
    let url = format!("http://127.{block}.2.1:9080/status");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status: serde_json::Value = serde_json::from_str(&get_text(&url).await).unwrap();
        let up = status["origins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["region"] == "eu-west")
            .map(|o| o["up"] == true)
            .unwrap();
        if up == expected || std::time::Instant::now() > deadline {
            return up;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_origin_is_verified_and_cached_from() {
    let b = 119;
    let (origin, certs) = HttpsOrigin::start(&format!("127.{b}.2.2"));
    let dir = tempdir();
    let ca_file = write(&dir, "origin-ca.pem", &certs.ca_cert_pem);
    let edge = edge(&with_https_origin(b, &ca_file), 2);
    let cdn = Cdn::via(edge.addr);
    for _ in 0..2 {
        let answer = cdn.get("/secure.txt").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-meridian-origin"), "eu-west");
        assert_eq!(answer.text(), "/secure.txt over TLS\n");
    }
    // The second was a hit; the origin saw the client's host name.
    assert_eq!(origin.requests(), 1);
    assert_eq!(*origin.hosts.lock().unwrap(), ["cdn.meridian.test:8080"]);
    assert_eq!(origin.addr.port(), 8000);
    // The health checks reach it over TLS too: after several probe
    // intervals (two failures would mark it down), it is still up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(wait_for_origin_health(b, true).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_origin_signed_by_another_ca_is_refused() {
    let b = 120;
    let ip = format!("127.{b}.2.2");
    let (origin, _) = HttpsOrigin::start(&ip);
    // The bundle holds a different CA than the one that signed the origin.
    let stranger = issue_for(&ip);
    let dir = tempdir();
    let ca_file = write(&dir, "origin-ca.pem", &stranger.ca_cert_pem);
    let edge = edge(&with_https_origin(b, &ca_file), 2);
    let answer = Cdn::via(edge.addr).get("/secure.txt").await;
    assert_eq!(answer.status, 502);
    assert!(answer.cache_status().contains("detail="), "{answer:?}");
    assert_eq!(
        origin.requests(),
        0,
        "a request went to an unverified origin"
    );
    // Its health checks fail verification the same way.
    assert!(
        !wait_for_origin_health(b, false).await,
        "still considered up"
    );
}

#[test]
fn a_bad_origin_ca_file_is_refused_at_start_with_its_path() {
    let b = 121;
    let dir = tempdir();
    let certs = issue_for(&format!("127.{b}.2.2"));
    for (contents, reason) in [
        ("not PEM at all".to_owned(), "no certificate"),
        (certs.edge_key_pem.clone(), "only certificates"),
    ] {
        let ca_file = write(&dir, "origin-ca.pem", &contents);
        let config = with_https_origin(b, &ca_file).write(dir.path()).unwrap();
        let address = format!("127.{b}.2.1");
        let edge = [
            "edge",
            "--region",
            "eu-west",
            "--address",
            &address,
            "--config",
        ];
        let stderr = meridian().args(edge).arg(&config).ran().fails();
        assert!(
            stderr.contains(&ca_file.display().to_string()) && stderr.contains(reason),
            "{stderr}"
        );
        assert!(
            !tcp_listening(format!("127.{b}.2.1:8080").parse().unwrap()),
            "bound anyway"
        );
    }
}

#[test]
fn the_demo_origins_do_not_pretend_to_serve_https() {
    let b = 122;
    let dir = tempdir();
    let ca_file = write(&dir, "origin-ca.pem", &issue_for("127.0.0.1").ca_cert_pem);
    let config = with_https_origin(b, &ca_file).write(dir.path()).unwrap();
    meridian()
        .args(["config", "check"])
        .arg(&config)
        .ran()
        .succeeds();
    for args in [
        &["origin", "--region", "eu-west", "--config"][..],
        &["up", "--config"][..],
    ] {
        let stderr = meridian().args(args).arg(&config).ran().fails();
        assert!(
            stderr.contains("https://127.122.2.2:8000") && stderr.contains("plain HTTP"),
            "{stderr}"
        );
    }
    assert!(!tcp_listening(format!("127.{b}.2.2:8000").parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ad_hoc_edge_verifies_an_https_origin_against_the_system_roots() {
    let b = 125;
    let ip = format!("127.{b}.0.2");
    let (origin, certs) = HttpsOrigin::start(&ip);
    let dir = tempdir();
    // "The system's roots", as OpenSSL and rustls read them: this test's
    // CA stands in for the machine's bundle.
    let roots = write(&dir, "roots.pem", &certs.ca_cert_pem);
    let listen: SocketAddr = format!("127.{b}.0.1:8080").parse().unwrap();
    let start = |roots: &std::path::Path| {
        let mut command = std::process::Command::new(bin());
        command
            .args(["edge", "--listen", &listen.to_string(), "--origin"])
            .arg(format!("https://{ip}:8000"))
            .env("SSL_CERT_FILE", roots)
            .env_remove("SSL_CERT_DIR");
        Edge::ad_hoc_command(command, listen).unwrap()
    };
    let cdn = Cdn::at(listen);
    {
        let _edge = blocking(|| start(&roots));
        let answer = cdn.get("/ad-hoc.txt").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "/ad-hoc.txt over TLS\n");
        assert_eq!(origin.requests(), 1);
    }
    // With roots that do not include the origin's CA, nothing reaches it.
    let stranger = write(&dir, "stranger.pem", &issue_for(&ip).ca_cert_pem);
    let _edge = blocking(|| start(&stranger));
    assert_eq!(cdn.get("/ad-hoc.txt").await.status, 502);
    assert_eq!(origin.requests(), 1);
}
