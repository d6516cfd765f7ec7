//! Storage strategies compared by `foldswap analyze`.
//!
//! A [`Strategy`] is one way of keeping pages that left RAM: it is handed every page
//! once ([`Strategy::store`]), then asked for every page back ([`Strategy::load`]),
//! and finally says how it stored them and what that holds ([`Strategy::summary`]).
//! The runner in [`crate::analyze`] times the store and load passes and compares
//! every loaded byte with the original; a strategy only has to store, load and
//! account honestly.
//!
//! The strategies run today are *models* of the systems foldswap is compared with,
//! measured on the same pages in the same run:
//!
//! * [`CompressOnly`] — zswap / zram: same-filled pages cost no data, the rest are
//!   lz4-compressed into zsmalloc-like size classes.
//! * [`DedupOnly`] — KSM: identical pages (byte-verified) kept once, raw.
//!
//! and three that run real foldswap code:
//!
//! * [`Foldswap`] (`foldswap`, `foldswap-lz4`) — the backend (`crates/foldswap`),
//!   after its scanner settled and with its store path alone.
//! * [`PoolLz4`] — the compress-only policy on foldswap's own pool
//!   (`crates/foldswap-pool`), bytes held as the pool took them from its provider.

mod compress_only;
mod dedup_only;
mod foldswap;
mod pool_lz4;

use std::time::Instant;

use foldswap_mem::PAGE_SIZE;

pub use compress_only::{COMPRESS_ONLY, CompressOnly, size_class_bytes};
pub use dedup_only::{DedupOnly, dedup_only_copies_of};
pub use foldswap::Foldswap;
pub use pool_lz4::PoolLz4;

/// Why a strategy could not store or load a page.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// `load` of an index that was never stored.
    #[error("page {0} was never stored")]
    UnknownPage(u32),
    /// Stored data could not be decoded.
    #[error("page {index}: stored data does not decode: {reason}")]
    Corrupt {
        /// The page index.
        index: u32,
        /// What the decoder said.
        reason: String,
    },
    /// The strategy refused the page (e.g. its pool is full).
    #[error("page {index}: store refused: {reason}")]
    Refused {
        /// The page index.
        index: u32,
        /// Why.
        reason: String,
    },
}

/// How a strategy stored the pages it was given; every page is in exactly one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// All-zero pages stored as a fill value (no data).
    pub zero: u64,
    /// Pages of one repeated 8-byte word other than zero, stored as that word.
    pub same_filled: u64,
    /// Pages identical to a page already stored, kept as a reference to it.
    pub identical: u64,
    /// Pages kept as a delta against a similar stored page.
    pub patched: u64,
    /// Pages kept compressed.
    pub compressed: u64,
    /// Pages kept as a full uncompressed copy.
    pub raw: u64,
}

impl Counts {
    /// All pages counted.
    pub fn total(&self) -> u64 {
        self.zero + self.same_filled + self.identical + self.patched + self.compressed + self.raw
    }
}

/// Time spent in one named stage of a strategy, over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTime {
    /// Stable stage name, e.g. `compress`.
    pub name: &'static str,
    /// Total nanoseconds spent in it.
    pub nanos: u64,
}

/// What a strategy reports after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// How the pages were stored.
    pub counts: Counts,
    /// Bytes holding page data (compressed objects, raw copies, deltas).
    pub data_bytes: u64,
    /// Bytes of bookkeeping the modelled system spends (tables, handles, nodes):
    /// the sum of `metadata_tables`.
    pub metadata_bytes: u64,
    /// The bookkeeping table by table.
    pub metadata_tables: Vec<MetadataTable>,
    /// Time per stage, in the order the stages run.
    pub stages: Vec<StageTime>,
    /// Load times by how the page was kept (strategies that can tell; empty
    /// otherwise).
    pub loads_by_encoding: Vec<EncodingLoads>,
}

/// The loads of pages kept one way, each timed alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingLoads {
    /// Stable encoding name (`lz4`, `cold`, `delta`, `block`, ...).
    pub encoding: &'static str,
    /// Pages loaded.
    pub pages: u64,
    /// Median load time, ns.
    pub median_ns: u64,
    /// 99th percentile load time, ns.
    pub p99_ns: u64,
}

impl EncodingLoads {
    /// The figures of `times` (ns, in any order; sorted here); `None` if empty.
    pub fn from_times(encoding: &'static str, times: &mut [u64]) -> Option<Self> {
        if times.is_empty() {
            return None;
        }
        times.sort_unstable();
        let at = |per_mille: usize| times[(times.len() - 1) * per_mille / 1000];
        Some(EncodingLoads {
            encoding,
            pages: times.len() as u64,
            median_ns: at(500),
            p99_ns: at(990),
        })
    }
}

/// One table of a strategy's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataTable {
    /// Stable name (`offset_slots`, `entries`, ...).
    pub name: &'static str,
    /// Bytes it holds.
    pub bytes: u64,
}

