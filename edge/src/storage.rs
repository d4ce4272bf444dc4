//! The edge's cache storage: a pingora-cache [`Storage`] held in memory and
//! bounded by bytes.
//!
//! pingora-cache ships `MemCache`, but it is meant for its own tests: it is
//! unbounded, copies every body on every hit, and panics on misuse. This
//! storage instead keeps committed objects in a [`quick_cache`] cache whose
//! weight is the object's size in bytes, so the configured budget bounds the
//! memory the cache holds; eviction is quick_cache's (S3-FIFO-like) policy.
//!
//! Two kinds of entries exist for a key:
//!
//! - **Objects**: complete responses, immutable once stored. A hit hands out
//!   `Bytes` slices of the stored body, so serving a hit copies nothing in
//!   user space; bodies of 32 KiB or more are kept in sealed memory files
//!   so the kernel need not copy them either (see [`crate::zero_copy`]).
//! - **Fills**: responses being written right now. A fill is readable while it
//!   is being written (streaming partial writes), so the one request that
//!   fetches from the origin and every request waiting behind the cache lock
//!   all stream the body as it arrives. A fill that is abandoned before it
//!   finishes is marked failed, so its readers see an error instead of a
//!   short body that looks complete. A finished fill becomes an object.

use crate::zero_copy;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::streaming_write::U64WriteId;
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheEntryKey, CacheKey, CacheMeta, Storage};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use quick_cache::sync::{EntryAction, EntryResult};
use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

mod disk;
mod disk_meta;
mod fill;
mod indexes;
mod object;
#[cfg(test)]
mod tests;
mod tiers;

pub use disk::DiskSettings;
use fill::{Fill, FillReader, FillWriter};
pub use indexes::response_tags;
use indexes::{IndexCleanup, Indexes};
pub use object::received_at;
use object::{OBJECT_OVERHEAD_BYTES, ObjectReader, ObjectWeighter, StoredMeta, StoredObject};
pub use tiers::TierStats;
use tiers::{Disk, TierHits};

/// Typical object size, used only to size quick_cache's tables up front.
const TYPICAL_OBJECT_BYTES: usize = 16 * 1024;

/// The object cache: weighed by bytes, and telling the tag index when it
/// evicts.
type Objects = quick_cache::sync::Cache<
    HashBinary,
    Arc<StoredObject>,
    ObjectWeighter,
    quick_cache::DefaultHashBuilder,
    IndexCleanup,
>;

