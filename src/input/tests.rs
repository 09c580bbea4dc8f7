//! Unit tests of the module beside it, kept in their own file so the module reads alone.

use super::*;
use crate::input::payee_rules::{aba_check_digit_valid, luhn_valid};
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
            crate::refund::Environment::ALL.into_iter().zip(by_environment)
        {
            let identity = crate::refund::key::Identity::of_row(row, environment);
            for (generation, expected) in [(0, generation_0), (1, generation_1)] {
                assert_eq!(
                    crate::refund::key::legacy_v1_key(&identity, "default", row.method, generation).to_string(),
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
            crate::refund::Environment::ALL.into_iter().zip(by_environment)
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
    let content =
        "processing_terminal_id,order_id,amount,currency,secure_token,sec_code\n1234001,B1,10,USD,296753123456,web\n";
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
