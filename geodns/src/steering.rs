//! Which regions a client should use, nearest first.
//!
//! Pure functions over data: given where a client is (or that it cannot be
//! placed), order the regions by the configured overrides (the client's
//! network, else its country, else its continent), else by great-circle
//! distance from it, else the configured default order. No I/O, no clock, no
//! health: the caller skips unhealthy regions in the order this returns.
//!
//! An override lists some regions; the ones it leaves out follow in the
//! order the client would have had without it, so a partial override still
//! fails over sensibly.

use crate::geo::{Location, canonical};
use config::countries::Coordinates;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// The regions' positions, the overrides and the default order:
/// everything steering needs.
#[derive(Debug, Clone)]
pub struct Steering {
    sites: Vec<Coordinates>,
    default_order: Vec<usize>,
    /// Network overrides, most specific first.
    nets: Vec<(IpNet, Vec<usize>)>,
    countries: HashMap<String, Vec<usize>>,
    continents: HashMap<String, Vec<usize>>,
}

/// Why a client got the order it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `geodns.overrides.nets`: the client's address is in this network.
    Net(IpNet),
    /// `geodns.overrides.countries`: the client is in this country.
    Country(String),
    /// `geodns.overrides.continents`: the client is on this continent.
    Continent(String),
    /// Nearest first by great-circle distance from the client.
    Distance,
    /// The configured default order: the client could not be placed.
    Default,
}

/// Regions for one client, best first, as indices into the config's regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOrder {
    /// Every region exactly once, best first.
    pub regions: Vec<usize>,
    /// What decided it.
    pub rule: Rule,
}

impl Steering {
    /// Steering over `sites` (one per region, in config order) with a
    /// `default_order` that lists every region exactly once.
    pub fn new(sites: Vec<Coordinates>, default_order: Vec<usize>) -> Self {
        Steering {
            sites,
            default_order,
            nets: Vec::new(),
            countries: HashMap::new(),
            continents: HashMap::new(),
        }
    }

    /// This steering with `overrides` (region indices as in `sites`).
    pub fn with_overrides(mut self, overrides: &config::Overrides) -> Self {
        self.nets = overrides
            .nets
            .iter()
            .map(|o| (o.net, o.regions.clone()))
            .collect();
        // Longest prefix first, so the first match is the most specific.
        self.nets
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        self.countries = overrides.countries.clone().into_iter().collect();
        self.continents = overrides.continents.clone().into_iter().collect();
        self
    }

    /// Steering for a validated config.
    pub fn from_config(config: &config::Config) -> Self {
        let sites = config
            .regions
            .iter()
            .map(|r| Coordinates {
                latitude: r.latitude,
                longitude: r.longitude,
            })
            .collect();
        Steering::new(sites, config.geodns.default_order.clone())
            .with_overrides(&config.geodns.overrides)
    }

    /// The number of regions.
    pub fn region_count(&self) -> usize {
        self.sites.len()
    }

    /// The order for a client at `ip`, placed at `location` (`None`: not
    /// placed): a network override first, then [`Steering::order`].
    pub fn order_for(&self, ip: IpAddr, location: Option<&Location>) -> RegionOrder {
        let without = self.order(location);
        match self.net_override(ip) {
            Some((net, listed)) => RegionOrder {
                regions: overridden(listed, &without.regions),
                rule: Rule::Net(*net),
            },
            None => without,
        }
    }

    /// The most specific network override containing `ip`.
    pub fn net_override(&self, ip: IpAddr) -> Option<(&IpNet, &[usize])> {
        let ip = canonical(ip);
        self.nets
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(net, order)| (net, order.as_slice()))
    }

    /// The network overrides, most specific first.
    pub fn nets(&self) -> &[(IpNet, Vec<usize>)] {
        &self.nets
    }

    /// The order for a client at `location` (`None`: not placed), from
    /// everything but its address: its country's override, else its
    /// continent's, else distance, else the default order.
    pub fn order(&self, location: Option<&Location>) -> RegionOrder {
        let without = match location.and_then(|l| l.coordinates) {
            Some(client) => RegionOrder {
                regions: self.by_distance(client),
                rule: Rule::Distance,
            },
            None => RegionOrder {
                regions: self.default_order.clone(),
                rule: Rule::Default,
            },
        };
        let Some(location) = location else {
            return without;
        };
        let by_country = location
            .country
            .as_ref()
            .and_then(|c| Some((Rule::Country(c.clone()), self.countries.get(c)?)));
        let by_continent = || {
            location
                .continent
                .as_ref()
                .and_then(|c| Some((Rule::Continent(c.clone()), self.continents.get(c)?)))
        };
        match by_country.or_else(by_continent) {
            Some((rule, listed)) => RegionOrder {
                regions: overridden(listed, &without.regions),
                rule,
            },
            None => without,
        }
    }

    /// Great-circle distance from `client` to every region, in config order.
    pub fn distances_km(&self, client: Coordinates) -> Vec<f64> {
        self.sites
            .iter()
            .map(|site| great_circle_km(client, *site))
            .collect()
    }

    /// Region indices sorted by distance from `client`; ties keep config order.
    pub fn by_distance(&self, client: Coordinates) -> Vec<usize> {
        let mut ranked: Vec<(f64, usize)> = self
            .sites
            .iter()
            .enumerate()
            .map(|(i, site)| (great_circle_km(client, *site), i))
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        ranked.into_iter().map(|(_, i)| i).collect()
    }
}

