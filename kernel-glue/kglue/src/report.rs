//! The statistics the guest reads, in the vocabulary of zswap and KSM.
//!
//! A backend fills a [`Report`]; [`Report::render`] writes it as `name value`
//! lines (the module shows them in `/sys/module/foldswap/parameters/stats`).

use core::fmt::{self, Write};

/// One reading of a backend's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Pages held now.
    pub stored_pages: u64,
    /// Of those: same-filled (one word repeated; zero pages never get here in
    /// 6.12, its zeromap keeps them).
    pub same_filled_pages: u64,
    /// Of those: references to an identical page already stored.
    pub duplicate_pages: u64,
    /// Distinct contents kept as a delta against a similar page.
    pub patched_pages: u64,
    /// Distinct contents compressed.
    pub compressed_pages: u64,
    /// Distinct contents kept in cold blocks (compressed with their neighbours).
    pub blocked_pages: u64,
    /// Of the distinct contents: those no stored page holds any more, kept as the
    /// base of patched pages until the last of them goes (same-filled +
    /// duplicate + patched + compressed + blocked = stored + base-only).
    pub base_only_pages: u64,
    /// Of those: kept raw.
    pub raw_pages: u64,
    /// Successful stores since load.
    pub stores: u64,
    /// Stores that found an identical page (dedup hits) since load.
    pub dedup_hits: u64,
    /// Successful loads since load.
    pub loads: u64,
    /// Loads of an offset the backend does not hold.
    pub load_misses: u64,
    /// Pages dropped by invalidate_page.
    pub invalidates: u64,
    /// Swap areas the backend serves now.
    pub areas: u64,
    /// Stores rejected: the pool limit is reached.
    pub reject_pool_full: u64,
    /// Stores rejected: the page allocator had no page (GFP_NOWAIT).
    pub reject_alloc_fail: u64,
    /// Stores rejected: the page compresses worse than the threshold.
    pub reject_compress_poor: u64,
    /// Stores rejected for any other reason (disabled, unknown area, offset).
    pub reject_other: u64,
    /// Stores rejected: the page's memory cgroup (or an ancestor) is at its
    /// `memory.zswap.max`.
    pub reject_memcg_limit: u64,
    /// Stores rejected: the page's domain (memory cgroup id) is still charged
    /// to another cgroup's objcg (the cgroup went offline, or its id was
    /// reused while the old bytes were held), or no memory to record it.
    pub reject_domain_busy: u64,
    /// Bytes of compressed data held.
    pub compressed_bytes: u64,
    /// Bytes the pool holds from the page allocator (data + its metadata).
    pub pool_bytes: u64,
    /// Bytes of the backend's own tables (everything held but the pool):
    /// the six below.
    pub index_bytes: u64,
    /// Of those: the per-area offset tables (offset -> stored page).
    pub offset_table_bytes: u64,
    /// Of those: the content entries (one per distinct content).
    pub entry_bytes: u64,
    /// Of those: the dedup index.
    pub dedup_index_bytes: u64,
    /// Of those: the similarity index (candidates for patching).
    pub similarity_index_bytes: u64,
    /// Of those: the scanner's ladder.
    pub ladder_bytes: u64,
    /// Of those: the cold block records.
    pub block_bytes: u64,
    /// The pool limit in bytes (`u64::MAX` when unlimited).
    pub limit_bytes: u64,
    /// Scanner rounds run.
    pub scanner_rounds: u64,
    /// Scanner wake-ups from the store path.
    pub scanner_wakeups: u64,
    /// Pages the scanner examined.
    pub scanned_pages: u64,
    /// Pages the scanner recompressed with a stronger codec.
    pub recompressed_pages: u64,
    /// Cold blocks the scanner formed since load.
    pub blocks_formed: u64,
    /// Pages the scanner moved out of cold blocks with holes, since load.
    pub block_rewrites: u64,
    /// Lone entries the scanner moved to lower pages of the entries' slab (so
    /// it packs down after a storm), since load.
    pub entries_moved: u64,
    /// Loads that decoded a cold block (the page's, or a delta's base's), since
    /// load.
    pub block_loads: u64,
    /// Whether writeback is on (1) or off (0).
    pub writeback: u64,
    /// Pages written back to the swap device since load (zswap's name).
    pub written_back_pages: u64,
    /// Writeback victims skipped: their slot was being swapped in.
    pub writeback_busy: u64,
    /// Writeback victims skipped: stored over or freed before the claim.
    pub writeback_raced: u64,
    /// Writeback victims left in the pool: their bytes could not be decoded.
    pub writeback_errors: u64,
    /// Cold pages the shrinker asked to have written back, since load.
    pub writeback_requested_pages: u64,
    /// Bytes charged to memory cgroups now (the host's figure: the module's
    /// domain table).
    pub charged_bytes: u64,
}

impl Report {
    /// Everything the backend holds from the page allocator.
    pub fn total_bytes(&self) -> u64 {
        self.pool_bytes.saturating_add(self.index_bytes)
    }

