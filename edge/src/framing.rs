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
