//! Refunds made: card, secure-token and bank refunds approved, the documented decline values,
//! every response code Payroc allows for either method, and custom fields. Shared helpers come
//! from `super`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{KEY_A, KEY_B, KEY_C, assert_problem, bank_body, card_body, ctype, key, parameters, start};
use crate::SandboxConfig;

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
