//! Shared state and the axum handlers.
//!
//! One `std::sync::Mutex` guards all state; it is never held across an
//! `.await`, and each request takes it a few times for short, allocation-light
//! critical sections. Validation and JSON parsing of requests happen outside
//! the lock; only ageing, settling, reversing and the answers of the
//! `99992xx` test terminals re-serialize stored bodies under it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::clock::{self, DAY};
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
    /// Stored refunds, parallel to `stats.refunds`.
    rows: Vec<Stored>,
    by_id: HashMap<String, usize>,
    by_order: HashMap<String, Vec<usize>>,
    /// Terminals switched off with [`Sandbox::forbid_terminal`].
    forbidden: HashSet<String>,
    /// Keys whose first request is being processed (see
    /// [`crate::SandboxConfig::key_processing_time`]).
    processing: HashSet<String>,
    stats: Stats,
}

/// One created refund as GET shows it.
struct Stored {
    /// The refund as it is now (correct `refundId` and `orderId`, the
    /// current `transactionResult.status`): what GET and the lists show.
    body: Bytes,
    /// The body of the first 201, once `body` has moved on from it (after
    /// [`Sandbox::settle`] or [`Sandbox::reverse`]): idempotent replays keep
    /// answering with it. `None` while the two are the same.
    first: Option<Bytes>,
    /// Creation time, whole seconds since the epoch (`order.dateTime`).
    created: i64,
    /// A bank refund to the "returned later" test account: settling makes it
    /// `returned` instead of `complete`.
    returns_on_settle: bool,
}

impl Stored {
    /// The body a replay of the creating POST answers with.
    fn first_answer(&self) -> &Bytes {
        self.first.as_ref().unwrap_or(&self.body)
    }
}

struct Token {
    dies: Instant,
    advertised: Instant,
}

/// Only POSTs that created a refund are stored, so the answer is always a
/// 201 built from the stored refund (which ageing keeps up to date).
struct IdemEntry {
    uri: String,
    body: Bytes,
    /// Index into `rows` / `stats.refunds`.
    refund: usize,
    answer: Answer,
    location: Option<HeaderValue>,
    /// When the key was stored, whole seconds since the epoch.
    stored_at: i64,
}

/// How long Payroc keeps an idempotency key: an entry this old or older is
/// forgotten and its key processed as new.
const IDEM_RETENTION: i64 = 7 * DAY;

/// The API key `/authorize` answers 403 (a key that exists but may not be used).
pub(crate) const FORBIDDEN_API_KEY: &str = "sandbox-forbidden-key";

/// Test terminals whose refund is created but whose 201 proves nothing.
pub(crate) const TERMINAL_201_NO_REFUND_ID: &str = "9999201";
pub(crate) const TERMINAL_201_NOT_JSON: &str = "9999202";
pub(crate) const TERMINAL_201_WRONG_ORDER: &str = "9999203";

/// The 201 a created refund is answered with (and replayed with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The stored refund body, with `location`.
    Normal,
    /// The refund body without `refundId`, and no `location`.
    NoRefundId,
    /// `<html>ok</html>` as `text/html`, no `location`.
    NotJson,
    /// The refund body with another `order.orderId`, with `location`.
    WrongOrderId,
}

impl Answer {
    fn for_terminal(terminal: &str) -> Self {
        match terminal {
            TERMINAL_201_NO_REFUND_ID => Answer::NoRefundId,
            TERMINAL_201_NOT_JSON => Answer::NotJson,
            TERMINAL_201_WRONG_ORDER => Answer::WrongOrderId,
            _ => Answer::Normal,
        }
    }

