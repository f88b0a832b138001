//! Readiness callbacks on raw file descriptors: `add_reader` / `remove_reader`
//! / `add_writer` / `remove_writer` (level-triggered, as asyncio).
#![cfg(unix)]

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};

mod util;

use util::run_forever_guarded;

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// One read of up to 16 bytes, whatever it gives: consumes what the tests
/// here write (a byte or two) without blocking.
fn read_once(mut s: &UnixStream) {
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf);
}

/// Runs several loop iterations, polling the backend in each, plus a short
/// sleep so the kernel has delivered whatever it is going to deliver.
fn run_a_while(lp: &EventLoop) {
    lp.run_until_complete(async {
        for _ in 0..5 {
            aioloop::yield_now().await;
        }
        aioloop::sleep(Duration::from_millis(20)).await;
        for _ in 0..5 {
            aioloop::yield_now().await;
        }
    })
    .unwrap();
}

#[test]
fn add_reader_fires_when_data_arrives() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (l2, g2) = (lp.clone(), got.clone());
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 64];
        match (&b).read(&mut buf) {
            Ok(n) => g2.borrow_mut().extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == IoKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if g2.borrow().len() >= 5 {
            assert!(l2.remove_reader(fd).unwrap());
            l2.stop();
        }
    })
    .unwrap();
    a.write_all(b"hello").unwrap();
    run_forever_guarded(&lp);
    assert_eq!(&*got.borrow(), b"hello");
    lp.close().unwrap();
}

#[test]
fn add_reader_does_not_fire_without_data() {
    let lp = EventLoop::new().unwrap();
    let (_a, b) = pair();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_reader(b.as_raw_fd(), move || c.set(c.get() + 1))
        .unwrap();
    run_a_while(&lp);
    assert_eq!(calls.get(), 0);
    assert!(lp.remove_reader(b.as_raw_fd()).unwrap());
    lp.close().unwrap();
}

#[test]
fn add_reader_works_on_a_pipe() {
    // A child's stdout is a real pipe (std::io::pipe is newer than our MSRV).
    let lp = EventLoop::new().unwrap();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "printf through-a-pipe"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let fd = out.as_raw_fd();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (l2, g2) = (lp.clone(), got.clone());
    lp.add_reader(fd, move || {
        // Readable, so one read() does not block; 0 means the writer is gone.
        let mut buf = [0u8; 4];
        let n = out.read(&mut buf).unwrap();
        g2.borrow_mut().extend_from_slice(&buf[..n]);
        if n == 0 {
            assert!(l2.remove_reader(fd).unwrap());
            l2.stop();
        }
    })
    .unwrap();
    run_forever_guarded(&lp);
    child.wait().unwrap();
    assert_eq!(&*got.borrow(), b"through-a-pipe");
    lp.close().unwrap();
}

#[test]
fn add_reader_is_level_triggered() {
    // The callback reads one byte per call: it must be called again while
    // bytes remain, without new data arriving.
    const N: usize = 50;
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let got = Rc::new(RefCell::new(Vec::new()));
    let calls = Rc::new(Cell::new(0usize));
    let (l2, g2, c2) = (lp.clone(), got.clone(), calls.clone());
    lp.add_reader(fd, move || {
        c2.set(c2.get() + 1);
        let mut one = [0u8; 1];
        match (&b).read(&mut one) {
            Ok(1) => g2.borrow_mut().push(one[0]),
            Ok(_) => panic!("unexpected EOF"),
            Err(e) if e.kind() == IoKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if g2.borrow().len() == N {
            l2.stop();
        }
    })
    .unwrap();
    let data: Vec<u8> = (0..N as u8).collect();
    a.write_all(&data).unwrap(); // all at once: one edge only
    run_forever_guarded(&lp);
    assert_eq!(*got.borrow(), data);
    assert_eq!(
        calls.get(),
        N,
        "exactly one call per byte: no lost and no spurious calls"
    );
    // All read: no more calls.
    run_a_while(&lp);
    assert_eq!(calls.get(), N);
    assert!(lp.remove_reader(fd).unwrap());
    lp.close().unwrap();
}

#[test]
fn an_unread_fd_keeps_calling_its_reader() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let calls = Rc::new(Cell::new(0));
    let (l2, c2) = (lp.clone(), calls.clone());
    lp.add_reader(b.as_raw_fd(), move || {
        // Never reads.
        c2.set(c2.get() + 1);
        if c2.get() == 10 {
            l2.stop();
        }
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    run_forever_guarded(&lp);
    assert_eq!(calls.get(), 10);
    lp.remove_reader(b.as_raw_fd()).unwrap();
    lp.close().unwrap();
}

#[test]
fn remove_reader_returns_true_then_false_and_stops_callbacks() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    assert!(!lp.remove_reader(fd).unwrap(), "nothing registered yet");
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_reader(fd, move || c.set(c.get() + 1)).unwrap();
    assert!(lp.remove_reader(fd).unwrap());
    assert!(!lp.remove_reader(fd).unwrap());
    a.write_all(b"data").unwrap();
    run_a_while(&lp);
    assert_eq!(calls.get(), 0, "a removed reader is never called");
    lp.close().unwrap();
}

#[test]
fn remove_reader_from_inside_the_callback_stops_it() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let (l2, c2) = (lp.clone(), calls.clone());
    lp.add_reader(fd, move || {
        c2.set(c2.get() + 1);
        // Leaves the data unread: a level-triggered reader would fire again.
        assert!(l2.remove_reader(fd).unwrap());
    })
    .unwrap();
    a.write_all(b"zz").unwrap();
    run_a_while(&lp);
    assert_eq!(calls.get(), 1);
    lp.close().unwrap();
}

