//! Where each swapped page is: a map from (swap type, offset) to a 16-byte
//! [`Slot`], in pages from the host's [`PageProvider`].
//!
//! Per swap type a three-level radix tree, like a page table: a root page of
//! 512 pointers, middle pages of 512 pointers, leaf pages of 256 slots. One
//! leaf covers 1 MiB of swap, one middle page 512 MiB, a root 256 GiB. Pages
//! are allocated on the first store into their range (fallibly: a store that
//! cannot get a page fails before anything changes) and all are given back when
//! the swap area goes away ([`SlotMap::clear_type`]).
//!
//! Not synchronised: the caller holds its lock.

use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider};

/// Swap types the map can hold (Linux's `MAX_SWAPFILES` is at most 32).
pub const MAX_TYPES: usize = 32;

const PTRS_PER_PAGE: usize = PAGE_SIZE / 8;
const SLOTS_PER_LEAF: usize = PAGE_SIZE / 16;
const LEAF_SPAN: u64 = SLOTS_PER_LEAF as u64;
const MIDDLE_SPAN: u64 = LEAF_SPAN * PTRS_PER_PAGE as u64;
/// Offsets the map can hold per swap type (2^26 pages = 256 GiB of swap).
pub const MAX_OFFSET: u64 = MIDDLE_SPAN * PTRS_PER_PAGE as u64;

/// What the map holds for one swap slot: two words chosen by the user of the
/// map. `kind == 0` means empty, so a user's kinds start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Slot {
    /// The user's kind of entry; 0 is reserved for "empty".
    pub kind: u64,
    /// The user's value.
    pub value: u64,
}

const EMPTY: Slot = Slot { kind: 0, value: 0 };

type PtrPage = [Option<NonNull<Page>>; PTRS_PER_PAGE];
type LeafPage = [Slot; SLOTS_PER_LEAF];

const _: () = assert!(core::mem::size_of::<PtrPage>() == PAGE_SIZE);
const _: () = assert!(core::mem::size_of::<LeafPage>() == PAGE_SIZE);

/// The map. Holds provider pages until [`clear_type`](Self::clear_type) or drop.
pub struct SlotMap<P: PageProvider> {
    provider: P,
    roots: [Option<NonNull<Page>>; MAX_TYPES],
    pages: usize,
    used: usize,
}

// SAFETY: the map owns its pages exclusively; moving it moves that ownership.
unsafe impl<P: PageProvider + Send> Send for SlotMap<P> {}

/// Split an offset into (root index, middle index, leaf index).
fn split(offset: u64) -> Option<(usize, usize, usize)> {
    if offset >= MAX_OFFSET {
        return None;
    }
    let root = (offset / MIDDLE_SPAN) as usize;
    let middle = ((offset % MIDDLE_SPAN) / LEAF_SPAN) as usize;
    let leaf = (offset % LEAF_SPAN) as usize;
    Some((root, middle, leaf))
}

/// # Safety
/// `page` is a live page of this map used as a pointer page.
unsafe fn ptrs<'a>(page: NonNull<Page>) -> &'a mut PtrPage {
    // SAFETY: per the caller, the page is ours, 4096-aligned and 4096 bytes, and
    // was zero-initialised as pointers (all-zero is `None` for NonNull options).
    unsafe { &mut *page.as_ptr().cast::<PtrPage>() }
}

/// # Safety
/// `page` is a live page of this map used as a leaf.
unsafe fn leaf<'a>(page: NonNull<Page>) -> &'a mut LeafPage {
    // SAFETY: as for `ptrs`; an all-zero slot is `EMPTY`.
    unsafe { &mut *page.as_ptr().cast::<LeafPage>() }
}

impl<P: PageProvider> SlotMap<P> {
    /// An empty map; takes no memory until the first insert.
    pub fn new(provider: P) -> Self {
        SlotMap {
            provider,
            roots: [None; MAX_TYPES],
            pages: 0,
            used: 0,
        }
    }

    /// Provider pages held by the map itself.
    pub fn pages_held(&self) -> usize {
        self.pages
    }

