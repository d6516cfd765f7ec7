//! The codecs: lz4 (lz4_flex block format) and raw deflate (miniz_oxide, feature
//! `alloc`), behind one [`Codec`] trait and usable without a pool.
//!
//! Compression needs per-worker state that is too big for a kernel stack: the lz4
//! hash table (8 KiB) and, for deflate, miniz_oxide's compressor (≈ 300 KB) and
//! inflater (≈ 11 KB). It lives in a [`CompressScratch`] / [`DecompressScratch`] that
//! the host keeps (one per worker / CPU) and builds in place with
//! [`CompressScratch::init_in`], so nothing big is ever a stack temporary in an
//! optimised build. The scratch also holds the output buffer, so a caller can
//! compress a page *outside* the pool's lock and commit the bytes afterwards.
//!
//! Decompression is checked and bounded: it writes only into the caller's page and
//! fails with [`Error::Corrupt`] unless the input decodes to exactly one page.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_mem::{Error, PAGE_SIZE};
use lz4_flex::block::{CompressTable, compress_into_with_table, decompress_into};

/// Bytes an output buffer needs so that compressing one page can never run out of
/// room (lz4's worst case for 4096 input bytes).
pub const COMPRESS_BOUND: usize = lz4_flex::block::get_maximum_output_size(PAGE_SIZE);

/// Tag of a page kept uncompressed (the page layer's `KeepRaw` policy).
pub const TAG_RAW: u8 = 0;
/// Tag of an lz4 block.
pub const TAG_LZ4: u8 = 1;
/// Tag of a raw deflate stream.
pub const TAG_DEFLATE: u8 = 2;
/// Tag of a zstd frame (the cold codec, see [`crate::ColdCodec`]).
pub const TAG_ZSTD: u8 = 3;
/// First tag free for hosts (the backend's own encodings, e.g. deltas). Tags are
/// the caller's to keep (the store keeps none); they are small so a host can pack
/// one in a few bits.
pub const TAG_FIRST_HOST: u8 = 4;

/// Which compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// lz4 block format (fast; the default).
    Lz4,
    /// Raw deflate, level 1 (smaller, ≈ 4× slower to compress). Needs feature `alloc`.
    /// (The scanner's cold codec is separate: [`crate::ColdCodec`].)
    Deflate,
}

impl CodecKind {
    /// Every codec, in tag order.
    pub const ALL: [CodecKind; 2] = [CodecKind::Lz4, CodecKind::Deflate];

    /// The object tag the pool stores with bytes of this codec.
    pub const fn tag(self) -> u8 {
        match self {
            CodecKind::Lz4 => TAG_LZ4,
            CodecKind::Deflate => TAG_DEFLATE,
        }
    }

    /// The codec of an object tag, if it names one.
    pub const fn from_tag(tag: u8) -> Option<CodecKind> {
        match tag {
            TAG_LZ4 => Some(CodecKind::Lz4),
            TAG_DEFLATE => Some(CodecKind::Deflate),
            _ => None,
        }
    }

    /// Index into per-codec statistics arrays.
    pub const fn index(self) -> usize {
        match self {
            CodecKind::Lz4 => 0,
            CodecKind::Deflate => 1,
        }
    }

    /// Whether this build can run the codec (deflate needs feature `alloc`).
    pub const fn available(self) -> bool {
        match self {
            CodecKind::Lz4 => true,
            CodecKind::Deflate => cfg!(feature = "alloc"),
        }
    }
}

/// One compressor: page in, bytes out; bytes in, page out.
pub trait Codec {
    /// Which codec this is.
    fn kind(&self) -> CodecKind;

