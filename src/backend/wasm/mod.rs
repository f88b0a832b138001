//! The wasm backend: the JS host (a browser or Node) drives the loop.
//!
//! This backend never blocks, and it never waits in [`Driver::poll`] (it has
//! none): instead the loop asks it to *schedule* its next turn on the host's
//! own event loop, and the host calls back into the loop. The loop side
//! (what a turn does, the budget, the figures) is in
//! `event_loop/wasm.rs`; this file is only the host contract:
//!
//! ```text
//! struct Scheduler                     one per loop, shared (Rc) with the JS side
//!     fn attach(&self, entry)          the loop's callback: entry(Entry, JsValue)
//!     fn schedule_microtask(&self)     one microtask (a cached resolved Promise's
//!                                      `.then`); a no-op while one is pending
//!     fn schedule_yield(&self)         one macrotask (setImmediate on Node,
//!                                      MessageChannel in browsers): lets the host
//!                                      paint and take input; no-op while pending
//!     fn arm_timer(&self, Option<u64>) THE host timeout of the loop, for the
//!                                      earliest deadline (nanoseconds on the
//!                                      crate's clock); re-armed only when it
//!                                      changes, cleared with None
//!     fn call_manual(&self) -> bool    runs entry(Manual) under the JS guard;
//!                                      true when it trapped
//! struct Notifier: Send + Sync         wakes the loop from a waker: calls the
//!                                      attached entry with Entry::Notify
//! ```
//!
//! Every host callback enters the loop through a small JS guard (`host.js`):
//! on stable Rust a panic in wasm32 is a trap that unwinds no Rust frame, so
//! the guard restores the shadow-stack pointer (when the module exports
//! `__stack_pointer`) and calls the loop again with [`Entry::Trap`], which
//! repairs the loop or reports it dead. Nothing thrown ever escapes into a
//! microtask or timer (where Node would end the process).
//!
//! Lifetimes: the JS functions hold the loop's `Closure`, owned by the
//! [`Scheduler`]. While a microtask, a yield or a timer is pending, the
//! scheduler keeps itself alive, so the host never calls a dropped closure;
//! the entry holds only a weak reference to the loop. Dropping the driver
//! clears the timer (so a forgotten loop does not keep Node alive).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use wasm_bindgen::prelude::*;

use crate::backend::Backend;

#[wasm_bindgen(module = "/src/backend/wasm/host.js")]
extern "C" {
    /// The per-loop host functions made by `aioloop_host`.
    type HostFns;

    fn aioloop_host(entry: &JsValue) -> HostFns;
    fn aioloop_install(exports: &JsValue);

    #[wasm_bindgen(method)]
    fn microtask(this: &HostFns);
    #[wasm_bindgen(method, js_name = yieldNow)]
    fn yield_now(this: &HostFns);
    #[wasm_bindgen(method, js_name = setTimer)]
    fn set_timer(this: &HostFns, ms: f64) -> JsValue;
    #[wasm_bindgen(method, js_name = clearTimer)]
    fn clear_timer(this: &HostFns, id: &JsValue);
    #[wasm_bindgen(method)]
    fn manual(this: &HostFns) -> bool;
    #[wasm_bindgen(method, getter, js_name = yieldKind)]
    fn yield_kind(this: &HostFns) -> String;
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error_js(message: &str);
}

/// Writes `message` to the host's console (wasm32 has no stderr).
pub(crate) fn console_error(message: &str) {
    console_error_js(message);
}

/// Why the host entered the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The microtask of a batch of ready work.
    Microtask,
    /// The loop's host timeout fired.
    Timer,
    /// The macrotask after a turn that used up its budget.
    Yield,
    /// The previous entry trapped (a panic); the `JsValue` is what was thrown.
    Trap,
    /// The embedder pumps the loop itself (`run_once`, JS `tick()`).
    Manual,
    /// A waker queued work from outside a turn (not a host callback).
    Notify,
}

impl Entry {
    fn from_code(code: u32) -> Entry {
        match code {
            0 => Entry::Microtask,
            1 => Entry::Timer,
            2 => Entry::Yield,
            3 => Entry::Trap,
            _ => Entry::Manual,
        }
    }
}

type EntryFn = Rc<dyn Fn(Entry, JsValue)>;
/// The one JS-callable closure of a loop: `entry(kind, thrown)`.
type EntryClosure = Closure<dyn Fn(u32, JsValue)>;

