//! Every kind of answer the sandbox gives, checked against Payroc's response
//! schemas.
//!
//! The rules below are written out by hand from Payroc's OpenAPI reference
//! (the `refund` and `bankTransferRefund` responses with their `card`,
//! `transactionResult`, `bankTransferResult`, `achBankAccount`, `refundOrder`,
//! `bankTransferRefundOrder`, `customer`, `customField` and
//! `secureTokenSummary` parts, the paginated lists and `link`, the problem
//! responses and the identity service's token response). They are literal
//! data, not derived from the sandbox's own code, so a sandbox answer that
//! drifts from Payroc's shape fails here even when the sandbox agrees with
//! itself.
//!
//! Objects are checked strictly: a key the schema does not list is an error,
//! which catches misspelt fields (`authorisedAmount`) that a lenient client
//! would skip over.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{RunningSandbox, SandboxConfig, spawn};

/// One schema rule.
enum Rule {
    /// A JSON object: every `required` key present, every key present listed
    /// in `fields` (and valid by its rule).
    Object {
        required: &'static [&'static str],
        fields: &'static [(&'static str, Rule)],
    },
    /// A string of `min..=max` characters.
    Str {
        min: usize,
        max: usize,
    },
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A string the named check accepts.
    Matches(&'static str, fn(&str) -> bool),
    /// A JSON integer (no decimal point or exponent).
    Integer,
    /// Any JSON number.
    Number,
    Boolean,
    /// An array whose items all follow the rule.
    Array(&'static Rule),
}

use Rule::*;

const ANY_STRING: Rule = Str {
    min: 0,
    max: usize::MAX,
};

// ---- shared parts ----

/// `currency`: an ISO 4217 alphabetic code (Payroc lists 171 of them).
const CURRENCY: Rule = Matches("an ISO 4217 code (three capital letters)", |s| {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
});

/// `format: date-time` (ISO 8601 / RFC 3339, with a time zone).
const DATE_TIME: Rule = Matches("an RFC 3339 date-time", is_date_time);

/// `link`: all three required.
const LINK: Rule = Object {
    required: &["rel", "method", "href"],
    fields: &[("rel", ANY_STRING), ("method", ANY_STRING), ("href", ANY_STRING)],
};

/// `customField`.
const CUSTOM_FIELD: Rule = Object {
    required: &["name", "value"],
    fields: &[("name", Str { min: 1, max: 56 }), ("value", Str { min: 1, max: 100 })],
};

/// `contactMethod`.
const CONTACT_METHOD: Rule = Object {
    required: &["type", "value"],
    fields: &[
        ("type", OneOf(&["email", "phone", "mobile", "fax"])),
        ("value", Str { min: 1, max: 50 }),
    ],
};

/// `address`.
const ADDRESS: Rule = Object {
    required: &["address1", "city", "state", "country", "postalCode"],
    fields: &[
        ("address1", Str { min: 1, max: 150 }),
        ("address2", Str { min: 0, max: 150 }),
        ("address3", Str { min: 0, max: 150 }),
        ("city", Str { min: 1, max: 50 }),
        ("state", Str { min: 1, max: 50 }),
        ("country", Str { min: 2, max: 2 }),
        ("postalCode", Str { min: 1, max: 10 }),
    ],
};

/// `customer` (card refunds): every field optional.
const CUSTOMER: Rule = Object {
    required: &[],
    fields: &[
        ("firstName", Str { min: 0, max: 60 }),
        ("lastName", Str { min: 0, max: 60 }),
        ("dateOfBirth", Matches("a date YYYY-MM-DD", is_date)),
        ("referenceNumber", Str { min: 0, max: 48 }),
        ("billingAddress", ADDRESS),
        (
            "shippingAddress",
            Object {
                required: &[],
                fields: &[("recipientName", Str { min: 0, max: 50 }), ("address", ADDRESS)],
            },
        ),
        ("contactMethods", Array(&CONTACT_METHOD)),
        ("notificationLanguage", OneOf(&["en", "fr"])),
    ],
};

/// `bankTransferCustomer`.
const BANK_CUSTOMER: Rule = Object {
    required: &[],
    fields: &[
        ("notificationLanguage", OneOf(&["en", "fr"])),
        ("contactMethods", Array(&CONTACT_METHOD)),
    ],
};

/// `secureTokenSummary`.
const SECURE_TOKEN_SUMMARY: Rule = Object {
    required: &["secureTokenId", "customerName", "token", "status"],
    fields: &[
        ("secureTokenId", Str { min: 1, max: 200 }),
        ("customerName", Str { min: 1, max: 50 }),
        ("token", Str { min: 12, max: 19 }),
        (
            "status",
            OneOf(&[
                "notValidated",
                "cvvValidated",
                "validationFailed",
                "issueNumberValidated",
                "cardNumberValidated",
                "bankAccountValidated",
            ]),
        ),
        ("link", LINK),
    ],
};

// ---- card refunds ----

/// `refundOrder`: the base `order` narrowed for refunds.
const CARD_ORDER: Rule = Object {
    required: &["orderId", "amount", "currency", "description"],
    fields: &[
        ("orderId", Str { min: 1, max: 24 }),
        ("dateTime", DATE_TIME),
        ("description", Str { min: 1, max: 256 }),
        ("amount", Integer),
        ("currency", CURRENCY),
        (
            "dccOffer",
            Object {
                required: &[],
                fields: &[],
            },
        ),
    ],
};

/// `card`.
const CARD: Rule = Object {
    required: &["type", "entryMethod", "cardNumber", "expiryDate"],
    fields: &[
        ("type", ANY_STRING),
        (
            "entryMethod",
            OneOf(&[
                "icc",
                "keyed",
                "swiped",
                "swipedFallback",
                "contactlessIcc",
                "contactlessMsr",
            ]),
        ),
        ("cardholderName", Str { min: 1, max: 50 }),
        ("cardholderSignature", ANY_STRING),
        (
            "cardNumber",
            Matches("a masked card number: first 6, ******, last 4", is_masked_pan),
        ),
        (
            "expiryDate",
            Matches("MMYY, four digits", |s| s.len() == 4 && all_digits(s)),
        ),
        ("secureToken", SECURE_TOKEN_SUMMARY),
    ],
};

/// `transactionResult` of a card transaction.
const CARD_RESULT: Rule = Object {
    required: &["status", "responseCode"],
    fields: &[
        (
            "type",
            OneOf(&["sale", "refund", "preAuthorization", "preAuthorizationCompletion"]),
        ),
        (
            "status",
            OneOf(&[
                "ready", "pending", "declined", "complete", "referral", "pickup", "reversal", "admin", "expired",
                "accepted",
            ]),
        ),
        ("approvalCode", Str { min: 1, max: 48 }),
        ("authorizedAmount", Integer),
        ("currency", CURRENCY),
        ("responseCode", OneOf(&["A", "D", "E", "P", "R", "C"])),
        ("responseMessage", Str { min: 1, max: 48 }),
        ("processorResponseCode", ANY_STRING),
        ("cardSchemeReferenceId", Str { min: 1, max: 64 }),
    ],
};

/// `refund` (the 201 of `POST /refunds`, `GET /refunds/{refundId}`).
const CARD_REFUND: Rule = Object {
    required: &["refundId", "processingTerminalId", "order", "card", "transactionResult"],
    fields: &[
        ("refundId", Str { min: 10, max: 10 }),
        ("processingTerminalId", Str { min: 4, max: 50 }),
        ("operator", Str { min: 0, max: 50 }),
        ("order", CARD_ORDER),
        ("customer", CUSTOMER),
        ("card", CARD),
        ("transactionResult", CARD_RESULT),
        ("customFields", Array(&CUSTOM_FIELD)),
    ],
};

/// `refundPaginatedList` (`limit`, `count`, `hasMore`, `links` and `data`
/// are all always sent).
const CARD_LIST: Rule = Object {
    required: &["limit", "count", "hasMore", "links", "data"],
    fields: &[
        ("limit", Number),
        ("count", Number),
        ("hasMore", Boolean),
        ("links", Array(&LINK)),
        ("data", Array(&CARD_REFUND)),
    ],
};

// ---- bank-transfer refunds ----

/// `bankTransferRefundOrder`.
const BANK_ORDER: Rule = Object {
    required: &["orderId", "amount", "currency", "description"],
    fields: &[
        ("orderId", Str { min: 1, max: 24 }),
        ("dateTime", DATE_TIME),
        ("description", Str { min: 0, max: 256 }),
        ("amount", Integer),
        ("currency", CURRENCY),
    ],
};

/// `achBankAccount` (`accountType` is not in the schema, but Payroc's own
/// example response carries it).
const ACH_ACCOUNT: Rule = Object {
    required: &["type", "nameOnAccount", "accountNumber", "routingNumber"],
    fields: &[
        ("type", OneOf(&["ach"])),
        ("secCode", OneOf(&["web", "tel", "ccd", "ppd"])),
        ("nameOnAccount", Str { min: 1, max: 50 }),
        (
            "accountNumber",
            Matches("4-17 characters, all but the last 4 masked", is_masked_account),
        ),
        (
            "routingNumber",
            Matches("9 characters, all but the last 4 masked", is_masked_routing),
        ),
        ("secureToken", SECURE_TOKEN_SUMMARY),
        ("accountType", OneOf(&["checking", "savings"])),
    ],
};

/// `bankTransferResult` (`responseCode`: `A` or `D`, no enum in the schema).
const BANK_RESULT: Rule = Object {
    required: &["type", "status", "responseMessage"],
    fields: &[
        (
            "type",
            OneOf(&["payment", "refund", "unreferencedRefund", "accountVerification"]),
        ),
        (
            "status",
            OneOf(&[
                "ready", "pending", "declined", "complete", "admin", "reversal", "returned",
            ]),
        ),
        ("authorizedAmount", Number),
        ("currency", CURRENCY),
        ("responseCode", ANY_STRING),
        ("responseMessage", Str { min: 1, max: 48 }),
        ("processorResponseCode", ANY_STRING),
    ],
};

/// `bankTransferRefund`.
const BANK_REFUND: Rule = Object {
    required: &[
        "refundId",
        "processingTerminalId",
        "order",
        "bankAccount",
        "transactionResult",
    ],
    fields: &[
        ("refundId", Str { min: 10, max: 10 }),
        ("processingTerminalId", Str { min: 4, max: 50 }),
        ("order", BANK_ORDER),
        ("customer", BANK_CUSTOMER),
        ("bankAccount", ACH_ACCOUNT),
        ("transactionResult", BANK_RESULT),
        ("customFields", Array(&CUSTOM_FIELD)),
    ],
};

/// `bankTransferRefundPaginatedList`.
const BANK_LIST: Rule = Object {
    required: &["limit", "count", "hasMore", "links", "data"],
    fields: &[
        ("limit", Number),
        ("count", Number),
        ("hasMore", Boolean),
        ("links", Array(&LINK)),
        ("data", Array(&BANK_REFUND)),
    ],
};

// ---- problems and identity ----

/// One entry of `errors[]` (400, 409, 500): every field optional.
const PROBLEM_ERROR: Rule = Object {
    required: &[],
    fields: &[
        ("parameter", ANY_STRING),
        ("detail", ANY_STRING),
        ("message", ANY_STRING),
    ],
};

/// The problem responses (400, 401, 403, 404, 409, 415, 500): `type`,
/// `title`, `status` and `detail` always; `errors` on 400/409/500,
/// `instance` on 403/409, `resource` on 403/404, `link` on 409.
const PROBLEM: Rule = Object {
    required: &["type", "title", "status", "detail"],
    fields: &[
        (
            "type",
            Matches("a Payroc problem URI", |s| {
                s.strip_prefix("https://docs.payroc.com/api/errors#")
                    .is_some_and(|t| !t.is_empty())
            }),
        ),
        (
            "title",
            Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("status", Integer),
        (
            "detail",
            Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("instance", ANY_STRING),
        ("resource", ANY_STRING),
        ("errors", Array(&PROBLEM_ERROR)),
        ("link", LINK),
    ],
};

/// The identity service's token response.
const TOKEN: Rule = Object {
    required: &["access_token", "token_type", "expires_in"],
    fields: &[
        (
            "access_token",
            Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("token_type", OneOf(&["Bearer"])),
        ("expires_in", Integer),
        ("scope", ANY_STRING),
    ],
};

// ---- the checker ----

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_masked_pan(s: &str) -> bool {
    let n = s.len();
    (12..=19).contains(&n)
        && s.is_ascii()
        && all_digits(&s[..6])
        && s[6..n - 4].bytes().all(|b| b == b'*')
        && all_digits(&s[n - 4..])
}

fn is_masked_account(s: &str) -> bool {
    let n = s.len();
    (4..=17).contains(&n) && s.is_ascii() && s[..n - 4].bytes().all(|b| b == b'*') && all_digits(&s[n - 4..])
}

fn is_masked_routing(s: &str) -> bool {
    s.len() == 9 && s.is_ascii() && s[..5].bytes().all(|b| b == b'*') && all_digits(&s[5..])
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && all_digits(&s[..4]) && all_digits(&s[5..7]) && all_digits(&s[8..])
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_date_time(s: &str) -> bool {
    if !s.is_ascii() || s.len() < 20 || !is_date(&s[..10]) || s.as_bytes()[10] != b'T' {
        return false;
    }
    let t = &s[11..];
    let clock = t.len() >= 8
        && all_digits(&t[..2])
        && &t[2..3] == ":"
        && all_digits(&t[3..5])
        && &t[5..6] == ":"
        && all_digits(&t[6..8]);
    if !clock {
        return false;
    }
    let mut rest = &t[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(&rest[..1], "+" | "-")
            && all_digits(&rest[1..3])
            && &rest[3..4] == ":"
            && all_digits(&rest[4..]))
}

/// Every way `v` breaks `rule`, as `path: what`.
fn violations(rule: &Rule, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(rule, v, "$", &mut out);
    out
}

fn check(rule: &Rule, v: &Value, path: &str, out: &mut Vec<String>) {
    match rule {
        Object { required, fields } => {
            let Some(m) = v.as_object() else {
                out.push(format!("{path}: not an object: {v}"));
                return;
            };
            for key in *required {
                if !m.contains_key(*key) {
                    out.push(format!("{path}: required `{key}` missing"));
                }
            }
            for (key, value) in m {
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, r)) => check(r, value, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}: `{key}` is not in the schema")),
                }
            }
        }
        Str { min, max } => match v.as_str() {
            Some(s) if (*min..=*max).contains(&s.chars().count()) => {}
            Some(s) => out.push(format!("{path}: length {} not in {min}..={max}", s.chars().count())),
            None => out.push(format!("{path}: not a string: {v}")),
        },
        OneOf(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => {}
            _ => out.push(format!("{path}: {v} not one of {allowed:?}")),
        },
        Matches(what, ok) => match v.as_str() {
            Some(s) if ok(s) => {}
            _ => out.push(format!("{path}: {v} is not {what}")),
        },
        Integer => {
            if !(v.is_i64() || v.is_u64()) {
                out.push(format!("{path}: not an integer: {v}"));
            }
        }
        Number => {
            if !v.is_number() {
                out.push(format!("{path}: not a number: {v}"));
            }
        }
        Boolean => {
            if !v.is_boolean() {
                out.push(format!("{path}: not a boolean: {v}"));
            }
        }
        Array(item) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check(item, x, &format!("{path}[{i}]"), out);
                }
            }
            None => out.push(format!("{path}: not an array: {v}")),
        },
    }
}

