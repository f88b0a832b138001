//! The benchmarks, each a function generic over [`Runtime`].
//!
//! Adding a benchmark = one generic function plus one line in the
//! `benches!` table at the bottom (name, kind, unit, sizes, description).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Context;
use std::time::{Duration, Instant};

use aioloop::net::{Protocol, Server, Transport};
use futures::channel::oneshot;

use crate::runtimes::Runtime;
use crate::sys;
use crate::xproc;

/// What a benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nanoseconds per operation (lower is better).
    Time,
    /// Bytes of resident memory per item (lower is better).
    Memory,
}

/// A benchmark's size: `n` and `m` mean what its description says; `reps`
/// is how many timed repetitions follow one untimed warm-up repetition.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// The main count.
    pub n: usize,
    /// The second count (batch size, depth...), where there is one.
    pub m: usize,
    /// Timed repetitions (time benchmarks only).
    pub reps: u32,
}

const fn size(n: usize, m: usize, reps: u32) -> Size {
    Size { n, m, reps }
}

/// One measurement, printed by the child as a `RESULT` line.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// ns/op (time) or bytes/item (memory).
    pub value: f64,
    /// Operations (or items) measured.
    pub ops: u64,
    /// Wall time of the timed part (0 for memory benchmarks).
    pub elapsed_ns: u128,
    /// Peak RSS of the child (VmHWM), in KiB.
    pub peak_rss_kb: u64,
    /// Free-form `key=value` pairs without spaces, comma separated.
    pub extra: String,
}

/// A benchmark's description.
#[derive(Debug, Clone, Copy)]
pub struct Bench {
    /// As on the command line and in the tables.
    pub name: &'static str,
    /// Time or memory.
    pub kind: Kind,
    /// The unit of the reported value.
    pub unit: &'static str,
    /// Sizes of the full run.
    pub full: Size,
    /// Sizes of `--smoke`.
    pub smoke: Size,
    /// What it does.
    pub about: &'static str,
    /// What peers without asyncio callbacks run instead, when that differs.
    pub peers: Option<&'static str>,
}

// ---------------------------------------------------------------------------
// Harnesses

/// Runs `body` once untimed (warm-up), then `reps` times timed, on one fresh
/// runtime. Reports the median repetition's time per operation: robust to a
/// repetition disturbed by something else on the machine. The mean and the
/// fastest and slowest repetitions go to `extra`.
fn timed<R, B, F>(s: Size, ops_per_rep: u64, body: B) -> Outcome
where
    R: Runtime,
    B: Fn(R::Handle) -> F + 'static,
    F: Future<Output = ()>,
{
    let reps = s.reps.max(1);
    let mut times = R::block_on(move |h| async move {
        body(h.clone()).await;
        let mut times = Vec::with_capacity(reps as usize);
        for _ in 0..reps {
            let rep = Instant::now();
            body(h.clone()).await;
            times.push(rep.elapsed());
        }
        times
    });
    times.sort();
    let per_op = |d: Duration| d.as_nanos() as f64 / ops_per_rep as f64;
    let n = times.len();
    let median = if n % 2 == 1 {
        per_op(times[n / 2])
    } else {
        (per_op(times[n / 2 - 1]) + per_op(times[n / 2])) / 2.0
    };
    let total: Duration = times.iter().sum();
    let ops = ops_per_rep * u64::from(reps);
    Outcome {
        value: median,
        ops,
        elapsed_ns: total.as_nanos(),
        peak_rss_kb: sys::peak_rss_kb(),
        extra: format!(
            "mean={:.1},fastest_rep={:.1},slowest_rep={:.1}",
            total.as_nanos() as f64 / ops as f64,
            per_op(times[0]),
            per_op(times[n - 1])
        ),
    }
}

thread_local! {
    /// How many of the memory benchmark's tasks have started.
    static STARTED: Cell<usize> = const { Cell::new(0) };
}

fn started() {
    STARTED.with(|c| c.set(c.get() + 1));
}

/// How many times the memory harness yields after the last task started,
/// before it reads the resident set.
const SETTLE_YIELDS: usize = 8;

