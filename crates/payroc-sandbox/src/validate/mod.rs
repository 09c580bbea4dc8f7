//! Request validation for the two unreferenced-refund bodies, with Payroc's
//! lengths, patterns and enums (from Payroc's API reference).
//!
//! Works on a parsed `serde_json::Value` rather than typed structs so that it
//! can (a) report every problem at once with Payroc-style JSON paths in
//! `errors[].parameter`, and (b) reject fields the endpoint does not have
//! (e.g. `channel` on a bank-transfer refund), which catches client mistakes
//! that a lenient deserializer would silently drop.

use serde_json::{Map, Value, json};

use crate::currency;
use crate::problem::{FieldError, Problem};

/// Which endpoint a body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Card,
    Bank,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Card => "card",
            Kind::Bank => "bank",
        }
    }
}

mod methods;
mod test_values;

use methods::*;
pub(crate) use test_values::*;

/// A body that passed validation, with what the response needs.
#[derive(Debug, Clone)]
pub(crate) struct ValidRefund {
    pub kind: Kind,
    pub terminal: String,
    pub operator: Option<String>,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    pub customer: Option<Value>,
    pub custom_fields: Option<Value>,
    /// Already masked: the `card` object (card) or `bankAccount` object (bank).
    pub instrument: Value,
    pub outcome: Outcome,
}

/// Validate `body` for `kind`. `Err` carries the 400 problem to send.
pub(crate) fn validate(kind: Kind, body: &[u8]) -> Result<ValidRefund, Problem> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(Problem::bad_request(vec![FieldError::new(
                "body",
                "malformed JSON",
                format!("The request body is not valid JSON ({})", e.classify_name()),
            )]));
        }
    };
    let mut c = Ctx::default();
    let valid = match kind {
        Kind::Card => card(&mut c, &value),
        Kind::Bank => bank(&mut c, &value),
    };
    match valid {
        Some(v) if c.errors.is_empty() => {
            if v.terminal == TERMINAL_NO_CAPABILITY {
                return Err(capabilities_missing());
            }
            Ok(v)
        }
        _ => {
            if c.errors.is_empty() {
                // Defensive: every `None` path pushes an error, but never send an empty 400.
                c.push("body", "invalid", "The request body is invalid");
            }
            Err(Problem::bad_request(c.errors))
        }
    }
}

fn capabilities_missing() -> Problem {
    Problem::new(
        axum::http::StatusCode::BAD_REQUEST,
        "capabilities-missing",
        "Capabilities missing",
        "The processing terminal does not have the capabilities required for this request",
    )
    .with_errors(vec![FieldError::new(
        "processingTerminalId",
        "terminal does not support unreferenced refunds",
        "The processing terminal does not support unreferenced refunds",
    )])
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}
impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

const CARD_TOP: &[&str] = &[
    "channel",
    "processingTerminalId",
    "operator",
    "order",
    "customer",
    "ipAddress",
    "refundMethod",
    "customFields",
];
const BANK_TOP: &[&str] = &[
    "processingTerminalId",
    "order",
    "customer",
    "refundMethod",
    "customFields",
];

fn card(c: &mut Ctx, v: &Value) -> Option<ValidRefund> {
    let m = c.object(v, "", CARD_TOP)?;
    c.enumeration(m, "", "channel", true, &["pos", "moto"]);
    let terminal = c.string(m, "", "processingTerminalId", true, 4, 50);
    let operator = c.string(m, "", "operator", false, 0, 50);
    let order = order(c, m, Kind::Card);
    let customer = m.get("customer").filter(|v| !v.is_null());
    if let Some(cu) = customer {
        customer_full(c, cu, "customer");
    }
    if let Some(ip) = m.get("ipAddress").filter(|v| !v.is_null())
        && let Some(im) = c.object(ip, "ipAddress", &["type", "value"])
    {
        c.enumeration(im, "ipAddress", "type", true, &["ipv4", "ipv6"]);
        c.string(im, "ipAddress", "value", true, 1, 45);
    }
    let custom_fields = custom_fields(c, m);
    let method = card_method(c, m);
    let (terminal, order, (instrument, outcome)) = (terminal?, order?, method?);
    Some(ValidRefund {
        kind: Kind::Card,
        terminal: terminal.to_owned(),
        operator: operator.map(str::to_owned),
        order_id: order.0,
        amount: order.1,
        currency: order.2,
        description: order.3,
        customer: customer.cloned(),
        custom_fields,
        instrument,
        outcome,
    })
}

