//! Budgeted turns: a long burst of work yields to the host, so pages keep
//! painting and host events (timers, I/O) keep flowing.
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};
use aioloop_wasm_tests::{host_sleep, spin_us, wait_until, Log};
use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

/// Schedules `f` on the host's `setTimeout(f, 0)` (a macrotask).
fn host_timeout0(f: impl FnOnce() + 'static) {
    let cb = Closure::once_into_js(f);
    let st: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
        .unwrap()
        .unchecked_into();
    st.call2(&JsValue::UNDEFINED, &cb, &JsValue::from(0))
        .unwrap();
}

#[wasm_bindgen_test]
async fn a_long_burst_of_callbacks_yields_to_the_host() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.tick_budget(), aioloop::DEFAULT_TICK_BUDGET);
    let n = 400; // 400 x 50 µs = 20 ms of work, four 5 ms slices at least
    let ran = Rc::new(Cell::new(0usize));
    let log = Log::new();
    for i in 0..n {
        let (ran, log) = (ran.clone(), log.clone());
        lp.call_soon(move || {
            spin_us(50.0);
            log.push(i);
            ran.set(ran.get() + 1);
        })
        .unwrap();
    }
    // A host macrotask queued now must get its turn in the middle of the
    // burst, not after it.
    let seen_by_host = Rc::new(Cell::new(usize::MAX));
    let (s, r) = (seen_by_host.clone(), ran.clone());
    host_timeout0(move || s.set(r.get()));
    assert!(wait_until(5000.0, || ran.get() == n).await);
    let at = seen_by_host.get();
    assert!(at > 0 && at < n, "the host ran after {at} of {n} callbacks");
    let s = lp.stats();
    assert!(s.budget_yields >= 2, "{s:?}");
    assert_eq!(s.callbacks, n as u64);
    // FIFO survives the yields.
    assert_eq!(log.get(), (0..n).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_self_rescheduling_chain_does_not_starve_the_host() {
    let lp = EventLoop::new().unwrap();
    lp.set_tick_budget(Duration::from_millis(2)).unwrap();
    let count = Rc::new(Cell::new(0u32));
    fn step(lp: EventLoop, count: Rc<Cell<u32>>) {
        spin_us(20.0);
        count.set(count.get() + 1);
        if count.get() < 1500 {
            let lp2 = lp.clone();
            lp.call_soon(move || step(lp2, count)).unwrap();
        }
    }
    let (l, c) = (lp.clone(), count.clone());
    lp.call_soon(move || step(l, c)).unwrap();
    // Host timers keep firing while the chain (30 ms of work) runs.
    let fired = Rc::new(Cell::new(0u32));
    let start = count.get();
    for _ in 0..3 {
        host_sleep(1.0).await;
        fired.set(fired.get() + 1);
    }
    assert!(
        count.get() - start < 1500,
        "the chain finished before the host got a turn"
    );
    assert!(wait_until(5000.0, || count.get() == 1500).await);
    assert!(lp.stats().budget_yields >= 3, "{:?}", lp.stats());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
fn run_once_is_budgeted_too_and_the_rest_stays_queued_in_order() {
    let lp = EventLoop::new().unwrap();
    lp.stop();
    lp.set_tick_budget(Duration::from_millis(1)).unwrap();
    let log = Log::new();
    for i in 0..200 {
        let l = log.clone();
        lp.call_soon(move || {
            spin_us(30.0);
            l.push(i);
        })
        .unwrap();
    }
    let first = lp.run_once().unwrap();
    assert!(first < 200, "a 6 ms batch ran in one 1 ms turn");
    let mut total = first;
    while total < 200 {
        total += lp.run_once().unwrap();
    }
    assert_eq!(log.get(), (0..200).collect::<Vec<_>>());
    let e = lp.set_tick_budget(Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn stop_pauses_the_host_and_start_resumes() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    lp.stop();
    assert!(lp.is_stopped());
    let l = log.clone();
    lp.call_soon(move || l.push("soon")).unwrap();
    let l = log.clone();
    lp.call_later(Duration::from_millis(1), move || l.push("timer"))
        .unwrap();
    host_sleep(10.0).await;
    assert!(log.is_empty(), "a stopped loop ran: {:?}", log.get());
    lp.start().unwrap();
    assert!(wait_until(2000.0, || log.len() == 2).await);
    assert_eq!(log.get(), ["soon", "timer"]);
    // stop() from inside a turn: the turn finishes, then the host stops.
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        lp2.stop();
        l.push("stopping");
    })
    .unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("same turn")).unwrap();
    assert!(wait_until(2000.0, || log.len() == 4).await);
    let l = log.clone();
    lp.call_soon(move || l.push("after stop")).unwrap();
    host_sleep(5.0).await;
    assert_eq!(log.len(), 4);
    assert_eq!(
        lp.run_once().unwrap(),
        1,
        "a stopped loop can still be pumped"
    );
    lp.close().unwrap();
}
