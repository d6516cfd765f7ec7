//! The scanner: background work that should not slow a store.
//!
//! Stored pages that have sat in the pool for `cold_rounds` scanner rounds are
//! looked at once more, outside the store path:
//!
//! 1. **Patching** (Difference Engine). The page's similarity signature (hashes of
//!    16-byte blocks at fixed pseudo-random offsets, foldswap-delta's default; the
//!    paper used 64) is looked up in the similarity
//!    index; a candidate that is a plain (non-delta) entry serves as the base of a
//!    delta. Deltas never chain and a base never becomes a delta itself.
//! 2. **Recompression.** An lz4 page is recompressed with the host's cold codec
//!    (zstd; deflate for hosts without it; none: the scanner only patches).
//! 3. **Cold blocks** (with a codec that forms them, zstd, and `block_pages` > 1).
//!    Instead of recompressing a cold page alone, the scanner gathers the cold
//!    pages of its *window* — the aligned run of [`WINDOW_BLOCKS`] ×
//!    `block_pages` offsets it lies in (pages swapped out together make good
//!    neighbours) — in offset order, and compresses each `block_pages` of them as
//!    one frame ([`crate::block`]). Each block is one run of one window's
//!    offsets, so loads in offset order decode each frame once (blocks gathered
//!    from whatever followed the visited page left stragglers that formed blocks
//!    scattered over the area: 2.1 frames decoded per block on the dev corpus).
//!    A delta is still kept when it is smaller than the page's likely share of a
//!    block. A block whose frame would not be smaller than its
//!    pages alone is not formed: its pages are recompressed alone. A block at most
//!    3/4 live is rewritten: the ladder's visit to one of its pages gathers its
//!    window anew, the block's survivors (each weighed at its share of the old
//!    frame) with the window's other cold pages, so every survivor leaves in that
//!    pass and the old block goes with the last. With blocks off, each survivor
//!    the ladder visits moves out into an object of its own.
//!
//! The smallest of {current encoding, cold codec, delta, block} wins; an entry is
//! re-encoded only if it is still the one that was read (its generation) and, for a
//! delta, its base is still the one encoded against. Every byte is read and written
//! through the same snapshot/decode path as `load`, so a re-encoded entry still
//! loads exactly.
//!
//! Which offsets are visited and how many per batch is the ladder's decision: each
//! swap area is a ladder region, batches are sized from the CPU budget and the
//! measured per-page cost (the host supplies the clock), and areas where the scanner
//! keeps finding savings climb to rungs with more CPU. The scanner thread sleeps in
//! foldswap-wake between bursts; the store path wakes it when the pool grows past
//! the watermark, and a notification during a burst makes it run again.

use core::time::Duration;

use foldswap_delta::{EncodeScratch, Signature, encode};
use foldswap_ladder::{BatchResult, Next};
use foldswap_mem::sync::Ordering;
use foldswap_mem::{Error, PAGE_SIZE, PageProvider};
use foldswap_pool::{Clock, ColdCodec, TAG_LZ4, TAG_RAW};
use foldswap_wake::{Parker, WaitOutcome};

use crate::backend::Backend;
use crate::block::{MAX_BLOCK_PAGES, WINDOW_BLOCKS};
use crate::content::{BlockStored, Entry, Reencoded, TAG_DELTA};
use crate::decode::decode_snapshot;
use crate::domain::{Domain, DomainSalt};
use crate::offsets::SlotValue;
use crate::scratch::Scratch;
use crate::stats::Stats;
use crate::tunables::ScanTunables;
use crate::writeback::{SwapDevice, WRITEBACK_MAX_PAGES_PER_RUN};

/// What one burst of scanning did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BurstReport {
    /// Ladder batches run.
    pub batches: u32,
    /// Offsets visited.
    pub pages: u64,
    /// Entries re-encoded smaller (deltas and recompressions).
    pub improved: u64,
    /// Ladder rounds that ended during the burst.
    pub rounds_ended: u32,
    /// How long the ladder wants the scanner to sleep, ns (0 if it stopped early).
    pub sleep_ns: u64,
    /// The burst stopped early because writeback became due or was asked for
    /// while it ran (only for a scanner with a swap device).
    pub ended_for_writeback: bool,
}

/// What looking at one offset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageOutcome {
    /// The offset holds no stored bytes (empty or same-filled): nothing to scan.
    Empty,
    Skipped,
    Unchanged,
    Patched,
    Recompressed,
    /// The ladder's page is cold and due: its window is to be gathered.
    WindowDue,
    /// The page waits in the scratch for its cold block to be formed; `flushed`
    /// pages of the block gathered before (full, or of another domain or
    /// window), formed first, joined it.
    Gathered {
        flushed: u32,
    },
    /// The page left a cold block with holes (blocks off: into an object of
    /// its own).
    Rewritten,
}

/// A page gathered for the cold block being formed: its entry, the generation
/// read, and the bytes its encoding holds now.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Gathered {
    key: u32,
    generation: u32,
    encoded_len: u32,
    domain: Domain,
    window: GatherWindow,
    /// A survivor of an older block (its `encoded_len` is its share of that
    /// block's frame).
    from_block: bool,
}

/// The aligned run of [`WINDOW_BLOCKS`] × `block_pages` offsets of one swap
/// area whose cold pages are gathered together, in offset order, into blocks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GatherWindow {
    /// The area's ladder tag (its swap type).
    area: u64,
    /// The window's first offset: a multiple of its span.
    first: u64,
}

impl GatherWindow {
    /// The window of `offset` in the area tagged `area`.
    fn of(area: u64, offset: u64, tunables: &ScanTunables) -> Self {
        let span = Self::span(tunables);
        GatherWindow {
            area,
            first: offset - offset % span,
        }
    }

    /// Offsets in a window.
    fn span(tunables: &ScanTunables) -> u64 {
        WINDOW_BLOCKS * block_pages(tunables) as u64
    }

