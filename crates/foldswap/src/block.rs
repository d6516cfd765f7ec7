//! Cold blocks: runs of cold pages compressed together as one frame.
//!
//! A compressor that sees one page at a time forgets everything between pages;
//! neighbouring pages of one process share much of their vocabulary. The scanner
//! gathers cold plain pages (up to [`MAX_BLOCK_PAGES`], the `block_pages` tunable)
//! and compresses them as one frame with the cold codec. The frame is kept in the
//! pool as up to [`MAX_BLOCK_CHUNKS`] objects of equal size, at most one page
//! each ("chunks");
//! a [`Block`] record names them. Each page's entry stays its own (its sharers,
//! dedup index key, dependents as a base): its tag says "in a block", and its
//! place fields name the block and the page's index in it.
//!
//! # Rules
//!
//! - A block is formed only if its frame is smaller than the objects its pages
//!   held alone, and only of pages whose entries are still the ones the scanner
//!   read (generation), plain (not a delta, not in a block already).
//! - A page leaving a block (its last reference gone, or moved out by a rewrite)
//!   clears its bit in `live`; the block and its chunks are freed with the last
//!   one. A block at most 3/4 live ([`REWRITE_LIVE_AT_MOST`]) is rewritten by
//!   the scanner, and so is a block with any hole once the ladder has visited
//!   its pages [`REWRITE_HOLES_AFTER_VISITS_PER_PAGE`] times each on average
//!   since it was formed (it has stopped changing): its survivors are gathered
//!   anew with the other cold pages of their window, all in one pass (a block
//!   is a run of one window's offsets), into blocks without holes, and the old
//!   block goes with the last of them. A delta's base that no offset holds any
//!   more is moved out alone by the ladder's visit to one of its deltas.
//! - A load copies the chunks out under the content lock and decodes the frame
//!   outside it, into the worker's scratch; nothing is read in place, so a block's
//!   chunks are freed or moved only under the content lock like any copied object.
//! - A worker's scratch keeps the pages of the last two blocks it decoded
//!   (`DecodedBlocks`: a delta whose base lies in another block does not evict
//!   the block a run of loads reads), each named by the block's `BlockId`: its
//!   slab key and a serial no other block in the process ever had. A load of
//!   another page of such a block (checked under the content lock: the page's
//!   entry names the block, its bit is live, the serial matches) copies the page
//!   from there without reading or decoding the frame.
//!   A block's frame never changes while the block lives (compaction moves its
//!   chunks, bytes unchanged; a rewrite forms a new block), so those pages are
//!   exactly the frame's.
//! - A page in a block may be the base of deltas (a delta's load then decodes the
//!   base's block); dedup against it compares every byte of the decoded page.

use core::sync::atomic::{AtomicU64, Ordering};

use foldswap_pool::{MAX_OBJECT, MAX_OBJECTS_PER_ZSPAGE, Place, TAG_FIRST_HOST};

/// Entry tag of a page held in a cold block (the pool's codecs use tags below
/// `TAG_FIRST_HOST`, a delta `TAG_FIRST_HOST`).
pub const TAG_BLOCK: u8 = TAG_FIRST_HOST + 1;
/// Most pages in one block.
pub const MAX_BLOCK_PAGES: usize = 16;
/// The live share (live pages, of pages) at or under which the scanner
/// rewrites a block. In the kernel guest, rewriting at half live left 15 % of
/// the settled blocks' frames holding pages that had gone (950 of 6,319).
pub const REWRITE_LIVE_AT_MOST: (usize, usize) = (3, 4);
/// Ladder visits per page of a block after which the scanner rewrites it for any
/// hole. A block that loses pages while it is young waits for the live share
/// above; one that has sat through this many visits has settled, and its holes
/// stay holes until rewritten. (At 3/4 alone, the kernel guest's settled blocks
/// held 1,184 pages that had gone among 7,078, 17 % of their frames.) Counted
/// per block, so every survivor of a block is judged alike in the one pass that
/// gathers them all.
pub const REWRITE_HOLES_AFTER_VISITS_PER_PAGE: u16 = 2;
/// Most pool objects one block's frame is split into: eight, frames up to 32 KiB,
/// so that a block of 16 pages at up to 2 KiB a page fits (a run that compresses
/// worse gains little from a block). Four held 16-page blocks to 16 KiB frames
/// and formed half the blocks on the dev corpus (docs/backend.md).
pub const MAX_BLOCK_CHUNKS: usize = 8;
/// Blocks' worth of offsets in one gathering window: the scanner gathers the
/// cold pages of an aligned run of `WINDOW_BLOCKS × block_pages` offsets in
/// offset order, a block of each `block_pages` of them. Wider than one block, so
/// where few offsets of a run hold cold pages (a sparse swap area) the blocks
/// still fill; aligned and in order, so each block is one run of offsets. In the
/// kernel guest (settled bytes per stored page, one run each): windows of one
/// block 733, four 715, eight 755 (not settled after 300 s: each visit walks
/// 128 offsets).
pub const WINDOW_BLOCKS: u64 = 4;
/// The longest frame a block keeps (a run that compresses worse is not a block).
pub const MAX_FRAME: usize = MAX_BLOCK_CHUNKS * MAX_OBJECT;

