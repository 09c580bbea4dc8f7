//! Building the exact bytes sent to Payroc for a row, and a fingerprint of them that is safe to keep.
//!
//! Payroc compares key + URI + body on a repeated Idempotency-Key, so a row must produce the
//! same bytes on every send, in every run, on every machine. The body is therefore serialised from
//! structs with a fixed field order (never a map), from values the input stage has already
//! normalised (digits only, upper-case currency, `MMYY`). The ledger cannot keep the body — it
//! holds a card or account number — so it keeps a [`PreparedRefund::fingerprint`]: SHA-256 of the
//! same body built with the payee masked. A re-run compares fingerprints to notice that the file
//! now asks something different for a refund already sent.

use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::refund::key::Identity;
use crate::refund::{Environment, Method, Payee, RefundRow, hex, mask_card_number};

/// What the ledger may know about a row: its identity and a fingerprint of its body. Holds no
/// card or account number, so it is safe to keep and to print.
#[derive(Debug)]
pub struct PreparedRefund {
    /// What makes it the same refund across runs: its order.
    pub identity: Identity,
    /// `card` or `bank`.
    pub method: Method,
    /// The ledger id of the order ([`Identity::ledger_id`]).
    pub ledger_id: String,
    /// The ledger id an earlier version gave this row under its method and key namespace
    /// ([`Identity::legacy_v1_ledger_id`]): a ledger it wrote keeps the row and its keys there.
    pub legacy_ledger_id: String,
    /// SHA-256 (hex) of the body built with the payee masked.
    pub fingerprint: String,
    /// First 6 + last 4 of a card, last 4 of an account or token.
    pub payee_masked: String,
}

/// What the ledger needs to decide about `row`. The body itself is built only for rows that are
/// sent ([`body`]): a re-run of a finished batch never serialises a card number.
pub fn prepare(row: &RefundRow, environment: Environment, namespace: &str) -> PreparedRefund {
    let identity = Identity::of_row(row, environment);
    PreparedRefund {
        method: row.method,
        ledger_id: identity.ledger_id(),
        legacy_ledger_id: identity.legacy_v1_ledger_id(namespace, row.method),
        identity,
        fingerprint: hex(&Sha256::digest(serialize(row, Exposure::Masked))),
        payee_masked: row.payee.masked(),
    }
}

/// The exact request body for `row`. Holds the full card or account number: send it, never
/// log or store it.
pub fn body(row: &RefundRow) -> Vec<u8> {
    serialize(row, Exposure::Full)
}

/// Whether the payee's numbers go in whole (to send) or masked (to fingerprint).
#[derive(Clone, Copy)]
enum Exposure {
    Full,
    Masked,
}

