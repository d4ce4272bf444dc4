//! `/api/whoami`: the demo's dynamic endpoint.
//!
//! Why: it is the response an edge must never cache (`Cache-Control:
//! no-store`) and the one that shows which region's origin actually answered
//! and which client address reached it, which is what the outage demo and
//! the failover tests observe through an edge.

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use axum::{Extension, http::HeaderMap};
use http::header::CACHE_CONTROL;
use http::{HeaderValue, header};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Numbers the requests answered in this process (across every router), from 1.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Who this origin is, as reported in every answer.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The region name.
    pub(crate) region: String,
    /// The address the origin listens on.
    pub(crate) origin: SocketAddr,
}

/// Answers `/api/whoami`. The peer address is optional so the router also
/// works when it is driven without `into_make_service_with_connect_info`.
pub(crate) async fn whoami(
    State(identity): State<Arc<Identity>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let forwarded_for = forwarded_for(&headers);
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let client = client_address(forwarded_for.as_deref(), peer);
    let body = json!({
        "region": identity.region,
        "origin": identity.origin.to_string(),
        "client": client.map(|ip| ip.to_string()),
        "forwarded_for": forwarded_for,
        "time": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "request_id": REQUESTS.fetch_add(1, Ordering::Relaxed) + 1,
    });
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
}

/// The raw `X-Forwarded-For` value; several header lines are one list
/// (RFC 9110 §5.3), so they are joined in order.
fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(", "))
    }
}

/// The original client: the left-most `X-Forwarded-For` entry when it is an
/// IP address (bare, or with a port as some proxies write it), else the TCP
/// peer's address.
pub(crate) fn client_address(
    forwarded_for: Option<&str>,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    forwarded_for
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .and_then(|first| {
            first
                .parse::<IpAddr>()
                .ok()
                .or_else(|| first.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        })
        .or_else(|| peer.map(|addr| addr.ip()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    fn peer() -> Option<SocketAddr> {
        Some("127.0.0.9:55555".parse().unwrap())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn left_most_forwarded_address_wins() {
        for (forwarded, client) in [
            ("203.0.113.7, 10.0.0.1", "203.0.113.7"),
            (" 2001:db8::1 ,10.0.0.1", "2001:db8::1"),
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
        ] {
            assert_eq!(
                client_address(Some(forwarded), peer()),
                ip(client),
                "{forwarded}"
            );
        }
    }

    #[test]
    fn falls_back_to_the_peer() {
        assert_eq!(client_address(None, peer()), ip("127.0.0.9"));
        assert_eq!(
            client_address(Some("unknown, 10.0.0.1"), peer()),
            ip("127.0.0.9")
        );
        assert_eq!(client_address(Some(""), peer()), ip("127.0.0.9"));
        assert_eq!(client_address(Some("garbage"), None), None);
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded_for(&headers), None);
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        assert_eq!(
            forwarded_for(&headers).as_deref(),
            Some("203.0.113.7, 10.0.0.1")
        );
    }
}
