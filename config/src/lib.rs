//! Meridian's one configuration: the whole CDN in one TOML file.
//!
//! Every role (GeoDNS, edge, origin, the `up` launcher) reads the same file,
//! so a topology is described once. The file is parsed into the serde structs
//! of [`file`](crate::file) and then *lowered* into [`Config`]: a validated,
//! normalized form that the roles use and that serde never sees. Lowering is
//! where every rule lives, and every rule that fails names the file, the key
//! and the reason, so `meridian config check` can tell a user exactly what
//! to fix before anything binds a socket.

pub mod admin_access;
pub mod applied;
pub mod cluster;
pub mod countries;
pub mod disk;
mod error;
pub mod fields;
mod file;
mod hysteresis;
pub mod report;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cluster::Cluster;
pub use disk::DiskCache;
pub use error::ConfigError;
pub use fields::DnsName;
pub use hysteresis::Hysteresis;
pub use validate::MAX_CNAME_CHAIN;

/// `edge.cache_max_variants` when the config does not set it.
pub const DEFAULT_CACHE_MAX_VARIANTS: u32 = 16;

/// Fields that describe one connection, never forwarded whatever a
/// message's `Connection` says (RFC 9110 §7.6.1).
pub const HOP_BY_HOP_FIELDS: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Request fields the edge sets on every request it forwards.
pub const SET_BY_THE_EDGE: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
    "cdn-loop",
];

/// Whether `edge.forward_request_headers` may list `name` (lowercase): not
/// a connection's own field, its framing, or one the edge sets.
pub fn forwardable_request_field(name: &str) -> bool {
    !HOP_BY_HOP_FIELDS.contains(&name)
        && name != "transfer-encoding"
        && !SET_BY_THE_EDGE.contains(&name)
}

/// The embedded demo topology (see PRODUCT.md): what `meridian up` runs with
/// no `--config`, and what `meridian config default` prints.
pub const DEMO_TOML: &str = include_str!("demo.toml");

/// Where a configuration came from; named in every error and log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// [`DEMO_TOML`], compiled into the binary.
    Embedded,
    /// A file on disk.
    File(PathBuf),
    /// A revision of the cluster's config (published on the bus with
    /// `meridian config publish`), as this role keeps it in its applied
    /// file (see [`applied`]).
    Revision {
        /// The revision number on the bus.
        number: u64,
        /// The file this role keeps its last applied revision in.
        applied_file: PathBuf,
        /// The directory relative paths in it are resolved against.
        relative_to: PathBuf,
    },
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Embedded => f.write_str("<embedded demo config>"),
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Revision { number, .. } => write!(f, "cluster config revision {number}"),
        }
    }
}

/// A validated Meridian configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub source: ConfigSource,
    /// The authoritative zone.
    pub zone: Zone,
    /// The GeoDNS server.
    pub geodns: GeoDns,
    /// How GeoDNS checks edges.
    pub health: Health,
    /// Settings shared by every edge.
    pub edge: Edge,
    /// Settings shared by every origin.
    pub origin: Origin,
    /// The control API of `meridian up`.
    pub control: Control,
    /// The message bus of a multi-host deployment; `None`: a single host.
    pub cluster: Option<Cluster>,
    /// The regions, in file order; at least one.
    pub regions: Vec<Region>,
}

/// The zone GeoDNS is authoritative for. Every name is lowercase and fully
/// qualified (it ends with a dot).
#[derive(Debug, Clone)]
pub struct Zone {
    /// The apex, e.g. `meridian.test.`.
    pub name: DnsName,
    /// Names answered with the nearest healthy region's edges.
    pub steered_names: Vec<DnsName>,
    /// TTL of steered answers, in seconds.
    pub steered_ttl_seconds: u32,
    /// TTL of the apex SOA and NS records, in seconds.
    pub ttl_seconds: u32,
    /// TTL of negative answers (SOA MINIMUM), in seconds.
    pub negative_ttl_seconds: u32,
    /// The SOA RNAME.
    pub hostmaster: DnsName,
    /// The SOA serial.
    pub serial: u32,
    /// The apex NS records; at least one.
    pub nameservers: Vec<Nameserver>,
    /// Static records, in file order. Validated: inside the zone, no CNAME
    /// next to other data, no addresses at steered or nameserver names.
    pub records: Vec<StaticRecord>,
}

