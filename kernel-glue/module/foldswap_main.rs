// SPDX-License-Identifier: GPL-2.0
//! foldswap.ko — foldswap as the swap backend of Linux 6.12.
//!
//! The kernel patch (kernel-glue/patch) calls a registered backend's five
//! frontswap operations where 6.12 calls zswap; `foldswap_host.c` registers
//! them and maps each page; the `foldswap_rs_*` functions here pass them to
//! [`BACKEND`]: `crates/foldswap` (same-filled → byte-verified dedup → lz4
//! pool; its scanner recompresses cold pages with zstd or patches them) in static storage, through
//! foldswap-kglue's [`Foldswap`]. The host traits are implemented over the C
//! side: pages from the page allocator (`GFP_NOWAIT | __GFP_NOWARN`, never
//! sleeping), time from ktime, and the scanner kthread's parking
//! (`set_current_state` / `schedule_timeout` / `wake_up_process`), and the
//! cold codec over the kernel's lib/zstd ([`KernelZstd`]): the scanner
//! recompresses cold pages with it, and writes the coldest pages back to the
//! swap device as the pool nears its limit or the shrinker asks
//! ([`KernelSwapDevice`]). Each CPU has its own scratch (vmalloc) with a zstd
//! decompression context; the scanner has one more, which also holds the
//! compression context.

use core::ffi::{c_int, c_long, c_uint, c_void};
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::time::Duration;

use foldswap_kglue::backend::{
    ColdCodec, ColdKind, Config, DedupScope, Domain, DomainCharges, Parker, ScanTunables,
    SwapDevice, MAX_COLD_LEVEL,
};
use foldswap_kglue::mem::{Error, Page, PageProvider};
use foldswap_kglue::pool::Clock;
use foldswap_kglue::{
    errno, load_status, status, Foldswap, HostRefusal, ResidentPolicy, ResidentTunables,
    SliceWriter, SwapBackend, MAX_WORKERS, PAGE_SIZE,
};
use kernel::prelude::*;

module! {
    type: FoldswapModule,
    name: "foldswap",
    author: "foldswap",
    description: "foldswap: deduplicating compressed swap backend",
    license: "GPL",
}

extern "C" {
    fn foldswap_host_reserve_create() -> c_int;
    fn foldswap_host_reserve_destroy();
    fn foldswap_host_alloc_page() -> *mut c_void;
    fn foldswap_host_free_page(addr: *mut c_void);
    fn foldswap_host_vzalloc(bytes: usize) -> *mut c_void;
    fn foldswap_host_vfree(addr: *mut c_void);
    fn foldswap_host_zstd_cctx_size(max_level: c_int, max_src: usize) -> usize;
    fn foldswap_host_zstd_init_cctx(workspace: *mut c_void, size: usize) -> *mut c_void;
    fn foldswap_host_zstd_dctx_size() -> usize;
    fn foldswap_host_zstd_init_dctx(workspace: *mut c_void, size: usize) -> *mut c_void;
    fn foldswap_host_zstd_compress(
        cctx: *mut c_void,
        level: c_int,
        dst: *mut u8,
        dst_len: usize,
        src: *const u8,
        src_len: usize,
    ) -> c_long;
    fn foldswap_host_zstd_decompress(
        dctx: *mut c_void,
        dst: *mut u8,
        dst_len: usize,
        src: *const u8,
        src_len: usize,
    ) -> c_int;
    fn foldswap_host_now_ns() -> u64;
    fn foldswap_host_cpu() -> u32;
    fn foldswap_host_nr_cpus() -> u32;
    fn foldswap_host_dedup_scope() -> c_int;
    fn foldswap_host_random_u64() -> u64;
    fn foldswap_host_start_scanner() -> c_int;
    fn foldswap_host_stop_scanner();
    fn foldswap_host_prepare_park();
    fn foldswap_host_cancel_park();
    fn foldswap_host_park(timeout_ns: u64);
    fn foldswap_host_unpark();
    fn foldswap_host_yield();
    fn foldswap_host_register() -> c_int;
    fn foldswap_host_unregister() -> c_int;
    fn foldswap_host_params_on() -> c_int;
    fn foldswap_host_params_off();
    fn foldswap_host_check_preempt() -> c_int;
    fn foldswap_host_writeback_claim(ty: u32, offset: u64) -> *mut c_void;
    fn foldswap_host_writeback_write(folio: *mut c_void, page: *const u8);
    fn foldswap_host_writeback_release(folio: *mut c_void);
    fn foldswap_host_shrinker_on() -> c_int;
    fn foldswap_host_shrinker_off();
    fn foldswap_host_charge(domain: u16, bytes: c_long);
    fn foldswap_host_charged_bytes() -> u64;
    fn foldswap_host_ksmd_prepare_park();
    fn foldswap_host_ksmd_unpark();
    fn foldswap_host_resident_off();
}

