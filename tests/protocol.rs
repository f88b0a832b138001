//! The protocol/transport API: byte-exact echo, many connections, close
//! flushing, abort, flow control (water marks and the hard limit), reading
//! pause, EOF handling, faults (refused, reset, address in use, writes after
//! close), server close, and datagram endpoints.
//!
//! Every await that could hang on a bug runs under [`within`] (20 s).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

mod util;

use aioloop::net::{Protocol, Transport};
use aioloop::{Error, ErrorKind, EventLoop};

// Generous: hang detection, not timing (Wine on a loaded 2-vCPU VM is slow).
const LIMIT: Duration = Duration::from_secs(60);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match aioloop::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e} (a hang or a lost wake-up?)"),
    }
}

/// Waits (polling every millisecond) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            aioloop::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

fn on_loop<F: Future>(f: impl FnOnce(EventLoop) -> F) -> F::Output {
    let lp = EventLoop::new().unwrap();
    let out = lp
        .run_until_complete(aioloop::timeout(Duration::from_secs(120), f(lp.clone())))
        .unwrap()
        .expect("the test did not finish within 120 s");
    lp.close().unwrap();
    out
}

/// Echoes what it receives; closes on EOF.
#[derive(Default)]
struct Echo(Option<Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, t: &Transport) {
        self.0 = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.0.as_ref().unwrap().write(data).unwrap();
    }
}

/// Records everything that happens to it.
#[derive(Default, Debug)]
struct Rec {
    t: Option<Transport>,
    data: Vec<u8>,
    eof: bool,
    keep_open: bool,
    lost: Option<Option<Error>>,
    paused: usize,
    resumed: usize,
    made: usize,
}

