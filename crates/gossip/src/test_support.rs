//! Helpers shared by the unit tests.

use std::time::Instant;

/// The one real timestamp a test starts its virtual clock from; every later time is this
/// plus a `Duration`, so nothing in a test depends on the real clock's progress.
pub fn epoch() -> Instant {
    Instant::now()
}
