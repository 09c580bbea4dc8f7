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

/// The result the sandbox assigns, chosen by the documented test values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `status` "ready", `responseCode` "A".
    Approved,
    /// `status` "declined", `responseCode` "D".
    Declined,
    /// `responseCode` "R" (declined, call the bank).
    Referral,
    /// `responseCode` "E", `status` "pending".
    Queued,
    /// Card: `responseCode` "C" (declined, keep the card), `status` "declined".
    KeepCard,
    /// Card: `responseCode` "P", `status` "ready", half the amount authorized.
    Partial,
    /// `responseCode` "A" but `status` "declined": a contradicting answer (card, and bank
    /// account [`ACCOUNT_APPROVED_BUT_DECLINED`]).
    ApprovedButDeclined,
    /// Bank: `status` "declined" and no `responseCode` at all.
    DeclinedWithoutCode,
    /// Bank: `status` "pending" and no `responseCode` at all.
    PendingWithoutCode,
    /// Bank: approved now, `status` "returned" once the batch settles.
    ReturnedLater,
    /// Bank: approved, `authorizedAmount` written with a decimal point.
    DecimalAmount,
}

/// Card numbers and tokens with a documented non-approved result.
pub(crate) const CARD_DECLINED: &str = "4000000000000002";
pub(crate) const CARD_REFERRAL: &str = "4000000000000127";
pub(crate) const CARD_QUEUED: &str = "4000000000000119";
pub(crate) const CARD_KEEP_CARD: &str = "4000000000000135";
pub(crate) const CARD_PARTIAL: &str = "4000000000000143";
pub(crate) const CARD_APPROVED_BUT_DECLINED: &str = "4000000000000150";
pub(crate) const TOKEN_DECLINED: &str = "2967530000000002";

/// What a secure token's refund comes to, for card and bank alike: the documented decline token
/// declines, every other token is approved.
fn token_outcome(token: &str) -> Outcome {
    if token == TOKEN_DECLINED {
        Outcome::Declined
    } else {
        Outcome::Approved
    }
}

/// Bank account numbers with a documented result.
pub(crate) const ACCOUNT_DECLINED: &str = "99990002";
pub(crate) const ACCOUNT_DECLINED_WITHOUT_CODE: &str = "99990003";
pub(crate) const ACCOUNT_PENDING_WITHOUT_CODE: &str = "99990004";
pub(crate) const ACCOUNT_RETURNED_LATER: &str = "99990005";
pub(crate) const ACCOUNT_DECIMAL_AMOUNT: &str = "99990006";
pub(crate) const ACCOUNT_APPROVED_BUT_DECLINED: &str = "99990007";

fn account_outcome(account: &str) -> Outcome {
    match account {
        ACCOUNT_DECLINED => Outcome::Declined,
        ACCOUNT_DECLINED_WITHOUT_CODE => Outcome::DeclinedWithoutCode,
        ACCOUNT_PENDING_WITHOUT_CODE => Outcome::PendingWithoutCode,
        ACCOUNT_RETURNED_LATER => Outcome::ReturnedLater,
        ACCOUNT_DECIMAL_AMOUNT => Outcome::DecimalAmount,
        ACCOUNT_APPROVED_BUT_DECLINED => Outcome::ApprovedButDeclined,
        _ => Outcome::Approved,
    }
}

/// A processing terminal without the unreferenced-refund capability.
pub(crate) const TERMINAL_NO_CAPABILITY: &str = "9999001";

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