    /// Slots in use, all types.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    fn zeroed_page(&mut self) -> Result<NonNull<Page>, Error> {
        let page = self.provider.alloc_page()?;
        // SAFETY: a fresh page from the provider, exclusively ours, 4096 bytes.
        unsafe { page.as_ptr().cast::<u8>().write_bytes(0, PAGE_SIZE) };
        self.pages += 1;
        Ok(page)
    }

    /// Make sure every page on the path to `(ty, offset)` exists. On error
    /// nothing stored changes (pages already added stay, empty, for later).
    fn ensure_path(&mut self, ty: usize, offset: u64) -> Result<&mut Slot, Error> {
        let (r, m, l) = split(offset).ok_or(Error::InvalidArgument("swap offset too large"))?;
        let root = match self
            .roots
            .get(ty)
            .copied()
            .ok_or(Error::InvalidArgument("swap type"))?
        {
            Some(page) => page,
            None => {
                let page = self.zeroed_page()?;
                if let Some(root) = self.roots.get_mut(ty) {
                    *root = Some(page);
                }
                page
            }
        };
        // SAFETY: `root` and `middle` are live pointer pages of this map.
        let middle = unsafe { self.child(root, r) }?;
        // SAFETY: as above.
        let leaf_page = unsafe { self.child(middle, m) }?;
        // SAFETY: `leaf_page` is a live leaf of this map; `l` is in range.
        unsafe { leaf(leaf_page) }
            .get_mut(l)
            .ok_or(Error::InvalidArgument("slot"))
    }

    /// The page under entry `index` of pointer page `parent`, allocated (zeroed)
    /// if missing.
    ///
    /// # Safety
    /// `parent` is a live pointer page of this map.
    unsafe fn child(
        &mut self,
        parent: NonNull<Page>,
        index: usize,
    ) -> Result<NonNull<Page>, Error> {
        // SAFETY: per the caller.
        if let Some(page) = unsafe { ptrs(parent) }.get(index).copied().flatten() {
            return Ok(page);
        }
        let page = self.zeroed_page()?;
        // SAFETY: per the caller; the new page is stored once.
        match unsafe { ptrs(parent) }.get_mut(index) {
            Some(entry) => *entry = Some(page),
            None => {
                self.free(page);
                return Err(Error::InvalidArgument("radix index"));
            }
        }
        Ok(page)
    }

    fn locate(&self, ty: usize, offset: u64) -> Option<NonNull<Slot>> {
        let (r, m, l) = split(offset)?;
        let root = self.roots.get(ty).copied().flatten()?;
        // SAFETY: live pointer pages / leaf of this map, indices from `split`.
        let middle = unsafe { ptrs(root) }.get(r).copied().flatten()?;
        // SAFETY: as above.
        let leaf_page = unsafe { ptrs(middle) }.get(m).copied().flatten()?;
        // SAFETY: as above.
        unsafe { leaf(leaf_page) }.get_mut(l).map(NonNull::from)
    }

    /// Put `slot` (whose `kind` must not be 0) at `(ty, offset)`, returning
    /// what was there. Fails (changing nothing) if a page for the path cannot
    /// be had or the type/offset is out of range.
    pub fn insert(&mut self, ty: usize, offset: u64, slot: Slot) -> Result<Option<Slot>, Error> {
        if slot.kind == 0 {
            return Err(Error::InvalidArgument("slot kind 0 is reserved"));
        }
        let place = self.ensure_path(ty, offset)?;
        let old = core::mem::replace(place, slot);
        if old.kind == 0 {
            self.used += 1;
            Ok(None)
        } else {
            Ok(Some(old))
        }
    }

    /// What is at `(ty, offset)`.
    pub fn get(&self, ty: usize, offset: u64) -> Option<Slot> {
        // SAFETY: a live slot of this map; `&self` excludes writers.
        self.locate(ty, offset)
            .map(|p| unsafe { p.read() })
            .filter(|s| s.kind != 0)
    }

    /// Take what is at `(ty, offset)` out.
    pub fn remove(&mut self, ty: usize, offset: u64) -> Option<Slot> {
        let place = self.locate(ty, offset)?;
        // SAFETY: a live slot of this map; `&mut self` makes us its only user.
        let old = unsafe { place.as_ptr().replace(EMPTY) };
        if old.kind == 0 {
            return None;
        }
        self.used -= 1;
        Some(old)
    }

    /// Give every slot of type `ty` to `f` and free all its pages.
    pub fn clear_type(&mut self, ty: usize, mut f: impl FnMut(u64, Slot)) {
        let Some(root) = self.roots.get_mut(ty).and_then(Option::take) else {
            return;
        };
        // SAFETY: `root` was a live pointer page of this map, now detached.
        for (r, middle) in unsafe { ptrs(root) }.iter().enumerate() {
            let Some(middle) = *middle else { continue };
            // SAFETY: a live pointer page of this map.
            for (m, leaf_page) in unsafe { ptrs(middle) }.iter().enumerate() {
                let Some(leaf_page) = *leaf_page else {
                    continue;
                };
                // SAFETY: a live leaf of this map.
                for (l, slot) in unsafe { leaf(leaf_page) }.iter().enumerate() {
                    if slot.kind != 0 {
                        self.used -= 1;
                        let offset = r as u64 * MIDDLE_SPAN + m as u64 * LEAF_SPAN + l as u64;
                        f(offset, *slot);
                    }
                }
                self.free(leaf_page);
            }
            self.free(middle);
        }
        self.free(root);
    }

    fn free(&mut self, page: NonNull<Page>) {
        // SAFETY: `page` came from this provider, is detached from the map and
        // not used again.
        unsafe { self.provider.free_page(page) };
        self.pages -= 1;
    }
}