    /// The 201 for the stored refund `body`.
    fn render(self, body: &Bytes, location: Option<HeaderValue>) -> Response {
        match self {
            Answer::Normal => json_response(StatusCode::CREATED, body.clone(), location),
            Answer::NoRefundId => json_response(
                StatusCode::CREATED,
                edit_json(body, |m| {
                    m.remove("refundId");
                }),
                None,
            ),
            Answer::NotJson => {
                let mut res = Response::new(Body::from("<html>ok</html>"));
                *res.status_mut() = StatusCode::CREATED;
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                res
            }
            Answer::WrongOrderId => json_response(
                StatusCode::CREATED,
                edit_json(body, |m| {
                    if let Some(order) = m.get_mut("order").and_then(Value::as_object_mut) {
                        let wrong = order.get("orderId").and_then(Value::as_str).map(other_order_id);
                        if let Some(wrong) = wrong {
                            order.insert("orderId".into(), json!(wrong));
                        }
                    }
                }),
                location,
            ),
        }
    }
}

/// An order id that differs from `order_id` and is at most 24 characters:
/// `-X` appended, cut to 24 (or, when the cut gives `order_id` back, its
/// first 22 characters and `-Y`/`-Z`).
pub(crate) fn other_order_id(order_id: &str) -> String {
    let appended: String = format!("{order_id}-X").chars().take(24).collect();
    if appended != order_id {
        return appended;
    }
    let head: String = order_id.chars().take(22).collect();
    let tail = if order_id.ends_with("-Y") { "-Z" } else { "-Y" };
    format!("{head}{tail}")
}

/// Parse a stored body (always a JSON object built by [`build_body`]), let
/// `edit` change it and serialize it again. Keys keep their order, so only
/// the edited values differ.
fn edit_json(body: &Bytes, edit: impl FnOnce(&mut Map<String, Value>)) -> Bytes {
    let mut v: Value = serde_json::from_slice(body).expect("stored refund bodies are JSON built by build_body");
    if let Some(m) = v.as_object_mut() {
        edit(m);
    }
    Bytes::from(serde_json::to_vec(&v).expect("refund body serializes"))
}

/// A stored body with `order.dateTime` set to `at`.
fn with_date_time(body: &Bytes, at: &str) -> Bytes {
    edit_json(body, |m| {
        if let Some(order) = m.get_mut("order").and_then(Value::as_object_mut) {
            order.insert("dateTime".into(), json!(at));
        }
    })
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
                rows: Vec::new(),
                by_id: HashMap::new(),
                by_order: HashMap::new(),
                forbidden: HashSet::new(),
                processing: HashSet::new(),
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

    pub(crate) fn age(&self, days: u32) {
        self.lock().age(days, clock::now());
    }

    pub(crate) fn settle(&self) {
        self.lock().settle();
    }

    pub(crate) fn reverse(&self, refund_id: &str) -> bool {
        self.lock().reverse(refund_id)
    }

    pub(crate) fn return_transfer(&self, refund_id: &str) -> bool {
        self.lock().return_transfer(refund_id)
    }

    pub(crate) fn set_forbidden(&self, terminal: &str, forbidden: bool) {
        let mut s = self.lock();
        if forbidden {
            s.forbidden.insert(terminal.to_owned());
        } else {
            s.forbidden.remove(terminal);
        }
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
        .route("/__sandbox/age", post(age))
        .route("/__sandbox/forbid", post(forbid))
        .route("/__sandbox/allow", post(allow))
        .route("/__sandbox/settle", post(settle))
        .route("/__sandbox/refunds/{refund_id}/reverse", post(reverse))
        .route("/__sandbox/refunds/{refund_id}/return", post(return_transfer))
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

/// `POST /__sandbox/age?days=N`: [`Sandbox::age`].
async fn age(State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("days").and_then(|d| d.parse::<u32>().ok()) {
        Some(days) => {
            sb.inner.age(days);
            StatusCode::NO_CONTENT.into_response()
        }
        None => Problem::bad_request(vec![FieldError::new(
            "days",
            "must be a whole number of days, 0 or more",
            "days must be a non-negative integer",
        )])
        .into_response(),
    }
}

/// `POST /__sandbox/forbid?processingTerminalId=X`: [`Sandbox::forbid_terminal`].
async fn forbid(State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>) -> Response {
    set_forbidden(&sb, &q, true)
}

/// `POST /__sandbox/allow?processingTerminalId=X`: [`Sandbox::allow_terminal`].
async fn allow(State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>) -> Response {
    set_forbidden(&sb, &q, false)
}

/// `POST /__sandbox/settle`: [`Sandbox::settle`].
async fn settle(State(sb): State<Sandbox>) -> StatusCode {
    sb.inner.settle();
    StatusCode::NO_CONTENT
}

/// `POST /__sandbox/refunds/{refundId}/reverse`: [`Sandbox::reverse`], 404
/// problem for an unknown id.
async fn reverse(State(sb): State<Sandbox>, Path(id): Path<String>) -> Response {
    if sb.inner.reverse(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Problem::not_found("refund").into_response()
    }
}

/// `POST /__sandbox/refunds/{refundId}/return`: [`Sandbox::return_transfer`],
/// 404 problem for an id that is not a bank refund's.
async fn return_transfer(State(sb): State<Sandbox>, Path(id): Path<String>) -> Response {
    if sb.inner.return_transfer(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Problem::not_found("bank transfer refund").into_response()
    }
}

fn set_forbidden(sb: &Sandbox, q: &HashMap<String, String>, forbidden: bool) -> Response {
    match q.get("processingTerminalId").filter(|t| !t.is_empty()) {
        Some(t) => {
            sb.inner.set_forbidden(t, forbidden);
            StatusCode::NO_CONTENT.into_response()
        }
        None => Problem::bad_request(vec![FieldError::new(
            "processingTerminalId",
            "required",
            "processingTerminalId is required",
        )])
        .into_response(),
    }
}

async fn authorize(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let inner = &sb.inner;
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    if key == FORBIDDEN_API_KEY {
        return Problem::api_key_not_allowed().into_response();
    }
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
struct Post<'a> {
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
fn terminal_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Terminal {
        #[serde(rename = "processingTerminalId")]
        terminal: Option<String>,
    }
    serde_json::from_slice::<Terminal>(body).ok()?.terminal
}

/// `/v1/refunds` or `/v1/bank-transfer-refunds`.
fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Card => "/v1/refunds",
        Kind::Bank => "/v1/bank-transfer-refunds",
    }
}