/// Creates `n` items with `create`, waits until `expect_started` tasks have
/// run their first step and the runtime has turned a few more times, and
/// reports the resident-memory growth per item.
fn memory<R, C>(n: usize, expect_started: usize, create: C) -> Outcome
where
    R: Runtime,
    C: FnOnce(&R::Handle, usize) + 'static,
{
    let (before, after) = R::block_on(move |h| async move {
        // Let the runtime initialise what it does lazily.
        R::yield_now().await;
        let before = sys::rss_kb();
        create(&h, n);
        while STARTED.with(Cell::get) < expect_started {
            R::yield_now().await;
        }
        // Steady state: let the runtime finish the iterations that ran the
        // burst (a runtime may give back queue memory at their end).
        for _ in 0..SETTLE_YIELDS {
            R::yield_now().await;
        }
        (before, sys::rss_kb())
    });
    let delta_kb = after.saturating_sub(before);
    Outcome {
        value: delta_kb as f64 * 1024.0 / n as f64,
        ops: n as u64,
        elapsed_ns: 0,
        peak_rss_kb: sys::peak_rss_kb(),
        extra: format!("rss_before_kb={before},rss_after_kb={after}"),
    }
}

/// Counts finished tasks and fires `done` when the last one finishes.
#[derive(Clone)]
struct Countdown {
    left: Rc<Cell<usize>>,
    done: Rc<RefCell<Option<oneshot::Sender<()>>>>,
}

impl Countdown {
    fn new(n: usize) -> (Countdown, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let c = Countdown {
            left: Rc::new(Cell::new(n)),
            done: Rc::new(RefCell::new(Some(tx))),
        };
        if n == 0 {
            c.fire();
        }
        (c, rx)
    }

    fn tick(&self) {
        let left = self.left.get() - 1;
        self.left.set(left);
        if left == 0 {
            self.fire();
        }
    }

    fn fire(&self) {
        if let Some(tx) = self.done.borrow_mut().take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// Time benchmarks

/// `n` batches of `m` empty tasks, each batch spawned then joined in order.
fn spawn_many<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, (s.n * s.m) as u64, move |h| async move {
        for _ in 0..s.n {
            let joins: Vec<R::Join<()>> = (0..s.m).map(|_| R::spawn(&h, async {})).collect();
            for j in joins {
                j.await;
            }
        }
    })
}

/// `n` tasks each yielding `m` times, all joined.
fn yield_many<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, (s.n * s.m) as u64, move |h| async move {
        let joins: Vec<R::Join<()>> = (0..s.n)
            .map(|_| {
                R::spawn(&h, async move {
                    for _ in 0..s.m {
                        R::yield_now().await;
                    }
                })
            })
            .collect();
        for j in joins {
            j.await;
        }
    })
}

/// `n` pairs of tasks: A spawns B, sends on one oneshot, B answers on the
/// other (tokio's `ping_pong` benchmark). One op = one pair's exchange.
fn ping_pong<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, s.n as u64, move |h| async move {
        let (count, done) = Countdown::new(s.n);
        for _ in 0..s.n {
            let (h2, count) = (h.clone(), count.clone());
            R::spawn_detached(&h, async move {
                let (tx1, rx1) = oneshot::channel::<()>();
                let (tx2, rx2) = oneshot::channel::<()>();
                R::spawn_detached(&h2, async move {
                    rx1.await.expect("ping");
                    tx2.send(()).expect("pong");
                });
                tx1.send(()).expect("ping");
                rx2.await.expect("pong");
                count.tick();
            });
        }
        done.await.expect("ping_pong done");
    })
}

fn spawn_link<R: Runtime>(h: R::Handle, left: usize, done: oneshot::Sender<()>) {
    if left == 0 {
        let _ = done.send(());
        return;
    }
    let next = h.clone();
    R::spawn_detached(&h, async move { spawn_link::<R>(next, left - 1, done) });
}

/// A chain `n` tasks deep: each task spawns the next (detached); the last
/// fires a oneshot. One op = one link.
fn chained_spawn<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, s.n as u64, move |h| async move {
        let (tx, rx) = oneshot::channel();
        spawn_link::<R>(h, s.n, tx);
        rx.await.expect("chain done");
    })
}

