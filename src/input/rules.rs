//! The rules for each column of a row: one table ([`COLUMN_RULES`]) says which columns exist,
//! which method each belongs to and what a missing one is told; the reader reads a record's
//! cells through [`apply_column_rules`], which checks them against Payroc's limits and the
//! table, collecting every problem of the row (a person fixes a spreadsheet once, not once per
//! problem). The README's input table is checked against the table by a test.

use super::*;

/// How a column relates to a method's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Use {
    /// Every row of the method needs it.
    Required,
    /// It may be given.
    Optional,
    /// It is one of the ways to say where the money goes (card number or token, account or token).
    OneOf,
    /// It belongs to the other method: a cell there is an error, not silently dropped.
    Never,
}

/// One column: its header name, how card and bank rows use it, and what a missing required
/// cell is told is allowed.
#[derive(Clone, Copy, Debug)]
pub(super) struct ColumnRule {
    pub(super) name: &'static str,
    pub(super) card: Use,
    pub(super) bank: Use,
    pub(super) allowed: &'static str,
}

const fn column(name: &'static str, card: Use, bank: Use, allowed: &'static str) -> ColumnRule {
    ColumnRule {
        name,
        card,
        bank,
        allowed,
    }
}

/// Every column the tool understands (anything else but `custom.<name>` draws one warning).
pub(super) const COLUMN_RULES: &[ColumnRule] = &[
    column(
        "method",
        Use::Required,
        Use::Required,
        "card or bank, or --method for the whole file",
    ),
    column(
        "processing_terminal_id",
        Use::Required,
        Use::Required,
        "4–50 characters",
    ),
    column(
        "order_id",
        Use::Required,
        Use::Required,
        "1–24 characters, the merchant's id for this refund",
    ),
    column(
        "amount",
        Use::Required,
        Use::Required,
        "a decimal amount in major units, such as 49.99",
    ),
    column("currency", Use::Required, Use::Required, "an ISO 4217 code such as USD"),
    column(
        "description",
        Use::Required,
        Use::Optional,
        "1–256 characters for a card refund",
    ),
    column("channel", Use::Optional, Use::Never, "pos or moto"),
    column("card_number", Use::OneOf, Use::Never, "12–19 digits"),
    column("expiry_date", Use::OneOf, Use::Never, "MMYY or MM/YY"),
    column("cardholder_name", Use::OneOf, Use::Never, "1–50 characters"),
    column("secure_token", Use::OneOf, Use::OneOf, "12–19 characters"),
    column("account_number", Use::Never, Use::OneOf, "4–17 digits"),
    column("routing_number", Use::Never, Use::OneOf, "exactly 9 digits"),
    column("name_on_account", Use::Never, Use::OneOf, "1–50 characters"),
    column("account_type", Use::Never, Use::Optional, "checking or savings"),
    column("sec_code", Use::Never, Use::Optional, "web, tel, ccd or ppd"),
    column("operator", Use::Optional, Use::Never, "up to 50 characters"),
    column("customer_first_name", Use::Optional, Use::Never, "up to 60 characters"),
    column("customer_last_name", Use::Optional, Use::Never, "up to 60 characters"),
    column(
        "customer_email",
        Use::Optional,
        Use::Optional,
        "up to 50 characters with an @",
    ),
    column("customer_phone", Use::Optional, Use::Optional, "up to 15 characters"),
    column(
        "customer_reference_number",
        Use::Optional,
        Use::Never,
        "up to 48 characters",
    ),
    column("notification_language", Use::Optional, Use::Optional, "en or fr"),
    column("billing_address1", Use::Optional, Use::Never, "up to 150 characters"),
    column("billing_city", Use::Optional, Use::Never, "up to 50 characters"),
    column("billing_state", Use::Optional, Use::Never, "up to 50 characters"),
    column(
        "billing_country",
        Use::Optional,
        Use::Never,
        "a two-letter country code",
    ),
    column("billing_postal_code", Use::Optional, Use::Never, "up to 10 characters"),
    column("ip_address", Use::Optional, Use::Never, "an IPv4 or IPv6 address"),
];

