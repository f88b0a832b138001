//! Timers: `call_later` / `call_at`, `TimerHandle`, `sleep`, `timeout` /
//! `wait_for`. Time is only used as a lower bound (never early) or as a
//! generous guard against hangs.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use aioloop::{ErrorKind, EventLoop};

mod util;

use util::{guard, run_forever_guarded, DropFlag, GUARD};

#[test]
fn timers_fire_in_deadline_order() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let base = lp.time();
    // Scheduled out of order on purpose.
    for ms in [30u64, 5, 20, 1, 15, 10, 25] {
        let order = order.clone();
        lp.call_at(base + Duration::from_millis(ms), move || {
            order.borrow_mut().push(ms)
        })
        .unwrap();
    }
    let l2 = lp.clone();
    lp.call_at(base + Duration::from_millis(31), move || l2.stop())
        .unwrap();
    run_forever_guarded(&lp);
    assert_eq!(*order.borrow(), [1, 5, 10, 15, 20, 25, 30]);
    lp.close().unwrap();
}

#[test]
fn timers_due_at_the_same_instant_fire_in_scheduling_order() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let when = lp.time() + Duration::from_millis(5);
    let earlier = lp.time() + Duration::from_millis(2);
    for i in 0..50 {
        let order = order.clone();
        // Interleave another deadline so the heap really has to reorder.
        let at = if i % 5 == 0 { earlier } else { when };
        lp.call_at(at, move || order.borrow_mut().push(i)).unwrap();
    }
    let l2 = lp.clone();
    lp.call_at(when, move || l2.stop()).unwrap();
    run_forever_guarded(&lp);
    let firsts: Vec<i32> = (0..50).filter(|i| i % 5 == 0).collect();
    let rest: Vec<i32> = (0..50).filter(|i| i % 5 != 0).collect();
    let expected: Vec<i32> = firsts.into_iter().chain(rest).collect();
    assert_eq!(*order.borrow(), expected);
    lp.close().unwrap();
}

#[test]
fn timers_never_fire_before_their_deadline() {
    let lp = EventLoop::new().unwrap();
    let late = Rc::new(RefCell::new(Vec::new()));
    let fired = Rc::new(Cell::new(0));
    // Sub-millisecond delays too: a backend that rounds its wait down would
    // wake early.
    let delays_us = [
        0u64, 100, 500, 900, 1_000, 1_500, 2_300, 5_000, 9_999, 20_000,
    ];
    for &us in &delays_us {
        let (late, fired) = (late.clone(), fired.clone());
        let delay = Duration::from_micros(us);
        let h = Rc::new(Cell::new(None::<Instant>));
        let h2 = h.clone();
        let t = lp
            .call_later(delay, move || {
                let now = Instant::now();
                let when = h2.get().unwrap();
                if now < when {
                    late.borrow_mut().push((us, when - now));
                }
                fired.set(fired.get() + 1);
            })
            .unwrap();
        h.set(Some(t.when()));
    }
    let n = delays_us.len();
    let l2 = lp.clone();
    let f2 = fired.clone();
    // Poll from a task until every timer fired, without relying on timing.
    let done = lp.run_until_complete(aioloop::timeout(GUARD, async move {
        while f2.get() < n {
            l2.sleep(Duration::from_micros(300)).await;
        }
    }));
    done.unwrap().unwrap();
    assert_eq!(fired.get(), n);
    assert!(
        late.borrow().is_empty(),
        "timers fired early: {:?}",
        late.borrow()
    );
    lp.close().unwrap();
}

#[test]
fn call_at_fires_no_earlier_than_when() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let when = lp.time() + Duration::from_millis(15);
    let l2 = lp.clone();
    let t = lp
        .call_at(when, move || {
            s.set(Some(Instant::now()));
            l2.stop();
        })
        .unwrap();
    assert_eq!(t.when(), when);
    run_forever_guarded(&lp);
    let fired_at = seen.get().expect("the timer fired");
    assert!(fired_at >= when, "fired {:?} early", when - fired_at);
    lp.close().unwrap();
}

