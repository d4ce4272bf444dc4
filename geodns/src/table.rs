//! The steering table: every address's region order, computed once per load.
//!
//! Why it exists: a steered answer depends on the client's address only
//! through the region order it gets, and an EDNS Client Subnet reply must say
//! how much of the address that answer depended on (RFC 7871 §7.2.1, the
//! SCOPE PREFIX-LENGTH). Both questions are answered here, from one table.
//!
//! When a config or database loads, every network of the database is placed
//! (`GeoDatabase::scan`), ordered by [`Steering`] (country and continent
//! overrides, distance, default), then the non-public ranges are set to the
//! default order (the database is never consulted for them, as in
//! [`GeoDatabase::place`]), the network overrides are painted on top, least
//! specific first, and adjacent ranges with the same order are merged. What
//! remains is a sorted list of ranges covering each address family.
//!
//! Answering is then a binary search, with no database lookup and no
//! haversine per query. The scope is the widest prefix around the client's
//! address that stays inside its range: every address it covers gets the
//! same order, so the same answer whatever the edges' health, and the next
//! wider prefix would include an address that gets a different order. This is
//! what gdnsd computes by merging its database tree; like there, it is never
//! longer than the database network the address fell in.
//!
//! The client's country is kept beside, in ranges of its own merged by
//! country (for the live view's flows, [`crate::flows`]): merging the order
//! ranges by country too would narrow the ECS scopes, which must follow the
//! order alone. A decision is thus two binary searches.
//!
//! Pure after construction: no I/O, no clock.

use crate::flows::{CountryId, country_id, unknown};
use crate::geo::{DbRecord, GeoDatabase, GeoError, LoadLimit, Work, canonical};
use crate::steering::{Steering, overridden};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// Where IPv4 addresses sit inside the IPv6 tree of a database (`::/96`),
/// and so how a scope found in the IPv4 table maps to an IPv6 one.
const IPV4_IN_IPV6_BITS: u8 = 96;

/// Addresses that are never placed ([`crate::geo::is_public`]): they get the
/// default order unless a network override says otherwise.
const NON_PUBLIC_V4: [&str; 9] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];
const NON_PUBLIC_V6: [&str; 5] = ["::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"];

/// Every address's region order, as sorted ranges per family.
#[derive(Debug)]
pub struct GeoTable {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    /// The same addresses' countries ([`CountryId`]s as `u32`).
    v4_countries: Ranges<u32>,
    v6_countries: Ranges<u128>,
    /// Distinct region orders; the ranges refer to them by index.
    orders: Vec<Vec<usize>>,
}

/// What the table says about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'t> {
    /// Region indices, best first; every region exactly once.
    pub order: &'t [usize],
    /// Which of the table's distinct orders `order` is: equal ids, equal
    /// orders (within one table).
    pub order_id: u32,
    /// The shortest prefix of the address whose every address gets this
    /// same order, in bits of the address's own family.
    pub scope: u8,
    /// The address's country, as the database places it.
    pub country: CountryId,
}

/// Sizes, for logs and `meridian route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// IPv4 ranges after merging.
    pub v4_ranges: usize,
    /// IPv6 ranges after merging.
    pub v6_ranges: usize,
    /// Distinct region orders.
    pub orders: usize,
    /// Approximate heap bytes the table holds.
    pub bytes: usize,
}

/// Ranges covering one family: range `i` is `starts[i] ..= starts[i + 1] - 1`
/// (the last one runs to the family's last address); `starts[0]` is 0.
/// Each range has a value: an order index, or a country.
#[derive(Debug)]
struct Ranges<T> {
    starts: Vec<T>,
    values: Vec<u32>,
}

impl<T: Copy + Ord + Into<u128>> Ranges<T> {
    /// The value of `x`, and the first and last address of its range.
    fn find(&self, x: T, last: u128) -> (u32, u128, u128) {
        let i = self.starts.partition_point(|s| *s <= x).saturating_sub(1);
        let start = self.starts.get(i).map_or(0, |s| (*s).into());
        let end = self
            .starts
            .get(i + 1)
            .map_or(last, |next| (*next).into() - 1);
        (self.values.get(i).copied().unwrap_or(0), start, end)
    }

