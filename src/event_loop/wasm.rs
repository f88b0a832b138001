//! The loop side of the wasm backend: turns driven by the JS host.
//!
//! On wasm32 nothing may block, so there is no `run_forever`: a loop is
//! driven by its host from the moment it has work. One **turn** (the wasm
//! form of asyncio's `_run_once`):
//!
//! 1. takes what wakers queued from outside, moves due timers to the ready
//!    queue;
//! 2. runs only the ready work queued before the turn began (anything it
//!    schedules runs in a later turn), checking the clock every
//!    [`CLOCK_EVERY`] items (less often, up to [`CLOCK_EVERY_MAX`], while
//!    the items are quick): once the **slice** (the turns since the host last
//!    had control) has used its budget, the turn stops early, leaving the
//!    rest at the front of the queue;
//! 3. asks the host for the next turn: a microtask while the slice has
//!    budget left, a yielding macrotask once it has not (so pages paint and
//!    input flows), or, when nothing is ready, the loop's one host timeout
//!    for the earliest deadline.
//!
//! Work queued from outside a turn (JS calling `callSoon`, a JS promise
//! waking a task) asks for a microtask, unless a turn is already queued.
//! [`EventLoop::stop`] pauses the host's driving after the current turn;
//! [`EventLoop::start`] resumes it; [`EventLoop::run_once`] lets an embedder
//! that owns its event loop pump the loop itself.
//!
//! Panics: on stable wasm32 a panic is a trap that unwinds nothing. Every
//! host entry runs under a JS guard (see `backend/wasm`), which calls
//! [`recover`] after a trap: the thread's loop state is restored to what it
//! was when the turn began, the panic goes to the exception handler and the
//! loop goes on, or, when the trap left the loop's own state borrowed, the
//! loop reports itself dead (every call fails with a message saying so).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use wasm_bindgen::JsValue;

use super::{EventLoop, ExceptionContext, Inner};
use crate::backend::wasm::{Entry, Scheduler};
use crate::time::{self, Fired, Instant};
use crate::{Error, ErrorKind, TaskContextId};

use super::Ready;

/// The clock is read once per this many ready items at first (a
/// `performance.now()` call costs up to half a microsecond in browsers).
pub(crate) const CLOCK_EVERY: usize = 16;

/// The most items between two clock reads: a turn of quick items doubles the
/// interval from [`CLOCK_EVERY`] while the items between two reads took less
/// than [`CLOCK_GROW_BELOW`] of the budget, up to this.
const CLOCK_EVERY_MAX: usize = 256;

/// See [`CLOCK_EVERY_MAX`]: the interval grows only while it keeps the
/// overshoot past the budget below 1/16 of it (for evenly sized items).
const CLOCK_GROW_BELOW: u32 = 32;

/// The default slice: how long the loop may keep the host busy before it
/// yields with a macrotask (React's scheduler uses the same 5 ms).
pub const DEFAULT_TICK_BUDGET: Duration = Duration::from_millis(5);

/// A loop's figures, from [`EventLoop::stats`] (wasm32 only).
///
/// # Examples
///
/// ```
/// # #[cfg(target_arch = "wasm32")] {
/// let lp = aioloop::EventLoop::new().unwrap();
/// lp.call_soon(|| {}).unwrap();
/// lp.run_once().unwrap();
/// let s = lp.stats();
/// assert_eq!(s.callbacks, 1);
/// assert_eq!(s.budget_yields, 0);
/// # lp.close().unwrap();
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Turns run (host-driven and [`run_once`](EventLoop::run_once)).
    pub turns: u64,
    /// Ready items run: callbacks, task steps and timer wake-ups.
    pub callbacks: u64,
    /// Timers that came due (callbacks and sleeps).
    pub timers_fired: u64,
    /// Turns that used up the budget and yielded to the host with a
    /// macrotask.
    pub budget_yields: u64,
    /// How late the latest timer batch ran after its earliest deadline.
    pub late_last: Duration,
    /// The worst such lateness seen.
    pub late_max: Duration,
    /// The sum of all such lateness (see [`late_mean`](LoopStats::late_mean)).
    pub late_total: Duration,
    /// How many timer batches the lateness figures cover.
    pub late_samples: u64,
    /// Panics (traps) contained by the loop.
    pub traps: u64,
}

