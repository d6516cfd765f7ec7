//! The offset table: what is stored at each swap offset of one swap area.
//!
//! A three-level radix tree of provider pages, allocated lazily as offsets are
//! stored, like the kernel's xarray for zswap entries:
//!
//! ```text
//!   root page: 512 pointers ─► mid page: 512 pointers ─► leaf page: header + 958 × 4 B
//!   offset = (root index × 512 + mid index) × 958 + leaf index
//! ```
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

/// The sparse map from swap offset to [`SlotValue`] of one swap area.
pub struct OffsetTable {
    root: Option<NonNull<Page>>,
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

fn split(offset: u64) -> Option<(usize, usize, usize)> {
    let offset = usize::try_from(offset).ok()?;
    let leaf = offset % LEAF_OFFSETS;
    let rest = offset / LEAF_OFFSETS;
    let mid = rest % FANOUT;
    let root = rest / FANOUT;
    (root < FANOUT).then_some((root, mid, leaf))
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

impl OffsetTable {
    /// An empty table. Allocates nothing.
    pub const fn new() -> Self {
        OffsetTable {
            root: None,
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

    /// What `offset` holds.
    pub fn get(&self, offset: u64) -> Option<SlotValue> {
        let (r, m, l) = split(offset)?;
        let root = self.root?;
        // SAFETY: root and mid pages are live directory pages owned by the table,
        // their entries are None or live pages; a leaf page is 4096-byte aligned,
        // large enough for `Leaf` (checked at compile time), zeroed when linked and
        // every bit pattern is a valid `Leaf` (integers only); `&self` means nothing
        // writes it meanwhile.
        unsafe {
            let mid = (*pointer_at(root, r))?;
            let leaf = (*pointer_at(mid, m))?;
            (*leaf_at(leaf)).get(l)
        }
    }

    /// Store `value` at `offset`, returning what was there. Allocates the path to the
    /// leaf if needed; on failure nothing changes.
    pub fn replace<P: PageProvider>(
        &mut self,
        provider: &P,
        offset: u64,
        value: SlotValue,
    ) -> Result<Option<SlotValue>, Error> {
        let (r, m, l) = split(offset).ok_or(Error::InvalidArgument("swap offset too large"))?;
        let leaf = self.leaf_for_store(provider, r, m)?;
        // SAFETY: `leaf` is a live leaf page owned by the table (see `get`), and
        // `&mut self` makes this the only access.
        let old = unsafe { (*leaf_at(leaf)).replace(l, value) };
        if old.is_none() {
            self.stored += 1;
        }
        Ok(old)
    }

    /// Empty `offset`, returning what it held.
    pub fn take<P: PageProvider>(&mut self, provider: &P, offset: u64) -> Option<SlotValue> {
        let (r, m, l) = split(offset)?;
        let root = self.root?;
        // SAFETY: as in `get`; pages freed here are unlinked first and owned by us.
        unsafe {
            let mid = (*pointer_at(root, r))?;
            let leaf = (*pointer_at(mid, m))?;
            let page = &mut *leaf_at(leaf);
            let old = page.take(l)?;
            self.stored -= 1;
            if page.used == 0 {
                *pointer_at(mid, m) = None;
                provider.free_page(leaf);
                self.pages -= 1;
            }
            Some(old)
        }
    }

    /// Visit every stored offset in order.
    pub fn for_each(&self, mut f: impl FnMut(u64, SlotValue)) {
        let Some(root) = self.root else { return };
        for r in 0..FANOUT {
            // SAFETY: as in `get`.
            let Some(mid) = (unsafe { *pointer_at(root, r) }) else {
                continue;
            };
            for m in 0..FANOUT {
                // SAFETY: as in `get`.
                let Some(leaf) = (unsafe { *pointer_at(mid, m) }) else {
                    continue;
                };
                // SAFETY: as in `get`.
                let leaf = unsafe { &*leaf_at(leaf) };
                for l in 0..LEAF_OFFSETS {
                    if let Some(value) = leaf.get(l) {
                        let offset = ((r * FANOUT + m) * LEAF_OFFSETS + l) as u64;
                        f(offset, value);
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
        let Some(root) = self.root.take() else { return };
        for r in 0..FANOUT {
            // SAFETY: as in `get`; every page is unlinked (root taken) and freed once.
            unsafe {
                let Some(mid) = *pointer_at(root, r) else {
                    continue;
                };
                for m in 0..FANOUT {
                    if let Some(leaf) = *pointer_at(mid, m) {
                        provider.free_page(leaf);
                    }
                }
                provider.free_page(mid);
            }
        }
        // SAFETY: the root came from `provider` and is no longer reachable.
        unsafe { provider.free_page(root) };
        self.stored = 0;
        self.pages = 0;
    }

    fn leaf_for_store<P: PageProvider>(
        &mut self,
        provider: &P,
        r: usize,
        m: usize,
    ) -> Result<NonNull<Page>, Error> {
        let root = match self.root {
            Some(root) => root,
            None => {
                let root = self.zeroed_page(provider)?;
                self.root = Some(root);
                root
            }
        };
        // SAFETY: as in `get`; new pages are zeroed before being linked.
        unsafe {
            let mid = match *pointer_at(root, r) {
                Some(mid) => mid,
                None => {
                    let mid = self.zeroed_page(provider)?;
                    *pointer_at(root, r) = Some(mid);
                    mid
                }
            };
            match *pointer_at(mid, m) {
                Some(leaf) => Ok(leaf),
                None => {
                    let leaf = self.zeroed_page(provider)?;
                    *pointer_at(mid, m) = Some(leaf);
                    Ok(leaf)
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
            self.root.is_none(),
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
        assert_eq!(provider.pages_in_use(), 3);
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
        // Root, mid and one leaf for 958 offsets (8-byte slots needed two leaves).
        assert_eq!(provider.pages_in_use(), 3);
        assert_eq!(table.get(0), Some(SlotValue::SameFilled(u32::MAX)));
        assert_eq!(table.get(1), Some(SlotValue::Entry(u32::MAX - 1)));
        table
            .replace(&provider, LEAF_OFFSETS as u64, SlotValue::Entry(0))
            .unwrap();
        assert_eq!(provider.pages_in_use(), 4);
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

    proptest! {
        #[test]
        fn table_matches_a_map(ops in proptest::collection::vec((0u64..3000, any::<Option<u64>>()), 1..600)) {
            let provider = CountingProvider::unlimited(StdPageProvider);
            let mut table = OffsetTable::new();
            let mut model = BTreeMap::new();
            for (offset, op) in ops {
                let offset = offset * 37;
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
