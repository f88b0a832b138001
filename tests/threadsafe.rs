//! `ThreadsafeHandle`: reaching a loop from other threads, waking a loop that
//! sleeps in its backend, FIFO per sender, closed loops.
//!
//! Anything that could hang runs its loop on a fresh thread, and the test
//! thread waits for it with a generous deadline: a lost wake-up fails the
//! test instead of hanging the suite.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use aioloop::{ErrorKind, EventLoop, ThreadsafeHandle};

mod util;

use util::{bounded, LIMIT};

#[test]
fn threadsafe_handle_is_send_sync_and_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<ThreadsafeHandle>();
    // And it is usable: a clone stops the loop from another thread.
    let lp = EventLoop::new().unwrap();
    let ts = lp.threadsafe();
    let ts2 = ts.clone();
    assert!(!ts2.is_closed());
    lp.close().unwrap();
    assert!(ts.is_closed() && ts2.is_closed());
}

#[test]
fn call_soon_threadsafe_wakes_a_loop_sleeping_with_nothing_scheduled() {
    let (elapsed, ran_on_loop_thread) = bounded("wake from another thread", || {
        let lp = EventLoop::new().unwrap();
        let ts = lp.threadsafe();
        let loop_thread = thread::current().id();
        let ran_on = Arc::new(Mutex::new(None));
        let r = ran_on.clone();
        let start = Instant::now();
        let waker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            let ts2 = ts.clone();
            ts.call_soon_threadsafe(move || {
                *r.lock().unwrap() = Some(thread::current().id());
                ts2.stop();
            })
            .unwrap();
        });
        // Nothing is scheduled: the loop blocks in the backend with no timeout.
        lp.run_forever().unwrap();
        let elapsed = start.elapsed();
        waker.join().unwrap();
        lp.close().unwrap();
        let ran_on = ran_on.lock().unwrap().take();
        (elapsed, ran_on == Some(loop_thread))
    });
    assert!(ran_on_loop_thread, "the callback runs on the loop's thread");
    assert!(
        elapsed >= Duration::from_millis(50),
        "the loop cannot have stopped before the callback was sent: {elapsed:?}"
    );
}

#[test]
fn threadsafe_stop_wakes_a_sleeping_loop() {
    bounded("threadsafe stop", || {
        let lp = EventLoop::new().unwrap();
        let ts = lp.threadsafe();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            ts.stop();
        });
        lp.run_forever().unwrap();
        t.join().unwrap();
        lp.close().unwrap();
    });
}

#[test]
fn threadsafe_stop_ends_run_until_complete_with_stopped() {
    let kind = bounded("threadsafe stop of run_until_complete", || {
        let lp = EventLoop::new().unwrap();
        let ts = lp.threadsafe();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            ts.stop();
        });
        let err = lp
            .run_until_complete(std::future::pending::<()>())
            .unwrap_err();
        t.join().unwrap();
        lp.close().unwrap();
        err.kind()
    });
    assert_eq!(kind, ErrorKind::Stopped);
}

#[test]
fn call_soon_threadsafe_before_the_loop_runs_is_kept() {
    let lp = EventLoop::new().unwrap();
    let ts = lp.threadsafe();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let ts2 = ts.clone();
    thread::spawn(move || {
        ts.call_soon_threadsafe(move || {
            r.store(true, Ordering::SeqCst);
            ts2.stop();
        })
        .unwrap()
    })
    .join()
    .unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    lp.run_forever().unwrap();
    assert!(ran.load(Ordering::SeqCst));
    lp.close().unwrap();
}

