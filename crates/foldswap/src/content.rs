//! Content entries: one per distinct stored content.
//!
//! Every swap offset that holds a non-same-filled page points at an entry. An entry
//! says where its bytes are (a pool object: lz4, a cold codec's, raw, or a delta
//! against a base entry), its full hash (xxh3-64), its sharer count (the number of
//! offsets pointing here), and how many delta entries use it as their base. It is
//! freed when its last sharer goes and no delta needs it: a base outlives its last
//! offset while a delta still depends on it (it then leaves the dedup index, so
//! nothing new is deduplicated against it).
//!
//! The dedup index is an open-addressing hash table (foldswap-merge's
//! [`StableIndex`]) from a 32-bit key sampled from the full hash to entry keys:
//! one 8-byte bucket per distinct content, where a stable tree would add a node
//! per content (34 bytes a page on the dev corpus). A bucket is only a candidate:
//! the full hash must match and then every byte is compared.
//!
//! The entries, the dedup index and the pool live together behind one lock
//! (`Content`). Slow work — compressing,
//! decompressing for a load, encoding a delta — happens outside it on bytes copied in
//! or out; only bookkeeping and, on a hash match, the confirming full comparison
//! run inside (for lz4 entries against the compressed stream itself, without
//! decoding it: [`foldswap_pool::lz4_matches`]).

use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, drop_in_place};

use foldswap_delta::{IndexCapacity, Signature, SimilarityConfig, SimilarityIndex};
use foldswap_mem::{Error, PAGE_SIZE, PageProvider, Slab, SlabKey};
use foldswap_merge::StableIndex;
use foldswap_pool::{ColdCodec, CompactStats, ObjectStore, Place, PlaceOwners, TAG_FIRST_HOST};
use foldswap_pool::{MAX_OBJECT, MAX_OBJECTS_PER_ZSPAGE};

use crate::block::{Block, MAX_BLOCK_PAGES, TAG_BLOCK};
use crate::decode::{PlainInPlace, Snapshot, Stored, plain_in_place, same_as_stored, snapshot};
use crate::domain::{ContentKey, Domain, DomainCharges};
use crate::scratch::DecodeScratch;

/// Tag of a delta object (the pool's codecs use tags below `TAG_FIRST_HOST`).
pub const TAG_DELTA: u8 = TAG_FIRST_HOST;

/// Most pages the similarity index may grow to (it is a cache of candidates: when
/// full, old candidates are replaced). 512 pages index about a million entries.
pub const SIMILARITY_INDEX_MAX_PAGES: usize = 512;
/// Stored contents per table page the similarity index may hold (4 bytes of index
/// a content). On the dev corpus this bound (28 pages) patches 1,757 pages where
/// an index left to grow (129 pages, 18 bytes a page) patched 1,787, and holds less
/// in all: the candidates that matter are the recent ones.
pub const CONTENTS_PER_SIMILARITY_PAGE: usize = 1024;

/// One distinct stored content. 24 bytes (checked at compile time): the dedup
/// index key stands for the full hash (a lookup compares every byte anyway), one
/// word serves as a delta's base or a plain entry's count of dependents (deltas
/// never chain, so no entry needs both), and the pool object's [`Place`] is kept
/// as its parts (the pool keeps no record of its own per object), its length
/// sharing a word with the tag.
///
/// # Invariants
///
/// Under the content lock, for a live entry `e` with key `k`:
/// - `e.sharers` is the number of offsets pointing at `k` (a store or share adds
///   one, an unshare drops one), and `k` is in the dedup index under `e.sampled`
///   exactly while `e.sharers > 0`.
/// - `e.tag == TAG_DELTA` ⇔ `e.link` is the key of its base entry, whose tag is
///   not `TAG_DELTA` (deltas never chain); otherwise `e.link` is the number of live
///   entries whose base is `k`.
/// - `e.sharers > 0 || e.dependents() > 0`: an entry nothing needs is freed at once.
/// - `e.place()` is a live pool object holding the content encoded as `e.tag`
///   says, except for a page in a cold block (`e.tag == TAG_BLOCK`): then
///   `e.block()` names a live block whose bit for the page is set (see [`Block`]).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The content's dedup index key: its domain and 16 bits of its salted
    /// xxh3-64 ([`ContentKey`]).
    sampled: u32,
    /// Creation number: tells a reused slab key from the entry it replaced.
    pub generation: u32,
    /// Offsets pointing here; 0 once the last is gone (kept only as a base).
    pub sharers: u32,
    /// A delta's base key, or a plain entry's number of dependents.
    link: u32,
    /// The pool object holding the encoded content: its place's zspage and slot
    /// (for a page in a cold block: the block's key and the page's index in it).
    place_zspage: u32,
    place_slot: u8,
    /// The object's length (the low [`LEN_BITS`]; 0 for a page in a block) and
    /// the tag (the bits above): how the content is encoded.
    len_and_tag: u16,
    /// Scanner rounds since the content was stored or last re-encoded (low seven
    /// bits, saturating at [`MAX_AGE`]) and [`EXAMINED`].
    age_and_examined: u8,
}

const _: () = assert!(size_of::<Entry>() == 24);

/// Bits of `Entry::len_and_tag` holding the object's length.
const LEN_BITS: u32 = 13;
/// Those bits, as a mask.
const LEN_MASK: u16 = (1 << LEN_BITS) - 1;
/// The largest tag an entry holds (the bits of `Entry::len_and_tag` above the
/// length).
pub const MAX_TAG: u8 = (u16::MAX >> LEN_BITS) as u8;
const _: () = assert!(MAX_OBJECT < 1 << LEN_BITS);
const _: () = assert!(TAG_DELTA <= MAX_TAG && TAG_BLOCK <= MAX_TAG);
// A place's slot fits the entry's byte.
const _: () = assert!(MAX_OBJECTS_PER_ZSPAGE <= 1 << u8::BITS);

/// `Entry::age_and_examined`: the scanner has looked at this entry already.
const EXAMINED: u8 = 0x80;
/// The oldest age an entry records (scanner rounds); older entries stay at it.
pub const MAX_AGE: u8 = 0x7f;
/// Most deltas one base may carry; a base that has them takes no more.
pub const MAX_DEPENDENTS: u32 = u32::MAX;

impl Entry {
    /// The domain of the content (see [`crate::domain`]).
    pub fn domain(&self) -> Domain {
        ContentKey::from_raw(self.sampled).domain()
    }

    /// Whether the entry may serve as the base of a delta (deltas never chain).
    pub fn can_be_base(&self) -> bool {
        self.tag() != TAG_DELTA
    }

    /// The tag: how the content is encoded (a codec's, [`TAG_DELTA`] or
    /// [`TAG_BLOCK`]).
    pub fn tag(&self) -> u8 {
        (self.len_and_tag >> LEN_BITS) as u8
    }

    /// Set the tag (at most [`MAX_TAG`], checked where tags come in).
    fn set_tag(&mut self, tag: u8) {
        self.len_and_tag =
            (self.len_and_tag & LEN_MASK) | (u16::from(tag.min(MAX_TAG)) << LEN_BITS);
    }

    /// The pool object holding the encoded content; `None` for a page in a cold
    /// block ([`block`](Self::block)).
    pub fn place(&self) -> Option<Place> {
        let len = self.len_and_tag & LEN_MASK;
        (self.tag() != TAG_BLOCK)
            .then(|| Place::from_parts(self.place_zspage, u16::from(self.place_slot), len))
    }

    /// For a page in a cold block: the block's key and the page's index in it.
    pub fn block(&self) -> Option<(u32, u8)> {
        (self.tag() == TAG_BLOCK).then_some((self.place_zspage, self.place_slot))
    }

    /// The base entry's key, for a delta.
    pub fn base(&self) -> Option<u32> {
        (self.tag() == TAG_DELTA).then_some(self.link)
    }

    /// Delta entries whose base this is (0 for a delta).
    pub fn dependents(&self) -> u32 {
        if self.tag() == TAG_DELTA {
            0
        } else {
            self.link
        }
    }

    /// Whether the scanner has looked at this entry already.
    pub fn examined(&self) -> bool {
        self.age_and_examined & EXAMINED != 0
    }

    /// Scanner rounds since the content was stored or last re-encoded.
    pub fn age(&self) -> u8 {
        self.age_and_examined & MAX_AGE
    }

    /// A new plain entry: one sharer, no dependents, age 0, not examined.
    fn new(sampled: u32, place: Place, generation: u32, tag: u8) -> Self {
        let mut entry = Entry {
            sampled,
            generation,
            sharers: 1,
            link: 0,
            place_zspage: 0,
            place_slot: 0,
            len_and_tag: 0,
            age_and_examined: 0,
        };
        entry.set_place(place);
        entry.set_tag(tag);
        entry
    }

    /// Point the entry at a pool object (a new encoding, or compaction moved it);
    /// the tag stays.
    pub(crate) fn set_place(&mut self, place: Place) {
        let (zspage, slot, len) = place.to_parts();
        // Slots are below MAX_OBJECTS_PER_ZSPAGE (at most 256) and lengths at
        // most MAX_OBJECT: both fit (checked at compile time).
        self.place_zspage = zspage;
        self.place_slot = slot as u8;
        self.len_and_tag = (len & LEN_MASK) | (self.len_and_tag & !LEN_MASK);
    }

    /// Point the entry at page `index` of block `block`.
    fn set_block(&mut self, block: u32, index: u8) {
        (self.place_zspage, self.place_slot, self.len_and_tag) = (block, index, 0);
        self.set_tag(TAG_BLOCK);
    }
}

/// Every record naming a pool object: the entries (but those of pages in cold
/// blocks) and the blocks' chunks, each object named by exactly one of them.
struct Owners<'a, P: PageProvider + Clone> {
    entries: &'a mut Slab<Entry, P>,
    blocks: &'a mut Slab<Block, P>,
}

