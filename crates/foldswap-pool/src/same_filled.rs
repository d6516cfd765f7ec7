//! Same-filled pages: one machine word repeated across the whole page.
//!
//! zswap and zram store such pages as the word alone (no pool space). The check
//! runs first on every store, so it must give up fast on ordinary pages: it compares
//! the first word with the last, then the rest in order, stopping at the first
//! difference.

use foldswap_mem::PAGE_SIZE;

/// The repeated 64-bit word (little-endian) if every 8-byte word of `page` is the
/// same one; `Some(0)` for a zero page, `None` otherwise.
///
/// ```
/// use foldswap_pool::same_filled_word;
/// let mut page = [0u8; 4096];
/// assert_eq!(same_filled_word(&page), Some(0));
/// for chunk in page.chunks_mut(8) {
///     chunk.copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
/// }
/// assert_eq!(same_filled_word(&page), Some(0x0102_0304_0506_0708));
/// page[4095] ^= 1;
/// assert_eq!(same_filled_word(&page), None);
/// ```
#[inline]
pub fn same_filled_word(page: &[u8; PAGE_SIZE]) -> Option<u64> {
    let (words, _) = page.as_chunks::<8>();
    let first = u64::from_le_bytes(*words.first()?);
    if u64::from_le_bytes(*words.last()?) != first {
        return None;
    }
    words
        .iter()
        .all(|word| u64::from_le_bytes(*word) == first)
        .then_some(first)
}

/// Rebuild a same-filled page from its word.
///
/// ```
/// use foldswap_pool::{fill_page, same_filled_word};
/// let mut page = [1u8; 4096];
/// fill_page(&mut page, 0xdead_beef);
/// assert_eq!(same_filled_word(&page), Some(0xdead_beef));
/// ```
pub fn fill_page(page: &mut [u8; PAGE_SIZE], word: u64) {
    let pattern = word.to_le_bytes();
    for chunk in page.chunks_exact_mut(8) {
        chunk.copy_from_slice(&pattern);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_only_whole_page_repeats() {
        let mut page = [0u8; PAGE_SIZE];
        assert_eq!(same_filled_word(&page), Some(0));
        page[17] = 1;
        assert_eq!(same_filled_word(&page), None);
        fill_page(&mut page, u64::MAX);
        assert_eq!(same_filled_word(&page), Some(u64::MAX));
        // A repeated byte pattern that is not word-periodic is not same-filled.
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i % 3) as u8;
        }
        assert_eq!(same_filled_word(&page), None);
    }
}
