//! The object store: zsmalloc-like packing of variable-size objects into zspages.
//!
//! ```text
//!   Handle ──► handle entry (Slab, 12 B: zspage, slot, len, tag, generation)
//!                   │
//!                   ▼
//!   zspage descriptor (Slab): class, used, free list, its provider pages
//!                   │
//!                   ▼
//!   [ page 0 ][ page 1 ][ page 2 ]      slots of one size, back to back;
//!   |s0 |s1 |s2 |s3 |s4 |s5 |s6 |...    a slot may span two pages
//! ```
//!
//! Handles are indirect: a caller keeps a [`Handle`] (the entry's key plus its
//! generation), the entry says where the bytes are. [`ObjectStore::compact`] moves
//! objects out of sparse zspages, rewrites their entries, and frees the emptied
//! zspages; handles stay valid. A freed entry bumps its generation, so a stale
//! handle to a reused entry is [`Error::InvalidHandle`], never someone else's data.
//!
//! Per class, zspages with a free slot are on a `partial` list (allocation takes
//! the first), full ones on a `full` list. A zspage that becomes empty is freed at
//! once. Free slots inside a zspage form a list threaded through the slots
//! themselves (two bytes each); slots never used are handed out by a bump index,
//! so a new zspage is not touched before it is written.

use core::num::NonZeroU64;
use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider, Slab, SlabKey, SlabLink};

use crate::class::{
    CLASS_COUNT, ClassShape, MAX_OBJECT, MAX_ZSPAGE_PAGES, class_for_len, class_shape,
};

#[cfg(feature = "testing")]
mod testing;

const NO_SLOT: u16 = u16::MAX;

/// A stored object. Copy it freely; it stays valid until the object is freed, also
/// across [`ObjectStore::compact`].
///
/// It names a handle entry and the 16-bit generation the entry had when the handle
/// was issued; freeing bumps the generation, so a stale handle is refused even after
/// its entry is reused (until the same entry has been reused 65,536 times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(NonZeroU64);

impl Handle {
    fn new(key: u32, generation: u16) -> Self {
        let raw = (u64::from(generation) << 32) | (u64::from(key) + 1);
        match NonZeroU64::new(raw) {
            Some(raw) => Handle(raw),
            None => Handle(NonZeroU64::MIN),
        }
    }

    fn key(self) -> u32 {
        (self.0.get() as u32).wrapping_sub(1)
    }

    fn generation(self) -> u16 {
        (self.0.get() >> 32) as u16
    }

    /// The handle as its two parts, the entry key and the generation, for a host
    /// that packs them into its own record (see [`from_parts`](Self::from_parts)).
    pub fn to_parts(self) -> (u32, u16) {
        (self.key(), self.generation())
    }

    /// A handle from [`to_parts`](Self::to_parts). Whether it names a live object,
    /// the store checks on use (a forged or stale one is [`Error::InvalidHandle`]).
    pub fn from_parts(key: u32, generation: u16) -> Handle {
        Handle::new(key, generation)
    }

    /// The handle as an integer (never 0), to keep in a host's own tables.
    pub fn to_raw(self) -> u64 {
        self.0.get()
    }

    /// A handle from [`to_raw`](Self::to_raw): `None` unless `raw` has the shape of
    /// one (key part non-zero, nothing above the 16-bit generation), so each handle
    /// has exactly one raw form. Whether it names a live object, the store checks
    /// on use.
    pub fn from_raw(raw: u64) -> Option<Handle> {
        if raw >> 48 != 0 || raw as u32 == 0 {
            return None;
        }
        NonZeroU64::new(raw).map(Handle)
    }
}

/// A live object's bytes where they lie in the store's memory, from
/// [`ObjectStore::object_in_place`]: readable after the borrow of the store ends,
/// so a reader can let go of the lock around the store and read while other
/// threads store, free and read other objects.
#[derive(Debug, Clone, Copy)]
pub struct ObjectInPlace {
    start: NonNull<u8>,
    len: usize,
    tag: u8,
}

impl ObjectInPlace {
    /// The object's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object's tag.
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// The object's bytes.
    ///
    /// # Safety
    ///
    /// For as long as the returned slice is used, the object must stay live and in
    /// place: not freed ([`ObjectStore::free`]), not moved
    /// ([`ObjectStore::compact`]), and the store not dropped. Everything else may
    /// run meanwhile: the store writes only into free slots, through raw pointers,
    /// never through a reference that covers a live object's bytes.
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: `start..start + len` lies in one page of the store's (see
        // `object_in_place`), holds the object's initialised bytes, and by the
        // caller's contract stays unwritten while the slice is used.
        unsafe { core::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

/// Where one object lives. 12 bytes: the per-object metadata of the store.
#[derive(Debug, Clone, Copy)]
struct HandleEntry {
    /// zspage key when live; when free, the next free entry as a raw
    /// [`SlabLink`] (0: the end of the list).
    zspage: u32,
    slot: u16,
    len: u16,
    generation: u16,
    tag: u8,
    live: bool,
}

/// Which list a zspage is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZsList {
    Partial,
    Full,
    /// Chosen by compaction to be emptied; allocation never takes from it.
    Evacuating,
}

/// One zspage: a few provider pages holding slots of one class.
struct ZsPage {
    pages: [Option<NonNull<Page>>; MAX_ZSPAGE_PAGES],
    prev: Option<SlabLink>,
    next: Option<SlabLink>,
    class: u16,
    used: u16,
    /// Slots below this were handed out at least once.
    fresh: u16,
    free_head: u16,
    /// Provider pages held so far: pages are added as slots reach into them.
    allocated: u8,
    list: ZsList,
    /// Inside [`ObjectStore::compact`] only: one past the highest live slot seen
    /// of a zspage whose tail may be trimmed; [`NO_SLOT`] everywhere else.
    top_live: u16,
}

/// Per-class bookkeeping.
#[derive(Debug, Clone, Copy)]
struct ClassState {
    partial: Option<SlabLink>,
    full: Option<SlabLink>,
    evacuating: Option<SlabLink>,
    zspages: u32,
    objects: u32,
}

const EMPTY_CLASS: ClassState = ClassState {
    partial: None,
    full: None,
    evacuating: None,
    zspages: 0,
    objects: 0,
};

/// Occupancy of one size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassOccupancy {
    /// The class's shape.
    pub shape: ClassShape,
    /// zspages held.
    pub zspages: usize,
    /// Live objects.
    pub objects: usize,
}

