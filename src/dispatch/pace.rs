//! Pacing: how often the dispatcher commits (a group of `sending` marks and the outcomes that
//! came back, one fsync) and how many permits each send wake-up waits for. The rate limiter
//! itself is [`crate::payroc::RequestLimiter`]; this decides the grouping around it.

use std::num::NonZeroU32;
use std::time::Duration;

/// How far ahead rows are marked `sending`: each commit marks the rows the rate limiter will
/// let go in the next [`GROUP_PERIOD`], and they then leave one permit at a time without a
/// commit of their own. Outcomes that came back in the meantime share that commit too.
///
/// A second: at the default rate of 20/s a commit (an fsync and a few WAL pages, the costliest
/// thing the tool does per group) then serves 16 rows (twice the default concurrency) instead of
/// the 5 a quarter second held: about a seventh less CPU per row at that pace, measured. At hundreds
/// of rows a second the group is bounded by twice the concurrency well inside the second anyway.
///
/// The price of marking ahead: after a crash, a row marked but not yet sent counts as "may
/// have reached Payroc" like any row found `sending` (so a later refusal of it reads `unknown`,
/// never a new key) — at most this period's worth of rows, and never more than twice the
/// concurrency. On a clean stop, marked rows that were never sent go back to what they were, in
/// one commit. An outcome waits at most this long for its commit.
pub(super) const GROUP_PERIOD: Duration = Duration::from_millis(1000);

/// The most rows one commit marks, whatever the rate.
const GROUP_ROWS_LIMIT: usize = 256;

/// How requests are paced.
///
/// Commits and sends are paced apart. A commit (an fsync) happens once per [`GROUP_PERIOD`],
/// or when the marked rows run out: it records the outcomes that came back and marks the next
/// group `sending`. Sends wake the dispatcher once per `tick_rows` permits — [`TICK`] of rate,
/// a pair at rates that give two within [`LONGEST_TICK`], one at rates lower still — and cost
/// no commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pace {
    /// Permits a send wake-up waits for (fewer when fewer rows are marked or slots are free).
    pub(super) tick_rows: u32,
    /// The limiter's burst: a tick's permits plus [`TICK_LATENESS`] of rate, so that a tick
    /// that wakes late (the timer's granularity, a commit) finds the permits it missed still
    /// there instead of losing them. The price: over any window of W seconds at most
    /// rate·W + burst requests start, e.g. 512 in a second at --rate 500, 23 at --rate 20.
    pub(super) burst: NonZeroU32,
    /// Rows one commit marks `sending`: [`GROUP_PERIOD`] of rate, at least one, at most
    /// [`GROUP_ROWS_LIMIT`] and twice the concurrency.
    pub(super) group_rows: usize,
}

/// The time a send wake-up's permits take to accrue at the run's rate.
const TICK: Duration = Duration::from_millis(20);

/// How late a tick may wake without losing permits (see [`Pace::burst`]).
const TICK_LATENESS: Duration = Duration::from_millis(5);

/// The longest a send wake-up waits to gather a pair of permits, at rates too low to fill a
/// [`TICK`].
///
/// Why pairs: at the default rate of 20/s a wake-up per permit is one every 50 ms, and each
/// wake-up of an idle process runs its code cold — on a virtual machine tens of microseconds of
/// CPU before any work, and the row's work at several times its warm cost. Two rows sent per
/// wake-up (and their two answers, which come back together) share that: measured at --rate 20
/// over a 50 ms API, about a fifth less CPU per row and 1.4 context switches per row instead of
/// 2.3. The rate is unchanged; the price is one more request in the limiter's burst (23 in any
/// second at --rate 20, was 22). A hundred milliseconds: below 20/s a pair would take longer than
/// that to gather, and a slow rate is usually asked for to spread requests out, not to bunch them.
const LONGEST_TICK: Duration = Duration::from_millis(100);

impl Pace {
    pub(super) fn new(rate: NonZeroU32, concurrency: usize) -> Pace {
        let slots = u32::try_from(concurrency).unwrap_or(u32::MAX).max(1);
        let permits_in = |period: Duration| {
            let permits = u128::from(rate.get()) * period.as_millis() / 1000;
            u32::try_from(permits).unwrap_or(u32::MAX)
        };
        let tick_rows = permits_in(TICK).max(permits_in(LONGEST_TICK).min(2)).clamp(1, slots);
        let burst = (tick_rows + permits_in(TICK_LATENESS).max(1)).clamp(2, slots.saturating_mul(2).max(2));
        let group_rows = usize::try_from(permits_in(GROUP_PERIOD)).unwrap_or(usize::MAX);
        // Never more marked than two rounds of requests in flight: when the concurrency, not
        // the rate, is the limit (a slow API), a marked row must not wait long to leave.
        let rounds = usize::try_from(slots).unwrap_or(usize::MAX).saturating_mul(2);
        Pace {
            tick_rows,
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            group_rows: group_rows.clamp(1, GROUP_ROWS_LIMIT).min(rounds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_wake_per_twenty_milliseconds_of_rate_or_per_pair_and_commits_mark_a_second() {
        let pace = |rate: u32, concurrency: usize| {
            let pace = Pace::new(NonZeroU32::new(rate).expect("positive"), concurrency);
            (pace.tick_rows, pace.burst.get(), pace.group_rows)
        };
        assert_eq!(pace(500, 64), (10, 12, 128));
        assert_eq!(
            pace(20, 8),
            (2, 3, 16),
            "the default rate: a pair of sends per wake-up, a commit per 16 rows"
        );
        assert_eq!(
            pace(50, 8),
            (2, 3, 16),
            "a pair until twenty milliseconds of rate hold more"
        );
        assert_eq!(
            pace(19, 8),
            (1, 2, 16),
            "a pair would take longer than 100 ms to gather"
        );
        assert_eq!(pace(20, 1), (1, 2, 2), "never more than the slots");
        assert_eq!(pace(5, 8), (1, 2, 5), "a second of rate when that is fewer");
        assert_eq!(pace(1, 1), (1, 2, 1));
        assert_eq!(
            pace(100_000, 64),
            (64, 128, 128),
            "never more than the free slots at once, nor marks for more than two rounds of them"
        );
        assert_eq!(pace(100_000, 1_000), (1_000, 1_500, GROUP_ROWS_LIMIT));
        assert_eq!(pace(500, 8), (8, 10, 16), "a slow API: the concurrency is the limit");
    }
}
