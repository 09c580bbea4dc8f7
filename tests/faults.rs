//! Each fault alone: the run still refunds every row exactly once, or stops resumably and says why.

use std::time::Duration;

use payroc_sandbox::{SandboxConfig, Stats};
use predicates::prelude::*;

use crate::util::{Lines, TestSandbox, Workdir, read_results, signal};

const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";

/// `count` rows, alternating card and bank, every one approved by the sandbox.
fn rows(count: usize, terminal: &str) -> String {
    let mut text = HEADER.to_owned();
    for index in 0..count {
        if index % 2 == 0 {
            text.push_str(&format!(
                "card,{terminal},F{index:05},{}.{:02},USD,fault test,4111111111111111,0929,,,\n",
                1 + index,
                index % 100
            ));
        } else {
            text.push_str(&format!(
                "bank,{terminal},F{index:05},{}.{:02},USD,fault test,,,1234567890,011000015,Grace Hopper\n",
                1 + index,
                index % 100
            ));
        }
    }
    text
}

fn assert_each_order_created_once(stats: &Stats, count: usize) {
    assert_eq!(stats.refunds.len(), count, "one refund per row");
    assert_eq!(stats.created_per_order.len(), count);
    assert!(
        stats.created_per_order.values().all(|created| *created == 1),
        "{:?}",
        stats.created_per_order
    );
}

fn assert_results_match(workdir: &Workdir, stats: &Stats, count: usize) {
    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(results.len(), count);
    for line in &results {
        let refund = stats
            .refunds
            .iter()
            .find(|refund| refund.order_id == line["order_id"])
            .unwrap_or_else(|| panic!("no refund for {}", line["order_id"]));
        assert_eq!(line["refund_id"], refund.refund_id);
        assert_eq!(line["status"], "succeeded");
        assert_eq!(line["idempotency_key"], refund.idempotency_key);
    }
}

#[test]
fn an_expiring_token_is_refreshed_once_and_the_same_bytes_resent() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(40, "1234001"));
    // Tokens say they last an hour but die after 250 ms; the run takes about 800 ms at 50/s, so
    // it meets 401s mid-way. (Much shorter lifetimes can kill a token between its fetch and its
    // first use on a loaded machine, which is — correctly — an authentication failure.)
    let sandbox = TestSandbox::start(SandboxConfig {
        token_actual_lifetime: Some(Duration::from_millis(250)),
        ..SandboxConfig::default()
    });
    workdir
        .run(&sandbox, "day.csv", &["--rate", "50", "--concurrency", "4"])
        .code(0);
    let stats = sandbox.stats();
    assert!(
        stats.faults.token_expired_early > 0,
        "the run met a dead token: {:?}",
        stats.faults
    );
    assert!(stats.tokens_issued > 1, "it fetched a new one");
    assert_each_order_created_once(&stats, 40);
    assert_results_match(&workdir, &stats, 40);
}

#[test]
fn bad_credentials_stop_the_run_with_exit_4_and_nothing_sent() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(6, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        api_key: Some("the-right-key".into()),
        ..SandboxConfig::default()
    });
    workdir
        .run(&sandbox, "day.csv", &[])
        .code(4)
        .stderr(predicate::str::contains("authentication failed"));
    assert_eq!(sandbox.stats().refund_posts, 0);
    let results = read_results(&workdir.path("day.results.csv"));
    assert!(
        results.iter().all(|line| line["status"] == "pending"),
        "rows stay resumable"
    );
}

#[test]
fn a_429_storm_is_waited_out_with_retry_after() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(30, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_429: 0.5,
        rate_503: 0.2,
        retry_after: Duration::from_millis(5),
        seed: 7,
        ..SandboxConfig::default()
    });
    workdir
        .run(
            &sandbox,
            "day.csv",
            &["--rate", "1000", "--concurrency", "8", "--max-retries", "30"],
        )
        .code(0);
    let stats = sandbox.stats();
    assert!(stats.faults.too_many_requests > 5, "{:?}", stats.faults);
    assert_each_order_created_once(&stats, 30);
    assert_results_match(&workdir, &stats, 30);
}

