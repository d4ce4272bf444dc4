//! A tower-http [`Backend`] over files held in memory.
//!
//! Why: the demo site is generated at start, not read from disk, yet it must
//! get everything `ServeDir` gives real files (ETag, Last-Modified,
//! conditional GET, Range, HEAD, MIME types, `index.html` for `/`) without
//! this crate re-implementing any of it. Plugging a backend into `ServeDir`
//! does exactly that.
//!
//! tower-http derives both validators from a file's length and modification
//! time (ETag: seconds, nanoseconds and length; Last-Modified: seconds). So
//! every file here is given a modification time that depends only on its
//! bytes: [`EPOCH`] (2026-01-01T00:00:00Z) plus a content fingerprint in the
//! sub-second nanoseconds. Identical bytes therefore get identical ETag and
//! Last-Modified in every region and on every start (edges fail over between
//! origins, and a revalidation against another region's origin must match),
//! while two different bodies of equal length (one region's `index.html` and
//! another's) do not share a strong ETag. Last-Modified is the same second for
//! every file.

use bytes::Bytes;
use std::collections::HashMap;
use std::future::{Ready, ready};
use std::io::{self, Cursor};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File, Metadata};

/// Seconds from the Unix epoch to 2026-01-01T00:00:00Z: the modification
/// time (to the second) of every in-memory file.
const EPOCH_UNIX_SECONDS: u64 = 1_767_225_600;

/// The modification time of every in-memory file, to the second.
pub(crate) fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_SECONDS)
}

/// A read-only tree of in-memory files, cheap to clone (`ServeDir` clones its
/// backend for every request).
#[derive(Clone, Debug, Default)]
pub(crate) struct MemoryBackend {
    /// Keyed by `/`-separated path relative to the root, without a leading
    /// `/`; the root itself is `""`.
    entries: Arc<HashMap<String, Entry>>,
}

#[derive(Clone, Debug)]
enum Entry {
    Dir,
    File(MemoryMetadata, Bytes),
}

impl MemoryBackend {
    /// A tree holding `files` (paths relative to the root, `/`-separated, no
    /// leading `/`) and every directory above them.
    pub(crate) fn new<P: Into<String>>(files: impl IntoIterator<Item = (P, Bytes)>) -> Self {
        let mut entries = HashMap::new();
        entries.insert(String::new(), Entry::Dir);
        for (path, body) in files {
            let path = path.into();
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                entries.insert(parent.to_owned(), Entry::Dir);
                dir = parent;
            }
            let metadata = MemoryMetadata {
                is_dir: false,
                len: body.len() as u64,
                modified: modified_time(&body),
            };
            entries.insert(path, Entry::File(metadata, body));
        }
        MemoryBackend {
            entries: Arc::new(entries),
        }
    }

    fn lookup(&self, path: &Path) -> io::Result<&Entry> {
        self.entries
            .get(&key(path)?)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// The modification time given to `body`: [`epoch()`] plus a content
/// fingerprint (FNV-1a, reduced below one second) in nanoseconds.
fn modified_time(body: &[u8]) -> SystemTime {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    epoch() + Duration::from_nanos(hash % 1_000_000_000)
}

/// The map key for a path `ServeDir` asks about (it prefixes `./` and only
/// ever passes normal components, but anything else is refused here too).
fn key(path: &Path) -> io::Result<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(
                part.to_str()
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?,
            ),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
        }
    }
    Ok(parts.join("/"))
}

