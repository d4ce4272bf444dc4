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

use crate::centroids::{Coordinates, country_centroid};
use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The vendored IPtoASN country database, compiled in.
/// The vendored IPtoASN country database, compiled in (the default
/// `geo_database`). Public so that tools can hand the very same file to
/// another server, e.g. the benchmark's gdnsd.
pub static EMBEDDED_DATABASE: &[u8] = include_bytes!("../data/GeoIP2-Country-iptoasn.mmdb");

/// A loaded geolocation database.
pub struct GeoDatabase {
    reader: Reader<DatabaseBytes>,
    description: String,
    /// The file, or "the embedded database", for errors.
    what: String,
}

/// The database's bytes: compiled in, or read from a file.
enum DatabaseBytes {
    Embedded(&'static [u8]),
    Loaded(Vec<u8>),
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
    /// The file is not a usable MaxMind DB.
    #[error("{what} is not a GeoIP2-schema database: {reason}")]
    Invalid {
        /// The file, or "the embedded database".
        what: String,
        /// What is wrong with it.
        reason: String,
    },
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

    /// A GeoIP2/GeoLite2 Country or City database file.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(DatabaseBytes::Loaded(bytes), &path.display().to_string())
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
        Self::from_bytes(DatabaseBytes::Loaded(bytes), "the given database")
    }

    fn from_bytes(bytes: DatabaseBytes, what: &str) -> Result<Self, GeoError> {
        let invalid = |reason: String| GeoError::Invalid {
            what: what.to_owned(),
            reason,
        };
        let reader = Reader::from_source(bytes).map_err(|e| invalid(e.to_string()))?;
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
            description,
            what: what.to_owned(),
        })
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
    /// Fails on a corrupt tree or an undecodable record.
    pub(crate) fn scan(
        &self,
        ipv6: bool,
        mut visit: impl FnMut(u128, u8, Option<DbRecord<'_>>),
    ) -> Result<(), GeoError> {
        let invalid = |reason: String| GeoError::Invalid {
            what: self.what.clone(),
            reason,
        };
        if ipv6 && self.reader.metadata().ip_version == 4 {
            visit(0, 0, None);
            return Ok(());
        }
        let all = if ipv6 { "::/0" } else { "0.0.0.0/0" };
        let options = WithinOptions::default().include_networks_without_data();
        let networks = self
            .reader
            .within(
                all.parse().map_err(|_| invalid("bad network".into()))?,
                options,
            )
            .map_err(|e| invalid(e.to_string()))?;
        let mut records: HashMap<usize, (u32, Option<Location>)> = HashMap::new();
        for network in networks {
            let network = network.map_err(|e| invalid(e.to_string()))?;
            let cidr = network.network().map_err(|e| invalid(e.to_string()))?;
            let (start, prefix) = match (cidr.ip(), ipv6) {
                (IpAddr::V4(v4), false) => (u128::from(u32::from(v4)), cidr.prefix()),
                // IPv4 networks met in the IPv6 tree lie in `::/96`, which
                // is the IPv4 tree itself: a gap here, like the aliases.
                (IpAddr::V4(_), true) => continue,
                (IpAddr::V6(v6), true) => (u128::from(v6), cidr.prefix()),
                // An IPv6 database without an IPv4 subtree: one network
                // above `::/96` holds every IPv4 address.
                (IpAddr::V6(_), false) => (0, 0),
            };
            let record = match network.offset() {
                None => None,
                Some(offset) => {
                    if !records.contains_key(&offset) {
                        let decoded = network
                            .decode::<GeoRecord<'_>>()
                            .map_err(|e| invalid(format!("record at offset {offset}: {e}")))?;
                        let index = u32::try_from(records.len())
                            .map_err(|_| invalid("too many records".into()))?;
                        records.insert(offset, (index, decoded.and_then(locate)));
                    }
                    records.get(&offset).map(|(index, location)| DbRecord {
                        index: *index,
                        location: location.as_ref(),
                    })
                }
            };
            visit(start, prefix, record);
        }
        Ok(())
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
        self.scan(false, |start, prefix, record| {
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
}