thread_local! {
    /// The attached entries of live schedulers, by notifier slot (a
    /// `Notifier` must be `Send`, so it holds only this number).
    static ENTRIES: RefCell<Vec<Option<EntryFn>>> = const { RefCell::new(Vec::new()) };
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
}

/// Gives the JS guard the module's `__stack_pointer`, once per thread.
fn install() {
    if !INSTALLED.with(|i| i.replace(true)) {
        aioloop_install(&wasm_bindgen::exports());
    }
}

/// A loop's side of the host: see the module documentation.
pub(crate) struct Scheduler {
    slot: usize,
    host: RefCell<Option<HostFns>>,
    closure: RefCell<Option<EntryClosure>>,
    micro_pending: Cell<bool>,
    yield_pending: Cell<bool>,
    /// The armed host timeout: its deadline (crate clock, ns) and its id.
    timer: RefCell<Option<(u64, JsValue)>>,
    /// Set while something is pending on the host, so the closure it will
    /// call outlives the loop.
    keepalive: RefCell<Option<Rc<Scheduler>>>,
    /// The loop's driver was dropped: the scheduler lives on only until its
    /// pending host callbacks have run.
    orphaned: Cell<bool>,
}

impl Scheduler {
    /// Installs the loop's entry point; done once, right after the loop is
    /// built.
    pub(crate) fn attach(self: &Rc<Self>, entry: impl Fn(Entry, JsValue) + 'static) {
        install();
        let entry: EntryFn = Rc::new(entry);
        let for_js = entry.clone();
        let me = Rc::downgrade(self);
        let closure = EntryClosure::new(move |code: u32, arg: JsValue| {
            let entry = Entry::from_code(code);
            for_js(entry, arg);
            // The loop is gone (dropped while this callback was pending):
            // let the scheduler go once nothing else is pending. This may
            // drop this very closure; wasm-bindgen frees it only after the
            // call returns.
            if let Some(s) = me.upgrade() {
                if s.orphaned.get() {
                    s.entered(entry);
                    s.release_if_idle();
                }
            }
        });
        let host = aioloop_host(closure.as_ref());
        *self.host.borrow_mut() = Some(host);
        *self.closure.borrow_mut() = Some(closure);
        ENTRIES.with(|e| {
            let mut e = e.borrow_mut();
            if e.len() <= self.slot {
                e.resize(self.slot + 1, None);
            }
            e[self.slot] = Some(entry);
        });
    }

    fn with_host(&self, f: impl FnOnce(&HostFns)) {
        if let Some(host) = self.host.borrow().as_ref() {
            f(host);
        }
    }

    fn hold(self: &Rc<Self>) {
        let mut k = self.keepalive.borrow_mut();
        if k.is_none() {
            *k = Some(self.clone());
        }
    }

    fn release_if_idle(&self) {
        if !self.micro_pending.get() && !self.yield_pending.get() && self.timer.borrow().is_none() {
            let me = self.keepalive.borrow_mut().take();
            drop(me);
        }
    }

    /// Queues one microtask for the loop, unless one is pending.
    pub(crate) fn schedule_microtask(self: &Rc<Self>) {
        if !self.micro_pending.replace(true) {
            self.hold();
            self.with_host(HostFns::microtask);
        }
    }

    /// Queues one yielding macrotask for the loop, unless one is pending.
    pub(crate) fn schedule_yield(self: &Rc<Self>) {
        if !self.yield_pending.replace(true) {
            self.hold();
            self.with_host(HostFns::yield_now);
        }
    }

    /// Whether a microtask or a yield is queued on the host.
    pub(crate) fn turn_pending(&self) -> bool {
        self.micro_pending.get() || self.yield_pending.get()
    }

    /// Called by the loop when the host enters it with `entry`: marks that
    /// host callback as no longer pending.
    pub(crate) fn entered(&self, entry: Entry) {
        match entry {
            Entry::Microtask => self.micro_pending.set(false),
            Entry::Yield => self.yield_pending.set(false),
            Entry::Timer => {
                self.timer.borrow_mut().take();
            }
            Entry::Trap | Entry::Manual | Entry::Notify => {}
        }
    }

