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

use crate::ledger::{RefundState, RefundUpdate};
use crate::payroc::answer::TransactionResult;
use crate::payroc::{CreatedRefund, SendReport, SendResult};
use crate::refund::{Method, PayrocRefundId};

/// Problem type Payroc uses when a key was first used with a different body (under 409 or 400).
const KEY_IN_USE: &str = "idempotency-key-in-use";

/// Card statuses that contradict an approval code: such an answer is never `succeeded`.
const CARD_STATUSES_NEVER_SUCCEEDED: [&str; 5] = ["declined", "reversal", "expired", "referral", "pickup"];

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
                state: Some(RefundState::Unknown),
                http_status,
                problem_detail: Some(format!(
                    "{why}, which proves nothing: the refund may or may not exist. Run `refund-batch reconcile` on this file"
                )),
                may_have_reached: true,
                ..RefundUpdate::default()
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
                http_status,
                may_have_reached: true,
                ..of_refund(method, refund)
            };
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
                RefundState::Unknown
            } else if *http_status == 409 || key_in_use {
                RefundState::Conflict
            } else {
                RefundState::Rejected
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
                http_status: Some(i64::from(*http_status)),
                problem_type: problem_type.clone(),
                problem_detail: Some(detail),
                may_have_reached: reached_before,
                ..RefundUpdate::default()
            }
        }
        SendResult::GaveUp {
            maybe_reached,
            detail,
            http_status,
        } => RefundUpdate {
            // Only a refund none of whose requests could have reached Payroc goes back to pending.
            state: Some(unfinished_state(reached_before || *maybe_reached)),
            http_status: http_status.map(i64::from),
            problem_detail: Some(detail.clone()),
            may_have_reached: reached_before || *maybe_reached,
            ..RefundUpdate::default()
        },
        // A 401 (or no token at all) means Payroc did not process *that* request; an earlier one
        // may have been, and then the row is unknown.
        SendResult::Systemic(error) => RefundUpdate {
            state: Some(unfinished_state(reached_before)),
            problem_detail: Some(error.to_string()),
            may_have_reached: reached_before,
            ..RefundUpdate::default()
        },
    }
}

