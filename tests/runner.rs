//! `aioloop::run` and `Runner`: CPython 3.14's `test_runners`
//! (Lib/test/test_asyncio/test_runners.py), ported where it applies.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aioloop::{
    Error, ErrorKind, EventLoop, EventLoopPolicy, ExecutorFuture, Runner, Task, TaskContextId,
};

mod util;

// `run` and `Runner::new` go through the process-wide policy, which some
// tests replace: every test here takes `global_policy()` and runs alone.
use util::{global_policy, only_report, record_reports_into, CountingPolicy, DropFlag, Reports};

/// Keeps a value produced inside `main` for the test to look at after `run`.
fn slot<T>() -> Rc<RefCell<Option<T>>> {
    Rc::new(RefCell::new(None))
}

/// Fails unless `task` is done and its result is `Cancelled`.
fn assert_cancelled(task: &mut Task<()>) {
    assert!(task.done());
    assert_eq!(
        task.try_result().unwrap().unwrap_err().kind(),
        ErrorKind::Cancelled
    );
}

// ---------------------------------------------------------------------------
// aioloop::run

#[test]
fn run_returns_mains_value() {
    let _g = global_policy();
    let v = aioloop::run(async {
        aioloop::sleep(Duration::ZERO).await;
        42
    })
    .unwrap();
    assert_eq!(v, 42);
}

#[test]
fn run_main_panics_gives_panicked_and_closes_the_loop() {
    let _g = global_policy();
    let seen = slot::<EventLoop>();
    let s = seen.clone();
    let err = aioloop::run(async move {
        *s.borrow_mut() = Some(aioloop::get_running_loop().unwrap());
        aioloop::sleep(Duration::ZERO).await;
        panic!("spam");
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.message().contains("spam"), "{err}");
    let lp = seen.borrow_mut().take().unwrap();
    assert!(lp.is_closed());
    assert!(!lp.is_running());
    // And it is no longer current.
    assert_eq!(
        aioloop::get_event_loop().unwrap_err().kind(),
        ErrorKind::NoCurrentLoop
    );
}

#[test]
fn run_main_panics_still_cancels_leftover_tasks() {
    let _g = global_policy();
    let leftover = slot::<Task<()>>();
    let l = leftover.clone();
    let err = aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        *l.borrow_mut() = Some(lp.create_task(std::future::pending::<()>()));
        aioloop::yield_now().await;
        panic!("main failed");
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    let mut task = leftover.borrow_mut().take().unwrap();
    assert_cancelled(&mut task);
}

#[test]
fn run_from_a_running_loop_errors() {
    let _g = global_policy();
    let inner_ran = Rc::new(Cell::new(false));
    let flag = inner_ran.clone();
    let inner = aioloop::run(async move {
        aioloop::run(async move {
            flag.set(true);
        })
    })
    .unwrap();
    let err = inner.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    assert!(err.message().contains("running event loop"), "{err}");
    assert!(!inner_ran.get(), "the nested main must not run");
}

#[test]
fn run_from_a_loop_run_by_hand_errors() {
    let _g = global_policy();
    let lp = EventLoop::new().unwrap();
    let inner = lp
        .run_until_complete(async { aioloop::run(async {}) })
        .unwrap();
    assert_eq!(inner.unwrap_err().kind(), ErrorKind::AlreadyRunning);
    // The outer loop was not disturbed.
    assert!(!lp.is_closed());
    lp.close().unwrap();
}

#[test]
fn run_cancels_hanging_tasks() {
    let _g = global_policy();
    let leftover = slot::<Task<()>>();
    let dropped = Rc::new(Cell::new(false));

    let (l, d) = (leftover.clone(), dropped.clone());
    let v = aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        let guard = DropFlag(d);
        *l.borrow_mut() = Some(lp.create_task(async move {
            let _guard = guard;
            aioloop::sleep(Duration::from_secs(3600)).await;
        }));
        // Let it start sleeping.
        aioloop::yield_now().await;
        123
    })
    .unwrap();
    assert_eq!(v, 123);
    assert!(dropped.get(), "the leftover task's future was dropped");
    let mut task = leftover.borrow_mut().take().unwrap();
    assert_cancelled(&mut task);
}

