//! The ledger: a SQLite file that remembers every refund the tool has sent, so nothing is sent twice.
//!
//! Every command opens it. `run` looks each row's identity up before sending, commits the row as
//! [`RefundState::Sending`] *before* its request leaves, and records the outcome when it comes
//! back; the results CSV and `status` are read from it. Because `sending` is on disk before the
//! request exists, a crash at any moment leaves every row either untouched, or `sending` (sent or
//! not: re-send with the same key and bytes, which Payroc answers with the first result), or done.
//!
//! What it never holds: a full card number, CVV, account or routing number, API key, bearer token,
//! or an unkeyed hash of any of those. The payee is kept masked and the request body only as a
//! fingerprint of its masked form (the request body builder makes it). The file is created with mode 0600.
//!
//! Durability: WAL with `synchronous=FULL`, so every commit of refunds — above all each group of
//! `sending` marks — is fsynced before the call returns, and a power cut loses none of them. The
//! one exception is a batch's start and end records, bookkeeping that waits for the next synced
//! commit or the close's checkpoint (see `write_unsynced`). A new ledger's directory is fsynced
//! after the file is created (a file whose directory entry was never synced can vanish in a power
//! cut; SQLite does the same for the WAL it creates), and a clean close checkpoints the WAL into
//! the main file and truncates it, so the main file alone is complete.
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
//! transaction.

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::files::{private_file, restrict_permissions, sync_directory};
use crate::refund::{PayrocRefundId, ResultStatus};

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

impl rusqlite::types::FromSql for PayrocRefundId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(PayrocRefundId)
    }
}

/// Where a refund stands. Stored as its lower-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefundState {
    /// Known, never sent (or proven never created).
    Pending,
    /// Committed just before a request left; its outcome is not recorded yet.
    Sending,
    /// Payroc approved it (`responseCode` A; a bank transfer submitted to the ACH network).
    Succeeded,
    /// Payroc approved less than was asked (`responseCode` P). Never re-sent: a second send would
    /// refund the approved part twice. Needs a person.
    Partial,
    /// Payroc accepted it for later processing (`responseCode` E, or an answer this version does
    /// not know). Not a definite failure, so never retried.
    Queued,
    /// Payroc declined it (`responseCode` D, R or C). Final unless retried on purpose.
    Declined,
    /// A bank transfer the customer's bank returned after it was submitted: nothing was refunded.
    /// Sent again only on purpose (`--retry-failed`, after the bank details are fixed).
    Returned,
    /// Reversed after approval (status `reversal`). Never re-sent automatically: needs a person.
    Reversed,
    /// Payroc refused the request (400, 403, 406, 415). Final unless retried on purpose.
    Rejected,
    /// Payroc says the key was used for a different request (409), or the file changed. Needs a person.
    Conflict,
    /// The request may have reached Payroc but no definite answer came back. Re-sent with the same
    /// key on the next run, or settled by `reconcile`.
    Unknown,
}

impl RefundState {
    /// Every state, in the order summaries list them.
    pub const ALL: [RefundState; 11] = [
        RefundState::Succeeded,
        RefundState::Partial,
        RefundState::Queued,
        RefundState::Declined,
        RefundState::Returned,
        RefundState::Reversed,
        RefundState::Rejected,
        RefundState::Conflict,
        RefundState::Unknown,
        RefundState::Sending,
        RefundState::Pending,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Pending => "pending",
            RefundState::Sending => "sending",
            RefundState::Succeeded => "succeeded",
            RefundState::Partial => "partial",
            RefundState::Queued => "queued",
            RefundState::Declined => "declined",
            RefundState::Returned => "returned",
            RefundState::Reversed => "reversed",
            RefundState::Rejected => "rejected",
            RefundState::Conflict => "conflict",
            RefundState::Unknown => "unknown",
        }
    }

    /// Parses a stored name; unknown text is a corrupt ledger, not a default.
    pub fn parse(text: &str) -> Option<RefundState> {
        RefundState::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// A definite failure that `run --retry-failed` may send again under the next key generation.
    pub fn is_retryable_failure(self) -> bool {
        matches!(
            self,
            RefundState::Declined | RefundState::Rejected | RefundState::Returned
        )
    }

    /// How the results CSV names this state: a row left `sending` by a crash is `unknown` there,
    /// because it may or may not have reached Payroc.
    pub fn result_status(self) -> ResultStatus {
        match self {
            RefundState::Pending => ResultStatus::Pending,
            RefundState::Sending | RefundState::Unknown => ResultStatus::Unknown,
            RefundState::Succeeded => ResultStatus::Succeeded,
            RefundState::Partial => ResultStatus::Partial,
            RefundState::Queued => ResultStatus::Queued,
            RefundState::Declined => ResultStatus::Declined,
            RefundState::Returned => ResultStatus::Returned,
            RefundState::Reversed => ResultStatus::Reversed,
            RefundState::Rejected => ResultStatus::Rejected,
            RefundState::Conflict => ResultStatus::Conflict,
        }
    }
}

impl fmt::Display for RefundState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
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

/// Everything the ledger knows about one refund identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// Row id in the `refunds` table.
    pub id: RefundId,
    /// [`crate::refund::key::Identity::ledger_id`].
    pub identity: String,
    /// `card` or `bank`.
    pub method: String,
    /// The terminal.
    pub processing_terminal_id: String,
    /// The order id.
    pub order_id: String,
    /// Key generation in use.
    pub generation: u32,
    /// The key of that generation.
    pub idempotency_key: String,
    /// Current state.
    pub state: RefundState,
    /// Fingerprint of the masked body last sent (or to be sent).
    pub fingerprint: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// Currency code.
    pub currency: String,
    /// Masked payee.
    pub payee_masked: String,
    /// HTTP requests sent so far, all generations.
    pub attempts: i64,
    /// Last HTTP status.
    pub http_status: Option<i64>,
    /// Payroc's `refundId`.
    pub refund_id: Option<PayrocRefundId>,
    /// `transactionResult.status`.
    pub payroc_status: Option<String>,
    /// `transactionResult.responseCode`.
    pub response_code: Option<String>,
    /// `transactionResult.responseMessage`.
    pub response_message: Option<String>,
    /// Problem `type` of an error answer.
    pub problem_type: Option<String>,
    /// Problem detail, or the tool's own explanation.
    pub problem_detail: Option<String>,
    /// When the first request of the current generation left (RFC 3339).
    pub first_sent_at: Option<String>,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Whether a request of the current generation may have reached Payroc without a definite
    /// answer. While true, a refusal is never proof that nothing was created.
    pub may_have_reached: bool,
    /// When a person confirmed that Payroc has no refund for this order (`reconcile
    /// --confirm-not-created`), if ever.
    pub confirmed_not_created_at: Option<String>,
    /// The order must be looked up at Payroc before the first send (first seen by a new ledger).
    pub needs_precheck: bool,
    /// When the ledger first saw this refund (RFC 3339).
    pub created_at: String,
    /// The batch that last touched it.
    pub batch_id: Option<BatchId>,
    /// Its row in that batch's file.
    pub input_row: Option<i64>,
    /// What Payroc authorized, in positive minor units.
    pub authorized_amount_minor: Option<i64>,
    /// `approvalCode`.
    pub approval_code: Option<String>,
    /// `processorResponseCode`.
    pub processor_response_code: Option<String>,
    /// Warnings about Payroc's answer, `; `-joined.
    pub notes: Option<String>,
    /// `sandbox`, `uat` or `production`.
    pub environment: String,
}

