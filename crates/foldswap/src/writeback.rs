//! Writeback: when everything held nears the pool limit, the coldest pages go to
//! the swap device, so stores keep succeeding and the newest pages stay in RAM.
//!
//! Without it a full pool refuses every new store: the newest pages, the ones
//! most likely to be wanted soon, go to disk while the oldest stay for good.
//! zswap writes its least recently stored entries back; foldswap chooses by what
//! a page's departure frees.
//!
//! ## What goes first
//!
//! Offsets are swept in order from a cursor that persists between runs (a clock
//! hand: no list, no metadata per entry). An offset's content falls in one of
//! three [`VictimClass`]es, and a run takes the best class the area holds:
//!
//! 1. **Cold lone pages**: the only offset holding its content, no delta built on
//!    it, and already aged or examined by the scanner. Writing one back frees its
//!    bytes at once (a page in a cold block frees its share when the block is
//!    rewritten).
//! 2. **Lone pages** not yet cold: the same, stored since the scanner last came by.
//! 3. **Shared contents and delta bases**: writing back one offset of a content
//!    that several offsets share frees nothing until the last of them goes, and a
//!    base is kept for its deltas even when no offset holds it. They go last.
//!
//! A run relaxes to the next class only after a whole sweep of every active area
//! found nothing in the current one, so no page of a worse class goes while a
//! better one is held. Same-filled offsets hold no pool bytes and are never
//! written back.
//!
//! ## The protocol (as zswap's `zswap_writeback_entry`)
//!
//! 1. Under the offset's lock and the content lock, note the victim's entry and
//!    generation; release both.
//! 2. [`SwapDevice::claim`] the offset's swap slot, with no lock held (the kernel
//!    host allocates a folio in the swap cache and may sleep). A slot that is busy
//!    (being swapped in) is skipped: the page just became hot.
//! 3. Under the offset's lock again: if the offset no longer holds that entry at
//!    that generation (it was invalidated or stored over meanwhile), release the
//!    slot and skip. Otherwise copy the encoded bytes out under the content lock
//!    and decode them, still under the offset's lock, then take the offset's
//!    value out of the table; only then release the offset's lock.
//! 4. Drop the offset's reference (the content goes with its last one), then
//!    [`SwapDevice::write`] the page into the claimed slot.
//!
//! From step 3 on the offset holds nothing: a load returns `NotFound` and the
//! host reads its device, where the page is (the kernel host finds the folio in
//! the swap cache, locked until written). A page written back is never also
//! loaded from the pool. A failed decode leaves the offset as it was.
//!
//! ## When
//!
//! - **At the limit.** A store that finds everything held at or above
//!   [`WRITEBACK_START_PERMILLE`] of the limit wakes the scanner (one atomic
//!   operation, never a wait). The scanner's thread, given a device
//!   ([`crate::Backend::run_scanner_writing_back`]), writes back until held falls
//!   to [`WRITEBACK_TARGET_PERMILLE`], before each burst; writeback that becomes
//!   due during a burst ends it after the batch in flight.
//! - **Under memory pressure.** The host (the kernel's shrinker) asks for a number
//!   of pages with [`Backend::request_writeback`]; the scanner writes back up to
//!   that many *lone* pages, whatever the limit: cold ones first, then those the
//!   scanner has not reached yet (every page in the pool was already evicted from
//!   RAM, and the scanner may lag behind a burst of stores), never a shared
//!   content or a base: writing one back frees nothing.
//!
//! `Config::writeback` and [`Backend::set_writeback`] turn both off; a full pool
//! then refuses stores as before.

use foldswap_mem::sync::Ordering;
use foldswap_mem::{Error, PAGE_SIZE, PageProvider};
use foldswap_pool::ColdCodec;
use foldswap_wake::Parker;

use crate::area::SwapArea;
use crate::backend::Backend;
use crate::content::Entry;
use crate::decode::decode_snapshot;
use crate::offsets::SlotValue;
use crate::scratch::Scratch;
use crate::stats::Stats;

/// Everything held at this share of the limit (thousandths) starts writeback.
pub const WRITEBACK_START_PERMILLE: usize = 950;
/// Writeback goes on until everything held is at most this share of the limit
/// (zswap's `accept_threshold_percent` default is 90).
pub const WRITEBACK_TARGET_PERMILLE: usize = 900;
/// Most pages one run writes back before the scanner's burst gets its turn.
pub const WRITEBACK_MAX_PAGES_PER_RUN: u32 = 256;
/// Most pages a host's requests under memory pressure keep asked for
/// ([`Backend::request_writeback`]); more are dropped, as a shrinker's next call
/// asks again while the pressure lasts.
pub const WRITEBACK_MAX_REQUESTED: u32 = 4096;

