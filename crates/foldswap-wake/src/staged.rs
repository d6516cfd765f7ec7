//! Staged tunables: a seqlock over atomic words, written by any thread, read by the
//! scanner at round boundaries without ever waiting and without ever seeing half an
//! update.
//!
//! Writers take the version from even to odd with a compare-exchange (stagers are
//! serialised among themselves; this is control-plane work, never the store path),
//! store the words with release ordering and publish the next even version. A reader
//! loads the version (acquire), the words (acquire) and the version again: if both
//! versions are equal and even, no writer touched the words in between, because any
//! word written by a later writer carries that writer's odd version with it (release
//! store → acquire load). Every word is an atomic, so an overlapping read is a
//! detected retry, not a data race.

use core::marker::PhantomData;

use foldswap_mem::sync::{AtomicU32, Ordering, spin_loop};

/// The most 32-bit words a [`Tunables`] value may occupy.
pub const MAX_TUNABLE_WORDS: usize = 8;

/// The encoded form of a [`Tunables`] value.
pub type TunableWords = [u32; MAX_TUNABLE_WORDS];

/// A small `Copy` set of integer tunables that can be staged.
///
/// Encoding is plain integers (no floating point); `from_words` must accept any words
/// (it never sees torn ones, but it must not panic on any input).
///
/// ```
/// use foldswap_wake::{TunableWords, Tunables};
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct ScanTunables {
///     governor: u32,
///     cpu_ratio_permille: u32,
///     sleep_ms: u32,
/// }
///
/// impl Tunables for ScanTunables {
///     const WORDS: usize = 3;
///     fn to_words(&self) -> TunableWords {
///         let mut w = [0; 8];
///         w[0] = self.governor;
///         w[1] = self.cpu_ratio_permille;
///         w[2] = self.sleep_ms;
///         w
///     }
///     fn from_words(w: &TunableWords) -> Self {
///         ScanTunables { governor: w[0], cpu_ratio_permille: w[1], sleep_ms: w[2] }
///     }
/// }
/// let t = ScanTunables { governor: 2, cpu_ratio_permille: 200, sleep_ms: 100 };
/// assert_eq!(ScanTunables::from_words(&t.to_words()), t);
/// ```
pub trait Tunables: Copy {
    /// How many leading words of [`TunableWords`] the encoding uses
    /// (1..=[`MAX_TUNABLE_WORDS`]; larger values are clamped).
    const WORDS: usize;
    /// Encode into words; words past [`WORDS`](Tunables::WORDS) are ignored.
    fn to_words(&self) -> TunableWords;
    /// Decode words produced by [`to_words`](Tunables::to_words).
    fn from_words(words: &TunableWords) -> Self;
}

impl Tunables for u32 {
    const WORDS: usize = 1;
    fn to_words(&self) -> TunableWords {
        let mut words = [0; MAX_TUNABLE_WORDS];
        words[0] = *self;
        words
    }
    fn from_words(words: &TunableWords) -> Self {
        words[0]
    }
}

impl Tunables for u64 {
    const WORDS: usize = 2;
    fn to_words(&self) -> TunableWords {
        let mut words = [0; MAX_TUNABLE_WORDS];
        words[0] = *self as u32;
        words[1] = (*self >> 32) as u32;
        words
    }
    fn from_words(words: &TunableWords) -> Self {
        u64::from(words[0]) | (u64::from(words[1]) << 32)
    }
}

impl<const N: usize> Tunables for [u32; N] {
    const WORDS: usize = {
        assert!(N <= MAX_TUNABLE_WORDS, "at most MAX_TUNABLE_WORDS words");
        N
    };
    fn to_words(&self) -> TunableWords {
        let mut words = [0; MAX_TUNABLE_WORDS];
        for (word, value) in words.iter_mut().zip(self) {
            *word = *value;
        }
        words
    }
    fn from_words(words: &TunableWords) -> Self {
        let mut out = [0; N];
        for (value, word) in out.iter_mut().zip(words) {
            *value = *word;
        }
        out
    }
}

/// What one read attempt of a [`Staged`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StagedRead<T> {
    /// The version is still the one the reader already has.
    Unchanged,
    /// A writer is (or was, during the read) in the middle of an update.
    Busy,
    /// A consistent value and its (even) version.
    Fresh(T, u32),
}

