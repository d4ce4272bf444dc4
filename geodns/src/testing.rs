//! What GeoDNS's unit tests share.
//!
//! Hostile datagrams, for the tests of code that reads wire bytes before
//! hickory does (the answer cache's query shape, the rate limiter's
//! truncation): every prefix of each well-formed seed, each seed with one
//! byte replaced by a value that means something in DNS framing (a length,
//! a compression pointer, the OPT type), and random bytes. And a poll for
//! async tests that wait on background work.

use std::time::Duration;

/// Values that mean something at some offset of a DNS message.
const TELLING_BYTES: [u8; 8] = [0, 1, 0x29, 0x3f, 0x40, 0x80, 0xc0, 0xff];

/// Random datagrams made, after the variants of the seeds.
const RANDOM: usize = 20_000;

/// The hostile variants of `seeds`, then random datagrams up to `max_len`
/// bytes (from a fixed seed, so a failure is reproducible).
pub(crate) fn hostile_variants(
    seeds: &[Vec<u8>],
    max_len: u64,
) -> impl Iterator<Item = Vec<u8>> + '_ {
    let prefixes = seeds
        .iter()
        .flat_map(|seed| (0..=seed.len()).map(|len| seed[..len].to_vec()));
    let changed = seeds.iter().flat_map(|seed| {
        (0..seed.len()).flat_map(move |at| {
            TELLING_BYTES.iter().map(move |&value| {
                let mut changed = seed.clone();
                changed[at] = value;
                changed
            })
        })
    });
    // xorshift64: enough to scatter bytes, and no dependency for a test.
    let random = (0..RANDOM).scan(0x2545_f491_4f6c_dd1d_u64, move |state, _| {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let len = *state % max_len;
        let state = *state;
        Some(
            (0..len)
                .map(|i| (state.rotate_left((i % 64) as u32) & 0xff) as u8)
                .collect(),
        )
    });
    prefixes.chain(changed).chain(random)
}

/// Polls `done` every 5 ms until it holds; fails the test after 30 s.
/// Async, so that the runtime's other tasks (probes, reloads) run between
/// polls.
pub(crate) async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
