//! The invariants, checked after every step once its processes have ended: at most one live
//! refund per order, nothing sent by a command that exits 2, every refund known to a ledger, the
//! results CSV agreeing with Payroc, no card number on disk, and the inputs untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use payroc_sandbox::{RefundRecord, Stats};

use super::sequence::{Outcome, Sequence, WrittenResults};
use super::{APPROVING_CARDS, DECLINING_CARDS, ODD_CARDS};
use crate::util::{Workdir, read_results};

impl Sequence {
    /// Every invariant, after a step whose processes have all ended.
    pub(super) fn check(&self, outcome: &Outcome, posts_before: u64) -> Result<(), String> {
        let stats = self.sandbox.stats();
        let evidence = |broken: String| {
            let said = outcome.said.trim_end();
            if said.is_empty() {
                broken
            } else {
                format!("{broken}\nwhat the step's commands said:\n{said}")
            }
        };
        at_most_one_live_refund_per_order(&stats).map_err(evidence)?;
        nothing_is_sent_by_a_command_that_exits_2(outcome, posts_before, stats.refund_posts).map_err(evidence)?;
        every_refund_is_known_to_a_ledger(&self.workdir, &self.ledgers, &stats).map_err(evidence)?;
        if let Some(results) = &self.last_results {
            results_agree_with_payroc(&self.workdir, results).map_err(evidence)?;
        }
        no_card_number_on_disk(&self.workdir, &self.inputs).map_err(evidence)?;
        inputs_are_untouched(&self.workdir, &self.inputs).map_err(evidence)
    }
}

/// The order a refund belongs to, as a person reads it: look-alike spellings of one order id
/// (letter case, zero-width and other format characters, Unicode dashes) are one order.
fn order_key(terminal: &str, order_id: &str) -> (String, String) {
    let normalised: String = order_id
        .chars()
        .filter(|character| !is_format_character(*character))
        .map(|character| if is_dash(character) { '-' } else { character })
        .flat_map(char::to_lowercase)
        .collect();
    (terminal.to_owned(), normalised)
}

