//! Tasks: `create_task`, `Task` (cancel, done, try_result, detach),
//! `cancel_all_tasks`, `pending_tasks`, and the `run_until_complete` rules.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop, Task};

mod util;

use util::{run_one_iteration, spin, DropFlag};

#[test]
fn create_task_returns_the_result() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async { String::from("result") });
    assert_eq!(t.get_loop(), Some(lp.clone()));
    assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), "result");
    lp.close().unwrap();
}

#[test]
fn a_task_does_not_start_before_the_loop_runs() {
    let lp = EventLoop::new().unwrap();
    let started = Rc::new(Cell::new(false));
    let s = started.clone();
    let t = lp.create_task(async move { s.set(true) });
    assert!(!started.get(), "create_task only schedules the task");
    assert!(!t.done());
    lp.run_until_complete(t).unwrap().unwrap();
    assert!(started.get());
    lp.close().unwrap();
}

#[test]
fn tasks_run_in_creation_order() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let order = order.clone();
            lp.create_task(async move { order.borrow_mut().push(i) })
        })
        .collect();
    lp.run_until_complete(async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .unwrap();
    assert_eq!(*order.borrow(), (0..20).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[test]
fn tasks_and_callbacks_share_one_fifo_queue() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    lp.call_soon(move || o.borrow_mut().push("cb1")).unwrap();
    let o = order.clone();
    let t = lp.create_task(async move { o.borrow_mut().push("task") });
    let o = order.clone();
    lp.call_soon(move || o.borrow_mut().push("cb2")).unwrap();
    let o = order.clone();
    lp.run_until_complete(async move {
        // run_until_complete's future is queued behind what was scheduled.
        o.borrow_mut().push("main");
        t.await.unwrap();
    })
    .unwrap();
    assert_eq!(*order.borrow(), ["cb1", "task", "cb2", "main"]);
    lp.close().unwrap();
}

#[test]
fn cancel_before_start_never_polls_the_future() {
    let lp = EventLoop::new().unwrap();
    let polled = Rc::new(Cell::new(false));
    let dropped = Rc::new(Cell::new(false));
    let (p, flag) = (polled.clone(), DropFlag(dropped.clone()));
    let t = lp.create_task(async move {
        let _flag = flag;
        p.set(true);
    });
    assert!(t.cancel());
    let err = lp.run_until_complete(t).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(err.is_cancelled());
    assert!(
        !polled.get(),
        "a task cancelled before it started never runs"
    );
    assert!(dropped.get(), "its future is dropped");
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[test]
fn cancel_while_awaiting_a_sleep_drops_the_future() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let after = Rc::new(Cell::new(false));
    let (flag, a) = (DropFlag(dropped.clone()), after.clone());
    let t = lp.create_task(async move {
        let _flag = flag;
        aioloop::sleep(Duration::from_secs(3600)).await;
        a.set(true);
    });
    spin(&lp, 2); // the task is now parked in its sleep
    assert!(!t.done());
    assert!(!dropped.get());
    assert!(t.cancel());
    assert!(
        t.cancel(),
        "cancel() on a task that has not finished yet keeps returning true"
    );
    let err = lp.run_until_complete(t).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(dropped.get(), "the cancelled task's future was dropped");
    assert!(!after.get());
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[test]
fn cancel_from_another_task() {
    let lp = EventLoop::new().unwrap();
    let victim = lp.create_task(std::future::pending::<u32>());
    let killer = lp.create_task(async move {
        aioloop::yield_now().await;
        assert!(victim.cancel());
        victim.await
    });
    let r = lp.run_until_complete(killer).unwrap().unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);
    lp.close().unwrap();
}

#[test]
fn a_task_can_cancel_itself() {
    let lp = EventLoop::new().unwrap();
    let me: Rc<RefCell<Option<Task<()>>>> = Rc::new(RefCell::new(None));
    let reached = Rc::new(Cell::new(false));
    let (m, r) = (me.clone(), reached.clone());
    let t = lp.create_task(async move {
        let cancelled = m.borrow().as_ref().unwrap().cancel();
        assert!(cancelled);
        aioloop::sleep(Duration::from_millis(1)).await;
        r.set(true);
    });
    *me.borrow_mut() = Some(t);
    spin(&lp, 3);
    let mut t = me.borrow_mut().take().unwrap();
    assert!(t.done());
    let err = t.try_result().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(
        !reached.get(),
        "the task ends at the await following its own cancel()"
    );
    lp.close().unwrap();
}

#[test]
fn a_task_that_cancels_itself_and_returns_is_cancelled() {
    let lp = EventLoop::new().unwrap();
    let me: Rc<RefCell<Option<Task<u32>>>> = Rc::new(RefCell::new(None));
    let m = me.clone();
    let t = lp.create_task(async move {
        assert!(m.borrow().as_ref().unwrap().cancel());
        7
    });
    *me.borrow_mut() = Some(t);
    spin(&lp, 2);
    let mut t = me.borrow_mut().take().unwrap();
    let r = t.try_result().unwrap();
    assert_eq!(
        r.unwrap_err().kind(),
        ErrorKind::Cancelled,
        "cancel() returned true, so the task must not report success"
    );
    lp.close().unwrap();
}

#[test]
fn cancel_returns_false_when_done() {
    let lp = EventLoop::new().unwrap();
    let mut t = lp.create_task(async { 1 });
    spin(&lp, 1);
    assert!(t.done());
    assert!(!t.cancel());
    // The result is still the value.
    assert_eq!(t.try_result().unwrap().unwrap(), 1);
    assert!(!t.cancel(), "after the result was taken too");
    lp.close().unwrap();
}

#[test]
fn done_tracks_completion() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async {
        aioloop::yield_now().await;
    });
    assert!(!t.done());
    run_one_iteration(&lp);
    assert!(!t.done(), "still has one more step");
    run_one_iteration(&lp);
    assert!(t.done());
    lp.close().unwrap();
}

