//! Files the tool writes never replace files it needs.
//!
//! An output path (`run --results`, `reconcile --results`, `status --write-results`) is written
//! by a rename over whatever the path names. Named after the input file, the ledger or one of
//! the ledger's side files, that rename would destroy the refunds' record or the file being
//! sent — and the command would still exit 0. So every output path goes through
//! [`refuse_protected`] before anything is sent and before the ledger is opened for writing.
//!
//! Two names are the same file when they resolve to one canonical path — of the file itself
//! when it exists (a symlink is followed), else of its directory plus its name — or, for files
//! that exist, when they share device and inode (a hard link).

use std::fs;
use std::path::{Path, PathBuf};

use crate::ledger;

/// A file an output path must not name, and what it is, for the message.
#[derive(Debug, Clone)]
pub struct Protected {
    /// "the input file", "the ledger", "the ledger's WAL file", …
    pub what: &'static str,
    /// The path as the user gave it (or as the ledger names it).
    pub path: PathBuf,
}

/// An output path that names a protected file.
#[derive(Debug, thiserror::Error)]
#[error(
    "{option} {output} is {what} {protected}: writing the results there would replace it. Nothing was sent; choose another path",
    output = .output.display(),
    protected = .protected.display()
)]
pub struct ProtectedFileError {
    /// The option that named the output (`--results`, `--write-results`).
    pub option: &'static str,
    /// The output path given.
    pub output: PathBuf,
    /// What the protected file is.
    pub what: &'static str,
    /// The protected file's path.
    pub protected: PathBuf,
}

/// The files a command over `input` with the ledger at `ledger` needs: the input, the ledger,
/// and the ledger's WAL, shared-memory, journal and lock files — named after the ledger's
/// canonical path as the ledger opens it, and after the file a symlinked ledger points to.
pub fn protected_files(input: Option<&Path>, ledger_path: &Path) -> Vec<Protected> {
    let mut files = Vec::new();
    if let Some(input) = input {
        files.push(Protected {
            what: "the input file",
            path: input.to_owned(),
        });
    }
    files.push(Protected {
        what: "the ledger",
        path: ledger_path.to_owned(),
    });
    let mut spellings = vec![entry_path(ledger_path)];
    if let Ok(target) = fs::canonicalize(ledger_path)
        && !spellings.contains(&target)
    {
        spellings.push(target);
    }
    const SIDE: [&str; 4] = [
        "the ledger's WAL file",
        "the ledger's shared-memory file",
        "the ledger's journal",
        "the ledger's lock file",
    ];
    for spelling in spellings {
        for (what, path) in SIDE.into_iter().zip(ledger::side_files(&spelling)) {
            files.push(Protected { what, path });
        }
    }
    files
}

/// Refuses `output` (given by `option`) when it is the same file as one of `protected`.
pub fn refuse_protected(
    option: &'static str,
    output: &Path,
    protected: &[Protected],
) -> Result<(), ProtectedFileError> {
    let output_identity = FileIdentity::of(output);
    match protected
        .iter()
        .find(|file| output_identity.same_as(&FileIdentity::of(&file.path)))
    {
        Some(file) => Err(ProtectedFileError {
            option,
            output: output.to_owned(),
            what: file.what,
            protected: file.path.clone(),
        }),
        None => Ok(()),
    }
}

/// What makes two names one file.
struct FileIdentity {
    /// The canonical path of the directory entry, and of the file it leads to when it exists.
    paths: Vec<PathBuf>,
    /// Device and inode, when the file exists.
    inode: Option<(u64, u64)>,
}

impl FileIdentity {
    fn of(path: &Path) -> FileIdentity {
        let mut paths = vec![entry_path(path)];
        if let Ok(target) = fs::canonicalize(path) {
            paths.push(target);
        }
        FileIdentity {
            paths,
            inode: inode(path),
        }
    }

    fn same_as(&self, other: &FileIdentity) -> bool {
        self.paths.iter().any(|path| other.paths.contains(path)) || (self.inode.is_some() && self.inode == other.inode)
    }
}

/// The canonical path of `path`'s directory joined with its name: the entry itself, not what a
/// symlink there points to, and defined for a file that does not exist yet.
fn entry_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent)
            .map(|parent| parent.join(name))
            .unwrap_or(absolute.clone()),
        _ => absolute,
    }
}

#[cfg(unix)]
fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn inode(_path: &Path) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_protected_file_is_refused_and_other_files_are_not() {
        let directory = tempfile::tempdir().expect("temp dir");
        let input = directory.path().join("day.csv");
        let ledger = directory.path().join("ledger.sqlite");
        fs::write(&input, "header\n").expect("input");
        fs::write(&ledger, "ledger").expect("ledger");
        fs::create_dir(directory.path().join("sub")).expect("sub");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&input, directory.path().join("link.csv")).expect("symlink");
            fs::hard_link(&ledger, directory.path().join("hard.csv")).expect("hard link");
        }
        let protected = protected_files(Some(&input), &ledger);
        let refused = |name: &str| refuse_protected("--results", &directory.path().join(name), &protected).is_err();
        for name in [
            "day.csv",
            "sub/../day.csv",
            "./ledger.sqlite",
            "ledger.sqlite-wal",
            "ledger.sqlite-shm",
            "ledger.sqlite-journal",
            "ledger.sqlite.lock",
        ] {
            assert!(refused(name), "{name}");
        }
        #[cfg(unix)]
        for name in ["link.csv", "hard.csv"] {
            assert!(refused(name), "{name}");
        }
        for name in ["day.results.csv", "sub/day.csv", "ledger.sqlite-wal2"] {
            assert!(!refused(name), "{name}");
        }
        let error = refuse_protected("--results", &directory.path().join("ledger.sqlite-wal"), &protected)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("ledger.sqlite-wal is the ledger's WAL file") && error.contains("Nothing was sent"),
            "{error}"
        );
    }
}
