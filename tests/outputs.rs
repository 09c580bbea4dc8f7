//! Files the tool writes never replace files it needs: an output path naming the input, the
//! ledger or one of its side files — directly, through a symlink or a hard link — is refused
//! with exit 2 before anything is sent, and the file is left as it was.

use std::path::Path;

use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use crate::util::{TestSandbox, Workdir};

const FILE: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n\
                    card,1234001,OUT-1,49.99,USD,refund,4111111111111111,0929\n";

fn bytes(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// `run --results RESULTS` (after `prepare`, which may make the ledger or links) exits 2 naming
/// both paths, leaves `protected` byte for byte as it was, and sends nothing.
fn refused(results: &str, protected: &str, prepare: impl FnOnce(&Workdir, &TestSandbox)) {
    let workdir = Workdir::new();
    workdir.write("day.csv", FILE);
    let sandbox = TestSandbox::start(SandboxConfig::default());
    prepare(&workdir, &sandbox);
    let before = bytes(&workdir.path(protected));
    let posts = sandbox.stats().refund_posts;
    workdir
        .run(&sandbox, "day.csv", &["--results", results])
        .code(2)
        .stderr(predicate::str::contains(format!("--results {results} is the")))
        .stderr(predicate::str::contains(protected))
        .stderr(predicate::str::contains("Nothing was sent"));
    assert_eq!(bytes(&workdir.path(protected)), before, "{protected} is unchanged");
    assert_eq!(sandbox.stats().refund_posts, posts, "nothing was sent");
}

/// A first run on another file, so that the ledger exists and holds a refund.
fn make_ledger(workdir: &Workdir, sandbox: &TestSandbox) {
    workdir.write("earlier.csv", &FILE.replace("OUT-1", "OUT-0"));
    workdir.run(sandbox, "earlier.csv", &[]).code(0);
}

#[test]
fn results_naming_the_input_are_refused() {
    refused("day.csv", "day.csv", |_, _| {});
}

#[test]
fn results_naming_the_ledger_are_refused() {
    refused("ledger.sqlite", "ledger.sqlite", make_ledger);
}

#[test]
fn results_naming_the_ledgers_wal_are_refused() {
    refused("ledger.sqlite-wal", "ledger.sqlite-wal", make_ledger);
    refused("ledger.sqlite.lock", "ledger.sqlite.lock", make_ledger);
}

#[test]
fn results_through_a_symlink_to_the_input_are_refused() {
    refused("link.csv", "day.csv", |workdir, _| {
        std::os::unix::fs::symlink(workdir.path("day.csv"), workdir.path("link.csv")).expect("symlink");
    });
}

#[test]
fn results_through_a_hard_link_to_the_ledger_are_refused() {
    refused("copy.csv", "ledger.sqlite", |workdir, sandbox| {
        make_ledger(workdir, sandbox);
        std::fs::hard_link(workdir.path("ledger.sqlite"), workdir.path("copy.csv")).expect("hard link");
    });
}

#[test]
fn reconcile_and_status_refuse_the_same_paths() {
    let workdir = Workdir::new();
    workdir.write("day.csv", FILE);
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &[]).code(0);
    let ledger = bytes(&workdir.path("ledger.sqlite"));
    let input = bytes(&workdir.path("day.csv"));
    workdir
        .reconcile(&sandbox, "day.csv", &["--results", "day.csv"])
        .code(2)
        .stderr(predicate::str::contains("--results day.csv is the input file day.csv"));
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["status", "day.csv", "--write-results", "ledger.sqlite"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--write-results ledger.sqlite is the ledger"));
    assert_eq!(bytes(&workdir.path("ledger.sqlite")), ledger);
    assert_eq!(bytes(&workdir.path("day.csv")), input);
    assert_eq!(sandbox.stats().refund_posts, 1, "only the first run sent");
}
