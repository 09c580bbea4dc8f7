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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use payroc_sandbox::{SandboxConfig, Stats};

use crate::util::{TestSandbox, Workdir, read_results};

/// The ledger's files, rebuilt after a cut. `-shm` is not among them: SQLite rebuilds it from the
/// WAL, so it is deleted instead.
const LEDGER_FILES: [&str; 3] = ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-journal"];

/// Every system call that can change a file, its name, or what a descriptor points at. Names
/// with `?` do not exist on every architecture.
const TRACED: &str = "?open,?creat,?rename,?unlink,?dup2,?fork,?vfork,openat,close,close_range,dup,dup3,fcntl,\
read,readv,lseek,write,pwrite64,writev,pwritev,pwritev2,ftruncate,truncate,fallocate,fsync,fdatasync,sync,\
syncfs,sync_file_range,renameat,renameat2,unlinkat,mmap,clone,clone3,copy_file_range,sendfile,splice,openat2,?link,\
linkat,?symlink,symlinkat,?mknod,mknodat";

const HEADER: &str = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account\n";
const GOOD_CARD: &str = "4111111111111111";
const DECLINED_CARD: &str = "4000000000000002";

// ---------------------------------------------------------------------------------------------
// The disk model.

/// One file's contents: what the process sees (the page cache), what its last sync made durable,
/// and the changes made since, in order.
#[derive(Clone, Debug, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Change>,
}

/// A change to a file's bytes.
#[derive(Clone, Debug)]
enum Change {
    Write { at: usize, data: Vec<u8> },
    Resize(usize),
}

impl Change {
    fn apply(&self, contents: &mut Vec<u8>) {
        match self {
            Change::Write { at, data } => {
                if contents.len() < at + data.len() {
                    contents.resize(at + data.len(), 0);
                }
                contents[*at..at + data.len()].copy_from_slice(data);
            }
            Change::Resize(length) => contents.resize(*length, 0),
        }
    }
}

impl Inode {
    fn change(&mut self, change: Change) {
        change.apply(&mut self.current);
        self.pending.push(change);
    }

    fn sync(&mut self) {
        self.durable = self.current.clone();
        self.pending.clear();
    }
}

/// An open file description: descriptors made by `dup` share it, and so share the offset.
#[derive(Clone, Debug)]
struct Description {
    inode: usize,
    position: u64,
    append: bool,
}

/// What a descriptor refers to: a file in the watched directory, or any other path (kept so
/// `*at` calls and directory fsyncs can be resolved).
#[derive(Clone, Debug)]
enum Open {
    File(usize),
    Path(PathBuf),
}

/// The files of one directory replayed from an `strace -f -xx` trace of every process that
/// touched them, as the page cache sees them and as a power cut would leave them.
struct PowerCut {
    /// The watched directory, as every spelling the trace may use (as given, canonical).
    directories: Vec<PathBuf>,
    /// The working directory of the traced processes, for relative paths.
    cwd: PathBuf,
    inodes: Vec<Inode>,
    descriptions: Vec<Description>,
    /// Name in the directory → inode, as the processes see it.
    current: BTreeMap<String, usize>,
    /// Name in the directory → inode, as of the directory's last fsync.
    durable: BTreeMap<String, usize>,
    /// Descriptor tables: threads share one, a fork copies it.
    tables: Vec<HashMap<i64, Open>>,
    table_of: HashMap<u32, usize>,
    /// Per process, the first half of a call printed `<unfinished ...>`.
    unfinished: HashMap<u32, String>,
    file_syncs: usize,
    directory_syncs: usize,
    /// Calls that never returned (the process was killed in them): they count as not made.
    killed_in: Vec<String>,
}

impl PowerCut {
    /// Starts from `files` (name → bytes) in `directory`, all of them durable.
    fn new(directory: &Path, cwd: &Path, files: BTreeMap<String, Vec<u8>>) -> PowerCut {
        let mut directories = vec![normalize(directory)];
        if let Ok(canonical) = directory.canonicalize()
            && !directories.contains(&canonical)
        {
            directories.push(canonical);
        }
        let mut model = PowerCut {
            directories,
            cwd: normalize(cwd),
            inodes: Vec::new(),
            descriptions: Vec::new(),
            current: BTreeMap::new(),
            durable: BTreeMap::new(),
            tables: vec![HashMap::new()],
            table_of: HashMap::new(),
            unfinished: HashMap::new(),
            file_syncs: 0,
            directory_syncs: 0,
            killed_in: Vec::new(),
        };
        for (name, bytes) in files {
            model.inodes.push(Inode {
                current: bytes.clone(),
                durable: bytes,
                pending: Vec::new(),
            });
            model.current.insert(name.clone(), model.inodes.len() - 1);
            model.durable.insert(name, model.inodes.len() - 1);
        }
        model
    }

