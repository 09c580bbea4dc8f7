//! The two ways the tool creates files on disk, shared by the ledger and the results writer.
//!
//! The ledger and its lock and side files hold every key and the history of what was refunded:
//! each is created with mode 0600 ([`private_file`]) so it never exists readable by anyone else,
//! whatever the umask. The results CSV holds masked payees only and is meant to be opened by a
//! colleague on a shared folder, so it is created as the umask allows.
//!
//! Files that replace an earlier version (the results CSV) are written whole or not at all
//! ([`write_atomically`]): to a temporary file beside the target, fsynced, renamed over it, and
//! then the directory is fsynced, because a rename is durable only once its directory is: before
//! that, a power cut can bring the old file back, or none. The ledger syncs its directory the
//! same way when it creates a new ledger file ([`sync_directory`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::Path;

/// Opens (creating if needed) a file readable and writable by its owner only.
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    restrict_permissions(path);
    Ok(file)
}

/// Sets mode 0600 on an existing file (a file created earlier, or by SQLite, with a looser umask).
pub(crate) fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A file that does not exist yet needs nothing; any other failure shows up when the
        // file is used, with its path, so it is not reported twice here.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Fsyncs the directory holding `path`, so that files created in it, or renamed into it, survive
/// a power cut.
pub(crate) fn sync_directory(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(directory_of(path))?.sync_all()?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `path` whole or not at all: `contents` fills a private temporary file beside it (and
/// hands the writer back), which is fsynced and renamed over `path`, and then the directory is
/// fsynced. A reader never sees half a file and a crash never leaves a torn one; on any failure
/// the temporary file is removed and `path` is left as it was. `io_error` turns this function's
/// own I/O failures into the caller's error.
pub(crate) fn write_atomically<T, E>(
    path: &Path,
    contents: impl FnOnce(BufWriter<File>) -> Result<(T, BufWriter<File>), E>,
    io_error: impl Fn(io::Error) -> E,
) -> Result<T, E> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results.csv".into());
    let temporary = directory_of(path).join(format!(".{file_name}.{}.tmp", std::process::id()));
    // Created as the umask allows (0666 less the umask), unlike the ledger: the results CSV holds
    // masked payees only, and a colleague on a shared folder must be able to open it.
    let file = File::create(&temporary).map_err(&io_error)?;
    file.set_len(0).map_err(&io_error)?;
    let written = contents(BufWriter::new(file)).and_then(|(value, buffered)| {
        let file = buffered.into_inner().map_err(|error| io_error(error.into_error()))?;
        file.sync_all().map_err(&io_error)?;
        fs::rename(&temporary, path).map_err(&io_error)?;
        sync_directory(path).map_err(&io_error)?;
        Ok(value)
    });
    if written.is_err() {
        // Leave no half-written temporary file behind; the error says what failed.
        let _ = fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_whole_or_leaves_it_alone() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("out.csv");
        fs::write(&path, "old\n").unwrap();
        let failed: Result<(), io::Error> = write_atomically(
            &path,
            |mut writer| {
                writer.write_all(b"half")?;
                Err(io::Error::other("stopped"))
            },
            |error| error,
        );
        assert!(failed.is_err());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "old\n",
            "a failed write leaves the file"
        );
        let written: Result<u8, io::Error> = write_atomically(
            &path,
            |mut writer| {
                writer.write_all(b"new\n")?;
                Ok((7, writer))
            },
            |error| error,
        );
        assert_eq!(written.unwrap(), 7);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let left: Vec<_> = fs::read_dir(directory.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // As the umask allows: the same mode as any file created here.
            let plain = directory.path().join("plain");
            File::create(&plain).unwrap();
            let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&plain));
        }
    }
}
