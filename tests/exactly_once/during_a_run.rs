//! The ways the promise was broken while a run was going, each reproduced with the real binary:
//! `status` while a run holds the ledger, the input file rewritten during a run, and `status`
//! during a new ledger's first run followed by `kill -9`. The run is held still with SIGSTOP
//! (`Paused`) at the moment that matters.

use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use super::HEADER;
use crate::util::{PATIENCE, TestSandbox, Workdir, read_results, signal, wait_until};

#[test]
fn status_reads_the_ledger_while_a_run_holds_it() {
    let workdir = Workdir::new();
    let mut text = HEADER.to_owned();
    for index in 0..40 {
        text.push_str(&format!(
            "card,1234001,ST-{index},1.00,USD,refund,4111111111111111,0929,,,\n"
        ));
    }
    workdir.write("day.csv", &text);
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: std::time::Duration::from_millis(50),
        ..SandboxConfig::default()
    });
    let mut run = workdir
        .std_command()
        .args(sandbox.arguments())
        .args(["run", "day.csv", "--rate", "20", "--concurrency", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the run");
    // Wait until the run is sending (it holds the ledger's lock from the start), then hold it
    // there, mid-batch with its lock and its ledger open, while the checks run: they cannot race
    // its end. A failed check lets it go on before it fails the test.
    wait_until("the run's second refund POST", || sandbox.stats().refund_posts >= 2);
    let paused = Paused::stop(run.id());
    let status = workdir
        .command()
        .args(["--env", "uat", "status", "day.csv", "--format", "json"])
        .timeout(PATIENCE)
        .output()
        .expect("status");
    let finished_already = run.try_wait().expect("poll").is_some();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert!(report["file"]["rows_by_status"].is_object(), "{report}");
    assert_eq!(report["batches"][0]["state"], "running", "{report}");
    assert!(!finished_already, "status ran while the run was still going");
    // A second writer is still refused.
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .timeout(PATIENCE)
        .assert()
        .code(75)
        .stderr(predicate::str::contains("in use by another refund-batch command"));
    drop(paused);
    assert_eq!(run.wait().expect("run ends").code(), Some(0));
}

/// A process stopped with SIGSTOP until this is dropped (SIGCONT), also when a check fails.
struct Paused(u32);

impl Paused {
    fn stop(pid: u32) -> Paused {
        signal(pid, "STOP");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // No assertion here: this also runs while a failed check unwinds.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// `rows` card rows `IR-0…` on terminal 1234001 with `amount`.
fn many_rows(prefix: &str, rows: usize, amount: &str) -> String {
    let mut text = HEADER.to_owned();
    for index in 0..rows {
        text.push_str(&format!(
            "card,1234001,{prefix}-{index},{amount},USD,refund,4111111111111111,0929,,,\n"
        ));
    }
    text
}

/// Starts `run day.csv` with `arguments` and pauses it once `posts` refund POSTs reached the
/// sandbox.
fn run_paused_after(
    workdir: &Workdir,
    sandbox: &TestSandbox,
    arguments: &[&str],
    posts: u64,
) -> (std::process::Child, Paused) {
    let run = workdir
        .std_command()
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .args(arguments)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the run");
    wait_until("the run's refund POSTs", || sandbox.stats().refund_posts >= posts);
    let paused = Paused::stop(run.id());
    (run, paused)
}

#[test]
fn an_input_file_rewritten_during_a_run_sends_no_unvalidated_row_and_loses_no_sent_one() {
    // More rows than the dispatcher reads ahead of its sends, so the rewrite meets rows it has
    // not read yet.
    const ROWS: usize = 600;
    let workdir = Workdir::new();
    workdir.write("day.csv", &many_rows("IR", ROWS, "1.00"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let (run, paused) = run_paused_after(&workdir, &sandbox, &["--rate", "300", "--precheck", "never"], 4);
    // Rewritten in place, as an export job would: other orders, other amounts, fewer rows.
    std::fs::write(workdir.path("day.csv"), many_rows("NEW", 30, "7.00")).expect("rewrite the input");
    drop(paused);
    let output = run.wait_with_output().expect("the run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("changed after the file was validated"), "{stderr}");
    let stats = sandbox.stats();
    assert!(
        stats
            .refunds
            .iter()
            .all(|refund| refund.order_id.starts_with("IR-") && refund.amount == 100),
        "only validated rows were sent: {:?}",
        stats.refunds
    );
    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(results.len(), ROWS, "one line per validated row");
    for refund in &stats.refunds {
        let line = results
            .iter()
            .find(|line| line["refund_id"] == refund.refund_id)
            .unwrap_or_else(|| panic!("refund {} of {} is in the results", refund.refund_id, refund.order_id));
        assert_eq!(line["order_id"], refund.order_id);
        assert_eq!(line["status"], "succeeded");
    }
    assert!(
        !results.iter().any(|line| line["order_id"].starts_with("NEW-")),
        "no row that was never validated is in the results"
    );
    let pending = results.iter().filter(|line| line["status"] == "pending").count();
    assert!(stats.refunds.len() < ROWS, "the run stopped reading at the change");
    assert_eq!(pending + stats.refunds.len(), ROWS, "the rest were not sent");
}

#[test]
fn status_during_a_new_ledgers_first_run_then_kill_9_loses_no_record_of_a_send() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &many_rows("KL", 40, "1.00"));
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: std::time::Duration::from_millis(50),
        ..SandboxConfig::default()
    });
    let (mut run, paused) = run_paused_after(&workdir, &sandbox, &["--rate", "20", "--concurrency", "2"], 6);
    for _ in 0..2 {
        workdir
            .command()
            .args(["--env", "uat", "status", "day.csv"])
            .timeout(PATIENCE)
            .assert()
            .success();
    }
    // Let it go on for a few more sends, then kill it where it stands.
    drop(paused);
    wait_until("more refund POSTs", || sandbox.stats().refund_posts >= 12);
    run.kill().expect("kill -9");
    run.wait().expect("reaped");
    // Once nothing holds the ledger, the killed batch reads as interrupted, not as running.
    let status = workdir
        .command()
        .args(["--env", "uat", "status", "--format", "json"])
        .timeout(PATIENCE)
        .output()
        .expect("status");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(report["batches"][0]["state"], "interrupted", "{report}");
    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("the ledger opens");
    for refund in sandbox.stats().refunds {
        let state: String = connection
            .query_row(
                "SELECT r.state FROM keys k JOIN refunds r ON r.id = k.refund_id WHERE k.idempotency_key = ?1",
                [&refund.idempotency_key],
                |row| row.get(0),
            )
            .unwrap_or_else(|error| panic!("the ledger knows the refund of {}: {error}", refund.order_id));
        assert!(state != "pending", "{}: {state}", refund.order_id);
    }
}
