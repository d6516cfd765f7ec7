//! Proof that the core crates are `no_std` and need only `core`.
//!
//! This staticlib defines its own `#[panic_handler]` and `#[global_allocator]`. If
//! any core crate (or a dependency it enables by default) links `std`, the build fails
//! with a duplicate lang item. It is built by the test command, not run.
#![no_std]

use core::alloc::{GlobalAlloc, Layout};

// Name every core crate so it is linked in.
pub use foldswap_mem as mem;

struct NoAllocator;

// SAFETY: never hands out memory, so it cannot hand out bad memory.
unsafe impl GlobalAlloc for NoAllocator {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: NoAllocator = NoAllocator;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Touch one item of each crate so the linker keeps them.
#[unsafe(no_mangle)]
pub extern "C" fn foldswap_nostd_check() -> usize {
    mem::PAGE_SIZE
}
pub use foldswap_pool as pool;

pub use foldswap_delta as delta;
pub use foldswap_merge as merge;

pub use foldswap as backend;
pub use foldswap_ladder as ladder;
pub use foldswap_wake as wake;