/// What [`ObjectStore::compact`] achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Objects moved.
    pub objects_moved: usize,
    /// zspages freed.
    pub zspages_freed: usize,
    /// Provider pages given back (those of freed zspages and trimmed tails).
    pub pages_freed: usize,
    /// Partial zspages whose trailing pages, holding no live object, went back.
    pub tails_trimmed: usize,
}

/// Totals of an [`ObjectStore`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live objects.
    pub objects: usize,
    /// Sum of their lengths.
    pub object_bytes: usize,
    /// zspages held.
    pub zspages: usize,
    /// Provider pages in zspages.
    pub zspage_pages: usize,
    /// Provider pages of metadata (handle entries, zspage descriptors, class table).
    pub metadata_pages: usize,
    /// All bytes held from the provider: `(zspage_pages + metadata_pages) * 4096`.
    pub bytes_held: usize,
    /// Share of zspage bytes not holding object bytes, in thousandths.
    pub fragmentation_permille: usize,
}

/// A zsmalloc-like store of objects up to one page long, in pages from `P`.
///
/// Not internally synchronised: `&mut self` to change it; wrap it in a lock (or
/// shard it) to share. `P` is cloned for the store's slabs, so pass a cheap handle
/// (`&provider` or a zero-sized provider).
///
/// # Invariants
///
/// - A live handle entry names a zspage of the class its `len` falls in, at a
///   slot handed out (below the zspage's `fresh`) and not on its free list; no
///   two live entries name one slot. `objects` and `object_bytes` count the live
///   entries and sum their lengths.
/// - A zspage's `used` is the number of live entries naming it, and it is on
///   exactly one list of its class, linked by `prev`/`next`: `full` when `used`
///   reaches the class's objects per zspage, `evacuating` only inside
///   [`compact`](Self::compact), `partial` otherwise. A zspage whose `used` falls
///   to 0 is freed at once; `zspage_pages` is the sum of the zspages' pages.
/// - A zspage holds the first `allocated` of its pages, enough for every slot
///   below `fresh`; its free list holds exactly the `fresh - used` slots below
///   `fresh` that no live entry names. `top_live` is [`NO_SLOT`] outside
///   [`compact`](Self::compact).
/// - Free handle entries form the list headed by `free_handle`, each holding the
///   next as a raw [`SlabLink`]; freeing an entry bumps its generation, so no
///   handle issued before names it again.
///
/// ```
/// use foldswap_mem::StdPageProvider;
/// use foldswap_pool::{ObjectStore, Error};
/// let mut store = ObjectStore::new(StdPageProvider).unwrap();
/// let handle = store.store_object(b"hello", 42).unwrap();
/// let mut buf = [0u8; 16];
/// assert_eq!(store.read_object(handle, &mut buf), Ok((5, 42)));
/// assert_eq!(&buf[..5], b"hello");
/// store.free(handle).unwrap();
/// assert_eq!(store.free(handle), Err(Error::InvalidHandle));
/// ```
pub struct ObjectStore<P: PageProvider + Clone> {
    provider: P,
    handles: Slab<HandleEntry, P>,
    zspages: Slab<ZsPage, P>,
    /// One provider page: `[ClassState; CLASS_COUNT]`.
    classes: NonNull<Page>,
    free_handle: Option<SlabLink>,
    handle_high_water: u32,
    /// The generation a newly made handle entry starts with.
    fresh_generation: u16,
    limit_bytes: usize,
    objects: usize,
    object_bytes: usize,
    zspage_pages: usize,
}

// SAFETY: the store owns its pages and slabs exclusively (no shared pointers leave
// it except borrows tied to `&self`); moving it to another thread moves that
// ownership, which is sound when the provider may move too.
unsafe impl<P: PageProvider + Clone + Send> Send for ObjectStore<P> {}
// SAFETY: `&ObjectStore` only reads: page bytes, slab entries and counters; every
// write needs `&mut self`. So shared references on several threads are sound
// (e.g. loads under a read lock) when the provider is `Sync`.
unsafe impl<P: PageProvider + Clone + Sync> Sync for ObjectStore<P> {}

const _: () = assert!(CLASS_COUNT * core::mem::size_of::<ClassState>() <= PAGE_SIZE);

impl<P: PageProvider + Clone> ObjectStore<P> {
    /// An empty store without a size limit. Takes one page (the class table).
    pub fn new(provider: P) -> Result<Self, Error> {
        let classes = provider.alloc_page()?;
        let table = classes.as_ptr().cast::<ClassState>();
        for class in 0..CLASS_COUNT {
            // SAFETY: a fresh provider page, exclusively ours, aligned to 4096 and
            // large enough for CLASS_COUNT entries (checked at compile time).
            unsafe { table.add(class).write(EMPTY_CLASS) };
        }
        let handles = Slab::new(provider.clone());
        let zspages = Slab::new(provider.clone());
        let (Ok(handles), Ok(zspages)) = (handles, zspages) else {
            // SAFETY: allocated above, not shared.
            unsafe { provider.free_page(classes) };
            return Err(Error::InvalidArgument("slab geometry"));
        };
        Ok(ObjectStore {
            provider,
            handles,
            zspages,
            classes,
            free_handle: None,
            fresh_generation: 0,
            handle_high_water: 0,
            limit_bytes: usize::MAX,
            objects: 0,
            object_bytes: 0,
            zspage_pages: 0,
        })
    }

    /// Limit the bytes held: a store that would need a new zspage past the limit
    /// fails with [`Error::PoolFull`]. Lowering it below the current size frees
    /// nothing; it only stops growth. `usize::MAX` means no limit.
    pub fn set_limit_bytes(&mut self, limit: usize) {
        self.limit_bytes = limit;
    }

