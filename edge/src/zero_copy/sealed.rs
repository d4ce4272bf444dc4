//! Large cached bodies in sealed memory files (Linux).
//!
//! [`seal`] moves a finished body of at least [`MIN_BYTES`] into a file of
//! its own in memory (a memfd), seals the file so nothing can change it
//! again, and maps it read-only. The `Bytes` it returns are ordinary
//! `Bytes` — every part of the edge that reads bodies (ranges, TLS,
//! HTTP/2) keeps working unchanged — but their memory is the file's pages,
//! which [`super::sendfile`] can hand to a socket without copying them.
//!
//! Why sealed, and why one file per body: sendfile gives TCP references to
//! the file's pages, and TCP may still be sending from them after the call
//! returns. Were a page changed meanwhile, the client would receive the new
//! bytes. A sealed file cannot be written, truncated or grown, so its pages
//! never change; when the cache evicts a body, its pages live on until TCP
//! lets go of them.
//!
//! Why slices are recognised by address: Pingora's HTTP/1 writer takes a
//! `&[u8]`, so by the time bytes reach the socket nothing but their address
//! says where they came from. Each sealed body registers its mapping;
//! [`find`] looks a slice up there. Slices of anything else never match,
//! as live mappings never overlap other memory.
//!
//! Each sealed body holds a file descriptor. So that a large cache cannot
//! starve the edge of descriptors for connections, at most a quarter of the
//! process's open-file limit go to bodies; past that, bodies stay on the
//! heap and are copied as before.
#![allow(unsafe_code)]

use bytes::Bytes;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::resource::{Resource, getrlimit};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use super::MIN_BYTES;

/// Where a body is mapped: the file holding it, where in the file it
/// starts, and its length.
struct Region {
    len: usize,
    file: Arc<OwnedFd>,
    file_offset: usize,
}

/// Every live sealed body, by the address its mapping starts at.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

/// Sealed bodies alive right now (each holds a file descriptor).
static SEALED: AtomicUsize = AtomicUsize::new(0);

/// Calls `f` with the sealed body `bytes` lies in and where in it they
/// start, if they lie wholly in one.
fn with_region<T>(bytes: &[u8], f: impl FnOnce(&Region, usize) -> T) -> Option<T> {
    if bytes.is_empty() {
        return None;
    }
    let start = bytes.as_ptr() as usize;
    let regions = REGIONS.read().unwrap_or_else(PoisonError::into_inner);
    let (&base, region) = regions.range(..=start).next_back()?;
    let offset = start - base;
    (offset + bytes.len() <= region.len).then(|| f(region, offset))
}

/// The file and offset `buf` was mapped from, if it lies in a sealed body.
pub(super) fn find(buf: &[u8]) -> Option<(Arc<OwnedFd>, i64)> {
    with_region(buf, |region, offset| {
        (region.file.clone(), (region.file_offset + offset) as i64)
    })
}

/// The bytes `body` holds in memory, if it is a sealed body (or a slice of
/// one): its pages, rounded up. `None` for bodies on the heap.
pub fn footprint(body: &Bytes) -> Option<usize> {
    with_region(body, |region, _| region.len.next_multiple_of(page_bytes()))
}

/// The size of a memory page, which sealed bodies take whole.
pub fn page_bytes() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(4096)
    })
}

/// How many bodies may be sealed at once: a quarter of the open-file limit.
fn descriptor_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        getrlimit(Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| usize::try_from(soft / 4).unwrap_or(usize::MAX))
            .unwrap_or(0)
    })
}

/// A claim on one of the descriptors bodies may hold; released on drop.
struct DescriptorClaim;

impl DescriptorClaim {
    fn take() -> Option<Self> {
        let budget = descriptor_budget();
        SEALED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < budget).then_some(n + 1)
            })
            .ok()
            .map(|_| DescriptorClaim)
    }
}

impl Drop for DescriptorClaim {
    fn drop(&mut self) {
        SEALED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies `chunks` (`len` bytes in all) into a sealed, read-only mapped
/// file and returns the result as `Bytes`. `None` when the body is smaller
/// than [`MIN_BYTES`], when the descriptor budget is spent, or when the
/// system refuses (the caller then keeps the body on the heap).
pub fn seal(chunks: &[Bytes], len: usize) -> Option<Bytes> {
    if len < MIN_BYTES {
        return None;
    }
    let Some(claim) = DescriptorClaim::take() else {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::info!(
                budget = descriptor_budget(),
                "stored bodies hold a quarter of the open-file limit; further large bodies \
                 are kept on the heap and copied when sent (raise the limit to send them \
                 without a copy)"
            );
        });
        return None;
    };
    match SealedBody::new(chunks, len, claim) {
        Ok(body) => Some(Bytes::from_owner(body)),
        Err(error) => {
            tracing::debug!(%error, len, "could not seal a body; keeping it on the heap");
            None
        }
    }
}

