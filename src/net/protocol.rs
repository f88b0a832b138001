//! asyncio's protocol/transport API: callback-driven connections with no task
//! per connection (the fast path).
//!
//! A [`Transport`] owns a socket registered with the loop; every readiness
//! event queues the transport's handler on the loop's ready queue, which reads
//! into one runtime-owned buffer (64 KiB, reused by every connection of the
//! thread) and hands the bytes to [`Protocol::data_received`], and flushes the
//! transport's write buffer when the socket is writable.
//!
//! # Delivery rules
//!
//! - `connection_made` runs before any other method; `connection_lost` runs
//!   exactly once, last, from its own loop callback (never from inside a
//!   transport method), after which the transport drops its reference to
//!   the protocol.
//! - A transport method called from inside a protocol method never re-enters
//!   the protocol: `pause_writing` / `resume_writing` triggered there are
//!   delivered as soon as the running protocol method returns.
//! - A panic in a protocol method goes to the loop's exception handler and
//!   closes the connection (asyncio's fatal error): `connection_lost`
//!   receives the panic as an `ErrorKind::Panicked` error.
//! - The protocol lives in an `Rc<RefCell<P>>`. While user code holds a
//!   borrow of it (across an `.await`), the transport leaves incoming data in
//!   the socket and looks again every millisecond: nothing is lost, but
//!   holding the borrow stalls the connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::backend::sys::net as sys;
use crate::event_loop::handle::Repeating;
use crate::event_loop::source::{Direction, Registration};
use crate::{Error, ErrorKind, EventLoop, ExceptionContext, TimerHandle};

/// How soon a transport whose protocol is borrowed (across an await) looks
/// for data again.
const BORROWED_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// Listen queue length of the servers `create_server` makes (deeper than
/// asyncio's 100: a burst of connects must not wait for the kernel's
/// one-second SYN retry).
const SERVER_BACKLOG: u32 = 1024;

/// Size of the runtime-owned read buffer.
const READ_BUF_SIZE: usize = 64 * 1024;
/// Reads per readiness event before the transport yields to other callbacks.
const READ_BUDGET: usize = 16;
/// Accepts per readiness event before the server yields to other callbacks.
const ACCEPT_BUDGET: usize = 128;
/// Default high-water mark of the write buffer (asyncio's 64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default hard limit factor: the hard limit is this many times the high-water
/// mark unless set with [`Transport::set_write_buffer_hard_limit`].
pub const HARD_LIMIT_FACTOR: usize = 8;
/// How long a server waits before accepting again after an accept error such
/// as EMFILE (asyncio's `ACCEPT_RETRY_DELAY`).
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_secs(1);

thread_local! {
    static READ_BUF: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

fn take_buf() -> Box<[u8]> {
    READ_BUF
        .with(|b| b.take())
        .unwrap_or_else(|| vec![0; READ_BUF_SIZE].into_boxed_slice())
}

fn put_buf(buf: Box<[u8]>) {
    READ_BUF.with(|b| b.set(Some(buf)));
}

fn closed_transport(what: &str) -> Error {
    Error::new(
        ErrorKind::Closed,
        format!("{what} on a closed or closing transport: the connection was closed or lost"),
    )
}

/// Sets a flag for the length of a protocol call (reset even on unwind).
struct Entered<'a>(&'a Cell<bool>, bool);

impl<'a> Entered<'a> {
    fn new(flag: &'a Cell<bool>) -> Entered<'a> {
        let prev = flag.replace(true);
        Entered(flag, prev)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// The protocol side of a transport: the protocol object, the notifications
/// waiting for the running protocol method to return, and the re-entrancy flag.
struct Slot<P: ?Sized> {
    protocol: RefCell<Option<Rc<RefCell<P>>>>,
    pending: RefCell<VecDeque<Note<P>>>,
    busy: Cell<bool>,
}

/// A queued protocol call, or the end of the protocol's life.
enum Note<P: ?Sized> {
    Call(Box<dyn FnOnce(&mut P)>),
    Detach,
}

impl<P: ?Sized + 'static> Slot<P> {
    fn new(protocol: Rc<RefCell<P>>) -> Slot<P> {
        Slot {
            protocol: RefCell::new(Some(protocol)),
            pending: RefCell::new(VecDeque::new()),
            busy: Cell::new(false),
        }
    }

    /// Whether user code holds a borrow of the protocol right now (across an
    /// `.await`): then nothing can be delivered to it yet.
    fn is_borrowed(&self) -> bool {
        self.protocol
            .borrow()
            .as_ref()
            .is_some_and(|p| p.try_borrow_mut().is_err())
    }

    /// Calls `f` on the protocol now (the transport is not inside one).
    /// `None` when there is no protocol any more, or user code holds a
    /// borrow of it (callers check [`is_borrowed`](Slot::is_borrowed)
    /// first). A panic in `f` comes back as `Some(Err(..))`: the caller
    /// reports it and ends the connection, as asyncio's fatal error does.
    fn call<R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<Result<R, Error>> {
        let proto = self.protocol.borrow().clone()?;
        let r = {
            let _in = Entered::new(&self.busy);
            let mut p = proto.try_borrow_mut().ok()?;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *p)))
                .map_err(|e| Error::from_panic("a protocol method", &*e))
        };
        self.drain();
        Some(r)
    }

    /// Queues `f` and runs it now unless a protocol method is running (then it
    /// runs when that method returns) or the protocol is borrowed by the user
    /// (then it runs from a loop callback).
    fn post(self: &Rc<Self>, lp: &EventLoop, f: Box<dyn FnOnce(&mut P)>) {
        self.post_note(lp, Note::Call(f));
    }

    /// Queues `connection_lost` (or its datagram twin) and then the
    /// detachment of the protocol, so nothing is delivered after it.
    fn post_last(self: &Rc<Self>, lp: &EventLoop, f: Box<dyn FnOnce(&mut P)>) {
        self.pending.borrow_mut().push_back(Note::Call(f));
        self.post_note(lp, Note::Detach);
    }

    fn post_note(self: &Rc<Self>, lp: &EventLoop, note: Note<P>) {
        self.pending.borrow_mut().push_back(note);
        if self.busy.get() {
            return;
        }
        let borrowed = self
            .protocol
            .borrow()
            .as_ref()
            .is_some_and(|p| p.try_borrow_mut().is_err());
        if borrowed {
            let me = self.clone();
            let _ = lp.call_soon(move || me.drain());
        } else {
            self.drain();
        }
    }

    fn drain(&self) {
        if self.busy.get() {
            return;
        }
        loop {
            let Some(note) = self.pending.borrow_mut().pop_front() else {
                return;
            };
            let f = match note {
                Note::Call(f) => f,
                Note::Detach => {
                    self.detach();
                    return;
                }
            };
            let Some(proto) = self.protocol.borrow().clone() else {
                self.pending.borrow_mut().clear();
                return;
            };
            let _in = Entered::new(&self.busy);
            f(&mut proto.borrow_mut());
        }
    }

    fn detach(&self) {
        self.protocol.borrow_mut().take();
        self.pending.borrow_mut().clear();
    }
}

// ---------------------------------------------------------------------------
// Stream protocols
// ---------------------------------------------------------------------------

/// The callbacks of a stream connection (asyncio's `asyncio.Protocol`).
///
/// Every method has a default that does nothing (`eof_received` returns
/// `false`, which closes the transport), so implement only what you need. The
/// loop calls them, by these rules:
///
/// - `connection_made` runs before any other method; `connection_lost` runs
///   exactly once, last, from its own loop callback (never from inside a
///   transport method), after which the transport drops its reference to
///   the protocol.
/// - A transport method called from inside a protocol method never re-enters
///   the protocol: `pause_writing` / `resume_writing` triggered there are
///   delivered as soon as the running protocol method returns.
/// - A panic in a protocol method goes to the loop's exception handler and
///   closes the connection (asyncio's fatal error): `connection_lost`
///   receives the panic as an `ErrorKind::Panicked` error.
/// - The protocol lives in an `Rc<RefCell<P>>`. While user code holds a
///   borrow of it (across an `.await`), incoming data waits in the socket:
///   nothing is lost, but the connection stalls until the borrow ends.
///
/// # Examples
///
/// An echo protocol:
///
/// ```
/// use aioloop::net::{Protocol, Transport};
///
/// #[derive(Default)]
/// struct Echo(Option<Transport>);
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.0 = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         let _ = self.0.as_ref().unwrap().write(data);
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// The connection is up; keep a clone of `transport` to write and close.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Some bytes arrived. `data` borrows the runtime's read buffer: copy what
    /// you keep.
    fn data_received(&mut self, data: &[u8]) {
        let _ = data;
    }

    /// The peer closed its write side. Return `true` to keep the transport
    /// open for writing (then close it yourself), `false` to close it.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed: `None` after `close`/`abort` or a normal
    /// end, `Some(err)` when it failed (reset by peer, write buffer over its
    /// hard limit…). Called once, last.
    fn connection_lost(&mut self, err: Option<Error>) {
        let _ = err;
    }

    /// The write buffer went over the high-water mark: stop writing until
    /// [`resume_writing`](Protocol::resume_writing).
    fn pause_writing(&mut self) {}

    /// The write buffer drained to the low-water mark: writing may go on.
    fn resume_writing(&mut self) {}
}

struct WriteState {
    buf: Vec<u8>,
    pos: usize,
    closing: bool,
    /// `connection_lost` is scheduled; the socket left the loop.
    finished: bool,
    reading: bool,
    read_eof: bool,
    eof_requested: bool,
    eof_sent: bool,
    paused: bool,
    high: usize,
    low: usize,
    hard: Option<usize>,
}

