//! Behaviour tests of the protocol outside loom: single-thread state transitions with
//! a recording parker, and (feature `std`) real threads with [`StdParker`].

use core::cell::Cell;
use core::time::Duration;

use crate::state::{NOTIFIED, SLEEPING, STOPPED};
use crate::{Error, Notify, Parker, ScannerState, WaitOutcome, Wake};

/// A single-thread parker that counts calls; `park_timeout` returns at once.
#[derive(Default)]
struct RecordingParker {
    prepares: Cell<u32>,
    cancels: Cell<u32>,
    parks: Cell<u32>,
    unparks: Cell<u32>,
}

impl Parker for RecordingParker {
    fn prepare_park(&self) {
        self.prepares.set(self.prepares.get() + 1);
    }
    fn cancel_park(&self) {
        self.cancels.set(self.cancels.get() + 1);
    }
    fn park_timeout(&self, _timeout: Duration) {
        self.parks.set(self.parks.get() + 1);
    }
    fn unpark(&self) {
        self.unparks.set(self.unparks.get() + 1);
    }
}

const TICK: Duration = Duration::from_millis(1);

#[test]
fn state_word_decodes_every_combination() {
    use ScannerState::*;
    let cases = [
        (0, Running),
        (NOTIFIED, RunningNotified),
        (SLEEPING, Sleeping),
        (SLEEPING | NOTIFIED, Waking),
    ];
    for (word, state) in cases {
        assert_eq!(ScannerState::from_word(word), state);
        assert_eq!(ScannerState::from_word(word | STOPPED), Stopped);
    }
}

#[test]
fn notifications_while_running_coalesce_into_one_rerun() {
    let wake = Wake::new(RecordingParker::default(), 0u32);
    let mut scanner = wake.claim_scanner().unwrap();
    assert_eq!(scanner.begin_round(), Ok(0));
    assert_eq!(wake.state(), ScannerState::Running);
    assert_eq!(wake.notify(), Notify::Queued);
    assert_eq!(wake.state(), ScannerState::RunningNotified);
    assert_eq!(wake.notify(), Notify::Coalesced);
    assert_eq!(wake.notify(), Notify::Coalesced);
    assert_eq!(scanner.wait(TICK), WaitOutcome::AlreadyNotified);
    assert_eq!(
        wake.shared.parker.parks.get(),
        0,
        "must not sleep with a notification pending"
    );
    assert_eq!(wake.shared.parker.cancels.get(), 1);
    assert_eq!(wake.shared.parker.unparks.get(), 0, "nobody was asleep");
    scanner.begin_round().unwrap();
    assert_eq!(
        wake.state(),
        ScannerState::Running,
        "the round consumed all three"
    );
    assert_eq!(scanner.wait(TICK), WaitOutcome::TimedOut);
    assert_eq!(wake.shared.parker.parks.get(), 1);
    let stats = wake.stats();
    assert_eq!(
        (stats.rounds, stats.reruns, stats.timeouts, stats.wakeups),
        (2, 1, 1, 0)
    );
}

#[test]
fn notify_on_a_sleeping_scanner_unparks_exactly_once() {
    let wake = Wake::new(RecordingParker::default(), 0u32);
    // Put the word where a parked scanner leaves it.
    wake.shared
        .state
        .store(SLEEPING, foldswap_mem::sync::Ordering::Relaxed);
    assert_eq!(wake.state(), ScannerState::Sleeping);
    assert_eq!(wake.notify(), Notify::WokeScanner);
    assert_eq!(wake.state(), ScannerState::Waking);
    assert_eq!(wake.notify(), Notify::Coalesced);
    assert_eq!(wake.shared.parker.unparks.get(), 1);
    wake.stop();
    assert_eq!(
        wake.shared.parker.unparks.get(),
        2,
        "stop unparks a sleeping scanner too"
    );
    wake.stop();
    assert_eq!(wake.shared.parker.unparks.get(), 2, "stop is idempotent");
}

