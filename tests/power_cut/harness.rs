//! The power-cut harness: running the binary under strace from the work directory's durable
//! state, killing it at a seeded moment and rebuilding the ledger from what a power cut would
//! leave (with the model of `support/disk`), resuming as cron would, and checking the results
//! CSV against the sandbox. The tests are in `mod.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use payroc_sandbox::Stats;

use super::HEADER;
use crate::support::Seeded;
use crate::support::disk::{LEDGER_FILES, PowerCut};
use crate::util::{TestSandbox, Workdir, read_results};

/// Every system call that can change a file, its name, or what a descriptor points at. Names
/// with `?` do not exist on every architecture.
const TRACED: &str = "?open,?creat,?rename,?unlink,?dup2,?fork,?vfork,openat,close,close_range,dup,dup3,fcntl,\
read,readv,lseek,write,pwrite64,writev,pwritev,pwritev2,ftruncate,truncate,fallocate,fsync,fdatasync,sync,\
syncfs,sync_file_range,renameat,renameat2,unlinkat,mmap,clone,clone3,copy_file_range,sendfile,splice,openat2,?link,\
linkat,?symlink,symlinkat,?mknod,mknodat";

/// Fails the test, saying how to install it, unless `strace` can trace here: the power-cut test
/// never passes by skipping.
pub(super) fn require_strace() {
    let works = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=none", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        works,
        "the power-cut test needs a working `strace` to record which writes were fsynced; install it \
         (Debian, Ubuntu: `apt-get install strace`; Fedora, RHEL: `dnf install strace`) and run the tests again"
    );
}

/// Every file directly in the workdir (not `-shm`), with its bytes.
fn snapshot(workdir: &Workdir) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(workdir.path("")).expect("read workdir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("file type").is_file() && !name.ends_with("-shm") {
            files.insert(name, std::fs::read(entry.path()).expect("read file"));
        }
    }
    files
}

/// The Idempotency-Keys of every attempt the ledger in `files` records (none when there is no
/// ledger, or no schema yet). Read from a scratch copy, so the files themselves are untouched.
fn attempted_keys(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<String> {
    if !files.contains_key("ledger.sqlite") {
        return BTreeSet::new();
    }
    let scratch = tempfile::tempdir().expect("scratch dir");
    for name in LEDGER_FILES {
        if let Some(bytes) = files.get(name) {
            std::fs::write(scratch.path().join(name), bytes).expect("write scratch ledger");
        }
    }
    let connection = rusqlite::Connection::open(scratch.path().join("ledger.sqlite")).expect("open scratch ledger");
    let tables: i64 = connection
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |row| {
            row.get(0)
        })
        .expect("read the rebuilt ledger's schema");
    if tables == 0 {
        // Not even the schema survived: a ledger that knows nothing.
        return BTreeSet::new();
    }
    connection
        .prepare("SELECT idempotency_key FROM attempts")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .unwrap_or_else(|error| panic!("reading attempts(idempotency_key) of the rebuilt ledger: {error}"))
}

/// What one cut did.
struct Cut {
    /// Whether the process was killed (it may finish before the chosen moment).
    landed: bool,
    /// Keys the sandbox had received that the ledger left by the power cut has no attempt for.
    unrecorded_keys: Vec<String>,
}

