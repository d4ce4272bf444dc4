//! Lowering the file structs into a validated [`Config`].
//!
//! Each check names the key it is about. Checks are about the file alone;
//! what depends on the machine (is the port free, does the directory exist)
//! is checked by the role that uses it, before it binds anything.

use crate::fields::QuorumField;
use crate::fields::{AdminToken, DnsName, ForwardedField, HostPattern};
use crate::file::{EdgeFile, File, GeoDnsFile, HealthFile, OriginFile, RegionFile, ZoneFile};
use crate::file::{OverridesFile, RateLimitFile, RecordFile};
use crate::{
    Config, ConfigError, ConfigSource, Control, Edge, GeoDatabase, GeoDns, GeoDnsServer, Health,
    Nameserver, Origin, OriginUrl, Quorum, Region, Zone,
};
use crate::{NetOverride, Overrides, RateLimit, RecordData, StaticRecord};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Smallest cache budget that makes sense: one maximum-size small object.
const MIN_CACHE_BYTES: u64 = 64 * 1024;

/// The record types `[[zone.records]]` accepts.
const RECORD_TYPES: &str = "A, AAAA, CNAME, MX, TXT";

/// Longest TXT value: several 255-byte strings, well inside one message.
const MAX_TXT_BYTES: usize = 4000;

/// Probe intervals a vantage point may stay silent before it stops
/// counting, unless `health.silent_after_ms` says otherwise: three polls
/// may be lost (or slow) in a row.
const SILENT_AFTER_INTERVALS: u64 = 4;

/// Longest chain of in-zone CNAMEs GeoDNS follows when it answers.
pub const MAX_CNAME_CHAIN: usize = 8;

pub(crate) fn lower(file: File, source: ConfigSource) -> Result<Config, ConfigError> {
    let check = Checker { source: &source };
    let zone = check.zone(file.zone)?;
    let regions = check.regions(file.regions)?;
    let geodns = check.geodns(file.geodns, &regions)?;
    let health = check.health(file.health)?;
    check.nameservers_for(&zone, &geodns)?;
    let edge = check.edge(file.edge)?;
    let origin = check.origin(file.origin);
    let control = check.control(file.control)?;
    let cluster = file
        .cluster
        .map(|cluster| crate::cluster::lower(cluster, &source, |f| check.path(f)))
        .transpose()?;
    Ok(Config {
        source,
        zone,
        geodns,
        health,
        edge,
        origin,
        control,
        cluster,
        regions,
    })
}

struct Checker<'a> {
    source: &'a ConfigSource,
}

