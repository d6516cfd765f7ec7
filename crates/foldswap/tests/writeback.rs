//! Writeback: as everything held nears the pool limit, pages go to the host's
//! swap device in the documented order (cold lone pages, then lone pages, then
//! shared contents and bases); a page written back is never also loaded from
//! the pool; a victim that changed before its claim is not written; and with
//! writeback stores keep succeeding under a limit that refuses them without it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

mod common;

use common::{TickClock, unthrottled, words_page};
use foldswap::{
    Backend, Config, Domain, Error, ScanTunables, Scratch, StdParker, SwapDevice, VictimClass,
};
use foldswap_mem::{PAGE_SIZE, StdPageProvider};

type TestBackend = Backend<StdPageProvider, StdParker>;

/// A swap device in memory: the pages written, the order they came in, and the
/// slots held (claimed for a write, or by a swap-in in the threaded test).
#[derive(Default)]
struct Device {
    pages: Mutex<HashMap<u64, Vec<u8>>>,
    writes: Mutex<Vec<u64>>,
    held: Mutex<HashSet<u64>>,
    /// Run on every claim, before the slot is taken (a store racing the writer).
    on_claim: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Device {
    fn hold(&self, offset: u64) -> bool {
        self.held.lock().unwrap().insert(offset)
    }

    fn let_go(&self, offset: u64) {
        assert!(
            self.held.lock().unwrap().remove(&offset),
            "slot {offset} not held"
        );
    }

    fn page(&self, offset: u64) -> Option<Vec<u8>> {
        self.pages.lock().unwrap().get(&offset).cloned()
    }

    fn writes(&self) -> Vec<u64> {
        self.writes.lock().unwrap().clone()
    }
}

impl SwapDevice for Device {
    type Slot = u64;

    fn claim(&self, swap_type: usize, offset: u64) -> Option<u64> {
        assert_eq!(swap_type, 0);
        if let Some(hook) = &self.on_claim {
            hook(offset);
        }
        self.hold(offset).then_some(offset)
    }

    fn write(&self, slot: u64, page: &[u8; PAGE_SIZE]) {
        self.pages.lock().unwrap().insert(slot, page.to_vec());
        self.writes.lock().unwrap().push(slot);
        self.let_go(slot);
    }

