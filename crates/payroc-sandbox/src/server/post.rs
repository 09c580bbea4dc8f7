//! The refund POSTs: the checks and faults a request meets before and after Payroc's idempotency
//! lookup, the one critical section that checks the key and creates the refund, and the
//! responses (including the connection dropped after a refund was made).

use super::*;

pub(super) async fn post_card(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    req_uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    post_refund(sb, Kind::Card, headers, req_uri, body).await
}

pub(super) async fn post_bank(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    req_uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    post_refund(sb, Kind::Bank, headers, req_uri, body).await
}

pub(super) enum PreFault {
    TooMany,
    Unavailable,
}

pub(super) enum PostFault {
    Error500,
    Drop,
}

pub(super) enum Action {
    Respond(Response),
    Created(Response, Option<PostFault>),
}

pub(super) async fn post_refund(
    sb: Sandbox,
    kind: Kind,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let inner = &*sb.inner;
    let _in_flight = inner.enter();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty());
    {
        let mut s = inner.lock();
        s.stats.refund_posts += 1;
        if let Some(k) = key {
            match s.stats.requests_per_key.get_mut(k) {
                Some(n) => *n += 1,
                None => {
                    s.stats.requests_per_key.insert(k.to_owned(), 1);
                }
            }
        }
    }

    inner.delay().await;

    let cfg = &inner.config;
    let pre = {
        let mut s = inner.lock();
        if s.faults.chance(cfg.rate_429) {
            s.stats.faults.too_many_requests += 1;
            Some(PreFault::TooMany)
        } else if s.faults.chance(cfg.rate_503) {
            s.stats.faults.service_unavailable += 1;
            Some(PreFault::Unavailable)
        } else {
            None
        }
    };
    match pre {
        Some(PreFault::TooMany) => {
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
                "Rate limit exceeded; retry after the time in Retry-After",
                cfg.retry_after,
            );
        }
        Some(PreFault::Unavailable) => {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
                "The service is temporarily unavailable; retry after the time in Retry-After",
                cfg.retry_after,
            );
        }
        None => {}
    }

    if !inner.authenticate(&headers) {
        return Problem::not_authorized().into_response();
    }
    if !is_json(&headers) {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "You submitted a payload in an unsupported format",
        )
        .into_response();
    }
    let Some(key) = key else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-missing",
            "Idempotency-Key header missing",
            "An 'Idempotency-Key' must be supplied for this request",
        )
        .into_response();
    };
    if !is_uuid_v4(key) {
        return Problem::bad_request(vec![FieldError::new(
            "Idempotency-Key",
            "must be a UUID v4",
            "Idempotency-Key must be a UUID in the v4 format",
        )])
        .into_response();
    }

    // Pure work outside the lock.
    let terminal = terminal_of(&body);
    let validated = validate::validate(kind, &body);
    let uri = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let post = Post {
        kind,
        key,
        uri,
        body,
        terminal,
        validated,
        host,
    };

    // A key whose first request is still being processed answers 409 "in progress" to a second
    // request with it, as a payment API does while the first holds the key.
    let hold = !cfg.key_processing_time.is_zero();
    if hold {
        let fresh = {
            let mut s = inner.lock();
            if s.processing.contains(key) {
                s.stats.faults.key_in_progress += 1;
                None
            } else {
                let known = s
                    .idem
                    .get(key)
                    .is_some_and(|e| clock::now() - e.stored_at < IDEM_RETENTION);
                if !known {
                    s.processing.insert(key.to_owned());
                }
                Some(!known)
            }
        };
        match fresh {
            None => {
                return Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-progress",
                    "Idempotency-Key in progress",
                    "A request with this 'Idempotency-Key' is currently being processed; retry later",
                )
                .into_response();
            }
            Some(true) => tokio::time::sleep(cfg.key_processing_time).await,
            Some(false) => {}
        }
    }
    let action = {
        let now = clock::now();
        let mut s = inner.lock();
        if hold {
            s.processing.remove(key);
        }
        s.process(cfg, post, now)
    };
    match action {
        Action::Respond(res) => res,
        Action::Created(res, None) => res,
        Action::Created(_, Some(PostFault::Error500)) => Problem::api_error().into_response(),
        Action::Created(_, Some(PostFault::Drop)) => {
            let mut res = Response::new(Body::new(AbortBody));
            *res.status_mut() = StatusCode::CREATED;
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
    }
}