/// An in-memory, byte-bounded cache storage. See the module documentation.
pub struct MemoryStorage {
    objects: Objects,
    indexes: Arc<Indexes>,
    /// Objects evicted to stay within the budget.
    evictions: Arc<AtomicU64>,
    /// The most variants of one URL kept at once, and how many were evicted
    /// to stay within it.
    max_variants: usize,
    variant_evictions: AtomicU64,
    /// Fills given up before their body was complete.
    abandoned_fills: AtomicU64,
    /// In-progress writes by key. Several may exist for one key (two requests
    /// that both decided to fetch); each is told apart by its id.
    fills: RwLock<HashMap<HashBinary, Vec<Arc<Fill>>>>,
    /// How many fills exist, so a hit can skip the `fills` lock entirely in
    /// the common case of no write in progress.
    fill_count: AtomicUsize,
    next_fill_id: AtomicU64,
    max_object_bytes: usize,
    /// The disk tier below memory, if any (see [`tiers`]), and where it is.
    disk: Disk,
    disk_path: Option<String>,
    tier_hits: TierHits,
    /// Tests only: runs where a purge once could slip in between a check
    /// and a write, so a test can make it land exactly there.
    #[cfg(test)]
    race_hook: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// A stored response ready to send: see [`MemoryStorage::fresh_object`].
#[derive(Debug)]
pub struct FreshObject {
    /// The stored response header.
    pub header: ResponseHeader,
    /// The body, shared with the cache.
    pub body: Bytes,
    /// How old the response is (for `Age`).
    pub age: std::time::Duration,
    /// When it stops being fresh.
    pub fresh_until: SystemTime,
}

impl MemoryStorage {
    /// A storage holding at most `max_bytes` of objects (bodies, headers and
    /// per-object overhead), none larger than `max_object_bytes`.
    pub fn new(max_bytes: usize, max_object_bytes: usize) -> Self {
        // quick_cache splits its budget evenly between shards, and an object
        // heavier than one shard's share is never admitted. Use few enough
        // shards that each can hold several of the largest objects.
        let per_shard_floor = max_object_bytes.saturating_add(OBJECT_OVERHEAD_BYTES) * 4;
        let shards = (max_bytes / per_shard_floor.max(1)).clamp(1, 64);
        let shards = 1 << shards.ilog2();
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(max_bytes as u64)
            .estimated_items_capacity((max_bytes / TYPICAL_OBJECT_BYTES).max(64))
            .build();
        // The builder only fails for a zero or missing capacity, and both are
        // set above from a budget the config requires to be positive.
        #[allow(clippy::expect_used)]
        let options = options.expect("cache options are complete");
        let indexes = Arc::new(Indexes::default());
        let evictions = Arc::new(AtomicU64::new(0));
        MemoryStorage {
            objects: quick_cache::sync::Cache::with_options(
                options,
                ObjectWeighter,
                Default::default(),
                IndexCleanup {
                    indexes: indexes.clone(),
                    evictions: evictions.clone(),
                },
            ),
            indexes,
            evictions,
            max_variants: config::DEFAULT_CACHE_MAX_VARIANTS as usize,
            variant_evictions: AtomicU64::new(0),
            abandoned_fills: AtomicU64::new(0),
            fills: RwLock::new(HashMap::new()),
            fill_count: AtomicUsize::new(0),
            next_fill_id: AtomicU64::new(1),
            max_object_bytes,
            disk: Disk::None,
            disk_path: None,
            tier_hits: TierHits::default(),
            #[cfg(test)]
            race_hook: Mutex::new(None),
        }
    }

    /// Keeps at most `max` variants of one URL (responses that `Vary`),
    /// evicting the oldest: otherwise requests with ever new values of a
    /// field the origin varies on could fill the cache with one URL.
    /// Pingora keeps one variant in the URL's own slot, and the others in
    /// slots of their own; `max` counts both.
    pub fn with_max_variants(mut self, max: usize) -> Self {
        self.max_variants = max.max(1);
        self
    }

    /// Variants evicted so far to stay within the most per URL.
    pub fn variant_evictions(&self) -> u64 {
        self.variant_evictions.load(Ordering::Relaxed)
    }

    /// Fills given up before their body was complete (the origin failed
    /// or was too slow, the body was longer or shorter than announced, or
    /// larger than the largest object), so far.
    pub fn abandoned_fills(&self) -> u64 {
        self.abandoned_fills.load(Ordering::Relaxed)
    }

    /// Number of complete objects stored.
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Objects evicted so far to stay within the budget.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Bytes charged against the budget by the stored objects.
    pub fn used_bytes(&self) -> u64 {
        self.objects.weight()
    }

    /// The stored object for `key` if it can be served as is: complete (no
    /// write in progress), not varied, and fresh at `now`. This is the
    /// edge's fast path for plain hits; anything else goes through
    /// pingora's cache state machine.
    pub fn fresh_object(&self, key: &HashBinary, now: SystemTime) -> Option<FreshObject> {
        if self.fill_for(key, None).is_some() {
            return None;
        }
        let object = self.stored(key)?;
        let meta = &object.meta;
        if meta.variance.is_some() || meta.fresh_until <= now {
            return None;
        }
        let epoch = meta.epoch_override.unwrap_or(meta.updated);
        Some(FreshObject {
            header: meta.header.clone(),
            body: object.body.clone(),
            age: now.duration_since(epoch).unwrap_or_default(),
            fresh_until: meta.fresh_until,
        })
    }

