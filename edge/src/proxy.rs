//! The edge's request path: pingora's `ProxyHttp` phases, in lifecycle order.
//!
//! Each phase is thin: it reads the session, asks a pure module
//! ([`crate::cacheability`], [`crate::cache_status`], [`crate::host`]) what to
//! do, and applies the answer. Requests the edge answers itself (health
//! checks, unknown hosts) never reach the cache or the origin.
//!
//! Upstream is a sequence of *hops*: a cacheable miss first asks the
//! region's edges that outrank this one for the object ([`crate::peers`]),
//! then the origins in preference order; one retry policy
//! ([`origins::after_failure`]) decides every move from one hop to the
//! next.

mod log_text;
mod request_ctx;

use crate::EdgeSettings;
use crate::admission;
use crate::cache_status::{self, CacheOutcome, ForwardReason};
use crate::cacheability::{self, RequestDirectives, StoredUse};
use crate::connection;
use crate::forwarding;
use log_text::bounded;
use request_ctx::Hop;
pub use request_ctx::RequestCtx;

use crate::forwarding::LoopMark;
use crate::hit;
use crate::host;
use crate::key;
use crate::metrics::{EdgeMetrics, PeerFillReceived, PeerFillSent};
use crate::origins::{self, Attempt, OriginSet, Stage};
use crate::peers::{self, Peers};
use crate::ranges::{self, RangeRequest};
use crate::slow_clients;
use crate::storage::{self, MemoryStorage};
use crate::vary;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::lock::CacheKeyLockImpl;
use pingora::cache::storage::{PurgeTarget, PurgeType};
use pingora::cache::trace::Span;
use pingora::cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, HitHandler, RespCacheable, Storage,
};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::proxy::{RangeType, range_header_filter};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How long a request waits behind another request fetching the same object
/// before fetching it itself.
const CACHE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The response header naming the region whose origin produced a response.
pub const ORIGIN_REGION_HEADER: &str = "x-meridian-origin";

/// The largest response head an origin may send, in bytes (names, values
/// and line breaks); a larger one is answered 502. Pingora reads up to
/// 1 MiB, and the stored head is kept for as long as the object is.
const MAX_ORIGIN_HEAD_BYTES: usize = 64 * 1024;

/// The edge application: one per process, shared by every request.
/// It fills from `peers` and forwards to `origins`, caching in `storage`.
pub struct EdgeProxy {
    pub(crate) settings: Arc<EdgeSettings>,
    pub(crate) origins: Arc<OriginSet>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) metrics: Arc<EdgeMetrics>,
    pub(crate) storage: &'static MemoryStorage,
    pub(crate) cache_lock: &'static CacheKeyLockImpl,
}

impl EdgeProxy {
    /// What the retry policy needs to know about a request whose try
    /// failed.
    fn attempt(&self, session: &Session, ctx: &RequestCtx) -> Attempt {
        Attempt {
            idempotent: session.req_header().method.is_idempotent(),
            body_replayable: !session.as_ref().retry_buffer_truncated(),
            response_started: final_response_started(session),
            another_origin: ctx.peers_left()
                || (ctx.tried.len() < self.settings.origin_policy.max_tries as usize
                    && self.origins.next(&ctx.tried).is_some()),
        }
    }

    /// Applies the retry policy ([`origins::after_failure`]) to a failed
    /// try: marks the origin or peer if it says so, and returns whether to
    /// retry.
    fn judge_failure(&self, stage: Stage, session: &Session, ctx: &RequestCtx) -> bool {
        let verdict = origins::after_failure(stage, self.attempt(session, ctx));
        match ctx.hop {
            Some(Hop::Peer(peer)) => {
                let outcome = match stage {
                    Stage::Connect => Some(PeerFillSent::Failed),
                    Stage::ServerError => Some(PeerFillSent::ServerError),
                    // Counted when it arrived.
                    Stage::ServerErrorReturned => None,
                    Stage::Exchange { .. } if ctx.hop_answered => Some(PeerFillSent::Broken),
                    Stage::Exchange { .. } => Some(PeerFillSent::Failed),
                };
                if let Some(outcome) = outcome {
                    self.metrics.peer_fill_sent(outcome);
                }
                if verdict.mark_failed {
                    self.peers.mark_failed(peer);
                }
            }
            Some(Hop::Origin(origin)) if verdict.mark_failed => self.origins.mark_failed(origin),
            _ => {}
        }
        verdict.retry
    }

