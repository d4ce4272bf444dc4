//! An edge's side of the purge stream: every purge applied in order,
//! acknowledged after it is applied, and announced; and whether the
//! edge's cache can be trusted right now.
//!
//! The edge reads the stream through its own durable consumer, so the
//! server remembers where it is: an edge that was paused, partitioned or
//! restarted gets what it missed when it reads again. What it may not do
//! is serve from its cache *before* it has read again. [`Verified`] is a
//! lease: each time the edge finds the stream had nothing more for it, it
//! knows it held every purge published until the moment it asked, and
//! trusts its cache for `cluster.verified_for` after that moment. A
//! request that finds the lease lapsed waits for the next read (see the
//! edge's proxy). Because `verified_for` is below `purge_timeout`, an edge
//! that has not acknowledged a purge when `meridian purge` gives up on it
//! has no lease left, whatever happened to it (a paused process's
//! monotonic clock runs on).

use crate::purge::{Applied, Purge};
use crate::{Bus, BusError};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// The most purges taken from the stream in one request.
const BATCH: usize = 256;

/// How long a purge handed to the edge may go unacknowledged before the
/// server hands it over again.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// How far an edge's clock may be ahead of the NATS server's.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long to wait before trying the bus again after a failed request.
const RETRY: Duration = Duration::from_millis(250);

/// How long an edge's durable consumer outlives the edge: an edge taken
/// out of the topology stops costing the server after this.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether an edge's cache holds no object purged on the bus.
#[derive(Debug)]
pub struct Verified {
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the cache is trusted; 0 never.
    until: AtomicU64,
    /// Nanoseconds after `epoch` since the stream stopped answering; 0
    /// while it answers. Starts unreachable: nothing was read yet.
    unreachable_since: AtomicU64,
    lease: Duration,
    renewed: Notify,
}

