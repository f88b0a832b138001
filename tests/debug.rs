//! Debug mode: slow callbacks and task steps are reported through the `log`
//! crate at warn level; `set_debug` / `get_debug`; `Runner::debug`.

use std::sync::{Mutex, Once};
use std::thread::{self, ThreadId};
use std::time::Duration;

use aioloop::{EventLoop, Runner};

mod util;

use util::run_one_iteration;

/// Every record logged, with the thread that logged it: tests in this file run
/// in parallel, each on its own thread, and each runs its loop on that thread.
static RECORDS: Mutex<Vec<(ThreadId, log::Level, String, String)>> = Mutex::new(Vec::new());
static INIT: Once = Once::new();

struct TestLogger;

impl log::Log for TestLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS.lock().unwrap_or_else(|p| p.into_inner()).push((
            thread::current().id(),
            record.level(),
            record.target().to_string(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

fn install_logger() {
    INIT.call_once(|| {
        log::set_logger(&TestLogger).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The (level, message) records this thread logged.
fn my_records() -> Vec<(log::Level, String)> {
    let me = thread::current().id();
    RECORDS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| r.0 == me)
        .map(|r| (r.1, r.3.clone()))
        .collect()
}

fn slow_reports() -> Vec<String> {
    my_records()
        .into_iter()
        .filter(|(level, msg)| *level == log::Level::Warn && msg.contains("took"))
        .map(|(_, msg)| msg)
        .collect()
}

#[test]
fn a_slow_callback_is_reported_in_debug_mode() {
    install_logger();
    let lp = EventLoop::builder()
        .debug(true)
        .slow_callback_duration(Duration::from_millis(10))
        .build()
        .unwrap();
    assert!(lp.get_debug());
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(10));
    lp.call_soon(|| thread::sleep(Duration::from_millis(30)))
        .unwrap();
    run_one_iteration(&lp);
    let reports = slow_reports();
    assert_eq!(reports.len(), 1, "{:?}", my_records());
    assert!(
        reports[0].contains("debug.rs"),
        "the report names where the callback was scheduled: {}",
        reports[0]
    );
    lp.close().unwrap();
}

#[test]
fn a_slow_task_step_is_reported_in_debug_mode() {
    install_logger();
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    lp.set_slow_callback_duration(Duration::from_millis(10));
    let t = lp.create_task(async {
        aioloop::yield_now().await;
        thread::sleep(Duration::from_millis(30));
    });
    lp.run_until_complete(t).unwrap().unwrap();
    let reports = slow_reports();
    assert!(!reports.is_empty(), "{:?}", my_records());
    lp.close().unwrap();
}

#[test]
fn fast_callbacks_are_not_reported_in_debug_mode() {
    install_logger();
    let lp = EventLoop::builder()
        .debug(true)
        .slow_callback_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..10 {
        lp.call_soon(|| {}).unwrap();
    }
    run_one_iteration(&lp);
    assert!(slow_reports().is_empty(), "{:?}", my_records());
    lp.close().unwrap();
}

#[test]
fn a_slow_callback_is_not_reported_when_debug_is_off() {
    install_logger();
    let lp = EventLoop::builder()
        .slow_callback_duration(Duration::from_millis(10))
        .build()
        .unwrap();
    assert!(!lp.get_debug());
    lp.call_soon(|| thread::sleep(Duration::from_millis(30)))
        .unwrap();
    run_one_iteration(&lp);
    assert!(slow_reports().is_empty(), "{:?}", my_records());
    lp.close().unwrap();
}

#[test]
fn turning_debug_off_stops_the_reports() {
    install_logger();
    let lp = EventLoop::new().unwrap();
    lp.set_slow_callback_duration(Duration::from_millis(5));
    lp.set_debug(true);
    lp.call_soon(|| thread::sleep(Duration::from_millis(15)))
        .unwrap();
    run_one_iteration(&lp);
    assert_eq!(slow_reports().len(), 1, "{:?}", my_records());
    lp.set_debug(false);
    lp.call_soon(|| thread::sleep(Duration::from_millis(15)))
        .unwrap();
    run_one_iteration(&lp);
    assert_eq!(slow_reports().len(), 1, "{:?}", my_records());
    lp.close().unwrap();
}

#[test]
fn set_debug_and_get_debug() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.get_debug(), "off by default");
    lp.set_debug(true);
    assert!(lp.get_debug());
    assert!(lp.clone().get_debug(), "clones share the loop's state");
    lp.set_debug(false);
    assert!(!lp.get_debug());
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(100));
    lp.set_slow_callback_duration(Duration::from_millis(7));
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(7));
    lp.close().unwrap();
}

#[test]
fn runner_debug_sets_the_loops_debug_mode() {
    // A loop factory keeps the global policy out of it.
    let mut on = Runner::with_loop_factory(EventLoop::new).debug(true);
    let lp = on.get_loop().unwrap();
    assert!(lp.get_debug());
    assert!(on
        .run(async { aioloop::get_running_loop().unwrap().get_debug() })
        .unwrap());
    on.close().unwrap();
    assert!(lp.is_closed());

    let mut off =
        Runner::with_loop_factory(|| EventLoop::builder().debug(true).build()).debug(false);
    assert!(
        !off.get_loop().unwrap().get_debug(),
        "debug(false) wins too"
    );
    off.close().unwrap();

    let mut unset = Runner::with_loop_factory(|| EventLoop::builder().debug(true).build());
    assert!(
        unset.get_loop().unwrap().get_debug(),
        "without debug() the loop keeps its own setting"
    );
    unset.close().unwrap();
}

#[test]
fn runner_debug_reports_slow_callbacks() {
    install_logger();
    let mut r = Runner::with_loop_factory(|| {
        EventLoop::builder()
            .slow_callback_duration(Duration::from_millis(10))
            .build()
    })
    .debug(true);
    r.run(async {
        let lp = aioloop::get_running_loop().unwrap();
        lp.call_soon(|| thread::sleep(Duration::from_millis(30)))
            .unwrap();
        aioloop::yield_now().await;
        aioloop::yield_now().await;
    })
    .unwrap();
    r.close().unwrap();
    assert_eq!(slow_reports().len(), 1, "{:?}", my_records());
}
