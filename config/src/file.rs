//! The TOML file format, exactly as written by users.
//!
//! These structs mirror the file and nothing else: serde fills them, and
//! [`crate::Config::from_toml`] lowers them into the validated [`crate::Config`]
//! that the rest of Meridian uses. Nothing outside this crate sees them.

use crate::OriginUrl;
use crate::fields::{
    AdminToken, DnsName, ForwardedField, HostPattern, Latitude, Longitude, Port, QuorumField,
    RegionName, ServerName, TimeoutMs, Ttl, UrlPath, Within,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    /// The authoritative zone and its steered names.
    pub zone: ZoneFile,
    /// The GeoDNS server.
    pub geodns: GeoDnsFile,
    /// How GeoDNS checks that edges are up.
    #[serde(default)]
    pub health: HealthFile,
    /// Settings shared by every region's edge.
    pub edge: EdgeFile,
    /// Settings shared by every region's origin.
    #[serde(default)]
    pub origin: OriginFile,
    /// The control API of `meridian up`.
    #[serde(default)]
    pub control: ControlFile,
    /// The message bus of a multi-host deployment, if any.
    pub cluster: Option<crate::cluster::ClusterFile>,
    /// The regions, in the order `meridian status` lists them.
    #[serde(default, rename = "region")]
    pub regions: Vec<RegionFile>,
}

/// `[zone]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ZoneFile {
    /// The zone's apex, e.g. `meridian.test.`.
    pub name: DnsName,
    /// Fully qualified names answered with the nearest region's edges.
    pub steered_names: Vec<DnsName>,
    /// TTL of steered answers.
    #[serde(default = "default_steered_ttl")]
    pub steered_ttl_seconds: Ttl,
    /// TTL of the apex SOA and NS records.
    #[serde(default = "default_zone_ttl")]
    pub ttl_seconds: Ttl,
    /// TTL of negative answers (the SOA MINIMUM field, RFC 2308).
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl_seconds: Ttl,
    /// The SOA RNAME: the zone's contact mailbox as a domain name.
    pub hostmaster: DnsName,
    /// The SOA serial.
    #[serde(default = "default_serial")]
    pub serial: u32,
    /// The zone's nameservers (NS records at the apex).
    pub nameservers: Vec<NameserverFile>,
    /// Static records (A, AAAA, CNAME, MX, TXT) at names inside the zone.
    #[serde(default)]
    pub records: Vec<RecordFile>,
}

/// `[[zone.records]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordFile {
    /// The owner name, inside the zone.
    pub name: DnsName,
    /// `A`, `AAAA`, `CNAME`, `MX` or `TXT`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The data in zone-file form: an address, a name, `"10 mail.example."`
    /// for MX, or the text of a TXT record.
    pub value: String,
    /// The record's TTL; `zone.ttl_seconds` when absent.
    pub ttl_seconds: Option<Ttl>,
}

/// `[[zone.nameservers]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameserverFile {
    /// The nameserver's host name.
    pub name: DnsName,
    /// Its addresses, served as glue when the name is inside the zone.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// `[geodns]`: settings every GeoDNS server shares, and either one
/// server (`listen`, `admin_listen`, `probe_from`) or several
/// (`[[geodns.servers]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeoDnsFile {
    /// The one server's address for both UDP and TCP.
    pub listen: Option<SocketAddr>,
    /// The GeoDNS servers of the zone, each run by its own
    /// `meridian geodns --server NAME`; instead of `listen`.
    #[serde(default)]
    pub servers: Vec<GeoDnsServerFile>,
    /// The one server's source address for its edge probes.
    pub probe_from: Option<IpAddr>,
    /// `"embedded"` or a path to a GeoIP2/GeoLite2 Country or City `.mmdb`.
    #[serde(default = "default_geo_database")]
    pub geo_database: String,
    /// Region order for clients the database cannot place.
    pub default_order: Vec<String>,
    /// The one server's HTTP listener for `/healthz`, `/health` and
    /// `/metrics` (127.0.0.1:9153 when absent).
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token every admin route of every server then needs; required
    /// when an `admin_listen` is not a loopback address.
    pub admin_token: Option<AdminToken>,
    /// Explicit region orders that take precedence over distance.
    #[serde(default)]
    pub overrides: OverridesFile,
    /// Response-rate limiting of UDP replies; off when absent.
    pub rate_limit: Option<RateLimitFile>,
    /// The most edge addresses one steered answer holds. At most 64: a
    /// UDP answer of 1232 bytes holds about 70 A records, fewer AAAA.
    #[serde(default = "default_max_answers")]
    pub max_answers: Within<1, 64>,
}

