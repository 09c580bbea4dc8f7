//! Batches: one command over one file, with its totals, and what `status` lists of them.
//!
//! A command that reads a file starts a batch ([`Ledger::begin_batch`]) and ends it with its
//! totals ([`Ledger::finish_batch`]); the refunds it touches point at it, so the results can be
//! written from what a batch recorded and `status` can list runs and totals. A batch's records
//! are bookkeeping, committed without an fsync of their own ([`Ledger::write_unsynced`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::records::{StoredName, Unreadable, read_record, stored};
use super::{BatchId, Ledger, LedgerError, RefundRecord, now};
use crate::refund::money::Currency;
use crate::refund::{Environment, RefundStatus};

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
    /// Where its refunds went.
    pub environment: Environment,
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
    /// Where they went.
    pub environment: Environment,
    /// The state.
    pub state: RefundStatus,
    /// The currency.
    pub currency: Currency,
    /// How many refunds.
    pub rows: i64,
    /// Their amounts summed, in minor units.
    pub amount_minor: i64,
}

impl Ledger {
    /// Starts a batch record for one command over one file.
    pub fn begin_batch(
        &mut self,
        input_path: &str,
        input_sha256: &str,
        environment: Environment,
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
    pub(super) fn write_unsynced<T>(
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

    /// Every record a batch touched last, by its row in that batch's file: what the results
    /// say of rows the input file no longer holds as they were validated.
    pub fn records_of_batch(
        &self,
        batch: BatchId,
    ) -> Result<std::collections::HashMap<u64, RefundRecord>, LedgerError> {
        let mut statement = self
            .connection
            .prepare("SELECT * FROM refunds WHERE batch_id = ?1 AND input_row IS NOT NULL")
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
        let rows: Vec<Result<BatchRecord, String>> = statement
            .query_map(params![input_sha256], |row| {
                let environment = match stored(row, "environment") {
                    Ok(environment) => environment,
                    Err(Unreadable::Sqlite(error)) => return Err(error),
                    Err(Unreadable::Unknown(message)) => return Ok(Err(message)),
                };
                Ok(Ok(BatchRecord {
                    id: row.get(0)?,
                    input_path: row.get(1)?,
                    input_sha256: row.get(2)?,
                    environment,
                    started_at: row.get(4)?,
                    finished_at: row.get(5)?,
                    rows: row.get(6)?,
                    exit_code: row.get(7)?,
                    counts: row.get(8)?,
                }))
            })
            .and_then(Iterator::collect)
            .map_err(|source| self.sqlite_error(source))?;
        rows.into_iter()
            .map(|batch| {
                batch.map_err(|message| LedgerError::Corrupt {
                    path: self.path.clone(),
                    message,
                })
            })
            .collect()
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
                let corrupt = |message| LedgerError::Corrupt {
                    path: self.path.clone(),
                    message,
                };
                let state =
                    RefundStatus::parse_stored(&state).ok_or_else(|| corrupt(format!("unknown state {state:?}")))?;
                let environment = Environment::from_stored(&environment)
                    .ok_or_else(|| corrupt(format!("unknown {} {environment:?}", Environment::WHAT)))?;
                let currency = Currency::from_stored(&currency)
                    .ok_or_else(|| corrupt(format!("unknown {} {currency:?}", Currency::WHAT)))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testing::temporary_ledger;

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
        let batch = ledger.begin_batch("file.csv", "abc", Environment::Uat, "run").unwrap();
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
}
