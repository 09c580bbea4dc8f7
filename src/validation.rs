//! The whole-file check that runs before anything is sent (`validate`, and the first pass of `run`).
//!
//! It streams the file once through [`InputReader`], keeping only what later stages need: the
//! problems of invalid rows, the rows that repeat an earlier row's (method, terminal, order id),
//! counts, the totals per currency of what would be sent, and the file's SHA-256. A duplicate is
//! an error because the second row would be a second refund of the same order; the first
//! occurrence stays valid and each later one names the row it repeats.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::input::{InputError, InputReader, ParsedRow, ReadOptions};
use crate::money::Currency;

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
    let mut reader = InputReader::open(path, options)?;
    let mut check = FileCheck {
        unknown_columns: reader.unknown_columns().to_vec(),
        ..FileCheck::default()
    };
    // 16 bytes of SHA-256 per identity rather than the strings: flat memory per row.
    let mut seen: HashMap<[u8; 16], u64> = HashMap::new();
    while let Some(parsed) = reader.next_row() {
        check.rows += 1;
        let parsed = parsed?;
        // Duplicates are looked for among invalid rows too: a row fixed later must not collide
        // with one that was already sent.
        let (row_number, method, terminal, order_id) = match &parsed {
            ParsedRow::Valid(row) => (
                row.row,
                row.method.as_str().to_owned(),
                row.processing_terminal_id.clone(),
                row.order_id.clone(),
            ),
            ParsedRow::Invalid { label, .. } => (
                label.row,
                label.method.to_ascii_lowercase(),
                label.processing_terminal_id.clone(),
                label.order_id.clone(),
            ),
        };
        let duplicate_of = if order_id.is_empty() || terminal.is_empty() {
            None
        } else {
            let mut hasher = Sha256::new();
            for part in [method.as_str(), &terminal, &order_id] {
                hasher.update((part.len() as u32).to_be_bytes());
                hasher.update(part.as_bytes());
            }
            let mut identity = [0_u8; 16];
            identity.copy_from_slice(&hasher.finalize()[..16]);
            match seen.get(&identity) {
                Some(first) => Some(*first),
                None => {
                    seen.insert(identity, row_number);
                    None
                }
            }
        };
        let duplicate_message = duplicate_of.map(|first| {
            format!(
                "row {row_number}, column order_id: repeats row {first} ({method} refund, terminal {terminal}, order {order_id}); a second row for one order would be a second refund (give each refund its own order_id)"
            )
        });
        match parsed {
            ParsedRow::Invalid { label, problems } => {
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
    check.sha256 = reader.finish()?;
    Ok(check)
}
