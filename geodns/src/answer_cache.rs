//! Replies remembered per question, so a repeated query skips hickory.
//!
//! Why this exists: parsing a query into hickory's `Request` and encoding
//! the reply with hickory's encoder costs about 2 µs per query here, five
//! times gdnsd's whole user-space cost per query, and was what held GeoDNS
//! below gdnsd's answers per CPU-second. Yet almost every query a steering
//! server gets is one of a few shapes, asked again and again: one question,
//! perhaps an OPT record with an EDNS Client Subnet option. The reply to
//! such a query is a pure function of a handful of inputs, so the reply
//! hickory built the first time can be sent again with two fields patched.
//!
//! What is hand-written here, and why it is safe:
//! - [`QueryShape::read`] recognises the common shape and nothing else:
//!   header with QR and opcode 0, one question whose name has only plain
//!   labels (no compression), no answer or authority records, and either
//!   nothing more or exactly one EDNS version 0 OPT record holding nothing
//!   or exactly one well-formed ECS option (scope 0, address as long as its
//!   prefix says, no bits set past the prefix), ending exactly at the end
//!   of the datagram. Anything else, however legal, goes to hickory as
//!   before. It only reads, with bounds-checked slices, and never panics.
//! - Replies are never built here. Every byte of a remembered reply was
//!   written by hickory for a query with the same key, and only the two
//!   fields that vary within a key are overwritten: the query ID, and the
//!   echoed ECS address (whose position is verified when the reply is
//!   remembered; replies where it cannot be found are not remembered).
//!
//! The key is everything the reply depends on: the snapshot (config, zone,
//! table) by its id, the edges' health by its generation, the header flags,
//! the question's exact bytes (replies echo the question's letter case),
//! the OPT record's size, flags and version, the ECS option's family and
//! prefix, whether the ECS address was usable, and the table's decision for
//! the client (which region order, which scope). Each UDP worker thread has
//! its own cache, so nothing is shared or locked; it is emptied when the
//! snapshot or the health generation changes, and when it is full.

use crate::answer::client_of;
use crate::ecs::{self, Ecs};
use crate::handler::{Counts, GeoDnsHandler};
use crate::snapshot::Snapshot;
use crate::wire::{self, ECS, HEADER, OPT, u16_at};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

/// How many replies one worker remembers before starting over.
const CAPACITY: usize = 8192;

/// The largest key: 34 bytes of fixed fields and a question of at most a
/// 255-byte name plus type and class.
const MAX_KEY: usize = 34 + wire::MAX_NAME + 4;

/// A query of the common shape, as slices of the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueryShape<'a> {
    /// The query ID.
    id: [u8; 2],
    /// The header's flag bytes.
    flags: [u8; 2],
    /// The question section: name, type, class.
    question: &'a [u8],
    /// The OPT record, if the query has one.
    opt: Option<OptShape<'a>>,
}

/// The parts of an OPT record a reply depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OptShape<'a> {
    /// CLASS (the client's UDP size) and TTL (extended RCODE, version,
    /// flags), as sent.
    size_and_flags: [u8; 6],
    /// Its Client Subnet option, if it has one.
    ecs: Option<Ecs<'a>>,
}

impl<'a> QueryShape<'a> {
    /// `datagram` if it is a query of the common shape; `None` for
    /// anything else (which then takes the full path).
    pub(crate) fn read(datagram: &'a [u8]) -> Option<QueryShape<'a>> {
        let header = datagram.get(..HEADER)?;
        let flags = [header[2], header[3]];
        // QR = 0 (a query) and OPCODE = 0 (QUERY).
        if flags[0] & 0xf8 != 0 {
            return None;
        }
        let additional = match wire::counts(header)? {
            [1, 0, 0, n @ (0 | 1)] => n,
            _ => return None,
        };
        // One name of plain labels: a compression pointer or an extended
        // label type is legal in places, but not the common shape.
        let name = wire::name(datagram, HEADER)?;
        if name.pointer.is_some() || name.end - HEADER > wire::MAX_NAME {
            return None;
        }
        let question_end = name.end.checked_add(4)?;
        let question = datagram.get(HEADER..question_end)?;
        let opt = match additional {
            0 if question_end == datagram.len() => None,
            1 => Some(OptShape::read(datagram, question_end)?),
            _ => return None,
        };
        Some(QueryShape {
            id: [header[0], header[1]],
            flags,
            question,
            opt,
        })
    }

    /// The query's Client Subnet option, if it has one.
    pub(crate) fn ecs(&self) -> Option<Ecs<'a>> {
        self.opt.and_then(|opt| opt.ecs)
    }
}

