//! One object on disk: a header record under one checksum, then the body at
//! the next 4 KiB boundary. Written whole or not at all (temporary file,
//! `fsync`, rename), and checked before it is believed.
//!
//! ```text
//!  0  magic "MRDNOBJ1" (the last byte is the format version)
//!  8  key hash (16 bytes)
//! 24  metadata length (u32, little-endian)
//! 28  reserved, zero (u32)
//! 32  body length (u64)
//! 40  body offset (u64): the metadata's end rounded up to 4 KiB
//! 48  BLAKE2b-128 of the body
//! 64  BLAKE2b-128 of bytes 0..64 and the metadata
//! 80  metadata, then zeros up to the body offset, then the body
//! ```
//!
//! BLAKE2b because the edge already depends on it (peer ranking) and it is
//! fast enough for a header; the header checksum is what every start checks,
//! the body checksum only a scrub or a test.

use super::layout::Layout;
use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// The first bytes of every record; the last one is the format's version.
const MAGIC: [u8; 8] = *b"MRDNOBJ1";
/// The fixed part of the header, checksum included.
const FIXED_BYTES: usize = 80;
/// Where the header checksum sits, and so where the bytes it covers end.
const CHECKSUM_AT: usize = 64;
/// More metadata than any response head the edge stores: a larger length
/// is damage, and must not make a start allocate it.
pub const MAX_META_BYTES: usize = 1 << 20;
/// Bodies start on a page boundary so they can be mapped page by page, and
/// files are charged in whole blocks of this size.
pub const BLOCK_BYTES: u64 = 4096;

type Checksum = Blake2b<U16>;

/// What a record's header says about its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// The cache key hash the object is stored under.
    pub key: HashBinary,
    /// Bytes of metadata after the fixed header.
    pub meta_len: usize,
    /// Bytes of body.
    pub body_len: u64,
    /// Where the body starts in the file.
    pub body_offset: u64,
    /// BLAKE2b-128 of the body.
    pub body_checksum: [u8; 16],
}

impl RecordHeader {
    /// The size the whole file must have.
    pub fn file_len(&self) -> u64 {
        self.body_offset + self.body_len
    }
}

/// Why a file is not a record the tier may serve.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is not a whole, intact record: torn, truncated, of another
    /// format, or changed since it was written.
    #[error("not an intact record: {0}")]
    Damaged(&'static str),
}

/// Where a body starts after `meta_len` bytes of metadata.
fn body_offset_for(meta_len: usize) -> u64 {
    ((FIXED_BYTES + meta_len) as u64).next_multiple_of(BLOCK_BYTES)
}

/// What a record of this much metadata and body occupies on disk, in whole
/// blocks: what the index charges it.
pub fn disk_bytes(meta_len: usize, body_len: u64) -> u64 {
    (body_offset_for(meta_len) + body_len).next_multiple_of(BLOCK_BYTES)
}

fn header_checksum(fixed: &[u8], meta: &[u8]) -> [u8; 16] {
    let mut hasher = Checksum::new();
    hasher.update(&fixed[..CHECKSUM_AT]);
    hasher.update(meta);
    hasher.finalize().into()
}

/// The header record (fixed part and metadata, without the padding) for an
/// object.
fn encode_header(key: &HashBinary, meta: &[u8], body: &[Bytes]) -> Vec<u8> {
    let body_len: u64 = body.iter().map(|c| c.len() as u64).sum();
    let mut body_hasher = Checksum::new();
    for chunk in body {
        body_hasher.update(chunk);
    }
    let body_checksum: [u8; 16] = body_hasher.finalize().into();
    let mut head = Vec::with_capacity(FIXED_BYTES + meta.len());
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(key);
    // The caller refuses metadata over MAX_META_BYTES, so it fits a u32.
    head.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&body_len.to_le_bytes());
    head.extend_from_slice(&body_offset_for(meta.len()).to_le_bytes());
    head.extend_from_slice(&body_checksum);
    let checksum = header_checksum(&head, meta);
    head.extend_from_slice(&checksum);
    head.extend_from_slice(meta);
    head
}

