//! foldswap-merge: lookup and insert cost of the hash-keyed stable tree at 10^4 and
//! 10^6 nodes, against a content-ordered baseline (KSM's memcmp order), and the
//! metadata bytes per tracked page.
//!
//! Run: `cargo bench -p foldswap-benches --bench merge`
//!
//! Pages: 10^6 distinct 4 KiB pages do not fit in this machine's RAM budget, so page
//! `id` is *virtual*: the dev corpus page `id % 29391` with its first 8 bytes XORed
//! by a per-variant constant (`variant = id / 29391`). Comparisons really read the
//! 4 KiB corpus page (115 MiB in all, far beyond the last-level cache), so their
//! cost is a real `memcmp` on real data. Ids from `UNIVERSE` up name a second copy of
//! the same contents (hits compare two ids with equal bytes).
//!
//! The baseline is a sorted array searched by binary search with the same
//! content order KSM's rbtrees use (`memcmp`): ⌈log₂ n⌉ comparisons per lookup, the
//! fewest any comparison-ordered tree can spend. Both sides count the comparisons
//! they make; the figures are printed.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use foldswap_benches::report_ratio;
use foldswap_corpus::Corpus;
use foldswap_mem::{Error, PAGE_SIZE, StdPageProvider};
use foldswap_merge::testing::VecHost;
use foldswap_merge::{PageContents, Resident, StableLookup, StableTree, Stored, Unshared};

const SIZES: [usize; 2] = [10_000, 1_000_000];
/// Ids below this are distinct virtual pages; `id + UNIVERSE` is a copy of `id`.
const UNIVERSE: u32 = 1 << 21;

struct Pages {
    corpus: &'static Corpus,
    /// A 64-bit hash of each corpus page (precomputed; the tree's cost is measured,
    /// not the hasher's — the ladder's bench measures hashing).
    page_hash: Vec<u64>,
}

fn pages() -> &'static Pages {
    static PAGES: OnceLock<Pages> = OnceLock::new();
    PAGES.get_or_init(|| {
        let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
        let page_hash = corpus.pages().map(mix_page).collect();
        Pages { corpus, page_hash }
    })
}

fn mix_page(page: &[u8; PAGE_SIZE]) -> u64 {
    page.chunks_exact(8).fold(0x243f_6a88_85a3_08d3, |h, w| {
        (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

impl Pages {
    /// (corpus page, XOR for the first word) of virtual page `id`.
    fn parts(&self, id: u32) -> (&[u8; PAGE_SIZE], u64, usize) {
        let id = id % UNIVERSE;
        let n = self.corpus.len() as u32;
        let index = (id % n) as usize;
        let variant = (id / n) as u64;
        let xor = variant.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (self.corpus.page(index).unwrap(), xor, index)
    }

    fn first_word(&self, id: u32) -> [u8; 8] {
        let (page, xor, _) = self.parts(id);
        (u64::from_le_bytes(page[..8].try_into().unwrap()) ^ xor).to_be_bytes()
    }

    /// `memcmp` order of the virtual pages.
    fn order(&self, a: u32, b: u32) -> Ordering {
        COMPARISONS.fetch_add(1, AtomicOrdering::Relaxed);
        self.first_word(a)
            .cmp(&self.first_word(b))
            .then_with(|| self.parts(a).0[8..].cmp(&self.parts(b).0[8..]))
    }

    fn full_hash(&self, id: u32) -> u64 {
        let (_, xor, index) = self.parts(id);
        self.page_hash[index] ^ xor.rotate_left(17)
    }

    fn sampled_hash(&self, id: u32) -> u32 {
        let full = self.full_hash(id);
        (full >> 32) as u32 ^ full as u32
    }
}

static COMPARISONS: AtomicU64 = AtomicU64::new(0);

/// A virtual page ordered by its bytes (`memcmp`), for the content-ordered tree.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ByContent(u32);

impl Ord for ByContent {
    fn cmp(&self, other: &Self) -> Ordering {
        pages().order(self.0, other.0)
    }
}

impl PartialOrd for ByContent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The swap face's host over virtual pages.
struct BenchHost(&'static Pages);

impl PageContents for BenchHost {
    type Id = u32;

    fn full_hash(&mut self, page: u32) -> Result<u64, Error> {
        Ok(self.0.full_hash(page))
    }

    fn same_contents(&mut self, a: u32, b: u32) -> Result<bool, Error> {
        Ok(self.0.order(a, b) == Ordering::Equal)
    }
}

fn filled_tree(n: usize) -> (StableTree<u32, StdPageProvider>, BenchHost) {
    let pages = pages();
    let mut host = BenchHost(pages);
    let mut tree = StableTree::new(StdPageProvider).unwrap();
    for id in 0..n as u32 {
        let sampled = pages.sampled_hash(id);
        tree.store_or_share(&mut host, sampled, id, |_| Ok(id))
            .unwrap();
    }
    (tree, host)
}

/// Pseudo-random ids spread by a multiplicative generator, so consecutive lookups
/// touch unrelated memory.
fn spread(count: usize, seed: u64, range: std::ops::Range<usize>) -> Vec<u32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (range.start + (state >> 33) as usize % range.len()) as u32
        })
        .collect()
}

/// Time `op` over `ids` in turn.
fn bench_over(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    ids: &[u32],
    mut op: impl FnMut(u32),
) {
    let mut next = 0;
    group.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter(|| {
            op(ids[next % ids.len()]);
            next += 1;
        })
    });
}

