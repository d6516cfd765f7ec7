//! The shared side of the protocol: [`Wake`] — notify, stop, stage tunables, and
//! read statistics from any thread.

use foldswap_mem::Error;
use foldswap_mem::sync::{AtomicBool, AtomicU32, Ordering};

use crate::parker::Parker;
use crate::scanner::Scanner;
use crate::staged::{Staged, Tunables};
use crate::state::{NOTIFIED, RUNNING, SLEEPING, STOPPED, ScannerState};

/// What a [`Wake::notify`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notify {
    /// A notification was already pending; this one coalesced into it.
    Coalesced,
    /// The scanner was running: it runs another round before it sleeps.
    Queued,
    /// The scanner was asleep and this call unparked it.
    WokeScanner,
    /// The scanner is shut down; nothing was done.
    Stopped,
}

/// A snapshot of the protocol's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WakeStats {
    /// What the scanner is doing now.
    pub state: ScannerState,
    /// Rounds begun ([`Scanner::begin_round`] that did not find shutdown).
    pub rounds: u64,
    /// Sleeps ended early by a notification (the store path woke the scanner).
    pub wakeups: u64,
    /// Sleeps that ended without a notification (timeout or spurious return).
    pub timeouts: u64,
    /// Sleeps skipped because a notification arrived while a round ran.
    pub reruns: u64,
    /// Tunable updates staged so far (wrapping).
    pub tunable_updates: u32,
}

/// A statistics counter. Counters are not part of the protocol (nothing ever
/// decides anything from them), so under loom they stay `core` atomics and the models
/// explore only the protocol's own operations.
#[cfg(not(loom))]
pub(crate) type StatCounter = foldswap_mem::sync::AtomicU64;
#[cfg(loom)]
pub(crate) type StatCounter = core::sync::atomic::AtomicU64;

/// Counters written only by the (single) scanner, read by anyone.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) rounds: StatCounter,
    pub(crate) wakeups: StatCounter,
    pub(crate) timeouts: StatCounter,
    pub(crate) reruns: StatCounter,
}

impl Counters {
    fn new() -> Self {
        Counters {
            rounds: StatCounter::new(0),
            wakeups: StatCounter::new(0),
            timeouts: StatCounter::new(0),
            reruns: StatCounter::new(0),
        }
    }
}

/// Add one to a counter that only the scanner writes: a load and a store, no
/// read-modify-write needed.
pub(crate) fn bump(counter: &StatCounter) {
    let value = counter.load(Ordering::Relaxed);
    counter.store(value.wrapping_add(1), Ordering::Relaxed);
}

/// The wake protocol between many notifiers and one scanner.
///
/// Share it by reference (it is `Sync` when `P` and `T` are); the scanner thread
/// claims the scanner side with [`claim_scanner`](Wake::claim_scanner). See the crate
/// documentation for the protocol and its proof.
#[derive(Debug)]
pub struct Wake<P, T> {
    pub(crate) state: AtomicU32,
    scanner_claimed: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) tunables: Staged<T>,
    pub(crate) initial_tunables: T,
    pub(crate) parker: P,
}

impl<P: Parker, T: Tunables> Wake<P, T> {
    /// A protocol whose scanner will start in the running state (its first round
    /// needs no notification) with tunables `initial`.
    pub fn new(parker: P, initial: T) -> Self {
        Wake {
            state: AtomicU32::new(RUNNING),
            scanner_claimed: AtomicBool::new(false),
            counters: Counters::new(),
            tunables: Staged::new(initial),
            initial_tunables: initial,
            parker,
        }
    }

    /// Ask the scanner for a round that begins after this call.
    ///
    /// One `fetch_or` (release: the round sees everything this thread wrote before);
    /// the one notifier that finds the scanner asleep also unparks it. Never blocks,
    /// spins or allocates; safe from the scanner itself and after shutdown.
    #[inline]
    pub fn notify(&self) -> Notify {
        let before = self.state.fetch_or(NOTIFIED, Ordering::AcqRel);
        if before == SLEEPING {
            self.parker.unpark();
            return Notify::WokeScanner;
        }
        if before & STOPPED != 0 {
            Notify::Stopped
        } else if before & NOTIFIED != 0 {
            Notify::Coalesced
        } else {
            Notify::Queued
        }
    }

    /// Shut the scanner down: it wakes if asleep and its next
    /// [`begin_round`](Scanner::begin_round) or [`wait`](Scanner::wait) reports
    /// shutdown. Later notifies do nothing. Idempotent; never blocks.
    pub fn stop(&self) {
        let before = self.state.fetch_or(STOPPED, Ordering::AcqRel);
        if before & (SLEEPING | STOPPED) == SLEEPING {
            self.parker.unpark();
        }
    }

    /// Whether [`stop`](Wake::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.state.load(Ordering::Acquire) & STOPPED != 0
    }

    /// What the scanner is doing now (one atomic load).
    pub fn state(&self) -> ScannerState {
        ScannerState::from_word(self.state.load(Ordering::Acquire))
    }

    /// Stage new tunables; the scanner applies them at its next round boundary.
    /// Stagers serialise among themselves; the scanner and notifiers never wait.
    pub fn stage(&self, tunables: T) {
        self.tunables.store(tunables);
    }

    /// The most recently staged tunables (applied or not yet).
    pub fn staged(&self) -> T {
        self.tunables.load()
    }

    /// Statistics snapshot (each field read atomically; fields are not one snapshot).
    pub fn stats(&self) -> WakeStats {
        let c = &self.counters;
        WakeStats {
            state: self.state(),
            rounds: c.rounds.load(Ordering::Relaxed),
            wakeups: c.wakeups.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            reruns: c.reruns.load(Ordering::Relaxed),
            tunable_updates: self.tunables.updates(),
        }
    }

    /// Become the scanner. There is at most one scanner at a time: a second claim
    /// while the first [`Scanner`] lives is refused with
    /// [`Error::InvalidArgument`]. Dropping the `Scanner` releases the claim.
    pub fn claim_scanner(&self) -> Result<Scanner<'_, P, T>, Error> {
        self.scanner_claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| Error::InvalidArgument("the wake protocol already has a scanner"))?;
        Ok(Scanner::new(self))
    }

    /// Called by [`Scanner`]'s drop.
    pub(crate) fn release_scanner(&self) {
        self.scanner_claimed.store(false, Ordering::Release);
    }
}
