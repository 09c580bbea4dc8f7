//! The main path, checked the way a user would: run the binary, read what it wrote, and compare
//! with what the sandbox itself says it did.

use std::collections::HashMap;

use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use crate::util::{API_KEY, Lines, TestSandbox, Workdir, read_results, sample};

#[test]
fn every_row_is_sent_exactly_once_and_the_results_agree_with_the_sandbox() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());

    // One decline in the sample: exit 1 (needs review).
    workdir.run(&sandbox, "mixed.csv", &[]).code(1);

    let stats = sandbox.stats();
    assert_eq!(stats.refunds.len(), 5, "one refund per row");
    assert!(
        stats.created_per_order.values().all(|count| *count == 1),
        "{:?}",
        stats.created_per_order
    );
    assert!(
        stats.requests_per_key.values().all(|count| *count == 1),
        "{:?}",
        stats.requests_per_key
    );

    let results = read_results(&workdir.path("mixed.results.csv"));
    assert_eq!(results.len(), 5);
    let by_order: HashMap<&str, &payroc_sandbox::RefundRecord> = stats
        .refunds
        .iter()
        .map(|refund| (refund.order_id.as_str(), refund))
        .collect();
    for (index, line) in results.iter().enumerate() {
        assert_eq!(line["row"], (index + 2).to_string(), "results are in input order");
        let refund = by_order[line["order_id"].as_str()];
        assert_eq!(line["refund_id"], refund.refund_id);
        assert_eq!(line["response_code"], refund.response_code);
        assert_eq!(line["payroc_status"], refund.status);
        assert_eq!(line["idempotency_key"], refund.idempotency_key);
        assert_eq!(line["method"], refund.method);
        let expected = if refund.response_code == "A" {
            "succeeded"
        } else {
            "declined"
        };
        assert_eq!(line["status"], expected);
        assert_eq!(line["attempts"], "1");
    }
    assert_eq!(results[1]["status"], "declined", "the sample's decline card");
    assert_eq!(results[3]["amount"], "9.500", "KWD has three decimals");
    assert_eq!(results[3]["currency"], "KWD");
    let kwd = stats
        .refunds
        .iter()
        .find(|refund| refund.currency == "KWD")
        .expect("KWD refund");
    assert_eq!(kwd.amount, 9500, "minor units by the currency's exponent");
}

#[test]
fn a_second_run_sends_nothing_and_a_new_ledger_replays_the_same_keys() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "mixed.csv", &[]).code(1);
    let first = sandbox.stats();
    let first_results = read_results(&workdir.path("mixed.results.csv"));

    // Same ledger: nothing is sent at all.
    workdir.run(&sandbox, "mixed.csv", &[]).code(1);
    let second = sandbox.stats();
    assert_eq!(second.refund_posts, first.refund_posts, "a re-run sends no request");
    let second_results = read_results(&workdir.path("mixed.results.csv"));
    for (before, after) in first_results.iter().zip(&second_results) {
        assert_eq!(before["refund_id"], after["refund_id"]);
        assert_eq!(before["status"], after["status"]);
    }

    // A new, empty ledger (another machine, a lost disk): each order is looked up at Payroc
    // first, found, and not sent again.
    workdir
        .command()
        .env("REFUND_BATCH_LEDGER", workdir.path("fresh-ledger.sqlite"))
        .args(sandbox.arguments())
        .args(["run", "mixed.csv"])
        .assert()
        .code(1);
    let looked_up = sandbox.stats();
    // The declined row refunded nothing, so it does not stand in the way: it is sent with the
    // same key, and Payroc answers with the stored decline.
    assert_eq!(
        looked_up.refund_posts,
        first.refund_posts + 1,
        "only the declined row was sent again"
    );
    assert_eq!(looked_up.refunds.len(), 5, "no new refund was created");
    let looked_up_results = read_results(&workdir.path("mixed.results.csv"));
    for (before, after) in first_results.iter().zip(&looked_up_results) {
        assert_eq!(before["refund_id"], after["refund_id"], "the row took Payroc's refund");
        assert_eq!(before["status"], after["status"]);
    }

    // Another new ledger without the lookup: the same rows get the same keys, and Payroc's
    // idempotency answers with the stored responses.
    workdir
        .command()
        .env("REFUND_BATCH_LEDGER", workdir.path("fresh-ledger-2.sqlite"))
        .args(sandbox.arguments())
        .args(["run", "mixed.csv", "--precheck", "never"])
        .assert()
        .code(1);
    let third = sandbox.stats();
    assert_eq!(third.refunds.len(), 5, "no new refund was created");
    assert!(third.created_per_order.values().all(|count| *count == 1));
    for line in &first_results {
        // Sent by the first ledger and the last; the declined row by the middle one too.
        let expected = if line["status"] == "declined" { 3 } else { 2 };
        assert_eq!(
            third.requests_per_key[&line["idempotency_key"]], expected,
            "each key was sent once per ledger that sent it: {line:?}"
        );
    }
    let third_results = read_results(&workdir.path("mixed.results.csv"));
    for (before, after) in first_results.iter().zip(&third_results) {
        assert_eq!(
            before["idempotency_key"], after["idempotency_key"],
            "same row, same key"
        );
        assert_eq!(before["refund_id"], after["refund_id"], "the stored response came back");
    }
}

