//! Wall-clock time as the gateway's protocols write it: Unix seconds, and civil dates
//! (quota periods, SigV4 dates, `requestTime` in events) without a calendar crate.

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    unix_secs(std::time::SystemTime::now())
}

/// `t` in seconds since the Unix epoch (0 if it is before it).
pub fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Howard Hinnant's civil-from-days: (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` of a Unix time: the Common Log Format's time, as AWS writes
/// `requestTime` in events and access logs.
pub fn clf_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let month = MONTHS.get((m as usize).wrapping_sub(1)).copied().unwrap_or("Jan");
    format!("{d:02}/{month}/{y:04}:{:02}:{:02}:{:02} +0000", s / 3600, s % 3600 / 60, s % 60)
}

/// One formatted second per thread: the last second `format` wrote, and its text.
pub type SecondSlot = std::cell::RefCell<(u64, String)>;

/// An empty [`SecondSlot`], for a `thread_local!`.
pub const fn second_slot() -> SecondSlot {
    std::cell::RefCell::new((u64::MAX, String::new()))
}

/// `format(secs)`, formatted once a second per thread in `slot`: events and signatures ask
/// for the same second thousands of times.
pub fn once_a_second(slot: &'static std::thread::LocalKey<SecondSlot>, secs: u64, format: fn(u64) -> String) -> String {
    slot.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, format(secs));
        }
        last.1.clone()
    })
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot gives the text of the second asked for: the same second again, then the next.
    #[test]
    fn once_a_second_follows_the_second() {
        thread_local! {
            static SLOT: SecondSlot = const { second_slot() };
        }
        for secs in [1_796_625_899, 1_796_625_899, 1_796_625_900, 0] {
            assert_eq!(once_a_second(&SLOT, secs, clf_time), clf_time(secs));
        }
    }
}
