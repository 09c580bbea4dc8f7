//! Transactions: single writes, group commits and read snapshots.
//!
//! Every write of the ledger goes through [`Ledger::write`], which commits it on its own or
//! inside the open group. The dispatcher opens a group ([`Ledger::begin_group`]) to mark many
//! rows `sending` in one synced commit before their requests leave; the results writer reads
//! every row from one snapshot ([`Ledger::read_snapshot`]).

use rusqlite::Connection;

use super::{Ledger, LedgerError};

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

impl Ledger {
    /// Runs `operation` in a transaction of its own — or, while a group is open (see
    /// [`Ledger::begin_group`]), inside the group's, to be committed with it.
    pub(super) fn write<T>(
        &mut self,
        operation: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
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
    pub(super) fn in_one_group<T>(
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
}
