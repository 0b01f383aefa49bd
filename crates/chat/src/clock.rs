//! Times as the user reads them: in the local zone (the `TZ` variable, else the system's
//! zone), with the offset wherever a bare time could be misread.

use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};

/// The current wall clock, Unix milliseconds.
pub fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// `unix_ms` in the local zone.
pub fn local(unix_ms: u64) -> DateTime<FixedOffset> {
    let utc = DateTime::<Utc>::from_timestamp_millis(i64::try_from(unix_ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    utc.with_timezone(&Local).fixed_offset()
}

/// `unix_ms` in the zone `offset`.
pub fn in_zone(unix_ms: u64, offset: FixedOffset) -> DateTime<FixedOffset> {
    let utc = DateTime::<Utc>::from_timestamp_millis(i64::try_from(unix_ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    offset.from_utc_datetime(&utc.naive_utc())
}

/// `HH:MM` (the terminal UI's time of a line; the header names the zone).
pub fn time_of_day(at: &DateTime<FixedOffset>) -> String {
    at.format("%H:%M").to_string()
}

/// `YYYY-MM-DD HH:MM:SS +hh:mm`, for `/history` and the line mode.
pub fn stamp(at: &DateTime<FixedOffset>) -> String {
    at.format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// `Saturday 5 December 2026`: the line the terminal UI shows when the day changes.
pub fn day(at: &DateTime<FixedOffset>) -> String {
    at.format("%A %-d %B %Y").to_string()
}

/// `UTC+01:00`: the zone of `at`, for the header.
pub fn zone(at: &DateTime<FixedOffset>) -> String {
    let offset = at.offset().local_minus_utc();
    if offset == 0 {
        return "UTC".to_owned();
    }
    at.format("UTC%:z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05 23:30:00 UTC.
    const AT: u64 = 1_796_513_400_000;

    #[test]
    fn times_follow_the_zone_and_say_which() {
        let utc = in_zone(AT, FixedOffset::east_opt(0).unwrap());
        assert_eq!(stamp(&utc), "2026-12-05 23:30:00 +00:00");
        assert_eq!(zone(&utc), "UTC");
        let kolkata = in_zone(AT, FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
        assert_eq!(stamp(&kolkata), "2026-12-06 05:00:00 +05:30");
        assert_eq!(time_of_day(&kolkata), "05:00");
        assert_eq!(day(&kolkata), "Sunday 6 December 2026");
        assert_eq!(zone(&kolkata), "UTC+05:30");
    }
}