    fn release(&self, slot: u64) {
        self.let_go(slot);
    }
}

fn backend(pages: u64, config: Config) -> TestBackend {
    let backend = Backend::new(StdPageProvider, config, StdParker::new()).unwrap();
    backend.init(0, pages).unwrap();
    backend
}

/// Swap `page` out to `offset` as the kernel host does: the slot's old device
/// copy is forgotten (the slot was freed and is used again); a store the pool
/// refuses drops what the slot held (as the kernel patch does) and the page goes
/// to the device. Other store errors are returned.
fn swap_out(
    backend: &TestBackend,
    device: &Device,
    offset: u64,
    page: Vec<u8>,
    scratch: &mut Scratch,
) -> Result<(), Error> {
    device.pages.lock().unwrap().remove(&offset);
    match backend.store(0, offset, &page, Domain(0), scratch) {
        Ok(_) => Ok(()),
        Err(Error::PoolFull) => {
            backend.invalidate_page(0, offset).unwrap();
            device.pages.lock().unwrap().insert(offset, page);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn store(backend: &TestBackend, offset: u64, page: &[u8], scratch: &mut Scratch) {
    backend
        .store(0, offset, page, Domain(0), scratch)
        .unwrap_or_else(|e| panic!("store at {offset}: {e}"));
}

/// Every offset in `expected` loads its page from the pool, or (written back)
/// is not in the pool and the device holds exactly that page: never both.
fn check_pool_or_device(backend: &TestBackend, device: &Device, expected: &HashMap<u64, Vec<u8>>) {
    let mut scratch = Scratch::boxed();
    let mut out = [0u8; PAGE_SIZE];
    for (&offset, page) in expected {
        match backend.load(0, offset, &mut out, &mut scratch) {
            Ok(()) => {
                assert!(
                    out[..] == page[..],
                    "offset {offset}: other bytes in the pool"
                );
                assert!(device.page(offset).is_none(), "offset {offset} in both");
            }
            Err(Error::NotFound) => {
                let written = device.page(offset);
                assert!(
                    written.as_deref() == Some(&page[..]),
                    "offset {offset}: not on the device as stored"
                );
            }
            Err(e) => panic!("offset {offset}: {e}"),
        }
    }
}

/// The scanner thread's body: scan, writing back to `device`, until shut down.
fn scan_writing_back(backend: &TestBackend, device: &Device) {
    let mut scratch = Scratch::boxed();
    let clock = foldswap::StdClock::new();
    backend
        .run_scanner_writing_back(&mut scratch, &clock, device)
        .unwrap();
}

/// Run scanner rounds until every page stored so far has been examined (cold).
fn examine_everything(backend: &TestBackend) {
    let mut scratch = Scratch::boxed();
    let tunables = ScanTunables {
        cold_rounds: 0,
        patch: 0,
        ..ScanTunables::default()
    };
    let clock = TickClock::new();
    let mut rounds = 0;
    while rounds < 3 {
        rounds += backend
            .scan_burst(&tunables, &mut scratch, &clock)
            .unwrap()
            .rounds_ended;
    }
}

/// Cold lone pages go first, then lone pages stored since the scanner came by,
/// then contents several offsets share, whatever their offsets (the sweep
/// meets them in the opposite order); each written page is exact on the device
/// and gone from the pool.
#[test]
fn cold_lone_pages_go_first_then_lone_then_shared() {
    let backend = backend(256, unthrottled());
    let mut scratch = Scratch::boxed();
    let mut expected = HashMap::new();
    // 96..128: lone pages the scanner settles (examined: cold).
    for offset in 96..128 {
        let page = words_page(offset);
        store(&backend, offset, &page, &mut scratch);
        expected.insert(offset, page);
    }
    examine_everything(&backend);
    // 0..64: 32 contents, two offsets each; 64..96: lone pages stored after.
    for offset in 0..96 {
        let seed = if offset < 64 {
            1_000 + offset / 2
        } else {
            offset
        };
        let page = words_page(seed);
        store(&backend, offset, &page, &mut scratch);
        expected.insert(offset, page);
    }
    // A limit below a few pages: everything has to go.
    let device = Device::default();
    backend.set_pool_limit_bytes(1);
    assert!(backend.writeback_due());
    let report = backend.write_back(&device, u32::MAX, &mut scratch);
    assert_eq!(report.written, 128, "{report:?}");
    assert_eq!(report.worst_class, Some(VictimClass::SharedOrBase));
    let writes = device.writes();
    let rank = |offset: u64| match offset {
        96..128 => 0,
        64..96 => 1,
        _ => 2,
    };
    assert!(
        writes.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "order: {writes:?}"
    );
    let s = backend.stats().snapshot();
    assert_eq!((s.written_back_pages, s.stored_pages), (128, 0), "{s:?}");
    assert_eq!(backend.census(), foldswap::Census::default());
    check_pool_or_device(&backend, &device, &expected);
}

/// Writeback stops at the target: a limit a little under what is held writes
/// back only lone pages, only as many as bring everything held under 90 % of
/// the limit, and the rest stays in the pool.
#[test]
fn writeback_stops_at_the_target_and_takes_lone_pages_only() {
    let backend = backend(256, unthrottled());
    let mut scratch = Scratch::boxed();
    let mut expected = HashMap::new();
    for offset in 0..192 {
        // 0..128 lone, 128..192 shared in pairs.
        let seed = if offset < 128 {
            offset
        } else {
            1_000 + offset / 2
        };
        let page = words_page(seed);
        store(&backend, offset, &page, &mut scratch);
        expected.insert(offset, page);
    }
    let held = backend.total_bytes_held();
    let limit = held * 100 / 97;
    backend.set_pool_limit_bytes(limit);
    let device = Device::default();
    let report = backend.write_back(&device, u32::MAX, &mut scratch);
    assert!(report.written > 0, "{report:?}");
    assert_eq!(report.worst_class, Some(VictimClass::Lone));
    assert!(device.writes().iter().all(|&o| o < 128));
    assert!(backend.total_bytes_held() <= limit * 9 / 10);
    assert!(!backend.above_writeback_target());
    // Nothing more is due: a second run writes nothing.
    assert_eq!(
        backend.write_back(&device, u32::MAX, &mut scratch).written,
        0
    );
    assert!(backend.stats().snapshot().stored_pages < 192);
    check_pool_or_device(&backend, &device, &expected);
}

/// A victim stored over between its choice and its claim (a swap slot freed and
/// used again) is not written: the slot is let go, the new page stays in the
/// pool and loads exactly.
#[test]
fn a_victim_stored_over_before_its_claim_is_not_written() {
    let backend = std::sync::Arc::new(backend(64, unthrottled()));
    let mut scratch = Scratch::boxed();
    for offset in 0..64 {
        store(&backend, offset, &words_page(offset), &mut scratch);
    }
    let racer = backend.clone();
    let new_page = words_page(5_000);
    let stored_over = new_page.clone();
    let device = Device {
        on_claim: Some(Box::new(move |offset| {
            if offset == 0 {
                let mut scratch = Scratch::boxed();
                racer
                    .store(0, 0, &stored_over, Domain(0), &mut scratch)
                    .unwrap();
            }
        })),
        ..Device::default()
    };
    // Due (held at 96 % of the limit), yet room for the racing store.
    backend.set_pool_limit_bytes(backend.total_bytes_held() * 100 / 96);
    assert!(backend.writeback_due());
    let report = backend.write_back(&device, 1, &mut scratch);
    assert_eq!((report.raced, report.written), (1, 1), "{report:?}");
    assert_eq!(device.writes(), vec![1]);
    assert_eq!(backend.stats().snapshot().writeback_raced, 1);
    let mut out = [0u8; PAGE_SIZE];
    backend.load(0, 0, &mut out, &mut scratch).unwrap();
    assert_eq!(&out[..], &new_page[..]);
    assert!(device.held.lock().unwrap().is_empty(), "a slot left held");
}

/// A slot the device has busy (a swap-in holds it) is skipped, not waited for.
#[test]
fn a_busy_slot_is_skipped() {
    let backend = backend(64, unthrottled());
    let mut scratch = Scratch::boxed();
    for offset in 0..4 {
        store(&backend, offset, &words_page(offset), &mut scratch);
    }
    let device = Device::default();
    assert!(device.hold(0));
    backend.set_pool_limit_bytes(1);
    let report = backend.write_back(&device, 2, &mut scratch);
    assert_eq!((report.busy, report.written), (1, 2), "{report:?}");
    assert_eq!(device.writes(), vec![1, 2]);
    let mut out = [0u8; PAGE_SIZE];
    backend.load(0, 0, &mut out, &mut scratch).unwrap();
    assert_eq!(&out[..], &words_page(0)[..]);
}

/// With writeback off, or no limit, nothing is written.
#[test]
fn no_writeback_without_a_limit_or_when_off() {
    for (config, limit) in [
        (unthrottled(), usize::MAX),
        (
            Config {
                writeback: false,
                ..unthrottled()
            },
            1,
        ),
    ] {
        let backend = backend(64, config);
        let mut scratch = Scratch::boxed();
        for offset in 0..4 {
            store(&backend, offset, &words_page(offset), &mut scratch);
        }
        backend.set_pool_limit_bytes(limit);
        let device = Device::default();
        assert!(!backend.writeback_due());
        assert_eq!(
            backend.write_back(&device, u32::MAX, &mut scratch).written,
            0
        );
        assert!(device.writes().is_empty());
    }
}

/// Writeback switched off at run time writes nothing and drops what pressure
/// asked for; switched on again it writes back as before.
#[test]
fn writeback_switched_off_at_run_time_writes_nothing() {
    let backend = backend(64, unthrottled());
    let mut scratch = Scratch::boxed();
    for offset in 0..8 {
        store(&backend, offset, &words_page(offset), &mut scratch);
    }
    backend.set_pool_limit_bytes(1);
    let device = Device::default();
    backend.set_writeback(false);
    assert!(!backend.writeback_enabled() && !backend.writeback_due());
    assert_eq!(
        backend.write_back(&device, u32::MAX, &mut scratch).written,
        0
    );
    assert_eq!(backend.write_back_lone(&device, 8, &mut scratch).written, 0);
    assert!(device.writes().is_empty());
    backend.set_writeback(true);
    assert!(backend.writeback_due());
    assert_eq!(backend.write_back(&device, 3, &mut scratch).written, 3);
    assert_eq!(device.writes(), vec![0, 1, 2]);
}

/// The victims of every class, for the pressure tests, laid out so that a sweep
/// from offset 0 meets the worst first: `shared` contents held by two offsets
/// each at `0..2 * shared`, then `fresh` lone pages the scanner has not examined,
/// then `cold` lone pages it has (stored first). Returns the pages and the range
/// of the cold ones.
fn store_shared_fresh_and_cold(
    backend: &TestBackend,
    shared: u64,
    fresh: u64,
    cold: u64,
) -> (HashMap<u64, Vec<u8>>, core::ops::Range<u64>) {
    let mut scratch = Scratch::boxed();
    let mut expected = HashMap::new();
    let mut put = |offset: u64, seed: u64| {
        let page = words_page(seed);
        store(backend, offset, &page, &mut scratch);
        expected.insert(offset, page);
    };
    let cold_offsets = 2 * shared + fresh..2 * shared + fresh + cold;
    for offset in cold_offsets.clone() {
        put(offset, offset);
    }
    examine_everything(backend);
    for offset in 0..2 * shared + fresh {
        put(
            offset,
            if offset < 2 * shared {
                1_000 + offset / 2
            } else {
                offset
            },
        );
    }
    (expected, cold_offsets)
}

/// Under memory pressure (no limit at all) lone pages are written back, at most
/// as many as asked for, cold ones first though the sweep meets them last;
/// shared contents stay, however many are asked for.
#[test]
fn pressure_writes_back_lone_pages_cold_first_never_shared() {
    let backend = backend(256, unthrottled());
    let (expected, cold) = store_shared_fresh_and_cold(&backend, 16, 16, 32);
    let device = Device::default();
    let mut scratch = Scratch::boxed();
    let report = backend.write_back_lone(&device, 20, &mut scratch);
    assert_eq!(
        (report.written, report.worst_class),
        (20, Some(VictimClass::ColdLone))
    );
    let report = backend.write_back_lone(&device, u32::MAX, &mut scratch);
    assert_eq!(
        (report.written, report.worst_class),
        (12 + 16, Some(VictimClass::Lone)),
        "{report:?}"
    );
    let writes = device.writes();
    assert!(writes[..32].iter().all(|o| cold.contains(o)), "{writes:?}");
    assert!(
        writes[32..].iter().all(|&o| (32..48).contains(&o)),
        "{writes:?}"
    );
    assert_eq!(backend.stats().snapshot().stored_pages, 32);
    check_pool_or_device(&backend, &device, &expected);
}

/// A request under pressure wakes a scanner given a device, which writes back
/// what was asked for (lone pages, no limit set); without a scanner
/// with a device, or with writeback off, nothing is asked.
#[test]
fn a_pressure_request_is_written_back_by_the_scanner() {
    let backend = backend(256, unthrottled());
    let (expected, _) = store_shared_fresh_and_cold(&backend, 16, 16, 32);
    assert_eq!(
        backend.request_writeback(8),
        0,
        "no scanner writes back yet"
    );
    backend
        .stage_scan_tunables(ScanTunables {
            sleep_msecs: 60_000,
            max_batches: 1,
            ..ScanTunables::default()
        })
        .unwrap();
    let device = Device::default();
    std::thread::scope(|s| {
        let scanner = s.spawn(|| scan_writing_back(&backend, &device));
        // The scanner announces its device when it starts.
        let mut asked = 0;
        while asked == 0 {
            asked = backend.request_writeback(10);
            std::thread::yield_now();
        }
        // Its sleep is a minute: only the request's wake-up gets these written.
        while device.writes().len() < 10 {
            std::thread::yield_now();
        }
        backend.shutdown();
        scanner.join().unwrap();
    });
    let writes = device.writes();
    // Lone pages only (the scanner's own bursts may have examined some of the
    // fresh ones meanwhile: which lone ones go first is the test above's).
    assert_eq!(writes.len(), 10, "{writes:?}");
    assert!(writes.iter().all(|&o| o >= 32), "{writes:?}");
    let s = backend.stats().snapshot();
    assert_eq!(
        (s.writeback_requested_pages, s.written_back_pages),
        (10, 10)
    );
    check_pool_or_device(&backend, &device, &expected);
    // Once the scanner is gone, or writeback is off, nothing is asked.
    assert_eq!(backend.request_writeback(5), 0);
    backend.set_writeback(false);
    assert_eq!(backend.request_writeback(5), 0);
}

/// A clock for the scanner's thread that asks for writeback at its `ask_at`-th
/// reading (in the middle of a burst) and notes the pages scanned by then. Every
/// reading advances a second: the ladder never has the budget to sleep, so a
/// burst runs all its batches.
struct AskingClock<'a> {
    backend: &'a TestBackend,
    reads: core::cell::Cell<u64>,
    ask_at: u64,
    scanned_when_asked: core::cell::Cell<Option<u64>>,
}

impl foldswap::Clock for AskingClock<'_> {
    fn now_ns(&self) -> u64 {
        let reads = self.reads.get() + 1;
        self.reads.set(reads);
        if reads == self.ask_at {
            let scanned = self.backend.stats().snapshot().scanned_pages;
            assert!(self.backend.request_writeback(4) > 0);
            self.scanned_when_asked.set(Some(scanned));
        }
        reads * 1_000_000_000
    }
}

/// A device that notes the pages scanned when its first page was written.
struct ScanNotingDevice<'a> {
    device: &'a Device,
    backend: &'a TestBackend,
    scanned_at_first_write: Mutex<Option<u64>>,
}

impl SwapDevice for ScanNotingDevice<'_> {
    type Slot = u64;

