//! What the edge may store, for how long, and when a stored response may be
//! used (RFC 9111, RFC 9213).
//!
//! Pure decisions over headers and a clock, tested without sockets; the
//! proxy's phases only call them.
//!
//! - [`decide`]: may this response be stored, and until when is it fresh?
//!   Freshness is the origin's explicit `s-maxage`, `max-age` or `Expires`
//!   (from `CDN-Cache-Control` when present, which targets CDNs and takes
//!   precedence over `Cache-Control`), or an operator's per-path default;
//!   never a guess. The response's current age (its `Age` header, or how
//!   long ago its `Date` says it was generated, whichever is larger) is
//!   subtracted, so an object that spent time in another cache is not kept
//!   fresh for longer than its origin allowed (RFC 9111 §4.2.3).
//! - [`RequestDirectives`] and [`use_stored`]: the client's own
//!   `Cache-Control` (`no-cache`, `max-age`, `min-fresh`, `max-stale`,
//!   `only-if-cached`, `no-store`) applied to a stored response.

use pingora::cache::cache_control::{CacheControl, DirectiveKey, InterpretCacheControl};
use pingora::cache::filters::calculate_serve_stale_durations;
use pingora::cache::{CacheMeta, CacheMetaDefaults, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// The targeted cache-control field for CDNs (RFC 9213).
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// No heuristic stale windows: only what the origin states.
const NO_STALE_DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

/// The operator's caching policy from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Store `Set-Cookie` responses, without the cookie.
    pub cache_set_cookie_responses: bool,
    /// Freshness for responses that state none, by path prefix.
    pub default_ttls: Vec<config::DefaultTtl>,
    /// Let clients' `no-cache`, `max-age` and `min-fresh` force a
    /// revalidation.
    pub honor_client_no_cache: bool,
}

impl Default for Policy {
    /// RFC 9111's rules and nothing more.
    fn default() -> Self {
        Policy {
            cache_set_cookie_responses: false,
            default_ttls: Vec::new(),
            honor_client_no_cache: true,
        }
    }
}

impl Policy {
    /// The policy an edge config describes.
    pub fn from_config(edge: &config::Edge) -> Self {
        Policy {
            cache_set_cookie_responses: edge.cache_set_cookie_responses,
            default_ttls: edge.default_ttls.clone(),
            honor_client_no_cache: edge.honor_client_no_cache,
        }
    }

    /// The client's directives this edge obeys: without
    /// `honor_client_no_cache`, those that would bypass a fresh stored
    /// response are dropped (`max-stale`, `only-if-cached` and `no-store`
    /// stay: they never send a request past the cache).
    pub fn request_directives(&self, request: &RequestHeader) -> RequestDirectives {
        let mut directives = RequestDirectives::parse(request);
        if !self.honor_client_no_cache {
            directives.no_cache = false;
            directives.max_age = None;
            directives.min_fresh = None;
        }
        directives
    }

    /// The default TTL for `path`: the longest matching prefix.
    fn default_ttl(&self, path: &str) -> Option<Duration> {
        self.default_ttls
            .iter()
            .filter(|rule| path.starts_with(&rule.path_prefix))
            .max_by_key(|rule| rule.path_prefix.len())
            .map(|rule| rule.ttl)
    }
}

/// Whether the request method can be answered from cache at all.
pub fn request_is_cacheable(request: &RequestHeader) -> bool {
    matches!(request.method, http::Method::GET | http::Method::HEAD)
}

/// The directives that govern this cache: `CDN-Cache-Control` when the
/// origin sent a valid one (RFC 9213 §2.1), else `Cache-Control`.
fn response_directives(response: &ResponseHeader) -> Option<CacheControl> {
    if cdn_cache_control_is_valid(response) {
        CacheControl::from_resp_headers_named(CDN_CACHE_CONTROL, response)
    } else {
        CacheControl::from_resp_headers(response)
    }
}

