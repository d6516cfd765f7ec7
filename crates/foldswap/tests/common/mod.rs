//! Helpers shared by the backend's integration tests.

use foldswap::Config;

/// A config whose ladder may use a whole CPU on every rung, so tests need not wait
/// for scan credit, and which keeps poorly compressible pages raw.
pub fn unthrottled() -> Config {
    let mut ladder = foldswap_ladder::Tunables::governor(foldswap_ladder::Governor::Full);
    for rung in ladder.rungs.iter_mut() {
        rung.cpu_ratio = 10_000;
    }
    ladder.max_cpu = 10_000;
    Config {
        ladder,
        keep_incompressible: true,
        ..Config::default()
    }
}
