//! The runtimes under test, behind one small trait.
//!
//! Adding a peer = one `impl Runtime for NewPeer` (a few dozen lines) plus
//! one line in [`RUNTIMES`]. Every benchmark body is generic over
//! [`Runtime`], so a new peer runs all of them.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::benches::{self, Outcome, Size};

/// What a benchmark needs from a single-threaded async runtime.
pub trait Runtime: 'static {
    /// Name on the command line and in the tables.
    const NAME: &'static str;
    /// How this runtime is built and driven (printed in the results).
    const ABOUT: &'static str;
    /// Whether the runtime has asyncio-style callbacks (`call_soon`,
    /// `call_later`). Peers without them run the benchmark's nearest
    /// equivalent (a tiny spawned task).
    const NATIVE_CALLBACKS: bool = false;
    /// Whether the runtime has asyncio's protocol/transport API
    /// (`create_server`, `create_connection`, callback-driven protocols).
    /// Peers without it run the benchmark's stream version.
    const NATIVE_PROTOCOLS: bool = false;

    /// What spawned code keeps to spawn more work (a loop or executor
    /// handle; `()` when the runtime has free functions).
    type Handle: Clone + 'static;
    /// A join handle whose output is the task's output (failures panic:
    /// no benchmark task fails).
    type Join<T: 'static>: Future<Output = T> + Unpin + 'static;

    /// Builds a fresh runtime on this thread and drives `main` to completion.
    /// The runtime is leaked, not torn down: each benchmark runs in its own
    /// short-lived process, and tearing down a million tasks measures nothing.
    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future;

    /// Spawns a task on the current thread's runtime.
    fn spawn<F>(h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static;

    /// Spawns a task nobody joins.
    fn spawn_detached<F>(h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static;

    /// Lets other ready tasks run once.
    fn yield_now() -> impl Future<Output = ()>;

    /// Sleeps on the running runtime's timer.
    fn sleep(d: Duration) -> impl Future<Output = ()>;

    /// `call_soon` (only called when [`Runtime::NATIVE_CALLBACKS`]).
    fn call_soon<F: FnOnce() + 'static>(_h: &Self::Handle, _f: F) {
        unreachable!("{} has no native callbacks", Self::NAME)
    }

    /// `call_later` (only called when [`Runtime::NATIVE_CALLBACKS`]).
    fn call_later<F: FnOnce() + 'static>(_h: &Self::Handle, _d: Duration, _f: F) {
        unreachable!("{} has no native callbacks", Self::NAME)
    }

    /// The event loop behind the handle, for the protocol-API benchmarks
    /// (only called when [`Runtime::NATIVE_PROTOCOLS`]).
    fn event_loop(_h: &Self::Handle) -> &aioloop::EventLoop {
        unreachable!("{} has no protocol API", Self::NAME)
    }

    // --- Networking (the I/O benchmarks): each runtime's own socket types,
    // driven by its own reactor, through its own read/write extension traits.

    /// A listening TCP socket.
    type TcpListener: 'static;
    /// A connected TCP stream.
    type TcpStream: 'static;
    /// A bound UDP socket.
    type UdpSocket: 'static;

    /// Binds a TCP listener (port 0: any free port); returns it and its address.
    fn tcp_bind(
        h: &Self::Handle,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::TcpListener, SocketAddr)>>;

    /// Accepts one connection, with `TCP_NODELAY` set.
    fn tcp_accept(l: &Self::TcpListener) -> impl Future<Output = io::Result<Self::TcpStream>>;

    /// Connects to `addr`, with `TCP_NODELAY` set.
    fn tcp_connect(
        h: &Self::Handle,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpStream>>;

    /// Writes all of `buf`.
    fn write_all(s: &mut Self::TcpStream, buf: &[u8]) -> impl Future<Output = io::Result<()>>;

    /// Reads what is available (at most `buf.len()` bytes; 0 at end of stream).
    fn read(s: &mut Self::TcpStream, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;

    /// Fills `buf` exactly.
    fn read_exact(s: &mut Self::TcpStream, buf: &mut [u8]) -> impl Future<Output = io::Result<()>>;

    /// Binds a UDP socket (port 0: any free port); returns it and its address.
    fn udp_bind(
        h: &Self::Handle,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::UdpSocket, SocketAddr)>>;

    /// Sends one datagram to `to`.
    fn send_to(
        s: &Self::UdpSocket,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>>;

    /// Receives one datagram: its length and sender.
    fn recv_from(
        s: &Self::UdpSocket,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
}

/// aioloop's errors as `io::Error` (the I/O benchmarks expect them all).
fn io_err(e: aioloop::Error) -> io::Error {
    io::Error::other(e)
}

/// Unwraps a join handle whose output is a `Result`.
#[derive(Debug)]
pub struct Unwrap<J>(J);

impl<J> Unwrap<J> {
    /// Wraps a join handle whose output is a `Result`.
    pub fn new(join: J) -> Unwrap<J> {
        Unwrap(join)
    }
}

impl<J, T, E> Future for Unwrap<J>
where
    J: Future<Output = Result<T, E>> + Unpin,
    E: Debug,
{
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.expect("a benchmark task failed"))
    }
}

// ---------------------------------------------------------------------------
// aioloop

/// aioloop: `EventLoop::new()`, `run_until_complete`, `create_task`,
/// `call_soon` / `call_later`, `aioloop::sleep`, `aioloop::yield_now`.
#[derive(Debug)]
pub struct AioLoop;

impl Runtime for AioLoop {
    const NAME: &'static str = "aioloop";
    const ABOUT: &'static str = "aioloop: EventLoop::new() + run_until_complete; tasks with \
        EventLoop::create_task (handle passed down), aioloop::sleep, aioloop::yield_now, \
        EventLoop::call_soon / call_later; aioloop::net TcpListener::bind_on / TcpStream::connect_on / UdpSocket::bind_on with futures::io AsyncReadExt / AsyncWriteExt; \
        protocols with EventLoop::create_server / create_connection and Transport::write";
    const NATIVE_CALLBACKS: bool = true;
    const NATIVE_PROTOCOLS: bool = true;

    type Handle = aioloop::EventLoop;
    type Join<T: 'static> = Unwrap<aioloop::Task<T>>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let lp = aioloop::EventLoop::new().expect("aioloop: EventLoop::new");
        let out = lp
            .run_until_complete(main(lp.clone()))
            .expect("aioloop: run_until_complete");
        std::mem::forget(lp);
        out
    }

    fn spawn<F>(h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        Unwrap(h.create_task(fut))
    }

    fn spawn_detached<F>(h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        h.create_task(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> {
        aioloop::yield_now()
    }

    fn sleep(d: Duration) -> impl Future<Output = ()> {
        aioloop::sleep(d)
    }

    fn call_soon<F: FnOnce() + 'static>(h: &Self::Handle, f: F) {
        h.call_soon(f).expect("aioloop: call_soon");
    }

    fn call_later<F: FnOnce() + 'static>(h: &Self::Handle, d: Duration, f: F) {
        h.call_later(d, f).expect("aioloop: call_later");
    }

    fn event_loop(h: &Self::Handle) -> &aioloop::EventLoop {
        h
    }

    type TcpListener = aioloop::net::TcpListener;
    type TcpStream = aioloop::net::TcpStream;
    type UdpSocket = aioloop::net::UdpSocket;

    async fn tcp_bind(
        h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::TcpListener, SocketAddr)> {
        let l = aioloop::net::TcpListener::bind_on(h, addr).map_err(io_err)?;
        let addr = l.local_addr().map_err(io_err)?;
        Ok((l, addr))
    }

    async fn tcp_accept(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (s, _) = l.accept().await.map_err(io_err)?;
        s.set_nodelay(true).map_err(io_err)?;
        Ok(s)
    }

    async fn tcp_connect(h: &Self::Handle, addr: SocketAddr) -> io::Result<Self::TcpStream> {
        let s = aioloop::net::TcpStream::connect_on(h, addr)
            .await
            .map_err(io_err)?;
        s.set_nodelay(true).map_err(io_err)?;
        Ok(s)
    }

    async fn write_all(s: &mut Self::TcpStream, buf: &[u8]) -> io::Result<()> {
        futures::io::AsyncWriteExt::write_all(s, buf).await
    }

    async fn read(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        futures::io::AsyncReadExt::read(s, buf).await
    }

    async fn read_exact(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<()> {
        futures::io::AsyncReadExt::read_exact(s, buf).await
    }

    async fn udp_bind(
        h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::UdpSocket, SocketAddr)> {
        let s = aioloop::net::UdpSocket::bind_on(h, addr).map_err(io_err)?;
        let addr = s.local_addr().map_err(io_err)?;
        Ok((s, addr))
    }

    async fn send_to(s: &Self::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        s.send_to(buf, to).await.map_err(io_err)
    }

    async fn recv_from(s: &Self::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        s.recv_from(buf).await.map_err(io_err)
    }
}

// ---------------------------------------------------------------------------
// tokio

/// tokio's current-thread runtime with a `LocalSet`.
///
/// `tokio::task::spawn_local` on a `LocalSet` measured as fast as (often
/// faster than) `tokio::spawn` on the bare current-thread runtime here
/// (spawn+join 169–190 vs 178–216 ns, chained spawn 131–155 vs 156–173 ns,
/// yield 37–43 vs 36–41 ns), and it takes `!Send` futures, as aioloop and
/// smol's `LocalExecutor` do.
#[derive(Debug)]
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    const ABOUT: &'static str =
        "tokio: Builder::new_current_thread().enable_all() + LocalSet::block_on; \
        tasks with tokio::task::spawn_local, tokio::time::sleep, tokio::task::yield_now; tokio::net TcpListener / TcpStream / UdpSocket with tokio::io AsyncReadExt / AsyncWriteExt";

    type Handle = ();
    type Join<T: 'static> = Unwrap<tokio::task::JoinHandle<T>>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio: build runtime");
        let local = tokio::task::LocalSet::new();
        let out = local.block_on(&rt, main(()));
        std::mem::forget(local);
        std::mem::forget(rt);
        out
    }

    fn spawn<F>(_h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        Unwrap(tokio::task::spawn_local(fut))
    }

    fn spawn_detached<F>(_h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        drop(tokio::task::spawn_local(fut));
    }

    fn yield_now() -> impl Future<Output = ()> {
        tokio::task::yield_now()
    }

    fn sleep(d: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(d)
    }

    type TcpListener = tokio::net::TcpListener;
    type TcpStream = tokio::net::TcpStream;
    type UdpSocket = tokio::net::UdpSocket;

    async fn tcp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::TcpListener, SocketAddr)> {
        let l = tokio::net::TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        Ok((l, addr))
    }

    async fn tcp_accept(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn tcp_connect(_h: &Self::Handle, addr: SocketAddr) -> io::Result<Self::TcpStream> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn write_all(s: &mut Self::TcpStream, buf: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(s, buf).await
    }

    async fn read(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        tokio::io::AsyncReadExt::read(s, buf).await
    }

    async fn read_exact(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<()> {
        tokio::io::AsyncReadExt::read_exact(s, buf).await.map(drop)
    }

    async fn udp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::UdpSocket, SocketAddr)> {
        let s = tokio::net::UdpSocket::bind(addr).await?;
        let addr = s.local_addr()?;
        Ok((s, addr))
    }

    async fn send_to(s: &Self::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        s.send_to(buf, to).await
    }

    async fn recv_from(s: &Self::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        s.recv_from(buf).await
    }
}

