//! A ledger written by an earlier version opens and upgrades in place, keeps what it knew, and
//! carries its unknown rows' "may have reached Payroc" into the new schema.

use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use crate::util::{TestSandbox, Workdir, read_results, sample};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

#[test]
fn a_schema_2_ledger_upgrades_in_place_and_keeps_every_refund() {
    let workdir = Workdir::new();
    std::fs::copy(fixture("ledger-v2.sqlite"), workdir.path("ledger.sqlite")).expect("copy the fixture");
    workdir.write("mixed.csv", &sample("mixed.csv"));
    std::fs::copy(fixture("ledger-v2-unknown.csv"), workdir.path("unknown.csv")).expect("copy");

    // The embedded sandbox starts empty: anything sent would show up as a new refund there, and
    // the run says nothing was sent.
    workdir
        .command()
        .args(["run", "mixed.csv"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "nothing to send: 5 rows already done in the ledger",
        ));
    let results = read_results(&workdir.path("mixed.results.csv"));
    assert_eq!(
        results.iter().map(|line| line["status"].as_str()).collect::<Vec<_>>(),
        ["succeeded", "declined", "succeeded", "succeeded", "succeeded"]
    );
    assert!(results.iter().all(|line| line["refund_id"].len() == 10));

    let connection = rusqlite::Connection::open(workdir.path("ledger.sqlite")).expect("ledger");
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 7, "upgraded to the current schema");
    let (keys, generations): (i64, i64) = connection
        .query_row(
            "SELECT (SELECT COUNT(*) FROM keys), (SELECT SUM(generation + 1) FROM refunds)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("count keys");
    assert_eq!(keys, generations, "every key ever handed out is still in the ledger");
    let flagged: Vec<(String, bool)> = connection
        .prepare("SELECT order_id, may_have_reached FROM refunds ORDER BY id")
        .expect("query")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    for (order_id, may_have_reached) in &flagged {
        assert_eq!(
            *may_have_reached,
            order_id.starts_with("V2-"),
            "{order_id}: only the rows left unknown may have reached Payroc"
        );
    }
    // The fixture was written on a fixed day; its unknown rows' first send must stay younger than
    // the six days after which a row is no longer re-sent blindly, or this test would test that
    // guard instead once the calendar passes it.
    connection
        .execute(
            "UPDATE refunds SET first_sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE order_id LIKE 'V2-%'",
            [],
        )
        .expect("make the unknown rows' first send recent");
    drop(connection);

    // Those unknown rows keep their keys, and a refusal of their re-send proves nothing.
    let sandbox = TestSandbox::start(SandboxConfig::default());
    sandbox.sandbox().forbid_terminal("1234001");
    workdir
        .run(&sandbox, "unknown.csv", &["--retry-failed", "--max-retries", "0"])
        .code(3);
    for line in read_results(&workdir.path("unknown.results.csv")) {
        assert_eq!(line["status"], "unknown", "{line:?}");
        assert_eq!(line["http_status"], "403");
    }
    assert_eq!(sandbox.stats().refunds.len(), 0);
}
