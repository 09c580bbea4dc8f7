//! The whole-file check that runs before anything is sent (`validate`, and the first pass of `run`).
//!
//! It streams the file once through [`InputReader`], keeping only what later stages need: the
//! problems of invalid rows, the rows that repeat an earlier row's (terminal, order id) — by card
//! or by bank, one order is one refund — counts, the totals per currency of what would be sent,
//! and the file's SHA-256. A duplicate is an error because the second row would be a second
//! refund of the same order; the first occurrence stays valid and each later one names the row
//! it repeats.
//!
//! Ids that differ only by letter case (`VAR-1`, `var-1`) are duplicates too, unless
//! [`ReadOptions::allow_case_variants`]: a person reads them as one order, Payroc as two.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::refund::redaction::redact_digit_runs;

use sha2::{Digest, Sha256};

use crate::input::{InputError, InputReader, ParsedRow, ReadOptions};
use crate::refund::money::Currency;

/// What the check found.
#[derive(Debug, Default)]
pub struct FileCheck {
    /// Data rows in the file.
    pub rows: u64,
    /// Rows that can be sent.
    pub valid: u64,
    /// Problems of each invalid row, joined, by row number.
    pub invalid: HashMap<u64, String>,
    /// Problem lines in file order, for printing: the first [`PRINTED_PROBLEMS`] of them.
    pub problems: Vec<String>,
    /// Every problem of every row, by row and column, for `--errors` and `--format json`.
    pub cell_problems: Vec<crate::input::CellProblem>,
    /// How many problem lines there were in all.
    pub problem_count: u64,
    /// Rows whose cells are fine but which repeat an earlier row's identity.
    pub duplicate_rows: HashSet<u64>,
    /// Minor units per currency of the valid rows.
    pub totals: BTreeMap<Currency, i64>,
    /// Valid rows per currency.
    pub counts: BTreeMap<Currency, u64>,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Header names the tool ignores.
    pub unknown_columns: Vec<String>,
    /// Size and modification time of the file when it was checked.
    pub stamp: Option<FileStamp>,
    /// What each row was, for the passes after this one (see [`FileCheck::reopen`]).
    pub snapshot: std::sync::Arc<crate::input::InputSnapshot>,
}

