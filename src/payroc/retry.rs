//! How a request is retried: exponential backoff with jitter, `Retry-After` read from the answer
//! and shared by every sender through a [`PauseGate`], and which statuses are worth the same
//! request again. Every delay is configurable so tests run retries in milliseconds.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio::time::Instant;

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
///
/// On the standard library's monotonic clock rather than governor's default (quanta), which
/// calibrates itself against the TSC when first used: about a millisecond of a one-row run.
///
/// Requests already under way — a re-send after a 401, a 429 or a 5xx, a look-up's pages — go
/// before new sends: the dispatcher takes a permit for a new row only at a moment when none of
/// them waits for one, and looks again each time it wakes (see [`permits`]). Without that, the
/// dispatcher, which wakes exactly when a permit falls due and takes all it may, could starve a
/// re-send for as long as rows remain, and a re-send waiting too long after a 401 meets its
/// fresh token expired too.
#[derive(Debug)]
pub struct RequestLimiter {
    gcra: governor::RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        governor::clock::MonotonicClock,
        governor::middleware::NoOpMiddleware<std::time::Instant>,
    >,
    /// Requests under way waiting for a permit at this moment.
    waiting_under_way: AtomicUsize,
    /// Told when the last of them got its permit (or gave up waiting).
    none_waiting: Notify,
}

impl RequestLimiter {
    /// `rate` requests a second, at most `burst` at once.
    pub fn new(rate: NonZeroU32, burst: NonZeroU32) -> RequestLimiter {
        RequestLimiter {
            gcra: governor::RateLimiter::direct_with_clock(
                governor::Quota::per_second(rate).allow_burst(burst),
                governor::clock::MonotonicClock,
            ),
            waiting_under_way: AtomicUsize::new(0),
            none_waiting: Notify::new(),
        }
    }

    /// Takes one permit for a new send if one is free right now and no request under way waits.
    pub fn try_new_send(&self) -> bool {
        self.waiting_under_way.load(Ordering::SeqCst) == 0 && self.gcra.check().is_ok()
    }

    /// Returns once no request under way waits for a permit.
    async fn no_request_under_way_waits(&self) {
        loop {
            // Created before the count is read: a notification between the two still wakes it.
            let told = self.none_waiting.notified();
            if self.waiting_under_way.load(Ordering::SeqCst) == 0 {
                return;
            }
            told.await;
        }
    }
}

/// Counts a request under way as waiting for as long as it waits (also when its wait is
/// dropped half-way, as a request given up on at a stop is).
struct WaitingUnderWay<'limiter>(&'limiter RequestLimiter);

impl<'limiter> WaitingUnderWay<'limiter> {
    fn new(limiter: &'limiter RequestLimiter) -> Self {
        limiter.waiting_under_way.fetch_add(1, Ordering::SeqCst);
        WaitingUnderWay(limiter)
    }
}

impl Drop for WaitingUnderWay<'_> {
    fn drop(&mut self) {
        if self.0.waiting_under_way.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_waiting.notify_waiters();
        }
    }
}

/// Waits for a permit for a request already under way (a re-send, a look-up's page), ahead of
/// new sends, on tokio's own timer: `check()`, and when it says "not yet", one sleep until the
/// moment it names. (governor's `until_ready` waits on a timer thread of its own, woken through
/// a futex on every wait — a measurable share of the CPU per row when requests are sparse.)
pub async fn permit(limiter: &RequestLimiter) {
    let _waiting = WaitingUnderWay::new(limiter);
    take_permits(limiter, 1, false).await;
}

/// Waits until `wanted` permits for new sends are free at once, past any `Retry-After` pause of
/// `pause` and while no request under way waits for one, and takes them, sleeping on tokio's
/// timer until the moment the limiter names; returns how many it took (fewer than `wanted` only
/// when that is more than the limiter's burst can ever hold, and at least one).
///
/// Permits taken while a pause began are void, as in [`wait_turn`]: the wait starts again after
/// the pause.
pub async fn permits(pause: &PauseGate, limiter: &RequestLimiter, wanted: u32) -> u32 {
    loop {
        pause.wait().await;
        let taken = take_permits(limiter, wanted, true).await;
        if !pause.is_active() {
            return taken;
        }
    }
}

async fn take_permits(limiter: &RequestLimiter, wanted: u32, give_way: bool) -> u32 {
    let mut wanted = NonZeroU32::new(wanted).unwrap_or(NonZeroU32::MIN);
    loop {
        if give_way {
            limiter.no_request_under_way_waits().await;
        }
        match limiter.gcra.check_n(wanted) {
            Ok(Ok(())) => return wanted.get(),
            Ok(Err(not_until)) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(not_until.earliest_possible())).await;
            }
            Err(governor::InsufficientCapacity(capacity)) => {
                wanted = NonZeroU32::new(capacity).unwrap_or(NonZeroU32::MIN);
            }
        }
    }
}

