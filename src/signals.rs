//! Ctrl-C and SIGTERM: the first asks the run to stop cleanly, the second ends the process at once.
//!
//! Both are safe. A clean stop stops taking rows, lets requests in flight finish for a few
//! seconds, records what came back and writes the results (exit 3). An immediate exit leaves
//! rows in flight as `sending` in the ledger, which the next run re-sends with the same key and
//! bytes — Payroc answers those with the first result, so nothing is refunded twice.

use tokio::sync::watch;

/// Waits for Ctrl-C or (on Unix) SIGTERM.
pub async fn first_stop_request() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts watching for stop requests. The receiver turns `true` at the first; the second exits
/// the process with code 3 (incomplete) after printing why.
pub fn watch_for_stop() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        first_stop_request().await;
        eprintln!(
            "stopping: no new refunds are sent; waiting a few seconds for those in flight (press Ctrl-C again to quit at once, also safe)"
        );
        let _ = sender.send(true);
        first_stop_request().await;
        eprintln!(
            "quitting at once: refunds in flight stay `sending` and are re-sent with the same key on the next run"
        );
        std::process::exit(i32::from(crate::exit::ExitStatus::Incomplete.code()));
    });
    receiver
}
