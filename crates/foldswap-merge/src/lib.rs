//! # foldswap-merge — the stable and unstable merge trees
//!
//! Deduplication finds pages with identical bytes and keeps one copy. KSM does it with
//! two red-black trees ordered by `memcmp` of page contents: a *stable* tree of pages
//! already shared (write-protected, so their contents cannot change) and an *unstable*
//! tree of candidates seen in this pass (not protected, so rebuilt every pass). UKSM
//! keyed its trees by a sampled hash instead, with a second level keyed by a full hash
//! when a key holds several pages. This crate keeps KSM's two trees and its rules, but
//! keys them by hash, because a `memcmp`-ordered tree compares against ~log₂ n pages
//! per lookup — each one a full page read, and on the swap face a decompression —
//! while a hash-keyed table reads a few buckets and compares against one page only
//! when the hash matches (`docs/merge.md` has the measurement).
//!
//! ## Keys: sampled hash → full hash → bytes
//! The caller passes each page's *sampled hash* (a `u32`, from the ladder's sampling
//! hasher or anything else). When exactly one stable node carries that sampled hash,
//! the page is compared byte for byte with it at once. When several do, the page's
//! *full hash* (a `u64` from the host, e.g. xxh3) is computed once and compared with
//! each node's full hash (computed lazily, then cached in the node); only equal full
//! hashes lead to a byte comparison. **Only a full byte comparison ever merges.** A
//! host whose hashes all collide makes the trees slower, never wrong.
//!
//! ## The stable tree ([`StableTree`])
//! One node per distinct shared content (32 bytes with a 64-bit page id): the host's
//! id of the shared page, its sampled and full hash, its sharer count and chain
//! links. Nodes live in a [`foldswap_mem::Slab`]; an open-addressing table (buckets
//! in provider pages, grown by doubling, fallible) maps sampled hashes to chain heads.
//! A node takes at most `max_page_sharing` sharers (KSM's tunable, default 256); more
//! identical pages get a further node (a *dup*) chained behind the head, so a lookup
//! still costs one comparison. The last sharer leaving frees the node (a head's first
//! dup takes its place in the table).
//!
//! Two faces use it:
//! - the **swap face** stores immutable pages: [`StableTree::store_or_share`] either
//!   finds a byte-identical stored page (it gains a sharer) or lets the host store
//!   this one and gives it a node; [`StableTree::unshare`] drops a reference and says
//!   when the last one is gone. One store costs one table probe, plus one comparison
//!   when the sampled hash matches.
//! - the **resident face** ([`Resident`], KSM's job) scans live pages.
//!
//! ## The unstable tree and the resident face ([`Resident`])
//! Each tracked page has an *rmap item* (24 bytes with a 64-bit id; KSM's is 64).
//! A scan of one page: a merged page that still shares is skipped (one whose sharing
//! a write broke is unmerged); the stable tree is searched; a page whose checksum
//! changed since its last scan is *volatile* and goes no further (KSM's gate against
//! merging pages that are being written); the unstable tree is searched, and a
//! byte-identical partner makes a new stable node; else the page joins the unstable
//! tree, which is a chained hash table emptied at every pass boundary.
//!
//! Merges are decisions handed to the host ([`MergeHost`]): "merge this page into that
//! node", "merge these two". The host does the work (in the kernel: write-protect,
//! compare again, remap) and answers *merged* or *page changed*; the trees stay
//! consistent either way.
//!
//! ## When the sampled hash changes
//! The ladder may move its hash to another strength; the stored keys are then stale
//! (lookups would miss, never merge wrongly). [`StableTree::rekey`] and
//! [`Resident::rekey`] re-key every stored content through a caller-supplied
//! function, all or nothing, and flush the unstable tree, as UKSM does.
//! [`StableTree::verify`] and [`Resident::verify`] check the whole structure (for
//! tests and fuzzing).
//!
//! ## Memory and failure
//! `#![no_std]`, `core` only; `unsafe` only in `page_box` (a value moved into a
//! provider page, so the trees stay a few hundred bytes by value and no frame holds
//! more than one slab — the kernel's stacks are 16 KiB). All memory comes from the host's
//! [`foldswap_mem::PageProvider`]. Every operation that allocates reserves first, so
//! on [`foldswap_mem::Error::OutOfMemory`] nothing changed; a host error in the middle
//! of an operation leaves both trees consistent. The API takes `&mut self`; the
//! backend shards and locks. Statistics ([`MergeStats`]) use KSM's names plus the
//! comparisons, full hashes and collisions spent.
#![no_std]
#![deny(unsafe_code)]

mod host;
mod link;
mod page_array;
#[allow(unsafe_code)]
mod page_box;
mod resident;
mod stable;
mod stable_index;
mod stats;
#[cfg(feature = "std")]
pub mod testing;

pub use host::{MergeHost, MergeResult, PageContents};
pub use resident::{ItemRef, MIN_UNSTABLE_BUCKETS, Resident, ScanOutcome};
pub use stable::{
    DEFAULT_MAX_PAGE_SHARING, StableLookup, StableRef, StableTree, Stored, Unshared, Vacancy,
};
pub use stable_index::{GROW_AT, MIN_BUCKETS, MUST_GROW_AT, SHRINK_AT, StableIndex};
pub use stats::MergeStats;
