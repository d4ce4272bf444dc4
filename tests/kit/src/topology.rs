//! The demo topology on a private loopback block, changed through typed
//! setters.
//!
//! Tests and benchmarks run the demo's three regions on addresses of their
//! own (`127.B.x.y`), so that they run in parallel with each other and with
//! a demo on `127.0.x.y`, and each changes a few settings. Editing the
//! config's text for that (`.replace("down_after = 2", ...)`) silently does
//! nothing once the text changes; here the demo is parsed once, every
//! address in it moved structurally, and each change set by key on the
//! parsed TOML. [`Topology::toml`] serialises it; [`Topology::config`]
//! validates it with the config crate, which every role start does first,
//! so a setter whose key the product no longer knows fails loudly
//! (`deny_unknown_fields`), naming the key.
//!
//! Regions are numbered as in the demo: 1 us-east, 2 eu-west, 3
//! ap-southeast. Addresses are read back from the validated config, so
//! they follow whatever the setters changed.

use super::error::KitError;
use config::{Config, ConfigSource};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// A Meridian topology, as the TOML every role reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    block: u8,
    table: Table,
}

/// `[geodns.rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Replies per second per client network.
    pub responses_per_second: u32,
    /// The bucket's size; the product's default when `None`.
    pub burst: Option<u32>,
    /// Every Nth limited reply slips; the product's default when `None`.
    pub slip: Option<u32>,
}

impl Topology {
    /// The demo topology with every `127.0.x.y` address (bare, with a port,
    /// or in an `http://` URL) moved to `127.block.x.y`: GeoDNS on
    /// 127.B.0.1:5353 (admin :9153, control API :9000), region N's edges on
    /// 127.B.N.1:8080 and 127.B.N.3:8080 and its origin on 127.B.N.2:8000.
    pub fn demo(block: u8) -> Topology {
        // The demo config is compiled in, and the config crate's own tests
        // parse and validate it: failing here is a broken build.
        let mut table: Table = config::DEMO_TOML
            .parse()
            .expect("the embedded demo config is TOML");
        for (_, value) in table.iter_mut() {
            move_to_block(value, block);
        }
        Topology { block, table }
    }

    /// The loopback block, `B` in `127.B.x.y`.
    pub fn block(&self) -> u8 {
        self.block
    }

    /// The topology as TOML text.
    pub fn toml(&self) -> String {
        // A table built from parsed TOML and typed values always serialises.
        toml::to_string(&self.table).expect("a TOML table serialises")
    }

    /// The topology validated by the config crate, as every role loads it.
    pub fn config(&self) -> Result<Config, KitError> {
        Config::from_toml(
            &self.toml(),
            ConfigSource::File(PathBuf::from("<test topology>")),
        )
        .map_err(|e| KitError::Config(e.to_string()))
    }

