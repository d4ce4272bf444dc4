use super::object::allocated;
use super::*;
use pingora::cache::key::CompactCacheKey;
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

/// A write of `path`'s response with `meta`.
async fn writer(storage: &'static MemoryStorage, path: &str, meta: &CacheMeta) -> MissHandler {
    storage
        .get_miss_handler(&key(path), meta, &span())
        .await
        .unwrap()
}

/// Writes `data` into `writer`, the end if `eof`.
async fn write(writer: &mut MissHandler, data: &'static [u8], eof: bool) {
    writer
        .write_body(Bytes::from_static(data), eof)
        .await
        .unwrap();
}

/// Purges what is stored under `key`, as an invalidation does.
async fn purge(storage: &'static MemoryStorage, key: &CompactCacheKey) -> PurgeOutcome {
    storage
        .purge(PurgeTarget::Active(key), PurgeType::Invalidation, &span())
        .await
        .unwrap()
}

/// Whether a lookup of `path` finds something (an object or a fill).
async fn has(storage: &'static MemoryStorage, path: &str) -> bool {
    storage.lookup(&key(path), &span()).await.unwrap().is_some()
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
async fn stores_and_serves_an_object() {
    let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
    assert!(!has(storage, "/a").await);
    store(storage, "/a", b"hello world").await;
    let (meta, mut reader) = storage.lookup(&key("/a"), &span()).await.unwrap().unwrap();
    assert_eq!(meta.response_header().status, 200);
    assert_eq!(read_all(&mut reader).await.unwrap(), b"hello world");
    assert_eq!(storage.object_count(), 1);
    assert!(storage.used_bytes() >= 11 + OBJECT_OVERHEAD_BYTES as u64);
}

#[tokio::test]
async fn large_bodies_are_sealed_where_zero_copy_exists_and_weighed_by_their_pages() {
    let storage = leak(MemoryStorage::new(1 << 24, 1 << 20));
    let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    store(storage, "/large", &large).await;
    let object = storage
        .fresh_object(&key("/large").combined_bin(), SystemTime::now())
        .unwrap();
    assert_eq!(object.body, large);
    assert_eq!(
        zero_copy::footprint(&object.body).is_some(),
        zero_copy::ENABLED
    );
    #[cfg(all(target_os = "linux", not(feature = "portable")))]
    weighed_by_pages(storage, &object.body).await;
}

/// Sealed bodies are weighed by the pages they take.
#[cfg(all(target_os = "linux", not(feature = "portable")))]
async fn weighed_by_pages(storage: &'static MemoryStorage, body: &Bytes) {
    // 100,000 bytes take whole pages (25 of 4 KiB), not a heap size class.
    let pages = 100_000usize.next_multiple_of(zero_copy::page_bytes());
    assert_eq!(zero_copy::footprint(body), Some(pages));
    let weight = storage.used_bytes() as usize;
    assert!(
        weight >= pages + OBJECT_OVERHEAD_BYTES && weight < pages + OBJECT_OVERHEAD_BYTES + 4096,
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
    let mut writer = writer(storage, "/s", &meta(Some(6))).await;
    write(&mut writer, b"abc", false).await;
    let (_, mut reader) = storage.lookup(&key("/s"), &span()).await.unwrap().unwrap();
    assert_eq!(reader.read_body().await.unwrap().unwrap(), "abc");
    let rest = tokio::spawn(async move { read_all(&mut reader).await });
    tokio::task::yield_now().await;
    write(&mut writer, b"def", true).await;
    writer.finish().await.unwrap();
    assert_eq!(rest.await.unwrap().unwrap(), b"def");
    // Committed: later lookups get the whole object.
    let (_, mut reader) = storage.lookup(&key("/s"), &span()).await.unwrap().unwrap();
    assert_eq!(read_all(&mut reader).await.unwrap(), b"abcdef");
}

#[tokio::test]
async fn an_abandoned_fill_is_an_error_is_not_stored_and_is_counted() {
    let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
    let mut writer = writer(storage, "/t", &meta(Some(100))).await;
    write(&mut writer, b"partial", false).await;
    let (_, mut reader) = storage.lookup(&key("/t"), &span()).await.unwrap().unwrap();
    drop(writer);
    assert!(read_all(&mut reader).await.is_err());
    assert!(!has(storage, "/t").await);
    assert_eq!(storage.abandoned_fills(), 1);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_not_stored() {
    let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
    let mut writer = writer(storage, "/short", &meta(Some(100))).await;
    assert!(
        writer
            .write_body(Bytes::from_static(b"only this"), true)
            .await
            .is_err()
    );
    assert!(writer.finish().await.is_err());
    assert!(!has(storage, "/short").await);
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
    let mut writer = writer(storage, "/big", &meta(None)).await;
    assert!(
        writer
            .write_body(Bytes::from_static(b"123456789"), false)
            .await
            .is_err()
    );
    drop(writer);
    assert!(!has(storage, "/big").await);
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
    let outcome = purge(storage, &compact).await;
    assert_eq!(outcome, PurgeOutcome::Purged(None));
    assert!(!has(storage, "/p").await);
    let outcome = purge(storage, &compact).await;
    assert_eq!(outcome, PurgeOutcome::NotFound);
}

#[tokio::test]
async fn a_purge_during_a_fill_keeps_it_out() {
    let storage = leak(MemoryStorage::new(1 << 20, 1 << 16));
    let mut writer = writer(storage, "/f", &meta(Some(2))).await;
    let compact = key("/f").to_compact();
    purge(storage, &compact).await;
    write(&mut writer, b"ok", true).await;
    writer.finish().await.unwrap();
    assert!(!has(storage, "/f").await);
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
    write(&mut writer, b"x", true).await;
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
    assert!(!has(storage, "/1").await);
    assert!(!has(storage, "/3").await);
    assert!(has(storage, "/2").await);
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
    let mut writer = writer(storage, "/race", &meta(Some(3))).await;
    write(&mut writer, b"new", true).await;
    let purge = purge_from_the_race_hook(storage, move || {
        storage.purge_key(&key("/race").combined_bin(), false)
    });
    writer.finish().await.unwrap();
    let purge = purge.lock().unwrap().take().expect("the hook ran");
    assert!(purge.join().unwrap(), "the purge found something to purge");
    assert!(
        !has(storage, "/race").await,
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
        !has(storage, "/race").await,
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
    assert!(!has(storage, "/moved").await);
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
    let mut writer = writer(storage, "/soft", &meta(Some(2))).await;
    assert!(storage.purge_key(&key("/soft").combined_bin(), true));
    write(&mut writer, b"ok", true).await;
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
        write(&mut writer, b"x", true).await;
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
