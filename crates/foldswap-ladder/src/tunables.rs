//! The ladder's tunables, UKSM's governor presets, and their validation.
//!
//! Tunables are staged ([`crate::Ladder::stage_tunables`]) and take effect only at
//! the next round boundary ([`crate::Ladder::end_round`]), never in the middle of a
//! batch or a pass. Staging validates them first: an impossible value is a typed
//! error and stages nothing; a merely excessive one is clamped as documented on each
//! field, and the clamp is counted.

use foldswap_mem::Error;

use crate::strength::{AdapterTunables, set};

/// The most rungs a ladder can have.
pub const MAX_RUNGS: usize = 6;
/// The longest cover time accepted; longer ones are clamped to it (one hour).
pub const MAX_COVER_MSECS: i64 = 3_600_000;
/// Ratios (`cpu_ratio`, `max_cpu`, thresholds) are in 1/10000: this is 100 %.
pub const RATIO_ONE: i32 = 10_000;

/// One rung's scan budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungTunables {
    /// Share of one CPU this rung may use, in 1/10000. Negative: a share of
    /// `max_cpu` instead (−2500 = a quarter of `max_cpu`). 0 is an error (a rung that
    /// never scans would never let a round end); beyond ±10000 is clamped to ±10000.
    pub cpu_ratio: i32,
    /// Time to sweep the whole rung once, in milliseconds. ≤ 0 is an error; more than
    /// [`MAX_COVER_MSECS`] is clamped to it.
    pub cover_msecs: i64,
}

/// UKSM's four CPU governors (the presets of the 4-rung ladder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governor {
    /// cpu_ratio 20, 40, −2500, −10000 / cover 1000, 500, 200, 50 ms / max_cpu 95 %.
    Full,
    /// cpu_ratio 20, 30, −2500, −10000 / cover 1000, 500, 400, 100 ms / max_cpu 50 %.
    Medium,
    /// cpu_ratio 10, 20, −5000, −10000 / cover 1500, 1000, 1000, 250 ms / max_cpu 20 %.
    Low,
    /// cpu_ratio 10, 20, 40, 75 / cover 2000, 1000, 1000, 1000 ms / max_cpu 1 %.
    Quiet,
}

/// Everything the host can tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunables {
    /// Rungs in use (1..=[`MAX_RUNGS`] = 6; default 4). Out of range is an error.
    pub rung_count: u8,
    /// Per-rung budgets; entries past `rung_count` are ignored.
    pub rungs: [RungTunables; MAX_RUNGS],
    /// Cap on the whole ladder's CPU share, in 1/10000. ≤ 0 is an error; over 10000
    /// is clamped. When the rungs' shares add up to more, each is scaled down.
    pub max_cpu: i32,
    /// A region whose dedup ratio (changed − broken) / scanned reaches this (changed:
    /// pages its scans merged, patched or recompressed), in
    /// 1/10000, climbs a rung at the round's end; below it, it falls one (UKSM: 10 %).
    /// Over 10000 is clamped.
    pub promote_ratio: u32,
    /// A region whose broken / changed exceeds this, in 1/10000, is thrashing: its
    /// dedup ratio counts as 0, so it falls (UKSM: 50 %). Over 10000 is clamped.
    pub thrash_ratio: u32,
    /// Fewest pages worth a batch (a rung waits until its budget pays for this many).
    /// 0 is clamped to 1.
    pub min_batch_pages: u32,
    /// Most pages in one batch. Below `min_batch_pages` is raised to it.
    pub max_batch_pages: u32,
    /// Shortest sleep the ladder asks for, ns. Above `max_sleep_ns` is clamped to it.
    pub min_sleep_ns: u64,
    /// Longest sleep the ladder asks for, ns (UKSM: 1 s). 0 is an error.
    pub max_sleep_ns: u64,
    /// Per-page scan cost assumed before any is measured, ns (UKSM: 500). 0 → 1.
    pub initial_page_cost_ns: u64,
    /// The strength adapter's tunables (clamped as documented there).
    pub strength: AdapterTunables,
}

impl Default for Tunables {
    /// The `Medium` governor: UKSM's default was `Full` (up to 95 % CPU), which its
    /// users reported as 100 % CPU with many identical guests.
    fn default() -> Self {
        Tunables::governor(Governor::Medium)
    }
}