/// Directives of `CDN-Cache-Control` whose value is a number of seconds.
const DELTA_SECONDS_DIRECTIVES: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// Directives of `CDN-Cache-Control` that take no value.
const VALUELESS_DIRECTIVES: [&str; 8] = [
    "no-store",
    "no-cache",
    "private",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "no-transform",
    "immutable",
];

/// Whether the response has a `CDN-Cache-Control` that this cache uses.
///
/// Unlike `Cache-Control`, the field is a structured Dictionary (RFC 9213
/// §2.1, RFC 8941): one that does not parse as one, or whose directives
/// have values of the wrong type (`max-age="3600"`, `max-age=1.5`, a
/// negative age, a token; a value on `no-store`), is ignored as a whole,
/// and `Cache-Control` applies as if it were absent. Directives this cache
/// does not know are ignored, whatever their value.
fn cdn_cache_control_is_valid(response: &ResponseHeader) -> bool {
    let lines: Vec<&[u8]> = response
        .headers
        .get_all(CDN_CACHE_CONTROL)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if lines.is_empty() {
        return false;
    }
    // Several lines make one list (RFC 9110 §5.3).
    let joined = lines.join(&b","[..]);
    let Ok(dictionary) = sfv::Parser::parse_dictionary(&joined) else {
        return false;
    };
    dictionary.iter().all(|(name, member)| {
        let name = name.as_str();
        let item = match member {
            sfv::ListEntry::Item(item) => Some(&item.bare_item),
            sfv::ListEntry::InnerList(_) => None,
        };
        if DELTA_SECONDS_DIRECTIVES.contains(&name) {
            matches!(item, Some(sfv::BareItem::Integer(seconds)) if *seconds >= 0)
        } else if VALUELESS_DIRECTIVES.contains(&name) {
            matches!(item, Some(sfv::BareItem::Boolean(true)))
        } else {
            true
        }
    })
}

fn header_time(response: &ResponseHeader, name: http::header::HeaderName) -> Option<SystemTime> {
    let value = response.headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value).ok()
}

/// The response's age when it arrived (RFC 9111 §4.2.3's
/// `corrected_initial_age`, taking the request as instantaneous).
pub fn initial_age(response: &ResponseHeader, received: SystemTime) -> Duration {
    let apparent = header_time(response, http::header::DATE)
        .and_then(|date| received.duration_since(date).ok())
        .unwrap_or_default();
    let stated = stated_age(response).unwrap_or_default();
    apparent.max(stated)
}

/// The response's `Age` (RFC 9111 §5.1): a number of seconds. Sent as a
/// list (`Age: 7200, 0`, two fields folded by an intermediary) the first
/// member counts, as a recipient of a singleton field that became a list
/// must assume it; anything else is invalid and ignored.
fn stated_age(response: &ResponseHeader) -> Option<Duration> {
    let value = response.headers.get(http::header::AGE)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than fit are an age beyond any lifetime (RFC 9111 §1.2.2).
    Some(Duration::from_secs(first.parse().unwrap_or(1 << 31)))
}

/// How long the response is fresh from when it was generated, if it says.
fn freshness_lifetime(
    directives: Option<&CacheControl>,
    response: &ResponseHeader,
) -> Option<Duration> {
    if let Some(lifetime) = directives.and_then(|cc| cc.fresh_duration()) {
        return Some(lifetime);
    }
    // Expires counts from the origin's own clock: Expires - Date.
    let expires = header_time(response, http::header::EXPIRES);
    let has_expires = response.headers.contains_key(http::header::EXPIRES);
    match (expires, header_time(response, http::header::DATE)) {
        (Some(expires), Some(date)) => Some(expires.duration_since(date).unwrap_or_default()),
        (Some(expires), None) => Some(
            expires
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        ),
        // An Expires that does not parse means "already expired" (RFC 9111 §5.3).
        (None, _) if has_expires => Some(Duration::ZERO),
        (None, _) => None,
    }
}

