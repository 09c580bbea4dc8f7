//! The results CSV: one line per input row, in input order, saying what happened and what to do.
//!
//! Written at the end of every run — finished, interrupted or stopped — from the ledger, by
//! streaming the input a third time and looking each row's identity up. It goes to a temporary
//! file (mode 0600) beside the target and is renamed over it, so a reader never sees half a file
//! and a crash never leaves a torn one. Cells a spreadsheet would run as a formula are neutralised.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::dispatch::{RowNote, describe_change};
use crate::idempotency::Identity;
use crate::input::{InputError, InputReader, ParsedRow};
use crate::ledger::{Ledger, LedgerError, private_file};
use crate::money::{Currency, format_amount};
use crate::redaction::redact_digit_runs;

/// The columns, in order.
pub const COLUMNS: [&str; 17] = [
    "row",
    "method",
    "processing_terminal_id",
    "order_id",
    "amount",
    "currency",
    "status",
    "refund_id",
    "payroc_status",
    "response_code",
    "response_message",
    "http_status",
    "error",
    "idempotency_key",
    "attempts",
    "payee",
    "updated_at",
];

/// Every status a results line can have, in summary order.
pub const STATUSES: [&str; 8] = [
    "succeeded",
    "queued",
    "declined",
    "rejected",
    "conflict",
    "unknown",
    "pending",
    "invalid",
];

/// Counts and sums of what the results say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Rows per status.
    pub rows: BTreeMap<&'static str, u64>,
    /// Minor units per (status, currency) for valid rows.
    pub amounts: BTreeMap<(&'static str, String), i64>,
}

impl Tally {
    /// Rows with `status`.
    pub fn count(&self, status: &str) -> u64 {
        self.rows.get(status).copied().unwrap_or(0)
    }

