//! Geo databases built byte by byte, for tests of what GeoDNS refuses.
//!
//! The MaxMind DB writers build well-formed search trees, where every
//! network has a path of its own; a file built to hang whatever walks it
//! shares subtrees, which only a hand-written file can. The format is
//! MaxMind DB 2.0: a search tree of 24-bit records, 16 zero bytes, the
//! data section, and the metadata after `\xab\xcd\xefMaxMind.com`.

/// MaxMind DB bytes whose search tree is `depth` nodes in a chain: both
/// records of each node point at the next one, and both of the last one's
/// at a GB record. Every reader takes it (one lookup is one path), and it
/// holds 2^depth networks. An IPv6 tree 128 deep is about a kilobyte.
pub fn shared_subtrees(ip_version: u16, depth: u32) -> Vec<u8> {
    fn string(text: &str) -> Vec<u8> {
        let mut bytes = vec![control(0x40, text.len())];
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }
    fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = vec![control(0xe0, entries.len())];
        for (key, value) in entries {
            bytes.extend(string(key));
            bytes.extend_from_slice(value);
        }
        bytes
    }
    let uint16 = |v: u16| {
        let mut bytes = vec![0xa2];
        bytes.extend_from_slice(&v.to_be_bytes());
        bytes
    };
    // Search tree: `depth` nodes of two 24-bit records.
    let data_pointer = depth + 16;
    let mut file = Vec::new();
    for node in 0..depth {
        let next = if node + 1 == depth {
            data_pointer
        } else {
            node + 1
        };
        for _ in 0..2 {
            file.extend_from_slice(&next.to_be_bytes()[1..]);
        }
    }
    // The data section separator, then the one record.
    file.extend_from_slice(&[0; 16]);
    file.extend(map(&[
        ("country", map(&[("iso_code", string("GB"))])),
        ("continent", map(&[("code", string("EU"))])),
    ]));
    file.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let mut node_count = vec![0xc4];
    node_count.extend_from_slice(&depth.to_be_bytes());
    // uint64 and arrays are extended types: the type byte follows.
    let mut build_epoch = vec![0x08, 0x02];
    build_epoch.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    file.extend(map(&[
        ("binary_format_major_version", uint16(2)),
        ("binary_format_minor_version", uint16(0)),
        ("build_epoch", build_epoch),
        ("database_type", string("Crafted-Shared-Subtrees")),
        ("description", vec![0xe0]),
        ("ip_version", uint16(ip_version)),
        ("languages", vec![0x00, 0x04]),
        ("node_count", node_count),
        ("record_size", uint16(24)),
    ]));
    file
}

/// A field's control byte: its type in the top three bits, its size in
/// the other five.
///
/// # Panics
/// If the size needs the format's extended size bytes (29 or more): the
/// fields written here are all shorter.
fn control(kind: u8, size: usize) -> u8 {
    match u8::try_from(size) {
        Ok(size) if size < 29 => kind | size,
        _ => panic!("a size of {size} needs an extended size byte"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_ends_with_its_metadata() {
        let file = shared_subtrees(6, 128);
        // 128 nodes of two 3-byte records, then the separator.
        assert_eq!(file[128 * 6..128 * 6 + 16], [0; 16]);
        let marker = b"\xab\xcd\xefMaxMind.com";
        let at = file.windows(marker.len()).position(|w| w == marker);
        assert!(at.is_some_and(|at| at > 128 * 6));
        assert_eq!(control(0x40, 2), 0x42);
    }
}