/// One static record of the zone (`[[zone.records]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRecord {
    /// Owner name, lowercase and fully qualified, inside the zone.
    pub name: DnsName,
    /// TTL in seconds; every record of one name and type has the same.
    pub ttl_seconds: u32,
    /// The record's data.
    pub data: RecordData,
}

/// The data of a static record. Names are lowercase and fully qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// An IPv4 address.
    A(std::net::Ipv4Addr),
    /// An IPv6 address.
    Aaaa(std::net::Ipv6Addr),
    /// An alias: the only record at its name.
    Cname(DnsName),
    /// A mail exchanger (`"."` is the null MX of RFC 7505).
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The exchange's host name (the root for a null MX, RFC 7505).
        exchange: DnsName,
    },
    /// Text, split into 255-byte strings on the wire.
    Txt(String),
}

impl RecordData {
    /// The record type's mnemonic: `A`, `AAAA`, `CNAME`, `MX` or `TXT`.
    pub fn type_name(&self) -> &'static str {
        match self {
            RecordData::A(_) => "A",
            RecordData::Aaaa(_) => "AAAA",
            RecordData::Cname(_) => "CNAME",
            RecordData::Mx { .. } => "MX",
            RecordData::Txt(_) => "TXT",
        }
    }
}

/// One NS record of the zone, with its glue addresses.
#[derive(Debug, Clone)]
pub struct Nameserver {
    /// Host name, fully qualified.
    pub name: DnsName,
    /// Glue addresses, served when `name` is inside the zone.
    pub addresses: Vec<IpAddr>,
}

/// The GeoDNS servers of the zone and what they share.
#[derive(Debug, Clone)]
pub struct GeoDns {
    /// Every server, in file order; at least one. A config with
    /// `geodns.listen` has one, named [`SINGLE_SERVER_NAME`].
    pub servers: Vec<GeoDnsServer>,
    /// The geolocation database.
    pub geo_database: GeoDatabase,
    /// Indices into [`Config::regions`] for clients that cannot be placed;
    /// every region appears exactly once.
    pub default_order: Vec<usize>,
    /// The token every admin route of every server needs
    /// (`Authorization: Bearer`); always set when an `admin_listen` is not
    /// a loopback address.
    pub admin_token: Option<String>,
    /// Explicit region orders that take precedence over distance.
    pub overrides: Overrides,
    /// Response-rate limiting of UDP replies; `None`: no limiting at all.
    pub rate_limit: Option<RateLimit>,
    /// The most edge addresses one steered answer holds (at least 1): a
    /// region with more healthy edges is answered with this many of
    /// them, taken in turn.
    pub max_answers: usize,
}

/// The name of the one server of a config that gives `geodns.listen`
/// rather than `[[geodns.servers]]`.
pub const SINGLE_SERVER_NAME: &str = "geodns";

/// One GeoDNS server: a `meridian geodns` process answering for the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoDnsServer {
    /// Its name (`ns1`), unique in the config.
    pub name: String,
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    /// HTTP listener for health and metrics; where the other servers poll
    /// its view of the edges. Unique, and a specific address when there
    /// are several servers.
    pub admin_listen: SocketAddr,
    /// Source address of its edge probes; the system's choice when `None`.
    pub probe_from: Option<IpAddr>,
}

/// Which server of the config a `meridian geodns` process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerChoice {
    /// The only one; an error when the config has several.
    Only,
    /// The one with this name.
    Named(String),
    /// The one listening on this address.
    Listening(SocketAddr),
}

