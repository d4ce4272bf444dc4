//! Cache keys: scheme, host, path and query, normalized.
//!
//! Two requests share a stored response exactly when their keys are equal,
//! so normalization must merge only what RFC 3986 §6.2.2 says is the same
//! resource: percent-escapes differ only in hex case (`%2f` = `%2F`), and an
//! escaped unreserved character equals the character (`%41` = `A`). It
//! leaves everything else alone — dot segments, doubled slashes, escaped
//! reserved characters — because the origin receives the request as sent
//! and may legitimately answer those differently; merging them could serve
//! one resource's response for another.

use pingora::cache::CacheKey;

/// The cache key of `scheme://host/path?query`. Components are separated by
/// a NUL, which cannot occur in any of them, so no two requests collide.
pub fn cache_key(scheme: &str, host: &str, path_and_query: &str) -> CacheKey {
    // Built by hand, not with `format!`: this runs on every request, and the
    // formatting machinery cost more than the rest of it.
    let mut primary = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 2);
    primary.push_str(scheme);
    primary.push('\0');
    primary.push_str(host);
    primary.push('\0');
    normalize_into(&mut primary, path_and_query);
    CacheKey::new(primary, "")
}

/// Appends `path_and_query` to `out` with its percent-escapes normalized as
/// RFC 3986 §6.2.2.1–2 allows.
fn normalize_into(out: &mut String, path_and_query: &str) {
    let bytes = path_and_query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(hi), hex(lo))
        {
            let decoded = h << 4 | l;
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(hi.to_ascii_uppercase()));
                out.push(char::from(lo.to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        // The request line is ASCII (pingora rejects anything else), but
        // be safe with whatever `&str` holds.
        let c = path_and_query[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(c);
        i += c.len_utf8().max(1);
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::key::CacheHashKey;

    fn normalize(path_and_query: &str) -> String {
        let mut out = String::new();
        normalize_into(&mut out, path_and_query);
        out
    }

    fn same(a: &str, b: &str) -> bool {
        cache_key("http", "h", a).primary_bin() == cache_key("http", "h", b).primary_bin()
    }

    #[test]
    fn escapes_of_unreserved_characters_are_the_characters() {
        assert!(same("/%41%62c", "/Abc"));
        assert!(same("/a%7Eb", "/a~b"));
        assert_eq!(normalize("/%2e%2E/x"), "/../x");
    }

    #[test]
    fn hex_case_does_not_matter_for_reserved_escapes() {
        assert!(same("/a%2fb", "/a%2Fb"));
        assert_eq!(normalize("/a%2fb?q=%3d"), "/a%2Fb?q=%3D");
    }

    #[test]
    fn different_resources_stay_different() {
        assert!(!same("/a%2Fb", "/a/b"), "an escaped slash is not a slash");
        assert!(!same("/a//b", "/a/b"));
        assert!(!same("/a/./b", "/a/b"));
        assert!(!same("/a?x=1", "/a?x=2"));
        assert!(!same("/A", "/a"));
        assert!(
            cache_key("http", "a", "/").primary_bin() != cache_key("http", "b", "/").primary_bin()
        );
        assert!(
            cache_key("http", "a", "/").primary_bin() != cache_key("https", "a", "/").primary_bin()
        );
    }

    #[test]
    fn broken_escapes_are_kept_as_they_are() {
        assert_eq!(normalize("/100%"), "/100%");
        assert_eq!(normalize("/%zz"), "/%zz");
        assert_eq!(normalize("/%4"), "/%4");
    }
}
