//! What a person does about a row, by its status: one text per status, used by the summary at
//! the end of a command (grouped, with counts) and by the workbook's *Needs a person* sheet (row
//! by row), so the two never give different advice.

use crate::refund::RefundStatus;
use crate::report::results::Tally;
use crate::report::terminal::rows;

/// What to do about one row with `status`; `None` for a row that needs nothing (`succeeded`).
pub fn for_row(status: RefundStatus) -> Option<&'static str> {
    Some(match status {
        RefundStatus::Succeeded => return None,
        RefundStatus::Queued => {
            "accepted by Payroc for later processing: nothing to do now; `reconcile FILE --include-queued` reads whether it settled"
        }
        RefundStatus::Unknown | RefundStatus::Sending | RefundStatus::Pending => UNFINISHED,
        RefundStatus::Declined | RefundStatus::Rejected => DECLINED,
        RefundStatus::Returned => RETURNED,
        RefundStatus::Partial => PARTIAL,
        RefundStatus::Reversed => REVERSED,
        RefundStatus::Conflict => CONFLICT,
        RefundStatus::Invalid => INVALID,
    })
}

const UNFINISHED: &str =
    "run the same command again to resume (it keeps its key, so it is never refunded twice), or `reconcile FILE`";
const DECLINED: &str =
    "see the error column of the results, fix what it says in the file and run again with --retry-failed";
const RETURNED: &str = "nothing was refunded: fix the bank details and run again with --retry-failed";
const PARTIAL: &str = "authorized_amount is what was refunded; never re-sent, as that would refund the approved part twice: refund the rest under a new order_id if it is owed";
const REVERSED: &str = "nothing was refunded: find out why before refunding again under a new order_id";
const CONFLICT: &str =
    "the order was already refunded, or the file differs from what was sent for it: see the error column";
const INVALID: &str = "fix the row in the file as the error column of the results says and run again";

/// What to do next, in words, one line per kind of row that needs something (the end of a
/// command's summary).
pub fn for_tally(tally: &Tally) -> Vec<String> {
    let count = |status| tally.count(status);
    let kinds: [(u64, &str, &str); 7] = [
        (
            tally.count_where(RefundStatus::is_unfinished),
            "not finished (unknown or pending)",
            UNFINISHED,
        ),
        (
            count(RefundStatus::Declined) + count(RefundStatus::Rejected),
            "declined or rejected",
            DECLINED,
        ),
        (
            count(RefundStatus::Returned),
            "returned by the customer's bank",
            RETURNED,
        ),
        (count(RefundStatus::Partial), "only partly approved", PARTIAL),
        (count(RefundStatus::Reversed), "reversed after approval", REVERSED),
        (count(RefundStatus::Conflict), "in conflict", CONFLICT),
        (count(RefundStatus::Invalid), "invalid", INVALID),
    ];
    kinds
        .iter()
        .filter(|(rows_of_kind, _, _)| *rows_of_kind > 0)
        .map(|(rows_of_kind, kind, what)| format!("{} {kind}: {what}", rows(*rows_of_kind)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_but_succeeded_says_what_to_do() {
        for status in RefundStatus::ALL {
            assert_eq!(for_row(status).is_none(), status == RefundStatus::Succeeded, "{status}");
        }
    }

    #[test]
    fn the_summary_groups_kinds_with_their_counts() {
        let mut tally = Tally::default();
        tally.rows.insert(RefundStatus::Declined, 2);
        tally.rows.insert(RefundStatus::Rejected, 1);
        tally.rows.insert(RefundStatus::Succeeded, 5);
        tally.rows.insert(RefundStatus::Pending, 1);
        let steps = for_tally(&tally);
        assert_eq!(steps.len(), 2);
        assert!(steps[0].starts_with("1 row not finished"), "{steps:?}");
        assert!(
            steps[1].starts_with("3 rows declined or rejected: see the error column"),
            "{steps:?}"
        );
    }
}
