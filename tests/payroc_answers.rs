//! Every answer Payroc's specification allows, read the way the specification writes it: each
//! card and bank result, a partial approval, custom fields Payroc drops, returns and reversals
//! seen later by `reconcile --refresh`, and the identity service's refusals.

use payroc_sandbox::SandboxConfig;
use predicates::prelude::*;

use crate::util::{TestSandbox, Workdir, read_results, sample};

/// (status, payroc_status, response_code, authorized_amount) per row of `samples/outcomes.csv`.
const EXPECTED: [(&str, &str, &str, &str); 13] = [
    ("succeeded", "ready", "A", "49.99"),
    ("declined", "declined", "D", "0.00"),
    ("declined", "declined", "R", "0.00"),
    ("declined", "declined", "C", "0.00"),
    ("queued", "pending", "E", "30.00"),
    ("partial", "ready", "P", "37.50"),
    ("queued", "declined", "A", "10.00"),
    ("succeeded", "ready", "A", "12.34"),
    ("succeeded", "ready", "A", "40.00"),
    ("declined", "declined", "", "40.00"),
    ("succeeded", "pending", "", "40.00"),
    ("succeeded", "ready", "A", "40.00"),
    ("succeeded", "ready", "A", "49.99"),
];

fn line_of<'a>(
    results: &'a [std::collections::HashMap<String, String>],
    order_id: &str,
) -> &'a std::collections::HashMap<String, String> {
    results
        .iter()
        .find(|line| line["order_id"] == order_id)
        .unwrap_or_else(|| panic!("no line for {order_id}"))
}

