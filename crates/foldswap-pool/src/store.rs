//! The object store: zsmalloc-like packing of variable-size objects into zspages.
//!
//! ```text
//!   Place { zspage, slot, len }  ── kept by the caller (8 bytes, in its own record)
//!        │
//!        ▼
//!   zspage descriptor (Slab): class, live-slot bitmap, list links, its first page
//!        │
//!        ▼
//!   [ page 0 ][ page 1 ][ page 2 ]      a header (the addresses of pages 1..),
//!   |h|s0 |s1 |s2 |s3 |s4 |s5 |s6 |...  then slots of one size, back to back;
//!                                       a slot may span two pages
//! ```
//!
//! The descriptor names only the zspage's first page; the first page's header
//! holds the others' addresses (`ClassShape::header_bytes`: 8 bytes for each
//! page past the first, none for a zspage of one page), as zsmalloc chains a
//! zspage's pages through their `struct page`s. A descriptor that held all
//! sixteen addresses took 176 bytes for zspages of three pages on average: a
//! quarter of the backend's metadata on the dev corpus.
//!
//! There is no handle table: the caller keeps each object's [`Place`] in its own
//! record (the backend in its content entry, as zswap keeps zsmalloc's handle in
//! its `zswap_entry`), so an object costs the store no metadata of its own. The
//! price is that [`ObjectStore::compact`], which moves objects, needs the caller's
//! places: it walks them through [`PlaceOwners`] and rewrites those it moves.
//!
//! A zspage marks its live slots in a bitmap (a zspage has at most
//! [`MAX_OBJECTS_PER_ZSPAGE`] slots). Allocation takes the lowest free slot and
//! adds provider pages as slots reach into them, so a zspage's objects gather at
//! its front, its later pages are taken only when needed, and a new zspage is not
//! touched before it is written. A place that names no live object (freed, never
//! issued, of another class than its zspage) is refused with
//! [`Error::InvalidHandle`]; what the store cannot tell is a place whose slot was
//! freed and given to a new object of the same class, so a caller's record must
//! not outlive its object (the backend's entry generations see to that).
//!
//! Per class, zspages with a free slot are on a `partial` list (allocation takes
//! the first), full ones on a `full` list. A zspage that becomes empty is freed at
//! once.

use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider, Slab, SlabKey, SlabLink};

use crate::class::{
    CLASS_COUNT, ClassShape, MAX_OBJECT, MAX_OBJECTS_PER_ZSPAGE, MAX_ZSPAGE_PAGES, class_for_len,
    class_shape,
};

#[cfg(feature = "testing")]
mod testing;

/// Words of a zspage's live-slot bitmap.
const LIVE_WORDS: usize = MAX_OBJECTS_PER_ZSPAGE.div_ceil(64);

/// A zspage's header entry: the address of one of its pages past the first.
type HeaderEntry = Option<NonNull<Page>>;

// A header entry is one address, as the class shapes reserve for it, and a
// page's start is aligned for it.
const _: () = assert!(core::mem::size_of::<HeaderEntry>() == crate::class::PAGE_ADDRESS_BYTES);
const _: () = assert!(core::mem::align_of::<HeaderEntry>() <= PAGE_SIZE);
const _: () = assert!(crate::class::header_bytes(MAX_ZSPAGE_PAGES) <= PAGE_SIZE);

const _: () = assert!(MAX_OBJECTS_PER_ZSPAGE <= u16::MAX as usize);

/// Where a stored object lies: its zspage, its slot there, and its length. The
/// caller keeps it (8 bytes) and gives it back to read or free the object;
/// [`ObjectStore::compact`] rewrites it, through [`PlaceOwners`], when the
/// object moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    zspage: u32,
    slot: u16,
    len: u16,
}

impl Place {
    /// The object's length in bytes.
    pub fn len(self) -> usize {
        usize::from(self.len)
    }

    /// Whether the object is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The place as its three parts (zspage key, slot, length), for a host that
    /// packs them into its own record (see [`from_parts`](Self::from_parts)).
    pub fn to_parts(self) -> (u32, u16, u16) {
        (self.zspage, self.slot, self.len)
    }

