//! The cold codec: the strong compressor the scanner recompresses cold pages with,
//! supplied by the host.
//!
//! The store path compresses with lz4, which needs only a table this crate keeps.
//! A cold page is worth more CPU: zstd at level 1–3 is as small as deflate-6 at a
//! fifth of the CPU and decodes about twice as fast (issue figures on the dev
//! corpus). zstd needs workspaces this `no_std` crate cannot make, so the host
//! brings the codec: userspace the `zstd` crate's libzstd ([`ZstdCodec`], feature
//! `zstd`), the kernel its own `lib/zstd` (kernel-glue). miniz_oxide's deflate
//! stays behind the same trait ([`DeflateCodec`], feature `alloc`) for hosts
//! without zstd; [`NoColdCodec`] is the host without a cold codec (the scanner then
//! only patches).
//!
//! # Rules
//!
//! - One cold codec per worker, in the worker's scratch: every worker of one
//!   backend has the same codec, so any of them can decode what another stored.
//! - Workspaces are made once, when the codec is built; `compress_page` and
//!   `decompress_page` allocate nothing and never sleep.
//! - Decompression is checked and bounded like the built-in codecs': anything that
//!   does not decode to exactly one page is [`Error::Corrupt`]; nothing is written
//!   outside the page.

use foldswap_mem::{Error, PAGE_SIZE};

use crate::codec::{TAG_DEFLATE, TAG_ZSTD};

/// Which cold codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColdKind {
    /// Raw deflate (miniz_oxide; levels 1..=9).
    Deflate,
    /// A zstd frame (levels 1..=19).
    Zstd,
}

impl ColdKind {
    /// The pool tag of objects this codec wrote.
    pub const fn tag(self) -> u8 {
        match self {
            ColdKind::Deflate => TAG_DEFLATE,
            ColdKind::Zstd => TAG_ZSTD,
        }
    }

    /// The cold codec of a pool tag, if it names one.
    pub const fn from_tag(tag: u8) -> Option<ColdKind> {
        match tag {
            TAG_DEFLATE => Some(ColdKind::Deflate),
            TAG_ZSTD => Some(ColdKind::Zstd),
            _ => None,
        }
    }

    /// The levels the codec accepts.
    pub const fn levels(self) -> core::ops::RangeInclusive<u8> {
        match self {
            ColdKind::Deflate => 1..=9,
            ColdKind::Zstd => 1..=19,
        }
    }

    /// `level` if it is in [`levels`](Self::levels), else `InvalidArgument`
    /// (every codec's `set_level` checks with this).
    pub fn check_level(self, level: u8) -> Result<u8, Error> {
        if self.levels().contains(&level) {
            Ok(level)
        } else {
            Err(Error::InvalidArgument("cold codec level out of range"))
        }
    }

    /// The default level, chosen by measurement on the dev corpus (docs/backend.md).
    pub const fn default_level(self) -> u8 {
        match self {
            ColdKind::Deflate => 6,
            ColdKind::Zstd => 6,
        }
    }

    /// The codec's name.
    pub const fn name(self) -> &'static str {
        match self {
            ColdKind::Deflate => "deflate",
            ColdKind::Zstd => "zstd",
        }
    }
}

/// The scanner's codec for cold pages, supplied by the host (see the module doc).
pub trait ColdCodec {
    /// Which codec, or `None` for a host without one.
    fn kind(&self) -> Option<ColdKind>;

    /// Set the compression level; a level outside [`ColdKind::levels`] is
    /// [`Error::InvalidArgument`] and changes nothing.
    fn set_level(&mut self, level: u8) -> Result<(), Error>;

    /// The compression level now.
    fn level(&self) -> u8;

