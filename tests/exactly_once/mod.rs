//! The ways the promise was broken, each reproduced with the real binary against the sandbox:
//! a refusal after a lost answer, reconcile without a complete view, another namespace or
//! ledger, the same order by card then by bank, a card number in the results, answers that
//! prove nothing, failures after sending, and `status` while a run holds the ledger.
//!
//! This module holds the shared input file and checks, and every case but those that happen
//! while a run is going, which are in `during_a_run.rs`.

// While a run is going: `status`, a rewritten input file, and `kill -9` during a new ledger's
// first run.
mod during_a_run;

use payroc_sandbox::{SandboxConfig, Stats};
use predicates::prelude::*;

use crate::util::{API_KEY, TestSandbox, Workdir, age_ledger, read_results};

const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";

/// Two card rows and one bank row on `terminal`, all approved by the sandbox.
fn file(terminal: &str) -> String {
    format!(
        "{HEADER}card,{terminal},EO-1,49.99,USD,refund,4111111111111111,0929,,,\n\
         card,{terminal},EO-2,15.50,EUR,refund,4539858876047062,1230,,,\n\
         bank,{terminal},EO-3,12.00,USD,refund,,,1234567890,011000015,Grace Hopper\n"
    )
}

fn approved_per_order(stats: &Stats) -> std::collections::BTreeMap<String, u32> {
    let mut approved = std::collections::BTreeMap::new();
    for refund in stats.refunds.iter().filter(|refund| refund.response_code == "A") {
        *approved.entry(refund.order_id.clone()).or_insert(0) += 1;
    }
    approved
}

fn assert_one_refund_per_order(stats: &Stats, orders: usize) {
    let approved = approved_per_order(stats);
    assert_eq!(approved.len(), orders, "{approved:?}");
    assert!(
        approved.values().all(|count| *count == 1),
        "a second refund: {approved:?}"
    );
}

fn statuses(workdir: &Workdir, results: &str) -> Vec<String> {
    read_results(&workdir.path(results))
        .into_iter()
        .map(|line| line["status"].clone())
        .collect()
}

#[test]
fn a_refusal_of_a_resend_after_a_lost_answer_stays_unknown_and_is_never_retried_under_a_new_key() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &file("1234001"));
    // Run 1: Payroc makes each refund but the answer is a 500, and no retry is allowed.
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_500_after_create: 1.0,
        ..SandboxConfig::default()
    });
    workdir.run(&sandbox, "day.csv", &["--max-retries", "0"]).code(3);
    assert_eq!(statuses(&workdir, "day.results.csv"), ["unknown"; 3]);
    // Run 2: the terminal's capability is switched off; the re-send is refused with a 403.
    sandbox.sandbox().forbid_terminal("1234001");
    workdir.run(&sandbox, "day.csv", &["--max-retries", "0"]).code(3);
    let results = read_results(&workdir.path("day.results.csv"));
    for line in &results {
        assert_eq!(
            line["status"], "unknown",
            "a refusal of a re-send proves nothing: {line:?}"
        );
        assert_eq!(line["http_status"], "403");
        assert!(line["error"].contains("may have reached Payroc"), "{line:?}");
    }
    // Run 3 with --retry-failed: nothing is sent under a new key.
    let posts = sandbox.stats().refund_posts;
    workdir
        .run(&sandbox, "day.csv", &["--retry-failed", "--max-retries", "0"])
        .code(3);
    let stats = sandbox.stats();
    assert_eq!(stats.refunds.len(), 3, "no second refund");
    assert_eq!(
        stats.requests_per_key.len(),
        3,
        "only the first keys were ever used: {:?}",
        stats.requests_per_key
    );
    assert!(stats.refund_posts >= posts);
    // The capability comes back: the same keys replay the refunds Payroc made in run 1.
    sandbox.sandbox().allow_terminal("1234001");
    workdir.run(&sandbox, "day.csv", &[]).code(0);
    let stats = sandbox.stats();
    assert_one_refund_per_order(&stats, 3);
    let results = read_results(&workdir.path("day.results.csv"));
    for line in &results {
        let refund = stats
            .refunds
            .iter()
            .find(|refund| refund.order_id == line["order_id"])
            .expect("refund");
        assert_eq!(
            (line["status"].as_str(), &line["refund_id"]),
            ("succeeded", &refund.refund_id)
        );
    }
}

