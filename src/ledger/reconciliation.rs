//! Settling refunds from what Payroc holds, and what the ledger knows of an order besides one
//! record.
//!
//! `reconcile` records what Payroc's records say of a refund ([`Ledger::record_reconciliation`]),
//! or a person's confirmation that Payroc has no refund for an order
//! ([`Ledger::confirm_not_created`]), each with an audit-trail attempt that records the decision
//! rather than a send; it tells an earlier generation's refund from the one it looks for with
//! [`Ledger::earlier_generation_refund_ids`]. The dispatcher's gate reads the other records of an
//! order ([`Ledger::same_order`]) before it lets a row start a new key.

use rusqlite::params;

use super::records::read_record;
use super::{BatchId, Ledger, LedgerError, NewRefund, RefundId, RefundRecord, RefundUpdate, now};
use crate::refund::key::IdempotencyKey;
use crate::refund::{Environment, PayrocRefundId};

impl Ledger {
    /// Settles a refund from what Payroc's records say (`reconcile`), leaving an audit-trail
    /// attempt that records the lookup rather than a send.
    pub fn record_reconciliation(
        &mut self,
        id: RefundId,
        batch: BatchId,
        outcome: &RefundUpdate,
    ) -> Result<(), LedgerError> {
        let time = now();
        let detail = format!(
            "reconciled: {}",
            outcome.answer.problem_detail.as_deref().unwrap_or("found at Payroc")
        );
        self.in_one_group(|ledger| {
            ledger.write(|connection| {
                connection.execute(
                    "INSERT INTO attempts (refund_id, batch_id, generation, idempotency_key, started_at, finished_at, \
                     http_status, outcome, detail, payroc_refund_id) \
                     SELECT id, ?2, generation, idempotency_key, ?3, ?3, ?4, ?5, ?6, ?7 FROM refunds WHERE id = ?1",
                    params![
                        id,
                        batch,
                        time,
                        outcome.answer.http_status,
                        outcome.state,
                        detail,
                        outcome.answer.refund_id
                    ],
                )
            })?;
            ledger.record(id, None, outcome, 0)
        })
    }

    /// A person confirmed, from a complete lookup, that Payroc has no refund for this order:
    /// the refund moves to its next key generation (`pending`), and the decision is kept with
    /// its time on the refund and in the audit trail.
    #[allow(clippy::too_many_arguments)] // next_generation's arguments, plus the decision's words
    pub fn confirm_not_created(
        &mut self,
        id: RefundId,
        generation: u32,
        key: IdempotencyKey,
        refund: &NewRefund<'_>,
        batch: BatchId,
        row: u64,
        detail: &str,
    ) -> Result<RefundRecord, LedgerError> {
        let time = now();
        self.in_one_group(|ledger| {
            ledger.write(|connection| {
                connection.execute(
                    "INSERT INTO attempts (refund_id, batch_id, generation, idempotency_key, started_at, finished_at, outcome, detail) \
                     SELECT id, ?2, generation, idempotency_key, ?3, ?3, 'pending', ?4 FROM refunds WHERE id = ?1",
                    params![id, batch, time, detail],
                )
            })?;
            ledger.next_generation(id, generation, key, refund, batch, row, Some(&time))?;
            ledger.write(|connection| {
                connection.execute(
                    "UPDATE refunds SET problem_detail = ?2 WHERE id = ?1",
                    params![id, detail],
                )
            })?;
            Ok(())
        })?;
        self.find_by_id(id)
    }

    /// The other records the ledger holds for an order — same environment, the terminal and the
    /// order id in any letter case (the caller decides what a case variant means) — except
    /// `except`, each with the input file of its batch.
    pub fn same_order(
        &self,
        environment: Environment,
        processing_terminal_id: &str,
        order_id: &str,
        except: Option<RefundId>,
    ) -> Result<Vec<(RefundRecord, Option<String>)>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT refunds.*, (SELECT input_path FROM batches WHERE batches.id = refunds.batch_id) AS batch_input_path \
                 FROM refunds WHERE environment = ?1 AND lower(processing_terminal_id) = lower(?2) AND lower(order_id) = lower(?3) AND id IS NOT ?4 ORDER BY id",
            )
            .map_err(|source| self.sqlite_error(source))?;
        let rows: Vec<(Result<RefundRecord, String>, Option<String>)> = statement
            .query_map(params![environment, processing_terminal_id, order_id, except], |row| {
                Ok((read_record(row)?, row.get("batch_input_path")?))
            })
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        rows.into_iter()
            .map(|(record, file)| {
                record
                    .map(|record| (record, file))
                    .map_err(|message| LedgerError::Corrupt {
                        path: self.path.clone(),
                        message,
                    })
            })
            .collect()
    }

    /// Payroc refund ids produced by earlier key generations of this refund: a lookup by order
    /// finds those too, and they are not the refund being reconciled.
    pub fn earlier_generation_refund_ids(&self, id: RefundId) -> Result<Vec<PayrocRefundId>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT a.payroc_refund_id FROM attempts a JOIN refunds r ON r.id = a.refund_id \
                 WHERE a.refund_id = ?1 AND a.generation < r.generation AND a.payroc_refund_id IS NOT NULL",
            )
            .map_err(|source| self.sqlite_error(source))?;
        let ids = statement
            .query_map(params![id], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        Ok(ids)
    }
}
