//! The offset table: what is stored at each swap offset of one swap area.
//!
//! A radix tree of provider pages, allocated lazily as offsets are stored, like
//! the kernel's xarray for zswap entries:
//!
//! ```text
//!   [root page: 512 pointers] ─► mid page: 512 pointers ─► leaf page: header + 958 × 4 B
//!   leaf number = offset / 958 = (root index × 512 + mid index) × shards + shard
//! ```
//!
//! An area's offsets are split between shards (each behind its own lock), runs
//! of 958 (a leaf's worth) taking turns; each shard numbers its leaves among its
//! own. A tree is a mid page and its leaves until a leaf lies past the mid
//! page's reach (with 8 shards, beyond 15 GiB of swap): only then does it grow
//! a root. An empty leaf is freed, an empty mid page under a root too, and the
//! last offset taken gives back every page.
//!
//! A leaf starts with its header: the count of used slots and two bitmaps, which
//! slots hold something and which of those hold a same-filled word. Its remaining
//! 958 slots are one 4-byte word each: the repeated 32-bit word of a same-filled
//! page (no other storage), or the key of a content entry. So an offset costs 4
//! bytes (zswap's xarray: a pointer), and a leaf serves 958 offsets (an offset
//! splits by division, not by bit fields). Leaves are freed when their last slot
//! empties, so an area that is mostly invalidated gives its pages back.
//!
//! A same-filled page here is one whose 32-bit words are all equal (zero pages,
//! pages of one repeated `u32`: what zram keeps as same-filled, more than zswap's
//! zero pages). A page repeating a 64-bit word with two different halves is stored
//! as content: it compresses to a few bytes and deduplicates like any page.

use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider};

const FANOUT: usize = PAGE_SIZE / size_of::<usize>();
/// Words of each leaf bitmap: one bit per slot of the page.
const BITMAP_WORDS: usize = PAGE_SIZE / size_of::<u32>() / 64;
/// Offsets one leaf page serves: what the header leaves of the page.
pub const LEAF_OFFSETS: usize =
    (PAGE_SIZE - size_of::<u64>() - 2 * BITMAP_WORDS * size_of::<u64>()) / size_of::<u32>();
/// The largest number of offsets one table can address (about 2^27: 500 GiB of swap).
pub const MAX_OFFSETS: u64 = (FANOUT * FANOUT * LEAF_OFFSETS) as u64;

/// What one swap offset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotValue {
    /// A page whose bytes are one 32-bit word repeated (zero included); see
    /// [`fill_word`].
    SameFilled(u32),
    /// A reference to a content entry (see `content`): its key.
    Entry(u32),
}

/// One leaf page.
///
/// # Invariants
///
/// `used` is the number of bits set in `present`; a bit of `same_filled` is set
/// only where `present`'s is; `values[i]` is meaningful only where `present`'s
/// bit `i` is set (an entry key when `same_filled`'s is clear).
#[repr(C)]
struct Leaf {
    used: u64,
    present: [u64; BITMAP_WORDS],
    same_filled: [u64; BITMAP_WORDS],
    values: [u32; LEAF_OFFSETS],
}

/// The 32-bit word a page repeats, from the 64-bit word `same_filled_word` found
/// it repeats: `None` if the two halves differ (the page is then stored as
/// content).
pub fn fill_word(word: u64) -> Option<u32> {
    let low = word as u32;
    ((word >> 32) as u32 == low).then_some(low)
}

/// The 64-bit word of a page repeating `word` (to fill it back).
pub fn fill_word_u64(word: u32) -> u64 {
    (u64::from(word) << 32) | u64::from(word)
}

const _: () = assert!(size_of::<Leaf>() <= PAGE_SIZE);
const _: () = assert!(LEAF_OFFSETS <= BITMAP_WORDS * 64);

/// The word and mask of slot `index`'s bit in a leaf bitmap.
fn bit(index: usize) -> (usize, u64) {
    (index / 64, 1 << (index % 64))
}

impl Leaf {
    fn get(&self, index: usize) -> Option<SlotValue> {
        let (word, mask) = bit(index);
        if self.present[word] & mask == 0 {
            return None;
        }
        let value = self.values[index];
        if self.same_filled[word] & mask != 0 {
            Some(SlotValue::SameFilled(value))
        } else {
            Some(SlotValue::Entry(value))
        }
    }