impl Protocol for Rec {
    fn connection_made(&mut self, t: &Transport) {
        self.made += 1;
        self.t = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        assert!(self.lost.is_none(), "data after connection_lost");
        self.data.extend_from_slice(data);
    }
    fn eof_received(&mut self) -> bool {
        self.eof = true;
        self.keep_open
    }
    fn connection_lost(&mut self, err: Option<Error>) {
        assert!(self.lost.is_none(), "connection_lost twice");
        self.lost = Some(err);
    }
    fn pause_writing(&mut self) {
        self.paused += 1;
    }
    fn resume_writing(&mut self) {
        self.resumed += 1;
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn echo_server(lp: &EventLoop) -> (aioloop::net::Server, u16) {
    let server = within(
        "create_server",
        lp.create_server(Echo::default, "127.0.0.1", 0),
    )
    .await
    .unwrap();
    let port = server.sockets()[0].port();
    (server, port)
}

#[test]
fn echo_byte_exact() {
    on_loop(|lp| async move {
        let (server, port) = echo_server(&lp).await;
        let (t, p) = within(
            "connect",
            lp.create_connection(Rec::default, "127.0.0.1", port),
        )
        .await
        .unwrap();
        assert_eq!(p.borrow().made, 1);
        assert_eq!(t.peername().port(), port);
        assert!(t.sockname().ip().is_loopback());
        let msg = pattern(3 << 20);
        for chunk in msg.chunks(10_000) {
            t.write(chunk).unwrap();
        }
        until("echo", || p.borrow().data.len() >= msg.len()).await;
        assert!(p.borrow().data == msg, "echo differs");
        t.write_eof().unwrap();
        // The server closes on EOF; we see EOF, then connection_lost(None).
        until("lost", || p.borrow().lost.is_some()).await;
        assert!(p.borrow().eof);
        assert!(p.borrow().lost.as_ref().unwrap().is_none());
        server.close();
        within("wait_closed", server.wait_closed()).await;
    });
}

/// Client that sends `count` messages of `size` bytes one after another,
/// waiting for each echo.
struct PingPong {
    t: Option<Transport>,
    size: usize,
    left: usize,
    got: usize,
    done: Rc<Cell<usize>>,
    bad: Rc<Cell<usize>>,
    seed: u8,
}

impl Protocol for PingPong {
    fn connection_made(&mut self, t: &Transport) {
        self.t = Some(t.clone());
        t.write(&vec![self.seed; self.size]).unwrap();
    }
    fn data_received(&mut self, data: &[u8]) {
        if data.iter().any(|&b| b != self.seed) {
            self.bad.set(self.bad.get() + 1);
        }
        self.got += data.len();
        if self.got == self.size {
            self.got = 0;
            self.left -= 1;
            let t = self.t.as_ref().unwrap();
            if self.left == 0 {
                t.close();
            } else {
                self.seed = self.seed.wrapping_add(1);
                t.write(&vec![self.seed; self.size]).unwrap();
            }
        }
    }
    fn connection_lost(&mut self, err: Option<Error>) {
        assert!(err.is_none(), "{err:?}");
        self.done.set(self.done.get() + 1);
    }
}

#[test]
fn thousand_connections_hundred_messages() {
    let conns = util::connection_count(1000);
    const MSGS: usize = 100;
    let start = Instant::now();
    on_loop(|lp| async move {
        let (server, port) = echo_server(&lp).await;
        let done = Rc::new(Cell::new(0));
        let bad = Rc::new(Cell::new(0));
        let mut transports = Vec::new();
        for batch in 0..conns.div_ceil(100) {
            let batch_conns = (0..100.min(conns - batch * 100)).map(|i| {
                let (done, bad) = (done.clone(), bad.clone());
                lp.create_connection(
                    move || PingPong {
                        t: None,
                        size: 64,
                        left: MSGS,
                        got: 0,
                        done,
                        bad,
                        seed: (batch * 100 + i) as u8,
                    },
                    "127.0.0.1",
                    port,
                )
            });
            for r in within("connect", futures::future::join_all(batch_conns)).await {
                transports.push(r.unwrap().0);
            }
        }
        let connected = Instant::now();
        until("all exchanges", || done.get() == conns).await;
        eprintln!("exchanges after connecting: {:?}", connected.elapsed());
        assert_eq!(bad.get(), 0);
        assert!(transports.iter().all(|t| t.is_closing()));
        server.close();
        within("wait_closed", server.wait_closed()).await;
    });
    eprintln!(
        "{conns} connections x {MSGS} messages of 64 B: {:?}",
        start.elapsed()
    );
}

/// Writes `n` bytes when connected, then calls `close` (or `abort`).
struct Blast {
    n: usize,
    abort: bool,
    lost: Rc<RefCell<Option<Option<Error>>>>,
}

impl Protocol for Blast {
    fn connection_made(&mut self, t: &Transport) {
        t.write(&pattern(self.n)).unwrap();
        assert!(
            t.get_write_buffer_size() > 0,
            "the peer cannot take it all at once"
        );
        if self.abort {
            t.abort();
            assert_eq!(t.get_write_buffer_size(), 0);
        } else {
            t.close();
            assert!(t.is_closing());
        }
        assert!(!t.is_reading());
        assert_eq!(t.write(b"x").unwrap_err().kind(), ErrorKind::Closed);
    }
    fn connection_lost(&mut self, err: Option<Error>) {
        *self.lost.borrow_mut() = Some(err);
    }
}

/// Connects a blocking std client on a thread that reads to EOF slowly.
fn slow_reader(addr: SocketAddr) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr)?;
        std::thread::sleep(Duration::from_millis(100));
        let mut out = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => return Ok(out),
            }
        }
    })
}

#[test]
fn close_flushes_large_buffer_then_eof() {
    on_loop(|lp| async move {
        const N: usize = 16 << 20;
        let lost = Rc::new(RefCell::new(None));
        let l = lost.clone();
        let server = lp
            .create_server(
                move || Blast {
                    n: N,
                    abort: false,
                    lost: l.clone(),
                },
                "127.0.0.1",
                0,
            )
            .await
            .unwrap();
        let reader = slow_reader(server.sockets()[0]);
        let reader = lp.run_in_executor(move || reader.join().unwrap());
        let got = within("reader", reader).await.unwrap().unwrap();
        assert_eq!(got.len(), N);
        assert!(got == pattern(N));
        until("lost", || lost.borrow().is_some()).await;
        assert!(lost.borrow().as_ref().unwrap().is_none());
        server.close();
        within("wait_closed", server.wait_closed()).await;
    });
}

#[test]
fn abort_drops_the_buffer() {
    on_loop(|lp| async move {
        const N: usize = 16 << 20;
        let lost = Rc::new(RefCell::new(None));
        let l = lost.clone();
        let server = lp
            .create_server(
                move || Blast {
                    n: N,
                    abort: true,
                    lost: l.clone(),
                },
                "127.0.0.1",
                0,
            )
            .await
            .unwrap();
        let reader = slow_reader(server.sockets()[0]);
        let reader = lp.run_in_executor(move || reader.join().unwrap());
        let got = within("reader", reader).await.unwrap().unwrap_or_default();
        assert!(got.len() < N, "abort sent everything");
        until("lost", || lost.borrow().is_some()).await;
        assert!(lost.borrow().as_ref().unwrap().is_none());
        server.close();
    });
}

