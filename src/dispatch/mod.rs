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
//! permits at a time (a pair at the default rate), and a short wait for the next tick sleeps the
//! thread and reads the answers that came meanwhile when it wakes (see
//! [`crate::payroc::retry::doze_until`]): one wake-up per tick. Stopping — Ctrl-C, or a
//! systemic failure such as bad credentials — stops taking rows, gives the marked rows that never
//! left their state back, and waits for the requests in flight; the rows never taken stay as they
//! were and the next run resumes them.

pub mod gate;
mod lookup;
pub mod outcome;
pub mod reconcile;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::input::{InputError, InputReader, ParsedRow};
use crate::ledger::{AttemptId, BatchId, Ledger, LedgerError, NewRefund, RefundRecord, RefundState};
use crate::payroc::alarm::Alarm;
use crate::payroc::body::{PreparedRefund, prepare};
use crate::payroc::{CreatedRefund, PayrocClient, RequestLimiter, SendResult, SystemicError};
use crate::refund::{Method, ResultStatus, RowNote};
use crate::report::terminal::Progress;
use gate::{NewKey, refuse_new_key};
use lookup::{LookupVerdict, settle_lookup};

/// Rows older than this since their first send are not re-sent blindly: Payroc forgets keys
/// after 7 days, so a re-send could refund again. They must be reconciled first.
pub const BLIND_RESEND_LIMIT: Duration = Duration::from_secs(6 * 24 * 60 * 60);

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// `sandbox`, `uat` or `production`: part of every key.
    pub environment: String,
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
    /// Short waits for a permit may put the whole thread to sleep (see
    /// [`crate::payroc::retry::doze_until`]); false when the API is served by this process.
    pub doze: bool,
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

/// What to do with one valid row.
#[derive(Debug)]
pub enum Decision {
    /// Send it with this record's key.
    Send(RefundRecord),
    /// Already finished in the ledger.
    Done(RefundRecord),
    /// Do not send; show this in the results.
    Hold(RowNote),
}

/// Decides what to do with `prepared` (row `row`) given what the ledger knows. Creates the
/// ledger record for a new identity and moves to the next generation when asked to retry.
pub fn decide(
    ledger: &mut Ledger,
    prepared: &PreparedRefund,
    amount_minor: i64,
    currency: &str,
    options: &DispatchOptions,
    row: u64,
) -> Result<Decision, LedgerError> {
    let Some(mut record) = ledger.find_order(&prepared.ledger_id, &prepared.legacy_ledger_id)? else {
        if let Some(note) = refuse_new_key(ledger, prepared, None, NewKey::FirstSend, options.allow_case_variants)? {
            return Ok(Decision::Hold(note));
        }
        let key = prepared.identity.key(0).to_string();
        let mut refund = new_refund(prepared, &key, amount_minor, currency);
        refund.needs_precheck = options.precheck_new_rows;
        let record = ledger.insert(&refund, options.batch, row)?;
        return Ok(Decision::Send(record));
    };
    if record.state == RefundState::Sending && !record.may_have_reached {
        // Left `sending` by a crash: its request may have left before the crash.
        ledger.mark_may_have_reached(record.id)?;
        record.may_have_reached = true;
    }
    let same_body = record.fingerprint == prepared.fingerprint;
    if record.state.is_retryable_failure() && options.retry_failed {
        if let Some(note) = unchanged_retry(&record, prepared, options) {
            return Ok(Decision::Hold(note));
        }
        if let Some(note) = refuse_new_key(
            ledger,
            prepared,
            Some(&record),
            NewKey::RetryFailed,
            options.allow_case_variants,
        )? {
            return Ok(Decision::Hold(note));
        }
        let generation = record.generation + 1;
        let key = prepared.identity.key(generation).to_string();
        let mut refund = new_refund(prepared, &key, amount_minor, currency);
        // Another ledger or host may have refunded the order meanwhile: a new key is only sent
        // after Payroc was asked, unless the user switched lookups off.
        refund.needs_precheck = options.precheck_enabled;
        let record = ledger.next_generation(record.id, generation, &key, &refund, options.batch, row, None)?;
        return Ok(Decision::Send(record));
    }
    if !same_body {
        let change = record.describe_change(amount_minor, currency, &prepared.payee_masked);
        let note = if record.state.is_retryable_failure() {
            RowNote {
                status: record.state.result_status(),
                error: format!(
                    "this refund was {} and the row has changed since ({change}); to send the corrected row use --retry-failed",
                    record.state
                ),
            }
        } else if record.method != prepared.method.as_str() {
            let file = match record.batch_id {
                Some(batch) => ledger.batch_input_path(batch)?,
                None => None,
            };
            RowNote {
                status: ResultStatus::Conflict,
                error: format!(
                    "the ledger already has a refund for this order by {}: row {} of {} ({}, key {}); \
                     one order is one refund, so this row is not sent. A different refund needs a different order_id",
                    record.method,
                    record.input_row.map_or_else(|| "?".to_owned(), |row| row.to_string()),
                    file.as_deref().unwrap_or("an earlier file"),
                    record.state.result_status(),
                    record.idempotency_key
                ),
            }
        } else {
            RowNote {
                status: ResultStatus::Conflict,
                error: format!(
                    "the ledger already has this refund ({}, key {}) with different details ({change}); \
                     it is not sent again. A different refund needs a different order_id",
                    record.state.result_status(),
                    record.idempotency_key
                ),
            }
        };
        return Ok(Decision::Hold(note));
    }
    match record.state {
        RefundState::Pending | RefundState::Sending | RefundState::Unknown => {
            if sent_too_long_ago(&record) {
                return Ok(Decision::Hold(RowNote {
                    status: ResultStatus::Unknown,
                    error: "first sent more than 6 days ago and Payroc keeps keys for 7: not re-sent blindly. Run `refund-batch reconcile` on this file".into(),
                }));
            }
            Ok(Decision::Send(record))
        }
        _ => Ok(Decision::Done(record)),
    }
}

