//! `compress-only`: what zswap and zram do with a page.
//!
//! Model (a faithful accounting of their data path, not of every kernel detail):
//!
//! * A page of one repeated 8-byte word (zero or not) costs no data: zram keeps the
//!   word in its table entry, zswap in its entry.
//! * Every other page is lz4 block-compressed (lz4_flex, the same codec family as
//!   the kernel's lz4). The object goes into a zsmalloc-like allocator whose size
//!   classes are every [`SIZE_CLASS_STEP`] bytes from [`MIN_OBJECT`] up; so the
//!   object costs its length rounded up to 16, at least 32.
//! * An object longer than [`HUGE_THRESHOLD`] (3/4 of a page) is not worth
//!   compressing: the page is stored raw, costing a whole page (zram's "huge" pages).
//! * Metadata: [`SLOT_BYTES`] per page for the table entry (zram's `handle` +
//!   `flags`), plus [`HANDLE_BYTES`] per zsmalloc object for its handle. zspage
//!   headers and partly filled zspages are not counted (zram's `mem_used` also
//!   includes them: on the dev corpus it was 4 % above the compressed size).

use foldswap_mem::PAGE_SIZE;
use lz4_flex::block::{
    CompressTable, compress_into_with_table, decompress_into, get_maximum_output_size,
};

use super::{Counts, StageClock, Strategy, StrategyError, Summary, fill_page, fill_word};

/// The strategy's name; other strategies' bytes are also shown relative to it.
pub const COMPRESS_ONLY: &str = "compress-only";

/// zsmalloc's size classes are this many bytes apart.
pub const SIZE_CLASS_STEP: u64 = 16;
/// zsmalloc's smallest object.
pub const MIN_OBJECT: u64 = 32;
/// Compressed objects longer than this are stored as a raw page.
pub const HUGE_THRESHOLD: usize = PAGE_SIZE * 3 / 4;
/// Bytes of table entry per stored page (zram: `handle` + `flags`).
pub const SLOT_BYTES: u64 = 16;
/// Bytes per allocated object for its zsmalloc handle.
pub const HANDLE_BYTES: u64 = 8;

const STAGES: &[&str] = &["same_filled_check", "compress", "decompress"];
const STAGE_FILL: usize = 0;
const STAGE_COMPRESS: usize = 1;
const STAGE_DECOMPRESS: usize = 2;

/// Where one page's data is.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Empty,
    Filled(u64),
    Compressed { start: usize, len: usize },
    Raw { start: usize },
}

/// The zswap/zram model; see the module documentation.
pub struct CompressOnly {
    slots: Vec<Slot>,
    arena: Vec<u8>,
    table: CompressTable,
    scratch: Vec<u8>,
    counts: Counts,
    data_bytes: u64,
    clock: StageClock,
}

impl CompressOnly {
    /// An empty store.
    pub fn new() -> Self {
        CompressOnly {
            slots: Vec::new(),
            arena: Vec::new(),
            table: CompressTable::default(),
            scratch: vec![0; get_maximum_output_size(PAGE_SIZE)],
            counts: Counts::default(),
            data_bytes: 0,
            clock: StageClock::new(STAGES),
        }
    }
}

impl Default for CompressOnly {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes a zsmalloc-like allocator spends on an object of `len` bytes.
///
/// ```
/// use foldswap_cli::strategy::size_class_bytes;
/// assert_eq!(size_class_bytes(1), 32);
/// assert_eq!(size_class_bytes(33), 48);
/// assert_eq!(size_class_bytes(48), 48);
/// ```
pub fn size_class_bytes(len: u64) -> u64 {
    len.div_ceil(SIZE_CLASS_STEP)
        .saturating_mul(SIZE_CLASS_STEP)
        .max(MIN_OBJECT)
}

impl Strategy for CompressOnly {
    fn name(&self) -> &'static str {
        COMPRESS_ONLY
    }

