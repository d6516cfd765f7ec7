//! loom models of the wake protocol (run with `RUSTFLAGS="--cfg loom"`, see
//! `scripts/test`). Each explores every interleaving of its threads up to
//! `LOOM_MAX_PREEMPTIONS` and prints how many executions it checked.
//!
//! The scanner parks with [`LoomParker`] (through [`GatedParker`]), which has no
//! timeout: if a wake-up were lost, the scanner would park forever and loom reports a
//! deadlock.

use core::sync::atomic::{AtomicUsize as IterationCounter, Ordering as CounterOrdering};

use core::time::Duration;
use std::vec::Vec;

use foldswap_mem::sync::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::{LoomParker, Notify, Parker, ScannerState, TunableWords, Tunables, WaitOutcome, Wake};

/// The scanner's timeout in the models; [`LoomParker`] ignores it.
const FOREVER: Duration = Duration::from_secs(3600);

/// Run `model` under loom (preemption bound from `LOOM_MAX_PREEMPTIONS`) and print
/// how many executions it explored.
fn check(name: &str, model: impl Fn() + Sync + Send + 'static) {
    check_with_cap(name, None, model);
}

/// [`check`] with the preemption bound lowered to at most `max_preemptions` (for the
/// largest models, to keep the whole loom run to minutes on two cores).
fn check_bounded(name: &str, max_preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    check_with_cap(name, Some(max_preemptions), model);
}

/// [`check`] with the preemption bound `LOOM_MAX_PREEMPTIONS` (if set) lowered to
/// `cap` (if any); with neither, loom explores without a bound.
fn check_with_cap(name: &str, cap: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    static EXECUTIONS: [IterationCounter; 8] = [const { IterationCounter::new(0) }; 8];
    static NEXT_SLOT: IterationCounter = IterationCounter::new(0);
    let slot = NEXT_SLOT.fetch_add(1, CounterOrdering::Relaxed) % EXECUTIONS.len();
    let counter = &EXECUTIONS[slot];
    let mut builder = loom::model::Builder::new();
    let bound = match (builder.preemption_bound, cap) {
        (Some(env), Some(cap)) => Some(env.min(cap)),
        (env, cap) => env.or(cap),
    };
    builder.preemption_bound = bound;
    builder.check(move || {
        counter.fetch_add(1, CounterOrdering::Relaxed);
        model();
    });
    let executions = counter.load(CounterOrdering::Relaxed);
    match bound {
        Some(bound) => {
            std::println!("loom model {name}: {executions} executions (preemption bound {bound})")
        }
        None => std::println!("loom model {name}: {executions} executions (no preemption bound)"),
    }
}

/// Per-notifier work flags: `work[i]` is written (relaxed) before notifier `i`
/// notifies and read (relaxed) by every round.
struct Ledger {
    work: Vec<AtomicBool>,
}

