//! Idempotency keys: a replay answers with the first response, a key reused for another request
//! is a conflict, identical requests at once make one refund, many senders each make their own,
//! and a forbidden terminal is refused even for a replay. Shared helpers come from `super`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{KEY_A, KEY_B, KEY_C, assert_problem, bank_body, card_body, key, parameters, reply, start};
use crate::SandboxConfig;

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
