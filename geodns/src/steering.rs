//! Which regions a client should use, nearest first.
//!
//! Pure functions over data: given where a client is (or that it cannot be
//! placed), order the regions by great-circle distance from it, or fall back
//! to the configured default order. No I/O, no clock, no health: the caller
//! skips unhealthy regions in the order this returns.

use crate::centroids::Coordinates;
use crate::geo::Location;

/// The regions' positions and the default order: everything steering needs.
#[derive(Debug, Clone)]
pub struct Steering {
    sites: Vec<Coordinates>,
    default_order: Vec<usize>,
}

/// Why a client got the order it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
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
        }
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
    }

    /// The order for a client at `location` (`None`: not placed).
    pub fn order(&self, location: Option<&Location>) -> RegionOrder {
        match location.and_then(|l| l.coordinates) {
            Some(client) => RegionOrder {
                regions: self.by_distance(client),
                rule: Rule::Distance,
            },
            None => RegionOrder {
                regions: self.default_order.clone(),
                rule: Rule::Default,
            },
        }
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
    use crate::centroids::country_centroid;

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

    #[test]
    fn ties_keep_config_order() {
        let steering = Steering::new(vec![DUBLIN, DUBLIN, ASHBURN], vec![0, 1, 2]);
        assert_eq!(steering.by_distance(DUBLIN), [0, 1, 2]);
    }
}
