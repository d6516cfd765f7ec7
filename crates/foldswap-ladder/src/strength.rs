//! The strength adapter: how many words the sampled hash reads, tuned from
//! measured benefit and cost.
//!
//! Benefit of sampling, per sampled page: the full-page hash it did not compute,
//! minus the sampled words it did read, `full_hash_ps - strength * sampled_word_ps`.
//! Cost of sampling: the work a stronger hash would have avoided, i.e. the full
//! hashes and byte comparisons spent on sampled-hash *collisions* (pages whose
//! sampled hashes matched but whose contents differ). Work spent on real duplicates
//! is not a cost of sampling: it is needed at any strength.
//!
//! The host (through the ladder or directly) feeds [`HashWork`] counters with
//! [`StrengthAdapter::account`]; [`StrengthAdapter::end_window`] evaluates the window,
//! normally once per ladder round, so the strength only changes when the merge
//! trees rebuild their unstable tree anyway.
//!
//! ```text
//!     cost ≥ 90 % of benefit                 net per page drifted > 50 %, or
//!   ┌── raise (x2, to max) ◄──── Steady ───► 8 steady windows passed:
//!   │                            ▲  │  ▲     ProbeDown (s/2, one window)
//!   └────────────────────────────┘  │  │            │
//!          3 windows without cost   │  │            ▼
//!          lower (/2) ◄─────────────┘  │     ProbeUp (2s, one window)
//!                                      │            │
//!                                      └── keep the best net of s/2, s, 2s
//! ```
//!
//! Windows with fewer than `min_window_pages` sampled pages are not evaluated; their
//! counters carry over. Every decision is counted in [`AdapterStats`].

use crate::hash::{FULL_STRENGTH, MAX_STRENGTH, clamp_strength};

/// What hashing cost in a window (or a batch): the counters the host reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashWork {
    /// Pages hashed with the sampled hash at the current strength.
    pub sampled: u64,
    /// Full-page hashes computed because a sampled hash collided with a different page.
    pub collision_full_hashes: u64,
    /// Byte comparisons that found two pages different.
    pub collision_compares: u64,
    /// Sampled-hash matches whose pages turned out different.
    pub collisions: u64,
}

impl HashWork {
    /// Add `other`'s counters (saturating).
    pub fn add(&mut self, other: &HashWork) {
        self.sampled = self.sampled.saturating_add(other.sampled);
        self.collision_full_hashes = self
            .collision_full_hashes
            .saturating_add(other.collision_full_hashes);
        self.collision_compares = self
            .collision_compares
            .saturating_add(other.collision_compares);
        self.collisions = self.collisions.saturating_add(other.collisions);
    }
}

/// Cost weights, in picoseconds, that turn [`HashWork`] counts into time. The
/// defaults were measured by `benches/ladder.rs` on the development machine (AMD
/// EPYC, 2 shared cores) with *cold* pages, as a scanner meets them: a sampled word
/// costs about a cache miss of its own (≈ 20 ns at strength 64, amortised), a
/// full-page xxh3 ≈ 1.4 µs, a 4 KiB compare of two cold pages ≈ 0.42 µs. A host may
/// measure its own and stage them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostWeights {
    /// One sampled word read and mixed.
    pub sampled_word_ps: u64,
    /// One full-page xxh3 hash.
    pub full_hash_ps: u64,
    /// One 4 KiB byte comparison of two pages.
    pub compare_ps: u64,
}

impl Default for CostWeights {
    fn default() -> Self {
        CostWeights {
            sampled_word_ps: 20_000,
            full_hash_ps: 1_400_000,
            compare_ps: 420_000,
        }
    }
}

/// Tunables of the adapter (part of the ladder's staged tunables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterTunables {
    /// Strength to start at (UKSM: 64).
    pub initial_strength: u32,
    /// Lowest strength the adapter may choose.
    pub min_strength: u32,
    /// Highest strength the adapter may choose (at most [`MAX_STRENGTH`]).
    pub max_strength: u32,
    /// Raise when cost ≥ this share of benefit, in 1/10000 (UKSM: 90 % = 9000).
    pub raise_cost_ratio: u32,
    /// Lower after this many consecutive windows without any cost (UKSM: 3).
    pub lower_after_idle_windows: u32,
    /// Probe down and up when net benefit per page moved by more than this share of
    /// the previous window's, in 1/10000 (5000 = 50 %).
    pub probe_drift_ratio: u32,
    /// Probe down and up after this many steady windows even without drift, so a
    /// strength that is merely good enough is not kept forever (UKSM probes only on
    /// drift and lowers only when cost is exactly zero, so on real memory, where a few
    /// collisions always happen, it never tries a cheaper strength). 0 disables.
    pub probe_every_windows: u32,
    /// A window is evaluated only once this many pages were sampled.
    pub min_window_pages: u64,
    /// The weights that turn counts into time.
    pub weights: CostWeights,
}

