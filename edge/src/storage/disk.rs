//! The disk tier of the edge cache: every object the memory tier stores
//! (written through, so also those too large for memory), kept in files so
//! that a catalogue larger than memory is still mostly hits and a restart
//! keeps the cache.
//!
//! # Design
//!
//! **Files.** One file per object, under a directory versioned by format
//! (`DIR/v1/`), so that a later format starts from an empty tier instead of
//! misreading this one:
//!
//! ```text
//! DIR/v1/lock                 held (flock) while an edge uses the directory
//! DIR/v1/objects/ab/ab12…ef   one object; named by the hex of its 16-byte
//!                             cache key hash, under 256 fan-out folders
//! DIR/v1/tmp/                 objects being written; emptied at start
//! DIR/v1/purge-sequence       the last purge of the cluster bus applied
//! ```
//!
//! Files rather than extents of a few large files: the filesystem already
//! allocates, frees and caches them; an object's pages are its file's pages,
//! which `sendfile` hands to TCP without a copy; eviction is one `unlink`.
//! The cost (an inode per object, a 4 KiB block rounding) is small next to
//! the 32 KiB and larger bodies the tier is for.
//!
//! **Record.** Each file starts with a header record (see [`record`]): magic
//! and format version, the key, the metadata's and the body's lengths, the
//! body's offset, a checksum of the body, and a BLAKE2b checksum of all of
//! that and the metadata (the serialized response head, tags, times). The
//! body starts at the next 4 KiB boundary, so it can be mapped page by page
//! (the sendfile path recognises bodies by their mapping, as it does sealed
//! memory files) and the head shares its first page with nothing else.
//!
//! **Writes.** Written to a temporary file in `tmp/`, `fdatasync`ed, then
//! renamed over the object's name; the writer takes whatever queued while
//! it was busy (up to 64 jobs) as one batch. (One `syncfs` per batch
//! instead flushes every process's dirty pages on that filesystem, and
//! stalled the writer entirely while builds ran; see
//! [`record::make_durable`]. Whether the writer needs more threads is for
//! the benchmark to decide.) A crash (or `kill -9`, or a full disk)
//! before the rename leaves only a temporary file, which the next start
//! deletes; after it, the whole file is on disk. So a name always holds a
//! whole record, and checking the record (magic, header checksum, file
//! length = body offset + body length) before an object is first served
//! catches the rest (a disk that lost a write, a file changed by hand). The
//! body checksum is not checked on hits (that would read every body into
//! user space); it is there for a scrub and for tests. Files are never
//! changed once named: a newer object is a new file renamed over the old
//! one, so a body `sendfile` is still sending from never changes under it.
//!
//! **Writer queue.** Requests never touch the disk to write. Objects go to
//! one writer thread through a queue bounded in objects and in bytes (see
//! [`writer`]); when it is full the object is simply not written, and that
//! is counted. Purges travel the same queue, in order with the writes, and
//! are never dropped.
//!
//! **Index.** In memory only: a [`quick_cache`] cache from key hash to a
//! small entry, weighed by the file's size in 4 KiB blocks, its capacity the
//! configured disk budget (see [`index`]). Eviction is quick_cache's
//! (S3-FIFO-like), constant work per insert, never a scan; an evicted
//! entry's file is unlinked after the cache's lock is released. At start the
//! index is rebuilt from the files' own headers ([`index::DiskIndex::rebuild`],
//! on a thread of its own for a large tier): until an object's header has
//! been checked it is simply not in the index, a miss, never wrong.
//!
//! **Purges.** A purge removes the key from the index at once (so no later
//! lookup finds it) and leaves a tombstone that stops any write of that key
//! queued before the purge from landing; the writer then unlinks the file.
//! The cluster bus's purge stream is replayed from the sequence stored in
//! `purge-sequence` ([`position`]), so purges made while the edge was down
//! reach its disk.
//!
//! **Hits.** A lookup finds the entry, opens the file, reads and checks the
//! header record (the head is needed to answer anyway), and hands back the
//! open file and where its body lies. The memory tier's sendfile path then
//! sends the body from the file's pages, the response head riding in the
//! first segment as for memory hits; nothing of the body is read into user
//! space. A file that vanished or fails its check is a miss and leaves the
//! index.
//!
//! **Bad disks.** Every failure to write, read or delete is logged (once per
//! change of state, not per object), counted, and leaves the object out of
//! the tier: the edge keeps serving from memory and origins.
//!
//! **Wiring.** The memory tier writes every object through and looks here
//! on a miss; see [`super::tiers`]. The edge's purge feed resumes from
//! [`DiskTier::purge_sequence`] and reports progress with
//! [`DiskTier::purges_applied_up_to`].

