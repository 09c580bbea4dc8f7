//! Property tests (fuzzing) of the reader and the row checks, with `proptest`.
//!
//! Two kinds of generated files: arbitrary bytes (with or without a valid header in front), and
//! structured files of valid card, token and bank rows whose cells are mutated. The properties:
//! reading never panics; rows are numbered as records (header = 1); a row accepted as valid
//! holds exactly what its cells say — the amount equals an independent exact decimal parse
//! (string and `u128` arithmetic here, not [`crate::refund::money::parse_amount`]), a card number is
//! 12–19 digits and Luhn-valid, a routing number 9 digits with a valid ABA check digit, and so
//! on; and no problem message repeats a run of 9 or more digits (a number in the wrong column).
//!
//! Budget: proptest's default of 256 cases per property keeps `cargo test` to a second or two.
//! For a longer hunt, raise it: `PROPTEST_CASES=100000 cargo test --release --lib fuzz`. A
//! failure is shrunk to a small file and saved under `proptest-regressions/`; fix the bug and
//! add the shrunk case as a named regression test at the bottom of this file.

use proptest::prelude::*;
use secrecy::ExposeSecret;

use super::{InputReader, ParsedRow, Payee, ReadOptions, RefundRow};
use crate::refund::money::Currency;

const COLUMNS: [&str; 13] = [
    "method",
    "processing_terminal_id",
    "order_id",
    "amount",
    "currency",
    "description",
    "card_number",
    "expiry_date",
    "secure_token",
    "account_number",
    "routing_number",
    "name_on_account",
    "sec_code",
];
const AMOUNT: usize = 3;

/// Reads every row of `bytes`; `Err` when the file as a whole is refused.
fn read_bytes(bytes: Vec<u8>) -> Result<Vec<ParsedRow>, String> {
    let source = Box::new(std::io::Cursor::new(bytes));
    let mut reader = InputReader::from_reader(std::path::Path::new("fuzz.csv"), source, ReadOptions::default(), true)
        .map_err(|error| error.to_string())?;
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row() {
        rows.push(row.map_err(|error| error.to_string())?);
    }
    reader.finish().map_err(|error| error.to_string())?;
    Ok(rows)
}

