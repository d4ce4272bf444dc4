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

/// Bytes charged per object on top of its body and headers: the key, the
/// `Arc`s and structs, the header map's own allocations and quick_cache's
/// bookkeeping. Measured (filling a 16 MiB cache with twice its budget of
/// 1 KiB objects): without it the process held about 20 % more than the
/// budget; with it, within the 10 % the budget promises.
const OBJECT_OVERHEAD_BYTES: usize = 1024;

/// What an allocation of `len` bytes really takes: allocators round
/// requests up to a size class — jemalloc's (and most others') have four
/// classes per power of two, so up to 25 % more than asked. The cache
/// counts what it holds, not what it asked for, or a budget of large
/// objects would overrun by that much.
pub fn allocated(len: usize) -> usize {
    if len <= 16 {
        return 16;
    }
    // For len in (2^k, 2^(k+1)], classes are 2^(k-2) apart.
    let k = usize::BITS - 1 - (len - 1).leading_zeros();
    let spacing = 1usize << k.saturating_sub(2).max(4);
    len.div_ceil(spacing) * spacing
}

/// Typical object size, used only to size quick_cache's tables up front.
const TYPICAL_OBJECT_BYTES: usize = 16 * 1024;

/// What is kept beside the objects, in step with them: the purge tags,
/// and each URL's variants. Updated whenever an object is stored, replaced,
/// purged or evicted (the last under quick_cache's shard lock; these locks
/// are never held while calling into the cache, so they cannot deadlock).
#[derive(Default)]
struct Indexes {
    /// Tag → the keys of the objects carrying it (`Surrogate-Key`,
    /// `Cache-Tag`).
    tags: Mutex<HashMap<String, HashSet<HashBinary>>>,
    /// A URL's primary key → the keys of its variants stored in slots of
    /// their own, oldest first (see [`MemoryStorage::with_max_variants`]).
    variants: Mutex<HashMap<HashBinary, VecDeque<HashBinary>>>,
}

impl Indexes {
    /// Files `object`, stored under `key`.
    fn file(&self, key: &HashBinary, object: &StoredObject) {
        if !object.tags.is_empty() {
            let mut tags = self.tags.lock().unwrap_or_else(PoisonError::into_inner);
            for tag in object.tags.iter() {
                tags.entry(tag.clone()).or_default().insert(*key);
            }
        }
        if let Some(primary) = object.primary {
            let mut variants = self.variants.lock().unwrap_or_else(PoisonError::into_inner);
            let keys = variants.entry(primary).or_default();
            if !keys.contains(key) {
                keys.push_back(*key);
            }
        }
    }

    /// Takes `object`, stored under `key`, out of the indexes.
    fn unfile(&self, key: &HashBinary, object: &StoredObject) {
        if !object.tags.is_empty() {
            let mut tags = self.tags.lock().unwrap_or_else(PoisonError::into_inner);
            for tag in object.tags.iter() {
                if let Some(keys) = tags.get_mut(tag) {
                    keys.remove(key);
                    if keys.is_empty() {
                        tags.remove(tag);
                    }
                }
            }
        }
        if let Some(primary) = object.primary {
            let mut variants = self.variants.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(keys) = variants.get_mut(&primary) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    variants.remove(&primary);
                }
            }
        }
    }

    /// The oldest variants of `primary` beyond the newest `keep`, taken out
    /// of the index: the caller removes their objects.
    fn excess_variants(&self, primary: &HashBinary, keep: usize) -> Vec<HashBinary> {
        let mut variants = self.variants.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(keys) = variants.get_mut(primary) else {
            return Vec::new();
        };
        let excess = keys.len().saturating_sub(keep);
        keys.drain(..excess).collect()
    }

    fn clear(&self) {
        self.tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.variants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

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

/// A complete response: its metadata, its body, and the purge tags its
/// headers gave it.
struct StoredObject {
    meta: Arc<StoredMeta>,
    body: Bytes,
    tags: Box<[String]>,
    /// When this edge received the response, or last had it confirmed by
    /// the origin (a 304): see [`received_at`].
    received: SystemTime,
    /// The URL's primary key, when this is a variant stored in a slot of
    /// its own.
    primary: Option<HashBinary>,
}

impl StoredObject {
    fn weight(&self) -> usize {
        let tags: usize = self.tags.iter().map(|t| allocated(t.len())).sum();
        let body = zero_copy::footprint(&self.body).unwrap_or_else(|| allocated(self.body.len()));
        body + self.meta.weight() + tags + OBJECT_OVERHEAD_BYTES
    }
}

/// A [`CacheMeta`] kept parsed. pingora-cache's own storage serializes the
/// metadata (compressing the headers) and parses it back on every hit,
/// which costs a large share of a small hit; keeping the parts and
/// rebuilding a `CacheMeta` from them costs a header clone.
///
/// `CacheMeta` cannot be cloned and has no public way to restore two of its
/// fields, so the rebuild is close, not exact: the time of the last
/// revalidation is restored as an epoch override (it is what ages count
/// from), and the Vary-family provenance restarts at the object's creation,
/// which can only make an older sibling variant count as invalid (an extra
/// miss), never serve a stale one.
#[derive(Debug)]
struct StoredMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    updated: SystemTime,
    epoch_override: Option<SystemTime>,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    variance: Option<HashBinary>,
    header: ResponseHeader,
    /// Bytes of header names and values, for the cache's weight.
    header_bytes: usize,
}

