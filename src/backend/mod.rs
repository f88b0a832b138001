//! How the loop waits: the backend contract and the one place that picks the
//! backend.
//!
//! Everything that touches the operating system (or, later, the JS host) lives
//! below this module. The event loop above it sees only this contract, which
//! every backend implements with the same names:
//!
//! ```text
//! struct Driver                       owned by one EventLoop, never shared
//!     fn new(backend: Backend) -> io::Result<Driver>   a resolved backend
//!     fn kind(&self) -> Backend        the concrete backend (never Auto)
//!     fn notifier(&self) -> Arc<Notifier>
//!     fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>)
//!         -> io::Result<()>
//!         Waits until an event, a notification, or `timeout` (None = forever,
//!         Some(ZERO) = do not block). Appends readiness events; a wake-up by
//!         the notifier appends nothing. Never reports before `timeout` unless
//!         something happened; rounds sub-resolution timeouts UP so timers never
//!         fire early. An interrupted wait (EINTR) returns Ok with no events.
//!     fn register(&mut self, fd, token, Interest) -> io::Result<()>     (unix)
//!     fn reregister(&mut self, fd, token, Interest) -> io::Result<()>   (unix)
//!         Re-arms the fd: if it is still ready, the next poll reports it
//!         again. The loop calls it after running a readiness callback, which
//!         gives asyncio's level-triggered `add_reader` semantics on
//!         edge-triggered mechanisms.
//!     fn deregister(&mut self, fd) -> io::Result<()>                    (unix)
//!     fn register_source(&mut self, &mut impl net::Source, token) -> io::Result<()>
//!     fn deregister_source(&mut self, &mut impl net::Source) -> io::Result<()>
//!         An I/O object (socket, pipe) joins the driver for both directions;
//!         the driver reports its readiness changes as events with `token`.
//!
//! mod net                             the socket types I/O objects wrap
//!     TcpListener, TcpStream, UdpSocket (+ UnixListener, UnixStream,
//!     UnixDatagram on Unix): non-blocking; an operation that would block
//!     returns `io::ErrorKind::WouldBlock`, and the loop waits for the next
//!     readiness event of that direction before trying again.
//!
//! const SHORT_TRANSFER_REARMS: bool
//!     true when a stream read or write that moved fewer bytes than asked
//!     for may clear the loop's readiness bit without waiting for a
//!     `WouldBlock` (the backend reports the next change as a new event);
//!     false when only a `WouldBlock` re-arms the source (mio on Windows).
//!
//! struct Notifier: Send + Sync        the thread-safe wake-up
//!     fn notify(&self) -> io::Result<()>
//!         Makes a current or the next `poll` return promptly. Cheap to call
//!         many times; the loop coalesces calls with an atomic flag.
//! ```
//!
//! Tokens are plain `usize` values chosen by the loop (`slab` keys); the
//! backend hands them back untouched in [`Event`].
//!
//! ## Windows: two backends behind one `sys`
//!
//! On Windows `sys` is `windows.rs`, which forwards each call to the backend
//! a loop was made with: `selector` (mio over AFD polls) or `iocp` (the
//! proactor). Its `net` types start as plain sockets (bound, or about to
//! connect) and become the backend's kind when first registered, since they
//! are made before they meet a loop. The IOCP proactor keeps this readiness
//! contract by owning the I/O: a read copies out of the buffer the last
//! `WSARecv` filled (and submits the next), a write copies into an owned
//! buffer and submits `WSASend`s up to an emulated send-buffer size, a
//! listener keeps `AcceptEx` calls in flight, a connect is a `ConnectEx`;
//! each completion becomes an [`Event`] of its direction. The `OVERLAPPED`
//! plumbing (and all of the crate's `unsafe`) stays in `iocp/`.
//!
//! ## Buffers (for completion backends)
//!
//! A readiness backend (the selector) only says "you may read now", so the
//! caller's buffer is borrowed for the length of one non-blocking syscall. A
//! completion backend (io_uring, IOCP) writes into a buffer *after* the call
//! that submitted the operation returned, so the rule for every operation that
//! the contract grows is: **a buffer the kernel may write into or read from is
//! owned by the operation (or the runtime) until the completion is reaped**,
//! never borrowed from a future that could be dropped first. Cancelling such an
//! operation means submitting a cancel and keeping the buffer alive until the
//! cancel's completion arrives. The IOCP backend does exactly this: an
//! operation's `OVERLAPPED`, buffers and socket live in a reference-counted
//! op of which the kernel holds one count from submission until
//! `GetQueuedCompletionStatusEx` hands the completion back; a dropped object
//! cancels its reads with `CancelIoEx` (its sends complete, so written bytes
//! still reach the peer), and closing a loop cancels and reaps everything in
//! flight.

use std::fmt;
use std::sync::OnceLock;

use crate::{Error, ErrorKind};

cfg_if::cfg_if! {
    if #[cfg(unix)] {
        pub(crate) mod selector;
        pub(crate) use selector as sys;
    } else if #[cfg(windows)] {
        // Windows: the selector or the IOCP proactor, per loop.
        pub(crate) mod selector;
        #[allow(unsafe_code)]
        pub(crate) mod iocp;
        pub(crate) mod windows;
        pub(crate) use windows as sys;
    } else {
        compile_error!("aioloop supports Unix and Windows for now; the wasm32 backend is on its way");
    }
}