/// `listed` first, then the rest of `otherwise` in its order.
pub fn overridden(listed: &[usize], otherwise: &[usize]) -> Vec<usize> {
    let mut order = listed.to_vec();
    order.extend(otherwise.iter().filter(|r| !listed.contains(r)));
    order
}

/// The region chosen to answer a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index of the region.
    pub region: usize,
    /// True when no region was up and this is the fail-open fallback.
    pub fail_open: bool,
}

/// The first region in `order` that is up. When none is: the first one
/// anyway if `fail_open` (a possibly-wrong answer beats no answer, as gdnsd
/// and Route 53 decide), else `None`.
pub fn choose(order: &[usize], is_up: impl Fn(usize) -> bool, fail_open: bool) -> Option<Choice> {
    if let Some(&region) = order.iter().find(|&&r| is_up(r)) {
        return Some(Choice {
            region,
            fail_open: false,
        });
    }
    match order.first() {
        Some(&region) if fail_open => Some(Choice {
            region,
            fail_open: true,
        }),
        _ => None,
    }
}

/// Great-circle distance between two points, in kilometres.
pub fn great_circle_km(a: Coordinates, b: Coordinates) -> f64 {
    config::great_circle_km((a.latitude, a.longitude), (b.latitude, b.longitude))
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::countries::country_centroid;

    const ASHBURN: Coordinates = Coordinates {
        latitude: 39.04,
        longitude: -77.49,
    };
    const DUBLIN: Coordinates = Coordinates {
        latitude: 53.35,
        longitude: -6.26,
    };
    const SINGAPORE: Coordinates = Coordinates {
        latitude: 1.35,
        longitude: 103.82,
    };

    fn demo() -> Steering {
        Steering::from_config(&config::Config::demo())
    }

    fn at_country(code: &str) -> Location {
        Location {
            country: Some(code.to_owned()),
            continent: None,
            coordinates: country_centroid(code),
            coordinates_from_database: false,
        }
    }

    #[test]
    fn distances_are_right() {
        // Dublin–Ashburn is about 5,500 km, Dublin–Singapore about 11,200 km.
        let d = great_circle_km(DUBLIN, ASHBURN);
        assert!((5400.0..5600.0).contains(&d), "{d}");
        let d = great_circle_km(DUBLIN, SINGAPORE);
        assert!((11100.0..11300.0).contains(&d), "{d}");
        assert_eq!(great_circle_km(DUBLIN, DUBLIN), 0.0);
        // Antipodes: half the circumference.
        let d = great_circle_km(
            Coordinates {
                latitude: 0.0,
                longitude: 0.0,
            },
            Coordinates {
                latitude: 0.0,
                longitude: 180.0,
            },
        );
        assert!((d - std::f64::consts::PI * 6371.0088).abs() < 1.0);
    }

    #[test]
    fn distance_across_the_antimeridian() {
        let fiji = Coordinates {
            latitude: -17.7,
            longitude: 178.0,
        };
        let samoa = Coordinates {
            latitude: -13.8,
            longitude: -172.1,
        };
        assert!(great_circle_km(fiji, samoa) < 1300.0);
    }

    #[test]
    fn demo_orders_by_country() {
        let steering = demo();
        // Region indices in the demo: 0 us-east, 1 eu-west, 2 ap-southeast.
        assert_eq!(steering.order(Some(&at_country("GB"))).regions, [1, 0, 2]);
        assert_eq!(steering.order(Some(&at_country("DE"))).regions, [1, 0, 2]);
        assert_eq!(steering.order(Some(&at_country("US"))).regions, [0, 1, 2]);
        assert_eq!(steering.order(Some(&at_country("BR"))).regions, [0, 1, 2]);
        assert_eq!(steering.order(Some(&at_country("SG"))).regions, [2, 1, 0]);
        assert_eq!(steering.order(Some(&at_country("JP"))).regions[0], 2);
        assert_eq!(steering.order(Some(&at_country("AU"))).regions[0], 2);
        // South Africa is nearer Singapore (~8,700 km) than Dublin (~9,500 km).
        assert_eq!(steering.order(Some(&at_country("ZA"))).regions, [2, 1, 0]);
        assert_eq!(steering.order(Some(&at_country("GB"))).rule, Rule::Distance);
    }

    #[test]
    fn unplaced_clients_get_the_default_order() {
        let steering = Steering::new(vec![ASHBURN, DUBLIN, SINGAPORE], vec![2, 0, 1]);
        let order = steering.order(None);
        assert_eq!(order.regions, [2, 0, 1]);
        assert_eq!(order.rule, Rule::Default);
        // A location without coordinates (continent only) cannot be ranked.
        let vague = Location {
            country: None,
            continent: Some("EU".into()),
            coordinates: None,
            coordinates_from_database: false,
        };
        assert_eq!(steering.order(Some(&vague)).rule, Rule::Default);
    }

    #[test]
    fn choose_skips_regions_that_are_down() {
        let up = |down: &'static [usize]| move |r: usize| !down.contains(&r);
        assert_eq!(
            choose(&[1, 0, 2], up(&[]), true),
            Some(Choice {
                region: 1,
                fail_open: false
            })
        );
        assert_eq!(
            choose(&[1, 0, 2], up(&[1]), true),
            Some(Choice {
                region: 0,
                fail_open: false
            })
        );
        assert_eq!(
            choose(&[1, 0, 2], up(&[1, 0]), true),
            Some(Choice {
                region: 2,
                fail_open: false
            })
        );
        // All down: fail open to the nearest, or fail closed.
        assert_eq!(
            choose(&[1, 0, 2], up(&[0, 1, 2]), true),
            Some(Choice {
                region: 1,
                fail_open: true
            })
        );
        assert_eq!(choose(&[1, 0, 2], up(&[0, 1, 2]), false), None);
        assert_eq!(choose(&[], up(&[]), true), None);
    }

    fn with_overrides(toml: &str) -> Steering {
        let text = config::DEMO_TOML.replacen(
            "[health]",
            &format!("[geodns.overrides]\n{toml}\n\n[health]"),
            1,
        );
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        Steering::from_config(&config)
    }

    fn at(country: &str, continent: &str) -> Location {
        Location {
            continent: Some(continent.to_owned()),
            ..at_country(country)
        }
    }

    #[test]
    fn overrides_take_precedence_net_country_continent() {
        let steering = with_overrides(
            "nets = { \"81.2.0.0/16\" = [\"ap-southeast\"], \"81.2.69.0/24\" = [\"us-east\"], \"10.0.0.0/8\" = [\"eu-west\"] }\n\
             countries = { GB = [\"us-east\", \"ap-southeast\", \"eu-west\"] }\n\
             continents = { EU = [\"ap-southeast\"], OC = [\"us-east\"] }",
        );
        let gb = at("GB", "EU");
        // The country beats the continent.
        let order = steering.order(Some(&gb));
        assert_eq!(order.regions, [0, 2, 1]);
        assert_eq!(order.rule, Rule::Country("GB".into()));
        // The continent, listing one region: the rest follow by distance.
        let de = at("DE", "EU");
        let order = steering.order(Some(&de));
        assert_eq!(order.regions, [2, 1, 0]);
        assert_eq!(order.rule, Rule::Continent("EU".into()));
        // The most specific network beats everything.
        let ip = "81.2.69.142".parse().unwrap();
        let order = steering.order_for(ip, Some(&gb));
        assert_eq!(order.regions, [0, 2, 1], "us-east, then as without it");
        assert_eq!(order.rule, Rule::Net("81.2.69.0/24".parse().unwrap()));
        let order = steering.order_for("81.2.1.1".parse().unwrap(), Some(&gb));
        assert_eq!(order.regions, [2, 0, 1]);
        // Mapped IPv4 matches IPv4 networks.
        let order = steering.order_for("::ffff:81.2.1.1".parse().unwrap(), Some(&gb));
        assert_eq!(order.rule, Rule::Net("81.2.0.0/16".parse().unwrap()));
        // Unplaced clients: the default order behind a network override.
        let order = steering.order_for("10.1.2.3".parse().unwrap(), None);
        assert_eq!(order.regions, [1, 0, 2]);
        // No override applies: distance.
        let us = at("US", "NA");
        let order = steering.order_for("8.8.8.8".parse().unwrap(), Some(&us));
        assert_eq!((order.regions, order.rule), (vec![0, 1, 2], Rule::Distance));
    }

    #[test]
    fn overridden_keeps_the_rest_in_order() {
        assert_eq!(overridden(&[2], &[1, 0, 2]), [2, 1, 0]);
        assert_eq!(overridden(&[0, 2], &[2, 1, 0]), [0, 2, 1]);
        assert_eq!(overridden(&[], &[2, 1, 0]), [2, 1, 0]);
    }

    #[test]
    fn ties_keep_config_order() {
        let steering = Steering::new(vec![DUBLIN, DUBLIN, ASHBURN], vec![0, 1, 2]);
        assert_eq!(steering.by_distance(DUBLIN), [0, 1, 2]);
    }
}