    /// Replays a whole trace, then drops the calls the processes were killed in.
    fn replay(&mut self, trace: &str) {
        for line in trace.lines() {
            self.feed(line);
        }
        let mut killed: Vec<String> = self.unfinished.drain().map(|(_, call)| call).collect();
        killed.sort();
        self.killed_in.extend(killed);
    }

    /// What survives a power cut now: name → bytes. Each file's synced bytes, plus the first
    /// `reached_disk(name, pending)` of the changes made since (write-back may have flushed
    /// some before the power went; 0 is the least that can survive).
    fn after_power_cut(&self, mut reached_disk: impl FnMut(&str, usize) -> usize) -> BTreeMap<String, Vec<u8>> {
        self.durable
            .iter()
            .map(|(name, &inode)| {
                let inode = &self.inodes[inode];
                let mut bytes = inode.durable.clone();
                let flushed = reached_disk(name, inode.pending.len()).min(inode.pending.len());
                for change in &inode.pending[..flushed] {
                    change.apply(&mut bytes);
                }
                (name.clone(), bytes)
            })
            .collect()
    }

    /// What the processes see now (and what survives a process crash): name → bytes.
    fn page_cache(&self) -> BTreeMap<String, Vec<u8>> {
        self.current
            .iter()
            .map(|(name, &inode)| (name.clone(), self.inodes[inode].current.clone()))
            .collect()
    }