impl LoopStats {
    /// The mean lateness of timer batches (zero before the first).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let s = aioloop::LoopStats::default();
    /// assert_eq!(s.late_mean(), std::time::Duration::ZERO);
    /// # }
    /// ```
    pub fn late_mean(&self) -> Duration {
        if self.late_samples == 0 {
            Duration::ZERO
        } else {
            self.late_total / u32::try_from(self.late_samples).unwrap_or(u32::MAX)
        }
    }
}

/// The per-loop state of host-driven turns (a field of `Inner` on wasm32).
pub(crate) struct HostLoop {
    budget: Cell<Duration>,
    /// When the current slice began; `None` when the host has had control
    /// since the last turn.
    slice_start: Cell<Option<Instant>>,
    stats: Cell<LoopStats>,
    /// Why the loop is dead, once a trap left its state stuck.
    dead: RefCell<Option<String>>,
    /// The thread's task context and host-context depth when the current
    /// turn began: what a trap recovery restores.
    saved: Cell<(Option<TaskContextId>, usize)>,
    /// The result of the latest manual turn.
    manual: Cell<Option<Result<usize, ErrorKind>>>,
    /// The key of the task whose future is being polled now: a trap ends it.
    pub(crate) stepping: Cell<Option<u32>>,
}

impl Default for HostLoop {
    fn default() -> HostLoop {
        HostLoop {
            budget: Cell::new(DEFAULT_TICK_BUDGET),
            slice_start: Cell::new(None),
            stats: Cell::new(LoopStats::default()),
            dead: RefCell::new(None),
            saved: Cell::new((None, 0)),
            manual: Cell::new(None),
            stepping: Cell::new(None),
        }
    }
}

impl HostLoop {
    fn stat(&self, f: impl FnOnce(&mut LoopStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.try_borrow().map_or(true, |d| d.is_some())
    }

    pub(crate) fn dead_error(&self) -> Option<Error> {
        let why = self.dead.try_borrow().ok()?.clone()?;
        Some(Error::new(
            ErrorKind::Panicked,
            format!(
                "this event loop is dead: a panic (a trap on wasm32) left its state inconsistent \
                 ({why}); close it and create a new loop"
            ),
        ))
    }
}

impl fmt::Debug for HostLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostLoop")
            .field("budget", &self.budget.get())
            .field("stats", &self.stats.get())
            .finish()
    }
}

thread_local! {
    /// The message of the latest panic (a panic hook records it: after a
    /// trap there is no payload to read).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// Records panic messages for trap reports; chains to the previous hook.
fn hook_panics() {
    if HOOKED.with(|h| h.replace(true)) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = LAST_PANIC.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                *p = Some(info.to_string());
            }
        });
        previous(info);
    }));
}

fn scheduler(inner: &Inner) -> Rc<Scheduler> {
    inner.driver.borrow().scheduler().clone()
}

/// Connects a new loop to its host scheduler.
pub(crate) fn attach(lp: &EventLoop) {
    hook_panics();
    let weak: Weak<Inner> = Rc::downgrade(&lp.inner);
    scheduler(&lp.inner).attach(move |entry, arg| {
        if let Some(inner) = weak.upgrade() {
            enter(&EventLoop { inner }, entry, arg);
        }
    });
}

/// The host (or a waker) entered the loop.
fn enter(lp: &EventLoop, entry: Entry, arg: JsValue) {
    let inner = &*lp.inner;
    let sched = scheduler(inner);
    sched.entered(entry);
    match entry {
        Entry::Trap => recover(lp, &sched, &arg),
        Entry::Notify => inner.wake_host(),
        Entry::Manual => {
            let r = turn(lp, &sched, true).map_err(|e| e.kind());
            inner.host.manual.set(Some(r));
        }
        Entry::Microtask | Entry::Yield | Entry::Timer => {
            clear_stale_state(lp);
            if inner.closed.get() || inner.host.is_dead() || inner.stopping.get() {
                sched.arm_timer(None, 0);
                sched.settle();
                return;
            }
            if entry == Entry::Timer && sched.turn_pending() {
                // The queued turn handles due timers, then re-arms.
                sched.settle();
                return;
            }
            let _ = turn(lp, &sched, false);
        }
    }
}

