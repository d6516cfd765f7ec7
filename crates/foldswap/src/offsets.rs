//! The offset table: what is stored at each swap offset of one swap area.
//!
//! A three-level radix tree of provider pages, allocated lazily as offsets are
//! stored, like the kernel's xarray for zswap entries:
//!
//! ```text
//!   root page: 512 pointers ─► mid page: 512 pointers ─► leaf page: 256 slots × 16 B
//!   offset = (root index × 512 + mid index) × 255 + leaf slot − 1
//! ```
//!
//! Slot 0 of a leaf is its header (the count of used slots), so a leaf serves 255
//! offsets and an offset splits by division, not by bit fields.
//!
//! A slot is 16 bytes: a tag word and a value word. It holds either nothing, a
//! same-filled page (the repeated word, no other storage) or a reference to a content
//! entry. Leaves are freed when their last slot empties, so an area that is mostly
//! invalidated gives its pages back.

use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider};

const FANOUT: usize = PAGE_SIZE / size_of::<usize>();
const LEAF_SLOTS: usize = PAGE_SIZE / size_of::<Slot>();
/// The largest number of offsets one table can address (about 2^26: 250 GiB of swap).
pub const MAX_OFFSETS: u64 = (FANOUT * FANOUT * LEAF_OFFSETS) as u64;

/// What one swap offset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotValue {
    /// A page whose bytes are one 64-bit word repeated (zero included).
    SameFilled(u64),
    /// A reference to a content entry (see `content`), as its packed id.
    Entry(u64),
}

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    tag: u64,
    value: u64,
}

const TAG_EMPTY: u64 = 0;
const TAG_SAME_FILLED: u64 = 1;
const TAG_ENTRY: u64 = 2;

impl Slot {
    fn decode(self) -> Option<SlotValue> {
        match self.tag {
            TAG_SAME_FILLED => Some(SlotValue::SameFilled(self.value)),
            TAG_ENTRY => Some(SlotValue::Entry(self.value)),
            TAG_EMPTY => None,
            _ => None,
        }
    }

    fn encode(value: SlotValue) -> Slot {
        match value {
            SlotValue::SameFilled(word) => Slot {
                tag: TAG_SAME_FILLED,
                value: word,
            },
            SlotValue::Entry(id) => Slot {
                tag: TAG_ENTRY,
                value: id,
            },
        }
    }
}

/// A leaf page: 255 slots and, in slot 0's place, the count of used slots.
/// (Slot 0 of each leaf is its header, so a leaf holds `LEAF_SLOTS - 1` offsets.)
const LEAF_OFFSETS: usize = LEAF_SLOTS - 1;

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
    (root < FANOUT).then_some((root, mid, leaf + 1))
}

fn pointer_at(page: NonNull<Page>, index: usize) -> *mut Option<NonNull<Page>> {
    debug_assert!(index < FANOUT);
    // SAFETY: a directory page holds FANOUT pointer-sized entries; index < FANOUT.
    unsafe { page.as_ptr().cast::<Option<NonNull<Page>>>().add(index) }
}

fn slot_at(leaf: NonNull<Page>, index: usize) -> *mut Slot {
    debug_assert!(index < LEAF_SLOTS);
    // SAFETY: a leaf page holds LEAF_SLOTS slots; index < LEAF_SLOTS.
    unsafe { leaf.as_ptr().cast::<Slot>().add(index) }
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
        // their entries are None or live pages; leaf slots are initialized.
        unsafe {
            let mid = (*pointer_at(root, r))?;
            let leaf = (*pointer_at(mid, m))?;
            (*slot_at(leaf, l)).decode()
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
        // SAFETY: `leaf` is a live leaf page owned by the table; slots are initialized.
        let old = unsafe { core::mem::replace(&mut *slot_at(leaf, l), Slot::encode(value)) };
        let old = old.decode();
        if old.is_none() {
            self.stored += 1;
            // SAFETY: slot 0 of a leaf is its header (used-slot count).
            unsafe { (*slot_at(leaf, 0)).value += 1 };
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
            let old = core::mem::take(&mut *slot_at(leaf, l)).decode()?;
            self.stored -= 1;
            let header = &mut *slot_at(leaf, 0);
            header.value -= 1;
            if header.value == 0 {
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
                for l in 1..LEAF_SLOTS {
                    // SAFETY: as in `get`.
                    if let Some(value) = unsafe { (*slot_at(leaf, l)).decode() } {
                        let offset = ((r * FANOUT + m) * LEAF_OFFSETS + l - 1) as u64;
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
        // bytes are `None` pointers and empty slots.
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
                        let value = if v % 2 == 0 { SlotValue::SameFilled(v) } else { SlotValue::Entry(v) };
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
