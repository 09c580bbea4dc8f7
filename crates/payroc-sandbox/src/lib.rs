#![doc = include_str!("../README.md")]

mod clock;
mod currency;
mod prng;
mod problem;
mod server;
mod validate;

#[cfg(test)]
mod schema_tests;
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
    /// How long the first request with a new key is processed before the refund is made. A
    /// second request with the same key meanwhile is answered 409
    /// `idempotency-key-in-progress` ("currently being processed; retry later"), not replayed:
    /// a client must ask again later with the same key and bytes. Zero: processing is instant.
    pub key_processing_time: Duration,
    /// Seeds the fault PRNG, refund ids and tokens so runs are repeatable.
    pub seed: u64,
    /// The custom field names set up for the merchant (case-sensitive).
    /// A refund's `customFields` entries with another name are accepted and
    /// the refund is made, but they are left out of the response, as Payroc
    /// does for names not set up in its portal. Default: `batchRow`,
    /// `invoiceNumber`, `costCenter`.
    pub known_custom_fields: Vec<String>,
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
            key_processing_time: Duration::ZERO,
            seed: 0,
            known_custom_fields: ["batchRow", "invoiceNumber", "costCenter"].map(String::from).to_vec(),
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
    /// Pages of the refund lists requested (`GET /refunds`, `GET /bank-transfer-refunds`, any
    /// filter or outcome).
    #[serde(default)]
    pub list_requests: u64,
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
    /// 409s for a key whose first request was still being processed
    /// ([`SandboxConfig::key_processing_time`]).
    #[serde(default)]
    pub key_in_progress: u64,
}

/// One created refund, as a test wants to check it (no card data).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    /// 10 characters `[A-Z0-9]`, like Payroc's.
    pub refund_id: String,
    /// `"card"` or `"bank"`.
    pub method: String,
    /// The `processingTerminalId` sent.
    pub processing_terminal_id: String,
    /// The `order.orderId` sent.
    pub order_id: String,
    /// Minor units, positive as sent.
    pub amount: i64,
    /// The `order.currency` sent.
    pub currency: String,
    /// `transactionResult.responseCode` of the first answer: `"A"`, `"D"`,
    /// `"R"`, `"E"`, `"C"` or `"P"`, or `""` for a bank answer without one.
    pub response_code: String,
    /// `transactionResult.status` as GET shows it now: `"ready"`,
    /// `"declined"` or `"pending"` when created, then `"complete"` or
    /// `"returned"` after [`Sandbox::settle`] or [`Sandbox::return_transfer`],
    /// `"reversal"` after [`Sandbox::reverse`].
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

    /// Close the batch: every card refund with status `ready` becomes
    /// `complete`; every bank refund `ready` or `pending` becomes `complete`,
    /// except refunds to the "returned later" test account, which become
    /// `returned`. Other statuses stay. GET by id, the lists and
    /// [`RefundRecord::status`] show the change; an idempotent replay of the
    /// creating POST still answers with the first 201 body. Also
    /// `POST /__sandbox/settle`.
    pub fn settle(&self) {
        self.inner.settle();
    }

    /// The refund (card or bank) with this `refundId` gets status
    /// `reversal`, as GET by id, the lists and [`RefundRecord::status`] show
    /// it; replays of the creating POST still answer with the first 201
    /// body. `false` if no refund has this id. Also
    /// `POST /__sandbox/refunds/{refundId}/reverse` (204, or 404).
    pub fn reverse(&self, refund_id: &str) -> bool {
        self.inner.reverse(refund_id)
    }

    /// The customer's bank returns the bank transfer with this `refundId`,
    /// as ACH returns come, days after settlement: its status becomes
    /// `returned` whatever it was (usually `complete`), as GET by id, the
    /// lists and [`RefundRecord::status`] show it; replays of the creating
    /// POST still answer with the first 201 body. `false` if no bank refund
    /// has this id (card refunds are not returned). Also
    /// `POST /__sandbox/refunds/{refundId}/return` (204, or 404).
    pub fn return_transfer(&self, refund_id: &str) -> bool {
        self.inner.return_transfer(refund_id)
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
                    tracing::debug!(error = %e, "payroc-sandbox server ended with an error");
                }
                Err(e) => tracing::debug!(error = %e, "payroc-sandbox server task failed"),
            }
        }
    }
}
