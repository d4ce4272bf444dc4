//! The indexes kept beside the objects: purge tags and each URL's
//! variants.

use super::*;

/// What is kept beside the objects, in step with them: the purge tags,
/// and each URL's variants. Updated whenever an object is stored, replaced,
/// purged or evicted (the last under quick_cache's shard lock; these locks
/// are never held while calling into the cache, so they cannot deadlock).
#[derive(Default)]
pub(super) struct Indexes {
    /// Tag → the keys of the objects carrying it (`Surrogate-Key`,
    /// `Cache-Tag`).
    pub(super) tags: Mutex<HashMap<String, HashSet<HashBinary>>>,
    /// A URL's primary key → the keys of its variants stored in slots of
    /// their own, oldest first (see [`MemoryStorage::with_max_variants`]).
    pub(super) variants: Mutex<HashMap<HashBinary, VecDeque<HashBinary>>>,
}

impl Indexes {
    /// Files `object`, stored under `key`.
    pub(super) fn file(&self, key: &HashBinary, object: &StoredObject) {
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
    pub(super) fn unfile(&self, key: &HashBinary, object: &StoredObject) {
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
    pub(super) fn excess_variants(&self, primary: &HashBinary, keep: usize) -> Vec<HashBinary> {
        let mut variants = self.variants.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(keys) = variants.get_mut(primary) else {
            return Vec::new();
        };
        let excess = keys.len().saturating_sub(keep);
        keys.drain(..excess).collect()
    }

    pub(super) fn clear(&self) {
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

/// Takes evicted objects out of the indexes, so they never outgrow the
/// cache.
#[derive(Clone)]
pub(super) struct IndexCleanup {
    pub(super) indexes: Arc<Indexes>,
    pub(super) evictions: Arc<AtomicU64>,
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