impl Tunables {
    /// The 4-rung preset of a governor, with default batching and strength tunables.
    ///
    /// ```
    /// use foldswap_ladder::{Governor, Tunables};
    /// let t = Tunables::governor(Governor::Full);
    /// assert_eq!(t.rungs[3].cpu_ratio, -10000);
    /// assert_eq!(t.max_cpu, 9500);
    /// ```
    pub fn governor(governor: Governor) -> Self {
        let (ratios, covers, max_cpu) = match governor {
            Governor::Full => ([20, 40, -2500, -10000], [1000, 500, 200, 50], 9500),
            Governor::Medium => ([20, 30, -2500, -10000], [1000, 500, 400, 100], 5000),
            Governor::Low => ([10, 20, -5000, -10000], [1500, 1000, 1000, 250], 2000),
            Governor::Quiet => ([10, 20, 40, 75], [2000, 1000, 1000, 1000], 100),
        };
        let mut rungs = [RungTunables {
            cpu_ratio: 10,
            cover_msecs: 1000,
        }; MAX_RUNGS];
        for (rung, (cpu_ratio, cover_msecs)) in rungs.iter_mut().zip(ratios.into_iter().zip(covers))
        {
            *rung = RungTunables {
                cpu_ratio,
                cover_msecs,
            };
        }
        Tunables {
            rung_count: 4,
            rungs,
            max_cpu,
            promote_ratio: 1000,
            thrash_ratio: 5000,
            min_batch_pages: 16,
            max_batch_pages: 4096,
            min_sleep_ns: 1_000_000,
            max_sleep_ns: 1_000_000_000,
            initial_page_cost_ns: 500,
            strength: AdapterTunables::default(),
        }
    }

    /// Every rung may use a whole CPU (`cpu_ratio` and `max_cpu` at 100 %): for
    /// offline analysis, benchmarks and tests that must never wait for credit.
    pub fn whole_cpu() -> Self {
        let mut t = Tunables::governor(Governor::Full);
        for rung in t.rungs.iter_mut() {
            rung.cpu_ratio = RATIO_ONE;
        }
        t.max_cpu = RATIO_ONE;
        t
    }

    /// Check and clamp. Returns the tunables to use and how many fields were clamped,
    /// or [`Error::InvalidArgument`] naming the first impossible field.
    ///
    /// ```
    /// use foldswap_ladder::Tunables;
    /// use foldswap_mem::Error;
    /// let mut t = Tunables::default();
    /// t.rungs[0].cover_msecs = -5;
    /// assert_eq!(t.validated(), Err(Error::InvalidArgument("cover_msecs must be > 0")));
    /// let mut t = Tunables::default();
    /// t.rungs[1].cpu_ratio = 25_000; // 250 %: clamped to 100 %
    /// let (ok, clamped) = t.validated().unwrap();
    /// assert_eq!((ok.rungs[1].cpu_ratio, clamped), (10_000, 1));
    /// ```
    pub fn validated(&self) -> Result<(Tunables, u32), Error> {
        let mut t = *self;
        if t.rung_count == 0 || t.rung_count as usize > MAX_RUNGS {
            return Err(Error::InvalidArgument("rung_count must be 1..=6"));
        }
        if t.max_cpu <= 0 {
            return Err(Error::InvalidArgument("max_cpu must be > 0"));
        }
        if t.max_sleep_ns == 0 {
            return Err(Error::InvalidArgument("max_sleep_ns must be > 0"));
        }
        let mut changed = 0;
        for rung in t.rungs.iter_mut().take(t.rung_count as usize) {
            if rung.cover_msecs <= 0 {
                return Err(Error::InvalidArgument("cover_msecs must be > 0"));
            }
            if rung.cpu_ratio == 0 {
                return Err(Error::InvalidArgument("cpu_ratio must not be 0"));
            }
            let v = rung.cover_msecs.min(MAX_COVER_MSECS);
            changed += set(&mut rung.cover_msecs, v);
            let v = rung.cpu_ratio.clamp(-RATIO_ONE, RATIO_ONE);
            changed += set(&mut rung.cpu_ratio, v);
        }
        let v = t.max_cpu.min(RATIO_ONE);
        changed += set(&mut t.max_cpu, v);
        let v = t.promote_ratio.min(RATIO_ONE as u32);
        changed += set(&mut t.promote_ratio, v);
        let v = t.thrash_ratio.min(RATIO_ONE as u32);
        changed += set(&mut t.thrash_ratio, v);
        let v = t.min_batch_pages.max(1);
        changed += set(&mut t.min_batch_pages, v);
        let v = t.max_batch_pages.max(t.min_batch_pages);
        changed += set(&mut t.max_batch_pages, v);
        let v = t.min_sleep_ns.min(t.max_sleep_ns);
        changed += set(&mut t.min_sleep_ns, v);
        let v = t.initial_page_cost_ns.max(1);
        changed += set(&mut t.initial_page_cost_ns, v);
        let (strength, strength_changed) = t.strength.clamped();
        t.strength = strength;
        Ok((t, changed + strength_changed))
    }

