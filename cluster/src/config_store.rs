//! The config revisions: `meridian config publish` puts a validated config
//! file's text under one key of the config bucket; the bucket's revision
//! number is the config's revision. Roles watch the key.

use crate::{Bus, BusError};
use futures::StreamExt;
use std::time::Duration;

/// The key the current config is kept under.
const KEY: &str = "current";

/// Revisions kept, for looking back at what ran.
const HISTORY: i64 = 16;

/// One published config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The bucket's revision number.
    pub number: u64,
    /// The config file's text.
    pub text: String,
}

async fn bucket(bus: &Bus) -> Result<async_nats::jetstream::kv::Store, BusError> {
    crate::buckets::bucket(bus, crate::CONFIG_BUCKET, HISTORY, Duration::ZERO).await
}

/// Stores `text` as the next revision; its number. The caller has
/// validated it.
pub async fn publish(bus: &Bus, text: &str) -> Result<u64, BusError> {
    bucket(bus)
        .await?
        .put(KEY, text.to_owned().into())
        .await
        .map_err(|e| BusError::jetstream("cannot store the config", e))
}

/// The current revision, if any was published.
pub async fn current(bus: &Bus) -> Result<Option<Revision>, BusError> {
    let entry = bucket(bus)
        .await?
        .entry(KEY)
        .await
        .map_err(|e| BusError::jetstream("cannot read the config", e))?;
    Ok(entry.and_then(|entry| revision(entry.revision, &entry.value)))
}

fn revision(number: u64, value: &[u8]) -> Option<Revision> {
    // A value that is not text cannot be a config; a delete marker is
    // empty. Both are skipped.
    let text = std::str::from_utf8(value).ok()?;
    (!text.is_empty()).then(|| Revision {
        number,
        text: text.to_owned(),
    })
}

/// Every revision from the current one on, as they are published.
pub async fn watch(
    bus: &Bus,
) -> Result<impl futures::Stream<Item = Revision> + Send + use<>, BusError> {
    let watch = bucket(bus)
        .await?
        .watch_with_history(KEY)
        .await
        .map_err(|e| BusError::jetstream("cannot watch the config", e))?;
    Ok(watch.filter_map(|entry| async move {
        let entry = entry.ok()?;
        revision(entry.revision, &entry.value)
    }))
}
