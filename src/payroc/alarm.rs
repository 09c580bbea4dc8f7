//! A re-armable one-shot timer for the dispatcher's waits on the rate limiter: on Linux a
//! `timerfd` watched by tokio's reactor, elsewhere tokio's own timer.
//!
//! Why not only tokio's timer: its wheel keeps a timer more than one 64 ms slot away on a coarser
//! level and wakes the process at that slot's start to move it down, and then again at the
//! deadline. At the default rate of 20 requests a second, the next permit is 50 ms away, so most
//! permit waits cost two wake-ups of an idle process instead of one — and on a virtual machine
//! each wake-up of an idle process costs tens of microseconds of CPU, a large share of what a row
//! costs at that pace. A `timerfd` is one kernel timer that wakes the reactor exactly once, at its
//! deadline. Re-arming it for the deadline it already holds costs nothing, so a wait cut short
//! by another event (an answer came back) and started again does not touch the kernel.
//!
//! Short waits of the dispatcher do not use it at all but doze (see
//! [`crate::payroc::retry::doze_until`]); it serves the longer ones (low rates, a wait while
//! requests need their answers to go on) and the commit of outcomes.

use std::time::Instant;

/// A one-shot timer that wakes the thread once, at the deadline it is waited for.
#[derive(Debug)]
pub struct Alarm {
    #[cfg(target_os = "linux")]
    timer: Option<linux::TimerFd>,
}

impl Alarm {
    /// A new alarm. Where the kernel refuses a `timerfd` (or off Linux), it waits on tokio's timer.
    pub fn new() -> Alarm {
        Alarm {
            #[cfg(target_os = "linux")]
            timer: linux::TimerFd::new()
                .inspect_err(|error| tracing::debug!("no timerfd ({error}); waiting on tokio's timer"))
                .ok(),
        }
    }

    /// Waits until `deadline`. Must be awaited from inside the tokio runtime (its reactor).
    pub async fn sleep_until(&mut self, deadline: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(timer) = &mut self.timer {
            match timer.wait_until(deadline).await {
                Ok(()) => return,
                Err(error) => tracing::debug!("timerfd wait failed ({error}); waiting on tokio's timer"),
            }
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

impl Alarm {
    /// An alarm on tokio's timer only: for waits too rare to be worth a file descriptor.
    pub fn on_tokio_timer() -> Alarm {
        Alarm {
            #[cfg(target_os = "linux")]
            timer: None,
        }
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::OwnedFd;
    use std::time::Instant;

    use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
    use tokio::io::unix::AsyncFd;

    /// A non-blocking monotonic `timerfd` registered with tokio's reactor.
    #[derive(Debug)]
    pub(super) struct TimerFd {
        fd: AsyncFd<OwnedFd>,
        /// The deadline the kernel timer holds, if it is armed and its expiry not yet read.
        armed: Option<Instant>,
    }

    impl TimerFd {
        pub(super) fn new() -> std::io::Result<TimerFd> {
            let fd = rustix::time::timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // Deprecated because a type's raw descriptor could be closed or replaced while the
            // reactor still watches it, and the replacement (`register`) is `unsafe`, which this
            // project forbids. Here the `OwnedFd` is moved into the `AsyncFd` and lives and dies
            // with it, so the descriptor the reactor watches is this timer's for its whole life.
            #[allow(deprecated)]
            let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
            Ok(TimerFd { fd, armed: None })
        }

        pub(super) async fn wait_until(&mut self, deadline: Instant) -> std::io::Result<()> {
            let now = Instant::now();
            if deadline <= now {
                return Ok(());
            }
            if self.armed != Some(deadline) {
                let remaining = deadline - now;
                let spec = Itimerspec {
                    it_interval: Timespec { tv_sec: 0, tv_nsec: 0 },
                    it_value: Timespec {
                        tv_sec: i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX),
                        tv_nsec: i64::from(remaining.subsec_nanos()),
                    },
                };
                // Setting the time also clears an expiry nobody read (a wait cut short).
                rustix::time::timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
                self.armed = Some(deadline);
            }
            loop {
                let mut ready = self.fd.readable().await?;
                let mut expirations = [0_u8; 8];
                match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                    Ok(_) => {
                        // One-shot: not readable again until re-armed, so the next wait does not
                        // start with a read that finds nothing.
                        ready.clear_ready();
                        self.armed = None;
                        return Ok(());
                    }
                    Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn an_alarm_wakes_at_its_deadline_not_before() {
        runtime().block_on(async {
            let mut alarm = Alarm::new();
            for _ in 0..3 {
                let deadline = Instant::now() + Duration::from_millis(5);
                alarm.sleep_until(deadline).await;
                assert!(Instant::now() >= deadline, "woke before the deadline");
            }
            // A deadline already past returns at once.
            alarm.sleep_until(Instant::now()).await;
        });
    }

    #[test]
    fn a_wait_cut_short_and_started_again_still_wakes() {
        runtime().block_on(async {
            let mut alarm = Alarm::new();
            let far = Instant::now() + Duration::from_secs(3600);
            // Cut short: the kernel timer stays armed for an hour, nobody waits on it.
            let cut = tokio::time::timeout(Duration::from_millis(1), alarm.sleep_until(far)).await;
            assert!(cut.is_err(), "an hour did not pass");
            // A nearer deadline re-arms it; the hour-long one must not be what is waited for.
            let near = Instant::now() + Duration::from_millis(5);
            let waited = tokio::time::timeout(Duration::from_secs(10), alarm.sleep_until(near)).await;
            assert!(waited.is_ok(), "the re-armed alarm never woke");
            assert!(Instant::now() >= near);
            // And the same deadline again after it passed returns at once.
            alarm.sleep_until(near).await;
        });
    }

    #[test]
    fn an_alarm_on_tokio_timer_waits_too() {
        runtime().block_on(async {
            let mut alarm = Alarm::on_tokio_timer();
            let deadline = Instant::now() + Duration::from_millis(5);
            alarm.sleep_until(deadline).await;
            assert!(Instant::now() >= deadline);
        });
    }
}
