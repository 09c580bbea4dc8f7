//! One row's check while its cells are read: the problems found so far, and the cell reads that
//! trim, bound and validate each value (required, lengths, one of a list, no card number in the
//! wrong column, ids without look-alike or non-ASCII characters). The column rules
//! ([`super::rules`]) and the payee rules ([`super::payee_rules`]) read cells only through it.

use super::rules::{COLUMN_RULES, PAYEE_NUMBER_COLUMNS, Use, rule, use_for};
use super::*;

/// Gathers the problems of one row while the cells are read.
pub(super) struct RowCheck<'record> {
    pub(super) record: &'record csv::ByteRecord,
    pub(super) columns: &'record ColumnMap,
    pub(super) row: u64,
    pub(super) problems: Vec<CellProblem>,
    /// Record positions of the cells refused for holding a card number: read as empty after.
    pub(super) refused: Vec<usize>,
}

impl RowCheck<'_> {
    /// Records a problem. Messages may quote a cell, and a cell may hold a card or account number
    /// typed into the wrong column; long digit runs are redacted so such a number never reaches
    /// the terminal or the results.
    pub(super) fn problem(&mut self, column: &str, message: impl Into<String>) {
        self.problems.push(CellProblem {
            row: self.row,
            column: Some(column.to_owned()),
            message: redact_digit_runs(&message.into()),
        });
    }

    /// The trimmed cell of `column`, `None` when the column is absent or the cell empty.
    pub(super) fn cell(&mut self, column: &str) -> Option<String> {
        let index = self.columns.position(column)?;
        self.cell_at(column, index)
    }

    /// Whether a problem was already recorded for `column` (a later check then stays quiet
    /// rather than add, say, "is required" for a cell refused for what it holds).
    pub(super) fn has_problem(&self, column: &str) -> bool {
        self.problems
            .iter()
            .any(|problem| problem.column.as_deref() == Some(column))
    }

    pub(super) fn cell_at(&mut self, column: &str, index: usize) -> Option<String> {
        if self.refused.contains(&index) {
            return None;
        }
        let bytes = self.record.get(index)?;
        if bytes.len() > MAX_CELL_BYTES {
            self.problem(
                column,
                format!(
                    "is {} bytes long, far more than any column allows (at most 256 characters); \
                     check for a quote that is never closed",
                    bytes.len()
                ),
            );
            return None;
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                self.problem(
                    column,
                    format!(
                        "is not valid UTF-8 (byte {} is not): re-export the file as \"CSV UTF-8\"",
                        error.valid_up_to() + 1
                    ),
                );
                return None;
            }
        };
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        // A line break inside a quoted cell is refused, not sent: Payroc's fields are one line
        // of text, and a description that continues on a second line is more often a broken
        // quote than intent. The row number stays the record's (as a spreadsheet counts it).
        if let Some(control) = text.chars().find(|character| character.is_control()) {
            let what = match control {
                '\n' | '\r' => "a line break (a multi-line cell)".to_owned(),
                '\t' => "a tab".to_owned(),
                '\0' => "a NUL byte".to_owned(),
                other => format!("the control character U+{:04X}", u32::from(other)),
            };
            self.problem(
                column,
                format!("contains {what} (one line of text without tabs, NUL or other control characters)"),
            );
            return None;
        }
        Some(text.to_owned())
    }

    pub(super) fn required(&mut self, column: &str) -> Option<String> {
        let allowed = rule(column).map_or("a value", |rule| rule.allowed);
        let value = self.cell(column);
        if value.is_none() && !self.has_problem(column) {
            self.problem(column, format!("is required ({allowed})"));
        }
        value
    }

    /// Checks a length in characters (what Payroc counts), reporting `column` when outside.
    pub(super) fn length(
        &mut self,
        column: &str,
        value: Option<String>,
        minimum: usize,
        maximum: usize,
    ) -> Option<String> {
        let value = value?;
        let count = value.chars().count();
        if count < minimum || count > maximum {
            self.problem(
                column,
                format!("is {count} characters long ({minimum}–{maximum} allowed)"),
            );
            return None;
        }
        Some(value)
    }

    /// Refuses every cell outside the payee columns that holds a card number, as
    /// [`card_numbers`] finds one: a run of 12–19 digits that pass the card check digit, or such
    /// digits in groups joined by spaces, dashes, dots or slashes, alone or inside a longer text.
    /// Ids are stored in the ledger and copied into the results; descriptions, names and custom
    /// fields are sent and kept; a card number must be in none of them. A refused cell reads as
    /// empty afterwards, so no other check repeats it. The message shows the number masked.
    ///
    /// `amount` is not looked at: a valid amount (at most 11 whole digits) is kept as a number of
    /// minor units, never as typed, and an invalid one is masked wherever it is repeated. Columns
    /// the tool does not know are never read, sent or stored, so they are not looked at either.
    pub(super) fn refuse_card_numbers(&mut self) {
        for (rule_index, rule) in COLUMN_RULES.iter().enumerate() {
            if PAYEE_NUMBER_COLUMNS.contains(&rule.name) || rule.name == "amount" {
                continue;
            }
            if let Some(index) = self.columns.positions[rule_index] {
                self.refuse_card_number_at(rule.name, index);
            }
        }
        for (name, index) in &self.columns.custom {
            if self.holds_card_number(*index).is_some() {
                self.refuse_card_number_at(&format!("custom.{name}"), *index);
            }
        }
    }

    /// The masked form of the first card number in the cell at `index`, if it holds one. The id
    /// columns are held to the stricter rule of
    /// [`crate::refund::redaction::id_hides_a_card_number`]: they are stored and echoed.
    pub(super) fn holds_card_number(&self, index: usize) -> Option<String> {
        // A cell too long or not UTF-8 is refused for that by `cell_at`, and never read.
        let bytes = self.record.get(index).filter(|bytes| bytes.len() <= MAX_CELL_BYTES)?;
        let text = std::str::from_utf8(bytes).ok()?;
        let is_id = ["processing_terminal_id", "order_id"]
            .iter()
            .any(|column| self.columns.position(column) == Some(index));
        if is_id && crate::refund::redaction::id_hides_a_card_number(text) {
            return Some(masked(text.chars().filter(char::is_ascii_digit)));
        }
        let found = card_numbers(text).into_iter().next()?;
        Some(masked(text[found].chars()))
    }

    pub(super) fn refuse_card_number_at(&mut self, column: &str, index: usize) {
        let Some(shown) = self.holds_card_number(index) else {
            return;
        };
        self.refused.push(index);
        self.problem(
            column,
            format!(
                "holds a card number in the wrong place ({shown}: 12–19 digits that pass the card check digit, \
                 counted through spaces, dashes, dots and slashes); a card number goes only in card_number and is \
                 never sent or stored from another column. If it is not a card number, write it another way"
            ),
        );
    }

    /// Refuses an id that holds an invisible or look-alike character (see [`lookalike`]), naming
    /// the character and its position (counted in characters from 1, after the cell is trimmed).
    pub(super) fn plain_id(&mut self, column: &str, value: Option<String>) -> Option<String> {
        let value = value?;
        let found = value
            .chars()
            .enumerate()
            .find_map(|(position, character)| Some((position + 1, lookalike::refused_in_ids(character)?)));
        if let Some((position, name)) = found {
            self.problem(
                column,
                format!("contains {name} at position {position}; ids must not hold invisible or look-alike characters"),
            );
            return None;
        }
        // Only ASCII: a letter such as É can be written as one character or as E and a combining
        // accent, which look the same and are different bytes, and its letter case folds by rules
        // no two systems share — so two ids that read as one order could be two at Payroc.
        if let Some((position, character)) = value.chars().enumerate().find(|(_, character)| !character.is_ascii()) {
            self.problem(
                column,
                format!(
                    "contains U+{:04X} {character:?} at position {}; ids must be plain ASCII letters, digits and \
                     punctuation: a non-ASCII letter can be written in ways that look alike but differ, so one \
                     order could become two at Payroc",
                    u32::from(character),
                    position + 1
                ),
            );
            return None;
        }
        Some(value)
    }

    pub(super) fn one_of(
        &mut self,
        column: &str,
        value: Option<String>,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let value = value?;
        let lower = value.to_ascii_lowercase();
        match allowed.iter().find(|candidate| **candidate == lower) {
            Some(found) => Some(found),
            None => {
                self.problem(
                    column,
                    format!("{:?} is not allowed ({})", excerpt(&value, 20), allowed.join(", ")),
                );
                None
            }
        }
    }

    /// Reports columns that must be empty for this method.
    /// Reports every column the table says belongs to the other method.
    pub(super) fn forbid_other_method(&mut self, method: Method) {
        for rule in COLUMN_RULES {
            if use_for(rule, method) == Use::Never && self.cell(rule.name).is_some() {
                self.problem(rule.name, format!("is not used for {method} refunds (leave it empty)"));
            }
        }
    }

    pub(super) fn forbid(&mut self, columns: &[&str], method: Method) {
        for column in columns {
            if self.cell(column).is_some() {
                self.problem(column, format!("is not used for {method} refunds (leave it empty)"));
            }
        }
    }
}