    /// The limit set by [`set_limit_bytes`](Self::set_limit_bytes).
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Store a copy of `bytes` (at most 4096) with a caller-chosen `tag`.
    ///
    /// Fails with [`Error::InvalidArgument`] if `bytes` is longer than a page,
    /// [`Error::PoolFull`] at the limit, [`Error::OutOfMemory`] if the provider
    /// refuses a page; a failed call changes nothing that was stored.
    pub fn store_object(&mut self, bytes: &[u8], tag: u8) -> Result<Handle, Error> {
        let class = class_for_len(bytes.len())
            .ok_or(Error::InvalidArgument("object longer than a page"))?;
        let key = self.take_handle_entry()?;
        let (zspage, slot) = match self.alloc_slot(class, true) {
            Ok(place) => place,
            Err(e) => {
                self.release_handle_entry(key);
                return Err(e);
            }
        };
        let offset = self.slot_offset(class, slot);
        self.write_at(zspage, offset, bytes);
        let len = bytes.len() as u16;
        let Some(entry) = self.handles.get_mut(SlabKey(key)) else {
            return Err(Error::InvalidHandle);
        };
        entry.zspage = zspage;
        entry.slot = slot;
        entry.len = len;
        entry.tag = tag;
        entry.live = true;
        let handle = Handle::new(key, entry.generation);
        self.objects += 1;
        self.object_bytes += bytes.len();
        Ok(handle)
    }

    /// The object's length, or [`Error::InvalidHandle`] for a freed, stale or
    /// unknown handle.
    pub fn object_len(&self, handle: Handle) -> Result<usize, Error> {
        Ok(self.entry(handle)?.len as usize)
    }

    /// Copy the object into `out`, returning its length and tag. Fails with
    /// [`Error::InvalidHandle`] for a freed, stale or unknown handle and with
    /// [`Error::WrongLength`] if `out` is shorter than the object.
    pub fn read_object(&self, handle: Handle, out: &mut [u8]) -> Result<(usize, u8), Error> {
        let entry = self.entry(handle)?;
        let len = entry.len as usize;
        let actual = out.len();
        let out = out.get_mut(..len).ok_or(Error::WrongLength {
            expected: len,
            actual,
        })?;
        let class = self.zspage(entry.zspage)?.class as usize;
        let offset = self.slot_offset(class, entry.slot);
        self.read_at(entry.zspage, offset, out);
        Ok((len, entry.tag))
    }