/// `[[geodns.servers]]`: one GeoDNS server of the zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeoDnsServerFile {
    /// Its name (`ns1`): `meridian geodns --server NAME` runs it, and the
    /// other vantage points report as `geodns NAME`.
    pub name: ServerName,
    /// Address for both UDP and TCP.
    pub listen: SocketAddr,
    /// HTTP listener for `/healthz`, `/health` and `/metrics`, where the
    /// other GeoDNS servers also poll its view of the edges.
    pub admin_listen: SocketAddr,
    /// Source address of its edge probes (the system's choice when absent).
    pub probe_from: Option<IpAddr>,
}

/// Replies a rate limit allows one network (per second, or at once): at
/// most a million, beyond which it limits nothing a server can send.
pub(crate) type RateLimitReplies = Within<1, 1_000_000>;

/// `[geodns.rate_limit]`: a token bucket per client network that UDP
/// replies take from, against reflection and amplification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitFile {
    /// Replies per second one client network gets, sustained.
    pub responses_per_second: RateLimitReplies,
    /// Replies one client network may get at once (the bucket's size);
    /// `responses_per_second` when absent.
    pub burst: Option<RateLimitReplies>,
    /// Every Nth reply over the limit is sent truncated (TC, no records)
    /// instead of dropped, so a real client retries over TCP; 0 drops all.
    /// At most 10: past that, truncated replies are too rare to help real
    /// clients behind a limited network.
    #[serde(default = "default_rate_limit_slip")]
    pub slip: Within<0, 10>,
    /// IPv4 sources sharing this many leading bits share a bucket; at
    /// least 8, so unrelated networks (whole providers) never share one.
    #[serde(default = "default_rate_limit_ipv4_prefix")]
    pub ipv4_prefix_length: Within<8, 32>,
    /// IPv6 sources sharing this many leading bits share a bucket (at
    /// least 16, for the same reason).
    #[serde(default = "default_rate_limit_ipv6_prefix")]
    pub ipv6_prefix_length: Within<16, 128>,
}

/// `[geodns.overrides]`: each maps a client group to an explicit region
/// order. A network beats a country, a country beats a continent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverridesFile {
    /// CIDR (`"10.0.0.0/8"`) → region order; the longest match wins.
    #[serde(default)]
    pub nets: BTreeMap<String, Vec<String>>,
    /// ISO 3166-1 alpha-2 country code (`BR`) → region order.
    #[serde(default)]
    pub countries: BTreeMap<String, Vec<String>>,
    /// Continent code (`OC`; AF AN AS EU NA OC SA) → region order.
    #[serde(default)]
    pub continents: BTreeMap<String, Vec<String>>,
}

/// `[control]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlFile {
    /// Where `meridian up` serves its control API (loopback only).
    #[serde(default = "default_control_listen")]
    pub listen: SocketAddr,
}

impl Default for ControlFile {
    fn default() -> Self {
        ControlFile {
            listen: default_control_listen(),
        }
    }
}

/// `[health]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthFile {
    /// Time between two probes of one edge: at least 50 ms (more often is
    /// a load test, not a health check), at most 5 minutes (an outage
    /// would go unnoticed for too long).
    #[serde(default = "default_health_interval")]
    pub interval_ms: Within<50, 300_000>,
    /// How long a probe may take before it counts as failed.
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failed probes that mark an edge down.
    #[serde(default = "default_health_threshold")]
    pub down_after: Within<1, 100>,
    /// Consecutive successful probes that mark a down edge up again.
    #[serde(default = "default_health_threshold")]
    pub up_after: Within<1, 100>,
    /// When every region is down: answer the nearest anyway (`true`), or SERVFAIL.
    #[serde(default = "default_true")]
    pub fail_open: bool,
    /// How many of the vantage points that report (this GeoDNS's probes,
    /// the other GeoDNS servers', the edges') must see an edge down
    /// before it is steered away from: `"majority"` or a number.
    #[serde(default = "default_quorum")]
    pub quorum: QuorumField,
    /// A vantage point not heard from for this long stops counting;
    /// four probe intervals when absent.
    pub silent_after_ms: Option<TimeoutMs>,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            interval_ms: default_health_interval(),
            timeout_ms: default_health_timeout(),
            down_after: default_health_threshold(),
            up_after: default_health_threshold(),
            fail_open: true,
            quorum: default_quorum(),
            silent_after_ms: None,
        }
    }
}

