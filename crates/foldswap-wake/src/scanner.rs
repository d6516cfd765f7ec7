//! The scanner's side of the protocol: begin a round (consume the notification,
//! apply staged tunables), then wait (sleep unless a notification is pending).

use core::time::Duration;

use foldswap_mem::Error;
use foldswap_mem::sync::Ordering;

use crate::parker::Parker;
use crate::staged::{StagedRead, Tunables};
use crate::state::{NOTIFIED, RUNNING, SLEEPING, STOPPED};
use crate::wake::{Wake, bump};

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

/// The single scanner's handle on a [`Wake`], from
/// [`Wake::claim_scanner`]. It holds the tunables in force for the current round.
#[derive(Debug)]
pub struct Scanner<'w, P: Parker, T: Tunables> {
    wake: &'w Wake<P, T>,
    tunables: T,
    applied_version: u32,
}

impl<'w, P: Parker, T: Tunables> Scanner<'w, P, T> {
    pub(crate) fn new(wake: &'w Wake<P, T>) -> Self {
        Scanner {
            wake,
            tunables: wake.initial_tunables,
            applied_version: crate::staged::Staged::<T>::INITIAL_VERSION,
        }
    }

    /// Start a round: consume any pending notification (acquire: the round sees what
    /// notifiers wrote before notifying) and apply staged tunables. Returns the
    /// tunables for this round, or [`Error::ShutDown`].
    pub fn begin_round(&mut self) -> Result<T, Error> {
        let before = self.wake.state.fetch_and(!NOTIFIED, Ordering::AcqRel);
        if before & STOPPED != 0 {
            return Err(Error::ShutDown);
        }
        self.apply_staged_tunables();
        bump(&self.wake.counters.rounds);
        Ok(self.tunables)
    }

    /// Take staged tunables if a complete new version is there; if a stager is in
    /// the middle of an update, keep the current ones until the next round.
    fn apply_staged_tunables(&mut self) {
        if let StagedRead::Fresh(tunables, version) =
            self.wake.tunables.try_load(Some(self.applied_version))
        {
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
        let wake = self.wake;
        wake.parker.prepare_park();
        if let Err(current) =
            wake.state
                .compare_exchange(RUNNING, SLEEPING, Ordering::AcqRel, Ordering::Acquire)
        {
            wake.parker.cancel_park();
            if current & STOPPED != 0 {
                return WaitOutcome::Stopped;
            }
            bump(&wake.counters.reruns);
            return WaitOutcome::AlreadyNotified;
        }
        wake.parker.park_timeout(timeout);
        let before = wake.state.fetch_and(!SLEEPING, Ordering::AcqRel);
        if before & STOPPED != 0 {
            WaitOutcome::Stopped
        } else if before & NOTIFIED != 0 {
            bump(&wake.counters.wakeups);
            WaitOutcome::Woken
        } else {
            bump(&wake.counters.timeouts);
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
        self.wake.release_scanner();
    }
}
