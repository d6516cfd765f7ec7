//! The page layer: zswap's store policy on top of the object store.
//!
//! `store_page` = [`prepare_page`] (same-filled check, compression, threshold;
//! needs no pool, so a backend runs it outside its lock) + [`PagePool::commit`]
//! (puts the bytes in the store and counts). `load_page` reverses it.

use foldswap_mem::sync::{AtomicU64, Ordering};
use foldswap_mem::{Error, PAGE_SIZE, PageProvider, as_page_bytes};

use crate::clock::Clock;
use crate::codec::{CodecKind, CompressScratch, DecompressScratch, TAG_RAW, decompress_with};
use crate::same_filled::{fill_page, same_filled_word};
use crate::store::{ObjectStore, Place, PlaceOwners, StoreStats};

/// Default threshold: a page must compress to at most 3/4 of its size (3072 bytes).
pub const DEFAULT_THRESHOLD: usize = PAGE_SIZE * 3 / 4;

/// What to do with a page that compresses worse than the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoorCompression {
    /// Keep it uncompressed (4096 bytes in the pool; zram's "huge" pages).
    KeepRaw,
    /// Refuse it with [`Error::Incompressible`] (zswap's `reject_compress_poor`);
    /// the host writes it to real swap.
    Reject,
}

/// The store policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePolicy {
    /// Compressor for new pages.
    pub codec: CodecKind,
    /// Largest compressed size accepted, in bytes (1..=4096).
    pub threshold: usize,
    /// What happens above the threshold.
    pub on_poor: PoorCompression,
}

impl Default for PagePolicy {
    fn default() -> Self {
        PagePolicy {
            codec: CodecKind::Lz4,
            threshold: DEFAULT_THRESHOLD,
            on_poor: PoorCompression::Reject,
        }
    }
}

impl PagePolicy {
    /// Check the tunables: the threshold lies in 1..=4096 and the codec is built.
    pub fn validate(&self) -> Result<(), Error> {
        if self.threshold == 0 || self.threshold > PAGE_SIZE {
            return Err(Error::InvalidArgument("threshold must be 1..=4096 bytes"));
        }
        if !self.codec.available() {
            return Err(Error::InvalidArgument(
                "codec not built (deflate needs feature alloc)",
            ));
        }
        Ok(())
    }
}

/// How one page is kept: the word of a same-filled page (no pool space) or an
/// object's place and how it is encoded. This is what a host stores per swapped
/// page; [`PagePool::compact`] rewrites the places of the objects it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredPage {
    /// Every 8-byte word of the page is this value.
    SameFilled(u64),
    /// An object in the pool: its place and its tag ([`TAG_RAW`] or a codec's,
    /// [`CodecKind::tag`]).
    Object(Place, u8),
}

/// A host's table of stored pages shows the pool its objects' places.
impl PlaceOwners for [StoredPage] {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for stored in self {
            if let StoredPage::Object(place, _) = stored {
                visit(place);
            }
        }
    }
}

/// A host's table of stored pages with empty slots.
impl PlaceOwners for [Option<StoredPage>] {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for stored in self.iter_mut().flatten() {
            if let StoredPage::Object(place, _) = stored {
                visit(place);
            }
        }
    }
}

/// A page made ready for the pool by [`prepare_page`], outside any lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared<'s> {
    /// Same-filled: nothing to compress.
    SameFilled(u64),
    /// Compressed within the threshold.
    Compressed {
        /// The codec used.
        codec: CodecKind,
        /// The bytes (in the scratch's buffer).
        bytes: &'s [u8],
        /// Time spent compressing (host clock).
        ns: u64,
    },
    /// Over the threshold (or not compressible at all).
    Poor {
        /// The codec tried.
        codec: CodecKind,
        /// Time spent compressing.
        ns: u64,
    },
}

/// Same-filled check, then compression with `policy.codec` and the threshold.
/// Touches no pool.
pub fn prepare_page<'s>(
    policy: &PagePolicy,
    page: &[u8; PAGE_SIZE],
    scratch: &'s mut CompressScratch,
    clock: &impl Clock,
) -> Result<Prepared<'s>, Error> {
    if let Some(word) = same_filled_word(page) {
        return Ok(Prepared::SameFilled(word));
    }
    let codec = policy.codec;
    let start = clock.now_ns();
    let bytes = scratch.compress(codec, page)?;
    let ns = clock.now_ns().saturating_sub(start);
    Ok(match bytes {
        Some(bytes) if bytes.len() <= policy.threshold => Prepared::Compressed { codec, bytes, ns },
        _ => Prepared::Poor { codec, ns },
    })
}