/// A record written to a temporary file and on disk, not yet under its
/// name: [`Pending::persist`] names it.
#[derive(Debug)]
pub struct Pending {
    tmp: tempfile::NamedTempFile,
    disk_bytes: u64,
}

impl Pending {
    /// What the record occupies on disk, in whole blocks.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Renames the record over the object's name: it replaces any older
    /// record whole, and readers that opened the old one keep reading it.
    pub fn persist(self, layout: &Layout, key: &HashBinary) -> io::Result<()> {
        self.tmp
            .persist(layout.object_path(key))
            .map(drop)
            .map_err(|e| e.error)
    }
}

/// Writes the object `key` (its metadata and body) to a temporary file.
/// Once [`make_durable`] has returned for it, [`Pending::persist`] may name
/// it: the name then never holds a record whose body is not on disk yet,
/// even after a power cut. The directory is not synced: losing a rename
/// only loses an object (a miss), never serves a wrong one. Dropping the
/// `Pending` (or failing here) deletes the temporary file.
pub fn prepare(
    layout: &Layout,
    key: &HashBinary,
    meta: &[u8],
    body: &[Bytes],
) -> io::Result<Pending> {
    if meta.len() > MAX_META_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "metadata larger than a record holds",
        ));
    }
    let head = encode_header(key, meta, body);
    let body_offset = body_offset_for(meta.len());
    let mut tmp = tempfile::NamedTempFile::new_in(layout.tmp_dir())?;
    let file = tmp.as_file_mut();
    file.write_all(&head)?;
    // Zeros up to the body's page; a hole would do as well but costs a seek.
    let padding = body_offset as usize - head.len();
    file.write_all(&vec![0; padding])?;
    let mut body_len = 0u64;
    for chunk in body {
        file.write_all(chunk)?;
        body_len += chunk.len() as u64;
    }
    Ok(Pending {
        tmp,
        disk_bytes: disk_bytes(meta.len(), body_len),
    })
}

/// Puts the records of `pending` on disk, so they may be named: one
/// `fdatasync` each.
///
/// Not one `syncfs` for the batch: on a quiet machine both took 1.2 s for
/// the restart test's 200 objects of 100 KiB, but `syncfs` flushes every
/// dirty page of the filesystem, other processes' included, and while
/// builds wrote to the same disk a writer using it named nothing in 60 s.
/// An `fdatasync` costs what this record costs, whatever else the machine
/// does.
pub fn make_durable(pending: &[&Pending]) -> io::Result<()> {
    pending.iter().try_for_each(|p| p.tmp.as_file().sync_data())
}

/// Reads and checks the header record of `file`: its magic, its checksum,
/// and that the file is exactly as long as the record says. Returns the
/// header and the metadata. The body is not read.
pub fn read_header(file: &File) -> Result<(RecordHeader, Vec<u8>), RecordError> {
    let file_len = file.metadata()?.len();
    if file_len < FIXED_BYTES as u64 {
        return Err(RecordError::Damaged("shorter than a header"));
    }
    let mut fixed = [0u8; FIXED_BYTES];
    file.read_exact_at(&mut fixed, 0)?;
    let header = parse_fixed(&fixed)?;
    if header.file_len() != file_len {
        return Err(RecordError::Damaged("length differs from the header's"));
    }
    let mut meta = vec![0u8; header.meta_len];
    file.read_exact_at(&mut meta, FIXED_BYTES as u64)?;
    if header_checksum(&fixed, &meta)[..] != fixed[CHECKSUM_AT..FIXED_BYTES] {
        return Err(RecordError::Damaged("header checksum differs"));
    }
    Ok((header, meta))
}