impl GeoDns {
    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&GeoDnsServer> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The server `choice` names, or a sentence saying why there is none
    /// (listing the servers there are).
    pub fn choose(&self, choice: &ServerChoice) -> Result<&GeoDnsServer, String> {
        let listed = || {
            self.servers
                .iter()
                .map(|s| format!("{} on {}", s.name, s.listen))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match choice {
            ServerChoice::Only => match self.servers.as_slice() {
                [only] => Ok(only),
                _ => Err(format!(
                    "the config has {} GeoDNS servers ({}): choose one with --server NAME or --listen ADDR",
                    self.servers.len(),
                    listed()
                )),
            },
            ServerChoice::Named(name) => self.server(name).ok_or_else(|| {
                format!(
                    "no GeoDNS server named {name:?}; the config has {}",
                    listed()
                )
            }),
            ServerChoice::Listening(addr) => {
                let mut found = self.servers.iter().filter(|s| s.listen == *addr);
                match (found.next(), found.next()) {
                    (Some(server), None) => Ok(server),
                    (Some(_), Some(_)) => Err(format!(
                        "several GeoDNS servers listen on {addr} ({}): choose one with --server NAME",
                        listed()
                    )),
                    (None, _) => Err(format!(
                        "no GeoDNS server listens on {addr}; the config has {}",
                        listed()
                    )),
                }
            }
        }
    }
}

/// `[geodns.rate_limit]`: response-rate limiting of UDP replies, against
/// reflection and amplification attacks that spoof a victim's address.
///
/// Each client network (the source address cut to a prefix) has a token
/// bucket holding `burst` replies and refilled at `responses_per_second`.
/// A UDP reply the bucket cannot pay for is dropped, except every `slip`th
/// one, which is sent truncated (TC, no records) so that a real client
/// behind the network retries over TCP, which is never limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained replies per second per network, 1 to 1,000,000.
    pub responses_per_second: u32,
    /// The bucket's size: replies a network may get at once, 1 to 1,000,000.
    pub burst: u32,
    /// Every `slip`th limited reply is sent truncated; 0 drops them all.
    pub slip: u32,
    /// Leading bits of an IPv4 source that make its network, 8 to 32.
    pub ipv4_prefix_length: u8,
    /// Leading bits of an IPv6 source that make its network, 16 to 128.
    pub ipv6_prefix_length: u8,
}

/// `[geodns.overrides]`: explicit region orders for groups of clients.
/// Precedence: a matching network (longest prefix first), then the
/// client's country, then its continent; otherwise distance decides.
/// Each list holds indices into [`Config::regions`], each at most once;
/// regions a list leaves out follow in the order the client would get
/// without the override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Client networks, in file order (the longest match wins).
    pub nets: Vec<NetOverride>,
    /// Uppercase ISO 3166-1 alpha-2 code → region order.
    pub countries: std::collections::BTreeMap<String, Vec<usize>>,
    /// Uppercase continent code (AF AN AS EU NA OC SA) → region order.
    pub continents: std::collections::BTreeMap<String, Vec<usize>>,
}

/// One network override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOverride {
    /// The client network, without host bits.
    pub net: ipnet::IpNet,
    /// Region indices, best first.
    pub regions: Vec<usize>,
}

/// The control API `meridian up` serves for `outage`, `restore` and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Its listen address; always a loopback address.
    pub listen: SocketAddr,
}

/// Which geolocation database GeoDNS uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoDatabase {
    /// The vendored public-domain country database compiled into the binary.
    Embedded,
    /// A GeoIP2/GeoLite2 Country or City `.mmdb` file.
    File(PathBuf),
}

/// How GeoDNS health-checks edges: an HTTP GET of `edge.health_path` on
/// every edge address's data-plane port, with hysteresis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Time between two probes of one edge.
    pub interval: Duration,
    /// How long a probe may take.
    pub timeout: Duration,
    /// Consecutive failures that mark an edge down (at least 1).
    pub down_after: u32,
    /// Consecutive successes that mark it up again (at least 1).
    pub up_after: u32,
    /// With every region down, answer the nearest anyway instead of SERVFAIL.
    pub fail_open: bool,
    /// How many of the vantage points that report must see an edge down.
    pub quorum: Quorum,
    /// A vantage point not heard from for this long stops counting
    /// (longer than `interval`).
    pub silent_after: Duration,
}

