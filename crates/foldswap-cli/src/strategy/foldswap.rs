//! `foldswap` and `foldswap-lz4`: the real backend (`crates/foldswap`).
//!
//! Every page goes through `Backend::store` — same-filled check, byte-verified
//! dedup against the stable tree, lz4 into the pool — and comes back through
//! `Backend::load`. Two runs:
//!
//! * `foldswap-lz4`: the store path alone (what a page costs the moment it is
//!   swapped out);
//! * `foldswap`: then the scanner runs until a whole ladder round improves nothing
//!   (similar pages become deltas against a stored base, cold lz4 pages are
//!   recompressed with the cold codec, zstd) before the pages are loaded back.
//!
//! Bytes held are what the backend took from its page provider: data = the pool's
//! zspage pages; metadata = the pool's metadata pages, the content entries, the
//! dedup (stable tree) and similarity indexes, and the offset tables.

use core::cell::Cell;
use std::time::Instant;

use foldswap::{Backend, Clock, Config, Encoding, ScanTunables, Scratch, StdParker, StoreKind};
use foldswap_ladder::Tunables as LadderTunables;
use foldswap_mem::{PAGE_SIZE, StdPageProvider};

use super::{Counts, EncodingLoads, StageClock, Strategy, StrategyError, Summary};

/// Most ladder rounds the scanner gets to settle.
const MAX_SETTLE_ROUNDS: u32 = 64;
const STAGES: &[&str] = &["store", "scanner", "load"];

/// A clock that runs at real speed for work and skips ahead when the ladder asks
/// to sleep: the scanner spends exactly the CPU its work costs, with no wall-clock
/// waiting for budget.
struct SkippingClock {
    start: Instant,
    skipped: Cell<u64>,
}

impl Clock for SkippingClock {
    fn now_ns(&self) -> u64 {
        let real = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        real.saturating_add(self.skipped.get())
    }
}

/// The backend strategy; see the module documentation.
pub struct Foldswap {
    backend: Backend<StdPageProvider, StdParker>,
    scratch: Box<Scratch>,
    run_scanner: bool,
    settled: bool,
    stored: u64,
    zero: u64,
    same_filled: u64,
    clock: StageClock,
    /// Each load's time, ns, by the encoding of its page (`Encoding::ALL` order).
    load_times: [Vec<u64>; Encoding::ALL.len()],
}

impl Foldswap {
    /// The backend, with (`run_scanner`) or without its scanner.
    pub fn new(run_scanner: bool) -> Result<Self, StrategyError> {
        let refused = |e: foldswap::Error| StrategyError::Refused {
            index: 0,
            reason: format!("backend: {e}"),
        };
        // The whole analysis is scan budget: every rung may use a whole CPU.
        let config = Config {
            keep_incompressible: true,
            ladder: LadderTunables::whole_cpu(),
            ..Config::default()
        };
        let backend = Backend::new(StdPageProvider, config, StdParker::new()).map_err(refused)?;
        backend
            .init(0, foldswap::offsets::MAX_OFFSETS)
            .map_err(refused)?;
        Ok(Foldswap {
            backend,
            scratch: Scratch::boxed(),
            run_scanner,
            settled: false,
            stored: 0,
            zero: 0,
            same_filled: 0,
            clock: StageClock::new(STAGES),
            load_times: Default::default(),
        })
    }

    /// Run the scanner until a whole ladder round improves nothing.
    fn run_scanner_until_settled(&mut self) -> Result<(), StrategyError> {
        let clock = SkippingClock {
            start: Instant::now(),
            skipped: Cell::new(0),
        };
        let tunables = ScanTunables {
            cold_rounds: 0,
            ..ScanTunables::default()
        };
        let (backend, scratch) = (&self.backend, &mut self.scratch);
        self.clock.time(1, || {
            let (mut rounds, mut improved) = (0, 0);
            while rounds < MAX_SETTLE_ROUNDS {
                let report = backend
                    .scan_burst(&tunables, scratch, &clock)
                    .map_err(|e| StrategyError::Refused {
                        index: 0,
                        reason: format!("scanner: {e}"),
                    })?;
                clock.skipped.set(clock.skipped.get() + report.sleep_ns);
                improved += report.improved;
                if report.rounds_ended > 0 {
                    rounds += 1;
                    if core::mem::take(&mut improved) == 0 {
                        break;
                    }
                }
            }
            Ok(())
        })
    }
}

