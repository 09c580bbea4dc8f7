//! What happens to a refund in the ledger, from its first sighting to its outcome.
//!
//! The dispatcher finds a row's record ([`Ledger::find_order`]) or inserts it `pending`, marks
//! it `sending` before its request leaves, records what came back, and moves a definite failure
//! retried on purpose to its next key generation; `reconcile` settles rows from Payroc's records
//! and records a person's confirmation that nothing was created. The ledger's triggers refuse a
//! second live refund of one order whatever the code above asks (see the migrations).

use rusqlite::{OptionalExtension, ToSql, params};

use super::records::{PayrocAnswer, read_record, store_answer};
use super::{
    AttemptId, BatchId, Ledger, LedgerError, NewRefund, RefundId, RefundRecord, RefundUpdate, first_send_name, now,
};
use crate::refund::RefundStatus;
use crate::refund::key::IdempotencyKey;

impl Ledger {
    /// Finds the record of an order: the one under its identity (`identity`, see
    /// [`crate::refund::key::Identity::ledger_id`]), or else the one an earlier version made for
    /// this row's method and key namespace (`legacy_identity`), which keeps its keys. Other
    /// records of the same order (an earlier version's, under another method or namespace) are
    /// [`Ledger::same_order`]'s.
    pub fn find_order(&self, identity: &str, legacy_identity: &str) -> Result<Option<RefundRecord>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT * FROM refunds WHERE identity IN (?1, ?2) ORDER BY identity = ?1 DESC LIMIT 1")
            .map_err(|source| self.sqlite_error(source))?;
        let record = statement
            .query_row(params![identity, legacy_identity], read_record)
            .optional()
            .map_err(|source| self.sqlite_error(source))?;
        record.transpose().map_err(|message| LedgerError::Corrupt {
            path: self.path.clone(),
            message,
        })
    }

    /// The record under exactly this identity (tests' shorthand for [`Ledger::find_order`]).
    #[cfg(test)]
    pub fn find(&self, identity: &str) -> Result<Option<RefundRecord>, LedgerError> {
        self.find_order(identity, identity)
    }

    /// Records a new identity as `pending` with its generation-0 key, remembering the key handed out.
    pub fn insert(&mut self, refund: &NewRefund<'_>, batch: BatchId, row: u64) -> Result<RefundRecord, LedgerError> {
        let time = now();
        let id = self.write(|connection| {
            connection
                .prepare_cached(
                    "INSERT INTO refunds (identity, method, processing_terminal_id, order_id, generation, idempotency_key, state, \
                     fingerprint, amount_minor, currency, payee_masked, created_at, updated_at, batch_id, input_row, environment, \
                     needs_precheck) \
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(params![
                    refund.identity,
                    refund.method,
                    refund.processing_terminal_id,
                    refund.order_id,
                    refund.idempotency_key,
                    refund.fingerprint,
                    refund.amount_minor,
                    refund.currency,
                    refund.payee_masked,
                    time,
                    batch,
                    row as i64,
                    refund.environment,
                    refund.needs_precheck
                ])?;
            let id = RefundId(connection.last_insert_rowid());
            connection
                .prepare_cached("INSERT INTO keys (refund_id, generation, idempotency_key, created_at) VALUES (?1, 0, ?2, ?3)")?
                .execute(params![id, refund.idempotency_key, time])?;
            Ok(id)
        })?;
        // What the row now holds, without reading it back (a test checks the two agree).
        Ok(RefundRecord {
            id,
            identity: refund.identity.to_owned(),
            method: refund.method,
            processing_terminal_id: refund.processing_terminal_id.to_owned(),
            order_id: refund.order_id.to_owned(),
            generation: 0,
            idempotency_key: refund.idempotency_key,
            state: RefundStatus::Pending,
            fingerprint: refund.fingerprint.to_owned(),
            amount_minor: refund.amount_minor,
            currency: refund.currency,
            payee_masked: refund.payee_masked.to_owned(),
            attempts: 0,
            answer: PayrocAnswer::default(),
            first_sent_at: None,
            updated_at: time.clone(),
            may_have_reached: false,
            confirmed_not_created_at: None,
            needs_precheck: refund.needs_precheck,
            created_at: time,
            batch_id: Some(batch),
            input_row: i64::try_from(row).ok(),
            environment: refund.environment,
        })
    }

    pub(super) fn find_by_id(&self, id: RefundId) -> Result<RefundRecord, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT * FROM refunds WHERE id = ?1")
            .map_err(|source| self.sqlite_error(source))?;
        let record = statement
            .query_row(params![id], read_record)
            .map_err(|source| self.sqlite_error(source))?;
        record.map_err(|message| LedgerError::Corrupt {
            path: self.path.clone(),
            message,
        })
    }

    /// Moves a refund to its next key generation with a new body (and method: an order is one
    /// refund whichever way it goes), back to `pending`. Only for definite failures retried on
    /// purpose, or rows a person confirmed were never created (`confirmed_at`, recorded by this
    /// same update); the dispatcher's gate checks which, and the ledger's trigger refuses any
    /// other (see the migration that made it).
    #[allow(clippy::too_many_arguments)] // the new generation's parts, each needed
    pub fn next_generation(
        &mut self,
        id: RefundId,
        generation: u32,
        key: IdempotencyKey,
        refund: &NewRefund<'_>,
        batch: BatchId,
        row: u64,
        confirmed_at: Option<&str>,
    ) -> Result<RefundRecord, LedgerError> {
        let time = now();
        let input_row = row as i64;
        let no_answer = PayrocAnswer::default();
        let mut parameters: Vec<(&str, &dyn ToSql)> = vec![
            (":id", &id),
            (":generation", &generation),
            (":key", &key),
            (":fingerprint", &refund.fingerprint),
            (":amount_minor", &refund.amount_minor),
            (":currency", &refund.currency),
            (":payee_masked", &refund.payee_masked),
            (":updated_at", &time),
            (":batch_id", &batch),
            (":input_row", &input_row),
            (":confirmed_at", &confirmed_at),
            (":method", &refund.method),
            (":needs_precheck", &refund.needs_precheck),
        ];
        // A new generation starts with no answer, not even the refund id of the last one.
        parameters.extend(no_answer.bind(false));
        self.write(|connection| {
            connection.execute(
                concat!(
                    "UPDATE refunds SET generation = :generation, idempotency_key = :key, state = 'pending', \
                     fingerprint = :fingerprint, amount_minor = :amount_minor, currency = :currency, \
                     payee_masked = :payee_masked, first_sent_at = NULL, updated_at = :updated_at, batch_id = :batch_id, \
                     input_row = :input_row, may_have_reached = 0, confirmed_not_created_at = :confirmed_at, \
                     method = :method, needs_precheck = :needs_precheck, ",
                    store_answer!(),
                    " WHERE id = :id"
                ),
                parameters.as_slice(),
            )?;
            connection.execute(
                "INSERT INTO keys (refund_id, generation, idempotency_key, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, generation, key, time],
            )?;
            Ok(())
        })?;
        self.find_by_id(id)
    }

    /// Marks `sending` and opens an attempt; returns the attempt id. Outside a group this commits
    /// at once; inside one, the caller must commit the group *before* the request leaves.
    pub fn mark_sending(&mut self, record: &RefundRecord, batch: BatchId) -> Result<AttemptId, LedgerError> {
        let time = now();
        if self.first_send_noted != Some(record.environment) {
            let environment = record.environment;
            self.write(|connection| {
                connection.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)",
                    params![first_send_name(environment), time],
                )
            })?;
            self.first_send_noted = Some(environment);
        }
        self.write(|connection| {
            connection
                .prepare_cached(
                    "UPDATE refunds SET state = 'sending', attempts = attempts + 1, first_sent_at = COALESCE(first_sent_at, ?2), \
                     updated_at = ?2, batch_id = ?3 WHERE id = ?1",
                )?
                .execute(params![record.id, time, batch])?;
            connection
                .prepare_cached(
                    "INSERT INTO attempts (refund_id, batch_id, generation, idempotency_key, started_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![record.id, batch, record.generation, record.idempotency_key, time])?;
            Ok(AttemptId(connection.last_insert_rowid()))
        })
    }

    /// Takes back a [`Ledger::mark_sending`] whose request never left (the run stopped first):
    /// the refund returns to what `previous` (the record as it was before the mark) says of
    /// everything the mark changed, and the attempt is removed.
    /// Only for a mark whose request certainly was not started; the caller knows that.
    pub fn unmark_sending(&mut self, previous: &RefundRecord, attempt: AttemptId) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection
                .prepare_cached(
                    "UPDATE refunds SET state = ?2, attempts = attempts - 1, first_sent_at = ?3, updated_at = ?4, \
                     batch_id = ?5 WHERE id = ?1",
                )?
                .execute(params![
                    previous.id,
                    previous.state,
                    previous.first_sent_at,
                    previous.updated_at,
                    previous.batch_id
                ])?;
            connection
                .prepare_cached("DELETE FROM attempts WHERE id = ?1")?
                .execute(params![attempt])
        })?;
        Ok(())
    }

    /// Records what came of an attempt (or a decision without one, when `attempt` is `None`).
    /// `retries` counts the HTTP requests the attempt made after its first (which
    /// [`Ledger::mark_sending`] counted), so `attempts` is every request ever sent.
    pub fn record(
        &mut self,
        id: RefundId,
        attempt: Option<AttemptId>,
        outcome: &RefundUpdate,
        retries: i64,
    ) -> Result<(), LedgerError> {
        let time = now();
        // Bound as the typed status, whose binding refuses `invalid`.
        let state = outcome.state;
        let mut parameters: Vec<(&str, &dyn ToSql)> = vec![
            (":id", &id),
            (":state", &state),
            (":updated_at", &time),
            (":retries", &retries),
            (":may_have_reached", &outcome.may_have_reached),
        ];
        parameters.extend(outcome.answer.bind(true));
        self.write(|connection| {
            connection
                .prepare_cached(concat!(
                    "UPDATE refunds SET state = COALESCE(:state, state), updated_at = :updated_at, \
                     attempts = attempts + :retries, may_have_reached = MAX(may_have_reached, :may_have_reached), ",
                    store_answer!(),
                    " WHERE id = :id"
                ))?
                .execute(parameters.as_slice())?;
            if let Some(attempt) = attempt {
                connection
                    .prepare_cached(
                        "UPDATE attempts SET finished_at = ?2, http_status = ?3, outcome = ?4, detail = ?5, payroc_refund_id = ?6 \
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        attempt,
                        time,
                        outcome.answer.http_status,
                        state,
                        outcome.answer.problem_detail.as_deref().or(outcome.answer.response_message.as_deref()),
                        outcome.answer.refund_id
                    ])?;
            }
            Ok(())
        })
    }

    /// Records that a request of the current generation may have reached Payroc (a `sending`
    /// mark found by a later run: the crash may have come after the request left).
    pub fn mark_may_have_reached(&mut self, id: RefundId) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection
                .prepare_cached("UPDATE refunds SET may_have_reached = 1 WHERE id = ?1")?
                .execute(params![id])
        })?;
        Ok(())
    }

    /// The order's lookup at Payroc found nothing: the row may now be sent.
    pub fn clear_precheck(&mut self, id: RefundId) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection
                .prepare_cached("UPDATE refunds SET needs_precheck = 0 WHERE id = ?1")?
                .execute(params![id])
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::ledger::testing::{key, new_refund, temporary_ledger};
    use crate::refund::{Environment, PayrocRefundId};

    #[test]
    fn a_refund_moves_pending_sending_succeeded_and_keeps_its_audit_trail() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("nested").join("ledger.sqlite");
        let mut ledger = Ledger::open(&path).unwrap();
        let batch = ledger
            .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
            .unwrap();
        let record = ledger.insert(&new_refund("id-1", key(0)), batch, 2).unwrap();
        assert_eq!(record.state, RefundStatus::Pending);
        assert_eq!(
            ledger.find("id-1").unwrap(),
            Some(record.clone()),
            "insert returns what the ledger holds"
        );
        let attempt = ledger.mark_sending(&record, batch).unwrap();
        assert_eq!(ledger.find("id-1").unwrap().unwrap().state, RefundStatus::Sending);
        let outcome = RefundUpdate {
            state: Some(RefundStatus::Succeeded),
            answer: PayrocAnswer {
                http_status: Some(201),
                refund_id: Some(PayrocRefundId("CD3HN88U9F".into())),
                response_code: Some("A".into()),
                ..PayrocAnswer::default()
            },
            ..RefundUpdate::default()
        };
        ledger.record(record.id, Some(attempt), &outcome, 0).unwrap();
        let done = ledger.find("id-1").unwrap().unwrap();
        assert_eq!(done.state, RefundStatus::Succeeded);
        assert_eq!(done.attempts, 1);
        assert_eq!(
            done.answer.refund_id.as_ref().map(PayrocRefundId::as_str),
            Some("CD3HN88U9F")
        );
        assert!(done.first_sent_at.is_some());
        let trail: i64 = ledger
            .connection
            .query_row("SELECT COUNT(*) FROM attempts WHERE outcome = 'succeeded'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(trail, 1);
        drop(ledger);
        // Reopening keeps everything and does not re-run migrations.
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.find("id-1").unwrap().unwrap().state, RefundStatus::Succeeded);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_mark_taken_back_leaves_the_refund_as_it_was() {
        let (_directory, mut ledger) = temporary_ledger();
        let first = ledger.begin_batch("file.csv", "abc", Environment::Uat, "run").unwrap();
        let record = ledger.insert(&new_refund("id-1", key(0)), first, 2).unwrap();
        let second = ledger.begin_batch("file.csv", "abc", Environment::Uat, "run").unwrap();
        let attempt = ledger.mark_sending(&record, second).unwrap();
        let marked = ledger.find("id-1").unwrap().unwrap();
        assert_eq!(
            (marked.state, marked.attempts, marked.batch_id),
            (RefundStatus::Sending, 1, Some(second))
        );
        assert!(marked.first_sent_at.is_some());
        ledger.unmark_sending(&record, attempt).unwrap();
        assert_eq!(ledger.find("id-1").unwrap(), Some(record.clone()));
        // A reconciliation inside a caller's group joins it rather than committing it.
        ledger.begin_group().unwrap();
        ledger
            .record_reconciliation(record.id, second, &RefundUpdate::default())
            .unwrap();
        assert!(ledger.group_open, "the caller's group is still open");
        ledger.commit_group().unwrap();
        let attempts: i64 = ledger
            .connection
            .query_row("SELECT COUNT(*) FROM attempts", [], |row| row.get(0))
            .unwrap();
        assert_eq!(attempts, 1, "the reconciliation's attempt, not the mark's");
    }

    #[test]
    fn a_new_generation_remembers_every_key() {
        let (_directory, mut ledger) = temporary_ledger();
        let batch = ledger
            .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
            .unwrap();
        let record = ledger.insert(&new_refund("id-1", key(0)), batch, 2).unwrap();
        ledger
            .record(
                record.id,
                None,
                &RefundUpdate {
                    state: Some(RefundStatus::Declined),
                    ..RefundUpdate::default()
                },
                0,
            )
            .unwrap();
        let next = ledger
            .next_generation(record.id, 1, key(1), &new_refund("id-1", key(1)), batch, 2, None)
            .unwrap();
        assert_eq!(
            (next.generation, next.state, next.idempotency_key),
            (1, RefundStatus::Pending, key(1))
        );
        let keys: i64 = ledger
            .connection
            .query_row("SELECT COUNT(*) FROM keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(keys, 2);
    }

    /// Every field of Payroc's answer is stored and read back by name; an answer without a refund
    /// id keeps the one recorded, and a new key generation starts with no answer at all.
    #[test]
    fn an_answer_keeps_its_refund_id_until_the_next_generation() {
        let (_directory, mut ledger) = temporary_ledger();
        let batch = ledger
            .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
            .unwrap();
        let record = ledger.insert(&new_refund("id-1", key(0)), batch, 2).unwrap();
        let answer = PayrocAnswer {
            http_status: Some(201),
            refund_id: Some(PayrocRefundId("CD3HN88U9F".into())),
            payroc_status: Some("ready".into()),
            response_code: Some("D".into()),
            response_message: Some("DECLINED".into()),
            problem_type: Some("declined".into()),
            problem_detail: Some("the bank said no".into()),
            authorized_amount_minor: Some(0),
            approval_code: Some("A1B2C3".into()),
            processor_response_code: Some("05".into()),
            notes: Some("a note".into()),
        };
        let declined = |answer| RefundUpdate {
            state: Some(RefundStatus::Declined),
            answer,
            ..RefundUpdate::default()
        };
        ledger.record(record.id, None, &declined(answer.clone()), 0).unwrap();
        assert_eq!(ledger.find("id-1").unwrap().unwrap().answer, answer);
        let without_id = PayrocAnswer {
            http_status: Some(400),
            ..PayrocAnswer::default()
        };
        ledger.record(record.id, None, &declined(without_id), 0).unwrap();
        let kept = ledger.find("id-1").unwrap().unwrap().answer;
        assert_eq!(
            (kept.http_status, kept.refund_id.as_ref(), kept.notes.as_ref()),
            (Some(400), answer.refund_id.as_ref(), None)
        );
        let next = ledger
            .next_generation(record.id, 1, key(1), &new_refund("id-1", key(1)), batch, 2, None)
            .unwrap();
        assert_eq!(next.answer, PayrocAnswer::default());
    }

    /// A method, currency, environment, state or Idempotency-Key this version does not know is a
    /// corrupt ledger wherever it is read, never a default.
    #[test]
    fn an_unknown_stored_name_is_a_corrupt_ledger() {
        for (column, text) in [
            ("method", "wire"),
            ("currency", "XYZ"),
            ("currency", "usd"),
            ("environment", "staging"),
            ("state", "done"),
            ("idempotency_key", "key-0"),
            ("idempotency_key", "96DDFEDA-0903-4F91-9422-879837030B51"),
        ] {
            let (_directory, mut ledger) = temporary_ledger();
            let batch = ledger
                .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
                .unwrap();
            ledger.insert(&new_refund("id-1", key(0)), batch, 2).unwrap();
            ledger
                .connection
                .execute(&format!("UPDATE refunds SET {column} = ?1"), [text])
                .unwrap();
            let corrupt = |result: Result<(), LedgerError>| matches!(result, Err(LedgerError::Corrupt { message, .. }) if message.contains(&format!("{text:?}")));
            assert!(corrupt(ledger.find("id-1").map(drop)), "{column} {text:?}: find");
            assert!(
                corrupt(ledger.records_of_batch(batch).map(drop)),
                "{column} {text:?}: a batch's records"
            );
            if !["method", "idempotency_key"].contains(&column) {
                assert!(corrupt(ledger.totals().map(drop)), "{column} {text:?}: totals");
            }
        }
        let (_directory, mut ledger) = temporary_ledger();
        ledger.begin_batch("file.csv", "abc", Environment::Uat, "run").unwrap();
        ledger
            .connection
            .execute("UPDATE batches SET environment = 'staging'", [])
            .unwrap();
        assert!(matches!(ledger.batches(None), Err(LedgerError::Corrupt { .. })));
    }

    /// `invalid` belongs to rows that failed validation, which never reach the ledger: it
    /// refuses to record it, by any path.
    #[test]
    fn the_ledger_never_stores_invalid() {
        let (_directory, mut ledger) = temporary_ledger();
        let batch = ledger
            .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
            .unwrap();
        let record = ledger.insert(&new_refund("id-1", key(0)), batch, 2).unwrap();
        let invalid = RefundUpdate {
            state: Some(RefundStatus::Invalid),
            ..RefundUpdate::default()
        };
        assert!(ledger.record(record.id, None, &invalid, 0).is_err());
        assert!(ledger.record_reconciliation(record.id, batch, &invalid).is_err());
        let attempt = ledger.mark_sending(&record, batch).unwrap();
        let mut previous = record.clone();
        previous.state = RefundStatus::Invalid;
        assert!(ledger.unmark_sending(&previous, attempt).is_err());
        assert_eq!(ledger.find("id-1").unwrap().unwrap().state, RefundStatus::Sending);
    }

    /// The ledger itself refuses a second live refund of one order and a new key for a refund
    /// that may exist, whatever the code above it forgot.
    #[test]
    fn the_ledger_refuses_a_second_refund_of_an_order_on_its_own() {
        let (_directory, mut ledger) = temporary_ledger();
        let batch = ledger
            .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
            .unwrap();
        let first = ledger.insert(&new_refund("v2|order", key(0)), batch, 2).unwrap();
        let set = |ledger: &mut Ledger, state| {
            let update = RefundUpdate {
                state: Some(state),
                ..RefundUpdate::default()
            };
            ledger.record(first.id, None, &update, 0).unwrap();
        };
        // Another record of the same order (an earlier version's identity, say) while it is live.
        let second = ledger.insert(&new_refund("legacy-bank", key(7)), batch, 3);
        assert!(
            matches!(&second, Err(LedgerError::Sqlite { source, .. }) if source.to_string().contains("one order is one refund")),
            "{second:?}"
        );
        // A new key for a refund that succeeded, or may have been created.
        for state in [RefundStatus::Succeeded, RefundStatus::Unknown, RefundStatus::Sending] {
            set(&mut ledger, state);
            let next = ledger.next_generation(first.id, 1, key(1), &new_refund("v2|order", key(1)), batch, 2, None);
            assert!(next.is_err(), "{state}: {next:?}");
        }
        // ...unless a person confirmed, in that very update, that nothing was created.
        let confirmed = ledger.next_generation(
            first.id,
            1,
            key(1),
            &new_refund("v2|order", key(1)),
            batch,
            2,
            Some("2026-12-04T00:00:00.000Z"),
        );
        assert!(confirmed.is_ok(), "{confirmed:?}");
        // Once the order's refund is a definite failure another record of it may start.
        ledger
            .record(
                first.id,
                None,
                &RefundUpdate {
                    state: Some(RefundStatus::Declined),
                    ..RefundUpdate::default()
                },
                0,
            )
            .unwrap();
        assert!(ledger.insert(&new_refund("legacy-bank", key(7)), batch, 3).is_ok());
    }
}
