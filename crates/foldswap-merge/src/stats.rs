//! Statistics in KSM's vocabulary, plus the work the trees spent.

/// What the trees hold and what finding it cost. Counters only grow, except the
/// four `pages_*` figures, which describe the present state like KSM's sysfs files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Stable nodes: distinct shared pages in use (KSM `pages_shared`).
    pub pages_shared: u64,
    /// Sharers beyond the first of each stable node: pages saved (KSM `pages_sharing`).
    pub pages_sharing: u64,
    /// Tracked pages that went into the unstable tree in their last scan and are not
    /// merged (KSM `pages_unshared`). Always 0 for a bare stable tree.
    pub pages_unshared: u64,
    /// Tracked pages whose checksum changed at their last scan (KSM `pages_volatile`).
    pub pages_volatile: u64,
    /// Stable nodes that are duplicates chained behind a full node (KSM
    /// `stable_node_dups`, past `max_page_sharing`).
    pub stable_node_dups: u64,
    /// Full byte comparisons asked of the host.
    pub comparisons: u64,
    /// Full-strength hashes asked of the host.
    pub full_hashes: u64,
    /// Candidates whose sampled hash matched but whose contents differed.
    pub collisions: u64,
    /// Of those, candidates whose full hash matched too (the bytes still differed).
    pub full_hash_collisions: u64,
    /// Merges and references made (each after a full comparison).
    pub merges: u64,
    /// Merges the host refused because the page changed meanwhile.
    pub merges_failed: u64,
    /// Merged pages found written to (copy-on-write broke the sharing) and unmerged.
    pub merges_broken: u64,
}