impl Default for AdapterTunables {
    fn default() -> Self {
        AdapterTunables {
            initial_strength: 64,
            min_strength: 4,
            max_strength: MAX_STRENGTH,
            raise_cost_ratio: 9000,
            lower_after_idle_windows: 3,
            probe_drift_ratio: 5000,
            probe_every_windows: 8,
            min_window_pages: 256,
            weights: CostWeights::default(),
        }
    }
}

impl AdapterTunables {
    /// Clamp into documented ranges: strengths into `1..=MAX_STRENGTH` with
    /// `min ≤ initial ≤ max` (a `min` above `max` is lowered to `max`), ratios to at
    /// most 10000, `min_window_pages` and `lower_after_idle_windows` to at least 1, zero
    /// weights to 1 ps. Returns the clamped tunables and how many fields changed.
    pub fn clamped(self) -> (AdapterTunables, u32) {
        let mut t = self;
        let mut changed = 0;
        let max = clamp_strength(t.max_strength).max(1);
        let min = t.min_strength.clamp(1, max);
        let v = max;
        changed += set(&mut t.max_strength, v);
        let v = min;
        changed += set(&mut t.min_strength, v);
        let v = t.initial_strength.clamp(min, max);
        changed += set(&mut t.initial_strength, v);
        let v = t.raise_cost_ratio.min(10_000);
        changed += set(&mut t.raise_cost_ratio, v);
        let v = t.probe_drift_ratio.min(10_000);
        changed += set(&mut t.probe_drift_ratio, v);
        let v = t.lower_after_idle_windows.max(1);
        changed += set(&mut t.lower_after_idle_windows, v);
        let v = t.min_window_pages.max(1);
        changed += set(&mut t.min_window_pages, v);
        let w = &mut t.weights;
        let v = w.sampled_word_ps.max(1);
        changed += set(&mut w.sampled_word_ps, v);
        let v = w.full_hash_ps.max(1);
        changed += set(&mut w.full_hash_ps, v);
        let v = w.compare_ps.max(1);
        changed += set(&mut w.compare_ps, v);
        (t, changed)
    }
}

/// Store `value` in `field`; 1 if that changed it, else 0.
pub(crate) fn set<T: PartialEq>(field: &mut T, value: T) -> u32 {
    if *field == value {
        0
    } else {
        *field = value;
        1
    }
}

/// Where the adapter's state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterState {
    /// Evaluating the current strength.
    Steady,
    /// Trying half of `base` for one window.
    ProbingDown {
        /// The strength before the probe.
        base: u32,
        /// Net benefit per page (ps) measured at `base`.
        base_net: i64,
    },
    /// Trying twice `base` for one window.
    ProbingUp {
        /// The strength before the probe.
        base: u32,
        /// Net benefit per page (ps) measured at `base`.
        base_net: i64,
        /// Net benefit per page (ps) measured at the lower probe.
        down_net: i64,
    },
}

/// Counters of every decision the adapter made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdapterStats {
    /// Windows evaluated.
    pub windows: u64,
    /// Windows skipped for having too few sampled pages.
    pub short_windows: u64,
    /// Raises for cost ≥ the raise ratio of benefit.
    pub raises: u64,
    /// Lowerings after windows without cost.
    pub lowers: u64,
    /// Probes started for drift.
    pub probes: u64,
    /// Probes started because `probe_every_windows` steady windows passed.
    pub periodic_probes: u64,
    /// Probes that kept the lower strength / the base / the higher strength.
    pub probes_kept_lower: u64,
    /// See `probes_kept_lower`.
    pub probes_kept_base: u64,
    /// See `probes_kept_lower`.
    pub probes_kept_higher: u64,
    /// Every change of strength (raises, lowers, probe steps and probe outcomes).
    pub strength_changes: u64,
    /// Totals over all evaluated windows.
    pub work: HashWork,
    /// Benefit and cost over all evaluated windows, in nanoseconds.
    pub benefit_ns: i64,
    /// See `benefit_ns`.
    pub cost_ns: i64,
}