// ---------------------------------------------------------------------------
// smol

/// smol's single-threaded executor: `async_executor::LocalExecutor` driven by
/// `async_io::block_on(ex.run(..))` (exactly what `smol::block_on` and
/// `smol::LocalExecutor` are), timers from `async_io::Timer`.
#[derive(Debug)]
pub struct Smol;

impl Runtime for Smol {
    const NAME: &'static str = "smol";
    const ABOUT: &'static str = "smol: async_executor::LocalExecutor driven by \
        async_io::block_on(ex.run(..)); Rc<LocalExecutor> passed down, ex.spawn, \
        async_io::Timer::after, futures_lite::future::yield_now; async_io::Async<std::net::{TcpListener, TcpStream, UdpSocket}> with futures_lite AsyncReadExt / AsyncWriteExt";

    type Handle = Rc<async_executor::LocalExecutor<'static>>;
    type Join<T: 'static> = async_executor::Task<T>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let ex = Rc::new(async_executor::LocalExecutor::new());
        let out = async_io::block_on(ex.run(main(ex.clone())));
        std::mem::forget(ex);
        out
    }

    fn spawn<F>(h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        h.spawn(fut)
    }

    fn spawn_detached<F>(h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        h.spawn(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> {
        futures_lite::future::yield_now()
    }

    async fn sleep(d: Duration) {
        async_io::Timer::after(d).await;
    }

    type TcpListener = async_io::Async<std::net::TcpListener>;
    type TcpStream = async_io::Async<std::net::TcpStream>;
    type UdpSocket = async_io::Async<std::net::UdpSocket>;

    async fn tcp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::TcpListener, SocketAddr)> {
        let l = async_io::Async::<std::net::TcpListener>::bind(addr)?;
        let addr = l.get_ref().local_addr()?;
        Ok((l, addr))
    }

    async fn tcp_accept(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (s, _) = l.accept().await?;
        s.get_ref().set_nodelay(true)?;
        Ok(s)
    }

    async fn tcp_connect(_h: &Self::Handle, addr: SocketAddr) -> io::Result<Self::TcpStream> {
        let s = async_io::Async::<std::net::TcpStream>::connect(addr).await?;
        s.get_ref().set_nodelay(true)?;
        Ok(s)
    }

    async fn write_all(s: &mut Self::TcpStream, buf: &[u8]) -> io::Result<()> {
        futures_lite::AsyncWriteExt::write_all(s, buf).await
    }

    async fn read(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        futures_lite::AsyncReadExt::read(s, buf).await
    }

    async fn read_exact(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<()> {
        futures_lite::AsyncReadExt::read_exact(s, buf).await
    }

    async fn udp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::UdpSocket, SocketAddr)> {
        let s = async_io::Async::<std::net::UdpSocket>::bind(addr)?;
        let addr = s.get_ref().local_addr()?;
        Ok((s, addr))
    }

    async fn send_to(s: &Self::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        s.send_to(buf, to).await
    }

    async fn recv_from(s: &Self::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        s.recv_from(buf).await
    }
}

