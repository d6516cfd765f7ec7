//! How the host puts the scanner to sleep and wakes it: the [`Parker`] trait and its
//! userspace ([`StdParker`]) and model-checking (`LoomParker`) implementations.

use core::time::Duration;

/// The host's primitive for parking the one scanner thread and unparking it from any
/// other thread.
///
/// The scanner calls, in this order, from its own thread:
/// [`prepare_park`](Parker::prepare_park), then either
/// [`cancel_park`](Parker::cancel_park) (a notification was already pending) or
/// [`park_timeout`](Parker::park_timeout). Notifiers and the stopper call
/// [`unpark`](Parker::unpark) from any thread, at most once per announced sleep
/// (plus once for shutdown).
///
/// # The contract the protocol relies on
///
/// An `unpark` that happens after `prepare_park` began must make the next
/// `park_timeout` return promptly, even if it is called after the `unpark`. That is
/// std's park token; in the kernel it is the classic pattern
///
/// ```text
/// prepare_park  = set_current_state(TASK_INTERRUPTIBLE)
/// park_timeout  = schedule_timeout(nsecs_to_jiffies(ns)); __set_current_state(TASK_RUNNING)
/// cancel_park   = __set_current_state(TASK_RUNNING)
/// unpark        = wake_up_process(scanner_task)   // the task must outlive every notifier
/// ```
///
/// `park_timeout` may return early for any reason (spurious wake-up, a stale unpark
/// left over from an earlier sleep, a signal): the protocol treats that like a
/// timeout and the scanner merely runs a round sooner. `unpark` must never block,
/// sleep or allocate; it is called on the swap-out path.
pub trait Parker {
    /// The scanner is about to announce that it sleeps. Default: nothing.
    fn prepare_park(&self) {}

    /// The scanner did not sleep after all (a notification or shutdown was pending).
    /// Default: nothing.
    fn cancel_park(&self) {}

    /// Park the scanner for at most `timeout`, or until [`unpark`](Parker::unpark).
    fn park_timeout(&self, timeout: Duration);

    /// Wake the scanner if it is parked in (or about to enter) `park_timeout`.
    fn unpark(&self);

    /// The scanner finished a piece of its burst and goes on at once: a host whose
    /// threads are not preempted lets others run here (the kernel's
    /// `cond_resched`: without it a long burst is a soft lockup). Called with no
    /// lock held. Default: nothing.
    fn yield_now(&self) {}
}

/// [`Parker`] for userspace: `std::thread::park_timeout` / `Thread::unpark`.
///
/// The first thread that prepares to park becomes the scanner thread for the life
/// of this parker (the `Wake` it belongs to has exactly one scanner). An unpark
/// before any thread ever prepared to park is dropped, which is safe: the scanner
/// has not announced a sleep yet, so nobody depends on it.
#[cfg(feature = "std")]
#[derive(Debug, Default)]
pub struct StdParker {
    scanner_thread: std::sync::OnceLock<std::thread::Thread>,
}

#[cfg(feature = "std")]
impl StdParker {
    /// A parker not yet bound to a thread.
    pub const fn new() -> Self {
        StdParker {
            scanner_thread: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(feature = "std")]
impl Parker for StdParker {
    fn prepare_park(&self) {
        self.scanner_thread.get_or_init(std::thread::current);
    }

    fn park_timeout(&self, timeout: Duration) {
        std::thread::park_timeout(timeout);
    }

    fn unpark(&self) {
        if let Some(thread) = self.scanner_thread.get() {
            thread.unpark();
        }
    }
}

/// [`Parker`] for loom models, over `loom::sync::Notify` (a park token tied to this
/// parker rather than to a thread, so it never disturbs a thread blocked in `join`).
///
/// loom has no timed park: `park_timeout` waits until unparked, except that loom
/// explores, once per execution, a spurious return at any wait — that is how the
/// models cover timeouts. A lost wake-up shows up as a deadlock.
#[cfg(loom)]
#[derive(Debug, Default)]
pub struct LoomParker {
    wakeup: loom::sync::Notify,
}

#[cfg(loom)]
impl LoomParker {
    /// A parker for one scanner.
    pub fn new() -> Self {
        LoomParker {
            wakeup: loom::sync::Notify::new(),
        }
    }
}

#[cfg(loom)]
impl Parker for LoomParker {
    fn park_timeout(&self, _timeout: Duration) {
        self.wakeup.wait();
    }

    fn unpark(&self) {
        self.wakeup.notify();
    }
}
