//! Which request and response fields cross the edge (pure).
//!
//! A cache stores a response under its key (scheme, host, path, query, and
//! the `Vary` fields the origin names). Any request field that changes the
//! response but is neither in the key nor named in `Vary` lets one client
//! shape what every other client gets: cache poisoning. Origins commonly
//! trust dozens of such fields (`X-Forwarded-Host`, `X-Forwarded-Scheme`,
//! `X-Original-URL`, `X-HTTP-Method-Override`, ...), and no list of them is
//! ever complete. So for requests the cache may answer (GET and HEAD) the
//! edge forwards only fields it knows ([`CACHEABLE_REQUEST_FIELDS`]: content
//! negotiation, credentials, conditionals, browser context, tracing) and
//! those the operator lists in `edge.forward_request_headers`; every other
//! field is dropped. Other requests are never stored, so they keep their
//! fields, except those that impersonate a proxy hop
//! ([`SPOOFABLE_FORWARDING_FIELDS`]), which the edge sets itself.
//!
//! Fields named in a message's `Connection` header, and the fixed
//! hop-by-hop ones, describe one connection and never cross the edge in
//! either direction (RFC 9110 §7.6.1).
//!
//! `CDN-Loop` (RFC 8586) marks requests that went through this CDN, so a
//! misconfiguration that points an origin back at an edge is refused
//! instead of looping until connections run out.

use http::HeaderName;
use http::header::HeaderMap;

/// Fields forwarded to origins on requests the cache may answer, besides
/// the operator's own. Each either is part of the request's meaning
/// (method semantics, credentials, conditionals, framing), or is one an
/// origin that depends on it names in `Vary`, which puts it in the key.
pub const CACHEABLE_REQUEST_FIELDS: [&str; 38] = [
    // The message and its framing.
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "expect",
    // Content negotiation (RFC 9110 §12.5).
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    // Who asks. Responses to `Authorization` are not stored unless public
    // (RFC 9111 §3.5); a response that depends on `Cookie` must say
    // `private` or `Vary: Cookie`.
    "authorization",
    "cookie",
    "user-agent",
    "referer",
    "origin",
    // Caching and conditional requests.
    "cache-control",
    "pragma",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    // Browser context and client hints, which responses `Vary` on.
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "save-data",
    "dnt",
    "upgrade-insecure-requests",
    "priority",
    // Tracing (W3C Trace Context), and the hops so far (the edge adds
    // itself to both of the last two).
    "traceparent",
    "tracestate",
    "x-forwarded-for",
    "cdn-loop",
];

/// Fields a client sends to impersonate a proxy in front of the origin:
/// the scheme, host, port, path or method the "real" request had, or the
/// client's address. The edge is that proxy; it removes these from every
/// request and sets `X-Forwarded-For` and `X-Forwarded-Proto` itself.
pub const SPOOFABLE_FORWARDING_FIELDS: [&str; 25] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-protocol",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-forwarded-uri",
    "x-original-url",
    "x-original-uri",
    "x-original-host",
    "x-original-method",
    "x-rewrite-url",
    "x-host",
    "x-url-scheme",
    "x-scheme",
    "front-end-https",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-envoy-original-path",
    "x-real-ip",
];

/// The fields named in `Connection`; framing fields are left out, since
/// removing them would change how the message is read.
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| {
            *name != http::header::CONTENT_LENGTH && *name != http::header::TRANSFER_ENCODING
        })
}

/// The connection-specific fields a message carries, to be removed before
/// it crosses the edge: the fixed hop-by-hop ones and those its
/// `Connection` header names. (Returned rather than removed: Pingora's
/// headers keep a map of their original name case, which only its own
/// `remove_header` keeps in step.)
pub fn connection_fields(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut fields: Vec<HeaderName> = connection_named(headers).collect();
    fields.extend(
        config::HOP_BY_HOP_FIELDS
            .iter()
            .map(|name| HeaderName::from_static(name))
            .filter(|name| headers.contains_key(name)),
    );
    fields.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    fields.dedup();
    fields
}

/// The request's fields that do not reach the origin: see the module
/// documentation. `cacheable` says whether the cache may answer the
/// request; `keep` is the operator's list of extra fields.
pub fn unforwarded_request_fields(
    headers: &HeaderMap,
    cacheable: bool,
    keep: &[HeaderName],
) -> Vec<HeaderName> {
    let mut fields = connection_fields(headers);
    for name in headers.keys() {
        let kept = keep.contains(name);
        let spoofable = SPOOFABLE_FORWARDING_FIELDS.contains(&name.as_str());
        let unknown = !CACHEABLE_REQUEST_FIELDS.contains(&name.as_str());
        if !kept && (spoofable || (cacheable && unknown)) && !fields.contains(name) {
            fields.push(name.clone());
        }
    }
    fields
}

/// What a request's `CDN-Loop` (RFC 8586) says about this CDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopMark {
    /// It does not list this CDN.
    None,
    /// It lists this CDN once, as a peer fill (`<cdn id>; fill=peer`):
    /// another edge of the region asking the object's owner, which is
    /// not a loop when it comes from a peer (see [`crate::peers`]).
    PeerFill,
    /// It went through this CDN already: a loop.
    Looped,
}

/// The `fill` parameter of a peer fill's `CDN-Loop` entry.
const PEER_FILL_PARAMETER: &str = "fill=peer";

/// The `CDN-Loop` entry an edge adds to a peer-fill request.
pub fn peer_fill_mark(cdn_id: &str) -> String {
    format!("{cdn_id}; {PEER_FILL_PARAMETER}")
}

