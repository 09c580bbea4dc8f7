//! What `run` and `reconcile` share: checking the file, opening the ledger, reaching Payroc (or
//! the embedded sandbox), and, at the end, writing the results, closing the batch and printing
//! the summary with the next steps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use secrecy::SecretString;

use crate::cli::{ConnectionArgs, Environment, GlobalArgs, InputArgs};
use crate::commands::credentials::load_api_key;
use crate::commands::validate::report_check;
use crate::commands::{CommandError, ledger_path, read_options};
use crate::dispatch::StopReason;
use crate::exit::ExitStatus;
use crate::input::ReadOptions;
use crate::input::file_check::{FileCheck, check_file};
use crate::ledger::{BatchId, BatchSummary, Ledger};
use crate::payroc::client::check_base_url;
use crate::payroc::{ClientConfig, PayrocClient, RetryPolicy, SystemicError};
use crate::refund::{RefundStatus, RowNote};
use crate::report::protect;
use crate::report::results::{self, ResultsContext, Tally};
use crate::report::terminal::{Terminal, rows};

/// A checked file with its ledger open and a batch begun.
pub struct Session {
    /// Where refunds go.
    pub environment: Environment,
    /// The input file.
    pub input_path: PathBuf,
    /// How it is read.
    pub read_options: ReadOptions,
    /// What the check found.
    pub check: FileCheck,
    /// The open (and locked) ledger.
    pub ledger: Ledger,
    /// Its path, for messages.
    pub ledger_path: PathBuf,
    /// The batch this command records under.
    pub batch: BatchId,
    /// The key namespace.
    pub namespace: String,
}

/// Refuses an output path (`option`'s value) that names the input file, the ledger or one of
/// its side files: exit 2, before anything is sent or the ledger is opened for writing.
pub fn refuse_protected_output(
    global: &GlobalArgs,
    input: Option<&Path>,
    option: &'static str,
    output: &Path,
) -> Result<(), CommandError> {
    let ledger_path = ledger_path(global.ledger.as_ref())?;
    let mut protected = protect::protected_files(input, &ledger_path);
    // The files the tool reads its settings and its key from, which a results CSV written over
    // would break for every later run.
    if let Some(key_file) = &global.api_key_file {
        protected.push(protect::Protected {
            what: "the API key file",
            path: key_file.clone(),
        });
    }
    if let Some(config) = crate::config::locate(global.config.clone()) {
        protected.push(protect::Protected {
            what: "the config file",
            path: config,
        });
    }
    protect::refuse_protected(option, output, &protected).map_err(CommandError::usage)
}

/// Sets the banner that marks non-production screens.
pub fn set_banner(terminal: &Terminal, environment: Environment) {
    terminal.set_banner(
        match environment {
            Environment::Sandbox => Some("[sandbox, no money moves]".into()),
            Environment::Uat => Some("[uat]".into()),
            Environment::Production => None,
        },
        environment.as_str(),
    );
}

/// Checks the whole file. With invalid rows and no `skip_invalid`, prints them and returns
/// `Err(ExitStatus::Usage)`-carrying error: nothing may be sent.
pub fn check_input(
    input: &InputArgs,
    skip_invalid: bool,
    terminal: &Terminal,
) -> Result<(FileCheck, ReadOptions), CommandError> {
    let options = read_options(input)?;
    // The error names the file already.
    let check = check_file(&input.file, options).map_err(CommandError::usage)?;
    report_check(&check, terminal);
    if let Some(errors) = &input.errors {
        crate::report::errors::write_csv(errors, &check)
            .with_context(|| format!("cannot write the errors file {}", errors.display()))
            .map_err(CommandError::usage)?;
        terminal.note(&format!("problems: {}", errors.display()));
    }
    if !check.invalid.is_empty() && !skip_invalid {
        return Err(CommandError::usage(anyhow!(
            "{} of {} invalid; nothing was sent. Fix them, or pass --skip-invalid to send the valid rows only",
            check.invalid.len(),
            rows(check.rows)
        )));
    }
    Ok((check, options))
}

/// Opens the ledger, begins a batch for `command` over the checked file, and connects to Payroc
/// (or starts the embedded sandbox): everything `run` and `reconcile` need before their loop.
pub async fn start(
    global: &GlobalArgs,
    input: &InputArgs,
    check: FileCheck,
    read_options: ReadOptions,
    connection: &ConnectionArgs,
    command: &str,
    terminal: &Terminal,
) -> Result<(Session, Endpoint), CommandError> {
    let endpoint = connect(global, connection).await?;
    // Payroc's clock is read before the ledger is opened or anything decides by time (a file
    // without a valid row sends nothing and needs no token). Any other failure of this first
    // request shows again, and is handled, where the run meets it.
    if check.valid > 0
        && let Err(SystemicError::ClockSkew(reason)) = endpoint.client.check_clock().await
    {
        return Err(CommandError {
            status: ExitStatus::ClockSkew,
            error: anyhow!(reason),
        });
    }
    let session = open(
        global,
        input,
        check,
        read_options,
        &connection.key_namespace,
        command,
        terminal,
    )?;
    Ok((session, endpoint))
}

