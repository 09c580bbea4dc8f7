//! `refund-batch status [FILE]`: what the ledger knows, per batch and (with FILE) per row status.

use std::io::Write;

use serde::Serialize;

use crate::cli::{GlobalArgs, StatusArgs, StatusFormat};
use crate::commands::CommandError;
use crate::commands::report::{open_ledger_to_read, results_from_ledger};
use crate::commands::session::Outputs;
use crate::exit::ExitStatus;
use crate::refund::money::{format_amount, format_amount_grouped};
use crate::report::terminal::Terminal;

#[derive(Serialize)]
struct StatusReport {
    ledger: String,
    batches: Vec<BatchView>,
    totals: Vec<TotalView>,
    file: Option<FileView>,
}

#[derive(Serialize)]
struct BatchView {
    id: i64,
    input_path: String,
    input_sha256: String,
    environment: String,
    started_at: String,
    /// `finished`; `running` while a command holds the ledger; `interrupted` when it ended
    /// without finishing (killed, a power cut) and nothing holds the ledger now.
    state: &'static str,
    finished_at: Option<String>,
    rows: Option<i64>,
    exit_code: Option<i64>,
    counts: Option<String>,
}

#[derive(Serialize)]
struct TotalView {
    environment: String,
    status: String,
    currency: String,
    rows: i64,
    /// Plain (`2166839.92`), for programs.
    amount: String,
    /// Grouped (`2,166,839.92`), for people.
    #[serde(skip)]
    amount_grouped: String,
}

#[derive(Serialize)]
struct FileView {
    path: String,
    sha256: String,
    rows_by_status: std::collections::BTreeMap<String, u64>,
}

/// Prints the report on stdout (it is the command's data).
pub fn status(global: &GlobalArgs, arguments: &StatusArgs, terminal: &Terminal) -> Result<ExitStatus, CommandError> {
    let outputs = match (&arguments.write_results, &arguments.file) {
        (Some(results), Some(file)) => Outputs::checked(
            global,
            file,
            "--write-results",
            Outputs {
                results: Some(results.clone()),
                results_bom: arguments.results_bom,
                workbook: None,
            },
        )?,
        _ => Outputs::default(),
    };
    let (ledger, path) = open_ledger_to_read(global)?;
    let mut file_view = None;
    // The file's batches, read once: for the environment check and for the report.
    let mut file_batches = None;
    if let Some(file) = &arguments.file {
        let found = results_from_ledger(global, &ledger, file, &arguments.reading, &outputs, terminal)?;
        if let Some(results_path) = &arguments.write_results {
            terminal.note(&format!("results: {}", results_path.display()));
        }
        file_view = Some(FileView {
            path: file.display().to_string(),
            sha256: found.check.sha256.clone(),
            rows_by_status: found
                .tally
                .rows
                .iter()
                .map(|(status, count)| (status.as_str().to_owned(), *count))
                .collect(),
        });
        file_batches = Some(found.batches);
    }
    let batches = match file_batches {
        Some(runs) => runs,
        None => ledger.batches(None).map_err(CommandError::usage)?,
    };
    let running = a_command_holds(ledger.path());
    let totals = ledger.totals().map_err(CommandError::usage)?;
    let report = StatusReport {
        ledger: path.display().to_string(),
        batches: batches
            .into_iter()
            .map(|batch| BatchView {
                id: batch.id.0,
                input_path: batch.input_path,
                input_sha256: batch.input_sha256,
                environment: batch.environment.as_str().to_owned(),
                started_at: batch.started_at,
                state: match (&batch.finished_at, running) {
                    (Some(_), _) => "finished",
                    (None, true) => "running",
                    (None, false) => "interrupted",
                },
                finished_at: batch.finished_at,
                rows: batch.rows,
                exit_code: batch.exit_code,
                counts: batch.counts,
            })
            .collect(),
        totals: totals
            .into_iter()
            .map(|total| TotalView {
                // A row a running command is sending shows as such; left `sending` by a run
                // that ended without an answer, it is `unknown`.
                status: match total.state {
                    crate::refund::RefundStatus::Sending if running => "sending".to_owned(),
                    state => state.in_results().as_str().to_owned(),
                },
                amount: format_amount(total.amount_minor, total.currency),
                amount_grouped: format_amount_grouped(total.amount_minor, total.currency),
                environment: total.environment.as_str().to_owned(),
                currency: total.currency.code().to_owned(),
                rows: total.rows,
            })
            .collect(),
        file: file_view,
    };
    let mut stdout = std::io::stdout().lock();
    let written = match arguments.format {
        StatusFormat::Json => serde_json::to_writer_pretty(&mut stdout, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout)),
        StatusFormat::Text => write_text(&mut stdout, &report),
    };
    if let Err(error) = written
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        terminal.error(&format!("cannot write the status: {error}"));
    }
    Ok(ExitStatus::Success)
}

/// Whether a command holds the ledger's run lock now: an unfinished batch is then running, and
/// otherwise it was interrupted. Tested with a shared lock taken and dropped at once, on the lock
/// file only (never the database: see the ledger's documentation); a run starting in that instant
/// is told the ledger is busy and to try again (exit 75).
fn a_command_holds(ledger: &std::path::Path) -> bool {
    let lock = &crate::ledger::side_files(ledger)[3];
    match std::fs::File::open(lock) {
        Ok(file) => matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn write_text(out: &mut impl Write, report: &StatusReport) -> std::io::Result<()> {
    writeln!(out, "ledger: {}", report.ledger)?;
    if let Some(file) = &report.file {
        writeln!(
            out,
            "file: {} (sha256 {})",
            file.path,
            &file.sha256[..12.min(file.sha256.len())]
        )?;
        let counts: Vec<String> = file
            .rows_by_status
            .iter()
            .map(|(status, count)| format!("{count} {status}"))
            .collect();
        writeln!(out, "  rows: {}", counts.join(", "))?;
    }
    writeln!(out, "batches ({}):", report.batches.len())?;
    for batch in &report.batches {
        writeln!(
            out,
            "  #{} {} {} started {} {} exit {} — {}",
            batch.id,
            batch.environment,
            batch.input_path,
            batch.started_at,
            batch
                .finished_at
                .as_deref()
                .map(|at| format!("finished {at}"))
                .unwrap_or_else(|| format!("({})", batch.state)),
            batch
                .exit_code
                .map(|code| code.to_string())
                .unwrap_or_else(|| "-".into()),
            batch.counts.as_deref().unwrap_or("")
        )?;
    }
    writeln!(out, "totals:")?;
    for total in &report.totals {
        writeln!(
            out,
            "  {:<10} {:<10} {:>6} rows  {} {}",
            total.environment, total.status, total.rows, total.amount_grouped, total.currency
        )?;
    }
    Ok(())
}