/// Why a failed row is not sent again although `--retry-failed` asks: nothing that could change
/// the answer changed. A declined or returned refund would be declined again to the same card or
/// account, so it goes again only when its payment details changed; a rejected one only when the
/// row changed at all. `--retry-unchanged` sends it anyway (an issuer that declined for a reason
/// of its own, since fixed).
fn unchanged_retry(record: &RefundRecord, prepared: &PreparedRefund, options: &DispatchOptions) -> Option<RowNote> {
    if options.retry_unchanged {
        return None;
    }
    let (unchanged, what) = match record.state {
        RefundState::Rejected => (record.fingerprint == prepared.fingerprint, "the row"),
        _ => (
            record.payee_masked == prepared.payee_masked && record.method == prepared.method.as_str(),
            "its payment details (card or account)",
        ),
    };
    unchanged.then(|| RowNote {
        status: record.state.result_status(),
        error: format!(
            "{}; not sent again: {what} did not change since, so it would most likely be {} again. \
             Fix the row, or pass --retry-unchanged to send it as it is",
            record
                .answer
                .problem_detail
                .clone()
                .or_else(|| record.answer.response_message.clone())
                .unwrap_or_else(|| record.state.to_string()),
            record.state
        ),
    })
}

/// The ledger's view of a prepared row under `key`.
pub(crate) fn new_refund<'a>(
    prepared: &'a PreparedRefund,
    key: &'a str,
    amount_minor: i64,
    currency: &'a str,
) -> NewRefund<'a> {
    NewRefund {
        identity: &prepared.ledger_id,
        environment: &prepared.identity.environment,
        method: prepared.method.as_str(),
        processing_terminal_id: &prepared.identity.processing_terminal_id,
        order_id: &prepared.identity.order_id,
        idempotency_key: key,
        fingerprint: &prepared.fingerprint,
        amount_minor,
        currency,
        payee_masked: &prepared.payee_masked,
        needs_precheck: false,
    }
}

/// Whether a refund was first sent longer ago than Payroc can be trusted to remember its key.
pub fn sent_too_long_ago(record: &RefundRecord) -> bool {
    let Some(first_sent) = &record.first_sent_at else {
        return false;
    };
    let Ok(first_sent) = time::OffsetDateTime::parse(first_sent, &time::format_description::well_known::Rfc3339) else {
        // An unreadable time is treated as old: the cautious reading.
        return true;
    };
    let age = crate::clock::now() - first_sent;
    age > time::Duration::try_from(BLIND_RESEND_LIMIT).unwrap_or(time::Duration::MAX)
}

/// One finished task: a refund sent, or an order looked up before its first send.
enum Finished {
    /// The refund's request (with its retries) ended.
    Sent {
        row: ReadyRow,
        attempt: AttemptId,
        report: crate::payroc::SendReport,
    },
    /// The lookup before the first send ended.
    LookedUp {
        row: ReadyRow,
        found: Result<Vec<(Method, CreatedRefund)>, SendResult>,
    },
}

impl Finished {
    /// Whether it ended in a failure that can stop the run (see [`FailureStreak`]): a systemic
    /// one, no answer at all, or a refusal about the account. A row's own refusal (a 400 for its
    /// data) cannot, and waits for the group's commit like a success.
    fn may_stop_the_run(&self) -> bool {
        let result = match self {
            Finished::Sent { report, .. } => &report.result,
            Finished::LookedUp { found: Err(result), .. } => result,
            Finished::LookedUp { found: Ok(_), .. } => return false,
        };
        matches!(result, SendResult::Systemic(_)) || run_stopping_failure(result).is_some()
    }
}

/// How many consecutive refunds giving up the same way mean "the API is down": stop and leave
/// the rest for the next run instead of burning every row's retries.
const REPEATED_FAILURE_LIMIT: u32 = 10;

