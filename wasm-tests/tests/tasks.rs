//! Tasks, cancellation, errors and Promise interop on wasm32.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};
use aioloop_wasm_tests::{host_sleep, prop_str, wait_until, Log};
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
async fn tasks_run_and_return_their_output() {
    let lp = EventLoop::new().unwrap();
    let a = lp.create_task(async {
        aioloop::sleep(Duration::from_millis(3)).await;
        "slow"
    });
    let b = lp.create_task(async {
        aioloop::yield_now().await;
        "fast"
    });
    assert_eq!(b.await.unwrap(), "fast");
    assert_eq!(a.await.unwrap(), "slow");
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn cancellation_before_start_and_while_sleeping() {
    let lp = EventLoop::new().unwrap();
    let never = lp.create_task(async { unreachable!("cancelled before it started") });
    assert!(never.cancel());
    assert!(never.await.unwrap_err().is_cancelled());

    let log = Log::new();
    let l = log.clone();
    let sleeper = lp.create_task(async move {
        aioloop::sleep(Duration::from_secs(3600)).await;
        l.push("woke");
    });
    host_sleep(2.0).await;
    assert!(sleeper.cancel());
    let e = sleeper.await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert!(log.is_empty());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn timeout_expires_and_yields_timed_out() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async {
        aioloop::timeout(Duration::from_millis(2), std::future::pending::<()>()).await
    });
    assert_eq!(t.await.unwrap().unwrap_err().kind(), ErrorKind::TimedOut);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn close_ends_pending_tasks_and_later_calls_fail_with_closed() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(aioloop::sleep(Duration::from_secs(3600)));
    host_sleep(1.0).await;
    lp.close().unwrap();
    assert_eq!(t.await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(lp.call_soon(|| {}).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        lp.call_later(Duration::from_millis(1), || {})
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
    assert_eq!(lp.run_once().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(lp.start().unwrap_err().kind(), ErrorKind::Closed);
    let late = lp.create_task(async { 1 });
    assert_eq!(late.await.unwrap_err().kind(), ErrorKind::Closed);
    lp.close().unwrap(); // idempotent
}

#[wasm_bindgen_test]
async fn nested_turns_and_closing_from_inside_are_refused() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        l.push(lp2.run_once().unwrap_err().kind());
        l.push(lp2.close().unwrap_err().kind());
    })
    .unwrap();
    assert!(wait_until(2000.0, || log.len() == 2).await);
    assert_eq!(
        log.get(),
        [ErrorKind::AlreadyRunning, ErrorKind::AlreadyRunning]
    );
    assert!(!lp.is_closed());
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_task_awaits_a_js_promise() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async {
        // A promise the host resolves from its own timer, 3 ms from now.
        let p = Promise::new(&mut |resolve, _| {
            let st: js_sys::Function =
                js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
                    .unwrap()
                    .unchecked_into();
            st.call3(
                &JsValue::UNDEFINED,
                &resolve,
                &JsValue::from(3),
                &JsValue::from(21),
            )
            .unwrap();
        });
        let v = JsFuture::from(p).await.unwrap();
        // Back on the loop, in a turn: the running loop is known again.
        assert!(aioloop::get_running_loop().is_ok());
        v.as_f64().unwrap() * 2.0
    });
    assert_eq!(t.await.unwrap(), 42.0);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_task_becomes_a_promise() {
    let lp = EventLoop::new().unwrap();
    let p = lp
        .create_task(async {
            aioloop::sleep(Duration::from_millis(1)).await;
            7u32
        })
        .into_promise();
    assert_eq!(JsFuture::from(p).await.unwrap().as_f64(), Some(7.0));

    let t = lp.create_task(async {
        aioloop::sleep(Duration::from_secs(3600)).await;
        0u32
    });
    t.cancel();
    let e = JsFuture::from(t.into_promise()).await.unwrap_err();
    assert_eq!(prop_str(&e, "name"), "CancelledError");
    assert_eq!(prop_str(&e, "kind"), "Cancelled");
    lp.close().unwrap();
}
