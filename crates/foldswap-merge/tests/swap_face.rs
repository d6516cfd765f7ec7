//! The swap face: `store_or_share` / `unshare` against a naive model, all-colliding
//! hashes, memory running out, and the real page corpus.

use std::collections::HashMap;

use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_merge::testing::{HashMode, VecHost};
use foldswap_merge::{MergeHost, StableRef, StableTree, Stored, Unshared};
use proptest::prelude::*;

/// A page of one content class: class `c` differs from `c + 1` only in its last byte.
fn class_page(class: u8) -> [u8; PAGE_SIZE] {
    let mut page = [0x5a; PAGE_SIZE];
    page[PAGE_SIZE - 1] = class;
    page
}

/// A swap device in miniature: offsets hold a node reference each.
struct Swap<P: foldswap_mem::PageProvider + Clone> {
    host: VecHost,
    tree: StableTree<usize, P>,
    /// (node, content class) per stored offset.
    stored: Vec<(StableRef, u8)>,
}

impl<P: foldswap_mem::PageProvider + Clone> Swap<P> {
    fn new(provider: P, mode: HashMode, limit: u32) -> Self {
        let mut tree = StableTree::new(provider).unwrap();
        tree.set_max_page_sharing(limit).unwrap();
        Swap {
            host: VecHost::with_mode(mode),
            tree,
            stored: Vec::new(),
        }
    }

    /// Store one page of `class`; the incoming page is a scratch page in the host,
    /// "stored" by keeping it.
    fn store(&mut self, class: u8) -> Result<Stored<usize>, Error> {
        let incoming = self.host.add_page(&class_page(class));
        let sampled = self.host.sampled_hash(incoming);
        let result = self
            .tree
            .store_or_share(&mut self.host, sampled, incoming, |_| Ok(incoming));
        if let Ok(stored) = result {
            self.stored.push((stored.node(), class));
        }
        result
    }

    fn drop_ref(&mut self, i: usize) -> Unshared<usize> {
        let (node, _) = self.stored.swap_remove(i);
        let result = self.tree.unshare(node).unwrap();
        if let Unshared::Released(kept) = result {
            self.host.release_kept(kept);
        }
        result
    }

    /// Every reference names a node holding its class's bytes; sharer counts equal
    /// references; no node over the limit.
    fn check(&self) {
        self.tree.verify().expect("internal structure");
        let mut refs: HashMap<StableRef, u32> = HashMap::new();
        for &(node, class) in &self.stored {
            let (kept, _) = self.tree.node(node).expect("referenced node exists");
            assert!(
                self.host.page(kept) == Some(&class_page(class)),
                "wrong bytes"
            );
            *refs.entry(node).or_default() += 1;
        }
        let mut nodes = 0;
        self.tree.for_each_node(|node, _, sharers| {
            nodes += 1;
            assert_eq!(refs.get(&node).copied(), Some(sharers));
            assert!(sharers <= self.tree.max_page_sharing());
        });
        let stats = self.tree.stats();
        assert_eq!(stats.pages_shared, nodes);
        assert_eq!(stats.pages_sharing, self.stored.len() as u64 - nodes);
    }

    /// Whether some node of `class` has room for another reference.
    fn class_has_room(&self, class: u8) -> bool {
        let limit = self.tree.max_page_sharing();
        let mut room = false;
        self.tree.for_each_node(|_, kept, sharers| {
            room |= sharers < limit && self.host.page(kept) == Some(&class_page(class));
        });
        room
    }
}

fn run(ops: Vec<(bool, u8, usize)>, mode: HashMode, limit: u32) {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut swap = Swap::new(&provider, mode, limit);
    for (store, class, pick) in ops {
        if store || swap.stored.is_empty() {
            let had_room = swap.class_has_room(class);
            match swap.store(class).unwrap() {
                // Shared only byte-identical pages (checked below); inserted only
                // when no node of this content had room.
                Stored::Shared { .. } => assert!(had_room),
                Stored::Inserted { .. } => assert!(!had_room, "a stored duplicate was missed"),
            }
        } else {
            let len = swap.stored.len();
            swap.drop_ref(pick % len);
        }
        swap.check();
    }
    while !swap.stored.is_empty() {
        swap.drop_ref(0);
    }
    swap.check();
    assert_eq!(swap.tree.stats().pages_shared, 0);
    drop(swap);
    assert_eq!(provider.pages_in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn swap_face_matches_the_model(
        ops in proptest::collection::vec((any::<bool>(), 0u8..6, any::<usize>()), 1..400),
        limit in 2u32..5,
    ) {
        run(ops, HashMode::Real, limit);
    }

    #[test]
    fn swap_face_matches_the_model_when_every_hash_collides(
        ops in proptest::collection::vec((any::<bool>(), 0u8..6, any::<usize>()), 1..300),
        limit in 2u32..5,
    ) {
        run(ops, HashMode::AllCollide, limit);
    }
}

#[test]
fn all_colliding_pages_never_merge_and_cost_comparisons() {
    let mut swap = Swap::new(StdPageProvider, HashMode::AllCollide, 256);
    for class in 0..200u8 {
        assert!(matches!(
            swap.store(class).unwrap(),
            Stored::Inserted { .. }
        ));
    }
    for class in 0..200u8 {
        assert!(matches!(swap.store(class).unwrap(), Stored::Shared { .. }));
    }
    swap.check();
    let stats = swap.tree.stats();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (200, 200));
    // Every store met every earlier node's hash: the full hashes collide too, so each
    // collision costs a byte comparison — slower, never wrong.
    assert!(stats.full_hash_collisions > 10_000, "{stats:?}");
    assert_eq!(stats.collisions, stats.comparisons - 200);
}

