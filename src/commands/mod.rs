//! The commands: each turns parsed arguments into work and an [`ExitStatus`].
//!
//! `run` is the pipeline — check the file (`input::file_check`), dispatch (`dispatch`), write
//! the results ([`crate::report::results`]) — with the ledger and the client set up around it. The others
//! are views on the same pieces. Errors that stop a command come back as [`CommandError`], which
//! carries the exit code the error means.

pub mod credentials;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod signals;
pub mod status;
pub mod validate;

use std::path::PathBuf;

use crate::cli::{Cli, Command, InputArgs};
use crate::exit::ExitStatus;
use crate::input::ReadOptions;
use crate::ledger::Ledger;
use crate::report::terminal::Terminal;

/// An error that ends a command, with the exit code it means.
#[derive(Debug)]
pub struct CommandError {
    /// What to exit with.
    pub status: ExitStatus,
    /// What went wrong, with context.
    pub error: anyhow::Error,
}

impl CommandError {
    /// A usage, configuration or input error (exit 2): nothing was sent.
    pub fn usage(error: impl Into<anyhow::Error>) -> CommandError {
        CommandError {
            status: ExitStatus::Usage,
            error: error.into(),
        }
    }

    /// A ledger that could not be opened: "try later" (exit 75) when another command holds it,
    /// which a scheduler retries; otherwise a configuration error (exit 2). Nothing was sent.
    pub fn opening_ledger(error: crate::ledger::LedgerError) -> CommandError {
        let status = match error {
            crate::ledger::LedgerError::Busy { .. } => ExitStatus::TryLater,
            _ => ExitStatus::Usage,
        };
        CommandError {
            status,
            error: error.into(),
        }
    }
}

/// Runs the command `cli` names.
pub async fn execute(cli: Cli, terminal: &Terminal) -> Result<ExitStatus, CommandError> {
    match cli.command {
        Command::Run(arguments) => run::run(&cli.global, arguments, terminal).await,
        Command::Validate(arguments) => validate::validate(&cli.global, &arguments, terminal),
        Command::Status(arguments) => status::status(&cli.global, &arguments, terminal),
        Command::Report(arguments) => report::report(&cli.global, &arguments, terminal),
        Command::Reconcile(arguments) => reconcile::reconcile(&cli.global, arguments, terminal).await,
        Command::Sandbox(arguments) => sandbox::serve(arguments, terminal).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "refund-batch", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            write_man_page(&command, &mut std::io::stdout())
                .map_err(|error| CommandError::usage(anyhow::Error::new(error).context("cannot write the man page")))?;
            Ok(ExitStatus::Success)
        }
    }
}

/// One man page for the whole tool: the top-level sections, then each command's synopsis and
/// options under a heading of its own, then the exit codes. (clap_mangen's own rendering points
/// to a page per command, `refund-batch-run(1)`, which is not installed anywhere.)
fn write_man_page(command: &clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
        writeln!(out, ".SH \"COMMAND: {}\"", sub.get_name())?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{about}")?;
        }
        let sub_man = clap_mangen::Man::new(sub.clone().name(format!("refund-batch {}", sub.get_name())));
        sub_man.render_synopsis_section(out)?;
        sub_man.render_options_section(out)?;
    }
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for line in crate::exit::EXIT_CODES_HELP.lines().skip(1) {
        writeln!(out, ".br\n{}", line.trim())?;
    }
    man.render_version_section(out)
}

/// Read options from the input arguments.
pub fn read_options(input: &InputArgs) -> Result<ReadOptions, CommandError> {
    Ok(ReadOptions {
        default_method: input.method.map(Into::into),
        delimiter: delimiter(input.delimiter.as_deref())?,
        allow_case_variants: input.allow_case_variants,
        decimal_mark: decimal_mark(input.decimal_comma),
    })
}

/// Read options for a file read again as it was run (`status FILE`, `report FILE`).
pub fn reread_options(reading: &crate::cli::RereadArgs) -> Result<ReadOptions, CommandError> {
    Ok(ReadOptions {
        default_method: reading.method.map(Into::into),
        delimiter: delimiter(reading.delimiter.as_deref())?,
        allow_case_variants: reading.allow_case_variants,
        decimal_mark: decimal_mark(reading.decimal_comma),
    })
}

/// `--delimiter`: one ASCII character, or `tab`.
fn delimiter(text: Option<&str>) -> Result<Option<u8>, CommandError> {
    match text {
        None => Ok(None),
        Some("tab" | "\\t" | "\t") => Ok(Some(b'\t')),
        Some(text) if text.len() == 1 && text.is_ascii() => Ok(Some(text.as_bytes()[0])),
        Some(text) => Err(CommandError::usage(anyhow::anyhow!(
            "--delimiter {text:?} must be one ASCII character (for example ';') or `tab`"
        ))),
    }
}

/// `--decimal-comma`.
fn decimal_mark(decimal_comma: bool) -> crate::refund::money::DecimalMark {
    if decimal_comma {
        crate::refund::money::DecimalMark::Comma
    } else {
        crate::refund::money::DecimalMark::Point
    }
}

/// The ledger path: `--ledger`, `REFUND_BATCH_LEDGER`, or the data-directory default.
pub fn ledger_path(option: Option<&PathBuf>) -> Result<PathBuf, CommandError> {
    match option {
        Some(path) => Ok(path.clone()),
        None => Ledger::default_path().ok_or_else(|| {
            CommandError::usage(anyhow::anyhow!(
                "cannot find the user's data directory for the default ledger; pass --ledger PATH or set REFUND_BATCH_LEDGER"
            ))
        }),
    }
}