#[test]
fn run_cancels_hanging_tasks_created_by_tasks() {
    let _g = global_policy();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        for _ in 0..3 {
            let c = c.clone();
            lp.create_task(async move {
                let lp = aioloop::get_running_loop().unwrap();
                lp.create_task(async move {
                    c.set(c.get() + 1);
                    std::future::pending::<()>().await;
                })
                .detach();
                std::future::pending::<()>().await;
            })
            .detach();
        }
        while c.get() < 3 {
            aioloop::yield_now().await;
        }
        assert_eq!(lp.pending_tasks(), 6);
    })
    .unwrap();
    assert_eq!(count.get(), 3);
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("boom while cancelling");
        }
    }
}

/// A future that never finishes and panics when it is dropped (by
/// cancellation), polled or not.
fn panics_when_cancelled() -> impl std::future::Future<Output = ()> {
    let guard = PanicOnDrop;
    async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }
}

#[test]
fn run_reports_errors_of_detached_hanging_tasks() {
    let _g = global_policy();
    let reports: Reports = Rc::default();
    let r = reports.clone();
    let v = aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        record_reports_into(&lp, &r);
        lp.create_task(panics_when_cancelled()).detach();
        aioloop::yield_now().await;
        123
    })
    .unwrap();
    assert_eq!(v, 123);
    let report = only_report(&reports);
    assert_eq!(report.kind, Some(ErrorKind::Panicked));
    assert!(report.error.contains("boom while cancelling"), "{report:?}");
}

/// Runs a `main` that leaves behind a task whose future panics when it is
/// cancelled, with the exception handler recording; returns what it recorded
/// and the task, still referenced.
fn run_leaving_a_referenced_task_that_panics_when_cancelled() -> (Reports, Task<()>) {
    let reports: Reports = Rc::default();
    let leftover = slot::<Task<()>>();
    let (r, l) = (reports.clone(), leftover.clone());
    aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        record_reports_into(&lp, &r);
        *l.borrow_mut() = Some(lp.create_task(panics_when_cancelled()));
        aioloop::yield_now().await;
    })
    .unwrap();
    let task = leftover.borrow_mut().take().unwrap();
    (reports, task)
}

/// CPython's `test_asyncio_run_reports_hanging_tasks_errors` keeps a
/// reference to the leftover task (`lo_task`) and still expects
/// `asyncio.run` to report its error to the exception handler during
/// shutdown. Here the error is only reachable through the kept handle.
#[test]
fn run_keeps_the_error_of_a_referenced_hanging_task() {
    let _g = global_policy();
    let (_reports, mut task) = run_leaving_a_referenced_task_that_panics_when_cancelled();
    assert!(task.done());
    // The panic during cancellation is not swallowed as a plain Cancelled.
    let err = task.try_result().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(err.message().contains("boom while cancelling"), "{err}");
}

#[test]
fn run_reports_errors_of_referenced_hanging_tasks() {
    let _g = global_policy();
    let (reports, task) = run_leaving_a_referenced_task_that_panics_when_cancelled();
    // As asyncio: reported during run()'s shutdown, lo_task still referenced.
    let n = reports.borrow().len();
    drop(task);
    assert_eq!(n, 1, "{:?}", reports.borrow());
}

#[test]
fn run_calls_the_policys_set_event_loop_and_clears_it() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let p = policy.clone();
    aioloop::run(async move {
        // Made current while main runs.
        assert_eq!(p.sets(), vec![true]);
        let running = aioloop::get_running_loop().unwrap();
        assert_eq!(p.get_event_loop().unwrap(), running);
        aioloop::sleep(Duration::ZERO).await;
    })
    .unwrap();
    // set_event_loop(loop), then set_event_loop(None) at close.
    assert_eq!(policy.sets(), vec![true, false]);
    assert_eq!(policy.news(), 1);
    assert!(policy.get_event_loop().is_err());
}

