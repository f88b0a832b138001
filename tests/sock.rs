//! asyncio's low-level socket API on the loop: `sock_recv`, `sock_recv_into`,
//! `sock_recvfrom`, `sock_sendall`, `sock_sendto`, `sock_connect`,
//! `sock_accept`, on the caller's std sockets.
#![cfg(unix)]

use std::cell::Cell;
use std::future::Future as _;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use aioloop::{ErrorKind, EventLoop};

/// Runs `f` on its own thread and fails the test if it takes longer than
/// 30 s: a bug here shows as a hang, never as a stuck test run.
fn guarded(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic.
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test hung for 30 s"),
    }
}

/// A connected pair of std TCP sockets (blocking, as std makes them).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn echo_with_accept_recv_sendall_connect() {
    guarded(|| {
        let out = aioloop::run(async {
            let lp = aioloop::get_running_loop().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let lp2 = lp.clone();
            let server = lp.create_task(async move {
                let (conn, peer) = lp2.sock_accept(&listener).await.unwrap();
                assert!(peer.ip().is_loopback());
                let mut total = 0;
                loop {
                    let data = lp2.sock_recv(&conn, 1024).await.unwrap();
                    if data.is_empty() {
                        break total;
                    }
                    total += data.len();
                    lp2.sock_sendall(&conn, &data).await.unwrap();
                }
            });
            let client = lp.sock_connect(addr).await.unwrap();
            assert_eq!(client.peer_addr().unwrap(), addr);
            let msg = pattern(100_000);
            lp.sock_sendall(&client, &msg).await.unwrap();
            let mut echo = Vec::new();
            let mut buf = [0u8; 4096];
            while echo.len() < msg.len() {
                let n = lp.sock_recv_into(&client, &mut buf).await.unwrap();
                assert!(n > 0, "the echo ended early");
                echo.extend_from_slice(&buf[..n]);
            }
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let served = aioloop::timeout(Duration::from_secs(20), server)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(served, msg.len());
            assert!(echo == msg, "the echo is not byte-exact");
            // The peer closed: end of stream.
            assert!(lp.sock_recv(&client, 16).await.unwrap().is_empty());
        });
        out.unwrap();
    });
}

#[test]
fn sendall_4_mib_to_a_slow_reader_is_byte_exact_and_does_not_block_the_loop() {
    guarded(|| {
        const LEN: usize = 4 << 20;
        let (a, b) = tcp_pair();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        // The peer reads nothing until told, then reads slowly.
        let reader = thread::spawn(move || {
            let mut b = b;
            go_rx.recv().unwrap();
            let mut got = Vec::with_capacity(LEN);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = b.read(&mut buf).unwrap();
                if n == 0 {
                    break got;
                }
                got.extend_from_slice(&buf[..n]);
                thread::sleep(Duration::from_millis(1));
            }
        });
        let lp = EventLoop::new().unwrap();
        let done = Rc::new(Cell::new(false));
        let waited = Rc::new(Cell::new(false));
        let data = pattern(LEN);
        lp.run_until_complete(async {
            let (d, w) = (done.clone(), waited.clone());
            // Runs while sock_sendall waits for a peer that does not read:
            // the kernel cannot take 4 MiB at once, so it must be waiting.
            let watcher = lp.create_task(async move {
                aioloop::sleep(Duration::from_millis(20)).await;
                w.set(!d.get());
                go_tx.send(()).unwrap();
            });
            lp.sock_sendall(&a, &data).await.unwrap();
            done.set(true);
            watcher.await.unwrap();
        })
        .unwrap();
        drop(a);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), LEN);
        assert!(got == data, "the bytes differ");
        assert!(
            waited.get(),
            "sock_sendall waited for writability while another task ran"
        );
        lp.close().unwrap();
    });
}

#[test]
fn udp_recvfrom_and_sendto() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        let a = Rc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        lp.run_until_complete(async {
            // The receive starts first and must wait for the datagram.
            let (lp2, a2) = (lp.clone(), a.clone());
            let recv = lp.create_task(async move { lp2.sock_recvfrom(&a2, 100).await });
            for _ in 0..3 {
                aioloop::yield_now().await;
            }
            assert_eq!(lp.sock_sendto(&b, b"datagram", a_addr).await.unwrap(), 8);
            let (data, from) = recv.await.unwrap().unwrap();
            assert_eq!(data, b"datagram");
            assert_eq!(from, b_addr);

            // Truncation to the requested size, and recvfrom_into.
            lp.sock_sendto(&a, b"0123456789", b_addr).await.unwrap();
            let (short, _) = lp.sock_recvfrom(&b, 4).await.unwrap();
            assert_eq!(short, b"0123");
            lp.sock_sendto(&a, b"xyz", b_addr).await.unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = lp.sock_recvfrom_into(&b, &mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"xyz"[..], a_addr));
        })
        .unwrap();
        lp.close().unwrap();
    });
}

