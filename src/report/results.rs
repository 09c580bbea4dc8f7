//! The results CSV: one line per input row, in input order, saying what happened and what to do.
//!
//! Written at the end of every run — finished, interrupted or stopped — from the ledger, by
//! streaming the input a third time and looking each row's identity up. It goes to a temporary
//! file (mode 0600) beside the target and is renamed over it, so a reader never sees half a file
//! and a crash never leaves a torn one. Cells a spreadsheet would run as a formula are neutralised.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::files;
use crate::input::{InputError, InputReader, ParsedRow};
use crate::ledger::{Ledger, LedgerError};
use crate::refund::key::Identity;
use crate::refund::money::{Currency, format_amount};
use crate::refund::redaction::{redact_digit_runs, redact_id};
use crate::refund::{Environment, RefundStatus, RowNote};
pub use crate::report::tally::Tally;

/// One line of the results CSV. The header is these field names, in this order: the one
/// definition of the columns.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ResultLine {
    /// Row number in the input (header = 1).
    pub row: u64,
    /// `card` or `bank`.
    pub method: String,
    /// The terminal.
    pub processing_terminal_id: String,
    /// The order id.
    pub order_id: String,
    /// The amount in major units, as the ledger sent it (or the file says, if never sent).
    pub amount: String,
    /// Currency code.
    pub currency: String,
    /// What happened to the row.
    pub status: RefundStatus,
    /// Payroc's `refundId`.
    pub refund_id: String,
    /// `transactionResult.status`.
    pub payroc_status: String,
    /// `transactionResult.responseCode`.
    pub response_code: String,
    /// `transactionResult.responseMessage`.
    pub response_message: String,
    /// `transactionResult.approvalCode`.
    pub approval_code: String,
    /// `transactionResult.processorResponseCode`.
    pub processor_response_code: String,
    /// What Payroc authorized, in major units, positive (e.g. `37.50` of a `75.00` partial).
    pub authorized_amount: String,
    /// Last HTTP status seen.
    pub http_status: String,
    /// Why the row is not done, or what went wrong.
    pub error: String,
    /// Warnings about Payroc's answer.
    pub notes: String,
    /// The Idempotency-Key in use.
    pub idempotency_key: String,
    /// Every HTTP request ever made for the refund.
    pub attempts: String,
    /// The masked payee.
    pub payee: String,
    /// Last change in the ledger.
    pub updated_at: String,
    /// `amount` in minor units, when it is a valid amount (for typed outputs such as the
    /// workbook; not a CSV column).
    #[serde(skip)]
    pub amount_minor: Option<i64>,
    /// `authorized_amount` in minor units, when Payroc gave one (not a CSV column).
    #[serde(skip)]
    pub authorized_minor: Option<i64>,
    /// The currency of the amounts, when the tool knows it (not a CSV column).
    #[serde(skip)]
    pub known_currency: Option<Currency>,
}

impl ResultLine {
    /// The line as the CSV writes it: cells a spreadsheet would run as a formula neutralised (see
    /// [`neutralise_formula`]). Borrowed when no cell needs it, as for nearly every line.
    fn neutralised(&self) -> std::borrow::Cow<'_, ResultLine> {
        let needs_it = self
            .cells()
            .iter()
            .any(|cell| matches!(neutralise_formula(cell), std::borrow::Cow::Owned(_)));
        if !needs_it {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut line = self.clone();
        for cell in [
            &mut line.method,
            &mut line.processing_terminal_id,
            &mut line.order_id,
            &mut line.amount,
            &mut line.currency,
            &mut line.refund_id,
            &mut line.payroc_status,
            &mut line.response_code,
            &mut line.response_message,
            &mut line.approval_code,
            &mut line.processor_response_code,
            &mut line.authorized_amount,
            &mut line.http_status,
            &mut line.error,
            &mut line.notes,
            &mut line.idempotency_key,
            &mut line.attempts,
            &mut line.payee,
            &mut line.updated_at,
        ] {
            if let std::borrow::Cow::Owned(safe) = neutralise_formula(cell) {
                *cell = safe;
            }
        }
        std::borrow::Cow::Owned(line)
    }

    /// The text cells, in column order.
    fn cells(&self) -> [&String; 19] {
        [
            &self.method,
            &self.processing_terminal_id,
            &self.order_id,
            &self.amount,
            &self.currency,
            &self.refund_id,
            &self.payroc_status,
            &self.response_code,
            &self.response_message,
            &self.approval_code,
            &self.processor_response_code,
            &self.authorized_amount,
            &self.http_status,
            &self.error,
            &self.notes,
            &self.idempotency_key,
            &self.attempts,
            &self.payee,
            &self.updated_at,
        ]
    }
}

