//! `refund-batch run FILE`: validate, send what is not done, write the results, say what next.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use secrecy::SecretString;

use crate::cli::{Environment, GlobalArgs, RunArgs};
use crate::client::{ClientConfig, PayrocClient, RetryPolicy, check_base_url};
use crate::commands::validate::report_check;
use crate::commands::{CommandError, ledger_path, read_options};
use crate::dispatch::{DispatchOptions, StopReason, dispatch};
use crate::exit::ExitStatus;
use crate::input::InputReader;
use crate::ledger::{BatchSummary, Ledger};
use crate::money::{Currency, format_amount, parse_amount};
use crate::output::Terminal;
use crate::redaction::load_api_key;
use crate::results::{self, ResultsContext, Tally};
use crate::validation::{FileCheck, check_file};

/// Where requests go, and the embedded sandbox keeping them company when there is one.
struct Endpoint {
    config: ClientConfig,
    /// Held so the embedded sandbox serves until the run ends.
    _sandbox: Option<payroc_sandbox::RunningSandbox>,
}

/// Runs the batch.
pub async fn run(global: &GlobalArgs, arguments: RunArgs, terminal: &Terminal) -> Result<ExitStatus, CommandError> {
    let environment = global.environment;
    terminal.set_banner(match environment {
        Environment::Sandbox => Some("[sandbox, no money moves]".into()),
        Environment::Uat => Some("[uat]".into()),
        Environment::Production => None,
    });
    let input_path = &arguments.input.file;
    let options = read_options(&arguments.input)?;
    let rate =
        NonZeroU32::new(arguments.rate).ok_or_else(|| CommandError::usage(anyhow!("--rate must be at least 1")))?;
    if arguments.concurrency == 0 {
        return Err(CommandError::usage(anyhow!("--concurrency must be at least 1")));
    }
    let caps = parse_caps(&arguments.max_total)?;

    // 1. The whole file is checked before anything else happens.
    let check = check_file(input_path, options)
        .with_context(|| format!("cannot read the refund file {}", input_path.display()))
        .map_err(CommandError::usage)?;
    report_check(&check, terminal);
    if !check.invalid.is_empty() && !arguments.skip_invalid {
        terminal.error(&format!(
            "{} of {} rows are invalid; nothing was sent. Fix them, or pass --skip-invalid to send the valid rows only",
            check.invalid.len(),
            check.rows
        ));
        return Ok(ExitStatus::Usage);
    }
    enforce_caps(&check, &caps)?;
    if environment == Environment::Production {
        confirm_production(&check, arguments.yes, terminal)?;
    }

    // 2. Ledger, endpoint, client.
    let ledger_path = ledger_path(global.ledger.as_ref())?;
    let mut ledger = Ledger::open(&ledger_path).map_err(CommandError::usage)?;
    terminal.note(&format!("ledger: {}", ledger_path.display()));
    let retry = RetryPolicy {
        max_retries: arguments.max_retries,
        base_delay: Duration::from_millis(arguments.retry_delay_ms),
        max_delay: Duration::from_millis(arguments.max_retry_delay_ms.max(1)),
    };
    let endpoint = endpoint(global, Duration::from_secs(arguments.timeout.max(1)), retry).await?;
    terminal.note(&format!("sending to {}", endpoint.config.api_url));
    let client = Arc::new(
        PayrocClient::new(endpoint.config.clone())
            .context("cannot set up the HTTPS client")
            .map_err(CommandError::usage)?,
    );
    let batch = ledger
        .begin_batch(
            &input_path.display().to_string(),
            &check.sha256,
            environment.as_str(),
            "run",
        )
        .map_err(CommandError::usage)?;
    let dispatch_options = DispatchOptions {
        environment: environment.as_str().to_owned(),
        namespace: arguments.key_namespace.clone(),
        rate,
        concurrency: arguments.concurrency,
        retry_failed: arguments.retry_failed,
        batch,
    };

    // 3. Send.
    let input = InputReader::open_unhashed(input_path, options).map_err(CommandError::usage)?;
    let progress = terminal.progress(check.valid);
    let stop = crate::signals::watch_for_stop();
    let dispatched = dispatch(
        &mut ledger,
        input,
        &check.duplicate_rows,
        client,
        &dispatch_options,
        &progress,
        stop,
    )
    .await;
    progress.finish();
    // Even when dispatch failed half-way, the results are written from whatever the ledger holds.
    let (notes, stopped, dispatch_error) = match dispatched {
        Ok(report) => (report.notes, report.stopped, None),
        Err(error) => (Default::default(), None, Some(error)),
    };

    // 4. Results, from the ledger, in input order.
    let results_path = arguments
        .results
        .clone()
        .unwrap_or_else(|| results::default_path(input_path));
    let context = ResultsContext {
        environment: environment.as_str(),
        namespace: &arguments.key_namespace,
        notes: &notes,
        invalid: &check.invalid,
        skip_rows: &check.duplicate_rows,
    };
    let input = InputReader::open_unhashed(input_path, options).map_err(CommandError::usage)?;
    let tally = results::write(&results_path, input, &ledger, &context)
        .with_context(|| format!("the refunds were recorded in the ledger {}, but", ledger_path.display()))
        .map_err(CommandError::usage)?;

    let unfinished = tally.count("unknown") + tally.count("pending");
    let needs_review =
        tally.count("declined") + tally.count("rejected") + tally.count("conflict") + tally.count("invalid");
    let mut status = ExitStatus::from_counts(unfinished, needs_review);
    if let Some(StopReason::Systemic(crate::client::SystemicError::Authentication(_))) = &stopped {
        status = ExitStatus::Authentication;
    }
    let summary = BatchSummary {
        rows: check.rows,
        invalid: check.invalid.len() as u64,
        exit_code: i32::from(status.code()),
        counts: tally.counts_text(),
    };
    ledger.finish_batch(batch, &summary).map_err(CommandError::usage)?;
    print_summary(terminal, &tally, &results_path, &ledger_path, stopped.as_ref());
    if let Some(error) = dispatch_error {
        return Err(CommandError {
            status: ExitStatus::Incomplete,
            error: anyhow::Error::new(error).context("the run stopped"),
        });
    }
    Ok(status)
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
                format_amount(total, *currency),
                format_amount(*cap, *currency)
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
        .map(|(currency, minor)| format!("{} {currency}", format_amount(*minor, *currency)))
        .collect();
    let what = format!(
        "PRODUCTION: {} refunds totalling {} with real money",
        check.valid,
        totals.join(", ")
    );
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

/// Works out where requests go: explicit URLs, the Payroc environment's, or an embedded sandbox.
async fn endpoint(global: &GlobalArgs, timeout: Duration, retry: RetryPolicy) -> Result<Endpoint, CommandError> {
    let api_key_from_environment = std::env::var("PAYROC_API_KEY").ok();
    let (api_url, identity_url, sandbox) = match (&global.api_url, &global.identity_url, global.environment) {
        (Some(api), Some(identity), _) => (api.clone(), identity.clone(), None),
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(CommandError::usage(anyhow!(
                "--api-url and --identity-url go together: give both or neither"
            )));
        }
        (None, None, Environment::Sandbox) => {
            let running = payroc_sandbox::spawn(([127, 0, 0, 1], 0).into(), payroc_sandbox::SandboxConfig::default())
                .await
                .context("cannot start the embedded sandbox")
                .map_err(CommandError::usage)?;
            (running.api_url(), running.identity_url(), Some(running))
        }
        (None, None, Environment::Uat) => (
            "https://api.uat.payroc.com/v1".into(),
            "https://identity.uat.payroc.com".into(),
            None,
        ),
        (None, None, Environment::Production) => (
            "https://api.payroc.com/v1".into(),
            "https://identity.payroc.com".into(),
            None,
        ),
    };
    for (name, url) in [("--api-url", &api_url), ("--identity-url", &identity_url)] {
        check_base_url(name, url).map_err(|message| CommandError::usage(anyhow!(message)))?;
    }
    let api_key = if global.environment == Environment::Sandbox
        && global.api_key_file.is_none()
        && api_key_from_environment.is_none()
    {
        // The sandbox accepts any key; there is nothing to protect.
        SecretString::from("sandbox-key".to_owned())
    } else {
        load_api_key(global.api_key_file.as_deref(), api_key_from_environment).map_err(CommandError::usage)?
    };
    Ok(Endpoint {
        config: ClientConfig {
            api_url,
            identity_url,
            api_key,
            timeout,
            retry,
        },
        _sandbox: sandbox,
    })
}

