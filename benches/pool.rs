//! The compressed pool against its raw building blocks, on the dev corpus.
//!
//! - `pool_store`: `PagePool::store_page` (same-filled check, lz4 with the table in
//!   scratch, packing into zspages, handle) vs plain `lz4_flex::block::compress_into`
//!   on the same pages. Target: store ≤ 1.10 × plain compress.
//! - `pool_load`: `PagePool::load_page` vs plain `decompress_into` of the same
//!   compressed bytes. Target: load ≤ 1.10 × plain decompress.
//! - `pool_store_deflate`: the same with deflate-1 vs plain miniz_oxide.
//! - `cold_zstd`: the cold codec trait's `ZstdCodec` (its default level, frames without
//!   checksum or dictionary id) vs plain libzstd (`zstd::bulk`, same level and
//!   frame flags) on the same pages, compress and decompress. Target ≤ 1.05.
//! - `pool_verify`: the duplicate check's full comparison of a page with its stored
//!   lz4 copy: `lz4_matches` (walks the stream, compares as it goes) vs plain
//!   `decompress_into` + memcmp vs memcmp of two uncompressed copies alone.
//! - Bytes (not timed): bytes the pool holds for the whole corpus (zspages plus all
//!   metadata) vs the sum of the compressed sizes. Target ≤ 1.05.
//!
//! Run: `cargo bench -p foldswap-benches --bench pool`

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use foldswap_benches::{WarmPages, report_ratio};
use foldswap_mem::PAGE_SIZE;
use foldswap_pool::building_blocks::lz4_flex::block::{
    compress_into, decompress_into, get_maximum_output_size,
};
use foldswap_pool::building_blocks::miniz_oxide::DataFormat;
use foldswap_pool::building_blocks::miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress,
};
use foldswap_pool::{
    CodecKind, CompressScratch, DecompressScratch, NoClock, PagePolicy, PagePool, PoorCompression,
    StoredPage, lz4_matches, same_filled_word,
};

/// Every `SAMPLE_STRIDE`-th corpus page is benchmarked (about 2,100 pages).
const SAMPLE_STRIDE: usize = 14;

/// Time as CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), not
/// wall time: this 2-core machine is shared, and time other processes take the CPU
/// away must not count against whichever side happens to be running. Both sides of
/// every comparison are measured the same way.
struct ThreadCpuTime;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is Linux's
    // CLOCK_THREAD_CPUTIME_ID, which always exists.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

struct CpuNanos;

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e-3, "µs cpu"),
            t if t < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                *n as f64
            }
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        "elem/s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns cpu"
    }
}

fn keep_everything(codec: CodecKind) -> PagePolicy {
    PagePolicy {
        codec,
        threshold: PAGE_SIZE,
        on_poor: PoorCompression::KeepRaw,
    }
}

fn fill_pool<'w>(
    pages: &[&[u8; PAGE_SIZE]],
    policy: PagePolicy,
    warm: &'w WarmPages,
) -> (PagePool<&'w WarmPages>, Vec<StoredPage>) {
    let mut pool = PagePool::new(warm, policy).expect("pool");
    let mut scratch = CompressScratch::boxed();
    let stored = pages
        .iter()
        .map(|page| {
            pool.store_page(&page[..], &mut scratch, &NoClock)
                .expect("store")
        })
        .collect();
    (pool, stored)
}

fn bench_store(c: &mut Criterion<ThreadCpuTime>, pages: &[&[u8; PAGE_SIZE]], warm: &WarmPages) {
    let mut group = c.benchmark_group("pool_store");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(6));
    let mut out = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
    group.bench_function("plain_lz4_compress", |b| {
        b.iter(|| {
            for page in pages {
                black_box(compress_into(&page[..], &mut out).expect("fits"));
            }
        })
    });
    let mut scratch = CompressScratch::boxed();
    // The codec layer alone: same-filled check + lz4 with the table in scratch.
    group.bench_function("codec_only", |b| {
        b.iter(|| {
            for page in pages {
                if same_filled_word(page).is_none() {
                    black_box(scratch.compress(CodecKind::Lz4, page).expect("lz4"));
                }
            }
        })
    });
    bench_store_pages(&mut group, pages, warm, &mut scratch, CodecKind::Lz4);
    group.finish();
}

