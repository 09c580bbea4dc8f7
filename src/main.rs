//! The `refund-batch` binary: read the config file, parse, set up logging and the terminal, run,
//! and exit with the code the command ended with.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use refund_batch::cli::{Cli, LogFormat};
use refund_batch::report::terminal::{LineWriter, OutputOptions, Terminal, stderr_writer};
use refund_batch::{commands, config};

fn main() -> ExitCode {
    // Before anything secret is read.
    let core_dumps = refund_batch::core_dumps::disable();
    let arguments: Vec<OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    let config_path = config::locate(
        explicit_config(&arguments).or_else(|| std::env::var_os("REFUND_BATCH_CONFIG").map(PathBuf::from)),
    );
    if let Some(path) = &config_path {
        match config::load(path) {
            Ok(file) => command = config::apply(&file, command),
            Err(error) => {
                // Before the arguments are parsed: `--log-format json` is looked for as given.
                LineWriter::plain(json_requested(&arguments))
                    .write("error", &format!("{:#}", anyhow::Error::from(error)));
                return ExitCode::from(2);
            }
        }
    }
    let cli = match command
        .try_get_matches_from(&arguments)
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        // Help and version exit 0; usage errors exit 2, which is also refund-batch's code for them.
        Err(error) if error.use_stderr() && json_requested(&arguments) => {
            let text = error.to_string();
            LineWriter::plain(true).write("error", text.trim_end().trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(error) => error.exit(),
    };
    init_logging(cli.global.verbose, cli.global.log_format);
    let terminal = Terminal::new(OutputOptions {
        quiet: cli.global.quiet,
        no_progress: cli.global.no_progress,
        // How often a progress line is written without a terminal (cron, pipes, JSON logs):
        // every 5 s, or REFUND_BATCH_PROGRESS_INTERVAL_MS for denser or sparser logs.
        plain_progress_interval: std::env::var("REFUND_BATCH_PROGRESS_INTERVAL_MS")
            .ok()
            .and_then(|text| text.parse().ok())
            .map_or(Duration::from_secs(5), Duration::from_millis),
        json: cli.global.log_format == LogFormat::Json,
    });
    if let Some(path) = &config_path {
        tracing::info!(config = %path.display(), "using config file");
    }
    if let Err(error) = core_dumps {
        tracing::warn!("could not disable core dumps: {error}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            terminal.error(&format!("cannot start the async runtime: {error}"));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::execute(cli, &terminal)) {
        Ok(status) => ExitCode::from(status.code()),
        Err(failure) => {
            // Output piped into `head` and closed early is not a failure (ripgrep's rule).
            let broken_pipe = failure.error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            terminal.error(&format!("{:#}", failure.error));
            ExitCode::from(failure.status.code())
        }
    }
}

/// `--config PATH` or `--config=PATH`, found before clap parses, because the file's values
/// become clap's defaults.
fn explicit_config(arguments: &[OsString]) -> Option<PathBuf> {
    let mut iterator = arguments.iter();
    while let Some(argument) = iterator.next() {
        let text = argument.to_string_lossy();
        if text == "--config" {
            return iterator.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if text == "--" {
            break;
        }
    }
    None
}

/// Logs go to stderr (around the progress bar, so they never tear it): human-readable by
/// default, JSON lines with `--log-format json`. The default level is `warn`; `-v` is info,
/// `-vv` debug. `RUST_LOG` overrides. `NO_COLOR` turns colour off.
fn init_logging(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("refund_batch={level},payroc_sandbox={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr_writer);
    let colour = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    match format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        // Fields at the top level, beside `message`, like the terminal's own JSON lines.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

/// Whether the command line asks for `--log-format json`, read before (or without) parsing it:
/// for the errors of a config file or of the command line itself, which must be JSON too.
fn json_requested(arguments: &[OsString]) -> bool {
    arguments
        .windows(2)
        .any(|pair| pair[0] == "--log-format" && pair[1] == "json")
        || arguments.iter().any(|argument| argument == "--log-format=json")
}