/// The host's swap device, as writeback needs it.
///
/// While a slot is claimed the host keeps every other user of that swap slot
/// out: no swap-in reads it and it is not freed (the kernel: a locked folio in
/// the swap cache, as zswap's writeback holds). The backend relies on this only
/// for what the host sees; its own tables stay consistent under any interleaving.
pub trait SwapDevice {
    /// A claimed slot.
    type Slot;

    /// Claim (`swap_type`, `offset`)'s swap slot for a write, or `None` if it is
    /// busy (a swap-in or another writer has it). Called with no backend lock
    /// held; it may sleep.
    fn claim(&self, swap_type: usize, offset: u64) -> Option<Self::Slot>;

    /// Write `page` into the claimed slot and let the slot go. The host keeps
    /// the page (the kernel: in the swap cache) until the write has completed, so
    /// nothing is lost if the device is slow or the write fails and is retried.
    fn write(&self, slot: Self::Slot, page: &[u8; PAGE_SIZE]);

    /// Let a claimed slot go without writing (the offset's page changed).
    fn release(&self, slot: Self::Slot);
}

/// How much writing back one offset's content frees, best first (see the
/// module's doc for the order and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VictimClass {
    /// The only offset holding its content, no delta on it, aged or examined.
    ColdLone,
    /// The only offset holding its content, no delta on it, not yet cold.
    Lone,
    /// A content several offsets share, or the base of deltas.
    SharedOrBase,
}

impl VictimClass {
    /// The class of an offset holding `entry`.
    pub fn of(entry: &Entry) -> Self {
        if entry.sharers == 1 && entry.dependents() == 0 {
            if entry.age() > 0 || entry.examined() {
                VictimClass::ColdLone
            } else {
                VictimClass::Lone
            }
        } else {
            VictimClass::SharedOrBase
        }
    }

    /// The class a run relaxes to after a sweep found nothing in this one.
    pub fn next(self) -> Option<Self> {
        match self {
            VictimClass::ColdLone => Some(VictimClass::Lone),
            VictimClass::Lone => Some(VictimClass::SharedOrBase),
            VictimClass::SharedOrBase => None,
        }
    }
}

/// What one writeback run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WritebackReport {
    /// Pages written to the device (their offsets no longer in the pool).
    pub written: u32,
    /// Victims skipped because the device had their slot busy.
    pub busy: u32,
    /// Victims skipped because their offset changed between choice and claim.
    pub raced: u32,
    /// Offsets looked at.
    pub visited: u64,
    /// The worst class written back in this run (`None`: nothing written).
    pub worst_class: Option<VictimClass>,
}

/// Offsets a run looks at between two chances for other threads to run (the
/// kernel host: `cond_resched`, in a kernel that does not preempt itself).
const YIELD_EVERY_OFFSETS: u64 = 4096;

/// Where the next sweep starts: the clock hand over every area's offsets.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WritebackCursor {
    pub(crate) swap_type: usize,
    pub(crate) offset: u64,
}

/// Whether everything `held` has reached the share of `limit` that starts
/// writeback.
pub(crate) fn writeback_due(held: usize, limit: usize) -> bool {
    held >= permille_of(limit, WRITEBACK_START_PERMILLE)
}

/// `permille` thousandths of `bytes`, without overflow.
fn permille_of(bytes: usize, permille: usize) -> usize {
    (bytes / 1000)
        .saturating_mul(permille)
        .saturating_add(bytes % 1000 * permille / 1000)
}

/// A victim as it was when chosen: its offset's entry and that entry's
/// generation.
#[derive(Debug, Clone, Copy)]
struct Victim {
    key: u32,
    generation: u32,
}

/// When a run stops (besides its page budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// At the target share of the limit; classes relax after fruitless sweeps.
    Target,
    /// Never for the limit; lone pages only, cold ones first (pressure).
    LonePages,
}

impl Goal {
    /// Whether a run with this goal may take victims of `class`.
    fn may_take(self, class: VictimClass) -> bool {
        self == Goal::Target || class < VictimClass::SharedOrBase
    }
}

/// How writing back one chosen victim ended.
enum Outcome {
    Written,
    Busy,
    Raced,
}