/// Decides whether `response` to `request`, received at `received`, may be
/// stored, and builds its cache metadata.
pub fn decide(
    policy: &Policy,
    request: &RequestHeader,
    response: &ResponseHeader,
    received: SystemTime,
) -> RespCacheable {
    use RespCacheable::Uncacheable;
    // A partial response is one slice of an object; the edge fetches and
    // stores whole objects and serves ranges from them.
    if response.status == http::StatusCode::PARTIAL_CONTENT {
        return Uncacheable(NoCacheReason::Custom("partial-content"));
    }
    if RequestDirectives::parse(request).no_store {
        return Uncacheable(NoCacheReason::Custom("request-no-store"));
    }
    // Responses that set cookies are per-user; storing one would hand a
    // session to the next client, unless the operator asked to store them
    // without the cookie.
    let sets_cookie = response.headers.contains_key(http::header::SET_COOKIE);
    if sets_cookie && !policy.cache_set_cookie_responses {
        return Uncacheable(NoCacheReason::Custom("set-cookie"));
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
        return Uncacheable(NoCacheReason::Custom("vary-star"));
    }
    let directives = response_directives(response);
    if let Some(cc) = &directives
        && (cc.no_store() || cc.private())
    {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    let authorization = request.headers.contains_key(http::header::AUTHORIZATION);
    if authorization
        && !directives
            .as_ref()
            .is_some_and(|cc| cc.allow_caching_authorized_req())
    {
        return Uncacheable(NoCacheReason::Custom("authorization"));
    }
    let lifetime = freshness_lifetime(directives.as_ref(), response)
        .or_else(|| policy.default_ttl(request.uri.path()));
    let Some(lifetime) = lifetime else {
        return Uncacheable(NoCacheReason::Custom("no-freshness"));
    };
    let age = initial_age(response, received);
    // Generated `age` ago, fresh for `lifetime` from then.
    let created = received.checked_sub(age).unwrap_or(received);
    let fresh_until = match lifetime.checked_sub(age) {
        Some(left) if !left.is_zero() => received + left,
        // Already stale on arrival (or `no-cache`): stored, always revalidated.
        _ => received
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(received),
    };
    let (stale_while_revalidate, stale_if_error) =
        calculate_serve_stale_durations(directives.as_ref(), &NO_STALE_DEFAULTS);
    let mut stored = response.clone();
    if let Some(cc) = &directives {
        cc.strip_private_headers(&mut stored);
    }
    if sets_cookie {
        stored.remove_header(&http::header::SET_COOKIE);
    }
    RespCacheable::Cacheable(CacheMeta::new(
        fresh_until,
        created,
        stale_while_revalidate,
        stale_if_error,
        stored,
    ))
}

/// Fields a 304 never updates in a stored response (RFC 9111 §3.2): they
/// describe the connection or the stored body, not the resource.
const NOT_UPDATED_BY_304: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "content-range",
    "content-encoding",
];

/// The stored response's header updated with a 304's fields (RFC 9111
/// §3.2 and §4.3.4): every field the 304 carries replaces the stored one,
/// except those describing the connection or the body. The 304 is the
/// origin's statement that the response is current as of now, so its
/// `Date` (or now, if it has none) replaces the stored one, and a stored
/// `Age` goes unless the 304 restates it.
pub fn merge_304(
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
    received: SystemTime,
) -> ResponseHeader {
    let mut merged = stored.clone();
    let mut replaced = Vec::new();
    for (name, value) in not_modified.headers.iter() {
        if NOT_UPDATED_BY_304.contains(&name.as_str()) {
            continue;
        }
        let result = if replaced.contains(name) {
            merged.append_header(name.clone(), value).map(|_| ())
        } else {
            replaced.push(name.clone());
            merged.insert_header(name.clone(), value)
        };
        // Names and values come from a parsed header, so they are valid.
        if let Err(error) = result {
            tracing::debug!(%error, "skipping a 304 header");
        }
    }
    if !not_modified.headers.contains_key(http::header::AGE) {
        merged.remove_header(&http::header::AGE);
    }
    if !not_modified.headers.contains_key(http::header::DATE) {
        let _ = merged.insert_header(http::header::DATE, httpdate::fmt_http_date(received));
    }
    merged
}