    /// Put `value` in slot `index`, returning what it held.
    fn replace(&mut self, index: usize, value: SlotValue) -> Option<SlotValue> {
        let old = self.get(index);
        let (word, mask) = bit(index);
        let (raw, same_filled) = match value {
            SlotValue::SameFilled(fill) => (fill, true),
            SlotValue::Entry(key) => (key, false),
        };
        self.values[index] = raw;
        if same_filled {
            self.same_filled[word] |= mask;
        } else {
            self.same_filled[word] &= !mask;
        }
        if old.is_none() {
            // INVARIANT: a slot that becomes present is counted.
            self.present[word] |= mask;
            self.used += 1;
        }
        old
    }

    /// Empty slot `index`, returning what it held.
    fn take(&mut self, index: usize) -> Option<SlotValue> {
        let old = self.get(index)?;
        let (word, mask) = bit(index);
        // INVARIANT: a slot that stops being present is uncounted.
        self.present[word] &= !mask;
        self.same_filled[word] &= !mask;
        self.used -= 1;
        Some(old)
    }
}

/// The top of a table's tree: none yet, a mid page alone (every leaf of the
/// table lies under the root's first pointer), or the root.
#[derive(Clone, Copy)]
enum Top {
    Empty,
    Mid(NonNull<Page>),
    Root(NonNull<Page>),
}

/// The sparse map from swap offset to [`SlotValue`] of one swap area, or of one
/// shard of it.
///
/// A shard of `shards` holds the offsets whose leaf number (`offset /
/// LEAF_OFFSETS`) is `shard` modulo `shards`, and numbers its leaves among its
/// own (leaf number / `shards`), so its tree is as dense as the offsets it
/// holds. The tree has no root until a leaf needs one (a shard's first 512
/// leaves, 15 GiB of swap with 8 shards, hang from one mid page), and gives back
/// every page when its last offset goes.
///
/// # Invariants
///
/// `top` is `Empty` exactly when nothing is stored and `pages` is 0; otherwise
/// its pages and every page they point to are live pages from the table's
/// provider, owned by the table and counted in `pages`. Directory entries are
/// `None` or live pages; a leaf page is zeroed when linked.
pub struct OffsetTable {
    top: Top,
    shard: u64,
    shards: u64,
    stored: u64,
    pages: u64,
}

// SAFETY: the table exclusively owns its pages; moving it moves that ownership.
unsafe impl Send for OffsetTable {}

impl Default for OffsetTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Where one offset lives in its table: the root's pointer to its mid page,
/// the mid page's pointer to its leaf, and its slot in the leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    root: usize,
    mid: usize,
    slot: usize,
}

/// The shard (of `shards`) that holds `offset`: runs of [`LEAF_OFFSETS`]
/// consecutive offsets (one leaf) take turns.
pub fn shard_of(offset: u64, shards: usize) -> usize {
    // The remainder is below `shards`, a usize (0 shards: all in one).
    (offset / LEAF_OFFSETS as u64)
        .checked_rem(shards as u64)
        .unwrap_or(0) as usize
}

fn pointer_at(page: NonNull<Page>, index: usize) -> *mut Option<NonNull<Page>> {
    debug_assert!(index < FANOUT);
    // SAFETY: a directory page holds FANOUT pointer-sized entries; index < FANOUT.
    unsafe { page.as_ptr().cast::<Option<NonNull<Page>>>().add(index) }
}

/// The leaf in `page`, as a raw pointer (dereferenced where the table's borrow
/// says whether it is read or written).
fn leaf_at(page: NonNull<Page>) -> *mut Leaf {
    page.as_ptr().cast::<Leaf>()
}

/// Whether every pointer of directory page `page` is `None`.
///
/// # Safety
/// `page` is a live directory page nobody writes meanwhile.
unsafe fn directory_is_empty(page: NonNull<Page>) -> bool {
    // SAFETY: per the caller; every index is below FANOUT.
    (0..FANOUT).all(|index| unsafe { (*pointer_at(page, index)).is_none() })
}

impl OffsetTable {
    /// An empty table for every offset of an area. Allocates nothing.
    pub const fn new() -> Self {
        Self::shard(0, 1)
    }

    /// An empty table for shard `shard` of `shards` (see [`shard_of`]).
    /// Allocates nothing.
    pub const fn shard(shard: usize, shards: usize) -> Self {
        let shards = if shards == 0 { 1 } else { shards as u64 };
        let shard = match (shard as u64).checked_rem(shards) {
            Some(shard) => shard,
            None => 0,
        };
        OffsetTable {
            top: Top::Empty,
            shard,
            shards,
            stored: 0,
            pages: 0,
        }
    }

