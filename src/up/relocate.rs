//! Moving a topology off loopback for `up --hosts`: every IPv4 loopback
//! address the config gives (`127.A.B.C`) becomes `S1.S2.B.C` in the hosts'
//! subnet, wherever it appears — a bare address, `address:port` or the host
//! of a URL (`http`, `https`, and the cluster bus's `nats`, `tls`) — so the demo's `127.0.2.1` edge is `198.18.2.1` on its own
//! host. The control API stays where it is: it is `up`'s own listener, in
//! this namespace.
//!
//! It works on the file's TOML values rather than on [`config::Config`]
//! because the result is a file for the children to load, and the config
//! crate validates it again when they (and `up`) load it.
//!
//! Off loopback, the admin listeners need what any deployment on a
//! network needs ([`for_hosts`]): each edge's on its own address (so the
//! GeoDNS servers hear what it sees of its peers), and a GeoDNS admin
//! token (made up for this run when the config has none).

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use toml::{Table, Value};

/// Sections left as they are.
const STAY: &[&str] = &["control"];

/// `text` (a config file) moved onto the hosts of `up --hosts`: its
/// loopback addresses in `subnet`, the admin listeners set up for a
/// network.
pub fn for_hosts(text: &str, subnet: [u8; 2]) -> anyhow::Result<String> {
    let mut table = relocated(text, subnet)?;
    section(&mut table, "edge")?.insert("admin_on_edge_address".into(), Value::Boolean(true));
    let geodns = section(&mut table, "geodns")?;
    if !geodns.contains_key("admin_token") {
        geodns.insert("admin_token".into(), Value::String(random_token()?));
    }
    toml::to_string(&table).context("cannot write the relocated config")
}

/// The table `[name]` of `table`.
fn section<'t>(table: &'t mut Table, name: &str) -> anyhow::Result<&'t mut Table> {
    table
        .get_mut(name)
        .and_then(Value::as_table_mut)
        .with_context(|| format!("the config has no [{name}] section"))
}

/// 32 hex digits from the system's random source, for a token that lives
/// as long as this `up`.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for an admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `text` (a config file) with its loopback addresses in `subnet`.
fn relocated(text: &str, subnet: [u8; 2]) -> anyhow::Result<Table> {
    let mut table: Table = text.parse().context("the config is not valid TOML")?;
    let mut moved = Moves {
        subnet,
        by_new: BTreeMap::new(),
    };
    for (key, value) in table.iter_mut() {
        if !STAY.contains(&key.as_str()) {
            moved.value(value)?;
        }
    }
    Ok(table)
}

