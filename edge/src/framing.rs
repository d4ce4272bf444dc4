//! Requests whose framing is ambiguous, refused before anything else.
//!
//! Request smuggling works when two HTTP parsers — the edge's and the
//! origin's — disagree on where a request ends. Pingora's parser already
//! rejects obsolete line folding, malformed chunk sizes and conflicting
//! `Content-Length` values; this module refuses what it would forward:
//! `Content-Length` together with `Transfer-Encoding`, a repeated
//! `Content-Length` (even with equal values), and a `Transfer-Encoding`
//! other than exactly `chunked` (RFC 9112 §6.1, §6.3). It also bounds the
//! request head, which pingora allows to grow to a megabyte.

use pingora::http::RequestHeader;

/// Largest request head accepted (all header names and values): nginx's
/// default large-header budget.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Most header fields accepted in one request.
pub const MAX_HEADER_COUNT: usize = 100;

/// Longest request target accepted.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Why a request is refused, and with which status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The response status.
    pub status: u16,
    /// A short token for logs and `Cache-Status`.
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Result<(), Refusal> {
    Err(Refusal { status, reason })
}

/// Whether a raw HTTP/1 request head has a `Content-Length` line. Pingora
/// drops `Content-Length` from the parsed head when `Transfer-Encoding` is
/// present (RFC 9112 §6.3 lets it), so the raw bytes are the only place the
/// smuggling shape is still visible.
pub fn raw_head_has_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n')
        .skip(1)
        .any(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

/// What a client sent since the last response began, as far as it tells
/// why a head could not be read: counted as bytes arrive, up to the most
/// Pingora reads of a head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadSeen {
    /// Bytes seen.
    pub bytes: usize,
    /// Line feeds seen (a head's lines, once it has ended).
    pub lines: usize,
    /// The length of the first line (the request line), once it ended.
    pub first_line: Option<usize>,
}

/// Past this, what arrives is counted no more (Pingora reads no head
/// larger than about a megabyte).
const HEAD_SEEN_LIMIT: usize = 1 << 20;

impl HeadSeen {
    /// Counts `bytes`, which arrived next.
    pub fn saw(&mut self, bytes: &[u8]) {
        if self.bytes >= HEAD_SEEN_LIMIT {
            return;
        }
        if self.first_line.is_none()
            && let Some(end) = bytes.iter().position(|&b| b == b'\n')
        {
            self.first_line = Some(self.bytes + end);
        }
        self.lines += bytes.iter().filter(|&&b| b == b'\n').count();
        self.bytes += bytes.len();
    }
}

/// Why a request head that could not be parsed at all is refused: `414`
/// when its request line is longer than a target may be, `431` when it is
/// larger or has more fields than a head may, else `400`.
pub fn refusal_for_unreadable_head(seen: &HeadSeen) -> Refusal {
    // The method, spaces and version around the target.
    const REQUEST_LINE_EXTRA: usize = 32;
    let line = seen.first_line.unwrap_or(seen.bytes);
    if line > MAX_TARGET_BYTES + REQUEST_LINE_EXTRA {
        Refusal {
            status: 414,
            reason: "target-too-long",
        }
    } else if seen.bytes > MAX_HEADER_BYTES || seen.lines > MAX_HEADER_COUNT + 2 {
        Refusal {
            status: 431,
            reason: "headers-too-large",
        }
    } else {
        Refusal {
            status: 400,
            reason: "malformed-head",
        }
    }
}

/// The whole HTTP/1.1 response the edge sends for `refusal` when no request
/// could be read to answer (the connection then closes).
pub fn refusal_head(refusal: Refusal) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(refusal.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Bad Request");
    let body = "bad request\n";
    format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\ncache-control: no-store\r\n\
         cache-status: meridian; detail={}\r\ndate: {}\r\nconnection: close\r\n\r\n{body}",
        refusal.status,
        body.len(),
        refusal.reason,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes()
}

/// Checks a request head; `Err` says how to refuse it. `raw` is the head's
/// bytes as received, for HTTP/1 requests.
pub fn check_with_raw(request: &RequestHeader, raw: Option<&[u8]>) -> Result<(), Refusal> {
    if request
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
        && raw.is_some_and(raw_head_has_content_length)
    {
        return refuse(400, "content-length-with-transfer-encoding");
    }
    check(request)
}

