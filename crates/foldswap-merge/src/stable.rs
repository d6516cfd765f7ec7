//! The stable tree: one node per distinct shared content, with its sharers.
//!
//! Nodes live in a [`Slab`]; a [`StableIndex`] maps each chain head's sampled hash to
//! its key. Identical content past `max_page_sharing` sharers gets another node (a
//! "dup") linked behind the head, never into the index, so a lookup pays one byte
//! comparison however long the chain is.
//!
//! ```text
//!   index[sampled] ──► head ──next_dup──► dup ──next_dup──► dup
//!                      (256)   ◄prev_dup─ (256)  ◄prev_dup─ (17)
//! ```

use foldswap_mem::{Error, PageProvider, SlabKey};

use crate::host::PageContents;
use crate::link::Link;
use crate::page_box::BoxedSlab;
use crate::stable_index::StableIndex;
use crate::stats::MergeStats;

/// KSM's default limit on sharers per stable node.
pub const DEFAULT_MAX_PAGE_SHARING: u32 = 256;

/// Set in [`StableNode::sharers_and_flags`] once `full_hash` holds the page's hash.
const FULL_HASH_KNOWN: u32 = 1 << 31;

/// A stable node: 32 bytes with a 64-bit `Id`.
struct StableNode<Id> {
    kept: Id,
    full_hash: u64,
    sampled: u32,
    sharers_and_flags: u32,
    /// The node before this one in its chain; `None` for the chain head.
    prev_dup: Option<Link>,
    /// The node after this one in its chain; `None` for the last.
    next_dup: Option<Link>,
}

impl<Id> StableNode<Id> {
    fn sharers(&self) -> u32 {
        self.sharers_and_flags & !FULL_HASH_KNOWN
    }

    fn known_full_hash(&self) -> Option<u64> {
        (self.sharers_and_flags & FULL_HASH_KNOWN != 0).then_some(self.full_hash)
    }

    fn set_full_hash(&mut self, hash: u64) {
        self.full_hash = hash;
        self.sharers_and_flags |= FULL_HASH_KNOWN;
    }
}

/// A stable node, as handed to callers. Stays valid until its last sharer is
/// dropped with [`StableTree::unshare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StableRef(u32);

impl StableRef {
    /// The raw key (for hosts that pack it into their own entries).
    pub const fn index(self) -> u32 {
        self.0
    }

    /// Rebuild from [`index`](Self::index). A wrong value is reported by the tree as
    /// [`Error::InvalidHandle`], never dereferenced.
    pub const fn from_index(index: u32) -> Self {
        StableRef(index)
    }
}

/// Where a page with no shareable match would go: returned by
/// [`StableTree::lookup`], consumed by [`StableTree::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vacancy {
    sampled: u32,
    full_hash: Option<u64>,
    /// Identical content whose nodes are all full: (chain head, tree epoch).
    full_chain: Option<(u32, u64)>,
}

impl Vacancy {
    /// Whether identical content is stored but every node of it is full.
    pub fn content_is_full(&self) -> bool {
        self.full_chain.is_some()
    }

    /// Forget the looked-up page's full hash (the resident face: the page may have
    /// changed before the host write-protected it, so the node recomputes it lazily).
    pub(crate) fn without_full_hash(self) -> Self {
        Vacancy {
            full_hash: None,
            ..self
        }
    }
}

/// What a stable lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StableLookup<Id> {
    /// A node with byte-identical content and room for one more sharer.
    Found {
        /// The node.
        node: StableRef,
        /// Its page.
        kept: Id,
    },
    /// No node to share: the page may be inserted here.
    Vacant(Vacancy),
}

/// The result of [`StableTree::store_or_share`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<Id> {
    /// An identical page was stored already; it gained a sharer.
    Shared {
        /// Its node.
        node: StableRef,
        /// Its page.
        kept: Id,
    },
    /// The page was new; the host stored it and it has a node of its own.
    Inserted {
        /// The new node.
        node: StableRef,
        /// The host's id for the stored page.
        kept: Id,
    },
}

impl<Id: Copy> Stored<Id> {
    /// The node either way.
    pub fn node(&self) -> StableRef {
        match *self {
            Stored::Shared { node, .. } | Stored::Inserted { node, .. } => node,
        }
    }
}