/// A refund POST that got past authentication and the header checks.
pub(super) struct Post<'a> {
    kind: Kind,
    key: &'a str,
    /// Path and query, as the idempotency record compares it.
    uri: String,
    body: Bytes,
    /// The body's `processingTerminalId`, if it has a string one.
    terminal: Option<String>,
    validated: Result<ValidRefund, Problem>,
    host: Option<&'a str>,
}

/// The body's `processingTerminalId`, read without validating anything else.
pub(super) fn terminal_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Terminal {
        #[serde(rename = "processingTerminalId")]
        terminal: Option<String>,
    }
    serde_json::from_slice::<Terminal>(body).ok()?.terminal
}

/// `/v1/refunds` or `/v1/bank-transfer-refunds`.
pub(super) fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Card => "/v1/refunds",
        Kind::Bank => "/v1/bank-transfer-refunds",
    }
}

impl Db {
    /// Terminal check, idempotency check and creation, in one critical
    /// section so that two concurrent identical requests cannot both create
    /// a refund. `now` is the creation time of a new refund.
    pub(super) fn process(&mut self, cfg: &SandboxConfig, req: Post<'_>, now: i64) -> Action {
        let Post {
            kind,
            key,
            uri,
            body,
            terminal,
            validated,
            host,
        } = req;
        // Before the idempotency lookup, and nothing is stored: a re-send of
        // a key that already created a refund is refused too.
        if let Some(t) = terminal.as_deref()
            && self.forbidden.contains(t)
        {
            self.stats.faults.forbidden += 1;
            let path = collection(kind);
            let instance = match host {
                Some(h) => format!("http://{h}{path}"),
                None => path.to_owned(),
            };
            let resource = match kind {
                Kind::Card => "refund",
                Kind::Bank => "bankTransferRefund",
            };
            return Action::Respond(Problem::forbidden(instance, resource).into_response());
        }
        if self.idem.get(key).is_some_and(|e| now - e.stored_at >= IDEM_RETENTION) {
            // Payroc keeps keys 7 days: an older one is processed as new.
            self.idem.remove(key);
        }
        if let Some(entry) = self.idem.get(key) {
            if entry.uri == uri && entry.body == body {
                // The first answer, even if the refund has settled or been reversed since.
                let stored = self.rows[entry.refund].first_answer();
                return Action::Respond(entry.answer.render(stored, entry.location.clone()));
            }
            return Action::Respond(Problem::idempotency_key_in_use().into_response());
        }
        let v = match validated {
            Ok(v) => v,
            // Decision: a 400 stores nothing, so the key may be reused.
            Err(p) => return Action::Respond(p.into_response()),
        };

        let refund_id = self.next_refund_id(cfg.seed);
        let verdict = verdict(kind, v.outcome);
        let created_at = clock::rfc3339(now);
        let response = Bytes::from(build_body(
            &v,
            &refund_id,
            &verdict,
            &cfg.known_custom_fields,
            self.id_seq,
            &created_at,
        ));
        let base = collection(kind);
        let location = match host {
            Some(h) => format!("http://{h}{base}/{refund_id}"),
            None => format!("{base}/{refund_id}"),
        };
        let location = HeaderValue::from_str(&location).ok();
        let answer = Answer::for_terminal(&v.terminal);

        let order_key = format!("{}|{}|{}", kind.as_str(), v.terminal, v.order_id);
        let idx = self.stats.refunds.len();
        self.stats.refunds.push(RefundRecord {
            refund_id: refund_id.clone(),
            method: kind.as_str().to_owned(),
            processing_terminal_id: v.terminal,
            order_id: v.order_id,
            amount: v.amount,
            currency: v.currency,
            response_code: verdict.code.unwrap_or("").to_owned(),
            status: verdict.status.to_owned(),
            idempotency_key: key.to_owned(),
            created_at,
        });
        self.rows.push(Stored {
            body: response.clone(),
            first: None,
            created: now,
            returns_on_settle: v.outcome == Outcome::ReturnedLater,
        });
        self.by_id.insert(refund_id, idx);
        *self.stats.created_per_order.entry(order_key.clone()).or_default() += 1;
        self.by_order.entry(order_key).or_default().push(idx);
        self.idem.insert(
            key.to_owned(),
            IdemEntry {
                uri,
                body,
                refund: idx,
                answer,
                location: location.clone(),
                stored_at: now,
            },
        );

        let fault = if self.faults.chance(cfg.rate_500_after_create) {
            self.stats.faults.error_500_after_create += 1;
            Some(PostFault::Error500)
        } else if self.faults.chance(cfg.rate_drop_after_create) {
            self.stats.faults.drop_after_create += 1;
            Some(PostFault::Drop)
        } else {
            None
        };
        Action::Created(answer.render(&response, location), fault)
    }

