//! `refund-batch reconcile FILE`: settle unknown rows from Payroc's records, then write the results.

use crate::cli::{GlobalArgs, ReconcileArgs};
use crate::commands::CommandError;
use crate::commands::session::{self, set_banner};
use crate::dispatch::reconcile::{ReconcileOptions, RowSelection, reconcile as reconcile_rows};
use crate::exit::ExitStatus;
use crate::report::terminal::Terminal;

/// Runs reconciliation over the file's rows.
pub async fn reconcile(
    global: &GlobalArgs,
    arguments: ReconcileArgs,
    terminal: &Terminal,
) -> Result<ExitStatus, CommandError> {
    set_banner(terminal, global.environment);
    let confirm_not_created = match arguments.confirm_not_created.as_deref() {
        None => RowSelection::None,
        Some(text) => RowSelection::parse(text)
            .map_err(|message| CommandError::usage(anyhow::anyhow!("--confirm-not-created: {message}")))?,
    };
    let outputs = session::Outputs::of_command(global, &arguments.input.file, &arguments.output)?;
    if let Some(errors) = &arguments.input.errors {
        session::refuse_protected_output(global, Some(&arguments.input.file), "--errors", errors)?;
    }
    // Invalid rows were never sent, so they are only reported, never a reason to stop.
    let (check, read_options) = session::check_input(&arguments.input, true, terminal)?;
    let connection = &arguments.connection;
    let (mut session, endpoint) = session::start(
        global,
        &arguments.input,
        check,
        read_options,
        connection,
        "reconcile",
        terminal,
    )
    .await?;
    terminal.note(&format!("looking up unknown rows at {}", endpoint.api_url));
    let options = ReconcileOptions {
        environment: global.environment,
        namespace: connection.key_namespace.clone(),
        allow_case_variants: arguments.input.allow_case_variants,
        include_queued: arguments.include_queued,
        batch: session.batch,
        confirm_not_created,
        refresh: arguments.refresh,
        return_window: time::Duration::days(i64::from(arguments.return_window_days)),
    };
    let input = session
        .check
        .reopen(&session.input_path, read_options)
        .map_err(CommandError::usage)?;
    let progress = terminal.progress(session.check.valid, None);
    let reconciled = reconcile_rows(
        &mut session.ledger,
        input,
        &session.check.duplicate_rows,
        &endpoint.client,
        &options,
        &progress,
    )
    .await;
    progress.finish();
    let report = reconciled.map_err(|error| CommandError {
        status: ExitStatus::Incomplete,
        error: error.into(),
    })?;
    terminal.note(&format!(
        "reconcile: {} rows looked up, {} settled from Payroc's records, {} never created (the next run sends them with their keys)",
        report.looked_up, report.settled, report.not_created
    ));
    if arguments.refresh {
        terminal.note(&format!(
            "refresh: {} refunds read again at Payroc, {} changed",
            report.refreshed, report.changed
        ));
    }
    if report.not_found_too_old > 0 {
        terminal.warn(&format!(
            "{} not found at Payroc but first sent more than six days ago: left unknown, never re-sent by itself. \
             If you are sure nothing was refunded, run reconcile again with --confirm-not-created ROWS (the error column names them)",
            crate::report::terminal::rows(report.not_found_too_old)
        ));
    }
    for (row, why) in &report.not_confirmed {
        terminal.warn(&format!(
            "--confirm-not-created: row {row} was not moved to a new key: {why}"
        ));
    }
    if report.confirmed > 0 {
        terminal.note(&format!(
            "{} confirmed not created by you: moved to a new key; the next run sends them",
            crate::report::terminal::rows(report.confirmed)
        ));
    }
    session.finish(&outputs, &report.notes, report.stopped.as_ref(), terminal)
}
