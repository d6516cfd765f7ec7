//! The backend: frontswap's five operations over the cores.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_delta::{Sampler, SimilarityConfig};
use foldswap_ladder::{
    Batch, BatchResult, Governor, Ladder, Next, RegionId, Tunables as LadderTunables,
};
use foldswap_mem::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use foldswap_mem::{Error, PAGE_SIZE, PageProvider, ReaderCount, as_page_bytes, as_page_bytes_mut};
use foldswap_pool::{
    CodecKind, ColdCodec, StoreStats, TAG_DEFLATE, TAG_RAW, TAG_ZSTD, fill_page, same_filled_word,
};
use foldswap_wake::{Notify, Parker, ScannerState, Wake, WakeStats};
use spin::{Mutex, MutexGuard};
use xxhash_rust::xxh3::xxh3_64;

use crate::area::{MAX_SWAP_TYPES, ShardGuard, SwapArea};
use crate::block::TAG_BLOCK;
use crate::content::{Candidate, Content, Lookup, Pending, Released, TAG_DELTA};
use crate::decode::{decode_plain, decode_snapshot, plain_matches};
use crate::domain::{DedupScope, Domain, DomainCharges, DomainSalt};
use crate::in_place::InPlace;
use crate::offsets::{OffsetTable, SlotValue, fill_word, fill_word_u64};
use crate::refused::RecentlyRefused;
use crate::scratch::Scratch;
use crate::stats::Stats;
use crate::tunables::{MAX_COLD_LEVEL, ScanTunables};
use crate::writeback::{WritebackCursor, writeback_due};

/// The backend's tunables, fixed at construction (the pool limit can change later).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Limit in bytes on everything the backend holds from its provider: pool
    /// pages and metadata (entries, indexes, offset tables; see [`BytesHeld`]);
    /// `usize::MAX` for none. A store that would pass it fails with
    /// [`Error::PoolFull`].
    pub pool_limit_bytes: usize,
    /// The codec of the store path (lz4: fast; the scanner may recompress).
    pub store_codec: CodecKind,
    /// A page whose compressed form is longer than this is "poorly compressible"
    /// (default 3/4 of a page, like zswap's rejection of poor compression).
    pub max_compressed_len: usize,
    /// Keep poorly compressible pages raw in the pool (`true`) or reject them with
    /// [`Error::Incompressible`] so the host writes them to the swap device (`false`).
    pub keep_incompressible: bool,
    /// With `keep_incompressible` off: keep a poorly compressible page raw after
    /// all when a page with its content was refused recently, so its later copies
    /// are references ([`crate::refused`]; default on).
    pub keep_repeated_incompressible: bool,
    /// Pool growth (bytes of data since the scanner's last burst) that counts as
    /// pressure and wakes the scanner.
    pub wake_watermark_bytes: usize,
    /// Seed of the ladder's random start offsets.
    pub seed: u64,
    /// Which stored pages may be joined: within the domain each store names
    /// (default), all of them, or none ([`DedupScope`]).
    pub dedup_scope: DedupScope,
    /// The secret that scatters each domain's dedup and similarity keys
    /// ([`crate::domain`]). A host that keeps tenants apart draws it at random
    /// (the kernel module does); the default is a fixed value.
    pub dedup_salt: u64,
    /// Whether a scanner given a swap device writes the coldest pages back to it
    /// as everything held nears the limit ([`crate::writeback`]; default on).
    /// Off, a full pool refuses stores and keeps what it holds. The start value
    /// of [`Backend::set_writeback`].
    pub writeback: bool,
    /// The scanner's ladder: per-rung CPU ratio and cover time (UKSM's governors;
    /// default `full`, since the scanner only works when pressure wakes it or its
    /// sleep times out). Change it later with [`Backend::stage_ladder_tunables`].
    pub ladder: LadderTunables,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pool_limit_bytes: usize::MAX,
            store_codec: CodecKind::Lz4,
            max_compressed_len: PAGE_SIZE * 3 / 4,
            keep_incompressible: false,
            keep_repeated_incompressible: true,
            wake_watermark_bytes: 4 << 20,
            seed: 0x666f_6c64,
            dedup_scope: DedupScope::Domain,
            dedup_salt: 0x5a17_f01d_5a17_f01d,
            writeback: true,
            ladder: LadderTunables::governor(Governor::Full),
        }
    }
}

/// Bytes a backend holds from its page provider, part by part.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BytesHeld {
    /// The pool's pages (compressed data, its handles and zspage descriptors).
    pub pool: usize,
    /// Content entries (one per distinct stored content).
    pub entries: usize,
    /// The dedup index: one bucket per distinct content.
    pub dedup_index: usize,
    /// The similarity index (candidates for patching).
    pub similarity_index: usize,
    /// Cold block records (where each block's frame lies, which pages are live).
    pub blocks: usize,
    /// The per-area offset tables.
    pub offset_tables: usize,
    /// The scanner's ladder (its regions: one per swap area, a constant page or
    /// two).
    pub ladder: usize,
}

