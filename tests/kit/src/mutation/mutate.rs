//! The mutators: how one input becomes the next.
//!
//! Most inputs are an input from the pool with one to four mutations
//! stacked, each aimed at the structure [`wire::scan`] found where it can
//! be (label lengths, section counts, record and option lengths, the OPT
//! record) and at random bytes otherwise; some are random bytes. The
//! driver also sends recent inputs [`again`] with a new ID and ECS
//! address, so that the answer cache has something to serve.

use super::wire::{self, HEADER, Layout, OPT, set_u16, u16_at};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

/// The generator every choice comes from; one seed replays a whole run.
pub type Rng = ChaCha8Rng;

/// The largest input: what the UDP loop reads.
pub const MAX_INPUT: usize = 4096;

/// Bytes that sit on the edges of DNS fields: label length limits (63,
/// 64), the compression-pointer tag (0xc0), signs and extremes.
const BYTES: [u8; 9] = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff];

/// 16-bit values on the edges of counts, sizes and lengths: 512 and 1232
/// (the UDP payload limits) and their neighbours.
const WORDS: [u16; 14] = [
    0, 1, 2, 0x7f, 0xff, 0x100, 0x1ff, 0x200, 0x201, 0x4d0, 0x4d1, 0x7fff, 0x8000, 0xffff,
];

/// How an input was made, for the summary and failure reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// Random bytes.
    Random,
    /// A pool input sent again with a new ID (and ECS address).
    Again,
    /// A pool input with these mutations applied, in order.
    Mutated(Vec<&'static str>),
}

/// The next input, made from `pool`: random bytes, or an input of the
/// pool with one mutation (half the time) to four.
pub fn next(rng: &mut Rng, pool: &[Vec<u8>]) -> (Vec<u8>, Made) {
    let (mut input, made) = if pool.is_empty() || rng.random_bool(0.07) {
        (random(rng), Made::Random)
    } else {
        let mut input = pick(rng, pool).clone();
        let mut applied = Vec::new();
        let count = match rng.random_range(0..4) {
            0 | 1 => 1,
            2 => 2,
            _ => rng.random_range(3..=4),
        };
        for _ in 0..count {
            applied.push(mutate(rng, &mut input, pool));
        }
        (input, Made::Mutated(applied))
    };
    input.truncate(MAX_INPUT);
    (input, made)
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Random bytes: mostly short (where the header and question are), up to
/// the largest datagram read; half of them with a query's header flags and
/// one question, so that they get past the first checks.
fn random(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.random_bool(0.6) {
        rng.random_range(0..=64)
    } else {
        rng.random_range(0..=MAX_INPUT)
    };
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes[..]);
    if len >= HEADER && rng.random_bool(0.5) {
        bytes[2] &= 0x07;
        set_u16(&mut bytes, 4, 1);
    }
    bytes
}

/// `input` with a new ID and, if it has Client Subnet options, new
/// addresses in them (usually with no bits set past the prefix, as a
/// well-behaved resolver sends them).
pub fn again(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut input = input.to_vec();
    let id: u16 = rng.random();
    set_u16(&mut input, 0, id);
    let layout = wire::scan(&input);
    for subnet in &layout.subnets {
        let Some(address) = input.get_mut(subnet.address..subnet.address + subnet.address_len)
        else {
            continue;
        };
        rng.fill(&mut address[..]);
        let Some(&prefix) = input.get(subnet.family + 2) else {
            continue;
        };
        if rng.random_bool(0.9) {
            mask(
                &mut input[subnet.address..subnet.address + subnet.address_len],
                prefix,
            );
        }
    }
    input
}

/// Clears the bits of `address` past `prefix`.
fn mask(address: &mut [u8], prefix: u8) {
    for (i, byte) in address.iter_mut().enumerate() {
        let kept = usize::from(prefix).saturating_sub(i * 8).min(8);
        *byte &= !(0xffu8.checked_shr(kept as u32).unwrap_or(0));
    }
}

