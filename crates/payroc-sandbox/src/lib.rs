//! # payroc-sandbox
//!
//! A local HTTP stand-in for Payroc's unreferenced-refund API. It is what
//! `refund-batch`'s tests and the `refund-batch sandbox` command run against
//! (and what `run --env sandbox` starts in-process), so the whole processor —
//! token cache, idempotency keys, retries, reconciliation — can be exercised
//! over real loopback HTTP without touching Payroc.
//!
//! It models Payroc from Payroc's API reference **independently** of the
//! main crate: it shares no request types with `refund-batch`, so a mistake in
//! how the client builds requests is caught here instead of being checked
//! against itself.
//!
//! ## What it serves
//!
//! | endpoint | behaviour |
//! |---|---|
//! | `POST /authorize` | `x-api-key` → `{access_token, token_type:"Bearer", expires_in, scope}`; bad/missing key → 401 |
//! | `POST /v1/refunds` | unreferenced card refund: bearer token, `Content-Type: application/json`, UUID v4 `Idempotency-Key`, Payroc's validation → 201 + `location` |
//! | `POST /v1/bank-transfer-refunds` | unreferenced bank-transfer (ACH) refund, same rules |
//! | `GET /v1/refunds?processingTerminalId=&orderId=&dateFrom=&dateTo=&limit=&after=&before=` | paginated list `{limit,count,hasMore,links,data}`; **last 24 hours only unless `dateFrom` is given** (see [Dates](#dates)) |
//! | `GET /v1/refunds/{refundId}` | one refund or 404 problem (any age) |
//! | `GET /v1/bank-transfer-refunds[/{refundId}]` | same for bank-transfer refunds |
//! | `GET /__sandbox/stats` | [`Stats`] as JSON (no auth), for tests that run the sandbox as a separate process |
//! | `POST /__sandbox/age?days=N` | [`Sandbox::age`] (no auth) → 204; bad `days` → 400 |
//! | `POST /__sandbox/forbid?processingTerminalId=X` | [`Sandbox::forbid_terminal`] (no auth) → 204 |
//! | `POST /__sandbox/allow?processingTerminalId=X` | [`Sandbox::allow_terminal`] (no auth) → 204 |
//!
//! Errors are `application/problem+json` with Payroc's `type` URIs
//! (`https://docs.payroc.com/api/errors#…`); validation failures list every
//! bad field in `errors[]` with a JSON path in `parameter` (e.g. `order.amount`).
//!
//! ## Test values
//!
//! | input | result |
//! |---|---|
//! | card number `4000000000000002` | 201, `status` "declined", `responseCode` "D" |
//! | card number `4000000000000127` | 201, `status` "declined", `responseCode` "R" (call the bank) |
//! | card number `4000000000000119` | 201, `status` "pending", `responseCode` "E" (queued) |
//! | secure token `2967530000000002` (card or bank) | 201, `status` "declined", `responseCode` "D" |
//! | bank `accountNumber` `99990002` | 201, `status` "declined", `responseCode` "D" |
//! | `processingTerminalId` `9999001` | 400 `…#capabilities-missing`, `errors[].parameter` "processingTerminalId"; nothing created |
//! | `processingTerminalId` `9999201` (card or bank) | refund created; 201 `application/json` body **without `refundId`**, no `location` |
//! | `processingTerminalId` `9999202` (card or bank) | refund created; 201 `text/html` body `<html>ok</html>`, no `location` |
//! | `processingTerminalId` `9999203` (card or bank) | refund created; 201 normal body and `location`, but **`order.orderId` is another order**: the sent one + `-X`, cut to 24 characters (if that gives the same id: its first 22 characters + `-Y`, or `-Z`) |
//! | a terminal switched off with [`Sandbox::forbid_terminal`] | 403 `…#forbidden`; nothing created or stored (see [Terminal switched off](#terminal-switched-off)) |
//! | anything else (card) | 201, `status` "ready", `responseCode` "A", `responseMessage` "OK5" |
//! | anything else (bank) | 201, `status` "ready", `responseCode` "A", `responseMessage` "NoError" |
//!
//! Declined refunds are still created: they get a `refundId`, appear in the
//! GET lists and count in [`Stats::created_per_order`], as a declined refund is
//! still a transaction record at Payroc.
//!
//! The `99992xx` terminals model a 201 that proves nothing: the refund exists
//! (it counts in [`Stats::created_per_order`], is in [`Stats::refunds`] and its
//! key is stored for idempotency as usual), but the answer does not say which
//! refund it is. A replay of the key gives the same odd answer; GET by id and
//! the lists show the real refund, with its `refundId` and the sent `orderId`.
//!
//! ## Dates
//!
//! Every refund records its creation time, in whole seconds:
//! [`RefundRecord::created_at`] and `order.dateTime` in its body are the same
//! RFC 3339 UTC value (`2026-11-25T13:02:11Z`).
//!
//! Both GET lists take `dateFrom` and `dateTo`: an ISO 8601 date-time with a
//! time zone (`2024-07-01T15:30:00Z`, `2024-07-01T17:30:00.5+02:00` — send a
//! `+` as `%2B`) or a plain date (`2024-07-01`, meaning midnight UTC). Only
//! refunds with `dateFrom <= created <= dateTo` are listed, compared to the
//! second (a fraction of a second in a bound is dropped). A malformed value
//! (or one without a time zone) is a 400 problem with `errors[].parameter`
//! `dateFrom` or `dateTo`; `dateFrom` after `dateTo` is an empty page.
//!
//! * **No `dateFrom`: the last 24 hours** (`now - 24h <= created`). Payroc
//!   documents no default window, so the sandbox picks a narrow one: a client
//!   that omits `dateFrom` cannot rely on seeing older refunds.
//! * No `dateTo`: no upper bound.
//!
//! The date window combines with `processingTerminalId` and `orderId`;
//! `limit` (1–100, default 10) and the `after`/`before` cursors page over the
//! filtered set, so `hasMore` and the `next`/`previous` links (which repeat
//! every filter as sent) describe that set. GET by id ignores dates.
//!
//! ## Ageing
//!
//! [`Sandbox::age`]`(days)` (or `POST /__sandbox/age?days=N`) models time
//! passing: every stored refund's creation time ([`RefundRecord::created_at`]
//! and `order.dateTime` in its stored body, so GETs and replays show it) and
//! every stored idempotency key move `days` days into the past. Refunds made
//! afterwards get the real current time. Keys that are then 7 days old or
//! older are forgotten (see [Idempotency](#idempotency)), and refunds older
//! than 24 hours leave the lists unless `dateFrom` reaches back to them.
//!
//! ## Terminal switched off
//!
//! [`Sandbox::forbid_terminal`] (or `POST /__sandbox/forbid?processingTerminalId=X`)
//! switches a terminal's refund capability off mid-day, until
//! [`Sandbox::allow_terminal`] (or `POST /__sandbox/allow?…`). While it is
//! off, every refund POST (card or bank) whose body has that
//! `processingTerminalId` is answered 403 `application/problem+json`, shaped
//! like Payroc's: `type` `https://docs.payroc.com/api/errors#forbidden`,
//! `title` "Forbidden", `status` 403, `detail` "The processing terminal is not
//! allowed to run this operation", `instance` (the URL posted to) and
//! `resource` (`refund` or `bankTransferRefund`). The check comes after
//! authentication, the content type and the `Idempotency-Key` header checks,
//! and **before** the idempotency lookup and body validation, and stores
//! nothing: a re-send of a key that already created a refund is refused too
//! (the first send made the refund, its answer was lost, the re-send gets 403).
//! Counted in [`FaultCounts::forbidden`]. GETs are not affected.
//!
//! ## Idempotency
//!
//! The sandbox stores `Idempotency-Key → (URI, exact body bytes, response)`.
//! Same key + same URI + byte-identical body → the first response again (same
//! status and body, nothing created). Same key with a different URI or body →
//! 409 `…#idempotency-key-in-use`. The check-and-create runs under one lock,
//! so two concurrent identical requests create one refund. Decisions on the
//! points Payroc leaves open:
//!
//! * a 400 (validation, capabilities-missing) **stores nothing**: the key can
//!   be reused with a corrected body. (Real Payroc is unconfirmed here, so the
//!   client should still give a corrected row a new key.)
//! * 401/403/415/429/503 store nothing either: nothing was processed.
//! * a 500-after-create or dropped connection stores the real 201, so a retry
//!   with the same key and body replays the 201.
//! * keys are kept **7 days**, as Payroc keeps them: a key stored 7 days ago
//!   or earlier is forgotten, and a POST with it is processed as new — it may
//!   create a second refund for the same order, which is why a client needs
//!   its own ledger. Within a run only [`Sandbox::age`] makes keys that old.
//! * a known key is checked before the body is validated, so a different,
//!   invalid body under a used key gets 409, not 400.
//!
//! ## Faults
//!
//! See [`SandboxConfig`]. Applied to refund POSTs in this order: latency,
//! 429, 503, normal handling (401, 415, `Idempotency-Key` checks, the 403 of
//! a switched-off terminal, idempotency, validation), then — only if this
//! request created a new refund — 500-after-create or drop-after-create.
//! Each is decided by a splitmix64 PRNG seeded from [`SandboxConfig::seed`],
//! so a sequential run is repeatable (under concurrency the order of draws
//! follows arrival order).
//!
//! ## Privacy
//!
//! Logging is `tracing` at debug level with method, path and status only;
//! bodies, card/account numbers, API keys and tokens are never logged.
//! Responses mask card numbers (first 6 + `******` + last 4) and account
//! numbers (last 4) as Payroc does.

