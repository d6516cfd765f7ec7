//! Typed links between this crate's slab slots: foldswap-mem's [`SlabLink`], under
//! the name the trees use. `Option<Link>` is "a node, or none" in four bytes; the
//! raw form (0 for none) is what zeroed bucket arrays start with.

pub(crate) use foldswap_mem::SlabLink as Link;

#[cfg(all(test, feature = "std"))]
mod layout {
    use foldswap_mem::StdPageProvider;

    use crate::{Resident, StableTree};

    #[test]
    fn typed_links_keep_nodes_and_items_their_size() {
        // The sizes the crate documents with a 64-bit page id; links take no more
        // room than the `u32` keys they replace.
        assert_eq!(StableTree::<u64, StdPageProvider>::node_bytes(), 32);
        assert_eq!(Resident::<u64, StdPageProvider>::item_bytes(), 24);
    }
}
