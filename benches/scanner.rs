//! The scanner and the loads of what it leaves, against their raw building blocks,
//! on the dev corpus.
//!
//! - `scanner_recompress`: thread CPU per page of scanner bursts over a backend
//!   holding lz4 pages, recompressing only (snapshot, lz4 decode, the cold codec,
//!   the re-encode under the lock), vs plain libzstd (`zstd::bulk`, same level) on
//!   the same pages. `scanner_full` also looks for similar pages (signature,
//!   similarity index, delta encoding); both keep pages alone (`block_pages` 1).
//!   `scanner_blocks` forms cold blocks of `DEFAULT_BLOCK_PAGES` neighbours (no
//!   patching), vs plain libzstd compressing the same pages as frames that long.
//! - `load_lz4`, `load_zstd`, `load_delta`, `load_block`: `Backend::load` of pages
//!   kept as lz4 (fresh stores), recompressed alone with zstd, patched as deltas
//!   against a similar page, and held in cold blocks, vs plain `lz4_flex`
//!   decompression of the same pages. `plain_zstd_decompress` and
//!   `plain_zstd_block_decompress` (a whole block's frame per page loaded, or per
//!   block) are beside them: what a zstd page, and a page of a block, cost at the
//!   least. Pages of blocks are loaded in offset order (a worker's next load is
//!   in the block it decoded last, which it keeps) and across blocks (every load
//!   decodes a frame).
//!
//! Every figure is a `paired` median: both sides measured in alternation, 41
//! rounds, in thread CPU time (see `foldswap_benches::paired_ratio`). Backends are
//! built outside the timed parts.
//!
//! Run: `cargo bench -p foldswap-benches --bench scanner`

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use foldswap::{Backend, Census, Clock, ColdKind, Config, ScanTunables, Scratch, StdParker};
use foldswap_benches::{WarmPages, paired_ratio, store_at_offsets, thread_cpu_time};
use foldswap_ladder::Tunables;
use foldswap_mem::PAGE_SIZE;
use foldswap_pool::building_blocks::zstd::bulk::{Compressor, Decompressor};
use lz4_flex::block::{
    CompressTable, compress_into_with_table, decompress_into, get_maximum_output_size,
};

/// `page` as a plain lz4 block.
fn lz4(page: &[u8; PAGE_SIZE]) -> Vec<u8> {
    let mut table = CompressTable::small();
    let mut out = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
    let n = compress_into_with_table(page, &mut out, &mut table).expect("lz4");
    out.truncate(n);
    out
}

/// Pages in each backend and batch.
const PAGES: usize = 512;
const ROUNDS: usize = 41;

/// Distinct corpus pages that lz4 compresses (the store keeps them as lz4) and
/// that are not one word repeated.
fn lz4_pages() -> Vec<[u8; PAGE_SIZE]> {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus");
    let mut seen = std::collections::HashSet::new();
    corpus
        .pages()
        .step_by(5)
        .filter(|p| p.chunks_exact(8).any(|w| w != &p[..8]))
        .filter(|p| lz4(p).len() < PAGE_SIZE * 3 / 4)
        .filter(|p| seen.insert(xxhash_rust::xxh3::xxh3_128(&p[..])))
        .take(PAGES)
        .copied()
        .collect()
}

/// Pairs of similar pages: each corpus page and a copy with a few words changed
/// (the scanner keeps the copy as a delta against the original).
fn similar_pairs(pages: &[[u8; PAGE_SIZE]]) -> Vec<[u8; PAGE_SIZE]> {
    let mut out = Vec::with_capacity(pages.len());
    for (i, page) in pages.iter().take(PAGES / 2).enumerate() {
        out.push(*page);
        let mut member = *page;
        for k in 0..4 {
            let at = (i * 977 + k * 1031) % (PAGE_SIZE - 8);
            member[at..at + 8].copy_from_slice(&(i as u64 * 31 + k as u64).to_le_bytes());
        }
        out.push(member);
    }
    out
}

fn warm_pages() -> &'static WarmPages {
    static WARM: std::sync::OnceLock<WarmPages> = std::sync::OnceLock::new();
    WARM.get_or_init(|| WarmPages::new(4096))
}

/// Real time plus the sleeps the ladder asked for, skipped: bursts never wait,
/// and the ladder still measures what each batch cost.
struct SkippingClock {
    start: Instant,
    skipped: Cell<u64>,
}

impl Clock for SkippingClock {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64 + self.skipped.get()
    }
}

/// A backend whose ladder may use a whole CPU, holding `pages` at offsets 0...
fn backend_holding(pages: &[[u8; PAGE_SIZE]]) -> Backend<&'static WarmPages, StdParker> {
    let config = Config {
        keep_incompressible: true,
        ladder: Tunables::whole_cpu(),
        ..Config::default()
    };
    let backend = Backend::new(warm_pages(), config, StdParker::new()).expect("backend");
    backend.init(0, pages.len() as u64).expect("init");
    store_at_offsets(&backend, pages);
    backend
}

