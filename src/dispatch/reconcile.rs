//! Reconciliation: settling rows whose outcome is unknown from what Payroc's records say.
//!
//! A row ends `unknown` (or stays `sending` after a crash) when its request may have reached
//! Payroc but no definite answer came back. Re-sending with the same key is safe while Payroc
//! remembers the key (7 days); beyond that only a lookup is. `reconcile` looks each such row up
//! with `GET /refunds?processingTerminalId=…&orderId=…&dateFrom=…&dateTo=…` (or the
//! bank-transfer list) over an explicit window — from a day before the refund's first send to a
//! day after now, because Payroc documents no default window — following every page, and:
//!
//! - one refund of the same order, amount and currency (not one an earlier key generation
//!   already produced): the row takes its outcome — succeeded, queued or declined;
//! - none, within six days of the first send: the refund was never created. The row goes back to
//!   `pending` and the next `run` sends it with the *same* key, which Payroc still remembers, so
//!   a slow original that lands late is still de-duplicated;
//! - none, later than that: the row stays `unknown` ("Payroc lists no refund for this order
//!   between … and …"). A new key could refund twice if the listing missed something, so only a
//!   person can allow it: `reconcile --confirm-not-created ROWS|all` records that decision, with
//!   its time, and moves the row to its next key generation for the next `run`;
//! - several, or refunds of the order with other details: the row stays `unknown` with the
//!   refund ids, for a person to settle.
//!
//! With `--refresh` it also follows refunds after the run: every row with a Payroc refund id
//! whose status can still change — a card refund not yet `complete` (it can be reversed until its
//! batch closes), an approved bank transfer not yet `complete`, and a `complete` one while its
//! first send is younger than the return window (`--return-window-days`, 60: the customer's bank
//! can return an ACH transfer after it settled), and `queued` and `partial` rows — is read again by id (`GET /refunds/{id}`, `GET /bank-transfer-refunds/{id}`) and takes
//! what Payroc says now: `succeeded`, `declined`, `returned`, `reversed`. It sends no refund.

use std::collections::{BTreeMap, HashMap, HashSet};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dispatch::ProgressReport;
use crate::dispatch::gate::{NewKey, refuse_new_key};
use crate::dispatch::lookup::{
    case_variants_at_payroc, describe_found, is_the_records_refund, order_in_both_lists, refunded_something,
};
use crate::dispatch::outcome::of_refund;
use crate::dispatch::{DispatchError, StopReason, new_refund, sent_too_long_ago};
use crate::input::{InputReader, ParsedRow};
use crate::ledger::{BatchId, Ledger, PayrocAnswer, RefundRecord, RefundUpdate};
use crate::payroc::body::prepare;
use crate::payroc::{PayrocClient, SendResult};
use crate::refund::{Environment, Method, RefundStatus, RowNote};

/// How reconciliation runs.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Where refunds go.
    pub environment: Environment,
    /// Key namespace.
    pub namespace: String,
    /// Also look up `queued` rows.
    pub include_queued: bool,
    /// The ledger batch.
    pub batch: BatchId,
    /// Rows a person confirmed were never created (`--confirm-not-created`).
    pub confirm_not_created: RowSelection,
    /// Also read again every refund whose Payroc status can still change (`--refresh`).
    pub refresh: bool,
    /// Order ids that differ only by letter case are different orders (`--allow-case-variants`).
    pub allow_case_variants: bool,
    /// How long after its first send a `complete` bank transfer is still read again by
    /// `--refresh` (`--return-window-days`): ACH returns come after settlement.
    pub return_window: time::Duration,
}

/// Which rows of the file an option applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RowSelection {
    /// None.
    #[default]
    None,
    /// These row numbers (as the results CSV shows them).
    Rows(HashSet<u64>),
    /// Every row.
    All,
}