    fn claim(&self, swap_type: usize, offset: u64) -> Option<u64> {
        self.device.claim(swap_type, offset)
    }

    fn write(&self, slot: u64, page: &[u8; PAGE_SIZE]) {
        let scanned = self.backend.stats().snapshot().scanned_pages;
        self.scanned_at_first_write
            .lock()
            .unwrap()
            .get_or_insert(scanned);
        self.device.write(slot, page);
    }

    fn release(&self, slot: u64) {
        self.device.release(slot);
    }
}

/// Writeback asked for while a burst runs is done after the batch in flight, not
/// when the burst ends: a burst of many batches (a backlog, cold blocks being
/// formed) does not leave a full pool refusing stores meanwhile. (It did: under
/// a limit, threads storing while the scanner formed blocks saw thousands of
/// refusals and not one page written back.)
#[test]
fn writeback_asked_for_during_a_burst_waits_for_one_batch_only() {
    const PAGES: u64 = 256;
    let backend = backend(PAGES, unthrottled());
    let mut scratch = Scratch::boxed();
    let mut expected = HashMap::new();
    for offset in 0..PAGES {
        let page = words_page(offset);
        store(&backend, offset, &page, &mut scratch);
        expected.insert(offset, page);
    }
    backend
        .stage_scan_tunables(ScanTunables {
            sleep_msecs: 60_000,
            max_batches: 100_000,
            ..ScanTunables::default()
        })
        .unwrap();
    let device = Device::default();
    let noting = ScanNotingDevice {
        device: &device,
        backend: &backend,
        scanned_at_first_write: Mutex::new(None),
    };
    let scanned_when_asked = std::thread::scope(|s| {
        let scanner = s.spawn(|| {
            let mut scratch = Scratch::boxed();
            let clock = AskingClock {
                backend: &backend,
                reads: core::cell::Cell::new(0),
                ask_at: 40,
                scanned_when_asked: core::cell::Cell::new(None),
            };
            backend
                .run_scanner_writing_back(&mut scratch, &clock, &noting)
                .unwrap();
            clock.scanned_when_asked.get()
        });
        while device.writes().len() < 4 {
            std::thread::yield_now();
        }
        backend.shutdown();
        scanner.join().unwrap()
    });
    let asked = scanned_when_asked.expect("the clock asked during the burst");
    let written = noting.scanned_at_first_write.lock().unwrap().unwrap();
    // The batch in flight ends (a batch and the windows it gathers stay within
    // the area's pages twice over); the burst's other batches wait.
    assert!(
        written - asked <= 2 * PAGES,
        "asked at {asked} pages scanned, first write at {written}"
    );
    assert_eq!(device.writes().len(), 4);
    check_pool_or_device(&backend, &device, &expected);
}

