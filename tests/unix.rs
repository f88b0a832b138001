//! Unix domain sockets on the loop: stream echo through a listener, pairs,
//! flow control with a slow reader, datagrams, and the faults (path in use,
//! missing path, closed loop). The fd-leak check lives in `unix_fd_leak.rs`
//! so it runs in a process of its own.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aioloop::net::{UnixDatagram, UnixListener, UnixStream};
use aioloop::{ErrorKind, EventLoop};
use futures::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

/// A socket path unique to this process and call, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(what: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "aioloop-test-{what}-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + i / 256) as u8).collect()
}

#[test]
fn stream_echo_through_a_listener() {
    let tmp = TempPath::new("echo");
    let path = tmp.path().to_owned();
    aioloop::run(async move {
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let lp = aioloop::get_running_loop().unwrap();
        const CLIENTS: usize = 8;
        let server = lp.create_task(async move {
            let lp = aioloop::get_running_loop().unwrap();
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                let (mut conn, peer) = listener.accept().await.unwrap();
                assert!(peer.is_unnamed());
                conns.push(lp.create_task(async move {
                    let mut buf = vec![0; 4096];
                    loop {
                        let n = conn.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        conn.write_all(&buf[..n]).await.unwrap();
                    }
                    conn.close().await.unwrap();
                }));
            }
            for c in conns {
                c.await.unwrap();
            }
        });
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let path = path.clone();
            clients.push(lp.create_task(async move {
                let mut s = UnixStream::connect(&path).await.unwrap();
                assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
                let data = payload(1000 + i * 5000);
                let (mut r, mut w) = s.split();
                let write = async {
                    w.write_all(&data).await.unwrap();
                    w.close().await.unwrap();
                };
                let mut got = Vec::new();
                let read = r.read_to_end(&mut got);
                let ((), n) = futures::join!(write, read);
                assert_eq!(n.unwrap(), data.len());
                assert_eq!(got, data);
                s = r.reunite(w).unwrap();
                drop(s);
            }));
        }
        for c in clients {
            aioloop::timeout(LIMIT, c).await.unwrap().unwrap();
        }
        aioloop::timeout(LIMIT, server).await.unwrap().unwrap();
    })
    .unwrap();
}

#[test]
fn pair_streams_talk_both_ways() {
    aioloop::run(async {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        assert!(a.peer_addr().unwrap().is_unnamed());
        assert!(b.local_addr().unwrap().is_unnamed());
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        aioloop::timeout(LIMIT, b.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        b.close().await.unwrap();
        let mut got = Vec::new();
        aioloop::timeout(LIMIT, a.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"pong");
        // After shutdown(Write) the peer sees end of file.
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let n = aioloop::timeout(LIMIT, b.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        let dbg = format!("{a:?}");
        assert!(dbg.starts_with("UnixStream"), "{dbg}");
    })
    .unwrap();
}

#[test]
fn one_mib_reaches_a_slow_reader_intact() {
    const TOTAL: usize = 1 << 20;
    aioloop::run(async {
        let (mut w, mut r) = UnixStream::pair().unwrap();
        let lp = aioloop::get_running_loop().unwrap();
        let data = Rc::new(payload(TOTAL));
        let writer = {
            let data = data.clone();
            lp.create_task(async move {
                w.write_all(&data).await.unwrap();
                w.close().await.unwrap();
            })
        };
        let mut got = Vec::with_capacity(TOTAL);
        let mut buf = vec![0; 16 * 1024];
        let mut reads = 0usize;
        let read_all = async {
            loop {
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                reads += 1;
                // The reader is slower than the writer: the socket buffer
                // fills and the writer must wait for room, not fail or spin.
                if reads % 4 == 0 {
                    aioloop::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        aioloop::timeout(LIMIT, read_all).await.unwrap();
        aioloop::timeout(LIMIT, writer).await.unwrap().unwrap();
        assert_eq!(got.len(), TOTAL);
        assert!(got == *data, "the bytes differ");
    })
    .unwrap();
}

#[test]
fn datagram_pair_sends_and_receives() {
    aioloop::run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let mut buf = [0; 256];
        for i in 0..20 {
            let msg = payload(i * 10);
            assert_eq!(a.send(&msg).await.unwrap(), msg.len());
            let n = aioloop::timeout(LIMIT, b.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], &msg[..], "datagram {i}");
        }
        b.send(b"back").await.unwrap();
        let (n, from) = aioloop::timeout(LIMIT, a.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"back");
        assert!(from.is_unnamed());
    })
    .unwrap();
}

#[test]
fn datagram_sender_waits_while_the_receiver_is_full() {
    // Unix datagrams are never dropped: a sender faster than the receiver
    // must wait (flow control), and every datagram arrives in order.
    const COUNT: usize = 2000;
    aioloop::run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let lp = aioloop::get_running_loop().unwrap();
        let sender = lp.create_task(async move {
            let msg = vec![7u8; 1024];
            for i in 0..COUNT {
                let mut m = msg.clone();
                m[..8].copy_from_slice(&(i as u64).to_le_bytes());
                a.send(&m).await.unwrap();
            }
        });
        let mut buf = [0; 2048];
        for i in 0..COUNT {
            let n = aioloop::timeout(LIMIT, b.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n, 1024);
            assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i as u64);
            if i % 64 == 0 {
                aioloop::sleep(Duration::from_millis(1)).await;
            }
        }
        aioloop::timeout(LIMIT, sender).await.unwrap().unwrap();
    })
    .unwrap();
}

