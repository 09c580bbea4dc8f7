//! Shared state and the axum handlers.
//!
//! One `std::sync::Mutex` guards all state; it is never held across an
//! `.await`, and each request takes it a few times for short, allocation-light
//! critical sections. Validation and JSON parsing happen outside the lock.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::prng::{SplitMix64, mix};
use crate::problem::{FieldError, Problem};
use crate::validate::{self, Kind, Outcome, ValidRefund};
use crate::{RefundRecord, Sandbox, SandboxConfig, Stats};

pub(crate) struct Inner {
    config: SandboxConfig,
    state: Mutex<Db>,
    in_flight: AtomicU32,
    peak: AtomicU32,
}

struct Db {
    faults: SplitMix64,
    tokens_rng: SplitMix64,
    id_seq: u64,
    tokens: HashMap<String, Token>,
    idem: HashMap<String, IdemEntry>,
    /// Response bodies, parallel to `stats.refunds`.
    bodies: Vec<Bytes>,
    by_id: HashMap<String, usize>,
    by_order: HashMap<String, Vec<usize>>,
    stats: Stats,
}

struct Token {
    dies: Instant,
    advertised: Instant,
}

struct IdemEntry {
    uri: String,
    body: Bytes,
    status: StatusCode,
    response: Bytes,
    location: Option<HeaderValue>,
}

impl Inner {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        let seed = config.seed;
        Self {
            state: Mutex::new(Db {
                faults: SplitMix64::new(seed),
                tokens_rng: SplitMix64::new(mix(seed ^ 0x746F_6B65_6E73)),
                id_seq: 0,
                tokens: HashMap::new(),
                idem: HashMap::new(),
                bodies: Vec::new(),
                by_id: HashMap::new(),
                by_order: HashMap::new(),
                stats: Stats::default(),
            }),
            config,
            in_flight: AtomicU32::new(0),
            peak: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        // A panic elsewhere must not turn every later request into a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = self.lock().stats.clone();
        s.peak_in_flight = self.peak.load(Ordering::Relaxed);
        s
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Whether the request carries a live bearer token (counts the 401s).
    fn authenticate(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let now = Instant::now();
        let mut s = self.lock();
        let verdict = match token.and_then(|t| s.tokens.get(t)) {
            Some(t) if now < t.dies => return true,
            Some(t) => now < t.advertised,
            None => false,
        };
        if verdict {
            s.stats.faults.token_expired_early += 1;
        }
        s.stats.unauthorized += 1;
        false
    }

    async fn delay(&self) {
        let latency = self.config.latency;
        if !latency.is_zero() {
            self.lock().stats.faults.latency += 1;
            tokio::time::sleep(latency).await;
        }
    }
}

/// Counts a refund POST as in flight until dropped.
struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn router(sb: Sandbox) -> Router {
    Router::new()
        .route("/authorize", post(authorize))
        .route("/v1/refunds", post(post_card).get(list_card))
        .route("/v1/refunds/{refund_id}", get(get_card))
        .route("/v1/bank-transfer-refunds", post(post_bank).get(list_bank))
        .route("/v1/bank-transfer-refunds/{refund_id}", get(get_bank))
        .route("/__sandbox/stats", get(stats))
        .fallback(|| async { Problem::not_found("endpoint").into_response() })
        .layer(middleware::from_fn(log_request))
        .with_state(sb)
}

/// Method, path and status only: never bodies, keys or tokens. The query
/// string (which holds order ids) is left out too.
async fn log_request(req: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    tracing::debug!(%method, %path, status = res.status().as_u16(), "payroc-sandbox request");
    res
}

async fn stats(State(sb): State<Sandbox>) -> Json<Stats> {
    Json(sb.inner.stats())
}

async fn authorize(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let inner = &sb.inner;
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    let ok = match &inner.config.api_key {
        Some(expected) => !key.is_empty() && key == expected,
        None => !key.is_empty(),
    };
    let mut s = inner.lock();
    if !ok {
        s.stats.unauthorized += 1;
        drop(s);
        return Problem::not_authorized().into_response();
    }
    let token = format!("sbx_{:016x}{:016x}", s.tokens_rng.next_u64(), s.tokens_rng.next_u64());
    let now = Instant::now();
    let advertised = inner.config.token_lifetime;
    let actual = inner.config.token_actual_lifetime.unwrap_or(advertised);
    s.tokens.insert(
        token.clone(),
        Token {
            dies: now + actual,
            advertised: now + advertised,
        },
    );
    s.stats.tokens_issued += 1;
    drop(s);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": advertised.as_secs(),
        "scope": "payments refunds",
    }))
    .into_response()
}