/// Under a limit, stores refused without writeback all succeed with it (a
/// worker writing back whenever it is due), and everything held stays within a
/// few pages of the limit.
#[test]
fn with_writeback_stores_keep_succeeding_under_the_limit() {
    const PAGES: u64 = 600;
    const LIMIT: usize = 512 << 10;
    let mut refused = [0u64; 2];
    for (i, writeback) in [false, true].into_iter().enumerate() {
        let config = Config {
            pool_limit_bytes: LIMIT,
            writeback,
            ..unthrottled()
        };
        let backend = backend(PAGES, config);
        let device = Device::default();
        let mut scratch = Scratch::boxed();
        let mut expected = HashMap::new();
        for offset in 0..PAGES {
            let page = words_page(offset);
            match backend.store(0, offset, &page, Domain(0), &mut scratch) {
                Ok(_) => {
                    expected.insert(offset, page);
                }
                Err(Error::PoolFull) => refused[i] += 1,
                Err(e) => panic!("store: {e}"),
            }
            if backend.writeback_due() {
                backend.write_back(&device, 64, &mut scratch);
            }
            assert!(backend.total_bytes_held() <= LIMIT + 4 * PAGE_SIZE);
        }
        check_pool_or_device(&backend, &device, &expected);
        if writeback {
            let s = backend.stats().snapshot();
            assert_eq!(s.written_back_pages, device.writes().len() as u64);
            assert_eq!(s.stored_pages + s.written_back_pages, PAGES);
        }
    }
    assert!(refused[0] > 0, "the limit never refused a store");
    assert_eq!(refused[1], 0, "refused with writeback");
}