#[test]
fn one_store_costs_one_comparison_with_real_hashes() {
    let mut swap = Swap::new(StdPageProvider, HashMode::Real, 256);
    for class in 0..200u8 {
        swap.store(class).unwrap();
    }
    let before = swap.tree.stats().comparisons;
    for class in 0..200u8 {
        swap.store(class).unwrap();
    }
    assert_eq!(swap.tree.stats().comparisons - before, 200);
}

#[test]
fn running_out_of_memory_fails_cleanly() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut swap = Swap::new(&provider, HashMode::Real, 4);
    let mut failures = 0;
    for round in 0..2000u32 {
        // Squeeze memory to what is held now every few stores.
        if round % 7 == 0 {
            provider.set_limit(provider.pages_in_use());
        } else if round % 7 == 3 {
            provider.set_limit(usize::MAX);
        }
        let class = (round % 251) as u8;
        let incoming = swap.host.add_page(&{
            let mut p = class_page(class);
            p[0] = (round / 251) as u8;
            p
        });
        let sampled = swap.host.sampled_hash(incoming);
        let mut stored_called = false;
        match swap
            .tree
            .store_or_share(&mut swap.host, sampled, incoming, |_| {
                stored_called = true;
                Ok(incoming)
            }) {
            Ok(stored) => swap.stored.push((stored.node(), class)),
            Err(e) => {
                assert_eq!(e, Error::OutOfMemory);
                assert!(
                    !stored_called,
                    "the host stored a page the tree then refused"
                );
                failures += 1;
            }
        }
    }
    assert!(failures > 0, "memory never ran out");
    // `check` compares class bytes; here pages differ in byte 0 too, so check counts.
    let stats = swap.tree.stats();
    let mut nodes = 0;
    swap.tree.for_each_node(|_, _, _| nodes += 1);
    assert_eq!(stats.pages_shared, nodes);
    assert_eq!(stats.pages_sharing, swap.stored.len() as u64 - nodes);
}

#[test]
fn dev_corpus_duplicates_match_the_reference() {
    let (corpus, reference) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
    let mut host = VecHost::new();
    let mut tree = StableTree::new(StdPageProvider).unwrap();
    let mut shared = 0u64;
    for page in corpus.pages() {
        let first = u64::from_le_bytes(page[..8].try_into().unwrap());
        let same_filled = page
            .chunks_exact(8)
            .all(|w| u64::from_le_bytes(w.try_into().unwrap()) == first);
        if same_filled {
            continue;
        }
        let id = host.add_page(page);
        let sampled = host.sampled_hash(id);
        if let Stored::Shared { .. } = tree
            .store_or_share(&mut host, sampled, id, |_| Ok(id))
            .unwrap()
        {
            shared += 1;
        }
    }
    let stats = tree.stats();
    assert_eq!(shared, reference.dup_nonfill);
    assert_eq!(stats.pages_shared, reference.unique_nonfill);
    assert_eq!(stats.pages_sharing, reference.dup_nonfill);
    // One comparison per duplicate, plus those spent on pages whose (deliberately
    // weak, 16-word) sampled hash matched one other node; where several matched, the
    // full hash filtered them without a comparison.
    assert!(stats.comparisons < 2 * reference.dup_nonfill, "{stats:?}");
    assert_eq!(stats.full_hash_collisions, 0);
}

#[test]
fn rekeying_keeps_every_page_findable_or_changes_nothing() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut swap = Swap::new(&provider, HashMode::Real, 3);
    for round in 0..4 {
        for class in 0..100u8 {
            swap.store(class).unwrap();
        }
        let _ = round;
    }
    let nodes_before = swap.tree.stats().pages_shared;
    assert!(swap.tree.stats().stable_node_dups > 0, "chains exist");
    // A closure failing half-way, then memory short: nothing changes.
    let mut calls = 0;
    let failed = swap.tree.rekey(|_, old| {
        calls += 1;
        if calls == 50 {
            Err(Error::InvalidArgument("test"))
        } else {
            Ok(!old)
        }
    });
    assert_eq!(failed, Err(Error::InvalidArgument("test")));
    provider.set_limit(provider.pages_in_use());
    assert_eq!(swap.tree.rekey(|_, old| Ok(!old)), Err(Error::OutOfMemory));
    provider.set_limit(usize::MAX);
    let incoming = swap.host.add_page(&class_page(7));
    let old_key = swap.host.sampled_hash(incoming);
    assert!(matches!(
        swap.tree.lookup(&mut swap.host, old_key, incoming),
        Ok(foldswap_merge::StableLookup::Found { .. })
    ));
    // Re-key for real: lookups with the new key find every content, with chains.
    swap.tree.rekey(|_, old| Ok(!old)).unwrap();
    assert_eq!(swap.tree.stats().pages_shared, nodes_before);
    for class in 0..100u8 {
        let incoming = swap.host.add_page(&class_page(class));
        let new_key = !swap.host.sampled_hash(incoming);
        let stored = swap
            .tree
            .store_or_share(&mut swap.host, new_key, incoming, |_| Ok(incoming))
            .unwrap();
        assert!(
            matches!(stored, Stored::Shared { .. }),
            "class {class} lost"
        );
        swap.stored.push((stored.node(), class));
    }
    swap.check();
    // Dropping every reference still empties the tree (chains re-keyed as one).
    while !swap.stored.is_empty() {
        swap.drop_ref(0);
    }
    assert_eq!(swap.tree.stats().pages_shared, 0);
}
