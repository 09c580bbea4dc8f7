//! A sequence: its sandbox, its work directory and what the harness knows; its walk (a step, then
//! every invariant), and how it chooses each step from the seed. Taking the steps is in
//! `taking.rs`, checking the invariants in `invariants.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payroc_sandbox::{SandboxConfig, Stats};

use super::file::{Edit, Payee, Row, amount, file_text, random_payee};
use super::steps::{EDIT_KINDS, FIRST_KINDS, KINDS, Kind, Moment, ResultsAt, RunOptions, Step};
use super::{APPROVING_ACCOUNTS, APPROVING_CARDS, DECLINING_ACCOUNTS, DECLINING_CARDS, SPELLED_CARDS, TERMINALS};
use crate::support::Seeded;
use crate::util::{TestSandbox, Workdir};

/// The results CSV a finished `run` or `reconcile` wrote, with the sandbox as it was then.
pub(super) struct WrittenResults {
    pub(super) file: String,
    pub(super) sandbox_then: Stats,
    /// Written by `reconcile --refresh`, which promises to have read every changeable status.
    pub(super) refreshed: bool,
}

/// What the commands of one step did.
#[derive(Default)]
pub(super) struct Outcome {
    /// Each finished command's exit code (`None`: killed by a signal).
    pub(super) exits: Vec<Option<i32>>,
    /// What they said on stderr, for the failure message.
    pub(super) said: String,
}

pub(super) struct Sequence {
    random: Seeded,
    log: Arc<Mutex<Vec<String>>>,
    pub(super) workdir: Workdir,
    pub(super) sandbox: TestSandbox,
    pub(super) rows: Vec<Row>,
    /// Every ledger of the sequence (file names in the work directory); the last is current.
    pub(super) ledgers: Vec<String>,
    /// The input files the harness wrote, with what it wrote.
    pub(super) inputs: BTreeMap<String, Vec<u8>>,
    pub(super) clock_days: i64,
    pub(super) max_retries: u32,
    /// The optional step kinds this sequence uses.
    enabled: Vec<Kind>,
    /// The kinds of edit it uses (by their place in [`Sequence::edit`]'s table).
    edits_enabled: [bool; EDIT_KINDS],
    /// Whether its runs may point `--results` at the ledger or the input.
    results_elsewhere: bool,
    steps: usize,
    pub(super) last_results: Option<WrittenResults>,
}

impl Sequence {
    pub(super) fn new(seed: u64, log: Arc<Mutex<Vec<String>>>) -> Sequence {
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
    pub(super) fn note_outcome(&self, text: &str) {
        if let Some(last) = self.log.lock().expect("log").last_mut() {
            last.push_str(&format!(" → {text}"));
        }
    }

    pub(super) fn walk(mut self) -> Result<(), String> {
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
}

impl Sequence {
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
}
