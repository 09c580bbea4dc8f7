//! The search for double refunds: instead of listing examples, seeded random walks over short
//! sequences of the steps a user (or cron, or bad luck) takes — run, reconcile, status, edit the
//! file, another host's ledger, a second run at the same time, days passing, a clock that is
//! wrong, `kill -9`, Payroc's faults — each run with the real binary against its own sandbox on
//! loopback, with the promise's invariants checked after every step.
//!
//! `REFUND_BATCH_SEARCH=N` sequences (200 by default); sequence `i` uses seed
//! `REFUND_BATCH_SEARCH_SEED + i`. A failure prints the seed, the steps and the evidence, and the
//! command that replays exactly that sequence. The same seed gives the same steps and files;
//! only what a step's timing decides (where a `kill -9` lands) may differ between replays.
//!
//! The walk is guided, not uniform, because the holes worth finding are several steps deep: each
//! sequence switches a random half of the optional step kinds off (so the others come up more
//! often together), edits favour a row whose card or account the sandbox declines, a run follows
//! an edit more often than not, and `--retry-failed` is likelier once a row declines. All of this
//! reads only the harness's own model of the file, never an outcome, so the choice of every step
//! stays a function of the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payroc_sandbox::{RefundRecord, SandboxConfig, Stats};

use crate::support::Seeded;
use crate::util::{TestSandbox, Workdir, age_ledger, read_results, sample, signal, wait_while_running};

/// Sequences a plain `cargo test` searches; `REFUND_BATCH_SEARCH` overrides it (10000 for a long
/// search).
const DEFAULT_SEQUENCES: u64 = 200;
/// The first seed; `REFUND_BATCH_SEARCH_SEED` overrides it.
const DEFAULT_SEED: u64 = 20_261_123;
/// Sequences searched at the same time (each is mostly waiting on its processes).
const THREADS: usize = 3;

/// The input file every sequence runs, and the sandbox sample another host tries first.
const INPUT: &str = "day.csv";
const SAMPLE: &str = "sample.csv";
const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";
const TERMINALS: [&str; 2] = ["1234001", "1234002"];

/// Cards the sandbox approves, declines (`D`, `R`, `C`), and answers otherwise (queued `E`,
/// partial `P`, `A` with a declined status).
const APPROVING_CARDS: [&str; 3] = ["4111111111111111", "4539858876047062", "5555555555554444"];
const DECLINING_CARDS: [&str; 3] = ["4000000000000002", "4000000000000127", "4000000000000135"];
const ODD_CARDS: [&str; 3] = ["4000000000000119", "4000000000000143", "4000000000000150"];
/// Bank accounts the sandbox approves (the second is returned when the batch settles), declines
/// (the third with a `declined` status next to code `A`), and leaves pending.
const APPROVING_ACCOUNTS: [&str; 2] = ["1234567890", "99990005"];
const DECLINING_ACCOUNTS: [&str; 3] = ["99990002", "99990003", "99990007"];
const PENDING_ACCOUNT: &str = "99990004";
/// Card numbers spelled as people paste them into an order id or a description (at most 24
/// characters, so a valid order id).
const SPELLED_CARDS: [&str; 3] = ["4111 1111 1111 1111", "4539-8588-7604-7062", "5555 5555-5555 4444"];

#[test]
fn search_finds_no_double_refund_and_no_card_number_on_disk() {
    let sequences = env_number("REFUND_BATCH_SEARCH", DEFAULT_SEQUENCES);
    let base = env_number("REFUND_BATCH_SEARCH_SEED", DEFAULT_SEED);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS.min(sequences as usize).max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= sequences {
                        break;
                    }
                    if let Err(failure) = search_one(base + index) {
                        // Shown as soon as found: a long search may take a while to end.
                        eprintln!("{failure}\n");
                        failures.lock().expect("failures").push(failure);
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("failures");
    eprintln!(
        "search: {} sequences from seed {base} in {:.1?}, {} failed",
        next.load(Ordering::Relaxed).min(sequences),
        started.elapsed(),
        failures.len()
    );
    failures.sort_by_key(|failure| failure.seed);
    if let Some(first) = failures.first() {
        let seeds: Vec<String> = failures.iter().map(|failure| failure.seed.to_string()).collect();
        panic!(
            "{} of the sequences broke an invariant (seeds {}; each is shown above); the first:\n\n{first}",
            failures.len(),
            seeds.join(", "),
        );
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// A broken invariant (or a step that could not be carried out), with all it takes to replay it.
struct Failure {
    seed: u64,
    steps: Vec<String>,
    what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "seed {}: {}", self.seed, self.what)?;
        writeln!(formatter, "steps:")?;
        for (number, step) in self.steps.iter().enumerate() {
            writeln!(formatter, "  {}. {step}", number + 1)?;
        }
        write!(
            formatter,
            "replay with: REFUND_BATCH_SEARCH_SEED={} REFUND_BATCH_SEARCH=1 cargo test --test tests search",
            self.seed
        )
    }
}

/// Runs the sequence of `seed`; a panic inside a step (a process that hangs, a file that cannot
/// be written) is reported like a broken invariant, with the steps so far.
fn search_one(seed: u64) -> Result<(), Failure> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| Sequence::new(seed, Arc::clone(&log)).walk()));
    let steps = log.lock().map(|steps| steps.clone()).unwrap_or_default();
    let what = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(broken)) => broken,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            format!("a step failed: {message}")
        }
    };
    Err(Failure { seed, steps, what })
}

// ---------------------------------------------------------------------------------------------
// The file: the harness's model of the input, from which every version of it is written.
// ---------------------------------------------------------------------------------------------

/// Who a row pays back.
#[derive(Clone, Debug, PartialEq)]
enum Payee {
    Card(&'static str),
    Bank(&'static str),
}

impl Payee {
    /// Whether the sandbox declines a refund to this payee.
    fn declines(&self) -> bool {
        match self {
            Payee::Card(number) => DECLINING_CARDS.contains(number) || *number == ODD_CARDS[2],
            Payee::Bank(account) => DECLINING_ACCOUNTS.contains(account),
        }
    }
}

impl fmt::Display for Payee {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payee::Card(number) => write!(formatter, "card {number}"),
            Payee::Bank(account) => write!(formatter, "bank account {account}"),
        }
    }
}

