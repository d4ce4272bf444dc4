//! Fills: responses being written, readable while they are written, and
//! committed as objects when complete.

use super::*;

/// A response being written: its metadata, the body chunks so far, and a
/// watch channel that wakes readers when chunks arrive.
pub(super) struct Fill {
    pub(super) id: u64,
    pub(super) meta: Arc<StoredMeta>,
    pub(super) tags: Box<[String]>,
    pub(super) chunks: Mutex<Vec<Bytes>>,
    pub(super) state: watch::Sender<FillState>,
    /// Set by a purge: the write must not be committed when it finishes.
    pub(super) purged: AtomicBool,
    /// Set by a soft purge: the write is committed already stale.
    pub(super) stale_on_commit: AtomicBool,
    /// When the response began to arrive.
    pub(super) received: SystemTime,
    /// The URL's primary key, when this is a variant in a slot of its own.
    pub(super) primary: Option<HashBinary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FillState {
    /// `chunks` chunks are readable, more may come.
    Writing { chunks: usize },
    /// All `chunks` chunks are written: the body is complete.
    Complete { chunks: usize },
    /// The write was abandoned; the body is incomplete.
    Failed,
}

impl Fill {
    pub(super) fn new(
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

    pub(super) fn reader(self: &Arc<Self>) -> Result<(CacheMeta, HitHandler)> {
        let meta = self.meta.to_meta();
        let reader = FillReader {
            fill: self.clone(),
            state: self.state.subscribe(),
            next_chunk: 0,
        };
        Ok((meta, Box::new(reader)))
    }

    pub(super) fn chunk(&self, index: usize) -> Option<Bytes> {
        let chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        chunks.get(index).cloned()
    }
}

/// Streams a fill's body as it is written.
pub(super) struct FillReader {
    pub(super) fill: Arc<Fill>,
    pub(super) state: watch::Receiver<FillState>,
    pub(super) next_chunk: usize,
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
pub(super) struct FillWriter {
    pub(super) storage: &'static MemoryStorage,
    pub(super) key: HashBinary,
    pub(super) fill: Arc<Fill>,
    pub(super) tag: U64WriteId,
    pub(super) written: usize,
    /// The `Content-Length` the origin promised, if any: a body of any other
    /// length is truncated (or padded) and must never be stored.
    pub(super) expected_len: Option<usize>,
    pub(super) finished: bool,
}

impl FillWriter {
    pub(super) fn fail(&mut self, reason: String) -> Box<Error> {
        self.abandon();
        storage_error("cache write", reason)
    }

    /// Gives the write up: readers see an error, nothing is stored, and it
    /// is counted (a client that got this response's head was told
    /// `stored`; it gets an aborted body, and this count says so).
    pub(super) fn abandon(&mut self) {
        self.finished = true;
        self.fill.state.send_replace(FillState::Failed);
        self.storage.remove_fill(&self.key, self.fill.id);
        self.storage.abandoned_fills.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn complete(&mut self) -> Result<()> {
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