    /// Only the value of `x`.
    fn value(&self, x: T) -> u32 {
        let i = self.starts.partition_point(|s| *s <= x).saturating_sub(1);
        self.values.get(i).copied().unwrap_or(0)
    }

    fn bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<T>() + self.values.capacity() * 4
    }
}

impl GeoTable {
    /// The table for `geo` under `steering`, within the default
    /// [`LoadLimit`] ([`crate::geo::LOAD_TIME_LIMIT`]).
    pub fn build(geo: &GeoDatabase, steering: &Steering) -> Result<Self, GeoError> {
        GeoTable::build_within(geo, steering, &LoadLimit::default())
    }

    /// The table for `geo` under `steering`. Reads the whole database once,
    /// with work bounded by its size (see [`crate::geo::WORK_PER_NODE`]);
    /// fails if its tree or a record is corrupt, or when `limit` says the
    /// load is out of time or called off.
    pub fn build_within(
        geo: &GeoDatabase,
        steering: &Steering,
        limit: &LoadLimit,
    ) -> Result<Self, GeoError> {
        let mut work = geo.work(limit);
        let mut orders = Orders::default();
        let default = orders.intern(steering.order(None).regions);

        // Each scan numbers its records from 0: one class cache per scan.
        // A class is a record's (order, country).
        let nowhere = (default, unknown());
        let mut classes: Vec<(u32, CountryId)> = Vec::new();
        let classify = |orders: &mut Orders,
                        classes: &mut Vec<(u32, CountryId)>,
                        record: Option<DbRecord<'_>>| {
            let Some(record) = record else {
                return nowhere;
            };
            let index = record.index as usize;
            if index == classes.len() {
                let order = orders.intern(steering.order(record.location).regions);
                let country = record.location.and_then(|l| l.country.as_deref());
                classes.push((order, country_id(country)));
            }
            classes.get(index).copied().unwrap_or(nowhere)
        };

        let mut raw_v4 = Pieces::new(default);
        geo.scan(false, &mut work, |start, _prefix, record| {
            let (id, country) = classify(&mut orders, &mut classes, record);
            raw_v4.push(start, id, country);
        })?;
        classes.clear();

        // IPv6, with the gaps the database aliases to its IPv4 tree filled
        // from the IPv4 pieces as they are before any overlay. The gaps are
        // found during the walk but filled after it (the walk holds the
        // work budget), each copy paid for: a file that points many
        // prefixes at its IPv4 tree cannot make the table quadratic.
        let mut v6_networks: Vec<(u128, (u32, CountryId))> = Vec::new();
        // (the index of the network it comes before, its first address,
        // the address after it or `None`).
        let mut gaps: Vec<(usize, u128, Option<u128>)> = Vec::new();
        // The first address not yet covered; `None` past the last one.
        let mut next: Option<u128> = Some(0);
        geo.scan(true, &mut work, |start, prefix, record| {
            if let Some(expected) = next
                && start > expected
            {
                gaps.push((v6_networks.len(), expected, Some(start)));
            }
            let id = classify(&mut orders, &mut classes, record);
            v6_networks.push((start, id));
            next = block_end(start, prefix, 128).checked_add(1);
        })?;
        if let Some(expected) = next {
            gaps.push((v6_networks.len(), expected, None));
        }
        let mut v6 = Pieces::new(default);
        let mut gaps = gaps.into_iter().peekable();
        for at in 0..=v6_networks.len() {
            while let Some((_, from, to)) = gaps.next_if(|(before, _, _)| *before == at) {
                for (block, depth) in cidr_blocks(from, to) {
                    alias_v4(&mut v6, &raw_v4, block, depth, default, &mut work)?;
                }
            }
            if let Some(&(start, (id, country))) = v6_networks.get(at) {
                v6.push(start, id, country);
            }
        }
        drop(v6_networks);

