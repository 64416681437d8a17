//! Usage-plan quotas: requests per API key per UTC day, week (from Monday) or month.

use dashmap::DashMap;
use std::sync::Arc;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The first day (days since 1970-01-01) of the period that contains `day`.
    pub fn start_day(self, day: u64) -> u64 {
        match self {
            Period::Day => day,
            Period::Week => ((day + 3) / 7 * 7).saturating_sub(3),
            Period::Month => {
                let (y, m, _) = crate::clock::civil_from_days(day as i64);
                crate::clock::days_from_civil(y, m, 1) as u64
            }
        }
    }

    /// The period containing `unix_secs`, and the unix time at which the next one starts.
    pub fn window(self, unix_secs: u64) -> (u64, u64) {
        let days = unix_secs / 86_400;
        match self {
            Period::Day => (days, (days + 1) * 86_400),
            Period::Week => {
                let w = (days + 3) / 7; // 1970-01-01 was a Thursday
                (w, (w * 7 + 7 - 3) * 86_400)
            }
            Period::Month => {
                let (y, m, _) = crate::clock::civil_from_days(days as i64);
                let idx = (y * 12 + m as i64 - 1) as u64;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (idx, crate::clock::days_from_civil(ny, nm, 1) as u64 * 86_400)
            }
        }
    }
}

/// Counters of one usage plan's quota.
#[derive(Debug)]
pub struct Quota {
    pub limit: u64,
    pub period: Period,
    /// AWS's QuotaSettings.offset: requests taken off the limit in the first period a key
    /// is counted in (on this node, since it started).
    pub offset: u64,
    /// Per key: (period index, used in it, first period counted). A known key is counted
    /// under the map's shared lock and its own uncontended lock; only a new key takes the
    /// map's write lock.
    map: DashMap<Arc<str>, Mutex<(u64, u64, bool)>>,
}

/// A refused request: seconds until the next period.
#[derive(Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after: u64,
}

impl Quota {
    pub fn new(limit: u64, period: Period, offset: u64) -> Quota {
        Quota { limit, period, offset, map: DashMap::new() }
    }

    pub fn same_settings(&self, limit: u64, period: Period, offset: u64) -> bool {
        self.limit == limit && self.period == period && self.offset == offset
    }

    /// Counts one request for `key` at `unix_secs`; refuses past the limit.
    pub fn take(&self, key: &Arc<str>, unix_secs: u64) -> Result<u64, Exceeded> {
        let (idx, next) = self.period.window(unix_secs);
        let entry = match self.map.get(key) {
            Some(e) => e,
            None => self.map.entry(key.clone()).or_insert(Mutex::new((idx, 0, true))).downgrade(),
        };
        let mut counter = entry.lock().unwrap_or_else(|p| p.into_inner());
        let (period, used, first) = &mut *counter;
        if *period != idx {
            *period = idx;
            *used = 0;
            *first = false;
        }
        let limit = if *first { self.limit.saturating_sub(self.offset) } else { self.limit };
        if *used >= limit {
            return Err(Exceeded { retry_after: next.saturating_sub(unix_secs).max(1) });
        }
        *used += 1;
        Ok(limit - *used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_utc_days_weeks_and_months() {
        // 2026-11-24 13:00 UTC is a Tuesday
        let t = 1_795_525_200;
        let (_, next_day) = Period::Day.window(t);
        assert_eq!(next_day, 1_795_564_800, "2026-11-25 00:00 UTC");
        let (_, next_week) = Period::Week.window(t);
        assert_eq!(next_week, 1_795_996_800, "Monday 2026-11-30 00:00 UTC");
        let (_, next_month) = Period::Month.window(t);
        assert_eq!(next_month, 1_796_083_200, "2026-12-01 00:00 UTC");
        let (_, after_dec) = Period::Month.window(1_796_083_200 + 10);
        assert_eq!(after_dec, 1_798_761_600, "2027-01-01 00:00 UTC");
    }

    #[test]
    fn periods_start_on_their_first_day() {
        let tue = 1_795_525_200 / 86_400; // 2026-11-24, a Tuesday
        assert_eq!(Period::Day.start_day(tue), tue);
        assert_eq!(Period::Week.start_day(tue), tue - 1, "Monday 2026-11-23");
        assert_eq!(Period::Week.start_day(tue - 1), tue - 1);
        assert_eq!(Period::Month.start_day(tue), tue - 23, "2026-11-01");
    }

    #[test]
    fn quota_counts_per_key_and_resets_each_period() {
        let q = Quota::new(3, Period::Day, 1);
        let k: Arc<str> = Arc::from("k");
        let t = 1_795_525_200;
        assert_eq!(q.take(&k, t), Ok(1));
        assert_eq!(q.take(&k, t), Ok(0));
        assert_eq!(q.take(&k, t), Err(Exceeded { retry_after: 39_600 }), "offset 1 in the first period");
        let tomorrow = t + 86_400;
        assert_eq!(q.take(&k, tomorrow), Ok(2));
        assert!(q.take(&Arc::from("other"), t).is_ok());
    }
}