impl BytesHeld {
    /// Everything: pool, entries, indexes, offset tables and ladder.
    pub fn total(&self) -> usize {
        self.pool
            + self.entries
            + self.dedup_index
            + self.similarity_index
            + self.blocks
            + self.offset_tables
            + self.ladder
    }
}

/// Distinct stored contents by how they are encoded (a walk over all entries).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// Entries compressed with lz4.
    pub lz4: u64,
    /// Entries the scanner recompressed with the cold codec (zstd or deflate).
    pub cold: u64,
    /// Entries kept raw (compressed too poorly).
    pub raw: u64,
    /// Offsets whose content is kept raw (the raw entries' sharers): pages a
    /// store that refuses incompressible pages, as zswap does, would not hold.
    pub raw_sharers: u64,
    /// Entries kept as a delta against a base entry.
    pub delta: u64,
    /// Entries no offset points at any more, kept because deltas need them.
    pub bases_only: u64,
    /// Entries of pages held in cold blocks.
    pub blocked: u64,
    /// Cold blocks.
    pub blocks: u64,
    /// Live pages the cold blocks' records count (equal to `blocked` while the
    /// books are right).
    pub block_live_pages: u64,
    /// Pages the cold blocks' frames hold, live or not.
    pub block_frame_pages: u64,
    /// Bytes of the cold blocks' frames, their dead pages' share included.
    pub block_frame_bytes: u64,
}

/// How a stored page is kept now ([`Backend::encoding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// One repeated word in its offset slot.
    SameFilled,
    /// An lz4 object of its own.
    Lz4,
    /// A raw copy (compressed too poorly).
    Raw,
    /// An object of the cold codec's of its own (zstd or deflate).
    Cold,
    /// A delta against a similar page.
    Delta,
    /// A page of a cold block.
    Block,
}

impl Encoding {
    /// Every encoding, in a stable order.
    pub const ALL: [Encoding; 6] = [
        Encoding::SameFilled,
        Encoding::Lz4,
        Encoding::Raw,
        Encoding::Cold,
        Encoding::Delta,
        Encoding::Block,
    ];

    /// A short stable name (`lz4`, `block`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::SameFilled => "same_filled",
            Encoding::Lz4 => "lz4",
            Encoding::Raw => "raw",
            Encoding::Cold => "cold",
            Encoding::Delta => "delta",
            Encoding::Block => "block",
        }
    }
}

/// How a page was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One repeated word: no pool space.
    SameFilled,
    /// Identical to a page already stored: a reference, nothing compressed.
    Duplicate,
    /// Compressed into the pool.
    Compressed,
    /// Kept raw in the pool (compressed too poorly; policy `keep_incompressible`).
    Raw,
}

/// The scanner's ladder and the ladder region of each swap area.
pub(crate) struct ScanState<P: PageProvider> {
    ladder: Ladder<P>,
    regions: [Option<RegionId>; MAX_SWAP_TYPES],
}

impl<P: PageProvider + Clone> ScanState<P> {
    pub(crate) fn next_batch(&mut self, now: u64) -> Result<Next, Error> {
        self.ladder.next_batch(now)
    }

    pub(crate) fn complete_batch(
        &mut self,
        batch: &Batch,
        result: BatchResult,
    ) -> Result<(), Error> {
        self.ladder.complete_batch(batch, result)
    }

    pub(crate) fn end_round(&mut self, now: u64) -> Result<(), Error> {
        self.ladder.end_round(now).map(|_| ())
    }
}

/// frontswap's operations with dedup → compress, over pages from `P`; its scanner
/// sleeps and wakes through `K`.
pub struct Backend<P: PageProvider + Clone, K: Parker> {
    pub(crate) provider: P,
    config: Config,
    pub(crate) areas: [SwapArea; MAX_SWAP_TYPES],
    pub(crate) content: Mutex<InPlace<Content<P>>>,
    pub(crate) ladder: Mutex<InPlace<ScanState<P>>>,
    pub(crate) wake: Wake<K, ScanTunables>,
    pub(crate) sampler: Sampler,
    /// Pool bytes added since the scanner's last burst (pressure).
    pub(crate) data_since_burst: AtomicU64,
    /// Whether a limit is set ([`Config::pool_limit_bytes`] not `usize::MAX`): a
    /// store checks the room left only then (the limit itself lives with the
    /// content, under its lock).
    limited: AtomicBool,
    /// Bytes the ladder holds (its regions), kept current under the ladder lock
    /// wherever regions change, so the limit check counts them without that lock.
    ladder_bytes: AtomicU64,
    /// Loads decoding a pool object in place, outside the content lock: the
    /// scanner waits them out before it re-encodes or compacts.
    pub(crate) readers: ReaderCount,
    /// Where the next writeback sweep starts; held by the one run going on (a
    /// second run finds it taken and returns).
    pub(crate) writeback_cursor: Mutex<WritebackCursor>,
    /// Whether a scanner with a swap device runs
    /// ([`Backend::run_scanner_writing_back`]): only then does a store past the
    /// writeback threshold wake it.
    pub(crate) writeback_device: AtomicBool,
    /// Whether writeback is on ([`Config::writeback`], then
    /// [`Backend::set_writeback`]).
    pub(crate) writeback_on: AtomicBool,
    /// Cold pages the host asked to have written back under memory pressure and
    /// the scanner has not yet written ([`Backend::request_writeback`]), at most
    /// [`WRITEBACK_MAX_REQUESTED`](crate::writeback::WRITEBACK_MAX_REQUESTED).
    pub(crate) writeback_requested: AtomicU32,
    /// Content keys of poorly compressible pages refused lately.
    refused: RecentlyRefused,
    pub(crate) stats: Stats,
}

