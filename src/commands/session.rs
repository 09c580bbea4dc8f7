//! What `run` and `reconcile` share: checking the file, opening the ledger, reaching Payroc (or
//! the embedded sandbox), and, at the end, writing the results, closing the batch and printing
//! the summary with the next steps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use secrecy::SecretString;

use crate::cli::{ConnectionArgs, Environment, GlobalArgs, InputArgs, OutputArgs};
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
use crate::report::results::{self, LineSink, ResultsContext, Tally};
use crate::report::terminal::{Terminal, rows};
use crate::report::workbook::{WorkbookBuilder, WorkbookFacts};

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

/// Where a command writes the results: each path checked before anything is sent. The default
/// writes nothing (`status FILE` only counts).
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// The results CSV (`-`: stdout); `None` only for `report` without `--results`.
    pub results: Option<PathBuf>,
    /// Start the CSV with a byte-order mark.
    pub results_bom: bool,
    /// The workbook, when asked for.
    pub workbook: Option<PathBuf>,
}

impl Outputs {
    /// Checks the output paths of `run` and `reconcile` (the CSV defaulting to beside `input`).
    pub fn of_command(global: &GlobalArgs, input: &Path, output: &OutputArgs) -> Result<Outputs, CommandError> {
        let results = output.results.clone().unwrap_or_else(|| results::default_path(input));
        Outputs::checked(
            global,
            input,
            "--results",
            Outputs {
                results: Some(results),
                results_bom: output.results_bom,
                workbook: output.workbook.clone(),
            },
        )
    }

    /// Refuses, with exit 2 and before anything is sent, an output that would overwrite a file
    /// the tool needs, a workbook on stdout, or one path given for both outputs. `results_option`
    /// is the option the CSV's path came from, for the message.
    pub fn checked(
        global: &GlobalArgs,
        input: &Path,
        results_option: &'static str,
        outputs: Outputs,
    ) -> Result<Outputs, CommandError> {
        if let Some(results) = &outputs.results {
            refuse_protected_output(global, Some(input), results_option, results)?;
        }
        if let Some(workbook) = &outputs.workbook {
            if workbook == Path::new("-") {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "--workbook -: a workbook is a binary file, not for a terminal or a pipe; give it a path"
                )));
            }
            refuse_protected_output(global, Some(input), "--workbook", workbook)?;
            if outputs.results.as_deref() == Some(workbook.as_path()) {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "--workbook and --results both name {}: give each its own file",
                    workbook.display()
                )));
            }
        }
        Ok(outputs)
    }
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
        outputs: &Outputs,
        notes: &HashMap<u64, RowNote>,
        stopped: Option<&StopReason>,
        terminal: &Terminal,
    ) -> Result<ExitStatus, CommandError> {
        let results_path = outputs
            .results
            .clone()
            .unwrap_or_else(|| results::default_path(&self.input_path));
        let results_bom = outputs.results_bom;
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
        // A workbook that cannot even be started is reported with one that cannot be saved,
        // after the CSV: the CSV is the record and is written all the same.
        let mut workbook = outputs.workbook.as_deref().map(WorkbookBuilder::new);
        let written = input.and_then(|input| {
            let also = match workbook.as_mut() {
                Some(Ok(builder)) => Some(builder as &mut dyn LineSink),
                _ => None,
            };
            results::write(&results_path, input, &self.ledger, &context, also).map_err(anyhow::Error::from)
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
        // The workbook is a view of the CSV, saved once the CSV is in place; if it cannot be
        // written the run still succeeded in what it did, and `report` writes it again.
        let mut workbook_written = None;
        if let (Some(started), Some(path)) = (workbook, outputs.workbook.as_deref()) {
            let facts = WorkbookFacts {
                input: self.input_path.display().to_string(),
                environment: self.environment,
                ledger: self.ledger_path.display().to_string(),
                batch: format!("#{} (this command)", self.batch.0),
                written_at: crate::clock::format(crate::clock::now()),
            };
            match started.and_then(|builder| builder.save(&tally, &facts)) {
                Ok(()) => workbook_written = Some(path.to_owned()),
                Err(error) => {
                    terminal.error(&format!(
                        "{error}. Write it with `refund-batch --env {} report {} --workbook PATH`",
                        self.environment.as_str(),
                        self.input_path.display()
                    ));
                    // Exit 3: running the same command again writes it (and sends nothing new).
                    status = status.max(ExitStatus::Incomplete);
                }
            }
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
        print_summary(
            terminal,
            &tally,
            (&results_path, workbook_written.as_deref()),
            &self.ledger_path,
            stopped,
        );
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
    (results_path, workbook_path): (&Path, Option<&Path>),
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
    if let Some(path) = workbook_path {
        terminal.note(&format!("workbook: {}", path.display()));
    }
    terminal.note(&format!("ledger: {}", ledger_path.display()));
    match stopped {
        Some(StopReason::Interrupted) => terminal.warn("stopped by request; run the same command again to resume"),
        Some(StopReason::Systemic(error)) => terminal.error(&format!("stopped early: {error}")),
        Some(StopReason::Repeated(detail)) => terminal.error(&format!("stopped early: {detail}")),
        None => {}
    }
    for line in crate::report::next_steps::for_tally(tally) {
        terminal.note(&format!("next: {line}"));
    }
}
