//! The dispatcher: decides, row by row, whether a refund must be sent, and sends those that must
//! at the allowed rate and concurrency, writing every step to the ledger.
//!
//! It runs after validation, streaming the input a second time. For each valid row it asks
//! [`decide`] what the ledger says: a new refund gets its generation-0 key; a refund left
//! `pending`, `sending` or `unknown` is sent again with the same key and bytes; a finished one is
//! left alone; a row whose body no longer matches what was sent is a `conflict` and is not sent.
//! A row to send is committed as `sending` before its request exists — that ordering is the
//! whole crash-safety argument (see [`crate::ledger`]).
//!
//! The loop owns the ledger (no locks around SQLite) and drives the requests itself, as a set of
//! futures it polls (no task per row), at most `concurrency` at once, each started only when
//! the governor rate limiter allows. It commits once per group (see [`Pace`]): the outcomes that
//! came back since the last commit and the `sending` marks of the rows the limiter lets go next,
//! together; a row is counted done only once its outcome is committed. Sends go out a tick's
//! permits at a time (a pair at the default rate), waiting on tokio's own timer. Stopping — Ctrl-C, or a
//! systemic failure such as bad credentials — stops taking rows, gives the marked rows that never
//! left their state back, and waits for the requests in flight; the rows never taken stay as they
//! were and the next run resumes them.

mod decision;
pub mod gate;
mod lookup;
pub mod outcome;
mod pace;
pub mod progress;
pub mod reconcile;
mod rows;
mod streak;

pub(crate) use decision::new_refund;
pub use decision::{Decision, decide, sent_too_long_ago};
use pace::{GROUP_PERIOD, Pace};
use rows::{Finished, READ_AHEAD, ReadyRow, Scheduled};
use streak::{FailureStreak, run_stopping_failure};

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::input::{InputError, InputReader, ParsedRow};
use crate::ledger::{AttemptId, BatchId, Ledger, LedgerError, RefundRecord};
use crate::payroc::body::prepare;
use crate::payroc::{CreatedRefund, PayrocClient, RequestLimiter, SendResult, SystemicError};
use crate::refund::RefundStatus;
use crate::refund::{Environment, Method, RowNote};
use lookup::{LookupVerdict, settle_lookup};
pub use progress::ProgressReport;

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// Where refunds go: part of every key.
    pub environment: Environment,
    /// Key namespace: part of every key.
    pub namespace: String,
    /// Requests per second.
    pub rate: NonZeroU32,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Send declined and rejected rows again under the next key generation.
    pub retry_failed: bool,
    /// With `retry_failed`, also rows whose payment details (or, for a rejected row, any
    /// detail) did not change (`--retry-unchanged`).
    pub retry_unchanged: bool,
    /// The ledger batch this run records under.
    pub batch: BatchId,
    /// After a stop request, how long requests in flight may take before they are abandoned.
    pub shutdown_grace: Duration,
    /// Rows new to the ledger are looked up at Payroc before their first send (see
    /// [`RefundRecord::needs_precheck`]).
    pub precheck_new_rows: bool,
    /// Rows marked for a lookup are looked up (false only with `--precheck never`).
    pub precheck_enabled: bool,
    /// How far back the lookup before a first send reaches.
    pub precheck_days: u32,
    /// Order ids that differ only by letter case are different orders (`--allow-case-variants`).
    pub allow_case_variants: bool,
}

/// What the dispatcher did.
#[derive(Debug, Default)]
pub struct DispatchReport {
    /// Refunds sent this run (one per row, however many HTTP requests each took).
    pub sent: u64,
    /// Rows already finished in the ledger.
    pub already_done: u64,
    /// Notes for rows not sent, by row number.
    pub notes: HashMap<u64, RowNote>,
    /// Why the run stopped early, when it did.
    pub stopped: Option<StopReason>,
    /// The input file changed under the run: the rows after the change were not read.
    pub input_changed: Option<InputError>,
}

/// Why a dispatch ended before every row was handled.
#[derive(Debug, Clone)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Credentials or the identity service failed.
    Systemic(SystemicError),
    /// Many refunds in a row failed the same way; the API looks down.
    Repeated(String),
}

/// Errors that end the dispatch with no meaningful outcome for the rest.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The ledger failed; nothing more can be recorded, so nothing more is sent.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The input could not be read a second time.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// What woke the dispatcher.
enum Wake {
    /// A stop was requested, or the channel closed.
    Signal,
    /// This many permits are ours: send that many marked rows (and any more the limiter allows).
    Permits(u32),
    /// Finished requests to record now.
    Outcomes,
    /// The grace period after a stop ran out.
    Abandon,
}