/// Errors writing the results.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Writing the file failed.
    #[error("cannot write the results {path}")]
    Io {
        /// The results path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV writer failed.
    #[error("cannot write the results {path}")]
    Csv {
        /// The results path.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// Reading the input again failed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The default results path: `<input stem>.results.csv` beside the input.
pub fn default_path(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "refunds".into());
    input.with_file_name(format!("{stem}.results.csv"))
}

/// Everything the writer needs besides the ledger.
pub struct ResultsContext<'a> {
    /// Where the refunds went.
    pub environment: Environment,
    /// Key namespace.
    pub namespace: &'a str,
    /// Notes the dispatcher left for rows it did not send.
    pub notes: &'a HashMap<u64, RowNote>,
    /// Problems of invalid rows, by row (messages joined), including duplicates.
    pub invalid: &'a HashMap<u64, String>,
    /// Rows the validation pass found invalid beyond their cells (duplicates).
    pub skip_rows: &'a HashSet<u64>,
    /// The batch of the command writing the results, if it is one that sends: a row the input
    /// file no longer holds as it was validated is then written from what this batch recorded.
    pub batch: Option<crate::ledger::BatchId>,
    /// Start the file with a UTF-8 byte-order mark, so Excel reads `€` and `–` as written
    /// (`--results-bom`).
    pub bom: bool,
    /// How many data rows the validated file had (rows the file gained since are not reported:
    /// they were never validated).
    pub validated_rows: u64,
}

/// Receives every results line as it is made, in input order: how a second output (the
/// workbook) is written from the very same pass as the CSV, so the two cannot disagree.
pub trait LineSink {
    /// Takes one line, as made (formula cells not neutralised: a typed output stores text as
    /// text and needs no defence).
    fn line(&mut self, line: &ResultLine) -> Result<(), ResultsError>;
}

/// Writes the results for `input` to `path` atomically, returning the tally. Without `input`
/// (the file no longer has the header it was validated with) every row is written from what
/// the ledger recorded of it. `also`, when given, receives every line too.
pub fn write(
    path: &Path,
    input: Option<InputReader>,
    ledger: &Ledger,
    context: &ResultsContext<'_>,
    also: Option<&mut dyn LineSink>,
) -> Result<Tally, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_owned(),
        source,
    };
    if path == Path::new("-") {
        // `--results -`: the CSV is the command's data, on stdout (messages stay on stderr).
        let stdout = std::io::stdout().lock();
        let (tally, mut stdout) = write_rows(stdout, path, input, ledger, context, also)?;
        stdout.flush().map_err(io_error)?;
        return Ok(tally);
    }
    files::write_atomically(
        path,
        |output| write_rows(output, path, input, ledger, context, also),
        io_error,
    )
}

/// Counts what the results would say without writing a file (for `status FILE`), handing every
/// line to `also` when given.
pub fn tally(
    input: Option<InputReader>,
    ledger: &Ledger,
    context: &ResultsContext<'_>,
    also: Option<&mut dyn LineSink>,
) -> Result<Tally, ResultsError> {
    write_rows(std::io::sink(), Path::new("(no file)"), input, ledger, context, also).map(|(tally, _)| tally)
}

fn write_rows<W: Write>(
    output: W,
    path: &Path,
    input: Option<InputReader>,
    ledger: &Ledger,
    context: &ResultsContext<'_>,
    mut also: Option<&mut dyn LineSink>,
) -> Result<(Tally, W), ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_owned(),
        source,
    };
    let csv_error = |source| ResultsError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut output = output;
    if context.bom {
        output.write_all("\u{feff}".as_bytes()).map_err(io_error)?;
    }
    let mut writer = csv::Writer::from_writer(output);
    let mut wrote_any = false;
    let tally = each_line(input, ledger, context, |line| {
        writer.serialize(line.neutralised()).map_err(csv_error)?;
        wrote_any = true;
        match also.as_mut() {
            Some(sink) => sink.line(line),
            None => Ok(()),
        }
    })?;
    let mut output = writer.into_inner().map_err(|error| io_error(error.into_error()))?;
    if !wrote_any {
        // serde writes the header with the first line; a file without rows still gets it.
        output.write_all(&header_line()).map_err(io_error)?;
    }
    Ok((tally, output))
}