fn unfinished_state(may_have_reached: bool) -> RefundState {
    if may_have_reached {
        RefundState::Unknown
    } else {
        RefundState::Pending
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
    if state == RefundState::Queued && !(method == Method::Card && result.response_code.as_deref() == Some("E")) {
        notes.push(format!(
            "Payroc answered status {:?} with response code {:?}, which this version does not read as approved or declined: counted as queued, check it in Payroc",
            result.status.as_deref().unwrap_or(""),
            result.response_code.as_deref().unwrap_or("")
        ));
    }
    let mut outcome = RefundUpdate {
        state: Some(state),
        // Payroc's id is 10 characters, never a number to hide; kept exact so lookups match it.
        refund_id: refund.refund_id.clone().map(PayrocRefundId),
        payroc_status: result.status.clone(),
        response_code: result.response_code.clone(),
        response_message: result.response_message.clone(),
        approval_code: result.approval_code.clone(),
        processor_response_code: result.processor_response_code.clone(),
        authorized_amount_minor,
        ..RefundUpdate::default()
    };
    add_notes(&mut outcome, notes);
    outcome
}

fn add_notes(outcome: &mut RefundUpdate, notes: Vec<String>) {
    if notes.is_empty() {
        return;
    }
    let mut all: Vec<String> = outcome.notes.take().into_iter().collect();
    all.extend(notes);
    outcome.notes = Some(all.join("; "));
}

/// The state a `transactionResult` means.
///
/// Card: `A` is `succeeded` unless the status contradicts it (`reversal` is `reversed`;
/// `declined`, `expired`, `referral`, `pickup` are `queued` for a person to look at); `D`, `R`,
/// `C` are declines; `P` is `partial`; `E` (accepted for later processing) and anything unknown
/// are `queued`: not a definite failure, so never retried under a new key, and never counted as
/// refunded.
///
/// Bank transfers (`responseCode` optional, no enum): a `returned` or `reversal` status wins (it
/// comes later, read again by `reconcile --refresh`, and the first answer's code stays `A`);
/// otherwise by the code when there is one, else by the status — `declined` is a decline,
/// `ready`/`pending`/`complete` were submitted to the ACH network; anything else is `queued`.
pub fn state_of(method: Method, result: &TransactionResult) -> RefundState {
    let status = result.status.as_deref();
    let code = result.response_code.as_deref();
    match (method, status, code) {
        (_, Some("reversal"), _) => RefundState::Reversed,
        (Method::Bank, Some("returned"), _) => RefundState::Returned,
        (Method::Card, Some(status), Some("A")) if CARD_STATUSES_NEVER_SUCCEEDED.contains(&status) => {
            RefundState::Queued
        }
        (_, _, Some("A")) => RefundState::Succeeded,
        (_, _, Some("D" | "R" | "C")) => RefundState::Declined,
        (Method::Card, _, Some("P")) => RefundState::Partial,
        (Method::Bank, Some("declined"), None) => RefundState::Declined,
        (Method::Bank, Some("ready" | "pending" | "complete"), None) => RefundState::Succeeded,
        _ => RefundState::Queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payroc::answer::RefundOrder;

    fn created(refund_id: Option<&str>, order_id: &str, status: &str, code: Option<&str>) -> SendResult {
        SendResult::Created {
            http_status: 201,
            refund: Some(Box::new(CreatedRefund {
                refund_id: refund_id.map(str::to_owned),
                order: Some(RefundOrder {
                    order_id: Some(order_id.to_owned()),
                    ..RefundOrder::default()
                }),
                transaction_result: Some(TransactionResult {
                    status: Some(status.to_owned()),
                    response_code: code.map(str::to_owned),
                    ..TransactionResult::default()
                }),
                custom_fields: None,
            })),
        }
    }

    fn sent(custom_field_names: &[String]) -> Sent<'_> {
        Sent {
            method: Method::Card,
            order_id: "R1",
            custom_field_names,
        }
    }

    fn report(result: SendResult, maybe_reached: bool) -> SendReport {
        SendReport {
            result,
            requests: 1,
            maybe_reached,
        }
    }

    fn refused(http_status: u16, problem_type: &str) -> SendResult {
        SendResult::Refused {
            http_status,
            problem_type: Some(format!("https://docs.payroc.com/api/errors#{problem_type}")),
            detail: "refused".into(),
        }
    }

    /// Every kind of answer, with and without an earlier request that may have reached Payroc:
    /// (answer, reached before this send, reached earlier in this send, state, flag afterwards).
    #[test]
    fn the_table() {
        use RefundState::*;
        let gave_up = |maybe_reached| SendResult::GaveUp {
            maybe_reached,
            detail: "timed out".into(),
            http_status: None,
        };
        let systemic = || SendResult::Systemic(crate::payroc::SystemicError::Authentication("401".into()));
        let table: Vec<(&str, SendResult, bool, bool, RefundState, bool)> = vec![
            (
                "card A ready",
                created(Some("CD3HN88U9F"), "R1", "ready", Some("A")),
                false,
                false,
                Succeeded,
                true,
            ),
            (
                "card A ready, re-send",
                created(Some("CD3HN88U9F"), "R1", "ready", Some("A")),
                true,
                false,
                Succeeded,
                true,
            ),
            (
                "card D",
                created(Some("CD3HN88U9F"), "R1", "declined", Some("D")),
                false,
                false,
                Declined,
                true,
            ),
            (
                "201 without refundId",
                created(None, "R1", "ready", Some("A")),
                false,
                false,
                Unknown,
                true,
            ),
            (
                "201 with empty refundId",
                created(Some(""), "R1", "ready", Some("A")),
                false,
                false,
                Unknown,
                true,
            ),
            (
                "201 for another order",
                created(Some("CD3HN88U9F"), "R2", "ready", Some("A")),
                false,
                false,
                Unknown,
                true,
            ),
            (
                "201 not a refund",
                SendResult::Created {
                    http_status: 201,
                    refund: None,
                },
                false,
                false,
                Unknown,
                true,
            ),
            (
                "400 first send",
                refused(400, "bad-request"),
                false,
                false,
                Rejected,
                false,
            ),
            (
                "403 first send",
                refused(403, "forbidden"),
                false,
                false,
                Rejected,
                false,
            ),
            (
                "406 first send",
                refused(406, "not-acceptable"),
                false,
                false,
                Rejected,
                false,
            ),
            (
                "415 first send",
                refused(415, "unsupported-media-type"),
                false,
                false,
                Rejected,
                false,
            ),
            (
                "409 first send",
                refused(409, "idempotency-key-in-use"),
                false,
                false,
                Conflict,
                false,
            ),
            (
                "400 key in use",
                refused(400, "idempotency-key-in-use"),
                false,
                false,
                Conflict,
                false,
            ),
            (
                "403 after an earlier run's lost answer",
                refused(403, "forbidden"),
                true,
                false,
                Unknown,
                true,
            ),
            (
                "400 after an earlier run's lost answer",
                refused(400, "bad-request"),
                true,
                false,
                Unknown,
                true,
            ),
            (
                "409 after an earlier run's lost answer",
                refused(409, "idempotency-key-in-use"),
                true,
                false,
                Unknown,
                true,
            ),
            (
                "403 after a 500 in this send",
                refused(403, "forbidden"),
                false,
                true,
                Unknown,
                true,
            ),
            ("gave up, never reached", gave_up(false), false, false, Pending, false),
            ("gave up, may have reached", gave_up(true), false, false, Unknown, true),
            ("gave up, reached before", gave_up(false), true, false, Unknown, true),
            ("401 first send", systemic(), false, false, Pending, false),
            (
                "401 after a timeout in this send",
                systemic(),
                false,
                true,
                Unknown,
                true,
            ),
            (
                "401 after an earlier run's lost answer",
                systemic(),
                true,
                false,
                Unknown,
                true,
            ),
        ];
        for (name, result, before, in_send, state, flag) in table {
            let outcome = of_send(&report(result, in_send), sent(&[]), before);
            assert_eq!(outcome.state, Some(state), "{name}");
            assert_eq!(outcome.may_have_reached, flag, "{name}: may_have_reached");
            if state == Unknown {
                assert!(outcome.problem_detail.is_some(), "{name}: an unknown row says why");
            }
        }
    }

    #[test]
    fn a_refusal_that_proves_nothing_keeps_payrocs_answer_in_the_error() {
        let outcome = of_send(&report(refused(403, "forbidden"), false), sent(&[]), true);
        let detail = outcome.problem_detail.unwrap_or_default();
        assert!(detail.contains("HTTP 403") && detail.contains("refused"), "{detail}");
        assert_eq!(outcome.http_status, Some(403));
    }

    #[test]
    fn what_payroc_says_beyond_the_state_is_kept() {
        let body = br#"{"refundId":"CD3HN88U9F","order":{"orderId":"R1"},"customFields":[{"name":"batchRow","value":"2"}],
            "transactionResult":{"status":"ready","responseCode":"P","responseMessage":"PARTIAL","approvalCode":"A1B2C3",
            "processorResponseCode":"10","authorizedAmount":-2500}}"#;
        let refund: CreatedRefund = serde_json::from_slice(body).expect("a refund");
        let names = vec!["batchRow".to_owned(), "costCentre".to_owned()];
        let outcome = of_send(
            &report(
                SendResult::Created {
                    http_status: 201,
                    refund: Some(Box::new(refund)),
                },
                false,
            ),
            sent(&names),
            false,
        );
        assert_eq!(outcome.state, Some(RefundState::Partial));
        assert_eq!(outcome.authorized_amount_minor, Some(2500));
        assert_eq!(outcome.approval_code.as_deref(), Some("A1B2C3"));
        assert_eq!(outcome.processor_response_code.as_deref(), Some("10"));
        let notes = outcome.notes.unwrap_or_default();
        assert!(
            notes.contains("\"costCentre\"") && !notes.contains("batchRow"),
            "{notes}"
        );

        let bank: CreatedRefund = serde_json::from_str(
            r#"{"refundId":"CD3HN88U9F","transactionResult":{"status":"admin","authorizedAmount":-12.5}}"#,
        )
        .expect("a refund");
        let outcome = of_refund(Method::Bank, &bank);
        assert_eq!(outcome.state, Some(RefundState::Queued));
        assert_eq!(outcome.authorized_amount_minor, None);
        let notes = outcome.notes.unwrap_or_default();
        assert!(notes.contains("\"admin\"") && notes.contains("-12.5"), "{notes}");
    }

    #[test]
    fn transaction_results_by_method() {
        use RefundState::*;
        let result = |status: &str, code: Option<&str>| TransactionResult {
            status: Some(status.to_owned()),
            response_code: code.map(str::to_owned),
            ..TransactionResult::default()
        };
        let card = [
            ("ready", Some("A"), Succeeded),
            ("pending", Some("A"), Succeeded),
            ("complete", Some("A"), Succeeded),
            ("declined", Some("A"), Queued),
            ("reversal", Some("A"), Reversed),
            ("expired", Some("A"), Queued),
            ("referral", Some("A"), Queued),
            ("pickup", Some("A"), Queued),
            ("declined", Some("D"), Declined),
            ("declined", Some("R"), Declined),
            ("declined", Some("C"), Declined),
            ("pending", Some("E"), Queued),
            ("ready", Some("P"), Partial),
            ("ready", Some("Z"), Queued),
            ("ready", None, Queued),
        ];
        for (status, code, state) in card {
            assert_eq!(
                state_of(Method::Card, &result(status, code)),
                state,
                "card {status} {code:?}"
            );
        }
        let bank = [
            ("ready", Some("A"), Succeeded),
            ("declined", Some("D"), Declined),
            ("declined", None, Declined),
            ("ready", None, Succeeded),
            ("pending", None, Succeeded),
            ("complete", None, Succeeded),
            ("returned", None, Returned),
            ("returned", Some("A"), Returned),
            ("reversal", None, Reversed),
            ("reversal", Some("A"), Reversed),
            ("pending", Some("D"), Declined),
            ("admin", None, Queued),
            ("something new", None, Queued),
            ("ready", Some("Q"), Queued),
        ];
        for (status, code, state) in bank {
            assert_eq!(
                state_of(Method::Bank, &result(status, code)),
                state,
                "bank {status} {code:?}"
            );
        }
    }
}