/// Streams `input` (already validated) and sends what must be sent. `skip_rows` are rows the
/// validation pass found invalid beyond a single row's cells (duplicates).
///
/// The ledger is written in one transaction per group (see [`Pace`] and
/// [`Ledger::begin_group`]): the read-ahead's decisions, the outcomes of the requests that
/// finished since the last commit, and the `sending` marks of the next group of rows share one
/// commit, and none of those rows' requests exists before that commit returns.
///
/// Returns what was done even when it ends in an error (the notes still belong in the results),
/// and on an error rolls back any ledger group left open, so that nothing uncommitted is read
/// as if it were on disk. A rolled-back group of `sending` marks never had its requests started.
pub async fn dispatch(
    ledger: &mut Ledger,
    input: InputReader,
    skip_rows: &std::collections::HashSet<u64>,
    client: Arc<PayrocClient>,
    options: &DispatchOptions,
    progress: &dyn ProgressReport,
    shutdown: watch::Receiver<bool>,
) -> (DispatchReport, Result<(), DispatchError>) {
    let pace = Pace::new(options.rate, options.concurrency);
    let limiter = Arc::new(RequestLimiter::new(options.rate, pace.burst));
    let lookups = lookup::Lookups::new(
        Arc::clone(&client),
        Arc::clone(&limiter),
        options.precheck_days,
        options.allow_case_variants,
    );
    let mut dispatcher = Dispatcher {
        ledger,
        input,
        skip_rows,
        client,
        options,
        progress,
        pace,
        limiter,
        tasks: FuturesUnordered::new(),
        finished: Vec::new(),
        ready: std::collections::VecDeque::new(),
        scheduled: std::collections::VecDeque::new(),
        rows_exhausted: false,
        lookups,
        streak: FailureStreak::default(),
        report: DispatchReport::default(),
    };
    let result = dispatcher.run(shutdown).await;
    if result.is_err()
        && let Err(rollback) = dispatcher.ledger.abort_group()
    {
        tracing::error!("could not roll back the open ledger group: {rollback}");
    }
    (dispatcher.report, result)
}

/// A request (with its retries) or a lookup, driven by the dispatcher's loop.
type InFlight = std::pin::Pin<Box<dyn std::future::Future<Output = Finished> + Send>>;

/// The dispatcher's state between wake-ups. It alone owns the ledger during a run (no locks
/// around SQLite); requests are futures in `tasks`, polled by the dispatcher's own loop.
struct Dispatcher<'run> {
    ledger: &'run mut Ledger,
    input: InputReader,
    skip_rows: &'run std::collections::HashSet<u64>,
    client: Arc<PayrocClient>,
    options: &'run DispatchOptions,
    progress: &'run dyn ProgressReport,
    pace: Pace,
    limiter: Arc<RequestLimiter>,
    tasks: FuturesUnordered<InFlight>,
    /// Requests that came back and wait for the next commit.
    finished: Vec<Finished>,
    /// Rows decided, not yet marked.
    ready: std::collections::VecDeque<ReadyRow>,
    /// Rows marked `sending` (or due a lookup), waiting for a permit.
    scheduled: std::collections::VecDeque<Scheduled>,
    rows_exhausted: bool,
    /// The look-ups before first sends, and the terminal listings they share.
    lookups: lookup::Lookups,
    streak: FailureStreak,
    report: DispatchReport,
}