    /// Removes (or, `soft`, marks stale) every object tagged `tag`; returns
    /// how many.
    pub fn purge_tag(&self, tag: &str, soft: bool) -> usize {
        let keys: Vec<HashBinary> = {
            let mut index = self
                .indexes
                .tags
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match index.get(tag) {
                Some(keys) if !soft => {
                    let keys = keys.iter().copied().collect();
                    index.remove(tag);
                    keys
                }
                Some(keys) => keys.iter().copied().collect(),
                None => Vec::new(),
            }
        };
        let in_memory = keys.iter().filter(|key| self.purge_key(key, soft)).count();
        // Those also on disk left it with their key above: what the disk
        // still finds is only there.
        let only_on_disk = self.disk().map_or(0, |disk| disk.purge_tag(tag).len());
        in_memory + only_on_disk
    }

    /// Removes (or, `soft`, marks stale) the object stored under `key`,
    /// cancelling a fill in progress; true if there was one.
    ///
    /// Runs under the `fills` lock, which a fill also holds while it
    /// commits (see [`MemoryStorage::commit`]): the purge either cancels a
    /// fill before it commits, or removes what it committed. Without the
    /// lock a fill that had just checked it was not purged could store its
    /// object right after the purge removed the old one.
    pub fn purge_key(&self, key: &HashBinary, soft: bool) -> bool {
        if soft {
            return self.expire_key(key);
        }
        let mut fills = self.fills.write().unwrap_or_else(PoisonError::into_inner);
        let cancelled = match fills.remove(key) {
            Some(list) => {
                for fill in &list {
                    fill.purged.store(true, Ordering::Release);
                }
                self.fill_count.fetch_sub(list.len(), Ordering::AcqRel);
                true
            }
            None => false,
        };
        let on_disk = self.disk().is_some_and(|disk| {
            let held = disk.holds(key);
            disk.purge(*key);
            held
        });
        match self.objects.remove(key) {
            Some((key, object)) => {
                self.indexes.unfile(&key, &object);
                true
            }
            None => cancelled || on_disk,
        }
    }

    /// Removes every object; returns how many there were. Holds the `fills`
    /// lock throughout, so no fill commits between clearing the objects
    /// and clearing the tag index.
    pub fn purge_all(&self) -> usize {
        let mut fills = self.fills.write().unwrap_or_else(PoisonError::into_inner);
        for fill in fills.values().flatten() {
            fill.purged.store(true, Ordering::Release);
        }
        self.fill_count
            .fetch_sub(fills.values().map(Vec::len).sum(), Ordering::AcqRel);
        fills.clear();
        let count = match self.disk() {
            // Objects in both tiers count once.
            Some(disk) => {
                let only_in_memory = self.objects.iter().filter(|(key, _)| !disk.holds(key));
                only_in_memory.count() + disk.purge_all()
            }
            None => self.objects.len(),
        };
        self.objects.clear();
        self.indexes.clear();
        count
    }

    /// Marks the object under `key` stale, keeping its body for
    /// revalidation; a fill in progress is marked to be stored stale, since
    /// the response it holds may predate the purge. True if either existed.
    fn expire_key(&self, key: &HashBinary) -> bool {
        // Read access is enough to keep commits out (they take it for
        // writing), so a fill is either marked here or already stored.
        let fills = self.fills.read().unwrap_or_else(PoisonError::into_inner);
        let marked = fills.get(key).is_some_and(|list| {
            for fill in list {
                fill.stale_on_commit.store(true, Ordering::Release);
            }
            !list.is_empty()
        });
        // The disk copy says fresh: it goes, rather than be served so once
        // memory evicts the stale copy.
        let on_disk = self.disk().is_some_and(|disk| {
            let held = disk.holds(key);
            disk.purge(*key);
            held
        });
        let now = SystemTime::now();
        let expired = self.replace_stored(key, |object| {
            let mut meta = object.meta.to_meta();
            meta.expire_at(now);
            StoredObject {
                meta: Arc::new(StoredMeta::from_meta(&meta)),
                body: object.body.clone(),
                tags: object.tags.clone(),
                received: object.received,
                primary: object.primary,
            }
        });
        expired || marked || on_disk
    }