/// `health.quorum`: how many vantage points must see an edge down before
/// GeoDNS steers away from it.
///
/// A GeoDNS counts its own probes and the views of the other vantage
/// points that reported recently (the other GeoDNS servers, the edges).
/// The rule is pure and lives here, next to the setting, like
/// [`Hysteresis`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of those that report: a tie keeps the edge up, so
    /// one nameserver cut off from a region cannot steer its clients away.
    Majority,
    /// At least this many (at least 1); when fewer report at all, all of
    /// those that report.
    AtLeast(u32),
}

impl Quorum {
    /// Whether `down` of the `reporting` vantage points seeing an edge
    /// down is enough to take it out of answers. With one vantage point
    /// (a GeoDNS alone) its own view decides, whatever the rule.
    pub fn is_down(self, down: usize, reporting: usize) -> bool {
        let needed = match self {
            Quorum::Majority => reporting / 2 + 1,
            Quorum::AtLeast(count) => {
                usize::try_from(count).map_or(reporting, |count| count.min(reporting))
            }
        };
        // Nobody reporting is no evidence of anything.
        reporting > 0 && down >= needed.max(1)
    }
}

impl Default for Health {
    /// The values a config gets when it has no `[health]` section.
    fn default() -> Self {
        validate::default_health()
    }
}

/// Settings shared by every region's edge.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Plain-HTTP port on each edge address.
    pub http_port: u16,
    /// Lowercase host names the edges serve.
    pub hostnames: Vec<String>,
    /// Path answered by the edge itself for health checks.
    pub health_path: String,
    /// Cache budget of each edge in bytes.
    pub cache_max_bytes: usize,
    /// Largest body an edge stores, in bytes.
    pub cache_max_object_bytes: usize,
    /// Port of each edge's admin listener.
    pub admin_port: u16,
    /// Address of the admin listener when set; else see [`Edge::admin_addr`].
    pub admin_address: Option<IpAddr>,
    /// Each edge's admin listener is on its own edge address.
    pub admin_on_edge_address: bool,
    /// How edges reach, time out on, retry and health-check origins.
    pub origins: OriginPolicy,
    /// How long edges wait on slow clients.
    pub client_timeouts: ClientTimeouts,
    /// Store responses that set cookies, without their `Set-Cookie`.
    pub cache_set_cookie_responses: bool,
    /// Freshness for responses without explicit freshness, by path prefix;
    /// the longest matching prefix wins.
    pub default_ttls: Vec<DefaultTtl>,
    /// The disk tier below the memory cache, if any: objects too large for
    /// memory, or evicted from it, and what survives a restart.
    pub disk: Option<DiskCache>,
    /// Whether plain hits are answered straight from storage.
    pub plain_hit_fast_path: bool,
    /// Whether clients' cache-bypassing directives make the edge revalidate.
    pub honor_client_no_cache: bool,
    /// Extra request fields forwarded on GET and HEAD (lowercase names).
    pub forward_request_headers: Vec<String>,
    /// The most variants of one URL stored at once (at least 1).
    pub cache_max_variants: usize,
    /// The bearer token purges need; `None` disables purging.
    pub admin_token: Option<String>,
    /// HTTPS port on each edge address; `None`: no HTTPS.
    pub https_port: Option<u16>,
    /// Certificates for HTTPS, chosen by SNI; the first is the default. Not
    /// empty when `https_port` is set.
    pub certificates: Vec<Certificate>,
}

/// How long an edge waits on a client before closing its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// The whole wait for a request's head, including the idle time
    /// before it on a kept-alive connection (nginx's
    /// `client_header_timeout` plus its keep-alive wait, Varnish's
    /// `timeout_idle`). A client that trickles its headers is cut off here.
    pub header: Duration,
    /// The longest stall in one read of a request body or one write of a
    /// response (nginx's `client_body_timeout`, `send_timeout`).
    pub io: Duration,
}

impl Default for ClientTimeouts {
    /// The values a config gets when its `[edge]` does not set them.
    fn default() -> Self {
        Edge::defaults().client_timeouts
    }
}

