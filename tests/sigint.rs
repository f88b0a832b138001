//! `aioloop::run` on the main thread turns SIGINT into cancelling the main
//! future and returns `ErrorKind::Interrupted` (asyncio: KeyboardInterrupt).
//! Runs without the test harness so that `main` is the process's main thread.

#[cfg(unix)]
fn main() {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    let dropped = Rc::new(Cell::new(false));
    let flag = Flag(dropped.clone());
    let sender = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        aioloop::signal::raise(aioloop::signal::consts::SIGINT).expect("raise SIGINT");
    });
    let started = std::time::Instant::now();
    let result = aioloop::run(async move {
        let _flag = flag;
        aioloop::sleep(Duration::from_secs(30)).await;
    });
    sender.join().unwrap();
    let err = result.expect_err("run() should have been interrupted");
    assert_eq!(err.kind(), aioloop::ErrorKind::Interrupted, "{err}");
    assert!(dropped.get(), "the main future was not dropped (cancelled)");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "interrupt took too long"
    );

    // The hook is gone after run(): a later run() is not affected by it, and
    // SIGINT handling in the process is back to what it was (not tested by
    // raising it again, which would end this process).
    assert_eq!(aioloop::run(async { 7 }).unwrap(), 7);
    println!("sigint: 1 passed, 0 failed");
}

#[cfg(not(unix))]
fn main() {
    println!("sigint: 0 passed, 0 failed, 1 skipped (Unix only)");
}
