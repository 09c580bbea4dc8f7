//! Talking to Payroc: the bearer token, one refund request with its retries, and what the answer means.
//!
//! The dispatcher hands [`PayrocClient::send_refund`] a key and the exact body bytes; this module
//! turns everything that can happen on the wire into one [`SendResult`] **in Payroc's words**:
//! a created refund (as its body says, or a 2xx whose body is not one), a refusal (a problem
//! with its status and type), an authentication failure, or "gave up, and the request may or may
//! not have reached Payroc". It decides no ledger state: [`crate::outcome`] does, from the answer
//! and from whether the refund's key generation may already have reached Payroc. Retries always
//! re-send the same key and the same bytes, so a retry can never become a second refund.
//!
//! Retry policy (uv's `RetryState` is the model): 408, 429, 5xx, timeouts and connection errors
//! are retried with exponential backoff, jitter and a cap. `Retry-After` on 429/503 pauses every
//! sender through the shared [`PauseGate`], not only the one that got it. A 401 refreshes the
//! token once and re-sends. The bearer token is fetched from `{identity}/authorize`, shared by
//! every sender, and refreshed by the first sender that finds it close to expiry (the Payroc
//! SDKs' two-minute buffer); concurrent senders wait for that one fetch.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::input::Method;
use crate::redaction::redact_digit_runs;

/// How retries are paced. Every delay is configurable so tests run retries in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first request (so `max_retries + 1` requests at most).
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// No single delay (backoff or `Retry-After`) exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half the step fixed, half random, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(2_u32.saturating_pow(retry.min(16)))
            .min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A number in [0, 1) from the standard library's per-process random hasher keys: enough for
/// jitter, without a dependency.
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    (hasher.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

/// The run's rate limiter (a GCRA from `governor`), shared by the dispatcher and every retry.
pub type RequestLimiter = governor::DefaultDirectRateLimiter;

/// Where to reach Payroc and how patiently.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base ending in `/v1`.
    pub api_url: String,
    /// Identity base; `/authorize` is appended.
    pub identity_url: String,
    /// The API key, sent only to `/authorize`.
    pub api_key: SecretString,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry pacing.
    pub retry: RetryPolicy,
}

/// Errors that stop a whole run rather than one row.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SystemicError {
    /// Payroc refused the API key or every token (401/403 from `/authorize`, or a 401 right after a refresh).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The identity service could not be reached after retries.
    #[error("cannot get a bearer token from {url}: {detail}")]
    IdentityUnreachable {
        /// The authorize URL.
        url: String,
        /// What went wrong last.
        detail: String,
    },
}

/// What came of sending one refund (with all its retries), in Payroc's words.
#[derive(Debug, Clone)]
pub enum SendResult {
    /// A 2xx: Payroc created (or replayed) a refund. `refund` is `None` when the body is not a
    /// refund at all (not JSON, or not an object).
    Created {
        /// The HTTP status.
        http_status: u16,
        /// The refund as the body describes it.
        refund: Option<Box<CreatedRefund>>,
    },
    /// A final refusal: 400, 403, 404, 406, 409, 415 or another status not worth retrying.
    Refused {
        /// The HTTP status.
        http_status: u16,
        /// The problem's `type`, if the body was a problem.
        problem_type: Option<String>,
        /// Title, detail and `errors[]`, redacted, in one line.
        detail: String,
    },
    /// Retries ran out. `maybe_reached` is false only when no request could have reached
    /// Payroc (every failure was a refused connection or a 429), so the row can stay `pending`.
    GaveUp {
        /// Whether any request may have been processed.
        maybe_reached: bool,
        /// The last failure, for the results' error column.
        detail: String,
        /// Last HTTP status seen, if any.
        http_status: Option<u16>,
    },
    /// The run must stop: credentials are bad or the identity service is gone. The row's
    /// request did not get through (a 401 means not processed), so it goes back to `pending`.
    Systemic(SystemicError),
}

/// Everything [`PayrocClient::send_refund`] reports: the result and how many HTTP requests it took.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The result.
    pub result: SendResult,
    /// HTTP requests sent (1 + retries + 401 re-sends).
    pub requests: u32,
    /// Whether a request may have reached Payroc without a definite answer. When it did, a
    /// stop for a systemic reason leaves the row `unknown`, not `pending`.
    pub maybe_reached: bool,
}