/// Which block a worker's decoded pages are: the block's slab key and its serial.
/// Serials come from one process-wide counter, so no two blocks of any backend
/// share one, even where a key is reused or a scratch serves two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockId {
    pub(crate) key: u32,
    pub(crate) serial: u64,
}

/// The serial of the next block formed anywhere in the process (or kernel). A
/// 64-bit counter does not wrap: a block formed every nanosecond would take
/// 584 years.
/// (`core`'s atomic, not the `sync` switch's: a unique number, not a protocol a
/// model would explore.)
static NEXT_BLOCK_SERIAL: AtomicU64 = AtomicU64::new(1);

/// One cold block: where its frame lies and which of its pages are live. 56 bytes.
///
/// # Invariants
///
/// Under the content lock, for a block with key `b`:
/// - its first `chunk_count()` chunks are live pool objects, written by the cold
///   codec tagged `codec_tag`, which together hold the frame (`frame_len` bytes),
///   in order: chunk `i` is `chunk_span()` bytes long, the last one the rest;
/// - bit `i` of `live` is set exactly while an entry with tag [`TAG_BLOCK`] names
///   (`b`, `i`); `live != 0` (a block without live pages is freed at once);
/// - the frame decodes to `pages` pages;
/// - `serial` is the block's own: no other block formed in the process had it.
///
/// Only inside `Content::pack_block_records`, which moves records to lower
/// keys, does a record forward to another (`Block::forwarding_to`); none is
/// left when it returns.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    serial: u64,
    chunk_zspages: [u32; MAX_BLOCK_CHUNKS],
    /// A slot fits a byte: no zspage holds more than
    /// [`MAX_OBJECTS_PER_ZSPAGE`] objects (256).
    chunk_slots: [u8; MAX_BLOCK_CHUNKS],
    frame_len: u16,
    live: u16,
    pages: u8,
    codec_tag: u8,
    /// Ladder visits to its pages since it was formed (saturating).
    visits: u16,
}

const _: () = assert!(size_of::<Block>() == 56);
const _: () = assert!(MAX_FRAME <= u16::MAX as usize);
const _: () = assert!(MAX_OBJECTS_PER_ZSPAGE <= u8::MAX as usize + 1);
const _: () = assert!(MAX_BLOCK_PAGES <= u16::BITS as usize);

impl Block {
    /// A block of `pages` pages whose frame is `frame_len` bytes, none live yet and
    /// no chunk recorded, with a serial of its own.
    pub(crate) fn new(pages: usize, frame_len: usize, codec_tag: u8) -> Option<Self> {
        if !(1..=MAX_BLOCK_PAGES).contains(&pages) || !(1..=MAX_FRAME).contains(&frame_len) {
            return None;
        }
        // INVARIANT: the counter only grows (Relaxed is enough: only uniqueness
        // matters, and fetch_add is atomic under any ordering).
        let serial = NEXT_BLOCK_SERIAL.fetch_add(1, Ordering::Relaxed);
        Some(Block {
            serial,
            chunk_zspages: [0; MAX_BLOCK_CHUNKS],
            chunk_slots: [0; MAX_BLOCK_CHUNKS],
            frame_len: frame_len as u16,
            live: 0,
            pages: pages as u8,
            codec_tag,
            visits: 0,
        })
    }