#[test]
fn run_of_a_runner_with_a_loop_factory() {
    // test_asyncio_run_loop_factory, through Runner (run() takes no factory).
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let made = slot::<EventLoop>();
    let calls = Rc::new(Cell::new(0));
    let (m, c) = (made.clone(), calls.clone());
    let mut runner = Runner::with_loop_factory(move || {
        c.set(c.get() + 1);
        let lp = EventLoop::new()?;
        *m.borrow_mut() = Some(lp.clone());
        Ok(lp)
    });
    let running = runner
        .run(async { aioloop::get_running_loop().unwrap() })
        .unwrap();
    let again = runner
        .run(async { aioloop::get_running_loop().unwrap() })
        .unwrap();
    assert_eq!(calls.get(), 1);
    let made = made.borrow_mut().take().unwrap();
    assert_eq!(running, made);
    assert_eq!(again, made);
    assert_eq!(runner.get_loop().unwrap(), made);
    assert_eq!(calls.get(), 1);
    runner.close().unwrap();
    assert!(made.is_closed());
    // The policy was neither asked for a loop nor told about this one.
    assert!(policy.sets().is_empty(), "{:?}", policy.sets());
    assert_eq!(policy.news(), 0);
}

#[test]
fn runner_factory_loop_is_not_made_current() {
    let _g = global_policy();
    let mut runner = Runner::with_loop_factory(EventLoop::new);
    runner
        .run(async {
            let policy = aioloop::get_event_loop_policy();
            assert_eq!(
                policy.get_event_loop().unwrap_err().kind(),
                ErrorKind::NoCurrentLoop
            );
        })
        .unwrap();
    runner.close().unwrap();
}

/// A factory that fails once leaves the runner unable to make a loop: it
/// must not fall back to the policy's loop (asyncio calls the factory again).
#[test]
fn runner_failing_factory_does_not_fall_back_to_the_policy() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let mut runner =
        Runner::with_loop_factory(|| Err(Error::new(ErrorKind::InvalidInput, "factory says no")));
    let err = runner.get_loop().unwrap_err();
    assert_eq!(err.message(), "factory says no");
    let second = runner.get_loop();
    let fell_back = policy.news();
    if let Ok(lp) = &second {
        let _ = runner.close();
        assert!(lp.is_closed());
    }
    assert!(
        second.is_err(),
        "get_loop after a failed factory gave a loop"
    );
    assert_eq!(fell_back, 0, "the policy made a loop");
    assert!(policy.sets().is_empty(), "{:?}", policy.sets());
}

#[test]
fn runner_debug_true_and_false() {
    let _g = global_policy();
    let mut runner = Runner::new().debug(true);
    assert!(runner.get_loop().unwrap().get_debug());
    assert!(runner
        .run(async { aioloop::get_running_loop().unwrap().get_debug() })
        .unwrap());
    runner.close().unwrap();

    let mut runner = Runner::new().debug(false);
    assert!(!runner.get_loop().unwrap().get_debug());
    assert!(!runner
        .run(async { aioloop::get_running_loop().unwrap().get_debug() })
        .unwrap());
    runner.close().unwrap();
}

#[test]
fn runner_debug_applies_to_factory_loops() {
    let _g = global_policy();
    let mut runner =
        Runner::with_loop_factory(|| EventLoop::builder().debug(false).build()).debug(true);
    assert!(runner.get_loop().unwrap().get_debug());
    runner.close().unwrap();

    let mut runner =
        Runner::with_loop_factory(|| EventLoop::builder().debug(true).build()).debug(false);
    assert!(!runner.get_loop().unwrap().get_debug());
    runner.close().unwrap();

    // No debug() call: the factory's setting stands.
    let mut runner = Runner::with_loop_factory(|| EventLoop::builder().debug(true).build());
    assert!(runner.get_loop().unwrap().get_debug());
    runner.close().unwrap();
}

#[test]
fn runner_custom_factory_loop_is_get_loop() {
    let _g = global_policy();
    let made = slot::<EventLoop>();
    let m = made.clone();
    let mut runner = Runner::with_loop_factory(move || {
        let lp = EventLoop::new()?;
        *m.borrow_mut() = Some(lp.clone());
        Ok(lp)
    });
    let lp = runner.get_loop().unwrap();
    assert_eq!(Some(&lp), made.borrow().as_ref());
    runner.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn runner_run_twice_uses_the_same_loop() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let a = runner
        .run(async {
            aioloop::sleep(Duration::ZERO).await;
            aioloop::get_running_loop().unwrap()
        })
        .unwrap();
    let b = runner
        .run(async { aioloop::get_running_loop().unwrap() })
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(runner.get_loop().unwrap(), a);
    assert!(!a.is_closed());
    assert!(!a.is_running());
    runner.close().unwrap();
    assert!(a.is_closed());
}

