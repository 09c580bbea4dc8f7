//! The promise where a user broke it before: one key per order whoever sends it, a ledger that
//! vouches only for the time it has existed in an environment, Payroc's clock over the local
//! one, and the cost of the look-ups a new ledger makes.

use payroc_sandbox::{SandboxConfig, Stats};
use predicates::prelude::*;

use crate::util::{TestSandbox, Workdir, age_ledger, read_results, sample};

const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";

/// `rows` approved card rows `PR-0…` on terminal 1234001.
fn card_rows(rows: usize) -> String {
    let mut text = HEADER.to_owned();
    for index in 0..rows {
        text.push_str(&format!(
            "card,1234001,PR-{index},2.50,USD,refund,4111111111111111,0929,,,\n"
        ));
    }
    text
}

/// Refunds per order (terminal and order id, any method) that are not definite failures.
fn live_refunds_per_order(stats: &Stats) -> std::collections::BTreeMap<String, u32> {
    let mut live = std::collections::BTreeMap::new();
    for refund in &stats.refunds {
        if !matches!(refund.response_code.as_str(), "D" | "R" | "C") && refund.status != "declined" {
            *live
                .entry(format!(
                    "{}|{}",
                    refund.processing_terminal_id,
                    refund.order_id.to_lowercase()
                ))
                .or_insert(0) += 1;
        }
    }
    live
}

fn assert_at_most_one_refund_per_order(stats: &Stats) {
    let live = live_refunds_per_order(stats);
    assert!(live.values().all(|count| *count == 1), "a second refund: {live:?}");
}

