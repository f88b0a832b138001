//! The JS API (`aioloop::js`, what the npm package exports), driven with
//! real JS functions.
#![cfg(target_arch = "wasm32")]

use aioloop::js::{self, JsEventLoop, JsEventLoopPolicy};
use aioloop_wasm_tests::{js_eval, prop_f64, prop_str, wait_until, PolicyReset};
use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

/// A fresh `globalThis.log` array and a function that reads it.
fn fresh_log() -> impl Fn() -> Vec<JsValue> {
    js_eval("globalThis.log = [];");
    || {
        let a: Array = js_eval("return globalThis.log;").unchecked_into();
        a.iter().collect()
    }
}

fn f(body: &str) -> Function {
    Function::new_no_args(body)
}

fn strings(v: Vec<JsValue>) -> Vec<String> {
    v.into_iter()
        .map(|v| v.as_string().unwrap_or_default())
        .collect()
}

#[wasm_bindgen_test]
async fn call_soon_call_later_call_at_in_order() {
    let log = fresh_log();
    let lp = JsEventLoop::new().unwrap();
    lp.call_later(20.0, f("log.push('later20')")).unwrap();
    lp.call_at(lp.time() + 2.0, f("log.push('at2')")).unwrap();
    lp.call_soon(f("log.push('soon1')")).unwrap();
    lp.call_soon(f("log.push('soon2')")).unwrap();
    lp.call_later(-5.0, f("log.push('negative is zero')"))
        .unwrap();
    let h = lp.call_soon(f("log.push('cancelled')")).unwrap();
    h.cancel();
    assert!(h.cancelled());
    assert!(wait_until(2000.0, || log().len() == 5).await);
    assert_eq!(
        strings(log()),
        ["soon1", "soon2", "negative is zero", "at2", "later20"]
    );
    let s = lp.stats();
    assert_eq!(s.timers_fired, 3.0);
    assert!(s.callbacks >= 5.0);
    let json = s.to_json();
    assert_eq!(prop_f64(&json, "timersFired"), 3.0);
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[wasm_bindgen_test]
async fn failures_are_js_errors_with_name_and_kind() {
    let _reset = PolicyReset;
    let e = js::get_event_loop().unwrap_err();
    assert_eq!(prop_str(&e, "name"), "NoCurrentLoopError");
    assert_eq!(prop_str(&e, "kind"), "NoCurrentLoop");
    assert!(e.is_instance_of::<js_sys::Error>());
    let e = js::get_running_loop().unwrap_err();
    assert_eq!(prop_str(&e, "kind"), "NoRunningLoop");

    let lp = JsEventLoop::new().unwrap();
    let e = lp.call_later(f64::NAN, f("")).unwrap_err();
    assert_eq!(prop_str(&e, "name"), "InvalidInputError");
    assert!(prop_str(&e, "message").contains("finite"));
    assert_eq!(
        prop_str(&lp.set_tick_budget(0.0).unwrap_err(), "kind"),
        "InvalidInput"
    );
    let e = js::js_set_event_loop(js_eval("return {};")).unwrap_err();
    assert_eq!(prop_str(&e, "kind"), "InvalidInput");
    let e = js::with_context(1.5, &f("")).unwrap_err();
    assert_eq!(prop_str(&e, "kind"), "InvalidInput");
    lp.close().unwrap();
    let e = lp.call_soon(f("")).unwrap_err();
    assert_eq!(prop_str(&e, "name"), "ClosedError");
    assert_eq!(prop_str(&lp.tick().unwrap_err(), "kind"), "Closed");
}

#[wasm_bindgen_test]
async fn create_task_awaits_async_functions_and_is_thenable() {
    let lp = JsEventLoop::new().unwrap();
    js_eval("globalThis.theLoop = null;");
    let t = lp.create_task(f(
        "return (async () => { await new Promise(r => setTimeout(r, 2)); return 40 + 2; })()",
    ));
    assert_eq!(
        JsFuture::from(t.promise()).await.unwrap().as_f64(),
        Some(42.0)
    );
    assert!(t.done());
    // `then` makes `await task` work in JS.
    let t = lp.create_task(f("return 'plain value'"));
    let p = t.then(Some(f("return 'seen';")), None);
    let v = JsFuture::from(p).await.unwrap();
    assert_eq!(v.as_string().unwrap(), "seen");
    // A rejection comes back as the very value thrown.
    let t = lp.create_task(f("return (async () => { throw new TypeError('bad'); })()"));
    let e = JsFuture::from(t.promise()).await.unwrap_err();
    assert_eq!(prop_str(&e, "name"), "TypeError");
    assert_eq!(prop_str(&e, "message"), "bad");
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn cancelled_and_closed_tasks_reject_with_their_kind() {
    let lp = JsEventLoop::new().unwrap();
    let t = lp.create_task(f("return new Promise(() => {})"));
    assert!(t.cancel());
    let e = JsFuture::from(t.promise()).await.unwrap_err();
    assert_eq!(prop_str(&e, "name"), "CancelledError");
    assert!(!t.cancel(), "already done");
    let t = lp.create_task(f("return new Promise(() => {})"));
    let p = t.promise();
    aioloop_wasm_tests::host_sleep(1.0).await;
    lp.close().unwrap();
    let e = JsFuture::from(p).await.unwrap_err();
    assert_eq!(prop_str(&e, "kind"), "Closed");
}

#[wasm_bindgen_test]
async fn a_throwing_callback_goes_to_the_exception_handler_and_the_loop_goes_on() {
    let log = fresh_log();
    let lp = JsEventLoop::new().unwrap();
    lp.set_exception_handler(Some(Function::new_with_args(
        "ctx",
        "log.push(ctx.message); log.push(ctx.error.kind); log.push(ctx.thrown.message);",
    )));
    lp.call_soon(f("throw new Error('oops')")).unwrap();
    lp.call_soon(f("log.push('next')")).unwrap();
    // A failed task nobody awaits is reported, not an unhandled rejection.
    lp.create_task(f("throw new Error('unobserved')"));
    assert!(wait_until(2000.0, || log().len() == 7).await, "{:?}", log());
    assert_eq!(
        strings(log()),
        [
            "Exception in callback",
            "Panicked",
            "oops",
            "next",
            "Task exception was never retrieved",
            "Panicked",
            "unobserved"
        ]
    );
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn host_context_policy_keys_loops_by_with_context_ids() {
    let _reset = PolicyReset;
    js::set_event_loop_policy(JsEventLoopPolicy::host_context().into()).unwrap();
    assert_eq!(js::get_event_loop_policy().kind(), "hostContext");
    // Outside withContext: NoContext.
    assert_eq!(
        prop_str(&js::get_event_loop().unwrap_err(), "kind"),
        "NoContext"
    );
    for id in [1.0, 2.0] {
        let make = Closure::<dyn Fn() -> Result<(), JsValue>>::new(|| {
            js::js_set_event_loop(js::new_event_loop()?.into())
        });
        js::with_context(id, make.as_ref().unchecked_ref()).unwrap();
    }
    let get = Closure::<dyn Fn() -> Result<JsValue, JsValue>>::new(|| {
        let lp = js::get_event_loop()?;
        Ok(JsValue::from(lp.loop_id()))
    });
    let get: &Function = get.as_ref().unchecked_ref();
    let a = js::with_context(1.0, get).unwrap();
    let b = js::with_context(2.0, get).unwrap();
    assert_ne!(a, b);
    assert_eq!(a, js::with_context(1.0, get).unwrap());
    assert_eq!(js::js_current_context(), None);
    // Restoring the default policy: the ids' loops stay with the old one.
    js::set_event_loop_policy(JsValue::NULL).unwrap();
    assert_eq!(js::get_event_loop_policy().kind(), "default");
}

#[wasm_bindgen_test]
async fn default_policy_set_and_get_through_js() {
    let _reset = PolicyReset;
    let lp = js::new_event_loop().unwrap();
    js::js_set_event_loop(lp.clone().into()).unwrap();
    assert!(js::get_event_loop().unwrap().equals(&lp));
    let p = js::get_event_loop_policy();
    assert!(p.get_event_loop().unwrap().equals(&lp));
    assert!(p.equals(&js::get_event_loop_policy()));
    js::js_set_event_loop(JsValue::NULL).unwrap();
    assert!(js::get_event_loop().is_err());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn sleep_tick_and_stop_from_js() {
    let lp = JsEventLoop::new().unwrap();
    let t0 = lp.time();
    JsFuture::from(lp.sleep(3.0).unwrap()).await.unwrap();
    assert!(lp.time() - t0 >= 3.0);
    lp.stop();
    assert!(lp.is_stopped());
    js_eval("globalThis.count = 0;");
    for _ in 0..3 {
        lp.call_soon(f("count++")).unwrap();
    }
    assert_eq!(lp.tick().unwrap(), 3);
    assert_eq!(js_eval("return count;").as_f64(), Some(3.0));
    lp.start().unwrap();
    assert!(!lp.is_dead());
    assert!(!lp.yield_kind().is_empty());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn cancel_aborts_the_signal_the_task_function_receives() {
    js_eval("globalThis.sig = undefined;");
    let lp = JsEventLoop::new().unwrap();
    let t = lp.create_task(Function::new_with_args(
        "signal",
        "globalThis.sig = signal; return new Promise(() => {});",
    ));
    assert!(wait_until(2000.0, || !js_eval("return globalThis.sig;").is_undefined()).await);
    assert_eq!(js_eval("return sig.aborted;").as_bool(), Some(false));
    t.cancel();
    let e = JsFuture::from(t.promise()).await.unwrap_err();
    assert_eq!(prop_str(&e, "name"), "CancelledError");
    assert_eq!(js_eval("return sig.aborted;").as_bool(), Some(true));
    assert_eq!(
        js_eval("return sig.reason.kind;").as_string().unwrap(),
        "Cancelled"
    );
    lp.close().unwrap();
}