impl Db {
    /// Terminal check, idempotency check and creation, in one critical
    /// section so that two concurrent identical requests cannot both create
    /// a refund. `now` is the creation time of a new refund.
    fn process(&mut self, cfg: &SandboxConfig, req: Post<'_>, now: i64) -> Action {
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
    fn age(&mut self, days: u32, now: i64) {
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
    fn settle(&mut self) {
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
    fn reverse(&mut self, refund_id: &str) -> bool {
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
    fn return_transfer(&mut self, refund_id: &str) -> bool {
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
    fn set_status(&mut self, i: usize, status: &'static str) {
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

/// What the processor says about a new refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    /// `transactionResult.status`.
    status: &'static str,
    /// `transactionResult.responseCode`; `None`: the answer has none.
    code: Option<&'static str>,
    /// `transactionResult.responseMessage`.
    message: &'static str,
    /// `transactionResult.processorResponseCode`.
    processor_code: &'static str,
}

/// The answer for each documented test value.
fn verdict(kind: Kind, outcome: Outcome) -> Verdict {
    use Outcome::*;
    let v = |status, code, message, processor_code| Verdict {
        status,
        code,
        message,
        processor_code,
    };
    match kind {
        Kind::Card => match outcome {
            Declined => v("declined", Some("D"), "DECLINED", "05"),
            Referral => v("declined", Some("R"), "CALL ISSUER", "05"),
            Queued => v("pending", Some("E"), "QUEUED", "05"),
            KeepCard => v("declined", Some("C"), "PICK UP CARD", "04"),
            Partial => v("ready", Some("P"), "PARTIAL APPROVAL", "10"),
            ApprovedButDeclined => v("declined", Some("A"), "OK5", "00"),
            // The bank-only outcomes never come from a card body.
            Approved | DeclinedWithoutCode | PendingWithoutCode | ReturnedLater | DecimalAmount => {
                v("ready", Some("A"), "OK5", "00")
            }
        },
        Kind::Bank => match outcome {
            Declined => v("declined", Some("D"), "Declined", "0"),
            DeclinedWithoutCode => v("declined", None, "Declined", "0"),
            PendingWithoutCode => v("pending", None, "Pending", "0"),
            // The code says approved, the status says declined: a client must not count it.
            ApprovedButDeclined => v("declined", Some("A"), "NoError", "0"),
            // The card-only outcomes never come from a bank body.
            Approved | ReturnedLater | DecimalAmount | Referral | Queued | KeepCard | Partial => {
                v("ready", Some("A"), "NoError", "0")
            }
        },
    }
}

/// `transactionResult.authorizedAmount`, negative because the money goes to
/// the customer. Card (an integer): the whole amount when approved (`A`,
/// also with a contradicting status) or queued (`E`), half of it rounded
/// toward zero for a partial approval (`P`), 0 when declined (`D`, `R`,
/// `C`). Bank (a JSON number): the whole amount, written with a decimal
/// point (`-4999.0`) for the decimal-amount test account.
fn authorized_amount(v: &ValidRefund, verdict: &Verdict) -> Value {
    match v.kind {
        Kind::Card => match verdict.code {
            Some("A" | "E") => json!(-v.amount),
            Some("P") => json!(-(v.amount / 2)),
            _ => json!(0),
        },
        // Exact for every amount up to 2^53 minor units.
        Kind::Bank if v.outcome == Outcome::DecimalAmount => json!(-(v.amount as f64)),
        Kind::Bank => json!(-v.amount),
    }
}

/// `customFields` as the response shows them: only the names the sandbox
/// knows (case-sensitive), as Payroc leaves out names not set up for the
/// merchant; `None` when none is left.
fn known_custom_fields(sent: &Value, known: &[String]) -> Option<Value> {
    let kept: Vec<Value> = sent
        .as_array()?
        .iter()
        .filter(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| known.iter().any(|k| k == name))
        })
        .cloned()
        .collect();
    (!kept.is_empty()).then_some(Value::Array(kept))
}

fn build_body(
    v: &ValidRefund,
    refund_id: &str,
    verdict: &Verdict,
    known_fields: &[String],
    seq: u64,
    date_time: &str,
) -> Vec<u8> {
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
            "dateTime": date_time,
            "description": v.description,
            "amount": v.amount,
            "currency": v.currency,
        }),
    );
    if let Some(c) = &v.customer {
        body.insert("customer".into(), c.clone());
    }
    let mut tr = json!({
        "type": match v.kind {
            Kind::Card => "refund",
            Kind::Bank => "unreferencedRefund",
        },
        "status": verdict.status,
        "authorizedAmount": authorized_amount(v, verdict),
        "currency": v.currency,
        "responseMessage": verdict.message,
        "processorResponseCode": verdict.processor_code,
    });
    if let Some(code) = verdict.code {
        tr["responseCode"] = json!(code);
    }
    match v.kind {
        Kind::Card => {
            body.insert("card".into(), v.instrument.clone());
            if matches!(verdict.code, Some("A" | "P" | "E")) {
                tr["approvalCode"] = json!(format!("{:06}", seq % 1_000_000));
            }
        }
        Kind::Bank => {
            body.insert("bankAccount".into(), v.instrument.clone());
        }
    }
    body.insert("transactionResult".into(), tr);
    if let Some(cf) = v
        .custom_fields
        .as_ref()
        .and_then(|cf| known_custom_fields(cf, known_fields))
    {
        body.insert("customFields".into(), cf);
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

fn retry_later(status: StatusCode, kind: &'static str, title: &'static str, detail: &str, after: Duration) -> Response {
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
            json_response(StatusCode::OK, s.rows[i].body.clone(), None)
        }
        _ => Problem::not_found("refund").into_response(),
    }
}

async fn list(sb: Sandbox, kind: Kind, headers: HeaderMap, q: HashMap<String, String>) -> Response {
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

#[cfg(test)]
mod unit {
    use super::*;

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