    /// The object's bytes and tag without a copy when they lie in one provider
    /// page; otherwise copied into `spill`. This is the load path's fast way in.
    pub fn view_object<'a>(
        &'a self,
        handle: Handle,
        spill: &'a mut [u8; MAX_OBJECT],
    ) -> Result<(&'a [u8], u8), Error> {
        let entry = self.entry(handle)?;
        let len = entry.len as usize;
        let zs = self.zspage(entry.zspage)?;
        let offset = self.slot_offset(zs.class as usize, entry.slot);
        let first = offset / PAGE_SIZE;
        let within = offset % PAGE_SIZE;
        if within + len <= PAGE_SIZE {
            let page = zs
                .pages
                .get(first)
                .copied()
                .flatten()
                .ok_or(Error::Corrupt)?;
            let bytes = self
                .page_bytes(page)
                .get(within..within + len)
                .ok_or(Error::Corrupt)?;
            return Ok((bytes, entry.tag));
        }
        let out = spill.get_mut(..len).ok_or(Error::Corrupt)?;
        self.read_at(entry.zspage, offset, out);
        Ok((out, entry.tag))
    }

    /// Where a live object's bytes lie, when they lie in one provider page
    /// (`None` when the object spans two: read it with [`read_object`]). The
    /// [`ObjectInPlace`] outlives this borrow of the store, so the bytes can be read
    /// after the caller has let go of the lock around it, under the contract of
    /// [`ObjectInPlace::bytes`].
    ///
    /// [`read_object`]: Self::read_object
    pub fn object_in_place(&self, handle: Handle) -> Result<Option<ObjectInPlace>, Error> {
        let entry = self.entry(handle)?;
        let len = entry.len as usize;
        let zs = self.zspage(entry.zspage)?;
        let offset = self.slot_offset(zs.class as usize, entry.slot);
        let within = offset % PAGE_SIZE;
        if within + len > PAGE_SIZE {
            return Ok(None);
        }
        let page = zs
            .pages
            .get(offset / PAGE_SIZE)
            .copied()
            .flatten()
            .ok_or(Error::Corrupt)?;
        // SAFETY: `within < PAGE_SIZE`: the pointer stays inside the page.
        let start = unsafe { page.as_ptr().cast::<u8>().add(within) };
        Ok(NonNull::new(start).map(|start| ObjectInPlace {
            start,
            len,
            tag: entry.tag,
        }))
    }

    /// Length and tag of a live object.
    pub fn object_info(&self, handle: Handle) -> Result<(usize, u8), Error> {
        let entry = self.entry(handle)?;
        Ok((entry.len as usize, entry.tag))
    }

    /// Free the object. [`Error::InvalidHandle`] if it is not live (already freed,
    /// stale, never issued); nothing changes then.
    pub fn free(&mut self, handle: Handle) -> Result<(), Error> {
        let entry = *self.entry(handle)?;
        self.free_slot(entry.zspage, entry.slot)?;
        self.objects -= 1;
        self.object_bytes -= entry.len as usize;
        self.release_handle_entry(handle.key());
        if self.objects == 0 {
            self.give_back_metadata();
        }
        Ok(())
    }

    /// With no object left, give the handle table and the zspage descriptors back
    /// (a store that held a million objects keeps nothing of it once empty). Fresh
    /// handle entries then start from a generation past every one issued before,
    /// so a stale handle still meets a different generation.
    fn give_back_metadata(&mut self) {
        if self.zspages.is_empty() {
            self.zspages.release_if_empty();
        }
        let mut newest = self.fresh_generation;
        self.handles
            .for_each(|_, entry| newest = newest.max(entry.generation));
        // INVARIANT: no object is live, so no handle entry is in use: dropping them
        // all and the free list with them loses nothing.
        self.handles.clear();
        self.free_handle = None;
        self.handle_high_water = 0;
        self.fresh_generation = newest.wrapping_add(1);
    }

    /// Live objects.
    pub fn len(&self) -> usize {
        self.objects
    }

    /// No live objects.
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }

    /// All bytes held from the provider: zspages and metadata pages.
    pub fn bytes_held(&self) -> usize {
        (self.zspage_pages + self.metadata_pages()) * PAGE_SIZE
    }

    fn metadata_pages(&self) -> usize {
        self.handles.pages_held() + self.zspages.pages_held() + 1
    }

    /// Totals.
    pub fn stats(&self) -> StoreStats {
        let zspage_bytes = self.zspage_pages * PAGE_SIZE;
        let fragmentation_permille = match zspage_bytes {
            0 => 0,
            total => (total - self.object_bytes.min(total)) * 1000 / total,
        };
        StoreStats {
            objects: self.objects,
            object_bytes: self.object_bytes,
            zspages: self.zspages.len(),
            zspage_pages: self.zspage_pages,
            metadata_pages: self.metadata_pages(),
            bytes_held: self.bytes_held(),
            fragmentation_permille,
        }
    }

    /// Occupancy of size class `class` (`0..CLASS_COUNT`), `None` past the end.
    pub fn class_occupancy(&self, class: usize) -> Option<ClassOccupancy> {
        let shape = class_shape(class)?;
        let state = self.class(class)?;
        Some(ClassOccupancy {
            shape,
            zspages: state.zspages as usize,
            objects: state.objects as usize,
        })
    }

    /// Move objects out of sparsely used zspages into fuller ones of the same class
    /// and free the emptied zspages; then give back the trailing pages of partial
    /// zspages in which no object lives any more. Every handle stays valid and
    /// reads the same bytes. Needs no memory: objects only move into slots already
    /// held.
    ///
    /// Cost: one pass over the partial zspages of each class (quadratic in their
    /// number per class), up to two passes over all handle entries, and one copy per moved
    /// object. Background work (the backend's scanner), not for the store path.
    pub fn compact(&mut self) -> CompactStats {
        let mut stats = CompactStats::default();
        let mut any = false;
        for class in 0..CLASS_COUNT {
            any |= self.pick_evacuees(class);
        }
        if any {
            self.evacuate(&mut stats);
        }
        self.trim_tails(&mut stats);
        stats
    }

    /// Move every object of the zspages marked evacuating into kept zspages.
    fn evacuate(&mut self, stats: &mut CompactStats) {
        for key in 0..self.handle_high_water {
            let Some(entry) = self.handles.get(SlabKey(key)).copied() else {
                continue;
            };
            if !entry.live || !self.is_evacuating(entry.zspage) {
                continue;
            }
            match self.move_object(key, entry) {
                Ok(freed) => {
                    stats.objects_moved += 1;
                    if let Some(pages) = freed {
                        stats.zspages_freed += 1;
                        stats.pages_freed += pages;
                    }
                }
                Err(_) => break,
            }
        }
        self.return_unfinished_evacuees();
    }

    /// Give back the trailing pages of partial zspages that hold no live object.
    ///
    /// A zspage takes pages as its bump index reaches into them and keeps them
    /// while any object lives in it; when objects all over it are freed (the
    /// scanner re-encodes every cold page: the old object goes, the new one lands
    /// in another class), its later pages can hold nothing live. Those pages are
    /// freed: the slots in them leave the free list, and the bump index moves back
    /// to the first slot not wholly in a kept page, so a later allocation takes
    /// the pages again as it reaches them. One pass over the handle entries finds
    /// each candidate's highest live slot; nothing is copied.
    fn trim_tails(&mut self, stats: &mut CompactStats) {
        // Candidates: partial zspages holding more pages than their objects need
        // even if packed. `top_live` is set to 0 (nothing seen) on them only.
        let mut candidates = false;
        self.for_each_partial(|store, key, shape| {
            if let Ok(zs) = store.zspage_mut(key)
                && usize::from(zs.allocated) > pages_for_slots(zs.used, shape)
            {
                zs.top_live = 0;
                candidates = true;
            }
        });
        if !candidates {
            return;
        }
        if self.note_top_live() {
            // Objects moved down: find the highest live slots again.
            self.for_each_partial(|store, key, _| {
                if let Ok(zs) = store.zspage_mut(key)
                    && zs.top_live != NO_SLOT
                {
                    zs.top_live = 0;
                }
            });
            self.pack_tails(stats);
            self.note_top_live();
        }
        self.for_each_partial(|store, key, shape| {
            let Ok(zs) = store.zspage_mut(key) else {
                return;
            };
            let top_live = core::mem::replace(&mut zs.top_live, NO_SLOT);
            // A zspage whose free list is not what its counts say is left as it
            // is (and its pages kept): trimming needs a sound list.
            if top_live != NO_SLOT
                && let Ok(pages) = store.trim_tail(key, top_live, shape)
                && pages > 0
            {
                stats.tails_trimmed += 1;
                stats.pages_freed += pages;
            }
        });
    }

    /// Raise each candidate's `top_live` to one past its highest live slot (one
    /// walk of the handle entries). True if some candidate's live objects reach
    /// into pages its objects would not need if packed, in a class
    /// [`pack_tails`](Self::pack_tails) packs.
    fn note_top_live(&mut self) -> bool {
        for key in 0..self.handle_high_water {
            let Some(entry) = self.handles.get(SlabKey(key)).copied() else {
                continue;
            };
            if !entry.live {
                continue;
            }
            if let Ok(zs) = self.zspage_mut(entry.zspage)
                && zs.top_live != NO_SLOT
            {
                zs.top_live = zs.top_live.max(entry.slot + 1);
            }
        }
        let mut packable = false;
        self.for_each_partial(|store, key, shape| {
            if let Ok(zs) = store.zspage(key)
                && zs.top_live != NO_SLOT
                && pack_target(zs, shape).is_some_and(|target| zs.top_live > target)
            {
                packable = true;
            }
        });
        packable
    }

    /// Move objects of candidate zspages that live past the slots their objects
    /// need if packed into free slots below, within the zspage, so that
    /// [`trim_tail`](Self::trim_tail) can give back more pages. Only classes of at
    /// most [`PACK_MAX_OBJECTS`] slots per zspage: each move walks the free list.
    fn pack_tails(&mut self, stats: &mut CompactStats) {
        for key in 0..self.handle_high_water {
            let Some(entry) = self.handles.get(SlabKey(key)).copied() else {
                continue;
            };
            let Ok(zs) = self.zspage(entry.zspage) else {
                continue;
            };
            if !entry.live || zs.top_live == NO_SLOT {
                continue;
            }
            let Ok(shape) = Self::shape(usize::from(zs.class)) else {
                continue;
            };
            if let Some(target) = pack_target(zs, shape)
                && entry.slot >= target
                && self.move_down(key, entry, target, shape).is_ok()
            {
                stats.objects_moved += 1;
            }
        }
    }

    /// Move the object of handle entry `key` (in zspage `entry.zspage`, at a slot
    /// at or past `target`) into a free slot of the same zspage below `target`.
    /// [`Error::Corrupt`], changing nothing, if the free list has none there.
    fn move_down(
        &mut self,
        key: u32,
        entry: HandleEntry,
        target: u16,
        shape: ClassShape,
    ) -> Result<(), Error> {
        let zspage = entry.zspage;
        let zs = self.zspage(zspage)?;
        // The first free slot below `target`, and the one before it in the list.
        let (mut before, mut slot, mut steps) = (NO_SLOT, zs.free_head, 0);
        while slot != NO_SLOT && slot >= target {
            steps += 1;
            if steps > shape.objects_per_zspage {
                return Err(Error::Corrupt);
            }
            before = slot;
            slot = self.free_link(zspage, slot, shape);
        }
        if slot == NO_SLOT {
            return Err(Error::Corrupt);
        }
        let after = self.free_link(zspage, slot, shape);
        if before == NO_SLOT {
            self.zspage_mut(zspage)?.free_head = after;
        } else {
            self.set_free_link(zspage, before, after, shape);
        }
        let size = usize::from(shape.slot_size);
        self.copy_between(
            (zspage, usize::from(entry.slot) * size),
            (zspage, usize::from(slot) * size),
            usize::from(entry.len),
        );
        if let Some(moved) = self.handles.get_mut(SlabKey(key)) {
            moved.slot = slot;
        }
        // The old slot goes on the free list (past `target`: the trim drops it).
        let head = self.zspage(zspage)?.free_head;
        self.set_free_link(zspage, entry.slot, head, shape);
        self.zspage_mut(zspage)?.free_head = entry.slot;
        Ok(())
    }

    /// Call `visit(store, key, shape)` for every partial zspage, class by class.
    /// `visit` may change the zspage, not the lists.
    fn for_each_partial(&mut self, mut visit: impl FnMut(&mut Self, u32, ClassShape)) {
        for class in 0..CLASS_COUNT {
            let Ok(shape) = Self::shape(class) else {
                continue;
            };
            let mut link = self.class(class).and_then(|state| state.partial);
            while let Some(key) = link.map(|l| l.key().0) {
                let Ok(zs) = self.zspage(key) else { break };
                link = zs.next;
                visit(self, key, shape);
            }
        }
    }

    /// Free the pages of zspage `key` past those that slots below `top_live` reach
    /// into; returns how many. Fails with [`Error::Corrupt`], changing nothing,
    /// if its free list is not `fresh - used` slots below `fresh`.
    fn trim_tail(&mut self, key: u32, top_live: u16, shape: ClassShape) -> Result<usize, Error> {
        let zs = self.zspage(key)?;
        let keep_pages = pages_for_slots(top_live, shape);
        let allocated = usize::from(zs.allocated);
        if keep_pages >= allocated {
            return Ok(0);
        }
        // Slots wholly inside the kept pages; every live slot is below `top_live`,
        // which is at most this.
        let kept_slots = (keep_pages * PAGE_SIZE / usize::from(shape.slot_size)) as u16;
        let new_fresh = zs.fresh.min(kept_slots);
        // Check the free list before changing anything.
        let free_len = zs.fresh.checked_sub(zs.used).ok_or(Error::Corrupt)?;
        let (mut slot, mut seen) = (zs.free_head, 0u16);
        while slot != NO_SLOT {
            if slot >= zs.fresh || seen >= free_len {
                return Err(Error::Corrupt);
            }
            seen += 1;
            slot = self.free_link(key, slot, shape);
        }
        if seen != free_len {
            return Err(Error::Corrupt);
        }
        // Relink the free slots below `new_fresh`, in their order.
        let (mut slot, mut head, mut tail) = (zs.free_head, NO_SLOT, NO_SLOT);
        while slot != NO_SLOT {
            let next = self.free_link(key, slot, shape);
            if slot < new_fresh {
                if tail == NO_SLOT {
                    head = slot;
                } else {
                    self.set_free_link(key, tail, slot, shape);
                }
                tail = slot;
            }
            slot = next;
        }
        if tail != NO_SLOT {
            self.set_free_link(key, tail, NO_SLOT, shape);
        }
        let zs = self.zspage_mut(key)?;
        zs.free_head = head;
        zs.fresh = new_fresh;
        zs.allocated = keep_pages as u8;
        let mut gone = [None; MAX_ZSPAGE_PAGES];
        for (page, slot) in zs.pages[keep_pages..allocated]
            .iter_mut()
            .zip(gone.iter_mut())
        {
            *slot = page.take();
        }
        let freed = self.give_back_pages(&gone);
        self.zspage_pages -= freed;
        Ok(freed)
    }

    /// The next free slot after free `slot` of zspage `key` (its link).
    fn free_link(&self, key: u32, slot: u16, shape: ClassShape) -> u16 {
        let mut link = [0u8; 2];
        self.read_at(key, slot as usize * shape.slot_size as usize, &mut link);
        u16::from_ne_bytes(link)
    }

    /// Make `next` the free slot after free `slot` of zspage `key`.
    fn set_free_link(&mut self, key: u32, slot: u16, next: u16, shape: ClassShape) {
        self.write_at(
            key,
            slot as usize * shape.slot_size as usize,
            &next.to_ne_bytes(),
        );
    }

    // ----- handle entries -----

    fn entry(&self, handle: Handle) -> Result<&HandleEntry, Error> {
        match self.handles.get(SlabKey(handle.key())) {
            Some(entry) if entry.live && entry.generation == handle.generation() => Ok(entry),
            _ => Err(Error::InvalidHandle),
        }
    }

    fn take_handle_entry(&mut self) -> Result<u32, Error> {
        if let Some(head) = self.free_handle {
            let key = head.key();
            let entry = self.handles.get(key).ok_or(Error::InvalidHandle)?;
            self.free_handle = SlabLink::from_raw(entry.zspage);
            return Ok(key.0);
        }
        let key = self.handles.insert(HandleEntry {
            zspage: 0,
            slot: 0,
            len: 0,
            generation: self.fresh_generation,
            tag: 0,
            live: false,
        })?;
        self.handle_high_water = self.handle_high_water.max(key.0 + 1);
        Ok(key.0)
    }

    /// Put entry `key` on the free list, retiring its current generation.
    fn release_handle_entry(&mut self, key: u32) {
        let next = self.free_handle;
        if let Some(entry) = self.handles.get_mut(SlabKey(key)) {
            if entry.live {
                entry.generation = entry.generation.wrapping_add(1);
            }
            entry.live = false;
            entry.zspage = SlabLink::raw(next);
            self.free_handle = SlabLink::to(SlabKey(key));
        }
    }

    // ----- classes and zspage lists -----

    fn class(&self, class: usize) -> Option<&ClassState> {
        if class >= CLASS_COUNT {
            return None;
        }
        // SAFETY: the class page holds CLASS_COUNT initialised entries (see `new`),
        // owned by the store; the borrow is tied to `&self`.
        Some(unsafe { &*self.classes.as_ptr().cast::<ClassState>().add(class) })
    }

    fn class_mut(&mut self, class: usize) -> Option<&mut ClassState> {
        if class >= CLASS_COUNT {
            return None;
        }
        // SAFETY: as in `class`; `&mut self` makes the borrow unique.
        Some(unsafe { &mut *self.classes.as_ptr().cast::<ClassState>().add(class) })
    }

    fn zspage(&self, key: u32) -> Result<&ZsPage, Error> {
        self.zspages.get(SlabKey(key)).ok_or(Error::Corrupt)
    }

    fn zspage_mut(&mut self, key: u32) -> Result<&mut ZsPage, Error> {
        self.zspages.get_mut(SlabKey(key)).ok_or(Error::Corrupt)
    }

    fn is_evacuating(&self, key: u32) -> bool {
        self.zspage(key)
            .is_ok_and(|zs| zs.list == ZsList::Evacuating)
    }

    fn list_head(&mut self, class: usize, list: ZsList) -> Option<&mut Option<SlabLink>> {
        let state = self.class_mut(class)?;
        match list {
            ZsList::Partial => Some(&mut state.partial),
            ZsList::Full => Some(&mut state.full),
            ZsList::Evacuating => Some(&mut state.evacuating),
        }
    }

    /// Put zspage `key` at the front of `list` of its class.
    fn link(&mut self, key: u32, list: ZsList) -> Result<(), Error> {
        let class = self.zspage(key)?.class as usize;
        let this = SlabLink::to(SlabKey(key));
        let old_head = match self.list_head(class, list) {
            Some(head) => core::mem::replace(head, this),
            None => None,
        };
        if let Some(old_head) = old_head {
            self.zspage_mut(old_head.key().0)?.prev = this;
        }
        let zs = self.zspage_mut(key)?;
        zs.list = list;
        zs.prev = None;
        zs.next = old_head;
        Ok(())
    }

    /// Take zspage `key` off whatever list it is on.
    fn unlink(&mut self, key: u32) -> Result<(), Error> {
        let zs = self.zspage(key)?;
        let (prev, next, list, class) = (zs.prev, zs.next, zs.list, zs.class as usize);
        if let Some(prev) = prev {
            self.zspage_mut(prev.key().0)?.next = next;
        } else if let Some(head) = self.list_head(class, list) {
            *head = next;
        }
        if let Some(next) = next {
            self.zspage_mut(next.key().0)?.prev = prev;
        }
        let zs = self.zspage_mut(key)?;
        zs.prev = None;
        zs.next = None;
        Ok(())
    }

    fn move_to(&mut self, key: u32, list: ZsList) -> Result<(), Error> {
        self.unlink(key)?;
        self.link(key, list)
    }

    // ----- slots -----

    fn shape(class: usize) -> Result<ClassShape, Error> {
        class_shape(class).ok_or(Error::Corrupt)
    }

    fn slot_offset(&self, class: usize, slot: u16) -> usize {
        class_shape(class).map_or(0, |shape| slot as usize * shape.slot_size as usize)
    }

    /// A free slot of `class`. Normally from the first partial zspage, else from a
    /// new zspage; during compaction (`may_grow` false) only from a slot in pages
    /// already held, so compaction never allocates.
    fn alloc_slot(&mut self, class: usize, may_grow: bool) -> Result<(u32, u16), Error> {
        let shape = Self::shape(class)?;
        let head = self.class(class).ok_or(Error::Corrupt)?.partial;
        let key = if !may_grow {
            self.partial_with_room(class, shape)
                .ok_or(Error::PoolFull)?
        } else if let Some(head) = head {
            head.key().0
        } else {
            self.new_zspage(class)?
        };
        let (key, slot) = match self.pop_slot(key, shape, may_grow) {
            Ok(slot) => (key, slot),
            Err(e) => {
                // A zspage made for this object and left empty goes back at once.
                if self.zspage(key)?.used == 0 {
                    self.release_zspage(key)?;
                }
                // The head needed a page the limit (or the provider) refused: another
                // partial zspage may still have a free slot in pages it holds. (With
                // zspages linked at the head, only a class's newest zspage can lack
                // pages, and it is created when no other is partial, so this finds
                // nothing today; it keeps a store from failing while room is held
                // if the list order ever changes.)
                match (e, self.partial_with_room(class, shape)) {
                    (Error::PoolFull | Error::OutOfMemory, Some(other)) if may_grow => {
                        (other, self.pop_slot(other, shape, false)?)
                    }
                    _ => return Err(e),
                }
            }
        };
        let zs = self.zspage_mut(key)?;
        zs.used += 1;
        let full = zs.used >= shape.objects_per_zspage;
        if full {
            self.move_to(key, ZsList::Full)?;
        }
        if let Some(state) = self.class_mut(class) {
            state.objects += 1;
        }
        Ok((key, slot))
    }

    /// A partial zspage of `class` with a free slot in pages it already holds.
    fn partial_with_room(&self, class: usize, shape: ClassShape) -> Option<u32> {
        let mut link = self.class(class)?.partial;
        while let Some(key) = link.map(|l| l.key().0) {
            let zs = self.zspage(key).ok()?;
            if zs.free_head != NO_SLOT || zs.fresh < held_slots(zs, shape) {
                return Some(key);
            }
            link = zs.next;
        }
        None
    }

    /// Take a slot from the zspage's free list, else the next never-used slot,
    /// adding the provider pages it reaches into (if `may_grow`).
    fn pop_slot(&mut self, key: u32, shape: ClassShape, may_grow: bool) -> Result<u16, Error> {
        let zs = self.zspage(key)?;
        if zs.free_head != NO_SLOT {
            let slot = zs.free_head;
            self.zspage_mut(key)?.free_head = self.free_link(key, slot, shape);
            return Ok(slot);
        }
        let slot = zs.fresh;
        if slot >= shape.objects_per_zspage {
            return Err(Error::Corrupt);
        }
        let end = (slot as usize + 1) * shape.slot_size as usize;
        while (self.zspage(key)?.allocated as usize) * PAGE_SIZE < end {
            if !may_grow {
                return Err(Error::PoolFull);
            }
            self.add_page(key)?;
        }
        self.zspage_mut(key)?.fresh += 1;
        Ok(slot)
    }

    /// Give zspage `key` its next provider page, within the byte limit.
    fn add_page(&mut self, key: u32) -> Result<(), Error> {
        if self.bytes_held().saturating_add(PAGE_SIZE) > self.limit_bytes {
            return Err(Error::PoolFull);
        }
        let index = self.zspage(key)?.allocated as usize;
        if index >= MAX_ZSPAGE_PAGES {
            return Err(Error::Corrupt);
        }
        let page = self.provider.alloc_page()?;
        let zs = self.zspage_mut(key)?;
        if let Some(entry) = zs.pages.get_mut(index) {
            *entry = Some(page);
            zs.allocated += 1;
        }
        self.zspage_pages += 1;
        Ok(())
    }

    /// Free `slot` of zspage `key`; frees the zspage when it empties. Returns the
    /// provider pages given back (0 if the zspage stays).
    fn free_slot(&mut self, key: u32, slot: u16) -> Result<usize, Error> {
        let zs = self.zspage(key)?;
        let class = zs.class as usize;
        let shape = Self::shape(class)?;
        let was_full = zs.list == ZsList::Full;
        let free_head = zs.free_head;
        let used = zs.used.checked_sub(1).ok_or(Error::Corrupt)?;
        if let Some(state) = self.class_mut(class) {
            state.objects = state.objects.saturating_sub(1);
        }
        if used == 0 {
            return self.release_zspage(key);
        }
        self.set_free_link(key, slot, free_head, shape);
        let zs = self.zspage_mut(key)?;
        zs.used = used;
        zs.free_head = slot;
        if was_full {
            self.move_to(key, ZsList::Partial)?;
        }
        Ok(0)
    }

    /// An empty zspage of `class`, holding no pages yet, on the partial list.
    fn new_zspage(&mut self, class: usize) -> Result<u32, Error> {
        let key = self.zspages.insert(ZsPage {
            pages: [None; MAX_ZSPAGE_PAGES],
            prev: None,
            next: None,
            class: class as u16,
            used: 0,
            fresh: 0,
            free_head: NO_SLOT,
            allocated: 0,
            list: ZsList::Partial,
            top_live: NO_SLOT,
        })?;
        if let Some(state) = self.class_mut(class) {
            state.zspages += 1;
        }
        self.link(key.0, ZsList::Partial)?;
        Ok(key.0)
    }

    fn release_zspage(&mut self, key: u32) -> Result<usize, Error> {
        self.unlink(key)?;
        let zs = self.zspages.remove(SlabKey(key)).ok_or(Error::Corrupt)?;
        let pages = self.give_back_pages(&zs.pages);
        self.zspage_pages -= pages;
        if let Some(state) = self.class_mut(zs.class as usize) {
            state.zspages = state.zspages.saturating_sub(1);
        }
        Ok(pages)
    }

    fn give_back_pages(&self, pages: &[Option<NonNull<Page>>]) -> usize {
        let mut count = 0;
        for page in pages.iter().flatten() {
            // SAFETY: every page in a zspage came from `self.provider` and is
            // referenced only by that zspage, which is being discarded.
            unsafe { self.provider.free_page(*page) };
            count += 1;
        }
        count
    }

    // ----- bytes inside a zspage -----

    fn page_bytes(&self, page: NonNull<Page>) -> &[u8; PAGE_SIZE] {
        // SAFETY: called only on pages of the store's zspages, which stay valid
        // while the store lives; writers need `&mut self`, so none runs while this
        // borrow (tied to `&self`) is alive (and they write only through raw
        // pointers into free slots, so no `&mut` ever covers a page's live bytes,
        // which readers outside the store may hold: `ObjectInPlace`).
        unsafe { (*page.as_ptr()).as_bytes() }
    }

    /// The page of zspage `key` holding byte `offset`, and the offset within it.
    fn page_at(&self, key: u32, offset: usize) -> Option<(NonNull<Page>, usize)> {
        let zs = self.zspages.get(SlabKey(key))?;
        let page = zs.pages.get(offset / PAGE_SIZE).copied().flatten()?;
        Some((page, offset % PAGE_SIZE))
    }

    fn read_at(&self, key: u32, mut offset: usize, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let Some((page, within)) = self.page_at(key, offset) else {
                return;
            };
            let take = (PAGE_SIZE - within).min(out.len() - done);
            if let (Some(dst), Some(src)) = (
                out.get_mut(done..done + take),
                self.page_bytes(page).get(within..within + take),
            ) {
                dst.copy_from_slice(src);
            }
            done += take;
            offset += take;
        }
    }

    fn write_at(&mut self, key: u32, mut offset: usize, src: &[u8]) {
        let mut done = 0;
        while done < src.len() {
            let Some((page, within)) = self.page_at(key, offset) else {
                return;
            };
            let take = (PAGE_SIZE - within).min(src.len() - done);
            if let Some(src) = src.get(done..done + take) {
                // SAFETY: `within + take <= PAGE_SIZE`, so the range lies in the page,
                // one of our zspages'. It is written through a raw pointer and no
                // wider reference: bytes of live objects elsewhere in the page may
                // be borrowed by readers outside the store (`object_in_place`), and
                // this range, a free slot, is not one of them.
                unsafe {
                    let dst = page.as_ptr().cast::<u8>().add(within);
                    core::ptr::copy_nonoverlapping(src.as_ptr(), dst, take);
                }
            }
            done += take;
            offset += take;
        }
    }

    /// Copy `len` bytes between two different zspages, page piece by page piece.
    fn copy_between(&mut self, from: (u32, usize), to: (u32, usize), len: usize) {
        let mut done = 0;
        while done < len {
            let (Some((src_page, src_in)), Some((dst_page, dst_in))) = (
                self.page_at(from.0, from.1 + done),
                self.page_at(to.0, to.1 + done),
            ) else {
                return;
            };
            let take = (PAGE_SIZE - src_in).min(PAGE_SIZE - dst_in).min(len - done);
            // SAFETY: both ranges lie in their pages (`take` fits both) and in
            // two different slots: of two zspages, which never share a page, or
            // two slots of one zspage, whose byte ranges `[slot * size, (slot + 1)
            // * size)` are disjoint; so they do not overlap. Raw pointers only, as
            // in `write_at`: the destination is a free slot, and the source is
            // read, not borrowed past this copy.
            unsafe {
                let src = src_page.as_ptr().cast::<u8>().add(src_in);
                let dst = dst_page.as_ptr().cast::<u8>().add(dst_in);
                core::ptr::copy_nonoverlapping(src, dst, take);
            }
            done += take;
        }
    }

    // ----- compaction -----

    /// Choose the sparsest partial zspages of `class` whose objects fit in the
    /// free slots (in pages already held) of the others, and move them to the
    /// class's evacuating list. True if any.
    fn pick_evacuees(&mut self, class: usize) -> bool {
        let Ok(shape) = Self::shape(class) else {
            return false;
        };
        // Room: free slots in held pages of every zspage not (yet) picked.
        let mut room = self.free_held_slots(class, shape);
        let mut picked = false;
        while let Some((key, held)) = self.sparsest_partial(class, shape) {
            // Picking a zspage takes its free slots out of the room and needs room
            // for its objects: `held` slots in all.
            if room < held {
                break;
            }
            room -= held;
            if self.move_to(key, ZsList::Evacuating).is_err() {
                break;
            }
            picked = true;
        }
        picked
    }

    fn free_held_slots(&self, class: usize, shape: ClassShape) -> usize {
        let mut room = 0;
        let mut link = self.class(class).and_then(|state| state.partial);
        while let Some(Ok(zs)) = link.map(|l| self.zspage(l.key().0)) {
            room += held_slots(zs, shape).saturating_sub(zs.used) as usize;
            link = zs.next;
        }
        room
    }

    /// The partial zspage with the fewest objects, and its slots in held pages.
    fn sparsest_partial(&self, class: usize, shape: ClassShape) -> Option<(u32, usize)> {
        let mut link = self.class(class)?.partial;
        let mut best: Option<(u32, u16, usize)> = None;
        while let Some(key) = link.map(|l| l.key().0) {
            let Ok(zs) = self.zspage(key) else { break };
            if best.is_none_or(|(_, used, _)| zs.used < used) {
                best = Some((key, zs.used, held_slots(zs, shape) as usize));
            }
            link = zs.next;
        }
        best.map(|(key, _, held)| (key, held))
    }

    /// Move one object of an evacuating zspage into a slot of a kept zspage.
    /// Returns the pages freed if its old zspage emptied.
    fn move_object(&mut self, key: u32, entry: HandleEntry) -> Result<Option<usize>, Error> {
        let class = self.zspage(entry.zspage)?.class as usize;
        let (to, slot) = self.alloc_slot(class, false)?;
        let from_offset = self.slot_offset(class, entry.slot);
        let to_offset = self.slot_offset(class, slot);
        self.copy_between(
            (entry.zspage, from_offset),
            (to, to_offset),
            entry.len as usize,
        );
        if let Some(moved) = self.handles.get_mut(SlabKey(key)) {
            moved.zspage = to;
            moved.slot = slot;
        }
        let freed = self.free_slot(entry.zspage, entry.slot)?;
        Ok((freed > 0).then_some(freed))
    }

    /// Put zspages still marked evacuating (a move failed) back on their lists.
    fn return_unfinished_evacuees(&mut self) {
        for class in 0..CLASS_COUNT {
            let per = class_shape(class).map_or(0, |shape| shape.objects_per_zspage);
            while let Some(key) = self
                .class(class)
                .and_then(|state| state.evacuating)
                .map(|l| l.key().0)
            {
                let full = self.zspage(key).is_ok_and(|zs| zs.used >= per);
                let list = if full { ZsList::Full } else { ZsList::Partial };
                if self.move_to(key, list).is_err() {
                    break;
                }
            }
        }
    }
}

