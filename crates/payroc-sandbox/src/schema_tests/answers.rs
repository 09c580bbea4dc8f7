//! Driving the sandbox through every kind of answer it gives — each response code of either
//! method, lists, problems and tokens — and checking each against its rule from `rules.rs` with
//! the checker of `checker.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Rule;
use super::checker::violations;
use super::rules::{BANK_LIST, BANK_REFUND, CARD_LIST, CARD_REFUND, PROBLEM, TOKEN};
use crate::{RunningSandbox, SandboxConfig, spawn};

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
