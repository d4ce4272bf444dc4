//! The memory tier's side of the disk tier: what goes down to disk, and
//! how a memory miss finds an object there.
//!
//! **Write-through.** Every object the memory tier stores is offered to
//! the disk tier as it is stored (and again when a revalidation refreshes
//! it), not only when memory evicts it: so objects too large for memory
//! are kept, an edge killed with `kill -9` keeps what it had written, and
//! eviction from memory costs nothing. The offer never waits (see
//! [`disk::writer`]); an object the queue had no room for lives in memory
//! only.
//!
//! **Lookups.** A memory miss asks the disk. A disk hit is served from the
//! file (its pages, by `sendfile`); on its second hit it is promoted into
//! memory, so hot objects stay in memory while a scan of cold ones does not
//! churn it. A promotion is checked under the `fills` lock against the disk
//! index, so a purge in between is never undone.
//!
//! **Purges** reach both tiers. A soft purge (mark stale) of an object
//! only on disk removes it there: a miss instead of a revalidation, never
//! a stale answer served as fresh.

use super::disk::{DiskSettings, DiskStats, DiskTier};
use super::disk_meta;
use super::object::{StoredMeta, StoredObject};
use super::*;

/// Disk hits after which an object is promoted into memory.
const PROMOTE_AFTER_HITS: u32 = 2;

/// Lookups answered by each tier, for the hit ratio per tier.
#[derive(Default)]
pub(super) struct TierHits {
    pub(super) memory: AtomicU64,
    pub(super) disk: AtomicU64,
}

/// The disk tier as the storage holds it: open, or why it is not.
pub(super) enum Disk {
    /// No disk tier configured.
    None,
    /// Open and in use.
    Open(DiskTier),
    /// Configured but unusable at start; the edge serves from memory.
    Failed(String),
}

/// What `status` and metrics show of the tiers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TierStats {
    /// Lookups answered from memory since the start (counted only with a
    /// disk tier).
    pub memory_hits: u64,
    /// Lookups answered from disk since the start.
    pub disk_hits: u64,
    /// The disk tier's state, if one is configured.
    pub disk: Option<DiskState>,
}

/// A configured disk tier's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskState {
    /// Where it keeps its files.
    pub path: String,
    /// Its counters; `None` when it could not be opened.
    #[serde(flatten)]
    pub stats: Option<DiskStats>,
    /// Why it is failing (or could not be opened), if it is.
    pub failing: Option<String>,
}

impl MemoryStorage {
    /// The same storage with a disk tier in `settings.path` below memory.
    /// A directory that cannot be used is logged and shown in `status`,
    /// and the edge serves from memory and origins: a bad disk must not
    /// take the edge down.
    pub fn with_disk(mut self, settings: &DiskSettings) -> Self {
        self.disk_path = Some(settings.path.display().to_string());
        self.disk = match DiskTier::open(settings, disk_meta::tags_of) {
            Ok(tier) => {
                tracing::info!("disk cache in {}", tier.root().display());
                Disk::Open(tier)
            }
            Err(error) => {
                tracing::error!(%error, "no disk cache; serving from memory and origins");
                Disk::Failed(error.to_string())
            }
        };
        self
    }

    pub(super) fn disk(&self) -> Option<&DiskTier> {
        match &self.disk {
            Disk::Open(tier) => Some(tier),
            Disk::None | Disk::Failed(_) => None,
        }
    }

    /// Offers `object` to the disk tier (write-through); never waits.
    pub(super) fn write_through(&self, key: HashBinary, object: &StoredObject) {
        let Some(disk) = self.disk() else { return };
        match disk_meta::encode(object) {
            Ok(meta) => {
                disk.offer(key, meta, vec![object.body.clone()]);
            }
            Err(error) => tracing::warn!(%error, "object not written to disk"),
        }
    }

    /// Offers the object now stored in memory under `key` to the disk tier,
    /// under the `fills` lock so that no purge slips in between (see
    /// [`MemoryStorage::commit`]).
    pub(super) fn write_through_stored(&self, key: HashBinary) {
        let _fills = self.fills.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(object) = self.objects.peek(&key) {
            self.write_through(key, &object);
        }
    }

