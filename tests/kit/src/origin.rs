//! Origins a test controls: [`ScriptedOrigin`], a raw HTTP/1.1 server
//! whose every answer a test (or a benchmark) chooses and which counts what
//! it received, raw TCP so that it can do what real servers do when they
//! fail (close mid-request, hang, answer 5xx, trickle); and
//! [`RecordingOrigin`], which keeps the raw bytes of every connection.
//! Both run on threads of their own, a thread per connection.

use super::error::{KitError, lock};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The request target as sent.
    pub path: String,
    /// Header fields, names lowercase (the last of repeated ones).
    pub headers: HashMap<String, String>,
    /// The body (by Content-Length).
    pub body: Vec<u8>,
}

/// What the origin does with a request.
pub enum Reply {
    /// Answer with this status, these headers and body.
    Respond(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Read the request, then close the connection without answering.
    Close,
    /// Send these bytes as the whole answer, then close.
    Raw(Vec<u8>),
    /// Promise `promised` body bytes, send `sent`, then close.
    Truncated {
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
        /// The Content-Length announced.
        promised: usize,
        /// What is actually sent.
        sent: Vec<u8>,
    },
    /// Send headers with these, then a `length`-byte body one byte every
    /// `every`.
    Trickle {
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
        /// The body's length.
        length: usize,
        /// The pause before each byte.
        every: Duration,
    },
}

/// A 200 with these headers and body.
pub fn ok(headers: &[(&'static str, &str)], body: &str) -> Reply {
    Reply::Respond(
        200,
        headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
        body.as_bytes().to_vec(),
    )
}

/// A running scripted origin; stops accepting when dropped.
pub struct ScriptedOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    listener: TcpListener,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedOrigin {
    /// Serves on `addr`; `/healthz` always answers 200, everything else
    /// as `script` says.
    pub fn start(
        addr: &str,
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Result<ScriptedOrigin, KitError> {
        let listener =
            TcpListener::bind(addr).map_err(KitError::io(format!("listen on {addr}")))?;
        let addr = listener
            .local_addr()
            .map_err(KitError::io("read a listener's address"))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let accepting = accept(&listener, move |stream| serve(stream, &script, &log))?;
        Ok(ScriptedOrigin {
            addr,
            received,
            listener,
            accepting: Some(accepting),
        })
    }

    /// Requests received for `method path` (health checks excluded).
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.received)
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// Every request received, health checks excluded.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        stop_accepting(&self.listener, self.accepting.take());
    }
}

/// Accepts connections on a clone of `listener` until [`stop_accepting`],
/// each handed to `handle` on a thread of its own.
fn accept(
    listener: &TcpListener,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) -> Result<std::thread::JoinHandle<()>, KitError> {
    let accept = listener
        .try_clone()
        .map_err(KitError::io("clone a listener"))?;
    let handle = Arc::new(handle);
    Ok(std::thread::spawn(move || {
        for stream in accept.incoming() {
            let Ok(stream) = stream else { return };
            let handle = handle.clone();
            std::thread::spawn(move || handle(stream));
        }
    }))
}

/// Ends an accept loop on `listener` (a clone of the one it accepts on)
/// and waits for it, so that the address is free again when this returns:
/// the listener is made non-blocking and sent one connection, after which
/// the loop's next accept fails and it returns.
fn stop_accepting(listener: &TcpListener, accepting: Option<std::thread::JoinHandle<()>>) {
    let _ = listener.set_nonblocking(true);
    if let Ok(addr) = listener.local_addr() {
        let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    }
    if let Some(accepting) = accepting {
        let _ = accepting.join();
    }
}

fn serve(stream: TcpStream, script: &impl Fn(&Received) -> Reply, log: &Mutex<Vec<Received>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(reading) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reading);
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Received {
            method,
            path,
            headers,
            body,
        };
        let reply = if request.path == "/healthz" {
            Reply::Respond(200, vec![], b"ok\n".to_vec())
        } else {
            lock(log).push(request.clone());
            script(&request)
        };
        match reply {
            Reply::Close => return,
            Reply::Raw(bytes) => {
                let _ = writer.write_all(&bytes);
                return;
            }
            Reply::Truncated {
                headers,
                promised,
                sent,
            } => {
                let _ = writer.write_all(head(200, promised, headers).as_bytes());
                let _ = writer.write_all(&sent);
                let _ = writer.flush();
                return;
            }
            Reply::Trickle {
                headers,
                length,
                every,
            } => {
                if writer
                    .write_all(head(200, length, headers).as_bytes())
                    .is_err()
                {
                    return;
                }
                for _ in 0..length {
                    std::thread::sleep(every);
                    if writer
                        .write_all(b"x")
                        .and_then(|()| writer.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Reply::Respond(status, headers, body) => {
                let head = head(status, body.len(), headers);
                // A 304 and any answer to a HEAD carry no body (but the
                // length of the one a GET would get).
                let body: &[u8] = if status == 304 || request.method == "HEAD" {
                    &[]
                } else {
                    &body
                };
                if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body).is_err() {
                    return;
                }
            }
        }
    }
}

/// A response head: `status`, a `Content-Length` of `length`, `headers`.
fn head(status: u16, length: usize, headers: Vec<(&'static str, String)>) -> String {
    let mut head = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: {length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// The bytes of one connection, as they arrive.
type Recording = Arc<Mutex<Vec<u8>>>;

/// An origin that records the raw bytes of every connection, for tests
/// that must see exactly what reached it (whether a request's body ever
/// ended, say). It answers `GET /healthz` so health checks pass, and
/// nothing else: each other connection is read until the peer closes it.
pub struct RecordingOrigin {
    connections: Arc<Mutex<Vec<Recording>>>,
    listener: TcpListener,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl RecordingOrigin {
    /// Listens on `addr`.
    pub fn start(addr: &str) -> Result<RecordingOrigin, KitError> {
        let listener =
            TcpListener::bind(addr).map_err(KitError::io(format!("listen on {addr}")))?;
        let connections: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let log = connections.clone();
        let accepting = accept(&listener, move |stream| {
            let bytes: Recording = Arc::default();
            lock(&log).push(bytes.clone());
            record(stream, &bytes);
        })?;
        Ok(RecordingOrigin {
            connections,
            listener,
            accepting: Some(accepting),
        })
    }

    /// What each connection carried so far, health checks left out.
    pub fn seen(&self) -> Vec<Vec<u8>> {
        lock(&self.connections)
            .iter()
            .map(|bytes| lock(bytes).clone())
            .filter(|bytes| !bytes.is_empty())
            .collect()
    }
}

/// Keeps what arrives on `stream` in `bytes` until the peer closes it,
/// answering health checks.
fn record(mut stream: TcpStream, bytes: &Mutex<Vec<u8>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut seen = lock(bytes);
                seen.extend_from_slice(&buf[..n]);
                if seen.starts_with(b"GET /healthz ") && seen.ends_with(b"\r\n\r\n") {
                    seen.clear();
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
                }
            }
        }
    }
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        stop_accepting(&self.listener, self.accepting.take());
    }
}