    /// One past its last offset.
    fn end(self, tunables: &ScanTunables) -> u64 {
        self.first.saturating_add(Self::span(tunables))
    }
}

impl<P: PageProvider + Clone, K: Parker> Backend<P, K> {
    /// The scanner thread's whole life: claim the scanner side of the wake protocol,
    /// then burst / sleep until [`Backend::shutdown`]. Returns when stopped, and
    /// only then: a burst that fails (the ladder's bookkeeping, never one page) is
    /// counted in `scanner_burst_errors` and the scanner sleeps and tries again.
    pub fn run_scanner<T: Clock, C: ColdCodec>(
        &self,
        scratch: &mut Scratch<C>,
        clock: &T,
    ) -> Result<(), Error> {
        self.run_scanner_with(scratch, clock, |_, _| {})
    }

    /// [`run_scanner`](Self::run_scanner) for a host with a swap device: before
    /// each burst, if everything held has reached the writeback threshold, the
    /// coldest pages are written back to `device` ([`crate::writeback`]), and the
    /// lone pages a host asked for under pressure ([`Backend::request_writeback`]).
    /// Stores that find the pool that full wake the scanner.
    pub fn run_scanner_writing_back<T: Clock, C: ColdCodec, D: SwapDevice>(
        &self,
        scratch: &mut Scratch<C>,
        clock: &T,
        device: &D,
    ) -> Result<(), Error> {
        self.writeback_device.store(true, Ordering::Relaxed);
        let run = self.run_scanner_with(scratch, clock, |backend, scratch| {
            if backend.writeback_due() {
                backend.write_back(device, WRITEBACK_MAX_PAGES_PER_RUN, scratch);
            }
            let asked = backend.take_writeback_request(WRITEBACK_MAX_PAGES_PER_RUN);
            if asked > 0 {
                backend.write_back_lone(device, asked, scratch);
            }
        });
        self.writeback_device.store(false, Ordering::Relaxed);
        run
    }

    fn run_scanner_with<T: Clock, C: ColdCodec>(
        &self,
        scratch: &mut Scratch<C>,
        clock: &T,
        mut before_burst: impl FnMut(&Self, &mut Scratch<C>),
    ) -> Result<(), Error> {
        let mut scanner = self.wake.claim_scanner()?;
        let max_sleep_ns = |tunables: &ScanTunables| u64::from(tunables.sleep_msecs) * 1_000_000;
        while let Ok(tunables) = scanner.begin_round() {
            before_burst(self, scratch);
            let sleep_ns = match self.scan_burst(&tunables, scratch, clock) {
                Ok(report) => report.sleep_ns.min(max_sleep_ns(&tunables)),
                Err(_) => {
                    Stats::add(&self.stats.scanner_burst_errors, 1);
                    max_sleep_ns(&tunables)
                }
            };
            if scanner.wait(Duration::from_nanos(sleep_ns)) == WaitOutcome::Stopped {
                break;
            }
        }
        Ok(())
    }

    /// Run ladder batches until the ladder's CPU budget says sleep, or
    /// `max_batches` ran. Ladder rounds that end are closed here (entries age, the
    /// pool is compacted).
    ///
    /// A page that cannot be scanned (its entry vanished or changed meanwhile, which
    /// is normal; or an error, counted in `scanner_page_errors`) is skipped: every
    /// batch the ladder hands out is completed. Only the ladder's own errors end
    /// the burst early.
    pub fn scan_burst<T: Clock, C: ColdCodec>(
        &self,
        tunables: &ScanTunables,
        scratch: &mut Scratch<C>,
        clock: &T,
    ) -> Result<BurstReport, Error> {
        let mut report = BurstReport::default();
        self.data_since_burst
            .store(0, foldswap_mem::sync::Ordering::Relaxed);
        // Writeback that became due during the burst ends it after the batch in
        // flight: a burst of many batches (cold blocks, a large backlog) must not
        // keep a full pool refusing stores until its end. Writeback due already
        // at the start was tried before the burst; it does not end this one, or
        // a pool that writeback cannot bring down would leave the scanner
        // running one batch at a time without sleeping.
        let writeback_wanted_at_start = self.writeback_wanted();
        while report.batches < tunables.max_batches.max(1) {
            if report.batches > 0 && !writeback_wanted_at_start && self.writeback_wanted() {
                report.ended_for_writeback = true;
                break;
            }
            let next = self.ladder.lock().next_batch(clock.now_ns())?;
            match next {
                Next::Scan(batch) => {
                    let start = clock.now_ns();
                    let mut result = BatchResult::default();
                    if let Some(area) = self.area_by_tag(batch.tag) {
                        for offset in batch.pages() {
                            result.pages_scanned += 1;
                            let window = GatherWindow::of(batch.tag, offset, tunables);
                            let visit = self.scan_offset(
                                area,
                                offset,
                                Visit::Ladder,
                                window,
                                tunables,
                                scratch,
                            );
                            if let Ok(PageOutcome::WindowDue) = visit {
                                report.improved +=
                                    self.gather_window(area, offset, window, tunables, scratch);
                            }
                            match visit {
                                Ok(PageOutcome::Patched | PageOutcome::Recompressed) => {
                                    result.pages_changed += 1;
                                    report.improved += 1;
                                }
                                // For the ladder a page whose window it sent
                                // to be gathered is changed (it may be patched,
                                // in a block or, rarely, left as it was); the
                                // burst counts the pages that joined blocks.
                                Ok(
                                    PageOutcome::WindowDue
                                    | PageOutcome::Gathered { .. }
                                    | PageOutcome::Rewritten,
                                ) => {
                                    result.pages_changed += 1;
                                }
                                Ok(PageOutcome::Empty) => result.pages_empty += 1,
                                Ok(PageOutcome::Skipped | PageOutcome::Unchanged) => {}
                                Err(_) => Stats::add(&self.stats.scanner_page_errors, 1),
                            }
                        }
                    }
                    result.cost_ns = clock.now_ns().saturating_sub(start);
                    self.ladder.lock().complete_batch(&batch, result)?;
                    report.batches += 1;
                    report.pages += u64::from(result.pages_scanned);
                    Stats::add(&self.stats.scanned_pages, u64::from(result.pages_scanned));
                    // No lock is held between batches: a host without preemption
                    // lets others run here (a burst runs up to `max_batches`). Past
                    // the batch's cost, so time other threads take here is not
                    // charged to the scanner's budget.
                    self.wake.yield_now();
                }
                Next::Sleep { until_ns } => {
                    report.sleep_ns = until_ns.saturating_sub(clock.now_ns());
                    break;
                }
                Next::RoundEnd => {
                    report.improved += u64::from(self.flush_block(tunables, scratch));
                    self.ladder.lock().end_round(clock.now_ns())?;
                    let mut content = self.lock_content_to_move();
                    content.compact();
                    content.fit_similarity_index();
                    content.fit_dedup_index();
                    drop(content);
                    report.rounds_ended += 1;
                    Stats::add(&self.stats.scanner_rounds, 1);
                    self.wake.yield_now();
                }
            }
        }
        // A block is not kept gathering across the sleep: its pages would go
        // stale while the scanner sleeps.
        report.improved += u64::from(self.flush_block(tunables, scratch));
        Ok(report)
    }