    /// Move every refund's creation time (record, `order.dateTime` in its
    /// body) and every idempotency entry back by `days`, then forget the
    /// entries that are now past retention.
    pub(super) fn age(&mut self, days: u32, now: i64) {
        if days == 0 {
            return;
        }
        let shift = i64::from(days) * DAY;
        for (row, record) in self.rows.iter_mut().zip(self.stats.refunds.iter_mut()) {
            row.created = row.created.saturating_sub(shift);
            let at = clock::rfc3339(row.created);
            row.body = with_date_time(&row.body, &at);
            row.first = row.first.as_ref().map(|first| with_date_time(first, &at));
            record.created_at = at;
        }
        for entry in self.idem.values_mut() {
            entry.stored_at = entry.stored_at.saturating_sub(shift);
        }
        self.idem.retain(|_, e| now - e.stored_at < IDEM_RETENTION);
    }

    /// The batch closes: card refunds `ready` → `complete`; bank refunds
    /// `ready` or `pending` → `complete`, or `returned` for the "returned
    /// later" test account. Other statuses stay.
    pub(super) fn settle(&mut self) {
        for i in 0..self.rows.len() {
            let record = &self.stats.refunds[i];
            let next = match (record.method.as_str(), record.status.as_str()) {
                ("card", "ready") => "complete",
                ("bank", "ready" | "pending") if self.rows[i].returns_on_settle => "returned",
                ("bank", "ready" | "pending") => "complete",
                _ => continue,
            };
            self.set_status(i, next);
        }
    }

    /// The refund's status becomes `reversal`; `false` if the id is unknown.
    pub(super) fn reverse(&mut self, refund_id: &str) -> bool {
        match self.by_id.get(refund_id) {
            Some(&i) => {
                self.set_status(i, "reversal");
                true
            }
            None => false,
        }
    }

    /// The customer's bank returns the transfer, whatever its status was
    /// (ACH returns come days after settlement, so usually after
    /// `complete`): its status becomes `returned`; `false` if no bank refund
    /// has this id.
    pub(super) fn return_transfer(&mut self, refund_id: &str) -> bool {
        match self.by_id.get(refund_id) {
            Some(&i) if self.stats.refunds[i].method == "bank" => {
                self.set_status(i, "returned");
                true
            }
            _ => false,
        }
    }

    /// Change refund `i`'s `transactionResult.status` as GET and the lists
    /// show it (and in [`Stats::refunds`]), keeping its first 201 for replays.
    pub(super) fn set_status(&mut self, i: usize, status: &'static str) {
        let row = &mut self.rows[i];
        if row.first.is_none() {
            row.first = Some(row.body.clone());
        }
        row.body = edit_json(&row.body, |m| {
            if let Some(tr) = m.get_mut("transactionResult").and_then(Value::as_object_mut) {
                tr.insert("status".into(), json!(status));
            }
        });
        self.stats.refunds[i].status = status.to_owned();
    }

    /// 10 characters `[A-Z0-9]`, deterministic from seed and a counter.
    pub(super) fn next_refund_id(&mut self, seed: u64) -> String {
        const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        loop {
            self.id_seq += 1;
            let mut n = mix(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.id_seq);
            let mut id = String::with_capacity(10);
            for _ in 0..10 {
                id.push(ALPHABET[(n % 36) as usize] as char);
                n /= 36;
            }
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }
}

pub(super) fn json_response(status: StatusCode, body: Bytes, location: Option<HeaderValue>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(l) = location {
        h.insert(header::LOCATION, l);
    }
    res
}

pub(super) fn retry_later(
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: &str,
    after: Duration,
) -> Response {
    let mut res = Problem::new(status, kind, title, detail).into_response();
    let ms = after.as_millis();
    let secs = ms.div_ceil(1000);
    let h = res.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    h.insert("retry-after-ms", HeaderValue::from(ms as u64));
    res
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Hyphenated UUID with version 4 (and the RFC 4122 variant).
pub(super) fn is_uuid_v4(key: &str) -> bool {
    key.len() == 36
        && uuid::Uuid::try_parse(key)
            .is_ok_and(|u| u.get_version() == Some(uuid::Version::Random) && u.get_variant() == uuid::Variant::RFC4122)
}

/// A body whose first poll fails: hyper then closes the connection without
/// completing the response, so the client sees a transport error, the way a
/// connection dropped after Payroc made the refund would look.
pub(super) struct AbortBody;

impl http_body::Body for AbortBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "payroc-sandbox: connection dropped after create (injected fault)",
        ))))
    }
}