/// Per size: the tree filled with `n` pages; lookups that hit (a copy of a stored
/// page) and miss (a page not stored), on both indexes; stores of a new page and of
/// a duplicate.
fn lookup_and_insert(c: &mut Criterion) {
    let pages = pages();
    let mut group = c.benchmark_group("merge");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let (mut tree, mut host) = filled_tree(n);
        let stats = tree.stats();
        println!(
            "merge: {n} pages stored -> {} nodes, {} sharing; {:.1} metadata bytes per node (node {} B + index)",
            stats.pages_shared,
            stats.pages_sharing,
            tree.bytes_held() as f64 / stats.pages_shared as f64,
            StableTree::<u32, StdPageProvider>::node_bytes(),
        );
        let hits: Vec<u32> = spread(2048, 1, 0..n)
            .iter()
            .map(|id| id + UNIVERSE)
            .collect();
        // Misses: pages not stored whose bytes are not stored either (the corpus has
        // a few exact duplicates).
        let misses: Vec<u32> = spread(4096, 2, n..UNIVERSE as usize)
            .into_iter()
            .filter(|&id| {
                matches!(
                    tree.lookup(&mut host, pages.sampled_hash(id), id),
                    Ok(StableLookup::Vacant(_))
                )
            })
            .take(2048)
            .collect();

        let mut sorted: Vec<u32> = (0..n as u32).collect();
        sorted.sort_unstable_by(|&a, &b| pages.order(a, b));
        for (kind, ids) in [("hit", &hits), ("miss", &misses)] {
            let before = tree.stats().comparisons;
            let found = ids
                .iter()
                .filter(|&&id| {
                    matches!(
                        tree.lookup(&mut host, pages.sampled_hash(id), id),
                        Ok(StableLookup::Found { .. })
                    )
                })
                .count();
            let ours = (tree.stats().comparisons - before) as f64 / ids.len() as f64;
            COMPARISONS.store(0, AtomicOrdering::Relaxed);
            let theirs = ids
                .iter()
                .filter(|&&id| {
                    sorted
                        .binary_search_by(|&probe| pages.order(probe, id))
                        .is_ok()
                })
                .count();
            assert_eq!(found, theirs, "both indexes find the same pages");
            println!(
                "merge: lookup {kind} at {n}: hash-keyed {ours:.2} vs content-ordered {:.2} byte comparisons per lookup",
                COMPARISONS.load(AtomicOrdering::Relaxed) as f64 / ids.len() as f64
            );
            bench_over(
                &mut group,
                &format!("lookup_{kind}_hash_keyed"),
                n,
                ids,
                |id| {
                    black_box(tree.lookup(&mut host, pages.sampled_hash(id), id).unwrap());
                },
            );
            bench_over(
                &mut group,
                &format!("lookup_{kind}_content_ordered"),
                n,
                ids,
                |id| {
                    black_box(
                        sorted
                            .binary_search_by(|&probe| pages.order(probe, id))
                            .is_ok(),
                    );
                },
            );
        }
        // A new page: lookup + node insert, then the reference dropped (node removal)
        // so the tree stays at n nodes.
        bench_over(&mut group, "store_new_then_drop", n, &misses, |id| {
            let stored = tree
                .store_or_share(&mut host, pages.sampled_hash(id), id, |_| Ok(id))
                .unwrap();
            assert!(matches!(stored, Stored::Inserted { .. }));
            assert!(matches!(
                tree.unshare(stored.node()),
                Ok(Unshared::Released(_))
            ));
        });
        // The same on a content-ordered balanced tree (std's B-tree in memcmp order:
        // it compares within a node linearly, so it spends more comparisons than an
        // rbtree's ⌈log₂ n⌉–2⌈log₂ n⌉; the count is printed).
        let mut tree_by_content: BTreeSet<ByContent> = (0..n as u32).map(ByContent).collect();
        COMPARISONS.store(0, AtomicOrdering::Relaxed);
        for &id in &misses {
            assert!(tree_by_content.insert(ByContent(id)));
            assert!(tree_by_content.remove(&ByContent(id)));
        }
        println!(
            "merge: store new at {n}: content-ordered B-tree {:.1} byte comparisons per insert + remove",
            COMPARISONS.load(AtomicOrdering::Relaxed) as f64 / misses.len() as f64
        );
        bench_over(
            &mut group,
            "store_new_then_drop_content_ordered",
            n,
            &misses,
            |id| {
                tree_by_content.insert(ByContent(id));
                tree_by_content.remove(&ByContent(id));
            },
        );
        drop(tree_by_content);
        // A duplicate: lookup, one comparison, one more sharer (then dropped).
        bench_over(&mut group, "store_duplicate_then_drop", n, &hits, |id| {
            let stored = tree
                .store_or_share(&mut host, pages.sampled_hash(id), id, |_| Ok(id))
                .unwrap();
            assert!(matches!(stored, Stored::Shared { .. }));
            black_box(tree.unshare(stored.node()).unwrap());
        });
    }
    group.finish();
    for n in SIZES {
        report_ratio(
            "merge",
            &format!("store_new_then_drop/{n}"),
            &format!("store_new_then_drop_content_ordered/{n}"),
        );
        for kind in ["hit", "miss"] {
            report_ratio(
                "merge",
                &format!("lookup_{kind}_hash_keyed/{n}"),
                &format!("lookup_{kind}_content_ordered/{n}"),
            );
        }
    }
}

