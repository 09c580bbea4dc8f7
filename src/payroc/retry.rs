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

use super::alarm::Alarm;

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
    take_permits(limiter, 1, &mut Alarm::on_tokio_timer(), false, None).await;
}

/// Waits until `wanted` permits for new sends are free at once, past any `Retry-After` pause of
/// `pause` and while no request under way waits for one, and takes them, sleeping on `alarm`
/// until the moment the limiter names; returns how many it took (fewer than `wanted` only when
/// that is more than the limiter's burst can ever hold, and at least one).
///
/// Permits taken while a pause began (an answer read at the end of a doze, say) are void, as in
/// [`wait_turn`]: the wait starts again after the pause.
///
/// With `doze`, a wait no longer than it, while no request under way waits for a permit, is
/// spent in [`doze_until`] instead of on `alarm`.
pub async fn permits(
    pause: &PauseGate,
    limiter: &RequestLimiter,
    wanted: u32,
    alarm: &mut Alarm,
    doze: Option<Duration>,
) -> u32 {
    loop {
        pause.wait().await;
        let taken = take_permits(limiter, wanted, alarm, true, doze).await;
        if !pause.is_active() {
            return taken;
        }
    }
}

async fn take_permits(
    limiter: &RequestLimiter,
    wanted: u32,
    alarm: &mut Alarm,
    give_way: bool,
    doze: Option<Duration>,
) -> u32 {
    let mut wanted = NonZeroU32::new(wanted).unwrap_or(NonZeroU32::MIN);
    loop {
        if give_way {
            limiter.no_request_under_way_waits().await;
        }
        match limiter.gcra.check_n(wanted) {
            Ok(Ok(())) => return wanted.get(),
            Ok(Err(not_until)) => {
                let until = not_until.earliest_possible();
                let short =
                    doze.is_some_and(|limit| until.saturating_duration_since(std::time::Instant::now()) <= limit);
                if short && limiter.waiting_under_way.load(Ordering::SeqCst) == 0 {
                    doze_until(until).await;
                } else {
                    alarm.sleep_until(until).await;
                }
            }
            Err(governor::InsufficientCapacity(capacity)) => {
                wanted = NonZeroU32::new(capacity).unwrap_or(NonZeroU32::MIN);
            }
        }
    }
}

/// Sleeps the whole thread until `until`, then lets the runtime read everything that arrived
/// meanwhile — instead of parking in the reactor, which an answer coming back would wake.
///
/// Why: at a modest rate the dispatcher's only deadline is the next permit, and the answers of
/// the requests in flight may as well be read then. Parked in the reactor, the process wakes
/// once for the permit and again for each answer; dozing, it wakes once, at the permit, and
/// finds the answers waiting in the sockets. On a virtual machine each wake-up of an idle
/// process costs tens of microseconds of CPU and runs the code after it from cold caches:
/// measured at the default rate over a 50 ms API, about a fifth less CPU per row and 1.7
/// context switches per pair of rows instead of 2.8 (the fsyncs of the group commits among them).
///
/// The price, which bounds how long a doze may be: nothing else on the runtime's one thread
/// runs during it — a stop request, a timer of a request under way, a `Retry-After` answer are
/// all seen when it ends, at most that long late. So only the dispatcher dozes, only with free
/// slots to spare (it needs no answer to go on), and never with an in-process sandbox, which
/// would stop answering.
///
/// The yields are what make the one wake-up do everything: the first two let the connections
/// write the requests just started before the thread sleeps (the second, those whose loopback
/// connection the first turn opened; a connection to a remote host — its TCP and TLS round
/// trips, a DNS answer — moves on only when each doze ends, a tick per round trip, which the
/// slots to spare absorb); after the sleep, the first turn of the runtime polls the reactor
/// without waiting and runs the connections it wakes, which read their answers, and the second
/// runs whatever those woke in turn, so the caller sees the requests finished (a unit test
/// checks the first). Without them nothing is lost, only seen one wake-up later.
pub async fn doze_until(until: std::time::Instant) {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
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
    use std::sync::Arc;

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
            let mut alarm = Alarm::new();
            let resend = async {
                permit(&limiter).await;
                order.lock().unwrap().push("re-send");
            };
            let new_send = async {
                permits(&PauseGate::default(), &limiter, 1, &mut alarm, None).await;
                order.lock().unwrap().push("new send");
            };
            // The re-send starts waiting first; the dispatcher's alarm would wake first (it is
            // exact, tokio's timer rounds up to the millisecond) and take the permit.
            tokio::join!(resend, new_send);
            assert_eq!(*order.lock().unwrap(), ["re-send", "new send"]);
            // Now the other way round: the new send already sleeps for the next permit when
            // the re-send starts waiting; it still must not take that permit.
            assert_eq!(
                resend_joining_a_waiting_new_send(&limiter, &mut alarm, None).await,
                ["re-send", "new send"]
            );
            assert!(!limiter.try_new_send(), "both permits were taken");
        });
    }

    /// The order in which a new send already waiting for the next permit (dozing through the
    /// wait with `doze`) and a re-send that starts waiting after it get their permits.
    async fn resend_joining_a_waiting_new_send(
        limiter: &RequestLimiter,
        alarm: &mut Alarm,
        doze: Option<Duration>,
    ) -> Vec<&'static str> {
        let order = std::sync::Mutex::new(Vec::new());
        let new_send = async {
            permits(&PauseGate::default(), limiter, 1, alarm, doze).await;
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
    fn a_request_under_way_gets_the_next_permit_before_a_dozing_new_send() {
        current_thread_runtime().block_on(async {
            // The next permit is 20 ms away, within the doze limit.
            let limiter = fifty_a_second_with_the_first_taken();
            // The new send dozes first, the whole thread with it, and the re-send starts waiting
            // while it does (during the doze's first yields). It still goes first.
            let doze = Some(Duration::from_millis(150));
            assert_eq!(
                resend_joining_a_waiting_new_send(&limiter, &mut Alarm::new(), doze).await,
                ["re-send", "new send"]
            );
        });
    }

    #[test]
    fn after_a_doze_what_arrived_during_it_has_been_read() {
        use tokio::io::AsyncReadExt as _;
        current_thread_runtime().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
            let (mut server, _) = listener.accept().expect("accept");
            client.set_nonblocking(true).unwrap();
            let mut client = tokio::net::TcpStream::from_std(client).expect("register");
            // A task of its own, as hyper's connection tasks are: it waits for the answer.
            let read = Arc::new(AtomicUsize::new(0));
            let reader = tokio::spawn({
                let read = Arc::clone(&read);
                async move {
                    let mut buffer = [0; 16];
                    let count = client.read(&mut buffer).await.expect("read");
                    read.store(count, Ordering::SeqCst);
                }
            });
            tokio::task::yield_now().await;
            assert_eq!(read.load(Ordering::SeqCst), 0, "nothing to read yet");
            // The answer is in the socket when the doze begins (a write during the sleep itself
            // would need a second thread and a timing guess); what matters to the dispatcher is
            // the same: when the doze returns, its reader has run.
            std::io::Write::write_all(&mut server, b"answer").expect("write");
            doze_until(std::time::Instant::now() + Duration::from_millis(10)).await;
            assert_eq!(
                read.load(Ordering::SeqCst),
                6,
                "read within the doze's one wake-up, not at the next"
            );
            reader.await.expect("the reader ends");
        });
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
