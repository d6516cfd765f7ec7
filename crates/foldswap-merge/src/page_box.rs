//! One value kept in a provider page instead of inline.
//!
//! A [`foldswap_mem::Slab`] carries its directory roots inline (≈ 540 bytes), so a
//! tree holding several slabs by value would be a multi-kilobyte struct, and every
//! frame that builds or moves it would break the kernel's stack budget (16 KiB
//! stacks; the house rule is nothing over ~2 KiB). A [`PageBox`] moves such a member
//! into a page of its own, leaving a pointer behind: the trees stay small wherever
//! the host keeps them, and no constructor frame holds more than one slab.
//! [`BoxedSlab`] does this for a slab, lazily: a tree that stores nothing holds no
//! page.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider, Slab, SlabKey};

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

/// A [`Slab`] kept in a [`PageBox`], created on first use: holding one costs a few
/// words and no page until something is stored.
pub struct BoxedSlab<T, P: PageProvider> {
    provider: P,
    slab: Option<PageBox<Slab<T, P>, P>>,
}

impl<T, P: PageProvider + Clone> BoxedSlab<T, P> {
    /// An empty slab; allocates nothing.
    pub fn new(provider: P) -> Self {
        BoxedSlab {
            provider,
            slab: None,
        }
    }

    /// The slab, created (one page for it) if this is the first use.
    fn slab_mut(&mut self) -> Result<&mut Slab<T, P>, Error> {
        if self.slab.is_none() {
            let slab = Slab::new(self.provider.clone())?;
            self.slab = Some(PageBox::new(self.provider.clone(), slab)?);
        }
        self.slab.as_deref_mut().ok_or(Error::OutOfMemory)
    }

    /// See [`Slab::reserve`].
    pub fn reserve(&mut self, additional: usize) -> Result<(), Error> {
        self.slab_mut()?.reserve(additional)
    }

    /// See [`Slab::insert`].
    pub fn insert(&mut self, value: T) -> Result<SlabKey, Error> {
        self.slab_mut()?.insert(value)
    }

    /// See [`Slab::get`].
    pub fn get(&self, key: SlabKey) -> Option<&T> {
        self.slab.as_deref()?.get(key)
    }

    /// See [`Slab::get_mut`].
    pub fn get_mut(&mut self, key: SlabKey) -> Option<&mut T> {
        self.slab.as_deref_mut()?.get_mut(key)
    }

    /// See [`Slab::contains`].
    pub fn contains(&self, key: SlabKey) -> bool {
        self.get(key).is_some()
    }

    /// See [`Slab::remove`].
    pub fn remove(&mut self, key: SlabKey) -> Option<T> {
        self.slab.as_deref_mut()?.remove(key)
    }

    /// See [`Slab::for_each`].
    pub fn for_each(&self, visit: impl FnMut(SlabKey, &T)) {
        if let Some(slab) = self.slab.as_deref() {
            slab.for_each(visit);
        }
    }

    /// Live objects.
    pub fn len(&self) -> usize {
        self.slab.as_deref().map_or(0, Slab::len)
    }

    /// No live objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held from the provider: the slab's pages and the page it lives in.
    pub fn bytes_held(&self) -> usize {
        self.slab
            .as_deref()
            .map_or(0, |slab| slab.bytes_held() + PAGE_SIZE)
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
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
    fn boxed_slab_allocates_on_first_use() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut slab = BoxedSlab::<u64, _>::new(&provider);
        assert_eq!(
            (provider.pages_in_use(), slab.len(), slab.bytes_held()),
            (0, 0, 0)
        );
        assert_eq!(slab.get(SlabKey(0)), None);
        assert_eq!(slab.remove(SlabKey(0)), None);
        let key = slab.insert(5).unwrap();
        assert_eq!(slab.get(key), Some(&5));
        assert_eq!(
            provider.pages_in_use(),
            3,
            "the box page, a directory and a data page"
        );
        assert_eq!(slab.bytes_held(), 3 * PAGE_SIZE);
        provider.set_limit(3);
        let mut other = BoxedSlab::<u64, _>::new(&provider);
        assert_eq!(other.insert(1), Err(Error::OutOfMemory));
        assert!(other.is_empty());
        drop((slab, other));
        assert_eq!(provider.pages_in_use(), 0);
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