#[test]
fn stop_ends_rounds_and_waits_and_silences_notify() {
    let wake = Wake::new(RecordingParker::default(), 0u32);
    let mut scanner = wake.claim_scanner().unwrap();
    scanner.begin_round().unwrap();
    wake.stop();
    assert!(wake.is_stopped());
    assert_eq!(wake.state(), ScannerState::Stopped);
    assert_eq!(
        wake.shared.parker.unparks.get(),
        0,
        "a running scanner needs no unpark"
    );
    assert_eq!(scanner.wait(TICK), WaitOutcome::Stopped);
    assert_eq!(wake.shared.parker.parks.get(), 0);
    assert_eq!(scanner.begin_round(), Err(Error::ShutDown));
    assert_eq!(wake.notify(), Notify::Stopped);
    assert_eq!(wake.stats().rounds, 1);
}

#[test]
fn only_one_scanner_at_a_time() {
    let wake = Wake::new(RecordingParker::default(), 0u32);
    let scanner = wake.claim_scanner().unwrap();
    assert!(matches!(
        wake.claim_scanner(),
        Err(Error::InvalidArgument(_))
    ));
    drop(scanner);
    assert!(wake.claim_scanner().is_ok());
}

#[test]
fn staged_tunables_apply_at_the_next_round_only() {
    let wake = Wake::new(RecordingParker::default(), [10u32, 20, 30]);
    let mut scanner = wake.claim_scanner().unwrap();
    assert_eq!(scanner.begin_round(), Ok([10, 20, 30]));
    wake.stage([11, 21, 31]);
    assert_eq!(scanner.tunables(), [10, 20, 30], "not during the round");
    assert_eq!(wake.staged(), [11, 21, 31]);
    wake.stage([12, 22, 32]);
    assert_eq!(
        scanner.begin_round(),
        Ok([12, 22, 32]),
        "the latest staged value"
    );
    assert_eq!(scanner.begin_round(), Ok([12, 22, 32]));
    assert_eq!(wake.stats().tunable_updates, 2);
}

#[test]
fn tunables_staged_before_the_scanner_claims_are_applied() {
    let wake = Wake::new(RecordingParker::default(), u64::MAX - 1);
    wake.stage(u64::MAX);
    let mut scanner = wake.claim_scanner().unwrap();
    assert_eq!(scanner.tunables(), u64::MAX - 1);
    assert_eq!(scanner.begin_round(), Ok(u64::MAX));
}

#[test]
fn a_stage_in_flight_is_skipped_not_waited_for() {
    let wake = Wake::new(RecordingParker::default(), 5u32);
    let mut scanner = wake.claim_scanner().unwrap();
    wake.stage(6);
    // A stager that took the version odd and has not finished.
    let version = &wake.shared.tunables;
    let stable = version.updates() * 2;
    assert_eq!(
        version.try_load(None),
        crate::staged::StagedRead::Fresh(6, stable)
    );
    scanner.begin_round().unwrap();
    assert_eq!(scanner.tunables(), 6);
    wake.shared.tunables.force_version_for_test(stable + 1);
    assert_eq!(
        scanner.begin_round(),
        Ok(6),
        "keeps the old value, does not wait"
    );
    wake.shared.tunables.force_version_for_test(stable);
}

#[cfg(feature = "std")]
mod threads {
    use core::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::thread;
    use std::vec::Vec;

    use super::*;
    use crate::StdParker;

    /// The scanner never times out in these tests: a lost wake-up would leave it
    /// asleep. This bound only turns such a hang into a failure; nothing is timed.
    const FOREVER: Duration = Duration::from_secs(3600);
    const HANG_GUARD: Duration = Duration::from_secs(120);

    fn spin_until(mut condition: impl FnMut() -> bool) {
        while !condition() {
            thread::yield_now();
        }
    }

