//! Taking a step: the commands each step runs on the sequence's ledgers, with the tool's clock
//! and the sandbox as the sequence has set them, and what the harness remembers of their results.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::file::{Edit, file_text};
use super::invariants::has_tables;
use super::processes::{Watched, finish};
use super::sequence::{Outcome, Sequence, WrittenResults};
use super::steps::{Moment, ResultsAt, RunOptions, Step};
use super::{INPUT, SAMPLE};
use crate::util::{age_ledger, sample, signal, wait_while_running};

impl Sequence {
    pub(super) fn take(&mut self, step: &Step) -> Outcome {
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

    pub(super) fn write_input(&mut self) {
        let text = file_text(&self.rows);
        // In place, as an editor or an upload would: truncated, then written.
        self.workdir.write(INPUT, &text);
        self.inputs.insert(INPUT.to_owned(), text.into_bytes());
    }
}
