//! Talking to Payroc: the bearer token, one refund request with its retries, the lookups.
//!
//! The dispatcher hands [`PayrocClient::send_refund`] a key and the exact body bytes; this module
//! turns everything that can happen on the wire into one [`SendResult`] **in Payroc's words**:
//! a created refund (as its body says, or a 2xx whose body is not one), a refusal (a problem
//! with its status and type), an authentication failure, or "gave up, and the request may or may
//! not have reached Payroc". It decides no ledger state: the dispatcher's outcome table does, from the answer
//! and from whether the refund's key generation may already have reached Payroc. Retries always
//! re-send the same key and the same bytes, so a retry can never become a second refund.
//!
//! Retry policy (uv's `RetryState` is the model): 408, 429, 5xx, timeouts and connection errors
//! are retried with exponential backoff, jitter and a cap. `Retry-After` on 429/503 pauses every
//! sender through the shared [`PauseGate`], not only the one that got it. A 401 refreshes the
//! token once and re-sends. The bearer token is fetched from `{identity}/authorize`, shared by
//! every sender, and refreshed by the first sender that finds it close to expiry (the Payroc
//! SDKs' two-minute buffer); concurrent senders wait for that one fetch.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::payroc::answer::{
    CreatedRefund, MAX_LIST_PAGES, MAX_TERMINAL_LIST_PAGES, PayrocProblem, RefundList, SendReport, SendResult,
    SystemicError, answer_of,
};
use crate::payroc::retry::{PauseGate, RequestLimiter, RetryPolicy, is_retryable, retry_after};
use crate::refund::Method;
use crate::refund::key::IdempotencyKey;
use crate::refund::redaction::redact_digit_runs;

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

#[derive(Clone)]
struct Token {
    /// `Bearer …`, built once per token and marked sensitive, so that a request's headers cost
    /// a reference count rather than a format and a validation, and never print the token.
    authorization: HeaderValue,
    /// When the identity service answered with it.
    issued: Instant,
    refresh_at: Instant,
}

