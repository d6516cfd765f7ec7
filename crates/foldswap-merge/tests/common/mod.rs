//! A simulated KSM host for the integration tests: tracked pages in a `VecHost`, a
//! `Resident` face, full scan passes, and a checker of every invariant the trees
//! promise.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use foldswap_mem::{PAGE_SIZE, PageProvider};
use foldswap_merge::testing::{HashMode, VecHost};
use foldswap_merge::{ItemRef, MergeStats, Resident, StableRef};

/// A page whose bytes are all `fill` except the last byte, `last` (so contents that
/// differ only at the end defeat an early-exit compare and a weak sample).
pub fn pattern(fill: u8, last: u8) -> [u8; PAGE_SIZE] {
    let mut page = [fill; PAGE_SIZE];
    page[PAGE_SIZE - 1] = last;
    page
}

pub struct Sim<P: PageProvider + Clone> {
    pub host: VecHost,
    pub resident: Resident<usize, P>,
    /// (item, its page in the host); untracked items are removed.
    pub pages: Vec<(ItemRef, usize)>,
    /// Host pages made by `add` (they stay in the host after untracking).
    added: usize,
    /// Host pages written silently and not scanned since: they may differ from the
    /// shared page they are still counted in.
    dirty: HashSet<usize>,
}

impl<P: PageProvider + Clone> Sim<P> {
    pub fn new(provider: P, mode: HashMode, max_page_sharing: u32) -> Self {
        let mut resident = Resident::new(provider).unwrap();
        resident
            .stable_mut()
            .set_max_page_sharing(max_page_sharing)
            .unwrap();
        Sim {
            host: VecHost::with_mode(mode),
            resident,
            pages: Vec::new(),
            added: 0,
            dirty: HashSet::new(),
        }
    }

    /// Track a new page with these bytes.
    pub fn add(&mut self, bytes: &[u8]) -> Result<usize, foldswap_mem::Error> {
        let page = self.host.add_page(bytes);
        self.added += 1;
        let item = self.resident.track(page)?;
        self.pages.push((item, page));
        Ok(self.pages.len() - 1)
    }

    /// Scan every tracked page once, then end the pass.
    pub fn pass(&mut self) -> Result<(), foldswap_mem::Error> {
        for i in 0..self.pages.len() {
            self.scan(i)?;
        }
        self.resident.end_pass()
    }

    /// Three quiet passes (enough for KSM to settle), then the invariants checked.
    pub fn settle(&mut self) -> MergeStats {
        for _ in 0..3 {
            self.pass().unwrap();
        }
        self.check();
        self.stats()
    }

    pub fn scan(&mut self, i: usize) -> Result<foldswap_merge::ScanOutcome, foldswap_mem::Error> {
        let (item, page) = self.pages[i];
        self.dirty.remove(&page);
        let sampled = self.host.sampled_hash(page);
        self.resident.scan(&mut self.host, item, sampled)
    }

    /// Write one byte of tracked page `i`; like copy-on-write, this first breaks a
    /// merge (the kernel host would learn of it in the fault).
    pub fn write(&mut self, i: usize, offset: usize, value: u8) {
        let (item, page) = self.pages[i];
        self.resident.unmerge(&mut self.host, item).unwrap();
        self.host.write_byte(page, offset, value);
    }

    /// Write without telling the trees (a userspace host that only counts): the next
    /// scan must notice the page no longer matches its shared copy.
    pub fn write_silently(&mut self, i: usize, offset: usize, value: u8) {
        let page = self.pages[i].1;
        self.dirty.insert(page);
        self.host.write_byte(page, offset, value);
    }

    pub fn untrack(&mut self, i: usize) {
        let (item, _) = self.pages.swap_remove(i);
        self.resident.untrack(&mut self.host, item).unwrap();
    }

    pub fn stats(&self) -> MergeStats {
        self.resident.stats()
    }

    /// Check what the trees promise, whatever happened before:
    /// - a merged page holds exactly its node's bytes (merges are byte-verified and a
    ///   write breaks a merge before it lands);
    /// - each node's sharer count is the number of pages merged into it, never above
    ///   `max_page_sharing`; `pages_shared` / `pages_sharing` / `pages_unshared` /
    ///   `pages_volatile` add up;
    /// - the host holds exactly one shared copy per node.
    pub fn check(&self) {
        self.resident.verify().expect("internal structure");
        let mut members: HashMap<StableRef, usize> = HashMap::new();
        for &(item, page) in &self.pages {
            if let Some(node) = self.resident.merged_node(item) {
                let (kept, _) = self.resident.stable().node(node).expect("node exists");
                assert!(
                    self.dirty.contains(&page) || self.host.page(page) == self.host.page(kept),
                    "a merged page differs from its shared page"
                );
                *members.entry(node).or_default() += 1;
            }
        }
        let limit = self.resident.stable().max_page_sharing();
        let mut nodes = 0;
        self.resident.stable().for_each_node(|node, kept, sharers| {
            nodes += 1;
            assert!(sharers <= limit, "node over max_page_sharing");
            assert_eq!(members.get(&node).copied().unwrap_or(0), sharers as usize);
            assert!(self.host.page(kept).is_some(), "shared page released early");
        });
        let stats = self.stats();
        let merged: usize = members.values().sum();
        assert_eq!(stats.pages_shared, nodes);
        assert_eq!(stats.pages_sharing, merged as u64 - nodes);
        assert_eq!(
            stats.pages_volatile + stats.pages_unshared + merged as u64,
            self.pages.len() as u64
        );
        assert_eq!(self.resident.tracked(), self.pages.len());
        assert_eq!(
            self.host.live_pages() - self.added,
            nodes as usize,
            "one shared copy per node"
        );
    }

    /// After enough quiet passes: within each content, at most one page is left
    /// unmerged, and only if that content's nodes are all full (KSM's remainder).
    pub fn check_converged(&self) {
        let limit = self.resident.stable().max_page_sharing();
        let mut unmerged: HashMap<[u8; PAGE_SIZE], usize> = HashMap::new();
        for &(item, page) in &self.pages {
            if self.resident.merged_node(item).is_none() {
                *unmerged.entry(*self.host.page(page).unwrap()).or_default() += 1;
            }
        }
        let mut room: HashMap<[u8; PAGE_SIZE], bool> = HashMap::new();
        self.resident.stable().for_each_node(|_, kept, sharers| {
            *room.entry(*self.host.page(kept).unwrap()).or_default() |= sharers < limit;
        });
        for (bytes, count) in unmerged {
            assert!(count <= 1, "{count} identical pages left unmerged");
            assert!(
                !room.get(&bytes).copied().unwrap_or(false),
                "an unmerged page has a node with room"
            );
        }
    }
}
