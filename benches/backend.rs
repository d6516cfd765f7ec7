//! The backend's operations against their raw building blocks, on the dev corpus.
//!
//! - `backend_store`: `Backend::store` of distinct pages into free offsets
//!   (same-filled check, xxh3, dedup lookup, lz4 outside the locks, pool, offset
//!   table) vs plain `lz4_flex` block compression of the same pages.
//!   Target: store throughput ≥ 0.9 × plain compress. Also, for the record, the
//!   steady state of storing over occupied offsets (`foldswap_store_replacing`:
//!   each store also releases the entry it replaces, i.e. store + invalidate).
//! - `backend_duplicate`: storing a page identical to one already stored (hash,
//!   lookup, full comparison against the stored lz4 stream, one more reference)
//!   vs storing a new page. Target: ≥ 5 × faster. Also the floor under it: the
//!   full byte comparison alone (`full_comparison_only`, what the pool keeps for
//!   the same pages walked as the backend walks it) against the same new store.
//! - `backend_load`: `Backend::load` vs plain `lz4_flex` decompression of the same
//!   bytes. Target: ≥ 0.9 × plain decompress.
//! - `backend_threads`: operations/s with 1 and with 2 threads: distinct stores,
//!   duplicate stores (of the same stored pages, each thread into its own offsets)
//!   and loads.
//! - `paired …` lines: the targets' ratios again, measured in alternation (101
//!   rounds, each timing one 1024-page batch of each side over the same pages; the
//!   median and quartiles of the per-round ratios). Criterion times one side for
//!   seconds and then the other, so drift on this shared box lands on one side;
//!   the paired figures are the ones to quote. With them: `xxh3_and_lz4_only`, the
//!   building blocks alone through the backend's own compressor scratch.
//!
//! Times are the benchmark thread's CPU time (see `foldswap_benches::on_cpu`).
//! Input pages are page-aligned, as the kernel passes them: with stack buffers at
//! whatever alignment a run gave them, the paired store ratio swung from 1.09 to
//! 1.44 between runs of one binary (steady within each), by where the buffers fell
//! against the compressors' tables and outputs.
//!
//! Run: `cargo bench -p foldswap-benches --bench backend`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use foldswap::{Backend, Config, Scratch, StdParker};
use foldswap_benches::{
    WarmPages, on_cpu, paired_ratio, report_ratio, store_at_offsets, thread_cpu_time,
};
use foldswap_mem::PAGE_SIZE;
use foldswap_pool::{CodecKind, lz4_matches};
use lz4_flex::block::{
    CompressTable, compress_into_with_table, decompress_into, get_maximum_output_size,
};
use xxhash_rust::xxh3::xxh3_64;

const PAGES: usize = 2048;

/// Distinct, not same-filled corpus pages (duplicates and zero pages are skipped so
/// every store really compresses).
fn distinct_pages() -> Vec<[u8; PAGE_SIZE]> {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus");
    let mut seen = std::collections::HashSet::new();
    corpus
        .pages()
        .step_by(7)
        .filter(|p| p.chunks_exact(8).any(|w| w != &p[..8]))
        .filter(|p| seen.insert(xxhash_rust::xxh3::xxh3_128(&p[..])))
        .take(PAGES)
        .copied()
        .collect()
}

/// A page-aligned page buffer, as the kernel hands pages to the backend (and as
/// plain lz4 gets them here): where a buffer lies relative to the compressor's
/// table and output changes lz4's speed by up to 20 % (cache aliasing).
#[repr(C, align(4096))]
struct Aligned([u8; PAGE_SIZE]);

impl Aligned {
    fn zeroed() -> Box<Self> {
        Box::new(Aligned([0; PAGE_SIZE]))
    }
}

/// Page `i` of the set with the store's serial number in its first word, so every
/// store is distinct content (no dedup hit) and costs a real compression.
fn stamp(page: &mut [u8; PAGE_SIZE], pages: &[[u8; PAGE_SIZE]], i: u64) {
    page.copy_from_slice(&pages[i as usize % pages.len()]);
    page[..8].copy_from_slice(&i.to_le_bytes());
}