/// What `headers`' `CDN-Loop` says about the CDN `cdn_id`.
pub fn loop_mark(headers: &HeaderMap, cdn_id: &str) -> LoopMark {
    let ours: Vec<&str> = headers
        .get_all("cdn-loop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|info| {
            info.split(';')
                .next()
                .is_some_and(|id| id.trim().eq_ignore_ascii_case(cdn_id))
        })
        .collect();
    match ours.as_slice() {
        [] => LoopMark::None,
        [only]
            if only
                .split(';')
                .skip(1)
                .any(|p| p.trim().eq_ignore_ascii_case(PEER_FILL_PARAMETER)) =>
        {
            LoopMark::PeerFill
        }
        _ => LoopMark::Looped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    /// The names left after removing what the functions say.
    fn left(mut map: HeaderMap, removed: Vec<HeaderName>) -> Vec<String> {
        for name in removed {
            map.remove(name);
        }
        let mut names: Vec<String> = map.keys().map(|n| n.as_str().to_owned()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn cacheable_requests_forward_only_known_fields_and_the_operators() {
        let map = headers(&[
            ("host", "cdn.meridian.test"),
            ("accept-language", "en"),
            ("x-forwarded-scheme", "http"),
            ("x-forwarded-ssl", "off"),
            ("front-end-https", "off"),
            ("x-url-scheme", "http"),
            ("x-original-host", "evil.example"),
            ("x-forwarded-prefix", "/evil"),
            ("x-forwarded-uri", "/evil"),
            ("x-http-method-override", "DELETE"),
            ("x-envoy-original-path", "/evil"),
            ("x-something-new", "1"),
            ("x-api-key", "k"),
        ]);
        let keep = [HeaderName::from_static("x-api-key")];
        let removed = unforwarded_request_fields(&map, true, &keep);
        assert_eq!(left(map, removed), ["accept-language", "host", "x-api-key"]);
    }

    #[test]
    fn other_requests_lose_only_what_impersonates_a_proxy() {
        let map = headers(&[
            ("host", "cdn.meridian.test"),
            ("x-something-new", "1"),
            ("x-forwarded-host", "evil.example"),
            ("x-http-method-override", "DELETE"),
        ]);
        let removed = unforwarded_request_fields(&map, false, &[]);
        assert_eq!(left(map, removed), ["host", "x-something-new"]);
        // An operator behind a trusted proxy may keep one.
        let map = headers(&[("x-forwarded-host", "a.example")]);
        let keep = [HeaderName::from_static("x-forwarded-host")];
        let removed = unforwarded_request_fields(&map, true, &keep);
        assert_eq!(left(map, removed), ["x-forwarded-host"]);
    }

    #[test]
    fn connection_named_fields_do_not_cross() {
        let map = headers(&[
            ("connection", "close, X-Secret , content-length"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
            ("accept", "*/*"),
        ]);
        let removed = connection_fields(&map);
        assert_eq!(left(map, removed), ["accept", "content-length"]);
    }

    #[test]
    fn loops_are_found_by_this_cdns_id_only() {
        let map = headers(&[("cdn-loop", "other-cdn, meridian.test; v=1")]);
        assert_eq!(loop_mark(&map, "meridian.test"), LoopMark::Looped);
        assert_eq!(loop_mark(&map, "MERIDIAN.TEST"), LoopMark::Looped);
        assert_eq!(loop_mark(&map, "meridian"), LoopMark::None);
        assert_eq!(
            loop_mark(&HeaderMap::new(), "meridian.test"),
            LoopMark::None
        );
    }

    #[test]
    fn a_peer_fill_is_this_cdns_only_entry_marked_fill_peer() {
        let id = "meridian.test";
        let mark = peer_fill_mark(id);
        assert_eq!(mark, "meridian.test; fill=peer");
        for fill in [
            mark.clone(),
            format!("other-cdn, {mark}"),
            "Meridian.Test ; FILL=peer".to_owned(),
        ] {
            let map = headers(&[("cdn-loop", fill.as_str())]);
            assert_eq!(loop_mark(&map, id), LoopMark::PeerFill, "{fill}");
        }
        // Twice through this CDN, or marked otherwise: a loop. (A peer
        // fill that the owner forwarded to an origin that points back at
        // the CDN arrives with both entries.)
        for looped in [
            format!("{mark}, meridian.test"),
            format!("{mark}, {mark}"),
            "meridian.test; fill=origin".to_owned(),
            "meridian.test; v=1, other; fill=peer".to_owned(),
        ] {
            let map = headers(&[("cdn-loop", looped.as_str())]);
            assert_eq!(loop_mark(&map, id), LoopMark::Looped, "{looped}");
        }
        let two_fields = headers(&[("cdn-loop", mark.as_str()), ("cdn-loop", "meridian.test")]);
        assert_eq!(loop_mark(&two_fields, id), LoopMark::Looped);
    }

    #[test]
    fn what_the_edge_sets_is_replaced_or_extended_never_trusted() {
        let map = headers(&[
            ("x-forwarded-proto", "https"),
            ("forwarded", "proto=https"),
            ("x-forwarded-for", "10.0.0.1"),
            ("cdn-loop", "other-cdn"),
        ]);
        // The edge sets these two afresh...
        let removed = unforwarded_request_fields(&map, true, &[]);
        assert_eq!(left(map, removed), ["cdn-loop", "x-forwarded-for"]);
        // ...and appends itself to these, which is what they are for.
        for name in config::SET_BY_THE_EDGE {
            assert!(!config::forwardable_request_field(name), "{name}");
        }
    }
}