mod clock;
mod currency;
mod prng;
mod problem;
mod server;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the sandbox behaves: who may authenticate, token lifetimes and which
/// faults to inject. The [`Default`] is a well-behaved Payroc.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// `None`: any non-empty `x-api-key` is accepted (convenient for local
    /// runs). `Some(k)`: only `k`, so tests can check a wrong key gives 401.
    pub api_key: Option<String>,
    /// The `expires_in` advertised by `/authorize` (Payroc says 3600 s).
    pub token_lifetime: Duration,
    /// Fault: tokens really die after this, earlier than advertised, to test
    /// that the client re-authenticates on 401 and resends with the same key.
    /// `Some(Duration::ZERO)` makes every token dead on arrival.
    pub token_actual_lifetime: Option<Duration>,
    /// Added before handling every refund POST and GET (to drive concurrency
    /// and timeouts).
    pub latency: Duration,
    /// Probability a refund POST gets 429 + `Retry-After` (nothing created).
    pub rate_429: f64,
    /// `Retry-After` on 429/503, sent as whole seconds (rounded up) and also,
    /// exactly, as `retry-after-ms` so tests can use sub-second values.
    pub retry_after: Duration,
    /// Probability a refund POST gets 503 + `Retry-After` (nothing created).
    pub rate_503: f64,
    /// Probability that a POST which creates a refund answers 500
    /// problem+json although the refund was made (the ambiguous failure an
    /// exactly-once client must reconcile).
    pub rate_500_after_create: f64,
    /// Probability that a POST which creates a refund has its connection
    /// dropped without a complete HTTP response (the client sees a transport
    /// error) although the refund was made.
    pub rate_drop_after_create: f64,
    /// Seeds the fault PRNG, refund ids and tokens so runs are repeatable.
    pub seed: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            token_lifetime: Duration::from_secs(3600),
            token_actual_lifetime: None,
            latency: Duration::ZERO,
            rate_429: 0.0,
            retry_after: Duration::from_secs(1),
            rate_503: 0.0,
            rate_500_after_create: 0.0,
            rate_drop_after_create: 0.0,
            seed: 0,
        }
    }
}

