//! Exact money: currency codes, their exponents, and decimal amounts parsed into integer minor units.
//!
//! This is the first thing the input stage does with an `amount` cell, and the only place in the
//! program where a decimal string becomes a number. Payroc takes amounts as integers in the
//! currency's minor unit (cents for USD, yen for JPY, fils for KWD), so the tool never holds money
//! in a float: the string is read digit by digit into an `i64` with checked arithmetic, and any
//! shape that is not plainly a positive decimal with no more places than the currency has is
//! refused with a message that says what is allowed.

use std::fmt;

/// An ISO 4217 currency from Payroc's list, with the number of decimal places its minor unit has.
///
/// Kept as a `&'static str` code plus exponent so a row carries two words, not an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

impl Currency {
    /// Looks a code up in Payroc's currency list (case-insensitive, surrounding spaces ignored).
    ///
    /// Returns `None` for codes Payroc does not accept, so validation can refuse them before a
    /// request would come back 400.
    pub fn from_code(code: &str) -> Option<Currency> {
        // A binary search on the upper-cased code: the linear, case-insensitive scan of the
        // whole table was 15% of validation's instructions.
        let code = code.trim().as_bytes();
        let upper: [u8; 3] = [code.first()?, code.get(1)?, code.get(2)?].map(u8::to_ascii_uppercase);
        if code.len() != 3 {
            return None;
        }
        CURRENCIES
            .binary_search_by(|(known, _)| known.as_bytes().cmp(&upper[..]))
            .ok()
            .map(|index| {
                let (code, exponent) = CURRENCIES[index];
                Currency { code, exponent }
            })
    }

    /// The upper-case ISO code, as sent to Payroc.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// Decimal places of the minor unit: 2 for USD, 0 for JPY, 3 for KWD, 4 for CLF.
    pub fn exponent(self) -> u32 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code)
    }
}

/// Why an amount cell was refused. Each message says what is allowed, because the person reading
/// it is fixing a spreadsheet, not debugging a parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The cell was empty or only spaces.
    #[error("is empty (write the amount in major units, e.g. 49.99)")]
    Empty,
    /// A leading `+` or `-`: refunds are always positive and the sign is Payroc's business.
    #[error("{0:?} has a sign (write a positive amount without + or -)")]
    Signed(String),
    /// Anything but digits and one dot (or, with `--decimal-comma`, one comma): exponents,
    /// thousands separators that are not unambiguous, currency symbols. The hint says what the
    /// text would read as, where a common way of writing amounts explains it.
    #[error(
        "{amount:?} is not a plain decimal (digits with at most one '.', thousands separators only as 1,234.56, no symbols or exponents){hint}"
    )]
    NotDecimal {
        /// The cell as written.
        amount: String,
        /// `" — with --decimal-comma this reads 1234.56"`, or nothing.
        hint: String,
    },
    /// More decimal places than the currency's minor unit has.
    #[error("{amount:?} has {places} decimal places but {currency} allows {allowed}")]
    TooManyPlaces {
        /// The cell as written.
        amount: String,
        /// How many places it has.
        places: usize,
        /// The currency whose exponent was exceeded.
        currency: Currency,
        /// The currency's exponent.
        allowed: u32,
    },
    /// Zero: a refund of nothing is a mistake in the file.
    #[error("{0:?} is zero (a refund must be greater than 0)")]
    Zero(String),
    /// Larger than an `i64` of minor units can hold.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// More whole digits than any refund has: most likely a card or account number in the wrong
    /// column. The digits are not repeated, since they may be exactly that.
    #[error(
        "has {0} digits before the decimal point; more than {MAX_WHOLE_DIGITS} is not a plausible refund (is a card or account number in the amount column?)"
    )]
    Implausible(usize),
}

/// The most digits a refund's whole part may have: 99,999,999,999 in any currency. Card numbers
/// (12–19 digits) and long account numbers typed into the amount column are refused instead of
/// becoming a real, enormous refund — and their digits never reach the ledger as an amount.
pub const MAX_WHOLE_DIGITS: usize = 11;