pub(crate) use sys::{Driver, Notifier};

#[cfg(unix)]
pub(crate) mod process;
#[cfg(unix)]
pub(crate) mod signal;

/// Which backend a loop waits in.
///
/// `Auto` picks the platform's default (the selector on Unix, the proactor
/// on Windows); the `AIOLOOP_BACKEND` environment variable (`selector`,
/// `proactor` on Windows, `auto`), read once per process, overrides it so a
/// whole test suite can be forced onto one backend.
///
/// Pass it to [`LoopBuilder::backend`](crate::LoopBuilder::backend);
/// [`EventLoop::backend`](crate::EventLoop::backend) reports the one a loop
/// actually uses (never `Auto`).
///
/// # Examples
///
/// ```
/// use aioloop::{Backend, EventLoop};
///
/// let lp = EventLoop::builder().backend(Backend::Selector).build().unwrap();
/// assert_eq!(lp.backend(), Backend::Selector);
/// lp.close().unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The platform's default: the selector on Unix, the proactor on
    /// Windows.
    #[default]
    Auto,
    /// Readiness-based: epoll, kqueue or Windows AFD through `mio`.
    Selector,
    /// Completion-based: an I/O completion port (IOCP) on Windows, where it
    /// is the default (as asyncio's `ProactorEventLoop` since Python 3.8).
    /// Elsewhere a loop asked for it fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    Proactor,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Selector => "selector",
            Backend::Proactor => "proactor",
        })
    }
}

/// The environment variable that overrides [`Backend::Auto`].
pub(crate) const BACKEND_ENV: &str = "AIOLOOP_BACKEND";

impl Backend {
    /// The concrete backend for a loop asked to use `self`.
    ///
    /// `Auto` honours `AIOLOOP_BACKEND` (read once per process), so a whole
    /// test suite can be run against one backend without code changes.
    pub(crate) fn resolve(self) -> Result<Backend, Error> {
        match self {
            Backend::Auto => {
                static CHOICE: OnceLock<Result<Backend, Error>> = OnceLock::new();
                CHOICE
                    .get_or_init(|| match std::env::var(BACKEND_ENV) {
                        Ok(v) => Backend::parse(&v),
                        Err(_) => Ok(Backend::platform_default()),
                    })
                    .clone()
            }
            Backend::Proactor if cfg!(not(windows)) => Err(Error::new(
                ErrorKind::Unsupported,
                "Backend::Proactor: this build has no proactor backend on this platform \
                 (IOCP is Windows-only); use Backend::Selector or Backend::Auto",
            )),
            other => Ok(other),
        }
    }

    /// What `Auto` means without `AIOLOOP_BACKEND`: the proactor (IOCP) on
    /// Windows, as asyncio; the selector elsewhere.
    fn platform_default() -> Backend {
        if cfg!(windows) {
            Backend::Proactor
        } else {
            Backend::Selector
        }
    }

    fn parse(value: &str) -> Result<Backend, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Backend::platform_default()),
            "selector" => Ok(Backend::Selector),
            "proactor" if cfg!(windows) => Ok(Backend::Proactor),
            "proactor" => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{BACKEND_ENV}=proactor: no proactor backend on this platform yet (IOCP is \
                     Windows-only; io_uring is on its way); unset {BACKEND_ENV} or set it to `selector`"
                ),
            )),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{BACKEND_ENV}={other:?} names no backend: use `selector` or `auto`"),
            )),
        }
    }
}

/// What the driver wants to hear about for one registration.
// Registrations are Unix-only (raw fds) until the Windows backends land.
#[cfg_attr(not(unix), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

#[cfg_attr(not(unix), allow(dead_code))]
impl Interest {
    pub(crate) fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

/// One readiness report from [`Driver::poll`].
#[cfg_attr(not(unix), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) token: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer closed its side (or the socket failed): reads no longer
    /// block. Unlike `readable`, this never goes away again.
    pub(crate) read_closed: bool,
    /// Writing can no longer block (the socket closed or failed).
    pub(crate) write_closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_parse_to_backends_or_clear_errors() {
        assert_eq!(Backend::parse("selector").unwrap(), Backend::Selector);
        assert_eq!(
            Backend::parse(" Auto ").unwrap(),
            Backend::platform_default()
        );
        assert_eq!(Backend::parse("").unwrap(), Backend::platform_default());
        if cfg!(windows) {
            assert_eq!(Backend::parse("proactor").unwrap(), Backend::Proactor);
            assert_eq!(Backend::platform_default(), Backend::Proactor);
        } else {
            let e = Backend::parse("proactor").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.message().contains("selector"));
        }
        let e = Backend::parse("kqueue-please").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("AIOLOOP_BACKEND"));
    }

    #[test]
    fn explicit_backends_ignore_the_environment() {
        assert_eq!(Backend::Selector.resolve().unwrap(), Backend::Selector);
    }
}