impl Summary {
    /// A summary whose `metadata_bytes` is the sum of `tables`.
    pub fn new(
        counts: Counts,
        data_bytes: u64,
        tables: &[(&'static str, u64)],
        stages: Vec<StageTime>,
    ) -> Self {
        let metadata_tables: Vec<MetadataTable> = tables
            .iter()
            .map(|&(name, bytes)| MetadataTable { name, bytes })
            .collect();
        Summary {
            counts,
            data_bytes,
            metadata_bytes: metadata_tables.iter().map(|t| t.bytes).sum(),
            metadata_tables,
            stages,
            loads_by_encoding: Vec::new(),
        }
    }
}

/// One way of storing pages; see the module documentation.
pub trait Strategy {
    /// Short stable name used in the table, the JSON and the plot (`compress-only`).
    fn name(&self) -> &'static str;
    /// One line saying which system this models and how bytes are counted.
    fn model(&self) -> &'static str;
    /// The runner is about to store `pages` pages: a chance to reserve memory so the
    /// store pass does not time reallocation. Optional.
    fn reserve(&mut self, pages: usize) {
        let _ = pages;
    }
    /// Store page `index`. The runner stores indices `0..pages` once each, in order.
    fn store(&mut self, index: u32, page: &[u8; PAGE_SIZE]) -> Result<(), StrategyError>;
    /// Background work between storing and loading (the backend's scanner), timed
    /// by the strategy as a stage of its own, not as load time. Optional.
    fn settle(&mut self) -> Result<(), StrategyError> {
        Ok(())
    }
    /// Write page `index` back into `out`.
    fn load(&mut self, index: u32, out: &mut [u8; PAGE_SIZE]) -> Result<(), StrategyError>;
    /// How the pages were stored, what it holds, and where time went.
    fn summary(&self) -> Summary;
}

/// Every strategy `analyze` runs, in report order: the real backend first (with
/// and without its scanner), then the systems it is compared with.
pub fn all_strategies() -> Result<Vec<Box<dyn Strategy>>, StrategyError> {
    Ok(vec![
        Box::new(Foldswap::new(true)?),
        Box::new(Foldswap::new(false)?),
        Box::new(CompressOnly::new()),
        Box::new(PoolLz4::new()?),
        Box::new(DedupOnly::new()),
    ])
}

/// Same-filled detection and filling, shared with foldswap's pool (a pure function,
/// the same test zswap and zram make).
pub use foldswap_pool::{fill_page, same_filled_word as fill_word};

/// Accumulates the time of a strategy's named stages.
#[derive(Debug, Clone)]
pub struct StageClock {
    names: &'static [&'static str],
    nanos: Vec<u64>,
}

impl StageClock {
    /// A clock for stages `names` (reported in this order).
    pub fn new(names: &'static [&'static str]) -> Self {
        StageClock {
            names,
            nanos: vec![0; names.len()],
        }
    }

    /// Run `work`, adding its time to stage number `stage`.
    pub fn time<R>(&mut self, stage: usize, work: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let result = work();
        let spent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(total) = self.nanos.get_mut(stage) {
            *total = total.saturating_add(spent);
        }
        result
    }

    /// The totals, one per stage.
    pub fn stages(&self) -> Vec<StageTime> {
        self.names
            .iter()
            .zip(&self.nanos)
            .map(|(&name, &nanos)| StageTime { name, nanos })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Store and load back a mix of pages through `strategy`, checking every byte.
    pub(super) fn round_trip(strategy: &mut dyn Strategy, pages: &[[u8; PAGE_SIZE]]) -> Summary {
        for (i, page) in pages.iter().enumerate() {
            strategy.store(i as u32, page).unwrap();
        }
        strategy.settle().unwrap();
        let mut out = [0u8; PAGE_SIZE];
        for (i, page) in pages.iter().enumerate() {
            strategy.load(i as u32, &mut out).unwrap();
            assert!(out == *page, "{}: page {i} differs", strategy.name());
        }
        assert!(matches!(
            strategy.load(pages.len() as u32, &mut out),
            Err(StrategyError::UnknownPage(_))
        ));
        let summary = strategy.summary();
        assert_eq!(summary.counts.total(), pages.len() as u64);
        summary
    }

    /// Zero, same-filled, text-like, random and duplicate pages.
    pub(super) fn mixed_pages() -> Vec<[u8; PAGE_SIZE]> {
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let mut random = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut text = [0u8; PAGE_SIZE];
        for (i, b) in text.iter_mut().enumerate() {
            *b = b"the quick brown fox jumps over the lazy dog "[i % 44];
        }
        let mut noise = [0u8; PAGE_SIZE];
        for b in noise.iter_mut() {
            *b = random() as u8;
        }
        let mut filled = [0u8; PAGE_SIZE];
        fill_page(&mut filled, 0x0102_0304_0506_0708);
        vec![
            [0; PAGE_SIZE],
            text,
            noise,
            filled,
            text,
            [0; PAGE_SIZE],
            noise,
        ]
    }

    #[test]
    fn stage_clock_reports_every_stage_in_order() {
        let mut clock = StageClock::new(&["a", "b"]);
        let value = clock.time(1, || 41 + 1);
        assert_eq!(value, 42);
        let stages = clock.stages();
        assert_eq!(stages.len(), 2);
        assert_eq!((stages[0].name, stages[0].nanos), ("a", 0));
        assert_eq!(stages[1].name, "b");
    }
}