/// One row of the input file.
#[derive(Clone, Debug)]
struct Row {
    terminal: &'static str,
    order_id: String,
    amount: String,
    description: String,
    payee: Payee,
}

impl Row {
    fn line(&self) -> String {
        let Row {
            terminal,
            order_id,
            amount,
            description,
            payee,
        } = self;
        match payee {
            Payee::Card(number) => {
                format!("card,{terminal},{order_id},{amount},USD,{description},{number},0929,,,\n")
            }
            Payee::Bank(account) => {
                format!("bank,{terminal},{order_id},{amount},USD,{description},,,{account},011000015,Grace Hopper\n")
            }
        }
    }
}

fn file_text(rows: &[Row]) -> String {
    let mut text = HEADER.to_owned();
    for row in rows {
        text.push_str(&row.line());
    }
    text
}

/// An amount between 1.00 and 99.99.
fn amount(random: &mut Seeded) -> String {
    format!("{}.{:02}", random.between(1, 99), random.between(0, 99))
}

fn random_payee(random: &mut Seeded) -> Payee {
    if random.chance(60) {
        match random.weighted(&[60, 28, 12]) {
            0 => Payee::Card(random.pick(&APPROVING_CARDS)),
            1 => Payee::Card(random.pick(&DECLINING_CARDS)),
            _ => Payee::Card(random.pick(&ODD_CARDS)),
        }
    } else {
        match random.weighted(&[70, 20, 10]) {
            0 => Payee::Bank(random.pick(&APPROVING_ACCOUNTS)),
            1 => Payee::Bank(random.pick(&DECLINING_ACCOUNTS)),
            _ => Payee::Bank(PENDING_ACCOUNT),
        }
    }
}

/// A change to one row of the file, as a person makes it between (or during) runs.
#[derive(Clone, Debug)]
enum Edit {
    Description {
        row: usize,
        text: String,
    },
    Amount {
        row: usize,
        amount: String,
    },
    /// Another card on a card row: fixing a declined card, or a mistaken swap.
    SwapCard {
        row: usize,
        card: &'static str,
    },
    /// The row becomes a bank row (with bank columns), or a card row.
    SwitchMethod {
        row: usize,
        to: Payee,
    },
    /// Upper case becomes lower case and the other way round.
    OrderIdCase {
        row: usize,
    },
    /// A zero-width space inside the order id (U+200B), as copying from a web page leaves it.
    ZeroWidthSpace {
        row: usize,
    },
    /// The order id's ASCII hyphen becomes a Unicode hyphen (U+2010), as a word processor does.
    UnicodeHyphen {
        row: usize,
    },
    CardInOrderId {
        row: usize,
        spelled: &'static str,
    },
    CardInDescription {
        row: usize,
        spelled: &'static str,
    },
    /// A second row for the row's order, by the other method: only ever made while a run is
    /// going (validation refuses such a file).
    RepeatByOtherMethod {
        row: usize,
        payee: Payee,
    },
}

