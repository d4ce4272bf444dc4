//! The disk tier as a whole: restarts on the same directory.

use super::*;
use bytes::Bytes;
use std::os::unix::fs::FileExt;

fn settings(path: &std::path::Path) -> DiskSettings {
    DiskSettings {
        path: path.to_owned(),
        max_bytes: 1 << 30,
        queue: QueueLimits {
            max_objects: 1024,
            max_bytes: 64 << 20,
            max_object_bytes: 1 << 20,
        },
    }
}

fn key(i: u32) -> HashBinary {
    let mut key = [0xc3; 16];
    key[..4].copy_from_slice(&i.to_le_bytes());
    key
}

fn body(i: u32) -> Vec<u8> {
    (0..100 * 1024).map(|n| (n as u32 ^ i) as u8).collect()
}

fn read_body(hit: &DiskHit) -> Vec<u8> {
    let mut out = vec![0u8; hit.header.body_len as usize];
    hit.file
        .read_exact_at(&mut out, hit.header.body_offset)
        .expect("reads");
    out
}

#[test]
fn objects_written_before_a_restart_are_served_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tier = DiskTier::open(&settings(dir.path())).expect("opens");
    tier.wait_rebuilt();
    for i in 0..200 {
        let offered = tier.offer(
            key(i),
            format!("head {i}").into_bytes(),
            vec![Bytes::from(body(i))],
        );
        assert_eq!(offered, Offered::Queued);
    }
    tier.flush();
    tier.purge(key(7));
    tier.purges_applied_up_to(99);
    tier.flush();
    let before = tier.stats();
    assert_eq!(
        (before.objects, before.writes, before.errors),
        (199, 200, 0)
    );
    drop(tier);

    let tier = DiskTier::open(&settings(dir.path())).expect("opens again");
    assert_eq!(tier.purge_sequence(), Some(99));
    let rebuilt = tier.wait_rebuilt().expect("rebuilt once");
    assert_eq!(rebuilt.objects, 199);
    let after = tier.stats();
    assert_eq!((after.objects, after.bytes), (before.objects, before.bytes));
    assert!(!after.rebuilding);
    assert!(tier.lookup(&key(7)).is_none(), "purged before the restart");
    for i in (0..200).filter(|&i| i != 7) {
        let hit = tier.lookup(&key(i)).expect("found after the restart");
        assert_eq!(hit.meta, format!("head {i}").into_bytes());
        assert_eq!(read_body(&hit), body(i));
    }
}

#[test]
fn a_directory_in_use_or_unusable_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _tier = DiskTier::open(&settings(dir.path())).expect("opens");
    let again = DiskTier::open(&settings(dir.path()));
    assert!(matches!(again, Err(LayoutError::InUse { .. })));
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").expect("writes");
    let err = DiskTier::open(&settings(&file)).err().expect("refused");
    assert!(err.to_string().contains("plain-file"), "{err}");
}
