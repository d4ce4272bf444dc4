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
//! This is the one reader of a query's raw Client Subnet option. The
//! answer cache reads the OPT record of the queries it recognises with
//! [`from_options`], and the handler reads every other query's with
//! [`read_query`], which finds the OPT record and calls it; whatever fails
//! gets FORMERR, and what reads is the subnet the answer is tailored to
//! and echoes. hickory's own reading of the option is never used, so both
//! paths refuse exactly the same queries and place the same clients.

use crate::wire::{self, ECS};
use hickory_proto::rr::rdata::opt::ClientSubnet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

impl Ecs<'_> {
    /// The option as hickory's types hold it: the address padded with
    /// zeros to its family's length, scope 0.
    pub(crate) fn subnet(&self) -> ClientSubnet {
        let address = if self.family == 1 {
            let mut octets = [0u8; 4];
            octets[..self.address.len()].copy_from_slice(self.address);
            IpAddr::V4(Ipv4Addr::from(octets))
        } else {
            let mut octets = [0u8; 16];
            octets[..self.address.len()].copy_from_slice(self.address);
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        ClientSubnet::new(address, self.source_prefix, 0)
    }

    /// The whole option's size on the wire: code, length, family, the two
    /// prefix lengths and the address.
    pub(crate) fn wire_len(&self) -> usize {
        8 + self.address.len()
    }
}

/// The Client Subnet option of `message`, a query hickory has parsed (so
/// its sections read, and it has at most one OPT record), read from its
/// raw OPT record with [`from_options`]. A message whose records do not
/// read here has no option to judge: its well-formedness is hickory's to
/// decide.
pub(crate) fn read_query(message: &[u8]) -> Result<Option<Ecs<'_>>, EcsError> {
    match wire::opt_record(message).and_then(|opt| message.get(opt.data)) {
        Some(options) => from_options(options),
        None => Ok(None),
    }
}

/// The Client Subnet option among an OPT record's `options` (its RDATA),
/// checked with [`check_option`]; an error if it breaks RFC 7871 §6, is
/// cut short, or comes twice.
///
/// Options of other codes are not judged, even cut short; but when the
/// options do not run exactly to the record's end, hickory's parser drops
/// every one of them (RFC 6891 lets a server ignore what it cannot read),
/// so the query is answered as one without a subnet, and this says so
/// with `Ok(None)`: the answer and its echo must not depend on which
/// reader read the query.
pub(crate) fn from_options(mut options: &[u8]) -> Result<Option<Ecs<'_>>, EcsError> {
    let mut found = None;
    while let (Some(code), Some(length)) = (wire::u16_at(options, 0), wire::u16_at(options, 2)) {
        let length = usize::from(length);
        if code == ECS {
            if found.is_some() {
                return Err(EcsError::Repeated);
            }
            let data = options.get(4..4 + length).ok_or(EcsError::Truncated)?;
            found = Some(check_option(data)?);
        }
        match options.get(4 + length..) {
            Some(rest) => options = rest,
            None => return Ok(None),
        }
    }
    if options.is_empty() {
        Ok(found)
    } else {
        Ok(None)
    }
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
        let asked = query(&good);
        let read = read_query(&asked).unwrap().unwrap();
        assert_eq!((read.family, read.source_prefix), (1, 24));
        assert_eq!(read.subnet(), "81.2.69.0/24".parse().unwrap());
        assert_eq!(read.wire_len(), good.len());
        assert_eq!(read_query(&query(&[])), Ok(None));
        // Another option, and a cookie before the subnet.
        let mut two = with_code(10, &[1, 2, 3, 4, 5, 6, 7, 8]);
        two.extend_from_slice(&good);
        assert_eq!(read_query(&query(&two)), Ok(Some(read)));
        // An extra address octet, which hickory's reader never sees.
        let extra = with_code(ECS, &option(1, 24, 0, &[81, 2, 69, 7]));
        assert!(matches!(
            read_query(&query(&extra)),
            Err(EcsError::AddressLength { got: 4, .. })
        ));
        // Two subnets.
        let mut repeated = good.clone();
        repeated.extend_from_slice(&good);
        assert_eq!(read_query(&query(&repeated)), Err(EcsError::Repeated));
        // A subnet option longer than what is left of the record.
        let mut cut = good.clone();
        cut[3] += 1;
        assert_eq!(read_query(&query(&cut)), Err(EcsError::Truncated));
        // Another option cut short is not ours to judge.
        let mut other = with_code(10, &[1, 2, 3, 4]);
        other[3] = 9;
        assert_eq!(read_query(&query(&other)), Ok(None));
        // Without an OPT record, nothing to judge; nor in what does not read.
        let mut plain = query(&good);
        plain[11] = 1;
        assert_eq!(
            read_query(&plain[..plain.len() - 11 - good.len()]),
            Ok(None)
        );
        for len in 0..query(&extra).len() {
            let _ = read_query(&query(&extra)[..len]);
        }
    }

    /// Options that do not run exactly to the end of their record are all
    /// dropped by hickory's parser: a good subnet among them places no
    /// client, or the answer would differ with the reader.
    #[test]
    fn a_subnet_among_options_hickory_drops_is_not_used() {
        let good = with_code(ECS, &option(1, 24, 0, &[81, 2, 69]));
        let mut then_cut = good.clone();
        then_cut.extend_from_slice(&[0, 10, 0, 9, 1, 2]);
        assert_eq!(from_options(&then_cut), Ok(None));
        let mut then_stray = good.clone();
        then_stray.extend_from_slice(&[0, 10]);
        assert_eq!(from_options(&then_stray), Ok(None));
        assert!(from_options(&good).unwrap().is_some());
        // hickory agrees: it reads no subnet from either.
        for options in [then_cut, then_stray] {
            let message = query(&options);
            let parsed = hickory_proto::op::Message::from_vec(&message).unwrap();
            let edns = parsed.edns.unwrap();
            assert!(
                edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
                    .is_none()
            );
        }
    }
}
