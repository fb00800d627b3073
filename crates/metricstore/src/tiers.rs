//! Resolution tiers and CloudWatch's retention schedule: which tier a sample enters, how long
//! each tier keeps its points, and how a tier's expired points roll up into the next one.

use crate::{Point, Resolution};

/// A tier's place in the schedule. Points enter tier 0 (high resolution) or 1 (standard) and
/// move up one tier each time they outlive a retention.
#[derive(Debug, Clone, Copy)]
pub struct Tier {
    /// Kept this long (by the point's own timestamp) before rolling up.
    pub retention_ms: i64,
    /// Period of the roll-up these points become; `None` for the last tier, whose expired
    /// points are dropped.
    pub rolls_into_ms: Option<i64>,
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// 1 s data for 3 h, 60 s for 15 days, 5 min for 63 days, 1 h for 455 days.
pub const TIERS: [Tier; 4] = [
    Tier {
        retention_ms: 3 * HOUR,
        rolls_into_ms: Some(MINUTE),
    },
    Tier {
        retention_ms: 15 * DAY,
        rolls_into_ms: Some(5 * MINUTE),
    },
    Tier {
        retention_ms: 63 * DAY,
        rolls_into_ms: Some(HOUR),
    },
    Tier {
        retention_ms: 455 * DAY,
        rolls_into_ms: None,
    },
];

pub fn entry_tier(resolution: Resolution) -> u8 {
    match resolution {
        Resolution::High => 0,
        Resolution::Standard => 1,
    }
}

/// Points of `tier` older than this (as of `now_ms`) leave it. Aligned down to the roll-up
/// period, so every roll-up period is complete when it is computed.
pub fn cutoff(tier: usize, now_ms: i64) -> i64 {
    let t = &TIERS[tier];
    let align = t.rolls_into_ms.unwrap_or(HOUR);
    now_ms.saturating_sub(t.retention_ms).div_euclid(align) * align
}

/// Folds `p` into the statistic set `acc` (the roll-up of one period).
pub fn merge(acc: &mut Point, p: &Point) {
    acc.count += p.count;
    acc.sum += p.sum;
    acc.min = acc.min.min(p.min);
    acc.max = acc.max.max(p.max);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_aligned_to_the_next_period() {
        let now = 1_700_000_123_456;
        let c0 = cutoff(0, now);
        assert_eq!(c0 % MINUTE, 0);
        assert!(c0 <= now - 3 * HOUR && c0 > now - 3 * HOUR - MINUTE);
        assert_eq!(cutoff(1, now) % (5 * MINUTE), 0);
        assert_eq!(cutoff(3, now) % HOUR, 0);
        assert!(cutoff(3, now) <= now - 455 * DAY);
    }

    #[test]
    fn merge_keeps_statistics() {
        let mut acc = Point::value(0, 2.0);
        merge(&mut acc, &Point::value(5, -1.0));
        merge(
            &mut acc,
            &Point {
                timestamp_ms: 9,
                count: 2.0,
                sum: 10.0,
                min: 4.0,
                max: 6.0,
            },
        );
        assert_eq!(
            (acc.count, acc.sum, acc.min, acc.max, acc.timestamp_ms),
            (4.0, 11.0, -1.0, 6.0, 0)
        );
    }
}