/// A listener whose accepted stream the test controls (a peer that reads
/// only when told to).
fn std_listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn water_marks_drive_pause_and_resume_writing() {
    on_loop(|lp| async move {
        let (listener, port) = std_listener();
        let (t, p) = within(
            "connect",
            lp.create_connection(Rec::default, "127.0.0.1", port),
        )
        .await
        .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
        let chunk = vec![7u8; 16 * 1024];
        let mut sent = 0;
        while p.borrow().paused == 0 {
            t.write(&chunk).unwrap();
            sent += chunk.len();
            assert!(sent < 64 << 20, "pause_writing never came");
            if p.borrow().paused == 0 {
                assert!(t.get_write_buffer_size() <= 64 * 1024);
            }
        }
        assert!(t.get_write_buffer_size() > 64 * 1024);
        assert_eq!(p.borrow().resumed, 0);
        // The peer now reads everything: resume_writing fires at the low mark.
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; sent];
            peer.read_exact(&mut buf).map(|_| (peer, buf))
        });
        until("resume_writing", || p.borrow().resumed == 1).await;
        assert!(t.get_write_buffer_size() <= 16 * 1024);
        assert_eq!(p.borrow().paused, 1);
        let (_peer, buf) = lp
            .run_in_executor(move || reader.join().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(buf.iter().all(|&b| b == 7));
        t.close();
        until("lost", || p.borrow().lost.is_some()).await;
    });
}

#[test]
fn peer_that_never_reads_hits_the_hard_limit() {
    on_loop(|lp| async move {
        let (listener, port) = std_listener();
        let (t, p) = within(
            "connect",
            lp.create_connection(Rec::default, "127.0.0.1", port),
        )
        .await
        .unwrap();
        let (_peer, _) = listener.accept().unwrap();
        t.set_write_buffer_limits(Some(32 * 1024), None).unwrap();
        let hard = 8 * 32 * 1024;
        let chunk = vec![1u8; 8 * 1024];
        let err = loop {
            match t.write(&chunk) {
                Ok(()) => assert!(t.get_write_buffer_size() <= hard),
                Err(e) => break e,
            }
            // Give the kernel a chance to show it takes nothing more.
            aioloop::yield_now().await;
        };
        // Paused when the limit was hit. A completion backend may resume
        // once or more first: its sends in flight complete after the first
        // pause, and the kernel takes more until it is full.
        let (paused, resumed) = (p.borrow().paused, p.borrow().resumed);
        assert!(paused >= 1, "never paused");
        assert_eq!(paused, resumed + 1, "not paused when the limit was hit");
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains("hard limit"), "{err}");
        assert!(err.to_string().contains("not reading"), "{err}");
        assert!(t.is_closing());
        assert_eq!(t.write(b"x").unwrap_err().kind(), ErrorKind::Closed);
        until("lost", || p.borrow().lost.is_some()).await;
        let lost = p.borrow_mut().lost.take().unwrap().expect("an error");
        assert_eq!(lost.to_string(), err.to_string());
    });
}

