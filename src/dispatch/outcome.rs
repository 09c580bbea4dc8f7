//! The one table that turns Payroc's answer into a refund's ledger state.
//!
//! The client reports what happened on the wire in Payroc's words ([`SendResult`]); the
//! dispatcher and `reconcile` pass it through [`of_send`] (or a listed refund through
//! [`of_refund`]) and record what comes out. Nothing else in the crate decides a state from an
//! answer, so the rules that keep a refund from being sent twice live here, together:
//!
//! - A refusal (4xx, 409) proves nothing was created only when **no request of the refund's
//!   current key generation may have reached Payroc before** — not in this run, not in an
//!   earlier one. Otherwise it is `unknown`: the refusal of a re-send says nothing about the
//!   first send, which may have created the refund (a terminal's capability switched off
//!   meanwhile, a layer in front of Payroc's idempotency check, a 409 for a request still in
//!   progress). `--retry-failed` never mints a new key for an `unknown` row.
//! - A 2xx proves a refund only when its body is one: it has a `refundId` and is for the order
//!   that was sent. Anything else is `unknown`, with the raw status in the error.
//! - An approval is `succeeded` only when the response code says approved and the status does
//!   not say otherwise; a code or status this version does not know is never `succeeded`.
//! - What Payroc says beyond the state is kept: the authorized amount (a partial approval's is
//!   less than asked), approval and processor codes, and notes — a custom field Payroc left out,
//!   a status this version does not know, an authorized amount that is not whole minor units.

use crate::ledger::{PayrocAnswer, RefundUpdate};
use crate::payroc::answer::TransactionResult;
use crate::payroc::{CreatedRefund, SendReport, SendResult};
use crate::refund::RefundStatus;
use crate::refund::{Method, PayrocRefundId};

/// Problem type Payroc uses when a key was first used with a different body (under 409 or 400).
const KEY_IN_USE: &str = "idempotency-key-in-use";

/// Card statuses that contradict an approval code (`reversal` is read on its own, as `reversed`):
/// such an answer is never `succeeded`.
const CARD_STATUSES_NEVER_SUCCEEDED: [&str; 4] = ["declined", "expired", "referral", "pickup"];

/// What was sent, as far as reading the answer needs it.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    /// Card or bank.
    pub method: Method,
    /// The order id sent: an answer for another order proves nothing.
    pub order_id: &'a str,
    /// The `customFields` names sent: each one Payroc leaves out gets a note.
    pub custom_field_names: &'a [String],
}