async fn post_card(State(sb): State<Sandbox>, headers: HeaderMap, req_uri: axum::http::Uri, body: Bytes) -> Response {
    post_refund(sb, Kind::Card, headers, req_uri, body).await
}

async fn post_bank(State(sb): State<Sandbox>, headers: HeaderMap, req_uri: axum::http::Uri, body: Bytes) -> Response {
    post_refund(sb, Kind::Bank, headers, req_uri, body).await
}

enum PreFault {
    TooMany,
    Unavailable,
}

enum PostFault {
    Error500,
    Drop,
}

enum Action {
    Respond(Response),
    Created(Response, Option<PostFault>),
}

async fn post_refund(sb: Sandbox, kind: Kind, headers: HeaderMap, uri: axum::http::Uri, body: Bytes) -> Response {
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
    let validated = validate::validate(kind, &body);
    let uri = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());

    let action = {
        let mut s = inner.lock();
        s.process(cfg, kind, key, uri, body, validated, host)
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

impl Db {
    /// Idempotency check and creation, in one critical section so that two
    /// concurrent identical requests cannot both create a refund.
    #[allow(clippy::too_many_arguments)]
    fn process(
        &mut self,
        cfg: &SandboxConfig,
        kind: Kind,
        key: &str,
        uri: String,
        body: Bytes,
        validated: Result<ValidRefund, Problem>,
        host: Option<&str>,
    ) -> Action {
        if let Some(entry) = self.idem.get(key) {
            if entry.uri == uri && entry.body == body {
                return Action::Respond(json_response(
                    entry.status,
                    entry.response.clone(),
                    entry.location.clone(),
                ));
            }
            return Action::Respond(Problem::idempotency_key_in_use().into_response());
        }
        let v = match validated {
            Ok(v) => v,
            // Decision: a 400 stores nothing, so the key may be reused.
            Err(p) => return Action::Respond(p.into_response()),
        };

        let refund_id = self.next_refund_id(cfg.seed);
        let (status, code, message) = result_of(kind, v.outcome);
        let response = Bytes::from(build_body(&v, &refund_id, status, code, message, self.id_seq));
        let base = match kind {
            Kind::Card => "/v1/refunds/",
            Kind::Bank => "/v1/bank-transfer-refunds/",
        };
        let location = match host {
            Some(h) => format!("http://{h}{base}{refund_id}"),
            None => format!("{base}{refund_id}"),
        };
        let location = HeaderValue::from_str(&location).ok();

        let order_key = format!("{}|{}|{}", kind.as_str(), v.terminal, v.order_id);
        let idx = self.stats.refunds.len();
        self.stats.refunds.push(RefundRecord {
            refund_id: refund_id.clone(),
            method: kind.as_str().to_owned(),
            processing_terminal_id: v.terminal,
            order_id: v.order_id,
            amount: v.amount,
            currency: v.currency,
            response_code: code.to_owned(),
            status: status.to_owned(),
            idempotency_key: key.to_owned(),
        });
        self.bodies.push(response.clone());
        self.by_id.insert(refund_id, idx);
        *self.stats.created_per_order.entry(order_key.clone()).or_default() += 1;
        self.by_order.entry(order_key).or_default().push(idx);
        self.idem.insert(
            key.to_owned(),
            IdemEntry {
                uri,
                body,
                status: StatusCode::CREATED,
                response: response.clone(),
                location: location.clone(),
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
        Action::Created(json_response(StatusCode::CREATED, response, location), fault)
    }

    /// 10 characters `[A-Z0-9]`, deterministic from seed and a counter.
    fn next_refund_id(&mut self, seed: u64) -> String {
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

/// (status, responseCode, responseMessage)
fn result_of(kind: Kind, outcome: Outcome) -> (&'static str, &'static str, &'static str) {
    match (kind, outcome) {
        (Kind::Card, Outcome::Approved) => ("ready", "A", "OK5"),
        (Kind::Bank, Outcome::Approved) => ("ready", "A", "NoError"),
        (Kind::Card, Outcome::Declined) => ("declined", "D", "DECLINED"),
        (Kind::Bank, Outcome::Declined) => ("declined", "D", "Declined"),
        (_, Outcome::Referral) => ("declined", "R", "CALL ISSUER"),
        (_, Outcome::Queued) => ("pending", "E", "QUEUED"),
    }
}

fn build_body(v: &ValidRefund, refund_id: &str, status: &str, code: &str, message: &str, seq: u64) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    body.insert("refundId".into(), json!(refund_id));
    body.insert("processingTerminalId".into(), json!(v.terminal));
    if let Some(op) = &v.operator {
        body.insert("operator".into(), json!(op));
    }
    body.insert(
        "order".into(),
        json!({
            "orderId": v.order_id,
            "dateTime": now_rfc3339(),
            "description": v.description,
            "amount": v.amount,
            "currency": v.currency,
        }),
    );
    if let Some(c) = &v.customer {
        body.insert("customer".into(), c.clone());
    }
    match v.kind {
        Kind::Card => {
            body.insert("card".into(), v.instrument.clone());
            let mut tr = json!({
                "type": "refund",
                "status": status,
                "authorizedAmount": -v.amount,
                "currency": v.currency,
                "responseCode": code,
                "responseMessage": message,
                "processorResponseCode": if code == "A" { "00" } else { "05" },
            });
            if code == "A" || code == "E" {
                tr["approvalCode"] = json!(format!("{:06}", seq % 1_000_000));
            }
            body.insert("transactionResult".into(), tr);
        }
        Kind::Bank => {
            body.insert("bankAccount".into(), v.instrument.clone());
            body.insert(
                "transactionResult".into(),
                json!({
                    "type": "unreferencedRefund",
                    "status": status,
                    "authorizedAmount": -v.amount,
                    "currency": v.currency,
                    "responseCode": code,
                    "responseMessage": message,
                    "processorResponseCode": if code == "A" { "0" } else { "5" },
                }),
            );
        }
    }
    if let Some(cf) = &v.custom_fields {
        body.insert("customFields".into(), cf.clone());
    }
    serde_json::to_vec(&body).expect("refund body serializes")
}

fn json_response(status: StatusCode, body: Bytes, location: Option<HeaderValue>) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(l) = location {
        h.insert(header::LOCATION, l);
    }
    res
}

fn retry_later(status: StatusCode, kind: &str, title: &'static str, detail: &str, after: Duration) -> Response {
    let mut res = Problem::new(status, kind, title, detail).into_response();
    let ms = after.as_millis();
    let secs = ms.div_ceil(1000);
    let h = res.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    h.insert("retry-after-ms", HeaderValue::from(ms as u64));
    res
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Hyphenated UUID with version 4 (and the RFC 4122 variant).
fn is_uuid_v4(key: &str) -> bool {
    key.len() == 36
        && uuid::Uuid::try_parse(key)
            .is_ok_and(|u| u.get_version() == Some(uuid::Version::Random) && u.get_variant() == uuid::Variant::RFC4122)
}

/// A body whose first poll fails: hyper then closes the connection without
/// completing the response, so the client sees a transport error, the way a
/// connection dropped after Payroc made the refund would look.
struct AbortBody;

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

// ---- GET endpoints ----

async fn list_card(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(sb, Kind::Card, headers, q).await
}

async fn list_bank(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list(sb, Kind::Bank, headers, q).await
}

async fn get_card(State(sb): State<Sandbox>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(sb, Kind::Card, headers, id).await
}

async fn get_bank(State(sb): State<Sandbox>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    get_one(sb, Kind::Bank, headers, id).await
}

async fn get_one(sb: Sandbox, kind: Kind, headers: HeaderMap, id: String) -> Response {
    let inner = &*sb.inner;
    inner.delay().await;
    if !inner.authenticate(&headers) {
        return Problem::not_authorized().into_response();
    }
    let s = inner.lock();
    match s.by_id.get(&id) {
        Some(&i) if s.stats.refunds[i].method == kind.as_str() => {
            json_response(StatusCode::OK, s.bodies[i].clone(), None)
        }
        _ => Problem::not_found("refund").into_response(),
    }
}

async fn list(sb: Sandbox, kind: Kind, headers: HeaderMap, q: HashMap<String, String>) -> Response {
    let inner = &*sb.inner;
    inner.delay().await;
    if !inner.authenticate(&headers) {
        return Problem::not_authorized().into_response();
    }
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => {
            return Problem::bad_request(vec![FieldError::new(
                "limit",
                "must be an integer between 1 and 100",
                "limit must be an integer between 1 and 100",
            )])
            .into_response();
        }
    };
    let terminal = q.get("processingTerminalId").map(String::as_str);
    let order_id = q.get("orderId").map(String::as_str);

    let s = inner.lock();
    let kind_str = kind.as_str();
    let matches = |i: &usize| {
        let r = &s.stats.refunds[*i];
        r.method == kind_str
            && terminal.is_none_or(|t| r.processing_terminal_id == t)
            && order_id.is_none_or(|o| r.order_id == o)
    };
    let all: Vec<usize> = match (terminal, order_id) {
        (Some(t), Some(o)) => s
            .by_order
            .get(&format!("{kind_str}|{t}|{o}"))
            .cloned()
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

    let path = match kind {
        Kind::Card => "/v1/refunds",
        Kind::Bank => "/v1/bank-transfer-refunds",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let link = |rel: &str, cursor_name: &str, id: &str| {
        let mut href = format!("http://{host}{path}?limit={limit}");
        if let Some(t) = terminal {
            href.push_str("&processingTerminalId=");
            href.push_str(&encode(t));
        }
        if let Some(o) = order_id {
            href.push_str("&orderId=");
            href.push_str(&encode(o));
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

    let mut out = Vec::with_capacity(128 + page.iter().map(|&i| s.bodies[i].len() + 1).sum::<usize>());
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
        out.extend_from_slice(&s.bodies[i]);
    }
    drop(s);
    out.extend_from_slice(b"]}");
    json_response(StatusCode::OK, Bytes::from(out), None)
}

/// Percent-encode a query value (everything but RFC 3986 unreserved).
fn encode(s: &str) -> String {
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

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_906), (2024, 7, 2));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn uuid_v4_check() {
        assert!(is_uuid_v4("6f1c1e3a-2b4d-4c8e-9f00-1234567890ab"));
        assert!(!is_uuid_v4("6f1c1e3a-2b4d-1c8e-9f00-1234567890ab")); // v1
        assert!(!is_uuid_v4("6f1c1e3a2b4d4c8e9f001234567890ab")); // not hyphenated
        assert!(!is_uuid_v4("row-17"));
    }

    #[test]
    fn refund_ids_are_10_alnum_and_seeded() {
        let a = Inner::new(SandboxConfig {
            seed: 7,
            ..Default::default()
        });
        let b = Inner::new(SandboxConfig {
            seed: 7,
            ..Default::default()
        });
        let ia = a.lock().next_refund_id(7);
        let ib = b.lock().next_refund_id(7);
        assert_eq!(ia, ib);
        assert_eq!(ia.len(), 10);
        assert!(ia.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_ne!(ia, a.lock().next_refund_id(7));
    }
}