fn bank(c: &mut Ctx, v: &Value) -> Option<ValidRefund> {
    let m = c.object(v, "", BANK_TOP)?;
    let terminal = c.string(m, "", "processingTerminalId", true, 4, 50);
    let order = order(c, m, Kind::Bank);
    let customer = m.get("customer").filter(|v| !v.is_null());
    if let Some(cu) = customer
        && let Some(cm) = c.object(cu, "customer", &["notificationLanguage", "contactMethods"])
    {
        c.enumeration(cm, "customer", "notificationLanguage", false, &["en", "fr"]);
        contact_methods(c, cm, "customer");
    }
    let custom_fields = custom_fields(c, m);
    let method = bank_method(c, m);
    let (terminal, order, (instrument, outcome)) = (terminal?, order?, method?);
    Some(ValidRefund {
        kind: Kind::Bank,
        terminal: terminal.to_owned(),
        operator: None,
        order_id: order.0,
        amount: order.1,
        currency: order.2,
        description: order.3,
        customer: customer.cloned(),
        custom_fields,
        instrument,
        outcome,
    })
}

/// (orderId, amount, currency, description)
fn order(c: &mut Ctx, m: &Map<String, Value>, kind: Kind) -> Option<(String, i64, String, String)> {
    let v = c.required(m, "", "order")?;
    // `dateTime` is read-only; accepted and ignored (the sandbox stamps its own).
    let allowed: &[&str] = match kind {
        Kind::Card => &["orderId", "amount", "currency", "description", "dateTime", "dccOffer"],
        Kind::Bank => &["orderId", "amount", "currency", "description", "dateTime"],
    };
    let o = c.object(v, "order", allowed)?;
    let order_id = c.string(o, "order", "orderId", true, 1, 24);
    let amount = c.amount(o, "order", "amount");
    let currency = c.string(o, "order", "currency", true, 0, usize::MAX);
    if let Some(cur) = currency
        && !currency::is_known(cur)
    {
        c.push(
            "order.currency",
            "must be an ISO 4217 alphabetic code",
            format!("currency '{}' is not a supported ISO 4217 code", printable(cur)),
        );
    }
    let min_desc = if kind == Kind::Card { 1 } else { 0 };
    let description = c.string(o, "order", "description", true, min_desc, 256);
    if let Some(d) = o.get("dccOffer").filter(|v| !v.is_null()) {
        c.object(
            d,
            "order.dccOffer",
            &[
                "fxAmount",
                "fxCurrency",
                "fxRate",
                "markup",
                "offerReference",
                "fxCurrencyCode",
                "fxCurrencyExponent",
                "markupText",
                "source",
                "status",
                "dccProduct",
                "accepted",
            ],
        );
    }
    let currency = currency.filter(|cur| currency::is_known(cur));
    Some((
        order_id?.to_owned(),
        amount?,
        currency?.to_owned(),
        description?.to_owned(),
    ))
}

fn customer_full(c: &mut Ctx, v: &Value, path: &str) {
    let Some(m) = c.object(
        v,
        path,
        &[
            "firstName",
            "lastName",
            "dateOfBirth",
            "referenceNumber",
            "billingAddress",
            "shippingAddress",
            "contactMethods",
            "notificationLanguage",
        ],
    ) else {
        return;
    };
    c.string(m, path, "firstName", false, 0, 60);
    c.string(m, path, "lastName", false, 0, 60);
    c.string(m, path, "referenceNumber", false, 0, 48);
    c.enumeration(m, path, "notificationLanguage", false, &["en", "fr"]);
    if let Some(d) = c.string(m, path, "dateOfBirth", false, 0, usize::MAX)
        && !is_date(d)
    {
        c.push(
            &join(path, "dateOfBirth"),
            "must be a date (YYYY-MM-DD)",
            "dateOfBirth must be a date in the format YYYY-MM-DD",
        );
    }
    if let Some(a) = m.get("billingAddress").filter(|v| !v.is_null()) {
        address(c, a, &join(path, "billingAddress"));
    }
    if let Some(s) = m.get("shippingAddress").filter(|v| !v.is_null()) {
        let sp = join(path, "shippingAddress");
        if let Some(sm) = c.object(s, &sp, &["recipientName", "address"]) {
            c.string(sm, &sp, "recipientName", false, 0, 50);
            if let Some(a) = sm.get("address").filter(|v| !v.is_null()) {
                address(c, a, &join(&sp, "address"));
            }
        }
    }
    contact_methods(c, m, path);
}