#[test]
fn call_later_when_is_now_plus_delay() {
    let lp = EventLoop::new().unwrap();
    let before = lp.time();
    let t = lp.call_later(Duration::from_secs(60), || {}).unwrap();
    let after = lp.time();
    assert!(t.when() >= before + Duration::from_secs(60));
    assert!(t.when() <= after + Duration::from_secs(60));
    assert!(!t.cancelled());
    t.cancel();
    assert!(t.cancelled());
    lp.close().unwrap();
}

#[test]
fn cancelled_timer_never_fires() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let t = lp
        .call_later(Duration::from_millis(1), move || r.set(true))
        .unwrap();
    t.cancel();
    assert!(t.cancelled());
    // Wait well past its deadline.
    lp.run_until_complete(lp.sleep(Duration::from_millis(20)))
        .unwrap();
    assert!(!ran.get());
    lp.close().unwrap();
}

#[test]
fn a_timer_cancelled_by_an_earlier_timer_of_the_same_iteration_does_not_fire() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let when = lp.time() + Duration::from_millis(2);
    let victim: Rc<RefCell<Option<aioloop::TimerHandle>>> = Rc::new(RefCell::new(None));
    let (v2, l1) = (victim.clone(), log.clone());
    lp.call_at(when, move || {
        l1.borrow_mut().push("first");
        v2.borrow().as_ref().unwrap().cancel();
    })
    .unwrap();
    let l2 = log.clone();
    *victim.borrow_mut() = Some(
        lp.call_at(when, move || l2.borrow_mut().push("victim"))
            .unwrap(),
    );
    lp.run_until_complete(lp.sleep(Duration::from_millis(20)))
        .unwrap();
    assert_eq!(*log.borrow(), ["first"]);
    lp.close().unwrap();
}

#[test]
fn cancelling_a_timer_releases_its_captured_state() {
    let lp = EventLoop::new().unwrap();
    let state = Rc::new(());
    let c = state.clone();
    let t = lp
        .call_later(Duration::from_secs(3600), move || drop(c))
        .unwrap();
    assert_eq!(Rc::strong_count(&state), 2);
    t.cancel();
    assert_eq!(Rc::strong_count(&state), 1);
    lp.close().unwrap();
}

#[test]
fn call_later_with_zero_delay_fires_promptly() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_later(Duration::ZERO, move || r.set(true)).unwrap();
    // A zero-delay timer is due by the next iteration; give it a few.
    lp.run_until_complete(async {
        for _ in 0..3 {
            aioloop::yield_now().await;
        }
    })
    .unwrap();
    assert!(ran.get());
    lp.close().unwrap();
}

#[test]
fn call_at_in_the_past_fires() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let past = lp.time();
    std::thread::sleep(Duration::from_millis(2));
    let l2 = lp.clone();
    lp.call_at(past, move || {
        r.set(true);
        l2.stop();
    })
    .unwrap();
    run_forever_guarded(&lp);
    assert!(ran.get());
    lp.close().unwrap();
}

#[test]
fn many_cancelled_timers_do_not_disturb_the_live_ones() {
    let lp = EventLoop::new().unwrap();
    let base = lp.time();
    let cancelled_ran = Rc::new(Cell::new(0u32));
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut handles = Vec::new();
    // 10_000 timers whose deadlines are interleaved with the live ones.
    for i in 0..10_000u64 {
        let c = cancelled_ran.clone();
        let at = base + Duration::from_micros((i % 40) * 500);
        handles.push(lp.call_at(at, move || c.set(c.get() + 1)).unwrap());
    }
    for (k, ms) in [(0u32, 3u64), (1, 7), (2, 7), (3, 12), (4, 19)] {
        let order = order.clone();
        lp.call_at(base + Duration::from_millis(ms), move || {
            order.borrow_mut().push(k)
        })
        .unwrap();
    }
    for h in &handles {
        h.cancel();
    }
    assert!(handles.iter().all(|h| h.cancelled()));
    let l2 = lp.clone();
    lp.call_at(base + Duration::from_millis(25), move || l2.stop())
        .unwrap();
    run_forever_guarded(&lp);
    assert_eq!(cancelled_ran.get(), 0);
    assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
    lp.close().unwrap();
}

