//! Windows: the selector (mio over AFD polls) or the IOCP proactor, chosen
//! per loop at run time.
//!
//! [`Driver`] and [`Notifier`] forward to the chosen backend. The socket
//! types in [`net`] are made before they meet a loop (a listener is bound, a
//! stream starts connecting, a UDP socket is bound), so they start out as
//! plain sockets and become the chosen backend's kind when they are
//! registered: a mio socket on the selector, an IOCP socket on the proactor.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{iocp, selector, Backend, Event};

/// See the contract in `backend/mod.rs`. Neither Windows backend may clear
/// readiness after a short transfer: mio re-arms its AFD poll only after a
/// `WouldBlock`, and the IOCP sockets report a completion per operation.
pub(crate) const SHORT_TRANSFER_REARMS: bool = false;

/// One loop's driver: the backend it was made with.
pub(crate) enum Driver {
    Selector(selector::Driver),
    Proactor(iocp::Driver),
}

/// The thread-safe wake-up of either backend.
pub(crate) enum Notifier {
    Selector(Arc<selector::Notifier>),
    Proactor(Arc<iocp::Notifier>),
}

impl Notifier {
    pub(crate) fn notify(&self) -> io::Result<()> {
        match self {
            Notifier::Selector(n) => n.notify(),
            Notifier::Proactor(n) => n.notify(),
        }
    }
}

impl Driver {
    /// The loop is closing. The IOCP driver cancels and reaps what is still
    /// in flight when it drops (see `iocp::Driver`'s `Drop`), which the
    /// loop's close leads to once its objects are gone; the selector has
    /// nothing in flight.
    pub(crate) fn close(&mut self) {
        if let Driver::Selector(d) = self {
            d.close();
        }
    }

    pub(crate) fn new(backend: Backend) -> io::Result<Driver> {
        match backend {
            Backend::Proactor => Ok(Driver::Proactor(iocp::Driver::new()?)),
            _ => Ok(Driver::Selector(selector::Driver::new(Backend::Selector)?)),
        }
    }

    pub(crate) fn kind(&self) -> Backend {
        match self {
            Driver::Selector(d) => d.kind(),
            Driver::Proactor(d) => d.kind(),
        }
    }

    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        Arc::new(match self {
            Driver::Selector(d) => Notifier::Selector(d.notifier()),
            Driver::Proactor(d) => Notifier::Proactor(d.notifier()),
        })
    }

    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Event>,
    ) -> io::Result<()> {
        match self {
            Driver::Selector(d) => d.poll(timeout, out),
            Driver::Proactor(d) => d.poll(timeout, out),
        }
    }

    pub(crate) fn register_source(
        &mut self,
        src: &mut impl net::Source,
        token: usize,
    ) -> io::Result<()> {
        src.register(self, token)
    }

    pub(crate) fn deregister_source(&mut self, src: &mut impl net::Source) -> io::Result<()> {
        src.deregister(self)
    }
}

/// The socket types the loop's I/O objects wrap, for either backend.
pub(crate) mod net {
    use std::io::{self, IoSlice, Read, Write};
    use std::net::{Shutdown, SocketAddr};

    use super::{iocp, Driver};
    use crate::backend::selector;

    pub(crate) use selector::net::write_error;

    /// The fd the loop's completion calls would use: none here, IOCP
    /// sockets complete inside this backend (`completions()` is false).
    pub(crate) fn source_fd(_: &impl Source) -> i32 {
        -1
    }

    /// An I/O object joining (or leaving) a driver: it turns into that
    /// backend's kind of socket the first time.
    pub(crate) trait Source {
        fn register(&mut self, driver: &mut Driver, token: usize) -> io::Result<()>;
        fn deregister(&mut self, driver: &mut Driver) -> io::Result<()>;
    }