    /// A place from [`to_parts`](Self::to_parts). Whether it names a live
    /// object, the store checks on use (see the module's documentation).
    pub fn from_parts(zspage: u32, slot: u16, len: u16) -> Place {
        Place { zspage, slot, len }
    }
}

/// Whoever keeps the places of a store's objects. [`ObjectStore::compact`] moves
/// objects from sparse zspages into fuller ones and rewrites the places it is
/// shown.
pub trait PlaceOwners {
    /// Call `visit` once with every place of a live object of the store, writable:
    /// `visit` rewrites it when it moves the object. A live object left out stays
    /// where it is (and keeps its zspage); a place of no live object is skipped.
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place));
}

/// Places in a slice: every one names a live object.
impl PlaceOwners for [Place] {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        self.iter_mut().for_each(visit);
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

/// Which list a zspage is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZsList {
    Partial,
    Full,
    /// Chosen by compaction to be emptied; allocation never takes from it.
    Evacuating,
}

/// One zspage: a few provider pages holding slots of one class.
///
/// # Invariants
///
/// `live` has bit `s` set exactly for the slots holding an object, `used` of
/// them, all below the class's `objects_per_zspage` and wholly inside the first
/// `allocated` pages, which are the ones held: `first` (when `allocated > 0`)
/// and, for page `i` in `1..allocated`, the address in entry `i - 1` of
/// `first`'s header; the header's entries from `allocated - 1` on are `None`.
struct ZsPage {
    first: Option<NonNull<Page>>,
    live: [u64; LIVE_WORDS],
    prev: Option<SlabLink>,
    next: Option<SlabLink>,
    class: u16,
    used: u16,
    /// Provider pages held so far: pages are added as slots reach into them.
    allocated: u8,
    list: ZsList,
}

// The descriptor stays small: its first page's address, not all of them.
const _: () = assert!(core::mem::size_of::<ZsPage>() <= 64);

impl ZsPage {
    /// Page `index` of the zspage, if held.
    fn page(&self, index: usize) -> Option<NonNull<Page>> {
        let first = self.first?;
        match index {
            0 => Some(first),
            // SAFETY: `first` is held (the invariant: `allocated > 0`) and
            // `index < allocated <= pages per zspage`.
            index if index < usize::from(self.allocated) => unsafe {
                header_entry(first, index).read()
            },
            _ => None,
        }
    }

