//! Tokens and API keys: `/authorize` with a right, wrong, missing or forbidden key, and refund
//! requests with a missing, unknown or expired token. Shared helpers come from `super`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{KEY_A, assert_problem, card_body, reply, start};
use crate::{SandboxConfig, spawn};

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