/// Runs `refund-batch … ARGUMENTS` under strace from the workdir's present (durable) state,
/// kills it with SIGKILL a random 0–20 ms after the sandbox has received `posts` more refund
/// POSTs, and replaces the ledger's files with what a power cut at that moment would have left:
/// for half the cuts only what was synced, for the others also a random part of what was not.
fn cut_power(
    workdir: &Workdir,
    sandbox: &TestSandbox,
    arguments: &[&str],
    posts: u64,
    random: &mut Seeded,
    label: &str,
) -> Cut {
    let delay = Duration::from_millis(random.between(0, 20));
    let flush_some = random.next_u64() % 2 == 1;
    let before = snapshot(workdir);
    let scratch = tempfile::tempdir().expect("trace dir");
    let trace = scratch.path().join("trace");
    let pid_file = scratch.path().join("pid");

    let mut inner = workdir.std_command();
    inner.args(sandbox.arguments()).args(arguments);
    let mut command = Command::new("strace");
    command
        .args([
            "-f",
            "-qq",
            "-xx",
            "-s",
            "2000000",
            "-e",
            &format!("trace={TRACED}"),
            "-o",
        ])
        .arg(&trace)
        // The shell writes its pid (the tracee's, after exec) for the kill, then becomes the binary.
        .args(["sh", "-c", "echo $$ > \"$0\" && exec \"$@\""])
        .arg(&pid_file)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .current_dir(inner.get_current_dir().expect("the workdir"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.path().join("stderr")).expect("stderr file"));

    let start = sandbox.stats().refund_posts;
    let mut tracer = command.spawn().expect("start strace");
    let began = Instant::now();
    let mut landed = false;
    let mut tracee = None;
    let mut reached = None;
    loop {
        if tracer.try_wait().expect("poll strace").is_some() {
            break;
        }
        if tracee.is_none() {
            tracee = std::fs::read_to_string(&pid_file)
                .ok()
                .filter(|text| text.ends_with('\n'))
                .map(|text| text.trim().to_owned());
        }
        if reached.is_none() && sandbox.stats().refund_posts >= start + posts {
            reached = Some(Instant::now());
        }
        if let Some(pid) = &tracee
            && reached.is_some_and(|reached| reached.elapsed() >= delay)
        {
            // The tracee, not strace: killing the tracer would detach and let the binary go on.
            let killed = Command::new("kill").args(["-KILL", pid]).status().expect("kill -KILL");
            landed = killed.success();
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "{label}: the traced run hangs"
        );
        // Not a wait for anything: the polling interval.
        std::thread::sleep(Duration::from_millis(1));
    }
    tracer.wait().expect("reap strace");
    let stats = sandbox.stats();

    let mut model = PowerCut::new(&workdir.path(""), &workdir.path(""), before);
    model.replay(&std::fs::read_to_string(&trace).expect("read trace"));

    // The model's page cache must be what the killed process really left: a check of the parser.
    let left = snapshot(workdir);
    let modelled = model.page_cache();
    match model.uncertain() {
        None => {}
        Some(uncertain) => {
            let names: BTreeSet<&String> = left.keys().chain(modelled.keys()).collect();
            for name in names.into_iter().filter(|name| !uncertain.contains(*name)) {
                let (real, model) = (left.get(name).map(Vec::len), modelled.get(name).map(Vec::len));
                assert!(
                    left.get(name) == modelled.get(name),
                    "{label}: the trace model disagrees with the file {name} the killed process left \
                     ({real:?} bytes on disk, {model:?} modelled)"
                );
            }
        }
    }

    // The power cut: the ledger's files become what was durable.
    let survivors = model.after_power_cut(|_, pending| {
        if flush_some {
            random.between(0, pending as u64) as usize
        } else {
            0
        }
    });
    for name in LEDGER_FILES {
        match survivors.get(name) {
            Some(bytes) => std::fs::write(workdir.path(name), bytes).expect("rebuild ledger file"),
            None => {
                let _ = std::fs::remove_file(workdir.path(name));
            }
        }
    }
    let _ = std::fs::remove_file(workdir.path("ledger.sqlite-shm"));

    let sent: BTreeSet<String> = stats.requests_per_key.keys().cloned().collect();
    let in_page_cache = attempted_keys(&left);
    let durable = attempted_keys(&survivors);
    let unrecorded_keys: Vec<String> = sent.difference(&durable).cloned().collect();
    eprintln!(
        "{label}: {} after {} refund POSTs ({posts} + {delay:?} wanted) in {:.1?}, {}; {}; attempts recorded: {} in \
         the page cache, {} durable; keys the sandbox has seen: {}, {} of them not in the durable ledger",
        if landed { "power cut" } else { "finished before the cut" },
        stats.refund_posts - start,
        began.elapsed(),
        if flush_some {
            "part of the unsynced changes flushed"
        } else {
            "no unsynced change flushed"
        },
        model.report(),
        in_page_cache.len(),
        durable.len(),
        sent.len(),
        unrecorded_keys.len(),
    );
    Cut {
        landed,
        unrecorded_keys,
    }
}

