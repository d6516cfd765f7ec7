//! TEMPORARY backend until `crates/foldswap` (dedup, patching, scanner) is
//! ready: foldswap-pool's page layer (same-filled, then lz4 into the
//! zsmalloc-like object store) plus this crate's [`SlotMap`] from
//! (swap type, offset) to the stored page. No dedup, no scanner.
//!
//! The lz4 state (8 KiB table + output buffer) is a `const`-built field, so a
//! `static Interim` holds it in `.data` and nothing builds it at run time (the
//! pool's `CompressScratch::init_in` builds the table on the stack when rustc
//! inlines it: an 8 KiB frame). The page is compressed here and committed with
//! the pool's `PagePool::commit`.
//!
//! Locks: `compress` (the one compression scratch) is taken first and the page
//! is compressed outside the `state` lock; `state` (pool + map) is then taken to
//! commit. A load takes `state`, then `decompress`. Order: compress → state →
//! decompress; nothing takes them the other way round.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_mem::sync::{AtomicBool, AtomicU64, Ordering};
use foldswap_mem::{Error, PAGE_SIZE, PageProvider};
use foldswap_pool::{
    COMPRESS_BOUND, Clock, CodecKind, DecompressScratch, Handle, PagePolicy, PagePool, Prepared,
    StoredPage, same_filled_word,
};
use lz4_flex::block::{CompressTable, compress_into_with_table};
use spin::Mutex;

use crate::SwapBackend;
use crate::report::Report;
use crate::slots::{MAX_TYPES, Slot, SlotMap};

const KIND_SAME_FILLED: u64 = 1;
const KIND_OBJECT: u64 = 2;

fn encode(stored: StoredPage) -> Slot {
    match stored {
        StoredPage::SameFilled(word) => Slot {
            kind: KIND_SAME_FILLED,
            value: word,
        },
        StoredPage::Object(handle) => Slot {
            kind: KIND_OBJECT,
            value: handle.to_raw(),
        },
    }
}

fn decode(slot: Slot) -> Result<StoredPage, Error> {
    match slot.kind {
        KIND_SAME_FILLED => Ok(StoredPage::SameFilled(slot.value)),
        KIND_OBJECT => Handle::from_raw(slot.value)
            .map(StoredPage::Object)
            .ok_or(Error::Corrupt),
        _ => Err(Error::Corrupt),
    }
}

struct State<P: PageProvider + Clone> {
    pool: PagePool<P>,
    map: SlotMap<P>,
    /// Bit `t` set: swap type `t` is served.
    areas: u32,
}

impl<P: PageProvider + Clone> State<P> {
    fn serves(&self, ty: u32) -> bool {
        ty < MAX_TYPES as u32 && self.areas & (1 << ty) != 0
    }

    fn drop_slot(&mut self, slot: Slot) {
        // A slot that does not decode, or a handle the pool does not know, has
        // nothing to free; the pool's own counters record it.
        if let Ok(stored) = decode(slot) {
            let _ = self.pool.free_page(stored);
        }
    }
}

/// The state, built in place inside its lock (a `PagePool` is ~1.4 KiB: moving
/// a `State` around by value would cost kernel stack).
struct Live<P: PageProvider + Clone> {
    started: bool,
    state: MaybeUninit<State<P>>,
}

impl<P: PageProvider + Clone> Live<P> {
    fn get(&self) -> Option<&State<P>> {
        // SAFETY: `started` is true exactly while `state` is initialised.
        self.started
            .then(|| unsafe { self.state.assume_init_ref() })
    }

    fn get_mut(&mut self) -> Option<&mut State<P>> {
        // SAFETY: as in `get`.
        self.started
            .then(|| unsafe { self.state.assume_init_mut() })
    }
}

/// lz4's table and output buffer, `const`-constructible.
struct Lz4Scratch {
    table: CompressTable,
    out: [u8; COMPRESS_BOUND],
}

impl Lz4Scratch {
    const fn new() -> Self {
        Lz4Scratch {
            table: CompressTable::small(),
            out: [0; COMPRESS_BOUND],
        }
    }

