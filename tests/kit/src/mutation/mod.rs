//! DNS messages to attack GeoDNS with: one seed corpus and one set of
//! mutators, shared by the request-path fuzz test (`geodns/tests/fuzz/`),
//! the hostile-input test of the real process (`tests/meridian/dns.rs`)
//! and the flood benchmark (`dns-flood`).
//!
//! [`corpus`] holds valid queries of every shape GeoDNS handles (and a few
//! it must refuse), and the [`corpus::topology`] they are meant for;
//! [`mutate`] turns one input into the next, aimed at the structure that
//! [`wire`] finds in it. Everything comes from one seeded generator
//! ([`Rng`]), so a seed replays a whole run.

pub mod corpus;
pub mod mutate;
pub mod wire;

pub use mutate::{MAX_INPUT, Made, Rng, again, next};

use rand::SeedableRng;

/// `count` hostile inputs made from the corpus by the mutators, from
/// `seed`: what a test or a flood sends when it needs many at once.
pub fn inputs(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::seed_from_u64(seed);
    let pool = corpus::seeds();
    (0..count).map(|_| next(&mut rng, &pool).0).collect()
}

/// A seed nobody chose, for a run that was not given one: the clock's
/// nanoseconds and the process id. Runs print it, so that it replays.
pub fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