fn open(
    global: &GlobalArgs,
    input: &InputArgs,
    check: FileCheck,
    read_options: ReadOptions,
    namespace: &str,
    command: &str,
    terminal: &Terminal,
) -> Result<Session, CommandError> {
    let ledger_path = ledger_path(global.ledger.as_ref())?;
    let mut ledger = Ledger::open(&ledger_path).map_err(CommandError::opening_ledger)?;
    terminal.note(&format!("ledger: {}", ledger_path.display()));
    let batch = ledger
        .begin_batch(
            &input.file.display().to_string(),
            &check.sha256,
            global.environment,
            command,
        )
        .map_err(CommandError::usage)?;
    tracing::info!(
        batch = %batch,
        command,
        file = %input.file.display(),
        sha256 = %check.sha256,
        rows = check.rows,
        valid = check.valid,
        environment = global.environment.as_str(),
        "batch started"
    );
    Ok(Session {
        environment: global.environment,
        input_path: input.file.clone(),
        read_options,
        check,
        ledger,
        ledger_path,
        batch,
        namespace: namespace.to_owned(),
    })
}

/// Where requests go, and the embedded sandbox serving them when there is one.
pub struct Endpoint {
    /// The client, shared by all senders.
    pub client: Arc<PayrocClient>,
    /// The API base, for messages.
    pub api_url: String,
    /// Held so the embedded sandbox serves until the command ends.
    _sandbox: Option<payroc_sandbox::RunningSandbox>,
}