    /// Validates the topology and writes it to `dir/meridian.toml`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, KitError> {
        self.config()?;
        self.write_unchecked(dir, "meridian.toml")
    }

    /// Writes the topology to `dir/name` as it is, valid or not: for tests
    /// of what the product does with a bad file.
    pub fn write_unchecked(&self, dir: &Path, name: &str) -> Result<PathBuf, KitError> {
        let path = dir.join(name);
        std::fs::write(&path, self.toml())
            .map_err(KitError::io(format!("write {}", path.display())))?;
        Ok(path)
    }

    // -- Addresses, read back from the validated config. -------------------

    fn validated(&self) -> Config {
        match self.config() {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    fn region(&self, region: u8) -> config::Region {
        let config = self.validated();
        match config.regions.get(usize::from(region).wrapping_sub(1)) {
            Some(found) => found.clone(),
            None => panic!("the topology has no region {region}"),
        }
    }

    /// The first GeoDNS server's UDP and TCP address.
    pub fn dns(&self) -> SocketAddr {
        self.dns_of(0)
    }

    /// The first GeoDNS server's admin listener.
    pub fn geodns_admin(&self) -> SocketAddr {
        self.geodns_admin_of(0)
    }

    fn server(&self, server: usize) -> config::GeoDnsServer {
        match self.validated().geodns.servers.get(server) {
            Some(found) => found.clone(),
            None => panic!("the topology has no GeoDNS server {server}"),
        }
    }

    /// GeoDNS server `server`'s (0-based) UDP and TCP address.
    pub fn dns_of(&self, server: usize) -> SocketAddr {
        self.server(server).listen
    }

    /// GeoDNS server `server`'s (0-based) admin listener.
    pub fn geodns_admin_of(&self, server: usize) -> SocketAddr {
        self.server(server).admin_listen
    }

    /// GeoDNS server `server`'s (0-based) name, for `--server`.
    pub fn geodns_name(&self, server: usize) -> String {
        self.server(server).name
    }

    /// How many GeoDNS servers the topology has.
    pub fn geodns_servers(&self) -> usize {
        self.validated().geodns.servers.len()
    }

    /// The control API of `meridian up`.
    pub fn control(&self) -> SocketAddr {
        self.validated().control.listen
    }

    /// The name of region `region` (1-based).
    pub fn region_name(&self, region: u8) -> String {
        self.region(region).name
    }

    /// Region `region`'s first edge address on the HTTP port.
    pub fn edge(&self, region: u8) -> SocketAddr {
        first(self.edges(region), "edge")
    }

    /// Every edge of region `region` on the HTTP port, in config order
    /// (the demo's `127.B.N.1` and `127.B.N.3`).
    pub fn edges(&self, region: u8) -> Vec<SocketAddr> {
        let config = self.validated();
        self.region(region).edge_http_addrs(&config.edge)
    }

    /// Region `region`'s first edge address on the HTTPS port.
    pub fn edge_https(&self, region: u8) -> SocketAddr {
        let config = self.validated();
        first(
            self.region(region).edge_https_addrs(&config.edge),
            "HTTPS listener",
        )
    }

    /// Region `region`'s first edge's admin listener.
    pub fn edge_admin(&self, region: u8) -> SocketAddr {
        first(self.edge_admins(region), "edge admin listener")
    }

    /// The admin listeners of region `region`'s edges, in config order.
    pub fn edge_admins(&self, region: u8) -> Vec<SocketAddr> {
        let config = self.validated();
        self.region(region).edge_admin_addrs(&config.edge)
    }

    /// Where region `region`'s origin listens.
    pub fn origin(&self, region: u8) -> SocketAddr {
        self.region(region).origin_listen
    }

    /// The edge admin token (`edge.admin_token`).
    pub fn purge_token(&self) -> String {
        self.validated().edge.admin_token.unwrap_or_default()
    }

    // -- Typed setters. ---------------------------------------------------

    /// `[health]`: the probe interval and timeout.
    pub fn health(mut self, interval: Duration, timeout: Duration) -> Self {
        self.set(&["health"], "interval_ms", millis(interval));
        self.set(&["health"], "timeout_ms", millis(timeout));
        self
    }

    /// Health checks that never probe within a test (every 300 s): for
    /// GeoDNS alone, whose edges do not exist, and for edges whose origin
    /// order a slow probe must not change.
    pub fn quiet_health(self) -> Self {
        self.health(Duration::from_secs(300), Duration::from_secs(1))
    }

    /// A `[[zone.records]]` entry.
    pub fn zone_record(mut self, name: &str, record_type: &str, value: &str) -> Self {
        let mut record = Table::new();
        record.insert("name".into(), name.into());
        record.insert("type".into(), record_type.into());
        record.insert("value".into(), value.into());
        self.push(&["zone"], "records", record);
        self
    }

    /// The addresses of the zone's first nameserver (its glue).
    pub fn nameserver_addresses(mut self, addresses: &[IpAddr]) -> Self {
        let list = strings(addresses);
        let nameservers = self.array(&["zone"], "nameservers");
        match nameservers.first_mut().and_then(Value::as_table_mut) {
            Some(first) => first.insert("addresses".into(), list),
            None => panic!("the topology has no [[zone.nameservers]]"),
        };
        self
    }

    /// One GeoDNS server instead of the demo's pair: the first, in the
    /// `[geodns] listen` form, with the zone's first nameserver only.
    pub fn single_geodns(mut self) -> Self {
        let Some(Value::Array(servers)) = self.table(&["geodns"]).remove("servers") else {
            return self;
        };
        let Some(Value::Table(first)) = servers.into_iter().next() else {
            panic!("the topology has an empty [[geodns.servers]]");
        };
        for key in ["listen", "admin_listen", "probe_from"] {
            if let Some(value) = first.get(key) {
                self.set(&["geodns"], key, value.clone());
            }
        }
        self.array(&["zone"], "nameservers").truncate(1);
        self
    }

    /// One GeoDNS server ([`Topology::single_geodns`]) listening on `ip`,
    /// with its admin listener and the control API on the same IP, and the
    /// nameserver's glue following it.
    pub fn geodns_on(self, ip: IpAddr) -> Self {
        let mut this = self.single_geodns();
        let admin_port = this.geodns_admin().port();
        let control_port = this.control().port();
        let port = this.dns().port();
        this.set(
            &["geodns"],
            "listen",
            SocketAddr::new(ip, port).to_string().into(),
        );
        this.set(
            &["geodns"],
            "admin_listen",
            SocketAddr::new(ip, admin_port).to_string().into(),
        );
        this.set(
            &["control"],
            "listen",
            SocketAddr::new(ip, control_port).to_string().into(),
        );
        this.nameserver_addresses(&[ip])
    }

    /// `geodns.max_answers`: the most edges one steered answer holds.
    pub fn max_answers(mut self, answers: u32) -> Self {
        self.set(&["geodns"], "max_answers", answers.into());
        self
    }

    /// The first GeoDNS server's admin listener.
    pub fn geodns_admin_listen(mut self, addr: SocketAddr) -> Self {
        self.server_table(0)
            .insert("admin_listen".into(), addr.to_string().into());
        self
    }

    /// GeoDNS server `server`'s (0-based) `probe_from`: the source address
    /// of its edge probes.
    pub fn probe_from(mut self, server: usize, ip: IpAddr) -> Self {
        self.server_table(server)
            .insert("probe_from".into(), ip.to_string().into());
        self
    }

    /// `health.quorum = "majority"`.
    pub fn quorum_majority(mut self) -> Self {
        self.set(&["health"], "quorum", "majority".into());
        self
    }

    /// `health.quorum = count`.
    pub fn quorum(mut self, count: u32) -> Self {
        self.set(&["health"], "quorum", count.into());
        self
    }

    /// `health.silent_after_ms`.
    pub fn silent_after(mut self, time: Duration) -> Self {
        self.set(&["health"], "silent_after_ms", millis(time));
        self
    }

    /// `[cluster]`: the bus at `nats` (one `nats://` server), role state in
    /// `state_dir`, `meridian purge` waiting `purge_timeout` (and edges
    /// trusting their cache for a quarter of it).
    pub fn cluster(mut self, nats: SocketAddr, state_dir: &Path, purge_timeout: Duration) -> Self {
        let urls = Value::Array(vec![format!("nats://{nats}").into()]);
        self.set(&["cluster"], "nats_urls", urls);
        self.set(
            &["cluster"],
            "state_dir",
            state_dir.display().to_string().into(),
        );
        self.set(&["cluster"], "purge_timeout_ms", millis(purge_timeout));
        self.set(&["cluster"], "verified_for_ms", millis(purge_timeout / 4));
        self.set(&["cluster"], "report_interval_ms", 200.into());
        self
    }

    /// `cluster.nats_urls = [url]` (after [`Topology::cluster`]): to log in
    /// as a user, `nats://user:password@addr`.
    pub fn nats_url(mut self, url: &str) -> Self {
        self.set(&["cluster"], "nats_urls", Value::Array(vec![url.into()]));
        self
    }

    /// `health.fail_open`.
    pub fn fail_open(mut self, open: bool) -> Self {
        self.set(&["health"], "fail_open", open.into());
        self
    }

    /// `[geodns.rate_limit]`.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        let mut table = Table::new();
        table.insert(
            "responses_per_second".into(),
            limit.responses_per_second.into(),
        );
        if let Some(burst) = limit.burst {
            table.insert("burst".into(), burst.into());
        }
        if let Some(slip) = limit.slip {
            table.insert("slip".into(), slip.into());
        }
        self.set(&["geodns"], "rate_limit", Value::Table(table));
        self
    }

    /// `geodns.overrides.nets`: `net` (CIDR) to these regions, by name.
    pub fn override_net(mut self, net: &str, regions: &[&str]) -> Self {
        self.set(
            &["geodns", "overrides", "nets"],
            net,
            regions_value(regions),
        );
        self
    }

    /// `geodns.overrides.countries`: `code` to these regions, by name.
    pub fn override_country(mut self, code: &str, regions: &[&str]) -> Self {
        let value = regions_value(regions);
        self.set(&["geodns", "overrides", "countries"], code, value);
        self
    }

    /// Region `region`'s edge addresses, as GeoDNS answers them.
    pub fn edge_addresses(mut self, region: u8, addresses: &[IpAddr]) -> Self {
        let list = strings(addresses);
        self.region_table(region)
            .insert("edge_addresses".into(), list);
        self
    }

    /// Region `region` with only its first edge address: a region of one
    /// edge, which fills every miss from its origin.
    pub fn single_edge(self, region: u8) -> Self {
        let first = self.edge(region).ip();
        self.edge_addresses(region, &[first])
    }

    /// Region `region`'s latitude.
    pub fn latitude(mut self, region: u8, degrees: f64) -> Self {
        self.region_table(region)
            .insert("latitude".into(), degrees.into());
        self
    }

    /// Region `region`'s origin URL.
    pub fn origin_url(mut self, region: u8, url: &str) -> Self {
        self.region_table(region)
            .insert("origin_url".into(), url.into());
        self
    }

    /// Region `region`'s origin reached over `https://` at the same address.
    pub fn https_origin(self, region: u8) -> Self {
        let url = format!("https://{}", self.origin(region));
        self.origin_url(region, &url)
    }

    /// The first `[[edge.certificates]]` read from files instead of the
    /// compiled-in development certificate.
    pub fn certificate_files(mut self, chain: &Path, key: &Path) -> Self {
        let certificates = self.array(&["edge"], "certificates");
        let Some(first) = certificates.first_mut().and_then(Value::as_table_mut) else {
            panic!("the topology has no [[edge.certificates]]");
        };
        first.remove("development");
        first.insert("chain_file".into(), path_value(chain));
        first.insert("key_file".into(), path_value(key));
        self
    }

    /// Sets the key at dotted `path` (`edge.http_port`) to `value`,
    /// whatever it is: for tests of what the product makes of a bad file.
    /// The table holding it must exist.
    pub fn raw(mut self, path: &str, value: impl Into<Value>) -> Self {
        let (tables, key) = split_path(path);
        let table = self.existing(&tables);
        table.insert(key.to_owned(), value.into());
        self
    }

    /// Renames the key at dotted `path` to `new_name`, keeping its value.
    /// Panics if the key is not there: an edit whose target is gone must
    /// not pass silently.
    pub fn rename(mut self, path: &str, new_name: &str) -> Self {
        let (tables, key) = split_path(path);
        let table = self.existing(&tables);
        let Some(value) = table.remove(key) else {
            panic!("the topology has no key {path} to rename");
        };
        table.insert(new_name.to_owned(), value);
        self
    }

    // -- Plumbing. ---------------------------------------------------------

    /// The table at `path`, created (empty) where missing: optional
    /// sections such as `[geodns.rate_limit]` are absent from the demo.
    fn table(&mut self, path: &[&str]) -> &mut Table {
        let mut table = &mut self.table;
        for name in path {
            let entry = table
                .entry((*name).to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(inner) => inner,
                _ => panic!("{} is not a table in the topology", path.join(".")),
            };
        }
        table
    }

    /// The table at `path`, which must exist.
    fn existing(&mut self, path: &[&str]) -> &mut Table {
        let mut table = &mut self.table;
        for name in path {
            table = match table.get_mut(*name) {
                Some(Value::Table(inner)) => inner,
                _ => panic!("the topology has no table {}", path.join(".")),
            };
        }
        table
    }

    fn set(&mut self, path: &[&str], key: &str, value: Value) {
        self.table(path).insert(key.to_owned(), value);
    }

    /// The array of tables `key` in the table at `path`, created if absent.
    fn array(&mut self, path: &[&str], key: &str) -> &mut Vec<Value> {
        match self
            .table(path)
            .entry(key.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items,
            _ => panic!("{key} is not an array in the topology"),
        }
    }

    fn push(&mut self, path: &[&str], key: &str, item: Table) {
        self.array(path, key).push(Value::Table(item));
    }

    /// The table of GeoDNS server `server`: one of `[[geodns.servers]]`,
    /// or `[geodns]` itself for the one server of the single form.
    fn server_table(&mut self, server: usize) -> &mut Table {
        let listed = matches!(
            self.table(&["geodns"]).get("servers"),
            Some(Value::Array(_))
        );
        if !listed {
            assert_eq!(server, 0, "the topology has one GeoDNS server");
            return self.table(&["geodns"]);
        }
        match self
            .array(&["geodns"], "servers")
            .get_mut(server)
            .and_then(Value::as_table_mut)
        {
            Some(table) => table,
            None => panic!("the topology has no GeoDNS server {server}"),
        }
    }

    fn region_table(&mut self, region: u8) -> &mut Table {
        let regions = self.array(&[], "region");
        match regions
            .get_mut(usize::from(region).wrapping_sub(1))
            .and_then(Value::as_table_mut)
        {
            Some(table) => table,
            None => panic!("the topology has no region {region}"),
        }
    }
}

