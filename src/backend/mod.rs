//! How the loop waits: the backend contract and the one place that picks the
//! backend.
//!
//! Everything that touches the operating system (or the JS host) lives
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
//!         the driver reports its readiness changes as events with `token`
//!         (edge-triggered: every change, including the state at
//!         registration). One registration per fd: an fd already watched by
//!         `register` is refused with EEXIST, as epoll does. Deregistration
//!         takes effect before it returns (the caller closes the socket next).
//!     fn close(&mut self)
//!         The loop is closing: cancel every operation in flight and reap
//!         all their completions before returning, so no buffer is freed
//!         and no file kept open under the kernel. Later registrations fail.
//!
//!     Completion-based transfers (a proactor; `completions()` is false on a
//!     readiness backend, and the loop then never calls the others):
//!     fn completions(&self) -> bool
//!     fn buffer(&mut self, cap) -> Vec<u8>        a pooled, empty buffer
//!     fn recycle(&mut self, Vec<u8>)              gives one back
//!     fn submit_recv(&mut self, fd, token, Vec<u8>, ahead) -> io::Result<OpKey>
//!         Receives up to the buffer's capacity into it. The buffer now
//!         belongs to the operation. `ahead`: a read-ahead on a socket just
//!         drained (the driver may wait for data before trying).
//!     fn submit_send(&mut self, fd, token, Vec<u8>, shut_after) -> io::Result<OpKey>
//!         Sends all of the buffer (the driver continues short sends), then
//!         shuts the write side down if asked.
//!     fn extend_send(&mut self, OpKey, &[u8], shut_after) -> bool
//!         Queues more bytes behind a send still in flight (false once it
//!         completed: take it and submit another). Keeps the byte order.
//!     fn take(&mut self, OpKey) -> Option<(i32, Vec<u8>)>
//!         A completed transfer's result (bytes, or -errno) and its buffer;
//!         None while in flight. Each completion is also reported by `poll`
//!         as an event with the transfer's token (readable for a receive,
//!         writable for a send), so the usual readiness wake-ups apply.
//!     fn submit_recv_msg(&mut self, fd, token, Vec<u8>, ahead) -> io::Result<OpKey>
//!     fn take_from(&mut self, OpKey) -> Option<(i32, Vec<u8>, Option<SocketAddr>)>
//!         One datagram (`RECVMSG`) and its sender.
//!     fn submit_send_to(&mut self, fd, token, Vec<u8>, Option<SocketAddr>) -> io::Result<OpKey>
//!         Sends the buffer as one datagram (`SENDMSG`) to the address (the
//!         connected peer if None); collected with `take`, reported as a
//!         writable event. A released one still goes out.
//!     fn submit_accept(&mut self, fd, token) -> io::Result<OpKey>
//!     fn take_accept(&mut self, OpKey) -> Option<io::Result<(TcpStream, SocketAddr)>>
//!         One connection (`ACCEPT`, non-blocking, close-on-exec). A
//!         connection accepted after its listener let go is closed.
//!     fn recv_multishot(&mut self) -> bool
//!     fn submit_recv_multi(&mut self, fd, token) -> io::Result<OpKey>
//!     fn read_multi(&mut self, OpKey, &mut [u8]) -> MultiRead
//!         A stream receive that stays armed (io_uring's multishot RECV
//!         into a provided-buffer ring, when `recv_multishot()`): its data
//!         is queued in the driver (a bounded number of buffers per socket)
//!         and copied out by `read_multi` (Data / Pending / End), reported
//!         as readable events. `release` stops it.
//!     fn dgram_multishot(&mut self) -> bool
//!     fn submit_recv_dgram_multi(&mut self, fd, token) -> io::Result<OpKey>
//!     fn read_dgram(&mut self, OpKey, &mut [u8]) -> DgramRead
//!         The same for a datagram socket (multishot RECVMSG into a ring of
//!         64 KiB buffers): one datagram and its sender per read, errors
//!         queued in order (the socket goes on after one).
//!     fn quiet_source(&mut self, fd)
//!         The object's transfers all complete through the driver now (a
//!         stream): its readiness poll, which would double their events,
//!         is dropped; it stays registered.
//!     fn release(&mut self, OpKey)
//!         The owner lets go (a closed stream): a receive is cancelled, a
//!         send finishes in the background on a duplicate of the fd.
//!     fn cancel_transfer(&mut self, OpKey)
//!         Cancels either kind (abort). A cancelled operation keeps its
//!         buffer until its own completion is reaped.
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
//! On Linux the backend is chosen at run time, so `sys` is `linux`, a driver
//! that dispatches to `selector` (epoll through mio) or `proactor::uring`
//! (io_uring: readiness through `POLL_ADD`, one `io_uring_enter` per poll).
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
//! target's completion arrives.
//!
//! In this crate: the driver's operation table owns every buffer in flight
//! (the `Vec<u8>` handed to `submit_*`); the loop's streams and transports
//! hold only operation keys. A dropped read future leaves its receive with
//! the stream (the next read gets the bytes, nothing is lost); a dropped
//! stream releases it (cancelled, freed on completion); a closing loop
//! cancels and reaps everything before `close()` returns. Any fd in an
//! operation outlives it: the kernel holds a file reference from submission
//! on, and a send left to finish after its stream closed runs on the
//! operation's own duplicate of the fd.
//!
//! ## wasm32: the host waits, not the loop
//!
//! On `wasm32-unknown-unknown` (`wasm/`) nothing may block, so the `Driver`
//! has `new`, `kind` and `notifier` but no `poll` and no registrations:
//! instead it owns a `Scheduler` through which the loop asks the JS host for
//! its next turn (one microtask per batch, one host timeout for the earliest
//! deadline, a yielding macrotask after a turn that used up its budget), and
//! `Notifier::notify` asks for a turn from a waker. `event_loop/wasm.rs` is
//! the loop's side. Its module doc has the details.
//!
//! ## Windows: the IOCP proactor
//!
//! The same rule, on an I/O completion port: an operation's `OVERLAPPED`,
//! buffers and socket live in a reference-counted op of which the kernel
//! holds one count from submission until `GetQueuedCompletionStatusEx`
//! hands the completion back; a dropped object cancels its reads with
//! `CancelIoEx` (its sends complete, so written bytes still reach the peer),
//! and closing a loop cancels and reaps everything in flight.