/// A change of strength decided at the end of a window. The host re-keys what it
/// stored by sampled hash ([`crate::SampledHasher::rehash`] does it from the old key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrengthChange {
    /// The strength before.
    pub from: u32,
    /// The strength from now on.
    pub to: u32,
}

/// The adaptive hash strength; see the module documentation.
///
/// # Invariants
///
/// - `tunables` are clamped ([`AdapterTunables::clamped`]): `1 ≤ min_strength ≤
///   initial_strength ≤ max_strength ≤ MAX_STRENGTH`.
/// - `strength` is within `min_strength..=max_strength`, and so is the `base` of a
///   probe under way: every move is clamped to the range, or goes back to a probe's
///   base, which was the strength under the same tunables (new tunables end a probe).
///
/// ```
/// use foldswap_ladder::{AdapterTunables, HashWork, StrengthAdapter};
/// let mut adapter = StrengthAdapter::new(AdapterTunables::default());
/// assert_eq!(adapter.strength(), 64);
/// // 70 % of the sampled pages collided and needed a full hash: too weak, raise.
/// adapter.account(HashWork { sampled: 1000, collision_full_hashes: 700, collisions: 700, ..Default::default() });
/// let change = adapter.end_window().unwrap();
/// assert_eq!((change.from, change.to), (64, 128));
/// ```
#[derive(Debug, Clone)]
pub struct StrengthAdapter {
    tunables: AdapterTunables,
    strength: u32,
    state: AdapterState,
    window: HashWork,
    idle_windows: u32,
    steady_windows: u32,
    last_net: Option<i64>,
    stats: AdapterStats,
}

impl StrengthAdapter {
    /// An adapter at `tunables.initial_strength` (tunables are clamped first).
    pub fn new(tunables: AdapterTunables) -> Self {
        let (tunables, _) = tunables.clamped();
        // INVARIANT: clamped tunables; their initial strength is within their range.
        StrengthAdapter {
            strength: tunables.initial_strength,
            tunables,
            state: AdapterState::Steady,
            window: HashWork::default(),
            idle_windows: 0,
            steady_windows: 0,
            last_net: None,
            stats: AdapterStats::default(),
        }
    }

    /// The strength to hash at now.
    pub fn strength(&self) -> u32 {
        self.strength
    }

    /// The state machine's state.
    pub fn state(&self) -> AdapterState {
        self.state
    }

    /// Decision counters.
    pub fn stats(&self) -> &AdapterStats {
        &self.stats
    }

    /// The tunables in force.
    pub fn tunables(&self) -> &AdapterTunables {
        &self.tunables
    }

    /// Replace the tunables (clamped). Call at a window boundary; the strength is
    /// moved into the new `min..=max` range if needed (reported as a change) and a
    /// running probe is abandoned.
    pub fn set_tunables(&mut self, tunables: AdapterTunables) -> Option<StrengthChange> {
        let (tunables, _) = tunables.clamped();
        // INVARIANT: clamped tunables, no probe, and the strength clamped into the new
        // range just below.
        self.tunables = tunables;
        self.state = AdapterState::Steady;
        let target = self
            .strength
            .clamp(tunables.min_strength, tunables.max_strength);
        self.change_to(target)
    }

    /// Add hashing work done at the current strength.
    pub fn account(&mut self, work: HashWork) {
        self.window.add(&work);
    }

    /// Benefit of sampling per page at `strength`, in ps (negative when reading the
    /// sample costs more than a full hash would).
    pub fn benefit_per_page_ps(&self, strength: u32) -> i64 {
        let w = &self.tunables.weights;
        let sampled = (strength.min(FULL_STRENGTH) as u64).saturating_mul(w.sampled_word_ps);
        sat_i64(w.full_hash_ps) - sat_i64(sampled)
    }

