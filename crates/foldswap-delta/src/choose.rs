//! Choosing a base among the candidates: the smallest delta under the budget.

use foldswap_mem::PAGE_SIZE;

use crate::{Candidates, EncodeScratch, encode};

/// The base [`best_delta`] chose and the length of the delta it left in `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BestDelta<Id> {
    /// The chosen base.
    pub base: Id,
    /// Bytes of the delta at the start of `out`.
    pub len: usize,
    /// Candidates whose delta was attempted (for statistics).
    pub tried: usize,
}

/// Encode `target` against each candidate and keep the smallest delta that fits in
/// `out` (`out.len()` is the budget, e.g. the page's compressed size minus one).
///
/// `fetch_base(id, buf)` fills `buf` with the candidate's current bytes (the backend
/// decompresses a stored page) or returns false if the id is gone. Returns `None`
/// when no candidate beats the budget; `out` then holds garbage. Never allocates:
/// `base` and `spare` are the caller's page buffers.
///
/// ```
/// use foldswap_delta::{best_delta, IndexCapacity, SimilarityConfig, SimilarityIndex, EncodeScratch};
/// use foldswap_mem::StdPageProvider;
/// let stored: Vec<[u8; 4096]> = vec![[1; 4096], core::array::from_fn(|i| i as u8)];
/// let mut index = SimilarityIndex::<usize, _>::new(
///     StdPageProvider, SimilarityConfig::default(), IndexCapacity::fixed(1)).unwrap();
/// for (id, page) in stored.iter().enumerate() {
///     index.insert(&index.signature(page), id);
/// }
/// let mut page = stored[1];
/// page[9] = 0xee;
/// let found = index.candidates(&index.signature(&page));
/// let (mut scratch, mut base, mut spare) =
///     (Box::new(EncodeScratch::new()), [0u8; 4096], [0u8; 4096]);
/// let mut out = [0u8; 100];
/// let best = best_delta(&page, &found, &mut scratch, &mut base, &mut spare, &mut out,
///     |id, buf| { buf.copy_from_slice(&stored[id]); true }).unwrap();
/// assert_eq!(best.base, 1);
/// assert!(best.len < 12);
/// ```
pub fn best_delta<Id: Copy + PartialEq>(
    target: &[u8; PAGE_SIZE],
    candidates: &Candidates<Id>,
    scratch: &mut EncodeScratch,
    base: &mut [u8; PAGE_SIZE],
    spare: &mut [u8; PAGE_SIZE],
    out: &mut [u8],
    mut fetch_base: impl FnMut(Id, &mut [u8; PAGE_SIZE]) -> bool,
) -> Option<BestDelta<Id>> {
    let mut best: Option<BestDelta<Id>> = None;
    let mut tried = 0;
    for id in candidates.iter() {
        if !fetch_base(id, base) {
            continue;
        }
        tried += 1;
        let budget = best.map_or(out.len(), |b| b.len.saturating_sub(1));
        // The first fit goes to `out`; later tries go to `spare` so a failed
        // attempt cannot destroy the best delta so far.
        let room = match best {
            None => out.get_mut(..budget),
            Some(_) => spare.get_mut(..budget),
        };
        let Some(room) = room else { continue };
        if let Ok(len) = encode(target, base, scratch, room) {
            if best.is_some()
                && let (Some(dst), Some(src)) = (out.get_mut(..len), spare.get(..len))
            {
                dst.copy_from_slice(src);
            }
            best = Some(BestDelta {
                base: id,
                len,
                tried: 0,
            });
        }
    }
    best.map(|b| BestDelta { tried, ..b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndexCapacity, Signature, SimilarityConfig, SimilarityIndex, decode};
    use foldswap_mem::StdPageProvider;
    use std::boxed::Box;
    use std::vec::Vec;

    fn noise(seed: u32) -> [u8; PAGE_SIZE] {
        let mut x = seed | 1;
        core::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
    }

    /// Candidates `ids` in this order (each under its own key).
    fn candidates(ids: &[usize]) -> Candidates<usize> {
        let mut index = SimilarityIndex::<usize, _>::new(
            StdPageProvider,
            SimilarityConfig::default(),
            IndexCapacity::fixed(1),
        )
        .unwrap();
        let mut keys = [0u32; 4];
        for (slot, &id) in ids.iter().enumerate() {
            keys[slot] = 100 + id as u32;
            let mut own = [0u32; 4];
            own[0] = keys[slot];
            index.insert(&Signature::from_keys(own), id);
        }
        index.candidates(&Signature::from_keys(keys))
    }

    /// `best_delta` with fresh buffers and a 64-byte budget: the result and `out`.
    fn choose(
        target: &[u8; PAGE_SIZE],
        found: &Candidates<usize>,
        fetch: impl FnMut(usize, &mut [u8; PAGE_SIZE]) -> bool,
    ) -> (Option<BestDelta<usize>>, [u8; 64]) {
        let mut scratch = Box::new(EncodeScratch::new());
        let (mut base, mut spare) = ([0u8; PAGE_SIZE], [0u8; PAGE_SIZE]);
        let mut out = [0u8; 64];
        let best = best_delta(
            target,
            found,
            &mut scratch,
            &mut base,
            &mut spare,
            &mut out,
            fetch,
        );
        (best, out)
    }

    #[test]
    fn keeps_the_smallest_delta_whatever_the_order() {
        let target = noise(7);
        let mut close = target;
        close[100..110].fill(0xee); // a 10-byte patch
        let mut closer = target;
        closer[200] ^= 1; // a 1-byte patch
        let unrelated = noise(99);
        let bases = [close, closer, unrelated];
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0]] {
            let found = candidates(&order);
            assert_eq!(found.iter().collect::<Vec<_>>(), order);
            let (best, out) = choose(&target, &found, |id, buf| {
                buf.copy_from_slice(&bases[id]);
                true
            });
            let best = best.unwrap();
            assert_eq!(best.base, 1, "order {order:?}");
            assert_eq!(best.tried, 3);
            let mut page = [0u8; PAGE_SIZE];
            decode(&bases[1], &out[..best.len], &mut page).unwrap();
            assert_eq!(
                page, target,
                "order {order:?}: the delta in `out` is not the best"
            );
        }
    }

    #[test]
    fn gone_bases_are_skipped_and_nothing_fits_is_none() {
        let (best, _) = choose(&noise(3), &candidates(&[0, 1]), |id, buf| {
            buf.copy_from_slice(&noise(50 + id as u32));
            id == 1
        });
        assert_eq!(best, None);
    }
}
