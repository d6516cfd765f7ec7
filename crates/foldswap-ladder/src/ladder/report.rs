//! What the ladder reports to the host: a region's results this round, a rung's
//! counters, the summary of a round's end, and the ladder's counters. Plain data;
//! the ladder fills them in.

use crate::strength::StrengthChange;

/// A region's scan results in the current round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionRound {
    /// Pages scanned.
    pub scanned: u64,
    /// Of those, slots that held nothing to scan
    /// ([`BatchResult::pages_empty`](crate::BatchResult::pages_empty)): the dedup
    /// ratio is `(changed - broken) / (scanned - empty)`.
    pub empty: u64,
    /// Pages the scan changed: merged, patched or recompressed
    /// ([`BatchResult::pages_changed`](crate::BatchResult::pages_changed)).
    pub changed: u64,
    /// Merges broken by writes (reported with
    /// [`Ladder::report_broken`](crate::Ladder::report_broken)).
    pub broken: u64,
}

/// A rung's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RungStats {
    /// Passes finished (the whole rung swept once).
    pub passes: u64,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// CPU spent, ns, as reported.
    pub cpu_ns: u64,
    /// Stride of the current or last pass.
    pub step: u64,
    /// Duration of the last finished pass, ns.
    pub last_pass_ns: u64,
    /// Longest finished pass, ns.
    pub longest_pass_ns: u64,
}

/// What happened at a round's end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// The round that ended (0 for the first).
    pub round: u64,
    /// Regions that climbed a rung.
    pub promoted: u32,
    /// Regions that fell a rung (including thrashing ones).
    pub demoted: u32,
    /// Regions whose merges kept breaking (counted in `demoted` too, unless already at
    /// the bottom).
    pub thrashing: u32,
    /// A change of hash strength: stored sampled hashes must be moved (`rehash`).
    pub strength_change: Option<StrengthChange>,
    /// Staged tunables took effect.
    pub tunables_applied: bool,
}

/// The ladder's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LadderStats {
    /// Rounds ended.
    pub rounds: u64,
    /// Batches completed.
    pub batches: u64,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// Pages the scan changed: merged, patched or recompressed
    /// ([`BatchResult::pages_changed`](crate::BatchResult::pages_changed)).
    pub pages_changed: u64,
    /// Merges reported broken.
    pub merges_broken: u64,
    /// CPU spent, ns, as reported.
    pub cpu_ns: u64,
    /// Sleeps asked for.
    pub sleeps: u64,
    /// Regions added / removed.
    pub regions_added: u64,
    /// See `regions_added`.
    pub regions_removed: u64,
    /// Region moves up / down / demotions for thrashing.
    pub promotions: u64,
    /// See `promotions`.
    pub demotions: u64,
    /// See `promotions`.
    pub thrashing: u64,
    /// Tunables staged, applied, and fields clamped while staging.
    pub tunables_staged: u64,
    /// See `tunables_staged`.
    pub tunables_applied: u64,
    /// See `tunables_staged`.
    pub tunables_clamped: u64,
    /// Times the host's clock went backwards (ignored: no credit is earned).
    pub clock_backwards: u64,
    /// Batch results whose region had been removed (cost kept, results dropped).
    pub results_for_removed_regions: u64,
    /// Calls rejected with an error (stale handles, bad reports, wrong order).
    pub rejected_calls: u64,
}
