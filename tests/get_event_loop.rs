//! `get_event_loop` / `get_running_loop` / `set_event_loop`: CPython 3.14's
//! `GetEventLoopTestsMixin` (Lib/test/test_asyncio/test_events.py), ported
//! where it applies.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aioloop::{DefaultEventLoopPolicy, Error, ErrorKind, EventLoop, EventLoopPolicy};

mod util;

// Every test here reads or replaces the process-wide policy: each takes
// `global_policy()` first.
use util::global_policy;

/// CPython's `Policy(DefaultEventLoopPolicy)` whose `get_event_loop` raises
/// `TestError`; counts the calls.
#[derive(Default)]
struct RaisingPolicy {
    base: DefaultEventLoopPolicy,
    gets: AtomicUsize,
}

impl EventLoopPolicy for RaisingPolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Err(Error::new(ErrorKind::InvalidInput, "TestError"))
    }
    fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error> {
        self.base.set_event_loop(event_loop)
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.base.new_event_loop()
    }
}

/// A policy whose `get_event_loop` must never be called.
#[derive(Default)]
struct PanickingPolicy {
    base: DefaultEventLoopPolicy,
}

impl EventLoopPolicy for PanickingPolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        panic!("the policy's get_event_loop was called");
    }
    fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error> {
        self.base.set_event_loop(event_loop)
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.base.new_event_loop()
    }
}

fn assert_test_error(r: Result<EventLoop, Error>) {
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.message(), "TestError");
}

fn assert_no_running(r: Result<EventLoop, Error>) {
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRunningLoop);
    assert!(err.message().contains("no running"), "{err}");
}

fn assert_no_current(r: Result<EventLoop, Error>) {
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentLoop);
    assert!(err.message().contains("no current event loop"), "{err}");
}

/// `test_get_event_loop_returns_running_loop`.
#[test]
fn get_event_loop_returns_running_loop() {
    let _g = global_policy();
    let policy = Arc::new(RaisingPolicy::default());
    aioloop::set_event_loop_policy(Some(policy.clone()));
    let lp = aioloop::new_event_loop().unwrap();

    assert_test_error(aioloop::get_event_loop());
    aioloop::set_event_loop(None).unwrap();
    assert_test_error(aioloop::get_event_loop());
    assert_no_running(aioloop::get_running_loop());
    assert_eq!(policy.gets.load(Ordering::SeqCst), 2);

    let l2 = lp.clone();
    lp.run_until_complete(async move {
        assert_eq!(aioloop::get_event_loop().unwrap(), l2);
        assert_eq!(aioloop::get_running_loop().unwrap(), l2);
    })
    .unwrap();
    // The policy was not asked while the loop ran.
    assert_eq!(policy.gets.load(Ordering::SeqCst), 2);

    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    assert_test_error(aioloop::get_event_loop());
    aioloop::set_event_loop(None).unwrap();
    assert_test_error(aioloop::get_event_loop());
    assert_eq!(policy.gets.load(Ordering::SeqCst), 4);

    lp.close().unwrap();
    assert_no_running(aioloop::get_running_loop());
}

/// `test_get_event_loop_returns_running_loop2`.
#[test]
fn get_event_loop_returns_running_loop2() {
    let _g = global_policy();
    aioloop::set_event_loop_policy(Some(Arc::new(DefaultEventLoopPolicy::new())));
    let lp = aioloop::new_event_loop().unwrap();

    assert_no_current(aioloop::get_event_loop());
    aioloop::set_event_loop(None).unwrap();
    assert_no_current(aioloop::get_event_loop());

    let l2 = lp.clone();
    lp.run_until_complete(async move {
        assert_eq!(aioloop::get_event_loop().unwrap(), l2);
        assert_eq!(aioloop::get_running_loop().unwrap(), l2);
    })
    .unwrap();

    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    aioloop::set_event_loop(None).unwrap();
    assert_no_current(aioloop::get_event_loop());

    lp.close().unwrap();
    assert_no_running(aioloop::get_running_loop());
}