/// Typed setters of one key each: the setter and its value, the table and
/// key it sets (which is also its documentation), and the value as TOML.
macro_rules! setters {
    ($($name:ident($value:ident: $type:ty) => $table:literal . $key:literal = $toml:expr;)+) => {
        impl Topology {
            $(
                #[doc = concat!("`", $table, ".", $key, "`.")]
                pub fn $name(mut self, $value: $type) -> Self {
                    self.set(&[$table], $key, $toml);
                    self
                }
            )+
        }
    };
}

setters! {
    health_down_after(probes: u32) => "health"."down_after" = probes.into();
    steered_ttl(seconds: u32) => "zone"."steered_ttl_seconds" = seconds.into();
    geodns_admin_token(token: &str) => "geodns"."admin_token" = token.into();
    geo_database(path: &Path) => "geodns"."geo_database" = path_value(path);
    origin_ca_file(path: &Path) => "edge"."origin_ca_file" = path_value(path);
    origin_suspect(time: Duration) => "edge"."origin_suspect_ms" = millis(time);
    origin_read_timeout(time: Duration) => "edge"."origin_read_timeout_ms" = millis(time);
    origin_total_timeout(time: Duration) => "edge"."origin_total_timeout_ms" = millis(time);
    client_header_timeout(time: Duration) => "edge"."client_header_timeout_ms" = millis(time);
    client_io_timeout(time: Duration) => "edge"."client_io_timeout_ms" = millis(time);
    honor_client_no_cache(honor: bool) => "edge"."honor_client_no_cache" = honor.into();
    plain_hit_fast_path(on: bool) => "edge"."plain_hit_fast_path" = on.into();
    cache_max_variants(variants: u32) => "edge"."cache_max_variants" = variants.into();
    cache_max_bytes(bytes: u64) => "edge"."cache_max_bytes" = i64::try_from(bytes).unwrap_or(i64::MAX).into();
}

