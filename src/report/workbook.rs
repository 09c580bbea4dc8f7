//! The workbook beside the results CSV (`--workbook PATH`, and `report FILE --workbook PATH`): the
//! same lines as the CSV, for the people who open them in a spreadsheet.
//!
//! It is fed line by line from the very pass that writes the CSV ([`LineSink`]), so the two can
//! never disagree, and it is saved only after the CSV is in place: the CSV is the record, the
//! workbook a view of it. Three sheets:
//!
//! - *Results*: every line, typed — amounts are numbers in their currency's format, codes and ids
//!   are text (so `000001` keeps its zeros), the header frozen, with filters.
//! - *Summary*: the file, environment, ledger, batch and time; rows and amounts by status and
//!   currency; a chart of the outcomes by currency.
//! - *Needs a person*: every row that is not `succeeded`, with what to do next.
//!
//! Amounts: the tool holds money as integer minor units, but a spreadsheet number is an IEEE
//! double. The value is made once, here, by dividing the minor units by the currency's power of
//! ten; every amount below 2^53 minor units (90 trillion dollars) is then the nearest double to
//! the exact decimal, which a spreadsheet shows as written. The text of the CSV stays exact.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rust_xlsxwriter::{Chart, ChartType, Format, Workbook, Worksheet, XlsxError};

use crate::files;
use crate::refund::money::{Currency, format_amount};
use crate::refund::{Environment, RefundStatus};
use crate::report::next_steps;
use crate::report::results::{LineSink, ResultLine, ResultsError, Tally};

/// The *Results* sheet's index: the first sheet added, so the one a spreadsheet opens on.
const RESULTS_SHEET: usize = 0;

/// Rows a worksheet holds, header included (Excel's limit).
const SHEET_ROWS: u32 = 1_048_576;

/// Errors writing the workbook.
#[derive(Debug, thiserror::Error)]
pub enum WorkbookError {
    /// The spreadsheet library refused a cell, a sheet or the file.
    #[error("cannot write the workbook {path}: {source}")]
    Xlsx {
        /// The workbook path.
        path: PathBuf,
        /// Why.
        source: XlsxError,
    },
    /// Writing the file failed.
    #[error("cannot write the workbook {path}")]
    Io {
        /// The workbook path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// More rows than a worksheet holds.
    #[error(
        "cannot write the workbook {path}: the file has {rows} rows and a worksheet holds {max}; the results CSV has them all"
    )]
    TooManyRows {
        /// The workbook path.
        path: PathBuf,
        /// Rows in the results.
        rows: u64,
        /// Rows a sheet holds below its header.
        max: u32,
    },
}

/// What the *Summary* sheet says of where the lines come from.
#[derive(Debug, Clone)]
pub struct WorkbookFacts {
    /// The input file, as given.
    pub input: String,
    /// Where the refunds went.
    pub environment: Environment,
    /// The ledger file.
    pub ledger: String,
    /// The batch or batches the lines come from, in words.
    pub batch: String,
    /// When the workbook was written (Payroc's time, as the ledger keeps it).
    pub written_at: String,
}

/// How a *Results* column is written.
#[derive(Clone, Copy)]
enum Kind {
    /// Text, whatever it looks like (ids, codes, keys).
    Text,
    /// A whole number.
    Count,
    /// An amount in the line's currency.
    Amount,
    /// Payroc's authorized amount in the line's currency.
    Authorized,
}

/// The *Results* columns: the CSV's, in its order (a test holds them to the CSV header), each
/// with how its cells are typed.
const COLUMNS: [(&str, Kind, f64); 21] = [
    ("row", Kind::Count, 7.0),
    ("method", Kind::Text, 8.0),
    ("processing_terminal_id", Kind::Text, 14.0),
    ("order_id", Kind::Text, 18.0),
    ("amount", Kind::Amount, 16.0),
    ("currency", Kind::Text, 9.0),
    ("status", Kind::Text, 11.0),
    ("refund_id", Kind::Text, 14.0),
    ("payroc_status", Kind::Text, 12.0),
    ("response_code", Kind::Text, 9.0),
    ("response_message", Kind::Text, 24.0),
    ("approval_code", Kind::Text, 10.0),
    ("processor_response_code", Kind::Text, 10.0),
    ("authorized_amount", Kind::Authorized, 16.0),
    ("http_status", Kind::Count, 8.0),
    ("error", Kind::Text, 50.0),
    ("notes", Kind::Text, 30.0),
    ("idempotency_key", Kind::Text, 38.0),
    ("attempts", Kind::Count, 8.0),
    ("payee", Kind::Text, 20.0),
    ("updated_at", Kind::Text, 24.0),
];

