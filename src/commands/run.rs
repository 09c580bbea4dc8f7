//! `refund-batch run FILE`: validate, send what is not done, write the results, say what next.

use std::num::NonZeroU32;

use anyhow::{Context as _, anyhow};

use crate::cli::{Environment, GlobalArgs, Precheck, RunArgs};
use crate::commands::session::{self, set_banner};
use crate::commands::{CommandError, ledger_path};
use crate::dispatch::{DispatchOptions, dispatch};
use crate::exit::ExitStatus;
use crate::input::file_check::FileCheck;
use crate::refund::money::{Currency, format_amount_grouped, parse_amount};
use crate::report::terminal::{Terminal, rows};

/// Runs the batch.
pub async fn run(global: &GlobalArgs, arguments: RunArgs, terminal: &Terminal) -> Result<ExitStatus, CommandError> {
    let environment = global.environment;
    set_banner(terminal, environment);
    // From here on a Ctrl-C or SIGTERM is a request to stop cleanly, never an abrupt end.
    let stop = crate::commands::signals::watch_for_stop(terminal.lines());
    let rate =
        NonZeroU32::new(arguments.rate).ok_or_else(|| CommandError::usage(anyhow!("--rate must be at least 1")))?;
    if arguments.concurrency == 0 {
        return Err(CommandError::usage(anyhow!("--concurrency must be at least 1")));
    }
    let caps = parse_caps(&arguments.max_total)?;
    let outputs = session::Outputs::of_command(global, &arguments.input.file, &arguments.output)?;
    if let Some(errors) = &arguments.input.errors {
        session::refuse_protected_output(global, Some(&arguments.input.file), "--errors", errors)?;
    }

    // A missing API key is said before any question is asked (the production confirmation).
    if environment != Environment::Sandbox || global.api_key_file.is_some() {
        crate::commands::credentials::load_api_key(
            global.api_key_file.as_deref(),
            std::env::var("PAYROC_API_KEY").ok(),
        )
        .map_err(CommandError::usage)?;
    }

    // 1. The whole file is checked before anything else happens.
    let (check, read_options) = session::check_input(&arguments.input, arguments.skip_invalid, terminal)?;
    enforce_caps(&check, &caps)?;
    if environment == Environment::Production {
        confirm_production(&check, arguments.yes, terminal)?;
        // A new ledger knows nothing of what was refunded before: say so, and ask, before it
        // exists (once created, a later run would not know it was new).
        let ledger_path = ledger_path(global.ledger.as_ref())?;
        if !ledger_path.exists() {
            confirm(
                &format!(
                    "PRODUCTION with a NEW ledger at {}: it has no record of earlier refunds, so each order is first looked up at Payroc ({} days back, --precheck {})",
                    ledger_path.display(),
                    arguments.precheck_days,
                    precheck_name(arguments.precheck)
                ),
                arguments.yes,
                terminal,
            )?;
        }
    }

    // 2. Ledger, endpoint, client.
    let connection = &arguments.connection;
    let (mut session, endpoint) = session::start(
        global,
        &arguments.input,
        check,
        read_options,
        connection,
        "run",
        terminal,
    )
    .await?;
    terminal.note(&format!("sending to {}", endpoint.api_url));
    let precheck_new_rows = precheck_new_rows(&session, environment, arguments.precheck, arguments.precheck_days)?;
    if precheck_new_rows {
        terminal.note(&format!(
            "each order this ledger does not know is first looked up at Payroc ({} days back) and not sent if Payroc already has it",
            arguments.precheck_days
        ));
    }
    let dispatch_options = DispatchOptions {
        environment,
        namespace: connection.key_namespace.clone(),
        rate,
        concurrency: arguments.concurrency,
        retry_failed: arguments.retry_failed,
        retry_unchanged: arguments.retry_unchanged,
        batch: session.batch,
        shutdown_grace: std::time::Duration::from_millis(connection.shutdown_grace_ms),
        precheck_new_rows,
        precheck_enabled: arguments.precheck != Precheck::Never,
        precheck_days: arguments.precheck_days,
        allow_case_variants: arguments.input.allow_case_variants,
    };

    // 3. Send.
    session
        .check
        .ensure_unchanged(&session.input_path)
        .map_err(CommandError::usage)?;
    let input = session
        .check
        .reopen(&session.input_path, read_options)
        .map_err(CommandError::usage)?;
    let progress = terminal.progress(session.check.valid, Some(arguments.rate));
    let (report, dispatched) = dispatch(
        &mut session.ledger,
        input,
        &session.check.duplicate_rows,
        endpoint.client.clone(),
        &dispatch_options,
        &progress,
        stop,
    )
    .await;
    progress.finish();

    // 4. Results, from the ledger, in input order — even when dispatch failed half-way.
    let dispatch_error = dispatched.err();
    terminal.note(&match (report.sent, report.already_done) {
        (0, 0) => "nothing to send".to_owned(),
        (0, done) => format!("nothing to send: {} already done in the ledger", rows(done)),
        (sent, 0) => format!("sent {}", rows(sent)),
        (sent, done) => format!("sent {}; {} already done in the ledger", rows(sent), rows(done)),
    });
    let status = session.finish(&outputs, &report.notes, report.stopped.as_ref(), terminal)?;
    if let Some(changed) = report.input_changed {
        return Err(CommandError {
            status: ExitStatus::Incomplete,
            error: anyhow::Error::new(changed).context("the run stopped reading its input"),
        });
    }
    if let Some(error) = dispatch_error {
        return Err(CommandError {
            status: ExitStatus::Incomplete,
            error: anyhow::Error::new(error).context("the run stopped"),
        });
    }
    Ok(status)
}

