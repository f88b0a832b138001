//! Helpers shared by the integration tests. Each test binary declares
//! `mod util;` and uses only some of them, hence the `dead_code` allowance.
//!
//! Nothing here schedules callbacks or tasks on behalf of a test: the tests
//! that check a report's location (`call_soon`, `create_task`…) need those
//! calls to stay in their own file.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use aioloop::{
    DefaultEventLoopPolicy, Error, ErrorKind, EventLoop, EventLoopPolicy, ExceptionContext,
    TimerHandle,
};

// ---------------------------------------------------------------------------
// The process-wide policy

/// The process-wide policy is global: the tests of a binary that read or
/// replace it run one at a time.
static LOCK: Mutex<()> = Mutex::new(());

/// Holds [`LOCK`] and restores the default policy when dropped, even when an
/// assertion fails.
pub struct GlobalPolicy {
    _lock: MutexGuard<'static, ()>,
}

/// Takes [`LOCK`] (even if a failed test poisoned it) and starts from a fresh
/// default policy.
pub fn global_policy() -> GlobalPolicy {
    let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    aioloop::set_event_loop_policy(None);
    GlobalPolicy { _lock: lock }
}

impl Drop for GlobalPolicy {
    fn drop(&mut self) {
        aioloop::set_event_loop_policy(None);
    }
}

/// The default policy, counting its calls; otherwise the default policy.
#[derive(Default)]
pub struct CountingPolicy {
    base: DefaultEventLoopPolicy,
    gets: AtomicUsize,
    /// One entry per `set_event_loop` call: `true` for `Some(loop)`.
    sets: Mutex<Vec<bool>>,
    news: AtomicUsize,
}

impl CountingPolicy {
    /// A new counting policy, installed as the process-wide policy.
    pub fn install() -> Arc<CountingPolicy> {
        let policy = Arc::new(CountingPolicy::default());
        aioloop::set_event_loop_policy(Some(policy.clone()));
        policy
    }

    /// How many `get_event_loop` calls.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// One entry per `set_event_loop` call: `true` for `Some(loop)`.
    pub fn sets(&self) -> Vec<bool> {
        self.sets.lock().unwrap().clone()
    }

    /// How many `new_event_loop` calls.
    pub fn news(&self) -> usize {
        self.news.load(Ordering::SeqCst)
    }
}

impl EventLoopPolicy for CountingPolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.base.get_event_loop()
    }
    fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error> {
        self.sets.lock().unwrap().push(event_loop.is_some());
        self.base.set_event_loop(event_loop)
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.news.fetch_add(1, Ordering::SeqCst);
        self.base.new_event_loop()
    }
}

// ---------------------------------------------------------------------------
// Running a loop

/// Runs exactly one iteration of the loop (asyncio's `stop(); run_forever()`).
pub fn run_one_iteration(lp: &EventLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

/// Runs the loop for `n + 1` iterations.
pub fn spin(lp: &EventLoop, n: usize) {
    lp.run_until_complete(async move {
        for _ in 0..n {
            aioloop::yield_now().await;
        }
    })
    .unwrap();
}

/// How long [`guard`] lets a loop run.
pub const GUARD: Duration = Duration::from_secs(10);

/// Stops the loop after [`GUARD`], so a missing event fails instead of
/// hanging.
pub fn guard(lp: &EventLoop) -> TimerHandle {
    let l2 = lp.clone();
    lp.call_later(GUARD, move || l2.stop()).unwrap()
}

/// `run_forever`, stopped by a [`guard`] if nothing else stops it first.
pub fn run_forever_guarded(lp: &EventLoop) {
    let g = guard(lp);
    lp.run_forever().unwrap();
    g.cancel();
}

/// How long [`bounded`] waits.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` (which builds and runs its own loop) on a new thread; fails if it
/// does not finish within [`LIMIT`], and re-raises its panic if it panicked.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let v = f();
        let _ = tx.send(());
        v
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {LIMIT:?} (a hang, or a lost wake-up?)")
        }
    }
}

// ---------------------------------------------------------------------------
// Observing what happened

