//! A per-peer token bucket: how a neighbour that floods is recognised.

use std::time::Instant;

/// Allows `rate` messages per second on average and bursts of up to `burst`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Tokens available now (one per message); never above `burst`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(now: Instant, burst: u32) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Takes one token. Returns false when the bucket is empty: the peer sends faster
    /// than allowed.
    pub(crate) fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = self.updated.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_is_allowed_then_refused() {
        let t0 = crate::test_support::epoch();
        let mut b = TokenBucket::new(t0, 3);
        assert!(b.take(t0, 1, 3));
        assert!(b.take(t0, 1, 3));
        assert!(b.take(t0, 1, 3));
        assert!(!b.take(t0, 1, 3));
    }

    #[test]
    fn tokens_refill_at_the_rate_up_to_the_burst() {
        let t0 = crate::test_support::epoch();
        let mut b = TokenBucket::new(t0, 2);
        assert!(b.take(t0, 10, 2));
        assert!(b.take(t0, 10, 2));
        assert!(!b.take(t0, 10, 2));
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1, 10, 2));
        assert!(!b.take(t1, 10, 2));
        let t2 = t1 + Duration::from_secs(60);
        assert!(b.take(t2, 10, 2));
        assert!(b.take(t2, 10, 2));
        assert!(!b.take(t2, 10, 2));
    }
}