#[test]
fn bound_datagram_sockets_exchange_by_path() {
    let tmp_a = TempPath::new("dgram-a");
    let tmp_b = TempPath::new("dgram-b");
    let (pa, pb) = (tmp_a.path().to_owned(), tmp_b.path().to_owned());
    aioloop::run(async move {
        let a = UnixDatagram::bind(&pa).unwrap();
        let b = UnixDatagram::bind(&pb).unwrap();
        a.send_to(b"to b", &pb).await.unwrap();
        let mut buf = [0; 16];
        let (n, from) = aioloop::timeout(LIMIT, b.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"to b");
        assert_eq!(from.as_pathname(), Some(pa.as_path()));
        // Reply to the sender's address; then use connected mode.
        b.send_to(b"to a", from.as_pathname().unwrap())
            .await
            .unwrap();
        let n = aioloop::timeout(LIMIT, a.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"to a");
        let c = UnixDatagram::unbound().unwrap();
        c.connect(&pa).unwrap();
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(pa.as_path()));
        c.send(b"from c").await.unwrap();
        let (n, from) = aioloop::timeout(LIMIT, a.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"from c");
        assert!(from.is_unnamed());
    })
    .unwrap();
}

#[test]
fn binding_a_path_that_exists_is_address_in_use() {
    let tmp = TempPath::new("in-use");
    let path = tmp.path().to_owned();
    aioloop::run(async move {
        let _first = UnixListener::bind(&path).unwrap();
        let err = UnixListener::bind(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.io_error().unwrap().kind(),
            std::io::ErrorKind::AddrInUse,
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        let err = UnixDatagram::bind(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.io_error().unwrap().kind(),
            std::io::ErrorKind::AddrInUse
        );
    })
    .unwrap();
}

#[test]
fn connecting_to_a_missing_path_is_an_io_error() {
    let tmp = TempPath::new("missing");
    let path = tmp.path().to_owned();
    aioloop::run(async move {
        let err = aioloop::timeout(LIMIT, UnixStream::connect(&path))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.io_error().unwrap().kind(),
            std::io::ErrorKind::NotFound,
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        let d = UnixDatagram::unbound().unwrap();
        assert_eq!(d.connect(&path).unwrap_err().kind(), ErrorKind::Io);
        assert_eq!(
            d.send_to(b"x", &path).await.unwrap_err().kind(),
            ErrorKind::Io
        );
    })
    .unwrap();
}

#[test]
fn connecting_to_a_stale_socket_file_is_refused() {
    let tmp = TempPath::new("stale");
    let path = tmp.path().to_owned();
    aioloop::run(async move {
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "the socket file stays after the listener");
        let err = aioloop::timeout(LIMIT, UnixStream::connect(&path))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.io_error().unwrap().kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{err:?}"
        );
    })
    .unwrap();
}

#[test]
fn objects_made_on_a_closed_loop_report_closed() {
    let tmp = TempPath::new("closed");
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let kind = |r: Result<(), aioloop::Error>| r.unwrap_err().kind();
    assert_eq!(
        kind(UnixListener::bind_on(&lp, tmp.path()).map(drop)),
        ErrorKind::Closed
    );
    assert!(!tmp.path().exists(), "nothing is bound on a closed loop");
    assert_eq!(kind(UnixStream::pair_on(&lp).map(drop)), ErrorKind::Closed);
    assert_eq!(
        kind(UnixDatagram::pair_on(&lp).map(drop)),
        ErrorKind::Closed
    );
    assert_eq!(
        kind(UnixDatagram::unbound_on(&lp).map(drop)),
        ErrorKind::Closed
    );
    assert_eq!(
        kind(UnixDatagram::bind_on(&lp, tmp.path()).map(drop)),
        ErrorKind::Closed
    );
    assert_eq!(
        kind(futures::executor::block_on(UnixStream::connect_on(&lp, tmp.path())).map(drop)),
        ErrorKind::Closed
    );
}

#[test]
fn operations_after_the_loop_closed_report_closed() {
    let lp = EventLoop::new().unwrap();
    let (mut a, _b) = UnixStream::pair_on(&lp).unwrap();
    let (c, _d) = UnixDatagram::pair_on(&lp).unwrap();
    lp.close().unwrap();
    let mut buf = [0; 4];
    let err = futures::executor::block_on(a.read(&mut buf)).unwrap_err();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<aioloop::Error>());
    assert_eq!(inner.map(|e| e.kind()), Some(ErrorKind::Closed), "{err:?}");
    let err = futures::executor::block_on(c.recv(&mut buf)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err:?}");
}

#[test]
fn constructors_outside_a_running_loop_say_what_to_do() {
    let err = UnixStream::pair().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoRunningLoop);
    assert!(err.to_string().contains("UnixStream::pair"), "{err}");
    assert_eq!(
        UnixDatagram::unbound().unwrap_err().kind(),
        ErrorKind::NoRunningLoop
    );
}

#[test]
fn connect_on_a_named_loop() {
    let tmp = TempPath::new("connect-on");
    let lp = EventLoop::new().unwrap();
    let l = UnixListener::bind_on(&lp, tmp.path()).unwrap();
    let (mut s, mut t) = lp
        .run_until_complete(async {
            let s = UnixStream::connect_on(&lp, tmp.path()).await.unwrap();
            let (t, _) = l.accept().await.unwrap();
            (s, t)
        })
        .unwrap();
    lp.run_until_complete(async {
        s.write_all(b"named").await.unwrap();
        let mut buf = [0; 5];
        t.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"named");
    })
    .unwrap();
    drop((s, t, l));
    lp.close().unwrap();
}
