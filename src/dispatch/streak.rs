//! Failure streaks: noticing that the whole run, not one row, is failing — the API down, an
//! account refused — so the dispatcher stops and leaves the rest for the next run instead of
//! burning every row's retries.

use crate::payroc::SendResult;

use super::StopReason;

/// How many consecutive refunds giving up the same way mean "the API is down": stop and leave
/// the rest for the next run instead of burning every row's retries.
const REPEATED_FAILURE_LIMIT: u32 = 10;

/// How many consecutive refunds rejected for a reason that is about the account, not the row
/// (a terminal without the capability, a forbidden call), stop the run: every other row would
/// be rejected the same way and need `--retry-failed` once the account is fixed.
const SYSTEMIC_REJECTION_LIMIT: u32 = 5;

/// Problem types that are about the account or the integration rather than one row.
const SYSTEMIC_PROBLEM_TYPES: [&str; 4] = [
    "capabilities-missing",
    "forbidden",
    "not-acceptable",
    "unsupported-media-type",
];

/// Counts consecutive failures of one kind, to notice when the whole run is failing.
#[derive(Default)]
pub(super) struct FailureStreak {
    kind: Option<String>,
    count: u32,
}

/// The kind of failure a result is, with how many in a row stop the run and its detail, if
/// it is one that can stop the run: no answer at all, or a refusal about the account.
pub(super) fn run_stopping_failure(result: &SendResult) -> Option<(String, u32, &str)> {
    match result {
        SendResult::GaveUp { detail, .. } => Some(("no answer".to_owned(), REPEATED_FAILURE_LIMIT, detail)),
        SendResult::Refused {
            http_status,
            problem_type,
            detail,
        } => {
            let kind = problem_type.clone().unwrap_or_default();
            let systemic = SYSTEMIC_PROBLEM_TYPES.iter().any(|suffix| kind.ends_with(suffix)) || *http_status == 403;
            systemic.then_some((kind, SYSTEMIC_REJECTION_LIMIT, detail.as_str()))
        }
        _ => None,
    }
}

impl FailureStreak {
    /// Records one result and returns the reason to stop, if the streak has become systemic.
    pub(super) fn observe(&mut self, result: &SendResult) -> Option<StopReason> {
        let Some((kind, limit, detail)) = run_stopping_failure(result) else {
            *self = FailureStreak::default();
            return None;
        };
        if self.kind.as_deref() == Some(kind.as_str()) {
            self.count += 1;
        } else {
            self.kind = Some(kind);
            self.count = 1;
        }
        (self.count >= limit).then(|| {
            StopReason::Repeated(format!(
                "{} refunds in a row failed the same way, so the rest were not sent (they stay pending: fix the cause and run again). The last: {detail}",
                self.count
            ))
        })
    }
}