#[test]
fn try_result_takes_the_result_once() {
    let lp = EventLoop::new().unwrap();
    let mut t = lp.create_task(async { vec![1, 2, 3] });
    assert!(t.try_result().is_none(), "not done yet");
    spin(&lp, 1);
    assert_eq!(t.try_result().unwrap().unwrap(), [1, 2, 3]);
    assert!(t.try_result().is_none(), "taken already");
    assert!(t.done());
    // Awaiting a handle whose result was taken is an error, not a hang.
    let err = lp.run_until_complete(t).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    lp.close().unwrap();
}

#[test]
fn dropping_the_handle_detaches_the_task() {
    let lp = EventLoop::new().unwrap();
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    drop(lp.create_task(async move {
        aioloop::sleep(Duration::from_millis(2)).await;
        aioloop::yield_now().await;
        f.set(true);
    }));
    assert_eq!(lp.pending_tasks(), 1);
    let f = finished.clone();
    lp.run_until_complete(aioloop::timeout(Duration::from_secs(10), async move {
        while !f.get() {
            aioloop::yield_now().await;
        }
    }))
    .unwrap()
    .unwrap();
    assert!(finished.get());
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[test]
fn detach_keeps_the_task_running() {
    let lp = EventLoop::new().unwrap();
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    lp.create_task(async move {
        aioloop::yield_now().await;
        f.set(true);
    })
    .detach();
    spin(&lp, 3);
    assert!(finished.get());
    lp.close().unwrap();
}

#[test]
fn a_task_on_a_closed_loop_resolves_to_closed() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let polled = Rc::new(Cell::new(false));
    let p = polled.clone();
    let mut t = lp.create_task(async move { p.set(true) });
    assert!(t.done());
    let err = t.try_result().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(!polled.get());
    // Awaiting it elsewhere does not hang either.
    let t2 = lp.create_task(async {});
    let err = futures::executor::block_on(t2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(lp.pending_tasks(), 0);
}

#[test]
fn closing_the_loop_resolves_parked_tasks_to_closed() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let mut t = lp.create_task(async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    });
    spin(&lp, 1); // the task is parked, its waker stored by the loop
    assert!(!t.done());
    lp.close().unwrap();
    assert!(t.done(), "a task dropped by close() is done");
    let r = t.try_result().expect("the task has a result after close()");
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
    assert!(dropped.get(), "close() drops the pending task's future");
    assert_eq!(lp.pending_tasks(), 0);
}

