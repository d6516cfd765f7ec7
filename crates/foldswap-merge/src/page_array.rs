//! A fixed-length array of small integers kept in provider pages.
//!
//! Hash-table bucket arrays outgrow one page quickly (a million stable nodes need
//! 16 MiB of buckets), and there is no global allocator to ask for a big contiguous
//! block. A [`PageArray`] cuts the array into chunks of [`CHUNK_BYTES`] and keeps them
//! in a [`Slab`], whose keys are handed out 0, 1, 2, ... on a fresh slab, so element
//! `i` lives in chunk `i / per_chunk`. The chunks are small (672 bytes) so that
//! building one on the stack — and a copy of it passed by value into the slab —
//! stays far below the kernel's stack budget.
//!
//! The length is fixed at creation; a table that grows builds a new array and drops
//! the old one, so a failed growth leaves the old table untouched.

use foldswap_mem::{Error, PageProvider, SlabKey};

use crate::page_box::BoxedSlab;

/// Bytes per chunk: six chunks fill a slab page (4096 − 64 bytes of header).
pub const CHUNK_BYTES: usize = 672;

/// An element type a [`PageArray`] can hold: plain integers whose zero is "empty".
pub trait Element: Copy + Eq + Send + 'static {
    /// Elements per chunk.
    const PER_CHUNK: usize;
    /// The value every element starts with.
    const ZERO: Self;
    /// One chunk, all zero.
    type Chunk: Send + 'static;
    /// A zeroed chunk.
    fn zero_chunk() -> Self::Chunk;
    /// Element `index` of `chunk` (`None` past its end).
    fn get(chunk: &Self::Chunk, index: usize) -> Option<Self>;
    /// A writable element `index` of `chunk` (`None` past its end).
    fn get_mut(chunk: &mut Self::Chunk, index: usize) -> Option<&mut Self>;
    /// The chunk's elements from `index` on.
    fn tail(chunk: &Self::Chunk, index: usize) -> &[Self];
}

macro_rules! element {
    ($ty:ty) => {
        impl Element for $ty {
            const PER_CHUNK: usize = CHUNK_BYTES / core::mem::size_of::<$ty>();
            const ZERO: Self = 0;
            type Chunk = [$ty; CHUNK_BYTES / core::mem::size_of::<$ty>()];
            fn zero_chunk() -> Self::Chunk {
                [0; CHUNK_BYTES / core::mem::size_of::<$ty>()]
            }
            fn get(chunk: &Self::Chunk, index: usize) -> Option<Self> {
                chunk.get(index).copied()
            }
            fn get_mut(chunk: &mut Self::Chunk, index: usize) -> Option<&mut Self> {
                chunk.get_mut(index)
            }
            fn tail(chunk: &Self::Chunk, index: usize) -> &[Self] {
                chunk.get(index..).unwrap_or(&[])
            }
        }
    };
}
element!(u32);
element!(u64);

/// `len` elements of `T`, all starting at zero, in pages from `P`. The slab itself
/// lives in a provider page too (see [`BoxedSlab`]), so the array is a few words, and
/// an empty one holds no page.
pub struct PageArray<T: Element, P: PageProvider> {
    chunks: BoxedSlab<T::Chunk, P>,
    len: usize,
}

impl<T: Element, P: PageProvider + Clone> PageArray<T, P> {
    /// An array of `len` zeroes, or [`Error::OutOfMemory`] (nothing kept) if the
    /// provider runs short.
    pub fn zeroed(provider: P, len: usize) -> Result<Self, Error> {
        let mut chunks = BoxedSlab::new(provider);
        // One chunk at a time: the slab grows a page only when its free list is
        // empty, so keys come out in order (a bulk `reserve` would interleave them).
        let count = len.div_ceil(T::PER_CHUNK);
        for expected in 0..count {
            let key = chunks.insert(T::zero_chunk())?;
            if key.index() as usize != expected {
                return Err(Error::Corrupt);
            }
        }
        Ok(PageArray { chunks, len })
    }

    /// Elements in the array.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Element `index`, or zero past the end.
    pub fn get(&self, index: usize) -> T {
        self.chunks
            .get(Self::chunk_of(index))
            .and_then(|chunk| T::get(chunk, index % T::PER_CHUNK))
            .unwrap_or(T::ZERO)
    }

    /// Elements `index..` up to the end of their chunk or of the array, whichever
    /// comes first (empty past the end): a run that costs one chunk lookup.
    pub fn run_from(&self, index: usize) -> &[T] {
        let Some(chunk) = self.chunks.get(Self::chunk_of(index)) else {
            return &[];
        };
        let run = T::tail(chunk, index % T::PER_CHUNK);
        run.get(..self.len.saturating_sub(index)).unwrap_or(run)
    }

    /// Set element `index`; ignored past the end (callers index modulo `len`).
    pub fn set(&mut self, index: usize, value: T) {
        if index >= self.len {
            return;
        }
        if let Some(slot) = self
            .chunks
            .get_mut(Self::chunk_of(index))
            .and_then(|chunk| T::get_mut(chunk, index % T::PER_CHUNK))
        {
            *slot = value;
        }
    }

    /// Set every element back to zero.
    pub fn clear(&mut self) {
        for chunk in 0..self.len.div_ceil(T::PER_CHUNK) {
            if let Some(chunk) = self.chunks.get_mut(SlabKey(chunk as u32)) {
                *chunk = T::zero_chunk();
            }
        }
    }

    /// Bytes this array holds from the provider (chunks, and the slab's own page).
    pub fn bytes_held(&self) -> usize {
        self.chunks.bytes_held()
    }

    /// The provider the chunks come from.
    pub fn provider(&self) -> &P {
        self.chunks.provider()
    }

    fn chunk_of(index: usize) -> SlabKey {
        SlabKey((index / T::PER_CHUNK) as u32)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use foldswap_mem::{CountingProvider, StdPageProvider};

    #[test]
    fn spans_many_pages_and_reads_back() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut array = PageArray::<u64, _>::zeroed(&provider, 10_000).unwrap();
        for i in 0..10_000 {
            array.set(i, i as u64 * 3 + 1);
        }
        array.set(10_000, 7); // past the end: ignored
        for i in 0..10_000 {
            assert_eq!(array.get(i), i as u64 * 3 + 1);
        }
        let mut i = 0;
        while i < 10_000 {
            let run = array.run_from(i);
            assert!(!run.is_empty() && run.len() <= u64::PER_CHUNK);
            for (j, &value) in run.iter().enumerate() {
                assert_eq!(value, (i + j) as u64 * 3 + 1);
            }
            i += run.len();
        }
        assert_eq!(i, 10_000);
        assert!(array.run_from(10_000).is_empty());
        assert_eq!(array.get(10_000), 0);
        array.clear();
        assert!((0..10_000).all(|i| array.get(i) == 0));
        assert!(provider.pages_in_use() >= 10_000 * 8 / 4096);
    }

    #[test]
    fn short_memory_fails_cleanly() {
        let provider = CountingProvider::new(StdPageProvider, 3);
        assert_eq!(
            PageArray::<u32, _>::zeroed(&provider, 100_000).err(),
            Some(Error::OutOfMemory)
        );
        assert_eq!(provider.pages_in_use(), 0);
    }
}