/// Pages already touched, as the kernel's `alloc_page` gives them: a fresh std page
/// would page-fault on first write, a userspace cost, not the backend's.
fn warm_pages() -> &'static WarmPages {
    static WARM: std::sync::OnceLock<WarmPages> = std::sync::OnceLock::new();
    WARM.get_or_init(|| WarmPages::new(8192))
}

fn new_backend() -> Backend<&'static WarmPages, StdParker> {
    let config = Config {
        keep_incompressible: true,
        ..Config::default()
    };
    let backend = Backend::new(warm_pages(), config, StdParker::new()).expect("backend");
    backend.init(0, 1 << 20).expect("init");
    backend
}

/// Stores timed in batches into free offsets `base..base + BATCH`; each batch is
/// invalidated again, untimed, before the next: the kernel frees a swap slot
/// (`invalidate_page`) before it reuses it, so a store normally finds its offset
/// free, and the release of the page that used it is the invalidation's cost.
const BATCH: u64 = 1024;

/// Benchmark `id`: `store_one(serial, offset)` into free offsets, timed alone.
fn bench_stores_into_free_offsets(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    backend: &Backend<&'static WarmPages, StdParker>,
    base: u64,
    mut store_one: impl FnMut(u64, u64),
) {
    group.bench_function(id, |b| {
        let mut serial = 0u64;
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(BATCH);
                let start = thread_cpu_time();
                for k in 0..n {
                    store_one(serial, base + k);
                    serial += 1;
                }
                timed += thread_cpu_time() - start;
                for k in 0..n {
                    backend.invalidate_page(0, base + k).expect("invalidate");
                }
                done += n;
            }
            timed
        })
    });
}

/// Benchmark `id`: stores of distinct pages (serial-stamped). Into free offsets,
/// or, with `replacing`, the steady state of storing over occupied ones: offsets
/// cycle over twice the page set, so each store also releases (frees) the older
/// entry it replaces — a store and another page's invalidation in one call.
fn bench_distinct_stores(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    pages: &[[u8; PAGE_SIZE]],
    replacing: bool,
) {
    let backend = new_backend();
    let mut scratch = Scratch::boxed();
    let mut page = Aligned::zeroed();
    let page = &mut page.0;
    let mut store = |serial: u64, offset: u64| {
        stamp(page, pages, serial);
        black_box(
            backend
                .store(0, offset, &page[..], foldswap::Domain(0), &mut scratch)
                .ok(),
        );
    };
    if !replacing {
        return bench_stores_into_free_offsets(group, id, &backend, 0, store);
    }
    let cycle = 2 * pages.len() as u64 + 1;
    group.bench_function(id, |b| {
        let mut i = 0u64;
        on_cpu(b, || {
            store(i, i % cycle);
            i += 1;
        })
    });
}

fn bench_store(c: &mut Criterion, pages: &[[u8; PAGE_SIZE]]) {
    let mut group = c.benchmark_group("backend_store");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    let mut table = Box::new(CompressTable::small());
    let mut out = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
    let mut page = Aligned::zeroed();
    let page = &mut page.0;
    group.bench_function("plain_lz4_compress", |b| {
        let mut i = 0u64;
        on_cpu(b, || {
            stamp(page, pages, i);
            i += 1;
            black_box(compress_into_with_table(&page[..], &mut out, &mut table).ok());
        })
    });
    bench_distinct_stores(&mut group, "foldswap_store", pages, false);
    bench_distinct_stores(&mut group, "foldswap_store_replacing", pages, true);
    group.finish();
    report_ratio("backend_store", "foldswap_store", "plain_lz4_compress");
    report_ratio(
        "backend_store",
        "foldswap_store_replacing",
        "plain_lz4_compress",
    );
}

