//! The resident scanner: the policy foldswap gives ksmd (the patch's
//! `linux/ksm_policy.h`), so that identical pages still in memory are merged
//! by the kernel's own KSM machinery while foldswap's cores decide what the
//! scanner spends its time on.
//!
//! ksm.c keeps what makes a merged page an ordinary KSM page: its stable and
//! unstable trees, `try_to_merge_*` with the full byte compare under the page
//! lock, rmap, COW unmerge, its counters and `/proc/PID/ksm_stat`. The policy
//! answers three questions ksmd asks:
//!
//! - **checksum** — the content signature ksm.c compares from one pass to the
//!   next (a changed one marks the page volatile) and with the zero page's. It
//!   is foldswap-ladder's sampled hash ([`SampledHasher`]) at the staged
//!   strength: `strength` words of the page at random positions instead of
//!   xxhash over all 4096 bytes. A signature only ever gates a full compare:
//!   a page whose sample looks like the zero page's gets [`ZERO_SIGNATURE`],
//!   the zero page's at every strength, and ksm.c then compares all its bytes
//!   before merging it with the zero page.
//! - **batch_pages** — how many pages the next batch scans: about
//!   [`BATCH_TARGET_NS`] of work at the measured cost per page.
//! - **domain** — which pages may merge: ksm.c orders its trees by this key
//!   first, so pages of different keys never compare equal. Under the
//!   module's `dedup_scope` (the swap face's too): `domain`, a page's memory
//!   cgroup; `global`, one key for all (ksmd's own behaviour); `off`, the
//!   page itself, so nothing merges ([`merge_domain`]).
//! - **wait** — how long ksmd sleeps after a batch: long enough that scanning
//!   takes the governor's share of one CPU, the quiet share
//!   ([`ResidentTunables::quiet_share`]) unless swap pressure was seen within
//!   [`PRESSURE_WINDOW_NS`], then the pressure share. The swap-out path
//!   wakes it through foldswap-wake ([`ResidentPolicy::notify_pressure`]:
//!   one atomic operation, no lost wake-up), so the scanner sleeps when
//!   memory is not short and starts at once when it becomes short.
//!
//! Why ksm.c's trees and not foldswap-merge's: a merged page must be a KSM
//! page to every other part of mm (fork, migration, swap, `munmap`), and
//! ksm.c's trees are what hold its stable nodes. With trees ordered by byte
//! compare, the sampled hash gates volatility only; it has no collision cost
//! to weigh, so its strength is a tunable, not adapted.
//!
//! # Life
//!
//! ```text
//! start(...)            → the host registers the policy with ksm.c
//! stop_scanning()       → every wait returns at once
//! the host unregisters  → ksm.c waits until ksmd is out of the policy
//! hide()                → no new call sees the policy running
//! the host waits        → notifiers in flight return (the store path: RCU)
//! stop()                → the scanner handle and the wake go
//! ```

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use foldswap::DedupScope;
use foldswap_ladder::{Governor, MAX_STRENGTH, RATIO_ONE, SampledHasher, Tunables, zero_page_hash};
use foldswap_mem::{Error, PAGE_SIZE};
use foldswap_wake::{Notify, Parker, Scanner, WaitOutcome, Wake};
use spin::Mutex;

/// The signature of every page whose sample is all zero bytes, whatever the
/// strength: ksm.c computes the zero page's signature once, at registration.
/// Not 0: ksm.c's new rmap items start with an old checksum of 0, and a page
/// must show the same signature on two passes before it may merge.
pub const ZERO_SIGNATURE: u32 = u32::MAX;

/// Work one batch aims at: 20 ms at the measured cost per page.
pub const BATCH_TARGET_NS: u64 = 20_000_000;

/// How long a swap-out's notification keeps the scanner at the pressure
/// share: 2 s after the last one.
pub const PRESSURE_WINDOW_NS: u64 = 2_000_000_000;

/// Cost per page assumed before any batch is measured (UKSM's 500 ns).
const INITIAL_PAGE_COST_NS: u64 = 500;

/// The merge domain of a page under `scope`, given its memory cgroup's key
/// (its address: stable while the page is charged to it; 0 for none) and the
/// page's own key (its frame number). Pages merge only within one domain.
pub fn merge_domain(scope: DedupScope, memcg: u64, page: u64) -> u64 {
    match scope {
        DedupScope::Domain => memcg,
        DedupScope::Global => 0,
        DedupScope::Off => page,
    }
}

