//! The scanner's tunables: what the host stages through foldswap-wake and the
//! scanner applies between rounds. Kept apart from the scanner so the backend,
//! which checks them when they are staged, does not depend on the scanner's code.

use foldswap_wake::Tunables;

/// The highest cold-codec level any codec takes (zstd's strongest ordinary level).
pub const MAX_COLD_LEVEL: u32 = 19;

/// Pages per cold block by default, chosen by measurement on the dev corpus
/// (docs/backend.md).
pub const DEFAULT_BLOCK_PAGES: u32 = 16;

/// The scanner's tunables: staged by any thread through foldswap-wake, applied by
/// the scanner between rounds only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanTunables {
    /// Longest sleep between bursts when nothing wakes the scanner, ms.
    pub sleep_msecs: u32,
    /// Scanner rounds a stored page must have sat through before it is patched or
    /// recompressed (Difference Engine: only rarely used pages).
    pub cold_rounds: u32,
    /// Look for similar pages and keep deltas (1) or not (0).
    pub patch: u32,
    /// Recompress lz4 pages with the host's cold codec (1) or not (0).
    pub recompress: u32,
    /// Most batches in one burst before the scanner checks for shutdown again.
    pub max_batches: u32,
    /// The cold codec's level; 0 keeps the codec's default
    /// ([`foldswap_pool::ColdKind::default_level`]). A level the codec does not
    /// take is refused when staged ([`MAX_COLD_LEVEL`]) or, past the codec's own
    /// range, counted as a page error while the codec keeps its level.
    pub cold_level: u32,
    /// Most cold pages compressed together as one block frame (1: no blocks; at
    /// most [`crate::block::MAX_BLOCK_PAGES`]). Blocks need a cold codec that
    /// forms them (zstd) and `recompress`.
    pub block_pages: u32,
}

impl Default for ScanTunables {
    fn default() -> Self {
        ScanTunables {
            sleep_msecs: 200,
            cold_rounds: 1,
            patch: 1,
            recompress: 1,
            max_batches: 4096,
            cold_level: 0,
            block_pages: DEFAULT_BLOCK_PAGES,
        }
    }
}

impl Tunables for ScanTunables {
    const WORDS: usize = 7;

    fn to_words(&self) -> foldswap_wake::TunableWords {
        let mut words = foldswap_wake::TunableWords::default();
        let fields = [
            self.sleep_msecs,
            self.cold_rounds,
            self.patch,
            self.recompress,
            self.max_batches,
            self.cold_level,
            self.block_pages,
        ];
        for (word, field) in words.iter_mut().zip(fields) {
            *word = field;
        }
        words
    }

    fn from_words(words: &foldswap_wake::TunableWords) -> Self {
        let word = |i: usize| words.get(i).copied().unwrap_or(0);
        ScanTunables {
            sleep_msecs: word(0),
            cold_rounds: word(1),
            patch: word(2),
            recompress: word(3),
            max_batches: word(4),
            cold_level: word(5),
            block_pages: word(6),
        }
    }
}
