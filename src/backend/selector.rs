//! The selector backend: readiness through `mio` (epoll, kqueue, AFD).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Event};

/// Whether a stream transfer shorter than asked for may clear the loop's
/// readiness bit at once (see the contract in `backend/mod.rs`).
///
/// epoll and kqueue report a new edge whenever the socket's state changes, so
/// a drained socket is reported again when data arrives. mio's Windows
/// selector (AFD polls) re-arms a socket's poll only when an operation on it
/// returned `WouldBlock`, so there the loop must see that `WouldBlock`.
#[cfg(unix)]
pub(crate) const SHORT_TRANSFER_REARMS: bool = true;

/// Without a proactor on this platform, `Backend::Auto` is the selector.
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) fn auto_backend() -> Backend {
    Backend::Selector
}

/// Why an explicit `Backend::Proactor` cannot start on this platform.
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) fn proactor_support() -> Result<(), String> {
    Err("this platform has no proactor backend yet (io_uring exists on Linux only)".into())
}

/// The token `mio` reports for a notifier wake-up; never a slab key.
const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

pub(crate) struct Driver {
    poll: mio::Poll,
    events: mio::Events,
    notifier: Arc<Notifier>,
}

pub(crate) struct Notifier {
    waker: mio::Waker,
}

impl Notifier {
    pub(crate) fn notify(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

impl Driver {
    pub(crate) fn new(backend: Backend) -> io::Result<Driver> {
        debug_assert_eq!(backend, Backend::Selector);
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        Ok(Driver {
            poll,
            events: mio::Events::with_capacity(1024),
            notifier: Arc::new(Notifier { waker }),
        })
    }

    pub(crate) fn kind(&self) -> Backend {
        Backend::Selector
    }

    /// Nothing is ever in flight in a readiness backend.
    pub(crate) fn close(&mut self) {}

    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Event>,
    ) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if ev.token() == WAKE_TOKEN {
                continue;
            }
            // Hang-ups and errors wake both directions, as selectors do: the
            // callback's next read or write reports the condition.
            let broken = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
            out.push(Event {
                token: ev.token().0,
                readable: ev.is_readable() || broken,
                writable: ev.is_writable() || broken,
                read_closed: ev.is_read_closed() || ev.is_error(),
                write_closed: ev.is_write_closed() || ev.is_error(),
            });
        }
        Ok(())
    }
}

/// Socket types the loop's I/O objects wrap, and their registration.
///
/// A source is registered for both directions, edge-triggered; the loop keeps
/// a readiness bit per direction, cleared when an operation reports
/// `WouldBlock` and set again by the next event.
pub(crate) mod net {
    pub(crate) use mio::event::Source;
    #[cfg(unix)]
    pub(crate) use mio::net::{TcpListener, TcpStream, UdpSocket};
    #[cfg(unix)]
    pub(crate) use mio::net::{UnixDatagram, UnixListener, UnixStream};

    use super::Driver;
    use std::io;

