//! Faults the sandbox injects: 429 and 503 with Retry-After, a 500 or a dropped connection after
//! the refund was made, the same seed giving the same pattern, and the test terminals whose 201
//! proves nothing. Shared helpers come from `super`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{KEY_A, KEY_B, KEY_C, assert_problem, bank_body, card_body, ctype, key, start};
use crate::SandboxConfig;

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