#[test]
fn call_soon_threadsafe_from_the_loop_thread_works() {
    let lp = EventLoop::new().unwrap();
    let ts = lp.threadsafe();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let ts2 = ts.clone();
    lp.call_soon(move || {
        ts.call_soon_threadsafe(move || {
            r.fetch_add(1, Ordering::SeqCst);
            ts2.stop();
        })
        .unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    lp.close().unwrap();
}

#[test]
fn many_threads_many_calls_arrive_once_each_in_per_thread_fifo_order() {
    const THREADS: usize = 8;
    const CALLS: usize = 2_000;
    let got = bounded("many senders", || {
        let lp = EventLoop::new().unwrap();
        let ts = lp.threadsafe();
        let got: Arc<Mutex<Vec<(usize, usize)>>> = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(std::sync::Barrier::new(THREADS));
        let senders: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ts, got, count, start) =
                    (ts.clone(), got.clone(), count.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    for i in 0..CALLS {
                        let (got, count, ts2) = (got.clone(), count.clone(), ts.clone());
                        ts.call_soon_threadsafe(move || {
                            got.lock().unwrap().push((t, i));
                            if count.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * CALLS {
                                ts2.stop();
                            }
                        })
                        .unwrap();
                        if i % 97 == 0 {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        lp.run_forever().unwrap();
        for s in senders {
            s.join().unwrap();
        }
        lp.close().unwrap();
        let got = std::mem::take(&mut *got.lock().unwrap());
        got
    });
    assert_eq!(
        got.len(),
        THREADS * CALLS,
        "every call arrived exactly once"
    );
    let mut next = [0usize; THREADS];
    for &(t, i) in &got {
        assert_eq!(i, next[t], "thread {t}'s calls arrived out of order");
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == CALLS));
}

#[test]
fn after_close_call_soon_threadsafe_is_closed() {
    let lp = EventLoop::new().unwrap();
    let ts = lp.threadsafe();
    assert!(!ts.is_closed());
    lp.close().unwrap();
    assert!(ts.is_closed());
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let err = thread::spawn(move || {
        ts.stop(); // does nothing, does not panic
        ts.call_soon_threadsafe(move || r.store(true, Ordering::SeqCst))
            .unwrap_err()
    })
    .join()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn close_drops_queued_threadsafe_callbacks() {
    let lp = EventLoop::new().unwrap();
    let ts = lp.threadsafe();
    let state = Arc::new(());
    let s = state.clone();
    ts.call_soon_threadsafe(move || drop(s)).unwrap();
    assert_eq!(Arc::strong_count(&state), 2);
    lp.close().unwrap();
    assert_eq!(
        Arc::strong_count(&state),
        1,
        "close() drops what was queued"
    );
}

#[test]
fn a_handle_outliving_its_loop_reports_closed() {
    let ts = {
        let lp = EventLoop::new().unwrap();
        let ts = lp.threadsafe();
        lp.close().unwrap();
        ts
    };
    assert!(ts.is_closed());
    assert_eq!(
        ts.call_soon_threadsafe(|| {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn a_task_woken_from_another_thread_completes() {
    let v = bounded("task woken by a oneshot", || {
        let lp = EventLoop::new().unwrap();
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let t = lp.create_task(async move { rx.await.unwrap() * 2 });
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            tx.send(21).unwrap();
        });
        // The loop sleeps with nothing to do until the other thread sends.
        let v = lp.run_until_complete(t).unwrap().unwrap();
        sender.join().unwrap();
        lp.close().unwrap();
        v
    });
    assert_eq!(v, 42);
}

#[test]
fn run_until_complete_woken_from_another_thread_completes() {
    let v = bounded("main future woken by a oneshot", || {
        let lp = EventLoop::new().unwrap();
        let (tx, rx) = futures::channel::oneshot::channel::<&'static str>();
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            tx.send("hi").unwrap();
        });
        let v = lp.run_until_complete(rx).unwrap().unwrap();
        sender.join().unwrap();
        lp.close().unwrap();
        v
    });
    assert_eq!(v, "hi");
}

#[test]
fn many_tasks_woken_from_many_threads_all_complete() {
    const N: usize = 200;
    let sum = bounded("many cross-thread wake-ups", || {
        let lp = EventLoop::new().unwrap();
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        for i in 0..N {
            let (tx, rx) = futures::channel::oneshot::channel::<usize>();
            tasks.push(lp.create_task(async move { rx.await.unwrap() }));
            senders.push((i, tx));
        }
        let threads: Vec<_> = senders
            .into_iter()
            .fold(
                vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()],
                |mut acc, s| {
                    acc[s.0 % 4].push(s);
                    acc
                },
            )
            .into_iter()
            .map(|batch| {
                thread::spawn(move || {
                    for (i, tx) in batch {
                        tx.send(i).unwrap();
                    }
                })
            })
            .collect();
        let sum = lp
            .run_until_complete(async move {
                let mut sum = 0;
                for t in tasks {
                    sum += t.await.unwrap();
                }
                sum
            })
            .unwrap();
        for t in threads {
            t.join().unwrap();
        }
        lp.close().unwrap();
        sum
    });
    assert_eq!(sum, (0..N).sum::<usize>());
}

#[test]
fn a_waker_used_after_close_from_another_thread_does_not_panic() {
    // A task parked on a oneshot; the loop closes; the sender then fires from
    // another thread. Nothing may panic or crash.
    let lp = EventLoop::new().unwrap();
    let (tx, rx) = futures::channel::oneshot::channel::<u8>();
    let t = lp.create_task(rx);
    lp.run_until_complete(aioloop::yield_now()).unwrap();
    lp.close().unwrap();
    thread::spawn(move || {
        let _ = tx.send(1);
    })
    .join()
    .unwrap();
    drop(t);
}

#[test]
fn a_busy_loop_still_runs_threadsafe_callbacks() {
    let ran = bounded("busy loop", || {
        let lp = EventLoop::new().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let ts = lp.threadsafe();
        let f2 = flag.clone();
        let sender = thread::spawn(move || {
            ts.call_soon_threadsafe(move || f2.store(true, Ordering::SeqCst))
                .unwrap();
        });
        let f3 = flag.clone();
        let start = Instant::now();
        // Never lets the ready queue empty; gives up after LIMIT.
        lp.run_until_complete(async move {
            while !f3.load(Ordering::SeqCst) && start.elapsed() < LIMIT {
                aioloop::yield_now().await;
            }
        })
        .unwrap();
        sender.join().unwrap();
        lp.close().unwrap();
        flag.load(Ordering::SeqCst)
    });
    assert!(ran);
}
