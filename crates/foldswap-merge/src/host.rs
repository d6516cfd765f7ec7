//! What the trees need from their host: page contents, and (resident face) merges.

use foldswap_mem::Error;

/// Read access to page contents, for both faces.
///
/// `Id` names a page the way the host likes: a pfn, a virtual address, a pool
/// handle. The trees store ids, never bytes. Reading a page may be expensive — the
/// swap face keeps pages compressed, so a comparison may mean decompressing into the
/// host's scratch memory — which is why every call is fallible and the trees count
/// each one ([`crate::MergeStats::comparisons`], [`crate::MergeStats::full_hashes`]).
///
/// On the swap face the host's `Id` must also be able to name the incoming page (the
/// one being stored, not yet in the pool), e.g. an enum `Incoming | Stored(handle)`.
pub trait PageContents {
    /// The host's name for a page.
    type Id: Copy + Eq;

    /// A full-strength 64-bit hash of the page's bytes (e.g. xxh3). Equal bytes must
    /// give equal hashes; the trees ask for it only when a sampled hash is shared by
    /// more than one candidate, and cache it for stable pages.
    fn full_hash(&mut self, page: Self::Id) -> Result<u64, Error>;

    /// Whether the two pages hold byte-identical contents (a full comparison). This
    /// is the only test that ever allows a merge.
    fn same_contents(&mut self, a: Self::Id, b: Self::Id) -> Result<bool, Error>;
}

/// What the host reports after it was asked to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeResult<Id> {
    /// Done. For [`MergeHost::merge_pair`], `kept` names the page both now share (the
    /// stable node's page from now on); for [`MergeHost::merge_into`] it is the kept
    /// page that was asked for.
    Merged {
        /// The page the merged pages now share.
        kept: Id,
    },
    /// The page changed before it could be write-protected (or is otherwise not
    /// mergeable now); nothing was merged and the host undid whatever it started.
    PageChanged,
}

/// The resident face's host (KSM's job): checksums and the merges themselves.
///
/// The trees decide; the host acts (kernel: write-protect, compare again under the
/// page lock, replace the mapping; userspace: count). The host reports back, and the
/// trees stay consistent whatever it says.
pub trait MergeHost: PageContents {
    /// A cheap checksum of the page (KSM uses xxhash32); a page whose checksum changed
    /// since the previous pass is volatile and kept out of the unstable tree.
    fn checksum(&mut self, page: Self::Id) -> Result<u32, Error>;

    /// Merge two pages found identical in the unstable tree into one shared page.
    fn merge_pair(
        &mut self,
        page: Self::Id,
        partner: Self::Id,
    ) -> Result<MergeResult<Self::Id>, Error>;

    /// Merge `page` into the stable page `kept` (which has room for one more sharer).
    fn merge_into(
        &mut self,
        page: Self::Id,
        kept: Self::Id,
    ) -> Result<MergeResult<Self::Id>, Error>;

    /// Whether `page` still maps the shared page `kept` (kernel: the PTE still points
    /// at the KSM page; a write has not broken it with copy-on-write).
    fn still_merged(&mut self, page: Self::Id, kept: Self::Id) -> Result<bool, Error>;

    /// The stable node for `kept` lost its last sharer; the host may free the page.
    fn release_kept(&mut self, kept: Self::Id);
}
