//! Readers that work outside a lock, and the writers that must wait them out.
//!
//! The backend's loads decode a pool object where it lies, after they have let go
//! of the lock that guards the pool (what keeps the object from being freed
//! meanwhile is the caller's business: for a load, its offset's own lock); the
//! scanner's re-encodes and compaction free or move objects under that lock. The
//! protocol between them:
//!
//! - a reader *enters* ([`ReaderCount::enter`]) while it holds the lock, reads
//!   after it has let go, and *leaves* when its [`ReaderGuard`] drops;
//! - a writer that would free or move an object a reader may be reading first,
//!   holding the lock, *waits* ([`ReaderCount::wait_for_none`]) until no reader is
//!   inside.
//!
//! Entering needs the lock, so no reader enters while a writer waits: the wait
//! lasts at most as long as the reads already under way. A reader's leave is a
//! release and the writer's wait an acquire, so every byte a reader read was read
//! before the writer changes it. Model-checked with loom (`loom_` tests below).
//!
//! ```
//! use foldswap_mem::ReaderCount;
//! let readers = ReaderCount::new();
//! let guard = readers.enter(); // under the lock
//! // ... let go of the lock, read ...
//! drop(guard);
//! readers.wait_for_none(); // a writer, under the lock: returns at once now
//! ```

use crate::sync::{AtomicBool, AtomicUsize, Ordering, spin_loop};

/// How many readers are reading outside the lock.
#[derive(Debug, Default)]
pub struct ReaderCount {
    inside: AtomicUsize,
    /// A writer is spinning in [`ReaderCount::wait_for_none`] (set only once it
    /// found a reader inside: the common path never touches it).
    writer_waiting: AtomicBool,
}

/// One reader inside; it leaves when this drops.
#[derive(Debug)]
#[must_use = "the reader leaves when the guard drops"]
pub struct ReaderGuard<'a> {
    count: &'a ReaderCount,
}

impl ReaderCount {
    /// No reader inside.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        ReaderCount {
            inside: AtomicUsize::new(0),
            writer_waiting: AtomicBool::new(false),
        }
    }

    /// No reader inside.
    #[cfg(loom)]
    pub fn new() -> Self {
        ReaderCount {
            inside: AtomicUsize::new(0),
            writer_waiting: AtomicBool::new(false),
        }
    }

    /// Enter as a reader. Call it holding the lock the writers hold.
    pub fn enter(&self) -> ReaderGuard<'_> {
        // The lock orders this before any writer's wait; no ordering of its own.
        self.inside.fetch_add(1, Ordering::Relaxed);
        ReaderGuard { count: self }
    }

    /// Spin until no reader is inside. Call it holding the lock, before freeing or
    /// moving anything a reader may be reading. Returns whether a reader was inside
    /// (the writer had to wait), for statistics.
    pub fn wait_for_none(&self) -> bool {
        if self.inside.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.writer_waiting.store(true, Ordering::Relaxed);
        while self.inside.load(Ordering::Acquire) != 0 {
            spin_loop();
        }
        self.writer_waiting.store(false, Ordering::Relaxed);
        true
    }

    /// Whether a writer is waiting for readers to leave now (for statistics and
    /// tests: a test holding a reader sees a writer arrive; decides nothing).
    pub fn writer_waiting(&self) -> bool {
        self.writer_waiting.load(Ordering::Relaxed)
    }

    /// Whether a reader is inside (for statistics and tests; decides nothing).
    pub fn any(&self) -> bool {
        self.inside.load(Ordering::Relaxed) != 0
    }
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        // Release: the reads this reader did happen before a writer's wait ends.
        self.count.inside.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod models {
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    use super::ReaderCount;
    use crate::sync::UnsafeCell;

    /// The lock, the object a reader reads outside it, and the readers.
    struct Shared {
        lock: Mutex<()>,
        object: UnsafeCell<u64>,
        readers: ReaderCount,
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            lock: Mutex::new(()),
            object: UnsafeCell::new(7),
            readers: ReaderCount::new(),
        })
    }

    /// A reader enters under the lock and reads outside it, as a load does.
    fn read(shared: &Shared) -> u64 {
        let guard = {
            let _lock = shared.lock.lock().unwrap();
            shared.readers.enter()
        };
        // SAFETY: the reader is inside: no writer changes the object until it leaves.
        let value = shared.object.with(|p| unsafe { *p });
        drop(guard);
        value
    }

    /// A writer changes the object under the lock, waiting readers out first
    /// unless `skip_wait` (the broken protocol, for the model that must fail).
    fn write(shared: &Shared, skip_wait: bool) {
        let _lock = shared.lock.lock().unwrap();
        if !skip_wait {
            shared.readers.wait_for_none();
        }
        // SAFETY: under the lock, and (unless skip_wait) no reader is inside.
        shared.object.with_mut(|p| unsafe { *p = 8 });
    }

    #[test]
    fn loom_a_writer_never_changes_what_a_reader_reads() {
        loom::model(|| {
            let shared = shared();
            let readers: [_; 2] = core::array::from_fn(|_| {
                let shared = shared.clone();
                thread::spawn(move || read(&shared))
            });
            write(&shared, false);
            for reader in readers {
                let value = reader.join().unwrap();
                assert!(value == 7 || value == 8);
            }
            assert!(!shared.readers.any());
        });
    }

    /// Without the wait, loom finds the writer racing a reader: the protocol's
    /// wait is what makes the other model pass.
    #[test]
    #[should_panic(expected = "Causality violation: Concurrent read and write accesses")]
    fn loom_without_the_wait_a_writer_races_a_reader() {
        loom::model(|| {
            let shared = shared();
            let reader = {
                let shared = shared.clone();
                thread::spawn(move || read(&shared))
            };
            write(&shared, true);
            reader.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::ReaderCount;

    #[test]
    fn guards_count_readers_in_and_out() {
        let readers = ReaderCount::new();
        assert!(!readers.any());
        let a = readers.enter();
        let b = readers.enter();
        assert!(readers.any());
        drop(a);
        assert!(readers.any());
        drop(b);
        assert!(!readers.any());
        readers.wait_for_none();
    }

    #[test]
    fn a_writer_waits_until_the_last_reader_leaves() {
        extern crate std;
        use core::sync::atomic::{AtomicBool, Ordering};
        let readers = ReaderCount::new();
        let left = AtomicBool::new(false);
        std::thread::scope(|s| {
            let guard = readers.enter();
            s.spawn(|| {
                std::thread::sleep(core::time::Duration::from_millis(20));
                left.store(true, Ordering::SeqCst);
                drop(guard);
            });
            readers.wait_for_none();
            assert!(
                left.load(Ordering::SeqCst),
                "the wait ended with a reader inside"
            );
        });
    }
}