    /// Write one `name value` line per figure.
    ///
    /// ```
    /// use foldswap_kglue::Report;
    /// let mut out = foldswap_kglue::TextBuf::<1024>::new();
    /// let report = Report { stores: 3, ..Report::default() };
    /// report.render(&mut out).unwrap();
    /// assert!(out.as_str().contains("stores 3\n"));
    /// ```
    pub fn render(&self, w: &mut impl Write) -> fmt::Result {
        let lines: [(&str, u64); 46] = [
            ("stored_pages", self.stored_pages),
            ("same_filled_pages", self.same_filled_pages),
            ("duplicate_pages", self.duplicate_pages),
            ("patched_pages", self.patched_pages),
            ("compressed_pages", self.compressed_pages),
            ("raw_pages", self.raw_pages),
            ("stores", self.stores),
            ("dedup_hits", self.dedup_hits),
            ("loads", self.loads),
            ("load_misses", self.load_misses),
            ("invalidates", self.invalidates),
            ("areas", self.areas),
            ("reject_pool_full", self.reject_pool_full),
            ("reject_alloc_fail", self.reject_alloc_fail),
            ("reject_compress_poor", self.reject_compress_poor),
            ("reject_other", self.reject_other),
            ("reject_memcg_limit", self.reject_memcg_limit),
            ("reject_domain_busy", self.reject_domain_busy),
            ("compressed_bytes", self.compressed_bytes),
            ("pool_bytes", self.pool_bytes),
            ("index_bytes", self.index_bytes),
            ("offset_table_bytes", self.offset_table_bytes),
            ("entry_bytes", self.entry_bytes),
            ("dedup_index_bytes", self.dedup_index_bytes),
            ("similarity_index_bytes", self.similarity_index_bytes),
            ("ladder_bytes", self.ladder_bytes),
            ("total_bytes", self.total_bytes()),
            ("limit_bytes", self.limit_bytes),
            ("scanner_rounds", self.scanner_rounds),
            ("scanner_wakeups", self.scanner_wakeups),
            ("scanned_pages", self.scanned_pages),
            ("recompressed_pages", self.recompressed_pages),
            ("base_only_pages", self.base_only_pages),
            ("blocked_pages", self.blocked_pages),
            ("blocks_formed", self.blocks_formed),
            ("block_rewrites", self.block_rewrites),
            ("entries_moved", self.entries_moved),
            ("block_bytes", self.block_bytes),
            ("block_loads", self.block_loads),
            ("writeback", self.writeback),
            ("written_back_pages", self.written_back_pages),
            ("writeback_busy", self.writeback_busy),
            ("writeback_raced", self.writeback_raced),
            ("writeback_errors", self.writeback_errors),
            ("writeback_requested_pages", self.writeback_requested_pages),
            ("charged_bytes", self.charged_bytes),
        ];
        render_lines(w, &lines)
    }
}

/// The stored contents counted by encoding, walking every entry (the module's
/// `census` parameter: for tests and reports, never a hot path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CensusReport {
    /// Distinct contents kept as lz4.
    pub lz4: u64,
    /// Distinct contents recompressed alone with the cold codec.
    pub cold: u64,
    /// Distinct contents kept raw (compressed too poorly).
    pub raw: u64,
    /// Stored pages whose content is kept raw: the pages a store that refuses
    /// incompressible pages, as zswap does, would not hold.
    pub raw_sharers: u64,
    /// Distinct contents kept as deltas.
    pub delta: u64,
    /// Distinct contents in cold blocks.
    pub blocked: u64,
    /// Cold blocks.
    pub blocks: u64,
    /// Pages the cold blocks' frames hold, live or not (`blocked` of them are
    /// live).
    pub block_frame_pages: u64,
    /// Bytes of the cold blocks' frames, their dead pages' share included.
    pub block_frame_bytes: u64,
    /// Contents no stored page holds, kept as bases of deltas.
    pub bases_only: u64,
}

impl CensusReport {
    /// Write one `name value` line per figure.
    pub fn render(&self, w: &mut impl Write) -> fmt::Result {
        let lines: [(&str, u64); 10] = [
            ("lz4", self.lz4),
            ("cold", self.cold),
            ("raw", self.raw),
            ("raw_sharers", self.raw_sharers),
            ("delta", self.delta),
            ("blocked", self.blocked),
            ("blocks", self.blocks),
            ("block_frame_pages", self.block_frame_pages),
            ("block_frame_bytes", self.block_frame_bytes),
            ("bases_only", self.bases_only),
        ];
        render_lines(w, &lines)
    }
}

/// Write one `name value` line per pair.
pub fn render_lines(w: &mut impl Write, lines: &[(&str, u64)]) -> fmt::Result {
    for (name, value) in lines {
        writeln!(w, "{name} {value}")?;
    }
    Ok(())
}

/// A fixed-size text buffer implementing [`Write`]; writing past its end is an
/// error, never a panic.
pub struct TextBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> TextBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        TextBuf {
            bytes: [0; N],
            len: 0,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl<const N: usize> Default for TextBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for TextBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A [`Write`] into a caller's byte slice (the kernel's sysfs page).
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    /// Write into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, len: 0 }
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fits_a_page_and_overflow_is_an_error() {
        let report = Report {
            stored_pages: u64::MAX,
            limit_bytes: u64::MAX,
            ..Report::default()
        };
        let mut page = [0u8; 4096];
        let mut w = SliceWriter::new(&mut page);
        report.render(&mut w).unwrap();
        assert!(w.len() < 1024);
        let mut small = [0u8; 10];
        let mut w = SliceWriter::new(&mut small);
        assert!(report.render(&mut w).is_err());
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn the_census_renders_a_line_per_figure() {
        let census = CensusReport {
            raw: 16,
            raw_sharers: 4_112,
            block_frame_pages: 12,
            block_frame_bytes: 9_000,
            ..CensusReport::default()
        };
        let mut text = TextBuf::<512>::new();
        census.render(&mut text).unwrap();
        assert!(text.as_str().contains("raw 16\nraw_sharers 4112\n"));
        assert!(
            text.as_str()
                .contains("block_frame_pages 12\nblock_frame_bytes 9000\n")
        );
        assert_eq!(text.as_str().lines().count(), 10);
    }
}
