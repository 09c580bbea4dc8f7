//! The rules for the cells that say where the money goes — a keyed card or token, an ACH account
//! or token — and for the optional billing address and IP address: each read through a
//! [`RowCheck`], every problem collected. Also the two check digits (Luhn, ABA) they rely on.

use super::row_check::RowCheck;
use super::rules::BILLING_COLUMNS;
use super::*;

/// The billing address columns: none, or all five valid.
pub(super) fn billing_address(check: &mut RowCheck<'_>) -> Option<BillingAddress> {
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
pub(super) fn ip_address(check: &mut RowCheck<'_>) -> Option<IpAddress> {
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

pub(super) fn card_payee(check: &mut RowCheck<'_>) -> Option<Payee> {
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

pub(super) fn bank_payee(check: &mut RowCheck<'_>) -> Option<Payee> {
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
