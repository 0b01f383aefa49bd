//! Timers as data, after quinn-proto's `timer.rs`: nothing is spawned, every timer is an
//! `Instant` kept in a table, [`Kademlia::poll_timeout`](crate::Kademlia::poll_timeout)
//! is their minimum and `handle_timeout` handles those that are due.
//!
//! There are two shapes:
//! - [`Timer`]: one instance each, for the node's periodic work.
//! - [`Deadline`]: one per outstanding request or running query, kept in [`Deadlines`],
//!   an ordered set, so the earliest is found in O(log n) however many are pending.

use crate::{QueryId, RequestId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The node's periodic timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// When to look for buckets with no lookup in their range for the refresh interval.
    Refresh,
    /// When the next record expires (taken from the record store's expiry order).
    Expiry,
    /// When the next record is due to be stored again on the closest nodes (taken from
    /// the record store's republish order).
    Republish,
}

/// `now + delay`, saturating instead of panicking when a configured duration is so large
/// that the sum overflows `Instant` (it then means "practically never").
pub fn after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(NEVER))
        .unwrap_or(now)
}

/// How far away "never" is when a configured duration overflows `Instant` (about a
/// century).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Timer {
    /// Every periodic timer.
    pub const ALL: [Timer; 3] = [Timer::Refresh, Timer::Expiry, Timer::Republish];
}

/// A deadline of one request or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// When a request's answer is due. Past it the peer counts as unresponsive: a lookup
    /// moves on, a PING or STORE counts as failed; a late answer is still noted.
    Request(RequestId),
    /// When a request that passed its deadline is forgotten, in case the driver never
    /// reports its outcome; an answer after this is ignored entirely.
    Forget(RequestId),
    /// When a query gives up (`Config::query_timeout` after it started).
    Query(QueryId),
}

/// Pending deadlines, earliest first.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    /// `(when, what)`; the pair is unique because request and query ids are.
    set: BTreeSet<(Instant, Deadline)>,
}

impl Deadlines {
    /// Sets `deadline` to fire at `at`.
    pub fn insert(&mut self, at: Instant, deadline: Deadline) {
        self.set.insert((at, deadline));
    }

    /// Cancels `deadline`, which was set for `at`.
    pub fn remove(&mut self, at: Instant, deadline: Deadline) {
        self.set.remove(&(at, deadline));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    /// Takes the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        let &(at, deadline) = self.set.first()?;
        if at > now {
            return None;
        }
        self.set.remove(&(at, deadline));
        Some(deadline)
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::epoch;

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let t0 = epoch();
        assert!(after(t0, Duration::MAX) > t0);
        assert_eq!(
            after(t0, Duration::from_secs(1)),
            t0 + Duration::from_secs(1)
        );
    }

    #[test]
    fn deadlines_fire_in_order_and_not_early() {
        let t0 = epoch();
        let mut d = Deadlines::default();
        d.insert(t0 + Duration::from_secs(2), Deadline::Query(QueryId(1)));
        d.insert(t0 + Duration::from_secs(1), Deadline::Request(RequestId(7)));
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(d.pop_due(t0), None);
        assert_eq!(
            d.pop_due(t0 + Duration::from_secs(5)),
            Some(Deadline::Request(RequestId(7)))
        );
        d.remove(t0 + Duration::from_secs(2), Deadline::Query(QueryId(1)));
        assert_eq!(d.next(), None);
        assert_eq!(d.len(), 0);
    }
}