    /// Replaces the object stored under `key` with `refresh(current)`, in
    /// one step under the cache's lock for that key, keeping the tag index
    /// in step; false if nothing is stored there. Reading the object and
    /// inserting its replacement as two steps would bring back an object
    /// purged in between.
    fn replace_stored(
        &self,
        key: &HashBinary,
        refresh: impl FnOnce(&StoredObject) -> StoredObject,
    ) -> bool {
        #[cfg(test)]
        self.run_race_hook();
        let result = self
            .objects
            .entry(key, Some(Duration::ZERO), |key, current| {
                let refreshed = refresh(current);
                if refreshed.tags != current.tags {
                    self.indexes.unfile(key, current);
                    self.indexes.file(key, &refreshed);
                }
                *current = Arc::new(refreshed);
                EntryAction::Retain(())
            });
        // A vacant entry's placeholder guard is dropped here unused.
        matches!(result, EntryResult::Retained(()))
    }

    /// Stores a finished fill's object, unless a purge cancelled the fill
    /// (see [`MemoryStorage::purge_key`]), and retires the fill; both under
    /// the `fills` lock.
    fn commit(&self, key: HashBinary, fill: &Fill, mut object: StoredObject) {
        let mut fills = self.fills.write().unwrap_or_else(PoisonError::into_inner);
        #[cfg(test)]
        self.run_race_hook();
        if !fill.purged.load(Ordering::Acquire) {
            if fill.stale_on_commit.load(Ordering::Acquire) {
                let mut meta = object.meta.to_meta();
                meta.expire_at(SystemTime::now());
                object.meta = Arc::new(StoredMeta::from_meta(&meta));
            }
            let object = Arc::new(object);
            self.store(key, object.clone());
            // Under the `fills` lock: a purge after this offer comes after
            // it in the disk's queue too, and removes it.
            self.write_through(key, &object);
        }
        if let Some(list) = fills.get_mut(&key) {
            let before = list.len();
            list.retain(|f| f.id != fill.id);
            if list.len() < before {
                self.fill_count.fetch_sub(1, Ordering::AcqRel);
            }
            if list.is_empty() {
                fills.remove(&key);
            }
        }
    }