/// Pages from the kernel's page allocator, through the module's page mempool
/// (its reserve carries stores over while the allocator is below its min
/// watermark; see foldswap_host.c).
#[derive(Clone, Copy)]
struct KernelPages;

// SAFETY: the mempool returns page-aligned, exclusively owned pages of the
// direct map, valid until they are freed back to it; NULL becomes `OutOfMemory`.
unsafe impl PageProvider for KernelPages {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        // SAFETY: plain C call; mempool_alloc(GFP_NOWAIT) never sleeps.
        let addr = unsafe { foldswap_host_alloc_page() };
        NonNull::new(addr.cast::<Page>()).ok_or(Error::OutOfMemory)
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        // SAFETY: the caller promises `page` came from `alloc_page` and is
        // not used again.
        unsafe { foldswap_host_free_page(page.as_ptr().cast::<c_void>()) }
    }
}

/// Each domain's pool bytes, charged to its memory cgroup through the C side's
/// domain table (foldswap_host.c: the domain's objcg, the patch's
/// swap_backend_charge). Called under the backend's content lock: the C side
/// takes only its own spin lock and never sleeps.
struct KernelCharges;

impl DomainCharges for KernelCharges {
    fn charge(&self, domain: Domain, bytes: usize) {
        // A frame or an object: at most a block of pages, so it fits.
        let bytes = c_long::try_from(bytes).unwrap_or(c_long::MAX);
        // SAFETY: the call takes two integers and reads no Rust memory. It may
        // run under the content lock, a spin lock: it takes only the C side's
        // domains_lock (never held while calling into the backend, so no
        // inversion) and swap_backend_charge(), which forces the charge under
        // PF_MEMALLOC and so never sleeps.
        unsafe { foldswap_host_charge(domain.0, bytes) }
    }

    fn uncharge(&self, domain: Domain, bytes: usize) {
        let bytes = c_long::try_from(bytes).unwrap_or(c_long::MAX);
        // SAFETY: as in `charge`; an uncharge takes the same locks and never
        // sleeps either.
        unsafe { foldswap_host_charge(domain.0, -bytes) }
    }
}

static KERNEL_CHARGES: KernelCharges = KernelCharges;

/// ktime as the scanner's clock.
struct KernelClock;

impl Clock for KernelClock {
    fn now_ns(&self) -> u64 {
        // SAFETY: plain C call.
        unsafe { foldswap_host_now_ns() }
    }
}

/// A kernel thread's parking: the classic kernel sleep pattern (the mapping
/// foldswap-wake's `Parker` documents). Only the parked thread calls
/// `prepare_park`, `cancel_park` and `park_timeout`; `unpark` is
/// `wake_up_process` on it from anywhere. Two threads park: the backend's
/// scanner kthread ([`SCANNER_PARKER`]) and ksmd while it follows the resident
/// policy ([`KSMD_PARKER`]: its `wait` runs in ksmd; the C side records ksmd
/// at its first `prepare_park` and holds a task reference until the policy is
/// off).
struct TaskParker {
    /// Records the thread if it must (ksmd), then
    /// set_current_state(TASK_INTERRUPTIBLE).
    prepare: unsafe extern "C" fn(),
    /// wake_up_process on the thread, if it is known; never sleeps.
    unpark: unsafe extern "C" fn(),
}

const SCANNER_PARKER: TaskParker = TaskParker {
    prepare: foldswap_host_prepare_park,
    unpark: foldswap_host_unpark,
};

const KSMD_PARKER: TaskParker = TaskParker {
    prepare: foldswap_host_ksmd_prepare_park,
    unpark: foldswap_host_ksmd_unpark,
};

impl Parker for TaskParker {
    fn prepare_park(&self) {
        // SAFETY: a C call without arguments, from the thread that parks.
        unsafe { (self.prepare)() }
    }

    fn cancel_park(&self) {
        // SAFETY: plain C call: __set_current_state(TASK_RUNNING).
        unsafe { foldswap_host_cancel_park() }
    }

    fn park_timeout(&self, timeout: Duration) {
        let ns = timeout
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(timeout.subsec_nanos()));
        // SAFETY: plain C call: schedule_timeout, in the parking thread,
        // which holds no lock here (the scanner between rounds; ksmd outside
        // ksm_thread_mutex).
        unsafe { foldswap_host_park(ns) }
    }

    fn unpark(&self) {
        // SAFETY: a C call without arguments that never sleeps.
        unsafe { (self.unpark)() }
    }

    fn yield_now(&self) {
        // SAFETY: plain C call: cond_resched(), from the parking thread with
        // no lock held (the backend's contract for `yield_now`).
        unsafe { foldswap_host_yield() }
    }
}