#[test]
fn two_new_ledgers_running_one_file_at_once_refund_each_order_once() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &card_rows(10));
    // The first request of a key takes a while; a second with the same key meanwhile is told
    // "still being processed", as a payment API does.
    let sandbox = TestSandbox::start(SandboxConfig {
        key_processing_time: std::time::Duration::from_millis(100),
        ..SandboxConfig::default()
    });
    let start = |ledger: &str, namespace: &str| {
        workdir
            .std_command()
            .env("REFUND_BATCH_LEDGER", workdir.path(ledger))
            .env("REFUND_BATCH_KEY_NAMESPACE", namespace)
            .args(sandbox.arguments())
            .args(["run", "day.csv", "--results", &format!("{ledger}.results.csv")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start a run")
    };
    let first = start("host-a.sqlite", "default");
    let second = start("host-b.sqlite", "team-b");
    for run in [first, second] {
        let output = run.wait_with_output().expect("the run ends");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stats = sandbox.stats();
    assert_eq!(
        stats.refunds.len(),
        10,
        "one refund per order: {:?}",
        live_refunds_per_order(&stats)
    );
    assert_at_most_one_refund_per_order(&stats);
    // Both hosts report what Payroc holds: each row succeeded, with the one refund's id.
    for ledger in ["host-a.sqlite", "host-b.sqlite"] {
        for line in read_results(&workdir.path(&format!("{ledger}.results.csv"))) {
            assert_eq!(line["status"], "succeeded", "{ledger}: {line:?}");
            assert!(
                stats.refunds.iter().any(|refund| refund.refund_id == line["refund_id"]),
                "{ledger}: {line:?}"
            );
        }
    }
}

#[test]
fn a_key_still_being_processed_is_asked_again_not_a_conflict() {
    let sandbox = TestSandbox::start(SandboxConfig {
        key_processing_time: std::time::Duration::from_millis(300),
        ..SandboxConfig::default()
    });
    // Another host's request for the same order (so the same key) arrives first and holds it.
    let other_host = Workdir::new();
    other_host.write("day.csv", &card_rows(1));
    let mut early = other_host
        .std_command()
        .args(sandbox.arguments())
        .args(["run", "day.csv", "--precheck", "never"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the first sender");
    crate::util::wait_until("the first sender's POST", || sandbox.stats().refund_posts >= 1);
    let workdir = Workdir::new();
    workdir.write("day.csv", &card_rows(1));
    workdir
        .run(
            &sandbox,
            "day.csv",
            &[
                "--precheck",
                "never",
                "--retry-delay-ms",
                "100",
                "--max-retry-delay-ms",
                "200",
            ],
        )
        .code(0);
    assert!(early.wait().expect("the first sender ends").success());
    let stats = sandbox.stats();
    assert_eq!(stats.refunds.len(), 1, "one refund");
    assert!(stats.faults.key_in_progress >= 1, "the second sender was told to wait");
    let line = &read_results(&workdir.path("day.results.csv"))[0];
    assert_eq!(line["status"], "succeeded", "{line:?}");
    assert_eq!(line["refund_id"], stats.refunds[0].refund_id);
}

#[test]
fn a_clock_more_than_five_minutes_off_payrocs_sends_nothing_and_exits_5() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &card_rows(3));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    for offset in ["864000", "-400"] {
        workdir
            .command()
            .env("REFUND_BATCH_CLOCK_OFFSET_SECONDS", offset)
            .args(sandbox.arguments())
            .args(["run", "day.csv"])
            .assert()
            .code(5)
            .stderr(predicate::str::contains("clock"))
            .stderr(predicate::str::contains("Payroc's"));
        assert_eq!(
            sandbox.stats().refund_posts,
            0,
            "nothing sent with the clock {offset} s off"
        );
    }
    // Within five minutes the run goes, and the ledger's times are Payroc's.
    workdir
        .command()
        .env("REFUND_BATCH_CLOCK_OFFSET_SECONDS", "240")
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .assert()
        .code(0);
    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("ledger");
    let first_sent: String = connection
        .query_row("SELECT min(first_sent_at) FROM refunds", [], |row| row.get(0))
        .expect("a send time");
    let recorded = time::OffsetDateTime::parse(&first_sent, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    let off = (recorded - time::OffsetDateTime::now_utc()).abs();
    assert!(
        off < time::Duration::seconds(60),
        "recorded {first_sent}: Payroc's time, not the local clock's"
    );
}

#[test]
fn sandbox_rows_prove_nothing_about_uat_so_a_new_ledger_still_looks_orders_up() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &card_rows(3));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    // Host A refunds the orders in uat; eight days pass (Payroc forgets the keys).
    workdir
        .command()
        .env("REFUND_BATCH_LEDGER", workdir.path("host-a.sqlite"))
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .assert()
        .code(0);
    sandbox.sandbox().age(8);
    age_ledger(&workdir.path("host-a.sqlite"), 8);
    // Host B: the README's first command (the embedded sandbox) into a new ledger, then the
    // uat file into the same ledger.
    workdir.write("mixed.csv", &sample("mixed.csv"));
    workdir
        .command()
        .env("REFUND_BATCH_LEDGER", workdir.path("host-b.sqlite"))
        .args(["run", "mixed.csv"])
        .assert()
        .code(1);
    workdir
        .command()
        .env("REFUND_BATCH_LEDGER", workdir.path("host-b.sqlite"))
        .args(sandbox.arguments())
        .args(["run", "day.csv"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("looked up at Payroc"));
    let stats = sandbox.stats();
    assert_eq!(stats.refunds.len(), 3, "no second refund");
    for line in read_results(&workdir.path("day.results.csv")) {
        assert_eq!(line["status"], "succeeded", "{line:?}");
        assert!(line["error"].contains("found at Payroc"), "{line:?}");
    }
}

#[test]
fn a_new_ledgers_first_run_costs_about_one_request_per_row() {
    const ROWS: u64 = 200;
    let workdir = Workdir::new();
    workdir.write("day.csv", &card_rows(ROWS as usize));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &["--rate", "500"]).code(0);
    let stats = sandbox.stats();
    assert_eq!(stats.refunds.len() as u64, ROWS);
    let requests = stats.refund_posts + stats.list_requests;
    assert!(
        requests * 10 <= ROWS * 11,
        "{requests} requests for {ROWS} rows ({} lists)",
        stats.list_requests
    );
}

#[test]
fn a_copied_ledger_vouches_for_nothing_the_original_sent_after_the_copy() {
    let workdir = Workdir::new();
    workdir.write(
        "day1.csv",
        &format!("{HEADER}card,1234001,CP-1,3.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    workdir.write(
        "day2.csv",
        &format!("{HEADER}card,1234001,CP-2,4.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let on = |ledger: &str, file: &str| {
        workdir
            .command()
            .env("REFUND_BATCH_LEDGER", workdir.path(ledger))
            .args(sandbox.arguments())
            .args(["run", file])
            .assert()
    };
    on("original.sqlite", "day1.csv").code(0);
    // An old ledger: it has recorded uat sends for longer than the look-up's reach, so it
    // vouches for what Payroc holds there and looks nothing up.
    let connection = rusqlite::Connection::open(workdir.path("original.sqlite")).expect("ledger");
    connection
        .execute(
            "UPDATE meta SET value = '2020-01-01T00:00:00.000Z' WHERE name = 'first_send_at:uat'",
            [],
        )
        .expect("age the ledger's first send");
    drop(connection);
    std::fs::copy(workdir.path("original.sqlite"), workdir.path("copy.sqlite")).expect("copy the ledger");
    on("original.sqlite", "day2.csv")
        .code(0)
        .stderr(predicate::str::contains("looked up at Payroc").not());
    sandbox.sandbox().age(8);
    age_ledger(&workdir.path("original.sqlite"), 8);
    age_ledger(&workdir.path("copy.sqlite"), 8);
    // The copy never saw CP-2: it looks it up instead of trusting its old history.
    on("copy.sqlite", "day2.csv")
        .code(0)
        .stderr(predicate::str::contains("looked up at Payroc"));
    assert_eq!(sandbox.stats().refunds.len(), 2, "no second refund of CP-2");
    assert_at_most_one_refund_per_order(&sandbox.stats());
}

#[test]
fn a_backup_copied_back_over_the_ledger_vouches_for_nothing_sent_since() {
    let workdir = Workdir::new();
    workdir.write(
        "day1.csv",
        &format!("{HEADER}card,1234001,BK-1,3.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    workdir.write(
        "day2.csv",
        &format!("{HEADER}card,1234001,BK-2,4.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let run = |file: &str| workdir.run(&sandbox, file, &[]);
    run("day1.csv").code(0);
    // An old ledger, which vouches for what Payroc holds; last night's backup of it.
    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("ledger");
    connection
        .execute(
            "UPDATE meta SET value = '2020-01-01T00:00:00.000Z' WHERE name = 'first_send_at:uat'",
            [],
        )
        .expect("age the ledger's first send");
    drop(connection);
    std::fs::copy(workdir.path("ledger.sqlite"), workdir.path("backup.sqlite")).expect("back up");
    run("day2.csv")
        .code(0)
        .stderr(predicate::str::contains("looked up at Payroc").not());
    sandbox.sandbox().age(8);
    // The backup is copied back in place (the same inode, as `cp` does): it never saw BK-2.
    std::fs::write(
        workdir.path("ledger.sqlite"),
        std::fs::read(workdir.path("backup.sqlite")).expect("read the backup"),
    )
    .expect("restore in place");
    age_ledger(&workdir.path("ledger.sqlite"), 8);
    run("day2.csv")
        .code(0)
        .stderr(predicate::str::contains("copied, moved or restored"))
        .stderr(predicate::str::contains("looked up at Payroc"));
    assert_eq!(sandbox.stats().refunds.len(), 2, "no second refund of BK-2");
}

#[test]
fn ids_that_read_alike_in_any_script_or_case_are_one_order_or_refused() {
    let workdir = Workdir::new();
    let sandbox = TestSandbox::start(SandboxConfig::default());
    // Accented letters, precomposed or with a combining accent: refused, naming the character.
    workdir.write(
        "accents.csv",
        &format!(
            "{HEADER}card,1234001,\u{c9}T\u{c9}-42,3.00,USD,refund,4111111111111111,0929,,,\n\
             card,1234001,CAFE\u{301}-7,3.00,USD,refund,4111111111111111,0929,,,\n"
        ),
    );
    workdir
        .run(&sandbox, "accents.csv", &[])
        .code(2)
        .stderr(predicate::str::contains("U+00C9"))
        .stderr(predicate::str::contains("U+0301"));
    // A terminal id in another letter case, in a later file: the same order, held.
    workdir.write(
        "upper.csv",
        &format!("{HEADER}card,TERM-A,TC-1,3.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    workdir.write(
        "lower.csv",
        &format!("{HEADER}card,term-a,TC-1,3.00,USD,refund,4111111111111111,0929,,,\n"),
    );
    workdir.run(&sandbox, "upper.csv", &[]).code(0);
    workdir.run(&sandbox, "lower.csv", &[]).code(1);
    assert_eq!(sandbox.stats().refunds.len(), 1, "one refund");
    let line = &read_results(&workdir.path("lower.results.csv"))[0];
    assert_eq!(line["status"], "conflict");
    assert!(line["error"].contains("letter case"), "{line:?}");
}

#[test]
fn no_output_replaces_the_key_or_config_file_or_lies_about_another_environment() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &card_rows(2));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let key_file = workdir.write("api.key", crate::util::API_KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    workdir
        .command()
        .env_remove("PAYROC_API_KEY")
        .args(["--api-key-file", "api.key"])
        .args(sandbox.arguments())
        .args(["run", "day.csv", "--results", "api.key"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the API key file"));
    assert_eq!(workdir.read("api.key"), crate::util::API_KEY);
    workdir.write("refund-batch.toml", "rate = 50\n");
    workdir
        .run(&sandbox, "day.csv", &["--results", "refund-batch.toml"])
        .code(2)
        .stderr(predicate::str::contains("the config file"));
    assert_eq!(workdir.read("refund-batch.toml"), "rate = 50\n");
    assert_eq!(sandbox.stats().refund_posts, 0);
    // Run in uat, then asked for its results without --env (the sandbox): refused, not all pending.
    workdir.run(&sandbox, "day.csv", &[]).code(0);
    workdir
        .command()
        .args(["status", "day.csv", "--write-results", "again.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pass --env uat"));
    assert!(!workdir.path("again.csv").exists());
}
