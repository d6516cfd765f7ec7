//! The sampling hash at the strength the adapter settles on, against full-page xxh3,
//! on the dev corpus, in cache and out of cache, in one run.
//!
//! 1. Calibrate the adapter's cost weights on this CPU with cold pages (each page's
//!    lines flushed first): one sampled word, one full-page xxh3, one 4 KiB compare.
//! 2. Settle the adapter on the corpus with those weights (`settle_strength`: every
//!    window hashes all 29,391 pages and charges collisions as full hashes).
//! 3. Benchmark, per page: sampled hash at the settled strength, at UKSM's default 64,
//!    and full xxh3, on
//!    - `ladder_hash_in_cache`: 64 pages (256 KiB) hashed over and over;
//!    - `ladder_hash_cold`: pages whose lines were flushed (`clflush`) just before
//!      (the flush is outside the timed region);
//!    - `ladder_hash_stream`: every 7th page through all 115 MiB of the corpus,
//!      wrapping, so a page comes back only after the whole corpus went by.
//!
//! Run: `cargo bench -p foldswap-benches --bench ladder`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use foldswap_benches::report_ratio;
use foldswap_ladder::settle::{first_level_work, settle_strength};
use foldswap_ladder::{
    AdapterTunables, BatchResult, CostWeights, Ladder, Next, SampledHasher, Tunables, full_hash,
};
use foldswap_mem::StdPageProvider;

type PageRef = &'static [u8; 4096];

fn corpus_pages() -> Vec<PageRef> {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus must be present");
    corpus.pages().collect()
}

const CHUNK: usize = 1024;

/// Hash the next `CHUNK` pages of a walk through the whole corpus, every 7th page.
fn stream_chunk(pages: &[PageRef], cursor: &mut usize, f: impl Fn(&[u8; 4096])) {
    for _ in 0..CHUNK {
        if let Some(page) = pages.get(*cursor) {
            f(page);
        }
        *cursor = (*cursor + 7) % pages.len();
    }
}