    /// The pool's store policy, up to the commit: same-filled, else lz4 within
    /// the threshold, else poor.
    fn prepare<'s>(
        &'s mut self,
        policy: &PagePolicy,
        page: &[u8; PAGE_SIZE],
        clock: &impl Clock,
    ) -> Prepared<'s> {
        if let Some(word) = same_filled_word(page) {
            return Prepared::SameFilled(word);
        }
        let codec = CodecKind::Lz4;
        let start = clock.now_ns();
        let len = compress_into_with_table(page, &mut self.out, &mut self.table).ok();
        let ns = clock.now_ns().saturating_sub(start);
        match len.and_then(|len| self.out.get(..len)) {
            Some(bytes) if bytes.len() <= policy.threshold => {
                Prepared::Compressed { codec, bytes, ns }
            }
            _ => Prepared::Poor { codec, ns },
        }
    }
}

/// Counters the pool does not keep.
#[derive(Default)]
struct Counters {
    load_misses: AtomicU64,
    invalidates: AtomicU64,
    reject_alloc_fail: AtomicU64,
    reject_other: AtomicU64,
}

/// The interim backend. `const`-constructible so it can live in a `static`;
/// [`start`](Self::start) makes its pool.
pub struct Interim<P: PageProvider + Clone, C: Clock> {
    provider: P,
    clock: C,
    state: Mutex<Live<P>>,
    compress: Mutex<Lz4Scratch>,
    decompress: Mutex<DecompressScratch>,
    policy: PagePolicy,
    enabled: AtomicBool,
    counters: Counters,
}

impl<P: PageProvider + Clone, C: Clock> Interim<P, C> {
    /// A stopped backend (holds nothing, rejects every store).
    pub const fn new(provider: P, clock: C, policy: PagePolicy) -> Self {
        Interim {
            provider,
            clock,
            state: Mutex::new(Live {
                started: false,
                state: MaybeUninit::uninit(),
            }),
            compress: Mutex::new(Lz4Scratch::new()),
            decompress: Mutex::new(DecompressScratch::new()),
            policy,
            enabled: AtomicBool::new(true),
            counters: Counters {
                load_misses: AtomicU64::new(0),
                invalidates: AtomicU64::new(0),
                reject_alloc_fail: AtomicU64::new(0),
                reject_other: AtomicU64::new(0),
            },
        }
    }

    /// Make the pool.
    pub fn start(&self) -> Result<(), Error> {
        let mut live = self.state.lock();
        if live.started {
            return Err(Error::InvalidArgument("already started"));
        }
        let pool = PagePool::new(self.provider.clone(), self.policy)?;
        let place = live.state.as_mut_ptr();
        // SAFETY: `place` is valid, aligned storage for a `State`, not yet
        // initialised (`started` is false); each field is written once.
        unsafe {
            addr_of_mut!((*place).pool).write(pool);
            addr_of_mut!((*place).map).write(SlotMap::new(self.provider.clone()));
            addr_of_mut!((*place).areas).write(0);
        }
        live.started = true;
        Ok(())
    }

    /// Free everything (every area must be gone; pages still held are freed).
    pub fn stop(&self) {
        let mut live = self.state.lock();
        if live.started {
            live.started = false;
            // SAFETY: it was initialised (`started`), and is not used again
            // until `start` writes it anew.
            unsafe { live.state.assume_init_drop() };
        }
    }

    /// Accept new stores (`true`) or reject them all (`false`); loads and
    /// invalidates of pages already held go on either way.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether new stores are accepted.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Count a reject the pool did not count: the index could not get a page
    /// (alloc fail), or anything else.
    fn reject_other(&self, e: Error) -> Error {
        let counter = match e {
            Error::OutOfMemory => &self.counters.reject_alloc_fail,
            _ => &self.counters.reject_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        e
    }
}

impl<P: PageProvider + Clone, C: Clock> Drop for Interim<P, C> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<P: PageProvider + Clone, C: Clock> SwapBackend for Interim<P, C> {
    fn init(&self, ty: u32, _nr_pages: u64) -> Result<(), Error> {
        if ty >= MAX_TYPES as u32 {
            return Err(Error::InvalidArgument("swap type"));
        }
        let mut state = self.state.lock();
        let state = state.get_mut().ok_or(Error::ShutDown)?;
        state.areas |= 1 << ty;
        Ok(())
    }

