//! What happens to a request before anything serves it: the answers the
//! edge gives itself (broken framing, its own health checks, methods it
//! refuses, loops, hosts it does not serve, targets of another scheme), and
//! small request bodies read whole before any origin hears of the request.

use crate::cache_status::CacheOutcome;
use crate::{EdgeSettings, framing, host};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use std::time::Duration;

/// The largest request body the edge reads whole before contacting an
/// origin: the size of Pingora's retry buffer, which keeps it for the send
/// (and for a retry on another origin).
const BUFFERED_BODY_BYTES: u64 = 64 * 1024;

/// A response the edge writes itself instead of serving the request.
pub struct LocalAnswer {
    pub status: u16,
    pub body: &'static str,
    /// For `Cache-Status`.
    pub detail: &'static str,
    /// Close the connection after it (the request's framing was bad).
    pub close: bool,
}

/// The answer the edge gives a request itself, if it does not serve it:
/// broken framing, its own health checks, methods it refuses, loops
/// (`looped`: its `CDN-Loop` lists this CDN, and it is no peer fill this
/// edge accepts, see [`crate::peers`]), hosts it does not serve, and
/// targets that name another scheme than `scheme`, the one it is served
/// for.
pub fn local_answer(
    settings: &EdgeSettings,
    session: &Session,
    scheme: &str,
    looped: bool,
) -> Option<LocalAnswer> {
    let raw_head = session
        .as_downstream()
        .as_http1()
        .map(|h1| h1.get_headers_raw_bytes());
    let req = session.req_header();
    if let Err(refusal) = framing::check_with_raw(req, raw_head.as_deref()) {
        return Some(LocalAnswer {
            status: refusal.status,
            body: "bad request\n",
            detail: refusal.reason,
            close: true,
        });
    }
    let answer = |status, body, detail| {
        Some(LocalAnswer {
            status,
            body,
            detail,
            close: false,
        })
    };
    if req.uri.path() == settings.health_path {
        return answer(200, "ok\n", "health");
    }
    let method = req.method.as_str();
    // Purges go to the admin listener, with a token; the public port
    // never honours them, and never forwards them either.
    if method.eq_ignore_ascii_case("PURGE") {
        return answer(405, "purge through the admin listener\n", "purge-refused");
    }
    // TRACE echoes the request back, credentials included (cross-site
    // tracing); nothing behind a CDN needs it.
    if method == "TRACE" || method == "TRACK" {
        return answer(405, "method not allowed\n", "method-refused");
    }
    if looped {
        return answer(508, "loop detected\n", "loop");
    }
    let allowed = match (host::request_host(req), &settings.hostnames) {
        (_, None) => true,
        (Some(host), Some(served)) => served.contains(&host),
        (None, Some(_)) => false,
    };
    if !allowed {
        return answer(421, "this edge does not serve that host\n", "unknown-host");
    }
    // `GET https://host/p` on the plain port would be stored under the
    // connection's scheme but shaped by the target's: refuse it.
    if host::target_scheme(req).is_some_and(|s| s != scheme) {
        return answer(
            400,
            "the target's scheme is not this connection's\n",
            "scheme-mismatch",
        );
    }
    None
}

/// Reads a request body of at most [`BUFFERED_BODY_BYTES`] whole, into
/// Pingora's retry buffer, before any origin is contacted; Pingora then
/// sends the buffer, complete. A body whose framing breaks, or that
/// ends short, is an error here, before an origin has seen even the
/// request head. Without this an origin got the head and the first
/// chunks of a request whose framing later failed, and an HTTP/2
/// request declaring `content-length: 0` went out complete before the
/// DATA frame that contradicts it arrived.
///
/// Only a body of declared size is read: a chunked one of unknown size
/// could outgrow the buffer, which then stops keeping it. Those stream
/// as they arrive, and when their framing breaks the origin connection
/// is dropped before the last chunk, so the origin never sees them end
/// (RFC 9112 §7.1: a chunked body is incomplete without its last chunk).
///
/// A read may stall `stall` at most. Returns whether the edge answered
/// `Expect: 100-continue` itself (the origin then must not see `Expect`).
pub async fn read_small_body(session: &mut Session, stall: Duration) -> Result<bool> {
    let req = session.req_header();
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let http2 = req.version == http::Version::HTTP_2;
    match declared {
        Some(length) if length > BUFFERED_BODY_BYTES => return Ok(false),
        // An HTTP/1 `Content-Length: 0` ends the request by itself;
        // an HTTP/2 one must still be confirmed by the end of stream.
        Some(0) if !http2 => return Ok(false),
        Some(_) => {}
        None => return Ok(false),
    }
    let continue_expected = req
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if continue_expected {
        // The client waits for this before it sends the body; the
        // origin then gets the request without `Expect`.
        let proceed = ResponseHeader::build(100, Some(0))?;
        session
            .write_response_header(Box::new(proceed), false)
            .await?;
    }
    let downstream = session.as_downstream_mut();
    downstream.enable_retry_buffering();
    loop {
        let read = tokio::time::timeout(stall, downstream.read_request_body())
            .await
            .map_err(|_| {
                Error::explain(ErrorType::ReadTimedout, "request body stalled").into_down()
            })?;
        if read?.is_none() {
            return Ok(continue_expected);
        }
    }
}

/// Writes a complete response generated by the edge itself.
pub async fn respond_locally(
    session: &mut Session,
    status: u16,
    body: &'static str,
    outcome: &CacheOutcome,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    header.insert_header("cache-status", outcome.header_value())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
            .await?;
    }
    Ok(())
}
