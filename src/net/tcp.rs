use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};

use crate::backend::sys::net as sys;
use crate::event_loop::source::{Direction, Registration};
use crate::{Error, EventLoop};

/// The listen queue length of [`TcpListener::bind`] and
/// [`TcpListener::bind_on`] (tokio uses the same).
const DEFAULT_BACKLOG: i32 = 1024;

/// A TCP socket listening for connections (IPv4 or IPv6).
///
/// # Examples
///
/// ```
/// use aioloop::net::{TcpListener, TcpStream};
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
///
/// aioloop::run(async {
///     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
///     let addr = listener.local_addr()?;
///     let lp = aioloop::get_running_loop()?;
///     let server = lp.create_task(async move {
///         let (mut conn, _peer) = listener.accept().await?;
///         let mut buf = [0; 5];
///         conn.read_exact(&mut buf).await?;
///         conn.write_all(&buf).await?;
///         Ok::<_, std::io::Error>(())
///     });
///     let mut client = TcpStream::connect(addr).await?;
///     client.write_all(b"hello").await?;
///     let mut echo = [0; 5];
///     client.read_exact(&mut echo).await?;
///     assert_eq!(&echo, b"hello");
///     server.await?.unwrap();
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct TcpListener {
    io: sys::TcpListener,
    reg: Registration,
}

impl TcpListener {
    /// Binds to `addr` on the running loop (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside a
    /// running loop (see [`bind_on`](TcpListener::bind_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the address is in use or
    /// cannot be bound.
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let l = aioloop::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     assert_ne!(l.local_addr().unwrap().port(), 0);
    /// })
    /// .unwrap();
    /// ```
    pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
        TcpListener::bind_on(&super::running("TcpListener::bind")?, addr)
    }

    /// Binds to `addr` on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`bind`](TcpListener::bind), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l = aioloop::net::TcpListener::bind_on(&lp, "[::1]:0".parse().unwrap());
    /// # drop(l); lp.close().unwrap();
    /// ```
    pub fn bind_on(lp: &EventLoop, addr: SocketAddr) -> Result<TcpListener, Error> {
        TcpListener::bind_on_with_backlog(lp, addr, DEFAULT_BACKLOG)
    }

    /// Like [`bind_on`](TcpListener::bind_on), with a listen queue of
    /// `backlog` pending connections (default 1024; the OS may cap it, on
    /// Linux at `net.core.somaxconn`).
    ///
    /// # Errors
    ///
    /// As [`bind_on`](TcpListener::bind_on), and
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a zero
    /// or negative backlog.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l = aioloop::net::TcpListener::bind_on_with_backlog(&lp, "127.0.0.1:0".parse().unwrap(), 16).unwrap();
    /// # drop(l); lp.close().unwrap();
    /// ```
    pub fn bind_on_with_backlog(
        lp: &EventLoop,
        addr: SocketAddr,
        backlog: i32,
    ) -> Result<TcpListener, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        if backlog <= 0 {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("the listen backlog must be at least 1, not {backlog}"),
            ));
        }
        let mut io = sys::bind_tcp_listener(addr, backlog, false)
            .map_err(|e| Error::io(format_args!("binding a TCP listener to {addr}"), e))?;
        let reg = Registration::new(lp, &mut io)?;
        Ok(TcpListener { io, reg })
    }

    /// Waits for the next connection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) for a failed accept (for
    /// example too many open files); the listener stays usable.
    ///
    /// # Examples
    ///
    /// See [`TcpListener`].
    pub fn accept(&self) -> impl Future<Output = Result<(TcpStream, SocketAddr), Error>> + '_ {
        poll_fn(move |cx| self.poll_accept(cx))
    }

    /// Polls for the next connection (the building block of
    /// [`accept`](TcpListener::accept)).
    ///
    /// # Errors
    ///
    /// As [`accept`](TcpListener::accept).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let l = aioloop::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     let _c = std::net::TcpStream::connect(addr).unwrap();
    ///     let (_s, peer) = poll_fn(|cx| l.poll_accept(cx)).await.unwrap();
    ///     assert!(peer.ip().is_loopback());
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(TcpStream, SocketAddr), Error>> {
        let lp = self.reg.event_loop();
        // A completion backend accepts with its own ACCEPT; the readiness
        // one with the accept syscall.
        let res = self.reg.poll_io(cx, Direction::Read, || {
            self.reg
                .accept_with(|| self.io.accept(), sys::TcpStream::from_std)
        });
        match res {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::io("accepting a TCP connection", e))),
            Poll::Ready(Ok((mut io, peer))) => {
                Poll::Ready(Registration::new(lp, &mut io).map(|reg| {
                    (
                        TcpStream {
                            io,
                            reg,
                            ahead: Default::default(),
                        },
                        peer,
                    )
                }))
            }
        }
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the OS cannot tell.
    ///
    /// # Examples
    ///
    /// See [`bind`](TcpListener::bind).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .local_addr()
            .map_err(|e| Error::io("reading a TCP listener's address", e))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.reg.deregister(&mut self.io);
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.io.local_addr().ok())
            .finish()
    }
}