fn card_method(c: &mut Ctx, m: &Map<String, Value>) -> Option<(Value, Outcome)> {
    let v = c.required(m, "", "refundMethod")?;
    let p = "refundMethod";
    let Some(t) = v.get("type") else {
        c.object(v, p, &["type", "cardDetails", "accountType", "token", "secCode"]);
        c.push("refundMethod.type", "must not be null", "type must not be null");
        return None;
    };
    match t.as_str() {
        Some("card") => {
            let rm = c.object(v, p, &["type", "cardDetails", "accountType"])?;
            c.enumeration(rm, p, "accountType", false, &["checking", "savings"]);
            let cd = c.required(rm, p, "cardDetails")?;
            let cp = "refundMethod.cardDetails";
            let entry = cd.get("entryMethod").and_then(Value::as_str);
            match entry {
                Some("keyed") => {}
                Some("raw" | "icc" | "swiped") => {
                    c.object(
                        cd,
                        cp,
                        &[
                            "entryMethod",
                            "device",
                            "rawData",
                            "iccData",
                            "swipedData",
                            "cardholderName",
                            "cardholderSignature",
                            "pinDetails",
                            "ebtDetails",
                            "fallbackReason",
                            "trackData",
                        ],
                    );
                    c.push(
                        "refundMethod.cardDetails.entryMethod",
                        "entry method needs a physical device",
                        "entryMethod raw, icc and swiped need a physical device; the sandbox supports keyed",
                    );
                    return None;
                }
                _ => {
                    c.object(cd, cp, &["entryMethod"]);
                    c.push(
                        "refundMethod.cardDetails.entryMethod",
                        "must be one of: raw, icc, swiped, keyed",
                        "entryMethod must be one of: raw, icc, swiped, keyed",
                    );
                    return None;
                }
            }
            let cdm = c.object(
                cd,
                cp,
                &[
                    "entryMethod",
                    "keyedData",
                    "cardholderName",
                    "cardholderSignature",
                    "pinDetails",
                    "ebtDetails",
                ],
            )?;
            let name = c.string(cdm, cp, "cardholderName", false, 1, 50);
            let kd = c.required(cdm, cp, "keyedData")?;
            let kp = "refundMethod.cardDetails.keyedData";
            match kd.get("dataFormat").and_then(Value::as_str) {
                Some("plainText") => {}
                Some("fullyEncrypted" | "partiallyEncrypted") => {
                    c.push(
                        "refundMethod.cardDetails.keyedData.dataFormat",
                        "encrypted card data is not supported by the sandbox",
                        "dataFormat fullyEncrypted and partiallyEncrypted need a device key; the sandbox supports plainText",
                    );
                    return None;
                }
                _ => {
                    c.push(
                        "refundMethod.cardDetails.keyedData.dataFormat",
                        "must be one of: plainText, fullyEncrypted, partiallyEncrypted",
                        "dataFormat must be one of: plainText, fullyEncrypted, partiallyEncrypted",
                    );
                    return None;
                }
            }
            let km = c.object(
                kd,
                kp,
                &["dataFormat", "cardNumber", "expiryDate", "cvv", "issueNumber", "device"],
            )?;
            let number = c.string(km, kp, "cardNumber", true, 12, 19);
            let number = number.filter(|n| c.digits(&join(kp, "cardNumber"), "cardNumber", n));
            let expiry = c.string(km, kp, "expiryDate", false, 4, 4);
            if let Some(e) = expiry
                && !is_mmyy(e)
            {
                c.push(
                    &join(kp, "expiryDate"),
                    "must match MMYY",
                    "expiryDate must be four digits in the format MMYY",
                );
            }
            if let Some(cvv) = c.string(km, kp, "cvv", false, 3, 4) {
                c.digits(&join(kp, "cvv"), "cvv", cvv);
            }
            if let Some(n) = c.string(km, kp, "issueNumber", false, 1, 2) {
                c.digits(&join(kp, "issueNumber"), "issueNumber", n);
            }
            if let Some(d) = km.get("device").filter(|v| !v.is_null()) {
                let dp = join(kp, "device");
                if let Some(dm) = c.object(
                    d,
                    &dp,
                    &["model", "serialNumber", "category", "firmwareVersion", "config"],
                ) {
                    c.string(dm, &dp, "model", true, 1, usize::MAX);
                    c.string(dm, &dp, "serialNumber", true, 1, 64);
                    c.enumeration(dm, &dp, "category", false, &["attended", "unattended"]);
                }
            }
            let number = number?;
            let outcome = match number {
                CARD_DECLINED => Outcome::Declined,
                CARD_REFERRAL => Outcome::Referral,
                CARD_QUEUED => Outcome::Queued,
                CARD_KEEP_CARD => Outcome::KeepCard,
                CARD_PARTIAL => Outcome::Partial,
                CARD_APPROVED_BUT_DECLINED => Outcome::ApprovedButDeclined,
                _ => Outcome::Approved,
            };
            let mut card = json!({
                "type": brand(number),
                "entryMethod": "keyed",
                "cardNumber": mask_pan(number),
                "expiryDate": expiry.unwrap_or("1230"),
            });
            if let Some(n) = name {
                card["cardholderName"] = json!(n);
            }
            Some((card, outcome))
        }
        Some("secureToken") => {
            let (token, _) = secure_token(c, v)?;
            let outcome = token_outcome(token);
            let card = json!({
                "type": "Visa Credit",
                "entryMethod": "keyed",
                "cardNumber": format!("400000******{}", last4(token)),
                "expiryDate": "1230",
                "secureToken": token_summary(token),
            });
            Some((card, outcome))
        }
        _ => {
            c.push(
                "refundMethod.type",
                "must be one of: card, secureToken",
                "type must be one of: card, secureToken",
            );
            None
        }
    }
}