/// The resident scanner's policy, which ksmd follows while it is registered.
static RESIDENT: ResidentPolicy<TaskParker> = ResidentPolicy::new();

/// The swap device as writeback sees it: a slot is claimed by putting a new
/// folio for it in the swap cache (the patch's `swap_backend_writeback_*`,
/// zswap's writeback protocol). Only the scanner kthread uses it.
struct KernelSwapDevice;

/// A claimed swap slot: its folio, new in the swap cache and locked.
///
/// # Invariants
/// `folio` came from `swap_backend_writeback_claim` and has been neither
/// submitted nor released; this value is its only holder (not `Copy`).
struct ClaimedFolio {
    folio: NonNull<c_void>,
}

impl SwapDevice for KernelSwapDevice {
    type Slot = ClaimedFolio;

    fn claim(&self, swap_type: usize, offset: u64) -> Option<ClaimedFolio> {
        let ty = u32::try_from(swap_type).ok()?;
        // SAFETY: plain C call from the scanner kthread with no backend lock
        // held (the backend's contract for `claim`); it may sleep.
        let folio = NonNull::new(unsafe { foldswap_host_writeback_claim(ty, offset) })?;
        // INVARIANT: just claimed, held by this value alone.
        Some(ClaimedFolio { folio })
    }

    fn write(&self, slot: ClaimedFolio, page: &[u8; PAGE_SIZE]) {
        // SAFETY: per ClaimedFolio's invariants the folio is claimed and ours;
        // `slot` is consumed, so it is submitted once. `page` is PAGE_SIZE
        // readable bytes, copied before the call returns.
        unsafe { foldswap_host_writeback_write(slot.folio.as_ptr(), page.as_ptr()) }
    }

    fn release(&self, slot: ClaimedFolio) {
        // SAFETY: as in `write`: claimed, ours, consumed here.
        unsafe { foldswap_host_writeback_release(slot.folio.as_ptr()) }
    }
}

/// A zstd context (compression or decompression) in its own vmalloc'd
/// workspace.
///
/// # Invariants
/// `ctx` is the context lib/zstd built in `workspace`, which this value owns
/// alone (vzalloc'd, freed by `drop`); nothing else refers to either.
struct ZstdContext {
    workspace: NonNull<c_void>,
    ctx: NonNull<c_void>,
}

impl ZstdContext {
    /// A context of `size` workspace bytes made by `init` (zstd_init_cctx or
    /// zstd_init_dctx); `None` if vzalloc or zstd refuses.
    fn new(
        size: usize,
        init: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    ) -> Option<Self> {
        // SAFETY: plain C call; vzalloc returns NULL or `size` zeroed bytes.
        let workspace = NonNull::new(unsafe { foldswap_host_vzalloc(size) })?;
        // SAFETY: `workspace` holds `size` bytes nobody else uses; zstd builds
        // the context inside it (or returns NULL if it is too small).
        match NonNull::new(unsafe { init(workspace.as_ptr(), size) }) {
            // INVARIANT: built in `workspace`, which only this value holds.
            Some(ctx) => Some(ZstdContext { workspace, ctx }),
            None => {
                // SAFETY: from vzalloc above, never shared.
                unsafe { foldswap_host_vfree(workspace.as_ptr()) };
                None
            }
        }
    }
}

impl Drop for ZstdContext {
    fn drop(&mut self) {
        // SAFETY: per the invariants the workspace came from vzalloc and only
        // this value refers to it (the context lives inside it).
        unsafe { foldswap_host_vfree(self.workspace.as_ptr()) };
    }
}

/// The highest level the scanner's compression context is sized for (the
/// backend refuses higher ones when they are staged).
const MAX_ZSTD_LEVEL: c_int = MAX_COLD_LEVEL as c_int;

/// The largest source the scanner's zstd context compresses: a cold block.
const MAX_BLOCK_BYTES: usize = foldswap_kglue::backend::block::MAX_BLOCK_PAGES * PAGE_SIZE;

/// The cold codec over the kernel's lib/zstd. Every scratch decodes zstd
/// objects (loads, and the scanner's bases); only the scanner's scratch
/// compresses, so only it carries a compression context (sized for every
/// level up to [`MAX_COLD_LEVEL`], so a level change needs no memory).
struct KernelZstd {
    cctx: Option<ZstdContext>,
    dctx: ZstdContext,
    level: u8,
}