impl Ledger {
    fn new(notifiers: usize) -> Self {
        Ledger {
            work: (0..notifiers).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn publish_and_notify(&self, i: usize, notify: impl FnOnce()) {
        self.work[i].store(true, Ordering::Relaxed);
        notify();
    }

    /// Read by a round: did this round see every notifier's work?
    fn round_sees_all_work(&self) -> bool {
        self.work.iter().all(|w| w.load(Ordering::Relaxed))
    }
}

/// The models' parker: [`LoomParker`] for the scanner, which first wakes the
/// quiescence checker (see [`run_model`]) so it can look at the state the scanner is
/// about to sleep in.
#[derive(Default)]
struct GatedParker {
    scanner: LoomParker,
    checker: LoomParker,
}

impl Parker for GatedParker {
    fn park_timeout(&self, timeout: Duration) {
        self.checker.unpark();
        self.scanner.park_timeout(timeout);
    }

    fn unpark(&self) {
        self.scanner.unpark();
    }
}

/// The no-lost-wake-up model.
///
/// `notifiers` threads each publish work (a relaxed store) and notify. The scanner
/// (the model's main thread) runs rounds — each reads all the work flags, relaxed, so
/// only the protocol's release/acquire can make them visible — and sleeps without a
/// timeout; loom also tries one spurious return at any of its waits (a timeout).
///
/// A checker thread (notifier 0, after its own notify) joins every other notifier,
/// then waits until it sees the scanner
/// `Sleeping` with nothing pending (it is woken each time the scanner is about to
/// park), then stops the scanner. Proof obligation: all notify `fetch_or`s happen
/// before the checker's load, which read the value written by the scanner's
/// compare-exchange `0 → SLEEPING`; so that compare-exchange follows every notify in
/// the word's modification order and found `NOTIFIED` clear — a `begin_round` after
/// each notify consumed it, and the scanner's last round before that sleep began
/// after every notify and must have seen every notifier's work (asserted when the
/// scanner exits; later rounds begin later still). If a wake-up is lost, the scanner
/// stays parked with a notification pending, the checker never sees a clean
/// `Sleeping` and waits too: loom reports the deadlock.
fn run_model<W: Send + Sync + 'static>(
    notifiers: usize,
    wake: impl FnOnce(GatedParker) -> W,
    parker_of: fn(&W) -> &GatedParker,
    notify: fn(&W),
    sleeping_with_nothing_pending: fn(&W) -> bool,
    stop: fn(&W),
    scanner: impl FnOnce(&W, &Ledger),
) {
    let ledger = Arc::new(Ledger::new(notifiers));
    let wake = Arc::new(wake(GatedParker::default()));
    let mut others = Vec::new();
    for i in 1..notifiers {
        let (wake, ledger) = (wake.clone(), ledger.clone());
        others.push(thread::spawn(move || {
            ledger.publish_and_notify(i, || notify(&wake));
        }));
    }
    // Notifier 0 is also the checker (one thread fewer to explore).
    let checker = {
        let (wake, ledger) = (wake.clone(), ledger.clone());
        thread::spawn(move || {
            ledger.publish_and_notify(0, || notify(&wake));
            for t in others {
                t.join().unwrap();
            }
            while !sleeping_with_nothing_pending(&wake) {
                parker_of(&wake).checker.park_timeout(FOREVER);
            }
            stop(&wake);
        })
    };
    scanner(&wake, &ledger);
    checker.join().unwrap();
}

/// The scanner side of the model with the real protocol: rounds until stopped; the
/// last round must have seen all the work.
fn scan_until_stopped(wake: &Wake<GatedParker, u32>, ledger: &Ledger, self_notify: bool) {
    let mut scanner = wake.claim_scanner().unwrap();
    let mut last_round_saw_all_work = false;
    let mut first_round = true;
    while scanner.begin_round().is_ok() {
        last_round_saw_all_work = ledger.round_sees_all_work();
        if self_notify && first_round {
            assert_ne!(wake.notify(), Notify::WokeScanner);
            assert_ne!(wake.state(), ScannerState::Running);
            assert_eq!(scanner.wait(FOREVER), WaitOutcome::AlreadyNotified);
            first_round = false;
            continue;
        }
        if scanner.wait(FOREVER) == WaitOutcome::Stopped {
            break;
        }
    }
    assert!(
        last_round_saw_all_work,
        "the last round began after every notify"
    );
}

fn no_lost_wakeup(notifiers: usize, self_notify: bool) {
    run_model(
        notifiers,
        |parker| Wake::new(parker, 0u32),
        |wake| &wake.shared.parker,
        |wake| assert_ne!(wake.notify(), Notify::Stopped),
        |wake| wake.state() == ScannerState::Sleeping,
        |wake| wake.stop(),
        |wake, ledger| scan_until_stopped(wake, ledger, self_notify),
    );
}

#[test]
fn loom_two_notifiers_never_lose_a_wakeup() {
    check("two_notifiers_never_lose_a_wakeup", || {
        no_lost_wakeup(2, false)
    });
}

#[test]
fn loom_three_notifiers_never_lose_a_wakeup() {
    // Three notifiers with two preemptions is 1.7 million executions (6 minutes
    // here); one preemption plus every switch at a blocking point covers each
    // notifier landing in each window of the scanner's handshake.
    check_bounded("three_notifiers_never_lose_a_wakeup", 1, || {
        no_lost_wakeup(3, false)
    });
}

/// The scanner notifies itself during a round (re-entrance through swap-out): it must
/// not sleep and must run one more round; concurrent notifiers still get theirs.
#[test]
fn loom_scanner_notifying_itself_runs_again() {
    check("scanner_notifying_itself_runs_again", || {
        no_lost_wakeup(1, true)
    });
}

/// Shutdown racing two notifiers (the second one stops right after notifying): the
/// scanner always exits (no deadlock), notifiers always return, and every notify
/// after the stop reports `Stopped`.
#[test]
fn loom_shutdown_wakes_the_scanner_and_nobody_hangs() {
    check("shutdown_wakes_the_scanner_and_nobody_hangs", || {
        let wake = Arc::new(Wake::new(LoomParker::new(), 0u32));
        let notifier = {
            let wake = wake.clone();
            thread::spawn(move || {
                wake.notify();
            })
        };
        let stopper = {
            let wake = wake.clone();
            thread::spawn(move || {
                wake.notify();
                wake.stop();
                assert_eq!(wake.notify(), Notify::Stopped);
            })
        };
        let mut scanner = wake.claim_scanner().unwrap();
        while scanner.begin_round().is_ok() {
            if scanner.wait(FOREVER) == WaitOutcome::Stopped {
                break;
            }
        }
        stopper.join().unwrap();
        notifier.join().unwrap();
        assert_eq!(wake.state(), ScannerState::Stopped);
        assert_eq!(wake.notify(), Notify::Stopped);
        assert!(scanner.begin_round().is_err());
        assert_eq!(scanner.wait(FOREVER), WaitOutcome::Stopped);
    });
}

/// Three tunables that must always be seen together: `[x, 2x + 1, 3x + 2]`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Linked([u32; 3]);

impl Linked {
    fn of(x: u32) -> Self {
        Linked([x, 2 * x + 1, 3 * x + 2])
    }
    fn assert_whole(self) -> u32 {
        assert_eq!(self, Linked::of(self.0[0]), "torn tunables");
        self.0[0]
    }
}

impl Tunables for Linked {
    const WORDS: usize = 3;
    fn to_words(&self) -> TunableWords {
        self.0.to_words()
    }
    fn from_words(words: &TunableWords) -> Self {
        Linked(<[u32; 3]>::from_words(words))
    }
}

/// Two stagers (one stages twice) race the scanner's round boundaries: every round
/// sees a whole update, one stager's updates are never seen out of order, and once the
/// stagers are done the next round applies the last update.
#[test]
fn loom_staged_tunables_never_torn() {
    check("staged_tunables_never_torn", || {
        let wake = Arc::new(Wake::new(LoomParker::new(), Linked::of(0)));
        let first = {
            let wake = wake.clone();
            thread::spawn(move || {
                wake.stage(Linked::of(1));
                wake.stage(Linked::of(3));
            })
        };
        let second = {
            let wake = wake.clone();
            thread::spawn(move || wake.stage(Linked::of(2)))
        };
        let mut scanner = wake.claim_scanner().unwrap();
        let mut saw_three = false;
        for _ in 0..2 {
            let x = scanner.begin_round().unwrap().assert_whole();
            assert_eq!(scanner.tunables().assert_whole(), x);
            assert!(!(saw_three && x == 1), "went back to an older update");
            saw_three |= x == 3;
        }
        first.join().unwrap();
        second.join().unwrap();
        let last = wake.staged().assert_whole();
        assert!(last == 3 || last == 2);
        assert_eq!(scanner.begin_round().unwrap().assert_whole(), last);
        assert_eq!(wake.stats().tunable_updates, 3);
    });
}

/// The naive protocol: check for pending work, then sleep; the waker wakes only
/// a scanner that says it sleeps. No handshake between the check and the sleep.
///
/// Every access is a read-modify-write (`swap` / `fetch_or`), so each reads the
/// latest value of its flag: loom treats `SeqCst` loads and stores like
/// acquire/release, and plain loads could fail this model for a weak-memory reason.
/// Here the only bug left is the interleaving — a notify between the scanner's check
/// and its sleep is lost.
struct NaiveWake {
    pending: AtomicBool,
    sleeping: AtomicBool,
    stopped: AtomicBool,
    parker: GatedParker,
}

impl NaiveWake {
    fn notify(&self) {
        self.pending.swap(true, Ordering::AcqRel);
        if self.sleeping.fetch_or(false, Ordering::AcqRel) {
            self.parker.unpark();
        }
    }

