//! The regional tier: the edges of a region share their misses, so that a
//! region fetches an object from its origin once, however many edges it
//! has.
//!
//! Each object has an owner among the region's edges that are up: the one
//! whose rendezvous score for the object's cache key is highest
//! ([`owner`]). An edge that misses a cacheable request and is not its
//! owner fills it from the owner (a *peer fill*) instead of the origin;
//! the owner serves it from its cache, or fetches it once, however many
//! edges and clients ask at the same time (its cache lock). Rendezvous
//! hashing needs no ring and no coordination: every edge that sees the
//! same edges up computes the same owner, and an edge that goes down moves
//! only its own objects, each to the edge ranked next for it.
//!
//! A peer-fill request is marked in `CDN-Loop` (RFC 8586) as
//! `<cdn id>; fill=peer` ([`crate::forwarding::peer_fill_mark`]) and is
//! accepted as one only from the address of another edge of the region
//! (the fill connects from the edge's own address); the owner then serves
//! it from its cache or its origins and never sends it on to another peer,
//! so fills cannot loop. Anything else carrying this CDN's id is a loop
//! (508), as before peers existed.
//!
//! The edge probes its peers as it probes origins (the `[health]`
//! settings, on their data-plane health path, [`crate::origins`]), marks a
//! peer suspect when a fill on it fails, and moves on to the next edge by
//! rank, or to the origins, under the one retry policy
//! ([`crate::origins::after_failure`]).

use crate::origins::{OriginSet, OriginTarget};
use blake2::digest::consts::U8;
use blake2::{Blake2b, Digest};
use config::report::SeenEdge;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::connectors::l4::BindTo;
use pingora::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The edge that owns the object whose cache key hashes to `key`, among
/// this edge (`me`) and its peers that are up (`healthy_peers`): `None`
/// when it is this edge, else the peer to fill from.
pub fn owner(key: &[u8], healthy_peers: &[SocketAddr], me: SocketAddr) -> Option<SocketAddr> {
    fill_order(key, healthy_peers, me).first().copied()
}

/// The peers to ask for the object whose cache key hashes to `key`, in
/// order: those of `healthy_peers` that outrank this edge (`me`) for it,
/// best first. Empty when this edge is the owner. When the owner fails,
/// the next is the edge that would own the object without it; when that
/// is this edge, the origins come next.
pub fn fill_order(key: &[u8], healthy_peers: &[SocketAddr], me: SocketAddr) -> Vec<SocketAddr> {
    let mine = score(key, me);
    let mut above: Vec<(u64, SocketAddr)> = healthy_peers
        .iter()
        .filter(|peer| **peer != me)
        .map(|peer| (score(key, *peer), *peer))
        .filter(|ranked| *ranked > (mine, me))
        .collect();
    // Highest score first; ties (in 64 bits, practically never) by address,
    // so that every edge ranks the same way.
    above.sort_unstable_by(|a, b| b.cmp(a));
    above.into_iter().map(|(_, peer)| peer).collect()
}

/// The rendezvous score of `edge` for `key`: the first 8 bytes of
/// BLAKE2b over both. Stable across processes, versions and platforms
/// (unlike std's hasher), so every edge of a region ranks alike.
fn score(key: &[u8], edge: SocketAddr) -> u64 {
    let mut hasher = Blake2b::<U8>::new();
    hasher.update(key);
    match edge.ip() {
        IpAddr::V4(ip) => hasher.update(ip.octets()),
        IpAddr::V6(ip) => hasher.update(ip.octets()),
    }
    hasher.update(edge.port().to_be_bytes());
    u64::from_be_bytes(hasher.finalize().into())
}

/// What a request's key is hashed by for ownership: its primary cache key
/// (variants of one URL share an owner).
pub fn key_hash(key: &impl CacheHashKey) -> HashBinary {
    key.primary_bin()
}

/// The hash [`owner`] takes for `scheme://host/path_and_query`, as an
/// edge computes it for a request (for tools and tests that want to know
/// which edge owns a URL).
pub fn url_key(scheme: &str, host: &str, path_and_query: &str) -> HashBinary {
    key_hash(&crate::key::cache_key(scheme, host, path_and_query))
}