/// A body in a sealed memfd or a disk cache file, mapped read-only.
struct SealedBody {
    map: NonNull<c_void>,
    len: usize,
    _claim: DescriptorClaim,
}

// SAFETY: the mapping is read-only, owned by this value alone, and unmapped
// only when it is dropped; reading it from any thread is sound.
unsafe impl Send for SealedBody {}
// SAFETY: as above; shared access only ever reads.
unsafe impl Sync for SealedBody {}

impl SealedBody {
    fn new(chunks: &[Bytes], len: usize, claim: DescriptorClaim) -> io::Result<Self> {
        let mapped_len = NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidInput)?;
        let fd = memfd_create(
            c"meridian-body",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let mut file = File::from(fd);
        let mut written = 0;
        for chunk in chunks {
            file.write_all(chunk)?;
            written += chunk.len();
        }
        if written != len {
            return Err(io::Error::other(format!(
                "body is {written} bytes, expected {len}"
            )));
        }
        let seals = SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_SEAL;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals))?;
        // MAP_POPULATE maps every page now, so the body counts in the
        // process's resident memory like any cached body would.
        // SAFETY: a fresh shared, read-only mapping of a file sealed against
        // writes, shrinking and growing: its contents cannot change under
        // the slices handed out, and it cannot shrink under them (which
        // would fault on access).
        let map = unsafe {
            mmap(
                None,
                mapped_len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                &file,
                0,
            )?
        };
        Ok(SealedBody::register(
            map,
            OwnedFd::from(file),
            0,
            len,
            claim,
        ))
    }

    /// Registers a mapping so [`find`] recognises slices of it.
    fn register(
        map: NonNull<c_void>,
        file: OwnedFd,
        file_offset: usize,
        len: usize,
        claim: DescriptorClaim,
    ) -> SealedBody {
        REGIONS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                map.as_ptr() as usize,
                Region {
                    len,
                    file: Arc::new(file),
                    file_offset,
                },
            );
        SealedBody {
            map,
            len,
            _claim: claim,
        }
    }

    /// Maps `len` bytes of a cache file from `offset` (a multiple of the
    /// page size), read-only and without reading them: pages are faulted in
    /// only if something reads the slice, and sendfile takes them from the
    /// page cache directly.
    fn of_file(file: File, offset: usize, len: usize, claim: DescriptorClaim) -> io::Result<Self> {
        let mapped_len = NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidInput)?;
        if !offset.is_multiple_of(page_bytes()) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        if file.metadata()?.len() < (offset + len) as u64 {
            return Err(io::Error::other("file shorter than the body"));
        }
        let file_offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared, read-only mapping of a range the file was
        // just seen to hold. The contents cannot change under the slices
        // handed out because the disk tier never writes to, truncates or
        // grows a file once it is named (a newer object is a new file
        // renamed over it; eviction unlinks, which keeps the inode alive
        // while mapped), and its directory is locked against other edges.
        // This rests on nothing else changing files in the cache directory:
        // truncating one by hand would fault a reader (SIGBUS), which is why
        // the directory is documented as the edge's alone.
        let map = unsafe {
            mmap(
                None,
                mapped_len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                &file,
                file_offset,
            )?
        };
        Ok(SealedBody::register(
            map,
            OwnedFd::from(file),
            offset,
            len,
            claim,
        ))
    }
}

impl AsRef<[u8]> for SealedBody {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `map` is a live read-only mapping of `len` bytes, unmapped
        // only in `drop`, which cannot run while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for SealedBody {
    fn drop(&mut self) {
        // Unregister first: once unmapped, the address may be reused.
        REGIONS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(self.map.as_ptr() as usize));
        // SAFETY: the mapping was made in `new` with this length, and no
        // slice of it outlives this value (`Bytes` owns it).
        if let Err(error) = unsafe { munmap(self.map, self.len) } {
            tracing::warn!(%error, "could not unmap a sealed body");
        }
    }
}

