//! Callback FIFO order, turn discipline, timer order and lateness, and the
//! host resources a loop uses (one microtask per batch, one host timeout).
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use aioloop::EventLoop;
use aioloop_wasm_tests::{host_sleep, js_eval, microtask, wait_until, Log};
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
async fn call_soon_is_fifo() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    for i in 0..1000 {
        let l = log.clone();
        lp.call_soon(move || l.push(i)).unwrap();
    }
    assert!(wait_until(2000.0, || log.len() == 1000).await);
    assert_eq!(log.get(), (0..1000).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_turn_runs_only_what_was_queued_before_it_began() {
    let lp = EventLoop::new().unwrap();
    lp.stop(); // pump by hand to see each turn
    let log = Log::new();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        l.push("a");
        let l2 = l.clone();
        lp2.call_soon(move || l2.push("c")).unwrap();
    })
    .unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push("b")).unwrap();
    assert_eq!(lp.run_once().unwrap(), 2);
    assert_eq!(log.get(), ["a", "b"]);
    assert_eq!(lp.run_once().unwrap(), 1);
    assert_eq!(log.get(), ["a", "b", "c"]);
    assert_eq!(lp.stats().turns, 2);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn the_host_drives_a_batch_in_one_microtask() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    for i in 0..10 {
        let l = log.clone();
        lp.call_soon(move || l.push(i)).unwrap();
    }
    // Nothing runs synchronously: the host runs the batch in a microtask.
    assert!(log.is_empty());
    microtask().await;
    host_sleep(0.0).await;
    assert_eq!(log.len(), 10);
    assert_eq!(lp.stats().turns, 1, "ten callbacks, one turn");
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn timers_fire_in_deadline_order_ties_in_scheduling_order_never_early() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let early = Log::new();
    // Deadlines from one base instant, so that equal delays are real ties
    // (call_later's "now" moves between calls).
    let base = lp.time();
    let delays = [7u64, 1, 4, 4, 0, 12, 4, 2];
    for (i, d) in delays.iter().enumerate() {
        let (l, e, lp2) = (log.clone(), early.clone(), lp.clone());
        let when = base + Duration::from_millis(*d);
        lp.call_at(when, move || {
            e.push(lp2.time() < when);
            l.push(i);
        })
        .unwrap();
    }
    // call_later: never before now + delay either.
    let (e, lp2) = (early.clone(), lp.clone());
    let h = lp
        .call_later(Duration::from_millis(3), move || e.push(false))
        .unwrap();
    let when = h.when();
    let (e2, lp3) = (early.clone(), lp.clone());
    lp.call_at(when, move || e2.push(lp3.time() < when))
        .unwrap();
    assert!(wait_until(3000.0, || log.len() == delays.len()).await);
    assert!(wait_until(3000.0, || early.len() == delays.len() + 2).await);
    let mut expected: Vec<usize> = (0..delays.len()).collect();
    expected.sort_by_key(|&i| delays[i]); // stable: ties keep scheduling order
    assert_eq!(log.get(), expected);
    assert!(
        early.get().iter().all(|e| !e),
        "a timer fired before its deadline"
    );
    assert_eq!(lp.stats().timers_fired, delays.len() as u64 + 2);
    drop(lp2);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn timer_lateness_is_small_and_measured() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    for i in 0..20u64 {
        let l = log.clone();
        lp.call_later(Duration::from_millis(2 + i), move || l.push(i))
            .unwrap();
    }
    assert!(wait_until(3000.0, || log.len() == 20).await);
    let s = lp.stats();
    assert!(s.late_samples >= 1);
    assert!(s.late_max >= s.late_last);
    // Generous for shared CI machines: hosts fire timers within a few ms.
    assert!(
        s.late_max < Duration::from_millis(100),
        "late by {:?}",
        s.late_max
    );
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn all_timers_share_one_host_timeout() {
    // Count setTimeout calls by wrapping the host's own.
    js_eval(
        "globalThis.__aioloopTimeouts = 0;
         if (!globalThis.__aioloopRealSetTimeout) {
             globalThis.__aioloopRealSetTimeout = globalThis.setTimeout;
             globalThis.setTimeout = function (...args) {
                 globalThis.__aioloopTimeouts++;
                 return globalThis.__aioloopRealSetTimeout.apply(this, args);
             };
         }",
    );
    let count = || {
        js_sys::Reflect::get(&js_sys::global(), &"__aioloopTimeouts".into())
            .unwrap()
            .as_f64()
            .unwrap()
    };
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    for i in 0..200u64 {
        let l = log.clone();
        lp.call_later(Duration::from_millis(50 + i % 7), move || l.push(i))
            .unwrap();
    }
    // One turn (a microtask) arms one host timeout for all 200.
    microtask().await;
    microtask().await;
    assert_eq!(count(), 1.0, "200 timers, one host setTimeout");
    // An earlier timer re-arms it once; a later one does not.
    lp.call_later(Duration::from_millis(10), || {}).unwrap();
    lp.call_later(Duration::from_millis(500), || {}).unwrap();
    microtask().await;
    microtask().await;
    assert_eq!(count(), 2.0);
    assert!(wait_until(3000.0, || log.len() == 200).await);
    // Seven distinct deadlines (plus the 10 ms one): a handful of host
    // timeouts, not one per timer.
    assert!(count() <= 12.0, "{} host timeouts", count());
    lp.close().unwrap();
    js_eval("globalThis.setTimeout = globalThis.__aioloopRealSetTimeout; delete globalThis.__aioloopRealSetTimeout;");
}

#[wasm_bindgen_test]
async fn cancelled_handles_never_run() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    let h = lp.call_soon(move || l.push("soon")).unwrap();
    let l = log.clone();
    let t = lp
        .call_later(Duration::from_millis(1), move || l.push("later"))
        .unwrap();
    h.cancel();
    t.cancel();
    let l = log.clone();
    lp.call_later(Duration::from_millis(3), move || l.push("kept"))
        .unwrap();
    assert!(wait_until(2000.0, || log.len() == 1).await);
    host_sleep(5.0).await;
    assert_eq!(log.get(), ["kept"]);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_loop_dropped_with_work_pending_leaves_nothing_behind() {
    // Dropped (not closed) with a microtask, a timer and a task queued: the
    // host callback already queued finds the loop gone and does nothing,
    // the host timeout is cleared, nothing throws (the JS guard would log
    // to console.error).
    js_eval(
        "globalThis.__errors = 0; globalThis.__realError = console.error;
         console.error = (...a) => { globalThis.__errors++; globalThis.__realError(...a); };",
    );
    for _ in 0..20 {
        let lp = EventLoop::new().unwrap();
        lp.call_soon(|| {}).unwrap();
        lp.call_later(Duration::from_millis(1), || panic!("ran after drop"))
            .unwrap();
        drop(lp);
    }
    host_sleep(5.0).await;
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    lp.call_soon(move || l.push(1)).unwrap();
    assert!(wait_until(1000.0, || log.len() == 1).await);
    lp.close().unwrap();
    let errors = js_eval("console.error = globalThis.__realError; return globalThis.__errors;");
    assert_eq!(errors.as_f64(), Some(0.0));
}
