//! The JS `EventLoop` class, its handles and its figures.

use std::time::Duration;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::{call0, millis, report_thrown, to_js_error, JsTask, THROWN};
use crate::time::{from_nanos, to_nanos};
use crate::{EventLoop, Handle, LoopStats, TimerHandle};

fn ms_of(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A single-threaded event loop driven by the JS host (JS class
/// `EventLoop`): asyncio's loop in camelCase, times in milliseconds.
///
/// # Examples
///
/// ```js
/// const lp = new EventLoop();
/// lp.callSoon(() => console.log('hi'));
/// ```
#[wasm_bindgen(js_name = EventLoop)]
#[derive(Debug, Clone)]
pub struct JsEventLoop {
    pub(crate) lp: EventLoop,
}

impl JsEventLoop {
    /// Wraps a Rust loop for JS.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(all(target_arch = "wasm32", feature = "js"))] {
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let js = aioloop::js::JsEventLoop::from_loop(lp.clone());
    /// assert_eq!(js.as_loop(), &lp);
    /// # }
    /// ```
    pub fn from_loop(lp: EventLoop) -> JsEventLoop {
        JsEventLoop { lp }
    }

    /// The Rust loop behind this JS object.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(all(target_arch = "wasm32", feature = "js"))] {
    /// let js = aioloop::js::JsEventLoop::new().unwrap();
    /// assert!(!js.as_loop().is_closed());
    /// # }
    /// ```
    pub fn as_loop(&self) -> &EventLoop {
        &self.lp
    }
}

#[wasm_bindgen(js_class = EventLoop)]
impl JsEventLoop {
    /// `new EventLoop()`: a new loop (not made current; see `setEventLoop`).
    ///
    /// # Errors
    ///
    /// When the backend cannot start.
    ///
    /// # Examples
    ///
    /// ```js
    /// const lp = new EventLoop();   // or newEventLoop() through the policy
    /// ```
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<JsEventLoop, JsValue> {
        EventLoop::new()
            .map(JsEventLoop::from_loop)
            .map_err(|e| to_js_error(&e))
    }

    /// `callSoon(fn)`: runs `fn()` in a later turn, FIFO with other
    /// `callSoon` callbacks. What `fn` throws goes to the exception handler.
    ///
    /// # Errors
    ///
    /// `ClosedError` on a closed loop.
    ///
    /// # Examples
    ///
    /// ```js
    /// const h = lp.callSoon(() => console.log('next turn'));
    /// h.cancel();                      // it will not run
    /// ```
    #[wasm_bindgen(js_name = callSoon)]
    pub fn call_soon(&self, callback: Function) -> Result<JsHandle, JsValue> {
        let lp = self.lp.clone();
        self.lp
            .call_soon(move || run_js_callback(&lp, &callback))
            .map(|handle| JsHandle { handle })
            .map_err(|e| to_js_error(&e))
    }

    /// `callLater(delayMs, fn)`: runs `fn()` once `delayMs` milliseconds
    /// have passed (never earlier; a negative delay is zero). Timers due at
    /// the same time run in the order they were scheduled.
    ///
    /// # Errors
    ///
    /// `InvalidInputError` for NaN or an infinite delay; `ClosedError` on a
    /// closed loop.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.callLater(10, () => console.log('10 ms later'));
    /// ```
    #[wasm_bindgen(js_name = callLater)]
    pub fn call_later(
        &self,
        #[wasm_bindgen(js_name = delayMs)] delay_ms: f64,
        callback: Function,
    ) -> Result<JsTimerHandle, JsValue> {
        let delay = millis("callLater(delayMs, fn): delayMs", delay_ms)?;
        let lp = self.lp.clone();
        self.lp
            .call_later(delay, move || run_js_callback(&lp, &callback))
            .map(|handle| JsTimerHandle { handle })
            .map_err(|e| to_js_error(&e))
    }

    /// `callAt(whenMs, fn)`: runs `fn()` at `whenMs` on the loop's clock
    /// (see `time()`), never earlier.
    ///
    /// # Errors
    ///
    /// `InvalidInputError` for NaN or an infinite time; `ClosedError` on a
    /// closed loop.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.callAt(lp.time() + 10, () => console.log('at +10 ms'));
    /// ```
    #[wasm_bindgen(js_name = callAt)]
    pub fn call_at(
        &self,
        #[wasm_bindgen(js_name = whenMs)] when_ms: f64,
        callback: Function,
    ) -> Result<JsTimerHandle, JsValue> {
        let when = millis("callAt(whenMs, fn): whenMs", when_ms)?;
        let when = from_nanos(u64::try_from(when.as_nanos()).unwrap_or(u64::MAX));
        let lp = self.lp.clone();
        self.lp
            .call_at(when, move || run_js_callback(&lp, &callback))
            .map(|handle| JsTimerHandle { handle })
            .map_err(|e| to_js_error(&e))
    }

    /// `time()`: the loop's clock in milliseconds (monotonic, fractional;
    /// counted from when aioloop first read the clock).
    ///
    /// # Examples
    ///
    /// ```js
    /// const t0 = lp.time();
    /// lp.callLater(5, () => console.log(lp.time() - t0 >= 5)); // true
    /// ```
    pub fn time(&self) -> f64 {
        to_nanos(self.lp.time()) as f64 / 1e6
    }

    /// `createTask(fn)`: runs `fn(signal)` as a task of this loop (it starts
    /// in a later turn, in the task's context) and awaits what it returns
    /// when that is a promise. The `Task` is awaitable (`await task`), and
    /// `task.cancel()` cancels it: its promise rejects with a
    /// `CancelledError`, and `signal` (an `AbortSignal`) is aborted so the
    /// function can stop what it started (`fetch(url, { signal })`); the
    /// same happens when the loop closes first.
    ///
    /// # Examples
    ///
    /// ```js
    /// const task = lp.createTask(async (signal) => {
    ///   const r = await fetch(url, { signal });   // aborted by task.cancel()
    ///   return r.status;
    /// });
    /// console.log(await task);
    /// ```
    #[wasm_bindgen(js_name = createTask)]
    pub fn create_task(
        &self,
        #[wasm_bindgen(
            js_name = "fn",
            unchecked_param_type = "(signal: AbortSignal) => unknown"
        )]
        func: Function,
    ) -> JsTask {
        JsTask::spawn(&self.lp, func)
    }

    /// `sleep(ms)`: a promise that resolves after `ms` milliseconds on this
    /// loop's timers (rejects with `ClosedError` if the loop closes first).
    ///
    /// # Errors
    ///
    /// `InvalidInputError` for NaN or an infinite delay.
    ///
    /// # Examples
    ///
    /// ```js
    /// await lp.sleep(20);
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn sleep(&self, ms: f64) -> Result<Promise, JsValue> {
        let delay = millis("sleep(ms): ms", ms)?;
        let lp = self.lp.clone();
        let task = lp.create_task(async move {
            crate::sleep(delay).await;
            JsValue::UNDEFINED
        });
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            task.await.map_err(|e| to_js_error(&e))
        }))
    }

    /// `stop()`: the host stops driving the loop once the current turn
    /// ends; queued work stays queued, `start()` resumes, `tick()` still
    /// pumps it.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.stop();          // queued work waits
    /// lp.tick();          // ...unless pumped
    /// lp.start();         // the host drives it again
    /// ```
    pub fn stop(&self) {
        self.lp.stop();
    }

    /// `start()`: resumes the host's driving after `stop()`.
    ///
    /// # Errors
    ///
    /// `ClosedError` on a closed loop.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.stop();
    /// lp.start();
    /// ```
    pub fn start(&self) -> Result<(), JsValue> {
        self.lp.start().map_err(|e| to_js_error(&e))
    }

    /// `close()`: drops every pending callback, timer and task (their
    /// promises reject with `ClosedError`). Idempotent.
    ///
    /// # Errors
    ///
    /// `AlreadyRunningError` from inside one of the loop's own callbacks.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.close();
    /// lp.isClosed();      // true
    /// ```
    pub fn close(&self) -> Result<(), JsValue> {
        self.lp.close().map_err(|e| to_js_error(&e))
    }

    /// `isClosed()`.
    ///
    /// # Examples
    ///
    /// ```js
    /// if (!lp.isClosed()) lp.callSoon(() => {});
    /// ```
    #[wasm_bindgen(js_name = isClosed)]
    pub fn is_closed(&self) -> bool {
        self.lp.is_closed()
    }

    /// `isRunning()`: whether the loop is in one of its turns (true inside
    /// its callbacks).
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.callSoon(() => console.log(lp.isRunning())); // true
    /// ```
    #[wasm_bindgen(js_name = isRunning)]
    pub fn is_running(&self) -> bool {
        self.lp.is_running()
    }

    /// `isStopped()`: whether `stop()` paused the host's driving.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.stop();
    /// lp.isStopped();     // true
    /// ```
    #[wasm_bindgen(js_name = isStopped)]
    pub fn is_stopped(&self) -> bool {
        self.lp.is_stopped()
    }

    /// `isDead()`: whether a panic left the loop unusable (every call then
    /// fails with a `PanickedError` saying so; close it and make a new one).
    ///
    /// # Examples
    ///
    /// ```js
    /// if (lp.isDead()) { lp.close(); lp = newEventLoop(); }
    /// ```
    #[wasm_bindgen(js_name = isDead)]
    pub fn is_dead(&self) -> bool {
        self.lp.is_dead()
    }

    /// `tick()`: runs one turn now (due timers and the work queued so far,
    /// within the tick budget) and returns how many items ran. For hosts
    /// that pump the loop themselves.
    ///
    /// # Errors
    ///
    /// `ClosedError`; `AlreadyRunningError` from inside a turn;
    /// `PanickedError` when something panicked in the turn (the loop
    /// recovered and reported it) or the loop is dead.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.stop();
    /// lp.callSoon(() => {});
    /// lp.tick();          // 1
    /// ```
    pub fn tick(&self) -> Result<u32, JsValue> {
        self.lp
            .run_once()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(|e| to_js_error(&e))
    }

    /// `stats()`: the loop's figures (a `LoopStats`).
    ///
    /// # Examples
    ///
    /// ```js
    /// const { callbacks, timersFired, lateMaxMs, budgetYields } = lp.stats();
    /// ```
    pub fn stats(&self) -> JsLoopStats {
        JsLoopStats::new(self.lp.stats(), self.lp.pending_tasks())
    }

    /// `tickBudget`: how many milliseconds a slice of turns may keep the
    /// host busy before the loop yields to it (default 5).
    ///
    /// # Examples
    ///
    /// ```js
    /// console.log(lp.tickBudget);  // 5
    /// ```
    #[wasm_bindgen(getter, js_name = tickBudget)]
    pub fn tick_budget(&self) -> f64 {
        ms_of(self.lp.tick_budget())
    }

    /// Sets `tickBudget` (milliseconds, more than zero).
    ///
    /// # Errors
    ///
    /// `InvalidInputError` for zero, a negative number, NaN or infinity.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.tickBudget = 8;  // ms per slice before yielding to the host
    /// ```
    #[wasm_bindgen(setter, js_name = tickBudget)]
    pub fn set_tick_budget(&self, ms: f64) -> Result<(), JsValue> {
        if ms <= 0.0 {
            return Err(super::invalid(format!(
                "tickBudget must be more than 0 milliseconds, got {ms}"
            )));
        }
        let budget = millis("tickBudget", ms)?;
        self.lp.set_tick_budget(budget).map_err(|e| to_js_error(&e))
    }

    /// `yieldKind`: how the loop yields to the host (`"setImmediate"` on
    /// Node, `"MessageChannel"` in browsers).
    ///
    /// # Examples
    ///
    /// ```js
    /// console.log(lp.yieldKind);   // 'setImmediate' on Node, 'MessageChannel' in browsers
    /// ```
    #[wasm_bindgen(getter, js_name = yieldKind)]
    pub fn yield_kind(&self) -> String {
        self.lp.yield_kind()
    }

    /// `pendingTasks`: tasks of this loop that have not finished.
    ///
    /// # Examples
    ///
    /// ```js
    /// console.log(lp.pendingTasks);
    /// ```
    #[wasm_bindgen(getter, js_name = pendingTasks)]
    pub fn pending_tasks(&self) -> u32 {
        u32::try_from(self.lp.pending_tasks()).unwrap_or(u32::MAX)
    }

    /// `setExceptionHandler(handler | null)`: `handler(context)` receives
    /// what callbacks and tasks threw or panicked with: `context.message`,
    /// `context.error` (a JS `Error` with `kind`), and `context.thrown` (the
    /// value a JS callback threw, when it was one). `null` restores the
    /// default (`console.error`).
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.setExceptionHandler(({ message, error, thrown }) => console.warn(message, thrown ?? error));
    /// lp.setExceptionHandler(null);  // back to console.error
    /// ```
    #[wasm_bindgen(js_name = setExceptionHandler)]
    pub fn set_exception_handler(
        &self,
        #[wasm_bindgen(
            unchecked_optional_param_type = "(context: { message: string, error?: Error, thrown?: unknown }) => void"
        )]
        handler: Option<Function>,
    ) {
        match handler {
            None => self.lp.clear_exception_handler(),
            Some(f) => self.lp.set_exception_handler(move |lp, ctx| {
                let obj = Object::new();
                let _ = Reflect::set(&obj, &"message".into(), &ctx.message.as_str().into());
                if let Some(e) = &ctx.error {
                    let _ = Reflect::set(&obj, &"error".into(), &to_js_error(e));
                }
                if let Some(t) = THROWN.with(|t| t.borrow().clone()) {
                    let _ = Reflect::set(&obj, &"thrown".into(), &t);
                }
                if let Err(e) = f.call1(&JsValue::UNDEFINED, &obj) {
                    lp.default_exception_handler(
                        &crate::ExceptionContext::new("the JS exception handler threw").with_error(
                            crate::Error::new(
                                crate::ErrorKind::Panicked,
                                super::describe_thrown(&e),
                            ),
                        ),
                    );
                    lp.default_exception_handler(ctx);
                }
            }),
        }
    }

    /// `loopId`: a number identifying the loop while it lives (the same for
    /// every JS object of one loop).
    ///
    /// # Examples
    ///
    /// ```js
    /// const ids = new Set([lp.loopId]);
    /// ```
    #[wasm_bindgen(getter, js_name = loopId)]
    pub fn loop_id(&self) -> u32 {
        u32::from(self.lp.inner.registry_index())
    }

    /// `equals(other)`: whether both objects are the same loop (each
    /// `getEventLoop()` call returns a new JS object).
    ///
    /// # Examples
    ///
    /// ```js
    /// getEventLoop().equals(lp);   // true after setEventLoop(lp)
    /// ```
    pub fn equals(&self, other: &JsEventLoop) -> bool {
        self.lp == other.lp
    }
}

