//! The one clock the tool reads: Payroc's time, as the `Date` headers of its answers tell it.
//!
//! Every time the ledger records (a send, a batch, a reconciliation) and every age it computes
//! (the six-day re-send guard, reconcile's listing window, how long the ledger has vouched for an
//! environment) comes from [`now`]. A local clock that is wrong — ten days fast at a send and
//! corrected later — would otherwise make a refund look younger than it is, and the tool would
//! re-send a key Payroc has already forgotten: a second refund. So:
//!
//! - the client passes the `Date` header of every answer (the token's too) to
//!   [`observe_payroc_date`], which keeps the offset between the local clock and Payroc's;
//! - [`now`] is the local clock moved by that offset;
//! - [`refuse_to_send`] says why no refund may leave while the two clocks differ by more than
//!   [`MAX_SKEW`]: the clock is then broken, and what it wrote before may be too.
//!
//! One seam for tests: the environment variable [`OFFSET_VARIABLE`] moves the *local* clock by a
//! number of seconds (as a machine whose clock is off would), read once per process. It cannot make
//! the tool send anything it would not send otherwise: the offset to Payroc absorbs it, and a skew
//! beyond [`MAX_SKEW`] stops sends.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// The test seam: seconds (signed) added to the local clock.
pub const OFFSET_VARIABLE: &str = "REFUND_BATCH_CLOCK_OFFSET_SECONDS";

/// How far the local clock may be from Payroc's before sends are refused. `Date` headers have a
/// resolution of a second, and a network round trip adds less than one more.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Payroc's clock minus the local one, in milliseconds, once an answer has told it.
static PAYROC_OFFSET_MILLISECONDS: AtomicI64 = AtomicI64::new(0);
/// Whether [`PAYROC_OFFSET_MILLISECONDS`] was measured.
static MEASURED: AtomicBool = AtomicBool::new(false);

/// The local clock, moved by the test seam.
pub fn local_now() -> OffsetDateTime {
    static SEAM: OnceLock<i64> = OnceLock::new();
    let seconds = *SEAM.get_or_init(|| {
        std::env::var(OFFSET_VARIABLE)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    });
    OffsetDateTime::now_utc() + time::Duration::seconds(seconds)
}

/// Payroc's time now: the local clock moved by the offset the last answer measured (the local
/// clock alone before any answer came).
pub fn now() -> OffsetDateTime {
    local_now() + time::Duration::milliseconds(PAYROC_OFFSET_MILLISECONDS.load(Ordering::Relaxed))
}

/// Reads an answer's `Date` header (`Fri, 04 Dec 2026 16:27:01 GMT`) and keeps the offset
/// between it and the local clock. An answer without a readable one changes nothing.
pub fn observe_payroc_date(headers: &reqwest::header::HeaderMap) {
    let Some(date) = headers
        .get(reqwest::header::DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok())
    else {
        return;
    };
    let payroc = OffsetDateTime::from(date);
    let local = local_now();
    // The header is truncated to the second: Payroc's time is within the second it names.
    let difference = payroc + time::Duration::milliseconds(500) - local;
    let milliseconds = i64::try_from(difference.whole_milliseconds()).unwrap_or(i64::MAX);
    // Within a second of the local clock counts as none, so runs on a good clock keep their
    // times exactly as the local clock gives them.
    let milliseconds = if milliseconds.abs() <= 1_000 { 0 } else { milliseconds };
    PAYROC_OFFSET_MILLISECONDS.store(milliseconds, Ordering::Relaxed);
    MEASURED.store(true, Ordering::Relaxed);
}

/// Why no refund may be sent now, if the local clock is off Payroc's by more than [`MAX_SKEW`].
pub fn refuse_to_send() -> Option<String> {
    if !MEASURED.load(Ordering::Relaxed) {
        return None;
    }
    let offset = PAYROC_OFFSET_MILLISECONDS.load(Ordering::Relaxed);
    let skew = Duration::from_millis(offset.unsigned_abs());
    (skew > MAX_SKEW).then(|| {
        format!(
            "this machine's clock is {} {} Payroc's (more than {} minutes off): nothing is sent until it is set right, \
             because the ledger's times decide when a refund may be sent again. Fix the clock (NTP) and run again",
            describe(skew),
            if offset > 0 { "behind" } else { "ahead of" },
            MAX_SKEW.as_secs() / 60
        )
    })
}

/// `10 days 2 h`, `7 min`: a skew in words.
fn describe(skew: Duration) -> String {
    let minutes = skew.as_secs() / 60;
    match (minutes / (24 * 60), (minutes / 60) % 24, minutes % 60) {
        (0, 0, minutes) => format!("{minutes} min"),
        (0, hours, minutes) => format!("{hours} h {minutes} min"),
        (days, hours, _) => format!("{days} days {hours} h"),
    }
}

/// An RFC 3339 time with milliseconds, the ledger's one time format.
pub fn format(time: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skews_read_as_words() {
        assert_eq!(describe(Duration::from_secs(7 * 60)), "7 min");
        assert_eq!(describe(Duration::from_secs(2 * 3600 + 60)), "2 h 1 min");
        assert_eq!(describe(Duration::from_secs(10 * 86_400 + 7200)), "10 days 2 h");
    }

    #[test]
    fn the_ledger_format_has_milliseconds_and_utc() {
        let time = OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("a valid time");
        assert_eq!(format(time), "2026-09-21T14:13:20.000Z");
    }
}
