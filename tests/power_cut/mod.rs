//! The power-cut test: the real binary runs under `strace`, is killed with SIGKILL at a random
//! moment (0–20 ms after a random number of refund POSTs reached the sandbox), and its ledger is
//! then rebuilt from what the disk would hold after a power cut at that moment before the batch is
//! resumed, again and again.
//!
//! A plain copy of the files after `kill -9` models a process crash only: the kernel's page cache
//! survives that, so every `write` the process made is still there. After a power cut, a file's
//! bytes are those of its last `fsync`/`fdatasync` (for half the cuts, plus a random first part
//! of the changes made since, as write-back may have flushed them), and a file created (or
//! removed) since the directory's last `fsync` is gone (or back). [`PowerCut`] replays the trace
//! to compute exactly that, and is itself checked: against a hand-written trace, and against the
//! files the killed process really left (its page-cache view must match them byte for byte).
//!
//! What is asserted after each cut: the durable ledger already knows every Idempotency-Key that
//! reached the sandbox (the `sending` mark is on disk before its request leaves); and after
//! resuming, every order was refunded exactly once and the results CSV agrees with the sandbox.
//!
//! This module holds the tests; `harness.rs` runs the binary, cuts the power and checks what
//! is left.

// Running the binary under strace, cutting the power, resuming, and checking the results.
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use payroc_sandbox::SandboxConfig;

use crate::support::Seeded;
use crate::support::disk::PowerCut;
use crate::support::disk::strace::decode_string;
use crate::util::{TestSandbox, Workdir};
use harness::{check_results, cut_repeatedly, require_strace, resume, rows};

const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";
const GOOD_CARD: &str = "4111111111111111";
const DECLINED_CARD: &str = "4000000000000002";

