//! The scanner's state word: three bits and what they mean together.

/// A notification arrived that no round has consumed yet.
pub(crate) const NOTIFIED: u32 = 1 << 0;
/// The scanner announced (by a successful compare-exchange) that it is about to park,
/// and has not yet come back from parking.
pub(crate) const SLEEPING: u32 = 1 << 1;
/// Shutdown was requested. Sticky: nothing clears it.
pub(crate) const STOPPED: u32 = 1 << 2;
/// The scanner is running a round and no notification is pending.
pub(crate) const RUNNING: u32 = 0;

/// What the scanner is doing, as seen by one atomic load of the state word.
///
/// A snapshot for statistics, never a condition anyone waits on or decides by: by
/// the time the caller looks at it, the scanner may have moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScannerState {
    /// Running a round (or between rounds); no notification pending.
    Running,
    /// Running, and a notification arrived since this round began: another round
    /// follows without sleeping.
    RunningNotified,
    /// Parked (or about to park) until its timeout or a notification.
    Sleeping,
    /// Notified while asleep: unparked, not yet running its round.
    Waking,
    /// Shut down; the scanner has exited or is exiting.
    Stopped,
}

impl ScannerState {
    /// Decode a state word.
    pub(crate) fn from_word(word: u32) -> Self {
        if word & STOPPED != 0 {
            return ScannerState::Stopped;
        }
        match (word & SLEEPING != 0, word & NOTIFIED != 0) {
            (false, false) => ScannerState::Running,
            (false, true) => ScannerState::RunningNotified,
            (true, false) => ScannerState::Sleeping,
            (true, true) => ScannerState::Waking,
        }
    }
}
