//! Decoding stored contents: the pipeline from an entry's pool object (and its
//! base's, for a delta) to page bytes.
//!
//! Under the content lock only the encoded bytes are copied out ([`Snapshot`]) or,
//! for a plain object lying in one pool page, located (`plain_in_place`); the
//! decoding itself ([`decode_snapshot`], `decode_plain`) runs after the lock on
//! the caller's scratch. The dedup check (`same_as_stored`) compares every byte,
//! against an lz4 stream without decoding it.

use core::ptr::addr_of_mut;

use foldswap_mem::{Error, PAGE_SIZE, PageProvider, Slab, SlabKey};
use foldswap_pool::{
    CodecKind, ColdCodec, DecompressScratch, ObjectInPlace, ObjectStore, TAG_DEFLATE, TAG_LZ4,
    TAG_RAW, TAG_ZSTD, decompress, lz4_matches,
};

use crate::block::{Block, BlockId, MAX_BLOCK_PAGES, TAG_BLOCK};
use crate::content::{Entry, TAG_DELTA};
use crate::scratch::DecodeScratch;

/// What is stored, as the content lock's holder sees it: entries, cold blocks and
/// the pool.
pub(crate) struct Stored<'a, P: PageProvider + Clone> {
    pub(crate) entries: &'a Slab<Entry, P>,
    pub(crate) blocks: &'a Slab<Block, P>,
    pub(crate) pool: &'a ObjectStore<P>,
}

impl<P: PageProvider + Clone> Clone for Stored<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: PageProvider + Clone> Copy for Stored<'_, P> {}

/// A copy of an entry's encoded bytes, taken under the lock and decoded outside it.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    tag: u8,
    len: usize,
    base_tag: u8,
    base_len: usize,
    /// The page's place in the block frame copied out, for a page in a cold block
    /// (`tag`) or a delta whose base is one (`base_tag`).
    block: BlockPlace,
}

/// Where a page lies in a block frame copied into the scratch, or in the block's
/// pages the scratch holds decoded already.
#[derive(Debug, Default, Clone, Copy)]
struct BlockPlace {
    /// The block (`None`: the snapshot reads no block).
    id: Option<BlockId>,
    /// The scratch holds the block's pages decoded: the frame was not copied.
    decoded: bool,
    codec_tag: u8,
    index: u8,
    pages: u8,
}

impl Snapshot {
    /// Bytes of the entry's own object.
    pub fn encoded_len(&self) -> usize {
        self.len
    }

    /// The entry's pool tag.
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// Whether decoding it decodes a cold block's frame (the page's own, or a
    /// delta's base's): not when the scratch holds that block decoded already.
    pub fn decodes_block(&self) -> bool {
        (self.tag == TAG_BLOCK || self.base_tag == TAG_BLOCK) && !self.block.decoded
    }
}

/// A plain entry's pool object where it lies in one pool page, and its tag.
#[derive(Debug, Clone, Copy)]
pub struct PlainInPlace {
    object: ObjectInPlace,
    tag: u8,
}

impl PlainInPlace {
    /// The entry's tag: lz4 or raw.
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// The object's bytes.
    ///
    /// # Safety
    ///
    /// As for [`ObjectInPlace::bytes`]: the object stays live and in place while
    /// the slice is used.
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: the caller's contract is the one `ObjectInPlace::bytes` needs.
        unsafe { self.object.bytes() }
    }
}

/// Where `entry`'s bytes lie in the pool, if it is plain (lz4 or raw) and its
/// object lies in one pool page.
pub(crate) fn plain_in_place<P: PageProvider + Clone>(
    pool: &ObjectStore<P>,
    entry: &Entry,
) -> Result<Option<PlainInPlace>, Error> {
    match (entry.tag(), entry.place()) {
        (tag @ (TAG_LZ4 | TAG_RAW), Some(place)) => Ok(pool
            .object_in_place(place)?
            .map(|object| PlainInPlace { object, tag })),
        _ => Ok(None),
    }
}

/// Whether plain `bytes` (tagged `tag`: lz4 or raw) decode to exactly `page`;
/// every byte is compared.
pub(crate) fn plain_matches(tag: u8, bytes: &[u8], page: &[u8; PAGE_SIZE]) -> Result<bool, Error> {
    match tag {
        TAG_LZ4 => lz4_matches(bytes, page),
        TAG_RAW => Ok(bytes == page),
        _ => Err(Error::Corrupt),
    }
}

