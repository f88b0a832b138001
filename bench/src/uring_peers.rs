//! io_uring peers (Linux): monoio and compio, each on its own io_uring
//! driver. Their I/O takes owned buffers (the completion model): the
//! benchmark's borrowed-slice calls copy into and out of a reused owned
//! buffer, as an application adapting them would.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::runtimes::{Runtime, Unwrap};

thread_local! {
    /// One reusable owned buffer per thread, so a copy is the only price
    /// of the borrowed-slice calls (no allocation per operation).
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn owned(len: usize) -> Vec<u8> {
    let mut v = SPARE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    v.clear();
    v.reserve(len);
    v
}

fn owned_copy(data: &[u8]) -> Vec<u8> {
    let mut v = owned(data.len());
    v.extend_from_slice(data);
    v
}

fn give_back(v: Vec<u8>) {
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.capacity() < v.capacity() {
            *s = v;
        }
    });
}

// ---------------------------------------------------------------------------
// monoio

/// monoio on its io_uring driver.
#[derive(Debug)]
pub struct Monoio;

impl Runtime for Monoio {
    const NAME: &'static str = "monoio";
    const ABOUT: &'static str = "monoio 0.2: \
        RuntimeBuilder::<IoUringDriver>::new().enable_timer().build() + block_on; \
        monoio::spawn, monoio::time::sleep, yield = sleep(0) (monoio has no yield_now; a self-woken task starves the others); monoio::net TcpListener / TcpStream / UdpSocket \
        with AsyncReadRent / AsyncWriteRentExt on owned buffers (copied from / into the benchmark's slices)";

    type Handle = ();
    type Join<T: 'static> = monoio::task::JoinHandle<T>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("monoio: io_uring runtime");
        let out = rt.block_on(main(()));
        std::mem::forget(rt);
        out
    }

    fn spawn<F>(_h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        monoio::spawn(fut)
    }

    fn spawn_detached<F>(_h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        drop(monoio::spawn(fut));
    }

    /// monoio has no `yield_now`, and a task that wakes itself is run again
    /// before the others (they starve), so a yield is a zero-length sleep:
    /// the task comes back after the others ran and the driver was polled.
    async fn yield_now() {
        monoio::time::sleep(Duration::ZERO).await;
    }

    async fn sleep(d: Duration) {
        monoio::time::sleep(d).await;
    }

    type TcpListener = monoio::net::TcpListener;
    type TcpStream = monoio::net::TcpStream;
    type UdpSocket = monoio::net::udp::UdpSocket;

    async fn tcp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::TcpListener, SocketAddr)> {
        let l = monoio::net::TcpListener::bind(addr)?;
        let addr = l.local_addr()?;
        Ok((l, addr))
    }

    async fn tcp_accept(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn tcp_connect(_h: &Self::Handle, addr: SocketAddr) -> io::Result<Self::TcpStream> {
        let s = monoio::net::TcpStream::connect_addr(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn write_all(s: &mut Self::TcpStream, buf: &[u8]) -> io::Result<()> {
        use monoio::io::AsyncWriteRentExt;
        let (res, v) = s.write_all(owned_copy(buf)).await;
        give_back(v);
        res.map(|_| ())
    }

    async fn read(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        use monoio::io::AsyncReadRent;
        let (res, v) = s.read(owned(buf.len())).await;
        let n = res?;
        buf[..n].copy_from_slice(&v[..n]);
        give_back(v);
        Ok(n)
    }

    async fn read_exact(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<()> {
        use monoio::io::AsyncReadRentExt;
        let (res, v) = s.read_exact(owned(buf.len())).await;
        res?;
        buf.copy_from_slice(&v[..buf.len()]);
        give_back(v);
        Ok(())
    }

    async fn udp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::UdpSocket, SocketAddr)> {
        let s = monoio::net::udp::UdpSocket::bind(addr)?;
        let addr = s.local_addr()?;
        Ok((s, addr))
    }

    async fn send_to(s: &Self::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let (res, v) = s.send_to(owned_copy(buf), to).await;
        give_back(v);
        res
    }

    async fn recv_from(s: &Self::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (res, v) = s.recv_from(owned(buf.len())).await;
        let (n, from) = res?;
        buf[..n].copy_from_slice(&v[..n]);
        give_back(v);
        Ok((n, from))
    }
}

// ---------------------------------------------------------------------------
// compio

/// compio on its io_uring driver.
#[derive(Debug)]
pub struct Compio;

impl Runtime for Compio {
    const NAME: &'static str = "compio";
    const ABOUT: &'static str = "compio 0.17: compio::runtime::Runtime::new() + block_on (io_uring driver); \
        compio::runtime::spawn, compio::time::sleep, futures_lite::future::yield_now; compio::net TcpListener / TcpStream / UdpSocket \
        with compio::io AsyncRead / AsyncWriteExt on owned buffers (copied from / into the benchmark's slices)";

    type Handle = ();
    type Join<T: 'static> = Unwrap<compio::runtime::JoinHandle<T>>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let rt = compio::runtime::Runtime::new().expect("compio: runtime");
        let out = rt.block_on(main(()));
        std::mem::forget(rt);
        out
    }

    fn spawn<F>(_h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        Unwrap::new(compio::runtime::spawn(fut))
    }

    fn spawn_detached<F>(_h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        compio::runtime::spawn(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> {
        futures_lite::future::yield_now()
    }

    async fn sleep(d: Duration) {
        compio::time::sleep(d).await;
    }

    type TcpListener = compio::net::TcpListener;
    type TcpStream = compio::net::TcpStream;
    type UdpSocket = compio::net::UdpSocket;

    async fn tcp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::TcpListener, SocketAddr)> {
        let l = compio::net::TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        Ok((l, addr))
    }

    async fn tcp_accept(l: &Self::TcpListener) -> io::Result<Self::TcpStream> {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn tcp_connect(_h: &Self::Handle, addr: SocketAddr) -> io::Result<Self::TcpStream> {
        let s = compio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn write_all(s: &mut Self::TcpStream, buf: &[u8]) -> io::Result<()> {
        use compio::io::AsyncWriteExt;
        let compio::BufResult(res, v) = s.write_all(owned_copy(buf)).await;
        give_back(v);
        res
    }

    async fn read(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        use compio::io::AsyncRead;
        let compio::BufResult(res, v) = s.read(owned(buf.len())).await;
        let n = res?;
        buf[..n].copy_from_slice(&v[..n]);
        give_back(v);
        Ok(n)
    }

    async fn read_exact(s: &mut Self::TcpStream, buf: &mut [u8]) -> io::Result<()> {
        use compio::io::AsyncReadExt;
        let mut v = owned(buf.len());
        v.resize(buf.len(), 0);
        let compio::BufResult(res, v) = s.read_exact(v).await;
        res?;
        buf.copy_from_slice(&v[..buf.len()]);
        give_back(v);
        Ok(())
    }

    async fn udp_bind(
        _h: &Self::Handle,
        addr: SocketAddr,
    ) -> io::Result<(Self::UdpSocket, SocketAddr)> {
        let s = compio::net::UdpSocket::bind(addr).await?;
        let addr = s.local_addr()?;
        Ok((s, addr))
    }

    async fn send_to(s: &Self::UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let compio::BufResult(res, v) = s.send_to(owned_copy(buf), to).await;
        give_back(v);
        res
    }

    async fn recv_from(s: &Self::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let compio::BufResult(res, v) = s.recv_from(owned(buf.len())).await;
        let (n, from) = res?;
        buf[..n].copy_from_slice(&v[..n]);
        give_back(v);
        Ok((n, from))
    }
}