// ---------------------------------------------------------------------------
// The table

/// One runtime, type-erased: its name and the benchmark dispatcher
/// monomorphised for it.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeEntry {
    /// As on the command line.
    pub name: &'static str,
    /// How it is built and driven.
    pub about: &'static str,
    /// Runs one benchmark by name (`None`: unknown benchmark).
    pub run: fn(&str, Size) -> Option<Outcome>,
    /// Runs this runtime's echo server for the cross-process benchmark.
    pub serve: fn(crate::xproc::Mode),
}

const fn entry<R: Runtime>() -> RuntimeEntry {
    RuntimeEntry {
        name: R::NAME,
        about: R::ABOUT,
        run: benches::run::<R>,
        serve: crate::xproc::serve::<R>,
    }
}

/// Every runtime, aioloop first (the others are its peers).
#[cfg(not(target_os = "linux"))]
pub const RUNTIMES: &[RuntimeEntry] = &[entry::<AioLoop>(), entry::<Tokio>(), entry::<Smol>()];

/// Every runtime, aioloop first (the others are its peers); on Linux also
/// the io_uring peers.
#[cfg(target_os = "linux")]
pub const RUNTIMES: &[RuntimeEntry] = &[
    entry::<AioLoop>(),
    entry::<Tokio>(),
    entry::<Smol>(),
    entry::<crate::uring_peers::Monoio>(),
    entry::<crate::uring_peers::Compio>(),
];

/// Looks a runtime up by name.
pub fn find(name: &str) -> Option<&'static RuntimeEntry> {
    RUNTIMES.iter().find(|r| r.name == name)
}