    fn area_by_tag(&self, tag: u64) -> Option<&crate::area::SwapArea> {
        let area = self.areas.get(usize::try_from(tag).ok()?)?;
        area.is_active().then_some(area)
    }

    /// The ladder found the page at `offset` cold and due: gather the cold pages
    /// of its whole window in offset order (pages swapped out together make good
    /// neighbours in a frame), forming a block of every `block_pages` of them and
    /// one of the rest at the window's end. So each block is a run of the
    /// window's offsets. (Forming one block per visit and leaving the rest of the
    /// window to a later visit left it to a visit that had to land on one of its
    /// unexamined pages: in the kernel guest the scanner had not settled after
    /// 60 s.) The neighbours are not the ladder's batch: not aged, not counted in
    /// it. Returns the pages patched or joined to blocks.
    fn gather_window<C: ColdCodec>(
        &self,
        area: &crate::area::SwapArea,
        offset: u64,
        window: GatherWindow,
        tunables: &ScanTunables,
        scratch: &mut Scratch<C>,
    ) -> u64 {
        let mut improved = 0;
        let end = window.end(tunables).min(area.nr_pages());
        for neighbour in window.first..end {
            if neighbour != offset {
                Stats::add(&self.stats.scanned_pages, 1);
            }
            let visit = Visit::Neighbour;
            match self.scan_offset(area, neighbour, visit, window, tunables, scratch) {
                Ok(PageOutcome::Patched) => improved += 1,
                Ok(PageOutcome::Gathered { flushed }) => improved += u64::from(flushed),
                Ok(_) => {}
                Err(_) => Stats::add(&self.stats.scanner_page_errors, 1),
            }
            if scratch.gathered_len >= block_pages(tunables) {
                improved += u64::from(self.flush_block(tunables, scratch));
            }
        }
        improved + u64::from(self.flush_block(tunables, scratch))
    }

    /// Move the lone entry `key` at `offset` to a lower page of the entries'
    /// slab if one has room ([`Content::move_lone_entry_lower`]), with the
    /// offset's lock held (`table`) so no load, store or release of the offset
    /// runs meanwhile, and point the offset at it. Returns the entry's key now.
    ///
    /// [`Content::move_lone_entry_lower`]: crate::content::Content::move_lone_entry_lower
    fn move_entry_lower(
        &self,
        table: &mut crate::area::ShardGuard<'_>,
        offset: u64,
        key: u32,
    ) -> Result<u32, Error> {
        let Some(moved) = self.content.lock().move_lone_entry_lower(key)? else {
            return Ok(key);
        };
        // The offset's leaf exists (it held `key` under this lock): no page is
        // taken, so this cannot fail for want of memory.
        table
            .replace(&self.provider, offset, SlotValue::Entry(moved))
            .map_err(|_| Error::Corrupt)?;
        Stats::add(&self.stats.entries_moved, 1);
        Ok(moved)
    }