    /// Offsets holding something.
    pub fn len(&self) -> u64 {
        self.stored
    }

    /// Nothing stored.
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    /// Provider pages the table holds.
    pub fn pages_held(&self) -> u64 {
        self.pages
    }

    /// Where `offset` lives: `None` if it is not this shard's or beyond
    /// [`MAX_OFFSETS`].
    fn path(&self, offset: u64) -> Option<Path> {
        if offset >= MAX_OFFSETS {
            return None;
        }
        let leaf = offset / LEAF_OFFSETS as u64;
        // (Checked: `shards` is never 0, and a division with no panic path
        // keeps the kernel module's objtool quiet.)
        if leaf.checked_rem(self.shards)? != self.shard {
            return None;
        }
        // Below MAX_OFFSETS every index fits a usize.
        let local = usize::try_from(leaf.checked_div(self.shards)?).ok()?;
        Some(Path {
            root: local / FANOUT,
            mid: local % FANOUT,
            slot: (offset % LEAF_OFFSETS as u64) as usize,
        })
    }

    /// The offset at `slot` of leaf `mid` under root pointer `root`.
    fn offset_at(&self, root: usize, mid: usize, slot: usize) -> u64 {
        let local = (root * FANOUT + mid) as u64;
        (local * self.shards + self.shard) * LEAF_OFFSETS as u64 + slot as u64
    }

    /// The mid page under root pointer `root`, if there is one.
    fn mid(&self, root: usize) -> Option<NonNull<Page>> {
        match self.top {
            Top::Empty => None,
            Top::Mid(mid) => (root == 0).then_some(mid),
            // SAFETY: the root is a live directory page owned by the table (type
            // invariant) and `root` < FANOUT (a `Path`'s); `&self` means nothing
            // writes it meanwhile.
            Top::Root(page) => unsafe { *pointer_at(page, root) },
        }
    }

    /// The leaf at `path`, if there is one.
    fn leaf(&self, path: Path) -> Option<NonNull<Page>> {
        let mid = self.mid(path.root)?;
        // SAFETY: `mid` is a live directory page owned by the table (type
        // invariant), `path.mid` < FANOUT; `&self` means nothing writes it.
        unsafe { *pointer_at(mid, path.mid) }
    }

    /// What `offset` holds.
    pub fn get(&self, offset: u64) -> Option<SlotValue> {
        let path = self.path(offset)?;
        let leaf = self.leaf(path)?;
        // SAFETY: a leaf page is 4096-byte aligned, large enough for `Leaf`
        // (checked at compile time), zeroed when linked, and every bit pattern is
        // a valid `Leaf` (integers only); `&self` means nothing writes it
        // meanwhile.
        unsafe { (*leaf_at(leaf)).get(path.slot) }
    }

    /// Store `value` at `offset`, returning what was there. Allocates the path to the
    /// leaf if needed; on failure no offset's value changes.
    pub fn replace<P: PageProvider>(
        &mut self,
        provider: &P,
        offset: u64,
        value: SlotValue,
    ) -> Result<Option<SlotValue>, Error> {
        let path = self.path(offset).ok_or(Error::InvalidArgument(
            "swap offset too large, or not this shard's",
        ))?;
        let leaf = self.leaf_for_store(provider, path)?;
        // SAFETY: `leaf` is a live leaf page owned by the table (see `get`), and
        // `&mut self` makes this the only access.
        let old = unsafe { (*leaf_at(leaf)).replace(path.slot, value) };
        if old.is_none() {
            self.stored += 1;
        }
        Ok(old)
    }

    /// Empty `offset`, returning what it held. A leaf that empties is freed, and
    /// with the table's last offset every page goes back.
    pub fn take<P: PageProvider>(&mut self, provider: &P, offset: u64) -> Option<SlotValue> {
        let path = self.path(offset)?;
        let mid = self.mid(path.root)?;
        // SAFETY: as in `get`, with `&mut self` the only access; the leaf is
        // unlinked before it is freed, and was the table's to free.
        let old = unsafe {
            let leaf = (*pointer_at(mid, path.mid))?;
            let page = &mut *leaf_at(leaf);
            let old = page.take(path.slot)?;
            if page.used == 0 {
                *pointer_at(mid, path.mid) = None;
                provider.free_page(leaf);
                self.pages -= 1;
                if let (Top::Root(root), true) = (self.top, directory_is_empty(mid)) {
                    *pointer_at(root, path.root) = None;
                    provider.free_page(mid);
                    self.pages -= 1;
                }
            }
            old
        };
        self.stored -= 1;
        if self.stored == 0 {
            self.free_all(provider);
        }
        Some(old)
    }