/// Evict a page's 64 cache lines.
fn flush_page(page: &[u8; 4096]) {
    #[cfg(target_arch = "x86_64")]
    for line in page.chunks_exact(64) {
        // SAFETY: `line` points into a live, readable page; clflush only evicts.
        unsafe { core::arch::x86_64::_mm_clflush(line.as_ptr()) };
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a fence has no memory-safety preconditions.
    unsafe {
        core::arch::x86_64::_mm_mfence()
    };
}

/// Time `f` over `pages` with each page flushed first (flush not timed in bulk:
/// flush a block of pages, then time the block).
fn cold_time(pages: &[PageRef], mut f: impl FnMut(&[u8; 4096])) -> Duration {
    let mut total = Duration::ZERO;
    for block in pages.chunks(256) {
        for page in block {
            flush_page(page);
        }
        let start = Instant::now();
        for page in block {
            f(page);
        }
        total += start.elapsed();
    }
    total
}

/// Cost weights measured on this CPU, cold pages, median of 5 runs.
fn calibrate(pages: &[PageRef], hasher: &SampledHasher) -> CostWeights {
    let sample: Vec<PageRef> = pages.iter().step_by(3).copied().take(8192).collect();
    let n = sample.len() as u128;
    let per_page = |f: &mut dyn FnMut(&[u8; 4096])| {
        let mut runs: Vec<u128> = (0..5)
            .map(|_| cold_time(&sample, &mut *f).as_nanos() * 1000 / n)
            .collect();
        runs.sort();
        runs[2] as u64
    };
    let sampled64 = per_page(&mut |p| {
        black_box(hasher.hash_at(black_box(p), 64));
    });
    let full = per_page(&mut |p| {
        black_box(full_hash(black_box(p)));
    });
    // A compare that finds two pages equal reads both in full: the resident page is a
    // copy (so nothing exits early), flushed like the scanned one.
    let copies: Vec<Box<[u8; 4096]>> = sample.iter().take(2048).map(|p| Box::new(**p)).collect();
    let mut compare_runs: Vec<u128> = (0..5)
        .map(|_| {
            let mut total = Duration::ZERO;
            for block in sample.iter().zip(&copies).collect::<Vec<_>>().chunks(256) {
                for (page, copy) in block {
                    flush_page(page);
                    flush_page(copy);
                }
                let start = Instant::now();
                for (page, copy) in block {
                    black_box(black_box(&page[..]) == black_box(&copy[..]));
                }
                total += start.elapsed();
            }
            total.as_nanos() * 1000 / copies.len() as u128
        })
        .collect();
    compare_runs.sort();
    let compare = compare_runs[2] as u64;
    CostWeights {
        sampled_word_ps: (sampled64 / 64).max(1),
        full_hash_ps: full,
        compare_ps: compare,
    }
}

fn bench_ladder(c: &mut Criterion) {
    let pages = corpus_pages();
    let hasher = SampledHasher::new(0x1adde5);

    let weights = calibrate(&pages, &hasher);
    let tunables = AdapterTunables {
        weights,
        ..AdapterTunables::default()
    };
    let settled = settle_strength(&pages, &hasher, tunables, 64, 20);
    let strength = settled.strength;
    let at = first_level_work(&pages, &hasher, strength);
    let trail: Vec<u32> = settled.history.iter().map(|(s, _)| *s).collect();
    println!("calibrated weights (cold pages): {weights:?}");
    println!("adapter windows: {trail:?}");
    println!(
        "settled strength {strength} (held {} of the last 20 windows); at it: {} collisions, {} collision full hashes per {} pages; duplicates {} zero {}",
        settled.held_windows,
        at.work.collisions,
        at.work.collision_full_hashes,
        at.work.sampled,
        at.duplicates,
        at.zero_pages
    );

    let sampled_id = format!("sampled_s{strength}");
    let mut strengths = vec![(sampled_id, strength), ("sampled_s64".to_string(), 64)];
    strengths.dedup_by_key(|(_, s)| *s);

    // In cache: 64 pages, 256 KiB.
    let hot: Vec<PageRef> = pages.iter().step_by(401).copied().take(64).collect();
    let mut group = c.benchmark_group("ladder_hash_in_cache");
    group.throughput(Throughput::Elements(hot.len() as u64));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (id, s) in &strengths {
        group.bench_function(id.as_str(), |b| {
            b.iter(|| {
                for p in &hot {
                    black_box(hasher.hash_at(black_box(p), *s));
                }
            })
        });
    }
    group.bench_function("full_xxh3", |b| {
        b.iter(|| {
            for p in &hot {
                black_box(full_hash(black_box(p)));
            }
        })
    });
    group.finish();

    // Cold: each page flushed before it is hashed.
    let cold: Vec<PageRef> = pages.iter().step_by(7).copied().take(1024).collect();
    let mut group = c.benchmark_group("ladder_hash_cold");
    group.throughput(Throughput::Elements(cold.len() as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for (id, s) in &strengths {
        group.bench_function(id.as_str(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        cold_time(&cold, |p| {
                            black_box(hasher.hash_at(black_box(p), *s));
                        })
                    })
                    .sum()
            })
        });
    }
    group.bench_function("full_xxh3", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    cold_time(&cold, |p| {
                        black_box(full_hash(black_box(p)));
                    })
                })
                .sum()
        })
    });
    group.finish();

    // Streaming through the whole corpus: every 7th page, wrapping.
    let mut group = c.benchmark_group("ladder_hash_stream");
    group.throughput(Throughput::Elements(CHUNK as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for (id, s) in &strengths {
        let mut cursor = 0;
        group.bench_function(id.as_str(), |b| {
            b.iter(|| {
                stream_chunk(&pages, &mut cursor, |p| {
                    black_box(hasher.hash_at(black_box(p), *s));
                })
            })
        });
    }
    let mut cursor = 0;
    group.bench_function("full_xxh3", |b| {
        b.iter(|| {
            stream_chunk(&pages, &mut cursor, |p| {
                black_box(full_hash(black_box(p)));
            })
        })
    });
    group.finish();

    // The ladder's own bookkeeping per batch: next_batch + complete_batch on a fake
    // clock (8 regions, 500 ns per page), no scanning.
    let mut ladder = Ladder::new(StdPageProvider, Tunables::default(), 7).unwrap();
    for i in 0..8 {
        ladder.add_region(10_000 + i * 1000, i).unwrap();
    }
    let mut now = 0u64;
    let mut pages_handed = 0u64;
    let mut batches = 0u64;
    let mut group = c.benchmark_group("ladder_overhead");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("next_and_complete", |b| {
        b.iter(|| match ladder.next_batch(now).unwrap() {
            Next::Scan(batch) => {
                let cost_ns = 500 * u64::from(batch.count);
                let result = BatchResult {
                    pages_scanned: batch.count,
                    cost_ns,
                    ..BatchResult::default()
                };
                ladder.complete_batch(&batch, result).unwrap();
                now += cost_ns;
                pages_handed += u64::from(batch.count);
                batches += 1;
            }
            Next::Sleep { until_ns } => now = until_ns,
            Next::RoundEnd => {
                ladder.end_round(now).unwrap();
            }
        })
    });
    group.finish();
    println!(
        "ladder overhead: {batches} batches, {:.0} pages per batch on average (see ladder_overhead for ns per call)",
        pages_handed as f64 / batches.max(1) as f64
    );

    for group in [
        "ladder_hash_in_cache",
        "ladder_hash_cold",
        "ladder_hash_stream",
    ] {
        for (id, _) in &strengths {
            report_ratio(group, id, "full_xxh3");
        }
    }
    println!(
        "(ratio < 1: the sampled hash is that fraction of full xxh3's time per page; settled strength {strength})"
    );
}

criterion_group!(benches, bench_ladder);
criterion_main!(benches);
