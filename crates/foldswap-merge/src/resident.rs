//! The resident face (KSM's job): tracked pages, the unstable tree, merge decisions.
//!
//! Every page the host scans has an rmap item (24 bytes with a 64-bit `Id`): the
//! host's page id, its checksum at the last scan, its sampled hash, one link and its
//! state. The link is the stable node while the page is merged, or the next item in
//! its unstable bucket while it waits in this pass's unstable tree — never both, so
//! one field serves. The unstable tree is a chained hash table whose bucket heads
//! live in provider pages; it is emptied at every pass boundary by clearing the heads
//! (an item knows it is in the tree from the pass number stored with its state).
//!
//! Scanning one page ([`Resident::scan`]), like KSM's `cmp_and_merge_page`:
//! 1. a merged page that the host says still maps its shared page is left alone; one
//!    whose sharing was broken by a write is unmerged first;
//! 2. the stable tree is searched; a byte-identical node with room → the host is
//!    asked to merge the page into it;
//! 3. a page whose checksum changed since its last scan is volatile: skipped;
//! 4. the unstable tree is searched; a byte-identical partner → the host merges the
//!    pair and the shared page becomes a new stable node (a dup in the chain if that
//!    content's nodes are all full); no partner → the page joins the unstable tree.

use foldswap_mem::{Error, PageProvider, SlabKey};

use crate::host::{MergeHost, MergeResult, PageContents};
use crate::link::Link;
use crate::page_array::PageArray;
use crate::page_box::BoxedSlab;
use crate::stable::{StableLookup, StableRef, StableTree, Unshared};
use crate::stats::MergeStats;

/// Unstable bucket heads in a new tree; it is resized to the number of tracked pages
/// at each pass boundary (a power of two, at least this many).
pub const MIN_UNSTABLE_BUCKETS: usize = 1024;

const STATE_BITS: u32 = 2;
const STATE_MASK: u32 = (1 << STATE_BITS) - 1;
const PASS_MASK: u32 = u32::MAX >> STATE_BITS;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Never scanned: its checksum is not known yet.
const NEW: u32 = 0;
/// Its checksum changed at its last scan, or a merge of it failed.
const VOLATILE: u32 = 1;
/// Put into the unstable tree in the pass stored with the state.
const UNSHARED: u32 = 2;
/// Shares a stable node (the link names it).
const MERGED: u32 = 3;

/// One tracked page.
struct RmapItem<Id> {
    page: Id,
    checksum: u32,
    sampled: u32,
    /// MERGED: the stable node; UNSHARED in this pass: the next item in the bucket
    /// (`None` at its end); any other state: `None`.
    link: Option<Link>,
    /// State in the low [`STATE_BITS`], the pass it was set in above them.
    state_pass: u32,
}

impl<Id> RmapItem<Id> {
    fn state(&self) -> u32 {
        self.state_pass & STATE_MASK
    }

    fn pass(&self) -> u32 {
        self.state_pass >> STATE_BITS
    }

    /// The stable node a MERGED item's link names.
    fn stable_node(&self) -> Option<StableRef> {
        self.link.map(|link| StableRef::from_index(link.key().0))
    }
}

/// A tracked page, as handed to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemRef(u32);

impl ItemRef {
    /// The raw key.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// What one scan did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOutcome {
    /// The page was merged already and still is.
    AlreadyMerged,
    /// The page was merged into an existing stable node.
    MergedIntoStable(StableRef),
    /// The page and an unstable partner became a new stable node.
    MergedPair(StableRef),
    /// The page's checksum changed since its last scan: skipped this pass.
    Volatile,
    /// No identical page yet: it waits in the unstable tree.
    Unshared,
    /// The host reported the page changed before it could be merged.
    PageChanged,
}

/// The resident face: rmap items, the unstable tree and a stable tree.
///
/// ```
/// # #[cfg(feature = "std")] {
/// use foldswap_merge::{Resident, ScanOutcome, testing::VecHost};
/// use foldswap_mem::StdPageProvider;
///
/// let mut host = VecHost::new();
/// let pages = [host.add_page(&[1u8; 4096]), host.add_page(&[1u8; 4096])];
/// let mut resident = Resident::new(StdPageProvider).unwrap();
/// let items = pages.map(|p| resident.track(p).unwrap());
/// for _pass in 0..2 {
///     for (item, page) in items.iter().zip(pages) {
///         let sampled = host.sampled_hash(page);
///         resident.scan(&mut host, *item, sampled).unwrap();
///     }
///     resident.end_pass().unwrap();
/// }
/// let stats = resident.stats();
/// assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 1));
/// # }
/// ```
pub struct Resident<Id, P: PageProvider> {
    stable: StableTree<Id, P>,
    /// In a page of its own, made on first use (see [`BoxedSlab`]).
    items: BoxedSlab<RmapItem<Id>, P>,
    heads: PageArray<u32, P>,
    pass: u32,
    unshared: u64,
    merged: u64,
}