/// `[edge]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeFile {
    /// Plain-HTTP port on each edge address.
    pub http_port: Port,
    /// Host names the edges serve.
    pub hostnames: Vec<DnsName>,
    /// Path the edge answers itself, for health checks.
    #[serde(default = "default_health_path")]
    pub health_path: UrlPath,
    /// The in-memory cache budget of each edge, in bytes.
    pub cache_max_bytes: u64,
    /// The largest response body an edge stores, in bytes.
    pub cache_max_object_bytes: u64,
    /// A disk tier below the memory cache.
    pub disk: Option<crate::disk::DiskFile>,
    /// Port of each edge's admin listener (health, metrics, status).
    #[serde(default = "default_admin_port")]
    pub admin_port: Port,
    /// Address of the admin listener; loopback unless set.
    pub admin_address: Option<IpAddr>,
    /// Each edge serves its admin listener on its own edge address (on a
    /// private network where edges are hosts of their own, so that the
    /// GeoDNS servers can hear what each sees of its peers).
    #[serde(default)]
    pub admin_on_edge_address: bool,
    /// Path on origins that the edges' active health checks probe.
    #[serde(default = "default_origin_health_path")]
    pub origin_health_path: UrlPath,
    /// How long a client may take to send a request's head, counted from
    /// when the edge starts waiting for it (on a kept-alive connection,
    /// from the end of the previous response).
    #[serde(default = "default_client_header_timeout")]
    pub client_header_timeout_ms: TimeoutMs,
    /// How long a client may stall while sending a request body or
    /// receiving a response (each read or write).
    #[serde(default = "default_client_io_timeout")]
    pub client_io_timeout_ms: TimeoutMs,
    /// How long an edge waits for a TCP connection to an origin.
    #[serde(default = "default_origin_connect_timeout")]
    pub origin_connect_timeout_ms: TimeoutMs,
    /// How long an origin may stay silent while answering.
    #[serde(default = "default_origin_read_timeout")]
    pub origin_read_timeout_ms: TimeoutMs,
    /// How long one request may spend on origins altogether, every try
    /// included, until the last byte of the response arrives.
    #[serde(default = "default_origin_total_timeout")]
    pub origin_total_timeout_ms: TimeoutMs,
    /// Origins one request may try (its own region's, then the nearest others).
    #[serde(default = "default_origin_max_tries")]
    pub origin_max_tries: Within<1, 10>,
    /// How long an origin that just failed a request is tried last.
    #[serde(default = "default_origin_suspect")]
    pub origin_suspect_ms: TimeoutMs,
    /// PEM bundle of the authorities `https://` origins are verified
    /// against, relative to the config file; the system's roots if unset.
    pub origin_ca_file: Option<String>,
    /// Store responses that set cookies (the stored copy loses its
    /// `Set-Cookie`). Off by default: such responses are per-user.
    #[serde(default)]
    pub cache_set_cookie_responses: bool,
    /// Freshness for responses that state none, by path prefix.
    #[serde(default)]
    pub default_ttl: Vec<DefaultTtlFile>,
    /// Let clients' `Cache-Control: no-cache`, `max-age`, `min-fresh` and
    /// `Pragma: no-cache` make the edge revalidate what it stores (RFC 9111
    /// §5.2.1). Off: the edge ignores them, so no client can send requests
    /// past the cache to the origins.
    #[serde(default = "default_true")]
    pub honor_client_no_cache: bool,
    /// Request fields forwarded to origins on GET and HEAD requests besides
    /// the edge's own list.
    #[serde(default)]
    pub forward_request_headers: Vec<ForwardedField>,
    /// Answer plain hits straight from storage; off serves every hit
    /// through Pingora's cache, with the same answers, more slowly (for
    /// comparing the two).
    #[serde(default = "default_true")]
    pub plain_hit_fast_path: bool,
    /// The most variants of one URL stored at once (responses that `Vary`).
    #[serde(default = "default_cache_max_variants")]
    pub cache_max_variants: Within<1, 4096>,
    /// Bearer token the admin listener requires for purges; purging is
    /// disabled without one.
    pub admin_token: Option<AdminToken>,
    /// HTTPS port on each edge address; no HTTPS when absent.
    pub https_port: Option<Port>,
    /// Certificates for HTTPS, chosen by SNI; the first is the default.
    #[serde(default)]
    pub certificates: Vec<CertificateFile>,
}

