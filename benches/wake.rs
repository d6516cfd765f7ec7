//! The cost of `Wake::notify` on the store path, against one plain uncontended atomic
//! swap, in one run:
//!
//! - `atomic_swap`: `AtomicU32::swap` on a private word (the floor for "one atomic
//!   operation");
//! - `notify_coalesced`: the common case — a notification is already pending, the
//!   call is one `fetch_or` and returns `Coalesced`;
//! - `notify_wakes_parked_thread`: the scanner (a std thread) is parked in
//!   `Scanner::wait`; the timed call finds `SLEEPING` and unparks it
//!   (`std::thread::Thread::unpark`, a futex wake). Only the `notify` call is timed;
//!   waiting for the scanner to go back to sleep is not.
//!
//! Run: `cargo bench -p foldswap-benches --bench wake`

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use foldswap_benches::report_ratio;
use foldswap_wake::{Notify, ScannerState, StdParker, WaitOutcome, Wake};

const GROUP: &str = "wake_notify";

fn bench_notify(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let word = AtomicU32::new(0);
    group.bench_function("atomic_swap", |b| {
        b.iter(|| word.swap(black_box(1), Ordering::AcqRel))
    });

    let pending: Wake<StdParker, u32> = Wake::new(StdParker::new(), 0);
    pending.notify();
    group.bench_function("notify_coalesced", |b| {
        b.iter(|| {
            let outcome = black_box(&pending).notify();
            debug_assert_eq!(outcome, Notify::Coalesced);
            outcome
        })
    });

    let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut scanner = wake.claim_scanner().expect("one scanner");
            while scanner.begin_round().is_ok() {
                if scanner.wait(Duration::from_secs(3600)) == WaitOutcome::Stopped {
                    break;
                }
            }
        });
        group.bench_function("notify_wakes_parked_thread", |b| {
            b.iter_custom(|iterations| {
                let mut timed = Duration::ZERO;
                for _ in 0..iterations {
                    while wake.state() != ScannerState::Sleeping {
                        std::thread::yield_now();
                    }
                    let start = Instant::now();
                    let outcome = wake.notify();
                    timed += start.elapsed();
                    assert_eq!(outcome, Notify::WokeScanner);
                }
                timed
            })
        });
        wake.stop();
    });
    group.finish();

    report_ratio(GROUP, "notify_coalesced", "atomic_swap");
    report_ratio(GROUP, "notify_wakes_parked_thread", "atomic_swap");
}

criterion_group!(benches, bench_notify);
criterion_main!(benches);
