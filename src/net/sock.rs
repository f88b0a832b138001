//! asyncio's low-level socket API on the loop (`loop.sock_recv`,
//! `loop.sock_sendall`, …) for the caller's own non-blocking std sockets.
//!
//! Unix only for now. Each operation first tries its system call; only when
//! that would block does it register the socket's fd with the loop, and it
//! leaves the loop again when it finishes or its future is dropped (as
//! asyncio's `add_reader` / `remove_reader` dance). A socket may have one
//! receiving and one sending operation in flight at a time (for example a
//! `sock_recv` in one task and a `sock_sendall` in another); a second one in
//! the same direction is refused with [`ErrorKind::InvalidInput`] instead of
//! hanging, and a fd that has an [`add_reader`](EventLoop::add_reader) /
//! [`add_writer`](EventLoop::add_writer) callback cannot be used here until
//! the callback is removed ([`ErrorKind::Io`], `EEXIST`).
//!
//! ## Non-blocking mode
//!
//! asyncio requires the caller to make the socket non-blocking. `std` cannot
//! tell whether a socket is blocking, so every `sock_*` method **sets
//! non-blocking mode itself** (one `ioctl` per call) and leaves it set. A
//! socket in blocking mode therefore works, and never blocks the loop; plain
//! blocking reads on it afterwards report `WouldBlock` until you call
//! `set_nonblocking(false)`.
//!
//! All system calls go through the backend (`backend::sys::net::borrowed`).

#![cfg(unix)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};

use crate::backend::sys::net::borrowed as sys;
use crate::event_loop::source::{Direction, Registration};
use crate::{Error, ErrorKind, EventLoop};

/// The fds this thread's loops are waiting on for a `sock_*` operation.
struct Shared {
    lp: EventLoop,
    fd: RawFd,
    reg: Registration,
    /// A receiving / sending operation is waiting.
    busy: [Cell<bool>; 2],
}

thread_local! {
    static ACTIVE: RefCell<HashMap<RawFd, Weak<Shared>>> = RefCell::new(HashMap::new());
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.reg.deregister(&mut sys::FdSource(self.fd));
        // The entry is this one's (now dead) weak pointer: nothing can have
        // replaced it between the last strong drop and here.
        let _ = ACTIVE.try_with(|m| {
            let mut m = m.borrow_mut();
            if m.get(&self.fd).is_some_and(|w| w.strong_count() == 0) {
                m.remove(&self.fd);
            }
        });
    }
}

/// One waiting operation: keeps the fd registered and its direction busy.
struct Op {
    shared: Rc<Shared>,
    dir: Direction,
}

impl Op {
    fn acquire(lp: &EventLoop, fd: RawFd, dir: Direction, what: &str) -> Result<Op, Error> {
        let existing = ACTIVE.with(|m| m.borrow().get(&fd).and_then(Weak::upgrade));
        let shared = match existing {
            Some(s) if s.lp != *lp => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{what}: fd {fd} is waiting in another event loop's sock_* call"),
                ))
            }
            Some(s) => s,
            None => {
                let reg = Registration::new(lp, &mut sys::FdSource(fd))?;
                let s = Rc::new(Shared {
                    lp: lp.clone(),
                    fd,
                    reg,
                    busy: [Cell::new(false), Cell::new(false)],
                });
                ACTIVE.with(|m| m.borrow_mut().insert(fd, Rc::downgrade(&s)));
                s
            }
        };
        let busy = &shared.busy[dir as usize];
        if busy.replace(true) {
            let side = match dir {
                Direction::Read => "receiving",
                Direction::Write => "sending",
            };
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{what}: another {side} sock_* operation is already waiting on fd {fd}; \
                     await it first (one receiver and one sender at a time)"
                ),
            ));
        }
        Ok(Op { shared, dir })
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.shared.busy[self.dir as usize].set(false);
    }
}

/// An `io::Error` from the loop's readiness table may carry a loop error
/// (closed loop): hand that back as it is, else wrap the OS error.
fn failed(what: impl fmt::Display, e: io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return inner.clone();
    }
    Error::io(what, e)
}