/// An edge's peers: the other edges of its region, their health, and how
/// to reach them.
pub struct Peers {
    me: SocketAddr,
    /// The peers as targets, probed and marked as origins are.
    set: Arc<OriginSet>,
    /// Where fills connect from: this edge's own address, which is how
    /// the owner knows a fill comes from a peer.
    bind: BindTo,
}

impl Peers {
    /// The peers `peers` of the edge at `me` in region `region`, reached
    /// with the timeouts of `policy`.
    pub fn new(
        region: &str,
        me: SocketAddr,
        peers: &[SocketAddr],
        policy: &config::OriginPolicy,
    ) -> Self {
        let targets = peers
            .iter()
            .map(|peer| OriginTarget::http(region, *peer))
            .collect();
        let mut bind = BindTo::default();
        bind.addr = Some(SocketAddr::new(me.ip(), 0));
        Peers {
            me,
            set: Arc::new(OriginSet::new(targets, policy)),
            bind,
        }
    }

    /// The peers as a set of targets, for their health checks.
    pub fn set(&self) -> &Arc<OriginSet> {
        &self.set
    }

    /// Whether `client` is one of the peers (a request from it may be a
    /// peer fill).
    pub fn is_peer(&self, client: IpAddr) -> bool {
        (0..self.set.len())
            .filter_map(|i| self.set.target(i))
            .any(|peer| peer.addr.ip() == client)
    }

    /// The peers to fill the object of `key` from, best first, as indices
    /// for [`Peers::peer`]: those up and not suspect that outrank this edge.
    pub fn fill_order(&self, key: &[u8]) -> Vec<usize> {
        if self.set.is_empty() {
            return Vec::new();
        }
        let healthy: Vec<SocketAddr> = self
            .set
            .healthy()
            .iter()
            .enumerate()
            .filter(|(_, healthy)| **healthy)
            .filter_map(|(i, _)| self.set.target(i).map(|t| t.addr))
            .collect();
        fill_order(key, &healthy, self.me)
            .into_iter()
            .filter_map(|addr| self.index_of(addr))
            .collect()
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        (0..self.set.len()).find(|&i| self.set.target(i).is_some_and(|t| t.addr == addr))
    }

    /// How to reach peer `index`: from this edge's own address.
    pub fn peer(&self, index: usize) -> Option<HttpPeer> {
        let mut peer = self.set.peer(index)?.clone();
        peer.options.bind_to = Some(self.bind.clone());
        Some(peer)
    }

    /// Peer `index`'s address.
    pub fn addr(&self, index: usize) -> Option<SocketAddr> {
        self.set.target(index).map(|t| t.addr)
    }

    /// A fill on peer `index` failed: it is tried after the others for a
    /// while, as an origin would be.
    pub fn mark_failed(&self, index: usize) {
        self.set.mark_failed(index);
    }