    /// Arms the loop's one host timeout for `deadline` (ns on the crate's
    /// clock), `now` being the present on that clock; `None` clears it. An
    /// unchanged deadline keeps the armed timeout.
    pub(crate) fn arm_timer(self: &Rc<Self>, deadline: Option<u64>, now: u64) {
        let armed = self.timer.borrow().as_ref().map(|(when, _)| *when);
        if armed == deadline {
            return;
        }
        if let Some((_, id)) = self.timer.borrow_mut().take() {
            self.with_host(|h| h.clear_timer(&id));
        }
        if let Some(when) = deadline {
            // Whole milliseconds, rounded up: a timer never fires early (if
            // the host fires a little early anyway, the loop finds nothing
            // due and re-arms).
            let ns = when.saturating_sub(now);
            let ms = ns.div_ceil(1_000_000) as f64;
            let mut id = None;
            self.with_host(|h| id = Some(h.set_timer(ms)));
            if let Some(id) = id {
                *self.timer.borrow_mut() = Some((when, id));
                self.hold();
            }
        }
        self.release_if_idle();
    }

    /// Lets go of the keep-alive once nothing is pending on the host (after
    /// each turn).
    pub(crate) fn settle(&self) {
        self.release_if_idle();
    }

    /// Runs the loop's entry with [`Entry::Manual`] inside the JS guard.
    /// Returns `true` when it trapped (the loop has already been called with
    /// [`Entry::Trap`]).
    pub(crate) fn call_manual(&self) -> bool {
        let mut trapped = false;
        self.with_host(|h| trapped = h.manual());
        trapped
    }

    /// How the loop yields to the host: `setImmediate`, `MessageChannel` or
    /// `setTimeout`.
    pub(crate) fn yield_kind(&self) -> String {
        let mut kind = String::new();
        self.with_host(|h| kind = h.yield_kind());
        kind
    }
}

/// The loop's driver: owns its [`Scheduler`].
pub(crate) struct Driver {
    scheduler: Rc<Scheduler>,
    notifier: Arc<Notifier>,
}

impl Driver {
    pub(crate) fn new(backend: Backend) -> io::Result<Driver> {
        debug_assert_eq!(backend, Backend::Wasm);
        let slot = ENTRIES.with(|e| {
            let mut e = e.borrow_mut();
            match e.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    e.push(None);
                    e.len() - 1
                }
            }
        });
        let scheduler = Rc::new(Scheduler {
            slot,
            host: RefCell::new(None),
            closure: RefCell::new(None),
            micro_pending: Cell::new(false),
            yield_pending: Cell::new(false),
            timer: RefCell::new(None),
            keepalive: RefCell::new(None),
            orphaned: Cell::new(false),
        });
        Ok(Driver {
            scheduler,
            notifier: Arc::new(Notifier { slot }),
        })
    }

    pub(crate) fn kind(&self) -> Backend {
        Backend::Wasm
    }

    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    pub(crate) fn scheduler(&self) -> &Rc<Scheduler> {
        &self.scheduler
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // No host timeout may outlive the loop (it would keep Node alive);
        // a pending microtask or yield finds the loop gone, does nothing and
        // lets the scheduler go.
        self.scheduler.orphaned.set(true);
        self.scheduler.arm_timer(None, 0);
        let slot = self.scheduler.slot;
        let entry = ENTRIES
            .try_with(|e| {
                e.try_borrow_mut()
                    .ok()
                    .and_then(|mut e| e.get_mut(slot).and_then(Option::take))
            })
            .ok()
            .flatten();
        drop(entry);
    }
}

/// Wakes a loop from a waker (`Send + Sync`: it holds only the slot number;
/// wasm32-unknown-unknown has one thread).
#[derive(Debug)]
pub(crate) struct Notifier {
    slot: usize,
}

impl Notifier {
    /// Tells the loop that work arrived from outside one of its turns.
    pub(crate) fn notify(&self) -> io::Result<()> {
        let entry = ENTRIES
            .try_with(|e| {
                e.try_borrow()
                    .ok()
                    .and_then(|e| e.get(self.slot).cloned().flatten())
            })
            .ok()
            .flatten();
        if let Some(entry) = entry {
            entry(Entry::Notify, JsValue::UNDEFINED);
        }
        Ok(())
    }
}

/// `Backend::Auto` on wasm32: the host-driven backend, the only one here.
/// (`Backend::resolve` answers wasm32 before asking; this keeps the
/// platform contract of `backend/mod.rs` whole.)
pub(crate) fn auto_backend() -> super::Backend {
    super::Backend::Wasm
}

/// Why an explicit `Backend::Proactor` cannot start here.
pub(crate) fn proactor_support() -> Result<(), String> {
    Err("wasm32 has no proactor backend: the JS host drives the loop (Backend::Wasm)".into())
}