/// Whether entry `key` holds exactly `page`: every byte is compared. An lz4 object
/// is compared against its stream as it is walked ([`lz4_matches`]: no decode, no
/// copy when the object lies in one pool page), a raw one directly; deflate and
/// delta entries are decoded into `scratch.page` first.
pub(crate) fn same_as_stored<P: PageProvider + Clone, C: ColdCodec>(
    stored: Stored<'_, P>,
    key: u32,
    page: &[u8; PAGE_SIZE],
    scratch: &mut DecodeScratch<C>,
) -> Result<bool, Error> {
    let entry = stored
        .entries
        .get(SlabKey(key))
        .ok_or(Error::InvalidHandle)?;
    if let (Some(place), tag @ (TAG_LZ4 | TAG_RAW)) = (entry.place(), entry.tag()) {
        let bytes = stored.pool.view_object(place, &mut scratch.object)?;
        return plain_matches(tag, bytes, page);
    }
    decode_into(stored, key, scratch)?;
    Ok(scratch.page.as_bytes() == page)
}

/// Copy block `key`'s frame into `frame`, unless the scratch holds its pages
/// decoded already (`decoded`): the frame's length, and where page `index` lies.
fn read_block<P: PageProvider + Clone>(
    stored: Stored<'_, P>,
    key: u32,
    index: u8,
    frame: &mut [u8],
    decoded: &DecodedBlocks,
) -> Result<(usize, BlockPlace), Error> {
    let block = stored.blocks.get(SlabKey(key)).ok_or(Error::Corrupt)?;
    if !block.is_live(index) {
        return Err(Error::Corrupt);
    }
    let len = block.frame_len();
    let id = block.id(key);
    let place = BlockPlace {
        id: Some(id),
        decoded: decoded.holds(id),
        codec_tag: block.codec_tag(),
        index,
        pages: block.pages() as u8,
    };
    if place.decoded {
        return Ok((len, place));
    }
    let frame = frame.get_mut(..len).ok_or(Error::Corrupt)?;
    for (i, part) in frame.chunks_mut(block.chunk_span()).enumerate() {
        let chunk = block.chunk(i).ok_or(Error::Corrupt)?;
        if chunk.len() != part.len() || stored.pool.read_object(chunk, part)? != part.len() {
            return Err(Error::Corrupt);
        }
    }
    Ok((len, place))
}

/// Copy `entry`'s encoded bytes: its pool object into `object`, or for a page in
/// a cold block the block's frame into `frame` (its place into `block`; no copy
/// if the scratch holds that block `decoded`). Their length and tag
/// ([`TAG_BLOCK`] for a block's frame).
fn copy_encoded<P: PageProvider + Clone>(
    stored: Stored<'_, P>,
    entry: &Entry,
    object: &mut [u8],
    frame: &mut [u8],
    block: &mut BlockPlace,
    decoded: &DecodedBlocks,
) -> Result<(usize, u8), Error> {
    match (entry.place(), entry.block()) {
        (Some(place), _) => Ok((stored.pool.read_object(place, object)?, entry.tag())),
        (None, Some((key, index))) => {
            let (len, place) = read_block(stored, key, index, frame, decoded)?;
            *block = place;
            Ok((len, TAG_BLOCK))
        }
        (None, None) => Err(Error::Corrupt),
    }
}

/// Copy entry `key`'s encoded bytes (and its base's, for a delta) into `scratch`.
pub(crate) fn snapshot<P: PageProvider + Clone, C: ColdCodec>(
    stored: Stored<'_, P>,
    key: u32,
    scratch: &mut DecodeScratch<C>,
) -> Result<Snapshot, Error> {
    let entries = stored.entries;
    let entry = entries.get(SlabKey(key)).ok_or(Error::InvalidHandle)?;
    let mut block = BlockPlace::default();
    let (frame, decoded) = (&mut scratch.block_frame, &scratch.decoded_blocks);
    let object = &mut scratch.object;
    let (len, tag) = copy_encoded(stored, entry, object, frame, &mut block, decoded)?;
    let (mut base_tag, mut base_len) = (TAG_RAW, 0);
    if tag == TAG_DELTA {
        let base_key = entry.base().ok_or(Error::Corrupt)?;
        let base = entries.get(SlabKey(base_key)).ok_or(Error::Corrupt)?;
        let object = &mut scratch.base_object;
        (base_len, base_tag) = copy_encoded(stored, base, object, frame, &mut block, decoded)?;
    }
    Ok(Snapshot {
        tag,
        len,
        base_tag,
        base_len,
        block,
    })
}

/// Decode `key`'s content into `scratch.page`.
pub(crate) fn decode_into<P: PageProvider + Clone, C: ColdCodec>(
    stored: Stored<'_, P>,
    key: u32,
    scratch: &mut DecodeScratch<C>,
) -> Result<(), Error> {
    let snapshot = snapshot(stored, key, scratch)?;
    decode_snapshot(&snapshot, scratch, None)
}

