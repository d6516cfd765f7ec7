//! The analyze report: its JSON form (stable field names, documented in
//! `docs/cli.md`) and its terminal table.

use core::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::strategy::Counts;

/// Version tag of the JSON layout; bumped when a field changes meaning or goes.
pub const SCHEMA: &str = "foldswap-analyze/2";

/// Everything `foldswap analyze` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzeReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// What was analyzed.
    pub input: InputReport,
    /// One row per strategy, in the order they ran.
    pub strategies: Vec<StrategyReport>,
}

/// The analyzed pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputReport {
    /// The file path, or `pid 1,2,3`.
    pub source: String,
    /// 4096-byte pages.
    pub pages: u64,
    /// `pages × 4096`.
    pub bytes: u64,
}

/// What one strategy did with the pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyReport {
    /// Stable short name (`compress-only`, `dedup-only`).
    pub name: String,
    /// Which system it models and how it counts bytes.
    pub model: String,
    /// Pages stored (= the input's pages).
    pub pages: u64,
    /// How the pages were stored: `zero`, `same_filled`, `identical`, `patched`,
    /// `compressed`, `raw` (flattened into this object in JSON).
    #[serde(flatten)]
    pub counts: Counts,
    /// Bytes of page data held.
    pub data_bytes: u64,
    /// Bytes of bookkeeping held.
    pub metadata_bytes: u64,
    /// `metadata_bytes` / pages.
    pub metadata_bytes_per_page: f64,
    /// The bookkeeping table by table (they add up to `metadata_bytes`).
    pub metadata_tables: Vec<MetadataTableReport>,
    /// `data_bytes + metadata_bytes`.
    pub bytes_held: u64,
    /// Input bytes / `bytes_held` (higher is better).
    pub ratio: f64,
    /// `bytes_held` / the `compress-only` strategy's `bytes_held` (what zswap/zram
    /// would hold for the same pages); `null` when that strategy did not run.
    pub held_vs_compress_only: Option<f64>,
    /// Pages loaded back and found byte-identical to the input.
    pub verified_pages: u64,
    /// Wall time of the store pass / pages.
    pub store_ns_per_page: u64,
    /// Wall time of the load pass / pages (comparison excluded).
    pub load_ns_per_page: u64,
    /// The strategy's own stages, each as total time / input pages.
    pub stages: Vec<StageReport>,
    /// Load time by how the page was kept (the backend's strategies; empty for
    /// the models).
    pub loads_by_encoding: Vec<EncodingLoadsReport>,
}

/// The loads of the pages kept one way (`lz4`, `cold`, `delta`, `block`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodingLoadsReport {
    /// Stable encoding name.
    pub encoding: String,
    /// Pages loaded.
    pub pages: u64,
    /// Median time of one load, ns.
    pub median_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
}

/// One table of a strategy's bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataTableReport {
    /// Stable table name (`offset_slots`, `entries`, `pool_metadata`, ...).
    pub name: String,
    /// Bytes it holds.
    pub bytes: u64,
    /// `bytes` / pages.
    pub bytes_per_page: f64,
}

/// Time in one stage of a strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReport {
    /// Stable stage name (`compress`, `hash`, ...).
    pub name: String,
    /// Total time in the stage / input pages.
    pub ns_per_page: u64,
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units with one decimal: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Render the report as tables for a terminal (about 80 columns).
pub fn render_table(report: &AnalyzeReport) -> String {
    let mut out = String::new();
    let input = &report.input;
    let _ = writeln!(
        out,
        "{}: {} pages ({})",
        input.source,
        thousands(input.pages),
        human_bytes(input.bytes)
    );
    let verified: u64 = report.strategies.iter().map(|s| s.verified_pages).sum();
    let _ = writeln!(
        out,
        "every page stored, loaded back and compared byte for byte ({} loads verified)",
        thousands(verified)
    );
    let width = report
        .strategies
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max("strategy".len());

    let _ = writeln!(out, "\nhow the pages were stored (pages)");
    let counts_header = [
        "zero",
        "same-filled",
        "identical",
        "patched",
        "compressed",
        "raw",
    ];
    let rows: Vec<Vec<String>> = report
        .strategies
        .iter()
        .map(|s| {
            let c = &s.counts;
            [
                c.zero,
                c.same_filled,
                c.identical,
                c.patched,
                c.compressed,
                c.raw,
            ]
            .map(thousands)
            .to_vec()
        })
        .collect();
    write_columns(&mut out, width, &counts_header, report, &rows);

    let _ = writeln!(out, "\nwhat they hold and cost");
    let cost_header = [
        "data",
        "metadata",
        "held",
        "ratio",
        "vs zram",
        "store ns/page",
        "load ns/page",
    ];
    let rows: Vec<Vec<String>> = report
        .strategies
        .iter()
        .map(|s| {
            vec![
                human_bytes(s.data_bytes),
                human_bytes(s.metadata_bytes),
                human_bytes(s.bytes_held),
                format!("{:.2}x", s.ratio),
                s.held_vs_compress_only
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                thousands(s.store_ns_per_page),
                thousands(s.load_ns_per_page),
            ]
        })
        .collect();
    write_columns(&mut out, width, &cost_header, report, &rows);

    let _ = writeln!(out, "\nstages (ns per input page)");
    for s in &report.strategies {
        let stages: Vec<String> = s
            .stages
            .iter()
            .map(|stage| format!("{} {}", stage.name, thousands(stage.ns_per_page)))
            .collect();
        let _ = writeln!(out, "{:<width$}  {}", s.name, stages.join(" · "));
    }

    let _ = writeln!(
        out,
        "\nheld = data + metadata; ratio = input / held; vs zram = held / compress-only's held\nmodels"
    );
    for s in &report.strategies {
        for (i, line) in wrap(&s.model, MODEL_TEXT_WIDTH).iter().enumerate() {
            let name = if i == 0 { s.name.as_str() } else { "" };
            let _ = writeln!(out, "{name:<width$}  {line}");
        }
    }
    out
}

/// Model descriptions are wrapped to this many columns (beside the name column).
const MODEL_TEXT_WIDTH: usize = 64;

/// Split `text` into lines of at most `width` characters at spaces (a longer word
/// gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// One table: a header line, then a line per strategy, right-aligned columns.
fn write_columns(
    out: &mut String,
    name_width: usize,
    header: &[&str],
    report: &AnalyzeReport,
    rows: &[Vec<String>],
) {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(col, title)| {
            rows.iter()
                .filter_map(|row| row.get(col).map(String::len))
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = write!(out, "{:<name_width$}", "strategy");
    for (title, w) in header.iter().zip(&widths) {
        let _ = write!(out, "  {title:>w$}");
    }
    out.push('\n');
    for (strategy, row) in report.strategies.iter().zip(rows) {
        let _ = write!(out, "{:<name_width$}", strategy.name);
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>w$}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(48 << 20), "48.0 MiB");
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("toolongword x", 4), ["toolongword", "x"]);
    }
}