    /// The next peer to fill this request from, if it is one to fill from
    /// a peer: a cacheable request, not itself a peer fill (those are never
    /// sent on), whose object another edge of the region outranks this
    /// one for. The order is decided at the first hop.
    fn next_peer(&self, session: &Session, ctx: &mut RequestCtx) -> Option<(usize, HttpPeer)> {
        let peer_fill = ctx.peer_fill;
        let plan = ctx
            .fill_plan
            .get_or_insert_with(|| match session.cache.maybe_cache_key() {
                Some(key) if session.cache.enabled() && !peer_fill => {
                    self.peers.fill_order(&peers::key_hash(key))
                }
                _ => Vec::new(),
            });
        let index = *plan.get(ctx.peers_tried)?;
        ctx.peers_tried += 1;
        Some((index, self.peers.peer(index)?))
    }

    /// Whether `session` comes from another edge of the region asking as a
    /// peer fill (see [`peers`]), and what its `CDN-Loop` says.
    fn peer_fill(&self, session: &Session) -> (LoopMark, bool) {
        let mark = forwarding::loop_mark(&session.req_header().headers, &self.settings.cdn_id);
        let from_peer = || {
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .is_some_and(|a| self.peers.is_peer(a.ip()))
        };
        (mark, mark == LoopMark::PeerFill && from_peer())
    }
}

impl EdgeProxy {
    /// The fast path for the most common request a CDN sees, a plain hit
    /// (see [`hit`]): answered straight from storage. Anything else —
    /// directives, ranges, conditionals, stale or varied objects, writes in
    /// progress — returns `false` and takes the full path, which applies
    /// the same rules and finishes the head the same way.
    async fn serve_plain_hit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if !self.settings.plain_hit_fast_path {
            return Ok(false);
        }
        let Some(head_only) = hit::plain(session.req_header(), &ctx.directives) else {
            return Ok(false);
        };
        let key = self.cache_key(session, ctx).combined_bin();
        let now = SystemTime::now();
        let Some(object) = self.storage.fresh_object(&key, now) else {
            return Ok(false);
        };
        let outcome = CacheOutcome::Hit {
            ttl: cache_status::ttl_seconds(object.fresh_until, now),
        };
        let mut header = object.header;
        let stored_date = header.headers.get(http::header::DATE).cloned();
        hit::finish_head(&mut header, object.age, &outcome, true)?;
        ctx.outcome = Some(outcome);
        self.metrics.fast_path_hit();
        let no_body = head_only || object.body.is_empty();
        // The whole response is written now and flushed at its end: it may
        // leave in one send (or its head with the body's first segment).
        if let Some(h1) = session.as_downstream().as_http1() {
            connection::hold_response(h1.stream(), stored_date.as_ref().map(|d| d.as_bytes()));
        }
        session
            .write_response_header(Box::new(header), no_body)
            .await?;
        if !no_body {
            session.write_response_body(Some(object.body), true).await?;
        }
        Ok(true)
    }

    /// The request's cache key; the one function both hit paths use.
    fn cache_key(&self, session: &Session, ctx: &RequestCtx) -> CacheKey {
        hit::request_key(
            ctx.scheme,
            ctx.host.as_deref().unwrap_or(""),
            session.req_header(),
        )
    }

    /// Purges the request's URL and the same-host URLs in its response's
    /// `Location` and `Content-Location`.
    async fn invalidate_after_write(
        &self,
        session: &Session,
        response: &ResponseHeader,
        ctx: &RequestCtx,
    ) {
        let Some(host) = ctx.host.as_deref() else {
            return;
        };
        let mut paths: Vec<String> = session
            .req_header()
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .into_iter()
            .collect();
        for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            if let Some(path) = response
                .headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| same_host_path(v, host))
            {
                paths.push(path);
            }
        }
        let trace = Span::inactive().handle();
        for path in paths {
            let key = key::cache_key(ctx.scheme, host, &path).to_compact();
            if let Err(error) = self
                .storage
                .purge(PurgeTarget::Active(&key), PurgeType::Invalidation, &trace)
                .await
            {
                tracing::debug!(%error, %path, "could not invalidate after a write");
            }
        }
    }
}

/// The path of `location` if it points at `host` (or is relative).
fn same_host_path(location: &str, host: &str) -> Option<String> {
    let uri: http::Uri = location.parse().ok()?;
    match uri.host() {
        Some(other) if !other.eq_ignore_ascii_case(host) => None,
        _ => {
            let path = uri.path_and_query()?.as_str();
            path.starts_with('/').then(|| path.to_owned())
        }
    }
}

