//! Replaying the trace: each `strace -f` line (a call, or half of one another thread split) applied
//! to the model of `mod.rs` — opens, writes, truncations, syncs, renames, unlinks, `dup`s and
//! forks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::strace::{decode_string, normalize, parse_int, split_arguments, split_pid, vectors};
use super::{Change, Description, Inode, Open, PowerCut};

impl PowerCut {
    /// One line of `strace -f` output.
    pub(crate) fn feed(&mut self, line: &str) {
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
    pub(crate) fn call(&mut self, pid: u32, text: &str) {
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

    pub(crate) fn table_index(&mut self, pid: u32) -> usize {
        // A thread may print before its creator's `clone` returns; threads share the table.
        *self.table_of.entry(pid).or_insert(0)
    }

    pub(crate) fn table(&mut self, pid: u32) -> &mut HashMap<i64, Open> {
        let index = self.table_index(pid);
        &mut self.tables[index]
    }

    pub(crate) fn description_of(&self, pid: u32, fd: i64) -> Option<usize> {
        let table = &self.tables[*self.table_of.get(&pid).unwrap_or(&0)];
        match table.get(&fd) {
            Some(Open::File(description)) => Some(*description),
            _ => None,
        }
    }

    pub(crate) fn file_of(&self, pid: u32, fd: i64) -> Option<usize> {
        self.description_of(pid, fd)
            .map(|description| self.descriptions[description].inode)
    }

    /// The absolute, lexically normal form of `raw` as process `pid` means it.
    pub(crate) fn resolve(&mut self, pid: u32, directory_fd: Option<i64>, raw: &[u8]) -> PathBuf {
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
    pub(crate) fn watched(&self, path: &Path) -> Option<String> {
        let name = path.file_name()?.to_str()?.to_owned();
        (path
            .parent()
            .is_some_and(|parent| self.directories.iter().any(|directory| directory == parent))
            && !name.ends_with("-shm"))
        .then_some(name)
    }

    pub(crate) fn open(&mut self, pid: u32, directory_fd: Option<i64>, raw: &[u8], flags: &str, fd: i64) {
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

    pub(crate) fn duplicate(&mut self, pid: u32, old: i64, new: i64) {
        let table = self.table(pid);
        match table.get(&old).cloned() {
            Some(entry) => table.insert(new, entry),
            None => table.remove(&new),
        };
    }

    pub(crate) fn write(&mut self, pid: u32, fd: i64, mut data: Vec<u8>, offset: Option<u64>, written: i64) {
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

    pub(crate) fn resize(&mut self, inode: usize, length: usize) {
        self.inodes[inode].change(Change::Resize(length));
    }

    pub(crate) fn sync_everything(&mut self) {
        for inode in &mut self.inodes {
            inode.sync();
        }
        self.durable = self.current.clone();
        self.file_syncs += 1;
        self.directory_syncs += 1;
    }

    pub(crate) fn unlink(&mut self, pid: u32, directory_fd: Option<i64>, raw: &[u8]) {
        let path = self.resolve(pid, directory_fd, raw);
        if let Some(name) = self.watched(&path) {
            // Open descriptors keep the inode; the name is gone, durably after a directory fsync.
            self.current.remove(&name);
        }
    }

    pub(crate) fn rename(&mut self, pid: u32, from: (Option<i64>, &[u8]), to: (Option<i64>, &[u8]), text: &str) {
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
