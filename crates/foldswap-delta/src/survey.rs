//! What patching would save on a corpus (feature `std`; tests, benches, the CLI).
//!
//! Walks the pages in order the way the backend's store path would: a same-filled
//! page and an exact duplicate of an earlier page are left to their own (cheaper)
//! paths; any other page looks up its candidates, tries a delta against each with
//! the budget "smaller than this page's compressed size", and is patched if one
//! fits. A patched page is not a base (deltas never chain on deltas): its keys are
//! pointed at its base instead. Every other page is indexed as a base.

use std::collections::HashMap;
use std::vec::Vec;

use foldswap_mem::{Error, PAGE_SIZE, StdPageProvider};

use crate::{
    Candidates, EncodeScratch, IndexCapacity, MAX_DELTA_BYTES, MAX_TABLE_PAGES, SimilarityConfig,
    SimilarityIndex, best_delta, encode,
};

/// One page the survey stores as a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// The page's index in the corpus.
    pub page: usize,
    /// The index of the earlier page it is a delta against.
    pub base: usize,
    /// Bytes of the delta (compressed, for [`survey_compressed_deltas`]).
    pub delta_bytes: usize,
    /// Bytes of the page compressed alone (capped at a page).
    pub compressed_bytes: usize,
}

/// The survey's counts.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Pages walked.
    pub pages: usize,
    /// Pages that are one 8-byte word repeated (zero included).
    pub same_filled: usize,
    /// Pages identical to an earlier page.
    pub duplicates: usize,
    /// The rest: pages that would be compressed without patching.
    pub unique: usize,
    /// Unique pages with at least one candidate base.
    pub with_candidates: usize,
    /// Candidate deltas tried.
    pub deltas_tried: usize,
    /// Sum of the unique pages' compressed sizes (capped at a page each).
    pub compressed_bytes: usize,
    /// Pages whose best delta is smaller than their compressed size.
    pub patches: Vec<Patch>,
}

impl Survey {
    /// Bytes saved by storing the patched pages as deltas instead of compressed.
    pub fn saved_bytes(&self) -> usize {
        self.patches
            .iter()
            .map(|p| p.compressed_bytes - p.delta_bytes)
            .sum()
    }

    /// Bytes of the unique pages with patching: compressed or delta, whichever is kept.
    pub fn patched_total_bytes(&self) -> usize {
        self.compressed_bytes - self.saved_bytes()
    }
}

/// Survey `pages` (4096-byte pages back to back) with a `config` index;
/// `compressed_size` gives a page's size under the codec patching must beat.
/// Fails with [`Error::WrongLength`] if `pages` is not whole pages.
pub fn survey(
    pages: &[u8],
    config: SimilarityConfig,
    compressed_size: impl FnMut(&[u8; PAGE_SIZE]) -> usize,
) -> Result<Survey, Error> {
    walk(pages, config, compressed_size, None)
}

/// [`survey`] with the delta itself compressed by `delta_size` (e.g. deflate, as
/// xdelta's secondary compression): a page is patched when its compressed delta is
/// smaller than the page compressed alone; [`Patch::delta_bytes`] is that size.
pub fn survey_compressed_deltas(
    pages: &[u8],
    config: SimilarityConfig,
    compressed_size: impl FnMut(&[u8; PAGE_SIZE]) -> usize,
    mut delta_size: impl FnMut(&[u8]) -> usize,
) -> Result<Survey, Error> {
    walk(pages, config, compressed_size, Some(&mut delta_size))
}

/// Size of a delta after the secondary compressor.
type DeltaSize<'a> = dyn FnMut(&[u8]) -> usize + 'a;

/// Patch `page` with the candidate whose delta, compressed by `delta_size`, is the
/// smallest below `budget`: (base, compressed delta size, candidates tried).
fn cheapest_compressed_delta<'p>(
    page: &[u8; PAGE_SIZE],
    candidates: &Candidates<usize>,
    buffers: &mut Buffers,
    budget: usize,
    page_at: impl Fn(usize) -> Option<&'p [u8; PAGE_SIZE]>,
    delta_size: &mut DeltaSize<'_>,
) -> (Option<(usize, usize)>, usize) {
    let mut best: Option<(usize, usize)> = None;
    let mut tried = 0;
    for id in candidates.iter() {
        let Some(base) = page_at(id) else { continue };
        tried += 1;
        let room = buffers.delta.get_mut(..PAGE_SIZE).unwrap_or(&mut []);
        let Ok(len) = encode(page, base, &mut buffers.scratch, room) else {
            continue;
        };
        let size = delta_size(buffers.delta.get(..len).unwrap_or(&[]));
        if size < best.map_or(budget, |b| b.1) {
            best = Some((id, size));
        }
    }
    (best, tried)
}