/// One certificate an edge serves over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Lowercase host names it serves (`*.` prefix for a wildcard).
    pub hostnames: Vec<String>,
    /// Where its chain and key come from.
    pub source: CertificateSource,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// PEM files (paths resolved against the config file's directory).
    Files {
        /// Chain, leaf first.
        chain: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// The development certificate compiled into the binary.
    Development,
}

/// A heuristic freshness the operator grants to part of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultTtl {
    /// Requests whose path starts with this.
    pub path_prefix: String,
    /// The freshness lifetime.
    pub ttl: Duration,
}

/// How an edge treats its origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Path the active health checks GET on every origin.
    pub health_path: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while an origin answers.
    pub read_timeout: Duration,
    /// Longest time one request spends on origins, all tries included,
    /// until the response's last byte arrived.
    pub total_timeout: Duration,
    /// Origins one request may try, at least 1.
    pub max_tries: u32,
    /// How long an origin that failed a request is tried last.
    pub suspect_for: Duration,
    /// PEM bundle of the certificate authorities `https://` origins are
    /// verified against; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for OriginPolicy {
    /// The values a config gets when its `[edge]` does not set them.
    fn default() -> Self {
        Edge::defaults().origins
    }
}

impl Edge {
    /// Where the edge at `address` serves its admin API:
    /// `edge.admin_address` if set, else `address` itself if it is a
    /// loopback address (as in the demo, where every edge has its own) or
    /// `edge.admin_on_edge_address` asks for it, else 127.0.0.1. Never a
    /// public address unless asked.
    pub fn admin_addr(&self, address: IpAddr) -> SocketAddr {
        let own = address.is_loopback() || self.admin_on_edge_address;
        let ip = self.admin_address.unwrap_or(if own {
            address
        } else {
            IpAddr::from([127, 0, 0, 1])
        });
        SocketAddr::new(ip, self.admin_port)
    }

    /// An `[edge]` that sets only its required keys (the plain-HTTP port
    /// 8080, `localhost`, a 256 MiB cache of objects up to 16 MiB): every
    /// other setting at its default. What an ad-hoc edge starts from.
    pub fn defaults() -> Edge {
        validate::default_edge()
    }
}

/// Settings shared by every region's origin.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Directory served as static files; `None` serves the built-in demo site.
    pub root: Option<PathBuf>,
    /// `max-age` of static files, in seconds.
    pub asset_max_age_seconds: u32,
}

/// One region: a location, its edges and its origin.
#[derive(Debug, Clone)]
pub struct Region {
    /// Short unique name, e.g. `eu-west`.
    pub name: String,
    /// Where it is, for people.
    pub city: Option<String>,
    /// Decimal degrees north, in [-90, 90].
    pub latitude: f64,
    /// Decimal degrees east, in [-180, 180].
    pub longitude: f64,
    /// The edge addresses GeoDNS hands out; at least one, unique across regions.
    pub edge_addresses: Vec<IpAddr>,
    /// The origin as edges reach it.
    pub origin_url: OriginUrl,
    /// Where `meridian origin --region NAME` binds.
    pub origin_listen: SocketAddr,
}

impl Region {
    /// The HTTPS listeners of this region's edges, if HTTPS is on.
    pub fn edge_https_addrs(&self, edge: &Edge) -> Vec<SocketAddr> {
        match edge.https_port {
            Some(port) => self
                .edge_addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Great-circle distance to `other`, in kilometres.
    pub fn distance_km(&self, other: &Region) -> f64 {
        great_circle_km(
            (self.latitude, self.longitude),
            (other.latitude, other.longitude),
        )
    }

    /// The admin listeners of this region's edges, one per edge address
    /// (see [`Edge::admin_addr`]).
    pub fn edge_admin_addrs(&self, edge: &Edge) -> Vec<SocketAddr> {
        self.edge_addresses
            .iter()
            .map(|ip| edge.admin_addr(*ip))
            .collect()
    }

    /// The data-plane HTTP listeners of this region's edges.
    pub fn edge_http_addrs(&self, edge: &Edge) -> Vec<SocketAddr> {
        self.edge_addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, edge.http_port))
            .collect()
    }
}