/// The resident scanner's tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentTunables {
    /// Words of a page the signature reads (1..=[`MAX_STRENGTH`]).
    pub strength: u32,
    /// Share of one CPU without pressure, in 1/10000 ([`RATIO_ONE`]).
    pub quiet_share: u32,
    /// Share of one CPU while swap-out pressure lasts, in 1/10000.
    pub pressure_share: u32,
    /// Fewest pages in one batch.
    pub min_batch_pages: u32,
    /// Most pages in one batch.
    pub max_batch_pages: u32,
    /// Shortest sleep between batches, ns.
    pub min_sleep_ns: u64,
    /// Longest sleep between batches, ns.
    pub max_sleep_ns: u64,
}

impl Default for ResidentTunables {
    /// 64 words (256 bytes, a sixteenth of ksmd's xxhash) per signature; the
    /// ladder's `Quiet` governor's CPU cap without pressure (1 %), its
    /// `Medium` one's under pressure (50 %); its batch and sleep bounds.
    fn default() -> Self {
        let quiet = Tunables::governor(Governor::Quiet);
        let pressure = Tunables::governor(Governor::Medium);
        ResidentTunables {
            strength: 64,
            quiet_share: quiet.max_cpu.unsigned_abs(),
            pressure_share: pressure.max_cpu.unsigned_abs(),
            min_batch_pages: quiet.min_batch_pages,
            max_batch_pages: quiet.max_batch_pages,
            min_sleep_ns: quiet.min_sleep_ns,
            max_sleep_ns: quiet.max_sleep_ns,
        }
    }
}

impl ResidentTunables {
    /// The tunables with `strength` (1..=[`MAX_STRENGTH`], else an error).
    pub fn with_strength(self, strength: u32) -> Result<Self, Error> {
        if !(1..=MAX_STRENGTH).contains(&strength) {
            return Err(Error::InvalidArgument("strength outside 1..=1034"));
        }
        Ok(ResidentTunables { strength, ..self })
    }

    /// The share of a CPU scanning may take now.
    fn share(&self, under_pressure: bool) -> u64 {
        let share = if under_pressure {
            self.pressure_share
        } else {
            self.quiet_share
        };
        u64::from(share.clamp(1, RATIO_ONE.unsigned_abs()))
    }

    /// Pages for a batch at `page_cost_ns` per page: [`BATCH_TARGET_NS`] of
    /// work, or less if even the longest sleep after it would give scanning
    /// more than its share.
    pub fn batch_pages(&self, page_cost_ns: u64, under_pressure: bool) -> u32 {
        let share = self.share(under_pressure);
        let idle = u64::from(RATIO_ONE.unsigned_abs()) - share;
        let target = match self.max_sleep_ns.saturating_mul(share).checked_div(idle) {
            Some(longest) => BATCH_TARGET_NS.min(longest),
            None => BATCH_TARGET_NS,
        };
        // Divisions here are checked ones: a module's panic path is a call
        // objtool cannot see return (and it never would: the divisor is not 0).
        let pages = target.checked_div(page_cost_ns).unwrap_or(target);
        let pages = u32::try_from(pages).unwrap_or(u32::MAX);
        pages.clamp(self.min_batch_pages.max(1), self.max_batch_pages.max(1))
    }

    /// The sleep after a batch that took `busy_ns` and scanned `scanned`
    /// pages, so that scanning uses `share` of a CPU: busy × (1 − share) /
    /// share, within the sleep bounds. A batch that found nothing to scan
    /// sleeps the longest.
    pub fn sleep_ns(&self, busy_ns: u64, scanned: u32, under_pressure: bool) -> u64 {
        let (min, max) = (self.min_sleep_ns.min(self.max_sleep_ns), self.max_sleep_ns);
        if scanned == 0 {
            return max;
        }
        let share = self.share(under_pressure);
        let idle = u64::from(RATIO_ONE.unsigned_abs()) - share;
        // No 128-bit division (a kernel module has no __udivti3): a batch
        // long enough to saturate sleeps the longest anyway. `share` is at
        // least 1; the checked division only keeps a panic path out.
        let sleep = busy_ns.saturating_mul(idle).checked_div(share);
        sleep.unwrap_or(max).clamp(min, max)
    }
}

