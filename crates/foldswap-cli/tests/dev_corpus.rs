//! The strategies on the real dev corpus, checked against its independent reference
//! figures (`samples/dev-mixed.reference.txt`). Fails if the corpus is missing.

use foldswap_cli::analyze::analyze;
use foldswap_cli::strategy::{all_strategies, dedup_only_copies_of};
use indicatif::ProgressBar;

#[test]
fn counts_agree_with_the_reference_and_the_zram_model_is_close_to_zram() {
    let (corpus, reference) = foldswap_corpus::dev_mixed().expect("the dev corpus");
    let report = analyze(
        "dev-mixed",
        corpus,
        all_strategies().unwrap(),
        &ProgressBar::hidden(),
    )
    .unwrap();
    let row = |name: &str| {
        report
            .strategies
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(report.input.pages, reference.pages);

    for name in ["compress-only", "pool-lz4"] {
        let counts = row(name).counts;
        assert_eq!(counts.zero, reference.zero, "{name}");
        assert_eq!(counts.same_filled, reference.same_filled, "{name}");
        assert_eq!(counts.compressed + counts.raw, reference.nonfill, "{name}");
        assert_eq!(row(name).verified_pages, reference.pages);
    }

    // KSM model: every distinct content kept (zero pages are a content like any
    // other, in copies of at most 256 sharers), everything else a reference.
    let dedup = row("dedup-only").counts;
    let zero_copies = dedup_only_copies_of(reference.zero);
    assert_eq!(
        reference.same_filled, 0,
        "this check assumes no non-zero fills"
    );
    assert_eq!(dedup.raw, reference.unique_nonfill + zero_copies);
    assert_eq!(dedup.identical, reference.pages - dedup.raw);

    // What Linux zram held for this file (mem_used, MiB): the zswap/zram model and
    // the real pool with the same policy land within 10 % of it.
    let zram = reference.zram_lz4_mem_used_mib as f64 * 1024.0 * 1024.0;
    for name in ["compress-only", "pool-lz4"] {
        let held = row(name).bytes_held as f64;
        assert!(
            (held / zram - 1.0).abs() < 0.10,
            "{name} holds {held} bytes, zram {zram}"
        );
    }
}
