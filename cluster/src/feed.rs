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
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The most purges taken from the stream in one request.
const BATCH: usize = 256;

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
    /// Whether the last request to the stream succeeded.
    reachable: AtomicBool,
    lease: Duration,
    renewed: Notify,
}

impl Verified {
    /// Not verified yet; each confirmation lasts `lease`.
    pub fn new(lease: Duration) -> Verified {
        Verified {
            epoch: Instant::now(),
            until: AtomicU64::new(0),
            reachable: AtomicBool::new(false),
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

    /// Whether the stream answered the last request: when it did not, a
    /// request has nothing to wait for.
    pub fn bus_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Waits at most `limit` for the lease to hold; whether it does.
    pub async fn wait(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let renewed = self.renewed.notified();
            if self.holds() {
                return true;
            }
            if !self.bus_reachable() || tokio::time::timeout_at(deadline, renewed).await.is_err() {
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
        if self.reachable.swap(reachable, Ordering::AcqRel) != reachable {
            // Waiters re-check: with the bus gone there is nothing to wait for.
            self.renewed.notify_waiters();
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

/// Reads the purge stream as the edge `edge` for as long as the process
/// lives: `apply` each purge in order (`apply_all` when purges were missed,
/// which empties the cache), acknowledge it, announce it, and keep
/// `verified` up to date.
pub async fn follow(
    bus: Bus,
    edge: String,
    verified: &Verified,
    apply: impl Fn(&Purge) -> Applying,
) -> ! {
    let mut last_sequence: Option<u64> = None;
    loop {
        let consumer = match consumer(&bus, &edge, last_sequence).await {
            Ok(consumer) => consumer,
            Err(error) => {
                verified.set_reachable(false);
                tracing::warn!(%error, "purge stream unavailable; the cache stays unverified until it is back");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Read until a request fails, then open the consumer again.
        loop {
            match read_once(&bus, &consumer, &edge, &mut last_sequence, &apply).await {
                Ok(Some(as_of)) => {
                    verified.set_reachable(true);
                    verified.confirm(as_of);
                }
                Ok(None) => verified.set_reachable(true),
                Err(error) => {
                    verified.set_reachable(false);
                    tracing::warn!(%error, "reading the purge stream failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}

/// This edge's durable consumer: where it left off, or (for an edge the
/// server has never seen) the purges published from now on, as its cache
/// holds nothing older.
async fn consumer(
    bus: &Bus,
    edge: &str,
    last_sequence: Option<u64>,
) -> Result<PullConsumer, BusError> {
    let stream = crate::buckets::purge_stream(bus).await?;
    let name = crate::bus_name(edge);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("purges for {edge}")),
                deliver_policy: match last_sequence {
                    Some(sequence) => DeliverPolicy::ByStartSequence {
                        start_sequence: sequence + 1,
                    },
                    None => DeliverPolicy::New,
                },
                ack_policy: AckPolicy::Explicit,
                inactive_threshold: FORGOTTEN_AFTER,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::jetstream("cannot open this edge's purge consumer", e))
}

/// One pull: applies what arrives until the pull ends. `Some(asked)` when
/// the stream had nothing more for this edge (every purge published before
/// `asked` is applied), `None` when there may be more.
async fn read_once(
    bus: &Bus,
    consumer: &PullConsumer,
    edge: &str,
    last_sequence: &mut Option<u64>,
    apply: &impl Fn(&Purge) -> Applying,
) -> Result<Option<Instant>, BusError> {
    // A pull long-polls: a purge published meanwhile arrives at once. It
    // ends well within a lease, so a caught-up edge renews its lease
    // before it lapses.
    let poll = (bus.settings().verified_for / 4).max(Duration::from_millis(20));
    let asked = Instant::now();
    let mut messages = consumer
        .batch()
        .max_messages(BATCH)
        .expires(poll)
        .messages()
        .await
        .map_err(|e| BusError::jetstream("pull", e))?;
    let (mut received, mut more) = (0, false);
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| BusError::jetstream("pull", e))?;
        let info = message
            .info()
            .map_err(|e| BusError::jetstream("a purge without stream metadata", e))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        received += 1;
        more = pending > 0;
        if let Some(last) = *last_sequence
            && sequence > last + 1
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
        let purged = match serde_json::from_slice::<Purge>(&message.payload) {
            Ok(purge) => match apply(&purge) {
                Applying::Purged(n) => n,
                Applying::Refused(reason) => {
                    tracing::warn!(sequence, %reason, "purge not applicable as written");
                    0
                }
            },
            Err(error) => {
                // An order this edge cannot read may have named anything.
                tracing::error!(sequence, %error, "unreadable purge; emptying the cache");
                match apply(&Purge {
                    all: true,
                    ..Purge::default()
                }) {
                    Applying::Purged(n) => n,
                    Applying::Refused(_) => 0,
                }
            }
        };
        *last_sequence = Some(sequence);
        message
            .ack()
            .await
            .map_err(|e| BusError::jetstream("acknowledge", e))?;
        let applied = Applied {
            edge: edge.to_owned(),
            sequence,
            purged,
        };
        bus.client()
            .publish(
                crate::APPLIED_SUBJECT,
                serde_json::to_vec(&applied).expect("serializes").into(),
            )
            .await
            .map_err(|e| BusError::jetstream("announce", e))?;
    }
    Ok((received < BATCH && !more).then_some(asked))
}
