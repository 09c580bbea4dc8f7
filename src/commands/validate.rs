//! `refund-batch validate FILE`: the whole-file check alone. Sends nothing, opens no ledger.

use crate::cli::{GlobalArgs, ValidateArgs};
use crate::commands::{CommandError, read_options};
use crate::exit::ExitStatus;
use crate::input::file_check::{FileCheck, check_file};
use crate::refund::money::format_amount_grouped;
use crate::report::terminal::{Terminal, rows};

/// Checks the file and prints every problem, then what would be sent.
pub fn validate(
    global: &GlobalArgs,
    arguments: &ValidateArgs,
    terminal: &Terminal,
) -> Result<ExitStatus, CommandError> {
    let options = read_options(&arguments.input)?;
    let path = &arguments.input.file;
    // The error names the file already.
    if let Some(errors) = &arguments.input.errors {
        crate::commands::session::refuse_protected_output(global, Some(path), "--errors", errors)?;
    }
    let check = check_file(path, options).map_err(CommandError::usage)?;
    if let Some(errors) = &arguments.input.errors {
        crate::report::errors::write_csv(errors, &check).map_err(|error| {
            CommandError::usage(anyhow::Error::new(error).context(format!("cannot write {}", errors.display())))
        })?;
    }
    if arguments.format == crate::cli::StatusFormat::Json {
        if let Err(error) = crate::report::errors::print_json(path, &check)
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            terminal.error(&format!("cannot write the report: {error}"));
        }
        return Ok(if check.invalid.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Usage
        });
    }
    report_check(&check, terminal);
    if check.rows == 0 {
        // A header with no rows is a valid, empty day (nothing to refund), not an error: cron
        // runs on such a day must not fail.
        terminal.note(&format!(
            "{}: the file has a header but no rows; nothing to send",
            path.display()
        ));
        Ok(ExitStatus::Success)
    } else if check.invalid.is_empty() {
        terminal.note(&format!(
            "{}: {} valid; nothing was sent",
            path.display(),
            all_rows(check.rows)
        ));
        Ok(ExitStatus::Success)
    } else {
        terminal.note(&format!(
            "{}: {} of {} invalid; nothing was sent",
            path.display(),
            check.invalid.len(),
            rows(check.rows)
        ));
        Ok(ExitStatus::Usage)
    }
}

/// Prints unknown columns, every problem, and the totals of what would be sent.
pub fn report_check(check: &FileCheck, terminal: &Terminal) {
    if !check.unknown_columns.is_empty() {
        terminal.warn(&format!(
            "ignoring unknown column(s): {}",
            crate::refund::redaction::redact_digit_runs(&check.unknown_columns.join(", "))
        ));
    }
    for problem in &check.problems {
        terminal.error(problem);
    }
    let unprinted = check.problem_count.saturating_sub(check.problems.len() as u64);
    if unprinted > 0 {
        terminal.error(&format!(
            "… and {unprinted} more problems not shown; fix the ones above (often one cause) and check again"
        ));
    }
    if check.valid > 0 {
        let totals: Vec<String> = check
            .totals
            .iter()
            .map(|(currency, minor)| {
                format!(
                    "{} {} ({})",
                    format_amount_grouped(*minor, *currency),
                    currency,
                    rows(check.counts.get(currency).copied().unwrap_or(0))
                )
            })
            .collect();
        terminal.note(&format!(
            "{} valid: would refund {}",
            rows(check.valid),
            totals.join(", ")
        ));
    }
}

/// "all 5 rows are", "the 1 row is": the count of a whole file.
fn all_rows(count: u64) -> String {
    match count {
        0 => "no rows: the file has a header and nothing else, so it is".to_owned(),
        1 => "the 1 row is".to_owned(),
        count => format!("all {count} rows are"),
    }
}