    /// Evaluate the window and maybe change strength. Returns the change, if any.
    pub fn end_window(&mut self) -> Option<StrengthChange> {
        let work = self.window;
        if work.sampled < self.tunables.min_window_pages {
            self.stats.short_windows += 1;
            return None;
        }
        self.window = HashWork::default();
        let benefit = sat_i64(work.sampled).saturating_mul(self.benefit_per_page_ps(self.strength));
        let w = self.tunables.weights;
        let cost = sat_i64(work.collision_full_hashes)
            .saturating_mul(sat_i64(w.full_hash_ps))
            .saturating_add(sat_i64(work.collision_compares).saturating_mul(sat_i64(w.compare_ps)));
        let net_per_page = benefit.saturating_sub(cost) / sat_i64(work.sampled).max(1);
        self.stats.windows += 1;
        self.stats.work.add(&work);
        self.stats.benefit_ns = self.stats.benefit_ns.saturating_add(benefit / 1000);
        self.stats.cost_ns = self.stats.cost_ns.saturating_add(cost / 1000);

        match self.state {
            AdapterState::Steady => self.steady_decision(benefit, cost, net_per_page),
            AdapterState::ProbingDown { base, base_net } => {
                self.state = AdapterState::ProbingUp {
                    base,
                    base_net,
                    down_net: net_per_page,
                };
                let up = self.double(base);
                self.change_to(up)
            }
            AdapterState::ProbingUp {
                base,
                base_net,
                down_net,
            } => {
                self.state = AdapterState::Steady;
                self.last_net = None;
                let up_net = net_per_page;
                let choice = if down_net > base_net && down_net >= up_net {
                    self.stats.probes_kept_lower += 1;
                    self.halve(base)
                } else if up_net > base_net {
                    self.stats.probes_kept_higher += 1;
                    self.double(base)
                } else {
                    self.stats.probes_kept_base += 1;
                    base
                };
                self.change_to(choice)
            }
        }
    }

    fn steady_decision(
        &mut self,
        benefit: i64,
        cost: i64,
        net_per_page: i64,
    ) -> Option<StrengthChange> {
        let raise_ratio = i64::from(self.tunables.raise_cost_ratio);
        let too_costly =
            cost > 0 && cost.saturating_mul(10_000) >= benefit.saturating_mul(raise_ratio);
        let last_net = self.last_net.replace(net_per_page);
        if too_costly && self.strength < self.tunables.max_strength {
            self.idle_windows = 0;
            self.steady_windows = 0;
            self.stats.raises += 1;
            self.last_net = None;
            let up = self.double(self.strength);
            return self.change_to(up);
        }
        if cost == 0 {
            self.idle_windows = self.idle_windows.saturating_add(1);
            if self.idle_windows >= self.tunables.lower_after_idle_windows
                && self.strength > self.tunables.min_strength
            {
                self.idle_windows = 0;
                self.steady_windows = 0;
                self.stats.lowers += 1;
                self.last_net = None;
                let down = self.halve(self.strength);
                return self.change_to(down);
            }
            return None;
        }
        self.idle_windows = 0;
        let drifted = last_net.is_some_and(|last| {
            let moved = net_per_page.saturating_sub(last).saturating_abs();
            moved.saturating_mul(10_000)
                > last
                    .saturating_abs()
                    .saturating_mul(i64::from(self.tunables.probe_drift_ratio))
        });
        self.steady_windows = self.steady_windows.saturating_add(1);
        let every = self.tunables.probe_every_windows;
        let periodic = every > 0 && self.steady_windows >= every;
        let can_probe = self.strength > self.tunables.min_strength
            || self.strength < self.tunables.max_strength;
        if (drifted || periodic) && can_probe {
            if drifted {
                self.stats.probes += 1;
            } else {
                self.stats.periodic_probes += 1;
            }
            self.steady_windows = 0;
            self.state = AdapterState::ProbingDown {
                base: self.strength,
                base_net: net_per_page,
            };
            let down = self.halve(self.strength);
            return self.change_to(down);
        }
        None
    }

    fn double(&self, s: u32) -> u32 {
        s.saturating_mul(2)
            .clamp(self.tunables.min_strength, self.tunables.max_strength)
    }

    fn halve(&self, s: u32) -> u32 {
        (s / 2).clamp(self.tunables.min_strength, self.tunables.max_strength)
    }

    fn change_to(&mut self, to: u32) -> Option<StrengthChange> {
        let from = self.strength;
        if to == from {
            return None;
        }
        self.strength = to;
        self.stats.strength_changes += 1;
        Some(StrengthChange { from, to })
    }
}