impl<Id: Copy + Eq, P: PageProvider + Clone> Resident<Id, P> {
    /// An empty resident face.
    pub fn new(provider: P) -> Result<Self, Error> {
        Ok(Resident {
            stable: StableTree::new(provider.clone())?,
            items: BoxedSlab::new(provider.clone()),
            heads: PageArray::zeroed(provider, MIN_UNSTABLE_BUCKETS)?,
            pass: 0,
            unshared: 0,
            merged: 0,
        })
    }

    /// The stable tree (e.g. to change `max_page_sharing` before the first merge).
    pub fn stable_mut(&mut self) -> &mut StableTree<Id, P> {
        &mut self.stable
    }

    /// Start tracking `page` (KSM: an rmap item is created).
    pub fn track(&mut self, page: Id) -> Result<ItemRef, Error> {
        let key = self.items.insert(RmapItem {
            page,
            checksum: 0,
            sampled: 0,
            link: None,
            state_pass: NEW,
        })?;
        Ok(ItemRef(key.0))
    }

    /// Stop tracking (the page was unmapped). A merged page drops its sharer; the
    /// last one releases the shared page through the host.
    pub fn untrack<H: MergeHost<Id = Id>>(
        &mut self,
        host: &mut H,
        item: ItemRef,
    ) -> Result<(), Error> {
        self.leave_trees(host, item)?;
        self.items.remove(SlabKey(item.0));
        Ok(())
    }

    /// The host broke the sharing of `item` (a write faulted in its own copy; KSM's
    /// unmerge). It becomes an unscanned page again. No-op if it was not merged.
    pub fn unmerge<H: MergeHost<Id = Id>>(
        &mut self,
        host: &mut H,
        item: ItemRef,
    ) -> Result<(), Error> {
        let state = self.item(item)?.state();
        if state == MERGED {
            self.leave_trees(host, item)?;
            self.set_state(item.0, NEW);
        }
        Ok(())
    }

    /// Scan one tracked page whose sampled hash (from the host's hasher) is
    /// `sampled`. See the module documentation for the steps.
    pub fn scan<H: MergeHost<Id = Id>>(
        &mut self,
        host: &mut H,
        item: ItemRef,
        sampled: u32,
    ) -> Result<ScanOutcome, Error> {
        let it = self.item(item)?;
        let (page, state) = (it.page, it.state());
        if state == MERGED {
            let (kept, _) = it
                .stable_node()
                .and_then(|node| self.stable.node(node))
                .ok_or(Error::Corrupt)?;
            if host.still_merged(page, kept)? {
                return Ok(ScanOutcome::AlreadyMerged);
            }
            self.stable.stats_mut().merges_broken += 1;
            self.leave_trees(host, item)?;
        } else {
            self.leave_trees(host, item)?;
        }
        if let Some(it) = self.items.get_mut(SlabKey(item.0)) {
            it.sampled = sampled;
        }

        let vacancy = match self.stable.lookup(host, sampled, page)? {
            StableLookup::Found { node, kept } => {
                return self.merge_into_stable(host, item, page, node, kept);
            }
            StableLookup::Vacant(vacancy) => vacancy.without_full_hash(),
        };

        let checksum = host.checksum(page)?;
        let it = self.item(item)?;
        if it.state() == NEW || it.checksum != checksum {
            if let Some(it) = self.items.get_mut(SlabKey(item.0)) {
                it.checksum = checksum;
            }
            self.set_state(item.0, VOLATILE);
            return Ok(ScanOutcome::Volatile);
        }

        match self.find_unstable_partner(host, item, sampled, page)? {
            Some(partner) => {
                let partner_page = self.item(ItemRef(partner))?.page;
                self.stable.reserve_insert()?;
                match host.merge_pair(page, partner_page)? {
                    MergeResult::Merged { kept } => {
                        self.leave_trees(host, ItemRef(partner))?;
                        let node = self.stable.insert_checked(host, vacancy, kept)?;
                        self.stable.share(node)?;
                        self.set_merged(item.0, node);
                        self.set_merged(partner, node);
                        Ok(ScanOutcome::MergedPair(node))
                    }
                    MergeResult::PageChanged => self.merge_failed(item),
                }
            }
            None => {
                self.insert_unstable(item.0, sampled);
                Ok(ScanOutcome::Unshared)
            }
        }
    }