    fn model(&self) -> &'static str {
        "zswap/zram: same-filled pages free; others lz4 in 16-byte size classes (min 32), \
         over 3/4 page stored raw; 16 B table entry per page + 8 B handle per object"
    }

    fn reserve(&mut self, pages: usize) {
        self.slots.reserve(pages);
    }

    fn store(&mut self, index: u32, page: &[u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let slot = if let Some(word) = self.clock.time(STAGE_FILL, || fill_word(page)) {
            if word == 0 {
                self.counts.zero += 1;
            } else {
                self.counts.same_filled += 1;
            }
            Slot::Filled(word)
        } else {
            let (table, scratch) = (&mut self.table, &mut self.scratch);
            let len = self
                .clock
                .time(STAGE_COMPRESS, || {
                    compress_into_with_table(page, scratch, table)
                })
                .map_err(|e| StrategyError::Refused {
                    index,
                    reason: e.to_string(),
                })?;
            let start = self.arena.len();
            match self.scratch.get(..len) {
                Some(compressed) if len <= HUGE_THRESHOLD => {
                    self.arena.extend_from_slice(compressed);
                    self.counts.compressed += 1;
                    self.data_bytes += size_class_bytes(len as u64);
                    Slot::Compressed { start, len }
                }
                _ => {
                    self.arena.extend_from_slice(page);
                    self.counts.raw += 1;
                    self.data_bytes += PAGE_SIZE as u64;
                    Slot::Raw { start }
                }
            }
        };
        let index = index as usize;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, Slot::Empty);
        }
        self.slots[index] = slot;
        Ok(())
    }

    fn load(&mut self, index: u32, out: &mut [u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let corrupt = |reason: String| StrategyError::Corrupt { index, reason };
        match self.slots.get(index as usize) {
            None | Some(Slot::Empty) => Err(StrategyError::UnknownPage(index)),
            Some(&Slot::Filled(word)) => {
                fill_page(out, word);
                Ok(())
            }
            Some(&Slot::Raw { start }) => {
                let data = self.arena.get(start..start + PAGE_SIZE);
                out.copy_from_slice(data.ok_or_else(|| corrupt("raw page out of range".into()))?);
                Ok(())
            }
            Some(&Slot::Compressed { start, len }) => {
                let data = self
                    .arena
                    .get(start..start + len)
                    .ok_or_else(|| corrupt("object out of range".into()))?;
                let written = self
                    .clock
                    .time(STAGE_DECOMPRESS, || decompress_into(data, out))
                    .map_err(|e| corrupt(e.to_string()))?;
                if written == PAGE_SIZE {
                    Ok(())
                } else {
                    Err(corrupt(format!("decompressed to {written} bytes")))
                }
            }
        }
    }

    fn summary(&self) -> Summary {
        let pages = self.counts.total();
        let objects = self.counts.compressed + self.counts.raw;
        Summary::new(
            self.counts,
            self.data_bytes,
            &[
                ("offset_slots", pages * SLOT_BYTES),
                ("handles", objects * HANDLE_BYTES),
            ],
            self.clock.stages(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{mixed_pages, round_trip};
    use super::*;

    #[test]
    fn fills_cost_nothing_text_compresses_noise_stays_raw() {
        let mut strategy = CompressOnly::new();
        let summary = round_trip(&mut strategy, &mixed_pages());
        let counts = summary.counts;
        assert_eq!((counts.zero, counts.same_filled), (2, 1));
        assert_eq!((counts.compressed, counts.raw), (2, 2));
        assert_eq!((counts.identical, counts.patched), (0, 0));
        let text_bytes = size_class_bytes(
            compress_into_with_table(
                &mixed_pages()[1],
                &mut vec![0; 5000],
                &mut CompressTable::default(),
            )
            .unwrap() as u64,
        );
        assert!(text_bytes < 200);
        assert_eq!(summary.data_bytes, 2 * text_bytes + 2 * PAGE_SIZE as u64);
        assert_eq!(summary.metadata_bytes, 7 * SLOT_BYTES + 4 * HANDLE_BYTES);
    }
}