fn serialize(row: &RefundRow, exposure: Exposure) -> Vec<u8> {
    let reveal = |secret: &secrecy::SecretString, masked: fn(&str) -> String| match exposure {
        Exposure::Full => secret.expose_secret().to_owned(),
        Exposure::Masked => masked(secret.expose_secret()),
    };
    let refund_method = match &row.payee {
        Payee::KeyedCard {
            card_number,
            expiry_date,
            cardholder_name,
        } => RefundMethod::Card {
            card_details: CardDetails {
                entry_method: "keyed",
                cardholder_name: cardholder_name.as_deref(),
                keyed_data: KeyedData {
                    data_format: "plainText",
                    card_number: reveal(card_number, mask_card_number),
                    expiry_date,
                },
            },
        },
        Payee::SecureToken {
            token,
            account_type,
            sec_code,
        } => RefundMethod::SecureToken {
            token: reveal(token, mask_last_four),
            account_type: account_type.as_deref(),
            sec_code: sec_code.as_deref(),
        },
        Payee::Ach {
            account_number,
            routing_number,
            name_on_account,
            account_type,
            sec_code,
        } => RefundMethod::Ach {
            sec_code: sec_code.as_deref(),
            account_type: account_type.as_deref(),
            name_on_account,
            account_number: reveal(account_number, mask_last_four),
            routing_number: reveal(routing_number, mask_last_four),
        },
    };
    let mut contact_methods = Vec::new();
    if let Some(email) = &row.customer.email {
        contact_methods.push(ContactMethod {
            kind: "email",
            value: email,
        });
    }
    if let Some(phone) = &row.customer.phone {
        contact_methods.push(ContactMethod {
            kind: "phone",
            value: phone,
        });
    }
    let customer = (!row.customer.is_empty()).then(|| CustomerBody {
        first_name: row.customer.first_name.as_deref(),
        last_name: row.customer.last_name.as_deref(),
        reference_number: row.customer.reference_number.as_deref(),
        billing_address: row.customer.billing_address.as_ref().map(|address| AddressBody {
            address1: &address.address1,
            city: &address.city,
            state: &address.state,
            country: &address.country,
            postal_code: &address.postal_code,
        }),
        contact_methods,
        notification_language: row.customer.notification_language,
    });
    let ip_address = row.ip_address.map(|address| IpAddressBody {
        kind: if address.0.is_ipv4() { "ipv4" } else { "ipv6" },
        value: address.0.to_string(),
    });
    let custom_fields: Vec<CustomField<'_>> = row
        .custom_fields
        .iter()
        .map(|(name, value)| CustomField { name, value })
        .collect();
    let order = Order {
        order_id: &row.order_id,
        description: &row.description,
        amount: row.amount_minor,
        currency: row.currency.code(),
    };
    let body = match row.method {
        Method::Card => serde_json::to_vec(&CardRefundBody {
            channel: row.channel,
            processing_terminal_id: &row.processing_terminal_id,
            operator: row.operator.as_deref(),
            order,
            customer,
            ip_address,
            refund_method,
            custom_fields,
        }),
        Method::Bank => serde_json::to_vec(&BankRefundBody {
            processing_terminal_id: &row.processing_terminal_id,
            order,
            customer,
            refund_method,
            custom_fields,
        }),
    };
    // Serialising plain structs of strings and integers into a Vec cannot fail: there is no
    // map with non-string keys and no I/O.
    body.expect("serialising a refund body of strings and integers into memory cannot fail")
}

