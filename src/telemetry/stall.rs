//! How long a consumer lag stays high: a burst clears within a reading or two, a stall holds
//! the lag up. The soak benchmark reports the longest such stretch.

use std::time::Duration;

/// The longest stretch of `lags` (time, lag; in time order) at or above `limit`: from its
/// first such reading to the next reading below, or to the last reading when none comes.
pub fn longest_at_or_above(lags: &[(Duration, i64)], limit: i64) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<Duration> = None;
    for &(at, lag) in lags {
        match (since, lag >= limit) {
            (None, true) => since = Some(at),
            (Some(start), false) => {
                longest = longest.max(at - start);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(start), Some(&(last, _))) = (since, lags.last()) {
        longest = longest.max(last - start);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_short_and_a_stall_is_long() {
        let s = Duration::from_secs;
        let lags = [
            (s(6), 5),
            (s(7), 721),
            (s(8), 6),
            (s(9), 400),
            (s(10), 900),
            (s(14), 2),
        ];
        assert_eq!(longest_at_or_above(&lags, 400), s(5));
        assert_eq!(longest_at_or_above(&lags[..3], 400), s(1));
        assert_eq!(longest_at_or_above(&lags[..5], 400), s(1));
        assert_eq!(longest_at_or_above(&lags[..1], 400), Duration::ZERO);
    }
}