        let mut v4 = raw_v4;
        for (pieces, blocks, bits) in [
            (&mut v4, &NON_PUBLIC_V4[..], 32),
            (&mut v6, &NON_PUBLIC_V6[..], 128),
        ] {
            for block in blocks {
                let net: IpNet = block.parse().map_err(|_| GeoError::Invalid {
                    what: "the non-public ranges".into(),
                    reason: format!("{block} is not a network"),
                })?;
                let (start, end) = bounds(&net);
                // Never placed: no country either.
                pieces.paint(start, end, bits, |piece| {
                    (piece.base, piece.order, piece.country) = nowhere_piece(default);
                });
            }
        }
        // Least specific first, so more specific networks paint over them.
        for (net, listed) in steering.nets().iter().rev() {
            // Each costs a pass over the pieces: a config with very many
            // network overrides is slow to load, and must stay stoppable.
            work.check()?;
            let (start, end) = bounds(net);
            let (pieces, bits) = match net {
                IpNet::V4(_) => (&mut v4, 32),
                IpNet::V6(_) => (&mut v6, 128),
            };
            // The client stays where it is: only its order changes.
            pieces.paint(start, end, bits, |piece| {
                piece.order = orders.intern(overridden(listed, orders.get(piece.base)));
            });
        }

        let narrow = |s: u128| u32::try_from(s).unwrap_or(u32::MAX);
        Ok(GeoTable {
            v4: v4.ranges(|p| p.order, narrow),
            v6: v6.ranges(|p| p.order, |s| s),
            v4_countries: v4.ranges(|p| u32::from(p.country), narrow),
            v6_countries: v6.ranges(|p| u32::from(p.country), |s| s),
            orders: orders.list,
        })
    }

    /// The region order for a client at `ip`, and the ECS scope that order
    /// allows. IPv4-mapped IPv6 addresses are looked up as IPv4, with the
    /// scope given in IPv6 bits.
    pub fn decide(&self, ip: IpAddr) -> Decision<'_> {
        let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let (order, scope, country) = match canonical(ip) {
            IpAddr::V4(v4) => {
                let x = u32::from(v4);
                let (order, start, end) = self.v4.find(x, u128::from(u32::MAX));
                let scope = widest_prefix(u128::from(x), start, end, 32);
                (
                    order,
                    if mapped {
                        scope + IPV4_IN_IPV6_BITS
                    } else {
                        scope
                    },
                    self.v4_countries.value(x),
                )
            }
            IpAddr::V6(v6) => {
                let x = u128::from(v6);
                let (order, start, end) = self.v6.find(x, u128::MAX);
                let country = self.v6_countries.value(x);
                (order, widest_prefix(x, start, end, 128), country)
            }
        };
        Decision {
            order: self
                .orders
                .get(order as usize)
                .map_or(&[][..], Vec::as_slice),
            order_id: order,
            scope,
            country: CountryId::try_from(country).unwrap_or_else(|_| unknown()),
        }
    }

    /// The first and last address of the range `ip` falls in, as integers
    /// of its family (after mapping IPv4-mapped addresses to IPv4).
    #[cfg(test)]
    fn range_of(&self, ip: IpAddr) -> (u128, u128) {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let (_, start, end) = self.v4.find(u32::from(v4), u128::from(u32::MAX));
                (start, end)
            }
            IpAddr::V6(v6) => {
                let (_, start, end) = self.v6.find(u128::from(v6), u128::MAX);
                (start, end)
            }
        }
    }

    /// How big the table is.
    pub fn stats(&self) -> TableStats {
        TableStats {
            v4_ranges: self.v4.starts.len(),
            v6_ranges: self.v6.starts.len(),
            orders: self.orders.len(),
            bytes: self.v4.bytes()
                + self.v6.bytes()
                + self.v4_countries.bytes()
                + self.v6_countries.bytes()
                + self
                    .orders
                    .iter()
                    .map(|o| o.capacity() * std::mem::size_of::<usize>())
                    .sum::<usize>(),
        }
    }
}

/// Interned region orders.
#[derive(Default)]
struct Orders {
    list: Vec<Vec<usize>>,
    index: HashMap<Vec<usize>, u32>,
}