#[test]
fn timers_cancelled_while_the_loop_runs_do_not_fire() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(0u32));
    let live = Rc::new(Cell::new(0u32));
    let l2 = lp.clone();
    let (r2, live2) = (ran.clone(), live.clone());
    let ran_at_cancel = lp
        .run_until_complete(async move {
            let mut hs = Vec::new();
            for i in 0..2_000u64 {
                let r = r2.clone();
                hs.push(
                    l2.call_later(Duration::from_micros(200 * (i % 50)), move || {
                        r.set(r.get() + 1)
                    })
                    .unwrap(),
                );
            }
            let lv = live2.clone();
            l2.call_later(Duration::from_millis(5), move || lv.set(lv.get() + 1))
                .unwrap();
            aioloop::yield_now().await;
            // Some may have fired already (time decides that); none may fire
            // after cancel().
            let ran_at_cancel = r2.get();
            for h in hs {
                h.cancel();
            }
            l2.sleep(Duration::from_millis(15)).await;
            ran_at_cancel
        })
        .unwrap();
    assert_eq!(ran.get(), ran_at_cancel);
    assert_eq!(live.get(), 1);
    lp.close().unwrap();
}

#[test]
fn sleep_inside_a_task_waits_at_least_the_delay() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async {
        let start = Instant::now();
        aioloop::sleep(Duration::from_millis(20)).await;
        start.elapsed()
    });
    let elapsed = lp.run_until_complete(t).unwrap().unwrap();
    assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
    lp.close().unwrap();
}

#[test]
fn loop_sleep_can_be_awaited_by_run_until_complete() {
    let lp = EventLoop::new().unwrap();
    let s = lp.sleep(Duration::from_millis(10));
    let deadline = s.deadline();
    lp.run_until_complete(s).unwrap();
    assert!(Instant::now() >= deadline);
    lp.close().unwrap();
}

#[test]
fn sleep_zero_yields_to_other_tasks() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let la = log.clone();
    let a = lp.create_task(async move {
        la.borrow_mut().push("a1");
        aioloop::sleep(Duration::ZERO).await;
        la.borrow_mut().push("a2");
    });
    let lb = log.clone();
    let b = lp.create_task(async move {
        lb.borrow_mut().push("b1");
    });
    lp.run_until_complete(async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .unwrap();
    assert_eq!(*log.borrow(), ["a1", "b1", "a2"]);
    lp.close().unwrap();
}

#[test]
fn timeout_returns_the_value_when_the_future_finishes_in_time() {
    let lp = EventLoop::new().unwrap();
    let r = lp
        .run_until_complete(aioloop::timeout(Duration::from_secs(60), async {
            aioloop::sleep(Duration::from_millis(1)).await;
            "ok"
        }))
        .unwrap();
    assert_eq!(r.unwrap(), "ok");
    let r = lp
        .run_until_complete(aioloop::wait_for(async { 5 }, Duration::from_secs(60)))
        .unwrap();
    assert_eq!(r.unwrap(), 5);
    lp.close().unwrap();
}

#[test]
fn timeout_expires_with_timed_out_and_drops_the_future() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let start = Instant::now();
    let d2 = dropped.clone();
    let (r, dropped_after) = lp
        .run_until_complete(async move {
            let r = aioloop::timeout(Duration::from_millis(15), async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            })
            .await;
            (r, d2.get())
        })
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(15));
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(dropped_after, "the timed-out future is dropped");
    assert!(dropped.get());
    lp.close().unwrap();
}

#[test]
fn wait_for_times_out_in_a_task() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(aioloop::wait_for(
        aioloop::sleep(Duration::from_secs(3600)),
        Duration::from_millis(5),
    ));
    let g = guard(&lp);
    let r = lp.run_until_complete(t).unwrap().unwrap();
    g.cancel();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
    lp.close().unwrap();
}

#[test]
fn an_expired_timeout_does_not_override_a_ready_future() {
    // The future is ready at the same poll the deadline is seen: the value wins
    // (asyncio: a finished future's result is returned).
    let lp = EventLoop::new().unwrap();
    let r = lp
        .run_until_complete(async {
            let t = aioloop::timeout(Duration::ZERO, async { 9 });
            t.await
        })
        .unwrap();
    assert_eq!(r.unwrap(), 9);
    lp.close().unwrap();
}