    /// Visit every stored offset in order.
    pub fn for_each(&self, mut f: impl FnMut(u64, SlotValue)) {
        let roots = match self.top {
            Top::Empty => 0,
            Top::Mid(_) => 1,
            Top::Root(_) => FANOUT,
        };
        for r in 0..roots {
            let Some(mid) = self.mid(r) else { continue };
            for m in 0..FANOUT {
                // SAFETY: as in `get`.
                let Some(leaf) = (unsafe { *pointer_at(mid, m) }) else {
                    continue;
                };
                // SAFETY: as in `get`.
                let leaf = unsafe { &*leaf_at(leaf) };
                for slot in 0..LEAF_OFFSETS {
                    if let Some(value) = leaf.get(slot) {
                        f(self.offset_at(r, m, slot), value);
                    }
                }
            }
        }
    }

    /// Empty the table, calling `f` for every value it held, and give back all pages.
    pub fn drain<P: PageProvider>(&mut self, provider: &P, mut f: impl FnMut(u64, SlotValue)) {
        self.for_each(&mut f);
        self.free_all(provider);
    }

    /// Give back all pages without looking at the values (for a table whose values
    /// need no release).
    pub fn free_all<P: PageProvider>(&mut self, provider: &P) {
        let top = core::mem::replace(&mut self.top, Top::Empty);
        let free_mid = |mid: NonNull<Page>| {
            // SAFETY: every page is unlinked (the top taken), was the table's,
            // and is freed once; `mid` is a live directory page until freed here.
            unsafe {
                for m in 0..FANOUT {
                    if let Some(leaf) = *pointer_at(mid, m) {
                        provider.free_page(leaf);
                    }
                }
                provider.free_page(mid);
            }
        };
        match top {
            Top::Empty => {}
            Top::Mid(mid) => free_mid(mid),
            Top::Root(root) => {
                for r in 0..FANOUT {
                    // SAFETY: the root is live until freed below, r < FANOUT.
                    if let Some(mid) = unsafe { *pointer_at(root, r) } {
                        free_mid(mid);
                    }
                }
                // SAFETY: the root came from the provider, is unlinked (the top
                // taken) and is freed once.
                unsafe { provider.free_page(root) };
            }
        }
        // INVARIANT: the top is empty and every page went back.
        self.stored = 0;
        self.pages = 0;
    }

    /// The leaf at `path`, allocating the pages on its way (a root above the mid
    /// page when the path leaves the root's first pointer).
    fn leaf_for_store<P: PageProvider>(
        &mut self,
        provider: &P,
        path: Path,
    ) -> Result<NonNull<Page>, Error> {
        let mid = self.mid_for_store(provider, path.root)?;
        // SAFETY: as in `get`, with `&mut self` the only access; a new leaf is
        // zeroed before it is linked.
        unsafe {
            match *pointer_at(mid, path.mid) {
                Some(leaf) => Ok(leaf),
                None => {
                    let leaf = self.zeroed_page(provider)?;
                    *pointer_at(mid, path.mid) = Some(leaf);
                    Ok(leaf)
                }
            }
        }
    }

    fn mid_for_store<P: PageProvider>(
        &mut self,
        provider: &P,
        root: usize,
    ) -> Result<NonNull<Page>, Error> {
        let root_page = match self.top {
            Top::Empty if root == 0 => {
                let mid = self.zeroed_page(provider)?;
                self.top = Top::Mid(mid);
                return Ok(mid);
            }
            Top::Mid(mid) if root == 0 => return Ok(mid),
            Top::Empty => {
                let page = self.zeroed_page(provider)?;
                self.top = Top::Root(page);
                page
            }
            Top::Mid(mid) => {
                // The tree grows a root; the mid page becomes its first child.
                let page = self.zeroed_page(provider)?;
                // SAFETY: a fresh zeroed directory page, ours alone.
                unsafe { *pointer_at(page, 0) = Some(mid) };
                self.top = Top::Root(page);
                page
            }
            Top::Root(page) => page,
        };
        // SAFETY: as in `get`, with `&mut self` the only access; a new mid page
        // is zeroed before it is linked.
        unsafe {
            match *pointer_at(root_page, root) {
                Some(mid) => Ok(mid),
                None => {
                    let mid = self.zeroed_page(provider)?;
                    *pointer_at(root_page, root) = Some(mid);
                    Ok(mid)
                }
            }
        }
    }