/// What identifies the bytes that were checked, cheaply: later passes re-read the file, and must
/// read the same file — not one an export job rewrote while a production prompt was waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    length: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> Result<FileStamp, InputError> {
        let metadata = std::fs::metadata(path).map_err(|source| InputError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(FileStamp {
            length: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

impl FileCheck {
    /// Opens the checked file again for a later pass (sending, reconciling, the results): every
    /// row read is compared with what this check read, so a file rewritten, truncated or
    /// replaced meanwhile can never make a row be used that was not validated (see
    /// [`InputReader::open_verified`]).
    pub fn reopen(&self, path: &Path, options: ReadOptions) -> Result<InputReader, InputError> {
        InputReader::open_verified(path, options, self.snapshot.clone())
    }

    /// Fails when `path` is no longer the file that was checked (another size or modification
    /// time), so nothing is sent from rows that were never validated or confirmed.
    pub fn ensure_unchanged(&self, path: &Path) -> Result<(), InputError> {
        if self.stamp.as_ref() == Some(&FileStamp::of(path)?) {
            return Ok(());
        }
        Err(InputError::Malformed {
            path: path.to_owned(),
            message: "the file changed after it was validated; nothing more is sent from it. Run the command again \
                      to validate the new contents"
                .into(),
        })
    }
}

/// How many problem lines are kept for printing. A file broken on every row (the wrong file, the
/// wrong delimiter) would otherwise print millions of lines; the first thousand show the pattern,
/// and every invalid row still gets its full message in `invalid` (and so in the results CSV).
pub const PRINTED_PROBLEMS: usize = 1000;

impl FileCheck {
    fn record_problems(&mut self, lines: Vec<String>) {
        self.problem_count += lines.len() as u64;
        let room = PRINTED_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(lines.into_iter().take(room));
    }
}

/// Checks the whole file at `path`.
pub fn check_file(path: &Path, options: ReadOptions) -> Result<FileCheck, InputError> {
    let stamp = FileStamp::of(path)?;
    let mut reader = InputReader::open(path, options)?;
    reader.keep_snapshot();
    let mut check = FileCheck {
        unknown_columns: reader.unknown_columns().to_vec(),
        ..FileCheck::default()
    };
    let mut seen = SeenIdentities::default();
    while let Some(parsed) = reader.next_row() {
        check.rows += 1;
        let parsed = parsed?;
        // Duplicates are looked for among invalid rows too: a row fixed later must not collide
        // with one that was already sent.
        let (row_number, method, terminal, order_id): (u64, Cow<'_, str>, &str, &str) = match &parsed {
            ParsedRow::Valid(row) => (
                row.row,
                Cow::Borrowed(row.method.as_str()),
                &row.processing_terminal_id,
                &row.order_id,
            ),
            ParsedRow::Invalid { label, .. } => (
                label.row,
                Cow::Owned(label.method.to_ascii_lowercase()),
                &label.processing_terminal_id,
                &label.order_id,
            ),
        };
        let duplicate_of = if order_id.is_empty() || terminal.is_empty() {
            None
        } else {
            // The method is not part of it: an order is one refund, by card or by bank.
            let exact = identity_hash(terminal, order_id);
            let key = if options.allow_case_variants {
                exact
            } else {
                identity_hash(&terminal.to_lowercase(), &order_id.to_lowercase())
            };
            let fingerprint = u16::from_be_bytes([exact[0], exact[1]]);
            seen.first_or_insert(identity_key(&key), fingerprint, row_number)
                .map(|(first, first_fingerprint)| (first, first_fingerprint != fingerprint))
        };
        let duplicate_message = duplicate_of.map(|(first, case_variant)| {
            // The cells of an invalid row may hold anything: they are redacted like every cell
            // copied into a message.
            let (terminal, order_id) = (redact_digit_runs(terminal), redact_digit_runs(order_id));
            if case_variant {
                format!(
                    "row {row_number}, column order_id: terminal {terminal}, order {order_id} differs only by letter case from row {first}; Payroc would treat them as two orders, so this would be a second refund; pass --allow-case-variants if they are really different orders"
                )
            } else {
                format!(
                    "row {row_number}, column order_id: repeats row {first} ({method} refund, terminal {terminal}, order {order_id}); a second row for one order would be a second refund (give each refund its own order_id)"
                )
            }
        });
        if let Some(message) = &duplicate_message {
            let prefix = format!("row {row_number}, column order_id: ");
            check.cell_problems.push(crate::input::CellProblem {
                row: row_number,
                column: Some("order_id".to_owned()),
                message: message.strip_prefix(&prefix).unwrap_or(message).to_owned(),
            });
        }
        match parsed {
            ParsedRow::Invalid { label, problems } => {
                check.cell_problems.extend(problems.iter().cloned());
                let mut lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                lines.extend(duplicate_message);
                check.invalid.insert(label.row, lines.join("; "));
                check.record_problems(lines);
            }
            ParsedRow::Valid(row) => {
                if let Some(message) = duplicate_message {
                    check.invalid.insert(row.row, message.clone());
                    check.record_problems(vec![message]);
                    check.duplicate_rows.insert(row.row);
                    continue;
                }
                check.valid += 1;
                let total = check.totals.entry(row.currency).or_insert(0);
                *total = total.saturating_add(row.amount_minor);
                *check.counts.entry(row.currency).or_insert(0) += 1;
            }
        }
    }
    check.snapshot = std::sync::Arc::new(reader.snapshot());
    check.sha256 = reader.finish()?;
    check.stamp = Some(stamp);
    // A file rewritten while it was being read would have been checked half old, half new.
    check.ensure_unchanged(path)?;
    Ok(check)
}

/// SHA-256 of a (terminal, order id) pair, each part prefixed with its length.
fn identity_hash(terminal: &str, order_id: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [terminal, order_id] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// The 80 bits of `hash` that [`SeenIdentities`] keeps.
fn identity_key(hash: &[u8; 32]) -> u128 {
    let mut key = [0_u8; 16];
    key[6..].copy_from_slice(&hash[..10]);
    u128::from_be_bytes(key)
}

/// Recent identities are kept in a small map and merged into the sorted vector when it is full.
const RECENT_LIMIT: usize = 57_344;

/// The identities seen so far, with the row of each one's first occurrence, in 16 bytes per row.
///
/// Each entry packs 80 bits of the identity's SHA-256 (the high bits, so sorting orders by
/// hash), 16 bits of the SHA-256 of the ids as written (to tell a case variant from an exact
/// repeat when case is folded), and the row number (the low 32 bits; a row past 2^32 is
/// recorded as `u32::MAX`). 80 bits make an accidental collision among even 10^9 rows about one
/// in 2.4·10^6, among 10^7 rows about one in 2.4·10^10; a case variant is called an exact
/// repeat one time in 65,536 (it is refused either way, only the wording differs). A
/// `HashMap<[u8; 16], u64>` costs about 52 bytes per row at a million rows (24-byte entries,
/// a power-of-two table at most 7/8 full), which alone broke the 64 MiB budget of a run;
/// a sorted `Vec<u128>` costs 16, and lookups are a binary search.
#[derive(Default)]
struct SeenIdentities {
    /// `key << 48 | fingerprint << 32 | row`, sorted.
    sorted: Vec<u128>,
    /// Identities since the last merge: key → (row, fingerprint).
    recent: HashMap<u128, (u32, u16)>,
}

impl SeenIdentities {
    /// The first row with `key` (80 bits) and its fingerprint, or `None` after recording `row`
    /// and `fingerprint` as its first.
    fn first_or_insert(&mut self, key: u128, fingerprint: u16, row: u64) -> Option<(u64, u16)> {
        if let Some((first, first_fingerprint)) = self.recent.get(&key) {
            return Some((u64::from(*first), *first_fingerprint));
        }
        let index = self.sorted.partition_point(|entry| entry >> 48 < key);
        if let Some(entry) = self.sorted.get(index).filter(|entry| *entry >> 48 == key) {
            return Some((u64::from(*entry as u32), (*entry >> 32) as u16));
        }
        if self.recent.capacity() == 0 {
            self.recent.reserve(RECENT_LIMIT);
        }
        self.recent
            .insert(key, (u32::try_from(row).unwrap_or(u32::MAX), fingerprint));
        if self.recent.len() >= RECENT_LIMIT {
            self.merge();
        }
        None
    }

    /// Moves the recent identities into the sorted vector, merging in place from the back.
    fn merge(&mut self) {
        let mut batch: Vec<u128> = self
            .recent
            .drain()
            .map(|(key, (row, fingerprint))| key << 48 | u128::from(fingerprint) << 32 | u128::from(row))
            .collect();
        batch.sort_unstable();
        let old = self.sorted.len();
        self.sorted.resize(old + batch.len(), 0);
        let (mut from_old, mut from_batch, mut to) = (old, batch.len(), old + batch.len());
        while from_batch > 0 {
            to -= 1;
            if from_old > 0 && self.sorted[from_old - 1] > batch[from_batch - 1] {
                self.sorted[to] = self.sorted[from_old - 1];
                from_old -= 1;
            } else {
                self.sorted[to] = batch[from_batch - 1];
                from_batch -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_identities_find_first_rows_across_merges() {
        let mut seen = SeenIdentities::default();
        let hash = |n: u64| u128::from(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) << 16 | u128::from(n & 0xFFFF);
        let fingerprint = |n: u64| (n % 65_521) as u16;
        let rows = (RECENT_LIMIT * 2 + 123) as u64;
        for n in 0..rows {
            assert_eq!(seen.first_or_insert(hash(n), fingerprint(n), n + 2), None, "{n}");
        }
        assert!(seen.sorted.windows(2).all(|pair| pair[0] < pair[1]));
        for n in (0..rows).step_by(997).chain([0, rows - 1]) {
            assert_eq!(
                seen.first_or_insert(hash(n), 7, rows + 10),
                Some((n + 2, fingerprint(n))),
                "{n}"
            );
        }
    }

    /// The problem lines of checking `rows` (after a header with token columns) with `options`.
    fn check_rows(rows: &str, options: ReadOptions) -> FileCheck {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("day.csv");
        let header = "method,processing_terminal_id,order_id,amount,currency,description,secure_token,sec_code\n";
        std::fs::write(&path, format!("{header}{rows}")).expect("write");
        check_file(&path, options).expect("check")
    }

    #[test]
    fn ids_differing_only_by_case_or_method_are_one_order() {
        let rows = "card,T-1234,VAR-1,1.00,USD,x,296753123456,\n\
                    card,t-1234,var-1,1.00,USD,x,296753123456,\n\
                    bank,T-1234,VAR-1,1.00,USD,x,296753123456,web\n\
                    card,T-1234,Var-2,1.00,USD,x,296753123456,\n\
                    card,T-1234,VAR-2,1.00,USD,x,296753123456,\n";
        let check = check_rows(rows, ReadOptions::default());
        assert_eq!(check.valid, 2);
        assert_eq!(
            check.problems,
            [
                "row 3, column order_id: terminal t-1234, order var-1 differs only by letter case from row 2; Payroc \
                 would treat them as two orders, so this would be a second refund; pass --allow-case-variants if they \
                 are really different orders",
                "row 4, column order_id: repeats row 2 (bank refund, terminal T-1234, order VAR-1); a second row for \
                 one order would be a second refund (give each refund its own order_id)",
                "row 6, column order_id: terminal T-1234, order VAR-2 differs only by letter case from row 5; Payroc \
                 would treat them as two orders, so this would be a second refund; pass --allow-case-variants if they \
                 are really different orders",
            ]
        );
        assert_eq!(check.duplicate_rows, HashSet::from([3, 4, 6]));

        // With the option, case makes another order; the same order by bank is still a repeat.
        let options = ReadOptions {
            allow_case_variants: true,
            ..ReadOptions::default()
        };
        let check = check_rows(rows, options);
        assert_eq!(check.valid, 4);
        assert_eq!(check.duplicate_rows, HashSet::from([4]));
        assert!(check.problems[0].starts_with("row 4, column order_id: repeats row 2"));
    }

    #[test]
    fn a_file_rewritten_after_validation_is_noticed() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("day.csv");
        let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n";
        std::fs::write(
            &path,
            format!("{header}card,1234001,A1,1.00,USD,x,4111111111111111,0929\n"),
        )
        .expect("write");
        let check = check_file(&path, ReadOptions::default()).expect("check");
        assert_eq!(check.valid, 1);
        check.ensure_unchanged(&path).expect("still the same file");
        std::fs::write(
            &path,
            format!("{header}card,1234001,A1,1.00,USD,x,4111111111111111,0929\ncard,1234001,A2,900.00,USD,x,4111111111111111,0929\n"),
        )
        .expect("rewrite");
        let error = check.ensure_unchanged(&path).expect_err("the file grew");
        assert!(
            error.to_string().contains("changed after it was validated") || format!("{error:?}").contains("changed")
        );
    }
}
