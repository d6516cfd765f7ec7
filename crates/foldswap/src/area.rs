//! Swap areas: frontswap's `type`, each a set of offset tables sharded by offset.
//!
//! Offsets are spread over [`OFFSET_SHARDS`] tables by their leaf (runs of 255
//! consecutive offsets stay in one shard), each behind its own lock, so stores and
//! loads to different parts of an area do not contend.

use foldswap_mem::sync::{AtomicBool, AtomicU64, Ordering};
use foldswap_mem::{Error, PageProvider};
use spin::Mutex;

use crate::offsets::{OffsetTable, SlotValue};

/// Swap areas (frontswap types) one backend serves at once.
pub const MAX_SWAP_TYPES: usize = 8;
/// Locks per swap area's offset table.
pub const OFFSET_SHARDS: usize = 8;
const SHARD_RUN: u64 = 255;

/// One swap area: its size and its offsets.
pub struct SwapArea {
    active: AtomicBool,
    nr_pages: AtomicU64,
    shards: [Mutex<OffsetTable>; OFFSET_SHARDS],
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
            shards: [const { Mutex::new(OffsetTable::new()) }; OFFSET_SHARDS],
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

    /// The lock that guards `offset`.
    pub fn shard(&self, offset: u64) -> &Mutex<OffsetTable> {
        let index = (offset / SHARD_RUN) as usize % OFFSET_SHARDS;
        &self.shards[index]
    }

    /// Store `value` at `offset`, returning the previous value.
    pub fn replace<P: PageProvider>(
        &self,
        provider: &P,
        offset: u64,
        value: SlotValue,
    ) -> Result<Option<SlotValue>, Error> {
        self.shard(offset).lock().replace(provider, offset, value)
    }

    /// Empty `offset`, returning what it held.
    pub fn take<P: PageProvider>(&self, provider: &P, offset: u64) -> Option<SlotValue> {
        self.shard(offset).lock().take(provider, offset)
    }

    /// Empty every offset, calling `f` with each value, and free the tables' pages.
    pub fn drain<P: PageProvider>(&self, provider: &P, mut f: impl FnMut(SlotValue)) {
        for shard in &self.shards {
            let mut table = shard.lock();
            table.drain(provider, |_, value| f(value));
        }
    }

    /// Pages held by the offset tables.
    pub fn pages_held(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().pages_held()).sum()
    }
}