    fn stop(&self) {
        self.stopped.swap(true, Ordering::AcqRel);
        self.parker.unpark();
    }

    fn sleeping_with_nothing_pending(&self) -> bool {
        self.sleeping.fetch_or(false, Ordering::AcqRel)
            && !self.pending.fetch_or(false, Ordering::AcqRel)
    }

    fn scan_until_stopped(&self, ledger: &Ledger) {
        let mut last_round_saw_all_work = false;
        while !self.stopped.fetch_or(false, Ordering::AcqRel) {
            self.pending.swap(false, Ordering::AcqRel);
            last_round_saw_all_work = ledger.round_sees_all_work();
            // Check, then sleep: a notify between the two is lost.
            if !self.pending.fetch_or(false, Ordering::AcqRel) {
                self.sleeping.swap(true, Ordering::AcqRel);
                self.parker.park_timeout(FOREVER);
                self.sleeping.swap(false, Ordering::AcqRel);
            }
        }
        assert!(
            last_round_saw_all_work,
            "the last round began after every notify"
        );
    }
}

/// The broken twin: a check-then-sleep protocol loses wake-ups, and the model must
/// say so (loom: deadlock) — proof that the models above can fail.
///
/// loom reports the deadlock by panicking with both threads still parked; the
/// unwinding then drops loom objects outside the execution, which panics again and
/// aborts the process, so `should_panic` cannot catch it in-process. The model runs
/// in a child process (this test binary, the ignored
/// [`naive_check_then_sleep_model`] alone) and this test panics with loom's verdict
/// from the child's output.
#[test]
#[should_panic(expected = "loom found a lost wake-up: deadlock; threads")]
fn loom_naive_check_then_sleep_loses_a_wakeup() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "models::naive_check_then_sleep_model",
            "--ignored",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    // loom prints its verdict on stdout (from the model's own thread, outside
    // libtest's capture), the abort's message on stderr: search both.
    let stdout = std::string::String::from_utf8_lossy(&output.stdout);
    let stderr = std::string::String::from_utf8_lossy(&output.stderr);
    let verdict = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|line| line.find("deadlock; threads").map(|at| &line[at..]));
    match (output.status.success(), verdict) {
        (false, Some(verdict)) => panic!("loom found a lost wake-up: {verdict}"),
        (false, None) => std::println!("the model failed another way:\n{stdout}\n{stderr}"),
        (true, _) => std::println!("loom explored the naive protocol and found nothing"),
    }
}

/// The naive protocol under loom; run by [`loom_naive_check_then_sleep_loses_a_wakeup`]
/// in a child process (it aborts the process it runs in).
#[test]
#[ignore = "run in a child process by loom_naive_check_then_sleep_loses_a_wakeup"]
fn naive_check_then_sleep_model() {
    check("naive_check_then_sleep_loses_a_wakeup", || {
        run_model(
            1,
            |parker| NaiveWake {
                pending: AtomicBool::new(false),
                sleeping: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                parker,
            },
            |wake| &wake.parker,
            NaiveWake::notify,
            NaiveWake::sleeping_with_nothing_pending,
            NaiveWake::stop,
            |wake, ledger| wake.scan_until_stopped(ledger),
        )
    });
}