#[test]
fn the_rules_reject_what_payroc_would_not_send() {
    let good = json!({"refundId":"CD3HN88U9F","processingTerminalId":"1234001",
        "order":{"orderId":"R1","dateTime":"2024-07-02T15:30:00Z","description":"d","amount":4999,"currency":"USD"},
        "card":{"type":"Visa Credit","entryMethod":"keyed","cardNumber":"453985******7062","expiryDate":"1230"},
        "transactionResult":{"type":"refund","status":"ready","approvalCode":"000000","authorizedAmount":-4999,
            "currency":"USD","responseCode":"A","responseMessage":"OK5","processorResponseCode":"00"}});
    assert_eq!(violations(&CARD_REFUND, &good), Vec::<String>::new());
    let cases: &[(&str, Value)] = &[
        ("/refundId", json!("CD3HN88U9")),
        ("/card/cardNumber", json!("4539858876047062")),
        ("/card/expiryDate", json!("12/30")),
        ("/order/orderId", json!("x".repeat(25))),
        ("/order/amount", json!(49.99)),
        ("/order/dateTime", json!("2024-07-02 15:30:00")),
        ("/transactionResult/status", json!("returned")),
        ("/transactionResult/responseCode", json!("X")),
        ("/transactionResult/authorizedAmount", json!(-4999.0)),
        ("/transactionResult/responseMessage", json!("")),
        ("/transactionResult/processorResponseCode", json!(0)),
    ];
    for (pointer, bad) in cases {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = bad.clone();
        assert!(!violations(&CARD_REFUND, &v).is_empty(), "{pointer} = {bad} passed");
    }
    let mut v = good.clone();
    v["transactionResult"].as_object_mut().unwrap().remove("responseCode");
    assert!(!violations(&CARD_REFUND, &v).is_empty());
    let mut v = good.clone();
    v["transactionResult"]["authorisedAmount"] = json!(-1);
    assert!(!violations(&CARD_REFUND, &v).is_empty());
    assert!(!violations(&BANK_RESULT, &json!({"type":"unreferencedRefund","status":"ready"})).is_empty());
    assert!(
        !violations(
            &PROBLEM,
            &json!({"type":"about:blank","title":"x","status":400,"detail":"y"})
        )
        .is_empty()
    );
}

