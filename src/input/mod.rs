//! Reading and validating the refund file: CSV bytes in, [`RefundRow`]s or row problems out.
//!
//! This is the first stage of every command. `validate` and `run` both stream the file through
//! [`InputReader`] once to check every row before anything is sent; `run` then streams it again
//! to send, and once more to write the results in input order. Nothing here keeps the whole file
//! in memory: a reader holds one record at a time, and it hashes the bytes as they pass so the
//! ledger can tell whether the file changed between runs.
//!
//! Every problem names the row as a spreadsheet shows it (the header is row 1) and the column,
//! and says what is allowed, because the reader of the message is fixing a spreadsheet.

pub mod file_check;
mod lookalike;
mod rules;

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::refund::money::{self, Currency};
use crate::refund::redaction::{card_numbers, excerpt, masked, redact_digit_runs};
use crate::refund::{BillingAddress, Customer, IpAddress, Method, Payee, RefundRow, hex};

/// The identifying cells of a row, kept even when the row is invalid so the results CSV can
/// still say which refund the line was about.
#[derive(Debug, Clone, Default)]
pub struct RowLabel {
    /// Row number (header = 1).
    pub row: u64,
    /// The `method` cell, or the `--method` default.
    pub method: String,
    /// The `processing_terminal_id` cell.
    pub processing_terminal_id: String,
    /// The `order_id` cell.
    pub order_id: String,
    /// The `amount` cell as written.
    pub amount: String,
    /// The `currency` cell as written.
    pub currency: String,
}

/// One problem with one cell (or a whole row when `column` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellProblem {
    /// Row number (header = 1).
    pub row: u64,
    /// The column, as named in the header (lower-cased).
    pub column: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for CellProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(formatter, "row {}, column {}: {}", self.row, column, self.message),
            None => write!(formatter, "row {}: {}", self.row, self.message),
        }
    }
}

/// What the reader makes of one record.
#[derive(Debug)]
pub enum ParsedRow {
    /// Every cell checks out.
    Valid(Box<RefundRow>),
    /// At least one problem; every problem in the row is listed.
    Invalid {
        /// Which refund the row was about, as far as it could be read.
        label: RowLabel,
        /// All problems found in the row.
        problems: Vec<CellProblem>,
    },
}

/// Errors that stop reading the file altogether (as opposed to a bad row).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The CSV structure itself is broken at a point (not one cell).
    #[error("{path}: {message}")]
    Malformed {
        /// The input file.
        path: PathBuf,
        /// What was found, with the row.
        message: String,
    },
    /// The header lacks what every file needs.
    #[error("{path}: {message}")]
    Header {
        /// The input file.
        path: PathBuf,
        /// What is missing and how to fix it.
        message: String,
    },
    /// A row (or the header, row 1) is not what the validation pass read: the file was
    /// rewritten, truncated or replaced during the command. The reader moves on past it, so a
    /// caller may carry on with the rows after it.
    #[error(
        "{path}: row {row} changed after the file was validated (the file was rewritten, truncated or replaced during the run); \
         nothing is sent from the file any more. Run the command again to validate the new contents"
    )]
    Changed {
        /// The input file.
        path: PathBuf,
        /// The row that changed (1 for the header).
        row: u64,
    },
}

/// What the validation pass read, row by row, so a later pass can tell that it reads the same
/// rows: a 64-bit digest of the header and of each record's cells. Kept in memory only (8 bytes
/// a row: 8 MB for a million rows), never written anywhere, as it is computed over cells that
/// hold card numbers.
#[derive(Debug, Default, Clone)]
pub struct InputSnapshot {
    header: u64,
    rows: Vec<u64>,
}

impl InputSnapshot {
    /// How many data rows the validated file had.
    pub fn rows(&self) -> u64 {
        self.rows.len() as u64
    }
}

/// What a reader does with its rows' digests.
enum Digests {
    /// Nothing (tests and `validate`'s own pass do not need them).
    Off,
    /// Keeps them: the validation pass, which makes the snapshot.
    Keep(InputSnapshot),
    /// Compares every row with the validation pass's, and reports a change.
    Verify {
        snapshot: std::sync::Arc<InputSnapshot>,
        /// The end of the file came before the snapshot's last row was reported.
        reported_short: bool,
    },
}