    /// A record standing, for the length of one [`Content`] call that moves
    /// block records, where a block was before it moved to key `to`: it names
    /// no chunk and no page (no real block has 0 pages).
    ///
    /// [`Content`]: crate::content::Content
    pub(crate) fn forwarding_to(to: u32) -> Self {
        let mut chunk_zspages = [0; MAX_BLOCK_CHUNKS];
        chunk_zspages[0] = to;
        Block {
            serial: 0,
            chunk_zspages,
            chunk_slots: [0; MAX_BLOCK_CHUNKS],
            frame_len: 0,
            live: 0,
            pages: 0,
            codec_tag: 0,
            visits: 0,
        }
    }

    /// Where a forwarding record's block moved ([`forwarding_to`]); `None` for a
    /// real block.
    ///
    /// [`forwarding_to`]: Self::forwarding_to
    pub(crate) fn forwarded_to(&self) -> Option<u32> {
        (self.pages == 0).then_some(self.chunk_zspages[0])
    }

    /// Bytes of each chunk but the last (which may be shorter): the frame split
    /// into as few objects as fit, of equal size, so the chunks share zspages of
    /// one class rather than each taking a whole page of the largest class.
    /// (Whole-page chunks and the rest in the last were tried twice: in the
    /// kernel guest the settled pool held 18 % more than its objects, 6.24 MB
    /// for 5.29 MB, where equal chunks held 12 % more, and the hold grew.)
    pub fn chunk_span(&self) -> usize {
        let len = usize::from(self.frame_len);
        len.div_ceil(len.div_ceil(MAX_OBJECT).max(1)).max(1)
    }

    /// Pool objects the frame is split into.
    pub fn chunk_count(&self) -> usize {
        usize::from(self.frame_len).div_ceil(self.chunk_span())
    }

    /// Bytes of chunk `i` (`None` past the last).
    fn chunk_len(&self, i: usize) -> Option<usize> {
        let (span, count) = (self.chunk_span(), self.chunk_count());
        (i < count).then(|| {
            if i + 1 < count {
                span
            } else {
                usize::from(self.frame_len) - span * (count - 1)
            }
        })
    }

    /// Where chunk `i` lies in the pool.
    pub(crate) fn chunk(&self, i: usize) -> Option<Place> {
        let len = self.chunk_len(i)?;
        Some(Place::from_parts(
            *self.chunk_zspages.get(i)?,
            u16::from(*self.chunk_slots.get(i)?),
            len as u16,
        ))
    }

    /// Record where chunk `i` lies (its length is the block's to know).
    pub(crate) fn set_chunk(&mut self, i: usize, place: Place) {
        let (zspage, slot, _) = place.to_parts();
        if let (Some(z), Some(s)) = (self.chunk_zspages.get_mut(i), self.chunk_slots.get_mut(i)) {
            *z = zspage;
            // The pool issues slots below MAX_OBJECTS_PER_ZSPAGE (asserted to
            // fit a byte above), so nothing is cut.
            *s = slot as u8;
        }
    }

    /// Show each chunk's place to `visit`, and keep where it moved.
    pub(crate) fn for_each_chunk(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for i in 0..self.chunk_count() {
            if let Some(mut place) = self.chunk(i) {
                visit(&mut place);
                self.set_chunk(i, place);
            }
        }
    }

    /// Bytes of the frame.
    pub fn frame_len(&self) -> usize {
        usize::from(self.frame_len)
    }

    /// Pages the frame decodes to.
    pub fn pages(&self) -> usize {
        usize::from(self.pages)
    }

    /// Pages still live (held by an entry).
    pub fn live(&self) -> usize {
        self.live.count_ones() as usize
    }

    /// The cold codec's tag of the frame.
    pub fn codec_tag(&self) -> u8 {
        self.codec_tag
    }

    /// The block's identity when its slab key is `key`.
    pub(crate) fn id(&self, key: u32) -> BlockId {
        BlockId {
            key,
            serial: self.serial,
        }
    }

    /// Whether at most [`REWRITE_LIVE_AT_MOST`] of its pages are live (a
    /// quarter of its frame or more holds pages that went).
    pub fn is_sparse(&self) -> bool {
        let (live, of) = REWRITE_LIVE_AT_MOST;
        of * self.live() <= live * self.pages()
    }