/// Parses a decimal amount in major units into minor units of `currency`, exactly.
///
/// Accepts `49.99`, `49.9`, `49`, `0.50`, and surrounding spaces. Refuses signs, exponents,
/// thousands separators, a bare or trailing dot, more places than the currency has (even
/// trailing zeros: `1200.0` JPY is refused, because a file that writes decimals for a currency
/// without them was probably made for another currency), zero, and overflow.
pub fn parse_amount(text: &str, currency: Currency) -> Result<i64, AmountError> {
    parse_amount_written(text, currency, DecimalMark::Point)
}

/// Which character separates an amount's whole part from its fraction in a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecimalMark {
    /// `1234.56`, and `1,234.56` with thousands separators (the default).
    #[default]
    Point,
    /// `1234,56`, and `1.234,56` or `1 234,56` with thousands separators (`--decimal-comma`).
    Comma,
}

/// Parses an amount written with `mark` as its decimal separator. Thousands separators are taken
/// only where they cannot be misread: groups of exactly three digits after a first group of one
/// to three, written with the other mark (`,` for [`DecimalMark::Point`]; `.` or a space for
/// [`DecimalMark::Comma`]), and — with the point — only when a fraction follows, since `1,234`
/// alone means 1.234 to half the world. Everything else is as [`parse_amount`] says.
pub fn parse_amount_written(text: &str, currency: Currency, mark: DecimalMark) -> Result<i64, AmountError> {
    let trimmed = text.trim();
    match plain_form(trimmed, mark) {
        Some(plain) => parse_plain(trimmed, &plain, currency, mark),
        None => parse_plain(trimmed, trimmed, currency, mark),
    }
}

/// `trimmed` rewritten as digits with at most one `.`, when its thousands separators (and, with
/// the comma, its decimal mark) follow the unambiguous rule; `None` when there is nothing to
/// rewrite or it does not follow it.
fn plain_form(trimmed: &str, mark: DecimalMark) -> Option<String> {
    let (decimal, thousands): (char, &[char]) = match mark {
        DecimalMark::Point => ('.', &[',']),
        DecimalMark::Comma => (',', &['.', ' ', '\u{a0}', '\u{202f}']),
    };
    let (whole, fraction) = match trimmed.split_once(decimal) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (trimmed, None),
    };
    let groups: Vec<&str> = whole.split(|c| thousands.contains(&c)).collect();
    let grouped = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|group| group.len() == 3)
        && groups
            .iter()
            .all(|group| group.bytes().all(|byte| byte.is_ascii_digit()));
    if groups.len() > 1 && !grouped {
        return None;
    }
    if grouped && mark == DecimalMark::Point && fraction.is_none() {
        return None;
    }
    let whole = groups.concat();
    Some(match fraction {
        Some(fraction) => format!("{whole}.{fraction}"),
        None => whole,
    })
}

/// What `trimmed`, refused as written, would read as under a common convention: the hint of an
/// [`AmountError::NotDecimal`].
fn hint(trimmed: &str, mark: DecimalMark) -> String {
    let symbols: &[char] = &[
        '$', '€', '£', '¥', '₩', '₹', 'R', 'F', 'C', 'A', 'U', 'S', 'D', 'E', 'G', 'B', 'P',
    ];
    let bare = trimmed.trim_matches(|c: char| symbols.contains(&c) || c.is_whitespace());
    let other = match mark {
        DecimalMark::Point => DecimalMark::Comma,
        DecimalMark::Comma => DecimalMark::Point,
    };
    let option = match other {
        DecimalMark::Comma => "with --decimal-comma",
        DecimalMark::Point => "without --decimal-comma",
    };
    let readable = |text: &str, mark| {
        plain_form(text, mark)
            .filter(|plain| {
                plain.bytes().all(|byte| byte.is_ascii_digit() || byte == b'.') && plain.matches('.').count() <= 1
            })
            .filter(|plain| !plain.is_empty())
    };
    let symbol = if bare == trimmed {
        ""
    } else {
        " without the currency symbol or code (the currency column says it)"
    };
    match (readable(bare, mark), readable(bare, other)) {
        (Some(plain), _) if !symbol.is_empty() => format!(" —{symbol} this reads {plain}"),
        (_, Some(plain)) if symbol.is_empty() => format!(" — {option} this reads {plain}"),
        (_, Some(plain)) => format!(" —{symbol} and {option} this reads {plain}"),
        _ => String::new(),
    }
}

