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

use crate::ledger::{PayrocAnswer, RefundState, RefundUpdate};
use crate::payroc::answer::TransactionResult;
use crate::payroc::{CreatedRefund, SendReport, SendResult};
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
                state: Some(RefundState::Unknown),
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
pub fn state_of(method: Method, result: &TransactionResult) -> RefundState {
    let status = StatusSays::of(method, result.status.as_deref());
    let code = CodeSays::of(method, result.response_code.as_deref());
    match (status, code) {
        (StatusSays::Final(state), _) => state,
        (StatusSays::NotKnown, _) => RefundState::Queued,
        (StatusSays::DisputesApproval, CodeSays::Approved) => RefundState::Queued,
        (_, CodeSays::Approved) => RefundState::Succeeded,
        (_, CodeSays::Declined) => RefundState::Declined,
        (_, CodeSays::Partial) => RefundState::Partial,
        (_, CodeSays::Queued | CodeSays::NotKnown) => RefundState::Queued,
        (StatusSays::GoingThrough, CodeSays::Absent) => RefundState::Succeeded,
        (StatusSays::DisputesApproval, CodeSays::Absent) => RefundState::Queued,
    }
}

/// What `transactionResult.status` says before the code is read (see [`state_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusSays {
    /// Submitted, approved or settled (`ready`, `pending`, `complete`; card `accepted`): the
    /// code decides.
    GoingThrough,
    /// The refund did not go through, or was undone, whatever the code says.
    Final(RefundState),
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
            (_, Some("reversal")) => StatusSays::Final(RefundState::Reversed),
            (Method::Bank, Some("returned")) => StatusSays::Final(RefundState::Returned),
            (Method::Bank, Some("declined")) => StatusSays::Final(RefundState::Declined),
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
                assert!(
                    outcome.answer.problem_detail.is_some(),
                    "{name}: an unknown row says why"
                );
            }
        }
    }

    #[test]
    fn a_refusal_that_proves_nothing_keeps_payrocs_answer_in_the_error() {
        let outcome = of_send(&report(refused(403, "forbidden"), false), sent(&[]), true);
        let detail = outcome.answer.problem_detail.unwrap_or_default();
        assert!(detail.contains("HTTP 403") && detail.contains("refused"), "{detail}");
        assert_eq!(outcome.answer.http_status, Some(403));
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
        assert_eq!(outcome.answer.authorized_amount_minor, Some(2500));
        assert_eq!(outcome.answer.approval_code.as_deref(), Some("A1B2C3"));
        assert_eq!(outcome.answer.processor_response_code.as_deref(), Some("10"));
        let notes = outcome.answer.notes.unwrap_or_default();
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
        assert_eq!(outcome.answer.authorized_amount_minor, None);
        let notes = outcome.answer.notes.unwrap_or_default();
        assert!(notes.contains("\"admin\"") && notes.contains("-12.5"), "{notes}");
    }

    /// Every (status, code) pair each method can meet, the known ones and some it cannot know
    /// (another spelling, a lower-case code, a new word, none): one row per status, one column
    /// per code.
    #[test]
    fn every_status_and_code_by_method() {
        use RefundState::*;
        let result = |status: Option<&str>, code: Option<&str>| TransactionResult {
            status: status.map(str::to_owned),
            response_code: code.map(str::to_owned),
            ..TransactionResult::default()
        };
        let check = |method: Method, codes: &[Option<&str>], grid: &[(Option<&str>, &[RefundState])]| {
            for (status, states) in grid {
                assert_eq!(states.len(), codes.len(), "{method:?} {status:?}: one state per code");
                for (code, state) in codes.iter().zip(states.iter()) {
                    assert_eq!(
                        state_of(method, &result(*status, *code)),
                        *state,
                        "{method:?} status {status:?} code {code:?}"
                    );
                }
            }
        };

        // Bank: the status wins when it contradicts the code; then the code; without one,
        // `ready`/`pending`/`complete` were submitted.
        let bank_codes = [Some("A"), Some("D"), None, Some("a"), Some("d"), Some("R"), Some("Z")];
        let bank: [(Option<&str>, &[RefundState]); 12] = [
            (
                Some("ready"),
                &[Succeeded, Declined, Succeeded, Queued, Queued, Queued, Queued],
            ),
            (
                Some("pending"),
                &[Succeeded, Declined, Succeeded, Queued, Queued, Queued, Queued],
            ),
            (
                Some("complete"),
                &[Succeeded, Declined, Succeeded, Queued, Queued, Queued, Queued],
            ),
            (Some("declined"), &[Declined; 7]),
            (Some("returned"), &[Returned; 7]),
            (Some("reversal"), &[Reversed; 7]),
            (Some("admin"), &[Queued; 7]),
            (Some("Declined"), &[Queued; 7]),
            (Some("COMPLETE"), &[Queued; 7]),
            (Some("settled"), &[Queued; 7]),
            (Some(""), &[Queued; 7]),
            (None, &[Queued; 7]),
        ];
        check(Method::Bank, &bank_codes, &bank);

        // Card: the same reading; its declining statuses dispute an approval only, and a card
        // answer without a code is one this version cannot read.
        let card_codes = [
            Some("A"),
            Some("D"),
            Some("R"),
            Some("C"),
            Some("P"),
            Some("E"),
            None,
            Some("a"),
            Some("Z"),
        ];
        let going = [
            Succeeded, Declined, Declined, Declined, Partial, Queued, Queued, Queued, Queued,
        ];
        let disputed = [
            Queued, Declined, Declined, Declined, Partial, Queued, Queued, Queued, Queued,
        ];
        let card: [(Option<&str>, &[RefundState]); 15] = [
            (Some("ready"), &going),
            (Some("pending"), &going),
            (Some("complete"), &going),
            (Some("accepted"), &going),
            (Some("declined"), &disputed),
            (Some("expired"), &disputed),
            (Some("referral"), &disputed),
            (Some("pickup"), &disputed),
            (Some("reversal"), &[Reversed; 9]),
            (Some("admin"), &[Queued; 9]),
            (Some("returned"), &[Queued; 9]),
            (Some("Ready"), &[Queued; 9]),
            (Some("something new"), &[Queued; 9]),
            (Some(""), &[Queued; 9]),
            (None, &[Queued; 9]),
        ];
        check(Method::Card, &card_codes, &card);
    }

    /// An answer that is not `succeeded` for a reason this version cannot read says so in the
    /// row's notes; a card `E` is ordinary and needs no note.
    #[test]
    fn an_answer_read_as_queued_says_why() {
        let refund = |status: &str, code: Option<&str>| CreatedRefund {
            refund_id: Some("CD3HN88U9F".into()),
            transaction_result: Some(TransactionResult {
                status: Some(status.to_owned()),
                response_code: code.map(str::to_owned),
                ..TransactionResult::default()
            }),
            ..CreatedRefund::default()
        };
        let notes = of_refund(Method::Bank, &refund("admin", Some("A")))
            .answer
            .notes
            .unwrap_or_default();
        assert!(notes.contains("\"admin\"") && notes.contains("\"A\""), "{notes}");
        let declined = of_refund(Method::Bank, &refund("declined", Some("A")));
        assert_eq!(declined.state, Some(RefundState::Declined));
        assert_eq!(declined.answer.notes, None);
        assert_eq!(
            of_refund(Method::Card, &refund("pending", Some("E"))).answer.notes,
            None
        );
    }
}
