//! What the notifiers' side ([`Wake`](crate::Wake)) and the scanner's side
//! ([`Scanner`](crate::Scanner)) share: the state word, the parker, the staged
//! tunables, the counters, and the claim on the scanner role.
//!
//! Both sides build on this module; it knows neither of them.

use foldswap_mem::Error;
use foldswap_mem::sync::{AtomicBool, AtomicU32, Ordering};

use crate::staged::{Staged, Tunables};
use crate::state::RUNNING;
use crate::stats::Counters;

/// The protocol's shared state.
///
/// # Invariants
///
/// - `state` holds only the bits `NOTIFIED`, `SLEEPING` and `STOPPED` (see `state`).
///   `STOPPED`, once set, is never cleared. `NOTIFIED` is cleared only by the
///   scanner's `begin_round`. `SLEEPING` is set only by the scanner's successful
///   compare-exchange from `RUNNING` in `wait` (after `prepare_park`) and cleared
///   only by the same `wait` once `park_timeout` returned: while it is set, the
///   scanner is parked or about to park, and an `unpark` reaches it.
/// - `scanner_claimed` is true exactly while a [`Scanner`](crate::Scanner) of this
///   state lives, so there is at most one scanner, and only it writes `counters`.
#[derive(Debug)]
pub(crate) struct Shared<P, T> {
    pub(crate) state: AtomicU32,
    scanner_claimed: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) tunables: Staged<T>,
    pub(crate) initial_tunables: T,
    pub(crate) parker: P,
}

impl<P, T: Tunables> Shared<P, T> {
    /// The scanner starts running (its first round needs no notification), unclaimed,
    /// with tunables `initial`.
    pub(crate) fn new(parker: P, initial: T) -> Self {
        // INVARIANT: no bit set, no scanner, counters at zero.
        Shared {
            state: AtomicU32::new(RUNNING),
            scanner_claimed: AtomicBool::new(false),
            counters: Counters::new(),
            tunables: Staged::new(initial),
            initial_tunables: initial,
            parker,
        }
    }

    /// Take the scanner role: refused with [`Error::InvalidArgument`] while another
    /// scanner holds it.
    pub(crate) fn claim_scanner(&self) -> Result<(), Error> {
        // INVARIANT: only the caller that moves the flag false → true becomes the
        // scanner; `release_scanner` (from its drop) moves it back.
        self.scanner_claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|_| Error::InvalidArgument("the wake protocol already has a scanner"))
    }

    /// Give the scanner role back (the scanner is being dropped).
    pub(crate) fn release_scanner(&self) {
        self.scanner_claimed.store(false, Ordering::Release);
    }
}
