//! The notifiers' side of the protocol: [`Wake`] — notify, stop, stage tunables,
//! read statistics from any thread, and hand out the one [`Scanner`].

use foldswap_mem::Error;
use foldswap_mem::sync::Ordering;

use crate::parker::Parker;
use crate::scanner::Scanner;
use crate::shared::Shared;
use crate::staged::Tunables;
use crate::state::{NOTIFIED, SLEEPING, STOPPED, ScannerState};
use crate::stats::WakeStats;

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

/// The wake protocol between many notifiers and one scanner.
///
/// Share it by reference (it is `Sync` when `P` and `T` are); the scanner thread
/// claims the scanner side with [`claim_scanner`](Wake::claim_scanner). See the crate
/// documentation for the protocol and its proof.
///
/// The protocol's state lives in a `Shared` that the [`Scanner`] borrows too; its
/// invariants are stated there.
#[derive(Debug)]
pub struct Wake<P, T> {
    pub(crate) shared: Shared<P, T>,
}

impl<P: Parker, T: Tunables> Wake<P, T> {
    /// A protocol whose scanner will start in the running state (its first round
    /// needs no notification) with tunables `initial`.
    pub fn new(parker: P, initial: T) -> Self {
        Wake {
            shared: Shared::new(parker, initial),
        }
    }

    /// Ask the scanner for a round that begins after this call.
    ///
    /// One `fetch_or` (release: the round sees everything this thread wrote before);
    /// the one notifier that finds the scanner asleep also unparks it. Never blocks,
    /// spins or allocates; safe from the scanner itself and after shutdown.
    #[inline]
    pub fn notify(&self) -> Notify {
        let shared = &self.shared;
        let before = shared.state.fetch_or(NOTIFIED, Ordering::AcqRel);
        if before == SLEEPING {
            shared.parker.unpark();
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
        let shared = &self.shared;
        let before = shared.state.fetch_or(STOPPED, Ordering::AcqRel);
        if before & (SLEEPING | STOPPED) == SLEEPING {
            shared.parker.unpark();
        }
    }

    /// Let other threads run if the host needs it ([`Parker::yield_now`]): the
    /// scanner calls it between pieces of a burst, holding no lock.
    pub fn yield_now(&self) {
        self.shared.parker.yield_now();
    }

    /// Whether [`stop`](Wake::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) & STOPPED != 0
    }

    /// What the scanner is doing now (one atomic load).
    pub fn state(&self) -> ScannerState {
        ScannerState::from_word(self.shared.state.load(Ordering::Acquire))
    }

    /// Stage new tunables; the scanner applies them at its next round boundary.
    /// Stagers serialise among themselves; the scanner and notifiers never wait.
    pub fn stage(&self, tunables: T) {
        self.shared.tunables.store(tunables);
    }

    /// The most recently staged tunables (applied or not yet).
    pub fn staged(&self) -> T {
        self.shared.tunables.load()
    }

    /// Statistics snapshot (each field read atomically; fields are not one snapshot).
    pub fn stats(&self) -> WakeStats {
        let c = &self.shared.counters;
        WakeStats {
            state: self.state(),
            rounds: c.rounds.load(Ordering::Relaxed),
            wakeups: c.wakeups.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            reruns: c.reruns.load(Ordering::Relaxed),
            tunable_updates: self.shared.tunables.updates(),
        }
    }

    /// Become the scanner. There is at most one scanner at a time: a second claim
    /// while the first [`Scanner`] lives is refused with
    /// [`Error::InvalidArgument`]. Dropping the `Scanner` releases the claim.
    pub fn claim_scanner(&self) -> Result<Scanner<'_, P, T>, Error> {
        self.shared.claim_scanner()?;
        Ok(Scanner::new(&self.shared))
    }
}
