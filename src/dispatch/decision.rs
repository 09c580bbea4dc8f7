//! The decision for one valid row: send it (and under which key), leave it done, or hold it
//! with a note for the results. The dispatcher asks [`decide`] for every row it reads; the rules
//! a row meets — its order's record, a body that changed, a failure retried on purpose, a refund
//! too old to re-send blindly — are here, and every new key goes through the one gate
//! ([`super::gate`]).

use std::time::Duration;

use crate::ledger::{Ledger, LedgerError, NewRefund, RefundRecord};
use crate::payroc::body::PreparedRefund;
use crate::refund::key::IdempotencyKey;
use crate::refund::money::Currency;
use crate::refund::{RefundStatus, RowNote};

use super::DispatchOptions;
use super::gate::{NewKey, refuse_new_key};

/// Rows older than this since their first send are not re-sent blindly: Payroc forgets keys
/// after 7 days, so a re-send could refund again. They must be reconciled first.
pub const BLIND_RESEND_LIMIT: Duration = Duration::from_secs(6 * 24 * 60 * 60);
/// What to do with one valid row.
#[derive(Debug)]
pub enum Decision {
    /// Send it with this record's key.
    Send(RefundRecord),
    /// Already finished in the ledger.
    Done(RefundRecord),
    /// Do not send; show this in the results.
    Hold(RowNote),
}

/// Decides what to do with `prepared` (row `row`) given what the ledger knows. Creates the
/// ledger record for a new identity and moves to the next generation when asked to retry.
pub fn decide(
    ledger: &mut Ledger,
    prepared: &PreparedRefund,
    amount_minor: i64,
    currency: Currency,
    options: &DispatchOptions,
    row: u64,
) -> Result<Decision, LedgerError> {
    let Some(mut record) = ledger.find_order(&prepared.ledger_id, &prepared.legacy_ledger_id)? else {
        if let Some(note) = refuse_new_key(ledger, prepared, None, NewKey::FirstSend, options.allow_case_variants)? {
            return Ok(Decision::Hold(note));
        }
        let key = prepared.identity.key(0);
        let mut refund = new_refund(prepared, key, amount_minor, currency);
        refund.needs_precheck = options.precheck_new_rows;
        let record = ledger.insert(&refund, options.batch, row)?;
        return Ok(Decision::Send(record));
    };
    if record.state == RefundStatus::Sending && !record.may_have_reached {
        // Left `sending` by a crash: its request may have left before the crash.
        ledger.mark_may_have_reached(record.id)?;
        record.may_have_reached = true;
    }
    let same_body = record.fingerprint == prepared.fingerprint;
    if record.state.is_retryable_failure() && options.retry_failed {
        if let Some(note) = unchanged_retry(&record, prepared, options) {
            return Ok(Decision::Hold(note));
        }
        if let Some(note) = refuse_new_key(
            ledger,
            prepared,
            Some(&record),
            NewKey::RetryFailed,
            options.allow_case_variants,
        )? {
            return Ok(Decision::Hold(note));
        }
        let generation = record.generation + 1;
        let key = prepared.identity.key(generation);
        let mut refund = new_refund(prepared, key, amount_minor, currency);
        // Another ledger or host may have refunded the order meanwhile: a new key is only sent
        // after Payroc was asked, unless the user switched lookups off.
        refund.needs_precheck = options.precheck_enabled;
        let record = ledger.next_generation(record.id, generation, key, &refund, options.batch, row, None)?;
        return Ok(Decision::Send(record));
    }
    if !same_body {
        let change = record.describe_change(amount_minor, currency, &prepared.payee_masked);
        let note = if record.state.is_retryable_failure() {
            RowNote {
                status: record.state.in_results(),
                error: format!(
                    "this refund was {} and the row has changed since ({change}); to send the corrected row use --retry-failed",
                    record.state
                ),
            }
        } else if record.method != prepared.method {
            let file = match record.batch_id {
                Some(batch) => ledger.batch_input_path(batch)?,
                None => None,
            };
            RowNote {
                status: RefundStatus::Conflict,
                error: format!(
                    "the ledger already has a refund for this order by {}: row {} of {} ({}, key {}); \
                     one order is one refund, so this row is not sent. A different refund needs a different order_id",
                    record.method,
                    record.input_row.map_or_else(|| "?".to_owned(), |row| row.to_string()),
                    file.as_deref().unwrap_or("an earlier file"),
                    record.state.in_results(),
                    record.idempotency_key
                ),
            }
        } else {
            RowNote {
                status: RefundStatus::Conflict,
                error: format!(
                    "the ledger already has this refund ({}, key {}) with different details ({change}); \
                     it is not sent again. A different refund needs a different order_id",
                    record.state.in_results(),
                    record.idempotency_key
                ),
            }
        };
        return Ok(Decision::Hold(note));
    }
    match record.state {
        RefundStatus::Pending | RefundStatus::Sending | RefundStatus::Unknown => {
            if sent_too_long_ago(&record) {
                return Ok(Decision::Hold(RowNote {
                    status: RefundStatus::Unknown,
                    error: "first sent more than 6 days ago and Payroc keeps keys for 7: not re-sent blindly. Run `refund-batch reconcile` on this file".into(),
                }));
            }
            Ok(Decision::Send(record))
        }
        _ => Ok(Decision::Done(record)),
    }
}

