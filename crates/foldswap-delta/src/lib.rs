//! # foldswap-delta — similarity patching (Difference Engine) for foldswap
//!
//! A page that is not identical to any stored page may still be *similar* to one:
//! the same object layout with a few fields changed, the same table with a row
//! added. Difference Engine (OSDI 2008) stores such a page as a patch against the
//! similar page (its "base") instead of compressing it alone. This crate is the
//! core of that: how to find a base, and how to write and read the patch.
//!
//! ```text
//!   new page ──signature()──► k keys ──candidates()──► up to k base ids (maybe stale)
//!                                                          │ caller fetches each base
//!                                                          ▼
//!   encode(new, base, scratch, &mut out[..limit]) ──► delta (COPY/ADD/FILL) or Incompressible
//!   decode(base, delta, &mut page)                ──► the page, byte-exact, or Corrupt
//! ```
//!
//! ## Finding a base: `HashSimilarityDetector(k, s)` ([`SimilarityIndex`])
//! A seed fixes `k * s` pseudo-random offsets of small blocks (64 bytes in the
//! paper; 16 by default, measured best here). A page's
//! [`Signature`] is `k` keys, each the hash of `s` of those blocks. The index maps
//! each key to the newest page that had it, in a table of [`WAYS`]-way buckets in
//! pages from the host's [`PageProvider`](foldswap_mem::PageProvider); a full bucket
//! evicts its oldest entry. A lookup gives at most `k` candidate ids. The caller
//! keeps each stored page's signature so it can remove the page without its bytes.
//! `(k, s) = (2, 1)` is the paper's setting and the default.
//!
//! ## The patch: a bounded COPY/ADD delta ([`encode`], [`decode`])
//! Like xdelta / VCDIFF, but for one page against one base: COPY a run from the base
//! (at a displacement from the current position, so equal-offset similarity costs
//! one or two bytes per run), ADD literal bytes, FILL a run of one byte. Matches are
//! found with a hash index of the base's 8-byte keys held in a caller-provided
//! one-page [`EncodeScratch`], tried after the "same displacement as last time"
//! guess, then extended backward and forward a word at a time. The output buffer is
//! the budget: once the delta would exceed it, [`encode`] stops with
//! [`Error::Incompressible`](foldswap_mem::Error::Incompressible), so the caller
//! pays little for a candidate that cannot beat the compressed size; [`best_delta`]
//! tries every candidate and keeps the smallest delta without allocating. [`decode`]
//! checks every length and offset and that the delta covers exactly one page: a
//! corrupt or hostile delta is [`Error::Corrupt`](foldswap_mem::Error::Corrupt),
//! never a panic or an out-of-bounds write.
//!
//! The wire format is documented in the `format` module (source); `docs/delta.md`
//! has the measurements on the dev corpus, and why patching belongs in the
//! backend's scanner rather than its store path (an attempt costs about one more
//! lz4 compress per page; signature and lookup cost 0.4 % of one).
//!
//! `#![no_std]`, `core` only: no allocation outside the provider, no floating
//! point, no stack frame over a few hundred bytes (the 4 KiB tables live in the
//! caller's scratch or in provider pages).
#![no_std]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod choose;
mod decode;
mod encode;
mod format;
mod index;
mod signature;
#[cfg(feature = "std")]
pub mod survey;

pub use choose::{BestDelta, best_delta};
pub use decode::decode;
pub use encode::{
    BASE_STRIDE, EncodeScratch, MAX_DELTA_BYTES, SKIP_TRIGGER, TABLE_BITS, TABLE_SLOTS, encode,
};
pub use index::{Candidates, IndexCapacity, IndexStats, MAX_TABLE_PAGES, SimilarityIndex, WAYS};
pub use signature::{
    BLOCK_BYTES_RANGE, DEFAULT_BLOCK_BYTES, DEFAULT_SEED, MAX_HASHES_PER_INDEX, MAX_INDEXES,
    PAPER_BLOCK_BYTES, Sampler, Signature, SimilarityConfig,
};
