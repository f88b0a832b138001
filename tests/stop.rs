//! `stop()`, `close()`, `is_running()` / `is_closed()`: asyncio's rules.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};

mod util;

use util::{log, push};

#[test]
fn stop_finishes_the_current_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    let (l2, log2) = (lp.clone(), log.clone());
    lp.call_soon(move || {
        log2.borrow_mut().push("A");
        l2.stop();
        // Scheduled during the iteration: runs in the next one, not this one.
        l2.call_soon(push(&log2, "A.child")).unwrap();
    })
    .unwrap();
    lp.call_soon(push(&log, "B")).unwrap();
    lp.call_soon(push(&log, "C")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        *log.borrow(),
        ["A", "B", "C"],
        "callbacks already queued for the iteration still run after stop()"
    );
    assert!(!lp.is_running());
    // The child is still queued and runs on the next run.
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*log.borrow(), ["A", "B", "C", "A.child"]);
    lp.close().unwrap();
}

#[test]
fn stop_finishes_the_iteration_even_for_due_timers() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    let when = lp.time() + Duration::from_millis(2);
    let (l2, log2) = (lp.clone(), log.clone());
    lp.call_at(when, move || {
        log2.borrow_mut().push("T1");
        l2.stop();
    })
    .unwrap();
    lp.call_at(when, push(&log, "T2")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*log.borrow(), ["T1", "T2"]);
    lp.close().unwrap();
}

#[test]
fn stop_before_run_forever_runs_one_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    let (l2, log2) = (lp.clone(), log.clone());
    lp.call_soon(move || {
        log2.borrow_mut().push("A");
        l2.call_soon(push(&log2, "B")).unwrap();
    })
    .unwrap();
    lp.stop();
    assert!(!lp.is_running());
    lp.run_forever().unwrap(); // returns: it does not block
    assert_eq!(*log.borrow(), ["A"]);
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*log.borrow(), ["A", "B"]);
    lp.close().unwrap();
}

#[test]
fn stop_before_run_forever_with_nothing_scheduled_returns() {
    let lp = EventLoop::new().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(!lp.is_running());
    lp.close().unwrap();
}

#[test]
fn stop_flag_does_not_leak_into_the_next_run() {
    let lp = EventLoop::new().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    // This run must last until its own stop(), three iterations later.
    let count = Rc::new(Cell::new(0));
    let (l2, c2) = (lp.clone(), count.clone());
    fn again(lp: EventLoop, c: Rc<Cell<u32>>) {
        c.set(c.get() + 1);
        if c.get() == 3 {
            lp.stop();
        } else {
            let l2 = lp.clone();
            lp.call_soon(move || again(l2, c)).unwrap();
        }
    }
    lp.call_soon(move || again(l2, c2)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(count.get(), 3);
    lp.close().unwrap();
}

#[test]
fn run_until_complete_stopped_before_the_future_completes_is_stopped() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    lp.call_soon(move || l2.stop()).unwrap();
    let err = lp
        .run_until_complete(std::future::pending::<()>())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Stopped);
    assert!(!lp.is_running());
    lp.close().unwrap();
}

#[test]
fn stop_from_inside_the_future_is_stopped() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    let err = lp
        .run_until_complete(async move {
            l2.stop();
            aioloop::sleep(Duration::from_secs(3600)).await;
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Stopped);
    lp.close().unwrap();
}

#[test]
fn stop_before_run_until_complete_still_finishes_a_ready_future() {
    let lp = EventLoop::new().unwrap();
    lp.stop();
    assert_eq!(lp.run_until_complete(async { 4 }).unwrap(), 4);
    lp.stop();
    let err = lp.run_until_complete(aioloop::yield_now()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Stopped);
    lp.close().unwrap();
}

#[test]
fn the_loop_is_reusable_after_stop() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    lp.call_soon(move || l2.stop()).unwrap();
    assert!(lp.run_until_complete(std::future::pending::<()>()).is_err());
    // A task created before the stop keeps its state across runs.
    let t = lp.create_task(async {
        aioloop::yield_now().await;
        1
    });
    let l2 = lp.clone();
    lp.call_soon(move || l2.stop()).unwrap();
    lp.run_forever().unwrap();
    assert!(!t.done());
    assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), 1);
    assert_eq!(lp.run_until_complete(async { 2 }).unwrap(), 2);
    lp.close().unwrap();
}

#[test]
fn close_while_running_is_already_running() {
    let lp = EventLoop::new().unwrap();
    let result = Rc::new(RefCell::new(None));
    let (l2, r2) = (lp.clone(), result.clone());
    lp.call_soon(move || {
        *r2.borrow_mut() = Some(l2.close());
        l2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    let err = result.borrow_mut().take().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    assert!(!lp.is_closed(), "a refused close leaves the loop open");
    // Still usable, and closes fine once stopped.
    assert_eq!(lp.run_until_complete(async { 3 }).unwrap(), 3);
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn close_from_a_task_is_already_running() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    let t = lp.create_task(async move { l2.close().unwrap_err().kind() });
    assert_eq!(
        lp.run_until_complete(t).unwrap().unwrap(),
        ErrorKind::AlreadyRunning
    );
    lp.close().unwrap();
}

#[test]
fn close_is_idempotent() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    lp.close().unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
    // A clone sees the same state.
    assert!(lp.clone().is_closed());
}

#[test]
fn is_running_and_is_closed() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.is_running());
    assert!(!lp.is_closed());
    let l2 = lp.clone();
    let (running_in_task, closed_in_task) = lp
        .run_until_complete(async move { (l2.is_running(), l2.is_closed()) })
        .unwrap();
    assert!(running_in_task);
    assert!(!closed_in_task);
    assert!(!lp.is_running());
    let l2 = lp.clone();
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    lp.call_soon(move || {
        s.set(l2.is_running());
        l2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(seen.get(), "is_running() is true inside run_forever");
    assert!(!lp.is_running());
    lp.close().unwrap();
    assert!(lp.is_closed());
    assert!(!lp.is_running());
}

#[test]
fn a_closed_loop_refuses_work_instead_of_hanging() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    assert_eq!(lp.run_forever().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        lp.run_until_complete(async {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(lp.call_soon(|| {}).unwrap_err().kind(), ErrorKind::Closed);
    lp.stop(); // harmless
    assert!(lp.is_closed());
}

#[test]
fn stop_from_a_task_ends_run_forever() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    let t = lp.create_task(async move {
        aioloop::sleep(Duration::from_millis(2)).await;
        l2.stop();
        "stopped"
    });
    lp.run_forever().unwrap();
    let mut t = t;
    assert_eq!(t.try_result().unwrap().unwrap(), "stopped");
    lp.close().unwrap();
}

#[test]
fn run_until_complete_finishes_the_iteration_its_future_completed_in() {
    let lp = EventLoop::new().unwrap();
    let log = log();
    lp.call_soon(push(&log, "before")).unwrap();
    // Due at once: moved to the ready queue behind the main future, in the
    // same (first) iteration.
    lp.call_later(Duration::ZERO, push(&log, "timer")).unwrap();
    let l2 = log.clone();
    lp.run_until_complete(async move { l2.borrow_mut().push("main") })
        .unwrap();
    assert_eq!(*log.borrow(), ["before", "main", "timer"]);
    lp.close().unwrap();
}
