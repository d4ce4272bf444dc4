//! The `Cache-Status` response header (RFC 9211).
//!
//! Every response an edge sends says what its cache did: `meridian; hit`,
//! `meridian; fwd=miss; stored`, `meridian; fwd=uri-miss; detail=...`. This
//! module turns pingora's cache phase into that header; it does no I/O so
//! the mapping is unit-tested on its own.

use pingora::cache::{CachePhase, NoCacheReason};
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// The cache's name in `Cache-Status` (RFC 9211 §2: an identifier of the cache).
pub const CACHE_NAME: &str = "meridian";

/// What the cache did with one request, in RFC 9211 terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from cache; `ttl` is the remaining freshness (negative when stale).
    Hit {
        /// Seconds of freshness left.
        ttl: i64,
    },
    /// Forwarded to the origin.
    Forward {
        /// Why it was forwarded (the RFC's `fwd` parameter).
        reason: ForwardReason,
        /// The origin's status when it differs from the one sent (`fwd-status`).
        fwd_status: Option<u16>,
        /// Whether the response was stored.
        stored: bool,
        /// Remaining freshness of what was stored.
        ttl: Option<i64>,
        /// Extra detail, as a token.
        detail: Option<&'static str>,
    },
    /// Answered by the edge itself without consulting the cache.
    Local {
        /// What the edge answered, as a token.
        detail: &'static str,
    },
}

/// The `fwd` parameter values Meridian uses (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardReason {
    /// The cache was configured not to handle this request.
    Bypass,
    /// The method is never served from cache (e.g. POST).
    Method,
    /// Nothing was stored for this URI.
    UriMiss,
    /// No stored response could be used.
    Miss,
    /// A stored response existed but was stale.
    Stale,
    /// A fresh stored response existed, but the request's directives
    /// (`no-cache`, `max-age`, `min-fresh`) did not allow its use.
    Request,
}

impl ForwardReason {
    fn as_str(self) -> &'static str {
        match self {
            ForwardReason::Bypass => "bypass",
            ForwardReason::Method => "method",
            ForwardReason::UriMiss => "uri-miss",
            ForwardReason::Miss => "miss",
            ForwardReason::Stale => "stale",
            ForwardReason::Request => "request",
        }
    }
}

impl CacheOutcome {
    /// The header value, e.g. `meridian; fwd=miss; stored; ttl=3600`.
    pub fn header_value(&self) -> String {
        let mut value = String::with_capacity(64);
        value.push_str(CACHE_NAME);
        // Writing to a String cannot fail.
        let _ = match self {
            // Every hit builds this: integers through `itoa`, not `fmt`,
            // which cost more than the rest of the value.
            CacheOutcome::Hit { ttl } => {
                value.push_str("; hit; ttl=");
                value.push_str(itoa::Buffer::new().format(*ttl));
                Ok(())
            }
            CacheOutcome::Forward {
                reason,
                fwd_status,
                stored,
                ttl,
                detail,
            } => {
                let _ = write!(value, "; fwd={}", reason.as_str());
                if let Some(status) = fwd_status {
                    let _ = write!(value, "; fwd-status={status}");
                }
                if *stored {
                    value.push_str("; stored");
                }
                if let Some(ttl) = ttl {
                    let _ = write!(value, "; ttl={ttl}");
                }
                match detail {
                    Some(detail) => write!(value, "; detail={detail}"),
                    None => Ok(()),
                }
            }
            CacheOutcome::Local { detail } => write!(value, "; detail={detail}"),
        };
        value
    }
}

