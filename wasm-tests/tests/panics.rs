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
    assert!(
        !bad.done(),
        "a trapped task step is abandoned: it never finishes"
    );
    assert_eq!(seen.borrow().len(), 1);
    assert!(seen.borrow()[0].2.contains("boom in a task"));
    drop(bad);
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