/// Counters of the page layer (pages now held, and events since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Pages held now (same-filled + compressed + raw).
    pub stored_pages: u64,
    /// Same-filled pages held now (zero included).
    pub same_filled_pages: u64,
    /// Of those, zero pages.
    pub zero_pages: u64,
    /// Compressed pages held now.
    pub compressed_pages: u64,
    /// Raw (poorly compressing, kept) pages held now.
    pub raw_pages: u64,
    /// Bytes of the compressed and raw pages held now.
    pub compressed_bytes: u64,
    /// Stores that succeeded, ever.
    pub stores: u64,
    /// Rejected: compressed worse than the threshold (policy `Reject`).
    pub reject_compress_poor: u64,
    /// Rejected: the pool's byte limit.
    pub reject_pool_full: u64,
    /// Rejected: the provider had no page.
    pub reject_alloc_fail: u64,
    /// Compression calls per codec ([`CodecKind::index`]).
    pub compress_calls: [u64; 2],
    /// Nanoseconds spent compressing per codec (host clock).
    pub compress_ns: [u64; 2],
    /// Loads that succeeded, ever.
    pub loads: u64,
    /// Loads that found corrupt data.
    pub corrupt_loads: u64,
    /// Decompression calls per codec.
    pub decompress_calls: [u64; 2],
    /// Nanoseconds spent decompressing per codec.
    pub decompress_ns: [u64; 2],
    /// The object store's own figures (bytes held, fragmentation...).
    pub store: StoreStats,
}

/// Load-side counters: loads take `&self`, so they count with relaxed atomics.
#[derive(Debug, Default)]
struct LoadCounters {
    loads: AtomicU64,
    corrupt: AtomicU64,
    calls: [AtomicU64; 2],
    ns: [AtomicU64; 2],
}

/// Compressed pages in an [`ObjectStore`], with zswap's policy and statistics.
///
/// ```
/// use foldswap_mem::StdPageProvider;
/// use foldswap_pool::{CompressScratch, DecompressScratch, NoClock, PagePool, PagePolicy, StoredPage};
/// let mut pool = PagePool::new(StdPageProvider, PagePolicy::default()).unwrap();
/// let mut slot = Box::new_uninit();
/// let scratch = CompressScratch::init_in(&mut slot);
/// let mut page = [0u8; 4096];
/// page[..11].copy_from_slice(b"hello pool!");
/// let stored = pool.store_page(&page, scratch, &NoClock).unwrap();
/// assert!(matches!(stored, StoredPage::Object(..)));
/// let mut out = [0u8; 4096];
/// pool.load_page(stored, &mut out, &mut Box::new(DecompressScratch::new()), &NoClock).unwrap();
/// assert_eq!(out, page);
/// pool.free_page(stored).unwrap();
/// ```
pub struct PagePool<P: PageProvider + Clone> {
    store: ObjectStore<P>,
    policy: PagePolicy,
    stats: PageStats,
    load: LoadCounters,
}