/// Runs a JS callback inside a turn; what it throws goes to the loop's
/// exception handler.
fn run_js_callback(lp: &EventLoop, f: &Function) {
    if let Err(thrown) = call0(f) {
        report_thrown(lp, "Exception in callback", thrown);
    }
}

/// A `callSoon` callback (JS class `Handle`).
///
/// # Examples
///
/// ```js
/// const h = lp.callSoon(() => {});
/// h.cancel();
/// h.cancelled();   // true
/// ```
#[wasm_bindgen(js_name = Handle)]
#[derive(Debug)]
pub struct JsHandle {
    handle: Handle,
}

#[wasm_bindgen(js_class = Handle)]
impl JsHandle {
    /// `cancel()`: the callback will not run (no-op once it ran).
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.callSoon(() => {}).cancel();
    /// ```
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// `cancelled()`.
    ///
    /// # Examples
    ///
    /// ```js
    /// if (!h.cancelled()) h.cancel();
    /// ```
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }
}

/// A `callLater` / `callAt` timer (JS class `TimerHandle`).
///
/// # Examples
///
/// ```js
/// const t = lp.callLater(1000, () => {});
/// t.cancel();
/// ```
#[wasm_bindgen(js_name = TimerHandle)]
#[derive(Debug)]
pub struct JsTimerHandle {
    handle: TimerHandle,
}