impl<P: PageProvider + Clone> PlaceOwners for Owners<'_, P> {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        self.entries.for_each_mut(|_, entry| {
            if let Some(mut place) = entry.place() {
                visit(&mut place);
                entry.set_place(place);
            }
        });
        self.blocks
            .for_each_mut(|_, block| block.for_each_chunk(visit));
    }
}

/// A tag an entry can hold: at most [`MAX_TAG`].
fn check_tag(tag: u8) -> Result<(), Error> {
    if tag > MAX_TAG {
        return Err(Error::InvalidArgument("tag past MAX_TAG"));
    }
    Ok(())
}

/// Entries, stable tree and pool, behind the backend's content lock (every field:
/// the backend holds `Mutex<InPlace<Content>>`, and a change that frees or moves a
/// pool object a load may read in place also waits out the readers, see
/// `Backend::lock_content_to_move`).
///
/// # Invariants
///
/// - Every entry keeps the [`Entry`] invariants; every key in the dedup index is a
///   live entry with sharers, stored under `index_key` of its hash.
/// - The similarity index holds keys of entries that could be bases when indexed;
///   it is a cache and may name freed or changed entries: every use checks the
///   key's generation and tag again.
/// - `inserts` grows with every dedup-index insertion (a [`Pending`] lookup stays
///   valid while it is unchanged).
pub struct Content<P: PageProvider + Clone> {
    pub(crate) entries: Slab<Entry, P>,
    pub(crate) blocks: Slab<Block, P>,
    pub(crate) index: StableIndex<P>,
    pub(crate) pool: ObjectStore<P>,
    pub(crate) similar: SimilarityIndex<u32, P>,
    next_generation: u32,
    /// The limit on everything the backend holds (pool and metadata, the offset
    /// tables included); the pool gets what the rest leaves ([`Self::fit_pool_to_limit`]).
    limit_bytes: usize,
    /// Dedup-index insertions so far: a lookup that found nothing stays true
    /// while this is unchanged (removals cannot make a missing page appear).
    inserts: u64,
    /// Full byte comparisons made for dedup, and candidates that differed (by
    /// full hash or by bytes), since the backend last took them.
    dedup_counts: DedupCounts,
    /// Where each domain's pool bytes are charged ([`DomainCharges`]); `None`:
    /// nowhere.
    charges: Option<&'static dyn DomainCharges>,
}

/// Dedup work counted under the content lock ([`Content::take_dedup_counts`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DedupCounts {
    /// Full byte comparisons with a stored candidate.
    pub comparisons: u64,
    /// Candidates whose sampled key matched but whose content differed.
    pub collisions: u64,
}

/// What a store's first lookup found: a stored identical page (now shared), or
/// where the page would go.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// The entry now shared by one more offset.
    Shared(u32),
    /// Nothing identical is stored; pass this to [`Content::insert_or_share`].
    Vacant(Pending),
}

/// What [`Content::share_candidate`] found.
#[derive(Debug, Clone, Copy)]
pub enum Candidate {
    /// Compared under the lock (or nothing to compare), as by
    /// [`Content::share_identical`].
    Compared(Lookup),
    /// A stored entry with the page's hash, not yet compared, holding one sharer
    /// for the caller; its bytes lie in place.
    InPlace {
        /// The entry.
        key: u32,
        /// Its bytes in the pool.
        object: PlainInPlace,
    },
}

/// A comparison a deferring lookup left to its caller.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    key: u32,
    object: PlainInPlace,
}

/// A lookup that found nothing, and when: if no page entered the index since,
/// [`Content::insert_or_share`] inserts without looking again. `None`: a page
/// that is not to be shared ([`Pending::unshared`]).
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    inserts: Option<u64>,
}

impl Pending {
    /// Where a page that must not be shared goes (dedup scope `off`): passed to
    /// [`Content::insert_or_share`], it inserts without looking.
    pub const fn unshared() -> Self {
        Pending { inserts: None }
    }
}

/// What releasing one sharer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Other offsets still share the entry.
    pub still_shared: bool,
    /// Plain (compressed or raw) entries freed.
    pub plain_freed: u32,
    /// Delta entries freed.
    pub deltas_freed: u32,
    /// Entries of pages in cold blocks freed (not counted in `plain_freed`).
    pub blocked_freed: u32,
    /// The entry lost its last sharer but stays, the base of deltas: a content no
    /// offset holds, freed with its last dependent.
    pub kept_as_base: bool,
    /// Of [`Released::plain_freed`]: entries that were kept only as a base, freed
    /// now that their last dependent went.
    pub bases_freed: u32,
    /// Inconsistencies met on the way (an object the pool would not free, a base
    /// missing or without dependents): the release went on past each; the pool
    /// bytes of such an object stay held until the backend is dropped.
    pub leaked: u32,
}

/// What [`Content::store_block`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStored {
    /// The block holds `joined` pages now; `leaked` old objects would not free
    /// (the pool's books were wrong; their bytes stay held).
    Formed {
        /// Pages that joined.
        joined: u32,
        /// Of those, pages that left an older block (its holes rewritten out).
        moved: u32,
        /// Old objects that would not free.
        leaked: u32,
    },
    /// The frame is not smaller than what the pages hold alone: nothing changed.
    NotSmaller,
    /// No member is the entry the caller read any more: nothing changed.
    Stale,
}

/// What [`Content::reencode`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reencoded {
    /// The entry now holds the new encoding.
    Replaced,
    /// The entry is not the one the caller read any more (freed, reused, patched,
    /// or it became a base), or the delta's base changed: nothing was done. A
    /// normal outcome for the scanner, which reads without the lock.
    Stale,
}

