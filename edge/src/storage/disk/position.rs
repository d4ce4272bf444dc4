//! The last purge of the cluster bus applied to this disk tier, kept next to
//! its objects. An edge without a disk starts a new consumer position on the
//! bus (it has nothing purges made while it was down could apply to); an
//! edge with one must resume after the last purge it applied, or objects
//! purged while it was down would be served again from its disk.

use super::layout::Layout;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

fn path(layout: &Layout) -> PathBuf {
    layout.root().join("purge-sequence")
}

/// The stored sequence, if one was stored and reads as one. A damaged file
/// reads as none: the consumer then starts from the bus's own rule for a
/// new edge (a replay of recent purges), which errs towards purging more.
pub fn load(layout: &Layout) -> io::Result<Option<u64>> {
    match fs::read_to_string(path(layout)) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `sequence` atomically (a temporary file renamed over the old
/// one), so a crash leaves the old value or the new, never a mix.
///
/// Call it only once the purge is applied to the disk tier, i.e. after the
/// writer has handled it: storing it earlier would skip the purge on replay
/// if the edge died in between.
pub fn store(layout: &Layout, sequence: u64) -> io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(layout.tmp_dir())?;
    writeln!(tmp, "{sequence}")?;
    tmp.as_file().sync_data()?;
    tmp.persist(path(layout)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_sequence_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::open(dir.path()).expect("opens");
        assert_eq!(load(&layout).expect("reads"), None);
        store(&layout, 41).expect("stores");
        store(&layout, 42).expect("stores");
        drop(layout);
        let layout = Layout::open(dir.path()).expect("opens again");
        assert_eq!(load(&layout).expect("reads"), Some(42));
    }

    #[test]
    fn a_damaged_sequence_reads_as_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::open(dir.path()).expect("opens");
        fs::write(path(&layout), "4x2").expect("writes");
        assert_eq!(load(&layout).expect("reads"), None);
    }
}