fn sat_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Fixed weights (in-cache figures), so the tests do not follow the defaults.
    fn tunables() -> AdapterTunables {
        AdapterTunables {
            weights: CostWeights {
                sampled_word_ps: 1_700,
                full_hash_ps: 300_000,
                compare_ps: 150_000,
            },
            ..AdapterTunables::default()
        }
    }

    fn window(sampled: u64, collisions: u64) -> HashWork {
        HashWork {
            sampled,
            collision_full_hashes: collisions,
            collision_compares: 0,
            collisions,
        }
    }

    #[test]
    fn costly_collisions_raise_up_to_the_maximum() {
        let mut a = StrengthAdapter::new(tunables());
        let mut last = a.strength();
        // 64 → 128 → 256 → 512 → 1024 → 1034.
        for _ in 0..5 {
            a.account(window(1000, 900));
            a.end_window();
            assert!(a.strength() >= last);
            last = a.strength();
        }
        assert_eq!(a.strength(), MAX_STRENGTH);
        assert_eq!(a.stats().raises, 5);
    }

    #[test]
    fn idle_windows_lower_down_to_the_minimum() {
        let mut a = StrengthAdapter::new(tunables());
        for i in 0..3 {
            a.account(window(1000, 0));
            let change = a.end_window();
            assert_eq!(
                change.is_some(),
                i == 2,
                "lowers only on the third idle window"
            );
        }
        assert_eq!(a.strength(), 32);
        for _ in 0..30 {
            a.account(window(1000, 0));
            a.end_window();
        }
        assert_eq!(a.strength(), 4);
        assert_eq!(a.stats().lowers, 4);
    }

    #[test]
    fn short_windows_carry_over() {
        let mut a = StrengthAdapter::new(tunables());
        a.account(window(100, 100));
        assert_eq!(a.end_window(), None);
        assert_eq!(a.stats().short_windows, 1);
        a.account(window(200, 100));
        assert!(a.end_window().is_some(), "300 pages, 200 collisions: raise");
    }

    #[test]
    fn drift_probes_down_then_up_and_keeps_the_best() {
        let mut a = StrengthAdapter::new(tunables());
        // Moderate cost, below the raise ratio.
        a.account(window(1000, 100));
        assert_eq!(a.end_window(), None);
        // Cost triples: net per page drifts by more than 50 % → probe down to 32.
        a.account(window(1000, 400));
        assert_eq!(a.end_window(), Some(StrengthChange { from: 64, to: 32 }));
        // At 32 collisions explode: net is bad.
        a.account(window(1000, 600));
        assert_eq!(a.end_window(), Some(StrengthChange { from: 32, to: 128 }));
        // At 128 there are none: best net, kept.
        a.account(window(1000, 0));
        assert_eq!(
            a.end_window(),
            None,
            "128 kept: no change from the probe's last step"
        );
        assert_eq!(a.strength(), 128);
        assert_eq!(a.stats().probes, 1);
        assert_eq!(a.stats().probes_kept_higher, 1);
        assert_eq!(a.state(), AdapterState::Steady);
    }

    #[test]
    fn absurd_tunables_are_clamped() {
        let t = AdapterTunables {
            initial_strength: 5000,
            min_strength: 0,
            max_strength: 99_999,
            raise_cost_ratio: 70_000,
            lower_after_idle_windows: 0,
            probe_drift_ratio: 20_000,
            probe_every_windows: 0,
            min_window_pages: 0,
            weights: CostWeights {
                sampled_word_ps: 0,
                full_hash_ps: 0,
                compare_ps: 0,
            },
        };
        let (c, changed) = t.clamped();
        assert_eq!(c.max_strength, MAX_STRENGTH);
        assert_eq!(c.min_strength, 1);
        assert_eq!(c.initial_strength, MAX_STRENGTH);
        assert_eq!(c.raise_cost_ratio, 10_000);
        assert_eq!(c.lower_after_idle_windows, 1);
        assert_eq!(c.min_window_pages, 1);
        assert_eq!(c.weights.full_hash_ps, 1);
        assert_eq!(changed, 10);
        let (same, none) = AdapterTunables::default().clamped();
        assert_eq!((same, none), (AdapterTunables::default(), 0));
    }
}