#[test]
fn closing_the_loop_resolves_queued_tasks_to_closed() {
    // A task that is in the ready queue (not started yet) when the loop closes.
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let polled = Rc::new(Cell::new(false));
    let p = polled.clone();
    let mut t = lp.create_task(async move {
        let _flag = flag;
        p.set(true);
    });
    lp.close().unwrap();
    assert!(!polled.get());
    assert!(dropped.get(), "close() drops the queued task's future");
    assert!(t.done());
    assert_eq!(
        t.try_result().unwrap().unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(lp.pending_tasks(), 0);
}

#[test]
fn a_parked_task_is_dropped_once_its_handle_is_dropped_after_close() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let t = lp.create_task(async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    });
    spin(&lp, 1);
    lp.close().unwrap();
    drop(t);
    assert!(
        dropped.get(),
        "nothing may keep the future alive after that"
    );
}

#[test]
fn cancel_all_tasks_cancels_every_pending_task() {
    let lp = EventLoop::new().unwrap();
    let a = lp.create_task(std::future::pending::<()>());
    let b = lp.create_task(aioloop::sleep(Duration::from_secs(3600)));
    let mut c = lp.create_task(async { 3 });
    spin(&lp, 1);
    assert!(c.done());
    assert_eq!(lp.pending_tasks(), 2);
    assert_eq!(lp.cancel_all_tasks(), 2);
    assert_eq!(lp.cancel_all_tasks(), 0, "already asked");
    let (ra, rb) = lp.run_until_complete(async { (a.await, b.await) }).unwrap();
    assert!(ra.unwrap_err().is_cancelled());
    assert!(rb.unwrap_err().is_cancelled());
    assert_eq!(c.try_result().unwrap().unwrap(), 3);
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[test]
fn pending_tasks_counts_unfinished_tasks() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.pending_tasks(), 0);
    let a = lp.create_task(async {
        aioloop::yield_now().await;
    });
    let b = lp.create_task(std::future::pending::<()>());
    assert_eq!(lp.pending_tasks(), 2);
    lp.run_until_complete(a).unwrap().unwrap();
    assert_eq!(lp.pending_tasks(), 1);
    b.cancel();
    lp.run_until_complete(b).unwrap().unwrap_err();
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[test]
fn yield_now_interleaves_two_tasks() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let la = log.clone();
    let a = lp.create_task(async move {
        la.borrow_mut().push("A1");
        aioloop::yield_now().await;
        la.borrow_mut().push("A2");
        aioloop::yield_now().await;
        la.borrow_mut().push("A3");
    });
    let lb = log.clone();
    let b = lp.create_task(async move {
        lb.borrow_mut().push("B1");
        aioloop::yield_now().await;
        lb.borrow_mut().push("B2");
        aioloop::yield_now().await;
        lb.borrow_mut().push("B3");
    });
    lp.run_until_complete(async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .unwrap();
    assert_eq!(*log.borrow(), ["A1", "B1", "A2", "B2", "A3", "B3"]);
    lp.close().unwrap();
}

#[test]
fn a_task_woken_while_the_loop_is_not_running_resumes_on_the_next_run() {
    let lp = EventLoop::new().unwrap();
    let (tx, rx) = futures::channel::oneshot::channel::<u8>();
    let mut t = lp.create_task(async move { rx.await.unwrap() + 1 });
    spin(&lp, 1);
    assert!(!t.done());
    // Woken on the loop's thread while the loop is stopped.
    tx.send(41).unwrap();
    assert!(!t.done());
    spin(&lp, 1);
    assert_eq!(t.try_result().unwrap().unwrap(), 42);
    lp.close().unwrap();
}