    fn is_live(&self, slot: u16) -> bool {
        let slot = usize::from(slot);
        self.live
            .get(slot / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    fn set_live(&mut self, slot: u16, on: bool) {
        let slot = usize::from(slot);
        if let Some(word) = self.live.get_mut(slot / 64) {
            if on {
                *word |= 1 << (slot % 64);
            } else {
                *word &= !(1 << (slot % 64));
            }
        }
    }

    /// The lowest free slot of a zspage of `shape`, if any.
    fn lowest_free(&self, shape: ClassShape) -> Option<u16> {
        let (index, word) = self
            .live
            .iter()
            .enumerate()
            .find(|(_, word)| **word != u64::MAX)?;
        let slot = index * 64 + word.trailing_ones() as usize;
        (slot < usize::from(shape.objects_per_zspage)).then_some(slot as u16)
    }

    /// One past the highest live slot (0 when none is live).
    fn top_live(&self) -> u16 {
        self.live
            .iter()
            .enumerate()
            .rev()
            .find(|(_, word)| **word != 0)
            .map_or(0, |(index, word)| {
                (index * 64 + 64 - word.leading_zeros() as usize) as u16
            })
    }
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
    /// Provider pages of metadata (zspage descriptors, class table).
    pub metadata_pages: usize,
    /// Bytes of the zspages' headers (the addresses of their pages past the
    /// first), inside `zspage_pages`: metadata too, kept in the zspages.
    pub header_bytes: usize,
    /// All bytes held from the provider: `(zspage_pages + metadata_pages) * 4096`.
    pub bytes_held: usize,
    /// Share of zspage bytes not holding object bytes, in thousandths.
    pub fragmentation_permille: usize,
}

/// A zsmalloc-like store of objects up to one page long, in pages from `P`.
///
/// Not internally synchronised: `&mut self` to change it; wrap it in a lock (or
/// shard it) to share. `P` is cloned for the store's slab, so pass a cheap handle
/// (`&provider` or a zero-sized provider).
///
/// # Invariants
///
/// - Every zspage keeps the [`ZsPage`] invariants; `objects` counts the live
///   slots of all of them and `object_bytes` sums the lengths of the places
///   issued for them (a place carries its length; the store keeps none).
/// - A zspage is on exactly one list of its class, linked by `prev`/`next`:
///   `full` when `used` reaches the class's objects per zspage, `evacuating` only
///   inside [`compact`](Self::compact), `partial` otherwise. A zspage whose
///   `used` falls to 0 is freed at once; `zspage_pages` is the sum of the
///   zspages' pages.
///
/// ```
/// use foldswap_mem::StdPageProvider;
/// use foldswap_pool::{ObjectStore, Error};
/// let mut store = ObjectStore::new(StdPageProvider).unwrap();
/// let place = store.store_object(b"hello").unwrap();
/// let mut buf = [0u8; 16];
/// assert_eq!(store.read_object(place, &mut buf), Ok(5));
/// assert_eq!(&buf[..5], b"hello");
/// store.free(place).unwrap();
/// assert_eq!(store.free(place), Err(Error::InvalidHandle));
/// ```
pub struct ObjectStore<P: PageProvider + Clone> {
    provider: P,
    zspages: Slab<ZsPage, P>,
    /// One provider page: `[ClassState; CLASS_COUNT]`.
    classes: NonNull<Page>,
    limit_bytes: usize,
    objects: usize,
    object_bytes: usize,
    zspage_pages: usize,
}

// SAFETY: the store owns its pages and slab exclusively (no shared pointers leave
// it except borrows tied to `&self` and `ObjectInPlace`, whose use is the
// caller's `unsafe` contract); moving it to another thread moves that
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
        let Ok(zspages) = Slab::new(provider.clone()) else {
            // SAFETY: allocated above, not shared.
            unsafe { provider.free_page(classes) };
            return Err(Error::InvalidArgument("slab geometry"));
        };
        Ok(ObjectStore {
            provider,
            zspages,
            classes,
            limit_bytes: usize::MAX,
            objects: 0,
            object_bytes: 0,
            zspage_pages: 0,
        })
    }

    /// Limit the bytes held: a store that would need a new zspage page past the
    /// limit fails with [`Error::PoolFull`]. Lowering it below the current size
    /// frees nothing; it only stops growth. `usize::MAX` means no limit.
    pub fn set_limit_bytes(&mut self, limit: usize) {
        self.limit_bytes = limit;
    }

    /// The limit set by [`set_limit_bytes`](Self::set_limit_bytes).
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Store a copy of `bytes` (at most 4096); the caller keeps the [`Place`].
    ///
    /// Fails with [`Error::InvalidArgument`] if `bytes` is longer than a page,
    /// [`Error::PoolFull`] at the limit, [`Error::OutOfMemory`] if the provider
    /// refuses a page; a failed call changes nothing that was stored.
    pub fn store_object(&mut self, bytes: &[u8]) -> Result<Place, Error> {
        let class = class_for_len(bytes.len())
            .ok_or(Error::InvalidArgument("object longer than a page"))?;
        let (zspage, slot) = self.alloc_slot(class, true)?;
        let offset = self.slot_offset(class, slot);
        self.write_at(zspage, offset, bytes);
        self.objects += 1;
        self.object_bytes += bytes.len();
        Ok(Place {
            zspage,
            slot,
            len: bytes.len() as u16,
        })
    }

    /// Copy the object into `out`, returning its length. Fails with
    /// [`Error::InvalidHandle`] for a place of no live object and with
    /// [`Error::WrongLength`] if `out` is shorter than the object.
    pub fn read_object(&self, place: Place, out: &mut [u8]) -> Result<usize, Error> {
        let offset = self.locate(place)?;
        let len = place.len();
        let actual = out.len();
        let out = out.get_mut(..len).ok_or(Error::WrongLength {
            expected: len,
            actual,
        })?;
        self.read_at(place.zspage, offset, out);
        Ok(len)
    }