    /// Names a call that never returned may have changed, so the page-cache check skips them
    /// (`None`: the call may have changed the directory itself).
    fn uncertain(&self) -> Option<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for call in &self.killed_in {
            let (pid, text) = split_pid(call);
            let name = text.split('(').next().unwrap_or_default();
            if matches!(
                name,
                "open" | "openat" | "creat" | "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat" | "truncate"
            ) {
                return None;
            }
            // `name(fd, …` when printed unfinished, `name(fd, …) = ?` when it came back killed.
            let arguments = text.split_once('(').map_or("", |(_, rest)| {
                rest.rsplit_once(" = ")
                    .map_or(rest, |(arguments, _)| arguments.trim_end().trim_end_matches(')'))
            });
            let first = split_arguments(arguments).first().and_then(|first| parse_int(first));
            if let Some(fd) = first
                && let Some(inode) = self.file_of(pid, fd)
            {
                names.extend(
                    self.current
                        .iter()
                        .filter(|(_, candidate)| **candidate == inode)
                        .map(|(name, _)| name.clone()),
                );
            }
        }
        Some(names)
    }

    fn report(&self) -> String {
        let mut parts = Vec::new();
        for name in LEDGER_FILES {
            let current = self.current.get(name).map(|&inode| &self.inodes[inode]);
            let durable = self.durable.get(name).map(|&inode| self.inodes[inode].durable.len());
            match (current, durable) {
                (None, None) => {}
                (Some(inode), Some(durable)) => parts.push(format!(
                    "{name} {} bytes in the page cache, {durable} durable, {} changes unsynced",
                    inode.current.len(),
                    inode.pending.len()
                )),
                (Some(inode), None) => parts.push(format!(
                    "{name} {} bytes in the page cache, its creation not durable",
                    inode.current.len()
                )),
                (None, Some(durable)) => {
                    parts.push(format!("{name} removed, its removal not durable ({durable} bytes)"));
                }
            }
        }
        format!(
            "{}; {} file fsyncs, {} directory fsyncs",
            parts.join("; "),
            self.file_syncs,
            self.directory_syncs
        )
    }

    /// One line of `strace -f` output.
    fn feed(&mut self, line: &str) {
        let (pid, text) = split_pid(line.trim_end());
        if text.starts_with("+++") || text.starts_with("---") || text.is_empty() {
            return;
        }
        if let Some(head) = text.strip_suffix(" <unfinished ...>") {
            self.unfinished.insert(pid, format!("{pid} {head}"));
            return;
        }
        if let Some(after) = text.strip_prefix("<... ") {
            let (_, tail) = after
                .split_once(" resumed>")
                .unwrap_or_else(|| panic!("unreadable resumed call: {line}"));
            // A call resumed without its first half began before the trace did: nothing to do.
            if let Some(head) = self.unfinished.remove(&pid) {
                let (_, head) = split_pid(&head);
                let whole = format!("{head}{tail}");
                self.call(pid, &whole);
            }
            return;
        }
        self.call(pid, text);
    }

    /// One complete call: `name(arguments) = result`.
    fn call(&mut self, pid: u32, text: &str) {
        // strace pads the result to a column: `fsync(3)      = 0`.
        let Some((call, result)) = text.rsplit_once(" = ") else {
            return;
        };
        let call = call.trim_end();
        let (Some(open), true) = (call.find('('), call.ends_with(')')) else {
            return;
        };
        let close = call.len() - 1;
        let name = &text[..open];
        let result = result.split_whitespace().next().unwrap_or("?");
        if result == "?" {
            // The process was killed in the call: it counts as not made (nothing after it can
            // sync it), though the kernel may have carried it out.
            self.killed_in.push(format!("{pid} {text}"));
            return;
        }
        // Negative: it failed and changed nothing.
        let Some(result) = parse_int(result).filter(|result| *result >= 0) else {
            return;
        };
        let raw = &text[open + 1..close];
        let arguments = split_arguments(raw);
        let argument = |index: usize| -> &str {
            arguments
                .get(index)
                .map(String::as_str)
                .unwrap_or_else(|| panic!("{name}: no argument {index} in {text}"))
        };
        let int = |index: usize| -> i64 {
            let value = argument(index);
            parse_int(value).unwrap_or_else(|| panic!("{name}: argument {index} `{value}` is not a number in {text}"))
        };
        let string = |index: usize| -> Vec<u8> {
            let (bytes, truncated) =
                decode_string(argument(index)).unwrap_or_else(|| panic!("{name}: argument {index} is not a string"));
            assert!(
                !truncated,
                "strace truncated a string; raise -s: {}",
                &text[..text.len().min(200)]
            );
            bytes
        };
        let directory_fd = |index: usize| -> Option<i64> {
            let value = argument(index);
            if value == "AT_FDCWD" { None } else { Some(int(index)) }
        };
        match name {
            "open" => self.open(pid, None, &string(0), argument(1), result),
            "creat" => self.open(pid, None, &string(0), "O_WRONLY|O_CREAT|O_TRUNC", result),
            // openat2's flags are inside its `{flags=…, mode=…, resolve=…}` argument.
            "openat" | "openat2" => self.open(pid, directory_fd(0), &string(1), argument(2), result),
            "close" => {
                self.table(pid).remove(&int(0));
            }
            // With CLOSE_RANGE_CLOEXEC it only marks them.
            "close_range" if !argument(2).contains("CLOSE_RANGE_CLOEXEC") => {
                let (first, last) = (int(0), parse_int(argument(1)).unwrap_or(i64::MAX));
                self.table(pid).retain(|fd, _| *fd < first || *fd > last);
            }
            "dup" => self.duplicate(pid, int(0), result),
            "dup2" | "dup3" if int(0) != result => self.duplicate(pid, int(0), result),
            "fcntl" if argument(1).starts_with("F_DUPFD") => self.duplicate(pid, int(0), result),
            "read" | "readv" => {
                if let Some(description) = self.description_of(pid, int(0)) {
                    self.descriptions[description].position += result as u64;
                }
            }
            "lseek" => {
                if let Some(description) = self.description_of(pid, int(0)) {
                    self.descriptions[description].position = result as u64;
                }
            }
            "write" => self.write(pid, int(0), string(1), None, result),
            "pwrite64" => self.write(pid, int(0), string(1), Some(int(3) as u64), result),
            "writev" => self.write(pid, int(0), vectors(argument(1)), None, result),
            "pwritev" | "pwritev2" => {
                let offset = int(3);
                self.write(
                    pid,
                    int(0),
                    vectors(argument(1)),
                    (offset >= 0).then_some(offset as u64),
                    result,
                );
            }
            "ftruncate" => {
                if let Some(inode) = self.file_of(pid, int(0)) {
                    self.resize(inode, int(1) as usize);
                }
            }
            "truncate" => {
                let path = self.resolve(pid, None, &string(0));
                if let Some(&inode) = self.watched(&path).and_then(|name| self.current.get(&name)) {
                    self.resize(inode, int(1) as usize);
                }
            }
            "fallocate" => {
                if let Some(inode) = self.file_of(pid, int(0)) {
                    let mode = argument(1);
                    let end = (int(2) + int(3)) as usize;
                    if mode == "0" {
                        if self.inodes[inode].current.len() < end {
                            self.resize(inode, end);
                        }
                    } else {
                        assert_eq!(mode, "FALLOC_FL_KEEP_SIZE", "unmodelled fallocate: {text}");
                    }
                }
            }
            "fsync" | "fdatasync" | "syncfs" => {
                if name == "syncfs" {
                    self.sync_everything();
                }
                match self.table(pid).get(&int(0)).cloned() {
                    Some(Open::File(description)) => {
                        self.inodes[self.descriptions[description].inode].sync();
                        self.file_syncs += 1;
                    }
                    Some(Open::Path(path)) if self.directories.contains(&path) => {
                        self.durable = self.current.clone();
                        self.directory_syncs += 1;
                    }
                    _ => {}
                }
            }
            "sync" => self.sync_everything(),
            // Starts write-back but neither waits for the disk cache nor writes metadata: no promise.
            "sync_file_range" => {}
            "unlink" => self.unlink(pid, None, &string(0)),
            "unlinkat" => self.unlink(pid, directory_fd(0), &string(1)),
            "rename" => self.rename(pid, (None, &string(0)), (None, &string(1)), text),
            "renameat" | "renameat2" => {
                if name == "renameat2" {
                    assert!(!argument(4).contains("RENAME_EXCHANGE"), "unmodelled: {text}");
                }
                self.rename(pid, (directory_fd(0), &string(1)), (directory_fd(2), &string(3)), text);
            }
            "mmap" if arguments.len() > 4 && self.file_of(pid, int(4)).is_some() => assert!(
                !(argument(2).contains("PROT_WRITE") && argument(3).contains("MAP_SHARED")),
                "a shared writable mapping of a watched file: its writes are invisible to strace: {text}"
            ),
            "copy_file_range" | "splice" | "sendfile" => {
                let out = if name == "sendfile" { int(0) } else { int(2) };
                assert!(
                    self.file_of(pid, out).is_none(),
                    "unmodelled write to a watched file: {text}"
                );
            }
            "link" | "linkat" | "symlink" | "symlinkat" | "mknod" | "mknodat" => {
                let (directory, path) = match name {
                    "link" | "symlink" => (None, string(1)),
                    "linkat" => (directory_fd(2), string(3)),
                    "symlinkat" => (directory_fd(1), string(2)),
                    "mknod" => (None, string(0)),
                    _ => (directory_fd(0), string(1)),
                };
                let path = self.resolve(pid, directory, &path);
                assert!(self.watched(&path).is_none(), "unmodelled: {text}");
            }
            "clone" | "clone3" | "fork" | "vfork" => {
                let child = result as u32;
                let parent = self.table_index(pid);
                if name.starts_with("clone") && raw.contains("CLONE_FILES") {
                    self.table_of.insert(child, parent);
                } else {
                    let copy = self.tables[parent].clone();
                    self.tables.push(copy);
                    self.table_of.insert(child, self.tables.len() - 1);
                }
            }
            _ => {}
        }
    }

    fn table_index(&mut self, pid: u32) -> usize {
        // A thread may print before its creator's `clone` returns; threads share the table.
        *self.table_of.entry(pid).or_insert(0)
    }

    fn table(&mut self, pid: u32) -> &mut HashMap<i64, Open> {
        let index = self.table_index(pid);
        &mut self.tables[index]
    }

    fn description_of(&self, pid: u32, fd: i64) -> Option<usize> {
        let table = &self.tables[*self.table_of.get(&pid).unwrap_or(&0)];
        match table.get(&fd) {
            Some(Open::File(description)) => Some(*description),
            _ => None,
        }
    }

    fn file_of(&self, pid: u32, fd: i64) -> Option<usize> {
        self.description_of(pid, fd)
            .map(|description| self.descriptions[description].inode)
    }

    /// The absolute, lexically normal form of `raw` as process `pid` means it.
    fn resolve(&mut self, pid: u32, directory_fd: Option<i64>, raw: &[u8]) -> PathBuf {
        let path = Path::new(OsStr::from_bytes(raw));
        if path.is_absolute() {
            return normalize(path);
        }
        let base = match directory_fd {
            None => self.cwd.clone(),
            Some(fd) => match self.table(pid).get(&fd) {
                Some(Open::Path(base)) => base.clone(),
                other => panic!(
                    "path {} relative to descriptor {fd}, which is {other:?}",
                    path.display()
                ),
            },
        };
        normalize(&base.join(path))
    }

    /// The name of `path` in the watched directory, if it is there (`-shm` is not watched).
    fn watched(&self, path: &Path) -> Option<String> {
        let name = path.file_name()?.to_str()?.to_owned();
        (path
            .parent()
            .is_some_and(|parent| self.directories.iter().any(|directory| directory == parent))
            && !name.ends_with("-shm"))
        .then_some(name)
    }

    fn open(&mut self, pid: u32, directory_fd: Option<i64>, raw: &[u8], flags: &str, fd: i64) {
        let path = self.resolve(pid, directory_fd, raw);
        let entry = match self.watched(&path) {
            Some(name) if !flags.contains("O_DIRECTORY") => {
                assert!(
                    !flags.contains("O_TMPFILE"),
                    "unmodelled O_TMPFILE in the watched directory"
                );
                let inode = match self.current.get(&name) {
                    Some(&inode) => inode,
                    None => {
                        // Created: its name is durable only after the directory's next fsync.
                        self.inodes.push(Inode::default());
                        self.current.insert(name, self.inodes.len() - 1);
                        self.inodes.len() - 1
                    }
                };
                if flags.contains("O_TRUNC") {
                    self.resize(inode, 0);
                }
                self.descriptions.push(Description {
                    inode,
                    position: 0,
                    append: flags.contains("O_APPEND"),
                });
                Open::File(self.descriptions.len() - 1)
            }
            _ => Open::Path(path),
        };
        self.table(pid).insert(fd, entry);
    }

    fn duplicate(&mut self, pid: u32, old: i64, new: i64) {
        let table = self.table(pid);
        match table.get(&old).cloned() {
            Some(entry) => table.insert(new, entry),
            None => table.remove(&new),
        };
    }

    fn write(&mut self, pid: u32, fd: i64, mut data: Vec<u8>, offset: Option<u64>, written: i64) {
        let Some(description) = self.description_of(pid, fd) else {
            return;
        };
        data.truncate(written as usize);
        let Description {
            inode,
            position,
            append,
        } = self.descriptions[description].clone();
        let at = match offset {
            Some(offset) => offset as usize,
            None if append => self.inodes[inode].current.len(),
            None => position as usize,
        };
        if offset.is_none() {
            self.descriptions[description].position = (at + data.len()) as u64;
        }
        self.inodes[inode].change(Change::Write { at, data });
    }

    fn resize(&mut self, inode: usize, length: usize) {
        self.inodes[inode].change(Change::Resize(length));
    }

    fn sync_everything(&mut self) {
        for inode in &mut self.inodes {
            inode.sync();
        }
        self.durable = self.current.clone();
        self.file_syncs += 1;
        self.directory_syncs += 1;
    }

    fn unlink(&mut self, pid: u32, directory_fd: Option<i64>, raw: &[u8]) {
        let path = self.resolve(pid, directory_fd, raw);
        if let Some(name) = self.watched(&path) {
            // Open descriptors keep the inode; the name is gone, durably after a directory fsync.
            self.current.remove(&name);
        }
    }

    fn rename(&mut self, pid: u32, from: (Option<i64>, &[u8]), to: (Option<i64>, &[u8]), text: &str) {
        let from = self.resolve(pid, from.0, from.1);
        let to = self.resolve(pid, to.0, to.1);
        match (self.watched(&from), self.watched(&to)) {
            (Some(from), Some(to)) => {
                let inode = self
                    .current
                    .remove(&from)
                    .unwrap_or_else(|| panic!("rename of a file the model does not know: {text}"));
                self.current.insert(to, inode);
            }
            (Some(from), None) => {
                self.current.remove(&from);
            }
            (None, Some(_)) => panic!("unmodelled: a file moved into the watched directory: {text}"),
            (None, None) => {}
        }
    }
}