impl WriteState {
    fn size(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn hard_limit(&self) -> usize {
        self.hard
            .unwrap_or(self.high.saturating_mul(HARD_LIMIT_FACTOR))
    }
}

struct Conn {
    lp: EventLoop,
    io: RefCell<sys::TcpStream>,
    reg: RefCell<Option<Registration>>,
    st: RefCell<WriteState>,
    slot: Rc<Slot<dyn Protocol>>,
    server: Option<Rc<ServerShared>>,
    /// This connection's key in its server's `conns`.
    server_key: Cell<usize>,
    peer: SocketAddr,
}

impl Conn {
    /// Wraps a connected socket, registers it, and calls `connection_made`.
    fn start(
        lp: &EventLoop,
        io: sys::TcpStream,
        peer: SocketAddr,
        protocol: Rc<RefCell<dyn Protocol>>,
        server: Option<Rc<ServerShared>>,
        location: &'static Location<'static>,
    ) -> Result<Transport, Error> {
        let _ = io.set_nodelay(true); // as asyncio does for every TCP transport
        let local = io
            .local_addr()
            .map_err(|e| Error::io("reading a TCP transport's local address", e))?;
        let conn = Rc::new(Conn {
            lp: lp.clone(),
            io: RefCell::new(io),
            reg: RefCell::new(None),
            st: RefCell::new(WriteState {
                buf: Vec::new(),
                pos: 0,
                closing: false,
                finished: false,
                reading: true,
                read_eof: false,
                eof_requested: false,
                eof_sent: false,
                paused: false,
                high: DEFAULT_HIGH_WATER,
                low: DEFAULT_HIGH_WATER / 4,
                hard: None,
            }),
            slot: Rc::new(Slot::new(protocol)),
            server,
            server_key: Cell::new(usize::MAX),
            peer,
        });
        let c = conn.clone();
        let handler = Repeating::new(
            Box::new(move || c.on_event()),
            crate::context::entered_task_context(),
            location,
        );
        let reg = Registration::with_handler(lp, &mut *conn.io.borrow_mut(), handler)?;
        *conn.reg.borrow_mut() = Some(reg);
        if let Some(s) = &conn.server {
            s.active.set(s.active.get() + 1);
            let key = s.conns.borrow_mut().insert(Rc::downgrade(&conn));
            conn.server_key.set(key);
        }
        let transport = Transport {
            conn: Rc::downgrade(&conn),
            peer,
            local,
        };
        if let Some(Err(e)) = conn.slot.call(|p| p.connection_made(&transport)) {
            conn.protocol_panicked(e);
        }
        Ok(transport)
    }

    fn ready(&self, dir: Direction) -> bool {
        self.reg.borrow().as_ref().is_some_and(|r| r.is_ready(dir))
    }

    fn clear_ready(&self, dir: Direction) {
        if let Some(r) = self.reg.borrow().as_ref() {
            r.clear_ready(dir);
        }
    }

    /// A short transfer in `dir`: see [`Registration::drained`].
    fn drained(&self, dir: Direction) {
        if let Some(r) = self.reg.borrow().as_ref() {
            r.drained(dir);
        }
    }

    fn on_event(self: &Rc<Self>) {
        if self.st.borrow().finished {
            return;
        }
        if self.st.borrow().size() > 0 && self.ready(Direction::Write) {
            self.flush();
        } else if let Some(e) = self.failed_send() {
            // Before the read side: after a reset the kernel reports the
            // error once, to whichever call comes first; when that was one
            // of our sends, a receive completing beside it sees only EOF.
            self.fail(Error::io(format_args!("writing to {}", self.peer), e));
            return;
        }
        self.read_some();
    }

    /// The error of a send a completion backend finished in the
    /// background (a readiness backend reports it from `write` at once).
    fn failed_send(&self) -> Option<io::Error> {
        match self.reg.borrow().as_ref()?.flush_sends() {
            Err(e) if e.raw_os_error().is_some() => Some(e),
            _ => None,
        }
    }

