//! End-to-end tests over real loopback HTTP (port 0) with `reqwest`, the
//! client family `refund-batch` uses, so transport-level faults are seen the
//! way the real client sees them.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clock::{self, DAY};
use crate::{RunningSandbox, SandboxConfig, Stats, spawn};

const KEY_A: &str = "0b8a3f1e-7c2d-4e5f-8a9b-0c1d2e3f4a5b";
const KEY_B: &str = "1c9b4f2e-8d3e-4f60-9bac-1d2e3f4a5b6c";
const KEY_C: &str = "2dac5f3e-9e4f-4071-8cbd-2e3f4a5b6c7d";

struct T {
    sb: RunningSandbox,
    http: reqwest::Client,
    token: String,
}

async fn start(config: SandboxConfig) -> T {
    let sb = spawn("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let http = reqwest::Client::new();
    let token = authorize(&http, &sb, "any-key").await;
    T { sb, http, token }
}

async fn authorize(http: &reqwest::Client, sb: &RunningSandbox, key: &str) -> String {
    let res = http
        .post(format!("{}/authorize", sb.identity_url()))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

fn card_body(order_id: &str, card_number: &str) -> Value {
    json!({"channel":"moto","processingTerminalId":"1234001","operator":"batch-bot",
        "order":{"orderId":order_id,"description":"Refund for order","amount":4999,"currency":"USD"},
        "refundMethod":{"type":"card","cardDetails":{"entryMethod":"keyed","cardholderName":"Sarah Hopper",
          "keyedData":{"dataFormat":"plainText","cardNumber":card_number,"expiryDate":"1230"}}},
        "customFields":[{"name":"batchRow","value":"17"}]})
}

fn bank_body(order_id: &str, account: &str) -> Value {
    json!({"processingTerminalId":"1234001",
        "order":{"orderId":order_id,"description":"Refund for order","amount":2500,"currency":"USD"},
        "customer":{"notificationLanguage":"en","contactMethods":[{"type":"email","value":"s@example.com"}]},
        "refundMethod":{"type":"ach","secCode":"web","accountType":"checking","nameOnAccount":"Sarah Hopper",
          "accountNumber":account,"routingNumber":"123456789"}})
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    raw: Vec<u8>,
    json: Value,
}

impl T {
    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        self.post_raw(path, key, body.to_string().into_bytes(), "application/json")
            .await
    }

    async fn post_raw(&self, path: &str, key: Option<&str>, body: Vec<u8>, ctype: &str) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.sb.api_url()))
            .bearer_auth(&self.token)
            .header("content-type", ctype)
            .body(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        reply(req.send().await.unwrap()).await
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

    fn stats(&self) -> Stats {
        self.sb.sandbox().stats()
    }

    /// `POST /__sandbox/{what}` (no auth), returning the status.
    async fn control(&self, what: &str) -> Reply {
        let res = self
            .http
            .post(format!("{}/__sandbox/{what}", self.sb.identity_url()))
            .send()
            .await
            .unwrap();
        reply(res).await
    }
}

async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let raw = res.bytes().await.unwrap().to_vec();
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        raw,
        json,
    }
}

fn ctype(r: &Reply) -> &str {
    r.headers.get("content-type").unwrap().to_str().unwrap()
}

fn assert_problem(r: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "body: {}", r.json);
    assert_eq!(ctype(r), "application/problem+json");
    assert_eq!(r.json["type"], format!("https://docs.payroc.com/api/errors#{kind}"));
    assert_eq!(r.json["status"], status.as_u16());
    assert!(r.json["title"].is_string() && r.json["detail"].is_string());
}