    /// The tunables of rung `rung`, if it is in use.
    pub fn rung(&self, rung: usize) -> Option<&RungTunables> {
        self.rungs.get(..self.rung_count as usize)?.get(rung)
    }

    /// Rung `rung`'s CPU share in 1/10000 before the `max_cpu` cap: positive ratios as
    /// they are, negative ones as a share of `max_cpu`. 0 for rungs not in use.
    pub fn rung_share(&self, rung: usize) -> u64 {
        match self.rung(rung) {
            Some(r) if r.cpu_ratio > 0 => r.cpu_ratio as u64,
            Some(r) => {
                (r.cpu_ratio.unsigned_abs() as u64 * self.max_cpu.max(0) as u64) / RATIO_ONE as u64
            }
            None => 0,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_unchanged() {
        for g in [
            Governor::Full,
            Governor::Medium,
            Governor::Low,
            Governor::Quiet,
        ] {
            let t = Tunables::governor(g);
            assert_eq!(t.validated(), Ok((t, 0)), "{g:?}");
        }
    }

    #[test]
    fn impossible_values_are_errors() {
        type Breaker = fn(&mut Tunables);
        let cases: [(Breaker, &str); 6] = [
            (|t| t.rungs[2].cover_msecs = 0, "cover_msecs must be > 0"),
            (
                |t| t.rungs[3].cover_msecs = -1000,
                "cover_msecs must be > 0",
            ),
            (|t| t.rungs[0].cpu_ratio = 0, "cpu_ratio must not be 0"),
            (|t| t.rung_count = 0, "rung_count must be 1..=6"),
            (|t| t.max_cpu = -1, "max_cpu must be > 0"),
            (|t| t.max_sleep_ns = 0, "max_sleep_ns must be > 0"),
        ];
        for (break_it, message) in cases {
            let mut t = Tunables::default();
            break_it(&mut t);
            assert_eq!(t.validated(), Err(Error::InvalidArgument(message)));
        }
        // Rungs past rung_count are not checked.
        let mut t = Tunables::default();
        t.rungs[5].cover_msecs = -1;
        assert!(t.validated().is_ok());
    }

    #[test]
    fn excessive_values_are_clamped_and_counted() {
        let mut t = Tunables::default();
        t.rungs[0].cpu_ratio = 20_000;
        t.rungs[1].cpu_ratio = -30_000;
        t.rungs[2].cover_msecs = i64::MAX;
        t.max_cpu = 15_000;
        t.promote_ratio = 99_999;
        t.thrash_ratio = 99_999;
        t.min_batch_pages = 0;
        t.max_batch_pages = 0;
        t.min_sleep_ns = u64::MAX;
        t.initial_page_cost_ns = 0;
        let (c, n) = t.validated().unwrap();
        assert_eq!(c.rungs[0].cpu_ratio, 10_000);
        assert_eq!(c.rungs[1].cpu_ratio, -10_000);
        assert_eq!(c.rungs[2].cover_msecs, MAX_COVER_MSECS);
        assert_eq!(c.max_cpu, 10_000);
        assert_eq!((c.promote_ratio, c.thrash_ratio), (10_000, 10_000));
        assert_eq!((c.min_batch_pages, c.max_batch_pages), (1, 1));
        assert_eq!(c.min_sleep_ns, c.max_sleep_ns);
        assert_eq!(c.initial_page_cost_ns, 1);
        assert_eq!(n, 10);
    }

    #[test]
    fn shares_follow_sign_convention() {
        let t = Tunables::governor(Governor::Full);
        assert_eq!(t.rung_share(0), 20);
        assert_eq!(t.rung_share(2), 2375);
        assert_eq!(t.rung_share(3), 9500);
        assert_eq!(t.rung_share(4), 0);
    }
}