fn walk(
    pages: &[u8],
    config: SimilarityConfig,
    mut compressed_size: impl FnMut(&[u8; PAGE_SIZE]) -> usize,
    mut delta_size: Option<&mut DeltaSize<'_>>,
) -> Result<Survey, Error> {
    if !pages.len().is_multiple_of(PAGE_SIZE) {
        return Err(Error::WrongLength {
            expected: pages.len() / PAGE_SIZE * PAGE_SIZE,
            actual: pages.len(),
        });
    }
    let capacity = IndexCapacity::growable(MAX_TABLE_PAGES);
    let mut index = SimilarityIndex::<usize, _>::new(StdPageProvider, config, capacity)?;
    let mut buffers = std::boxed::Box::new(Buffers {
        scratch: EncodeScratch::new(),
        base: [0; PAGE_SIZE],
        spare: [0; PAGE_SIZE],
        delta: [0; MAX_DELTA_BYTES],
    });
    let mut seen: HashMap<u128, usize> = HashMap::new();
    let page_at = |i: usize| -> Option<&[u8; PAGE_SIZE]> {
        pages
            .get(i * PAGE_SIZE..(i + 1) * PAGE_SIZE)?
            .try_into()
            .ok()
    };
    let mut out = Survey::default();
    for (i, page) in pages.chunks_exact(PAGE_SIZE).enumerate() {
        let Ok(page) = <&[u8; PAGE_SIZE]>::try_from(page) else {
            continue;
        };
        out.pages += 1;
        if is_same_filled(page) {
            out.same_filled += 1;
            continue;
        }
        let hash = xxhash_rust::xxh3::xxh3_128(page);
        if let Some(&earlier) = seen.get(&hash)
            && page_at(earlier) == Some(page)
        {
            out.duplicates += 1;
            continue;
        }
        seen.insert(hash, i);
        out.unique += 1;
        let compressed = compressed_size(page).min(PAGE_SIZE);
        out.compressed_bytes += compressed;
        let sig = index.signature(page);
        let candidates = index.candidates(&sig);
        out.with_candidates += usize::from(!candidates.is_empty());
        let (found, tried) = match delta_size.as_deref_mut() {
            Some(delta_size) => cheapest_compressed_delta(
                page,
                &candidates,
                &mut buffers,
                compressed,
                page_at,
                delta_size,
            ),
            None => {
                let room = buffers.delta.get_mut(..compressed.saturating_sub(1));
                let best = best_delta(
                    page,
                    &candidates,
                    &mut buffers.scratch,
                    &mut buffers.base,
                    &mut buffers.spare,
                    room.unwrap_or(&mut []),
                    |id, buf| page_at(id).map(|p| buf.copy_from_slice(p)).is_some(),
                );
                let tried = best.map_or(candidates.len(), |b| b.tried);
                (best.map(|b| (b.base, b.len)), tried)
            }
        };
        out.deltas_tried += tried;
        match found {
            Some((base, delta_bytes)) => {
                // The page's keys now lead to its base: a later page like this one
                // but unlike the base in the sampled blocks still finds the base.
                index.insert(&sig, base);
                out.patches.push(Patch {
                    page: i,
                    base,
                    delta_bytes,
                    compressed_bytes: compressed,
                });
            }
            None => index.insert(&sig, i),
        }
    }
    Ok(out)
}

/// The encoder's working memory, boxed together.
struct Buffers {
    scratch: EncodeScratch,
    base: [u8; PAGE_SIZE],
    spare: [u8; PAGE_SIZE],
    delta: [u8; MAX_DELTA_BYTES],
}

/// The page is one 8-byte word repeated.
fn is_same_filled(page: &[u8; PAGE_SIZE]) -> bool {
    let first = page.get(..8);
    page.chunks_exact(8).all(|word| Some(word) == first)
}