/// A pause shared by all senders: when Payroc says `Retry-After`, nobody sends until it passes.
#[derive(Debug, Default)]
pub struct PauseGate {
    until: std::sync::Mutex<Option<Instant>>,
}

impl PauseGate {
    /// Pauses everyone until at least `until`.
    pub fn pause_until(&self, until: Instant) {
        // A poisoned lock means a sender panicked while holding it; the Option inside is
        // still a valid value, so keep using it.
        let mut guard = self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }

    /// Waits out the current pause, if any.
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }
}

#[derive(Clone)]
struct Token {
    value: SecretString,
    refresh_at: Instant,
}

/// Sends refunds to Payroc. Cheap to share: one per run, behind an `Arc`.
pub struct PayrocClient {
    http: reqwest::Client,
    config: ClientConfig,
    token: Mutex<Option<Token>>,
    /// The shared `Retry-After` pause.
    pub pause: PauseGate,
}

/// `/authorize`'s answer; its fields are snake_case, unlike the rest of the API.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<i64>,
}

/// A refund as Payroc's body describes it (created, replayed or listed). Every field is
/// optional here: which absences matter is [`crate::outcome`]'s decision.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreatedRefund {
    /// Payroc's 10-character `refundId`.
    pub refund_id: Option<String>,
    /// `order`: what the refund was for.
    #[serde(default)]
    pub order: Option<RefundOrder>,
    /// `transactionResult`.
    #[serde(default)]
    pub transaction_result: Option<TransactionResult>,
    /// `customFields` as Payroc kept them (it leaves out names not set up in its portal).
    #[serde(default)]
    pub custom_fields: Option<Vec<CustomField>>,
}

/// One `customFields` entry of an answer.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
pub struct CustomField {
    /// The field's name.
    pub name: Option<String>,
}

/// `order` of a refund.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefundOrder {
    /// The merchant's order id.
    pub order_id: Option<String>,
    /// Minor units.
    pub amount: Option<i64>,
    /// Currency code.
    pub currency: Option<String>,
    /// When Payroc made it (ISO 8601).
    pub date_time: Option<String>,
}

/// `transactionResult` of a refund.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TransactionResult {
    /// `ready`, `pending`, `declined`, `complete`, …
    pub status: Option<String>,
    /// `A`, `D`, `E`, `P`, `R`, `C` (card); optional for bank transfers.
    pub response_code: Option<String>,
    /// Payroc's message, e.g. `OK5`.
    pub response_message: Option<String>,
    /// `approvalCode`.
    pub approval_code: Option<String>,
    /// `processorResponseCode`.
    pub processor_response_code: Option<String>,
    /// `authorizedAmount` in minor units, negative when money goes to the customer: an integer
    /// for cards, a JSON number for bank transfers. `Err` holds the text of one that is not a
    /// whole number of minor units (never rounded).
    #[serde(default, deserialize_with = "minor_units")]
    pub authorized_amount: Option<Result<i64, String>>,
}

/// Reads a JSON number as an exact whole number of minor units, from its text: `-4999`,
/// `-4999.0` and `-4.999e3` are -4999; `-4999.5` or a value past `i64` is `Err` with the text.
fn minor_units<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Result<i64, String>>, D::Error> {
    let raw: Option<Box<serde_json::value::RawValue>> = Option::deserialize(deserializer)?;
    Ok(raw.map(|raw| exact_whole_number(raw.get()).ok_or_else(|| raw.get().to_owned())))
}

