//! Where a client is: an IP address looked up in a GeoIP2-schema database.
//!
//! Works with any GeoIP2/GeoLite2 *Country* or *City* `.mmdb` (and others in
//! the same schema, such as DB-IP's): it reads `country.iso_code` (falling
//! back to `registered_country`), `continent.code` and, when the database
//! has them, `location.latitude/longitude`. A Country database carries no
//! coordinates, so the client is placed at its country's centroid
//! ([`crate::centroids`]).
//!
//! The embedded default is the vendored public-domain IPtoASN country
//! database (`data/`, see its README for licence and provenance).
//!
//! A database file is input GeoDNS cannot trust to be what it claims, so
//! every load is bounded: only a regular file of at most
//! [`MAX_DATABASE_BYTES`] is read, its search tree is walked with a budget
//! proportional to its size ([`Work`], the `tree` module), and the whole
//! load runs against a [`LoadLimit`]: a time limit, and a switch that
//! calls it off (at shutdown).

mod tree;

use crate::centroids::{Coordinates, country_centroid};
use maxminddb::Reader;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tree::{Leaf, SearchTree};

/// The vendored IPtoASN country database, compiled in (the default
/// `geo_database`). Public so that tools can hand the very same file to
/// another server, e.g. the benchmark's gdnsd.
pub static EMBEDDED_DATABASE: &[u8] = include_bytes!("../data/GeoIP2-Country-iptoasn.mmdb");

/// The largest database file read: 1 GiB. The largest real ones (GeoIP2
/// City and Enterprise) are a few hundred MB; anything bigger is refused
/// before it is read, instead of read until memory runs out (`/dev/zero`).
pub const MAX_DATABASE_BYTES: u64 = 1 << 30;

/// How long one load of a database (reading it, walking its tree, building
/// the table) may take by default.
///
/// Measured here, walking the tree and building the table costs about 1 µs
/// per search-tree node in a debug build (the embedded database, 864,344
/// nodes, in under a second) and a tenth of that in an optimised one (0.1 s,
/// see the README). The largest City and Enterprise databases have on the
/// order of ten million nodes: seconds optimised, tens of seconds in a
/// debug build or on a slow, busy host. 120 s leaves room for those and
/// still ends a load that could only finish in hours. A file whose tree is
/// not a tree is stopped long before, by the work budget
/// ([`WORK_PER_NODE`]).
pub const LOAD_TIME_LIMIT: Duration = Duration::from_secs(120);

/// The work budget of one load, in steps per search-tree node (plus
/// [`WORK_SLACK`]). A tree of N nodes takes 2N + 1 steps per family to
/// walk, and the table copies the IPv4 networks into each IPv6 alias of
/// the IPv4 tree (real databases have three or four): about 6N steps in
/// all. 16 per node is well above that, and still linear in the file's
/// size; a file whose nodes share subtrees (2^depth paths through a few
/// hundred bytes) runs out after a few thousand steps.
pub const WORK_PER_NODE: u64 = 16;

/// Steps every load may take whatever its node count, for the fixed work
/// (the gaps between networks, the aliases) of a tiny database.
const WORK_SLACK: u64 = 4096;

/// How many steps of work go between two looks at the clock and the
/// cancel switch: about a millisecond's worth.
const CHECK_EVERY: u64 = 1 << 12;

/// A loaded geolocation database.
pub struct GeoDatabase {
    reader: Reader<DatabaseBytes>,
    /// The same bytes, for the search tree walk ([`tree`]).
    bytes: DatabaseBytes,
    description: String,
    /// The file, or "the embedded database", for errors.
    what: String,
}

/// The database's bytes: compiled in, or read from a file; shared between
/// the maxminddb reader and the tree walk.
#[derive(Clone)]
enum DatabaseBytes {
    Embedded(&'static [u8]),
    Loaded(Arc<[u8]>),
}

impl AsRef<[u8]> for DatabaseBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            DatabaseBytes::Embedded(bytes) => bytes,
            DatabaseBytes::Loaded(bytes) => bytes,
        }
    }
}