/// Metadata per tracked page on the resident face: track every corpus page, run
/// three passes, print what the trees hold from the provider.
fn metadata(_c: &mut Criterion) {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
    let mut host = VecHost::new();
    let mut resident = Resident::new(StdPageProvider).unwrap();
    let mut items = Vec::new();
    for page in corpus.pages() {
        let id = host.add_page(page);
        items.push((resident.track(id).unwrap(), id));
    }
    for _ in 0..3 {
        for &(item, id) in &items {
            let sampled = host.sampled_hash(id);
            resident.scan(&mut host, item, sampled).unwrap();
        }
        resident.end_pass().unwrap();
    }
    let stats = resident.stats();
    println!(
        "merge: metadata per tracked page: rmap item {} B (KSM: 64 B); all trees {:.1} B per tracked page \
         ({} pages tracked, {} bytes held: items, unstable heads, {} stable nodes of {} B + index); \
         pages_shared {} pages_sharing {} pages_unshared {} pages_volatile {}",
        Resident::<usize, StdPageProvider>::item_bytes(),
        resident.bytes_held() as f64 / items.len() as f64,
        items.len(),
        resident.bytes_held(),
        stats.pages_shared,
        StableTree::<usize, StdPageProvider>::node_bytes(),
        stats.pages_shared,
        stats.pages_sharing,
        stats.pages_unshared,
        stats.pages_volatile,
    );
}

criterion_group!(benches, metadata, lookup_and_insert);
criterion_main!(benches);
