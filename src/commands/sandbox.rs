//! `refund-batch sandbox`: serve the local Payroc sandbox for other tools, tests and benchmarks.
//!
//! The first line on stdout is `listening on http://ADDR`, so a script (or a test that asked for
//! port 0) learns the address; it then serves until Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use payroc_sandbox::SandboxConfig;

use crate::cli::SandboxArgs;
use crate::commands::CommandError;
use crate::exit::ExitStatus;
use crate::report::terminal::Terminal;

/// The sandbox settings from the command line.
pub fn config(arguments: &SandboxArgs) -> SandboxConfig {
    SandboxConfig {
        api_key: arguments.api_key.clone(),
        token_lifetime: Duration::from_secs(arguments.token_lifetime_secs),
        token_actual_lifetime: arguments.token_dies_after_ms.map(Duration::from_millis),
        latency: Duration::from_millis(arguments.latency_ms),
        rate_429: arguments.rate_429,
        retry_after: Duration::from_millis(arguments.retry_after_ms),
        rate_503: arguments.rate_503,
        rate_500_after_create: arguments.rate_500_after_create,
        rate_drop_after_create: arguments.rate_drop_after_create,
        seed: arguments.seed,
        ..SandboxConfig::default()
    }
}

/// Serves until stopped.
pub async fn serve(arguments: SandboxArgs, terminal: &Terminal) -> Result<ExitStatus, CommandError> {
    let running = payroc_sandbox::spawn(arguments.listen, config(&arguments))
        .await
        .with_context(|| format!("cannot listen on {}", arguments.listen))
        .map_err(CommandError::usage)?;
    let address = running.local_addr();
    {
        let mut stdout = std::io::stdout().lock();
        // The address line is this command's data; if stdout is gone nobody can use it anyway.
        let _ = writeln!(stdout, "listening on http://{address}");
        let _ = stdout.flush();
    }
    terminal.note(&format!(
        "[sandbox] Payroc sandbox on http://{address}: --api-url http://{address}/v1 --identity-url http://{address} (no money moves; Ctrl-C stops)"
    ));
    crate::commands::signals::first_stop_request().await;
    running.shutdown().await;
    Ok(ExitStatus::Success)
}