#[test]
fn reconcile_finds_a_refund_older_than_payrocs_default_window() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &file("1234001"));
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_500_after_create: 1.0,
        ..SandboxConfig::default()
    });
    workdir.run(&sandbox, "day.csv", &["--max-retries", "0"]).code(3);
    // Eight days pass: Payroc's default list window no longer shows the refunds, and its keys
    // are forgotten.
    sandbox.sandbox().age(8);
    age_ledger(&workdir.path("ledger.sqlite"), 8);
    workdir.run(&sandbox, "day.csv", &[]).code(3);
    assert_eq!(
        sandbox.stats().refunds.len(),
        3,
        "a row first sent 8 days ago is not re-sent blindly"
    );
    for line in read_results(&workdir.path("day.results.csv")) {
        assert_eq!(line["status"], "unknown");
        assert!(line["error"].contains("refund-batch reconcile"), "{line:?}");
    }
    workdir.reconcile(&sandbox, "day.csv", &[]).code(0);
    assert_eq!(statuses(&workdir, "day.results.csv"), ["succeeded"; 3]);
    workdir.run(&sandbox, "day.csv", &[]).code(0);
    assert_one_refund_per_order(&sandbox.stats(), 3);
}

#[test]
fn past_six_days_only_a_person_lets_an_unfound_refund_go_out_under_a_new_key() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &file("1234001"));
    // Every send meets a 503: the requests may have reached Payroc, but nothing was created.
    let sandbox = TestSandbox::start(SandboxConfig {
        rate_503: 1.0,
        retry_after: std::time::Duration::from_millis(1),
        ..SandboxConfig::default()
    });
    workdir.run(&sandbox, "day.csv", &["--max-retries", "0"]).code(3);
    assert_eq!(statuses(&workdir, "day.results.csv"), ["unknown"; 3]);
    age_ledger(&workdir.path("ledger.sqlite"), 8);
    // Reconcile lists with an explicit window, finds nothing, and concludes nothing by itself.
    workdir
        .reconcile(&sandbox, "day.csv", &[])
        .code(3)
        .stderr(predicate::str::contains("--confirm-not-created"));
    let results = read_results(&workdir.path("day.results.csv"));
    for line in &results {
        assert_eq!(line["status"], "unknown");
        assert!(
            line["error"].contains("Payroc lists no refund for this order between"),
            "{line:?}"
        );
    }
    let keys_before: Vec<String> = results.iter().map(|line| line["idempotency_key"].clone()).collect();
    workdir.run(&sandbox, "day.csv", &[]).code(3);
    assert_eq!(sandbox.stats().refunds.len(), 0, "nothing is sent on its own");
    // A person confirms two rows; only those move to a new key, recorded with the time.
    let healthy = TestSandbox::start(SandboxConfig::default());
    workdir
        .reconcile(&healthy, "day.csv", &["--confirm-not-created", "2,4"])
        .code(3);
    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("ledger");
    let confirmed: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM refunds WHERE confirmed_not_created_at IS NOT NULL AND generation = 1",
            [],
            |row| row.get(0),
        )
        .expect("query");
    assert_eq!(confirmed, 2);
    drop(connection);
    workdir.run(&healthy, "day.csv", &[]).code(3);
    let stats = healthy.stats();
    assert_eq!(stats.refunds.len(), 2, "the two confirmed rows were sent");
    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(
        results.iter().map(|line| line["status"].as_str()).collect::<Vec<_>>(),
        ["succeeded", "unknown", "succeeded"]
    );
    assert_ne!(results[0]["idempotency_key"], keys_before[0], "a new key");
    assert_eq!(
        results[1]["idempotency_key"], keys_before[1],
        "the unconfirmed row keeps its key"
    );
}

