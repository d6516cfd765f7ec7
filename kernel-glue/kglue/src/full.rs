//! The real backend (`crates/foldswap`: same-filled → byte-verified dedup →
//! lz4 pool, with the scanner that recompresses cold pages with the host's cold codec or patches them) in static
//! storage, behind [`SwapBackend`] — feature `backend`.
//!
//! A kernel module cannot build the ~7 KiB backend on its 16 KiB stack, nor
//! allocate it with `Box`. [`Foldswap`] is a `static` that holds the storage;
//! [`Foldswap::start`] builds the backend in it (`Backend::init_in`) and takes
//! one [`Scratch`] per worker (a CPU: `worker()` is the CPU number) from memory
//! the host allocated (vmalloc); [`Foldswap::stop`] drops the backend and
//! hands the scratches back. The module's life:
//!
//! ```text
//! init:  start(...) → kthread running run_scanner(...) → register the ops
//! exit:  unregister the ops (RCU: nothing in flight) → shutdown_scanner()
//!        → kthread_stop → stop(...)
//! ```
//!
//! Each operation takes the scratch of its worker under a spin lock that is
//! uncontended unless two workers share one (more CPUs than scratches).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use foldswap::{Backend, ColdCodec, Config, Domain, NoColdCodec, Parker, Scratch, SwapDevice};
use foldswap_mem::{Error, PAGE_SIZE, PageProvider};
use foldswap_pool::Clock;
use spin::Mutex;

use crate::SwapBackend;
use crate::report::{CensusReport, Report};

/// Why the host refused a store before the backend saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRefusal {
    /// The page's memory cgroup, or an ancestor, is at its `memory.zswap.max`.
    MemcgLimit,
    /// The page's domain cannot be charged to its cgroup now (its id is
    /// charged to another cgroup's objcg, or no memory to record it).
    DomainBusy,
}

impl HostRefusal {
    /// The refusal a C host names by number: 0 the cgroup's limit, 1 a busy
    /// domain.
    pub fn from_index(index: u32) -> Option<Self> {
        match index {
            0 => Some(HostRefusal::MemcgLimit),
            1 => Some(HostRefusal::DomainBusy),
            _ => None,
        }
    }
}

/// Workers (CPUs) with a scratch of their own; more share them.
pub const MAX_WORKERS: usize = 64;

type ScratchSlot<C> = Mutex<Option<&'static mut Scratch<C>>>;

/// A [`Backend`] in static storage with one [`Scratch`] per worker. `C` is
/// the host's cold codec (the module's: the kernel's lib/zstd), which the
/// scanner recompresses cold pages with and every worker decodes them with.
pub struct Foldswap<P: PageProvider + Clone, K: Parker, C: ColdCodec + 'static = NoColdCodec> {
    backend: UnsafeCell<MaybeUninit<Backend<P, K>>>,
    /// `backend` is initialised (set last by `start`, cleared first by `stop`).
    ready: AtomicBool,
    enabled: AtomicBool,
    /// Stores refused because the module is disabled.
    rejected_disabled: AtomicU64,
    /// Stores the host refused before the backend saw them, by cause.
    refused_memcg_limit: AtomicU64,
    refused_domain_busy: AtomicU64,
    scratches: [ScratchSlot<C>; MAX_WORKERS],
    nr_scratches: AtomicUsize,
    worker: fn() -> usize,
}

// SAFETY: `backend` is written only by `start` and dropped only by `stop`,
// whose contracts exclude any concurrent use of `self`; in between it is only
// shared (`&Backend`, Sync since P and K are Send + Sync). The scratches are
// behind spin locks (one worker at a time uses one, so C need only be Send);
// everything else is atomic.
unsafe impl<P, K, C> Sync for Foldswap<P, K, C>
where
    P: PageProvider + Clone + Send + Sync,
    K: Parker + Send + Sync,
    C: ColdCodec + Send + 'static,
{
}