/// Counters a test reads to prove "exactly once" and that faults fired.
/// Also served as JSON at `GET /__sandbox/stats`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// `"card|<terminal>|<orderId>"` or `"bank|<terminal>|<orderId>"` →
    /// refunds actually created. Declined refunds count: at Payroc a declined
    /// refund is still a transaction record with a `refundId`.
    pub created_per_order: BTreeMap<String, u32>,
    /// `Idempotency-Key` → refund POSTs received with it (including ones
    /// answered 401/403/429/503/409/400 or replayed).
    pub requests_per_key: BTreeMap<String, u32>,
    /// Refund POSTs received (both endpoints, any outcome).
    pub refund_posts: u64,
    /// Successful `/authorize` calls.
    pub tokens_issued: u64,
    /// 401 responses (bad API key, missing/unknown/expired token).
    pub unauthorized: u64,
    /// Most refund POSTs being handled at the same time.
    pub peak_in_flight: u32,
    /// How many of each fault were injected.
    pub faults: FaultCounts,
    /// Every created refund, in creation order.
    pub refunds: Vec<RefundRecord>,
}

/// How many of each fault were injected.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests (POST or GET) delayed by [`SandboxConfig::latency`].
    pub latency: u64,
    /// 429 responses.
    pub too_many_requests: u64,
    /// 503 responses.
    pub service_unavailable: u64,
    /// 500 responses sent although the refund was created.
    pub error_500_after_create: u64,
    /// Connections dropped although the refund was created.
    pub drop_after_create: u64,
    /// 401s for tokens that were still within their advertised lifetime.
    pub token_expired_early: u64,
    /// 403s for refund POSTs to a terminal switched off with
    /// [`Sandbox::forbid_terminal`].
    pub forbidden: u64,
}

