//! Decoding stored contents: the pipeline from an entry's pool object (and its
//! base's, for a delta) to page bytes.
//!
//! Under the content lock only the encoded bytes are copied out ([`Snapshot`]) or,
//! for a plain object lying in one pool page, located (`plain_in_place`); the
//! decoding itself ([`decode_snapshot`], `decode_plain`) runs after the lock on
//! the caller's scratch. The dedup check (`same_as_stored`) compares every byte,
//! against an lz4 stream without decoding it.

use foldswap_mem::{Error, PAGE_SIZE, PageProvider, Slab, SlabKey};
use foldswap_pool::{
    CodecKind, ColdCodec, DecompressScratch, ObjectInPlace, ObjectStore, TAG_DEFLATE, TAG_LZ4,
    TAG_RAW, TAG_ZSTD, decompress, lz4_matches,
};

use crate::block::{Block, BlockId, TAG_BLOCK};
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
    decoded: Option<BlockId>,
) -> Result<(usize, BlockPlace), Error> {
    let block = stored.blocks.get(SlabKey(key)).ok_or(Error::Corrupt)?;
    if !block.is_live(index) {
        return Err(Error::Corrupt);
    }
    let len = block.frame_len();
    let id = block.id(key);
    let place = BlockPlace {
        id: Some(id),
        decoded: decoded == Some(id),
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
/// if the block is `decoded`, the one the scratch holds decoded). Their length
/// and tag ([`TAG_BLOCK`] for a block's frame).
fn copy_encoded<P: PageProvider + Clone>(
    stored: Stored<'_, P>,
    entry: &Entry,
    object: &mut [u8],
    frame: &mut [u8],
    block: &mut BlockPlace,
    decoded: Option<BlockId>,
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
    let (frame, decoded) = (&mut scratch.block_frame, scratch.decoded_block);
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
        block_pages,
        decoded_block,
    } = scratch;
    let out = match out {
        Some(out) => out,
        None => page.as_bytes_mut(),
    };
    let mut block_page = |len: usize, out: &mut [u8; PAGE_SIZE]| {
        let place = snapshot.block;
        let pages = DecodedPages {
            pages: block_pages,
            decoded: decoded_block,
        };
        if place.decoded {
            return pages.copy_page(place, out);
        }
        let frame = block_frame.get(..len).ok_or(Error::Corrupt)?;
        pages.decode_then_copy(frame, place, cold, out)
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

/// A scratch's decoded block pages and which block they are.
///
/// # Invariants
///
/// `*decoded == Some(id)` only while `pages` holds exactly the pages block `id`'s
/// frame decodes to.
struct DecodedPages<'a> {
    pages: &'a mut [u8],
    decoded: &'a mut Option<BlockId>,
}

impl DecodedPages<'_> {
    /// Decode a block `frame` into the pages (the whole frame, with the codec's
    /// bulk decoder) and copy the page at `place` to `out`.
    fn decode_then_copy<C: ColdCodec>(
        self,
        frame: &[u8],
        place: BlockPlace,
        cold: &mut C,
        out: &mut [u8; PAGE_SIZE],
    ) -> Result<(), Error> {
        // INVARIANT: from here until the decode succeeded the pages are no
        // block's (a failed decode may leave any bytes in them).
        *self.decoded = None;
        let all = self
            .pages
            .get_mut(..usize::from(place.pages) * PAGE_SIZE)
            .ok_or(Error::Corrupt)?;
        cold.decompress_block(place.codec_tag, frame, all)?;
        // INVARIANT: the whole frame of block `place.id` decoded into the pages.
        *self.decoded = place.id;
        self.copy_page(place, out)
    }

    /// Copy the page at `place` out of the pages, which hold its block decoded.
    fn copy_page(self, place: BlockPlace, out: &mut [u8; PAGE_SIZE]) -> Result<(), Error> {
        if place.id.is_none() || *self.decoded != place.id || place.index >= place.pages {
            return Err(Error::Corrupt);
        }
        let at = usize::from(place.index) * PAGE_SIZE;
        let page = self.pages.get(at..at + PAGE_SIZE).ok_or(Error::Corrupt)?;
        out.copy_from_slice(page);
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
