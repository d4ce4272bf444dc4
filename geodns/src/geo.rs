//! Where a client is: an IP address looked up in a GeoIP2-schema database.
//!
//! Works with any GeoIP2/GeoLite2 *Country* or *City* `.mmdb` (and others in
//! the same schema, such as DB-IP's): it reads `country.iso_code` (falling
//! back to `registered_country`), `continent.code` and, when the database
//! has them, `location.latitude/longitude`. A Country database carries no
//! coordinates, so the client is placed at its country's centroid
//! (`config::countries`).
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

use config::countries::{Coordinates, country_centroid};
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
    /// The file cannot be opened as a MaxMind DB at all.
    #[error("{what} is not a MaxMind DB: {source}")]
    NotMaxMindDb {
        /// The file, or "the embedded database".
        what: String,
        /// What the reader said.
        source: maxminddb::MaxMindDbError,
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
        let reader =
            Reader::from_source(bytes.clone()).map_err(|source| GeoError::NotMaxMindDb {
                what: what.to_owned(),
                source,
            })?;
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
mod tests;