/// The exact value of a plain decimal in minor units, computed without the crate's parser:
/// `None` for anything that is not digits with at most one `.`, more places than `exponent`,
/// zero, or more than `i64::MAX`.
fn expected_minor_units(cell: &str, exponent: usize) -> Option<i64> {
    let text = cell.trim();
    let (whole, fraction) = match text.find('.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, ""),
    };
    let digits_only = |part: &str| part.chars().all(|character| character.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || fraction.len() > exponent {
        return None;
    }
    if text.contains('.') && fraction.is_empty() {
        return None;
    }
    // The plausibility ceiling: at most 11 significant whole digits (see money::MAX_WHOLE_DIGITS).
    if whole.trim_start_matches('0').len() > 11 {
        return None;
    }
    let padded = format!("{whole}{fraction}{}", "0".repeat(exponent - fraction.len()));
    let significant = padded.trim_start_matches('0');
    if significant.is_empty() || significant.len() > 19 {
        return None;
    }
    let value: u128 = significant
        .bytes()
        .fold(0, |value, byte| value * 10 + u128::from(byte - b'0'));
    i64::try_from(value).ok()
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (position, character) in digits.chars().rev().enumerate() {
        let mut digit = character.to_digit(10).unwrap_or(100);
        if position % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    sum.is_multiple_of(10)
}

fn aba(digits: &str) -> bool {
    let values: Vec<u32> = digits.chars().filter_map(|character| character.to_digit(10)).collect();
    values.len() == 9
        && (3 * (values[0] + values[3] + values[6])
            + 7 * (values[1] + values[4] + values[7])
            + values[2]
            + values[5]
            + values[8])
            .is_multiple_of(10)
}

/// A run of 9 or more digits: the shortest number the redaction must hide (a routing number is
/// 9 digits, a card 12–19).
fn has_long_digit_run(text: &str) -> bool {
    let mut run = 0;
    for character in text.chars() {
        run = if character.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 9 {
            return true;
        }
    }
    false
}

/// Checks what a valid row may hold against the cells it was read from.
fn check_valid_row(row: &RefundRow, cells: &[String]) -> Result<(), TestCaseError> {
    let cell = |name: &str| {
        cells[COLUMNS.iter().position(|column| *column == name).unwrap_or(0)]
            .trim()
            .to_owned()
    };
    let exponent = Currency::from_code(&cell("currency")).map(Currency::exponent);
    prop_assert_eq!(Some(row.currency), Currency::from_code(&cell("currency")));
    prop_assert_eq!(
        expected_minor_units(&cell("amount"), exponent.unwrap_or(0) as usize),
        Some(row.amount_minor)
    );
    prop_assert!(row.amount_minor > 0);
    prop_assert_eq!(&row.order_id, &cell("order_id"));
    prop_assert!((1..=24).contains(&row.order_id.chars().count()));
    prop_assert!((4..=50).contains(&row.processing_terminal_id.chars().count()));
    prop_assert!(row.description.chars().count() <= 256);
    for text in [&row.order_id, &row.processing_terminal_id, &row.description] {
        prop_assert!(!text.chars().any(char::is_control), "control character in {:?}", text);
    }
    match &row.payee {
        Payee::KeyedCard {
            card_number,
            expiry_date,
            ..
        } => {
            let number = card_number.expose_secret();
            prop_assert!((12..=19).contains(&number.len()) && number.bytes().all(|byte| byte.is_ascii_digit()));
            prop_assert!(luhn(number), "{} fails Luhn", number);
            prop_assert_eq!(number, cell("card_number").replace(' ', ""));
            let month: u32 = expiry_date[..2].parse().unwrap_or(0);
            prop_assert!(expiry_date.len() == 4 && (1..=12).contains(&month));
        }
        Payee::SecureToken { token, .. } => {
            prop_assert!((12..=19).contains(&token.expose_secret().chars().count()));
        }
        Payee::Ach {
            account_number,
            routing_number,
            ..
        } => {
            let account = account_number.expose_secret();
            prop_assert!((4..=17).contains(&account.len()) && account.bytes().all(|byte| byte.is_ascii_digit()));
            prop_assert!(aba(routing_number.expose_secret()));
        }
    }
    Ok(())
}

/// Characters that make CSV and the checks interesting.
fn awkward_text(max: usize) -> impl Strategy<Value = String> {
    let characters = prop::sample::select(vec![
        '0', '1', '4', '9', '.', '.', '-', '+', ' ', ',', '"', '\n', '\r', '\0', '\t', 'e', 'é', '=', '/', 'a', ';',
        '€', '\u{feff}',
    ]);
    prop::collection::vec(characters, 0..max).prop_map(|characters| characters.into_iter().collect())
}

fn digits(range: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(0_u8..10, range).prop_map(|values| values.into_iter().map(|d| char::from(b'0' + d)).collect())
}

/// Mostly amount-shaped cells: digits, maybe a fraction, maybe spaces; sometimes anything.
fn amount_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (digits(1..22), prop::option::of(digits(0..6)), any::<bool>()).prop_map(|(whole, fraction, padded)| {
            let text = match fraction {
                Some(fraction) => format!("{whole}.{fraction}"),
                None => whole,
            };
            if padded { format!(" {text} ") } else { text }
        }),
        1 => awkward_text(12),
    ]
}

/// Card numbers of 10–21 digits, Luhn-fixed half the time, sometimes grouped with spaces.
fn card_cell() -> impl Strategy<Value = String> {
    (digits(9..21), any::<bool>(), any::<bool>()).prop_map(|(body, fix, grouped)| {
        let number = if fix {
            (0..10)
                .map(|check| format!("{body}{check}"))
                .find(|candidate| luhn(candidate))
                .unwrap_or(body)
        } else {
            format!("{body}7")
        };
        if grouped {
            number
                .as_bytes()
                .chunks(4)
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            number
        }
    })
}

