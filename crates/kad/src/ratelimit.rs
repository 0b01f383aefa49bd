//! Per-peer request rate limits: one token bucket per peer, in the state machine.
//!
//! Each peer may send `burst` requests at once and `rate` per second after that; a request
//! beyond it is refused (the node answers ERROR 429, see
//! [`voidmesh_proto::kad_msg::ERROR_RATE_LIMITED`]). Buckets refill with the `now` handed
//! in, so there is no timer.
//!
//! Memory is bounded: at most [`MAX_TRACKED_PEERS`] buckets are kept. When that many are
//! in use, buckets that have refilled completely (peers that are quiet) are dropped, which
//! changes nothing for them; if all are busy, the least recently used half is dropped. The
//! map is ordered, so which buckets go is deterministic.

use std::collections::BTreeMap;
use std::time::Instant;
use voidmesh_proto::NodeId;

/// Most peers whose buckets are kept at once.
pub const MAX_TRACKED_PEERS: usize = 4096;

/// One peer's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left at `at`; one request costs one.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// Token buckets of the peers that sent requests lately.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Tokens added per second (0: no limit).
    rate: f64,
    /// Most tokens a bucket holds.
    burst: f64,
    /// Buckets by peer.
    peers: BTreeMap<NodeId, Bucket>,
}

impl RateLimiter {
    /// Allows `rate` requests per second per peer with bursts of `burst` (at least 1);
    /// `rate` 0 allows everything.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            peers: BTreeMap::new(),
        }
    }

    /// Takes one token from `peer`'s bucket; false if it has none left at `now`.
    pub fn allow(&mut self, now: Instant, peer: &NodeId) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.prune(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.peers.entry(*peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Number of peers with a bucket.
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// Drops the buckets that are full again at `now`, then, if still at the bound, the
    /// least recently used half.
    fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.peers.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        if self.peers.len() >= MAX_TRACKED_PEERS {
            let mut by_age: Vec<(Instant, NodeId)> =
                self.peers.iter().map(|(id, b)| (b.at, *id)).collect();
            by_age.sort_unstable();
            for (_, id) in by_age.into_iter().take(MAX_TRACKED_PEERS / 2) {
                self.peers.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::epoch;
    use std::time::Duration;
    use voidmesh_proto::Key;

    #[test]
    fn burst_then_rate_per_peer() {
        let now = epoch();
        let mut limiter = RateLimiter::new(10, 5);
        let a = Key([1; 32]);
        let b = Key([2; 32]);
        for _ in 0..5 {
            assert!(limiter.allow(now, &a));
        }
        assert!(!limiter.allow(now, &a));
        // Another peer has its own bucket.
        assert!(limiter.allow(now, &b));
        // 10 per second: one token every 100 ms.
        assert!(!limiter.allow(now + Duration::from_millis(99), &a));
        assert!(limiter.allow(now + Duration::from_millis(100), &a));
        assert!(!limiter.allow(now + Duration::from_millis(100), &a));
        // A long pause refills only up to the burst.
        let later = now + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(limiter.allow(later, &a));
        }
        assert!(!limiter.allow(later, &a));
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let now = epoch();
        let mut limiter = RateLimiter::new(0, 0);
        for _ in 0..10_000 {
            assert!(limiter.allow(now, &Key([1; 32])));
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn tracked_peers_stay_bounded() {
        let now = epoch();
        let mut limiter = RateLimiter::new(1, 3);
        for n in 0..3 * MAX_TRACKED_PEERS as u32 {
            let mut raw = [0u8; 32];
            raw[..4].copy_from_slice(&n.to_be_bytes());
            // Each peer sends twice at once, so its bucket is not full again.
            assert!(limiter.allow(now, &Key(raw)));
            assert!(limiter.allow(now, &Key(raw)));
            assert!(limiter.tracked() <= MAX_TRACKED_PEERS);
        }
    }
}