fn callback_link<R: Runtime>(h: R::Handle, left: usize, done: oneshot::Sender<()>) {
    if left == 0 {
        let _ = done.send(());
        return;
    }
    let next = h.clone();
    R::call_soon(&h, move || callback_link::<R>(next, left - 1, done));
}

/// `n` callbacks each scheduling the next with `call_soon`; peers without
/// callbacks run the nearest equivalent, a chain of detached tiny tasks.
fn call_soon_chain<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, s.n as u64, move |h| async move {
        let (tx, rx) = oneshot::channel();
        if R::NATIVE_CALLBACKS {
            callback_link::<R>(h, s.n, tx);
        } else {
            spawn_link::<R>(h, s.n, tx);
        }
        rx.await.expect("chain done");
    })
}

const TREE_WIDTH: usize = 6;

/// One node of the gather tree: spawns its 6 children as tasks, joins them.
fn tree<R: Runtime>(
    h: R::Handle,
    depth: usize,
    leaf_sleep: Option<Duration>,
) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        if depth == 0 {
            if let Some(d) = leaf_sleep {
                R::sleep(d).await;
            }
            return;
        }
        let joins: [R::Join<()>; TREE_WIDTH] =
            std::array::from_fn(|_| R::spawn(&h, tree::<R>(h.clone(), depth - 1, leaf_sleep)));
        for j in joins {
            j.await;
        }
    })
}

fn tree_tasks(depth: usize) -> u64 {
    (1..=depth as u32).map(|k| (TREE_WIDTH as u64).pow(k)).sum()
}

/// pyperformance's async_tree: depth `n`, 6-way gather, no I/O.
fn async_tree<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, tree_tasks(s.n), move |h| tree::<R>(h, s.n, None))
}

/// async_tree with a 1 ms sleep at every leaf (pyperformance's async_tree_io
/// uses asyncio.sleep(0.001) the same way).
fn async_tree_sleep<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, tree_tasks(s.n), move |h| {
        tree::<R>(h, s.n, Some(Duration::from_millis(1)))
    })
}

/// `n` sleeps (1–2 s, spread) created, polled once with a no-op waker inside
/// the runtime (so each registers its timer), then dropped (cancelled).
fn timer_reg_drop<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, s.n as u64, move |_h| async move {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        for i in 0..s.n as u64 {
            let d = Duration::from_secs(1) + Duration::from_micros(i * 7919 % 1_000_000);
            let mut sleep = pin!(R::sleep(d));
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
        }
    })
}

/// `n` tasks, task i sleeping i/n of `m` ms (uniform over the window), all
/// awaited. One op = one timer (spawn + register + fire + wake + finish).
fn timer_fire<R: Runtime>(s: Size) -> Outcome {
    timed::<R, _, _>(s, s.n as u64, move |h| async move {
        let window = Duration::from_millis(s.m as u64);
        let (count, done) = Countdown::new(s.n);
        for i in 0..s.n {
            let d = window.mul_f64(i as f64 / s.n as f64);
            let count = count.clone();
            R::spawn_detached(&h, async move {
                R::sleep(d).await;
                count.tick();
            });
        }
        done.await.expect("timers done");
    })
}

// ---------------------------------------------------------------------------
// I/O benchmarks: client and server tasks on the same runtime, over loopback.

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The echo server's read buffer: a typical echo server reads what is there
/// into a big buffer and writes it back (a short read also tells a runtime
/// that the socket is drained, which saves it a read that would fail).
const ECHO_BUF: usize = 64 * 1024;

/// Opens `conns` loopback TCP connections (`TCP_NODELAY` on both ends) and
/// spawns a detached echo task on each server end (`read` into a 64 KiB
/// buffer, `write_all` what came, until end of stream; the process exits
/// without tearing down). Returns the client ends.
async fn tcp_echo_pairs<R: Runtime>(h: &R::Handle, conns: usize) -> Vec<R::TcpStream> {
    let (listener, addr) = R::tcp_bind(h, LOOPBACK).await.expect("tcp bind");
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        // The kernel completes the handshake into the backlog (1024 on every
        // runtime), so connect-then-accept needs no second task.
        let client = R::tcp_connect(h, addr).await.expect("tcp connect");
        let mut server = R::tcp_accept(&listener).await.expect("tcp accept");
        R::spawn_detached(h, async move {
            let mut buf = vec![0u8; ECHO_BUF];
            loop {
                match R::read(&mut server, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => R::write_all(&mut server, &buf[..n])
                        .await
                        .expect("echo write"),
                }
            }
        });
        clients.push(client);
    }
    clients
}

