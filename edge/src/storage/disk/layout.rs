//! Where the disk tier keeps what: the versioned root, one file per object
//! under 256 fan-out folders, the temporary folder writes start in, and the
//! lock that keeps two edges from sharing a directory.

use pingora::cache::key::HashBinary;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The format's folder: a later, incompatible format uses another, and so
/// starts from an empty tier instead of misreading this one.
const FORMAT_DIR: &str = "v1";

/// Why a cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The directory could not be made or read.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Another process holds the directory: two writers would delete each
    /// other's files.
    #[error("{path} is in use by another process")]
    InUse {
        /// The lock file.
        path: PathBuf,
    },
}

/// An opened cache directory, locked for this process while it lives.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    /// Held for the lock: released when the layout is dropped (or the
    /// process dies, which is what makes a lock file safe after `kill -9`).
    _lock: File,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Layout {
    /// Opens (making what is missing) the cache directory `dir`, locks it,
    /// and deletes writes a previous process left unfinished.
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        let root = dir.join(FORMAT_DIR);
        for folder in [root.join("objects"), root.join("tmp")] {
            fs::create_dir_all(&folder).map_err(io_error(&folder))?;
        }
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LayoutError::InUse { path: lock_path }),
            Err(TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        let layout = Layout { root, _lock: lock };
        // Made once here rather than checked on every write.
        for fan in 0..=u8::MAX {
            let folder = layout.root.join("objects").join(format!("{fan:02x}"));
            fs::create_dir_all(&folder).map_err(io_error(&folder))?;
        }
        let tmp = layout.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(io_error(&tmp))? {
            let path = entry.map_err(io_error(&tmp))?.path();
            // A leftover that will not go is only wasted space; the tier
            // still works, so it is not a reason to refuse the directory.
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!("disk cache: cannot delete {}: {e}", path.display());
            }
        }
        Ok(layout)
    }

    /// The versioned root (`DIR/v1`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where objects are written before they are renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The folder of the 256 fan-out folders.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// The file of the object whose key hash is `key`.
    pub fn object_path(&self, key: &HashBinary) -> PathBuf {
        let name = hex(key);
        self.root.join("objects").join(&name[..2]).join(name)
    }
}

/// The lowercase hex of a key hash: an object's file name.
pub fn hex(key: &HashBinary) -> String {
    use std::fmt::Write;
    key.iter().fold(String::with_capacity(32), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The key hash a file name spells, if it is one.
pub fn parse_hex(name: &str) -> Option<HashBinary> {
    if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&name[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_round_trip() {
        let key: HashBinary = core::array::from_fn(|i| (i * 17) as u8);
        let name = hex(&key);
        assert_eq!(name.len(), 32);
        assert_eq!(parse_hex(&name), Some(key));
        assert_eq!(parse_hex("not a key"), None);
        assert_eq!(parse_hex(&name[..31]), None);
        assert_eq!(parse_hex(&format!("{}zz", &name[..30])), None);
    }

    #[test]
    fn an_object_lives_under_its_fan_out_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::open(dir.path()).expect("opens");
        let key = [0xab; 16];
        let path = layout.object_path(&key);
        assert_eq!(
            path.parent().expect("folder"),
            layout.objects_dir().join("ab")
        );
        assert!(path.parent().expect("folder").is_dir());
    }

    #[test]
    fn a_second_process_cannot_open_a_directory_in_use_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = Layout::open(dir.path()).expect("opens");
        // A lock taken through another open file description conflicts just
        // as another process's would.
        assert!(matches!(
            Layout::open(dir.path()),
            Err(LayoutError::InUse { .. })
        ));
        drop(first);
        Layout::open(dir.path()).expect("opens once released");
    }

    #[test]
    fn unfinished_writes_are_deleted_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::open(dir.path()).expect("opens");
        let leftover = layout.tmp_dir().join("half-written");
        fs::write(&leftover, b"torn").expect("writes");
        drop(layout);
        let layout = Layout::open(dir.path()).expect("opens again");
        assert!(!leftover.exists());
        assert!(layout.tmp_dir().is_dir());
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a-file");
        fs::write(&file, b"").expect("writes");
        let err = Layout::open(&file).expect_err("a file is not a directory");
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
