//! The DNS wire format, for the places that read a message's bytes
//! themselves instead of through hickory's parser.
//!
//! Why by hand at all: hickory's parser builds a whole `Message` (names,
//! records, allocations), which costs more than answering does on the UDP
//! fast path, and it reads some fields more leniently than the RFCs ask
//! (see [`crate::ecs`]). So a few readers look at the bytes directly: the
//! answer cache recognising the common query shape, the Client Subnet
//! check finding a query's OPT record, the rate limiter cutting a reply to
//! a slip, and the handler checking where a question's compression
//! pointers lead. They all walk names, questions and records with the
//! functions here, so there is one reading of the format, not one per
//! reader.
//!
//! Everything here only reads, with bounds-checked slices: it returns
//! `None` where the bytes stop making sense, and never panics. It is
//! public for the fuzz test's mutators (`geodns/tests/fuzz/`), which aim
//! at the same structure.

use std::ops::Range;

/// The header's size: where the question section starts.
pub const HEADER: usize = 12;

/// RR type OPT (RFC 6891).
pub const OPT: u16 = 41;

/// EDNS option code of Client Subnet (RFC 7871).
pub const ECS: u16 = 8;

/// The QR bit (a response), in the header's third byte.
pub const QR: u8 = 0x80;

/// The TC bit (truncated), in the header's third byte.
pub const TC: u8 = 0x02;

/// The longest name, in wire bytes with its root label (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;

/// The big-endian u16 at `at`, if there is one.
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// The header's four counts: QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
pub fn counts(message: &[u8]) -> Option<[u16; 4]> {
    Some([
        u16_at(message, 4)?,
        u16_at(message, 6)?,
        u16_at(message, 8)?,
        u16_at(message, 10)?,
    ])
}

/// One label of a name, as its first byte says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The root label: the name ends here.
    Root,
    /// A label of this many bytes (1–63) follows.
    Plain(u8),
    /// A compression pointer to this offset of the message: the name
    /// goes on there.
    Pointer(usize),
}

/// The label at `at`; `None` past the end, or for the extended label
/// types (first bits 01, which RFC 6891 retired, and 10, reserved), which
/// nothing sends.
pub fn label(message: &[u8], at: usize) -> Option<Label> {
    let first = *message.get(at)?;
    match first {
        0 => Some(Label::Root),
        1..=63 => Some(Label::Plain(first)),
        0xc0..=0xff => {
            let low = *message.get(at.checked_add(1)?)?;
            Some(Label::Pointer(
                (usize::from(first & 0x3f) << 8) | usize::from(low),
            ))
        }
        _ => None,
    }
}

/// Where a name ends in a message, read without following its pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAt {
    /// The offset just past it: past its root label, or past the
    /// compression pointer that ends it.
    pub end: usize,
    /// Where that pointer leads, if the name ends with one.
    pub pointer: Option<usize>,
}

/// The name that starts at `at`, read to its root label or to the
/// compression pointer that ends it (not followed: what follows a name in
/// a message starts there either way).
pub fn name(message: &[u8], mut at: usize) -> Option<NameAt> {
    loop {
        match label(message, at)? {
            Label::Root => {
                return Some(NameAt {
                    end: at.checked_add(1)?,
                    pointer: None,
                });
            }
            Label::Plain(length) => at = at.checked_add(1 + usize::from(length))?,
            Label::Pointer(target) => {
                return Some(NameAt {
                    end: at.checked_add(2)?,
                    pointer: Some(target),
                });
            }
        }
    }
}

/// Where the name at `at` ends (see [`name`]).
pub fn name_end(message: &[u8], at: usize) -> Option<usize> {
    name(message, at).map(|name| name.end)
}

/// Where the first `count` questions, starting after the header, end:
/// each a name, then 4 bytes of type and class.
pub fn questions_end(message: &[u8], count: u16) -> Option<usize> {
    let mut at = HEADER;
    for _ in 0..count {
        at = name_end(message, at)?.checked_add(4)?;
    }
    (at <= message.len()).then_some(at)
}

/// A resource record's place in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAt {
    /// Where it starts: its owner name.
    pub start: usize,
    /// Where its fixed fields start, past the owner name: TYPE, then
    /// CLASS at `fixed + 2`, TTL at `fixed + 4`, RDLENGTH at `fixed + 8`.
    pub fixed: usize,
    /// Its TYPE.
    pub rtype: u16,
    /// Its RDATA, which ends the record.
    pub data: Range<usize>,
}

impl RecordAt {
    /// Where the next record starts.
    pub fn end(&self) -> usize {
        self.data.end
    }
}

/// The record that starts at `at`, if all of it is in `message`.
pub fn record(message: &[u8], at: usize) -> Option<RecordAt> {
    let fixed = name_end(message, at)?;
    let rtype = u16_at(message, fixed)?;
    let length = u16_at(message, fixed.checked_add(8)?)?;
    let data_at = fixed.checked_add(10)?;
    let data_end = data_at.checked_add(usize::from(length))?;
    (data_end <= message.len()).then_some(RecordAt {
        start: at,
        fixed,
        rtype,
        data: data_at..data_end,
    })
}