impl EventLoop {
    /// Runs `op` (a non-blocking call on `fd`) until it does not report
    /// `WouldBlock`, waiting for `dir` readiness in between.
    async fn sock_io<R>(
        &self,
        fd: RawFd,
        dir: Direction,
        what: &str,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Result<R, Error> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        // Fast path: most calls succeed at once and never touch the poller.
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r.map_err(|e| failed(format_args!("{what} (fd {fd})"), e)),
            }
        }
        let guard = Op::acquire(self, fd, dir, what)?;
        let res = poll_fn(|cx| guard.shared.reg.poll_io(cx, dir, &mut op)).await;
        drop(guard);
        res.map_err(|e| failed(format_args!("{what} (fd {fd})"), e))
    }

    /// Receives up to `n` bytes from a connected TCP socket
    /// (`loop.sock_recv`). An empty vector means the peer closed its side.
    ///
    /// Unix only. asyncio requires a non-blocking socket; `std` cannot tell
    /// whether one is, so every `sock_*` method switches the socket to
    /// non-blocking mode itself (one `ioctl`) and leaves it so. A socket in
    /// blocking mode thus works and never blocks the loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] when the
    /// receive fails (for example the connection was reset);
    /// [`ErrorKind::InvalidInput`] if another receive is already waiting on
    /// this socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::net::{TcpListener, TcpStream};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let (server, _) = listener.accept().unwrap();
    /// client.write_all(b"ping").unwrap();
    /// let data = lp.run_until_complete(lp.sock_recv(&server, 16)).unwrap().unwrap();
    /// assert_eq!(data, b"ping");
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_recv(&self, sock: &TcpStream, n: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; n];
        let got = self.sock_recv_into(sock, &mut buf).await?;
        buf.truncate(got);
        Ok(buf)
    }

    /// Receives into `buf` from a connected TCP socket and returns how many
    /// bytes were read (`loop.sock_recv_into`); `0` means end of stream (or
    /// an empty `buf`).
    ///
    /// Unix only; the socket is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`sock_recv`](EventLoop::sock_recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::net::{TcpListener, TcpStream};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let (server, _) = listener.accept().unwrap();
    /// client.write_all(b"abc").unwrap();
    /// let mut buf = [0u8; 8];
    /// let n = lp.run_until_complete(lp.sock_recv_into(&server, &mut buf)).unwrap().unwrap();
    /// assert_eq!(&buf[..n], b"abc");
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_recv_into(&self, sock: &TcpStream, buf: &mut [u8]) -> Result<usize, Error> {
        sys::tcp_nonblocking(sock)
            .map_err(|e| Error::io("sock_recv_into: making the socket non-blocking", e))?;
        let fd = sock.as_raw_fd();
        self.sock_io(fd, Direction::Read, "sock_recv", || sys::recv(sock, buf))
            .await
    }

    /// Sends all of `data` on a connected TCP socket, waiting for the socket
    /// to become writable as often as needed (`loop.sock_sendall`).
    ///
    /// Unix only; the socket is switched to non-blocking mode. If the future
    /// is dropped before it finishes, an unknown prefix of `data` was sent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] when a send
    /// fails (for example a broken pipe after the peer closed);
    /// [`ErrorKind::InvalidInput`] if another send is already waiting on
    /// this socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{TcpListener, TcpStream};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let (mut server, _) = listener.accept().unwrap();
    /// lp.run_until_complete(lp.sock_sendall(&client, b"hello")).unwrap().unwrap();
    /// let mut buf = [0u8; 5];
    /// server.read_exact(&mut buf).unwrap();
    /// assert_eq!(&buf, b"hello");
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_sendall(&self, sock: &TcpStream, data: &[u8]) -> Result<(), Error> {
        sys::tcp_nonblocking(sock)
            .map_err(|e| Error::io("sock_sendall: making the socket non-blocking", e))?;
        let fd = sock.as_raw_fd();
        let mut sent = 0;
        // Each attempt sends as much as the kernel takes; `WouldBlock` after
        // partial progress keeps `sent` and waits for writability.
        self.sock_io(fd, Direction::Write, "sock_sendall", || {
            while sent < data.len() {
                match sys::send(sock, &data[sent..])? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => sent += n,
                }
            }
            Ok(())
        })
        .await
    }

    /// Receives one datagram of at most `n` bytes (the rest is discarded)
    /// and returns it with its sender (`loop.sock_recvfrom`).
    ///
    /// Unix only; the socket is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] when the
    /// receive fails; [`ErrorKind::InvalidInput`] if another receive is
    /// already waiting on this socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// b.send_to(b"hi", a.local_addr().unwrap()).unwrap();
    /// let (data, from) = lp.run_until_complete(lp.sock_recvfrom(&a, 64)).unwrap().unwrap();
    /// assert_eq!((data.as_slice(), from), (&b"hi"[..], b.local_addr().unwrap()));
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_recvfrom(
        &self,
        sock: &UdpSocket,
        n: usize,
    ) -> Result<(Vec<u8>, SocketAddr), Error> {
        let mut buf = vec![0; n];
        let (got, from) = self.sock_recvfrom_into(sock, &mut buf).await?;
        buf.truncate(got);
        Ok((buf, from))
    }

    /// Receives one datagram into `buf` (the part that does not fit is
    /// discarded) and returns its length and sender
    /// (`loop.sock_recvfrom_into`).
    ///
    /// Unix only; the socket is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`sock_recvfrom`](EventLoop::sock_recvfrom).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.send_to(b"self", a.local_addr().unwrap()).unwrap();
    /// let mut buf = [0u8; 16];
    /// let (n, _from) = lp.run_until_complete(lp.sock_recvfrom_into(&a, &mut buf)).unwrap().unwrap();
    /// assert_eq!(&buf[..n], b"self");
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_recvfrom_into(
        &self,
        sock: &UdpSocket,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), Error> {
        sys::udp_nonblocking(sock)
            .map_err(|e| Error::io("sock_recvfrom: making the socket non-blocking", e))?;
        let fd = sock.as_raw_fd();
        self.sock_io(fd, Direction::Read, "sock_recvfrom", || {
            sys::recv_from(sock, buf)
        })
        .await
    }

    /// Sends `data` as one datagram to `addr` and returns the number of bytes
    /// sent (`loop.sock_sendto`).
    ///
    /// Unix only; the socket is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] when the
    /// send fails (for example the datagram is too large, or the address
    /// family does not match the socket's); [`ErrorKind::InvalidInput`] if
    /// another send is already waiting on this socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let n = lp
    ///     .run_until_complete(lp.sock_sendto(&a, b"yo", b.local_addr().unwrap()))
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!(n, 2);
    /// let mut buf = [0u8; 4];
    /// assert_eq!(b.recv_from(&mut buf).unwrap().0, 2);
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_sendto(
        &self,
        sock: &UdpSocket,
        data: &[u8],
        addr: SocketAddr,
    ) -> Result<usize, Error> {
        sys::udp_nonblocking(sock)
            .map_err(|e| Error::io("sock_sendto: making the socket non-blocking", e))?;
        let fd = sock.as_raw_fd();
        let what = format!("sock_sendto to {addr}");
        self.sock_io(fd, Direction::Write, &what, || {
            sys::send_to(sock, data, addr)
        })
        .await
    }

    /// Opens a TCP connection to `addr` without blocking the loop and returns
    /// the connected, **non-blocking** std socket (`loop.sock_connect`).
    ///
    /// asyncio's `sock_connect(sock, address)` connects a socket the caller
    /// made; `std` has no unconnected `TcpStream`, so here the loop creates
    /// the socket (matching `addr`'s family) and hands it back. Use the
    /// `sock_*` methods on it, or your own non-blocking code.
    ///
    /// Unix only.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] when the
    /// connection is refused or fails (the message names `addr`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::TcpListener;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let listener = TcpListener::bind("[::1]:0").or_else(|_| TcpListener::bind("127.0.0.1:0")).unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let stream = lp.run_until_complete(lp.sock_connect(addr)).unwrap().unwrap();
    /// assert_eq!(stream.peer_addr().unwrap(), addr);
    ///
    /// // Nothing listens on port 1 here.
    /// let err = lp
    ///     .run_until_complete(lp.sock_connect("127.0.0.1:1".parse().unwrap()))
    ///     .unwrap()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), aioloop::ErrorKind::Io);
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_connect(&self, addr: SocketAddr) -> Result<TcpStream, Error> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let what = format!("sock_connect to {addr}");
        let stream = sys::connect(addr).map_err(|e| Error::io(&what, e))?;
        let fd = stream.as_raw_fd();
        // Writable means the attempt finished: connected or failed.
        self.sock_io(fd, Direction::Write, &what, || sys::connected(&stream))
            .await?;
        Ok(stream)
    }

    /// Waits for a connection on `listener` and returns it, non-blocking,
    /// with the peer's address (`loop.sock_accept`).
    ///
    /// Unix only; the listener is switched to non-blocking mode.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::Io`] when accept
    /// fails (for example too many open files: the listener stays usable);
    /// [`ErrorKind::InvalidInput`] if another accept is already waiting on
    /// this listener.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let (conn, peer) = lp.run_until_complete(lp.sock_accept(&listener)).unwrap().unwrap();
    /// assert_eq!(peer, client.local_addr().unwrap());
    /// assert_eq!(conn.local_addr().unwrap(), listener.local_addr().unwrap());
    /// # lp.close().unwrap();
    /// ```
    pub async fn sock_accept(
        &self,
        listener: &TcpListener,
    ) -> Result<(TcpStream, SocketAddr), Error> {
        sys::listener_nonblocking(listener)
            .map_err(|e| Error::io("sock_accept: making the listener non-blocking", e))?;
        let fd = listener.as_raw_fd();
        self.sock_io(fd, Direction::Read, "sock_accept", || sys::accept(listener))
            .await
    }
}