/// The result of dropping a sharer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unshared<Id> {
    /// The node still has this many sharers.
    Kept(u32),
    /// That was the last sharer: the node is gone and the host may free `kept`.
    Released(Id),
}

/// The stable tree. See the crate documentation for the algorithm.
///
/// ```
/// # #[cfg(feature = "std")] {
/// use foldswap_merge::{StableTree, Stored, Unshared, testing::VecHost};
/// use foldswap_mem::StdPageProvider;
///
/// let mut host = VecHost::new();
/// let a = host.add_page(&[7u8; 4096]);
/// let b = host.add_page(&[7u8; 4096]);
/// let mut tree = StableTree::new(StdPageProvider).unwrap();
/// let first = tree.store_or_share(&mut host, 1, a, |_| Ok(a)).unwrap();
/// assert!(matches!(first, Stored::Inserted { .. }));
/// // `b` is byte-identical: it shares `a`'s node, nothing is stored twice.
/// let second = tree.store_or_share(&mut host, 1, b, |_| Ok(b)).unwrap();
/// assert_eq!(second, Stored::Shared { node: first.node(), kept: a });
/// assert_eq!(tree.stats().pages_sharing, 1);
/// assert_eq!(tree.unshare(first.node()), Ok(Unshared::Kept(1)));
/// assert_eq!(tree.unshare(first.node()), Ok(Unshared::Released(a)));
/// # }
/// ```
pub struct StableTree<Id, P: PageProvider> {
    /// In a page of its own, made on first insert (see [`BoxedSlab`]).
    nodes: BoxedSlab<StableNode<Id>, P>,
    index: StableIndex<P>,
    max_page_sharing: u32,
    /// Bumped whenever a node is freed, so a [`Vacancy`] can tell its chain is stale.
    epoch: u64,
    sharers: u64,
    dups: u64,
    stats: MergeStats,
}

impl<Id: Copy + Eq, P: PageProvider + Clone> StableTree<Id, P> {
    /// An empty tree with [`DEFAULT_MAX_PAGE_SHARING`]. Holds no page until the first
    /// insert.
    pub fn new(provider: P) -> Result<Self, Error> {
        Ok(StableTree {
            nodes: BoxedSlab::new(provider.clone()),
            index: StableIndex::new(provider)?,
            max_page_sharing: DEFAULT_MAX_PAGE_SHARING,
            epoch: 0,
            sharers: 0,
            dups: 0,
            stats: MergeStats::default(),
        })
    }

    /// Change the sharing limit (KSM: only while nothing is shared). Fails with
    /// [`Error::InvalidArgument`] if `limit < 2` or nodes exist.
    pub fn set_max_page_sharing(&mut self, limit: u32) -> Result<(), Error> {
        if !(2..FULL_HASH_KNOWN).contains(&limit) {
            return Err(Error::InvalidArgument(
                "max_page_sharing must be at least 2",
            ));
        }
        if !self.nodes.is_empty() {
            return Err(Error::InvalidArgument(
                "max_page_sharing can change only while the stable tree is empty",
            ));
        }
        self.max_page_sharing = limit;
        Ok(())
    }

    /// The sharing limit.
    pub fn max_page_sharing(&self) -> u32 {
        self.max_page_sharing
    }

    /// Find a node holding exactly `page`'s bytes with room for another sharer:
    /// sampled hash → (if several nodes share it) full hash → byte comparison.
    pub fn lookup<H: PageContents<Id = Id>>(
        &mut self,
        host: &mut H,
        sampled: u32,
        page: Id,
    ) -> Result<StableLookup<Id>, Error> {
        let (head, full_hash) = self.find_content(host, sampled, page)?;
        let Some(head) = head else {
            return Ok(StableLookup::Vacant(Vacancy {
                sampled,
                full_hash,
                full_chain: None,
            }));
        };
        match self.dup_with_room(head) {
            Some((node, kept)) => Ok(StableLookup::Found { node, kept }),
            None => Ok(StableLookup::Vacant(Vacancy {
                sampled,
                full_hash,
                full_chain: Some((head, self.epoch)),
            })),
        }
    }

