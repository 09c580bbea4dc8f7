//! The rules for each column of a row: one table ([`COLUMN_RULES`]) says which columns exist,
//! which method each belongs to and what a missing one is told; the reader reads a record's
//! cells through [`apply_column_rules`], which checks them against Payroc's limits and the
//! table, collecting every problem of the row (a person fixes a spreadsheet once, not once per
//! problem). The README's input table is checked against the table by a test.

use super::payee_rules::{bank_payee, billing_address, card_payee, ip_address};
use super::row_check::RowCheck;
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
pub(super) fn rule(name: &str) -> Option<&'static ColumnRule> {
    COLUMN_RULES.iter().find(|rule| rule.name == name)
}

/// How a method's rows use `rule`.
pub(super) fn use_for(rule: &ColumnRule, method: Method) -> Use {
    match method {
        Method::Card => rule.card,
        Method::Bank => rule.bank,
    }
}

/// The billing address columns, with Payroc's length limits: all of them or none.
pub(super) const BILLING_COLUMNS: [(&str, usize); 5] = [
    ("billing_address1", 150),
    ("billing_city", 50),
    ("billing_state", 50),
    ("billing_country", 2),
    ("billing_postal_code", 10),
];

/// The columns meant to hold a card, account or routing number (or a token standing for one):
/// the only cells where such a number is not refused as being in the wrong place.
pub(super) const PAYEE_NUMBER_COLUMNS: [&str; 4] = ["card_number", "secure_token", "account_number", "routing_number"];

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
