//! Which objects the disk tier holds: an in-memory index from key hash to
//! entry, bounded by the disk budget, whose evictions delete files; rebuilt
//! at start from the files' own headers.
//!
//! Every change to which files exist and what the index says about them
//! (naming a written file, a purge, a rebuilt entry, an eviction, deleting a
//! damaged file) happens under one lock, `changes`, so they are seen in one
//! order. Lookups take no lock but quick_cache's: they read the file they
//! open, checked, whatever happens to its name meanwhile.

use super::health::DiskHealth;
use super::layout::{self, Layout};
use super::record::{self, Pending, RecordError, RecordHeader};
use super::tombstones::Tombstones;
use crate::zero_copy;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What the index keeps per object: little, as it is in memory for every
/// object on disk.
#[derive(Debug)]
pub struct DiskEntry {
    /// What the file occupies on disk, in whole blocks: its weight.
    disk_bytes: u64,
    /// Hits since it was indexed, for promotion to memory when hot.
    hits: AtomicU32,
    /// Its purge tags, for purges by tag.
    tags: Box<[String]>,
}

#[derive(Clone)]
struct BlockWeighter;

impl quick_cache::Weighter<HashBinary, Arc<DiskEntry>> for BlockWeighter {
    fn weight(&self, _key: &HashBinary, entry: &Arc<DiskEntry>) -> u64 {
        entry.disk_bytes
    }
}

/// Collects the entries quick_cache evicts, so their files are deleted
/// once its shard lock is released (under the index's own lock).
#[derive(Clone)]
struct CollectEvicted;

impl quick_cache::Lifecycle<HashBinary, Arc<DiskEntry>> for CollectEvicted {
    type RequestState = Vec<(HashBinary, Arc<DiskEntry>)>;

    fn on_evict(&self, evicted: &mut Self::RequestState, key: HashBinary, entry: Arc<DiskEntry>) {
        evicted.push((key, entry));
    }
}

type Entries = quick_cache::sync::Cache<
    HashBinary,
    Arc<DiskEntry>,
    BlockWeighter,
    quick_cache::DefaultHashBuilder,
    CollectEvicted,
>;

/// Typical object size on disk, used only to size quick_cache's tables.
const TYPICAL_DISK_BYTES: u64 = 64 * 1024;

/// A disk hit: the open file, checked, and its metadata. The body is not
/// read: the caller sends it from the file.
#[derive(Debug)]
pub struct DiskHit {
    /// The object's file, open: it stays readable whatever later happens
    /// to its name.
    pub file: File,
    /// Its header record.
    pub header: RecordHeader,
    /// Its metadata (the serialized response head).
    pub meta: Vec<u8>,
    /// Hits on it since it was indexed, this one included.
    pub hits: u32,
}

impl DiskHit {
    /// The body, ready to send. Large bodies are the file's pages, mapped
    /// and not read: the client connection sends them with sendfile, the
    /// head in the first segment, as it does sealed memory bodies. Small
    /// ones (which would share a send with the head anyway) and those the
    /// system will not map are read.
    pub fn into_body(self) -> io::Result<Bytes> {
        let len = usize::try_from(self.header.body_len).map_err(|_| io::ErrorKind::InvalidData)?;
        let offset =
            usize::try_from(self.header.body_offset).map_err(|_| io::ErrorKind::InvalidData)?;
        if len >= zero_copy::MIN_BYTES {
            let file = self.file.try_clone()?;
            if let Some(body) = zero_copy::map_file(file, offset, len) {
                return Ok(body);
            }
        }
        let mut body = vec![0u8; len];
        self.file.read_exact_at(&mut body, offset as u64)?;
        Ok(Bytes::from(body))
    }
}

/// What a rebuild found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// Objects checked and indexed.
    pub objects: u64,
    /// Files found damaged (or not records at all), deleted.
    pub damaged: u64,
    /// How long it took.
    pub took: Duration,
}

/// The index. See the module documentation.
pub struct DiskIndex {
    layout: Arc<Layout>,
    entries: Entries,
    /// Held for every change (see the module documentation). It guards the
    /// tombstones of purges the writer has not applied yet.
    changes: Mutex<Tombstones>,
    health: Arc<DiskHealth>,
    /// Whether the start's rebuild has ended (until then a lookup that
    /// finds no entry checks the object's file itself).
    rebuilt: AtomicBool,
    /// The purge tags in a record's metadata (which only the memory tier
    /// knows how to read).
    tags_of: TagsOf,
}