    /// How this edge sees its peers, for its admin `/status`.
    pub fn seen(&self) -> Vec<SeenEdge> {
        self.set
            .snapshot()
            .into_iter()
            .map(|peer| SeenEdge {
                addr: peer.addr,
                up: peer.up,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn edges(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([127, 0, 2, i], 8080)))
            .collect()
    }

    fn key(i: u32) -> [u8; 16] {
        url_key("http", "cdn.meridian.test", &format!("/assets/{i}.bin"))
    }

    /// The owner of `key` among `all` as `me` sees it: `me` itself when
    /// [`owner`] says so.
    fn owner_seen_by(key: &[u8], all: &[SocketAddr], me: SocketAddr) -> SocketAddr {
        let peers: Vec<SocketAddr> = all.iter().copied().filter(|e| *e != me).collect();
        owner(key, &peers, me).unwrap_or(me)
    }

    #[test]
    fn every_edge_agrees_on_the_owner_and_it_is_stable() {
        let all = edges(3);
        for i in 0..200 {
            let key = key(i);
            let seen: Vec<SocketAddr> = all
                .iter()
                .map(|me| owner_seen_by(&key, &all, *me))
                .collect();
            assert!(seen.iter().all(|o| *o == seen[0]), "{i}: {seen:?}");
            // The same answer every time, whatever order the peers come in.
            let mut reversed = all.clone();
            reversed.reverse();
            assert_eq!(owner_seen_by(&key, &reversed, all[0]), seen[0]);
        }
        // Fixed across builds: the hash is BLAKE2b, not a per-process one.
        assert_eq!(score(b"key", all[0]), score(b"key", all[0]));
        assert_ne!(score(b"key", all[0]), score(b"key", all[1]));
    }

    #[test]
    fn objects_spread_evenly_over_the_edges() {
        let all = edges(3);
        let mut owned: HashMap<SocketAddr, usize> = HashMap::new();
        let objects = 3000;
        for i in 0..objects {
            *owned
                .entry(owner_seen_by(&key(i), &all, all[0]))
                .or_default() += 1;
        }
        assert_eq!(owned.len(), 3, "{owned:?}");
        for (edge, count) in &owned {
            // A third each, give or take 10% of a third.
            assert!((900..=1100).contains(count), "{edge} owns {count}");
        }
    }

    #[test]
    fn removing_an_edge_moves_only_its_objects() {
        let all = edges(4);
        let gone = all[2];
        let left: Vec<SocketAddr> = all.iter().copied().filter(|e| *e != gone).collect();
        let mut moved = 0;
        for i in 0..2000 {
            let key = key(i);
            let before = owner_seen_by(&key, &all, all[0]);
            let after = owner_seen_by(&key, &left, all[0]);
            if before == gone {
                moved += 1;
                assert_ne!(after, gone);
                // To the edge ranked next for it.
                let next = fill_order(&key, &all, all[0])
                    .into_iter()
                    .chain(std::iter::once(all[0]))
                    .find(|e| *e != gone);
                assert!(
                    after == all[0] || Some(after) == next,
                    "{i}: {after} is not the next of {next:?}"
                );
            } else {
                assert_eq!(after, before, "object {i} moved though its owner stayed");
            }
        }
        assert!(moved > 300, "{moved} of 2000 were the removed edge's");
    }

    #[test]
    fn the_fill_order_is_the_peers_above_this_edge() {
        let all = edges(5);
        for i in 0..100 {
            let key = key(i);
            let me = all[1];
            let order = fill_order(&key, &all, me);
            assert!(!order.contains(&me));
            // Best first, and each above me.
            let scores: Vec<u64> = order.iter().map(|e| score(&key, *e)).collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
            assert!(scores.iter().all(|s| *s > score(&key, me)));
            // Alone, an edge owns everything; an owner has no one to ask.
            assert!(fill_order(&key, &[], me).is_empty());
            let owner = owner_seen_by(&key, &all, me);
            assert!(fill_order(&key, &all, owner).is_empty());
        }
    }

    #[test]
    fn peers_are_known_by_address_and_fill_from_this_edge() {
        let all = edges(3);
        let policy = config::Config::demo().edge.origins;
        let peers = Peers::new("eu-west", all[0], &all[1..], &policy);
        assert!(peers.is_peer(all[1].ip()));
        assert!(!peers.is_peer(all[0].ip()), "not itself");
        assert!(!peers.is_peer("127.0.0.1".parse().unwrap()));
        let peer = peers.peer(0).unwrap();
        let bind = peer.options.bind_to.as_ref().unwrap();
        assert_eq!(
            bind.addr.as_ref().map(ToString::to_string),
            Some("127.0.2.1:0".to_owned())
        );
        // Peers start up, as origins do, until their checks say otherwise.
        assert!(peers.seen().iter().all(|p| p.up));
        let key = key(7);
        let expected: Vec<usize> = fill_order(&key, &all[1..], all[0])
            .into_iter()
            .map(|a| all[1..].iter().position(|p| *p == a).unwrap())
            .collect();
        assert_eq!(peers.fill_order(&key), expected);
        // A suspect peer is not asked.
        for i in 0..2 {
            peers.mark_failed(i);
        }
        assert!(peers.fill_order(&key).is_empty());
    }
}
