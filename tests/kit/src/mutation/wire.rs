//! A lenient map of a DNS message: where its fields are, as far as they
//! can be found. The mutators use it to aim at structure (label lengths,
//! section counts, record lengths, EDNS options) instead of only at random
//! bytes. It never fails: it stops where the message stops making sense.
//!
//! GeoDNS has a wire reader of its own (`geodns::wire`), but the kit
//! cannot use it: GeoDNS's fuzz test runs on the kit, so the kit depending
//! on GeoDNS would make a dependency cycle. What is read here is little (a
//! label's first byte, 16-bit fields) and every read is bounds-checked.

/// The header's size: where the question section starts.
pub const HEADER: usize = 12;

/// RR type OPT (RFC 6891 §6.1.1).
pub const OPT: u16 = 41;

/// EDNS option code of Client Subnet (RFC 7871 §6).
const CLIENT_SUBNET: u16 = 8;

/// Where the parts of a message are.
#[derive(Debug, Default)]
pub struct Layout {
    /// Offsets where a field or a part starts: every label, question,
    /// record, RDATA and option. Truncation and splicing aim here.
    pub boundaries: Vec<usize>,
    /// Offsets of label length bytes (in questions and owner names).
    pub labels: Vec<usize>,
    /// Offsets where names start (questions and records).
    pub names: Vec<usize>,
    /// Where each section ends (question, answer, authority, additional),
    /// for the sections that could be walked to their end.
    pub section_ends: Vec<usize>,
    /// Offsets of RDLENGTH fields.
    pub rdlengths: Vec<usize>,
    /// OPT records found.
    pub opts: Vec<OptAt>,
    /// Offsets of EDNS options (their code; the length follows).
    pub options: Vec<usize>,
    /// Client Subnet options found in a well-formed position.
    pub subnets: Vec<SubnetAt>,
}

/// An OPT record's place.
#[derive(Debug, Clone, Copy)]
pub struct OptAt {
    /// Its CLASS field: the requestor's UDP payload size.
    pub class: usize,
    /// Its TTL field: extended RCODE, version, flags.
    pub ttl: usize,
    /// Its RDATA (the options), which RDLENGTH says is this long.
    pub rdata: usize,
    /// RDLENGTH.
    pub rdlength: usize,
}

/// A Client Subnet option's place.
#[derive(Debug, Clone, Copy)]
pub struct SubnetAt {
    /// The FAMILY field.
    pub family: usize,
    /// The address bytes, to the option's end.
    pub address: usize,
    /// How many address bytes the option holds.
    pub address_len: usize,
}

/// The big-endian u16 at `at`, if the message is that long.
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at..at.saturating_add(2))
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
}

/// Writes a big-endian u16 at `at`, if it fits.
pub fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(pair) = bytes.get_mut(at..at.saturating_add(2)) {
        pair.copy_from_slice(&value.to_be_bytes());
    }
}

/// Maps `bytes` as far as it goes.
pub fn scan(bytes: &[u8]) -> Layout {
    let mut layout = Layout::default();
    if bytes.len() < HEADER {
        return layout;
    }
    layout.boundaries.push(HEADER);
    let count = |at| usize::from(u16_at(bytes, at).unwrap_or(0));
    let mut at = HEADER;
    // Far more records than fit in a message cannot be walked anyway.
    let questions = count(4).min(64);
    for _ in 0..questions {
        let Some(end) = name(bytes, at, &mut layout) else {
            return layout;
        };
        at = end + 4;
        if at > bytes.len() {
            return layout;
        }
        layout.boundaries.push(at);
    }
    layout.section_ends.push(at);
    for section in [6, 8, 10] {
        for _ in 0..count(section).min(64) {
            match record(bytes, at, &mut layout) {
                Some(end) => at = end,
                None => return layout,
            }
        }
        layout.section_ends.push(at);
    }
    layout
}

/// Where the name at `at` ends (past its root label or the compression
/// pointer that ends it), or `None` where it stops making sense.
pub fn name_end(bytes: &[u8], at: usize) -> Option<usize> {
    name(bytes, at, &mut Layout::default())
}

/// Walks the name at `at`, recording its labels; returns where it ends.
fn name(bytes: &[u8], mut at: usize, layout: &mut Layout) -> Option<usize> {
    layout.names.push(at);
    loop {
        let first = *bytes.get(at)?;
        layout.labels.push(at);
        // A label's first byte says what it is (RFC 1035 §4.1.4, RFC 6891
        // §5): the root, a label of that many bytes, or a two-byte
        // compression pointer. The extended label types (first bits 01
        // and 10) end the walk.
        match first {
            0 => return Some(at + 1),
            1..=63 => {
                at += 1 + usize::from(first);
                layout.boundaries.push(at);
            }
            0xc0..=0xff => return bytes.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
}

/// Walks the record at `at`; returns where it ends.
fn record(bytes: &[u8], at: usize, layout: &mut Layout) -> Option<usize> {
    layout.boundaries.push(at);
    let fixed = name(bytes, at, layout)?;
    let rtype = u16_at(bytes, fixed)?;
    let rdlength_at = fixed + 8;
    let rdlength = usize::from(u16_at(bytes, rdlength_at)?);
    layout.rdlengths.push(rdlength_at);
    let rdata = rdlength_at + 2;
    layout.boundaries.push(rdata);
    let end = rdata + rdlength;
    if rtype == OPT {
        layout.opts.push(OptAt {
            class: fixed + 2,
            ttl: fixed + 4,
            rdata,
            rdlength,
        });
        options(bytes, rdata, end.min(bytes.len()), layout);
    }
    (end <= bytes.len()).then_some(end)
}

/// Walks the EDNS options between `at` and `end`.
fn options(bytes: &[u8], mut at: usize, end: usize, layout: &mut Layout) {
    while at + 4 <= end {
        layout.options.push(at);
        layout.boundaries.push(at);
        let (Some(code), Some(length)) = (u16_at(bytes, at), u16_at(bytes, at + 2)) else {
            return;
        };
        let data = at + 4;
        let next = data + usize::from(length);
        if next > end {
            return;
        }
        if code == CLIENT_SUBNET && length >= 4 {
            layout.subnets.push(SubnetAt {
                family: data,
                address: data + 4,
                address_len: usize::from(length) - 4,
            });
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_with_ecs_is_mapped() {
        // cdn.meridian.test A, OPT with ECS 81.2.69.0/24.
        let mut query = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in ["cdn", "meridian", "test"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let opt_at = query.len();
        query.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 11]);
        query.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69]);
        let layout = scan(&query);
        assert_eq!(layout.labels, vec![12, 16, 25, 30, opt_at]);
        assert_eq!(
            layout.section_ends,
            vec![opt_at, opt_at, opt_at, query.len()]
        );
        assert_eq!(layout.opts.len(), 1);
        assert_eq!(layout.opts[0].class, opt_at + 3);
        assert_eq!(layout.subnets.len(), 1);
        assert_eq!(layout.subnets[0].address_len, 3);
        assert_eq!(&query[layout.subnets[0].address..], &[81, 2, 69]);
    }
}
