//! The origins an edge forwards to, in preference order, and their health.
//!
//! An edge prefers its own region's origin, then the other regions' origins
//! nearest first (the order comes from the config). Two signals demote an
//! origin: *active* checks (a GET of the origin's health path on the
//! `[health]` schedule, with hysteresis) mark it down, and *passive* marking
//! (a request that failed to connect, timed out or got a 5xx) makes it
//! *suspect* for a cool-down. Each request tries healthy origins first, in
//! preference order, then the others, and never the same origin twice.

use config::Hysteresis;
use pingora::connectors::ConnectorOptions;
use pingora::connectors::http::Connector as HttpConnector;
use pingora::lb::Backend;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One origin an edge may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginTarget {
    /// The region it belongs to (named in `X-Meridian-Origin`).
    pub region: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// For an `https://` origin, the name its certificate must be valid
    /// for (also sent as SNI unless it is an IP address); `None`: plain HTTP.
    pub tls_name: Option<String>,
}

impl OriginTarget {
    /// A plain-HTTP origin.
    pub fn http(region: impl Into<String>, addr: SocketAddr) -> Self {
        OriginTarget {
            region: region.into(),
            addr,
            tls_name: None,
        }
    }

    /// Connection settings for this origin, without timeouts.
    fn peer(&self) -> HttpPeer {
        match &self.tls_name {
            Some(name) => HttpPeer::new(self.addr, true, name.clone()),
            None => HttpPeer::new(self.addr, false, String::new()),
        }
    }

    /// The `Host` its health checks send.
    fn host(&self) -> String {
        self.tls_name
            .clone()
            .unwrap_or_else(|| self.addr.to_string())
    }
}

/// The edge's origins and what it knows about their health.
pub struct OriginSet {
    origins: Vec<OriginState>,
    suspect_for: Duration,
    /// Zero point for the `suspect_until` timestamps.
    epoch: Instant,
}

struct OriginState {
    target: OriginTarget,
    peer: HttpPeer,
    /// The active checks' verdict.
    up: AtomicBool,
    /// Milliseconds since `epoch` until which the origin is suspect.
    suspect_until_ms: AtomicU64,
}

/// One origin's state, for the admin API and `meridian status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OriginStatus {
    /// Its region.
    pub region: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Whether the active checks consider it up.
    pub up: bool,
    /// Whether a recent request failed on it.
    pub suspect: bool,
}

/// Picks the next origin for a request: the first untried one in
/// preference order among the healthy, else among the rest. `healthy[i]`
/// says whether origin `i` is up and not suspect.
pub fn pick(healthy: &[bool], tried: &[usize]) -> Option<usize> {
    let untried = |i: &usize| !tried.contains(i);
    (0..healthy.len())
        .filter(untried)
        .find(|&i| healthy[i])
        .or_else(|| (0..healthy.len()).find(untried))
}

/// Where in a try an origin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting failed (refused, timed out, TLS refused): nothing
    /// reached the origin.
    Connect,
    /// The origin answered with a server error (5xx).
    ServerError,
    /// That server error, come back as the error that ends the try
    /// (Pingora hands it on after the response filter raised it): it was
    /// judged, and its origin marked, when it arrived.
    ServerErrorReturned,
    /// The exchange failed after the request went out; `origin_fault`
    /// when the origin caused it (a reset, a timeout, a malformed
    /// response), not the client.
    Exchange {
        /// Whether the origin's side failed.
        origin_fault: bool,
    },
}

/// What a request knows about itself when an origin fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Whether its method may be sent twice (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// Whether its body (if any) can still be sent again: it is held whole
    /// in the retry buffer, or there was none.
    pub body_replayable: bool,
    /// Whether any of the response already went to the client.
    pub response_started: bool,
    /// Whether the origin budget allows another try and an untried origin
    /// is left.
    pub another_origin: bool,
}

/// The verdict on a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Send the request to the next origin.
    pub retry: bool,
    /// Mark the failed origin suspect.
    pub mark_failed: bool,
}

/// Whether a request whose try failed at `stage` moves on to another
/// origin, and whether the origin is marked suspect: the edge's one retry
/// policy. A refused connection sent nothing, so any request may move on;
/// after the request went out only an idempotent one whose body can be
/// sent again, and only while nothing has gone to the client. An origin is
/// marked once per failure, for failures that are its own.
pub fn after_failure(stage: Stage, attempt: Attempt) -> Verdict {
    let can_move = attempt.another_origin && !attempt.response_started;
    let replay_safe = attempt.idempotent && attempt.body_replayable;
    match stage {
        Stage::Connect => Verdict {
            retry: can_move && attempt.body_replayable,
            mark_failed: true,
        },
        Stage::ServerError => Verdict {
            retry: can_move && replay_safe,
            mark_failed: true,
        },
        Stage::ServerErrorReturned => Verdict {
            retry: can_move && replay_safe,
            mark_failed: false,
        },
        Stage::Exchange { origin_fault } => Verdict {
            retry: can_move && replay_safe,
            mark_failed: origin_fault,
        },
    }
}