/// Seconds from `now` until `fresh_until`, rounded to the nearest second;
/// negative once stale.
pub fn ttl_seconds(fresh_until: SystemTime, now: SystemTime) -> i64 {
    match fresh_until.duration_since(now) {
        Ok(left) => secs(left),
        Err(past) => -secs(past.duration()),
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from((d.as_millis() + 500) / 1000).unwrap_or(i64::MAX)
}

/// The outcome of a request that went through pingora's cache state machine.
///
/// `cache_enabled` is false for requests the cache never considered (e.g.
/// POST), `phase` is the final [`CachePhase`], `fresh_until` the freshness of
/// the cached or stored response when there is one, and `request_forced`
/// says the request's own directives sent a fresh response back to the
/// origin.
pub fn from_phase(
    cache_enabled: bool,
    phase: CachePhase,
    fresh_until: Option<SystemTime>,
    request_forced: bool,
) -> CacheOutcome {
    let stale_or_request = if request_forced {
        ForwardReason::Request
    } else {
        ForwardReason::Stale
    };
    let now = SystemTime::now();
    let ttl = fresh_until.map(|t| ttl_seconds(t, now));
    match phase {
        CachePhase::Hit => CacheOutcome::Hit {
            ttl: ttl.unwrap_or(0),
        },
        // Served stale while another request refreshes it.
        CachePhase::StaleUpdating => CacheOutcome::Hit {
            ttl: ttl.unwrap_or(0),
        },
        CachePhase::Miss => CacheOutcome::Forward {
            reason: if cache_enabled {
                ForwardReason::Miss
            } else {
                ForwardReason::UriMiss
            },
            fwd_status: None,
            stored: cache_enabled,
            ttl: if cache_enabled { ttl } else { None },
            detail: None,
        },
        CachePhase::Expired => CacheOutcome::Forward {
            reason: stale_or_request,
            fwd_status: None,
            stored: cache_enabled,
            ttl: if cache_enabled { ttl } else { None },
            detail: None,
        },
        CachePhase::Revalidated => CacheOutcome::Forward {
            reason: stale_or_request,
            fwd_status: Some(304),
            stored: true,
            ttl,
            detail: None,
        },
        CachePhase::RevalidatedNoCache(reason) => CacheOutcome::Forward {
            reason: stale_or_request,
            fwd_status: Some(304),
            stored: false,
            ttl: None,
            detail: Some(reason_token(reason)),
        },
        CachePhase::Stale => CacheOutcome::Forward {
            reason: ForwardReason::Stale,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: None,
        },
        CachePhase::Bypass => CacheOutcome::Forward {
            reason: ForwardReason::Bypass,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: None,
        },
        CachePhase::Disabled(NoCacheReason::NeverEnabled) => CacheOutcome::Forward {
            reason: ForwardReason::Method,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: None,
        },
        // Looked up, not found, and the response could not be stored.
        CachePhase::Disabled(reason) => CacheOutcome::Forward {
            reason: ForwardReason::UriMiss,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: Some(reason_token(reason)),
        },
        CachePhase::Uninit | CachePhase::CacheKey => CacheOutcome::Forward {
            reason: ForwardReason::Miss,
            fwd_status: None,
            stored: false,
            ttl: None,
            detail: None,
        },
    }
}

/// A short token naming why a response was not stored.
pub fn reason_token(reason: NoCacheReason) -> &'static str {
    match reason {
        NoCacheReason::NeverEnabled => "not-cacheable-method",
        NoCacheReason::OriginNotCache => "uncacheable",
        NoCacheReason::ResponseTooLarge | NoCacheReason::PredictedResponseTooLarge => "too-large",
        NoCacheReason::StorageError => "storage-error",
        NoCacheReason::InternalError => "internal-error",
        NoCacheReason::Deferred => "deferred",
        NoCacheReason::DeclinedToUpstream => "declined",
        NoCacheReason::UpstreamError => "origin-error",
        NoCacheReason::CacheLockGiveUp => "lock-give-up",
        NoCacheReason::CacheLockTimeout => "lock-timeout",
        NoCacheReason::CacheLockRetryLimit => "lock-retry-limit",
        NoCacheReason::Custom(token) => token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_secs(s: u64) -> Option<SystemTime> {
        Some(SystemTime::now() + Duration::from_secs(s) + Duration::from_millis(100))
    }

    #[test]
    fn a_hit_says_hit_and_its_ttl() {
        let v = from_phase(true, CachePhase::Hit, in_secs(60), false).header_value();
        assert_eq!(v, "meridian; hit; ttl=60");
    }

    #[test]
    fn a_stored_miss() {
        let v = from_phase(true, CachePhase::Miss, in_secs(3600), false).header_value();
        assert_eq!(v, "meridian; fwd=miss; stored; ttl=3600");
    }

    #[test]
    fn an_uncacheable_response() {
        let v = from_phase(
            true,
            CachePhase::Disabled(NoCacheReason::OriginNotCache),
            None,
            false,
        )
        .header_value();
        assert_eq!(v, "meridian; fwd=uri-miss; detail=uncacheable");
        let v = from_phase(
            true,
            CachePhase::Disabled(NoCacheReason::Custom("set-cookie")),
            None,
            false,
        )
        .header_value();
        assert_eq!(v, "meridian; fwd=uri-miss; detail=set-cookie");
    }

    #[test]
    fn a_method_the_cache_never_handles() {
        let v = from_phase(
            false,
            CachePhase::Disabled(NoCacheReason::NeverEnabled),
            None,
            false,
        )
        .header_value();
        assert_eq!(v, "meridian; fwd=method");
    }

    #[test]
    fn revalidation_and_refetch() {
        let v = from_phase(true, CachePhase::Revalidated, in_secs(10), false).header_value();
        assert_eq!(v, "meridian; fwd=stale; fwd-status=304; stored; ttl=10");
        let v = from_phase(true, CachePhase::Expired, in_secs(10), false).header_value();
        assert_eq!(v, "meridian; fwd=stale; stored; ttl=10");
    }

    #[test]
    fn a_request_that_refused_a_fresh_response() {
        let v = from_phase(true, CachePhase::Revalidated, in_secs(10), true).header_value();
        assert_eq!(v, "meridian; fwd=request; fwd-status=304; stored; ttl=10");
    }

    #[test]
    fn stale_ttl_is_negative() {
        let now = SystemTime::now();
        assert_eq!(ttl_seconds(now - Duration::from_secs(5), now), -5);
        assert_eq!(ttl_seconds(now + Duration::from_secs(5), now), 5);
    }

    #[test]
    fn local_answers() {
        assert_eq!(
            CacheOutcome::Local { detail: "health" }.header_value(),
            "meridian; detail=health"
        );
    }
}
