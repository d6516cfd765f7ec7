//! foldswap-delta: similarity patching on the dev corpus, against plain lz4_flex.
//!
//! Run: `cargo bench -p foldswap-benches --bench delta`
//!
//! First prints what patching saves (the corpus walked in order as the store path
//! would: same-filled and duplicate pages skipped, every other page patched against
//! a candidate base when the delta is smaller than its lz4 / deflate-1 size), for
//! the default setting and the paper's. Then times, on the same pages in one run:
//!
//! - `delta_codec`: `encode` of each patched page against its base (budget: its lz4
//!   size) vs `lz4_compress` of the same page; `decode` vs `lz4_decompress`.
//! - `delta_store_path`: what patching adds to storing one page, for a sample of
//!   the corpus's odd pages looked up in an index of its even pages (stored lz4):
//!   `signature_lookup` (signature + candidates) and `patch_attempt` (that, plus
//!   decompressing each candidate base from lz4 and trying a delta under the lz4
//!   budget), vs `lz4_compress` of the same pages.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall
//! time: the 2-core machine this runs on is shared, and time spent descheduled is
//! not a cost of the code measured.

use std::hint::black_box;
use std::time::Duration;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use foldswap_benches::on_cpu;
use foldswap_benches::report_ratio;
use foldswap_corpus::Corpus;
use foldswap_delta::survey::{Survey, survey};
use foldswap_delta::{
    EncodeScratch, IndexCapacity, MAX_DELTA_BYTES, MAX_TABLE_PAGES, SimilarityConfig,
    SimilarityIndex, best_delta, decode, encode,
};
use foldswap_mem::{PAGE_SIZE, StdPageProvider};

/// Pages timed per group (every n-th of the candidates, to keep a run short).
const SAMPLE: usize = 1000;

/// A group with this file's sample settings, `elements` pages per iteration.
fn group<'c>(c: &'c mut Criterion, name: &str, elements: usize) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(elements as u64));
    group
}

fn lz4_compress(page: &[u8; PAGE_SIZE], out: &mut [u8]) -> usize {
    lz4_flex::block::compress_into(page, out).expect("output sized for the worst case")
}

fn lz4_bound() -> usize {
    lz4_flex::block::get_maximum_output_size(PAGE_SIZE)
}

fn lz4_size(page: &[u8; PAGE_SIZE]) -> usize {
    lz4_compressed(page).len().min(PAGE_SIZE)
}

fn lz4_compressed(page: &[u8; PAGE_SIZE]) -> Vec<u8> {
    let mut out = vec![0u8; lz4_bound()];
    let len = lz4_compress(page, &mut out);
    out.truncate(len);
    out
}

fn deflate1_size(page: &[u8; PAGE_SIZE]) -> usize {
    miniz_oxide::deflate::compress_to_vec(page, 1)
        .len()
        .min(PAGE_SIZE)
}

fn page(corpus: &Corpus, i: usize) -> &[u8; PAGE_SIZE] {
    corpus.page(i).expect("page index inside the corpus")
}

fn every_nth<T: Copy>(items: &[T], count: usize) -> Vec<T> {
    let step = (items.len() / count.max(1)).max(1);
    items.iter().step_by(step).take(count).copied().collect()
}

fn print_survey(name: &str, found: &Survey) {
    let deltas: usize = found.patches.iter().map(|p| p.delta_bytes).sum();
    println!(
        "survey {name}: {} pages, {} same-filled, {} duplicates, {} unique; \
         {} with a candidate, {} deltas tried, {} patched (avg delta {} B); \
         compressed {} B -> with patching {} B: saved {} B = {:.2}%",
        found.pages,
        found.same_filled,
        found.duplicates,
        found.unique,
        found.with_candidates,
        found.deltas_tried,
        found.patches.len(),
        deltas / found.patches.len().max(1),
        found.compressed_bytes,
        found.patched_total_bytes(),
        found.saved_bytes(),
        100.0 * found.saved_bytes() as f64 / found.compressed_bytes.max(1) as f64,
    );
}

fn savings(corpus: &Corpus) -> Survey {
    let bytes = corpus.as_bytes();
    let paper = SimilarityConfig::paper();
    let default = SimilarityConfig::default();
    print_survey(
        "paper (k=2 s=1 64 B) vs lz4",
        &survey(bytes, paper, lz4_size).unwrap(),
    );
    print_survey(
        "paper (k=2 s=1 64 B) vs deflate-1",
        &survey(bytes, paper, deflate1_size).unwrap(),
    );
    print_survey(
        "default (k=2 s=1 16 B) vs deflate-1",
        &survey(bytes, default, deflate1_size).unwrap(),
    );
    let found = survey(bytes, default, lz4_size).unwrap();
    print_survey("default (k=2 s=1 16 B) vs lz4", &found);
    found
}