/// `[[edge.certificates]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateFile {
    /// Host names this certificate serves (`*.example.net` for a wildcard).
    pub hostnames: Vec<HostPattern>,
    /// PEM certificate chain, leaf first.
    pub chain_file: Option<String>,
    /// PEM private key.
    pub key_file: Option<String>,
    /// Use the development certificate compiled into the binary (signed by
    /// `certs/dev/ca.pem`; for local use only).
    #[serde(default)]
    pub development: bool,
}

/// `[[edge.default_ttl]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultTtlFile {
    /// Requests whose path starts with this.
    pub path_prefix: UrlPath,
    /// How long their responses stay fresh when the origin says nothing.
    pub ttl_seconds: u32,
}

/// `[origin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OriginFile {
    /// Directory served as static files; the built-in demo site when absent.
    pub root: Option<String>,
    /// `Cache-Control: public, max-age=N` on static files.
    #[serde(default = "default_asset_max_age")]
    pub asset_max_age_seconds: u32,
}

impl Default for OriginFile {
    fn default() -> Self {
        OriginFile {
            root: None,
            asset_max_age_seconds: default_asset_max_age(),
        }
    }
}

/// `[[region]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegionFile {
    /// Short name: lowercase letters, digits and `-`.
    pub name: RegionName,
    /// Where the region is, for people.
    pub city: Option<String>,
    /// Latitude of the region's datacenter, decimal degrees north.
    pub latitude: Latitude,
    /// Longitude of the region's datacenter, decimal degrees east.
    pub longitude: Longitude,
    /// Addresses of the region's edges, as GeoDNS answers them.
    pub edge_addresses: Vec<IpAddr>,
    /// The region's origin, as edges reach it: `http://host:port`.
    pub origin_url: OriginUrl,
    /// Where `meridian origin` binds; defaults to the origin URL's address.
    pub origin_listen: Option<SocketAddr>,
}

fn default_steered_ttl() -> Ttl {
    Ttl::new_unchecked(30)
}

fn default_zone_ttl() -> Ttl {
    Ttl::new_unchecked(3600)
}

fn default_negative_ttl() -> Ttl {
    Ttl::new_unchecked(60)
}

fn default_serial() -> u32 {
    1
}

fn default_geo_database() -> String {
    "embedded".to_owned()
}

fn default_admin_port() -> Port {
    Port::new_unchecked(9080)
}

fn default_origin_health_path() -> UrlPath {
    UrlPath::new_unchecked("/healthz")
}

fn default_origin_connect_timeout() -> TimeoutMs {
    TimeoutMs::new_unchecked(1000)
}

fn default_origin_read_timeout() -> TimeoutMs {
    TimeoutMs::new_unchecked(10_000)
}

fn default_client_header_timeout() -> TimeoutMs {
    TimeoutMs::new_unchecked(15_000)
}

fn default_client_io_timeout() -> TimeoutMs {
    TimeoutMs::new_unchecked(30_000)
}

fn default_origin_total_timeout() -> TimeoutMs {
    TimeoutMs::new_unchecked(30_000)
}

fn default_origin_max_tries() -> Within<1, 10> {
    Within::new_unchecked(3)
}

fn default_origin_suspect() -> TimeoutMs {
    TimeoutMs::new_unchecked(5000)
}

fn default_health_path() -> UrlPath {
    UrlPath::new_unchecked("/_meridian/health")
}

fn default_rate_limit_slip() -> Within<0, 10> {
    Within::new_unchecked(2)
}

fn default_rate_limit_ipv4_prefix() -> Within<8, 32> {
    Within::new_unchecked(24)
}

fn default_rate_limit_ipv6_prefix() -> Within<16, 128> {
    Within::new_unchecked(56)
}

fn default_max_answers() -> Within<1, 64> {
    Within::new_unchecked(8)
}

/// The one GeoDNS server's admin listener when `geodns.admin_listen` is absent.
pub(crate) fn default_geodns_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9153))
}

fn default_quorum() -> QuorumField {
    QuorumField::Majority
}

fn default_control_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

fn default_health_interval() -> Within<50, 300_000> {
    Within::new_unchecked(1000)
}

fn default_health_timeout() -> u64 {
    500
}

fn default_health_threshold() -> Within<1, 100> {
    Within::new_unchecked(2)
}

fn default_cache_max_variants() -> Within<1, 4096> {
    Within::new_unchecked(crate::DEFAULT_CACHE_MAX_VARIANTS as u64)
}

fn default_true() -> bool {
    true
}

fn default_asset_max_age() -> u32 {
    3600
}