/// What the policy counted, for the module's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResidentReport {
    /// The policy is registered (started and not stopped).
    pub running: bool,
    /// The strength in force.
    pub strength: u32,
    /// The strength staged for the next batch.
    pub staged_strength: u32,
    /// Signatures taken.
    pub signatures: u64,
    /// The page bytes the signatures read.
    pub signature_bytes: u64,
    /// Batches run.
    pub batches: u64,
    /// Pages the batches scanned.
    pub pages_scanned: u64,
    /// Batches run at the pressure share.
    pub pressure_batches: u64,
    /// Swap-out notifications that found ksmd not notified yet (they woke it,
    /// or its next wait returns at once); repeats before it runs are not
    /// counted.
    pub notifications: u64,
    /// Sleeps a notification cut short or skipped.
    pub wakeups: u64,
    /// Sleeps that timed out.
    pub timeouts: u64,
    /// Time ksmd spent in batches under the policy, ns.
    pub busy_ns: u64,
    /// Time ksmd spent in the policy's waits, ns.
    pub sleep_ns: u64,
    /// The measured cost per page, ns.
    pub page_cost_ns: u64,
}

impl ResidentReport {
    /// One `name value` line per counter (the module's `resident` parameter).
    pub fn render(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        let lines: [(&str, u64); 15] = [
            ("running", u64::from(self.running)),
            ("strength", u64::from(self.strength)),
            ("staged_strength", u64::from(self.staged_strength)),
            ("signatures", self.signatures),
            ("signature_bytes", self.signature_bytes),
            ("batches", self.batches),
            ("pages_scanned", self.pages_scanned),
            ("pressure_batches", self.pressure_batches),
            ("notifications", self.notifications),
            ("wakeups", self.wakeups),
            ("timeouts", self.timeouts),
            ("busy_ns", self.busy_ns),
            ("sleep_ns", self.sleep_ns),
            ("page_cost_ns", self.page_cost_ns),
            ("batch_target_ns", BATCH_TARGET_NS),
        ];
        crate::report::render_lines(w, &lines)
    }
}

/// ksmd's side: its scanner handle and its governor state. Only ksmd (through
/// `batch_pages` and `wait`) and `stop` (after ksmd left) touch it.
struct Ksmd<K: Parker + 'static> {
    scanner: Option<Scanner<'static, K, u32>>,
    batch_start_ns: u64,
    page_cost_ns: u64,
    pressure_until_ns: u64,
}

/// What `start` builds and `stop` drops.
struct Running<K: Parker + 'static> {
    hasher: SampledHasher,
    wake: Wake<K, u32>,
    ksmd: Mutex<Ksmd<K>>,
    tunables: ResidentTunables,
    scope: DedupScope,
}

/// The resident scanner's policy in static storage (the hasher's 2 KiB
/// permutation is built in place, never on a stack).
///
/// # Invariants
///
/// `running` is initialised exactly while `built` is true: `start` sets it
/// last, `stop` clears it before dropping, and neither runs concurrently with
/// anything else on `self` (their contracts). `ready` is true only while
/// `built` is; callers reach `running` only through `ready`, and while built
/// `running` is only shared.
pub struct ResidentPolicy<K: Parker + 'static> {
    running: UnsafeCell<MaybeUninit<Running<K>>>,
    built: AtomicBool,
    ready: AtomicBool,
    /// The strength the current batch's signatures use (set at each batch's
    /// start, from the staged value).
    strength: AtomicU32,
    signatures: AtomicU64,
    signature_bytes: AtomicU64,
    batches: AtomicU64,
    pages_scanned: AtomicU64,
    pressure_batches: AtomicU64,
    notifications: AtomicU64,
    busy_ns: AtomicU64,
    sleep_ns: AtomicU64,
    page_cost_ns: AtomicU64,
}

// SAFETY: `running` is written only by `start` and dropped only by `stop`,
// whose contracts exclude concurrent use of `self`; in between it is only
// shared: the hasher is read-only, the wake is Sync when K is Send + Sync,
// and ksmd's state is behind a spin lock. Everything else is atomic.
unsafe impl<K: Parker + Send + Sync + 'static> Sync for ResidentPolicy<K> {}

impl<K: Parker + Send + Sync + 'static> Default for ResidentPolicy<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Parker + Send + Sync + 'static> ResidentPolicy<K> {
    /// A stopped policy.
    pub const fn new() -> Self {
        ResidentPolicy {
            running: UnsafeCell::new(MaybeUninit::uninit()),
            built: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            strength: AtomicU32::new(0),
            signatures: AtomicU64::new(0),
            signature_bytes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            pages_scanned: AtomicU64::new(0),
            pressure_batches: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            sleep_ns: AtomicU64::new(0),
            page_cost_ns: AtomicU64::new(INITIAL_PAGE_COST_NS),
        }
    }