/// The digest of one record's cells (or the header's), as the snapshot keeps it.
fn record_digest(record: &csv::ByteRecord) -> u64 {
    let mut hasher = Sha256::new();
    for field in record {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    let digest = hasher.finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Options that change how a file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// The method for rows whose file has no `method` column (or an empty cell).
    pub default_method: Option<Method>,
    /// The field delimiter; `None` means `,`.
    pub delimiter: Option<u8>,
    /// Whether two rows whose terminal and order id differ only by letter case are two orders.
    /// Off by default: they read as one order, so the file check reports the second as a
    /// duplicate (Payroc would take it as another order, so another refund).
    pub allow_case_variants: bool,
    /// How amounts mark their fraction: `.` (default) or `,` (`--decimal-comma`).
    pub decimal_mark: crate::refund::money::DecimalMark,
}

/// A `Read` that feeds every byte it passes through SHA-256, so the file is hashed while it is
/// parsed instead of read twice. Without a hasher (the later passes of `run`, which do not need
/// the digest) it only passes the bytes through.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buffer[..count]);
        }
        Ok(count)
    }
}

/// Where each known column sits in a record; `None` when the file lacks it.
#[derive(Debug)]
struct ColumnMap {
    positions: Vec<Option<usize>>,
    custom: Vec<(String, usize)>,
    width: usize,
}

impl ColumnMap {
    fn position(&self, column: &str) -> Option<usize> {
        let index = rules::position(column)?;
        self.positions[index]
    }
}

/// The longest cell, in bytes, the reader looks at. No column allows more than 256 characters
/// (1024 bytes of UTF-8), so anything longer is refused before it is decoded, checked or quoted
/// in a message: a runaway cell (a pasted document, a broken quote swallowing the rest of the
/// file) costs one length check, not a multi-megabyte error message.
const MAX_CELL_BYTES: usize = 4096;

/// How much of a cell an error message or an invalid row's results line repeats.
const MAX_LABEL_CHARACTERS: usize = 64;

/// The byte stream under the CSV parser: hashed as it is read, buffered so the first line can be
/// looked at (and a `sep=` line skipped) before the parser sees it. Boxed so tests can read from
/// memory.
type InputStream = BufReader<HashingReader<Box<dyn Read + Send>>>;

/// Streams a refund file one row at a time. See the module documentation.
pub struct InputReader {
    path: PathBuf,
    reader: csv::Reader<InputStream>,
    columns: ColumnMap,
    unknown_columns: Vec<String>,
    record: csv::ByteRecord,
    options: ReadOptions,
    /// Records read so far; the next row number is this + 2 (the header is row 1).
    records_read: u64,
    /// The header's digest (see [`InputSnapshot`]).
    header_digest: u64,
    /// What happens to each row's digest.
    digests: Digests,
}

impl InputReader {
    /// Opens `path`, reads and checks the header. [`InputReader::finish`] gives the file's SHA-256.
    pub fn open(path: &Path, options: ReadOptions) -> Result<InputReader, InputError> {
        InputReader::open_with(path, options, true)
    }

    /// Like [`InputReader::open`], without hashing the file: for passes that do not need the
    /// digest (SHA-256 of every byte was about a tenth of each pass). `finish` then fails.
    pub fn open_unhashed(path: &Path, options: ReadOptions) -> Result<InputReader, InputError> {
        InputReader::open_with(path, options, false)
    }

    fn open_with(path: &Path, options: ReadOptions, hash: bool) -> Result<InputReader, InputError> {
        let file = File::open(path).map_err(|source| InputError::Io {
            path: path.to_owned(),
            source,
        })?;
        InputReader::from_reader(path, Box::new(file), options, hash)
    }

