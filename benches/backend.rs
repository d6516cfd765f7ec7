//! The backend's operations against their raw building blocks, on the dev corpus.
//!
//! - `backend_store`: `Backend::store` of distinct pages (same-filled check, xxh3,
//!   dedup lookup, lz4 outside the locks, pool, offset table, release of the page
//!   it replaces) vs plain `lz4_flex` block compression of the same pages.
//!   Target: store throughput ≥ 0.9 × plain compress.
//! - `backend_duplicate`: storing a page identical to one already stored (hash,
//!   lookup, full comparison against the stored lz4 stream, one more reference)
//!   vs storing a new page.
//!   Target: ≥ 5 × faster.
//! - `backend_load`: `Backend::load` vs plain `lz4_flex` decompression of the same
//!   bytes. Target: ≥ 0.9 × plain decompress.
//! - `backend_threads`: pages/s storing with 1 and with 2 threads (own offsets each).
//!
//! Times are the benchmark thread's CPU time (see `foldswap_benches::on_cpu`).
//!
//! Run: `cargo bench -p foldswap-benches --bench backend`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use foldswap::{Backend, Config, Scratch, StdParker};
use foldswap_benches::{WarmPages, on_cpu, report_ratio};
use foldswap_mem::PAGE_SIZE;
use lz4_flex::block::{
    CompressTable, compress_into_with_table, decompress_into, get_maximum_output_size,
};

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

/// Benchmark `id`: stores of distinct pages into a fresh backend. Offsets cycle over
/// twice the page set, so each store replaces (and frees) an older entry: in steady
/// swap-out every store is matched by one invalidate (or exclusive load) that frees
/// an entry, and here the store pays for it.
fn bench_distinct_stores(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    pages: &[[u8; PAGE_SIZE]],
) {
    let backend = new_backend();
    let mut scratch = Scratch::boxed();
    let mut page = [0u8; PAGE_SIZE];
    group.bench_function(id, |b| {
        let mut i = 0u64;
        on_cpu(b, || {
            stamp(&mut page, pages, i);
            let offset = i % (2 * pages.len() as u64 + 1);
            i += 1;
            black_box(backend.store(0, offset, &page, &mut scratch).ok());
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
    let mut page = [0u8; PAGE_SIZE];
    group.bench_function("plain_lz4_compress", |b| {
        let mut i = 0u64;
        on_cpu(b, || {
            stamp(&mut page, pages, i);
            i += 1;
            black_box(compress_into_with_table(&page, &mut out, &mut table).ok());
        })
    });
    bench_distinct_stores(&mut group, "foldswap_store", pages);
    group.finish();
    report_ratio("backend_store", "foldswap_store", "plain_lz4_compress");
}

fn bench_duplicate(c: &mut Criterion, pages: &[[u8; PAGE_SIZE]]) {
    let mut group = c.benchmark_group("backend_duplicate");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    let backend = new_backend();
    let mut scratch = Scratch::boxed();
    for (i, page) in pages.iter().enumerate() {
        backend
            .store(0, i as u64, page, &mut scratch)
            .expect("store");
    }
    let base = pages.len() as u64;
    group.bench_function("store_duplicate", |b| {
        let mut i = 0usize;
        on_cpu(b, || {
            let page = &pages[i % pages.len()];
            let offset = base + (i % pages.len()) as u64;
            i += 1;
            black_box(backend.store(0, offset, page, &mut scratch).ok());
        })
    });
    bench_distinct_stores(&mut group, "store_compressed", pages);
    group.finish();
    report_ratio("backend_duplicate", "store_duplicate", "store_compressed");
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
    let backend = new_backend();
    let mut scratch = Scratch::boxed();
    for (i, p) in pages.iter().enumerate() {
        backend.store(0, i as u64, p, &mut scratch).expect("store");
    }
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
                let mut page = [0u8; PAGE_SIZE];
                for i in 0..per_thread {
                    let serial = (t * per_thread + i) as u64;
                    stamp(&mut page, pages, serial);
                    backend
                        .store(0, serial, &page, &mut scratch)
                        .expect("store");
                }
            });
        }
    });
    (threads * per_thread) as f64 / start.elapsed().as_secs_f64()
}

fn bench_threads(pages: &[[u8; PAGE_SIZE]]) {
    let rounds = 5;
    let best = |threads| {
        (0..rounds)
            .map(|_| store_rate(pages, threads, 20_000))
            .fold(0.0, f64::max)
    };
    let one = best(1);
    let two = best(2);
    println!(
        "backend_threads: 1 thread {one:.0} pages/s, 2 threads {two:.0} pages/s, scaling {:.2}x",
        two / one
    );
}

fn main() {
    let pages = distinct_pages();
    let mut c = Criterion::default().configure_from_args();
    bench_store(&mut c, &pages);
    bench_duplicate(&mut c, &pages);
    bench_load(&mut c, &pages);
    bench_threads(&pages);
    c.final_summary();
}
