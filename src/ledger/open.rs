//! Opening and closing the ledger file, its run lock, and what keeps it durable on disk.
//!
//! Every command starts here: [`Ledger::open`] (a run, with the lock) or [`Ledger::open_reader`]
//! (`status`, without it) resolve the path, refuse a hard-linked file, create a new file 0600,
//! connect with the ledger's settings, bring the schema up to date and notice a copied ledger;
//! [`Ledger::close`] ends a clean run with the WAL checkpointed into the main file. See the
//! module documentation of [`crate::ledger`] for why nothing here opens the database file a
//! second time.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::schema::MIGRATIONS;
use super::{Ledger, LedgerError};
use crate::files::{private_file, restrict_permissions, sync_directory};

/// The `meta` entry naming the file the ledger was last used as (see `Ledger::notice_copy`).
const FILE_IDENTITY: &str = "file_identity";

/// The `meta` entry holding the token its lock file holds too (see `Ledger::notice_copy`).
const TOKEN: &str = "open_token";

/// `device:inode:canonical path` of the ledger file, or `None` where the platform has no inodes.
fn file_identity(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs::metadata(path).ok()?;
        Some(format!("{}:{}:{}", metadata.dev(), metadata.ino(), path.display()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl Ledger {
    /// The default ledger path: `<data dir>/refund-batch/ledger.sqlite`, shared by cron and
    /// manual runs of the same user so they see one history.
    pub fn default_path() -> Option<PathBuf> {
        dirs::data_dir().map(|directory| directory.join("refund-batch").join("ledger.sqlite"))
    }

    /// Opens (creating if needed) the ledger at `path` and takes its run lock.
    ///
    /// The lock is an OS file lock on `<canonical path>.lock`, so it is released even when the
    /// process is killed, and two spellings of one path (a symlink, `./x` and `x`) meet the same
    /// lock; a second writer on the same ledger gets [`LedgerError::Busy`] at once.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let io_error = |source| LedgerError::Io {
            path: path.to_owned(),
            source,
        };
        let path = &canonical_path(path).map_err(io_error)?;
        let lock_path = lock_path(path);
        let lock = private_file(&lock_path).map_err(io_error)?;
        if let Err(error) = lock.try_lock() {
            return match error {
                fs::TryLockError::WouldBlock => Err(LedgerError::Busy {
                    path: path.to_owned(),
                    lock: lock_path,
                }),
                fs::TryLockError::Error(source) => Err(io_error(source)),
            };
        }
        let created = !path.exists();
        refuse_hard_links(path)?;
        // Create the database file 0600 before SQLite opens it, so it never exists readable.
        private_file(path).map_err(io_error)?;
        let connection = connect(path, created)?;
        let mut ledger = Ledger {
            connection,
            group_open: false,
            created,
            first_send_noted: None,
            path: path.to_owned(),
            _lock: Some(lock),
        };
        ledger.migrate()?;
        ledger.notice_copy()?;
        // The WAL and shared-memory files exist now; make sure they are private too.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            restrict_permissions(Path::new(&side));
        }
        if created {
            // Made without a sync per step (see `connect`). The database file's first page says
            // "WAL": without it on disk SQLite would throw the WAL away on the next open, so it
            // is synced now. The WAL is synced by the first synced commit (the first group of
            // `sending` marks, before any request; a batch's record before it is not synced, see
            // `write_unsynced`), and every commit of refunds from here on syncs it again.
            //
            // Synced through SQLite, never by opening the file a second time: POSIX locks belong
            // to the process, so closing any other descriptor on the database would drop the
            // locks SQLite holds, and a reader (`status`) closing its connection could then
            // checkpoint and delete the WAL this run is still appending to. A checkpoint under
            // `synchronous=FULL` syncs the WAL, copies it into the database and syncs the
            // database: the first page, saying "WAL", and the schema are on disk after it.
            ledger
                .connection
                .execute_batch("PRAGMA synchronous=FULL;")
                .map_err(|source| ledger.sqlite_error(source))?;
            ledger
                .connection
                .query_row("PRAGMA wal_checkpoint(FULL)", [], |row| row.get::<_, i64>(0))
                .map_err(|source| ledger.sqlite_error(source))?;
            // The new ledger's directory entry must be on disk before any commit in it counts as
            // durable. An existing ledger's entry already is; the WAL, which SQLite creates anew
            // on each open, SQLite itself makes durable: the first sync of a newly created WAL
            // also syncs its directory, before that first synced commit returns.
            sync_directory(path).map_err(io_error)?;
        }
        Ok(ledger)
    }

    /// Opens an existing ledger for reading only, without the run lock, so `status` can show a
    /// run's progress while it writes. Sees every commit made before each query (WAL readers).
    pub fn open_reader(path: &Path) -> Result<Ledger, LedgerError> {
        let io_error = |source| LedgerError::Io {
            path: path.to_owned(),
            source,
        };
        let path = &canonical_path(path).map_err(io_error)?;
        if !path.exists() {
            return Err(LedgerError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no ledger here yet"),
            });
        }
        refuse_hard_links(path)?;
        let connection = connect(path, false)?;
        connection
            .execute_batch("PRAGMA query_only=ON;")
            .map_err(|source| LedgerError::Sqlite {
                path: path.to_owned(),
                source,
            })?;
        let ledger = Ledger {
            connection,
            group_open: false,
            created: false,
            first_send_noted: None,
            path: path.to_owned(),
            _lock: None,
        };
        let version = ledger.schema_version()?;
        if version != MIGRATIONS.len() {
            return Err(LedgerError::Corrupt {
                path: path.to_owned(),
                message: format!(
                    "schema version {version} is not this refund-batch's ({}); it can be read once no other command holds it",
                    MIGRATIONS.len()
                ),
            });
        }
        Ok(ledger)
    }

    /// Notices a ledger file that is not the one it was: a copy, a restored backup, a file moved
    /// or replaced. Such a file knows nothing of what the original sent after the copy was made,
    /// so it vouches for no environment any more: its record of first sends is cleared, and rows
    /// it has never seen are looked up at Payroc again (`--precheck auto`) until it has recorded
    /// sends of its own for long enough.
    ///
    /// Two marks tell: the file's device, inode and canonical path (read with `stat`, never by
    /// opening it: see [`Ledger::open`]), which a copy or a move changes; and a token, new at every
    /// open, kept both in the ledger and in its lock file beside it, which a backup copied back
    /// over the file in place (`cp`, same inode) does not change: the old file carries an old
    /// token, the lock file the newest. A lost or deleted lock file reads as a replaced ledger too,
    /// which costs only look-ups.
    fn notice_copy(&mut self) -> Result<(), LedgerError> {
        let identity = file_identity(&self.path);
        let recorded_identity = self.meta(FILE_IDENTITY)?;
        let recorded_token = self.meta(TOKEN)?;
        let lock_token = self.read_lock_token();
        let moved = matches!((&recorded_identity, &identity), (Some(recorded), Some(now)) if recorded != now);
        let restored = recorded_token.is_some() && recorded_token != lock_token;
        let replaced = moved || restored;
        // Letters only (a–p for each half-byte of a random UUID): a file of the tool's holds no
        // run of digits a scan for card numbers could mistake for one.
        let token: String = uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .flat_map(|byte| [byte >> 4, byte & 0x0f])
            .map(|nibble| char::from(b'a' + nibble))
            .collect();
        self.write_unsynced(|connection| {
            if replaced {
                connection.execute("DELETE FROM meta WHERE name LIKE 'first_send_at:%'", [])?;
            }
            let mut set = connection.prepare_cached(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )?;
            if let Some(identity) = &identity {
                set.execute(params![FILE_IDENTITY, identity])?;
            }
            set.execute(params![TOKEN, token])?;
            Ok(())
        })?;
        // Committed without an fsync of its own (the run's first synced commit, or the close's
        // checkpoint, makes it durable), then the lock file: a crash or power cut between them,
        // or losing either, leaves the two different, which reads as a replaced ledger and costs
        // only look-ups.
        self.write_lock_token(&token);
        if replaced {
            tracing::warn!(
                "this ledger file was copied, moved or restored since it was last used: it vouches for nothing it did \
                 not send itself, so orders it has not seen are looked up at Payroc before they are sent"
            );
        }
        Ok(())
    }

    /// The token the lock file holds (see [`Ledger::notice_copy`]), if any.
    fn read_lock_token(&self) -> Option<String> {
        use std::io::{Read, Seek};
        let mut lock = self._lock.as_ref()?;
        let mut text = String::new();
        lock.seek(std::io::SeekFrom::Start(0)).ok()?;
        lock.take(64).read_to_string(&mut text).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// Writes `token` into the lock file. Not synced: a token lost in a crash reads as a replaced
    /// ledger at the next open, the cautious reading.
    fn write_lock_token(&self, token: &str) {
        use std::io::{Seek, Write};
        if let Some(mut lock) = self._lock.as_ref() {
            let written = lock
                .set_len(0)
                .and_then(|()| lock.seek(std::io::SeekFrom::Start(0)))
                .and_then(|_| lock.write_all(token.as_bytes()));
            if let Err(error) = written {
                tracing::warn!("could not write the ledger's lock file: {error}");
            }
        }
    }

    /// Ends a clean run: checkpoints the WAL into the main file and truncates it, so the main
    /// file alone holds everything. Dropping a ledger without `close` is safe too (the WAL is
    /// replayed on the next open); this is what makes it tidy and lets errors be reported.
    pub fn close(mut self) -> Result<(), LedgerError> {
        self.abort_group()?;
        if self._lock.is_some() {
            // Whatever a failed write left set (see `write_unsynced`): this checkpoint must sync
            // the WAL before it copies it and the database before it truncates the WAL.
            self.connection
                .execute_batch("PRAGMA synchronous=FULL;")
                .map_err(|source| self.sqlite_error(source))?;
            self.connection
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0))
                .map_err(|source| self.sqlite_error(source))
                .map(|busy| {
                    // Not a failure: every commit is durable in the WAL, which the next open
                    // replays; only the tidy single-file state is missed.
                    if busy != 0 {
                        tracing::warn!("the ledger's WAL could not be checkpointed at close (a reader held it)");
                    }
                })?;
        }
        Ok(())
    }
}