impl Strategy for Foldswap {
    fn name(&self) -> &'static str {
        if self.run_scanner {
            "foldswap"
        } else {
            "foldswap-lz4"
        }
    }

    fn model(&self) -> &'static str {
        if self.run_scanner {
            "the real backend (crates/foldswap) after its scanner settled: same-filled, \
             byte-verified dedup, deltas against similar pages, zstd for cold pages; \
             held = pool pages + entries + indexes + offset tables"
        } else {
            "the real backend's store path alone (crates/foldswap): same-filled, \
             byte-verified dedup, lz4 into the pool; held = pool pages + entries + \
             indexes + offset tables"
        }
    }

    fn reserve(&mut self, pages: usize) {
        // Size the swap area (and so the scanner's ladder region) to the input.
        if self.stored == 0 {
            let _ = self.backend.init(0, pages as u64);
        }
    }

    fn store(&mut self, index: u32, page: &[u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let (backend, scratch) = (&self.backend, &mut self.scratch);
        let kind = self
            .clock
            .time(0, || {
                backend.store(0, u64::from(index), page, foldswap::Domain(0), scratch)
            })
            .map_err(|e| StrategyError::Refused {
                index,
                reason: e.to_string(),
            })?;
        if kind == StoreKind::SameFilled {
            if page.iter().all(|&b| b == 0) {
                self.zero += 1;
            } else {
                self.same_filled += 1;
            }
        }
        self.stored += 1;
        Ok(())
    }

    fn settle(&mut self) -> Result<(), StrategyError> {
        if self.run_scanner && !self.settled {
            self.settled = true;
            self.run_scanner_until_settled()?;
        }
        Ok(())
    }

    fn load(&mut self, index: u32, out: &mut [u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let (backend, scratch) = (&self.backend, &mut self.scratch);
        let encoding = backend.encoding(0, u64::from(index)).ok().flatten();
        let start = Instant::now();
        let loaded = self
            .clock
            .time(2, || backend.load(0, u64::from(index), out, scratch));
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(times) = encoding
            .and_then(|e| Encoding::ALL.iter().position(|&a| a == e))
            .and_then(|i| self.load_times.get_mut(i))
        {
            times.push(nanos);
        }
        loaded.map_err(|e| match e {
            foldswap::Error::NotFound => StrategyError::UnknownPage(index),
            other => StrategyError::Corrupt {
                index,
                reason: other.to_string(),
            },
        })
    }

    fn summary(&self) -> Summary {
        let census = self.backend.census();
        let held = self.backend.bytes_held();
        let pool = self.backend.pool_stats();
        let distinct = census.lz4 + census.cold + census.blocked + census.raw + census.delta
            - census.bases_only;
        let fills = self.zero + self.same_filled;
        let page = PAGE_SIZE as u64;
        // The zspages' headers are metadata kept in pool pages.
        let data_bytes = (pool.zspage_pages as u64 * page).saturating_sub(pool.header_bytes as u64);
        let mut summary = Summary::new(
            Counts {
                zero: self.zero,
                same_filled: self.same_filled,
                identical: self.stored.saturating_sub(fills + distinct),
                patched: census.delta,
                compressed: census.lz4 + census.cold + census.blocked,
                raw: census.raw,
            }
            .without_bases(census.bases_only),
            data_bytes,
            &[
                ("offset_tables", held.offset_tables as u64),
                ("entries", held.entries as u64),
                ("dedup_index", held.dedup_index as u64),
                ("similarity_index", held.similarity_index as u64),
                ("block_records", held.blocks as u64),
                (
                    "pool_metadata",
                    (held.pool as u64).saturating_sub(data_bytes),
                ),
            ],
            self.clock.stages(),
        );
        summary.loads_by_encoding = Encoding::ALL
            .iter()
            .zip(&self.load_times)
            .filter_map(|(e, times)| EncodingLoads::from_times(e.name(), &mut times.clone()))
            .collect();
        summary
    }
}

impl Counts {
    /// Entries kept only as delta bases hold no page of their own: take them out of
    /// the plain counts (they are data, counted in bytes, not pages).
    fn without_bases(mut self, bases_only: u64) -> Self {
        let from_compressed = bases_only.min(self.compressed);
        self.compressed -= from_compressed;
        self.raw -= (bases_only - from_compressed).min(self.raw);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{mixed_pages, round_trip};
    use super::*;

    #[test]
    fn the_backend_keeps_every_page_and_counts_them_all() {
        for run_scanner in [false, true] {
            let mut strategy = Foldswap::new(run_scanner).unwrap();
            let summary = round_trip(&mut strategy, &mixed_pages());
            let counts = summary.counts;
            // The filled page repeats a 64-bit word with different halves: content
            // for the backend, not a same-filled page (those repeat a 32-bit word).
            assert_eq!((counts.zero, counts.same_filled), (2, 0), "{counts:?}");
            assert!(counts.identical >= 1, "{counts:?}");
            assert!(summary.data_bytes >= PAGE_SIZE as u64);
        }
    }
}