/// One row: a valid base (card, token or bank), its amount, currency and maybe one other cell
/// replaced. Returns the cells and whether anything but the amount and currency was changed.
fn row_cells(index: usize) -> impl Strategy<Value = (Vec<String>, bool)> {
    let currency = prop::sample::select(vec!["USD", "JPY", "KWD", "CLF", "eur"]);
    let mutation = prop::option::of((
        0..COLUMNS.len(),
        prop_oneof![awkward_text(30), card_cell(), digits(0..20)],
    ));
    (0..3_u8, amount_cell(), currency, mutation).prop_map(move |(kind, amount, currency, mutation)| {
        let order = format!("O{index}");
        let base: [&str; 13] = match kind {
            0 => [
                "card",
                "1234001",
                &order,
                "",
                "",
                "Refund",
                "4111 1111 1111 1111",
                "09/29",
                "",
                "",
                "",
                "",
                "",
            ],
            1 => [
                "card",
                "1234001",
                &order,
                "",
                "",
                "Refund",
                "",
                "",
                "296753123456",
                "",
                "",
                "",
                "",
            ],
            _ => [
                "bank",
                "1234001",
                &order,
                "",
                "",
                "",
                "",
                "",
                "",
                "123456789",
                "011000015",
                "Sarah",
                "web",
            ],
        };
        let mut cells: Vec<String> = base.iter().map(|cell| (*cell).to_owned()).collect();
        cells[AMOUNT] = amount;
        cells[4] = currency.to_owned();
        let mutated = match mutation {
            Some((column, value)) if column != AMOUNT && column != 4 => {
                cells[column] = value;
                true
            }
            _ => false,
        };
        (cells, mutated)
    })
}

fn write_file(rows: &[(Vec<String>, bool)]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let ok = writer.write_record(COLUMNS).is_ok() && rows.iter().all(|(cells, _)| writer.write_record(cells).is_ok());
    assert!(ok, "writing to memory does not fail");
    writer.into_inner().unwrap_or_default()
}

proptest! {
    #[test]
    fn fuzz_arbitrary_bytes_never_panic(with_header in any::<bool>(), bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut file = Vec::new();
        if with_header {
            file.extend(COLUMNS.join(",").as_bytes());
            file.push(b'\n');
        }
        file.extend(bytes);
        if let Ok(rows) = read_bytes(file) {
            for (index, parsed) in rows.iter().enumerate() {
                let expected_row = index as u64 + 2;
                match parsed {
                    ParsedRow::Valid(row) => prop_assert_eq!(row.row, expected_row),
                    ParsedRow::Invalid { label, problems } => {
                        prop_assert_eq!(label.row, expected_row);
                        prop_assert!(!problems.is_empty());
                        for problem in problems {
                            let text = problem.to_string();
                            prop_assert!(text.starts_with(&format!("row {expected_row}")), "{}", text);
                            prop_assert!(!has_long_digit_run(&problem.message), "{}", text);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fuzz_valid_rows_hold_exactly_what_their_cells_say(
        rows in (1_usize..8).prop_flat_map(|count| (0..count).map(row_cells).collect::<Vec<_>>())
    ) {
        let parsed = read_bytes(write_file(&rows)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.len(), rows.len());
        for (index, ((cells, mutated), parsed)) in rows.iter().zip(&parsed).enumerate() {
            let exponent = Currency::from_code(&cells[4]).map_or(0, Currency::exponent) as usize;
            let amount_valid = expected_minor_units(&cells[AMOUNT], exponent).is_some();
            match parsed {
                ParsedRow::Valid(row) => {
                    prop_assert_eq!(row.row, index as u64 + 2);
                    check_valid_row(row, cells)?;
                }
                ParsedRow::Invalid { problems, .. } => {
                    // An unmutated base row is refused only for its amount.
                    prop_assert!(*mutated || !amount_valid, "row {} refused: {:?}", index + 2, problems);
                    for problem in problems {
                        prop_assert!(!has_long_digit_run(&problem.message), "{}", problem);
                    }
                }
            }
        }
    }
}

#[test]
fn the_independent_amount_parse_agrees_with_known_values() {
    assert_eq!(expected_minor_units("49.99", 2), Some(4999));
    assert_eq!(expected_minor_units(" 49.9 ", 2), Some(4990));
    assert_eq!(expected_minor_units("1200", 0), Some(1200));
    assert_eq!(expected_minor_units("1200.0", 0), None);
    assert_eq!(expected_minor_units("0.00", 2), None);
    assert_eq!(expected_minor_units("99999999999.99", 2), Some(9_999_999_999_999));
    assert_eq!(expected_minor_units("100000000000", 0), None, "12 whole digits");
    assert_eq!(expected_minor_units("000000000000000000000001", 2), Some(100));
    assert_eq!(expected_minor_units("1.", 2), None);
    assert_eq!(expected_minor_units(".5", 2), None);
    assert!(aba("011000015") && !aba("123456789"));
    assert!(luhn("4111111111111111") && !luhn("4111111111111112"));
}