/// Why a database could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file cannot be read.
    #[error("cannot read the geo database {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path names something other than a regular file: a FIFO or a
    /// device would block the read or never end it.
    #[error("the geo database {path} is not a regular file (it is {kind})")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than any real database ([`MAX_DATABASE_BYTES`]).
    #[error(
        "the geo database {path} is {size} bytes, more than the {limit} a database may have \
         (the largest real ones are a few hundred MB)"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, or how much of it was read before giving up.
        size: u64,
        /// [`MAX_DATABASE_BYTES`].
        limit: u64,
    },
    /// The file is not a usable MaxMind DB.
    #[error("{what} is not a GeoIP2-schema database: {reason}")]
    Invalid {
        /// The file, or "the embedded database".
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Walking the file's search tree took more steps than a tree of its
    /// size can need: its nodes share subtrees, which would multiply the
    /// work by two per level.
    #[error(
        "{what} is not a usable geo database: walking its search tree of {nodes} nodes took \
         more than {most} steps, where a tree that size takes at most {tree}; its nodes share \
         subtrees, so its networks multiply with every level of the tree"
    )]
    Tangled {
        /// The file, or "the embedded database".
        what: String,
        /// Its node count.
        nodes: u64,
        /// The budget that ran out.
        most: u64,
        /// What a tree of `nodes` nodes takes for both families: 2 × (2N + 1).
        tree: u64,
    },
    /// The load took longer than its [`LoadLimit`].
    #[error(
        "loading {what} took longer than {} s, the limit; it was abandoned",
        limit.as_secs_f64()
    )]
    TimedOut {
        /// The file, or "the embedded database".
        what: String,
        /// The limit.
        limit: Duration,
    },
    /// The load was called off (GeoDNS is shutting down).
    #[error("loading {what} was called off")]
    Cancelled {
        /// The file, or "the embedded database".
        what: String,
    },
}

/// How long a load may take, and a switch to call it off from elsewhere.
/// Clones share the switch.
#[derive(Debug, Clone)]
pub struct LoadLimit {
    /// `None` for a limit too far away to represent: no limit.
    deadline: Option<Instant>,
    limit: Duration,
    cancelled: Arc<AtomicBool>,
}

impl LoadLimit {
    /// A load that must be done within `limit` from now.
    pub fn new(limit: Duration) -> Self {
        LoadLimit {
            deadline: Instant::now().checked_add(limit),
            limit,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Calls the load off: its next look at the limit fails with
    /// [`GeoError::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Fails once the load is called off or out of time.
    pub fn check(&self, what: &str) -> Result<(), GeoError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(GeoError::Cancelled {
                what: what.to_owned(),
            });
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(GeoError::TimedOut {
                what: what.to_owned(),
                limit: self.limit,
            });
        }
        Ok(())
    }
}

impl Default for LoadLimit {
    /// [`LOAD_TIME_LIMIT`] from now.
    fn default() -> Self {
        LoadLimit::new(LOAD_TIME_LIMIT)
    }
}

/// The work one load of a database may still do: [`WORK_PER_NODE`] steps
/// per node of its tree, checked against its [`LoadLimit`] as it goes.
pub(crate) struct Work<'a> {
    done: u64,
    most: u64,
    nodes: u64,
    what: &'a str,
    limit: &'a LoadLimit,
}

impl Work<'_> {
    /// Pays for `steps` more steps; fails when the budget, the time or
    /// the load is over.
    pub(crate) fn charge(&mut self, steps: u64) -> Result<(), GeoError> {
        let before = self.done;
        self.done = self.done.saturating_add(steps);
        if self.done > self.most {
            return Err(GeoError::Tangled {
                what: self.what.to_owned(),
                nodes: self.nodes,
                most: self.most,
                tree: self.nodes.saturating_mul(4).saturating_add(2),
            });
        }
        if before == 0 || before / CHECK_EVERY != self.done / CHECK_EVERY {
            self.limit.check(self.what)?;
        }
        Ok(())
    }

    /// Looks at the clock and the cancel switch now.
    pub(crate) fn check(&self) -> Result<(), GeoError> {
        self.limit.check(self.what)
    }

    /// The error for a database whose tree is broken.
    pub(crate) fn invalid(&self, reason: String) -> GeoError {
        GeoError::Invalid {
            what: self.what.to_owned(),
            reason,
        }
    }
}

/// What the database says about one address.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Where the address is, if the database knows it.
    pub location: Option<Location>,
    /// The prefix length of the database network the address fell in (with
    /// or without data): every address in that network is placed the same.
    pub network_prefix: u8,
}

