//! Shared helpers for foldswap's criterion benchmarks.
//!
//! Every benchmark measures a foldswap path and its raw building block in the same
//! run; [`report_ratio`] reads criterion's saved estimates and prints
//! `ratio NAME: ours / baseline = X.XX` so the figure can be quoted.

use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use criterion::Bencher;
use criterion::measurement::WallTime;
use foldswap_mem::{Error, Page, PageProvider, StdPageProvider};

/// Criterion's output directory (`target/criterion`, or `$CRITERION_HOME`).
fn criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// Mean time in ns of benchmark `group/id` from the last run, if saved.
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Print and return `ours / baseline` (mean times) for two benchmarks of `group`.
pub fn report_ratio(group: &str, ours: &str, baseline: &str) -> Option<f64> {
    let (a, b) = (mean_ns(group, ours)?, mean_ns(group, baseline)?);
    let ratio = a / b;
    println!("ratio {group}: {ours} / {baseline} = {ratio:.3} ({a:.0} ns vs {b:.0} ns)");
    Some(ratio)
}

/// CPU time this thread has run (`CLOCK_THREAD_CPUTIME_ID`). On this shared 2-core
/// box wall-clock ratios swing with other work; a thread's CPU time does not.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec the call writes; the clock id is a constant.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
    assert!(!failed, "CLOCK_THREAD_CPUTIME_ID unavailable");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Time `routine` in thread CPU time: run it `iters` times per criterion sample.
pub fn on_cpu(bench: &mut Bencher<'_, WallTime>, mut routine: impl FnMut()) {
    bench.iter_custom(|iters| {
        let start = thread_cpu_time();
        for _ in 0..iters {
            routine();
        }
        thread_cpu_time() - start
    })
}

/// A host page allocator that hands out pages already touched, as the kernel's
/// `alloc_page` does: a page from the std allocator would page-fault on first
/// write, a cost of userspace, not of the code measured. Pages given back are reused.
pub struct WarmPages {
    free: Mutex<Vec<NonNull<Page>>>,
}

// SAFETY: the pages are owned by the free list or by exactly one pool.
unsafe impl Send for WarmPages {}
// SAFETY: the free list is behind a mutex.
unsafe impl Sync for WarmPages {}

impl WarmPages {
    /// `pages` pages, allocated and touched now.
    pub fn new(pages: usize) -> Self {
        let free = (0..pages)
            .map(|_| {
                let page = StdPageProvider.alloc_page().expect("page");
                // SAFETY: a fresh page, ours alone; touching it maps it.
                unsafe { (*page.as_ptr()).as_bytes_mut().fill(0) };
                page
            })
            .collect();
        WarmPages {
            free: Mutex::new(free),
        }
    }
}

// SAFETY: every page comes from StdPageProvider, unaliased and valid until it is
// given back; the free list holds only pages nobody else uses.
unsafe impl PageProvider for &WarmPages {
    fn alloc_page(&self) -> Result<NonNull<Page>, Error> {
        match self.free.lock().expect("lock").pop() {
            Some(page) => Ok(page),
            None => StdPageProvider.alloc_page(),
        }
    }

    unsafe fn free_page(&self, page: NonNull<Page>) {
        self.free.lock().expect("lock").push(page);
    }
}

/// Ratio `ours / baseline` measured in alternation: `rounds` rounds, each running
/// one batch of each side (which side goes first alternates), every batch timing
/// itself (thread CPU time, returned by the closure). Criterion measures one side
/// for seconds and then the other, so drift on a shared machine (another tenant,
/// clock changes) lands on one side only; here it lands on both. Prints and
/// returns the median per-round ratio with the quartiles.
pub fn paired_ratio(
    name: &str,
    rounds: usize,
    mut ours: impl FnMut() -> Duration,
    mut baseline: impl FnMut() -> Duration,
) -> f64 {
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|round| {
            let (a, b) = if round % 2 == 0 {
                let a = ours();
                (a, baseline())
            } else {
                let b = baseline();
                (ours(), b)
            };
            a.as_secs_f64() / b.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    println!(
        "paired {name}: median {:.3} (quartiles {:.3}..{:.3}, {rounds} rounds)",
        at(2),
        at(1),
        at(3)
    );
    at(2)
}

/// Store `pages` into swap area 0 of `backend` at offsets `0..pages.len()`.
pub fn store_at_offsets<K: foldswap::Parker>(
    backend: &foldswap::Backend<&WarmPages, K>,
    pages: &[[u8; foldswap_mem::PAGE_SIZE]],
) {
    let mut scratch = foldswap::Scratch::boxed();
    for (i, page) in pages.iter().enumerate() {
        backend
            .store(0, i as u64, page, foldswap::Domain(0), &mut scratch)
            .expect("store");
    }
}