/// A position worth changing: a field boundary found by the scan most of
/// the time, any byte otherwise. `None` for an empty input.
fn position(rng: &mut Rng, input: &[u8], layout: &Layout) -> Option<usize> {
    if input.is_empty() {
        return None;
    }
    let aimed: Vec<usize> = layout
        .boundaries
        .iter()
        .chain(&layout.labels)
        .copied()
        .filter(|&at| at < input.len())
        .collect();
    if !aimed.is_empty() && rng.random_bool(0.5) {
        Some(*pick(rng, &aimed))
    } else {
        Some(rng.random_range(0..input.len()))
    }
}

/// A place to cut at: a boundary, give or take a byte, or anywhere.
fn cut(rng: &mut Rng, input: &[u8], layout: &Layout) -> usize {
    if !layout.boundaries.is_empty() && rng.random_bool(0.7) {
        let at = *pick(rng, &layout.boundaries) + rng.random_range(0..=2);
        at.saturating_sub(1).min(input.len())
    } else {
        rng.random_range(0..=input.len())
    }
}

/// Applies one mutation to `input`; returns its name.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) -> &'static str {
    let layout = wire::scan(input);
    match rng.random_range(0..19) {
        0 => {
            for _ in 0..rng.random_range(1..=8) {
                if let Some(at) = position(rng, input, &layout) {
                    input[at] ^= 1 << rng.random_range(0..8);
                }
            }
            "bit flips"
        }
        1 => {
            if let Some(at) = position(rng, input, &layout) {
                input[at] = *pick(rng, &BYTES);
            }
            "interesting byte"
        }
        2 => {
            if let Some(at) = position(rng, input, &layout) {
                let word = *pick(rng, &WORDS);
                set_u16(input, at, word);
            }
            "interesting word"
        }
        3 => {
            let at = cut(rng, input, &layout);
            input.truncate(at);
            "truncation"
        }
        4 => {
            let len = rng.random_range(1..=64);
            if rng.random_bool(0.5) {
                let mut garbage = vec![0u8; len];
                rng.fill(&mut garbage[..]);
                input.extend_from_slice(&garbage);
            } else {
                let byte = *pick(rng, &BYTES);
                input.extend(std::iter::repeat_n(byte, len));
            }
            "garbage appended"
        }
        5 => {
            let other = pick(rng, pool);
            let at = cut(rng, input, &layout);
            let from = cut(rng, other, &wire::scan(other));
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
            "splice"
        }
        6 => {
            let field = *pick(rng, &[4, 6, 8, 10]);
            let count = u16_at(input, field).unwrap_or(0);
            let value = match rng.random_range(0..6) {
                0 => count.wrapping_add(1),
                1 => count.wrapping_sub(1),
                2 => 0,
                3 => 0xffff,
                4 => rng.random_range(0..=8),
                _ => rng.random(),
            };
            set_u16(input, field, value);
            "section count"
        }
        7 => {
            if !layout.labels.is_empty() {
                let at = *pick(rng, &layout.labels);
                let current = input[at];
                let remaining = input.len() - at;
                input[at] = match rng.random_range(0..5) {
                    0 => *pick(rng, &BYTES),
                    1 => current.wrapping_add(1),
                    2 => current.wrapping_sub(1),
                    3 => u8::try_from(remaining).unwrap_or(0xff),
                    _ => rng.random(),
                };
            }
            "label length"
        }
        8 => {
            pointer(rng, input, &layout);
            "compression pointer"
        }
        9 => {
            if !layout.options.is_empty() {
                let at = *pick(rng, &layout.options);
                let remaining = input.len().saturating_sub(at + 4);
                let length = if rng.random_bool(0.8) {
                    remaining + rng.random_range(1..=300)
                } else {
                    0xffff
                };
                set_u16(input, at + 2, u16::try_from(length).unwrap_or(0xffff));
            }
            "EDNS option length past the record"
        }
        10 => {
            if !layout.rdlengths.is_empty() {
                let at = *pick(rng, &layout.rdlengths);
                let current = u16_at(input, at).unwrap_or(0);
                let remaining = input.len().saturating_sub(at + 2);
                let value = match rng.random_range(0..5) {
                    0 => 0,
                    1 => current.wrapping_sub(1),
                    2 => current.wrapping_add(1),
                    3 => u16::try_from(remaining + 1).unwrap_or(0xffff),
                    _ => 0xffff,
                };
                set_u16(input, at, value);
            }
            "RDLENGTH"
        }
        11 => {
            // An OPT record in the answer or authority section.
            let record = opt_record(rng);
            let section = rng.random_range(0..2);
            let at = layout
                .section_ends
                .get(section)
                .copied()
                .unwrap_or(input.len());
            insert(input, at, &record);
            bump(input, [6, 8][section]);
            "OPT in the wrong section"
        }
        12 => {
            let record = opt_record(rng);
            let at = layout.section_ends.get(3).copied().unwrap_or(input.len());
            insert(input, at, &record);
            bump(input, 10);
            "another OPT"
        }
        13 => {
            if input.len() >= 4 {
                match rng.random_range(0..6) {
                    0 => input[2] = (input[2] & 0x87) | (rng.random_range(0..16u8) << 3),
                    1 => input[2] ^= 0x80,
                    2 => input[2] ^= 0x06,
                    3 => input[3] ^= 0x40,
                    4 => input[3] ^= 0x30,
                    _ => input[3] = (input[3] & 0xf0) | rng.random_range(0..16u8),
                }
            }
            "header flags"
        }
        14 => {
            if !layout.opts.is_empty() {
                let opt = *pick(rng, &layout.opts);
                match rng.random_range(0..4) {
                    0 => {
                        let size = *pick(rng, &[0, 1, 511, 512, 513, 1231, 1232, 1233, 4096]);
                        let size = if rng.random_bool(0.2) {
                            rng.random()
                        } else {
                            size
                        };
                        set_u16(input, opt.class, size);
                    }
                    1 => {
                        if let Some(version) = input.get_mut(opt.ttl + 1) {
                            *version = *pick(rng, &[1, 2, 255]);
                        }
                    }
                    2 => {
                        if let Some(rcode) = input.get_mut(opt.ttl) {
                            *rcode = rng.random();
                        }
                    }
                    _ => {
                        if let Some(flags) = input.get_mut(opt.ttl + 2) {
                            *flags ^= *pick(rng, &[0x80, 0x40, 0x01]);
                        }
                    }
                }
            }
            "OPT fields"
        }
        15 => {
            if let Some(at) = position(rng, input, &layout) {
                let end = (at + rng.random_range(1..=16)).min(input.len());
                input.drain(at..end);
            }
            "bytes deleted"
        }
        16 => {
            if let Some(at) = position(rng, input, &layout) {
                let end = (at + rng.random_range(1..=32)).min(input.len());
                let chunk = input[at..end].to_vec();
                let to = rng.random_range(0..=input.len());
                insert(input, to, &chunk);
            }
            "bytes duplicated"
        }
        17 => {
            subnet(rng, input, &layout);
            "Client Subnet rewritten"
        }
        _ => {
            if let Some(end) = wire::name_end(input, HEADER)
                && end + 4 <= input.len()
            {
                if rng.random_bool(0.6) {
                    let rtype = *pick(
                        rng,
                        &[0, 1, 2, 5, 6, 15, 16, 28, 41, 250, 251, 252, 255, 0xffff],
                    );
                    set_u16(input, end, rtype);
                } else {
                    let class = *pick(rng, &[0, 1, 3, 4, 254, 255, 0xffff]);
                    set_u16(input, end + 2, class);
                }
            }
            "question type or class"
        }
    }
}