/// Reads the purge tags out of a record's metadata; `None` if it cannot be
/// read at all (the file is then damaged).
pub type TagsOf = fn(&[u8]) -> Option<Box<[String]>>;

/// Metadata read as carrying no tags: for tiers whose records have none.
pub fn no_tags(_meta: &[u8]) -> Option<Box<[String]>> {
    Some(Box::default())
}

impl DiskIndex {
    /// An empty index of at most `max_bytes` of files, none larger than
    /// `max_object_bytes`.
    pub fn new(
        layout: Arc<Layout>,
        max_bytes: u64,
        max_object_bytes: u64,
        health: Arc<DiskHealth>,
    ) -> DiskIndex {
        // As in memory: quick_cache splits the budget between shards and
        // never admits an object heavier than one shard's share.
        let per_shard_floor = max_object_bytes.saturating_mul(4).max(1);
        let shards = (max_bytes / per_shard_floor).clamp(1, 64);
        let shards = 1 << shards.ilog2();
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .weight_capacity(max_bytes.max(1))
            .estimated_items_capacity((max_bytes / TYPICAL_DISK_BYTES).clamp(64, 1 << 20) as usize)
            .build();
        // The builder only fails for a zero or missing capacity, and both
        // are set above, at least 1.
        #[allow(clippy::expect_used)]
        let options = options.expect("index options are complete");
        DiskIndex {
            layout,
            entries: Entries::with_options(
                options,
                BlockWeighter,
                quick_cache::DefaultHashBuilder::default(),
                CollectEvicted,
            ),
            changes: Mutex::new(Tombstones::default()),
            health,
            rebuilt: AtomicBool::new(false),
            tags_of: no_tags,
        }
    }

    /// The same index, reading tags from records with `tags_of`.
    pub fn with_tags_of(mut self, tags_of: TagsOf) -> DiskIndex {
        self.tags_of = tags_of;
        self
    }

    /// The purge tags of a record's metadata.
    pub fn tags_of(&self, meta: &[u8]) -> Option<Box<[String]>> {
        (self.tags_of)(meta)
    }

    fn changes(&self) -> MutexGuard<'_, Tombstones> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Objects indexed.
    pub fn objects(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of files indexed, in whole blocks.
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// Indexes `key` with a file of `disk_bytes`, and deletes the files of
    /// what that evicts. The caller holds `changes`.
    fn insert(&self, key: HashBinary, disk_bytes: u64, tags: Box<[String]>) {
        let entry = Arc::new(DiskEntry {
            disk_bytes,
            hits: AtomicU32::new(0),
            tags,
        });
        let mut evicted = Vec::new();
        self.entries
            .insert_with_lifecycle(key, entry.clone(), &mut evicted);
        for (evicted_key, evicted_entry) in evicted {
            // quick_cache reports the entry a newer one of the same key
            // replaced as evicted too; its file is already the new file
            // (renamed over it), which must stay.
            if evicted_key == key && !Arc::ptr_eq(&evicted_entry, &entry) {
                continue;
            }
            self.health.evictions.fetch_add(1, Ordering::Relaxed);
            self.delete_file(&evicted_key);
        }
    }

    /// Deletes `key`'s file; one already gone is no failure.
    fn delete_file(&self, key: &HashBinary) {
        match fs::remove_file(self.layout.object_path(key)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.health.failed("delete", &e),
        }
    }

    /// Names a record the writer prepared and indexes it, unless a purge of
    /// its key or of one of its `tags` was queued after it (`sequence` is
    /// its place in the queue): then it is dropped, and returns false.
    pub fn admit(
        &self,
        key: HashBinary,
        pending: Pending,
        tags: Box<[String]>,
        sequence: u64,
    ) -> io::Result<bool> {
        let tombstones = self.changes();
        if tombstones.stop_write(&key, &tags, sequence) {
            return Ok(false);
        }
        let disk_bytes = pending.disk_bytes();
        pending.persist(&self.layout, &key)?;
        self.insert(key, disk_bytes, tags);
        drop(tombstones);
        Ok(true)
    }

    /// Whether `key` is indexed (without counting a hit).
    pub fn holds(&self, key: &HashBinary) -> bool {
        self.entries.peek(key).is_some()
    }

    /// Purges `key` at once: no lookup finds it from now on, and no write
    /// queued before `sequence` lands. Its file is deleted by
    /// [`DiskIndex::purge_applied`], in queue order.
    pub fn purge(&self, key: HashBinary, sequence: u64) {
        let mut tombstones = self.changes();
        tombstones.purge_key(key, sequence);
        self.entries.remove(&key);
    }

    /// Deletes the file of a key purged at `sequence`; the purge is then
    /// complete.
    pub fn purge_applied(&self, key: HashBinary, sequence: u64) {
        let mut tombstones = self.changes();
        self.delete_file(&key);
        tombstones.key_applied(&key, sequence);
    }

    /// Purges every object tagged `tag` at once, as [`DiskIndex::purge`]
    /// does one key; returns their keys, whose files
    /// [`DiskIndex::purge_tag_applied`] deletes. A scan of the index:
    /// purges by tag are rare next to lookups, and a tag index would cost
    /// memory for every object on disk.
    pub fn purge_tag(&self, tag: &str, sequence: u64) -> Vec<HashBinary> {
        let mut tombstones = self.changes();
        tombstones.purge_tag(tag.to_owned(), sequence);
        let keys: Vec<HashBinary> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.tags.iter().any(|t| t == tag))
            .map(|(key, _)| key)
            .collect();
        for key in &keys {
            self.entries.remove(key);
        }
        keys
    }