/// One created refund, as a test wants to check it (no card data).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    /// 10 characters `[A-Z0-9]`, like Payroc's.
    pub refund_id: String,
    /// `"card"` or `"bank"`.
    pub method: String,
    pub processing_terminal_id: String,
    pub order_id: String,
    /// Minor units, positive as sent.
    pub amount: i64,
    pub currency: String,
    /// `"A"`, `"D"`, `"R"` or `"E"`.
    pub response_code: String,
    /// `"ready"`, `"declined"` or `"pending"`.
    pub status: String,
    /// The key of the POST that created it.
    pub idempotency_key: String,
    /// When it was created, RFC 3339 UTC (`2026-11-25T13:02:11Z`): the same
    /// value as `order.dateTime` in its body. [`Sandbox::age`] moves it back.
    pub created_at: String,
}

/// The sandbox: cheap to clone (shared state behind an `Arc`), so the same
/// instance can back a router, a server and a test's stats checks.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<server::Inner>,
}

impl Sandbox {
    /// A fresh sandbox with no tokens, keys or refunds.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            inner: Arc::new(server::Inner::new(config)),
        }
    }

    /// The axum router with every endpoint, for serving it yourself or
    /// driving it in-process (e.g. with `tower::ServiceExt::oneshot`).
    /// Note: drop-after-create only looks like a dropped connection when
    /// served over HTTP; in-process it surfaces as a body error.
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// A snapshot of the counters (the same data as `GET /__sandbox/stats`).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Model `days` passing: every stored refund's creation time
    /// ([`RefundRecord::created_at`] and `order.dateTime` in its body) and
    /// every stored idempotency key move `days` days into the past. Keys that
    /// are then 7 days old or older are forgotten, so a POST with one is
    /// processed as new (and may create a second refund). Refunds older than
    /// 24 hours drop out of the GET lists unless `dateFrom` reaches them.
    /// Also `POST /__sandbox/age?days=N`.
    pub fn age(&self, days: u32) {
        self.inner.age(days);
    }

    /// Switch the refund capability of `terminal` off: until
    /// [`Sandbox::allow_terminal`], every refund POST (card or bank) whose
    /// body has this `processingTerminalId` is answered 403 `…#forbidden`,
    /// before the idempotency lookup and storing nothing, so even a re-send of
    /// a key that already created a refund is refused. Also
    /// `POST /__sandbox/forbid?processingTerminalId=X`.
    pub fn forbid_terminal(&self, terminal: &str) {
        self.inner.set_forbidden(terminal, true);
    }

    /// Undo [`Sandbox::forbid_terminal`] for `terminal` (no-op if it was not
    /// forbidden). Also `POST /__sandbox/allow?processingTerminalId=X`.
    pub fn allow_terminal(&self, terminal: &str) {
        self.inner.set_forbidden(terminal, false);
    }

    /// Serve on `listener` until `shutdown` completes, then finish in-flight
    /// requests and return.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            // Small request/response pairs: don't let Nagle delay them.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Bind `addr` (e.g. `127.0.0.1:0`), start serving on the current tokio
/// runtime and return a handle. Dropping the handle also stops the server.
pub async fn spawn(addr: SocketAddr, config: SandboxConfig) -> std::io::Result<RunningSandbox> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let sandbox = Sandbox::new(config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sandbox.clone().serve(listener, async move {
        // Fires on `shutdown()` and when the handle is dropped.
        let _ = rx.await;
    }));
    tracing::debug!(%local_addr, "payroc-sandbox listening");
    Ok(RunningSandbox {
        local_addr,
        sandbox,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// A sandbox serving on a local port (from [`spawn`]).
pub struct RunningSandbox {
    local_addr: SocketAddr,
    sandbox: Sandbox,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningSandbox {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The sandbox, e.g. to read [`Sandbox::stats`].
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Base URL of the API, standing in for `https://api.payroc.com/v1`.
    pub fn api_url(&self) -> String {
        format!("http://{}/v1", self.local_addr)
    }

    /// Base URL of the identity service, standing in for
    /// `https://identity.payroc.com` (POST `{identity_url}/authorize`).
    pub fn identity_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stop accepting connections, let in-flight requests finish, and wait.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "payroc-sandbox server ended with an error")
                }
                Err(e) => tracing::debug!(error = %e, "payroc-sandbox server task failed"),
            }
        }
    }
}
