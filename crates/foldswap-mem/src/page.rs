//! One page of memory.

use crate::Error;

/// Bytes in a page. foldswap works on 4 KiB pages only.
pub const PAGE_SIZE: usize = 4096;
/// 64-bit words in a page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// One 4096-byte page, aligned to 4096 bytes.
///
/// ```
/// use foldswap_mem::{Page, PAGE_SIZE};
/// let mut page = Page::zeroed();
/// page.as_bytes_mut()[0] = 7;
/// assert_eq!(page.as_bytes().len(), PAGE_SIZE);
/// assert_eq!(page.word(0), 7);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct Page {
    bytes: [u8; PAGE_SIZE],
}

impl Page {
    /// A page of zeroes.
    pub const fn zeroed() -> Self {
        Page {
            bytes: [0; PAGE_SIZE],
        }
    }

    /// The page's bytes.
    pub fn as_bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.bytes
    }

    /// The page's bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        &mut self.bytes
    }

    /// Copy a page-sized slice in. Fails (changing nothing) if `src` is not 4096 bytes.
    pub fn copy_from(&mut self, src: &[u8]) -> Result<(), Error> {
        let src = as_page_bytes(src)?;
        self.bytes.copy_from_slice(src);
        Ok(())
    }

    /// The little-endian 64-bit word at word index `index` (0..512); 0 past the end.
    pub fn word(&self, index: usize) -> u64 {
        word_of(&self.bytes, index)
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::zeroed()
    }
}

impl core::fmt::Debug for Page {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Page({:#018x}..)", self.word(0))
    }
}

/// View `bytes` as exactly one page, or report its length.
pub fn as_page_bytes(bytes: &[u8]) -> Result<&[u8; PAGE_SIZE], Error> {
    bytes.try_into().map_err(|_| Error::WrongLength {
        expected: PAGE_SIZE,
        actual: bytes.len(),
    })
}

/// View `bytes` as exactly one writable page, or report its length.
pub fn as_page_bytes_mut(bytes: &mut [u8]) -> Result<&mut [u8; PAGE_SIZE], Error> {
    let actual = bytes.len();
    bytes.try_into().map_err(|_| Error::WrongLength {
        expected: PAGE_SIZE,
        actual,
    })
}

/// The little-endian 64-bit word at `index` of a page image; 0 past the end.
pub fn word_of(bytes: &[u8; PAGE_SIZE], index: usize) -> u64 {
    match bytes.get(index * 8..index * 8 + 8) {
        Some(w) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            u64::from_le_bytes(word)
        }
        None => 0,
    }
}
