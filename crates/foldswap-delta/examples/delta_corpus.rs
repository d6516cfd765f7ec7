//! How much similarity patching saves on the dev corpus, for a few
//! `HashSimilarityDetector(k, s)` settings and block sizes, against lz4 and
//! deflate-1, and with the deltas themselves deflated ("defl1+dd") against deflate-1.
//!
//! cargo run --release -p foldswap-delta --features std --example delta_corpus

use foldswap_delta::SimilarityConfig;
use foldswap_delta::survey::{Survey, survey, survey_compressed_deltas};
use foldswap_mem::PAGE_SIZE;

fn lz4_size(page: &[u8; PAGE_SIZE]) -> usize {
    let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(PAGE_SIZE)];
    lz4_flex::block::compress_into(page, &mut out).unwrap_or(PAGE_SIZE)
}

fn deflate1_size(page: &[u8; PAGE_SIZE]) -> usize {
    miniz_oxide::deflate::compress_to_vec(page, 1).len()
}

fn print(codec: &str, config: &SimilarityConfig, found: &Survey) {
    let (k, s, b) = (config.indexes, config.hashes_per_index, config.block_bytes);
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let saved = found.saved_bytes();
    let deltas: usize = found.patches.iter().map(|p| p.delta_bytes).sum();
    println!(
        "{codec:8} k={k} s={s} block={b:3}: unique {} / candidates {} / tried {} / patched {} ({:.1}%) \
         avg delta {} B; {codec} {:.2} MiB -> {:.2} MiB, saved {:.2} MiB ({:.1}%)",
        found.unique,
        found.with_candidates,
        found.deltas_tried,
        found.patches.len(),
        100.0 * found.patches.len() as f64 / found.unique as f64,
        deltas / found.patches.len().max(1),
        mib(found.compressed_bytes),
        mib(found.patched_total_bytes()),
        mib(saved),
        100.0 * saved as f64 / found.compressed_bytes as f64,
    );
}

fn main() {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus");
    let settings = [
        (2, 1, 64),
        (4, 1, 64),
        (2, 2, 64),
        (1, 1, 16),
        (2, 1, 16),
        (4, 1, 16),
        (2, 1, 8),
        (4, 1, 8),
        (2, 1, 32),
    ];
    for (k, s, b) in settings {
        let config = SimilarityConfig {
            indexes: k,
            hashes_per_index: s,
            block_bytes: b,
            ..SimilarityConfig::default()
        };
        let lz4 = survey(corpus.as_bytes(), config, lz4_size).expect("survey");
        print("lz4", &config, &lz4);
        let deflate = survey(corpus.as_bytes(), config, deflate1_size).expect("survey");
        print("deflate1", &config, &deflate);
        let deflated_deltas = survey_compressed_deltas(
            corpus.as_bytes(),
            config,
            deflate1_size,
            |delta: &[u8]| miniz_oxide::deflate::compress_to_vec(delta, 1).len(),
        )
        .expect("survey");
        print("defl1+dd", &config, &deflated_deltas);
    }
}
