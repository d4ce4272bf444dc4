//! A purge order, and publishing one: `meridian purge` in a cluster.

use crate::{Bus, BusError};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What to remove from every edge's cache: the body of an edge's
/// `POST /purge` and of a message on the purge stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    /// Absolute URLs, e.g. `http://cdn.meridian.test/assets/1k.bin`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Tags from `Surrogate-Key` / `Cache-Tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Everything.
    #[serde(default)]
    pub all: bool,
    /// Mark stale (revalidate on next use) instead of removing.
    #[serde(default)]
    pub soft: bool,
}

/// An edge's announcement that it applied the purge at `sequence`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Applied {
    /// The edge ([`crate::reports::RoleReport::name`]).
    pub edge: String,
    /// The purge's sequence number in the stream.
    pub sequence: u64,
    /// Objects it removed or marked stale.
    pub purged: usize,
}

/// What became of a published purge.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// The live edges that applied it: how long after publishing, and how
    /// many objects each purged.
    pub applied: BTreeMap<String, (Duration, usize)>,
    /// The live edges that had not applied it when the wait ended; they
    /// will when they read the stream again, and do not serve from their
    /// cache before that (see [`crate::feed::Verified`]).
    pub pending: Vec<String>,
}

impl Outcome {
    /// How long the slowest live edge took to apply it, when none is
    /// pending.
    pub fn slowest(&self) -> Option<Duration> {
        let times = self.applied.values().map(|(took, _)| *took);
        times.max().filter(|_| self.pending.is_empty())
    }
}

/// Publishes `purge` to the stream and waits until every edge in
/// `live_edges` has applied it, or `cluster.purge_timeout`.
pub async fn publish(bus: &Bus, purge: &Purge, live_edges: &[String]) -> Result<Outcome, BusError> {
    crate::buckets::purge_stream(bus).await?;
    // Listen before publishing, so no announcement can come first.
    let mut announcements = Announcements::listen(bus).await?;
    let started = Instant::now();
    let deadline = started + bus.settings().purge_timeout;
    let sequence = store(bus, purge).await?;
    Ok(announcements
        .outcome(live_edges, sequence, started, deadline)
        .await)
}

/// Stores `purge` in the stream (which must exist) without waiting for any
/// edge: its sequence number.
pub async fn store(bus: &Bus, purge: &Purge) -> Result<u64, BusError> {
    let body = serde_json::to_vec(purge).expect("a purge serializes");
    Ok(bus
        .jetstream()
        .publish(crate::PURGE_SUBJECT, body.into())
        .await
        .map_err(|e| BusError::jetstream("cannot publish the purge", e))?
        .await
        .map_err(|e| BusError::jetstream("the purge stream did not store the purge", e))?
        .sequence)
}

/// The edges' announcements of the purges they apply, heard from when it
/// was made.
pub struct Announcements(async_nats::Subscriber);

impl Announcements {
    /// Starts listening.
    pub async fn listen(bus: &Bus) -> Result<Announcements, BusError> {
        let subscriber = bus
            .client()
            .subscribe(crate::APPLIED_SUBJECT)
            .await
            .map_err(|e| BusError::jetstream("cannot listen for acknowledgements", e))?;
        Ok(Announcements(subscriber))
    }

    /// Waits until every one of `live_edges` has announced the purge at
    /// `sequence`, or `deadline`: which did, how long after `started`.
    pub async fn outcome(
        &mut self,
        live_edges: &[String],
        sequence: u64,
        started: Instant,
        deadline: Instant,
    ) -> Outcome {
        let mut applied = BTreeMap::new();
        while !live_edges.iter().all(|edge| applied.contains_key(edge)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(message)) = tokio::time::timeout(left, self.0.next()).await else {
                break;
            };
            let Ok(announced) = serde_json::from_slice::<Applied>(&message.payload) else {
                continue;
            };
            if announced.sequence == sequence {
                applied.insert(announced.edge, (started.elapsed(), announced.purged));
            }
        }
        let pending = live_edges
            .iter()
            .filter(|edge| !applied.contains_key(*edge))
            .cloned()
            .collect();
        Outcome {
            sequence,
            applied,
            pending,
        }
    }
}