/// A copy of `header` whose values share one exact-size buffer.
///
/// Parsed header values are slices of the buffer the whole response head
/// was read into; a stored clone would keep that buffer alive for as long
/// as the object is cached — kilobytes per object the cache never
/// accounted for. Copying every value into its own allocation would cost
/// an allocation per field; one buffer per object, sliced, costs one.
/// (Original header-name case is not kept; names are case-insensitive, and
/// HTTP/2 lowercases them anyway.)
fn compact_header(header: &ResponseHeader) -> ResponseHeader {
    let total: usize = header.headers.values().map(|v| v.len()).sum();
    let mut buffer = BytesMut::with_capacity(total);
    for value in header.headers.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = buffer.freeze();
    let Ok(mut compact) = ResponseHeader::build_no_case(header.status, Some(header.headers.len()))
    else {
        // `build` only fails on an invalid status, and this one parsed.
        return header.clone();
    };
    compact.set_version(header.version);
    let mut offset = 0;
    for (name, value) in header.headers.iter() {
        let end = offset + value.len();
        let shared = http::HeaderValue::from_maybe_shared(buffer.slice(offset..end))
            .unwrap_or_else(|_| value.clone());
        offset = end;
        if compact.append_header(name.clone(), shared).is_err() {
            return header.clone();
        }
    }
    compact
}

/// Bytes a stored header costs beyond its names and values: the header
/// map's table and bucket for each field. Measured, not derived: with it
/// the cache's weight tracks its real memory within a few percent.
const HEADER_FIELD_OVERHEAD_BYTES: usize = 128;

impl StoredMeta {
    fn from_meta(meta: &CacheMeta) -> Self {
        let header = compact_header(meta.response_header());
        let values: usize = header.headers.values().map(|v| v.len()).sum();
        let header_bytes = allocated(values)
            + header
                .headers
                .keys()
                .map(|name| name.as_str().len() + HEADER_FIELD_OVERHEAD_BYTES)
                .sum::<usize>();
        StoredMeta {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            updated: meta.updated(),
            epoch_override: meta.epoch_override(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
            header,
            header_bytes,
        }
    }

    fn to_meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            self.header.clone(),
        );
        if let Some(variance) = self.variance {
            meta.set_variance(variance);
        }
        match self.epoch_override {
            Some(epoch) => meta.set_epoch_override(epoch),
            None if self.updated != self.created => meta.set_epoch_override(self.updated),
            None => {}
        }
        meta
    }

    fn weight(&self) -> usize {
        self.header_bytes + std::mem::size_of::<Self>()
    }
}

/// Takes evicted objects out of the indexes, so they never outgrow the
/// cache.
#[derive(Clone)]
struct IndexCleanup {
    indexes: Arc<Indexes>,
    evictions: Arc<AtomicU64>,
}

impl quick_cache::Lifecycle<HashBinary, Arc<StoredObject>> for IndexCleanup {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), key: HashBinary, object: Arc<StoredObject>) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
        self.indexes.unfile(&key, &object);
    }
}

/// The purge tags a response declares: `Surrogate-Key` (space-separated,
/// Fastly's convention) and `Cache-Tag` (comma-separated, Cloudflare's).
pub fn response_tags(headers: &http::HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_whitespace)
        .chain(
            headers
                .get_all("cache-tag")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim),
        )
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[derive(Clone)]
struct ObjectWeighter;

