//! Shared set-up of the `backend_*` targets (not a target itself): each uses part
//! of it.
#![allow(dead_code)]

use foldswap::{Clock, Config, ScanTunables};
use foldswap_mem::PAGE_SIZE;

/// A counting clock: every read advances 50 µs, so the ladder always has budget.
pub struct TickClock(std::cell::Cell<u64>);

impl TickClock {
    pub fn new() -> Self {
        TickClock(std::cell::Cell::new(0))
    }
}

impl Clock for TickClock {
    fn now_ns(&self) -> u64 {
        let now = self.0.get() + 50_000;
        self.0.set(now);
        now
    }
}

/// A backend config whose ladder may use a whole CPU on every rung (scanner bursts
/// never wait for credit) and which keeps poorly compressible pages raw.
pub fn unthrottled() -> Config {
    let mut ladder = foldswap_ladder::Tunables::governor(foldswap_ladder::Governor::Full);
    for rung in ladder.rungs.iter_mut() {
        rung.cpu_ratio = 10_000;
    }
    Config {
        keep_incompressible: true,
        ladder,
        ..Config::default()
    }
}

/// Scanner tunables for bursts of at most `max_batches` batches that look at every
/// page from the first round on.
pub fn scan_at_once(max_batches: u32) -> ScanTunables {
    ScanTunables {
        cold_rounds: 0,
        max_batches,
        ..ScanTunables::default()
    }
}

pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A page of `family` with small edits `edits`: similar pages within a family,
/// identical ones for equal edits, same-filled for every fourth family.
pub fn page(family: u8, edits: u8) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    let mut x = u64::from(family).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in page.chunks_exact_mut(8) {
        chunk.copy_from_slice(&(xorshift(&mut x) % 6).to_le_bytes());
    }
    if family.is_multiple_of(4) {
        page.fill(family);
    }
    for e in 0..edits % 8 {
        let at = (usize::from(edits) * 131 + usize::from(e) * 977) % PAGE_SIZE;
        page[at] ^= 0x5a;
    }
    page
}
