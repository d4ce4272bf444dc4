//! A query's EDNS Client Subnet option, held to what RFC 7871 §6 says a
//! query's must be.
//!
//! Why this exists: hickory-proto reads the option leniently. It reads only
//! the address octets the source prefix needs and ignores any after them,
//! keeps address bits set past the prefix, and keeps a SCOPE PREFIX-LENGTH
//! a query must not have; and when an option runs past the end of its OPT
//! record it drops every option silently. An answer built from such a query
//! would echo the bad bits back, or be tailored to bits the client never
//! meant. RFC 7871 §6 asks for FORMERR instead, "as a signal to the
//! software developer making the request to fix their implementation", and
//! so does every other shape below.
//!
//! [`check_query`] reads the OPT record of a query hickory has already
//! parsed, from the query's raw bytes (the only place extra octets can be
//! seen), and [`check_option`] judges one option. The handler answers
//! FORMERR when either fails; the UDP answer cache reads options with
//! [`check_option`] too and sends anything it refuses to the handler, so
//! both paths refuse exactly the same queries.

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// EDNS option code of Client Subnet (RFC 7871).
pub(crate) const ECS: u16 = 8;

/// RR type OPT (RFC 6891).
const OPT: u16 = 41;

/// The DNS header's size.
const HEADER: usize = 12;

/// A Client Subnet option as RFC 7871 §6 says a query's must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ecs<'a> {
    /// 1 (IPv4) or 2 (IPv6).
    pub family: u16,
    /// At most the family's address length.
    pub source_prefix: u8,
    /// Exactly ⌈source prefix / 8⌉ octets, no bit set past the prefix.
    pub address: &'a [u8],
}

/// How a query's Client Subnet option breaks RFC 7871 §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// Shorter than FAMILY and the two prefix lengths, or running past
    /// the end of its OPT record.
    #[error("the Client Subnet option is cut short")]
    Truncated,
    /// Neither IPv4 (1) nor IPv6 (2).
    #[error("address family {0} is neither IPv4 (1) nor IPv6 (2)")]
    UnknownFamily(u16),
    /// A SOURCE PREFIX-LENGTH longer than the family's addresses.
    #[error("a source prefix of {prefix} bits is longer than the family's {bits}")]
    PrefixTooLong {
        /// The option's source prefix.
        prefix: u8,
        /// The family's address length in bits.
        bits: u8,
    },
    /// A SCOPE PREFIX-LENGTH other than 0, which only replies may carry.
    #[error("a query's scope prefix must be 0, not {0}")]
    ScopeInQuery(u8),
    /// Too few or too many ADDRESS octets for the source prefix.
    #[error("a /{prefix} needs {expected} address octets, not {got}")]
    AddressLength {
        /// The option's source prefix.
        prefix: u8,
        /// ⌈prefix / 8⌉.
        expected: usize,
        /// What the option holds.
        got: usize,
    },
    /// ADDRESS bits set past the source prefix.
    #[error("address bits are set past the /{0} source prefix")]
    BitsPastPrefix(u8),
    /// More than one Client Subnet option: which one is the client?
    #[error("more than one Client Subnet option")]
    Repeated,
}

/// Checks one Client Subnet option's data (what follows its code and
/// length) and reads it.
pub(crate) fn check_option(data: &[u8]) -> Result<Ecs<'_>, EcsError> {
    let (Some(family), Some(&source_prefix), Some(&scope_prefix), Some(address)) = (
        data.get(..2).map(|f| u16::from_be_bytes([f[0], f[1]])),
        data.get(2),
        data.get(3),
        data.get(4..),
    ) else {
        return Err(EcsError::Truncated);
    };
    let bits = match family {
        1 => 32,
        2 => 128,
        other => return Err(EcsError::UnknownFamily(other)),
    };
    if source_prefix > bits {
        return Err(EcsError::PrefixTooLong {
            prefix: source_prefix,
            bits,
        });
    }
    if scope_prefix != 0 {
        return Err(EcsError::ScopeInQuery(scope_prefix));
    }
    let expected = usize::from(source_prefix).div_ceil(8);
    if address.len() != expected {
        return Err(EcsError::AddressLength {
            prefix: source_prefix,
            expected,
            got: address.len(),
        });
    }
    let used = source_prefix % 8;
    if let Some(&last) = address.last()
        && used != 0
        && last & (0xff >> used) != 0
    {
        return Err(EcsError::BitsPastPrefix(source_prefix));
    }
    Ok(Ecs {
        family,
        source_prefix,
        address,
    })
}

/// Checks every Client Subnet option in the OPT record of `message`, a
/// query hickory has parsed (so its sections read, and it has at most one
/// OPT record). A message whose records do not read here has no option
/// to judge: its well-formedness is hickory's to decide.
pub(crate) fn check_query(message: &[u8]) -> Result<(), EcsError> {
    match opt_options(message) {
        Some(options) => check_options(options),
        None => Ok(()),
    }
}

/// The options of the OPT record in `message`, if it has one that reads.
fn opt_options(message: &[u8]) -> Option<&[u8]> {
    let count = |at: usize| {
        message
            .get(at..at + 2)
            .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])))
    };
    let (questions, records) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let mut decoder = BinDecoder::new(message);
    decoder.read_slice(HEADER).ok()?;
    for _ in 0..questions {
        Name::read(&mut decoder).ok()?;
        decoder.read_slice(4).ok()?;
    }
    for _ in 0..records {
        Name::read(&mut decoder).ok()?;
        let rtype = decoder.read_u16().ok()?.unverified(/* any type */);
        // CLASS and TTL.
        decoder.read_slice(6).ok()?;
        let length = decoder.read_u16().ok()?.unverified(/* bounded by read_slice */);
        let data = decoder
            .read_slice(usize::from(length))
            .ok()?
            .unverified(/* only read, bounds-checked */);
        if rtype == OPT {
            return Some(data);
        }
    }
    None
}

