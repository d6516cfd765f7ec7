//! Where pages come from: the host's fallible page allocator.

use core::ptr::NonNull;

use crate::sync::{AtomicUsize, Ordering};
use crate::{Error, Page};

/// The host's page allocator. Every allocation may fail; the cores turn a failure
/// into [`Error::OutOfMemory`] and leave what they already hold untouched.
///
/// The kernel host backs this with a mempool over `alloc_page` (`GFP_NOWAIT | __GFP_HIGH`,
/// never sleeping; see kernel-glue/module/foldswap_host.c) and
/// `page_address`; userspace uses [`StdPageProvider`] (feature `std`).
///
/// # Safety
///
/// An implementation must return pages that are valid for reads and writes of
/// [`PAGE_SIZE`](crate::PAGE_SIZE) bytes, aligned to 4096, not aliased by anything
/// else, and that stay valid until passed back to [`free_page`](Self::free_page).
/// The contents of a new page are unspecified (not necessarily zero).
pub unsafe trait PageProvider {
    /// Allocate one page, or fail with [`Error::OutOfMemory`]. Must not sleep.
    fn alloc_page(&self) -> Result<NonNull<Page>, Error>;

    /// Give a page back.
    ///
    /// # Safety
    ///
    /// `page` came from `alloc_page` of this provider, has not been freed since, and
    /// nothing uses it after this call.
    unsafe fn free_page(&self, page: NonNull<Page>);
}

// SAFETY: forwards to `P`, which upholds the contract.
unsafe impl<P: PageProvider + ?Sized> PageProvider for &P {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        (**self).alloc_page()
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { (**self).free_page(page) }
    }
}

/// A provider wrapper that counts the pages in use and refuses to go past a limit.
///
/// Tests use it to make memory run out at a chosen moment; hosts use it to report how
/// many pages a core holds.
///
/// ```
/// # #[cfg(feature = "std")] {
/// use foldswap_mem::{CountingProvider, PageProvider, StdPageProvider, Error};
/// let provider = CountingProvider::new(StdPageProvider, 1);
/// let page = provider.alloc_page().unwrap();
/// assert_eq!(provider.alloc_page().unwrap_err(), Error::OutOfMemory);
/// assert_eq!(provider.pages_in_use(), 1);
/// // SAFETY: `page` came from this provider and is not used again.
/// unsafe { provider.free_page(page) };
/// assert_eq!(provider.pages_in_use(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct CountingProvider<P> {
    inner: P,
    limit: AtomicUsize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
}

impl<P: PageProvider> CountingProvider<P> {
    /// Wrap `inner`, allowing at most `limit` pages in use at once.
    pub fn new(inner: P, limit: usize) -> Self {
        CountingProvider {
            inner,
            limit: AtomicUsize::new(limit),
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Wrap `inner` with no limit.
    pub fn unlimited(inner: P) -> Self {
        Self::new(inner, usize::MAX)
    }

    /// Change the limit. Pages already in use above it stay; new ones are refused.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Pages handed out and not yet given back.
    pub fn pages_in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The most pages that were in use at once.
    pub fn peak_pages(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

// SAFETY: pages come unchanged from `inner`, which upholds the contract.
unsafe impl<P: PageProvider> PageProvider for CountingProvider<P> {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        let limit = self.limit.load(Ordering::Relaxed);
        let reserved = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n < limit { Some(n + 1) } else { None }
            });
        let Ok(before) = reserved else {
            return Err(Error::OutOfMemory);
        };
        match self.inner.alloc_page() {
            Ok(page) => {
                self.peak.fetch_max(before + 1, Ordering::Relaxed);
                Ok(page)
            }
            Err(e) => {
                self.in_use.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        // SAFETY: the caller's promise covers `inner`, which allocated the page.
        unsafe { self.inner.free_page(page) };
        self.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Pages from the std global allocator (feature `std`), for tests and userspace.
#[cfg(feature = "std")]
#[derive(Debug, Default, Clone, Copy)]
pub struct StdPageProvider;

#[cfg(feature = "std")]
const PAGE_LAYOUT: core::alloc::Layout =
    match core::alloc::Layout::from_size_align(crate::PAGE_SIZE, crate::PAGE_SIZE) {
        Ok(layout) => layout,
        Err(_) => panic!("page layout"),
    };

// SAFETY: `std::alloc::alloc` with a 4096/4096 layout returns a fresh, aligned,
// unaliased block valid until `dealloc`; a null return becomes `OutOfMemory`.
#[cfg(feature = "std")]
unsafe impl PageProvider for StdPageProvider {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(PAGE_LAYOUT) };
        NonNull::new(raw.cast::<Page>()).ok_or(Error::OutOfMemory)
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        // SAFETY: the caller promises `page` came from `alloc_page`, i.e. from
        // `std::alloc::alloc` with this same layout, and is freed once.
        unsafe { std::alloc::dealloc(page.as_ptr().cast::<u8>(), PAGE_LAYOUT) }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counting_provider_enforces_limit_and_counts() {
        let provider = CountingProvider::new(StdPageProvider, 2);
        let a = provider.alloc_page().unwrap();
        let b = provider.alloc_page().unwrap();
        assert_eq!(provider.alloc_page(), Err(Error::OutOfMemory));
        assert_eq!(provider.pages_in_use(), 2);
        // SAFETY: both pages came from this provider and are not used again.
        unsafe {
            provider.free_page(a);
            provider.free_page(b);
        }
        assert_eq!(provider.pages_in_use(), 0);
        assert_eq!(provider.peak_pages(), 2);
        provider.set_limit(0);
        assert_eq!(provider.alloc_page(), Err(Error::OutOfMemory));
    }

    #[test]
    fn std_pages_are_aligned_and_writable() {
        let page = StdPageProvider.alloc_page().unwrap();
        assert_eq!(page.as_ptr() as usize % crate::PAGE_SIZE, 0);
        // SAFETY: the page is ours until freed below.
        unsafe {
            (*page.as_ptr()).as_bytes_mut().fill(0xa5);
            assert!((*page.as_ptr()).as_bytes().iter().all(|&b| b == 0xa5));
            StdPageProvider.free_page(page);
        }
    }
}