    /// The object's bytes without a copy when they lie in one provider page;
    /// otherwise copied into `spill`. This is the load path's fast way in.
    pub fn view_object<'a>(
        &'a self,
        place: Place,
        spill: &'a mut [u8; MAX_OBJECT],
    ) -> Result<&'a [u8], Error> {
        let offset = self.locate(place)?;
        let len = place.len();
        let within = offset % PAGE_SIZE;
        if within + len <= PAGE_SIZE {
            let (page, _) = self.page_at(place.zspage, offset).ok_or(Error::Corrupt)?;
            return self
                .page_bytes(page)
                .get(within..within + len)
                .ok_or(Error::Corrupt);
        }
        let out = spill.get_mut(..len).ok_or(Error::Corrupt)?;
        self.read_at(place.zspage, offset, out);
        Ok(out)
    }

    /// Where a live object's bytes lie, when they lie in one provider page
    /// (`None` when the object spans two: read it with [`read_object`]). The
    /// [`ObjectInPlace`] outlives this borrow of the store, so the bytes can be read
    /// after the caller has let go of the lock around it, under the contract of
    /// [`ObjectInPlace::bytes`].
    ///
    /// [`read_object`]: Self::read_object
    pub fn object_in_place(&self, place: Place) -> Result<Option<ObjectInPlace>, Error> {
        let offset = self.locate(place)?;
        let len = place.len();
        let within = offset % PAGE_SIZE;
        if within + len > PAGE_SIZE {
            return Ok(None);
        }
        let (page, _) = self.page_at(place.zspage, offset).ok_or(Error::Corrupt)?;
        // SAFETY: `within < PAGE_SIZE`: the pointer stays inside the page.
        let start = unsafe { page.as_ptr().cast::<u8>().add(within) };
        Ok(NonNull::new(start).map(|start| ObjectInPlace { start, len }))
    }

    /// Free the object. [`Error::InvalidHandle`] if the place names no live object
    /// (already freed, never issued); nothing changes then.
    pub fn free(&mut self, place: Place) -> Result<(), Error> {
        self.locate(place)?;
        self.free_slot(place.zspage, place.slot)?;
        self.objects -= 1;
        // A forged place of the live slot with another length of its class frees
        // the object all the same: the count takes what the place says, at most
        // what it holds.
        self.object_bytes = self.object_bytes.saturating_sub(place.len());
        if self.objects == 0 && self.zspages.is_empty() {
            // INVARIANT: no zspage is left, so the descriptor slab holds nothing.
            self.zspages.release_if_empty();
        }
        Ok(())
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
        self.zspages.pages_held() + 1
    }

    /// Bytes of every zspage's header.
    fn header_bytes(&self) -> usize {
        (0..CLASS_COUNT)
            .filter_map(|class| Some((self.class(class)?, class_shape(class)?)))
            .map(|(state, shape)| state.zspages as usize * shape.header_bytes())
            .sum()
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
            header_bytes: self.header_bytes(),
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
    /// zspages in which no object lives any more, after moving the objects of
    /// large-slot classes that keep such pages down into free slots in front.
    /// `owners` shows every live object's place and takes the new place of each
    /// object moved; every object reads the same bytes at its (new) place. Needs
    /// no memory: objects only move into slots already held.
    ///
    /// Cost: one pass over the partial zspages of each class (quadratic in their
    /// number per class), up to two walks of the owners' places, and one copy per
    /// moved object. Background work (the backend's scanner), not for the store
    /// path.
    pub fn compact(&mut self, owners: &mut (impl PlaceOwners + ?Sized)) -> CompactStats {
        let mut stats = CompactStats::default();
        let mut any = false;
        for class in 0..CLASS_COUNT {
            any |= self.pick_evacuees(class);
        }
        if any {
            self.evacuate(owners, &mut stats);
        }
        if self.any_packable() {
            self.pack_tails(owners, &mut stats);
        }
        self.trim_tails(&mut stats);
        stats
    }

    /// Move every object of the zspages marked evacuating into kept zspages.
    fn evacuate(&mut self, owners: &mut (impl PlaceOwners + ?Sized), stats: &mut CompactStats) {
        let mut stuck = false;
        owners.for_each_place(&mut |place| {
            if stuck || !self.is_evacuating(place.zspage) || self.locate(*place).is_err() {
                return;
            }
            match self.move_object(*place) {
                Ok((moved, freed)) => {
                    *place = moved;
                    stats.objects_moved += 1;
                    if let Some(pages) = freed {
                        stats.zspages_freed += 1;
                        stats.pages_freed += pages;
                    }
                }
                Err(_) => stuck = true,
            }
        });
        self.return_unfinished_evacuees();
    }

    /// Whether some partial zspage of a packed class has a live object past the
    /// slots its objects would fill if packed ([`pack_target`]).
    fn any_packable(&mut self) -> bool {
        let mut packable = false;
        self.for_each_partial(|store, key, shape| {
            if let Ok(zs) = store.zspage(key)
                && pack_target(zs, shape).is_some_and(|target| zs.top_live() > target)
            {
                packable = true;
            }
        });
        packable
    }

    /// Move each object of a partial zspage of a packed class that lies past its
    /// zspage's [`pack_target`] into the lowest free slot of the same zspage (one
    /// below the target: fewer objects than the target's slots are live), so that
    /// [`trim_tails`](Self::trim_tails) can give back more pages.
    fn pack_tails(&mut self, owners: &mut (impl PlaceOwners + ?Sized), stats: &mut CompactStats) {
        owners.for_each_place(&mut |place| {
            if self.locate(*place).is_err() {
                return;
            }
            let Ok(zs) = self.zspage(place.zspage) else {
                return;
            };
            let Ok(shape) = Self::shape(usize::from(zs.class)) else {
                return;
            };
            if zs.list != ZsList::Partial {
                return;
            }
            if let Some(target) = pack_target(zs, shape)
                && place.slot >= target
                && let Some(free) = zs.lowest_free(shape).filter(|&free| free < target)
            {
                self.copy_between(
                    (place.zspage, shape.slot_start(place.slot)),
                    (place.zspage, shape.slot_start(free)),
                    place.len(),
                );
                if let Ok(zs) = self.zspage_mut(place.zspage) {
                    zs.set_live(free, true);
                    zs.set_live(place.slot, false);
                }
                place.slot = free;
                stats.objects_moved += 1;
            }
        });
    }

    /// Give back the trailing pages of partial zspages that hold no live object.
    ///
    /// A zspage takes pages as its slots reach into them and keeps them while any
    /// object lives in it; when objects all over it are freed (the scanner
    /// re-encodes every cold page: the old object goes, the new one lands in
    /// another class), its later pages can hold nothing live. Those pages are
    /// freed; a later allocation takes them again as its slot reaches them.
    fn trim_tails(&mut self, stats: &mut CompactStats) {
        self.for_each_partial(|store, key, shape| {
            let Ok(zs) = store.zspage_mut(key) else {
                return;
            };
            let keep = shape.pages_for_slots(zs.top_live());
            if keep >= usize::from(zs.allocated) {
                return;
            }
            // INVARIANT: every live slot lies below `top_live`, wholly inside the
            // first `keep` pages.
            let gone = take_pages(zs, keep);
            let freed = store.give_back_pages(&gone);
            store.zspage_pages -= freed;
            stats.tails_trimmed += 1;
            stats.pages_freed += freed;
        });
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

    /// The byte offset of `place`'s object in its zspage, if the place names a
    /// live object: its zspage exists and is of the class its length falls in,
    /// and its slot is live. [`Error::InvalidHandle`] otherwise.
    fn locate(&self, place: Place) -> Result<usize, Error> {
        let zs = self
            .zspages
            .get(SlabKey(place.zspage))
            .ok_or(Error::InvalidHandle)?;
        let class = class_for_len(place.len()).ok_or(Error::InvalidHandle)?;
        if usize::from(zs.class) != class || !zs.is_live(place.slot) {
            return Err(Error::InvalidHandle);
        }
        Ok(self.slot_offset(class, place.slot))
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
        class_shape(class).map_or(0, |shape| shape.slot_start(slot))
    }

    /// A free slot of `class`, marked live. Normally from the first partial
    /// zspage, else from a new zspage; during compaction (`may_grow` false) only
    /// from a slot in pages already held, so compaction never allocates.
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
        let (key, slot) = match self.take_slot(key, shape, may_grow) {
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
                        (other, self.take_slot(other, shape, false)?)
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

    /// A partial zspage of `class` whose lowest free slot lies in pages it holds.
    fn partial_with_room(&self, class: usize, shape: ClassShape) -> Option<u32> {
        let mut link = self.class(class)?.partial;
        while let Some(key) = link.map(|l| l.key().0) {
            let zs = self.zspage(key).ok()?;
            if zs
                .lowest_free(shape)
                .is_some_and(|slot| slot < held_slots(zs, shape))
            {
                return Some(key);
            }
            link = zs.next;
        }
        None
    }

    /// Mark the zspage's lowest free slot live, first adding the provider pages it
    /// reaches into (if `may_grow`; [`Error::PoolFull`] otherwise).
    fn take_slot(&mut self, key: u32, shape: ClassShape, may_grow: bool) -> Result<u16, Error> {
        let slot = self.zspage(key)?.lowest_free(shape).ok_or(Error::Corrupt)?;
        let end = shape.slot_start(slot + 1);
        while usize::from(self.zspage(key)?.allocated) * PAGE_SIZE < end {
            if !may_grow {
                return Err(Error::PoolFull);
            }
            self.add_page(key)?;
        }
        self.zspage_mut(key)?.set_live(slot, true);
        Ok(slot)
    }

    /// Give zspage `key` its next provider page, within the byte limit.
    fn add_page(&mut self, key: u32) -> Result<(), Error> {
        if self.bytes_held().saturating_add(PAGE_SIZE) > self.limit_bytes {
            return Err(Error::PoolFull);
        }
        let zs = self.zspage(key)?;
        let index = usize::from(zs.allocated);
        let pages = Self::shape(usize::from(zs.class))?.pages_per_zspage;
        if index >= usize::from(pages) {
            return Err(Error::Corrupt);
        }
        let page = self.provider.alloc_page()?;
        let zs = self.zspage_mut(key)?;
        match zs.first {
            None => {
                // INVARIANT: the new first page's header is all `None` before
                // the zspage counts it as held.
                for entry in 1..usize::from(pages) {
                    // SAFETY: `page` is a fresh provider page, ours alone, and
                    // `entry` lies in the header of a zspage of `pages` pages.
                    unsafe { header_entry(page, entry).write(None) };
                }
                zs.first = Some(page);
            }
            // SAFETY: `first` is the zspage's first page, held, and `index` is
            // below the class's pages per zspage.
            Some(first) => unsafe { header_entry(first, index).write(Some(page)) },
        }
        zs.allocated += 1;
        self.zspage_pages += 1;
        Ok(())
    }

    /// Free live `slot` of zspage `key`; frees the zspage when it empties.
    /// Returns the provider pages given back (0 if the zspage stays).
    fn free_slot(&mut self, key: u32, slot: u16) -> Result<usize, Error> {
        let zs = self.zspage(key)?;
        let class = zs.class as usize;
        let was_full = zs.list == ZsList::Full;
        let used = zs.used.checked_sub(1).ok_or(Error::Corrupt)?;
        if let Some(state) = self.class_mut(class) {
            state.objects = state.objects.saturating_sub(1);
        }
        if used == 0 {
            return self.release_zspage(key);
        }
        let zs = self.zspage_mut(key)?;
        zs.set_live(slot, false);
        zs.used = used;
        if was_full {
            self.move_to(key, ZsList::Partial)?;
        }
        Ok(0)
    }

    /// An empty zspage of `class`, holding no pages yet, on the partial list.
    fn new_zspage(&mut self, class: usize) -> Result<u32, Error> {
        let key = self.zspages.insert(ZsPage {
            first: None,
            live: [0; LIVE_WORDS],
            prev: None,
            next: None,
            class: class as u16,
            used: 0,
            allocated: 0,
            list: ZsList::Partial,
        })?;
        if let Some(state) = self.class_mut(class) {
            state.zspages += 1;
        }
        self.link(key.0, ZsList::Partial)?;
        Ok(key.0)
    }

    fn release_zspage(&mut self, key: u32) -> Result<usize, Error> {
        self.unlink(key)?;
        let mut zs = self.zspages.remove(SlabKey(key)).ok_or(Error::Corrupt)?;
        let pages = self.give_back_pages(&take_pages(&mut zs, 0));
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
            // referenced only by that zspage, which is being discarded (or is
            // giving back pages no live slot reaches into).
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
        let page = zs.page(offset / PAGE_SIZE)?;
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

    /// Move the live object at `place` (in an evacuating zspage) into a slot of a
    /// kept zspage. Returns its new place, and the pages freed if its old zspage
    /// emptied.
    fn move_object(&mut self, place: Place) -> Result<(Place, Option<usize>), Error> {
        let class = self.zspage(place.zspage)?.class as usize;
        let (to, slot) = self.alloc_slot(class, false)?;
        let from_offset = self.slot_offset(class, place.slot);
        let to_offset = self.slot_offset(class, slot);
        self.copy_between((place.zspage, from_offset), (to, to_offset), place.len());
        let freed = self.free_slot(place.zspage, place.slot)?;
        let moved = Place {
            zspage: to,
            slot,
            len: place.len,
        };
        Ok((moved, (freed > 0).then_some(freed)))
    }

    /// Put zspages still marked evacuating (a move failed, or an owner did not
    /// show all their objects) back on their lists.
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
    Some(shape.slots_in_pages(shape.pages_for_slots(zs.used)))
}

/// Slots of `zs` that lie wholly in the pages it holds.
fn held_slots(zs: &ZsPage, shape: ClassShape) -> u16 {
    shape.slots_in_pages(usize::from(zs.allocated))
}

/// Entry `index` (`1..MAX_ZSPAGE_PAGES`) of the header at the start of `first`,
/// a zspage's first page: where the address of its page `index` is kept.
///
/// # Safety
///
/// `first` must be a page the store holds as a zspage's first page (or a fresh
/// one it is making so), and `index` below the zspage's pages per zspage: the
/// entry then lies in the header, which no slot overlaps. Reads and writes
/// through the pointer need the store exclusively for writes, shared for reads,
/// as every access to a zspage's bytes; readers outside the store
/// (`ObjectInPlace`) only ever read slots.
unsafe fn header_entry(first: NonNull<Page>, index: usize) -> *mut HeaderEntry {
    debug_assert!((1..MAX_ZSPAGE_PAGES).contains(&index));
    // SAFETY: `index - 1 < MAX_ZSPAGE_PAGES - 1` entries of 8 bytes lie within
    // the page (checked at compile time against PAGE_SIZE), whose start is
    // aligned for a `HeaderEntry`.
    unsafe { first.as_ptr().cast::<HeaderEntry>().add(index - 1) }
}

/// Take zspage `zs`'s pages from `keep` on out of it (all of them for 0), for
/// the caller to give back; `zs` keeps its first `keep`.
fn take_pages(zs: &mut ZsPage, keep: usize) -> [Option<NonNull<Page>>; MAX_ZSPAGE_PAGES] {
    let mut gone = [None; MAX_ZSPAGE_PAGES];
    let allocated = usize::from(zs.allocated);
    if let Some(first) = zs.first {
        for (index, slot) in gone
            .iter_mut()
            .enumerate()
            .take(allocated)
            .skip(keep.max(1))
        {
            // SAFETY: `first` is `zs`'s first page, held while `allocated > 0`,
            // and `index < allocated <= pages per zspage`.
            *slot = unsafe { header_entry(first, index).replace(None) };
        }
        if keep == 0 {
            gone[0] = zs.first.take();
        }
    }
    // INVARIANT: the header's entries past `keep - 1` are `None` again.
    zs.allocated = keep.min(allocated) as u8;
    gone
}