impl quick_cache::Weighter<HashBinary, Arc<StoredObject>> for ObjectWeighter {
    fn weight(&self, _key: &HashBinary, object: &Arc<StoredObject>) -> u64 {
        object.weight() as u64
    }
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
        let object = self.objects.get(key)?;
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
        keys.iter().filter(|key| self.purge_key(key, soft)).count()
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
        match self.objects.remove(key) {
            Some((key, object)) => {
                self.indexes.unfile(&key, &object);
                true
            }
            None => cancelled,
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
        let count = self.objects.len();
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
        expired || marked
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
            self.store(key, Arc::new(object));
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
        let Some(object) = self.objects.get(&hash) else {
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
        // Evicted or purged while revalidating: nothing to refresh.
        Ok(
            self.replace_stored(&key.combined_bin(), |object| StoredObject {
                meta,
                body: object.body.clone(),
                tags,
                received: SystemTime::now(),
                primary: object.primary,
            }),
        )
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Serves a stored object's body as zero-copy slices; seekable for Range.
struct ObjectReader {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
    received: SystemTime,
}

impl ObjectReader {
    fn new(body: Bytes, received: SystemTime) -> Self {
        let end = body.len();
        ObjectReader {
            body,
            start: 0,
            end,
            done: false,
            received,
        }
    }
}

/// When this edge received the response a hit serves (or last had it
/// confirmed by the origin): what tells a request that must revalidate
/// whether another request's revalidation already did so after it arrived.
/// (The response's own age cannot: it counts from when the origin
/// generated it, which may be well before.)
pub fn received_at(hit: &HitHandler) -> Option<SystemTime> {
    let hit = hit.as_any();
    if let Some(object) = hit.downcast_ref::<ObjectReader>() {
        return Some(object.received);
    }
    hit.downcast_ref::<FillReader>()
        .map(|fill| fill.fill.received)
}

#[async_trait]
impl HandleHit for ObjectReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        if start >= len {
            return Err(storage_error(
                "seek",
                format!("start {start} beyond body length {len}"),
            ));
        }
        // `end` is exclusive; past the end means "to the end".
        let end = end.map_or(len, |end| end.min(len));
        if end < start {
            return Err(storage_error(
                "seek",
                format!("end {end} before start {start}"),
            ));
        }
        self.start = start;
        self.end = end;
        // A seek starts a new read, so one reader can serve several ranges.
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// A response being written: its metadata, the body chunks so far, and a
/// watch channel that wakes readers when chunks arrive.
struct Fill {
    id: u64,
    meta: Arc<StoredMeta>,
    tags: Box<[String]>,
    chunks: Mutex<Vec<Bytes>>,
    state: watch::Sender<FillState>,
    /// Set by a purge: the write must not be committed when it finishes.
    purged: AtomicBool,
    /// Set by a soft purge: the write is committed already stale.
    stale_on_commit: AtomicBool,
    /// When the response began to arrive.
    received: SystemTime,
    /// The URL's primary key, when this is a variant in a slot of its own.
    primary: Option<HashBinary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillState {
    /// `chunks` chunks are readable, more may come.
    Writing { chunks: usize },
    /// All `chunks` chunks are written: the body is complete.
    Complete { chunks: usize },
    /// The write was abandoned; the body is incomplete.
    Failed,
}

impl Fill {
    fn new(
        id: u64,
        meta: Arc<StoredMeta>,
        tags: Box<[String]>,
        primary: Option<HashBinary>,
    ) -> Self {
        let (state, _) = watch::channel(FillState::Writing { chunks: 0 });
        Fill {
            id,
            meta,
            tags,
            chunks: Mutex::new(Vec::new()),
            state,
            purged: AtomicBool::new(false),
            stale_on_commit: AtomicBool::new(false),
            received: SystemTime::now(),
            primary,
        }
    }

    fn reader(self: &Arc<Self>) -> Result<(CacheMeta, HitHandler)> {
        let meta = self.meta.to_meta();
        let reader = FillReader {
            fill: self.clone(),
            state: self.state.subscribe(),
            next_chunk: 0,
        };
        Ok((meta, Box::new(reader)))
    }

    fn chunk(&self, index: usize) -> Option<Bytes> {
        let chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        chunks.get(index).cloned()
    }
}

/// Streams a fill's body as it is written.
struct FillReader {
    fill: Arc<Fill>,
    state: watch::Receiver<FillState>,
    next_chunk: usize,
}

#[async_trait]
impl HandleHit for FillReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let state = *self.state.borrow_and_update();
            let (available, complete) = match state {
                FillState::Writing { chunks } => (chunks, false),
                FillState::Complete { chunks } => (chunks, true),
                FillState::Failed => {
                    return Err(Error::explain(
                        ErrorType::ReadError,
                        "the response being cached was abandoned before its end",
                    ));
                }
            };
            if self.next_chunk < available {
                let chunk = self
                    .fill
                    .chunk(self.next_chunk)
                    .ok_or_else(|| storage_error("read_body", "chunk announced but missing"))?;
                self.next_chunk += 1;
                return Ok(Some(chunk));
            }
            if complete {
                return Ok(None);
            }
            // The sender lives inside the fill this reader holds, so it
            // cannot be dropped while we wait.
            if self.state.changed().await.is_err() {
                return Err(storage_error("read_body", "write state closed"));
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn should_count_access(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Writes one response into a fill and commits it as an object at the end.
struct FillWriter {
    storage: &'static MemoryStorage,
    key: HashBinary,
    fill: Arc<Fill>,
    tag: U64WriteId,
    written: usize,
    /// The `Content-Length` the origin promised, if any: a body of any other
    /// length is truncated (or padded) and must never be stored.
    expected_len: Option<usize>,
    finished: bool,
}

impl FillWriter {
    fn fail(&mut self, reason: String) -> Box<Error> {
        self.abandon();
        storage_error("cache write", reason)
    }

    /// Gives the write up: readers see an error, nothing is stored, and it
    /// is counted (a client that got this response's head was told
    /// `stored`; it gets an aborted body, and this count says so).
    fn abandon(&mut self) {
        self.finished = true;
        self.fill.state.send_replace(FillState::Failed);
        self.storage.remove_fill(&self.key, self.fill.id);
        self.storage.abandoned_fills.fetch_add(1, Ordering::Relaxed);
    }

    fn complete(&mut self) -> Result<()> {
        if let Some(expected) = self.expected_len
            && expected != self.written
        {
            return Err(self.fail(format!(
                "body has {} bytes but Content-Length said {expected}",
                self.written
            )));
        }
        let chunks = self
            .fill
            .chunks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        self.fill.state.send_replace(FillState::Complete { chunks });
        Ok(())
    }
}

#[async_trait]
impl HandleMiss for FillWriter {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        if self.finished {
            return Err(storage_error("write_body", "write already finished"));
        }
        self.written = self.written.saturating_add(data.len());
        if self.written > self.storage.max_object_bytes {
            return Err(self.fail(format!(
                "body exceeds the maximum object size of {} bytes",
                self.storage.max_object_bytes
            )));
        }
        if !data.is_empty() {
            let chunks = {
                let mut chunks = self
                    .fill
                    .chunks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                chunks.push(data);
                chunks.len()
            };
            if !eof {
                self.fill.state.send_replace(FillState::Writing { chunks });
            }
        }
        if eof {
            self.complete()?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        if self.finished {
            return Err(storage_error("finish", "write already failed"));
        }
        if !matches!(*self.fill.state.borrow(), FillState::Complete { .. }) {
            self.complete()?;
        }
        self.finished = true;
        // One exact-size copy per stored object: the chunks may be slices of
        // larger network buffers, and keeping those alive would make the
        // cache hold more memory than it accounts for. Large bodies are
        // copied into sealed pages that hits can send without copying again.
        let body = {
            let chunks = self
                .fill
                .chunks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            zero_copy::seal(&chunks, self.written).unwrap_or_else(|| {
                let mut body = BytesMut::with_capacity(self.written);
                for chunk in chunks.iter() {
                    body.extend_from_slice(chunk);
                }
                body.freeze()
            })
        };
        let object = StoredObject {
            meta: self.fill.meta.clone(),
            body,
            tags: self.fill.tags.clone(),
            received: self.fill.received,
            primary: self.fill.primary,
        };
        let weight = object.weight();
        self.storage.commit(self.key, &self.fill, object);
        Ok(MissFinishType::Created(weight))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(self.tag.as_bytes())
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned mid-body (origin error, client gone, too large).
            self.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::trace::Span;
    use pingora::http::ResponseHeader;
    use std::sync::LazyLock;
    use std::time::Duration;

    fn meta(content_length: Option<usize>) -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        if let Some(len) = content_length {
            header
                .insert_header("content-length", len.to_string())
                .unwrap();
        }
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    fn key(path: &str) -> CacheKey {
        CacheKey::new(path.as_bytes().to_vec(), "")
    }

    fn span() -> SpanHandle {
        Span::inactive().handle()
    }

    fn leak(storage: MemoryStorage) -> &'static MemoryStorage {
        Box::leak(Box::new(storage))
    }

    async fn store(storage: &'static MemoryStorage, path: &str, body: &[u8]) {
        let mut writer = storage
            .get_miss_handler(&key(path), &meta(Some(body.len())), &span())
            .await
            .unwrap();
        writer
            .write_body(Bytes::copy_from_slice(body), true)
            .await
            .unwrap();
        writer.finish().await.unwrap();
    }

    async fn read_all(reader: &mut HitHandler) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(chunk) = reader.read_body().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    #[test]
    fn allocation_sizes_follow_size_classes() {
        assert_eq!(allocated(1), 16);
        assert_eq!(allocated(1024), 1024);
        assert_eq!(allocated(1025), 1280);
        assert_eq!(allocated(102_400), 114_688);
        assert_eq!(allocated(131_072), 131_072);
        for len in [17, 100, 1000, 5000, 70_000, 1_000_000] {
            let size = allocated(len);
            assert!(size >= len && size <= len + len / 4 + 16, "{len} -> {size}");
        }
    }

    #[tokio::test]
    async fn without_zero_copy_large_bodies_stay_on_the_heap() {
        let storage = leak(MemoryStorage::new(1 << 24, 1 << 20));
        let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        store(storage, "/large", &large).await;
        let object = storage
            .fresh_object(&key("/large").combined_bin(), SystemTime::now())
            .unwrap();
        assert_eq!(object.body, large);
        assert_eq!(
            zero_copy::footprint(&object.body).is_some(),
            zero_copy::ENABLED,
            "sealed exactly when zero-copy sends exist"
        );
    }

    #[tokio::test]
    async fn stores_and_serves_an_object() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        assert!(storage.lookup(&key("/a"), &span()).await.unwrap().is_none());
        store(storage, "/a", b"hello world").await;
        let (meta, mut reader) = storage.lookup(&key("/a"), &span()).await.unwrap().unwrap();
        assert_eq!(meta.response_header().status, 200);
        assert_eq!(read_all(&mut reader).await.unwrap(), b"hello world");
        assert_eq!(storage.object_count(), 1);
        assert!(storage.used_bytes() >= 11 + OBJECT_OVERHEAD_BYTES as u64);
    }

    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    #[tokio::test]
    async fn large_bodies_are_kept_in_sealed_pages_and_weighed_by_them() {
        let storage = leak(MemoryStorage::new(1 << 24, 1 << 20));
        let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        store(storage, "/large", &large).await;
        let object = storage
            .fresh_object(&key("/large").combined_bin(), SystemTime::now())
            .unwrap();
        assert_eq!(object.body, large);
        // 100,000 bytes take whole pages (25 of 4 KiB), not a heap size class.
        let pages = 100_000usize.next_multiple_of(zero_copy::page_bytes());
        assert_eq!(zero_copy::footprint(&object.body), Some(pages));
        let weight = storage.used_bytes() as usize;
        assert!(
            weight >= pages + OBJECT_OVERHEAD_BYTES
                && weight < pages + OBJECT_OVERHEAD_BYTES + 4096,
            "{weight}"
        );
        // Small bodies stay on the heap.
        store(storage, "/small", b"small").await;
        let small = storage
            .fresh_object(&key("/small").combined_bin(), SystemTime::now())
            .unwrap();
        assert_eq!(zero_copy::footprint(&small.body), None);
    }

    #[tokio::test]
    async fn fresh_objects_are_offered_for_the_fast_path() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        let now = SystemTime::now();
        assert!(
            storage
                .fresh_object(&key("/f").combined_bin(), now)
                .is_none()
        );
        store(storage, "/f", b"fast").await;
        let object = storage
            .fresh_object(&key("/f").combined_bin(), now)
            .unwrap();
        assert_eq!(object.body, "fast");
        assert_eq!(object.header.status, 200);
        // Not once it is stale.
        let later = now + Duration::from_secs(120);
        assert!(
            storage
                .fresh_object(&key("/f").combined_bin(), later)
                .is_none()
        );
    }

    #[tokio::test]
    async fn seeks_for_ranges() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        store(storage, "/r", b"0123456789").await;
        let (_, mut reader) = storage.lookup(&key("/r"), &span()).await.unwrap().unwrap();
        assert!(reader.can_seek());
        reader.seek(2, Some(5)).unwrap();
        assert_eq!(read_all(&mut reader).await.unwrap(), b"234");
        reader.seek(7, None).unwrap();
        assert_eq!(read_all(&mut reader).await.unwrap(), b"789");
        assert!(reader.seek(10, None).is_err());
    }

    #[tokio::test]
    async fn readers_stream_a_fill_as_it_is_written() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        let mut writer = storage
            .get_miss_handler(&key("/s"), &meta(Some(6)), &span())
            .await
            .unwrap();
        writer
            .write_body(Bytes::from_static(b"abc"), false)
            .await
            .unwrap();
        let (_, mut reader) = storage.lookup(&key("/s"), &span()).await.unwrap().unwrap();
        assert_eq!(reader.read_body().await.unwrap().unwrap(), "abc");
        let rest = tokio::spawn(async move { read_all(&mut reader).await });
        tokio::task::yield_now().await;
        writer
            .write_body(Bytes::from_static(b"def"), true)
            .await
            .unwrap();
        writer.finish().await.unwrap();
        assert_eq!(rest.await.unwrap().unwrap(), b"def");
        // Committed: later lookups get the whole object.
        let (_, mut reader) = storage.lookup(&key("/s"), &span()).await.unwrap().unwrap();
        assert_eq!(read_all(&mut reader).await.unwrap(), b"abcdef");
    }

    #[tokio::test]
    async fn an_abandoned_fill_is_an_error_is_not_stored_and_is_counted() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        let mut writer = storage
            .get_miss_handler(&key("/t"), &meta(Some(100)), &span())
            .await
            .unwrap();
        writer
            .write_body(Bytes::from_static(b"partial"), false)
            .await
            .unwrap();
        let (_, mut reader) = storage.lookup(&key("/t"), &span()).await.unwrap().unwrap();
        drop(writer);
        assert!(read_all(&mut reader).await.is_err());
        assert!(storage.lookup(&key("/t"), &span()).await.unwrap().is_none());
        assert_eq!(storage.abandoned_fills(), 1);
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_content_length_is_not_stored() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        let mut writer = storage
            .get_miss_handler(&key("/short"), &meta(Some(100)), &span())
            .await
            .unwrap();
        assert!(
            writer
                .write_body(Bytes::from_static(b"only this"), true)
                .await
                .is_err()
        );
        assert!(writer.finish().await.is_err());
        assert!(
            storage
                .lookup(&key("/short"), &span())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn objects_over_the_maximum_are_refused() {
        let storage = leak(MemoryStorage::new(1 << 20, 8));
        assert!(
            storage
                .get_miss_handler(&key("/big"), &meta(Some(9)), &span())
                .await
                .is_err()
        );
        // Without a Content-Length the size is only known while writing.
        let mut writer = storage
            .get_miss_handler(&key("/big"), &meta(None), &span())
            .await
            .unwrap();
        assert!(
            writer
                .write_body(Bytes::from_static(b"123456789"), false)
                .await
                .is_err()
        );
        drop(writer);
        assert!(
            storage
                .lookup(&key("/big"), &span())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_budget_bounds_what_is_held() {
        let budget = 256 * 1024;
        let storage = leak(MemoryStorage::new(budget, 8 * 1024));
        let body = vec![7u8; 4 * 1024];
        for i in 0..200 {
            store(storage, &format!("/o{i}"), &body).await;
        }
        assert!(
            storage.used_bytes() <= budget as u64,
            "{}",
            storage.used_bytes()
        );
        assert!(storage.object_count() < 200);
        assert!(storage.object_count() > 10);
        assert!(storage.evictions() > 0);
    }

    #[tokio::test]
    async fn purge_removes_and_expire_keeps_the_body() {
        static STORAGE: LazyLock<MemoryStorage> =
            LazyLock::new(|| MemoryStorage::new(1 << 20, 1 << 16));
        let storage: &'static MemoryStorage = &STORAGE;
        store(storage, "/p", b"x").await;
        let compact = key("/p").to_compact();
        let outcome = storage
            .expire(PurgeTarget::Active(&compact), &span())
            .await
            .unwrap();
        assert_eq!(outcome, PurgeOutcome::Expired);
        let (meta, mut reader) = storage.lookup(&key("/p"), &span()).await.unwrap().unwrap();
        assert!(!meta.is_fresh(SystemTime::now()));
        assert_eq!(read_all(&mut reader).await.unwrap(), b"x");
        let outcome = storage
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span(),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PurgeOutcome::Purged(None));
        assert!(storage.lookup(&key("/p"), &span()).await.unwrap().is_none());
        let outcome = storage
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span(),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PurgeOutcome::NotFound);
    }

    #[tokio::test]
    async fn a_purge_during_a_fill_keeps_it_out() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        let mut writer = storage
            .get_miss_handler(&key("/f"), &meta(Some(2)), &span())
            .await
            .unwrap();
        let compact = key("/f").to_compact();
        storage
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span(),
            )
            .await
            .unwrap();
        writer
            .write_body(Bytes::from_static(b"ok"), true)
            .await
            .unwrap();
        writer.finish().await.unwrap();
        assert!(storage.lookup(&key("/f"), &span()).await.unwrap().is_none());
    }

    fn tagged_meta(tags: &str) -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("surrogate-key", tags).unwrap();
        header.insert_header("cache-tag", "all, shared").unwrap();
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    async fn store_tagged(storage: &'static MemoryStorage, path: &str, tags: &str) {
        let mut writer = storage
            .get_miss_handler(&key(path), &tagged_meta(tags), &span())
            .await
            .unwrap();
        writer
            .write_body(Bytes::from_static(b"x"), true)
            .await
            .unwrap();
        writer.finish().await.unwrap();
    }

    #[test]
    fn tags_come_from_surrogate_key_and_cache_tag() {
        let mut headers = http::HeaderMap::new();
        headers.insert("surrogate-key", "a  b".parse().unwrap());
        headers.append("cache-tag", "c, d,,a".parse().unwrap());
        assert_eq!(response_tags(&headers), ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn purge_by_tag_removes_exactly_the_tagged_objects() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        store_tagged(storage, "/1", "product-1 images").await;
        store_tagged(storage, "/2", "product-2 images").await;
        store_tagged(storage, "/3", "product-1").await;
        assert_eq!(storage.purge_tag("product-1", false), 2);
        assert!(storage.lookup(&key("/1"), &span()).await.unwrap().is_none());
        assert!(storage.lookup(&key("/3"), &span()).await.unwrap().is_none());
        assert!(storage.lookup(&key("/2"), &span()).await.unwrap().is_some());
        assert_eq!(storage.purge_tag("product-1", false), 0);
        // Soft: still there, but stale.
        assert_eq!(storage.purge_tag("images", true), 1);
        let (meta, _) = storage.lookup(&key("/2"), &span()).await.unwrap().unwrap();
        assert!(!meta.is_fresh(SystemTime::now()));
        assert_eq!(storage.purge_all(), 1);
        assert_eq!(storage.object_count(), 0);
        assert!(storage.indexes.tags.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn eviction_cleans_the_tag_index() {
        let storage = leak(MemoryStorage::new(64 * 1024, 8 * 1024));
        for i in 0..200 {
            store_tagged(storage, &format!("/e{i}"), &format!("t{i}")).await;
        }
        let indexed: usize = storage
            .indexes
            .tags
            .lock()
            .unwrap()
            .values()
            .map(HashSet::len)
            .sum();
        // Every object carries its own tag plus "all" and "shared".
        assert!(
            indexed <= storage.object_count() * 3,
            "{indexed} index entries for {} objects",
            storage.object_count()
        );
    }

    #[tokio::test]
    async fn update_meta_of_a_missing_object_is_false_not_a_panic() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        assert!(
            !storage
                .update_meta(&key("/gone"), &meta(None), &span())
                .await
                .unwrap()
        );
        store(storage, "/here", b"body").await;
        assert!(
            storage
                .update_meta(&key("/here"), &meta(Some(4)), &span())
                .await
                .unwrap()
        );
        let (_, mut reader) = storage
            .lookup(&key("/here"), &span())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_all(&mut reader).await.unwrap(), b"body");
    }

    /// Runs `purge` on another thread from inside the storage's race hook,
    /// giving it up to 300 ms to land before the hooked operation goes on;
    /// returns the thread, to be joined once the operation is done.
    fn purge_from_the_race_hook(
        storage: &'static MemoryStorage,
        purge: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Arc<Mutex<Option<std::thread::JoinHandle<bool>>>> {
        let purge = Arc::new(purge);
        let handle = Arc::new(Mutex::new(None));
        let slot = handle.clone();
        *storage.race_hook.lock().unwrap() = Some(Box::new(move || {
            let (done, landed) = std::sync::mpsc::channel();
            let purge = purge.clone();
            let thread = std::thread::spawn(move || {
                let purged = purge();
                let _ = done.send(());
                purged
            });
            let _ = landed.recv_timeout(Duration::from_millis(300));
            *slot.lock().unwrap() = Some(thread);
        }));
        handle
    }

    #[tokio::test]
    async fn a_purge_landing_while_a_fill_commits_is_never_undone() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        store(storage, "/race", b"old").await;
        let mut writer = storage
            .get_miss_handler(&key("/race"), &meta(Some(3)), &span())
            .await
            .unwrap();
        writer
            .write_body(Bytes::from_static(b"new"), true)
            .await
            .unwrap();
        let purge = purge_from_the_race_hook(storage, move || {
            storage.purge_key(&key("/race").combined_bin(), false)
        });
        writer.finish().await.unwrap();
        let purge = purge.lock().unwrap().take().expect("the hook ran");
        assert!(purge.join().unwrap(), "the purge found something to purge");
        assert!(
            storage
                .lookup(&key("/race"), &span())
                .await
                .unwrap()
                .is_none(),
            "an object purged while its fill committed came back"
        );
        assert!(storage.fills.read().unwrap().is_empty());
        assert_eq!(storage.fill_count.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_purge_landing_while_a_revalidation_refreshes_is_never_undone() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        store(storage, "/race", b"body").await;
        let purge = purge_from_the_race_hook(storage, move || {
            storage.purge_key(&key("/race").combined_bin(), false)
        });
        let refreshed = storage
            .update_meta(&key("/race"), &meta(Some(4)), &span())
            .await
            .unwrap();
        let purge = purge.lock().unwrap().take().expect("the hook ran");
        assert!(purge.join().unwrap());
        assert!(!refreshed, "there was nothing left to refresh");
        assert!(
            storage
                .lookup(&key("/race"), &span())
                .await
                .unwrap()
                .is_none(),
            "a refresh brought back a purged object"
        );
    }

    #[tokio::test]
    async fn a_refresh_moves_the_object_to_its_new_tags() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        store_tagged(storage, "/moved", "product-1").await;
        assert!(
            storage
                .update_meta(&key("/moved"), &tagged_meta("product-2"), &span())
                .await
                .unwrap()
        );
        assert_eq!(storage.purge_tag("product-1", false), 0);
        assert_eq!(storage.purge_tag("product-2", false), 1);
        assert!(
            storage
                .lookup(&key("/moved"), &span())
                .await
                .unwrap()
                .is_none()
        );
        // Nothing is left indexed for an object that is gone.
        assert_eq!(storage.purge_tag("all", false), 0);
        assert!(storage.indexes.tags.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_replacement_moves_the_object_to_its_new_tags() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        store_tagged(storage, "/replaced", "product-1").await;
        store_tagged(storage, "/replaced", "product-2").await;
        assert_eq!(storage.purge_tag("product-1", false), 0);
        assert_eq!(storage.purge_tag("product-2", false), 1);
        assert!(storage.indexes.tags.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_soft_purge_during_a_fill_stores_it_stale() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
        let mut writer = storage
            .get_miss_handler(&key("/soft"), &meta(Some(2)), &span())
            .await
            .unwrap();
        assert!(storage.purge_key(&key("/soft").combined_bin(), true));
        writer
            .write_body(Bytes::from_static(b"ok"), true)
            .await
            .unwrap();
        writer.finish().await.unwrap();
        let (meta, mut reader) = storage
            .lookup(&key("/soft"), &span())
            .await
            .unwrap()
            .unwrap();
        assert!(!meta.is_fresh(SystemTime::now()), "stored fresh");
        assert_eq!(read_all(&mut reader).await.unwrap(), b"ok");
    }

    #[tokio::test]
    async fn a_url_keeps_at_most_its_maximum_of_variants_the_newest() {
        let storage = leak(MemoryStorage::new(1 << 20, 1 << 16).with_max_variants(3));
        let variant = |i: u8| {
            let mut key = key("/v");
            key.set_variance_key([i; 16]);
            key
        };
        for i in 0..10 {
            let mut writer = storage
                .get_miss_handler(&variant(i), &meta(Some(1)), &span())
                .await
                .unwrap();
            writer
                .write_body(Bytes::from_static(b"x"), true)
                .await
                .unwrap();
            writer.finish().await.unwrap();
        }
        // Two in slots of their own (the URL's own slot holds the third).
        assert_eq!(storage.object_count(), 2);
        assert_eq!(storage.variant_evictions(), 8);
        for i in 0..8 {
            assert!(
                storage
                    .lookup(&variant(i), &span())
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        for i in 8..10 {
            assert!(
                storage
                    .lookup(&variant(i), &span())
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        // Other URLs are not affected, and purging leaves nothing indexed.
        store(storage, "/other", b"y").await;
        assert_eq!(storage.object_count(), 3);
        storage.purge_key(&variant(9).combined_bin(), false);
        storage.purge_key(&variant(8).combined_bin(), false);
        assert!(storage.indexes.variants.lock().unwrap().is_empty());
    }
}
