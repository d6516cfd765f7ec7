//! `foldswap scan`'s report as a table for a terminal.

use core::fmt::Write as _;

use foldswap_mem::PAGE_SIZE;

use crate::report::{human_bytes, thousands};
use crate::scan::ScanReport;

/// The scan report as a table for a terminal.
pub fn render_scan_table(report: &ScanReport) -> String {
    let mut out = String::new();
    let pids: Vec<String> = report.pids.iter().map(u32::to_string).collect();
    let _ = writeln!(
        out,
        "pid {}: {} anonymous mappings, {} pages mapped ({}); budget {}",
        pids.join(","),
        report.regions,
        thousands(report.mapped_pages),
        human_bytes(report.mapped_pages * PAGE_SIZE as u64),
        report.budget
    );
    let _ = writeln!(
        out,
        "merging is counted, not done: a page is merged after a full byte comparison"
    );
    let _ = writeln!(
        out,
        "\n{:>4}  {:>9}  {:>6}  {:>6}  {:>6}  {:>7}  {:>8}  {:>8}  {:>10}  {:>8}  {:>7}  {:>8}",
        "pass",
        "scanned",
        "cover",
        "merged",
        "shared",
        "sharing",
        "unshared",
        "volatile",
        "saved",
        "ns/page",
        "read ns",
        "strength"
    );
    for p in &report.passes {
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:>5.1}%  {:>6}  {:>6}  {:>7}  {:>8}  {:>8}  {:>10}  {:>8}  {:>7}  {:>8}",
            p.pass,
            thousands(p.scanned),
            p.coverage * 100.0,
            thousands(p.merged),
            thousands(p.pages_shared),
            thousands(p.pages_sharing),
            thousands(p.pages_unshared),
            thousands(p.pages_volatile),
            human_bytes(p.saved_bytes),
            thousands(p.scan_ns_per_page),
            thousands(p.read_ns_per_page),
            p.strength
        );
    }
    if let Some(last) = report.passes.last() {
        let rungs: Vec<String> = last.regions_per_rung.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "\nshared, sharing, unshared, volatile: KSM's pages_* after the pass; saved = sharing x 4 KiB\n\
             ns/page: scan CPU per scanned page, of which read ns reading /proc/PID/mem\n\
             regions per rung after the last pass: {}",
            rungs.join(" / ")
        );
    }
    out
}