/// How many consecutive refunds rejected for a reason that is about the account, not the row
/// (a terminal without the capability, a forbidden call), stop the run: every other row would
/// be rejected the same way and need `--retry-failed` once the account is fixed.
const SYSTEMIC_REJECTION_LIMIT: u32 = 5;

/// Problem types that are about the account or the integration rather than one row.
const SYSTEMIC_PROBLEM_TYPES: [&str; 4] = [
    "capabilities-missing",
    "forbidden",
    "not-acceptable",
    "unsupported-media-type",
];

/// Counts consecutive failures of one kind, to notice when the whole run is failing.
#[derive(Default)]
struct FailureStreak {
    kind: Option<String>,
    count: u32,
}

/// The kind of failure a result is, with how many in a row stop the run and its detail, if
/// it is one that can stop the run: no answer at all, or a refusal about the account.
fn run_stopping_failure(result: &SendResult) -> Option<(String, u32, &str)> {
    match result {
        SendResult::GaveUp { detail, .. } => Some(("no answer".to_owned(), REPEATED_FAILURE_LIMIT, detail)),
        SendResult::Refused {
            http_status,
            problem_type,
            detail,
        } => {
            let kind = problem_type.clone().unwrap_or_default();
            let systemic = SYSTEMIC_PROBLEM_TYPES.iter().any(|suffix| kind.ends_with(suffix)) || *http_status == 403;
            systemic.then_some((kind, SYSTEMIC_REJECTION_LIMIT, detail.as_str()))
        }
        _ => None,
    }
}

impl FailureStreak {
    /// Records one result and returns the reason to stop, if the streak has become systemic.
    fn observe(&mut self, result: &SendResult) -> Option<StopReason> {
        let Some((kind, limit, detail)) = run_stopping_failure(result) else {
            *self = FailureStreak::default();
            return None;
        };
        if self.kind.as_deref() == Some(kind.as_str()) {
            self.count += 1;
        } else {
            self.kind = Some(kind);
            self.count = 1;
        }
        (self.count >= limit).then(|| {
            StopReason::Repeated(format!(
                "{} refunds in a row failed the same way, so the rest were not sent (they stay pending: fix the cause and run again). The last: {detail}",
                self.count
            ))
        })
    }
}

/// Rows decided ahead of sending, at most: enough to fill a group, few enough that a stop
/// leaves little decided-but-unsent behind (those stay `pending`, which is harmless).
const READ_AHEAD: usize = 512;

/// Rows read per pass when none of them needs sending (a re-run of a finished batch), so that
/// a stop request is still noticed between passes.
const SCAN_CHUNK: usize = 4096;

/// How far ahead rows are marked `sending`: each commit marks the rows the rate limiter will
/// let go in the next [`GROUP_PERIOD`], and they then leave one permit at a time without a
/// commit of their own. Outcomes that came back in the meantime share that commit too.
///
/// A second: at the default rate of 20/s a commit (an fsync and a few WAL pages, the costliest
/// thing the tool does per group) then serves 16 rows (twice the default concurrency) instead of
/// the 5 a quarter second held: about a seventh less CPU per row at that pace, measured. At hundreds
/// of rows a second the group is bounded by twice the concurrency well inside the second anyway.
///
/// The price of marking ahead: after a crash, a row marked but not yet sent counts as "may
/// have reached Payroc" like any row found `sending` (so a later refusal of it reads `unknown`,
/// never a new key) — at most this period's worth of rows, and never more than twice the
/// concurrency. On a clean stop, marked rows that were never sent go back to what they were, in
/// one commit. An outcome waits at most this long for its commit.
const GROUP_PERIOD: Duration = Duration::from_millis(1000);

/// The longest wait for a permit the dispatcher spends dozing (see
/// [`crate::payroc::retry::doze_until`]): a tick at the default rate ([`LONGEST_TICK`]) and its
/// lateness, with room. Longer waits (a permit more than 150 ms away: rates under about 7/s,
/// unless the wait began late) park in the reactor as before, so a stop request or a request
/// under way is never held back longer than this by one doze.
const DOZE_LIMIT: Duration = Duration::from_millis(150);

/// The most rows one commit marks, whatever the rate.
const GROUP_ROWS_LIMIT: usize = 256;

/// A row decided and ready to be sent.
struct ReadyRow {
    record: RefundRecord,
    body: Bytes,
    method: Method,
    /// Its row number in the file, for the results' notes.
    input_row: u64,
    /// The `customFields` names sent, to notice any Payroc leaves out.
    custom_field_names: Vec<String>,
}

/// A row whose turn has come: marked `sending` (committed) and waiting for a permit, or to be
/// looked up at Payroc first.
enum Scheduled {
    /// Committed as `sending` under `attempt`; the request may leave.
    Send { row: ReadyRow, attempt: AttemptId },
    /// First seen by a new ledger: look the order up before sending it.
    Lookup(ReadyRow),
}

