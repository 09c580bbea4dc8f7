//! What a cron job reads: with `--log-format json` every line on stderr is one JSON object,
//! refund events name the row and the order, progress comes from this run's own pace, and
//! totals are grouped for people and plain for programs.

use payroc_sandbox::SandboxConfig;

use crate::util::{TestSandbox, Workdir, sample};

#[test]
fn with_log_format_json_every_line_on_stderr_is_one_json_object() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    workdir.write("invalid.csv", &sample("invalid.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    for (file, code) in [("mixed.csv", 1), ("invalid.csv", 2)] {
        let output = workdir
            .command()
            .args(["--log-format", "json", "-v"])
            .args(sandbox.arguments())
            .args(["run", file])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(code), "{file}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.trim().is_empty(), "{file}: something was said");
        let mut finished = Vec::new();
        for line in stderr.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{file}: not JSON ({error}): {line}"));
            assert!(value.is_object(), "{file}: {line}");
            if value["message"] == "refund finished" {
                finished.push((value["row"].as_u64(), value["order_id"].as_str().map(str::to_owned)));
            }
        }
        // Each refund's event names its row and order, as the file does, and no payee's number.
        if file == "mixed.csv" {
            finished.sort();
            let expected: Vec<(Option<u64>, Option<String>)> = (2..=6)
                .map(|row| (Some(row), Some(format!("M20261123-000{}", row - 1))))
                .collect();
            assert_eq!(finished, expected, "{stderr}");
            for number in ["4539858876047062", "4000000000000002", "1234567890", "2967530000000010"] {
                assert!(!stderr.contains(number), "{number} in the log");
            }
        }
    }
}

#[test]
fn with_log_format_json_a_usage_error_is_json_too() {
    let workdir = Workdir::new();
    let output = workdir
        .command()
        .args(["--log-format", "json", "run", "day.csv", "--rate", "abc"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON object");
    assert_eq!(value["level"], "error");
    assert!(
        value["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid value 'abc' for '--rate"),
        "{value}"
    );
}

#[test]
fn progress_on_a_resume_counts_only_this_runs_sends_and_starts_from_the_planned_rate() {
    let workdir = Workdir::new();
    let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n";
    let row = |number: u32| format!("card,1234001,PR-{number},1.00,USD,refund,4111111111111111,1230\n");
    let first: String = (1..=30).map(row).collect();
    workdir.write("day.csv", &format!("{header}{first}"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &["--rate", "1000"]).code(0);
    // The same file grown by two rows: 30 are done already, 2 are sent at 4 a second.
    let more: String = (31..=32).map(row).collect();
    workdir.write("day.csv", &format!("{header}{first}{more}"));
    let output = workdir
        .command_with_progress()
        .env("REFUND_BATCH_PROGRESS_INTERVAL_MS", "0")
        .args(["--log-format", "json"])
        .args(sandbox.arguments())
        .args(["run", "day.csv", "--rate", "4"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0));
    let progress: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("one JSON object a line"))
        .filter(|value| value["event"] == "progress")
        .collect();
    assert_eq!(progress.len(), 32, "a line for every row: {progress:?}");
    // The first ETA is the rows left at --rate: 31 rows at 4 a second.
    assert_eq!(progress[0]["done"], 1);
    assert_eq!(progress[0]["eta_seconds"], 7);
    for line in &progress {
        let done = line["done"].as_u64().unwrap();
        assert!(line["eta_seconds"].is_u64(), "{line}");
        if done <= 30 {
            // Rows the first run finished are no pace of this run's.
            assert!(line["rows_per_second"].is_null(), "{line}");
        }
    }
}

#[test]
fn totals_are_grouped_for_people_and_plain_for_programs() {
    let workdir = Workdir::new();
    workdir.write(
        "big.csv",
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n\
         card,1234001,BIG-1,2166839.92,USD,refund,4111111111111111,0929\n",
    );
    workdir
        .command()
        .args(["validate", "big.csv"])
        .assert()
        .code(0)
        .stderr(predicates::str::contains("would refund 2,166,839.92 USD"));
    let output = workdir
        .command()
        .args(["validate", "big.csv", "--format", "json"])
        .output()
        .expect("validate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("2166839.92") && !stdout.contains("2,166,839.92"),
        "{stdout}"
    );
}