fn address(c: &mut Ctx, v: &Value, path: &str) {
    let Some(m) = c.object(
        v,
        path,
        &[
            "address1",
            "address2",
            "address3",
            "city",
            "state",
            "country",
            "postalCode",
        ],
    ) else {
        return;
    };
    c.string(m, path, "address1", true, 1, 150);
    c.string(m, path, "address2", false, 0, 150);
    c.string(m, path, "address3", false, 0, 150);
    c.string(m, path, "city", true, 1, 50);
    c.string(m, path, "state", true, 1, 50);
    c.string(m, path, "country", true, 2, 2);
    c.string(m, path, "postalCode", true, 1, 10);
}

fn contact_methods(c: &mut Ctx, m: &Map<String, Value>, path: &str) {
    let Some(v) = m.get("contactMethods").filter(|v| !v.is_null()) else {
        return;
    };
    let ap = join(path, "contactMethods");
    let Some(items) = v.as_array() else {
        c.push(&ap, "must be an array", "contactMethods must be an array");
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{ap}[{i}]");
        if let Some(im) = c.object(item, &ip, &["type", "value"]) {
            let t = c.enumeration(im, &ip, "type", true, &["email", "phone", "mobile", "fax"]);
            let max = if t == Some("email") { 50 } else { 15 };
            c.string(im, &ip, "value", true, 1, max);
        }
    }
}

fn custom_fields(c: &mut Ctx, m: &Map<String, Value>) -> Option<Value> {
    let v = m.get("customFields").filter(|v| !v.is_null())?;
    let Some(items) = v.as_array() else {
        c.push("customFields", "must be an array", "customFields must be an array");
        return None;
    };
    for (i, item) in items.iter().enumerate() {
        let ip = format!("customFields[{i}]");
        if let Some(im) = c.object(item, &ip, &["name", "value"]) {
            c.string(im, &ip, "name", true, 1, 56);
            c.string(im, &ip, "value", true, 1, 100);
        }
    }
    Some(v.clone())
}

