//! The real backend (`crates/foldswap`: same-filled → byte-verified dedup →
//! lz4 pool, with the scanner) behind [`SwapBackend`] — feature `backend`.
//!
//! The module switches to it by making its `BACKEND` a [`Foldswap`] and
//! running `Backend::run_scanner` in a kthread whose `Parker` is
//! `set_current_state`/`schedule_timeout`/`wake_up_process`. NOT used by the
//! module yet: `Backend::new` returns the ~8 KiB backend by value (a kernel
//! stack cannot hold it twice); it needs an in-place constructor first.

use foldswap::{Backend, Parker, Scratch};
use foldswap_mem::{Error, PAGE_SIZE, PageProvider};
use spin::Mutex;

use crate::SwapBackend;
use crate::report::Report;

/// A [`Backend`] with one [`Scratch`] per worker (a CPU in the kernel). Each
/// operation takes the scratch of the worker `worker()` names; its lock is
/// uncontended unless two workers share one.
pub struct Foldswap<'a, P: PageProvider + Clone, K: Parker> {
    backend: &'a Backend<P, K>,
    scratches: &'a [Mutex<&'a mut Scratch>],
    worker: fn() -> usize,
}

impl<'a, P: PageProvider + Clone, K: Parker> Foldswap<'a, P, K> {
    /// Serve `backend` with `scratches` (at least one), picked by `worker()`.
    pub fn new(
        backend: &'a Backend<P, K>,
        scratches: &'a [Mutex<&'a mut Scratch>],
        worker: fn() -> usize,
    ) -> Result<Self, Error> {
        if scratches.is_empty() {
            return Err(Error::InvalidArgument("no scratch"));
        }
        Ok(Foldswap {
            backend,
            scratches,
            worker,
        })
    }

    fn scratch(&self) -> Result<spin::MutexGuard<'_, &'a mut Scratch>, Error> {
        let i = (self.worker)()
            .checked_rem(self.scratches.len())
            .unwrap_or(0);
        self.scratches
            .get(i)
            .map(Mutex::lock)
            .ok_or(Error::ShutDown)
    }
}

impl<P: PageProvider + Clone, K: Parker> SwapBackend for Foldswap<'_, P, K> {
    fn init(&self, ty: u32, nr_pages: u64) -> Result<(), Error> {
        self.backend.init(ty as usize, nr_pages)
    }

    fn store(&self, ty: u32, offset: u64, page: &[u8; PAGE_SIZE]) -> Result<(), Error> {
        self.backend
            .store(ty as usize, offset, page, &mut **self.scratch()?)
            .map(|_| ())
    }

    fn load(&self, ty: u32, offset: u64, page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        self.backend
            .load(ty as usize, offset, page, &mut **self.scratch()?)
    }

    fn invalidate_page(&self, ty: u32, offset: u64) {
        let _ = self.backend.invalidate_page(ty as usize, offset);
    }

    fn invalidate_area(&self, ty: u32) {
        let _ = self.backend.invalidate_area(ty as usize);
    }

    fn set_limit_bytes(&self, limit: u64) {
        self.backend
            .set_pool_limit_bytes(usize::try_from(limit).unwrap_or(usize::MAX));
    }

    fn report(&self) -> Report {
        let s = self.backend.stats().snapshot();
        let pool = self.backend.pool_bytes_held() as u64;
        let total = self.backend.total_bytes_held() as u64;
        Report {
            stored_pages: s.stored_pages,
            same_filled_pages: s.same_filled_pages,
            duplicate_pages: s.duplicate_pages,
            compressed_pages: s.compressed_pages,
            raw_pages: s.incompressible_kept,
            stores: s.written_pages,
            dedup_hits: s.dedup_hits,
            loads: s.loaded_pages,
            load_misses: s.load_not_found,
            invalidates: s.invalidated_pages,
            areas: 0,
            reject_pool_full: s.reject_pool_full,
            reject_alloc_fail: s.reject_alloc_fail,
            reject_compress_poor: s.reject_compress_poor,
            reject_other: 0,
            compressed_bytes: self.backend.pool_stats().object_bytes as u64,
            pool_bytes: pool,
            index_bytes: total.saturating_sub(pool),
            limit_bytes: self.backend.config().pool_limit_bytes as u64,
            scanner_rounds: s.scanner_rounds,
            scanner_wakeups: s.scanner_wakeups,
        }
    }
}

#[cfg(test)]
mod tests {
    use core::mem::MaybeUninit;
    use core::time::Duration;
    use std::boxed::Box;

    use super::*;
    use crate::test_pages::TestPages;

    struct NoPark;
    impl Parker for NoPark {
        fn park_timeout(&self, _timeout: Duration) {}
        fn unpark(&self) {}
    }

    fn worker() -> usize {
        0
    }

    #[test]
    fn dedup_round_trip_through_the_trait() {
        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(usize::MAX)));
        let backend = Backend::new(pages, foldswap::Config::default(), NoPark).unwrap();
        let scratch = Scratch::init_in(Box::leak(Box::new(MaybeUninit::uninit())));
        let scratches = [Mutex::new(scratch)];
        let fs = Foldswap::new(&backend, &scratches, worker).unwrap();
        fs.init(0, 1000).unwrap();
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = b"swap page text "[i % 15];
        }
        for offset in 0..10 {
            fs.store(0, offset, &page).unwrap();
        }
        let mut out = [0u8; PAGE_SIZE];
        for offset in 0..10 {
            fs.load(0, offset, &mut out).unwrap();
            assert_eq!(out, page);
        }
        assert_eq!(fs.load(0, 10, &mut out), Err(Error::NotFound));
        let r = fs.report();
        assert_eq!(
            (r.stores, r.loads, r.dedup_hits, r.stored_pages),
            (10, 10, 9, 10)
        );
        fs.invalidate_area(0);
        assert_eq!(fs.report().stored_pages, 0);
    }
}