/// `store_page`: every page into a fresh pool (with `codec`) per iteration.
fn bench_store_pages(
    group: &mut BenchmarkGroup<'_, ThreadCpuTime>,
    pages: &[&[u8; PAGE_SIZE]],
    warm: &WarmPages,
    scratch: &mut CompressScratch,
    codec: CodecKind,
) {
    group.bench_function("store_page", |b| {
        b.iter_batched(
            || PagePool::new(warm, keep_everything(codec)).expect("pool"),
            |mut pool| {
                for page in pages {
                    black_box(
                        pool.store_page(&page[..], scratch, &NoClock)
                            .expect("store"),
                    );
                }
                pool
            },
            BatchSize::PerIteration,
        )
    });
}

/// Plain lz4 blocks of `pages`.
fn compress_all(pages: &[&[u8; PAGE_SIZE]]) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; get_maximum_output_size(PAGE_SIZE)];
    pages
        .iter()
        .map(|page| {
            let len = compress_into(&page[..], &mut buf).expect("fits");
            buf[..len].to_vec()
        })
        .collect()
}

fn bench_load(c: &mut Criterion<ThreadCpuTime>, pages: &[&[u8; PAGE_SIZE]], warm: &WarmPages) {
    let mut group = c.benchmark_group("pool_load");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    let compressed = compress_all(pages);
    let mut out = vec![0u8; PAGE_SIZE];
    group.bench_function("plain_lz4_decompress", |b| {
        b.iter(|| {
            for bytes in &compressed {
                black_box(decompress_into(bytes, &mut out).expect("decodes"));
            }
        })
    });
    let (pool, stored) = fill_pool(pages, keep_everything(CodecKind::Lz4), warm);
    let mut scratch = Box::new(DecompressScratch::new());
    group.bench_function("load_page", |b| {
        b.iter(|| {
            for s in &stored {
                pool.load_page(*s, &mut out, &mut scratch, &NoClock)
                    .expect("load");
                black_box(&out);
            }
        })
    });
    group.finish();
}

fn bench_verify(c: &mut Criterion<ThreadCpuTime>, pages: &[&[u8; PAGE_SIZE]]) {
    let mut group = c.benchmark_group("pool_verify");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    let compressed = compress_all(pages);
    // Uncompressed copies in their own memory: what memcmp alone compares against.
    let copies: Vec<Box<[u8; PAGE_SIZE]>> = pages.iter().map(|p| Box::new(**p)).collect();
    group.bench_function("lz4_matches", |b| {
        b.iter(|| {
            for (bytes, page) in compressed.iter().zip(pages) {
                assert_eq!(lz4_matches(bytes, page), Ok(true));
            }
        })
    });
    let mut out = vec![0u8; PAGE_SIZE];
    group.bench_function("decompress_memcmp", |b| {
        b.iter(|| {
            for (bytes, page) in compressed.iter().zip(pages) {
                decompress_into(bytes, &mut out).expect("decodes");
                assert!(black_box(&out[..]) == &page[..]);
            }
        })
    });
    group.bench_function("memcmp", |b| {
        b.iter(|| {
            for (copy, page) in copies.iter().zip(pages) {
                assert!(black_box(&copy[..]) == &page[..]);
            }
        })
    });
    group.finish();
}

fn bench_store_deflate(
    c: &mut Criterion<ThreadCpuTime>,
    pages: &[&[u8; PAGE_SIZE]],
    warm: &WarmPages,
) {
    let mut group = c.benchmark_group("pool_store_deflate");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    // Plain miniz_oxide, used the way the pool uses it: one compressor, reset
    // per page, raw deflate level 1, into a reused buffer.
    let mut compressor = Box::<CompressorOxide>::default();
    compressor.set_format_and_level(DataFormat::Raw, 1);
    let mut out = vec![0u8; 2 * PAGE_SIZE];
    group.bench_function("plain_deflate1_compress", |b| {
        b.iter(|| {
            for page in pages {
                compressor.reset();
                let (status, _, len) =
                    compress(&mut compressor, &page[..], &mut out, TDEFLFlush::Finish);
                assert_eq!(status, TDEFLStatus::Done);
                black_box(len);
            }
        })
    });
    let mut scratch = CompressScratch::boxed();
    bench_store_pages(&mut group, pages, warm, &mut scratch, CodecKind::Deflate);
    group.finish();
}