#[test]
fn add_writer_fires_on_a_writable_socket() {
    let lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    let fd = a.as_raw_fd();
    let wrote = Rc::new(Cell::new(false));
    let (l2, w2) = (lp.clone(), wrote.clone());
    lp.add_writer(fd, move || {
        (&a).write_all(b"w").unwrap();
        w2.set(true);
        assert!(l2.remove_writer(fd).unwrap());
        l2.stop();
    })
    .unwrap();
    run_forever_guarded(&lp);
    assert!(wrote.get());
    let mut buf = [0u8; 4];
    assert_eq!((&b).read(&mut buf).unwrap(), 1);
    assert!(!lp.remove_writer(fd).unwrap());
    lp.close().unwrap();
}

#[test]
fn reader_and_writer_on_the_same_fd_are_independent() {
    let lp = EventLoop::new().unwrap();
    let (mut peer, s) = pair();
    let fd = s.as_raw_fd();
    let reads = Rc::new(Cell::new(0));
    let writes = Rc::new(Cell::new(0));
    let (l2, r2) = (lp.clone(), reads.clone());
    let s2 = s.try_clone().unwrap();
    lp.add_reader(fd, move || {
        read_once(&s2);
        r2.set(r2.get() + 1);
        l2.stop();
    })
    .unwrap();
    let (l3, w3) = (lp.clone(), writes.clone());
    lp.add_writer(fd, move || {
        w3.set(w3.get() + 1);
        l3.remove_writer(fd).unwrap();
    })
    .unwrap();
    // Writable at once; readable only once the peer writes.
    run_a_while(&lp);
    assert_eq!(writes.get(), 1);
    assert_eq!(reads.get(), 0);
    peer.write_all(b"r").unwrap();
    run_forever_guarded(&lp);
    assert_eq!(reads.get(), 1);
    // Removing the writer left the reader in place.
    assert!(lp.remove_reader(fd).unwrap());
    drop(s);
    lp.close().unwrap();
}

#[test]
fn add_reader_again_replaces_the_reader() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let first = Rc::new(Cell::new(0));
    let old_state = Rc::new(());
    let (f, keep) = (first.clone(), old_state.clone());
    lp.add_reader(fd, move || {
        let _ = &keep;
        f.set(f.get() + 1)
    })
    .unwrap();
    let second = Rc::new(Cell::new(0));
    let (l2, s2) = (lp.clone(), second.clone());
    lp.add_reader(fd, move || {
        read_once(&b);
        s2.set(s2.get() + 1);
        l2.stop();
    })
    .unwrap();
    assert_eq!(
        Rc::strong_count(&old_state),
        1,
        "the replaced reader (and what it captured) is dropped"
    );
    a.write_all(b"x").unwrap();
    run_forever_guarded(&lp);
    assert_eq!(first.get(), 0);
    assert_eq!(second.get(), 1);
    assert!(lp.remove_reader(fd).unwrap());
    assert!(!lp.remove_reader(fd).unwrap(), "one registration, not two");
    lp.close().unwrap();
}