impl Topology {
    /// `[edge.disk]`: a disk tier of `max_bytes` per edge under `path`.
    pub fn disk_cache(mut self, path: &Path, max_bytes: u64) -> Self {
        self.set(&["edge", "disk"], "path", path_value(path));
        let bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        self.set(&["edge", "disk"], "max_bytes", bytes.into());
        self
    }
}

/// `[[zone.records]]` tables (TOML text) from `NAME TYPE VALUE` entries
/// separated by `|` (the value may hold spaces): a NAME with a final dot
/// is absolute, one without is inside the demo's zone, and `@` is its
/// apex. For tests that add records to the demo's `[zone]`.
pub fn zone_records(spec: &str) -> String {
    spec.split('|')
        .map(|entry| {
            let mut parts = entry.trim().splitn(3, ' ');
            let mut next = || parts.next().unwrap_or_default();
            let (name, record_type, value) = (next(), next(), next());
            let name = match name {
                "@" => "meridian.test.".to_owned(),
                absolute if absolute.ends_with('.') => absolute.to_owned(),
                relative => format!("{relative}.meridian.test."),
            };
            format!("[[zone.records]]\nname = \"{name}\"\ntype = \"{record_type}\"\nvalue = \"{value}\"\n")
        })
        .collect()
}

/// Rewrites every `127.0.` address inside `value` onto `127.block.`.
fn move_to_block(value: &mut Value, block: u8) {
    match value {
        Value::String(text) => {
            let (scheme, rest) = match text.strip_prefix("http://") {
                Some(rest) => ("http://", rest),
                None => ("", text.as_str()),
            };
            if let Some(rest) = rest.strip_prefix("127.0.") {
                *text = format!("{scheme}127.{block}.{rest}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| move_to_block(v, block)),
        Value::Table(table) => table.iter_mut().for_each(|(_, v)| move_to_block(v, block)),
        _ => {}
    }
}

/// The first of a region's `what`s (a validated region has an edge).
fn first(addresses: Vec<SocketAddr>, what: &str) -> SocketAddr {
    match addresses.first() {
        Some(addr) => *addr,
        None => panic!("the region has no {what}"),
    }
}

fn millis(time: Duration) -> Value {
    Value::Integer(i64::try_from(time.as_millis()).unwrap_or(i64::MAX))
}

fn strings(addresses: &[IpAddr]) -> Value {
    Value::Array(addresses.iter().map(|a| a.to_string().into()).collect())
}

fn regions_value(regions: &[&str]) -> Value {
    Value::Array(regions.iter().map(|r| (*r).into()).collect())
}

fn path_value(path: &Path) -> Value {
    path.display().to_string().into()
}

fn split_path(path: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let key = parts.pop().unwrap_or_default();
    (parts, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_moves_onto_its_block_whole() {
        let topology = Topology::demo(77);
        assert_eq!(topology.dns(), "127.77.0.1:5353".parse().unwrap());
        assert_eq!(topology.dns_of(1), "127.77.0.2:5353".parse().unwrap());
        assert_eq!(
            topology.geodns_admin_of(1),
            "127.77.0.2:9153".parse().unwrap()
        );
        assert_eq!(topology.geodns_name(1), "ns2");
        assert_eq!(topology.control(), "127.77.0.1:9000".parse().unwrap());
        assert_eq!(topology.edge(2), "127.77.2.1:8080".parse().unwrap());
        assert_eq!(topology.edge_admin(2), "127.77.2.1:9080".parse().unwrap());
        assert_eq!(
            topology.edges(2),
            ["127.77.2.1:8080", "127.77.2.3:8080"].map(|a| a.parse().unwrap())
        );
        assert_eq!(
            topology.edge_admins(2)[1],
            "127.77.2.3:9080".parse().unwrap()
        );
        assert_eq!(topology.origin(3), "127.77.3.2:8000".parse().unwrap());
        assert_eq!(topology.region_name(3), "ap-southeast");
        // Nothing is left on the demo's addresses.
        assert!(!topology.toml().contains("127.0."), "{}", topology.toml());
    }

    #[test]
    fn setters_change_the_validated_config() {
        let config = Topology::demo(77)
            .quiet_health()
            .health_down_after(100)
            .origin_suspect(Duration::from_millis(1))
            .rate_limit(RateLimit {
                responses_per_second: 1,
                burst: Some(5),
                slip: None,
            })
            .zone_record("mail.meridian.test.", "A", "192.0.2.25")
            .override_country("BR", &["ap-southeast"])
            .edge_addresses(1, &["127.61.1.1".parse().unwrap()])
            .config()
            .unwrap();
        assert_eq!(config.health.interval, Duration::from_secs(300));
        assert_eq!(config.health.down_after, 100);
        assert_eq!(config.edge.origins.suspect_for, Duration::from_millis(1));
        assert_eq!(config.geodns.rate_limit.map(|r| r.burst), Some(5));
        assert_eq!(config.zone.records.len(), 1);
        assert_eq!(config.geodns.overrides.countries["BR"], [2]);
        assert_eq!(
            config.regions[0].edge_addresses,
            ["127.61.1.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn the_pair_of_nameservers_becomes_one() {
        let pair = Topology::demo(77)
            .probe_from(1, "127.77.0.9".parse().unwrap())
            .quorum(2)
            .silent_after(Duration::from_secs(3))
            .fail_open(false);
        let config = pair.config().unwrap();
        assert_eq!(config.geodns.servers.len(), 2);
        assert_eq!(
            config.geodns.servers[1].probe_from,
            Some("127.77.0.9".parse().unwrap())
        );
        assert_eq!(config.health.quorum, config::Quorum::AtLeast(2));
        assert_eq!(config.health.silent_after, Duration::from_secs(3));
        assert!(!config.health.fail_open);
        let single = pair.clone().single_geodns().config().unwrap();
        assert_eq!(single.geodns.servers.len(), 1);
        assert_eq!(single.geodns.servers[0].name, config::SINGLE_SERVER_NAME);
        assert_eq!(single.geodns.servers[0].listen, pair.dns());
        assert_eq!(single.zone.nameservers.len(), 1);
        let moved = Topology::demo(77)
            .geodns_on("127.78.0.1".parse().unwrap())
            .geodns_admin_listen("127.78.0.1:9999".parse().unwrap())
            .probe_from(0, "127.78.0.2".parse().unwrap());
        assert_eq!(moved.dns(), "127.78.0.1:5353".parse().unwrap());
        assert_eq!(moved.geodns_admin(), "127.78.0.1:9999".parse().unwrap());
        assert_eq!(moved.geodns_servers(), 1);
        assert_eq!(
            moved.config().unwrap().geodns.servers[0].probe_from,
            Some("127.78.0.2".parse().unwrap())
        );
    }

    #[test]
    fn a_key_the_product_does_not_know_fails_validation_by_name() {
        let error = Topology::demo(77)
            .rename("edge.http_port", "htp_port")
            .config()
            .unwrap_err();
        assert!(error.to_string().contains("edge.htp_port"), "{error}");
    }

    #[test]
    #[should_panic(expected = "no key edge.nonexistent to rename")]
    fn an_edit_whose_target_is_gone_fails_loudly() {
        let _ = Topology::demo(77).rename("edge.nonexistent", "other");
    }

    #[test]
    #[should_panic(expected = "no region 4")]
    fn a_region_that_does_not_exist_fails_loudly() {
        let _ = Topology::demo(77).latitude(4, 0.0);
    }
}
