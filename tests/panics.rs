//! Panics in callbacks, tasks, `run_until_complete` and the exception handler
//! itself: they are reported, never fatal to the loop.
//!
//! Panics print their usual message to stderr; that is expected here.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop, ExceptionContext};

mod util;

use util::{only_report, record_reports, run_one_iteration, spin, Reports};

/// Exactly one report, naming a place in this file (where the failing task
/// was created).
fn assert_one_report_names_this_file(reports: &Reports) {
    let r = only_report(reports);
    assert!(
        r.file.as_deref().is_some_and(|f| f.ends_with("panics.rs")),
        "{r:?}"
    );
}

#[test]
fn a_panicking_callback_goes_to_the_handler_and_the_loop_goes_on() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let after = Rc::new(Cell::new(0));
    lp.call_soon(|| panic!("boom in callback 7f3a")).unwrap();
    let a = after.clone();
    lp.call_soon(move || a.set(a.get() + 1)).unwrap();
    run_one_iteration(&lp);
    assert_eq!(
        after.get(),
        1,
        "the callback after the panicking one ran in the same iteration"
    );
    // And in later iterations.
    let a = after.clone();
    lp.call_soon(move || a.set(a.get() + 1)).unwrap();
    run_one_iteration(&lp);
    assert_eq!(after.get(), 2);

    let r = only_report(&reports);
    assert_eq!(r.kind, Some(ErrorKind::Panicked));
    assert!(r.error.contains("boom in callback 7f3a"), "{r:?}");
    assert!(!r.message.is_empty());
    assert!(
        r.file.as_deref().is_some_and(|f| f.ends_with("panics.rs")),
        "the report says where the callback was scheduled: {r:?}"
    );
    lp.close().unwrap();
}

#[test]
fn a_panicking_timer_callback_goes_to_the_handler() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    lp.call_later(Duration::from_millis(1), || panic!("timer boom 19c2"))
        .unwrap();
    lp.run_until_complete(lp.sleep(Duration::from_millis(10)))
        .unwrap();
    let r = only_report(&reports);
    assert_eq!(r.kind, Some(ErrorKind::Panicked));
    assert!(r.error.contains("timer boom 19c2"));
    lp.close().unwrap();
}

#[test]
fn many_panics_in_a_row_are_each_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    for i in 0..10 {
        lp.call_soon(move || panic!("panic number {i}")).unwrap();
    }
    run_one_iteration(&lp);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 10);
    for (i, r) in reports.iter().enumerate() {
        assert!(r.error.contains(&format!("panic number {i}")), "{r:?}");
    }
    drop(reports);
    lp.close().unwrap();
}

#[test]
fn a_non_string_panic_payload_is_still_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    lp.call_soon(|| std::panic::panic_any(42u32)).unwrap();
    run_one_iteration(&lp);
    assert_eq!(only_report(&reports).kind, Some(ErrorKind::Panicked));
    lp.close().unwrap();
}

#[test]
fn awaiting_a_panicked_task_gives_panicked_with_the_message() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let t = lp.create_task(async {
        aioloop::yield_now().await;
        if true {
            panic!("task boom 5e11");
        }
        1
    });
    let err = lp.run_until_complete(t).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.is_panic());
    assert!(err.to_string().contains("task boom 5e11"), "{err}");
    assert!(
        reports.borrow().is_empty(),
        "an error that was retrieved is not reported: {:?}",
        reports.borrow()
    );
    assert_eq!(lp.pending_tasks(), 0);
    // The loop keeps working.
    assert_eq!(lp.run_until_complete(async { 2 }).unwrap(), 2);
    lp.close().unwrap();
}

#[test]
fn a_panicking_task_does_not_disturb_other_tasks() {
    let lp = EventLoop::new().unwrap();
    let _reports = record_reports(&lp);
    let bad = lp.create_task(async {
        aioloop::yield_now().await;
        panic!("bad task");
    });
    let good = lp.create_task(async {
        aioloop::yield_now().await;
        aioloop::yield_now().await;
        "good"
    });
    let (b, g) = lp
        .run_until_complete(async { (bad.await, good.await) })
        .unwrap();
    assert!(b.unwrap_err().is_panic());
    assert_eq!(g.unwrap(), "good");
    lp.close().unwrap();
}

#[test]
fn a_detached_task_that_panics_is_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    lp.create_task(async {
        aioloop::yield_now().await;
        panic!("detached boom 2b7d");
    })
    .detach();
    spin(&lp, 3);
    let r = only_report(&reports);
    assert_eq!(r.message, "Task exception was never retrieved");
    assert_eq!(r.kind, Some(ErrorKind::Panicked));
    assert!(r.error.contains("detached boom 2b7d"), "{r:?}");
    assert_eq!(lp.pending_tasks(), 0);
    lp.close().unwrap();
}

#[test]
fn a_detached_task_report_names_its_creation_site_in_debug_mode() {
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    let reports = record_reports(&lp);
    drop(lp.create_task(async { panic!("debug detached") }));
    spin(&lp, 2);
    assert_one_report_names_this_file(&reports);
    lp.close().unwrap();
}

#[test]
fn a_panicked_task_whose_handle_is_dropped_unawaited_is_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let t = lp.create_task(async { panic!("unawaited boom 8c04") });
    spin(&lp, 2);
    assert!(t.done());
    assert!(
        reports.borrow().is_empty(),
        "the handle may still be awaited: nothing to report yet"
    );
    drop(t);
    let r = only_report(&reports);
    assert_eq!(r.message, "Task exception was never retrieved");
    assert_eq!(r.kind, Some(ErrorKind::Panicked));
    assert!(r.error.contains("unawaited boom 8c04"));
    lp.close().unwrap();
}