#[test]
fn a_500_after_the_refund_was_made_is_retried_with_the_same_key_and_not_refunded_twice() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(30, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_500_after_create: 0.5,
        seed: 3,
        ..SandboxConfig::default()
    });
    workdir.run(&sandbox, "day.csv", &["--rate", "1000"]).code(0);
    let stats = sandbox.stats();
    assert!(stats.faults.error_500_after_create > 5, "{:?}", stats.faults);
    assert!(
        stats.requests_per_key.values().any(|requests| *requests > 1),
        "some keys were sent again"
    );
    assert_each_order_created_once(&stats, 30);
    assert_results_match(&workdir, &stats, 30);
    let results = read_results(&workdir.path("day.results.csv"));
    assert!(
        results.iter().any(|line| line["attempts"] != "1"),
        "the retries are counted"
    );
}

#[test]
fn a_connection_dropped_after_the_refund_was_made_is_retried_safely() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(30, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_drop_after_create: 0.5,
        seed: 5,
        ..SandboxConfig::default()
    });
    workdir.run(&sandbox, "day.csv", &["--rate", "1000"]).code(0);
    let stats = sandbox.stats();
    assert!(stats.faults.drop_after_create > 5, "{:?}", stats.faults);
    assert_each_order_created_once(&stats, 30);
    assert_results_match(&workdir, &stats, 30);
}

#[test]
fn rows_unknown_after_retries_run_out_are_settled_by_reconcile() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(6, "1234001"));
    // Every creating request answers 500 and there are no retries: every row ends unknown.
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_500_after_create: 1.0,
        ..SandboxConfig::default()
    });
    workdir
        .run(&sandbox, "day.csv", &["--max-retries", "0"])
        .code(3)
        .stderr(predicate::str::contains("6 rows not finished"));
    let results = read_results(&workdir.path("day.results.csv"));
    assert!(results.iter().all(|line| line["status"] == "unknown"), "{results:?}");
    let posts = sandbox.stats().refund_posts;

    workdir
        .reconcile(&sandbox, "day.csv", &[])
        .code(0)
        .stderr(predicate::str::contains("6 rows looked up, 6 settled"));
    let stats = sandbox.stats();
    assert_eq!(stats.refund_posts, posts, "reconcile only looks, it never sends");
    assert_each_order_created_once(&stats, 6);
    assert_results_match(&workdir, &stats, 6);
}

#[test]
fn a_row_reconcile_proves_never_created_is_sent_by_the_next_run() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(4, "1234001"));
    // A Payroc that answers 503 to everything: the rows may or may not have arrived.
    let down = TestSandbox::start(SandboxConfig {
        rate_503: 1.0,
        retry_after: Duration::from_millis(1),
        ..SandboxConfig::default()
    });
    workdir.run(&down, "day.csv", &["--max-retries", "1"]).code(3);
    assert!(
        read_results(&workdir.path("day.results.csv"))
            .iter()
            .all(|line| line["status"] == "unknown")
    );
    let keys: Vec<String> = read_results(&workdir.path("day.results.csv"))
        .iter()
        .map(|line| line["idempotency_key"].clone())
        .collect();
    drop(down);

    // Payroc is back and has no record of them: reconcile proves they were never created.
    let up = TestSandbox::start(SandboxConfig::default());
    workdir
        .reconcile(&up, "day.csv", &[])
        .code(3)
        .stderr(predicate::str::contains("4 never created"));
    assert!(
        read_results(&workdir.path("day.results.csv"))
            .iter()
            .all(|line| line["status"] == "pending")
    );
    workdir.run(&up, "day.csv", &[]).code(0);
    let stats = up.stats();
    assert_each_order_created_once(&stats, 4);
    let results = read_results(&workdir.path("day.results.csv"));
    let resent: Vec<String> = results.iter().map(|line| line["idempotency_key"].clone()).collect();
    assert_eq!(resent, keys, "sent with the same keys, which Payroc still remembers");
}