impl<P: PageProvider + Clone, K: Parker> Backend<P, K> {
    /// A backend with no swap area yet; its scanner (if the host runs one) parks
    /// through `parker`.
    pub fn new(provider: P, config: Config, parker: K) -> Result<Self, Error> {
        let mut slot = MaybeUninit::<Self>::uninit();
        Self::init_in(&mut slot, provider, config, parker)?;
        // SAFETY: `init_in` returned Ok, so every field of `slot` is initialised.
        Ok(unsafe { slot.assume_init() })
    }

    /// Build a backend in place, in memory the host provides (the kernel host: it
    /// is about 7 KiB, too big to pass around on a 16 KiB stack). Each part is
    /// written straight into `slot`; no temporary holds the whole backend. On error
    /// nothing is left initialised and everything taken from `provider` is given
    /// back. The caller drops it with `MaybeUninit::assume_init_drop` (or by moving
    /// it out) when done.
    pub fn init_in(
        slot: &mut MaybeUninit<Self>,
        provider: P,
        config: Config,
        parker: K,
    ) -> Result<&mut Self, Error> {
        if config.max_compressed_len > PAGE_SIZE {
            return Err(Error::InvalidArgument("max_compressed_len over a page"));
        }
        let similarity = SimilarityConfig::default();
        let sampler = Sampler::new(similarity)?;
        let ptr = slot.as_mut_ptr();
        // SAFETY: `ptr` is valid, aligned storage for a Backend. The fallible parts
        // (content, ladder) come first, each built in place inside its mutex (no
        // by-value temporary: kernel stacks are small). If one fails, its empty
        // `InPlace` is forgotten (never dropped) and the content built before the
        // ladder is dropped again, so nothing is left half-built.
        unsafe {
            let content = addr_of_mut!((*ptr).content);
            content.write(Mutex::new(InPlace::empty()));
            Content::init_in((*content).get_mut().slot(), provider.clone(), similarity)?;
            (*content)
                .get_mut()
                .set_limit_bytes(config.pool_limit_bytes, 0);
            let ladder = addr_of_mut!((*ptr).ladder);
            ladder.write(Mutex::new(InPlace::empty()));
            let state = (*ladder).get_mut().slot().as_mut_ptr();
            addr_of_mut!((*state).regions).write([None; MAX_SWAP_TYPES]);
            let built = Ladder::init_in(
                &mut *addr_of_mut!((*state).ladder).cast(),
                provider.clone(),
                config.ladder,
                config.seed,
            );
            if let Err(e) = built {
                content.drop_in_place();
                return Err(e);
            }
            let areas = addr_of_mut!((*ptr).areas).cast::<SwapArea>();
            for i in 0..MAX_SWAP_TYPES {
                areas.add(i).write(SwapArea::new());
            }
            addr_of_mut!((*ptr).provider).write(provider);
            addr_of_mut!((*ptr).config).write(config);
            addr_of_mut!((*ptr).wake).write(Wake::new(parker, ScanTunables::default()));
            addr_of_mut!((*ptr).sampler).write(sampler);
            addr_of_mut!((*ptr).data_since_burst).write(AtomicU64::new(0));
            addr_of_mut!((*ptr).ladder_bytes).write(AtomicU64::new(0));
            addr_of_mut!((*ptr).limited)
                .write(AtomicBool::new(config.pool_limit_bytes != usize::MAX));
            addr_of_mut!((*ptr).readers).write(ReaderCount::new());
            addr_of_mut!((*ptr).writeback_cursor).write(Mutex::new(WritebackCursor::default()));
            addr_of_mut!((*ptr).writeback_device).write(AtomicBool::new(false));
            addr_of_mut!((*ptr).writeback_on).write(AtomicBool::new(config.writeback));
            addr_of_mut!((*ptr).writeback_requested).write(AtomicU32::new(0));
            RecentlyRefused::init_in(addr_of_mut!((*ptr).refused));
            addr_of_mut!((*ptr).stats).write(Stats::default());
        }
        // SAFETY: every field was written above.
        Ok(unsafe { slot.assume_init_mut() })
    }

