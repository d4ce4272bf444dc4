//! `Vary`: which stored variant a request gets (RFC 9111 §4.1).
//!
//! A response that varies on request headers is stored once per distinct
//! combination of those headers' values. `Accept-Encoding` is normalized
//! first: browsers send dozens of spellings of "gzip and brotli", and keying
//! on the raw value would store the same bytes dozens of times. The edge
//! also sends the normalized value upstream, so each stored variant is
//! exactly what its bucket asked for.

use pingora::cache::VarianceBuilder;
use pingora::cache::key::HashBinary;
use pingora::http::{RequestHeader, ResponseHeader};

/// The encodings the edge distinguishes, most preferred first.
const ENCODINGS: [&str; 2] = ["br", "gzip"];

/// The one encoding bucket a request falls in: the most preferred encoding
/// it accepts (`br`, then `gzip`), else `identity`.
pub fn normalize_accept_encoding(value: Option<&str>) -> &'static str {
    let Some(value) = value else {
        return "identity";
    };
    let accepted: Vec<(String, bool)> = value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let coding = parts.next()?.trim().to_ascii_lowercase();
            if coding.is_empty() {
                return None;
            }
            // `q=0` means "not acceptable".
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            Some((coding, !refused))
        })
        .collect();
    let accepts = |coding: &str| {
        accepted
            .iter()
            .find(|(c, _)| c == coding)
            .map(|(_, ok)| *ok)
            .unwrap_or_else(|| {
                // `*` stands for every coding not listed.
                accepted.iter().any(|(c, ok)| c == "*" && *ok)
            })
    };
    ENCODINGS
        .into_iter()
        .find(|e| accepts(e))
        .unwrap_or("identity")
}

/// The variance key of `request` for a stored response with headers
/// `stored`: `None` when the response does not vary.
pub fn variance(stored: &ResponseHeader, request: &RequestHeader) -> Option<HashBinary> {
    let mut names: Vec<String> = stored
        .headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    names.sort();
    names.dedup();
    let mut key = VarianceBuilder::new();
    for name in names {
        let value = if name == "accept-encoding" {
            normalize_accept_encoding(request_value(request, &name).as_deref())
                .as_bytes()
                .to_vec()
        } else {
            request_value(request, &name)
                .unwrap_or_default()
                .into_bytes()
        };
        key.add_owned_name_value(name, value);
    }
    key.finalize()
}

/// All of a request header's values, joined as one list, trimmed.
fn request_value(request: &RequestHeader, name: &str) -> Option<String> {
    let values: Vec<&str> = request
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_buckets() {
        assert_eq!(normalize_accept_encoding(None), "identity");
        assert_eq!(normalize_accept_encoding(Some("gzip, deflate, br")), "br");
        assert_eq!(
            normalize_accept_encoding(Some("gzip, deflate, br, zstd")),
            "br"
        );
        assert_eq!(normalize_accept_encoding(Some("GZIP")), "gzip");
        assert_eq!(
            normalize_accept_encoding(Some("gzip;q=1.0, br;q=0")),
            "gzip"
        );
        assert_eq!(normalize_accept_encoding(Some("deflate")), "identity");
        assert_eq!(normalize_accept_encoding(Some("*")), "br");
        assert_eq!(normalize_accept_encoding(Some("*, br;q=0")), "gzip");
        assert_eq!(normalize_accept_encoding(Some("")), "identity");
    }

    fn stored(vary: &str) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("vary", vary).unwrap();
        r
    }

    fn request(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            r.append_header(*name, *value).unwrap();
        }
        r
    }

    #[test]
    fn no_vary_no_variance() {
        let plain = ResponseHeader::build(200, None).unwrap();
        assert_eq!(variance(&plain, &request(&[])), None);
    }

    #[test]
    fn equivalent_accept_encodings_share_a_variant() {
        let s = stored("Accept-Encoding");
        let chrome = variance(
            &s,
            &request(&[("accept-encoding", "gzip, deflate, br, zstd")]),
        );
        let firefox = variance(&s, &request(&[("accept-encoding", "gzip, deflate, br")]));
        let curl = variance(&s, &request(&[]));
        assert_eq!(chrome, firefox);
        assert_ne!(chrome, curl);
    }

    #[test]
    fn other_headers_vary_on_their_value_and_names_are_case_insensitive() {
        let s = stored("accept-language, Accept-Language");
        let en = variance(&s, &request(&[("accept-language", "en")]));
        let fr = variance(&s, &request(&[("accept-language", "fr")]));
        let en_again = variance(&s, &request(&[("Accept-Language", "en ")]));
        assert_ne!(en, fr);
        assert_eq!(en, en_again);
    }
}