    /// Total rows.
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }

    /// `succeeded=3,declined=1`: the form stored on the batch.
    pub fn counts_text(&self) -> String {
        STATUSES
            .iter()
            .filter(|status| self.count(status) > 0)
            .map(|status| format!("{status}={}", self.count(status)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Amounts for a status as `49.99 USD, 1200 JPY`.
    pub fn amounts_text(&self, status: &str) -> Option<String> {
        let parts: Vec<String> = self
            .amounts
            .iter()
            .filter(|((amount_status, _), _)| *amount_status == status)
            .map(|((_, currency), minor)| match Currency::from_code(currency) {
                Some(known) => format!("{} {currency}", format_amount(*minor, known)),
                None => format!("{minor} {currency} minor units"),
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
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
    /// `sandbox`, `uat`, `production`.
    pub environment: &'a str,
    /// Key namespace.
    pub namespace: &'a str,
    /// Notes the dispatcher left for rows it did not send.
    pub notes: &'a HashMap<u64, RowNote>,
    /// Problems of invalid rows, by row (messages joined), including duplicates.
    pub invalid: &'a HashMap<u64, String>,
    /// Rows the validation pass found invalid beyond their cells (duplicates).
    pub skip_rows: &'a HashSet<u64>,
}

/// Writes the results for `input` to `path` atomically, returning the tally.
pub fn write(
    path: &Path,
    input: InputReader,
    ledger: &Ledger,
    context: &ResultsContext<'_>,
) -> Result<Tally, ResultsError> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results.csv".into());
    let temporary = directory.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let io_error = |source| ResultsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = private_file(&temporary).map_err(io_error)?;
    file.set_len(0).map_err(io_error)?;
    let written = write_rows(BufWriter::new(file), path, input, ledger, context).and_then(|(tally, buffered)| {
        let file = buffered.into_inner().map_err(|error| io_error(error.into_error()))?;
        file.sync_all().map_err(io_error)?;
        fs::rename(&temporary, path).map_err(io_error)?;
        Ok(tally)
    });
    if written.is_err() {
        // Leave no half-written temporary file behind; the error says what failed.
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Counts what the results would say without writing a file (for `status FILE`).
pub fn tally(input: InputReader, ledger: &Ledger, context: &ResultsContext<'_>) -> Result<Tally, ResultsError> {
    write_rows(std::io::sink(), Path::new("(no file)"), input, ledger, context).map(|(tally, _)| tally)
}

fn write_rows<W: Write>(
    output: W,
    path: &Path,
    mut input: InputReader,
    ledger: &Ledger,
    context: &ResultsContext<'_>,
) -> Result<(Tally, W), ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_owned(),
        source,
    };
    let csv_error = |source| ResultsError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut writer = csv::Writer::from_writer(output);
    writer.write_record(COLUMNS).map_err(csv_error)?;
    let mut tally = Tally::default();
    let mut cells: Vec<String> = Vec::with_capacity(COLUMNS.len());
    while let Some(parsed) = input.next_row() {
        cells.clear();
        let status: &'static str = match parsed? {
            ParsedRow::Invalid { label, problems } => {
                let message = context
                    .invalid
                    .get(&label.row)
                    .cloned()
                    .unwrap_or_else(|| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
                let message = redact_digit_runs(&message);
                // An invalid row's cells are whatever was typed, possibly a card or account
                // number in the wrong column: each passes the one redaction function.
                cells.push(label.row.to_string());
                cells.extend(
                    [
                        label.method,
                        label.processing_terminal_id,
                        label.order_id,
                        label.amount,
                        label.currency,
                    ]
                    .iter()
                    .map(|cell| redact_digit_runs(cell)),
                );
                cells.push("invalid".into());
                cells.extend(std::iter::repeat_n(String::new(), 5));
                cells.push(message);
                cells.extend(std::iter::repeat_n(String::new(), 4));
                "invalid"
            }
            ParsedRow::Valid(row) => {
                let base = [
                    row.row.to_string(),
                    row.method.as_str().to_owned(),
                    row.processing_terminal_id.clone(),
                    row.order_id.clone(),
                    format_amount(row.amount_minor, row.currency),
                    row.currency.code().to_owned(),
                ];
                cells.extend(base);
                if context.skip_rows.contains(&row.row) {
                    let message = context.invalid.get(&row.row).cloned().unwrap_or_default();
                    cells.push("invalid".into());
                    cells.extend(std::iter::repeat_n(String::new(), 5));
                    cells.push(message);
                    cells.extend(std::iter::repeat_n(String::new(), 4));
                    "invalid"
                } else {
                    let identity = Identity::of_row(&row, context.environment, context.namespace);
                    let record = ledger.find(&identity.ledger_id())?;
                    // A row the run did not reach (it stopped early) has no note even when the
                    // file no longer matches what the ledger sent; say so here rather than show
                    // the ledger's outcome next to the file's new amount.
                    let changed = record.as_ref().and_then(|record| {
                        let payee = row.payee.masked();
                        let differs = record.amount_minor != row.amount_minor
                            || record.currency != row.currency.code()
                            || record.payee_masked != payee;
                        differs.then(|| RowNote {
                            status: "conflict",
                            error: format!(
                                "the file differs from what the ledger has for this refund ({}: {}); nothing new was sent",
                                record.state.result_status(),
                                describe_change(record, row.amount_minor, row.currency.code(), &payee)
                            ),
                        })
                    });
                    let note = context.notes.get(&row.row).or(changed.as_ref());
                    let status = match (note, &record) {
                        (Some(note), _) => status_name(note.status),
                        (None, Some(record)) => status_name(record.state.result_status()),
                        (None, None) => "pending",
                    };
                    let optional = |value: Option<&String>| value.cloned().unwrap_or_default();
                    cells.push(status.to_owned());
                    match &record {
                        Some(record) => {
                            let error = note
                                .map(|note| note.error.clone())
                                .or_else(|| record.problem_detail.clone());
                            cells.extend([
                                optional(record.refund_id.as_ref()),
                                optional(record.payroc_status.as_ref()),
                                optional(record.response_code.as_ref()),
                                optional(record.response_message.as_ref()),
                                record.http_status.map(|status| status.to_string()).unwrap_or_default(),
                                error.unwrap_or_default(),
                                record.idempotency_key.clone(),
                                record.attempts.to_string(),
                                record.payee_masked.clone(),
                                record.updated_at.clone(),
                            ]);
                        }
                        None => {
                            cells.extend(std::iter::repeat_n(String::new(), 5));
                            cells.push(
                                note.map(|note| note.error.clone())
                                    .unwrap_or_else(|| "not sent yet: run again to resume".into()),
                            );
                            cells.extend(std::iter::repeat_n(String::new(), 4));
                        }
                    }
                    // Amounts are what the ledger sent when it sent something, else the file's.
                    let (amount, currency) = match &record {
                        Some(record) => (record.amount_minor, record.currency.clone()),
                        None => (row.amount_minor, row.currency.code().to_owned()),
                    };
                    *tally.amounts.entry((status, currency)).or_insert(0) += amount;
                    status
                }
            }
        };
        *tally.rows.entry(status).or_insert(0) += 1;
        for cell in &cells {
            writer
                .write_field(neutralise_formula(cell).as_bytes())
                .map_err(csv_error)?;
        }
        writer.write_record(None::<&[u8]>).map_err(csv_error)?;
    }
    let output = writer.into_inner().map_err(|error| io_error(error.into_error()))?;
    Ok((tally, output))
}

/// Maps a status string onto the fixed list (an unexpected one is shown as `unknown`).
fn status_name(status: &str) -> &'static str {
    STATUSES
        .iter()
        .find(|known| **known == status)
        .copied()
        .unwrap_or("unknown")
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
    fn the_default_path_sits_beside_the_input() {
        assert_eq!(
            default_path(Path::new("/data/day.csv")),
            PathBuf::from("/data/day.results.csv")
        );
    }
}