fn parse_plain(trimmed: &str, plain: &str, currency: Currency, mark: DecimalMark) -> Result<i64, AmountError> {
    let written = trimmed;
    let trimmed = plain;
    if trimmed.is_empty() {
        return Err(AmountError::Empty);
    }
    if trimmed.starts_with(['+', '-']) {
        return Err(AmountError::Signed(shown(written)));
    }
    let (whole, fraction) = match trimmed.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (trimmed, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|fraction| !all_digits(fraction)) {
        return Err(AmountError::NotDecimal {
            amount: shown(written),
            hint: hint(written, mark),
        });
    }
    let significant = whole.trim_start_matches('0').len();
    if significant > MAX_WHOLE_DIGITS {
        return Err(AmountError::Implausible(significant));
    }
    let fraction = fraction.unwrap_or("");
    let exponent = currency.exponent();
    if fraction.len() > exponent as usize {
        return Err(AmountError::TooManyPlaces {
            amount: shown(written),
            places: fraction.len(),
            currency,
            allowed: exponent,
        });
    }
    let too_large = || AmountError::TooLarge(shown(written));
    let mut minor: i64 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        minor = minor
            .checked_mul(10)
            .and_then(|value| value.checked_add(i64::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    // Pad the fraction out to the currency's exponent: "49.9" USD is 4990 cents.
    let missing_places = exponent - fraction.len() as u32;
    minor = minor.checked_mul(10_i64.pow(missing_places)).ok_or_else(too_large)?;
    if minor == 0 {
        return Err(AmountError::Zero(shown(written)));
    }
    Ok(minor)
}

/// The amount as an error repeats it: at most 40 characters, so a runaway cell does not make a
/// runaway message.
fn shown(text: &str) -> String {
    crate::refund::redaction::excerpt(text, 40)
}

/// Formats minor units back as a decimal in major units: `4999` USD is `49.99`, `1200` JPY `1200`.
///
/// Used for the results CSV and summaries, so what the user reads matches what they wrote.
pub fn format_amount(minor: i64, currency: Currency) -> String {
    let exponent = currency.exponent();
    if exponent == 0 {
        return minor.to_string();
    }
    let divisor = 10_i64.pow(exponent);
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let divisor = divisor.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        magnitude / divisor,
        magnitude % divisor,
        width = exponent as usize
    )
}

/// Minor units as people read them in messages: the whole part grouped by thousands with commas
/// (`2,166,839.92`). Files and machine output keep [`format_amount`]'s plain form, which every
/// reader parses the same way.
pub fn format_amount_grouped(minor: i64, currency: Currency) -> String {
    let plain = format_amount(minor, currency);
    let (sign, unsigned) = plain.strip_prefix('-').map_or(("", plain.as_str()), |rest| ("-", rest));
    let (whole, fraction) = unsigned
        .split_once('.')
        .map_or((unsigned, None), |(whole, fraction)| (whole, Some(fraction)));
    let mut grouped = String::with_capacity(plain.len() + whole.len() / 3);
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Payroc's currency list (its OpenAPI `currency` enum, 171 codes) with ISO 4217 exponents.
///
/// Exponents other than 2 are the ISO ones: 0 for BIF, BYR, CLP, DJF, GNF, ISK, JPY, KMF, KRW,
/// PYG, RWF, UGX, UYI, VND, VUV, XAF, XOF, XPF; 3 for BHD, IQD, JOD, KWD, LYD, OMR, TND; 4 for CLF.
#[rustfmt::skip]
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2),
    ("BYR", 0), ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHE", 2), ("CHF", 2), ("CHW", 2), ("CLF", 4),
    ("CLP", 0), ("CNY", 2), ("COP", 2), ("COU", 2), ("CRC", 2), ("CUC", 2), ("CUP", 2), ("CVE", 2),
    ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2),
    ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2),
    ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HRK", 2), ("HTG", 2), ("HUF", 2),
    ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0), ("KWD", 3),
    ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LTL", 2),
    ("LVL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2),
    ("MOP", 2), ("MRO", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MXV", 2),
    ("MYR", 2), ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2),
    ("OMR", 3), ("PAB", 2), ("PEN", 2), ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0),
    ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2),
    ("SDG", 2), ("SEK", 2), ("SGD", 2), ("SHP", 2), ("SLL", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2),
    ("STD", 2), ("STN", 2), ("SVC", 2), ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2),
    ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0),
    ("USD", 2), ("USN", 2), ("USS", 2), ("UYI", 0), ("UYU", 2), ("UZS", 2), ("VEF", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XOF", 0), ("XPF", 0), ("YER", 2),
    ("ZAR", 2), ("ZMW", 2), ("ZWL", 2),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::from_code(code).expect("test uses a known currency")
    }

    #[test]
    fn the_list_has_payrocs_171_codes_without_repeats() {
        assert_eq!(CURRENCIES.len(), 171);
        let mut codes: Vec<_> = CURRENCIES.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 171);
    }

    #[test]
    fn the_currency_table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, _) in CURRENCIES {
            assert_eq!(
                Currency::from_code(&code.to_ascii_lowercase()).map(Currency::code),
                Some(*code)
            );
        }
    }

    #[test]
    fn codes_are_case_insensitive_and_unknown_codes_are_refused() {
        assert_eq!(currency(" usd ").code(), "USD");
        assert!(Currency::from_code("XXX").is_none());
        assert!(Currency::from_code("").is_none());
        assert!(Currency::from_code("US").is_none());
    }

    #[test]
    fn every_exponent_converts_exactly() {
        // exponent 0
        assert_eq!(parse_amount("1200", currency("JPY")), Ok(1200));
        assert_eq!(parse_amount("7", currency("KRW")), Ok(7));
        // exponent 2
        assert_eq!(parse_amount("49.99", currency("USD")), Ok(4999));
        assert_eq!(parse_amount("49.9", currency("USD")), Ok(4990));
        assert_eq!(parse_amount("49", currency("USD")), Ok(4900));
        assert_eq!(parse_amount("0.01", currency("EUR")), Ok(1));
        assert_eq!(parse_amount(" 0.10 ", currency("GBP")), Ok(10));
        // exponent 3
        assert_eq!(parse_amount("1.234", currency("KWD")), Ok(1234));
        assert_eq!(parse_amount("1.2", currency("BHD")), Ok(1200));
        assert_eq!(parse_amount("5", currency("TND")), Ok(5000));
        // exponent 4
        assert_eq!(parse_amount("1.0001", currency("CLF")), Ok(10001));
        // values a float would round: 0.1 + 0.2 style and large cent values
        assert_eq!(parse_amount("0.29", currency("USD")), Ok(29));
        assert_eq!(parse_amount("1.15", currency("USD")), Ok(115));
        assert_eq!(parse_amount("12345678901.23", currency("USD")), Ok(1_234_567_890_123));
        assert_eq!(
            parse_amount("4.35", currency("USD")),
            Ok(435),
            "4.35 * 100 is 434.99999999999994 in f64"
        );
        assert_eq!(parse_amount("007.50", currency("USD")), Ok(750));
    }

    #[test]
    fn every_malformed_shape_is_refused_with_its_reason() {
        let usd = currency("USD");
        assert_eq!(parse_amount("", usd), Err(AmountError::Empty));
        assert_eq!(parse_amount("   ", usd), Err(AmountError::Empty));
        for signed in ["-1.00", "+1.00", "-0"] {
            assert!(
                matches!(parse_amount(signed, usd), Err(AmountError::Signed(_))),
                "{signed}"
            );
        }
        for shape in [
            "1,000", "1,00.00", "1 000", "1e3", "1E3", "$5", "5$", "1.2.3", ".5", "5.", ".", "12,50", "0x10", "١٢",
            "NaN", "inf", "1_000", "5 .00", "4.99USD",
        ] {
            assert!(
                matches!(parse_amount(shape, usd), Err(AmountError::NotDecimal { .. })),
                "{shape:?} gave {:?}",
                parse_amount(shape, usd)
            );
        }
        assert!(matches!(
            parse_amount("49.999", usd),
            Err(AmountError::TooManyPlaces {
                places: 3,
                allowed: 2,
                ..
            })
        ));
        assert!(matches!(
            parse_amount("1200.0", currency("JPY")),
            Err(AmountError::TooManyPlaces {
                places: 1,
                allowed: 0,
                ..
            })
        ));
        assert!(matches!(
            parse_amount("1.2345", currency("KWD")),
            Err(AmountError::TooManyPlaces { .. })
        ));
        for zero in ["0", "0.00", "000", "0.0"] {
            assert!(matches!(parse_amount(zero, usd), Err(AmountError::Zero(_))), "{zero}");
        }
        assert_eq!(
            parse_amount("92233720368547758.08", usd),
            Err(AmountError::Implausible(17))
        );
        assert_eq!(
            parse_amount("4539858876047062", currency("JPY")),
            Err(AmountError::Implausible(16)),
            "a card number in the amount column"
        );
        assert_eq!(parse_amount("99999999999.99", usd), Ok(9_999_999_999_999));
        assert_eq!(
            parse_amount("0000099999999999.9999", currency("CLF")),
            Ok(999_999_999_999_999)
        );
        assert!(!AmountError::Implausible(16).to_string().contains("4539"));
    }

    #[test]
    fn messages_say_what_is_allowed() {
        let error = parse_amount("1200.5", currency("JPY")).unwrap_err();
        assert_eq!(error.to_string(), "\"1200.5\" has 1 decimal places but JPY allows 0");
    }

    #[test]
    fn formatting_round_trips() {
        for (text, code) in [
            ("49.99", "USD"),
            ("1200", "JPY"),
            ("1.234", "KWD"),
            ("0.01", "USD"),
            ("1.0001", "CLF"),
        ] {
            let currency = currency(code);
            let minor = parse_amount(text, currency).unwrap();
            assert_eq!(format_amount(minor, currency), text);
        }
        assert_eq!(format_amount(-4999, currency("USD")), "-49.99");
    }

    #[test]
    fn amounts_as_people_type_them_are_read_only_when_unambiguous_and_otherwise_explained() {
        let usd = Currency::from_code("USD").expect("USD");
        let comma = |text| parse_amount_written(text, usd, DecimalMark::Comma);
        // Thousands separators with a decimal point, and everything the comma convention writes.
        assert_eq!(parse_amount("1,234.56", usd), Ok(123_456));
        assert_eq!(parse_amount("12,345,678.90", usd), Ok(1_234_567_890));
        assert_eq!(comma("1.234,56"), Ok(123_456));
        assert_eq!(comma("1 234,56"), Ok(123_456));
        assert_eq!(comma("12,5"), Ok(1250));
        assert_eq!(comma("1.234"), Ok(123_400));
        assert_eq!(comma("49"), Ok(4900));
        // Refused, saying what the text would read as.
        let hint = |result: Result<i64, AmountError>| match result {
            Err(AmountError::NotDecimal { hint, .. }) => hint,
            other => panic!("refused as not a decimal: {other:?}"),
        };
        assert_eq!(
            hint(parse_amount("1.234,56", usd)),
            " — with --decimal-comma this reads 1234.56"
        );
        assert_eq!(
            hint(parse_amount("12,00", usd)),
            " — with --decimal-comma this reads 12.00"
        );
        assert_eq!(hint(comma("1,234.56")), " — without --decimal-comma this reads 1234.56");
        assert_eq!(
            hint(parse_amount("$12.00", usd)),
            " — without the currency symbol or code (the currency column says it) this reads 12.00"
        );
        assert_eq!(
            hint(parse_amount("12,00 €", usd)),
            " — without the currency symbol or code (the currency column says it) and with --decimal-comma this reads 12.00"
        );
        // A group that is not three digits is not a thousands separator.
        assert!(comma("1.23,4").is_err());
        assert!(parse_amount("1,23.45", usd).is_err());
    }

    #[test]
    fn amounts_for_people_are_grouped_by_thousands() {
        let usd = Currency::from_code("USD").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(format_amount_grouped(216_683_992, usd), "2,166,839.92");
        assert_eq!(format_amount_grouped(99_999, usd), "999.99");
        assert_eq!(format_amount_grouped(100_000, usd), "1,000.00");
        assert_eq!(format_amount_grouped(5, usd), "0.05");
        assert_eq!(format_amount_grouped(-123_456_789, usd), "-1,234,567.89");
        assert_eq!(format_amount_grouped(1_200_000, jpy), "1,200,000");
        assert_eq!(format_amount_grouped(1_234_500, kwd), "1,234.500");
    }
}