impl<P: PageProvider + Clone> PagePool<P> {
    /// An empty pool (no size limit) with `policy`.
    pub fn new(provider: P, policy: PagePolicy) -> Result<Self, Error> {
        policy.validate()?;
        Ok(PagePool {
            store: ObjectStore::new(provider)?,
            policy,
            stats: PageStats::default(),
            load: LoadCounters::default(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &PagePolicy {
        &self.policy
    }

    /// Change the policy (validated first; on error nothing changes).
    pub fn set_policy(&mut self, policy: PagePolicy) -> Result<(), Error> {
        policy.validate()?;
        self.policy = policy;
        Ok(())
    }

    /// Limit the bytes the pool holds ([`ObjectStore::set_limit_bytes`]).
    pub fn set_limit_bytes(&mut self, limit: usize) {
        self.store.set_limit_bytes(limit);
    }

    /// The object store underneath (a host may keep objects of its own in it too,
    /// and then shows their places to [`compact`](Self::compact) as well).
    pub fn store(&self) -> &ObjectStore<P> {
        &self.store
    }

    /// The object store, writable.
    pub fn store_mut(&mut self) -> &mut ObjectStore<P> {
        &mut self.store
    }

    /// Store one page (`page` must be 4096 bytes): [`prepare_page`] + [`commit`](Self::commit).
    pub fn store_page(
        &mut self,
        page: &[u8],
        scratch: &mut CompressScratch,
        clock: &impl Clock,
    ) -> Result<StoredPage, Error> {
        let page = as_page_bytes(page)?;
        let prepared = prepare_page(&self.policy, page, scratch, clock)?;
        self.commit(prepared, page)
    }

    /// Put a prepared page into the pool. `page` is the original (kept when raw).
    pub fn commit(
        &mut self,
        prepared: Prepared<'_>,
        page: &[u8; PAGE_SIZE],
    ) -> Result<StoredPage, Error> {
        let (stored, bytes) = match prepared {
            Prepared::SameFilled(word) => {
                self.stats.same_filled_pages += 1;
                if word == 0 {
                    self.stats.zero_pages += 1;
                }
                (StoredPage::SameFilled(word), 0)
            }
            Prepared::Compressed { codec, bytes, ns } => {
                self.count_compress(codec, ns);
                let place = self.store_or_count(bytes)?;
                self.stats.compressed_pages += 1;
                (StoredPage::Object(place, codec.tag()), bytes.len())
            }
            Prepared::Poor { codec, ns } => {
                self.count_compress(codec, ns);
                if self.policy.on_poor == PoorCompression::Reject {
                    self.stats.reject_compress_poor += 1;
                    return Err(Error::Incompressible);
                }
                let place = self.store_or_count(page)?;
                self.stats.raw_pages += 1;
                (StoredPage::Object(place, TAG_RAW), PAGE_SIZE)
            }
        };
        self.stats.stored_pages += 1;
        self.stats.stores += 1;
        self.stats.compressed_bytes += bytes as u64;
        Ok(stored)
    }

    fn count_compress(&mut self, codec: CodecKind, ns: u64) {
        let i = codec.index();
        if let (Some(calls), Some(total)) = (
            self.stats.compress_calls.get_mut(i),
            self.stats.compress_ns.get_mut(i),
        ) {
            *calls += 1;
            *total = total.saturating_add(ns);
        }
    }

    fn store_or_count(&mut self, bytes: &[u8]) -> Result<Place, Error> {
        self.store.store_object(bytes).inspect_err(|e| match e {
            Error::PoolFull => self.stats.reject_pool_full += 1,
            Error::OutOfMemory | Error::CapacityExceeded => self.stats.reject_alloc_fail += 1,
            _ => {}
        })
    }

    /// Rebuild a stored page into `out` (4096 bytes). [`Error::InvalidHandle`] for a
    /// freed or unknown place, [`Error::Corrupt`] if the bytes do not decode
    /// (`out` may then hold garbage; the stored object is unchanged).
    pub fn load_page(
        &self,
        stored: StoredPage,
        out: &mut [u8],
        scratch: &mut DecompressScratch,
        clock: &impl Clock,
    ) -> Result<(), Error> {
        let actual = out.len();
        let out: &mut [u8; PAGE_SIZE] = out.try_into().map_err(|_| Error::WrongLength {
            expected: PAGE_SIZE,
            actual,
        })?;
        let (place, tag) = match stored {
            StoredPage::SameFilled(word) => {
                fill_page(out, word);
                self.load.loads.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            StoredPage::Object(place, tag) => (place, tag),
        };
        let start = clock.now_ns();
        let (spill, inflate) = scratch.split();
        let bytes = self.store.view_object(place, spill)?;
        if tag == TAG_RAW {
            if bytes.len() != PAGE_SIZE {
                return self.corrupt();
            }
            out.copy_from_slice(bytes);
            self.load.loads.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let Some(codec) = CodecKind::from_tag(tag) else {
            return self.corrupt();
        };
        let result = decompress_with(codec, bytes, out, inflate);
        let ns = clock.now_ns().saturating_sub(start);
        if result.is_err() {
            return self.corrupt();
        }
        let i = codec.index();
        if let (Some(calls), Some(total)) = (self.load.calls.get(i), self.load.ns.get(i)) {
            calls.fetch_add(1, Ordering::Relaxed);
            total.fetch_add(ns, Ordering::Relaxed);
        }
        self.load.loads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn corrupt(&self) -> Result<(), Error> {
        self.load.corrupt.fetch_add(1, Ordering::Relaxed);
        Err(Error::Corrupt)
    }

    /// Give a stored page up. [`Error::InvalidHandle`] if its object is not live.
    /// A same-filled page holds nothing to check, so giving one up twice only
    /// skews the (saturating) counters.
    pub fn free_page(&mut self, stored: StoredPage) -> Result<(), Error> {
        match stored {
            StoredPage::SameFilled(word) => {
                self.stats.same_filled_pages = self.stats.same_filled_pages.saturating_sub(1);
                if word == 0 {
                    self.stats.zero_pages = self.stats.zero_pages.saturating_sub(1);
                }
            }
            StoredPage::Object(place, tag) => {
                let len = place.len();
                self.store.free(place)?;
                if tag == TAG_RAW {
                    self.stats.raw_pages = self.stats.raw_pages.saturating_sub(1);
                } else {
                    self.stats.compressed_pages = self.stats.compressed_pages.saturating_sub(1);
                }
                self.stats.compressed_bytes =
                    self.stats.compressed_bytes.saturating_sub(len as u64);
            }
        }
        self.stats.stored_pages = self.stats.stored_pages.saturating_sub(1);
        Ok(())
    }

    /// Compact the store ([`ObjectStore::compact`]): `pages` is the host's table
    /// of every page stored here, whose places are rewritten as objects move.
    pub fn compact(&mut self, pages: &mut (impl PlaceOwners + ?Sized)) -> crate::CompactStats {
        self.store.compact(pages)
    }

    /// All counters, with the store's figures.
    pub fn stats(&self) -> PageStats {
        let mut stats = self.stats;
        stats.loads = self.load.loads.load(Ordering::Relaxed);
        stats.corrupt_loads = self.load.corrupt.load(Ordering::Relaxed);
        for i in 0..2 {
            if let (Some(c), Some(n), Some(lc), Some(ln)) = (
                stats.decompress_calls.get_mut(i),
                stats.decompress_ns.get_mut(i),
                self.load.calls.get(i),
                self.load.ns.get(i),
            ) {
                *c = lc.load(Ordering::Relaxed);
                *n = ln.load(Ordering::Relaxed);
            }
        }
        stats.store = self.store.stats();
        stats
    }
}