#[test]
fn running_loop_wins_over_the_policys_other_loop() {
    let _g = global_policy();
    let current = aioloop::new_event_loop().unwrap();
    aioloop::set_event_loop(Some(current.clone())).unwrap();
    let running = aioloop::new_event_loop().unwrap();

    let (r2, c2) = (running.clone(), current.clone());
    running
        .run_until_complete(async move {
            let got = aioloop::get_event_loop().unwrap();
            assert_eq!(got, r2);
            assert_ne!(got, c2);
            // The policy itself still has its own loop.
            assert_eq!(
                aioloop::get_event_loop_policy().get_event_loop().unwrap(),
                c2
            );
        })
        .unwrap();

    // Outside again, the policy's loop is current.
    assert_eq!(aioloop::get_event_loop().unwrap(), current);
    aioloop::set_event_loop(None).unwrap();
    current.close().unwrap();
    running.close().unwrap();
}

#[test]
fn get_event_loop_inside_a_loop_never_calls_the_policy() {
    let _g = global_policy();
    aioloop::set_event_loop_policy(Some(Arc::new(PanickingPolicy::default())));
    let lp = aioloop::new_event_loop().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));

    let s = seen.clone();
    lp.call_soon(move || s.borrow_mut().push(aioloop::get_event_loop().unwrap()))
        .unwrap();
    let s = seen.clone();
    let task = lp.create_task(async move {
        aioloop::yield_now().await;
        s.borrow_mut().push(aioloop::get_event_loop().unwrap());
    });
    let s = seen.clone();
    let r = lp.run_until_complete(async move {
        s.borrow_mut().push(aioloop::get_event_loop().unwrap());
        task.await.unwrap();
    });
    // A call to the policy would have panicked and surfaced here.
    r.unwrap();
    assert_eq!(*seen.borrow(), vec![lp.clone(), lp.clone(), lp.clone()]);
    lp.close().unwrap();
}

#[test]
fn get_running_loop_errors_outside_a_loop() {
    let _g = global_policy();
    assert_no_running(aioloop::get_running_loop());

    // Even with a current loop set.
    let lp = aioloop::new_event_loop().unwrap();
    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    assert_no_running(aioloop::get_running_loop());

    // And after a loop ran and stopped.
    lp.run_until_complete(aioloop::yield_now()).unwrap();
    assert!(!lp.is_running());
    assert_no_running(aioloop::get_running_loop());

    aioloop::set_event_loop(None).unwrap();
    lp.close().unwrap();
}

#[test]
fn get_running_loop_errors_after_the_main_future_panics() {
    let _g = global_policy();
    let lp = aioloop::new_event_loop().unwrap();
    let err = lp
        .run_until_complete(async {
            aioloop::yield_now().await;
            panic!("main failed");
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(!lp.is_running());
    assert_no_running(aioloop::get_running_loop());
    assert_no_current(aioloop::get_event_loop());
    lp.close().unwrap();
}

#[test]
fn get_running_loop_inside_callbacks_timers_and_tasks() {
    let _g = global_policy();
    let lp = aioloop::new_event_loop().unwrap();
    let seen: Rc<RefCell<Vec<(&str, EventLoop)>>> = Rc::new(RefCell::new(Vec::new()));

    let s = seen.clone();
    lp.call_soon(move || {
        s.borrow_mut()
            .push(("call_soon", aioloop::get_running_loop().unwrap()))
    })
    .unwrap();
    let s = seen.clone();
    lp.call_later(Duration::from_millis(1), move || {
        s.borrow_mut()
            .push(("call_later", aioloop::get_running_loop().unwrap()))
    })
    .unwrap();
    let s = seen.clone();
    let task = lp.create_task(async move {
        s.borrow_mut()
            .push(("task", aioloop::get_running_loop().unwrap()));
        aioloop::sleep(Duration::from_millis(5)).await;
        s.borrow_mut()
            .push(("task after sleep", aioloop::get_running_loop().unwrap()));
    });
    lp.run_until_complete(task).unwrap().unwrap();

    let seen = seen.borrow();
    let names: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"call_soon"), "{names:?}");
    assert!(names.contains(&"call_later"), "{names:?}");
    assert!(names.contains(&"task"), "{names:?}");
    assert!(names.contains(&"task after sleep"), "{names:?}");
    for (name, got) in seen.iter() {
        assert_eq!(got, &lp, "{name}");
    }
    drop(seen);
    lp.close().unwrap();
}

