//! `foldswap analyze`: run every strategy over the same pages, verify, report.
//!
//! For each strategy, in turn and on the same pages:
//! 1. store pass — every page stored once, in corpus order; timed as a whole;
//! 2. load pass — every page loaded back, [`VERIFY_BATCH`] pages at a time into a
//!    buffer (the loads are timed), then the batch is compared byte for byte with
//!    the corpus (not timed). A single differing byte stops the run with an
//!    integrity error: no figure is reported for a strategy that lost data.
//! 3. the strategy's [`Summary`](crate::strategy::Summary) becomes its row of the
//!    report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use foldswap_corpus::{Corpus, CorpusError, read_corpus_bounded};
use foldswap_mem::PAGE_SIZE;
use indicatif::ProgressBar;

use crate::error::InputError;
use crate::procmem::{check_processes_exist, read_process_pages};
use crate::report::{
    AnalyzeReport, EncodingLoadsReport, InputReport, MetadataTableReport, SCHEMA, StageReport,
    StrategyReport,
};
use crate::strategy::{COMPRESS_ONLY, Strategy};

/// Pages loaded into the buffer before they are compared with the originals.
pub const VERIFY_BATCH: usize = 256;

/// Where the pages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `.pages` or `.pages.gz` file.
    File(PathBuf),
    /// The anonymous resident pages of these live processes, in this order.
    Processes(Vec<u32>),
}

impl Source {
    /// How the source is named in reports.
    pub fn label(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Processes(pids) => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                format!("pid {}", pids.join(","))
            }
        }
    }
}

/// Read all pages of `source`, at most `max_pages` of them. Fails with an
/// [`InputError`] if the source is unreadable, malformed, holds more than
/// `max_pages` pages or none.
pub fn read_source(source: &Source, max_pages: usize) -> Result<Corpus, InputError> {
    let corpus = match source {
        Source::File(path) => read_corpus_bounded(path, max_pages)?,
        Source::Processes(pids) => {
            check_processes_exist(pids)?;
            let label = PathBuf::from(source.label());
            let mut bytes = Vec::new();
            let mut too_many = false;
            for &pid in pids {
                read_process_pages(pid, &mut |page| {
                    if bytes.len() / PAGE_SIZE < max_pages {
                        bytes.extend_from_slice(page);
                    } else {
                        too_many = true;
                    }
                })?;
                if too_many {
                    return Err(CorpusError::TooManyPages {
                        path: label,
                        max_pages,
                    }
                    .into());
                }
            }
            Corpus::from_bytes(bytes, &label)?
        }
    };
    if corpus.is_empty() {
        return Err(InputError::Empty(source.label()));
    }
    Ok(corpus)
}

/// Run every strategy over `corpus` and build the report. `progress` advances by
/// one per page stored and per page loaded (length: 2 × pages × strategies).
pub fn analyze(
    source_label: &str,
    corpus: &Corpus,
    strategies: Vec<Box<dyn Strategy>>,
    progress: &ProgressBar,
) -> anyhow::Result<AnalyzeReport> {
    let mut rows = Vec::with_capacity(strategies.len());
    for mut strategy in strategies {
        rows.push(run_strategy(strategy.as_mut(), corpus, progress)?);
    }
    let zram_like = rows
        .iter()
        .find(|row| row.name == COMPRESS_ONLY)
        .map(|row| row.bytes_held as f64);
    for row in &mut rows {
        row.held_vs_compress_only = zram_like
            .filter(|&held| held > 0.0)
            .map(|held| row.bytes_held as f64 / held);
    }
    Ok(AnalyzeReport {
        schema: SCHEMA.to_owned(),
        input: InputReport {
            source: source_label.to_owned(),
            pages: corpus.len() as u64,
            bytes: corpus.as_bytes().len() as u64,
        },
        strategies: rows,
    })
}