impl<P: PageProvider + Clone> Drop for ObjectStore<P> {
    fn drop(&mut self) {
        for class in 0..CLASS_COUNT {
            for list in [ZsList::Partial, ZsList::Full, ZsList::Evacuating] {
                while let Some(key) = self
                    .list_head(class, list)
                    .and_then(|head| *head)
                    .map(|l| l.key().0)
                {
                    if self.release_zspage(key).is_err() {
                        break;
                    }
                }
            }
        }
        // SAFETY: the class page came from our provider in `new` and is not used
        // after this.
        unsafe { self.provider.free_page(self.classes) };
    }
}

/// Classes with at most this many slots per zspage have their tails packed
/// ([`ObjectStore::pack_tails`]): objects of 512 bytes and more.
const PACK_MAX_OBJECTS: u16 = 128;

/// The slots `zs`'s objects fit in when packed (those wholly in the pages they
/// need), if its class is one whose tails are packed.
fn pack_target(zs: &ZsPage, shape: ClassShape) -> Option<u16> {
    if shape.objects_per_zspage > PACK_MAX_OBJECTS {
        return None;
    }
    let pages = pages_for_slots(zs.used, shape);
    Some(
        (pages * PAGE_SIZE / usize::from(shape.slot_size))
            .min(usize::from(shape.objects_per_zspage)) as u16,
    )
}

/// Pages a zspage of `shape` needs to hold its first `slots` slots.
fn pages_for_slots(slots: u16, shape: ClassShape) -> usize {
    (usize::from(slots) * usize::from(shape.slot_size)).div_ceil(PAGE_SIZE)
}

/// Slots of `zs` that lie wholly in the pages it holds.
fn held_slots(zs: &ZsPage, shape: ClassShape) -> u16 {
    let in_pages = zs.allocated as usize * PAGE_SIZE / shape.slot_size.max(1) as usize;
    in_pages.min(shape.objects_per_zspage as usize) as u16
}
