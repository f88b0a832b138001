//! Operations in flight when what asked for them goes away: futures dropped
//! mid-read (thousands of them), I/O objects dropped with reads, accepts and
//! sends outstanding, and loops closed with all of that in flight. A
//! completion backend (IOCP) owns the buffers of such operations until the
//! kernel reports them done; every backend must lose no data, leak no wake-up
//! and never hang.
//!
//! Every await that could hang on a bug runs under [`within`] (20 s).

mod util;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use aioloop::net::{TcpListener, TcpStream, UdpSocket};
use aioloop::{ErrorKind, EventLoop};
use futures::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match aioloop::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e} (a hang or a lost wake-up?)"),
    }
}

fn on_loop<F: Future>(f: impl FnOnce(EventLoop) -> F) -> F::Output {
    let lp = EventLoop::new().unwrap();
    let out = lp
        .run_until_complete(aioloop::timeout(Duration::from_secs(60), f(lp.clone())))
        .unwrap()
        .expect("the test did not finish within 60 s");
    lp.close().unwrap();
    out
}

fn v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `n` connected pairs (client, server side).
async fn pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(v4()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = within("connect", TcpStream::connect(addr)).await.unwrap();
        let (s, _) = within("accept", listener.accept()).await.unwrap();
        out.push((c, s));
    }
    out
}

#[test]
fn thousands_of_dropped_reads_lose_nothing() {
    // Each read future is dropped while it waits (a timeout fires first),
    // several times per connection; then the peer writes and a fresh read
    // gets every byte, in order.
    let conns = util::connection_count(200);
    const ROUNDS: usize = 10;
    on_loop(|_lp| async move {
        let mut ps = pairs(conns).await;
        for _ in 0..ROUNDS {
            for (c, _) in ps.iter_mut() {
                let mut buf = [0u8; 64];
                let r = aioloop::timeout(Duration::ZERO, c.read(&mut buf)).await;
                assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
            }
        }
        for (i, (c, s)) in ps.iter_mut().enumerate() {
            let msg = format!("message {i}");
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            within("read after dropped reads", c.read_exact(&mut buf))
                .await
                .unwrap();
            assert_eq!(buf, msg.as_bytes());
        }
    });
}

#[test]
fn streams_dropped_with_reads_in_flight_close_for_the_peer() {
    // A read is waiting (in flight on a completion backend) when the stream
    // is dropped: the peer sees EOF, and the loop keeps working.
    on_loop(|lp| async move {
        let ps = pairs(util::connection_count(50)).await;
        let mut peers = Vec::new();
        for (mut c, s) in ps {
            let reader = lp.create_task(async move {
                let mut buf = [0u8; 16];
                let _ = c.read(&mut buf).await;
            });
            aioloop::yield_now().await;
            reader.cancel();
            let _ = reader.await;
            peers.push(s);
        }
        for mut s in peers {
            let mut buf = [0u8; 16];
            let n = within("eof at the peer", s.read(&mut buf)).await.unwrap();
            assert_eq!(n, 0);
        }
    });
}

#[test]
fn bytes_written_then_dropped_still_arrive() {
    // Writes accepted by the stream (possibly still in flight on a
    // completion backend) reach the peer after the stream is dropped.
    on_loop(|lp| async move {
        let ps = pairs(util::connection_count(20)).await;
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut readers = Vec::new();
        for (mut c, mut s) in ps {
            let p = payload.clone();
            readers.push(lp.create_task(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                assert!(got == p, "bytes lost or reordered");
            }));
            c.write_all(&payload).await.unwrap();
            c.close().await.unwrap();
            drop(c);
        }
        for r in readers {
            within("reader", r).await.unwrap();
        }
    });
}

#[test]
fn closing_a_loop_with_operations_in_flight_returns_promptly() {
    // Reads, accepts and datagram receives in flight, tasks waiting on them:
    // close() cancels and reaps everything, and the objects can be dropped
    // afterwards; a new loop then works as usual.
    for _ in 0..3 {
        let lp = EventLoop::new().unwrap();
        let objects = lp
            .run_until_complete(async {
                let lp = aioloop::get_running_loop().unwrap();
                let ps = pairs(10).await;
                let listener = TcpListener::bind(v4()).unwrap();
                let udp = UdpSocket::bind(v4()).unwrap();
                let mut waiting = Vec::new();
                for (mut c, s) in ps {
                    waiting.push(lp.create_task(async move {
                        let mut buf = [0u8; 8];
                        let _ = c.read(&mut buf).await;
                        drop(s);
                    }));
                }
                let mut buf = [0u8; 8];
                let r = aioloop::timeout(Duration::from_millis(5), listener.accept()).await;
                assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
                let r = aioloop::timeout(Duration::from_millis(5), udp.recv(&mut buf)).await;
                assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
                (listener, udp, waiting)
            })
            .unwrap();
        let started = std::time::Instant::now();
        lp.close().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "close took {:?}",
            started.elapsed()
        );
        drop(objects);
    }
    on_loop(|_lp| async move {
        let mut ps = pairs(1).await;
        let (c, s) = &mut ps[0];
        c.write_all(b"still works").await.unwrap();
        let mut buf = [0u8; 11];
        within("read", s.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"still works");
    });
}

#[test]
fn a_dropped_listener_stops_accepting_at_once() {
    // With accepts in flight (IOCP posts them ahead), dropping the listener
    // must close it now: a connect right after is refused.
    on_loop(|_lp| async move {
        let listener = TcpListener::bind(v4()).unwrap();
        let addr = listener.local_addr().unwrap();
        let r = aioloop::timeout(Duration::from_millis(5), listener.accept()).await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
        drop(listener);
        let err = within("connect", TcpStream::connect(addr))
            .await
            .unwrap_err();
        assert_eq!(
            err.io_error().unwrap().kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{err:?}"
        );
    });
}