#[test]
fn write_after_close_is_closed() {
    on_loop(|lp| async move {
        let (server, port) = echo_server(&lp).await;
        let (t, p) = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap();
        t.close();
        let e = t.write(b"late").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert!(e.to_string().contains("closed"), "{e}");
        until("lost", || p.borrow().lost.is_some()).await;
        assert_eq!(t.write(b"later").unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(t.write_eof().unwrap_err().kind(), ErrorKind::Closed);
        assert!(t.is_closing());
        t.close(); // idempotent
        t.abort();
        server.close();
    });
}

#[test]
fn write_after_write_eof_is_an_error() {
    on_loop(|lp| async move {
        let (server, port) = echo_server(&lp).await;
        let (t, p) = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap();
        t.write(b"bye").unwrap();
        t.write_eof().unwrap();
        assert_eq!(t.write(b"x").unwrap_err().kind(), ErrorKind::Closed);
        until("lost", || p.borrow().lost.is_some()).await;
        assert_eq!(p.borrow().data, b"bye");
        server.close();
    });
}

#[test]
fn connection_refused_names_the_address() {
    on_loop(|lp| async move {
        let (l, port) = std_listener();
        drop(l);
        let err = within(
            "connect",
            lp.create_connection(Rec::default, "127.0.0.1", port),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
        assert_eq!(
            err.io_error().unwrap().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    });
}

#[test]
fn create_connection_tries_each_address() {
    on_loop(|lp| async move {
        // "localhost" usually resolves to ::1 and 127.0.0.1; the server is on
        // the IPv4 one only, so an IPv6 attempt is refused and the next one
        // is tried.
        let (server, port) = echo_server(&lp).await;
        let (t, _p) = within(
            "connect",
            lp.create_connection(Rec::default, "localhost", port),
        )
        .await
        .unwrap();
        assert_eq!(t.peername(), SocketAddr::from(([127, 0, 0, 1], port)));
        t.abort();
        server.close();
        // All refused: the error names the host and the last address.
        let err = within(
            "connect",
            lp.create_connection(Rec::default, "localhost", port),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains(&format!(":{port}")), "{err}");
    });
}

#[test]
fn address_in_use() {
    on_loop(|lp| async move {
        let (_l, port) = std_listener();
        let err = lp
            .create_server(Echo::default, "127.0.0.1", port)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    });
}

#[test]
fn server_close_and_wait_closed() {
    on_loop(|lp| async move {
        let (server, port) = echo_server(&lp).await;
        assert!(server.is_serving());
        let (t, p) = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap();
        t.write(b"ping").unwrap();
        until("echo", || p.borrow().data == b"ping").await;
        server.close();
        assert!(!server.is_serving());
        assert!(server.sockets().is_empty());
        // New connections are refused; the open one still works.
        let err = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        t.write(b"pong").unwrap();
        until("echo", || p.borrow().data == b"pingpong").await;
        // wait_closed waits for the open connection.
        let waited = Rc::new(Cell::new(false));
        let (s, w) = (server.clone(), waited.clone());
        let task = lp.create_task(async move {
            s.wait_closed().await;
            w.set(true);
        });
        aioloop::sleep(Duration::from_millis(20)).await;
        assert!(!waited.get());
        t.close();
        within("wait_closed", task).await.unwrap();
        assert!(waited.get());
        // serve_forever returns at once on a closed server.
        within("serve_forever", server.serve_forever()).await;
    });
}

/// close_clients flushes then closes every accepted connection;
/// abort_clients drops their buffers; either way wait_closed returns.
#[test]
fn server_close_clients_and_abort_clients() {
    for abort in [false, true] {
        on_loop(|lp| async move {
            // The server's protocol writes 16 MiB (more than the kernel takes at once).
            struct Writer;
            impl Protocol for Writer {
                fn connection_made(&mut self, t: &Transport) {
                    t.write(&pattern(16 << 20)).unwrap();
                }
            }
            let server = lp.create_server(|| Writer, "127.0.0.1", 0).await.unwrap();
            let port = server.sockets()[0].port();
            let clients: Vec<_> = (0..3)
                .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
                .collect();
            until("accepted", || {
                format!("{server:?}").contains("connections: 3")
            })
            .await;
            server.close();
            if abort {
                server.abort_clients();
            } else {
                server.close_clients();
            }
            let readers: Vec<_> = clients
                .into_iter()
                .map(|mut c| {
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        let r = c.read_to_end(&mut got);
                        (r.is_ok(), got.len())
                    })
                })
                .collect();
            within("wait_closed", server.wait_closed()).await;
            // The readers need the loop running (a completion backend sends
            // from the loop), so wait for them without blocking it.
            until("readers done", || readers.iter().all(|r| r.is_finished())).await;
            for r in readers {
                let (ok, n) = r.join().unwrap();
                if abort {
                    assert!(n < 16 << 20 || !ok, "abort_clients sent everything?");
                } else {
                    assert!(ok, "close_clients must end with a clean EOF");
                    assert_eq!(n, 16 << 20, "close_clients flushes before closing");
                }
            }
        });
    }
}

/// Pauses reading when connected; the test resumes it.
#[test]
fn pause_reading_stops_data_received() {
    on_loop(|lp| async move {
        let (listener, port) = std_listener();
        let (t, p) = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        t.pause_reading();
        assert!(!t.is_reading());
        peer.write_all(b"held back").unwrap();
        aioloop::sleep(Duration::from_millis(50)).await;
        assert!(p.borrow().data.is_empty());
        t.resume_reading();
        assert!(t.is_reading());
        until("data", || p.borrow().data == b"held back").await;
        // And once more, with data arriving while paused after a read.
        t.pause_reading();
        peer.write_all(b" again").unwrap();
        aioloop::sleep(Duration::from_millis(30)).await;
        assert_eq!(p.borrow().data, b"held back");
        t.resume_reading();
        until("data", || p.borrow().data == b"held back again").await;
        t.close();
        until("lost", || p.borrow().lost.is_some()).await;
    });
}

#[test]
fn eof_received_false_closes_true_keeps_writing() {
    on_loop(|lp| async move {
        let (listener, port) = std_listener();
        // false (the default): the transport closes.
        let (t, p) = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        until("lost", || p.borrow().lost.is_some()).await;
        assert!(p.borrow().eof);
        assert!(t.is_closing());
        drop(peer);

        // true: we can still write after the peer's EOF.
        let (t, p) = lp
            .create_connection(
                || Rec {
                    keep_open: true,
                    ..Rec::default()
                },
                "127.0.0.1",
                port,
            )
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        until("eof", || p.borrow().eof).await;
        assert!(!t.is_closing());
        assert!(p.borrow().lost.is_none());
        t.write(b"after eof").unwrap();
        t.close();
        // The socket closes once connection_lost has run on the loop: read
        // on another thread.
        let got = within(
            "read_to_end",
            lp.run_in_executor(move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).map(|_| got)
            }),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(got, b"after eof");
        until("lost", || p.borrow().lost.is_some()).await;
        assert!(p.borrow().lost.as_ref().unwrap().is_none());
    });
}