/// `"1234 rest"` → (1234, "rest"); a line without a pid is process 0.
fn split_pid(line: &str) -> (u32, &str) {
    match line.split_once(' ') {
        Some((pid, rest)) if !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()) => {
            (pid.parse().expect("pid"), rest.trim_start())
        }
        _ => (0, line),
    }
}

/// The comma-separated arguments of a call, split outside strings, brackets and braces.
fn split_arguments(text: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut depth = 0_i32;
    let mut in_string = false;
    let mut escaped = false;
    for character in text.chars() {
        if in_string {
            current.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
            continue;
        }
        match character {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                arguments.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    if !current.trim().is_empty() {
        arguments.push(current.trim().to_owned());
    }
    arguments
}

/// A decimal or `0x` number (strace prints some results and flags in hex).
fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    text.parse().ok()
}

/// A strace string literal (`"\x53\x51"`, or with C escapes) → (bytes, whether `...` follows,
/// that is, strace cut it short).
fn decode_string(text: &str) -> Option<(Vec<u8>, bool)> {
    let inner = text.strip_prefix('"')?;
    let bytes = inner.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len() / 4);
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => return Some((decoded, inner[index + 1..].starts_with("..."))),
            b'\\' => {
                let escape = *bytes.get(index + 1)?;
                index += 2;
                match escape {
                    b'x' => {
                        let hex = std::str::from_utf8(bytes.get(index..index + 2)?).ok()?;
                        decoded.push(u8::from_str_radix(hex, 16).ok()?);
                        index += 2;
                    }
                    b'0'..=b'7' => {
                        let mut value = u32::from(escape - b'0');
                        for _ in 0..2 {
                            match bytes.get(index) {
                                Some(digit @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(digit - b'0');
                                    index += 1;
                                }
                                _ => break,
                            }
                        }
                        decoded.push(value as u8);
                    }
                    b'n' => decoded.push(b'\n'),
                    b't' => decoded.push(b'\t'),
                    b'r' => decoded.push(b'\r'),
                    b'v' => decoded.push(0x0b),
                    b'f' => decoded.push(0x0c),
                    other => decoded.push(other),
                }
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    None
}

/// The bytes of a `writev` vector `[{iov_base="…", iov_len=N}, …]`, in order.
fn vectors(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (index, _) in text.match_indices("iov_base=") {
        let (part, truncated) = decode_string(&text[index + "iov_base=".len()..]).expect("iov_base string");
        assert!(!truncated, "strace truncated a vector; raise -s");
        bytes.extend(part);
    }
    bytes
}

fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

// ---------------------------------------------------------------------------------------------
// Running the binary under strace and cutting the power.

/// Whether strace can trace here. If not: fails under CI, otherwise says so and skips.
fn strace_usable() -> bool {
    let works = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=none", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !works {
        let message = "the power-cut test needs a working `strace` (install it: apt-get install strace)";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    works
}

/// A small seeded generator (splitmix64), so the cut moments repeat from run to run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// In `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
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
    let flush_some = random.next() % 2 == 1;
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
fn resume(workdir: &Workdir, sandbox: &TestSandbox, arguments: &[&str], retry_failed: bool) -> Option<i32> {
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
fn cut_repeatedly(
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
fn check_results(workdir: &Workdir, stats: &Stats, rows: usize, problems: &mut Vec<String>) {
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

fn rows(count: usize, card_for: impl Fn(usize) -> &'static str) -> String {
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

// ---------------------------------------------------------------------------------------------
// The tests.

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
    if !strace_usable() {
        return;
    }
    let workdir = Workdir::new();
    workdir.write("day.csv", &rows(ROWS, |_| GOOD_CARD));
    let sandbox = TestSandbox::start(SandboxConfig {
        latency: Duration::from_millis(2),
        seed: 20261125,
        ..SandboxConfig::default()
    });
    let arguments = ["run", "day.csv", "--rate", "200", "--concurrency", "8"];
    let mut problems = cut_repeatedly(&workdir, &sandbox, &arguments, CUTS, Seeded(7), "cut", |stats| {
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
    if !strace_usable() {
        return;
    }
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
    let mut problems = cut_repeatedly(&workdir, &sandbox, &retry, CUTS, Seeded(11), "retry cut", |stats| {
        ROWS - stats
            .refunds
            .iter()
            .filter(|refund| refund.response_code == "A")
            .count()
    });

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