/// Where `name` is in [`COLUMN_RULES`].
pub(super) fn position(name: &str) -> Option<usize> {
    COLUMN_RULES.iter().position(|rule| rule.name == name)
}

/// The rule of a column the code names (a name missing from the table is a bug, caught by the
/// tests that read every column).
fn rule(name: &str) -> Option<&'static ColumnRule> {
    COLUMN_RULES.iter().find(|rule| rule.name == name)
}

/// How a method's rows use `rule`.
fn use_for(rule: &ColumnRule, method: Method) -> Use {
    match method {
        Method::Card => rule.card,
        Method::Bank => rule.bank,
    }
}

/// The billing address columns, with Payroc's length limits: all of them or none.
const BILLING_COLUMNS: [(&str, usize); 5] = [
    ("billing_address1", 150),
    ("billing_city", 50),
    ("billing_state", 50),
    ("billing_country", 2),
    ("billing_postal_code", 10),
];

/// The columns meant to hold a card, account or routing number (or a token standing for one):
/// the only cells where such a number is not refused as being in the wrong place.
const PAYEE_NUMBER_COLUMNS: [&str; 4] = ["card_number", "secure_token", "account_number", "routing_number"];

/// Gathers the problems of one row while the cells are read.
struct RowCheck<'record> {
    record: &'record csv::ByteRecord,
    columns: &'record ColumnMap,
    row: u64,
    problems: Vec<CellProblem>,
    /// Record positions of the cells refused for holding a card number: read as empty after.
    refused: Vec<usize>,
}

