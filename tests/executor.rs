//! `run_in_executor` and the default executor.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};

mod util;

use util::{bounded, LIMIT};

#[test]
fn run_in_executor_returns_the_value() {
    let v = bounded("value", || {
        let lp = EventLoop::new().unwrap();
        let v = lp
            .run_until_complete(lp.run_in_executor(|| (1..=100u64).map(|i| i * i).sum::<u64>()))
            .unwrap()
            .unwrap();
        lp.close().unwrap();
        v
    });
    assert_eq!(v, (1..=100u64).map(|i| i * i).sum::<u64>());
}

#[test]
fn run_in_executor_can_be_awaited_inside_a_task() {
    let v = bounded("in a task", || {
        let lp = EventLoop::new().unwrap();
        let l2 = lp.clone();
        let t = lp.create_task(async move {
            let a = l2.run_in_executor(|| 20).await.unwrap();
            let b = l2.run_in_executor(move || a + 1).await.unwrap();
            b * 2
        });
        let v = lp.run_until_complete(t).unwrap().unwrap();
        lp.close().unwrap();
        v
    });
    assert_eq!(v, 42);
}

#[test]
fn run_in_executor_runs_on_another_thread() {
    let (loop_thread, job_thread, name) = bounded("thread id", || {
        let lp = EventLoop::new().unwrap();
        let me = thread::current().id();
        let (id, name) = lp
            .run_until_complete(lp.run_in_executor(|| {
                let t = thread::current();
                (t.id(), t.name().map(str::to_owned))
            }))
            .unwrap()
            .unwrap();
        lp.close().unwrap();
        (me, id, name)
    });
    assert_ne!(loop_thread, job_thread);
    assert!(name.is_some(), "executor threads are named");
}

#[test]
fn a_panicking_job_gives_panicked() {
    let err = bounded("panic", || {
        let lp = EventLoop::new().unwrap();
        let r = lp
            .run_until_complete(lp.run_in_executor(|| -> u8 { panic!("job boom 3d9e") }))
            .unwrap();
        // The executor survives a panicking job.
        let ok = lp
            .run_until_complete(lp.run_in_executor(|| 1))
            .unwrap()
            .unwrap();
        assert_eq!(ok, 1);
        lp.close().unwrap();
        r.unwrap_err()
    });
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.to_string().contains("job boom 3d9e"), "{err}");
}

#[test]
fn many_jobs_on_two_threads_all_complete_on_at_most_two_workers() {
    let (results, threads) = bounded("100 jobs", || {
        let lp = EventLoop::builder().executor_threads(2).build().unwrap();
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let futs: Vec<_> = (0..100u32)
            .map(|i| {
                let seen = seen.clone();
                lp.run_in_executor(move || {
                    seen.lock().unwrap().insert(thread::current().id());
                    if i % 10 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                    i * i
                })
            })
            .collect();
        let results = lp
            .run_until_complete(async move {
                let mut out = Vec::new();
                for f in futs {
                    out.push(f.await.unwrap());
                }
                out
            })
            .unwrap();
        lp.close().unwrap();
        let n = seen.lock().unwrap().len();
        (results, n)
    });
    assert_eq!(results, (0..100u32).map(|i| i * i).collect::<Vec<_>>());
    assert!((1..=2).contains(&threads), "{threads} worker threads used");
}

#[test]
fn jobs_run_concurrently_with_the_loop() {
    // The loop keeps running callbacks while a job blocks.
    let ticks = bounded("concurrency", || {
        let lp = EventLoop::new().unwrap();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let job = lp.run_in_executor(move || go_rx.recv_timeout(LIMIT).is_ok());
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0));
        let t2 = ticks.clone();
        let ok = lp
            .run_until_complete(async move {
                for _ in 0..5 {
                    aioloop::yield_now().await;
                    t2.set(t2.get() + 1);
                }
                // Only now let the job finish.
                go_tx.send(()).unwrap();
                job.await.unwrap()
            })
            .unwrap();
        assert!(ok, "the job was released by the loop");
        lp.close().unwrap();
        ticks.get()
    });
    assert_eq!(ticks, 5);
}

#[test]
fn shutdown_default_executor_waits_for_queued_jobs() {
    let (done, total) = bounded("shutdown waits", || {
        let lp = EventLoop::builder().executor_threads(1).build().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let mut futs = Vec::new();
        for _ in 0..5 {
            let d = done.clone();
            futs.push(lp.run_in_executor(move || {
                thread::sleep(Duration::from_millis(10));
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
        // Not awaiting the jobs themselves: only the shutdown.
        lp.run_until_complete(lp.shutdown_default_executor())
            .unwrap()
            .unwrap();
        let n = done.load(Ordering::SeqCst);
        // Their futures resolve fine afterwards.
        for f in futs {
            lp.run_until_complete(f).unwrap().unwrap();
        }
        lp.close().unwrap();
        (n, 5)
    });
    assert_eq!(
        done, total,
        "every queued job finished before shutdown resolved"
    );
}

#[test]
fn shutdown_default_executor_without_an_executor_is_immediate() {
    let lp = EventLoop::new().unwrap();
    lp.run_until_complete(lp.shutdown_default_executor())
        .unwrap()
        .unwrap();
    lp.close().unwrap();
}

#[test]
fn run_in_executor_after_shutdown_default_executor_is_closed() {
    let r = bounded("after shutdown", || {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(lp.run_in_executor(|| ()))
            .unwrap()
            .unwrap();
        lp.run_until_complete(lp.shutdown_default_executor())
            .unwrap()
            .unwrap();
        let r = lp.run_until_complete(lp.run_in_executor(|| 1)).unwrap();
        lp.close().unwrap();
        r
    });
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn after_close_run_in_executor_is_closed() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let fut = lp.run_in_executor(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let err = futures::executor::block_on(fut).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_job_queued_before_close_still_resolves() {
    // close() shuts the executor down without waiting: the job either runs
    // or resolves to Closed, never hangs.
    let r = bounded("job across close", || {
        let lp = EventLoop::builder().executor_threads(1).build().unwrap();
        let fut = lp.run_in_executor(|| 5);
        lp.close().unwrap();
        futures::executor::block_on(fut)
    });
    match r {
        Ok(v) => assert_eq!(v, 5),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Closed),
    }
}

#[test]
fn executor_threads_zero_is_invalid_input() {
    let err = EventLoop::builder()
        .executor_threads(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!err.message().is_empty());
}
