//! Test-only hooks (feature `testing`, never enabled in normal builds): see which
//! pool objects hold an offset's content and damage them in place, so tests and
//! fuzz targets can check that a load of damaged bytes gives a typed error or other
//! bytes, never a panic, and that offsets not built on them still load exactly.
//!
//! Both hooks reach the entry the way [`Backend::load`] does: the offset's shard
//! lock, then the content lock (lock order: offset shard → content).

use foldswap_mem::{Error, PageProvider};
use foldswap_pool::Place;
use foldswap_wake::Parker;

use crate::Backend;
use crate::area::ShardGuard;
use crate::content::Content;
use crate::domain::Domain;
use crate::offsets::SlotValue;

/// One pool object behind an offset's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject {
    /// Its place in the pool: new when the scanner re-encodes it or compaction
    /// moves it.
    pub place: Place,
    /// Its length in bytes.
    pub len: usize,
    /// Its pool tag (lz4, deflate, raw, or the backend's delta tag).
    pub tag: u8,
}

/// The pool objects an offset's content is decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObjects {
    /// The entry's own object.
    pub object: StoredObject,
    /// For a delta, its base's object.
    pub base: Option<StoredObject>,
}

/// What an offset's content is and what joins it to other pages
/// ([`Backend::content_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentAt {
    /// Its entry's key (shared contents: one entry).
    pub entry: u32,
    /// The entry's domain (see [`crate::domain`]).
    pub domain: Domain,
    /// For a delta: its base entry's key and domain.
    pub base: Option<(u32, Domain)>,
    /// For a page in a cold block: the block's key.
    pub block: Option<u32>,
}

/// Which object of an offset's content to damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The entry's own object.
    Object,
    /// The object of the base a delta entry is patched against.
    DeltaBase,
}

impl<P: PageProvider + Clone, K: Parker> Backend<P, K> {
    /// The pool objects behind (`swap_type`, `offset`): `None` if it holds nothing
    /// or a same-filled page (no pool object). The argument checks and errors of
    /// [`load`](Self::load).
    pub fn stored_objects(
        &self,
        swap_type: usize,
        offset: u64,
    ) -> Result<Option<StoredObjects>, Error> {
        let (_table, Some(key)) = self.lock_entry_key(swap_type, offset)? else {
            return Ok(None);
        };
        let content = self.content.lock();
        let entry = content.entry(key)?;
        let base = match entry.base() {
            None => None,
            Some(base) => Some(object(&content, base, 0)?.0),
        };
        Ok(Some(StoredObjects {
            object: object(&content, key, 0)?.0,
            base,
        }))
    }

    /// Xor `xor` into byte `at` of the entry's own object behind (`swap_type`,
    /// `offset`); see [`corrupt_stored_part`](Self::corrupt_stored_part).
    pub fn corrupt_stored_object(
        &self,
        swap_type: usize,
        offset: u64,
        at: usize,
        xor: u8,
    ) -> Result<bool, Error> {
        self.corrupt_stored_part(swap_type, offset, Part::Object, at, xor)
    }

    /// Xor `xor` into byte `at` of `part` of the content behind (`swap_type`,
    /// `offset`), where it lies in the pool. Every offset sharing that object (and,
    /// for a base, every delta patched against it) now decodes the damaged bytes.
    ///
    /// `Ok(false)` when nothing changed: the offset holds nothing, or a same-filled
    /// page, `part` is [`Part::DeltaBase`] and the entry is not a delta, or `at`
    /// lies past the object's end. The argument checks and errors of
    /// [`load`](Self::load).
    ///
    /// The bytes change under the content lock taken as the scanner takes it to
    /// move objects, so a load decoding this object in place finishes first.
    pub fn corrupt_stored_part(
        &self,
        swap_type: usize,
        offset: u64,
        part: Part,
        at: usize,
        xor: u8,
    ) -> Result<bool, Error> {
        let (table, Some(key)) = self.lock_entry_key(swap_type, offset)? else {
            return Ok(false);
        };
        let mut content = self.lock_content_to_move();
        let entry = *content.entry(key)?;
        let holder = match (part, entry.base()) {
            (Part::Object, _) => key,
            (Part::DeltaBase, None) => return Ok(false),
            (Part::DeltaBase, Some(base)) => base,
        };
        let (object, at) = object(&content, holder, at)?;
        let changed = content.pool.corrupt_object(object.place, at, xor);
        drop(content);
        drop(table);
        changed
    }

    /// The content (`swap_type`, `offset`) holds (`None` if it holds nothing or
    /// a same-filled page): its entry, the entry's domain, and what joins it to
    /// other pages (its delta base, its cold block). Offsets that share a content
    /// name the same entry.
    pub fn content_at(&self, swap_type: usize, offset: u64) -> Result<Option<ContentAt>, Error> {
        let (_table, Some(key)) = self.lock_entry_key(swap_type, offset)? else {
            return Ok(None);
        };
        let content = self.content.lock();
        let entry = content.entry(key)?;
        let base = match entry.base() {
            Some(base) => Some((base, content.entry(base)?.domain())),
            None => None,
        };
        Ok(Some(ContentAt {
            entry: key,
            domain: entry.domain(),
            base,
            block: entry.block().map(|(block, _)| block),
        }))
    }

    /// The offset's shard, locked (as `load` locks it: held while its entry is
    /// used), and the entry key the offset holds, if it holds one.
    fn lock_entry_key(
        &self,
        swap_type: usize,
        offset: u64,
    ) -> Result<(ShardGuard<'_>, Option<u32>), Error> {
        let area = self
            .areas
            .get(swap_type)
            .ok_or(Error::InvalidArgument("swap type out of range"))?;
        area.check_offset(offset)?;
        let table = area.lock_shard(offset);
        let key = match table.get(offset) {
            Some(SlotValue::Entry(key)) => Some(key),
            _ => None,
        };
        Ok((table, key))
    }
}

/// The pool object that holds byte `at` of entry `key`'s encoded bytes, and where
/// in it: the entry's own object, or for a page in a cold block the chunk of the
/// block's frame.
fn object<P: PageProvider + Clone>(
    content: &Content<P>,
    key: u32,
    at: usize,
) -> Result<(StoredObject, usize), Error> {
    let entry = content.entry(key)?;
    let (place, at) = match (entry.place(), entry.block()) {
        (Some(place), _) => (place, at),
        (None, Some((block, _))) => {
            let block = content.block(block)?;
            let span = block.chunk_span();
            let chunk = (at / span).min(block.chunk_count().saturating_sub(1));
            (block.chunk(chunk).ok_or(Error::Corrupt)?, at - chunk * span)
        }
        (None, None) => return Err(Error::Corrupt),
    };
    let tag = match entry.block() {
        Some((block, _)) => content.block(block)?.codec_tag(),
        None => entry.tag(),
    };
    let len = place.len();
    Ok((StoredObject { place, len, tag }, at))
}