pub(crate) mod health;
pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod position;
pub(crate) mod record;
pub(crate) mod tombstones;
pub(crate) mod writer;

use health::DiskHealth;
use index::{DiskHit, DiskIndex, Rebuilt, TagsOf};
use layout::{Layout, LayoutError};
use pingora::cache::key::HashBinary;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use writer::{Offered, QueueLimits, Writer};

/// What the disk tier is given: where, how much, and how much may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSettings {
    /// The cache directory.
    pub path: PathBuf,
    /// The most its object files may occupy, in whole 4 KiB blocks.
    pub max_bytes: u64,
    /// The writer queue's bounds, and the largest object the tier takes.
    pub queue: QueueLimits,
}

impl DiskSettings {
    /// A tier in `path` of `max_bytes`, taking objects up to
    /// `max_object_bytes`, with the writer queue's usual bounds: enough to
    /// absorb a burst of misses, small next to the memory tier (its bodies
    /// are mostly shared with memory anyway).
    pub fn new(path: PathBuf, max_bytes: u64, max_object_bytes: u64) -> DiskSettings {
        DiskSettings {
            path,
            max_bytes,
            queue: QueueLimits {
                max_objects: 1024,
                max_bytes: (32 << 20).max(max_object_bytes),
                max_object_bytes,
            },
        }
    }
}

/// What the disk tier holds and has done, for metrics and `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskStats {
    /// Objects indexed (found at start or written since).
    pub objects: u64,
    /// Bytes their files occupy.
    pub bytes: u64,
    /// Objects written since the start.
    pub writes: u64,
    /// Objects not written because the writer queue was full.
    pub writes_dropped: u64,
    /// Objects evicted to stay within the budget.
    pub evictions: u64,
    /// Damaged files found and deleted.
    pub damaged: u64,
    /// Operations the disk refused.
    pub errors: u64,
    /// Whether the index is still being rebuilt from the directory.
    pub rebuilding: bool,
    /// How long the last rebuild took, in milliseconds.
    pub rebuild_millis: u64,
    /// Why the disk is failing, if it is.
    #[serde(skip)]
    pub failing: Option<String>,
}

/// The disk tier: a locked directory, its index (rebuilt in the
/// background from the start), and its writer. Dropping it stops the
/// rebuild, finishes the queued writes and releases the directory.
pub struct DiskTier {
    layout: Arc<Layout>,
    index: Arc<DiskIndex>,
    health: Arc<DiskHealth>,
    writer: Writer,
    stop_rebuild: Arc<AtomicBool>,
    rebuild: Mutex<Option<JoinHandle<Rebuilt>>>,
    /// The cluster bus's last purge applied here when the tier was opened:
    /// where the edge's purge consumer resumes.
    purge_sequence: Option<u64>,
}

