//! Lowering the file structs into a validated [`Config`].
//!
//! Each check names the key it is about. Checks are about the file alone;
//! what depends on the machine (is the port free, does the directory exist)
//! is checked by the role that uses it, before it binds anything.

use crate::file::{EdgeFile, File, GeoDnsFile, HealthFile, OriginFile, RegionFile, ZoneFile};
use crate::{
    Config, ConfigError, ConfigSource, Control, Edge, GeoDatabase, GeoDns, Health, Nameserver,
    Origin, OriginUrl, Region, Zone,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Health probes more often than this are a load test, not a health check.
const MIN_HEALTH_INTERVAL_MS: u64 = 50;
/// Less often than this and an outage goes unnoticed for too long.
const MAX_HEALTH_INTERVAL_MS: u64 = 300_000;

/// Shortest admin token accepted: long enough not to be guessed.
const MIN_TOKEN_LEN: usize = 16;

/// Smallest cache budget that makes sense: one maximum-size small object.
const MIN_CACHE_BYTES: u64 = 64 * 1024;

pub(crate) fn lower(file: File, source: ConfigSource) -> Result<Config, ConfigError> {
    let check = Checker { source: &source };
    let zone = check.zone(file.zone)?;
    let regions = check.regions(file.regions)?;
    let geodns = check.geodns(file.geodns, &regions)?;
    let health = check.health(file.health)?;
    let edge = check.edge(file.edge)?;
    let origin = check.origin(file.origin);
    let control = check.control(file.control)?;
    Ok(Config {
        source,
        zone,
        geodns,
        health,
        edge,
        origin,
        control,
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

    /// A relative path in the file is relative to the file's directory.
    fn path(&self, value: &str) -> PathBuf {
        let path = Path::new(value);
        match self.source {
            ConfigSource::File(file) if path.is_relative() => file
                .parent()
                .map_or_else(|| path.to_path_buf(), |dir| dir.join(path)),
            _ => path.to_path_buf(),
        }
    }

    fn zone(&self, zone: ZoneFile) -> Result<Zone, ConfigError> {
        let name = dns_name(&zone.name).map_err(|r| self.error("zone.name", r))?;
        let mut steered_names = Vec::new();
        if zone.steered_names.is_empty() {
            return Err(self.error("zone.steered_names", "needs at least one name"));
        }
        for (i, steered) in zone.steered_names.iter().enumerate() {
            let key = format!("zone.steered_names[{i}]");
            let steered = dns_name(steered).map_err(|r| self.error(&key, r))?;
            if !in_zone(&steered, &name) {
                return Err(self.error(key, format!("{steered} is not inside the zone {name}")));
            }
            if steered_names.contains(&steered) {
                return Err(self.error(key, format!("{steered} is listed more than once")));
            }
            steered_names.push(steered);
        }
        let hostmaster =
            dns_name(&zone.hostmaster).map_err(|r| self.error("zone.hostmaster", r))?;
        if zone.nameservers.is_empty() {
            return Err(self.error("zone.nameservers", "needs at least one nameserver"));
        }
        let mut nameservers = Vec::new();
        for (i, ns) in zone.nameservers.into_iter().enumerate() {
            let ns_name = dns_name(&ns.name)
                .map_err(|r| self.error(format!("zone.nameservers[{i}].name"), r))?;
            if in_zone(&ns_name, &name) && ns.addresses.is_empty() {
                return Err(self.error(
                    format!("zone.nameservers[{i}].addresses"),
                    format!("{ns_name} is inside the zone, so it needs glue addresses"),
                ));
            }
            if steered_names.contains(&ns_name) {
                return Err(self.error(
                    format!("zone.nameservers[{i}].name"),
                    format!("{ns_name} is also a steered name"),
                ));
            }
            nameservers.push(Nameserver {
                name: ns_name,
                addresses: ns.addresses,
            });
        }
        for (key, value) in [
            ("zone.steered_ttl_seconds", zone.steered_ttl_seconds),
            ("zone.ttl_seconds", zone.ttl_seconds),
            ("zone.negative_ttl_seconds", zone.negative_ttl_seconds),
        ] {
            // RFC 2181 §8: TTLs are 31-bit values.
            if value > i32::MAX as u32 {
                return Err(self.error(key, format!("must be at most {}, got {value}", i32::MAX)));
            }
        }
        Ok(Zone {
            name,
            steered_names,
            steered_ttl_seconds: zone.steered_ttl_seconds,
            ttl_seconds: zone.ttl_seconds,
            negative_ttl_seconds: zone.negative_ttl_seconds,
            hostmaster,
            serial: zone.serial,
            nameservers,
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
            if !is_region_name(&region.name) {
                return Err(self.error(
                    key("name"),
                    format!(
                        "{:?} is not a region name: use 1-63 lowercase letters, digits and '-', starting with a letter or digit",
                        region.name
                    ),
                ));
            }
            if let Some(first) = seen_names.insert(region.name.clone(), i) {
                return Err(self.error(
                    key("name"),
                    format!(
                        "{:?} is used more than once (also region[{first}])",
                        region.name
                    ),
                ));
            }
            if !(-90.0..=90.0).contains(&region.latitude) {
                return Err(self.error(
                    key("latitude"),
                    format!("must be between -90 and 90, got {}", region.latitude),
                ));
            }
            if !(-180.0..=180.0).contains(&region.longitude) {
                return Err(self.error(
                    key("longitude"),
                    format!("must be between -180 and 180, got {}", region.longitude),
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
                if let Some(owner) = edge_owner.insert(*address, region.name.clone()) {
                    return Err(self.error(
                        key("edge_addresses"),
                        format!("{address} is already an edge address of {owner}"),
                    ));
                }
            }
            let origin_url =
                origin_url(&region.origin_url).map_err(|r| self.error(key("origin_url"), r))?;
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
                name: region.name,
                city: region.city,
                latitude: region.latitude,
                longitude: region.longitude,
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
        if geodns.admin_listen == geodns.listen {
            return Err(self.error(
                "geodns.admin_listen",
                "must differ from geodns.listen (TCP is used by both)",
            ));
        }
        Ok(GeoDns {
            listen: geodns.listen,
            geo_database,
            default_order,
            admin_listen: geodns.admin_listen,
        })
    }

    fn health(&self, health: HealthFile) -> Result<Health, ConfigError> {
        if !(MIN_HEALTH_INTERVAL_MS..=MAX_HEALTH_INTERVAL_MS).contains(&health.interval_ms) {
            return Err(self.error(
                "health.interval_ms",
                format!(
                    "must be between {MIN_HEALTH_INTERVAL_MS} and {MAX_HEALTH_INTERVAL_MS}, got {}",
                    health.interval_ms
                ),
            ));
        }
        // A probe that may outlast the interval would overlap the next one.
        if health.timeout_ms == 0 || health.timeout_ms > health.interval_ms {
            return Err(self.error(
                "health.timeout_ms",
                format!(
                    "must be between 1 and interval_ms ({}), got {}",
                    health.interval_ms, health.timeout_ms
                ),
            ));
        }
        for (key, value) in [
            ("health.down_after", health.down_after),
            ("health.up_after", health.up_after),
        ] {
            if !(1..=100).contains(&value) {
                return Err(self.error(key, format!("must be between 1 and 100, got {value}")));
            }
        }
        Ok(Health {
            interval: Duration::from_millis(health.interval_ms),
            timeout: Duration::from_millis(health.timeout_ms),
            down_after: health.down_after,
            up_after: health.up_after,
            fail_open: health.fail_open,
        })
    }

    fn edge(&self, edge: EdgeFile) -> Result<Edge, ConfigError> {
        if edge.http_port == 0 {
            return Err(self.error("edge.http_port", "must be a port number from 1 to 65535"));
        }
        if edge.hostnames.is_empty() {
            return Err(self.error(
                "edge.hostnames",
                "needs at least one host name: edges refuse every other Host",
            ));
        }
        let mut hostnames = Vec::new();
        for (i, host) in edge.hostnames.iter().enumerate() {
            let name = dns_name(host)
                .map_err(|r| self.error(format!("edge.hostnames[{i}]"), r))?
                .trim_end_matches('.')
                .to_owned();
            hostnames.push(name);
        }
        if !edge.health_path.starts_with('/')
            || edge.health_path.contains(['?', '#', ' '])
            || edge.health_path == "/"
        {
            return Err(self.error(
                "edge.health_path",
                format!(
                    "{:?} must be an absolute path other than \"/\", without query",
                    edge.health_path
                ),
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
        if edge.cache_max_object_bytes == 0 || edge.cache_max_object_bytes > edge.cache_max_bytes {
            return Err(self.error(
                "edge.cache_max_object_bytes",
                format!(
                    "must be between 1 and cache_max_bytes ({}), got {}",
                    edge.cache_max_bytes, edge.cache_max_object_bytes
                ),
            ));
        }
        if edge.admin_port == 0 || edge.admin_port == edge.http_port {
            return Err(self.error(
                "edge.admin_port",
                format!(
                    "must be a port from 1 to 65535 other than http_port, got {}",
                    edge.admin_port
                ),
            ));
        }
        if !edge.origin_health_path.starts_with('/') {
            return Err(self.error(
                "edge.origin_health_path",
                format!("{:?} must be an absolute path", edge.origin_health_path),
            ));
        }
        for (key, value) in [
            (
                "edge.origin_connect_timeout_ms",
                edge.origin_connect_timeout_ms,
            ),
            ("edge.origin_read_timeout_ms", edge.origin_read_timeout_ms),
            ("edge.origin_suspect_ms", edge.origin_suspect_ms),
        ] {
            if !(1..=3_600_000).contains(&value) {
                return Err(self.error(key, format!("must be between 1 and 3600000, got {value}")));
            }
        }
        if !(1..=10).contains(&edge.origin_max_tries) {
            return Err(self.error(
                "edge.origin_max_tries",
                format!("must be between 1 and 10, got {}", edge.origin_max_tries),
            ));
        }
        let origins = crate::OriginPolicy {
            health_path: edge.origin_health_path.clone(),
            connect_timeout: Duration::from_millis(edge.origin_connect_timeout_ms),
            read_timeout: Duration::from_millis(edge.origin_read_timeout_ms),
            max_tries: edge.origin_max_tries,
            suspect_for: Duration::from_millis(edge.origin_suspect_ms),
        };
        let mut default_ttls = Vec::new();
        for (i, rule) in edge.default_ttl.iter().enumerate() {
            if !rule.path_prefix.starts_with('/') {
                return Err(self.error(
                    format!("edge.default_ttl[{i}].path_prefix"),
                    format!("{:?} must start with '/'", rule.path_prefix),
                ));
            }
            default_ttls.push(crate::DefaultTtl {
                path_prefix: rule.path_prefix.clone(),
                ttl: Duration::from_secs(u64::from(rule.ttl_seconds)),
            });
        }
        let admin_token = match edge.admin_token {
            Some(token) if token.len() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) => {
                return Err(self.error(
                    "edge.admin_token",
                    format!("must be at least {MIN_TOKEN_LEN} characters without spaces"),
                ));
            }
            token => token,
        };
        let to_usize = |key: &str, value: u64| {
            usize::try_from(value)
                .map_err(|_| self.error(key, format!("{value} does not fit this machine's memory")))
        };
        Ok(Edge {
            http_port: edge.http_port,
            hostnames,
            health_path: edge.health_path,
            cache_max_bytes: to_usize("edge.cache_max_bytes", edge.cache_max_bytes)?,
            cache_max_object_bytes: to_usize(
                "edge.cache_max_object_bytes",
                edge.cache_max_object_bytes,
            )?,
            admin_port: edge.admin_port,
            admin_address: edge.admin_address,
            origins,
            cache_set_cookie_responses: edge.cache_set_cookie_responses,
            default_ttls,
            admin_token,
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

/// The origin policy of an `[edge]` that sets none of its keys.
pub(crate) fn default_origin_policy() -> crate::OriginPolicy {
    crate::OriginPolicy {
        health_path: crate::file::default_origin_health_path(),
        connect_timeout: Duration::from_millis(crate::file::default_origin_connect_timeout()),
        read_timeout: Duration::from_millis(crate::file::default_origin_read_timeout()),
        max_tries: crate::file::default_origin_max_tries(),
        suspect_for: Duration::from_millis(crate::file::default_origin_suspect()),
    }
}

/// Validates and normalizes a domain name: lowercase, fully qualified.
pub(crate) fn dns_name(value: &str) -> Result<String, String> {
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() {
        return Err(format!("{value:?} is not a domain name"));
    }
    if name.len() > 253 {
        return Err(format!("{value:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("{value:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("{value:?} has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{value:?} may only contain letters, digits, '-' and '_' in its labels"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{value:?} has a label that starts or ends with '-'"
            ));
        }
    }
    Ok(format!("{}.", name.to_ascii_lowercase()))
}

/// Whether `name` is `zone` or below it (both normalized).
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn is_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `http://host[:port]` with nothing after the authority.
fn origin_url(value: &str) -> Result<OriginUrl, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{value:?}: https origins are not supported yet; use http://"
            ));
        }
        _ => return Err(format!("{value:?} must start with http://")),
    }
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
        host: host.to_ascii_lowercase(),
        port: authority.port_u16().unwrap_or(80),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("Example.COM").unwrap(), "example.com.");
        assert_eq!(dns_name("example.com.").unwrap(), "example.com.");
        assert!(dns_name(".").is_err());
        assert!(dns_name("a..b").is_err());
        assert!(dns_name("-a.b").is_err());
        assert!(dns_name("a b.c").is_err());
        assert!(dns_name(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn zone_membership() {
        assert!(in_zone("meridian.test.", "meridian.test."));
        assert!(in_zone("cdn.meridian.test.", "meridian.test."));
        assert!(!in_zone("xmeridian.test.", "meridian.test."));
    }
}