/// Whether the client has been sent the head of a final response (a 1xx,
/// such as the edge's own `100 Continue`, does not count).
fn final_response_started(session: &Session) -> bool {
    session
        .response_written()
        .is_some_and(|r| !r.status.is_informational())
}

/// Whether a method is safe (RFC 9110 §9.2.1, and WebDAV's read-only
/// methods): every other one, known or not, may change the resource.
fn is_safe(method: &http::Method) -> bool {
    matches!(
        method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PROPFIND" | "REPORT" | "SEARCH"
    )
}

/// Whether the client reached the edge over TLS.
fn scheme(session: &Session) -> &'static str {
    let tls = session
        .as_downstream()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some());
    if tls { "https" } else { "http" }
}

/// The scheme a peer fill was asked with, from its `X-Forwarded-Proto`
/// (the filling edge sets it): the owner keys the object as the asking
/// edge does, though the fill itself comes over plain HTTP.
fn forwarded_scheme(req: &pingora::http::RequestHeader) -> Option<&'static str> {
    match req.headers.get("x-forwarded-proto")?.as_bytes() {
        b"http" => Some("http"),
        b"https" => Some("https"),
        _ => None,
    }
}

/// The error for a request whose origins used up `origin_total_timeout_ms`:
/// a timeout on the upstream side, so it gets 504 (or a stale copy).
fn total_timeout_error() -> Box<Error> {
    Error::explain(
        ErrorType::ReadTimedout,
        "the origins used up the request's total timeout",
    )
    .into_up()
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// The request's head is in: the header deadline is met, and from now on
    /// each read of its body and write of its response may stall only for
    /// `client_io_timeout_ms`.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        slow_clients::head_received();
        ctx.arrived = Some(SystemTime::now());
        let io = Some(self.settings.client_timeouts.io);
        session.set_read_timeout(io);
        session.set_write_timeout(io);
        Ok(())
    }

    /// Answers health checks, and refuses hosts this CDN does not serve
    /// (421 Misdirected Request) so the edge is never an open proxy.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.scheme = scheme(session);
        let (mark, peer_fill) = self.peer_fill(session);
        ctx.peer_fill = peer_fill;
        if peer_fill && let Some(asked) = forwarded_scheme(session.req_header()) {
            ctx.scheme = asked;
        }
        let looped = match mark {
            LoopMark::None => false,
            LoopMark::PeerFill if peer_fill => false,
            LoopMark::PeerFill => {
                // Marked as a fill, from an address that is no peer's: a
                // forgery, refused as the loop it claims to be part of.
                self.metrics.peer_fill_received(PeerFillReceived::Refused);
                true
            }
            LoopMark::Looped => true,
        };
        if let Some(answer) = admission::local_answer(&self.settings, session, ctx.scheme, looped) {
            if answer.close {
                // The rest of this connection's bytes cannot be trusted.
                session.set_keepalive(None);
            }
            let outcome = CacheOutcome::Local {
                detail: answer.detail,
            };
            admission::respond_locally(session, answer.status, answer.body, &outcome).await?;
            ctx.outcome = Some(outcome);
            return Ok(true);
        }
        let req = session.req_header();
        ctx.host = host::request_host(req);
        ctx.directives = self.settings.cache_policy.request_directives(req);
        if let Some(link) = &self.settings.cluster
            && cacheability::request_is_cacheable(req)
        {
            ctx.unverified = !link.cache_verified(&self.metrics).await;
        }
        if ctx.unverified {
            // The full path marks what it serves from the cache.
            return Ok(false);
        }
        self.serve_plain_hit(session, ctx).await
    }

    /// Turns the cache on for GET and HEAD.
    fn request_cache_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        if !cacheability::request_is_cacheable(session.req_header()) {
            return Ok(());
        }
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(CACHE_LOCK_WAIT);
        session.cache.enable(
            self.storage,
            None,
            None,
            Some(self.cache_lock),
            Some(overrides),
        );
        session
            .cache
            .set_max_file_size_bytes(self.settings.cache_max_object_bytes);
        Ok(())
    }

    /// The cache key: scheme, host, path and query, each component
    /// separated by a byte that cannot appear in any of them.
    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        Ok(self.cache_key(session, ctx))
    }

    /// Applies the client's `Cache-Control` to a stored response: serve it,
    /// revalidate it, or serve it stale within the client's `max-stale`.
    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        // Most requests carry no directives: nothing to decide.
        if ctx.directives == RequestDirectives::default() {
            return Ok(None);
        }
        let now = SystemTime::now();
        let age = now.duration_since(meta.epoch()).unwrap_or_default();
        let forbids_stale = || cacheability::forbids_stale(meta);
        let decision =
            cacheability::use_stored(&ctx.directives, age, meta.fresh_until(), forbids_stale, now);
        // A request that must revalidate, but whose stored response this
        // edge received or had confirmed after the request arrived (another
        // request's fetch or revalidation that it waited for), already has
        // the origin's answer: concurrent forced revalidations of one object
        // make one origin request, as concurrent misses do.
        let confirmed_since_arrival = || {
            storage::received_at(hit_handler)
                .zip(ctx.arrived)
                .is_some_and(|(received, arrived)| received >= arrived)
        };
        Ok(match decision {
            StoredUse::Revalidate if confirmed_since_arrival() => {
                (!meta.is_fresh(now)).then_some(ForcedFreshness::ForceFresh)
            }
            StoredUse::Serve if !meta.is_fresh(now) => Some(ForcedFreshness::ForceFresh),
            StoredUse::Serve | StoredUse::Default => None,
            StoredUse::Revalidate => {
                ctx.request_forced = meta.is_fresh(now);
                Some(ForcedFreshness::ForceExpired)
            }
        })
    }

    /// Which stored variant a request gets when the response has `Vary`.
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &pingora::http::RequestHeader,
    ) -> Option<HashBinary> {
        vary::variance(meta.response_header(), req)
    }

    /// Which bytes a ranged request gets from a stored response: the RFC's
    /// corners are settled first ([`ranges`]); Pingora's filter does the
    /// rest (`If-Range`, the 206 or 416 head, multipart).
    fn range_header_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> RangeType {
        /// Pingora's own default.
        const MAX_RANGES: Option<usize> = Some(200);
        let req = session.req_header();
        let length = response
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (Some(range), Some(length)) = (req.headers.get(http::header::RANGE), length) else {
            return range_header_filter(req, response, MAX_RANGES);
        };
        let rewritten = match ranges::classify(range.as_bytes(), length) {
            RangeRequest::Serve(ranges) => Some(ranges),
            // A range starting at the end is one Pingora also finds
            // unsatisfiable, after it has applied `If-Range`.
            RangeRequest::Unsatisfiable => Some(format!("bytes={length}-")),
            RangeRequest::Ignore => None,
        };
        if rewritten
            .as_deref()
            .is_some_and(|r| r.as_bytes() == range.as_bytes())
        {
            return range_header_filter(req, response, MAX_RANGES);
        }
        let mut asked = req.clone();
        match rewritten {
            Some(ranges) => {
                if asked.insert_header(http::header::RANGE, ranges).is_err() {
                    return RangeType::None;
                }
            }
            None => {
                asked.remove_header(&http::header::RANGE);
            }
        }
        range_header_filter(&asked, response, MAX_RANGES)
    }

    /// The last step before an origin is contacted. `only-if-cached`: a
    /// request the cache cannot answer gets 504, and never reaches an
    /// origin (RFC 9111 §5.2.1.7). A small request body is read whole
    /// first (see [`EdgeProxy::read_small_body`]); one that turns out
    /// malformed gets 400, and no origin ever hears of it.
    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let refusal = if ctx.directives.only_if_cached {
            Some((504, "not in cache\n", "only-if-cached"))
        } else if let Err(error) =
            admission::read_small_body(session, self.settings.client_timeouts.io)
                .await
                .map(|continued| ctx.continue_sent = continued)
        {
            tracing::debug!(%error, "refusing a request whose body did not arrive whole");
            // The rest of this connection's bytes cannot be trusted.
            session.set_keepalive(None);
            Some((400, "bad request body\n", "bad-body"))
        } else {
            None
        };
        let Some((status, body, detail)) = refusal else {
            return Ok(true);
        };
        let outcome = CacheOutcome::Local { detail };
        admission::respond_locally(session, status, body, &outcome).await?;
        ctx.outcome = Some(outcome);
        Ok(false)
    }

    /// Stale content may be served while it is revalidated in the
    /// background (`stale-while-revalidate`), and when the origins fail
    /// (`stale-if-error`); the windows themselves come from the origin's
    /// directives, which pingora checks before asking.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        error.is_none_or(|e| *e.esource() == ErrorSource::Upstream)
    }

    /// Picks where this attempt goes: for a cacheable miss, first the
    /// region's edges that outrank this one for the object (peer fill),
    /// then the origins: the region's own first, then the nearest others,
    /// healthy ones before suspect ones, none twice.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let now = Instant::now();
        let policy = &self.settings.origin_policy;
        let deadline = *ctx
            .origin_deadline
            .get_or_insert(now + policy.total_timeout);
        let remaining = deadline.saturating_duration_since(now);
        if remaining.is_zero() {
            return Err(total_timeout_error());
        }
        let (hop, mut peer) = match self.next_peer(session, ctx) {
            Some((index, peer)) => (Hop::Peer(index), peer),
            None => {
                let exhausted =
                    || Error::explain(ErrorType::ConnectNoRoute, "no origin left to try");
                if ctx.tried.len() >= policy.max_tries as usize {
                    return Err(exhausted());
                }
                let next = self.origins.next(&ctx.tried).ok_or_else(exhausted)?;
                let peer = self.origins.peer(next).ok_or_else(exhausted)?;
                if !ctx.tried.is_empty() {
                    self.metrics.origin_retry();
                }
                ctx.tried.push(next);
                (Hop::Origin(next), peer.clone())
            }
        };
        ctx.hop = Some(hop);
        ctx.hop_answered = false;
        ctx.origin_started = Some(now);
        // No single step may outlast what is left of the total.
        let options = &mut peer.options;
        options.connection_timeout = Some(policy.connect_timeout.min(remaining));
        options.read_timeout = Some(policy.read_timeout.min(remaining));
        options.write_timeout = Some(remaining);
        Ok(Box::new(peer))
    }

    /// A connection to the origin failed: nothing was sent, so any request,
    /// even a POST, may move on to the next origin.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        e.set_retry(self.judge_failure(Stage::Connect, session, ctx));
        e
    }

    /// Shapes the request for the origin: only the fields it may see (see
    /// [`forwarding`]), the client appended to `X-Forwarded-For`, the
    /// scheme in `X-Forwarded-Proto`, this CDN in `CDN-Loop`, and the
    /// target in origin form.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let cacheable = session.cache.enabled();
        if ctx.continue_sent {
            upstream_request.remove_header(&http::header::EXPECT);
        }
        for name in forwarding::unforwarded_request_fields(
            &upstream_request.headers,
            cacheable,
            &self.settings.forward_request_headers,
        ) {
            upstream_request.remove_header(&name);
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        if let Some(client) = client {
            let forwarded = match upstream_request.headers.get("x-forwarded-for") {
                Some(existing) => {
                    let existing = String::from_utf8_lossy(existing.as_bytes());
                    format!("{existing}, {client}")
                }
                None => client,
            };
            upstream_request.insert_header("x-forwarded-for", forwarded)?;
        }
        // The scheme the client asked with (for a peer fill, the one the
        // asking edge was asked with).
        upstream_request.insert_header("x-forwarded-proto", ctx.scheme)?;
        let entry = match ctx.hop {
            Some(Hop::Peer(_)) => forwarding::peer_fill_mark(&self.settings.cdn_id),
            _ => self.settings.cdn_id.clone(),
        };
        let loop_mark = match upstream_request.headers.get("cdn-loop") {
            Some(earlier) => format!("{}, {entry}", String::from_utf8_lossy(earlier.as_bytes())),
            None => entry,
        };
        upstream_request.insert_header("cdn-loop", loop_mark)?;
        // An absolute-form target (`GET http://host/p`) goes on in origin
        // form; the host is in `Host`.
        if let Some(target) = host::origin_form(upstream_request) {
            upstream_request.set_raw_path(&target)?;
        }
        // What gets stored is what the origin sends for this bucket.
        if cacheable {
            let accept = upstream_request
                .headers
                .get(http::header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok());
            let bucket = vary::normalize_accept_encoding(accept);
            upstream_request.insert_header(http::header::ACCEPT_ENCODING, bucket)?;
        }
        Ok(())
    }

    /// Names the origin's region on the response (stored with it, so hits
    /// say where the object came from; a peer's response names it already),
    /// and moves an idempotent request that got a 5xx on to the next hop
    /// while one is left.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(hop) = ctx.hop else {
            return Ok(());
        };
        ctx.hop_answered = true;
        if let Some(started) = ctx.origin_started.take()
            && let Hop::Origin(_) = hop
        {
            self.metrics.origin_latency(started.elapsed());
        }
        let head_bytes: usize = response
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if head_bytes > MAX_ORIGIN_HEAD_BYTES {
            // Judged (and the origin marked) where the error ends the try.
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                format!("origin response head of {head_bytes} bytes, over {MAX_ORIGIN_HEAD_BYTES}"),
            )
            .into_up());
        }
        // Fields that describe the origin's connection are neither stored
        // nor forwarded (RFC 9110 §7.6.1).
        for name in forwarding::connection_fields(&response.headers) {
            response.remove_header(&name);
        }
        if response.status == http::StatusCode::NOT_MODIFIED
            && session.cache.maybe_cache_meta().is_some()
        {
            // pingora merges only a few of its fields into the stored
            // response; keep all of them for `response_cache_filter`.
            ctx.not_modified = Some(response.clone());
        }
        if response.status.is_server_error() && self.judge_failure(Stage::ServerError, session, ctx)
        {
            let mut e = Error::explain(
                ErrorType::HTTPStatus(response.status.as_u16()),
                "origin answered with a server error",
            );
            e.set_retry(true);
            return Err(e.into_up());
        }
        match hop {
            Hop::Origin(origin) => {
                if let Some(target) = self.origins.target(origin) {
                    response.insert_header(ORIGIN_REGION_HEADER, target.region.as_str())?;
                }
            }
            Hop::Peer(_) => {
                // What the owner's cache did is not what this one did: this
                // edge's own `Cache-Status` replaces it.
                response.remove_header("cache-status");
                if !response.status.is_server_error() {
                    self.metrics.peer_fill_sent(PeerFillSent::Filled);
                }
            }
        }
        Ok(())
    }

    /// Ends a response whose origin outlasts the total timeout: each read
    /// is bounded by what was left when the origin was chosen, and this
    /// catches an origin that keeps sending, slowly. The client sees an
    /// aborted response, and nothing is stored.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        match ctx.origin_deadline {
            Some(deadline) if Instant::now() >= deadline => Err(total_timeout_error()),
            _ => Ok(None),
        }
    }

    /// Decides whether the origin's response may be stored.
    fn response_cache_filter(
        &self,
        session: &Session,
        response: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let now = SystemTime::now();
        let merged;
        let response = match ctx.not_modified.take() {
            Some(not_modified) => {
                merged = cacheability::merge_304(response, &not_modified, now);
                &merged
            }
            None => response,
        };
        Ok(cacheability::decide(
            &self.settings.cache_policy,
            session.req_header(),
            response,
            now,
        ))
    }

    /// Adds `Cache-Status` to every proxied or cached response.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let meta = session.cache.maybe_cache_meta();
        let outcome = cache_status::from_phase(
            session.cache.enabled(),
            session.cache.phase(),
            meta.map(|m| m.fresh_until()),
            ctx.request_forced,
        );
        match meta {
            // Served from storage without asking an origin: a hit's head,
            // finished as the fast path finishes it.
            Some(meta) if session.cache.enabled() && !session.cache.upstream_used() => {
                hit::finish_head(response, meta.age(), &outcome, !ctx.unverified)?;
                if ctx.unverified {
                    self.metrics.unverified_hit();
                }
                if let Some(h1) = session.as_downstream().as_http1() {
                    let date = response.headers.get(http::header::DATE);
                    connection::stored_date(h1.stream(), date.map(|d| d.as_bytes()));
                }
            }
            _ => {
                response.insert_header("cache-status", outcome.header_value())?;
                // A HEAD that went upstream (as a GET, for the cache) is
                // answered once the origin's head arrives, while the body
                // is still being stored; Pingora then closes the client's
                // connection. Say so (`Connection: close`), so the client
                // never sends its next request on a connection about to
                // close under it.
                if session.req_header().method == http::Method::HEAD
                    && session.cache.upstream_used()
                {
                    session.set_keepalive(None);
                }
            }
        }
        ctx.outcome = Some(outcome);
        // A successful unsafe request changed the resource: what is stored
        // for it, and for what it names as moved or created, is out of date
        // (RFC 9111 §4.4). Methods the edge does not know are unsafe.
        if !is_safe(&session.req_header().method)
            && (response.status.is_success() || response.status.is_redirection())
        {
            self.invalidate_after_write(session, response, ctx).await;
        }
        Ok(())
    }

    /// The origin failed after the request was sent. Only an idempotent
    /// request whose response has not started, and whose body (if any) is
    /// still fully buffered, moves on: a POST is never sent twice.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("origin {peer}"));
        let stage = match e.etype() {
            ErrorType::HTTPStatus(code) if *code >= 500 => Stage::ServerErrorReturned,
            _ => Stage::Exchange {
                origin_fault: *e.esource() == ErrorSource::Upstream,
            },
        };
        e.set_retry(self.judge_failure(stage, session, ctx));
        e
    }

    /// Counts the request once it is done, and logs it if it failed.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.metrics
            .request(ctx.outcome.as_ref(), status, session.body_bytes_sent());
        if ctx.peer_fill {
            let outcome = match (status, &ctx.outcome, ctx.hop) {
                (0 | 500.., _, _) => PeerFillReceived::Failed,
                (_, _, Some(_)) => PeerFillReceived::Fetched,
                (_, Some(CacheOutcome::Hit { .. }), None) => PeerFillReceived::Hit,
                (_, _, None) => PeerFillReceived::Local,
            };
            self.metrics.peer_fill_received(outcome);
        }
        if session.cache.enabled() && session.cache.lock_duration().is_some() {
            self.metrics.coalesced_wait();
        }
        if let Some(error) = e {
            tracing::warn!(
                status,
                error = %bounded(&error.to_string()),
                request = %self.request_summary(session, ctx),
                "request failed"
            );
        }
    }

    /// Pingora's own line for a failed request would quote the error whole,
    /// and an origin's malformed response head can be most of a megabyte of
    /// it; [`ProxyHttp::logging`] writes a bounded one instead.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// The same for Pingora's warning when a request moves to another origin.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        error: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        tracing::debug!(error = %bounded(&error.to_string()), "origin failed; trying another");
        true
    }

    /// What identifies a request in a log line: method, host and path, each
    /// bounded (a client chooses all three).
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        let target = String::from_utf8_lossy(req.raw_path());
        format!(
            "{} {} {}",
            bounded(req.method.as_str()),
            bounded(&host),
            bounded(&target)
        )
    }

    /// Answers an origin failure with 502 (504 for a timeout) and says why in
    /// `Cache-Status`.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, detail) = match e.etype() {
            // A 5xx turned into an error to try the next origin, with none left.
            ErrorType::HTTPStatus(code) if *code >= 500 => (502, "origin-error"),
            ErrorType::HTTPStatus(code) => (*code, "edge-error"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                (504, "origin-timeout")
            }
            ErrorType::ConnectRefused | ErrorType::ConnectError | ErrorType::ConnectNoRoute => {
                (502, "origin-unreachable")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "origin-error"),
                // The client went away or sent garbage; nothing useful to send.
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "")
                    }
                    _ => (400, "bad-request"),
                },
                ErrorSource::Internal | ErrorSource::Unset => (500, "edge-error"),
            },
        };
        // The connection is not reused after a failure; say so, so the
        // client does not send its next request into a closing socket.
        session.set_keepalive(None);
        if code > 0 && !final_response_started(session) {
            let mut header = pingora::protocols::http::ServerSession::generate_error(code);
            // Pingora's error heads name it; nothing should name the software.
            header.remove_header(&http::header::SERVER);
            let outcome = CacheOutcome::Forward {
                reason: ForwardReason::UriMiss,
                fwd_status: None,
                stored: false,
                ttl: None,
                detail: Some(detail),
            };
            let value = outcome.header_value();
            ctx.outcome = Some(outcome);
            let written = async {
                header.insert_header("cache-status", value)?;
                header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
                session.write_response_header(Box::new(header), true).await
            };
            if let Err(err) = written.await {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_read_only_methods_are_safe() {
        for safe in ["GET", "HEAD", "OPTIONS", "TRACE", "PROPFIND"] {
            assert!(is_safe(&http::Method::from_bytes(safe.as_bytes()).unwrap()));
        }
        for unsafe_method in [
            "POST", "PUT", "DELETE", "PATCH", "M-SEARCH", "PURGE", "LOCK",
        ] {
            assert!(!is_safe(
                &http::Method::from_bytes(unsafe_method.as_bytes()).unwrap()
            ));
        }
    }
}