    /// End the pass: the unstable tree is emptied (and resized to the number of
    /// tracked pages when that is far off and memory allows).
    pub fn end_pass(&mut self) -> Result<(), Error> {
        self.pass = (self.pass + 1) & PASS_MASK;
        let wanted = self
            .items
            .len()
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .max(MIN_UNSTABLE_BUCKETS);
        if wanted != self.heads.len()
            && let Ok(heads) = PageArray::zeroed(self.heads.provider().clone(), wanted)
        {
            self.heads = heads;
            return Ok(());
        }
        self.heads.clear();
        Ok(())
    }

    /// The host's sampled hash changed (the ladder moved to another strength): the
    /// stable tree is re-keyed through `new_sampled(kept, old)` (all or nothing, see
    /// [`StableTree::rekey`]) and the unstable tree is flushed, as UKSM does.
    pub fn rekey(
        &mut self,
        new_sampled: impl FnMut(Id, u32) -> Result<u32, Error>,
    ) -> Result<(), Error> {
        self.stable.rekey(new_sampled)?;
        self.pass = (self.pass + 1) & PASS_MASK;
        self.heads.clear();
        Ok(())
    }

    /// KSM's figures plus the work spent.
    pub fn stats(&self) -> MergeStats {
        let stable = self.stable.stats();
        let tracked = self.items.len() as u64;
        MergeStats {
            pages_unshared: self.unshared,
            pages_volatile: tracked.saturating_sub(self.merged + self.unshared),
            ..stable
        }
    }

    /// Tracked pages.
    pub fn tracked(&self) -> usize {
        self.items.len()
    }

    /// The stable node `item` shares, if it is merged.
    pub fn merged_node(&self, item: ItemRef) -> Option<StableRef> {
        let it = self.items.get(SlabKey(item.0))?;
        if it.state() == MERGED {
            it.stable_node()
        } else {
            None
        }
    }

    /// Check the internal structure (O(n); for tests and fuzzing): the stable tree
    /// ([`StableTree::verify`]), every merged item names a live node, the per-state
    /// counts match the items, and every unstable bucket chain holds only this pass's
    /// unshared items under that bucket.
    pub fn verify(&self) -> Result<(), Error> {
        self.stable.verify()?;
        let (mut merged, mut unshared, mut bad) = (0u64, 0u64, false);
        self.items.for_each(|_, it| match it.state() {
            MERGED => {
                merged += 1;
                bad |= it
                    .stable_node()
                    .and_then(|node| self.stable.node(node))
                    .is_none();
            }
            UNSHARED => unshared += 1,
            _ => {}
        });
        let stats = self.stable.stats();
        if bad
            || merged != self.merged
            || unshared != self.unshared
            || merged != stats.pages_shared + stats.pages_sharing
        {
            return Err(Error::Corrupt);
        }
        let mut chained = 0;
        for bucket in 0..self.heads.len() {
            let mut link = Link::from_raw(self.heads.get(bucket));
            while let Some(at) = link {
                let it = self.items.get(at.key()).ok_or(Error::Corrupt)?;
                let here = it.state() == UNSHARED
                    && it.pass() == self.pass
                    && self.bucket(it.sampled) == bucket;
                if !here || chained >= self.items.len() {
                    return Err(Error::Corrupt);
                }
                chained += 1;
                link = it.link;
            }
        }
        Ok(())
    }

    /// The stable tree, read-only.
    pub fn stable(&self) -> &StableTree<Id, P> {
        &self.stable
    }

    /// Bytes of metadata held from the provider: rmap items, unstable heads, stable
    /// nodes and index.
    pub fn bytes_held(&self) -> usize {
        self.items.bytes_held() + self.heads.bytes_held() + self.stable.bytes_held()
    }

    /// Bytes of one rmap item (KSM's `rmap_item` is 64).
    pub const fn item_bytes() -> usize {
        core::mem::size_of::<RmapItem<Id>>()
    }

    fn item(&self, item: ItemRef) -> Result<&RmapItem<Id>, Error> {
        self.items.get(SlabKey(item.0)).ok_or(Error::InvalidHandle)
    }

    fn merge_into_stable<H: MergeHost<Id = Id>>(
        &mut self,
        host: &mut H,
        item: ItemRef,
        page: Id,
        node: StableRef,
        kept: Id,
    ) -> Result<ScanOutcome, Error> {
        match host.merge_into(page, kept)? {
            MergeResult::Merged { .. } => {
                self.stable.share(node)?;
                self.set_merged(item.0, node);
                Ok(ScanOutcome::MergedIntoStable(node))
            }
            MergeResult::PageChanged => self.merge_failed(item),
        }
    }