/// The client's `Cache-Control` request directives (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`): revalidate.
    pub no_cache: bool,
    /// `no-store`: do not store the response.
    pub no_store: bool,
    /// `max-age=N`: not older than N.
    pub max_age: Option<Duration>,
    /// `min-fresh=N`: fresh for at least N more.
    pub min_fresh: Option<Duration>,
    /// `max-stale[=N]`: stale is acceptable (by at most N; `None` inside:
    /// by any amount).
    pub max_stale: Option<Option<Duration>>,
    /// `only-if-cached`: never go to the origin.
    pub only_if_cached: bool,
}

fn delta(cc: &CacheControl, name: &str) -> Option<Option<Duration>> {
    let value = cc.directives.get(&DirectiveKey::from_lowercase(name))?;
    Some(
        value
            .as_ref()
            .and_then(|v| v.parse_as_delta_seconds().ok())
            .map(|s| Duration::from_secs(u64::from(s))),
    )
}

impl RequestDirectives {
    /// Parses the request's directives.
    pub fn parse(request: &RequestHeader) -> Self {
        let Some(cc) = CacheControl::from_req_headers(request) else {
            // HTTP/1.0's `Pragma: no-cache` counts only without Cache-Control.
            let pragma_no_cache = request
                .headers
                .get_all(http::header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                });
            return RequestDirectives {
                no_cache: pragma_no_cache,
                ..Default::default()
            };
        };
        RequestDirectives {
            no_cache: cc.no_cache(),
            no_store: cc.no_store(),
            max_age: delta(&cc, "max-age").flatten(),
            min_fresh: delta(&cc, "min-fresh").flatten(),
            max_stale: delta(&cc, "max-stale"),
            only_if_cached: cc.only_if_cached(),
        }
    }
}

/// What to do with a stored response for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredUse {
    /// Serve it (fresh, or stale within the client's `max-stale`).
    Serve,
    /// Stale: the cache's usual rules apply (revalidate, or serve stale
    /// while revalidating when the origin allows).
    Default,
    /// Fresh, but the request forbids using it: revalidate with the origin.
    Revalidate,
}

/// Applies the request's directives to a stored response that is `age` old
/// and fresh until `fresh_until`. `must_revalidate` says whether the stored
/// response has `must-revalidate`/`proxy-revalidate`/`s-maxage`, which
/// forbid serving it stale whatever the client says; it is only asked when
/// that matters, since it means parsing the stored `Cache-Control`.
pub fn use_stored(
    directives: &RequestDirectives,
    age: Duration,
    fresh_until: SystemTime,
    must_revalidate: impl FnOnce() -> bool,
    now: SystemTime,
) -> StoredUse {
    let fresh_for = fresh_until.duration_since(now).ok();
    let is_fresh = fresh_for.is_some_and(|left| !left.is_zero());
    if directives.no_cache {
        return StoredUse::Revalidate;
    }
    if directives.max_age.is_some_and(|max| age > max) {
        return StoredUse::Revalidate;
    }
    if is_fresh {
        let left = fresh_for.unwrap_or_default();
        return match directives.min_fresh {
            Some(min) if left < min => StoredUse::Revalidate,
            _ => StoredUse::Serve,
        };
    }
    let stale_by = now.duration_since(fresh_until).unwrap_or_default();
    match directives.max_stale {
        Some(limit) if limit.is_none_or(|limit| stale_by <= limit) && !must_revalidate() => {
            StoredUse::Serve
        }
        _ => StoredUse::Default,
    }
}

