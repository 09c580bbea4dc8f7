//! UTC timestamps without a date crate: whole seconds since the Unix epoch,
//! formatted as RFC 3339 (`2026-11-25T13:02:11Z`, the shape of Payroc's
//! `order.dateTime`) and parsed from the ISO 8601 values the GET lists take.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;

/// Now, in whole seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(DAY), secs.rem_euclid(DAY));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parse an ISO 8601 date-time with a time zone (`2024-07-01T15:30:00Z`,
/// `2024-07-01T15:30:00.250+02:00`; `T` and `Z` in either case) or a plain
/// date (`2024-07-01`, meaning midnight UTC) into whole seconds since the
/// epoch; a fraction of a second is dropped. `None` if malformed, out of
/// range (month 13, 31 April, hour 24, …) or without a time zone.
pub(crate) fn parse(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let y = digits(b, 0, 4)?;
    let m = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&m) || d < 1 || d > month_len(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if b.len() == 10 {
        return Some(days * DAY);
    }
    if !matches!(b.get(10), Some(b'T' | b't')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (hh, mm, ss) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 && rest[3] == b':' => {
            let (oh, om) = (digits(rest, 1, 2)?, digits(rest, 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    Some(days * DAY + hh * 3600 + mm * 60 + ss - offset)
}

/// The `len` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let part = b.get(at..at + len)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(part.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0')))
}

fn month_len(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-to-civil algorithm: days since 1970-01-01 →
/// (year, month, day).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse: (year, month, day) → days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
