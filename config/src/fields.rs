//! Values of the file that are checked as they are read.
//!
//! Parse, don't validate: each type here can only hold a valid value. The
//! file structs ([`crate::file`]) are made of them, so serde refuses a bad
//! value while it reads it, and the error's key is the path the
//! deserializer was at (`region[1].latitude`), not one a checker spelled
//! out. What is left for [`crate::validate`] is rules between fields
//! (a steered name inside the zone, a timeout below its interval).
//!
//! Names stay typed after lowering: a [`DnsName`] carries the
//! hickory-proto `Name` GeoDNS answers with, so nothing parses it twice.

use serde::Deserialize;
use std::fmt;
use std::ops::Deref;

/// A number in `LOW..=HIGH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "u64")]
pub struct Within<const LOW: u64, const HIGH: u64>(u64);

impl<const LOW: u64, const HIGH: u64> Within<LOW, HIGH> {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The number, which the bounds make fit a `u32`.
    pub fn get_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// A default known to be within the bounds (a bad constant in this
    /// crate is a bug, caught by the defaults' own tests).
    pub(crate) const fn new_unchecked(value: u64) -> Self {
        Within(value)
    }
}

impl<const LOW: u64, const HIGH: u64> TryFrom<u64> for Within<LOW, HIGH> {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, String> {
        if (LOW..=HIGH).contains(&value) {
            Ok(Within(value))
        } else {
            Err(format!("must be between {LOW} and {HIGH}, got {value}"))
        }
    }
}

/// A TCP or UDP port to listen on (not 0).
pub type Port = Within<1, 65535>;

/// A time in milliseconds an edge waits on an origin or a client: at most
/// an hour.
pub type TimeoutMs = Within<1, 3_600_000>;

/// A TTL: DNS TTLs are 31-bit values (RFC 2181 §8).
pub type Ttl = Within<0, { i32::MAX as u64 }>;

/// A fully qualified domain name: lowercase, with its final dot, each
/// label of letters, digits, `-` and `_`, within DNS's lengths.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct DnsName {
    text: String,
    name: hickory_proto::rr::Name,
}

impl DnsName {
    /// The root, `.` (only where a record may name it: a null MX).
    pub fn root() -> Self {
        DnsName {
            text: ".".to_owned(),
            name: hickory_proto::rr::Name::root(),
        }
    }

    /// The name as GeoDNS answers it.
    pub fn hickory(&self) -> &hickory_proto::rr::Name {
        &self.name
    }

    /// Whether this name is `zone` or inside it.
    pub fn is_in(&self, zone: &DnsName) -> bool {
        self.text == zone.text || self.text.ends_with(&format!(".{}", zone.text))
    }

    /// The name without its final dot, as a host name (`cdn.example.net`).
    pub fn host(&self) -> &str {
        self.text.strip_suffix('.').unwrap_or(&self.text)
    }
}

impl TryFrom<String> for DnsName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let text = dns_name(&value)?;
        let name = hickory_proto::rr::Name::from_ascii(&text)
            .map_err(|e| format!("{value:?} is not a domain name: {e}"))?;
        Ok(DnsName { text, name })
    }
}

impl TryFrom<&str> for DnsName {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, String> {
        DnsName::try_from(value.to_owned())
    }
}

impl Deref for DnsName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl PartialEq<str> for DnsName {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for DnsName {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// Normalizes a domain name: lowercase, fully qualified; or says what is
/// wrong with it.
fn dns_name(value: &str) -> Result<String, String> {
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() {
        return Err(format!("{value:?} is not a domain name"));
    }
    if name.len() > 253 {
        return Err(format!("{value:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("{value:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("{value:?} has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{value:?} may only contain letters, digits, '-' and '_' in its labels"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{value:?} has a label that starts or ends with '-'"
            ));
        }
    }
    Ok(format!("{}.", name.to_ascii_lowercase()))
}

/// A host name a certificate or the edges serve, lowercase, without its
/// final dot; a certificate's may start with `*.`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPattern(String);

impl HostPattern {
    /// The host name (or `*.` pattern).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let (prefix, plain) = match value.strip_prefix("*.") {
            Some(rest) => ("*.", rest),
            None => ("", value.as_str()),
        };
        let name = dns_name(plain)?;
        Ok(HostPattern(format!(
            "{prefix}{}",
            name.trim_end_matches('.')
        )))
    }
}

/// A region's name: lowercase letters, digits and `-`, at most 63.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RegionName(String);

impl RegionName {
    /// The name.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for RegionName {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let valid = !value.is_empty()
            && value.len() <= 63
            && !value.starts_with('-')
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(RegionName(value))
        } else {
            Err(format!(
                "{value:?} must be lowercase letters, digits and '-' (at most 63), not starting with '-'"
            ))
        }
    }
}

/// A GeoDNS server's name (`ns1`): the same rules as a region's, so it
/// reads well in process labels and `--server NAME`.
pub type ServerName = RegionName;

/// How many vantage points must see an edge down before GeoDNS steers
/// away from it (`health.quorum`): `"majority"` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumField {
    /// More than half of the vantage points that report.
    Majority,
    /// At least this many, 1 to 100.
    AtLeast(u32),
}