/// How requests are paced.
///
/// Commits and sends are paced apart. A commit (an fsync) happens once per [`GROUP_PERIOD`],
/// or when the marked rows run out: it records the outcomes that came back and marks the next
/// group `sending`. Sends wake the dispatcher once per `tick_rows` permits — [`TICK`] of rate,
/// a pair at rates that give two within [`LONGEST_TICK`], one at rates lower still — and cost
/// no commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    /// Permits a send wake-up waits for (fewer when fewer rows are marked or slots are free).
    tick_rows: u32,
    /// The limiter's burst: a tick's permits plus [`TICK_LATENESS`] of rate, so that a tick
    /// that wakes late (the timer's granularity, a commit) finds the permits it missed still
    /// there instead of losing them. The price: over any window of W seconds at most
    /// rate·W + burst requests start, e.g. 512 in a second at --rate 500, 23 at --rate 20.
    burst: NonZeroU32,
    /// Rows one commit marks `sending`: [`GROUP_PERIOD`] of rate, at least one, at most
    /// [`GROUP_ROWS_LIMIT`] and twice the concurrency.
    group_rows: usize,
}

/// The time a send wake-up's permits take to accrue at the run's rate.
const TICK: Duration = Duration::from_millis(20);

/// How late a tick may wake without losing permits (see [`Pace::burst`]).
const TICK_LATENESS: Duration = Duration::from_millis(5);

/// The longest a send wake-up waits to gather a pair of permits, at rates too low to fill a
/// [`TICK`].
///
/// Why pairs: at the default rate of 20/s a wake-up per permit is one every 50 ms, and each
/// wake-up of an idle process runs its code cold — on a virtual machine tens of microseconds of
/// CPU before any work, and the row's work at several times its warm cost. Two rows sent per
/// wake-up (and their two answers, which come back together) share that: measured at --rate 20
/// over a 50 ms API, about a fifth less CPU per row and 1.4 context switches per row instead of
/// 2.3. The rate is unchanged; the price is one more request in the limiter's burst (23 in any
/// second at --rate 20, was 22). A hundred milliseconds: below 20/s a pair would take longer than
/// that to gather, and a slow rate is usually asked for to spread requests out, not to bunch them.
const LONGEST_TICK: Duration = Duration::from_millis(100);

