//! The ledger: a SQLite file that remembers every refund the tool has sent, so nothing is sent twice.
//!
//! Every command opens it. `run` looks each row's identity up before sending, commits the row as
//! [`RefundStatus::Sending`] *before* its request leaves, and records the outcome when it comes
//! back; the results CSV and `status` are read from it. Because `sending` is on disk before the
//! request exists, a crash at any moment leaves every row either untouched, or `sending` (sent or
//! not: re-send with the same key and bytes, which Payroc answers with the first result), or done.
//!
//! What it never holds: a full card number, CVV, account or routing number, API key, bearer token,
//! or an unkeyed hash of any of those. The payee is kept masked and the request body only as a
//! fingerprint of its masked form (the request body builder makes it). The file, its lock and its
//! SQLite side files are mode 0600 ([`crate::files`], which the results CSV uses too).
//!
//! Durability: WAL with `synchronous=FULL`, so every commit of refunds — above all each group of
//! `sending` marks — is fsynced before the call returns, and a power cut loses none of them. The
//! one exception is a batch's start and end records, bookkeeping that waits for the next synced
//! commit or the close's checkpoint (see `write_unsynced`). A new ledger's directory is fsynced
//! after the file is created (a file whose directory entry was never synced can vanish in a power
//! cut; SQLite does the same for the WAL it creates), and a clean close checkpoints the WAL into
//! the main file and truncates it, so the main file alone is complete.
//!
//! The process never opens a second descriptor on the database file, not even to sync it or read
//! its identity: POSIX locks belong to the process, so closing any other descriptor on the file
//! would drop the locks SQLite holds, and a reader (`status`) closing its connection could then
//! checkpoint and delete the WAL a run is still appending to. A new ledger is synced through
//! SQLite (a checkpoint under `synchronous=FULL`), and a copied ledger is noticed by `stat`.
//!
//! One writer at a time: a run holds an OS lock on `<canonical path>.lock` for its whole life.
//! Readers (`status`) open the ledger without that lock and read a consistent snapshot through
//! the WAL while a run writes. A ledger with more than one hard link is refused: SQLite names its
//! WAL after the path it was opened by, so a second name could open the file without the commits
//! still waiting in the first name's WAL.
//!
//! Writes are grouped (see [`Ledger::begin_group`]): the dispatcher commits once per group of rows.
//!
//! Schema changes are numbered migrations tracked in SQLite's `user_version`, applied in one
//! transaction. Rows are read by column name, so a column a migration adds shifts no other.
//!
//! Layout, one file per job:
//! - `open.rs`: opening ([`Ledger::open`], [`Ledger::open_reader`]) and closing
//!   ([`Ledger::close`]), the run lock, the hard-link refusal, syncing a new ledger to disk,
//!   noticing a copied ledger, and the files kept beside it ([`side_files`]).
//! - `schema.rs` and `migrations/`: the numbered migrations and applying them.
//! - `records.rs`: [`RefundRecord`] (its status is [`crate::refund::RefundStatus`], the one the
//!   results show too), [`RefundUpdate`], Payroc's answer that both
//!   carry ([`PayrocAnswer`]), [`NewRefund`], and reading a row of the `refunds` table by column name.
//! - `refunds.rs`: what happens to a refund on its way to Payroc — insert, look-up, `sending`
//!   marks, outcomes, key generations.
//! - `reconciliation.rs`: settling refunds from what Payroc holds (`reconcile`), a person's
//!   confirmation that nothing was created, and the other records of an order.
//! - `batches.rs`: batches, their totals ([`BatchSummary`], [`BatchRecord`]) and the totals by
//!   state ([`TotalRow`]) that `status` shows.
//! - `transactions.rs`: single writes, group commits and read snapshots ([`ReadSnapshot`]).
//! - here: [`Ledger`] itself, [`LedgerError`], the row ids and the `meta` table.

mod batches;
mod open;
mod reconciliation;
mod records;
mod refunds;
mod schema;
mod transactions;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::refund::key::IdempotencyKey;
use crate::refund::money::Currency;
use crate::refund::{Environment, Method, PayrocRefundId, RefundStatus};

pub use batches::BatchSummary;
// Only returned by the ledger so far, never named outside it; re-exported all the same, so every
// public type of the ledger keeps its one path, `crate::ledger::Name`, whichever file holds it.
#[allow(unused_imports)]
pub use batches::{BatchRecord, TotalRow};
pub use open::side_files;
pub use records::{NewRefund, PayrocAnswer, RefundRecord, RefundUpdate};
#[allow(unused_imports)]
pub use transactions::ReadSnapshot;

/// A batch's row in the ledger: one command over one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub i64);

/// A refund identity's row in the ledger — not Payroc's refund id ([`PayrocRefundId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefundId(pub i64);

/// One send's row in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub i64);

/// Ledger row ids are stored as SQLite integers.
macro_rules! sql_integer_id {
    ($($name:ident),*) => {$(
        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.0))
            }
        }
        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(value).map($name)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    )*};
}
sql_integer_id!(BatchId, RefundId, AttemptId);

impl rusqlite::ToSql for PayrocRefundId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
    }
}