impl<'a> OptShape<'a> {
    /// The OPT record at `at`, which must end the datagram: owned by the
    /// root, EDNS version 0, holding nothing or exactly one Client Subnet
    /// option that RFC 7871 §6 allows, read by the handler's own reader
    /// ([`crate::ecs::from_options`]): what it refuses goes to the
    /// handler, which answers FORMERR.
    fn read(datagram: &'a [u8], at: usize) -> Option<OptShape<'a>> {
        let record = wire::record(datagram, at)?;
        let owned_by_root = record.fixed == at + 1;
        if !owned_by_root || record.rtype != OPT || record.end() != datagram.len() {
            return None;
        }
        let fixed = datagram.get(record.fixed + 2..record.fixed + 8)?;
        let size_and_flags = [fixed[0], fixed[1], fixed[2], fixed[3], fixed[4], fixed[5]];
        // TTL: extended RCODE, VERSION, flags. Only version 0 is answered
        // normally; other versions get BADVERS from the full path.
        if size_and_flags[3] != 0 {
            return None;
        }
        let options = datagram.get(record.data)?;
        let ecs = match ecs::from_options(options).ok()? {
            None if options.is_empty() => None,
            Some(ecs) if ecs.wire_len() == options.len() => Some(ecs),
            _ => return None,
        };
        Some(OptShape {
            size_and_flags,
            ecs,
        })
    }
}

/// A key, built in place without allocating.
struct Key {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl Key {
    fn new() -> Key {
        Key {
            bytes: [0; MAX_KEY],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.bytes.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A remembered reply.
struct Entry {
    key: Box<[u8]>,
    reply: Box<[u8]>,
    /// Where the echoed ECS address starts in `reply` (it runs to the end).
    address_at: Option<usize>,
    counts: Counts,
}

/// One UDP worker's remembered replies.
pub(crate) struct AnswerCache {
    entries: HashMap<u64, Entry>,
    hasher: RandomState,
    /// The snapshot id and health generation the entries belong to.
    era: (u64, u64),
}

impl Default for AnswerCache {
    fn default() -> Self {
        AnswerCache {
            entries: HashMap::new(),
            hasher: RandomState::new(),
            era: (0, 0),
        }
    }
}

/// The answer to a query: its reply bytes (in the caller's buffer) and
/// whether they came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A remembered reply, patched.
    Remembered,
    /// A reply built by hickory (and remembered if it could be).
    Built,
    /// Nothing to send.
    Nothing,
}

impl AnswerCache {
    /// Writes the reply to `datagram` from `source` into `out`.
    pub(crate) fn reply(
        &mut self,
        handler: &GeoDnsHandler,
        snapshot: &Snapshot,
        datagram: &[u8],
        source: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Served {
        out.clear();
        // Port 0 cannot be answered, and answering it could hit anything.
        if source.port() == 0 {
            return Served::Nothing;
        }
        let Some(shape) = QueryShape::read(datagram) else {
            return build(handler, snapshot, datagram, source, out);
        };
        let generation = snapshot.health.generation();
        if self.era != (snapshot.id, generation) {
            self.entries.clear();
            self.era = (snapshot.id, generation);
        }
        let Some(key) = key_of(&shape, snapshot, source) else {
            return build(handler, snapshot, datagram, source, out);
        };
        let hash = self.hasher.hash_one(key.as_slice());
        if let Some(entry) = self.entries.get(&hash)
            && *entry.key == *key.as_slice()
        {
            out.extend_from_slice(&entry.reply);
            out[..2].copy_from_slice(&shape.id);
            if let (Some(at), Some(ecs)) = (entry.address_at, shape.ecs()) {
                out[at..].copy_from_slice(ecs.address);
            }
            handler.count(snapshot, &entry.counts);
            return Served::Remembered;
        }
        let Some(counts) = build_counted(handler, snapshot, datagram, source, out) else {
            return Served::Nothing;
        };
        // Not an answer the handler counted (a FORMERR for a query hickory
        // could not parse): sent, never remembered.
        let Some(counts) = counts else {
            return Served::Built;
        };
        // Remember it only if the health it was built under still holds,
        // and the fields to patch are where they must be.
        if snapshot.health.generation() == generation
            && let Some(address_at) = patch_points(out, &shape)
        {
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
            self.entries.insert(
                hash,
                Entry {
                    key: key.as_slice().into(),
                    reply: out.as_slice().into(),
                    address_at,
                    counts,
                },
            );
        }
        Served::Built
    }
}

/// Everything the reply to `shape` from `source` depends on, as bytes.
fn key_of(shape: &QueryShape<'_>, snapshot: &Snapshot, source: SocketAddr) -> Option<Key> {
    let ecs = shape.ecs();
    let client = client_of(ecs.map(|e| e.subnet()), source.ip());
    let decision = snapshot.table.decide(client.ip);
    let mut key = Key::new();
    key.push(&snapshot.id.to_be_bytes())?;
    key.push(&snapshot.health.generation().to_be_bytes())?;
    key.push(&shape.flags)?;
    match shape.opt {
        None => key.push(&[0])?,
        Some(opt) => {
            key.push(&[1])?;
            key.push(&opt.size_and_flags)?;
        }
    }
    match ecs {
        None => key.push(&[0, 0, 0, 0])?,
        Some(ecs) => {
            key.push(&ecs.family.to_be_bytes())?;
            key.push(&[ecs.source_prefix])?;
            key.push(&[u8::from(client.subnet.is_some())])?;
        }
    }
    key.push(&decision.order_id.to_be_bytes())?;
    key.push(&[decision.scope])?;
    key.push(shape.question)?;
    Some(key)
}

/// Where a reply to `shape` must be patched: `Some(None)` for the ID only,
/// `Some(Some(at))` for the ID and the ECS address at `at`; `None` when the
/// reply is not where it must be (it is then not remembered).
fn patch_points(reply: &[u8], shape: &QueryShape<'_>) -> Option<Option<usize>> {
    if reply.get(..2)? != shape.id {
        return None;
    }
    let Some(ecs) = shape.ecs() else {
        return Some(None);
    };
    // The echoed option ends the reply: code, length, family, source
    // prefix, scope prefix, address.
    let address_at = reply.len().checked_sub(ecs.address.len())?;
    let option_at = address_at.checked_sub(8)?;
    let option = reply.get(option_at..)?;
    let length = u16::try_from(4 + ecs.address.len()).ok()?;
    let well_placed = u16_at(option, 0)? == ECS
        && u16_at(option, 2)? == length
        && u16_at(option, 4)? == ecs.family
        && option[6] == ecs.source_prefix
        && &option[8..] == ecs.address;
    well_placed.then_some(Some(address_at))
}

/// The full path, without remembering: hickory parses the query and the
/// handler answers it.
fn build(
    handler: &GeoDnsHandler,
    snapshot: &Snapshot,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<u8>,
) -> Served {
    match build_counted(handler, snapshot, datagram, source, out) {
        Some(_) => Served::Built,
        None => Served::Nothing,
    }
}

/// The full path; `Some(None)` for a reply the handler did not answer
/// (and so did not count).
fn build_counted(
    handler: &GeoDnsHandler,
    snapshot: &Snapshot,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<u8>,
) -> Option<Option<Counts>> {
    let reply = crate::udp::full_reply(handler, snapshot, datagram, source)?;
    out.extend_from_slice(&reply.bytes);
    Some(reply.counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A query for `name` type A, with an OPT record of `size` holding
    /// `options` when `size` is given.
    fn query(name: &str, size: Option<u16>, options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0];
        bytes.push(u8::from(size.is_some()));
        for label in name.split('.').filter(|l| !l.is_empty()) {
            bytes.push(label.len() as u8);
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        if let Some(size) = size {
            bytes.extend_from_slice(&[0, 0, 41]);
            bytes.extend_from_slice(&size.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, 0]);
            bytes.extend_from_slice(&(options.len() as u16).to_be_bytes());
            bytes.extend_from_slice(options);
        }
        bytes
    }

    fn ecs_option(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
        let mut option = vec![0, 8];
        option.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
        option.extend_from_slice(&family.to_be_bytes());
        option.extend_from_slice(&[source, scope]);
        option.extend_from_slice(address);
        option
    }

    #[test]
    fn the_common_shapes_are_read() {
        let plain = query("cdn.meridian.test", None, &[]);
        let shape = QueryShape::read(&plain).unwrap();
        assert_eq!(shape.id, [0xab, 0xcd]);
        assert_eq!(shape.flags, [0x01, 0x00]);
        assert_eq!(shape.question.len(), plain.len() - HEADER);
        assert!(shape.opt.is_none());

        let with_ecs = query(
            "cdn.meridian.test",
            Some(1232),
            &ecs_option(1, 24, 0, &[81, 2, 69]),
        );
        let shape = QueryShape::read(&with_ecs).unwrap();
        let ecs = shape.ecs().unwrap();
        assert_eq!(
            (ecs.family, ecs.source_prefix, ecs.address),
            (1, 24, &[81, 2, 69][..])
        );
        assert_eq!(ecs.subnet().addr(), IpAddr::from([81, 2, 69, 0]));

        let opt_only = query("cdn.meridian.test", Some(4096), &[]);
        assert!(QueryShape::read(&opt_only).unwrap().ecs().is_none());

        let v6 = query(
            "x",
            Some(1232),
            &ecs_option(2, 56, 0, &[0x20, 1, 0xd, 0xb8, 0, 0, 0]),
        );
        assert_eq!(
            QueryShape::read(&v6)
                .unwrap()
                .ecs()
                .unwrap()
                .subnet()
                .source_prefix(),
            56
        );
        let zero = query("x", Some(1232), &ecs_option(1, 0, 0, &[]));
        assert!(
            QueryShape::read(&zero)
                .unwrap()
                .ecs()
                .unwrap()
                .address
                .is_empty()
        );
    }

    #[test]
    fn everything_else_takes_the_full_path() {
        let good = query(
            "cdn.meridian.test",
            Some(1232),
            &ecs_option(1, 24, 0, &[81, 2, 69]),
        );
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("a response", {
                let mut q = good.clone();
                q[2] |= 0x80;
                q
            }),
            ("opcode NOTIFY", {
                let mut q = good.clone();
                q[2] |= 4 << 3;
                q
            }),
            ("two questions", {
                let mut q = good.clone();
                q[5] = 2;
                q
            }),
            ("an answer record", {
                let mut q = good.clone();
                q[7] = 1;
                q
            }),
            ("trailing bytes", {
                let mut q = good.clone();
                q.push(0);
                q
            }),
            ("a missing OPT", {
                let mut q = query("cdn.meridian.test", None, &[]);
                q[11] = 1;
                q
            }),
            ("an OPT not counted", {
                let mut q = good.clone();
                q[11] = 0;
                q
            }),
            ("EDNS version 1", {
                let mut q = good.clone();
                // The OPT record (11 bytes) and its ECS option (11 bytes)
                // end the query; the version is the OPT's 7th byte.
                let version_at = q.len() - 22 + 6;
                q[version_at] = 1;
                q
            }),
            (
                "a scope in the query",
                query("x", Some(1232), &ecs_option(1, 24, 8, &[81, 2, 69])),
            ),
            (
                "a short address",
                query("x", Some(1232), &ecs_option(1, 24, 0, &[81, 2])),
            ),
            (
                "bits past the prefix",
                query("x", Some(1232), &ecs_option(1, 23, 0, &[81, 2, 69])),
            ),
            (
                "a /33 for IPv4",
                query("x", Some(1232), &ecs_option(1, 33, 0, &[1, 2, 3, 4, 5])),
            ),
            (
                "family 3",
                query("x", Some(1232), &ecs_option(3, 8, 0, &[1])),
            ),
            (
                "another option",
                query("x", Some(1232), &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
            ),
            ("two options", {
                let mut options = ecs_option(1, 24, 0, &[81, 2, 69]);
                options.extend_from_slice(&[0, 10, 0, 0]);
                query("x", Some(1232), &options)
            }),
            ("a wrong option length", {
                let mut options = ecs_option(1, 24, 0, &[81, 2, 69]);
                options[3] += 1;
                query("x", Some(1232), &options)
            }),
            ("a compressed name", {
                let mut q = query("x", None, &[]);
                q[12] = 0xc0;
                q
            }),
            (
                "a truncated question",
                query("cdn.meridian.test", None, &[])[..20].to_vec(),
            ),
            ("only a header", good[..12].to_vec()),
            ("half a header", good[..6].to_vec()),
            (
                "a name longer than 255",
                query(
                    &["abcdefghijklmnopqrstuvwxyz0123456789"; 8].join("."),
                    None,
                    &[],
                ),
            ),
        ];
        for (what, datagram) in variants {
            assert_eq!(QueryShape::read(&datagram), None, "{what}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic generator: every prefix and every one-byte
        // change of a good query, and pseudo-random datagrams.
        let good = query(
            "cdn.meridian.test",
            Some(1232),
            &ecs_option(1, 24, 0, &[81, 2, 69]),
        );
        for len in 0..=good.len() {
            let _ = QueryShape::read(&good[..len]);
        }
        for at in 0..good.len() {
            for value in [0u8, 1, 0x3f, 0x40, 0x80, 0xc0, 0xff] {
                let mut changed = good.clone();
                changed[at] = value;
                let _ = QueryShape::read(&changed);
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 % 64) & 0xff) as u8)
                .collect();
            let _ = QueryShape::read(&bytes);
        }
    }

    #[test]
    fn patch_points_are_verified() {
        let with_ecs = query("x", Some(1232), &ecs_option(1, 24, 0, &[81, 2, 69]));
        let shape = QueryShape::read(&with_ecs).unwrap();
        // A reply that ends with the echoed option, scope 18.
        let mut reply = vec![0xab, 0xcd, 0x85, 0x00];
        reply.extend_from_slice(&[0; 20]);
        let echo = ecs_option(1, 24, 18, &[81, 2, 69]);
        reply.extend_from_slice(&echo);
        assert_eq!(patch_points(&reply, &shape), Some(Some(reply.len() - 3)));
        // Another ID: not ours.
        let mut other = reply.clone();
        other[0] = 0;
        assert_eq!(patch_points(&other, &shape), None);
        // The option is not at the end.
        let mut moved = reply.clone();
        moved.push(0);
        assert_eq!(patch_points(&moved, &shape), None);
        // No ECS in the query: only the ID.
        let plain = query("x", None, &[]);
        let plain_shape = QueryShape::read(&plain).unwrap();
        assert_eq!(patch_points(&reply, &plain_shape), Some(None));
    }

    mod against_the_full_path {
        use super::super::*;
        use crate::metrics::DnsMetrics;
        use crate::snapshot::Live;
        use hickory_proto::op::{Edns, Message, Query};
        use hickory_proto::rr::rdata::opt::EdnsOption;
        use hickory_proto::rr::{Name, RecordType};
        use std::sync::Arc;

        fn handler() -> (GeoDnsHandler, Arc<Live>) {
            let text = config::DEMO_TOML.replace(
                "edge_addresses = [\"127.0.3.1\"]",
                "edge_addresses = [\"127.0.3.1\", \"127.0.3.3\", \"::3:1\"]",
            );
            let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
            let metrics = Arc::new(DnsMetrics::new().unwrap());
            let snapshot = Snapshot::load(config, &metrics).unwrap();
            let live = Arc::new(Live::from_pointee(snapshot));
            (GeoDnsHandler::new(live.clone(), metrics), live)
        }

        struct Variant {
            name: &'static str,
            rtype: RecordType,
            rd: bool,
            edns: Option<(u16, Option<&'static str>)>,
        }

        fn datagram(variant: &Variant, id: u16, subnet: Option<&str>) -> Vec<u8> {
            let mut message = Message::query();
            message.metadata.id = id;
            message.metadata.recursion_desired = variant.rd;
            message.add_query(Query::query(
                Name::from_ascii(variant.name).unwrap(),
                variant.rtype,
            ));
            if let Some((size, _)) = variant.edns {
                let mut edns = Edns::new();
                edns.set_max_payload(size);
                if let Some(subnet) = subnet {
                    edns.options_mut()
                        .insert(EdnsOption::Subnet(subnet.parse().unwrap()));
                }
                message.set_edns(edns);
            }
            message.to_vec().unwrap()
        }

        /// Every variant, asked with many IDs and ECS addresses, gets from
        /// the cache exactly the bytes the full path gives; and after a
        /// health change, the new answer.
        #[test]
        fn remembered_replies_are_byte_for_byte_what_hickory_builds() {
            let (handler, live) = handler();
            let names = [
                "cdn.meridian.test.",
                "CdN.MeRiDiAn.TeSt.",
                "meridian.test.",
                "nope.meridian.test.",
                "example.com.",
            ];
            let types = [
                RecordType::A,
                RecordType::AAAA,
                RecordType::SOA,
                RecordType::NS,
            ];
            let ecs_sets: [&[&str]; 6] = [
                &["81.2.69.0/24", "81.2.70.0/24", "2.26.0.0/24"],
                &["8.8.8.0/24", "1.0.0.0/24", "8.8.0.0/16"],
                &["1.0.16.0/24", "203.116.1.0/24"],
                &["10.0.0.0/8", "192.168.1.0/24"],
                &["0.0.0.0/0"],
                &["2001:4860:4860::/56", "2a00:1450::/32"],
            ];
            let sources: [SocketAddr; 2] = [
                "127.0.0.1:5000".parse().unwrap(),
                "81.2.69.142:5353".parse().unwrap(),
            ];
            let mut variants = Vec::new();
            for name in names {
                for rtype in types {
                    for rd in [false, true] {
                        variants.push(Variant {
                            name,
                            rtype,
                            rd,
                            edns: None,
                        });
                        for size in [512, 1232, 4096, 100] {
                            variants.push(Variant {
                                name,
                                rtype,
                                rd,
                                edns: Some((size, None)),
                            });
                        }
                    }
                }
            }
            let mut cache = AnswerCache::default();
            let mut out = Vec::new();
            let mut remembered = 0;
            for round in 0..2 {
                for variant in &variants {
                    for (set, subnets) in ecs_sets.iter().enumerate() {
                        let with_ecs = variant.edns.is_some() && variant.rtype == RecordType::A;
                        if !with_ecs && set > 0 {
                            continue;
                        }
                        for (i, subnet) in subnets.iter().enumerate() {
                            for source in sources {
                                let id = (round * 1000 + set * 100 + i * 10) as u16 + 7;
                                let bytes = datagram(variant, id, with_ecs.then_some(*subnet));
                                let snapshot = live.load();
                                let served =
                                    cache.reply(&handler, &snapshot, &bytes, source, &mut out);
                                let expected =
                                    crate::udp::full_reply(&handler, &snapshot, &bytes, source)
                                        .unwrap();
                                assert_eq!(
                                    out, expected.bytes,
                                    "{} {:?} rd={} edns={:?} ecs={subnet} from {source}",
                                    variant.name, variant.rtype, variant.rd, variant.edns
                                );
                                if served == Served::Remembered {
                                    remembered += 1;
                                }
                            }
                        }
                    }
                }
                // Between rounds, eu-west goes down: nothing remembered
                // before may be served after.
                live.load().health.set_edge(1, 0, false);
            }
            assert!(
                remembered > 500,
                "only {remembered} replies were remembered"
            );
        }

        /// A query's Client Subnet option as RFC 7871 §6 forbids: FORMERR,
        /// the same bytes from the answer cache as from hickory and the
        /// handler, never remembered, and no subnet echoed.
        #[test]
        fn malformed_client_subnets_get_formerr_on_both_paths() {
            let (handler, live) = handler();
            let ask = |options: &[u8]| super::query("cdn.meridian.test", Some(1232), options);
            let ecs = super::ecs_option;
            let mut variants: Vec<(&str, Vec<u8>)> = vec![
                // The hostile review's query: 51.2.79.0 sent as a /20.
                ("bits past the prefix", ask(&ecs(1, 20, 0, &[51, 2, 0x4f]))),
                (
                    "an extra address octet",
                    ask(&ecs(1, 24, 0, &[81, 2, 69, 0])),
                ),
                ("an extra octet at /0", ask(&ecs(1, 0, 0, &[81]))),
                ("a scope in the query", ask(&ecs(1, 24, 8, &[81, 2, 69]))),
                ("a scope at /0", ask(&ecs(2, 0, 64, &[]))),
                ("family 3", ask(&ecs(3, 8, 0, &[81]))),
                ("a /33 for IPv4", ask(&ecs(1, 33, 0, &[81, 2, 69, 142, 0]))),
                ("a /129 for IPv6", ask(&ecs(2, 129, 0, &[0x20; 17]))),
                ("a short address", ask(&ecs(1, 24, 0, &[81, 2]))),
            ];
            let mut two = ecs(1, 24, 0, &[81, 2, 69]);
            two.extend(ecs(1, 16, 0, &[8, 8]));
            variants.push(("two subnets", ask(&two)));
            let mut cut = ecs(1, 24, 0, &[81, 2, 69]);
            cut[3] += 2;
            variants.push(("a subnet running past its record", ask(&cut)));
            let source: SocketAddr = "127.0.0.1:5000".parse().unwrap();
            let mut cache = AnswerCache::default();
            let mut out = Vec::new();
            for (what, datagram) in &variants {
                for round in 0..2 {
                    let snapshot = live.load();
                    let served = cache.reply(&handler, &snapshot, datagram, source, &mut out);
                    assert_eq!(served, Served::Built, "{what}, round {round}");
                    let full =
                        crate::udp::full_reply(&handler, &snapshot, datagram, source).unwrap();
                    assert_eq!(out, full.bytes, "{what}");
                    assert_eq!(out[3] & 0x0f, 1, "{what}: FORMERR");
                    let reply = Message::from_vec(&out).unwrap();
                    assert!(reply.answers.is_empty(), "{what}");
                    // The option hickory cannot even read gets hickory's
                    // bare FORMERR; the others an OPT without a subnet.
                    let subnet = reply
                        .edns
                        .as_ref()
                        .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet));
                    assert!(subnet.is_none(), "{what}: nothing echoed");
                }
            }
            // The well-formed /20 of the same client is answered, and
            // echoed as sent.
            let good = ask(&ecs(1, 20, 0, &[51, 2, 0x40]));
            for round in 0..2 {
                let snapshot = live.load();
                let served = cache.reply(&handler, &snapshot, &good, source, &mut out);
                assert_eq!(served == Served::Remembered, round == 1);
                let reply = Message::from_vec(&out).unwrap();
                assert_eq!(
                    reply.metadata.response_code,
                    hickory_proto::op::ResponseCode::NoError
                );
                match reply
                    .edns
                    .as_ref()
                    .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet))
                {
                    Some(EdnsOption::Subnet(echo)) => {
                        assert_eq!(echo.addr(), std::net::IpAddr::from([51, 2, 64, 0]));
                        assert_eq!(echo.source_prefix(), 20);
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}
