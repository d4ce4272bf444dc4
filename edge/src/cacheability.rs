//! Which responses the edge may store, and for how long (RFC 9111 §3).
//!
//! A pure decision over the request and response headers, so it is tested
//! without sockets; the proxy's `response_cache_filter` only calls it.
//! Freshness comes from the origin's explicit `s-maxage`, `max-age` or
//! `Expires` (pingora-cache's parser); a response without any of them is not
//! stored, because a CDN that guesses freshness serves stale pages.

use pingora::cache::cache_control::CacheControl;
use pingora::cache::filters::resp_cacheable;
use pingora::cache::{CacheMetaDefaults, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};

/// No heuristic freshness: only what the origin states explicitly is stored.
const EXPLICIT_FRESHNESS_ONLY: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

/// Whether the request method can be answered from cache at all.
pub fn request_is_cacheable(request: &RequestHeader) -> bool {
    matches!(request.method, http::Method::GET | http::Method::HEAD)
}

/// Decides whether `response` to `request` may be stored, and its freshness.
pub fn decide(request: &RequestHeader, response: &ResponseHeader) -> RespCacheable {
    // A partial response is one slice of an object; the edge fetches and
    // stores whole objects and serves ranges from them.
    if response.status == http::StatusCode::PARTIAL_CONTENT {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("partial-content"));
    }
    // Responses that set cookies are per-user; storing one would hand a
    // session to the next client.
    if response.headers.contains_key(http::header::SET_COOKIE) {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("set-cookie"));
    }
    // `Vary: *` means no later request can be known to match (RFC 9111 §4.1).
    let varies_on_everything = response
        .headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|field| field.trim() == "*");
    if varies_on_everything {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("vary-star"));
    }
    let cache_control = CacheControl::from_resp_headers(response);
    let authorization = request.headers.contains_key(http::header::AUTHORIZATION);
    resp_cacheable(
        cache_control.as_ref(),
        response.clone(),
        authorization,
        &EXPLICIT_FRESHNESS_ONLY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn get() -> RequestHeader {
        RequestHeader::build("GET", b"/a", None).unwrap()
    }

    fn response(headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (name, value) in headers {
            r.append_header(*name, *value).unwrap();
        }
        r
    }

    fn fresh_for(decision: RespCacheable) -> Option<Duration> {
        match decision {
            RespCacheable::Cacheable(meta) => Some(
                meta.fresh_until()
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            ),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn max_age_is_stored_for_that_long() {
        let ttl = fresh_for(decide(
            &get(),
            &response(&[("cache-control", "public, max-age=3600")]),
        ));
        let ttl = ttl.expect("stored").as_secs();
        assert!((3598..=3600).contains(&ttl), "{ttl}");
    }

    #[test]
    fn s_maxage_wins_over_max_age() {
        let ttl = fresh_for(decide(
            &get(),
            &response(&[("cache-control", "max-age=10, s-maxage=100")]),
        ));
        assert!(ttl.expect("stored").as_secs() > 90);
    }

    #[test]
    fn no_explicit_freshness_is_not_stored() {
        assert!(fresh_for(decide(&get(), &response(&[]))).is_none());
        assert!(fresh_for(decide(&get(), &response(&[("etag", "\"x\"")]))).is_none());
    }

    #[test]
    fn no_store_and_private_are_not_stored() {
        for cc in ["no-store", "private, max-age=60", "max-age=60, no-store"] {
            assert!(
                fresh_for(decide(&get(), &response(&[("cache-control", cc)]))).is_none(),
                "{cc}"
            );
        }
    }

    #[test]
    fn set_cookie_is_not_stored() {
        let r = response(&[("cache-control", "max-age=60"), ("set-cookie", "id=1")]);
        assert!(matches!(
            decide(&get(), &r),
            RespCacheable::Uncacheable(NoCacheReason::Custom("set-cookie"))
        ));
    }

    #[test]
    fn authorization_needs_public_or_s_maxage() {
        let mut req = get();
        req.insert_header("authorization", "Bearer x").unwrap();
        assert!(fresh_for(decide(&req, &response(&[("cache-control", "max-age=60")]))).is_none());
        assert!(
            fresh_for(decide(
                &req,
                &response(&[("cache-control", "public, max-age=60")])
            ))
            .is_some()
        );
        assert!(fresh_for(decide(&req, &response(&[("cache-control", "s-maxage=60")]))).is_some());
    }

    #[test]
    fn vary_star_is_not_stored() {
        let r = response(&[("cache-control", "max-age=60"), ("vary", "accept, *")]);
        assert!(fresh_for(decide(&get(), &r)).is_none());
    }

    #[test]
    fn expires_gives_freshness() {
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
        let ttl = fresh_for(decide(&get(), &response(&[("expires", &later)])));
        assert!(ttl.expect("stored").as_secs() > 590);
    }

    #[test]
    fn only_get_and_head() {
        assert!(request_is_cacheable(&get()));
        assert!(request_is_cacheable(
            &RequestHeader::build("HEAD", b"/", None).unwrap()
        ));
        assert!(!request_is_cacheable(
            &RequestHeader::build("POST", b"/", None).unwrap()
        ));
    }
}