fn parameters(r: &Reply) -> Vec<String> {
    r.json["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["parameter"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn authorize_ok_and_bad_key() {
    let sb = spawn(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            api_key: Some("secret".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/authorize", sb.identity_url());
    let ok = reply(http.post(&url).header("x-api-key", "secret").send().await.unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json["token_type"], "Bearer");
    assert_eq!(ok.json["expires_in"], 3600);
    assert!(ok.json["access_token"].as_str().unwrap().len() > 16);
    assert!(ok.json["scope"].is_string());

    let bad = reply(http.post(&url).header("x-api-key", "wrong").send().await.unwrap()).await;
    assert_problem(&bad, StatusCode::UNAUTHORIZED, "not-authorized");
    let missing = reply(http.post(&url).send().await.unwrap()).await;
    assert_problem(&missing, StatusCode::UNAUTHORIZED, "not-authorized");

    let s = sb.sandbox().stats();
    assert_eq!((s.tokens_issued, s.unauthorized), (1, 2));
    sb.shutdown().await;
}

#[tokio::test]
async fn missing_or_unknown_token_is_401() {
    let t = start(SandboxConfig::default()).await;
    let url = format!("{}/refunds", t.sb.api_url());
    let body = card_body("O1", "4539858876047062").to_string();
    let none = reply(
        t.http
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", KEY_A)
            .body(body.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(&none, StatusCode::UNAUTHORIZED, "not-authorized");
    let unknown = reply(
        t.http
            .post(&url)
            .bearer_auth("sbx_nope")
            .header("content-type", "application/json")
            .header("idempotency-key", KEY_A)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(&unknown, StatusCode::UNAUTHORIZED, "not-authorized");
    let list = reply(t.http.get(format!("{url}?orderId=O1")).send().await.unwrap()).await;
    assert_problem(&list, StatusCode::UNAUTHORIZED, "not-authorized");
    assert!(t.stats().refunds.is_empty());
    assert_eq!(t.stats().unauthorized, 3);
}

#[tokio::test]
async fn expired_token_is_401_and_creates_nothing() {
    // Advertised 3600 s, but the token dies at once: the "early expiry" fault.
    let t = start(SandboxConfig {
        token_actual_lifetime: Some(Duration::ZERO),
        ..Default::default()
    })
    .await;
    let r = t
        .post("/refunds", Some(KEY_A), &card_body("O1", "4539858876047062"))
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "not-authorized");
    let s = t.stats();
    assert!(s.refunds.is_empty());
    assert_eq!(s.faults.token_expired_early, 1);
    assert_eq!(s.requests_per_key[KEY_A], 1);
}

#[tokio::test]
async fn card_refund_approved() {
    let t = start(SandboxConfig::default()).await;
    let r = t
        .post(
            "/refunds",
            Some(KEY_A),
            &card_body("R20240702-0001", "4539858876047062"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(ctype(&r), "application/json");
    let id = r.json["refundId"].as_str().unwrap();
    assert_eq!(id.len(), 10);
    assert!(id.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    let location = r.headers["location"].to_str().unwrap();
    assert!(location.ends_with(&format!("/v1/refunds/{id}")), "{location}");
    assert_eq!(r.json["processingTerminalId"], "1234001");
    assert_eq!(r.json["operator"], "batch-bot");
    assert_eq!(r.json["order"]["orderId"], "R20240702-0001");
    assert_eq!(r.json["order"]["amount"], 4999);
    assert!(r.json["order"]["dateTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.json["card"]["cardNumber"], "453985******7062");
    assert_eq!(r.json["card"]["expiryDate"], "1230");
    assert_eq!(r.json["card"]["entryMethod"], "keyed");
    let tr = &r.json["transactionResult"];
    assert_eq!(tr["type"], "refund");
    assert_eq!(tr["status"], "ready");
    assert_eq!(tr["responseCode"], "A");
    assert_eq!(tr["responseMessage"], "OK5");
    assert_eq!(tr["authorizedAmount"], -4999);
    assert_eq!(tr["currency"], "USD");
    assert!(tr["approvalCode"].is_string());
    assert_eq!(r.json["customFields"][0]["name"], "batchRow");
    assert!(!String::from_utf8_lossy(&r.raw).contains("4539858876047062"));

    // The location resolves to the same body.
    let one = t.get(&format!("/refunds/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.raw, r.raw);
    // ...but not on the bank endpoint, and unknown ids are 404.
    assert_problem(
        &t.get(&format!("/bank-transfer-refunds/{id}")).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_problem(&t.get("/refunds/NOSUCHID00").await, StatusCode::NOT_FOUND, "not-found");

    let s = t.stats();
    assert_eq!(s.created_per_order["card|1234001|R20240702-0001"], 1);
    assert_eq!(s.refunds[0].refund_id, id);
    assert_eq!(s.refunds[0].idempotency_key, KEY_A);
    assert_eq!(s.refunds[0].amount, 4999);
}

#[tokio::test]
async fn secure_token_card_refund_approved() {
    let t = start(SandboxConfig::default()).await;
    let mut b = card_body("O1", "4539858876047062");
    b["refundMethod"] = json!({"type":"secureToken","token":"296753123456"});
    let r = t.post("/refunds", Some(KEY_A), &b).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["transactionResult"]["responseCode"], "A");
    assert_eq!(r.json["card"]["secureToken"]["token"], "296753123456");
}

#[tokio::test]
async fn bank_refund_approved() {
    let t = start(SandboxConfig::default()).await;
    let r = t
        .post("/bank-transfer-refunds", Some(KEY_A), &bank_body("B1", "1234567890"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.json["refundId"].as_str().unwrap();
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/v1/bank-transfer-refunds/{id}"))
    );
    assert_eq!(r.json["bankAccount"]["type"], "ach");
    assert_eq!(r.json["bankAccount"]["accountNumber"], "****7890");
    assert_eq!(r.json["bankAccount"]["routingNumber"], "*****6789");
    assert_eq!(r.json["bankAccount"]["secCode"], "web");
    let tr = &r.json["transactionResult"];
    assert_eq!(tr["type"], "unreferencedRefund");
    assert_eq!(tr["status"], "ready");
    assert_eq!(tr["responseCode"], "A");
    assert_eq!(tr["responseMessage"], "NoError");
    assert_eq!(tr["authorizedAmount"], -2500);
    assert!(!String::from_utf8_lossy(&r.raw).contains("1234567890"));
    assert_eq!(t.get(&format!("/bank-transfer-refunds/{id}")).await.raw, r.raw);
    assert_eq!(t.stats().created_per_order["bank|1234001|B1"], 1);
}

#[tokio::test]
async fn documented_decline_values() {
    let t = start(SandboxConfig::default()).await;
    let keys = [
        "30000000-0000-4000-8000-000000000001",
        "30000000-0000-4000-8000-000000000002",
        "30000000-0000-4000-8000-000000000003",
        "30000000-0000-4000-8000-000000000004",
        "30000000-0000-4000-8000-000000000005",
        "30000000-0000-4000-8000-000000000006",
    ];
    let mut token_card = card_body("C4", "x");
    token_card["refundMethod"] = json!({"type":"secureToken","token":"2967530000000002"});
    let mut token_bank = bank_body("B2", "1");
    token_bank["refundMethod"] = json!({"type":"secureToken","token":"2967530000000002","secCode":"web"});
    let cases = [
        ("/refunds", card_body("C1", "4000000000000002"), "declined", "D"),
        ("/refunds", card_body("C2", "4000000000000127"), "declined", "R"),
        ("/refunds", card_body("C3", "4000000000000119"), "pending", "E"),
        ("/refunds", token_card, "declined", "D"),
        ("/bank-transfer-refunds", bank_body("B1", "99990002"), "declined", "D"),
        ("/bank-transfer-refunds", token_bank, "declined", "D"),
    ];
    for ((path, body, status, code), key) in cases.iter().zip(keys) {
        let r = t.post(path, Some(key), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path} {}", r.json);
        assert_eq!(r.json["transactionResult"]["status"], *status, "{}", r.json);
        assert_eq!(r.json["transactionResult"]["responseCode"], *code, "{}", r.json);
        assert!(r.json["refundId"].is_string());
    }
    // Declined refunds are still created and counted.
    let s = t.stats();
    assert_eq!(s.refunds.len(), 6);
    for k in [
        "card|1234001|C1",
        "card|1234001|C2",
        "card|1234001|C3",
        "card|1234001|C4",
        "bank|1234001|B1",
        "bank|1234001|B2",
    ] {
        assert_eq!(s.created_per_order[k], 1, "{k}");
    }
}

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
async fn idempotent_replay_returns_first_response_and_creates_once() {
    let t = start(SandboxConfig::default()).await;
    let body = card_body("O1", "4539858876047062");
    let first = t.post("/refunds", Some(KEY_A), &body).await;
    let second = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.raw, second.raw);
    assert_eq!(first.headers["location"], second.headers["location"]);
    let s = t.stats();
    assert_eq!(s.created_per_order["card|1234001|O1"], 1);
    assert_eq!(s.requests_per_key[KEY_A], 2);
    assert_eq!(s.refund_posts, 2);
}

#[tokio::test]
async fn same_key_different_request_is_409() {
    let t = start(SandboxConfig::default()).await;
    let body = card_body("O1", "4539858876047062");
    assert_eq!(t.post("/refunds", Some(KEY_A), &body).await.status, StatusCode::CREATED);
    let mut other = body.clone();
    other["order"]["amount"] = json!(5000);
    let r = t.post("/refunds", Some(KEY_A), &other).await;
    assert_problem(&r, StatusCode::CONFLICT, "idempotency-key-in-use");
    assert_eq!(
        r.json["detail"],
        "'Idempotency-Key' is already in use against a different request"
    );
    // Same JSON value, different bytes (whitespace) is a different body.
    let spaced = serde_json::to_vec_pretty(&body).unwrap();
    let r = t.post_raw("/refunds", Some(KEY_A), spaced, "application/json").await;
    assert_problem(&r, StatusCode::CONFLICT, "idempotency-key-in-use");
    // Same key on the other endpoint.
    let r = t
        .post("/bank-transfer-refunds", Some(KEY_A), &bank_body("B1", "1234567890"))
        .await;
    assert_problem(&r, StatusCode::CONFLICT, "idempotency-key-in-use");
    // Even an invalid body under a used key is a conflict, not a 400.
    let r = t.post("/refunds", Some(KEY_A), &json!({})).await;
    assert_problem(&r, StatusCode::CONFLICT, "idempotency-key-in-use");
    assert_eq!(t.stats().refunds.len(), 1);
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

#[tokio::test]
async fn rate_429_sends_retry_after_and_creates_nothing() {
    let t = start(SandboxConfig {
        rate_429: 1.0,
        retry_after: Duration::from_millis(250),
        ..Default::default()
    })
    .await;
    let r = t
        .post("/refunds", Some(KEY_A), &card_body("O1", "4539858876047062"))
        .await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "too-many-requests");
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.headers["retry-after-ms"], "250");
    let s = t.stats();
    assert!(s.refunds.is_empty());
    assert_eq!(s.faults.too_many_requests, 1);
    assert_eq!(s.requests_per_key[KEY_A], 1);
}

#[tokio::test]
async fn rate_503_sends_retry_after_and_creates_nothing() {
    let t = start(SandboxConfig {
        rate_503: 1.0,
        retry_after: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let r = t
        .post("/bank-transfer-refunds", Some(KEY_A), &bank_body("B1", "1234567890"))
        .await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "service-unavailable");
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.headers["retry-after-ms"], "2000");
    assert!(t.stats().refunds.is_empty());
    assert_eq!(t.stats().faults.service_unavailable, 1);
}

#[tokio::test]
async fn error_500_after_create_then_replay_gives_201_once() {
    let t = start(SandboxConfig {
        rate_500_after_create: 1.0,
        ..Default::default()
    })
    .await;
    let body = card_body("O1", "4539858876047062");
    let r = t.post("/refunds", Some(KEY_A), &body).await;
    assert_problem(&r, StatusCode::INTERNAL_SERVER_ERROR, "api-error");
    assert_eq!(t.stats().refunds.len(), 1, "the refund was made despite the 500");
    let again = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.json["refundId"], t.stats().refunds[0].refund_id.as_str());
    let s = t.stats();
    assert_eq!(s.created_per_order["card|1234001|O1"], 1);
    assert_eq!(s.faults.error_500_after_create, 1);
}

#[tokio::test]
async fn drop_after_create_is_a_transport_error_and_refund_exists() {
    let t = start(SandboxConfig {
        rate_drop_after_create: 1.0,
        ..Default::default()
    })
    .await;
    let body = card_body("O1", "4539858876047062");
    let res = t
        .http
        .post(format!("{}/refunds", t.sb.api_url()))
        .bearer_auth(&t.token)
        .header("content-type", "application/json")
        .header("idempotency-key", KEY_A)
        .body(body.to_string())
        .send()
        .await;
    let err = match res {
        Err(e) => e,
        Ok(r) => panic!("expected a transport error, got HTTP {}", r.status()),
    };
    assert!(!err.is_status(), "{err:?}");
    assert_eq!(t.stats().refunds.len(), 1);
    assert_eq!(t.stats().faults.drop_after_create, 1);

    // The same on the wire: not a single byte of a response.
    let mut tcp = tokio::net::TcpStream::connect(t.sb.local_addr()).await.unwrap();
    let payload = card_body("O2", "4539858876047062").to_string();
    let req = format!(
        "POST /v1/refunds HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\nidempotency-key: {KEY_B}\r\ncontent-length: {}\r\n\r\n{payload}",
        t.token,
        payload.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got).await;
    assert!(got.is_empty(), "got {:?}", String::from_utf8_lossy(&got));
    assert_eq!(t.stats().refunds.len(), 2);

    // A retry with the same key and body replays the 201 (replays are never dropped).
    let r = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json["refundId"], t.stats().refunds[0].refund_id.as_str());
    assert_eq!(t.stats().created_per_order["card|1234001|O1"], 1);
}

#[tokio::test]
async fn list_by_order_id_with_pagination() {
    let t = start(SandboxConfig::default()).await;
    let mut other_terminal = card_body("A", "4539858876047062");
    other_terminal["processingTerminalId"] = json!("5555001");
    for (key, body) in [
        (KEY_A, card_body("A", "4539858876047062")),
        (KEY_B, card_body("A", "4000000000000002")),
        (KEY_C, card_body("B", "4539858876047062")),
        ("40000000-0000-4000-8000-000000000001", other_terminal),
    ] {
        assert_eq!(t.post("/refunds", Some(key), &body).await.status, StatusCode::CREATED);
    }
    assert_eq!(
        t.post(
            "/bank-transfer-refunds",
            Some("40000000-0000-4000-8000-000000000002"),
            &bank_body("A", "1234567890")
        )
        .await
        .status,
        StatusCode::CREATED
    );

    let r = t.get("/refunds?processingTerminalId=1234001&orderId=A").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.json["limit"].as_u64(), r.json["count"].as_u64()),
        (Some(10), Some(2))
    );
    assert_eq!(r.json["hasMore"], false);
    assert_eq!(r.json["links"], json!([]));
    let data = r.json["data"].as_array().unwrap();
    assert!(
        data.iter()
            .all(|d| d["order"]["orderId"] == "A" && d["card"].is_object())
    );
    assert_eq!(data[1]["transactionResult"]["responseCode"], "D");

    // orderId alone spans terminals.
    assert_eq!(t.get("/refunds?orderId=A").await.json["count"], 3);
    // Pagination.
    let p1 = t.get("/refunds?processingTerminalId=1234001&orderId=A&limit=1").await;
    assert_eq!(
        (p1.json["count"].as_u64(), p1.json["hasMore"].as_bool()),
        (Some(1), Some(true))
    );
    let next = p1.json["links"][0]["href"].as_str().unwrap();
    assert_eq!(p1.json["links"][0]["rel"], "next");
    let next_path = &next[next.find("/v1").unwrap() + 3..];
    let p2 = t.get(next_path).await;
    assert_eq!(
        (p2.json["count"].as_u64(), p2.json["hasMore"].as_bool()),
        (Some(1), Some(false))
    );
    assert_ne!(p2.json["data"][0]["refundId"], p1.json["data"][0]["refundId"]);
    // Bank list is separate.
    let b = t
        .get("/bank-transfer-refunds?processingTerminalId=1234001&orderId=A")
        .await;
    assert_eq!(b.json["count"], 1);
    assert_eq!(b.json["data"][0]["transactionResult"]["type"], "unreferencedRefund");
    // Nothing found is an empty page, not 404.
    let none = t.get("/refunds?orderId=nope").await;
    assert_eq!((none.status, none.json["count"].as_u64()), (StatusCode::OK, Some(0)));
    assert_problem(
        &t.get("/refunds?limit=500").await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    );
}

#[tokio::test]
async fn stats_endpoint_serves_the_same_json() {
    let t = start(SandboxConfig::default()).await;
    t.post("/refunds", Some(KEY_A), &card_body("O1", "4539858876047062"))
        .await;
    let res = t
        .http
        .get(format!("{}/__sandbox/stats", t.sb.identity_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let over_http: Stats = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(over_http, t.stats());
    assert_eq!(over_http.refunds.len(), 1);
    assert_eq!(over_http.tokens_issued, 1);
    assert_eq!(over_http.peak_in_flight, 1);
}

#[tokio::test]
async fn concurrent_identical_requests_create_one_refund() {
    // A little server latency so the requests really overlap.
    let t = start(SandboxConfig {
        latency: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let t = std::sync::Arc::new(t);
    let body = card_body("O1", "4539858876047062");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (t, body) = (t.clone(), body.clone());
        tasks.push(tokio::spawn(
            async move { t.post("/refunds", Some(KEY_A), &body).await.raw },
        ));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        bodies.push(task.await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let s = t.stats();
    assert_eq!(s.created_per_order["card|1234001|O1"], 1);
    assert_eq!(s.requests_per_key[KEY_A], 8);
    assert!(s.peak_in_flight >= 2, "peak {}", s.peak_in_flight);
    assert_eq!(s.faults.latency, 8);
}

#[tokio::test]
async fn same_seed_same_ids_and_fault_pattern() {
    async fn run() -> Vec<(u16, String)> {
        let t = start(SandboxConfig {
            seed: 99,
            rate_500_after_create: 0.5,
            ..Default::default()
        })
        .await;
        let mut out = Vec::new();
        for i in 0..12u32 {
            let key = format!("50000000-0000-4000-8000-{i:012}");
            let r = t
                .post("/refunds", Some(&key), &card_body(&format!("O{i}"), "4539858876047062"))
                .await;
            out.push((r.status.as_u16(), t.stats().refunds.last().unwrap().refund_id.clone()));
        }
        out
    }
    let (a, b) = (run().await, run().await);
    assert_eq!(a, b);
    assert!(a.iter().any(|(s, _)| *s == 500) && a.iter().any(|(s, _)| *s == 201));
}

// ---- time: creation times, date windows, ageing ----

#[test]
fn clock_formats_and_parses_iso_8601() {
    assert_eq!(clock::civil_from_days(0), (1970, 1, 1));
    assert_eq!(clock::civil_from_days(19_906), (2024, 7, 2));
    assert_eq!(clock::civil_from_days(11_016), (2000, 2, 29));
    for d in (-800_000..800_000).step_by(997) {
        let (y, m, day) = clock::civil_from_days(d);
        assert_eq!(clock::days_from_civil(y, i64::from(m), i64::from(day)), d);
    }
    assert_eq!(clock::rfc3339(0), "1970-01-01T00:00:00Z");

    let t = clock::parse("2024-07-01T15:30:00Z").unwrap();
    assert_eq!(clock::rfc3339(t), "2024-07-01T15:30:00Z");
    let midnight = clock::parse("2024-07-01").unwrap();
    assert_eq!(clock::rfc3339(midnight), "2024-07-01T00:00:00Z");
    assert_eq!(t - midnight, 15 * 3600 + 30 * 60);
    for same in [
        "2024-07-01t15:30:00z",
        "2024-07-01T17:30:00+02:00",
        "2024-07-01T10:00:00-05:30",
        "2024-07-01T15:30:00.999Z",
        "2024-07-01T15:30:00.1+00:00",
    ] {
        assert_eq!(clock::parse(same), Some(t), "{same}");
    }
    assert_eq!(
        clock::rfc3339(clock::parse("2024-02-29").unwrap()),
        "2024-02-29T00:00:00Z"
    );
    assert_eq!(
        clock::rfc3339(clock::parse("2026-11-25T13:02:11Z").unwrap()),
        "2026-11-25T13:02:11Z"
    );
    for bad in [
        "",
        "yesterday",
        "2024-7-01",
        "2024-07-1",
        "2024/07/01",
        "2024-13-01",
        "2024-00-10",
        "2023-02-29",
        "2024-04-31",
        "2024-07-00",
        "2024-07-01T24:00:00Z",
        "2024-07-01T15:60:00Z",
        "2024-07-01T15:30:60Z",
        "2024-07-01T15:30:00",
        "2024-07-01T15:30Z",
        "2024-07-01 15:30:00Z",
        "2024-07-01T15:30:00 02:00",
        "2024-07-01T15:30:00+0200",
        "2024-07-01T15:30:00+24:00",
        "2024-07-01T15:30:00.Z",
        "2024-07-01T15:30:00ZZ",
        "2024-07-01Z",
        "+2024-07-01",
        "２０２４-07-01",
    ] {
        assert_eq!(clock::parse(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn created_at_is_the_order_date_time() {
    let t = start(SandboxConfig::default()).await;
    let before = clock::now();
    let r = t
        .post("/refunds", Some(KEY_A), &card_body("O1", "4539858876047062"))
        .await;
    let b = t
        .post("/bank-transfer-refunds", Some(KEY_B), &bank_body("B1", "1234567890"))
        .await;
    let after = clock::now();
    let s = t.stats();
    for (reply, record) in [(&r, &s.refunds[0]), (&b, &s.refunds[1])] {
        assert_eq!(reply.status, StatusCode::CREATED);
        let at = record.created_at.as_str();
        assert_eq!(reply.json["order"]["dateTime"], at);
        assert_eq!(at.len(), 20, "{at}");
        assert!(at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
        let secs = clock::parse(at).unwrap();
        assert!((before..=after).contains(&secs), "{at}");
    }
}

/// The `orderId`s of a list page, in order.
fn orders(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let data = r.json["data"].as_array().unwrap();
    assert_eq!(r.json["count"].as_u64(), Some(data.len() as u64));
    data.iter()
        .map(|d| d["order"]["orderId"].as_str().unwrap().to_owned())
        .collect()
}

/// The API path (after `/v1`) of a page's link with `rel`.
fn link(r: &Reply, rel: &str) -> Option<String> {
    let href = r.json["links"].as_array()?.iter().find(|l| l["rel"] == rel)?["href"]
        .as_str()?
        .to_owned();
    Some(href[href.find("/v1").unwrap() + 3..].to_owned())
}

fn key(n: u32) -> String {
    format!("70000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn lists_filter_by_date_window_with_a_24_hour_default() {
    let t = start(SandboxConfig::default()).await;
    t.post("/refunds", Some(&key(1)), &card_body("OLD", "4539858876047062"))
        .await;
    t.post(
        "/bank-transfer-refunds",
        Some(&key(2)),
        &bank_body("BOLD", "1234567890"),
    )
    .await;
    t.sb.sandbox().age(3);
    t.post("/refunds", Some(&key(3)), &card_body("NEW", "4539858876047062"))
        .await;
    let s = t.stats();
    let (old_at, new_at) = (s.refunds[0].created_at.clone(), s.refunds[2].created_at.clone());
    let ten_days_ago = &clock::rfc3339(clock::now() - 10 * DAY)[..10];

    // No dateFrom: the last 24 hours only, on every query shape.
    assert_eq!(orders(&t.get("/refunds").await), ["NEW"]);
    assert_eq!(orders(&t.get("/refunds?orderId=OLD").await), Vec::<String>::new());
    assert_eq!(
        orders(&t.get("/refunds?processingTerminalId=1234001&orderId=OLD").await),
        Vec::<String>::new()
    );
    assert_eq!(orders(&t.get("/bank-transfer-refunds").await), Vec::<String>::new());
    // dateTo alone does not lift the default lower bound.
    assert_eq!(
        orders(&t.get(&format!("/refunds?dateTo={old_at}")).await),
        Vec::<String>::new()
    );

    // A plain date is midnight UTC; no dateTo is no upper bound.
    let all = t.get(&format!("/refunds?dateFrom={ten_days_ago}")).await;
    assert_eq!(orders(&all), ["OLD", "NEW"]);
    assert_eq!(
        orders(
            &t.get(&format!(
                "/refunds?processingTerminalId=1234001&orderId=OLD&dateFrom={ten_days_ago}"
            ))
            .await
        ),
        ["OLD"]
    );
    assert_eq!(
        orders(&t.get(&format!("/bank-transfer-refunds?dateFrom={ten_days_ago}")).await),
        ["BOLD"]
    );
    // Both bounds are inclusive, to the second.
    assert_eq!(orders(&t.get(&format!("/refunds?dateFrom={new_at}")).await), ["NEW"]);
    assert_eq!(
        orders(
            &t.get(&format!("/refunds?dateFrom={ten_days_ago}&dateTo={old_at}"))
                .await
        ),
        ["OLD"]
    );
    assert_eq!(
        orders(&t.get(&format!("/refunds?dateFrom={old_at}&dateTo={old_at}")).await),
        ["OLD"]
    );
    // An offset and a fraction of a second are understood.
    let plus_two = clock::rfc3339(clock::parse(&old_at).unwrap() + 7200);
    let plus_two = format!("{}.750%2B02:00", &plus_two[..19]);
    assert_eq!(
        orders(&t.get(&format!("/refunds?dateFrom={plus_two}&dateTo={plus_two}")).await),
        ["OLD"]
    );
    // dateFrom after dateTo matches nothing.
    assert_eq!(
        orders(&t.get(&format!("/refunds?dateFrom={new_at}&dateTo={old_at}")).await),
        Vec::<String>::new()
    );

    // Malformed values are a 400 naming each bad parameter.
    for (query, want) in [
        ("dateFrom=yesterday", &["dateFrom"][..]),
        ("dateFrom=2024-07-01T15:30:00", &["dateFrom"]),
        ("dateTo=2024-13-01", &["dateTo"]),
        ("dateFrom=", &["dateFrom"]),
        ("limit=0&dateFrom=2024-02-30&dateTo=x", &["limit", "dateFrom", "dateTo"]),
    ] {
        let r = t.get(&format!("/refunds?{query}")).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad-request");
        assert_eq!(parameters(&r), want, "{query}");
        let r = t.get(&format!("/bank-transfer-refunds?{query}")).await;
        assert_eq!(parameters(&r), want, "{query}");
    }
}

#[tokio::test]
async fn paging_works_with_date_and_terminal_filters() {
    let t = start(SandboxConfig::default()).await;
    let mut n = 0;
    let mut post = async |order: &str, terminal: &str| {
        n += 1;
        let mut b = card_body(order, "4539858876047062");
        b["processingTerminalId"] = json!(terminal);
        assert_eq!(t.post("/refunds", Some(&key(n)), &b).await.status, StatusCode::CREATED);
    };
    post("o1", "1234001").await;
    post("x1", "5555001").await;
    post("o2", "1234001").await;
    t.sb.sandbox().age(2);
    post("n1", "1234001").await;
    post("x2", "5555001").await;
    post("n2", "1234001").await;
    post("n3", "1234001").await;

    // Default window: only the three new ones on this terminal.
    let p1 = t.get("/refunds?processingTerminalId=1234001&limit=2").await;
    assert_eq!(orders(&p1), ["n1", "n2"]);
    assert_eq!(p1.json["hasMore"], true);
    let next = link(&p1, "next").unwrap();
    assert!(
        next.contains("processingTerminalId=1234001") && !next.contains("dateFrom"),
        "{next}"
    );
    let p2 = t.get(&next).await;
    assert_eq!(orders(&p2), ["n3"]);
    assert_eq!(p2.json["hasMore"], false);
    assert_eq!(link(&p2, "next"), None);

    // With dateFrom: the old ones first, and the links keep the window.
    let from = clock::rfc3339(clock::now() - 5 * DAY);
    let p1 = t
        .get(&format!(
            "/refunds?processingTerminalId=1234001&dateFrom={from}&limit=2"
        ))
        .await;
    assert_eq!(orders(&p1), ["o1", "o2"]);
    assert_eq!(p1.json["hasMore"], true);
    let next = link(&p1, "next").unwrap();
    assert!(next.contains("dateFrom="), "{next}");
    let p2 = t.get(&next).await;
    assert_eq!(orders(&p2), ["n1", "n2"]);
    assert_eq!(p2.json["hasMore"], true);
    let p3 = t.get(&link(&p2, "next").unwrap()).await;
    assert_eq!(orders(&p3), ["n3"]);
    assert_eq!(p3.json["hasMore"], false);
    let back = t.get(&link(&p2, "previous").unwrap()).await;
    assert_eq!(orders(&back), ["o1", "o2"]);
    assert_eq!(back.json["hasMore"], false);

    // hasMore is computed over the filtered set: dateTo cuts off the new ones.
    let to = clock::rfc3339(clock::now() - DAY);
    let q1 = t
        .get(&format!(
            "/refunds?processingTerminalId=1234001&dateFrom={from}&dateTo={to}&limit=1"
        ))
        .await;
    assert_eq!(orders(&q1), ["o1"]);
    assert_eq!(q1.json["hasMore"], true);
    let next = link(&q1, "next").unwrap();
    assert!(next.contains("dateTo="), "{next}");
    let q2 = t.get(&next).await;
    assert_eq!(orders(&q2), ["o2"]);
    assert_eq!(q2.json["hasMore"], false);

    // Without a terminal filter the other terminal's refunds are in too.
    let all = t.get(&format!("/refunds?dateFrom={from}&limit=100")).await;
    assert_eq!(orders(&all), ["o1", "x1", "o2", "n1", "x2", "n2", "n3"]);
    assert_eq!(all.json["hasMore"], false);
}

#[tokio::test]
async fn ageing_moves_refunds_back_and_expires_keys_after_7_days() {
    let t = start(SandboxConfig::default()).await;
    let body = card_body("O1", "4539858876047062");
    let first = t.post("/refunds", Some(KEY_A), &body).await;
    let id1 = first.json["refundId"].as_str().unwrap().to_owned();
    let created = clock::parse(&t.stats().refunds[0].created_at).unwrap();

    t.sb.sandbox().age(6);
    let record = t.stats().refunds[0].clone();
    assert_eq!(clock::parse(&record.created_at), Some(created - 6 * DAY));
    // The stored body moved with it: GET by id, the list and a replay.
    let one = t.get(&format!("/refunds/{id1}")).await;
    assert_eq!(one.json["order"]["dateTime"], record.created_at.as_str());
    let listed = t.get("/refunds?dateFrom=2000-01-01").await;
    assert_eq!(listed.json["data"][0]["order"]["dateTime"], record.created_at.as_str());
    // Within 7 days the key still replays.
    let replay = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.raw, one.raw);
    assert_eq!(t.stats().created_per_order["card|1234001|O1"], 1);

    // Over HTTP: one more day makes the key 7 days old, so it is forgotten.
    assert_eq!(t.control("age?days=1").await.status, StatusCode::NO_CONTENT);
    assert_eq!(clock::parse(&t.stats().refunds[0].created_at), Some(created - 7 * DAY));
    let again = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    let id2 = again.json["refundId"].as_str().unwrap();
    assert_ne!(id2, id1, "an expired key is processed as new");
    let s = t.stats();
    assert_eq!(s.created_per_order["card|1234001|O1"], 2);
    assert_eq!(s.refunds[1].idempotency_key, KEY_A);
    assert_eq!(s.requests_per_key[KEY_A], 3);
    // The new refund is recent; the old one only shows with a dateFrom.
    assert_eq!(t.get("/refunds?orderId=O1").await.json["count"], 1);
    assert_eq!(t.get("/refunds?orderId=O1&dateFrom=2000-01-01").await.json["count"], 2);

    // An expired key with a different body is new too, not a 409.
    t.post("/refunds", Some(KEY_B), &card_body("O2", "4539858876047062"))
        .await;
    t.sb.sandbox().age(8);
    let other = t
        .post("/refunds", Some(KEY_B), &card_body("O3", "4539858876047062"))
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_eq!(t.stats().refunds.len(), 4);

    // age(0) changes nothing; a bad `days` is a 400.
    let before = t.stats();
    t.sb.sandbox().age(0);
    assert_eq!(t.stats(), before);
    for bad in ["age", "age?days=-1", "age?days=x", "age?days=1.5"] {
        let r = t.control(bad).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad-request");
        assert_eq!(parameters(&r), ["days"]);
    }
    assert_eq!(t.stats(), before);
}

#[tokio::test]
async fn forbidden_terminal_gets_403_even_for_a_replay() {
    let t = start(SandboxConfig::default()).await;
    let body = card_body("O1", "4539858876047062");
    // The first send created the refund; suppose its answer was lost.
    let first = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);

    t.sb.sandbox().forbid_terminal("1234001");
    let resend = t.post("/refunds", Some(KEY_A), &body).await;
    assert_problem(&resend, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(resend.json["title"], "Forbidden");
    assert_eq!(
        resend.json["detail"],
        "The processing terminal is not allowed to run this operation"
    );
    assert!(resend.json["instance"].as_str().unwrap().ends_with("/v1/refunds"));
    assert!(resend.json["resource"].is_string());
    // New keys, the bank endpoint and invalid bodies alike.
    assert_problem(
        &t.post("/refunds", Some(KEY_B), &card_body("O2", "4539858876047062"))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let bank = t
        .post("/bank-transfer-refunds", Some(KEY_C), &bank_body("B1", "1234567890"))
        .await;
    assert_problem(&bank, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        bank.json["instance"]
            .as_str()
            .unwrap()
            .ends_with("/v1/bank-transfer-refunds")
    );
    let mut invalid = card_body("O3", "4539858876047062");
    invalid["order"]["amount"] = json!(-1);
    assert_problem(
        &t.post("/refunds", Some(&key(1)), &invalid).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Authentication comes first.
    let res = t
        .http
        .post(format!("{}/refunds", t.sb.api_url()))
        .header("content-type", "application/json")
        .header("idempotency-key", KEY_A)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(&reply(res).await, StatusCode::UNAUTHORIZED, "not-authorized");
    // Other terminals are unaffected.
    let mut elsewhere = card_body("O4", "4539858876047062");
    elsewhere["processingTerminalId"] = json!("5555001");
    assert_eq!(
        t.post("/refunds", Some(&key(2)), &elsewhere).await.status,
        StatusCode::CREATED
    );
    let s = t.stats();
    assert_eq!(s.faults.forbidden, 4);
    assert_eq!(s.refunds.len(), 2);
    assert_eq!(s.created_per_order["card|1234001|O1"], 1);
    assert_eq!(s.requests_per_key[KEY_A], 3);

    // Allowed again: nothing was stored by the 403s, so KEY_A replays the
    // first 201 and KEY_B creates its refund now.
    t.sb.sandbox().allow_terminal("1234001");
    let replay = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!((replay.status, &replay.raw), (StatusCode::CREATED, &first.raw));
    assert_eq!(
        t.post("/refunds", Some(KEY_B), &card_body("O2", "4539858876047062"))
            .await
            .status,
        StatusCode::CREATED
    );

    // The same over HTTP.
    assert_eq!(
        t.control("forbid?processingTerminalId=1234001").await.status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &t.post("/refunds", Some(KEY_A), &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        t.control("allow?processingTerminalId=1234001").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.post("/refunds", Some(KEY_A), &body).await.raw, first.raw);
    for bad in ["forbid", "allow", "forbid?processingTerminalId="] {
        let r = t.control(bad).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad-request");
        assert_eq!(parameters(&r), ["processingTerminalId"]);
    }
    let s = t.stats();
    assert_eq!(s.faults.forbidden, 5);
    assert_eq!(s.refunds.len(), 3);
}

#[test]
fn other_order_id_differs_and_fits() {
    use crate::server::other_order_id;
    assert_eq!(other_order_id("W1"), "W1-X");
    for id in [
        "W1",
        "12345678901234567890123",
        "123456789012345678901234",
        "1234567890123456789012-X",
        "1234567890123456789012-Y",
        "ééééééééééééééééééééééé€",
    ] {
        let other = other_order_id(id);
        assert_ne!(other, id);
        assert!(other.chars().count() <= 24, "{other}");
    }
}

#[tokio::test]
async fn test_terminals_whose_201_proves_nothing() {
    let t = start(SandboxConfig::default()).await;
    let odd = |order: &str, terminal: &str| {
        let mut b = card_body(order, "4539858876047062");
        b["processingTerminalId"] = json!(terminal);
        b
    };

    // 9999201: JSON without refundId (and no location to read it from).
    let no_id = odd("N1", "9999201");
    let r = t.post("/refunds", Some(KEY_A), &no_id).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(ctype(&r), "application/json");
    assert!(r.json.is_object() && r.json.get("refundId").is_none(), "{}", r.json);
    assert_eq!(r.json["order"]["orderId"], "N1");
    assert!(r.headers.get("location").is_none());
    assert_eq!(t.post("/refunds", Some(KEY_A), &no_id).await.raw, r.raw);

    // 9999202 (bank here): not JSON at all.
    let mut html = bank_body("H1", "1234567890");
    html["processingTerminalId"] = json!("9999202");
    let r = t.post("/bank-transfer-refunds", Some(KEY_B), &html).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(ctype(&r), "text/html");
    assert_eq!(r.raw, b"<html>ok</html>");
    assert!(r.headers.get("location").is_none());
    assert_eq!(t.post("/bank-transfer-refunds", Some(KEY_B), &html).await.raw, r.raw);

    // 9999203: a normal body for another order.
    let wrong = odd("W1", "9999203");
    let r = t.post("/refunds", Some(KEY_C), &wrong).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json["order"]["orderId"], "W1-X");
    let wrong_id = r.json["refundId"].as_str().unwrap().to_owned();
    assert!(r.headers["location"].to_str().unwrap().ends_with(&wrong_id));
    assert_eq!(t.post("/refunds", Some(KEY_C), &wrong).await.raw, r.raw);
    let long = "123456789012345678901234";
    let r24 = t.post("/refunds", Some(&key(1)), &odd(long, "9999203")).await;
    let got = r24.json["order"]["orderId"].as_str().unwrap();
    assert!(got != long && got.len() <= 24, "{got}");

    // All were created as usual, and GET shows the real refunds.
    let s = t.stats();
    assert_eq!(s.refunds.len(), 4);
    for k in [
        "card|9999201|N1",
        "bank|9999202|H1",
        "card|9999203|W1",
        "card|9999203|123456789012345678901234",
    ] {
        assert_eq!(s.created_per_order[k], 1, "{k}");
    }
    for (i, path, order) in [
        (0, "/refunds", "N1"),
        (1, "/bank-transfer-refunds", "H1"),
        (2, "/refunds", "W1"),
    ] {
        let id = &s.refunds[i].refund_id;
        let one = t.get(&format!("{path}/{id}")).await;
        assert_eq!(one.json["refundId"], id.as_str());
        assert_eq!(one.json["order"]["orderId"], order);
        let list = t.get(&format!("{path}?orderId={order}")).await;
        assert_eq!(list.json["data"][0]["refundId"], id.as_str());
    }
    assert_eq!(s.refunds[2].refund_id, wrong_id);
    assert_eq!(t.get("/refunds?orderId=W1-X").await.json["count"], 0);

    // Replays after ageing: still odd, with the moved dateTime.
    t.sb.sandbox().age(1);
    let s = t.stats();
    let replay = t.post("/refunds", Some(KEY_C), &wrong).await;
    assert_eq!(replay.json["order"]["orderId"], "W1-X");
    assert_eq!(replay.json["order"]["dateTime"], s.refunds[2].created_at.as_str());
    let replay = t.post("/refunds", Some(KEY_A), &no_id).await;
    assert!(replay.json.get("refundId").is_none());
    assert_eq!(replay.json["order"]["dateTime"], s.refunds[0].created_at.as_str());
    assert_eq!(t.stats().refunds.len(), 4);
}

// ---- every answer Payroc allows ----

#[tokio::test]
async fn card_answers_for_every_response_code() {
    let t = start(SandboxConfig::default()).await;
    // (card, status, responseCode, responseMessage, processorResponseCode, authorizedAmount for 5000, approvalCode)
    let cases = [
        ("4539858876047062", "ready", "A", "OK5", "00", -5000, true),
        ("4000000000000002", "declined", "D", "DECLINED", "05", 0, false),
        ("4000000000000127", "declined", "R", "CALL ISSUER", "05", 0, false),
        ("4000000000000135", "declined", "C", "PICK UP CARD", "04", 0, false),
        ("4000000000000119", "pending", "E", "QUEUED", "05", -5000, true),
        ("4000000000000143", "ready", "P", "PARTIAL APPROVAL", "10", -2500, true),
        ("4000000000000150", "declined", "A", "OK5", "00", -5000, true),
    ];
    for (n, (number, status, code, message, processor, authorized, approval)) in cases.into_iter().enumerate() {
        let mut body = card_body(&format!("C{n}"), number);
        body["order"]["amount"] = json!(5000);
        let r = t.post("/refunds", Some(&key(n as u32)), &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let tr = &r.json["transactionResult"];
        assert_eq!(tr["type"], "refund", "{number}");
        assert_eq!(tr["status"], status, "{number}");
        assert_eq!(tr["responseCode"], code, "{number}");
        assert_eq!(tr["responseMessage"], message, "{number}");
        assert_eq!(tr["processorResponseCode"], processor, "{number}");
        assert_eq!(tr["currency"], "USD", "{number}");
        assert!(tr["authorizedAmount"].is_i64(), "{number}: {tr}");
        assert_eq!(tr["authorizedAmount"], authorized, "{number}");
        match tr.get("approvalCode") {
            Some(a) => assert!(approval && a.as_str().unwrap().len() == 6, "{number}: {tr}"),
            None => assert!(!approval, "{number}: {tr}"),
        }
        let record = &t.stats().refunds[n];
        assert_eq!((record.status.as_str(), record.response_code.as_str()), (status, code));
    }
    // Partial: half the amount, rounded toward zero.
    for (amount, authorized) in [(4999, -2499), (1, 0), (2, -1)] {
        let mut body = card_body(&format!("P{amount}"), "4000000000000143");
        body["order"]["amount"] = json!(amount);
        let r = t.post("/refunds", Some(&key(100 + amount as u32)), &body).await;
        assert_eq!(r.json["transactionResult"]["authorizedAmount"], authorized, "{amount}");
        assert_eq!(r.json["order"]["amount"], amount);
    }
    // Declined refunds are created all the same.
    assert_eq!(t.stats().refunds.len(), 10);
}

#[tokio::test]
async fn bank_answers_with_and_without_a_response_code() {
    let t = start(SandboxConfig::default()).await;
    // (account, status, responseCode, responseMessage)
    let cases = [
        ("1234567890", "ready", Some("A"), "NoError"),
        ("99990002", "declined", Some("D"), "Declined"),
        ("99990003", "declined", None, "Declined"),
        ("99990004", "pending", None, "Pending"),
        ("99990005", "ready", Some("A"), "NoError"),
        ("99990006", "ready", Some("A"), "NoError"),
        ("99990007", "declined", Some("A"), "NoError"),
    ];
    for (n, (account, status, code, message)) in cases.into_iter().enumerate() {
        let r = t
            .post(
                "/bank-transfer-refunds",
                Some(&key(n as u32)),
                &bank_body(&format!("B{n}"), account),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let tr = &r.json["transactionResult"];
        assert_eq!(tr["type"], "unreferencedRefund", "{account}");
        assert_eq!(tr["status"], status, "{account}");
        assert_eq!(tr.get("responseCode").and_then(Value::as_str), code, "{account}: {tr}");
        assert_eq!(tr["responseMessage"], message, "{account}");
        assert_eq!(tr["processorResponseCode"], "0", "{account}");
        assert_eq!(tr["currency"], "USD", "{account}");
        assert_eq!(tr["authorizedAmount"].as_f64(), Some(-2500.0), "{account}");
        let raw = String::from_utf8_lossy(&r.raw);
        if account == "99990006" {
            assert!(raw.contains(r#""authorizedAmount":-2500.0,"#), "{raw}");
        } else {
            assert!(raw.contains(r#""authorizedAmount":-2500,"#), "{raw}");
        }
        let record = &t.stats().refunds[n];
        assert_eq!(record.status, status);
        assert_eq!(record.response_code, code.unwrap_or(""));
        // GET shows the same, decimal point included.
        let id = r.json["refundId"].as_str().unwrap();
        assert_eq!(t.get(&format!("/bank-transfer-refunds/{id}")).await.raw, r.raw);
    }
    // The decimal survives ageing (the stored body is re-serialized).
    t.sb.sandbox().age(1);
    let id = &t.stats().refunds[5].refund_id;
    let aged = t.get(&format!("/bank-transfer-refunds/{id}")).await;
    assert!(String::from_utf8_lossy(&aged.raw).contains(r#""authorizedAmount":-2500.0,"#));
}

/// `transactionResult.status` of a refund as GET by id shows it.
async fn status_of(t: &T, path: &str, id: &str) -> String {
    let r = t.get(&format!("{path}/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json["transactionResult"]["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn settle_completes_the_batch_and_returns_the_returned_later_account() {
    let t = start(SandboxConfig::default()).await;
    let cards = [
        ("4539858876047062", "complete"),
        ("4000000000000143", "complete"),
        ("4000000000000119", "pending"),
        ("4000000000000002", "declined"),
        ("4000000000000150", "declined"),
    ];
    let banks = [
        ("1234567890", "complete"),
        ("99990004", "complete"),
        ("99990005", "returned"),
        ("99990002", "declined"),
        ("99990003", "declined"),
    ];
    let mut sent = Vec::new();
    for (n, (number, after)) in cards.into_iter().enumerate() {
        let body = card_body(&format!("C{n}"), number);
        let k = key(n as u32);
        let first = t.post("/refunds", Some(&k), &body).await;
        sent.push(("/refunds", k, body, first, after));
    }
    for (n, (account, after)) in banks.into_iter().enumerate() {
        let body = bank_body(&format!("B{n}"), account);
        let k = key(100 + n as u32);
        let first = t.post("/bank-transfer-refunds", Some(&k), &body).await;
        sent.push(("/bank-transfer-refunds", k, body, first, after));
    }

    t.sb.sandbox().settle();
    let s = t.stats();
    for (n, (path, k, body, first, after)) in sent.iter().enumerate() {
        let id = first.json["refundId"].as_str().unwrap();
        assert_eq!(status_of(&t, path, id).await, *after, "{body}");
        assert_eq!(s.refunds[n].status, *after, "{body}");
        // A replay still answers with the first 201.
        let replay = t.post(path, Some(k), body).await;
        assert_eq!((replay.status, &replay.raw), (StatusCode::CREATED, &first.raw));
    }
    // The lists show the new status too.
    let list = t.get("/bank-transfer-refunds?orderId=B2").await;
    assert_eq!(list.json["data"][0]["transactionResult"]["status"], "returned");
    let list = t.get("/refunds?orderId=C0").await;
    assert_eq!(list.json["data"][0]["transactionResult"]["status"], "complete");
    // Only the status changed.
    let id = sent[0].3.json["refundId"].as_str().unwrap();
    let mut now = t.get(&format!("/refunds/{id}")).await.json;
    now["transactionResult"]["status"] = json!("ready");
    assert_eq!(now, sent[0].3.json);

    // Settling again changes nothing; over HTTP it is a 204.
    let before = t.stats().refunds;
    let body_before = t.get(&format!("/refunds/{id}")).await.raw;
    assert_eq!(t.control("settle").await.status, StatusCode::NO_CONTENT);
    assert_eq!(t.stats().refunds, before);
    assert_eq!(t.get(&format!("/refunds/{id}")).await.raw, body_before);
    // A refund made after the settlement waits for the next one.
    let later = t
        .post("/refunds", Some(&key(200)), &card_body("L1", "4539858876047062"))
        .await;
    let later_id = later.json["refundId"].as_str().unwrap();
    assert_eq!(status_of(&t, "/refunds", later_id).await, "ready");
    assert_eq!(t.control("settle").await.status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&t, "/refunds", later_id).await, "complete");

    // Ageing still moves the replayed first answer's dateTime.
    t.sb.sandbox().age(1);
    let (path, k, body, _, _) = &sent[0];
    let replay = t.post(path, Some(k), body).await;
    assert_eq!(replay.json["transactionResult"]["status"], "ready");
    assert_eq!(
        replay.json["order"]["dateTime"],
        t.stats().refunds[0].created_at.as_str()
    );
}

#[tokio::test]
async fn reverse_sets_reversal_on_card_and_bank_refunds() {
    let t = start(SandboxConfig::default()).await;
    let card = card_body("C1", "4539858876047062");
    let first = t.post("/refunds", Some(KEY_A), &card).await;
    let card_id = first.json["refundId"].as_str().unwrap().to_owned();
    let bank = t
        .post("/bank-transfer-refunds", Some(KEY_B), &bank_body("B1", "1234567890"))
        .await;
    let bank_id = bank.json["refundId"].as_str().unwrap().to_owned();
    // A refund on a 99992xx terminal replays its odd answer after a change too.
    let mut odd = card_body("N1", "4539858876047062");
    odd["processingTerminalId"] = json!("9999201");
    let odd_first = t.post("/refunds", Some(KEY_C), &odd).await;
    let odd_id = t.stats().refunds[2].refund_id.clone();

    assert!(t.sb.sandbox().reverse(&card_id));
    assert_eq!(status_of(&t, "/refunds", &card_id).await, "reversal");
    assert_eq!(t.stats().refunds[0].status, "reversal");
    assert_eq!(t.post("/refunds", Some(KEY_A), &card).await.raw, first.raw);
    // A reversed refund stays reversed when the batch settles.
    t.sb.sandbox().settle();
    assert_eq!(status_of(&t, "/refunds", &card_id).await, "reversal");
    assert_eq!(status_of(&t, "/bank-transfer-refunds", &bank_id).await, "complete");

    // Over HTTP, for a bank refund (whatever its status) and the odd one.
    let r = t.control(&format!("refunds/{bank_id}/reverse")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&t, "/bank-transfer-refunds", &bank_id).await, "reversal");
    assert_eq!(t.stats().refunds[1].status, "reversal");
    assert_eq!(
        t.control(&format!("refunds/{odd_id}/reverse")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(t.post("/refunds", Some(KEY_C), &odd).await.raw, odd_first.raw);
    assert!(odd_first.json.get("refundId").is_none());

    // Unknown ids.
    assert!(!t.sb.sandbox().reverse("NOSUCHID00"));
    assert_problem(
        &t.control("refunds/NOSUCHID00/reverse").await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    assert_eq!(t.stats().refunds.len(), 3);
}

#[tokio::test]
async fn custom_fields_not_set_up_are_left_out_of_the_response() {
    let t = start(SandboxConfig::default()).await;
    let mut body = card_body("C1", "4539858876047062");
    body["customFields"] = json!([
        {"name":"batchRow","value":"17"},
        {"name":"note","value":"left out"},
        {"name":"costCenter","value":"CC-9"},
        {"name":"BatchRow","value":"case matters"},
        {"name":"invoiceNumber","value":"INV-1"}
    ]);
    let r = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let want = json!([
        {"name":"batchRow","value":"17"},
        {"name":"costCenter","value":"CC-9"},
        {"name":"invoiceNumber","value":"INV-1"}
    ]);
    assert_eq!(r.json["customFields"], want);
    let id = r.json["refundId"].as_str().unwrap();
    assert_eq!(t.get(&format!("/refunds/{id}")).await.json["customFields"], want);
    // Only unknown names: no customFields at all, and the refund is made.
    let mut bank = bank_body("B1", "1234567890");
    bank["customFields"] = json!([{"name":"note","value":"x"}]);
    let r = t.post("/bank-transfer-refunds", Some(KEY_B), &bank).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.json.get("customFields").is_none(), "{}", r.json);
    assert_eq!(t.stats().refunds.len(), 2);
    // Unknown names are still validated.
    let mut long = card_body("C2", "4539858876047062");
    long["customFields"] = json!([{"name":"x".repeat(57),"value":"v"}]);
    let r = t.post("/refunds", Some(KEY_C), &long).await;
    assert_eq!(parameters(&r), ["customFields[0].name"]);

    // The set is configurable.
    let t = start(SandboxConfig {
        known_custom_fields: vec!["note".into()],
        ..Default::default()
    })
    .await;
    let r = t.post("/refunds", Some(KEY_A), &body).await;
    assert_eq!(r.json["customFields"], json!([{"name":"note","value":"left out"}]));
}

#[tokio::test]
async fn forbidden_api_key_is_403_and_a_wrong_one_401() {
    for api_key in [None, Some("secret".to_owned())] {
        let sb = spawn(
            "127.0.0.1:0".parse().unwrap(),
            SandboxConfig {
                api_key: api_key.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let url = format!("{}/authorize", sb.identity_url());
        let r = reply(
            http.post(&url)
                .header("x-api-key", "sandbox-forbidden-key")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            r.json,
            json!({"type":"https://docs.payroc.com/api/errors#forbidden","title":"Forbidden","status":403,
                "detail":"API key not allowed"})
        );
        if api_key.is_some() {
            let wrong = reply(http.post(&url).header("x-api-key", "wrong").send().await.unwrap()).await;
            assert_problem(&wrong, StatusCode::UNAUTHORIZED, "not-authorized");
            assert_eq!(wrong.json["title"], "Not Authorized");
        }
        let s = sb.sandbox().stats();
        assert_eq!(s.tokens_issued, 0, "{api_key:?}");
        sb.shutdown().await;
    }
}

/// Sixteen senders at once, each with its own keys: every POST creates exactly one refund and
/// every list finds its order. (It prints the rate it saw, for a person; nothing depends on it.
/// `bench/run` measures speed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_at_once_each_create_one_refund() {
    let t = std::sync::Arc::new(start(SandboxConfig::default()).await);
    let n = 400u32;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(16) {
                let key = format!("60000000-0000-4000-8000-{i:012}");
                let r = t
                    .post("/refunds", Some(&key), &card_body(&format!("O{i}"), "4539858876047062"))
                    .await;
                assert_eq!(r.status, StatusCode::CREATED);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{n} POSTs in {secs:.2}s = {:.0} req/s", f64::from(n) / secs);
    assert_eq!(t.stats().refunds.len(), n as usize);
    let started = std::time::Instant::now();
    for i in 0..100u32 {
        let r = t
            .get(&format!("/refunds?processingTerminalId=1234001&orderId=O{i}"))
            .await;
        assert_eq!(r.json["count"], 1);
    }
    println!("100 sequential list GETs in {:.2}s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn a_bank_transfer_is_returned_after_it_completed() {
    let t = start(SandboxConfig::default()).await;
    let bank = t
        .post("/bank-transfer-refunds", Some(&key(1)), &bank_body("B1", "1234567890"))
        .await;
    let card = t
        .post("/refunds", Some(&key(2)), &card_body("C1", "4539858876047062"))
        .await;
    let bank_id = bank.json["refundId"].as_str().unwrap().to_owned();
    let card_id = card.json["refundId"].as_str().unwrap().to_owned();
    t.sb.sandbox().settle();
    assert_eq!(status_of(&t, "/bank-transfer-refunds", &bank_id).await, "complete");
    assert!(t.sb.sandbox().return_transfer(&bank_id));
    assert_eq!(status_of(&t, "/bank-transfer-refunds", &bank_id).await, "returned");
    assert_eq!(t.stats().refunds[0].status, "returned");
    // Card refunds are not returned, and an unknown id is a 404 over HTTP too.
    assert!(!t.sb.sandbox().return_transfer(&card_id));
    assert_eq!(status_of(&t, "/refunds", &card_id).await, "complete");
    let replay = t
        .post("/bank-transfer-refunds", Some(&key(1)), &bank_body("B1", "1234567890"))
        .await;
    assert_eq!(replay.raw, bank.raw, "a replay answers with the first 201");
}