impl RowCheck<'_> {
    /// Records a problem. Messages may quote a cell, and a cell may hold a card or account number
    /// typed into the wrong column; long digit runs are redacted so such a number never reaches
    /// the terminal or the results.
    fn problem(&mut self, column: &str, message: impl Into<String>) {
        self.problems.push(CellProblem {
            row: self.row,
            column: Some(column.to_owned()),
            message: redact_digit_runs(&message.into()),
        });
    }

    /// The trimmed cell of `column`, `None` when the column is absent or the cell empty.
    fn cell(&mut self, column: &str) -> Option<String> {
        let index = self.columns.position(column)?;
        self.cell_at(column, index)
    }

    /// Whether a problem was already recorded for `column` (a later check then stays quiet
    /// rather than add, say, "is required" for a cell refused for what it holds).
    fn has_problem(&self, column: &str) -> bool {
        self.problems
            .iter()
            .any(|problem| problem.column.as_deref() == Some(column))
    }

    fn cell_at(&mut self, column: &str, index: usize) -> Option<String> {
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

    fn required(&mut self, column: &str) -> Option<String> {
        let allowed = rule(column).map_or("a value", |rule| rule.allowed);
        let value = self.cell(column);
        if value.is_none() && !self.has_problem(column) {
            self.problem(column, format!("is required ({allowed})"));
        }
        value
    }

    /// Checks a length in characters (what Payroc counts), reporting `column` when outside.
    fn length(&mut self, column: &str, value: Option<String>, minimum: usize, maximum: usize) -> Option<String> {
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
    fn refuse_card_numbers(&mut self) {
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
    fn holds_card_number(&self, index: usize) -> Option<String> {
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

    fn refuse_card_number_at(&mut self, column: &str, index: usize) {
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
    fn plain_id(&mut self, column: &str, value: Option<String>) -> Option<String> {
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

    fn one_of(&mut self, column: &str, value: Option<String>, allowed: &[&'static str]) -> Option<&'static str> {
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
    fn forbid_other_method(&mut self, method: Method) {
        for rule in COLUMN_RULES {
            if use_for(rule, method) == Use::Never && self.cell(rule.name).is_some() {
                self.problem(rule.name, format!("is not used for {method} refunds (leave it empty)"));
            }
        }
    }

    fn forbid(&mut self, columns: &[&str], method: Method) {
        for column in columns {
            if self.cell(column).is_some() {
                self.problem(column, format!("is not used for {method} refunds (leave it empty)"));
            }
        }
    }
}

pub(super) fn apply_column_rules(
    record: &csv::ByteRecord,
    row: u64,
    columns: &ColumnMap,
    options: ReadOptions,
) -> ParsedRow {
    let mut check = RowCheck {
        record,
        columns,
        row,
        problems: Vec::new(),
        refused: Vec::new(),
    };
    if record.len() != columns.width && !(record.len() == 1 && record[0].is_empty()) {
        check.problems.push(CellProblem {
            row,
            column: None,
            message: format!(
                "has {} fields but the header has {} (a missing or extra comma, or an unquoted comma in a value)",
                record.len(),
                columns.width
            ),
        });
    }
    let mut label = RowLabel {
        row,
        ..RowLabel::default()
    };
    let raw = |column: &str| {
        columns
            .position(column)
            .and_then(|index| record.get(index))
            .map(|bytes| {
                let start = &bytes[..bytes.len().min(MAX_CELL_BYTES)];
                excerpt(String::from_utf8_lossy(start).trim(), MAX_LABEL_CHARACTERS)
            })
            .unwrap_or_default()
    };
    label.processing_terminal_id = raw("processing_terminal_id");
    label.order_id = raw("order_id");
    label.amount = raw("amount");
    label.currency = raw("currency");
    label.method = raw("method");
    check.refuse_card_numbers();

    let method = match check.cell("method") {
        Some(text) => match Method::parse(&text) {
            Some(method) => Some(method),
            None => {
                check.problem(
                    "method",
                    format!("{:?} is not a method (card or bank)", excerpt(&text, 20)),
                );
                None
            }
        },
        None => {
            if options.default_method.is_none() && !check.has_problem("method") {
                check.problem("method", "is required (card or bank, or pass --method)");
            }
            options.default_method
        }
    };
    if let Some(method) = method {
        label.method = method.as_str().to_owned();
    }
    let terminal = check.required("processing_terminal_id");
    let terminal = check.plain_id("processing_terminal_id", terminal);
    let terminal = check.length("processing_terminal_id", terminal, 4, 50);
    let order_id = check.required("order_id");
    let order_id = check.plain_id("order_id", order_id);
    let order_id = check.length("order_id", order_id, 1, 24);
    let currency = match check.required("currency") {
        Some(code) => match Currency::from_code(&code) {
            Some(currency) => Some(currency),
            None => {
                check.problem(
                    "currency",
                    format!(
                        "{:?} is not a currency Payroc accepts (an ISO 4217 code such as USD, EUR, JPY)",
                        excerpt(&code, 20)
                    ),
                );
                None
            }
        },
        None => None,
    };
    let amount_text = check.cell("amount");
    let amount_minor = match (amount_text, currency) {
        (None, _) => {
            if !check
                .problems
                .iter()
                .any(|problem| problem.column.as_deref() == Some("amount"))
            {
                check.problem("amount", money::AmountError::Empty.to_string());
            }
            None
        }
        (Some(text), Some(currency)) => match money::parse_amount_written(&text, currency, options.decimal_mark) {
            Ok(minor) => Some(minor),
            Err(error) => {
                check.problem("amount", error.to_string());
                None
            }
        },
        // Without a currency the number of places is unknown; the currency problem is reported.
        (Some(_), None) => None,
    };

    let operator = check.cell("operator");
    let operator = check.length("operator", operator, 1, 50);
    let email = check.cell("customer_email");
    let email = check.length("customer_email", email, 3, 50);
    if let Some(email) = &email
        && !email.contains('@')
    {
        check.problem("customer_email", format!("{email:?} is not an email address"));
    }
    let phone = check.cell("customer_phone");
    let phone = check.length("customer_phone", phone, 1, 15);
    let notification_language = check.cell("notification_language");
    let notification_language = check.one_of("notification_language", notification_language, &["en", "fr"]);
    let mut custom_fields = Vec::new();
    for (name, index) in &columns.custom {
        let column = format!("custom.{name}");
        let name_length = name.chars().count();
        if !(1..=56).contains(&name_length) {
            check.problem(
                &column,
                format!("the custom field name is {name_length} characters (1–56 allowed)"),
            );
            continue;
        }
        let value = check.cell_at(&column, *index);
        if let Some(value) = check.length(&column, value, 1, 100) {
            custom_fields.push((name.clone(), value));
        }
    }

    let mut row_ip_address = None;
    let (description, channel, payee, customer) = match method {
        Some(Method::Card) => {
            let description = check.required("description");
            let description = check.length("description", description, 1, 256);
            let channel = check.cell("channel");
            let channel = match channel {
                None => Some("moto"),
                value => check.one_of("channel", value, &["pos", "moto"]),
            };
            check.forbid_other_method(Method::Card);
            let first_name = check.cell("customer_first_name");
            let first_name = check.length("customer_first_name", first_name, 1, 60);
            let last_name = check.cell("customer_last_name");
            let last_name = check.length("customer_last_name", last_name, 1, 60);
            let reference_number = check.cell("customer_reference_number");
            let reference_number = check.length("customer_reference_number", reference_number, 1, 48);
            let billing_address = billing_address(&mut check);
            let ip_address = ip_address(&mut check);
            let payee = card_payee(&mut check);
            let customer = Customer {
                first_name,
                last_name,
                email,
                phone,
                reference_number,
                notification_language,
                billing_address,
            };
            row_ip_address = ip_address;
            (description, channel, payee, customer)
        }
        Some(Method::Bank) => {
            let description = check.cell("description");
            let description = check.length("description", description, 0, 256).or(Some(String::new()));
            check.forbid_other_method(Method::Bank);
            let payee = bank_payee(&mut check);
            let customer = Customer {
                email,
                phone,
                notification_language,
                ..Customer::default()
            };
            (description, Some(""), payee, customer)
        }
        None => (None, None, None, Customer::default()),
    };

    if !check.problems.is_empty() {
        return ParsedRow::Invalid {
            label,
            problems: check.problems,
        };
    }
    match (
        method,
        terminal,
        order_id,
        amount_minor,
        currency,
        description,
        channel,
        payee,
    ) {
        (
            Some(method),
            Some(processing_terminal_id),
            Some(order_id),
            Some(amount_minor),
            Some(currency),
            Some(description),
            Some(channel),
            Some(payee),
        ) => ParsedRow::Valid(Box::new(RefundRow {
            row,
            method,
            processing_terminal_id,
            order_id,
            amount_minor,
            currency,
            description,
            channel,
            operator,
            payee,
            customer,
            ip_address: row_ip_address,
            custom_fields,
        })),
        _ => ParsedRow::Invalid {
            label,
            problems: vec![CellProblem {
                row,
                column: None,
                message: "could not be read (no single cell was named; please report this)".into(),
            }],
        },
    }
}

/// The billing address columns: none, or all five valid.
fn billing_address(check: &mut RowCheck<'_>) -> Option<BillingAddress> {
    let cells: Vec<(&str, usize, Option<String>)> = BILLING_COLUMNS
        .iter()
        .map(|(column, maximum)| (*column, *maximum, check.cell(column)))
        .collect();
    if cells.iter().all(|(_, _, cell)| cell.is_none()) {
        return None;
    }
    let mut parts = Vec::with_capacity(cells.len());
    for (column, maximum, cell) in cells {
        match cell {
            None if check.has_problem(column) => {}
            None => check.problem(
                column,
                "is required when any billing address column is given (address1, city, state, country, postal code: Payroc needs all of them)",
            ),
            Some(value) if column == "billing_country" => {
                if value.len() == 2 && value.bytes().all(|byte| byte.is_ascii_alphabetic()) {
                    parts.push(value.to_ascii_uppercase());
                } else {
                    check.problem(
                        column,
                        format!("{:?} is not a two-letter country code (ISO 3166-1, e.g. US)", excerpt(&value, 20)),
                    );
                }
            }
            Some(value) => parts.extend(check.length(column, Some(value), 1, maximum)),
        }
    }
    match <[String; 5]>::try_from(parts) {
        Ok([address1, city, state, country, postal_code]) => Some(BillingAddress {
            address1,
            city,
            state,
            country,
            postal_code,
        }),
        Err(_) => None,
    }
}

/// The `ip_address` column: an IPv4 or IPv6 address.
fn ip_address(check: &mut RowCheck<'_>) -> Option<IpAddress> {
    let text = check.cell("ip_address")?;
    match text.parse::<std::net::IpAddr>() {
        Ok(address) => Some(IpAddress(address)),
        Err(_) => {
            check.problem(
                "ip_address",
                format!("{:?} is not an IPv4 or IPv6 address", excerpt(&text, 45)),
            );
            None
        }
    }
}

fn card_payee(check: &mut RowCheck<'_>) -> Option<Payee> {
    let card_number = check.cell("card_number");
    let token = check.cell("secure_token");
    match (card_number, token) {
        (Some(_), Some(_)) => {
            check.problem("secure_token", "give either card_number or secure_token, not both");
            None
        }
        (None, None) => {
            check.problem(
                "card_number",
                "a card refund needs card_number (with expiry_date) or secure_token",
            );
            None
        }
        (None, Some(token)) => {
            check.forbid(&["expiry_date", "cardholder_name"], Method::Card);
            let token = check.length("secure_token", Some(token), 12, 19)?;
            Some(Payee::SecureToken {
                token: token.into(),
                account_type: None,
                sec_code: None,
            })
        }
        (Some(number), None) => {
            let digits: String = number.chars().filter(|character| *character != ' ').collect();
            let valid_number = if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                check.problem(
                    "card_number",
                    "has characters other than digits and spaces (12–19 digits)",
                );
                None
            } else if !(12..=19).contains(&digits.len()) {
                check.problem("card_number", format!("has {} digits (12–19 allowed)", digits.len()));
                None
            } else if !luhn_valid(&digits) {
                check.problem("card_number", "fails the Luhn check digit: it is mistyped");
                None
            } else {
                Some(digits)
            };
            let expiry = check.required("expiry_date");
            let expiry = expiry.and_then(|text| {
                let compact: String = text.chars().filter(|character| *character != '/').collect();
                let month = compact.get(..2).and_then(|month| month.parse::<u8>().ok());
                let well_formed = compact.len() == 4
                    && compact.bytes().all(|byte| byte.is_ascii_digit())
                    && (text.len() == 4 || text.as_bytes().get(2) == Some(&b'/'));
                if well_formed && matches!(month, Some(1..=12)) {
                    Some(compact)
                } else {
                    check.problem(
                        "expiry_date",
                        format!(
                            "{:?} is not a card expiry (MMYY or MM/YY, month 01–12)",
                            excerpt(&text, 20)
                        ),
                    );
                    None
                }
            });
            let name = check.cell("cardholder_name");
            let name = check.length("cardholder_name", name, 1, 50);
            Some(Payee::KeyedCard {
                card_number: valid_number?.into(),
                expiry_date: expiry?,
                cardholder_name: name,
            })
        }
    }
}

fn bank_payee(check: &mut RowCheck<'_>) -> Option<Payee> {
    let account_type = check.cell("account_type");
    let account_type = check
        .one_of("account_type", account_type, &["checking", "savings"])
        .map(str::to_owned);
    let sec_code = check.cell("sec_code");
    let sec_code = check
        .one_of("sec_code", sec_code, &["web", "tel", "ccd", "ppd"])
        .map(str::to_owned);
    let token = check.cell("secure_token");
    let account = check.cell("account_number");
    match (account, token) {
        (Some(_), Some(_)) => {
            check.problem(
                "secure_token",
                "give either account_number (with routing_number, name_on_account) or secure_token, not both",
            );
            None
        }
        (None, None) => {
            check.problem(
                "account_number",
                "a bank refund needs account_number, routing_number and name_on_account, or secure_token",
            );
            None
        }
        (None, Some(token)) => {
            check.forbid(&["routing_number", "name_on_account"], Method::Bank);
            let token = check.length("secure_token", Some(token), 12, 19);
            if sec_code.is_none()
                && !check
                    .problems
                    .iter()
                    .any(|problem| problem.column.as_deref() == Some("sec_code"))
            {
                check.problem(
                    "sec_code",
                    "is required with a bank secure token (web, tel, ccd or ppd)",
                );
            }
            Some(Payee::SecureToken {
                token: token?.into(),
                account_type,
                sec_code,
            })
        }
        (Some(account), None) => {
            let account = if account.bytes().all(|byte| byte.is_ascii_digit()) && (4..=17).contains(&account.len()) {
                Some(account)
            } else {
                check.problem("account_number", "must be 4–17 digits");
                None
            };
            let routing = check.required("routing_number");
            let routing = routing.and_then(|routing| {
                if routing.len() != 9 || !routing.bytes().all(|byte| byte.is_ascii_digit()) {
                    check.problem("routing_number", "must be exactly 9 digits");
                    None
                } else if !aba_check_digit_valid(&routing) {
                    check.problem("routing_number", "fails the ABA check digit: it is mistyped");
                    None
                } else {
                    Some(routing)
                }
            });
            let name = check.required("name_on_account");
            let name = check.length("name_on_account", name, 1, 50);
            Some(Payee::Ach {
                account_number: account?.into(),
                routing_number: routing?.into(),
                name_on_account: name?,
                account_type,
                sec_code,
            })
        }
    }
}

/// The Luhn check every card number (and no typo of one digit) passes, over ASCII digits.
pub(super) fn luhn_valid(digits: &str) -> bool {
    crate::refund::redaction::luhn_valid(digits.bytes().map(|byte| u32::from(byte - b'0')))
}

/// The ABA routing number checksum: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10).
pub(super) fn aba_check_digit_valid(routing: &str) -> bool {
    let weights = [3, 7, 1];
    let sum: u32 = routing
        .bytes()
        .enumerate()
        .map(|(position, byte)| u32::from(byte - b'0') * weights[position % 3])
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's input table and [`COLUMN_RULES`] describe the same columns, and agree on
    /// which method each belongs to ("—" in the README's card or bank column is `Use::Never`).
    #[test]
    fn the_readme_input_table_matches_the_rules() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
        let table_start = readme
            .find("| column | card | bank | rules |")
            .expect("the input table");
        let mut documented = Vec::new();
        for line in readme[table_start..].lines().skip(2) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (names, card, bank) = (cells[1], cells[2], cells[3]);
            for name in names.split('`').skip(1).step_by(2) {
                if name != "custom.<name>" {
                    documented.push((name.to_owned(), card == "—", bank == "—"));
                }
            }
        }
        for rule in COLUMN_RULES {
            let found = documented.iter().find(|(name, ..)| name == rule.name);
            let Some((_, card_never, bank_never)) = found else {
                panic!("{} is not in the README's input table", rule.name)
            };
            assert_eq!(*card_never, rule.card == Use::Never, "{}: card", rule.name);
            assert_eq!(*bank_never, rule.bank == Use::Never, "{}: bank", rule.name);
        }
        for (name, ..) in &documented {
            assert!(
                position(name).is_some(),
                "the README documents {name}, which the reader does not know"
            );
        }
    }

    #[test]
    fn every_column_the_reader_checks_is_in_the_table() {
        for name in [
            "processing_terminal_id",
            "order_id",
            "currency",
            "description",
            "expiry_date",
            "routing_number",
            "name_on_account",
        ] {
            assert!(rule(name).is_some(), "{name}");
        }
        for (name, _) in BILLING_COLUMNS {
            assert!(rule(name).is_some(), "{name}");
        }
    }
}