impl OriginSet {
    /// Origins in preference order, with connect and read timeouts.
    pub fn new(targets: Vec<OriginTarget>, policy: &config::OriginPolicy) -> Self {
        let origins = targets
            .into_iter()
            .map(|target| {
                let mut peer = target.peer();
                peer.options.connection_timeout = Some(policy.connect_timeout);
                peer.options.read_timeout = Some(policy.read_timeout);
                OriginState {
                    target,
                    peer,
                    up: AtomicBool::new(true),
                    suspect_until_ms: AtomicU64::new(0),
                }
            })
            .collect();
        OriginSet {
            origins,
            suspect_for: policy.suspect_for,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_suspect(&self, origin: &OriginState, now_ms: u64) -> bool {
        origin.suspect_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// How many origins there are.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Which origins are healthy: up by the active checks, and not suspect.
    pub fn healthy(&self) -> Vec<bool> {
        let now = self.now_ms();
        self.origins
            .iter()
            .map(|o| o.up.load(Ordering::Relaxed) && !self.is_suspect(o, now))
            .collect()
    }

    /// The next origin for a request that already tried `tried`.
    pub fn next(&self, tried: &[usize]) -> Option<usize> {
        pick(&self.healthy(), tried)
    }

    /// The connection settings of origin `index`.
    pub fn peer(&self, index: usize) -> Option<&HttpPeer> {
        self.origins.get(index).map(|o| &o.peer)
    }

    /// Origin `index`'s identity.
    pub fn target(&self, index: usize) -> Option<&OriginTarget> {
        self.origins.get(index).map(|o| &o.target)
    }

    /// Passive marking: a request just failed on origin `index`.
    pub fn mark_failed(&self, index: usize) {
        if let Some(origin) = self.origins.get(index) {
            let until = self
                .now_ms()
                .saturating_add(u64::try_from(self.suspect_for.as_millis()).unwrap_or(u64::MAX));
            origin.suspect_until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// Every origin's state, in preference order.
    pub fn snapshot(&self) -> Vec<OriginStatus> {
        let now = self.now_ms();
        self.origins
            .iter()
            .map(|o| OriginStatus {
                region: o.target.region.clone(),
                addr: o.target.addr,
                up: o.up.load(Ordering::Relaxed),
                suspect: self.is_suspect(o, now),
            })
            .collect()
    }
}

/// A GET of `health_path` on `target` with pingora's connector, so the
/// probe goes the way requests go: the same TLS settings and CA bundle.
fn health_check(
    target: &OriginTarget,
    health_path: &str,
    timeout: Duration,
    connector: &ConnectorOptions,
) -> Result<HttpHealthCheck, String> {
    let mut check = HttpHealthCheck::new(&target.host(), target.tls_name.is_some());
    check.set_connector(HttpConnector::new(Some(connector.clone())));
    let mut peer = target.peer();
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    check.peer_template = peer;
    let mut request = pingora::http::RequestHeader::build("GET", health_path.as_bytes(), None)
        .map_err(|e| e.to_string())?;
    request
        .insert_header(http::header::HOST, target.host())
        .map_err(|e| e.to_string())?;
    check.req = request;
    Ok(check)
}

/// Probes every origin of `set` on `health_path` until `shutdown` flips.
/// `connector` is how the edge connects to origins (its CA bundle). `what`
/// names them in the log (the edge's peers are probed the same way).
pub async fn run_checks(
    set: Arc<OriginSet>,
    what: &'static str,
    settings: config::Health,
    health_path: String,
    connector: ConnectorOptions,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let checks: Result<Vec<(HttpHealthCheck, Backend)>, String> = set
        .origins
        .iter()
        .map(|o| {
            let check = health_check(&o.target, &health_path, settings.timeout, &connector)?;
            let backend = Backend::new(&o.target.addr.to_string()).map_err(|e| e.to_string())?;
            Ok((check, backend))
        })
        .collect();
    let checks = match checks {
        Ok(checks) => checks,
        Err(error) => {
            tracing::error!(%error, what, "cannot build the health checks; all are assumed up");
            return;
        }
    };
    let mut states = vec![Hysteresis::new_up(); set.len()];
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let probes = checks.iter().map(|(check, backend)| {
            async move {
                // A probe that outlives the timeout in a way the connector
                // does not bound (a TLS handshake stalled mid-way) fails too.
                match tokio::time::timeout(settings.timeout, check.check(backend)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err(format!("no answer within {:?}", settings.timeout)),
                }
            }
        });
        let results = futures::future::join_all(probes).await;
        for ((origin, state), result) in set.origins.iter().zip(states.iter_mut()).zip(results) {
            if let Some(up) = state.record(result.is_ok(), settings.down_after, settings.up_after) {
                origin.up.store(up, Ordering::Relaxed);
                match result {
                    Ok(()) => {
                        tracing::info!(addr = %origin.target.addr, region = %origin.target.region, "{what} is up")
                    }
                    Err(reason) => {
                        tracing::warn!(addr = %origin.target.addr, region = %origin.target.region, %reason, "{what} is down")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_policy_as_a_table() {
        // (stage, idempotent, body replayable, response started, another
        // origin) -> (retry, mark)
        let exchange = Stage::Exchange { origin_fault: true };
        let client_gone = Stage::Exchange {
            origin_fault: false,
        };
        let table = [
            // Nothing was sent: any method moves on.
            (Stage::Connect, true, true, false, true, (true, true)),
            (Stage::Connect, false, true, false, true, (true, true)),
            (Stage::Connect, false, true, false, false, (false, true)),
            (Stage::Connect, false, false, false, true, (false, true)),
            // A 5xx: idempotent requests move on; it is marked once.
            (Stage::ServerError, true, true, false, true, (true, true)),
            (Stage::ServerError, false, true, false, true, (false, true)),
            (Stage::ServerError, true, true, true, true, (false, true)),
            (
                Stage::ServerErrorReturned,
                true,
                true,
                false,
                true,
                (true, false),
            ),
            (
                Stage::ServerErrorReturned,
                false,
                true,
                false,
                true,
                (false, false),
            ),
            // After the request went out: never a POST, never a body that
            // is no longer held, never once the client got bytes.
            (exchange, true, true, false, true, (true, true)),
            (exchange, false, true, false, true, (false, true)),
            (exchange, true, false, false, true, (false, true)),
            (exchange, true, true, true, true, (false, true)),
            (exchange, true, true, false, false, (false, true)),
            // The client's own failure is not the origin's.
            (client_gone, true, true, false, true, (true, false)),
        ];
        for (stage, idempotent, body_replayable, response_started, another_origin, expected) in
            table
        {
            let attempt = Attempt {
                idempotent,
                body_replayable,
                response_started,
                another_origin,
            };
            let verdict = after_failure(stage, attempt);
            assert_eq!(
                (verdict.retry, verdict.mark_failed),
                expected,
                "{stage:?} {attempt:?}"
            );
        }
    }

    fn targets(n: usize) -> Vec<OriginTarget> {
        (0..n)
            .map(|i| {
                OriginTarget::http(
                    format!("r{i}"),
                    SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                )
            })
            .collect()
    }

    fn policy() -> config::OriginPolicy {
        config::Config::demo().edge.origins
    }

    #[test]
    fn pick_prefers_healthy_origins_in_order() {
        assert_eq!(pick(&[true, true, true], &[]), Some(0));
        assert_eq!(pick(&[true, true, true], &[0]), Some(1));
        assert_eq!(pick(&[false, true, true], &[]), Some(1));
        assert_eq!(pick(&[false, false, true], &[2]), Some(0));
        assert_eq!(pick(&[true, true], &[0, 1]), None);
        assert_eq!(pick(&[], &[]), None);
    }

    #[test]
    fn a_failed_origin_is_tried_last_until_its_cool_down_ends() {
        let mut policy = policy();
        policy.suspect_for = Duration::from_millis(100);
        let set = OriginSet::new(targets(3), &policy);
        assert_eq!(set.next(&[]), Some(0));
        set.mark_failed(0);
        assert_eq!(set.next(&[]), Some(1));
        assert!(set.snapshot()[0].suspect);
        // Still tried when everything else was.
        assert_eq!(set.next(&[1, 2]), Some(0));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(set.next(&[]), Some(0));
        assert!(!set.snapshot()[0].suspect);
    }

    #[tokio::test]
    async fn active_checks_mark_a_dead_origin_down() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let set = Arc::new(OriginSet::new(
            vec![OriginTarget::http("dead", dead)],
            &policy(),
        ));
        let settings = config::Health {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            down_after: 2,
            up_after: 2,
            ..config::Health::default()
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let checks = tokio::spawn(run_checks(
            set.clone(),
            "origin",
            settings,
            "/healthz".into(),
            ConnectorOptions::new(0),
            stopped,
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while set.snapshot()[0].up {
            assert!(Instant::now() < deadline, "never marked down");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(true);
        checks.await.unwrap();
    }
}