impl<P: PageProvider> Drop for SlotMap<P> {
    fn drop(&mut self) {
        for ty in 0..MAX_TYPES {
            self.clear_type(ty, |_, _| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pages::TestPages;

    fn slot(v: u64) -> Slot {
        Slot { kind: 1, value: v }
    }

    #[test]
    fn insert_get_replace_remove() {
        let provider = TestPages::new(usize::MAX);
        let mut map = SlotMap::new(&provider);
        assert_eq!(map.get(0, 5), None);
        assert_eq!(map.insert(0, 5, slot(50)), Ok(None));
        assert_eq!(map.insert(3, 5, slot(35)), Ok(None));
        assert_eq!(map.insert(0, 5, slot(51)), Ok(Some(slot(50))));
        assert_eq!(map.get(0, 5), Some(slot(51)));
        assert_eq!(map.get(3, 5), Some(slot(35)));
        assert_eq!(map.get(0, 6), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.remove(0, 5), Some(slot(51)));
        assert_eq!(map.remove(0, 5), None);
        assert_eq!(map.len(), 1);
        assert_eq!(map.pages_held(), 6);
        drop(map);
        assert_eq!(provider.in_use(), 0);
    }

    #[test]
    fn far_offsets_and_clear_type_visit_everything() {
        let provider = TestPages::new(usize::MAX);
        let mut map = SlotMap::new(&provider);
        let offsets = [0, 255, 256, MIDDLE_SPAN - 1, MIDDLE_SPAN, MAX_OFFSET - 1];
        for &o in &offsets {
            map.insert(1, o, slot(o + 1)).unwrap();
        }
        assert_eq!(
            map.insert(1, MAX_OFFSET, slot(1)),
            Err(Error::InvalidArgument("swap offset too large"))
        );
        assert!(map.insert(MAX_TYPES, 0, slot(1)).is_err());
        let mut seen = [0u64; 6];
        let mut n = 0;
        map.clear_type(1, |o, s| {
            assert_eq!(s.value, o + 1);
            seen[n] = o;
            n += 1;
        });
        assert_eq!(n, offsets.len());
        assert_eq!(seen, offsets);
        assert!(map.is_empty());
        assert_eq!(map.pages_held(), 0);
        assert_eq!(provider.in_use(), 0);
    }

    #[test]
    fn failed_allocation_changes_nothing() {
        let provider = TestPages::new(3);
        let mut map = SlotMap::new(&provider);
        map.insert(0, 0, slot(7)).unwrap();
        // A new middle page is needed past 512 MiB of swap: none left.
        assert_eq!(map.insert(0, MIDDLE_SPAN, slot(8)), Err(Error::OutOfMemory));
        assert_eq!(map.get(0, 0), Some(slot(7)));
        assert_eq!(map.get(0, MIDDLE_SPAN), None);
        assert_eq!(map.len(), 1);
    }
}