    /// Deletes the files of `keys`, purged by `tag` at `sequence`.
    pub fn purge_tag_applied(&self, tag: &str, keys: &[HashBinary], sequence: u64) {
        let mut tombstones = self.changes();
        for key in keys {
            self.delete_file(key);
        }
        tombstones.tag_applied(tag, sequence);
    }

    /// Purges everything at once; returns how many objects were indexed.
    /// Files go with [`DiskIndex::purge_all_applied`].
    pub fn purge_all(&self, sequence: u64) -> usize {
        let mut tombstones = self.changes();
        tombstones.purge_all(sequence);
        let count = self.entries.len();
        self.entries.clear();
        count
    }

    /// Deletes every file not indexed: once the writer has reached the
    /// purge of everything, what is indexed was written after it.
    pub fn purge_all_applied(&self, sequence: u64) {
        let mut tombstones = self.changes();
        let folders = match fs::read_dir(self.layout.objects_dir()) {
            Ok(folders) => folders,
            Err(e) => return self.health.failed("purge", &e),
        };
        for file in folders
            .flatten()
            .filter_map(|folder| fs::read_dir(folder.path()).ok())
            .flatten()
            .flatten()
        {
            let name = file.file_name();
            let key = name.to_str().and_then(layout::parse_hex);
            if !key.is_some_and(|key| self.holds(&key))
                && let Err(e) = fs::remove_file(file.path())
                && e.kind() != io::ErrorKind::NotFound
            {
                self.health.failed("delete", &e);
            }
        }
        tombstones.all_applied(sequence);
    }

    /// Finds `key` on disk: opens its file and checks its header record.
    /// A file that is gone or damaged is a miss, and leaves the index.
    ///
    /// While the start's rebuild runs, a key it has not reached yet is
    /// looked for in its file (checked as the rebuild checks it), so a
    /// restarted edge serves its hot objects at once rather than after the
    /// scan of a large tier.
    pub fn lookup(&self, key: &HashBinary) -> Option<DiskHit> {
        let entry = match self.entries.get(key) {
            Some(entry) => entry,
            None if !self.rebuilt.load(Ordering::Acquire) => {
                let path = self.layout.object_path(key);
                self.rebuild_one(&path, &mut Rebuilt::default());
                self.entries.get(key)?
            }
            None => return None,
        };
        let path = self.layout.object_path(key);
        let checked = File::open(&path).map_err(RecordError::Io).and_then(|file| {
            let (header, meta) = record::read_header(&file)?;
            if header.key != *key {
                return Err(RecordError::Damaged("under another key's name"));
            }
            Ok((file, header, meta))
        });
        match checked {
            Ok((file, header, meta)) => {
                let hits = entry.hits.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                Some(DiskHit {
                    file,
                    header,
                    meta,
                    hits,
                })
            }
            Err(RecordError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(key, &entry);
                None
            }
            Err(RecordError::Io(e)) => {
                self.health.failed("read", &e);
                None
            }
            Err(RecordError::Damaged(why)) => {
                self.health.damaged.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("disk cache: {}: {why}; deleted", path.display());
                let _changes = self.changes();
                // Only if the index still holds what this lookup found: a
                // writer may have named a new, intact file meanwhile.
                if self.forget(key, &entry) {
                    self.delete_file(key);
                }
                None
            }
        }
    }