/// Waits until a request may leave: past any `Retry-After` pause of `pause`, and with a permit
/// of `limiter` taken after it (`has_permit`: the caller took one already). A permit taken before
/// or during a pause is void once the pause has been waited out: with it, every request that
/// waited would leave the moment the pause ends, all at once — the burst the pause is there to
/// prevent.
pub async fn wait_turn(pause: &PauseGate, limiter: Option<&RequestLimiter>, mut has_permit: bool) {
    loop {
        let paused = pause.wait().await;
        let Some(limiter) = limiter else {
            return;
        };
        if has_permit && !paused {
            return;
        }
        permit(limiter).await;
        has_permit = true;
        if !pause.is_active() {
            return;
        }
    }
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

    /// Waits out the current pause, if any; returns whether there was one to wait out.
    pub async fn wait(&self) -> bool {
        let mut waited = false;
        while let Some(until) = self.active_until() {
            tokio::time::sleep_until(until).await;
            waited = true;
        }
        waited
    }

    /// When the pause in force ends, if one is.
    fn active_until(&self) -> Option<Instant> {
        let until = *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        until.filter(|until| *until > Instant::now())
    }

    /// Whether a pause is in force now.
    pub fn is_active(&self) -> bool {
        self.active_until().is_some()
    }
}

/// 408, 429 and 5xx: worth the same request again.
pub(crate) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds or an HTTP date, or the sandbox's and some APIs' `retry-after-ms`.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime the tool runs on: one thread, with its reactor and timer.
    fn current_thread_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// 50 a second, burst 1, its one permit taken: each next permit is 20 ms after the last.
    fn fifty_a_second_with_the_first_taken() -> RequestLimiter {
        let limiter = RequestLimiter::new(NonZeroU32::new(50).unwrap(), NonZeroU32::MIN);
        assert!(limiter.try_new_send());
        limiter
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
    fn a_request_under_way_gets_the_next_permit_before_new_sends() {
        current_thread_runtime().block_on(async {
            let limiter = fifty_a_second_with_the_first_taken();
            let order = std::sync::Mutex::new(Vec::new());
            let resend = async {
                permit(&limiter).await;
                order.lock().unwrap().push("re-send");
            };
            let new_send = async {
                permits(&PauseGate::default(), &limiter, 1).await;
                order.lock().unwrap().push("new send");
            };
            // The re-send starts waiting first; both sleep until the same millisecond, and the
            // new send gives way.
            tokio::join!(resend, new_send);
            assert_eq!(*order.lock().unwrap(), ["re-send", "new send"]);
            // Now the other way round: the new send already sleeps for the next permit when
            // the re-send starts waiting; it still must not take that permit.
            assert_eq!(
                resend_joining_a_waiting_new_send(&limiter).await,
                ["re-send", "new send"]
            );
            assert!(!limiter.try_new_send(), "both permits were taken");
        });
    }

    /// The order in which a new send already waiting for the next permit and a re-send that
    /// starts waiting after it get their permits.
    async fn resend_joining_a_waiting_new_send(limiter: &RequestLimiter) -> Vec<&'static str> {
        let order = std::sync::Mutex::new(Vec::new());
        let new_send = async {
            permits(&PauseGate::default(), limiter, 1).await;
            order.lock().unwrap().push("new send");
        };
        let resend = async {
            tokio::task::yield_now().await;
            permit(limiter).await;
            order.lock().unwrap().push("re-send");
        };
        tokio::join!(new_send, resend);
        order.into_inner().unwrap()
    }

    #[test]
    fn a_permit_taken_before_a_pause_is_void_after_it() {
        current_thread_runtime().block_on(async {
            // One a second, burst 2: within the test, exactly two permits exist.
            let burst_of_two = || RequestLimiter::new(NonZeroU32::MIN, NonZeroU32::new(2).unwrap());
            let pause = PauseGate::default();

            // No pause: the permit the caller holds is used, none taken.
            let limiter = burst_of_two();
            wait_turn(&pause, Some(&limiter), true).await;
            assert!(limiter.try_new_send() && limiter.try_new_send(), "both permits left");

            // A pause: the caller's permit is void, a new one is taken after the pause.
            let limiter = burst_of_two();
            pause.pause_until(Instant::now() + Duration::from_millis(5));
            wait_turn(&pause, Some(&limiter), true).await;
            assert!(!pause.is_active());
            assert!(limiter.try_new_send(), "one permit left");
            assert!(!limiter.try_new_send(), "the other was taken after the pause");

            // No permit held: one is taken.
            let limiter = burst_of_two();
            wait_turn(&pause, Some(&limiter), false).await;
            assert!(limiter.try_new_send());
            assert!(!limiter.try_new_send());
        });
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