/// Checks a parsed request head; `Err` says how to refuse it.
pub fn check(request: &RequestHeader) -> Result<(), Refusal> {
    let target = request
        .uri
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len())
        + request.uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_TARGET_BYTES {
        return refuse(414, "uri-too-long");
    }
    let headers = &request.headers;
    if headers.len() > MAX_HEADER_COUNT {
        return refuse(431, "too-many-headers");
    }
    let head_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if head_bytes > MAX_HEADER_BYTES {
        return refuse(431, "headers-too-large");
    }
    let lengths = headers.get_all(http::header::CONTENT_LENGTH).iter().count();
    let encodings: Vec<&[u8]> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if lengths > 1 {
        return refuse(400, "duplicate-content-length");
    }
    if lengths == 1 && !encodings.is_empty() {
        return refuse(400, "content-length-with-transfer-encoding");
    }
    if let Some(length) = headers.get(http::header::CONTENT_LENGTH)
        && (length.is_empty() || !length.as_bytes().iter().all(u8::is_ascii_digit))
    {
        return refuse(400, "bad-content-length");
    }
    match encodings.as_slice() {
        [] => Ok(()),
        [only] if only.trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(()),
        // chunked not last, or listed twice: the body cannot be framed.
        codings if !codings.last().is_some_and(|c| ends_with_chunked(c)) => {
            refuse(400, "transfer-encoding-not-chunked")
        }
        // gzip, chunked and friends: legal, but no origin needs them and
        // every extra coding is one more place for parsers to disagree.
        _ => refuse(501, "transfer-coding-not-implemented"),
    }
}

fn ends_with_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(raw: &[u8]) -> HeadSeen {
        let mut seen = HeadSeen::default();
        for piece in raw.chunks(7) {
            seen.saw(piece);
        }
        seen
    }

    #[test]
    fn an_unreadable_head_is_refused_for_what_it_was() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
        let refusal = refusal_for_unreadable_head(&seen(long_target.as_bytes()));
        assert_eq!((refusal.status, refusal.reason), (414, "target-too-long"));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..300)
                .map(|i| format!("X-{i}: 1\r\n"))
                .collect::<String>()
        );
        assert_eq!(
            refusal_for_unreadable_head(&seen(many.as_bytes())).status,
            431
        );
        assert_eq!(
            refusal_for_unreadable_head(&seen(b"GET / HTTP/1.1\r\nBad\x01: x\r\n\r\n")).status,
            400
        );
        let head = String::from_utf8(refusal_head(refusal)).unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("connection: close\r\n") && head.ends_with("\r\n\r\nbad request\n"));
        assert!(!head.to_ascii_lowercase().contains("pingora"));
    }

    fn request(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (name, value) in headers {
            r.append_header(*name, *value).unwrap();
        }
        r
    }

    fn status(headers: &[(&'static str, &str)]) -> Option<u16> {
        check(&request(headers)).err().map(|r| r.status)
    }

    #[test]
    fn ordinary_framing_passes() {
        assert_eq!(status(&[]), None);
        assert_eq!(status(&[("content-length", "5")]), None);
        assert_eq!(status(&[("transfer-encoding", "chunked")]), None);
        assert_eq!(status(&[("transfer-encoding", "Chunked")]), None);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        assert_eq!(
            status(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Some(400)
        );
        assert_eq!(
            status(&[("content-length", "5"), ("content-length", "5")]),
            Some(400)
        );
        assert_eq!(
            status(&[("content-length", "5"), ("content-length", "6")]),
            Some(400)
        );
        assert_eq!(status(&[("content-length", "+5")]), Some(400));
        assert_eq!(status(&[("transfer-encoding", "chunked, gzip")]), Some(400));
        assert_eq!(
            status(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "identity")
            ]),
            Some(400)
        );
        assert_eq!(status(&[("transfer-encoding", "gzip, chunked")]), Some(501));
    }

    #[test]
    fn a_content_length_pingora_dropped_is_still_seen() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(raw_head_has_content_length(raw));
        let parsed = request(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            check_with_raw(&parsed, Some(raw)).err().map(|r| r.status),
            Some(400)
        );
        let clean = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 4\r\n\r\n";
        assert!(!raw_head_has_content_length(clean));
        assert_eq!(check_with_raw(&parsed, Some(clean)), Ok(()));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let big = "a".repeat(MAX_HEADER_BYTES + 1);
        assert_eq!(status(&[("x-big", &big)]), Some(431));
        let mut many = RequestHeader::build("GET", b"/", None).unwrap();
        for i in 0..=MAX_HEADER_COUNT {
            many.append_header(format!("x-h{i}"), "v").unwrap();
        }
        assert_eq!(check(&many).err().map(|r| r.status), Some(431));
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        let target = RequestHeader::build("GET", long.as_bytes(), None).unwrap();
        assert_eq!(check(&target).err().map(|r| r.status), Some(414));
    }
}
