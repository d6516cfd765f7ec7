//! A host over a vector of pages (feature `std`), for tests, fuzzing and examples.
//!
//! Pages are named by their index (`usize`). Merging is "counted", as a userspace
//! host does it: [`MergeHost::merge_pair`] copies the shared contents into a new,
//! never-written page (the stand-in for KSM's write-protected page) and returns its
//! id; a tracked page still shares it while its bytes are equal to it. Writing a byte
//! of a tracked page therefore breaks its merge, as copy-on-write would.

extern crate std;

use std::boxed::Box;
use std::vec::Vec;

use foldswap_mem::{Error, PAGE_SIZE};
use xxhash_rust::{xxh3::xxh3_64, xxh32::xxh32};

use crate::host::{MergeHost, MergeResult, PageContents};

/// How [`VecHost`] hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashMode {
    /// A sampled xxh32 and a full xxh3, as a real host would.
    Real,
    /// Every page hashes to the same sampled and full hash (adversarial: the trees
    /// must fall back on byte comparisons and stay correct).
    AllCollide,
}

/// Pages in a vector. See the module documentation.
#[derive(Debug)]
pub struct VecHost {
    pages: Vec<Option<Box<[u8; PAGE_SIZE]>>>,
    mode: HashMode,
    refuse_merges: usize,
    released: usize,
}

impl Default for VecHost {
    fn default() -> Self {
        Self::new()
    }
}

impl VecHost {
    /// A host with real hashes.
    pub fn new() -> Self {
        Self::with_mode(HashMode::Real)
    }

    /// A host hashing as `mode` says.
    pub fn with_mode(mode: HashMode) -> Self {
        VecHost {
            pages: Vec::new(),
            mode,
            refuse_merges: 0,
            released: 0,
        }
    }

    /// Add a page (`bytes` shorter than a page is zero-padded, longer is cut).
    pub fn add_page(&mut self, bytes: &[u8]) -> usize {
        let mut page = Box::new([0u8; PAGE_SIZE]);
        let len = bytes.len().min(PAGE_SIZE);
        page[..len].copy_from_slice(&bytes[..len]);
        self.pages.push(Some(page));
        self.pages.len() - 1
    }

    /// The bytes of page `id`, if it exists.
    pub fn page(&self, id: usize) -> Option<&[u8; PAGE_SIZE]> {
        self.pages.get(id)?.as_deref()
    }

    /// Overwrite byte `offset` of page `id` (ignored if either is out of range).
    pub fn write_byte(&mut self, id: usize, offset: usize, value: u8) {
        if let Some(byte) = self
            .pages
            .get_mut(id)
            .and_then(|p| p.as_mut())
            .and_then(|p| p.get_mut(offset))
        {
            *byte = value;
        }
    }

    /// The sampled hash a ladder would compute: xxh32 of 16 words spread over the
    /// page (or the constant of [`HashMode::AllCollide`]).
    pub fn sampled_hash(&self, id: usize) -> u32 {
        let Some(page) = self.page(id) else {
            return 0;
        };
        match self.mode {
            HashMode::AllCollide => 0x5eed,
            HashMode::Real => {
                let mut sample = [0u8; 128];
                for (i, chunk) in sample.chunks_exact_mut(8).enumerate() {
                    let at = i * 256 + (i * 40) % 248;
                    chunk.copy_from_slice(&page[at..at + 8]);
                }
                xxh32(&sample, 0)
            }
        }
    }

    /// Make the next `count` merge requests fail with "page changed".
    pub fn refuse_next_merges(&mut self, count: usize) {
        self.refuse_merges = count;
    }

    /// Shared pages released so far through [`MergeHost::release_kept`].
    pub fn released(&self) -> usize {
        self.released
    }

    /// Pages that exist (tracked pages and shared copies not yet released).
    pub fn live_pages(&self) -> usize {
        self.pages.iter().filter(|p| p.is_some()).count()
    }

    fn bytes(&self, id: usize) -> Result<&[u8; PAGE_SIZE], Error> {
        self.page(id).ok_or(Error::InvalidHandle)
    }

    fn refuse(&mut self) -> bool {
        if self.refuse_merges > 0 {
            self.refuse_merges -= 1;
            return true;
        }
        false
    }
}

impl PageContents for VecHost {
    type Id = usize;

    fn full_hash(&mut self, page: usize) -> Result<u64, Error> {
        let bytes = self.bytes(page)?;
        Ok(match self.mode {
            HashMode::Real => xxh3_64(bytes),
            HashMode::AllCollide => 0x0c01_11de,
        })
    }

    fn same_contents(&mut self, a: usize, b: usize) -> Result<bool, Error> {
        Ok(self.bytes(a)? == self.bytes(b)?)
    }
}

impl MergeHost for VecHost {
    fn checksum(&mut self, page: usize) -> Result<u32, Error> {
        Ok(xxh32(self.bytes(page)?, 0))
    }

    fn merge_pair(&mut self, page: usize, partner: usize) -> Result<MergeResult<usize>, Error> {
        if self.refuse() || !self.same_contents(page, partner)? {
            return Ok(MergeResult::PageChanged);
        }
        let copy = self.bytes(page)?.to_vec();
        Ok(MergeResult::Merged {
            kept: self.add_page(&copy),
        })
    }

    fn merge_into(&mut self, page: usize, kept: usize) -> Result<MergeResult<usize>, Error> {
        if self.refuse() || !self.same_contents(page, kept)? {
            return Ok(MergeResult::PageChanged);
        }
        Ok(MergeResult::Merged { kept })
    }

    fn still_merged(&mut self, page: usize, kept: usize) -> Result<bool, Error> {
        self.same_contents(page, kept)
    }

    fn release_kept(&mut self, kept: usize) {
        if let Some(slot) = self.pages.get_mut(kept) {
            *slot = None;
            self.released += 1;
        }
    }
}