/// `conns` connections each doing `n` round trips of `msg` bytes (write_all,
/// then read_exact of the echo), all concurrently, one client task per
/// connection. The connections are opened in the untimed warm-up repetition
/// and reused. One op = one round trip.
fn tcp_ping_pong<R: Runtime>(s: Size, conns: usize, msg: usize) -> Outcome {
    let clients: Rc<RefCell<Vec<R::TcpStream>>> = Rc::default();
    timed::<R, _, _>(s, (conns * s.n) as u64, move |h| {
        let clients = clients.clone();
        async move {
            let open = !clients.borrow().is_empty();
            let streams = if open {
                std::mem::take(&mut *clients.borrow_mut())
            } else {
                tcp_echo_pairs::<R>(&h, conns).await
            };
            let joins: Vec<R::Join<R::TcpStream>> = streams
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    R::spawn(&h, async move {
                        let out = vec![i as u8; msg];
                        let mut back = vec![0u8; msg];
                        for _ in 0..s.n {
                            R::write_all(&mut c, &out).await.expect("write");
                            R::read_exact(&mut c, &mut back).await.expect("read echo");
                        }
                        assert!(s.n == 0 || back == out, "echo differs");
                        c
                    })
                })
                .collect();
            let mut streams = Vec::with_capacity(conns);
            for j in joins {
                streams.push(j.await);
            }
            *clients.borrow_mut() = streams;
        }
    })
}

/// 1 connection, 64-byte messages, `n` round trips.
fn tcp_ping_pong_1x64<R: Runtime>(s: Size) -> Outcome {
    tcp_ping_pong::<R>(s, 1, 64)
}

/// 64 connections, 64-byte messages, `n` round trips each.
fn tcp_ping_pong_64x64<R: Runtime>(s: Size) -> Outcome {
    tcp_ping_pong::<R>(s, 64, 64)
}

/// 64 connections, 1 KiB messages, `n` round trips each.
fn tcp_ping_pong_64x1k<R: Runtime>(s: Size) -> Outcome {
    tcp_ping_pong::<R>(s, 64, 1024)
}

/// The protocol-API echo server: writes back what comes.
#[derive(Default)]
pub(crate) struct EchoProtocol(Option<Transport>);

impl Protocol for EchoProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        self.0 = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.0 {
            t.write(data).expect("echo write");
        }
    }
}

/// The protocol-API client: sends the next message from `data_received` once
/// the whole echo of the previous one has arrived; ticks `done` after `left`
/// round trips.
struct PingProtocol {
    transport: Option<Transport>,
    out: Vec<u8>,
    got: usize,
    left: usize,
    done: Option<Countdown>,
}

impl Protocol for PingProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        // memcmp against what was sent (the stream version's read_exact
        // copies the echo out instead).
        let expect = self.out.get(self.got..self.got + data.len());
        assert!(expect == Some(data), "echo differs");
        self.got += data.len();
        if self.got < self.out.len() {
            return;
        }
        self.got = 0;
        self.left -= 1;
        if self.left > 0 {
            let t = self.transport.as_ref().expect("connected");
            t.write(&self.out).expect("write");
        } else if let Some(done) = self.done.take() {
            done.tick();
        }
    }
}

/// What `tcp_proto_ping_pong` keeps between repetitions: the server and the
/// client protocols.
type ProtoClients = (Server, Vec<(Transport, Rc<RefCell<PingProtocol>>)>);