/// Scanner bursts until a whole round improves nothing; the thread CPU they took
/// and the census after.
fn settle(
    backend: &Backend<&'static WarmPages, StdParker>,
    scratch: &mut Scratch,
    patch: bool,
    block_pages: u32,
) -> (Duration, Census) {
    // One batch per burst, so the loop below sees the first round that improves
    // nothing when it ends: with the default 4096 a burst on a whole CPU ran
    // thousands of idle rounds over the settled pages past it, and those were
    // counted as the cost of settling (362 us per page for blocks of 16).
    let tunables = ScanTunables {
        cold_rounds: 0,
        patch: u32::from(patch),
        block_pages,
        max_batches: 1,
        ..ScanTunables::default()
    };
    let clock = SkippingClock {
        start: Instant::now(),
        skipped: Cell::new(0),
    };
    let start = thread_cpu_time();
    let mut improved_this_round = 0;
    for _ in 0..100_000 {
        let report = backend
            .scan_burst(&tunables, scratch, &clock)
            .expect("scan");
        clock.skipped.set(clock.skipped.get() + report.sleep_ns);
        improved_this_round += report.improved;
        if report.rounds_ended > 0 && std::mem::take(&mut improved_this_round) == 0 {
            break;
        }
    }
    (thread_cpu_time() - start, backend.census())
}

fn bench_scanner(pages: &[[u8; PAGE_SIZE]]) {
    let level = ColdKind::Zstd.default_level();
    let mut plain = Compressor::new(i32::from(level)).expect("zstd");
    plain.include_checksum(false).expect("zstd");
    let mut out = vec![0u8; 2 * PAGE_SIZE];
    let mut out_blocks = vec![0u8; 2 * BLOCK_PAGES as usize * PAGE_SIZE];
    let mut scratch = Scratch::boxed();
    let mut plain_zstd = || {
        let start = thread_cpu_time();
        for page in pages {
            black_box(plain.compress_to_buffer(&page[..], &mut out[..]).ok());
        }
        thread_cpu_time() - start
    };
    let mut plain_blocks = Compressor::new(i32::from(level)).expect("zstd");
    plain_blocks.include_checksum(false).expect("zstd");
    let runs: Vec<Vec<u8>> = pages
        .chunks(BLOCK_PAGES as usize)
        .map(|run| run.iter().flatten().copied().collect())
        .collect();
    let mut plain_zstd_blocks = || {
        let start = thread_cpu_time();
        for run in &runs {
            black_box(
                plain_blocks
                    .compress_to_buffer(&run[..], &mut out_blocks[..])
                    .ok(),
            );
        }
        thread_cpu_time() - start
    };
    for (name, patch, block_pages) in [
        ("scanner_recompress", false, 1),
        ("scanner_full", true, 1),
        ("scanner_blocks", false, BLOCK_PAGES),
    ] {
        let mut per_page = Vec::new();
        let mut scanner = || {
            let backend = backend_holding(pages);
            let (time, census) = settle(&backend, &mut scratch, patch, block_pages);
            assert!(
                census.cold + census.delta + census.blocked > 0,
                "the scanner settled nothing"
            );
            per_page.push(time.as_nanos() as u64 / pages.len() as u64);
            time
        };
        if block_pages > 1 {
            paired_ratio(
                &format!(
                    "{name} / plain_zstd_compress of {block_pages}-page frames (level {level})"
                ),
                ROUNDS,
                &mut scanner,
                &mut plain_zstd_blocks,
            );
        } else {
            paired_ratio(
                &format!("{name} / plain_zstd_compress (level {level})"),
                ROUNDS,
                &mut scanner,
                &mut plain_zstd,
            );
        }
        per_page.sort_unstable();
        println!(
            "  {name}: median {} ns per page held",
            per_page[per_page.len() / 2]
        );
    }
}