/// Sends refunds to Payroc. Cheap to share: one per run, behind an `Arc`.
pub struct PayrocClient {
    http: reqwest::Client,
    config: ClientConfig,
    /// The refund endpoints, card then bank, parsed once: a request clones one instead of
    /// formatting and parsing a URL. The same URL creates refunds (POST) and lists them (GET).
    refund_urls: [reqwest::Url; 2],
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

impl PayrocClient {
    /// Builds the client: rustls with certificate checks always on, one connection pool.
    pub fn new(config: ClientConfig) -> Result<PayrocClient, ClientSetupError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(256)
            // reqwest's own retry layer only ever re-sends HTTP/2 requests the server refused
            // unprocessed; this client speaks HTTP/1.1 (and retries with its own idempotency
            // keys), so the layer would never act, yet it copies every request's headers in
            // case it does. Off, it copies nothing.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .user_agent(concat!("refund-batch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let parse = |method| {
            let url = endpoint(&config.api_url, method);
            reqwest::Url::parse(&url).map_err(|source| ClientSetupError::Url { url, source })
        };
        let refund_urls = [parse(Method::Card)?, parse(Method::Bank)?];
        Ok(PayrocClient {
            http,
            config,
            refund_urls,
            token: Mutex::new(None),
            pause: PauseGate::default(),
        })
    }

    fn authorize_url(&self) -> String {
        format!("{}/authorize", self.config.identity_url.trim_end_matches('/'))
    }

    /// The refund endpoint of a method.
    fn refund_url(&self, method: Method) -> &reqwest::Url {
        &self.refund_urls[usize::from(method == Method::Bank)]
    }

    /// The `Authorization` header of a token with time to spare that was issued after
    /// `not_before`, when given, fetching one if needed. Callers queue on the lock, so one fetch
    /// serves all the senders that found the token stale at once. The re-send after a 401 must
    /// carry a token fetched after that 401, not one another sender fetched earlier that may
    /// have died meanwhile — only a refusal of such a token says the key is bad.
    async fn authorization_issued_after(&self, not_before: Option<Instant>) -> Result<HeaderValue, SystemicError> {
        let mut guard = self.token.lock().await;
        if let Some(token) = guard.as_ref()
            && Instant::now() < token.refresh_at
            && not_before.is_none_or(|not_before| token.issued >= not_before)
        {
            return Ok(token.authorization.clone());
        }
        let token = self.fetch_token().await?;
        let authorization = token.authorization.clone();
        *guard = Some(token);
        Ok(authorization)
    }

    /// Fetches a token, which reads Payroc's clock from the answer's `Date` header, and says
    /// whether refunds may be sent: not while the local clock is more than five minutes off
    /// Payroc's (see [`crate::clock`]). Run before anything decides by time.
    pub async fn check_clock(&self) -> Result<(), SystemicError> {
        self.authorization_issued_after(None).await?;
        match crate::clock::refuse_to_send() {
            Some(reason) => Err(SystemicError::ClockSkew(reason)),
            None => Ok(()),
        }
    }

    /// Forgets `used` if it is still the cached token (after a 401), so the next caller fetches.
    async fn invalidate(&self, used: &HeaderValue) {
        let mut guard = self.token.lock().await;
        if guard.as_ref().is_some_and(|token| token.authorization == *used) {
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
            if let Ok(response) = &response {
                crate::clock::observe_payroc_date(response.headers());
            }
            let failure = match response {
                Ok(response) if response.status().is_success() => {
                    let issued = Instant::now();
                    let body = response.bytes().await;
                    match body
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<TokenResponse>(&bytes).ok())
                    {
                        Some(token) => {
                            let Ok(mut authorization) = HeaderValue::try_from(format!("Bearer {}", token.access_token))
                            else {
                                return Err(SystemicError::Authentication(
                                    "the identity service answered with a token that cannot be sent in a header"
                                        .to_owned(),
                                ));
                            };
                            authorization.set_sensitive(true);
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
                                authorization,
                                issued,
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
                    let problem: PayrocProblem = serde_json::from_slice(&bytes).unwrap_or_default();
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
        key: IdempotencyKey,
        body: bytes::Bytes,
        limiter: &RequestLimiter,
    ) -> SendReport {
        let url = self.refund_url(method);
        // The header is the key's text, written once for every retry.
        let key = key.to_string();
        let exchange = self
            .exchange(Some(limiter), true, true, |authorization| {
                self.http
                    .post(url.clone())
                    .header(AUTHORIZATION, authorization.clone())
                    .header(IDEMPOTENCY_KEY, key.as_str())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
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

    /// One request with everything around it: the shared pause, a token, retries with backoff
    /// on 408/429/5xx and transport errors, one token refresh on 401. `build` makes the request
    /// from a bearer token; it is called again for each retry, with the same key and bytes.
    /// Returns the first final answer (any other status, with its body) or why it gave up.
    ///
    /// With a `limiter`, every request waits for a permit of its own — except the first when
    /// `first_has_permit` says the caller took one for it (the dispatcher does for a send).
    async fn exchange(
        &self,
        limiter: Option<&RequestLimiter>,
        first_has_permit: bool,
        creates_refunds: bool,
        build: impl Fn(&HeaderValue) -> reqwest::RequestBuilder,
    ) -> Exchange {
        let mut requests = 0;
        let mut retry = 0;
        let mut refreshed_after_401 = false;
        // When the last 401 came: the re-send needs a token issued after it.
        let mut unauthorized_at: Option<Instant> = None;
        let mut maybe_reached = false;
        loop {
            crate::payroc::retry::wait_turn(&self.pause, limiter, requests == 0 && first_has_permit).await;
            // The token is taken only now, after every wait, so the request carries the newest
            // one: a token taken before a long wait could expire during it and turn a routine
            // refresh into a false "authentication failed".
            let authorization = match self.authorization_issued_after(unauthorized_at).await {
                Ok(authorization) => authorization,
                Err(error) => {
                    return Exchange {
                        result: Err(SendResult::Systemic(error)),
                        requests,
                        maybe_reached,
                    };
                }
            };
            if creates_refunds && let Some(reason) = crate::clock::refuse_to_send() {
                return Exchange {
                    result: Err(SendResult::Systemic(SystemicError::ClockSkew(reason))),
                    requests,
                    maybe_reached,
                };
            }
            requests += 1;
            let (detail, http_status) = match build(&authorization).send().await {
                Err(error) => {
                    // A refused connection never carried the request; anything later might have.
                    if !error.is_connect() {
                        maybe_reached = true;
                    }
                    (transport_description(&error), None)
                }
                Ok(response) => {
                    crate::clock::observe_payroc_date(response.headers());
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
                                let problem: PayrocProblem = serde_json::from_slice(&bytes).unwrap_or_default();
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
                            unauthorized_at = Some(Instant::now());
                            self.invalidate(&authorization).await;
                            continue;
                        }
                        Ok(bytes)
                            if !is_retryable(status)
                                && !crate::payroc::answer::still_being_processed(status, &bytes) =>
                        {
                            return Exchange {
                                result: Ok((status, bytes)),
                                requests,
                                maybe_reached,
                            };
                        }
                        Ok(bytes) => {
                            // Only a 429 is taken to mean "not processed". A 409 saying the key
                            // is still being processed means a request with it reached Payroc.
                            if status != StatusCode::TOO_MANY_REQUESTS {
                                maybe_reached = true;
                            }
                            if let Some(pause) = retry_after {
                                self.pause
                                    .pause_until(Instant::now() + pause.min(self.config.retry.max_delay));
                            }
                            let problem: PayrocProblem = serde_json::from_slice(&bytes).unwrap_or_default();
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

#[path = "client_lookups.rs"]
mod lookups;

/// The `Idempotency-Key` header's name, made once.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The refund endpoint for `method` under the API base `api_url`.
fn endpoint(api_url: &str, method: Method) -> String {
    let base = api_url.trim_end_matches('/');
    match method {
        Method::Card => format!("{base}/refunds"),
        Method::Bank => format!("{base}/bank-transfer-refunds"),
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// reqwest could not build its client (its TLS setup).
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The API base does not make a URL.
    #[error("{url:?} is not a URL")]
    Url {
        /// The endpoint as formatted.
        url: String,
        /// Why it does not parse.
        source: url::ParseError,
    },
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
    fn plain_http_only_to_loopback() {
        assert!(check_base_url("--api-url", "http://127.0.0.1:8080/v1").is_ok());
        assert!(check_base_url("--api-url", "http://localhost:8080/v1").is_ok());
        assert!(check_base_url("--api-url", "http://[::1]:8080/v1").is_ok());
        assert!(check_base_url("--api-url", "https://api.payroc.com/v1").is_ok());
        assert!(check_base_url("--api-url", "http://api.payroc.com/v1").is_err());
        assert!(check_base_url("--api-url", "http://10.0.0.1/v1").is_err());
        assert!(check_base_url("--api-url", "ftp://127.0.0.1/v1").is_err());
    }
}
