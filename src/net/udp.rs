use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use crate::backend::sys::net as sys;
use crate::event_loop::source::{Direction, Registration};
use crate::{Error, EventLoop};

/// A placeholder sender for receives that do not report one.
const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// A UDP socket on the loop (IPv4 or IPv6): datagrams to and from any
/// address with [`send_to`](UdpSocket::send_to) /
/// [`recv_from`](UdpSocket::recv_from), or, once
/// [`connect`](UdpSocket::connect)ed, to and from one peer with
/// [`send`](UdpSocket::send) / [`recv`](UdpSocket::recv).
///
/// Several tasks may share the socket (through an `Rc`) and wait on it at
/// once; dropping the socket closes it.
///
/// # Examples
///
/// ```
/// use aioloop::net::UdpSocket;
///
/// aioloop::run(async {
///     let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
///     let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
///     a.send_to(b"ping", b.local_addr()?).await?;
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).await?;
///     assert_eq!(&buf[..n], b"ping");
///     assert_eq!(from, a.local_addr()?);
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct UdpSocket {
    io: sys::UdpSocket,
    reg: Registration,
    /// Bound to an IPv6 address.
    v6: bool,
}

impl UdpSocket {
    /// Binds a UDP socket to `addr` on the running loop (port 0 picks a
    /// free port).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`](crate::ErrorKind::NoRunningLoop) outside
    /// a running loop (see [`bind_on`](UdpSocket::bind_on));
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the address is in use or
    /// cannot be bound.
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let s = aioloop::net::UdpSocket::bind("[::1]:0".parse().unwrap()).unwrap();
    ///     assert_ne!(s.local_addr().unwrap().port(), 0);
    /// })
    /// .unwrap();
    /// ```
    pub fn bind(addr: SocketAddr) -> Result<UdpSocket, Error> {
        UdpSocket::bind_on(&super::running("UdpSocket::bind")?, addr)
    }

    /// Binds a UDP socket to `addr` on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`bind`](UdpSocket::bind), and
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let s = aioloop::net::UdpSocket::bind_on(&lp, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert!(s.local_addr().unwrap().ip().is_loopback());
    /// # drop(s); lp.close().unwrap();
    /// ```
    pub fn bind_on(lp: &EventLoop, addr: SocketAddr) -> Result<UdpSocket, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let mut io = sys::UdpSocket::bind(addr)
            .map_err(|e| Error::io(format_args!("binding a UDP socket to {addr}"), e))?;
        let reg = Registration::new(lp, &mut io)?;
        Ok(UdpSocket {
            io,
            reg,
            v6: addr.is_ipv6(),
        })
    }

