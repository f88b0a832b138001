//! The JS API: aioloop for JavaScript, through wasm-bindgen (wasm32 with the
//! `js` feature; `scripts/build-wasm.sh` builds the npm package).
//!
//! The names are asyncio's in camelCase; times are **milliseconds** (JS's
//! unit) on the loop's clock ([`EventLoop.time()`](JsEventLoop::time),
//! `performance.now()`-like).
//!
//! ```js
//! import init, { newEventLoop, setEventLoop, getEventLoop, withContext,
//!                EventLoopPolicy, setEventLoopPolicy } from 'aioloop';
//! await init();                                   // web target only
//!
//! const lp = newEventLoop();
//! lp.callSoon(() => console.log('soon'));
//! lp.callLater(10, () => console.log('10 ms later'));
//! const task = lp.createTask(async () => { await lp.sleep(5); return 42; });
//! console.log(await task);                        // 42 (a Task is awaitable)
//! console.log(lp.stats().callbacks);              // the loop's figures
//!
//! // One loop per host context (a panel, a worker, a request...):
//! setEventLoopPolicy(EventLoopPolicy.hostContext());
//! withContext(1, () => setEventLoop(newEventLoop()));
//! withContext(1, () => getEventLoop().callSoon(() => {}));
//! ```
//!
//! | JS | Rust |
//! |---|---|
//! | `new EventLoop()`, `newEventLoop()` | [`EventLoop::new`](crate::EventLoop::new), [`new_event_loop`](crate::new_event_loop) |
//! | `lp.callSoon(fn)` → `Handle` | [`call_soon`](crate::EventLoop::call_soon) |
//! | `lp.callLater(ms, fn)`, `lp.callAt(ms, fn)` → `TimerHandle` | [`call_later`](crate::EventLoop::call_later), [`call_at`](crate::EventLoop::call_at) |
//! | `lp.createTask(asyncFn)` → `Task` (thenable) | [`create_task`](crate::EventLoop::create_task) |
//! | `lp.sleep(ms)` → `Promise` | [`EventLoop::sleep`](crate::EventLoop::sleep) |
//! | `lp.stop()`, `lp.start()`, `lp.close()`, `lp.tick()` | [`stop`](crate::EventLoop::stop), [`start`](crate::EventLoop::start), [`close`](crate::EventLoop::close), [`run_once`](crate::EventLoop::run_once) |
//! | `lp.stats()` → `LoopStats` | [`stats`](crate::EventLoop::stats) |
//! | `getEventLoop()`, `setEventLoop(lp)`, `getRunningLoop()` | the same names |
//! | `getEventLoopPolicy()`, `setEventLoopPolicy(p)`, `EventLoopPolicy.hostContext()` | the same names, [`ContextPolicy`](crate::ContextPolicy) |
//! | `withContext(id, fn)` | [`enter_host_context`](crate::enter_host_context) |
//!
//! The examples of exported items are JavaScript, what the package's users
//! write (they also land in the generated `aioloop.d.ts`); Rust code on
//! wasm32 can call the same functions (`wasm-tests/tests/js_api.rs` does).
//!
//! Every failure is a JS `Error` whose `name` is the kind followed by
//! `Error` (`"ClosedError"`, `"NoCurrentLoopError"`, `"CancelledError"`…)
//! and whose `kind` is the [`ErrorKind`] name
//! (`"Closed"`, `"NoCurrentLoop"`, `"Cancelled"`…).
//!
//! A JS callback that throws does not stop the loop: the error goes to the
//! loop's exception handler (`setExceptionHandler`, default `console.error`).
//! In JS, the task context of a task is entered while its function runs
//! synchronously, up to its first `await` (JS has no way to carry it across
//! an `await`); Rust tasks keep theirs throughout.

mod event_loop;
mod policy;
mod task;

pub use event_loop::{JsEventLoop, JsHandle, JsLoopStats, JsTimerHandle};
pub use policy::{
    get_event_loop, get_event_loop_policy, get_running_loop, js_current_context, js_set_event_loop,
    new_event_loop, set_event_loop_policy, with_context, JsEventLoopPolicy,
};
pub use task::JsTask;

use std::cell::RefCell;

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

use crate::{Error, ErrorKind};

/// An aioloop [`Error`] as a JS `Error`: `name` is `"<Kind>Error"`, `kind` is
/// the [`ErrorKind`] name (the same as `JsValue::from(err)`).
///
/// # Examples
///
/// ```
/// # #[cfg(all(target_arch = "wasm32", feature = "js"))] {
/// let e = aioloop::js::to_js_error(&aioloop::Error::new(aioloop::ErrorKind::Closed, "closed"));
/// let name = js_sys::Reflect::get(&e, &"name".into()).unwrap();
/// assert_eq!(name.as_string().unwrap(), "ClosedError");
/// # }
/// ```
pub fn to_js_error(err: &Error) -> JsValue {
    JsValue::from(err.clone())
}

fn invalid(message: String) -> JsValue {
    to_js_error(&Error::new(ErrorKind::InvalidInput, message))
}

/// A JS number of milliseconds as a [`Duration`](std::time::Duration):
/// negative means zero (as `setTimeout` and asyncio do); NaN and infinities
/// are refused.
fn millis(what: &str, ms: f64) -> Result<std::time::Duration, JsValue> {
    if !ms.is_finite() {
        return Err(invalid(format!(
            "{what} must be a finite number of milliseconds, got {ms}"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(ms.max(0.0) / 1000.0))
}

/// What JS threw, as text for an [`Error`] message (with its stack when it
/// has one).
fn describe_thrown(thrown: &JsValue) -> String {
    if let Some(e) = thrown.dyn_ref::<js_sys::Error>() {
        let stack = Reflect::get(e, &JsValue::from_str("stack"))
            .ok()
            .and_then(|s| s.as_string());
        return stack.unwrap_or_else(|| String::from(e.to_string()));
    }
    thrown.as_string().unwrap_or_else(|| format!("{thrown:?}"))
}

thread_local! {
    /// The value a JS callback threw, handed to a JS exception handler that
    /// runs right after (see `report_thrown`).
    static THROWN: RefCell<Option<JsValue>> = const { RefCell::new(None) };
}

/// Reports a value a JS callback or task threw to the running loop's
/// exception handler (JS handlers receive the value itself as `thrown`).
fn report_thrown(lp: &crate::EventLoop, message: &str, thrown: JsValue) {
    let err = Error::new(
        ErrorKind::Panicked,
        format!("{message}: {}", describe_thrown(&thrown)),
    );
    THROWN.with(|t| *t.borrow_mut() = Some(thrown));
    lp.call_exception_handler(&crate::ExceptionContext::new(message).with_error(err));
    THROWN.with(|t| t.borrow_mut().take());
}

/// Calls a JS function with no `this`; `Err` is what it threw.
fn call0(f: &Function) -> Result<JsValue, JsValue> {
    f.call0(&JsValue::UNDEFINED)
}
