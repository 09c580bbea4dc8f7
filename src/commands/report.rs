//! `refund-batch report FILE`: the results CSV and the workbook written again from the ledger,
//! any time after a run — for the controller who asks tomorrow, or when a run could not write
//! them. Sends nothing and takes no run lock, so it works while a run goes on.
//!
//! `status FILE --write-results` goes through the same function ([`results_from_ledger`]), so the
//! two cannot read a file's rows differently.

use anyhow::Context as _;

use crate::cli::{GlobalArgs, ReportArgs, RereadArgs};
use crate::commands::session::Outputs;
use crate::commands::{CommandError, ledger_path, reread_options};
use crate::exit::ExitStatus;
use crate::input::file_check::{FileCheck, check_file};
use crate::ledger::{BatchRecord, Ledger, LedgerError};
use crate::report::results::{self, LineSink, ResultsContext, Tally};
use crate::report::terminal::Terminal;
use crate::report::workbook::{WorkbookBuilder, WorkbookFacts};

/// What [`results_from_ledger`] found of a file.
pub struct FileResults {
    /// The file's check (rows, digest, invalid rows).
    pub check: FileCheck,
    /// The file's batches in the ledger, in every environment.
    pub batches: Vec<BatchRecord>,
    /// What the results say.
    pub tally: Tally,
}

/// Writes the report: the outputs asked for, from the ledger.
pub fn report(global: &GlobalArgs, arguments: &ReportArgs, terminal: &Terminal) -> Result<ExitStatus, CommandError> {
    crate::commands::session::set_banner(terminal, global.environment);
    let outputs = Outputs::checked(
        global,
        &arguments.file,
        "--results",
        Outputs {
            results: arguments.results.clone(),
            results_bom: arguments.results_bom,
            workbook: arguments.workbook.clone(),
        },
    )?;
    let (ledger, path) = open_ledger_to_read(global)?;
    let found = results_from_ledger(global, &ledger, &arguments.file, &arguments.reading, &outputs, terminal)?;
    let counts: Vec<String> = found
        .tally
        .rows
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    terminal.note(&format!(
        "{}: {}",
        crate::report::terminal::rows(found.tally.total()),
        counts.join(", ")
    ));
    if let Some(results_path) = outputs.results.as_ref().filter(|path| path.as_os_str() != "-") {
        terminal.note(&format!("results: {}", results_path.display()));
    }
    if let Some(workbook) = &outputs.workbook {
        terminal.note(&format!("workbook: {}", workbook.display()));
    }
    terminal.note(&format!("ledger: {}", path.display()));
    Ok(ExitStatus::Success)
}

/// Opens the ledger to read, without the run lock (a run may be writing it), upgrading an older
/// schema first (which needs the lock, and is refused with exit 75 while a run holds it).
pub fn open_ledger_to_read(global: &GlobalArgs) -> Result<(Ledger, std::path::PathBuf), CommandError> {
    let path = ledger_path(global.ledger.as_ref())?;
    if !path.exists() {
        return Err(CommandError::usage(anyhow::anyhow!(
            "no ledger at {}: nothing has been run with it yet",
            path.display()
        )));
    }
    let ledger = match Ledger::open_reader(&path) {
        Ok(ledger) => ledger,
        Err(LedgerError::Corrupt { .. }) => Ledger::open(&path).map_err(CommandError::opening_ledger)?,
        Err(error) => return Err(CommandError::usage(error)),
    };
    Ok((ledger, path))
}

/// Reads `file` as it was run and looks every row up in the ledger under `--env`, writing the
/// outputs asked for (none: only the tally). A file the ledger knows only under another
/// environment is a warning when nothing is written, and refused when something would be: under
/// the wrong environment every row would read as never sent.
pub fn results_from_ledger(
    global: &GlobalArgs,
    ledger: &Ledger,
    file: &std::path::Path,
    reading: &RereadArgs,
    outputs: &Outputs,
    terminal: &Terminal,
) -> Result<FileResults, CommandError> {
    let options = reread_options(reading)?;
    let check = check_file(file, options)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(CommandError::usage)?;
    let environment = global.environment;
    let batches = ledger.batches(Some(&check.sha256)).map_err(CommandError::usage)?;
    if !batches.is_empty() && !batches.iter().any(|batch| batch.environment == environment) {
        let mut others: Vec<&str> = batches.iter().map(|batch| batch.environment.as_str()).collect();
        others.sort_unstable();
        others.dedup();
        let message = format!(
            "{} was run with --env {}, not {environment}: pass --env {} to see its rows",
            file.display(),
            others.join(" and --env "),
            others[0]
        );
        if outputs.results.is_some() || outputs.workbook.is_some() {
            return Err(CommandError::usage(anyhow::anyhow!(
                "{message}; no results were written (under --env {environment} every row would read as never sent)"
            )));
        }
        terminal.warn(&message);
    }
    let input = check.reopen(file, options).map_err(CommandError::usage)?;
    let notes = std::collections::HashMap::new();
    let context = ResultsContext {
        environment,
        namespace: &reading.key_namespace,
        notes: &notes,
        invalid: &check.invalid,
        skip_rows: &check.duplicate_rows,
        batch: None,
        validated_rows: check.rows,
        bom: outputs.results_bom,
    };
    let mut workbook = outputs
        .workbook
        .as_deref()
        .map(WorkbookBuilder::new)
        .transpose()
        .map_err(CommandError::usage)?;
    let also = workbook.as_mut().map(|builder| builder as &mut dyn LineSink);
    let tally = match &outputs.results {
        Some(results_path) => results::write(results_path, Some(input), ledger, &context, also),
        None => results::tally(Some(input), ledger, &context, also),
    }
    .map_err(CommandError::usage)?;
    if let (Some(builder), Some(path)) = (workbook, &outputs.workbook) {
        let of_environment: Vec<String> = batches
            .iter()
            .filter(|batch| batch.environment == environment)
            .map(|batch| {
                format!(
                    "#{} started {}{}",
                    batch.id.0,
                    batch.started_at,
                    batch
                        .finished_at
                        .as_deref()
                        .map(|at| format!(", finished {at}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let facts = WorkbookFacts {
            input: file.display().to_string(),
            environment,
            ledger: ledger.path().display().to_string(),
            batch: if of_environment.is_empty() {
                "none: the file was never run in this environment".into()
            } else {
                of_environment.join("; ")
            },
            written_at: crate::clock::format(crate::clock::now()),
        };
        builder
            .save(&tally, &facts)
            .with_context(|| format!("the workbook {} was not written", path.display()))
            .map_err(CommandError::usage)?;
    }
    Ok(FileResults { check, batches, tally })
}