/// What the backend's pool keeps for `page` under the bench's config: its lz4 bytes,
/// or the page itself when they are longer than `max_compressed_len`.
fn kept_bytes(page: &[u8; PAGE_SIZE]) -> Vec<u8> {
    let mut out = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
    let n = lz4_flex::block::compress_into(page, &mut out).expect("lz4");
    if n > Config::default().max_compressed_len {
        return page.to_vec();
    }
    out.truncate(n);
    out
}

/// The duplicate check's full comparison of `page` with `kept_bytes` of a page.
fn same_as_kept(kept: &[u8], page: &[u8; PAGE_SIZE]) -> bool {
    match kept.len() {
        PAGE_SIZE => kept == &page[..],
        _ => lz4_matches(kept, page) == Ok(true),
    }
}

fn bench_duplicate(c: &mut Criterion, pages: &[[u8; PAGE_SIZE]]) {
    let mut group = c.benchmark_group("backend_duplicate");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    let backend = backend_holding(pages);
    let mut scratch = Scratch::boxed();
    let base = pages.len() as u64;
    bench_stores_into_free_offsets(
        &mut group,
        "store_duplicate",
        &backend,
        base,
        |serial, offset| {
            let page = &pages[serial as usize % pages.len()];
            black_box(
                backend
                    .store(0, offset, page, foldswap::Domain(0), &mut scratch)
                    .ok(),
            );
        },
    );
    bench_distinct_stores(&mut group, "store_compressed", pages, false);
    // The floor under a duplicate store: its full byte comparison alone, against
    // what the pool keeps for these pages (lz4 bytes; raw bytes for the pages the
    // backend keeps raw), walked as the backend walks it.
    let kept: Vec<Vec<u8>> = pages.iter().map(kept_bytes).collect();
    group.bench_function("full_comparison_only", |b| {
        let mut i = 0usize;
        on_cpu(b, || {
            let k = i % pages.len();
            i += 1;
            black_box(same_as_kept(&kept[k], &pages[k]));
        })
    });
    group.finish();
    report_ratio("backend_duplicate", "store_duplicate", "store_compressed");
    report_ratio(
        "backend_duplicate",
        "full_comparison_only",
        "store_compressed",
    );
}

fn bench_load(c: &mut Criterion, pages: &[[u8; PAGE_SIZE]]) {
    let mut group = c.benchmark_group("backend_load");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    let mut table = Box::new(CompressTable::small());
    let compressed: Vec<Vec<u8>> = pages
        .iter()
        .map(|p| {
            let mut out = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
            let n = compress_into_with_table(p, &mut out, &mut table).expect("lz4");
            out.truncate(n);
            out
        })
        .collect();
    let mut page = vec![0u8; PAGE_SIZE];
    group.bench_function("plain_lz4_decompress", |b| {
        let mut i = 0;
        on_cpu(b, || {
            let bytes = &compressed[i % compressed.len()];
            i += 1;
            black_box(decompress_into(bytes, &mut page).ok());
        })
    });
    let backend = backend_holding(pages);
    let mut scratch = Scratch::boxed();
    group.bench_function("foldswap_load", |b| {
        let mut i = 0u64;
        on_cpu(b, || {
            let offset = i % pages.len() as u64;
            i += 1;
            black_box(backend.load(0, offset, &mut page, &mut scratch).ok());
        })
    });
    group.finish();
    report_ratio("backend_load", "foldswap_load", "plain_lz4_decompress");
}

/// Pages per second storing `per_thread` pages on each of `threads` threads.
fn store_rate(pages: &[[u8; PAGE_SIZE]], threads: usize, per_thread: usize) -> f64 {
    let backend = new_backend();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let backend = &backend;
            s.spawn(move || {
                let mut scratch = Scratch::boxed();
                let mut page = Aligned::zeroed();
                let page = &mut page.0;
                for i in 0..per_thread {
                    let serial = (t * per_thread + i) as u64;
                    stamp(page, pages, serial);
                    backend
                        .store(0, serial, &page[..], foldswap::Domain(0), &mut scratch)
                        .expect("store");
                }
            });
        }
    });
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

/// A backend holding `pages` at offsets `0..pages.len()`.
fn backend_holding(pages: &[[u8; PAGE_SIZE]]) -> Backend<&'static WarmPages, StdParker> {
    let backend = new_backend();
    store_at_offsets(&backend, pages);
    backend
}

