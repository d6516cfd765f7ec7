//! One value kept in a provider page instead of inline.
//!
//! A [`foldswap_mem::Slab`] carries its directory roots inline (≈ 540 bytes), so a
//! tree holding several slabs by value would be a multi-kilobyte struct, and every
//! frame that builds or moves it would break the kernel's stack budget (16 KiB
//! stacks; the house rule is nothing over ~2 KiB). A [`PageBox`] moves such a member
//! into a page of its own, leaving a pointer behind: the trees stay small wherever
//! the host keeps them, and no constructor frame holds more than one slab.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider};

/// A `T` living in its own provider page.
pub struct PageBox<T, P: PageProvider> {
    page: NonNull<Page>,
    provider: P,
    _owns: PhantomData<T>,
}

// SAFETY: the box owns its `T` and its page exclusively; moving it to another thread
// moves that ownership, which is sound when `T` and the provider are `Send`.
unsafe impl<T: Send, P: PageProvider + Send> Send for PageBox<T, P> {}
// SAFETY: `&PageBox` only hands out `&T`.
unsafe impl<T: Sync, P: PageProvider + Sync> Sync for PageBox<T, P> {}

impl<T, P: PageProvider> PageBox<T, P> {
    const FITS: bool =
        core::mem::size_of::<T>() <= PAGE_SIZE && core::mem::align_of::<T>() <= PAGE_SIZE;

    /// Move `value` into a fresh page from `provider`. Fails with
    /// [`Error::OutOfMemory`] (dropping `value`) when the provider has no page, or
    /// [`Error::InvalidArgument`] if `T` does not fit in a page.
    pub fn new(provider: P, value: T) -> Result<Self, Error> {
        if !Self::FITS {
            return Err(Error::InvalidArgument("value larger than a page"));
        }
        let page = provider.alloc_page()?;
        // SAFETY: by the `PageProvider` contract the page is valid for writes of
        // PAGE_SIZE bytes, 4096-aligned and not aliased; `T` fits in it and its
        // alignment (a power of two ≤ 4096, checked above) divides 4096.
        unsafe { page.as_ptr().cast::<T>().write(value) };
        Ok(PageBox {
            page,
            provider,
            _owns: PhantomData,
        })
    }
}

impl<T, P: PageProvider> Deref for PageBox<T, P> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `new` wrote an initialized `T` at the start of the page, which
        // stays ours until `drop`; the borrow is tied to `&self`.
        unsafe { &*self.page.as_ptr().cast::<T>() }
    }
}

impl<T, P: PageProvider> DerefMut for PageBox<T, P> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *self.page.as_ptr().cast::<T>() }
    }
}

impl<T, P: PageProvider> Drop for PageBox<T, P> {
    fn drop(&mut self) {
        // SAFETY: the page holds the initialized `T` written by `new`, dropped exactly
        // once here; the page came from this provider and is freed once, after which
        // nothing touches it.
        unsafe {
            self.page.as_ptr().cast::<T>().drop_in_place();
            self.provider.free_page(self.page);
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate std;
    use std::rc::Rc;

    use foldswap_mem::{CountingProvider, StdPageProvider};

    use super::*;

    #[test]
    fn holds_drops_and_frees() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let counter = Rc::new(());
        {
            let mut boxed = PageBox::new(&provider, ([7u64; 64], counter.clone())).unwrap();
            assert_eq!(provider.pages_in_use(), 1);
            boxed.0[3] = 9;
            assert_eq!(boxed.0[3], 9);
            assert_eq!(Rc::strong_count(&counter), 2);
        }
        assert_eq!(Rc::strong_count(&counter), 1, "the value was dropped");
        assert_eq!(provider.pages_in_use(), 0, "the page was freed");
    }

    #[test]
    fn refusals_are_typed() {
        let provider = CountingProvider::new(StdPageProvider, 0);
        assert_eq!(PageBox::new(&provider, 1u8).err(), Some(Error::OutOfMemory));
        assert!(matches!(
            PageBox::new(StdPageProvider, [0u8; PAGE_SIZE + 1]).err(),
            Some(Error::InvalidArgument(_))
        ));
    }
}