/// Makes the results line of every validated row, in input order, from the input and the
/// ledger, and hands each to `emit`: the one place a row's reported status is decided.
fn each_line(
    mut input: Option<InputReader>,
    ledger: &Ledger,
    context: &ResultsContext<'_>,
    mut emit: impl FnMut(&ResultLine) -> Result<(), ResultsError>,
) -> Result<Tally, ResultsError> {
    let _snapshot = ledger.read_snapshot()?;
    let mut tally = Tally::default();
    // Rows the file no longer holds as validated are written from this batch's records, read
    // once when the first such row turns up.
    let mut batch_records: Option<HashMap<u64, RecordOfRow>> = None;
    let mut next_row = 2;
    let last_row = context.validated_rows + 1;
    loop {
        let parsed = match input.as_mut().and_then(InputReader::next_row) {
            None => None,
            Some(Err(InputError::Changed { row, .. })) => Some(Err(row)),
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(parsed)) => Some(Ok(parsed)),
        };
        let changed_rows = match &parsed {
            None => next_row..=last_row,
            Some(Err(row)) => next_row..=(*row).min(last_row),
            Some(Ok(_)) => next_row..=next_row.saturating_sub(1),
        };
        for row in changed_rows {
            let records = match &mut batch_records {
                Some(records) => records,
                None => batch_records.insert(match context.batch {
                    Some(batch) => ledger.records_of_batch(batch)?,
                    None => HashMap::new(),
                }),
            };
            let line = changed_row_line(row, records.get(&row), context, &mut tally);
            *tally.rows.entry(line.status).or_insert(0) += 1;
            emit(&line)?;
            next_row = row + 1;
        }
        let Some(Ok(parsed)) = parsed else {
            if parsed.is_none() {
                break;
            }
            continue;
        };
        next_row += 1;
        let line = match parsed {
            ParsedRow::Invalid { label, problems } => {
                let message = context
                    .invalid
                    .get(&label.row)
                    .cloned()
                    .unwrap_or_else(|| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
                // An invalid row's cells are whatever was typed, possibly a card or account
                // number in the wrong column: each passes the one redaction function.
                ResultLine {
                    row: label.row,
                    method: redact_digit_runs(&label.method),
                    processing_terminal_id: redact_id(&label.processing_terminal_id),
                    order_id: redact_id(&label.order_id),
                    amount: redact_digit_runs(&label.amount),
                    currency: redact_digit_runs(&label.currency),
                    status: RefundStatus::Invalid,
                    error: redact_digit_runs(&message),
                    ..ResultLine::default()
                }
            }
            ParsedRow::Valid(row) => {
                let mut line = ResultLine {
                    row: row.row,
                    method: row.method.as_str().to_owned(),
                    processing_terminal_id: row.processing_terminal_id.clone(),
                    order_id: row.order_id.clone(),
                    amount: format_amount(row.amount_minor, row.currency),
                    currency: row.currency.code().to_owned(),
                    amount_minor: Some(row.amount_minor),
                    known_currency: Some(row.currency),
                    ..ResultLine::default()
                };
                if context.skip_rows.contains(&row.row) {
                    line.status = RefundStatus::Invalid;
                    line.error = context.invalid.get(&row.row).cloned().unwrap_or_default();
                } else {
                    let identity = Identity::of_row(&row, context.environment);
                    let record = ledger.find_order(
                        &identity.ledger_id(),
                        &identity.legacy_v1_ledger_id(context.namespace, row.method),
                    )?;
                    // A row the run did not reach (it stopped early) has no note even when the
                    // file no longer matches what the ledger sent; say so here rather than show
                    // the ledger's outcome next to the file's new amount.
                    let changed = record.as_ref().and_then(|record| {
                        let payee = row.payee.masked();
                        let differs = record.method != row.method
                            || record.amount_minor != row.amount_minor
                            || record.currency != row.currency
                            || record.payee_masked != payee;
                        differs.then(|| RowNote {
                            status: RefundStatus::Conflict,
                            error: format!(
                                "the file differs from what the ledger has for this refund ({}: {}); nothing new was sent",
                                record.state.in_results(),
                                record.describe_change(row.amount_minor, row.currency, &payee)
                            ),
                        })
                    });
                    let note = context.notes.get(&row.row).or(changed.as_ref());
                    line.status = match (note, &record) {
                        (Some(note), _) => note.status,
                        (None, Some(record)) => record.state.in_results(),
                        (None, None) => RefundStatus::Pending,
                    };
                    match &record {
                        Some(record) => fill_from_record(&mut line, record, note, &mut tally),
                        None => {
                            line.error = note
                                .map(|note| note.error.clone())
                                .unwrap_or_else(|| "not sent yet: run again to resume".into());
                            tally.add_amount(line.status, row.currency, row.amount_minor);
                        }
                    }
                }
                line
            }
        };
        *tally.rows.entry(line.status).or_insert(0) += 1;
        emit(&line)?;
    }
    Ok(tally)
}

/// A ledger record with what `results` needs of it.
type RecordOfRow = crate::ledger::RefundRecord;