#[test]
fn runner_survives_a_panicking_run() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let lp = runner.get_loop().unwrap();
    let err = runner
        .run(async {
            aioloop::yield_now().await;
            panic!("first run fails");
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.message().contains("first run fails"), "{err}");
    // Unlike run(), a Runner stays open: the next run uses the same loop.
    assert!(!lp.is_closed());
    let again = runner
        .run(async { aioloop::get_running_loop().unwrap() })
        .unwrap();
    assert_eq!(again, lp);
    runner.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn runner_tasks_survive_between_runs() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let kept = slot::<Task<u32>>();
    let k = kept.clone();
    runner
        .run(async move {
            let lp = aioloop::get_running_loop().unwrap();
            *k.borrow_mut() = Some(lp.create_task(async move { rx.await.unwrap() + 1 }));
            aioloop::yield_now().await;
        })
        .unwrap();
    let task = kept.borrow_mut().take().unwrap();
    assert!(!task.done());
    let v = runner
        .run(async move {
            tx.send(6).unwrap();
            task.await.unwrap()
        })
        .unwrap();
    assert_eq!(v, 7);
    runner.close().unwrap();
}

#[test]
fn runner_sets_the_event_loop_once() {
    // test_set_event_loop_called_once.
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let mut runner = Runner::new();
    runner.run(async {}).unwrap();
    runner.run(async {}).unwrap();
    assert_eq!(policy.sets(), vec![true]);
    assert_eq!(policy.news(), 1);
    runner.close().unwrap();
    assert_eq!(policy.sets(), vec![true, false]);
}

thread_local! {
    /// A stand-in for a `contextvars.ContextVar`: one value per task context.
    static CVAR: RefCell<HashMap<TaskContextId, i32>> = RefCell::new(HashMap::new());
}

fn cvar_get() -> i32 {
    CVAR.with(|c| {
        c.borrow()
            .get(&TaskContextId::current())
            .copied()
            .unwrap_or(-1)
    })
}

fn cvar_set(v: i32) {
    CVAR.with(|c| c.borrow_mut().insert(TaskContextId::current(), v));
}

#[test]
fn runner_run_keeps_context() {
    let _g = global_policy();
    async fn f(val: i32) -> i32 {
        let old = cvar_get();
        aioloop::sleep(Duration::ZERO).await;
        cvar_set(val);
        old
    }
    let mut runner = Runner::new();
    assert_eq!(runner.run(f(1)).unwrap(), -1);
    assert_eq!(runner.run(f(2)).unwrap(), 1);
    assert_eq!(runner.run(async { cvar_get() }).unwrap(), 2);

    let a = runner.run(async { TaskContextId::current() }).unwrap();
    let b = runner
        .run(async {
            // Tasks created in a run inherit the runner's context too.
            let lp = aioloop::get_running_loop().unwrap();
            lp.create_task(async { TaskContextId::current() })
                .await
                .unwrap()
        })
        .unwrap();
    assert_eq!(a, b);
    // Not the thread's root context.
    assert_ne!(a, TaskContextId::current());

    let mut other = Runner::new();
    let c = other.run(async { TaskContextId::current() }).unwrap();
    assert_ne!(a, c);
    assert_eq!(other.run(async { cvar_get() }).unwrap(), -1);
    other.close().unwrap();
    runner.close().unwrap();
}

#[test]
fn runner_recursive_run_errors() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let inner_ran = Rc::new(Cell::new(false));
    let flag = inner_ran.clone();
    let inner = runner
        .run(async move {
            let mut nested = Runner::new();
            let r = nested.run(async move { flag.set(true) });
            nested.close().unwrap();
            r
        })
        .unwrap();
    let err = inner.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    assert!(err.message().contains("running event loop"), "{err}");
    assert!(!inner_ran.get());
    // The outer runner still works.
    assert_eq!(runner.run(async { 1 }).unwrap(), 1);
    runner.close().unwrap();
}