impl Backend for MemoryBackend {
    type File = MemoryFile;
    type Metadata = MemoryMetadata;
    type OpenFuture = Ready<io::Result<MemoryFile>>;
    type MetadataFuture = Ready<io::Result<MemoryMetadata>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        ready(match self.lookup(&path) {
            Ok(Entry::File(metadata, body)) => Ok(MemoryFile {
                metadata: metadata.clone(),
                cursor: Cursor::new(body.clone()),
            }),
            // ServeDir never opens a directory (it appends `index.html` or
            // redirects first); if it did, "not found" is the right answer.
            Ok(Entry::Dir) => Err(io::Error::from(io::ErrorKind::NotFound)),
            Err(e) => Err(e),
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        ready(match self.lookup(&path) {
            Ok(Entry::File(metadata, _)) => Ok(metadata.clone()),
            Ok(Entry::Dir) => Ok(MemoryMetadata {
                is_dir: true,
                len: 0,
                modified: epoch(),
            }),
            Err(e) => Err(e),
        })
    }
}

/// What `ServeDir` needs to know about an in-memory file or directory.
#[derive(Clone, Debug)]
pub(crate) struct MemoryMetadata {
    is_dir: bool,
    len: u64,
    modified: SystemTime,
}

impl Metadata for MemoryMetadata {
    fn is_dir(&self) -> bool {
        self.is_dir
    }

    fn modified(&self) -> io::Result<SystemTime> {
        Ok(self.modified)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// An opened in-memory file: a cursor over shared bytes, so opening copies
/// nothing and seeking (for Range) is free.
#[derive(Debug)]
pub(crate) struct MemoryFile {
    metadata: MemoryMetadata,
    cursor: Cursor<Bytes>,
}

impl AsyncRead for MemoryFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_read(cx, buf)
    }
}

impl AsyncSeek for MemoryFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.cursor).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.cursor).poll_complete(cx)
    }
}

impl File for MemoryFile {
    type Metadata = MemoryMetadata;
    type MetadataFuture<'a> = Ready<io::Result<MemoryMetadata>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        ready(Ok(self.metadata.clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    fn backend() -> MemoryBackend {
        MemoryBackend::new([
            ("index.html", Bytes::from_static(b"<p>hi</p>")),
            ("assets/a.txt", Bytes::from_static(b"0123456789")),
            ("assets/deep/b.txt", Bytes::from_static(b"abcdefghij")),
        ])
    }

    #[test]
    fn epoch_is_2026() {
        assert_eq!(
            humantime::format_rfc3339_seconds(epoch()).to_string(),
            "2026-01-01T00:00:00Z"
        );
    }

    #[tokio::test]
    async fn directories_are_implied_by_files() {
        let backend = backend();
        for dir in ["./", ".", "./assets", "./assets/deep"] {
            let meta = backend.metadata(PathBuf::from(dir)).await.unwrap();
            assert!(meta.is_dir(), "{dir}");
        }
        let meta = backend
            .metadata(PathBuf::from("./assets/a.txt"))
            .await
            .unwrap();
        assert!(!meta.is_dir());
        assert_eq!(meta.len(), 10);
    }

    #[tokio::test]
    async fn missing_and_escaping_paths_are_not_found() {
        let backend = backend();
        for path in [
            "./nope",
            "./assets/nope.txt",
            "./assets/../index.html",
            "/index.html",
        ] {
            let err = backend.metadata(PathBuf::from(path)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{path}");
            let err = backend.open(PathBuf::from(path)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{path}");
        }
        let err = backend.open(PathBuf::from("./assets")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn open_reads_and_seeks() {
        let backend = backend();
        let mut file = backend.open(PathBuf::from("./assets/a.txt")).await.unwrap();
        file.seek(io::SeekFrom::Start(4)).await.unwrap();
        let mut rest = String::new();
        file.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "456789");
        assert_eq!(file.metadata().await.unwrap().len(), 10);
    }

    #[test]
    fn modification_time_depends_only_on_content() {
        let a = modified_time(b"0123456789");
        assert_eq!(a, modified_time(b"0123456789"));
        // Same length, different bytes: a different ETag.
        assert_ne!(a, modified_time(b"abcdefghij"));
        // But the same Last-Modified second.
        let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(seconds(a), EPOCH_UNIX_SECONDS);
        assert_eq!(seconds(modified_time(b"abcdefghij")), EPOCH_UNIX_SECONDS);
    }
}