/// Fills `line` (its status already set) with what the ledger knows of the refund, and counts
/// its amount.
fn fill_from_record(line: &mut ResultLine, record: &RecordOfRow, note: Option<&RowNote>, tally: &mut Tally) {
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    // Amounts are what the ledger sent when it sent something.
    line.amount = format_amount(record.amount_minor, record.currency);
    line.currency = record.currency.code().to_owned();
    line.amount_minor = Some(record.amount_minor);
    line.known_currency = Some(record.currency);
    line.authorized_minor = record.answer.authorized_amount_minor;
    let answer = &record.answer;
    line.refund_id = answer.refund_id.as_ref().map(ToString::to_string).unwrap_or_default();
    line.payroc_status = optional(&answer.payroc_status);
    line.response_code = optional(&answer.response_code);
    line.response_message = optional(&answer.response_message);
    line.approval_code = optional(&answer.approval_code);
    line.processor_response_code = optional(&answer.processor_response_code);
    line.authorized_amount = answer
        .authorized_amount_minor
        .map(|minor| format_amount(minor, record.currency))
        .unwrap_or_default();
    line.http_status = answer.http_status.map(|status| status.to_string()).unwrap_or_default();
    line.error = note
        .map(|note| note.error.clone())
        .or_else(|| answer.problem_detail.clone())
        .unwrap_or_default();
    line.notes = optional(&answer.notes);
    line.idempotency_key = record.idempotency_key.to_string();
    line.attempts = record.attempts.to_string();
    line.payee = record.payee_masked.clone();
    line.updated_at = record.updated_at.clone();
    tally.add_amount(line.status, record.currency, record.amount_minor);
}

/// The line of a validated row that the input file no longer holds as it was (rewritten,
/// truncated or replaced during the command): what this batch recorded of it when it sent it or
/// decided about it, or else that it was not sent.
fn changed_row_line(
    row: u64,
    record: Option<&RecordOfRow>,
    context: &ResultsContext<'_>,
    tally: &mut Tally,
) -> ResultLine {
    const CHANGED: &str = "the input file changed during the run after this row was validated";
    let note = context.notes.get(&row);
    let mut line = ResultLine {
        row,
        ..ResultLine::default()
    };
    match (record, context.invalid.get(&row)) {
        (Some(record), _) => {
            line.method = record.method.as_str().to_owned();
            line.processing_terminal_id = record.processing_terminal_id.clone();
            line.order_id = record.order_id.clone();
            line.status = note.map_or_else(|| record.state.in_results(), |note| note.status);
            fill_from_record(&mut line, record, note, tally);
            line.notes = [
                line.notes.as_str(),
                &format!("{CHANGED}; this line is what the ledger recorded"),
            ]
            .iter()
            .filter(|text| !text.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        }
        (None, Some(problems)) => {
            line.status = RefundStatus::Invalid;
            line.error = redact_digit_runs(problems);
        }
        (None, None) => {
            line.status = note.map_or(RefundStatus::Pending, |note| note.status);
            line.error = format!("{CHANGED}; it was not sent. Run the command again on the file as it is now");
        }
    }
    line
}

/// The header line, from [`ResultLine`]'s field names.
fn header_line() -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Serialising into memory cannot fail; an empty header would show in every test.
    let _ = writer.serialize(ResultLine::default());
    let bytes = writer.into_inner().unwrap_or_default();
    let end = bytes
        .iter()
        .position(|byte| *byte == b'\n')
        .map_or(bytes.len(), |index| index + 1);
    bytes[..end].to_vec()
}

/// Prefixes a cell with `'` when a spreadsheet would treat it as a formula (`= + - @`, tab, CR).
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => std::borrow::Cow::Owned(format!("'{cell}")),
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise_formula("+1"), "'+1");
        assert_eq!(neutralise_formula("-1"), "'-1");
        assert_eq!(neutralise_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_formula("\tx"), "'\tx");
        assert_eq!(neutralise_formula("\rx"), "'\rx");
        assert_eq!(neutralise_formula("49.99"), "49.99");
        assert_eq!(neutralise_formula(""), "");
    }

    #[test]
    fn the_header_is_the_lines_field_names_in_order() {
        assert_eq!(
            String::from_utf8(header_line()).unwrap(),
            "row,method,processing_terminal_id,order_id,amount,currency,status,refund_id,payroc_status,response_code,\
             response_message,approval_code,processor_response_code,authorized_amount,http_status,error,notes,\
             idempotency_key,attempts,payee,updated_at\n"
        );
    }

    #[test]
    fn the_default_path_sits_beside_the_input() {
        assert_eq!(
            default_path(Path::new("/data/day.csv")),
            PathBuf::from("/data/day.results.csv")
        );
    }
}