impl<P: PageProvider + Clone> Content<P> {
    /// An empty content store. Sharing is unlimited: a swap page shared by many
    /// offsets costs nothing more per sharer, so there is no reason to keep copies.
    pub fn new(provider: P, similarity: SimilarityConfig) -> Result<Self, Error> {
        let mut slot = MaybeUninit::uninit();
        Self::init_in(&mut slot, provider, similarity)?;
        // SAFETY: `init_in` returned Ok: every field is initialised.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`new`](Self::new) in place (no by-value temporary of the whole store on
    /// the stack). On error nothing is left initialised and every page taken is
    /// given back (the parts built so far are dropped).
    pub fn init_in(
        slot: &mut MaybeUninit<Self>,
        provider: P,
        similarity: SimilarityConfig,
    ) -> Result<&mut Self, Error> {
        let this = slot.as_mut_ptr();
        let mut built = 0;
        // SAFETY: `this` is valid, aligned storage for a Content, and nothing else
        // touches it until this returns.
        if let Err(e) = unsafe { Self::write_parts(this, provider, similarity, &mut built) } {
            // SAFETY: exactly the first `built` parts were written, and only here
            // are they dropped.
            unsafe { Self::drop_parts(this, built) };
            return Err(e);
        }
        // SAFETY: every part is written (above); the plain fields are written
        // once here, before `assume_init_mut`, and nothing below can fail.
        unsafe {
            addr_of_mut!((*this).next_generation).write(0);
            addr_of_mut!((*this).limit_bytes).write(usize::MAX);
            addr_of_mut!((*this).inserts).write(0);
            addr_of_mut!((*this).dedup_counts).write(DedupCounts::default());
            addr_of_mut!((*this).charges).write(None);
            Ok(slot.assume_init_mut())
        }
    }

    /// Build the parts that hold pages, each written into place as soon as it
    /// is built, so one part's temporary is on the stack at a time (a slab is
    /// half a KiB; kernel frames stay under 2 KiB). `built` counts the parts
    /// written, in the order [`drop_parts`](Self::drop_parts) knows.
    ///
    /// # Safety
    ///
    /// `this` is valid, aligned storage for a `Content` that nothing else uses.
    unsafe fn write_parts(
        this: *mut Self,
        provider: P,
        similarity: SimilarityConfig,
        built: &mut u8,
    ) -> Result<(), Error> {
        // SAFETY: by the caller's contract each field's place is valid for a write.
        unsafe {
            addr_of_mut!((*this).entries).write(Slab::new(provider.clone())?);
            *built = 1;
            addr_of_mut!((*this).blocks).write(Slab::new(provider.clone())?);
            *built = 2;
            addr_of_mut!((*this).index).write(StableIndex::new(provider.clone())?);
            *built = 3;
            let capacity = IndexCapacity::growable(SIMILARITY_INDEX_MAX_PAGES);
            let similar = SimilarityIndex::new(provider.clone(), similarity, capacity)?;
            addr_of_mut!((*this).similar).write(similar);
            *built = 4;
            addr_of_mut!((*this).pool).write(ObjectStore::new(provider)?);
            *built = 5;
        }
        Ok(())
    }

    /// Drop the first `built` parts [`write_parts`](Self::write_parts) wrote, in
    /// reverse (each gives its pages back).
    ///
    /// # Safety
    ///
    /// Exactly those parts are initialised, and nothing uses them afterwards.
    unsafe fn drop_parts(this: *mut Self, built: u8) {
        // SAFETY: by the caller's contract each part dropped here was written by
        // `write_parts` and is dropped once.
        unsafe {
            if built >= 5 {
                drop_in_place(addr_of_mut!((*this).pool));
            }
            if built >= 4 {
                drop_in_place(addr_of_mut!((*this).similar));
            }
            if built >= 3 {
                drop_in_place(addr_of_mut!((*this).index));
            }
            if built >= 2 {
                drop_in_place(addr_of_mut!((*this).blocks));
            }
            if built >= 1 {
                drop_in_place(addr_of_mut!((*this).entries));
            }
        }
    }

    /// Remember `key` as a base candidate for pages with `signature`, in an index
    /// sized by what is stored ([`CONTENTS_PER_SIMILARITY_PAGE`]).
    pub fn index_similar(&mut self, signature: &Signature, key: u32) {
        self.fit_similarity_index();
        self.similar.insert(signature, key);
    }

    /// Size the similarity index's ceiling by what is stored now: a table more
    /// than twice the ceiling is rebuilt smaller (see
    /// `SimilarityIndex::set_max_pages`). The scanner calls it at every round's
    /// end too, so the index shrinks after pages go even when nothing new is
    /// indexed any more.
    pub fn fit_similarity_index(&mut self) {
        let ceiling = (self.entries.len() / CONTENTS_PER_SIMILARITY_PAGE)
            .clamp(1, SIMILARITY_INDEX_MAX_PAGES);
        self.similar.set_max_pages(ceiling);
    }

    /// Rebuild the dedup index at 5/8 load if it is under half full
    /// (`StableIndex::fit`): the scanner calls it at every round's end, so a
    /// table sized for a swap storm is given back once the storm's pages go.
    /// If the provider has no page for the smaller table, the old one stays.
    pub fn fit_dedup_index(&mut self) {
        let _ = self.index.fit();
    }

    /// Mark `key` as looked at by the scanner.
    pub fn mark_examined(&mut self, key: u32) {
        if let Some(entry) = self.entries.get_mut(SlabKey(key)) {
            entry.age_and_examined |= EXAMINED;
        }
    }

    /// Undo [`mark_examined`](Self::mark_examined) for `key` if it is still the
    /// entry of `generation`: the scanner's work on it did not land (memory was
    /// short), so a later round looks at it again.
    pub fn unmark_examined(&mut self, key: u32, generation: u32) {
        if let Some(entry) = self.entries.get_mut(SlabKey(key))
            && entry.generation == generation
        {
            entry.age_and_examined &= !EXAMINED;
        }
    }

    /// The live entry under `key`.
    pub fn entry(&self, key: u32) -> Result<&Entry, Error> {
        self.entries.get(SlabKey(key)).ok_or(Error::InvalidHandle)
    }

    fn entry_mut(&mut self, key: u32) -> Result<&mut Entry, Error> {
        self.entries
            .get_mut(SlabKey(key))
            .ok_or(Error::InvalidHandle)
    }

    /// Where `key`'s bytes lie in the pool, if it is plain (lz4 or raw) and its
    /// object lies in one pool page: a load decodes it there, outside this lock.
    /// `None` for deltas, deflate, and objects across two pool pages.
    pub fn plain_in_place(&self, key: u32) -> Result<Option<PlainInPlace>, Error> {
        plain_in_place(&self.pool, self.entry(key)?)
    }

    /// Copy `key`'s encoded bytes (and its base's, for a delta) into the scratch.
    pub fn snapshot<C: ColdCodec>(
        &self,
        key: u32,
        scratch: &mut DecodeScratch<C>,
    ) -> Result<Snapshot, Error> {
        snapshot(self.stored(), key, scratch)
    }

    /// Look `page` (hash `hash`) up in the dedup index: sampled key, full hash,
    /// then a full byte comparison with the candidate. Returns the entry found
    /// (no sharer added) and, with `defer`, the candidate left uncompared.
    ///
    /// With `defer`, the comparison with the first candidate whose bytes lie in
    /// place (plain, in one pool page) is not made here: the candidate is taken as
    /// found and returned as well, for the caller to compare outside the lock.
    fn lookup<C: ColdCodec>(
        &mut self,
        content_key: ContentKey,
        page: &[u8; PAGE_SIZE],
        scratch: &mut DecodeScratch<C>,
        defer: bool,
    ) -> Result<(Option<u32>, Option<Deferred>), Error> {
        // What `stored()` names, borrowed apart from the dedup counts.
        let stored = Stored {
            entries: &self.entries,
            blocks: &self.blocks,
            pool: &self.pool,
        };
        let (entries, pool, counts) = (&self.entries, &self.pool, &mut self.dedup_counts);
        let mut deferred = None;
        let found = self.index.find_map(content_key.raw(), |key| {
            let Some(entry) = entries.get(SlabKey(key)) else {
                return Some(Err(Error::Corrupt));
            };
            // The key holds the domain: another domain's entry never gets past here.
            if entry.sampled != content_key.raw() {
                counts.collisions += 1;
                return None;
            }
            if defer && deferred.is_none() {
                match plain_in_place(pool, entry) {
                    Ok(Some(object)) => {
                        // Taken as equal for now: the caller compares before it merges.
                        deferred = Some(Deferred { key, object });
                        return Some(Ok(key));
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            counts.comparisons += 1;
            match same_as_stored(stored, key, page, scratch) {
                Ok(true) => Some(Ok(key)),
                Ok(false) => {
                    counts.collisions += 1;
                    None
                }
                Err(e) => Some(Err(e)),
            }
        });
        Ok((found.transpose()?, deferred))
    }

    /// Add a sharer to live entry `key`.
    fn add_sharer(&mut self, key: u32) -> Result<(), Error> {
        let entry = self.entry_mut(key)?;
        entry.sharers = entry.sharers.checked_add(1).ok_or(Error::Corrupt)?;
        Ok(())
    }

    /// Find a stored entry byte-identical to `page` and add a sharer to it. A hash
    /// match is only a candidate: every byte is compared.
    pub fn share_identical<C: ColdCodec>(
        &mut self,
        content_key: ContentKey,
        page: &[u8; PAGE_SIZE],
        scratch: &mut DecodeScratch<C>,
    ) -> Result<Lookup, Error> {
        let (found, _) = self.lookup(content_key, page, scratch, false)?;
        self.share_found(found)
    }

    /// [`share_identical`](Self::share_identical), except that a candidate whose
    /// bytes lie in place is not compared here but returned as
    /// [`Candidate::InPlace`], holding one sharer for the caller: the caller
    /// compares it outside the lock (as a reader of the backend's `ReaderCount`),
    /// then keeps that sharer if the bytes are equal, or drops it with
    /// [`unshare`](Self::unshare) and looks again with `share_identical`. Until
    /// then the page is not merged: the sharer only keeps the candidate from being
    /// freed.
    pub fn share_candidate<C: ColdCodec>(
        &mut self,
        content_key: ContentKey,
        page: &[u8; PAGE_SIZE],
        scratch: &mut DecodeScratch<C>,
    ) -> Result<Candidate, Error> {
        let (found, deferred) = self.lookup(content_key, page, scratch, true)?;
        match (found, deferred) {
            (Some(key), Some(deferred)) if deferred.key == key => {
                self.add_sharer(key)?;
                Ok(Candidate::InPlace {
                    key,
                    object: deferred.object,
                })
            }
            (found, _) => Ok(Candidate::Compared(self.share_found(found)?)),
        }
    }

    fn share_found(&mut self, found: Option<u32>) -> Result<Lookup, Error> {
        match found {
            Some(key) => {
                self.add_sharer(key)?;
                Ok(Lookup::Shared(key))
            }
            None => Ok(Lookup::Vacant(Pending {
                inserts: Some(self.inserts),
            })),
        }
    }

    /// Store `page`'s encoded `bytes` as a new entry with one sharer, unless an
    /// identical page was stored since `pending`'s lookup (then share that one and
    /// return it). The index is searched again only if a page entered it since.
    /// All or nothing.
    pub fn insert_or_share<C: ColdCodec>(
        &mut self,
        content_key: ContentKey,
        page: &[u8; PAGE_SIZE],
        bytes: &[u8],
        tag: u8,
        scratch: &mut DecodeScratch<C>,
        pending: Pending,
    ) -> Result<(u32, bool), Error> {
        check_tag(tag)?;
        if pending
            .inserts
            .is_some_and(|inserts| inserts != self.inserts)
            && let (Some(key), _) = self.lookup(content_key, page, scratch, false)?
        {
            self.add_sharer(key)?;
            return Ok((key, false));
        }
        self.index.reserve_one()?;
        self.entries.reserve(1)?;
        let place = self.pool.store_object(bytes)?;
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = Entry::new(content_key.raw(), place, self.next_generation, tag);
        let key = match self.entries.insert(entry) {
            Ok(key) => key.0,
            Err(e) => {
                let _ = self.pool.free(place);
                return Err(e);
            }
        };
        // INVARIANT: the entry has a sharer, so it enters the index.
        if let Err(e) = self.index.insert(content_key.raw(), key) {
            self.entries.remove(SlabKey(key));
            let _ = self.pool.free(place);
            return Err(e);
        }
        self.inserts += 1;
        self.charge(content_key.domain(), bytes.len());
        Ok((key, true))
    }

    /// Drop one sharer of `key`; free the entry (and release its base) when nothing
    /// needs it any more.
    ///
    /// Fails, changing nothing, if `key` is not a live entry with a sharer. Once the
    /// sharer is dropped the release runs to its end: an object the pool refuses to
    /// free (a corrupt handle) or a base whose dependents do not add up is not a
    /// reason to keep an entry nothing can reach; each is counted in
    /// [`Released::leaked`] for the caller to report.
    pub fn unshare(&mut self, key: u32) -> Result<Released, Error> {
        let entry = *self.entry(key)?;
        if entry.sharers == 0 {
            // Kept only as a base: no offset holds a sharer of it.
            return Err(Error::InvalidHandle);
        }
        let mut released = Released::default();
        self.entry_mut(key)?.sharers = entry.sharers - 1;
        if entry.sharers > 1 {
            released.still_shared = true;
            return Ok(released);
        }
        // INVARIANT: the last sharer is gone, so the entry leaves the index.
        if !self.index.remove(entry.sampled, key) {
            released.leaked += 1;
        }
        // The released entry, then (if it was a delta) its base.
        let mut next = Some(key);
        let mut is_base = false;
        while let Some(key) = next.take() {
            let Some(&entry) = self.entries.get(SlabKey(key)) else {
                // A delta's base that is gone: the books were wrong already.
                released.leaked += 1;
                break;
            };
            if entry.sharers > 0 {
                break;
            }
            if entry.dependents() > 0 {
                released.kept_as_base = !is_base;
                break;
            }
            self.entries.remove(SlabKey(key));
            released.leaked += self.free_encoding(&entry);
            let Some(base_key) = entry.base() else {
                if entry.block().is_some() {
                    released.blocked_freed += 1;
                } else {
                    released.plain_freed += 1;
                }
                released.bases_freed += u32::from(is_base);
                continue;
            };
            released.deltas_freed += 1;
            match self.entries.get_mut(SlabKey(base_key)) {
                Some(base) if base.dependents() > 0 => {
                    base.link -= 1;
                    next = Some(base_key);
                    is_base = true;
                }
                _ => released.leaked += 1,
            }
        }
        if self.entries.is_empty() {
            self.give_back_when_empty();
        }
        Ok(released)
    }

    /// With no entry left, give back what the metadata grew to: the entries'
    /// pages, the dedup index's table, the similarity index's (its keys are all
    /// stale now), and the pool's empty zspages. Best effort: a refused page for
    /// the smaller similarity table keeps the old one.
    fn give_back_when_empty(&mut self) {
        self.entries.release_if_empty();
        self.blocks.release_if_empty();
        self.index.release_if_empty();
        let _ = self.similar.clear_and_shrink();
    }

    /// Replace the encoded bytes of `key` (same content, new encoding: `base` names
    /// the base entry and its generation for a delta) if the entry is still the one
    /// the caller read (`generation`) and still plain; [`Reencoded::Stale`] if not.
    /// It frees the old object: the caller has waited out the loads decoding in
    /// place (`Backend::lock_content_to_move`), as for the pool's `compact`.
    /// All or nothing: on error the entry keeps its old encoding and the pool holds
    /// no new object.
    ///
    /// `bytes` must be shorter than the object they replace: the new object is
    /// stored past the pool's limit if need be (a re-encode gives back more bytes
    /// than it takes, and compaction returns the pages), so a pool at its limit
    /// still settles. Only the provider can refuse it ([`Error::OutOfMemory`]).
    pub fn reencode(
        &mut self,
        key: u32,
        generation: u32,
        bytes: &[u8],
        tag: u8,
        base: Option<(u32, u32)>,
    ) -> Result<Reencoded, Error> {
        check_tag(tag)?;
        let entry = match self.entries.get(SlabKey(key)) {
            Some(&entry) if entry.generation == generation && entry.tag() != TAG_DELTA => entry,
            _ => return Ok(Reencoded::Stale),
        };
        if let Some((block, index)) = entry.block()
            && !self
                .blocks
                .get(SlabKey(block))
                .is_some_and(|b| b.is_live(index))
        {
            return Err(Error::Corrupt);
        }
        if let Some((base_key, base_generation)) = base {
            // A delta joins two pages: of one domain only.
            let base_ok = matches!(
                self.entries.get(SlabKey(base_key)),
                Some(b) if b.generation == base_generation
                    && b.can_be_base()
                    && b.dependents() < MAX_DEPENDENTS
                    && b.domain() == entry.domain()
            );
            // Deltas never chain: an entry that is a base stays plain.
            if !base_ok || base_key == key || entry.dependents() > 0 {
                return Ok(Reencoded::Stale);
            }
        }
        // A page moved out of a block takes more than its share of the frame; the
        // block's chunks go when its last page has left.
        if let Some(place) = entry.place()
            && bytes.len() >= place.len()
        {
            return Err(Error::InvalidArgument("a re-encode must shrink the object"));
        }
        let limit = self.pool.limit_bytes();
        self.pool.set_limit_bytes(usize::MAX);
        let stored = self.pool.store_object(bytes);
        self.pool.set_limit_bytes(limit);
        let place = stored?;
        if let Some(old) = entry.place()
            && let Err(e) = self.pool.free(old)
        {
            // Undo: the object just stored is live, so freeing it cannot fail.
            let _ = self.pool.free(place);
            return Err(e);
        }
        // The new object first, so the domain's charge never dips below zero.
        self.charge(entry.domain(), place.len());
        if let Some(old) = entry.place() {
            self.uncharge(entry.domain(), old.len());
        }
        // A page leaving its block (checked live above): what a chunk that
        // would not free leaks is the pool's bytes, not the page's.
        if entry.block().is_some() {
            let _ = self.free_encoding(&entry);
        }
        let entry = self.entry_mut(key)?;
        entry.set_place(place);
        entry.set_tag(tag);
        // Age back to 0; whether it was examined stays.
        entry.age_and_examined &= EXAMINED;
        // INVARIANT: a recompressed entry stays plain and keeps its dependents
        // (its link still counts them); a plain entry without dependents (checked
        // above) becomes a delta whose link names its base, and the base counts
        // one more dependent.
        if let Some((base_key, _)) = base {
            entry.link = base_key;
            self.entry_mut(base_key)?.link += 1;
        }
        Ok(Reencoded::Replaced)
    }

    /// Mark `key` one scanner round older; returns its new age.
    pub fn age(&mut self, key: u32) -> Option<u8> {
        let entry = self.entries.get_mut(SlabKey(key))?;
        if entry.age() < MAX_AGE {
            entry.age_and_examined += 1;
        }
        Some(entry.age())
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of metadata this store holds (entries and tree; the pool counts its own).
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Limit everything the backend holds to `limit` bytes (`usize::MAX`: none).
    /// Held bytes above it stay; stores that would grow the pool fail with
    /// [`Error::PoolFull`] until enough is freed.
    pub fn set_limit_bytes(&mut self, limit: usize, outside_bytes: usize) {
        self.limit_bytes = limit;
        self.fit_pool_to_limit(outside_bytes);
    }

    /// Give the pool what the limit leaves after the metadata and `outside_bytes`
    /// (the offset tables, which live outside the content lock). Called before
    /// every pool growth a store makes; metadata the same store then allocates
    /// (an entry, a tree node, an offset-table page) may pass the limit by those
    /// few pages, and is counted against the next store.
    pub fn fit_pool_to_limit(&mut self, outside_bytes: usize) {
        let pool_limit = if self.limit_bytes == usize::MAX {
            usize::MAX
        } else {
            let elsewhere = self.metadata_bytes().saturating_add(outside_bytes);
            self.limit_bytes.saturating_sub(elsewhere)
        };
        self.pool.set_limit_bytes(pool_limit);
    }

    /// Bytes held under the content lock: the pool and the metadata.
    pub fn held_bytes(&self) -> usize {
        self.pool.bytes_held().saturating_add(self.metadata_bytes())
    }

    /// Bytes of metadata: entries, block records, the dedup index and the
    /// similarity index.
    pub fn metadata_bytes(&self) -> usize {
        self.entries.bytes_held()
            + self.blocks.bytes_held()
            + self.index.bytes_held()
            + self.similar.pages_held() * PAGE_SIZE
    }

    /// The live block under `key`.
    pub fn block(&self, key: u32) -> Result<&Block, Error> {
        self.blocks.get(SlabKey(key)).ok_or(Error::InvalidHandle)
    }

    /// Move entry `key` to a free slot in a lower page of the entries' slab, if
    /// it is a lone entry (one sharer, no dependent delta) and a lower page has
    /// room, and return its new key. The dedup index follows it; the caller
    /// holds the lock of the one offset that names it and points that offset at
    /// the new key. The similarity index may keep the old key (a cache: every
    /// use checks a candidate's generation, tag and domain). So after a swap
    /// storm the slab packs down as the scanner visits the survivors: in the
    /// kernel guest the settled entries took 43 bytes a stored page, 24 a
    /// distinct content.
    ///
    /// Any other holder of the old key sees it freed (or reused under another
    /// generation), as if the entry had been freed: the scanner's and
    /// writeback's snapshots check generations, a load holds the offset's lock,
    /// and a store sharing it would hold a second sharer.
    pub fn move_lone_entry_lower(&mut self, key: u32) -> Result<Option<u32>, Error> {
        let entry = *self.entry(key)?;
        if entry.sharers != 1 || entry.dependents() != 0 {
            return Ok(None);
        }
        let Some(to) = self.entries.move_to_lower_page(SlabKey(key)) else {
            return Ok(None);
        };
        // An entry with sharers is in the dedup index, unless its page was not
        // to be shared (dedup scope `off`).
        self.index.replace(entry.sampled, key, to.0);
        Ok(Some(to.0))
    }

    /// `entry`'s base, if `entry` is a delta whose base is kept only for its
    /// deltas (no sharer: no offset holds it) and lies in a block the scanner
    /// rewrites ([`Block::should_rewrite`]).
    pub fn kept_base_in_block_to_rewrite(
        &self,
        entry: &Entry,
    ) -> Result<Option<(u32, Entry)>, Error> {
        let Some(base_key) = entry.base() else {
            return Ok(None);
        };
        let base = *self.entry(base_key)?;
        if base.sharers != 0 {
            return Ok(None);
        }
        match base.block() {
            Some((block, _)) if self.block(block)?.should_rewrite() => Ok(Some((base_key, base))),
            _ => Ok(None),
        }
    }

    /// Count a ladder visit to a page of block `key` (see
    /// [`Block::should_rewrite`]).
    pub fn note_block_visit(&mut self, key: u32) -> Result<(), Error> {
        self.blocks
            .get_mut(SlabKey(key))
            .ok_or(Error::InvalidHandle)?
            .note_visit();
        Ok(())
    }

    /// Cold blocks held.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    pub(crate) fn stored(&self) -> Stored<'_, P> {
        Stored {
            entries: &self.entries,
            blocks: &self.blocks,
            pool: &self.pool,
        }
    }

    /// Let go of `entry`'s encoded bytes: its pool object, or its page's place in
    /// a cold block (the block and its chunks go with its last page). The number
    /// of objects or places that were not what the books said (0 normally).
    ///
    /// The bytes go from the domain's charge whatever the pool says: no entry
    /// names them any more.
    fn free_encoding(&mut self, entry: &Entry) -> u32 {
        match (entry.place(), entry.block()) {
            (Some(place), _) => {
                self.uncharge(entry.domain(), place.len());
                u32::from(self.pool.free(place).is_err())
            }
            (None, Some((block, index))) => self.leave_block(block, index, entry.domain()),
            (None, None) => 1,
        }
    }

    /// The pool bytes `entry`'s page holds now: its object's, or for a page in
    /// a cold block its share of the frame (the frame over the block's live
    /// pages). `None` if it holds neither.
    pub(crate) fn page_bytes(&self, entry: &Entry) -> Option<usize> {
        match (entry.place(), entry.block()) {
            (Some(place), _) => Some(place.len()),
            (None, Some((key, _))) => {
                let block = self.blocks.get(SlabKey(key))?;
                Some(block.frame_len() / block.live().max(1))
            }
            (None, None) => None,
        }
    }

    /// Clear page `index` of block `key`; free the block and its chunks if it was
    /// the last live page (and uncharge its frame from `domain`, its pages'). The
    /// number of inconsistencies met (a page not live, a chunk that would not
    /// free).
    fn leave_block(&mut self, key: u32, index: u8, domain: Domain) -> u32 {
        let Some(block) = self.blocks.get_mut(SlabKey(key)) else {
            return 1;
        };
        if !block.is_live(index) {
            return 1;
        }
        if !block.leave(index) {
            return 0;
        }
        let mut leaked = 0;
        if let Some(block) = self.blocks.remove(SlabKey(key)) {
            self.uncharge(domain, block.frame_len());
            for i in 0..block.chunk_count() {
                let freed = block.chunk(i).map(|place| self.pool.free(place));
                leaked += u32::from(!matches!(freed, Some(Ok(()))));
            }
        }
        leaked
    }

    /// Form a cold block of `members` (entry keys and the generations the scanner
    /// read, in the order of their pages in the frame) from `frame`, written by
    /// the cold codec tagged `codec_tag`. Members whose entry changed since it was
    /// read (freed, reused, re-encoded into a delta or another block), and
    /// members of another domain than the first joining one, are left out:
    /// their pages stay in the frame as holes. A member may be a page of an
    /// older block (the scanner rewrites a block with holes by gathering its
    /// survivors anew): it leaves that block, which goes with its last page.
    /// The block is formed only if its frame is smaller than what the joining
    /// pages hold now (an object's bytes; in an older block, its share of that
    /// frame); those objects are freed. The caller has waited out the loads decoding in place
    /// (`Backend::lock_content_to_move`). All or nothing.
    ///
    /// Like a re-encode, the chunks are stored past the pool's limit if need be:
    /// the block gives back more than it takes.
    pub fn store_block(
        &mut self,
        members: &[(u32, u32)],
        frame: &[u8],
        codec_tag: u8,
    ) -> Result<BlockStored, Error> {
        let mut block = Block::new(members.len(), frame.len(), codec_tag)
            .ok_or(Error::InvalidArgument("block size"))?;
        let mut joining = 0u32;
        let mut alone = 0usize;
        // A block joins pages of one domain: the first member's.
        let mut domain = None;
        for (i, &(key, generation)) in members.iter().enumerate() {
            if let Some(entry) = self.entries.get(SlabKey(key))
                && entry.generation == generation
                && entry.tag() != TAG_DELTA
                && let Some(held) = self.page_bytes(entry)
                && !members[..i].iter().any(|&(k, _)| k == key)
                && *domain.get_or_insert(entry.domain()) == entry.domain()
            {
                alone += held;
                joining |= 1 << i;
            }
        }
        if joining == 0 {
            return Ok(BlockStored::Stale);
        }
        if frame.len() >= alone {
            return Ok(BlockStored::NotSmaller);
        }
        self.blocks.reserve(1)?;
        let limit = self.pool.limit_bytes();
        self.pool.set_limit_bytes(usize::MAX);
        let mut stored_chunks = 0;
        let mut failed = None;
        for (i, chunk) in frame.chunks(block.chunk_span()).enumerate() {
            match self.pool.store_object(chunk) {
                Ok(place) => {
                    block.set_chunk(i, place);
                    stored_chunks += 1;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.pool.set_limit_bytes(limit);
        for i in (0..MAX_BLOCK_PAGES).filter(|i| joining & (1 << i) != 0) {
            block.set_live(i as u8);
        }
        let inserted = match failed {
            None => self.blocks.insert(block),
            Some(e) => Err(e),
        };
        let block_key = match inserted {
            Ok(key) => key.0,
            Err(e) => {
                for place in (0..stored_chunks).filter_map(|i| block.chunk(i)) {
                    let _ = self.pool.free(place);
                }
                return Err(e);
            }
        };
        // The frame first, so the domain's charge never dips below zero.
        let domain = domain.unwrap_or_default();
        self.charge(domain, frame.len());
        let (mut leaked, mut moved) = (0, 0);
        for (i, &(key, _)) in members.iter().enumerate() {
            if joining & (1 << i) == 0 {
                continue;
            }
            let entry = self.entry_mut(key)?;
            let (old, old_block) = (entry.place(), entry.block());
            // INVARIANT: the page's bit is set in the block just inserted; the
            // entry keeps its sharers and its link (a base keeps its dependents).
            entry.set_block(block_key, i as u8);
            entry.age_and_examined &= EXAMINED;
            if let Some(old) = old {
                self.uncharge(domain, old.len());
                leaked += u32::from(self.pool.free(old).is_err());
            }
            // A page out of an older block leaves a hole there; the block
            // goes with its last page.
            if let Some((old_block, index)) = old_block {
                leaked += self.leave_block(old_block, index, domain);
                moved += 1;
            }
        }
        Ok(BlockStored::Formed {
            joined: joining.count_ones(),
            moved,
            leaked,
        })
    }

    /// Compact the pool ([`ObjectStore::compact`]), showing it every entry's and
    /// every block chunk's place, and pack the block records into the lowest
    /// keys ([`pack_block_records`](Self::pack_block_records)). The caller has
    /// waited out the loads decoding in place (`Backend::lock_content_to_move`):
    /// objects move.
    pub fn compact(&mut self) -> CompactStats {
        self.pack_block_records();
        let mut owners = Owners {
            entries: &mut self.entries,
            blocks: &mut self.blocks,
        };
        self.pool.compact(&mut owners)
    }

    /// Move block records from the highest keys of their slab into its lowest
    /// free slots, and point the entries of their pages at the new keys; the
    /// records moved. After a swap storm the surviving blocks are spread over
    /// pages their slab cannot give back (the kernel guest held 22 bytes of block
    /// records a stored page after settling, three times what its live blocks
    /// needed); packed, the pages above them go back. A pass runs only when the
    /// records would fit in at least two pages fewer than the slab holds.
    ///
    /// Nothing outside the content lock names a record by its key for longer
    /// than the lock is held: a load's snapshot copies the chunks' places, and a
    /// worker's decoded pages are named by key *and* serial, which moves with the
    /// record, so after a move they are merely not found under the new key.
    pub fn pack_block_records(&mut self) -> usize {
        let per_page = Slab::<Block, P>::objects_per_page();
        // One directory page and the spare besides the pages the records need.
        if self.blocks.pages_held() < self.blocks.len().div_ceil(per_page) + 4 {
            return 0;
        }
        // 1. From the top down, copy each record into the lowest free slot and
        // leave a forwarding record behind, until the lowest free slot is above
        // the record (the slab inserts at its lowest free key, so the holes fill
        // from the bottom and the copies are never moved twice).
        let mut lowest_moved = None;
        let mut moved = 0;
        let mut key = self.blocks.key_bound();
        while key > 0 {
            key -= 1;
            let Some(&block) = self.blocks.get(SlabKey(key)) else {
                continue;
            };
            let Ok(to) = self.blocks.insert(block) else {
                break;
            };
            if to.0 >= key {
                self.blocks.remove(to);
                break;
            }
            if let Some(record) = self.blocks.get_mut(SlabKey(key)) {
                *record = Block::forwarding_to(to.0);
            }
            lowest_moved = Some(key);
            moved += 1;
        }
        let Some(lowest_moved) = lowest_moved else {
            return 0;
        };
        // 2. Every page of a moved block follows it.
        let blocks = &self.blocks;
        self.entries.for_each_mut(|_, entry| {
            if let Some((block, index)) = entry.block()
                && let Some(to) = blocks.get(SlabKey(block)).and_then(Block::forwarded_to)
            {
                // INVARIANT: the copy at `to` has the same live bits, so it names
                // (`to`, `index`) as live exactly as the old record did.
                entry.set_block(to, index);
            }
        });
        // 3. The forwarding records go; the pages they leave empty go back.
        for key in lowest_moved..self.blocks.key_bound() {
            if self
                .blocks
                .get(SlabKey(key))
                .is_some_and(|b| b.forwarded_to().is_some())
            {
                self.blocks.remove(SlabKey(key));
            }
        }
        moved
    }

    /// The dedup work counted since the last call, and reset.
    pub fn take_dedup_counts(&mut self) -> DedupCounts {
        core::mem::take(&mut self.dedup_counts)
    }

    /// Charge every domain's pool bytes to `charges` from now on. Set before
    /// anything is stored: bytes stored before are never uncharged there
    /// either (refused with [`Error::InvalidArgument`] once an entry exists).
    pub fn set_charges(&mut self, charges: &'static dyn DomainCharges) -> Result<(), Error> {
        if !self.entries.is_empty() {
            return Err(Error::InvalidArgument("domain charges set after a store"));
        }
        self.charges = Some(charges);
        Ok(())
    }

    /// The pool bytes `domain`'s contents hold, counted from the entries: each
    /// object's length, and each cold block's frame once. What
    /// [`DomainCharges`] has been told, summed, must equal it.
    pub fn domain_bytes(&self, domain: Domain) -> usize {
        let mut bytes = 0;
        self.entries.for_each(|_, entry| {
            if entry.domain() != domain {
                return;
            }
            match (entry.place(), entry.block()) {
                (Some(place), _) => bytes += place.len(),
                // A block is counted at its lowest live page.
                (None, Some((key, index))) => {
                    if let Some(block) = self.blocks.get(SlabKey(key))
                        && block.lowest_live() == Some(index)
                    {
                        bytes += block.frame_len();
                    }
                }
                (None, None) => {}
            }
        });
        bytes
    }

    fn charge(&self, domain: Domain, bytes: usize) {
        if let Some(charges) = self.charges {
            charges.charge(domain, bytes);
        }
    }

    fn uncharge(&self, domain: Domain, bytes: usize) {
        if let Some(charges) = self.charges {
            charges.uncharge(domain, bytes);
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use foldswap_delta::{EncodeScratch, encode};
    use foldswap_mem::StdPageProvider;
    use xxhash_rust::xxh3::xxh3_64;

    use crate::domain::DomainSalt;

    const SALT: DomainSalt = DomainSalt::new(0x0123_4567_89ab_cdef);

    /// The dedup key of `page` in domain 0.
    fn key_of(page: &[u8; PAGE_SIZE]) -> ContentKey {
        SALT.content_key(xxh3_64(page), Domain(0))
    }

    /// The dedup key every page of `domain` would have under a constant hash.
    fn colliding(domain: Domain) -> ContentKey {
        SALT.content_key(0x5eed, domain)
    }

    use foldswap_pool::{CodecKind, TAG_LZ4, TAG_RAW};

    use super::*;
    use crate::Scratch;
    use crate::decode::plain_matches;

    fn text(seed: u8) -> [u8; PAGE_SIZE] {
        core::array::from_fn(|i| b"foldswap keeps pages "[i % 21] ^ seed ^ (i / 700) as u8)
    }

    /// `page` is stored under `key`, and no page one byte away from it is.
    fn check_only(content: &Content<StdPageProvider>, key: u32, page: &[u8; PAGE_SIZE]) {
        let mut scratch = Scratch::boxed();
        let decode = &mut scratch.decode;
        let same = |p: &[u8; PAGE_SIZE], d: &mut DecodeScratch| {
            same_as_stored(content.stored(), key, p, d)
        };
        assert_eq!(same(page, decode), Ok(true));
        for at in [0, 1, 17, 700, 2048, 4000, PAGE_SIZE - 1] {
            let mut other = *page;
            other[at] ^= 0x20;
            assert_eq!(same(&other, decode), Ok(false), "byte {at}");
        }
    }

    /// Store `page` (not stored before) as `bytes` encoded as `tag`; its key.
    fn store_new<C: ColdCodec>(
        content: &mut Content<StdPageProvider>,
        page: &[u8; PAGE_SIZE],
        bytes: &[u8],
        tag: u8,
        decode: &mut DecodeScratch<C>,
    ) -> u32 {
        store_new_as(content, key_of(page), page, bytes, tag, decode)
    }

    /// [`store_new`] under dedup key `hash`.
    fn store_new_as<C: ColdCodec>(
        content: &mut Content<StdPageProvider>,
        hash: ContentKey,
        page: &[u8; PAGE_SIZE],
        bytes: &[u8],
        tag: u8,
        decode: &mut DecodeScratch<C>,
    ) -> u32 {
        let Ok(Lookup::Vacant(pending)) = content.share_identical(hash, page, decode) else {
            panic!("stored before");
        };
        let (key, inserted) = content
            .insert_or_share(hash, page, bytes, tag, decode, pending)
            .unwrap();
        assert!(inserted);
        key
    }

    #[test]
    fn a_page_stored_between_lookup_and_insert_is_shared_not_stored_twice() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let page = text(4);
        let hash = key_of(&page);
        let Scratch {
            compress, decode, ..
        } = &mut *scratch;
        let bytes = compress
            .compress(CodecKind::Lz4, &page)
            .unwrap()
            .unwrap()
            .to_vec();
        // Two stores of the same page look it up before either inserts it.
        let lookups = [(); 2].map(|()| match content.share_identical(hash, &page, decode) {
            Ok(Lookup::Vacant(pending)) => pending,
            other => panic!("{other:?}"),
        });
        let first = content.insert_or_share(hash, &page, &bytes, TAG_LZ4, decode, lookups[0]);
        let second = content.insert_or_share(hash, &page, &bytes, TAG_LZ4, decode, lookups[1]);
        let (key, inserted) = first.unwrap();
        assert!(inserted);
        assert_eq!(second, Ok((key, false)));
        assert_eq!(content.len(), 1);
        assert_eq!(content.pool.len(), 1);
        // A later page's lookup, with no insert since, is used as it is.
        let other = text(5);
        let Ok(Lookup::Vacant(pending)) = content.share_identical(key_of(&other), &other, decode)
        else {
            panic!("not stored");
        };
        let raw = (&other[..], TAG_RAW);
        let inserted =
            content.insert_or_share(key_of(&other), &other, raw.0, raw.1, decode, pending);
        assert!(inserted.unwrap().1);
        assert!(matches!(
            content.share_identical(key_of(&other), &other, decode),
            Ok(Lookup::Shared(_))
        ));
    }

    #[test]
    fn a_deferred_candidate_is_only_a_reference_until_compared() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let (a, b) = (text(6), text(7));
        let hash = key_of(&a);
        let Scratch {
            compress, decode, ..
        } = &mut *scratch;
        let bytes = compress.compress(CodecKind::Lz4, &a).unwrap().unwrap();
        let key_a = store_new(&mut content, &a, bytes, TAG_LZ4, decode);
        // `b` under `a`'s hash (a collision): `a` comes back as an uncompared candidate.
        let Ok(Candidate::InPlace { key, object }) = content.share_candidate(hash, &b, decode)
        else {
            panic!("no candidate");
        };
        assert_eq!(key, key_a);
        // SAFETY: the entry is live and nothing re-encodes or compacts meanwhile.
        let in_place = unsafe { object.bytes() };
        assert_eq!(plain_matches(object.tag(), in_place, &b), Ok(false));
        assert_eq!(plain_matches(object.tag(), in_place, &a), Ok(true));
        // The candidate's sharer keeps `a` alive after its own sharer goes...
        assert!(content.unshare(key_a).unwrap().still_shared);
        assert_eq!(content.len(), 1);
        // ... and dropping it frees `a`.
        let released = content.unshare(key).unwrap();
        assert_eq!((released.still_shared, released.plain_freed), (false, 1));
        assert!(content.is_empty() && content.pool.is_empty());
        assert!(matches!(
            content.share_identical(hash, &b, decode),
            Ok(Lookup::Vacant(_))
        ));
    }

    /// `page` compressed with the scratch's cold codec, and its tag.
    fn cold_encoded(decode: &mut DecodeScratch, page: &[u8; PAGE_SIZE]) -> (std::vec::Vec<u8>, u8) {
        let mut out = [0u8; PAGE_SIZE];
        let len = decode.cold.compress_page(page, &mut out).unwrap().unwrap();
        (out[..len].to_vec(), decode.cold.kind().unwrap().tag())
    }

    #[test]
    fn a_candidate_not_in_place_is_compared_under_the_lock() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let page = text(8);
        let hash = key_of(&page);
        let decode = &mut scratch.decode;
        let (cold, tag) = cold_encoded(decode, &page);
        let key = store_new(&mut content, &page, &cold, tag, decode);
        assert!(matches!(
            content.share_candidate(hash, &page, decode),
            Ok(Candidate::Compared(Lookup::Shared(k))) if k == key
        ));
        let mut other = page;
        other[100] ^= 1;
        assert!(matches!(
            content.share_candidate(hash, &other, decode),
            Ok(Candidate::Compared(Lookup::Vacant(_)))
        ));
    }

    #[test]
    fn the_full_comparison_holds_for_every_encoding() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let (a, b, c) = (text(1), text(2), text(3));
        let mut store = |content: &mut Content<StdPageProvider>, page: &[u8; PAGE_SIZE], tag| {
            let Scratch {
                compress, decode, ..
            } = &mut *scratch;
            let bytes = match tag {
                TAG_RAW => &page[..],
                _ => compress.compress(CodecKind::Lz4, page).unwrap().unwrap(),
            };
            store_new(content, page, bytes, tag, decode)
        };
        let key_a = store(&mut content, &a, TAG_LZ4);
        let key_b = store(&mut content, &b, TAG_RAW);
        let key_c = store(&mut content, &c, TAG_LZ4);
        check_only(&content, key_a, &a);
        check_only(&content, key_b, &b);

        // a recompressed with the cold codec (a tag an entry cannot hold is
        // refused first, changing nothing).
        let (cold, tag) = cold_encoded(&mut scratch.decode, &a);
        let generation = content.entry(key_a).unwrap().generation;
        assert_eq!(
            content.reencode(key_a, generation, &cold, MAX_TAG + 1, None),
            Err(Error::InvalidArgument("tag past MAX_TAG"))
        );
        assert_eq!(content.entry(key_a).unwrap().tag(), TAG_LZ4);
        check_only(&content, key_a, &a);
        assert_eq!(
            content.reencode(key_a, generation, &cold, tag, None),
            Ok(Reencoded::Replaced)
        );
        check_only(&content, key_a, &a);

        // c kept as a delta against b.
        let mut out = [0u8; PAGE_SIZE];
        let index = EncodeScratch::from_page(&mut scratch.delta_index);
        let n = encode(&c, &b, index, &mut out).unwrap();
        let base = (key_b, content.entry(key_b).unwrap().generation);
        let generation = content.entry(key_c).unwrap().generation;
        assert_eq!(
            content.reencode(key_c, generation, &out[..n], TAG_DELTA, Some(base)),
            Ok(Reencoded::Replaced)
        );
        check_only(&content, key_c, &c);
    }

    /// Building a content store that runs out of pages part way gives back every
    /// page the parts built so far took (each part written in place is dropped
    /// again), at every point it can fail.
    #[test]
    fn a_content_store_that_cannot_be_built_holds_nothing() {
        use foldswap_mem::CountingProvider;
        let mut built = false;
        for pages in 0..8 {
            let provider = CountingProvider::new(StdPageProvider, pages);
            match Content::new(&provider, SimilarityConfig::default()) {
                Ok(content) => {
                    built = true;
                    drop(content);
                }
                Err(e) => assert_eq!(e, Error::OutOfMemory, "{pages} pages"),
            }
            assert_eq!(provider.pages_in_use(), 0, "{pages} pages");
        }
        assert!(built, "8 pages build a content store");
    }

    /// An entry packs its place's slot and length with its tag: each reads back as
    /// set, at the extremes (the last slot of a zspage, a whole raw page, the
    /// highest tag), and a page in a block names no place.
    #[test]
    fn an_entry_keeps_its_place_and_tag_apart() {
        let place = Place::from_parts(0xdead_beef, 255, MAX_OBJECT as u16);
        let mut entry = Entry::new(7, place, 1, TAG_RAW);
        assert_eq!((entry.place(), entry.tag()), (Some(place), TAG_RAW));
        entry.set_tag(MAX_TAG);
        assert_eq!((entry.place(), entry.tag()), (Some(place), MAX_TAG));
        entry.set_tag(TAG_DELTA);
        let moved = Place::from_parts(3, 0, 1);
        entry.set_place(moved);
        assert_eq!((entry.place(), entry.tag()), (Some(moved), TAG_DELTA));
        entry.set_block(9, 15);
        assert_eq!(
            (entry.place(), entry.block(), entry.tag()),
            (None, Some((9, 15)), TAG_BLOCK)
        );
    }

    /// A base recompressed after a delta came to depend on it keeps counting that
    /// dependent: when the base's last sharer goes, the base stays for the delta.
    /// (A re-encode once cleared the count, the base was freed under its delta and
    /// the delta's load failed as corrupt.)
    #[test]
    fn a_recompressed_base_keeps_its_dependents() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let (base_page, mut delta_page) = (text(6), text(6));
        delta_page[300] ^= 0x11;
        let Scratch {
            compress, decode, ..
        } = &mut *scratch;
        let mut lz4 = |page: &[u8; PAGE_SIZE]| {
            compress
                .compress(CodecKind::Lz4, page)
                .unwrap()
                .unwrap()
                .to_vec()
        };
        let (base_lz4, delta_lz4) = (lz4(&base_page), lz4(&delta_page));
        let base = store_new(&mut content, &base_page, &base_lz4, TAG_LZ4, decode);
        let delta = store_new(&mut content, &delta_page, &delta_lz4, TAG_LZ4, decode);

        let mut out = [0u8; PAGE_SIZE];
        let index = EncodeScratch::from_page(&mut scratch.delta_index);
        let n = encode(&delta_page, &base_page, index, &mut out).unwrap();
        let base_generation = content.entry(base).unwrap().generation;
        let generation = content.entry(delta).unwrap().generation;
        let patched = (&out[..n], Some((base, base_generation)));
        assert_eq!(
            content.reencode(delta, generation, patched.0, TAG_DELTA, patched.1),
            Ok(Reencoded::Replaced)
        );
        let (cold, tag) = cold_encoded(&mut scratch.decode, &base_page);
        assert_eq!(
            content.reencode(base, base_generation, &cold, tag, None),
            Ok(Reencoded::Replaced)
        );
        assert_eq!(content.entry(base).unwrap().dependents(), 1);

        let released = content.unshare(base).unwrap();
        assert_eq!((released.plain_freed, released.leaked), (0, 0));
        check_only(&content, delta, &delta_page);
        // The delta's last sharer frees it, and then the base it kept.
        let released = content.unshare(delta).unwrap();
        assert_eq!((released.deltas_freed, released.plain_freed), (1, 1));
        assert!(content.is_empty());
    }

    /// `pages` stored alone as lz4: their keys and generations.
    fn stored_as_lz4(
        content: &mut Content<StdPageProvider>,
        scratch: &mut Scratch,
        pages: &[[u8; PAGE_SIZE]],
    ) -> std::vec::Vec<(u32, u32)> {
        let Scratch {
            compress, decode, ..
        } = scratch;
        pages
            .iter()
            .map(|page| {
                let bytes = compress.compress(CodecKind::Lz4, page).unwrap().unwrap();
                let key = store_new(content, page, bytes, TAG_LZ4, decode);
                (key, content.entry(key).unwrap().generation)
            })
            .collect()
    }

    /// `pages` compressed as one block frame with the scratch's cold codec, and
    /// the codec's tag.
    fn block_frame(scratch: &mut Scratch, pages: &[[u8; PAGE_SIZE]]) -> (std::vec::Vec<u8>, u8) {
        let all: std::vec::Vec<u8> = pages.iter().flatten().copied().collect();
        let mut frame = std::vec![0u8; crate::block::MAX_FRAME];
        let cold = &mut scratch.decode.cold;
        let len = cold.compress_block(&all, &mut frame).unwrap().unwrap();
        frame.truncate(len);
        (frame, cold.kind().unwrap().tag())
    }

    /// `pages` stored alone as lz4, then formed into one cold block: their keys.
    fn stored_in_a_block(
        content: &mut Content<StdPageProvider>,
        scratch: &mut Scratch,
        pages: &[[u8; PAGE_SIZE]],
    ) -> std::vec::Vec<u32> {
        let members = stored_as_lz4(content, scratch, pages);
        let (frame, tag) = block_frame(scratch, pages);
        let stored = content.store_block(&members, &frame, tag).unwrap();
        assert_eq!(
            stored,
            BlockStored::Formed {
                joined: pages.len() as u32,
                moved: 0,
                leaked: 0
            }
        );
        members.iter().map(|&(key, _)| key).collect()
    }

    /// Pages in a block decode exactly (each from its place in the frame) and
    /// compare byte for byte; the block and its chunks go with its last page, and
    /// not before.
    #[test]
    fn a_block_holds_its_pages_until_the_last_goes() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let pages: std::vec::Vec<[u8; PAGE_SIZE]> = (20..26).map(text).collect();
        let lz4_bytes = content.pool.stats().object_bytes;
        assert_eq!(lz4_bytes, 0);
        let keys = stored_in_a_block(&mut content, &mut scratch, &pages);
        assert_eq!(content.block_count(), 1);
        assert!(content.pool.len() <= MAX_BLOCK_PAGES);
        for (key, page) in keys.iter().zip(&pages) {
            assert_eq!(content.entry(*key).unwrap().tag(), TAG_BLOCK);
            check_only(&content, *key, page);
            // A duplicate of a page in the block is found, after a full comparison.
            let found = content.share_identical(key_of(page), page, &mut scratch.decode);
            assert!(matches!(found, Ok(Lookup::Shared(k)) if k == *key));
            assert!(content.unshare(*key).unwrap().still_shared);
        }
        for key in &keys[..keys.len() - 1] {
            let released = content.unshare(*key).unwrap();
            assert_eq!((released.blocked_freed, released.leaked), (1, 0));
            assert_eq!(content.block_count(), 1);
        }
        check_only(&content, keys[keys.len() - 1], &pages[pages.len() - 1]);
        content.unshare(keys[keys.len() - 1]).unwrap();
        assert_eq!(content.block_count(), 0);
        assert!(content.is_empty() && content.pool.is_empty());
    }

    /// Only members still as the scanner read them join; a frame no smaller than
    /// the pages alone, or no member left, changes nothing.
    #[test]
    fn a_block_takes_only_the_members_still_as_read() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let pages: std::vec::Vec<[u8; PAGE_SIZE]> = (30..34).map(text).collect();
        let members = stored_as_lz4(&mut content, &mut scratch, &pages);
        let (frame, tag) = block_frame(&mut scratch, &pages);
        let objects = content.pool.len();
        // Not smaller: nothing changes.
        let too_big = std::vec![0x5au8; 4 * PAGE_SIZE];
        assert_eq!(
            content.store_block(&members, &too_big, tag),
            Ok(BlockStored::NotSmaller)
        );
        assert_eq!((content.pool.len(), content.block_count()), (objects, 0));
        // Member 1 freed, its key reused by another page: left out, a hole.
        content.unshare(members[1].0).unwrap();
        let other = text(40);
        let (reused, _) = stored_as_lz4(&mut content, &mut scratch, &[other])[0];
        assert_eq!(reused, members[1].0);
        let stored = content.store_block(&members, &frame, tag);
        assert_eq!(
            stored,
            Ok(BlockStored::Formed {
                joined: 3,
                moved: 0,
                leaked: 0
            })
        );
        check_only(&content, reused, &other);
        assert_eq!(content.entry(reused).unwrap().tag(), TAG_LZ4);
        for i in [0, 2, 3] {
            check_only(&content, members[i].0, &pages[i]);
        }
        // Every member in this block already: the same frame is no smaller
        // than their shares of it, nothing changes.
        assert_eq!(
            content.store_block(&members, &frame, tag),
            Ok(BlockStored::NotSmaller)
        );
        assert_eq!(content.block_count(), 1);
    }

    /// A page moved out of its block (the scanner's rewrite) keeps its content
    /// and its dependents; the block goes when its last page has left.
    #[test]
    fn pages_moved_out_of_a_block_free_it() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let pages: std::vec::Vec<[u8; PAGE_SIZE]> = (50..53).map(text).collect();
        let keys = stored_in_a_block(&mut content, &mut scratch, &pages);
        for (i, (key, page)) in keys.iter().zip(&pages).enumerate() {
            let (cold, tag) = cold_encoded(&mut scratch.decode, page);
            let generation = content.entry(*key).unwrap().generation;
            assert_eq!(
                content.reencode(*key, generation, &cold, tag, None),
                Ok(Reencoded::Replaced)
            );
            assert_eq!(content.block_count(), usize::from(i + 1 < keys.len()));
            check_only(&content, *key, page);
        }
        for key in keys {
            content.unshare(key).unwrap();
        }
        assert!(content.is_empty() && content.pool.is_empty());
    }

    /// The survivors of two blocks with holes join one new block: each is
    /// weighed at its share of its old frame, leaves its old block, and each old
    /// block goes with its last page; contents, sharers and charges stay right.
    #[test]
    fn survivors_of_blocks_join_a_new_block_and_the_old_ones_go() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let first: std::vec::Vec<[u8; PAGE_SIZE]> = (60..64).map(text).collect();
        let second: std::vec::Vec<[u8; PAGE_SIZE]> = (70..74).map(text).collect();
        let a = stored_in_a_block(&mut content, &mut scratch, &first);
        let b = stored_in_a_block(&mut content, &mut scratch, &second);
        for key in a[1..].iter().chain(&b[1..]) {
            content.unshare(*key).unwrap();
        }
        assert_eq!(content.block_count(), 2);
        let members = [a[0], b[0]].map(|k| (k, content.entry(k).unwrap().generation));
        let (frame, tag) = block_frame(&mut scratch, &[first[0], second[0]]);
        assert_eq!(
            content.store_block(&members, &frame, tag),
            Ok(BlockStored::Formed {
                joined: 2,
                moved: 2,
                leaked: 0
            })
        );
        assert_eq!(content.block_count(), 1);
        check_only(&content, a[0], &first[0]);
        check_only(&content, b[0], &second[0]);
        assert_eq!(content.domain_bytes(Domain::default()), frame.len());
        for key in [a[0], b[0]] {
            content.unshare(key).unwrap();
        }
        assert!(content.is_empty() && content.pool.is_empty());
    }

