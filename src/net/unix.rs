use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::Shutdown;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::backend::sys::net as sys;
use crate::event_loop::source::{Direction, Registration};
use crate::{Error, EventLoop};

/// How long [`UnixStream::connect`] keeps retrying while the listener's
/// backlog is full (the OS answers `EAGAIN` instead of queueing us).
const BACKLOG_RETRY_LIMIT: Duration = Duration::from_secs(10);

/// A Unix domain socket listening for stream connections.
///
/// The socket file stays on disk after the listener is dropped (as with
/// `std`); remove it yourself before binding the same path again.
///
/// # Examples
///
/// ```
/// use aioloop::net::{UnixListener, UnixStream};
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
///
/// static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// let path = std::env::temp_dir().join(format!(
///     "aioloop-doc-{}-{}.sock",
///     std::process::id(),
///     N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
/// ));
/// let p = path.clone();
/// aioloop::run(async move {
///     let listener = UnixListener::bind(&p)?;
///     let lp = aioloop::get_running_loop()?;
///     let server = lp.create_task(async move {
///         let (mut conn, _peer) = listener.accept().await?;
///         let mut buf = [0; 5];
///         conn.read_exact(&mut buf).await?;
///         conn.write_all(&buf).await?;
///         Ok::<_, std::io::Error>(())
///     });
///     let mut client = UnixStream::connect(&p).await?;
///     client.write_all(b"hello").await?;
///     let mut echo = [0; 5];
///     client.read_exact(&mut echo).await?;
///     assert_eq!(&echo, b"hello");
///     server.await?.unwrap();
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    io: sys::UnixListener,
    reg: Registration,
}