fn is_mmyy(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4 && b.iter().all(u8::is_ascii_digit) && matches!((b[0] - b'0') * 10 + (b[1] - b'0'), 1..=12)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Error messages may echo a short value, but only ones that are not secrets
/// (currency codes); cap length and strip control characters anyway.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(16).collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[derive(Default)]
struct Ctx {
    errors: Vec<FieldError>,
}

impl Ctx {
    fn push(&mut self, parameter: &str, detail: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(parameter, detail, message));
    }

    /// A required member; pushes "must not be null" when absent or null.
    fn required<'a>(&mut self, m: &'a Map<String, Value>, path: &str, key: &str) -> Option<&'a Value> {
        match m.get(key) {
            Some(v) if !v.is_null() => Some(v),
            _ => {
                self.push(&join(path, key), "must not be null", format!("{key} must not be null"));
                None
            }
        }
    }

    /// `v` must be an object whose keys are all in `allowed`.
    fn object<'a>(&mut self, v: &'a Value, path: &str, allowed: &[&str]) -> Option<&'a Map<String, Value>> {
        let Some(m) = v.as_object() else {
            let p = if path.is_empty() { "body" } else { path };
            self.push(p, "must be an object", format!("{p} must be a JSON object"));
            return None;
        };
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                let name: String = printable(k);
                self.push(
                    &join(path, &name),
                    "unknown field",
                    format!("{name} is not a field of this request"),
                );
            }
        }
        Some(m)
    }

    fn string<'a>(
        &mut self,
        m: &'a Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
        min: usize,
        max: usize,
    ) -> Option<&'a str> {
        let v = match m.get(key) {
            Some(Value::Null) | None => {
                if required {
                    self.push(&join(path, key), "must not be null", format!("{key} must not be null"));
                }
                return None;
            }
            Some(v) => v,
        };
        let Some(s) = v.as_str() else {
            self.push(&join(path, key), "must be a string", format!("{key} must be a string"));
            return None;
        };
        let n = s.chars().count();
        if n < min || n > max {
            let detail = if max == usize::MAX {
                format!("size must be at least {min}")
            } else {
                format!("size must be between {min} and {max}")
            };
            self.push(&join(path, key), detail.clone(), format!("{key} {detail}"));
            return None;
        }
        Some(s)
    }

    fn enumeration<'a>(
        &mut self,
        m: &'a Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
        allowed: &[&str],
    ) -> Option<&'a str> {
        let s = self.string(m, path, key, required, 0, usize::MAX)?;
        if allowed.contains(&s) {
            Some(s)
        } else {
            let list = allowed.join(", ");
            self.push(
                &join(path, key),
                format!("must be one of: {list}"),
                format!("{key} must be one of: {list}"),
            );
            None
        }
    }

    fn amount(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
        let p = join(path, key);
        match m.get(key) {
            Some(Value::Null) | None => {
                self.push(&p, "must not be null", format!("{key} must not be null"));
                None
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(a) if a >= 1 => Some(a),
                Some(_) => {
                    self.push(
                        &p,
                        "must be greater than or equal to 1",
                        format!("{key} must be greater than or equal to 1"),
                    );
                    None
                }
                None => {
                    self.push(
                        &p,
                        "must be an integer in the currency's minor unit",
                        format!("{key} must be an integer number of minor units (e.g. cents)"),
                    );
                    None
                }
            },
            Some(_) => {
                self.push(&p, "must be an integer", format!("{key} must be a JSON integer"));
                None
            }
        }
    }

    /// Push an error unless `s` is all ASCII digits; returns whether it is.
    fn digits(&mut self, parameter: &str, key: &str, s: &str) -> bool {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            self.push(
                parameter,
                "must contain only digits",
                format!("{key} must match ^[0-9]*$"),
            );
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_body() -> Value {
        json!({"channel":"moto","processingTerminalId":"1234001",
            "order":{"orderId":"R1","description":"d","amount":4999,"currency":"USD"},
            "refundMethod":{"type":"card","cardDetails":{"entryMethod":"keyed","cardholderName":"S H",
              "keyedData":{"dataFormat":"plainText","cardNumber":"4539858876047062","expiryDate":"1230"}}}})
    }

    fn params(p: Problem) -> Vec<String> {
        p.errors.into_iter().filter_map(|e| e.parameter).collect()
    }

    #[test]
    fn valid_card_masks() {
        let v = validate(Kind::Card, card_body().to_string().as_bytes()).unwrap();
        assert_eq!(v.instrument["cardNumber"], "453985******7062");
        assert_eq!(v.outcome, Outcome::Approved);
    }

    #[test]
    fn collects_all_errors_with_paths() {
        let mut b = card_body();
        b["order"]["amount"] = json!(49.99);
        b["order"]["orderId"] = json!("x".repeat(25));
        b["order"]["currency"] = json!("ZZZ");
        b["channel"] = json!("web");
        b["refundMethod"]["cardDetails"]["keyedData"]["expiryDate"] = json!("1330");
        let p = validate(Kind::Card, b.to_string().as_bytes()).unwrap_err();
        let got = params(p);
        for want in [
            "channel",
            "order.amount",
            "order.orderId",
            "order.currency",
            "refundMethod.cardDetails.keyedData.expiryDate",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
        }
    }

    #[test]
    fn bank_rejects_card_only_fields() {
        let b = json!({"processingTerminalId":"1234001","channel":"moto","operator":"x",
            "order":{"orderId":"B1","description":"","amount":1,"currency":"USD"},
            "refundMethod":{"type":"ach","nameOnAccount":"N","accountNumber":"1234","routingNumber":"123456789"}});
        let got = params(validate(Kind::Bank, b.to_string().as_bytes()).unwrap_err());
        assert_eq!(got, vec!["channel", "operator"]);
    }

    #[test]
    fn bank_number_rules() {
        let b = json!({"processingTerminalId":"1234001",
            "order":{"orderId":"B1","description":"","amount":0,"currency":"USD"},
            "refundMethod":{"type":"ach","nameOnAccount":"N","accountNumber":"12a4","routingNumber":"12345678"}});
        let got = params(validate(Kind::Bank, b.to_string().as_bytes()).unwrap_err());
        assert_eq!(
            got,
            vec![
                "order.amount",
                "refundMethod.accountNumber",
                "refundMethod.routingNumber"
            ]
        );
    }
}