/// Host callbacks run at the top of the JS stack, where no turn and no
/// context can be active: anything found there was left by a trap that no
/// guard caught (in code the host called directly). Clears it, and wakes the
/// loop it belonged to, so that no loop stays stuck "running".
fn clear_stale_state(lp: &EventLoop) {
    crate::context::reset_task_context(None);
    crate::context::truncate_host_contexts(0);
    if let Some(stale) = super::run::take_running() {
        stale.inner.running.set(false);
        if stale != *lp {
            stale.inner.wake_host();
        }
    }
}

/// One turn; see the module documentation.
fn turn(lp: &EventLoop, sched: &Rc<Scheduler>, manual: bool) -> Result<usize, Error> {
    let inner = &*lp.inner;
    if let Some(e) = inner.host.dead_error() {
        return Err(e);
    }
    let guard = lp.enter_running()?;
    let host = &inner.host;
    host.saved.set((
        crate::context::entered_task_context(),
        crate::context::host_depth(),
    ));
    let start = Instant::now();
    let slice_start = match host.slice_start.get() {
        Some(s) if !manual => s,
        _ => {
            host.slice_start.set(Some(start));
            start
        }
    };
    let budget = host.budget.get();
    lp.drain_remote();

    {
        let mut timers = inner.timers.borrow_mut();
        if !timers.is_empty() {
            let mut ready = inner.ready.borrow_mut();
            let mut tasks = inner.tasks.borrow_mut();
            timers.maybe_compact(&tasks);
            let earliest = timers.next_deadline(&tasks);
            if let Some(earliest) = earliest.filter(|d| *d <= start) {
                let late = start.saturating_duration_since(earliest);
                let mut fired = 0u64;
                timers.pop_due(start, &mut tasks, |f| {
                    fired += 1;
                    ready.push_back(match f {
                        Fired::Callback(cb) => Ready::Callback(cb),
                        Fired::Task(key) => Ready::WakeTask(key),
                        Fired::Waker(w) => Ready::Wake(w),
                    })
                });
                host.stat(|s| {
                    s.timers_fired += fired;
                    s.late_last = late;
                    s.late_max = s.late_max.max(late);
                    s.late_total += late;
                    s.late_samples += 1;
                });
            }
        }
    }

    let ntodo = inner.ready.borrow().len();
    let debug = inner.debug.get();
    let mut ran = 0;
    let mut over = false;
    // The clock is read every `every` items; quick items make that rarer
    // (see CLOCK_EVERY_MAX), slow ones keep it at CLOCK_EVERY.
    let mut every = CLOCK_EVERY;
    let mut next_check = every;
    let mut last_check = start;
    let grow_below = budget / CLOCK_GROW_BELOW;
    while ran < ntodo {
        let item = inner.ready.borrow_mut().pop_front();
        let Some(item) = item else { break };
        if debug {
            // Logs (warning level) items slower than slow_callback_duration.
            lp.run_item_timed(item, &mut || {});
        } else {
            lp.run_item(item, &mut || {});
        }
        ran += 1;
        if ran == next_check && ran < ntodo {
            let now = Instant::now();
            if now.saturating_duration_since(slice_start) >= budget {
                over = true;
                break;
            }
            if every < CLOCK_EVERY_MAX && now.saturating_duration_since(last_check) < grow_below {
                every *= 2;
            }
            last_check = now;
            next_check = ran + every;
        }
    }
    let over = over || slice_start.elapsed() >= budget;
    host.stat(|s| {
        s.turns += 1;
        s.callbacks += ran as u64;
    });
    // The running guard clears `stopping` (asyncio's run_forever does); on
    // wasm it means "paused" and outlives the turn.
    let stopping = inner.stopping.get();
    drop(guard);
    inner.stopping.set(stopping);
    reschedule(lp, sched, over);
    Ok(ran)
}

/// Asks the host for whatever comes next, after a turn.
fn reschedule(lp: &EventLoop, sched: &Rc<Scheduler>, over_budget: bool) {
    let inner = &*lp.inner;
    if inner.closed.get() || inner.host.is_dead() || inner.stopping.get() {
        sched.arm_timer(None, 0);
        sched.settle();
        return;
    }
    let has_ready = !inner.ready.borrow().is_empty() || inner.remote.has_pending();
    if has_ready {
        if over_budget {
            inner.host.stat(|s| s.budget_yields += 1);
            inner.host.slice_start.set(None);
            sched.schedule_yield();
        } else {
            sched.schedule_microtask();
        }
    } else {
        inner.host.slice_start.set(None);
        let next = inner
            .timers
            .borrow_mut()
            .next_deadline(&inner.tasks.borrow())
            .map(time::to_nanos);
        sched.arm_timer(next, time::to_nanos(Instant::now()));
    }
    sched.settle();
}