impl UnixListener {
    /// Binds a listener to the filesystem path `path` on the running loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop (see [`bind_on`](UnixListener::bind_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the path exists ("address
    /// in use"), its directory is missing or not writable, or it is too long.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-bind-{}.sock", std::process::id()));
    /// let p = path.clone();
    /// aioloop::run(async move {
    ///     let l = aioloop::net::UnixListener::bind(&p).unwrap();
    ///     assert_eq!(l.local_addr().unwrap().as_pathname(), Some(p.as_path()));
    /// })
    /// .unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> Result<UnixListener, Error> {
        UnixListener::bind_on(&super::running("UnixListener::bind")?, path)
    }

    /// Binds a listener to `path` on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`bind`](UnixListener::bind), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop
    /// (nothing is created on disk then).
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-bind-on-{}.sock", std::process::id()));
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l = aioloop::net::UnixListener::bind_on(&lp, &path).unwrap();
    /// # drop(l); lp.close().unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind_on(lp: &EventLoop, path: impl AsRef<Path>) -> Result<UnixListener, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let path = path.as_ref();
        let mut io = sys::UnixListener::bind(path).map_err(|e| {
            Error::io(
                format_args!("binding a Unix listener to {}", path.display()),
                e,
            )
        })?;
        let reg = Registration::new(lp, &mut io)?;
        Ok(UnixListener { io, reg })
    }

    /// Waits for the next connection; returns the stream and the peer's
    /// address (usually unnamed).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) for a failed accept (for
    /// example too many open files); the listener stays usable.
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop was
    /// closed.
    ///
    /// # Examples
    ///
    /// See [`UnixListener`].
    pub fn accept(&self) -> impl Future<Output = Result<(UnixStream, SocketAddr), Error>> + '_ {
        poll_fn(move |cx| self.poll_accept(cx))
    }

    /// Polls for the next connection (the building block of
    /// [`accept`](UnixListener::accept)).
    ///
    /// # Errors
    ///
    /// As [`accept`](UnixListener::accept).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-poll-accept-{}.sock", std::process::id()));
    /// let p = path.clone();
    /// aioloop::run(async move {
    ///     let l = aioloop::net::UnixListener::bind(&p).unwrap();
    ///     let _c = std::os::unix::net::UnixStream::connect(&p).unwrap();
    ///     let (_s, peer) = poll_fn(|cx| l.poll_accept(cx)).await.unwrap();
    ///     assert!(peer.is_unnamed());
    /// })
    /// .unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(UnixStream, SocketAddr), Error>> {
        let lp = self.reg.event_loop();
        match self.reg.poll_io(cx, Direction::Read, || self.io.accept()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::io(
                self.describe("accepting a Unix stream connection"),
                e,
            ))),
            Poll::Ready(Ok((mut io, peer))) => {
                Poll::Ready(Registration::new(lp, &mut io).map(|reg| {
                    (
                        UnixStream {
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
    /// See [`bind`](UnixListener::bind).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .local_addr()
            .map_err(|e| Error::io("reading a Unix listener's address", e))
    }

    fn describe(&self, what: &str) -> String {
        match self
            .io
            .local_addr()
            .ok()
            .as_ref()
            .and_then(|a| a.as_pathname())
        {
            Some(p) => format!("{what} on {}", p.display()),
            None => what.to_owned(),
        }
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        self.reg.deregister(&mut self.io);
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local_addr", &self.io.local_addr().ok())
            .finish()
    }
}

/// A Unix domain stream connection: `futures::io::AsyncRead` +
/// `AsyncWrite`, like [`TcpStream`](super::TcpStream).
///
/// Closing it (`close().await`, from `AsyncWriteExt`) shuts the write side
/// down after everything written so far; dropping it closes the socket.
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
///
/// aioloop::run(async {
///     let (mut a, mut b) = aioloop::net::UnixStream::pair()?;
///     a.write_all(b"over").await?;
///     a.close().await?;
///     let mut got = Vec::new();
///     b.read_to_end(&mut got).await?;
///     assert_eq!(got, b"over");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct UnixStream {
    io: sys::UnixStream,
    reg: Registration,
    ahead: super::ReadAhead,
}

impl UnixStream {
    /// Connects to the Unix listener at `path` from the running loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop; [`ErrorKind::Io`](crate::ErrorKind::Io) when nothing
    /// listens at `path` (missing file, or "connection refused"), or the
    /// listener's backlog stays full for 10 seconds (the message names the
    /// path).
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let err = aioloop::net::UnixStream::connect("/nonexistent/aioloop.sock").await.unwrap_err();
    ///     assert_eq!(err.kind(), aioloop::ErrorKind::Io);
    /// })
    /// .unwrap();
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> Result<UnixStream, Error> {
        let lp = super::running("UnixStream::connect")?;
        UnixStream::connect_on(&lp, path).await
    }

    /// Connects to the Unix listener at `path` from the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`connect`](UnixStream::connect), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-connect-on-{}.sock", std::process::id()));
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l = aioloop::net::UnixListener::bind_on(&lp, &path).unwrap();
    /// let s = lp.run_until_complete(aioloop::net::UnixStream::connect_on(&lp, &path)).unwrap().unwrap();
    /// assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// # drop((s, l)); lp.close().unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub async fn connect_on(lp: &EventLoop, path: impl AsRef<Path>) -> Result<UnixStream, Error> {
        let path = path.as_ref();
        let failed = |e| Error::io(format_args!("connecting to {}", path.display()), e);
        if lp.is_closed() {
            return Err(Error::closed());
        }
        // A full backlog makes a non-blocking AF_UNIX connect fail with
        // EAGAIN (nothing is queued); retry with a growing pause.
        let started = lp.time();
        let mut pause = Duration::from_millis(1);
        let mut io = loop {
            match sys::UnixStream::connect(path) {
                Ok(io) => break io,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        && lp.time() - started < BACKLOG_RETRY_LIMIT =>
                {
                    lp.sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(failed(e)),
            }
        };
        let reg = Registration::new(lp, &mut io)?;
        let stream = UnixStream {
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

    /// Two connected streams on the running loop (`socketpair`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop (see [`pair_on`](UnixStream::pair_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS cannot make the
    /// sockets (for example too many open files).
    ///
    /// # Examples
    ///
    /// See [`UnixStream`].
    pub fn pair() -> Result<(UnixStream, UnixStream), Error> {
        UnixStream::pair_on(&super::running("UnixStream::pair")?)
    }

    /// Two connected streams on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`pair`](UnixStream::pair), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (a, b) = aioloop::net::UnixStream::pair_on(&lp).unwrap();
    /// assert!(a.peer_addr().unwrap().is_unnamed());
    /// # drop((a, b)); lp.close().unwrap();
    /// ```
    pub fn pair_on(lp: &EventLoop) -> Result<(UnixStream, UnixStream), Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let (mut a, mut b) =
            sys::UnixStream::pair().map_err(|e| Error::io("creating a Unix stream pair", e))?;
        let ra = Registration::new(lp, &mut a)?;
        let first = UnixStream {
            io: a,
            reg: ra,
            ahead: Default::default(),
        };
        let rb = Registration::new(lp, &mut b)?;
        Ok((
            first,
            UnixStream {
                io: b,
                reg: rb,
                ahead: Default::default(),
            },
        ))
    }

    /// The address of the peer (unnamed for a pair or an accepted client).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket is not
    /// connected.
    ///
    /// # Examples
    ///
    /// See [`connect_on`](UnixStream::connect_on).
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .peer_addr()
            .map_err(|e| Error::io("reading a Unix stream's peer address", e))
    }

    /// The local address of the connection (usually unnamed for a client).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the OS cannot tell.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (a, _b) = aioloop::net::UnixStream::pair_on(&lp).unwrap();
    /// assert!(a.local_addr().unwrap().is_unnamed());
    /// # drop((a, _b)); lp.close().unwrap();
    /// ```
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .local_addr()
            .map_err(|e| Error::io("reading a Unix stream's local address", e))
    }

    /// Shuts the read side, the write side or both down.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket is not
    /// connected.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (a, _b) = aioloop::net::UnixStream::pair_on(&lp).unwrap();
    /// a.shutdown(std::net::Shutdown::Write).unwrap();
    /// # drop((a, _b)); lp.close().unwrap();
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        // The write side goes down after the writes already accepted (a
        // completion backend may still be sending them).
        self.reg
            .shutdown_stream(how, |h| self.io.shutdown(h))
            .map_err(|e| Error::io("shutting a Unix stream down", e))
    }
}

impl_stream_io!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("local_addr", &self.io.local_addr().ok())
            .field("peer_addr", &self.io.peer_addr().ok())
            .finish()
    }
}