    fn read_some(self: &Rc<Self>) {
        for _ in 0..READ_BUDGET {
            {
                let st = self.st.borrow();
                if st.closing || !st.reading || st.read_eof {
                    return;
                }
            }
            if !self.ready(Direction::Read) {
                return;
            }
            if self.slot.is_borrowed() {
                // The protocol is borrowed across an await: leave the data in
                // the socket and look again shortly (nothing is lost).
                let me = self.clone();
                let _ = self.lp.call_later(BORROWED_RETRY, move || me.on_event());
                return;
            }
            let mut buf = take_buf();
            // A completion backend hands out what its receive (into a buffer
            // it owns) brought in; a readiness backend reads the socket.
            let res = match self.reg.borrow().as_ref() {
                Some(reg) => reg.read_with(&mut buf, |b| (&*self.io.borrow()).read(b)),
                None => return,
            };
            match res {
                Ok(0) => {
                    put_buf(buf);
                    self.st.borrow_mut().read_eof = true;
                    let keep = match self.slot.call(|p| p.eof_received()) {
                        Some(Ok(keep)) => keep,
                        Some(Err(e)) => {
                            self.protocol_panicked(e);
                            return;
                        }
                        None => false,
                    };
                    if !keep {
                        self.close();
                    }
                    return;
                }
                Ok(n) => {
                    // A short read drained the socket: forget the readiness
                    // now instead of paying for an EAGAIN. A FIN that came
                    // with this data keeps the direction ready (the
                    // registration's sticky read-closed bit), so the loop
                    // goes on and reads the EOF.
                    if n < buf.len() {
                        self.drained(Direction::Read);
                    }
                    let r = self.slot.call(|p| p.data_received(&buf[..n]));
                    put_buf(buf);
                    if let Some(Err(e)) = r {
                        self.protocol_panicked(e);
                        return;
                    }
                }
                Err(e) => {
                    put_buf(buf);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            self.clear_ready(Direction::Read);
                            return;
                        }
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            self.fail(Error::io(format_args!("reading from {}", self.peer), e));
                            return;
                        }
                    }
                }
            }
        }
        // Budget spent with data left: let other callbacks run first.
        let me = self.clone();
        let _ = self.lp.call_soon(move || me.on_event());
    }

    fn write(self: &Rc<Self>, mut data: &[u8]) -> Result<(), Error> {
        {
            let st = self.st.borrow();
            if st.closing {
                return Err(closed_transport("write()"));
            }
            if st.eof_requested {
                return Err(Error::new(
                    ErrorKind::Closed,
                    "write() after write_eof(): the write side of the transport is shut down",
                ));
            }
            if data.is_empty() {
                return Ok(());
            }
            if st.paused && st.size() + data.len() > st.hard_limit() {
                let err = Error::io(
                    format_args!(
                        "write buffer of the transport to {} would exceed its hard limit of {} \
                         bytes ({} buffered, {} more written after pause_writing was signalled): \
                         the peer is not reading; the connection was aborted",
                        self.peer,
                        st.hard_limit(),
                        st.size(),
                        data.len()
                    ),
                    io::Error::new(io::ErrorKind::OutOfMemory, "write buffer full"),
                );
                drop(st);
                self.fail(err.clone());
                return Err(err);
            }
        }
        if self.st.borrow().size() == 0 && self.ready(Direction::Write) {
            loop {
                let res = self.send(data);
                match res {
                    Ok(n) => {
                        data = &data[n..];
                        if data.is_empty() {
                            return Ok(());
                        }
                        // A short write filled the socket's buffer.
                        self.drained(Direction::Write);
                        if !self.ready(Direction::Write) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.clear_ready(Direction::Write);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Reported through connection_lost, as asyncio does.
                        self.fail(Error::io(format_args!("writing to {}", self.peer), e));
                        return Ok(());
                    }
                }
            }
        }
        let pause = {
            let mut st = self.st.borrow_mut();
            st.buf.extend_from_slice(data);
            let pause = !st.paused && st.size() > st.high;
            st.paused |= pause;
            pause
        };
        if pause {
            self.slot
                .post(&self.lp, Box::new(|p: &mut dyn Protocol| p.pause_writing()));
        }
        Ok(())
    }

    /// Writes the buffer while the socket takes it; finishes a pending
    /// `write_eof` / `close` once it is empty.
    fn flush(self: &Rc<Self>) {
        loop {
            let res = {
                let st = self.st.borrow();
                if st.size() == 0 {
                    break;
                }
                self.send(&st.buf[st.pos..])
            };
            match res {
                Ok(n) => {
                    let left = {
                        let mut st = self.st.borrow_mut();
                        st.pos += n;
                        st.size()
                    };
                    if left > 0 {
                        // A short write filled the socket's buffer.
                        self.drained(Direction::Write);
                        if !self.ready(Direction::Write) {
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.clear_ready(Direction::Write);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(Error::io(format_args!("writing to {}", self.peer), e));
                    return;
                }
            }
        }
        let (resume, empty, eof, closing) = {
            let mut st = self.st.borrow_mut();
            if st.pos == st.buf.len() {
                st.buf.clear();
                st.pos = 0;
            } else if st.pos > READ_BUF_SIZE && st.pos > st.buf.len() / 2 {
                let pos = st.pos;
                st.buf.drain(..pos);
                st.pos = 0;
            }
            let resume = st.paused && st.size() <= st.low;
            if resume {
                st.paused = false;
            }
            let empty = st.size() == 0;
            (
                resume,
                empty,
                empty && st.eof_requested && !st.eof_sent,
                st.closing,
            )
        };
        if eof {
            self.shutdown_write();
        }
        if empty && closing {
            self.finish(None);
        }
        if resume && !closing {
            self.slot.post(
                &self.lp,
                Box::new(|p: &mut dyn Protocol| p.resume_writing()),
            );
        }
    }

    /// One non-blocking write: to the socket (readiness backend) or into
    /// the backend's own send buffer (completion backend).
    fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self.reg.borrow().as_ref() {
            Some(reg) => reg.write_with(data, |b| (&*self.io.borrow()).write(b)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn shutdown_write(&self) {
        self.st.borrow_mut().eof_sent = true;
        let io = self.io.borrow();
        let _ = match self.reg.borrow().as_ref() {
            // After the sends a completion backend still has queued.
            Some(reg) => reg.shutdown_stream(Shutdown::Write, |h| io.shutdown(h)),
            None => io.shutdown(Shutdown::Write),
        };
    }

    fn close(self: &Rc<Self>) {
        let empty = {
            let mut st = self.st.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            st.reading = false;
            st.size() == 0
        };
        if empty {
            self.finish(None);
        }
    }

    fn abort(self: &Rc<Self>) {
        {
            let mut st = self.st.borrow_mut();
            st.closing = true;
            st.buf = Vec::new();
            st.pos = 0;
        }
        self.leave(true);
        self.finish(None);
    }

    /// A protocol method panicked: tell the exception handler, then close
    /// the connection with that error (asyncio's `_fatal_error`).
    fn protocol_panicked(self: &Rc<Self>, err: Error) {
        self.lp.call_exception_handler(
            &ExceptionContext::new(format!(
                "Fatal error: a protocol method panicked; the connection to {} is closed",
                self.peer
            ))
            .with_error(err.clone()),
        );
        self.fail(err);
    }

    /// A socket error or a broken rule: drop the buffer, close, report `err`.
    fn fail(self: &Rc<Self>, err: Error) {
        {
            let mut st = self.st.borrow_mut();
            st.closing = true;
            st.buf = Vec::new();
            st.pos = 0;
        }
        self.leave(true);
        self.finish(Some(err));
    }

    /// Takes the socket out of the loop; `discard` drops the writes a
    /// completion backend still has queued (abort, failure) instead of
    /// letting them go out.
    fn leave(&self, discard: bool) {
        if let Some(reg) = self.reg.borrow_mut().take() {
            if discard {
                reg.deregister_discarding(&mut *self.io.borrow_mut());
            } else {
                reg.deregister(&mut *self.io.borrow_mut());
            }
        }
    }

    /// Leaves the loop and schedules `connection_lost`; the socket closes
    /// when that has run (the last reference goes), as in asyncio.
    fn finish(self: &Rc<Self>, err: Option<Error>) {
        {
            let mut st = self.st.borrow_mut();
            if st.finished {
                return;
            }
            st.finished = true;
            st.reading = false;
        }
        self.leave(false);
        if let Some(s) = &self.server {
            s.conns.borrow_mut().try_remove(self.server_key.get());
        }
        let me = self.clone();
        let _ = self.lp.call_soon(move || {
            me.slot.post_last(
                &me.lp,
                Box::new(move |p: &mut dyn Protocol| p.connection_lost(err)),
            );
            if let Some(s) = &me.server {
                s.active.set(s.active.get() - 1);
                s.wake();
            }
        });
    }
}

/// The writing and control side of a stream connection (asyncio's
/// `asyncio.Transport`): a cheap handle (`Clone`, not `Send`) to one
/// connection.
///
/// Every method is safe to call after the connection is gone: writes then
/// return [`ErrorKind::Closed`], queries report a closed transport.
///
/// # Flow control
///
/// `write` never blocks: what the socket does not take at once is buffered and
/// sent when it is writable. When the buffer goes above the high-water mark
/// (default 64 KiB) the protocol's `pause_writing` is called; when it drains to
/// the low-water mark (default 16 KiB) `resume_writing` is. A protocol that
/// ignores `pause_writing` may go on writing up to the **hard limit** (default
/// 8 × the high-water mark, see
/// [`set_write_buffer_hard_limit`](Transport::set_write_buffer_hard_limit)): a
/// write that would take the buffer above it while writing is paused aborts the
/// connection and fails with [`ErrorKind::Io`] (the source is
/// `io::ErrorKind::OutOfMemory`, the message says the peer is not reading), and
/// `connection_lost` gets the same error. A single write while not paused is
/// always accepted, however large.
///
/// # Examples
///
/// ```
/// use aioloop::net::{Protocol, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(b"hello").unwrap();
///         t.close(); // sent first, then closed
///     }
/// }
///
/// aioloop::run(async {
///     let lp = aioloop::get_running_loop()?;
///     let server = lp.create_server(|| Hello, "127.0.0.1", 0).await?;
///     let addr = server.sockets()[0];
///     let mut s = aioloop::net::TcpStream::connect(addr).await?;
///     let mut got = Vec::new();
///     futures::io::AsyncReadExt::read_to_end(&mut s, &mut got).await?;
///     assert_eq!(got, b"hello");
///     server.close();
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Transport {
    conn: Weak<Conn>,
    peer: SocketAddr,
    local: SocketAddr,
}

impl Transport {
    fn conn(&self) -> Option<Rc<Conn>> {
        self.conn.upgrade()
    }

    /// Sends `data`: what the socket does not take now is buffered and sent
    /// in order as the socket becomes writable.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] after `close`, `abort`, `write_eof` or once the
    /// connection is lost; [`ErrorKind::Io`] when the write would take the
    /// buffer above the hard limit while writing is paused (the connection is
    /// then aborted; see [Flow control](Transport#flow-control)). A socket
    /// error found while writing is reported to `connection_lost`, not here.
    ///
    /// # Examples
    ///
    /// See [`Transport`].
    pub fn write(&self, data: &[u8]) -> Result<(), Error> {
        match self.conn() {
            Some(c) => c.write(data),
            None => Err(closed_transport("write()")),
        }
    }

    /// Writes each buffer in turn.
    ///
    /// # Errors
    ///
    /// As [`write`](Transport::write); stops at the first error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct P;
    /// impl Protocol for P {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.writelines([&b"a"[..], b"b"]).unwrap();
    ///     }
    /// }
    /// ```
    pub fn writelines<'a>(&self, data: impl IntoIterator<Item = &'a [u8]>) -> Result<(), Error> {
        data.into_iter().try_for_each(|d| self.write(d))
    }

    /// Shuts the write side down once the buffer is sent (the peer reads
    /// EOF); reading goes on.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] if the transport is closing or gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct Once;
    /// impl Protocol for Once {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         assert!(t.can_write_eof());
    ///         t.write(b"request").unwrap();
    ///         t.write_eof().unwrap();
    ///     }
    /// }
    /// ```
    pub fn write_eof(&self) -> Result<(), Error> {
        let c = self.conn().ok_or_else(|| closed_transport("write_eof()"))?;
        let now = {
            let mut st = c.st.borrow_mut();
            if st.closing {
                return Err(closed_transport("write_eof()"));
            }
            if st.eof_requested {
                return Ok(());
            }
            st.eof_requested = true;
            st.size() == 0
        };
        if now {
            c.shutdown_write();
        }
        Ok(())
    }

    /// Whether [`write_eof`](Transport::write_eof) is supported: always
    /// `true` for TCP.
    ///
    /// # Examples
    ///
    /// See [`write_eof`](Transport::write_eof).
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Closes the transport: stops reading, sends everything buffered, then
    /// closes the socket; `connection_lost(None)` follows. Idempotent.
    ///
    /// # Examples
    ///
    /// See [`Transport`].
    pub fn close(&self) {
        if let Some(c) = self.conn() {
            c.close();
        }
    }

    /// Closes the socket at once, dropping anything buffered;
    /// `connection_lost(None)` follows.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct Rude;
    /// impl Protocol for Rude {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.abort();
    ///         assert!(t.is_closing());
    ///     }
    /// }
    /// ```
    pub fn abort(&self) {
        if let Some(c) = self.conn() {
            c.abort();
        }
    }

    /// Whether the transport is closing or closed.
    ///
    /// # Examples
    ///
    /// See [`abort`](Transport::abort).
    pub fn is_closing(&self) -> bool {
        self.conn().is_none_or(|c| c.st.borrow().closing)
    }

    /// Stops calling `data_received` until
    /// [`resume_reading`](Transport::resume_reading); the kernel buffers
    /// (and TCP flow control slows the peer). Does nothing if closing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct Lazy;
    /// impl Protocol for Lazy {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.pause_reading();
    ///         assert!(!t.is_reading());
    ///         t.resume_reading();
    ///         assert!(t.is_reading());
    ///     }
    /// }
    /// ```
    pub fn pause_reading(&self) {
        if let Some(c) = self.conn() {
            let mut st = c.st.borrow_mut();
            if !st.closing {
                st.reading = false;
            }
        }
    }

    /// Starts calling `data_received` again (bytes that arrived meanwhile are
    /// delivered from the next loop iteration).
    ///
    /// # Examples
    ///
    /// See [`pause_reading`](Transport::pause_reading).
    pub fn resume_reading(&self) {
        if let Some(c) = self.conn() {
            {
                let mut st = c.st.borrow_mut();
                if st.closing || st.reading {
                    return;
                }
                st.reading = true;
            }
            let me = c.clone();
            let _ = c.lp.call_soon(move || me.on_event());
        }
    }

    /// Whether the transport delivers incoming data.
    ///
    /// # Examples
    ///
    /// See [`pause_reading`](Transport::pause_reading).
    pub fn is_reading(&self) -> bool {
        self.conn().is_some_and(|c| {
            let st = c.st.borrow();
            st.reading && !st.closing
        })
    }

    /// The peer's address (`get_extra_info("peername")`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct Log;
    /// impl Protocol for Log {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         println!("{} -> {}", t.peername(), t.sockname());
    ///     }
    /// }
    /// ```
    pub fn peername(&self) -> SocketAddr {
        self.peer
    }

    /// The local address (`get_extra_info("sockname")`).
    ///
    /// # Examples
    ///
    /// See [`peername`](Transport::peername).
    pub fn sockname(&self) -> SocketAddr {
        self.local
    }

    /// Both addresses at once (asyncio's `get_extra_info`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct Log;
    /// impl Protocol for Log {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         let info = t.get_extra_info();
    ///         assert_eq!(info.peername, t.peername());
    ///     }
    /// }
    /// ```
    pub fn get_extra_info(&self) -> ExtraInfo {
        ExtraInfo {
            peername: self.peer,
            sockname: self.local,
        }
    }

    /// Bytes buffered and not yet taken by the socket (0 once gone).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct P;
    /// impl Protocol for P {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         assert_eq!(t.get_write_buffer_size(), 0);
    ///     }
    /// }
    /// ```
    pub fn get_write_buffer_size(&self) -> usize {
        self.conn().map_or(0, |c| c.st.borrow().size())
    }

    /// Sets the water marks that drive `pause_writing` / `resume_writing`.
    /// As asyncio: `None` for `high` means 64 KiB, or 4 × `low` if `low` is
    /// given; `None` for `low` means `high / 4`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `low > high`; [`ErrorKind::Closed`] if
    /// the transport is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct P;
    /// impl Protocol for P {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.set_write_buffer_limits(Some(1024), None).unwrap();
    ///         assert_eq!(t.get_write_buffer_limits(), (256, 1024));
    ///     }
    /// }
    /// ```
    pub fn set_write_buffer_limits(
        &self,
        high: Option<usize>,
        low: Option<usize>,
    ) -> Result<(), Error> {
        let c = self
            .conn()
            .ok_or_else(|| closed_transport("set_write_buffer_limits()"))?;
        let (high, low) = water_marks(high, low)?;
        let pause = {
            let mut st = c.st.borrow_mut();
            st.high = high;
            st.low = low;
            let pause = !st.paused && !st.closing && st.size() > high;
            st.paused |= pause;
            pause
        };
        if pause {
            c.slot
                .post(&c.lp, Box::new(|p: &mut dyn Protocol| p.pause_writing()));
        }
        Ok(())
    }

    /// The water marks as `(low, high)` (asyncio's order).
    ///
    /// # Examples
    ///
    /// See [`set_write_buffer_limits`](Transport::set_write_buffer_limits).
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.conn().map_or((0, 0), |c| {
            let st = c.st.borrow();
            (st.low, st.high)
        })
    }

    /// Sets the hard limit of the write buffer (default: 8 × the high-water
    /// mark, following it when the marks change). See
    /// [Flow control](Transport#flow-control).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `limit` is below the high-water mark;
    /// [`ErrorKind::Closed`] if the transport is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{Protocol, Transport};
    /// struct P;
    /// impl Protocol for P {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.set_write_buffer_hard_limit(1 << 20).unwrap();
    ///         assert!(t.set_write_buffer_hard_limit(1).is_err());
    ///     }
    /// }
    /// ```
    pub fn set_write_buffer_hard_limit(&self, limit: usize) -> Result<(), Error> {
        let c = self
            .conn()
            .ok_or_else(|| closed_transport("set_write_buffer_hard_limit()"))?;
        let mut st = c.st.borrow_mut();
        if limit < st.high {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "write buffer hard limit ({limit}) must be >= the high-water mark ({})",
                    st.high
                ),
            ));
        }
        st.hard = Some(limit);
        Ok(())
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("peername", &self.peer)
            .field("sockname", &self.local)
            .field("closing", &self.is_closing())
            .field("write_buffer_size", &self.get_write_buffer_size())
            .finish()
    }
}