/// The protocol version of [`tcp_ping_pong`] (aioloop's protocol/transport
/// API, no task per connection): an echo server from `create_server` and
/// `conns` clients from `create_connection`, each client protocol sending the
/// next message from `data_received`; the main future waits on a countdown
/// the last round trip of each connection ticks. Runtimes without a protocol
/// API run [`tcp_ping_pong`] (their streams). One op = one round trip.
fn tcp_proto_ping_pong<R: Runtime>(s: Size, conns: usize, msg: usize) -> Outcome {
    if !R::NATIVE_PROTOCOLS {
        return tcp_ping_pong::<R>(s, conns, msg);
    }
    let state: Rc<RefCell<Option<ProtoClients>>> = Rc::default();
    timed::<R, _, _>(s, (conns * s.n) as u64, move |h| {
        let state = state.clone();
        async move {
            let lp = R::event_loop(&h);
            if state.borrow().is_none() {
                let host = LOOPBACK.ip().to_string();
                let server = lp
                    .create_server(EchoProtocol::default, &host, 0)
                    .await
                    .expect("create_server");
                let port = server.sockets()[0].port();
                let mut clients = Vec::with_capacity(conns);
                for i in 0..conns {
                    let factory = move || PingProtocol {
                        transport: None,
                        out: vec![i as u8; msg],
                        got: 0,
                        left: 0,
                        done: None,
                    };
                    let c = lp
                        .create_connection(factory, &host, port)
                        .await
                        .expect("create_connection");
                    clients.push(c);
                }
                *state.borrow_mut() = Some((server, clients));
            }
            let (count, done) = Countdown::new(if s.n == 0 { 0 } else { conns });
            if s.n > 0 {
                let st = state.borrow();
                for (t, p) in &st.as_ref().expect("connected").1 {
                    let out = {
                        let mut p = p.borrow_mut();
                        p.left = s.n;
                        p.done = Some(count.clone());
                        p.out.clone()
                    };
                    t.write(&out).expect("first write");
                }
            }
            done.await.expect("proto ping-pong done");
        }
    })
}

/// Protocol API, 1 connection, 64-byte messages, `n` round trips.
fn tcp_proto_ping_pong_1x64<R: Runtime>(s: Size) -> Outcome {
    tcp_proto_ping_pong::<R>(s, 1, 64)
}

/// Protocol API, 64 connections, 64-byte messages, `n` round trips each.
fn tcp_proto_ping_pong_64x64<R: Runtime>(s: Size) -> Outcome {
    tcp_proto_ping_pong::<R>(s, 64, 64)
}

/// Protocol API, 64 connections, 1 KiB messages, `n` round trips each.
fn tcp_proto_ping_pong_64x1k<R: Runtime>(s: Size) -> Outcome {
    tcp_proto_ping_pong::<R>(s, 64, 1024)
}

/// The unit of the cross-process benchmarks.
const XPROC_UNIT: &str = "server CPU ns/msg";

/// Cross-process echo, streams server, 1 connection of 64-byte messages.
fn tcp_echo_xproc_1x64<R: Runtime>(s: Size) -> Outcome {
    xproc::xproc_echo::<R>(s, xproc::Mode::Streams, 1, 64)
}

/// Cross-process echo, streams server, 64 connections of 64-byte messages.
fn tcp_echo_xproc_64x64<R: Runtime>(s: Size) -> Outcome {
    xproc::xproc_echo::<R>(s, xproc::Mode::Streams, 64, 64)
}

/// Cross-process echo, protocol-API server, 1 connection of 64-byte messages.
fn tcp_proto_echo_xproc_1x64<R: Runtime>(s: Size) -> Outcome {
    xproc::xproc_echo::<R>(s, xproc::Mode::Protocols, 1, 64)
}

/// Cross-process echo, protocol-API server, 64 connections of 64-byte messages.
fn tcp_proto_echo_xproc_64x64<R: Runtime>(s: Size) -> Outcome {
    xproc::xproc_echo::<R>(s, xproc::Mode::Protocols, 64, 64)
}

/// `udp_ping_pong`'s client socket and its echo server's address.
type UdpClient<R> = (<R as Runtime>::UdpSocket, SocketAddr);

