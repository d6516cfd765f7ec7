//! Per-worker scratch memory for the backend's operations.
//!
//! Compressing, decompressing, comparing and delta-encoding need a few pages of
//! working memory and the lz4 hash table. None of it may live on a kernel stack, so
//! each worker (a CPU in the kernel, a thread in userspace) owns one [`Scratch`],
//! built in place by [`Scratch::init_in`] in memory the host provides.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_mem::{PAGE_SIZE, Page};
use foldswap_pool::{CompressScratch, DecompressScratch};

/// What decoding a stored entry needs.
pub struct DecodeScratch {
    /// Bytes of the entry's object, copied out of the pool under its lock.
    pub(crate) object: [u8; PAGE_SIZE],
    /// Bytes of a delta's base object.
    pub(crate) base_object: [u8; PAGE_SIZE],
    /// A decoded stored page (comparisons).
    pub(crate) page: Page,
    /// A delta's decoded base.
    pub(crate) base_page: Page,
    /// Inflater state (deflate, feature `alloc`).
    pub(crate) decompress: DecompressScratch,
}

/// Working memory of one worker: 68 KiB (the inflater itself, under `alloc`, is
/// made on the heap on first use).
pub struct Scratch {
    pub(crate) compress: CompressScratch,
    pub(crate) decode: DecodeScratch,
    /// The scanner's target page.
    pub(crate) target: Page,
    /// Delta-encoder index.
    pub(crate) delta_index: Page,
    /// Delta-encoder output.
    pub(crate) delta_out: [u8; PAGE_SIZE],
    /// The smallest delta found so far.
    pub(crate) delta_best: [u8; PAGE_SIZE],
    /// A recompressed page, kept while a delta is tried.
    pub(crate) recompressed: [u8; PAGE_SIZE],
}

impl Scratch {
    /// Build a scratch in place (never as a stack temporary).
    pub fn init_in(slot: &mut MaybeUninit<Scratch>) -> &mut Scratch {
        let ptr = slot.as_mut_ptr();
        // SAFETY: `ptr` is valid, aligned storage for a Scratch. Every field is written
        // in place below: byte arrays and pages are valid when zeroed;
        // MaybeUninit<CompressScratch> has CompressScratch's layout.
        unsafe {
            CompressScratch::init_in(&mut *addr_of_mut!((*ptr).compress).cast());
            let decode = addr_of_mut!((*ptr).decode);
            addr_of_mut!((*decode).decompress).write(DecompressScratch::new());
            addr_of_mut!((*decode).object).write_bytes(0, 1);
            addr_of_mut!((*decode).base_object).write_bytes(0, 1);
            addr_of_mut!((*decode).page).write_bytes(0, 1);
            addr_of_mut!((*decode).base_page).write_bytes(0, 1);
            addr_of_mut!((*ptr).target).write_bytes(0, 1);
            addr_of_mut!((*ptr).delta_index).write_bytes(0, 1);
            addr_of_mut!((*ptr).delta_out).write_bytes(0, 1);
            addr_of_mut!((*ptr).recompressed).write_bytes(0, 1);
            addr_of_mut!((*ptr).delta_best).write_bytes(0, 1);
        }
        // SAFETY: every field was initialised above.
        unsafe { slot.assume_init_mut() }
    }

    /// A scratch on the heap (feature `alloc`), built in place.
    #[cfg(feature = "alloc")]
    pub fn boxed() -> alloc::boxed::Box<Scratch> {
        let mut slot = alloc::boxed::Box::<Scratch>::new_uninit();
        Scratch::init_in(&mut slot);
        // SAFETY: `init_in` initialised every field.
        unsafe { slot.assume_init() }
    }
}

#[cfg(test)]
mod size_tests {
    use super::Scratch;

    /// The size the type's doc states (so the doc cannot drift from the type).
    #[test]
    fn scratch_is_what_its_doc_says() {
        assert_eq!(size_of::<Scratch>().div_ceil(1024), 68);
    }
}