/// A Unix domain datagram socket: whole messages to and from filesystem
/// paths, or to and from one peer once connected (or made with
/// [`pair`](UnixDatagram::pair)). Unlike UDP, delivery on one machine is
/// reliable and ordered, and a sender waits while the receiver's queue is
/// full.
///
/// # Examples
///
/// ```
/// aioloop::run(async {
///     let (a, b) = aioloop::net::UnixDatagram::pair()?;
///     a.send(b"one").await?;
///     let mut buf = [0; 8];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"one");
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct UnixDatagram {
    io: sys::UnixDatagram,
    reg: Registration,
}

impl UnixDatagram {
    /// A datagram socket bound to the filesystem path `path`, on the running
    /// loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop (see [`bind_on`](UnixDatagram::bind_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the path exists, its
    /// directory is missing or not writable, or it is too long.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-dgram-{}.sock", std::process::id()));
    /// let p = path.clone();
    /// aioloop::run(async move {
    ///     let server = aioloop::net::UnixDatagram::bind(&p)?;
    ///     let client = aioloop::net::UnixDatagram::unbound()?;
    ///     client.send_to(b"note", &p).await?;
    ///     let mut buf = [0; 8];
    ///     let (n, _from) = server.recv_from(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"note");
    ///     assert_eq!(server.local_addr()?.as_pathname(), Some(p.as_path()));
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> Result<UnixDatagram, Error> {
        UnixDatagram::bind_on(&super::running("UnixDatagram::bind")?, path)
    }

