//! `pool-lz4`: the compress-only policy run on foldswap's real pool.
//!
//! Not a model: every page goes through `foldswap_pool::PagePool` (same-filled
//! check, lz4, 3/4-page threshold with raw pages kept, zsmalloc-like packing into
//! provider pages) and is loaded back from it. Bytes held are what the pool really
//! took from its page provider:
//!
//! * data = the provider pages of its zspages (objects, rounding, free slots);
//! * metadata = its metadata pages (handle entries, zspage descriptors, class
//!   table) plus [`SLOT_BYTES`] per page for the host's table of `StoredPage`s, the
//!   same per-page table entry the `compress-only` model charges.
//!
//! Set beside `compress-only` it shows how close the pool's packing comes to the
//! zsmalloc model (and to zram's `mem_used`).

use foldswap_mem::{PAGE_SIZE, StdPageProvider};
use foldswap_pool::{
    CodecKind, CompressScratch, DecompressScratch, PagePolicy, PagePool, PoorCompression, StdClock,
    StoredPage,
};

use super::compress_only::SLOT_BYTES;
use super::{Counts, StageTime, Strategy, StrategyError, Summary};

/// The pool strategy; see the module documentation.
pub struct PoolLz4 {
    pool: PagePool<StdPageProvider>,
    slots: Vec<Option<StoredPage>>,
    compress: Box<CompressScratch>,
    decompress: Box<DecompressScratch>,
    clock: StdClock,
}

impl PoolLz4 {
    /// An empty pool with the zswap/zram policy (lz4, 3/4 page, keep raw).
    pub fn new() -> Result<Self, StrategyError> {
        let policy = PagePolicy {
            codec: CodecKind::Lz4,
            on_poor: PoorCompression::KeepRaw,
            ..PagePolicy::default()
        };
        let pool = PagePool::new(StdPageProvider, policy).map_err(|e| StrategyError::Refused {
            index: 0,
            reason: format!("pool: {e:?}"),
        })?;
        Ok(PoolLz4 {
            pool,
            slots: Vec::new(),
            compress: CompressScratch::boxed(),
            decompress: Box::default(),
            clock: StdClock::new(),
        })
    }
}

impl Strategy for PoolLz4 {
    fn name(&self) -> &'static str {
        "pool-lz4"
    }

    fn model(&self) -> &'static str {
        "foldswap's real pool (crates/foldswap-pool), zswap/zram policy: same-filled free, \
         lz4, over 3/4 page raw; held = provider pages of zspages + pool metadata pages \
         + 16 B host slot per page"
    }

    fn store(&mut self, index: u32, page: &[u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let stored = self
            .pool
            .store_page(page, &mut self.compress, &self.clock)
            .map_err(|e| StrategyError::Refused {
                index,
                reason: format!("{e:?}"),
            })?;
        let index = index as usize;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        self.slots[index] = Some(stored);
        Ok(())
    }

    fn load(&mut self, index: u32, out: &mut [u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let stored = self
            .slots
            .get(index as usize)
            .copied()
            .flatten()
            .ok_or(StrategyError::UnknownPage(index))?;
        self.pool
            .load_page(stored, out, &mut self.decompress, &self.clock)
            .map_err(|e| StrategyError::Corrupt {
                index,
                reason: format!("{e:?}"),
            })
    }

    fn summary(&self) -> Summary {
        let stats = self.pool.stats();
        let store = stats.store;
        let lz4 = CodecKind::Lz4.index();
        let non_zero_fills = stats.same_filled_pages - stats.zero_pages;
        let page = PAGE_SIZE as u64;
        Summary::new(
            Counts {
                zero: stats.zero_pages,
                same_filled: non_zero_fills,
                compressed: stats.compressed_pages,
                raw: stats.raw_pages,
                ..Counts::default()
            },
            // The zspages' headers are metadata kept in pool pages.
            (store.zspage_pages as u64 * page).saturating_sub(store.header_bytes as u64),
            &[
                ("offset_slots", self.slots.len() as u64 * SLOT_BYTES),
                (
                    "pool_metadata",
                    store.metadata_pages as u64 * page + store.header_bytes as u64,
                ),
            ],
            vec![
                StageTime {
                    name: "compress",
                    nanos: stats.compress_ns.get(lz4).copied().unwrap_or(0),
                },
                StageTime {
                    name: "decompress",
                    nanos: stats.decompress_ns.get(lz4).copied().unwrap_or(0),
                },
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{mixed_pages, round_trip};
    use super::*;

    #[test]
    fn the_pool_keeps_every_page_and_counts_like_the_model() {
        let mut strategy = PoolLz4::new().unwrap();
        let summary = round_trip(&mut strategy, &mixed_pages());
        let counts = summary.counts;
        assert_eq!((counts.zero, counts.same_filled), (2, 1));
        assert_eq!((counts.compressed, counts.raw), (2, 2));
        // Two raw pages and two small objects need at least two provider pages.
        assert!(summary.data_bytes >= 2 * PAGE_SIZE as u64);
        assert!(summary.metadata_bytes >= 7 * SLOT_BYTES);
    }
}
