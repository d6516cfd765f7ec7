//! Helpers shared by the backend's integration tests.

use core::cell::Cell;

use core::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use foldswap::{Clock, Config, Domain, DomainCharges};
use foldswap_mem::PAGE_SIZE;

/// Every read advances 50 µs: the ladder always has budget, no test sleeps.
#[allow(dead_code)] // not every test uses every helper
pub struct TickClock(Cell<u64>);

#[allow(dead_code)]
impl TickClock {
    pub fn new() -> Self {
        TickClock(Cell::new(0))
    }
}

impl Clock for TickClock {
    fn now_ns(&self) -> u64 {
        self.0.set(self.0.get() + 50_000);
        self.0.get()
    }
}

/// A config whose ladder may use a whole CPU on every rung, so tests need not wait
/// for scan credit, and which keeps poorly compressible pages raw.
pub fn unthrottled() -> Config {
    Config {
        ladder: foldswap_ladder::Tunables::whole_cpu(),
        keep_incompressible: true,
        ..Config::default()
    }
}

/// Words in random order: lz4 keeps it compressed and the scanner recompresses it
/// with the cold codec (a page whose entry it re-encodes).
#[allow(dead_code)] // not every test uses every helper
pub fn words_page(seed: u64) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"swap ", b"page ", b"merge ", b"pool ", b"delta ", b"zstd ", b"ksm ", b"lru ",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut page = Vec::with_capacity(PAGE_SIZE + 8);
    while page.len() < PAGE_SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        page.extend_from_slice(WORDS[(x % 8) as usize]);
    }
    page.truncate(PAGE_SIZE);
    page
}

/// Bytes no compressor shrinks (xorshift output).
#[allow(dead_code)] // not every test uses every helper
pub fn random_page(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..PAGE_SIZE / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// Make `page` member `member` of its family: a few bytes changed, so members are
/// distinct and similar (the scanner patches them against each other).
#[allow(dead_code)] // not every test uses every helper
pub fn mark_member(page: &mut [u8], member: u64) {
    for k in 0..4 {
        let at = ((member * 977 + k * 131) % (PAGE_SIZE as u64 - 8)) as usize;
        page[at..at + 8].copy_from_slice(&(member * 31 + k).to_le_bytes());
    }
}

/// Domains a [`Ledger`] keeps (0 to 3).
#[allow(dead_code)]
pub const LEDGER_DOMAINS: usize = 4;

/// A host's ledger of domain charges: bytes charged per domain, and whether a
/// charge ever went below zero.
#[allow(dead_code)]
pub struct Ledger {
    charged: [AtomicI64; LEDGER_DOMAINS],
    went_negative: AtomicBool,
}

#[allow(dead_code)]
impl Ledger {
    pub const fn new() -> Self {
        Ledger {
            charged: [const { AtomicI64::new(0) }; LEDGER_DOMAINS],
            went_negative: AtomicBool::new(false),
        }
    }

    pub fn charged(&self, domain: Domain) -> i64 {
        self.charged[usize::from(domain.0)].load(Ordering::SeqCst)
    }

    pub fn went_negative(&self) -> bool {
        self.went_negative.load(Ordering::SeqCst)
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl DomainCharges for Ledger {
    fn charge(&self, domain: Domain, bytes: usize) {
        self.charged[usize::from(domain.0)].fetch_add(bytes as i64, Ordering::SeqCst);
    }

    fn uncharge(&self, domain: Domain, bytes: usize) {
        let before = self.charged[usize::from(domain.0)].fetch_sub(bytes as i64, Ordering::SeqCst);
        if before < bytes as i64 {
            self.went_negative.store(true, Ordering::SeqCst);
        }
    }
}

/// Run scanner bursts until `rounds` ladder rounds have ended (`clock` is the
/// test's: the ladder's time never goes back).
#[allow(dead_code)] // not every test uses every helper
pub fn scan_rounds(
    backend: &foldswap::Backend<foldswap_mem::StdPageProvider, foldswap::StdParker>,
    tunables: &foldswap::ScanTunables,
    scratch: &mut foldswap::Scratch,
    clock: &TickClock,
    rounds: u32,
) {
    let mut ended = 0;
    while ended < rounds {
        ended += backend
            .scan_burst(tunables, scratch, clock)
            .unwrap()
            .rounds_ended;
    }
}

/// Store `page_of(offset)` at every offset of `offsets` (domain 0).
#[allow(dead_code)] // not every test uses every helper
pub fn store_each(
    backend: &foldswap::Backend<foldswap_mem::StdPageProvider, foldswap::StdParker>,
    offsets: core::ops::Range<u64>,
    page_of: impl Fn(u64) -> Vec<u8>,
) {
    let mut scratch = foldswap::Scratch::boxed();
    for offset in offsets {
        backend
            .store(
                0,
                offset,
                &page_of(offset),
                foldswap::Domain(0),
                &mut scratch,
            )
            .unwrap();
    }
}

/// A backend (unthrottled, the std provider) holding word pages at offsets
/// `0..pages`, those `keep` keeps.
#[allow(dead_code)] // not every test uses every helper
pub fn stored(
    pages: u64,
    keep: impl Fn(u64) -> bool,
) -> foldswap::Backend<foldswap_mem::StdPageProvider, foldswap::StdParker> {
    let backend = foldswap::Backend::new(
        foldswap_mem::StdPageProvider,
        unthrottled(),
        foldswap::StdParker::new(),
    )
    .unwrap();
    backend.init(0, pages).unwrap();
    let mut scratch = foldswap::Scratch::boxed();
    for offset in (0..pages).filter(|&o| keep(o)) {
        backend
            .store(
                0,
                offset,
                &words_page(offset),
                foldswap::Domain(0),
                &mut scratch,
            )
            .unwrap();
    }
    backend
}