    /// Add one sharer to `node`. Fails with [`Error::CapacityExceeded`] if it is full.
    pub fn share(&mut self, node: StableRef) -> Result<u32, Error> {
        let limit = self.max_page_sharing;
        let entry = self
            .nodes
            .get_mut(SlabKey(node.0))
            .ok_or(Error::InvalidHandle)?;
        if entry.sharers() >= limit {
            return Err(Error::CapacityExceeded);
        }
        entry.sharers_and_flags += 1;
        let sharers = entry.sharers();
        self.sharers += 1;
        self.stats.merges += 1;
        Ok(sharers)
    }

    /// Make sure the next [`insert`](Self::insert) cannot fail for lack of memory.
    pub fn reserve_insert(&mut self) -> Result<(), Error> {
        self.nodes.reserve(1)?;
        self.index.reserve_one()
    }

    /// Insert a node for `kept` with one sharer, where `lookup` left `vacancy`.
    /// `kept` must hold the same bytes as the page that was looked up (the swap face
    /// stores that very page). If identical content is stored with every node full,
    /// the new node joins that chain as a dup.
    pub fn insert(&mut self, vacancy: Vacancy, kept: Id) -> Result<StableRef, Error> {
        self.reserve_insert()?;
        let chain = vacancy
            .full_chain
            .filter(|&(head, epoch)| epoch == self.epoch && self.nodes.contains(SlabKey(head)));
        let mut node = StableNode {
            kept,
            full_hash: 0,
            sampled: vacancy.sampled,
            sharers_and_flags: 1,
            prev_dup: None,
            next_dup: None,
        };
        if let Some(hash) = vacancy.full_hash {
            node.set_full_hash(hash);
        }
        let key = self.nodes.insert(node)?;
        match chain {
            Some((head, _)) => self.link_dup_after(SlabKey(head), key),
            None => {
                if let Err(e) = self.index.insert(vacancy.sampled, key.0) {
                    self.nodes.remove(key);
                    return Err(e);
                }
            }
        }
        self.sharers += 1;
        Ok(StableRef(key.0))
    }

    /// [`insert`](Self::insert) for a page that may have changed since its lookup
    /// (the resident face): a dup joins the full chain only if its bytes equal the
    /// chain head's, else it becomes a chain of its own. After
    /// [`reserve_insert`](Self::reserve_insert) this cannot fail.
    pub fn insert_checked<H: PageContents<Id = Id>>(
        &mut self,
        host: &mut H,
        vacancy: Vacancy,
        kept: Id,
    ) -> Result<StableRef, Error> {
        let mut vacancy = vacancy;
        if let Some((head, _)) = vacancy.full_chain {
            let head_kept = self.nodes.get(SlabKey(head)).map(|n| n.kept);
            // A host error here must not undo a merge the host already made: the
            // page then simply starts a chain of its own.
            let same = match head_kept {
                Some(head_kept) => compare(host, &mut self.stats, kept, head_kept).unwrap_or(false),
                None => false,
            };
            if !same {
                vacancy.full_chain = None;
            }
        }
        self.insert(vacancy, kept)
    }

    /// The swap face's store path in one call: share a byte-identical stored page, or
    /// call `store` to keep this one and give it a node. Memory for the node is
    /// reserved before `store` runs, so a failure leaves nothing half-done.
    pub fn store_or_share<H: PageContents<Id = Id>>(
        &mut self,
        host: &mut H,
        sampled: u32,
        page: Id,
        store: impl FnOnce(&mut H) -> Result<Id, Error>,
    ) -> Result<Stored<Id>, Error> {
        match self.lookup(host, sampled, page)? {
            StableLookup::Found { node, kept } => {
                self.share(node)?;
                Ok(Stored::Shared { node, kept })
            }
            StableLookup::Vacant(vacancy) => {
                self.reserve_insert()?;
                let kept = store(host)?;
                let node = self.insert(vacancy, kept)?;
                Ok(Stored::Inserted { node, kept })
            }
        }
    }