/// A transport's addresses (asyncio's `get_extra_info("peername")` /
/// `("sockname")`).
///
/// # Examples
///
/// See [`Transport::get_extra_info`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtraInfo {
    /// The peer's address.
    pub peername: SocketAddr,
    /// The local address.
    pub sockname: SocketAddr,
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

type Factory = Box<dyn FnMut() -> Rc<RefCell<dyn Protocol>>>;

struct ServerShared {
    lp: EventLoop,
    listeners: RefCell<Vec<Weak<Listener>>>,
    /// Bound and listening sockets not yet accepting (`start_serving`
    /// false): held here, not by a listener, so that dropping every handle
    /// of a server that never started closes them.
    unstarted: RefCell<Vec<(sys::TcpListener, SocketAddr)>>,
    addrs: Vec<SocketAddr>,
    closed: Cell<bool>,
    location: &'static Location<'static>,
    active: Cell<usize>,
    /// The connections it accepted that have not finished, by slab key.
    conns: RefCell<slab::Slab<Weak<Conn>>>,
    waiters: RefCell<Vec<Waker>>,
    factory: RefCell<Factory>,
}

impl ServerShared {
    /// Accepting: started (no socket left unstarted) and not closed.
    fn serving(&self) -> bool {
        !self.closed.get() && self.unstarted.borrow().is_empty()
    }

    fn wake(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn wait(&self, waker: &Waker) {
        let mut w = self.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(waker)) {
            w.push(waker.clone());
        }
    }
}

struct Listener {
    /// `None` once the server closed: asyncio's `Server.close()` closes the
    /// listening sockets at once (new connects are refused), not when the
    /// last reference to the listener goes away.
    io: RefCell<Option<sys::TcpListener>>,
    reg: RefCell<Option<Registration>>,
    retry: RefCell<Option<TimerHandle>>,
    server: Rc<ServerShared>,
    addr: SocketAddr,
    location: &'static Location<'static>,
}

impl Listener {
    /// Registers a listening socket with the server's loop: it accepts from
    /// now on.
    fn start(
        server: &Rc<ServerShared>,
        io: sys::TcpListener,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        let l = Rc::new(Listener {
            io: RefCell::new(Some(io)),
            reg: RefCell::new(None),
            retry: RefCell::new(None),
            server: server.clone(),
            addr,
            location: server.location,
        });
        let h = l.clone();
        let handler = Repeating::new(
            Box::new(move || h.on_event()),
            crate::context::entered_task_context(),
            server.location,
        );
        let reg = {
            let mut io = l.io.borrow_mut();
            let io = io.as_mut().expect("a new listener has its socket");
            Registration::with_handler(&server.lp, io, handler)?
        };
        *l.reg.borrow_mut() = Some(reg);
        server.listeners.borrow_mut().push(Rc::downgrade(&l));
        Ok(())
    }

    fn on_event(self: &Rc<Self>) {
        if self.retry.borrow().is_some() || !self.server.serving() {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let ready = self
                .reg
                .borrow()
                .as_ref()
                .is_some_and(|r| r.is_ready(Direction::Read));
            if !ready {
                return;
            }
            let res = match self.io.borrow().as_ref() {
                Some(io) => io.accept(),
                None => return,
            };
            match res {
                Ok((io, peer)) => self.spawn(io, peer),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        if let Some(r) = self.reg.borrow().as_ref() {
                            r.clear_ready(Direction::Read);
                        }
                        return;
                    }
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                    _ => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM…: keep serving, try
                        // again later (asyncio's ACCEPT_RETRY_DELAY).
                        let lp = &self.server.lp;
                        lp.call_exception_handler(
                            &ExceptionContext::new(format!(
                                "socket.accept() out of system resource on {}: the server \
                                 keeps serving and accepts again in {} s",
                                self.addr,
                                ACCEPT_RETRY_DELAY.as_secs_f64()
                            ))
                            .with_error(Error::io(
                                format_args!("accepting a connection on {}", self.addr),
                                e,
                            )),
                        );
                        let me = self.clone();
                        if let Ok(h) = lp.call_later(ACCEPT_RETRY_DELAY, move || {
                            me.retry.borrow_mut().take();
                            me.on_event();
                        }) {
                            *self.retry.borrow_mut() = Some(h);
                        }
                        return;
                    }
                },
            }
        }
        let me = self.clone();
        let _ = self.server.lp.call_soon(move || me.on_event());
    }

    fn spawn(&self, io: sys::TcpStream, peer: SocketAddr) {
        let protocol = (self.server.factory.borrow_mut())();
        if let Err(e) = Conn::start(
            &self.server.lp,
            io,
            peer,
            protocol,
            Some(self.server.clone()),
            self.location,
        ) {
            self.server.lp.call_exception_handler(
                &ExceptionContext::new(format!("could not set up a connection from {peer}"))
                    .with_error(e),
            );
        }
    }

    fn stop(&self) {
        if let Some(h) = self.retry.borrow_mut().take() {
            h.cancel();
        }
        let io = self.io.borrow_mut().take();
        if let (Some(reg), Some(mut io)) = (self.reg.borrow_mut().take(), io) {
            reg.deregister(&mut io);
        }
    }
}

/// A listening server made by [`EventLoop::create_server`] (asyncio's
/// `Server`): it accepts in a loop callback and gives each connection a fresh
/// protocol from the factory; no task per connection.
///
/// Dropping the handle does not stop the server: call [`close`](Server::close).
///
/// # Examples
///
/// ```
/// use aioloop::net::Protocol;
///
/// struct Nop;
/// impl Protocol for Nop {}
///
/// aioloop::run(async {
///     let lp = aioloop::get_running_loop()?;
///     let server = lp.create_server(|| Nop, "127.0.0.1", 0).await?;
///     assert!(server.is_serving());
///     assert_ne!(server.sockets()[0].port(), 0);
///     server.close();
///     server.wait_closed().await;
///     assert!(!server.is_serving());
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Server {
    shared: Rc<ServerShared>,
}

impl Server {
    /// Stops listening (the sockets close); open connections go on. Idempotent.
    ///
    /// # Examples
    ///
    /// See [`Server`].
    pub fn close(&self) {
        if self.shared.closed.replace(true) {
            return;
        }
        self.shared.unstarted.borrow_mut().clear();
        for l in self.shared.listeners.borrow_mut().drain(..) {
            if let Some(l) = l.upgrade() {
                l.stop();
            }
        }
        self.shared.wake();
    }