/// A client's location.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 code, uppercase.
    pub country: Option<String>,
    /// Two-letter continent code (`EU`, `NA`, ...).
    pub continent: Option<String>,
    /// The database's coordinates (City databases), else the country's centroid.
    pub coordinates: Option<Coordinates>,
    /// Whether `coordinates` came from the database itself.
    pub coordinates_from_database: bool,
}

/// Just the fields Meridian reads; every other field is skipped unparsed.
#[derive(Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    country: Option<CountryField<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<CountryField<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentField<'a>>,
    #[serde(default)]
    location: Option<LocationField>,
}

#[derive(Deserialize)]
struct CountryField<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentField<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LocationField {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl GeoDatabase {
    /// The compiled-in IPtoASN country database.
    pub fn embedded() -> Result<Self, GeoError> {
        Self::from_bytes(
            DatabaseBytes::Embedded(EMBEDDED_DATABASE),
            "the embedded database",
        )
    }

    /// A GeoIP2/GeoLite2 Country or City database file: a regular file
    /// of at most [`MAX_DATABASE_BYTES`].
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let bytes = read_database(path)?;
        Self::from_bytes(
            DatabaseBytes::Loaded(bytes.into()),
            &path.display().to_string(),
        )
    }

    /// The database a config names.
    pub fn from_config(database: &config::GeoDatabase) -> Result<Self, GeoError> {
        match database {
            config::GeoDatabase::Embedded => Self::embedded(),
            config::GeoDatabase::File(path) => Self::open(path),
        }
    }

