//! The steps: what a user, cron or the world does (`Step`), with the options of a run and the
//! moment a step acts on a run that is going, and the step kinds with the weights the walk
//! chooses them by.

use std::fmt;

use super::file::Edit;
use super::{INPUT, SAMPLE};

/// Where `run --results` points.
#[derive(Clone, Copy, Debug)]
pub(super) enum ResultsAt {
    /// The default, beside the input.
    Default,
    /// The current ledger's own file.
    Ledger,
    /// The input file itself.
    Input,
}

/// The options of one `run`.
#[derive(Clone, Copy, Debug)]
pub(super) struct RunOptions {
    pub(super) retry_failed: bool,
    pub(super) other_namespace: bool,
    pub(super) results: ResultsAt,
}

impl fmt::Display for RunOptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "run {INPUT}")?;
        if self.retry_failed {
            write!(formatter, " --retry-failed")?;
        }
        if self.other_namespace {
            write!(formatter, " --key-namespace other")?;
        }
        match self.results {
            ResultsAt::Default => Ok(()),
            ResultsAt::Ledger => write!(formatter, " --results <the ledger>"),
            ResultsAt::Input => write!(formatter, " --results {INPUT}"),
        }
    }
}

/// When a step acts on a run that is going.
#[derive(Clone, Copy, Debug)]
pub(super) enum Moment {
    /// A few milliseconds after the start.
    Millis(u64),
    /// Once this many refund POSTs of the run reached the sandbox.
    Posts(u64),
    /// Once the run said its file is valid (its first pass over the file is over).
    FileChecked,
}

impl fmt::Display for Moment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Moment::Millis(milliseconds) => write!(formatter, "{milliseconds} ms after its start"),
            Moment::Posts(posts) => write!(formatter, "after its refund POST number {posts}"),
            Moment::FileChecked => write!(formatter, "once it said the file is valid"),
        }
    }
}

/// One documented thing a user, cron or the world does.
#[derive(Clone, Debug)]
pub(super) enum Step {
    Run(RunOptions),
    Reconcile {
        refresh: bool,
    },
    ConfirmNotCreated {
        rows: String,
    },
    Status,
    Edit(Edit),
    /// Another host: a new, empty ledger from now on; there, someone may first try the
    /// README's first command, the sample on the embedded sandbox.
    NewLedger {
        sample_first: bool,
    },
    /// A copy of the current ledger (its file and WAL, as `cp ledger.sqlite*` copies them)
    /// becomes the ledger from now on.
    CopyLedger,
    /// Two runs at once over the same file, on the current ledger and on a new one.
    Concurrent {
        other_namespace: bool,
    },
    /// Days pass, for Payroc and for every ledger.
    Age {
        days: u32,
    },
    /// Payroc closes the batch: bank transfers complete, or come back returned.
    Settle,
    /// The tool's clock is off by this many days from now on (0: right again).
    Clock {
        days: i64,
    },
    RewriteDuringRun {
        edit: Edit,
        moment: Moment,
    },
    KillDuringRun {
        moment: Moment,
    },
    /// On another host's new ledger: a run, `status` while it goes (the run held still from
    /// `moment` on), then `kill -9` of the run.
    StatusThenKill {
        moment: Moment,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run(options) => write!(formatter, "{options}"),
            Step::Reconcile { refresh: false } => write!(formatter, "reconcile {INPUT}"),
            Step::Reconcile { refresh: true } => write!(formatter, "reconcile {INPUT} --refresh"),
            Step::ConfirmNotCreated { rows } => write!(formatter, "reconcile {INPUT} --confirm-not-created {rows}"),
            Step::Status => write!(formatter, "status"),
            Step::Edit(edit) => write!(formatter, "edit {edit}"),
            Step::NewLedger { sample_first: false } => write!(formatter, "another host: a new ledger"),
            Step::NewLedger { sample_first: true } => write!(
                formatter,
                "another host: a new ledger, where `run {SAMPLE}` on the embedded sandbox comes first"
            ),
            Step::CopyLedger => write!(formatter, "a copy of the ledger becomes the ledger"),
            Step::Concurrent { other_namespace } => write!(
                formatter,
                "two runs at once: `run {INPUT}` on the ledger and on a new one{}",
                if *other_namespace {
                    " with --key-namespace other"
                } else {
                    ""
                }
            ),
            Step::Age { days } => write!(formatter, "{days} days pass (Payroc and every ledger)"),
            Step::Settle => write!(
                formatter,
                "Payroc settles the batch, and a customer's bank returns the first completed transfer"
            ),
            Step::Clock { days } => write!(formatter, "the tool's clock is off by {days:+} days"),
            Step::RewriteDuringRun { edit, moment } => {
                write!(formatter, "`run {INPUT}`, and the file rewritten {moment}: {edit}")
            }
            Step::KillDuringRun { moment } => write!(formatter, "`run {INPUT}`, kill -9 {moment}"),
            Step::StatusThenKill { moment } => write!(
                formatter,
                "another host: `run {INPUT}` on a new ledger, `status` {moment}, then kill -9 of the run"
            ),
        }
    }
}

/// How many kinds of edit a sequence can switch on or off.
pub(super) const EDIT_KINDS: usize = 9;

/// The step kinds, for choosing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Run,
    Reconcile,
    ConfirmNotCreated,
    Status,
    Edit,
    NewLedger,
    CopyLedger,
    Concurrent,
    Age,
    Settle,
    Clock,
    Rewrite,
    Kill,
    StatusThenKill,
}

/// Each kind and its weight; `run` and edits are the core of every sequence, the others are
/// switched on per sequence.
pub(super) const KINDS: [(Kind, u64); 14] = [
    (Kind::Run, 30),
    (Kind::Edit, 24),
    (Kind::Reconcile, 8),
    (Kind::ConfirmNotCreated, 3),
    (Kind::Status, 3),
    (Kind::NewLedger, 6),
    (Kind::CopyLedger, 3),
    (Kind::Concurrent, 5),
    (Kind::Age, 8),
    (Kind::Settle, 3),
    (Kind::Clock, 4),
    (Kind::Rewrite, 4),
    (Kind::Kill, 6),
    (Kind::StatusThenKill, 3),
];

/// The kinds a sequence may start with: something that sends.
pub(super) const FIRST_KINDS: [(Kind, u64); 5] = [
    (Kind::Run, 50),
    (Kind::Concurrent, 15),
    (Kind::Kill, 15),
    (Kind::Rewrite, 10),
    (Kind::StatusThenKill, 10),
];