    /// Starts accepting connections on a server made with
    /// [`ServerOptions::start_serving`]`(false)` (asyncio's
    /// `Server.start_serving`). Does nothing on a server that already
    /// serves.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] when the server or its loop is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::net::{Protocol, ServerOptions};
    ///
    /// struct Nop;
    /// impl Protocol for Nop {}
    ///
    /// aioloop::run(async {
    ///     let lp = aioloop::get_running_loop()?;
    ///     let opts = ServerOptions::new().start_serving(false);
    ///     let server = lp.create_server_with(|| Nop, "127.0.0.1", 0, opts).await?;
    ///     // Bound and listening (connects queue up), not accepting yet.
    ///     assert!(!server.is_serving());
    ///     assert_eq!(server.sockets().len(), 1);
    ///     server.start_serving()?;
    ///     assert!(server.is_serving());
    ///     server.close();
    ///     assert!(server.start_serving().is_err());
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    pub fn start_serving(&self) -> Result<(), Error> {
        let s = &self.shared;
        if s.closed.get() {
            return Err(Error::new(
                ErrorKind::Closed,
                "start_serving() on a closed server: make a new one with create_server",
            ));
        }
        let ios = std::mem::take(&mut *s.unstarted.borrow_mut());
        if ios.is_empty() {
            return Ok(());
        }
        for (io, addr) in ios {
            if let Err(e) = Listener::start(s, io, addr) {
                self.close();
                return Err(e);
            }
        }
        s.wake();
        Ok(())
    }

    /// Closes every connection the server accepted, each after its buffered
    /// data is sent (asyncio 3.13's `close_clients`): each protocol gets
    /// `connection_lost(None)`. Connections accepted later are not
    /// affected: call [`close`](Server::close) first to stop accepting.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::net::Protocol;
    ///
    /// struct Nop;
    /// impl Protocol for Nop {}
    ///
    /// aioloop::run(async {
    ///     let lp = aioloop::get_running_loop()?;
    ///     let server = lp.create_server(|| Nop, "127.0.0.1", 0).await?;
    ///     let port = server.sockets()[0].port();
    ///     let (_t, _p) = lp.create_connection(|| Nop, "127.0.0.1", port).await?;
    ///     aioloop::sleep(std::time::Duration::from_millis(20)).await; // accepted
    ///     server.close();
    ///     server.close_clients();
    ///     server.wait_closed().await; // returns: no connection is left
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    pub fn close_clients(&self) {
        for c in self.clients() {
            c.close();
        }
    }

    /// Aborts every connection the server accepted at once, dropping their
    /// unsent data (asyncio 3.13's `abort_clients`).
    ///
    /// # Examples
    ///
    /// As [`close_clients`](Server::close_clients), with `abort_clients()`.
    pub fn abort_clients(&self) {
        for c in self.clients() {
            c.abort();
        }
    }

    /// The live connections, collected first: closing one edits the table.
    fn clients(&self) -> Vec<Rc<Conn>> {
        self.shared
            .conns
            .borrow()
            .iter()
            .filter_map(|(_, c)| c.upgrade())
            .collect()
    }

