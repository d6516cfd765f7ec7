//! The protocol's statistics: counters written only by the scanner, and the snapshot
//! anyone can read ([`WakeStats`]).

use foldswap_mem::sync::Ordering;

use crate::state::ScannerState;

/// A snapshot of the protocol's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WakeStats {
    /// What the scanner is doing now.
    pub state: ScannerState,
    /// Rounds begun ([`Scanner::begin_round`](crate::Scanner::begin_round) that did
    /// not find shutdown).
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
    pub(crate) fn new() -> Self {
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