    /// Removes `key` from the index if it still maps to `entry`.
    fn forget(&self, key: &HashBinary, entry: &Arc<DiskEntry>) -> bool {
        self.entries
            .remove_if(key, |held| Arc::ptr_eq(held, entry))
            .is_some()
    }

    /// Indexes every intact object in the directory, from the files' own
    /// headers, deleting damaged files and files that are not records. Runs
    /// while the tier serves (on a thread of its own for a large tier):
    /// what it has not reached yet is a miss. Objects written or purged
    /// meanwhile win over what it reads. Stops early, with what it found
    /// so far, once `stop` is set (the edge is shutting down).
    pub fn rebuild(&self, stop: &AtomicBool) -> Rebuilt {
        let started = Instant::now();
        let mut rebuilt = Rebuilt::default();
        self.scan(stop, &mut rebuilt);
        self.changes().rebuild_ended();
        self.rebuilt.store(true, Ordering::Release);
        rebuilt.took = started.elapsed();
        let millis = u64::try_from(rebuilt.took.as_millis()).unwrap_or(u64::MAX);
        self.health.rebuild_millis.store(millis, Ordering::Relaxed);
        tracing::info!(
            "disk cache: {} objects found in {:?}, {} damaged files deleted",
            rebuilt.objects,
            rebuilt.took,
            rebuilt.damaged
        );
        rebuilt
    }

    /// Checks and indexes every file in the directory (see
    /// [`DiskIndex::rebuild`]).
    fn scan(&self, stop: &AtomicBool, rebuilt: &mut Rebuilt) {
        let objects = self.layout.objects_dir();
        let folders = match fs::read_dir(&objects) {
            Ok(folders) => folders,
            Err(e) => return self.health.failed("rebuild", &e),
        };
        'folders: for folder in folders.flatten() {
            let files = match fs::read_dir(folder.path()) {
                Ok(files) => files,
                Err(e) => {
                    self.health.failed("rebuild", &e);
                    continue;
                }
            };
            for file in files.flatten() {
                if stop.load(Ordering::Relaxed) {
                    break 'folders;
                }
                self.rebuild_one(&file.path(), rebuilt);
            }
        }
    }

    fn rebuild_one(&self, path: &Path, rebuilt: &mut Rebuilt) {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.health.failed("rebuild", &e),
        };
        let inode = file.metadata().map(|m| m.ino()).ok();
        let name_key = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(layout::parse_hex);
        let checked = match name_key {
            // Something else in the tier's folders: not ours to keep.
            None => Err(RecordError::Damaged("not an object's name")),
            Some(key) => record::read_header(&file).and_then(|(header, meta)| {
                if header.key != key || self.layout.object_path(&key) != path {
                    return Err(RecordError::Damaged("under another key's name"));
                }
                let tags = self
                    .tags_of(&meta)
                    .ok_or(RecordError::Damaged("unreadable metadata"))?;
                Ok((key, header, tags))
            }),
        };
        let tombstones = self.changes();
        // Renamed over since it was opened: the newer file is the writer's,
        // already indexed (or purged) by it.
        if fs::metadata(path).map(|m| m.ino()).ok() != inode {
            return;
        }
        match checked {
            Ok((key, header, tags)) => {
                // Purged meanwhile, or already indexed by a newer write.
                if tombstones.holds_key(&key) || self.holds(&key) {
                    return;
                }
                // Purged by tag, or with everything, since the start: the
                // purge knew only indexed files, so this one goes here.
                if tombstones.stop_rebuild(&tags) {
                    return self.delete_file(&key);
                }
                let disk_bytes = record::disk_bytes(header.meta_len, header.body_len);
                self.insert(key, disk_bytes, tags);
                rebuilt.objects += 1;
            }
            Err(RecordError::Io(e)) => self.health.failed("rebuild", &e),
            Err(RecordError::Damaged(why)) => {
                tracing::warn!("disk cache: {}: {why}; deleted", path.display());
                rebuilt.damaged += 1;
                self.health.damaged.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = fs::remove_file(path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    self.health.failed("delete", &e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