    /// A non-blocking TCP listener on `addr` with a listen queue of
    /// `backlog` connections (mio's own `bind` fixes it at 128, which makes
    /// a burst of connects wait for the kernel's one-second retry).
    #[cfg(unix)]
    pub(crate) fn bind_tcp_listener(
        addr: std::net::SocketAddr,
        backlog: i32,
        reuse_port: bool,
    ) -> io::Result<TcpListener> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // As asyncio's create_server (reuse_address=True on Unix): restart
        // without waiting for TIME_WAIT to pass.
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        if reuse_port {
            #[cfg(unix)]
            socket.set_reuse_port(true)?;
            #[cfg(not(unix))]
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT does not exist on this OS: leave reuse_port off",
            ));
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(TcpListener::from_std(socket.into()))
    }

    /// One error kind for "written after `shutdown(Write)`" on every
    /// platform: `BrokenPipe` (Unix's `EPIPE`). Windows reports
    /// `WSAESHUTDOWN`, which std leaves uncategorized.
    pub(crate) fn write_error(e: io::Error) -> io::Error {
        #[cfg(windows)]
        {
            const WSAESHUTDOWN: i32 = 10058;
            if e.raw_os_error() == Some(WSAESHUTDOWN) {
                return io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the socket's write side was shut down (WSAESHUTDOWN): nothing more can be written",
                );
            }
        }
        e
    }

    impl Driver {
        pub(crate) fn register_source(
            &mut self,
            src: &mut impl Source,
            token: usize,
        ) -> io::Result<()> {
            self.poll.registry().register(
                src,
                mio::Token(token),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
        }

        pub(crate) fn deregister_source(&mut self, src: &mut impl Source) -> io::Result<()> {
            self.poll.registry().deregister(src)
        }
    }

    /// Completion-based operations need a proactor: none exist here.
    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn source_fd(_: &impl Source) -> i32 {
        -1
    }

    /// Borrowed std sockets for the loop's `sock_*` methods: a [`Source`] for
    /// a borrowed fd (registered only while one operation lasts) and the
    /// non-blocking calls themselves, so `net::sock` makes no OS call.
    #[cfg(unix)]
    pub(crate) mod borrowed {
        use std::io::{self, Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
        use std::os::unix::io::RawFd;

        use mio::unix::SourceFd;
        use mio::{Interest, Registry, Token};

        /// A borrowed fd as a mio source; the caller keeps the fd open.
        pub(crate) struct FdSource(pub(crate) RawFd);

        impl std::os::unix::io::AsRawFd for FdSource {
            fn as_raw_fd(&self) -> RawFd {
                self.0
            }
        }

        impl mio::event::Source for FdSource {
            fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                SourceFd(&self.0).register(r, t, i)
            }
            fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                SourceFd(&self.0).reregister(r, t, i)
            }
            fn deregister(&mut self, r: &Registry) -> io::Result<()> {
                SourceFd(&self.0).deregister(r)
            }
        }

        pub(crate) fn tcp_nonblocking(s: &TcpStream) -> io::Result<()> {
            s.set_nonblocking(true)
        }
        pub(crate) fn listener_nonblocking(l: &TcpListener) -> io::Result<()> {
            l.set_nonblocking(true)
        }
        pub(crate) fn udp_nonblocking(u: &UdpSocket) -> io::Result<()> {
            u.set_nonblocking(true)
        }
        pub(crate) fn recv(mut s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
            s.read(buf)
        }
        pub(crate) fn send(mut s: &TcpStream, buf: &[u8]) -> io::Result<usize> {
            s.write(buf)
        }
        pub(crate) fn recv_from(u: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
            u.recv_from(buf)
        }
        pub(crate) fn send_to(u: &UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
            u.send_to(buf, to)
        }
        /// Accepts one connection and makes it non-blocking, as asyncio does.
        pub(crate) fn accept(l: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
            let (s, peer) = l.accept()?;
            s.set_nonblocking(true)?;
            Ok((s, peer))
        }
        /// Starts a non-blocking connect; finish it with [`connected`].
        pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
            mio::net::TcpStream::connect(addr).map(TcpStream::from)
        }
        /// `Ok` once a started connect succeeded, `WouldBlock` while it is in
        /// progress, the error if it failed.
        pub(crate) fn connected(s: &TcpStream) -> io::Result<()> {
            if let Some(e) = s.take_error()? {
                return Err(e);
            }
            match s.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
super::no_loop_completions!(Driver);

#[cfg(unix)]
mod fd {
    use super::*;
    use crate::backend::Interest;
    use mio::unix::SourceFd;
    use std::os::unix::io::RawFd;

    fn interest(i: Interest) -> mio::Interest {
        match (i.read, i.write) {
            (true, true) => mio::Interest::READABLE | mio::Interest::WRITABLE,
            (false, true) => mio::Interest::WRITABLE,
            _ => mio::Interest::READABLE,
        }
    }

    impl Driver {
        pub(crate) fn register(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), mio::Token(token), interest(i))
        }

        pub(crate) fn reregister(
            &mut self,
            fd: RawFd,
            token: usize,
            i: Interest,
        ) -> io::Result<()> {
            self.poll
                .registry()
                .reregister(&mut SourceFd(&fd), mio::Token(token), interest(i))
        }

        pub(crate) fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
            self.poll.registry().deregister(&mut SourceFd(&fd))
        }
    }
}
