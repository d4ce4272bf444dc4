//! What a `Range` header asks of a stored response (RFC 9110 §14), decided
//! before Pingora's range filter builds the 206 (pure).
//!
//! Pingora's filter answers the common cases, but reads two corners
//! differently from the RFC: a suffix range of zero bytes (`bytes=-0`) is
//! unsatisfiable (§14.1.1: a suffix range must have a non-zero length), not
//! an empty 206 with `Content-Range: bytes 1024-1023/1024`; and a range
//! whose last position is before its first (`bytes=5-2`) makes the header
//! invalid, which a server ignores (§14.2), sending the whole 200, not a
//! 416. [`classify`] settles those, and hands Pingora only the satisfiable
//! specs of a valid header.

/// What to do with a request's `Range` for a representation of a given
/// length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable `Range`: send the whole representation (200).
    Ignore,
    /// Valid, but no range in it is satisfiable: 416.
    Unsatisfiable,
    /// Valid and satisfiable: serve these specs (the header with the
    /// unsatisfiable ones left out; the same text when none was).
    Serve(String),
}

/// One byte-range-spec as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-[last]`.
    From { first: u64, last: Option<u64> },
    /// `-length`.
    Suffix { length: u64 },
}

impl Spec {
    fn satisfiable(self, representation: u64) -> bool {
        match self {
            Spec::From { first, .. } => first < representation,
            Spec::Suffix { length } => length > 0 && representation > 0,
        }
    }
}

/// Parses a decimal position: digits only, any length (a position past
/// what fits is past any representation, so it saturates).
fn position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

fn spec(text: &str) -> Option<Spec> {
    let (first, last) = text.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix {
            length: position(last)?,
        });
    }
    let first = position(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(position(last)?)
    };
    // §14.1.1: an int-range whose last-pos is below its first-pos is invalid.
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::From { first, last })
}

/// What `range` (the header's value) asks of a representation of
/// `representation` bytes.
pub fn classify(range: &[u8], representation: u64) -> RangeRequest {
    let Ok(range) = std::str::from_utf8(range) else {
        return RangeRequest::Ignore;
    };
    let Some((unit, set)) = range.split_once('=') else {
        return RangeRequest::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Ignore;
    }
    let mut specs = Vec::new();
    // Empty list elements are allowed and skipped (RFC 9110 §5.6.1).
    for element in set.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match spec(element) {
            Some(spec) => specs.push((element, spec)),
            None => return RangeRequest::Ignore,
        }
    }
    if specs.is_empty() {
        return RangeRequest::Ignore;
    }
    let satisfiable: Vec<&str> = specs
        .iter()
        .filter(|(_, spec)| spec.satisfiable(representation))
        .map(|(text, _)| *text)
        .collect();
    if satisfiable.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Serve(format!("bytes={}", satisfiable.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(ranges: &str) -> RangeRequest {
        RangeRequest::Serve(ranges.to_owned())
    }

    #[test]
    fn corners_follow_rfc_9110() {
        let cases: [(&str, RangeRequest); 17] = [
            ("bytes=0-99", serve("bytes=0-99")),
            ("bytes=-100", serve("bytes=-100")),
            ("bytes=100-", serve("bytes=100-")),
            ("BYTES = 0-1", serve("bytes=0-1")),
            ("bytes=0-1, 5-9", serve("bytes=0-1,5-9")),
            ("bytes=0-1,,5-9,", serve("bytes=0-1,5-9")),
            // A zero-length suffix is never satisfiable.
            ("bytes=-0", RangeRequest::Unsatisfiable),
            ("bytes=-0,0-1", serve("bytes=0-1")),
            // Starts at or past the end.
            ("bytes=1024-", RangeRequest::Unsatisfiable),
            (
                "bytes=99999999999999999999999-",
                RangeRequest::Unsatisfiable,
            ),
            // Invalid: ignored, the whole representation is sent.
            ("bytes=5-2", RangeRequest::Ignore),
            ("bytes=0-1,5-2", RangeRequest::Ignore),
            ("bytes=a-b", RangeRequest::Ignore),
            ("bytes=-", RangeRequest::Ignore),
            ("bytes=", RangeRequest::Ignore),
            ("items=0-1", RangeRequest::Ignore),
            ("bytes 0-1", RangeRequest::Ignore),
        ];
        for (range, expected) in cases {
            assert_eq!(classify(range.as_bytes(), 1024), expected, "{range:?}");
        }
    }

    #[test]
    fn an_empty_representation_satisfies_nothing() {
        assert_eq!(classify(b"bytes=-5", 0), RangeRequest::Unsatisfiable);
        assert_eq!(classify(b"bytes=0-", 0), RangeRequest::Unsatisfiable);
    }
}