    /// Re-key the tree after the host's sampled hash changed (the ladder moved to
    /// another strength): `new_sampled(kept, old)` gives each stored content's new
    /// sampled hash. Full hashes stay valid. All or nothing: if the closure or the
    /// provider fails, the tree is left as it was.
    pub fn rekey(
        &mut self,
        mut new_sampled: impl FnMut(Id, u32) -> Result<u32, Error>,
    ) -> Result<(), Error> {
        let mut rekeyed = self.index.empty_like()?;
        let nodes = &self.nodes;
        self.index.try_for_each(|sampled, head| {
            let kept = nodes.get(SlabKey(head)).ok_or(Error::Corrupt)?.kept;
            rekeyed.insert(new_sampled(kept, sampled)?, head)
        })?;
        self.index = rekeyed;
        let StableTree { index, nodes, .. } = self;
        index.try_for_each(|sampled, head| {
            let mut link = Link::to(SlabKey(head));
            for _ in 0..=nodes.len() {
                let Some(node) = link.and_then(|at| nodes.get_mut(at.key())) else {
                    break;
                };
                node.sampled = sampled;
                link = node.next_dup;
            }
            Ok(())
        })
    }

    /// Drop one sharer of `node`; the last one frees the node.
    pub fn unshare(&mut self, node: StableRef) -> Result<Unshared<Id>, Error> {
        let entry = self
            .nodes
            .get_mut(SlabKey(node.0))
            .ok_or(Error::InvalidHandle)?;
        let sharers = entry.sharers().saturating_sub(1);
        entry.sharers_and_flags = (entry.sharers_and_flags & FULL_HASH_KNOWN) | sharers;
        let kept = entry.kept;
        self.sharers = self.sharers.saturating_sub(1);
        if sharers > 0 {
            return Ok(Unshared::Kept(sharers));
        }
        self.remove_node(node.0);
        Ok(Unshared::Released(kept))
    }

    /// The page and sharer count of `node`, if it exists.
    pub fn node(&self, node: StableRef) -> Option<(Id, u32)> {
        self.nodes
            .get(SlabKey(node.0))
            .map(|n| (n.kept, n.sharers()))
    }

    /// Visit every node: (node, kept page, sharers).
    pub fn for_each_node(&self, mut visit: impl FnMut(StableRef, Id, u32)) {
        self.nodes
            .for_each(|key, n| visit(StableRef(key.0), n.kept, n.sharers()));
    }

    /// Check the tree's internal structure (O(n); for tests and fuzzing): every index
    /// entry names a live chain head under its own sampled hash, chain links agree
    /// both ways, every node sits in exactly one chain, and the sharer and dup counts
    /// add up. Fails with [`Error::Corrupt`] naming nothing more.
    pub fn verify(&self) -> Result<(), Error> {
        let (mut visited, mut heads, mut sharers) = (0usize, 0u64, 0u64);
        let nodes = &self.nodes;
        self.index.try_for_each(|sampled, head| {
            heads += 1;
            let mut prev = None;
            let mut link = Link::to(SlabKey(head));
            while let Some(at) = link {
                let node = nodes.get(at.key()).ok_or(Error::Corrupt)?;
                let linked = node.prev_dup == prev && node.sampled == sampled;
                if !linked || node.sharers() == 0 || visited >= nodes.len() {
                    return Err(Error::Corrupt);
                }
                visited += 1;
                sharers += u64::from(node.sharers());
                prev = link;
                link = node.next_dup;
            }
            Ok(())
        })?;
        let counts_agree = visited == nodes.len()
            && sharers == self.sharers
            && self.dups == visited as u64 - heads;
        if counts_agree {
            Ok(())
        } else {
            Err(Error::Corrupt)
        }
    }

    /// Statistics; `pages_unshared` and `pages_volatile` stay 0 here.
    pub fn stats(&self) -> MergeStats {
        let nodes = self.nodes.len() as u64;
        MergeStats {
            pages_shared: nodes,
            pages_sharing: self.sharers.saturating_sub(nodes),
            stable_node_dups: self.dups,
            ..self.stats
        }
    }

    /// Bytes of metadata held from the provider (nodes and index).
    pub fn bytes_held(&self) -> usize {
        self.nodes.bytes_held() + self.index.bytes_held()
    }

    /// Bytes of one stable node.
    pub const fn node_bytes() -> usize {
        core::mem::size_of::<StableNode<Id>>()
    }

    pub(crate) fn stats_mut(&mut self) -> &mut MergeStats {
        &mut self.stats
    }

