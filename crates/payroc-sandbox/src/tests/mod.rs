//! End-to-end tests over real loopback HTTP (port 0) with `reqwest`, the
//! client family `refund-batch` uses, so transport-level faults are seen the
//! way the real client sees them.
//!
//! This module holds what every test shares: the client `T` (a sandbox with a
//! token), its `Reply`, the request bodies and the checks of a problem answer.
//! The tests themselves are grouped by topic in the files beside it.

// Tokens, API keys and the 401/403 answers of the identity service.
mod auth;
// Refunds made, and every answer Payroc's specification allows.
mod refunds;
// Requests refused before anything is made: validation, content type, capabilities.
mod validation;
// Idempotency keys: replays, conflicts, concurrent and forbidden resends.
mod idempotency;
// Injected faults (429, 503, 500 and drops after create) and the test terminals.
mod faults;
// Lists: by order id, by date window, and paging.
mod lists;
// Time: the clock, creation times and ageing.
mod time;
// After a refund is made: stats, settlement, reversals and returns.
mod settlement;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

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

fn key(n: u32) -> String {
    format!("70000000-0000-4000-8000-{n:012}")
}
