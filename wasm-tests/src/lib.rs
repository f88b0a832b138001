//! Helpers shared by aioloop's wasm32 test suites (`tests/*.rs`).
//!
//! The suites run under wasm-bindgen-test in Node (`cargo test --target
//! wasm32-unknown-unknown -p aioloop-wasm-tests`) and in headless Chromium
//! (the same with `WASM_BINDGEN_USE_BROWSER=1` and `CHROMEDRIVER` set; see
//! `scripts/test.sh`). Natively this crate is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Waits `ms` milliseconds on the host's own `setTimeout` (not aioloop's
/// timers), so tests can let a host-driven loop work by itself.
pub async fn host_sleep(ms: f64) {
    let p = Promise::new(&mut |resolve, _| {
        // A test that wraps setTimeout to count aioloop's calls keeps the
        // real one here.
        let global = js_sys::global();
        let real = Reflect::get(&global, &"__aioloopRealSetTimeout".into()).unwrap();
        let set_timeout: Function = if real.is_function() {
            real.unchecked_into()
        } else {
            Reflect::get(&global, &"setTimeout".into())
                .unwrap()
                .unchecked_into()
        };
        set_timeout
            .call2(&JsValue::UNDEFINED, &resolve, &JsValue::from_f64(ms))
            .unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// Waits until `cond()` holds, polling every millisecond on the host, for at
/// most `max_ms`. Returns whether it held.
pub async fn wait_until(max_ms: f64, mut cond: impl FnMut() -> bool) -> bool {
    let start = now_ms();
    while !cond() {
        if now_ms() - start > max_ms {
            return false;
        }
        host_sleep(1.0).await;
    }
    true
}

/// `performance.now()`.
pub fn now_ms() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).unwrap();
    let now: Function = Reflect::get(&perf, &"now".into()).unwrap().unchecked_into();
    now.call0(&perf).unwrap().as_f64().unwrap()
}

/// Busy-waits `us` microseconds (a callback that costs real time).
pub fn spin_us(us: f64) {
    let end = now_ms() + us / 1000.0;
    while now_ms() < end {}
}

/// A shared log of what ran, in order.
#[derive(Clone, Default, Debug)]
pub struct Log<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Log<T> {
    /// An empty log.
    pub fn new() -> Self {
        Log(Rc::new(RefCell::new(Vec::new())))
    }
    /// Appends `v`.
    pub fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }
    /// A copy of the entries.
    pub fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }
    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

/// Evaluates a JS function body (`new Function(body)`) and calls it.
pub fn js_eval(body: &str) -> JsValue {
    Function::new_no_args(body)
        .call0(&JsValue::UNDEFINED)
        .unwrap()
}

/// A JS property as a string (`""` when missing).
pub fn prop_str(v: &JsValue, name: &str) -> String {
    Reflect::get(v, &name.into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// A JS property as a number (NaN when missing).
pub fn prop_f64(v: &JsValue, name: &str) -> f64 {
    Reflect::get(v, &name.into())
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN)
}

/// Restores the default policy when dropped (tests share one process).
#[derive(Debug)]
pub struct PolicyReset;

impl Drop for PolicyReset {
    fn drop(&mut self) {
        let _ = aioloop::set_event_loop(None);
        aioloop::set_event_loop_policy(None);
    }
}

/// Lets pending microtasks run once (awaits a resolved promise).
pub async fn microtask() {
    let zero = JsValue::from(0);
    JsFuture::from(Promise::resolve(&zero)).await.unwrap();
}
