//! The rows a run handles, between the loop's wake-ups: reading and deciding them ahead of
//! sending ([`Dispatcher::read_ahead`]), what they are while they wait and go ([`ReadyRow`],
//! [`Scheduled`], [`Finished`]), and recording what came of them inside the next commit
//! ([`Dispatcher::record_finished`]). The loop itself, with its waits and commits, is in the
//! module above.

use bytes::Bytes;

use super::*;

/// One finished task: a refund sent, or an order looked up before its first send.
pub(super) enum Finished {
    /// The refund's request (with its retries) ended.
    Sent {
        row: ReadyRow,
        attempt: AttemptId,
        report: crate::payroc::SendReport,
    },
    /// The lookup before the first send ended.
    LookedUp {
        row: ReadyRow,
        found: Result<Vec<(Method, CreatedRefund)>, SendResult>,
    },
}

impl Finished {
    /// Whether it ended in a failure that can stop the run (see [`FailureStreak`]): a systemic
    /// one, no answer at all, or a refusal about the account. A row's own refusal (a 400 for its
    /// data) cannot, and waits for the group's commit like a success.
    pub(super) fn may_stop_the_run(&self) -> bool {
        let result = match self {
            Finished::Sent { report, .. } => &report.result,
            Finished::LookedUp { found: Err(result), .. } => result,
            Finished::LookedUp { found: Ok(_), .. } => return false,
        };
        matches!(result, SendResult::Systemic(_)) || run_stopping_failure(result).is_some()
    }
}

/// Rows decided ahead of sending, at most: enough to fill a group, few enough that a stop
/// leaves little decided-but-unsent behind (those stay `pending`, which is harmless).
pub(super) const READ_AHEAD: usize = 512;

/// Rows read per pass when none of them needs sending (a re-run of a finished batch), so that
/// a stop request is still noticed between passes.
const SCAN_CHUNK: usize = 4096;

/// A row decided and ready to be sent.
pub(super) struct ReadyRow {
    pub(super) record: RefundRecord,
    pub(super) body: Bytes,
    pub(super) method: Method,
    /// Its row number in the file, for the results' notes.
    pub(super) input_row: u64,
    /// The `customFields` names sent, to notice any Payroc leaves out.
    pub(super) custom_field_names: Vec<String>,
}

/// A row whose turn has come: marked `sending` (committed) and waiting for a permit, or to be
/// looked up at Payroc first.
pub(super) enum Scheduled {
    /// Committed as `sending` under `attempt`; the request may leave.
    Send { row: ReadyRow, attempt: AttemptId },
    /// First seen by a new ledger: look the order up before sending it.
    Lookup(ReadyRow),
}

impl Dispatcher<'_> {
    /// Writes the outcomes of the requests that came back (inside the commit's transaction) and
    /// notices a run that is failing as a whole. Returns the rows' states, to be counted once
    /// the transaction is committed.
    pub(super) fn record_finished(&mut self) -> Result<Vec<RefundStatus>, DispatchError> {
        let mut states = Vec::with_capacity(self.finished.len());
        let mut results: Vec<SendResult> = Vec::new();
        let mut cleared = Vec::new();
        for finished in std::mem::take(&mut self.finished) {
            match finished {
                Finished::Sent {
                    row,
                    attempt,
                    report: sent,
                } => {
                    let outcome = crate::dispatch::outcome::of_send(
                        &sent,
                        crate::dispatch::outcome::Sent {
                            method: row.method,
                            order_id: &row.record.order_id,
                            custom_field_names: &row.custom_field_names,
                        },
                        row.record.may_have_reached,
                    );
                    // Named by the row and the order, as a person reads them: never a payee's number.
                    tracing::info!(
                        row = row.input_row,
                        order_id = %row.record.order_id,
                        status = outcome.state.map(|state| state.in_results().as_str()),
                        http_status = outcome.answer.http_status,
                        requests = sent.requests,
                        "refund finished"
                    );
                    let retries = i64::from(sent.requests.saturating_sub(1));
                    self.ledger.record(row.record.id, Some(attempt), &outcome, retries)?;
                    states.push(outcome.state.unwrap_or(RefundStatus::Unknown));
                    results.push(sent.result);
                }
                Finished::LookedUp { mut row, found } => {
                    match settle_lookup(self.ledger, &row.record, row.method, found, self.options.batch)? {
                        LookupVerdict::Clear => {
                            self.ledger.clear_precheck(row.record.id)?;
                            row.record.needs_precheck = false;
                            cleared.push(row);
                        }
                        LookupVerdict::Settled(state) => states.push(state),
                        LookupVerdict::Failed(note, result) => {
                            states.push(RefundStatus::Pending);
                            results.push(*result);
                            self.report.notes.insert(row.input_row, note);
                        }
                    }
                }
            }
        }
        for result in &results {
            let reason = match result {
                SendResult::Systemic(error) => Some(StopReason::Systemic(error.clone())),
                other => self.streak.observe(other),
            };
            if let Some(reason) = reason
                && self.report.stopped.is_none()
            {
                self.report.stopped = Some(reason);
                self.ready.clear();
            }
        }
        // Looked up and not found: these go out next, ahead of rows not looked up yet.
        if self.report.stopped.is_none() {
            for row in cleared.into_iter().rev() {
                self.ready.push_front(row);
            }
        }
        Ok(states)
    }

    /// Decides rows until enough are ready to send (or a pass of [`SCAN_CHUNK`] rows found none
    /// to send). Its ledger writes join the commit's transaction.
    pub(super) fn read_ahead(&mut self) -> Result<(), DispatchError> {
        let mut scanned = 0;
        while self.ready.len() < READ_AHEAD && scanned < SCAN_CHUNK {
            let Some(parsed) = self.input.next_row() else {
                self.rows_exhausted = true;
                break;
            };
            scanned += 1;
            let parsed = match parsed {
                // The file no longer holds what was validated: nothing more is read from it. The
                // rows already read were validated and go on; the results name every row.
                Err(changed @ InputError::Changed { .. }) => {
                    self.rows_exhausted = true;
                    self.report.input_changed = Some(changed);
                    break;
                }
                other => other?,
            };
            let row = match parsed {
                ParsedRow::Valid(row) if !self.skip_rows.contains(&row.row) => row,
                ParsedRow::Valid(_) => continue,
                // Invalid rows were reported by validation and are never sent; every row read
                // here is compared with what validation read (`FileCheck::reopen`).
                ParsedRow::Invalid { .. } => continue,
            };
            let prepared = prepare(&row, self.options.environment, &self.options.namespace);
            match decide(
                self.ledger,
                &prepared,
                row.amount_minor,
                row.currency,
                self.options,
                row.row,
            )? {
                Decision::Send(record) => self.ready.push_back(ReadyRow {
                    record,
                    body: Bytes::from(crate::payroc::body::body(&row)),
                    method: row.method,
                    input_row: row.row,
                    custom_field_names: row.custom_fields.iter().map(|(name, _)| name.clone()).collect(),
                }),
                Decision::Done(record) => {
                    self.report.already_done += 1;
                    self.progress.already_done(record.state);
                }
                Decision::Hold(note) => {
                    self.progress.held(note.status);
                    self.report.notes.insert(row.row, note);
                }
            }
        }
        Ok(())
    }
}
