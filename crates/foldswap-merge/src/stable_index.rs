//! The stable tree's index: an open-addressing hash table from sampled hash to node.
//!
//! Each bucket is one `u64`: the sampled hash in the high half, the node's slab key
//! plus one in the low half (zero = empty). A lookup reads only buckets until it
//! meets an empty one, so a miss — the common case on the swap store path, where
//! most pages are not duplicates — costs one or two cache lines and touches no node.
//!
//! Linear probing from a home bucket chosen by multiplying the sampled hash by a
//! 64-bit odd constant (the caller's hash may be weak, even constant) and scaling the
//! product's high half to the table's size, so a table may have any size. Removal
//! shifts later members of the cluster back (no tombstones), so the table never
//! degrades.
//!
//! The table follows its keys both ways: rebuilt at 5/8 load when an insert would
//! take it past 7/8, and when a removal leaves it under 5/16 (a swap storm's table
//! is given back as its pages go). So the load stays between 5/16 and 7/8 — in
//! practice 5/8 to 7/8 while pages are stored — and a content costs 9 to 13 bytes
//! of index (at half to 3/4 load it cost 11 to 16: 16.2 bytes a page on the dev
//! corpus, a quarter of all the metadata). A miss at 7/8 load probes about 32
//! buckets (four cache lines) against 8 at 3/4: tens of nanoseconds against a
//! store's microseconds of compression.
//!
//! Tunables:
//! - [`MIN_BUCKETS`]: the smallest table.
//! - [`GROW_AT`] / [`MUST_GROW_AT`]: the table is rebuilt larger when an insert would
//!   take the load past 7/8; if the provider refuses the larger array, inserts
//!   continue in the old one up to 15/16 and only then fail with
//!   [`Error::OutOfMemory`].
//! - [`SHRINK_AT`]: a removal that leaves the load under 5/16 rebuilds the table
//!   smaller (if the provider refuses, the table stays as it is).
//! - [`FIT_UNDER`]: [`StableIndex::fit`], for a caller with time to spare (the
//!   swap backend's scanner at a round's end), rebuilds a table under 1/2 load
//!   at 5/8. After a swap storm the keys often settle between 5/16 and 1/2 of a
//!   table sized for the storm (the kernel guest: 6,214 keys in 18,944 buckets),
//!   which the removals alone would keep.

use foldswap_mem::{Error, PageProvider};

use crate::page_array::PageArray;

/// Buckets in the smallest table: one provider page (six chunks of 84).
pub const MIN_BUCKETS: usize = 504;
/// Load (in 1/16) past which an insert first tries to double the table.
pub const GROW_AT: usize = 14;
/// Load (in 1/16) past which an insert fails if the table could not grow.
pub const MUST_GROW_AT: usize = 15;
/// Load (in 1/16) under which a removal rebuilds the table smaller.
pub const SHRINK_AT: usize = 5;
/// Load (in 1/16) under which [`StableIndex::fit`] rebuilds the table smaller.
pub const FIT_UNDER: usize = 8;
/// Load (in 1/16) a rebuilt table starts at.
const REBUILT_LOAD: usize = 10;

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// The bucket value for (`sampled`, `key`).
fn pack(sampled: u32, key: u32) -> u64 {
    ((sampled as u64) << 32) | (key as u64 + 1)
}

/// The (sampled hash, key) in a non-empty bucket.
fn unpack(bucket: u64) -> (u32, u32) {
    ((bucket >> 32) as u32, (bucket as u32).wrapping_sub(1))
}

/// What a probe visitor says.
enum Probe<R> {
    Continue,
    Stop(R),
}

/// How a probe ended.
enum ProbeEnd<R> {
    /// The visitor stopped it.
    Stopped(R),
    /// The cluster ended at this empty bucket.
    Empty(usize),
    /// Every bucket was visited (cannot happen below the load limit).
    Full,
}

/// Sampled hash → node keys, several keys per hash allowed.
pub struct StableIndex<P: PageProvider> {
    buckets: PageArray<u64, P>,
    len: usize,
}

impl<P: PageProvider + Clone> StableIndex<P> {
    /// An empty index. It holds no page until the first insert, which makes a table
    /// of [`MIN_BUCKETS`].
    pub fn new(provider: P) -> Result<Self, Error> {
        Ok(StableIndex {
            buckets: PageArray::zeroed(provider, 0)?,
            len: 0,
        })
    }

    /// An empty index with as many buckets as `self` (so refilling it with the same
    /// number of keys needs no growth).
    pub fn empty_like(&self) -> Result<Self, Error> {
        Ok(StableIndex {
            buckets: PageArray::zeroed(self.buckets.provider().clone(), self.buckets.len())?,
            len: 0,
        })
    }

