//! Purges the writer has not applied yet, and what they stop.
//!
//! A purge takes effect for lookups at once (its keys leave the index), but
//! its files go in queue order, on the writer thread. Until then two things
//! could bring a purged object back: a write of it queued before the purge
//! (so with a lower sequence), and the start's rebuild, which reads files
//! the purge has not deleted yet. A tombstone stops both. Key tombstones
//! live until their purge is applied; purges by tag and of everything also
//! until the rebuild has ended, as it may still come upon their files.

use pingora::cache::key::HashBinary;
use std::collections::HashMap;

/// A purge's place in the writer queue, and whether the writer applied it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    sequence: u64,
    applied: bool,
}

/// See the module documentation. Guarded by the index's `changes` lock.
#[derive(Debug, Default)]
pub struct Tombstones {
    keys: HashMap<HashBinary, u64>,
    tags: HashMap<String, Mark>,
    all: Option<Mark>,
    rebuild_ended: bool,
}

impl Tombstones {
    /// Whether a write of `key` carrying `tags`, queued at `sequence`, was
    /// purged after it was queued.
    pub fn stop_write(&self, key: &HashBinary, tags: &[String], sequence: u64) -> bool {
        let after = |purged: u64| purged > sequence;
        self.keys.get(key).is_some_and(|&purged| after(purged))
            || self.all.is_some_and(|all| after(all.sequence))
            || tags
                .iter()
                .any(|tag| self.tags.get(tag).is_some_and(|mark| after(mark.sequence)))
    }

    /// Whether the rebuild must not index a file of `key` carrying `tags`
    /// (it must delete it instead, unless `key` has a tombstone of its own,
    /// whose purge deletes it).
    pub fn stop_rebuild(&self, tags: &[String]) -> bool {
        self.all.is_some() || tags.iter().any(|tag| self.tags.contains_key(tag))
    }

    /// Whether `key` has a purge pending.
    pub fn holds_key(&self, key: &HashBinary) -> bool {
        self.keys.contains_key(key)
    }

    pub fn purge_key(&mut self, key: HashBinary, sequence: u64) {
        self.keys.insert(key, sequence);
    }

    pub fn purge_tag(&mut self, tag: String, sequence: u64) {
        let mark = Mark {
            sequence,
            applied: false,
        };
        self.tags.insert(tag, mark);
    }

    pub fn purge_all(&mut self, sequence: u64) {
        self.all = Some(Mark {
            sequence,
            applied: false,
        });
    }

    /// The purge of `key` at `sequence` is applied.
    pub fn key_applied(&mut self, key: &HashBinary, sequence: u64) {
        if self.keys.get(key) == Some(&sequence) {
            self.keys.remove(key);
        }
    }

    /// The purge of `tag` at `sequence` is applied.
    pub fn tag_applied(&mut self, tag: &str, sequence: u64) {
        let rebuild_ended = self.rebuild_ended;
        if let Some(mark) = self.tags.get_mut(tag)
            && mark.sequence == sequence
        {
            mark.applied = true;
            if rebuild_ended {
                self.tags.remove(tag);
            }
        }
    }

    /// The purge of everything at `sequence` is applied.
    pub fn all_applied(&mut self, sequence: u64) {
        if let Some(mark) = self.all.as_mut()
            && mark.sequence == sequence
        {
            mark.applied = true;
            if self.rebuild_ended {
                self.all = None;
            }
        }
    }

    /// The start's rebuild has ended: applied purges need no tombstone now.
    pub fn rebuild_ended(&mut self) {
        self.rebuild_ended = true;
        self.tags.retain(|_, mark| !mark.applied);
        if self.all.is_some_and(|mark| mark.applied) {
            self.all = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_stops_earlier_writes_only() {
        let mut stones = Tombstones::default();
        let tags = ["news".to_owned()];
        stones.purge_key([1; 16], 10);
        assert!(stones.stop_write(&[1; 16], &[], 9));
        assert!(!stones.stop_write(&[1; 16], &[], 11));
        assert!(!stones.stop_write(&[2; 16], &[], 9));
        stones.purge_tag("news".into(), 20);
        assert!(stones.stop_write(&[3; 16], &tags, 19));
        assert!(!stones.stop_write(&[3; 16], &tags, 21));
        stones.purge_all(30);
        assert!(stones.stop_write(&[4; 16], &[], 29));
        assert!(!stones.stop_write(&[4; 16], &[], 31));
    }

    #[test]
    fn tag_and_all_tombstones_outlive_their_purge_until_the_rebuild_ends() {
        let mut stones = Tombstones::default();
        let tags = ["news".to_owned()];
        stones.purge_tag("news".into(), 1);
        stones.purge_all(2);
        stones.tag_applied("news", 1);
        stones.all_applied(2);
        assert!(stones.stop_rebuild(&tags), "rebuild still running");
        stones.rebuild_ended();
        assert!(!stones.stop_rebuild(&tags));
        assert!(!stones.stop_write(&[1; 16], &tags, 0));
        // After the rebuild, an applied purge leaves at once.
        stones.purge_tag("sport".into(), 3);
        stones.tag_applied("sport", 3);
        assert!(!stones.stop_rebuild(&["sport".to_owned()]));
    }

    #[test]
    fn a_newer_purge_of_the_same_tag_keeps_its_tombstone() {
        let mut stones = Tombstones::default();
        stones.rebuild_ended();
        stones.purge_tag("news".into(), 1);
        stones.purge_tag("news".into(), 5);
        stones.tag_applied("news", 1);
        assert!(stones.stop_write(&[1; 16], &["news".to_owned()], 4));
        stones.key_applied(&[9; 16], 1);
        stones.purge_key([9; 16], 7);
        stones.key_applied(&[9; 16], 6);
        assert!(stones.holds_key(&[9; 16]));
    }
}
