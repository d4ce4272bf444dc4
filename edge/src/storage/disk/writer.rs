//! The disk tier's one writer: a thread fed through a queue bounded in
//! objects and in bytes, so that requests never wait for the disk.
//!
//! A request (or the memory tier evicting) only offers an object: if the
//! queue is full the object is simply not written, and that is counted, as
//! a slow or failing disk must cost hit ratio, never latency. Purges travel
//! the same queue, so they apply in order with the writes, and are never
//! dropped (they carry no body, and a dropped purge would serve stale
//! objects). Each job gets its place in the queue (a sequence) under the
//! same lock it is sent under, so sequence order is queue order; that is
//! what lets a purge stop the writes queued before it (see
//! [`DiskIndex::purge`]).
//!
//! A thread rather than a tokio blocking task: the edge's runtimes are
//! Pingora's, one per service, and the writer must outlive any of them and
//! be joined at shutdown so queued objects are finished, not torn.

use super::health::DiskHealth;
use super::index::DiskIndex;
use super::layout::Layout;
use super::{position, record};
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// How much may wait to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Objects waiting, at most.
    pub max_objects: usize,
    /// Bytes of metadata and body waiting, at most: what the queue holds in
    /// memory beyond the memory tier's budget.
    pub max_bytes: u64,
    /// Objects larger than this (metadata and body) are never written.
    pub max_object_bytes: u64,
}

/// What became of an object offered to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued: it will be written unless the disk fails or a purge of its
    /// key comes first.
    Queued,
    /// The queue was full: not written (counted as dropped).
    Full,
    /// Larger than the tier takes: not written.
    TooLarge,
}

enum Job {
    Write {
        key: HashBinary,
        meta: Vec<u8>,
        body: Vec<Bytes>,
        bytes: u64,
        sequence: u64,
    },
    Purge {
        key: HashBinary,
        sequence: u64,
    },
    PurgeTag {
        tag: String,
        keys: Vec<HashBinary>,
        sequence: u64,
    },
    PurgeAll {
        sequence: u64,
    },
    /// Everything queued before it is applied: store the cluster bus's
    /// purge sequence.
    Applied {
        bus_sequence: u64,
    },
    /// Everything queued before it is applied: say so.
    Flush(SyncSender<()>),
    /// Tests only: wait for a word before going on, so a test can fill the
    /// queue behind it.
    #[cfg(test)]
    Hold(Receiver<()>),
}

/// What the writer thread and the offering side share.
struct Shared {
    index: Arc<DiskIndex>,
    layout: Arc<Layout>,
    health: Arc<DiskHealth>,
    queued_objects: AtomicUsize,
    queued_bytes: AtomicU64,
}

/// The writer: see the module documentation. Dropping it finishes what is
/// queued and joins the thread.
pub struct Writer {
    /// The next job's sequence and the queue, under one lock.
    queue: Mutex<(u64, Option<Sender<Job>>)>,
    shared: Arc<Shared>,
    limits: QueueLimits,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `index`'s directory.
    pub fn start(
        index: Arc<DiskIndex>,
        layout: Arc<Layout>,
        health: Arc<DiskHealth>,
        limits: QueueLimits,
    ) -> std::io::Result<Writer> {
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            index,
            layout,
            health,
            queued_objects: AtomicUsize::new(0),
            queued_bytes: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("disk-cache-writer".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, &receiver)
            })?;
        Ok(Writer {
            queue: Mutex::new((0, Some(sender))),
            shared,
            limits,
            thread: Some(thread),
        })
    }

    /// Sends `job` (made with its sequence) in sequence order. Returns false
    /// once the writer is gone.
    fn send(&self, job: impl FnOnce(u64) -> Job) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let sequence = queue.0;
        queue.0 += 1;
        let job = job(sequence);
        queue
            .1
            .as_ref()
            .is_some_and(|sender| sender.send(job).is_ok())
    }

    /// Offers the object `key` (its serialized metadata and its body) for
    /// writing. Never waits for the disk.
    pub fn offer(&self, key: HashBinary, meta: Vec<u8>, body: Vec<Bytes>) -> Offered {
        let bytes = meta.len() as u64 + body.iter().map(|c| c.len() as u64).sum::<u64>();
        if bytes > self.limits.max_object_bytes || meta.len() > record::MAX_META_BYTES {
            return Offered::TooLarge;
        }
        let shared = &self.shared;
        let objects = shared.queued_objects.fetch_add(1, Ordering::Relaxed);
        let queued = shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if objects >= self.limits.max_objects || queued + bytes > self.limits.max_bytes {
            shared.queued_objects.fetch_sub(1, Ordering::Relaxed);
            shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            shared.health.writes_dropped.fetch_add(1, Ordering::Relaxed);
            return Offered::Full;
        }
        let sent = self.send(|sequence| Job::Write {
            key,
            meta,
            body,
            bytes,
            sequence,
        });
        if !sent {
            shared.queued_objects.fetch_sub(1, Ordering::Relaxed);
            shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            shared.health.writes_dropped.fetch_add(1, Ordering::Relaxed);
            return Offered::Full;
        }
        Offered::Queued
    }

    /// Purges `key`: from now on no lookup finds it and no write queued
    /// before lands; its file is deleted in queue order.
    pub fn purge(&self, key: HashBinary) {
        self.send(|sequence| {
            // Under the queue's lock, so the tombstone's sequence is the
            // purge's place in the queue.
            self.shared.index.purge(key, sequence);
            Job::Purge { key, sequence }
        });
    }

    /// Purges every object tagged `tag`, as [`Writer::purge`] one key;
    /// returns the keys that were indexed.
    pub fn purge_tag(&self, tag: &str) -> Vec<HashBinary> {
        let mut purged = Vec::new();
        self.send(|sequence| {
            let keys = self.shared.index.purge_tag(tag, sequence);
            purged.clone_from(&keys);
            Job::PurgeTag {
                tag: tag.to_owned(),
                keys,
                sequence,
            }
        });
        purged
    }

    /// Purges everything, as [`Writer::purge`] one key; returns how many
    /// objects were indexed.
    pub fn purge_all(&self) -> usize {
        let mut count = 0;
        self.send(|sequence| {
            count = self.shared.index.purge_all(sequence);
            Job::PurgeAll { sequence }
        });
        count
    }

    /// Stores `bus_sequence` as the last purge of the cluster bus applied,
    /// once everything queued before (the purges it made) is applied.
    pub fn applied(&self, bus_sequence: u64) {
        self.send(|_| Job::Applied { bus_sequence });
    }

    /// Waits until everything queued so far is applied.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.send(|_| Job::Flush(done)) {
            // An error means the writer thread is gone: nothing to wait for.
            let _ = wait.recv();
        }
    }

    /// Waits until everything queued so far is applied, for at most
    /// `limit` (a disk that hangs must not hold a stopping edge forever);
    /// whether it was.
    pub fn flush_within(&self, limit: std::time::Duration) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(|_| Job::Flush(done)) && wait.recv_timeout(limit).is_ok()
    }

    /// Objects waiting to be written.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.shared.queued_objects.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn hold(&self) -> SyncSender<()> {
        let (release, wait) = mpsc::sync_channel(1);
        self.send(|_| Job::Hold(wait));
        release
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has applied what is in it.
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("disk cache writer panicked");
        }
    }
}

