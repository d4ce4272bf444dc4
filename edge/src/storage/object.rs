//! A stored object: its metadata kept parsed, its body, what it weighs,
//! and the reader hits use.

use super::*;

/// Bytes charged per object on top of its body and headers: the key, the
/// `Arc`s and structs, the header map's own allocations and quick_cache's
/// bookkeeping. Measured (filling a 16 MiB cache with twice its budget of
/// 1 KiB objects): without it the process held about 20 % more than the
/// budget; with it, within the 10 % the budget promises.
pub(super) const OBJECT_OVERHEAD_BYTES: usize = 1024;

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

/// A complete response: its metadata, its body, and the purge tags its
/// headers gave it.
pub(super) struct StoredObject {
    pub(super) meta: Arc<StoredMeta>,
    pub(super) body: Bytes,
    pub(super) tags: Box<[String]>,
    /// When this edge received the response, or last had it confirmed by
    /// the origin (a 304): see [`received_at`].
    pub(super) received: SystemTime,
    /// The URL's primary key, when this is a variant stored in a slot of
    /// its own.
    pub(super) primary: Option<HashBinary>,
}

impl StoredObject {
    pub(super) fn weight(&self) -> usize {
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
pub(super) struct StoredMeta {
    pub(super) fresh_until: SystemTime,
    pub(super) created: SystemTime,
    pub(super) updated: SystemTime,
    pub(super) epoch_override: Option<SystemTime>,
    pub(super) stale_while_revalidate_sec: u32,
    pub(super) stale_if_error_sec: u32,
    pub(super) variance: Option<HashBinary>,
    pub(super) header: ResponseHeader,
    /// Bytes of header names and values, for the cache's weight.
    pub(super) header_bytes: usize,
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
pub(super) fn compact_header(header: &ResponseHeader) -> ResponseHeader {
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
pub(super) const HEADER_FIELD_OVERHEAD_BYTES: usize = 128;

impl StoredMeta {
    pub(super) fn from_meta(meta: &CacheMeta) -> Self {
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

    pub(super) fn to_meta(&self) -> CacheMeta {
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

    pub(super) fn weight(&self) -> usize {
        self.header_bytes + std::mem::size_of::<Self>()
    }
}

#[derive(Clone)]
pub(super) struct ObjectWeighter;

impl quick_cache::Weighter<HashBinary, Arc<StoredObject>> for ObjectWeighter {
    fn weight(&self, _key: &HashBinary, object: &Arc<StoredObject>) -> u64 {
        object.weight() as u64
    }
}

/// Serves a stored object's body as zero-copy slices; seekable for Range.
pub(super) struct ObjectReader {
    pub(super) body: Bytes,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) done: bool,
    pub(super) received: SystemTime,
}

impl ObjectReader {
    pub(super) fn new(body: Bytes, received: SystemTime) -> Self {
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
