//! The checker: every way a JSON value breaks a `Rule` (see `rules.rs`), and a test that the rules
//! reject what Payroc would not send.

use serde_json::{Value, json};

use super::Rule::{self, Array, Boolean, Integer, Matches, Number, Object, OneOf, Str};
use super::rules::{BANK_RESULT, CARD_REFUND, PROBLEM};

/// Every way `v` breaks `rule`, as `path: what`.
pub(super) fn violations(rule: &Rule, v: &Value) -> Vec<String> {
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