fn bank_method(c: &mut Ctx, m: &Map<String, Value>) -> Option<(Value, Outcome)> {
    let v = c.required(m, "", "refundMethod")?;
    let p = "refundMethod";
    match v.get("type").and_then(Value::as_str) {
        Some("ach") => {
            let rm = c.object(
                v,
                p,
                &[
                    "type",
                    "nameOnAccount",
                    "accountNumber",
                    "routingNumber",
                    "accountType",
                    "secCode",
                ],
            )?;
            let name = c.string(rm, p, "nameOnAccount", true, 1, 50);
            let acct = c.string(rm, p, "accountNumber", true, 4, 17);
            let acct = acct.filter(|a| c.digits("refundMethod.accountNumber", "accountNumber", a));
            let routing = c.string(rm, p, "routingNumber", true, 9, 9);
            let routing = routing.filter(|r| c.digits("refundMethod.routingNumber", "routingNumber", r));
            let account_type = c.enumeration(rm, p, "accountType", false, &["checking", "savings"]);
            let sec = c.enumeration(rm, p, "secCode", false, &["web", "tel", "ccd", "ppd"]);
            let (name, acct, routing) = (name?, acct?, routing?);
            let outcome = account_outcome(acct);
            let mut ba = json!({
                "type": "ach",
                "nameOnAccount": name,
                "accountNumber": format!("****{}", last4(acct)),
                "routingNumber": format!("*****{}", last4(routing)),
            });
            if let Some(s) = sec {
                ba["secCode"] = json!(s);
            }
            if let Some(t) = account_type {
                ba["accountType"] = json!(t);
            }
            Some((ba, outcome))
        }
        Some("secureToken") => {
            let (token, sec) = secure_token(c, v)?;
            let outcome = token_outcome(token);
            let mut ba = json!({
                "type": "ach",
                "nameOnAccount": "Sandbox Customer",
                "accountNumber": format!("****{}", last4(token)),
                "routingNumber": "*****0000",
                "secureToken": token_summary(token),
            });
            if let Some(s) = sec {
                ba["secCode"] = json!(s);
            }
            Some((ba, outcome))
        }
        None if v.get("type").is_none() => {
            c.object(
                v,
                p,
                &[
                    "type",
                    "nameOnAccount",
                    "accountNumber",
                    "routingNumber",
                    "accountType",
                    "secCode",
                    "token",
                ],
            );
            c.push("refundMethod.type", "must not be null", "type must not be null");
            None
        }
        _ => {
            c.push(
                "refundMethod.type",
                "must be one of: ach, secureToken",
                "type must be one of: ach, secureToken",
            );
            None
        }
    }
}

/// Returns (token, secCode).
fn secure_token<'a>(c: &mut Ctx, v: &'a Value) -> Option<(&'a str, Option<&'a str>)> {
    let p = "refundMethod";
    let m = c.object(v, p, &["type", "token", "accountType", "secCode"])?;
    let token = c.string(m, p, "token", true, 12, 19);
    c.enumeration(m, p, "accountType", false, &["checking", "savings"]);
    let sec = c.enumeration(m, p, "secCode", false, &["web", "tel", "ccd", "ppd"]);
    Some((token?, sec))
}

fn token_summary(token: &str) -> Value {
    json!({
        "secureTokenId": format!("SBX-{}", last4(token)),
        "customerName": "Sandbox Customer",
        "token": token,
        "status": "notValidated",
    })
}

fn brand(pan: &str) -> &'static str {
    match pan.as_bytes().first() {
        Some(b'4') => "Visa Credit",
        Some(b'5' | b'2') => "MasterCard",
        Some(b'3') => "American Express",
        Some(b'6') => "Discover",
        _ => "Unknown",
    }
}

/// First 6 + `******` + last 4, as Payroc returns card numbers.
pub(crate) fn mask_pan(pan: &str) -> String {
    format!("{}******{}", &pan[..6], last4(pan))
}

fn last4(s: &str) -> &str {
    // Callers pass ASCII strings of length >= 4 (validated).
    let n = s.len();
    s.get(n.saturating_sub(4)..).unwrap_or("")
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
