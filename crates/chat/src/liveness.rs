//! Whether the peer of a session is still there, without the user having to send.
//!
//! Each session is probed every third of the liveness bound (a TEXT with counter 0 and no
//! text, which the peer acknowledges like a line, or refuses if it lost the session).
//! Anything heard from the peer counts as a sign of life. A peer silent for longer than
//! the bound is *gone*: shown as such, lines to it fail at once, and its cached
//! connection is dropped so that the next probe dials afresh. A gone peer that answers
//! again is *back*. Pure: the engine passes `now` and carries out the probes.

use std::time::Duration;
use tokio::time::Instant;

/// What changed after a tick or a sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The peer has been silent for longer than the bound.
    Gone,
    /// The peer was gone and answered again.
    Back,
}

/// The liveness of one session's peer.
#[derive(Debug, Clone)]
pub struct Liveness {
    bound: Duration,
    last_heard: Instant,
    probing: bool,
    gone: bool,
}

impl Liveness {
    /// A peer just heard from (the session opened at `now`).
    pub fn new(bound: Duration, now: Instant) -> Liveness {
        Liveness {
            bound,
            last_heard: now,
            probing: false,
            gone: false,
        }
    }

    /// How often probes go out: a third of the bound, so that two may be lost.
    pub fn probe_interval(bound: Duration) -> Duration {
        (bound / 3).max(Duration::from_millis(50))
    }

    /// Whether the peer is gone.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// How long the peer has been silent.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heard)
    }

    /// The peer answered or sent something.
    pub fn heard(&mut self, now: Instant) -> Option<Change> {
        self.last_heard = now;
        std::mem::replace(&mut self.gone, false).then_some(Change::Back)
    }

    /// A probe finished (answered or not).
    pub fn probe_done(&mut self) {
        self.probing = false;
    }

    /// The periodic check: whether to send a probe now (none is in flight), and whether
    /// the peer just became gone.
    pub fn tick(&mut self, now: Instant) -> (bool, Option<Change>) {
        let change = if !self.gone && self.silent_for(now) > self.bound {
            self.gone = true;
            Some(Change::Gone)
        } else {
            None
        };
        let probe = !self.probing;
        self.probing = true;
        (probe, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(3);

    #[test]
    fn a_silent_peer_is_gone_after_the_bound_and_back_when_heard() {
        let t0 = Instant::now();
        let mut peer = Liveness::new(BOUND, t0);
        assert_eq!(peer.tick(t0 + Duration::from_secs(1)), (true, None));
        // The first probe is still out: no second one.
        assert_eq!(peer.tick(t0 + Duration::from_secs(2)), (false, None));
        peer.probe_done();
        assert_eq!(peer.tick(t0 + BOUND), (true, None));
        peer.probe_done();
        let (_, change) = peer.tick(t0 + BOUND + Duration::from_millis(1));
        assert_eq!(change, Some(Change::Gone));
        assert!(peer.is_gone());
        // Said once.
        peer.probe_done();
        assert_eq!(peer.tick(t0 + 2 * BOUND).1, None);
        assert_eq!(peer.heard(t0 + 2 * BOUND), Some(Change::Back));
        assert!(!peer.is_gone());
        assert_eq!(peer.heard(t0 + 2 * BOUND), None);
    }

    #[test]
    fn a_peer_that_answers_is_never_gone() {
        let t0 = Instant::now();
        let mut peer = Liveness::new(BOUND, t0);
        for s in 1..100 {
            let now = t0 + Duration::from_secs(s);
            peer.tick(now);
            peer.heard(now);
            peer.probe_done();
            assert!(!peer.is_gone());
        }
    }

    #[test]
    fn probes_go_out_a_third_of_the_bound_apart() {
        assert_eq!(Liveness::probe_interval(BOUND), Duration::from_secs(1));
        assert_eq!(
            Liveness::probe_interval(Duration::from_millis(60)),
            Duration::from_millis(50)
        );
    }
}
