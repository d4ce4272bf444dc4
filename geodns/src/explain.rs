//! Why GeoDNS sends a client where it does: the data behind `meridian route`.
//!
//! [`Explainer`] loads the config's database and builds the same table
//! GeoDNS answers from; [`Explainer::explain`] then places one address and
//! reports every step: the database's answer (country, continent,
//! coordinates and where they came from, the network), which rule decided
//! (a network, country or continent override, distance, or the default
//! order), the regions in order with their great-circle distance, and the
//! ECS scope a reply would carry. Health is not its business: the command
//! asks the running GeoDNS for that.

use crate::error::GeoDnsError;
use crate::geo::{GeoDatabase, Location, canonical, is_public};
use crate::steering::{Rule, Steering};
use crate::table::GeoTable;
use std::net::IpAddr;

/// A loaded database and table, ready to explain decisions.
pub struct Explainer {
    geo: GeoDatabase,
    steering: Steering,
    table: GeoTable,
    regions: Vec<(String, Option<String>)>,
}

/// Everything about one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The address, as given.
    pub ip: IpAddr,
    /// Whether it can be placed at all (not loopback, private, ...).
    pub public: bool,
    /// What the database says, if anything.
    pub location: Option<Location>,
    /// The database network the address fell in, as `address/prefix`.
    pub network: String,
    /// What decided the order.
    pub rule: Rule,
    /// The regions, best first.
    pub regions: Vec<RankedRegion>,
    /// The ECS scope prefix of a reply for this address (0 when GeoDNS
    /// would ignore it as an ECS address).
    pub scope: u8,
    /// The block that scope covers, as `address/prefix`.
    pub scope_block: String,
}

/// One region in a client's order.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedRegion {
    /// Its index in the config.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Its city, if the config names one.
    pub city: Option<String>,
    /// Great-circle distance from the client, when the client has coordinates.
    pub km: Option<f64>,
}

impl Explainer {
    /// Loads what `config` names.
    pub fn new(config: &config::Config) -> Result<Self, GeoDnsError> {
        let geo = GeoDatabase::from_config(&config.geodns.geo_database)?;
        let steering = Steering::from_config(config);
        let table = GeoTable::build(&geo, &steering)?;
        let regions = config
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.city.clone()))
            .collect();
        Ok(Explainer {
            geo,
            steering,
            table,
            regions,
        })
    }

    /// The database's description, for the report.
    pub fn database(&self) -> &str {
        self.geo.description()
    }

    /// Explains the decision for a client at `ip`.
    pub fn explain(&self, ip: IpAddr) -> Explanation {
        let placement = self.geo.place(ip);
        let location = placement.location;
        let decision = self.table.decide(ip);
        let rule = self.steering.order_for(ip, location.as_ref()).rule;
        let distances = location
            .as_ref()
            .and_then(|l| l.coordinates)
            .map(|c| self.steering.distances_km(c));
        let regions = decision
            .order
            .iter()
            .map(|&index| {
                let (name, city) = self.regions.get(index).cloned().unwrap_or_default();
                RankedRegion {
                    index,
                    name,
                    city,
                    km: distances.as_ref().and_then(|d| d.get(index).copied()),
                }
            })
            .collect();
        let public = is_public(ip);
        let scope = if public { decision.scope } else { 0 };
        Explanation {
            scope_block: network(ip, scope),
            ip,
            public,
            network: network(canonical(ip), placement.network_prefix),
            location,
            rule,
            regions,
            scope,
        }
    }
}

/// The client address in `text`: an IP address, or the network address of a
/// subnet such as `81.2.69.0/24` (as an ECS option would carry it).
pub fn client_address(text: &str) -> Option<IpAddr> {
    text.parse()
        .ok()
        .or_else(|| text.parse::<ipnet::IpNet>().ok().map(|net| net.network()))
}

/// `ip` cut to `prefix` bits, as `address/prefix`.
fn network(ip: IpAddr, prefix: u8) -> String {
    match ipnet::IpNet::new(ip, prefix) {
        Ok(net) => net.trunc().to_string(),
        Err(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_subnets_are_clients() {
        let parse = |t: &str| client_address(t).map(|ip| ip.to_string());
        assert_eq!(parse("81.2.69.142").as_deref(), Some("81.2.69.142"));
        assert_eq!(parse("81.2.69.7/24").as_deref(), Some("81.2.69.0"));
        assert_eq!(
            parse("2001:4860:4860::/48").as_deref(),
            Some("2001:4860:4860::")
        );
        assert_eq!(parse("example.com"), None);
    }

    #[test]
    fn explains_the_readme_example() {
        let explainer = Explainer::new(&config::Config::demo()).unwrap();
        let gb = explainer.explain("81.2.69.142".parse().unwrap());
        assert!(gb.public);
        assert_eq!(gb.location.as_ref().unwrap().country.as_deref(), Some("GB"));
        assert_eq!(gb.rule, Rule::Distance);
        let names: Vec<&str> = gb.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["eu-west", "us-east", "ap-southeast"]);
        let km = gb.regions[0].km.unwrap();
        assert!((100.0..1000.0).contains(&km), "{km}");
        assert!((1..=29).contains(&gb.scope), "{}", gb.scope);
        assert!(gb.network.starts_with("81."), "{}", gb.network);
        assert!(gb.scope_block.ends_with(&format!("/{}", gb.scope)));

        let private = explainer.explain("10.1.2.3".parse().unwrap());
        assert!(!private.public);
        assert_eq!(private.rule, Rule::Default);
        assert_eq!(private.scope, 0);
        assert!(private.regions.iter().all(|r| r.km.is_none()));
    }
}
