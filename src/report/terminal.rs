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

use crate::refund::RefundStatus;

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

/// One JSON object as a line.
fn json_line(value: &serde_json::Value) -> String {
    format!("{value}\n")
}

/// `1h 02m`, `3m 05s`, `12s`: time left, as people read it.
fn eta_text(left: Duration) -> String {
    let seconds = left.as_secs();
    match (seconds / 3600, (seconds / 60) % 60, seconds % 60) {
        (0, 0, seconds) => format!("{seconds}s"),
        (0, minutes, seconds) => format!("{minutes}m {seconds:02}s"),
        (hours, minutes, _) => format!("{hours}h {minutes:02}m"),
    }
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
    /// `--log-format json`: every line on stderr is one JSON object — notes, warnings, errors,
    /// progress — so a log pipeline (or `jq`) reads all of it; no progress bar is drawn.
    pub json: bool,
}

/// Writes everything meant for a person, to stderr.
#[derive(Debug)]
pub struct Terminal {
    options: OutputOptions,
    is_terminal: bool,
    /// Printed before notes so that every screen says which environment it is about.
    banner: Mutex<Option<String>>,
    /// The environment's name, for JSON lines.
    environment: Mutex<Option<&'static str>>,
}

impl Terminal {
    /// A terminal writer with these options.
    pub fn new(options: OutputOptions) -> Terminal {
        Terminal {
            options,
            is_terminal: std::io::stderr().is_terminal(),
            banner: Mutex::new(None),
            environment: Mutex::new(None),
        }
    }

    /// Sets the prefix that marks non-production screens (`[sandbox]`, `[uat]`), and the
    /// environment's name that JSON lines carry.
    pub fn set_banner(&self, banner: Option<String>, environment: &'static str) {
        *self.banner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = banner;
        *self
            .environment
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(environment);
    }

    fn line(&self, level: &str, text: &str) {
        self.lines().write(level, text);
    }

    /// A writer of this terminal's lines as they are now (banner, environment, format) that can
    /// be moved to another task: for the signal watcher, which speaks after the command's
    /// borrow of the terminal would have ended.
    pub fn lines(&self) -> LineWriter {
        LineWriter {
            json: self.options.json,
            banner: self
                .banner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            environment: *self
                .environment
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// An informational line; hidden by `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.options.quiet {
            self.line("info", text);
        }
    }

    /// A warning; always shown.
    pub fn warn(&self, text: &str) {
        self.line("warning", text);
    }

    /// An error; always shown.
    pub fn error(&self, text: &str) {
        self.line("error", text);
    }

    /// Starts a progress display for `total` rows. `planned_rate` (requests a second, `--rate`)
    /// gives the first ETA, before this run has finished rows enough to measure its own pace.
    pub fn progress(&self, total: u64, planned_rate: Option<u32>) -> Progress {
        let show = !self.options.quiet && !self.options.no_progress;
        let bar = (show && self.is_terminal && !self.options.json).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            // The rate and ETA are in the message, from this run's own sends (indicatif's would
            // count the rows an earlier run finished, which take no time now).
            let style = ProgressStyle::with_template("{prefix}{bar:30} {pos}/{len} rows  {msg}")
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
            plain: (show && (!self.is_terminal || self.options.json)).then(|| Mutex::new(Instant::now())),
            json: self.options.json,
            interval: self.options.plain_progress_interval,
            prefix: self
                .banner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(|banner| format!("{banner} "))
                .unwrap_or_default(),
            total,
            planned_rate: planned_rate.map(f64::from),
            counts: Default::default(),
            done: AtomicU64::new(0),
            finished_here: AtomicU64::new(0),
            first_finished: Mutex::new(None),
        }
    }
}

/// Writes one message line to stderr, as text for people or as one JSON object: the one place a
/// message's line is made.
#[derive(Debug, Clone)]
pub struct LineWriter {
    json: bool,
    banner: Option<String>,
    environment: Option<&'static str>,
}

impl LineWriter {
    /// A writer for a message before the terminal exists (a config file that cannot be read):
    /// no banner, JSON when asked for.
    pub fn plain(json: bool) -> LineWriter {
        LineWriter {
            json,
            banner: None,
            environment: None,
        }
    }

    /// Writes `text` at `level` (`info`, `warning`, `error`).
    pub fn write(&self, level: &str, text: &str) {
        let line = if self.json {
            json_line(&serde_json::json!({
                "timestamp": crate::clock::format(crate::clock::local_now()),
                "level": level,
                "environment": self.environment,
                "message": text,
            }))
        } else {
            let text = match level {
                "warning" | "error" => format!("{level}: {text}"),
                _ => text.to_owned(),
            };
            match &self.banner {
                Some(banner) => format!("{banner} {text}\n"),
                None => format!("{text}\n"),
            }
        };
        // A closed stderr has nowhere to report to; the exit code still tells.
        let _ = around_bar(|| std::io::stderr().write_all(line.as_bytes()));
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
    /// `--rate`: the pace assumed until this run has measured its own.
    planned_rate: Option<f64>,
    counts: [AtomicU64; RefundStatus::ALL.len()],
    done: AtomicU64,
    /// Rows whose request (or look-up) finished in this run: the rate and the ETA come from
    /// these alone, not from rows an earlier run finished, which take no time now.
    finished_here: AtomicU64,
    /// When the first of them finished.
    first_finished: Mutex<Option<Instant>>,
    /// One JSON object per progress line.
    json: bool,
}

impl crate::dispatch::ProgressReport for Progress {
    fn already_done(&self, state: RefundStatus) {
        self.count(state.in_results());
    }

