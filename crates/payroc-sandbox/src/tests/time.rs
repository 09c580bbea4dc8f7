//! Time: the clock's ISO 8601 formatting and parsing, creation times as the order's date-time,
//! and ageing that moves refunds back and expires keys after 7 days. Shared helpers come from
//! `super`.

use reqwest::StatusCode;

use super::{KEY_A, KEY_B, assert_problem, bank_body, card_body, parameters, start};
use crate::SandboxConfig;
use crate::clock::{self, DAY};

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