impl RowSelection {
    /// Parses `all` or a comma-separated list of row numbers (`5,7,12`).
    pub fn parse(text: &str) -> Result<RowSelection, String> {
        if text.trim().eq_ignore_ascii_case("all") {
            return Ok(RowSelection::All);
        }
        text.split(',')
            .map(|part| {
                part.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|row| *row >= 2)
                    .ok_or_else(|| format!("{part:?} is not a row number (2 or more: row 1 is the header), nor `all`"))
            })
            .collect::<Result<HashSet<u64>, String>>()
            .map(RowSelection::Rows)
    }

    /// Whether `row` was named one by one (not by `all`): such a row is reported whatever
    /// kept it from being acted on, even when it was never a candidate.
    pub fn names(&self, row: u64) -> bool {
        matches!(self, RowSelection::Rows(rows) if rows.contains(&row))
    }

    /// Whether `row` is selected.
    pub fn contains(&self, row: u64) -> bool {
        match self {
            RowSelection::None => false,
            RowSelection::Rows(rows) => rows.contains(&row),
            RowSelection::All => true,
        }
    }
}

/// What reconciliation did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Rows looked up at Payroc.
    pub looked_up: u64,
    /// Rows settled from a found refund.
    pub settled: u64,
    /// Rows proven never created within six days of their first send (now pending, same key).
    pub not_created: u64,
    /// Rows not found more than six days after their first send, left `unknown`.
    pub not_found_too_old: u64,
    /// Rows a person confirmed were never created, moved to a new key.
    pub confirmed: u64,
    /// Refunds read again by id (`--refresh`).
    pub refreshed: u64,
    /// Of those, the ones whose state changed.
    pub changed: u64,
    /// Notes for the results, by row.
    pub notes: HashMap<u64, RowNote>,
    /// `--confirm-not-created`: every row it was asked about and did not move to a new key, with
    /// why. With `all`, only the rows that were looked up (the others were never candidates).
    pub not_confirmed: BTreeMap<u64, String>,
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
    progress: &dyn ProgressReport,
) -> Result<ReconcileReport, DispatchError> {
    let mut report = ReconcileReport::default();
    let now = crate::clock::now();
    // Rows read so far, so that a row number asked about and never met can be told apart.
    let mut last_row = 1;
    let mut confirmed_rows = HashSet::new();
    while let Some(parsed) = input.next_row() {
        let row = match parsed? {
            ParsedRow::Valid(row) if !skip_rows.contains(&row.row) => row,
            ParsedRow::Valid(row) => {
                last_row = row.row;
                not_confirmed(
                    &mut report,
                    options,
                    row.row,
                    false,
                    "the row is invalid (it repeats an earlier row's order); nothing was sent for it".into(),
                );
                continue;
            }
            ParsedRow::Invalid { label, .. } => {
                last_row = label.row;
                not_confirmed(
                    &mut report,
                    options,
                    label.row,
                    false,
                    "the row is invalid; nothing was sent for it".into(),
                );
                continue;
            }
        };
        last_row = row.row;
        let prepared = prepare(&row, options.environment, &options.namespace);
        let Some(record) = ledger.find_order(&prepared.ledger_id, &prepared.legacy_ledger_id)? else {
            not_confirmed(
                &mut report,
                options,
                row.row,
                false,
                "the ledger has no refund for this row: it was never sent, and the next run sends it".into(),
            );
            continue;
        };
        // The way the order's refund went, which a row of another file may not share.
        let method = record.method;
        if options.refresh
            && let Some(refund_id) = record
                .answer
                .refund_id
                .clone()
                .filter(|_| may_still_change(method, &record, options.return_window, now))
        {
            not_confirmed(
                &mut report,
                options,
                row.row,
                false,
                format!("the row is {}, not unknown", record.state.as_str()),
            );
            report.refreshed += 1;
            match client.get_refund(method, refund_id.as_str()).await {
                Ok(refund) => {
                    let mut outcome = of_refund(method, &refund);
                    outcome.answer.http_status = Some(200);
                    let state = outcome.state.unwrap_or(RefundStatus::Unknown);
                    if state != record.state {
                        report.changed += 1;
                    }
                    ledger.record_reconciliation(record.id, options.batch, &outcome)?;
                    tracing::info!(
                        row = row.row,
                        order_id = %record.order_id,
                        status = state.in_results().as_str(),
                        "refund read again"
                    );
                    progress.finished(state);
                }
                Err(SendResult::Systemic(error)) => {
                    report.stopped = Some(StopReason::Systemic(error));
                    break;
                }
                Err(failure) => leave_as_it_was(
                    &mut report,
                    progress,
                    row.row,
                    record.state,
                    format!(
                        "reading refund {refund_id} again at Payroc failed, so it is as it was: {}",
                        failure.detail()
                    ),
                ),
            }
            continue;
        }
        // A `pending` row that was sent before (its requests never reached Payroc, or a systemic
        // stop followed) is looked up too: past six days `run` holds it for reconcile.
        let wanted = matches!(record.state, RefundStatus::Unknown | RefundStatus::Sending)
            || (record.state == RefundStatus::Pending && record.first_sent_at.is_some())
            || (options.include_queued && record.state == RefundStatus::Queued);
        if !wanted {
            not_confirmed(
                &mut report,
                options,
                row.row,
                false,
                format!("the row is {}, not unknown", record.state.as_str()),
            );
            continue;
        }
        report.looked_up += 1;
        let window = lookup_window(&record);
        let found = match order_in_both_lists(
            client,
            &record.processing_terminal_id,
            &record.order_id,
            method,
            window,
            None,
        )
        .await
        {
            Ok(found) => found,
            Err(SendResult::Systemic(error)) => {
                report.stopped = Some(StopReason::Systemic(error));
                break;
            }
            Err(failure) => {
                let why = format!(
                    "the lookup at Payroc failed, so nothing was concluded: {}",
                    failure.detail()
                );
                not_confirmed(&mut report, options, row.row, true, why.clone());
                leave_as_it_was(&mut report, progress, row.row, record.state, why);
                continue;
            }
        };
        let earlier = ledger.earlier_generation_refund_ids(record.id)?;
        let (matching, others): (Vec<_>, Vec<_>) = found
            .into_iter()
            .filter(|(_, refund)| {
                refund
                    .refund_id
                    .as_ref()
                    .is_none_or(|id| !earlier.iter().any(|earlier| earlier.as_str() == id))
            })
            .partition(|(listed_by, refund)| {
                *listed_by == method && is_the_records_refund(*listed_by, refund, &record)
            });
        let matching: Vec<_> = matching.into_iter().map(|(_, refund)| refund).collect();
        // Refunds of this order, by either method, with other details that did refund
        // something: not this row's, and not something a new send should be added to.
        let others: Vec<_> = others
            .into_iter()
            .filter(|(listed_by, refund)| refunded_something(*listed_by, refund))
            .map(|(_, refund)| refund)
            .collect();
        let window_text = format!("{} and {}", format_day(window.0), format_day(window.1));
        match (matching.as_slice(), others.as_slice()) {
            ([refund], []) => {
                let mut outcome = of_refund(method, refund);
                outcome.answer.http_status = Some(200);
                not_confirmed(
                    &mut report,
                    options,
                    row.row,
                    false,
                    format!(
                        "Payroc has refund {} for it, so the row took its outcome ({})",
                        refund.refund_id.as_deref().unwrap_or("(no id)"),
                        outcome.state.unwrap_or(RefundStatus::Unknown).as_str()
                    ),
                );
                ledger.record_reconciliation(record.id, options.batch, &outcome)?;
                report.settled += 1;
                tracing::info!(
                    row = row.row,
                    order_id = %record.order_id,
                    refund_id = refund.refund_id.as_deref().unwrap_or("(no id)"),
                    status = outcome.state.unwrap_or(RefundStatus::Unknown).in_results().as_str(),
                    "refund found at Payroc"
                );
                progress.finished(outcome.state.unwrap_or(RefundStatus::Unknown));
            }
            ([], []) if record.state == RefundStatus::Queued => {
                not_confirmed(
                    &mut report,
                    options,
                    row.row,
                    false,
                    "the row is queued, not unknown".into(),
                );
                report.notes.insert(
                    row.row,
                    RowNote {
                        status: RefundStatus::Queued,
                        error: format!(
                            "Payroc accepted this refund earlier but lists no refund for the order between {window_text}; check in Payroc"
                        ),
                    },
                );
                progress.finished(record.state);
            }
            ([], []) if !sent_too_long_ago(&record) => {
                report.not_created += 1;
                not_confirmed(
                    &mut report,
                    options,
                    row.row,
                    true,
                    "its first send was less than six days ago, so it keeps its key (Payroc still remembers it): the next run sends it under that key".into(),
                );
                let outcome = RefundUpdate {
                    state: Some(RefundStatus::Pending),
                    answer: PayrocAnswer {
                        problem_detail: Some(format!(
                            "Payroc lists no refund for this order between {window_text}: it was never created. The next run sends it with the same key"
                        )),
                        ..PayrocAnswer::default()
                    },
                    ..RefundUpdate::default()
                };
                ledger.record_reconciliation(record.id, options.batch, &outcome)?;
                progress.finished(RefundStatus::Pending);
            }
            ([], []) if options.confirm_not_created.contains(row.row) => {
                if let Some(note) = refuse_new_key(
                    ledger,
                    &prepared,
                    Some(&record),
                    NewKey::ConfirmedNotCreated,
                    options.allow_case_variants,
                )? {
                    progress.finished(record.state);
                    not_confirmed(&mut report, options, row.row, true, note.error.clone());
                    report.notes.insert(row.row, note);
                    continue;
                }
                if !options.allow_case_variants {
                    let variants = case_variants_at_payroc(
                        client,
                        &record.processing_terminal_id,
                        &record.order_id,
                        method,
                        window,
                    )
                    .await;
                    let why = match variants {
                        Ok(variants) if variants.is_empty() => None,
                        Ok(variants) => Some(format!(
                            "Payroc has a refund for an order id that differs only by letter case ({}): the same order, \
                             so nothing more is sent. Pass --allow-case-variants if they really are different orders",
                            variants
                                .iter()
                                .map(|(listed_by, refund)| describe_found(*listed_by, refund))
                                .collect::<Vec<_>>()
                                .join("; ")
                        )),
                        Err(SendResult::Systemic(error)) => {
                            report.stopped = Some(StopReason::Systemic(error));
                            break;
                        }
                        Err(failure) => Some(format!(
                            "the lookup at Payroc failed, so nothing was concluded: {}",
                            failure.detail()
                        )),
                    };
                    if let Some(why) = why {
                        not_confirmed(&mut report, options, row.row, true, why.clone());
                        leave_as_it_was(&mut report, progress, row.row, record.state, why);
                        continue;
                    }
                }
                report.confirmed += 1;
                confirmed_rows.insert(row.row);
                let generation = record.generation + 1;
                let key = prepared.identity.key(generation);
                let refund = new_refund(&prepared, key, row.amount_minor, row.currency);
                let detail = format!(
                    "a person confirmed (reconcile --confirm-not-created) that Payroc has no refund for this order; \
                     Payroc lists none between {window_text}. The next run sends it under a new key"
                );
                ledger.confirm_not_created(record.id, generation, key, &refund, options.batch, row.row, &detail)?;
                progress.finished(RefundStatus::Pending);
            }
            ([], []) => {
                report.not_found_too_old += 1;
                let detail = format!(
                    "Payroc lists no refund for this order between {window_text}, but its first send was more than six days ago \
                     and Payroc forgets keys after seven, so a new send could refund twice if the listing missed it. \
                     If you are sure nothing was refunded, run `refund-batch reconcile FILE --confirm-not-created {}`",
                    row.row
                );
                let outcome = RefundUpdate {
                    state: Some(RefundStatus::Unknown),
                    answer: PayrocAnswer {
                        problem_detail: Some(detail),
                        ..PayrocAnswer::default()
                    },
                    may_have_reached: record.may_have_reached,
                };
                ledger.record_reconciliation(record.id, options.batch, &outcome)?;
                progress.finished(RefundStatus::Unknown);
            }
            (matching, others) => {
                let ids: Vec<&str> = matching
                    .iter()
                    .chain(others)
                    .map(|refund| refund.refund_id.as_deref().unwrap_or("(no id)"))
                    .collect();
                not_confirmed(
                    &mut report,
                    options,
                    row.row,
                    true,
                    format!(
                        "Payroc has refunds for this order ({}): settle it by hand",
                        ids.join(", ")
                    ),
                );
                report.notes.insert(
                    row.row,
                    RowNote {
                        status: RefundStatus::Unknown,
                        error: format!(
                            "Payroc has {} refunds for this order ({}), {} with this amount and currency; settle it by hand before sending anything",
                            ids.len(),
                            ids.join(", "),
                            matching.len()
                        ),
                    },
                );
                progress.finished(RefundStatus::Unknown);
            }
        }
    }
    if let RowSelection::Rows(rows) = &options.confirm_not_created {
        let stopped = report.stopped.as_ref().map(|reason| match reason {
            StopReason::Systemic(error) => error.to_string(),
            StopReason::Interrupted => "stopped by request".to_owned(),
            StopReason::Repeated(detail) => detail.clone(),
        });
        for row in rows {
            if report.not_confirmed.contains_key(row) || confirmed_rows.contains(row) {
                continue;
            }
            let why = match &stopped {
                Some(reason) if *row >= last_row => format!("reconcile stopped before it settled this row: {reason}"),
                _ if *row > last_row => format!("the file has no row {row} (its last row is {last_row})"),
                _ => "it was not looked up".to_owned(),
            };
            report.not_confirmed.insert(*row, why);
        }
    }
    Ok(report)
}

