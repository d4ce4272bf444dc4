//! A stored object's metadata as the disk tier keeps it: the bytes a disk
//! record carries besides the body, and back.
//!
//! The response metadata is pingora-cache's own serialization
//! (`CacheMeta::serialize`, which keeps every field, the revalidation time
//! and variance included); around it, what the memory tier keeps per object
//! and pingora does not: purge tags, when this edge received the response,
//! and the primary key of a variant. That envelope is a few length-prefixed
//! fields written here by hand: a serialization crate would be a new
//! dependency for forty lines, and the record's header checksum already
//! guards the bytes. Decoding still trusts nothing: a short or inconsistent
//! input is an error, never a panic.

use super::object::{StoredMeta, StoredObject};
use pingora::cache::CacheMeta;
use pingora::cache::key::HashBinary;
use std::time::{Duration, SystemTime};

/// The envelope's version: a change of layout changes it, and an older
/// edge's records then decode as errors (misses).
const VERSION: u8 = 1;

/// What a record's metadata holds.
pub(super) struct DiskMeta {
    pub(super) meta: StoredMeta,
    pub(super) tags: Box<[String]>,
    pub(super) received: SystemTime,
    pub(super) primary: Option<HashBinary>,
}

/// Why metadata from disk was not used.
#[derive(Debug, thiserror::Error)]
pub(super) enum MetaError {
    #[error("metadata cut short")]
    Short,
    #[error("metadata of another version ({0})")]
    Version(u8),
    #[error("metadata: {0}")]
    Invalid(String),
}

/// The metadata bytes of `object`.
pub(super) fn encode(object: &StoredObject) -> Result<Vec<u8>, MetaError> {
    let (internal, header) = object
        .meta
        .to_meta()
        .serialize()
        .map_err(|e| MetaError::Invalid(e.to_string()))?;
    let mut out = Vec::with_capacity(64 + internal.len() + header.len());
    out.push(VERSION);
    put_bytes(&mut out, &internal)?;
    put_bytes(&mut out, &header)?;
    let since_epoch = object
        .received
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    out.extend_from_slice(&since_epoch.as_secs().to_le_bytes());
    out.extend_from_slice(&since_epoch.subsec_nanos().to_le_bytes());
    match object.primary {
        Some(primary) => {
            out.push(1);
            out.extend_from_slice(&primary);
        }
        None => out.push(0),
    }
    let tags = u32::try_from(object.tags.len()).map_err(|_| MetaError::Invalid("tags".into()))?;
    out.extend_from_slice(&tags.to_le_bytes());
    for tag in &object.tags {
        put_bytes(&mut out, tag.as_bytes())?;
    }
    Ok(out)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), MetaError> {
    let len =
        u32::try_from(bytes.len()).map_err(|_| MetaError::Invalid("field too long".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads fields off the front of the input, refusing to read past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], MetaError> {
        if self.0.len() < len {
            return Err(MetaError::Short);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MetaError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, MetaError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], MetaError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// The metadata `bytes` (from [`encode`]) describe.
pub(super) fn decode(bytes: &[u8]) -> Result<DiskMeta, MetaError> {
    let mut fields = Fields(bytes);
    let [version] = fields.array()?;
    if version != VERSION {
        return Err(MetaError::Version(version));
    }
    let internal = fields.bytes()?;
    let header = fields.bytes()?;
    let meta =
        CacheMeta::deserialize(internal, header).map_err(|e| MetaError::Invalid(e.to_string()))?;
    let secs = u64::from_le_bytes(fields.array()?);
    let nanos = fields.u32()?;
    let received = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .and_then(|t| t.checked_add(Duration::from_nanos(nanos.into())))
        .ok_or_else(|| MetaError::Invalid("received time".into()))?;
    let primary = match fields.array::<1>()? {
        [0] => None,
        [1] => Some(fields.array()?),
        _ => return Err(MetaError::Invalid("primary key flag".into())),
    };
    let count = fields.u32()? as usize;
    // Each tag takes at least its length's four bytes: a count larger than
    // what is left is damage, and must not size an allocation.
    if count > fields.0.len() / 4 {
        return Err(MetaError::Short);
    }
    let mut tags = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = std::str::from_utf8(fields.bytes()?)
            .map_err(|_| MetaError::Invalid("tag not UTF-8".into()))?;
        tags.push(tag.to_owned());
    }
    if !fields.0.is_empty() {
        return Err(MetaError::Invalid("trailing bytes".into()));
    }
    Ok(DiskMeta {
        meta: StoredMeta::from_meta(&meta),
        tags: tags.into_boxed_slice(),
        received,
        primary,
    })
}

/// The purge tags in metadata `bytes`; `None` if they cannot be read.
pub(super) fn tags_of(bytes: &[u8]) -> Option<Box<[String]>> {
    decode(bytes).ok().map(|meta| meta.tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pingora::http::ResponseHeader;
    use std::sync::Arc;

    fn object(primary: Option<HashBinary>) -> StoredObject {
        let mut header = ResponseHeader::build(200, None).expect("header");
        header
            .insert_header("content-type", "text/plain")
            .expect("field");
        header.insert_header("etag", "\"v1\"").expect("field");
        header.append_header("x-many", "one").expect("field");
        header.append_header("x-many", "two").expect("field");
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut meta = CacheMeta::new(created + Duration::from_secs(300), created, 10, 20, header);
        meta.set_variance([9; 16]);
        meta.set_epoch_override(created + Duration::from_secs(30));
        StoredObject {
            meta: Arc::new(StoredMeta::from_meta(&meta)),
            body: Bytes::from_static(b"body"),
            tags: vec!["news".to_owned(), "front-page".to_owned()].into_boxed_slice(),
            received: created + Duration::from_millis(1234),
            primary,
        }
    }

    #[test]
    fn metadata_round_trips() {
        for primary in [None, Some([5u8; 16])] {
            let object = object(primary);
            let decoded = decode(&encode(&object).expect("encodes")).expect("decodes");
            let (was, is) = (&object.meta, &decoded.meta);
            assert_eq!(is.fresh_until, was.fresh_until);
            assert_eq!(is.created, was.created);
            assert_eq!(is.epoch_override, was.epoch_override);
            assert_eq!(is.stale_while_revalidate_sec, 10);
            assert_eq!(is.stale_if_error_sec, 20);
            assert_eq!(is.variance, Some([9; 16]));
            assert_eq!(is.header.status, was.header.status);
            assert_eq!(is.header.headers, was.header.headers);
            assert_eq!(decoded.tags, object.tags);
            assert_eq!(decoded.received, object.received);
            assert_eq!(decoded.primary, primary);
        }
    }

    #[test]
    fn every_cut_and_another_version_are_errors_not_panics() {
        let bytes = encode(&object(Some([1; 16]))).expect("encodes");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other = bytes.clone();
        other[0] = VERSION + 1;
        assert!(matches!(decode(&other), Err(MetaError::Version(_))));
    }

    #[test]
    fn a_huge_tag_count_is_refused_before_it_is_allocated() {
        let mut bytes = encode(&object(None)).expect("encodes");
        let at = bytes.len() - (4 + 4 + 4 + "news".len() + "front-page".len());
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(MetaError::Short)));
    }

    #[test]
    fn any_changed_byte_is_an_error_or_a_well_formed_value() {
        // The record's checksum is what catches damage; decoding only has
        // to stay safe whatever it is given.
        let bytes = encode(&object(Some([2; 16]))).expect("encodes");
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0xff;
            let _ = decode(&changed);
        }
    }
}
