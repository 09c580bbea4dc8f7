//! Exit codes, for cron: what a run's end means, as one number. `2` promises that nothing was sent,
//! so it is never used once a request may have left.

/// How a command ended. The numbers are a contract with scripts; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// Every row succeeded (or was already done).
    Success = 0,
    /// Finished, but some rows need a person: declined, rejected, conflict, invalid.
    NeedsReview = 1,
    /// Usage, configuration or input error: nothing was sent.
    Usage = 2,
    /// Incomplete: rows are pending or unknown. Run the same command again to resume.
    Incomplete = 3,
    /// Authentication failed.
    Authentication = 4,
    /// The local clock is more than five minutes off Payroc's: nothing was sent. Fix the clock.
    ClockSkew = 5,
    /// Busy, try again later: another command holds the ledger. Nothing was sent. The number is
    /// `EX_TEMPFAIL` from `sysexits.h`, which schedulers read as "retry later".
    TryLater = 75,
}

/// The exit codes in words, for `--help` and the man page (the README has the same table).
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0   every row succeeded (or was already done)
  1   finished; some rows need a person (declined, partial, returned, reversed, rejected, conflict, invalid)
  2   usage, configuration or input error: nothing was sent
  3   incomplete: rows are pending or unknown (interrupted, stopped early, the input changed): run again
  4   authentication failed
  5   this machine's clock is more than five minutes off Payroc's: nothing was sent; fix the clock
  75  busy: another command holds the ledger; nothing was sent; try again later";

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status of a run from its row counts: incomplete beats needs-review beats success.
    pub fn from_counts(unfinished: u64, needs_review: u64) -> ExitStatus {
        if unfinished > 0 {
            ExitStatus::Incomplete
        } else if needs_review > 0 {
            ExitStatus::NeedsReview
        } else {
            ExitStatus::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers_and_incomplete_wins() {
        assert_eq!(
            [
                ExitStatus::Success,
                ExitStatus::NeedsReview,
                ExitStatus::Usage,
                ExitStatus::Incomplete,
                ExitStatus::Authentication,
                ExitStatus::ClockSkew,
                ExitStatus::TryLater
            ]
            .map(ExitStatus::code),
            [0, 1, 2, 3, 4, 5, 75]
        );
        assert_eq!(ExitStatus::from_counts(0, 0), ExitStatus::Success);
        assert_eq!(ExitStatus::from_counts(0, 2), ExitStatus::NeedsReview);
        assert_eq!(ExitStatus::from_counts(1, 2), ExitStatus::Incomplete);
    }
}
