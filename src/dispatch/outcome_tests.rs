//! Unit tests of the module beside it, kept in their own file so the module reads alone.

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
    use RefundStatus::*;
    let gave_up = |maybe_reached| SendResult::GaveUp {
        maybe_reached,
        detail: "timed out".into(),
        http_status: None,
    };
    let systemic = || SendResult::Systemic(crate::payroc::SystemicError::Authentication("401".into()));
    let table: Vec<(&str, SendResult, bool, bool, RefundStatus, bool)> = vec![
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
    assert_eq!(outcome.state, Some(RefundStatus::Partial));
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
    assert_eq!(outcome.state, Some(RefundStatus::Queued));
    assert_eq!(outcome.answer.authorized_amount_minor, None);
    let notes = outcome.answer.notes.unwrap_or_default();
    assert!(notes.contains("\"admin\"") && notes.contains("-12.5"), "{notes}");
}

/// Every (status, code) pair each method can meet, the known ones and some it cannot know
/// (another spelling, a lower-case code, a new word, none): one row per status, one column
/// per code.
#[test]
fn every_status_and_code_by_method() {
    use RefundStatus::*;
    let result = |status: Option<&str>, code: Option<&str>| TransactionResult {
        status: status.map(str::to_owned),
        response_code: code.map(str::to_owned),
        ..TransactionResult::default()
    };
    let check = |method: Method, codes: &[Option<&str>], grid: &[(Option<&str>, &[RefundStatus])]| {
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
    let bank: [(Option<&str>, &[RefundStatus]); 12] = [
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
    let card: [(Option<&str>, &[RefundStatus]); 15] = [
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
    assert_eq!(declined.state, Some(RefundStatus::Declined));
    assert_eq!(declined.answer.notes, None);
    assert_eq!(
        of_refund(Method::Card, &refund("pending", Some("E"))).answer.notes,
        None
    );
}