// SAFETY: the contexts are plain memory this value owns alone (ZstdContext's
// invariants) with no tie to the thread that made them; moving the codec to
// another thread moves that ownership. It is used by one thread at a time
// (a scratch is behind a lock or owned by the scanner).
unsafe impl Send for KernelZstd {}

impl KernelZstd {
    /// A decoding-only codec (a worker's).
    fn for_worker() -> Option<Self> {
        // SAFETY: plain C call.
        let size = unsafe { foldswap_host_zstd_dctx_size() };
        Some(KernelZstd {
            cctx: None,
            dctx: ZstdContext::new(size, foldswap_host_zstd_init_dctx)?,
            level: ColdKind::Zstd.default_level(),
        })
    }

    /// A codec that compresses too (the scanner's).
    fn for_scanner() -> Option<Self> {
        let mut codec = Self::for_worker()?;
        // SAFETY: plain C call.
        let size = unsafe { foldswap_host_zstd_cctx_size(MAX_ZSTD_LEVEL, MAX_BLOCK_BYTES) };
        codec.cctx = Some(ZstdContext::new(size, foldswap_host_zstd_init_cctx)?);
        Some(codec)
    }
}

impl ColdCodec for KernelZstd {
    fn kind(&self) -> Option<ColdKind> {
        Some(ColdKind::Zstd)
    }

    fn set_level(&mut self, level: u8) -> Result<(), Error> {
        let level = ColdKind::Zstd.check_level(level)?;
        if c_int::from(level) > MAX_ZSTD_LEVEL {
            return Err(Error::InvalidArgument("zstd level past the context's size"));
        }
        self.level = level;
        Ok(())
    }

    fn level(&self) -> u8 {
        self.level
    }

    fn compress_page(
        &mut self,
        page: &[u8; PAGE_SIZE],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        self.compress(page, out)
    }

    fn decompress_page(&mut self, input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        self.decompress(input, page)
    }

    fn blocks(&self) -> bool {
        true
    }

    fn compress_block(&mut self, input: &[u8], out: &mut [u8]) -> Result<Option<usize>, Error> {
        if input.len() > MAX_BLOCK_BYTES {
            return Err(Error::InvalidArgument("block past the context's size"));
        }
        self.compress(input, out)
    }

    fn decompress_block(&mut self, tag: u8, input: &[u8], out: &mut [u8]) -> Result<(), Error> {
        if tag != ColdKind::Zstd.tag() {
            return Err(Error::InvalidArgument(
                "object of a cold codec this worker lacks",
            ));
        }
        self.decompress(input, out)
    }
}

impl KernelZstd {
    /// Compress `input` (a page or a block of at most [`MAX_BLOCK_BYTES`]) into
    /// `out`: the length, or `None` if it does not fit.
    fn compress(&mut self, input: &[u8], out: &mut [u8]) -> Result<Option<usize>, Error> {
        let cctx = self
            .cctx
            .as_ref()
            .ok_or(Error::InvalidArgument("no zstd compression context"))?;
        // SAFETY: the context is ours alone (ZstdContext's invariants, and
        // `&mut self`), its workspace sized for sources up to MAX_BLOCK_BYTES
        // (callers check); `out` is `out.len()` writable bytes, `input`
        // `input.len()` readable ones.
        let ret = unsafe {
            foldswap_host_zstd_compress(
                cctx.ctx.as_ptr(),
                c_int::from(self.level),
                out.as_mut_ptr(),
                out.len(),
                input.as_ptr(),
                input.len(),
            )
        };
        match usize::try_from(ret) {
            Ok(0) => Ok(None),
            Ok(len) if len <= out.len() => Ok(Some(len)),
            _ => Err(Error::InvalidArgument("zstd compression failed")),
        }
    }

    /// Decode `input` into exactly `out.len()` bytes ([`Error::Corrupt`] otherwise).
    fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), Error> {
        // SAFETY: the context is ours alone (`&mut self`); `out` is
        // `out.len()` writable bytes, `input` `input.len()` readable ones, and
        // zstd writes only within the bound it is given.
        let ret = unsafe {
            foldswap_host_zstd_decompress(
                self.dctx.ctx.as_ptr(),
                out.as_mut_ptr(),
                out.len(),
                input.as_ptr(),
                input.len(),
            )
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(Error::Corrupt)
        }
    }
}

/// A worker's or the scanner's scratch: the backend's, with the kernel's zstd.
type Scratch = foldswap_kglue::backend::Scratch<KernelZstd>;

