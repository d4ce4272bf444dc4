use super::*;

/// A tier in a temporary directory: the directory, its layout, health.
struct Tier {
    dir: tempfile::TempDir,
    layout: Arc<Layout>,
    health: Arc<DiskHealth>,
}

impl Tier {
    fn new() -> Tier {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Arc::new(Layout::open(dir.path()).expect("opens"));
        Tier {
            dir,
            layout,
            health: Arc::default(),
        }
    }

    fn index(&self, max_bytes: u64) -> DiskIndex {
        DiskIndex::new(self.layout.clone(), max_bytes, 1 << 20, self.health.clone())
    }

    /// Object files on disk right now.
    fn files(&self) -> usize {
        fs::read_dir(self.layout.objects_dir())
            .expect("objects")
            .flatten()
            .map(|folder| fs::read_dir(folder.path()).expect("folder").count())
            .sum()
    }
}

fn key(i: u32) -> HashBinary {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&i.to_be_bytes());
    key[15] = 0x5a;
    key
}

fn body(i: u32, len: usize) -> Vec<Bytes> {
    vec![Bytes::from(vec![i as u8; len])]
}

/// A tier, and an index over it with room for 1 GiB.
fn roomy() -> (Tier, DiskIndex) {
    let tier = Tier::new();
    let index = tier.index(1 << 30);
    (tier, index)
}

/// Writes object `i` through the index, as the writer does.
fn store(tier: &Tier, index: &DiskIndex, i: u32, len: usize, sequence: u64) -> bool {
    let meta = format!("head {i}");
    let pending =
        record::prepare(&tier.layout, &key(i), meta.as_bytes(), &body(i, len)).expect("prepares");
    index
        .admit(key(i), pending, Box::default(), sequence)
        .expect("names")
}

fn body_of(hit: &DiskHit) -> Vec<u8> {
    let mut out = vec![0u8; hit.header.body_len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&hit.file, &mut out, hit.header.body_offset)
        .expect("reads");
    out
}

#[test]
fn a_stored_object_is_found_with_its_head_and_body() {
    let (tier, index) = roomy();
    assert!(store(&tier, &index, 1, 100_000, 0));
    let hit = index.lookup(&key(1)).expect("a hit");
    assert_eq!(hit.meta, b"head 1");
    assert_eq!(body_of(&hit), vec![1u8; 100_000]);
    assert_eq!(hit.hits, 1);
    assert_eq!(index.lookup(&key(1)).expect("a hit").hits, 2);
    assert_eq!(index.objects(), 1);
    assert_eq!(index.bytes(), record::disk_bytes(6, 100_000));
    assert!(index.lookup(&key(2)).is_none());
}

#[test]
fn a_rewrite_of_a_stored_key_keeps_its_new_file() {
    let tier = Tier::new();
    let index = tier.index(1 << 30);
    assert!(store(&tier, &index, 1, 100_000, 0));
    // A refill of the same object, renamed over the first file.
    assert!(store(&tier, &index, 1, 100_000, 1));
    assert_eq!(tier.files(), 1, "the new file is kept");
    assert!(index.lookup(&key(1)).is_some());
    assert_eq!(tier.health.evictions.load(Ordering::Relaxed), 0);
}

#[test]
fn the_budget_holds_and_evicted_files_are_deleted() {
    let tier = Tier::new();
    // Room for ten objects of 100 KiB (26 blocks each on disk, head included).
    let each = record::disk_bytes(8, 100 * 1024);
    let index = tier.index(10 * each);
    for i in 0..50 {
        store(&tier, &index, i, 100 * 1024, u64::from(i));
        assert!(index.bytes() <= 10 * each, "over budget after {i}");
    }
    assert!(index.objects() <= 10 && index.objects() > 0);
    // Every file on disk is indexed and no other: evictions deleted theirs.
    assert_eq!(tier.files(), index.objects());
    assert_eq!(
        tier.health.evictions.load(Ordering::Relaxed),
        50 - index.objects() as u64
    );
}