    /// A database from raw `.mmdb` bytes (tests build their own).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, GeoError> {
        Self::from_bytes(DatabaseBytes::Loaded(bytes.into()), "the given database")
    }

    fn from_bytes(bytes: DatabaseBytes, what: &str) -> Result<Self, GeoError> {
        let invalid = |reason: String| GeoError::Invalid {
            what: what.to_owned(),
            reason,
        };
        let reader = Reader::from_source(bytes.clone()).map_err(|e| invalid(e.to_string()))?;
        let metadata = reader.metadata();
        if metadata.ip_version != 6 && metadata.ip_version != 4 {
            return Err(invalid(format!(
                "unknown ip_version {}",
                metadata.ip_version
            )));
        }
        let description = format!(
            "{} ({} nodes, built {})",
            metadata.database_type, metadata.node_count, metadata.build_epoch
        );
        Ok(GeoDatabase {
            reader,
            bytes,
            description,
            what: what.to_owned(),
        })
    }

    /// The work budget of one load of this database, under `limit`.
    pub(crate) fn work<'a>(&'a self, limit: &'a LoadLimit) -> Work<'a> {
        let nodes = u64::from(self.reader.metadata().node_count);
        Work {
            done: 0,
            most: nodes
                .saturating_add(1)
                .saturating_mul(WORK_PER_NODE)
                .saturating_add(WORK_SLACK),
            nodes,
            what: &self.what,
            limit,
        }
    }

    /// The database type and size, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Places `ip`. Addresses that are not on the public internet (loopback,
    /// private, link-local, ...) are never looked up: they have no location.
    pub fn place(&self, ip: IpAddr) -> Placement {
        let ip = canonical(ip);
        if !is_public(ip) {
            return Placement {
                location: None,
                network_prefix: unroutable_prefix(ip),
            };
        }
        let Ok(result) = self.reader.lookup(ip) else {
            // A lookup only fails on a corrupt tree; treat it as unknown.
            return Placement {
                location: None,
                network_prefix: full_prefix(ip),
            };
        };
        let network_prefix = result.network().map_or(full_prefix(ip), |n| n.prefix());
        let record = result.decode::<GeoRecord<'_>>().ok().flatten();
        Placement {
            location: record.and_then(locate),
            network_prefix,
        }
    }

    /// Visits every network of one address family in address order, as
    /// `(first address, prefix length, record)`, together covering the whole
    /// family except the IPv6 ranges the database aliases to its IPv4 tree
    /// (`::/96`, and often `::ffff:0:0/96`, `2002::/16`): those are gaps.
    /// Networks without data have no record; records are numbered densely in
    /// the order first seen, so a caller can classify each one once.
    /// Fails on a corrupt tree or an undecodable record, when `work` runs
    /// out, and when its load is out of time or called off.
    pub(crate) fn scan(
        &self,
        ipv6: bool,
        work: &mut Work<'_>,
        mut visit: impl FnMut(u128, u8, Option<DbRecord<'_>>),
    ) -> Result<(), GeoError> {
        let metadata = self.reader.metadata();
        let tree = SearchTree::new(
            self.bytes.as_ref(),
            metadata.node_count,
            metadata.record_size,
            metadata.ip_version,
        )
        .map_err(|reason| work.invalid(reason))?;
        let invalid = |reason: String| GeoError::Invalid {
            what: self.what.clone(),
            reason,
        };
        // Each record is decoded once, the first time the walk meets it.
        // maxminddb bounds one decode (65,536 values); the clock and the
        // cancel switch are looked at before each, so that a file with
        // many large records cannot outlast the load's limit between two
        // looks.
        let (limit, what) = (work.limit, work.what);
        let mut records: HashMap<usize, (u32, Option<Location>)> = HashMap::new();
        tree.walk(ipv6, work, |start, prefix, leaf| {
            let Leaf::Data(pointer) = leaf else {
                visit(start, prefix, None);
                return Ok(());
            };
            if !records.contains_key(&pointer) {
                limit.check(what)?;
                let index =
                    u32::try_from(records.len()).map_err(|_| invalid("too many records".into()))?;
                let location = self.decode(ipv6, start, prefix, pointer)?;
                records.insert(pointer, (index, location));
            }
            let record = records.get(&pointer).map(|(index, location)| DbRecord {
                index: *index,
                location: location.as_ref(),
            });
            visit(start, prefix, record);
            Ok(())
        })
    }

    /// The location in the record `pointer`, which the tree gives the
    /// network at `start`/`prefix`. Read with maxminddb: looking up the
    /// network's first address follows the same path to the same record
    /// (checked), and decodes it within the crate's own limits.
    fn decode(
        &self,
        ipv6: bool,
        start: u128,
        prefix: u8,
        pointer: usize,
    ) -> Result<Option<Location>, GeoError> {
        let invalid = |reason: String| GeoError::Invalid {
            what: self.what.clone(),
            reason,
        };
        let address = if ipv6 {
            IpAddr::V6(Ipv6Addr::from(start))
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::try_from(start).unwrap_or(0)))
        };
        let found = self
            .reader
            .lookup(address)
            .map_err(|e| invalid(format!("network {address}/{prefix}: {e}")))?;
        // The record's offset in the data section, as maxminddb computes it.
        let expected = pointer
            .checked_sub(self.reader.metadata().node_count as usize + 16)
            .ok_or_else(|| invalid(format!("network {address}/{prefix} points into the tree")))?;
        if found.offset() != Some(expected) {
            return Err(invalid(format!(
                "network {address}/{prefix} leads to different records when walked and looked up"
            )));
        }
        let decoded = found
            .decode::<GeoRecord<'_>>()
            .map_err(|e| invalid(format!("record at offset {expected}: {e}")))?;
        Ok(decoded.and_then(locate))
    }
}

impl GeoDatabase {
    /// Every country the database places IPv4 addresses in, by ISO code,
    /// with where it places them and its first IPv4 network (in address
    /// order). For tools that need the country list or a sample client per
    /// country: the benchmark queries from each, and exports Meridian's
    /// steering to gdnsd's per-country map.
    pub fn countries(&self) -> Result<BTreeMap<String, CountrySample>, GeoError> {
        let mut countries = BTreeMap::new();
        let limit = LoadLimit::default();
        self.scan(false, &mut self.work(&limit), |start, prefix, record| {
            let Some(location) = record.and_then(|r| r.location) else {
                return;
            };
            let Some(country) = &location.country else {
                return;
            };
            let address = Ipv4Addr::from(u32::try_from(start).unwrap_or(0));
            if !is_public(IpAddr::V4(address)) {
                return;
            }
            countries
                .entry(country.clone())
                .or_insert_with(|| CountrySample {
                    location: location.clone(),
                    network: (address, prefix),
                });
        })?;
        Ok(countries)
    }
}