    /// Reads a file's bytes from `source`, hashing them when `hash`; `path` is only used in
    /// messages.
    pub(crate) fn from_reader(
        path: &Path,
        source: Box<dyn Read + Send>,
        options: ReadOptions,
        hash: bool,
    ) -> Result<InputReader, InputError> {
        let header_error = |message: String| InputError::Header {
            path: path.to_owned(),
            message,
        };
        let mut stream = BufReader::new(HashingReader {
            inner: source,
            hasher: hash.then(Sha256::new),
        });
        let delimiter = options.delimiter.unwrap_or(b',');
        skip_separator_line(&mut stream, delimiter)
            .map_err(|source| InputError::Io {
                path: path.to_owned(),
                source,
            })?
            .map_err(header_error)?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .delimiter(delimiter)
            .from_reader(stream);
        let header = reader.byte_headers().map_err(|error| csv_error(path, &error))?.clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(header_error(
                "the file is empty (no header row, only blank lines or nothing at all): it needs a header row \
                 naming the columns (see the README)"
                    .into(),
            ));
        }
        let mut positions = vec![None; rules::COLUMN_RULES.len()];
        let mut custom = Vec::new();
        let mut unknown_columns = Vec::new();
        for (index, raw) in header.iter().enumerate() {
            let raw = std::str::from_utf8(raw).map_err(|_| {
                header_error("row 1 (the header) is not valid UTF-8: re-export the file as \"CSV UTF-8\"".into())
            })?;
            let raw = raw.trim_start_matches('\u{feff}').trim();
            let name = raw.to_ascii_lowercase();
            if let Some(custom_name) = name.strip_prefix("custom.") {
                // Keep the name's case: Payroc matches custom field names case-sensitively.
                let original = raw[raw.len() - custom_name.len()..].to_owned();
                custom.push((original, index));
                continue;
            }
            match rules::position(&name) {
                Some(known) if positions[known].is_some() => {
                    return Err(header_error(format!(
                        "row 1, column {name}: appears twice in the header"
                    )));
                }
                Some(known) => positions[known] = Some(index),
                None => unknown_columns.push(raw.to_owned()),
            }
        }
        let columns = ColumnMap {
            positions,
            custom,
            width: header.len(),
        };
        if header.len() == 1 && options.delimiter.is_none() {
            let only = &header[0];
            if only.contains(&b';') {
                return Err(header_error(
                    "the header is one column separated by ';': this looks like a semicolon-delimited export. \
                     Re-export as comma-separated CSV, or pass --delimiter ';'"
                        .into(),
                ));
            }
            if only.contains(&b'\t') {
                return Err(header_error(
                    "the header is one column separated by tabs: this looks like a tab-delimited export. \
                     Re-export as comma-separated CSV, or pass --delimiter tab"
                        .into(),
                ));
            }
        }
        let required: &[&str] = &["processing_terminal_id", "order_id", "amount", "currency"];
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|column| columns.position(column).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(header_error(format!(
                "row 1 (the header) lacks the column(s) {}; every file needs processing_terminal_id, order_id, amount and currency",
                missing.join(", ")
            )));
        }
        if columns.position("method").is_none() && options.default_method.is_none() {
            return Err(header_error(
                "the file has no method column: add one (card or bank per row) or pass --method card|bank".into(),
            ));
        }
        Ok(InputReader {
            path: path.to_owned(),
            reader,
            columns,
            unknown_columns,
            record: csv::ByteRecord::new(),
            options,
            records_read: 0,
            header_digest: record_digest(&header),
            digests: Digests::Off,
        })
    }

    /// Opens `path` for a pass after validation: every row is compared with what the validation
    /// pass read (`snapshot`), and a row that differs — or the header, or the end of the file
    /// coming early — is reported as [`InputError::Changed`] instead of being read, so no row is
    /// ever used that was not validated.
    pub fn open_verified(
        path: &Path,
        options: ReadOptions,
        snapshot: std::sync::Arc<InputSnapshot>,
    ) -> Result<InputReader, InputError> {
        let mut reader = InputReader::open_with(path, options, false)?;
        if reader.header_digest != snapshot.header {
            return Err(InputError::Changed {
                path: path.to_owned(),
                row: 1,
            });
        }
        reader.digests = Digests::Verify {
            snapshot,
            reported_short: false,
        };
        Ok(reader)
    }

    /// Keeps a digest of every row read from here on, for [`InputReader::snapshot`].
    pub fn keep_snapshot(&mut self) {
        self.digests = Digests::Keep(InputSnapshot {
            header: self.header_digest,
            rows: Vec::new(),
        });
    }

    /// What the rows read so far were (after [`InputReader::keep_snapshot`]).
    pub fn snapshot(&self) -> InputSnapshot {
        match &self.digests {
            Digests::Keep(snapshot) => snapshot.clone(),
            Digests::Off | Digests::Verify { .. } => InputSnapshot::default(),
        }
    }

    /// Header names the tool does not understand; the caller warns about them once.
    pub fn unknown_columns(&self) -> &[String] {
        &self.unknown_columns
    }

    /// Reads the next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> Option<Result<ParsedRow, InputError>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => match &mut self.digests {
                Digests::Verify {
                    snapshot,
                    reported_short,
                } if !*reported_short && self.records_read < snapshot.rows() => {
                    *reported_short = true;
                    Some(Err(InputError::Changed {
                        path: self.path.clone(),
                        row: self.records_read + 2,
                    }))
                }
                _ => None,
            },
            Ok(true) => {
                self.records_read += 1;
                let row = self.records_read + 1;
                match &mut self.digests {
                    Digests::Off => {}
                    Digests::Keep(snapshot) => snapshot.rows.push(record_digest(&self.record)),
                    Digests::Verify { snapshot, .. } => {
                        let index = usize::try_from(self.records_read - 1).unwrap_or(usize::MAX);
                        if snapshot.rows.get(index) != Some(&record_digest(&self.record)) {
                            return Some(Err(InputError::Changed {
                                path: self.path.clone(),
                                row,
                            }));
                        }
                    }
                }
                Some(Ok(rules::apply_column_rules(
                    &self.record,
                    row,
                    &self.columns,
                    self.options,
                )))
            }
            Err(error) => Some(Err(csv_error(&self.path, &error))),
        }
    }

    /// Reads to the end (if not there yet) and returns the SHA-256 of the whole file, hex.
    pub fn finish(mut self) -> Result<String, InputError> {
        let mut sink = Vec::new();
        self.reader
            .get_mut()
            .read_to_end(&mut sink)
            .map_err(|source| InputError::Io {
                path: self.path.clone(),
                source,
            })?;
        let Some(hasher) = self.reader.into_inner().into_inner().hasher else {
            return Err(InputError::Io {
                path: self.path,
                source: io::Error::other("the file was opened without hashing"),
            });
        };
        Ok(hex(&hasher.finalize()))
    }
}

