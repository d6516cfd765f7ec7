// SPDX-License-Identifier: GPL-2.0
//! foldswap.ko — foldswap as the swap backend of Linux 6.12.
//!
//! The kernel patch (kernel-glue/patch) calls a registered backend's five
//! frontswap operations where 6.12 calls zswap; `foldswap_host.c` registers
//! them and maps each page; the `foldswap_rs_*` functions here pass them to
//! [`BACKEND`], a [`SwapBackend`] from the `foldswap-kglue` crate. The host
//! traits are implemented over the C side: pages from the page allocator
//! (`GFP_NOWAIT | __GFP_NOWARN`, never sleeping) and time from ktime.
//!
//! TEMPORARY: `BACKEND` is foldswap-kglue's `Interim` (foldswap-pool: same-filled
//! + lz4) until `crates/foldswap` is ready; switching is changing its type and
//! constructor below.

use core::ffi::{c_int, c_long, c_void};
use core::ptr::NonNull;

use foldswap_kglue::mem::{Error, PAGE_SIZE, Page, PageProvider};
use foldswap_kglue::pool::{Clock, CodecKind, DEFAULT_THRESHOLD, PagePolicy, PoorCompression};
use foldswap_kglue::{Interim, SliceWriter, SwapBackend};
use kernel::prelude::*;

module! {
    type: Foldswap,
    name: "foldswap",
    author: "foldswap",
    description: "foldswap: deduplicating compressed swap backend",
    license: "GPL",
}

extern "C" {
    fn foldswap_host_alloc_page() -> *mut c_void;
    fn foldswap_host_free_page(addr: *mut c_void);
    fn foldswap_host_now_ns() -> u64;
    fn foldswap_host_register() -> c_int;
    fn foldswap_host_unregister() -> c_int;
    fn foldswap_host_apply_params();
}

/// Pages from the kernel's page allocator.
#[derive(Clone, Copy)]
struct KernelPages;

// SAFETY: `__get_free_page` returns a page-aligned, exclusively owned page of
// the direct map, valid until `free_page`; NULL becomes `OutOfMemory`.
unsafe impl PageProvider for KernelPages {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        // SAFETY: plain C call; GFP_NOWAIT never sleeps.
        let addr = unsafe { foldswap_host_alloc_page() };
        NonNull::new(addr.cast::<Page>()).ok_or(Error::OutOfMemory)
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        // SAFETY: the caller promises `page` came from `alloc_page` and is
        // not used again.
        unsafe { foldswap_host_free_page(page.as_ptr().cast::<c_void>()) }
    }
}

/// ktime as the backend's clock.
struct KernelClock;

impl Clock for KernelClock {
    fn now_ns(&self) -> u64 {
        // SAFETY: plain C call.
        unsafe { foldswap_host_now_ns() }
    }
}

const POLICY: PagePolicy = PagePolicy {
    codec: CodecKind::Lz4,
    threshold: DEFAULT_THRESHOLD,
    on_poor: PoorCompression::Reject,
};

/// The backend every operation goes to.
static BACKEND: Interim<KernelPages, KernelClock> = Interim::new(KernelPages, KernelClock, POLICY);

fn errno(e: Error) -> c_int {
    match e {
        Error::OutOfMemory => -12,             // ENOMEM
        Error::PoolFull => -28,                // ENOSPC
        Error::NotFound => -2,                 // ENOENT
        Error::Incompressible => -61,          // ENODATA
        Error::Corrupt => -5,                  // EIO
        _ => -22,                              // EINVAL
    }
}

fn status(r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}

/// swapon of type `ty`.
#[no_mangle]
pub extern "C" fn foldswap_rs_init(ty: u32, nr_pages: u64) -> c_int {
    status(BACKEND.init(ty, nr_pages))
}

/// Store the page at `src` (mapped by the caller) in slot `(ty, offset)`.
///
/// # Safety
/// `src` points to 4096 readable bytes.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_store(ty: u32, offset: u64, src: *const u8) -> c_int {
    // SAFETY: per the caller, a mapped page of PAGE_SIZE bytes.
    let page = unsafe { &*src.cast::<[u8; PAGE_SIZE]>() };
    status(BACKEND.store(ty, offset, page))
}

/// Fill the page at `dst` from slot `(ty, offset)`.
///
/// # Safety
/// `dst` points to 4096 writable bytes nobody else touches during the call.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_load(ty: u32, offset: u64, dst: *mut u8) -> c_int {
    // SAFETY: per the caller, a mapped, locked page of PAGE_SIZE bytes.
    let page = unsafe { &mut *dst.cast::<[u8; PAGE_SIZE]>() };
    status(BACKEND.load(ty, offset, page))
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

/// Accept new stores or not.
#[no_mangle]
pub extern "C" fn foldswap_rs_set_enabled(enabled: bool) {
    BACKEND.set_enabled(enabled);
}

/// Write the statistics into `buf` (`len` bytes); returns the bytes written.
///
/// # Safety
/// `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn foldswap_rs_stats(buf: *mut u8, len: usize) -> c_long {
    // SAFETY: per the caller.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    let mut w = SliceWriter::new(buf);
    match BACKEND.report().render(&mut w) {
        Ok(()) => w.len() as c_long,
        Err(_) => -28,
    }
}

struct Foldswap;

impl kernel::Module for Foldswap {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if BACKEND.start().is_err() {
            return Err(ENOMEM);
        }
        // SAFETY: plain C calls; the backend is ready for the parameters and
        // for swap traffic.
        let ret = unsafe {
            foldswap_host_apply_params();
            foldswap_host_register()
        };
        if ret != 0 {
            BACKEND.stop();
            return Err(EBUSY);
        }
        pr_info!("registered as swap backend (interim: same-filled + lz4 pool)\n");
        Ok(Foldswap)
    }
}

impl Drop for Foldswap {
    fn drop(&mut self) {
        // Every swap area served holds a reference on this module, so no area
        // is left here; unregistering waits for calls in flight (RCU).
        // SAFETY: plain C call.
        let ret = unsafe { foldswap_host_unregister() };
        if ret == 0 {
            BACKEND.stop();
        }
        pr_info!("unregistered ({})\n", ret);
    }
}