/// The fields an answer (or a decision) sets on a refund.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefundUpdate {
    /// The new state.
    pub state: Option<RefundState>,
    /// HTTP status of the last response, if any.
    pub http_status: Option<i64>,
    /// Payroc's refund id.
    pub refund_id: Option<PayrocRefundId>,
    /// `transactionResult.status`.
    pub payroc_status: Option<String>,
    /// `transactionResult.responseCode`.
    pub response_code: Option<String>,
    /// `transactionResult.responseMessage`.
    pub response_message: Option<String>,
    /// Problem `type`.
    pub problem_type: Option<String>,
    /// Problem detail / explanation.
    pub problem_detail: Option<String>,
    /// A request of this generation may have reached Payroc. Only ever turns the ledger's flag
    /// on: once set it stays set until the next key generation.
    pub may_have_reached: bool,
    /// `transactionResult.authorizedAmount`, as a positive number of minor units.
    pub authorized_amount_minor: Option<i64>,
    /// `transactionResult.approvalCode`.
    pub approval_code: Option<String>,
    /// `transactionResult.processorResponseCode`.
    pub processor_response_code: Option<String>,
    /// Warnings about the answer (a custom field Payroc left out, a status this version does not
    /// know), joined by `; `.
    pub notes: Option<String>,
}

/// What a new identity is created with.
pub struct NewRefund<'a> {
    /// Identity string.
    pub identity: &'a str,
    /// `sandbox`, `uat` or `production`.
    pub environment: &'a str,
    /// `card` / `bank`.
    pub method: &'a str,
    /// Terminal.
    pub processing_terminal_id: &'a str,
    /// Order id.
    pub order_id: &'a str,
    /// Generation-0 key.
    pub idempotency_key: &'a str,
    /// Masked-body fingerprint.
    pub fingerprint: &'a str,
    /// Minor units.
    pub amount_minor: i64,
    /// Currency code.
    pub currency: &'a str,
    /// Masked payee.
    pub payee_masked: &'a str,
    /// Look the order up at Payroc before the first send (see [`RefundRecord::needs_precheck`]).
    pub needs_precheck: bool,
}

/// Totals of one batch, stored when it ends.
#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    /// Rows in the file.
    pub rows: u64,
    /// Rows that failed validation.
    pub invalid: u64,
    /// Exit code the run ended with.
    pub exit_code: i32,
    /// `status=count` pairs, comma separated, for `status`.
    pub counts: String,
}

/// One batch as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// Batch id.
    pub id: BatchId,
    /// Input path as given.
    pub input_path: String,
    /// SHA-256 of the input.
    pub input_sha256: String,
    /// Environment.
    pub environment: String,
    /// Start time.
    pub started_at: String,
    /// End time, if it ended.
    pub finished_at: Option<String>,
    /// Rows in the file.
    pub rows: Option<i64>,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Status counts text.
    pub counts: Option<String>,
}

/// Refunds of one environment, state and currency, counted and summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalRow {
    /// `sandbox`, `uat`, `production`.
    pub environment: String,
    /// The state.
    pub state: RefundState,
    /// Currency code.
    pub currency: String,
    /// How many refunds.
    pub rows: i64,
    /// Their amounts summed, in minor units.
    pub amount_minor: i64,
}

/// A read transaction held open by [`Ledger::read_snapshot`]; dropping it ends the transaction
/// (a rollback, which for reads loses nothing).
pub struct ReadSnapshot<'ledger> {
    transaction: Option<rusqlite::Transaction<'ledger>>,
}

impl std::fmt::Debug for ReadSnapshot<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReadSnapshot")
            .field("open", &self.transaction.is_some())
            .finish()
    }
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
    first_send_noted: Option<String>,
    /// Held for the life of the ledger: `File::try_lock` is released when the file closes.
    /// `None` for a reader ([`Ledger::open_reader`]).
    _lock: Option<File>,
}

const MIGRATIONS: &[&str] = &[
    include_str!("001_initial.sql"),
    include_str!("002_attempt_refund_ids.sql"),
    include_str!("003_exactly_once.sql"),
    include_str!("004_payroc_answers.sql"),
    include_str!("005_narrower_keys.sql"),
    include_str!("006_one_refund_per_order.sql"),
];

/// The columns [`read_record`] reads, as a macro so queries are `concat!`-ed at compile time
/// rather than formatted on every look-up.
macro_rules! refund_columns {
    () => {
        "id, identity, method, processing_terminal_id, order_id, generation, idempotency_key, \
         state, fingerprint, amount_minor, currency, payee_masked, attempts, http_status, refund_id, payroc_status, \
         response_code, response_message, problem_type, problem_detail, first_sent_at, updated_at, \
         may_have_reached, confirmed_not_created_at, needs_precheck, created_at, batch_id, input_row, \
         authorized_amount_minor, approval_code, processor_response_code, notes, environment"
    };
}

/// Payroc's time now (see [`crate::clock`]) as RFC 3339 UTC with milliseconds, the ledger's one
/// time format: every time the ledger records is anchored to Payroc's clock, not the local one.
pub fn now() -> String {
    crate::clock::format(crate::clock::now())
}

/// The `meta` entry naming the file the ledger was last used as (see `Ledger::notice_copy`).
const FILE_IDENTITY: &str = "file_identity";

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