    fn store(&self, ty: u32, offset: u64, page: &[u8; PAGE_SIZE]) -> Result<(), Error> {
        if !self.enabled() {
            return Err(self.reject_other(Error::ShutDown));
        }
        let mut compress = self.compress.lock();
        let prepared = compress.prepare(&self.policy, page, &self.clock);
        let mut state = self.state.lock();
        let state = state.get_mut().ok_or(Error::ShutDown)?;
        if !state.serves(ty) {
            return Err(self.reject_other(Error::InvalidArgument("swap type not initialised")));
        }
        // The pool counts its own rejects (pool full, alloc fail, compress poor).
        let stored = state.pool.commit(prepared, page)?;
        match state.map.insert(ty as usize, offset, encode(stored)) {
            Ok(None) => Ok(()),
            Ok(Some(old)) => {
                state.drop_slot(old);
                Ok(())
            }
            Err(e) => {
                let _ = state.pool.free_page(stored);
                Err(self.reject_other(e))
            }
        }
    }

    fn load(&self, ty: u32, offset: u64, page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        let state = self.state.lock();
        let state = state.get().ok_or(Error::ShutDown)?;
        let Some(slot) = state.map.get(ty as usize, offset) else {
            self.counters.load_misses.fetch_add(1, Ordering::Relaxed);
            return Err(Error::NotFound);
        };
        let mut scratch = self.decompress.lock();
        state
            .pool
            .load_page(decode(slot)?, page, &mut scratch, &self.clock)
    }

    fn invalidate_page(&self, ty: u32, offset: u64) {
        let mut state = self.state.lock();
        let Some(state) = state.get_mut() else { return };
        if let Some(slot) = state.map.remove(ty as usize, offset) {
            state.drop_slot(slot);
            self.counters.invalidates.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn invalidate_area(&self, ty: u32) {
        let mut state = self.state.lock();
        let Some(state) = state.get_mut() else { return };
        let State { pool, map, areas } = state;
        map.clear_type(ty as usize, |_, slot| {
            if let Ok(stored) = decode(slot) {
                let _ = pool.free_page(stored);
            }
        });
        if ty < MAX_TYPES as u32 {
            *areas &= !(1 << ty);
        }
    }

    fn set_limit_bytes(&self, limit: u64) {
        if let Some(state) = self.state.lock().get_mut() {
            state
                .pool
                .set_limit_bytes(usize::try_from(limit).unwrap_or(usize::MAX));
        }
    }

    fn report(&self) -> Report {
        let state = self.state.lock();
        let mut r = Report {
            load_misses: self.counters.load_misses.load(Ordering::Relaxed),
            invalidates: self.counters.invalidates.load(Ordering::Relaxed),
            reject_alloc_fail: self.counters.reject_alloc_fail.load(Ordering::Relaxed),
            reject_other: self.counters.reject_other.load(Ordering::Relaxed),
            limit_bytes: u64::MAX,
            ..Report::default()
        };
        if let Some(state) = state.get() {
            let s = state.pool.stats();
            r.stored_pages = s.stored_pages;
            r.same_filled_pages = s.same_filled_pages;
            r.compressed_pages = s.compressed_pages;
            r.raw_pages = s.raw_pages;
            r.stores = s.stores;
            r.loads = s.loads;
            r.reject_pool_full = s.reject_pool_full;
            r.reject_alloc_fail += s.reject_alloc_fail;
            r.reject_compress_poor = s.reject_compress_poor;
            r.compressed_bytes = s.compressed_bytes;
            r.pool_bytes = s.store.bytes_held as u64;
            r.index_bytes = (state.map.pages_held() * PAGE_SIZE) as u64;
            r.limit_bytes = state.pool.store().limit_bytes() as u64;
            r.areas = u64::from(state.areas.count_ones());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::boxed::Box;

    use super::*;
    use crate::test_pages::TestPages;
    use foldswap_pool::NoClock;

    type Backend = Interim<&'static TestPages, NoClock>;

    fn backend(limit_pages: usize) -> (&'static Backend, &'static TestPages) {
        let provider = Box::leak(Box::new(TestPages::new(limit_pages)));
        let b: &'static Backend = Box::leak(Box::new(Interim::new(
            &*provider,
            NoClock,
            PagePolicy::default(),
        )));
        b.start().unwrap();
        (b, provider)
    }

    fn text_page(seed: u64) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = b"swap page memory "[(i + seed as usize) % 17];
        }
        page[0] = seed as u8;
        page
    }

