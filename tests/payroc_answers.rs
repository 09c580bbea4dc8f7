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
    workdir.run(&sandbox, "outcomes.csv", &["--retry-failed"]).code(1);
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
    workdir.run(&sandbox, "outcomes.csv", &["--retry-failed"]).code(1);
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