/// Checks the Client Subnet options among an OPT record's `options`.
/// Options of other codes are not judged, even cut short (hickory then
/// ignores the options, as RFC 6891 lets it).
fn check_options(mut options: &[u8]) -> Result<(), EcsError> {
    let mut seen = false;
    while let (Some(code), Some(length)) = (options.get(..2), options.get(2..4)) {
        let code = u16::from_be_bytes([code[0], code[1]]);
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        let data = options.get(4..4 + length);
        if code == ECS {
            if seen {
                return Err(EcsError::Repeated);
            }
            seen = true;
            check_option(data.ok_or(EcsError::Truncated)?)?;
        }
        match options.get(4 + length..) {
            Some(rest) => options = rest,
            None => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
        let mut data = family.to_be_bytes().to_vec();
        data.extend_from_slice(&[source, scope]);
        data.extend_from_slice(address);
        data
    }

    /// A query for `x.` A with an OPT record holding `options`, and one
    /// answer record before it (so the walk must skip a record), its
    /// name compressed.
    fn query(options: &[u8]) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 2];
        q.extend_from_slice(&[1, b'x', 0, 0, 1, 0, 1]);
        // An A record named by a pointer to the question's name.
        q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
        q.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
        q.extend_from_slice(options);
        q
    }

    fn with_code(code: u16, data: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    #[test]
    fn well_formed_options_are_read() {
        let data = option(1, 24, 0, &[81, 2, 69]);
        let ecs = check_option(&data).unwrap();
        assert_eq!((ecs.family, ecs.source_prefix), (1, 24));
        assert_eq!(ecs.address, [81, 2, 69]);
        assert!(check_option(&option(1, 20, 0, &[81, 2, 0x40])).is_ok());
        assert!(check_option(&option(1, 0, 0, &[])).is_ok());
        assert!(check_option(&option(1, 32, 0, &[1, 2, 3, 4])).is_ok());
        assert!(check_option(&option(2, 56, 0, &[0x20, 1, 0xd, 0xb8, 0, 0, 0])).is_ok());
        assert!(check_option(&option(2, 128, 0, &[0xff; 16])).is_ok());
    }

    #[test]
    fn every_malformed_shape_is_named() {
        use EcsError::*;
        for (data, error) in [
            // The hostile review's query: /20 with bits 20-23 set.
            (option(1, 20, 0, &[51, 2, 0x4f]), BitsPastPrefix(20)),
            (option(1, 23, 0, &[81, 2, 69]), BitsPastPrefix(23)),
            (option(2, 1, 0, &[0xc0]), BitsPastPrefix(1)),
            (
                option(1, 24, 0, &[81, 2, 69, 0]),
                AddressLength {
                    prefix: 24,
                    expected: 3,
                    got: 4,
                },
            ),
            (
                option(1, 24, 0, &[81, 2]),
                AddressLength {
                    prefix: 24,
                    expected: 3,
                    got: 2,
                },
            ),
            (
                option(1, 0, 0, &[0]),
                AddressLength {
                    prefix: 0,
                    expected: 0,
                    got: 1,
                },
            ),
            (option(1, 24, 8, &[81, 2, 69]), ScopeInQuery(8)),
            (option(3, 8, 0, &[1]), UnknownFamily(3)),
            (option(0, 0, 0, &[]), UnknownFamily(0)),
            (
                option(1, 33, 0, &[1, 2, 3, 4, 5]),
                PrefixTooLong {
                    prefix: 33,
                    bits: 32,
                },
            ),
            (
                option(2, 129, 0, &[0; 17]),
                PrefixTooLong {
                    prefix: 129,
                    bits: 128,
                },
            ),
            (vec![0, 1, 24], Truncated),
            (vec![], Truncated),
        ] {
            assert_eq!(check_option(&data), Err(error), "{data:?}");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn queries_are_judged_by_their_raw_opt_record() {
        let good = with_code(ECS, &option(1, 24, 0, &[81, 2, 69]));
        assert_eq!(check_query(&query(&good)), Ok(()));
        assert_eq!(check_query(&query(&[])), Ok(()));
        // Another option, and a cookie before the subnet.
        let mut two = with_code(10, &[1, 2, 3, 4, 5, 6, 7, 8]);
        two.extend_from_slice(&good);
        assert_eq!(check_query(&query(&two)), Ok(()));
        // An extra address octet, which hickory's reader never sees.
        let extra = with_code(ECS, &option(1, 24, 0, &[81, 2, 69, 7]));
        assert!(matches!(
            check_query(&query(&extra)),
            Err(EcsError::AddressLength { got: 4, .. })
        ));
        // Two subnets.
        let mut repeated = good.clone();
        repeated.extend_from_slice(&good);
        assert_eq!(check_query(&query(&repeated)), Err(EcsError::Repeated));
        // A subnet option longer than what is left of the record.
        let mut cut = good.clone();
        cut[3] += 1;
        assert_eq!(check_query(&query(&cut)), Err(EcsError::Truncated));
        // Another option cut short is not ours to judge.
        let mut other = with_code(10, &[1, 2, 3, 4]);
        other[3] = 9;
        assert_eq!(check_query(&query(&other)), Ok(()));
        // Without an OPT record, nothing to judge; nor in what does not read.
        let mut plain = query(&good);
        plain[11] = 1;
        assert_eq!(check_query(&plain[..plain.len() - 11 - good.len()]), Ok(()));
        for len in 0..query(&extra).len() {
            let _ = check_query(&query(&extra)[..len]);
        }
    }
}