/// A waker that counts wake-ups and lets us see who still holds it.
struct CountingWaker(AtomicUsize);
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `fut` once with `waker`.
fn poll_once_with<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

#[test]
fn dropping_a_sleep_before_it_fires_cancels_its_timer() {
    let lp = EventLoop::new().unwrap();
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(counter.clone());
    let mut s = lp.sleep(Duration::from_millis(5));
    assert!(poll_once_with(&mut s, &waker).is_pending());
    assert!(
        Arc::strong_count(&counter) > 2,
        "the registered timer holds a clone of the waker"
    );
    drop(s);
    assert_eq!(
        Arc::strong_count(&counter),
        2,
        "dropping the Sleep releases the waker its timer held"
    );
    // Run well past the deadline: the cancelled timer must not wake anyone.
    lp.run_until_complete(lp.sleep(Duration::from_millis(30)))
        .unwrap();
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    drop(waker);
    lp.close().unwrap();
}

#[test]
fn run_until_complete_does_not_wait_for_a_dropped_one_hour_sleep() {
    let lp = EventLoop::new().unwrap();
    let start = Instant::now();
    let l2 = lp.clone();
    lp.run_until_complete(async move {
        let mut s = Box::pin(aioloop::sleep(Duration::from_secs(3600)));
        // Register the timer, then give up on it.
        std::future::poll_fn(|cx| {
            assert!(s.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        drop(s);
        // Later work still runs promptly: the loop does not wait an hour.
        l2.sleep(Duration::from_millis(1)).await;
        aioloop::yield_now().await;
    })
    .unwrap();
    assert!(start.elapsed() < GUARD, "took {:?}", start.elapsed());
    lp.close().unwrap();
}

#[test]
fn a_sleep_polled_after_firing_stays_ready() {
    let lp = EventLoop::new().unwrap();
    lp.run_until_complete(async {
        let mut s = Box::pin(aioloop::sleep(Duration::from_millis(2)));
        s.as_mut().await;
        // Polling again is fine and immediately ready.
        std::future::poll_fn(|cx| {
            assert!(s.as_mut().poll(cx).is_ready());
            Poll::Ready(())
        })
        .await;
    })
    .unwrap();
    lp.close().unwrap();
}

#[test]
fn close_drops_pending_timers() {
    let lp = EventLoop::new().unwrap();
    let state = Rc::new(());
    let c = state.clone();
    drop(
        lp.call_later(Duration::from_secs(3600), move || drop(c))
            .unwrap(),
    );
    assert_eq!(Rc::strong_count(&state), 2);
    lp.close().unwrap();
    assert_eq!(Rc::strong_count(&state), 1);
}

#[test]
#[should_panic(expected = "outside a running aioloop EventLoop")]
fn sleep_outside_a_running_loop_panics_with_a_clear_message() {
    futures::executor::block_on(aioloop::sleep(Duration::from_millis(1)));
}

#[test]
fn a_sleep_created_before_the_loop_runs_counts_from_its_creation() {
    let lp = EventLoop::new().unwrap();
    let s = aioloop::sleep(Duration::from_millis(10));
    let deadline = s.deadline();
    lp.run_until_complete(s).unwrap();
    assert!(Instant::now() >= deadline);
    lp.close().unwrap();
}

/// Deadlines built from an instant taken before the process ever used a
/// timer still fire in deadline order (they must not collapse into ties).
#[test]
fn deadlines_from_an_instant_taken_early_keep_their_order() {
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for (i, ms) in [5u64, 1, 0, 3].into_iter().enumerate() {
        let o = order.clone();
        lp.call_at(t0 + Duration::from_millis(ms), move || {
            o.borrow_mut().push(i)
        })
        .unwrap();
    }
    lp.run_until_complete(aioloop::sleep(Duration::from_millis(5)))
        .unwrap();
    assert_eq!(*order.borrow(), vec![2, 1, 3, 0]);
    lp.close().unwrap();
}