impl<P: PageProvider + Clone, K: Parker> Backend<P, K> {
    /// Write pages back to `device`, best class first (see the module's doc),
    /// until everything held is at most [`WRITEBACK_TARGET_PERMILLE`] of the
    /// limit or `max_pages` went. Returns at once, writing nothing, when no limit
    /// is set, writeback is off, held is below the target, or another run is
    /// going on. A victim that cannot be decoded stays where it is and is counted
    /// in `writeback_errors`.
    pub fn write_back<D: SwapDevice, C: ColdCodec>(
        &self,
        device: &D,
        max_pages: u32,
        scratch: &mut Scratch<C>,
    ) -> WritebackReport {
        self.write_back_until(device, max_pages, scratch, Goal::Target)
    }

    /// Write back up to `max_pages` lone pages, cold ones first, whatever the limit
    /// (what the host asked for under memory pressure: see the module's doc); never
    /// a shared content or a base. Ends after a sweep of every active area finds no
    /// lone page. Returns at once, writing nothing, when writeback is off or another
    /// run is going on.
    pub fn write_back_lone<D: SwapDevice, C: ColdCodec>(
        &self,
        device: &D,
        max_pages: u32,
        scratch: &mut Scratch<C>,
    ) -> WritebackReport {
        self.write_back_until(device, max_pages, scratch, Goal::LonePages)
    }

    /// Turn writeback on or off (at the limit and under pressure); off, a full
    /// pool refuses stores. Pages already written back stay on the device.
    pub fn set_writeback(&self, on: bool) {
        self.writeback_on.store(on, Ordering::Relaxed);
        if !on {
            self.writeback_requested.store(0, Ordering::Relaxed);
        }
    }

    /// Whether writeback is on.
    pub fn writeback_enabled(&self) -> bool {
        self.writeback_on.load(Ordering::Relaxed)
    }