/// The ledger outcome of one send, given whether a request of the same key generation may have
/// reached Payroc before this send began.
pub fn of_send(report: &SendReport, sent: Sent<'_>, reached_before: bool) -> RefundUpdate {
    let Sent {
        method,
        order_id,
        custom_field_names,
    } = sent;
    // Earlier requests of this very send (a timeout, then a retry) count as "before" too.
    let reached_before = reached_before || report.maybe_reached;
    match &report.result {
        SendResult::Created { http_status, refund } => {
            let status = *http_status;
            let http_status = Some(i64::from(status));
            let proves_nothing = |why: String| RefundUpdate {
                state: Some(RefundStatus::Unknown),
                answer: PayrocAnswer {
                    http_status,
                    problem_detail: Some(format!(
                        "{why}, which proves nothing: the refund may or may not exist. Run `refund-batch reconcile` on this file"
                    )),
                    ..PayrocAnswer::default()
                },
                may_have_reached: true,
            };
            let Some(refund) = refund else {
                return proves_nothing(format!(
                    "Payroc answered HTTP {status} with a body that is not a refund"
                ));
            };
            if refund.refund_id.as_deref().is_none_or(str::is_empty) {
                return proves_nothing(format!("Payroc answered HTTP {status} without a refundId"));
            }
            let answered_order = refund.order.as_ref().and_then(|order| order.order_id.as_deref());
            if let Some(other) = answered_order.filter(|answered| *answered != order_id) {
                return proves_nothing(format!(
                    "Payroc answered HTTP {status} with a refund for another order ({other:?})"
                ));
            }
            let mut outcome = RefundUpdate {
                may_have_reached: true,
                ..of_refund(method, refund)
            };
            outcome.answer.http_status = http_status;
            // Payroc processes the refund but leaves out custom fields whose names are not set
            // up in its portal: the refund still counts, and the row says which were dropped.
            let kept: Vec<&str> = refund
                .custom_fields
                .iter()
                .flatten()
                .filter_map(|field| field.name.as_deref())
                .collect();
            let dropped: Vec<String> = custom_field_names
                .iter()
                .filter(|name| !kept.contains(&name.as_str()))
                .map(|name| format!("Payroc left out custom field {name:?} (is it set up in the Payroc portal?)"))
                .collect();
            add_notes(&mut outcome, dropped);
            outcome
        }
        SendResult::Refused {
            http_status,
            problem_type,
            detail,
        } => {
            let key_in_use = problem_type.as_deref().is_some_and(|kind| kind.ends_with(KEY_IN_USE));
            let state = if reached_before {
                RefundStatus::Unknown
            } else if *http_status == 409 || key_in_use {
                RefundStatus::Conflict
            } else {
                RefundStatus::Rejected
            };
            let detail = if reached_before {
                format!(
                    "Payroc answered HTTP {http_status} to a re-send, but an earlier request of this refund may have reached Payroc, \
                     so the refusal proves nothing about it: {detail}. Run `refund-batch reconcile` on this file"
                )
            } else {
                detail.clone()
            };
            RefundUpdate {
                state: Some(state),
                answer: PayrocAnswer {
                    http_status: Some(i64::from(*http_status)),
                    problem_type: problem_type.clone(),
                    problem_detail: Some(detail),
                    ..PayrocAnswer::default()
                },
                may_have_reached: reached_before,
            }
        }
        SendResult::GaveUp {
            maybe_reached,
            detail,
            http_status,
        } => RefundUpdate {
            // Only a refund none of whose requests could have reached Payroc goes back to pending.
            state: Some(unfinished_state(reached_before || *maybe_reached)),
            answer: PayrocAnswer {
                http_status: http_status.map(i64::from),
                problem_detail: Some(detail.clone()),
                ..PayrocAnswer::default()
            },
            may_have_reached: reached_before || *maybe_reached,
        },
        // A 401 (or no token at all) means Payroc did not process *that* request; an earlier one
        // may have been, and then the row is unknown.
        SendResult::Systemic(error) => RefundUpdate {
            state: Some(unfinished_state(reached_before)),
            answer: PayrocAnswer {
                problem_detail: Some(error.to_string()),
                ..PayrocAnswer::default()
            },
            may_have_reached: reached_before,
        },
    }
}

fn unfinished_state(may_have_reached: bool) -> RefundStatus {
    if may_have_reached {
        RefundStatus::Unknown
    } else {
        RefundStatus::Pending
    }
}

/// The outcome of a refund Payroc has (created, replayed, listed or read again), from its
/// `transactionResult`: the response code and the status together.
pub fn of_refund(method: Method, refund: &CreatedRefund) -> RefundUpdate {
    let empty = TransactionResult::default();
    let result = refund.transaction_result.as_ref().unwrap_or(&empty);
    let state = state_of(method, result);
    let mut notes = Vec::new();
    let authorized_amount_minor = match &result.authorized_amount {
        // Negative when money goes to the customer; kept as the positive amount refunded.
        Some(Ok(minor)) => Some(minor.saturating_abs()),
        Some(Err(text)) => {
            notes.push(format!(
                "Payroc's authorizedAmount {text} is not a whole number of minor units; not recorded"
            ));
            None
        }
        None => None,
    };
    if state == RefundStatus::Queued && !(method == Method::Card && result.response_code.as_deref() == Some("E")) {
        notes.push(format!(
            "Payroc answered status {:?} with response code {:?}, which this version does not read as approved or declined: counted as queued, check it in Payroc",
            result.status.as_deref().unwrap_or(""),
            result.response_code.as_deref().unwrap_or("")
        ));
    }
    let mut outcome = RefundUpdate {
        state: Some(state),
        answer: PayrocAnswer {
            // Payroc's id is 10 characters, never a number to hide; kept exact so lookups match it.
            refund_id: refund.refund_id.clone().map(PayrocRefundId),
            payroc_status: result.status.clone(),
            response_code: result.response_code.clone(),
            response_message: result.response_message.clone(),
            approval_code: result.approval_code.clone(),
            processor_response_code: result.processor_response_code.clone(),
            authorized_amount_minor,
            ..PayrocAnswer::default()
        },
        ..RefundUpdate::default()
    };
    add_notes(&mut outcome, notes);
    outcome
}

fn add_notes(outcome: &mut RefundUpdate, notes: Vec<String>) {
    if notes.is_empty() {
        return;
    }
    let mut all: Vec<String> = outcome.answer.notes.take().into_iter().collect();
    all.extend(notes);
    outcome.answer.notes = Some(all.join("; "));
}