    /// The chain head holding `page`'s exact bytes, and the page's full hash if it
    /// had to be computed.
    fn find_content<H: PageContents<Id = Id>>(
        &mut self,
        host: &mut H,
        sampled: u32,
        page: Id,
    ) -> Result<(Option<u32>, Option<u64>), Error> {
        let StableTree {
            nodes,
            index,
            stats,
            ..
        } = self;
        match index.first(sampled) {
            (None, _) => Ok((None, None)),
            (Some(key), false) => {
                let Some(kept) = nodes.get(SlabKey(key)).map(|n| n.kept) else {
                    return Ok((None, None));
                };
                let same = compare(host, stats, page, kept)?;
                Ok((same.then_some(key), None))
            }
            _ => {
                stats.full_hashes += 1;
                let full_hash = host.full_hash(page)?;
                let found = index.find_map(sampled, |key| {
                    let node = nodes.get_mut(SlabKey(key))?;
                    let node_hash = match node.known_full_hash() {
                        Some(hash) => hash,
                        None => {
                            stats.full_hashes += 1;
                            match host.full_hash(node.kept) {
                                Ok(hash) => {
                                    node.set_full_hash(hash);
                                    hash
                                }
                                Err(e) => return Some(Err(e)),
                            }
                        }
                    };
                    if node_hash != full_hash {
                        stats.collisions += 1;
                        return None;
                    }
                    match compare(host, stats, page, node.kept) {
                        Ok(true) => Some(Ok(key)),
                        Ok(false) => {
                            stats.full_hash_collisions += 1;
                            None
                        }
                        Err(e) => Some(Err(e)),
                    }
                });
                Ok((found.transpose()?, Some(full_hash)))
            }
        }
    }

    /// The first node of `head`'s chain with room for another sharer.
    fn dup_with_room(&self, head: u32) -> Option<(StableRef, Id)> {
        let mut link = Link::to(SlabKey(head));
        for _ in 0..=self.nodes.len() {
            let key = link?.key();
            let node = self.nodes.get(key)?;
            if node.sharers() < self.max_page_sharing {
                return Some((StableRef(key.0), node.kept));
            }
            link = node.next_dup;
        }
        None
    }

    fn link_dup_after(&mut self, head: SlabKey, key: SlabKey) {
        let next = self.nodes.get(head).and_then(|h| h.next_dup);
        if let Some(new) = self.nodes.get_mut(key) {
            new.prev_dup = Link::to(head);
            new.next_dup = next;
        }
        if let Some(h) = self.nodes.get_mut(head) {
            h.next_dup = Link::to(key);
        }
        if let Some(n) = next.and_then(|next| self.nodes.get_mut(next.key())) {
            n.prev_dup = Link::to(key);
        }
        self.dups += 1;
    }

    /// Free node `key`, keeping its chain and the index consistent.
    fn remove_node(&mut self, key: u32) {
        let Some(node) = self.nodes.remove(SlabKey(key)) else {
            return;
        };
        self.epoch += 1;
        if let Some(prev) = node.prev_dup {
            // A dup: unlink it from its chain.
            if let Some(prev) = self.nodes.get_mut(prev.key()) {
                prev.next_dup = node.next_dup;
            }
            if let Some(next) = node
                .next_dup
                .and_then(|next| self.nodes.get_mut(next.key()))
            {
                next.prev_dup = node.prev_dup;
            }
            self.dups = self.dups.saturating_sub(1);
        } else if let Some(first_dup) = node.next_dup
            && let Some(next) = self.nodes.get_mut(first_dup.key())
        {
            // A head with dups: the first dup takes its place in the index.
            next.prev_dup = None;
            next.sampled = node.sampled;
            if let (None, Some(hash)) = (next.known_full_hash(), node.known_full_hash()) {
                next.set_full_hash(hash);
            }
            self.index.replace(node.sampled, key, first_dup.key().0);
            self.dups = self.dups.saturating_sub(1);
        } else {
            self.index.remove(node.sampled, key);
        }
    }
}

/// One counted byte comparison.
fn compare<H: PageContents>(
    host: &mut H,
    stats: &mut MergeStats,
    a: H::Id,
    b: H::Id,
) -> Result<bool, Error> {
    stats.comparisons += 1;
    let same = host.same_contents(a, b)?;
    if !same {
        stats.collisions += 1;
    }
    Ok(same)
}