    /// Age, patch or recompress the entry at `offset`, or gather it into a block.
    /// The ladder's visit to a delta also moves its base out of a block to
    /// rewrite if no offset holds the base any more.
    fn scan_offset<C: ColdCodec>(
        &self,
        area: &crate::area::SwapArea,
        offset: u64,
        visit: Visit,
        window: GatherWindow,
        tunables: &ScanTunables,
        scratch: &mut Scratch<C>,
    ) -> Result<PageOutcome, Error> {
        let key = {
            let mut table = area.lock_shard(offset);
            let key = match table.get(offset) {
                Some(SlotValue::Entry(key)) => key,
                None | Some(SlotValue::SameFilled(_)) => return Ok(PageOutcome::Empty),
            };
            // The ladder's visit packs the entries' slab down, one lone entry at
            // a time (not while pages wait to form a block: they are held by key).
            if visit == Visit::Ladder && scratch.gathered_len == 0 {
                self.move_entry_lower(&mut table, offset, key)?
            } else {
                key
            }
        };
        // 1. Under the lock: age the entry (on the ladder's visit); take a
        // snapshot if it is due.
        let (entry, snapshot, rewrite, held) = {
            let mut content = self.content.lock();
            // A neighbour is judged by the age the ladder's visit this round
            // would give it.
            let age = match visit {
                Visit::Ladder => content.age(key),
                Visit::Neighbour => content.entry(key).ok().map(|e| e.age().saturating_add(1)),
            };
            let Some(age) = age else {
                return Ok(PageOutcome::Skipped);
            };
            let entry = *content.entry(key)?;
            // A delta's base that no offset holds any more, in a block to
            // rewrite: no offset leads a window's gathering to it, so it would
            // keep the whole frame; the delta's visit moves it out alone.
            if visit == Visit::Ladder
                && let Some((base_key, base)) = content.kept_base_in_block_to_rewrite(&entry)?
            {
                let snapshot = content.snapshot(base_key, &mut scratch.decode)?;
                drop(content);
                decode_snapshot(
                    &snapshot,
                    &mut scratch.decode,
                    Some(scratch.target.as_bytes_mut()),
                )?;
                return self.move_out_of_block(base_key, &base, tunables, scratch);
            }
            // A page of a block with holes is rewritten: with blocks on, its
            // window is gathered anew, this block's survivors with its other
            // cold pages (a block is a run of one window's offsets, so its
            // survivors all leave in that one pass and the old frame goes);
            // without, it leaves alone.
            let rewrite = match entry.block() {
                Some((block, _)) => {
                    if visit == Visit::Ladder {
                        content.note_block_visit(block)?;
                    }
                    content.block(block)?.should_rewrite()
                }
                None => false,
            };
            let gathering = blocks_on(tunables, scratch) && (entry.place().is_some() || rewrite);
            if visit == Visit::Neighbour && !gathering {
                return Ok(PageOutcome::Skipped);
            }
            // A survivor shared by two offsets of the window is gathered once
            // (a page joining a block for the first time is marked examined).
            let gathered = scratch
                .gathered
                .get(..scratch.gathered_len)
                .unwrap_or_default();
            if rewrite && gathered.iter().any(|g| g.key == key) {
                return Ok(PageOutcome::Skipped);
            }
            if !rewrite
                && (u32::from(age) <= tunables.cold_rounds
                    || entry.tag() == TAG_DELTA
                    || entry.block().is_some()
                    || entry.examined())
            {
                return Ok(PageOutcome::Skipped);
            }
            if visit == Visit::Ladder && gathering {
                // Its window is gathered in offset order, this page with it.
                return Ok(PageOutcome::WindowDue);
            }
            content.mark_examined(key);
            // What the page holds now: its object, or its share of its block's
            // frame.
            let held = content.page_bytes(&entry);
            let snapshot = content.snapshot(key, &mut scratch.decode)?;
            (entry, snapshot, rewrite, held)
        };
        // 2. Outside: decode the page.
        decode_snapshot(
            &snapshot,
            &mut scratch.decode,
            Some(scratch.target.as_bytes_mut()),
        )?;
        if blocks_on(tunables, scratch) {
            let held = held.unwrap_or(snapshot.encoded_len());
            return self.patch_or_gather(key, &entry, held, window, tunables, scratch);
        }
        if rewrite {
            return self.move_out_of_block(key, &entry, tunables, scratch);
        }
        let mut best_len = snapshot.encoded_len();
        let mut choice = None;
        // 3. Recompress with the cold codec.
        let cold = &mut scratch.decode.cold;
        if tunables.recompress != 0
            && entry.tag() == TAG_LZ4
            && let Some(kind) = cold.kind()
        {
            set_cold_level(cold, tunables)?;
            if let Some(len) =
                cold.compress_page(scratch.target.as_bytes(), &mut scratch.recompressed)?
                && len < best_len
            {
                best_len = len;
                choice = Some(Encoding::Cold {
                    tag: kind.tag(),
                    len,
                });
            }
        }
        // 4. Patch against a similar stored page.
        let signature = self.signature_of(&entry, scratch.target.as_bytes());
        if tunables.patch != 0
            && let Some(patch) = self.try_patch(key, &entry, &signature, best_len, scratch)?
        {
            choice = Some(Encoding::Delta(patch));
        }
        let base = match choice {
            Some(Encoding::Delta(patch)) => Some(patch.base),
            _ => None,
        };
        let outcome = self.commit(key, &entry, choice, scratch)?;
        // A plain page may serve as the base of later deltas; a patched page's keys
        // lead to its base, which later pages like it can share.
        let indexed = match (outcome, base) {
            (PageOutcome::Patched, Some(base)) => base,
            _ => key,
        };
        self.content.lock().index_similar(&signature, indexed);
        Ok(outcome)
    }

    /// The similarity signature of `page` (the content of `entry`), its keys
    /// salted for the entry's domain: the index files it where only pages of
    /// that domain look.
    fn signature_of(&self, entry: &Entry, page: &[u8; PAGE_SIZE]) -> Signature {
        DomainSalt::new(self.config().dedup_salt)
            .signature(&self.sampler.signature(page), entry.domain())
    }

    /// Re-encode `key` as `choice` if nothing changed since it was read.
    fn commit<C: ColdCodec>(
        &self,
        key: u32,
        entry: &Entry,
        choice: Option<Encoding>,
        scratch: &Scratch<C>,
    ) -> Result<PageOutcome, Error> {
        let Some(choice) = choice else {
            return Ok(PageOutcome::Unchanged);
        };
        // 5. Under the lock: re-encode if nothing changed meanwhile.
        let (bytes, tag, base) = match choice {
            Encoding::Cold { tag, len } => (
                scratch.recompressed.get(..len).ok_or(Error::Corrupt)?,
                tag,
                None,
            ),
            Encoding::Delta(patch) => (
                scratch.delta_best.get(..patch.len).ok_or(Error::Corrupt)?,
                TAG_DELTA,
                Some((patch.base, patch.base_generation)),
            ),
        };
        let from_block = entry.block().is_some();
        self.reencode_counted(key, entry.generation, bytes, tag, base, from_block)
    }