fn bench_loads(pages: &[[u8; PAGE_SIZE]]) {
    let lz4_blocks: Vec<Vec<u8>> = pages.iter().map(lz4).collect();
    let mut page_out = [0u8; PAGE_SIZE];
    let mut plain_lz4 = || {
        let start = thread_cpu_time();
        for bytes in &lz4_blocks {
            black_box(decompress_into(bytes, &mut page_out).ok());
        }
        thread_cpu_time() - start
    };
    let mut scratch = Scratch::boxed();
    let mut out = [0u8; PAGE_SIZE];
    // Loads of `offsets`, in that order.
    let mut loads_of = |backend: &Backend<&'static WarmPages, StdParker>,
                        offsets: &mut dyn Iterator<Item = u64>| {
        let start = thread_cpu_time();
        for offset in offsets {
            black_box(backend.load(0, offset, &mut out, &mut scratch).ok());
        }
        thread_cpu_time() - start
    };
    // Offsets `first`, `first + step`, ... below `n`.
    let every = |n: usize, first: u64, step: usize| (first..n as u64).step_by(step);

    let fresh = backend_holding(pages);
    assert_eq!(fresh.census().lz4 as usize, pages.len(), "all kept as lz4");
    paired_ratio(
        "load_lz4 / plain_lz4_decompress",
        ROUNDS,
        || loads_of(&fresh, &mut every(pages.len(), 0, 1)),
        &mut plain_lz4,
    );
    drop(fresh);

    let recompressed = backend_holding(pages);
    let (_, census) = settle(&recompressed, &mut Scratch::boxed(), false, 1);
    println!("  load_zstd: {} of {} pages zstd", census.cold, pages.len());
    paired_ratio(
        "load_zstd / plain_lz4_decompress",
        ROUNDS,
        || loads_of(&recompressed, &mut every(pages.len(), 0, 1)),
        &mut plain_lz4,
    );
    let mut plain = Decompressor::new().expect("zstd");
    let mut compressor = Compressor::new(i32::from(ColdKind::Zstd.default_level())).expect("zstd");
    let frames: Vec<Vec<u8>> = pages
        .iter()
        .map(|p| compressor.compress(&p[..]).expect("zstd"))
        .collect();
    paired_ratio(
        "plain_zstd_decompress / plain_lz4_decompress",
        ROUNDS,
        || {
            let start = thread_cpu_time();
            let mut zstd_out = [0u8; PAGE_SIZE];
            for frame in &frames {
                black_box(plain.decompress_to_buffer(frame, &mut zstd_out[..]).ok());
            }
            thread_cpu_time() - start
        },
        &mut plain_lz4,
    );
    drop(recompressed);

    let pairs = similar_pairs(pages);
    let patched = backend_holding(&pairs);
    let (_, census) = settle(&patched, &mut Scratch::boxed(), true, 1);
    println!(
        "  load_delta: {} of {} pages deltas, {} zstd",
        census.delta,
        pairs.len(),
        census.cold
    );
    // The second page of each pair is the one kept as a delta.
    let members_lz4: Vec<Vec<u8>> = pairs.iter().skip(1).step_by(2).map(lz4).collect();
    paired_ratio(
        "load_delta / plain_lz4_decompress (the patched page of each pair)",
        ROUNDS,
        || loads_of(&patched, &mut every(pairs.len(), 1, 2)),
        || {
            let start = thread_cpu_time();
            let mut member_out = [0u8; PAGE_SIZE];
            for bytes in &members_lz4 {
                black_box(decompress_into(bytes, &mut member_out).ok());
            }
            thread_cpu_time() - start
        },
    );
    drop(patched);

    let blocked = backend_holding(pages);
    let (_, census) = settle(&blocked, &mut Scratch::boxed(), false, BLOCK_PAGES);
    println!(
        "  load_block: {} of {} pages in {} blocks of at most {BLOCK_PAGES}",
        census.blocked,
        pages.len(),
        census.blocks
    );
    // In offset order a load's neighbour is in the block its worker decoded last
    // (swap-in readahead's order): one frame decode per block, then copies.
    paired_ratio(
        "load_block in offset order / plain_lz4_decompress",
        ROUNDS,
        || loads_of(&blocked, &mut every(pages.len(), 0, 1)),
        &mut plain_lz4,
    );
    // Page k of every block, then page k + 1 of every block, ...: each load is of
    // another block than the last, and decodes a whole frame.
    let (n, per_block) = (pages.len() as u64, u64::from(BLOCK_PAGES));
    paired_ratio(
        "load_block across blocks / plain_lz4_decompress",
        ROUNDS,
        || {
            let mut across = (0..per_block).flat_map(|k| (k..n).step_by(per_block as usize));
            loads_of(&blocked, &mut across)
        },
        &mut plain_lz4,
    );
    let block_frames: Vec<Vec<u8>> = pages
        .chunks(BLOCK_PAGES as usize)
        .map(|run| {
            let frame: Vec<u8> = run.iter().flatten().copied().collect();
            compressor.compress(&frame[..]).expect("zstd")
        })
        .collect();
    // The building blocks of the two orders: a whole frame decoded per page
    // loaded (across blocks), and once per block with a page copied out for each
    // of its pages (offset order).
    for (name, decodes_per_frame) in [
        ("plain_zstd_block_decompress per page", BLOCK_PAGES),
        ("plain_zstd_block_decompress per block", 1),
    ] {
        paired_ratio(
            &format!("{name} / plain_lz4_decompress"),
            ROUNDS,
            || {
                let start = thread_cpu_time();
                let mut block_out = vec![0u8; BLOCK_PAGES as usize * PAGE_SIZE];
                let mut page = [0u8; PAGE_SIZE];
                for frame in &block_frames {
                    for _ in 0..decodes_per_frame {
                        black_box(plain.decompress_to_buffer(frame, &mut block_out[..]).ok());
                    }
                    for run in block_out.chunks(PAGE_SIZE) {
                        page.copy_from_slice(run);
                        black_box(&page);
                    }
                }
                thread_cpu_time() - start
            },
            &mut plain_lz4,
        );
    }
}

/// Pages per cold block in the block benches (the scanner's default).
const BLOCK_PAGES: u32 = foldswap::DEFAULT_BLOCK_PAGES;

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not take.
    let pages = lz4_pages();
    assert_eq!(pages.len(), PAGES, "the corpus has enough lz4 pages");
    bench_scanner(&pages);
    bench_loads(&pages);
}