/// Decode a snapshot's bytes (in `scratch`) into `out`, or into `scratch.page` when
/// `out` is `None`.
pub fn decode_snapshot<C: ColdCodec>(
    snapshot: &Snapshot,
    scratch: &mut DecodeScratch<C>,
    out: Option<&mut [u8; PAGE_SIZE]>,
) -> Result<(), Error> {
    let DecodeScratch {
        object,
        base_object,
        page,
        base_page,
        decompress,
        cold,
        block_frame,
        decoded_blocks,
    } = scratch;
    let out = match out {
        Some(out) => out,
        None => page.as_bytes_mut(),
    };
    let mut block_page = |len: usize, out: &mut [u8; PAGE_SIZE]| {
        let place = snapshot.block;
        if place.decoded {
            return decoded_blocks.copy_page(place, out);
        }
        let frame = block_frame.get(..len).ok_or(Error::Corrupt)?;
        decoded_blocks.decode_then_copy(frame, place, cold, out)
    };
    if snapshot.tag == TAG_BLOCK {
        return block_page(snapshot.len, out);
    }
    let bytes = object.get(..snapshot.len).ok_or(Error::Corrupt)?;
    if snapshot.tag == TAG_DELTA {
        let base_page = base_page.as_bytes_mut();
        if snapshot.base_tag == TAG_BLOCK {
            block_page(snapshot.base_len, base_page)?;
        } else {
            let base_bytes = base_object.get(..snapshot.base_len).ok_or(Error::Corrupt)?;
            decode_plain(snapshot.base_tag, base_bytes, base_page, decompress, cold)?;
        }
        return foldswap_delta::decode(base_page, bytes, out);
    }
    decode_plain(snapshot.tag, bytes, out, decompress, cold)
}

/// How many decoded cold blocks a worker keeps.
pub(crate) const DECODED_BLOCK_SLOTS: usize = 2;

/// The cold blocks a worker holds decoded, so that loading a block's pages one
/// after another decodes its frame once. Two slots, the older one refilled: a
/// delta whose base lies in another block decodes that block into the other slot
/// instead of evicting the block a run of loads is reading (with one slot, every
/// such delta cost the run a second decode of its block).
///
/// # Invariants
///
/// `ids[i] == Some(id)` only while `pages[i]` holds exactly the pages block
/// `id`'s frame decodes to; `last_used < DECODED_BLOCK_SLOTS`.
pub(crate) struct DecodedBlocks {
    pages: [[u8; MAX_BLOCK_PAGES * PAGE_SIZE]; DECODED_BLOCK_SLOTS],
    ids: [Option<BlockId>; DECODED_BLOCK_SLOTS],
    /// The slot read last; a decode goes into another.
    last_used: usize,
}

impl DecodedBlocks {
    /// Build it in place, holding no block.
    ///
    /// # Safety
    ///
    /// `this` is valid for writes of a `DecodedBlocks` and aligned for it.
    pub(crate) unsafe fn init_at(this: *mut Self) {
        // SAFETY: the caller's promise; the byte arrays are valid zeroed, and the
        // ids and `last_used` are then written whole (INVARIANT: no slot names a
        // block, and slot 0 is in range).
        unsafe {
            addr_of_mut!((*this).pages).write_bytes(0, 1);
            addr_of_mut!((*this).ids).write([None; DECODED_BLOCK_SLOTS]);
            addr_of_mut!((*this).last_used).write(0);
        }
    }

    /// Whether a slot holds block `id` decoded.
    fn holds(&self, id: BlockId) -> bool {
        self.slot_of(id).is_some()
    }

    fn slot_of(&self, id: BlockId) -> Option<usize> {
        self.ids.iter().position(|held| *held == Some(id))
    }

    /// Decode a block `frame` (the whole frame, with the codec's bulk decoder)
    /// into the slot read longest ago and copy the page at `place` to `out`.
    fn decode_then_copy<C: ColdCodec>(
        &mut self,
        frame: &[u8],
        place: BlockPlace,
        cold: &mut C,
        out: &mut [u8; PAGE_SIZE],
    ) -> Result<(), Error> {
        let slot = (self.last_used + 1) % DECODED_BLOCK_SLOTS;
        // INVARIANT: from here until the decode succeeded the slot is no block's
        // (a failed decode may leave any bytes in it).
        self.ids[slot] = None;
        let all = self.pages[slot]
            .get_mut(..usize::from(place.pages) * PAGE_SIZE)
            .ok_or(Error::Corrupt)?;
        cold.decompress_block(place.codec_tag, frame, all)?;
        // INVARIANT: the whole frame of block `place.id` decoded into the slot;
        // no other slot names it (it was not held, or the frame was not copied).
        self.ids[slot] = place.id;
        self.copy_page(place, out)
    }

