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
mod payee_rules;
mod row_check;
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

    /// Like [`InputReader::open`], without hashing the file (as every pass after validation
    /// reads it, see [`InputReader::open_verified`]). `finish` then fails.
    #[cfg(test)]
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
mod tests;