/// Opens the SQLite connection with the ledger's settings.
///
/// `creating`: the file is new and holds nothing yet. Its creation (the switch to WAL, which
/// goes through a rollback journal, and the schema) then runs with `synchronous=OFF`, and
/// [`Ledger::open`] syncs the database file once at the end (the WAL is synced by the first
/// commit, which every later write waits for): one sync instead of one per step. Nothing is lost by it: a crash before that sync leaves a ledger that knows
/// nothing, which is what it knew anyway, and no request leaves before it.
fn connect(path: &Path, creating: bool) -> Result<Connection, LedgerError> {
    let sqlite = |source| LedgerError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let connection = Connection::open(path).map_err(sqlite)?;
    // synchronous=FULL: in WAL mode every commit syncs the WAL, so what a commit returned is on
    // disk even through a power cut (NORMAL syncs only at checkpoints; only a batch's
    // bookkeeping commits without a sync, see `write_unsynced`). A reader waits briefly
    // for the writer's checkpoint instead of failing at once.
    let synchronous = if creating { "OFF" } else { "FULL" };
    connection
        .execute_batch(&format!(
            "PRAGMA busy_timeout=5000; PRAGMA synchronous={synchronous}; PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
        ))
        .map_err(sqlite)?;
    Ok(connection)
}