/// After a trap in one of this loop's turns (the JS guard caught it and
/// restored the stack pointer): restores the thread's loop state, reports
/// the panic, and either goes on or declares the loop dead.
fn recover(lp: &EventLoop, sched: &Rc<Scheduler>, thrown: &JsValue) {
    let inner = &*lp.inner;
    let (task_ctx, host_depth) = inner.host.saved.get();
    crate::context::reset_task_context(task_ctx);
    crate::context::truncate_host_contexts(host_depth);
    super::run::forget_running(inner);
    inner.running.set(false);
    inner.host.stat(|s| s.traps += 1);
    let panic = LAST_PANIC
        .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.take()))
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            thrown
                .as_string()
                .or_else(|| {
                    js_sys::Reflect::get(thrown, &JsValue::from_str("message"))
                        .ok()
                        .and_then(|m| m.as_string())
                })
                .unwrap_or_else(|| "a trap (RuntimeError)".to_string())
        });
    if inner.host.manual.take().is_none() {
        inner.host.manual.set(Some(Err(ErrorKind::Panicked)));
    }
    let stuck = inner.ready.try_borrow_mut().is_err()
        || inner.timers.try_borrow_mut().is_err()
        || inner.tasks.try_borrow_mut().is_err()
        || inner.task_contexts.try_borrow_mut().is_err()
        || inner.handler.try_borrow_mut().is_err()
        || inner.debug_locations.try_borrow_mut().is_err();
    if stuck {
        if let Ok(mut d) = inner.host.dead.try_borrow_mut() {
            *d = Some(panic.clone());
        }
        sched.arm_timer(None, 0);
        sched.settle();
        crate::backend::wasm::console_error(&format!(
            "aioloop: an event loop is dead: a panic left its state borrowed ({panic}); \
             close it and create a new loop"
        ));
        return;
    }
    let err = Error::new(ErrorKind::Panicked, panic);
    // A task whose step the trap cut short ends with the panic: whoever
    // awaits it (a task, a Promise) gets the error instead of waiting forever.
    crate::task::abandon_trapped_step(inner, err.clone());
    // Keep the loop going before user code (the handler) runs again.
    reschedule(lp, sched, true);
    lp.call_exception_handler(
        &ExceptionContext::new("Exception in callback or task (a trap: the step was abandoned)")
            .with_error(err),
    );
}

impl Inner {
    /// Whether one of this loop's turns is running now.
    #[inline]
    pub(crate) fn is_running(&self) -> bool {
        self.running.get()
    }

    /// Work was queued from outside a turn: make sure the host runs one.
    pub(crate) fn wake_host(&self) {
        if self.running.get() || self.stopping.get() || self.closed.get() || self.host.is_dead() {
            return;
        }
        let sched = self.driver.borrow().scheduler().clone();
        if !sched.turn_pending() {
            sched.schedule_microtask();
        }
    }

    /// The loop closed: no host timeout may keep it (or Node) alive.
    pub(crate) fn host_closed(&self) {
        let sched = self.driver.borrow().scheduler().clone();
        sched.arm_timer(None, 0);
        sched.settle();
    }
}