/// A validated `http://host:port` or `https://host:port` origin URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct OriginUrl {
    /// `https://`: edges speak TLS to it and verify its certificate for
    /// `host` against `edge.origin_ca_file` (or the system's roots).
    pub tls: bool,
    /// The host, without brackets for IPv6 literals.
    pub host: String,
    /// The port (80, or 443 for `https`, when the URL has none).
    pub port: u16,
}

impl OriginUrl {
    /// Parses `http://host[:port]` or `https://host[:port]`, nothing after
    /// the authority; the error says what is wrong with `value`.
    pub fn parse(value: &str) -> Result<OriginUrl, String> {
        validate::origin_url(value)
    }

    /// `host:port`, bracketing IPv6 literals, as a connect address string.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl TryFrom<String> for OriginUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        OriginUrl::parse(&value)
    }
}

impl fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// Mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Great-circle distance between two (latitude, longitude) points in
/// decimal degrees, in kilometres (the haversine formula).
pub fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

impl Config {
    /// The embedded demo topology.
    pub fn demo() -> Config {
        // The demo is covered by a unit test below, so it always validates.
        #[allow(clippy::expect_used)]
        Config::from_toml(DEMO_TOML, ConfigSource::Embedded).expect("the embedded demo is valid")
    }

    /// Reads and validates a file. Relative paths inside it are resolved
    /// against the file's own directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = ConfigSource::File(path.to_path_buf());
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&source, "", format!("cannot read the file: {e}")))?;
        Config::from_toml(&text, source)
    }

    /// Loads `path`, or the embedded demo when `path` is `None`.
    pub fn load_or_demo(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Config::load(path),
            None => Ok(Config::demo()),
        }
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str, source: ConfigSource) -> Result<Config, ConfigError> {
        let file = error::parse(text, &source)?;
        validate::lower(file, source)
    }

    /// The region called `name`, or an error listing the known ones.
    pub fn region(&self, name: &str) -> Result<&Region, ConfigError> {
        self.regions.iter().find(|r| r.name == name).ok_or_else(|| {
            ConfigError::new(
                &self.source,
                "region",
                format!(
                    "no region named {name:?}; known regions: {}",
                    self.region_names().join(", ")
                ),
            )
        })
    }

    /// The region called `name` and which of its edges `address` asks
    /// for: `address` must be one of the region's edge addresses; without
    /// one, a region with a single edge address means that one, and a
    /// region with several is an error listing them.
    pub fn edge_of(
        &self,
        name: &str,
        address: Option<IpAddr>,
    ) -> Result<(&Region, IpAddr), ConfigError> {
        let region = self.region(name)?;
        let index = self
            .regions
            .iter()
            .position(|r| r.name == name)
            .unwrap_or(0);
        let listed = || {
            region
                .edge_addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let key = format!("region[{index}].edge_addresses");
        match (address, region.edge_addresses.as_slice()) {
            (Some(address), addresses) if addresses.contains(&address) => Ok((region, address)),
            (Some(address), _) => Err(ConfigError::new(
                &self.source,
                key,
                format!(
                    "{address} is not an edge address of {name}; its edges are {}",
                    listed()
                ),
            )),
            (None, [only]) => Ok((region, *only)),
            (None, _) => Err(ConfigError::new(
                &self.source,
                key,
                format!(
                    "{name} has {} edges ({}): say which one this is with --address",
                    region.edge_addresses.len(),
                    listed()
                ),
            )),
        }
    }

    /// The regions ordered for an edge of `region`: itself first, then the
    /// others nearest first (ties in file order). Indices into `regions`.
    pub fn regions_nearest_to(&self, region: usize) -> Vec<usize> {
        let Some(home) = self.regions.get(region) else {
            return Vec::new();
        };
        let mut others: Vec<(f64, usize)> = self
            .regions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != region)
            .map(|(i, r)| (home.distance_km(r), i))
            .collect();
        others.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        std::iter::once(region)
            .chain(others.into_iter().map(|(_, i)| i))
            .collect()
    }

    /// The region names in file order.
    pub fn region_names(&self) -> Vec<&str> {
        self.regions.iter().map(|r| r.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests;