/// Reads the database file at `path`: a regular file of at most
/// [`MAX_DATABASE_BYTES`], checked before a byte is read. On Linux it is
/// opened without blocking, so that a FIFO put there after the check
/// cannot hold the open (and is refused by the second check, on the open
/// file).
fn read_database(path: &Path) -> Result<Vec<u8>, GeoError> {
    let read_error = |source| GeoError::Read {
        path: path.to_path_buf(),
        source,
    };
    let regular = |metadata: &std::fs::Metadata| -> Result<u64, GeoError> {
        let kind = file_kind(&metadata.file_type());
        if kind != "a regular file" {
            return Err(GeoError::NotAFile {
                path: path.to_path_buf(),
                kind,
            });
        }
        if metadata.len() > MAX_DATABASE_BYTES {
            return Err(GeoError::TooLarge {
                path: path.to_path_buf(),
                size: metadata.len(),
                limit: MAX_DATABASE_BYTES,
            });
        }
        Ok(metadata.len())
    };
    regular(&std::fs::metadata(path).map_err(read_error)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(read_error)?;
    let size = regular(&file.metadata().map_err(read_error)?)?;
    // The size may change while it is read: never read past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_DATABASE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_DATABASE_BYTES {
        return Err(GeoError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: MAX_DATABASE_BYTES,
        });
    }
    Ok(bytes)
}

/// What a file type is, in words.
fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// One country as the database sees it: see [`GeoDatabase::countries`].
#[derive(Debug, Clone, PartialEq)]
pub struct CountrySample {
    /// Where the database places the country's addresses.
    pub location: Location,
    /// Its first public IPv4 network: address and prefix length.
    pub network: (Ipv4Addr, u8),
}

/// A database record met by [`GeoDatabase::scan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbRecord<'a> {
    /// Dense number of the record: 0 for the first one met, then 1, ...
    pub index: u32,
    /// Where it places its addresses.
    pub location: Option<&'a Location>,
}

/// The location a database record describes, if it says anything usable.
fn locate(record: GeoRecord<'_>) -> Option<Location> {
    let country = record
        .country
        .and_then(|c| c.iso_code)
        .or_else(|| record.registered_country.and_then(|c| c.iso_code))
        .map(str::to_ascii_uppercase);
    let continent = record
        .continent
        .and_then(|c| c.code)
        .map(str::to_ascii_uppercase);
    let from_database = record
        .location
        .and_then(|l| match (l.latitude, l.longitude) {
            (Some(latitude), Some(longitude))
                if (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude) =>
            {
                Some(Coordinates {
                    latitude,
                    longitude,
                })
            }
            _ => None,
        });
    let coordinates = from_database.or_else(|| country.as_deref().and_then(country_centroid));
    if country.is_none() && continent.is_none() && coordinates.is_none() {
        return None;
    }
    Some(Location {
        country,
        continent,
        coordinates,
        coordinates_from_database: from_database.is_some(),
    })
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4 clients.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn full_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Whether an address can be on the public internet, and so have a location.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT (RFC 6598)
        || (a == 100 && (64..128).contains(&b))
        // 240.0.0.0/4, reserved
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7, unique local
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local
        || (first & 0xffc0) == 0xfe80)
}