    #[test]
    fn notify_wakes_a_parked_std_scanner() {
        let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 0);
        thread::scope(|s| {
            let scanner = s.spawn(|| {
                let mut scanner = wake.claim_scanner().unwrap();
                scanner.begin_round().unwrap();
                let outcome = scanner.wait(FOREVER);
                (outcome, scanner.begin_round())
            });
            spin_until(|| wake.state() == ScannerState::Sleeping);
            assert_eq!(wake.notify(), Notify::WokeScanner);
            let (outcome, next) = scanner.join().unwrap();
            // A stale unpark token could end a park early; the notification still
            // decides the outcome.
            assert_eq!(outcome, WaitOutcome::Woken);
            assert!(next.is_ok());
        });
        assert_eq!(wake.stats().wakeups, 1);
    }

    #[test]
    fn stop_wakes_a_parked_std_scanner() {
        let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 0);
        thread::scope(|s| {
            let scanner = s.spawn(|| {
                let mut rounds = 0;
                wake.claim_scanner()
                    .unwrap()
                    .run(|_| FOREVER, |_| rounds += 1);
                rounds
            });
            spin_until(|| wake.state() == ScannerState::Sleeping);
            wake.stop();
            assert_eq!(scanner.join().unwrap(), 1);
        });
    }

    #[test]
    fn run_applies_staged_sleep_time_between_rounds() {
        let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 3_600_000);
        let seen = AtomicU64::new(0);
        thread::scope(|s| {
            s.spawn(|| {
                wake.claim_scanner().unwrap().run(
                    |sleep_ms| Duration::from_millis(u64::from(*sleep_ms)),
                    |sleep_ms| seen.store(u64::from(*sleep_ms), Ordering::Release),
                )
            });
            spin_until(|| wake.state() == ScannerState::Sleeping);
            wake.stage(1);
            assert_eq!(
                seen.load(Ordering::Acquire),
                3_600_000,
                "not applied while asleep"
            );
            wake.notify();
            spin_until(|| seen.load(Ordering::Acquire) == 1);
            wake.stop();
        });
    }

    /// Many threads, millions of notifies. Before each notify a thread bumps
    /// `published`; each round reads it (relaxed: only the protocol's ordering makes
    /// it visible). The scanner sleeps without timeout and finishes only once a round
    /// has seen `published == total`. The protocol promises a round that begins after
    /// the last notify and sees everything written before it, so the scanner must get
    /// there; a lost wake-up leaves it asleep short of the total, and the hang guard
    /// turns that into a failure.
    ///
    /// (The scanner must not wait for the notifiers to *return*: a notifier that has
    /// notified but not yet said so may find the scanner, rightly, asleep with nothing
    /// pending, and nothing would wake it again.)
    #[test]
    fn every_notify_is_covered_by_a_later_round() {
        const NOTIFIERS: u64 = 4;
        const PER_NOTIFIER: u64 = 500_000;
        const TOTAL: u64 = NOTIFIERS * PER_NOTIFIER;
        let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 0);
        let published = AtomicU64::new(0);
        let woke = AtomicU64::new(0);
        let (finished_tx, finished) = mpsc::channel();
        thread::scope(|s| {
            let scanner = s.spawn(|| {
                let mut scanner = wake.claim_scanner().unwrap();
                let (mut rounds, mut covered_before) = (0u64, 0u64);
                loop {
                    if scanner.begin_round().is_err() {
                        break (rounds, None);
                    }
                    rounds += 1;
                    let covered = published.load(Ordering::Relaxed);
                    // A little work per round, so notifications also land while a
                    // round runs (the rerun path), not only while the scanner sleeps.
                    for _ in 0..200 {
                        core::hint::spin_loop();
                    }
                    assert!(covered >= covered_before, "coverage never goes back");
                    covered_before = covered;
                    if covered == TOTAL {
                        break (rounds, Some(covered));
                    }
                    scanner.wait(FOREVER);
                }
            });
            let mut notifiers = Vec::new();
            for _ in 0..NOTIFIERS {
                notifiers.push(s.spawn(|| {
                    let mut woke_here = 0;
                    for _ in 0..PER_NOTIFIER {
                        published.fetch_add(1, Ordering::Relaxed);
                        match wake.notify() {
                            Notify::WokeScanner => woke_here += 1,
                            Notify::Stopped => panic!("nobody stopped the scanner"),
                            Notify::Queued | Notify::Coalesced => {}
                        }
                    }
                    woke.fetch_add(woke_here, Ordering::Relaxed);
                }));
            }
            for n in notifiers {
                n.join().unwrap();
            }
            s.spawn(move || {
                let _ = finished_tx.send(scanner.join());
            });
            match finished.recv_timeout(HANG_GUARD) {
                Ok(result) => {
                    let (rounds, last_covered) = result.unwrap();
                    assert_eq!(last_covered, Some(TOTAL), "the last round saw every notify");
                    let stats = wake.stats();
                    assert_eq!(stats.rounds, rounds);
                    // Each round after the first consumed a notification or followed a
                    // (spurious) early return of park.
                    assert!(rounds <= 1 + stats.wakeups + stats.reruns + stats.timeouts);
                    // A sleep ends as Woken exactly when a notifier found it SLEEPING.
                    assert_eq!(stats.wakeups, woke.load(Ordering::Relaxed));
                    assert!(rounds <= TOTAL + 1 + stats.timeouts);
                }
                Err(_) => {
                    wake.stop(); // lets the scanner (and this scope) finish
                    panic!("lost wake-up: the scanner still sleeps after every notify returned");
                }
            }
        });
    }

    /// Shutdown in the middle of a notify storm: every notifier returns, the scanner
    /// exits, later notifies report `Stopped`.
    #[test]
    fn shutdown_during_a_notify_storm_strands_nobody() {
        let wake: Wake<StdParker, u32> = Wake::new(StdParker::new(), 0);
        thread::scope(|s| {
            let scanner = s.spawn(|| wake.claim_scanner().unwrap().run(|_| FOREVER, |_| {}));
            let notifiers: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let mut stopped = 0u32;
                        while stopped < 1000 {
                            if wake.notify() == Notify::Stopped {
                                stopped += 1;
                            }
                        }
                    })
                })
                .collect();
            spin_until(|| wake.stats().rounds >= 10);
            wake.stop();
            scanner.join().unwrap();
            for n in notifiers {
                n.join().unwrap();
            }
        });
        assert_eq!(wake.notify(), Notify::Stopped);
    }

    /// Stagers hammer the seqlock while the scanner runs rounds: never torn.
    #[test]
    fn concurrent_stagers_never_tear_the_scanners_tunables() {
        let whole =
            |t: [u32; 4]| t[1] == t[0] ^ 0x5555 && t[2] == !t[0] && t[3] == t[0].rotate_left(7);
        let make = |x: u32| [x, x ^ 0x5555, !x, x.rotate_left(7)];
        let wake: Wake<StdParker, [u32; 4]> = Wake::new(StdParker::new(), make(0));
        let stagers_done = AtomicU64::new(0);
        thread::scope(|s| {
            for base in [1u32, 1 << 20] {
                let stagers_done = &stagers_done;
                let wake = &wake;
                s.spawn(move || {
                    for x in base..base + 100_000 {
                        wake.stage(make(x));
                        assert!(whole(wake.staged()));
                    }
                    stagers_done.fetch_add(1, Ordering::Release);
                });
            }
            let mut scanner = wake.claim_scanner().unwrap();
            while stagers_done.load(Ordering::Acquire) < 2 {
                let t = scanner.begin_round().unwrap();
                assert!(whole(t), "torn tunables {t:?}");
            }
            // Both stagers are done: the next round applies the last update.
            let last = scanner.begin_round().unwrap();
            assert!(last == make(100_000) || last == make((1 << 20) + 99_999));
            assert_eq!(last, wake.staged());
            assert_eq!(wake.stats().tunable_updates, 200_000);
        });
    }
}
