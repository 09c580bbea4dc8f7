//! Every problem the whole-file check found, for a person's spreadsheet and a program alike:
//! `--errors PATH` writes them as a CSV (row, column, problem), `validate --format json` prints
//! them as JSON on stdout. A refused `run` writes the CSV too, so a team can sort and filter what
//! to fix instead of scrolling a terminal.
//!
//! Each problem's text already shows the cell's value only as the check quotes it (cut short,
//! card and account numbers masked); it passes the one redaction function once more here, since
//! this is a file on disk.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::input::CellProblem;
use crate::input::file_check::FileCheck;
use crate::refund::redaction::redact_digit_runs;

/// One line of the errors file.
#[derive(Serialize)]
struct ErrorLine<'a> {
    row: u64,
    column: &'a str,
    problem: String,
}

fn line(problem: &CellProblem) -> ErrorLine<'_> {
    ErrorLine {
        row: problem.row,
        column: problem.column.as_deref().unwrap_or(""),
        problem: redact_digit_runs(&problem.message),
    }
}

/// Writes every problem of `check` to `path` as a CSV, whole or not at all (the header alone
/// when there are none: the file always says the check ran).
pub fn write_csv(path: &Path, check: &FileCheck) -> std::io::Result<()> {
    crate::files::write_atomically(
        path,
        |output| {
            let mut writer = csv::Writer::from_writer(output);
            if check.cell_problems.is_empty() {
                writer.write_record(["row", "column", "problem"])?;
            }
            for problem in &check.cell_problems {
                writer.serialize(line(problem))?;
            }
            let output = writer.into_inner().map_err(csv::IntoInnerError::into_error)?;
            Ok(((), output))
        },
        |error| error,
    )
}

/// The check as JSON: counts, every problem, and what would be sent per currency.
pub fn json(path: &Path, check: &FileCheck) -> serde_json::Value {
    let totals: serde_json::Map<String, serde_json::Value> = check
        .totals
        .iter()
        .map(|(currency, minor)| {
            (
                currency.code().to_owned(),
                crate::refund::money::format_amount(*minor, *currency).into(),
            )
        })
        .collect();
    serde_json::json!({
        "file": path.display().to_string(),
        "rows": check.rows,
        "valid": check.valid,
        "invalid": check.invalid.len(),
        "problems": check.cell_problems.iter().map(line).collect::<Vec<_>>(),
        "would_refund": totals,
    })
}

/// Prints [`json`] on stdout, a line.
pub fn print_json(path: &Path, check: &FileCheck) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", json(path, check))
}
