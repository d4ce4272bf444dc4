//! Steered answers per client country and region: where clients of each
//! country are sent, for the live view's flows.
//!
//! The table ([`crate::table`]) knows each address's country (the
//! database's ISO code) as a [`CountryId`]: the code's index in the one
//! country table of the config (`config::countries`), so the counters are
//! a flat array of atomics, created with each loaded config, and counting
//! an answer is one relaxed add, with no lookup and no allocation. The
//! array's size is fixed by that table and the config's regions, never by
//! what clients send: a hostile Client Subnet can only pick among the
//! countries that exist. Codes the table does not know (a database's
//! private codes such as `EU`) count as [`OTHER`]; addresses with no
//! country (non-public, not in the database) as [`UNKNOWN`].

use config::countries::{country_code, country_count};
use std::sync::atomic::{AtomicU64, Ordering};

/// A client's country: the index of its ISO code in the country table, or
/// one of [`UNKNOWN`] and [`OTHER`] past its end.
pub type CountryId = u16;

/// No country: a non-public address, or one the database does not place.
pub const UNKNOWN: &str = "unknown";

/// A country code the country table does not know.
pub const OTHER: &str = "other";

/// The id of [`UNKNOWN`].
pub fn unknown() -> CountryId {
    to_id(country_count())
}

/// The id of [`OTHER`].
fn other() -> CountryId {
    to_id(country_count() + 1)
}

/// How many ids there are: every code of the table, unknown and other.
fn ids() -> usize {
    country_count() + 2
}

fn to_id(index: usize) -> CountryId {
    // The table has a few hundred codes: always fits.
    CountryId::try_from(index).unwrap_or(CountryId::MAX)
}

/// The id of a record's country code (`None`: no country).
pub fn country_id(code: Option<&str>) -> CountryId {
    match code {
        None => unknown(),
        Some(code) => config::countries::country_index(code).map_or_else(other, to_id),
    }
}

/// The name an id stands for: an uppercase ISO code, [`UNKNOWN`] or
/// [`OTHER`].
pub fn country_name(id: CountryId) -> &'static str {
    match country_code(usize::from(id)) {
        Some(code) => code,
        None if id == unknown() => UNKNOWN,
        None => OTHER,
    }
}

/// The id of a name [`country_name`] gives (`None` for anything else).
pub fn parse_country(name: &str) -> Option<CountryId> {
    match name {
        UNKNOWN => Some(unknown()),
        OTHER => Some(other()),
        code => config::countries::country_index(code).map(to_id),
    }
}

/// Steered answers since the config was loaded, per (country, region).
#[derive(Debug)]
pub struct Flows {
    regions: usize,
    /// `[country][region]`, flattened.
    cells: Box<[AtomicU64]>,
}

impl Flows {
    /// Counters at zero for `regions` regions.
    pub fn new(regions: usize) -> Flows {
        Flows {
            regions,
            cells: (0..ids() * regions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one answer to a client in `country` with `region`'s edges.
    pub fn count(&self, country: CountryId, region: usize) {
        if region >= self.regions {
            return;
        }
        let at = usize::from(country) * self.regions + region;
        if let Some(cell) = self.cells.get(at) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every (country, region index, answers) with answers, countries in
    /// id order.
    pub fn totals(&self) -> Vec<(CountryId, usize, u64)> {
        let regions = self.regions.max(1);
        self.cells
            .iter()
            .enumerate()
            .filter_map(|(at, cell)| {
                let answers = cell.load(Ordering::Relaxed);
                (answers > 0).then(|| (to_id(at / regions), at % regions, answers))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_countries_unknown_and_other() {
        let gb = country_id(Some("GB"));
        assert_eq!(country_name(gb), "GB");
        assert_eq!(country_id(Some("gb")), gb);
        assert_eq!(country_name(country_id(None)), UNKNOWN);
        assert_eq!(country_name(country_id(Some("EU"))), OTHER);
        assert_eq!(country_name(country_id(Some("not a code"))), OTHER);
        assert_ne!(unknown(), other());
        for id in [gb, unknown(), other()] {
            assert_eq!(parse_country(country_name(id)), Some(id));
        }
        assert_eq!(parse_country("ZZ"), None);
    }

    #[test]
    fn counts_land_in_their_cell_and_nothing_else_grows() {
        let flows = Flows::new(3);
        let (gb, us) = (country_id(Some("GB")), country_id(Some("US")));
        flows.count(gb, 1);
        flows.count(gb, 1);
        flows.count(us, 0);
        flows.count(unknown(), 2);
        flows.count(other(), 2);
        // A region past the config's, or an id past the last: ignored.
        flows.count(gb, 3);
        flows.count(CountryId::MAX, 0);
        let mut expected = vec![(gb, 1, 2), (us, 0, 1), (unknown(), 2, 1), (other(), 2, 1)];
        expected.sort();
        assert_eq!(flows.totals(), expected);
        assert_eq!(flows.cells.len(), ids() * 3, "fixed by the tables");
    }
}