#[test]
fn the_running_loop_is_per_thread() {
    let _g = global_policy();
    let lp = aioloop::new_event_loop().unwrap();
    let l2 = lp.clone();
    let (running_there, event_loop_there) = lp
        .run_until_complete(async move {
            assert_eq!(aioloop::get_running_loop().unwrap(), l2);
            std::thread::spawn(|| {
                (
                    aioloop::get_running_loop().map(|_| ()).unwrap_err().kind(),
                    aioloop::get_event_loop().map(|_| ()).unwrap_err().kind(),
                )
            })
            .join()
            .unwrap()
        })
        .unwrap();
    assert_eq!(running_there, ErrorKind::NoRunningLoop);
    assert_eq!(event_loop_there, ErrorKind::NoCurrentLoop);
    lp.close().unwrap();
}

#[test]
fn another_thread_can_run_its_own_loop_meanwhile() {
    let _g = global_policy();
    let lp = aioloop::new_event_loop().unwrap();
    let l2 = lp.clone();
    lp.run_until_complete(async move {
        std::thread::spawn(|| {
            let other = aioloop::new_event_loop().unwrap();
            let o2 = other.clone();
            other
                .run_until_complete(async move {
                    assert_eq!(aioloop::get_running_loop().unwrap(), o2);
                    assert_eq!(aioloop::get_event_loop().unwrap(), o2);
                })
                .unwrap();
            other.close().unwrap();
        })
        .join()
        .unwrap();
        // This thread's running loop did not change.
        assert_eq!(aioloop::get_running_loop().unwrap(), l2);
    })
    .unwrap();
    lp.close().unwrap();
}

#[test]
fn no_current_loop_module_level_error() {
    let _g = global_policy();
    let err = aioloop::get_event_loop().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoCurrentLoop);
    let msg = err.to_string();
    assert!(msg.contains("no current event loop"), "{msg}");
    assert!(msg.contains("set_event_loop"), "{msg}");
    // Asking did not create one.
    assert_no_current(aioloop::get_event_loop());
}

#[test]
fn set_event_loop_makes_current_and_none_clears() {
    let _g = global_policy();
    let lp = aioloop::new_event_loop().unwrap();
    assert_no_current(aioloop::get_event_loop());

    aioloop::set_event_loop(Some(lp.clone())).unwrap();
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);
    assert_eq!(aioloop::get_event_loop().unwrap(), lp);

    let other = aioloop::new_event_loop().unwrap();
    aioloop::set_event_loop(Some(other.clone())).unwrap();
    assert_eq!(aioloop::get_event_loop().unwrap(), other);

    aioloop::set_event_loop(None).unwrap();
    assert_no_current(aioloop::get_event_loop());
    // Clearing twice is fine.
    aioloop::set_event_loop(None).unwrap();
    assert_no_current(aioloop::get_event_loop());

    lp.close().unwrap();
    other.close().unwrap();
}

#[test]
fn run_makes_its_loop_current_and_clears_it_after() {
    let _g = global_policy();
    let seen = aioloop::run(async {
        let running = aioloop::get_running_loop().unwrap();
        let current = aioloop::get_event_loop_policy().get_event_loop().unwrap();
        assert_eq!(aioloop::get_event_loop().unwrap(), running);
        (running, current)
    })
    .unwrap();
    let (running, current) = seen;
    assert_eq!(running, current);
    assert!(running.is_closed());
    assert_no_current(aioloop::get_event_loop());
}
