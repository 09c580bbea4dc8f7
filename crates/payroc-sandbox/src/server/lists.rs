//! The GET endpoints: one refund by id, and the lists by terminal and order id with their date
//! window and paging, as a client reconciling or looking orders up reads them.

use super::*;

pub(super) async fn list_card(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(sb, Kind::Card, headers, q).await
}

pub(super) async fn list_bank(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(sb, Kind::Bank, headers, q).await
}

pub(super) async fn get_card(State(sb): State<Sandbox>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(sb, Kind::Card, headers, id).await
}

pub(super) async fn get_bank(State(sb): State<Sandbox>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(sb, Kind::Bank, headers, id).await
}

pub(super) async fn get_one(sb: Sandbox, kind: Kind, headers: HeaderMap, id: String) -> Response {
    let inner = &*sb.inner;
    inner.delay().await;
    if !inner.authenticate(&headers) {
        return Problem::not_authorized().into_response();
    }
    let s = inner.lock();
    match s.by_id.get(&id) {
        Some(&i) if s.stats.refunds[i].method == kind.as_str() => {
            json_response(StatusCode::OK, s.rows[i].body.clone(), None)
        }
        _ => Problem::not_found("refund").into_response(),
    }
}

pub(super) async fn list(sb: Sandbox, kind: Kind, headers: HeaderMap, q: HashMap<String, String>) -> Response {
    let inner = &*sb.inner;
    inner.lock().stats.list_requests += 1;
    inner.delay().await;
    if !inner.authenticate(&headers) {
        return Problem::not_authorized().into_response();
    }
    let mut errors = Vec::new();
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                "must be an integer between 1 and 100",
                "limit must be an integer between 1 and 100",
            ));
            10
        }
    };
    let mut date = |name: &str| {
        let value = q.get(name)?;
        let parsed = clock::parse(value);
        if parsed.is_none() {
            errors.push(FieldError::new(
                name,
                "must be an ISO 8601 date-time with a time zone, such as 2024-07-01T15:30:00Z, or a date such as 2024-07-01",
                format!("{name} is not a valid ISO 8601 date-time"),
            ));
        }
        parsed
    };
    let date_from = date("dateFrom");
    let date_to = date("dateTo");
    if !errors.is_empty() {
        return Problem::bad_request(errors).into_response();
    }
    // Payroc documents no default window; the sandbox lists only the last
    // 24 hours when dateFrom is absent, so no client can rely on one.
    let from = date_from.unwrap_or_else(|| clock::now() - DAY);
    let terminal = q.get("processingTerminalId").map(String::as_str);
    let order_id = q.get("orderId").map(String::as_str);

    let s = inner.lock();
    let kind_str = kind.as_str();
    let in_window = |i: &usize| {
        let created = s.rows[*i].created;
        created >= from && date_to.is_none_or(|to| created <= to)
    };
    let matches = |i: &usize| {
        let r = &s.stats.refunds[*i];
        r.method == kind_str
            && terminal.is_none_or(|t| r.processing_terminal_id == t)
            && order_id.is_none_or(|o| r.order_id == o)
            && in_window(i)
    };
    let all: Vec<usize> = match (terminal, order_id) {
        (Some(t), Some(o)) => s
            .by_order
            .get(&format!("{kind_str}|{t}|{o}"))
            .map(|ids| ids.iter().copied().filter(in_window).collect())
            .unwrap_or_default(),
        _ => (0..s.stats.refunds.len()).filter(matches).collect(),
    };
    let cursor = |name: &str| q.get(name).map(|id| s.by_id.get(id).copied().unwrap_or(usize::MAX));
    let (page, has_more): (Vec<usize>, bool) = if let Some(after) = cursor("after") {
        let rest: Vec<usize> = all.into_iter().filter(|&i| after != usize::MAX && i > after).collect();
        (rest.iter().copied().take(limit).collect(), rest.len() > limit)
    } else if let Some(before) = cursor("before") {
        let rest: Vec<usize> = all.into_iter().filter(|&i| i < before).collect();
        let start = rest.len().saturating_sub(limit);
        (rest[start..].to_vec(), start > 0)
    } else {
        let more = all.len() > limit;
        (all.into_iter().take(limit).collect(), more)
    };

    let path = collection(kind);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // The links repeat the request's filters (dateFrom/dateTo as sent).
    let link = |rel: &str, cursor_name: &str, id: &str| {
        let mut href = format!("http://{host}{path}?limit={limit}");
        for name in ["processingTerminalId", "orderId", "dateFrom", "dateTo"] {
            if let Some(v) = q.get(name) {
                href.push_str(&format!("&{name}={}", encode(v)));
            }
        }
        href.push_str(&format!("&{cursor_name}={}", encode(id)));
        json!({"rel": rel, "method": "get", "href": href})
    };
    let mut links = Vec::new();
    if let (true, Some(&last)) = (has_more, page.last()) {
        links.push(link("next", "after", &s.stats.refunds[last].refund_id));
    }
    if let (true, Some(&first)) = (q.contains_key("after") || q.contains_key("before"), page.first()) {
        links.push(link("previous", "before", &s.stats.refunds[first].refund_id));
    }

    let mut out = Vec::with_capacity(128 + page.iter().map(|&i| s.rows[i].body.len() + 1).sum::<usize>());
    out.extend_from_slice(
        format!(
            r#"{{"limit":{limit},"count":{},"hasMore":{has_more},"links":{},"data":["#,
            page.len(),
            serde_json::Value::Array(links)
        )
        .as_bytes(),
    );
    for (n, &i) in page.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&s.rows[i].body);
    }
    drop(s);
    out.extend_from_slice(b"]}");
    json_response(StatusCode::OK, Bytes::from(out), None)
}

/// Percent-encode a query value (everything but RFC 3986 unreserved).
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
