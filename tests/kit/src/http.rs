//! Raw HTTP/1.1: a request sent exactly as written, and the response read
//! off the connection as it came.
//!
//! Client libraries normalize requests (`..` in a path, duplicate or
//! folded fields, a body that contradicts its length) and hide what the
//! server did with the connection, which is what tests of hostile input,
//! of admin listeners and of hit paths look at. So those exchanges are
//! written by hand, once, here.

use super::error::KitError;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long an exchange waits for the server to say more before it stops
/// reading, unless told otherwise.
pub const QUIET: Duration = Duration::from_secs(30);

/// A response as it came off the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The head: status line and fields, without the blank line after it
    /// (everything, when there was no blank line).
    pub head: String,
    /// What followed the head.
    pub body: Vec<u8>,
    /// Whether the server closed the connection (rather than going quiet).
    pub closed: bool,
}

impl Response {
    /// Splits `bytes` at the end of the head.
    pub fn parse(bytes: &[u8], closed: bool) -> Response {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(at) => (&bytes[..at], &bytes[at + 4..]),
            None => (bytes, &[][..]),
        };
        Response {
            head: String::from_utf8_lossy(head).into_owned(),
            body: body.to_vec(),
            closed,
        }
    }

    /// The status line; empty when nothing came.
    pub fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The status code; 0 when the status line has none.
    pub fn status(&self) -> u16 {
        let code = self.status_line().split(' ').nth(1);
        code.and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// The header fields, names in lowercase, in the order they came.
    pub fn fields(&self) -> impl Iterator<Item = (String, &str)> {
        self.head.lines().skip(1).filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim()))
        })
    }

    /// The first field called `name` (any letter case).
    pub fn field(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Head and body as text, joined by a blank line.
    pub fn whole(&self) -> String {
        format!("{}\r\n\r\n{}", self.head, self.text())
    }
}

/// Sends `request` as it is on a new connection to `addr` and reads until
/// the server closes the connection or says nothing for `quiet`.
pub fn exchange(addr: SocketAddr, request: &[u8], quiet: Duration) -> Result<Response, KitError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(KitError::io(format!("connect to {addr}")))?;
    stream
        .set_read_timeout(Some(quiet))
        .map_err(KitError::io("set a read timeout"))?;
    stream
        .write_all(request)
        .map_err(KitError::io(format!("write to {addr}")))?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            // A reset after the answer: the server closed it, rudely.
            Err(_) => break true,
        }
    };
    Ok(Response::parse(&answer, closed))
}

/// `METHOD target HTTP/1.1` with `Host: host`, the `fields` (each `Name:
/// value`), `Connection: close`, and `body` with its `Content-Length`
/// (for a GET or HEAD only when there is a body).
pub fn request(method: &str, target: &str, host: &str, fields: &[&str], body: &str) -> String {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for field in fields {
        text.push_str(field);
        text.push_str("\r\n");
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.push_str(body);
    text
}

/// A plain `GET target` to `addr` with `Host: host`, on a connection of
/// its own.
pub fn get(addr: SocketAddr, target: &str, host: &str) -> Result<Response, KitError> {
    exchange(
        addr,
        request("GET", target, host, &[], "").as_bytes(),
        QUIET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_split_at_its_head() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nX-A: 1\r\n\r\nnone";
        let response = Response::parse(raw, true);
        assert_eq!(response.status(), 404);
        assert_eq!(response.status_line(), "HTTP/1.1 404 Not Found");
        assert_eq!(response.field("content-length"), Some("4"));
        assert_eq!(response.field("x-a"), Some("1"));
        assert_eq!(response.text(), "none");
        let nothing = Response::parse(b"", false);
        assert_eq!((nothing.status(), nothing.status_line()), (0, ""));
    }

    #[test]
    fn a_request_is_written_as_asked() {
        let text = request("POST", "/p", "h", &["X-A: 1"], "body");
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 4\r\n\
             Connection: close\r\n\r\nbody"
        );
    }
}