/// A TCP connection: `futures::io::AsyncRead` + `AsyncWrite`, so `futures`
/// combinators (`read_exact`, `write_all`, buffered readers…) work on it.
///
/// Closing it (`close().await`, from `AsyncWriteExt`) shuts the write side
/// down after everything written so far; dropping it closes the socket.
///
/// # Examples
///
/// See [`TcpListener`].
pub struct TcpStream {
    io: sys::TcpStream,
    reg: Registration,
    ahead: super::ReadAhead,
}

impl TcpStream {
    /// Connects to `addr` from the running loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside a
    /// running loop; [`ErrorKind::Io`](crate::ErrorKind::Io) when the
    /// connection is refused, times out or cannot be made (the message names
    /// the address).
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     // Nothing listens on port 1 here.
    ///     let err = aioloop::net::TcpStream::connect("127.0.0.1:1".parse().unwrap()).await.unwrap_err();
    ///     assert_eq!(err.kind(), aioloop::ErrorKind::Io);
    /// })
    /// .unwrap();
    /// ```
    pub async fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
        let lp = super::running("TcpStream::connect")?;
        TcpStream::connect_on(&lp, addr).await
    }

    /// Connects to `addr` from the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`connect`](TcpStream::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l = aioloop::net::TcpListener::bind_on(&lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// let addr = l.local_addr().unwrap();
    /// let s = lp.run_until_complete(aioloop::net::TcpStream::connect_on(&lp, addr)).unwrap().unwrap();
    /// assert_eq!(s.peer_addr().unwrap(), addr);
    /// # drop((s, l)); lp.close().unwrap();
    /// ```
    pub async fn connect_on(lp: &EventLoop, addr: SocketAddr) -> Result<TcpStream, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let failed = |e| Error::io(format_args!("connecting to {addr}"), e);
        let mut io = sys::TcpStream::connect(addr).map_err(failed)?;
        let reg = Registration::new(lp, &mut io)?;
        let stream = TcpStream {
            io,
            reg,
            ahead: Default::default(),
        };
        // Writable means the attempt finished: either connected or failed.
        poll_fn(|cx| {
            stream.reg.poll_io(cx, Direction::Write, || {
                if let Some(e) = stream.io.take_error()? {
                    return Err(e);
                }
                match stream.io.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            })
        })
        .await
        .map_err(failed)?;
        Ok(stream)
    }

    /// The address of the peer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket is not connected.
    ///
    /// # Examples
    ///
    /// See [`connect_on`](TcpStream::connect_on).
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .peer_addr()
            .map_err(|e| Error::io("reading a TCP stream's peer address", e))
    }

    /// The local address of the connection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the OS cannot tell.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// # let l = aioloop::net::TcpListener::bind_on(&lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// # let s = lp.run_until_complete(aioloop::net::TcpStream::connect_on(&lp, l.local_addr().unwrap())).unwrap().unwrap();
    /// assert!(s.local_addr().unwrap().ip().is_loopback());
    /// # drop((s, l)); lp.close().unwrap();
    /// ```
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .local_addr()
            .map_err(|e| Error::io("reading a TCP stream's local address", e))
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the option cannot be set.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// # let l = aioloop::net::TcpListener::bind_on(&lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// # let s = lp.run_until_complete(aioloop::net::TcpStream::connect_on(&lp, l.local_addr().unwrap())).unwrap().unwrap();
    /// s.set_nodelay(true).unwrap();
    /// assert!(s.nodelay().unwrap());
    /// # drop((s, l)); lp.close().unwrap();
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), Error> {
        self.io
            .set_nodelay(nodelay)
            .map_err(|e| Error::io("setting TCP_NODELAY", e))
    }

    /// Whether Nagle's algorithm is off.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the option cannot be read.
    ///
    /// # Examples
    ///
    /// See [`set_nodelay`](TcpStream::set_nodelay).
    pub fn nodelay(&self) -> Result<bool, Error> {
        self.io
            .nodelay()
            .map_err(|e| Error::io("reading TCP_NODELAY", e))
    }

    /// Shuts the read side, the write side or both down.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket is not connected.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// # let l = aioloop::net::TcpListener::bind_on(&lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// # let s = lp.run_until_complete(aioloop::net::TcpStream::connect_on(&lp, l.local_addr().unwrap())).unwrap().unwrap();
    /// s.shutdown(std::net::Shutdown::Write).unwrap();
    /// # drop((s, l)); lp.close().unwrap();
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        // The write side goes down after the writes already accepted (a
        // completion backend may still be sending them).
        self.reg
            .shutdown_stream(how, |h| self.io.shutdown(h))
            .map_err(|e| Error::io("shutting a TCP stream down", e))
    }
}

impl_stream_io!(TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local_addr", &self.io.local_addr().ok())
            .field("peer_addr", &self.io.peer_addr().ok())
            .finish()
    }
}