fn mask_last_four(text: &str) -> String {
    let count = text.chars().count();
    let last: String = text.chars().skip(count.saturating_sub(4)).collect();
    format!("****{last}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CardRefundBody<'row> {
    channel: &'static str,
    processing_terminal_id: &'row str,
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<&'row str>,
    order: Order<'row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<CustomerBody<'row>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<IpAddressBody>,
    refund_method: RefundMethod<'row>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields: Vec<CustomField<'row>>,
}

#[derive(Serialize)]
struct IpAddressBody {
    #[serde(rename = "type")]
    kind: &'static str,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddressBody<'row> {
    address1: &'row str,
    city: &'row str,
    state: &'row str,
    country: &'row str,
    postal_code: &'row str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BankRefundBody<'row> {
    processing_terminal_id: &'row str,
    order: Order<'row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<CustomerBody<'row>>,
    refund_method: RefundMethod<'row>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields: Vec<CustomField<'row>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Order<'row> {
    order_id: &'row str,
    description: &'row str,
    amount: i64,
    currency: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerBody<'row> {
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'row str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'row str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_number: Option<&'row str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    billing_address: Option<AddressBody<'row>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contact_methods: Vec<ContactMethod<'row>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_language: Option<&'static str>,
}

#[derive(Serialize)]
struct ContactMethod<'row> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'row str,
}

#[derive(Serialize)]
struct CustomField<'row> {
    name: &'row str,
    value: &'row str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum RefundMethod<'row> {
    #[serde(rename_all = "camelCase")]
    Card { card_details: CardDetails<'row> },
    #[serde(rename_all = "camelCase")]
    SecureToken {
        token: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        account_type: Option<&'row str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sec_code: Option<&'row str>,
    },
    #[serde(rename_all = "camelCase")]
    Ach {
        #[serde(skip_serializing_if = "Option::is_none")]
        sec_code: Option<&'row str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        account_type: Option<&'row str>,
        name_on_account: &'row str,
        account_number: String,
        routing_number: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CardDetails<'row> {
    entry_method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cardholder_name: Option<&'row str>,
    keyed_data: KeyedData<'row>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyedData<'row> {
    data_format: &'static str,
    card_number: String,
    expiry_date: &'row str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refund::money::Currency;
    use crate::refund::{BillingAddress, Customer, IpAddress, RefundRow};

    fn card_row() -> RefundRow {
        RefundRow {
            row: 2,
            method: Method::Card,
            processing_terminal_id: "1234001".into(),
            order_id: "R20240702-0001".into(),
            amount_minor: 4999,
            currency: Currency::from_code("USD").unwrap(),
            description: "Refund for order 6543".into(),
            channel: "moto",
            operator: None,
            payee: Payee::KeyedCard {
                card_number: "4539858876047062".into(),
                expiry_date: "1230".into(),
                cardholder_name: Some("Sarah Hopper".into()),
            },
            customer: Customer {
                email: Some("sarah@example.com".into()),
                ..Customer::default()
            },
            ip_address: None,
            custom_fields: vec![("batchRow".into(), "17".into())],
        }
    }

    #[test]
    fn the_card_body_has_payrocs_shape_and_a_stable_byte_order() {
        let sent = body(&card_row());
        assert_eq!(
            String::from_utf8(sent.clone()).unwrap(),
            r#"{"channel":"moto","processingTerminalId":"1234001","order":{"orderId":"R20240702-0001","description":"Refund for order 6543","amount":4999,"currency":"USD"},"customer":{"contactMethods":[{"type":"email","value":"sarah@example.com"}]},"refundMethod":{"type":"card","cardDetails":{"entryMethod":"keyed","cardholderName":"Sarah Hopper","keyedData":{"dataFormat":"plainText","cardNumber":"4539858876047062","expiryDate":"1230"}}},"customFields":[{"name":"batchRow","value":"17"}]}"#
        );
        assert_eq!(body(&card_row()), sent);
    }

    #[test]
    fn the_optional_customer_and_ip_fields_take_payrocs_places() {
        let mut row = card_row();
        row.custom_fields.clear();
        row.customer.reference_number = Some("C-77".into());
        row.customer.notification_language = Some("fr");
        row.customer.billing_address = Some(BillingAddress {
            address1: "1 Main St".into(),
            city: "Chicago".into(),
            state: "IL".into(),
            country: "US".into(),
            postal_code: "60601".into(),
        });
        row.ip_address = Some(IpAddress("2001:db8::1".parse().unwrap()));
        let body = String::from_utf8(body(&row)).unwrap();
        assert!(
            body.contains(r#""customer":{"referenceNumber":"C-77","billingAddress":{"address1":"1 Main St","city":"Chicago","state":"IL","country":"US","postalCode":"60601"},"contactMethods":[{"type":"email","value":"sarah@example.com"}],"notificationLanguage":"fr"},"ipAddress":{"type":"ipv6","value":"2001:db8::1"},"refundMethod""#),
            "{body}"
        );
    }

    #[test]
    fn the_bank_body_has_no_card_only_fields() {
        let mut row = card_row();
        row.method = Method::Bank;
        row.description = String::new();
        row.customer = Customer::default();
        row.custom_fields.clear();
        row.payee = Payee::Ach {
            account_number: "1234567890".into(),
            routing_number: "011000015".into(),
            name_on_account: "Sarah Hopper".into(),
            account_type: Some("checking".into()),
            sec_code: Some("web".into()),
        };
        let body = String::from_utf8(body(&row)).unwrap();
        assert_eq!(
            body,
            r#"{"processingTerminalId":"1234001","order":{"orderId":"R20240702-0001","description":"","amount":4999,"currency":"USD"},"refundMethod":{"type":"ach","secCode":"web","accountType":"checking","nameOnAccount":"Sarah Hopper","accountNumber":"1234567890","routingNumber":"011000015"}}"#
        );
    }

    #[test]
    fn the_fingerprint_moves_with_the_body_but_never_holds_the_number() {
        let base = prepare(&card_row(), Environment::Production, "default");
        let mut changed = card_row();
        changed.amount_minor = 5000;
        assert_ne!(
            prepare(&changed, Environment::Production, "default").fingerprint,
            base.fingerprint
        );
        assert_eq!(base.payee_masked, "453985******7062");
        assert!(!format!("{base:?}").contains("4539858876047062"));
    }
}
