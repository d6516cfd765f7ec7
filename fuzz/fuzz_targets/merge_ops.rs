//! Operation sequences on both faces of the merge trees, with memory that may run
//! out: nothing may panic, every error must be a clean `OutOfMemory`, and after every
//! operation a merged page holds its node's exact bytes and the counts add up.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_merge::testing::{HashMode, VecHost};
use foldswap_merge::{ItemRef, MergeHost, Resident, StableRef, StableTree, Unshared};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    collide: bool,
    max_page_sharing: u8,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Track(u8),
    Scan(u8),
    Write(u8, u16, u8),
    Untrack(u8),
    EndPass,
    Refuse(u8),
    Store(u8),
    Drop(u8),
    MemoryLimit(u8),
    Rekey(u8),
}

fn content(class: u8) -> [u8; PAGE_SIZE] {
    let mut page = [0x11; PAGE_SIZE];
    page[PAGE_SIZE - 1] = class % 8;
    page
}

fn clean<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            assert_eq!(e, Error::OutOfMemory, "unexpected error");
            None
        }
    }
}

fuzz_target!(|input: Input| {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mode = if input.collide {
        HashMode::AllCollide
    } else {
        HashMode::Real
    };
    let mut host = VecHost::with_mode(mode);
    let limit = 2 + u32::from(input.max_page_sharing % 8);
    let Some(mut resident) = clean(Resident::<usize, _>::new(&provider)) else {
        return;
    };
    let Some(mut swap) = clean(StableTree::<usize, _>::new(&provider)) else {
        return;
    };
    resident.stable_mut().set_max_page_sharing(limit).unwrap();
    swap.set_max_page_sharing(limit).unwrap();
    let mut tracked: Vec<(ItemRef, usize)> = Vec::new();
    let mut stored: Vec<(StableRef, u8)> = Vec::new();
    // The swap face's keys are the host's sampled hash rotated left by this much.
    let mut rotation = 0u32;
    let ops = &input.ops[..input.ops.len().min(500)];
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Track(class) => {
                let page = host.add_page(&content(class));
                if let Some(item) = clean(resident.track(page)) {
                    tracked.push((item, page));
                }
            }
            Op::Scan(i) if !tracked.is_empty() => {
                let (item, page) = tracked[i as usize % tracked.len()];
                let sampled = host.sampled_hash(page);
                clean(resident.scan(&mut host, item, sampled));
            }
            Op::Write(i, offset, value) if !tracked.is_empty() => {
                let (item, page) = tracked[i as usize % tracked.len()];
                resident.unmerge(&mut host, item).unwrap();
                host.write_byte(page, offset as usize % PAGE_SIZE, value % 4);
            }
            Op::Untrack(i) if !tracked.is_empty() => {
                let (item, _) = tracked.swap_remove(i as usize % tracked.len());
                resident.untrack(&mut host, item).unwrap();
            }
            Op::EndPass => {
                clean(resident.end_pass());
            }
            Op::Refuse(n) => host.refuse_next_merges(usize::from(n % 3)),
            Op::Rekey(rotate) => {
                // All or nothing: on failure (memory short) the old keys stay valid.
                if clean(swap.rekey(|_, old| Ok(old.rotate_left(u32::from(rotate))))).is_some() {
                    rotation = rotation.wrapping_add(u32::from(rotate));
                }
            }
            Op::Store(class) => {
                let incoming = host.add_page(&content(class));
                let sampled = host.sampled_hash(incoming).rotate_left(rotation);
                if let Some(done) =
                    clean(swap.store_or_share(&mut host, sampled, incoming, |_| Ok(incoming)))
                {
                    stored.push((done.node(), class % 8));
                }
            }
            Op::Drop(i) if !stored.is_empty() => {
                let (node, _) = stored.swap_remove(i as usize % stored.len());
                if let Unshared::Released(kept) = swap.unshare(node).unwrap() {
                    host.release_kept(kept);
                }
            }
            Op::MemoryLimit(extra) => {
                provider.set_limit(provider.pages_in_use() + usize::from(extra % 4));
            }
            _ => {}
        }
        if step % 16 == 0 || step + 1 == ops.len() {
            resident.verify().expect("resident structure");
            swap.verify().expect("stable tree structure");
        }
        for &(item, page) in &tracked {
            if let Some(node) = resident.merged_node(item) {
                let (kept, sharers) = resident.stable().node(node).unwrap();
                assert!(host.page(page) == host.page(kept), "merged page differs");
                assert!(sharers <= limit);
            }
        }
        for &(node, class) in &stored {
            let (kept, sharers) = swap.node(node).unwrap();
            assert!(
                host.page(kept) == Some(&content(class)),
                "shared wrong bytes"
            );
            assert!(sharers <= limit);
        }
        let stats = resident.stats();
        let merged = tracked
            .iter()
            .filter(|(i, _)| resident.merged_node(*i).is_some())
            .count();
        assert_eq!(stats.pages_shared + stats.pages_sharing, merged as u64);
        assert_eq!(
            stats.pages_volatile + stats.pages_unshared + merged as u64,
            tracked.len() as u64
        );
        let swap_stats = swap.stats();
        assert_eq!(
            swap_stats.pages_shared + swap_stats.pages_sharing,
            stored.len() as u64
        );
    }
});