/// Store every page through `strategy`, load every page back and verify it.
pub fn run_strategy(
    strategy: &mut dyn Strategy,
    corpus: &Corpus,
    progress: &ProgressBar,
) -> anyhow::Result<StrategyReport> {
    let name = strategy.name();
    let pages = corpus.len();
    let index_of = |i: usize| u32::try_from(i).context("more than 2^32 pages");

    strategy.reserve(pages);
    progress.set_message(format!("{name}: storing"));
    let store_start = Instant::now();
    for (i, page) in corpus.pages().enumerate() {
        strategy
            .store(index_of(i)?, page)
            .with_context(|| format!("{name}: store failed"))?;
        if i % VERIFY_BATCH == VERIFY_BATCH - 1 {
            progress.inc(VERIFY_BATCH as u64);
        }
    }
    let store_nanos = store_start.elapsed().as_nanos();
    progress.inc((pages % VERIFY_BATCH) as u64);

    progress.set_message(format!("{name}: background work"));
    strategy
        .settle()
        .with_context(|| format!("{name}: background work failed"))?;

    progress.set_message(format!("{name}: loading and verifying"));
    let mut load_nanos = 0u128;
    let mut buffer = vec![[0u8; PAGE_SIZE]; VERIFY_BATCH];
    for first in (0..pages).step_by(VERIFY_BATCH) {
        let count = VERIFY_BATCH.min(pages - first);
        let batch = &mut buffer[..count];
        let load_start = Instant::now();
        for (offset, out) in batch.iter_mut().enumerate() {
            strategy
                .load(index_of(first + offset)?, out)
                .with_context(|| format!("{name}: load failed"))?;
        }
        load_nanos += load_start.elapsed().as_nanos();
        verify_batch(name, corpus, first, batch)?;
        progress.inc(count as u64);
    }

    let summary = strategy.summary();
    if summary.counts.total() != pages as u64 {
        bail!(
            "{name}: accounted for {} pages of {pages}",
            summary.counts.total()
        );
    }
    let per_page = |nanos: u128| u64::try_from(nanos / pages.max(1) as u128).unwrap_or(u64::MAX);
    let counts = summary.counts;
    let bytes_held = summary.data_bytes + summary.metadata_bytes;
    let input_bytes = corpus.as_bytes().len() as f64;
    Ok(StrategyReport {
        name: name.to_owned(),
        model: strategy.model().to_owned(),
        pages: pages as u64,
        counts,
        data_bytes: summary.data_bytes,
        metadata_bytes: summary.metadata_bytes,
        metadata_bytes_per_page: summary.metadata_bytes as f64 / pages.max(1) as f64,
        metadata_tables: summary
            .metadata_tables
            .iter()
            .map(|table| MetadataTableReport {
                name: table.name.to_owned(),
                bytes: table.bytes,
                bytes_per_page: table.bytes as f64 / pages.max(1) as f64,
            })
            .collect(),
        bytes_held,
        ratio: if bytes_held == 0 {
            0.0
        } else {
            input_bytes / bytes_held as f64
        },
        held_vs_compress_only: None,
        verified_pages: pages as u64,
        store_ns_per_page: per_page(store_nanos),
        load_ns_per_page: per_page(load_nanos),
        stages: summary
            .stages
            .iter()
            .map(|stage| StageReport {
                name: stage.name.to_owned(),
                ns_per_page: per_page(u128::from(stage.nanos)),
            })
            .collect(),
        loads_by_encoding: summary
            .loads_by_encoding
            .iter()
            .map(|l| EncodingLoadsReport {
                encoding: l.encoding.to_owned(),
                pages: l.pages,
                median_ns: l.median_ns,
                p99_ns: l.p99_ns,
            })
            .collect(),
    })
}