/// Runs `refund-batch … ARGUMENTS` (plain, no strace) until it exits 0 or 1, as cron would; with
/// `retry_failed`, an exit 1 is followed by one run with `--retry-failed`. The last exit code.
pub(super) fn resume(workdir: &Workdir, sandbox: &TestSandbox, arguments: &[&str], retry_failed: bool) -> Option<i32> {
    let mut with_retry = false;
    let mut last = None;
    for _ in 0..10 {
        let mut command = workdir.command();
        command.args(sandbox.arguments()).args(arguments);
        if with_retry {
            command.arg("--retry-failed");
        }
        let output = command.output().expect("run");
        last = output.status.code();
        match last {
            Some(1) if retry_failed && !with_retry => with_retry = true,
            Some(0 | 1) => break,
            Some(3 | 4) => with_retry = false,
            code => panic!("unexpected exit {code:?}: {}", String::from_utf8_lossy(&output.stderr)),
        }
    }
    last
}

/// Problems with keys the sandbox received before the ledger had them on disk.
/// Runs `arguments` and cuts the power `cuts` times, each after a seeded number of the refunds
/// `left` says remain (stopping early when none do). Returns the problems the cuts revealed;
/// fails the test if no cut landed while refunds were being sent.
pub(super) fn cut_repeatedly(
    workdir: &Workdir,
    sandbox: &TestSandbox,
    arguments: &[&str],
    cuts: usize,
    mut random: Seeded,
    label: &str,
    left: impl Fn(&Stats) -> usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut landed = 0;
    for cut in 1..=cuts {
        let left = left(&sandbox.stats());
        if left == 0 {
            break;
        }
        let label = format!("{label} {cut}");
        let result = cut_power(
            workdir,
            sandbox,
            arguments,
            random.between(1, left as u64),
            &mut random,
            &label,
        );
        landed += usize::from(result.landed);
        problems.extend(unrecorded(&label, &result.unrecorded_keys));
    }
    assert!(landed > 0, "no cut landed while refunds were being sent");
    problems
}

fn unrecorded(cut: &str, keys: &[String]) -> Option<String> {
    (!keys.is_empty()).then(|| {
        format!(
            "{cut}: the power cut lost the ledger's record of {} Idempotency-Keys the sandbox had already \
             received (their `sending` marks were committed but not fsynced before the requests left), e.g. {}",
            keys.len(),
            keys[0]
        )
    })
}

/// The results CSV against the sandbox: every line `succeeded`, with the refund id and key of
/// the order's approved refund.
pub(super) fn check_results(workdir: &Workdir, stats: &Stats, rows: usize, problems: &mut Vec<String>) {
    let approved: HashMap<&str, &payroc_sandbox::RefundRecord> = stats
        .refunds
        .iter()
        .filter(|refund| refund.response_code == "A")
        .map(|refund| (refund.order_id.as_str(), refund))
        .collect();
    let results = read_results(&workdir.path("day.results.csv"));
    if results.len() != rows {
        problems.push(format!("{} results lines for {rows} rows", results.len()));
    }
    for line in &results {
        let order = line["order_id"].as_str();
        let Some(refund) = approved.get(order) else {
            problems.push(format!(
                "row {}: no approved refund at the sandbox for {order}",
                line["row"]
            ));
            continue;
        };
        for (column, expected) in [
            ("refund_id", refund.refund_id.as_str()),
            ("idempotency_key", refund.idempotency_key.as_str()),
            ("status", "succeeded"),
        ] {
            if line[column] != expected {
                problems.push(format!(
                    "row {}: {column} is {:?} in the results, {expected:?} at the sandbox",
                    line["row"], line[column]
                ));
            }
        }
    }
}

pub(super) fn rows(count: usize, card_for: impl Fn(usize) -> &'static str) -> String {
    let mut text = HEADER.to_owned();
    for index in 0..count {
        if index % 4 == 3 {
            text.push_str(&format!(
                "bank,1234001,P{index:05},{}.{:02},USD,power cut,,,1234567890,011000015,Grace Hopper\n",
                index + 1,
                index % 100
            ));
        } else {
            text.push_str(&format!(
                "card,1234001,P{index:05},{}.{:02},USD,power cut,{},0929,,,\n",
                index + 1,
                index % 100,
                card_for(index)
            ));
        }
    }
    text
}