/// Host-driven loops (wasm32 only).
impl EventLoop {
    /// Runs one turn now, for hosts that pump the loop themselves (JS
    /// `tick()`): due timers and the ready work queued so far, within the
    /// [tick budget](EventLoop::set_tick_budget). Returns how many ready items
    /// ran. The host keeps driving the loop as usual unless it was
    /// [stopped](EventLoop::stop); a stopped loop runs only when pumped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::AlreadyRunning`]
    /// from inside a turn (of this or another loop); [`ErrorKind::Panicked`]
    /// when something in the turn panicked (the loop recovered and reported
    /// it to its exception handler) or when the loop is dead.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.stop(); // the host no longer drives it: we do
    /// lp.call_soon(|| {}).unwrap();
    /// assert_eq!(lp.run_once().unwrap(), 1);
    /// assert_eq!(lp.run_once().unwrap(), 0);
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn run_once(&self) -> Result<usize, Error> {
        self.check_open()?;
        if self.inner.running.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "run_once() was called from inside this loop's own turn: schedule the work with call_soon instead",
            ));
        }
        let sched = scheduler(&self.inner);
        self.inner.host.manual.set(None);
        let trapped = sched.call_manual();
        match self.inner.host.manual.take() {
            Some(Ok(n)) if !trapped => Ok(n),
            Some(Err(ErrorKind::Panicked)) | Some(Ok(_)) | None => {
                Err(self.inner.host.dead_error().unwrap_or_else(|| {
                    Error::new(
                        ErrorKind::Panicked,
                        "a callback or task panicked during run_once(); the loop recovered and \
                         reported it to its exception handler",
                    )
                }))
            }
            Some(Err(ErrorKind::Closed)) => Err(Error::closed()),
            Some(Err(kind)) => Err(Error::new(
                kind,
                "run_once() could not run a turn: another event loop is running on this thread; \
                 schedule the work on that loop instead",
            )),
        }
    }

    /// Resumes host driving after [`stop`](EventLoop::stop): queued work runs
    /// in a microtask, timers are re-armed. Does nothing on a loop that was
    /// not stopped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed (or dead) loop.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.stop();
    /// assert!(lp.is_stopped());
    /// lp.start().unwrap();
    /// assert!(!lp.is_stopped());
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn start(&self) -> Result<(), Error> {
        self.check_open()?;
        if self.inner.stopping.replace(false) && !self.inner.running.get() {
            let sched = scheduler(&self.inner);
            reschedule(self, &sched, false);
        }
        Ok(())
    }

    /// Whether the host's driving is paused by [`stop`](EventLoop::stop).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.is_stopped());
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.inner.stopping.get()
    }

    /// Whether a panic left this loop dead (see [`run_once`](EventLoop::run_once)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.is_dead());
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn is_dead(&self) -> bool {
        self.inner.host.is_dead()
    }

    /// The loop's figures: turns, callbacks, timers, lateness, budget
    /// yields, traps.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert_eq!(lp.stats().turns, 0);
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn stats(&self) -> LoopStats {
        self.inner.host.stats.get()
    }

    /// How long a slice of turns may keep the host busy before the loop
    /// yields to it with a macrotask (default [`DEFAULT_TICK_BUDGET`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert_eq!(lp.tick_budget(), aioloop::DEFAULT_TICK_BUDGET);
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn tick_budget(&self) -> Duration {
        self.inner.host.budget.get()
    }

    /// Sets the [tick budget](EventLoop::tick_budget).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a zero budget (it would yield after
    /// every 16th item forever: use 1 ms or more).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// # use std::time::Duration;
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.set_tick_budget(Duration::from_millis(8)).unwrap();
    /// assert!(lp.set_tick_budget(Duration::ZERO).is_err());
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn set_tick_budget(&self, budget: Duration) -> Result<(), Error> {
        if budget.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the tick budget must be more than zero: use a few milliseconds (default 5 ms)",
            ));
        }
        self.inner.host.budget.set(budget);
        Ok(())
    }

    /// How the loop yields to its host: `"setImmediate"` (Node),
    /// `"MessageChannel"` (browsers) or `"setTimeout"`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.yield_kind().is_empty());
    /// # lp.close().unwrap();
    /// # }
    /// ```
    pub fn yield_kind(&self) -> String {
        scheduler(&self.inner).yield_kind()
    }
}

/// An aioloop [`Error`] as a JS `Error` (wasm32): its `name` is the kind
/// followed by `Error` (`"ClosedError"`, `"CancelledError"`…), its `kind`
/// the [`ErrorKind`] name (`"Closed"`, `"Cancelled"`…).
///
/// # Examples
///
/// ```
/// # #[cfg(target_arch = "wasm32")] {
/// use wasm_bindgen::JsValue;
/// let e = JsValue::from(aioloop::Error::new(aioloop::ErrorKind::Closed, "closed"));
/// let kind = js_sys::Reflect::get(&e, &"kind".into()).unwrap();
/// assert_eq!(kind.as_string().unwrap(), "Closed");
/// # }
/// ```
impl From<Error> for JsValue {
    fn from(err: Error) -> JsValue {
        let kind = format!("{:?}", err.kind());
        // The messages name the Rust calls; say what to call from JS too.
        let hint = match err.kind() {
            ErrorKind::NoCurrentLoop => {
                " (from JS: make one with newEventLoop() and setEventLoop(lp), or use withContext(id, fn) under a context-keyed policy)"
            }
            ErrorKind::NoContext => " (from JS: run the code inside withContext(id, fn))",
            ErrorKind::NoRunningLoop => " (from JS: call it from a callback or task of a loop)",
            _ => "",
        };
        let e = js_sys::Error::new(&format!("{}{hint}", err.message()));
        e.set_name(&format!("{kind}Error"));
        let _ = js_sys::Reflect::set(&e, &JsValue::from_str("kind"), &JsValue::from_str(&kind));
        e.into()
    }
}