use std::fmt;
use std::sync::OnceLock;

use crate::{Error, ErrorKind};

/// What a multishot stream receive had for a reader
/// (`Driver::read_multi`, io_uring only).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum MultiRead {
    /// Bytes copied into the caller's buffer.
    Data(usize),
    /// Nothing yet: a readable event comes with the next data.
    Pending,
    /// The end: 0 for EOF, or a negative errno.
    End(i32),
}

/// What a multishot datagram receive had for a reader
/// (`Driver::read_dgram`, io_uring only).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum DgramRead {
    /// A datagram: its length as copied (cut to the caller's buffer) and
    /// its sender (`None` when that is not an IP address).
    Data(usize, Option<std::net::SocketAddr>),
    /// Nothing yet: a readable event comes with the next datagram.
    Pending,
    /// A receive failed (a negative errno); the socket goes on.
    Failed(i32),
}

/// The loop-level completion calls (`completions`, `submit_*`, `take*`…)
/// for a driver that runs no transfers for the loop: `completions()` is
/// false, so the loop never calls the others (they fail cleanly if it did).
/// io_uring (`linux.rs`) implements them for real; the selector on other
/// Unixes and the Windows driver (whose IOCP sockets complete inside the
/// backend) use this.
#[cfg_attr(any(target_os = "linux", target_arch = "wasm32"), allow(unused_macros))]
macro_rules! no_loop_completions {
    ($driver:ty) => {
        impl $driver {
            pub(crate) fn completions(&self) -> bool {
                false
            }
            pub(crate) fn buffer(&mut self, cap: usize) -> Vec<u8> {
                Vec::with_capacity(cap)
            }
            pub(crate) fn recycle(&mut self, _: Vec<u8>) {}
            pub(crate) fn submit_recv(
                &mut self,
                _: i32,
                _: usize,
                _: Vec<u8>,
                _: bool,
            ) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn submit_send(
                &mut self,
                _: i32,
                _: usize,
                _: Vec<u8>,
                _: bool,
            ) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn submit_send_to(
                &mut self,
                _: i32,
                _: usize,
                _: Vec<u8>,
                _: Option<std::net::SocketAddr>,
            ) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn take(&mut self, _: usize) -> Option<(i32, Vec<u8>)> {
                None
            }
            pub(crate) fn submit_recv_msg(
                &mut self,
                _: i32,
                _: usize,
                _: Vec<u8>,
                _: bool,
            ) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn take_from(
                &mut self,
                _: usize,
            ) -> Option<(i32, Vec<u8>, Option<std::net::SocketAddr>)> {
                None
            }
            pub(crate) fn extend_send(&mut self, _: usize, _: &[u8], _: bool) -> bool {
                false
            }
            pub(crate) fn submit_accept(&mut self, _: i32, _: usize) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn take_accept(
                &mut self,
                _: usize,
            ) -> Option<std::io::Result<(std::net::TcpStream, std::net::SocketAddr)>> {
                None
            }
            pub(crate) fn recv_multishot(&mut self) -> bool {
                false
            }
            pub(crate) fn submit_recv_multi(&mut self, _: i32, _: usize) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn read_multi(
                &mut self,
                _: usize,
                _: &mut [u8],
            ) -> $crate::backend::MultiRead {
                $crate::backend::MultiRead::End(0)
            }
            pub(crate) fn dgram_multishot(&mut self) -> bool {
                false
            }
            pub(crate) fn submit_recv_dgram_multi(
                &mut self,
                _: i32,
                _: usize,
            ) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::Unsupported.into())
            }
            pub(crate) fn read_dgram(
                &mut self,
                _: usize,
                _: &mut [u8],
            ) -> $crate::backend::DgramRead {
                $crate::backend::DgramRead::Pending
            }
            pub(crate) fn quiet_source(&mut self, _: i32) {}
            pub(crate) fn release(&mut self, _: usize) {}
            pub(crate) fn cancel_transfer(&mut self, _: usize) {}
        }
    };
}
#[cfg_attr(
    any(target_os = "linux", target_arch = "wasm32"),
    allow(unused_imports)
)]
pub(crate) use no_loop_completions;