#[test]
fn a_rebuild_finds_every_intact_object_again() {
    let (tier, index) = roomy();
    for i in 0..40 {
        store(&tier, &index, i, 40_000 + i as usize, 0);
    }
    drop(index);
    let restarted = tier.index(1 << 30);
    assert_eq!(restarted.objects(), 0, "nothing indexed before the rebuild");
    let rebuilt = restarted.rebuild(&AtomicBool::new(false));
    assert_eq!((rebuilt.objects, rebuilt.damaged), (40, 0));
    for i in 0..40 {
        let hit = restarted.lookup(&key(i)).expect("found again");
        assert_eq!(body_of(&hit), vec![i as u8; 40_000 + i as usize]);
    }
}

#[test]
fn a_rebuild_deletes_torn_misnamed_and_foreign_files() {
    let (tier, index) = roomy();
    for i in 0..4 {
        store(&tier, &index, i, 50_000, 0);
    }
    drop(index);
    // Torn: cut short.
    let torn = tier.layout.object_path(&key(0));
    let whole = fs::read(&torn).expect("reads");
    fs::write(&torn, &whole[..whole.len() - 1000]).expect("writes");
    // Misnamed: object 2's record under object 1's name.
    fs::copy(
        tier.layout.object_path(&key(2)),
        tier.layout.object_path(&key(1)),
    )
    .expect("copies");
    // Foreign: not an object's name at all.
    let foreign = tier.layout.objects_dir().join("00").join("notes.txt");
    fs::write(&foreign, b"hello").expect("writes");

    let restarted = tier.index(1 << 30);
    let rebuilt = restarted.rebuild(&AtomicBool::new(false));
    assert_eq!((rebuilt.objects, rebuilt.damaged), (2, 3));
    assert!(!torn.exists() && !foreign.exists());
    assert!(!tier.layout.object_path(&key(1)).exists());
    assert!(restarted.lookup(&key(0)).is_none());
    assert!(restarted.lookup(&key(1)).is_none());
    assert_eq!(
        body_of(&restarted.lookup(&key(2)).expect("intact")),
        vec![2u8; 50_000]
    );
    assert_eq!(tier.health.damaged.load(Ordering::Relaxed), 3);
    assert_eq!(tier.files(), 2);
}

#[test]
fn a_rebuild_over_a_smaller_budget_evicts_down_to_it() {
    let (tier, index) = roomy();
    for i in 0..30 {
        store(&tier, &index, i, 20_000, 0);
    }
    drop(index);
    let each = record::disk_bytes(8, 20_000);
    let smaller = tier.index(10 * each);
    smaller.rebuild(&AtomicBool::new(false));
    assert!(smaller.bytes() <= 10 * each);
    assert_eq!(tier.files(), smaller.objects());
}

#[test]
fn a_file_changed_after_it_was_indexed_is_a_miss_and_deleted() {
    let (tier, index) = roomy();
    store(&tier, &index, 7, 10_000, 0);
    let path = tier.layout.object_path(&key(7));
    let mut bytes = fs::read(&path).expect("reads");
    bytes[30] ^= 1;
    fs::write(&path, &bytes).expect("writes");
    assert!(index.lookup(&key(7)).is_none());
    assert!(!path.exists());
    assert_eq!(index.objects(), 0);
    assert_eq!(tier.health.damaged.load(Ordering::Relaxed), 1);
}

#[test]
fn a_file_deleted_behind_the_index_is_a_miss_and_forgotten() {
    let (tier, index) = roomy();
    store(&tier, &index, 8, 10_000, 0);
    fs::remove_file(tier.layout.object_path(&key(8))).expect("deletes");
    assert!(index.lookup(&key(8)).is_none());
    assert_eq!(index.objects(), 0);
    assert_eq!(tier.health.errors.load(Ordering::Relaxed), 0);
}