/// One pair of UDP sockets: the client sends an `m`-byte datagram with
/// `send_to`, a detached echo task answers with `recv_from` + `send_to`, the
/// client waits for it with `recv_from`; `n` round trips. The sockets are
/// bound in the untimed warm-up repetition and reused.
fn udp_ping_pong<R: Runtime>(s: Size) -> Outcome {
    // The client socket and the echo server's address, once bound.
    let client: Rc<RefCell<Option<UdpClient<R>>>> = Rc::default();
    timed::<R, _, _>(s, s.n as u64, move |h| {
        let client = client.clone();
        async move {
            let taken = client.borrow_mut().take();
            let (sock, server) = match taken {
                Some(c) => c,
                None => {
                    let (server, server_addr) = R::udp_bind(&h, LOOPBACK).await.expect("udp bind");
                    R::spawn_detached(&h, async move {
                        let mut buf = vec![0u8; 65_536];
                        loop {
                            let (len, from) = R::recv_from(&server, &mut buf).await.expect("recv");
                            R::send_to(&server, &buf[..len], from).await.expect("echo");
                        }
                    });
                    let (sock, _) = R::udp_bind(&h, LOOPBACK).await.expect("udp bind");
                    (sock, server_addr)
                }
            };
            let out = vec![7u8; s.m];
            let mut back = vec![0u8; s.m + 1];
            for _ in 0..s.n {
                let sent = R::send_to(&sock, &out, server).await.expect("send_to");
                assert_eq!(sent, s.m);
                let (len, from) = R::recv_from(&sock, &mut back).await.expect("recv_from");
                assert_eq!((len, from), (s.m, server), "unexpected datagram");
            }
            *client.borrow_mut() = Some((sock, server));
        }
    })
}

// ---------------------------------------------------------------------------
// Memory benchmarks

/// `n` detached tasks each awaiting a future that never completes.
fn mem_pending_tasks<R: Runtime>(s: Size) -> Outcome {
    memory::<R, _>(s.n, s.n, |h, n| {
        for _ in 0..n {
            R::spawn_detached(h, async {
                started();
                std::future::pending::<()>().await;
            });
        }
    })
}

/// `n` detached tasks each in `sleep(1 hour)`.
fn mem_sleeping_tasks<R: Runtime>(s: Size) -> Outcome {
    memory::<R, _>(s.n, s.n, |h, n| {
        for _ in 0..n {
            R::spawn_detached(h, async {
                started();
                R::sleep(Duration::from_secs(3600)).await;
            });
        }
    })
}

/// `n` callbacks scheduled with `call_later(1 hour)` (handles dropped: the
/// callbacks stay scheduled). Peers: a detached task that sleeps then calls.
fn mem_call_later<R: Runtime>(s: Size) -> Outcome {
    let expect = if R::NATIVE_CALLBACKS { 0 } else { s.n };
    let hour = Duration::from_secs(3600);
    memory::<R, _>(s.n, expect, move |h, n| {
        for i in 0..n {
            let f = move || {
                std::hint::black_box(i);
            };
            if R::NATIVE_CALLBACKS {
                R::call_later(h, hour, f);
            } else {
                R::spawn_detached(h, async move {
                    started();
                    R::sleep(hour).await;
                    f();
                });
            }
        }
    })
}

// ---------------------------------------------------------------------------
// The table

macro_rules! benches {
    ($( $name:ident {
        kind: $kind:expr, unit: $unit:expr, full: $full:expr, smoke: $smoke:expr,
        about: $about:expr, peers: $peers:expr $(,)?
    } )*) => {
        /// Every benchmark, in report order.
        pub const BENCHES: &[Bench] = &[$(
            Bench {
                name: stringify!($name),
                kind: $kind,
                unit: $unit,
                full: $full,
                smoke: $smoke,
                about: $about,
                peers: $peers,
            },
        )*];

        /// Runs benchmark `name` on runtime `R`.
        pub fn run<R: Runtime>(name: &str, s: Size) -> Option<Outcome> {
            match name {
                $( stringify!($name) => Some($name::<R>(s)), )*
                _ => None,
            }
        }
    };
}