impl Orders {
    fn intern(&mut self, order: Vec<usize>) -> u32 {
        if let Some(&id) = self.index.get(&order) {
            return id;
        }
        let id = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(order.clone());
        self.index.insert(order, id);
        id
    }

    fn get(&self, id: u32) -> &[usize] {
        self.list.get(id as usize).map_or(&[][..], Vec::as_slice)
    }
}

/// One range while the table is built: `base` is the order without network
/// overrides (what an override's unlisted regions follow), `order` the final,
/// `country` where the database places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    start: u128,
    base: u32,
    order: u32,
    country: CountryId,
}

/// A never-placed range's (base, order, country).
fn nowhere_piece(default: u32) -> (u32, u32, CountryId) {
    (default, default, unknown())
}

/// Ranges being built: sorted by start, the first starting at 0.
struct Pieces(Vec<Piece>);

impl Pieces {
    /// One range covering the whole family, with order `default`.
    fn new(default: u32) -> Self {
        Pieces(vec![Piece {
            start: 0,
            base: default,
            order: default,
            country: unknown(),
        }])
    }

    /// Appends a range from `start` (after every range so far).
    fn push(&mut self, start: u128, order: u32, country: CountryId) {
        let piece = Piece {
            start,
            base: order,
            order,
            country,
        };
        match self.0.last_mut() {
            Some(last) if last.start == start => *last = piece,
            Some(last) if (last.base, last.order, last.country) == (order, order, country) => {}
            _ => self.0.push(piece),
        }
    }

    /// Splits so that a range starts at `at`.
    fn split_at(&mut self, at: u128) {
        let i = self.0.partition_point(|p| p.start <= at).saturating_sub(1);
        if let Some(&piece) = self.0.get(i)
            && piece.start != at
        {
            self.0.insert(i + 1, Piece { start: at, ..piece });
        }
    }

    /// Changes every range in `start ..= end` with `paint`.
    fn paint(&mut self, start: u128, end: u128, bits: u32, mut paint: impl FnMut(&mut Piece)) {
        self.split_at(start);
        if end < last_address(bits) {
            self.split_at(end + 1);
        }
        for piece in self
            .0
            .iter_mut()
            .filter(|p| p.start >= start && p.start <= end)
        {
            paint(piece);
        }
    }

    /// The final ranges of one value (the order, or the country),
    /// adjacent equal values merged.
    fn ranges<T>(&self, value: impl Fn(&Piece) -> u32, narrow: impl Fn(u128) -> T) -> Ranges<T> {
        let mut starts = Vec::new();
        let mut values: Vec<u32> = Vec::new();
        for piece in &self.0 {
            if values.last() != Some(&value(piece)) {
                starts.push(narrow(piece.start));
                values.push(value(piece));
            }
        }
        starts.shrink_to_fit();
        values.shrink_to_fit();
        Ranges { starts, values }
    }
}

/// Copies the IPv4 ranges into the IPv6 `block` of prefix `depth` that the
/// database aliases to its IPv4 tree: the address's bits after `depth` are
/// walked as an IPv4 address, as a lookup does. Each range copied costs a
/// step of `work`.
fn alias_v4(
    v6: &mut Pieces,
    v4: &Pieces,
    block: u128,
    depth: u32,
    default: u32,
    work: &mut Work<'_>,
) -> Result<(), GeoError> {
    if depth > 96 {
        // Narrower than the IPv4 space: not an alias a database makes.
        work.charge(1)?;
        v6.push(block, default, unknown());
        return Ok(());
    }
    work.charge(v4.0.len() as u64)?;
    let shift = 96 - depth;
    for piece in &v4.0 {
        v6.push(block | (piece.start << shift), piece.order, piece.country);
    }
    Ok(())
}

/// The IPv6 addresses from `from` up to `to` (exclusive; `None`: to the
/// last address) as aligned CIDR blocks: `(first address, prefix length)`.
fn cidr_blocks(from: u128, to: Option<u128>) -> Vec<(u128, u32)> {
    let mut blocks = Vec::new();
    let mut at = from;
    loop {
        // log2 of the largest power of two that fits in what remains.
        let room = match to {
            Some(to) if at >= to => break,
            Some(to) => 127 - (to - at).leading_zeros(),
            None if at == 0 => 128,
            None => 127 - (!at + 1).leading_zeros(),
        };
        let align = if at == 0 { 128 } else { at.trailing_zeros() };
        let size = align.min(room);
        blocks.push((at, 128 - size));
        match 1u128
            .checked_shl(size)
            .and_then(|step| at.checked_add(step))
        {
            Some(after) => at = after,
            None => break,
        }
    }
    blocks
}

