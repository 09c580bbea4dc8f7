//! Every way `refund-batch run` ends, by exit code, each with a test that takes it: the table
//! [`EXIT_PATHS`] names them, here or in the module that tests the path in depth, and
//! `every_exit_path_has_a_test_asserting_its_code` checks that each named test exists and asserts
//! that code. 0: every row done; 1: finished, some rows need a person; 2: refused before sending
//! anything; 3: incomplete or failed after sending, run again; 4: authentication failed; 5: the
//! clock is off Payroc's; 75: busy, try later. The help text lists the same codes (checked below).

use std::io::Write;
use std::process::Stdio;

use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use crate::util::{TestSandbox, Workdir, read_results, sample};

/// (exit code, the path, the test that takes it as `module::function`).
#[rustfmt::skip]
const EXIT_PATHS: &[(i32, &str, &str)] = &[
    (0, "every row succeeded", "exit_codes::exit_0_when_every_row_succeeded_and_again_for_the_finished_file"),
    (0, "the same finished file again: nothing sent", "exit_codes::exit_0_when_every_row_succeeded_and_again_for_the_finished_file"),
    (1, "a declined card", "exit_codes::exit_1_when_a_card_is_declined"),
    (1, "an invalid row skipped with --skip-invalid", "end_to_end::skip_invalid_sends_the_valid_rows_and_reports_the_others"),
    (1, "a conflict: the order was refunded by the other method", "exactly_once::the_same_order_by_card_then_by_bank_is_one_refund"),
    (1, "a conflict: a row changed after it was sent", "end_to_end::a_changed_row_is_a_conflict_and_retry_failed_uses_the_next_key"),
    (2, "usage: --rate 0, --concurrency 0", "exit_codes::exit_2_means_nothing_was_sent"),
    (2, "an invalid row without --skip-invalid", "exit_codes::exit_2_means_nothing_was_sent"),
    (2, "no API key for --env uat", "exit_codes::exit_2_means_nothing_was_sent"),
    (2, "production without --yes and stdin not a terminal", "exit_codes::exit_2_means_nothing_was_sent"),
    (2, "over --max-total", "exit_codes::exit_2_means_nothing_was_sent"),
    (2, "every bad row and column of the sample named", "end_to_end::an_invalid_file_exits_2_sends_nothing_and_names_every_bad_row_and_column"),
    (2, "a key file others can read; plain http off loopback", "data_protection::secrets_are_taken_only_from_safe_places_and_card_data_only_over_https"),
    (3, "unknown: 500 after each refund was made, --max-retries 0", "faults::rows_unknown_after_retries_run_out_are_settled_by_reconcile"),
    (3, "interrupted by SIGTERM", "faults::sigterm_stops_cleanly_writes_the_results_and_the_run_resumes"),
    (3, "stopped early: refunds in a row failed the same way", "faults::a_terminal_without_the_capability_stops_the_run_early"),
    (3, "unknown and sent more than six days ago: held for reconcile", "faults::a_row_first_sent_more_than_six_days_ago_is_reconciled_not_resent"),
    (3, "the results path is a directory, after the refunds were made", "exactly_once::a_failure_after_sending_exits_3_closes_the_batch_and_the_results_can_be_written_later"),
    (4, "a wrong API key: 401", "faults::bad_credentials_stop_the_run_with_exit_4_and_nothing_sent"),
    (4, "an API key the identity service forbids: 403", "payroc_answers::a_refusal_from_the_identity_service_is_reported_in_full_with_exit_4"),
    (5, "the local clock more than five minutes off Payroc's", "promise::a_clock_more_than_five_minutes_off_payrocs_sends_nothing_and_exits_5"),
    (75, "the ledger is in use by another command: try later", "faults::a_second_run_on_the_same_ledger_is_refused"),
];

const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n";

#[test]
fn every_exit_path_has_a_test_asserting_its_code() {
    for code in [0, 1, 2, 3, 4, 5, 75] {
        assert!(
            EXIT_PATHS.iter().any(|(listed, _, _)| *listed == code),
            "no path listed for exit {code}"
        );
    }
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for (code, path, test) in EXIT_PATHS {
        let (module, function) = test.rsplit_once("::").expect("module::function");
        // A module is a file, or a folder whose `mod.rs` holds it.
        let module = module.replace("::", "/");
        let file = tests.join(format!("{module}.rs"));
        let file = if file.exists() {
            file
        } else {
            tests.join(&module).join("mod.rs")
        };
        let source =
            std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{test} (exit {code}, {path}): {error}"));
        let start = source
            .find(&format!("#[test]\nfn {function}("))
            .unwrap_or_else(|| panic!("exit {code}, {path}: no test {test}"));
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        assert!(
            body.contains(&format!(".code({code})")) || body.contains(&format!("Some({code})")),
            "exit {code}, {path}: {test} does not assert exit {code}"
        );
    }
}

