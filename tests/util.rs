//! Test helpers: a scratch directory, the real `refund-batch` binary with a hermetic environment,
//! and a Payroc sandbox on a loopback port whose counters the tests read.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use payroc_sandbox::{RunningSandbox, SandboxConfig, Stats};

/// The binary under test: this build's, or the one `REFUND_BATCH_TEST_BINARY` names — so the
/// same tests (the search above all) can be run against a released binary or an older build to
/// see what they find there.
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("REFUND_BATCH_TEST_BINARY")
        .map_or_else(|| env!("CARGO_BIN_EXE_refund-batch").into(), std::path::PathBuf::from)
}

/// The API key the tests use. Distinctive, so a search of every written file can find a leak.
pub const API_KEY: &str = "test-api-key-DO-NOT-LEAK-8c1f";

/// A sandbox served from its own runtime thread, so tests stay synchronous like the CLI.
pub struct TestSandbox {
    running: Option<RunningSandbox>,
    runtime: tokio::runtime::Runtime,
}

impl TestSandbox {
    /// Starts a sandbox on 127.0.0.1:0.
    pub fn start(config: SandboxConfig) -> TestSandbox {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime");
        let running = runtime
            .block_on(payroc_sandbox::spawn(([127, 0, 0, 1], 0).into(), config))
            .expect("sandbox starts on a free loopback port");
        TestSandbox {
            running: Some(running),
            runtime,
        }
    }

    fn running(&self) -> &RunningSandbox {
        self.running.as_ref().expect("the sandbox runs until dropped")
    }

    /// The sandbox's counters.
    pub fn stats(&self) -> Stats {
        self.running().sandbox().stats()
    }

    /// What the sandbox holds for card refund `refund_id` (GET /v1/refunds/{id}), as JSON: how a
    /// test sees exactly what was sent. Fetches its own token (counted in `tokens_issued`).
    pub fn card_refund(&self, refund_id: &str) -> serde_json::Value {
        let identity = self.running().identity_url();
        let api = self.running().api_url();
        self.runtime.block_on(async move {
            let client = reqwest::Client::new();
            let token: serde_json::Value = serde_json::from_str(
                &client
                    .post(format!("{identity}/authorize"))
                    .header("x-api-key", API_KEY)
                    .send()
                    .await
                    .expect("authorize")
                    .text()
                    .await
                    .expect("token body"),
            )
            .expect("token JSON");
            let access_token = token["access_token"].as_str().expect("access_token").to_owned();
            let body = client
                .get(format!("{api}/refunds/{refund_id}"))
                .bearer_auth(access_token)
                .send()
                .await
                .expect("get refund")
                .text()
                .await
                .expect("refund body");
            serde_json::from_str(&body).expect("refund JSON")
        })
    }

    /// The sandbox itself, to change it mid-test (age it, switch a terminal off).
    pub fn sandbox(&self) -> &payroc_sandbox::Sandbox {
        self.running().sandbox()
    }

    /// `--env uat --api-url … --identity-url …` pointing at this sandbox.
    pub fn arguments(&self) -> Vec<String> {
        vec![
            "--env".into(),
            "uat".into(),
            "--api-url".into(),
            self.running().api_url(),
            "--identity-url".into(),
            self.running().identity_url(),
        ]
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.shutdown());
        }
    }
}

/// A scratch directory holding the input, the ledger and the results of one test.
pub struct Workdir {
    directory: tempfile::TempDir,
}

impl Workdir {
    /// A new, empty directory.
    pub fn new() -> Workdir {
        Workdir {
            directory: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Path of `name` inside.
    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// Writes `content` to `name`.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).expect("write test file");
        path
    }

    /// Writes raw `bytes` to `name` (for files that are not UTF-8).
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    /// Reads `name`.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|error| panic!("read {name}: {error}"))
    }

    /// The binary with every variable that could change its behaviour removed, the ledger in
    /// this directory, the test API key set, fast retries, and no progress display.
    pub fn command(&self) -> Command {
        Command::from_std(self.std_command())
    }

    /// [`Workdir::command`] as a plain `std::process::Command`, for tests that signal or kill it.
    pub fn std_command(&self) -> std::process::Command {
        let mut command = self.std_command_with_progress();
        command.arg("--no-progress");
        command
    }

    /// [`Workdir::command`] with its progress display (plain lines: the output is no terminal).
    pub fn command_with_progress(&self) -> Command {
        Command::from_std(self.std_command_with_progress())
    }

