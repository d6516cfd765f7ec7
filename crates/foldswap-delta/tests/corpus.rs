//! Patching on the real dev corpus: every chosen delta decodes byte-exactly and is
//! smaller than the page's lz4 size; the survey's counts agree with the
//! independent reference figures.

use foldswap_delta::survey::{survey, survey_compressed_deltas};
use foldswap_delta::{EncodeScratch, MAX_DELTA_BYTES, SimilarityConfig, decode, encode};
use foldswap_mem::PAGE_SIZE;

fn lz4_size(page: &[u8; PAGE_SIZE]) -> usize {
    let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(PAGE_SIZE)];
    lz4_flex::block::compress_into(page, &mut out).expect("lz4 output sized for the worst case")
}

#[test]
fn every_chosen_delta_decodes_byte_exactly() {
    let (corpus, reference) = foldswap_corpus::dev_mixed().expect("dev corpus must be present");
    let found = survey(corpus.as_bytes(), SimilarityConfig::default(), lz4_size).unwrap();
    assert_eq!(found.pages as u64, reference.pages);
    assert_eq!(
        found.same_filled as u64,
        reference.zero + reference.same_filled
    );
    assert_eq!(found.duplicates as u64, reference.dup_nonfill);
    assert_eq!(found.unique as u64, reference.unique_nonfill);
    assert!(
        !found.patches.is_empty(),
        "no similar page found in a real corpus"
    );

    let mut scratch = Box::new(EncodeScratch::new());
    let mut delta = vec![0u8; MAX_DELTA_BYTES];
    let mut out = Box::new([0u8; PAGE_SIZE]);
    for patch in &found.patches {
        let page = corpus.page(patch.page).unwrap();
        let base = corpus.page(patch.base).unwrap();
        assert!(patch.base < patch.page, "a base is an earlier page");
        assert!(patch.delta_bytes < patch.compressed_bytes);
        assert_eq!(patch.compressed_bytes, lz4_size(page).min(PAGE_SIZE));
        let len = encode(page, base, &mut scratch, &mut delta).unwrap();
        assert_eq!(len, patch.delta_bytes, "encoding is deterministic");
        decode(base, &delta[..len], &mut out).unwrap();
        assert!(
            out[..] == page[..],
            "page {} differs after decode",
            patch.page
        );
        // The delta with its last byte cut never passes for the page.
        assert!(decode(base, &delta[..len - 1], &mut out).is_err());
    }
    // No page is a base for a delta and a delta itself.
    let patched: std::collections::HashSet<usize> = found.patches.iter().map(|p| p.page).collect();
    assert!(found.patches.iter().all(|p| !patched.contains(&p.base)));
}

#[test]
fn compressed_delta_survey_with_identity_size_agrees_with_plain_survey() {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus must be present");
    let pages = &corpus.as_bytes()[..4096 * 6000];
    let plain = survey(pages, SimilarityConfig::default(), lz4_size).unwrap();
    let identity =
        survey_compressed_deltas(pages, SimilarityConfig::default(), lz4_size, <[u8]>::len)
            .unwrap();
    assert!(!plain.patches.is_empty());
    assert_eq!(plain.patches, identity.patches);
    assert_eq!(plain.compressed_bytes, identity.compressed_bytes);
}