#[test]
fn reset_by_peer_reports_the_error() {
    on_loop(|lp| async move {
        let (listener, port) = std_listener();
        let (t, p) = lp
            .create_connection(Rec::default, "127.0.0.1", port)
            .await
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        t.write(b"unread").unwrap();
        aioloop::sleep(Duration::from_millis(20)).await;
        // Closing with unread data makes the kernel send RST.
        drop(peer);
        within("lost", async {
            while p.borrow().lost.is_none() {
                let _ = t.write(b"more");
                aioloop::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let err = p.borrow_mut().lost.take().unwrap().expect("an error");
        assert_eq!(err.kind(), ErrorKind::Io);
        let kind = err.io_error().unwrap().kind();
        assert!(
            matches!(
                kind,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    });
}

#[test]
fn pause_writing_inside_a_callback_comes_after_it() {
    // A protocol writing a lot from data_received gets pause_writing once its
    // method returns (no re-entrancy).
    struct Flood(Option<Transport>, Rc<Cell<usize>>, Rc<Cell<bool>>);
    impl Protocol for Flood {
        fn connection_made(&mut self, t: &Transport) {
            self.0 = Some(t.clone());
        }
        fn data_received(&mut self, _: &[u8]) {
            let t = self.0.as_ref().unwrap();
            t.write(&vec![0; 16 << 20]).unwrap();
            self.2.set(true);
        }
        fn pause_writing(&mut self) {
            assert!(self.2.get(), "re-entered during data_received");
            self.1.set(self.1.get() + 1);
        }
    }
    on_loop(|lp| async move {
        let paused = Rc::new(Cell::new(0));
        let (p2, seen) = (paused.clone(), Rc::new(Cell::new(false)));
        let server = lp
            .create_server(
                move || Flood(None, p2.clone(), seen.clone()),
                "127.0.0.1",
                0,
            )
            .await
            .unwrap();
        let mut c = std::net::TcpStream::connect(server.sockets()[0]).unwrap();
        c.write_all(b"go").unwrap();
        until("pause_writing", || paused.get() == 1).await;
        server.close();
    });
}

#[test]
fn panicking_protocol_goes_to_the_exception_handler() {
    struct Boom;
    impl Protocol for Boom {
        fn data_received(&mut self, _: &[u8]) {
            panic!("boom in data_received");
        }
    }
    on_loop(|lp| async move {
        let reports = Rc::new(RefCell::new(Vec::new()));
        let r = reports.clone();
        lp.set_exception_handler(move |_, ctx| r.borrow_mut().push(ctx.to_string()));
        let server = lp.create_server(|| Boom, "127.0.0.1", 0).await.unwrap();
        let mut c = std::net::TcpStream::connect(server.sockets()[0]).unwrap();
        c.write_all(b"x").unwrap();
        until("report", || !reports.borrow().is_empty()).await;
        assert!(
            reports.borrow()[0].contains("boom"),
            "{:?}",
            reports.borrow()
        );
        // As asyncio's fatal error: the connection is closed (the client
        // reads EOF) while the server still serves.
        c.set_nonblocking(true).unwrap();
        until("the connection closes", || {
            let mut b = [0; 1];
            match std::io::Read::read(&mut c, &mut b) {
                Ok(0) => true,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                Ok(_) => false,
            }
        })
        .await;
        assert!(
            reports.borrow()[0].contains("closed"),
            "{:?}",
            reports.borrow()
        );
        let _c2 = std::net::TcpStream::connect(server.sockets()[0]).unwrap();
        server.close();
    });
}

#[test]
fn a_panic_reaches_connection_lost_as_the_error() {
    #[derive(Default)]
    struct Boom {
        lost: Rc<RefCell<Option<Option<Error>>>>,
    }
    impl Protocol for Boom {
        fn data_received(&mut self, _: &[u8]) {
            panic!("boom");
        }
        fn connection_lost(&mut self, err: Option<Error>) {
            *self.lost.borrow_mut() = Some(err);
        }
    }
    on_loop(|lp| async move {
        lp.set_exception_handler(|_, _| {});
        let (server, port) = echo_server(&lp).await;
        let lost = Rc::new(RefCell::new(None));
        let l2 = lost.clone();
        let (t, _p) = within(
            "connect",
            lp.create_connection(move || Boom { lost: l2 }, "127.0.0.1", port),
        )
        .await
        .unwrap();
        t.write(b"echo me").unwrap();
        until("connection_lost", || lost.borrow().is_some()).await;
        let err = lost.borrow().clone().unwrap().expect("an error");
        assert_eq!(err.kind(), aioloop::ErrorKind::Panicked, "{err}");
        assert!(t.is_closing());
        server.close();
    });
}

#[derive(Default, Debug)]
struct DgramRec {
    t: Option<aioloop::net::DatagramTransport>,
    got: Vec<(Vec<u8>, SocketAddr)>,
    errors: Vec<Error>,
    lost: Option<Option<Error>>,
    echo: bool,
}

impl aioloop::net::DatagramProtocol for DgramRec {
    fn connection_made(&mut self, t: &aioloop::net::DatagramTransport) {
        self.t = Some(t.clone());
    }
    fn datagram_received(&mut self, data: &[u8], from: SocketAddr) {
        if self.echo {
            self.t.as_ref().unwrap().sendto(data, Some(from)).unwrap();
        }
        self.got.push((data.to_vec(), from));
    }
    fn error_received(&mut self, err: Error) {
        self.errors.push(err);
    }
    fn connection_lost(&mut self, err: Option<Error>) {
        assert!(self.lost.is_none());
        self.lost = Some(err);
    }
}

#[test]
fn datagram_endpoint_echo() {
    on_loop(|lp| async move {
        let any: Option<SocketAddr> = "127.0.0.1:0".parse().ok();
        let (st, sp) = lp
            .create_datagram_endpoint(
                || DgramRec {
                    echo: true,
                    ..DgramRec::default()
                },
                any,
                None,
            )
            .await
            .unwrap();
        let server = st.sockname();
        assert_eq!(st.peername(), None);
        // A connected client: sendto without an address.
        let (ct, cp) = lp
            .create_datagram_endpoint(DgramRec::default, None, Some(server))
            .await
            .unwrap();
        assert_eq!(ct.peername(), Some(server));
        for i in 0..100u8 {
            ct.sendto(&[i; 100], None).unwrap();
        }
        until("echoes", || cp.borrow().got.len() == 100).await;
        for (i, (d, from)) in cp.borrow().got.iter().enumerate() {
            assert_eq!(*from, server);
            assert_eq!(d, &vec![i as u8; 100]);
        }
        assert_eq!(sp.borrow().got.len(), 100);
        assert!(sp.borrow().got.iter().all(|(_, a)| *a == ct.sockname()));
        // Bad addresses.
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            ct.sendto(b"x", Some(other)).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            st.sendto(b"x", None).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let both_none = lp
            .create_datagram_endpoint(DgramRec::default, None, None)
            .await
            .unwrap_err();
        assert_eq!(both_none.kind(), ErrorKind::InvalidInput);
        // Close: connection_lost(None), then sendto is Closed.
        st.close();
        ct.abort();
        until("lost", || {
            sp.borrow().lost.is_some() && cp.borrow().lost.is_some()
        })
        .await;
        assert!(sp.borrow().lost.as_ref().unwrap().is_none());
        assert_eq!(
            st.sendto(b"x", Some(server)).unwrap_err().kind(),
            ErrorKind::Closed
        );
        assert!(ct.is_closing());
    });
}

#[test]
fn datagram_port_unreachable_goes_to_error_received() {
    on_loop(|lp| async move {
        // Nothing listens there: a connected UDP socket gets ECONNREFUSED.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let (t, p) = lp
            .create_datagram_endpoint(DgramRec::default, None, Some(addr))
            .await
            .unwrap();
        within("error_received", async {
            while p.borrow().errors.is_empty() {
                let _ = t.sendto(b"anyone?", None);
                aioloop::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let e = &p.borrow().errors[0];
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(!t.is_closing(), "the endpoint stays open");
        t.close();
    });
}

/// EMFILE on accept: the server reports it, keeps serving, and accepts the
/// waiting connections after the retry delay. Runs in a child process
/// because it lowers the process's fd limit (with `prlimit`, Linux only).
#[cfg(target_os = "linux")]
#[test]
fn emfile_on_accept_keeps_serving() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prlimit not found: skipped");
        return;
    }
    let (ok, text) = util::run_self(
        &["--exact", "emfile_child", "--nocapture", "--test-threads=1"],
        ("AIOLOOP_EMFILE_CHILD", "1"),
    );
    assert!(ok, "{text}");
    assert!(text.contains("emfile child: ok"), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn emfile_child() {
    if std::env::var_os("AIOLOOP_EMFILE_CHILD").is_none() {
        return;
    }
    on_loop(|lp| async move {
        let reports = Rc::new(RefCell::new(Vec::new()));
        let r = reports.clone();
        lp.set_exception_handler(move |_, ctx| r.borrow_mut().push(ctx.to_string()));
        let made = Rc::new(Cell::new(0));
        let m = made.clone();
        struct Count(Rc<Cell<usize>>);
        impl Protocol for Count {
            fn connection_made(&mut self, _: &Transport) {
                self.0.set(self.0.get() + 1);
            }
        }
        let server = lp
            .create_server(move || Count(m.clone()), "127.0.0.1", 0)
            .await
            .unwrap();
        let addr = server.sockets()[0];
        // Twenty connections wait in the backlog (the loop has not accepted).
        let clients: Vec<_> = (0..20)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // No fd above the highest open one, and the holes below it filled.
        let open = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .max()
            .unwrap()
            + 1;
        let status = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={open}:"))
            .status()
            .unwrap();
        assert!(status.success());
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
        }
        let started = Instant::now();
        until("the EMFILE report", || !reports.borrow().is_empty()).await;
        assert_eq!(made.get(), 0);
        assert!(server.is_serving());
        let report = reports.borrow()[0].clone();
        assert!(report.contains("keeps serving"), "{report}");
        assert!(report.contains("accept"), "{report}");
        // Free fds (the client ends): the retry accepts the others.
        drop(fillers);
        drop(clients);
        until("retried accepts", || made.get() == 20).await;
        assert!(started.elapsed() >= Duration::from_millis(900));
        server.close();
        eprintln!("emfile child: ok");
    });
}

#[test]
#[allow(clippy::await_holding_refcell_ref)] // the point of the test
fn a_protocol_borrowed_across_an_await_loses_nothing() {
    on_loop(|lp| async move {
        let (server, port) = echo_server(&lp).await;
        let (t, p) = within(
            "connect",
            lp.create_connection(Rec::default, "127.0.0.1", port),
        )
        .await
        .unwrap();
        let msg = pattern(200_000);
        {
            // Hold the protocol across awaits while the echo comes back.
            let held = p.borrow_mut();
            t.write(&msg).unwrap();
            for _ in 0..20 {
                aioloop::sleep(Duration::from_millis(2)).await;
            }
            assert!(held.data.is_empty(), "delivered while borrowed");
        }
        until("echo", || p.borrow().data.len() >= msg.len()).await;
        assert!(
            p.borrow().data == msg,
            "echo differs after the borrow ended"
        );
        t.close();
        server.close();
    });
}

/// start_serving(false): the socket listens (connects queue up) but no
/// protocol is made until start_serving / serve_forever; a server that
/// never started closes its socket when its last handle goes.
#[test]
fn server_that_starts_later() {
    use aioloop::net::ServerOptions;
    on_loop(|lp| async move {
        let made = Rc::new(Cell::new(0));
        let m = made.clone();
        let factory = move || {
            m.set(m.get() + 1);
            Echo::default()
        };
        let opts = ServerOptions::new().start_serving(false);
        let server = within(
            "create_server_with",
            lp.create_server_with(factory, "127.0.0.1", 0, opts),
        )
        .await
        .unwrap();
        assert!(!server.is_serving());
        let port = server.sockets()[0].port();
        // The kernel completes the handshake from the listen queue.
        let mut peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        peer.write_all(b"early").unwrap();
        aioloop::sleep(Duration::from_millis(30)).await;
        assert_eq!(made.get(), 0, "accepted before start_serving");
        // serve_forever starts it; the queued connection is served.
        let s = server.clone();
        let forever = lp.create_task(async move { s.serve_forever().await });
        until("accepted", || made.get() == 1).await;
        assert!(server.is_serving());
        server.start_serving().unwrap(); // already serving: nothing happens
        let got = within(
            "echo",
            lp.run_in_executor(move || {
                let mut buf = [0u8; 5];
                peer.read_exact(&mut buf).map(|_| buf)
            }),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(&got, b"early");
        server.close();
        within("serve_forever", forever).await.unwrap();
        let err = server.start_serving().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed);
        assert!(err.message().contains("closed server"), "{err}");

        // Never started, every handle dropped: the socket is closed.
        let opts = ServerOptions::new().start_serving(false);
        let idle = lp
            .create_server_with(Echo::default, "127.0.0.1", 0, opts)
            .await
            .unwrap();
        let port = idle.sockets()[0].port();
        drop(idle);
        let err = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}

/// reuse_port lets two servers share a port; backlog 0 is refused with a
/// clear error; without reuse_port the second bind reports the address.
#[test]
fn server_options_reuse_port_and_backlog() {
    use aioloop::net::ServerOptions;
    on_loop(|lp| async move {
        let opts = ServerOptions::new().reuse_port(true).backlog(16);
        assert_eq!(opts.get_backlog(), 16);
        let a = lp
            .create_server_with(Echo::default, "127.0.0.1", 0, opts.clone())
            .await;
        #[cfg(unix)]
        {
            let port_of = |s: &aioloop::net::Server| s.sockets()[0].port();
            let a = a.unwrap();
            let port = port_of(&a);
            let b = lp
                .create_server_with(Echo::default, "127.0.0.1", port, opts)
                .await
                .unwrap();
            assert_eq!(port_of(&b), port);
            let err = lp
                .create_server(Echo::default, "127.0.0.1", port)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Io);
            assert!(err.to_string().contains(&port.to_string()), "{err}");
            a.close();
            b.close();
        }
        #[cfg(not(unix))]
        {
            let err = a.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Io);
            assert!(err.to_string().contains("SO_REUSEPORT"), "{err}");
        }
        let err = lp
            .create_server_with(
                Echo::default,
                "127.0.0.1",
                0,
                ServerOptions::new().backlog(0),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("backlog"), "{err}");
    });
}

/// Every test above again as on a kernel before 6.0 (`AIOLOOP_URING_LEGACY=1`:
/// one receive per read, no deferred task work): both paths stay green.
#[cfg(target_os = "linux")]
#[test]
fn the_same_tests_pass_as_on_kernels_before_6_0() {
    util::rerun_as_on_kernels_before_6_0("the_same_tests_pass_as_on_kernels_before_6_0");
}

/// serve_forever on a server that cannot start (its loop closed meanwhile)
/// reports why to the loop's exception handler and returns.
#[test]
fn serve_forever_reports_a_server_that_cannot_start() {
    use aioloop::net::ServerOptions;
    type Seen = Rc<RefCell<Vec<(String, Option<ErrorKind>)>>>;
    let a = EventLoop::new().unwrap();
    let seen: Seen = Rc::default();
    let s = seen.clone();
    a.set_exception_handler(move |_, ctx| {
        let kind = ctx.error.as_ref().map(|e| e.kind());
        s.borrow_mut().push((ctx.message.clone(), kind));
    });
    let opts = ServerOptions::new().start_serving(false);
    let server = a
        .run_until_complete(a.create_server_with(Echo::default, "127.0.0.1", 0, opts))
        .unwrap()
        .unwrap();
    a.close().unwrap();
    let b = EventLoop::new().unwrap();
    b.run_until_complete(within("serve_forever", server.serve_forever()))
        .unwrap();
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].0.contains("could not start"), "{seen:?}");
        assert_eq!(seen[0].1, Some(ErrorKind::Closed));
    }
    assert!(!server.is_serving());
    // Closed by the failed start: serve_forever now returns quietly.
    b.run_until_complete(within("serve_forever", server.serve_forever()))
        .unwrap();
    assert_eq!(seen.borrow().len(), 1);
    b.close().unwrap();
}