    /// The address the socket is bound to.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the OS cannot tell.
    ///
    /// # Examples
    ///
    /// See [`bind_on`](UdpSocket::bind_on).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .local_addr()
            .map_err(|e| Error::io("reading a UDP socket's local address", e))
    }

    /// The address of the peer set with [`connect`](UdpSocket::connect).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket is not
    /// connected.
    ///
    /// # Examples
    ///
    /// See [`connect`](UdpSocket::connect).
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.io
            .peer_addr()
            .map_err(|e| Error::io("reading a UDP socket's peer address", e))
    }

    /// Sets the socket's default peer: [`send`](UdpSocket::send) goes to
    /// `addr`, [`recv`](UdpSocket::recv) only takes datagrams from `addr`,
    /// and errors the peer reports (such as "connection refused" when
    /// nothing listens there) are returned by the next operation. Nothing is
    /// sent: this does not wait.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the address cannot be used
    /// (for example an IPv6 address on an IPv4 socket).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::net::UdpSocket;
    ///
    /// aioloop::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    ///     let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    ///     a.connect(b.local_addr()?)?;
    ///     b.connect(a.local_addr()?)?;
    ///     assert_eq!(a.peer_addr()?, b.local_addr()?);
    ///     a.send(b"hi").await?;
    ///     let mut buf = [0; 8];
    ///     let n = b.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hi");
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    pub fn connect(&self, addr: SocketAddr) -> Result<(), Error> {
        self.io
            .connect(addr)
            .map_err(|e| Error::io(format_args!("connecting a UDP socket to {addr}"), e))
    }

    /// Sends one datagram holding `buf` to `addr`; returns the number of
    /// bytes sent (all of `buf`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the datagram cannot be
    /// sent (too large, unreachable, wrong address family, or an error
    /// queued by an earlier datagram); [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop
    /// was closed. On io_uring the datagram is copied and sent in the
    /// background: an error the kernel reports while sending it is returned
    /// by the next send instead (which then sends nothing), its message
    /// naming the earlier datagram's destination.
    ///
    /// # Examples
    ///
    /// See [`UdpSocket`].
    pub async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> Result<usize, Error> {
        poll_fn(|cx| self.poll_send_to(cx, buf, addr)).await
    }

    /// Polls sending one datagram to `addr` (the building block of
    /// [`send_to`](UdpSocket::send_to)).
    ///
    /// # Errors
    ///
    /// As [`send_to`](UdpSocket::send_to).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let s = aioloop::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     let to = s.local_addr().unwrap();
    ///     let n = poll_fn(|cx| s.poll_send_to(cx, b"self", to)).await.unwrap();
    ///     assert_eq!(n, 4);
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        addr: SocketAddr,
    ) -> Poll<Result<usize, Error>> {
        self.reg
            .poll_io(cx, Direction::Write, || {
                self.reg
                    .send_to_with(buf, Some(addr), self.v6, |b| self.io.send_to(b, addr))
            })
            .map_err(|e| Error::io(format_args!("sending a UDP datagram to {addr}"), e))
    }

    /// Waits for one datagram, copies it into `buf` and returns its length
    /// and sender. A datagram longer than `buf` is truncated (the rest is
    /// lost, as with any UDP socket).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS reports an error
    /// (on a connected socket, for example "connection refused" after a
    /// datagram reached a closed port); [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop
    /// was closed.
    ///
    /// # Examples
    ///
    /// See [`UdpSocket`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Polls for one datagram (the building block of
    /// [`recv_from`](UdpSocket::recv_from)).
    ///
    /// # Errors
    ///
    /// As [`recv_from`](UdpSocket::recv_from).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let s = aioloop::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     s.send_to(b"me", s.local_addr().unwrap()).await.unwrap();
    ///     let mut buf = [0; 4];
    ///     let (n, from) = poll_fn(|cx| s.poll_recv_from(cx, &mut buf)).await.unwrap();
    ///     assert_eq!((&buf[..n], from), (&b"me"[..], s.local_addr().unwrap()));
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, SocketAddr), Error>> {
        let reg = &self.reg;
        reg.poll_io(cx, Direction::Read, || {
            reg.recv_from_with(buf, |b| self.io.recv_from(b))
        })
        .map_err(|e| Error::io(self.describe("receiving a UDP datagram"), e))
    }

    /// Sends one datagram holding `buf` to the connected peer; returns the
    /// number of bytes sent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the socket is not
    /// connected, the datagram cannot be sent, or the peer reported an
    /// error for an earlier datagram; [`ErrorKind::Closed`](crate::ErrorKind::Closed) when the loop
    /// was closed.
    ///
    /// # Examples
    ///
    /// See [`connect`](UdpSocket::connect).
    pub async fn send(&self, buf: &[u8]) -> Result<usize, Error> {
        poll_fn(|cx| self.poll_send(cx, buf)).await
    }

    /// Polls sending one datagram to the connected peer (the building block
    /// of [`send`](UdpSocket::send)).
    ///
    /// # Errors
    ///
    /// As [`send`](UdpSocket::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let s = aioloop::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     s.connect(s.local_addr().unwrap()).unwrap();
    ///     assert_eq!(poll_fn(|cx| s.poll_send(cx, b"abc")).await.unwrap(), 3);
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, Error>> {
        self.reg
            .poll_io(cx, Direction::Write, || {
                self.reg
                    .send_to_with(buf, None, self.v6, |b| self.io.send(b))
            })
            .map_err(|e| Error::io(self.describe_peer("sending a UDP datagram"), e))
    }

    /// Waits for one datagram from the connected peer and copies it into
    /// `buf` (truncating a longer one); returns its length.
    ///
    /// # Errors
    ///
    /// As [`recv_from`](UdpSocket::recv_from); in particular an
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) "connection refused" after an
    /// earlier datagram reached a port where nothing listens.
    ///
    /// # Examples
    ///
    /// See [`connect`](UdpSocket::connect).
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, Error> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    /// Polls for one datagram from the connected peer (the building block of
    /// [`recv`](UdpSocket::recv)).
    ///
    /// # Errors
    ///
    /// As [`recv`](UdpSocket::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// aioloop::run(async {
    ///     let s = aioloop::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     s.connect(s.local_addr().unwrap()).unwrap();
    ///     s.send(b"loop").await.unwrap();
    ///     let mut buf = [0; 8];
    ///     let n = poll_fn(|cx| s.poll_recv(cx, &mut buf)).await.unwrap();
    ///     assert_eq!(&buf[..n], b"loop");
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, Error>> {
        // A connected socket only receives from its peer: the sender's
        // address is not needed.
        let reg = &self.reg;
        reg.poll_io(cx, Direction::Read, || {
            reg.recv_from_with(buf, |b| self.io.recv(b).map(|n| (n, UNSPECIFIED)))
                .map(|(n, _)| n)
        })
        .map_err(|e| Error::io(self.describe_peer("receiving a UDP datagram"), e))
    }

    /// Enables (`true`) or disables sending to broadcast addresses
    /// (`SO_BROADCAST`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the option cannot be set.
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let s = aioloop::net::UdpSocket::bind("0.0.0.0:0".parse().unwrap()).unwrap();
    ///     s.set_broadcast(true).unwrap();
    ///     assert!(s.broadcast().unwrap());
    /// })
    /// .unwrap();
    /// ```
    pub fn set_broadcast(&self, on: bool) -> Result<(), Error> {
        self.io
            .set_broadcast(on)
            .map_err(|e| Error::io("setting SO_BROADCAST on a UDP socket", e))
    }

    /// Whether sending to broadcast addresses is enabled.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the option cannot be read.
    ///
    /// # Examples
    ///
    /// See [`set_broadcast`](UdpSocket::set_broadcast).
    pub fn broadcast(&self) -> Result<bool, Error> {
        self.io
            .broadcast()
            .map_err(|e| Error::io("reading SO_BROADCAST of a UDP socket", e))
    }

    /// "`what` on <local address>", for error messages.
    fn describe(&self, what: &str) -> String {
        match self.io.local_addr() {
            Ok(a) => format!("{what} on {a}"),
            Err(_) => what.to_owned(),
        }
    }

    /// "`what` from/to the connected peer <address>", for error messages.
    fn describe_peer(&self, what: &str) -> String {
        match self.io.peer_addr() {
            Ok(a) => format!("{what} (peer {a})"),
            Err(_) => format!("{what} on an unconnected socket"),
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.reg.deregister(&mut self.io);
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.io.local_addr().ok())
            .field("peer_addr", &self.io.peer_addr().ok())
            .finish()
    }
}
