//! Unix signals on the loop: `add_signal_handler` / `remove_signal_handler`,
//! `signal::recv`. Signals are process-wide, so the tests of this binary run
//! one at a time (a shared lock), and a test raises a signal only while one
//! of its own loops watches it (an unwatched SIGUSR1 would end the process).
#![cfg(unix)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use aioloop::signal::consts::{SIGFPE, SIGKILL, SIGSEGV, SIGSTOP, SIGUSR1, SIGUSR2};
use aioloop::signal::raise;
use aioloop::{ErrorKind, EventLoop};

static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `lp` until it is stopped, failing the test after 20 s.
fn run_until_stopped(lp: &EventLoop) {
    let t = lp
        .call_later(Duration::from_secs(20), || {
            panic!("no signal arrived in 20 s")
        })
        .unwrap();
    lp.run_forever().unwrap();
    t.cancel();
}

#[test]
fn the_callback_runs_on_the_loop_thread() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, l2) = (seen.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        s.borrow_mut().push(thread::current().id());
        l2.stop();
    })
    .unwrap();
    // Raised from another thread: the OS may run the signal handler there,
    // but the callback still runs on the loop's thread.
    thread::spawn(|| raise(SIGUSR1).unwrap()).join().unwrap();
    run_until_stopped(&lp);
    assert_eq!(*seen.borrow(), vec![thread::current().id()]);
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    lp.close().unwrap();
}

#[test]
fn each_delivery_calls_the_handler_again() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    let hits = Rc::new(Cell::new(0));
    let (h, l2) = (hits.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        h.set(h.get() + 1);
        l2.stop();
    })
    .unwrap();
    for n in 1..=3 {
        raise(SIGUSR1).unwrap();
        run_until_stopped(&lp);
        assert_eq!(hits.get(), n);
    }
    lp.close().unwrap();
}

#[test]
fn a_new_handler_replaces_the_old_one() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (a, l2) = (log.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        a.borrow_mut().push("old");
        l2.stop();
    })
    .unwrap();
    let (b, l3) = (log.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        b.borrow_mut().push("new");
        l3.stop();
    })
    .unwrap();
    raise(SIGUSR1).unwrap();
    run_until_stopped(&lp);
    assert_eq!(*log.borrow(), vec!["new"]);
    lp.close().unwrap();
}

#[test]
fn a_handler_may_replace_or_remove_itself() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (a, l2) = (log.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        a.borrow_mut().push(1);
        let (b, l3) = (a.clone(), l2.clone());
        l2.add_signal_handler(SIGUSR1, move || {
            b.borrow_mut().push(2);
            assert!(l3.remove_signal_handler(SIGUSR1).unwrap());
            l3.stop();
        })
        .unwrap();
        l2.stop();
    })
    .unwrap();
    // Keep SIGUSR1 watched after the handler removes itself.
    let other = EventLoop::new().unwrap();
    other.add_signal_handler(SIGUSR1, || {}).unwrap();
    raise(SIGUSR1).unwrap();
    run_until_stopped(&lp);
    raise(SIGUSR1).unwrap();
    run_until_stopped(&lp);
    assert_eq!(*log.borrow(), vec![1, 2]);
    assert!(!lp.remove_signal_handler(SIGUSR1).unwrap());
    other.close().unwrap();
    lp.close().unwrap();
}

#[test]
fn removing_reports_whether_there_was_a_handler() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    assert!(!lp.remove_signal_handler(SIGUSR2).unwrap());
    lp.add_signal_handler(SIGUSR2, || {}).unwrap();
    assert!(lp.remove_signal_handler(SIGUSR2).unwrap());
    assert!(!lp.remove_signal_handler(SIGUSR2).unwrap());
    // It can be added again after removal.
    let l2 = lp.clone();
    lp.add_signal_handler(SIGUSR2, move || l2.stop()).unwrap();
    raise(SIGUSR2).unwrap();
    run_until_stopped(&lp);
    lp.close().unwrap();
}

