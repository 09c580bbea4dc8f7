//! What the results CSV says of a row: one word per line, with what to do about it.

use std::fmt;

/// A row's status in the results (and in summaries). Stored and shown as its lower-case name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultStatus {
    /// Refunded.
    Succeeded,
    /// Approved for less than asked; never re-sent.
    Partial,
    /// Accepted for later processing, or an answer this version does not know.
    Queued,
    /// Declined: nothing refunded.
    Declined,
    /// A bank transfer returned after it was submitted: nothing refunded.
    Returned,
    /// Reversed after approval.
    Reversed,
    /// Refused by Payroc: nothing refunded.
    Rejected,
    /// The order was already refunded, or the file differs from what was sent for it.
    Conflict,
    /// May or may not have reached Payroc.
    Unknown,
    /// Not sent yet.
    #[default]
    Pending,
    /// The row failed validation.
    Invalid,
}

impl ResultStatus {
    /// Every status, in the order summaries list them.
    pub const ALL: [ResultStatus; 11] = [
        ResultStatus::Succeeded,
        ResultStatus::Partial,
        ResultStatus::Queued,
        ResultStatus::Declined,
        ResultStatus::Returned,
        ResultStatus::Reversed,
        ResultStatus::Rejected,
        ResultStatus::Conflict,
        ResultStatus::Unknown,
        ResultStatus::Pending,
        ResultStatus::Invalid,
    ];

    /// The one string each status is written as.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Succeeded => "succeeded",
            ResultStatus::Partial => "partial",
            ResultStatus::Queued => "queued",
            ResultStatus::Declined => "declined",
            ResultStatus::Returned => "returned",
            ResultStatus::Reversed => "reversed",
            ResultStatus::Rejected => "rejected",
            ResultStatus::Conflict => "conflict",
            ResultStatus::Unknown => "unknown",
            ResultStatus::Pending => "pending",
            ResultStatus::Invalid => "invalid",
        }
    }

    /// Not finished: run again (or reconcile) to finish it. Exit 3.
    pub fn is_unfinished(self) -> bool {
        matches!(self, ResultStatus::Unknown | ResultStatus::Pending)
    }

    /// Finished, but a person must look at it. Exit 1.
    pub fn needs_review(self) -> bool {
        matches!(
            self,
            ResultStatus::Partial
                | ResultStatus::Declined
                | ResultStatus::Returned
                | ResultStatus::Reversed
                | ResultStatus::Rejected
                | ResultStatus::Conflict
                | ResultStatus::Invalid
        )
    }
}

impl fmt::Display for ResultStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl serde::Serialize for ResultStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A row the dispatcher did not send (or settled without sending), and why: what the results
/// show for it instead of the ledger's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowNote {
    /// The status the results show for the row.
    pub status: ResultStatus,
    /// The explanation, for the `error` column.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_one_name_and_one_kind() {
        let names: Vec<&str> = ResultStatus::ALL.iter().map(|status| status.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for status in ResultStatus::ALL {
            let kinds = [
                status.is_unfinished(),
                status.needs_review(),
                matches!(status, ResultStatus::Succeeded | ResultStatus::Queued),
            ];
            assert_eq!(kinds.iter().filter(|kind| **kind).count(), 1, "{status}");
        }
    }
}