    /// Call `visit(sampled, key)` for every stored key, in bucket order, stopping at
    /// the first error.
    pub fn try_for_each(
        &self,
        mut visit: impl FnMut(u32, u32) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut slot = 0;
        while slot < self.buckets.len() {
            let run = self.buckets.run_from(slot);
            if run.is_empty() {
                break;
            }
            for &bucket in run.iter().filter(|&&b| b != 0) {
                let (sampled, key) = unpack(bucket);
                visit(sampled, key)?;
            }
            slot += run.len();
        }
        Ok(())
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No keys stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held from the provider.
    pub fn bytes_held(&self) -> usize {
        self.buckets.bytes_held()
    }

    /// With no key stored, give the table back (the next insert makes a new one).
    /// Returns whether pages were freed.
    pub fn release_if_empty(&mut self) -> bool {
        if self.len != 0 || self.buckets.len() == 0 {
            return false;
        }
        match PageArray::zeroed(self.buckets.provider().clone(), 0) {
            Ok(empty) => {
                self.buckets = empty;
                true
            }
            Err(_) => false,
        }
    }

    /// Make sure one more insert cannot fail: grow now if the load calls for it.
    pub fn reserve_one(&mut self) -> Result<(), Error> {
        let capacity = self.buckets.len();
        if (self.len + 1) * 16 <= capacity * GROW_AT {
            return Ok(());
        }
        match self.rebuild_for(self.len + 1) {
            Ok(()) => Ok(()),
            Err(_) if (self.len + 1) * 16 <= capacity * MUST_GROW_AT => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Add (`sampled`, `key`). Fails cleanly only when the table is nearly full and
    /// could not grow.
    pub fn insert(&mut self, sampled: u32, key: u32) -> Result<(), Error> {
        self.reserve_one()?;
        self.place(pack(sampled, key))?;
        self.len += 1;
        Ok(())
    }

    /// Call `visit(key)` for every key stored under `sampled`, in probe order, until it
    /// returns `Some`. Returns that value.
    pub fn find_map<R>(&self, sampled: u32, mut visit: impl FnMut(u32) -> Option<R>) -> Option<R> {
        let found = self.probe(self.home(sampled), |_, bucket| {
            let (hash, key) = unpack(bucket);
            match (hash == sampled).then(|| visit(key)).flatten() {
                Some(found) => Probe::Stop(found),
                None => Probe::Continue,
            }
        });
        match found {
            ProbeEnd::Stopped(found) => Some(found),
            _ => None,
        }
    }

    /// The first key stored under `sampled`, and whether there are more.
    pub fn first(&self, sampled: u32) -> (Option<u32>, bool) {
        let mut first = None;
        let more = self.probe(self.home(sampled), |_, bucket| {
            let (hash, key) = unpack(bucket);
            if hash != sampled {
                Probe::Continue
            } else if first.is_none() {
                first = Some(key);
                Probe::Continue
            } else {
                Probe::Stop(())
            }
        });
        (first, matches!(more, ProbeEnd::Stopped(())))
    }

    /// How many keys are stored under `sampled` (reads buckets only).
    #[cfg(test)]
    pub fn count(&self, sampled: u32) -> usize {
        let mut count = 0;
        self.find_map(sampled, |_| {
            count += 1;
            None::<()>
        });
        count
    }

    /// Replace `old` by `new` under `sampled`. Returns whether `old` was found.
    pub fn replace(&mut self, sampled: u32, old: u32, new: u32) -> bool {
        match self.slot_of(sampled, old) {
            Some(slot) => {
                self.buckets.set(slot, pack(sampled, new));
                true
            }
            None => false,
        }
    }

    /// Remove `key` stored under `sampled`. Returns whether it was found.
    pub fn remove(&mut self, sampled: u32, key: u32) -> bool {
        let Some(mut hole) = self.slot_of(sampled, key) else {
            return false;
        };
        // Backward-shift: move later cluster members whose home lies at or before the
        // hole into it, so every member stays reachable from its home.
        let mut slot = self.next(hole);
        loop {
            let bucket = self.buckets.get(slot);
            if bucket == 0 {
                break;
            }
            let home = self.home(unpack(bucket).0);
            if self.distance(home, slot) >= self.distance(hole, slot) {
                self.buckets.set(hole, bucket);
                hole = slot;
            }
            slot = self.next(slot);
        }
        self.buckets.set(hole, 0);
        self.len -= 1;
        if self.buckets.len() > MIN_BUCKETS && self.len * 16 < self.buckets.len() * SHRINK_AT {
            // Refused: the larger table keeps working.
            let _ = self.rebuild_for(self.len);
        }
        true
    }

    /// Rebuild the table at 5/8 load if it is under [`FIT_UNDER`] (and larger
    /// than the smallest table). A pass over every bucket: for a caller with
    /// time to spare, never a store. If the provider refuses the new array the
    /// table stays as it is (the error is returned).
    pub fn fit(&mut self) -> Result<(), Error> {
        if self.buckets.len() > MIN_BUCKETS && self.len * 16 < self.buckets.len() * FIT_UNDER {
            self.rebuild_for(self.len)?;
        }
        Ok(())
    }

    fn slot_of(&self, sampled: u32, key: u32) -> Option<usize> {
        let wanted = pack(sampled, key);
        let found = self.probe(self.home(sampled), |slot, bucket| {
            if bucket == wanted {
                Probe::Stop(slot)
            } else {
                Probe::Continue
            }
        });
        match found {
            ProbeEnd::Stopped(slot) => Some(slot),
            _ => None,
        }
    }

    /// Walk the cluster from `start`, reading buckets a chunk-run at a time (one
    /// slab lookup per run), calling `visit(slot, bucket)` on each occupied bucket
    /// until it stops the walk or an empty bucket ends the cluster.
    fn probe<R>(&self, start: usize, mut visit: impl FnMut(usize, u64) -> Probe<R>) -> ProbeEnd<R> {
        let buckets = self.buckets.len();
        if buckets == 0 {
            return ProbeEnd::Full;
        }
        let mut slot = start;
        let mut seen = 0;
        while seen < self.buckets.len() {
            let run = self.buckets.run_from(slot);
            if run.is_empty() {
                break;
            }
            for (offset, &bucket) in run.iter().enumerate() {
                if bucket == 0 {
                    return ProbeEnd::Empty(slot + offset);
                }
                if let Probe::Stop(found) = visit(slot + offset, bucket) {
                    return ProbeEnd::Stopped(found);
                }
            }
            seen += run.len();
            slot = (slot + run.len()) % buckets;
        }
        ProbeEnd::Full
    }

    /// Put `bucket` into the first empty bucket of its cluster.
    fn place(&mut self, bucket: u64) -> Result<(), Error> {
        match self.probe(self.home(unpack(bucket).0), |_, _| Probe::<()>::Continue) {
            ProbeEnd::Empty(slot) => {
                self.buckets.set(slot, bucket);
                Ok(())
            }
            _ => Err(Error::CapacityExceeded),
        }
    }

    /// Rebuild the table for `keys` keys at 5/8 load (at least [`MIN_BUCKETS`],
    /// whole chunks): a new array is filled first and replaces the old one only
    /// when complete, so a failure leaves the old table as it was.
    fn rebuild_for(&mut self, keys: usize) -> Result<(), Error> {
        let size = keys
            .checked_mul(16)
            .ok_or(Error::CapacityExceeded)?
            .div_ceil(REBUILT_LOAD)
            .max(MIN_BUCKETS)
            .next_multiple_of(<u64 as crate::page_array::Element>::PER_CHUNK);
        if size == self.buckets.len() {
            return Ok(());
        }
        let mut rebuilt = StableIndex {
            buckets: PageArray::zeroed(self.buckets.provider().clone(), size)?,
            len: self.len,
        };
        self.try_for_each(|sampled, key| rebuilt.place(pack(sampled, key)))?;
        *self = rebuilt;
        Ok(())
    }

    /// The home bucket of `sampled`: the mixed hash's high half scaled to the size.
    fn home(&self, sampled: u32) -> usize {
        let mixed = (sampled as u64 | 1 << 32).wrapping_mul(MULTIPLIER);
        (((mixed >> 32) * self.buckets.len() as u64) >> 32) as usize
    }

    fn next(&self, slot: usize) -> usize {
        if slot + 1 >= self.buckets.len() {
            0
        } else {
            slot + 1
        }
    }

    /// Probe steps from `from` forward to `to`.
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.buckets.len() - from
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate std;
    use std::collections::HashMap;
    use std::vec::Vec;

    use foldswap_mem::{CountingProvider, StdPageProvider};
    use proptest::prelude::*;

    use super::*;

    fn keys_under<P: PageProvider + Clone>(index: &StableIndex<P>, sampled: u32) -> Vec<u32> {
        let mut keys = Vec::new();
        index.find_map(sampled, |k| {
            keys.push(k);
            None::<()>
        });
        keys.sort_unstable();
        keys
    }

    proptest! {
        #[test]
        fn index_matches_a_multimap(ops in proptest::collection::vec((0u8..3, 0u32..40, 0u32..3000), 1..3000)) {
            let mut index = StableIndex::new(StdPageProvider).unwrap();
            let mut model: HashMap<u32, Vec<u32>> = HashMap::new();
            let mut next_key = 0u32;
            for (op, hash, pick) in ops {
                match op {
                    0 | 1 => {
                        index.insert(hash, next_key).unwrap();
                        model.entry(hash).or_default().push(next_key);
                        next_key += 1;
                    }
                    _ => {
                        let keys = model.entry(hash).or_default();
                        if keys.is_empty() {
                            prop_assert!(!index.remove(hash, pick));
                        } else {
                            let key = keys.swap_remove(pick as usize % keys.len());
                            prop_assert!(index.remove(hash, key));
                        }
                    }
                }
            }
            for (hash, keys) in model.iter_mut() {
                keys.sort_unstable();
                prop_assert_eq!(&keys_under(&index, *hash), &*keys);
                prop_assert_eq!(index.count(*hash), keys.len());
            }
            prop_assert_eq!(index.len(), model.values().map(Vec::len).sum::<usize>());
        }
    }

    #[test]
    fn the_table_follows_its_keys_down_as_well_as_up() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut index = StableIndex::new(&provider).unwrap();
        let n = 40_000u32;
        for key in 0..n {
            index.insert(key.wrapping_mul(2_654_435_761), key).unwrap();
            let (len, buckets) = (index.len(), index.buckets.len());
            assert!(
                len * 16 <= buckets * GROW_AT,
                "{len} keys in {buckets} buckets"
            );
        }
        let grown = provider.pages_in_use();
        for key in 0..n - 100 {
            assert!(index.remove(key.wrapping_mul(2_654_435_761), key));
            let (len, buckets) = (index.len(), index.buckets.len());
            assert!(
                buckets == MIN_BUCKETS || len * 16 >= buckets * SHRINK_AT,
                "{len} keys in {buckets} buckets"
            );
        }
        assert_eq!(index.buckets.len(), MIN_BUCKETS);
        assert!(provider.pages_in_use() * 20 < grown, "{grown} pages kept");
        for key in n - 100..n {
            assert_eq!(keys_under(&index, key.wrapping_mul(2_654_435_761)), [key]);
        }
    }

    #[test]
    fn a_table_under_half_load_fits_to_its_keys() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut index = StableIndex::new(&provider).unwrap();
        let hash = |key: u32| key.wrapping_mul(2_654_435_761);
        for key in 0..20_000u32 {
            index.insert(hash(key), key).unwrap();
        }
        // Down to about 0.4 load: removals alone keep the table.
        let buckets = index.buckets.len();
        let mut key = 0;
        while index.len() * 10 > buckets * 4 {
            assert!(index.remove(hash(key), key));
            key += 1;
        }
        assert_eq!(index.buckets.len(), buckets, "removals kept the table");
        let before = provider.pages_in_use();
        index.fit().unwrap();
        let len = index.len();
        assert!(
            len * 16 >= index.buckets.len() * 9,
            "{len} keys in {}",
            index.buckets.len()
        );
        assert!(
            provider.pages_in_use() * 3 < before * 2,
            "{before} pages kept"
        );
        for k in key..20_000 {
            assert_eq!(keys_under(&index, hash(k)), [k]);
        }
        // A fitted table is left alone; so is one at or over half load.
        let fitted = index.buckets.len();
        index.fit().unwrap();
        assert_eq!(index.buckets.len(), fitted);
    }

    #[test]
    fn a_constant_hash_still_works() {
        let mut index = StableIndex::new(StdPageProvider).unwrap();
        for key in 0..2000 {
            index.insert(7, key).unwrap();
        }
        for key in (0..2000).step_by(2) {
            assert!(index.remove(7, key));
        }
        assert_eq!(
            keys_under(&index, 7),
            (1..2000).step_by(2).collect::<Vec<_>>()
        );
        assert!(index.replace(7, 1, 5000));
        assert_eq!(index.count(7), 1000);
        assert_eq!(index.count(8), 0);
    }

    #[test]
    fn failed_growth_keeps_the_old_table() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut index = StableIndex::new(&provider).unwrap();
        assert_eq!(provider.pages_in_use(), 0, "an empty index holds no page");
        assert_eq!(index.first(5), (None, false));
        assert!(!index.remove(5, 5));
        index.insert(0, 0).unwrap();
        provider.set_limit(provider.pages_in_use());
        let mut inserted = 1;
        while index.insert(inserted, inserted).is_ok() {
            inserted += 1;
        }
        assert_eq!(inserted as usize, MIN_BUCKETS * MUST_GROW_AT / 16);
        for key in 0..inserted {
            assert_eq!(keys_under(&index, key), [key]);
        }
    }
}