    fn random_page(seed: u64) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        let mut s = seed | 1;
        for b in page.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *b = s as u8;
        }
        page
    }

    #[test]
    fn store_load_replace_invalidate_round_trip() {
        let (b, provider) = backend(usize::MAX);
        b.init(0, 1000).unwrap();
        let mut out = [0u8; PAGE_SIZE];
        assert_eq!(b.load(0, 3, &mut out), Err(Error::NotFound));
        b.store(0, 3, &text_page(1)).unwrap();
        b.store(0, 4, &[0x5a; PAGE_SIZE]).unwrap();
        b.load(0, 3, &mut out).unwrap();
        assert_eq!(out, text_page(1));
        b.load(0, 4, &mut out).unwrap();
        assert_eq!(out, [0x5a; PAGE_SIZE]);
        b.store(0, 3, &text_page(2)).unwrap();
        b.load(0, 3, &mut out).unwrap();
        assert_eq!(out, text_page(2));
        let r = b.report();
        assert_eq!(
            (r.stored_pages, r.same_filled_pages, r.compressed_pages),
            (2, 1, 1)
        );
        assert_eq!(r.stores, 3);
        assert_eq!(r.loads, 3);
        assert_eq!(r.load_misses, 1);
        b.invalidate_page(0, 3);
        assert_eq!(b.load(0, 3, &mut out), Err(Error::NotFound));
        b.invalidate_area(0);
        assert_eq!(b.report().stored_pages, 0);
        assert_eq!(
            b.store(0, 1, &text_page(1)),
            Err(Error::InvalidArgument("swap type not initialised"))
        );
        b.stop();
        assert_eq!(provider.in_use(), 0);
    }

    #[test]
    fn poor_pages_and_full_pool_are_rejected_and_lose_nothing() {
        let (b, _) = backend(usize::MAX);
        b.init(1, 1000).unwrap();
        assert_eq!(b.store(1, 0, &random_page(9)), Err(Error::Incompressible));
        b.store(1, 1, &text_page(5)).unwrap();
        b.set_limit_bytes(0);
        // The zspage in use may still have room; the first new one is refused.
        let full = (2..500u64).find(|&o| b.store(1, o, &random_page(o).map(|x| x & 3)).is_err());
        let mut out = [0u8; PAGE_SIZE];
        let full = full.unwrap();
        assert_eq!(b.load(1, full, &mut out), Err(Error::NotFound));
        b.load(1, 1, &mut out).unwrap();
        assert_eq!(out, text_page(5));
        let r = b.report();
        assert_eq!((r.reject_compress_poor, r.reject_pool_full), (1, 1));
        assert_eq!(r.stored_pages, full - 1);
        b.set_enabled(false);
        assert_eq!(b.store(1, 3, &[1; PAGE_SIZE]), Err(Error::ShutDown));
        b.load(1, 1, &mut out).unwrap();
        assert_eq!(b.report().reject_other, 1);
    }

    #[test]
    fn out_of_pages_rejects_cleanly() {
        let (b, provider) = backend(12);
        b.init(0, 1 << 20).unwrap();
        let mut stored = 0u64;
        for offset in 0..2000u64 {
            match b.store(0, offset * 300, &text_page(offset)) {
                Ok(()) => stored += 1,
                Err(e) => assert!(matches!(e, Error::OutOfMemory | Error::PoolFull), "{e:?}"),
            }
        }
        assert!(stored > 0 && stored < 2000);
        let mut out = [0u8; PAGE_SIZE];
        let mut loaded = 0;
        for offset in 0..2000u64 {
            if b.load(0, offset * 300, &mut out).is_ok() {
                assert_eq!(out, text_page(offset));
                loaded += 1;
            }
        }
        assert_eq!(loaded, stored);
        b.invalidate_area(0);
        b.stop();
        assert_eq!(provider.in_use(), 0);
    }
}
