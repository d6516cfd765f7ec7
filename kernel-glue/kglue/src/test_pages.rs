//! What the tests share: a counting, limited page provider over the std
//! allocator, and a parker.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use core::time::Duration;
use std::sync::{Arc, Condvar, Mutex};

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider};
use foldswap_wake::Parker;

/// A parker over a condvar with a token (the Parker contract).
#[derive(Default, Clone)]
pub(crate) struct TestParker(Arc<(Mutex<bool>, Condvar)>);

impl Parker for TestParker {
    fn park_timeout(&self, timeout: Duration) {
        let (lock, cvar) = &*self.0;
        let token = lock.lock().unwrap();
        let (mut token, _) = cvar.wait_timeout_while(token, timeout, |t| !*t).unwrap();
        *token = false;
    }

    fn unpark(&self) {
        let (lock, cvar) = &*self.0;
        *lock.lock().unwrap() = true;
        cvar.notify_one();
    }
}

const LAYOUT: Layout = match Layout::from_size_align(PAGE_SIZE, PAGE_SIZE) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

/// Pages from `std::alloc`, at most `limit` at once.
pub(crate) struct TestPages {
    limit: usize,
    in_use: AtomicUsize,
}

impl TestPages {
    pub(crate) fn new(limit: usize) -> Self {
        TestPages {
            limit,
            in_use: AtomicUsize::new(0),
        }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

// SAFETY: fresh 4096-aligned blocks from the global allocator, each handed out
// once and valid until `free_page`.
unsafe impl PageProvider for TestPages {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        if self.in_use.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.in_use.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::OutOfMemory);
        }
        // SAFETY: the layout is not zero-sized.
        NonNull::new(unsafe { std::alloc::alloc(LAYOUT) }.cast::<Page>()).ok_or(Error::OutOfMemory)
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the caller promises `page` came from `alloc_page` (this layout).
        unsafe { std::alloc::dealloc(page.as_ptr().cast::<u8>(), LAYOUT) }
    }
}