/// The first OPT record of `message`, walking every section; `None` if it
/// has none or a record before it does not read. In a message hickory
/// parsed, that is its only OPT record, in the additional section.
pub fn opt_record(message: &[u8]) -> Option<RecordAt> {
    let [questions, answers, authorities, additionals] = counts(message)?;
    let mut at = questions_end(message, questions)?;
    let records = usize::from(answers) + usize::from(authorities) + usize::from(additionals);
    for _ in 0..records {
        let record = record(message, at)?;
        if record.rtype == OPT {
            return Some(record);
        }
        at = record.end();
    }
    None
}

/// Whether each of the `count` questions in `section`, a message's
/// question section (which starts at offset [`HEADER`] of the message),
/// reads only bytes of that section, compression pointers followed: `false`
/// if a name points into the header, directly or through another pointer,
/// or does not read at all.
pub fn questions_stay_in_section(section: &[u8], count: usize) -> bool {
    let mut at = 0;
    for _ in 0..count {
        match name_end_in_section(section, at) {
            // Type and class follow the name.
            Some(end) => at = end + 4,
            None => return false,
        }
    }
    true
}

/// Where the name at `at` of the question section `section` ends, if it
/// reads only bytes of the section, following its pointers.
fn name_end_in_section(section: &[u8], mut at: usize) -> Option<usize> {
    let mut end = None;
    // hickory's parser only follows pointers backwards, so a chain is
    // short; the bound is for names that never passed it.
    for _ in 0..=section.len() {
        match label(section, at)? {
            Label::Root => return Some(end.unwrap_or(at + 1)),
            Label::Plain(length) => at = at.checked_add(1 + usize::from(length))?,
            Label::Pointer(target) => {
                end.get_or_insert(at + 2);
                at = target.checked_sub(HEADER)?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cdn.meridian.test. A IN`, an answer named by a pointer to it, and
    /// an OPT record with one option.
    fn message() -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        m.extend_from_slice(b"\x03cdn\x08meridian\x04test\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 0]);
        m
    }

    #[test]
    fn names_questions_and_records_are_walked() {
        let m = message();
        assert_eq!(
            name(&m, HEADER),
            Some(NameAt {
                end: 31,
                pointer: None
            })
        );
        assert_eq!(questions_end(&m, 1), Some(35));
        assert_eq!(
            name(&m, 35),
            Some(NameAt {
                end: 37,
                pointer: Some(12)
            })
        );
        let answer = record(&m, 35).unwrap();
        assert_eq!((answer.fixed, answer.rtype), (37, 1));
        assert_eq!(&m[answer.data.clone()], &[192, 0, 2, 1]);
        let opt = opt_record(&m).unwrap();
        assert_eq!((opt.start, opt.fixed, opt.rtype), (51, 52, OPT));
        assert_eq!(&m[opt.data.clone()], &[0, 10, 0, 0]);
        assert_eq!(opt.end(), m.len());
        // Without its last byte the OPT record does not read.
        assert_eq!(opt_record(&m[..m.len() - 1]), None);
        assert_eq!(counts(&m), Some([1, 1, 0, 1]));
        assert_eq!(counts(&m[..11]), None);
    }

    #[test]
    fn labels_of_retired_types_and_names_off_the_end_do_not_read() {
        assert_eq!(label(&[0x40], 0), None);
        assert_eq!(label(&[0x80, 0], 0), None);
        assert_eq!(label(&[0xc0], 0), None, "half a pointer");
        assert_eq!(label(&[0xc1, 0x02], 0), Some(Label::Pointer(0x102)));
        assert_eq!(name(&[3, b'a', b'b'], 0), None, "runs off the end");
        assert_eq!(name(&[], 0), None);
        assert_eq!(questions_end(&[0; 11], 0), None, "no header");
    }

    #[test]
    fn questions_that_reach_into_the_header_are_found() {
        let plain = b"\x01a\x00\x00\x01\x00\x01";
        assert!(questions_stay_in_section(plain, 1));
        let mut two = plain.to_vec();
        two.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(questions_stay_in_section(&two, 2));
        assert!(!questions_stay_in_section(&[0xc0, 2, 0, 1, 0, 1], 1));
        assert!(!questions_stay_in_section(&[0xc0], 1));
        // A loop never read by hickory: bounded, not followed forever.
        assert!(!questions_stay_in_section(&[0xc0, 12], 1));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_walkers() {
        for input in crate::testing::hostile_variants(&[message()], 80) {
            let _ = opt_record(&input);
            let _ = questions_end(&input, u16::MAX);
            for at in 0..input.len() {
                let _ = record(&input, at);
            }
            let _ = questions_stay_in_section(&input, 3);
        }
    }
}