    /// Ask for `pages` lone pages to be written back (memory pressure: the kernel's
    /// shrinker) and wake the scanner, which writes them ([`Self::write_back_lone`])
    /// before its next batch. Requests add up to at most
    /// [`WRITEBACK_MAX_REQUESTED`]. Never waits; nothing happens with writeback
    /// off or no scanner given a device. Returns the pages now asked for.
    pub fn request_writeback(&self, pages: u32) -> u32 {
        if pages == 0 || !self.writeback_enabled() || !self.writeback_device.load(Ordering::Relaxed)
        {
            return 0;
        }
        let add = |asked: u32| Some(asked.saturating_add(pages).min(WRITEBACK_MAX_REQUESTED));
        let before = self
            .writeback_requested
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, add)
            .unwrap_or_else(|asked| asked);
        let now = add(before).unwrap_or(before);
        Stats::add(
            &self.stats.writeback_requested_pages,
            u64::from(now - before),
        );
        self.wake_for_writeback();
        now
    }

    /// Take up to `max_pages` of the pages asked for under pressure.
    pub(crate) fn take_writeback_request(&self, max_pages: u32) -> u32 {
        let take = |asked: u32| Some(asked - asked.min(max_pages));
        let before = self
            .writeback_requested
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
            .unwrap_or_else(|asked| asked);
        before.min(max_pages)
    }

    fn write_back_until<D: SwapDevice, C: ColdCodec>(
        &self,
        device: &D,
        max_pages: u32,
        scratch: &mut Scratch<C>,
        goal: Goal,
    ) -> WritebackReport {
        let mut report = WritebackReport::default();
        if !self.writeback_enabled() {
            return report;
        }
        let Some(mut cursor) = self.writeback_cursor.try_lock() else {
            return report;
        };
        let mut class = VictimClass::ColdLone;
        let span: u64 = self
            .areas
            .iter()
            .filter(|a| a.is_active())
            .map(SwapArea::nr_pages)
            .sum();
        // Offsets looked at since the last page was written at this class: a
        // victim skipped (busy, raced, undecodable) does not count as found, or
        // one that stays so would keep the run sweeping for ever.
        let mut fruitless = 0u64;
        let wanted = || goal == Goal::LonePages || self.above_writeback_target();
        let mut more_wanted = wanted();
        while more_wanted && report.written < max_pages {
            if fruitless >= span {
                match class.next().filter(|&next| goal.may_take(next)) {
                    Some(next) => (class, fruitless) = (next, 0),
                    None => break,
                }
                continue;
            }
            let Some((swap_type, offset)) = self.advance_cursor(&mut cursor) else {
                break;
            };
            report.visited += 1;
            fruitless += 1;
            if report.visited % YIELD_EVERY_OFFSETS == 0 {
                // A sweep of a large sparse area holds no lock here: let others run.
                self.wake.yield_now();
            }
            let area = &self.areas[swap_type];
            let Some(victim) = self.victim_at(area, offset, class) else {
                continue;
            };
            match self.write_back_one(device, swap_type, offset, victim, scratch) {
                Ok(Outcome::Written) => {
                    fruitless = 0;
                    report.written += 1;
                    report.worst_class = report.worst_class.max(Some(class));
                    Stats::add(&self.stats.written_back_pages, 1);
                    more_wanted = wanted();
                }
                Ok(Outcome::Busy) => {
                    report.busy += 1;
                    Stats::add(&self.stats.writeback_busy, 1);
                }
                Ok(Outcome::Raced) => {
                    report.raced += 1;
                    Stats::add(&self.stats.writeback_raced, 1);
                }
                Err(_) => Stats::add(&self.stats.writeback_errors, 1),
            }
        }
        report
    }

    /// Whether everything held is above the share of the limit writeback
    /// brings it down to (false with no limit).
    pub fn above_writeback_target(&self) -> bool {
        self.held_and_limit()
            .is_some_and(|(held, limit)| held > permille_of(limit, WRITEBACK_TARGET_PERMILLE))
    }

    /// Whether the scanner has writeback to do before its next batch: it has a
    /// device, writeback is on, and a run is due or a host asked for pages.
    pub(crate) fn writeback_wanted(&self) -> bool {
        self.writeback_device.load(Ordering::Relaxed)
            && (self.writeback_requested.load(Ordering::Relaxed) > 0 || self.writeback_due())
    }

    /// Whether a writeback run is due: writeback on and everything held at
    /// [`WRITEBACK_START_PERMILLE`] of the limit or past it.
    pub fn writeback_due(&self) -> bool {
        self.writeback_enabled()
            && self
                .held_and_limit()
                .is_some_and(|(held, limit)| writeback_due(held, limit))
    }

    /// The offset under the cursor (skipping inactive areas), moving the cursor
    /// one on; `None` when no area is active.
    fn advance_cursor(&self, cursor: &mut WritebackCursor) -> Option<(usize, u64)> {
        for _ in 0..=self.areas.len() {
            let swap_type = cursor.swap_type % self.areas.len();
            let area = &self.areas[swap_type];
            if area.is_active() && cursor.offset < area.nr_pages() {
                let offset = cursor.offset;
                cursor.offset += 1;
                return Some((swap_type, offset));
            }
            // INVARIANT: the cursor names an area index below MAX_SWAP_TYPES.
            *cursor = WritebackCursor {
                swap_type: (swap_type + 1) % self.areas.len(),
                offset: 0,
            };
        }
        None
    }

    /// The entry at `offset` if it is a victim of `class` or a better one.
    fn victim_at(&self, area: &SwapArea, offset: u64, class: VictimClass) -> Option<Victim> {
        let table = area.lock_shard(offset);
        let Some(SlotValue::Entry(key)) = table.get(offset) else {
            return None;
        };
        let content = self.content.lock();
        let entry = content.entry(key).ok()?;
        (VictimClass::of(entry) <= class).then_some(Victim {
            key,
            generation: entry.generation,
        })
    }

    /// Claim the victim's slot, check it is still there, decode it, take it out
    /// of its offset and write it (the protocol in the module's doc).
    fn write_back_one<D: SwapDevice, C: ColdCodec>(
        &self,
        device: &D,
        swap_type: usize,
        offset: u64,
        victim: Victim,
        scratch: &mut Scratch<C>,
    ) -> Result<Outcome, Error> {
        let Some(slot) = device.claim(swap_type, offset) else {
            return Ok(Outcome::Busy);
        };
        let area = &self.areas[swap_type];
        let mut table = area.lock_shard(offset);
        let snapshot = {
            let content = self.content.lock();
            let current = match table.get(offset) {
                Some(SlotValue::Entry(key)) if key == victim.key => content.entry(key).ok(),
                _ => None,
            };
            if current.is_none_or(|entry| entry.generation != victim.generation) {
                drop(content);
                drop(table);
                device.release(slot);
                return Ok(Outcome::Raced);
            }
            content.snapshot(victim.key, &mut scratch.decode)
        };
        // Decoded under the offset's lock, which keeps the entry referenced.
        let decoded = snapshot.and_then(|snapshot| {
            decode_snapshot(
                &snapshot,
                &mut scratch.decode,
                Some(scratch.target.as_bytes_mut()),
            )
        });
        if let Err(e) = decoded {
            drop(table);
            device.release(slot);
            return Err(e);
        }
        let taken = table.take(&self.provider, offset);
        drop(table);
        if let Some(value) = taken {
            self.drop_stored_page(value);
        }
        device.write(slot, scratch.target.as_bytes());
        Ok(Outcome::Written)
    }
}