    fn held(&self, status: RefundStatus) {
        self.count(status);
    }

    fn finished(&self, state: RefundStatus) {
        self.finished_here.fetch_add(1, Ordering::Relaxed);
        self.first_finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(Instant::now);
        self.count(state.in_results());
    }
}

impl Progress {
    /// This run's pace, rows a second, and the time left for the rest at that pace: measured
    /// from the rows this run finished itself once two have, and until then the planned rate
    /// (`--rate`), which is what a run limited by it reaches. `None` with neither. The flag says
    /// whether the pace was measured.
    fn pace(&self, done: u64) -> Option<(f64, Duration, bool)> {
        let finished = self.finished_here.load(Ordering::Relaxed);
        let since = *self
            .first_finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let measured = since
            .map(|since| since.elapsed().as_secs_f64())
            .filter(|elapsed| finished >= 2 && *elapsed > 0.0)
            .map(|elapsed| (finished - 1) as f64 / elapsed);
        let (rate, is_measured) = match (measured, self.planned_rate) {
            (Some(rate), _) => (rate, true),
            (None, Some(planned)) if planned > 0.0 => (planned, false),
            _ => return None,
        };
        let left = self.total.saturating_sub(done) as f64 / rate;
        Some((rate, Duration::from_secs_f64(left.min(1e9)), is_measured))
    }

    /// `, 19 rows/s, ETA 1m 40s` (the rate left out until measured).
    fn pace_text(&self, done: u64) -> String {
        match self.pace(done) {
            Some((rate, left, true)) => format!(", {rate:.0} rows/s, ETA {}", eta_text(left)),
            Some((_, left, false)) => format!(", ETA {}", eta_text(left)),
            None => String::new(),
        }
    }

    fn count(&self, status: RefundStatus) {
        if let Some(index) = RefundStatus::ALL.iter().position(|known| *known == status) {
            self.counts[index].fetch_add(1, Ordering::Relaxed);
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{}{}", self.counts_text(), self.pace_text(done)));
        }
        if let Some(last) = &self.plain {
            let mut last = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= self.interval {
                *last = Instant::now();
                let pace = self.pace(done);
                let line = if self.json {
                    let counts: serde_json::Map<String, serde_json::Value> = RefundStatus::ALL
                        .iter()
                        .zip(&self.counts)
                        .filter(|(_, count)| count.load(Ordering::Relaxed) > 0)
                        .map(|(status, count)| (status.as_str().to_owned(), count.load(Ordering::Relaxed).into()))
                        .collect();
                    json_line(&serde_json::json!({
                        "timestamp": crate::clock::format(crate::clock::local_now()),
                        "level": "info",
                        "event": "progress",
                        "done": done,
                        "total": self.total,
                        "counts": counts,
                        "rows_per_second": pace
                            .filter(|(_, _, measured)| *measured)
                            .map(|(rate, _, _)| (rate * 10.0).round() / 10.0),
                        "eta_seconds": pace.map(|(_, left, _)| left.as_secs()),
                    }))
                } else {
                    format!(
                        "{}progress: {done}/{} rows, {}{}\n",
                        self.prefix,
                        self.total,
                        self.counts_text(),
                        self.pace_text(done)
                    )
                };
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn counts_text(&self) -> String {
        let parts: Vec<String> = RefundStatus::ALL
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::ProgressReport;

    fn progress(total: u64, planned_rate: Option<f64>) -> Progress {
        Progress {
            bar: None,
            plain: None,
            interval: Duration::MAX,
            prefix: String::new(),
            total,
            planned_rate,
            counts: Default::default(),
            done: AtomicU64::new(0),
            finished_here: AtomicU64::new(0),
            first_finished: Mutex::new(None),
            json: false,
        }
    }

    #[test]
    fn the_first_eta_comes_from_the_planned_rate_and_the_rows_left() {
        let progress = progress(200, Some(20.0));
        assert_eq!(progress.pace_text(0), ", ETA 10s");
        // Rows an earlier run finished take no time: the ETA is for the rows left.
        for _ in 0..100 {
            progress.already_done(RefundStatus::Succeeded);
        }
        assert_eq!(
            progress.pace(100).map(|(_, left, measured)| (left, measured)),
            Some((Duration::from_secs(5), false))
        );
        assert_eq!(progress.pace_text(100), ", ETA 5s");
        // Without a planned rate nothing is guessed.
        assert_eq!(self::progress(10, None).pace_text(0), "");
    }

    #[test]
    fn the_rate_is_measured_from_this_runs_rows_only() {
        let progress = progress(1_000, Some(20.0));
        for _ in 0..500 {
            progress.already_done(RefundStatus::Succeeded);
        }
        // 11 rows finished here over 10 seconds: 1 row a second, whatever ran before.
        progress.finished_here.store(11, Ordering::Relaxed);
        *progress.first_finished.lock().unwrap() = Instant::now().checked_sub(Duration::from_secs(10));
        let (rate, left, measured) = progress.pace(511).unwrap();
        assert!(measured);
        assert!((0.9..=1.0).contains(&rate), "{rate}");
        assert!(left >= Duration::from_secs(489), "{left:?}");
        assert!(
            progress.pace_text(511).starts_with(", 1 rows/s, ETA 8m"),
            "{}",
            progress.pace_text(511)
        );
    }
}