fn worker() -> usize {
    // SAFETY: plain C call (raw_smp_processor_id: a hint; the scratch has a lock).
    unsafe { foldswap_host_cpu() as usize }
}

/// Pool growth (bytes stored since the scanner's last burst) that wakes the
/// scanner early: 1 MiB (the backend's userspace default is 4 MiB; a guest or
/// a small machine swaps less per second).
const WAKE_WATERMARK_BYTES: usize = 1 << 20;

/// The scanner's longest sleep when no pressure wakes it: 2 s (the backend's
/// default is 200 ms). The store path's wake-ups, not polling, start its work.
const SCAN_SLEEP_MSECS: u32 = 2000;

/// The backend every operation goes to.
static BACKEND: Foldswap<KernelPages, TaskParker, KernelZstd> = Foldswap::new(worker);

/// A scratch in vmalloc memory with cold codec `cold`, built in place.
fn new_scratch(cold: Option<KernelZstd>) -> Option<&'static mut Scratch> {
    let cold = cold?;
    // SAFETY: plain C call; vzalloc returns page-aligned memory (Scratch's
    // alignment is at most a page) or NULL.
    let mem = unsafe { foldswap_host_vzalloc(core::mem::size_of::<Scratch>()) };
    let slot = NonNull::new(mem.cast::<MaybeUninit<Scratch>>())?;
    // SAFETY: fresh, exclusively owned, aligned memory of the right size; it
    // lives until `free_scratch`.
    Some(Scratch::init_in_with(unsafe { &mut *slot.as_ptr() }, cold))
}

fn free_scratch(scratch: &'static mut Scratch) {
    let ptr: *mut Scratch = scratch;
    // SAFETY: `scratch` came from `new_scratch`, is initialised and is not
    // used again: drop it in place, then give its memory back.
    unsafe {
        ptr.drop_in_place();
        foldswap_host_vfree(ptr.cast::<c_void>());
    }
}

/// The scanner kthread's body (called by the C side's thread function):
/// runs the backend's scanner until the module unloads.
#[no_mangle]
pub extern "C" fn foldswap_rs_scanner_main() {
    let Some(scratch) = new_scratch(KernelZstd::for_scanner()) else {
        pr_err!("scanner: no memory for its scratch; not scanning\n");
        return;
    };
    if let Err(e) = BACKEND.run_scanner_writing_back(scratch, &KernelClock, &KernelSwapDevice) {
        pr_err!("scanner stopped: {:?}\n", e);
    }
    free_scratch(scratch);
}

/// swapon of type `ty`.
#[no_mangle]
pub extern "C" fn foldswap_rs_init(ty: u32, nr_pages: u64) -> c_int {
    status(BACKEND.init(ty, nr_pages))
}

/// Store the page at `src` (mapped by the caller), of memory cgroup `memcg`
/// (its id; 0 without memory cgroups), in slot `(ty, offset)`.
///
/// # Safety
/// `src` points to 4096 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_store(
    ty: u32,
    offset: u64,
    src: *const u8,
    memcg: u16,
) -> c_int {
    // SAFETY: per the caller, a mapped page of PAGE_SIZE bytes.
    let page = unsafe { &*src.cast::<[u8; PAGE_SIZE]>() };
    // A page on its way to swap: memory is short, wake the resident scanner.
    RESIDENT.notify_pressure();
    status(BACKEND.store(ty, offset, page, Domain(memcg)))
}

/// Fill the page at `dst` from slot `(ty, offset)`: 0, `-ENOENT` only if
/// the slot is not held here, another error if it is held but unreadable.
///
/// # Safety
/// `dst` points to 4096 writable bytes nobody else touches during the call.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_load(ty: u32, offset: u64, dst: *mut u8) -> c_int {
    // SAFETY: per the caller, a mapped, locked page of PAGE_SIZE bytes.
    let page = unsafe { &mut *dst.cast::<[u8; PAGE_SIZE]>() };
    load_status(BACKEND.load(ty, offset, page))
}

/// Count a store the C side refused before the backend saw it (`cause`: 0
/// the cgroup's `memory.zswap.max`, 1 a busy domain).
#[no_mangle]
pub extern "C" fn foldswap_rs_refuse(cause: u32) {
    if let Some(refusal) = HostRefusal::from_index(cause) {
        BACKEND.count_host_refusal(refusal);
    }
}

/// The pool bytes the contents of domain `domain` hold, counted afresh (the
/// `domains` parameter sets it beside what is charged).
#[no_mangle]
pub extern "C" fn foldswap_rs_domain_bytes(domain: u16) -> u64 {
    BACKEND
        .backend()
        .map_or(0, |backend| backend.domain_bytes(Domain(domain)) as u64)
}