    /// Re-encode `key` (if still of `generation`) and count it: a delta against
    /// `base`, or recompressed; `from_block` if it leaves a cold block.
    fn reencode_counted(
        &self,
        key: u32,
        generation: u32,
        bytes: &[u8],
        tag: u8,
        base: Option<(u32, u32)>,
        from_block: bool,
    ) -> Result<PageOutcome, Error> {
        let replaced = self
            .lock_content_to_move()
            .reencode(key, generation, bytes, tag, base);
        match replaced {
            Ok(Reencoded::Replaced) => {}
            // Freed, reused or changed since it was read (an invalidate, a store,
            // another re-encode): nothing to do.
            Ok(Reencoded::Stale) => return Ok(PageOutcome::Skipped),
            // Memory is short: the entry keeps its encoding and is looked at again
            // in a later round.
            Err(Error::OutOfMemory | Error::PoolFull) => {
                self.content.lock().unmark_examined(key, generation);
                return Ok(PageOutcome::Unchanged);
            }
            Err(e) => return Err(e),
        }
        let s = &self.stats;
        if from_block {
            // It leaves the pages in blocks.
            Stats::add(&s.block_rewrites, 1);
            Stats::sub(&s.blocked_pages, 1);
        }
        if base.is_some() {
            Stats::add(&s.patched_pages, 1);
            if !from_block {
                Stats::sub(&s.compressed_pages, 1);
            }
            Ok(PageOutcome::Patched)
        } else {
            // A plain page stays plain; a page out of a block becomes one.
            if from_block {
                Stats::add(&s.compressed_pages, 1);
            }
            Stats::add(&s.recompressed_pages, 1);
            Ok(PageOutcome::Recompressed)
        }
    }

    /// With cold blocks on: keep the page as a delta if one is smaller than its
    /// likely share of a block, else gather it for the block being formed (of
    /// its `window`).
    fn patch_or_gather<C: ColdCodec>(
        &self,
        key: u32,
        entry: &Entry,
        encoded_len: usize,
        window: GatherWindow,
        tunables: &ScanTunables,
        scratch: &mut Scratch<C>,
    ) -> Result<PageOutcome, Error> {
        let signature = self.signature_of(entry, scratch.target.as_bytes());
        // A delta is kept if it is smaller than about what the page would take
        // in a block. The bound was chosen on the dev corpus (8-page blocks at
        // zstd-3, settled bytes; runs vary by about 0.2 MB): 3/4 of the lz4 bytes
        // 30.5 MB, 9/16 30.6-30.8 MB, 3/8 30.8 MB. A page the cold codec already holds
        // alone gains less from a block: 7/8 of its bytes.
        let share = if entry.tag() == TAG_LZ4 {
            encoded_len * 3 / 4
        } else {
            encoded_len * 7 / 8
        };
        if tunables.patch != 0
            && let Some(patch) = self.try_patch(key, entry, &signature, share, scratch)?
        {
            let outcome = self.commit(key, entry, Some(Encoding::Delta(patch)), scratch)?;
            let indexed = if outcome == PageOutcome::Patched {
                patch.base
            } else {
                key
            };
            self.content.lock().index_similar(&signature, indexed);
            return Ok(outcome);
        }
        // A page in a block may still serve as a base (a survivor of an older
        // block was filed when it joined that one).
        if entry.block().is_none() {
            self.content.lock().index_similar(&signature, key);
        }
        // A page kept raw stays out of blocks: a frame holds its bytes as
        // literals, so it saves nothing there, and every load of it, and every
        // byte comparison a copy of it needs before it is shared (repeated
        // incompressible pages are kept raw for their copies), would decode
        // the block instead of reading it in place.
        if entry.tag() == TAG_RAW {
            return Ok(PageOutcome::Unchanged);
        }
        // A block joins pages of one domain and one window: a page of another
        // forms the block gathered so far first.
        let domain = entry.domain();
        let flushed = match scratch.gathered.first() {
            Some(first)
                if scratch.gathered_len > 0
                    && (first.domain != domain
                        || first.window != window
                        || scratch.gathered_len >= block_pages(tunables)) =>
            {
                self.flush_block(tunables, scratch)
            }
            _ => 0,
        };
        let at = scratch.gathered_len;
        let (Some(slot), Some(page)) = (
            scratch.gathered.get_mut(at),
            scratch.gather.get_mut(at * PAGE_SIZE..(at + 1) * PAGE_SIZE),
        ) else {
            return Err(Error::Corrupt);
        };
        page.copy_from_slice(scratch.target.as_bytes());
        *slot = Gathered {
            key,
            generation: entry.generation,
            encoded_len: encoded_len as u32,
            domain,
            window,
            from_block: entry.block().is_some(),
        };
        scratch.gathered_len += 1;
        Ok(PageOutcome::Gathered { flushed })
    }

    /// Form a cold block of the gathered pages; the pages that joined it. If the
    /// block would not be smaller than the pages alone (or one page is gathered),
    /// each is recompressed alone instead. Errors are counted
    /// (`scanner_page_errors`), not returned: the gathered pages are let go.
    fn flush_block<C: ColdCodec>(&self, tunables: &ScanTunables, scratch: &mut Scratch<C>) -> u32 {
        let n = core::mem::take(&mut scratch.gathered_len);
        if n == 0 {
            return 0;
        }
        match self.store_gathered(n, tunables, scratch) {
            Ok(improved) => improved,
            Err(_) => {
                Stats::add(&self.stats.scanner_page_errors, 1);
                0
            }
        }
    }