    /// After most blocks went, the survivors' records move into the lowest keys
    /// and the pages above them go back; every surviving page still loads its
    /// own bytes and leaves its (moved) block as before.
    #[test]
    fn block_records_pack_down_when_blocks_go() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let per_page = Slab::<Block, StdPageProvider>::objects_per_page();
        let blocks = 5 * per_page;
        let mut stored = std::vec::Vec::new();
        for b in 0..blocks {
            let pages: std::vec::Vec<[u8; PAGE_SIZE]> = (0..2)
                .map(|i| {
                    let mut page = text((b % 200) as u8);
                    page[..8].copy_from_slice(&((2 * b + i) as u64).to_le_bytes());
                    page
                })
                .collect();
            let keys = stored_in_a_block(&mut content, &mut scratch, &pages);
            stored.push((keys, pages));
        }
        let full = content.blocks.pages_held();
        // Every fourth block survives, spread over all the slab's pages.
        let mut survivors = std::vec::Vec::new();
        for (b, (keys, pages)) in stored.into_iter().enumerate() {
            if b % 4 == 3 {
                survivors.push((keys, pages));
            } else {
                for key in keys {
                    content.unshare(key).unwrap();
                }
            }
        }
        assert_eq!(
            content.blocks.pages_held(),
            full,
            "nothing to give back yet"
        );
        let moved = content.pack_block_records();
        assert!(moved > 0);
        let needed = survivors.len().div_ceil(per_page);
        assert!(
            content.blocks.pages_held() <= needed + 2,
            "{} pages for {needed} pages of records",
            content.blocks.pages_held()
        );
        assert!(content.blocks.key_bound() as usize <= (needed + 1) * per_page);
        // Packed already: another pass moves nothing.
        assert_eq!(content.pack_block_records(), 0);
        for (keys, pages) in &survivors {
            for (key, page) in keys.iter().zip(pages) {
                check_only(&content, *key, page);
            }
        }
        for (keys, _) in survivors {
            for key in keys {
                let released = content.unshare(key).unwrap();
                assert_eq!(released.leaked, 0);
            }
        }
        assert_eq!(content.block_count(), 0);
        assert!(content.is_empty() && content.pool.is_empty());
    }

    /// Every page stored under one hash (the worst a hash can do): each lookup
    /// meets all the others as candidates, and still each page is shared only with
    /// its own bytes; when a page's last sharer goes, it leaves the index and the
    /// others stay found.
    #[test]
    fn an_all_colliding_hash_never_merges_different_pages() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let pages: std::vec::Vec<[u8; PAGE_SIZE]> = (0..40).map(text).collect();
        let mut keys = std::vec::Vec::new();
        for page in &pages {
            let Scratch {
                compress, decode, ..
            } = &mut *scratch;
            let Ok(Lookup::Vacant(pending)) =
                content.share_identical(colliding(Domain(0)), page, decode)
            else {
                panic!("a different page under the same hash was taken as this one");
            };
            let bytes = compress.compress(CodecKind::Lz4, page).unwrap().unwrap();
            let (key, inserted) = content
                .insert_or_share(colliding(Domain(0)), page, bytes, TAG_LZ4, decode, pending)
                .unwrap();
            assert!(inserted);
            keys.push(key);
        }
        let counts = content.take_dedup_counts();
        assert_eq!(counts.comparisons, 40 * 39 / 2, "{counts:?}");
        assert_eq!(counts.collisions, counts.comparisons);
        for (page, &key) in pages.iter().zip(&keys) {
            let found = content.share_identical(colliding(Domain(0)), page, &mut scratch.decode);
            assert!(matches!(found, Ok(Lookup::Shared(k)) if k == key));
            assert_eq!(content.entry(key).unwrap().sharers, 2);
        }
        // Page 7 loses both sharers: it leaves the index; the rest are still found.
        for _ in 0..2 {
            content.unshare(keys[7]).unwrap();
        }
        assert!(content.entry(keys[7]).is_err());
        let found = content.share_identical(colliding(Domain(0)), &pages[7], &mut scratch.decode);
        assert!(matches!(found, Ok(Lookup::Vacant(_))));
        for (i, page) in pages.iter().enumerate().filter(|(i, _)| *i != 7) {
            let found = content.share_identical(colliding(Domain(0)), page, &mut scratch.decode);
            assert!(
                matches!(found, Ok(Lookup::Shared(k)) if k == keys[i]),
                "page {i}"
            );
        }
    }

    /// Identical pages of two domains under one constant hash: never candidates
    /// of each other, each domain's page shared only within its domain; a delta
    /// against a base of another domain and a block across domains are refused
    /// under the lock, whatever the scanner asked for.
    #[test]
    fn no_content_joins_two_domains() {
        let mut content = Content::new(StdPageProvider, SimilarityConfig::default()).unwrap();
        let mut scratch = Scratch::boxed();
        let [a, b] = [Domain(1), Domain(2)];
        let page = text(60);
        let lz4 = scratch
            .compress
            .compress(CodecKind::Lz4, &page)
            .unwrap()
            .unwrap()
            .to_vec();
        let decode = &mut scratch.decode;
        let in_a = store_new_as(&mut content, colliding(a), &page, &lz4, TAG_LZ4, decode);
        // Same bytes, same hash, other domain: nothing found, a content of its own.
        let in_b = store_new_as(&mut content, colliding(b), &page, &lz4, TAG_LZ4, decode);
        assert_ne!(in_a, in_b);
        assert_eq!(content.entry(in_a).unwrap().domain(), a);
        assert_eq!(content.entry(in_b).unwrap().domain(), b);
        for (domain, key) in [(a, in_a), (b, in_b)] {
            let found = content.share_identical(colliding(domain), &page, decode);
            assert!(matches!(found, Ok(Lookup::Shared(k)) if k == key));
        }
        // A delta of a page in domain b against the page of domain a: refused.
        let mut near = page;
        near[9] ^= 1;
        let near_lz4 = scratch
            .compress
            .compress(CodecKind::Lz4, &near)
            .unwrap()
            .unwrap()
            .to_vec();
        let decode = &mut scratch.decode;
        let near_b = store_new_as(
            &mut content,
            colliding(b),
            &near,
            &near_lz4,
            TAG_LZ4,
            decode,
        );
        let generation = content.entry(near_b).unwrap().generation;
        let base = (in_a, content.entry(in_a).unwrap().generation);
        let delta = [1u8; 8];
        assert_eq!(
            content.reencode(near_b, generation, &delta, TAG_DELTA, Some(base)),
            Ok(Reencoded::Stale)
        );
        assert_eq!(content.entry(near_b).unwrap().tag(), TAG_LZ4);
        // A block of pages of a, b, a: only the first member's domain joins.
        let decode = &mut scratch.decode;
        let near_a = store_new_as(
            &mut content,
            colliding(a),
            &near,
            &near_lz4,
            TAG_LZ4,
            decode,
        );
        let members = [in_a, in_b, near_a].map(|k| (k, content.entry(k).unwrap().generation));
        let (frame, tag) = block_frame(&mut scratch, &[page, page, near]);
        assert_eq!(
            content.store_block(&members, &frame, tag),
            Ok(BlockStored::Formed {
                joined: 2,
                moved: 0,
                leaked: 0
            })
        );
        assert_eq!(content.entry(in_a).unwrap().tag(), TAG_BLOCK);
        assert_eq!(content.entry(near_a).unwrap().tag(), TAG_BLOCK);
        assert_eq!(content.entry(in_b).unwrap().tag(), TAG_LZ4);
        check_only(&content, in_a, &page);
        check_only(&content, near_a, &near);
        check_only(&content, in_b, &page);
        check_only(&content, near_b, &near);
    }
}
