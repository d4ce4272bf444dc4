//! Response-rate limiting of UDP replies, per client network
//! (`[geodns.rate_limit]`, off unless configured).
//!
//! Why: an authoritative server answers anyone, and the source address of
//! a UDP query can be forged. Queries sent "from" a victim's address make
//! the server send its replies, larger than the queries, to the victim:
//! reflection, with amplification. Limiting how many replies one network
//! gets bounds what anyone can make this server send to a victim, while
//! real clients in a limited network still get through: every `slip`th
//! limited reply is sent truncated (TC, no records, about the size of the
//! query, so it amplifies nothing), which tells a real resolver to ask
//! again over TCP. TCP cannot be spoofed and is never limited.
//!
//! The model is a token bucket per network (the source address cut to its
//! first `ipv4_prefix_length` or `ipv6_prefix_length` bits) holding `burst`
//! replies and refilled at `responses_per_second`, computed as GCRA: each
//! network keeps one time, when its bucket will be full again, so taking a
//! reply from it is a comparison and an addition. The bucket's size
//! defaults to one second of replies rather than BIND's 15-second window:
//! every extra second of credit is a second of full-size replies that a
//! spoofing attacker gets from each network before it is limited.
//!
//! One [`RateLimiter`] is shared by every UDP worker (a client's datagrams
//! land on any of them) and belongs to a snapshot, so a reload starts
//! afresh with the new limits. Its memory is bounded under a flood of
//! spoofed sources: at most [`TRACKED_NETWORKS`] networks are tracked, in a
//! quick_cache whose eviction keeps networks seen again and again (a
//! victim's, under attack) over networks seen once (random spoofed ones).
//! A network that is evicted starts again with a full bucket.

use crate::wire;
use ipnet::IpNet;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The most networks tracked at once: about 8.5 MB of them (measured by
/// `a_flood_of_spoofed_sources_stays_bounded`).
pub const TRACKED_NETWORKS: usize = 100_000;

/// How long a worker waits for another worker that is adding the same
/// network; only ever the time of one insertion. Past it, the reply is sent.
const INSERTION_WAIT: Duration = Duration::from_millis(5);

/// What to do with one UDP reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: send it.
    Send,
    /// Over the limit: send nothing.
    Drop,
    /// Over the limit: send it truncated ([`truncate`]).
    Slip,
}

/// What the limiter remembers of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Account {
    /// When the network's bucket will be full again, in nanoseconds since
    /// the limiter's epoch (GCRA's "theoretical arrival time").
    full_at: u64,
    /// Limited replies since the last slipped one.
    limited: u32,
}

/// The rate limit of one loaded config, shared by every UDP worker.
pub struct RateLimiter {
    networks: Cache<IpAddr, Account>,
    /// Nanoseconds one reply's token takes to come back.
    interval: u64,
    /// How far ahead of now `full_at` may be for a reply to be sent:
    /// `burst - 1` intervals.
    tolerance: u64,
    slip: u32,
    ipv4_prefix_length: u8,
    ipv6_prefix_length: u8,
    epoch: Instant,
}

impl RateLimiter {
    /// A limiter for `limit`, every network's bucket full.
    pub fn new(limit: &config::RateLimit) -> RateLimiter {
        let interval = 1_000_000_000 / u64::from(limit.responses_per_second.max(1));
        RateLimiter {
            networks: Cache::new(TRACKED_NETWORKS),
            interval,
            tolerance: interval.saturating_mul(u64::from(limit.burst.max(1)) - 1),
            slip: limit.slip,
            ipv4_prefix_length: limit.ipv4_prefix_length.min(32),
            ipv6_prefix_length: limit.ipv6_prefix_length.min(128),
            epoch: Instant::now(),
        }
    }

    /// Takes one reply to `source` at `now` from its network's bucket.
    pub fn check(&self, source: IpAddr, now: Instant) -> Verdict {
        let at =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.check_at(source, at)
    }

    /// [`RateLimiter::check`] at `at` nanoseconds after the epoch.
    fn check_at(&self, source: IpAddr, at: u64) -> Verdict {
        let network = self.network(source);
        let found = self
            .networks
            .entry(&network, Some(INSERTION_WAIT), |_, account| {
                EntryAction::Retain(self.charge(account, at))
            });
        match found {
            EntryResult::Retained(verdict) => verdict,
            EntryResult::Vacant(guard) => {
                let mut account = Account {
                    full_at: at,
                    limited: 0,
                };
                let verdict = self.charge(&mut account, at);
                // Err only if the placeholder was removed meanwhile; the
                // network then starts afresh next time.
                let _ = guard.insert(account);
                verdict
            }
            // The callback only ever retains, so this is a timeout: another
            // worker is adding this network right now. Let the reply go.
            _ => Verdict::Send,
        }
    }

