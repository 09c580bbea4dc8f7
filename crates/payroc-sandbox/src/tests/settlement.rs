//! After a refund is made: the stats endpoint, settlement completing the batch, reversals, and a
//! bank transfer returned after it completed. Shared helpers come from `super`; `status_of`
//! lives here.

use reqwest::StatusCode;
use serde_json::json;

use super::{KEY_A, KEY_B, KEY_C, T, assert_problem, bank_body, card_body, key, start};
use crate::{SandboxConfig, Stats};

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