/// Why a failed row is not sent again although `--retry-failed` asks: nothing that could change
/// the answer changed. A declined or returned refund would be declined again to the same card or
/// account, so it goes again only when its payment details changed; a rejected one only when the
/// row changed at all. `--retry-unchanged` sends it anyway (an issuer that declined for a reason
/// of its own, since fixed).
fn unchanged_retry(record: &RefundRecord, prepared: &PreparedRefund, options: &DispatchOptions) -> Option<RowNote> {
    if options.retry_unchanged {
        return None;
    }
    let (unchanged, what) = match record.state {
        RefundStatus::Rejected => (record.fingerprint == prepared.fingerprint, "the row"),
        _ => (
            record.payee_masked == prepared.payee_masked && record.method == prepared.method,
            "its payment details (card or account)",
        ),
    };
    unchanged.then(|| RowNote {
        status: record.state.in_results(),
        error: format!(
            "{}; not sent again: {what} did not change since, so it would most likely be {} again. \
             Fix the row, or pass --retry-unchanged to send it as it is",
            record
                .answer
                .problem_detail
                .clone()
                .or_else(|| record.answer.response_message.clone())
                .unwrap_or_else(|| record.state.to_string()),
            record.state
        ),
    })
}

/// The ledger's view of a prepared row under `key`.
pub(crate) fn new_refund<'a>(
    prepared: &'a PreparedRefund,
    key: IdempotencyKey,
    amount_minor: i64,
    currency: Currency,
) -> NewRefund<'a> {
    NewRefund {
        identity: &prepared.ledger_id,
        environment: prepared.identity.environment,
        method: prepared.method,
        processing_terminal_id: &prepared.identity.processing_terminal_id,
        order_id: &prepared.identity.order_id,
        idempotency_key: key,
        fingerprint: &prepared.fingerprint,
        amount_minor,
        currency,
        payee_masked: &prepared.payee_masked,
        needs_precheck: false,
    }
}