#[test]
fn an_invalid_file_exits_2_sends_nothing_and_names_every_bad_row_and_column() {
    let workdir = Workdir::new();
    workdir.write("invalid.csv", &sample("invalid.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let assert = workdir.run(&sandbox, "invalid.csv", &[]).code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for expected in [
        "row 2, column amount:",
        "row 3, column processing_terminal_id:",
        "row 3, column card_number:",
        "row 3, column expiry_date:",
        "row 4, column amount:",
        "row 4, column description:",
        "row 5, column amount:",
        "row 5, column account_number:",
        "row 5, column routing_number:",
        "row 5, column name_on_account:",
        "row 6, column method:",
        "row 6, column currency:",
        "row 7, column order_id: repeats row 2",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert_eq!(sandbox.stats().refund_posts, 0);
    assert_eq!(sandbox.stats().tokens_issued, 0, "not even a token was fetched");
    assert!(!workdir.path("invalid.results.csv").exists());

    // validate says the same and also exits 2.
    workdir
        .command()
        .args(["validate", "invalid.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("row 7, column order_id"));
}

#[test]
fn skip_invalid_sends_the_valid_rows_and_reports_the_others() {
    let workdir = Workdir::new();
    let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n";
    workdir.write(
        "day.csv",
        &format!("{header}card,1234001,S1,10.00,USD,ok,4111111111111111,0929\ncard,1234001,S2,10.001,USD,bad,4111111111111111,0929\n"),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &["--skip-invalid"]).code(1);
    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(results[0]["status"], "succeeded");
    assert_eq!(results[1]["status"], "invalid");
    assert!(
        results[1]["error"].contains("row 3, column amount"),
        "{}",
        results[1]["error"]
    );
    assert_eq!(sandbox.stats().refunds.len(), 1);
}

#[test]
fn a_changed_row_is_a_conflict_and_retry_failed_uses_the_next_key() {
    let workdir = Workdir::new();
    let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n";
    workdir.write(
        "day.csv",
        &format!("{header}card,1234001,K1,10.00,USD,ok,4111111111111111,0929\ncard,1234001,K2,20.00,USD,decline,4000000000000002,0929\n"),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &[]).code(1);
    let first = read_results(&workdir.path("day.results.csv"));
    assert_eq!(
        (first[0]["status"].as_str(), first[1]["status"].as_str()),
        ("succeeded", "declined")
    );

    // The file now asks 12.00 for K1: refused as a conflict, nothing sent.
    workdir.write(
        "day.csv",
        &format!("{header}card,1234001,K1,12.00,USD,ok,4111111111111111,0929\ncard,1234001,K2,20.00,USD,decline,4000000000000002,0929\n"),
    );
    let posts_before = sandbox.stats().refund_posts;
    workdir.run(&sandbox, "day.csv", &[]).code(1);
    assert_eq!(sandbox.stats().refund_posts, posts_before);
    let second = read_results(&workdir.path("day.results.csv"));
    assert_eq!(second[0]["status"], "conflict");
    assert!(
        second[0]["error"].contains("amount was 1000 USD minor units, now 1200"),
        "{}",
        second[0]["error"]
    );

    // --retry-failed alone does not send a declined row whose card did not change: it would be
    // declined again. It says so, and nothing is sent.
    workdir.run(&sandbox, "day.csv", &["--retry-failed"]).code(1);
    assert_eq!(sandbox.stats().refund_posts, posts_before);
    let held = read_results(&workdir.path("day.results.csv"));
    assert_eq!(held[1]["status"], "declined");
    assert!(held[1]["error"].contains("--retry-unchanged"), "{}", held[1]["error"]);

    // With --retry-unchanged it goes again under a new key; the succeeded one never.
    workdir
        .run(&sandbox, "day.csv", &["--retry-failed", "--retry-unchanged"])
        .code(1);
    let third = read_results(&workdir.path("day.results.csv"));
    assert_ne!(
        third[1]["idempotency_key"], first[1]["idempotency_key"],
        "a new generation, a new key"
    );
    assert_eq!(third[1]["status"], "declined", "the test card declines again");
    let stats = sandbox.stats();
    assert_eq!(stats.created_per_order["card|1234001|K1"], 1);
    assert_eq!(
        stats.created_per_order["card|1234001|K2"], 2,
        "the retry is a new refund attempt"
    );
}

#[test]
fn the_embedded_sandbox_runs_the_sample_without_any_configuration() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    workdir
        .command()
        .env_remove("PAYROC_API_KEY")
        .args(["run", "mixed.csv"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "[sandbox, no money moves] 5 rows: 4 succeeded, 1 declined",
        ));
    let results = read_results(&workdir.path("mixed.results.csv"));
    assert_eq!(results.len(), 5);
}

#[test]
fn no_secret_reaches_any_file_or_output() {
    let workdir = Workdir::new();
    workdir.write("card.csv", &sample("card.csv"));
    workdir.write("bank.csv", &sample("bank.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let mut printed = Vec::new();
    for file in ["card.csv", "bank.csv"] {
        let output = workdir.run(&sandbox, file, &["-vv"]).get_output().clone();
        printed.extend(output.stdout);
        printed.extend(output.stderr);
    }
    workdir
        .command()
        .args(["status", "--format", "json"])
        .assert()
        .success();
    assert_eq!(sandbox.stats().refunds.len(), 7);
    let secrets = [
        "4539858876047062",
        "4539 8588 7604 7062",
        "5555555555554444",
        "4111111111111111",
        "296753123456789",
        "1234567890",
        "011000015",
        "987654321",
        "021000021",
        "2967530000000010",
        API_KEY,
        "sbx_",
    ];
    let inputs = [workdir.path("card.csv"), workdir.path("bank.csv")];
    let mut searched = 0;
    for (path, bytes) in workdir
        .all_files()
        .into_iter()
        .filter(|(path, _)| !inputs.contains(path))
    {
        searched += 1;
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} found in {}", path.display());
        }
    }
    assert!(searched >= 3, "the ledger, its WAL and the results were searched");
    // The search can see what is there: the masked forms are in the results.
    let results = workdir.read("card.results.csv") + &workdir.read("bank.results.csv");
    assert!(
        results.contains("453985******7062") && results.contains("ach ****7890"),
        "{results}"
    );
    let printed = String::from_utf8_lossy(&printed);
    for secret in secrets {
        assert!(!printed.contains(secret), "{secret:?} printed");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| {
            std::fs::metadata(workdir.path(name))
                .expect("file exists")
                .permissions()
                .mode()
                & 0o777
        };
        // The ledger holds every key and the history: its owner's only. The results hold masked
        // payees and follow the umask, so a colleague on a shared folder can open them.
        assert_eq!(mode("ledger.sqlite"), 0o600);
        for name in ["card.results.csv", "bank.results.csv"] {
            assert_eq!(mode(name), crate::util::umask_mode(&workdir), "{name}");
        }
    }
}

/// The whole path with nothing shared in-process: `refund-batch sandbox` as its own process on a
/// loopback port, `run --env uat --api-url … --identity-url …`, and the sandbox's own counters
/// (read over HTTP from `/__sandbox/stats`) against the results CSV.
#[test]
fn against_a_separate_sandbox_process_every_row_is_sent_once() {
    use std::io::{Read, Write};

    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    let mut server = workdir
        .std_command()
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start refund-batch sandbox");
    let first_line = Lines::new(server.stdout.take().expect("stdout is piped")).wait_for("listening on");
    let address = first_line
        .trim()
        .strip_prefix("listening on http://")
        .expect("the address line")
        .to_owned();

    let api = format!("http://{address}/v1");
    let identity = format!("http://{address}");
    let arguments = [
        "--env",
        "uat",
        "--api-url",
        api.as_str(),
        "--identity-url",
        identity.as_str(),
    ];
    workdir
        .command()
        .args(arguments)
        .args(["run", "mixed.csv"])
        .assert()
        .code(1);
    workdir
        .command()
        .args(arguments)
        .args(["run", "mixed.csv"])
        .assert()
        .code(1);

    let mut stream = std::net::TcpStream::connect(&address).expect("connect to the sandbox");
    write!(
        stream,
        "GET /__sandbox/stats HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let _ = server.kill();
    let _ = server.wait();
    let body = response.split_once("\r\n\r\n").expect("an HTTP response").1;
    let stats: payroc_sandbox::Stats = serde_json::from_str(body).expect("stats JSON");

    assert_eq!(
        stats.refund_posts, 5,
        "five rows, five requests, and none on the second run"
    );
    assert!(stats.created_per_order.values().all(|count| *count == 1));
    let results = read_results(&workdir.path("mixed.results.csv"));
    for line in &results {
        let refund = stats
            .refunds
            .iter()
            .find(|refund| refund.order_id == line["order_id"])
            .expect("refund for the row");
        assert_eq!(
            (
                line["refund_id"].as_str(),
                line["response_code"].as_str(),
                line["payroc_status"].as_str()
            ),
            (
                refund.refund_id.as_str(),
                refund.response_code.as_str(),
                refund.status.as_str()
            )
        );
    }
}

#[test]
fn amounts_with_a_decimal_comma_are_read_with_the_option_and_explained_without_it() {
    let workdir = Workdir::new();
    workdir.write(
        "eu.csv",
        "method;processing_terminal_id;order_id;amount;currency;description;card_number;expiry_date\n\
         card;1234001;EU-1;1.234,56;EUR;refund;4111111111111111;0929\n\
         card;1234001;EU-2;12,5;EUR;refund;4111111111111111;0929\n",
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["validate", "eu.csv", "--delimiter", ";"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "row 2, column amount: \"1.234,56\" is not a plain decimal",
        ))
        .stderr(predicates::str::contains("with --decimal-comma this reads 1234.56"));
    workdir
        .run(&sandbox, "eu.csv", &["--delimiter", ";", "--decimal-comma"])
        .code(0);
    // The two requests go out together; Payroc may make them in either order.
    let mut amounts: Vec<i64> = sandbox.stats().refunds.iter().map(|refund| refund.amount).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [1250, 123_456]);
    let results = read_results(&workdir.path("eu.results.csv"));
    assert_eq!(results[0]["amount"], "1234.56");
    // `status` and `report` read the file again as it was run.
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["status", "eu.csv", "--delimiter", ";", "--decimal-comma"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("rows: 2 succeeded"));
    workdir
        .command()
        .args(sandbox.arguments())
        .args([
            "report",
            "eu.csv",
            "--delimiter",
            ";",
            "--decimal-comma",
            "--results",
            "again.csv",
        ])
        .assert()
        .code(0);
    let again = read_results(&workdir.path("again.csv"));
    assert_eq!(again.iter().filter(|line| line["status"] == "succeeded").count(), 2);
}

#[test]
fn results_go_to_stdout_with_a_dash_and_start_with_a_bom_on_request() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let output = workdir
        .command()
        .args(sandbox.arguments())
        .args(["run", "mixed.csv", "--results", "-"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(stdout.starts_with("row,method,"), "{stdout}");
    assert_eq!(stdout.lines().count(), 6, "a header and five rows: {stdout}");
    assert!(!workdir.path("-").exists(), "no file named -");
    workdir.run(&sandbox, "mixed.csv", &["--results-bom"]).code(1);
    let bytes = std::fs::read(workdir.path("mixed.results.csv")).expect("results");
    assert!(bytes.starts_with("\u{feff}row,".as_bytes()));
}

#[test]
fn every_problem_is_listed_by_row_and_column_for_people_and_programs() {
    let workdir = Workdir::new();
    workdir.write("invalid.csv", &sample("invalid.csv"));
    // validate --format json: one object on stdout, every problem by row and column.
    let output = workdir
        .command()
        .args(["validate", "invalid.csv", "--format", "json"])
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let problems = report["problems"].as_array().expect("problems");
    assert_eq!(report["invalid"], report["rows"], "{report}");
    assert!(
        problems.len() >= report["rows"].as_u64().expect("rows") as usize,
        "{report}"
    );
    assert!(
        problems
            .iter()
            .all(|problem| problem["row"].as_u64().is_some_and(|row| row >= 2))
    );
    assert!(problems.iter().any(|problem| problem["column"] == "amount"), "{report}");
    // A refused run writes the same problems as a CSV, and nothing is sent.
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .run(&sandbox, "invalid.csv", &["--errors", "problems.csv"])
        .code(2);
    assert_eq!(sandbox.stats().refund_posts, 0);
    let lines = read_results(&workdir.path("problems.csv"));
    assert_eq!(lines.len(), problems.len());
    assert!(
        lines
            .iter()
            .all(|line| !line["row"].is_empty() && !line["problem"].is_empty())
    );
    // Nor may it replace the input.
    workdir
        .command()
        .args(["validate", "invalid.csv", "--errors", "invalid.csv"])
        .assert()
        .code(2);
    assert_eq!(workdir.read("invalid.csv"), sample("invalid.csv"));
}