/// The text of a line's column, by the column's place in [`COLUMNS`].
fn text_of(line: &ResultLine, column: usize) -> &str {
    match column {
        1 => &line.method,
        2 => &line.processing_terminal_id,
        3 => &line.order_id,
        4 => &line.amount,
        5 => &line.currency,
        6 => line.status.as_str(),
        7 => &line.refund_id,
        8 => &line.payroc_status,
        9 => &line.response_code,
        10 => &line.response_message,
        11 => &line.approval_code,
        12 => &line.processor_response_code,
        13 => &line.authorized_amount,
        14 => &line.http_status,
        15 => &line.error,
        16 => &line.notes,
        17 => &line.idempotency_key,
        18 => &line.attempts,
        19 => &line.payee,
        20 => &line.updated_at,
        _ => "",
    }
}

/// The *Needs a person* columns: (header, column of [`COLUMNS`] it shows, or `None` for the
/// advice).
const NEEDS_A_PERSON: [(&str, Option<usize>, f64); 12] = [
    ("row", Some(0), 7.0),
    ("status", Some(6), 11.0),
    ("what to do next", None, 70.0),
    ("order_id", Some(3), 18.0),
    ("processing_terminal_id", Some(2), 14.0),
    ("method", Some(1), 8.0),
    ("amount", Some(4), 16.0),
    ("currency", Some(5), 9.0),
    ("error", Some(15), 50.0),
    ("payee", Some(19), 20.0),
    ("refund_id", Some(7), 14.0),
    ("idempotency_key", Some(17), 38.0),
];

/// Builds the workbook as the results lines go by; [`WorkbookBuilder::save`] writes it.
pub struct WorkbookBuilder {
    workbook: Workbook,
    path: PathBuf,
    /// Lines written below the header.
    lines: u64,
    /// Rows for *Needs a person*: a few, as a rule, so kept in memory.
    needs_a_person: Vec<ResultLine>,
    header: Format,
    text: Format,
    /// The number format of each currency's amounts, made once per currency.
    amount_formats: HashMap<&'static str, Format>,
    /// The first cell the library refused: reported when the workbook is saved.
    failed: Option<XlsxError>,
}

