//! Which host a request is for, normalized for comparison and cache keys.

use pingora::http::RequestHeader;
use pingora::http::authority::{RawTargetAuthority, raw_target_authority};

/// The request's host: from the request target's authority when it has one
/// (HTTP/2 `:authority`, absolute-form URIs), else the `Host` header. The
/// port and a trailing dot are dropped and letters lowercased, so
/// `CDN.Meridian.Test.:8080` and `cdn.meridian.test` are the same host.
/// `None` when there is no host or it is not a valid host name or address.
pub fn request_host(req: &RequestHeader) -> Option<String> {
    let authority = match req.uri.authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => req
            .headers
            .get(http::header::HOST)?
            .to_str()
            .ok()?
            .to_owned(),
    };
    normalize(&authority)
}

/// The scheme the request's target names, lowercased: HTTP/2's `:scheme`,
/// or an absolute-form HTTP/1 target's (`GET https://host/p`). Pingora
/// keeps an absolute-form target only in the raw request line, leaving its
/// URI a bare path, so that is where it is read from.
pub fn target_scheme(req: &RequestHeader) -> Option<String> {
    if let Some(scheme) = req.uri.scheme_str() {
        return Some(scheme.to_ascii_lowercase());
    }
    match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::Absolute { scheme, .. } => {
            Some(String::from_utf8_lossy(scheme).to_ascii_lowercase())
        }
        _ => None,
    }
}

/// The origin-form of an absolute-form target (`http://host/p?q` → `/p?q`),
/// or `None` when the target is not in absolute form.
pub fn origin_form(req: &RequestHeader) -> Option<Vec<u8>> {
    match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::Absolute { path_and_query, .. } => Some(match path_and_query {
            [] => b"/".to_vec(),
            [b'/', ..] => path_and_query.to_vec(),
            query => [b"/", query].concat(),
        }),
        _ => None,
    }
}

/// Normalizes an authority (`host[:port]`) to a host: see [`request_host`].
pub fn normalize(authority: &str) -> Option<String> {
    // Userinfo has no business in a Host.
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: keep the brackets, drop the port.
        let end = rest.find(']')?;
        let literal = &rest[..end];
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(format!("[{}]", literal.to_ascii_lowercase()));
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_its_scheme_and_has_an_origin_form() {
        let get = |target: &str| RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        assert_eq!(target_scheme(&get("/p")), None);
        assert_eq!(
            target_scheme(&get("HTTPS://cdn.meridian.test/p")).as_deref(),
            Some("https")
        );
        assert_eq!(origin_form(&get("/p")), None);
        assert_eq!(
            origin_form(&get("http://cdn.meridian.test/p?q=1")).as_deref(),
            Some(&b"/p?q=1"[..])
        );
        assert_eq!(
            origin_form(&get("http://cdn.meridian.test")).as_deref(),
            Some(&b"/"[..])
        );
        assert_eq!(
            origin_form(&get("http://cdn.meridian.test?q")).as_deref(),
            Some(&b"/?q"[..])
        );
    }

    fn with_host(host: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("host", host).unwrap();
        req
    }

    #[test]
    fn normalizes_case_port_and_trailing_dot() {
        for (host, normalized) in [
            ("CDN.Meridian.Test.:8080", "cdn.meridian.test"),
            ("cdn.meridian.test", "cdn.meridian.test"),
            ("127.0.2.1:8080", "127.0.2.1"),
            ("[::1]:8080", "[::1]"),
        ] {
            assert_eq!(
                request_host(&with_host(host)).as_deref(),
                Some(normalized),
                "{host}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_host() {
        for bad in [
            "",
            "a b",
            "user@host",
            "host:port",
            "[nope]",
            "evil/..",
            ":80",
        ] {
            assert_eq!(request_host(&with_host(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn absolute_form_authority_wins() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.set_uri("http://cdn.meridian.test/x".parse().unwrap());
        req.insert_header("host", "other.example").unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("cdn.meridian.test"));
    }

    #[test]
    fn no_host_at_all() {
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(request_host(&req), None);
    }
}