#[test]
fn runner_explicit_close() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let lp = runner.get_loop().unwrap();
    runner.close().unwrap();
    let err = runner.get_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(err.message().contains("Runner is closed"), "{err}");
    assert!(lp.is_closed());
}

#[test]
fn runner_double_close() {
    let _g = global_policy();
    let mut runner = Runner::new();
    runner.run(async {}).unwrap();
    runner.close().unwrap();
    runner.close().unwrap();
    let err = runner.get_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(err.message().contains("Runner is closed"), "{err}");
}

#[test]
fn runner_run_after_close_errors() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let ran = Rc::new(Cell::new(false));
    runner.run(async {}).unwrap();
    runner.close().unwrap();
    let r = ran.clone();
    let err = runner.run(async move { r.set(true) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(!ran.get());
}

#[test]
fn runner_close_before_any_run_makes_no_loop() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let mut runner = Runner::new();
    runner.close().unwrap();
    assert_eq!(policy.news(), 0);
    assert!(policy.sets().is_empty());
    assert_eq!(runner.run(async {}).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn runner_drop_closes_its_loop() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let mut runner = Runner::new();
    let lp = runner.get_loop().unwrap();
    assert!(!lp.is_closed());
    drop(runner);
    assert!(lp.is_closed());
    // Dropping also cleared the current loop it had set.
    assert_eq!(policy.sets(), vec![true, false]);
    assert!(aioloop::get_event_loop().is_err());
}

#[test]
fn runner_drop_cancels_leftover_tasks() {
    let _g = global_policy();
    let mut runner = Runner::new();
    let kept = slot::<Task<()>>();
    let k = kept.clone();
    runner
        .run(async move {
            let lp = aioloop::get_running_loop().unwrap();
            *k.borrow_mut() = Some(lp.create_task(std::future::pending::<()>()));
            aioloop::yield_now().await;
        })
        .unwrap();
    let mut task = kept.borrow_mut().take().unwrap();
    assert!(!task.done());
    drop(runner);
    assert_cancelled(&mut task);
}

#[test]
fn runner_get_loop_is_lazy_and_stable() {
    let _g = global_policy();
    let policy = CountingPolicy::install();
    let mut runner = Runner::new();
    assert_eq!(policy.news(), 0);
    let a = runner.get_loop().unwrap();
    let b = runner.get_loop().unwrap();
    assert_eq!(a, b);
    assert_eq!(policy.news(), 1);
    // get_loop alone makes the loop current (asyncio's _lazy_init).
    assert_eq!(aioloop::get_event_loop().unwrap(), a);
    runner.close().unwrap();
}

#[test]
fn run_waits_for_the_default_executor() {
    let _g = global_policy();
    let finished = Arc::new(AtomicBool::new(false));
    let pending = slot::<ExecutorFuture<u32>>();
    let seen = slot::<EventLoop>();
    let (f, p, s) = (finished.clone(), pending.clone(), seen.clone());
    aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        *s.borrow_mut() = Some(lp.clone());
        // Queued, never awaited by main.
        *p.borrow_mut() = Some(lp.run_in_executor(move || {
            std::thread::sleep(Duration::from_millis(50));
            f.store(true, Ordering::SeqCst);
            5
        }));
    })
    .unwrap();
    // run() shut the executor down and waited for the work already queued.
    assert!(finished.load(Ordering::SeqCst));
    let fut = pending.borrow_mut().take().unwrap();
    assert_eq!(futures::executor::block_on(fut).unwrap(), 5);
    // The closed loop refuses new executor work.
    let lp = seen.borrow_mut().take().unwrap();
    assert!(lp.is_closed());
    let err = futures::executor::block_on(lp.run_in_executor(|| ())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
}

#[test]
fn runner_close_runs_queued_executor_jobs() {
    let _g = global_policy();
    let done = Arc::new(AtomicUsize::new(0));
    let mut runner = Runner::with_loop_factory(|| EventLoop::builder().executor_threads(1).build());
    let d = done.clone();
    runner
        .run(async move {
            let lp = aioloop::get_running_loop().unwrap();
            for _ in 0..3 {
                let d = d.clone();
                // One thread: the later jobs wait in the queue.
                drop(lp.run_in_executor(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    d.fetch_add(1, Ordering::SeqCst);
                }));
            }
        })
        .unwrap();
    runner.close().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 3);
}
