//! Opening the stream and the buckets, creating them when missing.

use crate::{Bus, BusError};
use async_nats::jetstream::kv::Store;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use std::time::Duration;

/// The purge stream: file-backed (it survives a restart of the server),
/// kept by `cluster.replicas` servers, a week of purges at most. An edge away longer than that finds a gap in
/// the sequence numbers and empties its cache (see `feed`).
pub(crate) async fn purge_stream(bus: &Bus) -> Result<stream::Stream, BusError> {
    bus.jetstream()
        .get_or_create_stream(stream::Config {
            name: crate::PURGE_STREAM.into(),
            subjects: vec![crate::PURGE_SUBJECT.into()],
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_messages: 10_000_000,
            storage: StorageType::File,
            num_replicas: bus.settings().replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::jetstream("cannot open the purge stream", e))
}

/// A key-value bucket keeping `history` values per key, each for at most
/// `max_age` (zero: forever).
///
/// Why not `create_key_value`: that call first reads the account's limits,
/// and Debian's nats-server (2.9) answers without fields the client
/// requires, so it fails there. The bucket is the same stream it would
/// create (the KV layout every NATS client shares: `KV_<bucket>` on
/// `$KV.<bucket>.>`, one subject per key, roll-ups allowed, deletes only
/// through markers), opened with `get_key_value`.
pub(crate) async fn bucket(
    bus: &Bus,
    name: &str,
    history: i64,
    max_age: Duration,
) -> Result<Store, BusError> {
    bus.jetstream()
        .get_or_create_stream(stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: history,
            max_age,
            storage: StorageType::File,
            num_replicas: bus.settings().replicas,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::jetstream(&format!("cannot open bucket {name}"), e))?;
    bus.jetstream()
        .get_key_value(name)
        .await
        .map_err(|e| BusError::jetstream(&format!("cannot open bucket {name}"), e))
}