#[test]
fn every_answer_is_read_as_payroc_writes_it_and_followed_until_final() {
    let workdir = Workdir::new();
    workdir.write("outcomes.csv", &sample("outcomes.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "outcomes.csv", &[]).code(1);
    let results = read_results(&workdir.path("outcomes.results.csv"));
    assert_eq!(results.len(), EXPECTED.len());
    for (line, (status, payroc_status, code, authorized)) in results.iter().zip(EXPECTED) {
        assert_eq!(
            (
                line["status"].as_str(),
                line["payroc_status"].as_str(),
                line["response_code"].as_str(),
                line["authorized_amount"].as_str()
            ),
            (status, payroc_status, code, authorized),
            "{line:?}"
        );
    }
    let approved = line_of(&results, "O20261125-01");
    assert_eq!(approved["approval_code"].len(), 6);
    assert_eq!(approved["processor_response_code"], "00");
    assert!(
        line_of(&results, "O20261125-07")["notes"].contains("\"declined\""),
        "an approval code with a declined status is never succeeded, and says why"
    );
    let dropped = &line_of(&results, "O20261125-08")["notes"];
    assert!(
        dropped.contains("\"ticket\"") && !dropped.contains("invoiceNumber"),
        "{dropped}"
    );

    // The optional columns reached Payroc in its shapes.
    let stats = sandbox.stats();
    let first = stats
        .refunds
        .iter()
        .find(|refund| refund.order_id == "O20261125-01")
        .expect("refund");
    let stored = sandbox.card_refund(&first.refund_id);
    assert_eq!(stored["customFields"][0]["name"], "invoiceNumber");

    // A partial approval is never re-sent: a second send would refund the approved part twice.
    let posts = stats.refund_posts;
    workdir
        .run(&sandbox, "outcomes.csv", &["--retry-failed", "--retry-unchanged"])
        .code(1);
    let stats = sandbox.stats();
    assert_eq!(
        stats.created_per_order["card|1234001|O20261125-06"], 1,
        "the partial row was not sent again"
    );
    assert!(
        stats.refund_posts > posts,
        "the declined rows were retried under new keys"
    );

    // Days later: the batch closes, one bank transfer comes back, one card refund is reversed.
    sandbox.sandbox().settle();
    let approved_refund = stats
        .refunds
        .iter()
        .find(|refund| refund.order_id == "O20261125-09")
        .expect("bank refund");
    let card_refund = stats
        .refunds
        .iter()
        .find(|refund| refund.order_id == "O20261125-08")
        .expect("card refund");
    assert!(sandbox.sandbox().reverse(&card_refund.refund_id));
    let posts = sandbox.stats().refund_posts;
    workdir
        .command()
        .args(sandbox.arguments())
        .args(["reconcile", "outcomes.csv", "--refresh"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refunds read again at Payroc"));
    assert_eq!(sandbox.stats().refund_posts, posts, "refresh sends no refund");
    let results = read_results(&workdir.path("outcomes.results.csv"));
    assert_eq!(line_of(&results, "O20261125-12")["status"], "returned");
    assert_eq!(line_of(&results, "O20261125-08")["status"], "reversed");
    assert_eq!(line_of(&results, "O20261125-09")["status"], "succeeded");
    assert_eq!(line_of(&results, "O20261125-09")["payroc_status"], "complete");
    assert_eq!(line_of(&results, "O20261125-01")["payroc_status"], "complete");
    assert!(!approved_refund.refund_id.is_empty());

    // A returned transfer can be sent again once its bank details are fixed; a reversed refund
    // is not re-sent by itself.
    let fixed = sample("outcomes.csv").replace("99990005", "55550005");
    workdir.write("outcomes.csv", &fixed);
    workdir
        .run(&sandbox, "outcomes.csv", &["--retry-failed", "--retry-unchanged"])
        .code(1);
    let stats = sandbox.stats();
    assert_eq!(
        stats.created_per_order["bank|1234001|O20261125-12"], 2,
        "sent again after the return"
    );
    assert_eq!(
        stats.created_per_order["card|1234001|O20261125-08"], 1,
        "the reversed refund was not"
    );
    let results = read_results(&workdir.path("outcomes.results.csv"));
    assert_eq!(line_of(&results, "O20261125-12")["status"], "succeeded");
    assert_eq!(line_of(&results, "O20261125-08")["status"], "reversed");
}

#[test]
fn a_refusal_from_the_identity_service_is_reported_in_full_with_exit_4() {
    let workdir = Workdir::new();
    workdir.write("card.csv", &sample("card.csv"));
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .command()
        .env("PAYROC_API_KEY", "sandbox-forbidden-key")
        .args(sandbox.arguments())
        .args(["run", "card.csv"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "authentication failed: HTTP 403: Forbidden — API key not allowed",
        ));
    assert_eq!(sandbox.stats().refund_posts, 0);
}

const BANK_HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";

#[test]
fn a_bank_transfer_declined_with_an_approval_code_is_declined_and_not_refunded() {
    let workdir = Workdir::new();
    workdir.write(
        "bank.csv",
        &format!(
            "{BANK_HEADER}bank,1234001,BD-1,40.00,USD,refund,,,99990007,011000015,Grace Hopper\n\
             bank,1234001,BD-2,12.00,USD,refund,,,1234567890,011000015,Grace Hopper\n"
        ),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir
        .run(&sandbox, "bank.csv", &[])
        .code(1)
        .stderr(predicate::str::contains("2 rows: 1 succeeded, 1 declined"))
        .stderr(predicate::str::contains("refunded: 12.00 USD\n"));
    let results = read_results(&workdir.path("bank.results.csv"));
    let declined = line_of(&results, "BD-1");
    assert_eq!(
        (
            declined["status"].as_str(),
            declined["payroc_status"].as_str(),
            declined["response_code"].as_str()
        ),
        ("declined", "declined", "A"),
        "{declined:?}"
    );
    assert_eq!(line_of(&results, "BD-2")["status"], "succeeded");
}

#[test]
fn refresh_follows_a_complete_bank_transfer_for_its_return_window() {
    let workdir = Workdir::new();
    workdir.write(
        "day.csv",
        &format!(
            "{BANK_HEADER}bank,1234001,RW-1,40.00,USD,refund,,,1234567890,011000015,Grace Hopper\n\
             card,1234001,RW-2,12.34,USD,refund,4111111111111111,1230,,,\n"
        ),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &[]).code(0);
    let refund_id = |order: &str| {
        sandbox
            .stats()
            .refunds
            .iter()
            .find(|refund| refund.order_id == order)
            .map(|refund| refund.refund_id.clone())
            .expect("refund")
    };
    let (bank, card) = (refund_id("RW-1"), refund_id("RW-2"));
    let refresh = |extra: &[&str]| {
        let mut arguments = vec!["--refresh"];
        arguments.extend_from_slice(extra);
        workdir.reconcile(&sandbox, "day.csv", &arguments)
    };
    let status_of = |order: &str| {
        let results = read_results(&workdir.path("day.results.csv"));
        let line = line_of(&results, order);
        (line["status"].clone(), line["payroc_status"].clone())
    };

    // The batch settles: both are complete.
    sandbox.sandbox().settle();
    refresh(&[]).code(0);
    assert_eq!(status_of("RW-1"), ("succeeded".into(), "complete".into()));
    assert_eq!(status_of("RW-2"), ("succeeded".into(), "complete".into()));

    // Days later the customer's bank returns the transfer: refresh still reads it and says so.
    // A complete card refund is final and not read again.
    assert!(sandbox.sandbox().return_transfer(&bank));
    assert!(sandbox.sandbox().reverse(&card));
    let posts = sandbox.stats().refund_posts;
    refresh(&[]).code(1).stderr(predicate::str::contains(
        "refresh: 1 refunds read again at Payroc, 1 changed",
    ));
    assert_eq!(status_of("RW-1"), ("returned".into(), "returned".into()));
    assert_eq!(status_of("RW-2"), ("succeeded".into(), "complete".into()));
    assert_eq!(sandbox.stats().refund_posts, posts, "refresh sends nothing");
}

#[test]
fn a_complete_bank_transfer_older_than_the_return_window_is_not_read_again() {
    let workdir = Workdir::new();
    workdir.write(
        "day.csv",
        &format!("{BANK_HEADER}bank,1234001,RO-1,40.00,USD,refund,,,1234567890,011000015,Grace Hopper\n"),
    );
    let sandbox = TestSandbox::start(SandboxConfig::default());
    workdir.run(&sandbox, "day.csv", &[]).code(0);
    sandbox.sandbox().settle();
    workdir.reconcile(&sandbox, "day.csv", &["--refresh"]).code(0);
    let bank = sandbox.stats().refunds[0].refund_id.clone();
    assert!(sandbox.sandbox().return_transfer(&bank));
    crate::util::age_ledger(&workdir.path("ledger.sqlite"), 61);
    workdir
        .reconcile(&sandbox, "day.csv", &["--refresh"])
        .code(0)
        .stderr(predicate::str::contains("refresh: 0 refunds read again"));
    workdir
        .reconcile(&sandbox, "day.csv", &["--refresh", "--return-window-days", "90"])
        .code(1);
    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(results[0]["status"], "returned");
}