    /// Waits until the server is closed and every connection it accepted is
    /// closed (asyncio 3.12's rule). Returns at once if both hold.
    ///
    /// # Examples
    ///
    /// See [`Server`].
    pub async fn wait_closed(&self) {
        poll_fn(|cx| {
            let s = &self.shared;
            if s.closed.get() && s.active.get() == 0 {
                Poll::Ready(())
            } else {
                s.wait(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Serves until [`close`](Server::close) is called: starts serving if
    /// the server does not yet (see [`start_serving`](Server::start_serving);
    /// a failure to start goes to the loop's exception handler and this
    /// returns), then waits. Returns at once on a closed server. Drop the
    /// future to stop waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::Protocol;
    /// # struct Nop;
    /// # impl Protocol for Nop {}
    /// aioloop::run(async {
    ///     let lp = aioloop::get_running_loop().unwrap();
    ///     let server = lp.create_server(|| Nop, "127.0.0.1", 0).await.unwrap();
    ///     let s = server.clone();
    ///     lp.call_later(std::time::Duration::from_millis(10), move || s.close()).unwrap();
    ///     server.serve_forever().await;
    /// })
    /// .unwrap();
    /// ```
    pub async fn serve_forever(&self) {
        if self.shared.closed.get() {
            return;
        }
        // (A failed start closes the server: report it, then return.)
        if let Err(e) = self.start_serving() {
            self.shared.lp.call_exception_handler(
                &ExceptionContext::new("serve_forever() could not start the server").with_error(e),
            );
            return;
        }
        poll_fn(|cx| {
            if !self.shared.closed.get() {
                self.shared.wait(cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Whether the server accepts connections (false before
    /// [`start_serving`](Server::start_serving) and after
    /// [`close`](Server::close)).
    ///
    /// # Examples
    ///
    /// See [`Server`].
    pub fn is_serving(&self) -> bool {
        self.shared.serving()
    }

    /// The addresses the server listens on (one per resolved address of the
    /// host; empty once closed), also before it starts serving.
    ///
    /// # Examples
    ///
    /// See [`Server`].
    pub fn sockets(&self) -> Vec<SocketAddr> {
        if !self.shared.closed.get() {
            self.shared.addrs.clone()
        } else {
            Vec::new()
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("sockets", &self.sockets())
            .field("connections", &self.shared.active.get())
            .finish()
    }
}

impl EventLoop {
    /// Connects to `host`:`port` and runs a protocol from `factory` on the
    /// connection (asyncio's `loop.create_connection`).
    ///
    /// The name is resolved with [`getaddrinfo`](EventLoop::getaddrinfo) and
    /// each address is tried in turn. `factory` is called once connected;
    /// `connection_made` has run when this returns.
    ///
    /// The protocol comes back as `Rc<RefCell<P>>`, shared with the
    /// transport, so the caller can read its state (`proto.borrow().field`)
    /// between events; do not hold the borrow across an `.await`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the name does not resolve, or when every address
    /// failed: the last error, with a message naming the addresses tried
    /// (connection refused, unreachable…); [`ErrorKind::Closed`] on a closed
    /// loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::net::{Protocol, Transport};
    ///
    /// #[derive(Default, Debug)]
    /// struct Collect(Vec<u8>, bool);
    /// impl Protocol for Collect {
    ///     fn data_received(&mut self, d: &[u8]) { self.0.extend_from_slice(d) }
    ///     fn connection_lost(&mut self, _: Option<aioloop::Error>) { self.1 = true }
    /// }
    ///
    /// struct Greet;
    /// impl Protocol for Greet {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.write(b"hi").unwrap();
    ///         t.close();
    ///     }
    /// }
    ///
    /// aioloop::run(async {
    ///     let lp = aioloop::get_running_loop()?;
    ///     let server = lp.create_server(|| Greet, "127.0.0.1", 0).await?;
    ///     let port = server.sockets()[0].port();
    ///     let (_t, proto) = lp.create_connection(Collect::default, "127.0.0.1", port).await?;
    ///     while !proto.borrow().1 {
    ///         aioloop::sleep(std::time::Duration::from_millis(1)).await;
    ///     }
    ///     assert_eq!(proto.borrow().0, b"hi");
    ///
    ///     let err = lp.create_connection(Collect::default, "127.0.0.1", 1).await.unwrap_err();
    ///     assert_eq!(err.kind(), aioloop::ErrorKind::Io);
    ///     assert!(err.to_string().contains("127.0.0.1:1"));
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    #[track_caller]
    pub fn create_connection<'a, P: Protocol>(
        &'a self,
        factory: impl FnOnce() -> P + 'a,
        host: &str,
        port: u16,
    ) -> impl std::future::Future<Output = Result<(Transport, Rc<RefCell<P>>), Error>> + 'a {
        let resolve = self.getaddrinfo(host, port);
        let host = host.to_owned();
        let location = Location::caller();
        async move {
            let addrs = resolve.await?;
            let mut last = None;
            for &addr in &addrs {
                match connect_one(self, addr).await {
                    Ok(io) => {
                        let proto = Rc::new(RefCell::new(factory()));
                        let t = Conn::start(self, io, addr, proto.clone(), None, location)?;
                        return Ok((t, proto));
                    }
                    Err(e) => last = Some(e),
                }
            }
            let e = last.expect("getaddrinfo returns at least one address");
            if addrs.len() == 1 {
                Err(Error::io(format_args!("connecting to {}", addrs[0]), e))
            } else {
                let tried: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                Err(Error::io(
                    format_args!(
                        "connecting to {host:?} port {port} (tried {}; last error from {})",
                        tried.join(", "),
                        addrs[addrs.len() - 1]
                    ),
                    e,
                ))
            }
        }
    }

    /// Listens on `host`:`port` (every resolved address; port 0 picks a free
    /// port) and runs a protocol from `factory` on each accepted connection
    /// (asyncio's `loop.create_server`). The server serves at once; see
    /// [`create_server_with`](EventLoop::create_server_with) for the
    /// options (backlog, `SO_REUSEPORT`, start later).
    ///
    /// Accept errors such as EMFILE / ENFILE go to the loop's exception
    /// handler and the server accepts again after [`ACCEPT_RETRY_DELAY`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the name does not resolve or an address cannot
    /// be bound (in use, not available: the message names it);
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// See [`Server`] and [`create_connection`](EventLoop::create_connection).
    #[track_caller]
    pub fn create_server<P: Protocol>(
        &self,
        factory: impl FnMut() -> P + 'static,
        host: &str,
        port: u16,
    ) -> impl std::future::Future<Output = Result<Server, Error>> + '_ {
        self.create_server_with(factory, host, port, ServerOptions::new())
    }

    /// [`create_server`](EventLoop::create_server) with [`ServerOptions`]
    /// (asyncio's keyword arguments `backlog`, `reuse_port`,
    /// `start_serving`).
    ///
    /// # Errors
    ///
    /// As [`create_server`](EventLoop::create_server); [`ErrorKind::Io`]
    /// also when `reuse_port` is asked where the OS has no `SO_REUSEPORT`.
    ///
    /// # Examples
    ///
    /// Two servers sharing a port (Unix), the kernel spreading connections
    /// between them:
    ///
    /// ```
    /// use aioloop::net::{Protocol, ServerOptions};
    ///
    /// struct Nop;
    /// impl Protocol for Nop {}
    ///
    /// # #[cfg(unix)]
    /// aioloop::run(async {
    ///     let lp = aioloop::get_running_loop()?;
    ///     let opts = ServerOptions::new().reuse_port(true).backlog(64);
    ///     let a = lp.create_server_with(|| Nop, "127.0.0.1", 0, opts.clone()).await?;
    ///     let port = a.sockets()[0].port();
    ///     let b = lp.create_server_with(|| Nop, "127.0.0.1", port, opts).await?;
    ///     assert_eq!(b.sockets()[0].port(), port);
    ///     a.close();
    ///     b.close();
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    #[track_caller]
    pub fn create_server_with<P: Protocol>(
        &self,
        mut factory: impl FnMut() -> P + 'static,
        host: &str,
        port: u16,
        options: ServerOptions,
    ) -> impl std::future::Future<Output = Result<Server, Error>> + '_ {
        let resolve = self.getaddrinfo(host, port);
        let location = Location::caller();
        async move {
            let addrs = resolve.await?;
            if self.is_closed() {
                return Err(Error::closed());
            }
            if options.backlog == 0 {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the listen backlog must be at least 1, not 0 (ServerOptions::backlog)",
                ));
            }
            let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
            let mut ios = Vec::new();
            for addr in addrs {
                let io = sys::bind_tcp_listener(addr, backlog, options.reuse_port)
                    .map_err(|e| Error::io(format_args!("binding a server to {addr}"), e))?;
                let local = io
                    .local_addr()
                    .map_err(|e| Error::io("reading a server's address", e))?;
                ios.push((io, local));
            }
            let shared = Rc::new(ServerShared {
                lp: self.clone(),
                listeners: RefCell::new(Vec::new()),
                addrs: ios.iter().map(|(_, a)| *a).collect(),
                unstarted: RefCell::new(ios),
                closed: Cell::new(false),
                location,
                active: Cell::new(0),
                conns: RefCell::new(slab::Slab::new()),
                waiters: RefCell::new(Vec::new()),
                factory: RefCell::new(Box::new(move || {
                    Rc::new(RefCell::new(factory())) as Rc<RefCell<dyn Protocol>>
                })),
            });
            let server = Server { shared };
            if options.start_serving {
                server.start_serving()?;
            }
            Ok(server)
        }
    }
}

/// Options of [`EventLoop::create_server_with`] (asyncio's keyword
/// arguments of `create_server`). Build with [`new`](ServerOptions::new)
/// and the setters.
///
/// # Examples
///
/// ```
/// use aioloop::net::ServerOptions;
///
/// let opts = ServerOptions::new().backlog(4096).start_serving(false);
/// assert_eq!(opts.get_backlog(), 4096);
/// ```
#[derive(Clone, Debug)]
pub struct ServerOptions {
    backlog: u32,
    reuse_port: bool,
    start_serving: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::new()
    }
}

impl ServerOptions {
    /// The defaults: a listen queue of 1024, no `SO_REUSEPORT`, serving at
    /// once. `SO_REUSEADDR` is always set on Unix, as asyncio does.
    ///
    /// # Examples
    ///
    /// See [`ServerOptions`].
    pub fn new() -> ServerOptions {
        ServerOptions {
            backlog: SERVER_BACKLOG,
            reuse_port: false,
            start_serving: true,
        }
    }

    /// The listen queue length passed to `listen` (the kernel caps it, at
    /// `net.core.somaxconn` on Linux).
    ///
    /// # Examples
    ///
    /// See [`ServerOptions`].
    pub fn backlog(mut self, backlog: u32) -> ServerOptions {
        self.backlog = backlog;
        self
    }

    /// The listen queue length set.
    ///
    /// # Examples
    ///
    /// See [`ServerOptions`].
    pub fn get_backlog(&self) -> u32 {
        self.backlog
    }

    /// Sets `SO_REUSEPORT` so several sockets (in this process or others)
    /// can listen on the same port (Unix only: elsewhere binding fails with
    /// an [`ErrorKind::Io`] error saying so).
    ///
    /// # Examples
    ///
    /// See [`EventLoop::create_server_with`].
    pub fn reuse_port(mut self, on: bool) -> ServerOptions {
        self.reuse_port = on;
        self
    }

    /// Whether the server accepts at once (the default) or only after
    /// [`Server::start_serving`] / [`Server::serve_forever`]. Its sockets are
    /// bound and listening either way, so connects queue up meanwhile.
    ///
    /// # Examples
    ///
    /// See [`Server::start_serving`].
    pub fn start_serving(mut self, on: bool) -> ServerOptions {
        self.start_serving = on;
        self
    }
}

/// One non-blocking connect, awaited through a temporary registration.
async fn connect_one(lp: &EventLoop, addr: SocketAddr) -> io::Result<sys::TcpStream> {
    if lp.is_closed() {
        return Err(io::Error::other(Error::closed()));
    }
    let mut io = sys::TcpStream::connect(addr)?;
    let reg = Registration::new(lp, &mut io).map_err(io::Error::other)?;
    let res = poll_fn(|cx| {
        reg.poll_io(cx, Direction::Write, || {
            if let Some(e) = io.take_error()? {
                return Err(e);
            }
            match io.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Err(e),
            }
        })
    })
    .await;
    reg.deregister(&mut io);
    res.map(|()| io)
}

// ---------------------------------------------------------------------------
// Datagram endpoints
// ---------------------------------------------------------------------------

/// The callbacks of a datagram endpoint (asyncio's `asyncio.DatagramProtocol`).
///
/// Every method has a default that does nothing. The same delivery rules as
/// for [`Protocol`] apply (see [`Protocol`]).
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use aioloop::net::{DatagramProtocol, DatagramTransport};
///
/// #[derive(Default)]
/// struct Echo(Option<DatagramTransport>);
///
/// impl DatagramProtocol for Echo {
///     fn connection_made(&mut self, t: &DatagramTransport) {
///         self.0 = Some(t.clone());
///     }
///     fn datagram_received(&mut self, data: &[u8], from: SocketAddr) {
///         let _ = self.0.as_ref().unwrap().sendto(data, Some(from));
///     }
/// }
/// ```
pub trait DatagramProtocol: 'static {
    /// The endpoint is ready; keep a clone of `transport` to send.
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `addr`. `data` borrows the runtime's buffer.
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        let _ = (data, addr);
    }

    /// A send or receive failed (for example ICMP port unreachable on a
    /// connected endpoint); the endpoint stays open.
    fn error_received(&mut self, err: Error) {
        let _ = err;
    }

    /// The endpoint is closed (`None` after `close` / `abort`). Called once,
    /// last.
    fn connection_lost(&mut self, err: Option<Error>) {
        let _ = err;
    }

    /// The send queue went above the high-water mark: stop sending until
    /// [`resume_writing`](DatagramProtocol::resume_writing). See
    /// [Flow control](DatagramTransport#flow-control).
    fn pause_writing(&mut self) {}

    /// The send queue drained to the low-water mark: sending may go on.
    fn resume_writing(&mut self) {}
}

struct DgramState {
    queue: VecDeque<(Vec<u8>, Option<SocketAddr>)>,
    queued: usize,
    closing: bool,
    finished: bool,
    paused: bool,
    high: usize,
    low: usize,
}

struct Dgram {
    lp: EventLoop,
    io: RefCell<sys::UdpSocket>,
    reg: RefCell<Option<Registration>>,
    st: RefCell<DgramState>,
    slot: Rc<Slot<dyn DatagramProtocol>>,
    remote: Option<SocketAddr>,
    /// The socket is IPv6.
    v6: bool,
}

impl Dgram {
    fn ready(&self, dir: Direction) -> bool {
        self.reg.borrow().as_ref().is_some_and(|r| r.is_ready(dir))
    }

    fn clear_ready(&self, dir: Direction) {
        if let Some(r) = self.reg.borrow().as_ref() {
            r.clear_ready(dir);
        }
    }

    /// Sends one datagram now (a completion backend queues it in its own
    /// buffer: see `Registration::send_to_with`).
    fn send_now(&self, data: &[u8], to: Option<SocketAddr>) -> io::Result<usize> {
        let to = to.filter(|_| self.remote.is_none());
        let direct = |data: &[u8]| {
            let io = self.io.borrow();
            match to {
                Some(addr) => io.send_to(data, addr),
                None => io.send(data),
            }
        };
        match self.reg.borrow().as_ref() {
            Some(reg) => reg.send_to_with(data, to, self.v6, direct),
            None => direct(data),
        }
    }

    fn report(self: &Rc<Self>, err: Error) {
        self.slot.post(
            &self.lp,
            Box::new(move |p: &mut dyn DatagramProtocol| p.error_received(err)),
        );
    }

    fn on_event(self: &Rc<Self>) {
        if self.st.borrow().finished {
            return;
        }
        if self.st.borrow().queued > 0 && self.ready(Direction::Write) {
            self.flush();
        }
        for _ in 0..READ_BUDGET {
            if self.st.borrow().closing || !self.ready(Direction::Read) {
                return;
            }
            if self.slot.is_borrowed() {
                let me = self.clone();
                let _ = self.lp.call_later(BORROWED_RETRY, move || me.on_event());
                return;
            }
            let mut buf = take_buf();
            // A completion backend hands out the datagram its RECVMSG
            // brought into a buffer it owns.
            let res = match self.reg.borrow().as_ref() {
                Some(reg) => reg.recv_from_with(&mut buf, |b| self.io.borrow().recv_from(b)),
                None => return,
            };
            match res {
                Ok((n, from)) => {
                    let r = self.slot.call(|p| p.datagram_received(&buf[..n], from));
                    put_buf(buf);
                    if let Some(Err(e)) = r {
                        self.lp.call_exception_handler(
                            &ExceptionContext::new(
                                "Fatal error: a datagram protocol method panicked; the endpoint is closed",
                            )
                            .with_error(e),
                        );
                        self.finish();
                        return;
                    }
                }
                Err(e) => {
                    put_buf(buf);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            self.clear_ready(Direction::Read);
                            return;
                        }
                        io::ErrorKind::Interrupted => {}
                        _ => self.report(Error::io("receiving a datagram", e)),
                    }
                }
            }
        }
        let me = self.clone();
        let _ = self.lp.call_soon(move || me.on_event());
    }