/// The addresses moved so far, by new address: two old addresses may not
/// become one.
struct Moves {
    subnet: [u8; 2],
    by_new: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl Moves {
    fn value(&mut self, value: &mut Value) -> anyhow::Result<()> {
        match value {
            Value::String(text) => {
                if let Some(moved) = self.text(text)? {
                    *text = moved;
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.value(item)?;
                }
            }
            Value::Table(table) => {
                for (_, item) in table.iter_mut() {
                    self.value(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `text` moved, if it is or holds a loopback address.
    fn text(&mut self, text: &str) -> anyhow::Result<Option<String>> {
        if let Ok(IpAddr::V4(ip)) = text.parse::<IpAddr>() {
            return Ok(self.ip(ip)?.map(|ip| ip.to_string()));
        }
        if let Ok(SocketAddr::V4(addr)) = text.parse::<SocketAddr>() {
            return Ok(self
                .ip(*addr.ip())?
                .map(|ip| format!("{ip}:{}", addr.port())));
        }
        for scheme in ["http://", "https://", "nats://", "tls://"] {
            let Some(rest) = text.strip_prefix(scheme) else {
                continue;
            };
            let end = rest.find([':', '/']).unwrap_or(rest.len());
            let (host, tail) = rest.split_at(end);
            if let Ok(ip) = host.parse::<Ipv4Addr>() {
                return Ok(self.ip(ip)?.map(|ip| format!("{scheme}{ip}{tail}")));
            }
        }
        Ok(None)
    }

    fn ip(&mut self, ip: Ipv4Addr) -> anyhow::Result<Option<Ipv4Addr>> {
        if !ip.is_loopback() {
            return Ok(None);
        }
        let [_, _, third, fourth] = ip.octets();
        let [first, second] = self.subnet;
        let moved = Ipv4Addr::new(first, second, third, fourth);
        if moved == Ipv4Addr::new(first, second, 255, 254) {
            bail!(
                "{ip} would become {moved}, the address the hosts' network keeps for this machine"
            );
        }
        match self.by_new.insert(moved, ip) {
            Some(other) if other != ip => {
                bail!(
                    "{other} and {ip} would both become {moved}: give them different last two octets"
                )
            }
            _ => Ok(Some(moved)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_addresses_wherever_they_appear() {
        let text = r#"
            [geodns]
            listen = "127.0.0.1:5353"
            [[zone.nameservers]]
            addresses = ["127.0.0.1", "2001:db8::1"]
            [[region]]
            edge_addresses = ["127.0.2.1", "127.0.2.3"]
            origin_url = "http://127.0.2.2:8000"
            other = "https://127.0.2.2/path"
            public = "192.0.2.1"
            name = "eu-west"
            [control]
            listen = "127.0.0.1:9000"
            [cluster]
            nats_urls = ["nats://127.0.0.4:4222", "tls://127.0.1.4:4443"]
        "#;
        let moved = relocated(text, [198, 18]).unwrap();
        let urls = &moved["cluster"]["nats_urls"];
        assert_eq!(urls[0].as_str(), Some("nats://198.18.0.4:4222"));
        assert_eq!(urls[1].as_str(), Some("tls://198.18.1.4:4443"));
        assert_eq!(moved["geodns"]["listen"].as_str(), Some("198.18.0.1:5353"));
        let ns = &moved["zone"]["nameservers"][0]["addresses"];
        assert_eq!(ns[0].as_str(), Some("198.18.0.1"));
        assert_eq!(ns[1].as_str(), Some("2001:db8::1"), "IPv6 is left alone");
        let region = &moved["region"][0];
        assert_eq!(region["edge_addresses"][1].as_str(), Some("198.18.2.3"));
        assert_eq!(
            region["origin_url"].as_str(),
            Some("http://198.18.2.2:8000")
        );
        assert_eq!(region["other"].as_str(), Some("https://198.18.2.2/path"));
        assert_eq!(region["public"].as_str(), Some("192.0.2.1"));
        assert_eq!(region["name"].as_str(), Some("eu-west"));
        assert_eq!(
            moved["control"]["listen"].as_str(),
            Some("127.0.0.1:9000"),
            "the control API stays on loopback"
        );
    }

    #[test]
    fn two_addresses_never_become_one() {
        let text = "a = \"127.0.2.1\"\nb = \"127.9.2.1\"\n";
        let error = relocated(text, [198, 18]).unwrap_err().to_string();
        assert!(error.contains("would both become 198.18.2.1"), "{error}");
        let reserved = relocated("a = \"127.0.255.254\"\n", [198, 18]).unwrap_err();
        assert!(reserved.to_string().contains("keeps for this machine"));
        assert!(relocated("a = \"127.0.2.1\"\nb = \"127.0.2.1:80\"\n", [198, 18]).is_ok());
    }

    #[test]
    fn the_demo_stays_valid() {
        let moved = for_hosts(config::DEMO_TOML, [198, 18]).unwrap();
        let config = config::Config::from_toml(
            &moved,
            config::ConfigSource::File("<relocated demo>".into()),
        )
        .unwrap();
        let eu = &config.regions[1];
        assert_eq!(eu.edge_addresses[0], IpAddr::from([198, 18, 2, 1]));
        assert_eq!(
            eu.edge_admin_addrs(&config.edge)[1],
            "198.18.2.3:9080".parse().unwrap(),
            "each edge's admin listener on its own address"
        );
        let token = config.geodns.admin_token.as_deref().unwrap();
        assert_eq!(token.len(), 32);
        let again = for_hosts(config::DEMO_TOML, [198, 18]).unwrap();
        assert!(!again.contains(token), "a token per run");
    }
}