/// Tasks as JS promises (wasm32).
impl<T: Into<JsValue> + 'static> crate::Task<T> {
    /// A JS `Promise` that resolves to the task's output, or rejects with
    /// its error as a JS `Error` (`CancelledError`, `ClosedError`,
    /// `PanickedError`…). The task keeps running on its loop; the promise
    /// only watches it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_arch = "wasm32")] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let promise: js_sys::Promise = lp.create_task(async { 42u32 }).into_promise();
    /// # drop(promise);
    /// # }
    /// ```
    pub fn into_promise(self) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            self.await.map(Into::into).map_err(JsValue::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn a_trap_that_leaves_the_loops_state_borrowed_makes_it_dead() {
        let lp = EventLoop::new().unwrap();
        let sched = scheduler(&lp.inner);
        lp.call_later(Duration::from_secs(3600), || {}).unwrap();
        // What a trap inside `ready.borrow_mut()` (an allocation failure in
        // push_back, say) leaves behind: the borrow is never released.
        let stuck = lp.inner.ready.borrow_mut();
        recover(&lp, &sched, &JsValue::from_str("RuntimeError: unreachable"));
        drop(stuck);
        assert!(lp.is_dead());
        let e = lp.call_soon(|| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked);
        assert!(e.message().contains("dead"), "{}", e.message());
        assert!(e.message().contains("create a new loop"), "{}", e.message());
        assert_eq!(lp.run_once().unwrap_err().kind(), ErrorKind::Panicked);
        assert!(lp.start().is_err());
        // Closing a dead loop touches none of its state, and works.
        lp.close().unwrap();
        assert!(lp.is_closed());
        // Other loops are unaffected.
        let other = EventLoop::new().unwrap();
        other.stop();
        other.call_soon(|| {}).unwrap();
        assert_eq!(other.run_once().unwrap(), 1);
        other.close().unwrap();
    }

    #[wasm_bindgen_test]
    async fn a_host_entry_clears_a_running_loop_left_by_an_uncaught_trap() {
        let stuck = EventLoop::new().unwrap();
        let other = EventLoop::new().unwrap();
        // What an uncaught trap inside a turn of `stuck` leaves behind.
        let guard = stuck.enter_running().unwrap();
        std::mem::forget(guard);
        assert!(stuck.is_running());
        let ran = std::rc::Rc::new(Cell::new(0));
        for lp in [&stuck, &other] {
            let r = ran.clone();
            lp.call_soon(move || r.set(r.get() + 1)).unwrap();
        }
        // `other`'s microtask turn (a top-level host entry) clears the stale
        // state and wakes `stuck`, whose own work then runs too.
        for _ in 0..10 {
            let zero = JsValue::from(0);
            wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&zero))
                .await
                .unwrap();
        }
        assert_eq!(ran.get(), 2);
        assert!(!stuck.is_running());
        stuck.close().unwrap();
        other.close().unwrap();
    }

    #[wasm_bindgen_test]
    fn a_trap_with_nothing_stuck_keeps_the_loop_alive_and_restores_contexts() {
        let lp = EventLoop::new().unwrap();
        lp.stop();
        let sched = scheduler(&lp.inner);
        lp.set_exception_handler(|_, _| {});
        // A turn that "trapped" inside a task context and a host context.
        lp.inner.host.saved.set((None, 0));
        let _task_ctx = crate::context::enter_task_context(TaskContextId::new());
        let host = crate::enter_host_context(9u64);
        recover(&lp, &sched, &JsValue::from_str("RuntimeError: unreachable"));
        std::mem::forget(host);
        assert!(!lp.is_dead());
        assert_eq!(crate::context::entered_task_context(), None);
        assert_eq!(crate::context::host_depth(), 0);
        assert_eq!(lp.stats().traps, 1);
        lp.call_soon(|| {}).unwrap();
        assert_eq!(lp.run_once().unwrap(), 1);
        lp.close().unwrap();
    }
}
