//! The live view's event log: a bounded list of what happened, with
//! times; the oldest entries go first. What counts as an event is the
//! publisher's to say (`meridian up` compares collections; a GeoDNS server
//! its own health view and reloads).

use serde::Serialize;
use std::collections::VecDeque;

/// Entries kept.
pub const KEPT: usize = 200;

/// One entry of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Increases by one per entry, from 1.
    pub id: u64,
    /// When it was seen, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What kind: `health`, `outage`, `restore`, `crash`, `restart`,
    /// `steering`, `geodns`, `purge`, `reload` or `start`.
    pub kind: &'static str,
    /// What happened, in words.
    pub text: String,
}

/// The log.
#[derive(Debug, Default)]
pub struct Log {
    entries: VecDeque<Entry>,
    next_id: u64,
}

impl Log {
    /// The entries, oldest first.
    pub fn entries(&self) -> &VecDeque<Entry> {
        &self.entries
    }

    /// Adds an entry seen at `at_ms`, dropping the oldest if full.
    pub fn push(&mut self, at_ms: u64, kind: &'static str, text: String) {
        self.next_id += 1;
        if self.entries.len() == KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            id: self.next_id,
            at_ms,
            kind,
            text,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_numbered() {
        let mut log = Log::default();
        for i in 0..KEPT as u64 + 10 {
            log.push(i, "health", format!("{i}"));
        }
        assert_eq!(log.entries().len(), KEPT);
        assert_eq!(log.entries().front().unwrap().id, 11);
        assert_eq!(log.entries().back().unwrap().id, KEPT as u64 + 10);
    }
}