fn bench_cold_zstd(c: &mut Criterion<ThreadCpuTime>, pages: &[&[u8; PAGE_SIZE]]) {
    use foldswap_pool::building_blocks::zstd::bulk::{Compressor, Decompressor};
    use foldswap_pool::{ColdCodec, ColdKind, ZstdCodec};
    let level = ColdKind::Zstd.default_level();
    let mut group = c.benchmark_group("cold_zstd");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let mut plain = Compressor::new(i32::from(level)).unwrap();
    plain.include_checksum(false).unwrap();
    plain.include_dictid(false).unwrap();
    plain.include_contentsize(true).unwrap();
    let mut codec = ZstdCodec::new().unwrap();
    let mut out = vec![0u8; 2 * PAGE_SIZE];
    group.bench_function("plain_zstd_compress", |b| {
        b.iter(|| {
            for page in pages {
                black_box(plain.compress_to_buffer(&page[..], &mut out[..]).unwrap());
            }
        })
    });
    group.bench_function("codec_compress", |b| {
        b.iter(|| {
            for page in pages {
                black_box(codec.compress_page(page, &mut out).unwrap());
            }
        })
    });
    let frames: Vec<Vec<u8>> = pages
        .iter()
        .map(|page| {
            let len = codec.compress_page(page, &mut out).unwrap().unwrap();
            out[..len].to_vec()
        })
        .collect();
    let mut plain = Decompressor::new().unwrap();
    let mut page_out = [0u8; PAGE_SIZE];
    group.bench_function("plain_zstd_decompress", |b| {
        b.iter(|| {
            for frame in &frames {
                black_box(
                    plain
                        .decompress_to_buffer(frame, &mut page_out[..])
                        .unwrap(),
                );
            }
        })
    });
    group.bench_function("codec_decompress", |b| {
        b.iter(|| {
            for frame in &frames {
                codec.decompress_page(frame, &mut page_out).unwrap();
                black_box(&page_out);
            }
        })
    });
    group.finish();
}

/// Bytes held for the whole corpus vs the sum of compressed sizes (lz4, and
/// raw pages counted as 4096), printed like the time ratios.
fn report_bytes(all: &[&[u8; PAGE_SIZE]]) {
    let warm = WarmPages::new(0);
    let (pool, _) = fill_pool(all, keep_everything(CodecKind::Lz4), &warm);
    let stats = pool.stats();
    let held = stats.store.bytes_held as f64;
    let compressed = stats.compressed_bytes as f64;
    let zspages = (stats.store.zspage_pages * PAGE_SIZE) as f64;
    println!(
        "ratio pool_bytes: held / compressed = {:.3} ({} B held incl. {} metadata pages, {} B compressed; zspages alone {:.3})",
        held / compressed,
        stats.store.bytes_held,
        stats.store.metadata_pages,
        stats.compressed_bytes,
        zspages / compressed,
    );
}

fn main() {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
    let all: Vec<&[u8; PAGE_SIZE]> = corpus.pages().collect();
    let sample: Vec<&[u8; PAGE_SIZE]> = all.iter().copied().step_by(SAMPLE_STRIDE).collect();
    // Enough warm pages for a pool of the sample (and the one kept for loads).
    let warm = WarmPages::new(2 * sample.len());
    let mut c = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .configure_from_args();
    bench_store(&mut c, &sample, &warm);
    bench_load(&mut c, &sample, &warm);
    bench_verify(&mut c, &sample);
    bench_store_deflate(&mut c, &sample, &warm);
    bench_cold_zstd(&mut c, &sample);
    c.final_summary();
    report_ratio("pool_store", "store_page", "plain_lz4_compress");
    report_ratio("pool_store", "codec_only", "plain_lz4_compress");
    report_ratio("pool_load", "load_page", "plain_lz4_decompress");
    report_ratio("pool_verify", "lz4_matches", "decompress_memcmp");
    report_ratio("pool_verify", "lz4_matches", "memcmp");
    report_ratio(
        "pool_store_deflate",
        "store_page",
        "plain_deflate1_compress",
    );
    report_ratio("cold_zstd", "codec_compress", "plain_zstd_compress");
    report_ratio("cold_zstd", "codec_decompress", "plain_zstd_decompress");
    report_bytes(&all);
}