/// Threads store, load and invalidate their own offsets while the scanner
/// writes back under a limit. A swap-in holds its slot on the device while it
/// loads, as the kernel's swap cache folio does: every load returns the page
/// last stored, from the pool or (written back) from the device, never a stale
/// copy.
#[test]
fn loads_racing_writeback_get_the_right_bytes() {
    const THREADS: u64 = 3;
    const OFFSETS: u64 = 96;
    let config = Config {
        pool_limit_bytes: 384 << 10,
        ..unthrottled()
    };
    let backend = backend(THREADS * OFFSETS, config);
    backend
        .stage_scan_tunables(ScanTunables {
            sleep_msecs: 1,
            // Short bursts: writeback runs between them, and shutdown is seen
            // between them.
            max_batches: 8,
            ..ScanTunables::default()
        })
        .unwrap();
    let device = Device::default();
    std::thread::scope(|s| {
        let scanner = s.spawn(|| scan_writing_back(&backend, &device));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (backend, device) = (&backend, &device);
                s.spawn(move || {
                    let mut scratch = Scratch::boxed();
                    let mut out = [0u8; PAGE_SIZE];
                    let mut version: HashMap<u64, u64> = HashMap::new();
                    let mut x = t * 7 + 1;
                    for step in 0..4_000u64 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let offset = t * OFFSETS + (x >> 33) % OFFSETS;
                        // The slot is ours while we use it (swap-in, swap-out).
                        while !device.hold(offset) {
                            std::thread::yield_now();
                        }
                        match (x >> 20) % 8 {
                            0..4 => {
                                let seed = offset * 100_000 + step;
                                let page = words_page(seed);
                                swap_out(backend, device, offset, page, &mut scratch)
                                    .unwrap_or_else(|e| panic!("store: {e}"));
                                version.insert(offset, seed);
                            }
                            4..7 => {
                                let want = version.get(&offset).map(|&seed| words_page(seed));
                                let got = match backend.load(0, offset, &mut out, &mut scratch) {
                                    Ok(()) => Some(out.to_vec()),
                                    Err(Error::NotFound) => device.page(offset),
                                    Err(e) => panic!("load: {e}"),
                                };
                                assert!(got == want, "offset {offset}: other bytes");
                            }
                            _ => {
                                backend.invalidate_page(0, offset).unwrap();
                                device.pages.lock().unwrap().remove(&offset);
                                version.remove(&offset);
                            }
                        }
                        device.let_go(offset);
                    }
                    version
                })
            })
            .collect();
        let versions: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        backend.shutdown();
        scanner.join().unwrap();
        let expected: HashMap<u64, Vec<u8>> = versions
            .into_iter()
            .flatten()
            .map(|(offset, seed)| (offset, words_page(seed)))
            .collect();
        check_pool_or_device(&backend, &device, &expected);
    });
    let s = backend.stats().snapshot();
    assert!(s.written_back_pages > 0, "{s:?}");
}