    /// Compress `page` into `out`: the length, or `None` if it does not fit.
    fn compress_page(
        &mut self,
        page: &[u8; PAGE_SIZE],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error>;

    /// Decompress `input` into exactly one page ([`Error::Corrupt`] otherwise).
    fn decompress_page(&mut self, input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error>;

    /// Whether the codec compresses blocks of several pages as one frame
    /// ([`compress_block`](Self::compress_block)); the scanner forms cold blocks
    /// only with a codec that does.
    fn blocks(&self) -> bool {
        false
    }

    /// Compress `input` (whole pages, neighbours in a cold block) as one frame into
    /// `out`: the length, or `None` if it does not fit. A codec without blocks
    /// returns [`Error::InvalidArgument`].
    fn compress_block(&mut self, _input: &[u8], _out: &mut [u8]) -> Result<Option<usize>, Error> {
        Err(Error::InvalidArgument("cold codec without blocks"))
    }

    /// Decode a block frame this codec wrote (tagged `tag`) into exactly
    /// `out.len()` bytes: [`Error::Corrupt`] if it decodes to any other length or
    /// not at all, [`Error::InvalidArgument`] for another codec's frame.
    fn decompress_block(&mut self, tag: u8, _input: &[u8], _out: &mut [u8]) -> Result<(), Error> {
        let _ = tag;
        Err(Error::InvalidArgument("cold codec without blocks"))
    }

    /// Decode an object tagged `tag`, which must be this codec's:
    /// [`Error::InvalidArgument`] for another cold codec's object (a host must give
    /// every worker of one backend the same codec).
    fn decode_tagged(
        &mut self,
        tag: u8,
        input: &[u8],
        page: &mut [u8; PAGE_SIZE],
    ) -> Result<(), Error> {
        match self.kind() {
            Some(kind) if kind.tag() == tag => self.decompress_page(input, page),
            _ => Err(Error::InvalidArgument(
                "object of a cold codec this worker lacks",
            )),
        }
    }
}

/// A host without a cold codec: nothing is recompressed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoColdCodec;

impl ColdCodec for NoColdCodec {
    fn kind(&self) -> Option<ColdKind> {
        None
    }

    fn set_level(&mut self, _level: u8) -> Result<(), Error> {
        Err(Error::InvalidArgument("no cold codec"))
    }

    fn level(&self) -> u8 {
        0
    }

    fn compress_page(
        &mut self,
        _page: &[u8; PAGE_SIZE],
        _out: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        Err(Error::InvalidArgument("no cold codec"))
    }

    fn decompress_page(&mut self, _input: &[u8], _page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        Err(Error::InvalidArgument("no cold codec"))
    }
}

/// Raw deflate as the cold codec (miniz_oxide; its compressor is ≈ 300 KB on the
/// heap, its inflater ≈ 11 KB).
#[cfg(feature = "alloc")]
pub struct DeflateCodec {
    deflate: crate::codec::Deflate,
    inflater: crate::codec::Inflater,
}

#[cfg(feature = "alloc")]
impl DeflateCodec {
    /// Deflate at its default cold level.
    pub fn new() -> Self {
        let mut deflate = crate::codec::Deflate::new();
        deflate.set_level(ColdKind::Deflate.default_level());
        DeflateCodec {
            deflate,
            inflater: crate::codec::Inflater::new(),
        }
    }
}

#[cfg(feature = "alloc")]
impl Default for DeflateCodec {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl ColdCodec for DeflateCodec {
    fn kind(&self) -> Option<ColdKind> {
        Some(ColdKind::Deflate)
    }

    fn set_level(&mut self, level: u8) -> Result<(), Error> {
        let level = ColdKind::Deflate.check_level(level)?;
        self.deflate.set_level(level);
        Ok(())
    }

    fn level(&self) -> u8 {
        self.deflate.level()
    }

    fn compress_page(
        &mut self,
        page: &[u8; PAGE_SIZE],
        out: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        crate::codec::Codec::compress_page(&mut self.deflate, page, out)
    }

    fn decompress_page(&mut self, input: &[u8], page: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        self.inflater.inflate(input, page)
    }
}

#[cfg(feature = "zstd")]
pub use zstd_codec::ZstdCodec;

#[cfg(feature = "zstd")]
mod zstd_codec {
    use foldswap_mem::{Error, PAGE_SIZE};
    use zstd::bulk::{Compressor, Decompressor};

    use super::{ColdCodec, ColdKind};

    /// zstd through libzstd (the `zstd` crate): one compression and one
    /// decompression context, made once. Frames carry the content size but no
    /// checksum and no dictionary id, like the kernel's `zstd_compress_cctx`
    /// output with those flags, so either side decodes the other's frames.
    pub struct ZstdCodec {
        compressor: Compressor<'static>,
        decompressor: Decompressor<'static>,
        level: u8,
    }

    impl ZstdCodec {
        /// zstd at its default cold level.
        pub fn new() -> Result<Self, Error> {
            let level = ColdKind::Zstd.default_level();
            let mut compressor =
                Compressor::new(i32::from(level)).map_err(|_| Error::OutOfMemory)?;
            compressor
                .include_checksum(false)
                .and_then(|()| compressor.include_dictid(false))
                .and_then(|()| compressor.include_contentsize(true))
                .map_err(|_| Error::InvalidArgument("zstd frame parameters"))?;
            let decompressor = Decompressor::new().map_err(|_| Error::OutOfMemory)?;
            Ok(ZstdCodec {
                compressor,
                decompressor,
                level,
            })
        }
    }

    impl ColdCodec for ZstdCodec {
        fn kind(&self) -> Option<ColdKind> {
            Some(ColdKind::Zstd)
        }

        fn set_level(&mut self, level: u8) -> Result<(), Error> {
            let level = ColdKind::Zstd.check_level(level)?;
            if level != self.level {
                self.compressor
                    .set_compression_level(i32::from(level))
                    .map_err(|_| Error::InvalidArgument("zstd level"))?;
                self.level = level;
            }
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
            // libzstd reports a destination too small as an error: the page does
            // not fit in `out`, which is `None` here, not a failure.
            Ok(self.compressor.compress_to_buffer(&page[..], out).ok())
        }

        fn decompress_page(
            &mut self,
            input: &[u8],
            page: &mut [u8; PAGE_SIZE],
        ) -> Result<(), Error> {
            match self.decompressor.decompress_to_buffer(input, &mut page[..]) {
                Ok(PAGE_SIZE) => Ok(()),
                _ => Err(Error::Corrupt),
            }
        }

        fn blocks(&self) -> bool {
            true
        }

        fn compress_block(&mut self, input: &[u8], out: &mut [u8]) -> Result<Option<usize>, Error> {
            Ok(self.compressor.compress_to_buffer(input, out).ok())
        }

        fn decompress_block(&mut self, tag: u8, input: &[u8], out: &mut [u8]) -> Result<(), Error> {
            if tag != ColdKind::Zstd.tag() {
                return Err(Error::InvalidArgument(
                    "object of a cold codec this worker lacks",
                ));
            }
            let want = out.len();
            match self.decompressor.decompress_to_buffer(input, out) {
                Ok(len) if len == want => Ok(()),
                _ => Err(Error::Corrupt),
            }
        }
    }
}

/// The cold codec a host of this build gets by default: zstd with feature `zstd`,
/// else deflate with feature `alloc`, else none.
#[cfg(feature = "zstd")]
pub type DefaultColdCodec = ZstdCodec;
/// The cold codec a host of this build gets by default: zstd with feature `zstd`,
/// else deflate with feature `alloc`, else none.
#[cfg(all(feature = "alloc", not(feature = "zstd")))]
pub type DefaultColdCodec = DeflateCodec;
/// The cold codec a host of this build gets by default: zstd with feature `zstd`,
/// else deflate with feature `alloc`, else none.
#[cfg(not(feature = "alloc"))]
pub type DefaultColdCodec = NoColdCodec;

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn text_page() -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        for (i, b) in page.iter_mut().enumerate() {
            *b = b"the quick brown fox jumps over the lazy dog "[i % 44] ^ (i / 512) as u8;
        }
        page
    }

    fn round_trips(codec: &mut dyn ColdCodec) {
        let page = text_page();
        let mut out = [0u8; 2 * PAGE_SIZE];
        let len = codec.compress_page(&page, &mut out).unwrap().unwrap();
        assert!(len < PAGE_SIZE / 4, "{len}");
        let bytes: Vec<u8> = out[..len].to_vec();
        let mut back = [0u8; PAGE_SIZE];
        codec.decompress_page(&bytes, &mut back).unwrap();
        assert_eq!(back, page);
        for cut in [0, 1, len / 2, len - 1] {
            assert_eq!(
                codec.decompress_page(&bytes[..cut], &mut back),
                Err(Error::Corrupt),
                "cut at {cut}"
            );
        }
        // An output too small is "does not fit", not an error.
        assert_eq!(codec.compress_page(&page, &mut out[..4]), Ok(None));
        let kind = codec.kind().unwrap();
        assert_eq!(codec.decode_tagged(kind.tag(), &bytes, &mut back), Ok(()));
        let other = if kind == ColdKind::Zstd {
            ColdKind::Deflate
        } else {
            ColdKind::Zstd
        };
        assert!(matches!(
            codec.decode_tagged(other.tag(), &bytes, &mut back),
            Err(Error::InvalidArgument(_))
        ));
        let level = codec.level();
        assert!(codec.set_level(0).is_err());
        assert!(codec.set_level(200).is_err());
        assert_eq!(codec.level(), level);
        codec.set_level(*kind.levels().end()).unwrap();
        let len = codec.compress_page(&page, &mut out).unwrap().unwrap();
        codec.decompress_page(&out[..len], &mut back).unwrap();
        assert_eq!(back, page);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn deflate_round_trips_and_rejects_what_is_not_its_own() {
        round_trips(&mut DeflateCodec::new());
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_round_trips_and_rejects_what_is_not_its_own() {
        round_trips(&mut ZstdCodec::new().unwrap());
    }

    /// A block of pages round-trips as one frame; a cut or padded frame, or an
    /// output of the wrong size, is `Corrupt`; another codec's tag is refused.
    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_blocks_round_trip_and_reject_the_wrong_length() {
        let mut codec = ZstdCodec::new().unwrap();
        assert!(codec.blocks());
        let mut pages = std::vec![0u8; 4 * PAGE_SIZE];
        for (i, chunk) in pages.chunks_mut(PAGE_SIZE).enumerate() {
            chunk.copy_from_slice(&text_page());
            chunk[i * 7] ^= 0x55;
        }
        let mut out = std::vec![0u8; 4 * PAGE_SIZE];
        let len = codec.compress_block(&pages, &mut out).unwrap().unwrap();
        let single = codec
            .compress_page(&text_page(), &mut [0; PAGE_SIZE])
            .unwrap()
            .unwrap();
        assert!(len < 2 * single, "{len} vs {single} for one page");
        let frame = out[..len].to_vec();
        let mut back = std::vec![0u8; 4 * PAGE_SIZE];
        codec.decompress_block(TAG_ZSTD, &frame, &mut back).unwrap();
        assert_eq!(back, pages);
        for cut in [0, 1, len / 2, len - 1] {
            assert_eq!(
                codec.decompress_block(TAG_ZSTD, &frame[..cut], &mut back),
                Err(Error::Corrupt)
            );
        }
        assert_eq!(
            codec.decompress_block(TAG_ZSTD, &frame, &mut back[..3 * PAGE_SIZE]),
            Err(Error::Corrupt)
        );
        let mut bigger = std::vec![0u8; 5 * PAGE_SIZE];
        assert_eq!(
            codec.decompress_block(TAG_ZSTD, &frame, &mut bigger),
            Err(Error::Corrupt)
        );
        assert!(matches!(
            codec.decompress_block(TAG_DEFLATE, &frame, &mut back),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(codec.compress_block(&pages, &mut out[..8]), Ok(None));
    }

    #[test]
    fn without_a_cold_codec_everything_is_a_typed_error() {
        let mut none = NoColdCodec;
        let page = text_page();
        let mut out = [0u8; PAGE_SIZE];
        assert!(none.compress_page(&page, &mut out).is_err());
        assert!(
            none.decode_tagged(TAG_ZSTD, &out, &mut [0; PAGE_SIZE])
                .is_err()
        );
        assert!(none.set_level(3).is_err());
        assert!(!none.blocks());
        assert!(none.compress_block(&page, &mut out).is_err());
        assert!(none.decompress_block(TAG_ZSTD, &out, &mut [0; 8]).is_err());
    }
}