    fn zeroed_page<P: PageProvider>(&mut self, provider: &P) -> Result<NonNull<Page>, Error> {
        let page = provider.alloc_page()?;
        // SAFETY: a fresh page, valid for PAGE_SIZE bytes and exclusively ours. All-zero
        // bytes are `None` pointers and an empty leaf (`used` 0, no bit set).
        unsafe { page.as_ptr().cast::<u8>().write_bytes(0, PAGE_SIZE) };
        self.pages += 1;
        Ok(page)
    }
}

impl Drop for OffsetTable {
    fn drop(&mut self) {
        // Pages must be given back through `free_all`/`drain` with the provider; a table
        // dropped with pages would leak them, which the owner (SwapArea) never does.
        debug_assert!(
            matches!(self.top, Top::Empty),
            "OffsetTable dropped while holding pages"
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    use foldswap_mem::{CountingProvider, StdPageProvider};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sparse_offsets_allocate_paths_lazily() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut table = OffsetTable::new();
        assert_eq!(table.get(5), None);
        table
            .replace(&provider, 5, SlotValue::SameFilled(0))
            .unwrap();
        // A mid page and the leaf: no root while the mid page reaches.
        assert_eq!(provider.pages_in_use(), 2);
        table
            .replace(&provider, MAX_OFFSETS - 1, SlotValue::Entry(9))
            .unwrap();
        assert_eq!(table.get(MAX_OFFSETS - 1), Some(SlotValue::Entry(9)));
        assert!(
            table
                .replace(&provider, MAX_OFFSETS, SlotValue::Entry(1))
                .is_err()
        );
        assert_eq!(table.take(&provider, 5), Some(SlotValue::SameFilled(0)));
        assert_eq!(table.len(), 1);
        table.free_all(&provider);
        assert_eq!(provider.pages_in_use(), 0);
    }

    #[test]
    fn an_offset_costs_four_bytes() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut table = OffsetTable::new();
        assert_eq!(LEAF_OFFSETS, 958);
        for offset in 0..LEAF_OFFSETS as u64 {
            let value = if offset % 2 == 0 {
                SlotValue::SameFilled(u32::MAX - offset as u32)
            } else {
                SlotValue::Entry(u32::MAX - offset as u32)
            };
            table.replace(&provider, offset, value).unwrap();
        }
        // A mid page and one leaf for 958 offsets (8-byte slots needed two leaves).
        assert_eq!(provider.pages_in_use(), 2);
        assert_eq!(table.get(0), Some(SlotValue::SameFilled(u32::MAX)));
        assert_eq!(table.get(1), Some(SlotValue::Entry(u32::MAX - 1)));
        table
            .replace(&provider, LEAF_OFFSETS as u64, SlotValue::Entry(0))
            .unwrap();
        assert_eq!(provider.pages_in_use(), 3);
        // A same-filled value replaced by an entry and back keeps no stale kind.
        table.replace(&provider, 0, SlotValue::Entry(7)).unwrap();
        assert_eq!(table.get(0), Some(SlotValue::Entry(7)));
        table
            .replace(&provider, 0, SlotValue::SameFilled(7))
            .unwrap();
        assert_eq!(table.get(0), Some(SlotValue::SameFilled(7)));
        table.free_all(&provider);
        assert_eq!(provider.pages_in_use(), 0);
    }

    #[test]
    fn only_words_with_equal_halves_are_fill_words() {
        for word in [0u32, 1, 0x8000_0000, u32::MAX] {
            assert_eq!(fill_word(fill_word_u64(word)), Some(word));
        }
        assert_eq!(fill_word(1), None);
        assert_eq!(fill_word(0x0000_0001_0000_0000), None);
        assert_eq!(fill_word(u64::MAX ^ 1), None);
    }

    #[test]
    fn out_of_memory_changes_nothing() {
        let provider = CountingProvider::new(StdPageProvider, 3);
        let mut table = OffsetTable::new();
        table.replace(&provider, 1, SlotValue::Entry(1)).unwrap();
        let far = (LEAF_OFFSETS * FANOUT * 3) as u64;
        assert_eq!(
            table.replace(&provider, far, SlotValue::Entry(2)),
            Err(Error::OutOfMemory)
        );
        assert_eq!(table.get(1), Some(SlotValue::Entry(1)));
        assert_eq!(table.get(far), None);
        assert_eq!(table.len(), 1);
        table.free_all(&provider);
    }

