//! Linux: the backend is chosen at run time, so `sys` here is a driver that
//! dispatches to the selector (mio/epoll) or the proactor (io_uring). The
//! event loop sees one `Driver` with the contract of `backend/mod.rs`.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::proactor::{self, uring};
use super::selector;
use super::{Backend, DgramRead, Event, Interest, MultiRead};

/// The backend `Backend::Auto` picks on Linux: the proactor when io_uring
/// is usable, else the selector (said once through the log).
pub(crate) fn auto_backend() -> Backend {
    match proactor::probe() {
        Ok(()) => Backend::Proactor,
        Err(cause) => {
            log::warn!(
                target: "aioloop",
                "io_uring is unavailable ({cause}); Backend::Auto uses the selector (epoll) instead"
            );
            Backend::Selector
        }
    }
}

/// Both drivers report a drained socket again when its state changes
/// (epoll edges; io_uring polls and receives), so a short transfer may
/// clear the readiness bit at once.
pub(crate) use super::selector::SHORT_TRANSFER_REARMS;

/// Whether an explicit `Backend::Proactor` can start, with the cause if not.
pub(crate) fn proactor_support() -> Result<(), String> {
    proactor::probe().map_err(|cause| cause.to_string())
}

pub(crate) struct Driver {
    imp: Imp,
    notifier: Arc<Notifier>,
}

enum Imp {
    Selector(selector::Driver),
    Uring(Box<uring::Driver>),
}

/// Calls the same method on whichever driver this is.
macro_rules! each {
    ($self:expr, $d:ident => $e:expr) => {
        match $self {
            Imp::Selector($d) => $e,
            Imp::Uring($d) => $e,
        }
    };
}

pub(crate) enum Notifier {
    Selector(Arc<selector::Notifier>),
    Uring(Arc<uring::Notifier>),
}

impl Notifier {
    pub(crate) fn notify(&self) -> io::Result<()> {
        match self {
            Notifier::Selector(n) => n.notify(),
            Notifier::Uring(n) => n.notify(),
        }
    }
}

impl Driver {
    pub(crate) fn new(backend: Backend) -> io::Result<Driver> {
        Ok(match backend {
            Backend::Proactor => {
                let d = uring::Driver::new(backend)?;
                let notifier = Arc::new(Notifier::Uring(d.notifier()));
                Driver {
                    imp: Imp::Uring(Box::new(d)),
                    notifier,
                }
            }
            _ => {
                let d = selector::Driver::new(Backend::Selector)?;
                let notifier = Arc::new(Notifier::Selector(d.notifier()));
                Driver {
                    imp: Imp::Selector(d),
                    notifier,
                }
            }
        })
    }

    pub(crate) fn kind(&self) -> Backend {
        each!(&self.imp, d => d.kind())
    }

    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    #[inline]
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        each!(&mut self.imp, d => d.poll(timeout, events))
    }

    pub(crate) fn register(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        each!(&mut self.imp, d => d.register(fd, token, i))
    }

    pub(crate) fn reregister(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        each!(&mut self.imp, d => d.reregister(fd, token, i))
    }

    pub(crate) fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        each!(&mut self.imp, d => d.deregister(fd))
    }

    /// See the contract: cancels and reaps every operation in flight.
    pub(crate) fn close(&mut self) {
        each!(&mut self.imp, d => d.close())
    }
}

/// Completion-based transfers (see the contract); the selector has none
/// (`completions()` is false and the loop never asks it for one).
impl Driver {
    #[inline]
    pub(crate) fn completions(&self) -> bool {
        matches!(self.imp, Imp::Uring(_))
    }