cfg_if::cfg_if! {
    if #[cfg(all(target_arch = "wasm32", target_os = "unknown"))] {
        pub(crate) mod wasm;
        pub(crate) use wasm as sys;
    } else if #[cfg(target_os = "linux")] {
        // Chosen at run time: `linux::Driver` dispatches to either.
        pub(crate) mod selector;
        pub(crate) mod proactor;
        pub(crate) mod linux;
        pub(crate) use linux as sys;
    } else if #[cfg(unix)] {
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
        compile_error!("aioloop supports Unix, Windows and wasm32-unknown-unknown (browsers, Node)");
    }
}

pub(crate) use sys::{Driver, Notifier};

#[cfg(unix)]
pub(crate) mod process;
#[cfg(unix)]
pub(crate) mod signal;

/// Which backend a loop waits in.
///
/// `Auto` picks the platform's default: on Linux the proactor (io_uring)
/// when the kernel allows it, else the selector (the choice is probed once
/// per process, and a fallback is logged once); on Windows the proactor
/// (IOCP), as asyncio; on wasm32 the host-driven backend; elsewhere the
/// selector. The `AIOLOOP_BACKEND` environment variable (`selector`,
/// `proactor`, `auto`), read once per process, overrides `Auto`, so a whole
/// test suite can be forced onto one backend.
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
///
/// // The proactor is io_uring on Linux; where the kernel refuses it, asking
/// // for it explicitly is an error that names the cause.
/// match EventLoop::builder().backend(Backend::Proactor).build() {
///     Ok(lp) => {
///         assert_eq!(lp.backend(), Backend::Proactor);
///         lp.close().unwrap();
///     }
///     Err(e) => assert_eq!(e.kind(), aioloop::ErrorKind::Unsupported),
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The platform's default: the proactor on Linux when io_uring is
    /// usable (falling back to the selector) and on Windows,
    /// [`Wasm`](Backend::Wasm) on wasm32, the selector elsewhere.
    #[default]
    Auto,
    /// Readiness-based: epoll, kqueue or Windows AFD through `mio`.
    Selector,
    /// Completion-based (asyncio's `ProactorEventLoop`): io_uring on Linux,
    /// an I/O completion port (IOCP) on Windows. On Linux readiness
    /// callbacks (`add_reader`) work too, through `POLL_ADD`. Elsewhere a
    /// loop asked for it fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    Proactor,
    // --- wasm32 (issue 6) ---
    /// Driven by the JS host (browsers, Node) on `wasm32-unknown-unknown`:
    /// never blocks; ready work runs in a microtask, timers share one host
    /// `setTimeout`, long bursts yield to the host (see
    /// [`EventLoop::run_once`](crate::EventLoop) and the crate's wasm notes).
    /// The only backend there, and unavailable elsewhere.
    Wasm,
    // --- end wasm32 ---
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Selector => "selector",
            Backend::Proactor => "proactor",
            Backend::Wasm => "wasm",
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
        if cfg!(target_arch = "wasm32") {
            return self.on_wasm32();
        }
        match self {
            Backend::Auto => {
                static CHOICE: OnceLock<Result<Backend, Error>> = OnceLock::new();
                CHOICE
                    .get_or_init(|| {
                        let from_env = std::env::var(BACKEND_ENV).ok();
                        match from_env.as_deref().map(Backend::parse).transpose()? {
                            Some(Backend::Proactor) => {
                                Backend::proactor(format_args!("{BACKEND_ENV}=proactor"))
                            }
                            Some(Backend::Selector) => Ok(Backend::Selector),
                            _ => Ok(sys::auto_backend()),
                        }
                    })
                    .clone()
            }
            Backend::Proactor => Backend::proactor(format_args!("Backend::Proactor")),
            Backend::Wasm => Err(Error::new(
                ErrorKind::Unsupported,
                "the wasm backend exists only on wasm32-unknown-unknown: use Backend::Auto or Backend::Selector here",
            )),
            other => Ok(other),
        }
    }

    /// `Proactor` if the kernel allows it, else an error naming the cause.
    fn proactor(asked: fmt::Arguments<'_>) -> Result<Backend, Error> {
        sys::proactor_support()
            .map(|()| Backend::Proactor)
            .map_err(|cause| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{asked}: the proactor backend cannot run here: {cause}; \
                         use Backend::Selector, or Backend::Auto (which falls back to the selector)"
                    ),
                )
            })
    }
    // --- wasm32 (issue 6) ---
    /// [`resolve`](Backend::resolve) on wasm32, where the host-driven backend
    /// is the only one.
    fn on_wasm32(self) -> Result<Backend, Error> {
        match self {
            Backend::Auto | Backend::Wasm => Ok(Backend::Wasm),
            other => Err(Error::new(
                ErrorKind::Unsupported,
                format!("the {other} backend does not exist on wasm32: use Backend::Auto or Backend::Wasm"),
            )),
        }
    }
    // --- end wasm32 ---

    fn parse(value: &str) -> Result<Backend, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Backend::Auto),
            "selector" => Ok(Backend::Selector),
            "proactor" => Ok(Backend::Proactor),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{BACKEND_ENV}={other:?} names no backend: use `selector`, `proactor` or `auto`"
                ),
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
        assert_eq!(Backend::parse(" Auto ").unwrap(), Backend::Auto);
        assert_eq!(Backend::parse("").unwrap(), Backend::Auto);
        assert_eq!(Backend::parse("PROACTOR").unwrap(), Backend::Proactor);
        let e = Backend::parse("kqueue-please").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("AIOLOOP_BACKEND"));
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn the_wasm_backend_is_refused_off_wasm32() {
        let e = Backend::Wasm.resolve().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("wasm32"));
        assert_eq!(Backend::Wasm.to_string(), "wasm");
    }

    #[test]
    fn explicit_backends_ignore_the_environment() {
        assert_eq!(Backend::Selector.resolve().unwrap(), Backend::Selector);
    }
}