    /// Compress `page` into `out`, returning the compressed length, or `None` if the
    /// result does not fit in `out` (for lz4 `out` must hold [`COMPRESS_BOUND`] bytes
    /// for every page to fit).
    fn compress_page(
        &mut self,
        page: &[u8; PAGE_SIZE],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error>;

    /// Decompress `input` into `page`. Fails with [`Error::Corrupt`] unless `input`
    /// decodes to exactly [`PAGE_SIZE`] bytes; never writes outside `page`.
    fn decompress_page(&mut self, input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error>;
}

/// A fresh lz4 table built at compile time: written in place it is copied from
/// read-only data, never assembled in an 8 KiB stack temporary (at -Os the kernel
/// build made `init_in` a 16.5 KiB frame when it called `CompressTable::small()`).
const EMPTY_LZ4_TABLE: CompressTable = CompressTable::small();

/// The lz4 codec: its compression table, kept in caller storage.
pub struct Lz4 {
    table: CompressTable,
}

impl Lz4 {
    /// Initialise an lz4 codec in place (the table is 8 KiB: never a stack temporary).
    pub fn init_in(slot: &mut MaybeUninit<Lz4>) -> &mut Lz4 {
        let ptr = slot.as_mut_ptr();
        // SAFETY: `ptr` points to writable, aligned, uninitialised storage for `Lz4`;
        // writing its only field initialises it.
        unsafe { addr_of_mut!((*ptr).table).write(EMPTY_LZ4_TABLE) };
        // SAFETY: fully initialised just above.
        unsafe { slot.assume_init_mut() }
    }
}

impl Codec for Lz4 {
    fn kind(&self) -> CodecKind {
        CodecKind::Lz4
    }

    #[inline]
    fn compress_page(
        &mut self,
        page: &[u8; PAGE_SIZE],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        // lz4_flex refuses (OutputTooSmall) unless `out` holds the worst case.
        Ok(compress_into_with_table(page, out, &mut self.table).ok())
    }

    fn decompress_page(&mut self, input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        decompress_lz4(input, page)
    }
}

/// Decompress an lz4 block into one page (checked: corrupt input, or output that is
/// not exactly one page, is [`Error::Corrupt`]).
///
/// ```
/// use foldswap_pool::{decompress_lz4, Error};
/// let mut page = [0u8; 4096];
/// assert_eq!(decompress_lz4(&[0xff, 1, 2], &mut page), Err(Error::Corrupt));
/// ```
#[inline]
pub fn decompress_lz4(input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
    match decompress_into(input, page) {
        Ok(PAGE_SIZE) => Ok(()),
        _ => Err(Error::Corrupt),
    }
}

#[cfg(feature = "alloc")]
mod deflate {
    use alloc::boxed::Box;

    use foldswap_mem::{Error, PAGE_SIZE};
    use miniz_oxide::DataFormat;
    use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress};
    use miniz_oxide::inflate::TINFLStatus;
    use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

    use super::{Codec, CodecKind};

    /// Deflate level: 1, the fastest (what zswap's deflate and the reference use).
    pub const DEFLATE_LEVEL: u8 = 1;

    /// The raw-deflate compressor of one worker, reset before every page.
    pub struct Deflate {
        compressor: Box<CompressorOxide>,
        level: u8,
    }

    impl Deflate {
        /// A raw-deflate compressor at [`DEFLATE_LEVEL`] (heap: ≈ 300 KB of state,
        /// built in place by `Box::default`, not on the stack).
        pub fn new() -> Self {
            let mut compressor = Box::<CompressorOxide>::default();
            compressor.set_format_and_level(DataFormat::Raw, DEFLATE_LEVEL);
            Deflate {
                compressor,
                level: DEFLATE_LEVEL,
            }
        }

        /// Change the level (1 fastest … 9 smallest; out-of-range values are clamped
        /// to 1..=9). Background recompression can afford more than the store path.
        pub fn set_level(&mut self, level: u8) {
            let level = level.clamp(1, 9);
            if level != self.level {
                self.compressor.set_format_and_level(DataFormat::Raw, level);
                self.level = level;
            }
        }

        /// The current level.
        pub fn level(&self) -> u8 {
            self.level
        }
    }

    impl Default for Deflate {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Codec for Deflate {
        fn kind(&self) -> CodecKind {
            CodecKind::Deflate
        }

        fn compress_page(
            &mut self,
            page: &[u8; PAGE_SIZE],
            out: &mut [u8],
        ) -> Result<Option<usize>, Error> {
            self.compressor.reset();
            let (status, read, written) =
                compress(&mut self.compressor, page, out, TDEFLFlush::Finish);
            Ok((status == TDEFLStatus::Done && read == PAGE_SIZE).then_some(written))
        }

        fn decompress_page(
            &mut self,
            input: &[u8],
            page: &mut [u8; PAGE_SIZE],
        ) -> Result<(), Error> {
            let mut inflater = Inflater::new();
            inflater.inflate(input, page)
        }
    }

    /// miniz_oxide's inflater (≈ 11 KB), kept on the heap and reused.
    pub struct Inflater {
        state: Box<DecompressorOxide>,
    }

    impl Inflater {
        /// A fresh inflater.
        pub fn new() -> Self {
            Inflater {
                state: Box::default(),
            }
        }

        /// Inflate a raw deflate stream into exactly one page.
        pub fn inflate(&mut self, input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
            self.state.init();
            let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
            let (status, _read, written) = decompress(&mut self.state, input, page, 0, flags);
            match (status, written) {
                (TINFLStatus::Done, PAGE_SIZE) => Ok(()),
                _ => Err(Error::Corrupt),
            }
        }
    }

    impl Default for Inflater {
        fn default() -> Self {
            Self::new()
        }
    }
}

#[cfg(feature = "alloc")]
pub use deflate::{DEFLATE_LEVEL, Deflate, Inflater};

/// Per-worker compression state: the lz4 table, the deflate compressor (feature
/// `alloc`) and an output buffer of [`COMPRESS_BOUND`] bytes. About 13 KiB without
/// `alloc`: build it in place ([`init_in`](Self::init_in)) in memory the host owns
/// (a static per CPU, a heap block), not on a stack.
pub struct CompressScratch {
    lz4: Lz4,
    #[cfg(feature = "alloc")]
    deflate: Deflate,
    out: [u8; COMPRESS_BOUND],
}

impl CompressScratch {
    /// Initialise a scratch in place.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use foldswap_pool::{CodecKind, CompressScratch};
    /// static mut SLOT: MaybeUninit<CompressScratch> = MaybeUninit::uninit();
    /// // SAFETY: this example is the only user of SLOT.
    /// let scratch = CompressScratch::init_in(unsafe { &mut *core::ptr::addr_of_mut!(SLOT) });
    /// let page = [7u8; 4096];
    /// let bytes = scratch.compress(CodecKind::Lz4, &page).unwrap().unwrap();
    /// assert!(bytes.len() < 100);
    /// ```
    pub fn init_in(slot: &mut MaybeUninit<CompressScratch>) -> &mut CompressScratch {
        let ptr = slot.as_mut_ptr();
        // SAFETY: `ptr` is valid, aligned storage for a CompressScratch; `Lz4` is
        // #[repr(Rust)] storage reachable through `addr_of_mut!`, and
        // MaybeUninit<Lz4> has the same layout as Lz4.
        let lz4 = unsafe { &mut *addr_of_mut!((*ptr).lz4).cast::<MaybeUninit<Lz4>>() };
        Lz4::init_in(lz4);
        // SAFETY: as above, writing the remaining fields in place.
        unsafe {
            #[cfg(feature = "alloc")]
            addr_of_mut!((*ptr).deflate).write(Deflate::new());
            addr_of_mut!((*ptr).out)
                .cast::<u8>()
                .write_bytes(0, COMPRESS_BOUND);
        }
        // SAFETY: every field is initialised above.
        unsafe { slot.assume_init_mut() }
    }

    /// A scratch on the heap (feature `alloc`), built in place.
    #[cfg(feature = "alloc")]
    pub fn boxed() -> alloc::boxed::Box<CompressScratch> {
        let mut slot = alloc::boxed::Box::<CompressScratch>::new_uninit();
        CompressScratch::init_in(&mut slot);
        // SAFETY: `init_in` initialised every field.
        unsafe { slot.assume_init() }
    }

    /// Set the deflate level of this scratch (feature `alloc`; see
    /// [`Deflate::set_level`]). Without `alloc` there is no deflate and this does
    /// nothing.
    pub fn set_deflate_level(&mut self, level: u8) {
        #[cfg(feature = "alloc")]
        self.deflate.set_level(level);
        #[cfg(not(feature = "alloc"))]
        let _ = level;
    }

    /// The codec of `kind`, or [`Error::InvalidArgument`] if this build lacks it.
    pub fn codec(&mut self, kind: CodecKind) -> Result<&mut dyn Codec, Error> {
        match kind {
            CodecKind::Lz4 => Ok(&mut self.lz4),
            #[cfg(feature = "alloc")]
            CodecKind::Deflate => Ok(&mut self.deflate),
            #[cfg(not(feature = "alloc"))]
            CodecKind::Deflate => Err(Error::InvalidArgument("deflate needs feature alloc")),
        }
    }

    /// Compress `page` with `kind` into the scratch's buffer. `Ok(None)` if the
    /// result would not fit in [`COMPRESS_BOUND`] bytes (deflate on random data).
    #[inline]
    pub fn compress(
        &mut self,
        kind: CodecKind,
        page: &[u8; PAGE_SIZE],
    ) -> Result<Option<&[u8]>, Error> {
        let len = match kind {
            CodecKind::Lz4 => self.lz4.compress_page(page, &mut self.out)?,
            #[cfg(feature = "alloc")]
            CodecKind::Deflate => self.deflate.compress_page(page, &mut self.out)?,
            #[cfg(not(feature = "alloc"))]
            CodecKind::Deflate => {
                return Err(Error::InvalidArgument("deflate needs feature alloc"));
            }
        };
        Ok(len.and_then(|len| self.out.get(..len)))
    }
}

/// Per-thread decompression state: a one-page buffer for objects that span two
/// provider pages, and the deflate inflater (feature `alloc`, made on first use).
/// About 4 KiB: keep it in host storage (a static per CPU, a heap block).
pub struct DecompressScratch {
    spill: [u8; PAGE_SIZE],
    inflate: InflateSlot,
}

/// The inflater of a [`DecompressScratch`] (empty without feature `alloc`).
#[derive(Default)]
pub struct InflateSlot {
    #[cfg(feature = "alloc")]
    inflater: Option<Inflater>,
}

impl DecompressScratch {
    /// An empty scratch (usable in a `static`).
    pub const fn new() -> Self {
        DecompressScratch {
            spill: [0; PAGE_SIZE],
            inflate: InflateSlot {
                #[cfg(feature = "alloc")]
                inflater: None,
            },
        }
    }

    /// Run `f` with the spill buffer and the inflater borrowed apart.
    pub(crate) fn split(&mut self) -> (&mut [u8; PAGE_SIZE], &mut InflateSlot) {
        (&mut self.spill, &mut self.inflate)
    }
}

impl Default for DecompressScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Decompress `input` of codec `kind` into exactly one page.
///
/// Checked and bounded: [`Error::Corrupt`] on any input that does not decode to
/// exactly 4096 bytes; never writes outside `page`; never panics.
///
/// ```
/// use foldswap_pool::{decompress, CodecKind, DecompressScratch, Error};
/// let mut page = [0u8; 4096];
/// let mut scratch = Box::new(DecompressScratch::new());
/// let garbage = [0x1f, 0x00, 0x42];
/// assert_eq!(decompress(CodecKind::Lz4, &garbage, &mut page, &mut scratch), Err(Error::Corrupt));
/// ```
pub fn decompress(
    kind: CodecKind,
    input: &[u8],
    page: &mut [u8; PAGE_SIZE],
    scratch: &mut DecompressScratch,
) -> Result<(), Error> {
    decompress_with(kind, input, page, &mut scratch.inflate)
}

pub(crate) fn decompress_with(
    kind: CodecKind,
    input: &[u8],
    page: &mut [u8; PAGE_SIZE],
    slot: &mut InflateSlot,
) -> Result<(), Error> {
    match kind {
        CodecKind::Lz4 => decompress_lz4(input, page),
        #[cfg(feature = "alloc")]
        CodecKind::Deflate => slot
            .inflater
            .get_or_insert_with(Inflater::new)
            .inflate(input, page),
        #[cfg(not(feature = "alloc"))]
        CodecKind::Deflate => {
            let _ = slot;
            Err(Error::InvalidArgument("deflate needs feature alloc"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::boxed::Box;

    fn scratch() -> Box<CompressScratch> {
        let mut slot = Box::<CompressScratch>::new_uninit();
        CompressScratch::init_in(&mut slot);
        // SAFETY: initialised by init_in.
        unsafe { slot.assume_init() }
    }

    fn text_page() -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = b"the quick brown fox jumps over the lazy dog "[i % 44] ^ (i / 512) as u8;
        }
        page
    }

    #[test]
    fn lz4_round_trips_and_rejects_truncation() {
        let mut scratch = scratch();
        let page = text_page();
        let bytes = scratch.compress(CodecKind::Lz4, &page).unwrap().unwrap();
        let bytes = bytes.to_vec();
        assert!(bytes.len() < PAGE_SIZE / 4);
        let mut out = [0u8; PAGE_SIZE];
        let mut d = Box::new(DecompressScratch::new());
        decompress(CodecKind::Lz4, &bytes, &mut out, &mut d).unwrap();
        assert_eq!(out, page);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(
                decompress(CodecKind::Lz4, &bytes[..cut], &mut out, &mut d),
                Err(Error::Corrupt)
            );
        }
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn deflate_round_trips_and_is_smaller_than_lz4() {
        let mut scratch = scratch();
        let page = text_page();
        let lz4_len = scratch
            .compress(CodecKind::Lz4, &page)
            .unwrap()
            .unwrap()
            .len();
        let bytes = scratch
            .compress(CodecKind::Deflate, &page)
            .unwrap()
            .unwrap()
            .to_vec();
        assert!(bytes.len() < lz4_len, "{} vs {lz4_len}", bytes.len());
        let mut out = [0u8; PAGE_SIZE];
        let mut d = Box::new(DecompressScratch::new());
        decompress(CodecKind::Deflate, &bytes, &mut out, &mut d).unwrap();
        assert_eq!(out, page);
        // Reset per page: compressing again gives the same bytes.
        let again = scratch
            .compress(CodecKind::Deflate, &page)
            .unwrap()
            .unwrap();
        assert_eq!(again, &bytes[..]);
        assert_eq!(
            decompress(
                CodecKind::Deflate,
                &bytes[..bytes.len() / 2],
                &mut out,
                &mut d
            ),
            Err(Error::Corrupt)
        );
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn higher_deflate_levels_round_trip_and_are_not_larger() {
        let mut scratch = scratch();
        let page = text_page();
        let fast = scratch
            .compress(CodecKind::Deflate, &page)
            .unwrap()
            .unwrap()
            .len();
        scratch.set_deflate_level(6);
        let bytes = scratch
            .compress(CodecKind::Deflate, &page)
            .unwrap()
            .unwrap()
            .to_vec();
        assert!(
            bytes.len() <= fast,
            "level 6: {} > level 1: {fast}",
            bytes.len()
        );
        let mut out = [0u8; PAGE_SIZE];
        decompress(
            CodecKind::Deflate,
            &bytes,
            &mut out,
            &mut DecompressScratch::new(),
        )
        .unwrap();
        assert_eq!(out, page);
        scratch.set_deflate_level(200);
        assert!(
            scratch
                .compress(CodecKind::Deflate, &page)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn tags_round_trip() {
        for kind in CodecKind::ALL {
            assert_eq!(CodecKind::from_tag(kind.tag()), Some(kind));
        }
        assert_eq!(CodecKind::from_tag(TAG_RAW), None);
    }
}
