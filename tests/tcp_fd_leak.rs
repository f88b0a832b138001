//! The open file descriptor count returns to its baseline after 200
//! connect / accept / exchange / close cycles and the loop is dropped.
//!
//! The only test of this binary, so no other test opens or closes fds while
//! it counts.
#![cfg(target_os = "linux")]

use std::time::Duration;

use aioloop::net::{TcpListener, TcpStream};
use aioloop::EventLoop;
use futures::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn cycles(lp: &EventLoop, n: usize) {
    lp.run_until_complete(async {
        let lp = aioloop::get_running_loop().unwrap();
        for i in 0..n {
            // A new listener every few cycles, so listeners are counted too.
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let server = lp.create_task(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 32];
                let n = s.read(&mut buf).await.unwrap();
                s.write_all(&buf[..n]).await.unwrap();
                s.close().await.unwrap();
                assert_eq!(s.read(&mut buf).await.unwrap(), 0);
            });
            let mut c = aioloop::timeout(LIMIT, TcpStream::connect(addr))
                .await
                .unwrap()
                .unwrap();
            let msg = format!("cycle {i}");
            c.write_all(msg.as_bytes()).await.unwrap();
            c.close().await.unwrap();
            let mut back = String::new();
            aioloop::timeout(LIMIT, c.read_to_string(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(back, msg);
            aioloop::timeout(LIMIT, server).await.unwrap().unwrap();
            // A refused connection too: its socket must be closed as well.
            let err = TcpStream::connect(addr).await.unwrap_err();
            assert_eq!(err.kind(), aioloop::ErrorKind::Io);
        }
    })
    .unwrap();
}

#[test]
fn fd_count_returns_to_baseline() {
    // Warm up anything lazily created once per process (none expected).
    let lp = EventLoop::new().unwrap();
    cycles(&lp, 1);
    lp.close().unwrap();
    drop(lp);

    let before = open_fds();
    let lp = EventLoop::new().unwrap();
    cycles(&lp, 200);
    let during = open_fds();
    lp.close().unwrap();
    drop(lp);
    let after = open_fds();
    eprintln!("open fds: {before} before, {during} with the loop open, {after} after");
    assert!(
        after.abs_diff(before) <= 2,
        "open fds: {before} before, {during} with the loop open, {after} after"
    );
    // With the loop still open, only the loop's own fds remain (the driver
    // and its waker): the sockets themselves were closed.
    assert!(
        during <= before + 4,
        "open fds: {before} before, {during} with the loop open after 200 cycles"
    );

    // Streams and listeners still alive when the loop closes are closed when
    // dropped afterwards.
    let lp = EventLoop::new().unwrap();
    let listener = TcpListener::bind_on(&lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let c = lp
        .run_until_complete(TcpStream::connect_on(&lp, addr))
        .unwrap()
        .unwrap();
    let (s, _) = lp.run_until_complete(listener.accept()).unwrap().unwrap();
    lp.close().unwrap();
    drop((c, s, listener));
    drop(lp);
    let end = open_fds();
    assert!(
        end.abs_diff(before) <= 2,
        "open fds: {before} before, {end} after objects outlived their loop"
    );
}
