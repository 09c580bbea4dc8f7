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
//!
//! This module holds the test itself, the constants every part shares (the input, the cards and
//! accounts) and the report of a failure; the files beside it hold the parts of the walk.

// The harness's model of the input file and the edits a person makes to it.
mod file;
// The steps and their kinds, with the weights the walk chooses them by.
mod steps;
// A sequence: its sandbox, work directory and state, its walk, and how it chooses each step.
mod sequence;
// Taking a step: the commands each step runs.
mod taking;
// The invariants checked after every step.
mod invariants;
// The running commands, with their stderr collected.
mod processes;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sequence::Sequence;

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