/// The state a `transactionResult` means: one reading for card and bank alike, in two steps.
///
/// 1. **The status first**, when it contradicts the code: a status that says the money did not
///    go (or came back) wins over an approval code — bank `declined` is `declined`, `returned`
///    is `returned`, `reversal` (card or bank) is `reversed`. A card `declined`, `expired`,
///    `referral` or `pickup` status disputes an approval only: with `A` it is `queued` for a
///    person (a card answer's code is required and names the decline when there is one; an
///    approval next to a declining status is a contradiction, not a decline). A status this
///    version does not know — `admin`, a new word, another spelling (`Declined`), none at all —
///    is `queued`: never `succeeded`, because nothing says the refund went through, and never a
///    definite failure either, because something may have been refunded and a definite failure
///    lets `--retry-failed` send it again under a new key. `queued` is the state that says so:
///    not counted as refunded, never re-sent, and read again by `reconcile --refresh`.
/// 2. **Then the code**: `A` is `succeeded`; `D` (card also `R`, `C`) is `declined`; card `P` is
///    `partial`; card `E` (accepted for later processing) and any code this version does not
///    know are `queued`. A bank transfer may have no code: then `ready`, `pending` and `complete`
///    (submitted to the ACH network) are `succeeded`.
pub fn state_of(method: Method, result: &TransactionResult) -> RefundStatus {
    let status = StatusSays::of(method, result.status.as_deref());
    let code = CodeSays::of(method, result.response_code.as_deref());
    match (status, code) {
        (StatusSays::Final(state), _) => state,
        (StatusSays::NotKnown, _) => RefundStatus::Queued,
        (StatusSays::DisputesApproval, CodeSays::Approved) => RefundStatus::Queued,
        (_, CodeSays::Approved) => RefundStatus::Succeeded,
        (_, CodeSays::Declined) => RefundStatus::Declined,
        (_, CodeSays::Partial) => RefundStatus::Partial,
        (_, CodeSays::Queued | CodeSays::NotKnown) => RefundStatus::Queued,
        (StatusSays::GoingThrough, CodeSays::Absent) => RefundStatus::Succeeded,
        (StatusSays::DisputesApproval, CodeSays::Absent) => RefundStatus::Queued,
    }
}

/// What `transactionResult.status` says before the code is read (see [`state_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusSays {
    /// Submitted, approved or settled (`ready`, `pending`, `complete`; card `accepted`): the
    /// code decides.
    GoingThrough,
    /// The refund did not go through, or was undone, whatever the code says.
    Final(RefundStatus),
    /// Card `declined`, `expired`, `referral`, `pickup`: a decline code is read as one, an
    /// approval code is a contradiction.
    DisputesApproval,
    /// `admin`, a status this version does not know, or none.
    NotKnown,
}

impl StatusSays {
    fn of(method: Method, status: Option<&str>) -> StatusSays {
        match (method, status) {
            (_, Some("ready" | "pending" | "complete")) | (Method::Card, Some("accepted")) => StatusSays::GoingThrough,
            (_, Some("reversal")) => StatusSays::Final(RefundStatus::Reversed),
            (Method::Bank, Some("returned")) => StatusSays::Final(RefundStatus::Returned),
            (Method::Bank, Some("declined")) => StatusSays::Final(RefundStatus::Declined),
            (Method::Card, Some(status)) if CARD_STATUSES_NEVER_SUCCEEDED.contains(&status) => {
                StatusSays::DisputesApproval
            }
            _ => StatusSays::NotKnown,
        }
    }
}

/// What `transactionResult.responseCode` says (see [`state_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeSays {
    /// `A`.
    Approved,
    /// `D`; card `R` (call the bank) and `C` (keep the card).
    Declined,
    /// Card `P`: less than asked was approved.
    Partial,
    /// Card `E`: accepted for later processing.
    Queued,
    /// A code this version does not know for the method (lower case included).
    NotKnown,
    /// No code: allowed for a bank transfer only (a card answer always has one).
    Absent,
}

impl CodeSays {
    fn of(method: Method, code: Option<&str>) -> CodeSays {
        match (method, code) {
            (_, Some("A")) => CodeSays::Approved,
            (_, Some("D")) | (Method::Card, Some("R" | "C")) => CodeSays::Declined,
            (Method::Card, Some("P")) => CodeSays::Partial,
            (Method::Card, Some("E")) => CodeSays::Queued,
            (Method::Bank, None) => CodeSays::Absent,
            _ => CodeSays::NotKnown,
        }
    }
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