    fn flush(self: &Rc<Self>) {
        loop {
            let Some((data, to)) = self.st.borrow_mut().queue.pop_front() else {
                break;
            };
            match self.send_now(&data, to) {
                Ok(_) => {
                    self.st.borrow_mut().queued -= data.len();
                    self.maybe_resume();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.clear_ready(Direction::Write);
                    self.st.borrow_mut().queue.push_front((data, to));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.st.borrow_mut().queue.push_front((data, to));
                }
                Err(e) => {
                    self.st.borrow_mut().queued -= data.len();
                    self.maybe_resume();
                    self.report(Error::io(sendto_context(to, self.remote), e));
                }
            }
        }
        if self.st.borrow().closing {
            self.finish();
        }
    }

    /// Tells the protocol to pause once the queue is above the high-water
    /// mark.
    fn maybe_pause(self: &Rc<Self>) {
        let pause = {
            let mut st = self.st.borrow_mut();
            let pause = !st.paused && !st.closing && st.queued > st.high;
            st.paused |= pause;
            pause
        };
        if pause {
            self.slot.post(
                &self.lp,
                Box::new(|p: &mut dyn DatagramProtocol| p.pause_writing()),
            );
        }
    }

    /// Tells the protocol to resume once a paused queue is at or below the
    /// low-water mark.
    fn maybe_resume(self: &Rc<Self>) {
        let resume = {
            let mut st = self.st.borrow_mut();
            let resume = st.paused && !st.closing && st.queued <= st.low;
            st.paused &= !resume;
            resume
        };
        if resume {
            self.slot.post(
                &self.lp,
                Box::new(|p: &mut dyn DatagramProtocol| p.resume_writing()),
            );
        }
    }

    fn finish(self: &Rc<Self>) {
        {
            let mut st = self.st.borrow_mut();
            if st.finished {
                return;
            }
            st.finished = true;
            st.closing = true;
            st.queue.clear();
            st.queued = 0;
        }
        if let Some(reg) = self.reg.borrow_mut().take() {
            reg.deregister(&mut *self.io.borrow_mut());
        }
        let me = self.clone();
        let _ = self.lp.call_soon(move || {
            me.slot.post_last(
                &me.lp,
                Box::new(|p: &mut dyn DatagramProtocol| p.connection_lost(None)),
            );
        });
    }
}

/// asyncio's defaults for `set_write_buffer_limits(high, low)`: `high`
/// defaults to 64 KiB (or 4 × `low`), `low` to `high / 4`; `low > high` is
/// an error.
fn water_marks(high: Option<usize>, low: Option<usize>) -> Result<(usize, usize), Error> {
    let high = high.unwrap_or_else(|| low.map_or(DEFAULT_HIGH_WATER, |l| l.saturating_mul(4)));
    let low = low.unwrap_or(high / 4);
    if low > high {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("write buffer limits: high ({high}) must be >= low ({low})"),
        ));
    }
    Ok((high, low))
}

fn sendto_context(to: Option<SocketAddr>, remote: Option<SocketAddr>) -> String {
    match to.or(remote) {
        Some(a) => format!("sending a datagram to {a}"),
        None => "sending a datagram".to_owned(),
    }
}

/// The sending and control side of a datagram endpoint (asyncio's
/// `DatagramTransport`): a cheap handle (`Clone`, not `Send`).
///
/// # Flow control
///
/// [`sendto`](DatagramTransport::sendto) never blocks: a datagram the socket
/// does not take at once is queued and sent in order when it is writable.
/// When the queue goes above the high-water mark (default 64 KiB) the
/// protocol's [`pause_writing`](DatagramProtocol::pause_writing) is called;
/// when it drains to the low-water mark (default 16 KiB),
/// [`resume_writing`](DatagramProtocol::resume_writing). A sender that
/// ignores `pause_writing` may queue up to the hard limit (8 × the high-water
/// mark); past it `sendto` drops the datagram and returns
/// [`ErrorKind::Io`] (source `io::ErrorKind::OutOfMemory`), and the endpoint
/// stays open: datagrams may be lost, the queue never grows without bound.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use aioloop::net::{DatagramProtocol, DatagramTransport};
///
/// #[derive(Default)]
/// struct Inbox(Vec<(Vec<u8>, SocketAddr)>);
/// impl DatagramProtocol for Inbox {
///     fn datagram_received(&mut self, d: &[u8], from: SocketAddr) {
///         self.0.push((d.to_vec(), from));
///     }
/// }
///
/// aioloop::run(async {
///     let lp = aioloop::get_running_loop()?;
///     let any = "127.0.0.1:0".parse().ok();
///     let (a, inbox) = lp.create_datagram_endpoint(Inbox::default, any, None).await?;
///     let (b, _) = lp.create_datagram_endpoint(Inbox::default, any, None).await?;
///     b.sendto(b"ping", Some(a.sockname()))?;
///     while inbox.borrow().0.is_empty() {
///         aioloop::sleep(std::time::Duration::from_millis(1)).await;
///     }
///     assert_eq!(inbox.borrow().0[0], (b"ping".to_vec(), b.sockname()));
///     a.close();
///     b.close();
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct DatagramTransport {
    dgram: Weak<Dgram>,
    local: SocketAddr,
    remote: Option<SocketAddr>,
}

impl DatagramTransport {
    /// Sends one datagram to `addr`, or to the remote address of a connected
    /// endpoint (`None`). What the socket does not take at once is queued and
    /// sent in order when it is writable. A failed send is reported to
    /// [`error_received`](DatagramProtocol::error_received).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] once closing; [`ErrorKind::InvalidInput`] when
    /// `addr` is `None` on an unconnected endpoint, or names another address
    /// than a connected endpoint's remote one; [`ErrorKind::Io`] when the
    /// send queue is at its hard limit (see
    /// [Flow control](DatagramTransport#flow-control)).
    ///
    /// # Examples
    ///
    /// See [`DatagramTransport`].
    pub fn sendto(&self, data: &[u8], addr: Option<SocketAddr>) -> Result<(), Error> {
        let d = self
            .dgram
            .upgrade()
            .ok_or_else(|| closed_transport("sendto()"))?;
        if d.st.borrow().closing {
            return Err(closed_transport("sendto()"));
        }
        match (addr, d.remote) {
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "sendto() needs an address: the endpoint has no remote address",
                ))
            }
            (Some(a), Some(r)) if a != r => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("sendto() to {a} on an endpoint connected to {r}"),
                ))
            }
            _ => {}
        }
        if d.st.borrow().queue.is_empty() && d.ready(Direction::Write) {
            loop {
                match d.send_now(data, addr) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        d.clear_ready(Direction::Write);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        d.report(Error::io(sendto_context(addr, d.remote), e));
                        return Ok(());
                    }
                }
            }
        }
        {
            let mut st = d.st.borrow_mut();
            let hard = st.high.saturating_mul(HARD_LIMIT_FACTOR);
            if st.paused && st.queued + data.len() > hard {
                return Err(Error::io(
                    format_args!(
                        "{}: the datagram was dropped, {} bytes are already queued (hard limit                          {hard}, {HARD_LIMIT_FACTOR} x the high-water mark) because the socket                          is not draining; stop sending on pause_writing() until resume_writing()",
                        sendto_context(addr, d.remote),
                        st.queued
                    ),
                    io::ErrorKind::OutOfMemory.into(),
                ));
            }
            st.queued += data.len();
            st.queue.push_back((data.to_vec(), addr));
        }
        d.maybe_pause();
        Ok(())
    }

    /// Closes the endpoint once the queued datagrams are sent;
    /// `connection_lost(None)` follows. Idempotent.
    ///
    /// # Examples
    ///
    /// See [`DatagramTransport`].
    pub fn close(&self) {
        if let Some(d) = self.dgram.upgrade() {
            let empty = {
                let mut st = d.st.borrow_mut();
                st.closing = true;
                st.queue.is_empty()
            };
            if empty {
                d.finish();
            }
        }
    }

    /// Closes the endpoint at once, dropping queued datagrams;
    /// `connection_lost(None)` follows.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{DatagramProtocol, DatagramTransport};
    /// struct P;
    /// impl DatagramProtocol for P {
    ///     fn connection_made(&mut self, t: &DatagramTransport) {
    ///         t.abort();
    ///         assert!(t.is_closing());
    ///     }
    /// }
    /// ```
    pub fn abort(&self) {
        if let Some(d) = self.dgram.upgrade() {
            d.finish();
        }
    }

    /// Whether the endpoint is closing or closed.
    ///
    /// # Examples
    ///
    /// See [`abort`](DatagramTransport::abort).
    pub fn is_closing(&self) -> bool {
        self.dgram.upgrade().is_none_or(|d| d.st.borrow().closing)
    }

    /// The local address (`get_extra_info("sockname")`).
    ///
    /// # Examples
    ///
    /// See [`DatagramTransport`].
    pub fn sockname(&self) -> SocketAddr {
        self.local
    }

    /// The remote address of a connected endpoint
    /// (`get_extra_info("peername")`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{DatagramProtocol, DatagramTransport};
    /// struct P;
    /// impl DatagramProtocol for P {
    ///     fn connection_made(&mut self, t: &DatagramTransport) {
    ///         println!("{:?}", t.peername());
    ///     }
    /// }
    /// ```
    pub fn peername(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Bytes queued and not yet sent.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{DatagramProtocol, DatagramTransport};
    /// struct P;
    /// impl DatagramProtocol for P {
    ///     fn connection_made(&mut self, t: &DatagramTransport) {
    ///         assert_eq!(t.get_write_buffer_size(), 0);
    ///     }
    /// }
    /// ```
    pub fn get_write_buffer_size(&self) -> usize {
        self.dgram.upgrade().map_or(0, |d| d.st.borrow().queued)
    }

    /// Sets the send queue's water marks (asyncio's
    /// `set_write_buffer_limits`): `high` defaults to 64 KiB (or 4 × `low`),
    /// `low` to `high / 4`. See [Flow control](DatagramTransport#flow-control).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `low > high`; [`ErrorKind::Closed`] if
    /// the endpoint is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aioloop::net::{DatagramProtocol, DatagramTransport};
    /// struct P;
    /// impl DatagramProtocol for P {
    ///     fn connection_made(&mut self, t: &DatagramTransport) {
    ///         t.set_write_buffer_limits(Some(4096), None).unwrap();
    ///         assert_eq!(t.get_write_buffer_limits(), (1024, 4096));
    ///         assert!(t.set_write_buffer_limits(Some(1), Some(2)).is_err());
    ///     }
    /// }
    /// ```
    pub fn set_write_buffer_limits(
        &self,
        high: Option<usize>,
        low: Option<usize>,
    ) -> Result<(), Error> {
        let d = self
            .dgram
            .upgrade()
            .ok_or_else(|| closed_transport("set_write_buffer_limits()"))?;
        let (high, low) = water_marks(high, low)?;
        {
            let mut st = d.st.borrow_mut();
            st.high = high;
            st.low = low;
        }
        d.maybe_pause();
        d.maybe_resume();
        Ok(())
    }

    /// The send queue's water marks as `(low, high)` (asyncio's order).
    ///
    /// # Examples
    ///
    /// See [`set_write_buffer_limits`](DatagramTransport::set_write_buffer_limits).
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.dgram.upgrade().map_or((0, 0), |d| {
            let st = d.st.borrow();
            (st.low, st.high)
        })
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("sockname", &self.local)
            .field("peername", &self.remote)
            .field("closing", &self.is_closing())
            .finish()
    }
}