    /// Whether the policy is started.
    pub fn is_running(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn running(&self) -> Option<&Running<K>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: per the invariants, `running` is initialised and only
        // shared while `ready` is true, and `stop` (the only one to drop it)
        // runs only once every caller that saw `ready` has returned.
        Some(unsafe { (*self.running.get()).assume_init_ref() })
    }

    /// Build the policy: the hasher from `seed`, the wake with `parker`
    /// (ksmd's), merge domains by `scope`.
    ///
    /// # Safety
    /// No other method of `self` runs during the call.
    pub unsafe fn start(
        &'static self,
        parker: K,
        seed: u64,
        tunables: ResidentTunables,
        scope: DedupScope,
    ) -> Result<(), Error> {
        if self.built.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument("already started"));
        }
        let tunables = tunables.with_strength(tunables.strength)?;
        // SAFETY: not built, and per the contract nobody else uses `self`:
        // the storage is ours to write.
        let slot = unsafe { &mut *self.running.get() };
        let running = slot.as_mut_ptr();
        // SAFETY: `running` points to aligned storage for a `Running`; each
        // field is written once below through raw pointers, the hasher in
        // place, before `ready` says it is initialised.
        unsafe {
            let hasher =
                core::ptr::addr_of_mut!((*running).hasher).cast::<MaybeUninit<SampledHasher>>();
            SampledHasher::init_in_place(&mut *hasher, seed);
            core::ptr::addr_of_mut!((*running).wake).write(Wake::new(parker, tunables.strength));
            core::ptr::addr_of_mut!((*running).ksmd).write(Mutex::new(Ksmd {
                scanner: None,
                batch_start_ns: 0,
                page_cost_ns: INITIAL_PAGE_COST_NS,
                pressure_until_ns: 0,
            }));
            core::ptr::addr_of_mut!((*running).tunables).write(tunables);
            core::ptr::addr_of_mut!((*running).scope).write(scope);
        }
        self.strength.store(tunables.strength, Ordering::Relaxed);
        // INVARIANT: every field of `running` is initialised.
        self.built.store(true, Ordering::Release);
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Make every wait return at once, now and from now on (before the host
    /// unregisters the policy, which waits for ksmd to leave it).
    pub fn stop_scanning(&self) {
        if let Some(running) = self.running() {
            running.wake.stop();
        }
    }

    /// From now on no call sees the policy running (each does nothing); the
    /// storage stays for calls already in it.
    pub fn hide(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Drop the policy (hidden first if it was not).
    ///
    /// # Safety
    /// No other method of `self` runs during the call, nor later until the
    /// next `start`, and every call that began before [`hide`](Self::hide)
    /// has returned: the host unregistered the policy (ksmd is out of it)
    /// and waited for notifiers in flight.
    pub unsafe fn stop(&self) {
        self.hide();
        if !self.built.swap(false, Ordering::AcqRel) {
            return;
        }
        // SAFETY: it was ready, so initialised; per the contract nobody else
        // uses it. The scanner handle borrows the wake, so it goes first.
        unsafe {
            let running = (*self.running.get()).assume_init_mut();
            running.ksmd.get_mut().scanner = None;
            (*self.running.get()).assume_init_drop();
        }
    }

    /// The signature of `page` at the current batch's strength, and the bytes
    /// it read: [`ZERO_SIGNATURE`] if its sample hashes like an all-zero one
    /// (every all-zero sample does), the sampled hash otherwise.
    pub fn signature(&self, page: &[u8; PAGE_SIZE]) -> (u32, u32) {
        let Some(running) = self.running() else {
            return (ZERO_SIGNATURE, 0);
        };
        let strength = self.strength.load(Ordering::Relaxed);
        let hash = running.hasher.hash_at(page, strength);
        let signature = if hash == zero_page_hash(strength) {
            ZERO_SIGNATURE
        } else if hash == ZERO_SIGNATURE {
            zero_page_hash(strength)
        } else {
            hash
        };
        let bytes = strength.min(MAX_STRENGTH) * 4;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        self.signature_bytes
            .fetch_add(u64::from(bytes), Ordering::Relaxed);
        (signature, bytes)
    }

    /// The merge domain of a page of memory cgroup `memcg` with key `page`
    /// under the policy's scope ([`merge_domain`]); a stopped policy merges
    /// nothing (every page its own domain).
    pub fn domain(&self, memcg: u64, page: u64) -> u64 {
        match self.running() {
            Some(running) => merge_domain(running.scope, memcg, page),
            None => page,
        }
    }

    /// ksmd starts a batch at `now_ns`: apply a staged strength, and return
    /// how many pages to scan.
    pub fn batch_pages(&'static self, now_ns: u64) -> u32 {
        let Some(running) = self.running() else {
            return 1;
        };
        let mut ksmd = running.ksmd.lock();
        if ksmd.scanner.is_none() {
            ksmd.scanner = running.wake.claim_scanner().ok();
        }
        if let Some(Ok(strength)) = ksmd.scanner.as_mut().map(|s| s.begin_round()) {
            self.strength.store(strength, Ordering::Relaxed);
        }
        ksmd.batch_start_ns = now_ns;
        let under_pressure = now_ns < ksmd.pressure_until_ns;
        running
            .tunables
            .batch_pages(ksmd.page_cost_ns, under_pressure)
    }

    /// ksmd finished a batch of `scanned` pages at `now_ns`: sleep for the
    /// governor's time unless swap pressure is pending or arrives, then
    /// return. `now` reads the clock again after the sleep.
    pub fn wait(&'static self, scanned: u32, now_ns: u64, now: impl Fn() -> u64) {
        let Some(running) = self.running() else {
            return;
        };
        let mut ksmd = running.ksmd.lock();
        let busy = now_ns.saturating_sub(ksmd.batch_start_ns);
        if scanned > 0 {
            // An even blend of the last cost and this batch's.
            let cost = busy.checked_div(u64::from(scanned)).unwrap_or(busy).max(1);
            ksmd.page_cost_ns = (ksmd.page_cost_ns + cost).div_ceil(2);
            self.page_cost_ns
                .store(ksmd.page_cost_ns, Ordering::Relaxed);
        }
        let under_pressure = now_ns < ksmd.pressure_until_ns;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.pages_scanned
            .fetch_add(u64::from(scanned), Ordering::Relaxed);
        self.busy_ns.fetch_add(busy, Ordering::Relaxed);
        if under_pressure {
            self.pressure_batches.fetch_add(1, Ordering::Relaxed);
        }
        let sleep = running.tunables.sleep_ns(busy, scanned, under_pressure);
        let Some(scanner) = ksmd.scanner.as_mut() else {
            return;
        };
        let outcome = scanner.wait(Duration::from_nanos(sleep));
        let woke = now();
        self.sleep_ns
            .fetch_add(woke.saturating_sub(now_ns), Ordering::Relaxed);
        if matches!(outcome, WaitOutcome::Woken | WaitOutcome::AlreadyNotified) {
            ksmd.pressure_until_ns = woke.saturating_add(PRESSURE_WINDOW_NS);
        }
    }

    /// Swap-out pressure (the store path): wake the scanner. One atomic
    /// operation on the wake's state, which every store needs; never blocks.
    /// Only a notification that found ksmd not notified yet is counted: under
    /// a swap storm nearly every store finds the wake already pending, and a
    /// counter bumped by all of them would be a second cache line all CPUs
    /// write.
    pub fn notify_pressure(&self) {
        let first = self.running().is_some_and(|running| {
            matches!(running.wake.notify(), Notify::WokeScanner | Notify::Queued)
        });
        if first {
            self.notifications.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stage a new strength for the next batch.
    pub fn stage_strength(&self, strength: u32) -> Result<(), Error> {
        let running = self.running().ok_or(Error::ShutDown)?;
        running.tunables.with_strength(strength)?;
        running.wake.stage(strength);
        Ok(())
    }

    /// The counters now.
    pub fn report(&self) -> ResidentReport {
        let mut report = ResidentReport {
            running: false,
            strength: self.strength.load(Ordering::Relaxed),
            staged_strength: 0,
            signatures: self.signatures.load(Ordering::Relaxed),
            signature_bytes: self.signature_bytes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            pages_scanned: self.pages_scanned.load(Ordering::Relaxed),
            pressure_batches: self.pressure_batches.load(Ordering::Relaxed),
            notifications: self.notifications.load(Ordering::Relaxed),
            wakeups: 0,
            timeouts: 0,
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            sleep_ns: self.sleep_ns.load(Ordering::Relaxed),
            page_cost_ns: self.page_cost_ns.load(Ordering::Relaxed),
        };
        if let Some(running) = self.running() {
            let wake = running.wake.stats();
            report.running = true;
            report.staged_strength = running.wake.staged();
            report.wakeups = wake.wakeups + wake.reruns;
            report.timeouts = wake.timeouts;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::sync::mpsc;
    use std::thread;

    use crate::test_pages::TestParker;

    type Policy = ResidentPolicy<TestParker>;

    /// A started policy that lives for the test run (ksmd's is a static).
    fn started(tunables: ResidentTunables) -> &'static Policy {
        let policy: &'static Policy = Box::leak(Box::new(Policy::new()));
        // SAFETY: nothing else uses the fresh policy.
        unsafe { policy.start(TestParker::default(), 7, tunables, DedupScope::Domain) }.unwrap();
        policy
    }

    /// Stop `policy` and start it again with merge domains by `scope`.
    fn restart(policy: &'static Policy, scope: DedupScope) {
        policy.stop_scanning();
        // SAFETY: nothing else uses the policy.
        unsafe { policy.stop() };
        let tunables = ResidentTunables::default();
        // SAFETY: as above; it is stopped.
        unsafe { policy.start(TestParker::default(), 3, tunables, scope) }.unwrap();
    }

    /// A policy whose sleeps are an hour: a wait returns only when woken.
    fn sleeping_for_an_hour() -> &'static Policy {
        started(ResidentTunables {
            min_sleep_ns: 3_600_000_000_000,
            max_sleep_ns: 3_600_000_000_000,
            ..ResidentTunables::default()
        })
    }

    fn page_of(word: u32) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        for (i, chunk) in page.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&(word ^ i as u32).to_le_bytes());
        }
        page
    }

    /// Run `f` on another thread; fail the test if it has not returned
    /// within a minute (a lost wake-up would hang it for an hour).
    fn returns<F: FnOnce() + Send + 'static>(f: F) {
        let (done, finished) = mpsc::channel();
        thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("the wait did not return");
    }

    #[test]
    fn the_zero_page_signs_alike_at_every_strength() {
        let policy = started(ResidentTunables::default());
        for strength in [1, 2, 64, 1024, MAX_STRENGTH] {
            policy.stage_strength(strength).unwrap();
            policy.batch_pages(0);
            assert_eq!(policy.signature(&[0; PAGE_SIZE]).0, ZERO_SIGNATURE);
            // A fresh rmap item's old checksum is 0: the zero page must not
            // match it on its first pass.
            assert_ne!(ZERO_SIGNATURE, 0);
            assert_ne!(policy.signature(&page_of(1)).0, ZERO_SIGNATURE);
        }
    }

    #[test]
    fn a_signature_reads_four_bytes_per_word_of_strength() {
        let policy = started(ResidentTunables::default().with_strength(16).unwrap());
        let page = page_of(5);
        assert_eq!(policy.signature(&page), policy.signature(&page));
        assert_eq!(policy.signature(&page).1, 64);
        let report = policy.report();
        assert_eq!(report.signatures, 3);
        assert_eq!(report.signature_bytes, 3 * 64);
    }

    #[test]
    fn at_full_strength_any_changed_word_changes_the_signature() {
        let policy = started(ResidentTunables::default().with_strength(1024).unwrap());
        let page = page_of(9);
        let (before, _) = policy.signature(&page);
        for word in [0, 1, 511, 1023] {
            let mut changed = page;
            changed[word * 4] ^= 0x80;
            assert_ne!(policy.signature(&changed).0, before, "word {word}");
        }
    }

    #[test]
    fn a_staged_strength_applies_at_the_next_batch() {
        let policy = started(ResidentTunables::default().with_strength(8).unwrap());
        policy.stage_strength(32).unwrap();
        assert_eq!(policy.signature(&page_of(3)).1, 8 * 4);
        assert_eq!(policy.report().staged_strength, 32);
        policy.batch_pages(0);
        assert_eq!(policy.signature(&page_of(3)).1, 32 * 4);
    }

    #[test]
    fn absurd_strengths_are_refused_and_change_nothing() {
        let policy = started(ResidentTunables::default().with_strength(8).unwrap());
        assert!(policy.stage_strength(0).is_err());
        assert!(policy.stage_strength(MAX_STRENGTH + 1).is_err());
        policy.batch_pages(0);
        assert_eq!(policy.report().strength, 8);
        let leaked: &'static Policy = Box::leak(Box::new(Policy::new()));
        let tunables = ResidentTunables {
            strength: 0,
            ..ResidentTunables::default()
        };
        // SAFETY: nothing else uses the fresh policy.
        let started =
            unsafe { leaked.start(TestParker::default(), 1, tunables, DedupScope::Domain) };
        assert!(started.is_err());
        assert!(!leaked.is_running());
    }

    #[test]
    fn pages_share_a_domain_only_as_the_scope_allows() {
        let (cgroup_a, cgroup_b) = (0xffff_8880_0100_0000, 0xffff_8880_0200_0000);
        let domain = |scope, memcg, page| merge_domain(scope, memcg, page);
        // domain: one key per memory cgroup, whatever the page.
        assert_eq!(
            domain(DedupScope::Domain, cgroup_a, 1),
            domain(DedupScope::Domain, cgroup_a, 2)
        );
        assert_ne!(
            domain(DedupScope::Domain, cgroup_a, 1),
            domain(DedupScope::Domain, cgroup_b, 1)
        );
        // global: one key for all, as ksmd alone.
        assert_eq!(
            domain(DedupScope::Global, cgroup_a, 1),
            domain(DedupScope::Global, cgroup_b, 2)
        );
        // off: every page its own.
        assert_ne!(
            domain(DedupScope::Off, cgroup_a, 1),
            domain(DedupScope::Off, cgroup_a, 2)
        );
    }

    #[test]
    fn the_policy_keys_pages_by_its_scope_and_a_stopped_one_merges_nothing() {
        let policy = started(ResidentTunables::default());
        assert_eq!(policy.domain(0x1000, 5), 0x1000);
        assert_eq!(policy.domain(0x1000, 6), 0x1000);
        policy.stop_scanning();
        // SAFETY: nothing else uses the policy.
        unsafe { policy.stop() };
        assert_ne!(policy.domain(0x1000, 5), policy.domain(0x1000, 6));
        restart(policy, DedupScope::Global);
        assert_eq!(policy.domain(0x1000, 5), policy.domain(0x2000, 6));
    }

    #[test]
    fn a_batch_is_the_target_time_at_the_measured_cost() {
        let t = ResidentTunables::default();
        assert_eq!(t.batch_pages(10_000, true), 2_000);
        assert_eq!(t.batch_pages(1, true), t.max_batch_pages);
        assert_eq!(t.batch_pages(u64::MAX, true), t.min_batch_pages);
    }

    #[test]
    fn a_quiet_batch_fits_its_share_under_the_longest_sleep() {
        // 1 % of a CPU with sleeps of at most 1 s: 10.1 ms of work, not 20.
        let t = ResidentTunables::default();
        assert_eq!((t.quiet_share, t.max_sleep_ns), (100, 1_000_000_000));
        assert_eq!(t.batch_pages(10_000, false), 1_010);
        let busy = u64::from(t.batch_pages(10_000, false)) * 10_000;
        let sleep = t.sleep_ns(busy, 1_010, false);
        // At most 1 % of the time busy.
        assert!(busy * 100 <= busy + sleep, "{busy} busy, {sleep} asleep");
    }

    #[test]
    fn the_sleep_gives_scanning_its_share_of_a_cpu() {
        let t = ResidentTunables {
            quiet_share: 100,
            pressure_share: 5_000,
            min_sleep_ns: 1_000_000,
            max_sleep_ns: 10_000_000_000,
            ..ResidentTunables::default()
        };
        // 1 %: 10 ms busy, 990 ms asleep; 50 %: as long asleep as busy.
        assert_eq!(t.sleep_ns(10_000_000, 100, false), 990_000_000);
        assert_eq!(t.sleep_ns(10_000_000, 100, true), 10_000_000);
        // Within the bounds; nothing scanned sleeps the longest.
        assert_eq!(t.sleep_ns(1, 1, true), 1_000_000);
        assert_eq!(t.sleep_ns(u64::MAX, 1, false), 10_000_000_000);
        assert_eq!(t.sleep_ns(10_000_000, 0, true), 10_000_000_000);
    }

    #[test]
    fn the_measured_cost_sizes_the_next_batch() {
        let policy = sleeping_for_an_hour();
        let first = policy.batch_pages(1_000);
        // The batch took 100 µs a page: the blend with 500 ns moves the cost
        // to 50,250 ns. A pending notification skips the sleep and puts the
        // next batch under pressure: 20 ms of that cost.
        policy.notify_pressure();
        policy.wait(first, 1_000 + u64::from(first) * 100_000, || 0);
        assert_eq!(policy.report().page_cost_ns, 50_250);
        assert_eq!(policy.batch_pages(0), 398);
    }

    #[test]
    fn swap_pressure_wakes_a_sleeping_scanner_and_raises_its_share() {
        let policy = sleeping_for_an_hour();
        let scanned = policy.batch_pages(0);
        let (asleep, sleeping) = mpsc::channel();
        let waiter = thread::spawn(move || {
            asleep.send(()).unwrap();
            policy.wait(scanned, 1_000, || 2_000);
        });
        sleeping.recv().unwrap();
        // Whether the notify lands before or after the scanner parks, the
        // wait returns (foldswap-wake's protocol).
        policy.notify_pressure();
        returns(move || waiter.join().unwrap());
        let report = policy.report();
        assert_eq!(report.notifications, 1);
        assert_eq!(report.wakeups, 1);
        assert_eq!(report.pressure_batches, 0);
        // The next batch, within the window, runs at the pressure share.
        let scanned = policy.batch_pages(3_000);
        policy.notify_pressure();
        policy.wait(scanned, 4_000, || 5_000);
        assert_eq!(policy.report().pressure_batches, 1);
    }

    #[test]
    fn without_pressure_the_batches_run_at_the_quiet_share() {
        let policy = started(ResidentTunables {
            min_sleep_ns: 1,
            max_sleep_ns: 1,
            ..ResidentTunables::default()
        });
        for round in 0..3u64 {
            let scanned = policy.batch_pages(round * 10);
            policy.wait(scanned, round * 10 + 5, || round * 10 + 6);
        }
        let report = policy.report();
        assert_eq!(report.batches, 3);
        assert_eq!(report.pressure_batches, 0);
        assert_eq!(report.wakeups, 0);
        assert_eq!(report.timeouts, 3);
    }

    #[test]
    fn stopping_ends_a_sleep_and_every_later_one() {
        let policy = sleeping_for_an_hour();
        let scanned = policy.batch_pages(0);
        let (asleep, sleeping) = mpsc::channel();
        let waiter = thread::spawn(move || {
            asleep.send(()).unwrap();
            policy.wait(scanned, 1, || 2);
            // After the stop a wait no longer sleeps at all.
            let scanned = policy.batch_pages(3);
            policy.wait(scanned, 4, || 5);
        });
        sleeping.recv().unwrap();
        policy.stop_scanning();
        returns(move || waiter.join().unwrap());
        // SAFETY: ksmd's stand-in has left; nothing else uses the policy.
        unsafe { policy.stop() };
        assert!(!policy.is_running());
        assert_eq!(policy.signature(&page_of(1)), (ZERO_SIGNATURE, 0));
        policy.notify_pressure();
        assert_eq!(policy.report().notifications, 0);
    }

    #[test]
    fn a_hidden_policy_answers_nothing_but_keeps_its_storage() {
        let policy = started(ResidentTunables::default());
        policy.hide();
        assert!(!policy.is_running());
        assert_eq!(policy.signature(&page_of(1)), (ZERO_SIGNATURE, 0));
        policy.notify_pressure();
        assert_eq!(policy.report().notifications, 0);
        // SAFETY: nothing else uses the policy.
        unsafe { policy.stop() };
        // SAFETY: as above; it is stopped.
        unsafe {
            policy.start(
                TestParker::default(),
                2,
                ResidentTunables::default(),
                DedupScope::Off,
            )
        }
        .unwrap();
        assert!(policy.is_running());
    }

    #[test]
    fn the_report_renders_a_line_per_counter() {
        let policy = started(ResidentTunables::default().with_strength(16).unwrap());
        policy.signature(&page_of(1));
        let mut text = std::string::String::new();
        policy.report().render(&mut text).unwrap();
        assert!(text.contains("running 1\n"), "{text}");
        assert!(text.contains("strength 16\n"), "{text}");
        assert!(text.contains("signature_bytes 64\n"), "{text}");
        assert_eq!(text.lines().count(), 15);
    }

    #[test]
    fn a_stopped_policy_starts_again() {
        let policy = started(ResidentTunables::default());
        policy.batch_pages(0);
        restart(policy, DedupScope::Global);
        policy.batch_pages(0);
        policy.notify_pressure();
        assert!(policy.report().running);
        assert_eq!(policy.report().notifications, 1);
    }

    #[test]
    fn notifications_before_ksmd_runs_count_once() {
        let policy = started(ResidentTunables::default());
        for _ in 0..100 {
            policy.notify_pressure();
        }
        assert_eq!(policy.report().notifications, 1);
        // ksmd's next wait takes the notification and returns at once; the
        // next swap-out counts again.
        let scanned = policy.batch_pages(0);
        policy.wait(scanned, 1_000, || 2_000);
        policy.notify_pressure();
        policy.notify_pressure();
        assert_eq!(policy.report().notifications, 2);
    }
}