#[test]
fn add_reader_with_a_negative_fd_is_invalid_input() {
    let lp = EventLoop::new().unwrap();
    let err = lp.add_reader(-1, || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("-1"), "{err}");
    let err = lp.add_writer(-5, || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    lp.close().unwrap();
}

#[test]
fn add_reader_with_a_never_opened_fd_is_an_io_error() {
    let lp = EventLoop::new().unwrap();
    let err = lp.add_reader(987_654, || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.io_error().is_some());
    assert!(
        err.to_string().contains("987654"),
        "the message names the fd: {err}"
    );
    // Nothing half-registered was left behind.
    assert!(!lp.remove_reader(987_654).unwrap());
    let err = lp.add_writer(987_654, || {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    lp.close().unwrap();
}

#[test]
fn add_reader_on_a_closed_fd_is_an_io_error() {
    let lp = EventLoop::new().unwrap();
    let fd = {
        let (a, _b) = pair();
        a.as_raw_fd()
    }; // both ends closed here
       // The number may be reused by a concurrent test: only check that a
       // registration that fails reports Io, and one that succeeds can be undone.
    match lp.add_reader(fd, || {}) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Io),
        Ok(()) => assert!(lp.remove_reader(fd).unwrap()),
    }
    lp.close().unwrap();
}

#[test]
fn add_reader_on_a_closed_loop_is_closed() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let (_a, b) = pair();
    assert_eq!(
        lp.add_reader(b.as_raw_fd(), || {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        lp.add_writer(b.as_raw_fd(), || {}).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(!lp.remove_reader(b.as_raw_fd()).unwrap());
}

#[test]
fn close_deregisters_readers_and_writers() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let state = Rc::new(());
    let s = state.clone();
    lp.add_reader(b.as_raw_fd(), move || {
        let _ = &s;
    })
    .unwrap();
    let s = state.clone();
    lp.add_writer(a.as_raw_fd(), move || {
        let _ = &s;
    })
    .unwrap();
    lp.close().unwrap();
    assert_eq!(Rc::strong_count(&state), 1, "close() drops the callbacks");
    // The fds are still ours and fine; closing them afterwards is fine too.
    a.write_all(b"still works").unwrap();
    drop(a);
    drop(b);
}

#[test]
fn closing_the_fd_before_the_loop_does_not_panic() {
    let lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    lp.add_reader(b.as_raw_fd(), || {}).unwrap();
    drop(a);
    drop(b); // closed behind the loop's back (the docs say not to)
    lp.close().unwrap();
}

#[test]
fn peer_hang_up_wakes_the_reader() {
    let lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    let eof = Rc::new(Cell::new(false));
    let (l2, e2) = (lp.clone(), eof.clone());
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 8];
        match (&b).read(&mut buf) {
            Ok(0) => {
                e2.set(true);
                l2.remove_reader(fd).unwrap();
                l2.stop();
            }
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) if e.kind() == IoKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    })
    .unwrap();
    let l3 = lp.clone();
    // Hang up from a later iteration, while the loop waits.
    let a = RefCell::new(Some(a));
    lp.call_later(Duration::from_millis(5), move || {
        drop(a.borrow_mut().take());
        let _ = &l3;
    })
    .unwrap();
    run_forever_guarded(&lp);
    assert!(eof.get(), "read() returned 0 after the peer hung up");
    lp.close().unwrap();
}

#[test]
fn a_panicking_reader_is_reported_and_keeps_its_registration() {
    let lp = EventLoop::new().unwrap();
    let reports = Rc::new(Cell::new(0));
    let r = reports.clone();
    lp.set_exception_handler(move |_, ctx| {
        assert!(ctx.error.as_ref().unwrap().is_panic());
        r.set(r.get() + 1);
    });
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let (l2, c2) = (lp.clone(), calls.clone());
    lp.add_reader(fd, move || {
        c2.set(c2.get() + 1);
        if c2.get() == 1 {
            panic!("reader boom");
        }
        read_once(&b);
        l2.stop();
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    run_forever_guarded(&lp);
    assert_eq!(reports.get(), 1);
    assert_eq!(
        calls.get(),
        2,
        "called again after the panic (data still there)"
    );
    assert!(lp.remove_reader(fd).unwrap());
    lp.clear_exception_handler();
    lp.close().unwrap();
}

#[test]
fn a_busy_loop_still_dispatches_readiness_callbacks() {
    // A task that never lets the ready queue empty must not starve I/O.
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let fired = Rc::new(Cell::new(false));
    let f2 = fired.clone();
    lp.add_reader(fd, move || {
        read_once(&b);
        f2.set(true);
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    let f3 = fired.clone();
    let iterations = lp
        .run_until_complete(async move {
            let mut n = 0u32;
            while !f3.get() && n < 100_000 {
                aioloop::yield_now().await;
                n += 1;
            }
            n
        })
        .unwrap();
    assert!(
        fired.get(),
        "the reader never ran in {iterations} busy iterations"
    );
    assert!(lp.remove_reader(fd).unwrap());
    lp.close().unwrap();
}

#[test]
fn stop_then_run_forever_dispatches_ready_io() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let fd = b.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_reader(fd, move || {
        read_once(&b);
        c.set(c.get() + 1);
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    // A socketpair write is visible to the peer at once; no waiting needed.
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(
        calls.get(),
        1,
        "the single iteration polls for I/O and runs the ready reader"
    );
    assert!(lp.remove_reader(fd).unwrap());
    lp.close().unwrap();
}