#[test]
fn uncatchable_and_invalid_signals_are_invalid_input() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    for sig in [SIGKILL, SIGSTOP, SIGSEGV, SIGFPE, 0, -1, 1000] {
        let e = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "signal {sig}: {e}");
        assert!(e.message().contains(&sig.to_string()), "{e}");
        assert_eq!(
            lp.remove_signal_handler(sig).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    let e = lp.add_signal_handler(SIGKILL, || {}).unwrap_err();
    assert!(e.message().contains("SIGKILL"), "{e}");
    lp.close().unwrap();
}

#[test]
fn a_closed_loop_refuses_handlers_and_forgets_its_own() {
    let _g = serial();
    let lp = EventLoop::new().unwrap();
    lp.add_signal_handler(SIGUSR2, || panic!("runs after close"))
        .unwrap();
    lp.close().unwrap();
    assert!(!lp.remove_signal_handler(SIGUSR2).unwrap());
    assert_eq!(
        lp.add_signal_handler(SIGUSR2, || {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
    // Another loop still gets the signal; the closed one does nothing.
    let other = EventLoop::new().unwrap();
    let l2 = other.clone();
    other
        .add_signal_handler(SIGUSR2, move || l2.stop())
        .unwrap();
    raise(SIGUSR2).unwrap();
    run_until_stopped(&other);
    other.close().unwrap();
}

#[test]
fn every_loop_watching_a_signal_gets_it() {
    let _g = serial();
    let (ready_tx, ready_rx) = mpsc::channel();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let ready = ready_tx.clone();
            thread::spawn(move || {
                let lp = EventLoop::new().unwrap();
                let hits = Rc::new(Cell::new(0));
                let (h, l2) = (hits.clone(), lp.clone());
                lp.add_signal_handler(SIGUSR2, move || {
                    h.set(h.get() + 1);
                    l2.stop();
                })
                .unwrap();
                ready.send(()).unwrap();
                run_until_stopped(&lp);
                lp.close().unwrap();
                hits.get()
            })
        })
        .collect();
    ready_rx.recv().unwrap();
    ready_rx.recv().unwrap();
    raise(SIGUSR2).unwrap();
    for t in threads {
        assert_eq!(t.join().unwrap(), 1);
    }
}

#[test]
fn recv_waits_for_one_delivery() {
    let _g = serial();
    aioloop::run(async {
        let lp = aioloop::get_running_loop().unwrap();
        let waiter = lp.create_task(aioloop::signal::recv(SIGUSR1));
        aioloop::yield_now().await;
        assert!(!waiter.done());
        raise(SIGUSR1).unwrap();
        aioloop::timeout(Duration::from_secs(20), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // No watcher is left behind.
        assert!(!lp.remove_signal_handler(SIGUSR1).unwrap());
    })
    .unwrap();
}

#[test]
fn recv_outside_a_loop_and_on_bad_signals_fails() {
    let _g = serial();
    let e = futures::executor::block_on(aioloop::signal::recv(SIGUSR1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoRunningLoop);
    let e = aioloop::run(aioloop::signal::recv(SIGKILL))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

/// Run in a child process by `removal_restores_the_default_action`.
#[test]
#[ignore = "run by removal_restores_the_default_action in a child process"]
fn child_removes_its_handler_then_raises() {
    if std::env::var_os("AIOLOOP_SIGNAL_CHILD").is_none() {
        return;
    }
    let lp = EventLoop::new().unwrap();
    lp.add_signal_handler(SIGUSR1, || {}).unwrap();
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    raise(SIGUSR1).unwrap(); // the default action: the process ends here
    std::process::exit(0);
}

#[test]
fn removal_restores_the_default_action() {
    use std::os::unix::process::ExitStatusExt;
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_removes_its_handler_then_raises",
            "--ignored",
            "--nocapture",
        ])
        .env("AIOLOOP_SIGNAL_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.signal(), Some(SIGUSR1), "{st:?}");
}
