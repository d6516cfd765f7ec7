//! # foldswap-cli — the `foldswap` command
//!
//! The command answers one question on real memory: what does foldswap save and
//! cost, compared with what Linux does today?
//!
//! * `foldswap analyze [PATH | --pid PID...]` takes pages — a raw corpus file
//!   (`.pages`, `.pages.gz`) or the anonymous resident pages of live processes — and
//!   runs every [`Strategy`](strategy::Strategy) over the same pages, one after the
//!   other. Each strategy stores every page, then every page is loaded back and
//!   compared byte for byte with the original; a single wrong byte is an integrity
//!   failure, not a figure. The report says, per strategy, how the pages were stored
//!   (zero / same-filled, identical to a stored page, patched, compressed, raw),
//!   the bytes held including metadata, the ratio against the raw input, and the
//!   nanoseconds per page of each stage. Strategies are *models* of the systems
//!   compared: `compress-only` is zswap/zram (same-filled pages free, the rest lz4
//!   in zsmalloc-like 16-byte size classes), `dedup-only` is KSM (identical pages
//!   kept once, byte-verified, the rest raw). See [`strategy`] and `docs/cli.md`.
//! * `foldswap dump --pid PID... -o FILE` writes the anonymous resident pages of the
//!   named processes as a raw corpus ([`procmem`] reads them, [`output`] writes the
//!   file under a temporary name and renames it only when complete).
//! * `foldswap scan --pid PID... --passes N` runs the resident face over live
//!   processes: the scan ladder picks pages, the merge trees decide merges after a
//!   full byte comparison, and merging is counted per pass ([`scan`]; the pages are
//!   read and compared by [`process_host`], the table drawn by [`scan_table`]).
//!
//! Bad input — a corpus whose size is not a whole number of pages, a truncated gzip
//! stream, an unreadable file, a PID that is gone, process memory that cannot be
//! read — is an [`InputError`]: one line naming the problem,
//! exit code 2, and no output file.
//!
//! This is a std host: it never runs in the kernel, and floating point is used
//! freely here for ratios and plots.

pub mod analyze;
pub mod error;
pub mod output;
pub mod plot;
pub mod process_host;
pub mod procmem;
pub mod report;
pub mod scan;
pub mod scan_table;
pub mod strategy;

pub use error::InputError;