/// A seqlock-protected [`Tunables`] value: any thread writes, readers never see a
/// torn value and never wait for a writer (a read that overlaps a write is detected:
/// the scanner keeps what it has, [`load`](Staged::load) reads again).
///
/// # Invariants
///
/// - `version` is even except while exactly one writer holds it odd, between
///   `lock_for_writing` and publishing the next even version; writers wait only for
///   each other there.
/// - At an even version, the words `T` uses hold `to_words()` of the value published
///   with that version (the value given to [`new`](Staged::new) at version 0).
#[derive(Debug)]
pub struct Staged<T> {
    version: AtomicU32,
    words: [AtomicU32; MAX_TUNABLE_WORDS],
    _value: PhantomData<T>,
}

impl<T: Tunables> Staged<T> {
    /// Words actually used by `T`.
    const USED_WORDS: usize = if T::WORDS < MAX_TUNABLE_WORDS {
        T::WORDS
    } else {
        MAX_TUNABLE_WORDS
    };

    /// Start with `value` at version 0.
    pub fn new(value: T) -> Self {
        let words = value.to_words();
        // INVARIANT: version 0 (even) with `value`'s words.
        Staged {
            version: AtomicU32::new(0),
            words: core::array::from_fn(|i| AtomicU32::new(words.get(i).copied().unwrap_or(0))),
            _value: PhantomData,
        }
    }

    /// The version a reader starting from [`new`](Staged::new) already has.
    pub(crate) const INITIAL_VERSION: u32 = 0;

    /// Publish `value`. Serialises with other writers (spinning only while another
    /// writer is between its two version stores); never waits for readers.
    pub fn store(&self, value: T) {
        let stable = self.lock_for_writing();
        for (slot, word) in self
            .words
            .iter()
            .zip(value.to_words())
            .take(Self::USED_WORDS)
        {
            slot.store(word, Ordering::Release);
        }
        // INVARIANT: the words are `value`'s; the next even version publishes them and
        // lets the next writer in.
        self.version
            .store(stable.wrapping_add(2), Ordering::Release);
    }

    /// Move the version from even (stable) to odd (being written); returns the even
    /// version it started from.
    ///
    /// Only compare-exchanges, starting from a guess: a failed one returns the
    /// current version, and while another writer holds it (odd) the next stable
    /// version is the odd one plus one. (Starting with a plain load would be
    /// equivalent; without it, loom 0.7 explores this loop fully — its partial-order
    /// reduction misses races of a load followed by a read-modify-write, loom#392.)
    fn lock_for_writing(&self) -> u32 {
        let mut expected = Self::INITIAL_VERSION;
        loop {
            match self.version.compare_exchange_weak(
                expected,
                expected.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return expected,
                Err(seen) if seen & 1 != 0 => {
                    spin_loop();
                    expected = seen.wrapping_add(1);
                }
                Err(seen) => expected = seen,
            }
        }
    }

    /// One read attempt. `have` is the version the reader already holds, if any.
    pub(crate) fn try_load(&self, have: Option<u32>) -> StagedRead<T> {
        let before = self.version.load(Ordering::Acquire);
        if Some(before) == have {
            return StagedRead::Unchanged;
        }
        if before & 1 != 0 {
            return StagedRead::Busy;
        }
        let mut words = [0; MAX_TUNABLE_WORDS];
        for (word, slot) in words.iter_mut().zip(&self.words).take(Self::USED_WORDS) {
            *word = slot.load(Ordering::Acquire);
        }
        let after = self.version.load(Ordering::Acquire);
        if after != before {
            return StagedRead::Busy;
        }
        StagedRead::Fresh(T::from_words(&words), before)
    }

    /// The latest consistent value, retrying while a writer is mid-update (for
    /// statistics and control-plane readers; the scanner uses the non-waiting path).
    pub fn load(&self) -> T {
        loop {
            if let StagedRead::Fresh(value, _) = self.try_load(None) {
                return value;
            }
            spin_loop();
        }
    }

    /// Set the version word directly (simulates a stager caught mid-update).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn force_version_for_test(&self, version: u32) {
        self.version.store(version, Ordering::Release);
    }

    /// How many updates were published (wrapping).
    pub fn updates(&self) -> u32 {
        self.version.load(Ordering::Relaxed) / 2
    }
}
