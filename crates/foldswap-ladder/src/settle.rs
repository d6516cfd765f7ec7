//! Settling the strength adapter on a page corpus (feature `std`): a userspace
//! stand-in for the merge trees' first level, used by tests, benches and the CLI.
//!
//! Each round hashes every page at the adapter's strength and files it under its
//! sampled hash, as UKSM's first level does. A page whose bucket already holds a
//! page with *different* contents is a collision: it costs the new page's full hash,
//! plus the full hash of each resident that had none yet (the second level is built
//! lazily). A page identical to a resident is a duplicate; the work it needs is
//! needed at any strength, so it is not charged to sampling. The counts go to the
//! adapter, which ends its window; repeat until the strength stops moving.

use std::collections::HashMap;
use std::vec::Vec;

use foldswap_mem::PAGE_SIZE;

use crate::{
    AdapterStats, AdapterTunables, HashWork, SampledHasher, StrengthAdapter, zero_page_hash,
};

/// The outcome of [`settle_strength`].
#[derive(Debug, Clone)]
pub struct SettleReport {
    /// The strength the adapter settled on: the one it held longest over the last
    /// `tail` windows (it may still oscillate between neighbours).
    pub strength: u32,
    /// Windows of the last `tail` at that strength (the rest were probes).
    pub held_windows: usize,
    /// Strength and hashing work of every window, in order.
    pub history: Vec<(u32, HashWork)>,
    /// The adapter's counters at the end.
    pub adapter: AdapterStats,
}

/// What one pass of the first level found and spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirstLevel {
    /// Hashing work, as the adapter sees it.
    pub work: HashWork,
    /// Pages identical to an earlier page (all of them found: a sampled hash never
    /// misses a duplicate, it can only over-match).
    pub duplicates: u64,
    /// Pages whose sampled hash is the zero-page hash and whose bytes are all zero.
    pub zero_pages: u64,
}

/// The first level's hashing work for one pass over `pages` at `strength`.
pub fn first_level_work(
    pages: &[&[u8; PAGE_SIZE]],
    hasher: &SampledHasher,
    strength: u32,
) -> FirstLevel {
    let mut buckets: HashMap<u32, Vec<usize>> = HashMap::with_capacity(pages.len());
    let mut has_full_hash = std::vec![false; pages.len()];
    let mut found = FirstLevel::default();
    let zero_hash = zero_page_hash(strength);
    for (index, page) in pages.iter().enumerate() {
        found.work.sampled += 1;
        let hash = hasher.hash_at(page, strength);
        if hash == zero_hash && page.iter().all(|&b| b == 0) {
            found.zero_pages += 1;
        }
        let bucket = buckets.entry(hash).or_default();
        let duplicate = bucket.iter().any(|&other| pages.get(other) == Some(page));
        if duplicate {
            found.duplicates += 1;
            continue;
        }
        if !bucket.is_empty() {
            found.work.collisions += 1;
            found.work.collision_full_hashes += 1;
            for &resident in bucket.iter() {
                if let Some(flag) = has_full_hash.get_mut(resident)
                    && !*flag
                {
                    *flag = true;
                    found.work.collision_full_hashes += 1;
                }
            }
            if let Some(flag) = has_full_hash.get_mut(index) {
                *flag = true;
            }
        }
        bucket.push(index);
    }
    found
}

/// Run the adapter over `pages`, one window per pass, for `windows` passes, and
/// report the strength it held longest in the last `tail` windows.
pub fn settle_strength(
    pages: &[&[u8; PAGE_SIZE]],
    hasher: &SampledHasher,
    tunables: AdapterTunables,
    windows: usize,
    tail: usize,
) -> SettleReport {
    let mut adapter = StrengthAdapter::new(tunables);
    let mut history = Vec::with_capacity(windows);
    for _ in 0..windows {
        let strength = adapter.strength();
        let work = first_level_work(pages, hasher, strength).work;
        adapter.account(work);
        adapter.end_window();
        history.push((strength, work));
    }
    let mut held: Vec<(u32, usize)> = Vec::new();
    for &(s, _) in history.iter().rev().take(tail.max(1)) {
        match held.iter_mut().find(|(strength, _)| *strength == s) {
            Some((_, n)) => *n += 1,
            None => held.push((s, 1)),
        }
    }
    let (strength, held_windows) = held
        .iter()
        .max_by_key(|&&(s, n)| (n, s))
        .copied()
        .unwrap_or((adapter.strength(), 0));
    SettleReport {
        strength,
        held_windows,
        history,
        adapter: *adapter.stats(),
    }
}