impl<P: PageProvider + Clone, K: Parker, C: ColdCodec + 'static> Foldswap<P, K, C> {
    /// A stopped instance (no backend; every operation fails with `ShutDown`).
    /// `worker()` names the calling worker (the CPU).
    pub const fn new(worker: fn() -> usize) -> Self {
        Foldswap {
            backend: UnsafeCell::new(MaybeUninit::uninit()),
            ready: AtomicBool::new(false),
            enabled: AtomicBool::new(true),
            rejected_disabled: AtomicU64::new(0),
            refused_memcg_limit: AtomicU64::new(0),
            refused_domain_busy: AtomicU64::new(0),
            scratches: [const { Mutex::new(None) }; MAX_WORKERS],
            nr_scratches: AtomicUsize::new(0),
            worker,
        }
    }

    /// Build the backend in place and take up to [`MAX_WORKERS`] scratches
    /// (at least one). On error nothing is kept: the scratches taken so far
    /// go back through `give_back`.
    ///
    /// # Safety
    /// No other method of `self` runs during the call, and `self` is stopped
    /// (new, or [`stop`](Self::stop)ped).
    pub unsafe fn start(
        &self,
        provider: P,
        config: Config,
        parker: K,
        scratches: &mut dyn Iterator<Item = &'static mut Scratch<C>>,
        give_back: &mut dyn FnMut(&'static mut Scratch<C>),
    ) -> Result<(), Error> {
        if self.ready.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument("already started"));
        }
        let mut taken = 0;
        for (slot, scratch) in self.scratches.iter().zip(scratches) {
            *slot.lock() = Some(scratch);
            taken += 1;
        }
        if taken == 0 {
            return Err(Error::InvalidArgument("no scratch"));
        }
        // SAFETY: per the contract nobody else uses `backend` now, and it is
        // not initialised (`ready` is false).
        let slot = unsafe { &mut *self.backend.get() };
        if let Err(e) = Backend::init_in(slot, provider, config, parker) {
            self.return_scratches(give_back);
            return Err(e);
        }
        self.nr_scratches.store(taken, Ordering::Relaxed);
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Drop the backend (everything it holds goes back to its provider) and
    /// hand every scratch to `give_back`. Nothing happens if not started.
    ///
    /// # Safety
    /// No other method of `self` runs during the call or afterwards until the
    /// next `start`, and [`run_scanner`](Self::run_scanner) has returned.
    pub unsafe fn stop(&self, give_back: &mut dyn FnMut(&'static mut Scratch<C>)) {
        if !self.ready.swap(false, Ordering::AcqRel) {
            return;
        }
        // SAFETY: it was initialised (`ready` was true) and, per the contract,
        // nobody uses it any more.
        unsafe { (*self.backend.get()).assume_init_drop() };
        self.return_scratches(give_back);
    }

    fn return_scratches(&self, give_back: &mut dyn FnMut(&'static mut Scratch<C>)) {
        self.nr_scratches.store(0, Ordering::Relaxed);
        for slot in &self.scratches {
            if let Some(scratch) = slot.lock().take() {
                give_back(scratch);
            }
        }
    }

    /// The backend, if started.
    pub fn backend(&self) -> Result<&Backend<P, K>, Error> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        // SAFETY: `ready` (Acquire, paired with start's Release) says it is
        // initialised; `stop`'s contract keeps it alive while `&self` is used.
        Ok(unsafe { (*self.backend.get()).assume_init_ref() })
    }

    /// The scanner thread's body: runs until [`shutdown_scanner`](Self::shutdown_scanner).
    pub fn run_scanner<T: Clock>(&self, scratch: &mut Scratch<C>, clock: &T) -> Result<(), Error> {
        self.backend()?.run_scanner(scratch, clock)
    }

    /// [`run_scanner`](Self::run_scanner) that writes the coldest pages back to
    /// `device` as the pool nears its limit and when asked under pressure
    /// ([`Backend::run_scanner_writing_back`]).
    pub fn run_scanner_writing_back<T: Clock, D: SwapDevice>(
        &self,
        scratch: &mut Scratch<C>,
        clock: &T,
        device: &D,
    ) -> Result<(), Error> {
        self.backend()?
            .run_scanner_writing_back(scratch, clock, device)
    }

    /// Make [`run_scanner`](Self::run_scanner) return (sticky).
    pub fn shutdown_scanner(&self) {
        if let Ok(backend) = self.backend() {
            backend.shutdown();
        }
    }

    /// Accept new stores (`true`) or refuse them all; loads and invalidates
    /// go on either way.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Count a store the host refused before handing it over (the page goes
    /// to disk).
    pub fn count_host_refusal(&self, refusal: HostRefusal) {
        let counter = match refusal {
            HostRefusal::MemcgLimit => &self.refused_memcg_limit,
            HostRefusal::DomainBusy => &self.refused_domain_busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn with_scratch<R>(
        &self,
        op: impl FnOnce(&Backend<P, K>, &mut Scratch<C>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let backend = self.backend()?;
        let n = self.nr_scratches.load(Ordering::Relaxed).max(1);
        let i = (self.worker)().checked_rem(n).unwrap_or(0);
        let mut slot = self.scratches.get(i).ok_or(Error::ShutDown)?.lock();
        let scratch = slot.as_deref_mut().ok_or(Error::ShutDown)?;
        op(backend, scratch)
    }
}

impl<P: PageProvider + Clone, K: Parker, C: ColdCodec + 'static> SwapBackend for Foldswap<P, K, C> {
    fn init(&self, ty: u32, nr_pages: u64) -> Result<(), Error> {
        self.backend()?.init(ty as usize, nr_pages)
    }

    fn store(
        &self,
        ty: u32,
        offset: u64,
        page: &[u8; PAGE_SIZE],
        domain: Domain,
    ) -> Result<(), Error> {
        if !self.enabled.load(Ordering::Relaxed) {
            self.rejected_disabled.fetch_add(1, Ordering::Relaxed);
            return Err(Error::ShutDown);
        }
        self.with_scratch(|backend, scratch| {
            backend
                .store(ty as usize, offset, page, domain, scratch)
                .map(|_| ())
        })
    }

    fn load(&self, ty: u32, offset: u64, page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        self.with_scratch(|backend, scratch| backend.load(ty as usize, offset, page, scratch))
    }

    fn invalidate_page(&self, ty: u32, offset: u64) {
        if let Ok(backend) = self.backend() {
            let _ = backend.invalidate_page(ty as usize, offset);
        }
    }

    fn invalidate_area(&self, ty: u32) {
        if let Ok(backend) = self.backend() {
            let _ = backend.invalidate_area(ty as usize);
        }
    }

    fn set_limit_bytes(&self, limit: u64) {
        if let Ok(backend) = self.backend() {
            backend.set_pool_limit_bytes(usize::try_from(limit).unwrap_or(usize::MAX));
        }
    }

    fn report(&self) -> Report {
        let Ok(backend) = self.backend() else {
            return Report::default();
        };
        let s = backend.stats().snapshot();
        let held = backend.bytes_held();
        Report {
            stored_pages: s.stored_pages,
            same_filled_pages: s.same_filled_pages,
            duplicate_pages: s.duplicate_pages,
            patched_pages: s.patched_pages,
            compressed_pages: s.compressed_pages,
            base_only_pages: s.base_only_pages,
            blocked_pages: s.blocked_pages,
            raw_pages: s.incompressible_kept,
            stores: s.written_pages,
            dedup_hits: s.dedup_hits,
            loads: s.loaded_pages,
            load_misses: s.load_not_found,
            invalidates: s.invalidated_pages,
            areas: backend.active_areas() as u64,
            reject_pool_full: s.reject_pool_full,
            reject_alloc_fail: s.reject_alloc_fail,
            reject_compress_poor: s.reject_compress_poor,
            reject_other: self.rejected_disabled.load(Ordering::Relaxed),
            reject_memcg_limit: self.refused_memcg_limit.load(Ordering::Relaxed),
            reject_domain_busy: self.refused_domain_busy.load(Ordering::Relaxed),
            compressed_bytes: backend.pool_stats().object_bytes as u64,
            pool_bytes: held.pool as u64,
            index_bytes: held.total().saturating_sub(held.pool) as u64,
            offset_table_bytes: held.offset_tables as u64,
            entry_bytes: held.entries as u64,
            dedup_index_bytes: held.dedup_index as u64,
            similarity_index_bytes: held.similarity_index as u64,
            ladder_bytes: held.ladder as u64,
            block_bytes: held.blocks as u64,
            limit_bytes: match backend.pool_limit_bytes() {
                usize::MAX => u64::MAX,
                limit => limit as u64,
            },
            scanner_rounds: s.scanner_rounds,
            scanner_wakeups: s.scanner_wakeups,
            scanned_pages: s.scanned_pages,
            recompressed_pages: s.recompressed_pages,
            blocks_formed: s.blocks_formed,
            block_rewrites: s.block_rewrites,
            entries_moved: s.entries_moved,
            block_loads: s.block_loads,
            writeback: u64::from(backend.writeback_enabled()),
            written_back_pages: s.written_back_pages,
            writeback_busy: s.writeback_busy,
            writeback_raced: s.writeback_raced,
            writeback_errors: s.writeback_errors,
            writeback_requested_pages: s.writeback_requested_pages,
            // The host's to fill in: the charges live in its domain table.
            charged_bytes: 0,
        }
    }

    fn census(&self) -> CensusReport {
        let Ok(backend) = self.backend() else {
            return CensusReport::default();
        };
        let c = backend.census();
        CensusReport {
            lz4: c.lz4,
            cold: c.cold,
            raw: c.raw,
            raw_sharers: c.raw_sharers,
            delta: c.delta,
            blocked: c.blocked,
            blocks: c.blocks,
            block_frame_pages: c.block_frame_pages,
            block_frame_bytes: c.block_frame_bytes,
            bases_only: c.bases_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::boxed::Box;
    use std::vec::Vec;

    use super::*;
    use crate::test_pages::{TestPages, TestParker};
    use foldswap::ScanTunables;

    struct StdClock(std::time::Instant);

    impl Clock for StdClock {
        fn now_ns(&self) -> u64 {
            self.0.elapsed().as_nanos() as u64
        }
    }

    fn cpu() -> usize {
        0
    }

    fn scratch() -> &'static mut Scratch {
        Scratch::init_in(Box::leak(Box::new(MaybeUninit::uninit())))
    }

    fn text_page(seed: u64) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            let stamp = if i % 7 == 0 { seed as u8 } else { 0 };
            *b = b"swap page text, seed "[i % 21] ^ stamp;
        }
        page
    }

    type Instance = Foldswap<&'static TestPages, TestParker>;

    fn started(pages: &'static TestPages, n: usize) -> &'static Instance {
        let fs: &'static Instance = Box::leak(Box::new(Foldswap::new(cpu)));
        let mut scratches = (0..n).map(|_| scratch());
        // SAFETY: nothing else uses `fs` yet.
        unsafe {
            fs.start(
                pages,
                Config::default(),
                TestParker::default(),
                &mut scratches,
                &mut |_| {},
            )
        }
        .unwrap();
        fs
    }

    #[test]
    fn stopped_instance_refuses_everything() {
        let fs: Instance = Foldswap::new(cpu);
        let mut page = [0u8; PAGE_SIZE];
        assert_eq!(fs.init(0, 10), Err(Error::ShutDown));
        assert_eq!(fs.store(0, 0, &page, Domain(0)), Err(Error::ShutDown));
        assert_eq!(fs.load(0, 0, &mut page), Err(Error::ShutDown));
        fs.invalidate_page(0, 0);
        fs.invalidate_area(0);
        assert_eq!(fs.report(), Report::default());
        assert_eq!(fs.census(), CensusReport::default());
    }

    #[test]
    fn start_needs_a_scratch_and_keeps_nothing_on_error() {
        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(0)));
        let fs: Instance = Foldswap::new(cpu);
        // SAFETY: nothing else uses `fs`.
        let none = unsafe {
            fs.start(
                pages,
                Config::default(),
                TestParker::default(),
                &mut core::iter::empty(),
                &mut |_| {},
            )
        };
        assert_eq!(none, Err(Error::InvalidArgument("no scratch")));
        // No page at all: the backend cannot be built; the scratch comes back.
        let mut returned = 0;
        // SAFETY: as above.
        let oom = unsafe {
            fs.start(
                pages,
                Config::default(),
                TestParker::default(),
                &mut core::iter::once(scratch()),
                &mut |_| returned += 1,
            )
        };
        assert_eq!(oom, Err(Error::OutOfMemory));
        assert_eq!(returned, 1);
        assert_eq!(fs.backend().err(), Some(Error::ShutDown));
    }

    #[test]
    fn dedup_round_trip_with_the_scanner_running_then_stop_frees_everything() {
        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(usize::MAX)));
        let fs = started(pages, 2);
        let scanner = std::thread::spawn(move || {
            let clock = StdClock(std::time::Instant::now());
            fs.run_scanner(scratch(), &clock)
        });
        fs.init(0, 1000).unwrap();
        let distinct: Vec<_> = (0..8).map(text_page).collect();
        for offset in 0..200u64 {
            fs.store(0, offset, &distinct[(offset % 8) as usize], Domain(0))
                .unwrap();
        }
        let mut out = [0u8; PAGE_SIZE];
        for offset in 0..200u64 {
            fs.load(0, offset, &mut out).unwrap();
            assert_eq!(out, distinct[(offset % 8) as usize], "offset {offset}");
        }
        assert_eq!(fs.load(0, 200, &mut out), Err(Error::NotFound));
        let r = fs.report();
        assert_eq!((r.stores, r.loads, r.stored_pages), (200, 200, 200));
        assert_eq!(r.dedup_hits, 192);
        assert_eq!(r.areas, 1);
        // Eight distinct contents, however the scanner keeps them by now.
        let c = fs.census();
        assert_eq!(c.lz4 + c.cold + c.delta + c.blocked, 8, "{c:?}");
        assert_eq!((c.raw, c.raw_sharers), (0, 0));

        fs.set_enabled(false);
        assert_eq!(
            fs.store(0, 0, &distinct[1], Domain(0)),
            Err(Error::ShutDown)
        );
        assert_eq!(fs.report().reject_other, 1);
        for index in [0, 1, 1] {
            fs.count_host_refusal(HostRefusal::from_index(index).unwrap());
        }
        assert_eq!(HostRefusal::from_index(2), None);
        let r = fs.report();
        assert_eq!((r.reject_memcg_limit, r.reject_domain_busy), (1, 2));
        fs.load(0, 0, &mut out).unwrap();
        assert_eq!(out, distinct[0], "a refused store keeps the old page");

        fs.shutdown_scanner();
        scanner.join().unwrap().unwrap();
        assert!(pages.in_use() > 0);
        let mut returned = 0;
        // SAFETY: the scanner returned and nothing else uses `fs`.
        unsafe { fs.stop(&mut |_| returned += 1) };
        assert_eq!(returned, 2);
        assert_eq!(pages.in_use(), 0, "stop gives every page back");
        assert_eq!(
            fs.store(0, 0, &distinct[0], Domain(0)),
            Err(Error::ShutDown)
        );
    }

    /// A cold codec for the test: runs of one byte as (byte, length) triples.
    /// It beats lz4 on pages of long runs, so the scanner picks it.
    #[derive(Default)]
    struct RunLengthCodec;

    impl ColdCodec for RunLengthCodec {
        fn kind(&self) -> Option<foldswap::ColdKind> {
            Some(foldswap::ColdKind::Zstd)
        }

        fn set_level(&mut self, _level: u8) -> Result<(), Error> {
            Ok(())
        }

        fn level(&self) -> u8 {
            1
        }

        fn compress_page(
            &mut self,
            page: &[u8; PAGE_SIZE],
            out: &mut [u8],
        ) -> Result<Option<usize>, Error> {
            let mut len = 0;
            for run in page.chunk_by(|a, b| a == b) {
                let Some(slot) = out.get_mut(len..len + 3) else {
                    return Ok(None);
                };
                slot[0] = run[0];
                slot[1..].copy_from_slice(&(run.len() as u16).to_le_bytes());
                len += 3;
            }
            Ok(Some(len))
        }

        fn decompress_page(
            &mut self,
            input: &[u8],
            page: &mut [u8; PAGE_SIZE],
        ) -> Result<(), Error> {
            let mut at = 0;
            for triple in input.chunks(3) {
                let &[byte, lo, hi] = triple else {
                    return Err(Error::Corrupt);
                };
                let end = at + usize::from(u16::from_le_bytes([lo, hi]));
                page.get_mut(at..end).ok_or(Error::Corrupt)?.fill(byte);
                at = end;
            }
            if at == PAGE_SIZE {
                Ok(())
            } else {
                Err(Error::Corrupt)
            }
        }
    }

    /// A clock that moves 1 µs per reading; the test moves it further.
    struct StepClock(core::cell::Cell<u64>);

    impl StepClock {
        fn advance(&self, ns: u64) {
            self.0.set(self.0.get() + ns);
        }
    }

    impl Clock for StepClock {
        fn now_ns(&self) -> u64 {
            self.advance(1_000);
            self.0.get()
        }
    }

    #[test]
    fn the_scanner_recompresses_cold_pages_with_the_hosts_codec() {
        type WithCodec = Foldswap<&'static TestPages, TestParker, RunLengthCodec>;
        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(usize::MAX)));
        let fs: &'static WithCodec = Box::leak(Box::new(Foldswap::new(cpu)));
        let new_scratch = || {
            let slot = Box::leak(Box::new(MaybeUninit::uninit()));
            Scratch::init_in_with(slot, RunLengthCodec)
        };
        // SAFETY: nothing else uses `fs` yet.
        unsafe {
            fs.start(
                pages,
                Config::default(),
                TestParker::default(),
                &mut core::iter::once(new_scratch()),
                &mut |_| {},
            )
        }
        .unwrap();
        fs.init(0, 64).unwrap();
        // Sixteen runs of 256 bytes: lz4 needs a literal and a match per run.
        let runs = |seed: u64| -> [u8; PAGE_SIZE] {
            core::array::from_fn(|i| (seed as u8).wrapping_add((i / 256) as u8 * 7))
        };
        for offset in 0..32u64 {
            fs.store(0, offset, &runs(offset), Domain(0)).unwrap();
        }
        let tunables = ScanTunables {
            cold_rounds: 0,
            patch: 0,
            ..ScanTunables::default()
        };
        let scanner_scratch = new_scratch();
        let clock = StepClock(core::cell::Cell::new(0));
        for _ in 0..8 {
            fs.backend()
                .unwrap()
                .scan_burst(&tunables, scanner_scratch, &clock)
                .unwrap();
            clock.advance(1_000_000_000);
        }
        let report = fs.report();
        assert_eq!(report.recompressed_pages, 32, "every page went cold");
        let mut out = [0u8; PAGE_SIZE];
        for offset in 0..32u64 {
            fs.load(0, offset, &mut out).unwrap();
            assert_eq!(out, runs(offset), "offset {offset}");
        }
        let report = fs.report();
        assert!(report.compressed_bytes < 32 * 64);
        assert_eq!(
            report.index_bytes,
            report.offset_table_bytes
                + report.entry_bytes
                + report.dedup_index_bytes
                + report.similarity_index_bytes
                + report.ladder_bytes
                + report.block_bytes,
            "the tables add up to everything held beside the pool"
        );
        assert!(report.entry_bytes > 0 && report.offset_table_bytes > 0);
    }

    std::thread_local! {
        static CPU: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    fn thread_cpu() -> usize {
        CPU.with(|c| c.get())
    }

    /// Four "CPUs" on two scratches, the scanner and a statistics reader all at
    /// once (the kernel's situation): every load returns what its offset holds.
    #[test]
    fn concurrent_workers_scanner_and_stats_lose_nothing() {
        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(usize::MAX)));
        let fs: &'static Instance = Box::leak(Box::new(Foldswap::new(thread_cpu)));
        // SAFETY: nothing else uses `fs` yet.
        unsafe {
            fs.start(
                pages,
                Config {
                    wake_watermark_bytes: 16 << 10,
                    ..Config::default()
                },
                TestParker::default(),
                &mut (0..2).map(|_| scratch()),
                &mut |_| {},
            )
        }
        .unwrap();
        fs.init(0, 4 * 256).unwrap();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let scanner = s.spawn(|| {
                let clock = StdClock(std::time::Instant::now());
                fs.run_scanner(scratch(), &clock)
            });
            let reader = s.spawn(|| {
                // At least one read, however late the thread starts.
                let mut reads = 0u64;
                loop {
                    let mut text = crate::TextBuf::<2048>::new();
                    fs.report().render(&mut text).unwrap();
                    reads += 1;
                    if done.load(Ordering::SeqCst) {
                        break reads;
                    }
                }
            });
            let workers: Vec<_> = (0..4u64)
                .map(|cpu| {
                    s.spawn(move || {
                        CPU.with(|c| c.set(cpu as usize));
                        let mut held = [None::<u64>; 256];
                        let mut out = [0u8; PAGE_SIZE];
                        let mut x = cpu + 1;
                        for _ in 0..3000 {
                            x = x
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            let slot = ((x >> 33) % 256) as usize;
                            let offset = cpu * 256 + slot as u64;
                            match (x >> 20) % 4 {
                                0 | 1 => {
                                    let seed = (x >> 40) % 12;
                                    fs.store(0, offset, &text_page(seed), Domain(0)).unwrap();
                                    held[slot] = Some(seed);
                                }
                                2 => match held[slot] {
                                    Some(seed) => {
                                        fs.load(0, offset, &mut out).unwrap();
                                        assert_eq!(out, text_page(seed));
                                    }
                                    None => {
                                        assert_eq!(
                                            fs.load(0, offset, &mut out),
                                            Err(Error::NotFound)
                                        )
                                    }
                                },
                                _ => {
                                    fs.invalidate_page(0, offset);
                                    held[slot] = None;
                                }
                            }
                        }
                        held.iter().filter(|h| h.is_some()).count() as u64
                    })
                })
                .collect();
            let stored: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
            done.store(true, Ordering::SeqCst);
            assert!(reader.join().unwrap() > 0);
            let r = fs.report();
            assert_eq!(r.stored_pages, stored);
            assert!(r.dedup_hits > 0);
            fs.shutdown_scanner();
            scanner.join().unwrap().unwrap();
        });
        // SAFETY: the scanner returned and every user is gone.
        unsafe { fs.stop(&mut |_| {}) };
        assert_eq!(pages.in_use(), 0);
    }

    /// What the module returns to the patch for loads: only a slot the
    /// backend does not hold is -ENOENT (the kernel then reads the device).
    #[test]
    fn load_codes_fall_through_only_for_slots_not_held() {
        use crate::{errno, load_status};
        let stopped: Instance = Foldswap::new(cpu);
        let mut out = [0u8; PAGE_SIZE];
        let code = load_status(stopped.load(0, 0, &mut out));
        assert!(code < 0 && code != -errno::ENOENT, "stopped: {code}");

        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(usize::MAX)));
        let fs = started(pages, 1);
        fs.init(0, 16).unwrap();
        let page = text_page(5);
        fs.store(0, 3, &page, Domain(0)).unwrap();
        assert_eq!(load_status(fs.load(0, 3, &mut out)), 0);
        assert_eq!(out, page);
        assert_eq!(load_status(fs.load(0, 4, &mut out)), -errno::ENOENT);
        // An area never set up, an offset past the area: bugs, not "not held".
        for (ty, offset) in [(5, 0), (0, 1 << 40)] {
            let code = load_status(fs.load(ty, offset, &mut out));
            assert!(code < 0 && code != -errno::ENOENT, "{ty}:{offset}: {code}");
        }
    }

    #[test]
    fn workers_beyond_the_scratches_share_them() {
        fn cpu_seven() -> usize {
            7
        }
        let pages: &'static TestPages = Box::leak(Box::new(TestPages::new(usize::MAX)));
        let fs: &'static Instance = Box::leak(Box::new(Foldswap::new(cpu_seven)));
        // SAFETY: nothing else uses `fs` yet.
        unsafe {
            fs.start(
                pages,
                Config::default(),
                TestParker::default(),
                &mut (0..3).map(|_| scratch()),
                &mut |_| {},
            )
        }
        .unwrap();
        fs.init(1, 10).unwrap();
        let page = text_page(3);
        fs.store(1, 9, &page, Domain(0)).unwrap();
        let mut out = [0u8; PAGE_SIZE];
        fs.load(1, 9, &mut out).unwrap();
        assert_eq!(out, page);
    }
}