/// The `meta` entry holding when the ledger first recorded a send in an environment.
fn first_send_name(environment: &str) -> String {
    format!("first_send_at:{environment}")
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

    /// A fact about the ledger itself (the `meta` table).
    pub fn meta(&self, name: &str) -> Result<Option<String>, LedgerError> {
        self.connection
            .query_row("SELECT value FROM meta WHERE name = ?1", params![name], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| self.sqlite_error(source))
    }

    /// Sets a fact about the ledger itself.
    pub fn set_meta(&mut self, name: &str, value: &str) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
        })?;
        Ok(())
    }

    /// Notices a ledger file that is not the one it was: a copy, a restored backup, a file moved
    /// or replaced. Such a file knows nothing of what the original sent after the copy was made,
    /// so it vouches for no environment any more: its record of first sends is cleared, and rows
    /// it has never seen are looked up at Payroc again (`--precheck auto`) until it has recorded
    /// sends of its own for long enough. The file is known by its device, inode and canonical
    /// path, read with `stat` (never by opening it: see [`Ledger::open`]).
    fn notice_copy(&mut self) -> Result<(), LedgerError> {
        let Some(identity) = file_identity(&self.path) else {
            return Ok(());
        };
        let recorded = self.meta(FILE_IDENTITY)?;
        if recorded.as_deref() == Some(identity.as_str()) {
            return Ok(());
        }
        let copied = recorded.is_some();
        self.write(|connection| {
            if copied {
                connection.execute("DELETE FROM meta WHERE name LIKE 'first_send_at:%'", [])?;
            }
            connection.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![FILE_IDENTITY, identity],
            )
        })?;
        if copied {
            tracing::warn!(
                "this ledger file was copied, moved or restored since it was last used: it vouches for nothing it did \
                 not send itself, so orders it has not seen are looked up at Payroc before they are sent"
            );
        }
        Ok(())
    }

    /// When this ledger first recorded a send in `environment` (Payroc's time, RFC 3339), if
    /// ever: it can vouch for what Payroc holds there only since then.
    pub fn first_send_at(&self, environment: &str) -> Result<Option<String>, LedgerError> {
        self.meta(&first_send_name(environment))
    }

    /// Whether the ledger holds no refund at all: then it knows nothing of what was refunded
    /// before, whichever command created it.
    pub fn holds_no_refund(&self) -> Result<bool, LedgerError> {
        self.connection
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM refunds)", [], |row| row.get(0))
            .map_err(|source| self.sqlite_error(source))
    }

    /// Whether this open created the ledger file (a new machine, another user, a lost ledger).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The canonical path of the ledger file.
    pub fn path(&self) -> &Path {
        &self.path
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

    fn schema_version(&self) -> Result<usize, LedgerError> {
        self.connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|source| self.sqlite_error(source))
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Brings the schema up to date in one transaction: an upgrade lands whole or not at all,
    /// and a new ledger costs one commit, not one per migration.
    fn migrate(&mut self) -> Result<(), LedgerError> {
        let version = self.schema_version()?;
        if version > MIGRATIONS.len() {
            return Err(LedgerError::Corrupt {
                path: self.path.clone(),
                message: format!(
                    "schema version {version} is newer than this refund-batch understands ({}); use a newer refund-batch",
                    MIGRATIONS.len()
                ),
            });
        }
        if version == MIGRATIONS.len() {
            return Ok(());
        }
        let transaction = self.connection.transaction().map_err(|source| LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        MIGRATIONS
            .iter()
            .skip(version)
            .try_for_each(|migration| transaction.execute_batch(migration))
            .and_then(|()| transaction.pragma_update(None, "user_version", MIGRATIONS.len()))
            .and_then(|()| transaction.commit())
            .map_err(|source| LedgerError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// Starts a batch record for one command over one file.
    pub fn begin_batch(
        &mut self,
        input_path: &str,
        input_sha256: &str,
        environment: &str,
        command: &str,
    ) -> Result<BatchId, LedgerError> {
        // Committed at once, on its own: what a command writes before its first group (a new
        // ledger's record of the file it was created for) must not wait for a commit that an
        // early exit would skip. Not synced on its own, though (see `write_unsynced`).
        self.write_unsynced(|connection| {
            connection.execute(
                "INSERT INTO batches (input_path, input_sha256, environment, command, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![input_path, input_sha256, environment, command, now()],
            )?;
            Ok(BatchId(connection.last_insert_rowid()))
        })
    }

    /// Closes a batch with its totals.
    pub fn finish_batch(&mut self, batch: BatchId, summary: &BatchSummary) -> Result<(), LedgerError> {
        // Synced by the checkpoint of `close`, which follows (see `write_unsynced`).
        self.write_unsynced(|connection| {
            connection.execute(
                "UPDATE batches SET finished_at = ?2, rows_total = ?3, rows_invalid = ?4, exit_code = ?5, counts = ?6 WHERE id = ?1",
                params![batch, now(), summary.rows as i64, summary.invalid as i64, summary.exit_code, summary.counts],
            )?;
            Ok(())
        })
    }

    /// Commits one write of a batch's bookkeeping without an fsync of its own
    /// (`synchronous=OFF` for that commit, with no automatic checkpoint, then `FULL` again).
    ///
    /// Why that is safe: the WAL is one file written in order, so the next synced commit — the
    /// first group of `sending` marks, which precedes every request, or the checkpoint at
    /// [`Ledger::close`], which syncs the WAL before it copies it — makes this one durable too:
    /// an fsync writes out the whole file, this commit's frames and, when this commit started a
    /// new WAL, its header. Only a power cut before either can lose it, and then nothing was sent
    /// on its strength: a batch's start and end records are bookkeeping, and a ledger without
    /// refunds counts as new whatever batches it lists.
    ///
    /// Why `OFF` and not `NORMAL`: the first write of a run starts a new WAL (the close before
    /// truncated it), and under `NORMAL` SQLite syncs a new WAL's header at once, an fsync that
    /// the next synced commit makes anyway. Why no automatic checkpoint meanwhile: under `OFF` a
    /// checkpoint would copy the WAL into the database without syncing either, and a later
    /// writer could then reuse the WAL before the database was on disk; the next `FULL` commit
    /// checkpoints instead, with its syncs. Why it is worth it: a one-row run made eleven fsyncs;
    /// these two writes cost two of them when synced, and under `NORMAL` still the new WAL's
    /// header sync (at 0.1–0.7 ms each on a virtual machine's disk). [`Ledger::close`] sets
    /// `FULL` again before its checkpoint whatever happened here, since a checkpoint under `OFF`
    /// would copy and truncate the WAL without syncing the database.
    fn write_unsynced<T>(
        &mut self,
        operation: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
        if self.group_open {
            return self.write(operation);
        }
        self.connection
            .execute_batch("PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=OFF;")
            .map_err(|source| self.sqlite_error(source))?;
        let written = self.write(operation);
        let restored = self
            .connection
            // 1000 pages: SQLite's default, which the ledger otherwise keeps.
            .execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=1000;")
            .map_err(|source| self.sqlite_error(source));
        let value = written?;
        restored?;
        Ok(value)
    }

    /// Finds the record of an order: the one under its identity (`identity`, see
    /// [`crate::refund::key::Identity::ledger_id`]), or else the one an earlier version made for
    /// this row's method and key namespace (`legacy_identity`), which keeps its keys. Other
    /// records of the same order (an earlier version's, under another method or namespace) are
    /// [`Ledger::same_order`]'s.
    pub fn find_order(&self, identity: &str, legacy_identity: &str) -> Result<Option<RefundRecord>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(concat!(
                "SELECT ",
                refund_columns!(),
                " FROM refunds WHERE identity IN (?1, ?2) ORDER BY identity = ?1 DESC LIMIT 1"
            ))
            .map_err(|source| self.sqlite_error(source))?;
        let record = statement
            .query_row(params![identity, legacy_identity], read_record)
            .optional()
            .map_err(|source| self.sqlite_error(source))?;
        record.transpose().map_err(|message| LedgerError::Corrupt {
            path: self.path.clone(),
            message,
        })
    }

    /// The record under exactly this identity (tests' shorthand for [`Ledger::find_order`]).
    #[cfg(test)]
    pub fn find(&self, identity: &str) -> Result<Option<RefundRecord>, LedgerError> {
        self.find_order(identity, identity)
    }

    /// Runs `operation` in a transaction of its own — or, while a group is open (see
    /// [`Ledger::begin_group`]), inside the group's, to be committed with it.
    fn write<T>(&mut self, operation: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        if self.group_open {
            return operation(&self.connection).map_err(|source| self.sqlite_error(source));
        }
        let transaction = self.connection.transaction().map_err(|source| LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        let value = operation(&transaction).and_then(|value| transaction.commit().map(|()| value));
        value.map_err(|source| self.sqlite_error(source))
    }

    /// Opens one read transaction for many look-ups, until the returned guard is dropped.
    ///
    /// Each look-up outside a transaction takes and releases SQLite's shared lock (two `fcntl`
    /// calls and a WAL index check); the results file looks up every row of the file, so it reads
    /// them all from one snapshot instead. Inside an open group the group already is that
    /// transaction, and no second one is started.
    ///
    /// Only the run's own connection (which holds the run lock) takes one: a reader's snapshot
    /// (`status` while a run writes) would hold back the run's checkpoint for as long as it reads,
    /// so readers keep one short snapshot per look-up.
    pub fn read_snapshot(&self) -> Result<ReadSnapshot<'_>, LedgerError> {
        if self.group_open || self._lock.is_none() {
            return Ok(ReadSnapshot { transaction: None });
        }
        self.connection
            .unchecked_transaction()
            .map(|transaction| ReadSnapshot {
                transaction: Some(transaction),
            })
            .map_err(|source| self.sqlite_error(source))
    }

    /// Runs `writes` in one transaction: inside the caller's open group if there is one (the
    /// dispatcher's, which commits them with the rest), or else in a group of their own,
    /// committed here.
    fn in_one_group<T>(
        &mut self,
        writes: impl FnOnce(&mut Ledger) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let opened_here = !self.group_open;
        self.begin_group()?;
        let value = writes(self)?;
        if opened_here {
            self.commit_group()?;
        }
        Ok(value)
    }

    /// Opens a group commit: the writes until [`Ledger::commit_group`] land in one transaction.
    ///
    /// This is how the dispatcher keeps the ledger off the critical path at hundreds of rows per
    /// second without weakening the rule that `sending` is on disk before a request leaves: it
    /// marks a whole group `sending`, commits, and only then spawns the group's requests.
    pub fn begin_group(&mut self) -> Result<(), LedgerError> {
        if !self.group_open {
            self.connection
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|source| self.sqlite_error(source))?;
            self.group_open = true;
        }
        Ok(())
    }

    /// Commits the open group, if any. Until this returns, none of the group's writes is durable.
    pub fn commit_group(&mut self) -> Result<(), LedgerError> {
        if self.group_open {
            self.connection
                .execute_batch("COMMIT")
                .map_err(|source| self.sqlite_error(source))?;
            self.group_open = false;
        }
        Ok(())
    }

    /// Rolls back the open group, if any: for error paths, so that nothing uncommitted stays
    /// visible to later reads on this connection.
    pub fn abort_group(&mut self) -> Result<(), LedgerError> {
        if self.group_open {
            self.group_open = false;
            self.connection
                .execute_batch("ROLLBACK")
                .map_err(|source| self.sqlite_error(source))?;
        }
        Ok(())
    }

    /// Records a new identity as `pending` with its generation-0 key, remembering the key handed out.
    pub fn insert(&mut self, refund: &NewRefund<'_>, batch: BatchId, row: u64) -> Result<RefundRecord, LedgerError> {
        let time = now();
        let id = self.write(|connection| {
            connection
                .prepare_cached(
                    "INSERT INTO refunds (identity, method, processing_terminal_id, order_id, generation, idempotency_key, state, \
                     fingerprint, amount_minor, currency, payee_masked, created_at, updated_at, batch_id, input_row, environment, \
                     needs_precheck) \
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(params![
                    refund.identity,
                    refund.method,
                    refund.processing_terminal_id,
                    refund.order_id,
                    refund.idempotency_key,
                    refund.fingerprint,
                    refund.amount_minor,
                    refund.currency,
                    refund.payee_masked,
                    time,
                    batch,
                    row as i64,
                    refund.environment,
                    refund.needs_precheck
                ])?;
            let id = RefundId(connection.last_insert_rowid());
            connection
                .prepare_cached("INSERT INTO keys (refund_id, generation, idempotency_key, created_at) VALUES (?1, 0, ?2, ?3)")?
                .execute(params![id, refund.idempotency_key, time])?;
            Ok(id)
        })?;
        // What the row now holds, without reading it back (a test checks the two agree).
        Ok(RefundRecord {
            id,
            identity: refund.identity.to_owned(),
            method: refund.method.to_owned(),
            processing_terminal_id: refund.processing_terminal_id.to_owned(),
            order_id: refund.order_id.to_owned(),
            generation: 0,
            idempotency_key: refund.idempotency_key.to_owned(),
            state: RefundState::Pending,
            fingerprint: refund.fingerprint.to_owned(),
            amount_minor: refund.amount_minor,
            currency: refund.currency.to_owned(),
            payee_masked: refund.payee_masked.to_owned(),
            attempts: 0,
            http_status: None,
            refund_id: None,
            payroc_status: None,
            response_code: None,
            response_message: None,
            problem_type: None,
            problem_detail: None,
            first_sent_at: None,
            updated_at: time.clone(),
            may_have_reached: false,
            confirmed_not_created_at: None,
            needs_precheck: refund.needs_precheck,
            created_at: time,
            batch_id: Some(batch),
            input_row: i64::try_from(row).ok(),
            authorized_amount_minor: None,
            approval_code: None,
            processor_response_code: None,
            notes: None,
            environment: refund.environment.to_owned(),
        })
    }

    fn find_by_id(&self, id: RefundId) -> Result<RefundRecord, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(concat!("SELECT ", refund_columns!(), " FROM refunds WHERE id = ?1"))
            .map_err(|source| self.sqlite_error(source))?;
        let record = statement
            .query_row(params![id], read_record)
            .map_err(|source| self.sqlite_error(source))?;
        record.map_err(|message| LedgerError::Corrupt {
            path: self.path.clone(),
            message,
        })
    }

    /// Moves a refund to its next key generation with a new body (and method: an order is one
    /// refund whichever way it goes), back to `pending`. Only for definite failures retried on
    /// purpose, or rows a person confirmed were never created (`confirmed_at`, recorded by this
    /// same update); the dispatcher's gate checks which, and the ledger's trigger refuses any
    /// other (see the migration that made it).
    #[allow(clippy::too_many_arguments)] // the new generation's parts, each needed
    pub fn next_generation(
        &mut self,
        id: RefundId,
        generation: u32,
        key: &str,
        refund: &NewRefund<'_>,
        batch: BatchId,
        row: u64,
        confirmed_at: Option<&str>,
    ) -> Result<RefundRecord, LedgerError> {
        let time = now();
        self.write(|connection| {
            connection.execute(
                "UPDATE refunds SET generation = ?2, idempotency_key = ?3, state = 'pending', fingerprint = ?4, amount_minor = ?5, \
                 currency = ?6, payee_masked = ?7, http_status = NULL, refund_id = NULL, payroc_status = NULL, response_code = NULL, \
                 response_message = NULL, problem_type = NULL, problem_detail = NULL, first_sent_at = NULL, updated_at = ?8, \
                 batch_id = ?9, input_row = ?10, may_have_reached = 0, confirmed_not_created_at = ?11, \
                 authorized_amount_minor = NULL, approval_code = NULL, processor_response_code = NULL, notes = NULL, \
                 method = ?12, needs_precheck = ?13 WHERE id = ?1",
                params![
                    id,
                    generation,
                    key,
                    refund.fingerprint,
                    refund.amount_minor,
                    refund.currency,
                    refund.payee_masked,
                    time,
                    batch,
                    row as i64,
                    confirmed_at,
                    refund.method,
                    refund.needs_precheck
                ],
            )?;
            connection.execute(
                "INSERT INTO keys (refund_id, generation, idempotency_key, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, generation, key, time],
            )?;
            Ok(())
        })?;
        self.find_by_id(id)
    }

    /// Marks `sending` and opens an attempt; returns the attempt id. Outside a group this commits
    /// at once; inside one, the caller must commit the group *before* the request leaves.
    pub fn mark_sending(&mut self, record: &RefundRecord, batch: BatchId) -> Result<AttemptId, LedgerError> {
        let time = now();
        if self.first_send_noted.as_deref() != Some(record.environment.as_str()) {
            let environment = record.environment.as_str().to_owned();
            self.write(|connection| {
                connection.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES (?1, ?2)",
                    params![first_send_name(&environment), time],
                )
            })?;
            self.first_send_noted = Some(environment);
        }
        self.write(|connection| {
            connection
                .prepare_cached(
                    "UPDATE refunds SET state = 'sending', attempts = attempts + 1, first_sent_at = COALESCE(first_sent_at, ?2), \
                     updated_at = ?2, batch_id = ?3 WHERE id = ?1",
                )?
                .execute(params![record.id, time, batch])?;
            connection
                .prepare_cached(
                    "INSERT INTO attempts (refund_id, batch_id, generation, idempotency_key, started_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![record.id, batch, record.generation, record.idempotency_key, time])?;
            Ok(AttemptId(connection.last_insert_rowid()))
        })
    }

    /// Takes back a [`Ledger::mark_sending`] whose request never left (the run stopped first):
    /// the refund returns to what `previous` (the record as it was before the mark) says of
    /// everything the mark changed, and the attempt is removed.
    /// Only for a mark whose request certainly was not started; the caller knows that.
    pub fn unmark_sending(&mut self, previous: &RefundRecord, attempt: AttemptId) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection
                .prepare_cached(
                    "UPDATE refunds SET state = ?2, attempts = attempts - 1, first_sent_at = ?3, updated_at = ?4, \
                     batch_id = ?5 WHERE id = ?1",
                )?
                .execute(params![
                    previous.id,
                    previous.state.as_str(),
                    previous.first_sent_at,
                    previous.updated_at,
                    previous.batch_id
                ])?;
            connection
                .prepare_cached("DELETE FROM attempts WHERE id = ?1")?
                .execute(params![attempt])
        })?;
        Ok(())
    }

    /// Records what came of an attempt (or a decision without one, when `attempt` is `None`).
    /// `retries` counts the HTTP requests the attempt made after its first (which
    /// [`Ledger::mark_sending`] counted), so `attempts` is every request ever sent.
    pub fn record(
        &mut self,
        id: RefundId,
        attempt: Option<AttemptId>,
        outcome: &RefundUpdate,
        retries: i64,
    ) -> Result<(), LedgerError> {
        let time = now();
        self.write(|connection| {
            connection
                .prepare_cached(
                    "UPDATE refunds SET state = COALESCE(?2, state), http_status = ?3, refund_id = COALESCE(?4, refund_id), \
                     payroc_status = ?5, response_code = ?6, response_message = ?7, problem_type = ?8, problem_detail = ?9, \
                     updated_at = ?10, attempts = attempts + ?11, may_have_reached = MAX(may_have_reached, ?12), \
                     authorized_amount_minor = ?13, approval_code = ?14, processor_response_code = ?15, notes = ?16 WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    outcome.state.map(RefundState::as_str),
                    outcome.http_status,
                    outcome.refund_id,
                    outcome.payroc_status,
                    outcome.response_code,
                    outcome.response_message,
                    outcome.problem_type,
                    outcome.problem_detail,
                    time,
                    retries,
                    outcome.may_have_reached,
                    outcome.authorized_amount_minor,
                    outcome.approval_code,
                    outcome.processor_response_code,
                    outcome.notes
                ])?;
            if let Some(attempt) = attempt {
                connection
                    .prepare_cached(
                        "UPDATE attempts SET finished_at = ?2, http_status = ?3, outcome = ?4, detail = ?5, payroc_refund_id = ?6 \
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        attempt,
                        time,
                        outcome.http_status,
                        outcome.state.map(RefundState::as_str),
                        outcome.problem_detail.as_deref().or(outcome.response_message.as_deref()),
                        outcome.refund_id
                    ])?;
            }
            Ok(())
        })
    }

    /// Settles a refund from what Payroc's records say (`reconcile`), leaving an audit-trail
    /// attempt that records the lookup rather than a send.
    pub fn record_reconciliation(
        &mut self,
        id: RefundId,
        batch: BatchId,
        outcome: &RefundUpdate,
    ) -> Result<(), LedgerError> {
        let time = now();
        let detail = format!(
            "reconciled: {}",
            outcome.problem_detail.as_deref().unwrap_or("found at Payroc")
        );
        self.in_one_group(|ledger| {
            ledger.write(|connection| {
                connection.execute(
                    "INSERT INTO attempts (refund_id, batch_id, generation, idempotency_key, started_at, finished_at, \
                     http_status, outcome, detail, payroc_refund_id) \
                     SELECT id, ?2, generation, idempotency_key, ?3, ?3, ?4, ?5, ?6, ?7 FROM refunds WHERE id = ?1",
                    params![
                        id,
                        batch,
                        time,
                        outcome.http_status,
                        outcome.state.map(RefundState::as_str),
                        detail,
                        outcome.refund_id
                    ],
                )
            })?;
            ledger.record(id, None, outcome, 0)
        })
    }

    /// Records that a request of the current generation may have reached Payroc (a `sending`
    /// mark found by a later run: the crash may have come after the request left).
    pub fn mark_may_have_reached(&mut self, id: RefundId) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection
                .prepare_cached("UPDATE refunds SET may_have_reached = 1 WHERE id = ?1")?
                .execute(params![id])
        })?;
        Ok(())
    }

    /// The order's lookup at Payroc found nothing: the row may now be sent.
    pub fn clear_precheck(&mut self, id: RefundId) -> Result<(), LedgerError> {
        self.write(|connection| {
            connection
                .prepare_cached("UPDATE refunds SET needs_precheck = 0 WHERE id = ?1")?
                .execute(params![id])
        })?;
        Ok(())
    }

    /// A person confirmed, from a complete lookup, that Payroc has no refund for this order:
    /// the refund moves to its next key generation (`pending`), and the decision is kept with
    /// its time on the refund and in the audit trail.
    #[allow(clippy::too_many_arguments)] // next_generation's arguments, plus the decision's words
    pub fn confirm_not_created(
        &mut self,
        id: RefundId,
        generation: u32,
        key: &str,
        refund: &NewRefund<'_>,
        batch: BatchId,
        row: u64,
        detail: &str,
    ) -> Result<RefundRecord, LedgerError> {
        let time = now();
        self.in_one_group(|ledger| {
            ledger.write(|connection| {
                connection.execute(
                    "INSERT INTO attempts (refund_id, batch_id, generation, idempotency_key, started_at, finished_at, outcome, detail) \
                     SELECT id, ?2, generation, idempotency_key, ?3, ?3, 'pending', ?4 FROM refunds WHERE id = ?1",
                    params![id, batch, time, detail],
                )
            })?;
            ledger.next_generation(id, generation, key, refund, batch, row, Some(&time))?;
            ledger.write(|connection| {
                connection.execute(
                    "UPDATE refunds SET problem_detail = ?2 WHERE id = ?1",
                    params![id, detail],
                )
            })?;
            Ok(())
        })?;
        self.find_by_id(id)
    }

    /// The other records the ledger holds for an order — same environment and terminal, the
    /// order id in any letter case (the caller decides what a case variant means) — except
    /// `except`, each with the input file of its batch.
    pub fn same_order(
        &self,
        environment: &str,
        processing_terminal_id: &str,
        order_id: &str,
        except: Option<RefundId>,
    ) -> Result<Vec<(RefundRecord, Option<String>)>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(concat!(
                "SELECT ",
                refund_columns!(),
                ", (SELECT input_path FROM batches WHERE batches.id = refunds.batch_id) FROM refunds \
                 WHERE environment = ?1 AND processing_terminal_id = ?2 AND lower(order_id) = lower(?3) AND id IS NOT ?4 ORDER BY id"
            ))
            .map_err(|source| self.sqlite_error(source))?;
        let rows: Vec<(Result<RefundRecord, String>, Option<String>)> = statement
            .query_map(params![environment, processing_terminal_id, order_id, except], |row| {
                Ok((read_record(row)?, row.get(33)?))
            })
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        rows.into_iter()
            .map(|(record, file)| {
                record
                    .map(|record| (record, file))
                    .map_err(|message| LedgerError::Corrupt {
                        path: self.path.clone(),
                        message,
                    })
            })
            .collect()
    }

    /// Payroc refund ids produced by earlier key generations of this refund: a lookup by order
    /// finds those too, and they are not the refund being reconciled.
    pub fn earlier_generation_refund_ids(&self, id: RefundId) -> Result<Vec<PayrocRefundId>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT a.payroc_refund_id FROM attempts a JOIN refunds r ON r.id = a.refund_id \
                 WHERE a.refund_id = ?1 AND a.generation < r.generation AND a.payroc_refund_id IS NOT NULL",
            )
            .map_err(|source| self.sqlite_error(source))?;
        let ids = statement
            .query_map(params![id], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        Ok(ids)
    }

    /// Every record a batch touched last, by its row in that batch's file: what the results
    /// say of rows the input file no longer holds as they were validated.
    pub fn records_of_batch(
        &self,
        batch: BatchId,
    ) -> Result<std::collections::HashMap<u64, RefundRecord>, LedgerError> {
        let mut statement = self
            .connection
            .prepare(concat!(
                "SELECT ",
                refund_columns!(),
                " FROM refunds WHERE batch_id = ?1 AND input_row IS NOT NULL"
            ))
            .map_err(|source| self.sqlite_error(source))?;
        let records: Vec<Result<RefundRecord, String>> = statement
            .query_map(params![batch], read_record)
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        records
            .into_iter()
            .map(|record| {
                let record = record.map_err(|message| LedgerError::Corrupt {
                    path: self.path.clone(),
                    message,
                })?;
                Ok((
                    record.input_row.and_then(|row| u64::try_from(row).ok()).unwrap_or(0),
                    record,
                ))
            })
            .collect()
    }

    /// The input file a batch ran over, as it was given.
    pub fn batch_input_path(&self, batch: BatchId) -> Result<Option<String>, LedgerError> {
        self.connection
            .query_row("SELECT input_path FROM batches WHERE id = ?1", params![batch], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| self.sqlite_error(source))
    }

    /// Batches, newest first, optionally only those of one input file (by SHA-256).
    pub fn batches(&self, input_sha256: Option<&str>) -> Result<Vec<BatchRecord>, LedgerError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT id, input_path, input_sha256, environment, started_at, finished_at, rows_total, exit_code, counts \
                 FROM batches WHERE ?1 IS NULL OR input_sha256 = ?1 ORDER BY id DESC",
            )
            .map_err(|source| self.sqlite_error(source))?;
        let rows = statement
            .query_map(params![input_sha256], |row| {
                Ok(BatchRecord {
                    id: row.get(0)?,
                    input_path: row.get(1)?,
                    input_sha256: row.get(2)?,
                    environment: row.get(3)?,
                    started_at: row.get(4)?,
                    finished_at: row.get(5)?,
                    rows: row.get(6)?,
                    exit_code: row.get(7)?,
                    counts: row.get(8)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        Ok(rows)
    }

    /// Counts and amount totals of every refund, by environment, state and currency.
    pub fn totals(&self) -> Result<Vec<TotalRow>, LedgerError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT environment, state, currency, COUNT(*), SUM(amount_minor) FROM refunds \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
            .map_err(|source| self.sqlite_error(source))?;
        let rows: Vec<(String, String, String, i64, i64)> = statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
            })
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        rows.into_iter()
            .map(|(environment, state, currency, count, sum)| {
                let state = RefundState::parse(&state).ok_or_else(|| LedgerError::Corrupt {
                    path: self.path.clone(),
                    message: format!("unknown state {state:?}"),
                })?;
                Ok(TotalRow {
                    environment,
                    state,
                    currency,
                    rows: count,
                    amount_minor: sum,
                })
            })
            .collect()
    }
}