/// Skips a first line `sep=X` (Excel's hint naming the delimiter, which Excel itself hides) when
/// `X` is the delimiter in use, so `--delimiter ';'` reads a file that starts `sep=;` as it is.
/// When `X` is another delimiter, the file cannot be read as asked: the message names the option
/// to pass. Row numbers are unchanged by the skip: the header is row 1, as a spreadsheet shows it.
///
/// Returns the outer `io::Error` when reading fails, the inner `Err` with a message when the line
/// names another delimiter.
fn skip_separator_line(stream: &mut InputStream, delimiter: u8) -> io::Result<Result<(), String>> {
    let buffer = stream.fill_buf()?;
    let bom = if buffer.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
    let line = &buffer[bom..];
    if !line.get(..4).is_some_and(|start| start.eq_ignore_ascii_case(b"sep=")) {
        return Ok(Ok(()));
    }
    let ending = match line.get(5..) {
        Some([b'\r', b'\n', ..]) => 2,
        Some([b'\n' | b'\r', ..]) => 1,
        Some([]) => 0,
        // `sep=` followed by more text is not the hint; leave it to the header checks.
        _ => return Ok(Ok(())),
    };
    let Some(&named) = line.get(4) else {
        return Ok(Ok(()));
    };
    if named != delimiter {
        let shown = if named == b'\t' {
            "tab".to_owned()
        } else {
            (named as char).escape_default().to_string()
        };
        let option = if named == b'\t' {
            "tab".to_owned()
        } else {
            format!("'{shown}'")
        };
        return Ok(Err(format!(
            "row 1 is \"sep={shown}\": the file says its fields are separated by {shown}, so pass --delimiter {option} \
             (the line is then skipped), or remove the line and re-export as comma-separated CSV"
        )));
    }
    let consumed = bom + 5 + ending;
    stream.consume(consumed);
    Ok(Ok(()))
}

