//! Where a refund stands: one status for the ledger, the results CSV, summaries and `status`.
//!
//! The ledger stores a refund's status by name and the results CSV shows one per row. They are
//! the same set of words but for two: `sending` is only ever stored (a row committed just before
//! its request left), and `invalid` only ever shown (a row that failed validation never reaches
//! the ledger). [`RefundStatus::in_results`] says what the results show for a stored status.

use std::fmt;

/// Where a refund stands. Stored (all but [`RefundStatus::Invalid`]) and shown as its
/// lower-case name ([`RefundStatus::as_str`]).
///
/// Declared in the order summaries list statuses ([`RefundStatus::ALL`]), which is also the
/// order sorted collections of them follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefundStatus {
    /// Payroc approved it (`responseCode` A; a bank transfer submitted to the ACH network).
    Succeeded,
    /// Payroc approved less than was asked (`responseCode` P). Never re-sent: a second send would
    /// refund the approved part twice. Needs a person.
    Partial,
    /// Payroc accepted it for later processing (`responseCode` E, or an answer this version does
    /// not know). Not a definite failure, so never retried.
    Queued,
    /// Payroc declined it (`responseCode` D, R or C): nothing refunded. Final unless retried on
    /// purpose.
    Declined,
    /// A bank transfer the customer's bank returned after it was submitted: nothing was refunded.
    /// Sent again only on purpose (`--retry-failed`, after the bank details are fixed).
    Returned,
    /// Reversed after approval (status `reversal`). Never re-sent automatically: needs a person.
    Reversed,
    /// Payroc refused the request (400, 403, 406, 415): nothing refunded. Final unless retried on
    /// purpose.
    Rejected,
    /// Payroc says the key was used for a different request (409), the order was already
    /// refunded, or the file differs from what was sent for it. Needs a person.
    Conflict,
    /// The request may have reached Payroc but no definite answer came back. Re-sent with the same
    /// key on the next run, or settled by `reconcile`.
    Unknown,
    /// Committed just before a request left; its outcome is not recorded yet. Stored only: the
    /// results show a row left so by a crash as [`RefundStatus::Unknown`] (see
    /// [`RefundStatus::in_results`]).
    Sending,
    /// Known, never sent (or proven never created); or, in the results, not sent yet.
    #[default]
    Pending,
    /// The row failed validation. Shown only: such a row never reaches the ledger, and the
    /// ledger refuses to store or read this status.
    Invalid,
}

impl RefundStatus {
    /// Every status, in the order summaries list them. Summaries list only the statuses they
    /// count, and the results never count `sending` nor the ledger `invalid`, so each lists its
    /// own statuses in this one order.
    pub const ALL: [RefundStatus; 12] = [
        RefundStatus::Succeeded,
        RefundStatus::Partial,
        RefundStatus::Queued,
        RefundStatus::Declined,
        RefundStatus::Returned,
        RefundStatus::Reversed,
        RefundStatus::Rejected,
        RefundStatus::Conflict,
        RefundStatus::Unknown,
        RefundStatus::Sending,
        RefundStatus::Pending,
        RefundStatus::Invalid,
    ];

    /// The one string each status is stored and shown as.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Partial => "partial",
            RefundStatus::Queued => "queued",
            RefundStatus::Declined => "declined",
            RefundStatus::Returned => "returned",
            RefundStatus::Reversed => "reversed",
            RefundStatus::Rejected => "rejected",
            RefundStatus::Conflict => "conflict",
            RefundStatus::Unknown => "unknown",
            RefundStatus::Sending => "sending",
            RefundStatus::Pending => "pending",
            RefundStatus::Invalid => "invalid",
        }
    }

    /// Whether the ledger may hold this status: every one but `invalid`, which only a row that
    /// failed validation has, and such a row is never recorded.
    pub fn is_stored(self) -> bool {
        self != RefundStatus::Invalid
    }

    /// Parses a stored name. Unknown text — `invalid` included, which the ledger never stores —
    /// is a corrupt ledger, not a default.
    pub fn parse_stored(text: &str) -> Option<RefundStatus> {
        RefundStatus::ALL
            .into_iter()
            .find(|status| status.is_stored() && status.as_str() == text)
    }

    /// What the results CSV (and a summary of them) shows for a refund in this status: a row
    /// left `sending` by a crash is `unknown` there, because it may or may not have reached
    /// Payroc. Every other status shows as itself.
    pub fn in_results(self) -> RefundStatus {
        match self {
            RefundStatus::Sending => RefundStatus::Unknown,
            other => other,
        }
    }

    /// A definite failure that `run --retry-failed` may send again under the next key generation.
    pub fn is_retryable_failure(self) -> bool {
        matches!(
            self,
            RefundStatus::Declined | RefundStatus::Rejected | RefundStatus::Returned
        )
    }

    /// Not finished: run again (or reconcile) to finish it. Exit 3.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            RefundStatus::Unknown | RefundStatus::Sending | RefundStatus::Pending
        )
    }

    /// Finished, but a person must look at it. Exit 1.
    pub fn needs_review(self) -> bool {
        matches!(
            self,
            RefundStatus::Partial
                | RefundStatus::Declined
                | RefundStatus::Returned
                | RefundStatus::Reversed
                | RefundStatus::Rejected
                | RefundStatus::Conflict
                | RefundStatus::Invalid
        )
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl serde::Serialize for RefundStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A row the dispatcher did not send (or settled without sending), and why: what the results
/// show for it instead of the ledger's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowNote {
    /// The status the results show for the row.
    pub status: RefundStatus,
    /// The explanation, for the `error` column.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_one_name_and_one_kind() {
        let names: Vec<&str> = RefundStatus::ALL.iter().map(|status| status.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for status in RefundStatus::ALL {
            let kinds = [
                status.is_unfinished(),
                status.needs_review(),
                matches!(status, RefundStatus::Succeeded | RefundStatus::Queued),
            ];
            assert_eq!(kinds.iter().filter(|kind| **kind).count(), 1, "{status}");
        }
        let mut sorted = RefundStatus::ALL;
        sorted.sort_unstable();
        assert_eq!(sorted, RefundStatus::ALL, "declared in the order summaries list them");
    }

    #[test]
    fn stored_statuses_round_trip_and_invalid_is_never_stored() {
        for status in RefundStatus::ALL {
            let read = RefundStatus::parse_stored(status.as_str());
            match status {
                RefundStatus::Invalid => assert_eq!(read, None, "the ledger never stores invalid"),
                _ => assert_eq!(read, Some(status)),
            }
        }
        assert_eq!(RefundStatus::parse_stored("done"), None);
        assert_eq!(RefundStatus::parse_stored("Succeeded"), None);
    }

    #[test]
    fn a_status_shows_in_the_results_as_itself_except_sending() {
        assert_eq!(RefundStatus::Sending.in_results(), RefundStatus::Unknown);
        for status in RefundStatus::ALL {
            if status != RefundStatus::Sending {
                assert_eq!(status.in_results(), status, "one name per status");
            }
            assert_ne!(status.in_results(), RefundStatus::Sending);
        }
    }

    #[test]
    fn only_definite_failures_are_retried_on_request() {
        for status in RefundStatus::ALL {
            assert_eq!(
                status.is_retryable_failure(),
                matches!(
                    status,
                    RefundStatus::Declined | RefundStatus::Rejected | RefundStatus::Returned
                ),
                "{status}"
            );
        }
    }
}
