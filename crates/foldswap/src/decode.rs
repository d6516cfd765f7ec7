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

use crate::content::{Entry, TAG_DELTA};
use crate::scratch::DecodeScratch;

/// A copy of an entry's encoded bytes, taken under the lock and decoded outside it.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    tag: u8,
    len: usize,
    base_tag: u8,
    base_len: usize,
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
}

/// Where `entry`'s bytes lie in the pool, if it is plain (lz4 or raw) and its
/// object lies in one pool page.
pub(crate) fn plain_in_place<P: PageProvider + Clone>(
    pool: &ObjectStore<P>,
    entry: &Entry,
) -> Result<Option<ObjectInPlace>, Error> {
    if entry.tag() != TAG_LZ4 && entry.tag() != TAG_RAW {
        return Ok(None);
    }
    pool.object_in_place(entry.handle())
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
    entries: &Slab<Entry, P>,
    pool: &ObjectStore<P>,
    key: u32,
    page: &[u8; PAGE_SIZE],
    scratch: &mut DecodeScratch<C>,
) -> Result<bool, Error> {
    let entry = entries.get(SlabKey(key)).ok_or(Error::InvalidHandle)?;
    match pool.view_object(entry.handle(), &mut scratch.object)? {
        (bytes, tag @ (TAG_LZ4 | TAG_RAW)) => plain_matches(tag, bytes, page),
        _ => {
            decode_into(entries, pool, key, scratch)?;
            Ok(scratch.page.as_bytes() == page)
        }
    }
}

/// Copy entry `key`'s encoded bytes (and its base's, for a delta) into `scratch`.
pub(crate) fn snapshot<P: PageProvider + Clone, C: ColdCodec>(
    entries: &Slab<Entry, P>,
    pool: &ObjectStore<P>,
    key: u32,
    scratch: &mut DecodeScratch<C>,
) -> Result<Snapshot, Error> {
    let entry = entries.get(SlabKey(key)).ok_or(Error::InvalidHandle)?;
    let (len, tag) = pool.read_object(entry.handle(), &mut scratch.object)?;
    let (mut base_tag, mut base_len) = (TAG_RAW, 0);
    if tag == TAG_DELTA {
        let base_key = entry.base().ok_or(Error::Corrupt)?;
        let base = entries.get(SlabKey(base_key)).ok_or(Error::Corrupt)?;
        (base_len, base_tag) = pool.read_object(base.handle(), &mut scratch.base_object)?;
    }
    Ok(Snapshot {
        tag,
        len,
        base_tag,
        base_len,
    })
}

/// Decode `key`'s content into `scratch.page`.
pub(crate) fn decode_into<P: PageProvider + Clone, C: ColdCodec>(
    entries: &Slab<Entry, P>,
    pool: &ObjectStore<P>,
    key: u32,
    scratch: &mut DecodeScratch<C>,
) -> Result<(), Error> {
    let snapshot = snapshot(entries, pool, key, scratch)?;
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
    } = scratch;
    let out = match out {
        Some(out) => out,
        None => page.as_bytes_mut(),
    };
    let bytes = object.get(..snapshot.len).ok_or(Error::Corrupt)?;
    if snapshot.tag == TAG_DELTA {
        let base_bytes = base_object.get(..snapshot.base_len).ok_or(Error::Corrupt)?;
        let base_page = base_page.as_bytes_mut();
        decode_plain(snapshot.base_tag, base_bytes, base_page, decompress, cold)?;
        return foldswap_delta::decode(base_page, bytes, out);
    }
    decode_plain(snapshot.tag, bytes, out, decompress, cold)
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