/// Records why `row`, if `--confirm-not-created` asked about it, was not moved to a new key.
/// `looked_up`: the row was a candidate (an unknown row looked up at Payroc), which `all`
/// reports too; a row that never was one is reported only when it was named.
fn not_confirmed(report: &mut ReconcileReport, options: &ReconcileOptions, row: u64, looked_up: bool, why: String) {
    let asked = options.confirm_not_created.names(row) || (looked_up && options.confirm_not_created.contains(row));
    if asked {
        report.not_confirmed.insert(row, why);
    }
}

/// A row the lookup could not settle keeps its state; the note says why.
fn leave_as_it_was(
    report: &mut ReconcileReport,
    progress: &dyn ProgressReport,
    row: u64,
    state: RefundStatus,
    error: String,
) {
    report.notes.insert(
        row,
        RowNote {
            status: state.in_results(),
            error,
        },
    );
    progress.finished(state);
}

/// Whether Payroc may still change what it says about this refund: an approved card refund
/// until its batch closes (`complete`); an approved bank transfer until it is `complete`, and
/// after that while its first send is younger than `return_window` — the customer's bank can
/// return an ACH transfer days after it settled, and a return means nothing was refunded; and
/// any `queued` or `partial` refund.
pub fn may_still_change(
    method: Method,
    record: &RefundRecord,
    return_window: time::Duration,
    now: OffsetDateTime,
) -> bool {
    let status = record.answer.payroc_status.as_deref();
    match record.state {
        RefundStatus::Queued | RefundStatus::Partial => true,
        RefundStatus::Succeeded => match method {
            Method::Card => status != Some("complete"),
            Method::Bank => {
                status != Some("complete") || first_sent(record).is_none_or(|first| now - first < return_window)
            }
        },
        _ => false,
    }
}

