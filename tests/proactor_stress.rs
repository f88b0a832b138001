//! Stress tests of the proactor's buffer-ownership rule (io_uring): reads
//! left in flight by the thousand and then dropped, a peer reset while a
//! send is in flight, and a loop closed with operations in flight. Nothing
//! may crash, hang, lose or corrupt data, or leak a descriptor.
//!
//! Miri cannot run io_uring code (the kernel writes into buffers behind its
//! back); these tests are the check instead. They run on the proactor only
//! (skipped with a note where the kernel refuses io_uring), whatever
//! `AIOLOOP_BACKEND` says. The tests of this binary take turns (a lock), so
//! the descriptor counts are not disturbed by each other.
#![cfg(target_os = "linux")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use aioloop::net::{TcpListener, TcpStream};
use aioloop::{Backend, EventLoop};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

static TURN: Mutex<()> = Mutex::new(());
const LIMIT: Duration = Duration::from_secs(30);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn proactor() -> Option<EventLoop> {
    match EventLoop::builder().backend(Backend::Proactor).build() {
        Ok(lp) => Some(lp),
        Err(e) => {
            eprintln!("skipped: no proactor here ({e})");
            None
        }
    }
}

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match aioloop::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Polls one read of `s` once, so a receive is left in flight.
async fn start_read(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    futures::future::poll_fn(|cx| {
        let _ = Pin::new(&mut *s).poll_read(cx, &mut buf);
        Poll::Ready(())
    })
    .await;
}

async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().unwrap();
    let c = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (s, _) = within("accept", listener.accept()).await.unwrap();
    (c, s)
}

#[test]
fn thousands_of_in_flight_reads_dropped_with_their_streams() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = open_fds();
    let Some(lp) = proactor() else { return };
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut dropped = 0;
        for round in 0..10 {
            let mut conns = Vec::new();
            for _ in 0..200 {
                conns.push(pair(&listener).await);
            }
            for (i, (c, s)) in conns.iter_mut().enumerate() {
                start_read(c).await;
                // Half of the peers answer at once: those receives complete
                // (maybe while being cancelled), the others are cancelled.
                if i % 2 == 0 {
                    s.write_all(b"racing the cancel").await.unwrap();
                }
            }
            if round % 2 == 1 {
                // Let some completions land before the drop.
                aioloop::yield_now().await;
            }
            dropped += conns.len();
            drop(conns);
        }
        assert_eq!(dropped, 2000);
        // The loop still works, and a stream sees its bytes exactly.
        let (mut c, mut s) = pair(&listener).await;
        s.write_all(b"still fine").await.unwrap();
        let mut got = [0u8; 10];
        within("read", c.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"still fine");
    })
    .unwrap();
    lp.close().unwrap();
    drop(lp);
    assert_eq!(open_fds(), baseline, "every socket was closed");
}

#[test]
fn dropped_read_futures_lose_no_data() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lp) = proactor() else { return };
    lp.run_until_complete(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (mut c, mut s) = pair(&listener).await;
        for i in 0u32..500 {
            let mut buf = [0u8; 4];
            // The read future is dropped with its receive in flight…
            if i % 3 == 0 {
                let r = aioloop::timeout(Duration::from_micros(50), c.read(&mut buf)).await;
                assert!(r.is_err(), "nothing was sent yet");
            } else {
                start_read(&mut c).await;
            }
            // …and the bytes that receive brings in are not lost.
            s.write_all(&i.to_be_bytes()).await.unwrap();
            within("read", c.read_exact(&mut buf)).await.unwrap();
            assert_eq!(u32::from_be_bytes(buf), i);
        }
    })
    .unwrap();
    lp.close().unwrap();
}

#[test]
fn a_peer_reset_during_an_in_flight_send_is_an_error_not_a_crash() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = open_fds();
    let Some(lp) = proactor() else { return };
    lp.run_until_complete(async {
        for _ in 0..20 {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = std_listener.local_addr().unwrap();
            let mut c = within("connect", TcpStream::connect(addr)).await.unwrap();
            let (peer, _) = std_listener.accept().unwrap();
            // The peer never reads, then resets the connection.
            let resetter = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                socket2::SockRef::from(&peer)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(peer); // RST
            });
            let big = vec![0x5a; 16 << 20];
            let res = within("write_all", async {
                c.write_all(&big).await?;
                c.flush().await
            })
            .await;
            let err = res.expect_err("16 MiB cannot all reach a peer that reset");
            assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ),
                "{err:?}"
            );
            // Later writes keep failing; reads see the reset or EOF.
            assert!(c.write_all(b"more").await.is_err());
            let mut b = [0u8; 8];
            let _ = within("read", c.read(&mut b)).await;
            resetter.join().unwrap();
        }
    })
    .unwrap();
    lp.close().unwrap();
    drop(lp);
    assert_eq!(open_fds(), baseline);
}

#[test]
fn closing_a_loop_with_operations_in_flight_reaps_them_all() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = open_fds();
    let Some(lp) = proactor() else { return };
    let conns = lp
        .run_until_complete(async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let chunk = vec![7u8; 1 << 20];
            let mut conns = Vec::new();
            for i in 0..100 {
                let (mut c, mut s) = pair(&listener).await;
                // A receive in flight, and a send the peer does not read.
                start_read(&mut c).await;
                c.write_all(&chunk).await.unwrap();
                if i % 2 == 0 {
                    // This receive completes, and nobody collects it.
                    s.write_all(b"never read").await.unwrap();
                }
                conns.push((c, s));
            }
            // Wait in the backend, so those completions are reaped.
            aioloop::sleep(Duration::from_millis(50)).await;
            conns
        })
        .unwrap();
    let started = Instant::now();
    lp.close().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "close() reaped everything promptly ({:?})",
        started.elapsed()
    );
    // The streams outlive their closed loop: their operations report it.
    let mut conns = conns;
    let (c, _) = &mut conns[0];
    let mut b = [0u8; 4];
    let r = futures::executor::block_on(c.read(&mut b));
    assert!(r.is_err(), "a read on a closed loop fails: {r:?}");
    drop(conns);
    drop(lp);
    assert_eq!(open_fds(), baseline, "no descriptor left behind");
}

#[test]
fn listeners_dropped_with_accepts_in_flight_close_the_late_connections() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = open_fds();
    let Some(lp) = proactor() else { return };
    lp.run_until_complete(async {
        for i in 0..200 {
            let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = l.local_addr().unwrap();
            // An ACCEPT in flight…
            futures::future::poll_fn(|cx| {
                assert!(l.poll_accept(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            // …which a peer completes, now or while the listener goes.
            let peer = std::net::TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                aioloop::sleep(Duration::from_millis(1)).await;
            }
            drop(l);
            drop(peer);
        }
        // Accepting still works, with the peer's address.
        let l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let c = within("connect", TcpStream::connect(addr)).await.unwrap();
        let (_s, peer) = within("accept", l.accept()).await.unwrap();
        assert!(peer.ip().is_loopback());
        drop(c);
    })
    .unwrap();
    lp.close().unwrap();
    drop(lp);
    assert_eq!(open_fds(), baseline, "every late connection was closed");
}