/// The first and last address of `net`, as integers of its family.
fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(v4) => (
            u128::from(u32::from(v4.network())),
            u128::from(u32::from(v4.broadcast())),
        ),
        IpNet::V6(v6) => (u128::from(v6.network()), u128::from(v6.broadcast())),
    }
}

fn last_address(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The last address of the `prefix` block starting at `start`.
fn block_end(start: u128, prefix: u8, bits: u32) -> u128 {
    start | host_mask(u32::from(prefix), bits)
}

fn host_mask(prefix: u32, bits: u32) -> u128 {
    last_address(bits.saturating_sub(prefix))
}

/// The shortest prefix `p` such that every address sharing `x`'s first `p`
/// bits lies in `start ..= end` (which contains `x`).
fn widest_prefix(x: u128, start: u128, end: u128, bits: u32) -> u8 {
    let fits = |p: u32| {
        let host = host_mask(p, bits);
        (x & !host) >= start && (x | host) <= end
    };
    let (mut low, mut high) = (0, bits);
    while low < high {
        let mid = (low + high) / 2;
        if fits(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    u8::try_from(low).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmdb_writer::{Value, Writer};

    /// A Country database from `(network, country, continent)` entries, in
    /// the GeoIP2 schema, written with mmdb-writer (IPv6, IPv4 aliased).
    pub(crate) fn database(entries: &[(&str, &str, &str)]) -> GeoDatabase {
        let mut writer = Writer::new("Test-Country");
        for (net, country, continent) in entries {
            let record = Value::map([
                ("country", Value::map([("iso_code", Value::from(*country))])),
                ("continent", Value::map([("code", Value::from(*continent))])),
            ]);
            writer
                .insert_value(net.parse::<IpNet>().unwrap(), record)
                .unwrap();
        }
        GeoDatabase::from_vec(writer.to_bytes().unwrap()).unwrap()
    }

    fn demo_steering() -> Steering {
        Steering::from_config(&config::Config::demo())
    }

    fn steering_with(overrides: &str) -> Steering {
        let text = config::DEMO_TOML.replacen(
            "[health]",
            &format!("[geodns.overrides]\n{overrides}\n\n[health]"),
            1,
        );
        Steering::from_config(
            &config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Region indices in the demo: 0 us-east, 1 eu-west, 2 ap-southeast.
    const EU_FIRST: [usize; 3] = [1, 0, 2];
    const DEFAULT: [usize; 3] = [0, 1, 2];

    /// What the table must agree with: the database and steering, asked
    /// directly, as `meridian route` does.
    fn slow(geo: &GeoDatabase, steering: &Steering, ip: IpAddr) -> Vec<usize> {
        steering
            .order_for(ip, geo.place(ip).location.as_ref())
            .regions
    }

    /// Checks `ip`'s decision against the slow path, and that its scope is
    /// exactly right: every address of the scope's block gets the same
    /// order (sampled), and the next wider block holds one that does not.
    fn check(table: &GeoTable, geo: &GeoDatabase, steering: &Steering, ip: IpAddr) {
        let decision = table.decide(ip);
        assert_eq!(decision.order, slow(geo, steering, ip), "{ip}");
        let (x, bits) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let at = |n: u128| match ip {
            IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(n)),
        };
        let scope = u32::from(decision.scope);
        let host = host_mask(scope, bits);
        let (first, last) = (x & !host, x | host);
        for probe in [first, last, first + (last - first) / 3, x] {
            assert_eq!(
                slow(geo, steering, at(probe)),
                decision.order,
                "{ip}/{scope}: {} differs",
                at(probe)
            );
        }
        // The range's neighbours get other orders (ranges are merged), and
        // the next wider block reaches one of them.
        let (start, end) = table.range_of(ip);
        let before = start.checked_sub(1).map(&at);
        let after = (end < last_address(bits)).then(|| at(end + 1));
        for neighbour in before.into_iter().chain(after) {
            assert_ne!(
                slow(geo, steering, neighbour),
                decision.order,
                "{ip}: {neighbour}"
            );
        }
        if scope > 0 {
            let wider = host_mask(scope - 1, bits);
            let (first, last) = (x & !wider, x | wider);
            assert!(
                first < start || last > end,
                "{ip}: /{} would do as well as /{scope}",
                scope - 1
            );
        }
    }

    #[test]
    fn adjacent_networks_with_the_same_order_widen_the_scope() {
        // GB and IE both go to eu-west first; so does everything in 81/8.
        let geo = database(&[("81.0.0.0/9", "GB", "EU"), ("81.128.0.0/9", "IE", "EU")]);
        let steering = demo_steering();
        let table = GeoTable::build(&geo, &steering).unwrap();
        let decision = table.decide(ip("81.1.2.0"));
        assert_eq!(decision.order, EU_FIRST);
        assert_eq!(decision.scope, 8, "both /9s agree, 80/8 and 82/8 do not");
        assert_eq!(geo.place(ip("81.1.2.0")).network_prefix, 9);
        check(&table, &geo, &steering, ip("81.1.2.0"));
        check(&table, &geo, &steering, ip("81.200.0.1"));
    }

    #[test]
    fn a_different_neighbour_narrows_the_scope() {
        let geo = database(&[
            ("81.0.0.0/9", "GB", "EU"),
            ("81.64.0.0/10", "US", "NA"),
            ("81.128.0.0/9", "IE", "EU"),
        ]);
        let steering = demo_steering();
        let table = GeoTable::build(&geo, &steering).unwrap();
        assert_eq!(table.decide(ip("81.1.2.3")).scope, 10);
        assert_eq!(table.decide(ip("81.200.0.1")).scope, 9);
        assert_eq!(table.decide(ip("81.64.0.1")).order, DEFAULT);
        for a in ["81.1.2.3", "81.200.0.1", "81.64.0.1", "81.127.255.255"] {
            check(&table, &geo, &steering, ip(a));
        }
    }

    #[test]
    fn countries_with_the_same_order_merge_across_slash_eights() {
        let geo = database(&[
            ("80.0.0.0/8", "DE", "EU"),
            ("81.0.0.0/8", "GB", "EU"),
            ("82.0.0.0/8", "FR", "EU"),
        ]);
        let steering = demo_steering();
        let table = GeoTable::build(&geo, &steering).unwrap();
        // 80.0.0.0 - 82.255.255.255 is eu-west first; 81.x fits in 80/7.
        assert_eq!(table.decide(ip("81.2.3.4")).scope, 7);
        // 82.x: 82/7 would include 83/8, which is unknown.
        assert_eq!(table.decide(ip("82.2.3.4")).scope, 8);
        for a in ["80.0.0.1", "81.2.3.4", "82.2.3.4", "83.0.0.1"] {
            check(&table, &geo, &steering, ip(a));
        }
    }

    #[test]
    fn one_order_everywhere_means_scope_zero() {
        // Only US networks, and the default order is us-east first too.
        let geo = database(&[("8.0.0.0/8", "US", "NA"), ("2600::/12", "US", "NA")]);
        let steering = demo_steering();
        let table = GeoTable::build(&geo, &steering).unwrap();
        assert_eq!(
            table.decide(ip("8.8.8.8")),
            Decision {
                order: &DEFAULT,
                order_id: 0,
                scope: 0,
                country: country_id(Some("US")),
            }
        );
        assert_eq!(table.decide(ip("2600::1")).scope, 0);
        assert_eq!(table.stats().orders, 1);
    }

    #[test]
    fn every_address_keeps_its_country_whatever_its_order() {
        use crate::flows::country_name;
        let geo = database(&[
            ("80.0.0.0/8", "DE", "EU"),
            ("81.0.0.0/8", "GB", "EU"),
            ("82.0.0.0/8", "FR", "EU"),
            ("2a00::/16", "GB", "EU"),
        ]);
        let steering = steering_with("nets = { \"82.2.69.0/24\" = [\"ap-southeast\"] }");
        let table = GeoTable::build(&geo, &steering).unwrap();
        let country = |a: &str| country_name(table.decide(ip(a)).country);
        // One order range, three countries: the scope is the order's.
        assert_eq!(table.decide(ip("81.2.3.4")).scope, 7);
        assert_eq!(
            [
                country("80.1.1.1"),
                country("81.2.3.4"),
                country("82.2.3.4")
            ],
            ["DE", "GB", "FR"]
        );
        // A network override changes the order, not the country.
        assert_eq!(table.decide(ip("82.2.69.1")).order, [2, 1, 0]);
        assert_eq!(country("82.2.69.1"), "FR");
        // IPv4-mapped and IPv6 addresses; what is not placed is unknown.
        assert_eq!(country("::ffff:82.2.3.4"), "FR");
        assert_eq!(country("2a00::1"), "GB");
        for nowhere in ["10.1.2.3", "127.0.0.1", "83.0.0.1", "::1", "2b00::1"] {
            assert_eq!(country(nowhere), "unknown", "{nowhere}");
        }
    }

    #[test]
    fn network_overrides_cut_holes_and_keep_the_rest() {
        let geo = database(&[("81.0.0.0/9", "GB", "EU"), ("81.128.0.0/9", "IE", "EU")]);
        let steering = steering_with(
            "nets = { \"81.2.69.0/24\" = [\"ap-southeast\"], \"81.2.0.0/16\" = [\"us-east\"], \"10.0.0.0/8\" = [\"eu-west\"] }",
        );
        let table = GeoTable::build(&geo, &steering).unwrap();
        let d = table.decide(ip("81.2.69.1"));
        assert_eq!((d.order, d.scope), (&[2, 1, 0][..], 24));
        let d = table.decide(ip("81.2.70.1"));
        assert_eq!(
            (d.order, d.scope),
            (&[0, 1, 2][..], 23),
            "the /16 around the /24"
        );
        let d = table.decide(ip("81.3.0.1"));
        assert_eq!((d.order, d.scope), (&EU_FIRST[..], 16));
        // A private network: default order behind the override.
        let d = table.decide(ip("10.9.9.9"));
        assert_eq!((d.order, d.scope), (&EU_FIRST[..], 8));
        for a in [
            "81.2.69.1",
            "81.2.70.1",
            "81.3.0.1",
            "81.2.68.255",
            "10.9.9.9",
            "11.0.0.1",
        ] {
            check(&table, &geo, &steering, ip(a));
        }
    }

    #[test]
    fn country_and_continent_overrides_change_the_order() {
        let geo = database(&[
            ("81.0.0.0/8", "GB", "EU"),
            ("1.128.0.0/11", "AU", "OC"),
            ("1.160.0.0/11", "NZ", "OC"),
        ]);
        let steering = steering_with(
            "countries = { GB = [\"us-east\"] }\ncontinents = { OC = [\"eu-west\"] }",
        );
        let table = GeoTable::build(&geo, &steering).unwrap();
        assert_eq!(table.decide(ip("81.1.1.1")).order, [0, 1, 2]);
        let au = table.decide(ip("1.130.0.1"));
        assert_eq!(au.order, [1, 2, 0], "eu-west, then nearest first");
        assert_eq!(au.scope, 10, "AU and NZ share the continent's order");
        for a in ["81.1.1.1", "1.130.0.1", "1.170.0.1"] {
            check(&table, &geo, &steering, ip(a));
        }
    }

    #[test]
    fn private_and_unknown_addresses_get_the_default_order() {
        // Even a database that places a private network is not consulted.
        let geo = database(&[("10.0.0.0/8", "GB", "EU"), ("81.0.0.0/8", "GB", "EU")]);
        let steering = demo_steering();
        let table = GeoTable::build(&geo, &steering).unwrap();
        for a in [
            "10.1.2.3",
            "127.0.0.1",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "9.9.9.9",
        ] {
            assert_eq!(table.decide(ip(a)).order, DEFAULT, "{a}");
            check(&table, &geo, &steering, ip(a));
        }
    }

    #[test]
    fn ipv6_and_the_ipv4_aliases() {
        let geo = database(&[("81.0.0.0/8", "GB", "EU"), ("2001:db8::/32", "SG", "AS")]);
        let steering = demo_steering();
        let table = GeoTable::build(&geo, &steering).unwrap();
        let d = table.decide(ip("2001:db8:1::1"));
        assert_eq!(d.order, [2, 1, 0]);
        assert!(d.scope <= 32 && d.scope > 0, "{}", d.scope);
        // Mapped IPv4 is IPv4, with the scope in IPv6 bits.
        let d = table.decide(ip("::ffff:81.2.69.1"));
        assert_eq!((d.order, d.scope), (&EU_FIRST[..], 96 + 8));
        // 6to4 (2002::/16) and Teredo (2001::/32) reach the IPv4 tree, as
        // in a database lookup.
        for a in [
            "2002:5102:4501::1",
            "2001:0:5102:4501::1",
            "2001:db8:1::1",
            "2001:db9::1",
            "2002:0a00:0001::1",
        ] {
            check(&table, &geo, &steering, ip(a));
        }
        assert_eq!(table.decide(ip("2002:5102:4501::1")).order, EU_FIRST);
    }

    #[test]
    fn cidr_blocks_cover_exactly() {
        assert_eq!(cidr_blocks(0, None), [(0, 0)]);
        assert_eq!(cidr_blocks(0, Some(1 << 32)), [(0, 96)]);
        assert_eq!(
            cidr_blocks(4, Some(12)),
            [(4, 126), (8, 126)],
            "4..8 and 8..12"
        );
        let top = u128::MAX - 3;
        assert_eq!(cidr_blocks(top, None), [(top, 126)]);
        assert_eq!(widest_prefix(5, 0, u128::from(u32::MAX), 32), 0);
        assert_eq!(widest_prefix(5, 5, 5, 32), 32);
        assert_eq!(widest_prefix(5, 4, 7, 32), 30);
    }

    /// A small deterministic generator, so the sample is the same every run.
    fn addresses(seed: u64, count: usize) -> Vec<IpAddr> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|i| {
                if i % 3 == 0 {
                    let hi = u128::from(next()) << 64 | u128::from(next());
                    // Mostly inside 2000::/3, where the allocations are.
                    IpAddr::from(std::net::Ipv6Addr::from((hi >> 3) | (1u128 << 125)))
                } else {
                    IpAddr::from(std::net::Ipv4Addr::from(next() as u32))
                }
            })
            .collect()
    }

    #[test]
    fn the_embedded_database_agrees_with_direct_lookups() {
        let geo = GeoDatabase::embedded().unwrap();
        let steering = steering_with(
            "nets = { \"81.2.69.0/24\" = [\"ap-southeast\"], \"2001:4860::/32\" = [\"eu-west\"] }\ncountries = { BR = [\"eu-west\"] }\ncontinents = { OC = [\"us-east\"] }",
        );
        let started = std::time::Instant::now();
        let table = GeoTable::build(&geo, &steering).unwrap();
        let stats = table.stats();
        eprintln!(
            "embedded table: {stats:?}, built in {:?}",
            started.elapsed()
        );
        for a in addresses(0x9e37_79b9_7f4a_7c15, 3000) {
            let d = table.decide(a);
            assert_eq!(d.order, slow(&geo, &steering, a), "{a}");
            if steering.net_override(a).is_none() && crate::geo::is_public(a) {
                assert!(
                    d.scope <= geo.place(a).network_prefix,
                    "{a}: scope wider than the network"
                );
            }
        }
        for a in [
            "81.2.69.142",
            "81.2.70.1",
            "8.8.8.8",
            "200.160.2.3",
            "1.128.0.1",
            "2001:4860:4860::8888",
            "203.116.1.1",
            "5.9.0.1",
        ] {
            check(&table, &geo, &steering, ip(a));
        }
    }
}