/// Operations per second running `op(backend, thread, i, scratch)` `per_thread`
/// times on each of `threads` threads.
fn rate(
    backend: &Backend<&'static WarmPages, StdParker>,
    threads: usize,
    per_thread: usize,
    op: impl Fn(usize, usize, &mut Scratch) + Sync,
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                let mut scratch = Scratch::boxed();
                for i in 0..per_thread {
                    op(t, i, &mut scratch);
                }
            });
        }
    });
    let _ = backend;
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

/// Best of five 1-thread and 2-thread rates of `measure(threads)`; prints the scaling.
fn scaling(name: &str, measure: impl Fn(usize) -> f64) {
    let best = |threads| (0..5).map(|_| measure(threads)).fold(0.0, f64::max);
    let (one, two) = (best(1), best(2));
    println!(
        "backend_threads {name}: 1 thread {one:.0}/s, 2 threads {two:.0}/s, scaling {:.2}x",
        two / one
    );
}

fn bench_threads(pages: &[[u8; PAGE_SIZE]]) {
    scaling("distinct stores", |threads| {
        store_rate(pages, threads, 20_000)
    });
    // Duplicates of stored pages, each thread into offsets of its own.
    scaling("duplicate stores", |threads| {
        let backend = backend_holding(pages);
        let base = pages.len();
        rate(&backend, threads, 20_000, |t, i, scratch| {
            let offset = (base + t * 20_000 + i) as u64;
            let page = &pages[(i * 7 + t) % pages.len()];
            black_box(
                backend
                    .store(0, offset, page, foldswap::Domain(0), scratch)
                    .ok(),
            );
        })
    });
    scaling("loads", |threads| {
        let backend = backend_holding(pages);
        let outs: Vec<_> = (0..threads)
            .map(|_| std::sync::Mutex::new(Aligned::zeroed()))
            .collect();
        rate(&backend, threads, 20_000, |t, i, scratch| {
            let offset = ((i * 7 + t * 1000) % pages.len()) as u64;
            let mut out = outs[t].lock().expect("out");
            black_box(backend.load(0, offset, &mut out.0, scratch).ok());
        })
    });
}