/// Runs `rows_in_file` rows for terminal 9999001, which lacks the capability, with
/// `arguments`; returns the work directory, the sandbox and the run's outcome to assert on.
fn run_for_a_terminal_without_the_capability(
    rows_in_file: usize,
    arguments: &[&str],
) -> (Workdir, TestSandbox, assert_cmd::assert::Assert) {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(rows_in_file, "9999001"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let run = workdir.run(&sandbox, "day.csv", arguments);
    (workdir, sandbox, run)
}

/// How many lines of `day.results.csv` are `rejected` and how many `pending`, with the lines.
fn rejected_and_pending(workdir: &Workdir) -> (usize, usize, Vec<std::collections::HashMap<String, String>>) {
    let results = read_results(&workdir.path("day.results.csv"));
    let count = |status: &str| results.iter().filter(|line| line["status"] == status).count();
    (count("rejected"), count("pending"), results)
}

#[test]
fn a_terminal_without_the_capability_stops_the_run_early() {
    let (workdir, _sandbox, run) = run_for_a_terminal_without_the_capability(40, &["--concurrency", "1"]);
    run.code(3)
        .stderr(predicate::str::contains("5 refunds in a row failed the same way"));
    let (rejected, pending, results) = rejected_and_pending(&workdir);
    assert_eq!(rejected, 5);
    assert_eq!(pending, 35, "the rest is left for the next run");
    assert!(
        results[0]["error"].contains("processingTerminalId"),
        "{}",
        results[0]["error"]
    );
}

#[test]
fn an_account_level_refusal_stops_the_run_before_the_marked_rows_leave() {
    // The default rate and concurrency on a new ledger: the rows are looked up first, then one
    // commit marks sixteen of them `sending`, and they leave in pairs every 100 ms, each pair
    // answered before the next leaves. The refusals must stop the run as they come back, not
    // once the sixteen are out: the fifth stops it, and only the row that left together with
    // the fifth (when the fifth was the first of its pair) is refused beyond it. Recording the
    // refusals with the group's commit instead let 15–16 out.
    let (workdir, sandbox, run) = run_for_a_terminal_without_the_capability(20, &[]);
    run.code(3)
        .stderr(predicate::str::contains("5 refunds in a row failed the same way"));
    let (rejected, pending, _) = rejected_and_pending(&workdir);
    assert!(
        (5..=6).contains(&rejected),
        "the fifth refusal stops the run, with at most its pair's other row out: {rejected} rejected"
    );
    assert_eq!(pending, 20 - rejected, "the marked rows that never left are given back");
    assert_eq!(sandbox.stats().refund_posts, rejected as u64, "no request beyond those");
}

#[test]
fn a_second_run_on_the_same_ledger_is_refused() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(2, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    // Hold the ledger's run lock, as a running refund-batch does.
    let lock = std::fs::File::create(workdir.path("ledger.sqlite.lock")).expect("lock file");
    lock.try_lock().expect("the lock is free");
    workdir
        .run(&sandbox, "day.csv", &[])
        .code(75)
        .stderr(predicate::str::contains("is in use by another refund-batch command"));
    assert_eq!(sandbox.stats().refund_posts, 0);
    drop(lock);
    workdir.run(&sandbox, "day.csv", &[]).code(0);
}

#[test]
fn a_row_first_sent_more_than_six_days_ago_is_reconciled_not_resent() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(2, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_500_after_create: 1.0,
        ..SandboxConfig::default()
    });
    workdir.run(&sandbox, "day.csv", &["--max-retries", "0"]).code(3);
    // Age the ledger: the rows were first sent eight days ago.
    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("open ledger");
    connection
        .execute("UPDATE refunds SET first_sent_at = '2020-01-01T00:00:00.000Z'", [])
        .expect("age rows");
    drop(connection);
    let posts = sandbox.stats().refund_posts;
    workdir.run(&sandbox, "day.csv", &[]).code(3);
    assert_eq!(sandbox.stats().refund_posts, posts, "not re-sent blindly");
    let results = read_results(&workdir.path("day.results.csv"));
    assert!(results[0]["error"].contains("reconcile"), "{}", results[0]["error"]);
    workdir.reconcile(&sandbox, "day.csv", &[]).code(0);
    assert_each_order_created_once(&sandbox.stats(), 2);
}