    /// A datagram socket bound to `path`, on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`bind`](UnixDatagram::bind), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-dgram-on-{}.sock", std::process::id()));
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let s = aioloop::net::UnixDatagram::bind_on(&lp, &path).unwrap();
    /// # drop(s); lp.close().unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind_on(lp: &EventLoop, path: impl AsRef<Path>) -> Result<UnixDatagram, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let path = path.as_ref();
        let io = sys::UnixDatagram::bind(path).map_err(|e| {
            Error::io(
                format_args!("binding a Unix datagram socket to {}", path.display()),
                e,
            )
        })?;
        UnixDatagram::register(lp, io)
    }

    /// A datagram socket bound to no address, on the running loop: it can
    /// send to paths (the receiver sees an unnamed sender and cannot reply).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop (see [`unbound_on`](UnixDatagram::unbound_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS cannot make the
    /// socket.
    ///
    /// # Examples
    ///
    /// See [`bind`](UnixDatagram::bind).
    pub fn unbound() -> Result<UnixDatagram, Error> {
        UnixDatagram::unbound_on(&super::running("UnixDatagram::unbound")?)
    }

    /// A datagram socket bound to no address, on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`unbound`](UnixDatagram::unbound), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let s = aioloop::net::UnixDatagram::unbound_on(&lp).unwrap();
    /// assert!(s.local_addr().unwrap().is_unnamed());
    /// # drop(s); lp.close().unwrap();
    /// ```
    pub fn unbound_on(lp: &EventLoop) -> Result<UnixDatagram, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let io = sys::UnixDatagram::unbound()
            .map_err(|e| Error::io("creating a Unix datagram socket", e))?;
        UnixDatagram::register(lp, io)
    }

    /// Two connected datagram sockets on the running loop (`socketpair`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop (see [`pair_on`](UnixDatagram::pair_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS cannot make the
    /// sockets.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub fn pair() -> Result<(UnixDatagram, UnixDatagram), Error> {
        UnixDatagram::pair_on(&super::running("UnixDatagram::pair")?)
    }

    /// Two connected datagram sockets on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`pair`](UnixDatagram::pair), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (a, b) = aioloop::net::UnixDatagram::pair_on(&lp).unwrap();
    /// # drop((a, b)); lp.close().unwrap();
    /// ```
    pub fn pair_on(lp: &EventLoop) -> Result<(UnixDatagram, UnixDatagram), Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let (a, b) =
            sys::UnixDatagram::pair().map_err(|e| Error::io("creating a Unix datagram pair", e))?;
        let first = UnixDatagram::register(lp, a)?;
        Ok((first, UnixDatagram::register(lp, b)?))
    }

    fn register(lp: &EventLoop, mut io: sys::UnixDatagram) -> Result<UnixDatagram, Error> {
        let reg = Registration::new(lp, &mut io)?;
        Ok(UnixDatagram { io, reg })
    }

    /// Sets the default peer to the socket at `path`:
    /// [`send`](UnixDatagram::send) goes there and
    /// [`recv`](UnixDatagram::recv) only takes its datagrams. Does not wait.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when nothing is bound at
    /// `path` (missing file, or "connection refused").
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-dgram-connect-{}.sock", std::process::id()));
    /// let p = path.clone();
    /// aioloop::run(async move {
    ///     let server = aioloop::net::UnixDatagram::bind(&p)?;
    ///     let client = aioloop::net::UnixDatagram::unbound()?;
    ///     client.connect(&p)?;
    ///     assert_eq!(client.peer_addr()?.as_pathname(), Some(p.as_path()));
    ///     client.send(b"hey").await?;
    ///     let mut buf = [0; 8];
    ///     let n = server.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hey");
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn connect(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        self.io.connect(path).map_err(|e| {
            Error::io(
                format_args!("connecting a Unix datagram socket to {}", path.display()),
                e,
            )
        })
    }

    /// The address the socket is bound to (unnamed if none).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the OS cannot tell.
    ///
    /// # Examples
    ///
    /// See [`unbound_on`](UnixDatagram::unbound_on).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .local_addr()
            .map_err(|e| Error::io("reading a Unix datagram socket's local address", e))
    }

    /// The address of the connected peer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket is not
    /// connected.
    ///
    /// # Examples
    ///
    /// See [`connect`](UnixDatagram::connect).
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .peer_addr()
            .map_err(|e| Error::io("reading a Unix datagram socket's peer address", e))
    }

    /// Sends one datagram holding `buf` to the socket at `path`, waiting
    /// while the receiver's queue is full; returns the bytes sent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when nothing is bound at
    /// `path` or the datagram is too large;
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop was
    /// closed.
    ///
    /// # Examples
    ///
    /// See [`bind`](UnixDatagram::bind).
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> Result<usize, Error> {
        let path = path.as_ref();
        poll_fn(|cx| self.poll_send_to(cx, buf, path)).await
    }

    /// Polls sending one datagram to `path` (the building block of
    /// [`send_to`](UnixDatagram::send_to)).
    ///
    /// # Errors
    ///
    /// As [`send_to`](UnixDatagram::send_to).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// let path = std::env::temp_dir().join(format!("aioloop-doc-dgram-poll-{}.sock", std::process::id()));
    /// let p = path.clone();
    /// aioloop::run(async move {
    ///     let s = aioloop::net::UnixDatagram::bind(&p).unwrap();
    ///     let n = poll_fn(|cx| s.poll_send_to(cx, b"self", &p)).await.unwrap();
    ///     assert_eq!(n, 4);
    /// })
    /// .unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        path: &Path,
    ) -> Poll<Result<usize, Error>> {
        self.reg
            .poll_io(cx, Direction::Write, || self.io.send_to(buf, path))
            .map_err(|e| {
                Error::io(
                    format_args!("sending a Unix datagram to {}", path.display()),
                    e,
                )
            })
    }

    /// Waits for one datagram, copies it into `buf` (truncating a longer
    /// one) and returns its length and sender.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS reports an error;
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop was
    /// closed.
    ///
    /// # Examples
    ///
    /// See [`bind`](UnixDatagram::bind).
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Polls for one datagram (the building block of
    /// [`recv_from`](UnixDatagram::recv_from)).
    ///
    /// # Errors
    ///
    /// As [`recv_from`](UnixDatagram::recv_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let (a, b) = aioloop::net::UnixDatagram::pair().unwrap();
    ///     a.send(b"x").await.unwrap();
    ///     let mut buf = [0; 4];
    ///     let (n, from) = poll_fn(|cx| b.poll_recv_from(cx, &mut buf)).await.unwrap();
    ///     assert_eq!(n, 1);
    ///     assert!(from.is_unnamed());
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, SocketAddr), Error>> {
        self.reg
            .poll_io(cx, Direction::Read, || self.io.recv_from(buf))
            .map_err(|e| Error::io("receiving a Unix datagram", e))
    }

    /// Sends one datagram to the connected peer, waiting while its queue is
    /// full; returns the bytes sent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the socket is not
    /// connected, the peer is gone, or the datagram is too large;
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop was
    /// closed.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub async fn send(&self, buf: &[u8]) -> Result<usize, Error> {
        poll_fn(|cx| self.poll_send(cx, buf)).await
    }

    /// Polls sending one datagram to the connected peer (the building block
    /// of [`send`](UnixDatagram::send)).
    ///
    /// # Errors
    ///
    /// As [`send`](UnixDatagram::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let (a, _b) = aioloop::net::UnixDatagram::pair().unwrap();
    ///     assert_eq!(poll_fn(|cx| a.poll_send(cx, b"abc")).await.unwrap(), 3);
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, Error>> {
        self.reg
            .poll_io(cx, Direction::Write, || self.io.send(buf))
            .map_err(|e| Error::io("sending a Unix datagram to the connected peer", e))
    }

    /// Waits for one datagram from the connected peer and copies it into
    /// `buf` (truncating a longer one); returns its length.
    ///
    /// # Errors
    ///
    /// As [`recv_from`](UnixDatagram::recv_from).
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, Error> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    /// Polls for one datagram from the connected peer (the building block
    /// of [`recv`](UnixDatagram::recv)).
    ///
    /// # Errors
    ///
    /// As [`recv`](UnixDatagram::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let (a, b) = aioloop::net::UnixDatagram::pair().unwrap();
    ///     a.send(b"yo").await.unwrap();
    ///     let mut buf = [0; 4];
    ///     assert_eq!(poll_fn(|cx| b.poll_recv(cx, &mut buf)).await.unwrap(), 2);
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, Error>> {
        self.reg
            .poll_io(cx, Direction::Read, || self.io.recv(buf))
            .map_err(|e| Error::io("receiving a Unix datagram from the connected peer", e))
    }

    /// Shuts the read side, the write side or both down.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the OS refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (a, _b) = aioloop::net::UnixDatagram::pair_on(&lp).unwrap();
    /// a.shutdown(std::net::Shutdown::Both).unwrap();
    /// # drop((a, _b)); lp.close().unwrap();
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        self.io
            .shutdown(how)
            .map_err(|e| Error::io("shutting a Unix datagram socket down", e))
    }
}

impl Drop for UnixDatagram {
    fn drop(&mut self) {
        self.reg.deregister(&mut self.io);
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local_addr", &self.io.local_addr().ok())
            .field("peer_addr", &self.io.peer_addr().ok())
            .finish()
    }
}