/// The core's closed sets of names are stored as those names: `card`, `USD`, `uat`. They are read
/// back through [`records::StoredName`], which refuses any other text as a corrupt ledger.
macro_rules! sql_stored_name {
    ($($name:ty => $text:expr),*) => {$(
        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                let text: fn(&$name) -> &'static str = $text;
                Ok(rusqlite::types::ToSqlOutput::from(text(self)))
            }
        }
    )*};
}
sql_stored_name!(
    Method => |method| method.as_str(),
    Currency => |currency| currency.code(),
    Environment => |environment| environment.as_str()
);

/// A refund's status is stored by its name, and `invalid` never: only a row that failed
/// validation has it, and such a row never reaches the ledger. Binding it is refused, so the
/// ledger cannot record it whatever the code above asks; reading it back is refused as a
/// corrupt ledger ([`RefundStatus::parse_stored`]).
impl rusqlite::ToSql for RefundStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        if !self.is_stored() {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(NotStored(*self))));
        }
        Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
    }
}

/// A status the ledger does not store (see the [`RefundStatus`] `ToSql` implementation).
#[derive(Debug, thiserror::Error)]
#[error("the ledger does not store the status {0}: only a row that failed validation has it")]
struct NotStored(RefundStatus);

/// An Idempotency-Key is stored as the text it is sent as, and read back through
/// [`records::StoredName`].
impl rusqlite::ToSql for IdempotencyKey {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

impl rusqlite::types::FromSql for PayrocRefundId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(PayrocRefundId)
    }
}

/// Errors from the ledger. Each names the ledger file, because a user may have several.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger {path}")]
    Sqlite {
        /// The ledger file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The file or its directory could not be created or opened.
    #[error("ledger {path}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another refund-batch process has this ledger open for a run.
    #[error(
        "ledger {path} is in use by another refund-batch command (lock file {lock}); wait for it to finish and try again. \
         One command at a time per ledger, so that no row can ever be sent twice"
    )]
    Busy {
        /// The ledger file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The ledger holds something this version cannot read.
    #[error("ledger {path}: {message}")]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// An open ledger. Holding it holds the run lock (see [`Ledger::open`]).
pub struct Ledger {
    connection: Connection,
    path: PathBuf,
    /// A group commit is open (see [`Ledger::begin_group`]).
    group_open: bool,
    /// This open created the ledger file: it knows nothing of what was sent before it.
    created: bool,
    /// The environment whose first send this connection has made sure is recorded (see
    /// [`Ledger::first_send_at`]), so each mark does not write it again.
    first_send_noted: Option<Environment>,
    /// Held for the life of the ledger: `File::try_lock` is released when the file closes.
    /// `None` for a reader ([`Ledger::open_reader`]).
    _lock: Option<File>,
}

/// Payroc's time now (see [`crate::clock`]) as RFC 3339 UTC with milliseconds, the ledger's one
/// time format: every time the ledger records is anchored to Payroc's clock, not the local one.
pub fn now() -> String {
    crate::clock::format(crate::clock::now())
}

/// The `meta` entry holding when the ledger first recorded a send in an environment.
fn first_send_name(environment: Environment) -> String {
    format!("first_send_at:{environment}")
}

impl Ledger {
    /// A fact about the ledger itself (the `meta` table).
    pub fn meta(&self, name: &str) -> Result<Option<String>, LedgerError> {
        self.connection
            .query_row("SELECT value FROM meta WHERE name = ?1", params![name], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| self.sqlite_error(source))
    }

    /// When this ledger first recorded a send in `environment` (Payroc's time, RFC 3339), if
    /// ever: it can vouch for what Payroc holds there only since then.
    pub fn first_send_at(&self, environment: Environment) -> Result<Option<String>, LedgerError> {
        self.meta(&first_send_name(environment))
    }

    /// Whether this open created the ledger file (a new machine, another user, a lost ledger).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The canonical path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// What the tests of every part of the ledger start from.
#[cfg(test)]
mod testing {
    use super::*;

    /// A new ledger in a directory of its own, removed when the directory is dropped.
    pub(super) fn temporary_ledger() -> (tempfile::TempDir, Ledger) {
        let directory = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&directory.path().join("ledger.sqlite")).unwrap();
        (directory, ledger)
    }

    /// A key of a test order at `generation`: any real key will do, the ledger only keeps it.
    pub(super) fn key(generation: u32) -> IdempotencyKey {
        crate::refund::key::Identity {
            environment: Environment::Sandbox,
            processing_terminal_id: "1234001".into(),
            order_id: "R1".into(),
        }
        .key(generation)
    }

    pub(super) fn new_refund(identity: &str, key: IdempotencyKey) -> NewRefund<'_> {
        NewRefund {
            identity,
            environment: Environment::Sandbox,
            method: Method::Card,
            processing_terminal_id: "1234001",
            order_id: "R1",
            idempotency_key: key,
            fingerprint: "f0",
            amount_minor: 4999,
            currency: Currency::from_code("USD").expect("USD is in Payroc's list"),
            payee_masked: "453985******7062",
            needs_precheck: false,
        }
    }
}
