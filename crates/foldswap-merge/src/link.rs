//! A typed link to a slab slot: `Option<Link>` is "a node, or none".
//!
//! A link holds the slot's key plus one in a `NonZeroU32`, so `None` takes the value
//! 0 (the niche) and `Option<Link>` is four bytes, as a bare `u32` key was. "No node"
//! is a variant, not a key value a node could also have. The raw form (0 for none)
//! is what zeroed bucket arrays start with, so a fresh bucket reads as empty.

use core::num::NonZeroU32;

use foldswap_mem::SlabKey;

/// A link to the slab slot [`key`](Self::key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Link(NonZeroU32);

// `Option<Link>` packs "none" into the niche: no bigger than the key it replaces.
const _: () = assert!(core::mem::size_of::<Option<Link>>() == core::mem::size_of::<u32>());

impl Link {
    /// The link to `key`. Every key a [`foldswap_mem::Slab`] issues has one: its keys
    /// stop below `u32::MAX` (the end of its free list), so `key + 1` never wraps.
    /// A key of `u32::MAX` is no slot and gets `None`.
    pub(crate) const fn to(key: SlabKey) -> Option<Link> {
        match NonZeroU32::new(key.0.wrapping_add(1)) {
            Some(raw) => Some(Link(raw)),
            None => None,
        }
    }

    /// The slot this link names.
    pub(crate) const fn key(self) -> SlabKey {
        SlabKey(self.0.get() - 1)
    }

    /// Rebuild from [`raw`](Self::raw) (0: none).
    pub(crate) const fn from_raw(raw: u32) -> Option<Link> {
        match NonZeroU32::new(raw) {
            Some(raw) => Some(Link(raw)),
            None => None,
        }
    }

    /// The link as a plain integer for a bucket array: 0 for none, else key + 1.
    pub(crate) const fn raw(link: Option<Link>) -> u32 {
        match link {
            Some(link) => link.0.get(),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slab_key_has_a_link_and_none_is_not_a_key() {
        for key in [0, 1, 4095, u32::MAX - 1] {
            let link = Link::to(SlabKey(key)).unwrap();
            assert_eq!(link.key(), SlabKey(key));
            assert_eq!(Link::from_raw(Link::raw(Some(link))), Some(link));
        }
        // Key 0 is a node like any other; "none" is a variant of its own.
        assert_ne!(Link::to(SlabKey(0)), None);
        assert_eq!(Link::to(SlabKey(u32::MAX)), None);
        assert_eq!(Link::raw(None), 0);
        assert_eq!(Link::from_raw(0), None);
    }
}

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