// ---- driving the sandbox ----

struct Client {
    sb: RunningSandbox,
    http: reqwest::Client,
    token: String,
    keys: u32,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    raw: Vec<u8>,
    json: Value,
}

async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let raw = res.bytes().await.unwrap().to_vec();
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        raw,
        json,
    }
}

impl Client {
    async fn start() -> Client {
        let sb = spawn("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let res = http
            .post(format!("{}/authorize", sb.identity_url()))
            .header("x-api-key", "schema-test")
            .send()
            .await
            .unwrap();
        let token = reply(res).await.json["access_token"].as_str().unwrap().to_owned();
        Client {
            sb,
            http,
            token,
            keys: 0,
        }
    }

    fn next_key(&mut self) -> String {
        self.keys += 1;
        format!("a0000000-0000-4000-8000-{:012}", self.keys)
    }

    async fn post_with(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.sb.api_url()))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        reply(req.send().await.unwrap()).await
    }

    async fn post(&mut self, path: &str, body: &Value) -> Reply {
        let key = self.next_key();
        self.post_with(path, Some(&key), body).await
    }

    async fn get(&self, path_and_query: &str) -> Reply {
        let res = self
            .http
            .get(format!("{}{path_and_query}", self.sb.api_url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        reply(res).await
    }

    async fn authorize(&self, key: &str) -> Reply {
        let res = self
            .http
            .post(format!("{}/authorize", self.sb.identity_url()))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        reply(res).await
    }
}

fn card(order_id: &str, card_number: &str, amount: i64) -> Value {
    json!({"channel":"moto","processingTerminalId":"1234001","operator":"batch-bot",
        "order":{"orderId":order_id,"description":"Refund for order","amount":amount,"currency":"USD"},
        "customer":{"firstName":"Sarah","lastName":"Hopper",
            "billingAddress":{"address1":"1 Main St","city":"Chicago","state":"IL","country":"US","postalCode":"60601"},
            "contactMethods":[{"type":"email","value":"s@example.com"}]},
        "refundMethod":{"type":"card","cardDetails":{"entryMethod":"keyed","cardholderName":"Sarah Hopper",
          "keyedData":{"dataFormat":"plainText","cardNumber":card_number,"expiryDate":"1230"}}},
        "customFields":[{"name":"batchRow","value":"17"},{"name":"notSetUp","value":"x"}]})
}

fn bank(order_id: &str, account: &str, amount: i64) -> Value {
    json!({"processingTerminalId":"1234001",
        "order":{"orderId":order_id,"description":"","amount":amount,"currency":"USD"},
        "customer":{"notificationLanguage":"en","contactMethods":[{"type":"email","value":"s@example.com"}]},
        "refundMethod":{"type":"ach","secCode":"web","accountType":"checking","nameOnAccount":"Sarah Hopper",
          "accountNumber":account,"routingNumber":"123456789"},
        "customFields":[{"name":"invoiceNumber","value":"INV-1"}]})
}

/// The answers collected, each with the rule it must follow.
#[derive(Default)]
struct Seen {
    checked: Vec<(String, Vec<String>)>,
}

impl Seen {
    fn check(&mut self, kind: &str, rule: &Rule, r: &Reply, status: StatusCode) {
        assert_eq!(r.status, status, "{kind}: {}", String::from_utf8_lossy(&r.raw));
        let want_type = if status.is_success() {
            "application/json"
        } else {
            "application/problem+json"
        };
        assert_eq!(r.content_type, want_type, "{kind}");
        self.checked.push((kind.to_owned(), violations(rule, &r.json)));
    }
}

/// A card 201's `transactionResult`: what each test card must answer.
fn card_result(r: &Reply, status: &str, code: &str, authorized: i64, approval_code: bool) {
    let tr = &r.json["transactionResult"];
    assert_eq!(tr["type"], "refund", "{tr}");
    assert_eq!(tr["status"], status, "{tr}");
    assert_eq!(tr["responseCode"], code, "{tr}");
    assert_eq!(tr["authorizedAmount"].as_i64(), Some(authorized), "{tr}");
    assert_eq!(tr["currency"], "USD", "{tr}");
    assert!(
        tr["responseMessage"].is_string() && tr["processorResponseCode"].is_string(),
        "{tr}"
    );
    assert_eq!(tr.get("approvalCode").is_some(), approval_code, "{tr}");
    if approval_code {
        assert_eq!(tr["approvalCode"].as_str().unwrap().len(), 6, "{tr}");
    }
}

/// A bank 201's `transactionResult`; `code` `None`: no `responseCode`.
fn bank_result(r: &Reply, status: &str, code: Option<&str>) {
    let tr = &r.json["transactionResult"];
    assert_eq!(tr["type"], "unreferencedRefund", "{tr}");
    assert_eq!(tr["status"], status, "{tr}");
    assert_eq!(tr.get("responseCode").and_then(Value::as_str), code, "{tr}");
    assert_eq!(tr["processorResponseCode"], "0", "{tr}");
    assert_eq!(tr["currency"], "USD", "{tr}");
}

#[tokio::test]
async fn every_answer_follows_payrocs_response_schemas() {
    let mut c = Client::start().await;
    let mut seen = Seen::default();
    let created = StatusCode::CREATED;

    // Card: every responseCode, and the contradicting A + declined.
    let cards = [
        ("card A", "4539858876047062", "ready", "A", -5000, true),
        ("card D", "4000000000000002", "declined", "D", 0, false),
        ("card R", "4000000000000127", "declined", "R", 0, false),
        ("card C", "4000000000000135", "declined", "C", 0, false),
        ("card E", "4000000000000119", "pending", "E", -5000, true),
        ("card P", "4000000000000143", "ready", "P", -2500, true),
        (
            "card A with status declined",
            "4000000000000150",
            "declined",
            "A",
            -5000,
            true,
        ),
    ];
    let mut card_ids = Vec::new();
    for (i, (kind, number, status, code, authorized, approval)) in cards.into_iter().enumerate() {
        let r = c.post("/refunds", &card(&format!("C{i}"), number, 5000)).await;
        seen.check(kind, &CARD_REFUND, &r, created);
        card_result(&r, status, code, authorized, approval);
        // The unknown custom field is left out, the known one echoed.
        assert_eq!(
            r.json["customFields"],
            json!([{"name":"batchRow","value":"17"}]),
            "{kind}"
        );
        card_ids.push(r.json["refundId"].as_str().unwrap().to_owned());
    }
    let r = c.post("/refunds", &card("CP", "4000000000000143", 4999)).await;
    seen.check("card P, odd amount", &CARD_REFUND, &r, created);
    card_result(&r, "ready", "P", -2499, true);
    let mut token = card("CT", "x", 5000);
    token["refundMethod"] = json!({"type":"secureToken","token":"2967530000000002"});
    let r = c.post("/refunds", &token).await;
    seen.check("card secure token D", &CARD_REFUND, &r, created);
    card_result(&r, "declined", "D", 0, false);

    // Bank: with and without responseCode, and the decimal authorizedAmount.
    let banks = [
        ("bank approved", "1234567890", "ready", Some("A")),
        ("bank declined with code", "99990002", "declined", Some("D")),
        ("bank declined without code", "99990003", "declined", None),
        ("bank pending without code", "99990004", "pending", None),
        ("bank returned later", "99990005", "ready", Some("A")),
        ("bank decimal authorizedAmount", "99990006", "ready", Some("A")),
        ("bank A with status declined", "99990007", "declined", Some("A")),
    ];
    let mut bank_ids = Vec::new();
    for (i, (kind, account, status, code)) in banks.into_iter().enumerate() {
        let r = c
            .post("/bank-transfer-refunds", &bank(&format!("B{i}"), account, 4999))
            .await;
        seen.check(kind, &BANK_REFUND, &r, created);
        bank_result(&r, status, code);
        assert_eq!(r.json["customFields"][0]["name"], "invoiceNumber");
        let amount = &r.json["transactionResult"]["authorizedAmount"];
        assert_eq!(amount.as_f64(), Some(-4999.0), "{kind}");
        let raw = String::from_utf8_lossy(&r.raw).into_owned();
        if account == "99990006" {
            assert!(
                amount.is_f64() && raw.contains(r#""authorizedAmount":-4999.0"#),
                "{raw}"
            );
        } else {
            assert!(amount.is_i64() && raw.contains(r#""authorizedAmount":-4999,"#), "{raw}");
        }
        bank_ids.push(r.json["refundId"].as_str().unwrap().to_owned());
    }
    let mut token = bank("BT", "1", 4999);
    token["refundMethod"] = json!({"type":"secureToken","token":"2967530000000002","secCode":"web"});
    let r = c.post("/bank-transfer-refunds", &token).await;
    seen.check("bank secure token D", &BANK_REFUND, &r, created);
    bank_result(&r, "declined", Some("D"));

    // Later changes, as GET by id shows them.
    assert!(c.sb.sandbox().reverse(&card_ids[0]));
    assert!(c.sb.sandbox().reverse(&bank_ids[0]));
    c.sb.sandbox().settle();
    let ok = StatusCode::OK;
    let r = c.get(&format!("/refunds/{}", card_ids[0])).await;
    seen.check("card reversal (GET)", &CARD_REFUND, &r, ok);
    assert_eq!(r.json["transactionResult"]["status"], "reversal");
    let r = c.get(&format!("/refunds/{}", card_ids[5])).await;
    seen.check("card P complete (GET)", &CARD_REFUND, &r, ok);
    assert_eq!(r.json["transactionResult"]["status"], "complete");
    let r = c.get(&format!("/refunds/{}", card_ids[4])).await;
    seen.check("card E still pending (GET)", &CARD_REFUND, &r, ok);
    assert_eq!(r.json["transactionResult"]["status"], "pending");
    let r = c.get(&format!("/bank-transfer-refunds/{}", bank_ids[0])).await;
    seen.check("bank reversal (GET)", &BANK_REFUND, &r, ok);
    assert_eq!(r.json["transactionResult"]["status"], "reversal");
    let r = c.get(&format!("/bank-transfer-refunds/{}", bank_ids[3])).await;
    seen.check("bank pending without code, complete (GET)", &BANK_REFUND, &r, ok);
    assert_eq!(r.json["transactionResult"]["status"], "complete");
    let r = c.get(&format!("/bank-transfer-refunds/{}", bank_ids[4])).await;
    seen.check("bank returned after settle (GET)", &BANK_REFUND, &r, ok);
    assert_eq!(r.json["transactionResult"]["status"], "returned");
    let r = c.get(&format!("/bank-transfer-refunds/{}", bank_ids[5])).await;
    seen.check("bank decimal, complete (GET)", &BANK_REFUND, &r, ok);
    assert!(String::from_utf8_lossy(&r.raw).contains(r#""authorizedAmount":-4999.0"#));

    // List pages, with next and previous links.
    let p1 = c.get("/refunds?limit=4").await;
    seen.check("card list, first page", &CARD_LIST, &p1, ok);
    assert_eq!(p1.json["hasMore"], true);
    let next = p1.json["links"][0]["href"].as_str().unwrap().to_owned();
    let p2 = c.get(&next[next.find("/v1").unwrap() + 3..]).await;
    seen.check("card list, next page", &CARD_LIST, &p2, ok);
    assert_eq!(p2.json["links"].as_array().map(Vec::len), Some(2), "{}", p2.json);
    let r = c.get("/refunds?orderId=nothing").await;
    seen.check("card list, empty", &CARD_LIST, &r, ok);
    let r = c.get("/bank-transfer-refunds?limit=100").await;
    seen.check("bank list", &BANK_LIST, &r, ok);
    assert_eq!(r.json["count"], 8);

    // Problems.
    let mut invalid = card("X1", "4539858876047062", 5000);
    invalid["order"]["amount"] = json!(49.99);
    let r = c.post("/refunds", &invalid).await;
    seen.check("400 validation", &PROBLEM, &r, StatusCode::BAD_REQUEST);
    assert!(!r.json["errors"].as_array().unwrap().is_empty());
    let mut no_capability = bank("X2", "1234567890", 5000);
    no_capability["processingTerminalId"] = json!("9999001");
    let r = c.post("/bank-transfer-refunds", &no_capability).await;
    seen.check("400 capabilities-missing", &PROBLEM, &r, StatusCode::BAD_REQUEST);
    let r = c
        .post_with("/refunds", None, &card("X3", "4539858876047062", 5000))
        .await;
    seen.check("400 idempotency-key-missing", &PROBLEM, &r, StatusCode::BAD_REQUEST);
    c.sb.sandbox().forbid_terminal("5555001");
    let mut forbidden = card("X4", "4539858876047062", 5000);
    forbidden["processingTerminalId"] = json!("5555001");
    let r = c.post("/refunds", &forbidden).await;
    seen.check("403 terminal forbidden", &PROBLEM, &r, StatusCode::FORBIDDEN);
    let key = c.next_key();
    c.post_with("/refunds", Some(&key), &card("X5", "4539858876047062", 5000))
        .await;
    let r = c
        .post_with("/refunds", Some(&key), &card("X6", "4539858876047062", 5000))
        .await;
    seen.check("409 idempotency-key-in-use", &PROBLEM, &r, StatusCode::CONFLICT);
    let r = c.get("/refunds/NOSUCHID00").await;
    seen.check("404 not-found", &PROBLEM, &r, StatusCode::NOT_FOUND);
    let res = c
        .http
        .get(format!("{}/refunds", c.sb.api_url()))
        .bearer_auth("sbx_unknown")
        .send()
        .await
        .unwrap();
    seen.check("401 api", &PROBLEM, &reply(res).await, StatusCode::UNAUTHORIZED);

    // Identity.
    let r = c.authorize("another-key").await;
    seen.check("identity 200", &TOKEN, &r, StatusCode::OK);
    let r = c.authorize("").await;
    seen.check("identity 401", &PROBLEM, &r, StatusCode::UNAUTHORIZED);
    let r = c.authorize("sandbox-forbidden-key").await;
    seen.check("identity 403", &PROBLEM, &r, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json,
        json!({"type":"https://docs.payroc.com/api/errors#forbidden","title":"Forbidden","status":403,
            "detail":"API key not allowed"})
    );

    let failures: Vec<String> = seen
        .checked
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(kind, v)| format!("{kind}: {}", v.join("; ")))
        .collect();
    assert!(failures.is_empty(), "schema violations:\n{}", failures.join("\n"));
    assert_eq!(seen.checked.len(), 38, "every answer kind was checked");
}
