//! The `refund-batch` binary: parse, set up logging and the terminal, run, exit with the code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use refund_batch::cli::{Cli, LogFormat};
use refund_batch::commands;
use refund_batch::output::{OutputOptions, Terminal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose, cli.global.log_format);
    let terminal = Terminal::new(OutputOptions {
        quiet: cli.global.quiet,
        no_progress: cli.global.no_progress,
        plain_progress_interval: Duration::from_secs(5),
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            terminal.error(&format!("cannot start the async runtime: {error}"));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::execute(cli, &terminal)) {
        Ok(status) => ExitCode::from(status.code()),
        Err(failure) => {
            terminal.error(&format!("{:#}", failure.error));
            ExitCode::from(failure.status.code())
        }
    }
}

/// Logs go to stderr: human-readable by default, JSON lines with `--log-format json`. The
/// default level is `warn`; `-v` is info, `-vv` debug. `RUST_LOG` overrides.
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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::env::var_os("NO_COLOR").is_none()).init(),
        LogFormat::Json => builder.json().init(),
    }
}