/// The targets' ratios measured in alternation (see `paired_ratio`): every round
/// times one batch of each side over the same pages.
fn bench_paired(pages: &[[u8; PAGE_SIZE]]) {
    const ROUNDS: usize = 101;
    let batch = BATCH as usize;
    let mut table = Box::new(CompressTable::small());
    let mut out = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
    let mut page = Aligned::zeroed();
    let page = &mut page.0;
    let mut plain_compress = |first: u64| {
        let start = thread_cpu_time();
        for serial in first..first + BATCH {
            stamp(page, pages, serial);
            black_box(compress_into_with_table(&page[..], &mut out, &mut table).ok());
        }
        thread_cpu_time() - start
    };
    // The building blocks alone, through the backend's own compressor scratch: the
    // rest of a store's cost is its bookkeeping and the cache lines that touches.
    let mut blocks = foldswap_pool::CompressScratch::boxed();
    let mut block_page = Aligned::zeroed();
    let block_page = &mut block_page.0;
    let (mut a, mut b) = (0u64, 0u64);
    paired_ratio(
        "backend_store: xxh3_and_lz4_only / plain_lz4_compress",
        ROUNDS,
        || {
            a += BATCH;
            let start = thread_cpu_time();
            for serial in a..a + BATCH {
                stamp(block_page, pages, serial);
                black_box(xxh3_64(&block_page[..]));
                black_box(blocks.compress(CodecKind::Lz4, block_page).ok());
            }
            thread_cpu_time() - start
        },
        || {
            b += BATCH;
            plain_compress(b)
        },
    );
    // Distinct stores into free offsets 0..BATCH, invalidated untimed after.
    let stores = new_backend();
    let mut scratch = Scratch::boxed();
    let mut store_page = Aligned::zeroed();
    let store_page = &mut store_page.0;
    let mut distinct_stores = |first: u64| {
        let start = thread_cpu_time();
        for k in 0..BATCH {
            stamp(store_page, pages, first + k);
            black_box(
                stores
                    .store(0, k, store_page, foldswap::Domain(0), &mut scratch)
                    .ok(),
            );
        }
        let timed = thread_cpu_time() - start;
        for k in 0..BATCH {
            stores.invalidate_page(0, k).expect("invalidate");
        }
        timed
    };
    let (mut a, mut b) = (0u64, 0u64);
    paired_ratio(
        "backend_store: foldswap_store / plain_lz4_compress",
        ROUNDS,
        || {
            a += BATCH;
            distinct_stores(a)
        },
        || {
            b += BATCH;
            plain_compress(b)
        },
    );

    // Duplicates of stored pages, into free offsets past them.
    let dups = backend_holding(pages);
    let mut dup_scratch = Scratch::boxed();
    let base = pages.len() as u64;
    let mut next = 0usize;
    let mut duplicate_stores = || {
        let first = next;
        next += batch;
        let start = thread_cpu_time();
        for k in 0..batch {
            let page = &pages[(first + k) % pages.len()];
            black_box(
                dups.store(
                    0,
                    base + k as u64,
                    page,
                    foldswap::Domain(0),
                    &mut dup_scratch,
                )
                .ok(),
            );
        }
        let timed = thread_cpu_time() - start;
        for k in 0..BATCH {
            dups.invalidate_page(0, base + k).expect("invalidate");
        }
        timed
    };
    let mut c = 0u64;
    paired_ratio(
        "backend_duplicate: store_duplicate / store_compressed",
        ROUNDS,
        &mut duplicate_stores,
        || {
            c += BATCH;
            distinct_stores(c)
        },
    );
    let kept: Vec<Vec<u8>> = pages.iter().map(kept_bytes).collect();
    let mut next = 0usize;
    let mut comparisons = || {
        let first = next;
        next += batch;
        let start = thread_cpu_time();
        for k in first..first + batch {
            let (kept, page) = (&kept[k % pages.len()], &pages[k % pages.len()]);
            black_box(same_as_kept(kept, page));
        }
        thread_cpu_time() - start
    };
    paired_ratio(
        "backend_duplicate: full_comparison_only / store_compressed",
        ROUNDS,
        &mut comparisons,
        || {
            c += BATCH;
            distinct_stores(c)
        },
    );

    // Loads of stored pages vs plain decompression of their lz4 bytes.
    let compressed: Vec<Vec<u8>> = pages
        .iter()
        .map(|p| {
            let n = compress_into_with_table(p, &mut out, &mut table).expect("lz4");
            out[..n].to_vec()
        })
        .collect();
    let mut loaded = vec![0u8; PAGE_SIZE];
    let mut next = 0usize;
    let mut loads = || {
        let first = next;
        next += batch;
        let start = thread_cpu_time();
        for k in first..first + batch {
            let offset = (k % pages.len()) as u64;
            black_box(dups.load(0, offset, &mut loaded, &mut dup_scratch).ok());
        }
        thread_cpu_time() - start
    };
    let mut decoded = vec![0u8; PAGE_SIZE];
    let mut next_plain = 0usize;
    paired_ratio(
        "backend_load: foldswap_load / plain_lz4_decompress",
        ROUNDS,
        &mut loads,
        || {
            let first = next_plain;
            next_plain += batch;
            let start = thread_cpu_time();
            for k in first..first + batch {
                let bytes = &compressed[k % pages.len()];
                black_box(decompress_into(bytes, &mut decoded).ok());
            }
            thread_cpu_time() - start
        },
    );
}

fn main() {
    let pages = distinct_pages();
    let mut c = Criterion::default().configure_from_args();
    bench_store(&mut c, &pages);
    bench_duplicate(&mut c, &pages);
    bench_load(&mut c, &pages);
    bench_threads(&pages);
    bench_paired(&pages);
    c.final_summary();
}
