//! Reconciliation: settling rows whose outcome is unknown from what Payroc's records say.
//!
//! A row ends `unknown` (or stays `sending` after a crash) when its request may have reached
//! Payroc but no definite answer came back. Re-sending with the same key is safe while Payroc
//! remembers the key (7 days); beyond that only a lookup is. `reconcile` looks each such row up
//! with `GET /refunds?processingTerminalId=…&orderId=…` (or the bank-transfer list) and:
//!
//! - one matching refund (same amount and currency, not one an earlier key generation already
//!   produced): the row takes its outcome — succeeded, queued or declined;
//! - none: the refund was never created. The row goes back to `pending` and the next `run`
//!   sends it — with the *same* key while Payroc still remembers it (so a slow original that
//!   lands late is still de-duplicated), or under the next key generation once the first send is
//!   more than six days old (the old key is about to be forgotten anyway);
//! - several: the row stays `unknown` with the refund ids, for a person to settle.

use std::collections::{HashMap, HashSet};

use crate::client::{PayrocClient, SendResult};
use crate::dispatch::{DispatchError, RowNote, StopReason, new_refund, sent_too_long_ago};
use crate::input::{InputReader, ParsedRow};
use crate::ledger::{Ledger, Outcome, RefundState};
use crate::output::Progress;
use crate::request::prepare;

/// How reconciliation runs.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// `sandbox`, `uat` or `production`.
    pub environment: String,
    /// Key namespace.
    pub namespace: String,
    /// Also look up `queued` rows.
    pub include_queued: bool,
    /// The ledger batch.
    pub batch: i64,
}

/// What reconciliation did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Rows looked up at Payroc.
    pub looked_up: u64,
    /// Rows settled from a found refund.
    pub settled: u64,
    /// Rows proven never created (now pending).
    pub not_created: u64,
    /// Notes for the results, by row.
    pub notes: HashMap<u64, RowNote>,
    /// Why it stopped early, if it did.
    pub stopped: Option<StopReason>,
}

/// Looks up every row of `input` whose ledger state calls for it, and settles it.
pub async fn reconcile(
    ledger: &mut Ledger,
    mut input: InputReader,
    skip_rows: &HashSet<u64>,
    client: &PayrocClient,
    options: &ReconcileOptions,
    progress: &Progress,
) -> Result<ReconcileReport, DispatchError> {
    let mut report = ReconcileReport::default();
    while let Some(parsed) = input.next_row() {
        let row = match parsed? {
            ParsedRow::Valid(row) if !skip_rows.contains(&row.row) => row,
            _ => continue,
        };
        let prepared = prepare(&row, &options.environment, &options.namespace);
        let Some(record) = ledger.find(&prepared.identity.ledger_id())? else {
            continue;
        };
        // A `pending` row that was sent before (its requests never reached Payroc, or a systemic
        // stop followed) is looked up too: past six days `run` holds it for reconcile.
        let wanted = matches!(record.state, RefundState::Unknown | RefundState::Sending)
            || (record.state == RefundState::Pending && record.first_sent_at.is_some())
            || (options.include_queued && record.state == RefundState::Queued);
        if !wanted {
            continue;
        }
        report.looked_up += 1;
        let found = match client
            .find_refunds(row.method, &row.processing_terminal_id, &row.order_id)
            .await
        {
            Ok(found) => found,
            Err(SendResult::Systemic(error)) => {
                report.stopped = Some(StopReason::Systemic(error));
                break;
            }
            Err(failure) => {
                let detail = match failure {
                    SendResult::GaveUp { detail, .. } => detail,
                    other => format!("{other:?}"),
                };
                report.notes.insert(
                    row.row,
                    RowNote {
                        status: record.state.result_status(),
                        error: format!("the lookup at Payroc failed: {detail}"),
                    },
                );
                progress.finished(record.state);
                continue;
            }
        };
        let earlier = ledger.earlier_generation_refund_ids(record.id)?;
        let candidates: Vec<_> = found
            .into_iter()
            .filter(|refund| !earlier.contains(&refund.refund_id))
            .filter(|refund| refund.amount_minor.is_none_or(|amount| amount == record.amount_minor))
            .filter(|refund| {
                refund
                    .currency
                    .as_deref()
                    .is_none_or(|currency| currency == record.currency)
            })
            .collect();
        match candidates.as_slice() {
            [refund] => {
                ledger.record_reconciliation(record.id, options.batch, &refund.outcome)?;
                report.settled += 1;
                progress.finished(refund.outcome.state.unwrap_or(RefundState::Unknown));
            }
            [] if record.state == RefundState::Queued => {
                report.notes.insert(
                    row.row,
                    RowNote {
                        status: "queued",
                        error: "Payroc accepted this refund earlier but its list for the order does not show it; check in Payroc".into(),
                    },
                );
                progress.finished(record.state);
            }
            [] => {
                report.not_created += 1;
                if sent_too_long_ago(&record) {
                    let generation = record.generation + 1;
                    let key = prepared.identity.key(generation).to_string();
                    let identity = prepared.identity.ledger_id();
                    let refund = new_refund(&identity, &prepared, &key, row.amount_minor, row.currency.code());
                    ledger.next_generation(record.id, generation, &key, &refund, options.batch, row.row)?;
                } else {
                    let outcome = Outcome {
                        state: Some(RefundState::Pending),
                        problem_detail: Some(
                            "Payroc has no refund for this order: it was never created. The next run sends it with the same key".into(),
                        ),
                        ..Outcome::default()
                    };
                    ledger.record_reconciliation(record.id, options.batch, &outcome)?;
                }
                progress.finished(RefundState::Pending);
            }
            several => {
                let ids: Vec<&str> = several.iter().map(|refund| refund.refund_id.as_str()).collect();
                report.notes.insert(
                    row.row,
                    RowNote {
                        status: "unknown",
                        error: format!(
                            "Payroc has {} refunds for this order and amount ({}); settle it by hand before sending anything",
                            ids.len(),
                            ids.join(", ")
                        ),
                    },
                );
                progress.finished(RefundState::Unknown);
            }
        }
    }
    Ok(report)
}