/// The fixed part of a header, its fields checked against each other (the
/// checksum is checked with the metadata, by [`read_header`]).
fn parse_fixed(fixed: &[u8; FIXED_BYTES]) -> Result<RecordHeader, RecordError> {
    let field = |at: usize, len: usize| &fixed[at..at + len];
    if field(0, 8) != MAGIC {
        return Err(RecordError::Damaged("not a record of this format"));
    }
    let u32_at = |at| u32::from_le_bytes(field(at, 4).try_into().unwrap_or_default());
    let u64_at = |at| u64::from_le_bytes(field(at, 8).try_into().unwrap_or_default());
    let meta_len = u32_at(24) as usize;
    if meta_len > MAX_META_BYTES || u32_at(28) != 0 {
        return Err(RecordError::Damaged("impossible metadata length"));
    }
    let body_len = u64_at(32);
    let body_offset = u64_at(40);
    if body_offset != body_offset_for(meta_len) || body_offset.checked_add(body_len).is_none() {
        return Err(RecordError::Damaged("impossible body offset"));
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(field(8, 16));
    let mut body_checksum = [0u8; 16];
    body_checksum.copy_from_slice(field(48, 16));
    Ok(RecordHeader {
        key,
        meta_len,
        body_len,
        body_offset,
        body_checksum,
    })
}

/// Reads the whole body and checks it against the header's checksum. Hits
/// never do this (they send the body without reading it); the tests do.
#[cfg(test)]
pub fn verify_body(file: &File, header: &RecordHeader) -> Result<(), RecordError> {
    let mut hasher = Checksum::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = header.body_offset;
    let end = header.file_len();
    while at < end {
        let want = buf.len().min((end - at) as usize);
        file.read_exact_at(&mut buf[..want], at)?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    if <[u8; 16]>::from(hasher.finalize()) != header.body_checksum {
        return Err(RecordError::Damaged("body checksum differs"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::open(dir.path()).expect("opens");
        (dir, layout)
    }

    fn body(len: usize) -> Vec<Bytes> {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        // In two chunks, as a fill hands them over.
        let bytes = Bytes::from(bytes);
        vec![bytes.slice(..len / 3), bytes.slice(len / 3..)]
    }

    /// Writes and names a record, as the writer does.
    fn write(layout: &Layout, key: &HashBinary, meta: &[u8], body: &[Bytes]) -> io::Result<u64> {
        let pending = prepare(layout, key, meta, body)?;
        make_durable(&[&pending])?;
        let bytes = pending.disk_bytes();
        pending.persist(layout, key)?;
        Ok(bytes)
    }

    fn read_body(file: &File, header: &RecordHeader) -> Vec<u8> {
        let mut out = vec![0u8; header.body_len as usize];
        file.read_exact_at(&mut out, header.body_offset)
            .expect("reads");
        out
    }

    #[test]
    fn a_written_record_reads_back_exactly() {
        let (_dir, layout) = layout();
        let key = [7u8; 16];
        let chunks = body(100 * 1024);
        let bytes = write(&layout, &key, b"the head", &chunks).expect("writes");
        let file = File::open(layout.object_path(&key)).expect("named");
        let (header, meta) = read_header(&file).expect("intact");
        assert_eq!(meta, b"the head");
        assert_eq!(header.key, key);
        assert_eq!(header.body_len, 100 * 1024);
        assert_eq!(header.body_offset, BLOCK_BYTES);
        assert_eq!(bytes, BLOCK_BYTES + 100 * 1024);
        assert_eq!(read_body(&file, &header), chunks.concat());
        verify_body(&file, &header).expect("body intact");
        assert_eq!(fs::read_dir(layout.tmp_dir()).expect("tmp").count(), 0);
    }

    #[test]
    fn bodies_start_on_a_page_even_after_a_large_head() {
        let (_dir, layout) = layout();
        let key = [8u8; 16];
        let meta = vec![b'h'; 5000];
        write(&layout, &key, &meta, &body(10)).expect("writes");
        let file = File::open(layout.object_path(&key)).expect("named");
        let (header, read_meta) = read_header(&file).expect("intact");
        assert_eq!(header.body_offset, 2 * BLOCK_BYTES);
        assert_eq!(read_meta, meta);
        assert_eq!(disk_bytes(5000, 10), 3 * BLOCK_BYTES);
        assert_eq!(disk_bytes(0, 0), BLOCK_BYTES);
    }

    #[test]
    fn an_empty_body_is_a_record_too() {
        let (_dir, layout) = layout();
        write(&layout, &[1; 16], b"m", &[]).expect("writes");
        let file = File::open(layout.object_path(&[1; 16])).expect("named");
        let (header, _) = read_header(&file).expect("intact");
        assert_eq!(header.body_len, 0);
        verify_body(&file, &header).expect("empty body intact");
    }

    #[test]
    fn a_newer_record_replaces_the_old_one_whole() {
        let (_dir, layout) = layout();
        let key = [9u8; 16];
        write(&layout, &key, b"old", &body(50_000)).expect("writes");
        let old = File::open(layout.object_path(&key)).expect("named");
        write(&layout, &key, b"new head", &[Bytes::from_static(b"new")]).expect("writes");
        let new = File::open(layout.object_path(&key)).expect("named");
        let (header, meta) = read_header(&new).expect("intact");
        assert_eq!((meta.as_slice(), header.body_len), (&b"new head"[..], 3));
        // A reader that opened the old file still reads the old record
        // whole: files are replaced, never changed.
        let (old_header, old_meta) = read_header(&old).expect("still intact");
        assert_eq!(old_meta, b"old");
        assert_eq!(read_body(&old, &old_header), body(50_000).concat());
    }

    /// A directory holding one object, written with `meta` and a body of
    /// `len` bytes: the directory, the object's path and its bytes.
    fn one_file(
        key: u8,
        meta: &[u8],
        len: usize,
    ) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let (dir, layout) = layout();
        write(&layout, &[key; 16], meta, &body(len)).expect("writes");
        let path = layout.object_path(&[key; 16]);
        let whole = fs::read(&path).expect("reads");
        (dir, path, whole)
    }

    /// The file at `path`, rewritten to hold `bytes`, opened.
    fn rewritten(path: &std::path::Path, bytes: &[u8]) -> File {
        fs::write(path, bytes).expect("writes");
        File::open(path).expect("opens")
    }

    /// Every way a file can be cut short, as a crash or a full disk could
    /// leave one were it not for the rename, is refused.
    #[test]
    fn every_truncation_is_refused() {
        let (_dir, path, whole) = one_file(3, b"head", 9000);
        let cuts = [
            0,
            1,
            8,
            40,
            79,
            80,
            83,
            84,
            4095,
            4096,
            4097,
            whole.len() - 1,
        ];
        for cut in cuts {
            let result = read_header(&rewritten(&path, &whole[..cut]));
            assert!(
                matches!(result, Err(RecordError::Damaged(_))),
                "cut at {cut}: {result:?}"
            );
        }
        // One byte too many is refused too: the length must match exactly.
        let mut longer = whole.clone();
        longer.push(0);
        assert!(read_header(&rewritten(&path, &longer)).is_err());
    }

    /// Any changed byte of the header record is caught by its checksum or
    /// its checks; a changed body byte by the body checksum.
    #[test]
    fn every_changed_header_byte_is_refused_and_a_changed_body_is_caught_by_a_scrub() {
        let (_dir, path, whole) = one_file(4, b"some metadata", 5000);
        for at in 0..FIXED_BYTES + b"some metadata".len() {
            let mut changed = whole.clone();
            changed[at] ^= 0x40;
            let file = rewritten(&path, &changed);
            assert!(read_header(&file).is_err(), "byte {at} changed unnoticed");
        }
        let mut changed = whole.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        let file = rewritten(&path, &changed);
        let (header, _) = read_header(&file).expect("the header is intact");
        assert!(matches!(
            verify_body(&file, &header),
            Err(RecordError::Damaged(_))
        ));
    }

    #[test]
    fn oversized_metadata_is_neither_written_nor_allocated_on_read() {
        let (_dir, layout) = layout();
        let key = [5u8; 16];
        let too_much = vec![0u8; MAX_META_BYTES + 1];
        assert!(write(&layout, &key, &too_much, &[]).is_err());
        assert!(!layout.object_path(&key).exists());
        assert_eq!(fs::read_dir(layout.tmp_dir()).expect("tmp").count(), 0);
        // A header claiming 4 GiB of metadata is refused before any is read.
        write(&layout, &key, b"m", &[]).expect("writes");
        let path = layout.object_path(&key);
        let mut bytes = fs::read(&path).expect("reads");
        bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&path, &bytes).expect("writes");
        let file = File::open(&path).expect("opens");
        assert!(matches!(read_header(&file), Err(RecordError::Damaged(_))));
    }
}