    /// Inserts or replaces the object under `key`, moving its key in the
    /// indexes from the old object's entries to the new one's in the same
    /// step; then evicts the URL's oldest variants beyond the most kept.
    fn store(&self, key: HashBinary, object: Arc<StoredObject>) {
        let result = self
            .objects
            .entry(&key, Some(Duration::ZERO), |key, current| {
                self.indexes.unfile(key, current);
                self.indexes.file(key, &object);
                *current = object.clone();
                EntryAction::Retain(())
            });
        match result {
            EntryResult::Vacant(slot) => {
                // Filed first: if the cache refuses the object (too heavy
                // for its shard), its eviction hook unfiles it again.
                self.indexes.file(&key, &object);
                if slot.insert(object.clone()).is_err() {
                    self.indexes.unfile(&key, &object);
                }
            }
            EntryResult::Retained(()) => {}
            // No one else ever holds a placeholder in this cache; should a
            // future change do so, a plain insert is still correct here.
            EntryResult::Timeout | EntryResult::Replaced(..) | EntryResult::Removed(..) => {
                self.indexes.file(&key, &object);
                self.objects.insert(key, object.clone());
            }
        }
        if let Some(primary) = object.primary {
            // The URL's own slot holds one variant too.
            let keep = self.max_variants - 1;
            for old in self.indexes.excess_variants(&primary, keep) {
                if let Some((old, evicted)) = self.objects.remove(&old) {
                    self.indexes.unfile(&old, &evicted);
                    self.variant_evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    #[cfg(test)]
    fn run_race_hook(&self) {
        let hook = self
            .race_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            hook();
        }
    }

    fn fill_for(&self, key: &HashBinary, id: Option<u64>) -> Option<Arc<Fill>> {
        if self.fill_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let fills = self.fills.read().unwrap_or_else(PoisonError::into_inner);
        let candidates = fills.get(key)?;
        match id {
            Some(id) => candidates.iter().find(|f| f.id == id).cloned(),
            // The newest write is the freshest response.
            None => candidates.last().cloned(),
        }
    }

    fn add_fill(&self, key: HashBinary, fill: Arc<Fill>) {
        let mut fills = self.fills.write().unwrap_or_else(PoisonError::into_inner);
        fills.entry(key).or_default().push(fill);
        self.fill_count.fetch_add(1, Ordering::AcqRel);
    }

    fn remove_fill(&self, key: &HashBinary, id: u64) {
        let mut fills = self.fills.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = fills.get_mut(key) {
            let before = list.len();
            list.retain(|f| f.id != id);
            if list.len() < before {
                self.fill_count.fetch_sub(1, Ordering::AcqRel);
            }
            if list.is_empty() {
                fills.remove(key);
            }
        }
    }
}

fn storage_error(context: &'static str, detail: impl Into<String>) -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        format!("{context}: {}", detail.into()),
    )
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        // A write in progress is newer than any stored object: prefer it, or
        // a refreshed response would stay invisible until fully written.
        if let Some(fill) = self.fill_for(&hash, None) {
            return fill.reader().map(Some);
        }
        let Some(object) = self.stored(&hash) else {
            return Ok(None);
        };
        let meta = object.meta.to_meta();
        let reader = ObjectReader::new(object.body.clone(), object.received);
        Ok(Some((meta, Box::new(reader))))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id: u64 = U64WriteId::try_from(tag)
            .map_err(|_| storage_error("lookup_streaming_write", "malformed write tag"))?
            .into();
        match self.fill_for(&key.combined_bin(), Some(id)) {
            Some(fill) => fill.reader().map(Some),
            // pingora asks right after creating the write, so it must exist;
            // an error fails this one request where `None` would panic.
            None => Err(storage_error(
                "lookup_streaming_write",
                format!("no write {id}"),
            )),
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let expected_len = meta
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if expected_len.is_some_and(|len| len > self.max_object_bytes) {
            return Err(storage_error(
                "get_miss_handler",
                "object larger than the maximum",
            ));
        }
        let id = self.next_fill_id.fetch_add(1, Ordering::Relaxed);
        let tags = response_tags(meta.headers()).into_boxed_slice();
        let primary = key.variance_bin().map(|_| key.primary_bin());
        let fill = Arc::new(Fill::new(
            id,
            Arc::new(StoredMeta::from_meta(meta)),
            tags,
            primary,
        ));
        let hash = key.combined_bin();
        self.add_fill(hash, fill.clone());
        Ok(Box::new(FillWriter {
            storage: self,
            key: hash,
            fill,
            tag: U64WriteId::from(id),
            written: 0,
            expected_len,
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        // Entries here carry no ids, so an exact target naming one cannot match.
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        let hash = target.key().combined_bin();
        Ok(if self.purge_key(&hash, false) {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if matches!(target, PurgeTarget::Exact(CacheEntryKey::Identified { .. })) {
            return Ok(PurgeOutcome::NotFound);
        }
        let hash = target.key().combined_bin();
        Ok(if self.expire_key(&hash) {
            PurgeOutcome::Expired
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        // Built before taking the cache's lock for the key.
        let meta = Arc::new(StoredMeta::from_meta(meta));
        let tags = response_tags(&meta.header.headers).into_boxed_slice();
        let hash = key.combined_bin();
        // A hit served from disk is refreshed in memory.
        self.bring_into_memory(&hash);
        // Evicted or purged while revalidating: nothing to refresh.
        let refreshed = self.replace_stored(&hash, |object| tiers::refreshed(object, meta, tags));
        if refreshed {
            self.write_through_stored(hash);
        }
        Ok(refreshed)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