/// Whether orders the ledger has never seen are looked up at Payroc before their first send.
///
/// A ledger vouches only for the time it has existed: with `auto`, a row it has never seen is
/// looked up unless the ledger has recorded sends *in this environment* for at least
/// `precheck_days` (Payroc's time). A new ledger, a copied or restored one, one that only ever
/// ran sandbox batches, or one whose first run here was interrupted all look up; so does every
/// resumed run until the ledger is old enough, whatever the file. The embedded sandbox starts
/// empty every time, so `auto` never looks up there.
fn precheck_new_rows(
    session: &session::Session,
    environment: Environment,
    precheck: Precheck,
    precheck_days: u32,
) -> Result<bool, CommandError> {
    Ok(match precheck {
        Precheck::Always => true,
        Precheck::Never => false,
        Precheck::Auto if environment == Environment::Sandbox => false,
        Precheck::Auto => {
            let first_send = session.ledger.first_send_at(environment).map_err(CommandError::usage)?;
            let vouched_since = first_send.as_deref().and_then(|text| {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
            });
            vouched_since
                .is_none_or(|since| crate::clock::now() - since < time::Duration::days(i64::from(precheck_days)))
        }
    })
}

fn precheck_name(precheck: Precheck) -> &'static str {
    match precheck {
        Precheck::Always => "always",
        Precheck::Auto => "auto",
        Precheck::Never => "never",
    }
}

/// `--max-total 5000.00:USD` caps.
fn parse_caps(texts: &[String]) -> Result<Vec<(Currency, i64)>, CommandError> {
    texts
        .iter()
        .map(|text| {
            let (amount, code) = text
                .rsplit_once(':')
                .ok_or_else(|| CommandError::usage(anyhow!("--max-total {text:?} must look like 5000.00:USD")))?;
            let currency = Currency::from_code(code).ok_or_else(|| {
                CommandError::usage(anyhow!(
                    "--max-total {text:?}: {code:?} is not a currency Payroc accepts"
                ))
            })?;
            let minor = parse_amount(amount, currency)
                .map_err(|error| CommandError::usage(anyhow!("--max-total {text:?}: the amount {error}")))?;
            Ok((currency, minor))
        })
        .collect()
}

fn enforce_caps(check: &FileCheck, caps: &[(Currency, i64)]) -> Result<(), CommandError> {
    for (currency, cap) in caps {
        let total = check.totals.get(currency).copied().unwrap_or(0);
        if total > *cap {
            return Err(CommandError::usage(anyhow!(
                "the file would refund {} {currency}, more than --max-total {} {currency}; nothing was sent",
                format_amount_grouped(total, *currency),
                format_amount_grouped(*cap, *currency)
            )));
        }
    }
    Ok(())
}

/// Production needs a person's yes: on a terminal it asks; elsewhere `--yes` is required.
fn confirm_production(check: &FileCheck, yes: bool, terminal: &Terminal) -> Result<(), CommandError> {
    let totals: Vec<String> = check
        .totals
        .iter()
        .map(|(currency, minor)| format!("{} {currency}", format_amount_grouped(*minor, *currency)))
        .collect();
    let what = format!(
        "PRODUCTION: {} refunds totalling {} with real money",
        check.valid,
        totals.join(", ")
    );
    confirm(&what, yes, terminal)
}

/// Asks a person to type `yes` to `what` on the terminal; without one, `--yes` must have said it.
fn confirm(what: &str, yes: bool, terminal: &Terminal) -> Result<(), CommandError> {
    if yes {
        terminal.note(&format!("{what} (confirmed by --yes)"));
        return Ok(());
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::usage(anyhow!(
            "{what}: refusing without --yes because there is no terminal to ask on; nothing was sent"
        )));
    }
    terminal.warn(&format!("{what}. Type `yes` to send:"));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")
        .map_err(CommandError::usage)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CommandError::usage(anyhow!("not confirmed; nothing was sent")))
    }
}
