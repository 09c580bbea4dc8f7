//! What a refund is: the row a finance team wrote, once it is valid — the method, the payee
//! (whose numbers are secrets and only ever shown masked), the customer, the amount in minor
//! units — and the two things derived from it that every later stage agrees on: its
//! [`key::Identity`] (and so its Idempotency-Key) and the masked forms of its secrets.
//!
//! Every other part of the crate builds on these types; this module imports nothing else of it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

pub mod environment;
pub mod key;
pub mod money;
pub mod redaction;
pub mod status;

pub use environment::Environment;
pub use status::{RefundStatus, RowNote};

use money::Currency;

/// How a refund reaches the customer, and which Payroc endpoint takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `POST /v1/refunds`: to a card, keyed or by secure token.
    Card,
    /// `POST /v1/bank-transfer-refunds`: to a bank account by ACH or secure token.
    Bank,
}

impl Method {
    /// The word used in files, the ledger and the results: `card` or `bank`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::Bank => "bank",
        }
    }

    /// The other method: an order is one refund whichever way it goes, so lookups check both.
    pub fn other(self) -> Method {
        match self {
            Method::Card => Method::Bank,
            Method::Bank => Method::Card,
        }
    }

    /// Parses `card` or `bank`, any case.
    pub fn parse(text: &str) -> Option<Method> {
        match text.trim().to_ascii_lowercase().as_str() {
            "card" => Some(Method::Card),
            "bank" => Some(Method::Bank),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Where the money goes. Every number in here is a secret: `SecretString` keeps it out of
/// `Debug` output, and only the request body builder exposes it.
#[derive(Debug)]
pub enum Payee {
    /// A keyed card: number (digits only, spaces stripped) and `MMYY` expiry.
    KeyedCard {
        /// 12–19 digits, Luhn-valid.
        card_number: SecretString,
        /// `MMYY`.
        expiry_date: String,
        /// Optional name on the card, 1–50 characters.
        cardholder_name: Option<String>,
    },
    /// A Payroc secure token standing for a saved card or account.
    SecureToken {
        /// 12–19 characters.
        token: SecretString,
        /// Bank only: `checking` or `savings`.
        account_type: Option<String>,
        /// Bank only (required there): `web`, `tel`, `ccd` or `ppd`.
        sec_code: Option<String>,
    },
    /// A US bank account paid by ACH.
    Ach {
        /// 4–17 digits.
        account_number: SecretString,
        /// Exactly 9 digits with a valid ABA check digit.
        routing_number: SecretString,
        /// 1–50 characters.
        name_on_account: String,
        /// `checking` or `savings`.
        account_type: Option<String>,
        /// `web`, `tel`, `ccd` or `ppd`.
        sec_code: Option<String>,
    },
}

impl Payee {
    /// The masked form stored in the ledger and shown in results: first 6 + last 4 of a card,
    /// last 4 of an account, last 4 of a token. Nothing more of a number ever leaves memory.
    pub fn masked(&self) -> String {
        match self {
            Payee::KeyedCard { card_number, .. } => mask_card_number(card_number.expose_secret()),
            Payee::SecureToken { token, .. } => format!("token ****{}", last_four(token.expose_secret())),
            Payee::Ach { account_number, .. } => format!("ach ****{}", last_four(account_number.expose_secret())),
        }
    }
}

/// `453985******7062`: Payroc's own masking of a card number.
pub fn mask_card_number(digits: &str) -> String {
    let count = digits.chars().count();
    let first: String = digits.chars().take(6).collect();
    let stars = "*".repeat(count.saturating_sub(10));
    format!("{first}{stars}{}", last_four(digits))
}

fn last_four(text: &str) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(4)).collect()
}

/// The optional customer details a row may carry.
#[derive(Debug, Default)]
pub struct Customer {
    /// Card only, up to 60 characters.
    pub first_name: Option<String>,
    /// Card only, up to 60 characters.
    pub last_name: Option<String>,
    /// Up to 50 characters with an `@`.
    pub email: Option<String>,
    /// Up to 15 characters.
    pub phone: Option<String>,
    /// Card only: the customer's reference number, up to 48 characters (sent when the customer
    /// gave one).
    pub reference_number: Option<String>,
    /// `en` or `fr`: the language of Payroc's notifications to the customer.
    pub notification_language: Option<&'static str>,
    /// Card only: the billing address, all of its parts or none.
    pub billing_address: Option<BillingAddress>,
}

/// A card customer's billing address (every part is required by Payroc when one is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingAddress {
    /// Street, up to 150 characters.
    pub address1: String,
    /// Up to 50 characters.
    pub city: String,
    /// Up to 50 characters.
    pub state: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    /// Up to 10 characters.
    pub postal_code: String,
}

impl Customer {
    /// True when no field is set, so no `customer` object is sent.
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none()
            && self.last_name.is_none()
            && self.email.is_none()
            && self.phone.is_none()
            && self.reference_number.is_none()
            && self.notification_language.is_none()
            && self.billing_address.is_none()
    }
}

/// Card only: the customer's IP address, sent as `ipAddress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpAddress(pub std::net::IpAddr);

/// One valid row of the file: everything needed to build its request, checked against Payroc's
/// limits so that a request the tool sends is one Payroc can accept.
#[derive(Debug)]
pub struct RefundRow {
    /// The row number as a spreadsheet shows it (header = 1).
    pub row: u64,
    /// Which endpoint.
    pub method: Method,
    /// Payroc's processing terminal, 4–50 characters.
    pub processing_terminal_id: String,
    /// The merchant's id for this refund, 1–24 characters.
    pub order_id: String,
    /// Amount in minor units of `currency`.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
    /// 1–256 characters for a card, 0–256 for a bank transfer.
    pub description: String,
    /// Card only: `pos` or `moto`.
    pub channel: &'static str,
    /// Card only: who did it, up to 50 characters.
    pub operator: Option<String>,
    /// Where the money goes.
    pub payee: Payee,
    /// Optional customer details.
    pub customer: Customer,
    /// Card only: the customer's IP address.
    pub ip_address: Option<IpAddress>,
    /// `custom.<name>` columns with a value, as (name, value), in header order.
    pub custom_fields: Vec<(String, String)>,
}

/// Payroc's own id for a refund: 10 characters, e.g. `CD3HN88U9F`. Not a secret (kept exact so
/// lookups match it), and not to be confused with the ledger's row id for the refund.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayrocRefundId(pub String);

impl PayrocRefundId {
    /// The id as Payroc writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PayrocRefundId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Lower-case hex of bytes, for digests.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}
