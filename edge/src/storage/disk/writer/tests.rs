use super::*;
use std::fs;

struct Tier {
    dir: tempfile::TempDir,
    layout: Arc<Layout>,
    index: Arc<DiskIndex>,
    health: Arc<DiskHealth>,
    writer: Writer,
}

const LIMITS: QueueLimits = QueueLimits {
    max_objects: 4,
    max_bytes: 1 << 20,
    max_object_bytes: 512 * 1024,
};

fn tier(limits: QueueLimits) -> Tier {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = Arc::new(Layout::open(dir.path()).expect("opens"));
    let health = Arc::new(DiskHealth::default());
    let index = Arc::new(DiskIndex::new(
        layout.clone(),
        1 << 30,
        1 << 20,
        health.clone(),
    ));
    let writer =
        Writer::start(index.clone(), layout.clone(), health.clone(), limits).expect("starts");
    Tier {
        dir,
        layout,
        index,
        health,
        writer,
    }
}

fn key(i: u8) -> HashBinary {
    [i; 16]
}

fn offer(tier: &Tier, i: u8, len: usize) -> Offered {
    tier.writer
        .offer(key(i), vec![b'm'; 10], vec![Bytes::from(vec![i; len])])
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn offered_objects_are_written_and_found() {
    let tier = tier(LIMITS);
    for i in 0..3 {
        assert_eq!(offer(&tier, i, 40_000), Offered::Queued);
    }
    tier.writer.flush();
    assert_eq!(tier.writer.queued(), 0);
    for i in 0..3 {
        let hit = tier.index.lookup(&key(i)).expect("written");
        assert_eq!(hit.header.body_len, 40_000);
    }
    assert_eq!(count(&tier.health.writes), 3);
    assert_eq!(count(&tier.health.writes_dropped), 0);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let tier = tier(LIMITS);
    let release = tier.writer.hold();
    for i in 0..4 {
        assert_eq!(offer(&tier, i, 1000), Offered::Queued);
    }
    assert_eq!(offer(&tier, 4, 1000), Offered::Full);
    assert_eq!(offer(&tier, 5, 1000), Offered::Full);
    assert_eq!(count(&tier.health.writes_dropped), 2);
    release.send(()).expect("writer waits");
    tier.writer.flush();
    assert!(tier.index.lookup(&key(3)).is_some());
    assert!(tier.index.lookup(&key(4)).is_none());
    // Room again once written.
    assert_eq!(offer(&tier, 4, 1000), Offered::Queued);
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    let tier = tier(QueueLimits {
        max_bytes: 250_000,
        ..LIMITS
    });
    let release = tier.writer.hold();
    assert_eq!(offer(&tier, 1, 100_000), Offered::Queued);
    assert_eq!(offer(&tier, 2, 100_000), Offered::Queued);
    assert_eq!(offer(&tier, 3, 100_000), Offered::Full);
    assert_eq!(offer(&tier, 4, 10_000), Offered::Queued);
    release.send(()).expect("writer waits");
    tier.writer.flush();
    assert_eq!(count(&tier.health.writes), 3);
}

#[test]
fn an_object_larger_than_the_tier_takes_is_not_offered() {
    let tier = tier(LIMITS);
    assert_eq!(offer(&tier, 1, 600 * 1024), Offered::TooLarge);
    assert_eq!(count(&tier.health.writes_dropped), 0);
}

/// A writer that has written object 1 and is now held (until the word
/// is sent), so a test can queue behind it.
fn written_then_held() -> (Tier, SyncSender<()>) {
    let tier = tier(LIMITS);
    offer(&tier, 1, 1000);
    tier.writer.flush();
    let release = tier.writer.hold();
    (tier, release)
}

#[test]
fn a_purge_stops_writes_queued_before_it_and_deletes_the_file() {
    let (tier, release) = written_then_held();
    offer(&tier, 1, 2000);
    tier.writer.purge(key(1));
    // Gone at once, before the writer has got to it.
    assert!(tier.index.lookup(&key(1)).is_none());
    offer(&tier, 2, 1000);
    release.send(()).expect("writer waits");
    tier.writer.flush();
    assert!(tier.index.lookup(&key(1)).is_none());
    assert!(!tier.layout.object_path(&key(1)).exists());
    assert!(tier.index.lookup(&key(2)).is_some());
    // A write after the purge lands.
    offer(&tier, 1, 3000);
    tier.writer.flush();
    assert_eq!(
        tier.index.lookup(&key(1)).expect("new").header.body_len,
        3000
    );
}

#[test]
fn the_bus_sequence_is_stored_once_the_purges_before_it_are_applied() {
    let (tier, release) = written_then_held();
    tier.writer.purge(key(1));
    tier.writer.applied(17);
    assert_eq!(position::load(&tier.layout).expect("reads"), None);
    release.send(()).expect("writer waits");
    tier.writer.flush();
    assert_eq!(position::load(&tier.layout).expect("reads"), Some(17));
    assert!(!tier.layout.object_path(&key(1)).exists());
}

#[test]
fn a_vanished_disk_is_counted_and_shown_then_recovered_from() {
    let tier = tier(LIMITS);
    let tmp = tier.layout.tmp_dir();
    fs::remove_dir_all(&tmp).expect("removes");
    assert_eq!(offer(&tier, 1, 1000), Offered::Queued);
    tier.writer.flush();
    assert!(tier.index.lookup(&key(1)).is_none());
    assert_eq!(count(&tier.health.errors), 1);
    assert!(tier.health.failing().expect("failing").starts_with("write"));
    fs::create_dir(&tmp).expect("makes");
    offer(&tier, 2, 1000);
    tier.writer.flush();
    assert!(tier.index.lookup(&key(2)).is_some());
    assert_eq!(tier.health.failing(), None);
    assert!(tier.dir.path().exists());
}

#[test]
fn dropping_the_writer_finishes_what_is_queued() {
    let tier = tier(LIMITS);
    for i in 0..4 {
        offer(&tier, i, 20_000);
    }
    let Tier {
        index,
        writer,
        layout,
        ..
    } = tier;
    drop(writer);
    for i in 0..4 {
        assert!(index.lookup(&key(i)).is_some());
        assert!(layout.object_path(&key(i)).exists());
    }
}
