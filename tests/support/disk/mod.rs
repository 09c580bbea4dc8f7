//! The disk model of the power-cut test: the files of one directory replayed from an
//! `strace -f -xx` trace of every process that touched them, giving what the page cache holds
//! (what a crash leaves) and what was fsynced (what a power cut leaves). See `power_cut/` for
//! how it is used and checked.
//!
//! This module holds the model's state (files, open descriptions, descriptor tables) and what
//! it answers: the files after a power cut, the page cache, the names a killed call leaves
//! uncertain. `syscalls.rs` replays each traced call onto that state; `strace.rs` reads
//! strace's text (pids, arguments, numbers, string literals).

#![allow(dead_code)]

// Each traced system call, replayed onto the model.
mod syscalls;
// Reading strace's output: pids, arguments, numbers and string literals.
pub(crate) mod strace;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use strace::{normalize, parse_int, split_arguments, split_pid};

/// The ledger's files, rebuilt after a cut. `-shm` is not among them: SQLite rebuilds it from the
/// WAL, so it is deleted instead.
pub(crate) const LEDGER_FILES: [&str; 3] = ["ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-journal"];

/// One file's contents: what the process sees (the page cache), what its last sync made durable,
/// and the changes made since, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Change>,
}

/// A change to a file's bytes.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Write { at: usize, data: Vec<u8> },
    Resize(usize),
}

impl Change {
    pub(crate) fn apply(&self, contents: &mut Vec<u8>) {
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
    pub(crate) fn change(&mut self, change: Change) {
        change.apply(&mut self.current);
        self.pending.push(change);
    }

    pub(crate) fn sync(&mut self) {
        self.durable = self.current.clone();
        self.pending.clear();
    }
}

/// An open file description: descriptors made by `dup` share it, and so share the offset.
#[derive(Clone, Debug)]
pub(crate) struct Description {
    inode: usize,
    position: u64,
    append: bool,
}

/// What a descriptor refers to: a file in the watched directory, or any other path (kept so
/// `*at` calls and directory fsyncs can be resolved).
#[derive(Clone, Debug)]
pub(crate) enum Open {
    File(usize),
    Path(PathBuf),
}

/// The files of one directory replayed from an `strace -f -xx` trace of every process that
/// touched them, as the page cache sees them and as a power cut would leave them.
pub(crate) struct PowerCut {
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
    pub(crate) killed_in: Vec<String>,
}

impl PowerCut {
    /// Starts from `files` (name → bytes) in `directory`, all of them durable.
    pub(crate) fn new(directory: &Path, cwd: &Path, files: BTreeMap<String, Vec<u8>>) -> PowerCut {
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
    pub(crate) fn replay(&mut self, trace: &str) {
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
    pub(crate) fn after_power_cut(
        &self,
        mut reached_disk: impl FnMut(&str, usize) -> usize,
    ) -> BTreeMap<String, Vec<u8>> {
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
    pub(crate) fn page_cache(&self) -> BTreeMap<String, Vec<u8>> {
        self.current
            .iter()
            .map(|(name, &inode)| (name.clone(), self.inodes[inode].current.clone()))
            .collect()
    }

    /// Names a call that never returned may have changed, so the page-cache check skips them
    /// (`None`: the call may have changed the directory itself).
    pub(crate) fn uncertain(&self) -> Option<BTreeSet<String>> {
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

    pub(crate) fn report(&self) -> String {
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
}