/// Works out where requests go — explicit URLs, the Payroc environment's, or an embedded
/// sandbox — loads the API key and builds the client.
async fn connect(global: &GlobalArgs, connection: &ConnectionArgs) -> Result<Endpoint, CommandError> {
    let retry = RetryPolicy {
        max_retries: connection.max_retries,
        base_delay: Duration::from_millis(connection.retry_delay_ms),
        max_delay: Duration::from_millis(connection.max_retry_delay_ms.max(1)),
    };
    let timeout = Duration::from_secs(connection.timeout.max(1));
    let api_key_from_environment = std::env::var("PAYROC_API_KEY").ok();
    let (api_url, identity_url, sandbox) = match (&global.api_url, &global.identity_url, global.environment) {
        (Some(api), Some(identity), _) => (api.clone(), identity.clone(), None),
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(CommandError::usage(anyhow!(
                "--api-url and --identity-url go together: give both or neither"
            )));
        }
        (None, None, Environment::Sandbox) => {
            // Seeded from the clock: refund ids must not repeat from one run to the next (a
            // person comparing two days' results would take two refunds for one).
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            let config = payroc_sandbox::SandboxConfig {
                seed,
                ..payroc_sandbox::SandboxConfig::default()
            };
            let running = payroc_sandbox::spawn(([127, 0, 0, 1], 0).into(), config)
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
    let config = ClientConfig {
        api_url: api_url.clone(),
        identity_url,
        api_key,
        timeout,
        retry,
    };
    let client = PayrocClient::new(config)
        .context("cannot set up the HTTPS client")
        .map_err(CommandError::usage)?;
    Ok(Endpoint {
        client: Arc::new(client),
        api_url,
        _sandbox: sandbox,
    })
}

impl Session {
    /// Writes the results, closes the batch, prints the summary, and works out the exit status.
    ///
    /// Runs after requests may have left, so a failure here is never "nothing was sent" (exit 2):
    /// it exits 3, says what failed and how to finish, and still closes the batch in the ledger
    /// when it can. The results can be written again later from the ledger alone.
    pub fn finish(
        mut self,
        results_path: Option<PathBuf>,
        results_bom: bool,
        notes: &HashMap<u64, RowNote>,
        stopped: Option<&StopReason>,
        terminal: &Terminal,
    ) -> Result<ExitStatus, CommandError> {
        let results_path = results_path.unwrap_or_else(|| results::default_path(&self.input_path));
        let context = ResultsContext {
            environment: self.environment,
            namespace: &self.namespace,
            notes,
            invalid: &self.check.invalid,
            skip_rows: &self.check.duplicate_rows,
            batch: Some(self.batch),
            validated_rows: self.check.rows,
            bom: results_bom,
        };
        // A file whose header changed since it was validated is read no more: every row is
        // then written from what the ledger recorded of it.
        let input = match self.check.reopen(&self.input_path, self.read_options) {
            Ok(input) => Ok(Some(input)),
            Err(crate::input::InputError::Changed { .. }) => Ok(None),
            Err(error) => Err(anyhow::Error::from(error)),
        };
        let written = input.and_then(|input| {
            results::write(&results_path, input, &self.ledger, &context).map_err(anyhow::Error::from)
        });
        let tally = match written {
            Ok(tally) => tally,
            Err(error) => {
                let summary = BatchSummary {
                    rows: self.check.rows,
                    invalid: self.check.invalid.len() as u64,
                    exit_code: i32::from(ExitStatus::Incomplete.code()),
                    counts: "results not written".into(),
                };
                if let Err(closing) = self.ledger.finish_batch(self.batch, &summary) {
                    tracing::error!("could not close the batch in the ledger: {closing}");
                }
                let ledger_path = self.ledger_path.clone();
                // Closing checkpoints what it can; the error above is the one to report.
                if let Err(closing) = self.ledger.close() {
                    tracing::error!("{closing:#}");
                }
                return Err(CommandError {
                    status: ExitStatus::Incomplete,
                    error: error.context(format!(
                        "every refund sent is recorded in the ledger {}, but the results CSV could not be written. \
                         Write it with `refund-batch status {} --write-results PATH` (same --env and options), or run the same command again",
                        ledger_path.display(),
                        self.input_path.display()
                    )),
                });
            }
        };
        let unfinished = tally.count_where(RefundStatus::is_unfinished);
        let needs_review = tally.count_where(RefundStatus::needs_review);
        let mut status = ExitStatus::from_counts(unfinished, needs_review);
        match stopped {
            Some(StopReason::Systemic(SystemicError::Authentication(_))) => status = ExitStatus::Authentication,
            Some(StopReason::Systemic(SystemicError::ClockSkew(_))) => status = ExitStatus::ClockSkew,
            _ => {}
        }
        let summary = BatchSummary {
            rows: self.check.rows,
            invalid: self.check.invalid.len() as u64,
            exit_code: i32::from(status.code()),
            counts: tally.counts_text(),
        };
        let closed = self
            .ledger
            .finish_batch(self.batch, &summary)
            .and_then(|()| self.ledger.close());
        print_summary(terminal, &tally, &results_path, &self.ledger_path, stopped);
        closed.map_err(|error| CommandError {
            status: ExitStatus::Incomplete,
            error: anyhow::Error::new(error).context(format!(
                "the results were written to {}, but the ledger could not be closed cleanly; run the same command again to check",
                results_path.display()
            )),
        })?;
        Ok(status)
    }
}

fn print_summary(
    terminal: &Terminal,
    tally: &Tally,
    results_path: &Path,
    ledger_path: &Path,
    stopped: Option<&StopReason>,
) {
    let counts: Vec<String> = RefundStatus::ALL
        .iter()
        .filter(|status| tally.count(**status) > 0)
        .map(|status| format!("{} {status}", tally.count(*status)))
        .collect();
    let counts = if counts.is_empty() {
        "none".to_owned()
    } else {
        counts.join(", ")
    };
    terminal.note(&format!("{}: {counts}", rows(tally.total())));
    if let Some(amounts) = tally.amounts_text(RefundStatus::Succeeded) {
        terminal.note(&format!("refunded: {amounts}"));
    }
    if let Some(amounts) = tally.amounts_text(RefundStatus::Partial) {
        terminal.note(&format!(
            "partly approved (amounts asked; see authorized_amount): {amounts}"
        ));
    }
    if let Some(amounts) = tally.amounts_text(RefundStatus::Queued) {
        terminal.note(&format!("accepted for later processing: {amounts}"));
    }
    terminal.note(&format!("results: {}", results_path.display()));
    terminal.note(&format!("ledger: {}", ledger_path.display()));
    match stopped {
        Some(StopReason::Interrupted) => terminal.warn("stopped by request; run the same command again to resume"),
        Some(StopReason::Systemic(error)) => terminal.error(&format!("stopped early: {error}")),
        Some(StopReason::Repeated(detail)) => terminal.error(&format!("stopped early: {detail}")),
        None => {}
    }
    for line in next_steps(tally) {
        terminal.note(&format!("next: {line}"));
    }
}

/// What to do next, in words, one line per kind of row that needs something.
pub fn next_steps(tally: &Tally) -> Vec<String> {
    let count = |status| tally.count(status);
    let kinds: [(u64, &str); 6] = [
        (
            tally.count_where(RefundStatus::is_unfinished),
            "not finished (unknown or pending): run the same command again to resume; they keep their keys",
        ),
        (
            count(RefundStatus::Declined) + count(RefundStatus::Rejected),
            "declined or rejected: see the results CSV, fix what it says and run again with --retry-failed",
        ),
        (
            count(RefundStatus::Returned),
            "returned by the customer's bank: nothing was refunded; fix the bank details and run again with --retry-failed",
        ),
        (
            count(RefundStatus::Partial),
            "only partly approved (authorized_amount is what was refunded): never re-sent, as that would refund the approved part twice; refund the rest under a new order_id if it is owed",
        ),
        (
            count(RefundStatus::Reversed),
            "reversed after approval: nothing was refunded; find out why before refunding again under a new order_id",
        ),
        (
            count(RefundStatus::Conflict),
            "in conflict: the order was already refunded, or the file differs from what was sent for it; see the error column",
        ),
    ];
    let mut steps: Vec<String> = kinds
        .iter()
        .filter(|(rows_of_kind, _)| *rows_of_kind > 0)
        .map(|(rows_of_kind, what)| format!("{} {what}", rows(*rows_of_kind)))
        .collect();
    let invalid = count(RefundStatus::Invalid);
    if invalid > 0 {
        steps.push(format!("{invalid} rows invalid: fix them in the file and run again"));
    }
    steps
}
