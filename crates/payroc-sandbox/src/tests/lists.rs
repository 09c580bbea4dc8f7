//! Lists of refunds: by order id and terminal with pagination, by date window with its 24-hour
//! default, and paging under date and terminal filters. Shared helpers come from `super`; the
//! page readers `orders` and `link` live here.

use reqwest::StatusCode;
use serde_json::json;

use super::{KEY_A, KEY_B, KEY_C, Reply, assert_problem, bank_body, card_body, key, parameters, start};
use crate::SandboxConfig;
use crate::clock::{self, DAY};

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
