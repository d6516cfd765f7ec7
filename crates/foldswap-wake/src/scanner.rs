//! The scanner's side of the protocol: begin a round (consume the notification,
//! apply staged tunables), then wait (sleep unless a notification is pending).

use core::time::Duration;

use foldswap_mem::Error;
use foldswap_mem::sync::Ordering;

use crate::parker::Parker;
use crate::shared::Shared;
use crate::staged::{Staged, StagedRead, Tunables};
use crate::state::{NOTIFIED, RUNNING, SLEEPING, STOPPED};
use crate::stats::bump;

/// How a [`Scanner::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitOutcome {
    /// Slept and was woken by a notification.
    Woken,
    /// Did not sleep: a notification arrived while the last round ran.
    AlreadyNotified,
    /// Slept until the timeout (or the host's park returned early on its own).
    TimedOut,
    /// Shutdown was requested: exit.
    Stopped,
}

/// The single scanner's handle on a [`Wake`](crate::Wake), from
/// [`Wake::claim_scanner`](crate::Wake::claim_scanner). It holds the tunables in force
/// for the current round.
///
/// # Invariants
///
/// - It holds the protocol's scanner claim for as long as it lives (released on
///   drop), so it is the only scanner.
/// - `tunables` is the value published at version `applied_version` of the staged
///   tunables (the initial tunables at the initial version), so a round always runs
///   on one whole update.
#[derive(Debug)]
pub struct Scanner<'w, P: Parker, T: Tunables> {
    shared: &'w Shared<P, T>,
    tunables: T,
    applied_version: u32,
}

impl<'w, P: Parker, T: Tunables> Scanner<'w, P, T> {
    /// The scanner of `shared`, whose scanner claim the caller just took.
    pub(crate) fn new(shared: &'w Shared<P, T>) -> Self {
        // INVARIANT: `Staged::new` published `initial_tunables` at `INITIAL_VERSION`.
        Scanner {
            shared,
            tunables: shared.initial_tunables,
            applied_version: Staged::<T>::INITIAL_VERSION,
        }
    }

    /// Start a round: consume any pending notification (acquire: the round sees what
    /// notifiers wrote before notifying) and apply staged tunables. Returns the
    /// tunables for this round, or [`Error::ShutDown`].
    pub fn begin_round(&mut self) -> Result<T, Error> {
        let before = self.shared.state.fetch_and(!NOTIFIED, Ordering::AcqRel);
        if before & STOPPED != 0 {
            return Err(Error::ShutDown);
        }
        self.apply_staged_tunables();
        bump(&self.shared.counters.rounds);
        Ok(self.tunables)
    }

    /// Take staged tunables if a complete new version is there; if a stager is in
    /// the middle of an update, keep the current ones until the next round.
    fn apply_staged_tunables(&mut self) {
        if let StagedRead::Fresh(tunables, version) =
            self.shared.tunables.try_load(Some(self.applied_version))
        {
            // INVARIANT: `try_load` returned a whole value with its version.
            self.tunables = tunables;
            self.applied_version = version;
        }
    }

    /// The tunables in force for the current round.
    pub fn tunables(&self) -> T {
        self.tunables
    }

    /// End a round: sleep for at most `timeout` unless a notification is already
    /// pending, in which case return at once so the next round follows it.
    pub fn wait(&mut self, timeout: Duration) -> WaitOutcome {
        let shared = self.shared;
        shared.parker.prepare_park();
        // INVARIANT: `SLEEPING` is set only here, from `RUNNING` (nothing pending, not
        // stopped), after `prepare_park`; the `fetch_and` below clears it once
        // `park_timeout` returned.
        if let Err(current) =
            shared
                .state
                .compare_exchange(RUNNING, SLEEPING, Ordering::AcqRel, Ordering::Acquire)
        {
            shared.parker.cancel_park();
            if current & STOPPED != 0 {
                return WaitOutcome::Stopped;
            }
            bump(&shared.counters.reruns);
            return WaitOutcome::AlreadyNotified;
        }
        shared.parker.park_timeout(timeout);
        let before = shared.state.fetch_and(!SLEEPING, Ordering::AcqRel);
        if before & STOPPED != 0 {
            WaitOutcome::Stopped
        } else if before & NOTIFIED != 0 {
            bump(&shared.counters.wakeups);
            WaitOutcome::Woken
        } else {
            bump(&shared.counters.timeouts);
            WaitOutcome::TimedOut
        }
    }

    /// The whole scanner loop: `round(tunables)` once per round, then sleep for
    /// `sleep_time(tunables)`, until shutdown.
    pub fn run(mut self, mut sleep_time: impl FnMut(&T) -> Duration, mut round: impl FnMut(&T)) {
        while let Ok(tunables) = self.begin_round() {
            round(&tunables);
            if self.wait(sleep_time(&tunables)) == WaitOutcome::Stopped {
                return;
            }
        }
    }
}

impl<P: Parker, T: Tunables> Drop for Scanner<'_, P, T> {
    fn drop(&mut self) {
        self.shared.release_scanner();
    }
}
