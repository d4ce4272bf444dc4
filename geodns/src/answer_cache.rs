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
//! It is a memo and calls nothing: the responder ([`crate::responder`])
//! places the client, asks [`AnswerCache::recall`], has the handler build
//! what was not remembered, and hands it to [`AnswerCache::remember`].
//!
//! The key is everything the reply depends on: the snapshot (config, zone,
//! table) by its id, the edges' health by its generation, the query ID's
//! turn (`id % turns`: which of a region's edges a steered answer puts
//! first, see [`crate::answer`]), the header flags,
//! the question's exact bytes (replies echo the question's letter case),
//! the OPT record's size, flags and version, the ECS option's family and
//! prefix, whether the ECS address was usable, and the table's decision for
//! the client (which region order, which scope, which country: the reply
//! does not depend on it, but what it counts does). Each UDP worker thread has
//! its own cache, so nothing is shared or locked; it is emptied when the
//! snapshot or the health generation changes, and when it is full.

use crate::answer::Placed;
use crate::ecs::{self, Ecs};
use crate::metrics::Counts;
use crate::snapshot::Snapshot;
use crate::wire::{self, ECS, HEADER, OPT, u16_at};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// How many replies one worker remembers before starting over.
const CAPACITY: usize = 8192;

/// The largest key: 38 bytes of fixed fields and a question of at most a
/// 255-byte name plus type and class.
const MAX_KEY: usize = 38 + wire::MAX_NAME + 4;

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

/// What [`AnswerCache::recall`] found.
// A miss carries its key (a few hundred bytes) on the stack on purpose:
// boxing it would cost an allocation per miss, and a `Recall` is only
// ever returned, once per datagram, never stored.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Recall {
    /// The remembered reply is in the caller's buffer, patched; it counts
    /// as this.
    Hit(Counts),
    /// Nothing remembered: what [`AnswerCache::remember`] needs to keep
    /// the reply once it is built.
    Miss(Miss),
}

/// A query the cache did not have, and under which key to keep its reply.
pub(crate) struct Miss {
    /// The key and its hash; `None` without one (never for a query
    /// [`QueryShape::read`] accepts, placed with its decision).
    key: Option<(Key, u64)>,
    /// The health generation the reply will be built under.
    generation: u64,
}

impl AnswerCache {
    /// Looks up the reply to `shape` for the client `placed`, with its
    /// decision in `snapshot`'s table; on a hit, writes it into `out`
    /// (emptied first) with the query's ID and ECS address.
    pub(crate) fn recall(
        &mut self,
        snapshot: &Snapshot,
        shape: &QueryShape<'_>,
        placed: &Placed<'_>,
        out: &mut Vec<u8>,
    ) -> Recall {
        out.clear();
        let generation = snapshot.health.generation();
        if self.era != (snapshot.id, generation) {
            self.entries.clear();
            self.era = (snapshot.id, generation);
        }
        let Some(key) = key_of(shape, snapshot, generation, placed) else {
            return Recall::Miss(Miss {
                key: None,
                generation,
            });
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
            return Recall::Hit(entry.counts);
        }
        Recall::Miss(Miss {
            key: Some((key, hash)),
            generation,
        })
    }

    /// Keeps `reply`, built the full way for the query `shape` that
    /// [`AnswerCache::recall`] missed, and counted as `counts`: only if
    /// the health it was built under still holds, and the fields to patch
    /// are where they must be.
    pub(crate) fn remember(
        &mut self,
        snapshot: &Snapshot,
        miss: Miss,
        shape: &QueryShape<'_>,
        reply: &[u8],
        counts: Counts,
    ) {
        let Some((key, hash)) = miss.key else {
            return;
        };
        if snapshot.health.generation() != miss.generation {
            return;
        }
        let Some(address_at) = patch_points(reply, shape) else {
            return;
        };
        if self.entries.len() >= CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(
            hash,
            Entry {
                key: key.as_slice().into(),
                reply: reply.into(),
                address_at,
                counts,
            },
        );
    }
}

/// Everything the reply to `shape` from the client `placed`, answered
/// from `snapshot` under the health `generation`, depends on, as bytes;
/// `None` if the client's decision was not looked up.
fn key_of(
    shape: &QueryShape<'_>,
    snapshot: &Snapshot,
    generation: u64,
    placed: &Placed<'_>,
) -> Option<Key> {
    let decision = placed.decision()?;
    let mut key = Key::new();
    key.push(&snapshot.id.to_be_bytes())?;
    key.push(&generation.to_be_bytes())?;
    // A steered answer depends on the ID only through its turn; the ID
    // itself is patched in.
    let turns = snapshot.zone.turns().max(1);
    let turn = u16::try_from(usize::from(u16::from_be_bytes(shape.id)) % turns).ok()?;
    key.push(&turn.to_be_bytes())?;
    key.push(&shape.flags)?;
    match shape.opt {
        None => key.push(&[0])?,
        Some(opt) => {
            key.push(&[1])?;
            key.push(&opt.size_and_flags)?;
        }
    }
    match shape.ecs() {
        None => key.push(&[0, 0, 0, 0])?,
        Some(ecs) => {
            key.push(&ecs.family.to_be_bytes())?;
            key.push(&[ecs.source_prefix])?;
            key.push(&[u8::from(placed.client.subnet.is_some())])?;
        }
    }
    key.push(&decision.order_id.to_be_bytes())?;
    key.push(&[decision.scope])?;
    // A remembered reply counts as its first did, its client's country
    // included ([`crate::flows`]): clients of two countries that get the
    // same reply are two keys.
    key.push(&decision.country.to_be_bytes())?;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A query for `name` type A, with an OPT record of `size` holding
    /// `options` when `size` is given.
    pub(crate) fn query(name: &str, size: Option<u16>, options: &[u8]) -> Vec<u8> {
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

    /// A Client Subnet option, code and length included.
    pub(crate) fn ecs_option(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
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
        for bytes in crate::testing::hostile_variants(&[good], 80) {
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
}