#[test]
fn a_dropped_sock_recv_leaves_no_registration_behind() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        let (mut a, b) = tcp_pair();
        lp.run_until_complete(async {
            for _ in 0..3 {
                let err = aioloop::timeout(Duration::from_millis(20), lp.sock_recv(&b, 16))
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), ErrorKind::TimedOut);
            }
        })
        .unwrap();
        // Nothing is left in the selector: a readiness callback on the same
        // fd registers fine (it would fail with EEXIST otherwise).
        lp.add_reader(b.as_raw_fd(), || {}).unwrap();
        assert!(lp.remove_reader(b.as_raw_fd()).unwrap());
        // And a later sock_recv on the same socket works.
        a.write_all(b"late").unwrap();
        let data = lp
            .run_until_complete(lp.sock_recv(&b, 16))
            .unwrap()
            .unwrap();
        assert_eq!(data, b"late");
        lp.close().unwrap();
    });
}

#[test]
fn one_receiver_and_one_sender_at_a_time() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        let (a, b) = tcp_pair();
        let b = Rc::new(b);
        lp.run_until_complete(async {
            let (lp2, b2) = (lp.clone(), b.clone());
            let recv = lp.create_task(async move { lp2.sock_recv(&b2, 16).await });
            aioloop::yield_now().await;
            // A second receive on the same socket is refused, not left hanging.
            let err = lp.sock_recv(&b, 16).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            // A send on the same socket while the receive waits is fine.
            lp.sock_sendall(&b, b"to a").await.unwrap();
            let mut buf = [0u8; 4];
            (&a).read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"to a");
            (&a).write_all(b"to b").unwrap();
            assert_eq!(recv.await.unwrap().unwrap(), b"to b");
        })
        .unwrap();
        lp.close().unwrap();
    });
}

#[test]
fn a_blocking_socket_is_made_non_blocking_and_never_blocks_the_loop() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        let (_a, b) = tcp_pair(); // std sockets start in blocking mode
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        lp.call_later(Duration::from_millis(5), move || r.set(true))
            .unwrap();
        let err = lp
            .run_until_complete(aioloop::timeout(
                Duration::from_millis(50),
                lp.sock_recv(&b, 16),
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(ran.get(), "the loop kept running callbacks");
        // Documented: the socket stays non-blocking afterwards.
        let mut buf = [0u8; 4];
        assert_eq!((&b).read(&mut buf).unwrap_err().kind(), IoKind::WouldBlock);
        lp.close().unwrap();
    });
}

#[test]
fn connect_refused_names_the_address() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        // A port that was just free: nothing listens there now.
        let addr: SocketAddr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = lp
            .run_until_complete(lp.sock_connect(addr))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert_eq!(
            err.io_error().unwrap().kind(),
            IoKind::ConnectionRefused,
            "{err}"
        );
        lp.close().unwrap();
    });
}

#[test]
fn ipv6_accept_and_connect() {
    guarded(|| {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let addr = listener.local_addr().unwrap();
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let lp2 = lp.clone();
            let accept = lp.create_task(async move { lp2.sock_accept(&listener).await });
            let c = lp.sock_connect(addr).await.unwrap();
            let (s, peer) = accept.await.unwrap().unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            lp.sock_sendall(&c, b"v6").await.unwrap();
            assert_eq!(lp.sock_recv(&s, 8).await.unwrap(), b"v6");
        })
        .unwrap();
        lp.close().unwrap();
    });
}

#[test]
fn a_closed_loop_reports_closed() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        lp.close().unwrap();
        let (mut a, b) = tcp_pair();
        // Even with data ready, a closed loop does no I/O.
        a.write_all(b"x").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u_addr = u.local_addr().unwrap();
        use futures::executor::block_on;
        let kinds = [
            block_on(lp.sock_recv(&b, 1)).map(drop),
            block_on(lp.sock_recv_into(&b, &mut [0; 1])).map(drop),
            block_on(lp.sock_sendall(&b, b"y")),
            block_on(lp.sock_recvfrom(&u, 1)).map(drop),
            block_on(lp.sock_sendto(&u, b"y", u_addr)).map(drop),
            block_on(lp.sock_connect(l.local_addr().unwrap())).map(drop),
            block_on(lp.sock_accept(&l)).map(drop),
        ];
        for r in kinds {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
        }
    });
}

#[test]
fn closing_the_loop_under_a_waiting_sock_recv_reports_closed() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        let (_a, b) = tcp_pair();
        let mut fut = Box::pin(lp.sock_recv(&b, 8));
        // Start the operation: it registers and waits.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        lp.close().unwrap();
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed),
            other => panic!("expected Closed, got {other:?}"),
        }
    });
}

#[test]
fn a_fd_with_a_readiness_callback_is_refused_with_a_clear_error() {
    guarded(|| {
        let lp = EventLoop::new().unwrap();
        let (_a, b) = tcp_pair();
        b.set_nonblocking(true).unwrap();
        lp.add_reader(b.as_raw_fd(), || {}).unwrap();
        let err = lp
            .run_until_complete(lp.sock_recv(&b, 8))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains("register"), "{err}");
        assert!(lp.remove_reader(b.as_raw_fd()).unwrap());
        lp.close().unwrap();
    });
}
