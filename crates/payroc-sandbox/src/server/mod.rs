//! Shared state, the router and the small handlers (token, test controls); the refund POSTs
//! are in `post`, what a new refund is answered in `answers`, the GET endpoints in `lists`.
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

mod answers;
mod lists;
mod post;

use answers::*;
use lists::*;
use post::*;

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