/// Inserts `bytes` at `at` (or at the end).
fn insert(input: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(input.len());
    input.splice(at..at, bytes.iter().copied());
}

/// Adds one to the count at `field`.
fn bump(input: &mut [u8], field: usize) {
    let count = u16_at(input, field).unwrap_or(0);
    set_u16(input, field, count.wrapping_add(1));
}

/// An OPT record, with a Client Subnet option half of the time.
fn opt_record(rng: &mut Rng) -> Vec<u8> {
    let mut record = vec![0, 0, OPT as u8];
    let size = *pick(rng, &WORDS);
    record.extend_from_slice(&size.to_be_bytes());
    record.extend_from_slice(&[0, 0, 0, 0]);
    if rng.random_bool(0.5) {
        record.extend_from_slice(&[0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69]);
    } else {
        record.extend_from_slice(&[0, 0]);
    }
    record
}

/// Replaces a name with a compression pointer: backwards, forwards, at
/// itself, into the header, past the end, into the middle of something,
/// or two names pointing at each other.
fn pointer(rng: &mut Rng, input: &mut Vec<u8>, layout: &Layout) {
    let names: Vec<usize> = if layout.names.is_empty() {
        vec![HEADER.min(input.len())]
    } else {
        layout.names.clone()
    };
    let at = *pick(rng, &names);
    let end = wire::name_end(input, at).unwrap_or(input.len());
    let target = match rng.random_range(0..7) {
        0 => at + 2 + rng.random_range(0..32),
        1 => at,
        2 => rng.random_range(0..HEADER),
        3 => input.len() + rng.random_range(0..100),
        4 => rng.random_range(0..input.len().max(1)),
        5 => HEADER,
        _ => {
            // A loop: two names, each a pointer to the other.
            if let Some(&other) = names.iter().find(|&&n| n > at) {
                let other_end = wire::name_end(input, other).unwrap_or(input.len());
                replace(input, other, other_end, at);
                let other_now = other.saturating_sub(end.saturating_sub(at + 2));
                replace(input, at, end, other_now);
                return;
            }
            at
        }
    };
    replace(input, at, end, target);
}