impl EventLoop {
    /// Makes a UDP endpoint and runs a protocol from `factory` on it
    /// (asyncio's `loop.create_datagram_endpoint`).
    ///
    /// `local_addr` is bound (`None`: the unspecified address of
    /// `remote_addr`'s family, port 0); with `remote_addr` the socket is
    /// connected, so it only exchanges datagrams with that address and
    /// [`sendto`](DatagramTransport::sendto) may omit the address.
    /// `connection_made` has run when this returns; the protocol comes back
    /// as `Rc<RefCell<P>>`, as with
    /// [`create_connection`](EventLoop::create_connection).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if both addresses are `None`;
    /// [`ErrorKind::Io`] if the socket cannot be bound or connected (the
    /// message names the address); [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// See [`DatagramTransport`].
    #[track_caller]
    pub fn create_datagram_endpoint<'a, P: DatagramProtocol>(
        &'a self,
        factory: impl FnOnce() -> P + 'a,
        local_addr: Option<SocketAddr>,
        remote_addr: Option<SocketAddr>,
    ) -> impl std::future::Future<Output = Result<(DatagramTransport, Rc<RefCell<P>>), Error>> + 'a
    {
        let location = Location::caller();
        async move {
            if self.is_closed() {
                return Err(Error::closed());
            }
            let bind =
                match (local_addr, remote_addr) {
                    (Some(l), _) => l,
                    (None, Some(SocketAddr::V4(_))) => SocketAddr::from(([0, 0, 0, 0], 0)),
                    (None, Some(SocketAddr::V6(_))) => SocketAddr::from(([0u16; 8], 0)),
                    (None, None) => return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "create_datagram_endpoint needs a local address, a remote address, or both",
                    )),
                };
            let io = sys::UdpSocket::bind(bind)
                .map_err(|e| Error::io(format_args!("binding a UDP socket to {bind}"), e))?;
            if let Some(r) = remote_addr {
                io.connect(r)
                    .map_err(|e| Error::io(format_args!("connecting a UDP socket to {r}"), e))?;
            }
            let local = io
                .local_addr()
                .map_err(|e| Error::io("reading a UDP socket's address", e))?;
            let proto = Rc::new(RefCell::new(factory()));
            let d = Rc::new(Dgram {
                lp: self.clone(),
                io: RefCell::new(io),
                reg: RefCell::new(None),
                st: RefCell::new(DgramState {
                    queue: VecDeque::new(),
                    queued: 0,
                    closing: false,
                    finished: false,
                    paused: false,
                    high: DEFAULT_HIGH_WATER,
                    low: DEFAULT_HIGH_WATER / 4,
                }),
                slot: Rc::new(Slot::new(proto.clone() as Rc<RefCell<dyn DatagramProtocol>>)),
                v6: bind.is_ipv6(),
                remote: remote_addr,
            });
            let h = d.clone();
            let handler = Repeating::new(
                Box::new(move || h.on_event()),
                crate::context::entered_task_context(),
                location,
            );
            let reg = Registration::with_handler(self, &mut *d.io.borrow_mut(), handler)?;
            *d.reg.borrow_mut() = Some(reg);
            let t = DatagramTransport {
                dgram: Rc::downgrade(&d),
                local,
                remote: remote_addr,
            };
            if let Some(Err(e)) = d.slot.call(|p| p.connection_made(&t)) {
                d.lp.call_exception_handler(
                    &ExceptionContext::new(
                        "Fatal error: a datagram protocol method panicked; the endpoint is closed",
                    )
                    .with_error(e),
                );
                d.finish();
            }
            Ok((t, proto))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Flow {
        paused: usize,
        resumed: usize,
    }

    impl DatagramProtocol for Flow {
        fn pause_writing(&mut self) {
            self.paused += 1;
        }
        fn resume_writing(&mut self) {
            self.resumed += 1;
        }
    }

    /// A socket that stops taking datagrams queues them; the water marks
    /// pause and resume the protocol and the hard limit drops (and reports)
    /// what would grow the queue further. Loopback UDP never blocks, so the
    /// test clears and sets the writable bit by hand.
    #[test]
    fn datagram_queue_water_marks_and_hard_limit() {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = peer.local_addr().unwrap();
            let (t, p) = lp
                .create_datagram_endpoint(Flow::default, None, Some(to))
                .await
                .unwrap();
            t.set_write_buffer_limits(Some(4000), Some(1000)).unwrap();
            let d = t.dgram.upgrade().unwrap();
            d.clear_ready(Direction::Write);
            let msg = [7u8; 1000];
            for _ in 0..5 {
                t.sendto(&msg, None).unwrap();
            }
            assert_eq!(t.get_write_buffer_size(), 5000);
            crate::yield_now().await;
            assert_eq!(p.borrow().paused, 1, "above 4000 bytes: paused once");
            // Up to 8 x 4000 may be queued while paused; past it, dropped.
            for _ in 5..32 {
                t.sendto(&msg, None).unwrap();
            }
            let e = t.sendto(&msg, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io);
            assert!(e.message().contains("not draining"), "{e}");
            assert_eq!(t.get_write_buffer_size(), 32_000);
            assert!(!t.is_closing(), "the endpoint stays open");
            // The socket takes datagrams again: the queue drains in order.
            d.reg
                .borrow()
                .as_ref()
                .unwrap()
                .mark_ready(Direction::Write);
            d.on_event();
            // A readiness backend sends it all now; a completion backend
            // (IOCP) one send at a time as they complete.
            for _ in 0..5000 {
                if t.get_write_buffer_size() == 0 {
                    break;
                }
                crate::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(t.get_write_buffer_size(), 0);
            crate::yield_now().await;
            assert_eq!((p.borrow().paused, p.borrow().resumed), (1, 1));
            // io_uring sends what it accepted with the loop's next
            // `io_uring_enter`: let the loop poll before blocking on the
            // peer.
            crate::sleep(Duration::from_millis(1)).await;
            let mut buf = [0u8; 2000];
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(peer.recv(&mut buf).unwrap(), 1000);
            t.close();
        })
        .unwrap();
        lp.close().unwrap();
    }

    /// Lowering the marks under a queued backlog pauses at once; raising
    /// them resumes.
    #[test]
    fn datagram_limits_change_pauses_and_resumes() {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let (t, p) = lp
                .create_datagram_endpoint(Flow::default, None, Some(peer.local_addr().unwrap()))
                .await
                .unwrap();
            t.dgram.upgrade().unwrap().clear_ready(Direction::Write);
            t.sendto(&[1u8; 3000], None).unwrap();
            t.set_write_buffer_limits(Some(2000), None).unwrap();
            crate::yield_now().await;
            assert_eq!(p.borrow().paused, 1);
            t.set_write_buffer_limits(Some(8000), Some(4000)).unwrap();
            crate::yield_now().await;
            assert_eq!(p.borrow().resumed, 1);
            assert_eq!(t.get_write_buffer_limits(), (4000, 8000));
            t.abort();
        })
        .unwrap();
        lp.close().unwrap();
    }
}
