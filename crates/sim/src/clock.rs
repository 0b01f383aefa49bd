//! The virtual clock: one real epoch plus a [`Duration`], as quinn's test `Pair` keeps it.
//!
//! Every node sees the same `now`. Time only moves when the driver jumps it to the next
//! event, so a run's outcome never depends on how fast the host is.

use std::time::{Duration, Instant};

/// Virtual time shared by every simulated node.
#[derive(Debug, Clone)]
pub struct Clock {
    /// The instant virtual time zero maps to; taken once, never read again as "now".
    epoch: Instant,
    /// Virtual time elapsed since `epoch`.
    elapsed: Duration,
}

impl Clock {
    /// A clock at virtual time zero.
    pub fn new(epoch: Instant) -> Self {
        Clock {
            epoch,
            elapsed: Duration::ZERO,
        }
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The current virtual time as the `Instant` the state machines take.
    pub fn now(&self) -> Instant {
        self.epoch + self.elapsed
    }

    /// Converts an `Instant` handed out by a state machine back to virtual time; instants
    /// before the epoch map to zero.
    pub fn since_epoch(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// Moves virtual time forward to `to`; a `to` in the past leaves the clock where it is,
    /// so time never goes backwards.
    pub fn advance_to(&mut self, to: Duration) {
        if to > self.elapsed {
            self.elapsed = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_never_goes_backwards() {
        let mut clock = Clock::new(Instant::now());
        clock.advance_to(Duration::from_millis(5));
        clock.advance_to(Duration::from_millis(2));
        assert_eq!(clock.elapsed(), Duration::from_millis(5));
    }

    #[test]
    fn instants_round_trip_through_virtual_time() {
        let epoch = Instant::now();
        let mut clock = Clock::new(epoch);
        clock.advance_to(Duration::from_secs(3));
        assert_eq!(clock.since_epoch(clock.now()), Duration::from_secs(3));
        assert_eq!(clock.since_epoch(epoch), Duration::ZERO);
    }
}