fn csv_error(path: &Path, error: &csv::Error) -> InputError {
    let row = error.position().map(|position| position.record() + 1);
    let message = match (error.kind(), row) {
        (csv::ErrorKind::Io(io_error), _) => {
            return InputError::Io {
                path: path.to_owned(),
                source: io::Error::new(io_error.kind(), io_error.to_string()),
            };
        }
        (_, Some(row)) => format!("row {row}: the CSV is malformed ({error})"),
        (_, None) => format!("the CSV is malformed ({error})"),
    };
    InputError::Malformed {
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::rules::{aba_check_digit_valid, luhn_valid};
    use std::io::Write;

    use secrecy::ExposeSecret;

    fn read_all(content: &str, options: ReadOptions) -> Result<Vec<ParsedRow>, InputError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("write temp file");
        let mut reader = InputReader::open(file.path(), options)?;
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row() {
            rows.push(row?);
        }
        Ok(rows)
    }

    /// Both key derivations are frozen: fixed rows of every kind, in every environment, at
    /// generations 0 and 1, give these exact keys (computed independently, in Python, from the
    /// encoding in `refund::key`). A change that moves any of them would make Payroc see a new
    /// refund for a row it already refunded.
    #[test]
    fn golden_keys_for_fixed_rows() {
        let file = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,secure_token,account_number,routing_number,name_on_account,sec_code\n\
                    card,1234001,GK-CARD-KEYED,49.99,USD,golden,4539858876047062,1230,,,,,\n\
                    card,1234001,GK-CARD-TOKEN,12.00,EUR,golden,,,2967530000000010,,,,\n\
                    bank,1234001,GK-BANK-ACH,1200,JPY,,,,,1234567890,011000015,Grace Hopper,\n\
                    bank,1234001,GK-BANK-TOKEN,9.500,KWD,golden,,,2967530000000028,,,,web\n";
        let golden: [(&str, [(&str, &str); 3]); 4] = [
            (
                "GK-CARD-KEYED",
                [
                    (
                        "224316b4-c967-4e62-b86c-b154c1ae4a5a",
                        "37ed8eb1-a8a4-4109-9edf-3051720f03d9",
                    ),
                    (
                        "7cd157fc-7b11-4c54-a2c5-185e71c011b7",
                        "604884c7-924c-478a-8cbf-cad65cb1b275",
                    ),
                    (
                        "3c38017a-34d8-431f-ac1f-6ab7c63463c3",
                        "8986e9ed-4d47-46f5-b05e-1d8b706d585f",
                    ),
                ],
            ),
            (
                "GK-CARD-TOKEN",
                [
                    (
                        "4abfd045-901f-448b-9545-6f6750c3e8b9",
                        "c57b232c-9329-4c5e-be1e-d7fa71cb62f3",
                    ),
                    (
                        "e2858643-3fac-44b7-8a30-fa599fce2257",
                        "3025d58b-dbcd-4dc2-94ab-03bd7259a4e0",
                    ),
                    (
                        "06eba1a1-c602-463f-a1b0-822db13eb2af",
                        "d5b55b95-73bd-46b1-be1e-6a13c5390aef",
                    ),
                ],
            ),
            (
                "GK-BANK-ACH",
                [
                    (
                        "000eaef5-110f-4208-b5f0-e3b12269cd77",
                        "83e816ca-1364-4271-86b8-44a71889028e",
                    ),
                    (
                        "3ab53b51-3791-4e92-a650-58f08849da38",
                        "cd1f10f8-b3ba-4e17-8473-18f66d42589a",
                    ),
                    (
                        "9dafc45a-c7c2-45c9-85b9-d0f7d6bf13aa",
                        "a45a4c08-fff6-4b1c-bfa4-f95e20ef129c",
                    ),
                ],
            ),
            (
                "GK-BANK-TOKEN",
                [
                    (
                        "2fdcf915-4d24-4b09-a1b3-da1401ca7dec",
                        "f6180098-ea97-433d-bee3-fb47dcea1693",
                    ),
                    (
                        "ef5c524a-a544-4a1e-8e9f-2e07b8e409d5",
                        "1dbbe576-b49e-46bf-89ab-3d5c6c4f2346",
                    ),
                    (
                        "088f5ace-446f-4221-9a3f-6a3fbc44fda7",
                        "105dfb37-7702-4ec3-b049-2dbb1d679400",
                    ),
                ],
            ),
        ];
        let rows = read_all(file, ReadOptions::default()).expect("read");
        assert_eq!(rows.len(), golden.len());
        for (parsed, (order_id, by_environment)) in rows.iter().zip(golden) {
            let ParsedRow::Valid(row) = parsed else {
                panic!("{order_id} is valid: {:?}", problems(parsed))
            };
            assert_eq!(row.order_id, order_id);
            for (environment, (generation_0, generation_1)) in
                ["sandbox", "uat", "production"].into_iter().zip(by_environment)
            {
                let identity = crate::refund::key::Identity::of_row(row, environment);
                for (generation, expected) in [(0, generation_0), (1, generation_1)] {
                    assert_eq!(
                        crate::refund::key::legacy_v1_key(&identity, "default", row.method.as_str(), generation)
                            .to_string(),
                        expected,
                        "{order_id} {environment} generation {generation} (version 1)"
                    );
                }
            }
        }
        for (parsed, (order_id, by_environment)) in rows.iter().zip(GOLDEN_V2) {
            let ParsedRow::Valid(row) = parsed else {
                panic!("{order_id} is valid: {:?}", problems(parsed))
            };
            for (environment, (generation_0, generation_1)) in
                ["sandbox", "uat", "production"].into_iter().zip(by_environment)
            {
                let identity = crate::refund::key::Identity::of_row(row, environment);
                assert_eq!(
                    identity.key(0).to_string(),
                    generation_0,
                    "{order_id} {environment} generation 0"
                );
                assert_eq!(
                    identity.key(1).to_string(),
                    generation_1,
                    "{order_id} {environment} generation 1"
                );
            }
        }
    }

    /// Version-2 keys of the same rows: (environment, terminal, order id, generation) only, so
    /// the card and bank rows' keys depend on nothing but their order (computed in Python).
    const GOLDEN_V2: [(&str, [(&str, &str); 3]); 4] = [
        (
            "GK-CARD-KEYED",
            [
                (
                    "bc8e8db0-7500-4ca9-8f2d-ca88ee45bb65",
                    "bcca712e-3b46-47f9-9e7b-be23234d3d35",
                ),
                (
                    "821c670b-a15a-481f-9312-d828ef931bf4",
                    "d0f0460a-3d3d-4c9c-9db8-536083047270",
                ),
                (
                    "545cffeb-409b-418f-9301-3221b7d1407a",
                    "8a63fe40-a249-4836-b25e-e27033273d0e",
                ),
            ],
        ),
        (
            "GK-CARD-TOKEN",
            [
                (
                    "df642b53-3966-4930-acb3-6969557ec7a5",
                    "42270185-34ed-4020-a395-0eaf51e9a159",
                ),
                (
                    "d5dfc607-ee28-4b25-804e-9f4d32b6c336",
                    "58529302-5347-4d5d-9949-16e973a6573f",
                ),
                (
                    "578f90ad-4c69-4f05-a650-01fa91a10711",
                    "958f80e2-4be4-4a9a-946e-e310b88f38cf",
                ),
            ],
        ),
        (
            "GK-BANK-ACH",
            [
                (
                    "f31bbbe1-f89d-47d6-abec-79c7a487090c",
                    "257f0ffb-a589-429a-b27a-887ba9085fbc",
                ),
                (
                    "82d7605e-a6aa-4342-ac2a-69fd84620e16",
                    "b2f4a183-bcee-4415-b817-396bd816afbc",
                ),
                (
                    "2eeafa81-4028-4ec8-9f6f-4ff3c289389b",
                    "0dc060bb-d0ad-44cf-bea4-177a5cf3706a",
                ),
            ],
        ),
        (
            "GK-BANK-TOKEN",
            [
                (
                    "19b2dc09-fb4e-4bd1-a29d-7559320f7d0b",
                    "b5736ebe-8e35-4f7b-8ee3-817d9af77da3",
                ),
                (
                    "4ccc8942-186e-418b-a535-c842899cf481",
                    "764f1b8e-d116-4819-b3ce-583520cfbac7",
                ),
                (
                    "2922a701-4b75-49ae-8115-150393d5a0de",
                    "53106139-5b93-4a84-bc73-d702adee3da2",
                ),
            ],
        ),
    ];

    fn problems(row: &ParsedRow) -> Vec<String> {
        match row {
            ParsedRow::Valid(_) => Vec::new(),
            ParsedRow::Invalid { problems, .. } => problems.iter().map(ToString::to_string).collect(),
        }
    }

    const CARD_HEADER: &str =
        "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date\n";

    #[test]
    fn the_optional_customer_billing_and_ip_columns_are_checked() {
        let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,account_number,routing_number,name_on_account,customer_reference_number,notification_language,billing_address1,billing_city,billing_state,billing_country,billing_postal_code,ip_address\n";
        let content = format!(
            "{header}card,1234001,C1,1.00,USD,r,4539858876047062,1230,,,,REF-1,fr,1 Main St,Chicago,IL,us,60601,192.0.2.1\n\
             card,1234001,C2,1.00,USD,r,4539858876047062,1230,,,,,de,1 Main St,,IL,USA,60601,300.1.1.1\n\
             bank,1234001,B1,1.00,USD,,,,1234567890,011000015,Grace,REF-2,en,,,,,,192.0.2.1\n"
        );
        let rows = read_all(&content, ReadOptions::default()).expect("read");
        let ParsedRow::Valid(row) = &rows[0] else {
            panic!("{:?}", problems(&rows[0]))
        };
        assert_eq!(row.customer.reference_number.as_deref(), Some("REF-1"));
        assert_eq!(row.customer.notification_language, Some("fr"));
        let address = row.customer.billing_address.as_ref().expect("an address");
        assert_eq!(
            (address.country.as_str(), address.postal_code.as_str()),
            ("US", "60601")
        );
        assert_eq!(
            row.ip_address.map(|address| address.0.to_string()).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            problems(&rows[1]),
            [
                "row 3, column notification_language: \"de\" is not allowed (en, fr)",
                "row 3, column billing_city: is required when any billing address column is given (address1, city, state, country, postal code: Payroc needs all of them)",
                "row 3, column billing_country: \"USA\" is not a two-letter country code (ISO 3166-1, e.g. US)",
                "row 3, column ip_address: \"300.1.1.1\" is not an IPv4 or IPv6 address",
            ]
        );
        let bank = problems(&rows[2]);
        assert!(
            bank.iter()
                .any(|problem| problem.contains("customer_reference_number: is not used for bank")),
            "{bank:?}"
        );
        assert!(
            bank.iter()
                .any(|problem| problem.contains("ip_address: is not used for bank")),
            "{bank:?}"
        );
    }

    #[test]
    fn a_card_row_with_bom_crlf_and_odd_header_case_is_valid() {
        let content = "\u{feff}Method , PROCESSING_TERMINAL_ID,Order_Id,amount,currency,description,card_number,expiry_date\r\ncard,1234001,R1,49.99,usd,Refund,4539 8588 7604 7062,12/30\r\n".to_owned();
        let rows = read_all(&content, ReadOptions::default()).unwrap();
        let ParsedRow::Valid(row) = &rows[0] else {
            panic!("{:?}", problems(&rows[0]))
        };
        assert_eq!(row.amount_minor, 4999);
        assert_eq!(row.currency.code(), "USD");
        assert_eq!(row.row, 2);
        assert_eq!(row.payee.masked(), "453985******7062");
        let Payee::KeyedCard {
            expiry_date,
            card_number,
            ..
        } = &row.payee
        else {
            panic!()
        };
        assert_eq!(expiry_date, "1230");
        assert_eq!(card_number.expose_secret(), "4539858876047062");
        // Debug output of a row never shows the number.
        assert!(!format!("{row:?}").contains("4539858876047062"));
    }

    #[test]
    fn every_problem_in_a_row_is_named_by_row_and_column() {
        let content = format!("{CARD_HEADER}card,12,R1,49.999,USD,,4539858876047063,13/30\n");
        let rows = read_all(&content, ReadOptions::default()).unwrap();
        assert_eq!(
            problems(&rows[0]),
            vec![
                "row 2, column processing_terminal_id: is 2 characters long (4–50 allowed)",
                "row 2, column amount: \"49.999\" has 3 decimal places but USD allows 2",
                "row 2, column description: is required (1–256 characters for a card refund)",
                "row 2, column card_number: fails the Luhn check digit: it is mistyped",
                "row 2, column expiry_date: \"13/30\" is not a card expiry (MMYY or MM/YY, month 01–12)",
            ]
        );
    }

    #[test]
    fn bank_rows_need_a_complete_account_and_refuse_card_columns() {
        let header = "method,processing_terminal_id,order_id,amount,currency,account_number,routing_number,name_on_account,channel\n";
        let content = format!(
            "{header}bank,1234001,B1,10,USD,123456789,011000015,Sarah,\nbank,1234001,B2,10,USD,12a,123456789,,pos\n"
        );
        let rows = read_all(&content, ReadOptions::default()).unwrap();
        let ParsedRow::Valid(row) = &rows[0] else {
            panic!("{:?}", problems(&rows[0]))
        };
        assert_eq!(row.description, "");
        assert_eq!(row.payee.masked(), "ach ****6789");
        assert_eq!(
            problems(&rows[1]),
            vec![
                "row 3, column channel: is not used for bank refunds (leave it empty)",
                "row 3, column account_number: must be 4–17 digits",
                "row 3, column routing_number: fails the ABA check digit: it is mistyped",
                "row 3, column name_on_account: is required (1–50 characters)",
            ]
        );
    }

    #[test]
    fn a_missing_method_column_needs_the_option() {
        let content = "processing_terminal_id,order_id,amount,currency,secure_token,sec_code\n1234001,B1,10,USD,296753123456,web\n";
        let error = read_all(content, ReadOptions::default()).unwrap_err();
        assert!(error.to_string().contains("--method"), "{error}");
        let rows = read_all(
            content,
            ReadOptions {
                default_method: Some(Method::Bank),
                ..ReadOptions::default()
            },
        )
        .unwrap();
        assert!(
            matches!(&rows[0], ParsedRow::Valid(row) if row.method == Method::Bank),
            "{:?}",
            problems(&rows[0])
        );
    }

    #[test]
    fn a_semicolon_export_is_detected() {
        let content = "method;processing_terminal_id;order_id;amount;currency\ncard;1234001;R1;1;USD\n";
        let error = read_all(content, ReadOptions::default()).unwrap_err();
        assert!(error.to_string().contains("--delimiter"), "{error}");
    }

    #[test]
    fn rows_with_the_wrong_number_of_fields_are_reported() {
        let content = format!("{CARD_HEADER}card,1234001,R1,49.99,USD,Refund,4539858876047062\n");
        let rows = read_all(&content, ReadOptions::default()).unwrap();
        assert!(problems(&rows[0])[0].starts_with("row 2: has 7 fields but the header has 8"));
    }

    #[test]
    fn a_card_number_in_any_other_column_is_refused_however_it_is_written() {
        let header = "method,processing_terminal_id,order_id,amount,currency,description,card_number,expiry_date,operator,customer_first_name,channel,custom.note\n";
        let content = format!(
            "{header}card,1234001,4539 8588 7604 7062,1.00,USD,r,4111111111111111,0929,,,,\n\
             card,4539-8588-7604-7062,C2,1.00,USD,r,4111111111111111,0929,,,,\n\
             card,1234001,C3,1.00,USD,refund 4539.8588.7604.7062 ok,4111111111111111,0929,,,,\n\
             card,1234001,C4,1.00,USD,r,4111111111111111,0929,4539/8588/7604/7062,45398588 76047062,,\n\
             card,1234001,C5,1.00,USD,r,4111111111111111,0929,,,4539 8588 7604 7062,see 4539-8588-7604-7062\n\
             card,1234001,C6,1.00,USD,stay 2024-07-02 - 2024-07-00,4111111111111111,0929,,,,I20261123-0006\n"
        );
        let rows = read_all(&content, ReadOptions::default()).expect("read");
        let refused =
            "holds a card number in the wrong place ([redacted …7062]: 12–19 digits that pass the card check digit";
        let expected: [&[&str]; 5] = [
            &["row 2, column order_id"],
            &["row 3, column processing_terminal_id"],
            &["row 4, column description"],
            &["row 5, column operator", "row 5, column customer_first_name"],
            &["row 6, column channel", "row 6, column custom.note"],
        ];
        for (parsed, columns) in rows.iter().zip(expected) {
            let found = problems(parsed);
            assert_eq!(
                found.len(),
                columns.len(),
                "one problem per cell, nothing else: {found:?}"
            );
            for (problem, column) in found.iter().zip(columns) {
                assert!(problem.starts_with(&format!("{column}: {refused}")), "{problem}");
                let digits: String = problem.chars().filter(char::is_ascii_digit).collect();
                assert!(!digits.contains("45398588"), "{problem}");
            }
        }
        // Dates, date ranges and ids whose digits pass the check by chance are not card numbers.
        assert!(matches!(&rows[5], ParsedRow::Valid(_)), "{:?}", problems(&rows[5]));
    }

    #[test]
    fn ids_with_invisible_or_look_alike_characters_are_refused_by_name() {
        let content = format!(
            "{CARD_HEADER}card,1234001,VAR\u{200B}-1,1.00,USD,r,4111111111111111,0929\n\
             card,1234001,VAR\u{2010}1,1.00,USD,r,4111111111111111,0929\n\
             card,1234\u{00A0}001,VAR-3,1.00,USD,r,4111111111111111,0929\n\
             card,1234001,\u{202E}VAR-4,1.00,USD,r,4111111111111111,0929\n\
             card,1234001,VAR\u{FF0D}5\u{FEFF},1.00,USD,r,4111111111111111,0929\n\
             card,1234001, VAR-6\u{00A0},1.00,USD,Café ✓,4111111111111111,0929\n"
        );
        let rows = read_all(&content, ReadOptions::default()).expect("read");
        let rule = "; ids must not hold invisible or look-alike characters";
        let expected = [
            format!("row 2, column order_id: contains U+200B ZERO WIDTH SPACE at position 4{rule}"),
            format!("row 3, column order_id: contains U+2010 HYPHEN at position 4{rule}"),
            format!("row 4, column processing_terminal_id: contains U+00A0 NO-BREAK SPACE at position 5{rule}"),
            format!("row 5, column order_id: contains U+202E RIGHT-TO-LEFT OVERRIDE at position 1{rule}"),
            format!("row 6, column order_id: contains U+FF0D FULLWIDTH HYPHEN-MINUS at position 4{rule}"),
        ];
        for (parsed, expected) in rows.iter().zip(&expected) {
            assert_eq!(problems(parsed), [expected.as_str()]);
        }
        // Spaces around a cell, no-break ones included, are trimmed as before; other columns may
        // hold any printable character.
        let ParsedRow::Valid(row) = &rows[5] else {
            panic!("{:?}", problems(&rows[5]))
        };
        assert_eq!(row.order_id, "VAR-6");
    }

    #[test]
    fn check_digits() {
        assert!(luhn_valid("4539858876047062"));
        assert!(luhn_valid("4000000000000002"));
        assert!(!luhn_valid("4539858876047063"));
        assert!(aba_check_digit_valid("011000015"));
        assert!(!aba_check_digit_valid("123456789"));
    }

    #[test]
    fn the_hash_covers_the_whole_file() {
        let content = format!("{CARD_HEADER}card,1234001,R1,49.99,USD,Refund,4539858876047062,1230\n");
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        let reader = InputReader::open(file.path(), ReadOptions::default()).unwrap();
        let expected = hex(&Sha256::digest(content.as_bytes()));
        assert_eq!(reader.finish().unwrap(), expected);
        let unhashed = InputReader::open_unhashed(file.path(), ReadOptions::default()).unwrap();
        assert!(unhashed.finish().is_err());
        assert_eq!(hex(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
    }
}
