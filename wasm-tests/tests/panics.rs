//! Panics are traps on wasm32: the loop contains them and keeps going.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};
use aioloop_wasm_tests::{wait_until, Log};
use wasm_bindgen_test::*;

/// What the exception handler saw: (message, error kind, error message).
type Seen = Rc<RefCell<Vec<(String, Option<ErrorKind>, String)>>>;

fn handler_log(lp: &EventLoop) -> Seen {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(move |_, ctx| {
        s.borrow_mut().push((
            ctx.message.clone(),
            ctx.error.as_ref().map(|e| e.kind()),
            ctx.error
                .as_ref()
                .map(|e| e.message().to_string())
                .unwrap_or_default(),
        ));
    });
    seen
}

#[wasm_bindgen_test]
async fn a_panicking_callback_is_reported_and_the_loop_goes_on() {
    let lp = EventLoop::new().unwrap();
    let seen = handler_log(&lp);
    let log = Log::new();
    let l = log.clone();
    lp.call_soon(move || l.push(1)).unwrap();
    lp.call_soon(|| panic!("boom in a callback")).unwrap();
    let l = log.clone();
    lp.call_soon(move || l.push(3)).unwrap();
    let l = log.clone();
    lp.call_later(Duration::from_millis(2), move || l.push(4))
        .unwrap();
    assert!(
        wait_until(2000.0, || log.len() == 3).await,
        "log: {:?}",
        log.get()
    );
    assert_eq!(log.get(), [1, 3, 4]);
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].1, Some(ErrorKind::Panicked));
        assert!(seen[0].2.contains("boom in a callback"), "{seen:?}");
    }
    assert_eq!(lp.stats().traps, 1);
    assert!(!lp.is_dead());
    // Still fully usable, many times over (the stack pointer is restored).
    for i in 0..50 {
        lp.call_soon(move || panic!("again {i}")).unwrap();
    }
    let l = log.clone();
    lp.call_soon(move || l.push(5)).unwrap();
    assert!(wait_until(2000.0, || log.len() == 4).await);
    assert_eq!(lp.stats().traps, 51);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_panicking_task_is_reported_and_other_tasks_finish() {
    let lp = EventLoop::new().unwrap();
    let seen = handler_log(&lp);
    let bad = lp.create_task(async {
        aioloop::sleep(Duration::from_millis(1)).await;
        panic!("boom in a task");
    });
    let good = lp.create_task(async {
        aioloop::sleep(Duration::from_millis(3)).await;
        "fine"
    });
    assert_eq!(good.await.unwrap(), "fine");
    // The trapped step is abandoned (its future leaked, never touched
    // again) and the task ends with the panic: its handle does not hang.
    assert!(bad.done());
    let err = bad.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.message().contains("boom in a task"), "{err}");
    // Reported once, by the recovery (not again as never retrieved).
    assert_eq!(seen.borrow().len(), 1);
    assert!(seen.borrow()[0].2.contains("boom in a task"));
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_trapped_detached_task_and_one_awaited_from_another_task_both_end() {
    let lp = EventLoop::new().unwrap();
    let seen = handler_log(&lp);
    // Detached: nobody reads it; it is reported once and leaves the table.
    lp.create_task(async {
        aioloop::sleep(Duration::from_millis(1)).await;
        panic!("detached boom");
    })
    .detach();
    // Awaited by another task on the same loop.
    let bad = lp.create_task(async {
        aioloop::sleep(Duration::from_millis(2)).await;
        panic!("awaited boom");
    });
    let watcher = lp.create_task(async move { bad.await.unwrap_err().message().to_string() });
    let msg = watcher.await.unwrap();
    assert!(msg.contains("awaited boom"), "{msg}");
    assert!(wait_until(2000.0, || seen.borrow().len() == 2).await);
    let seen = seen.borrow();
    assert!(
        seen.iter().any(|s| s.2.contains("detached boom")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.2.contains("awaited boom")),
        "{seen:?}"
    );
    // The detached one keeps its table entry (nobody collects it) until
    // the loop closes.
    assert_eq!(lp.pending_tasks(), 1);
    drop(seen);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
fn run_once_reports_a_panic_and_the_loop_stays_usable() {
    let lp = EventLoop::new().unwrap();
    lp.stop(); // we pump it ourselves
    let _seen = handler_log(&lp);
    lp.call_soon(|| panic!("boom in run_once")).unwrap();
    let e = lp.run_once().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    let log = Log::new();
    let l = log.clone();
    lp.call_soon(move || l.push(1)).unwrap();
    assert_eq!(lp.run_once().unwrap(), 1);
    assert_eq!(log.get(), [1]);
    lp.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_trapped_tasks_promise_rejects_with_a_panicked_error() {
    let lp = EventLoop::new().unwrap();
    let _seen = handler_log(&lp);
    let promise = lp
        .create_task(async {
            aioloop::sleep(Duration::from_millis(1)).await;
            if Rc::new(()).as_ref() == &() {
                panic!("boom behind a promise");
            }
            7u32
        })
        .into_promise();
    let err = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .expect_err("the promise rejects");
    let name = js_sys::Reflect::get(&err, &"name".into()).unwrap();
    assert_eq!(name.as_string().as_deref(), Some("PanickedError"));
    let message = js_sys::Reflect::get(&err, &"message".into()).unwrap();
    let message = message.as_string().unwrap();
    assert!(message.contains("boom behind a promise"), "{message}");
    lp.close().unwrap();
}
