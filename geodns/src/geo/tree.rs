//! The search tree of a MaxMind DB file, walked network by network, with
//! every step paid for.
//!
//! Why this is hand-written: the table ([`crate::table`]) needs every
//! network of the database once, and maxminddb's `within` iterator cannot
//! be bounded from outside. One call to its `next` descends through as many
//! nodes as it takes to find the next network to yield, and skips the
//! IPv4 aliases silently; in a file whose nodes share subtrees (both
//! records of a node pointing at the same next node, down the tree: valid
//! to every reader, a few hundred bytes), the paths multiply by two at
//! every level, so a walk of an IPv6 tree 128 levels deep never ends,
//! inside one `next`, where no caller can stop it. Its node reader is
//! private, so the walk itself is here; reading the records' data stays
//! with maxminddb (see [`super::GeoDatabase::scan`]).
//!
//! The format (<https://maxmind.github.io/MaxMind-DB/>): `node_count`
//! nodes, each two records of `record_size` bits (left for a 0 bit, right
//! for a 1). A record below `node_count` is the next node; `node_count`
//! itself means "no data"; above it, the record points into the data
//! section. An IPv6 database holds IPv4 at `::/96` (the node reached by
//! 96 left turns), and usually points other prefixes (`::ffff:0:0/96`,
//! `2002::/16`, ...) at that same node: aliases, which the IPv6 walk skips
//! (the table fills them from the IPv4 walk).
//!
//! Every node or record taken off the walk's stack costs one unit of
//! [`Work`]: a tree of N nodes has N + 1 networks and takes at most 2N + 1
//! steps, however it is laid out, so the budget only runs out on a file
//! that is not a tree.

use super::{GeoError, Work};

/// What a network of the database leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    /// The database has no data for it.
    NoData,
    /// A record pointing into the data section (the raw record value).
    Data(usize),
}

/// A database's search tree, read straight from the file's bytes.
pub(crate) struct SearchTree<'a> {
    /// The whole file (the tree is at its start).
    bytes: &'a [u8],
    node_count: usize,
    record_size: u16,
    /// 4 or 6.
    ip_version: u16,
    /// In an IPv6 database, what 96 left turns from the root reach: the
    /// IPv4 subtree's root when it is a node.
    ipv4_start: usize,
}

impl<'a> SearchTree<'a> {
    /// The tree of the file `bytes`, described by its metadata (which the
    /// caller's maxminddb reader has validated: the tree lies inside the
    /// file, the record size is 24, 28 or 32).
    pub(crate) fn new(
        bytes: &'a [u8],
        node_count: u32,
        record_size: u16,
        ip_version: u16,
    ) -> Result<Self, String> {
        if !matches!(record_size, 24 | 28 | 32) {
            return Err(format!("record size {record_size} is not 24, 28 or 32"));
        }
        let node_count = usize::try_from(node_count).map_err(|_| "too many nodes".to_owned())?;
        let mut tree = SearchTree {
            bytes,
            node_count,
            record_size,
            ip_version,
            ipv4_start: 0,
        };
        if ip_version == 6 {
            let mut node = 0;
            for _ in 0..96 {
                if node >= node_count {
                    break;
                }
                node = tree.record(node, 0)?;
            }
            tree.ipv4_start = node;
        }
        Ok(tree)
    }

    /// Record `side` (0 left, 1 right) of node `node`.
    fn record(&self, node: usize, side: usize) -> Result<usize, String> {
        let node_bytes = usize::from(self.record_size) / 4;
        let out_of_file = || format!("node {node} lies outside the file");
        let at = node.checked_mul(node_bytes).ok_or_else(out_of_file)?;
        let end = at.checked_add(node_bytes).ok_or_else(out_of_file)?;
        let b = self.bytes.get(at..end).ok_or_else(out_of_file)?;
        let be = |bytes: &[u8]| bytes.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b));
        Ok(match (self.record_size, side) {
            (24, 0) => be(&b[0..3]),
            (24, _) => be(&b[3..6]),
            // The middle byte holds the high nibble of both records.
            (28, 0) => (usize::from(b[3] >> 4) << 24) | be(&b[0..3]),
            (28, _) => (usize::from(b[3] & 0x0f) << 24) | be(&b[4..7]),
            (_, 0) => be(&b[0..4]),
            (_, _) => be(&b[4..8]),
        })
    }

    /// Whether an IPv6 database keeps IPv4 in a subtree of its own.
    fn has_ipv4_subtree(&self) -> bool {
        self.ip_version == 6 && self.ipv4_start < self.node_count
    }

    /// Visits every network of one family in address order, as (first
    /// address, prefix length, leaf), paying one unit of `work` per step.
    /// The IPv6 walk skips the IPv4 subtree wherever it is pointed at (at
    /// `::/96` and in the aliases): those are gaps. An IPv4 database has
    /// one IPv6 network without data; an IPv6 database without an IPv4
    /// subtree has one IPv4 network, the IPv6 one above `::/96`.
    pub(crate) fn walk(
        &self,
        ipv6: bool,
        work: &mut Work<'_>,
        mut visit: impl FnMut(u128, u8, Leaf) -> Result<(), GeoError>,
    ) -> Result<(), GeoError> {
        let leaf = |record: usize| {
            if record == self.node_count {
                Leaf::NoData
            } else {
                Leaf::Data(record)
            }
        };
        let (root, bits): (usize, u32) = match (ipv6, self.ip_version) {
            (true, 4) => return visit(0, 0, Leaf::NoData),
            (true, _) => (0, 128),
            (false, 4) => (0, 32),
            (false, _) if self.has_ipv4_subtree() => (self.ipv4_start, 32),
            (false, _) => return visit(0, 0, leaf(self.ipv4_start)),
        };
        let skip_aliases = ipv6 && self.has_ipv4_subtree();
        // (node or record, first address, depth); at most one entry per
        // level waits on the stack, so it never holds more than 129.
        let mut stack: Vec<(usize, u128, u32)> = vec![(root, 0, 0)];
        while let Some((value, start, depth)) = stack.pop() {
            work.charge(1)?;
            if value >= self.node_count {
                // `depth` is at most `bits`, 128.
                visit(start, u8::try_from(depth).unwrap_or(u8::MAX), leaf(value))?;
                continue;
            }
            if depth >= bits {
                return Err(work.invalid(format!(
                    "its search tree goes on past bit {bits} (node {value})"
                )));
            }
            let right_start = start | (1u128 << (bits - 1 - depth));
            for (side, first) in [(1, right_start), (0, start)] {
                let child = self.record(value, side).map_err(|e| work.invalid(e))?;
                if skip_aliases && child == self.ipv4_start {
                    continue;
                }
                stack.push((child, first, depth + 1));
            }
        }
        Ok(())
    }
}
