//! # foldswap-kglue — the Rust half of foldswap's Linux kernel glue
//!
//! The kernel patch (`kernel-glue/patch/`) lets one module register
//! frontswap's five operations; the module (`kernel-glue/module/`) forwards
//! them to a [`SwapBackend`]. This crate holds everything of that module that
//! does not touch a kernel API, so it builds and is tested in userspace too:
//!
//! - [`SwapBackend`]: the five operations plus a limit and a [`Report`].
//! - [`Foldswap`]: `crates/foldswap`'s backend (same-filled → byte-verified
//!   dedup → lz4 pool, and the scanner that recompresses or patches cold pages) in
//!   static storage with one scratch per CPU: what the module runs.
//! - [`Report`]: the statistics the guest reads.
//! - [`ResidentPolicy`]: the resident scanner, the policy ksmd follows when the
//!   module registers it (sampled signatures, batch sizes, the pressure-woken
//!   governor); ksm.c merges.
//! - [`load_status`] / [`status`]: the return codes the patch reads (a load
//!   returns `-ENOENT` only for "not stored here").
//!
//! Everything is `no_std` and `core`-only; all memory comes from the host's
//! `PageProvider`, nothing panics on a caller-reachable path, and no frame is
//! large (the compression scratch lives in caller storage).
#![no_std]

#[cfg(test)]
extern crate std;

mod full;
mod report;
mod resident;
mod status;
#[cfg(test)]
mod test_pages;

// The module reaches the cores through this crate (one `--extern`).
pub use foldswap as backend;
pub use foldswap_mem as mem;
pub use foldswap_pool as pool;

pub use foldswap::Domain;
pub use foldswap_mem::{Error, PAGE_SIZE};
pub use full::{Foldswap, HostRefusal, MAX_WORKERS};
pub use report::{CensusReport, Report, SliceWriter, TextBuf};
pub use resident::{
    BATCH_TARGET_NS, PRESSURE_WINDOW_NS, ResidentPolicy, ResidentReport, ResidentTunables,
    ZERO_SIGNATURE, merge_domain,
};
pub use status::{errno, load_status, status};

/// frontswap's operations, as the kernel patch calls them. None may sleep
/// except `init` and `invalidate_area`.
pub trait SwapBackend {
    /// A swap area of `nr_pages` pages of type `ty` is being switched on.
    fn init(&self, ty: u32, nr_pages: u64) -> Result<(), Error>;
    /// Keep `page`, which belongs to dedup `domain` (the module: its memory
    /// cgroup), as the content of slot `(ty, offset)`, replacing what was
    /// there. On error the caller writes the page to the swap device (and drops
    /// whatever the backend held for the slot).
    fn store(
        &self,
        ty: u32,
        offset: u64,
        page: &[u8; PAGE_SIZE],
        domain: Domain,
    ) -> Result<(), Error>;
    /// Fill `page` with the content of slot `(ty, offset)`; `NotFound` if,
    /// and only if, the backend does not hold it (any other error fails the
    /// swap-in: see [`load_status`]).
    fn load(&self, ty: u32, offset: u64, page: &mut [u8; PAGE_SIZE]) -> Result<(), Error>;
    /// Slot `(ty, offset)` is free: drop what is held for it.
    fn invalidate_page(&self, ty: u32, offset: u64);
    /// The swap area of type `ty` is gone: drop everything held for it.
    fn invalidate_area(&self, ty: u32);
    /// Limit the bytes held (`u64::MAX`: no limit). Stores past it fail.
    fn set_limit_bytes(&self, limit: u64);
    /// The statistics now.
    fn report(&self) -> Report;
    /// The stored contents by encoding, counted afresh (walks every entry).
    fn census(&self) -> CensusReport;
}