#[wasm_bindgen(js_class = TimerHandle)]
impl JsTimerHandle {
    /// `cancel()`: the timer will not fire.
    ///
    /// # Examples
    ///
    /// ```js
    /// lp.callLater(1, () => {}).cancel();
    /// ```
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// `cancelled()`.
    ///
    /// # Examples
    ///
    /// ```js
    /// if (!t.cancelled()) t.cancel();
    /// ```
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// `when`: the deadline in milliseconds on the loop's clock.
    ///
    /// # Examples
    ///
    /// ```js
    /// const t = lp.callLater(10, () => {});
    /// console.log(t.when - lp.time()); // about 10
    /// ```
    #[wasm_bindgen(getter)]
    pub fn when(&self) -> f64 {
        to_nanos(self.handle.when()) as f64 / 1e6
    }
}

/// A loop's figures for JS (`lp.stats()`, class `LoopStats`): counts are
/// numbers, times are milliseconds.
///
/// # Examples
///
/// ```js
/// const s = lp.stats();
/// console.log(s.turns, s.callbacks, s.timersFired, s.budgetYields, s.lateMeanMs);
/// ```
#[wasm_bindgen(js_name = LoopStats)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsLoopStats {
    /// Turns run.
    pub turns: f64,
    /// Ready items run (callbacks, task steps, timer wake-ups).
    pub callbacks: f64,
    /// Timers that came due.
    #[wasm_bindgen(js_name = timersFired)]
    pub timers_fired: f64,
    /// Turns that used up the tick budget and yielded to the host.
    #[wasm_bindgen(js_name = budgetYields)]
    pub budget_yields: f64,
    /// How late (ms) the latest timer batch ran after its deadline.
    #[wasm_bindgen(js_name = lateLastMs)]
    pub late_last_ms: f64,
    /// The worst lateness seen (ms).
    #[wasm_bindgen(js_name = lateMaxMs)]
    pub late_max_ms: f64,
    /// The mean lateness (ms).
    #[wasm_bindgen(js_name = lateMeanMs)]
    pub late_mean_ms: f64,
    /// Panics (traps) the loop contained.
    pub traps: f64,
    /// Unfinished tasks.
    #[wasm_bindgen(js_name = pendingTasks)]
    pub pending_tasks: f64,
}