impl Verified {
    /// Not verified yet; each confirmation lasts `lease`.
    pub fn new(lease: Duration) -> Verified {
        Verified {
            epoch: Instant::now(),
            until: AtomicU64::new(0),
            unreachable_since: AtomicU64::new(1),
            lease,
            renewed: Notify::new(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the cache can be trusted now.
    pub fn holds(&self) -> bool {
        self.nanos(Instant::now()) < self.until.load(Ordering::Acquire)
    }

    /// Whether the stream answered the last request.
    pub fn bus_reachable(&self) -> bool {
        self.unreachable_since.load(Ordering::Acquire) == 0
    }

    /// Waits at most `limit` for the lease to hold; whether it does.
    ///
    /// It does not wait when the stream has been unreachable for longer
    /// than `limit` (an edge serves without the bus, unverified, rather
    /// than making every request wait), but it does when the stream was
    /// lost only just now: an edge resumed after a long pause finds its
    /// connection dead and its lease lapsed at once, and must catch up
    /// before it serves from its cache.
    pub async fn wait(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let renewed = self.renewed.notified();
            if self.holds() {
                return true;
            }
            let since = self.unreachable_since.load(Ordering::Acquire);
            let long_gone = since != 0
                && self.nanos(Instant::now()).saturating_sub(since)
                    > u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
            if long_gone || tokio::time::timeout_at(deadline, renewed).await.is_err() {
                return self.holds();
            }
        }
    }

    /// Every purge published before `as_of` has been applied.
    pub fn confirm(&self, as_of: Instant) {
        self.until
            .fetch_max(self.nanos(as_of + self.lease), Ordering::AcqRel);
        self.renewed.notify_waiters();
    }

    fn set_reachable(&self, reachable: bool) {
        if reachable {
            self.unreachable_since.store(0, Ordering::Release);
        } else {
            // Keep the first moment it was lost (never 0: that means reachable).
            let now = self.nanos(Instant::now()).max(1);
            let _ = self.unreachable_since.compare_exchange(
                0,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// What applying a purge did.
pub enum Applying {
    /// Removed or marked this many objects.
    Purged(usize),
    /// The order could not be applied as written (an unreadable URL);
    /// the reason is logged and the purge counts as done.
    Refused(String),
}

/// Where an edge's purges resume, and where it keeps that: an edge with a
/// disk cache keeps the last purge it applied, so that after a restart
/// every purge published while it was down reaches the objects its disk
/// kept. Without one, nothing outlives the process and nothing is kept.
pub struct Position<'a> {
    /// The last purge applied before this start, if kept.
    pub resume_after: Option<u64>,
    /// Keeps "every purge up to this sequence is applied".
    pub keep: &'a (dyn Fn(u64) + Send + Sync),
}

impl Position<'_> {
    /// Nothing kept across restarts.
    pub fn in_memory() -> Position<'static> {
        Position {
            resume_after: None,
            keep: &|_| {},
        }
    }
}

/// Reads the purge stream as the edge `edge` for as long as the process
/// lives: `apply` each purge in order (everything, when purges were
/// missed), acknowledge it, announce it; keep its `position`; and keep
/// `verified` up to date.
pub async fn follow(
    bus: Bus,
    edge: String,
    verified: &Verified,
    position: Position<'_>,
    apply: impl Fn(&Purge) -> Applying,
) -> ! {
    let started = SystemTime::now();
    let mut last_sequence = position.resume_after;
    // A kept position wins over the consumer's own on the server, which
    // may be ahead of what the disk made durable before a crash.
    let mut restart_consumer = position.resume_after.is_some();
    let applied = Notify::new();
    loop {
        let opened = match consumer(&bus, &edge, last_sequence, started, restart_consumer).await {
            Ok(opened) => opened,
            Err(error) => {
                verified.set_reachable(false);
                tracing::warn!(%error, "purge stream unavailable; the cache stays unverified until it is back");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        restart_consumer = false;
        // Both run until one fails; then the consumer is opened again.
        tokio::select! {
            error = read(&bus, &opened, &edge, &mut last_sequence, &apply, &applied) => {
                tracing::warn!(%error, "reading the purge stream failed; retrying");
            }
            error = prove(&bus, &opened.1, verified, &applied, position.keep) => {
                tracing::warn!(%error, "the purge stream did not answer; retrying");
            }
        }
        verified.set_reachable(false);
        tokio::time::sleep(RETRY).await;
    }
}

/// This edge's durable consumer and the stream: where it left off, or (for
/// an edge the server has never seen) the purges published since this
/// process `started`: its cache holds nothing older, but it may have
/// cached objects before it could reach the bus, and purges published
/// meanwhile must reach them. (A minute earlier than that, for clocks
/// that disagree with the server's: applying a purge again is harmless.)
async fn consumer(
    bus: &Bus,
    edge: &str,
    last_sequence: Option<u64>,
    started: SystemTime,
    restart: bool,
) -> Result<(Stream, PullConsumer), BusError> {
    let stream = crate::buckets::purge_stream(bus).await?;
    let name = crate::bus_name(edge);
    if restart {
        // Gone already is as good.
        let _ = stream.delete_consumer(&name).await;
    }
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("purges for {edge}")),
                deliver_policy: match last_sequence {
                    Some(sequence) => DeliverPolicy::ByStartSequence {
                        start_sequence: sequence + 1,
                    },
                    None => DeliverPolicy::ByStartTime {
                        start_time: (started - CLOCK_SKEW).into(),
                    },
                },
                ack_policy: AckPolicy::Explicit,
                // A purge handed to this edge and lost with a broken
                // connection comes again soon (applying one twice is
                // harmless); until it has, the edge is not verified.
                ack_wait: ACK_WAIT,
                inactive_threshold: FORGOTTEN_AFTER,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::jetstream("cannot open this edge's purge consumer", e))?;
    Ok((stream, consumer))
}

/// Applies, acknowledges and announces every purge as it arrives; returns
/// only with an error.
async fn read(
    bus: &Bus,
    (stream, consumer): &(Stream, PullConsumer),
    edge: &str,
    last_sequence: &mut Option<u64>,
    apply: &impl Fn(&Purge) -> Applying,
    applied: &Notify,
) -> BusError {
    // One long-lived pull subscription: what the server has handed over
    // stays in it across pulls, so nothing delivered is dropped. Each pull
    // lasts a lease (a purge published meanwhile arrives at once), with
    // heartbeats that tell a silent server from an idle one.
    let expires = bus.settings().verified_for.max(Duration::from_millis(100));
    let mut messages = match consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .expires(expires)
        .heartbeat(expires / 4)
        .messages()
        .await
    {
        Ok(messages) => messages,
        Err(e) => return BusError::jetstream("pull", e),
    };
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(e) => return BusError::jetstream("pull", e),
        };
        let Ok(info) = message.info() else {
            tracing::warn!("a purge without stream metadata; skipped");
            continue;
        };
        let sequence = info.stream_sequence;
        if let Some(last) = *last_sequence
            && sequence > last + 1
            && missed(stream, last).await
        {
            // The stream dropped purges this edge never read (it was away
            // longer than the stream keeps them): nothing in the cache is
            // known to be current.
            tracing::warn!(last, sequence, "purges were missed; emptying the cache");
            apply(&Purge {
                all: true,
                ..Purge::default()
            });
        }
        let purged = match apply(&order(sequence, &message.payload)) {
            Applying::Purged(n) => n,
            Applying::Refused(reason) => {
                tracing::warn!(sequence, %reason, "purge not applicable as written");
                0
            }
        };
        *last_sequence = Some(last_sequence.map_or(sequence, |last| last.max(sequence)));
        if let Err(e) = message.ack().await {
            return BusError::jetstream("acknowledge", e);
        }
        let announcement = Applied {
            edge: edge.to_owned(),
            sequence,
            purged,
        };
        let body = serde_json::to_vec(&announcement).expect("an announcement serializes");
        if let Err(e) = bus
            .client()
            .publish(crate::APPLIED_SUBJECT, body.into())
            .await
        {
            return BusError::jetstream("announce", e);
        }
        applied.notify_one();
    }
    BusError::jetstream("pull", "the subscription ended")
}

/// The purge a message orders. One this edge cannot read may have named
/// anything, so it empties the cache.
fn order(sequence: u64, payload: &[u8]) -> Purge {
    serde_json::from_slice(payload).unwrap_or_else(|error| {
        tracing::error!(sequence, %error, "unreadable purge; emptying the cache");
        Purge {
            all: true,
            ..Purge::default()
        }
    })
}

/// Whether purges after `last` are gone from the stream (rather than
/// handed over out of order, as a redelivery is).
async fn missed(stream: &Stream, last: u64) -> bool {
    match stream.get_info().await {
        Ok(info) => info.state.first_sequence > last + 1,
        // Unknown: emptying the cache is the safe answer.
        Err(_) => true,
    }
}

/// Renews `verified` for as long as the server keeps proving the edge has
/// applied everything (see [`caught_up`]): every poll interval, and at once
/// after a purge is applied. Returns only with an error.
async fn prove(
    bus: &Bus,
    consumer: &PullConsumer,
    verified: &Verified,
    applied: &Notify,
    keep: &(dyn Fn(u64) + Send + Sync),
) -> BusError {
    let poll = (bus.settings().verified_for / 4).max(Duration::from_millis(20));
    let mut kept = None;
    loop {
        match caught_up(consumer, bus.settings().verified_for).await {
            Ok(Some((as_of, ack_floor))) => {
                verified.set_reachable(true);
                verified.confirm(as_of);
                // Everything up to the ack floor is applied (acknowledged
                // only once applied); kept when it moves.
                if kept != Some(ack_floor) {
                    keep(ack_floor);
                    kept = Some(ack_floor);
                }
            }
            Ok(None) => verified.set_reachable(true),
            Err(error) => return error,
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = applied.notified() => {}
        }
    }
}

/// Asks the server whether this edge's consumer has anything left:
/// `Some((asked, ack floor))` when nothing is pending or unacknowledged, so
/// every purge published before `asked`, and every one up to the ack
/// floor's stream sequence, has been applied (an edge acknowledges a purge
/// only once it is applied).
///
/// Receiving nothing is no such proof: a pull also ends empty when the
/// server stalls and the client's own timer runs out.
async fn caught_up(
    consumer: &PullConsumer,
    within: Duration,
) -> Result<Option<(Instant, u64)>, BusError> {
    let asked = Instant::now();
    let info = tokio::time::timeout(within, consumer.get_info())
        .await
        .map_err(|_| BusError::jetstream("consumer info", "no answer in time"))?
        .map_err(|e| BusError::jetstream("consumer info", e))?;
    Ok((info.num_pending == 0 && info.num_ack_pending == 0)
        .then_some((asked, info.ack_floor.stream_sequence)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_purge_empties_the_cache() {
        let by_url = order(1, br#"{"urls": ["http://cdn.example/a"], "soft": true}"#);
        assert_eq!(by_url.urls, ["http://cdn.example/a"]);
        assert!(by_url.soft && !by_url.all);
        for garbage in [
            &b"not json"[..],
            br#"{"urls": "x"}"#,
            br#"{"everything": true}"#,
            b"",
        ] {
            let purge = order(2, garbage);
            assert!(
                purge.all && !purge.soft,
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn the_cache_is_verified_for_a_lease_after_each_confirmation() {
        let verified = Verified::new(Duration::from_secs(1));
        assert!(!verified.holds(), "nothing was read yet");
        verified.set_reachable(true);
        verified.confirm(Instant::now());
        assert!(verified.holds());
        // An older confirmation never shortens the lease.
        verified.confirm(Instant::now() - Duration::from_millis(900));
        assert!(verified.holds());
        std::thread::sleep(Duration::from_millis(1050));
        assert!(!verified.holds(), "the lease lapsed");
    }

    #[tokio::test]
    async fn a_request_waits_for_the_next_confirmation_but_not_for_a_bus_long_gone() {
        let verified = std::sync::Arc::new(Verified::new(Duration::from_secs(5)));
        verified.set_reachable(true);
        let confirming = verified.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            confirming.confirm(Instant::now());
        });
        assert!(
            verified.wait(Duration::from_secs(5)).await,
            "woken by the confirmation"
        );

        let lapsed = Verified::new(Duration::from_millis(10));
        lapsed.set_reachable(false);
        // Lost just now: it waits out the limit, hoping to catch up.
        let started = Instant::now();
        assert!(!lapsed.wait(Duration::from_millis(100)).await);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Lost for longer than the limit: no wait at all.
        let started = Instant::now();
        assert!(!lapsed.wait(Duration::from_millis(50)).await);
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