/// The prefix of the non-public block `ip` is in: all of it is unplaced.
fn unroutable_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            match (a, b) {
                (10, _) | (127, _) | (0, _) => 8,
                (172, 16..=31) => 12,
                (192, 168) | (169, 254) => 16,
                (100, 64..=127) => 10,
                (a, _) if a >= 240 => 4,
                (a, _) if (224..240).contains(&a) => 4,
                _ => 32,
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if (first & 0xfe00) == 0xfc00 {
                7
            } else if (first & 0xffc0) == 0xfe80 {
                10
            } else if v6.is_multicast() {
                8
            } else {
                128
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> GeoDatabase {
        GeoDatabase::embedded().expect("the vendored database loads")
    }

    fn country(db: &GeoDatabase, ip: &str) -> Option<String> {
        db.place(ip.parse().unwrap())
            .location
            .and_then(|l| l.country)
    }

    #[test]
    fn the_embedded_database_places_the_readme_samples() {
        let db = embedded();
        assert_eq!(country(&db, "8.8.8.8").as_deref(), Some("US"));
        assert_eq!(country(&db, "2001:4860:4860::8888").as_deref(), Some("US"));
        assert_eq!(country(&db, "81.2.69.142").as_deref(), Some("GB"));
        assert_eq!(country(&db, "5.9.0.1").as_deref(), Some("DE"));
        assert_eq!(country(&db, "203.116.1.1").as_deref(), Some("SG"));
        assert_eq!(country(&db, "1.0.16.1").as_deref(), Some("JP"));
        assert_eq!(country(&db, "1.128.0.1").as_deref(), Some("AU"));
        assert_eq!(country(&db, "200.160.2.3").as_deref(), Some("BR"));
        assert_eq!(country(&db, "41.0.0.1").as_deref(), Some("ZA"));
        assert_eq!(country(&db, "210.171.224.1"), None);
    }

    #[test]
    fn country_databases_place_clients_at_the_centroid() {
        let db = embedded();
        let placement = db.place("81.2.69.142".parse().unwrap());
        let location = placement.location.unwrap();
        assert_eq!(location.continent.as_deref(), Some("EU"));
        assert!(!location.coordinates_from_database);
        assert_eq!(location.coordinates, country_centroid("GB"));
        assert!((1..=32).contains(&placement.network_prefix));
    }

    #[test]
    fn private_and_loopback_addresses_are_not_placed() {
        let db = embedded();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.20.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "100.64.0.1",
        ] {
            let placement = db.place(ip.parse().unwrap());
            assert_eq!(placement.location, None, "{ip}");
        }
        assert_eq!(db.place("10.1.2.3".parse().unwrap()).network_prefix, 8);
    }

    #[test]
    fn every_country_has_a_sample_network_the_database_places_there() {
        let db = embedded();
        let countries = db.countries().unwrap();
        assert!(countries.len() > 200, "{}", countries.len());
        for code in ["GB", "US", "DE", "JP", "BR", "ZA", "SG", "AU"] {
            let sample = &countries[code];
            assert_eq!(sample.location.country.as_deref(), Some(code));
            let (address, prefix) = sample.network;
            assert!((8..=32).contains(&prefix), "{code}: /{prefix}");
            assert!(is_public(IpAddr::V4(address)), "{code}: {address}");
            assert_eq!(country(&db, &address.to_string()).as_deref(), Some(code));
        }
        assert_eq!(countries["GB"].location.continent.as_deref(), Some("EU"));
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let db = embedded();
        assert_eq!(country(&db, "::ffff:81.2.69.142").as_deref(), Some("GB"));
    }

    #[test]
    fn garbage_is_not_a_database() {
        assert!(GeoDatabase::from_vec(b"not an mmdb".to_vec()).is_err());
        let missing = GeoDatabase::open(Path::new("/nonexistent/geo.mmdb"));
        assert!(matches!(missing, Err(GeoError::Read { .. })));
    }

    /// Every network of one family, as the walk visits them: (first
    /// address, prefix, offset of its record in the data section).
    fn walked(db: &GeoDatabase, ipv6: bool) -> Vec<(u128, u8, Option<usize>)> {
        let metadata = db.reader.metadata();
        let base = metadata.node_count as usize + 16;
        let tree = SearchTree::new(
            db.bytes.as_ref(),
            metadata.node_count,
            metadata.record_size,
            metadata.ip_version,
        )
        .unwrap();
        let limit = LoadLimit::default();
        let mut networks = Vec::new();
        tree.walk(ipv6, &mut db.work(&limit), |start, prefix, leaf| {
            let offset = match leaf {
                Leaf::NoData => None,
                Leaf::Data(pointer) => Some(pointer - base),
            };
            networks.push((start, prefix, offset));
            Ok(())
        })
        .unwrap();
        networks
    }

    /// The same, as maxminddb's `within` iterator yields them (what the
    /// table was built from before the walk was GeoDNS's own): networks
    /// without data included, IPv4 networks met in the IPv6 tree (`::/96`)
    /// left out, aliases skipped.
    fn within(db: &GeoDatabase, ipv6: bool) -> Vec<(u128, u8, Option<usize>)> {
        if ipv6 && db.reader.metadata().ip_version == 4 {
            return vec![(0, 0, None)];
        }
        let all = if ipv6 { "::/0" } else { "0.0.0.0/0" };
        let options = maxminddb::WithinOptions::default().include_networks_without_data();
        let mut networks = Vec::new();
        for network in db.reader.within(all.parse().unwrap(), options).unwrap() {
            let network = network.unwrap();
            let cidr = network.network().unwrap();
            let (start, prefix) = match (cidr.ip(), ipv6) {
                (IpAddr::V4(v4), false) => (u128::from(u32::from(v4)), cidr.prefix()),
                (IpAddr::V4(_), true) => continue,
                (IpAddr::V6(v6), true) => (u128::from(v6), cidr.prefix()),
                (IpAddr::V6(_), false) => (0, 0),
            };
            networks.push((start, prefix, network.offset()));
        }
        networks
    }

    /// A database written by mmdb-writer with `options`, of GB, US and SG
    /// networks of both families.
    fn written(writer: mmdb_writer::Writer) -> GeoDatabase {
        use mmdb_writer::Value;
        let mut writer = writer;
        for (net, country, continent) in [
            ("81.0.0.0/9", "GB", "EU"),
            ("81.128.0.0/10", "IE", "EU"),
            ("8.8.8.0/24", "US", "NA"),
            ("203.116.0.0/16", "SG", "AS"),
            ("2001:4860::/32", "US", "NA"),
            ("2a00:1450::/29", "GB", "EU"),
        ] {
            let record = Value::map([
                ("country", Value::map([("iso_code", Value::from(country))])),
                ("continent", Value::map([("code", Value::from(continent))])),
            ]);
            let net: ipnet::IpNet = net.parse().unwrap();
            if writer.insert_value(net, record).is_err() {
                // An IPv6 network in an IPv4 database.
                continue;
            }
        }
        GeoDatabase::from_vec(writer.to_bytes().unwrap()).unwrap()
    }

    /// The walk sees exactly the networks, in exactly the order, that
    /// maxminddb's iterator yields: the table built from it is the one
    /// built before, on the embedded database and on databases of every
    /// record size, with and without IPv4 aliases, and IPv4 only.
    #[test]
    fn the_walk_visits_what_maxminddb_iterates() {
        use mmdb_writer::{IpVersion, Ipv4Aliasing, RecordSize, Writer};
        let mut databases = vec![("embedded", embedded())];
        for (name, size) in [
            ("24-bit", RecordSize::Bits24),
            ("28-bit", RecordSize::Bits28),
            ("32-bit", RecordSize::Bits32),
        ] {
            databases.push((
                name,
                written(Writer::builder("Test").record_size(size).build()),
            ));
        }
        databases.push((
            "no aliases",
            written(
                Writer::builder("Test")
                    .ipv4_aliasing(Ipv4Aliasing::Disabled)
                    .build(),
            ),
        ));
        databases.push((
            "IPv4 only",
            written(Writer::builder("Test").ip_version(IpVersion::V4).build()),
        ));
        for (name, db) in &databases {
            for ipv6 in [false, true] {
                let walked = walked(db, ipv6);
                let within = within(db, ipv6);
                assert!(!walked.is_empty(), "{name}");
                assert_eq!(walked.len(), within.len(), "{name}, ipv6 {ipv6}");
                if let Some(i) = (0..walked.len()).find(|&i| walked[i] != within[i]) {
                    panic!(
                        "{name}, ipv6 {ipv6}: network {i} walked as {:?}, iterated as {:?}",
                        walked[i], within[i]
                    );
                }
            }
        }
        // The embedded database is a real one: hundreds of thousands of
        // networks, each visited once.
        assert!(walked(&databases[0].1, false).len() > 300_000);
    }

    /// MaxMind DB bytes whose search tree is `depth` nodes in a chain: both
    /// records of each node point at the next one, and both of the last
    /// one's at a GB record. Every reader takes it (the tree is well
    /// formed, only shared), and it holds 2^depth networks in a few hundred
    /// bytes: the shape of a file built to hang whatever walks it.
    pub(crate) fn shared_subtrees(ip_version: u16, depth: u32) -> Vec<u8> {
        fn string(text: &str) -> Vec<u8> {
            let mut bytes = vec![0x40 | text.len() as u8];
            bytes.extend_from_slice(text.as_bytes());
            bytes
        }
        fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
            let mut bytes = vec![0xe0 | entries.len() as u8];
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
        file.extend_from_slice(&[0; 16]);
        file.extend(map(&[
            ("country", map(&[("iso_code", string("GB"))])),
            ("continent", map(&[("code", string("EU"))])),
        ]));
        file.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
        let mut node_count = vec![0xc4];
        node_count.extend_from_slice(&depth.to_be_bytes());
        // uint64 is an extended type: size 8, then type 9 - 7.
        let mut build_epoch = vec![0x08, 0x02];
        build_epoch.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        file.extend(map(&[
            ("binary_format_major_version", uint16(2)),
            ("binary_format_minor_version", uint16(0)),
            ("build_epoch", build_epoch),
            ("database_type", string("Crafted-Shared-Subtrees")),
            ("description", vec![0xe0]),
            ("ip_version", uint16(ip_version)),
            // An empty array: extended type 11 - 7.
            ("languages", vec![0x00, 0x04]),
            ("node_count", node_count),
            ("record_size", uint16(24)),
        ]));
        file
    }

    /// Runs `load` on a thread and gives its result, or fails the test if
    /// it has not finished within a minute (it should take microseconds).
    fn within_a_minute<T: Send + 'static>(load: impl FnOnce() -> T + Send + 'static) -> T {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(load());
        });
        receive
            .recv_timeout(Duration::from_secs(60))
            .expect("the load finished within a minute")
    }

    #[test]
    fn shared_subtrees_are_refused_after_a_few_thousand_steps() {
        for (ip_version, depth) in [(4, 24), (4, 32), (6, 128), (6, 100)] {
            let bytes = shared_subtrees(ip_version, depth);
            assert!(bytes.len() <= 1100, "about a kilobyte, not {}", bytes.len());
            let db = GeoDatabase::from_vec(bytes).expect("every reader takes it");
            // Looking one address up is fine: one path.
            assert_eq!(
                db.place("81.2.69.142".parse().unwrap())
                    .location
                    .and_then(|l| l.country)
                    .as_deref(),
                Some("GB")
            );
            let started = Instant::now();
            let steering = crate::Steering::from_config(&config::Config::demo());
            let built = within_a_minute(move || crate::GeoTable::build(&db, &steering));
            let error = built.unwrap_err();
            assert!(
                matches!(error, GeoError::Tangled { .. }),
                "IPv{ip_version}, depth {depth}: {error}"
            );
            let message = error.to_string();
            assert!(
                message.contains("the given database") && message.contains("share subtrees"),
                "{message}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn a_load_out_of_time_or_called_off_stops() {
        let db = embedded();
        let steering = crate::Steering::from_config(&config::Config::demo());
        let error = crate::GeoTable::build_within(&db, &steering, &LoadLimit::new(Duration::ZERO))
            .unwrap_err();
        assert!(matches!(error, GeoError::TimedOut { .. }), "{error}");
        assert!(
            error.to_string().contains("took longer than 0 s"),
            "{error}"
        );
        let limit = LoadLimit::default();
        limit.clone().cancel();
        let error = crate::GeoTable::build_within(&db, &steering, &limit).unwrap_err();
        assert!(matches!(error, GeoError::Cancelled { .. }), "{error}");
        // Called off from another thread while it runs: it stops.
        let limit = LoadLimit::default();
        let switch = limit.clone();
        let started = Instant::now();
        let running = std::thread::spawn(move || {
            crate::GeoTable::build_within(&db, &steering, &limit).map(|_| ())
        });
        switch.cancel();
        let result = running.join().unwrap();
        assert!(
            matches!(result, Err(GeoError::Cancelled { .. })),
            "{result:?} after {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn devices_fifos_and_huge_files_are_refused_before_reading() {
        let error = GeoDatabase::open(Path::new("/dev/zero")).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("/dev/zero is not a regular file (it is a character device)"),
            "{error}"
        );
        let dir = std::env::temp_dir().join(format!("geodns-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo.mmdb");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = within_a_minute(move || GeoDatabase::open(&fifo).err().unwrap());
        assert!(error.to_string().contains("(it is a FIFO)"), "{error}");
        let error = GeoDatabase::open(&dir).err().unwrap();
        assert!(error.to_string().contains("(it is a directory)"), "{error}");
        // A sparse file: large, but costs nothing to make.
        let huge = dir.join("huge.mmdb");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_DATABASE_BYTES + 1).unwrap();
        let error = GeoDatabase::open(&huge).err().unwrap();
        assert!(matches!(error, GeoError::TooLarge { .. }), "{error}");
        assert!(
            error.to_string().contains("huge.mmdb is 1073741825 bytes"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
