//! The disk tier of the edge cache (issue #17): objects the memory tier
//! evicted, or that are too large for it, kept in files so that a catalogue
//! larger than memory is still mostly hits and a restart keeps the cache.
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
//! **Writes.** Written to a temporary file in `tmp/`, `fsync`ed, then
//! renamed over the object's name. A crash (or `kill -9`, or a full disk)
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

pub(crate) mod health;
pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod position;
pub(crate) mod record;
pub(crate) mod writer;
