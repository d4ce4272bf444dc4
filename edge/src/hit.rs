//! How a stored response leaves the edge as a hit, on either path.
//!
//! Hits are answered two ways. Plain ones (a GET or HEAD without
//! directives, ranges or conditionals, of a fresh, unvaried, complete
//! object) go out from the proxy's fast path straight from storage,
//! skipping Pingora's cache state machine, which costs more than the hit
//! itself. Everything else goes through Pingora's cache. Both paths find
//! the object under the key [`request_key`] builds and finish its head with
//! [`finish_head`], so the two cannot drift apart; `hit_paths` in the
//! end-to-end tests sends the same requests both ways and compares.

use crate::cache_status::CacheOutcome;
use crate::cacheability::RequestDirectives;
use crate::key;
use pingora::cache::CacheKey;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::Duration;

/// Request fields that need Pingora's full cache path: ranges and
/// conditionals are answered there.
const NEEDS_FULL_CACHE_PATH: [http::header::HeaderName; 6] = [
    http::header::RANGE,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::IF_RANGE,
];

/// The cache key of a request for `host` that arrived over `scheme`:
/// scheme, host, path and query (see [`key::cache_key`]).
pub fn request_key(scheme: &str, host: &str, req: &RequestHeader) -> CacheKey {
    let path_and_query = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    key::cache_key(scheme, host, path_and_query)
}

/// Whether the fast path may answer `req` (with `directives`) if a fresh
/// object is stored for it, and if so whether it is a HEAD (head only).
pub fn plain(req: &RequestHeader, directives: &RequestDirectives) -> Option<bool> {
    let head_only = match req.method {
        http::Method::GET => false,
        http::Method::HEAD => true,
        _ => return None,
    };
    let plain = *directives == RequestDirectives::default()
        && !NEEDS_FULL_CACHE_PATH
            .iter()
            .any(|h| req.headers.contains_key(h));
    plain.then_some(head_only)
}

/// Finishes a stored head as a hit sends it: HTTP/1.1 (what is stored is
/// always written as such), the object's `Age` (RFC 9111 §4: a cache that
/// serves without validating must send one), `Accept-Ranges` on a whole
/// 200 of known length (the edge serves ranges of it, RFC 9110 §14.3) and
/// `Cache-Status` (with `detail=unverified` for a hit from a cache not
/// `verified` against the cluster's purges, see `purging`).
pub fn finish_head(
    header: &mut ResponseHeader,
    age: Duration,
    outcome: &CacheOutcome,
    verified: bool,
) -> pingora::Result<()> {
    header.set_version(http::Version::HTTP_11);
    header.insert_header(http::header::AGE, age.as_secs())?;
    if header.status == http::StatusCode::OK
        && header.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        header.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    }
    let mut status = outcome.header_value();
    if !verified {
        status.push_str("; detail=unverified");
    }
    header.insert_header("cache-status", status)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a?b=1", None).unwrap();
        for (name, value) in headers {
            req.insert_header(*name, *value).unwrap();
        }
        req
    }

    #[test]
    fn only_plain_gets_and_heads_take_the_fast_path() {
        let none = RequestDirectives::default();
        assert_eq!(plain(&get(&[]), &none), Some(false));
        let head = RequestHeader::build("HEAD", b"/", None).unwrap();
        assert_eq!(plain(&head, &none), Some(true));
        let post = RequestHeader::build("POST", b"/", None).unwrap();
        assert_eq!(plain(&post, &none), None);
        assert_eq!(plain(&get(&[("range", "bytes=0-1")]), &none), None);
        assert_eq!(plain(&get(&[("if-none-match", "\"x\"")]), &none), None);
        let no_cache = RequestDirectives {
            no_cache: true,
            ..Default::default()
        };
        assert_eq!(plain(&get(&[]), &no_cache), None);
    }

    #[test]
    fn a_finished_head_carries_age_and_cache_status() {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("content-length", "3").unwrap();
        header.set_version(http::Version::HTTP_10);
        finish_head(
            &mut header,
            Duration::from_secs(7),
            &CacheOutcome::Hit { ttl: 53 },
            true,
        )
        .unwrap();
        assert_eq!(header.version, http::Version::HTTP_11);
        assert_eq!(header.headers["age"], "7");
        assert_eq!(header.headers["accept-ranges"], "bytes");
        assert_eq!(header.headers["cache-status"], "meridian; hit; ttl=53");
        finish_head(
            &mut header,
            Duration::ZERO,
            &CacheOutcome::Hit { ttl: 1 },
            false,
        )
        .unwrap();
        assert_eq!(
            header.headers["cache-status"],
            "meridian; hit; ttl=1; detail=unverified"
        );
    }
}