impl Checker<'_> {
    fn error(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.source, key, reason)
    }

    /// A relative path in the file is relative to the file's directory
    /// (for a cluster revision, to the role's own config file's).
    fn path(&self, value: &str) -> PathBuf {
        let path = Path::new(value);
        match self.source {
            ConfigSource::File(file) if path.is_relative() => file
                .parent()
                .map_or_else(|| path.to_path_buf(), |dir| dir.join(path)),
            ConfigSource::Revision { relative_to, .. } if path.is_relative() => {
                relative_to.join(path)
            }
            _ => path.to_path_buf(),
        }
    }

    fn zone(&self, zone: ZoneFile) -> Result<Zone, ConfigError> {
        let name = zone.name;
        let mut steered_names: Vec<DnsName> = Vec::new();
        if zone.steered_names.is_empty() {
            return Err(self.error("zone.steered_names", "needs at least one name"));
        }
        for (i, steered) in zone.steered_names.into_iter().enumerate() {
            let key = format!("zone.steered_names[{i}]");
            if !steered.is_in(&name) {
                return Err(self.error(key, format!("{steered} is not inside the zone {name}")));
            }
            if steered_names.contains(&steered) {
                return Err(self.error(key, format!("{steered} is listed more than once")));
            }
            steered_names.push(steered);
        }
        if zone.nameservers.is_empty() {
            return Err(self.error("zone.nameservers", "needs at least one nameserver"));
        }
        let mut nameservers = Vec::new();
        for (i, ns) in zone.nameservers.into_iter().enumerate() {
            if ns.name.is_in(&name) && ns.addresses.is_empty() {
                return Err(self.error(
                    format!("zone.nameservers[{i}].addresses"),
                    format!("{} is inside the zone, so it needs glue addresses", ns.name),
                ));
            }
            if steered_names.contains(&ns.name) {
                return Err(self.error(
                    format!("zone.nameservers[{i}].name"),
                    format!("{} is also a steered name", ns.name),
                ));
            }
            nameservers.push(Nameserver {
                name: ns.name,
                addresses: ns.addresses,
            });
        }
        let records = self.records(
            zone.records,
            &name,
            &steered_names,
            &nameservers,
            zone.ttl_seconds.get_u32(),
        )?;
        Ok(Zone {
            name,
            steered_names,
            steered_ttl_seconds: zone.steered_ttl_seconds.get_u32(),
            ttl_seconds: zone.ttl_seconds.get_u32(),
            negative_ttl_seconds: zone.negative_ttl_seconds.get_u32(),
            hostmaster: zone.hostmaster,
            serial: zone.serial,
            nameservers,
            records,
        })
    }

    /// `[[zone.records]]`: each inside the zone, of a supported type, and
    /// consistent with the rest of the zone (RFC 1034 §3.6.2: a CNAME is the
    /// only record at its name; RFC 2181 §5.2, §10.3).
    fn records(
        &self,
        files: Vec<RecordFile>,
        apex: &DnsName,
        steered_names: &[DnsName],
        nameservers: &[Nameserver],
        default_ttl: u32,
    ) -> Result<Vec<StaticRecord>, ConfigError> {
        let mut records: Vec<StaticRecord> = Vec::new();
        for (i, file) in files.into_iter().enumerate() {
            let key = |field: &str| format!("zone.records[{i}].{field}");
            let name = file.name;
            if !name.is_in(apex) {
                return Err(
                    self.error(key("name"), format!("{name} is not inside the zone {apex}"))
                );
            }
            let ttl_seconds = file.ttl_seconds.map_or(default_ttl, |t| t.get_u32());
            let value = file.value.trim();
            let bad_value =
                |what: &str| self.error(key("value"), format!("{:?} is not {what}", file.value));
            let data = match file.record_type.to_ascii_uppercase().as_str() {
                "A" => RecordData::A(value.parse().map_err(|_| bad_value("an IPv4 address"))?),
                "AAAA" => {
                    RecordData::Aaaa(value.parse().map_err(|_| bad_value("an IPv6 address"))?)
                }
                "CNAME" => RecordData::Cname(
                    DnsName::try_from(value).map_err(|r| self.error(key("value"), r))?,
                ),
                "MX" => {
                    let (preference, exchange) =
                        value.split_once(char::is_whitespace).ok_or_else(|| {
                            bad_value("\"PREFERENCE HOST\", e.g. \"10 mail.example.com.\"")
                        })?;
                    let preference = preference.parse().map_err(|_| {
                        bad_value("\"PREFERENCE HOST\" with a preference from 0 to 65535")
                    })?;
                    let exchange = match exchange.trim() {
                        "." => DnsName::root(),
                        host => DnsName::try_from(host).map_err(|r| self.error(key("value"), r))?,
                    };
                    RecordData::Mx {
                        preference,
                        exchange,
                    }
                }
                "TXT" => {
                    if file.value.len() > MAX_TXT_BYTES {
                        return Err(self.error(
                            key("value"),
                            format!(
                                "is {} bytes long; TXT values may have at most {MAX_TXT_BYTES}",
                                file.value.len()
                            ),
                        ));
                    }
                    RecordData::Txt(file.value.clone())
                }
                other => {
                    return Err(self.error(
                        key("type"),
                        format!(
                            "{other:?} is not a supported record type; use one of {RECORD_TYPES}"
                        ),
                    ));
                }
            };
            let is_cname = matches!(data, RecordData::Cname(_));
            let nameserver = nameservers
                .iter()
                .position(|ns| ns.name == name && ns.name.is_in(apex));
            if is_cname {
                let reason = if name == *apex {
                    Some(format!(
                        "{name} is the zone apex, which holds the SOA and NS records"
                    ))
                } else if steered_names.contains(&name) {
                    Some(format!("{name} is a steered name"))
                } else {
                    nameserver.map(|n| format!("{name} is a nameserver (zone.nameservers[{n}]), and NS targets must not be aliases (RFC 2181 §10.3)"))
                };
                if let Some(reason) = reason {
                    return Err(self.error(key("type"), format!("{reason}: it cannot be a CNAME")));
                }
            }
            if matches!(data, RecordData::A(_) | RecordData::Aaaa(_)) {
                if steered_names.contains(&name) {
                    return Err(self.error(
                        key("name"),
                        format!("{name} is a steered name: its addresses are the regions' edge addresses"),
                    ));
                }
                if let Some(n) = nameserver {
                    return Err(self.error(
                        key("name"),
                        format!("{name} is a nameserver: give its addresses in zone.nameservers[{n}].addresses"),
                    ));
                }
            }
            for (j, other) in records.iter().enumerate() {
                if other.name != name {
                    continue;
                }
                if is_cname || matches!(other.data, RecordData::Cname(_)) {
                    return Err(self.error(
                        key("type"),
                        format!(
                            "{name} already has a {} record (zone.records[{j}]), and a CNAME must be the only record at its name",
                            other.data.type_name()
                        ),
                    ));
                }
                if other.data == data {
                    return Err(self.error(key("value"), format!("repeats zone.records[{j}]")));
                }
                if other.data.type_name() == data.type_name() && other.ttl_seconds != ttl_seconds {
                    return Err(self.error(
                        key("ttl_seconds"),
                        format!(
                            "is {ttl_seconds} but zone.records[{j}] has {}: the records of one name and type share one TTL",
                            other.ttl_seconds
                        ),
                    ));
                }
            }
            records.push(StaticRecord {
                name,
                ttl_seconds,
                data,
            });
        }
        let alias_of = |name: &str| {
            records.iter().find_map(|r| match &r.data {
                RecordData::Cname(target) if *r.name == *name => Some(&**target),
                _ => None,
            })
        };
        for (i, record) in records.iter().enumerate() {
            match &record.data {
                RecordData::Cname(target) => {
                    let mut chain = vec![&*record.name];
                    let mut next = Some(&**target);
                    while let Some(current) = next {
                        if chain.contains(&current) {
                            chain.push(current);
                            return Err(self.error(
                                format!("zone.records[{i}].value"),
                                format!("the CNAMEs form a loop: {}", chain.join(" → ")),
                            ));
                        }
                        chain.push(current);
                        if chain.len() > MAX_CNAME_CHAIN + 1 {
                            return Err(self.error(
                                format!("zone.records[{i}].value"),
                                format!(
                                    "the chain of CNAMEs from {} is longer than {MAX_CNAME_CHAIN}",
                                    record.name
                                ),
                            ));
                        }
                        next = alias_of(current);
                    }
                }
                RecordData::Mx { exchange, .. } if alias_of(exchange).is_some() => {
                    return Err(self.error(
                        format!("zone.records[{i}].value"),
                        format!("{exchange} is a CNAME, and MX targets must not be aliases (RFC 2181 §10.3)"),
                    ));
                }
                _ => {}
            }
        }
        Ok(records)
    }

    /// `[geodns.overrides]`: known regions, valid networks and codes.
    fn overrides(&self, file: OverridesFile, regions: &[Region]) -> Result<Overrides, ConfigError> {
        let order = |key: &str, names: &[String]| -> Result<Vec<usize>, ConfigError> {
            if names.is_empty() {
                return Err(self.error(key, "needs at least one region"));
            }
            let mut order = Vec::new();
            for name in names {
                let Some(index) = regions.iter().position(|r| &r.name == name) else {
                    let known: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
                    return Err(self.error(
                        key,
                        format!(
                            "no region named {name:?}; known regions: {}",
                            known.join(", ")
                        ),
                    ));
                };
                if order.contains(&index) {
                    return Err(self.error(key, format!("{name:?} is listed more than once")));
                }
                order.push(index);
            }
            Ok(order)
        };
        let mut nets: Vec<NetOverride> = Vec::new();
        for (text, names) in &file.nets {
            let key = format!("geodns.overrides.nets.\"{text}\"");
            let net: ipnet::IpNet = text.trim().parse().map_err(|_| {
                self.error(
                    &key,
                    format!("{text:?} is not a network in CIDR form, such as \"10.0.0.0/8\" or \"2001:db8::/32\""),
                )
            })?;
            if net.trunc() != net {
                return Err(self.error(
                    &key,
                    format!("{net} has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            if let ipnet::IpNet::V6(v6) = net
                && v6.network().to_ipv4_mapped().is_some()
                && v6.prefix_len() >= 96
            {
                return Err(self.error(
                    &key,
                    format!("{net} is IPv4-mapped: write it as an IPv4 network"),
                ));
            }
            if let Some(first) = nets.iter().find(|n| n.net == net) {
                return Err(self.error(&key, format!("{} is listed twice", first.net)));
            }
            nets.push(NetOverride {
                net,
                regions: order(&key, names)?,
            });
        }
        let mut countries = std::collections::BTreeMap::new();
        for (code, names) in &file.countries {
            let key = format!("geodns.overrides.countries.{code}");
            let upper = code.to_ascii_uppercase();
            if !crate::countries::is_country_code(&upper) {
                return Err(self.error(
                    &key,
                    format!("{code:?} is not an ISO 3166-1 alpha-2 country code, such as \"BR\" or \"JP\""),
                ));
            }
            if countries
                .insert(upper.clone(), order(&key, names)?)
                .is_some()
            {
                return Err(self.error(&key, format!("{upper} is listed twice")));
            }
        }
        let mut continents = std::collections::BTreeMap::new();
        for (code, names) in &file.continents {
            let key = format!("geodns.overrides.continents.{code}");
            let upper = code.to_ascii_uppercase();
            if !crate::countries::CONTINENT_CODES.contains(&upper.as_str()) {
                return Err(self.error(
                    &key,
                    format!(
                        "{code:?} is not a continent code; use one of {}",
                        crate::countries::CONTINENT_CODES.join(", ")
                    ),
                ));
            }
            if continents
                .insert(upper.clone(), order(&key, names)?)
                .is_some()
            {
                return Err(self.error(&key, format!("{upper} is listed twice")));
            }
        }
        Ok(Overrides {
            nets,
            countries,
            continents,
        })
    }

    fn regions(&self, regions: Vec<RegionFile>) -> Result<Vec<Region>, ConfigError> {
        if regions.is_empty() {
            return Err(self.error("region", "needs at least one [[region]]"));
        }
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut edge_owner: HashMap<IpAddr, String> = HashMap::new();
        let mut lowered = Vec::new();
        for (i, region) in regions.into_iter().enumerate() {
            let key = |field: &str| format!("region[{i}].{field}");
            let name = region.name.into_string();
            if let Some(first) = seen_names.insert(name.clone(), i) {
                return Err(self.error(
                    key("name"),
                    format!("{name:?} is used more than once (also region[{first}])"),
                ));
            }
            if region.edge_addresses.is_empty() {
                return Err(self.error(key("edge_addresses"), "needs at least one address"));
            }
            for address in &region.edge_addresses {
                if address.is_unspecified() || address.is_multicast() {
                    return Err(self.error(
                        key("edge_addresses"),
                        format!("{address} cannot be an edge address"),
                    ));
                }
                if let Some(owner) = edge_owner.insert(*address, name.clone()) {
                    return Err(self.error(
                        key("edge_addresses"),
                        format!("{address} is already an edge address of {owner}"),
                    ));
                }
            }
            let origin_url = region.origin_url;
            let origin_listen = match region.origin_listen {
                Some(listen) => listen,
                None => match origin_url.host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, origin_url.port),
                    Err(_) => {
                        return Err(self.error(
                            key("origin_listen"),
                            format!(
                                "origin_url names a host ({}), so say which address `meridian origin` binds, e.g. \"0.0.0.0:{}\"",
                                origin_url.host, origin_url.port
                            ),
                        ));
                    }
                },
            };
            lowered.push(Region {
                name,
                city: region.city,
                latitude: region.latitude.degrees(),
                longitude: region.longitude.degrees(),
                edge_addresses: region.edge_addresses,
                origin_url,
                origin_listen,
            });
        }
        Ok(lowered)
    }

    fn geodns(&self, geodns: GeoDnsFile, regions: &[Region]) -> Result<GeoDns, ConfigError> {
        let known = || {
            regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut default_order = Vec::new();
        for name in &geodns.default_order {
            let Some(index) = regions.iter().position(|r| &r.name == name) else {
                return Err(self.error(
                    "geodns.default_order",
                    format!("no region named {name:?}; known regions: {}", known()),
                ));
            };
            if default_order.contains(&index) {
                return Err(self.error(
                    "geodns.default_order",
                    format!("{name:?} is listed more than once"),
                ));
            }
            default_order.push(index);
        }
        // Regions the list leaves out follow, in file order, so the default
        // order always covers every region.
        for index in 0..regions.len() {
            if !default_order.contains(&index) {
                default_order.push(index);
            }
        }
        let geo_database = match geodns.geo_database.as_str() {
            "embedded" => GeoDatabase::Embedded,
            "" => return Err(self.error("geodns.geo_database", "must be \"embedded\" or a path")),
            path => GeoDatabase::File(self.path(path)),
        };
        let admin_token = geodns.admin_token.map(AdminToken::into_string);
        let servers = self.servers(
            geodns.listen,
            geodns.admin_listen,
            geodns.probe_from,
            geodns.servers,
            admin_token.is_some(),
        )?;
        let overrides = self.overrides(geodns.overrides, regions)?;
        let rate_limit = geodns.rate_limit.map(|file| self.rate_limit(file));
        Ok(GeoDns {
            servers,
            geo_database,
            default_order,
            admin_token,
            overrides,
            rate_limit,
            max_answers: geodns.max_answers.get() as usize,
        })
    }

    /// The GeoDNS servers: the one `geodns.listen` describes, or the
    /// `[[geodns.servers]]`, never both. Each server's keys are named the
    /// way the file spells them.
    fn servers(
        &self,
        listen: Option<SocketAddr>,
        admin_listen: Option<SocketAddr>,
        probe_from: Option<IpAddr>,
        files: Vec<crate::file::GeoDnsServerFile>,
        has_token: bool,
    ) -> Result<Vec<GeoDnsServer>, ConfigError> {
        let single = listen.is_some() || admin_listen.is_some() || probe_from.is_some();
        // (server, the prefix its keys have in the file)
        let servers: Vec<(GeoDnsServer, String)> = if !files.is_empty() {
            if single {
                return Err(self.error(
                    "geodns.servers",
                    "give either geodns.listen (one server) or [[geodns.servers]] (several), not both",
                ));
            }
            files
                .into_iter()
                .enumerate()
                .map(|(i, file)| {
                    let server = GeoDnsServer {
                        name: file.name.into_string(),
                        listen: file.listen,
                        admin_listen: file.admin_listen,
                        probe_from: file.probe_from,
                    };
                    (server, format!("geodns.servers[{i}]"))
                })
                .collect()
        } else if let Some(listen) = listen {
            let server = GeoDnsServer {
                name: crate::SINGLE_SERVER_NAME.to_owned(),
                listen,
                admin_listen: admin_listen.unwrap_or_else(crate::file::default_geodns_admin),
                probe_from,
            };
            vec![(server, "geodns".to_owned())]
        } else {
            return Err(self.error(
                "geodns.listen",
                "missing: give geodns.listen for one GeoDNS server, or a [[geodns.servers]] table for each of several",
            ));
        };
        let several = servers.len() > 1;
        for (i, (server, key)) in servers.iter().enumerate() {
            let earlier = &servers[..i];
            if let Some((_, other)) = earlier.iter().find(|(s, _)| s.name == server.name) {
                return Err(self.error(
                    format!("{key}.name"),
                    format!("{:?} is used more than once (also {other})", server.name),
                ));
            }
            let admin = server.admin_listen;
            if let Some((_, other)) = servers.iter().find(|(s, _)| s.listen == admin) {
                return Err(self.error(
                    format!("{key}.admin_listen"),
                    format!("must differ from {other}.listen (TCP is used by both)"),
                ));
            }
            if let Some((_, other)) = earlier.iter().find(|(s, _)| s.admin_listen == admin) {
                return Err(self.error(
                    format!("{key}.admin_listen"),
                    format!("{admin} is also {other}.admin_listen"),
                ));
            }
            // The admin routes have no login of their own: off this
            // machine, only the token keeps them private.
            if !admin.ip().is_loopback() && !has_token {
                return Err(self.error(
                    format!("{key}.admin_listen"),
                    format!(
                        "{admin} is not a loopback address, so set geodns.admin_token: \
                         every admin route then needs it as `Authorization: Bearer`"
                    ),
                ));
            }
            if several && admin.ip().is_unspecified() {
                return Err(self.error(
                    format!("{key}.admin_listen"),
                    format!(
                        "{admin} is a wildcard address, but the other GeoDNS servers poll this \
                         one's view of the edges there: give the address they reach it on"
                    ),
                ));
            }
            if let Some(from) = server.probe_from
                && (from.is_unspecified() || from.is_multicast())
            {
                return Err(self.error(
                    format!("{key}.probe_from"),
                    format!(
                        "{from} cannot be a source address; leave probe_from out to let the system choose"
                    ),
                ));
            }
        }
        Ok(servers.into_iter().map(|(server, _)| server).collect())
    }

    /// Resolvers ask only the nameservers a zone names, so a GeoDNS server
    /// without an NS record would never be asked: the zone needs at least
    /// one per server.
    fn nameservers_for(&self, zone: &Zone, geodns: &GeoDns) -> Result<(), ConfigError> {
        let (records, servers) = (zone.nameservers.len(), geodns.servers.len());
        if records < servers {
            return Err(self.error(
                "zone.nameservers",
                format!(
                    "names {records} nameserver(s) for {servers} GeoDNS servers: resolvers only \
                     ask the nameservers the zone names, so give each server an NS record"
                ),
            ));
        }
        Ok(())
    }

    /// `[geodns.rate_limit]`: the burst defaults to the rate.
    fn rate_limit(&self, file: RateLimitFile) -> RateLimit {
        RateLimit {
            responses_per_second: file.responses_per_second.get_u32(),
            burst: file.burst.unwrap_or(file.responses_per_second).get_u32(),
            slip: file.slip.get_u32(),
            ipv4_prefix_length: u8::try_from(file.ipv4_prefix_length.get()).unwrap_or(32),
            ipv6_prefix_length: u8::try_from(file.ipv6_prefix_length.get()).unwrap_or(128),
        }
    }

    fn health(&self, health: HealthFile) -> Result<Health, ConfigError> {
        let interval_ms = health.interval_ms.get();
        // A probe that may outlast the interval would overlap the next one.
        if health.timeout_ms == 0 || health.timeout_ms > interval_ms {
            return Err(self.error(
                "health.timeout_ms",
                format!(
                    "must be between 1 and interval_ms ({interval_ms}), got {}",
                    health.timeout_ms
                ),
            ));
        }
        // Other vantage points are polled once per interval: one that may
        // fall silent within an interval would stop counting between polls.
        let silent_after_ms = match health.silent_after_ms {
            Some(ms) if ms.get() <= interval_ms => {
                return Err(self.error(
                    "health.silent_after_ms",
                    format!(
                        "must be longer than interval_ms ({interval_ms}), got {}: \
                         other vantage points are heard from once per interval",
                        ms.get()
                    ),
                ));
            }
            Some(ms) => ms.get(),
            None => interval_ms.saturating_mul(SILENT_AFTER_INTERVALS),
        };
        Ok(Health {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(health.timeout_ms),
            down_after: health.down_after.get_u32(),
            up_after: health.up_after.get_u32(),
            fail_open: health.fail_open,
            quorum: match health.quorum {
                QuorumField::Majority => Quorum::Majority,
                QuorumField::AtLeast(count) => Quorum::AtLeast(count),
            },
            silent_after: Duration::from_millis(silent_after_ms),
        })
    }

    fn edge(&self, edge: EdgeFile) -> Result<Edge, ConfigError> {
        if edge.hostnames.is_empty() {
            return Err(self.error(
                "edge.hostnames",
                "needs at least one host name: edges refuse every other Host",
            ));
        }
        let hostnames = edge.hostnames.iter().map(|n| n.host().to_owned()).collect();
        let health_path = edge.health_path.into_string();
        if health_path == "/" {
            return Err(self.error(
                "edge.health_path",
                "must be a path other than \"/\", which is the site itself",
            ));
        }
        if edge.cache_max_bytes < MIN_CACHE_BYTES {
            return Err(self.error(
                "edge.cache_max_bytes",
                format!(
                    "must be at least {MIN_CACHE_BYTES}, got {}",
                    edge.cache_max_bytes
                ),
            ));
        }
        let disk = edge
            .disk
            .map(|disk| disk.lower(self.source, |f| self.path(f)))
            .transpose()?;
        // An object too large for memory may still go to disk.
        let (largest_budget, budget_key) = match &disk {
            Some(disk) if disk.max_bytes > edge.cache_max_bytes => {
                (disk.max_bytes, "edge.disk.max_bytes")
            }
            _ => (edge.cache_max_bytes, "cache_max_bytes"),
        };
        let largest_object = edge.cache_max_object_bytes;
        if !(1..=largest_budget).contains(&largest_object) {
            let reason = format!(
                "must be between 1 and {budget_key} ({largest_budget}), got {largest_object}"
            );
            return Err(self.error("edge.cache_max_object_bytes", reason));
        }
        let http_port = edge.http_port.get_u32() as u16;
        let admin_port = edge.admin_port.get_u32() as u16;
        if edge.admin_on_edge_address && edge.admin_address.is_some() {
            return Err(self.error(
                "edge.admin_on_edge_address",
                "give admin_address or admin_on_edge_address, not both",
            ));
        }
        if admin_port == http_port {
            return Err(self.error(
                "edge.admin_port",
                format!("must differ from http_port, got {admin_port}"),
            ));
        }
        let https_port = edge.https_port.map(|p| p.get_u32() as u16);
        if let Some(port) = https_port
            && (port == http_port || port == admin_port)
        {
            return Err(self.error(
                "edge.https_port",
                format!("must differ from http_port and admin_port, got {port}"),
            ));
        }
        let millis = |value: crate::fields::TimeoutMs| Duration::from_millis(value.get());
        let origins = crate::OriginPolicy {
            health_path: edge.origin_health_path.into_string(),
            connect_timeout: millis(edge.origin_connect_timeout_ms),
            read_timeout: millis(edge.origin_read_timeout_ms),
            total_timeout: millis(edge.origin_total_timeout_ms),
            max_tries: edge.origin_max_tries.get_u32(),
            suspect_for: millis(edge.origin_suspect_ms),
            ca_file: edge.origin_ca_file.as_deref().map(|f| self.path(f)),
        };
        let default_ttls = edge
            .default_ttl
            .into_iter()
            .map(|rule| crate::DefaultTtl {
                path_prefix: rule.path_prefix.into_string(),
                ttl: Duration::from_secs(u64::from(rule.ttl_seconds)),
            })
            .collect();
        if https_port.is_some() && edge.certificates.is_empty() {
            return Err(self.error(
                "edge.certificates",
                "https_port is set, so at least one [[edge.certificates]] is needed",
            ));
        }
        let mut certificates = Vec::new();
        for (i, certificate) in edge.certificates.into_iter().enumerate() {
            let key = format!("edge.certificates[{i}]");
            if certificate.hostnames.is_empty() {
                return Err(self.error(format!("{key}.hostnames"), "needs at least one host name"));
            }
            let source = match (
                certificate.development,
                &certificate.chain_file,
                &certificate.key_file,
            ) {
                (true, None, None) => crate::CertificateSource::Development,
                (false, Some(chain), Some(key_file)) => crate::CertificateSource::Files {
                    chain: self.path(chain),
                    key: self.path(key_file),
                },
                _ => {
                    return Err(self.error(
                        key,
                        "give chain_file and key_file, or development = true (and nothing else)",
                    ));
                }
            };
            certificates.push(crate::Certificate {
                hostnames: certificate
                    .hostnames
                    .into_iter()
                    .map(HostPattern::into_string)
                    .collect(),
                source,
            });
        }
        let to_usize = |key: &str, value: u64| {
            usize::try_from(value)
                .map_err(|_| self.error(key, format!("{value} does not fit this machine's memory")))
        };
        Ok(Edge {
            http_port,
            hostnames,
            health_path,
            cache_max_bytes: to_usize("edge.cache_max_bytes", edge.cache_max_bytes)?,
            cache_max_object_bytes: to_usize(
                "edge.cache_max_object_bytes",
                edge.cache_max_object_bytes,
            )?,
            disk,
            admin_port,
            admin_address: edge.admin_address,
            admin_on_edge_address: edge.admin_on_edge_address,
            origins,
            client_timeouts: crate::ClientTimeouts {
                header: millis(edge.client_header_timeout_ms),
                io: millis(edge.client_io_timeout_ms),
            },
            cache_set_cookie_responses: edge.cache_set_cookie_responses,
            default_ttls,
            honor_client_no_cache: edge.honor_client_no_cache,
            plain_hit_fast_path: edge.plain_hit_fast_path,
            forward_request_headers: edge
                .forward_request_headers
                .into_iter()
                .map(ForwardedField::into_string)
                .collect(),
            cache_max_variants: edge.cache_max_variants.get() as usize,
            admin_token: edge.admin_token.map(AdminToken::into_string),
            https_port,
            certificates,
        })
    }

    fn control(&self, control: crate::file::ControlFile) -> Result<Control, ConfigError> {
        // Anyone who can reach it can kill processes: never off the machine.
        if !control.listen.ip().is_loopback() {
            return Err(self.error(
                "control.listen",
                format!(
                    "{} is not a loopback address; the control API must stay on this machine",
                    control.listen
                ),
            ));
        }
        Ok(Control {
            listen: control.listen,
        })
    }

    fn origin(&self, origin: OriginFile) -> Origin {
        Origin {
            root: origin.root.as_deref().map(|root| self.path(root)),
            asset_max_age_seconds: origin.asset_max_age_seconds,
        }
    }
}

/// `[health]` as lowered from an empty section.
pub(crate) fn default_health() -> Health {
    let checker = Checker {
        source: &ConfigSource::Embedded,
    };
    // The serde defaults are within every bound `health` checks.
    #[allow(clippy::expect_used)]
    checker
        .health(HealthFile::default())
        .expect("default health settings are valid")
}

/// An `[edge]` with only its required keys: what an ad-hoc edge runs with.
/// Lowered like any file's, so every default lives in one place, the file
/// structs.
pub(crate) fn default_edge() -> Edge {
    const REQUIRED_ONLY: &str = "http_port = 8080\nhostnames = [\"localhost\"]\n\
        cache_max_bytes = 268435456\ncache_max_object_bytes = 16777216\n";
    let checker = Checker {
        source: &ConfigSource::Embedded,
    };
    // A constant table whose defaults are tested to lower.
    #[allow(clippy::expect_used)]
    let file: EdgeFile = toml::from_str(REQUIRED_ONLY).expect("the required keys parse");
    #[allow(clippy::expect_used)]
    checker.edge(file).expect("the defaults are valid")
}

/// `http://host[:port]` or `https://host[:port]` with nothing after the
/// authority.
pub(crate) fn origin_url(value: &str) -> Result<OriginUrl, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{value:?} must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{value:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{value:?} must not contain credentials"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{value:?} must be just scheme, host and port (no path or query)"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    Ok(OriginUrl {
        tls,
        host: host.to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
    })
}

#[cfg(test)]
mod tests;