impl RefundRecord {
    /// Says, in words, how a row (its amount, currency and masked payee) differs from what the
    /// ledger recorded for this refund.
    pub fn describe_change(&self, amount_minor: i64, currency: &str, payee_masked: &str) -> String {
        let mut changes = Vec::new();
        if self.amount_minor != amount_minor || self.currency != currency {
            changes.push(format!(
                "amount was {} {} minor units, now {} {}",
                self.amount_minor, self.currency, amount_minor, currency
            ));
        }
        if self.payee_masked != payee_masked {
            changes.push(format!("payee was {}, now {}", self.payee_masked, payee_masked));
        }
        if changes.is_empty() {
            changes.push("another field such as the description, card, customer or custom fields differs".into());
        }
        changes.join("; ")
    }
}

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RefundRecord, String>> {
    let state: String = row.get(7)?;
    let Some(state) = RefundState::parse(&state) else {
        return Ok(Err(format!("unknown refund state {state:?}")));
    };
    Ok(Ok(RefundRecord {
        id: row.get(0)?,
        identity: row.get(1)?,
        method: row.get(2)?,
        processing_terminal_id: row.get(3)?,
        order_id: row.get(4)?,
        generation: row.get(5)?,
        idempotency_key: row.get(6)?,
        state,
        fingerprint: row.get(8)?,
        amount_minor: row.get(9)?,
        currency: row.get(10)?,
        payee_masked: row.get(11)?,
        attempts: row.get(12)?,
        http_status: row.get(13)?,
        refund_id: row.get(14)?,
        payroc_status: row.get(15)?,
        response_code: row.get(16)?,
        response_message: row.get(17)?,
        problem_type: row.get(18)?,
        problem_detail: row.get(19)?,
        first_sent_at: row.get(20)?,
        updated_at: row.get(21)?,
        may_have_reached: row.get(22)?,
        confirmed_not_created_at: row.get(23)?,
        needs_precheck: row.get(24)?,
        created_at: row.get(25)?,
        batch_id: row.get(26)?,
        input_row: row.get(27)?,
        authorized_amount_minor: row.get(28)?,
        approval_code: row.get(29)?,
        processor_response_code: row.get(30)?,
        notes: row.get(31)?,
        environment: row.get(32)?,
    }))
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
    use super::*;

    /// A new ledger in a directory of its own, removed when the directory is dropped.
    fn temporary_ledger() -> (tempfile::TempDir, Ledger) {
        let directory = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&directory.path().join("ledger.sqlite")).unwrap();
        (directory, ledger)
    }

    fn new_refund<'a>(identity: &'a str, key: &'a str) -> NewRefund<'a> {
        NewRefund {
            identity,
            environment: "sandbox",
            method: "card",
            processing_terminal_id: "1234001",
            order_id: "R1",
            idempotency_key: key,
            fingerprint: "f0",
            amount_minor: 4999,
            currency: "USD",
            payee_masked: "453985******7062",
            needs_precheck: false,
        }
    }

    #[test]
    fn states_round_trip_and_classify() {
        for state in RefundState::ALL {
            assert_eq!(RefundState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RefundState::parse("done"), None);
        assert!(RefundState::Declined.is_retryable_failure());
        assert!(RefundState::Rejected.is_retryable_failure());
        for never in [
            RefundState::Succeeded,
            RefundState::Queued,
            RefundState::Unknown,
            RefundState::Conflict,
            RefundState::Sending,
        ] {
            assert!(!never.is_retryable_failure(), "{never}");
        }
        assert_eq!(RefundState::Sending.result_status(), ResultStatus::Unknown);
        for state in RefundState::ALL {
            if state != RefundState::Sending {
                assert_eq!(state.result_status().as_str(), state.as_str(), "one name per state");
            }
        }
    }

    #[test]
    fn batch_bookkeeping_commits_leave_the_ledger_synced_and_survive_the_close() {
        let (directory, mut ledger) = temporary_ledger();
        let pragma = |ledger: &Ledger, name: &str| {
            ledger
                .connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                .unwrap()
        };
        let synchronous = |ledger: &Ledger| pragma(ledger, "synchronous");
        let autocheckpoint = |ledger: &Ledger| pragma(ledger, "wal_autocheckpoint");
        const FULL: i64 = 2;
        assert_eq!(synchronous(&ledger), FULL);
        let batch = ledger.begin_batch("file.csv", "abc", "uat", "run").unwrap();
        assert_eq!(synchronous(&ledger), FULL, "back to FULL after the batch record");
        assert_eq!(autocheckpoint(&ledger), 1000, "automatic checkpoints back on");
        let summary = BatchSummary {
            rows: 1,
            invalid: 0,
            exit_code: 0,
            counts: "succeeded=1".into(),
        };
        ledger.finish_batch(batch, &summary).unwrap();
        assert_eq!(synchronous(&ledger), FULL, "back to FULL after the batch's end");
        ledger.close().unwrap();
        let reopened = Ledger::open(&directory.path().join("ledger.sqlite")).unwrap();
        let batches = reopened.batches(None).unwrap();
        assert_eq!(batches.len(), 1);
        assert!(batches[0].finished_at.is_some(), "the close made both records durable");
    }

    #[test]
    fn a_refund_moves_pending_sending_succeeded_and_keeps_its_audit_trail() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("nested").join("ledger.sqlite");
        let mut ledger = Ledger::open(&path).unwrap();
        let batch = ledger.begin_batch("file.csv", "abc", "sandbox", "run").unwrap();
        let record = ledger.insert(&new_refund("id-1", "key-0"), batch, 2).unwrap();
        assert_eq!(record.state, RefundState::Pending);
        assert_eq!(
            ledger.find("id-1").unwrap(),
            Some(record.clone()),
            "insert returns what the ledger holds"
        );
        let attempt = ledger.mark_sending(&record, batch).unwrap();
        assert_eq!(ledger.find("id-1").unwrap().unwrap().state, RefundState::Sending);
        let outcome = RefundUpdate {
            state: Some(RefundState::Succeeded),
            http_status: Some(201),
            refund_id: Some(PayrocRefundId("CD3HN88U9F".into())),
            response_code: Some("A".into()),
            ..RefundUpdate::default()
        };
        ledger.record(record.id, Some(attempt), &outcome, 0).unwrap();
        let done = ledger.find("id-1").unwrap().unwrap();
        assert_eq!(done.state, RefundState::Succeeded);
        assert_eq!(done.attempts, 1);
        assert_eq!(done.refund_id.as_ref().map(PayrocRefundId::as_str), Some("CD3HN88U9F"));
        assert!(done.first_sent_at.is_some());
        let trail: i64 = ledger
            .connection
            .query_row("SELECT COUNT(*) FROM attempts WHERE outcome = 'succeeded'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(trail, 1);
        drop(ledger);
        // Reopening keeps everything and does not re-run migrations.
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.find("id-1").unwrap().unwrap().state, RefundState::Succeeded);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_mark_taken_back_leaves_the_refund_as_it_was() {
        let (_directory, mut ledger) = temporary_ledger();
        let first = ledger.begin_batch("file.csv", "abc", "uat", "run").unwrap();
        let record = ledger.insert(&new_refund("id-1", "key-0"), first, 2).unwrap();
        let second = ledger.begin_batch("file.csv", "abc", "uat", "run").unwrap();
        let attempt = ledger.mark_sending(&record, second).unwrap();
        let marked = ledger.find("id-1").unwrap().unwrap();
        assert_eq!(
            (marked.state, marked.attempts, marked.batch_id),
            (RefundState::Sending, 1, Some(second))
        );
        assert!(marked.first_sent_at.is_some());
        ledger.unmark_sending(&record, attempt).unwrap();
        assert_eq!(ledger.find("id-1").unwrap(), Some(record.clone()));
        // A reconciliation inside a caller's group joins it rather than committing it.
        ledger.begin_group().unwrap();
        ledger
            .record_reconciliation(record.id, second, &RefundUpdate::default())
            .unwrap();
        assert!(ledger.group_open, "the caller's group is still open");
        ledger.commit_group().unwrap();
        let attempts: i64 = ledger
            .connection
            .query_row("SELECT COUNT(*) FROM attempts", [], |row| row.get(0))
            .unwrap();
        assert_eq!(attempts, 1, "the reconciliation's attempt, not the mark's");
    }

    #[test]
    fn a_new_generation_remembers_every_key() {
        let (_directory, mut ledger) = temporary_ledger();
        let batch = ledger.begin_batch("file.csv", "abc", "sandbox", "run").unwrap();
        let record = ledger.insert(&new_refund("id-1", "key-0"), batch, 2).unwrap();
        ledger
            .record(
                record.id,
                None,
                &RefundUpdate {
                    state: Some(RefundState::Declined),
                    ..RefundUpdate::default()
                },
                0,
            )
            .unwrap();
        let next = ledger
            .next_generation(record.id, 1, "key-1", &new_refund("id-1", "key-1"), batch, 2, None)
            .unwrap();
        assert_eq!(
            (next.generation, next.state, next.idempotency_key.as_str()),
            (1, RefundState::Pending, "key-1")
        );
        let keys: i64 = ledger
            .connection
            .query_row("SELECT COUNT(*) FROM keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(keys, 2);
    }

    /// The ledger itself refuses a second live refund of one order and a new key for a refund
    /// that may exist, whatever the code above it forgot.
    #[test]
    fn the_ledger_refuses_a_second_refund_of_an_order_on_its_own() {
        let (_directory, mut ledger) = temporary_ledger();
        let batch = ledger.begin_batch("file.csv", "abc", "sandbox", "run").unwrap();
        let first = ledger.insert(&new_refund("v2|order", "key-0"), batch, 2).unwrap();
        let set = |ledger: &mut Ledger, state| {
            let update = RefundUpdate {
                state: Some(state),
                ..RefundUpdate::default()
            };
            ledger.record(first.id, None, &update, 0).unwrap();
        };
        // Another record of the same order (an earlier version's identity, say) while it is live.
        let second = ledger.insert(&new_refund("legacy-bank", "key-b"), batch, 3);
        assert!(
            matches!(&second, Err(LedgerError::Sqlite { source, .. }) if source.to_string().contains("one order is one refund")),
            "{second:?}"
        );
        // A new key for a refund that succeeded, or may have been created.
        for state in [RefundState::Succeeded, RefundState::Unknown, RefundState::Sending] {
            set(&mut ledger, state);
            let next = ledger.next_generation(first.id, 1, "key-1", &new_refund("v2|order", "key-1"), batch, 2, None);
            assert!(next.is_err(), "{state}: {next:?}");
        }
        // ...unless a person confirmed, in that very update, that nothing was created.
        let confirmed = ledger.next_generation(
            first.id,
            1,
            "key-1",
            &new_refund("v2|order", "key-1"),
            batch,
            2,
            Some("2026-12-04T00:00:00.000Z"),
        );
        assert!(confirmed.is_ok(), "{confirmed:?}");
        // Once the order's refund is a definite failure another record of it may start.
        ledger
            .record(
                first.id,
                None,
                &RefundUpdate {
                    state: Some(RefundState::Declined),
                    ..RefundUpdate::default()
                },
                0,
            )
            .unwrap();
        assert!(ledger.insert(&new_refund("legacy-bank", "key-b"), batch, 3).is_ok());
    }

    #[test]
    fn a_reader_sees_a_writers_commits_and_a_hard_link_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.sqlite");
        let mut writer = Ledger::open(&path).unwrap();
        assert!(writer.was_created());
        let batch = writer.begin_batch("file.csv", "abc", "sandbox", "run").unwrap();
        writer.insert(&new_refund("id-1", "key-0"), batch, 2).unwrap();
        let reader = Ledger::open_reader(&path).unwrap();
        assert_eq!(reader.find("id-1").unwrap().unwrap().state, RefundState::Pending);
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
