//! What a person sees: the summary, `status`, `validate` and error screens, pinned as insta
//! snapshots with paths, times, ports and digests filtered out. Also the production guard rails.

use payroc_sandbox::SandboxConfig;

use crate::util::{TestSandbox, Workdir, sample};

/// Runs `command` and returns "exit N" + stdout + stderr, as the snapshot text.
fn screen(command: &mut assert_cmd::Command) -> String {
    let output = command.output().expect("run refund-batch");
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Filters that make a screen the same on every machine and every run.
fn filters(workdir: &Workdir) -> Vec<(String, String)> {
    let directory = workdir.path("");
    let directory = directory.to_string_lossy();
    vec![
        (regex_escape(directory.trim_end_matches('/')), "[DIR]".into()),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z".into(), "[TIME]".into()),
        (r"127\.0\.0\.1:\d+".into(), "127.0.0.1:[PORT]".into()),
        (r"[0-9a-f]{64}".into(), "[SHA256]".into()),
        (r"\(sha256 [0-9a-f]{12}\)".into(), "(sha256 [SHA])".into()),
    ]
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|character| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(character);
            special.then_some('\\').into_iter().chain(std::iter::once(character))
        })
        .collect()
}

macro_rules! assert_screen {
    ($workdir:expr, $name:expr, $text:expr) => {
        let filters = filters($workdir);
        let filters: Vec<(&str, &str)> = filters.iter().map(|(from, to)| (from.as_str(), to.as_str())).collect();
        insta::with_settings!({ filters => filters, prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

#[test]
fn validate_screens() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    workdir.write("invalid.csv", &sample("invalid.csv"));
    assert_screen!(
        &workdir,
        "validate_valid",
        screen(workdir.command().args(["validate", "mixed.csv"]))
    );
    assert_screen!(
        &workdir,
        "validate_invalid",
        screen(workdir.command().args(["validate", "invalid.csv"]))
    );
    assert_screen!(
        &workdir,
        "validate_missing_file",
        screen(workdir.command().args(["validate", "nowhere.csv"]))
    );
}

#[test]
fn run_summary_and_status_screens() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    assert_screen!(
        &workdir,
        "run_summary",
        screen(workdir.command().args(["run", "mixed.csv"]))
    );
    assert_screen!(
        &workdir,
        "run_again_summary",
        screen(workdir.command().args(["run", "mixed.csv"]))
    );
    assert_screen!(
        &workdir,
        "status_text",
        screen(workdir.command().args(["status", "mixed.csv"]))
    );
    assert_screen!(
        &workdir,
        "status_json",
        screen(workdir.command().args(["status", "mixed.csv", "--format", "json"]))
    );
}

#[test]
fn production_without_yes_and_without_a_terminal_sends_nothing() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let mut arguments = sandbox.arguments();
    arguments[1] = "production".into();
    let text = screen(workdir.command().args(&arguments).args(["run", "mixed.csv"]));
    assert_screen!(&workdir, "production_without_yes", text);
    assert_eq!(sandbox.stats().refund_posts, 0);
    assert_eq!(sandbox.stats().tokens_issued, 0);
    assert!(
        !workdir.path("ledger.sqlite").exists(),
        "not even the ledger was touched"
    );

    // With --yes it goes ahead (here against the sandbox standing in for production).
    workdir
        .command()
        .args(&arguments)
        .args(["run", "mixed.csv", "--yes"])
        .assert()
        .code(1);
    assert_eq!(sandbox.stats().refunds.len(), 5);
}

#[test]
fn max_total_refuses_a_file_over_the_cap() {
    let workdir = Workdir::new();
    workdir.write("mixed.csv", &sample("mixed.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    let text = screen(workdir.command().args(sandbox.arguments()).args([
        "run",
        "mixed.csv",
        "--max-total",
        "100.00:USD",
        "--max-total",
        "50:KWD",
    ]));
    assert_screen!(&workdir, "max_total_refused", text);
    assert_eq!(sandbox.stats().refund_posts, 0);
    // A cap the file stays under lets it through.
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["run", "mixed.csv", "--max-total", "162.09:USD"])
        .assert()
        .code(1);
    assert_eq!(sandbox.stats().refunds.len(), 5);
}