/// Slot `(ty, offset)` was freed.
#[no_mangle]
pub extern "C" fn foldswap_rs_invalidate_page(ty: u32, offset: u64) {
    BACKEND.invalidate_page(ty, offset);
}

/// swapoff of type `ty`.
#[no_mangle]
pub extern "C" fn foldswap_rs_invalidate_area(ty: u32) {
    BACKEND.invalidate_area(ty);
}

/// Pool limit in bytes (`u64::MAX`: none).
#[no_mangle]
pub extern "C" fn foldswap_rs_set_limit_bytes(limit: u64) {
    BACKEND.set_limit_bytes(limit);
}

/// Writeback on or off (the `writeback` parameter).
#[no_mangle]
pub extern "C" fn foldswap_rs_set_writeback(on: bool) {
    if let Ok(backend) = BACKEND.backend() {
        backend.set_writeback(on);
    }
}

/// Pages the pool holds from the page allocator (the shrinker's count).
#[no_mangle]
pub extern "C" fn foldswap_rs_pool_pages() -> u64 {
    BACKEND
        .backend()
        .map_or(0, |backend| (backend.pool_bytes_held() / PAGE_SIZE) as u64)
}

/// Ask the scanner to write back `pages` lone pages (the shrinker's scan).
#[no_mangle]
pub extern "C" fn foldswap_rs_request_writeback(pages: u64) {
    if let Ok(backend) = BACKEND.backend() {
        backend.request_writeback(u32::try_from(pages).unwrap_or(u32::MAX));
    }
}

/// Accept new stores or not.
#[no_mangle]
pub extern "C" fn foldswap_rs_set_enabled(enabled: bool) {
    BACKEND.set_enabled(enabled);
}

/// Stage the scanner's tunables: the module's fixed ones with these three
/// (checked by the backend: `-EINVAL` and nothing staged if out of range).
#[no_mangle]
pub extern "C" fn foldswap_rs_stage_scan(
    cold_rounds: u32,
    cold_level: u32,
    block_pages: u32,
) -> c_int {
    status(BACKEND.backend().and_then(|backend| {
        backend.stage_scan_tunables(scan_tunables(cold_rounds, cold_level, block_pages))
    }))
}

/// The scanner's tunables: the backend's defaults, the module's sleep, and
/// the three the parameters set.
fn scan_tunables(cold_rounds: u32, cold_level: u32, block_pages: u32) -> ScanTunables {
    ScanTunables {
        sleep_msecs: SCAN_SLEEP_MSECS,
        cold_rounds,
        cold_level,
        block_pages,
        ..ScanTunables::default()
    }
}

/// Write the statistics into `buf` (`len` bytes); returns the bytes written.
///
/// # Safety
/// `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_stats(buf: *mut u8, len: usize) -> c_long {
    let mut report = BACKEND.report();
    // SAFETY: plain C call (an atomic read).
    report.charged_bytes = unsafe { foldswap_host_charged_bytes() };
    // SAFETY: per the caller.
    unsafe { render_into(buf, len, |w| report.render(w)) }
}

/// Run `render` into `buf` (`len` bytes): the bytes written, or `-ENOSPC` if
/// the text does not fit.
///
/// # Safety
/// `buf` points to `len` writable bytes.
unsafe fn render_into(
    buf: *mut u8,
    len: usize,
    render: impl FnOnce(&mut SliceWriter<'_>) -> core::fmt::Result,
) -> c_long {
    // SAFETY: per the caller.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    let mut w = SliceWriter::new(buf);
    match render(&mut w) {
        Ok(()) => w.len() as c_long,
        Err(_) => c_long::from(-errno::ENOSPC),
    }
}

/// Write the census of stored contents (every entry walked under the content
/// lock) into `buf` (`len` bytes); returns the bytes written.
///
/// # Safety
/// `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_census(buf: *mut u8, len: usize) -> c_long {
    // SAFETY: per the caller.
    unsafe { render_into(buf, len, |w| BACKEND.census().render(w)) }
}

/// ksmd's signature of the page mapped at `addr`; the bytes it read go to
/// `bytes_read`.
///
/// # Safety
/// `addr` points to 4096 readable bytes and `bytes_read` to a writable
/// `unsigned int` (ksm.c's calc_checksum, with ksm_thread_mutex held).
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_resident_signature(
    addr: *const c_void,
    bytes_read: *mut c_uint,
) -> u32 {
    // SAFETY: per the caller, a mapped page of PAGE_SIZE bytes.
    let page = unsafe { &*addr.cast::<[u8; PAGE_SIZE]>() };
    let (signature, bytes) = RESIDENT.signature(page);
    // SAFETY: per the caller, writable.
    unsafe { bytes_read.write(bytes) };
    signature
}