#[test]
fn every_exit_code_is_in_the_help_and_the_readme() {
    let help = Workdir::new().command().arg("--help").output().expect("--help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("the README");
    for code in [0, 1, 2, 3, 4, 5, 75] {
        assert!(
            help.contains(&format!("\n  {code} ")),
            "exit {code} is not in --help:\n{help}"
        );
        assert!(
            readme.contains(&format!("\n| {code} |")),
            "exit {code} is not in the README's table"
        );
    }
}

#[test]
fn exit_0_when_every_row_succeeded_and_again_for_the_finished_file() {
    let workdir = Workdir::new();
    workdir.write("card.csv", &sample("card.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "card.csv", &[]).code(0);
    let results = read_results(&workdir.path("card.results.csv"));
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|line| line["status"] == "succeeded"), "{results:?}");
    assert_eq!(sandbox.stats().refunds.len(), 4);

    let posts = sandbox.stats().refund_posts;
    workdir
        .run(&sandbox, "card.csv", &[])
        .code(0)
        .stderr(predicate::str::contains("nothing to send: 4 rows already done"));
    assert_eq!(sandbox.stats().refund_posts, posts, "the finished file sends nothing");
}

#[test]
fn exit_1_when_a_card_is_declined() {
    let workdir = Workdir::new();
    workdir.write(
        "day.csv",
        &format!(
            "{HEADER}card,1234001,D1,10.00,USD,ok,4111111111111111,0929\n\
             card,1234001,D2,20.00,USD,declines,4000000000000002,0929\n"
        ),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &[]).code(1);
    let results = read_results(&workdir.path("day.results.csv"));
    let statuses: Vec<&str> = results.iter().map(|line| line["status"].as_str()).collect();
    assert_eq!(statuses, ["succeeded", "declined"]);
    assert_eq!(sandbox.stats().refunds.len(), 2, "a declined refund is still a record");
}

/// One way to be refused with exit 2.
struct Refusal {
    what: &'static str,
    /// `uat` or `production`.
    env: &'static str,
    /// After `run`.
    arguments: &'static [&'static str],
    /// Typed into stdin through a pipe, or `None` for no stdin at all (as in cron).
    stdin: Option<&'static str>,
    without_api_key: bool,
    says: &'static str,
}

#[test]
fn exit_2_means_nothing_was_sent() {
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let valid = format!("{HEADER}card,1234001,R1,10.00,USD,ok,4111111111111111,0929\n");
    let refusals = [
        Refusal {
            what: "usage: --rate 0",
            env: "uat",
            arguments: &["day.csv", "--rate", "0"],
            stdin: None,
            without_api_key: false,
            says: "--rate must be at least 1",
        },
        Refusal {
            what: "usage: --concurrency 0",
            env: "uat",
            arguments: &["day.csv", "--concurrency", "0"],
            stdin: None,
            without_api_key: false,
            says: "--concurrency must be at least 1",
        },
        Refusal {
            what: "an invalid row without --skip-invalid",
            env: "uat",
            arguments: &["invalid.csv"],
            stdin: None,
            without_api_key: false,
            says: "row 3, column amount",
        },
        Refusal {
            what: "no API key for --env uat",
            env: "uat",
            arguments: &["day.csv"],
            stdin: None,
            without_api_key: true,
            says: "PAYROC_API_KEY",
        },
        Refusal {
            what: "production without --yes, no stdin",
            env: "production",
            arguments: &["day.csv"],
            stdin: None,
            without_api_key: false,
            says: "refusing without --yes because there is no terminal to ask on",
        },
        Refusal {
            what: "production without --yes, \"yes\" from a pipe, which is not a terminal",
            env: "production",
            arguments: &["day.csv"],
            stdin: Some("yes\n"),
            without_api_key: false,
            says: "refusing without --yes because there is no terminal to ask on",
        },
        Refusal {
            what: "over --max-total",
            env: "uat",
            arguments: &["day.csv", "--max-total", "5.00:USD"],
            stdin: None,
            without_api_key: false,
            says: "more than --max-total 5.00 USD; nothing was sent",
        },
    ];
    for refusal in refusals {
        let workdir = Workdir::new();
        workdir.write("day.csv", &valid);
        workdir.write(
            "invalid.csv",
            &format!("{valid}card,1234001,R2,10.001,USD,ok,4111111111111111,0929\n"),
        );
        let mut arguments = sandbox.arguments();
        arguments[1] = refusal.env.into();
        let mut command = workdir.std_command();
        command.args(arguments).arg("run").args(refusal.arguments);
        if refusal.without_api_key {
            command.env_remove("PAYROC_API_KEY");
        }
        let mut child = command
            .stdin(if refusal.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start refund-batch");
        if let Some(text) = refusal.stdin {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            // It may have exited without reading: a closed pipe is not a failure here.
            let _ = stdin.write_all(text.as_bytes());
        }
        let output = child.wait_with_output().expect("wait for refund-batch");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}: {stderr}", refusal.what);
        assert!(
            stderr.contains(refusal.says),
            "{}: missing {:?} in {stderr}",
            refusal.what,
            refusal.says
        );
        let stats = sandbox.stats();
        assert_eq!(stats.refund_posts, 0, "{}: 2 means nothing was sent", refusal.what);
        assert_eq!(stats.tokens_issued, 0, "{}: not even a token was fetched", refusal.what);
        assert!(
            !workdir.path("day.results.csv").exists() && !workdir.path("invalid.results.csv").exists(),
            "{}: no results for a run that never started",
            refusal.what
        );
    }
}

#[test]
fn the_man_page_names_no_page_that_does_not_exist_and_every_command_has_examples() {
    let man = Workdir::new().command().arg("man").output().expect("man");
    let man = String::from_utf8_lossy(&man.stdout).into_owned();
    assert!(
        !man.contains("refund\\-batch\\-run(1)"),
        "no page per command is installed"
    );
    assert!(man.contains("COMMAND: run") && man.contains("EXIT STATUS"), "{man}");
    for command in [
        "run",
        "validate",
        "status",
        "reconcile",
        "sandbox",
        "completions",
        "man",
    ] {
        let help = Workdir::new()
            .command()
            .args([command, "--help"])
            .output()
            .expect("help");
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        assert!(help.contains("Example"), "{command} --help has no example:\n{help}");
        assert!(
            help.contains("Global options"),
            "{command} --help groups the global options apart"
        );
    }
}