#[test]
fn another_key_namespace_on_the_same_ledger_refunds_nothing_twice() {
    let workdir = Workdir::new();
    workdir.write("card.csv", &file("1234001"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "card.csv", &[]).code(0);
    workdir
        .command()
        .env("REFUND_BATCH_KEY_NAMESPACE", "team-b")
        .args(sandbox.arguments())
        .args(["run", "card.csv"])
        .assert()
        .code(0);
    assert_one_refund_per_order(&sandbox.stats(), 3);
    assert_eq!(sandbox.stats().refund_posts, 3, "nothing was sent the second time");
    // The namespace is not part of an order's identity: the rows are the ones already done.
    for line in read_results(&workdir.path("card.results.csv")) {
        assert_eq!(line["status"], "succeeded", "{line:?}");
    }
}

/// `card.csv` refunded on this machine's ledger, then eight days pass: Payroc has forgotten the
/// keys. Returns the work directory and the sandbox, for a run on another machine's ledger.
fn refunded_eight_days_ago() -> (Workdir, TestSandbox) {
    let workdir = Workdir::new();
    workdir.write("card.csv", &file("1234001"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "card.csv", &[]).code(0);
    sandbox.sandbox().age(8);
    (workdir, sandbox)
}

/// `refund-batch SUBCOMMAND card.csv` on another user's ledger in `workdir`.
fn on_other_ledger(workdir: &Workdir, sandbox: &TestSandbox, subcommand: &str) -> assert_cmd::Command {
    let mut command = workdir.command();
    command
        .env("REFUND_BATCH_LEDGER", workdir.path("other-user-ledger.sqlite"))
        .args(sandbox.arguments())
        .args([subcommand, "card.csv"]);
    command
}

/// `run` on the other ledger looks each of the three orders up, finds it at Payroc, and sends
/// nothing again.
fn run_on_other_ledger_finding_every_order_at_payroc(workdir: &Workdir, sandbox: &TestSandbox) {
    on_other_ledger(workdir, sandbox, "run")
        .assert()
        .code(0)
        .stderr(predicate::str::contains("looked up at Payroc"));
    let stats = sandbox.stats();
    assert_eq!(stats.refund_posts, 3, "found at Payroc: nothing sent again");
    assert_one_refund_per_order(&stats, 3);
}

#[test]
fn a_new_ledger_looks_each_order_up_and_sends_nothing_payroc_already_has_even_after_seven_days() {
    let (workdir, sandbox) = refunded_eight_days_ago();
    run_on_other_ledger_finding_every_order_at_payroc(&workdir, &sandbox);
    for line in read_results(&workdir.path("card.results.csv")) {
        assert_eq!(line["status"], "succeeded");
        assert!(line["error"].contains("found at Payroc before sending"), "{line:?}");
    }
    // A resumed run of the same file on that ledger still looks up rows it has not seen; a
    // namespace change on it is a conflict, as on any ledger.
    on_other_ledger(&workdir, &sandbox, "run").assert().code(0);
    assert_eq!(sandbox.stats().refund_posts, 3);
}

/// A ledger made by another command first (here `reconcile`, on a new machine) knows no more
/// than a ledger made by `run`: its first run still looks every order up.
#[test]
fn a_ledger_that_holds_no_refund_is_new_whichever_command_made_it() {
    let (workdir, sandbox) = refunded_eight_days_ago();
    on_other_ledger(&workdir, &sandbox, "reconcile")
        .output()
        .expect("reconcile ran");
    assert!(
        workdir.path("other-user-ledger.sqlite").exists(),
        "reconcile made the ledger"
    );
    run_on_other_ledger_finding_every_order_at_payroc(&workdir, &sandbox);
}

#[test]
fn the_same_order_by_card_then_by_bank_is_one_refund() {
    let workdir = Workdir::new();
    workdir.write(
        "day1.csv",
        &format!("{HEADER}card,1234001,MB-1,20.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    workdir.write(
        "day2.csv",
        &format!("{HEADER}bank,1234001,MB-1,20.00,USD,refund,,,1234567890,011000015,Grace Hopper\n"),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day1.csv", &[]).code(0);
    workdir.run(&sandbox, "day2.csv", &[]).code(1);
    assert_eq!(sandbox.stats().refunds.len(), 1, "the bank refund was not sent");
    let line = &read_results(&workdir.path("day2.results.csv"))[0];
    assert_eq!(line["status"], "conflict");
    assert!(
        line["error"].contains("by card") && line["error"].contains("day1.csv"),
        "{line:?}"
    );
    // In one file, the two rows are duplicates.
    workdir.write(
        "both.csv",
        &format!(
            "{HEADER}card,1234001,MB-2,20.00,USD,refund,4111111111111111,0929,,,\n\
             bank,1234001,MB-2,20.00,USD,refund,,,1234567890,011000015,Grace Hopper\n"
        ),
    );
    workdir
        .command()
        .args(["validate", "both.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("row 3, column order_id: repeats row 2"));
}

#[test]
fn no_full_number_of_a_hostile_file_reaches_any_file_or_output() {
    let workdir = Workdir::new();
    // Card, account and routing numbers in the identifying columns of invalid rows, and a card
    // number as the order id of a row that would otherwise be valid.
    let secrets = ["4539858876047062", "5555555555554444", "000123456789", "011000015"];
    workdir.write(
        "leak.csv",
        &format!(
            "{HEADER}card,1234001,L-1,49.99,USD,refund,4111111111111111,0929,,,\n\
             card,1234001,4539858876047062,5.00,USD,refund,,,,,\n\
             card,5555555555554444,L-3,abc,USD,refund,4111111111111111,0929,,,\n\
             bank,1234001,L-4,000123456789,USD,refund,,,000123456789,011000015,\n\
             bank,011000015,L-5,1.00,XXX,refund,,,,,\n\
             card,1234001,4539858876047062,5.00,USD,refund,4111111111111111,0929,,,\n"
        ),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let output = workdir
        .command()
        .args(sandbox.arguments())
        .args(["-vv", "run", "leak.csv", "--skip-invalid"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let results = read_results(&workdir.path("leak.results.csv"));
    assert_eq!(
        results.iter().map(|line| line["status"].as_str()).collect::<Vec<_>>(),
        ["succeeded", "invalid", "invalid", "invalid", "invalid", "invalid"]
    );
    assert!(results[1]["order_id"].contains("[redacted …7062]"), "{:?}", results[1]);
    let mut searched = vec![
        ("stdout".to_owned(), output.stdout.clone()),
        ("stderr".to_owned(), output.stderr.clone()),
    ];
    for (path, bytes) in workdir.all_files() {
        if path.file_name().is_some_and(|name| name == "leak.csv") {
            continue;
        }
        searched.push((path.display().to_string(), bytes));
    }
    assert!(searched.iter().any(|(name, _)| name.ends_with("ledger.sqlite")));
    for (name, bytes) in &searched {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets.iter().chain([&API_KEY]) {
            assert!(!text.contains(secret), "{secret} found in {name}");
        }
    }
    // What the search can see: the masked forms are there.
    let results_text = workdir.read("leak.results.csv");
    assert!(results_text.contains("[redacted …4444]"), "{results_text}");
}

#[test]
fn answers_that_prove_nothing_are_unknown_with_the_raw_status() {
    let workdir = Workdir::new();
    workdir.write(
        "odd.csv",
        &format!(
            "{HEADER}card,9999201,OD-1,1.00,USD,refund,4111111111111111,0929,,,\n\
             card,9999202,OD-2,2.00,USD,refund,4111111111111111,0929,,,\n\
             bank,9999203,OD-3,3.00,USD,refund,,,1234567890,011000015,Grace Hopper\n"
        ),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "odd.csv", &[]).code(3);
    let results = read_results(&workdir.path("odd.results.csv"));
    let expected = ["without a refundId", "not a refund", "another order"];
    for (line, why) in results.iter().zip(expected) {
        assert_eq!(line["status"], "unknown", "{line:?}");
        assert_eq!(line["http_status"], "201");
        assert!(line["error"].contains(why), "{why}: {line:?}");
        assert!(
            line["refund_id"].is_empty(),
            "no refund id is taken from such an answer"
        );
    }
    // Reconcile settles them from Payroc's records.
    workdir.reconcile(&sandbox, "odd.csv", &[]).code(0);
    assert_eq!(statuses(&workdir, "odd.results.csv"), ["succeeded"; 3]);
    assert_eq!(sandbox.stats().refunds.len(), 3);
}

#[test]
fn a_failure_after_sending_exits_3_closes_the_batch_and_the_results_can_be_written_later() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &file("1234001"));
    std::fs::create_dir(workdir.path("results-dir")).expect("dir");
    let sandbox = TestSandbox::start(SandboxConfig::default());
    // The results path is a directory: it cannot be written.
    workdir
        .run(&sandbox, "day.csv", &["--results", "results-dir"])
        .code(3)
        .stderr(predicate::str::contains("--write-results"));
    assert_eq!(sandbox.stats().refunds.len(), 3);
    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("ledger");
    let (finished, exit_code): (Option<String>, Option<i64>) = connection
        .query_row(
            "SELECT finished_at, exit_code FROM batches ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("batch");
    assert!(finished.is_some(), "the batch is closed");
    assert_eq!(exit_code, Some(3));
    drop(connection);
    workdir
        .command()
        .args(["--env", "uat", "status", "day.csv", "--write-results", "later.csv"])
        .assert()
        .code(0);
    let results = read_results(&workdir.path("later.csv"));
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|line| line["status"] == "succeeded"));
}

#[test]
fn confirm_not_created_names_every_row_it_did_not_act_on_and_why() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &file("1234001"));
    let failing = TestSandbox::start(SandboxConfig {
        rate_503: 1.0,
        retry_after: std::time::Duration::from_millis(1),
        ..SandboxConfig::default()
    });
    workdir.run(&failing, "day.csv", &["--max-retries", "0"]).code(3);
    age_ledger(&workdir.path("ledger.sqlite"), 8);
    let healthy = TestSandbox::start(SandboxConfig::default());
    // Row 2 is acted on; row 9 is not in the file.
    workdir
        .reconcile(&healthy, "day.csv", &["--confirm-not-created", "2,9"])
        .code(3)
        .stderr(predicate::str::contains(
            "row 9 was not moved to a new key: the file has no row 9 (its last row is 4)",
        ))
        .stderr(predicate::str::contains("row 2 was not").not());
    workdir.run(&healthy, "day.csv", &[]).code(3);
    // Row 2 has succeeded since; row 3 is acted on.
    workdir
        .reconcile(&healthy, "day.csv", &["--confirm-not-created", "2,3"])
        .code(3)
        .stderr(predicate::str::contains(
            "row 2 was not moved to a new key: the row is succeeded, not unknown",
        ))
        .stderr(predicate::str::contains("row 3 was not").not());
    // A lookup that does not complete concludes nothing, and says so for the row asked about.
    let slow = TestSandbox::start(SandboxConfig {
        latency: std::time::Duration::from_millis(2_500),
        ..SandboxConfig::default()
    });
    workdir
        .reconcile(
            &slow,
            "day.csv",
            &["--confirm-not-created", "4", "--timeout", "1", "--max-retries", "0"],
        )
        .code(3)
        .stderr(predicate::str::contains(
            "row 4 was not moved to a new key: the lookup at Payroc failed",
        ));
    assert_eq!(slow.stats().refunds.len(), 0);
}
