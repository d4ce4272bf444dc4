//! Starting `meridian` on a private loopback block, and talking to it.

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The built binary under test.
pub fn meridian() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("meridian-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo topology moved onto 127.`block`.x.y: GeoDNS on
/// 127.`block`.0.1:5353, region N's edge on 127.`block`.N.1:8080 and its
/// origin on 127.`block`.N.2:8000.
pub fn config_on_block(block: u8) -> String {
    let demo = config::DEMO_TOML;
    assert!(demo.contains("127.0.0.1:5353"));
    demo.replace("127.0.0.1:5353", &format!("127.{block}.0.1:5353"))
        .replace("127.0.0.1:9153", &format!("127.{block}.0.1:9153"))
        .replace("127.0.0.1:9000", &format!("127.{block}.0.1:9000"))
        .replace(
            "addresses = [\"127.0.0.1\"]",
            &format!("addresses = [\"127.{block}.0.1\"]"),
        )
        .replace("127.0.1.", &format!("127.{block}.1."))
        .replace("127.0.2.", &format!("127.{block}.2."))
        .replace("127.0.3.", &format!("127.{block}.3."))
}

/// `config` with the one line `old` replaced by `new`; the line must be
/// there exactly once, so an edit that no longer applies fails the test
/// instead of silently changing nothing.
pub fn with_line(config: &str, old: &str, new: &str) -> String {
    let lines: Vec<&str> = config.lines().collect();
    let found = lines.iter().filter(|line| line.trim() == old).count();
    assert_eq!(found, 1, "the config has {found} lines {old:?}");
    lines
        .iter()
        .map(|line| if line.trim() == old { new } else { line })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running `meridian up`, killed on drop; its output is replayed if the
/// test failed.
pub struct Up {
    pub child: Child,
    pub stdout: Vec<String>,
    stderr: mpsc::Receiver<String>,
    pub block: u8,
    _dir: TempDir,
}

impl Up {
    /// Starts `meridian up` on `block` and waits until it says it is up.
    pub fn start(block: u8) -> Up {
        Up::start_with(block, &config_on_block(block))
    }

    /// The same with `config`, which must be [`config_on_block`]`(block)`
    /// with changes.
    pub fn start_with(block: u8, config: &str) -> Up {
        let dir = TempDir::new(&format!("up-{block}"));
        let config = dir.write("meridian.toml", config);
        let mut child = meridian()
            .args(["up", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = spawn_line_reader(child.stderr.take().unwrap());
        let stdout = spawn_line_reader(child.stdout.take().unwrap());
        let mut up = Up {
            child,
            stdout: Vec::new(),
            stderr,
            block,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match stdout.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let done = line.contains("Ctrl-C stops everything");
                    up.stdout.push(line);
                    if done {
                        return up;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = up.child.try_wait() {
                        panic!("meridian up exited with {status} before it was up");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "meridian up did not come up within 60 s"
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("meridian up closed its stdout")
                }
            }
        }
    }

    pub fn dns(&self) -> SocketAddr {
        format!("127.{}.0.1:5353", self.block).parse().unwrap()
    }

    /// Runs `meridian ARGS --config <this topology's config>`.
    pub fn command(&self, args: &[&str]) -> std::process::Output {
        meridian()
            .args(args)
            .arg("--config")
            .arg(self._dir.0.join("meridian.toml"))
            .output()
            .unwrap()
    }

    pub fn edge(&self, region: u8) -> SocketAddr {
        format!("127.{}.{region}.1:8080", self.block)
            .parse()
            .unwrap()
    }

    /// `meridian status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let output = self.command(&["status", "--json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- meridian up stdout ---");
            for line in &self.stdout {
                eprintln!("{line}");
            }
            eprintln!("--- meridian up stderr ---");
            for line in self.stderr.try_iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// Reads lines on a thread so a test can wait on them with a timeout.
pub fn spawn_line_reader(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A DNS answer, reduced to what tests check.
#[derive(Debug)]
pub struct DnsAnswer {
    pub message: Message,
    pub addresses: Vec<IpAddr>,
    pub scope: Option<u8>,
}

/// Asks `server` for `name`/`record_type` over UDP, with an ECS option for
/// `subnet` (e.g. "81.2.69.0/24") when given.
pub fn dns_query(
    server: SocketAddr,
    name: &str,
    record_type: RecordType,
    subnet: Option<&str>,
) -> DnsAnswer {
    let mut query = Message::query();
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(subnet) = subnet {
        let subnet: ClientSubnet = subnet.parse().unwrap();
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    query.set_edns(edns);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(&query.to_vec().unwrap(), server).unwrap();
    let mut buffer = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buffer).expect("a DNS answer");
    let message = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(message.metadata.id, query.metadata.id);
    let addresses = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    let scope = message.edns.as_ref().and_then(|e| {
        match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        }
    });
    DnsAnswer {
        message,
        addresses,
        scope,
    }
}

/// Whether anything still listens on `addr` (TCP).
pub fn tcp_listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// One `meridian edge --region R` process, killed on drop; its stderr is
/// replayed if the test failed.
pub struct EdgeProcess {
    child: Child,
    stderr: mpsc::Receiver<String>,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl EdgeProcess {
    /// Starts region `region` (1-3) of `config` on block `block`.
    pub fn start(block: u8, region: u8, config: &str) -> EdgeProcess {
        let name = ["us-east", "eu-west", "ap-southeast"][usize::from(region - 1)];
        let dir = TempDir::new(&format!("edge-{block}-{region}"));
        let path = dir.write("meridian.toml", config);
        let mut child = meridian()
            .args(["edge", "--region", name, "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = spawn_line_reader(child.stderr.take().unwrap());
        let addr: SocketAddr = format!("127.{block}.{region}.1:8080").parse().unwrap();
        let edge = EdgeProcess {
            child,
            stderr,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tcp_listening(addr) {
            assert!(
                Instant::now() < deadline,
                "the edge did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        edge
    }
}

impl EdgeProcess {
    /// `meridian edge --listen 127.B.0.1:8080 --origin http://127.B.0.2:8000`:
    /// one edge, one origin, any Host, no config.
    pub fn ad_hoc(block: u8) -> EdgeProcess {
        Self::ad_hoc_with(block, &[])
    }

    /// [`EdgeProcess::ad_hoc`] with more flags, e.g. `--forward-header`.
    pub fn ad_hoc_with(block: u8, flags: &[&str]) -> EdgeProcess {
        let dir = TempDir::new(&format!("adhoc-{block}"));
        let addr: SocketAddr = format!("127.{block}.0.1:8080").parse().unwrap();
        let mut child = meridian()
            .args([
                "edge",
                "--listen",
                &addr.to_string(),
                "--origin",
                &format!("http://127.{block}.0.2:8000"),
            ])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = spawn_line_reader(child.stderr.take().unwrap());
        let edge = EdgeProcess {
            child,
            stderr,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tcp_listening(addr) {
            assert!(
                Instant::now() < deadline,
                "the edge did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        edge
    }
}

impl EdgeProcess {
    /// The lines the edge has written to stderr since the last call.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Sends `signal` to the edge process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- edge stderr ---");
            for line in self.stderr.try_iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// A client that sends every request for cdn.meridian.test to `edge`.
pub fn client_via(edge: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .resolve("cdn.meridian.test", edge)
        .build()
        .unwrap()
}

/// The body of a GET of `url` (an admin endpoint, say), straight to it.
pub async fn get_text(url: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