/// Pages in ksmd's next batch (ksm.c, with ksm_thread_mutex held).
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_batch_pages() -> c_uint {
    RESIDENT.batch_pages(KernelClock.now_ns())
}

/// ksmd's sleep after a batch of `scanned` pages (ksm.c, no lock held).
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_wait(scanned: c_uint) {
    RESIDENT.wait(scanned, KernelClock.now_ns(), || KernelClock.now_ns());
}

/// Build the resident policy at `strength` (the C side, under the parameter
/// lock, before it registers the policy with ksm.c).
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_start(strength: u32) -> c_int {
    let tunables = match ResidentTunables::default().with_strength(strength) {
        Ok(tunables) => tunables,
        Err(e) => return status(Err(e)),
    };
    let Some(scope) = dedup_scope() else {
        return status(Err(Error::InvalidArgument("dedup_scope")));
    };
    // SAFETY: plain C call (get_random_u64).
    let seed = unsafe { foldswap_host_random_u64() };
    // SAFETY: the C side calls this under the parameter lock with the policy
    // stopped and unregistered: nothing else uses RESIDENT (stores notify it
    // only through `notify_pressure`, which sees it only once started).
    status(unsafe { RESIDENT.start(KSMD_PARKER, seed, tunables, scope) })
}

/// The merge domain of a page of memory cgroup `memcg` (its address, 0 for
/// none) with frame number `page`, under `dedup_scope` (ksm.c, with
/// ksm_thread_mutex held).
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_domain(memcg: u64, page: u64) -> u64 {
    RESIDENT.domain(memcg, page)
}

/// Every later wait of ksmd returns at once.
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_stop_scanning() {
    RESIDENT.stop_scanning();
}

/// No new call sees the policy.
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_hide() {
    RESIDENT.hide();
}

/// Drop the policy: the C side unregistered it from ksm.c (ksmd is out of
/// it), hid it and waited for RCU (no store is still notifying it).
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_stop() {
    // SAFETY: per the C side's sequence (resident_switch) nothing uses
    // RESIDENT any more, and it runs under the parameter lock.
    unsafe { RESIDENT.stop() }
}

/// Stage a signature strength for ksmd's next batch.
#[no_mangle]
pub extern "C" fn foldswap_rs_resident_stage(strength: u32) -> c_int {
    status(RESIDENT.stage_strength(strength))
}

/// The resident scanner's statistics into `buf` (`len` bytes).
///
/// # Safety
/// `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_resident_stats(buf: *mut u8, len: usize) -> c_long {
    // SAFETY: per the caller.
    unsafe { render_into(buf, len, |w| RESIDENT.report().render(w)) }
}

struct FoldswapModule;

/// Workers with a scratch of their own: the possible CPUs, up to MAX_WORKERS
/// (more CPUs share them).
fn scratch_count() -> usize {
    // SAFETY: plain C call.
    (unsafe { foldswap_host_nr_cpus() } as usize).clamp(1, MAX_WORKERS)
}

/// The `dedup_scope` parameter (fixed once insmod has set it); `None` for a
/// name that is none of the scopes (the host has logged which).
fn dedup_scope() -> Option<DedupScope> {
    // SAFETY: plain C call.
    let scope = unsafe { foldswap_host_dedup_scope() };
    u32::try_from(scope).ok().and_then(DedupScope::from_index)
}

fn start_backend(dedup_scope: DedupScope) -> Result<(), Error> {
    // SAFETY: plain C call (get_random_u64).
    let salt = unsafe { foldswap_host_random_u64() };
    let mut failed = false;
    let mut scratches = (0..scratch_count()).map_while(|_| {
        let scratch = new_scratch(KernelZstd::for_worker());
        failed |= scratch.is_none();
        scratch
    });
    // SAFETY: module init: nothing else uses BACKEND until the ops are
    // registered and the scanner started, below.
    let started = unsafe {
        BACKEND.start(
            KernelPages,
            Config {
                wake_watermark_bytes: WAKE_WATERMARK_BYTES,
                dedup_scope,
                dedup_salt: salt,
                ..Config::default()
            },
            SCANNER_PARKER,
            &mut scratches,
            &mut free_scratch,
        )
    };
    drop(scratches);
    started?;
    // The global scope keeps every content in domain 0, whoever stored it:
    // no cgroup to charge (the C side does not bind domains then either).
    let charged = match dedup_scope {
        DedupScope::Global => Ok(()),
        _ => BACKEND
            .backend()
            .and_then(|backend| backend.set_domain_charges(&KERNEL_CHARGES)),
    };
    if failed || charged.is_err() {
        // SAFETY: as above; nothing uses BACKEND yet.
        unsafe { BACKEND.stop(&mut free_scratch) };
        return Err(Error::OutOfMemory);
    }
    Ok(())
}