/// The body of a disk cache file, `len` bytes from `offset` (a multiple of
/// the page size), as `Bytes` whose slices sendfile sends from the file's
/// pages; nothing is read. `None` when the descriptor budget is spent or
/// the system refuses (the caller then reads the body instead).
pub fn map_file(file: File, offset: usize, len: usize) -> Option<Bytes> {
    let claim = DescriptorClaim::take()?;
    match SealedBody::of_file(file, offset, len, claim) {
        Ok(body) => Some(Bytes::from_owner(body)),
        Err(error) => {
            tracing::debug!(%error, len, "could not map a cache file's body; reading it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_sealed_body_reads_back_exactly() {
        let data = body(100 * 1024 + 17);
        let chunks: Vec<Bytes> = data.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
        let sealed = seal(&chunks, data.len()).expect("sealed");
        assert_eq!(&sealed[..], &data[..]);
        assert_eq!(
            footprint(&sealed),
            Some(data.len().next_multiple_of(page_bytes()))
        );
    }

    #[test]
    fn slices_of_a_sealed_body_are_found_at_their_offset() {
        let data = body(MIN_BYTES * 3);
        let sealed = seal(&[Bytes::from(data)], MIN_BYTES * 3).expect("sealed");
        let (_, offset) = find(&sealed[MIN_BYTES..MIN_BYTES * 2]).expect("found");
        assert_eq!(offset, MIN_BYTES as i64);
        // A copy of the same bytes elsewhere is not a sealed slice.
        let copy = sealed.to_vec();
        assert!(find(&copy).is_none());
        assert!(footprint(&Bytes::from(copy)).is_none());
    }

    #[test]
    fn small_bodies_stay_on_the_heap() {
        let data = Bytes::from(body(MIN_BYTES - 1));
        assert!(seal(&[data], MIN_BYTES - 1).is_none());
    }

    #[test]
    fn a_length_that_does_not_match_the_chunks_is_refused() {
        let data = Bytes::from(body(MIN_BYTES));
        assert!(seal(&[data], MIN_BYTES + 1).is_none());
    }

    #[test]
    fn a_dropped_body_is_unregistered_and_its_descriptor_returned() {
        let data = Bytes::from(body(MIN_BYTES));
        let sealed = seal(&[data], MIN_BYTES).expect("sealed");
        let address = sealed.as_ptr() as usize;
        assert!(REGIONS.read().unwrap().contains_key(&address));
        drop(sealed);
        assert!(!REGIONS.read().unwrap().contains_key(&address));
    }

    #[test]
    fn a_sealed_file_cannot_be_changed() {
        let data = Bytes::from(body(MIN_BYTES));
        let sealed = seal(&[data], MIN_BYTES).expect("sealed");
        let (file, _) = find(&sealed).expect("found");
        let mut file = File::from(file.try_clone().expect("dup"));
        assert!(file.write_all(b"changed").is_err());
        assert!(file.set_len(1).is_err());
    }

    /// A cache file: a page of something else, then the body.
    fn cache_file(data: &[u8]) -> (tempfile::NamedTempFile, usize) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        let offset = page_bytes();
        file.write_all(&vec![0xee; offset]).expect("writes");
        file.write_all(data).expect("writes");
        (file, offset)
    }

    #[test]
    fn a_file_body_maps_exactly_and_its_slices_are_found_at_their_file_offset() {
        let data = body(MIN_BYTES * 3 + 5);
        let (file, offset) = cache_file(&data);
        let opened = File::open(file.path()).expect("opens");
        let mapped = map_file(opened, offset, data.len()).expect("mapped");
        assert_eq!(&mapped[..], &data[..]);
        let (_, at) = find(&mapped[MIN_BYTES..MIN_BYTES * 2]).expect("found");
        assert_eq!(at, (offset + MIN_BYTES) as i64);
        // Unlinking the file (an eviction) leaves the mapping readable.
        drop(file);
        assert_eq!(&mapped[..], &data[..]);
        let address = mapped.as_ptr() as usize;
        drop(mapped);
        assert!(!REGIONS.read().unwrap().contains_key(&address));
    }

    #[test]
    fn a_file_body_past_the_end_or_off_a_page_is_refused() {
        let data = body(MIN_BYTES);
        let (file, offset) = cache_file(&data);
        let open = || File::open(file.path()).expect("opens");
        assert!(map_file(open(), offset, data.len() + 1).is_none());
        assert!(map_file(open(), offset + 1, data.len() - 1).is_none());
        assert!(map_file(open(), offset, 0).is_none());
    }
}