/// Puts a pointer to `target` in place of `input[at..end]`.
fn replace(input: &mut Vec<u8>, at: usize, end: usize, target: usize) {
    let at = at.min(input.len());
    let end = end.clamp(at, input.len());
    let target = target & 0x3fff;
    let pointer = [0xc0 | (target >> 8) as u8, (target & 0xff) as u8];
    input.splice(at..end, pointer);
}

/// Rewrites the query's Client Subnet option: any family, any source and
/// scope prefix, an address as long as the prefix says or not. Replaces
/// the options of the first OPT record (or adds to them), or adds an OPT
/// record holding it.
fn subnet(rng: &mut Rng, input: &mut Vec<u8>, layout: &Layout) {
    let family = *pick(rng, &[1u16, 1, 2, 2, 0, 3, 0xffff]);
    let source = if rng.random_bool(0.7) {
        *pick(
            rng,
            &[
                0u8, 1, 7, 8, 9, 24, 25, 31, 32, 33, 48, 56, 64, 127, 128, 129, 255,
            ],
        )
    } else {
        rng.random()
    };
    let scope = if rng.random_bool(0.7) {
        0
    } else {
        rng.random()
    };
    let len = if rng.random_bool(0.8) {
        usize::from(source).div_ceil(8)
    } else {
        rng.random_range(0..=20)
    };
    let mut address = vec![0u8; len];
    rng.fill(&mut address[..]);
    if rng.random_bool(0.7) {
        mask(&mut address, source);
    }
    let mut option = vec![0, 8];
    option.extend_from_slice(&u16::try_from(4 + len).unwrap_or(0).to_be_bytes());
    option.extend_from_slice(&family.to_be_bytes());
    option.extend_from_slice(&[source, scope]);
    option.extend_from_slice(&address);
    match layout.opts.first() {
        Some(opt) if opt.rdata + opt.rdlength <= input.len() => {
            let (start, end) = if rng.random_bool(0.8) {
                (opt.rdata, opt.rdata + opt.rdlength)
            } else {
                (opt.rdata + opt.rdlength, opt.rdata + opt.rdlength)
            };
            input.splice(start..end, option.iter().copied());
            let rdlength = opt.rdlength - (end - start) + option.len();
            set_u16(
                input,
                opt.rdata - 2,
                u16::try_from(rdlength).unwrap_or(0xffff),
            );
        }
        _ => {
            let mut record = vec![0, 0, OPT as u8, 0x04, 0xd0, 0, 0, 0, 0];
            record.extend_from_slice(&u16::try_from(option.len()).unwrap_or(0).to_be_bytes());
            record.extend_from_slice(&option);
            input.extend_from_slice(&record);
            bump(input, 10);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn masking_clears_the_bits_past_the_prefix() {
        let mut address = [0xff; 4];
        mask(&mut address, 20);
        assert_eq!(address, [0xff, 0xff, 0xf0, 0]);
        let mut address = [0xff; 2];
        mask(&mut address, 0);
        assert_eq!(address, [0, 0]);
    }

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let pool = super::super::corpus::seeds();
        let run = |seed| {
            let mut rng = Rng::seed_from_u64(seed);
            (0..200)
                .map(|_| next(&mut rng, &pool).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
