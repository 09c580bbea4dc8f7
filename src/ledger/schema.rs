//! The ledger's schema: numbered migrations, applied in order in one transaction.
//!
//! [`Ledger::open`] calls [`Ledger::migrate`] on every open; the version reached is SQLite's
//! `user_version`, so a ledger is brought up to date whatever version wrote it, and a ledger
//! from a newer version is refused rather than misread. Each migration is a file in
//! `migrations/`, never edited once released: a change to the schema is a new file.

use super::{Ledger, LedgerError};

/// Every migration, in order: the schema version is how many of them a ledger has applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_initial.sql"),
    include_str!("migrations/002_attempt_refund_ids.sql"),
    include_str!("migrations/003_exactly_once.sql"),
    include_str!("migrations/004_payroc_answers.sql"),
    include_str!("migrations/005_narrower_keys.sql"),
    include_str!("migrations/006_one_refund_per_order.sql"),
    include_str!("migrations/007_orders_by_folded_terminal.sql"),
];

impl Ledger {
    pub(super) fn schema_version(&self) -> Result<usize, LedgerError> {
        self.connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|source| self.sqlite_error(source))
    }

    /// Brings the schema up to date in one transaction: an upgrade lands whole or not at all,
    /// and a new ledger costs one commit, not one per migration.
    pub(super) fn migrate(&mut self) -> Result<(), LedgerError> {
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
}