#[test]
fn cancelled_or_successful_tasks_dropped_unawaited_are_not_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let ok = lp.create_task(async { 1 });
    let cancelled = lp.create_task(std::future::pending::<()>());
    cancelled.cancel();
    drop(lp.create_task(std::future::pending::<()>())); // detached, then cancelled
    spin(&lp, 2);
    assert_eq!(lp.cancel_all_tasks(), 1);
    spin(&lp, 2);
    assert!(ok.done() && cancelled.done());
    drop(ok);
    drop(cancelled);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    lp.close().unwrap();
}

#[test]
fn a_taken_panic_result_is_not_reported_again() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let mut t = lp.create_task(async { panic!("taken") });
    spin(&lp, 2);
    assert!(t.try_result().unwrap().unwrap_err().is_panic());
    drop(t);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    lp.close().unwrap();
}

#[test]
fn a_panic_in_run_until_complete_returns_panicked_and_the_loop_stays_usable() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let err = lp
        .run_until_complete(async {
            aioloop::yield_now().await;
            panic!("main boom 41aa");
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.to_string().contains("main boom 41aa"), "{err}");
    assert!(!lp.is_running());
    assert!(reports.borrow().is_empty(), "the caller got the error");
    // Usable: callbacks, tasks, timers.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || r.set(true)).unwrap();
    let t = lp.create_task(async {
        aioloop::sleep(Duration::from_millis(1)).await;
        3
    });
    assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), 3);
    assert!(ran.get());
    lp.close().unwrap();
}

#[test]
fn a_panicking_exception_handler_does_not_kill_the_loop() {
    let lp = EventLoop::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.set_exception_handler(move |_, _| {
        c.set(c.get() + 1);
        panic!("the handler itself panics");
    });
    lp.call_soon(|| panic!("first")).unwrap();
    let after = Rc::new(Cell::new(false));
    let a = after.clone();
    lp.call_soon(move || a.set(true)).unwrap();
    run_one_iteration(&lp);
    assert!(after.get(), "later callbacks still run");
    assert_eq!(calls.get(), 1);
    // A detached panicking task goes through the same (panicking) handler.
    drop(lp.create_task(async { panic!("second") }));
    spin(&lp, 2);
    assert_eq!(calls.get(), 2);
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
    lp.close().unwrap();
}

#[test]
fn call_exception_handler_with_a_panicking_handler_returns() {
    let lp = EventLoop::new().unwrap();
    lp.set_exception_handler(|_, _| panic!("handler boom"));
    lp.call_exception_handler(&ExceptionContext::new("direct call"));
    lp.close().unwrap();
}

#[test]
fn set_get_and_clear_the_exception_handler() {
    let lp = EventLoop::new().unwrap();
    assert!(lp.get_exception_handler().is_none());
    let calls = Rc::new(RefCell::new(Vec::new()));
    let c = calls.clone();
    lp.set_exception_handler(move |_, ctx| c.borrow_mut().push(ctx.message.clone()));
    let h = lp.get_exception_handler().expect("a handler is installed");
    // The handler we get back is the one we installed.
    h(&lp, &ExceptionContext::new("via get"));
    lp.call_exception_handler(&ExceptionContext::new("via call"));
    assert_eq!(*calls.borrow(), ["via get", "via call"]);
    drop(h);

    lp.clear_exception_handler();
    assert!(lp.get_exception_handler().is_none());
    // Panics now go to the default handler (the log), not to ours.
    lp.call_soon(|| panic!("after clear")).unwrap();
    run_one_iteration(&lp);
    lp.call_exception_handler(&ExceptionContext::new("default"));
    assert_eq!(calls.borrow().len(), 2);
    lp.close().unwrap();
}

#[test]
fn the_handler_receives_the_loop() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    lp.set_exception_handler(move |l, _| *s.borrow_mut() = Some(l.clone()));
    lp.call_soon(|| panic!("x")).unwrap();
    run_one_iteration(&lp);
    assert_eq!(seen.borrow_mut().take(), Some(lp.clone()));
    lp.clear_exception_handler();
    lp.close().unwrap();
}

#[test]
fn a_handler_may_schedule_work_on_the_loop() {
    let lp = EventLoop::new().unwrap();
    let recovered = Rc::new(Cell::new(false));
    let r = recovered.clone();
    lp.set_exception_handler(move |l, _| {
        let r = r.clone();
        l.call_soon(move || r.set(true)).unwrap();
    });
    lp.call_soon(|| panic!("recover me")).unwrap();
    spin(&lp, 2);
    assert!(recovered.get());
    lp.clear_exception_handler();
    lp.close().unwrap();
}

#[test]
fn an_unawaited_panicked_task_report_names_its_creation_site_in_debug_mode() {
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    let reports = record_reports(&lp);
    let t = lp.create_task(async { panic!("debug unawaited") });
    spin(&lp, 2);
    drop(t);
    assert_one_report_names_this_file(&reports);
    lp.close().unwrap();
}

#[test]
fn a_panicking_threadsafe_callback_names_where_it_was_scheduled() {
    let lp = EventLoop::new().unwrap();
    let reports = record_reports(&lp);
    let ts = lp.threadsafe();
    std::thread::spawn(move || ts.call_soon_threadsafe(|| panic!("remote boom")).unwrap())
        .join()
        .unwrap();
    run_one_iteration(&lp);
    let r = only_report(&reports);
    assert!(r.error.contains("remote boom"));
    // Either no location ("when known") or the right one; never the library's.
    if let Some(file) = &r.file {
        assert!(file.ends_with("panics.rs"), "{r:?}");
    }
    lp.close().unwrap();
}