benches! {
    spawn_many {
        kind: Kind::Time, unit: "ns/task", full: size(200, 1_000, 5), smoke: size(10, 100, 1),
        about: "n batches of m empty tasks (200 x 1,000): each batch spawned, then its join handles awaited in order",
        peers: None,
    }
    yield_many {
        kind: Kind::Time, unit: "ns/yield", full: size(200, 1_000, 5), smoke: size(10, 100, 1),
        about: "n tasks (200) each yielding m times (1,000), all joined",
        peers: None,
    }
    ping_pong {
        kind: Kind::Time, unit: "ns/pair", full: size(1_000, 0, 200), smoke: size(100, 0, 1),
        about: "n pairs (1,000): task A spawns B, pings it on a futures oneshot, B pongs on a second oneshot (tokio's ping_pong)",
        peers: None,
    }
    chained_spawn {
        kind: Kind::Time, unit: "ns/link", full: size(1_000, 0, 300), smoke: size(100, 0, 1),
        about: "a chain n deep (1,000): each detached task spawns the next; the last fires a oneshot",
        peers: None,
    }
    call_soon_chain {
        kind: Kind::Time, unit: "ns/callback", full: size(1_000_000, 0, 5), smoke: size(1_000, 0, 1),
        about: "n callbacks (1M), each scheduling the next with call_soon",
        peers: Some("a chain of 1M detached tiny tasks, each spawning the next (no callback API)"),
    }
    async_tree {
        kind: Kind::Time, unit: "ns/task", full: size(6, 0, 10), smoke: size(3, 0, 1),
        about: "gather tree n levels deep (6), 6-way (55,986 tasks): each node spawns 6 children and joins them",
        peers: None,
    }
    async_tree_sleep {
        kind: Kind::Time, unit: "ns/task", full: size(6, 0, 10), smoke: size(3, 0, 1),
        about: "async_tree with a 1 ms sleep at each of the 46,656 leaves",
        peers: None,
    }
    timer_reg_drop {
        kind: Kind::Time, unit: "ns/sleep", full: size(1_000_000, 0, 5), smoke: size(10_000, 0, 1),
        about: "n sleeps (1M, 1-2 s) created, polled once with a no-op waker inside the runtime, dropped",
        peers: None,
    }
    timer_fire {
        kind: Kind::Time, unit: "ns/timer", full: size(200_000, 10, 5), smoke: size(2_000, 2, 1),
        about: "n tasks (200k) sleeping uniformly over m ms (10), all awaited; includes the spawn",
        peers: None,
    }
    tcp_ping_pong_1x64 {
        kind: Kind::Time, unit: "ns/round trip", full: size(10_000, 0, 5), smoke: size(200, 0, 1),
        about: "1 loopback TCP connection, n round trips (10,000) of 64 B: the client task write_all()s the message and read_exact()s the echo; an echo task on the same runtime read()s into a 64 KiB buffer and write_all()s what came; TCP_NODELAY",
        peers: None,
    }
    tcp_ping_pong_64x64 {
        kind: Kind::Time, unit: "ns/round trip", full: size(200, 0, 5), smoke: size(20, 0, 1),
        about: "64 loopback TCP connections concurrently, n round trips (200) of 64 B each (64 client + 64 echo tasks); ns = total time / total round trips",
        peers: None,
    }
    tcp_ping_pong_64x1k {
        kind: Kind::Time, unit: "ns/round trip", full: size(200, 0, 5), smoke: size(20, 0, 1),
        about: "as tcp_ping_pong_64x64 with 1 KiB messages",
        peers: None,
    }
    tcp_proto_ping_pong_1x64 {
        kind: Kind::Time, unit: "ns/round trip", full: size(10_000, 0, 5), smoke: size(200, 0, 1),
        about: "tcp_ping_pong_1x64 on aioloop's protocol API, no task per connection: an echo server from create_server (its protocol writes back what data_received gets) and a client from create_connection whose protocol writes the next message from data_received once the whole echo arrived; the main future awaits a oneshot the last round trip fires",
        peers: Some("their stream version, tcp_ping_pong_1x64 (no protocol API)"),
    }
    tcp_proto_ping_pong_64x64 {
        kind: Kind::Time, unit: "ns/round trip", full: size(200, 0, 5), smoke: size(20, 0, 1),
        about: "tcp_ping_pong_64x64 on the protocol API: 64 client protocols from create_connection, one create_server echo server; a countdown over the 64 connections fires the oneshot",
        peers: Some("their stream version, tcp_ping_pong_64x64 (no protocol API)"),
    }
    tcp_proto_ping_pong_64x1k {
        kind: Kind::Time, unit: "ns/round trip", full: size(200, 0, 5), smoke: size(20, 0, 1),
        about: "as tcp_proto_ping_pong_64x64 with 1 KiB messages",
        peers: Some("their stream version, tcp_ping_pong_64x1k (no protocol API)"),
    }
    udp_ping_pong {
        kind: Kind::Time, unit: "ns/round trip", full: size(10_000, 64, 5), smoke: size(200, 64, 1),
        about: "1 pair of loopback UDP sockets, n round trips (10,000) of m-byte datagrams (64): client send_to + recv_from, an echo task recv_from + send_to on the same runtime",
        peers: None,
    }
    tcp_echo_xproc_1x64 {
        kind: Kind::Time, unit: XPROC_UNIT, full: size(1_000, 0, 1), smoke: size(100, 0, 1),
        about: "cross-process TCP echo: the runtime's echo server (a task per connection: read into a 64 KiB buffer, write_all it back) in its own process pinned to CPU 0; one shared load client (plain mio, the same for every server) pinned to CPU 1 keeps one 64 B message in flight on 1 connection; after a 300 ms warm-up it counts echoed messages for n ms (1,000); value = server CPU time (user + kernel, /proc/PID/task/*/schedstat) per message",
        peers: None,
    }
    tcp_echo_xproc_64x64 {
        kind: Kind::Time, unit: XPROC_UNIT, full: size(1_000, 0, 1), smoke: size(100, 0, 1),
        about: "as tcp_echo_xproc_1x64 with 64 connections, one 64 B message in flight on each",
        peers: None,
    }
    tcp_proto_echo_xproc_1x64 {
        kind: Kind::Time, unit: XPROC_UNIT, full: size(1_000, 0, 1), smoke: size(100, 0, 1),
        about: "tcp_echo_xproc_1x64 with aioloop's protocol-API echo server (create_server; data_received writes back what came; no task per connection)",
        peers: Some("their streams server, tcp_echo_xproc_1x64 (no protocol API)"),
    }
    tcp_proto_echo_xproc_64x64 {
        kind: Kind::Time, unit: XPROC_UNIT, full: size(1_000, 0, 1), smoke: size(100, 0, 1),
        about: "as tcp_proto_echo_xproc_1x64 with 64 connections",
        peers: Some("their streams server, tcp_echo_xproc_64x64 (no protocol API)"),
    }
    mem_pending_tasks {
        kind: Kind::Memory, unit: "B/task", full: size(1_000_000, 0, 1), smoke: size(10_000, 0, 1),
        about: "n detached tasks (1M) each awaiting std::future::pending()",
        peers: None,
    }
    mem_sleeping_tasks {
        kind: Kind::Memory, unit: "B/task", full: size(1_000_000, 0, 1), smoke: size(10_000, 0, 1),
        about: "n detached tasks (1M) each in sleep(1 hour)",
        peers: None,
    }
    mem_call_later {
        kind: Kind::Memory, unit: "B/callback", full: size(1_000_000, 0, 1), smoke: size(10_000, 0, 1),
        about: "n callbacks (1M) scheduled with call_later(1 hour), handles dropped",
        peers: Some("a detached task per callback that sleeps 1 hour then calls it (no call_later)"),
    }
}

impl Bench {
    /// One of the I/O benchmarks (their op is a network round trip).
    pub fn is_io(&self) -> bool {
        self.unit == "ns/round trip"
    }

    /// One of the cross-process benchmarks (server and client processes).
    pub fn is_xproc(&self) -> bool {
        self.unit == XPROC_UNIT
    }
}

/// Looks a benchmark up by name.
pub fn find(name: &str) -> Option<&'static Bench> {
    BENCHES.iter().find(|b| b.name == name)
}