    #[test]
    fn a_shard_holds_its_own_leaves_densely() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let shards = 8;
        let mut table = OffsetTable::shard(3, shards);
        // The shard's 512th leaf of its own still hangs from the mid page: 4,096
        // leaves of the area, 15 GiB of swap.
        let last_under_mid = ((511 * shards + 3) * LEAF_OFFSETS) as u64 + 7;
        for offset in [3 * LEAF_OFFSETS as u64, last_under_mid] {
            assert_eq!(shard_of(offset, shards), 3);
            table
                .replace(&provider, offset, SlotValue::Entry(1))
                .unwrap();
        }
        assert_eq!(provider.pages_in_use(), 3);
        // Another shard's offset is refused and changes nothing.
        assert!(table.replace(&provider, 0, SlotValue::Entry(2)).is_err());
        assert_eq!(table.get(0), None);
        assert_eq!(table.take(&provider, 0), None);
        // The next leaf of this shard needs the root: the mid page moves under it.
        let past_mid = ((512 * shards + 3) * LEAF_OFFSETS) as u64;
        table
            .replace(&provider, past_mid, SlotValue::Entry(3))
            .unwrap();
        assert_eq!(provider.pages_in_use(), 6);
        let mut seen = Vec::new();
        table.for_each(|offset, value| seen.push((offset, value)));
        assert_eq!(
            seen,
            [
                (3 * LEAF_OFFSETS as u64, SlotValue::Entry(1)),
                (last_under_mid, SlotValue::Entry(1)),
                (past_mid, SlotValue::Entry(3)),
            ]
        );
        // Its leaf emptied, the second mid page goes too.
        assert_eq!(table.take(&provider, past_mid), Some(SlotValue::Entry(3)));
        assert_eq!(provider.pages_in_use(), 4);
        assert_eq!(table.pages_held(), 4);
        assert_eq!(table.get(last_under_mid), Some(SlotValue::Entry(1)));
        table.free_all(&provider);
    }

    #[test]
    fn the_last_offset_taken_gives_every_page_back() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut table = OffsetTable::new();
        let far = (LEAF_OFFSETS * FANOUT * 2) as u64;
        for offset in [1, far] {
            table
                .replace(&provider, offset, SlotValue::Entry(1))
                .unwrap();
        }
        assert_eq!(table.take(&provider, 1), Some(SlotValue::Entry(1)));
        assert_eq!(table.take(&provider, far), Some(SlotValue::Entry(1)));
        assert_eq!(provider.pages_in_use(), 0);
        assert_eq!(table.pages_held(), 0);
        // And the table works on.
        table.replace(&provider, 2, SlotValue::Entry(2)).unwrap();
        assert_eq!(table.get(2), Some(SlotValue::Entry(2)));
        table.free_all(&provider);
        assert_eq!(provider.pages_in_use(), 0);
    }

    proptest! {
        #[test]
        fn table_matches_a_map(
            ops in proptest::collection::vec((0u64..3000, any::<bool>(), any::<Option<u64>>()), 1..600),
            shards in 1usize..9,
        ) {
            let provider = CountingProvider::unlimited(StdPageProvider);
            let shard = shards / 2;
            let mut table = OffsetTable::shard(shard, shards);
            let mut model = BTreeMap::new();
            for (offset, far, op) in ops {
                // Near offsets hang from one mid page; far ones need the root.
                let offset = offset * 37 + if far { (LEAF_OFFSETS * FANOUT * 9) as u64 } else { 0 };
                if shard_of(offset, shards) != shard {
                    prop_assert!(table.replace(&provider, offset, SlotValue::Entry(0)).is_err());
                    continue;
                }
                match op {
                    Some(v) => {
                        let value = if v % 2 == 0 { SlotValue::SameFilled((v >> 32) as u32) } else { SlotValue::Entry(v as u32) };
                        prop_assert_eq!(table.replace(&provider, offset, value).unwrap(), model.insert(offset, value));
                    }
                    None => prop_assert_eq!(table.take(&provider, offset), model.remove(&offset)),
                }
                prop_assert_eq!(table.len(), model.len() as u64);
            }
            let mut seen = Vec::new();
            table.for_each(|o, v| seen.push((o, v)));
            prop_assert_eq!(seen, model.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(table.pages_held() as usize, provider.pages_in_use());
            table.free_all(&provider);
            prop_assert_eq!(provider.pages_in_use(), 0);
        }
    }
}