    /// Stage new scanner tunables (any thread); the scanner applies them between
    /// rounds. A cold level past [`MAX_COLD_LEVEL`], cold rounds an entry's age
    /// cannot reach (127 or more), or block pages outside 1 to
    /// [`MAX_BLOCK_PAGES`](crate::block::MAX_BLOCK_PAGES) is refused and nothing
    /// is staged.
    pub fn stage_scan_tunables(&self, tunables: ScanTunables) -> Result<(), Error> {
        if !(1..=crate::block::MAX_BLOCK_PAGES as u32).contains(&tunables.block_pages) {
            return Err(Error::InvalidArgument("block pages outside 1 to 16"));
        }
        if tunables.cold_level > MAX_COLD_LEVEL {
            return Err(Error::InvalidArgument("cold level past the highest"));
        }
        if tunables.cold_rounds >= u32::from(crate::content::MAX_AGE) {
            return Err(Error::InvalidArgument(
                "cold rounds past the oldest age an entry records",
            ));
        }
        self.wake.stage(tunables);
        Ok(())
    }

    /// Stage new ladder tunables (validated now, applied at the ladder's next round
    /// boundary). Returns how many fields were clamped.
    pub fn stage_ladder_tunables(&self, tunables: LadderTunables) -> Result<u32, Error> {
        self.ladder.lock().ladder.stage_tunables(tunables)
    }

    /// Stop the scanner: it wakes and [`Backend::run_scanner`] returns.
    pub fn shutdown(&self) {
        self.wake.stop();
    }

    /// The wake protocol's state and counters (scanner state, rounds, wake-ups).
    pub fn wake_stats(&self) -> WakeStats {
        self.wake.stats()
    }

