//! How the loop waits: the backend contract and the one place that picks the
//! backend.
//!
//! Everything that touches the operating system (or, later, the JS host) lives
//! below this module. The event loop above it sees only this contract, which
//! every backend implements with the same names:
//!
//! ```text
//! struct Driver                       owned by one EventLoop, never shared
//!     fn new() -> io::Result<Driver>
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
//! cancel's completion arrives.

use std::fmt;

cfg_if::cfg_if! {
    if #[cfg(any(unix, windows))] {
        pub(crate) mod selector;
        pub(crate) use selector as sys;
    } else {
        compile_error!("aioloop supports Unix and Windows for now; the wasm32 backend is on its way");
    }
}

pub(crate) use sys::{Driver, Notifier};

/// Which backend a loop waits in.
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
    /// The platform's default (the selector on Unix).
    #[default]
    Auto,
    /// Readiness-based: epoll, kqueue or Windows AFD through `mio`.
    Selector,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Selector => "selector",
        })
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
}
