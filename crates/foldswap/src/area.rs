//! Swap areas: frontswap's `type`, each a set of offset tables sharded by offset.
//!
//! Offsets are spread over [`OFFSET_SHARDS`] tables by their leaf (runs of 958
//! consecutive offsets stay in one shard), each behind its own lock, so stores and
//! loads to different parts of an area do not contend. Every lock goes through
//! [`ShardGuard`], which keeps the area's count of table pages current, so the
//! backend reads what the tables hold without taking a shard lock.

use foldswap_mem::sync::{AtomicBool, AtomicU64, Ordering};
use foldswap_mem::{Error, PageProvider};
use spin::{Mutex, MutexGuard};

use crate::offsets::{OffsetTable, SlotValue, shard_of};

/// Swap areas (frontswap types) one backend serves at once.
pub const MAX_SWAP_TYPES: usize = 8;
/// Locks per swap area's offset table.
pub const OFFSET_SHARDS: usize = 8;

/// One swap area: its size and its offsets.
///
/// # Invariants
///
/// Outside a [`ShardGuard`]'s life, `table_pages` is the sum of the shards'
/// [`OffsetTable::pages_held`] (each guard adds its shard's change when dropped).
pub struct SwapArea {
    active: AtomicBool,
    nr_pages: AtomicU64,
    table_pages: AtomicU64,
    shards: [Mutex<OffsetTable>; OFFSET_SHARDS],
}

/// One shard of an area, locked; derefs to its [`OffsetTable`]. On drop it adds
/// the change in the table's pages to the area's count.
pub struct ShardGuard<'a> {
    table: MutexGuard<'a, OffsetTable>,
    table_pages: &'a AtomicU64,
    pages_at_lock: u64,
}

impl core::ops::Deref for ShardGuard<'_> {
    type Target = OffsetTable;

    fn deref(&self) -> &OffsetTable {
        &self.table
    }
}

impl core::ops::DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut OffsetTable {
        &mut self.table
    }
}

impl Drop for ShardGuard<'_> {
    fn drop(&mut self) {
        let now = self.table.pages_held();
        // INVARIANT: the shard's change since the lock was taken goes into the
        // area's count before the lock is released (the guard's field drops after).
        if now > self.pages_at_lock {
            self.table_pages
                .fetch_add(now - self.pages_at_lock, Ordering::Relaxed);
        } else if now < self.pages_at_lock {
            self.table_pages
                .fetch_sub(self.pages_at_lock - now, Ordering::Relaxed);
        }
    }
}

impl Default for SwapArea {
    fn default() -> Self {
        Self::new()
    }
}

impl SwapArea {
    /// An inactive area.
    pub fn new() -> Self {
        SwapArea {
            active: AtomicBool::new(false),
            nr_pages: AtomicU64::new(0),
            table_pages: AtomicU64::new(0),
            shards: core::array::from_fn(|shard| {
                Mutex::new(OffsetTable::shard(shard, OFFSET_SHARDS))
            }),
        }
    }

    /// Whether `init` was called (and no `invalidate_area` since... the area stays
    /// active after invalidation, as frontswap's did, until re-initialized).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Mark the area active with room for `nr_pages` offsets.
    pub fn activate(&self, nr_pages: u64) {
        self.nr_pages.store(nr_pages, Ordering::Relaxed);
        self.active.store(true, Ordering::Release);
    }

    /// Offsets this area was initialized with.
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages.load(Ordering::Relaxed)
    }

    /// Check that `offset` lies inside the area.
    pub fn check_offset(&self, offset: u64) -> Result<(), Error> {
        if !self.is_active() {
            return Err(Error::InvalidArgument("swap type not initialized"));
        }
        if offset >= self.nr_pages() {
            return Err(Error::InvalidArgument("swap offset beyond the area"));
        }
        Ok(())
    }

    /// Lock the shard that holds `offset`.
    pub fn lock_shard(&self, offset: u64) -> ShardGuard<'_> {
        let index = shard_of(offset, OFFSET_SHARDS);
        self.lock_shard_at(index)
    }

    fn lock_shard_at(&self, index: usize) -> ShardGuard<'_> {
        let table = self.shards[index].lock();
        let pages_at_lock = table.pages_held();
        ShardGuard {
            table,
            table_pages: &self.table_pages,
            pages_at_lock,
        }
    }

    /// Store `value` at `offset`, returning the previous value.
    pub fn replace<P: PageProvider>(
        &self,
        provider: &P,
        offset: u64,
        value: SlotValue,
    ) -> Result<Option<SlotValue>, Error> {
        self.lock_shard(offset).replace(provider, offset, value)
    }

    /// Empty `offset`, returning what it held.
    pub fn take<P: PageProvider>(&self, provider: &P, offset: u64) -> Option<SlotValue> {
        self.lock_shard(offset).take(provider, offset)
    }

    /// Empty every offset, calling `f` with each value, and free the tables' pages.
    pub fn drain<P: PageProvider>(&self, provider: &P, mut f: impl FnMut(SlotValue)) {
        for index in 0..OFFSET_SHARDS {
            let mut table = self.lock_shard_at(index);
            table.drain(provider, |_, value| f(value));
        }
    }

    /// Pages held by the offset tables (read without a lock: a change under a
    /// shard lock shows once that lock is released).
    pub fn pages_held(&self) -> u64 {
        self.table_pages.load(Ordering::Relaxed)
    }
}