impl kernel::Module for FoldswapModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: plain C call (preempt_model_none; logs why on refusal).
        if unsafe { foldswap_host_check_preempt() } != 0 {
            return Err(EINVAL);
        }
        let Some(scope) = dedup_scope() else {
            return Err(EINVAL);
        };
        // SAFETY: plain C call (mempool_create_page_pool, may sleep: module init).
        if unsafe { foldswap_host_reserve_create() } != 0 {
            return Err(ENOMEM);
        }
        if let Err(e) = start_backend(scope) {
            pr_err!("cannot build the backend: {:?}\n", e);
            // SAFETY: plain C call; no page of the reserve is in use.
            unsafe { foldswap_host_reserve_destroy() };
            return Err(ENOMEM);
        }
        // SAFETY: plain C call; the backend is ready for the parameters (the
        // scanner's tunables among them), the scanner and swap traffic.
        if unsafe { foldswap_host_params_on() } != 0 {
            stop_backend();
            return Err(EINVAL);
        }
        // SAFETY: plain C call.
        if unsafe { foldswap_host_start_scanner() } != 0 {
            stop_backend();
            return Err(ENOMEM);
        }
        // SAFETY: plain C call (shrinker_alloc / shrinker_register); its
        // callbacks reach BACKEND, which is ready.
        if unsafe { foldswap_host_shrinker_on() } != 0 {
            BACKEND.shutdown_scanner();
            // SAFETY: plain C call: waits for the scanner kthread to exit.
            unsafe { foldswap_host_stop_scanner() };
            stop_backend();
            return Err(ENOMEM);
        }
        // SAFETY: plain C call.
        if unsafe { foldswap_host_register() } != 0 {
            // SAFETY: plain C calls: the shrinker goes (waiting for calls in
            // flight), then the scanner kthread exits.
            unsafe { foldswap_host_shrinker_off() };
            BACKEND.shutdown_scanner();
            // SAFETY: plain C call: waits for the scanner kthread to exit.
            unsafe { foldswap_host_stop_scanner() };
            stop_backend();
            return Err(EBUSY);
        }
        // SAFETY: plain C calls.
        let (cctx, dctx) = unsafe {
            (
                foldswap_host_zstd_cctx_size(MAX_ZSTD_LEVEL, MAX_BLOCK_BYTES),
                foldswap_host_zstd_dctx_size(),
            )
        };
        pr_info!(
            "registered as swap backend ({} scratches; zstd workspaces: {} KiB to decompress, {} KiB to compress)\n",
            scratch_count(),
            dctx / 1024,
            cctx / 1024
        );
        Ok(FoldswapModule)
    }
}

/// Parameters off (under the parameter lock: no stats read in flight), then
/// the backend and everything it holds go.
fn stop_backend() {
    // SAFETY: plain C call: the resident policy off (unregistered from ksm.c,
    // waiting for ksmd and for stores in flight), under the parameter lock.
    unsafe { foldswap_host_resident_off() };
    // SAFETY: plain C call.
    unsafe { foldswap_host_params_off() };
    // SAFETY: the ops are unregistered (or never were), the scanner kthread
    // has exited and the parameters no longer reach BACKEND.
    unsafe { BACKEND.stop(&mut free_scratch) };
    // SAFETY: plain C call; the backend gave every page back.
    unsafe { foldswap_host_reserve_destroy() };
}

impl Drop for FoldswapModule {
    fn drop(&mut self) {
        // Every swap area served holds a reference on this module, so no area
        // is left here; unregistering waits for calls in flight (RCU).
        // SAFETY: plain C call.
        let ret = unsafe { foldswap_host_unregister() };
        if ret != 0 {
            // Still registered: calls may come; keep everything (leaks it).
            pr_err!("cannot unregister ({}); backend kept\n", ret);
            return;
        }
        // SAFETY: plain C call: shrinker_free waits for calls in flight.
        unsafe { foldswap_host_shrinker_off() };
        BACKEND.shutdown_scanner();
        // SAFETY: plain C call: kthread_stop, waits for the scanner to exit.
        unsafe { foldswap_host_stop_scanner() };
        stop_backend();
        pr_info!("unregistered\n");
    }
}
