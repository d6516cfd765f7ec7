//! Recently refused contents: when a page that compresses too poorly is worth
//! keeping after all.
//!
//! A page whose compressed form is longer than `max_compressed_len` is refused
//! (the host writes it to its swap device, as zswap does): kept raw it would
//! cost a whole page of RAM to save one disk write. That holds for a page seen
//! once. It does not for a page that comes again: the second copy, kept raw,
//! makes every later copy a reference (found by the store path's dedup, after a
//! full byte comparison like any other duplicate). Random-looking data copied
//! between processes (compressed or encrypted buffers, JIT output, a forked
//! worker's arenas) would otherwise go to disk once per copy.
//!
//! So a refusal notes the page's content key in a small table of recent
//! refusals, one slot per key (a later key in the same slot replaces it); a poorly
//! compressible page whose key is there is kept raw. The key is the page's hash
//! salted per domain (all 64 bits of what the dedup key keeps 16 of): a refusal in one domain never decides a store in another
//! (an attacker cannot learn that a page was refused elsewhere). A key that
//! matches by chance only keeps a page raw, which is always correct; nothing is
//! shared without the full comparison.
//!
//! Lock-free: one relaxed atomic load per poorly compressible store, one store
//! per refusal.

use core::ptr::addr_of_mut;

use foldswap_mem::sync::{AtomicU64, Ordering};

/// Slots in the table (8 bytes each): refusals remembered at once.
pub const REFUSED_SLOTS: usize = 256;

/// The table of recent refusals.
///
/// # Invariants
/// A slot holds 0 (empty) or a noted key with its lowest bit set, so no key
/// matches an empty slot.
pub(crate) struct RecentlyRefused {
    keys: [AtomicU64; REFUSED_SLOTS],
}

impl RecentlyRefused {
    /// Build an empty table in place at `slot`: the table is 2 KiB, too much for
    /// a kernel stack frame (the backend is built in place for the same reason).
    ///
    /// # Safety
    /// `slot` is valid for writes of a `RecentlyRefused` and aligned for it.
    pub(crate) unsafe fn init_in(slot: *mut Self) {
        // SAFETY: the caller gives writable, aligned storage for the table; the
        // pointer to its array is made without reading or referencing anything.
        let keys = unsafe { addr_of_mut!((*slot).keys) }.cast::<AtomicU64>();
        for i in 0..REFUSED_SLOTS {
            // INVARIANT: every slot empty.
            // SAFETY: `i` is within the array, so `keys.add(i)` stays inside the
            // storage the caller gave; each slot is written once, before use.
            unsafe { keys.add(i).write(AtomicU64::new(0)) };
        }
    }

    fn slot(&self, key: u64) -> (&AtomicU64, u64) {
        // Content keys are salted xxh3 hashes: any bits index evenly.
        let index = (key >> 32) as usize % REFUSED_SLOTS;
        // INVARIANT: the noted form of a key has its lowest bit set.
        (&self.keys[index], key | 1)
    }

    /// Note that a page with content key `key` was refused.
    pub(crate) fn note(&self, key: u64) {
        let (slot, noted) = self.slot(key);
        slot.store(noted, Ordering::Relaxed);
    }

    /// Whether a page with content key `key` was refused recently (its note not
    /// yet replaced by another key's).
    pub(crate) fn seen(&self, key: u64) -> bool {
        let (slot, noted) = self.slot(key);
        slot.load(Ordering::Relaxed) == noted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RecentlyRefused {
        fn new() -> Self {
            let mut table = core::mem::MaybeUninit::<Self>::uninit();
            // SAFETY: fresh, aligned storage for one table; `init_in` writes
            // every field, so it is initialised after.
            unsafe {
                Self::init_in(table.as_mut_ptr());
                table.assume_init()
            }
        }
    }

    #[test]
    fn a_noted_key_is_seen_until_another_takes_its_slot() {
        let table = RecentlyRefused::new();
        let key = 0x1234_5678_9abc_def0;
        assert!(!table.seen(key));
        table.note(key);
        assert!(table.seen(key));
        // Another key in the same slot replaces it.
        let other = key ^ 0x0000_0000_0000_ff00;
        assert!(!table.seen(other));
        table.note(other);
        assert!(table.seen(other) && !table.seen(key));
        // A key in another slot leaves it alone.
        let elsewhere = key.wrapping_add(1 << 32);
        table.note(elsewhere);
        assert!(table.seen(other) && table.seen(elsewhere));
    }

    #[test]
    fn no_key_matches_an_empty_slot() {
        let table = RecentlyRefused::new();
        assert!(!table.seen(0));
        assert!(!table.seen(1 << 40));
    }
}