impl Dispatcher<'_> {
    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), DispatchError> {
        // Set when a stop is requested: in-flight requests are abandoned at this instant.
        let mut abandon_at: Option<tokio::time::Instant> = None;
        // When the oldest outcome waiting for a commit must be committed at the latest.
        let mut outcomes_due: Option<std::time::Instant> = None;
        let mut signals_open = true;
        let mut interrupted = false;
        loop {
            // A stop request is noticed here too, not only while waiting: passes over rows that
            // are already done never wait.
            if signals_open && !interrupted && shutdown.has_changed().unwrap_or(false) && *shutdown.borrow_and_update()
            {
                interrupted = true;
                self.stop_requested(&mut abandon_at);
            }
            let sending = self.report.stopped.is_none();
            if self.ready.is_empty() && self.scheduled.is_empty() && self.tasks.is_empty() && self.finished.is_empty() {
                if self.rows_exhausted || !sending {
                    break;
                }
                // Nothing in flight to wait for: read on.
                self.commit(&mut abandon_at)?;
                continue;
            }
            if sending && self.scheduled.is_empty() && (!self.ready.is_empty() || !self.rows_exhausted) {
                // The marked rows ran out: mark the next group (and record what came back).
                self.commit(&mut abandon_at)?;
                outcomes_due = None;
                if !self.tasks.is_empty() {
                    // One thread runs everything: let the requests in flight, the timers and the
                    // signal handler run between passes over rows that are already done.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let free = self.options.concurrency.saturating_sub(self.tasks.len());
            if sending && free > 0 && matches!(self.scheduled.front(), Some(Scheduled::Lookup(_))) {
                // A look-up takes its permits itself, one per page it reads: it starts at once.
                self.send_scheduled(0);
                continue;
            }
            let can_send = sending && !self.scheduled.is_empty() && free > 0;
            // Permits for the sends among the rows the free slots will take (a look-up behind
            // them takes its own, per page).
            let sends = self
                .scheduled
                .iter()
                .take(free)
                .filter(|scheduled| matches!(scheduled, Scheduled::Send { .. }))
                .count();
            let wanted = u32::try_from(sends).unwrap_or(u32::MAX).min(self.pace.tick_rows);
            let (pause, limiter) = (&self.client.pause, &self.limiter);
            let wake = tokio::select! {
                biased;
                // Listened to even after a systemic stop: the person waiting may not want to.
                changed = shutdown.changed(), if signals_open && !interrupted => {
                    match changed {
                        // Nobody can ask for a stop any more; carry on.
                        Err(_) => signals_open = false,
                        Ok(()) if *shutdown.borrow() => {
                            interrupted = true;
                            self.stop_requested(&mut abandon_at);
                        }
                        Ok(()) => {}
                    }
                    Wake::Signal
                }
                () = sleep_until_or_forever(abandon_at), if !self.tasks.is_empty() => Wake::Abandon,
                Some(finished) = self.tasks.next(), if !self.tasks.is_empty() => {
                    let may_stop = finished.may_stop_the_run();
                    self.finished.push(finished);
                    if (!self.tasks.is_empty() || can_send) && !may_stop {
                        // The next commit records it; it is not worth a commit of its own. A
                        // failure that can stop the run is recorded at once instead: it may be
                        // one of a streak (an account-level refusal, an API that is down), and
                        // until it is recorded the group's marked rows keep leaving.
                        outcomes_due.get_or_insert_with(|| std::time::Instant::now() + GROUP_PERIOD);
                        continue;
                    }
                    Wake::Outcomes
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(
                    outcomes_due.unwrap_or_else(std::time::Instant::now)
                )),
                    if !self.finished.is_empty() && outcomes_due.is_some() => Wake::Outcomes,
                // During a Retry-After pause no new request is released: they would all wait at
                // the gate and then leave at once.
                permits = crate::payroc::retry::permits(pause, limiter, wanted),
                    if can_send => Wake::Permits(permits),
            };
            match wake {
                Wake::Permits(permits) => self.send_scheduled(permits),
                Wake::Abandon => {
                    // Their rows stay `sending`: the next run re-sends them with the same key.
                    self.collect_finished();
                    tracing::warn!(
                        "abandoning {} requests still in flight after the grace period",
                        self.tasks.len()
                    );
                    self.tasks.clear();
                    self.commit(&mut abandon_at)?;
                    break;
                }
                Wake::Signal | Wake::Outcomes => {
                    self.commit(&mut abandon_at)?;
                    outcomes_due = None;
                }
            }
        }
        Ok(())
    }

    /// Ctrl-C or SIGTERM: take no more rows (the marked ones are given back at the next commit)
    /// and give the requests in flight the grace period.
    fn stop_requested(&mut self, abandon_at: &mut Option<tokio::time::Instant>) {
        self.report.stopped.get_or_insert(StopReason::Interrupted);
        self.ready.clear();
        let deadline = tokio::time::Instant::now() + self.options.shutdown_grace;
        *abandon_at = Some(abandon_at.map_or(deadline, |earlier| earlier.min(deadline)));
    }

    /// [`Dispatcher::commit_point`], and when the outcomes it recorded stopped the run (a
    /// systemic failure), the grace period for the requests still in flight: they meet the same
    /// failure, possibly slowly (a token fetch retrying for minutes).
    fn commit(&mut self, abandon_at: &mut Option<tokio::time::Instant>) -> Result<(), DispatchError> {
        let stopped_before = self.report.stopped.is_some();
        self.commit_point()?;
        if !stopped_before && self.report.stopped.is_some() && abandon_at.is_none() {
            *abandon_at = Some(tokio::time::Instant::now() + self.options.shutdown_grace);
        }
        Ok(())
    }

    /// One commit: record what came back, read ahead, and mark the next group `sending` — or,
    /// once the run is stopping, give the marked rows that never left back their state.
    /// Outcomes count as done only after it.
    fn commit_point(&mut self) -> Result<(), DispatchError> {
        self.collect_finished();
        let read_ahead = self.ready.len() < READ_AHEAD / 2 && !self.rows_exhausted && self.report.stopped.is_none();
        let mark =
            self.report.stopped.is_none() && self.scheduled.len() < self.pace.group_rows && !self.ready.is_empty();
        let unmark = self.report.stopped.is_some() && !self.scheduled.is_empty();
        let work = !self.finished.is_empty() || read_ahead || mark || unmark;
        if !work {
            return Ok(());
        }
        self.ledger.begin_group()?;
        let outcomes = self.record_finished()?;
        if read_ahead && self.report.stopped.is_none() {
            self.read_ahead()?;
        }
        if self.report.stopped.is_none() {
            while self.scheduled.len() < self.pace.group_rows
                && let Some(row) = self.ready.pop_front()
            {
                // Rows first seen by a new ledger are looked up at Payroc before they are sent.
                if row.record.needs_precheck && self.options.precheck_enabled {
                    self.scheduled.push_back(Scheduled::Lookup(row));
                } else {
                    let attempt = self.ledger.mark_sending(&row.record, self.options.batch)?;
                    self.scheduled.push_back(Scheduled::Send { row, attempt });
                }
            }
        } else {
            for scheduled in std::mem::take(&mut self.scheduled) {
                if let Scheduled::Send { row, attempt } = scheduled {
                    self.ledger.unmark_sending(&row.record, attempt)?;
                }
            }
        }
        // Outcomes are durable, and so is `sending` for the whole group before any of its
        // requests exists.
        self.ledger.commit_group()?;
        for state in outcomes {
            self.progress.finished(state);
        }
        Ok(())
    }

    /// Starts the requests of `permits` marked rows, and of any more the limiter allows right
    /// now, up to the free slots, and the look-ups among them, which need no permit here (each
    /// takes one per page it reads). No ledger write: their marks were committed already.
    fn send_scheduled(&mut self, permits: u32) {
        let free = self.options.concurrency.saturating_sub(self.tasks.len());
        let mut owned = permits;
        let mut started = 0;
        while started < free {
            match self.scheduled.front() {
                None => break,
                Some(Scheduled::Lookup(_)) => {}
                Some(Scheduled::Send { .. }) if owned > 0 => owned -= 1,
                Some(Scheduled::Send { .. }) => {
                    if !self.limiter.try_new_send() {
                        break;
                    }
                }
            }
            let Some(scheduled) = self.scheduled.pop_front() else {
                break;
            };
            started += 1;
            let client = Arc::clone(&self.client);
            let limiter = Arc::clone(&self.limiter);
            match scheduled {
                Scheduled::Lookup(row) => {
                    let lookup =
                        self.lookups
                            .of_order(&row.record.processing_terminal_id, &row.record.order_id, row.method);
                    self.tasks.push(Box::pin(async move {
                        let found = lookup.await;
                        Finished::LookedUp { row, found }
                    }));
                }
                Scheduled::Send { row, attempt } => {
                    tracing::debug!(
                        row = row.input_row,
                        order_id = %row.record.order_id,
                        generation = row.record.generation,
                        "sending"
                    );
                    self.report.sent += 1;
                    self.tasks.push(Box::pin(async move {
                        let report = client
                            .send_refund(row.method, row.record.idempotency_key, row.body.clone(), &limiter)
                            .await;
                        Finished::Sent { row, attempt, report }
                    }));
                }
            }
        }
    }

    /// Takes every request that has finished by now, without waiting.
    fn collect_finished(&mut self) {
        while let Some(Some(finished)) = self.tasks.next().now_or_never() {
            self.finished.push(finished);
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none (a `select!` branch that never fires).
async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