/// The model on a hand-written trace: hex strings, a call split by another thread, a `dup`
/// sharing the offset, a failed open, a file fsynced but never made durable by its directory,
/// an unlink that is not durable, and a sync the process was killed in.
#[test]
fn the_model_keeps_only_what_was_fsynced() {
    let directory = Path::new("/work/d");
    let hex = |text: &str| text.bytes().map(|byte| format!("\\x{byte:02x}")).collect::<String>();
    let ledger = hex("/work/d/ledger.sqlite");
    let wal = hex("ledger.sqlite-wal");
    let journal = hex("/work/d/ledger.sqlite-journal");
    let trace = format!(
        r#"100 openat(AT_FDCWD, "{ledger}", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 3
100 openat(AT_FDCWD, "{journal}", O_RDWR|O_CLOEXEC) = -1 ENOENT (No such file or directory)
100 pwrite64(3, "\x53\x51\x4c", 3, 0) = 3
100 clone3({{flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, child_tid=0x7f0}} => {{parent_tid=[101]}}, 88) = 101
101 pwrite64(3, "\x69\x74\x65\x21", 4, 3 <unfinished ...>
100 openat(AT_FDCWD, "{directory}", O_RDONLY|O_CLOEXEC) = 4
101 <... pwrite64 resumed>)           = 3
100 fsync(4)                          = 0
100 fsync(3)                          = 0
100 fcntl(3, F_DUPFD_CLOEXEC, 3)      = 5
100 write(5, "\x21\x21", 2)           = 2
100 lseek(5, 3, SEEK_SET)             = 3
100 read(3, "\x69", 8)                = 1
100 write(3, "\x3f", 1)               = 1
100 close(3)                          = 0
100 openat(AT_FDCWD, "{wal}", O_RDWR|O_CREAT|O_CLOEXEC, 0644) = 3
100 writev(3, [{{iov_base="\x57", iov_len=1}}, {{iov_base="\x41\x4c", iov_len=2}}], 2) = 3
100 fsync(3)                          = 0
100 unlink("{old}")                   = 0
101 fdatasync(5 <unfinished ...>
100 write(3, "\x58\x58", 2 <unfinished ...>
101 <... fdatasync resumed>)           = ?
100 +++ killed by SIGKILL +++
101 +++ killed by SIGKILL +++
"#,
        directory = hex("/work/d"),
        old = hex("/work/d/old"),
    );
    let mut model = PowerCut::new(
        directory,
        directory,
        BTreeMap::from([("old".to_owned(), b"kept".to_vec())]),
    );
    model.replay(&trace);

    assert_eq!(
        model.after_power_cut(|_, _| 0),
        BTreeMap::from([
            // Created before the directory's fsync; only the 3 bytes the call returned, fsynced.
            ("ledger.sqlite".to_owned(), b"SQLite".to_vec()),
            // Its unlink came after the last directory fsync.
            ("old".to_owned(), b"kept".to_vec()),
        ]),
        "the WAL was fsynced but its directory never was; the later writes were never synced"
    );
    assert_eq!(
        model.page_cache(),
        BTreeMap::from([
            // The dup shares the offset: `!!` at 0, seek to 3, read 1, `?` at 4.
            ("ledger.sqlite".to_owned(), b"!!Li?e".to_vec()),
            ("ledger.sqlite-wal".to_owned(), b"WAL".to_vec()),
        ]),
    );
    assert_eq!(
        model.after_power_cut(|name, _| usize::from(name == "ledger.sqlite"))["ledger.sqlite"],
        b"!!Lite",
        "write-back may have flushed the first unsynced change"
    );
    assert_eq!(model.killed_in.len(), 2, "{:?}", model.killed_in);
    assert_eq!(
        model.uncertain(),
        Some(BTreeSet::from([
            "ledger.sqlite".to_owned(),
            "ledger.sqlite-wal".to_owned()
        ]))
    );
    assert_eq!(
        decode_string(r#""\x41\102\n\"z"..."#),
        Some((b"AB\n\"z".to_vec(), true)),
        "hex, octal and C escapes; `...` marks a cut-short string"
    );
}

/// Power cuts at random moments of a plain run, one after another, then resumed to the end.
#[test]
fn power_cuts_during_a_run_lose_nothing_that_was_sent() {
    const ROWS: usize = 60;
    const CUTS: usize = 5;
    require_strace();
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(ROWS, |_| GOOD_CARD));
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: Duration::from_millis(2),
        seed: 20261125,
        ..SandboxConfig::default()
    });
    let arguments = ["run", "day.csv", "--rate", "200", "--concurrency", "8"];
    let mut problems = cut_repeatedly(&workdir, &sandbox, &arguments, CUTS, Seeded::new(7), "cut", |stats| {
        ROWS - stats.created_per_order.len()
    });

    let finished = resume(&workdir, &sandbox, &arguments, false);
    if finished != Some(0) {
        problems.push(format!("the resumed batch ended with exit {finished:?}, not 0"));
    }
    let stats = sandbox.stats();
    let twice: Vec<_> = stats
        .created_per_order
        .iter()
        .filter(|(_, count)| **count != 1)
        .collect();
    if !twice.is_empty() {
        problems.push(format!("refunded more than once: {twice:?}"));
    }
    if stats.created_per_order.len() != ROWS || stats.refunds.len() != ROWS {
        problems.push(format!(
            "{} orders refunded, {} refunds, for {ROWS} rows",
            stats.created_per_order.len(),
            stats.refunds.len()
        ));
    }
    check_results(&workdir, &stats, ROWS, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Declined rows fixed and sent again with `--retry-failed`, with the power cut during that run:
/// every order ends with exactly one approved refund.
#[test]
fn a_power_cut_during_retry_failed_leaves_one_approved_refund_per_order() {
    const ROWS: usize = 40;
    const CUTS: usize = 3;
    require_strace();
    // Every even row is a declining card at first (20 of 40).
    let declines = |index: usize| index.is_multiple_of(2);
    let workdir = Workdir::new();
    workdir.write(
        "day.csv",
        &rows(ROWS, |index| if declines(index) { DECLINED_CARD } else { GOOD_CARD }),
    );
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: Duration::from_millis(2),
        seed: 20261126,
        ..SandboxConfig::default()
    });
    let plain = ["run", "day.csv", "--rate", "200", "--concurrency", "8"];
    let first = workdir
        .command()
        .args(sandbox.arguments())
        .args(plain)
        .output()
        .expect("run");
    assert_eq!(
        first.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let declined = (0..ROWS).filter(|index| declines(*index)).count();
    assert_eq!(
        sandbox
            .stats()
            .refunds
            .iter()
            .filter(|refund| refund.response_code != "A")
            .count(),
        declined
    );

    // The cards are fixed; the declined rows are sent again under their next key, and cut.
    workdir.write("day.csv", &rows(ROWS, |_| GOOD_CARD));
    let retry = [
        "run",
        "day.csv",
        "--rate",
        "200",
        "--concurrency",
        "8",
        "--retry-failed",
    ];
    let mut problems = cut_repeatedly(
        &workdir,
        &sandbox,
        &retry,
        CUTS,
        Seeded::new(11),
        "retry cut",
        |stats| {
            ROWS - stats
                .refunds
                .iter()
                .filter(|refund| refund.response_code == "A")
                .count()
        },
    );

    let finished = resume(&workdir, &sandbox, &plain, true);
    if finished != Some(0) {
        problems.push(format!("the resumed batch ended with exit {finished:?}, not 0"));
    }
    let stats = sandbox.stats();
    let mut approved_per_order: BTreeMap<&str, usize> = BTreeMap::new();
    for refund in stats.refunds.iter().filter(|refund| refund.response_code == "A") {
        *approved_per_order.entry(refund.order_id.as_str()).or_default() += 1;
    }
    let not_once: Vec<_> = approved_per_order.iter().filter(|(_, count)| **count != 1).collect();
    if !not_once.is_empty() {
        problems.push(format!("approved more than once: {not_once:?}"));
    }
    if approved_per_order.len() != ROWS {
        problems.push(format!("{} of {ROWS} orders approved", approved_per_order.len()));
    }
    if stats.refunds.len() != ROWS + declined {
        problems.push(format!(
            "{} refunds at the sandbox, expected {ROWS} approved and {declined} declined",
            stats.refunds.len()
        ));
    }
    check_results(&workdir, &stats, ROWS, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