/// Sets its flag when dropped: tells whether a future was dropped.
pub struct DropFlag(pub Rc<std::cell::Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// The order things ran in.
pub type Log = Rc<RefCell<Vec<&'static str>>>;

/// An empty [`Log`].
pub fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// A callback that appends `what` to `log`.
pub fn push(log: &Log, what: &'static str) -> impl FnOnce() + 'static {
    let log = log.clone();
    move || log.borrow_mut().push(what)
}

/// What an exception handler saw: (message, error kind, error message,
/// location file).
#[derive(Debug, Clone)]
pub struct Seen {
    pub message: String,
    pub kind: Option<ErrorKind>,
    pub error: String,
    pub file: Option<String>,
}

/// Everything an exception handler installed by [`record_reports`] saw.
pub type Reports = Rc<RefCell<Vec<Seen>>>;

/// Installs an exception handler on `lp` that records what it is given.
pub fn record_reports(lp: &EventLoop) -> Reports {
    let reports: Reports = Rc::default();
    record_reports_into(lp, &reports);
    reports
}

/// As [`record_reports`], into `reports` (made before the loop, for example
/// outside `aioloop::run`).
pub fn record_reports_into(lp: &EventLoop, reports: &Reports) {
    let r = reports.clone();
    lp.set_exception_handler(move |_lp, ctx: &ExceptionContext| {
        r.borrow_mut().push(Seen {
            message: ctx.message.clone(),
            kind: ctx.error.as_ref().map(|e| e.kind()),
            error: ctx
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            file: ctx.location.map(|l| l.file().to_string()),
        })
    });
}

/// The one report in `reports`; fails, showing them all, unless there is
/// exactly one.
pub fn only_report(reports: &Reports) -> Seen {
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports[0].clone()
}

// ---------------------------------------------------------------------------
// Wine

/// Whether this test binary runs under Wine: `scripts/wine/runner.sh` (the
/// cargo runner of the Windows test run) sets `AIOLOOP_UNDER_WINE=1`.
///
/// Wine serves every socket poll through its server process, which makes a
/// socket operation tens of times slower than on a native kernel, and it
/// differs from Windows in a few places that the tests name where they
/// check it.
pub fn under_wine() -> bool {
    cfg!(windows) && std::env::var_os("AIOLOOP_UNDER_WINE").is_some_and(|v| v == "1")
}

/// `native` connections for a many-connections test, or a tenth of them
/// under Wine (see [`under_wine`]): 1,000 connections x 100 messages take
/// about 50 s there, 2 s natively, and the point (many sockets at once on
/// one loop) stands at 100.
pub fn connection_count(native: usize) -> usize {
    if under_wine() {
        (native / 10).max(1)
    } else {
        native
    }
}

// ---------------------------------------------------------------------------
// The io_uring paths of kernels before 6.0

/// Set to `1` in a child: io_uring keeps to what kernels before 6.0 offer
/// (one `RECV` per stream read instead of a multishot receive, a ring
/// without deferred task work).
pub const LEGACY_ENV: &str = "AIOLOOP_URING_LEGACY";

/// Runs this test binary in a child with `args` and the variable `env`
/// set: whether it succeeded, and its output (stdout then stderr).
pub fn run_self(args: &[&str], env: (&str, &str)) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(env.0, env.1)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs this test binary again in a child with [`LEGACY_ENV`] set,
/// skipping `me` (the test calling this); a no-op inside that child. The
/// child must pass every test.
pub fn rerun_as_on_kernels_before_6_0(me: &str) {
    let selector = std::env::var("AIOLOOP_BACKEND").is_ok_and(|b| b == "selector");
    if std::env::var(LEGACY_ENV).is_ok() || selector {
        return;
    }
    let (ok, text) = run_self(&["--skip", me, "--test-threads", "2"], (LEGACY_ENV, "1"));
    assert!(ok, "with {LEGACY_ENV}=1 the tests failed:\n{text}");
    assert!(
        text.contains(" 0 failed"),
        "the child ran its tests:\n{text}"
    );
}