    fn uring(&mut self) -> io::Result<&mut uring::Driver> {
        match &mut self.imp {
            Imp::Uring(d) => Ok(d),
            Imp::Selector(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the selector backend has no completion-based operations",
            )),
        }
    }

    pub(crate) fn buffer(&mut self, cap: usize) -> Vec<u8> {
        match &mut self.imp {
            Imp::Uring(d) => d.buffer(cap),
            Imp::Selector(_) => Vec::with_capacity(cap),
        }
    }

    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if let Imp::Uring(d) = &mut self.imp {
            d.recycle(buf);
        }
    }

    pub(crate) fn submit_recv(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        ahead: bool,
    ) -> io::Result<usize> {
        self.uring()?.submit_recv(fd, token, buf, ahead)
    }

    pub(crate) fn submit_recv_msg(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        ahead: bool,
    ) -> io::Result<usize> {
        self.uring()?.submit_recv_msg(fd, token, buf, ahead)
    }

    pub(crate) fn take_from(
        &mut self,
        op: usize,
    ) -> Option<(i32, Vec<u8>, Option<std::net::SocketAddr>)> {
        self.uring().ok()?.take_from(op)
    }

    pub(crate) fn submit_send(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        shut_after: bool,
    ) -> io::Result<usize> {
        self.uring()?.submit_send(fd, token, buf, shut_after)
    }

    pub(crate) fn submit_send_to(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        to: Option<std::net::SocketAddr>,
    ) -> io::Result<usize> {
        self.uring()?.submit_send_to(fd, token, buf, to)
    }

    pub(crate) fn take(&mut self, op: usize) -> Option<(i32, Vec<u8>)> {
        self.uring().ok()?.take(op)
    }

    pub(crate) fn extend_send(&mut self, op: usize, more: &[u8], shut_after: bool) -> bool {
        self.uring()
            .is_ok_and(|d| d.extend_send(op, more, shut_after))
    }

    pub(crate) fn submit_accept(&mut self, fd: RawFd, token: usize) -> io::Result<usize> {
        self.uring()?.submit_accept(fd, token)
    }

    pub(crate) fn take_accept(
        &mut self,
        op: usize,
    ) -> Option<io::Result<(std::net::TcpStream, std::net::SocketAddr)>> {
        self.uring().ok()?.take_accept(op)
    }

    pub(crate) fn recv_multishot(&mut self) -> bool {
        self.uring().is_ok_and(|d| d.recv_multishot())
    }

    pub(crate) fn submit_recv_multi(&mut self, fd: RawFd, token: usize) -> io::Result<usize> {
        self.uring()?.submit_recv_multi(fd, token)
    }

    pub(crate) fn read_multi(&mut self, op: usize, buf: &mut [u8]) -> MultiRead {
        match self.uring() {
            Ok(d) => d.read_multi(op, buf),
            Err(_) => MultiRead::End(-libc::EBADF),
        }
    }

    pub(crate) fn dgram_multishot(&mut self) -> bool {
        self.uring().is_ok_and(|d| d.dgram_multishot())
    }

    pub(crate) fn submit_recv_dgram_multi(&mut self, fd: RawFd, token: usize) -> io::Result<usize> {
        self.uring()?.submit_recv_dgram_multi(fd, token)
    }

    pub(crate) fn read_dgram(&mut self, op: usize, buf: &mut [u8]) -> DgramRead {
        match self.uring() {
            Ok(d) => d.read_dgram(op, buf),
            Err(_) => DgramRead::Failed(-libc::EBADF),
        }
    }

    pub(crate) fn quiet_source(&mut self, fd: RawFd) {
        if let Ok(d) = self.uring() {
            d.quiet_source(fd);
        }
    }

    pub(crate) fn release(&mut self, op: usize) {
        if let Ok(d) = self.uring() {
            d.release(op);
        }
    }

    pub(crate) fn cancel_transfer(&mut self, op: usize) {
        if let Ok(d) = self.uring() {
            d.cancel_transfer(op);
        }
    }
}

/// The socket types are mio's on both drivers (non-blocking std sockets);
/// the proactor watches them through their fds.
pub(crate) mod net {
    use std::io;
    use std::os::fd::AsRawFd;

    pub(crate) use crate::backend::selector::net::{
        bind_tcp_listener, borrowed, write_error, TcpListener, TcpStream, UdpSocket, UnixDatagram,
        UnixListener, UnixStream,
    };

    use super::{Driver, Imp};

    /// An I/O object either driver can watch.
    pub(crate) trait Source: mio::event::Source + AsRawFd {}
    impl<T: mio::event::Source + AsRawFd> Source for T {}

    /// The fd completion-based operations on `src` use.
    pub(crate) fn source_fd(src: &impl Source) -> std::os::fd::RawFd {
        src.as_raw_fd()
    }

    impl Driver {
        pub(crate) fn register_source(
            &mut self,
            src: &mut impl Source,
            token: usize,
        ) -> io::Result<()> {
            match &mut self.imp {
                Imp::Selector(d) => d.register_source(src, token),
                Imp::Uring(d) => d.register_source(src.as_raw_fd(), token),
            }
        }

        pub(crate) fn deregister_source(&mut self, src: &mut impl Source) -> io::Result<()> {
            match &mut self.imp {
                Imp::Selector(d) => d.deregister_source(src),
                Imp::Uring(d) => d.deregister_source(src.as_raw_fd()),
            }
        }
    }
}