fn print_summary(
    terminal: &Terminal,
    tally: &Tally,
    results_path: &Path,
    ledger_path: &Path,
    stopped: Option<&StopReason>,
) {
    let counts: Vec<String> = results::STATUSES
        .iter()
        .filter(|status| tally.count(status) > 0)
        .map(|status| format!("{} {status}", tally.count(status)))
        .collect();
    terminal.note(&format!(
        "{} rows: {}",
        tally.total(),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    ));
    if let Some(amounts) = tally.amounts_text("succeeded") {
        terminal.note(&format!("refunded: {amounts}"));
    }
    if let Some(amounts) = tally.amounts_text("queued") {
        terminal.note(&format!("accepted for later processing: {amounts}"));
    }
    terminal.note(&format!("results: {}", results_path.display()));
    terminal.note(&format!("ledger: {}", ledger_path.display()));
    match stopped {
        Some(StopReason::Interrupted) => terminal.warn("stopped by request; run the same command again to resume"),
        Some(StopReason::Systemic(error)) => terminal.error(&format!("stopped early: {error}")),
        Some(StopReason::Repeated(detail)) => {
            terminal.error(&format!("stopped early, Payroc looks unavailable: {detail}"))
        }
        None => {}
    }
    for line in next_steps(tally) {
        terminal.note(&format!("next: {line}"));
    }
}

/// What to do next, in words, one line per kind of row that needs something.
pub fn next_steps(tally: &Tally) -> Vec<String> {
    let mut steps = Vec::new();
    let unfinished = tally.count("unknown") + tally.count("pending");
    if unfinished > 0 {
        steps.push(format!("{unfinished} rows not finished (unknown or pending): run the same command again to resume; they keep their keys"));
    }
    let failed = tally.count("declined") + tally.count("rejected");
    if failed > 0 {
        steps.push(format!("{failed} rows declined or rejected: see the results CSV, fix what it says and run again with --retry-failed"));
    }
    if tally.count("conflict") > 0 {
        steps.push(format!(
            "{} rows in conflict: the file differs from what was already sent for those orders; see the error column",
            tally.count("conflict")
        ));
    }
    if tally.count("invalid") > 0 {
        steps.push(format!(
            "{} rows invalid: fix them in the file and run again",
            tally.count("invalid")
        ));
    }
    steps
}