#[test]
fn a_write_queued_before_a_purge_does_not_land_but_one_after_does() {
    let (tier, index) = roomy();
    store(&tier, &index, 1, 1000, 0);
    // Purged at sequence 5: gone at once, though the file is still there.
    index.purge(key(1), 5);
    assert!(index.lookup(&key(1)).is_none());
    // A write queued at 4 (before the purge) is refused...
    assert!(!store(&tier, &index, 1, 2000, 4));
    assert!(index.lookup(&key(1)).is_none());
    // ...the purge deletes the file...
    index.purge_applied(key(1), 5);
    assert!(!tier.layout.object_path(&key(1)).exists());
    // ...and a write queued after it lands.
    assert!(store(&tier, &index, 1, 3000, 6));
    assert_eq!(body_of(&index.lookup(&key(1)).expect("new")).len(), 3000);
}

#[test]
fn a_rebuild_does_not_bring_back_an_object_purged_meanwhile() {
    let (tier, index) = roomy();
    store(&tier, &index, 1, 1000, 0);
    store(&tier, &index, 2, 1000, 0);
    drop(index);
    let restarted = tier.index(1 << 30);
    restarted.purge(key(1), 1);
    restarted.rebuild(&AtomicBool::new(false));
    assert!(restarted.lookup(&key(1)).is_none());
    assert!(restarted.lookup(&key(2)).is_some());
}

#[test]
fn a_rebuild_of_a_vanished_directory_counts_the_failure() {
    let (tier, index) = roomy();
    fs::remove_dir_all(tier.dir.path().join("v1").join("objects")).expect("removes");
    assert_eq!(index.rebuild(&AtomicBool::new(false)).objects, 0);
    assert!(tier.health.failing().is_some());
}

#[test]
fn a_large_body_is_the_file_s_pages_and_a_small_one_is_read() {
    let (tier, index) = roomy();
    store(&tier, &index, 1, 100_000, 0);
    store(&tier, &index, 2, 100, 0);
    let large = index.lookup(&key(1)).expect("a hit");
    let offset = large.header.body_offset;
    let body = large.into_body().expect("a body");
    assert_eq!(body, vec![1u8; 100_000]);
    if zero_copy::ENABLED {
        // Sendfile would send it from the file, where the body starts.
        let footprint = zero_copy::footprint(&body).expect("mapped, not on the heap");
        assert_eq!(footprint, 100_000usize.next_multiple_of(4096));
        assert_eq!(offset, record::BLOCK_BYTES);
    }
    let small = index
        .lookup(&key(2))
        .expect("a hit")
        .into_body()
        .expect("a body");
    assert_eq!(small, vec![2u8; 100]);
    assert!(zero_copy::footprint(&small).is_none());
}

#[test]
fn before_the_rebuild_ends_a_lookup_checks_the_object_s_file_itself() {
    let (tier, written) = roomy();
    store(&tier, &written, 1, 50_000, 0);
    store(&tier, &written, 2, 50_000, 0);
    // A damaged file is a miss, and deleted, as the rebuild would.
    let damaged = tier.layout.object_path(&key(2));
    let mut bytes = fs::read(&damaged).expect("reads");
    bytes[30] ^= 1;
    fs::write(&damaged, &bytes).expect("writes");

    // A restarted edge's index, its rebuild not run yet.
    let restarted = tier.index(1 << 30);
    assert_eq!(restarted.objects(), 0);
    let hit = restarted.lookup(&key(1)).expect("found in its file");
    assert_eq!(body_of(&hit), vec![1u8; 50_000]);
    assert_eq!(restarted.objects(), 1, "and indexed");
    assert!(restarted.lookup(&key(2)).is_none());
    assert!(!damaged.exists());
    assert!(restarted.lookup(&key(3)).is_none(), "never written");

    // Once the rebuild has ended, the index alone answers.
    restarted.rebuild(&AtomicBool::new(false));
    store(&tier, &written, 4, 1000, 0);
    assert!(
        restarted.lookup(&key(4)).is_none(),
        "not this index's write"
    );
}
