//! # foldswap-wake — waking the merge scanner without losing a wake-up
//!
//! The swap-out path (any CPU, many at once) tells the merge scanner "memory is
//! short, run a round". A flag that the scanner checks before it sleeps loses such
//! wake-ups: one that lands between the scanner's "anything to do?" check and its
//! sleep wakes nobody, and a wake through a wait-queue entry can touch an entry that
//! is already gone. So this crate has no flag to check and no wait queue: one atomic
//! word, a handshake with the host's parking primitive, and loom models that try
//! every interleaving.
//!
//! ## The state word
//!
//! Three bits in one `AtomicU32` ([`Wake`]):
//!
//! - `NOTIFIED` — a notification arrived that no round has consumed yet;
//! - `SLEEPING` — the scanner has announced it is about to park (or is parked);
//! - `STOPPED`  — shutdown; sticky.
//!
//! Their combinations are the [`ScannerState`]s (`Running` = no bit set):
//!
//! ```text
//!               notify: fetch_or(NOTIFIED)               notify: fetch_or(NOTIFIED)
//!    Running ─────────────────────────────▶ RunningNotified     (coalesces)
//!      ▲  │                                      │
//!      │  │ wait: CAS(0 → SLEEPING)              │ wait: CAS fails → no sleep,
//!      │  │  (only when nothing is pending)      │   next round at once
//!      │  ▼                                      ▼
//!      │ Sleeping ──notify: fetch_or(NOTIFIED)──▶ Waking ── the notifier that set the bit
//!      │  │           saw SLEEPING → unpark()        │        on SLEEPING unparks (exactly one)
//!      │  │ park returns (timeout)                   │ park returns
//!      │  ▼                                          ▼
//!      └──── fetch_and(!SLEEPING) ◀──────────────────┘
//!            begin_round: fetch_and(!NOTIFIED) consumes the notification
//!
//!    any state ── stop: fetch_or(STOPPED), unpark() if SLEEPING ──▶ Stopped (scanner exits)
//! ```
//!
//! ## Why no wake-up is lost
//!
//! A notifier performs exactly one read-modify-write, `fetch_or(NOTIFIED)`. The scanner
//! parks only after a compare-exchange from "running, nothing pending" (`0`) to
//! `SLEEPING` succeeded. Both are read-modify-writes of one location, so they are
//! totally ordered:
//!
//! - notify before the CAS: the CAS sees `NOTIFIED` and fails; the scanner does not
//!   sleep and runs another round (whose `begin_round` comes after the notify);
//! - notify after the CAS: the notifier sees `SLEEPING` (the bit is cleared only by
//!   the scanner after it stops parking) and calls [`Parker::unpark`]. The host's
//!   parker guarantees that an unpark after [`Parker::prepare_park`] makes the
//!   following [`Parker::park_timeout`] return (std's token, the kernel's
//!   `set_current_state` + `wake_up_process`). The scanner then clears `SLEEPING`,
//!   sees `NOTIFIED`, and runs a round.
//!
//! Either way a round begins after the notify, and because every notify is a release
//! and every `begin_round` an acquire on the same word, that round sees everything the
//! notifier wrote before notifying. `docs/wake.md` has the full argument and the loom
//! iteration counts.
//!
//! ## Costs
//!
//! [`Wake::notify`] is one `fetch_or`; only the single notifier that finds the scanner
//! asleep also calls `unpark`. It never allocates, blocks, spins or waits for the
//! scanner — the scanner itself may call it (re-entrance through swap-out) and simply
//! owes itself another round.
//!
//! ## Tunables
//!
//! The scanner's tunables (the ladder's governor, CPU ratio, sleep time) are staged by
//! any thread with [`Wake::stage`] into a seqlock over atomic words ([`Staged`]) and
//! applied by the scanner only in [`Scanner::begin_round`], so a round never sees them
//! change and nobody ever reads half an update. If a stage is in flight at a round
//! boundary the scanner keeps the values it has and applies the new ones one round
//! later: it never waits for a stager.
//!
//! ## Example
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use core::time::Duration;
//! use foldswap_wake::{Notify, StdParker, Wake, WaitOutcome};
//!
//! let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 100);
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let mut scanner = wake.claim_scanner().unwrap();
//!         while let Ok(sleep_ms) = scanner.begin_round() {
//!             // ... one round of merge scanning with these tunables ...
//!             let timeout = Duration::from_millis(u64::from(sleep_ms));
//!             if scanner.wait(timeout) == WaitOutcome::Stopped {
//!                 break;
//!             }
//!         }
//!     });
//!     // The store path: one atomic operation, never blocks.
//!     let _ = wake.notify();
//!     wake.stage(20); // sleep 20 ms from the next round on
//!     wake.stop();
//! });
//! assert_eq!(wake.notify(), Notify::Stopped);
//! # }
//! ```
#![no_std]

#[cfg(any(feature = "std", test))]
extern crate std;

mod parker;
mod scanner;
mod shared;
mod staged;
mod state;
mod stats;
mod wake;

#[cfg(all(test, loom))]
mod models;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(loom)]
pub use parker::LoomParker;
pub use parker::Parker;
#[cfg(feature = "std")]
pub use parker::StdParker;
pub use scanner::{Scanner, WaitOutcome};
pub use staged::{MAX_TUNABLE_WORDS, Staged, TunableWords, Tunables};
pub use state::ScannerState;
pub use stats::WakeStats;
pub use wake::{Notify, Wake};

pub use foldswap_mem::Error;