impl JsLoopStats {
    fn new(s: LoopStats, pending_tasks: usize) -> JsLoopStats {
        JsLoopStats {
            turns: s.turns as f64,
            callbacks: s.callbacks as f64,
            timers_fired: s.timers_fired as f64,
            budget_yields: s.budget_yields as f64,
            late_last_ms: ms_of(s.late_last),
            late_max_ms: ms_of(s.late_max),
            late_mean_ms: ms_of(s.late_mean()),
            traps: s.traps as f64,
            pending_tasks: pending_tasks as f64,
        }
    }
}

#[wasm_bindgen(js_class = LoopStats)]
impl JsLoopStats {
    /// `toJSON()`: a plain object with the same fields (for
    /// `JSON.stringify` and display).
    ///
    /// # Examples
    ///
    /// ```js
    /// console.log(JSON.stringify(lp.stats())); // {"turns":3,"callbacks":12,...}
    /// ```
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> JsValue {
        let o = Object::new();
        for (k, v) in [
            ("turns", self.turns),
            ("callbacks", self.callbacks),
            ("timersFired", self.timers_fired),
            ("budgetYields", self.budget_yields),
            ("lateLastMs", self.late_last_ms),
            ("lateMaxMs", self.late_max_ms),
            ("lateMeanMs", self.late_mean_ms),
            ("traps", self.traps),
            ("pendingTasks", self.pending_tasks),
        ] {
            let _ = Reflect::set(&o, &k.into(), &v.into());
        }
        o.into()
    }
}