impl Edit {
    fn apply(&self, rows: &mut Vec<Row>) {
        match self {
            Edit::Description { row, text } => rows[*row].description.clone_from(text),
            Edit::Amount { row, amount } => rows[*row].amount.clone_from(amount),
            Edit::SwapCard { row, card } => rows[*row].payee = Payee::Card(card),
            Edit::SwitchMethod { row, to } => rows[*row].payee = to.clone(),
            Edit::OrderIdCase { row } => {
                let swapped = rows[*row]
                    .order_id
                    .chars()
                    .map(|character| {
                        if character.is_ascii_uppercase() {
                            character.to_ascii_lowercase()
                        } else {
                            character.to_ascii_uppercase()
                        }
                    })
                    .collect();
                rows[*row].order_id = swapped;
            }
            Edit::ZeroWidthSpace { row } => rows[*row].order_id.insert(2, '\u{200B}'),
            Edit::UnicodeHyphen { row } => rows[*row].order_id = rows[*row].order_id.replacen('-', "\u{2010}", 1),
            Edit::CardInOrderId { row, spelled } => rows[*row].order_id = (*spelled).to_owned(),
            Edit::CardInDescription { row, spelled } => rows[*row].description = format!("card {spelled}"),
            Edit::RepeatByOtherMethod { row, payee } => {
                let mut repeat = rows[*row].clone();
                repeat.payee = payee.clone();
                rows.push(repeat);
            }
        }
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rows as a spreadsheet numbers them (the header is row 1), like the tool's messages.
        match self {
            Edit::Description { row, text } => write!(formatter, "row {}: description {text:?}", row + 2),
            Edit::Amount { row, amount } => write!(formatter, "row {}: amount {amount}", row + 2),
            Edit::SwapCard { row, card } => write!(formatter, "row {}: card {card}", row + 2),
            Edit::SwitchMethod { row, to } => write!(formatter, "row {}: method switched, {to}", row + 2),
            Edit::OrderIdCase { row } => write!(formatter, "row {}: order id's letter case swapped", row + 2),
            Edit::ZeroWidthSpace { row } => write!(formatter, "row {}: zero-width space in the order id", row + 2),
            Edit::UnicodeHyphen { row } => write!(formatter, "row {}: Unicode hyphen in the order id", row + 2),
            Edit::CardInOrderId { row, spelled } => write!(formatter, "row {}: order id {spelled:?}", row + 2),
            Edit::CardInDescription { row, spelled } => {
                write!(formatter, "row {}: description \"card {spelled}\"", row + 2)
            }
            Edit::RepeatByOtherMethod { row, payee } => {
                write!(formatter, "row {} repeated at the end, {payee}", row + 2)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The steps.
// ---------------------------------------------------------------------------------------------

/// Where `run --results` points.
#[derive(Clone, Copy, Debug)]
enum ResultsAt {
    /// The default, beside the input.
    Default,
    /// The current ledger's own file.
    Ledger,
    /// The input file itself.
    Input,
}

/// The options of one `run`.
#[derive(Clone, Copy, Debug)]
struct RunOptions {
    retry_failed: bool,
    other_namespace: bool,
    results: ResultsAt,
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
enum Moment {
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
enum Step {
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
const EDIT_KINDS: usize = 9;

/// The step kinds, for choosing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
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
const KINDS: [(Kind, u64); 14] = [
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
const FIRST_KINDS: [(Kind, u64); 5] = [
    (Kind::Run, 50),
    (Kind::Concurrent, 15),
    (Kind::Kill, 15),
    (Kind::Rewrite, 10),
    (Kind::StatusThenKill, 10),
];

// ---------------------------------------------------------------------------------------------
// A sequence: its sandbox, its work directory and what the harness knows.
// ---------------------------------------------------------------------------------------------

/// The results CSV a finished `run` or `reconcile` wrote, with the sandbox as it was then.
struct WrittenResults {
    file: String,
    sandbox_then: Stats,
    /// Written by `reconcile --refresh`, which promises to have read every changeable status.
    refreshed: bool,
}

/// What the commands of one step did.
#[derive(Default)]
struct Outcome {
    /// Each finished command's exit code (`None`: killed by a signal).
    exits: Vec<Option<i32>>,
    /// What they said on stderr, for the failure message.
    said: String,
}

struct Sequence {
    random: Seeded,
    log: Arc<Mutex<Vec<String>>>,
    workdir: Workdir,
    sandbox: TestSandbox,
    rows: Vec<Row>,
    /// Every ledger of the sequence (file names in the work directory); the last is current.
    ledgers: Vec<String>,
    /// The input files the harness wrote, with what it wrote.
    inputs: BTreeMap<String, Vec<u8>>,
    clock_days: i64,
    max_retries: u32,
    /// The optional step kinds this sequence uses.
    enabled: Vec<Kind>,
    /// The kinds of edit it uses (by their place in [`Sequence::edit`]'s table).
    edits_enabled: [bool; EDIT_KINDS],
    /// Whether its runs may point `--results` at the ledger or the input.
    results_elsewhere: bool,
    steps: usize,
    last_results: Option<WrittenResults>,
}

impl Sequence {
    fn new(seed: u64, log: Arc<Mutex<Vec<String>>>) -> Sequence {
        let mut random = Seeded::new(seed);
        let orders = random.between(2, 4) as usize;
        let terminals = random.between(1, 2) as usize;
        let rows = (0..orders)
            .map(|index| Row {
                terminal: TERMINALS[index % terminals],
                order_id: format!("Rf-{}{}", index + 1, ["a", "b", "c", "d"][index]),
                amount: amount(&mut random),
                description: "refund".to_owned(),
                payee: random_payee(&mut random),
            })
            .collect();
        let config = SandboxConfig {
            rate_500_after_create: random.pick(&[0.0, 0.0, 0.25, 0.5, 1.0]),
            rate_drop_after_create: random.pick(&[0.0, 0.0, 0.25]),
            rate_429: random.pick(&[0.0, 0.0, 0.2]),
            retry_after: Duration::from_millis(1),
            latency: Duration::from_millis(random.pick(&[0, 0, 0, 1, 3])),
            seed,
            ..SandboxConfig::default()
        };
        let max_retries = random.pick(&[0, 1, 3]);
        let enabled = KINDS
            .iter()
            .map(|(kind, _)| *kind)
            .filter(|kind| matches!(kind, Kind::Run | Kind::Edit) || random.chance(50))
            .collect();
        // The description edit is always on: some edit must be possible.
        let edits_enabled = std::array::from_fn(|index| index == 0 || random.chance(50));
        let results_elsewhere = random.chance(30);
        let steps = random.between(3, 8) as usize;
        let sequence = Sequence {
            random,
            log,
            workdir: Workdir::new(),
            sandbox: TestSandbox::start(config.clone()),
            rows,
            ledgers: vec!["ledger-1.sqlite".to_owned()],
            inputs: BTreeMap::new(),
            clock_days: 0,
            max_retries,
            enabled,
            edits_enabled,
            results_elsewhere,
            steps,
            last_results: None,
        };
        sequence.note(format!(
            "(setup) sandbox: 500 after create {}, drop after create {}, 429 {}, latency {:?}; \
             --max-retries {max_retries}; file:\n       {}",
            config.rate_500_after_create,
            config.rate_drop_after_create,
            config.rate_429,
            config.latency,
            file_text(&sequence.rows).trim_end().replace('\n', "\n       ")
        ));
        sequence
    }

    fn note(&self, line: String) {
        self.log.lock().expect("log").push(line);
    }

    /// Appends what happened to the last step's line (exit codes, where a kill landed).
    fn note_outcome(&self, text: &str) {
        if let Some(last) = self.log.lock().expect("log").last_mut() {
            last.push_str(&format!(" → {text}"));
        }
    }

    fn walk(mut self) -> Result<(), String> {
        self.write_input();
        for number in 0..self.steps {
            let step = self.choose(number == 0);
            self.note(step.to_string());
            let posts_before = self.sandbox.stats().refund_posts;
            let outcome = self.take(&step);
            if !outcome.exits.is_empty() {
                let exits: Vec<String> = outcome
                    .exits
                    .iter()
                    .map(|code| code.map_or("killed".to_owned(), |code| format!("exit {code}")))
                    .collect();
                self.note_outcome(&exits.join(", "));
            }
            self.check(&outcome, posts_before)?;
        }
        Ok(())
    }

    // -- Choosing ---------------------------------------------------------------------------

    fn choose(&mut self, first: bool) -> Step {
        let table: Vec<(Kind, u64)> = if first {
            FIRST_KINDS
                .iter()
                .filter(|(kind, _)| *kind == Kind::Run || self.enabled.contains(kind))
                .copied()
                .collect()
        } else {
            let after_edit = self
                .log
                .lock()
                .expect("log")
                .last()
                .is_some_and(|line| line.starts_with("edit"));
            KINDS
                .iter()
                .filter(|(kind, _)| self.enabled.contains(kind))
                .map(|(kind, weight)| match kind {
                    Kind::Run if after_edit => (*kind, weight * 3),
                    _ => (*kind, *weight),
                })
                .collect()
        };
        let weights: Vec<u64> = table.iter().map(|(_, weight)| *weight).collect();
        let kind = table[self.random.weighted(&weights)].0;
        self.step_of(kind)
    }

    fn step_of(&mut self, kind: Kind) -> Step {
        match kind {
            Kind::Run => Step::Run(self.run_options()),
            Kind::Reconcile => Step::Reconcile {
                refresh: self.random.chance(40),
            },
            Kind::ConfirmNotCreated => {
                let rows = if self.random.chance(50) {
                    "all".to_owned()
                } else {
                    (self.random.index(self.rows.len()) + 2).to_string()
                };
                Step::ConfirmNotCreated { rows }
            }
            Kind::Status => Step::Status,
            Kind::Edit => Step::Edit(self.edit(false)),
            Kind::NewLedger => Step::NewLedger {
                sample_first: self.random.chance(50),
            },
            Kind::CopyLedger => Step::CopyLedger,
            Kind::Concurrent => Step::Concurrent {
                other_namespace: self.random.chance(50),
            },
            Kind::Age => Step::Age {
                days: self.random.pick(&[1, 3, 6, 8, 10]),
            },
            Kind::Settle => Step::Settle,
            Kind::Clock => Step::Clock {
                days: self.random.pick(&[-10, -1, 0, 1, 10]),
            },
            Kind::Rewrite => {
                let edit = self.edit(true);
                let moment = self.moment();
                Step::RewriteDuringRun { edit, moment }
            }
            Kind::Kill => Step::KillDuringRun { moment: self.moment() },
            Kind::StatusThenKill => Step::StatusThenKill { moment: self.moment() },
        }
    }

    fn run_options(&mut self) -> RunOptions {
        let declining = self.rows.iter().any(|row| row.payee.declines());
        let elsewhere = if self.results_elsewhere { 5 } else { 0 };
        RunOptions {
            retry_failed: self.random.chance(if declining { 50 } else { 20 }),
            other_namespace: self.random.chance(25),
            results: match self.random.weighted(&[90, elsewhere, elsewhere]) {
                0 => ResultsAt::Default,
                1 => ResultsAt::Ledger,
                _ => ResultsAt::Input,
            },
        }
    }

    fn moment(&mut self) -> Moment {
        match self.random.weighted(&[40, 40, 20]) {
            0 => Moment::Millis(self.random.between(0, 15)),
            1 => Moment::Posts(self.random.between(1, self.rows.len() as u64)),
            _ => Moment::FileChecked,
        }
    }

    /// An edit of one row: a row whose payee the sandbox declines more often than not, since
    /// that is the row a person touches.
    fn edit(&mut self, during_a_run: bool) -> Edit {
        let declining: Vec<usize> = (0..self.rows.len())
            .filter(|index| self.rows[*index].payee.declines())
            .collect();
        let row = if !declining.is_empty() && self.random.chance(60) {
            self.random.pick(&declining)
        } else {
            self.random.index(self.rows.len())
        };
        let on_card = matches!(self.rows[row].payee, Payee::Card(_));
        let fixing = self.rows[row].payee.declines();
        let swarmed = [
            8,                                                     // description
            8,                                                     // amount
            if on_card { if fixing { 30 } else { 8 } } else { 0 }, // another card
            if fixing { 20 } else { 12 },                          // method switched
            10,                                                    // letter case
            6,                                                     // zero-width space
            6,                                                     // Unicode hyphen
            5,                                                     // card number as order id
            5,                                                     // card number in the description
        ];
        let mut weights: Vec<u64> = swarmed
            .iter()
            .zip(self.edits_enabled)
            .map(|(weight, enabled)| if enabled { *weight } else { 0 })
            .collect();
        // A repeat by the other method: only while a run goes (a file with one is invalid).
        weights.push(if during_a_run { 20 } else { 0 });
        match self.random.weighted(&weights) {
            0 => Edit::Description {
                row,
                text: format!("edited {}", self.random.between(1, 999)),
            },
            1 => Edit::Amount {
                row,
                amount: amount(&mut self.random),
            },
            2 => Edit::SwapCard {
                row,
                card: self.random.pick(&APPROVING_CARDS),
            },
            3 => Edit::SwitchMethod {
                row,
                to: self.other_method(row),
            },
            4 => Edit::OrderIdCase { row },
            5 => Edit::ZeroWidthSpace { row },
            6 => Edit::UnicodeHyphen { row },
            7 => Edit::CardInOrderId {
                row,
                spelled: self.random.pick(&SPELLED_CARDS),
            },
            8 => Edit::CardInDescription {
                row,
                spelled: self.random.pick(&SPELLED_CARDS),
            },
            _ => Edit::RepeatByOtherMethod {
                row,
                payee: self.other_method(row),
            },
        }
    }

    /// A payee by the other method than `row`'s, approved more often than not.
    fn other_method(&mut self, row: usize) -> Payee {
        let approving = self.random.chance(80);
        match self.rows[row].payee {
            Payee::Card(_) if approving => Payee::Bank(self.random.pick(&APPROVING_ACCOUNTS)),
            Payee::Card(_) => Payee::Bank(self.random.pick(&DECLINING_ACCOUNTS)),
            Payee::Bank(_) if approving => Payee::Card(self.random.pick(&APPROVING_CARDS)),
            Payee::Bank(_) => Payee::Card(self.random.pick(&DECLINING_CARDS)),
        }
    }

    // -- Taking a step -----------------------------------------------------------------------

    fn take(&mut self, step: &Step) -> Outcome {
        match step {
            Step::Run(options) => self.run(*options),
            Step::Reconcile { refresh } => self.reconcile(*refresh),
            Step::ConfirmNotCreated { rows } => self.confirm_not_created(rows),
            Step::Status => self.status(),
            Step::Edit(edit) => {
                edit.apply(&mut self.rows);
                self.write_input();
                Outcome::default()
            }
            Step::NewLedger { sample_first } => self.new_ledger(*sample_first),
            Step::CopyLedger => {
                self.copy_ledger();
                Outcome::default()
            }
            Step::Concurrent { other_namespace } => self.concurrent(*other_namespace),
            Step::Age { days } => {
                self.age(*days);
                Outcome::default()
            }
            Step::Settle => {
                let sandbox = self.sandbox.sandbox();
                sandbox.settle();
                // ACH returns come after settlement: one completed transfer comes back.
                if let Some(refund) = self
                    .sandbox
                    .stats()
                    .refunds
                    .into_iter()
                    .find(|refund| refund.method == "bank" && refund.status == "complete")
                {
                    sandbox.return_transfer(&refund.refund_id);
                }
                Outcome::default()
            }
            Step::Clock { days } => {
                self.clock_days = *days;
                Outcome::default()
            }
            Step::RewriteDuringRun { edit, moment } => self.rewrite_during_run(edit, *moment),
            Step::KillDuringRun { moment } => self.kill_during_run(*moment),
            Step::StatusThenKill { moment } => self.status_then_kill(*moment),
        }
    }

    fn current_ledger(&self) -> String {
        self.ledgers.last().expect("a ledger").clone()
    }

    /// The binary on `ledger`, pointed at this sequence's sandbox (as `uat`, so the lookups before
    /// a first send run), with fast retries and the tool's clock offset.
    fn tool(&self, ledger: &str) -> Command {
        let mut command = self.workdir.std_command();
        command
            .env("REFUND_BATCH_LEDGER", self.workdir.path(ledger))
            .env("REFUND_BATCH_MAX_RETRIES", self.max_retries.to_string())
            .env("REFUND_BATCH_MAX_RETRY_DELAY_MS", "5")
            .env(
                "REFUND_BATCH_CLOCK_OFFSET_SECONDS",
                (self.clock_days * 86_400).to_string(),
            )
            .args(self.sandbox.arguments())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    fn run_command(&self, ledger: &str, options: RunOptions) -> Command {
        let mut command = self.tool(ledger);
        command.args(["run", INPUT]);
        if options.retry_failed {
            command.arg("--retry-failed");
        }
        if options.other_namespace {
            command.args(["--key-namespace", "other"]);
        }
        match options.results {
            ResultsAt::Default => {}
            ResultsAt::Ledger => {
                command.arg("--results").arg(self.workdir.path(ledger));
            }
            ResultsAt::Input => {
                command.args(["--results", INPUT]);
            }
        }
        command
    }

    fn run(&mut self, options: RunOptions) -> Outcome {
        let ledger = self.current_ledger();
        let outcome = finish(Watched::spawn(self.run_command(&ledger, options)));
        let results = match options.results {
            ResultsAt::Default => "day.results.csv".to_owned(),
            ResultsAt::Ledger => ledger,
            ResultsAt::Input => INPUT.to_owned(),
        };
        self.results_written(&outcome, results, false);
        outcome
    }

    fn reconcile(&mut self, refresh: bool) -> Outcome {
        let mut command = self.tool(&self.current_ledger());
        command.args(["reconcile", INPUT]);
        if refresh {
            command.arg("--refresh");
        }
        let outcome = finish(Watched::spawn(command));
        self.results_written(&outcome, "day.results.csv".to_owned(), refresh);
        outcome
    }

    fn confirm_not_created(&mut self, rows: &str) -> Outcome {
        let mut command = self.tool(&self.current_ledger());
        command.args(["reconcile", INPUT, "--confirm-not-created", rows]);
        let outcome = finish(Watched::spawn(command));
        self.results_written(&outcome, "day.results.csv".to_owned(), false);
        outcome
    }

    fn status(&mut self) -> Outcome {
        let mut command = self.tool(&self.current_ledger());
        command.args(["status", INPUT]);
        finish(Watched::spawn(command))
    }

    /// Remembers the results CSV a finished command wrote, with the sandbox as it is now. An
    /// exit 2 (nothing done: an invalid file, a ledger in use) may leave an older one in place,
    /// which still matches the sandbox of its own time.
    fn results_written(&mut self, outcome: &Outcome, file: String, refreshed: bool) {
        let finished = matches!(outcome.exits.as_slice(), [Some(0 | 1 | 3 | 4)]);
        if finished && self.workdir.path(&file).is_file() {
            self.last_results = Some(WrittenResults {
                file,
                sandbox_then: self.sandbox.stats(),
                refreshed,
            });
        }
    }

    /// The default results CSV as it is now (empty when there is none).
    fn default_results(&self) -> Vec<u8> {
        std::fs::read(self.workdir.path("day.results.csv")).unwrap_or_default()
    }

    /// A run that was to be killed may have ended by itself, or been killed just after it wrote
    /// its results: when the results CSV changed, it is the one to compare from now on.
    fn results_rewritten(&mut self, before: &[u8]) {
        if self.default_results() != before {
            self.last_results = Some(WrittenResults {
                file: "day.results.csv".to_owned(),
                sandbox_then: self.sandbox.stats(),
                refreshed: false,
            });
        }
    }

    fn new_ledger(&mut self, sample_first: bool) -> Outcome {
        let ledger = format!("ledger-{}.sqlite", self.ledgers.len() + 1);
        self.ledgers.push(ledger.clone());
        if !sample_first {
            return Outcome::default();
        }
        let text = sample("card.csv");
        self.workdir.write(SAMPLE, &text);
        self.inputs.insert(SAMPLE.to_owned(), text.into_bytes());
        let mut command = self.workdir.std_command();
        command
            .env("REFUND_BATCH_LEDGER", self.workdir.path(&ledger))
            .env(
                "REFUND_BATCH_CLOCK_OFFSET_SECONDS",
                (self.clock_days * 86_400).to_string(),
            )
            .args(["--env", "sandbox", "run", SAMPLE])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        finish(Watched::spawn(command))
    }

    fn copy_ledger(&mut self) {
        let from = self.current_ledger();
        let to = format!("ledger-{}.sqlite", self.ledgers.len() + 1);
        for suffix in ["", "-wal"] {
            let source = self.workdir.path(&format!("{from}{suffix}"));
            if source.exists() {
                std::fs::copy(&source, self.workdir.path(&format!("{to}{suffix}"))).expect("copy the ledger");
            }
        }
        self.ledgers.push(to);
    }

    fn concurrent(&mut self, other_namespace: bool) -> Outcome {
        let first_ledger = self.current_ledger();
        let second_ledger = format!("ledger-{}.sqlite", self.ledgers.len() + 1);
        self.ledgers.push(second_ledger.clone());
        let plain = RunOptions {
            retry_failed: false,
            other_namespace: false,
            results: ResultsAt::Default,
        };
        let first = Watched::spawn(self.run_command(&first_ledger, plain));
        let second = Watched::spawn(self.run_command(
            &second_ledger,
            RunOptions {
                other_namespace,
                ..plain
            },
        ));
        let mut outcome = finish(first);
        let other = finish(second);
        outcome.exits.extend(other.exits);
        outcome.said.push_str(&other.said);
        // Both wrote the same results file; which one is there is a matter of timing.
        self.last_results = None;
        outcome
    }

    fn age(&mut self, days: u32) {
        self.sandbox.sandbox().age(days);
        for ledger in &self.ledgers {
            let path = self.workdir.path(ledger);
            // A ledger a kill left without tables has nothing to age.
            if has_tables(&path) {
                age_ledger(&path, days);
            }
        }
    }

    fn rewrite_during_run(&mut self, edit: &Edit, moment: Moment) -> Outcome {
        let plain = RunOptions {
            retry_failed: false,
            other_namespace: false,
            results: ResultsAt::Default,
        };
        let mut run = Watched::spawn(self.run_command(&self.current_ledger(), plain));
        let landed = self.wait_for_moment(&mut run, moment);
        edit.apply(&mut self.rows);
        self.write_input();
        let outcome = finish(run);
        self.note_outcome(if landed {
            "rewritten while it ran"
        } else {
            "it ended first, rewritten after"
        });
        self.results_written(&outcome, "day.results.csv".to_owned(), false);
        outcome
    }

    fn kill_during_run(&mut self, moment: Moment) -> Outcome {
        let plain = RunOptions {
            retry_failed: false,
            other_namespace: false,
            results: ResultsAt::Default,
        };
        let mut run = Watched::spawn(self.run_command(&self.current_ledger(), plain));
        let results_before = self.default_results();
        if self.wait_for_moment(&mut run, moment) {
            // SIGKILL; an error only means it has just ended by itself.
            let _ = run.child.kill();
        }
        let outcome = finish(run);
        self.results_rewritten(&results_before);
        outcome
    }

    fn status_then_kill(&mut self, moment: Moment) -> Outcome {
        let ledger = format!("ledger-{}.sqlite", self.ledgers.len() + 1);
        self.ledgers.push(ledger.clone());
        let plain = RunOptions {
            retry_failed: false,
            other_namespace: false,
            results: ResultsAt::Default,
        };
        let results_before = self.default_results();
        let mut run = Watched::spawn(self.run_command(&ledger, plain));
        // Held still with SIGSTOP, so that `status` surely reads while the run is going.
        let going = self.wait_for_moment(&mut run, moment);
        if going {
            signal(run.child.id(), "STOP");
        }
        let mut status = self.tool(&ledger);
        status.args(["status", INPUT]);
        let status = finish(Watched::spawn(status));
        if going {
            let _ = run.child.kill();
        }
        let mut outcome = finish(run);
        self.results_rewritten(&results_before);
        self.note_outcome(if going {
            "status read while it was stopped, then it was killed"
        } else {
            "it ended first"
        });
        outcome.exits.extend(status.exits);
        outcome.said.push_str(&status.said);
        outcome
    }

    /// Waits until `moment` of `run`: true if it came while the run was going, false if the run
    /// ended first.
    fn wait_for_moment(&self, run: &mut Watched, moment: Moment) -> bool {
        let posts = self.sandbox.stats().refund_posts;
        let started = Instant::now();
        let said = Arc::clone(&run.said);
        let what = format!("the moment {moment}");
        let ended = wait_while_running(&mut run.child, &what, || match moment {
            Moment::Millis(milliseconds) => started.elapsed() >= Duration::from_millis(milliseconds),
            Moment::Posts(count) => self.sandbox.stats().refund_posts >= posts + count,
            Moment::FileChecked => said.lock().expect("stderr").contains("rows valid"),
        });
        ended.is_none()
    }

    fn write_input(&mut self) {
        let text = file_text(&self.rows);
        // In place, as an editor or an upload would: truncated, then written.
        self.workdir.write(INPUT, &text);
        self.inputs.insert(INPUT.to_owned(), text.into_bytes());
    }

    // -- The invariants ----------------------------------------------------------------------

    /// Every invariant, after a step whose processes have all ended.
    fn check(&self, outcome: &Outcome, posts_before: u64) -> Result<(), String> {
        let stats = self.sandbox.stats();
        let evidence = |broken: String| {
            let said = outcome.said.trim_end();
            if said.is_empty() {
                broken
            } else {
                format!("{broken}\nwhat the step's commands said:\n{said}")
            }
        };
        at_most_one_live_refund_per_order(&stats).map_err(evidence)?;
        nothing_is_sent_by_a_command_that_exits_2(outcome, posts_before, stats.refund_posts).map_err(evidence)?;
        every_refund_is_known_to_a_ledger(&self.workdir, &self.ledgers, &stats).map_err(evidence)?;
        if let Some(results) = &self.last_results {
            results_agree_with_payroc(&self.workdir, results).map_err(evidence)?;
        }
        no_card_number_on_disk(&self.workdir, &self.inputs).map_err(evidence)?;
        inputs_are_untouched(&self.workdir, &self.inputs).map_err(evidence)
    }
}

/// The order a refund belongs to, as a person reads it: look-alike spellings of one order id
/// (letter case, zero-width and other format characters, Unicode dashes) are one order.
fn order_key(terminal: &str, order_id: &str) -> (String, String) {
    let normalised: String = order_id
        .chars()
        .filter(|character| !is_format_character(*character))
        .map(|character| if is_dash(character) { '-' } else { character })
        .flat_map(char::to_lowercase)
        .collect();
    (terminal.to_owned(), normalised)
}

/// Zero-width and other invisible format characters (Unicode category Cf, the ones that occur).
fn is_format_character(character: char) -> bool {
    matches!(
        character,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Hyphens, dashes and minus signs that look like `-`.
fn is_dash(character: char) -> bool {
    matches!(
        character,
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
    )
}

/// A refund that counts: not declined or returned by status, and not declined by its code.
fn is_live(refund: &RefundRecord) -> bool {
    !matches!(refund.status.as_str(), "declined" | "returned")
        && !matches!(refund.response_code.as_str(), "D" | "R" | "C")
}

/// Invariant 1: at most one refund per order that is not a definite failure, whatever the method
/// and however the order id is spelled.
fn at_most_one_live_refund_per_order(stats: &Stats) -> Result<(), String> {
    let mut per_order: BTreeMap<(String, String), Vec<&RefundRecord>> = BTreeMap::new();
    for refund in stats.refunds.iter().filter(|refund| is_live(refund)) {
        per_order
            .entry(order_key(&refund.processing_terminal_id, &refund.order_id))
            .or_default()
            .push(refund);
    }
    for ((terminal, order), refunds) in per_order {
        if refunds.len() > 1 {
            return Err(format!(
                "a second refund: terminal {terminal}, order {order:?} has {} refunds that are not definite \
                 failures:\n{}",
                refunds.len(),
                describe(&refunds)
            ));
        }
    }
    Ok(())
}

fn describe(refunds: &[&RefundRecord]) -> String {
    refunds
        .iter()
        .map(|refund| {
            format!(
                "  {} {} terminal {} order {:?} {} minor {} code {:?} status {} key {} created {}",
                refund.refund_id,
                refund.method,
                refund.processing_terminal_id,
                refund.order_id,
                refund.amount,
                refund.currency,
                refund.response_code,
                refund.status,
                refund.idempotency_key,
                refund.created_at
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Invariant 3, first part: exit 2 means nothing was sent.
fn nothing_is_sent_by_a_command_that_exits_2(outcome: &Outcome, before: u64, after: u64) -> Result<(), String> {
    let all_exit_2 = !outcome.exits.is_empty() && outcome.exits.iter().all(|code| *code == Some(2));
    if all_exit_2 && after > before {
        return Err(format!(
            "exit 2 says nothing was sent, but the sandbox received {} refund POSTs during the step",
            after - before
        ));
    }
    Ok(())
}

/// Invariant 2: every refund Payroc holds is known to some ledger of the sequence as sent or
/// maybe sent — its key is in that ledger, and its row is not a `pending` one that was never sent.
/// Checked when no process runs, so a ledger that cannot be read is itself a finding.
fn every_refund_is_known_to_a_ledger(workdir: &Workdir, ledgers: &[String], stats: &Stats) -> Result<(), String> {
    let mut known = BTreeSet::new();
    for ledger in ledgers {
        let path = workdir.path(ledger);
        if !path.exists() {
            continue;
        }
        known.extend(sent_keys(&path).map_err(|error| format!("ledger {ledger} cannot be read: {error}"))?);
    }
    let unknown: Vec<&RefundRecord> = stats
        .refunds
        .iter()
        .filter(|refund| !known.contains(&refund.idempotency_key))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Payroc holds refunds whose keys no ledger ({}) records as sent or maybe sent:\n{}",
            ledgers.join(", "),
            describe(&unknown)
        ))
    }
}

/// The ledger at `path` opened from a scratch copy of its file and WAL (with the directory that
/// holds the copy, removed when dropped): a command killed mid-write leaves a WAL that only a
/// writable connection may recover, and the tool's own files must stay as it left them.
fn open_copy(path: &Path) -> rusqlite::Result<(tempfile::TempDir, rusqlite::Connection)> {
    let scratch = tempfile::tempdir().map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    let copy = scratch.path().join("ledger.sqlite");
    for suffix in ["", "-wal"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = copy.as_os_str().to_owned();
        to.push(suffix);
        if Path::new(&from).exists() {
            std::fs::copy(&from, &to).map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        }
    }
    let connection = rusqlite::Connection::open(&copy)?;
    Ok((scratch, connection))
}

/// Whether the file at `path` is a ledger with its tables made.
fn has_tables(path: &Path) -> bool {
    let Ok((_scratch, connection)) = open_copy(path) else {
        return false;
    };
    connection
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('keys', 'refunds')",
            [],
            |row| row.get::<_, i64>(0),
        )
        .is_ok_and(|tables| tables == 2)
}

/// The keys the ledger at `path` records as sent or maybe sent, read from a copy (see
/// [`open_copy`]).
fn sent_keys(path: &Path) -> rusqlite::Result<Vec<String>> {
    let (_scratch, connection) = open_copy(path)?;
    // A command killed while it made the ledger can leave it without tables: it knows nothing.
    // A file that is not a database at all fails here.
    let tables: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('keys', 'refunds')",
        [],
        |row| row.get(0),
    )?;
    if tables < 2 {
        return Ok(Vec::new());
    }
    let mut statement = connection.prepare(
        "SELECT keys.idempotency_key FROM keys JOIN refunds ON refunds.id = keys.refund_id \
         WHERE keys.generation < refunds.generation OR refunds.state != 'pending' OR refunds.may_have_reached = 1",
    )?;
    statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()
}

/// Invariant 3: the results CSV of the last finished `run` or `reconcile` agrees, row by row,
/// with the sandbox as it was when it was written. `succeeded` is what the README says it is: a
/// card refund answered `A`, or a bank transfer submitted (answered `A` or without a code), and
/// in either case not `declined`. A return or reversal after a refund succeeded
/// only shows in the results of `reconcile --refresh`, the command that reads it.
fn results_agree_with_payroc(workdir: &Workdir, written: &WrittenResults) -> Result<(), String> {
    let path = workdir.path(&written.file);
    let lines = std::panic::catch_unwind(|| read_results(&path))
        .map_err(|_| format!("{} is not a results CSV any more", written.file))?;
    let held: BTreeMap<&str, &RefundRecord> = written
        .sandbox_then
        .refunds
        .iter()
        .map(|refund| (refund.refund_id.as_str(), refund))
        .collect();
    for line in &lines {
        let field = |name: &str| line.get(name).map_or("", String::as_str);
        let row = field("row");
        let status = field("status");
        let refund_id = field("refund_id");
        if refund_id.is_empty() {
            if status == "succeeded" {
                return Err(format!(
                    "{}: row {row} is succeeded without a refund id: {line:?}",
                    written.file
                ));
            }
            continue;
        }
        let Some(refund) = held.get(refund_id) else {
            return Err(format!(
                "{}: row {row} claims refund {refund_id}, which the sandbox does not hold: {line:?}",
                written.file
            ));
        };
        let order_id = field("order_id");
        if !order_id.contains("redacted")
            && order_key(field("processing_terminal_id"), order_id)
                != order_key(&refund.processing_terminal_id, &refund.order_id)
        {
            return Err(format!(
                "{}: row {row} (order {order_id:?}) claims refund {refund_id} of another order:\n{}\n{line:?}",
                written.file,
                describe(&[refund])
            ));
        }
        if status == "succeeded" {
            let gone_later = written.refreshed && matches!(refund.status.as_str(), "returned" | "reversal");
            // A bank transfer submitted to the ACH network may have no response code at all.
            let approved = refund.response_code == "A" || (refund.method == "bank" && refund.response_code.is_empty());
            if !approved || refund.status == "declined" || gone_later {
                return Err(format!(
                    "{}: row {row} is succeeded, but the sandbox holds its refund as:\n{}\n{line:?}",
                    written.file,
                    describe(&[refund])
                ));
            }
        }
    }
    Ok(())
}

/// Invariant 4: no card number in any file the tool wrote (or the harness copied from one): no
/// test card number of the sequence, even with its spaces, dashes, dots and slashes taken out,
/// and no other Luhn-valid run of 12–19 digits standing on its own.
fn no_card_number_on_disk(workdir: &Workdir, inputs: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let cards: Vec<&str> = APPROVING_CARDS
        .iter()
        .chain(&DECLINING_CARDS)
        .chain(&ODD_CARDS)
        .copied()
        .collect();
    for (path, bytes) in workdir.all_files() {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if inputs.contains_key(&name) {
            continue;
        }
        let squeezed: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|byte| !matches!(byte, b' ' | b'-' | b'.' | b'/'))
            .collect();
        for card in &cards {
            if contains(&squeezed, card.as_bytes()) {
                return Err(format!("card number {card} is on disk in {name}"));
            }
        }
        if let Some(found) = luhn_run(&bytes) {
            return Err(format!("a Luhn-valid card number {found} is on disk in {name}"));
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The first run of 12–19 digits, perhaps split by single spaces, dashes, dots or slashes, that
/// passes the Luhn check and is not part of a longer word (hex digests and keys are words).
fn luhn_run(bytes: &[u8]) -> Option<String> {
    let separator = |byte: u8| matches!(byte, b' ' | b'-' | b'.' | b'/');
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_alphanumeric()) {
            start += 1;
            continue;
        }
        let mut digits = String::new();
        let mut end = start;
        while end < bytes.len() {
            if bytes[end].is_ascii_digit() {
                digits.push(bytes[end] as char);
                end += 1;
            } else if separator(bytes[end]) && end + 1 < bytes.len() && bytes[end + 1].is_ascii_digit() {
                end += 1;
            } else {
                break;
            }
        }
        let stands_alone = end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if stands_alone && (12..=19).contains(&digits.len()) && luhn(&digits) {
            return Some(digits);
        }
        start = end.max(start + 1);
    }
    None
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Invariant 5: the tool never writes over an input file (here, with its results).
fn inputs_are_untouched(workdir: &Workdir, inputs: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    for (name, written) in inputs {
        let now = std::fs::read(workdir.path(name)).unwrap_or_default();
        if &now != written {
            return Err(format!(
                "the input {name} was changed by the tool; it now begins:\n{}",
                String::from_utf8_lossy(&now[..now.len().min(300)])
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes.
// ---------------------------------------------------------------------------------------------

/// A running command whose stderr is collected as it comes, so a step can wait for a line and a
/// failure can show what it said.
struct Watched {
    child: Child,
    said: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn spawn(mut command: Command) -> Watched {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("start refund-batch");
        let said = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let collected = Arc::clone(&said);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut said = collected.lock().expect("stderr");
                said.push_str(&line);
                said.push('\n');
            }
        });
        Watched { child, said, reader }
    }
}

/// Waits for the command to end (failing after [`crate::util::PATIENCE`]) and gives its exit code and what it
/// said.
fn finish(mut watched: Watched) -> Outcome {
    let status: ExitStatus =
        wait_while_running(&mut watched.child, "refund-batch to end", || false).expect("the condition never holds");
    // The pipe closes when the process ends (it starts no other): the reader has it all.
    watched.reader.join().expect("stderr reader");
    let said = watched.said.lock().expect("stderr").clone();
    Outcome {
        exits: vec![status.code()],
        said,
    }
}
