//! Per-worker scratch memory for the backend's operations.
//!
//! Compressing, decompressing, comparing and delta-encoding need a few pages of
//! working memory and the lz4 hash table. None of it may live on a kernel stack, so
//! each worker (a CPU in the kernel, a thread in userspace) owns one [`Scratch`],
//! built in place by [`Scratch::init_in`] in memory the host provides.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_mem::{PAGE_SIZE, Page};

use crate::block::{MAX_BLOCK_PAGES, MAX_FRAME};
use crate::decode::DecodedBlocks;
use crate::scanner::Gathered;
use foldswap_pool::{ColdCodec, CompressScratch, DecompressScratch, DefaultColdCodec, NoColdCodec};

/// What decoding a stored entry needs.
pub struct DecodeScratch<C: ColdCodec = DefaultColdCodec> {
    /// Bytes of the entry's object, copied out of the pool under its lock.
    pub(crate) object: [u8; PAGE_SIZE],
    /// Bytes of a delta's base object.
    pub(crate) base_object: [u8; PAGE_SIZE],
    /// A decoded stored page (comparisons).
    pub(crate) page: Page,
    /// A delta's decoded base.
    pub(crate) base_page: Page,
    /// The spill buffer of objects across two pool pages.
    pub(crate) decompress: DecompressScratch,
    /// The host's cold codec: decodes cold objects, and the scanner recompresses
    /// with it.
    pub(crate) cold: C,
    /// A cold block's frame, copied out of the pool's chunks under the lock.
    pub(crate) block_frame: [u8; MAX_FRAME],
    /// The last cold blocks decoded, and which blocks they are.
    pub(crate) decoded_blocks: DecodedBlocks,
}

/// Working memory of one worker: 324 KiB (of it 160 KiB to decode cold blocks,
/// two held decoded, and 96 KiB to form them), plus the cold codec's (a host codec
/// keeps its workspaces where it chooses; libzstd's and miniz_oxide's are on the
/// heap).
///
/// `C` is the host's cold codec ([`ColdCodec`]): every scratch used with one
/// backend has the same one. The default is this build's [`DefaultColdCodec`];
/// a host that brings its own (the kernel) names it.
pub struct Scratch<C: ColdCodec = DefaultColdCodec> {
    pub(crate) compress: CompressScratch,
    pub(crate) decode: DecodeScratch<C>,
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
    /// The scanner's cold block being gathered: its pages' entries (key and the
    /// generation read) ...
    pub(crate) gathered: [Gathered; MAX_BLOCK_PAGES],
    /// ... how many there are ...
    pub(crate) gathered_len: usize,
    /// ... their pages, back to back ...
    pub(crate) gather: [u8; MAX_BLOCK_PAGES * PAGE_SIZE],
    /// ... and the frame they compress to.
    pub(crate) frame: [u8; MAX_FRAME],
}

impl Scratch<NoColdCodec> {
    /// Build a scratch without a cold codec in place (never as a stack temporary).
    pub fn init_in(slot: &mut MaybeUninit<Self>) -> &mut Self {
        Self::init_in_with(slot, NoColdCodec)
    }
}

#[cfg(feature = "alloc")]
impl Scratch<DefaultColdCodec> {
    /// A scratch on the heap with this build's default cold codec (zstd with
    /// feature `zstd`, else deflate), built in place. Panics only if libzstd
    /// cannot make its contexts (out of memory at set-up).
    pub fn boxed() -> alloc::boxed::Box<Self> {
        #[cfg(feature = "zstd")]
        let cold = DefaultColdCodec::new().expect("libzstd contexts");
        #[cfg(not(feature = "zstd"))]
        let cold = DefaultColdCodec::new();
        Self::boxed_with(cold)
    }
}

impl<C: ColdCodec> Scratch<C> {
    /// Build a scratch with cold codec `cold` in place (never as a stack
    /// temporary).
    pub fn init_in_with(slot: &mut MaybeUninit<Self>, cold: C) -> &mut Self {
        let ptr = slot.as_mut_ptr();
        // SAFETY: `ptr` is valid, aligned storage for a Scratch. Every field is written
        // in place below: byte arrays and pages are valid when zeroed;
        // MaybeUninit<CompressScratch> has CompressScratch's layout; `cold` and
        // `decoded_blocks` is built in place by its own `init_at` (holding no
        // block), whose promise `addr_of_mut!` on this valid storage keeps.
        unsafe {
            CompressScratch::init_in(&mut *addr_of_mut!((*ptr).compress).cast());
            let decode = addr_of_mut!((*ptr).decode);
            addr_of_mut!((*decode).decompress).write(DecompressScratch::new());
            addr_of_mut!((*decode).cold).write(cold);
            addr_of_mut!((*decode).object).write_bytes(0, 1);
            addr_of_mut!((*decode).base_object).write_bytes(0, 1);
            addr_of_mut!((*decode).page).write_bytes(0, 1);
            addr_of_mut!((*decode).base_page).write_bytes(0, 1);
            addr_of_mut!((*decode).block_frame).write_bytes(0, 1);
            DecodedBlocks::init_at(addr_of_mut!((*decode).decoded_blocks));
            addr_of_mut!((*ptr).gathered).write_bytes(0, 1);
            addr_of_mut!((*ptr).gathered_len).write(0);
            addr_of_mut!((*ptr).gather).write_bytes(0, 1);
            addr_of_mut!((*ptr).frame).write_bytes(0, 1);
            addr_of_mut!((*ptr).target).write_bytes(0, 1);
            addr_of_mut!((*ptr).delta_index).write_bytes(0, 1);
            addr_of_mut!((*ptr).delta_out).write_bytes(0, 1);
            addr_of_mut!((*ptr).recompressed).write_bytes(0, 1);
            addr_of_mut!((*ptr).delta_best).write_bytes(0, 1);
        }
        // SAFETY: every field was initialised above.
        unsafe { slot.assume_init_mut() }
    }

    /// A scratch on the heap with cold codec `cold` (feature `alloc`), built in
    /// place.
    #[cfg(feature = "alloc")]
    pub fn boxed_with(cold: C) -> alloc::boxed::Box<Self> {
        let mut slot = alloc::boxed::Box::<Self>::new_uninit();
        Self::init_in_with(&mut slot, cold);
        // SAFETY: `init_in` initialised every field.
        unsafe { slot.assume_init() }
    }
}

#[cfg(test)]
mod size_tests {
    use super::{NoColdCodec, Scratch};

    /// The size the type's doc states (so the doc cannot drift from the type).
    #[test]
    fn scratch_is_what_its_doc_says() {
        assert_eq!(size_of::<Scratch<NoColdCodec>>().div_ceil(1024), 324);
    }
}