impl WorkbookBuilder {
    /// Starts a workbook for `path` (written only by [`WorkbookBuilder::save`]). Its *Results*
    /// sheet goes to a private temporary file row by row, so a large day costs little memory.
    pub fn new(path: &Path) -> Result<WorkbookBuilder, WorkbookError> {
        let xlsx_error = |source| WorkbookError::Xlsx {
            path: path.to_owned(),
            source,
        };
        let mut workbook = Workbook::new();
        let header = Format::new().set_bold().set_background_color("#DDE4EE");
        let text = Format::new().set_num_format("@");
        let sheet = workbook.add_worksheet_with_constant_memory().map_err(xlsx_error)?;
        sheet.set_name("Results").map_err(xlsx_error)?;
        for (column, (name, _, width)) in (0u16..).zip(COLUMNS) {
            sheet.set_column_width(column, width).map_err(xlsx_error)?;
            sheet
                .write_string_with_format(0, column, name, &header)
                .map_err(xlsx_error)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(xlsx_error)?;
        Ok(WorkbookBuilder {
            workbook,
            path: path.to_owned(),
            lines: 0,
            needs_a_person: Vec::new(),
            header,
            text,
            amount_formats: HashMap::new(),
            failed: None,
        })
    }

    /// Writes one line to *Results* (and keeps it for *Needs a person* unless it succeeded).
    fn write_line(&mut self, line: &ResultLine) -> Result<(), XlsxError> {
        self.lines += 1;
        let Ok(row) = u32::try_from(self.lines) else {
            return Ok(());
        };
        if row >= SHEET_ROWS {
            // Counted, not written: `save` refuses the workbook and says why.
            return Ok(());
        }
        let amount_format = line.known_currency.map(|currency| self.amount_format(currency));
        let sheet = self.workbook.worksheet_from_index(RESULTS_SHEET)?;
        for (column, index) in (0u16..).zip(0..COLUMNS.len()) {
            write_cell(sheet, (row, column), index, line, amount_format.as_ref(), &self.text)?;
        }
        if line.status != RefundStatus::Succeeded {
            self.needs_a_person.push(line.clone());
        }
        Ok(())
    }

    /// The number format of `currency`'s amounts: its decimal places, grouped, and its code.
    fn amount_format(&mut self, currency: Currency) -> Format {
        self.amount_formats
            .entry(currency.code())
            .or_insert_with(|| Format::new().set_num_format(amount_pattern(currency)))
            .clone()
    }

    /// Adds *Summary* and *Needs a person* and writes the workbook to its path, whole or not at
    /// all, as the umask allows (like the CSV: it holds masked payees only).
    pub fn save(mut self, tally: &Tally, facts: &WorkbookFacts) -> Result<(), WorkbookError> {
        let path = self.path.clone();
        let xlsx_error = |source| WorkbookError::Xlsx {
            path: path.clone(),
            source,
        };
        if let Some(source) = self.failed.take() {
            return Err(xlsx_error(source));
        }
        if self.lines >= u64::from(SHEET_ROWS) {
            return Err(WorkbookError::TooManyRows {
                path,
                rows: self.lines,
                max: SHEET_ROWS - 1,
            });
        }
        let last_row = u32::try_from(self.lines).unwrap_or(SHEET_ROWS - 1);
        let results = self.workbook.worksheet_from_index(RESULTS_SHEET).map_err(xlsx_error)?;
        results
            .autofilter(0, 0, last_row, (COLUMNS.len() - 1) as u16)
            .map_err(xlsx_error)?;
        let summary = self.summary_sheet(tally, facts).map_err(xlsx_error)?;
        self.workbook.push_worksheet(summary);
        let needs = self.needs_a_person_sheet().map_err(xlsx_error)?;
        self.workbook.push_worksheet(needs);
        let mut workbook = self.workbook;
        files::write_atomically(
            &path,
            |mut writer| {
                workbook.save_to_writer(&mut writer).map_err(xlsx_error)?;
                Ok(((), writer))
            },
            |source| WorkbookError::Io {
                path: path.clone(),
                source,
            },
        )
    }

    /// The *Summary* sheet: where the lines come from, rows and amounts by status and currency,
    /// and a chart of the outcomes by currency.
    fn summary_sheet(&mut self, tally: &Tally, facts: &WorkbookFacts) -> Result<Worksheet, XlsxError> {
        let mut sheet = Worksheet::new();
        sheet.set_name("Summary")?;
        let bold = Format::new().set_bold();
        sheet.set_column_width(0, 24)?;
        sheet.set_column_width(1, 14)?;
        sheet.set_column_width(2, 10)?;
        sheet.set_column_width(3, 20)?;
        sheet.write_string_with_format(0, 0, "Refund results", &bold.clone().set_font_size(14))?;
        let environment = if facts.environment == Environment::Sandbox {
            format!("{} (no money moves)", facts.environment)
        } else {
            facts.environment.to_string()
        };
        let about = [
            ("File", facts.input.as_str()),
            ("Environment", environment.as_str()),
            ("Ledger", facts.ledger.as_str()),
            ("Batch", facts.batch.as_str()),
            ("Written at (UTC)", facts.written_at.as_str()),
        ];
        let mut row = 2;
        for (label, value) in about {
            sheet.write_string_with_format(row, 0, label, &bold)?;
            sheet.write_string_with_format(row, 1, value, &self.text)?;
            row += 1;
        }
        sheet.write_string_with_format(row, 0, "Rows", &bold)?;
        sheet.write_number(row, 1, tally.total() as f64)?;
        row += 2;

        sheet.write_string_with_format(row, 0, "Rows and amounts by status and currency", &bold)?;
        row += 1;
        for (column, name) in (0u16..).zip(["status", "currency", "rows", "amount"]) {
            sheet.write_string_with_format(row, column, name, &self.header)?;
        }
        row += 1;
        for status in RefundStatus::ALL {
            let currencies: Vec<(Currency, u64)> = tally
                .rows_by_currency
                .iter()
                .filter(|((of, _), _)| *of == status)
                .map(|((_, currency), rows)| (*currency, *rows))
                .collect();
            for (currency, rows) in &currencies {
                sheet.write_string(row, 0, status.as_str())?;
                sheet.write_string_with_format(row, 1, currency.code(), &self.text)?;
                sheet.write_number(row, 2, *rows as f64)?;
                let minor = tally.amounts.get(&(status, *currency)).copied().unwrap_or(0);
                let format = self.amount_format(*currency);
                sheet.write_number_with_format(row, 3, major_value(minor, *currency), &format)?;
                row += 1;
            }
            let counted: u64 = currencies.iter().map(|(_, rows)| rows).sum();
            // Rows with no currency to count under: invalid rows whose currency was not read.
            let uncounted = tally.count(status).saturating_sub(counted);
            if uncounted > 0 {
                sheet.write_string(row, 0, status.as_str())?;
                sheet.write_string_with_format(row, 1, "(not read)", &self.text)?;
                sheet.write_number(row, 2, uncounted as f64)?;
                row += 1;
            }
        }
        sheet.write_string_with_format(row, 0, "all rows", &bold)?;
        sheet.write_number_with_format(row, 2, tally.total() as f64, &bold)?;
        row += 2;

        // The chart's data: rows by currency (down) and status (across).
        let currencies: BTreeSet<Currency> = tally.rows_by_currency.keys().map(|(_, currency)| *currency).collect();
        let statuses: Vec<RefundStatus> = RefundStatus::ALL
            .into_iter()
            .filter(|status| tally.rows_by_currency.keys().any(|(of, _)| of == status))
            .collect();
        if currencies.is_empty() {
            return Ok(sheet);
        }
        sheet.write_string_with_format(row, 0, "Rows by currency and outcome", &bold)?;
        row += 1;
        let grid_header = row;
        sheet.write_string_with_format(row, 0, "currency", &self.header)?;
        for (column, status) in (1u16..).zip(&statuses) {
            sheet.write_string_with_format(row, column, status.as_str(), &self.header)?;
        }
        for currency in &currencies {
            row += 1;
            sheet.write_string_with_format(row, 0, currency.code(), &self.text)?;
            for (column, status) in (1u16..).zip(&statuses) {
                let rows = tally.rows_by_currency.get(&(*status, *currency)).copied().unwrap_or(0);
                sheet.write_number(row, column, rows as f64)?;
            }
        }
        let grid_last = row;
        let mut chart = Chart::new(ChartType::ColumnStacked);
        chart.title().set_name("Outcomes by currency (rows)");
        chart.x_axis().set_name("currency");
        chart.y_axis().set_name("rows");
        for (column, _) in (1u16..).zip(&statuses) {
            chart
                .add_series()
                .set_name(("Summary", grid_header, column))
                .set_categories(("Summary", grid_header + 1, 0, grid_last, 0))
                .set_values(("Summary", grid_header + 1, column, grid_last, column));
        }
        sheet.insert_chart(1, 5, &chart)?;
        Ok(sheet)
    }

    /// The *Needs a person* sheet: every row not `succeeded`, with what to do next.
    fn needs_a_person_sheet(&mut self) -> Result<Worksheet, XlsxError> {
        let mut sheet = Worksheet::new();
        sheet.set_name("Needs a person")?;
        for (column, (name, _, width)) in (0u16..).zip(NEEDS_A_PERSON) {
            sheet.set_column_width(column, width)?;
            sheet.write_string_with_format(0, column, name, &self.header)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        if self.needs_a_person.is_empty() {
            sheet.write_string(1, 0, "Nobody: every row succeeded.")?;
            return Ok(sheet);
        }
        let lines = std::mem::take(&mut self.needs_a_person);
        let mut row = 0;
        for line in &lines {
            row += 1;
            let amount_format = line.known_currency.map(|currency| self.amount_format(currency));
            for (column, (_, shown, _)) in (0u16..).zip(NEEDS_A_PERSON) {
                match shown {
                    None => {
                        let advice = next_steps::for_row(line.status).unwrap_or_default();
                        sheet.write_string(row, column, advice)?;
                    }
                    Some(index) => {
                        write_cell(
                            &mut sheet,
                            (row, column),
                            index,
                            line,
                            amount_format.as_ref(),
                            &self.text,
                        )?;
                    }
                }
            }
        }
        sheet.autofilter(0, 0, row, (NEEDS_A_PERSON.len() - 1) as u16)?;
        Ok(sheet)
    }
}

/// Writes `line`'s cell of [`COLUMNS`]`[index]` at `at`, typed: numbers as numbers (amounts in
/// their currency's format), the rest as text. An amount the tool could not read (an invalid
/// row) stays the text that was typed.
fn write_cell(
    sheet: &mut Worksheet,
    (row, column): (u32, u16),
    index: usize,
    line: &ResultLine,
    amount_format: Option<&Format>,
    text_format: &Format,
) -> Result<(), XlsxError> {
    let text = text_of(line, index);
    let minor = match COLUMNS[index].1 {
        Kind::Text if text.is_empty() => return Ok(()),
        Kind::Text => {
            sheet.write_string_with_format(row, column, text, text_format)?;
            return Ok(());
        }
        Kind::Count if index == 0 => {
            sheet.write_number(row, column, line.row as f64)?;
            return Ok(());
        }
        Kind::Count => {
            match text.parse::<u32>() {
                Ok(number) => sheet.write_number(row, column, number)?,
                Err(_) if text.is_empty() => sheet,
                Err(_) => sheet.write_string_with_format(row, column, text, text_format)?,
            };
            return Ok(());
        }
        Kind::Amount => line.amount_minor,
        Kind::Authorized => line.authorized_minor,
    };
    match (minor, line.known_currency, amount_format) {
        (Some(minor), Some(currency), Some(format)) => {
            sheet.write_number_with_format(row, column, major_value(minor, currency), format)?;
        }
        _ if text.is_empty() => {}
        _ => {
            sheet.write_string_with_format(row, column, text, text_format)?;
        }
    }
    Ok(())
}

impl LineSink for WorkbookBuilder {
    fn line(&mut self, line: &ResultLine) -> Result<(), ResultsError> {
        if self.failed.is_none()
            && let Err(error) = self.write_line(line)
        {
            // Kept for `save` to report: the CSV, the record, is written all the same.
            self.failed = Some(error);
        }
        Ok(())
    }
}

/// Minor units as the number a spreadsheet shows: the exact decimal text, read as a double (the
/// nearest double to it, which is what a person typing it would get).
fn major_value(minor: i64, currency: Currency) -> f64 {
    format_amount(minor, currency).parse::<f64>().unwrap_or(minor as f64)
}

/// `#,##0.00 "USD"`: grouped, the currency's decimal places, and its code.
fn amount_pattern(currency: Currency) -> String {
    let places = currency.exponent() as usize;
    let fraction = if places == 0 {
        String::new()
    } else {
        format!(".{}", "0".repeat(places))
    };
    format!("#,##0{fraction} \"{}\"", currency.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_results_sheet_has_the_csv_columns_in_order() {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .serialize(ResultLine {
                row: 2,
                ..ResultLine::default()
            })
            .unwrap();
        let csv = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let columns: Vec<&str> = COLUMNS.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(columns, header);
        // Each column's text is the field of the same name.
        let line = ResultLine {
            row: 9,
            method: "method".into(),
            processing_terminal_id: "processing_terminal_id".into(),
            order_id: "order_id".into(),
            amount: "amount".into(),
            currency: "currency".into(),
            refund_id: "refund_id".into(),
            payroc_status: "payroc_status".into(),
            response_code: "response_code".into(),
            response_message: "response_message".into(),
            approval_code: "approval_code".into(),
            processor_response_code: "processor_response_code".into(),
            authorized_amount: "authorized_amount".into(),
            http_status: "http_status".into(),
            error: "error".into(),
            notes: "notes".into(),
            idempotency_key: "idempotency_key".into(),
            attempts: "attempts".into(),
            payee: "payee".into(),
            updated_at: "updated_at".into(),
            status: RefundStatus::Pending,
            ..ResultLine::default()
        };
        for (index, (name, _, _)) in COLUMNS.iter().enumerate().skip(1) {
            let expected = if *name == "status" { "pending" } else { name };
            assert_eq!(text_of(&line, index), expected);
        }
    }

    #[test]
    fn amounts_read_as_their_decimal_text() {
        let usd = Currency::from_code("USD").unwrap();
        let kwd = Currency::from_code("KWD").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(major_value(4999, usd), 49.99);
        assert_eq!(major_value(9500, kwd), 9.5);
        assert_eq!(major_value(1200, jpy), 1200.0);
        assert_eq!(major_value(216_683_992, usd), 2_166_839.92);
        assert_eq!(amount_pattern(usd), "#,##0.00 \"USD\"");
        assert_eq!(amount_pattern(jpy), "#,##0 \"JPY\"");
        assert_eq!(amount_pattern(kwd), "#,##0.000 \"KWD\"");
    }
}
