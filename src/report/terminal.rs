//! The one owner of terminal output: notes, warnings, the progress display and the summary.
//!
//! Everything a person reads goes to stderr through [`Terminal`]; stdout carries only data
//! (`status --format json`, the sandbox's address line). On a terminal, progress is an indicatif
//! bar with counts by outcome, rate and ETA; elsewhere (cron, pipes) it is a plain line every few
//! seconds, so logs stay readable. `--quiet` keeps only warnings and errors; `--no-progress` drops
//! the progress display but keeps the rest.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ledger::RefundState;
use crate::refund::ResultStatus;

/// The progress bar on screen, if any: every write to stderr goes around it (see
/// [`StderrWriter`]) so that notes and logs never tear it.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `write` with the progress bar (if one is drawn) lifted off the screen.
fn around_bar<T>(write: impl FnOnce() -> T) -> T {
    let bar = ACTIVE_BAR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// A stderr handle for the log subscriber that writes around the progress bar.
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        around_bar(|| std::io::stderr().write_all(buffer)).map(|()| buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The `MakeWriter` for `tracing_subscriber`: logs to stderr, around the progress bar.
pub fn stderr_writer() -> StderrWriter {
    StderrWriter
}

/// "1 row", "2 rows": counts in messages read as English.
pub fn rows(count: u64) -> String {
    if count == 1 {
        "1 row".to_owned()
    } else {
        format!("{count} rows")
    }
}

/// How much the user asked to see.
#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    /// Only warnings and errors.
    pub quiet: bool,
    /// No progress display.
    pub no_progress: bool,
    /// Force the plain progress lines even on a terminal (used when stderr is not one).
    pub plain_progress_interval: Duration,
}

/// Writes everything meant for a person, to stderr.
#[derive(Debug)]
pub struct Terminal {
    options: OutputOptions,
    is_terminal: bool,
    /// Printed before notes so that every screen says which environment it is about.
    banner: Mutex<Option<String>>,
}

impl Terminal {
    /// A terminal writer with these options.
    pub fn new(options: OutputOptions) -> Terminal {
        Terminal {
            options,
            is_terminal: std::io::stderr().is_terminal(),
            banner: Mutex::new(None),
        }
    }

    /// Sets the prefix that marks non-production screens (`[sandbox]`, `[uat]`).
    pub fn set_banner(&self, banner: Option<String>) {
        *self.banner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = banner;
    }

    fn line(&self, text: &str) {
        let banner = self
            .banner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let line = match banner {
            Some(banner) => format!("{banner} {text}\n"),
            None => format!("{text}\n"),
        };
        // A closed stderr has nowhere to report to; the exit code still tells.
        let _ = around_bar(|| std::io::stderr().write_all(line.as_bytes()));
    }

    /// An informational line; hidden by `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.options.quiet {
            self.line(text);
        }
    }

    /// A warning; always shown.
    pub fn warn(&self, text: &str) {
        self.line(&format!("warning: {text}"));
    }

    /// An error; always shown.
    pub fn error(&self, text: &str) {
        self.line(&format!("error: {text}"));
    }

    /// Starts a progress display for `total` rows.
    pub fn progress(&self, total: u64) -> Progress {
        let show = !self.options.quiet && !self.options.no_progress;
        let bar = (show && self.is_terminal).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            let style = ProgressStyle::with_template("{prefix}{bar:30} {pos}/{len} rows  {msg}  {rate}  ETA {eta}")
                .map(|style| {
                    style.with_key(
                        "rate",
                        |state: &indicatif::ProgressState, writer: &mut dyn std::fmt::Write| {
                            let _ = write!(writer, "{:.0} rows/s", state.per_sec());
                        },
                    )
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            if let Some(banner) = self
                .banner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
            {
                bar.set_prefix(format!("{banner} "));
            }
            *ACTIVE_BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar.clone());
            bar
        });
        Progress {
            bar,
            plain: (show && !self.is_terminal).then(|| Mutex::new(Instant::now())),
            interval: self.options.plain_progress_interval,
            prefix: self
                .banner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(|banner| format!("{banner} "))
                .unwrap_or_default(),
            total,
            started: Instant::now(),
            counts: Default::default(),
            done: AtomicU64::new(0),
        }
    }
}

/// Live counts of a run, drawn as a bar or as periodic lines.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<Instant>>,
    interval: Duration,
    /// The environment banner for plain progress lines.
    prefix: String,
    total: u64,
    started: Instant,
    counts: [AtomicU64; ResultStatus::ALL.len()],
    done: AtomicU64,
}

impl Progress {
    /// A row the ledger already had finished.
    pub fn already_done(&self, state: RefundState) {
        self.count(state.result_status());
    }

    /// A row held back (conflict, or too old to re-send blindly).
    pub fn held(&self, status: ResultStatus) {
        self.count(status);
    }

    /// A row whose request finished.
    pub fn finished(&self, state: RefundState) {
        self.count(state.result_status());
    }

    fn count(&self, status: ResultStatus) {
        if let Some(index) = ResultStatus::ALL.iter().position(|known| *known == status) {
            self.counts[index].fetch_add(1, Ordering::Relaxed);
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(self.counts_text());
        }
        if let Some(last) = &self.plain {
            let mut last = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= self.interval {
                *last = Instant::now();
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
                let _ = writeln!(
                    std::io::stderr(),
                    "{}progress: {done}/{} rows, {}, {rate:.0} rows/s",
                    self.prefix,
                    self.total,
                    self.counts_text()
                );
            }
        }
    }

    fn counts_text(&self) -> String {
        let parts: Vec<String> = ResultStatus::ALL
            .iter()
            .zip(&self.counts)
            .filter_map(|(status, count)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then(|| format!("{count} {status}"))
            })
            .collect();
        if parts.is_empty() {
            "starting".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            *ACTIVE_BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }
}