/// How far back every reconcile listing reaches at least, in days.
const LOOKUP_REACH_DAYS: u32 = 90;

/// When the refund was first sent (or first seen by the ledger); `None` when the ledger's time
/// cannot be read.
fn first_sent(record: &RefundRecord) -> Option<OffsetDateTime> {
    record
        .first_sent_at
        .as_deref()
        .or(Some(record.created_at.as_str()))
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
}

/// The listing window for a refund: from a day before its first send (or before the ledger
/// first saw it), or [`LOOKUP_REACH_DAYS`] back if that is earlier, to a day after now (Payroc's
/// time, see [`crate::clock`]), so that clocks that disagree by hours still overlap.
pub fn lookup_window(record: &RefundRecord) -> (OffsetDateTime, OffsetDateTime) {
    let now = crate::clock::now();
    let first = first_sent(record)
        // An unreadable time: reach back as far as Payroc could matter (the cautious reading).
        .unwrap_or(now - time::Duration::days(366));
    // At least the pre-send lookup's reach as well: a first send recorded by a clock that was
    // wrong then (an earlier version trusted the local clock) must still fall inside.
    let start = (first - time::Duration::days(1)).min(now - time::Duration::days(i64::from(LOOKUP_REACH_DAYS)));
    (start, now + time::Duration::days(1))
}

fn format_day(time: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time.format(&format).unwrap_or_default()
}
