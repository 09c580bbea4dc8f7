//! Ctrl-C and SIGTERM: the first asks the run to stop cleanly, the second ends the process at once.
//!
//! Both are safe. A clean stop stops taking rows, lets requests in flight finish for a few
//! seconds, records what came back and writes the results (exit 3). An immediate exit leaves
//! rows in flight as `sending` in the ledger, which the next run re-sends with the same key and
//! bytes — Payroc answers those with the first result, so nothing is refunded twice.

use tokio::sync::watch;

/// The signals that ask for a stop, registered as soon as this is built: a signal that arrives
/// any time after that is caught, never the default "terminate now".
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Registers the handlers now (needs a tokio runtime). A handler that cannot be registered
    /// leaves that signal's default behaviour, which is still safe (see the module header).
    pub fn register() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            StopSignals {}
        }
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn receive(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = receive(&mut self.interrupt) => {}
                () = receive(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Waits for Ctrl-C or (on Unix) SIGTERM.
pub async fn first_stop_request() {
    StopSignals::register().next().await;
}

/// Registers the handlers now and starts watching. The receiver turns `true` at the first stop
/// request; the second exits the process with code 3 (incomplete) after printing why, through
/// `lines` (so that with `--log-format json` these lines are JSON too).
pub fn watch_for_stop(lines: crate::report::terminal::LineWriter) -> watch::Receiver<bool> {
    let mut signals = StopSignals::register();
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        signals.next().await;
        lines.write(
            "warning",
            "stopping: no new refunds are sent; waiting a few seconds for those in flight (press Ctrl-C again to quit at once, also safe)",
        );
        let _ = sender.send(true);
        signals.next().await;
        lines.write(
            "warning",
            "quitting at once: refunds in flight stay `sending` and are re-sent with the same key on the next run",
        );
        std::process::exit(i32::from(crate::exit::ExitStatus::Incomplete.code()));
    });
    receiver
}