    /// The bucket arithmetic: a reply is sent if the bucket would be full
    /// again within `tolerance`, and then takes one interval's worth.
    fn charge(&self, account: &mut Account, at: u64) -> Verdict {
        let full_at = account.full_at.max(at);
        if full_at - at <= self.tolerance {
            account.full_at = full_at.saturating_add(self.interval);
            return Verdict::Send;
        }
        if self.slip == 0 {
            return Verdict::Drop;
        }
        account.limited += 1;
        if account.limited >= self.slip {
            account.limited = 0;
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// The network `source` is counted in. IPv4-mapped IPv6 sources (a
    /// dual-stack socket) count as the IPv4 address they are.
    fn network(&self, source: IpAddr) -> IpAddr {
        let source = source.to_canonical();
        let prefix = match source {
            IpAddr::V4(_) => self.ipv4_prefix_length,
            IpAddr::V6(_) => self.ipv6_prefix_length,
        };
        // Both lengths are capped to their family's in `new`, so this
        // never falls back to the whole address.
        IpNet::new(source, prefix).map_or(source, |net| net.network())
    }

    /// How many networks are tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.networks.len()
    }
}

/// Turns `reply` in place into its truncated form, the one a slip sends:
/// the same header (ID, flags, rcode) with TC set, the question, the OPT
/// record if it has one (it carries the EDNS version, the extended rcode
/// and the echoed Client Subnet, and RFC 6891 wants it in every reply to a
/// query that had one), and no other records.
///
/// `reply` was built by hickory, but it is read as untrusted bytes, with
/// bounds checks; `None` (nothing to send) if it cannot be read.
pub fn truncate(reply: &mut Vec<u8>) -> Option<()> {
    let [questions, answers, authorities, additionals] = wire::counts(reply)?;
    let question_end = wire::questions_end(reply, questions)?;
    let additional_from = usize::from(answers) + usize::from(authorities);
    let records = additional_from + usize::from(additionals);
    let mut at = question_end;
    let mut opt = None;
    for index in 0..records {
        let record = wire::record(reply, at)?;
        at = record.end();
        if index >= additional_from && record.rtype == wire::OPT && opt.is_none() {
            opt = Some(record.start..record.end());
        }
    }
    // The OPT record's owner is the root and its data holds no names, so
    // it means the same anywhere in the message; and the question, the
    // only thing before it, never points into what is cut.
    let opt_length = match opt {
        Some(range) => {
            let length = range.len();
            reply.copy_within(range, question_end);
            length
        }
        None => 0,
    };
    reply.truncate(question_end.checked_add(opt_length)?);
    *reply.get_mut(2)? |= wire::TC;
    reply
        .get_mut(6..wire::HEADER)?
        .copy_from_slice(&[0, 0, 0, 0, 0, u8::from(opt_length > 0)]);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn limiter(responses_per_second: u32, burst: u32, slip: u32) -> RateLimiter {
        RateLimiter::new(&config::RateLimit {
            responses_per_second,
            burst,
            slip,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// How many of `n` replies at `at` are sent.
    fn sent(limiter: &RateLimiter, source: &str, n: usize, at: u64) -> usize {
        (0..n)
            .filter(|_| limiter.check_at(ip(source), at) == Verdict::Send)
            .count()
    }

    #[test]
    fn a_network_gets_its_burst_at_once_then_its_rate() {
        // 10 per second: one token every 100 ms; 5 at once.
        let limiter = limiter(10, 5, 2);
        assert_eq!(sent(&limiter, "192.0.2.1", 20, 0), 5);
        // 50 ms later, half a token: nothing.
        assert_eq!(sent(&limiter, "192.0.2.1", 5, 50 * MS), 0);
        // 100 ms after the start, one token came back.
        assert_eq!(sent(&limiter, "192.0.2.1", 5, 100 * MS), 1);
        assert_eq!(sent(&limiter, "192.0.2.1", 5, 150 * MS), 0);
        // A second later (ten tokens came back), the bucket is full: five,
        // never more.
        assert_eq!(sent(&limiter, "192.0.2.1", 20, 1100 * MS), 5);
        // Sustained: one reply per 100 ms, however many are asked for.
        let mut total = 0;
        for tick in 1..=30 {
            total += sent(&limiter, "192.0.2.1", 4, 1100 * MS + tick * 100 * MS);
        }
        assert_eq!(total, 30);
        // A burst of 1: one reply per interval and no more.
        let strict = super::tests::limiter(1, 1, 0);
        assert_eq!(sent(&strict, "192.0.2.1", 3, 0), 1);
        assert_eq!(sent(&strict, "192.0.2.1", 3, 999 * MS), 0);
        assert_eq!(sent(&strict, "192.0.2.1", 3, 1000 * MS), 1);
    }

    #[test]
    fn every_slipth_limited_reply_is_slipped_and_the_rest_dropped() {
        let verdicts = |slip: u32| -> Vec<Verdict> {
            let limiter = limiter(1, 1, slip);
            (0..7)
                .map(|_| limiter.check_at(ip("192.0.2.1"), 0))
                .collect()
        };
        use Verdict::{Drop as D, Send as S, Slip as T};
        assert_eq!(verdicts(2), [S, D, T, D, T, D, T]);
        assert_eq!(verdicts(1), [S, T, T, T, T, T, T]);
        assert_eq!(verdicts(3), [S, D, D, T, D, D, T]);
        assert_eq!(verdicts(0), [S, D, D, D, D, D, D]);
    }

    #[test]
    fn sources_share_a_bucket_by_network_prefix() {
        let limiter = limiter(1, 2, 0);
        // One /24: its addresses share two replies.
        assert_eq!(sent(&limiter, "192.0.2.1", 1, 0), 1);
        assert_eq!(sent(&limiter, "192.0.2.200", 1, 0), 1);
        assert_eq!(sent(&limiter, "192.0.2.77", 1, 0), 0);
        // The same address seen through a dual-stack socket.
        assert_eq!(sent(&limiter, "::ffff:192.0.2.9", 1, 0), 0);
        // The next /24 has its own bucket.
        assert_eq!(sent(&limiter, "192.0.3.1", 5, 0), 2);
        // IPv6: one /56 (2001:db8:0:0000–00ff::) shares, the next does not.
        assert_eq!(sent(&limiter, "2001:db8:0:1::1", 1, 0), 1);
        assert_eq!(sent(&limiter, "2001:db8:0:ff::1", 1, 0), 1);
        assert_eq!(sent(&limiter, "2001:db8::53", 1, 0), 0);
        assert_eq!(sent(&limiter, "2001:db8:0:100::1", 5, 0), 2);

        // Other prefix lengths.
        let wide = RateLimiter::new(&config::RateLimit {
            responses_per_second: 1,
            burst: 1,
            slip: 0,
            ipv4_prefix_length: 8,
            ipv6_prefix_length: 128,
        });
        assert_eq!(sent(&wide, "10.1.2.3", 1, 0), 1);
        assert_eq!(sent(&wide, "10.200.0.1", 1, 0), 0);
        assert_eq!(sent(&wide, "2001:db8::1", 1, 0), 1);
        assert_eq!(sent(&wide, "2001:db8::2", 1, 0), 1);
        assert_eq!(sent(&wide, "2001:db8::1", 1, 0), 0);
    }

    #[test]
    fn a_flood_of_spoofed_sources_stays_bounded() {
        // A victim's network is flooded (never refilled: the clock stands
        // still), among five times as many spoofed networks, seen once
        // each, as can be tracked.
        let limiter = limiter(1, 3, 0);
        assert_eq!(sent(&limiter, "203.0.113.7", 10, 0), 3);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..(TRACKED_NETWORKS * 5) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let spoofed = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(state) << 64));
            limiter.check_at(spoofed, 0);
            if i % 16 == 0 {
                assert_eq!(
                    limiter.check_at(ip("203.0.113.99"), 0),
                    Verdict::Drop,
                    "the flooded network was forgotten after {i} spoofed sources"
                );
            }
        }
        assert!(
            limiter.tracked() <= TRACKED_NETWORKS,
            "{} networks tracked",
            limiter.tracked()
        );
        let memory = limiter.networks.memory_used();
        let bytes = memory.entries + memory.map;
        assert!(bytes < 10 * 1024 * 1024, "{bytes} bytes");
    }

    mod truncation {
        use super::super::*;

        #[test]
        fn a_header_only_reply_is_only_flagged() {
            // A FORMERR to a garbled query: no question to echo.
            let mut reply = vec![0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
            truncate(&mut reply).unwrap();
            assert_eq!(
                reply,
                [0x12, 0x34, 0x83, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
                "TC set, nothing else changed"
            );
        }
    }
}