mod model {
    //! Any sequence of store / load / invalidate / scanner burst / limit change /
    //! writeback, with a host that behaves as the kernel patch does (a refused
    //! store drops the slot's old page and goes to the device; a slot stored or
    //! freed again forgets its device copy), returns exactly what was stored:
    //! from the pool, or from the device if written back, never both; and the
    //! counters add up after every step.

    use super::*;
    use proptest::prelude::*;

    const OFFSETS: u64 = 48;

    #[derive(Debug, Clone)]
    enum Op {
        /// Store page `seed` at an offset: 0 is a zero page, seeds repeat (shared
        /// contents), the rest are word pages.
        Store(u64, u8),
        Load(u64),
        Invalidate(u64),
        Scan,
        /// Write back at most this many pages, if due.
        WriteBack(u32),
        /// Limit everything held to this many KiB (0: no limit).
        Limit(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..OFFSETS, 0u8..24).prop_map(|(o, s)| Op::Store(o, s)),
            5 => (0..OFFSETS).prop_map(Op::Load),
            2 => (0..OFFSETS).prop_map(Op::Invalidate),
            1 => Just(Op::Scan),
            3 => (1u32..16).prop_map(Op::WriteBack),
            1 => prop_oneof![Just(0u16), 40u16..200].prop_map(Op::Limit),
        ]
    }

    fn page_of(seed: u8) -> Vec<u8> {
        if seed == 0 {
            vec![0; PAGE_SIZE]
        } else {
            words_page(u64::from(seed))
        }
    }

    fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let backend = backend(OFFSETS, unthrottled());
        let device = Device::default();
        let mut scratch = Scratch::boxed();
        let clock = TickClock::new();
        let tunables = ScanTunables {
            cold_rounds: 0,
            max_batches: 4,
            block_pages: 4,
            ..ScanTunables::default()
        };
        let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut out = [0u8; PAGE_SIZE];
        for op in ops {
            match op {
                Op::Store(o, seed) => {
                    let page = page_of(seed);
                    if let Err(e) = swap_out(&backend, &device, o, page.clone(), &mut scratch) {
                        return Err(TestCaseError::fail(format!("store: {e}")));
                    }
                    model.insert(o, page);
                }
                Op::Load(o) => {
                    let on_device = device.page(o);
                    match backend.load(0, o, &mut out, &mut scratch) {
                        Ok(()) => {
                            prop_assert!(model.get(&o).is_some_and(|p| p[..] == out[..]));
                            prop_assert!(on_device.is_none(), "offset {} in both", o);
                        }
                        Err(Error::NotFound) => prop_assert!(on_device == model.get(&o).cloned()),
                        Err(e) => return Err(TestCaseError::fail(format!("load: {e}"))),
                    }
                }
                Op::Invalidate(o) => {
                    let had = backend.invalidate_page(0, o).unwrap();
                    let on_device = device.pages.lock().unwrap().remove(&o).is_some();
                    prop_assert_eq!(had || on_device, model.remove(&o).is_some());
                }
                Op::Scan => {
                    backend.scan_burst(&tunables, &mut scratch, &clock).unwrap();
                }
                Op::WriteBack(n) => {
                    if backend.writeback_due() {
                        let report = backend.write_back(&device, n, &mut scratch);
                        prop_assert!(report.written <= n);
                    }
                }
                Op::Limit(kib) => {
                    let limit = if kib == 0 {
                        usize::MAX
                    } else {
                        usize::from(kib) << 10
                    };
                    backend.set_pool_limit_bytes(limit);
                }
            }
            prop_assert!(device.held.lock().unwrap().is_empty(), "a slot left held");
            let s = backend.stats().snapshot();
            let on_device = device.pages.lock().unwrap().len() as u64;
            prop_assert_eq!(s.stored_pages + on_device, model.len() as u64, "{:?}", s);
            prop_assert_eq!(s.written_back_pages, device.writes().len() as u64);
            let (kinds, stored) = s.kinds_and_stored();
            prop_assert_eq!(kinds, stored, "{:?}", s);
        }
        check_pool_or_device(&backend, &device, &model);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn writeback_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
            check(ops)?;
        }
    }
}

/// A victim whose bytes cannot be decoded stays where it is, counted in
/// `writeback_errors`, and does not keep the run going: it writes back what it
/// can and ends.
#[test]
fn an_undecodable_victim_is_left_and_the_run_ends() {
    let backend = backend(64, unthrottled());
    let mut scratch = Scratch::boxed();
    for offset in 0..4 {
        store(&backend, offset, &words_page(offset), &mut scratch);
    }
    let mut out = [0u8; PAGE_SIZE];
    let mut at = 0;
    while backend.load(0, 0, &mut out, &mut scratch).is_ok() {
        assert!(backend.corrupt_stored_object(0, 0, at, 0xff).unwrap());
        at += 1;
    }
    backend.set_pool_limit_bytes(1);
    let device = Device::default();
    let report = backend.write_back(&device, u32::MAX, &mut scratch);
    assert_eq!(report.written, 3, "{report:?}");
    assert_eq!(device.writes(), vec![1, 2, 3]);
    assert!(backend.stats().snapshot().writeback_errors > 0);
    assert_eq!(backend.stats().snapshot().stored_pages, 1);
    assert!(backend.load(0, 0, &mut out, &mut scratch).is_err());
}