    fn store_gathered<C: ColdCodec>(
        &self,
        n: usize,
        tunables: &ScanTunables,
        scratch: &mut Scratch<C>,
    ) -> Result<u32, Error> {
        let gathered = scratch.gathered.get(..n).ok_or(Error::Corrupt)?;
        let pages = scratch.gather.get(..n * PAGE_SIZE).ok_or(Error::Corrupt)?;
        let cold = &mut scratch.decode.cold;
        let tag = cold.kind().ok_or(Error::Corrupt)?.tag();
        set_cold_level(cold, tunables)?;
        if n > 1
            && let Some(len) = cold.compress_block(pages, &mut scratch.frame)?
        {
            let mut members = [(0u32, 0u32); MAX_BLOCK_PAGES];
            for (member, g) in members.iter_mut().zip(gathered) {
                *member = (g.key, g.generation);
            }
            let frame = scratch.frame.get(..len).ok_or(Error::Corrupt)?;
            let stored = self
                .lock_content_to_move()
                .store_block(&members[..n], frame, tag);
            match stored {
                Ok(BlockStored::Formed {
                    joined,
                    moved,
                    leaked,
                }) => {
                    let s = &self.stats;
                    Stats::add(&s.blocks_formed, 1);
                    // Pages out of older blocks were counted in blocks already.
                    Stats::add(&s.blocked_pages, u64::from(joined - moved));
                    Stats::sub(&s.compressed_pages, u64::from(joined - moved));
                    Stats::add(&s.block_rewrites, u64::from(moved));
                    if leaked > 0 {
                        Stats::add(&s.release_errors, u64::from(leaked));
                    }
                    return Ok(joined);
                }
                Ok(BlockStored::Stale) => return Ok(0),
                Ok(BlockStored::NotSmaller) => {}
                Err(Error::OutOfMemory | Error::PoolFull) => {
                    let mut content = self.content.lock();
                    for g in gathered {
                        content.unmark_examined(g.key, g.generation);
                    }
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
        // Each page alone.
        let mut improved = 0;
        for (i, g) in gathered.iter().enumerate() {
            let page: &[u8; PAGE_SIZE] = pages
                .get(i * PAGE_SIZE..(i + 1) * PAGE_SIZE)
                .and_then(|p| p.try_into().ok())
                .ok_or(Error::Corrupt)?;
            let (bytes, tag) = alone(cold, tag, page, &mut scratch.recompressed)?;
            if bytes.len() >= g.encoded_len as usize {
                continue;
            }
            let outcome =
                self.reencode_counted(g.key, g.generation, bytes, tag, None, g.from_block)?;
            improved += u32::from(outcome == PageOutcome::Recompressed);
        }
        Ok(improved)
    }

    /// Move the page at `key` (decoded in `scratch.target`) out of its cold block
    /// into an object of its own: the cold codec's, or raw if that does not fit.
    fn move_out_of_block<C: ColdCodec>(
        &self,
        key: u32,
        entry: &Entry,
        tunables: &ScanTunables,
        scratch: &mut Scratch<C>,
    ) -> Result<PageOutcome, Error> {
        let cold = &mut scratch.decode.cold;
        set_cold_level(cold, tunables)?;
        let tag = cold.kind().ok_or(Error::Corrupt)?.tag();
        let page = scratch.target.as_bytes();
        let (bytes, tag) = alone(cold, tag, page, &mut scratch.recompressed)?;
        match self.reencode_counted(key, entry.generation, bytes, tag, None, true)? {
            PageOutcome::Recompressed => Ok(PageOutcome::Rewritten),
            other => Ok(other),
        }
    }

    /// Find a similar plain entry and encode `scratch.target` against it; `Some` if
    /// the delta is shorter than `limit` bytes.
    fn try_patch<C: ColdCodec>(
        &self,
        key: u32,
        entry: &Entry,
        signature: &Signature,
        limit: usize,
        scratch: &mut Scratch<C>,
    ) -> Result<Option<Patch>, Error> {
        if entry.dependents() > 0 || !self.config().dedup_scope.joins() {
            // A base stays plain: deltas never chain. Under scope `off` no page
            // is patched against another.
            return Ok(None);
        }
        // A page of a block is weighed at its share of the frame, which for a
        // block with few live pages exceeds a page; no delta is longer than
        // the delta buffer (a page) anyway.
        let limit = limit.min(scratch.delta_out.len() + 1);
        let candidates = self.content.lock().similar.candidates(signature);
        let mut best: Option<Patch> = None;
        for candidate in candidates.iter().filter(|&c| c != key) {
            let limit = best.map_or(limit, |b| b.len);
            if limit <= 1 {
                break;
            }
            let snapshot = {
                let content = self.content.lock();
                match content.entry(candidate) {
                    // A delta joins two pages of one domain (re-encoding checks
                    // it again under the lock).
                    Ok(base) if base.can_be_base() && base.domain() == entry.domain() => Some((
                        base.generation,
                        content.snapshot(candidate, &mut scratch.decode)?,
                    )),
                    _ => None,
                }
            };
            let Some((base_generation, snapshot)) = snapshot else {
                continue;
            };
            decode_snapshot(&snapshot, &mut scratch.decode, None)?;
            let out = scratch
                .delta_out
                .get_mut(..limit - 1)
                .ok_or(Error::Corrupt)?;
            let index = EncodeScratch::from_page(&mut scratch.delta_index);
            match encode(
                scratch.target.as_bytes(),
                scratch.decode.page.as_bytes(),
                index,
                out,
            ) {
                Ok(len) => {
                    let kept = scratch.delta_best.get_mut(..len).ok_or(Error::Corrupt)?;
                    kept.copy_from_slice(scratch.delta_out.get(..len).ok_or(Error::Corrupt)?);
                    best = Some(Patch {
                        base: candidate,
                        base_generation,
                        len,
                    });
                }
                Err(Error::Incompressible) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(best)
    }
}

/// `page` encoded alone by the cold codec (tagged `tag`) into `out`, or raw if
/// that does not fit a page: the bytes and their tag.
fn alone<'a, C: ColdCodec>(
    cold: &mut C,
    tag: u8,
    page: &'a [u8; PAGE_SIZE],
    out: &'a mut [u8],
) -> Result<(&'a [u8], u8), Error> {
    match cold.compress_page(page, out)? {
        Some(len) => Ok((out.get(..len).ok_or(Error::Corrupt)?, tag)),
        None => Ok((&page[..], TAG_RAW)),
    }
}

/// Who sent the scanner to an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// The ladder's batch.
    Ladder,
    /// A page gathered just before it, for the block being formed.
    Neighbour,
}

/// Whether the scanner forms cold blocks with these tunables and this codec.
fn blocks_on<C: ColdCodec>(tunables: &ScanTunables, scratch: &Scratch<C>) -> bool {
    tunables.block_pages > 1 && tunables.recompress != 0 && scratch.decode.cold.blocks()
}

/// Pages at which the block being gathered is formed.
fn block_pages(tunables: &ScanTunables) -> usize {
    (tunables.block_pages as usize).clamp(1, MAX_BLOCK_PAGES)
}

/// Give the cold codec the tunables' level (0: the codec's own).
fn set_cold_level<C: ColdCodec>(cold: &mut C, tunables: &ScanTunables) -> Result<(), Error> {
    let level =
        u8::try_from(tunables.cold_level).map_err(|_| Error::InvalidArgument("cold level"))?;
    if level != 0 && level != cold.level() {
        cold.set_level(level)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Patch {
    base: u32,
    base_generation: u32,
    len: usize,
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// Recompressed with the cold codec (its pool tag), `len` bytes in
    /// `scratch.recompressed`.
    Cold {
        tag: u8,
        len: usize,
    },
    Delta(Patch),
}

const _: () = assert!(PAGE_SIZE == 4096);

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate std;

    use std::thread;

    use foldswap_ladder::{Governor, Tunables as LadderTunables};
    use foldswap_mem::{SlabKey, StdPageProvider};
    use foldswap_pool::{Place, StdClock};
    use foldswap_wake::StdParker;

    use super::*;
    use crate::{Config, StoreKind};

    type TestBackend = Backend<StdPageProvider, StdParker>;

    /// A config whose ladder may use a whole CPU, so a burst never waits for scan
    /// credit.
    fn credit_free() -> Config {
        let mut ladder = LadderTunables::governor(Governor::Full);
        for rung in ladder.rungs.iter_mut() {
            rung.cpu_ratio = 10_000;
        }
        ladder.max_cpu = 10_000;
        Config {
            ladder,
            ..Config::default()
        }
    }

    /// A backend of [`credit_free`] with one area of `pages` offsets.
    fn backend(pages: u64) -> TestBackend {
        let backend = Backend::new(StdPageProvider, credit_free(), StdParker::new()).unwrap();
        backend.init(0, pages).unwrap();
        backend
    }

    /// Words in random order: lz4 keeps it, deflate makes it smaller still, so the
    /// scanner recompresses it.
    fn text(seed: u64) -> [u8; PAGE_SIZE] {
        const WORDS: [&[u8]; 8] = [
            b"swap ", b"page ", b"merge ", b"pool ", b"delta ", b"zstd ", b"ksm ", b"lru ",
        ];
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut page = [0u8; PAGE_SIZE];
        let mut at = 0;
        while at < PAGE_SIZE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for &b in WORDS[(x % 8) as usize] {
                if let Some(byte) = page.get_mut(at) {
                    *byte = b;
                }
                at += 1;
            }
        }
        page
    }

    fn due_now() -> ScanTunables {
        ScanTunables {
            cold_rounds: 0,
            ..ScanTunables::default()
        }
    }

    /// Run bursts as the scanner thread would (sleeping as long as the ladder asks,
    /// at most 5 ms: it earns CPU credit with wall time) until `ladder_rounds`
    /// rounds ended; what they improved.
    fn scan_rounds<C: ColdCodec>(
        backend: &TestBackend,
        scratch: &mut Scratch<C>,
        ladder_rounds: u32,
    ) -> u64 {
        let clock = StdClock::new();
        let (mut rounds, mut improved) = (0, 0);
        for _ in 0..10_000 {
            let report = backend.scan_burst(&due_now(), scratch, &clock).unwrap();
            rounds += report.rounds_ended;
            improved += report.improved;
            if rounds >= ladder_rounds {
                return improved;
            }
            thread::sleep(core::time::Duration::from_nanos(
                report.sleep_ns.min(5_000_000),
            ));
        }
        panic!("{ladder_rounds} ladder rounds never ended");
    }

    fn entry_key_at(backend: &TestBackend, offset: u64) -> u32 {
        match backend.areas[0].lock_shard(offset).get(offset) {
            Some(SlotValue::Entry(key)) => key,
            other => panic!("offset {offset} holds {other:?}"),
        }
    }

    /// An exclusive swap-in invalidates an offset while the scanner encodes its
    /// page outside the lock: the entry is gone when the scanner commits. That is
    /// a page to skip, not an error (it used to end the scanner for good).
    #[test]
    fn an_entry_freed_while_the_scanner_encodes_is_skipped() {
        let backend = backend(4);
        let mut scratch = Scratch::boxed();
        let page = text(1);
        assert_eq!(
            backend.store(0, 0, &page, crate::Domain(0), &mut scratch),
            Ok(StoreKind::Compressed)
        );
        let key = entry_key_at(&backend, 0);
        let entry = *backend.content.lock().entry(key).unwrap();
        // What the scanner would commit: the page recompressed.
        scratch.recompressed[..PAGE_SIZE].copy_from_slice(&page);
        let choice = Some(Encoding::Cold {
            tag: foldswap_pool::TAG_ZSTD,
            len: PAGE_SIZE / 2,
        });
        assert_eq!(backend.invalidate_page(0, 0), Ok(true));
        assert!(backend.content.lock().is_empty());
        assert_eq!(
            backend.commit(key, &entry, choice, &scratch),
            Ok(PageOutcome::Skipped)
        );
        // The key reused by another page: still not the entry that was read.
        backend
            .store(0, 1, &text(2), crate::Domain(0), &mut scratch)
            .unwrap();
        assert_eq!(entry_key_at(&backend, 1), key);
        assert_eq!(
            backend.commit(key, &entry, choice, &scratch),
            Ok(PageOutcome::Skipped)
        );
        let mut out = [0u8; PAGE_SIZE];
        backend.load(0, 1, &mut out, &mut scratch).unwrap();
        assert_eq!(out, text(2));
        assert_eq!(backend.stats().snapshot().recompressed_pages, 0);
    }

    /// A pool at its limit still gets its pages recompressed: a re-encode takes
    /// less than it gives back, so the limit does not refuse it (it used to, and
    /// the refused entries stayed marked examined: never recompressed again).
    #[test]
    fn a_full_pool_still_settles() {
        let backend = backend(4096);
        let mut scratch = Scratch::boxed();
        backend.set_pool_limit_bytes(96 * PAGE_SIZE);
        let mut stored = std::vec::Vec::new();
        for offset in 0..4096 {
            match backend.store(
                0,
                offset,
                &text(1000 + offset),
                crate::Domain(0),
                &mut scratch,
            ) {
                Ok(_) => stored.push(offset),
                Err(Error::PoolFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(stored.len() > 20, "{} stored", stored.len());
        scan_rounds(&backend, &mut scratch, 3);
        let s = backend.stats().snapshot();
        let settled = s.recompressed_pages + s.blocked_pages + s.patched_pages;
        assert_eq!(settled, stored.len() as u64, "{s:?}");
        assert!(s.blocks_formed > 0, "{s:?}");
        let mut out = [0u8; PAGE_SIZE];
        for &offset in &stored {
            backend.load(0, offset, &mut out, &mut scratch).unwrap();
            assert_eq!(out, text(1000 + offset));
        }
    }

    /// A page the scanner cannot decode is counted and skipped: the other pages of
    /// the batch are still scanned, the batch is completed, and later bursts run.
    #[test]
    fn a_page_that_fails_to_decode_does_not_end_the_burst() {
        let backend = backend(3);
        let mut scratch = Scratch::boxed();
        for offset in 0..3 {
            backend
                .store(
                    0,
                    offset,
                    &text(10 + offset),
                    crate::Domain(0),
                    &mut scratch,
                )
                .unwrap();
        }
        // Offset 1's entry names an object the pool does not hold.
        let broken = entry_key_at(&backend, 1);
        backend
            .content
            .lock()
            .entries
            .get_mut(SlabKey(broken))
            .unwrap()
            .set_place(Place::from_parts(0xffff, 1, 100));
        // Three ladder rounds: the broken page fails in each, and each round ends.
        assert_eq!(scan_rounds(&backend, &mut scratch, 3), 2);
        let s = backend.stats().snapshot();
        assert_eq!(s.recompressed_pages + s.blocked_pages, 2, "{s:?}");
        assert!(s.scanner_page_errors >= 1, "{s:?}");
        let mut out = [0u8; PAGE_SIZE];
        for offset in [0, 2] {
            backend.load(0, offset, &mut out, &mut scratch).unwrap();
            assert_eq!(out, text(10 + offset));
        }
        assert!(backend.load(0, 1, &mut out, &mut scratch).is_err());
    }

    /// A burst lets other threads run between its batches (`Parker::yield_now`:
    /// the kernel's cond_resched). Without it a long burst on a kernel without
    /// preemption was a soft lockup (the guest's watchdog caught one at zstd
    /// level 6).
    #[test]
    fn a_burst_yields_between_its_batches() {
        use core::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;

        #[derive(Default)]
        struct CountingParker(Arc<AtomicU64>);
        impl Parker for CountingParker {
            fn park_timeout(&self, _: core::time::Duration) {}
            fn unpark(&self) {}
            fn yield_now(&self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }

        let yields = Arc::new(AtomicU64::new(0));
        let parker = CountingParker(Arc::clone(&yields));
        let backend = Backend::new(StdPageProvider, credit_free(), parker).unwrap();
        backend.init(0, 64).unwrap();
        let mut scratch = Scratch::boxed();
        for offset in 0..64 {
            backend
                .store(0, offset, &text(offset), crate::Domain(0), &mut scratch)
                .unwrap();
        }
        // Bursts as the scanner thread runs them (sleeping as the ladder asks, at
        // most 5 ms) until one round has ended.
        let clock = StdClock::new();
        let (mut batches, mut rounds) = (0, 0);
        while rounds == 0 {
            let report = backend
                .scan_burst(&due_now(), &mut scratch, &clock)
                .unwrap();
            batches += u64::from(report.batches);
            rounds += report.rounds_ended;
            thread::sleep(core::time::Duration::from_nanos(
                report.sleep_ns.min(5_000_000),
            ));
        }
        assert!(batches > 0);
        let yielded = yields.load(Ordering::Relaxed);
        assert!(
            yielded >= batches + u64::from(rounds),
            "{yielded} yields for {batches} batches and {rounds} round ends"
        );
    }

    /// The scanner's re-encode frees the object a load may be decoding in place:
    /// while a load reads, the scanner must wait before it changes anything.
    #[test]
    fn the_scanner_waits_for_a_load_decoding_in_place_before_it_reencodes() {
        let backend = backend(1);
        let mut scratch = Scratch::boxed();
        backend
            .store(0, 0, &text(3), crate::Domain(0), &mut scratch)
            .unwrap();
        let key = entry_key_at(&backend, 0);
        let before = backend.content.lock().entry(key).unwrap().place();
        thread::scope(|s| {
            // A load in the middle of decoding in place.
            let reading = backend.readers.enter();
            let scanner = s.spawn(|| scan_rounds(&backend, &mut Scratch::boxed(), 1));
            while !backend.readers.writer_waiting() {
                assert!(
                    !scanner.is_finished(),
                    "the scanner finished its burst without waiting for the load"
                );
                thread::yield_now();
            }
            // The scanner waits under the content lock: nothing re-encoded yet.
            assert_eq!(backend.stats().snapshot().recompressed_pages, 0);
            drop(reading);
            assert_eq!(scanner.join().unwrap(), 1);
        });
        let s = backend.stats().snapshot();
        assert_eq!((s.recompressed_pages, s.scanner_waits_for_loads), (1, 1));
        assert_ne!(backend.content.lock().entry(key).unwrap().place(), before);
        let mut out = [0u8; PAGE_SIZE];
        backend.load(0, 0, &mut out, &mut scratch).unwrap();
        assert_eq!(out, text(3));
    }
}