/// Starts `refund-batch … run day.csv EXTRA…` (`rows` rows) against a sandbox answering in
/// 20 ms, with its stderr read line by line, for a test that signals it.
#[cfg(unix)]
fn spawn_run(rows_in_file: usize, extra: &[&str]) -> (Workdir, TestSandbox, std::process::Child, Lines) {
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(rows_in_file, "1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    });
    let mut child = workdir
        .std_command()
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start refund-batch");
    let stderr = Lines::new(child.stderr.take().expect("stderr is piped"));
    (workdir, sandbox, child, stderr)
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_writes_the_results_and_the_run_resumes() {
    // At 20 a second the 60 rows take at least 3 s, so a signal sent at the first request
    // always lands with rows left to send.
    let (workdir, sandbox, mut child, mut stderr) = spawn_run(60, &["--rate", "20", "--concurrency", "2"]);
    // The run announces where it sends just before the first request.
    stderr.wait_for("sending to");
    signal(child.id(), "TERM");
    let rest = stderr.rest();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3), "{rest}");
    assert!(rest.contains("stopped by request"), "{rest}");
    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(results.len(), 60, "the results are written even when interrupted");
    assert!(
        results.iter().any(|line| line["status"] == "pending"),
        "it stopped before the end"
    );

    workdir.run(&sandbox, "day.csv", &["--rate", "1000"]).code(0);
    let stats = sandbox.stats();
    assert_each_order_created_once(&stats, 60);
    assert_results_match(&workdir, &stats, 60);
}

/// With `--log-format json` the stop's own lines are JSON like every other.
#[cfg(unix)]
#[test]
fn a_stop_in_json_logs_is_said_in_json() {
    let (_workdir, _sandbox, mut child, mut stderr) =
        spawn_run(60, &["--rate", "20", "--concurrency", "2", "--log-format", "json"]);
    let before = stderr.wait_for("sending to");
    signal(child.id(), "TERM");
    let rest = stderr.rest();
    assert_eq!(child.wait().expect("wait").code(), Some(3), "{rest}");
    let mut stopping = 0;
    for line in before.lines().chain(rest.lines()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        if value["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("stopping:"))
        {
            assert_eq!(value["level"], "warning");
            stopping += 1;
        }
    }
    assert_eq!(stopping, 1, "{rest}");
}

/// Rows are marked `sending` a group ahead of their requests; a stop must give the marked rows
/// whose requests never left their state back, so that the ledger's audit trail holds exactly
/// the requests Payroc received and no row is left looking as if it may have been sent.
#[cfg(unix)]
#[test]
fn a_stop_gives_rows_marked_but_never_sent_their_state_back() {
    // At 20 a second a commit marks 5 rows and they leave 50 ms apart: a stop at the first
    // request finds marked rows that have not left.
    let (workdir, sandbox, mut child, mut stderr) =
        spawn_run(40, &["--rate", "20", "--concurrency", "1", "--precheck", "never"]);
    stderr.wait_for("sending to");
    crate::util::wait_until("the first refund request", || sandbox.stats().refund_posts >= 1);
    signal(child.id(), "TERM");
    let rest = stderr.rest();
    assert_eq!(child.wait().expect("wait").code(), Some(3), "{rest}");

    let posts = i64::try_from(sandbox.stats().refund_posts).expect("small");
    let ledger = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("open ledger");
    let count = |sql: &str| -> i64 { ledger.query_row(sql, [], |row| row.get(0)).expect(sql) };
    assert!(posts < 40, "it stopped before the end ({posts} requests)");
    assert_eq!(
        count("SELECT COUNT(*) FROM attempts"),
        posts,
        "one attempt per request received"
    );
    assert_eq!(count("SELECT SUM(attempts) FROM refunds"), posts);
    assert_eq!(count("SELECT COUNT(*) FROM refunds WHERE state = 'sending'"), 0);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM refunds WHERE state = 'pending' \
             AND (attempts > 0 OR first_sent_at IS NOT NULL OR may_have_reached = 1)"
        ),
        0,
        "a row never sent is left as if it may have been"
    );
    drop(ledger);

    workdir.run(&sandbox, "day.csv", &["--rate", "1000"]).code(0);
    let stats = sandbox.stats();
    assert_each_order_created_once(&stats, 40);
    assert_results_match(&workdir, &stats, 40);
}