impl DiskTier {
    /// Opens the directory (refusing one another process uses) and starts
    /// serving from it at once: objects are found as the background rebuild
    /// checks them. `tags_of` reads the purge tags out of a record's
    /// metadata.
    pub fn open(settings: &DiskSettings, tags_of: TagsOf) -> Result<DiskTier, LayoutError> {
        let layout = Arc::new(Layout::open(&settings.path)?);
        let io_error = |source| LayoutError::Io {
            path: settings.path.clone(),
            source,
        };
        let purge_sequence = position::load(&layout).map_err(io_error)?;
        let health = Arc::new(DiskHealth::default());
        let index = Arc::new(
            DiskIndex::new(
                layout.clone(),
                settings.max_bytes,
                settings.queue.max_object_bytes,
                health.clone(),
            )
            .with_tags_of(tags_of),
        );
        let writer = Writer::start(
            index.clone(),
            layout.clone(),
            health.clone(),
            settings.queue,
        )
        .map_err(io_error)?;
        let stop_rebuild = Arc::new(AtomicBool::new(false));
        let rebuild = std::thread::Builder::new()
            .name("disk-cache-rebuild".into())
            .spawn({
                let index = index.clone();
                let stop = stop_rebuild.clone();
                move || index.rebuild(&stop)
            })
            .map_err(io_error)?;
        Ok(DiskTier {
            layout,
            index,
            health,
            writer,
            stop_rebuild,
            rebuild: Mutex::new(Some(rebuild)),
            purge_sequence,
        })
    }

    /// The object `key`, if the tier holds it intact. See
    /// [`DiskIndex::lookup`].
    pub fn lookup(&self, key: &HashBinary) -> Option<DiskHit> {
        self.index.lookup(key)
    }

    /// Offers an object for writing; never waits for the disk.
    pub fn offer(&self, key: HashBinary, meta: Vec<u8>, body: Vec<bytes::Bytes>) -> Offered {
        self.writer.offer(key, meta, body)
    }

    /// Purges `key` from the tier (at once for lookups; its file in order).
    pub fn purge(&self, key: HashBinary) {
        self.writer.purge(key);
    }

    /// Purges every object tagged `tag`; the keys it held.
    pub fn purge_tag(&self, tag: &str) -> Vec<HashBinary> {
        self.writer.purge_tag(tag)
    }

    /// Purges everything; how many objects there were.
    pub fn purge_all(&self) -> usize {
        self.writer.purge_all()
    }

    /// Whether the tier holds `key` (without counting a hit).
    pub fn holds(&self, key: &HashBinary) -> bool {
        self.index.holds(key)
    }

    /// Records that the cluster bus's purges up to `bus_sequence` are
    /// applied, once the purges queued before are.
    pub fn purges_applied_up_to(&self, bus_sequence: u64) {
        self.writer.applied(bus_sequence);
    }

    /// The bus's last purge applied here as the tier was opened.
    pub fn purge_sequence(&self) -> Option<u64> {
        self.purge_sequence
    }

    /// Waits for the start's rebuild to end; what it found, the first time.
    pub fn wait_rebuilt(&self) -> Option<Rebuilt> {
        let handle = self
            .rebuild
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        handle.join().ok()
    }

    /// Waits until everything offered or purged so far is applied.
    pub fn flush(&self) {
        self.writer.flush();
    }

    /// [`DiskTier::flush`], for at most `limit`; whether it ended.
    pub fn flush_within(&self, limit: std::time::Duration) -> bool {
        self.writer.flush_within(limit)
    }

    /// Where the tier keeps its files (`DIR/v1`).
    pub fn root(&self) -> &std::path::Path {
        self.layout.root()
    }

    /// Counters and state, for metrics and `status`.
    pub fn stats(&self) -> DiskStats {
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let health = &self.health;
        let rebuilding = self
            .rebuild
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|handle| !handle.is_finished());
        DiskStats {
            objects: self.index.objects() as u64,
            bytes: self.index.bytes(),
            writes: count(&health.writes),
            writes_dropped: count(&health.writes_dropped),
            evictions: count(&health.evictions),
            damaged: count(&health.damaged),
            errors: count(&health.errors),
            rebuilding,
            rebuild_millis: count(&health.rebuild_millis),
            failing: health.failing(),
        }
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        self.stop_rebuild.store(true, Ordering::Relaxed);
        self.wait_rebuilt();
    }
}

#[cfg(test)]
mod tests;
