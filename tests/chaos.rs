//! The chaos test: every sandbox fault at once, the real binary killed with SIGKILL at random
//! moments again and again, then resumed until it finishes. Each moment is an event, not a time:
//! just after a seeded number of refund requests reached the sandbox, or of refunds were made.
//! The sandbox's own counts must show every row refunded exactly once, and the results CSV must
//! be complete and agree with it.

use std::collections::HashMap;
use std::time::Duration;

use payroc_sandbox::SandboxConfig;

use crate::support::Seeded;
use crate::util::{TestSandbox, Workdir, read_results, wait_while_running};

/// Rows in the batch.
const ROWS: usize = 300;
/// SIGKILLs at least.
const KILLS: usize = 20;

fn chaos_file() -> String {
    let mut text = String::from(
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account,sec_code\n",
    );
    for index in 0..ROWS {
        let decline = index % 25 == 7;
        if index % 3 == 0 {
            let account = if decline { "99990002" } else { "1234567890" };
            text.push_str(&format!(
                "bank,1234001,X{index:05},{}.{:02},USD,chaos,,,{account},011000015,Grace Hopper,ppd\n",
                index + 1,
                index % 100
            ));
        } else {
            let card = if decline {
                "4000000000000002"
            } else {
                "4111111111111111"
            };
            text.push_str(&format!(
                "card,1234001,X{index:05},{}.{:02},USD,chaos,{card},0929,,,,\n",
                index + 1,
                index % 100
            ));
        }
    }
    text
}

#[test]
fn killed_at_random_moments_every_row_is_still_refunded_exactly_once() {
    let workdir = Workdir::new();
    workdir.write("day.csv", &chaos_file());
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: Duration::from_millis(2),
        rate_429: 0.08,
        rate_503: 0.04,
        retry_after: Duration::from_millis(5),
        rate_500_after_create: 0.08,
        rate_drop_after_create: 0.08,
        token_actual_lifetime: Some(Duration::from_millis(300)),
        seed: 20261123,
        ..SandboxConfig::default()
    });
    let run_arguments = [
        "run",
        "day.csv",
        "--rate",
        "120",
        "--concurrency",
        "16",
        "--max-retries",
        "12",
    ];
    let mut random = Seeded::new(42);

    let mut kills = 0;
    let mut attempts = 0;
    while kills < KILLS && attempts < KILLS * 3 {
        attempts += 1;
        // The moment of the kill, seeded: just after the k-th refund POST of this start reached
        // the sandbox (a request in flight), or just after the k-th new refund was made (its
        // answer on the way back or being recorded).
        let nth = random.between(1, 10);
        let after_a_creation = random.next_u64() % 2 == 1;
        let before = sandbox.stats();
        let mut child = workdir
            .std_command()
            .args(sandbox.arguments())
            .args(run_arguments)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start refund-batch");
        let what = if after_a_creation {
            format!("start {attempts}: refund {nth} made")
        } else {
            format!("start {attempts}: refund POST {nth} received")
        };
        let ended = wait_while_running(&mut child, &what, || {
            let now = sandbox.stats();
            if after_a_creation {
                now.refunds.len() >= before.refunds.len() + nth as usize
            } else {
                now.refund_posts >= before.refund_posts + nth
            }
        });
        if ended.is_none() && child.try_wait().expect("poll child").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap child");
    }
    assert!(kills >= KILLS, "killed {kills} times in {attempts} starts");
    // The kills landed while refunds were being sent, not before or after the work.
    let created_while_killing = sandbox.stats().created_per_order.len();
    assert!(
        (1..ROWS).contains(&created_while_killing),
        "{created_while_killing} of {ROWS} refunds made while killing"
    );
    eprintln!("{kills} kills in {attempts} starts; {created_while_killing} refunds made meanwhile");

    // Resume until the batch is finished (exit 0 or 1); a run may also end 3 (unknown rows
    // after retries, or a token dying twice): then it is simply run again, as cron would.
    let mut finished = None;
    for _ in 0..10 {
        let output = workdir
            .command()
            .args(sandbox.arguments())
            .args(run_arguments)
            .output()
            .expect("run");
        let code = output.status.code();
        if matches!(code, Some(0 | 1)) {
            finished = Some(code);
            break;
        }
        assert!(
            matches!(code, Some(3 | 4)),
            "unexpected exit {code:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        finished,
        Some(Some(1)),
        "the batch finishes, with its declines to review"
    );

    let stats = sandbox.stats();
    let faults = &stats.faults;
    assert!(
        faults.too_many_requests > 0 && faults.error_500_after_create > 0 && faults.drop_after_create > 0,
        "every fault happened: {faults:?}"
    );
    assert_eq!(stats.created_per_order.len(), ROWS, "every row was refunded");
    let twice: Vec<_> = stats
        .created_per_order
        .iter()
        .filter(|(_, count)| **count != 1)
        .collect();
    assert!(twice.is_empty(), "refunded more than once: {twice:?}");

    let results = read_results(&workdir.path("day.results.csv"));
    assert_eq!(results.len(), ROWS, "one results line per input row");
    let by_order: HashMap<&str, &payroc_sandbox::RefundRecord> = stats
        .refunds
        .iter()
        .map(|refund| (refund.order_id.as_str(), refund))
        .collect();
    for line in &results {
        let refund = by_order[line["order_id"].as_str()];
        assert_eq!(line["refund_id"], refund.refund_id, "row {}", line["row"]);
        assert_eq!(line["idempotency_key"], refund.idempotency_key, "row {}", line["row"]);
        let expected = if refund.response_code == "A" {
            "succeeded"
        } else {
            "declined"
        };
        assert_eq!(line["status"], expected, "row {}", line["row"]);
    }
    let declined = results.iter().filter(|line| line["status"] == "declined").count();
    assert_eq!(declined, ROWS / 25, "the seeded declines");
}