    fn merge_failed(&mut self, item: ItemRef) -> Result<ScanOutcome, Error> {
        self.stable.stats_mut().merges_failed += 1;
        self.set_state(item.0, VOLATILE);
        Ok(ScanOutcome::PageChanged)
    }

    /// An item in this pass's unstable tree with `sampled` and byte-identical content.
    fn find_unstable_partner<H: PageContents<Id = Id>>(
        &mut self,
        host: &mut H,
        item: ItemRef,
        sampled: u32,
        page: Id,
    ) -> Result<Option<u32>, Error> {
        let mut link = self.head(sampled);
        for _ in 0..=self.items.len() {
            let Some(key) = link.map(Link::key) else {
                break;
            };
            let Some(other) = self.items.get(key) else {
                break;
            };
            let (other_page, next) = (other.page, other.link);
            if key.0 != item.0 && other.sampled == sampled {
                let stats = self.stable.stats_mut();
                stats.comparisons += 1;
                if host.same_contents(page, other_page)? {
                    return Ok(Some(key.0));
                }
                stats.collisions += 1;
            }
            link = next;
        }
        Ok(None)
    }

    /// Take `item` out of whatever tree holds it: its stable node loses a sharer (the
    /// host releases the shared page if it was the last), or it leaves the unstable
    /// tree. It is left VOLATILE: out of both trees, its checksum known.
    fn leave_trees<H: MergeHost<Id = Id>>(
        &mut self,
        host: &mut H,
        item: ItemRef,
    ) -> Result<(), Error> {
        let it = self.item(item)?;
        let (state, pass, node, sampled) = (it.state(), it.pass(), it.stable_node(), it.sampled);
        match state {
            MERGED => {
                let node = node.ok_or(Error::InvalidHandle)?;
                if let Unshared::Released(kept) = self.stable.unshare(node)? {
                    host.release_kept(kept);
                }
                self.set_state(item.0, VOLATILE);
            }
            UNSHARED => {
                if pass == self.pass {
                    self.unlink_unstable(item.0, sampled);
                }
                self.set_state(item.0, VOLATILE);
            }
            _ => {}
        }
        Ok(())
    }

    /// Change an item's state, keeping the counters right.
    fn set_state(&mut self, key: u32, state: u32) {
        let pass = self.pass;
        let Some(it) = self.items.get_mut(SlabKey(key)) else {
            return;
        };
        let old = it.state();
        match old {
            MERGED => self.merged = self.merged.saturating_sub(1),
            UNSHARED => self.unshared = self.unshared.saturating_sub(1),
            _ => {}
        }
        match state {
            MERGED => self.merged += 1,
            UNSHARED => self.unshared += 1,
            _ => {}
        }
        it.state_pass = (pass << STATE_BITS) | state;
        if state != MERGED && state != UNSHARED {
            it.link = None;
        }
    }

    fn set_merged(&mut self, key: u32, node: StableRef) {
        self.set_state(key, MERGED);
        if let Some(it) = self.items.get_mut(SlabKey(key)) {
            it.link = Link::to(SlabKey(node.index()));
        }
    }

    fn bucket(&self, sampled: u32) -> usize {
        let bits = self.heads.len().trailing_zeros();
        let mixed = (sampled as u64 | 1 << 32).wrapping_mul(MULTIPLIER);
        (mixed >> (64 - bits)) as usize
    }

    /// The first item in `sampled`'s unstable bucket. A bucket holds
    /// [`Link::raw`] (0, as the array starts, for an empty one).
    fn head(&self, sampled: u32) -> Option<Link> {
        Link::from_raw(self.heads.get(self.bucket(sampled)))
    }

    fn insert_unstable(&mut self, key: u32, sampled: u32) {
        let head = self.head(sampled);
        let bucket = self.bucket(sampled);
        self.set_state(key, UNSHARED);
        if let Some(it) = self.items.get_mut(SlabKey(key)) {
            it.link = head;
        }
        self.heads.set(bucket, Link::raw(Link::to(SlabKey(key))));
    }

    fn unlink_unstable(&mut self, key: u32, sampled: u32) {
        let next = self.items.get(SlabKey(key)).and_then(|it| it.link);
        let this = Link::to(SlabKey(key));
        let bucket = self.bucket(sampled);
        let mut at = self.head(sampled);
        if at == this {
            self.heads.set(bucket, Link::raw(next));
            return;
        }
        for _ in 0..=self.items.len() {
            let Some(it) = at.and_then(|at| self.items.get_mut(at.key())) else {
                return;
            };
            if it.link == this {
                it.link = next;
                return;
            }
            at = it.link;
        }
    }
}
