//! # foldswap-pool — the compressed pool
//!
//! Pages leaving RAM that foldswap cannot deduplicate end up here, compressed and
//! packed tightly, the way zswap stores them in zsmalloc. The crate has four layers,
//! each usable on its own:
//!
//! 1. **Same-filled detection** ([`same_filled_word`]): a page that is one 8-byte
//!    word repeated (zero pages above all) is kept as that word and costs no pool
//!    space. It is checked first because it is the cheapest test.
//! 2. **Codecs** ([`Codec`], [`CodecKind`]): lz4 (lz4_flex block format) and raw
//!    deflate level 1 (miniz_oxide, feature `alloc`). Their state (the lz4 hash
//!    table, the deflate compressor, the output buffer) lives in a per-worker
//!    [`CompressScratch`] kept in host storage, never on the stack, so a backend
//!    compresses *outside* its lock. Decompression is checked and bounded: corrupt
//!    bytes give [`Error::Corrupt`], never a panic or a write past the page. The
//!    scanner's *cold* codec is the host's ([`ColdCodec`]): zstd through libzstd
//!    ([`ZstdCodec`], feature `zstd`) or the kernel's `lib/zstd`, deflate for hosts
//!    without it.
//! 3. **The object store** ([`ObjectStore`]): zsmalloc-like packing of any bytes up
//!    to a page. Objects are rounded up to a size class (16-byte steps, merged when
//!    their zspages have the same shape) and packed back to back into *zspages* of
//!    1 to [`MAX_ZSPAGE_PAGES`] provider pages; an object may span a page boundary.
//!    Unlike zsmalloc, a zspage takes its pages one at a time as its slots reach
//!    them, so a class's partly filled zspage never holds more than one page it
//!    does not need (on the dev corpus: 1.03× the compressed bytes held, metadata
//!    included).
//!    Callers keep each object's [`Place`] (zspage, slot, length: 8 bytes) in
//!    their own records, so the store keeps no per-object metadata;
//!    [`ObjectStore::compact`] moves objects out of sparse zspages, frees them
//!    whole and rewrites the places the caller shows it ([`PlaceOwners`]). A byte
//!    limit makes stores fail with [`Error::PoolFull`].
//! 4. **The page layer** ([`PagePool`]): zswap's policy — same-filled first, then
//!    compress with the chosen codec, then the threshold (default 3/4 of a page):
//!    keep the page raw or reject it ([`Error::Incompressible`]), as configured —
//!    and statistics (pages, bytes, rejects by cause, time per codec from a
//!    host [`Clock`]).
//!
//! ```text
//!  store_page(page)
//!    │ same_filled_word? ──yes──► StoredPage::SameFilled(word)      (no space)
//!    │ no
//!    ▼ prepare_page: scratch.compress(codec)  (outside any lock)
//!    │ len > threshold? ──► Reject: Error::Incompressible | KeepRaw: 4096 raw bytes
//!    ▼ commit: ObjectStore::store_object(bytes)
//!        class_for_len ─► partial zspage of that class (or a new one, within the limit)
//!        ─► its lowest free slot, marked live in the zspage's bitmap
//!    ◄── StoredPage::Object(Place { zspage, slot, len }, tag)
//! ```
//!
//! Failure never loses data: every allocation is made (or fails, with a typed
//! error) before anything stored is touched. The crate is `#![no_std]` and needs
//! only `core`; all memory comes from the host's [`PageProvider`]. There is no
//! floating point and nothing larger than a few hundred bytes on the stack.
//!
//! [`PageProvider`]: foldswap_mem::PageProvider
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod class;
mod clock;
mod codec;
mod cold;
mod lz4_match;
mod page_pool;
mod same_filled;
mod store;
#[cfg(feature = "std")]
pub mod testing;

pub use class::{
    CLASS_COUNT, CLASS_STEP, ClassShape, MAX_OBJECT, MAX_OBJECTS_PER_ZSPAGE, MAX_ZSPAGE_PAGES,
    class_for_len, class_shape,
};
#[cfg(feature = "std")]
pub use clock::StdClock;
pub use clock::{Clock, NoClock};
pub use codec::{
    COMPRESS_BOUND, Codec, CodecKind, CompressScratch, DecompressScratch, InflateSlot, Lz4,
    TAG_DEFLATE, TAG_FIRST_HOST, TAG_LZ4, TAG_RAW, TAG_ZSTD, decompress, decompress_lz4,
};
#[cfg(feature = "alloc")]
pub use codec::{DEFLATE_LEVEL, Deflate, Inflater};
#[cfg(feature = "alloc")]
pub use cold::DeflateCodec;
#[cfg(feature = "zstd")]
pub use cold::ZstdCodec;
pub use cold::{ColdCodec, ColdKind, DefaultColdCodec, NoColdCodec};
pub use foldswap_mem::Error;
pub use lz4_match::lz4_matches;
pub use page_pool::{
    DEFAULT_THRESHOLD, PagePolicy, PagePool, PageStats, PoorCompression, Prepared, StoredPage,
    prepare_page,
};
pub use same_filled::{fill_page, same_filled_word};
pub use store::{
    ClassOccupancy, CompactStats, ObjectInPlace, ObjectStore, Place, PlaceOwners, StoreStats,
};

/// The raw building blocks under the codecs, re-exported so benchmarks can measure
/// the pool against plain lz4_flex / miniz_oxide with exactly the same build of them.
pub mod building_blocks {
    pub use lz4_flex;
    pub use miniz_oxide;
    #[cfg(feature = "zstd")]
    pub use zstd;
}
