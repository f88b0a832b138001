//! `call_soon` and `Handle`: FIFO order, one iteration at a time (asyncio's
//! `_run_once`), cancellation, closed loops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use aioloop::{ErrorKind, EventLoop};

mod util;

use util::{log, push, run_one_iteration};

#[test]
fn call_soon_runs_callbacks_in_fifo_order() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for i in 0..100 {
        let order = order.clone();
        lp.call_soon(move || order.borrow_mut().push(i)).unwrap();
    }
    run_one_iteration(&lp);
    assert_eq!(*order.borrow(), (0..100).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[test]
fn callback_scheduled_by_a_callback_runs_in_the_next_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    let (l2, log2) = (lp.clone(), log.clone());
    lp.call_soon(move || {
        log2.borrow_mut().push("A");
        l2.call_soon(push(&log2, "B")).unwrap();
        l2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        *log.borrow(),
        ["A"],
        "B was queued during the iteration: it must wait for the next one"
    );
    // The next run picks B up in its first iteration.
    run_one_iteration(&lp);
    assert_eq!(*log.borrow(), ["A", "B"]);
    lp.close().unwrap();
}

#[test]
fn callbacks_scheduled_during_an_iteration_go_behind_the_queued_ones() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    let (l2, log2) = (lp.clone(), log.clone());
    lp.call_soon(move || {
        log2.borrow_mut().push("A");
        l2.call_soon(push(&log2, "A.child")).unwrap();
    })
    .unwrap();
    lp.call_soon(push(&log, "B")).unwrap();
    lp.call_soon(push(&log, "C")).unwrap();
    lp.run_until_complete(async {
        aioloop::yield_now().await;
        aioloop::yield_now().await;
    })
    .unwrap();
    assert_eq!(*log.borrow(), ["A", "B", "C", "A.child"]);
    lp.close().unwrap();
}

#[test]
fn cancelled_handle_never_runs() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp.call_soon(move || r.set(true)).unwrap();
    assert!(!h.cancelled());
    h.cancel();
    assert!(h.cancelled());
    h.cancel(); // idempotent
    assert!(h.cancelled());
    run_one_iteration(&lp);
    run_one_iteration(&lp);
    assert!(!ran.get());
    lp.close().unwrap();
}

#[test]
fn cancel_through_a_clone_cancels_the_same_call() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp.call_soon(move || r.set(true)).unwrap();
    let h2 = h.clone();
    h2.cancel();
    assert!(h.cancelled());
    run_one_iteration(&lp);
    assert!(!ran.get());
    lp.close().unwrap();
}

#[test]
fn a_callback_can_cancel_a_later_callback_of_the_same_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    let victim: Rc<RefCell<Option<aioloop::Handle>>> = Rc::new(RefCell::new(None));
    let (v2, log2) = (victim.clone(), log.clone());
    lp.call_soon(move || {
        log2.borrow_mut().push("A");
        v2.borrow().as_ref().unwrap().cancel();
    })
    .unwrap();
    *victim.borrow_mut() = Some(lp.call_soon(push(&log, "B")).unwrap());
    lp.call_soon(push(&log, "C")).unwrap();
    run_one_iteration(&lp);
    assert_eq!(*log.borrow(), ["A", "C"]);
    assert!(victim.borrow().as_ref().unwrap().cancelled());
    lp.close().unwrap();
}

#[test]
fn cancel_after_running_is_a_no_op_and_not_reported_as_cancelled() {
    let lp = EventLoop::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let h = lp.call_soon(move || c.set(c.get() + 1)).unwrap();
    run_one_iteration(&lp);
    assert_eq!(count.get(), 1);
    h.cancel();
    assert!(
        !h.cancelled(),
        "cancelled() is only true when cancel() came before the callback ran"
    );
    run_one_iteration(&lp);
    assert_eq!(count.get(), 1);
    lp.close().unwrap();
}

#[test]
fn cancel_releases_the_captured_state() {
    let lp = EventLoop::new().unwrap();
    let state = Rc::new(String::from("captured"));
    let captured = state.clone();
    let h = lp
        .call_soon(move || {
            let _ = captured.len();
        })
        .unwrap();
    assert_eq!(Rc::strong_count(&state), 2);
    h.cancel();
    assert_eq!(
        Rc::strong_count(&state),
        1,
        "cancel() must drop the closure (and what it captured) right away"
    );
    // The handle itself still works.
    assert!(h.cancelled());
    run_one_iteration(&lp);
    assert_eq!(Rc::strong_count(&state), 1);
    lp.close().unwrap();
}

#[test]
fn running_a_callback_releases_its_captured_state() {
    let lp = EventLoop::new().unwrap();
    let state = Rc::new(());
    let captured = state.clone();
    let h = lp.call_soon(move || drop(captured)).unwrap();
    run_one_iteration(&lp);
    assert_eq!(Rc::strong_count(&state), 1);
    drop(h);
    lp.close().unwrap();
}

#[test]
fn close_drops_pending_callbacks_without_running_them() {
    let lp = EventLoop::new().unwrap();
    let state = Rc::new(());
    let captured = state.clone();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    // The handle is not kept: only the loop's queue holds the callback.
    drop(
        lp.call_soon(move || {
            let _keep = &captured;
            r.set(true);
        })
        .unwrap(),
    );
    lp.close().unwrap();
    assert!(!ran.get());
    assert_eq!(
        Rc::strong_count(&state),
        1,
        "close() drops queued callbacks"
    );
}

#[test]
fn call_soon_on_a_closed_loop_is_an_error() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let err = lp.call_soon(|| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(!err.message().is_empty());
    assert_eq!(
        lp.call_later(std::time::Duration::ZERO, || {})
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        lp.call_at(lp.time(), || {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn callbacks_run_on_the_loop_thread_and_see_the_running_loop() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    lp.call_soon(move || {
        *s.borrow_mut() = Some(aioloop::get_running_loop().unwrap());
    })
    .unwrap();
    run_one_iteration(&lp);
    assert_eq!(seen.borrow().as_ref(), Some(&lp));
    seen.borrow_mut().take();
    lp.close().unwrap();
}