    fn std_command_with_progress(&self) -> std::process::Command {
        let mut command = std::process::Command::new(binary());
        for (name, _) in std::env::vars() {
            if name.starts_with("REFUND_BATCH_") || name.starts_with("PAYROC_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .current_dir(self.directory.path())
            .env("REFUND_BATCH_LEDGER", self.path("ledger.sqlite"))
            .env("PAYROC_API_KEY", API_KEY)
            .env("REFUND_BATCH_RETRY_DELAY_MS", "1")
            .env("REFUND_BATCH_MAX_RETRY_DELAY_MS", "20")
            .env("NO_COLOR", "1");
        command
    }

    /// `refund-batch --env uat --api-url … run FILE EXTRA…` against `sandbox`, asserted on by the caller.
    pub fn run(&self, sandbox: &TestSandbox, file: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
        self.subcommand(sandbox, "run", file, extra)
    }

    /// `refund-batch --env uat --api-url … reconcile FILE EXTRA…` against `sandbox`.
    pub fn reconcile(&self, sandbox: &TestSandbox, file: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
        self.subcommand(sandbox, "reconcile", file, extra)
    }

    fn subcommand(&self, sandbox: &TestSandbox, name: &str, file: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
        self.command()
            .args(sandbox.arguments())
            .arg(name)
            .arg(file)
            .args(extra)
            .assert()
    }

    /// Every file in the directory (recursively), with its bytes; and every part of a zip file
    /// (a workbook), unpacked.
    pub fn all_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(directory: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
            for entry in std::fs::read_dir(directory).expect("read dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    let bytes = std::fs::read(&path).expect("read file");
                    // A workbook is a zip of XML parts, compressed: its parts are searched as
                    // they unpack, each named `file.xlsx/part`.
                    if bytes.starts_with(b"PK\x03\x04") {
                        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).expect("a zip archive");
                        for index in 0..archive.len() {
                            let mut part = archive.by_index(index).expect("a zip part");
                            let mut unpacked = Vec::new();
                            std::io::Read::read_to_end(&mut part, &mut unpacked).expect("unpack a zip part");
                            let name = part.name().expect("a zip part name").into_owned();
                            found.push((path.join(name), unpacked));
                        }
                    }
                    found.push((path, bytes));
                }
            }
        }
        let mut found = Vec::new();
        walk(self.directory.path(), &mut found);
        found
    }
}

/// The results CSV as rows of (column → value) maps, in file order.
pub fn read_results(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|error| panic!("results {}: {error}", path.display()));
    let headers = reader.headers().expect("results header").clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("results record");
            headers
                .iter()
                .zip(record.iter())
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
        .collect()
}

/// The mode a file created in `workdir` gets under this process's umask (which the binary
/// inherits): what a file the tool does not make private should have.
#[cfg(unix)]
pub fn umask_mode(workdir: &Workdir) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let probe = workdir.path(".umask-probe");
    std::fs::File::create(&probe).expect("create a probe file");
    let mode = std::fs::metadata(&probe).expect("probe").permissions().mode() & 0o777;
    std::fs::remove_file(&probe).expect("remove the probe");
    mode
}

/// The repository's sample file `name`.
pub fn sample(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples").join(name)).expect("sample file")
}

/// Moves every time the ledger at `path` holds back by `days` days, as if its refunds had been
/// sent that long ago (the sandbox's [`payroc_sandbox::Sandbox::age`] does the same on its side).
pub fn age_ledger(path: &Path, days: u32) {
    let connection = rusqlite::Connection::open(path).expect("open the ledger");
    let shift = format!("-{days} days");
    connection
        .execute(
            "UPDATE refunds SET first_sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', first_sent_at, ?1), \
             created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, ?1)",
            [shift],
        )
        .expect("age the ledger");
    connection
        .execute(
            "UPDATE meta SET value = strftime('%Y-%m-%dT%H:%M:%fZ', value, ?1) WHERE name LIKE 'first_send_at:%'",
            [format!("-{days} days")],
        )
        .expect("age the ledger's first sends");
}

/// How long a test waits for something it expects to happen before it fails saying what it waited
/// for. Generous: only a hang (or a test waiting for the wrong thing) takes this long.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The pause between two looks at something a test waits for. Nothing depends on its length.
const POLL: Duration = Duration::from_millis(1);

/// Waits until `condition` holds; fails naming `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(POLL);
    }
}

/// Waits until `condition` holds while `child` runs: `None` once it holds (the child may still be
/// running), or the child's exit status if it ended first. Fails naming `what` after [`PATIENCE`].
pub fn wait_while_running(child: &mut Child, what: &str, mut condition: impl FnMut() -> bool) -> Option<ExitStatus> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition() {
            return None;
        }
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(status);
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(POLL);
    }
}

/// The lines a child writes to a pipe, read on their own thread so that a test can wait for one
/// with a deadline instead of blocking on the pipe.
pub struct Lines {
    receiver: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Starts reading `pipe` (a child's stdout or stderr) line by line.
    pub fn new(pipe: impl Read + Send + 'static) -> Lines {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        // Read on when nobody listens any more: the child never meets a closed pipe.
                        let _ = sender.send(text.trim_end_matches(['\n', '\r']).to_owned());
                    }
                }
            }
        });
        Lines {
            receiver,
            seen: Vec::new(),
        }
    }

    /// Waits for the next line containing `text` and returns it; fails, with every line read so
    /// far, when the pipe closes first or after [`PATIENCE`].
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "waited {PATIENCE:?} for a line with {text:?}; read so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the output ended without a line with {text:?}:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Every line after those already read, until the pipe closes (the child has exited), each
    /// ending in a newline; fails after [`PATIENCE`].
    pub fn rest(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut rest = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(line) => {
                    rest.push_str(&line);
                    rest.push('\n');
                    self.seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "waited {PATIENCE:?} for the output to end; read so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
            }
        }
    }
}

/// Sends `signal` (`"TERM"`, `"STOP"`, `"CONT"`…) to process `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}
