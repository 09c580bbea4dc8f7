//! Requests refused before anything is made: a terminal without the capability, every validation
//! error with the parameter it names, a wrong content type, and a missing or malformed
//! Idempotency-Key. Shared helpers come from `super`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{KEY_A, KEY_B, assert_problem, bank_body, card_body, parameters, start};
use crate::SandboxConfig;

#[tokio::test]
async fn terminal_without_capability_is_400_and_creates_nothing() {
    let t = start(SandboxConfig::default()).await;
    let mut b = card_body("O1", "4539858876047062");
    b["processingTerminalId"] = json!("9999001");
    let r = t.post("/refunds", Some(KEY_A), &b).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "capabilities-missing");
    assert_eq!(parameters(&r), ["processingTerminalId"]);
    let mut b = bank_body("B1", "1234567890");
    b["processingTerminalId"] = json!("9999001");
    let r = t.post("/bank-transfer-refunds", Some(KEY_B), &b).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "capabilities-missing");
    assert!(t.stats().refunds.is_empty());
}

#[tokio::test]
async fn validation_errors_name_the_parameter() {
    let t = start(SandboxConfig::default()).await;
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["order"]["orderId"] = json!("123456789012345678901234567890123456");
                b
            },
            &["order.orderId"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["order"]["amount"] = json!(49.99);
                b
            },
            &["order.amount"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["order"]["amount"] = json!(0);
                b
            },
            &["order.amount"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["order"]["currency"] = json!("usd");
                b
            },
            &["order.currency"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["order"]["description"] = json!("");
                b
            },
            &["order.description"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b.as_object_mut().unwrap().remove("channel");
                b
            },
            &["channel"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["channel"] = json!("web");
                b
            },
            &["channel"],
        ),
        (
            "/refunds",
            card_body("O1", "45398588760"),
            &["refundMethod.cardDetails.keyedData.cardNumber"],
        ),
        (
            "/refunds",
            card_body("O1", "4539 8588 7604 7062"),
            &["refundMethod.cardDetails.keyedData.cardNumber"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["refundMethod"]["cardDetails"]["keyedData"]["expiryDate"] = json!("3012");
                b
            },
            &["refundMethod.cardDetails.keyedData.expiryDate"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["customFields"][0]["name"] = json!("x".repeat(57));
                b
            },
            &["customFields[0].name"],
        ),
        (
            "/refunds",
            {
                let mut b = card_body("O1", "4539858876047062");
                b["processingTerminalId"] = json!("123");
                b
            },
            &["processingTerminalId"],
        ),
        (
            "/bank-transfer-refunds",
            {
                let mut b = bank_body("B1", "1234567890");
                b["channel"] = json!("moto");
                b["ipAddress"] = json!({"type":"ipv4","value":"1.2.3.4"});
                b
            },
            &["channel", "ipAddress"],
        ),
        (
            "/bank-transfer-refunds",
            bank_body("B1", "123"),
            &["refundMethod.accountNumber"],
        ),
        (
            "/bank-transfer-refunds",
            {
                let mut b = bank_body("B1", "1234567890");
                b["refundMethod"]["routingNumber"] = json!("12345678");
                b["refundMethod"]["secCode"] = json!("xyz");
                b
            },
            &["refundMethod.routingNumber", "refundMethod.secCode"],
        ),
        (
            "/bank-transfer-refunds",
            {
                let mut b = bank_body("B1", "1234567890");
                b["refundMethod"]["type"] = json!("pad");
                b
            },
            &["refundMethod.type"],
        ),
    ];
    for (path, body, want) in &cases {
        let r = t.post(path, Some(KEY_A), body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad-request");
        assert_eq!(parameters(&r), *want, "{path} {body}");
        for e in r.json["errors"].as_array().unwrap() {
            assert!(e["detail"].is_string() && e["message"].is_string());
        }
    }
    // Not JSON at all.
    let r = t
        .post_raw("/refunds", Some(KEY_A), b"{not json".to_vec(), "application/json")
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad-request");
    assert!(t.stats().refunds.is_empty());

    // A 400 stores nothing: the same key works once the body is fixed.
    let r = t
        .post("/refunds", Some(KEY_A), &card_body("O1", "4539858876047062"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Bank description may be empty (0-256).
    let mut b = bank_body("B1", "1234567890");
    b["order"]["description"] = json!("");
    assert_eq!(
        t.post("/bank-transfer-refunds", Some(KEY_B), &b).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let t = start(SandboxConfig::default()).await;
    let body = card_body("O1", "4539858876047062").to_string().into_bytes();
    let r = t.post_raw("/refunds", Some(KEY_A), body.clone(), "text/plain").await;
    assert_problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    let r = t
        .post_raw("/refunds", Some(KEY_A), body, "application/json; charset=utf-8")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn missing_or_malformed_idempotency_key_is_400() {
    let t = start(SandboxConfig::default()).await;
    let body = card_body("O1", "4539858876047062");
    let r = t.post("/refunds", None, &body).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "idempotency-key-missing");
    for bad in [
        "row-17",
        "6f1c1e3a-2b4d-1c8e-9f00-1234567890ab",
        "6f1c1e3a2b4d4c8e9f001234567890ab",
    ] {
        let r = t.post("/refunds", Some(bad), &body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad-request");
        assert_eq!(parameters(&r), ["Idempotency-Key"]);
    }
    assert!(t.stats().refunds.is_empty());
}