/// The integer a JSON number's text denotes exactly, if it is one that fits in `i64`.
fn exact_whole_number(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let mut digits = format!("{whole}{fraction}");
    let mut scale = exponent.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    // Drop zeros the negative scale cancels; a digit that is not zero is a fraction.
    while scale < 0 {
        if !digits.ends_with('0') {
            return None;
        }
        digits.pop();
        scale += 1;
    }
    let mut value: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    for _ in 0..scale {
        value = value.checked_mul(10)?;
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

#[derive(Deserialize, Default)]
struct Problem {
    #[serde(rename = "type")]
    kind: Option<String>,
    title: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<ProblemItem>,
}

#[derive(Deserialize, Default)]
struct ProblemItem {
    parameter: Option<String>,
    detail: Option<String>,
    message: Option<String>,
}

impl Problem {
    /// `Forbidden — API key not allowed`: the title and the detail, redacted, or the status's
    /// reason when the body was not a problem.
    fn summary(&self, status: StatusCode) -> String {
        let parts: Vec<&str> = [self.title.as_deref(), self.detail.as_deref()]
            .into_iter()
            .flatten()
            .filter(|part| !part.trim().is_empty())
            .collect();
        let text = match parts.as_slice() {
            [] => status.canonical_reason().unwrap_or("no explanation").to_owned(),
            [title, detail] if title == detail => (*title).to_owned(),
            parts => parts.join(" — "),
        };
        redact_digit_runs(&text)
    }

    /// One line a person can act on: title, detail, and each `errors[]` item as `parameter: message`.
    fn describe(&self, status: StatusCode) -> String {
        let mut parts = Vec::new();
        if let Some(title) = &self.title {
            parts.push(title.clone());
        }
        if let Some(detail) = self
            .detail
            .as_ref()
            .filter(|detail| Some(*detail) != self.title.as_ref())
        {
            parts.push(detail.clone());
        }
        for item in &self.errors {
            let text = item
                .message
                .as_ref()
                .or(item.detail.as_ref())
                .cloned()
                .unwrap_or_default();
            parts.push(match &item.parameter {
                Some(parameter) => format!("{parameter}: {text}"),
                None => text,
            });
        }
        if parts.is_empty() {
            parts.push(format!("HTTP {status}"));
        }
        let mut text = redact_digit_runs(&parts.join("; "));
        if text.len() > 500 {
            let mut cut = 500;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

impl PayrocClient {
    /// Builds the client: rustls with certificate checks always on, one connection pool.
    pub fn new(config: ClientConfig) -> Result<PayrocClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("refund-batch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(PayrocClient {
            http,
            config,
            token: Mutex::new(None),
            pause: PauseGate::default(),
        })
    }

    fn authorize_url(&self) -> String {
        format!("{}/authorize", self.config.identity_url.trim_end_matches('/'))
    }

    /// The endpoint URL for a method.
    pub fn endpoint(&self, method: Method) -> String {
        let base = self.config.api_url.trim_end_matches('/');
        match method {
            Method::Card => format!("{base}/refunds"),
            Method::Bank => format!("{base}/bank-transfer-refunds"),
        }
    }

    /// A token with time to spare, fetching one if needed. Callers queue on the lock, so one
    /// fetch serves all the senders that found the token stale at once.
    pub async fn bearer_token(&self) -> Result<SecretString, SystemicError> {
        let mut guard = self.token.lock().await;
        if let Some(token) = guard.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        *guard = Some(token);
        Ok(value)
    }

    /// Forgets `used` if it is still the cached token (after a 401), so the next caller fetches.
    async fn invalidate(&self, used: &SecretString) {
        let mut guard = self.token.lock().await;
        if guard
            .as_ref()
            .is_some_and(|token| token.value.expose_secret() == used.expose_secret())
        {
            *guard = None;
        }
    }

    async fn fetch_token(&self) -> Result<Token, SystemicError> {
        let url = self.authorize_url();
        let mut retry = 0;
        loop {
            let response = self
                .http
                .post(&url)
                .header("x-api-key", self.config.api_key.expose_secret())
                .send()
                .await;
            let failure = match response {
                Ok(response) if response.status().is_success() => {
                    let issued = Instant::now();
                    let body = response.bytes().await;
                    match body
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<TokenResponse>(&bytes).ok())
                    {
                        Some(token) => {
                            // Payroc's SDKs treat a token as stale two minutes before it expires;
                            // for lifetimes under four minutes, at half-life instead.
                            let lifetime = Duration::from_secs(
                                u64::try_from(token.expires_in.unwrap_or(3600))
                                    .ok()
                                    .filter(|seconds| *seconds > 0)
                                    .unwrap_or(3600),
                            );
                            let buffer = Duration::from_secs(120).min(lifetime / 2);
                            return Ok(Token {
                                value: SecretString::from(token.access_token),
                                refresh_at: issued + lifetime - buffer,
                            });
                        }
                        None => "the answer was not a token".to_owned(),
                    }
                }
                // A 4xx will not change by retrying: the key or the account is refused. Say
                // exactly what the identity service said (redacted), then how to fix it.
                Ok(response)
                    if response.status().is_client_error() && response.status() != StatusCode::TOO_MANY_REQUESTS =>
                {
                    let status = response.status();
                    let bytes = response.bytes().await.unwrap_or_default();
                    let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
                    return Err(SystemicError::Authentication(format!(
                        "HTTP {}: {} (from {url}; check PAYROC_API_KEY / --api-key-file and the environment, --env)",
                        status.as_u16(),
                        problem.summary(status)
                    )));
                }
                Ok(response) => format!("HTTP {}", response.status()),
                Err(error) => transport_description(&error),
            };
            if retry >= self.config.retry.max_retries {
                return Err(SystemicError::IdentityUnreachable { url, detail: failure });
            }
            tokio::time::sleep(self.config.retry.backoff(retry)).await;
            retry += 1;
        }
    }

    /// Sends one refund: `body` with `key`, retried as the module documentation describes.
    ///
    /// `body` is reference-counted, so every retry sends the very same buffer.
    ///
    /// `limiter` is the run's rate limiter: the dispatcher took the permit for the first request,
    /// and every re-send takes one too, so retries count against `--rate` like everything else.
    pub async fn send_refund(
        &self,
        method: Method,
        key: &str,
        body: bytes::Bytes,
        limiter: &RequestLimiter,
    ) -> SendReport {
        let url = self.endpoint(method);
        let exchange = self
            .exchange(Some(limiter), |token| {
                self.http
                    .post(&url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await;
        let result = match exchange.result {
            Ok((status, bytes)) => answer_of(status, &bytes),
            Err(result) => result,
        };
        SendReport {
            result,
            requests: exchange.requests,
            maybe_reached: exchange.maybe_reached,
        }
    }

    /// Lists every refund Payroc has for one order made between `date_from` and `date_to`
    /// (`GET /refunds?processingTerminalId&orderId&dateFrom&dateTo` or the bank-transfer list),
    /// following every page, for `reconcile` and the pre-send lookup. Only a complete listing is
    /// returned: a page that cannot be read, or paging that does not end, is an error, because
    /// "not in the list" is only evidence when the list is whole. Each page takes a permit of
    /// `limiter` when one is given.
    pub async fn find_refunds(
        &self,
        method: Method,
        terminal: &str,
        order_id: &str,
        window: (time::OffsetDateTime, time::OffsetDateTime),
        limiter: Option<&RequestLimiter>,
    ) -> Result<Vec<CreatedRefund>, SendResult> {
        let url = self.endpoint(method);
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let date_from = window
            .0
            .to_offset(time::UtcOffset::UTC)
            .format(&format)
            .unwrap_or_default();
        let date_to = window
            .1
            .to_offset(time::UtcOffset::UTC)
            .format(&format)
            .unwrap_or_default();
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _page in 0..MAX_LIST_PAGES {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            let exchange = self
                .exchange(limiter, |token| {
                    let mut query = vec![
                        ("processingTerminalId", terminal),
                        ("orderId", order_id),
                        ("dateFrom", date_from.as_str()),
                        ("dateTo", date_to.as_str()),
                        ("limit", "100"),
                    ];
                    if let Some(after) = &after {
                        query.push(("after", after.as_str()));
                    }
                    self.http.get(&url).bearer_auth(token).query(&query)
                })
                .await;
            let (status, bytes) = exchange.result?;
            if !status.is_success() {
                let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
                return Err(SendResult::GaveUp {
                    maybe_reached: false,
                    detail: format!(
                        "the lookup was refused: HTTP {}: {}",
                        status.as_u16(),
                        problem.describe(status)
                    ),
                    http_status: Some(status.as_u16()),
                });
            }
            let list: RefundList = serde_json::from_slice(&bytes).map_err(|error| SendResult::GaveUp {
                maybe_reached: false,
                detail: format!("the lookup answer was not a refund list ({error})"),
                http_status: Some(status.as_u16()),
            })?;
            let next = list.has_more.then(|| list.next_cursor()).flatten();
            let had_more = list.has_more;
            found.extend(list.data);
            match next {
                Some(cursor) if after.as_deref() != Some(cursor.as_str()) => after = Some(cursor),
                Some(_) | None if had_more => {
                    return Err(SendResult::GaveUp {
                        maybe_reached: false,
                        detail: "Payroc said more refunds exist for this order but gave no way to the next page".into(),
                        http_status: Some(status.as_u16()),
                    });
                }
                _ => {
                    // Payroc filters by order id; a refund of another order in the answer is
                    // not this order's, whatever else it says.
                    found.retain(|refund| {
                        refund
                            .order
                            .as_ref()
                            .and_then(|order| order.order_id.as_deref())
                            .is_none_or(|id| id == order_id)
                    });
                    return Ok(found);
                }
            }
        }
        Err(SendResult::GaveUp {
            maybe_reached: false,
            detail: format!(
                "Payroc lists more than {MAX_LIST_PAGES} pages of refunds for this order; settle it by hand"
            ),
            http_status: None,
        })
    }

    /// Reads one refund as Payroc has it now (`GET /refunds/{refundId}` or
    /// `GET /bank-transfer-refunds/{refundId}`), for `reconcile --refresh`.
    pub async fn get_refund(&self, method: Method, refund_id: &str) -> Result<CreatedRefund, SendResult> {
        let url = format!("{}/{}", self.endpoint(method), encode_path_segment(refund_id));
        let exchange = self
            .exchange(None, |token| self.http.get(&url).bearer_auth(token))
            .await;
        let (status, bytes) = exchange.result?;
        if !status.is_success() {
            let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(SendResult::GaveUp {
                maybe_reached: false,
                detail: format!(
                    "the lookup was refused: HTTP {}: {}",
                    status.as_u16(),
                    problem.describe(status)
                ),
                http_status: Some(status.as_u16()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| SendResult::GaveUp {
            maybe_reached: false,
            detail: format!("the lookup answer was not a refund ({error})"),
            http_status: Some(status.as_u16()),
        })
    }

    /// One request with everything around it: the shared pause, a token, retries with backoff
    /// on 408/429/5xx and transport errors, one token refresh on 401. `build` makes the request
    /// from a bearer token; it is called again for each retry, with the same key and bytes.
    /// Returns the first final answer (any other status, with its body) or why it gave up.
    ///
    /// With a `limiter`, every request after the first waits for a permit of its own.
    async fn exchange(
        &self,
        limiter: Option<&RequestLimiter>,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Exchange {
        let mut requests = 0;
        let mut retry = 0;
        let mut refreshed_after_401 = false;
        let mut maybe_reached = false;
        loop {
            self.pause.wait().await;
            if requests > 0
                && let Some(limiter) = limiter
            {
                limiter.until_ready().await;
            }
            // The token is taken only now, after every wait, so the request carries the newest
            // one: a token taken before a long wait could expire during it and turn a routine
            // refresh into a false "authentication failed".
            let token = match self.bearer_token().await {
                Ok(token) => token,
                Err(error) => {
                    return Exchange {
                        result: Err(SendResult::Systemic(error)),
                        requests,
                        maybe_reached,
                    };
                }
            };
            requests += 1;
            let (detail, http_status) = match build(token.expose_secret()).send().await {
                Err(error) => {
                    // A refused connection never carried the request; anything later might have.
                    if !error.is_connect() {
                        maybe_reached = true;
                    }
                    (transport_description(&error), None)
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    match response.bytes().await {
                        Err(error) => {
                            maybe_reached = true;
                            let cut = transport_description(&error);
                            (
                                format!("HTTP {status}, then the answer was cut off ({cut})"),
                                Some(status.as_u16()),
                            )
                        }
                        Ok(bytes) if status == StatusCode::UNAUTHORIZED => {
                            if refreshed_after_401 {
                                let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
                                let reason = format!(
                                    "Payroc answered 401 again after a fresh token: {}",
                                    problem.describe(status)
                                );
                                let result = Err(SendResult::Systemic(SystemicError::Authentication(reason)));
                                return Exchange {
                                    result,
                                    requests,
                                    maybe_reached,
                                };
                            }
                            // A 401 means the request was not processed: refresh and re-send.
                            refreshed_after_401 = true;
                            self.invalidate(&token).await;
                            continue;
                        }
                        Ok(bytes) if !is_retryable(status) => {
                            return Exchange {
                                result: Ok((status, bytes)),
                                requests,
                                maybe_reached,
                            };
                        }
                        Ok(bytes) => {
                            // Only a 429 is taken to mean "not processed".
                            if status != StatusCode::TOO_MANY_REQUESTS {
                                maybe_reached = true;
                            }
                            if let Some(pause) = retry_after {
                                self.pause
                                    .pause_until(Instant::now() + pause.min(self.config.retry.max_delay));
                            }
                            let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
                            (
                                format!("HTTP {}: {}", status.as_u16(), problem.describe(status)),
                                Some(status.as_u16()),
                            )
                        }
                    }
                }
            };
            if retry >= self.config.retry.max_retries {
                let result = Err(SendResult::GaveUp {
                    maybe_reached,
                    detail: format!("{detail} (gave up after {requests} requests)"),
                    http_status,
                });
                return Exchange {
                    result,
                    requests,
                    maybe_reached,
                };
            }
            // The shared pause covers a Retry-After; otherwise back off.
            self.pause.wait().await;
            tokio::time::sleep(self.config.retry.backoff(retry)).await;
            retry += 1;
        }
    }
}

/// What [`PayrocClient::exchange`] came back with.
struct Exchange {
    /// A final answer's status and body, or why there is none.
    result: Result<(StatusCode, bytes::Bytes), SendResult>,
    /// HTTP requests sent.
    requests: u32,
    /// Whether an earlier request of this exchange may have reached Payroc (and been processed)
    /// although no definite answer to it came back.
    maybe_reached: bool,
}

/// 408, 429 and 5xx: worth the same request again.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Pages of one order's refunds read at most: far more than any real order has (each page holds
/// 100), so reaching it means the paging does not end.
const MAX_LIST_PAGES: usize = 50;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RefundList {
    #[serde(default)]
    data: Vec<CreatedRefund>,
    /// More pages exist: the list so far is not complete.
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    links: Vec<ListLink>,
}

#[derive(Deserialize, Default)]
struct ListLink {
    rel: Option<String>,
    href: Option<String>,
}

impl RefundList {
    /// The `after` cursor of the next page: from the `next` link when Payroc gives one (the
    /// cursor is opaque), else the last refund's id.
    fn next_cursor(&self) -> Option<String> {
        let from_link = self
            .links
            .iter()
            .find(|link| link.rel.as_deref() == Some("next"))
            .and_then(|link| reqwest::Url::parse(link.href.as_deref()?).ok())
            .and_then(|url| {
                url.query_pairs()
                    .find(|(name, _)| name == "after")
                    .map(|(_, value)| value.into_owned())
            });
        from_link.or_else(|| self.data.last().and_then(|refund| refund.refund_id.clone()))
    }
}

/// A refund id as one URL path segment (Payroc's are 10 letters and digits; anything else is
/// percent-encoded rather than trusted).
fn encode_path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Reads a final answer (anything but 401, 408, 429 and 5xx) in Payroc's words.
fn answer_of(status: StatusCode, bytes: &[u8]) -> SendResult {
    if status.is_success() {
        let refund = serde_json::from_slice::<Box<CreatedRefund>>(bytes)
            .ok()
            .map(|mut refund| {
                if let Some(result) = refund.transaction_result.as_mut() {
                    result.response_message = result.response_message.as_deref().map(redact_digit_runs);
                }
                refund
            });
        return SendResult::Created {
            http_status: status.as_u16(),
            refund,
        };
    }
    let problem: Problem = serde_json::from_slice(bytes).unwrap_or_default();
    SendResult::Refused {
        http_status: status.as_u16(),
        problem_type: problem.kind.clone(),
        detail: problem.describe(status),
    }
}

/// `Retry-After` in seconds or an HTTP date, or the sandbox's and some APIs' `retry-after-ms`.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(milliseconds) = headers
        .get("retry-after-ms")
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(milliseconds));
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let seconds = (date - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// A transport error in words, without the URL's query or anything the request carried.
fn transport_description(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the connection broke while reading the answer"
    } else {
        "the connection failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    match innermost {
        Some(cause) => format!("{kind} ({})", redact_digit_runs(&cause)),
        None => kind.to_owned(),
    }
}

/// Checks a base URL: `https`, or plain `http` only to a loopback host (the sandbox).
pub fn check_base_url(name: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("{name} {url:?} is not a URL ({error})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(address)) => address.is_loopback(),
                Some(url::Host::Ipv6(address)) => address.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{name} {url:?} is plain http to a host that is not loopback; card data only travels over https"
                ))
            }
        }
        other => Err(format!("{name} {url:?} has scheme {other:?}; use https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_reported_in_payrocs_words() {
        let body = br#"{"refundId":"CD3HN88U9F","order":{"orderId":"R1","amount":4999,"currency":"USD"},"transactionResult":{"status":"ready","responseCode":"A","responseMessage":"OK5"}}"#;
        let SendResult::Created {
            http_status: 201,
            refund: Some(refund),
        } = answer_of(StatusCode::CREATED, body)
        else {
            panic!("a 201 is a created refund")
        };
        assert_eq!(refund.refund_id.as_deref(), Some("CD3HN88U9F"));
        assert_eq!(refund.order.and_then(|order| order.order_id).as_deref(), Some("R1"));
        assert!(matches!(
            answer_of(StatusCode::CREATED, b"<html>ok</html>"),
            SendResult::Created { refund: None, .. }
        ));
        let problem = br#"{"type":"https://docs.payroc.com/api/errors#bad-request","title":"Bad request","status":400,"detail":"Validation failed","errors":[{"parameter":"order.amount","message":"must be positive"}]}"#;
        let SendResult::Refused {
            http_status: 400,
            problem_type,
            detail,
        } = answer_of(StatusCode::BAD_REQUEST, problem)
        else {
            panic!("a 400 is a refusal")
        };
        assert_eq!(
            problem_type.as_deref(),
            Some("https://docs.payroc.com/api/errors#bad-request")
        );
        assert_eq!(detail, "Bad request; Validation failed; order.amount: must be positive");
    }

    #[test]
    fn authorized_amounts_are_read_exactly_and_fractions_refused() {
        for (text, expected) in [
            ("-4999", Some(-4999)),
            ("-4999.0", Some(-4999)),
            ("-4999.000", Some(-4999)),
            ("-4.999e3", Some(-4999)),
            ("-49990E-1", Some(-4999)),
            ("0", Some(0)),
            ("0.0", Some(0)),
            ("-4999.5", None),
            ("-4999.0000000000001", None),
            ("-4.9995e3", None),
            ("99999999999999999999", None),
            ("1e400", None),
        ] {
            assert_eq!(exact_whole_number(text), expected, "{text}");
        }
        let result: TransactionResult =
            serde_json::from_str(r#"{"status":"ready","authorizedAmount":-4999.5}"#).unwrap();
        assert_eq!(result.authorized_amount, Some(Err("-4999.5".to_owned())));
        let result: TransactionResult =
            serde_json::from_str(r#"{"status":"ready","authorizedAmount":-4999.0}"#).unwrap();
        assert_eq!(result.authorized_amount, Some(Ok(-4999)));
        let result: TransactionResult = serde_json::from_str(r#"{"status":"ready"}"#).unwrap();
        assert_eq!(result.authorized_amount, None);
    }

    #[test]
    fn the_next_page_cursor_comes_from_the_next_link_or_the_last_refund() {
        let list: RefundList = serde_json::from_str(
            r#"{"hasMore":true,"links":[{"rel":"next","method":"get","href":"https://api.payroc.com/v1/refunds?limit=100&after=8516"}],"data":[{"refundId":"AAAAAAAAAA"}]}"#,
        )
        .unwrap();
        assert_eq!(list.next_cursor().as_deref(), Some("8516"));
        let list: RefundList =
            serde_json::from_str(r#"{"hasMore":true,"data":[{"refundId":"AAAAAAAAAA"},{"refundId":"BBBBBBBBBB"}]}"#)
                .unwrap();
        assert_eq!(list.next_cursor().as_deref(), Some("BBBBBBBBBB"));
    }

    #[test]
    fn backoff_grows_with_jitter_under_the_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 0..10 {
            let step = Duration::from_millis(100 * 2_u64.pow(retry)).min(Duration::from_secs(1));
            let delay = policy.backoff(retry);
            assert!(
                delay >= step / 2 && delay <= step,
                "retry {retry}: {delay:?} not within {step:?}"
            );
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_base_url("--api-url", "http://127.0.0.1:8080/v1").is_ok());
        assert!(check_base_url("--api-url", "http://localhost:8080/v1").is_ok());
        assert!(check_base_url("--api-url", "http://[::1]:8080/v1").is_ok());
        assert!(check_base_url("--api-url", "https://api.payroc.com/v1").is_ok());
        assert!(check_base_url("--api-url", "http://api.payroc.com/v1").is_err());
        assert!(check_base_url("--api-url", "http://10.0.0.1/v1").is_err());
        assert!(check_base_url("--api-url", "ftp://127.0.0.1/v1").is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", "20".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(20)));
    }
}