    /// Copy the page at `place` out of the slot that holds its block decoded.
    fn copy_page(&mut self, place: BlockPlace, out: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        let id = place.id.ok_or(Error::Corrupt)?;
        let slot = self.slot_of(id).ok_or(Error::Corrupt)?;
        if place.index >= place.pages {
            return Err(Error::Corrupt);
        }
        let at = usize::from(place.index) * PAGE_SIZE;
        let page = self.pages[slot]
            .get(at..at + PAGE_SIZE)
            .ok_or(Error::Corrupt)?;
        out.copy_from_slice(page);
        // INVARIANT: `slot_of` returned an index below DECODED_BLOCK_SLOTS.
        self.last_used = slot;
        Ok(())
    }
}

/// Decode a plain (raw, lz4 or cold-codec) object's `bytes` into `out`.
pub(crate) fn decode_plain<C: ColdCodec>(
    tag: u8,
    bytes: &[u8],
    out: &mut [u8; PAGE_SIZE],
    scratch: &mut DecompressScratch,
    cold: &mut C,
) -> Result<(), Error> {
    match tag {
        TAG_RAW => {
            let raw: &[u8; PAGE_SIZE] = bytes.try_into().map_err(|_| Error::Corrupt)?;
            out.copy_from_slice(raw);
        }
        TAG_LZ4 => decompress(CodecKind::Lz4, bytes, out, scratch)?,
        TAG_DEFLATE | TAG_ZSTD => cold.decode_tagged(tag, bytes, out)?,
        _ => return Err(Error::Corrupt),
    }
    Ok(())
}

#[cfg(all(test, feature = "zstd"))]
mod tests {
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    use foldswap_pool::{ColdCodec, DefaultColdCodec};

    use super::*;
    use crate::block::MAX_FRAME;

    /// Two pages, each filled with its own byte.
    fn two_pages(first: u8) -> Vec<u8> {
        [first, first + 1]
            .iter()
            .flat_map(|&b| [b; PAGE_SIZE])
            .collect()
    }

    /// Page `index` of block `key` (serial = key), two pages long.
    fn place(key: u32, codec_tag: u8, index: u8) -> BlockPlace {
        BlockPlace {
            id: Some(BlockId {
                key,
                serial: u64::from(key),
            }),
            decoded: false,
            codec_tag,
            index,
            pages: 2,
        }
    }

    /// A second block decoded goes into the other slot and keeps the first (a
    /// delta's base in another block does not evict the block being read); a
    /// third replaces the one read longest ago.
    #[test]
    fn decoding_a_block_keeps_the_one_read_last() {
        let mut cold = DefaultColdCodec::new().unwrap();
        let tag = cold.kind().unwrap().tag();
        let mut slots = Box::<DecodedBlocks>::new_uninit();
        // SAFETY: the box's storage is valid and aligned for a DecodedBlocks.
        unsafe { DecodedBlocks::init_at(slots.as_mut_ptr()) };
        // SAFETY: `init_at` initialised every field.
        let mut slots = unsafe { slots.assume_init() };
        let contents = [two_pages(1), two_pages(11), two_pages(21)];
        let frames: Vec<Vec<u8>> = contents
            .iter()
            .map(|content| {
                let mut frame = vec![0u8; MAX_FRAME];
                let len = cold.compress_block(content, &mut frame).unwrap().unwrap();
                frame.truncate(len);
                frame
            })
            .collect();
        let page = |block: usize, index: usize| &contents[block][index * PAGE_SIZE..][..PAGE_SIZE];
        let id = |key: u32| place(key, tag, 0).id.unwrap();
        let mut out = [0u8; PAGE_SIZE];

        slots
            .decode_then_copy(&frames[0], place(1, tag, 0), &mut cold, &mut out)
            .unwrap();
        assert_eq!(out[..], page(0, 0)[..]);
        // A delta's base in block 2: decoded beside block 1, not over it.
        slots
            .decode_then_copy(&frames[1], place(2, tag, 1), &mut cold, &mut out)
            .unwrap();
        assert_eq!(out[..], page(1, 1)[..]);
        assert!(slots.holds(id(1)) && slots.holds(id(2)));
        // The next page of block 1 comes from its slot.
        slots.copy_page(place(1, tag, 1), &mut out).unwrap();
        assert_eq!(out[..], page(0, 1)[..]);
        // A third block replaces block 2, read longer ago than block 1.
        slots
            .decode_then_copy(&frames[2], place(3, tag, 0), &mut cold, &mut out)
            .unwrap();
        assert_eq!(out[..], page(2, 0)[..]);
        assert!(slots.holds(id(1)) && slots.holds(id(3)) && !slots.holds(id(2)));
        assert_eq!(
            slots.copy_page(place(2, tag, 0), &mut out),
            Err(Error::Corrupt)
        );
    }
}