    /// The object stored under `key`, from memory or else from disk,
    /// counting which tier answered. See the module documentation.
    pub(super) fn stored(&self, key: &HashBinary) -> Option<Arc<StoredObject>> {
        if let Some(object) = self.objects.get(key) {
            // Counted only beside a disk tier: a counter every thread bumps
            // on every hit costs the memory-only hit path a contended cache
            // line, and there memory's share is all of them anyway.
            if self.disk_path.is_some() {
                self.tier_hits.memory.fetch_add(1, Ordering::Relaxed);
            }
            return Some(object);
        }
        let (object, hits) = self.read_disk(key)?;
        self.tier_hits.disk.fetch_add(1, Ordering::Relaxed);
        if hits >= PROMOTE_AFTER_HITS {
            self.promote(*key, object.clone());
        }
        Some(object)
    }

    /// `key`'s object read from disk, and its hits there so far. A record
    /// whose metadata cannot be read is purged: it is a miss from now on.
    fn read_disk(&self, key: &HashBinary) -> Option<(Arc<StoredObject>, u32)> {
        let disk = self.disk()?;
        let hit = disk.lookup(key)?;
        let hits = hit.hits;
        let meta = match disk_meta::decode(&hit.meta) {
            Ok(meta) => meta,
            Err(error) => {
                tracing::warn!(%error, "disk cache record unusable; purged");
                disk.purge(*key);
                return None;
            }
        };
        let body = match hit.into_body() {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "disk cache body unreadable");
                return None;
            }
        };
        let object = StoredObject {
            meta: Arc::new(meta.meta),
            body,
            tags: meta.tags,
            received: meta.received,
            primary: meta.primary,
        };
        Some((Arc::new(object), hits))
    }

    /// Stores a disk object in memory, unless a purge removed it from disk
    /// since it was read or a fill of it is in progress (a newer response).
    fn promote(&self, key: HashBinary, object: Arc<StoredObject>) {
        let fills = self.fills.read().unwrap_or_else(PoisonError::into_inner);
        if fills.contains_key(&key) || !self.disk().is_some_and(|disk| disk.holds(&key)) {
            return;
        }
        // Purges take `fills` for writing: none can land until the store
        // is done.
        self.store(key, object);
        drop(fills);
    }

    /// Makes sure an object a revalidation is about to refresh is in
    /// memory, where the refresh happens (it may have been served from
    /// disk).
    pub(super) fn bring_into_memory(&self, key: &HashBinary) {
        if self.objects.contains_key(key) {
            return;
        }
        if let Some((object, _)) = self.read_disk(key) {
            self.promote(*key, object);
        }
    }

    /// Lookups answered per tier, and the disk tier's state.
    pub fn tier_stats(&self) -> TierStats {
        let disk = self.disk_path.as_ref().map(|path| {
            let (stats, failing) = match &self.disk {
                Disk::Open(tier) => {
                    let stats = tier.stats();
                    let failing = stats.failing.clone();
                    (Some(stats), failing)
                }
                Disk::Failed(reason) => (None, Some(reason.clone())),
                Disk::None => (None, None),
            };
            DiskState {
                path: path.clone(),
                stats,
                failing,
            }
        });
        TierStats {
            memory_hits: self.tier_hits.memory.load(Ordering::Relaxed),
            disk_hits: self.tier_hits.disk.load(Ordering::Relaxed),
            disk,
        }
    }

    /// Records that the cluster bus's purges up to `sequence` are applied,
    /// so a restart resumes after them. Nothing to keep without a disk.
    pub fn purges_applied_up_to(&self, sequence: u64) {
        if let Some(disk) = self.disk() {
            disk.purges_applied_up_to(sequence);
        }
    }

    /// The cluster bus's last purge applied to the disk tier before this
    /// start: where the purge feed resumes, so purges made while the edge
    /// was down reach its disk.
    pub fn resume_purges_after(&self) -> Option<u64> {
        self.disk().and_then(DiskTier::purge_sequence)
    }

    /// As the edge stops: lets the disk tier finish what it was given, for
    /// at most `limit`, so a clean stop keeps every object it had stored.
    pub fn finish_disk_writes(&self, limit: std::time::Duration) {
        if let Some(disk) = self.disk()
            && !disk.flush_within(limit)
        {
            tracing::warn!("disk cache writes not finished within {limit:?}; the rest are lost");
        }
    }

    /// Waits until the disk tier has applied everything offered so far.
    pub fn flush_disk(&self) {
        if let Some(disk) = self.disk() {
            disk.flush();
        }
    }
}

/// A refreshed copy of `object` with `meta` and `tags`.
pub(super) fn refreshed(
    object: &StoredObject,
    meta: Arc<StoredMeta>,
    tags: Box<[String]>,
) -> StoredObject {
    StoredObject {
        meta,
        body: object.body.clone(),
        tags,
        received: SystemTime::now(),
        primary: object.primary,
    }
}