/// Zero-width and other invisible format characters (Unicode category Cf, the ones that occur).
fn is_format_character(character: char) -> bool {
    matches!(
        character,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Hyphens, dashes and minus signs that look like `-`.
fn is_dash(character: char) -> bool {
    matches!(
        character,
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
    )
}

/// A refund that counts: not declined or returned by status, and not declined by its code.
fn is_live(refund: &RefundRecord) -> bool {
    !matches!(refund.status.as_str(), "declined" | "returned")
        && !matches!(refund.response_code.as_str(), "D" | "R" | "C")
}

/// Invariant 1: at most one refund per order that is not a definite failure, whatever the method
/// and however the order id is spelled.
fn at_most_one_live_refund_per_order(stats: &Stats) -> Result<(), String> {
    let mut per_order: BTreeMap<(String, String), Vec<&RefundRecord>> = BTreeMap::new();
    for refund in stats.refunds.iter().filter(|refund| is_live(refund)) {
        per_order
            .entry(order_key(&refund.processing_terminal_id, &refund.order_id))
            .or_default()
            .push(refund);
    }
    for ((terminal, order), refunds) in per_order {
        if refunds.len() > 1 {
            return Err(format!(
                "a second refund: terminal {terminal}, order {order:?} has {} refunds that are not definite \
                 failures:\n{}",
                refunds.len(),
                describe(&refunds)
            ));
        }
    }
    Ok(())
}

fn describe(refunds: &[&RefundRecord]) -> String {
    refunds
        .iter()
        .map(|refund| {
            format!(
                "  {} {} terminal {} order {:?} {} minor {} code {:?} status {} key {} created {}",
                refund.refund_id,
                refund.method,
                refund.processing_terminal_id,
                refund.order_id,
                refund.amount,
                refund.currency,
                refund.response_code,
                refund.status,
                refund.idempotency_key,
                refund.created_at
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Invariant 3, first part: exit 2 means nothing was sent.
fn nothing_is_sent_by_a_command_that_exits_2(outcome: &Outcome, before: u64, after: u64) -> Result<(), String> {
    let all_exit_2 = !outcome.exits.is_empty() && outcome.exits.iter().all(|code| *code == Some(2));
    if all_exit_2 && after > before {
        return Err(format!(
            "exit 2 says nothing was sent, but the sandbox received {} refund POSTs during the step",
            after - before
        ));
    }
    Ok(())
}

/// Invariant 2: every refund Payroc holds is known to some ledger of the sequence as sent or
/// maybe sent — its key is in that ledger, and its row is not a `pending` one that was never sent.
/// Checked when no process runs, so a ledger that cannot be read is itself a finding.
fn every_refund_is_known_to_a_ledger(workdir: &Workdir, ledgers: &[String], stats: &Stats) -> Result<(), String> {
    let mut known = BTreeSet::new();
    for ledger in ledgers {
        let path = workdir.path(ledger);
        if !path.exists() {
            continue;
        }
        known.extend(sent_keys(&path).map_err(|error| format!("ledger {ledger} cannot be read: {error}"))?);
    }
    let unknown: Vec<&RefundRecord> = stats
        .refunds
        .iter()
        .filter(|refund| !known.contains(&refund.idempotency_key))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Payroc holds refunds whose keys no ledger ({}) records as sent or maybe sent:\n{}",
            ledgers.join(", "),
            describe(&unknown)
        ))
    }
}

/// The ledger at `path` opened from a scratch copy of its file and WAL (with the directory that
/// holds the copy, removed when dropped): a command killed mid-write leaves a WAL that only a
/// writable connection may recover, and the tool's own files must stay as it left them.
fn open_copy(path: &Path) -> rusqlite::Result<(tempfile::TempDir, rusqlite::Connection)> {
    let scratch = tempfile::tempdir().map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    let copy = scratch.path().join("ledger.sqlite");
    for suffix in ["", "-wal"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = copy.as_os_str().to_owned();
        to.push(suffix);
        if Path::new(&from).exists() {
            std::fs::copy(&from, &to).map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        }
    }
    let connection = rusqlite::Connection::open(&copy)?;
    Ok((scratch, connection))
}

/// Whether the file at `path` is a ledger with its tables made.
pub(super) fn has_tables(path: &Path) -> bool {
    let Ok((_scratch, connection)) = open_copy(path) else {
        return false;
    };
    connection
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('keys', 'refunds')",
            [],
            |row| row.get::<_, i64>(0),
        )
        .is_ok_and(|tables| tables == 2)
}

/// The keys the ledger at `path` records as sent or maybe sent, read from a copy (see
/// [`open_copy`]).
fn sent_keys(path: &Path) -> rusqlite::Result<Vec<String>> {
    let (_scratch, connection) = open_copy(path)?;
    // A command killed while it made the ledger can leave it without tables: it knows nothing.
    // A file that is not a database at all fails here.
    let tables: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('keys', 'refunds')",
        [],
        |row| row.get(0),
    )?;
    if tables < 2 {
        return Ok(Vec::new());
    }
    let mut statement = connection.prepare(
        "SELECT keys.idempotency_key FROM keys JOIN refunds ON refunds.id = keys.refund_id \
         WHERE keys.generation < refunds.generation OR refunds.state != 'pending' OR refunds.may_have_reached = 1",
    )?;
    statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()
}

/// Invariant 3: the results CSV of the last finished `run` or `reconcile` agrees, row by row,
/// with the sandbox as it was when it was written. `succeeded` is what the README says it is: a
/// card refund answered `A`, or a bank transfer submitted (answered `A` or without a code), and
/// in either case not `declined`. A return or reversal after a refund succeeded
/// only shows in the results of `reconcile --refresh`, the command that reads it.
fn results_agree_with_payroc(workdir: &Workdir, written: &WrittenResults) -> Result<(), String> {
    let path = workdir.path(&written.file);
    let lines = std::panic::catch_unwind(|| read_results(&path))
        .map_err(|_| format!("{} is not a results CSV any more", written.file))?;
    let held: BTreeMap<&str, &RefundRecord> = written
        .sandbox_then
        .refunds
        .iter()
        .map(|refund| (refund.refund_id.as_str(), refund))
        .collect();
    for line in &lines {
        let field = |name: &str| line.get(name).map_or("", String::as_str);
        let row = field("row");
        let status = field("status");
        let refund_id = field("refund_id");
        if refund_id.is_empty() {
            if status == "succeeded" {
                return Err(format!(
                    "{}: row {row} is succeeded without a refund id: {line:?}",
                    written.file
                ));
            }
            continue;
        }
        let Some(refund) = held.get(refund_id) else {
            return Err(format!(
                "{}: row {row} claims refund {refund_id}, which the sandbox does not hold: {line:?}",
                written.file
            ));
        };
        let order_id = field("order_id");
        if !order_id.contains("redacted")
            && order_key(field("processing_terminal_id"), order_id)
                != order_key(&refund.processing_terminal_id, &refund.order_id)
        {
            return Err(format!(
                "{}: row {row} (order {order_id:?}) claims refund {refund_id} of another order:\n{}\n{line:?}",
                written.file,
                describe(&[refund])
            ));
        }
        if status == "succeeded" {
            let gone_later = written.refreshed && matches!(refund.status.as_str(), "returned" | "reversal");
            // A bank transfer submitted to the ACH network may have no response code at all.
            let approved = refund.response_code == "A" || (refund.method == "bank" && refund.response_code.is_empty());
            if !approved || refund.status == "declined" || gone_later {
                return Err(format!(
                    "{}: row {row} is succeeded, but the sandbox holds its refund as:\n{}\n{line:?}",
                    written.file,
                    describe(&[refund])
                ));
            }
        }
    }
    Ok(())
}

/// Invariant 4: no card number in any file the tool wrote (or the harness copied from one): no
/// test card number of the sequence, even with its spaces, dashes, dots and slashes taken out,
/// and no other Luhn-valid run of 12–19 digits standing on its own.
fn no_card_number_on_disk(workdir: &Workdir, inputs: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let cards: Vec<&str> = APPROVING_CARDS
        .iter()
        .chain(&DECLINING_CARDS)
        .chain(&ODD_CARDS)
        .copied()
        .collect();
    for (path, bytes) in workdir.all_files() {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if inputs.contains_key(&name) {
            continue;
        }
        let squeezed: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|byte| !matches!(byte, b' ' | b'-' | b'.' | b'/'))
            .collect();
        for card in &cards {
            if contains(&squeezed, card.as_bytes()) {
                return Err(format!("card number {card} is on disk in {name}"));
            }
        }
        if let Some(found) = luhn_run(&bytes) {
            return Err(format!("a Luhn-valid card number {found} is on disk in {name}"));
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The first run of 12–19 digits, perhaps split by single spaces, dashes, dots or slashes, that
/// passes the Luhn check and is not part of a longer word (hex digests and keys are words).
fn luhn_run(bytes: &[u8]) -> Option<String> {
    let separator = |byte: u8| matches!(byte, b' ' | b'-' | b'.' | b'/');
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() || (start > 0 && bytes[start - 1].is_ascii_alphanumeric()) {
            start += 1;
            continue;
        }
        let mut digits = String::new();
        let mut end = start;
        while end < bytes.len() {
            if bytes[end].is_ascii_digit() {
                digits.push(bytes[end] as char);
                end += 1;
            } else if separator(bytes[end]) && end + 1 < bytes.len() && bytes[end + 1].is_ascii_digit() {
                end += 1;
            } else {
                break;
            }
        }
        let stands_alone = end >= bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if stands_alone && (12..=19).contains(&digits.len()) && luhn(&digits) {
            return Some(digits);
        }
        start = end.max(start + 1);
    }
    None
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Invariant 5: the tool never writes over an input file (here, with its results).
fn inputs_are_untouched(workdir: &Workdir, inputs: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    for (name, written) in inputs {
        let now = std::fs::read(workdir.path(name)).unwrap_or_default();
        if &now != written {
            return Err(format!(
                "the input {name} was changed by the tool; it now begins:\n{}",
                String::from_utf8_lossy(&now[..now.len().min(300)])
            ));
        }
    }
    Ok(())
}