#[test]
fn a_task_awaits_another_task() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    let outer = lp.create_task(async move {
        let inner = l2.create_task(async {
            aioloop::sleep(Duration::from_millis(2)).await;
            20
        });
        inner.await.unwrap() + 1
    });
    assert_eq!(lp.run_until_complete(outer).unwrap().unwrap(), 21);
    lp.close().unwrap();
}

#[test]
fn a_task_sees_its_loop_as_the_running_loop() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async { aioloop::get_running_loop().unwrap() });
    let seen = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(seen, lp);
    drop(seen);
    lp.close().unwrap();
}

#[test]
fn run_until_complete_accepts_a_borrowing_future() {
    let lp = EventLoop::new().unwrap();
    let mut local = vec![1, 2];
    let text = String::from("borrowed");
    let n = lp
        .run_until_complete(async {
            aioloop::yield_now().await;
            local.push(3);
            text.len()
        })
        .unwrap();
    assert_eq!(n, 8);
    assert_eq!(local, [1, 2, 3]);
    lp.close().unwrap();
}

#[test]
fn nested_run_until_complete_is_already_running() {
    let lp = EventLoop::new().unwrap();
    let l2 = lp.clone();
    let t = lp.create_task(async move {
        let err = l2.run_until_complete(async { 1 }).unwrap_err();
        let err2 = l2.run_forever().unwrap_err();
        (err.kind(), err2.kind(), l2.is_running())
    });
    let (k1, k2, running) = lp.run_until_complete(t).unwrap().unwrap();
    assert_eq!(k1, ErrorKind::AlreadyRunning);
    assert_eq!(k2, ErrorKind::AlreadyRunning);
    assert!(
        running,
        "a refused nested run leaves the outer loop running"
    );
    assert!(!lp.is_running());
    // The loop is still usable afterwards.
    assert_eq!(lp.run_until_complete(async { 2 }).unwrap(), 2);
    lp.close().unwrap();
}

#[test]
fn running_a_second_loop_on_the_same_thread_is_already_running() {
    let lp = EventLoop::new().unwrap();
    let other = EventLoop::new().unwrap();
    let o2 = other.clone();
    let (k1, k2, other_running) = lp
        .run_until_complete(async move {
            let e1 = o2.run_until_complete(async {}).unwrap_err();
            let e2 = o2.run_forever().unwrap_err();
            (e1.kind(), e2.kind(), o2.is_running())
        })
        .unwrap();
    assert_eq!(k1, ErrorKind::AlreadyRunning);
    assert_eq!(k2, ErrorKind::AlreadyRunning);
    assert!(!other_running);
    // Once the first loop stopped, the second one runs fine.
    assert_eq!(other.run_until_complete(async { 5 }).unwrap(), 5);
    other.close().unwrap();
    lp.close().unwrap();
}

#[test]
fn loops_on_different_threads_run_at_the_same_time() {
    let lp = EventLoop::new().unwrap();
    let r = lp
        .run_until_complete(async {
            std::thread::spawn(|| {
                let other = EventLoop::new().unwrap();
                let v = other.run_until_complete(async { 9 }).unwrap();
                other.close().unwrap();
                v
            })
            .join()
            .unwrap()
        })
        .unwrap();
    assert_eq!(r, 9);
    lp.close().unwrap();
}

#[test]
fn run_until_complete_on_a_closed_loop_is_closed() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    assert_eq!(
        lp.run_until_complete(async {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(lp.run_forever().unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn the_task_result_survives_until_awaited() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async { Box::new(17) });
    spin(&lp, 2);
    assert!(t.done());
    assert_eq!(*lp.run_until_complete(t).unwrap().unwrap(), 17);
    lp.close().unwrap();
}