fn codec(c: &mut Criterion) {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
    let found = savings(corpus);
    let pairs: Vec<(usize, usize, usize)> = every_nth(
        &found
            .patches
            .iter()
            .map(|p| (p.page, p.base, p.compressed_bytes))
            .collect::<Vec<_>>(),
        SAMPLE,
    );
    let mut scratch = Box::new(EncodeScratch::new());
    let mut out = vec![0u8; lz4_bound().max(MAX_DELTA_BYTES)];
    let deltas: Vec<Vec<u8>> = pairs
        .iter()
        .map(|&(t, b, _)| {
            let n = encode(page(corpus, t), page(corpus, b), &mut scratch, &mut out).unwrap();
            out[..n].to_vec()
        })
        .collect();
    let compressed: Vec<Vec<u8>> = pairs
        .iter()
        .map(|&(t, _, _)| lz4_compressed(page(corpus, t)))
        .collect();

    let mut group = group(c, "delta_codec", pairs.len());
    group.bench_function("encode", |bench| {
        on_cpu(bench, || {
            for &(t, b, budget) in &pairs {
                let room = &mut out[..budget - 1];
                black_box(encode(page(corpus, t), page(corpus, b), &mut scratch, room).unwrap());
            }
        })
    });
    group.bench_function("lz4_compress", |bench| {
        on_cpu(bench, || {
            for &(t, _, _) in &pairs {
                black_box(lz4_compress(page(corpus, t), &mut out));
            }
        })
    });
    let mut decoded = Box::new([0u8; PAGE_SIZE]);
    group.bench_function("decode", |bench| {
        on_cpu(bench, || {
            for (&(_, b, _), delta) in pairs.iter().zip(&deltas) {
                decode(page(corpus, b), delta, &mut decoded).unwrap();
                black_box(&decoded);
            }
        })
    });
    group.bench_function("lz4_decompress", |bench| {
        on_cpu(bench, || {
            for data in &compressed {
                lz4_flex::block::decompress_into(data, &mut decoded[..]).unwrap();
                black_box(&decoded);
            }
        })
    });
    group.finish();
    report_ratio("delta_codec", "encode", "lz4_compress");
    report_ratio("delta_codec", "decode", "lz4_decompress");
}

fn store_path(c: &mut Criterion) {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
    let filled = |p: &[u8; PAGE_SIZE]| p.chunks_exact(8).all(|w| w == &p[..8]);
    let config = SimilarityConfig::default();
    let capacity = IndexCapacity::growable(MAX_TABLE_PAGES);
    let mut index = SimilarityIndex::<usize, _>::new(StdPageProvider, config, capacity).unwrap();
    let mut out = vec![0u8; lz4_bound()];
    let mut stored_lz4: Vec<Vec<u8>> = vec![Vec::new(); corpus.len()];
    for (i, stored) in stored_lz4.iter_mut().enumerate().step_by(2) {
        let p = page(corpus, i);
        if !filled(p) {
            index.insert(&index.signature(p), i);
            *stored = lz4_compressed(p);
        }
    }
    let later: Vec<usize> = (1..corpus.len())
        .step_by(2)
        .filter(|&i| !filled(page(corpus, i)))
        .collect();
    let sample = every_nth(&later, SAMPLE);
    let budgets: Vec<usize> = sample.iter().map(|&i| lz4_size(page(corpus, i))).collect();
    let mut scratch = Box::new(EncodeScratch::new());
    let (mut base, mut spare) = (Box::new([0u8; PAGE_SIZE]), Box::new([0u8; PAGE_SIZE]));
    let mut delta = vec![0u8; MAX_DELTA_BYTES];
    let mut patched = 0;

    let mut group = group(c, "delta_store_path", sample.len());
    group.bench_function("signature_lookup", |bench| {
        on_cpu(bench, || {
            for &i in &sample {
                let sig = index.signature(page(corpus, i));
                black_box(index.peek_candidates(&sig));
            }
        })
    });
    group.bench_function("patch_attempt", |bench| {
        on_cpu(bench, || {
            patched = 0;
            for (&i, &budget) in sample.iter().zip(&budgets) {
                let p = page(corpus, i);
                let candidates = index.peek_candidates(&index.signature(p));
                let room = &mut delta[..budget.saturating_sub(1)];
                let found = best_delta(
                    p,
                    &candidates,
                    &mut scratch,
                    &mut base,
                    &mut spare,
                    room,
                    |id, buf| {
                        let data = stored_lz4.get(id).filter(|d| !d.is_empty());
                        data.is_some_and(|d| lz4_flex::block::decompress_into(d, buf).is_ok())
                    },
                );
                patched += usize::from(found.is_some());
            }
        })
    });
    group.bench_function("lz4_compress", |bench| {
        on_cpu(bench, || {
            for &i in &sample {
                black_box(lz4_compress(page(corpus, i), &mut out));
            }
        })
    });
    group.finish();
    println!(
        "store path sample: {} odd pages, {patched} patched against even pages",
        sample.len()
    );
    report_ratio("delta_store_path", "signature_lookup", "lz4_compress");
    report_ratio("delta_store_path", "patch_attempt", "lz4_compress");
}

criterion_group!(benches, codec, store_path);
criterion_main!(benches);