/// The most jobs applied in one batch: writes of a batch are prepared
/// before any is made durable, so the disk sees them together.
const MAX_BATCH: usize = 64;

fn run(shared: &Shared, jobs: &Receiver<Job>) {
    // Whatever queued while the last batch was being applied is the next
    // batch.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        apply(shared, batch);
    }
}

/// A write prepared in a temporary file, waiting for its batch's commit.
struct Staged {
    key: HashBinary,
    pending: record::Pending,
    tags: Box<[String]>,
    bytes: u64,
    sequence: u64,
}

/// Applies a batch in queue order: writes are prepared as they come and
/// committed together before any other job (a purge, a stored sequence, a
/// flush) that must see them done.
fn apply(shared: &Shared, batch: Vec<Job>) {
    let mut staged = Vec::new();
    for job in batch {
        let (key, meta, body, bytes, sequence) = match job {
            Job::Write {
                key,
                meta,
                body,
                bytes,
                sequence,
            } => (key, meta, body, bytes, sequence),
            other => {
                commit(shared, std::mem::take(&mut staged));
                apply_other(shared, other);
                continue;
            }
        };
        let Some(tags) = shared.index.tags_of(&meta) else {
            // The memory tier wrote this metadata: unreadable is a defect
            // there, and the object is simply not kept.
            shared.health.failed("write", &"unreadable metadata");
            dequeue(shared, bytes);
            continue;
        };
        match record::prepare(&shared.layout, &key, &meta, &body) {
            Ok(pending) => staged.push(Staged {
                key,
                pending,
                tags,
                bytes,
                sequence,
            }),
            Err(e) => {
                shared.health.failed("write", &e);
                dequeue(shared, bytes);
            }
        }
    }
    commit(shared, staged);
}

/// Makes the staged writes durable, then names and indexes them.
fn commit(shared: &Shared, staged: Vec<Staged>) {
    let pending: Vec<&record::Pending> = staged.iter().map(|s| &s.pending).collect();
    let durable = record::make_durable(&pending);
    for write in staged {
        let admitted = durable
            .as_ref()
            .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
            .and_then(|()| {
                shared
                    .index
                    .admit(write.key, write.pending, write.tags, write.sequence)
            });
        match admitted {
            Ok(true) => {
                shared.health.writes.fetch_add(1, Ordering::Relaxed);
                shared.health.succeeded();
            }
            // Purged after it was queued: rightly not written.
            Ok(false) => {}
            Err(e) => shared.health.failed("write", &e),
        }
        dequeue(shared, write.bytes);
    }
}

/// One queued write is done with: room for another.
fn dequeue(shared: &Shared, bytes: u64) {
    shared.queued_objects.fetch_sub(1, Ordering::Relaxed);
    shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
}

fn apply_other(shared: &Shared, job: Job) {
    match job {
        // Handled by `apply`.
        Job::Write { .. } => {}
        Job::Purge { key, sequence } => shared.index.purge_applied(key, sequence),
        Job::PurgeTag {
            tag,
            keys,
            sequence,
        } => shared.index.purge_tag_applied(&tag, &keys, sequence),
        Job::PurgeAll { sequence } => shared.index.purge_all_applied(sequence),
        Job::Applied { bus_sequence } => {
            if let Err(e) = position::store(&shared.layout, bus_sequence) {
                shared.health.failed("store purge sequence", &e);
            }
        }
        Job::Flush(done) => {
            let _ = done.send(());
        }
        #[cfg(test)]
        Job::Hold(wait) => {
            let _ = wait.recv();
        }
    }
}

#[cfg(test)]
mod tests;