/// Whether a stored response forbids being served stale (RFC 9111
/// §5.2.2.2, §5.2.2.8, and `s-maxage`, which implies `proxy-revalidate`).
pub fn forbids_stale(meta: &CacheMeta) -> bool {
    let header = meta.response_header();
    response_directives(header).is_some_and(|cc| {
        cc.must_revalidate() || cc.proxy_revalidate() || cc.has_directive(&DirectiveKey::SMaxAge)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> RequestHeader {
        RequestHeader::build("GET", path.as_bytes(), None).unwrap()
    }

    fn request_with(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = get("/a");
        for (name, value) in headers {
            r.append_header(*name, *value).unwrap();
        }
        r
    }

    fn response(headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (name, value) in headers {
            r.append_header(*name, *value).unwrap();
        }
        r
    }

    fn policy() -> Policy {
        Policy::default()
    }

    fn now() -> SystemTime {
        // A whole second, so HTTP dates (second resolution) are exact.
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    /// (seconds fresh from `received`, age on arrival) if stored.
    fn stored(decision: RespCacheable, received: SystemTime) -> Option<(i64, u64)> {
        match decision {
            RespCacheable::Cacheable(meta) => {
                let fresh = match meta.fresh_until().duration_since(received) {
                    Ok(d) => d.as_secs() as i64,
                    Err(e) => -(e.duration().as_secs() as i64),
                };
                let age = received.duration_since(meta.created()).unwrap().as_secs();
                Some((fresh, age))
            }
            RespCacheable::Uncacheable(_) => None,
        }
    }

    fn reason(decision: RespCacheable) -> Option<NoCacheReason> {
        match decision {
            RespCacheable::Uncacheable(reason) => Some(reason),
            RespCacheable::Cacheable(_) => None,
        }
    }

    #[test]
    fn max_age_is_stored_for_that_long() {
        let t = now();
        let d = decide(
            &policy(),
            &get("/a"),
            &response(&[("cache-control", "public, max-age=3600")]),
            t,
        );
        assert_eq!(stored(d, t), Some((3600, 0)));
    }

    #[test]
    fn s_maxage_wins_over_max_age() {
        let t = now();
        let r = response(&[("cache-control", "max-age=10, s-maxage=100")]);
        assert_eq!(
            stored(decide(&policy(), &get("/a"), &r, t), t),
            Some((100, 0))
        );
    }

    #[test]
    fn cdn_cache_control_takes_precedence() {
        let t = now();
        let r = response(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        assert_eq!(
            stored(decide(&policy(), &get("/a"), &r, t), t),
            Some((600, 0))
        );
        let r = response(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert!(stored(decide(&policy(), &get("/a"), &r, t), t).is_none());
    }

    #[test]
    fn an_age_list_counts_its_first_member_and_an_invalid_age_none() {
        let t = now();
        for (age, expected) in [
            ("7200, 0", None),
            ("30,0", Some((70, 30))),
            (" 30 ", Some((70, 30))),
            ("-5", Some((100, 0))),
            ("1.5", Some((100, 0))),
            ("soon", Some((100, 0))),
            ("", Some((100, 0))),
            ("99999999999999999999999", None),
        ] {
            let r = response(&[("cache-control", "max-age=100"), ("age", age)]);
            let got = stored(decide(&policy(), &get("/a"), &r, t), t);
            match expected {
                Some(expected) => assert_eq!(got, Some(expected), "Age: {age:?}"),
                // Stored, but already stale.
                None => assert!(
                    got.is_some_and(|(fresh, _)| fresh < 0),
                    "Age: {age:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_cdn_cache_control_of_the_wrong_structured_type_is_ignored_whole() {
        let t = now();
        for field in [
            "max-age=\"3600\"",
            "max-age=1.5",
            "max-age=-1",
            "max-age=abc",
            "max-age=?0",
            "no-store=1, max-age=600",
            "Max-Age=600",
            "max-age=(600)",
            "max-age=600,,",
            "private=\"x\", max-age=600",
        ] {
            let r = response(&[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", field),
            ]);
            assert_eq!(
                stored(decide(&policy(), &get("/a"), &r, t), t),
                Some((60, 0)),
                "{field:?} must be ignored for Cache-Control"
            );
        }
        for (field, fresh) in [
            ("max-age=600", Some(600)),
            ("max-age=600, stale-if-error=30, must-revalidate", Some(600)),
            ("s-maxage=900, max-age=600", Some(900)),
            ("max-age=600, unknown-thing=\"x\"", Some(600)),
            ("no-store", None),
            ("private", None),
        ] {
            let r = response(&[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", field),
            ]);
            assert_eq!(
                stored(decide(&policy(), &get("/a"), &r, t), t).map(|(f, _)| f),
                fresh,
                "{field:?}"
            );
        }
    }

    #[test]
    fn age_header_is_subtracted() {
        let t = now();
        let r = response(&[("cache-control", "max-age=100"), ("age", "30")]);
        assert_eq!(
            stored(decide(&policy(), &get("/a"), &r, t), t),
            Some((70, 30))
        );
    }

    #[test]
    fn date_in_the_past_counts_as_age() {
        let t = now();
        let r = response(&[
            ("cache-control", "max-age=100"),
            ("date", &date(t - Duration::from_secs(40))),
        ]);
        assert_eq!(
            stored(decide(&policy(), &get("/a"), &r, t), t),
            Some((60, 40))
        );
        // The larger of Age and the apparent age wins.
        let r = response(&[
            ("cache-control", "max-age=100"),
            ("date", &date(t - Duration::from_secs(10))),
            ("age", "50"),
        ]);
        assert_eq!(
            stored(decide(&policy(), &get("/a"), &r, t), t),
            Some((50, 50))
        );
    }

    #[test]
    fn older_than_its_lifetime_is_stored_stale() {
        let t = now();
        let r = response(&[("cache-control", "max-age=10"), ("age", "30")]);
        let (fresh, _) = stored(decide(&policy(), &get("/a"), &r, t), t).unwrap();
        assert!(fresh < 0);
    }

    #[test]
    fn expires_counts_from_date() {
        let t = now();
        // The origin's clock is 1000 s behind ours: Expires - Date still
        // gives 600 s of freshness.
        let origin_now = t - Duration::from_secs(1000);
        let r = response(&[
            ("date", &date(origin_now)),
            ("expires", &date(origin_now + Duration::from_secs(600))),
        ]);
        let (fresh, age) = stored(decide(&policy(), &get("/a"), &r, t), t).unwrap();
        // Date says it is 1000 s old, more than its 600 s lifetime.
        assert_eq!(age, 1000);
        assert!(fresh < 0);
        let r = response(&[
            ("date", &date(t)),
            ("expires", &date(t + Duration::from_secs(600))),
        ]);
        assert_eq!(
            stored(decide(&policy(), &get("/a"), &r, t), t),
            Some((600, 0))
        );
        // An invalid Expires means already expired.
        let r = response(&[("expires", "0")]);
        assert!(stored(decide(&policy(), &get("/a"), &r, t), t).unwrap().0 < 0);
    }

    #[test]
    fn no_explicit_freshness_is_not_stored_unless_a_rule_says() {
        let t = now();
        assert!(stored(decide(&policy(), &get("/a"), &response(&[]), t), t).is_none());
        assert!(
            stored(
                decide(&policy(), &get("/a"), &response(&[("etag", "\"x\"")]), t),
                t
            )
            .is_none()
        );
        let rules = Policy {
            default_ttls: vec![
                config::DefaultTtl {
                    path_prefix: "/static/".into(),
                    ttl: Duration::from_secs(60),
                },
                config::DefaultTtl {
                    path_prefix: "/static/long/".into(),
                    ttl: Duration::from_secs(600),
                },
            ],
            ..Policy::default()
        };
        assert_eq!(
            stored(decide(&rules, &get("/static/a.css"), &response(&[]), t), t),
            Some((60, 0))
        );
        assert_eq!(
            stored(decide(&rules, &get("/static/long/a"), &response(&[]), t), t),
            Some((600, 0))
        );
        assert!(stored(decide(&rules, &get("/other"), &response(&[]), t), t).is_none());
        // Explicit freshness beats the rule.
        let r = response(&[("cache-control", "max-age=5")]);
        assert_eq!(
            stored(decide(&rules, &get("/static/a.css"), &r, t), t),
            Some((5, 0))
        );
    }

    #[test]
    fn no_store_and_private_are_not_stored() {
        let t = now();
        for cc in ["no-store", "private, max-age=60", "max-age=60, no-store"] {
            let d = decide(
                &policy(),
                &get("/a"),
                &response(&[("cache-control", cc)]),
                t,
            );
            assert_eq!(reason(d), Some(NoCacheReason::OriginNotCache), "{cc}");
        }
    }

    #[test]
    fn no_cache_is_stored_but_always_stale() {
        let t = now();
        let d = decide(
            &policy(),
            &get("/a"),
            &response(&[("cache-control", "no-cache, max-age=60")]),
            t,
        );
        assert!(stored(d, t).unwrap().0 < 0);
    }

    #[test]
    fn request_no_store_is_not_stored() {
        let t = now();
        let r = response(&[("cache-control", "max-age=60")]);
        let d = decide(
            &policy(),
            &request_with(&[("cache-control", "no-store")]),
            &r,
            t,
        );
        assert_eq!(reason(d), Some(NoCacheReason::Custom("request-no-store")));
    }

    #[test]
    fn set_cookie_is_not_stored_unless_configured_and_then_without_the_cookie() {
        let t = now();
        let r = response(&[("cache-control", "max-age=60"), ("set-cookie", "id=1")]);
        assert_eq!(
            reason(decide(&policy(), &get("/a"), &r, t)),
            Some(NoCacheReason::Custom("set-cookie"))
        );
        let permissive = Policy {
            cache_set_cookie_responses: true,
            ..Policy::default()
        };
        match decide(&permissive, &get("/a"), &r, t) {
            RespCacheable::Cacheable(meta) => assert!(!meta.headers().contains_key("set-cookie")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        let t = now();
        let req = request_with(&[("authorization", "Bearer x")]);
        let d = |cc: &str| {
            stored(
                decide(&policy(), &req, &response(&[("cache-control", cc)]), t),
                t,
            )
        };
        assert!(d("max-age=60").is_none());
        assert!(d("public, max-age=60").is_some());
        assert!(d("s-maxage=60").is_some());
        assert!(d("must-revalidate, max-age=60").is_some());
    }

    #[test]
    fn vary_star_and_partial_content_are_not_stored() {
        let t = now();
        let r = response(&[("cache-control", "max-age=60"), ("vary", "accept, *")]);
        assert!(stored(decide(&policy(), &get("/a"), &r, t), t).is_none());
        let mut partial = response(&[("cache-control", "max-age=60")]);
        partial.set_status(206).unwrap();
        assert!(stored(decide(&policy(), &get("/a"), &partial, t), t).is_none());
    }

    #[test]
    fn private_field_names_are_stripped_from_the_stored_copy() {
        let t = now();
        let r = response(&[
            ("cache-control", "max-age=60, private=\"x-user\""),
            ("x-user", "alice"),
        ]);
        // `private` with field names still lets a shared cache store the rest.
        match decide(&policy(), &get("/a"), &r, t) {
            RespCacheable::Cacheable(meta) => assert!(!meta.headers().contains_key("x-user")),
            RespCacheable::Uncacheable(_) => {
                // pingora treats any `private` as uncacheable, which is also
                // safe; nothing with the field is stored either way.
            }
        }
    }

    #[test]
    fn stale_windows_come_from_the_origin_and_revalidation_closes_them() {
        let t = now();
        let windows = |cc: &str| match decide(
            &policy(),
            &get("/a"),
            &response(&[("cache-control", cc)]),
            t,
        ) {
            RespCacheable::Cacheable(meta) => {
                (meta.stale_while_revalidate_sec(), meta.stale_if_error_sec())
            }
            RespCacheable::Uncacheable(_) => panic!("not stored"),
        };
        assert_eq!(
            windows("max-age=60, stale-while-revalidate=30, stale-if-error=300"),
            (30, 300)
        );
        assert_eq!(windows("max-age=60"), (0, 0));
        assert_eq!(
            windows("max-age=60, must-revalidate, stale-if-error=300"),
            (0, 0)
        );
    }

    #[test]
    fn request_directives_parse() {
        let d = RequestDirectives::parse(&request_with(&[(
            "cache-control",
            "max-age=5, min-fresh=10, max-stale, only-if-cached",
        )]));
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
        assert_eq!(d.min_fresh, Some(Duration::from_secs(10)));
        assert_eq!(d.max_stale, Some(None));
        assert!(d.only_if_cached && !d.no_cache);
        let d = RequestDirectives::parse(&request_with(&[("cache-control", "max-stale=30")]));
        assert_eq!(d.max_stale, Some(Some(Duration::from_secs(30))));
        assert!(RequestDirectives::parse(&request_with(&[("pragma", "no-cache")])).no_cache);
        // Pragma is ignored when Cache-Control is present.
        let d = RequestDirectives::parse(&request_with(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-stale"),
        ]));
        assert!(!d.no_cache);
    }

    #[test]
    fn request_directives_decide_how_a_stored_response_is_used() {
        let t = now();
        let fresh = t + Duration::from_secs(60);
        let stale = t - Duration::from_secs(20);
        let age = Duration::from_secs(30);
        let d = |cc: &str| RequestDirectives::parse(&request_with(&[("cache-control", cc)]));
        let none = RequestDirectives::default();
        assert_eq!(use_stored(&none, age, fresh, || false, t), StoredUse::Serve);
        assert_eq!(
            use_stored(&none, age, stale, || false, t),
            StoredUse::Default
        );
        assert_eq!(
            use_stored(&d("no-cache"), age, fresh, || false, t),
            StoredUse::Revalidate
        );
        assert_eq!(
            use_stored(&d("max-age=10"), age, fresh, || false, t),
            StoredUse::Revalidate
        );
        assert_eq!(
            use_stored(&d("max-age=60"), age, fresh, || false, t),
            StoredUse::Serve
        );
        assert_eq!(
            use_stored(&d("min-fresh=120"), age, fresh, || false, t),
            StoredUse::Revalidate
        );
        assert_eq!(
            use_stored(&d("min-fresh=30"), age, fresh, || false, t),
            StoredUse::Serve
        );
        assert_eq!(
            use_stored(&d("max-stale"), age, stale, || false, t),
            StoredUse::Serve
        );
        assert_eq!(
            use_stored(&d("max-stale=30"), age, stale, || false, t),
            StoredUse::Serve
        );
        assert_eq!(
            use_stored(&d("max-stale=10"), age, stale, || false, t),
            StoredUse::Default
        );
        // must-revalidate beats max-stale.
        assert_eq!(
            use_stored(&d("max-stale"), age, stale, || true, t),
            StoredUse::Default
        );
    }

    #[test]
    fn a_304_updates_the_stored_fields_but_not_the_body_ones() {
        let t = now();
        let old = t - Duration::from_secs(3600);
        let stored = response(&[
            ("cache-control", "max-age=60"),
            ("date", &date(old)),
            ("age", "30"),
            ("content-length", "10"),
            ("x-version", "1"),
            ("x-kept", "yes"),
        ]);
        let not_modified = response(&[
            ("cache-control", "max-age=120"),
            ("x-version", "2"),
            ("content-length", "0"),
            ("connection", "close"),
        ]);
        let merged = merge_304(&stored, &not_modified, t);
        assert_eq!(merged.headers["cache-control"], "max-age=120");
        assert_eq!(merged.headers["x-version"], "2");
        assert_eq!(merged.headers["x-kept"], "yes");
        assert_eq!(merged.headers["content-length"], "10");
        assert!(!merged.headers.contains_key("connection"));
        assert!(!merged.headers.contains_key("age"));
        assert_eq!(merged.headers["date"], date(t).as_str());
        // Freshly validated: the full new lifetime from now.
        assert_eq!(stored_for(&merged, t), Some((120, 0)));
    }

    fn stored_for(header: &ResponseHeader, t: SystemTime) -> Option<(i64, u64)> {
        stored(decide(&policy(), &get("/a"), header, t), t)
    }

    #[test]
    fn only_get_and_head() {
        assert!(request_is_cacheable(&get("/")));
        assert!(request_is_cacheable(
            &RequestHeader::build("HEAD", b"/", None).unwrap()
        ));
        assert!(!request_is_cacheable(
            &RequestHeader::build("POST", b"/", None).unwrap()
        ));
    }
}