    fn moved(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "this {what} was registered with a loop of the other Windows backend; a \
                 socket stays with the backend (selector or proactor) it first joined"
            ),
        )
    }

    /// The same call on whichever kind of socket `$self` is.
    macro_rules! either {
        ($self:expr, $s:ident => $e:expr) => {
            match $self {
                Self::Mio($s) => $e,
                Self::Iocp($s) => $e,
                #[allow(unreachable_patterns)]
                _ => Err(io::ErrorKind::NotConnected.into()),
            }
        };
    }

    // -- TCP streams --------------------------------------------------------

    /// A TCP stream: connecting (no backend yet), or a backend's socket.
    pub(crate) enum TcpStream {
        Connecting(SocketAddr),
        Mio(mio::net::TcpStream),
        Iocp(iocp::net::Stream),
    }

    impl TcpStream {
        /// A connected std socket, for the selector (the loop's completion
        /// calls, which would hand one over, are off on Windows).
        pub(crate) fn from_std(s: std::net::TcpStream) -> TcpStream {
            TcpStream::Mio(mio::net::TcpStream::from_std(s))
        }
    }

    impl TcpStream {
        /// Starts connecting to `addr`; the attempt is made when the stream
        /// is registered (a non-blocking `connect` or a `ConnectEx`).
        pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
            Ok(TcpStream::Connecting(addr))
        }

        pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
            either!(self, s => s.take_error())
        }
        pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
            either!(self, s => s.peer_addr())
        }
        pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
            either!(self, s => s.local_addr())
        }
        pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            either!(self, s => s.shutdown(how))
        }
        pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
            match self {
                TcpStream::Mio(s) => s.set_nodelay(on),
                TcpStream::Iocp(s) => s.socket().set_tcp_nodelay(on),
                TcpStream::Connecting(_) => Err(io::ErrorKind::NotConnected.into()),
            }
        }
        pub(crate) fn nodelay(&self) -> io::Result<bool> {
            match self {
                TcpStream::Mio(s) => s.nodelay(),
                TcpStream::Iocp(s) => s.socket().tcp_nodelay(),
                TcpStream::Connecting(_) => Err(io::ErrorKind::NotConnected.into()),
            }
        }
    }

    impl Read for &TcpStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match *self {
                TcpStream::Mio(s) => (&*s).read(buf),
                TcpStream::Iocp(s) => s.read(buf),
                TcpStream::Connecting(_) => Err(io::ErrorKind::NotConnected.into()),
            }
        }
    }

    impl Write for &TcpStream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match *self {
                TcpStream::Mio(s) => (&*s).write(buf),
                TcpStream::Iocp(s) => s.write(buf),
                TcpStream::Connecting(_) => Err(io::ErrorKind::NotConnected.into()),
            }
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            match *self {
                TcpStream::Mio(s) => (&*s).write_vectored(bufs),
                TcpStream::Iocp(s) => s.write_vectored(bufs),
                TcpStream::Connecting(_) => Err(io::ErrorKind::NotConnected.into()),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Source for TcpStream {
        fn register(&mut self, driver: &mut Driver, token: usize) -> io::Result<()> {
            if let TcpStream::Connecting(addr) = *self {
                *self = match driver {
                    Driver::Selector(_) => TcpStream::Mio(mio::net::TcpStream::connect(addr)?),
                    Driver::Proactor(_) => TcpStream::Iocp(iocp::net::Stream::connect(addr)?),
                };
            }
            match (driver, self) {
                (Driver::Selector(d), TcpStream::Mio(s)) => d.register_source(s, token),
                (Driver::Proactor(d), TcpStream::Iocp(s)) => s.attach(d.shared(), token),
                _ => Err(moved("TCP stream")),
            }
        }
        fn deregister(&mut self, driver: &mut Driver) -> io::Result<()> {
            match (driver, self) {
                (Driver::Selector(d), TcpStream::Mio(s)) => d.deregister_source(s),
                (_, TcpStream::Iocp(s)) => {
                    s.detach();
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }

    // -- TCP listeners ------------------------------------------------------

    /// A TCP listener: bound and listening (no backend yet), or a backend's
    /// socket.
    pub(crate) enum TcpListener {
        Std(std::net::TcpListener),
        Mio(mio::net::TcpListener),
        Iocp(iocp::net::Listener),
        /// Only while it turns into a backend's kind (left if that failed).
        Moving,
    }

    /// A listening socket on `addr` with a listen queue of `backlog`.
    pub(crate) fn bind_tcp_listener(
        addr: SocketAddr,
        backlog: i32,
        reuse_port: bool,
    ) -> io::Result<TcpListener> {
        use socket2::{Domain, Socket, Type};
        if reuse_port {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT does not exist on Windows: leave reuse_port off",
            ));
        }
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(TcpListener::Std(socket.into()))
    }

    impl TcpListener {
        pub(crate) fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
            match self {
                TcpListener::Mio(l) => l.accept().map(|(s, a)| (TcpStream::Mio(s), a)),
                TcpListener::Iocp(l) => l.accept().map(|(s, a)| (TcpStream::Iocp(s), a)),
                TcpListener::Std(_) => Err(io::ErrorKind::WouldBlock.into()),
                TcpListener::Moving => Err(gone()),
            }
        }
        pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
            match self {
                TcpListener::Std(l) => l.local_addr(),
                TcpListener::Mio(l) => l.local_addr(),
                TcpListener::Iocp(l) => l.local_addr(),
                TcpListener::Moving => Err(gone()),
            }
        }
    }

    impl Source for TcpListener {
        fn register(&mut self, driver: &mut Driver, token: usize) -> io::Result<()> {
            if matches!(self, TcpListener::Std(_)) {
                let TcpListener::Std(l) = std::mem::replace(self, TcpListener::Moving) else {
                    unreachable!("checked above")
                };
                *self = match driver {
                    Driver::Selector(_) => {
                        l.set_nonblocking(true)?;
                        TcpListener::Mio(mio::net::TcpListener::from_std(l))
                    }
                    Driver::Proactor(_) => {
                        TcpListener::Iocp(iocp::net::Listener::from_socket(l.into())?)
                    }
                };
            }
            match (driver, self) {
                (Driver::Selector(d), TcpListener::Mio(l)) => d.register_source(l, token),
                (Driver::Proactor(d), TcpListener::Iocp(l)) => l.attach(d.shared(), token),
                _ => Err(moved("TCP listener")),
            }
        }
        fn deregister(&mut self, driver: &mut Driver) -> io::Result<()> {
            match (driver, self) {
                (Driver::Selector(d), TcpListener::Mio(l)) => d.deregister_source(l),
                (_, TcpListener::Iocp(l)) => {
                    l.detach();
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }

    // -- UDP ----------------------------------------------------------------

    /// A UDP socket: bound (no backend yet), or a backend's socket.
    pub(crate) enum UdpSocket {
        Std(std::net::UdpSocket),
        Mio(mio::net::UdpSocket),
        Iocp(iocp::net::Datagram),
        /// Only while it turns into a backend's kind (left if that failed).
        Moving,
    }

    impl UdpSocket {
        pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
            Ok(UdpSocket::Std(std::net::UdpSocket::bind(addr)?))
        }

        fn socket2(&self) -> io::Result<socket2::SockRef<'_>> {
            Ok(match self {
                UdpSocket::Std(s) => socket2::SockRef::from(s),
                UdpSocket::Mio(s) => socket2::SockRef::from(s),
                UdpSocket::Iocp(s) => socket2::SockRef::from(s.socket()),
                UdpSocket::Moving => return Err(gone()),
            })
        }

        pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
            match self {
                UdpSocket::Std(s) => s.local_addr(),
                UdpSocket::Mio(s) => s.local_addr(),
                UdpSocket::Iocp(s) => s.local_addr(),
                UdpSocket::Moving => Err(gone()),
            }
        }
        pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
            match self {
                UdpSocket::Std(s) => s.peer_addr(),
                UdpSocket::Mio(s) => s.peer_addr(),
                UdpSocket::Iocp(s) => s.peer_addr(),
                UdpSocket::Moving => Err(gone()),
            }
        }
        pub(crate) fn connect(&self, addr: SocketAddr) -> io::Result<()> {
            match self {
                UdpSocket::Std(s) => s.connect(addr),
                UdpSocket::Mio(s) => s.connect(addr),
                UdpSocket::Iocp(s) => s.socket().connect(&addr.into()),
                UdpSocket::Moving => Err(gone()),
            }
        }
        pub(crate) fn set_broadcast(&self, on: bool) -> io::Result<()> {
            self.socket2()?.set_broadcast(on)
        }
        pub(crate) fn broadcast(&self) -> io::Result<bool> {
            self.socket2()?.broadcast()
        }
        pub(crate) fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
            match self {
                UdpSocket::Mio(s) => s.send_to(buf, to),
                UdpSocket::Iocp(s) => s.send_to(buf, to),
                UdpSocket::Std(_) => Err(io::ErrorKind::WouldBlock.into()),
                UdpSocket::Moving => Err(gone()),
            }
        }
        pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
            match self {
                UdpSocket::Mio(s) => s.send(buf),
                UdpSocket::Iocp(s) => s.send(buf),
                UdpSocket::Std(_) => Err(io::ErrorKind::WouldBlock.into()),
                UdpSocket::Moving => Err(gone()),
            }
        }
        pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
            match self {
                UdpSocket::Mio(s) => s.recv_from(buf),
                UdpSocket::Iocp(s) => s.recv_from(buf),
                UdpSocket::Std(_) => Err(io::ErrorKind::WouldBlock.into()),
                UdpSocket::Moving => Err(gone()),
            }
        }
        pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            match self {
                UdpSocket::Mio(s) => s.recv(buf),
                UdpSocket::Iocp(s) => s.recv_from(buf).map(|(n, _)| n),
                UdpSocket::Std(_) => Err(io::ErrorKind::WouldBlock.into()),
                UdpSocket::Moving => Err(gone()),
            }
        }
    }

    impl Source for UdpSocket {
        fn register(&mut self, driver: &mut Driver, token: usize) -> io::Result<()> {
            if matches!(self, UdpSocket::Std(_)) {
                let UdpSocket::Std(s) = std::mem::replace(self, UdpSocket::Moving) else {
                    unreachable!("checked above")
                };
                *self = match driver {
                    Driver::Selector(_) => {
                        s.set_nonblocking(true)?;
                        UdpSocket::Mio(mio::net::UdpSocket::from_std(s))
                    }
                    Driver::Proactor(_) => {
                        UdpSocket::Iocp(iocp::net::Datagram::from_socket(s.into())?)
                    }
                };
            }
            match (driver, self) {
                (Driver::Selector(d), UdpSocket::Mio(s)) => d.register_source(s, token),
                (Driver::Proactor(d), UdpSocket::Iocp(s)) => s.attach(d.shared(), token),
                _ => Err(moved("UDP socket")),
            }
        }
        fn deregister(&mut self, driver: &mut Driver) -> io::Result<()> {
            match (driver, self) {
                (Driver::Selector(d), UdpSocket::Mio(s)) => d.deregister_source(s),
                (_, UdpSocket::Iocp(s)) => {
                    s.detach();
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }

    fn gone() -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            "the socket was closed when it failed to join the loop",
        )
    }
}

/// `Backend::Auto` on Windows: the proactor (IOCP), as asyncio's default
/// since Python 3.8.
pub(crate) fn auto_backend() -> Backend {
    Backend::Proactor
}

/// The IOCP proactor is always there on Windows.
pub(crate) fn proactor_support() -> Result<(), String> {
    Ok(())
}

super::no_loop_completions!(Driver);