/// Compare loaded pages `first..first + batch.len()` with the corpus.
fn verify_batch(
    name: &str,
    corpus: &Corpus,
    first: usize,
    batch: &[[u8; PAGE_SIZE]],
) -> anyhow::Result<()> {
    for (offset, loaded) in batch.iter().enumerate() {
        let index = first + offset;
        let original = corpus
            .page(index)
            .with_context(|| format!("page {index} missing from the corpus"))?;
        if loaded != original {
            let byte = loaded
                .iter()
                .zip(original.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            bail!("integrity failure: {name} loaded page {index} wrong (first bad byte {byte})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{StrategyError, Summary, all_strategies};

    fn corpus(pages: &[[u8; PAGE_SIZE]]) -> Corpus {
        Corpus::from_bytes(pages.concat(), std::path::Path::new("test")).unwrap()
    }

    /// A strategy that gives back the wrong byte for page 1.
    struct Forgetful(Vec<[u8; PAGE_SIZE]>);

    impl Strategy for Forgetful {
        fn name(&self) -> &'static str {
            "forgetful"
        }
        fn model(&self) -> &'static str {
            "loses a byte"
        }
        fn store(&mut self, _: u32, page: &[u8; PAGE_SIZE]) -> Result<(), StrategyError> {
            self.0.push(*page);
            Ok(())
        }
        fn load(&mut self, index: u32, out: &mut [u8; PAGE_SIZE]) -> Result<(), StrategyError> {
            *out = self.0[index as usize];
            if index == 1 {
                out[7] ^= 1;
            }
            Ok(())
        }
        fn summary(&self) -> Summary {
            unreachable!("a strategy that lost data is never summarised")
        }
    }

    #[test]
    fn a_wrong_byte_is_an_integrity_failure() {
        let pages = corpus(&[[1; PAGE_SIZE], [2; PAGE_SIZE], [3; PAGE_SIZE]]);
        let err = run_strategy(&mut Forgetful(Vec::new()), &pages, &ProgressBar::hidden())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "integrity failure: forgetful loaded page 1 wrong (first bad byte 7)"
        );
    }

    #[test]
    fn every_strategy_reports_every_page() {
        let mut pages = vec![[0u8; PAGE_SIZE]; 3];
        pages[1][..11].copy_from_slice(b"hello pages");
        pages.push(pages[1]);
        let corpus = corpus(&pages);
        let strategies = all_strategies().unwrap();
        let report = analyze("test", &corpus, strategies, &ProgressBar::hidden()).unwrap();
        assert_eq!(report.input.pages, 4);
        assert_eq!(report.strategies.len(), 5);
        for row in &report.strategies {
            assert_eq!(row.verified_pages, 4);
            assert_eq!(row.counts.total(), 4, "{}", row.name);
            assert_eq!(row.bytes_held, row.data_bytes + row.metadata_bytes);
            let tables: u64 = row.metadata_tables.iter().map(|t| t.bytes).sum();
            assert_eq!(tables, row.metadata_bytes, "{}", row.name);
            assert!(!row.metadata_tables.is_empty(), "{}", row.name);
            // The backend's rows time every load by its page's encoding.
            let timed: u64 = row.loads_by_encoding.iter().map(|l| l.pages).sum();
            let backend = row.name.starts_with("foldswap");
            assert_eq!(timed, if backend { 4 } else { 0 }, "{}", row.name);
            for l in &row.loads_by_encoding {
                assert!(l.pages > 0 && l.median_ns <= l.p99_ns, "{l:?}");
            }
        }
    }

    #[test]
    fn an_empty_corpus_is_an_input_error() {
        let dir = std::env::temp_dir().join(format!("foldswap-cli-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pages");
        std::fs::write(&path, b"").unwrap();
        let err = read_source(&Source::File(path), 10).unwrap_err();
        assert!(matches!(err, InputError::Empty(_)), "{err}");
    }

    #[test]
    fn a_process_with_more_pages_than_the_bound_is_an_input_error() {
        let pid = std::process::id();
        let err = read_source(&Source::Processes(vec![pid]), 1).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::Corpus(CorpusError::TooManyPages { max_pages: 1, .. })
            ),
            "{err}"
        );
        assert_eq!(
            read_source(&Source::Processes(vec![pid]), usize::MAX)
                .map(|c| c.is_empty())
                .ok(),
            Some(false)
        );
    }
}