impl Pace {
    fn new(rate: NonZeroU32, concurrency: usize) -> Pace {
        let slots = u32::try_from(concurrency).unwrap_or(u32::MAX).max(1);
        let permits_in = |period: Duration| {
            let permits = u128::from(rate.get()) * period.as_millis() / 1000;
            u32::try_from(permits).unwrap_or(u32::MAX)
        };
        let tick_rows = permits_in(TICK).max(permits_in(LONGEST_TICK).min(2)).clamp(1, slots);
        let burst = (tick_rows + permits_in(TICK_LATENESS).max(1)).clamp(2, slots.saturating_mul(2).max(2));
        let group_rows = usize::try_from(permits_in(GROUP_PERIOD)).unwrap_or(usize::MAX);
        // Never more marked than two rounds of requests in flight: when the concurrency, not
        // the rate, is the limit (a slow API), a marked row must not wait long to leave.
        let rounds = usize::try_from(slots).unwrap_or(usize::MAX).saturating_mul(2);
        Pace {
            tick_rows,
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            group_rows: group_rows.clamp(1, GROUP_ROWS_LIMIT).min(rounds),
        }
    }
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
    progress: &Progress,
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
        permit_alarm: Alarm::new(),
        outcome_alarm: Alarm::new(),
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
    progress: &'run Progress,
    pace: Pace,
    limiter: Arc<RequestLimiter>,
    /// What the dispatcher sleeps on until the limiter's next permit (see [`Alarm`]).
    permit_alarm: Alarm,
    /// What it sleeps on until the outcomes waiting for a commit are due.
    outcome_alarm: Alarm,
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
            // Dozing leaves answers unread until the permit: only with slots to spare for
            // them, so that the concurrency is never what the doze holds back; never once the
            // run is stopping (the grace period's deadline is a timer); and only while the
            // token is cached, so that the requests just started are not waiting for one (as
            // decided here: a 401 read during a doze's last yields can start a fetch that the
            // next doze of the same wait, at most 150 ms, holds back).
            let slots_to_spare = free / 2 >= usize::try_from(wanted).unwrap_or(usize::MAX);
            let doze = (self.options.doze && slots_to_spare && abandon_at.is_none() && self.client.has_fresh_token())
                .then_some(DOZE_LIMIT);
            let (pause, limiter, alarm) = (&self.client.pause, &self.limiter, &mut self.permit_alarm);
            let outcome_alarm = &mut self.outcome_alarm;
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
                () = outcome_alarm.sleep_until(outcomes_due.unwrap_or_else(std::time::Instant::now)),
                    if !self.finished.is_empty() && outcomes_due.is_some() => Wake::Outcomes,
                // During a Retry-After pause no new request is released: they would all wait at
                // the gate and then leave at once.
                permits = crate::payroc::retry::permits(pause, limiter, wanted, alarm, doze),
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
                    tracing::debug!(refund = %row.record.id, key = %row.record.idempotency_key, generation = row.record.generation, "sending");
                    self.report.sent += 1;
                    self.tasks.push(Box::pin(async move {
                        let report = client
                            .send_refund(row.method, &row.record.idempotency_key, row.body.clone(), &limiter)
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

    /// Writes the outcomes of the requests that came back (inside the commit's transaction) and
    /// notices a run that is failing as a whole. Returns the rows' states, to be counted once
    /// the transaction is committed.
    fn record_finished(&mut self) -> Result<Vec<RefundState>, DispatchError> {
        let mut states = Vec::with_capacity(self.finished.len());
        let mut results: Vec<SendResult> = Vec::new();
        let mut cleared = Vec::new();
        for finished in std::mem::take(&mut self.finished) {
            match finished {
                Finished::Sent {
                    row,
                    attempt,
                    report: sent,
                } => {
                    let outcome = crate::dispatch::outcome::of_send(
                        &sent,
                        crate::dispatch::outcome::Sent {
                            method: row.method,
                            order_id: &row.record.order_id,
                            custom_field_names: &row.custom_field_names,
                        },
                        row.record.may_have_reached,
                    );
                    tracing::debug!(
                        refund = %row.record.id,
                        state = outcome.state.map(RefundState::as_str),
                        http_status = outcome.answer.http_status,
                        requests = sent.requests,
                        "refund finished"
                    );
                    let retries = i64::from(sent.requests.saturating_sub(1));
                    self.ledger.record(row.record.id, Some(attempt), &outcome, retries)?;
                    states.push(outcome.state.unwrap_or(RefundState::Unknown));
                    results.push(sent.result);
                }
                Finished::LookedUp { mut row, found } => {
                    match settle_lookup(self.ledger, &row.record, row.method, found, self.options.batch)? {
                        LookupVerdict::Clear => {
                            self.ledger.clear_precheck(row.record.id)?;
                            row.record.needs_precheck = false;
                            cleared.push(row);
                        }
                        LookupVerdict::Settled(state) => states.push(state),
                        LookupVerdict::Failed(note, result) => {
                            states.push(RefundState::Pending);
                            results.push(*result);
                            self.report.notes.insert(row.input_row, note);
                        }
                    }
                }
            }
        }
        for result in &results {
            let reason = match result {
                SendResult::Systemic(error) => Some(StopReason::Systemic(error.clone())),
                other => self.streak.observe(other),
            };
            if let Some(reason) = reason
                && self.report.stopped.is_none()
            {
                self.report.stopped = Some(reason);
                self.ready.clear();
            }
        }
        // Looked up and not found: these go out next, ahead of rows not looked up yet.
        if self.report.stopped.is_none() {
            for row in cleared.into_iter().rev() {
                self.ready.push_front(row);
            }
        }
        Ok(states)
    }

    /// Decides rows until enough are ready to send (or a pass of [`SCAN_CHUNK`] rows found none
    /// to send). Its ledger writes join the commit's transaction.
    fn read_ahead(&mut self) -> Result<(), DispatchError> {
        let mut scanned = 0;
        while self.ready.len() < READ_AHEAD && scanned < SCAN_CHUNK {
            let Some(parsed) = self.input.next_row() else {
                self.rows_exhausted = true;
                break;
            };
            scanned += 1;
            let parsed = match parsed {
                // The file no longer holds what was validated: nothing more is read from it. The
                // rows already read were validated and go on; the results name every row.
                Err(changed @ InputError::Changed { .. }) => {
                    self.rows_exhausted = true;
                    self.report.input_changed = Some(changed);
                    break;
                }
                other => other?,
            };
            let row = match parsed {
                ParsedRow::Valid(row) if !self.skip_rows.contains(&row.row) => row,
                ParsedRow::Valid(_) => continue,
                // Invalid rows were reported by validation and are never sent; every row read
                // here is compared with what validation read (`FileCheck::reopen`).
                ParsedRow::Invalid { .. } => continue,
            };
            let prepared = prepare(&row, &self.options.environment, &self.options.namespace);
            match decide(
                self.ledger,
                &prepared,
                row.amount_minor,
                row.currency.code(),
                self.options,
                row.row,
            )? {
                Decision::Send(record) => self.ready.push_back(ReadyRow {
                    record,
                    body: Bytes::from(crate::payroc::body::body(&row)),
                    method: row.method,
                    input_row: row.row,
                    custom_field_names: row.custom_fields.iter().map(|(name, _)| name.clone()).collect(),
                }),
                Decision::Done(record) => {
                    self.report.already_done += 1;
                    self.progress.already_done(record.state);
                }
                Decision::Hold(note) => {
                    self.progress.held(note.status);
                    self.report.notes.insert(row.row, note);
                }
            }
        }
        Ok(())
    }
}

/// Sleeps until `deadline`, or forever when there is none (a `select!` branch that never fires).
async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::RefundId;
    use crate::ledger::RefundUpdate;
    use crate::refund::money::Currency;
    use crate::refund::{Customer, Method, Payee, RefundRow};

    fn row(amount_minor: i64) -> RefundRow {
        RefundRow {
            row: 2,
            method: Method::Card,
            processing_terminal_id: "1234001".into(),
            order_id: "R1".into(),
            amount_minor,
            currency: Currency::from_code("USD").expect("USD is known"),
            description: "Refund".into(),
            channel: "moto",
            operator: None,
            payee: Payee::KeyedCard {
                card_number: "4111111111111111".into(),
                expiry_date: "0929".into(),
                cardholder_name: None,
            },
            customer: Customer::default(),
            ip_address: None,
            custom_fields: Vec::new(),
        }
    }

    fn options(retry_failed: bool) -> DispatchOptions {
        DispatchOptions {
            environment: "sandbox".into(),
            namespace: "default".into(),
            rate: NonZeroU32::MIN,
            concurrency: 1,
            retry_failed,
            retry_unchanged: true,
            batch: BatchId(1),
            shutdown_grace: Duration::ZERO,
            precheck_new_rows: false,
            precheck_enabled: true,
            precheck_days: 90,
            allow_case_variants: false,
            doze: false,
        }
    }

    /// A ledger (in a temp dir kept alive by the caller) with one batch.
    fn ledger() -> (tempfile::TempDir, Ledger) {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut ledger = Ledger::open(&directory.path().join("ledger.sqlite")).expect("open ledger");
        ledger.begin_batch("file.csv", "sha", "sandbox", "run").expect("batch");
        (directory, ledger)
    }

    fn decide_row(ledger: &mut Ledger, amount_minor: i64, retry_failed: bool) -> Decision {
        let row = row(amount_minor);
        let prepared = prepare(&row, "sandbox", "default");
        decide(
            ledger,
            &prepared,
            row.amount_minor,
            "USD",
            &options(retry_failed),
            row.row,
        )
        .expect("decide")
    }

    fn set_state(ledger: &mut Ledger, id: RefundId, state: RefundState) {
        ledger
            .record(
                id,
                None,
                &RefundUpdate {
                    state: Some(state),
                    ..RefundUpdate::default()
                },
                0,
            )
            .expect("record");
    }

    #[test]
    fn sends_wake_per_twenty_milliseconds_of_rate_or_per_pair_and_commits_mark_a_second() {
        let pace = |rate: u32, concurrency: usize| {
            let pace = Pace::new(NonZeroU32::new(rate).expect("positive"), concurrency);
            (pace.tick_rows, pace.burst.get(), pace.group_rows)
        };
        assert_eq!(pace(500, 64), (10, 12, 128));
        assert_eq!(
            pace(20, 8),
            (2, 3, 16),
            "the default rate: a pair of sends per wake-up, a commit per 16 rows"
        );
        assert_eq!(
            pace(50, 8),
            (2, 3, 16),
            "a pair until twenty milliseconds of rate hold more"
        );
        assert_eq!(
            pace(19, 8),
            (1, 2, 16),
            "a pair would take longer than 100 ms to gather"
        );
        assert_eq!(pace(20, 1), (1, 2, 2), "never more than the slots");
        assert_eq!(pace(5, 8), (1, 2, 5), "a second of rate when that is fewer");
        assert_eq!(pace(1, 1), (1, 2, 1));
        assert_eq!(
            pace(100_000, 64),
            (64, 128, 128),
            "never more than the free slots at once, nor marks for more than two rounds of them"
        );
        assert_eq!(pace(100_000, 1_000), (1_000, 1_500, GROUP_ROWS_LIMIT));
        assert_eq!(pace(500, 8), (8, 10, 16), "a slow API: the concurrency is the limit");
    }

    #[test]
    fn a_new_row_is_sent_with_generation_zero() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(record) = decide_row(&mut ledger, 1000, false) else {
            panic!("a new row is sent")
        };
        assert_eq!((record.generation, record.state), (0, RefundState::Pending));
        // The golden key of (sandbox, 1234001, R1) at generation 0, computed independently of
        // this crate.
        assert_eq!(record.idempotency_key, "96ddfeda-0903-4f91-9422-879837030b51");
    }

    #[test]
    fn unfinished_rows_are_sent_again_with_the_same_key() {
        for state in [RefundState::Pending, RefundState::Sending, RefundState::Unknown] {
            let (_directory, mut ledger) = ledger();
            let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
                panic!()
            };
            set_state(&mut ledger, first.id, state);
            let Decision::Send(again) = decide_row(&mut ledger, 1000, true) else {
                panic!("{state} is re-sent")
            };
            assert_eq!(again.idempotency_key, first.idempotency_key, "{state}: same key");
            assert_eq!(again.generation, 0);
        }
    }