/// The ledger's path with symlinks and `.`/`..` resolved (the file itself may not exist yet;
/// its directory is created).
fn canonical_path(path: &Path) -> std::io::Result<PathBuf> {
    if let Ok(canonical) = fs::canonicalize(path) {
        return Ok(canonical);
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the ledger path names no file"))?;
    Ok(fs::canonicalize(parent)?.join(name))
}

/// Refuses a ledger file with several hard links (see the module documentation).
fn refuse_hard_links(path: &Path) -> Result<(), LedgerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(metadata) = fs::metadata(path)
            && metadata.nlink() > 1
        {
            return Err(LedgerError::Corrupt {
                path: path.to_owned(),
                message: format!(
                    "the ledger file has {} hard links; open it by one name only (SQLite keeps its uncheckpointed commits in a WAL named after the path, which another name would not see). Copy it instead of linking it",
                    metadata.nlink()
                ),
            });
        }
    }
    Ok(())
}

fn lock_path(path: &Path) -> PathBuf {
    with_suffix(path, ".lock")
}

/// The files kept beside the ledger opened at `path` (its canonical spelling): SQLite's WAL,
/// shared memory and rollback journal, and the run lock. Each holds part of the ledger's state
/// while a command runs, so nothing the tool writes may replace one.
pub fn side_files(path: &Path) -> [PathBuf; 4] {
    [
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
        with_suffix(path, "-journal"),
        lock_path(path),
    ]
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::ledger::testing::{key, new_refund};
    use crate::refund::{Environment, RefundStatus};

    #[test]
    fn a_reader_sees_a_writers_commits_and_a_hard_link_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.sqlite");
        let mut writer = Ledger::open(&path).unwrap();
        assert!(writer.was_created());
        let batch = writer
            .begin_batch("file.csv", "abc", Environment::Sandbox, "run")
            .unwrap();
        writer.insert(&new_refund("id-1", key(0)), batch, 2).unwrap();
        let reader = Ledger::open_reader(&path).unwrap();
        assert_eq!(reader.find("id-1").unwrap().unwrap().state, RefundStatus::Pending);
        drop(reader);
        writer.close().unwrap();
        // After a clean close the main file alone holds everything.
        let wal = directory.path().join("ledger.sqlite-wal");
        assert!(fs::metadata(&wal).map_or(true, |metadata| metadata.len() == 0));
        assert!(!Ledger::open(&path).unwrap().was_created());
        #[cfg(unix)]
        {
            fs::hard_link(&path, directory.path().join("other-name.sqlite")).unwrap();
            assert!(matches!(Ledger::open(&path), Err(LedgerError::Corrupt { .. })));
        }
    }

    #[test]
    fn the_lock_is_taken_on_the_canonical_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.sqlite");
        let _first = Ledger::open(&path).unwrap();
        let roundabout = directory.path().join(".").join("ledger.sqlite");
        assert!(matches!(Ledger::open(&roundabout), Err(LedgerError::Busy { .. })));
        #[cfg(unix)]
        {
            let link = directory.path().join("link.sqlite");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            assert!(matches!(Ledger::open(&link), Err(LedgerError::Busy { .. })));
        }
    }

    #[test]
    fn a_second_open_of_the_same_ledger_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.sqlite");
        let _first = Ledger::open(&path).unwrap();
        assert!(matches!(Ledger::open(&path), Err(LedgerError::Busy { .. })));
    }
}