    /// Whether the scanner should rewrite the block: it is sparse, or it has a
    /// hole and has settled (see [`REWRITE_HOLES_AFTER_VISITS_PER_PAGE`]).
    pub fn should_rewrite(&self) -> bool {
        let settled = u32::from(self.visits)
            >= u32::from(REWRITE_HOLES_AFTER_VISITS_PER_PAGE) * u32::from(self.pages);
        self.is_sparse() || (settled && self.live() < self.pages())
    }

    /// Count a ladder visit to one of its pages.
    pub(crate) fn note_visit(&mut self) {
        self.visits = self.visits.saturating_add(1);
    }

    /// The lowest live page's index (`None` only while a block is being formed).
    pub(crate) fn lowest_live(&self) -> Option<u8> {
        (self.live != 0).then(|| self.live.trailing_zeros() as u8)
    }

    pub(crate) fn is_live(&self, index: u8) -> bool {
        u32::from(index) < u32::from(self.pages) && self.live & (1 << index) != 0
    }

    pub(crate) fn set_live(&mut self, index: u8) {
        if u32::from(index) < u32::from(self.pages) {
            self.live |= 1 << index;
        }
    }

    /// Clear page `index`'s bit; whether the block is now empty.
    pub(crate) fn leave(&mut self, index: u8) -> bool {
        if u32::from(index) < u32::from(self.pages) {
            self.live &= !(1 << index);
        }
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_counts_its_chunks_and_live_pages() {
        assert!(Block::new(0, 10, 3).is_none());
        assert!(Block::new(MAX_BLOCK_PAGES + 1, 10, 3).is_none());
        assert!(Block::new(4, MAX_FRAME + 1, 3).is_none());
        for len in [
            1,
            5,
            100,
            MAX_OBJECT,
            MAX_OBJECT + 1,
            3 * MAX_OBJECT - 1,
            MAX_FRAME,
        ] {
            let block = Block::new(4, len, 3).unwrap();
            let (span, count) = (block.chunk_span(), block.chunk_count());
            assert!(span <= MAX_OBJECT && count <= MAX_BLOCK_CHUNKS, "{len}");
            assert_eq!(count, len.div_ceil(MAX_OBJECT), "{len}");
            assert!(span * count >= len && span * (count - 1) < len, "{len}");
        }
        let mut block = Block::new(4, MAX_OBJECT + 1, 3).unwrap();
        assert_eq!(
            (block.chunk_count(), block.chunk_span()),
            (2, MAX_OBJECT / 2 + 1)
        );
        assert!(block.chunk(1).is_some() && block.chunk(2).is_none());
        let lens = [0, 1].map(|i| block.chunk(i).unwrap().len());
        assert_eq!(lens, [MAX_OBJECT / 2 + 1, MAX_OBJECT / 2]);
        for i in 0..4 {
            block.set_live(i);
        }
        block.set_live(9);
        assert_eq!(block.live(), 4);
        assert!(!block.is_sparse());
        assert!(!block.leave(0));
        // Three of four live: a quarter of the frame is a hole.
        assert!(block.is_sparse() && !block.is_live(0) && block.is_live(1));
        assert!(!block.leave(1));
        assert!(block.is_sparse() && !block.is_live(1) && block.is_live(2));
        assert!(!block.leave(2));
        assert!(block.leave(3));
    }

    /// A block with one hole is rewritten only once it has settled: after two
    /// ladder visits per page.
    #[test]
    fn a_settled_block_is_rewritten_for_one_hole() {
        let mut block = Block::new(8, 5000, 3).unwrap();
        for i in 0..8 {
            block.set_live(i);
        }
        for _ in 0..16 {
            assert!(!block.should_rewrite(), "no hole");
            block.note_visit();
        }
        assert!(!block.should_rewrite(), "no hole, settled");
        let mut young = Block::new(8, 5000, 3).unwrap();
        for i in 0..8 {
            young.set_live(i);
        }
        young.leave(3);
        for _ in 0..15 {
            assert!(!young.should_rewrite(), "a young block with one hole");
            young.note_visit();
        }
        young.note_visit();
        assert!(young.should_rewrite(), "settled with one hole");
        block.leave(5);
        assert!(block.should_rewrite());
    }

    #[test]
    fn every_block_has_a_serial_of_its_own() {
        let [a, b] = [0, 1].map(|_| Block::new(4, 100, 3).unwrap());
        assert_ne!(a.id(7), b.id(7));
        assert_ne!(a.id(7), a.id(8));
        assert_eq!(a.id(7), a.id(7));
    }
}