/// The largest number `health.quorum` may name: more vantage points than
/// any deployment has, while a typo of a few digits is refused.
const MAX_QUORUM: u64 = 100;

impl<'de> Deserialize<'de> for QuorumField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = QuorumField;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "\"majority\" or a number of vantage points from 1 to {MAX_QUORUM}"
                )
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<QuorumField, E> {
                match value {
                    "majority" => Ok(QuorumField::Majority),
                    other => Err(E::custom(format!(
                        "must be \"majority\" or a number of vantage points from 1 to {MAX_QUORUM}, got {other:?}"
                    ))),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<QuorumField, E> {
                match u64::try_from(value) {
                    Ok(count) => self.visit_u64(count),
                    Err(_) => Err(E::custom(format!(
                        "must be \"majority\" or a number of vantage points from 1 to {MAX_QUORUM}, got {value}"
                    ))),
                }
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<QuorumField, E> {
                match u32::try_from(value) {
                    Ok(count) if (1..=MAX_QUORUM).contains(&value) => {
                        Ok(QuorumField::AtLeast(count))
                    }
                    _ => Err(E::custom(format!(
                        "must be \"majority\" or a number of vantage points from 1 to {MAX_QUORUM}, got {value}"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// Degrees north, in `[-90, 90]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Latitude(f64);

/// Degrees east, in `[-180, 180]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Longitude(f64);

impl Latitude {
    /// The degrees.
    pub fn degrees(self) -> f64 {
        self.0
    }
}

impl Longitude {
    /// The degrees.
    pub fn degrees(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Latitude {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, String> {
        if (-90.0..=90.0).contains(&value) {
            Ok(Latitude(value))
        } else {
            Err(format!("must be between -90 and 90, got {value}"))
        }
    }
}

impl TryFrom<f64> for Longitude {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, String> {
        if (-180.0..=180.0).contains(&value) {
            Ok(Longitude(value))
        } else {
            Err(format!("must be between -180 and 180, got {value}"))
        }
    }
}

/// Shortest admin token accepted: long enough not to be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// An admin token (`edge.admin_token`, `geodns.admin_token`): long enough
/// not to be guessed, and sendable in an `Authorization` header.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AdminToken(String);

impl AdminToken {
    /// The token.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for AdminToken {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        if value.len() < MIN_TOKEN_LEN || !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "must be at least {MIN_TOKEN_LEN} printable ASCII characters without spaces"
            ));
        }
        Ok(AdminToken(value))
    }
}

impl fmt::Debug for AdminToken {
    /// Never printed: it is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// A request field `edge.forward_request_headers` may list: a header field
/// name (lowercased) that is not a connection's own, its framing, or one
/// the edge sets itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ForwardedField(String);

impl ForwardedField {
    /// The lowercase name.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for ForwardedField {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let lower = value.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!("{value:?} is not a header field name"));
        }
        if !crate::forwardable_request_field(&lower) {
            return Err(format!(
                "{value:?} describes one connection or is set by the edge itself"
            ));
        }
        Ok(ForwardedField(lower))
    }
}

/// An absolute URL path (`/healthz`), without query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UrlPath(String);

impl UrlPath {
    /// The path.
    pub fn into_string(self) -> String {
        self.0
    }

    /// A default known to be an absolute path.
    pub(crate) fn new_unchecked(path: &str) -> Self {
        UrlPath(path.to_owned())
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UrlPath {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            return Err(format!("{value:?} must be an absolute path, without query"));
        }
        Ok(UrlPath(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_normalized_or_refused() {
        let name = DnsName::try_from("Example.COM").unwrap();
        assert_eq!(&*name, "example.com.");
        assert_eq!(name.host(), "example.com");
        assert_eq!(name.hickory().to_ascii(), "example.com.");
        assert_eq!(&*DnsName::try_from("example.com.").unwrap(), "example.com.");
        for bad in [".", "a..b", "-a.b", "a b.c", &"a".repeat(64)] {
            assert!(DnsName::try_from(bad).is_err(), "{bad:?}");
        }
        let zone = DnsName::try_from("meridian.test.").unwrap();
        assert!(DnsName::try_from("cdn.meridian.test").unwrap().is_in(&zone));
        assert!(zone.is_in(&zone));
        assert!(!DnsName::try_from("xmeridian.test").unwrap().is_in(&zone));
    }

    #[test]
    fn bounded_numbers_say_their_bounds() {
        assert_eq!(
            Port::try_from(0).unwrap_err(),
            "must be between 1 and 65535, got 0"
        );
        assert_eq!(Port::try_from(8080).unwrap().get(), 8080);
        assert!(Ttl::try_from(u64::from(u32::MAX)).is_err());
    }

    #[test]
    fn host_patterns_keep_a_wildcard() {
        let pattern = HostPattern::try_from("*.Meridian.Test.".to_owned()).unwrap();
        assert_eq!(pattern.into_string(), "*.meridian.test");
        assert!(HostPattern::try_from("*.".to_owned()).is_err());
    }
}