/// Whether a refund was first sent longer ago than Payroc can be trusted to remember its key.
pub fn sent_too_long_ago(record: &RefundRecord) -> bool {
    let Some(first_sent) = &record.first_sent_at else {
        return false;
    };
    let Ok(first_sent) = time::OffsetDateTime::parse(first_sent, &time::format_description::well_known::Rfc3339) else {
        // An unreadable time is treated as old: the cautious reading.
        return true;
    };
    let age = crate::clock::now() - first_sent;
    age > time::Duration::try_from(BLIND_RESEND_LIMIT).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::ledger::BatchId;
    use crate::ledger::RefundId;
    use crate::ledger::RefundUpdate;
    use crate::payroc::body::prepare;
    use crate::refund::{Customer, Environment, Method, Payee, RefundRow};

    fn usd() -> Currency {
        Currency::from_code("USD").expect("USD is known")
    }

    fn row(amount_minor: i64) -> RefundRow {
        RefundRow {
            row: 2,
            method: Method::Card,
            processing_terminal_id: "1234001".into(),
            order_id: "R1".into(),
            amount_minor,
            currency: usd(),
            description: "Refund".into(),
            channel: "moto",
            operator: None,
            payee: Payee::KeyedCard {
                card_number: "4111111111111111".into(),
                expiry_date: "0929".into(),
                cardholder_name: None,
            },
            customer: Customer::default(),
            ip_address: None,
            custom_fields: Vec::new(),
        }
    }

    fn options(retry_failed: bool) -> DispatchOptions {
        DispatchOptions {
            environment: Environment::Sandbox,
            namespace: "default".into(),
            rate: NonZeroU32::MIN,
            concurrency: 1,
            retry_failed,
            retry_unchanged: true,
            batch: BatchId(1),
            shutdown_grace: Duration::ZERO,
            precheck_new_rows: false,
            precheck_enabled: true,
            precheck_days: 90,
            allow_case_variants: false,
        }
    }

    /// A ledger (in a temp dir kept alive by the caller) with one batch.
    fn ledger() -> (tempfile::TempDir, Ledger) {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut ledger = Ledger::open(&directory.path().join("ledger.sqlite")).expect("open ledger");
        ledger
            .begin_batch("file.csv", "sha", Environment::Sandbox, "run")
            .expect("batch");
        (directory, ledger)
    }

    fn decide_row(ledger: &mut Ledger, amount_minor: i64, retry_failed: bool) -> Decision {
        let row = row(amount_minor);
        let prepared = prepare(&row, Environment::Sandbox, "default");
        decide(
            ledger,
            &prepared,
            row.amount_minor,
            usd(),
            &options(retry_failed),
            row.row,
        )
        .expect("decide")
    }

    fn set_state(ledger: &mut Ledger, id: RefundId, state: RefundStatus) {
        ledger
            .record(
                id,
                None,
                &RefundUpdate {
                    state: Some(state),
                    ..RefundUpdate::default()
                },
                0,
            )
            .expect("record");
    }

    #[test]
    fn a_new_row_is_sent_with_generation_zero() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(record) = decide_row(&mut ledger, 1000, false) else {
            panic!("a new row is sent")
        };
        assert_eq!((record.generation, record.state), (0, RefundStatus::Pending));
        // The golden key of (sandbox, 1234001, R1) at generation 0, computed independently of
        // this crate.
        assert_eq!(
            record.idempotency_key.to_string(),
            "96ddfeda-0903-4f91-9422-879837030b51"
        );
    }

    #[test]
    fn unfinished_rows_are_sent_again_with_the_same_key() {
        for state in [RefundStatus::Pending, RefundStatus::Sending, RefundStatus::Unknown] {
            let (_directory, mut ledger) = ledger();
            let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
                panic!()
            };
            set_state(&mut ledger, first.id, state);
            let Decision::Send(again) = decide_row(&mut ledger, 1000, true) else {
                panic!("{state} is re-sent")
            };
            assert_eq!(again.idempotency_key, first.idempotency_key, "{state}: same key");
            assert_eq!(again.generation, 0);
        }
    }

    #[test]
    fn finished_rows_are_never_sent_again_and_only_failures_are_retried_on_request() {
        for state in [
            RefundStatus::Succeeded,
            RefundStatus::Queued,
            RefundStatus::Conflict,
            RefundStatus::Declined,
            RefundStatus::Rejected,
        ] {
            let (_directory, mut ledger) = ledger();
            let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
                panic!()
            };
            set_state(&mut ledger, first.id, state);
            assert!(
                matches!(decide_row(&mut ledger, 1000, false), Decision::Done(_)),
                "{state} without --retry-failed"
            );
            match decide_row(&mut ledger, 1000, true) {
                Decision::Send(retry) => {
                    assert!(state.is_retryable_failure(), "{state} must never be retried");
                    assert_eq!(retry.generation, 1);
                    assert_eq!(
                        retry.idempotency_key.to_string(),
                        "3483c0ce-3b1d-447d-9f4b-eedf1952cce6",
                        "a retry gets the generation-1 key"
                    );
                }
                Decision::Done(_) => assert!(!state.is_retryable_failure(), "{state} should be retried"),
                Decision::Hold(note) => panic!("{state}: unexpected hold {note:?}"),
            }
        }
    }

    #[test]
    fn a_changed_row_is_a_conflict_unless_a_failure_is_retried() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, first.id, RefundStatus::Succeeded);
        let Decision::Hold(note) = decide_row(&mut ledger, 1200, true) else {
            panic!("a changed succeeded row is held")
        };
        assert_eq!(note.status, RefundStatus::Conflict);
        assert!(
            note.error.contains("amount was 1000 USD minor units, now 1200 USD"),
            "{}",
            note.error
        );

        let (_directory, mut ledger) = self::ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, first.id, RefundStatus::Declined);
        let Decision::Hold(note) = decide_row(&mut ledger, 1200, false) else {
            panic!()
        };
        assert_eq!(note.status, RefundStatus::Declined);
        assert!(note.error.contains("--retry-failed"), "{}", note.error);
        let Decision::Send(retry) = decide_row(&mut ledger, 1200, true) else {
            panic!("the corrected row is sent")
        };
        assert_eq!((retry.generation, retry.amount_minor), (1, 1200));
    }

    #[test]
    fn a_row_left_sending_may_have_reached_payroc_and_is_never_retried_under_a_new_key() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        ledger.mark_sending(&first, BatchId(1)).expect("mark sending");
        // The next run finds it `sending` (a crash): it is re-sent with the same key, flagged.
        let Decision::Send(again) = decide_row(&mut ledger, 1000, true) else {
            panic!("a sending row is re-sent")
        };
        assert!(again.may_have_reached);
        assert_eq!(again.idempotency_key, first.idempotency_key);
        assert!(
            ledger
                .find(&first.identity)
                .expect("find")
                .expect("exists")
                .may_have_reached
        );
        // A rejected row whose generation may have reached Payroc is never given a new key.
        set_state(&mut ledger, first.id, RefundStatus::Rejected);
        let Decision::Hold(note) = decide_row(&mut ledger, 1000, true) else {
            panic!("held, not retried")
        };
        assert_eq!(note.status, RefundStatus::Unknown);
    }

    fn bank_row(amount_minor: i64) -> RefundRow {
        let mut bank = row(amount_minor);
        bank.method = Method::Bank;
        bank.payee = Payee::Ach {
            account_number: "1234567890".into(),
            routing_number: "011000015".into(),
            name_on_account: "Grace Hopper".into(),
            account_type: None,
            sec_code: None,
        };
        bank
    }

    #[test]
    fn an_order_is_one_refund_whatever_the_method_or_namespace() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(card) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, card.id, RefundStatus::Succeeded);
        // The same order by bank is the same record: its details changed, so it is held.
        let bank = prepare(&bank_row(1000), Environment::Sandbox, "default");
        assert_eq!(bank.identity.key(0), card.idempotency_key);
        for retry_failed in [false, true] {
            let Decision::Hold(note) =
                decide(&mut ledger, &bank, 1000, usd(), &options(retry_failed), 3).expect("decide")
            else {
                panic!("the same order by bank is held")
            };
            assert_eq!(note.status, RefundStatus::Conflict, "{}", note.error);
        }
        // Under another namespace it is the same order, already done.
        let other_namespace = prepare(&row(1000), Environment::Sandbox, "team-b");
        assert!(matches!(
            decide(&mut ledger, &other_namespace, 1000, usd(), &options(true), 2).expect("decide"),
            Decision::Done(_)
        ));
        // A declined refund refunded nothing: the order may go another way, on request only,
        // under the next key of the same order, and then the card row is the one in conflict.
        set_state(&mut ledger, card.id, RefundStatus::Declined);
        assert!(matches!(
            decide(&mut ledger, &bank, 1000, usd(), &options(false), 3).expect("decide"),
            Decision::Hold(_)
        ));
        let Decision::Send(by_bank) = decide(&mut ledger, &bank, 1000, usd(), &options(true), 3).expect("decide")
        else {
            panic!("a declined order is retried by bank on request")
        };
        assert_eq!(
            (by_bank.id, by_bank.generation, by_bank.method.as_str()),
            (card.id, 1, "bank")
        );
        assert_eq!(by_bank.idempotency_key, bank.identity.key(1));
        set_state(&mut ledger, card.id, RefundStatus::Succeeded);
        let card_again = prepare(&row(1000), Environment::Sandbox, "default");
        let Decision::Hold(note) = decide(&mut ledger, &card_again, 1000, usd(), &options(true), 2).expect("decide")
        else {
            panic!("the fixed card row is held: the order was refunded by bank")
        };
        assert_eq!(note.status, RefundStatus::Conflict);
    }

    #[test]
    fn an_earlier_versions_record_of_the_order_under_another_method_holds_it() {
        let (_directory, mut ledger) = ledger();
        let card = prepare(&row(1000), Environment::Sandbox, "default");
        // As an earlier version recorded it: under its method and namespace, with a v1 key.
        let legacy_key = crate::refund::key::legacy_v1_key(&card.identity, "default", Method::Card, 0);
        let mut refund = new_refund(&card, legacy_key, 1000, usd());
        refund.identity = &card.legacy_ledger_id;
        let legacy = ledger.insert(&refund, BatchId(1), 2).expect("insert");
        // The same row finds it and keeps its key.
        let Decision::Send(again) = decide(&mut ledger, &card, 1000, usd(), &options(false), 2).expect("decide") else {
            panic!("the pending legacy row is sent")
        };
        assert_eq!((again.id, again.idempotency_key), (legacy.id, legacy_key));
        set_state(&mut ledger, legacy.id, RefundStatus::Unknown);
        let bank = prepare(&bank_row(1000), Environment::Sandbox, "default");
        let Decision::Hold(note) = decide(&mut ledger, &bank, 1000, usd(), &options(true), 3).expect("decide") else {
            panic!("the order by bank is held while the card refund may exist")
        };
        assert!(note.error.contains("by card"), "{}", note.error);
        // A letter-case variant of the order is the same order unless allowed.
        let mut variant = row(1000);
        variant.order_id = variant.order_id.to_lowercase();
        let variant = prepare(&variant, Environment::Sandbox, "default");
        let Decision::Hold(note) = decide(&mut ledger, &variant, 1000, usd(), &options(false), 4).expect("decide")
        else {
            panic!("a case variant is held")
        };
        assert!(note.error.contains("letter case"), "{}", note.error);
        let allowing = DispatchOptions {
            allow_case_variants: true,
            ..options(false)
        };
        assert!(matches!(
            decide(&mut ledger, &variant, 1000, usd(), &allowing, 4).expect("decide"),
            Decision::Send(_)
        ));
    }

    #[test]
    fn a_failed_row_is_retried_only_when_what_failed_changed_unless_asked() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, first.id, RefundStatus::Declined);
        let strict = DispatchOptions {
            retry_unchanged: false,
            ..options(true)
        };
        // The same card again: held, saying why and how to send it anyway.
        let same = prepare(&row(1000), Environment::Sandbox, "default");
        let Decision::Hold(note) = decide(&mut ledger, &same, 1000, usd(), &strict, 2).expect("decide") else {
            panic!("an unchanged declined row is held")
        };
        assert_eq!(note.status, RefundStatus::Declined);
        assert!(note.error.contains("--retry-unchanged"), "{}", note.error);
        // Another card: sent under the next key.
        let mut other_card = row(1000);
        other_card.payee = Payee::KeyedCard {
            card_number: "5555555555554444".to_owned().into(),
            expiry_date: "1230".into(),
            cardholder_name: None,
        };
        let other_card = prepare(&other_card, Environment::Sandbox, "default");
        let Decision::Send(retry) = decide(&mut ledger, &other_card, 1000, usd(), &strict, 2).expect("decide") else {
            panic!("a declined row with another card is retried")
        };
        assert_eq!(retry.generation, 1);
    }

    #[test]
    fn a_row_first_sent_over_six_days_ago_is_held_for_reconcile() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        ledger.mark_sending(&first, BatchId(1)).expect("mark sending");
        let mut record = ledger.find(&first.identity).expect("find").expect("exists");
        assert!(!sent_too_long_ago(&record));
        record.first_sent_at = Some("2020-01-01T00:00:00.000Z".into());
        assert!(sent_too_long_ago(&record));
        record.first_sent_at = Some("not a time".into());
        assert!(sent_too_long_ago(&record), "an unreadable time is treated as old");
    }
}