    #[test]
    fn finished_rows_are_never_sent_again_and_only_failures_are_retried_on_request() {
        for state in [
            RefundState::Succeeded,
            RefundState::Queued,
            RefundState::Conflict,
            RefundState::Declined,
            RefundState::Rejected,
        ] {
            let (_directory, mut ledger) = ledger();
            let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
                panic!()
            };
            set_state(&mut ledger, first.id, state);
            assert!(
                matches!(decide_row(&mut ledger, 1000, false), Decision::Done(_)),
                "{state} without --retry-failed"
            );
            match decide_row(&mut ledger, 1000, true) {
                Decision::Send(retry) => {
                    assert!(state.is_retryable_failure(), "{state} must never be retried");
                    assert_eq!(retry.generation, 1);
                    assert_eq!(
                        retry.idempotency_key, "3483c0ce-3b1d-447d-9f4b-eedf1952cce6",
                        "a retry gets the generation-1 key"
                    );
                }
                Decision::Done(_) => assert!(!state.is_retryable_failure(), "{state} should be retried"),
                Decision::Hold(note) => panic!("{state}: unexpected hold {note:?}"),
            }
        }
    }

    #[test]
    fn a_changed_row_is_a_conflict_unless_a_failure_is_retried() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, first.id, RefundState::Succeeded);
        let Decision::Hold(note) = decide_row(&mut ledger, 1200, true) else {
            panic!("a changed succeeded row is held")
        };
        assert_eq!(note.status, ResultStatus::Conflict);
        assert!(
            note.error.contains("amount was 1000 USD minor units, now 1200 USD"),
            "{}",
            note.error
        );

        let (_directory, mut ledger) = self::ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, first.id, RefundState::Declined);
        let Decision::Hold(note) = decide_row(&mut ledger, 1200, false) else {
            panic!()
        };
        assert_eq!(note.status, ResultStatus::Declined);
        assert!(note.error.contains("--retry-failed"), "{}", note.error);
        let Decision::Send(retry) = decide_row(&mut ledger, 1200, true) else {
            panic!("the corrected row is sent")
        };
        assert_eq!((retry.generation, retry.amount_minor), (1, 1200));
    }

    #[test]
    fn a_row_left_sending_may_have_reached_payroc_and_is_never_retried_under_a_new_key() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        ledger.mark_sending(&first, BatchId(1)).expect("mark sending");
        // The next run finds it `sending` (a crash): it is re-sent with the same key, flagged.
        let Decision::Send(again) = decide_row(&mut ledger, 1000, true) else {
            panic!("a sending row is re-sent")
        };
        assert!(again.may_have_reached);
        assert_eq!(again.idempotency_key, first.idempotency_key);
        assert!(
            ledger
                .find(&first.identity)
                .expect("find")
                .expect("exists")
                .may_have_reached
        );
        // A rejected row whose generation may have reached Payroc is never given a new key.
        set_state(&mut ledger, first.id, RefundState::Rejected);
        let Decision::Hold(note) = decide_row(&mut ledger, 1000, true) else {
            panic!("held, not retried")
        };
        assert_eq!(note.status, ResultStatus::Unknown);
    }

    fn bank_row(amount_minor: i64) -> RefundRow {
        let mut bank = row(amount_minor);
        bank.method = Method::Bank;
        bank.payee = Payee::Ach {
            account_number: "1234567890".into(),
            routing_number: "011000015".into(),
            name_on_account: "Grace Hopper".into(),
            account_type: None,
            sec_code: None,
        };
        bank
    }

    #[test]
    fn an_order_is_one_refund_whatever_the_method_or_namespace() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(card) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, card.id, RefundState::Succeeded);
        // The same order by bank is the same record: its details changed, so it is held.
        let bank = prepare(&bank_row(1000), "sandbox", "default");
        assert_eq!(bank.identity.key(0).to_string(), card.idempotency_key);
        for retry_failed in [false, true] {
            let Decision::Hold(note) =
                decide(&mut ledger, &bank, 1000, "USD", &options(retry_failed), 3).expect("decide")
            else {
                panic!("the same order by bank is held")
            };
            assert_eq!(note.status, ResultStatus::Conflict, "{}", note.error);
        }
        // Under another namespace it is the same order, already done.
        let other_namespace = prepare(&row(1000), "sandbox", "team-b");
        assert!(matches!(
            decide(&mut ledger, &other_namespace, 1000, "USD", &options(true), 2).expect("decide"),
            Decision::Done(_)
        ));
        // A declined refund refunded nothing: the order may go another way, on request only,
        // under the next key of the same order, and then the card row is the one in conflict.
        set_state(&mut ledger, card.id, RefundState::Declined);
        assert!(matches!(
            decide(&mut ledger, &bank, 1000, "USD", &options(false), 3).expect("decide"),
            Decision::Hold(_)
        ));
        let Decision::Send(by_bank) = decide(&mut ledger, &bank, 1000, "USD", &options(true), 3).expect("decide")
        else {
            panic!("a declined order is retried by bank on request")
        };
        assert_eq!(
            (by_bank.id, by_bank.generation, by_bank.method.as_str()),
            (card.id, 1, "bank")
        );
        assert_eq!(by_bank.idempotency_key, bank.identity.key(1).to_string());
        set_state(&mut ledger, card.id, RefundState::Succeeded);
        let card_again = prepare(&row(1000), "sandbox", "default");
        let Decision::Hold(note) = decide(&mut ledger, &card_again, 1000, "USD", &options(true), 2).expect("decide")
        else {
            panic!("the fixed card row is held: the order was refunded by bank")
        };
        assert_eq!(note.status, ResultStatus::Conflict);
    }

    #[test]
    fn an_earlier_versions_record_of_the_order_under_another_method_holds_it() {
        let (_directory, mut ledger) = ledger();
        let card = prepare(&row(1000), "sandbox", "default");
        // As an earlier version recorded it: under its method and namespace, with a v1 key.
        let legacy_key = crate::refund::key::legacy_v1_key(&card.identity, "default", "card", 0).to_string();
        let mut refund = new_refund(&card, &legacy_key, 1000, "USD");
        refund.identity = &card.legacy_ledger_id;
        let legacy = ledger.insert(&refund, BatchId(1), 2).expect("insert");
        // The same row finds it and keeps its key.
        let Decision::Send(again) = decide(&mut ledger, &card, 1000, "USD", &options(false), 2).expect("decide") else {
            panic!("the pending legacy row is sent")
        };
        assert_eq!(
            (again.id, again.idempotency_key.as_str()),
            (legacy.id, legacy_key.as_str())
        );
        set_state(&mut ledger, legacy.id, RefundState::Unknown);
        let bank = prepare(&bank_row(1000), "sandbox", "default");
        let Decision::Hold(note) = decide(&mut ledger, &bank, 1000, "USD", &options(true), 3).expect("decide") else {
            panic!("the order by bank is held while the card refund may exist")
        };
        assert!(note.error.contains("by card"), "{}", note.error);
        // A letter-case variant of the order is the same order unless allowed.
        let mut variant = row(1000);
        variant.order_id = variant.order_id.to_lowercase();
        let variant = prepare(&variant, "sandbox", "default");
        let Decision::Hold(note) = decide(&mut ledger, &variant, 1000, "USD", &options(false), 4).expect("decide")
        else {
            panic!("a case variant is held")
        };
        assert!(note.error.contains("letter case"), "{}", note.error);
        let allowing = DispatchOptions {
            allow_case_variants: true,
            ..options(false)
        };
        assert!(matches!(
            decide(&mut ledger, &variant, 1000, "USD", &allowing, 4).expect("decide"),
            Decision::Send(_)
        ));
    }

    #[test]
    fn a_failed_row_is_retried_only_when_what_failed_changed_unless_asked() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        set_state(&mut ledger, first.id, RefundState::Declined);
        let strict = DispatchOptions {
            retry_unchanged: false,
            ..options(true)
        };
        // The same card again: held, saying why and how to send it anyway.
        let same = prepare(&row(1000), "sandbox", "default");
        let Decision::Hold(note) = decide(&mut ledger, &same, 1000, "USD", &strict, 2).expect("decide") else {
            panic!("an unchanged declined row is held")
        };
        assert_eq!(note.status, ResultStatus::Declined);
        assert!(note.error.contains("--retry-unchanged"), "{}", note.error);
        // Another card: sent under the next key.
        let mut other_card = row(1000);
        other_card.payee = Payee::KeyedCard {
            card_number: "5555555555554444".to_owned().into(),
            expiry_date: "1230".into(),
            cardholder_name: None,
        };
        let other_card = prepare(&other_card, "sandbox", "default");
        let Decision::Send(retry) = decide(&mut ledger, &other_card, 1000, "USD", &strict, 2).expect("decide") else {
            panic!("a declined row with another card is retried")
        };
        assert_eq!(retry.generation, 1);
    }

    #[test]
    fn a_row_first_sent_over_six_days_ago_is_held_for_reconcile() {
        let (_directory, mut ledger) = ledger();
        let Decision::Send(first) = decide_row(&mut ledger, 1000, false) else {
            panic!()
        };
        ledger.mark_sending(&first, BatchId(1)).expect("mark sending");
        let mut record = ledger.find(&first.identity).expect("find").expect("exists");
        assert!(!sent_too_long_ago(&record));
        record.first_sent_at = Some("2020-01-01T00:00:00.000Z".into());
        assert!(sent_too_long_ago(&record));
        record.first_sent_at = Some("not a time".into());
        assert!(sent_too_long_ago(&record), "an unreadable time is treated as old");
    }
}