    /// The scanner state (sleeping / running / notified / stopped).
    pub fn scanner_state(&self) -> ScannerState {
        self.wake.state()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Change the limit on everything held ([`Config::pool_limit_bytes`]). Pages
    /// stored above it stay; new stores fail until enough is freed.
    pub fn set_pool_limit_bytes(&self, limit: usize) {
        let outside = self.outside_content_bytes();
        let mut content = self.content.lock();
        content.set_limit_bytes(limit, outside);
        self.limited.store(limit != usize::MAX, Ordering::Relaxed);
    }

    /// [`Error::PoolFull`] if everything held has reached the limit. Checked at
    /// the start of every store, as zswap checks its pool: a store may then add
    /// at most an entry, a tree node and offset-table pages past the limit, so
    /// what is held stays within a few pages of it (per storing thread).
    ///
    /// Past [`WRITEBACK_START_PERMILLE`](crate::writeback::WRITEBACK_START_PERMILLE)
    /// of the limit it wakes the scanner if
    /// that writes back (writeback on, and the host gave the scanner a device).
    fn check_room(&self) -> Result<(), Error> {
        let Some((held, limit)) = self.held_and_limit() else {
            return Ok(());
        };
        if self.writeback_on.load(Ordering::Relaxed)
            && writeback_due(held, limit)
            && self.writeback_device.load(Ordering::Relaxed)
        {
            self.wake_for_writeback();
        }
        if held >= limit {
            return Err(Error::PoolFull);
        }
        Ok(())
    }

    /// Everything held and the limit, if a limit is set.
    pub(crate) fn held_and_limit(&self) -> Option<(usize, usize)> {
        if !self.limited.load(Ordering::Relaxed) {
            return None;
        }
        let outside = self.outside_content_bytes();
        let content = self.content.lock();
        Some((
            content.held_bytes().saturating_add(outside),
            content.limit_bytes(),
        ))
    }

    /// Wake the scanner to write back (one atomic operation, never a wait).
    pub(crate) fn wake_for_writeback(&self) {
        if self.wake.notify() == Notify::WokeScanner {
            Stats::add(&self.stats.scanner_wakeups, 1);
        }
    }

    /// The limit on everything held now (`usize::MAX`: none).
    pub fn pool_limit_bytes(&self) -> usize {
        self.content.lock().limit_bytes()
    }

    /// Bytes held by the offset tables of every area (no lock taken).
    fn offset_table_bytes(&self) -> usize {
        let pages: u64 = self.areas.iter().map(SwapArea::pages_held).sum();
        usize::try_from(pages).map_or(usize::MAX, |pages| pages.saturating_mul(PAGE_SIZE))
    }

    /// Bytes held outside the content lock: the offset tables and the ladder (no
    /// lock taken).
    fn outside_content_bytes(&self) -> usize {
        let ladder = self.ladder_bytes.load(Ordering::Relaxed);
        self.offset_table_bytes()
            .saturating_add(usize::try_from(ladder).unwrap_or(usize::MAX))
    }

    /// Record what the ladder holds after its regions changed (caller holds its lock).
    fn note_ladder_bytes(&self, scan: &ScanState<P>) {
        let bytes = scan.ladder.bytes_held() as u64;
        self.ladder_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Swap areas served now (initialised and not invalidated).
    pub fn active_areas(&self) -> usize {
        self.areas.iter().filter(|a| a.is_active()).count()
    }

    /// Bytes the pool holds (its pages, including its own metadata).
    pub fn pool_bytes_held(&self) -> usize {
        self.content.lock().pool.bytes_held()
    }

    /// The pool's own statistics (objects, data bytes, pages, fragmentation).
    pub fn pool_stats(&self) -> StoreStats {
        self.content.lock().pool.stats()
    }

    /// All bytes held from the provider: pool, entries, indexes and offset tables.
    pub fn total_bytes_held(&self) -> usize {
        self.bytes_held().total()
    }

    /// Count the distinct stored contents by encoding (walks every entry under the
    /// content lock: for statistics, not for a hot path).
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        let content = self.content.lock();
        content.blocks.for_each(|_, block| {
            census.blocks += 1;
            census.block_live_pages += block.live() as u64;
            census.block_frame_pages += block.pages() as u64;
            census.block_frame_bytes += block.frame_len() as u64;
        });
        content.entries.for_each(|_, entry| {
            let count = match entry.tag() {
                TAG_BLOCK => &mut census.blocked,
                TAG_DELTA => &mut census.delta,
                TAG_RAW => &mut census.raw,
                TAG_DEFLATE | TAG_ZSTD => &mut census.cold,
                _ => &mut census.lz4,
            };
            *count += 1;
            if entry.tag() == TAG_RAW {
                census.raw_sharers += u64::from(entry.sharers);
            }
            if entry.sharers == 0 {
                census.bases_only += 1;
            }
        });
        census
    }

    /// Charge each domain's pool bytes to `charges` from now on ([`DomainCharges`]:
    /// the kernel module charges the memory cgroup). Only before the first store
    /// that keeps an entry ([`Error::InvalidArgument`] after).
    pub fn set_domain_charges(&self, charges: &'static dyn DomainCharges) -> Result<(), Error> {
        self.content.lock().set_charges(charges)
    }

    /// The pool bytes `domain`'s contents hold, counted afresh from the entries
    /// (walks every entry under the content lock: for checks and reports).
    /// Under the global scope every content is domain 0's.
    pub fn domain_bytes(&self, domain: Domain) -> usize {
        self.content.lock().domain_bytes(domain)
    }

    /// How the page at (`swap_type`, `offset`) is kept now; `None` if the offset
    /// holds nothing. For reports (loads by encoding); the argument checks of
    /// [`load`](Self::load).
    pub fn encoding(&self, swap_type: usize, offset: u64) -> Result<Option<Encoding>, Error> {
        let area = self.area(swap_type)?;
        area.check_offset(offset)?;
        let table = area.lock_shard(offset);
        let key = match table.get(offset) {
            None => return Ok(None),
            Some(SlotValue::SameFilled(_)) => return Ok(Some(Encoding::SameFilled)),
            Some(SlotValue::Entry(key)) => key,
        };
        let tag = self.content.lock().entry(key)?.tag();
        drop(table);
        Ok(Some(match tag {
            TAG_BLOCK => Encoding::Block,
            TAG_DELTA => Encoding::Delta,
            TAG_RAW => Encoding::Raw,
            TAG_DEFLATE | TAG_ZSTD => Encoding::Cold,
            _ => Encoding::Lz4,
        }))
    }

    /// Bytes held from the provider, part by part.
    pub fn bytes_held(&self) -> BytesHeld {
        let offset_tables = self.offset_table_bytes();
        // One lock at a time: the ladder's, then the content's.
        let ladder = self.ladder.lock().ladder.bytes_held();
        let content = self.content.lock();
        BytesHeld {
            pool: content.pool.bytes_held(),
            entries: content.entries.bytes_held(),
            dedup_index: content.index.bytes_held(),
            similarity_index: content.similar.pages_held() * PAGE_SIZE,
            blocks: content.blocks.bytes_held(),
            offset_tables,
            ladder,
        }
    }

    fn area(&self, swap_type: usize) -> Result<&SwapArea, Error> {
        self.areas
            .get(swap_type)
            .ok_or(Error::InvalidArgument("swap type out of range"))
    }

    /// frontswap `init`: swap area `swap_type` with `nr_pages` offsets comes online.
    /// Re-initializing an area drops whatever it held.
    pub fn init(&self, swap_type: usize, nr_pages: u64) -> Result<(), Error> {
        if nr_pages > crate::offsets::MAX_OFFSETS {
            return Err(Error::InvalidArgument(
                "swap area larger than the offset table",
            ));
        }
        let area = self.area(swap_type)?;
        // The new ladder region first: if it is refused (no pages, no memory),
        // nothing changed and what the area holds stays.
        let region = self
            .ladder
            .lock()
            .ladder
            .add_region(nr_pages, swap_type as u64)?;
        if area.is_active()
            && let Err(e) = self.invalidate_area(swap_type)
        {
            let mut scan = self.ladder.lock();
            let _ = scan.ladder.remove_region(region);
            self.note_ladder_bytes(&scan);
            return Err(e);
        }
        let mut scan = self.ladder.lock();
        let old = scan
            .regions
            .get_mut(swap_type)
            .and_then(|r| r.replace(region));
        if let Some(old) = old {
            let _ = scan.ladder.remove_region(old);
        }
        self.note_ladder_bytes(&scan);
        drop(scan);
        area.activate(nr_pages);
        Ok(())
    }

    /// frontswap `store`: keep `page` for (`swap_type`, `offset`), replacing what the
    /// offset held; the page belongs to `domain` (see [`crate::domain`]: under
    /// the default scope it is joined only with pages of its own domain). On any
    /// error nothing changed and the host keeps the page.
    pub fn store<C: ColdCodec>(
        &self,
        swap_type: usize,
        offset: u64,
        page: &[u8],
        domain: Domain,
        scratch: &mut Scratch<C>,
    ) -> Result<StoreKind, Error> {
        let page = as_page_bytes(page)?;
        let area = self.area(swap_type)?;
        area.check_offset(offset)?;
        let stored = self.store_in(area, offset, page, domain, scratch);
        if let Err(e) = stored {
            self.count_reject(e);
        }
        stored
    }

    /// frontswap `load`: copy the page stored at (`swap_type`, `offset`) into `out`.
    /// [`Error::NotFound`] for an offset that holds nothing.
    pub fn load<C: ColdCodec>(
        &self,
        swap_type: usize,
        offset: u64,
        out: &mut [u8],
        scratch: &mut Scratch<C>,
    ) -> Result<(), Error> {
        let out = as_page_bytes_mut(out)?;
        let area = self.area(swap_type)?;
        area.check_offset(offset)?;
        // Holding the offset's lock keeps its entry, and so its pool object, alive
        // until the page is decoded (lock order: offset, then content).
        let table = area.lock_shard(offset);
        let key = match table.get(offset) {
            None => {
                Stats::add(&self.stats.load_not_found, 1);
                return Err(Error::NotFound);
            }
            Some(SlotValue::SameFilled(word)) => {
                drop(table);
                fill_page(out, fill_word_u64(word));
                Stats::add(&self.stats.loaded_pages, 1);
                return Ok(());
            }
            Some(SlotValue::Entry(key)) => key,
        };
        let content = self.content.lock();
        match content.plain_in_place(key)? {
            Some(object) => {
                // lz4 or raw in one pool page: decoded where it lies, after the
                // content lock, as a reader the scanner waits out.
                let reading = self.readers.enter();
                drop(content);
                // SAFETY: the object stays live and in place while it is read: the
                // offset's lock (`table`, held until after the decode) keeps its
                // entry referenced, so nothing frees it; the scanner, the only code
                // that re-encodes or compacts, waits for `reading` to drop.
                let bytes = unsafe { object.bytes() };
                let decoded = decode_plain(
                    object.tag(),
                    bytes,
                    out,
                    &mut scratch.decode.decompress,
                    &mut scratch.decode.cold,
                );
                drop(reading);
                drop(table);
                decoded?;
            }
            None => {
                // A delta, a cold-codec object, or an object across two pool pages: copied out
                // under the locks, decoded after them.
                let snapshot = content.snapshot(key, &mut scratch.decode)?;
                drop(content);
                drop(table);
                decode_snapshot(&snapshot, &mut scratch.decode, Some(out))?;
                if snapshot.decodes_block() {
                    Stats::add(&self.stats.block_loads, 1);
                }
            }
        }
        Stats::add(&self.stats.loaded_pages, 1);
        Ok(())
    }

    /// frontswap `invalidate_page`: forget (`swap_type`, `offset`). Returns whether it
    /// held a page.
    pub fn invalidate_page(&self, swap_type: usize, offset: u64) -> Result<bool, Error> {
        let area = self.area(swap_type)?;
        area.check_offset(offset)?;
        match area.take(&self.provider, offset) {
            Some(old) => {
                self.drop_stored_page(old);
                Stats::add(&self.stats.invalidated_pages, 1);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// frontswap `invalidate_area`: forget everything of `swap_type` (swapoff).
    pub fn invalidate_area(&self, swap_type: usize) -> Result<(), Error> {
        let area = self.area(swap_type)?;
        if !area.is_active() {
            return Err(Error::InvalidArgument("swap type not initialized"));
        }
        area.drain(&self.provider, |value| self.drop_stored_page(value));
        Stats::add(&self.stats.invalidated_areas, 1);
        Ok(())
    }

    /// Same-filled, else identical to a stored page, else compressed; then the
    /// offset points at it and what it held is released. For pages that are not
    /// same-filled, the slot and the entries change together under the offset's
    /// lock and the content lock: once for a duplicate, twice for a new page, with
    /// the compression outside every lock between the two.
    fn store_in<C: ColdCodec>(
        &self,
        area: &SwapArea,
        offset: u64,
        page: &[u8; PAGE_SIZE],
        domain: Domain,
        scratch: &mut Scratch<C>,
    ) -> Result<StoreKind, Error> {
        self.check_room()?;
        if let Some(word) = same_filled_word(page).and_then(fill_word) {
            let old = area.replace(&self.provider, offset, SlotValue::SameFilled(word))?;
            self.count_stored(StoreKind::SameFilled, old.is_some());
            if let Some(old) = old {
                self.drop_slot_reference(old);
            }
            return Ok(StoreKind::SameFilled);
        }
        let scope = self.config.dedup_scope;
        let (salt, hash) = (DomainSalt::new(self.config.dedup_salt), xxh3_64(page));
        let content_key = salt.content_key(hash, scope.effective(domain));
        let pending = if scope.joins() {
            let mut table = area.lock_shard(offset);
            let mut content = self.content.lock();
            let candidate = content.share_candidate(content_key, page, &mut scratch.decode);
            self.count_dedup_work(&mut content);
            let found = match candidate? {
                Candidate::Compared(found) => found,
                Candidate::InPlace { key, object } => {
                    // The candidate's sharer counts as a duplicate from here on: it
                    // is one if the bytes are equal, and is released like one if not.
                    Stats::add(&self.stats.duplicate_pages, 1);
                    // Its full comparison, outside the content lock: the sharer
                    // keeps it from being freed, `reading` keeps the scanner from
                    // re-encoding or compacting it away.
                    let reading = self.readers.enter();
                    drop(content);
                    // SAFETY: live and in place while compared, as just said.
                    let bytes = unsafe { object.bytes() };
                    let same = plain_matches(object.tag(), bytes, page);
                    drop(reading);
                    Stats::add(&self.stats.dedup_comparisons, 1);
                    if let Ok(true) = same {
                        return self.share_into_slot(table, offset, key);
                    }
                    // A hash match with other bytes (or a corrupt object): drop the
                    // sharer and look again, comparing under the lock.
                    Stats::add(&self.stats.dedup_collisions, 1);
                    content = self.content.lock();
                    self.count_unshared(content.unshare(key));
                    same?;
                    let found = content.share_identical(content_key, page, &mut scratch.decode);
                    self.count_dedup_work(&mut content);
                    found?
                }
            };
            match found {
                Lookup::Shared(key) => {
                    Stats::add(&self.stats.duplicate_pages, 1);
                    let replaced = self.point_offset_at(&mut table, &mut content, offset, key)?;
                    drop(content);
                    drop(table);
                    self.count_stored(StoreKind::Duplicate, replaced);
                    return Ok(StoreKind::Duplicate);
                }
                Lookup::Vacant(pending) => pending,
            }
        } else {
            // Scope `off`: no lookup, and no lock taken for one.
            Pending::unshared()
        };
        // Compress outside every lock; an identical page stored meanwhile by another
        // thread is found again under the lock and shared instead.
        let Scratch {
            compress, decode, ..
        } = scratch;
        let compressed = compress.compress(self.config.store_codec, page)?;
        let (bytes, tag, kind) = match compressed {
            Some(bytes) if bytes.len() <= self.config.max_compressed_len => {
                (bytes, self.config.store_codec.tag(), StoreKind::Compressed)
            }
            _ if self.keeps_incompressible(salt.salted_hash(hash, scope.effective(domain))) => {
                (&page[..], TAG_RAW, StoreKind::Raw)
            }
            _ => return Err(Error::Incompressible),
        };
        let mut table = area.lock_shard(offset);
        let mut content = self.content.lock();
        content.fit_pool_to_limit(self.outside_content_bytes());
        let inserted = content.insert_or_share(content_key, page, bytes, tag, decode, pending);
        self.count_dedup_work(&mut content);
        let (key, inserted) = inserted?;
        let kind = if inserted {
            Stats::add(&self.stats.compressed_pages, 1);
            kind
        } else {
            Stats::add(&self.stats.duplicate_pages, 1);
            StoreKind::Duplicate
        };
        let replaced = self.point_offset_at(&mut table, &mut content, offset, key)?;
        drop(content);
        drop(table);
        if inserted {
            self.note_growth(bytes.len());
        }
        self.count_stored(kind, replaced);
        Ok(kind)
    }

    /// Whether a poorly compressible page whose salted hash is `salted_hash` is kept
    /// raw: always under `keep_incompressible`; else if one with the same salted
    /// hash was refused lately (`keep_repeated_incompressible`, and a scope that
    /// shares; noted here when refused).
    fn keeps_incompressible(&self, salted_hash: u64) -> bool {
        if self.config.keep_incompressible {
            return true;
        }
        if !self.config.keep_repeated_incompressible || !self.config.dedup_scope.joins() {
            return false;
        }
        if self.refused.seen(salted_hash) {
            return true;
        }
        self.refused.note(salted_hash);
        false
    }

    /// Point `offset` at entry `key`, whose compared candidate's sharer (already
    /// counted as a duplicate) becomes the offset's reference: only the slot changes
    /// under the offset's lock; what it held is released after. If the slot cannot
    /// be stored (no memory for the offset table), the sharer is dropped again.
    fn share_into_slot(
        &self,
        mut table: ShardGuard<'_>,
        offset: u64,
        key: u32,
    ) -> Result<StoreKind, Error> {
        let old = match table.replace(&self.provider, offset, SlotValue::Entry(key)) {
            Ok(old) => old,
            Err(e) => {
                self.count_unshared(self.content.lock().unshare(key));
                return Err(e);
            }
        };
        drop(table);
        let replaced = old.is_some();
        if let Some(old) = old {
            self.drop_slot_reference(old);
        }
        self.count_stored(StoreKind::Duplicate, replaced);
        Ok(StoreKind::Duplicate)
    }

    /// Point `offset` at entry `key`, whose reference the caller took under
    /// `content`, and drop the reference of what the offset held (returns whether
    /// it held something). If the slot cannot be stored (no memory for the offset
    /// table), `key`'s reference is dropped again and nothing changed.
    fn point_offset_at(
        &self,
        table: &mut OffsetTable,
        content: &mut Content<P>,
        offset: u64,
        key: u32,
    ) -> Result<bool, Error> {
        let old = match table.replace(&self.provider, offset, SlotValue::Entry(key)) {
            Ok(old) => old,
            Err(e) => {
                self.count_unshared(content.unshare(key));
                return Err(e);
            }
        };
        match old {
            Some(SlotValue::Entry(old)) => self.count_unshared(content.unshare(old)),
            Some(SlotValue::SameFilled(_)) => Stats::sub(&self.stats.same_filled_pages, 1),
            None => {}
        }
        Ok(old.is_some())
    }

    /// The content lock, for a change that frees or moves pool objects a load may
    /// be decoding in place (re-encoding, compaction): taken, then the loads still
    /// reading outside it are waited out (none can start while it is held).
    pub(crate) fn lock_content_to_move(&self) -> MutexGuard<'_, InPlace<Content<P>>> {
        let content = self.content.lock();
        if self.readers.wait_for_none() {
            Stats::add(&self.stats.scanner_waits_for_loads, 1);
        }
        content
    }

    /// Pool growth past the watermark since the scanner's last burst is pressure:
    /// wake the scanner (one atomic operation when it is already awake or notified).
    fn note_growth(&self, bytes: usize) {
        let bytes = bytes as u64;
        let before = self.data_since_burst.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes >= self.config.wake_watermark_bytes as u64
            && self.wake.notify() == Notify::WokeScanner
        {
            Stats::add(&self.stats.scanner_wakeups, 1);
        }
    }

    /// Forget a stored slot value: drop its reference and count it gone.
    pub(crate) fn drop_stored_page(&self, value: SlotValue) {
        self.drop_slot_reference(value);
        Stats::sub(&self.stats.stored_pages, 1);
    }

    /// Drop the reference a slot value carries (same-filled values carry none) and
    /// count what it held gone, but not the stored page itself (a replacement).
    fn drop_slot_reference(&self, value: SlotValue) {
        match value {
            SlotValue::SameFilled(_) => Stats::sub(&self.stats.same_filled_pages, 1),
            SlotValue::Entry(key) => self.count_unshared(self.content.lock().unshare(key)),
        }
    }

    /// Count one reference dropped from an entry; a release that failed or leaked
    /// is counted in `release_errors`.
    fn count_unshared(&self, released: Result<Released, Error>) {
        let released = match released {
            Ok(released) => released,
            Err(_) => {
                Stats::add(&self.stats.release_errors, 1);
                return;
            }
        };
        if released.leaked > 0 {
            Stats::add(&self.stats.release_errors, u64::from(released.leaked));
        }
        if released.still_shared {
            Stats::sub(&self.stats.duplicate_pages, 1);
        }
        // Most releases free one plain entry or nothing: no atomic for a zero.
        if released.plain_freed > 0 {
            Stats::sub(
                &self.stats.compressed_pages,
                u64::from(released.plain_freed),
            );
        }
        if released.deltas_freed > 0 {
            Stats::sub(&self.stats.patched_pages, u64::from(released.deltas_freed));
        }
        if released.blocked_freed > 0 {
            Stats::sub(&self.stats.blocked_pages, u64::from(released.blocked_freed));
        }
        if released.kept_as_base {
            Stats::add(&self.stats.base_only_pages, 1);
        }
        if released.bases_freed > 0 {
            Stats::sub(&self.stats.base_only_pages, u64::from(released.bases_freed));
        }
    }

    /// Count a successful store of `kind`; a page that `replaced` another leaves
    /// the number stored as it was.
    fn count_stored(&self, kind: StoreKind, replaced: bool) {
        let s = &self.stats;
        if !replaced {
            Stats::add(&s.stored_pages, 1);
        }
        Stats::add(&s.written_pages, 1);
        match kind {
            StoreKind::SameFilled => Stats::add(&s.same_filled_pages, 1),
            StoreKind::Duplicate => Stats::add(&s.dedup_hits, 1),
            StoreKind::Compressed => {}
            StoreKind::Raw => Stats::add(&s.incompressible_kept, 1),
        }
    }

    /// Move the dedup work counted under the content lock into the statistics.
    fn count_dedup_work(&self, content: &mut Content<P>) {
        let counts = content.take_dedup_counts();
        Stats::add(&self.stats.dedup_comparisons, counts.comparisons);
        Stats::add(&self.stats.dedup_collisions, counts.collisions);
    }

    fn count_reject(&self, error: Error) {
        let counter = match error {
            Error::PoolFull => &self.stats.reject_pool_full,
            Error::OutOfMemory => &self.stats.reject_alloc_fail,
            Error::Incompressible => &self.stats.reject_compress_poor,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl<P: PageProvider + Clone, K: Parker> Drop for Backend<P, K> {
    fn drop(&mut self) {
        for area in &self.areas {
            area.drain(&self.provider, |_| {});
        }
    }
}
