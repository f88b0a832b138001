//! I/O objects on the loop: a [`Registration`] ties one backend socket to the
//! loop's readiness table, so futures can wait for a direction to be ready.
//!
//! The driver reports readiness edges; the table keeps one bit per direction,
//! set by an event and cleared when an operation reports `WouldBlock`, plus
//! the wakers of the tasks waiting in each direction (several tasks may wait
//! on one shared socket: all are woken, and each retries its operation).

use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::handle::Callback;
use super::EventLoop;
use crate::backend::sys::{self, net::Source};
use crate::backend::{DgramRead, Event, MultiRead};
use crate::Error;

/// The errnos a completion reports that mean "try again" / a failed write
/// side (Linux values; only a completion backend produces them).
const EAGAIN: i32 = 11;
const EINTR: i32 = 4;
const EPIPE: i32 = 32;
const EMSGSIZE: i32 = 90;
const EAFNOSUPPORT: i32 = 97;

/// Tokens of registered sources carry this bit (readiness callbacks on raw
/// fds use small slab keys; the notifier uses `usize::MAX`).
pub(crate) const SOURCE_TOKEN: usize = 1 << (usize::BITS - 2);

/// A direction of I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

#[derive(Default)]
pub(crate) struct SourceState {
    readable: bool,
    writable: bool,
    /// Sticky: once the peer closed (or the socket failed), operations in
    /// that direction never block again, so they are always tried (a read
    /// then returns EOF or the error). Clearing `readable` after a short
    /// read must not hide an EOF that already arrived.
    read_closed: bool,
    write_closed: bool,
    read_wakers: Vec<Waker>,
    write_wakers: Vec<Waker>,
    /// Callback-driven objects (transports) get this queued on every event.
    handler: Option<Rc<dyn Callback>>,
    /// The fd completion-based transfers use (`-1` where there are none).
    fd: i32,
    /// Transfers of a stream on a completion backend (made on first use).
    flow: Option<Box<Flow>>,
}

/// Stream reads and writes on a completion backend (the proactor): reads
/// land in a buffer the backend owns and are copied out; writes are copied
/// into a buffer the backend owns and sent in order in the background. A
/// dropped reader or a closed stream never leaves the kernel writing into
/// freed memory: the backend keeps each buffer until its completion.
#[derive(Default)]
struct Flow {
    /// The receive in flight (or completed, not yet collected).
    read_op: Option<usize>,
    /// A stream's multishot receive (when the backend has them).
    multi: Option<usize>,
    /// Received bytes not yet handed out: `stash[pos..]`.
    stash: Vec<u8>,
    pos: usize,
    eof: bool,
    read_err: Option<i32>,
    /// The send in flight; later writes are queued behind it.
    write_op: Option<usize>,
    /// Bytes handed to `write_op` and not yet confirmed sent.
    in_flight: usize,
    /// A failed send: every later write and flush fails with it.
    write_err: Option<i32>,
    /// `shutdown(Write)` was asked for: writes fail with EPIPE.
    shut: bool,
    /// Datagram sends in flight (or completed, not yet collected): the
    /// operation, the datagram's length and its destination.
    dgram_sends: Vec<(usize, usize, Option<std::net::SocketAddr>)>,
    /// The first datagram send that failed since the last send was
    /// accepted: its errno and destination, reported by the next send.
    dgram_err: Option<(i32, Option<std::net::SocketAddr>)>,
}

/// The largest UDP payload (65535 − 8 − 20): a datagram receive asks for
/// this much, so nothing is cut short before the caller's own buffer does.
const DATAGRAM_MAX: usize = 65_507;
/// The largest UDP payload over IPv6 (65535 − 8).
const DATAGRAM_MAX_V6: usize = 65_527;

/// Datagram sends a socket may have in flight on a completion backend, in
/// number and in bytes, before a send waits (`WouldBlock`) for one of them
/// to complete: about what a socket's default send buffer holds.
const DGRAM_SENDS: usize = 64;
const DGRAM_SEND_BYTES: usize = 256 * 1024;

/// How much a receive asks for at most / at least.
const RECV_MAX: usize = 64 * 1024;
const RECV_MIN: usize = 16 * 1024;
/// Bytes a stream may have queued in its sends before a write waits: as
/// much as Linux lets a TCP socket buffer at most (`tcp_wmem`'s 4 MiB), so a
/// writer that does not yield sees the same room as with direct writes.
const SEND_LIMIT: usize = 4 * 1024 * 1024;

/// The loop's readiness table.
#[derive(Default)]
pub(crate) struct Sources {
    entries: Slab<SourceState>,
}

impl Sources {
    /// Records one event and returns the wakers to call (outside the borrow)
    /// and the handler to queue, if the object has one.
    pub(crate) fn dispatch(
        &mut self,
        ev: &Event,
        wake: &mut Vec<Waker>,
        handlers: &mut Vec<Rc<dyn Callback>>,
    ) {
        let Some(s) = self.entries.get_mut(ev.token & !SOURCE_TOKEN) else {
            return;
        };
        s.read_closed |= ev.read_closed;
        s.write_closed |= ev.write_closed;
        if ev.readable || ev.read_closed {
            s.readable = true;
            wake.append(&mut s.read_wakers);
        }
        if ev.writable || ev.write_closed {
            s.writable = true;
            wake.append(&mut s.write_wakers);
        }
        if let Some(h) = &s.handler {
            handlers.push(h.clone());
        }
    }

    /// Empties the table (the loop is closing): waiters are woken and their
    /// next operation reports that the loop is closed.
    pub(crate) fn close(&mut self) -> Vec<Waker> {
        self.entries
            .drain()
            .flat_map(|s| {
                if let Some(h) = &s.handler {
                    h.cancel();
                }
                s.read_wakers.into_iter().chain(s.write_wakers)
            })
            .collect()
    }
}

/// One I/O object's place in its loop's readiness table.
#[derive(Debug)]
pub(crate) struct Registration {
    lp: EventLoop,
    key: usize,
}

impl Registration {
    /// Registers `src` with `lp`'s backend. Both directions start out ready,
    /// so the first operation is simply tried.
    pub(crate) fn new(lp: &EventLoop, src: &mut impl Source) -> Result<Registration, Error> {
        Registration::register(lp, src, None)
    }

    /// Like [`new`](Registration::new) for a callback-driven object (a
    /// transport): every readiness event queues `handler` on the ready queue
    /// (once per event), in the iteration that saw the event. The handler
    /// checks [`is_ready`](Registration::is_ready) and runs its operations,
    /// calling [`clear_ready`](Registration::clear_ready) on `WouldBlock`.
    /// The handler is cancelled when the object deregisters or the loop
    /// closes.
    pub(crate) fn with_handler(
        lp: &EventLoop,
        src: &mut impl Source,
        handler: Rc<dyn Callback>,
    ) -> Result<Registration, Error> {
        Registration::register(lp, src, Some(handler))
    }

    fn register(
        lp: &EventLoop,
        src: &mut impl Source,
        handler: Option<Rc<dyn Callback>>,
    ) -> Result<Registration, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let inner = &lp.inner;
        let key = inner.sources.borrow_mut().entries.insert(SourceState {
            readable: true,
            writable: true,
            handler,
            fd: crate::backend::sys::net::source_fd(src),
            ..SourceState::default()
        });
        let res = inner
            .driver
            .borrow_mut()
            .register_source(src, key | SOURCE_TOKEN);
        if let Err(e) = res {
            inner.sources.borrow_mut().entries.remove(key);
            return Err(Error::io(
                "could not register the socket with the event loop",
                e,
            ));
        }
        Ok(Registration {
            lp: lp.clone(),
            key,
        })
    }

    /// The loop this object belongs to.
    pub(crate) fn event_loop(&self) -> &EventLoop {
        &self.lp
    }

    /// Runs `op` once `dir` is ready; on `WouldBlock` clears the readiness
    /// and waits for the next event.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            if self.lp.is_closed() {
                return Poll::Ready(Err(io::Error::other(Error::closed())));
            }
            {
                let mut sources = self.lp.inner.sources.borrow_mut();
                let Some(s) = sources.entries.get_mut(self.key) else {
                    return Poll::Ready(Err(io::Error::other(Error::closed())));
                };
                let (ready, waiters) = match dir {
                    Direction::Read => (s.readable || s.read_closed, &mut s.read_wakers),
                    Direction::Write => (s.writable || s.write_closed, &mut s.write_wakers),
                };
                if !ready {
                    if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // `WouldBlock` after a close/failure event should not
                    // happen; if it does, wait for the next event rather
                    // than retrying in a loop.
                    self.clear(dir);
                    self.clear_closed(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// Like [`poll_io`](Registration::poll_io) for stream reads and writes of
    /// `len` bytes: a transfer shorter than asked for (but not zero) means
    /// the kernel's buffer was drained (read) or filled (write), so the
    /// readiness is cleared at once instead of after a failed syscall. Safe
    /// with edge-triggered readiness: anything that changes later is a new
    /// event. Saves one `EAGAIN` syscall per message.
    pub(crate) fn poll_stream(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        len: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let r = self.poll_io(cx, dir, op);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 && n < len {
                self.drained(dir);
            }
        }
        r
    }

    /// A stream transfer in `dir` moved fewer bytes than asked for, so the
    /// kernel's buffer is drained (read) or full (write): forget the
    /// readiness now, saving the `WouldBlock` syscall, where the backend
    /// allows it ([`sys::SHORT_TRANSFER_REARMS`]). Where it does not (mio on
    /// Windows re-arms only after a `WouldBlock`), the next operation is
    /// tried and its `WouldBlock` clears the bit.
    pub(crate) fn drained(&self, dir: Direction) {
        if sys::SHORT_TRANSFER_REARMS {
            self.clear(dir);
        }
    }

    /// Whether `dir` is ready (as far as the loop knows: the next operation
    /// may still report `WouldBlock`).
    pub(crate) fn is_ready(&self, dir: Direction) -> bool {
        self.lp
            .inner
            .sources
            .borrow()
            .entries
            .get(self.key)
            .is_some_and(|s| match dir {
                Direction::Read => s.readable || s.read_closed,
                Direction::Write => s.writable || s.write_closed,
            })
    }

    /// Forgets that `dir` is ready: call it when an operation reports
    /// `WouldBlock` (the next event sets it again).
    pub(crate) fn clear_ready(&self, dir: Direction) {
        self.clear(dir);
    }

    /// Marks `dir` ready as an event would (tests drive flow control with
    /// it, since loopback sockets rarely fill up on demand).
    #[cfg(test)]
    pub(crate) fn mark_ready(&self, dir: Direction) {
        if let Some(s) = self.lp.inner.sources.borrow_mut().entries.get_mut(self.key) {
            match dir {
                Direction::Read => s.readable = true,
                Direction::Write => s.writable = true,
            }
        }
    }

    fn clear_closed(&self, dir: Direction) {
        if let Some(s) = self.lp.inner.sources.borrow_mut().entries.get_mut(self.key) {
            match dir {
                Direction::Read => s.read_closed = false,
                Direction::Write => s.write_closed = false,
            }
        }
    }

    fn clear(&self, dir: Direction) {
        if let Some(s) = self.lp.inner.sources.borrow_mut().entries.get_mut(self.key) {
            match dir {
                Direction::Read => s.readable = false,
                Direction::Write => s.writable = false,
            }
        }
    }

    /// Whether stream transfers go through the backend's own buffers
    /// (a completion backend) rather than straight syscalls.
    pub(crate) fn completions(&self) -> bool {
        self.lp.inner.driver.borrow().completions()
    }

    /// A non-blocking stream read: `Ok(n)` or `WouldBlock` (then wait for
    /// the next read event). A readiness backend runs `direct` (the read
    /// syscall); a completion backend hands out what its receive brought in
    /// and keeps one receive in flight.
    pub(crate) fn read_with(
        &self,
        buf: &mut [u8],
        direct: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return direct(buf);
        }
        let mut sources = inner.sources.borrow_mut();
        let Some(s) = sources.entries.get_mut(self.key) else {
            return Err(io::Error::other(Error::closed()));
        };
        let fd = s.fd;
        let token = self.key | SOURCE_TOKEN;
        let flow = Registration::completion_flow(s, &mut inner.driver.borrow_mut());
        let mut driver = inner.driver.borrow_mut();
        if flow.read_op.is_none() && flow.pos == flow.stash.len() && driver.recv_multishot() {
            return Registration::read_multi(flow, fd, token, &mut driver, buf);
        }
        loop {
            if flow.pos < flow.stash.len() {
                let n = buf.len().min(flow.stash.len() - flow.pos);
                buf[..n].copy_from_slice(&flow.stash[flow.pos..flow.pos + n]);
                flow.pos += n;
                if flow.pos == flow.stash.len() && flow.read_op.is_none() && !flow.eof {
                    // Read ahead, so the next read finds data or an event
                    // comes (a short read clears the readiness).
                    let cap = buf.len().clamp(RECV_MIN, RECV_MAX);
                    let b = driver.buffer(cap);
                    flow.read_op = driver.submit_recv(fd, token, b, true).ok();
                }
                return Ok(n);
            }
            if let Some(errno) = flow.read_err.take() {
                return Err(io::Error::from_raw_os_error(errno));
            }
            if flow.eof || buf.is_empty() {
                return Ok(0);
            }
            match flow.read_op {
                Some(op) => {
                    let Some((res, got)) = driver.take(op) else {
                        return Err(io::ErrorKind::WouldBlock.into());
                    };
                    flow.read_op = None;
                    if res > 0 {
                        let old = std::mem::replace(&mut flow.stash, got);
                        driver.recycle(old);
                        flow.pos = 0;
                    } else {
                        driver.recycle(got);
                        match -res {
                            0 => flow.eof = true,
                            libc_eagain if libc_eagain == EAGAIN || libc_eagain == EINTR => {}
                            errno => flow.read_err = Some(errno),
                        }
                    }
                }
                None => {
                    let cap = buf.len().clamp(RECV_MIN, RECV_MAX);
                    let b = driver.buffer(cap);
                    flow.read_op = Some(driver.submit_recv(fd, token, b, false)?);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
            }
        }
    }

    /// [`read_with`](Registration::read_with) with a multishot receive: it
    /// stays armed, and the driver queues what it brings (a bounded number
    /// of buffers) until it is read.
    fn read_multi(
        flow: &mut Flow,
        fd: i32,
        token: usize,
        driver: &mut crate::backend::Driver,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        if let Some(errno) = flow.read_err.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if flow.eof || buf.is_empty() {
            return Ok(0);
        }
        let op = match flow.multi {
            Some(op) => op,
            None => *flow.multi.insert(driver.submit_recv_multi(fd, token)?),
        };
        match driver.read_multi(op, buf) {
            MultiRead::Data(n) => Ok(n),
            MultiRead::Pending => Err(io::ErrorKind::WouldBlock.into()),
            MultiRead::End(res) => {
                flow.multi = None;
                driver.release(op);
                match -res {
                    0 => {
                        flow.eof = true;
                        Ok(0)
                    }
                    errno => Err(io::Error::from_raw_os_error(errno)),
                }
            }
        }
    }

    /// A non-blocking datagram receive: one whole datagram copied into
    /// `buf` (the rest of a longer one is dropped, as `recv_from` does) and
    /// its sender, or `WouldBlock`. A readiness backend runs `direct` (the
    /// syscall); a completion backend keeps one `RECVMSG` in flight into a
    /// buffer it owns.
    pub(crate) fn recv_from_with(
        &self,
        buf: &mut [u8],
        direct: impl FnOnce(&mut [u8]) -> io::Result<(usize, std::net::SocketAddr)>,
    ) -> io::Result<(usize, std::net::SocketAddr)> {
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return direct(buf);
        }
        self.with_flow(true, |flow, fd, token, driver| {
            if flow.read_op.is_none() && driver.dgram_multishot() {
                // One multishot RECVMSG stays armed; the driver queues
                // what it brings.
                let op = match flow.multi {
                    Some(op) => op,
                    None => *flow
                        .multi
                        .insert(driver.submit_recv_dgram_multi(fd, token)?),
                };
                return match driver.read_dgram(op, buf) {
                    DgramRead::Data(n, Some(from)) => Ok((n, from)),
                    DgramRead::Data(_, None) => Err(not_ip()),
                    DgramRead::Pending => Err(io::ErrorKind::WouldBlock.into()),
                    DgramRead::Failed(res) => Err(io::Error::from_raw_os_error(-res)),
                };
            }
            let mut got = None;
            if let Some(op) = flow.read_op {
                match driver.take_from(op) {
                    None => return Err(io::ErrorKind::WouldBlock.into()),
                    Some((res, data, from)) => {
                        flow.read_op = None;
                        got = Some((res, data, from));
                    }
                }
            }
            // Keep one receive in flight (read ahead), so the next datagram
            // comes with an event.
            let b = driver.buffer(DATAGRAM_MAX);
            flow.read_op = Some(driver.submit_recv_msg(fd, token, b, got.is_some())?);
            let Some((res, data, from)) = got else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            let out = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                let n = buf.len().min(data.len());
                buf[..n].copy_from_slice(&data[..n]);
                from.map(|from| (n, from)).ok_or_else(not_ip)
            };
            driver.recycle(data);
            out
        })
    }

    /// A non-blocking datagram send of `buf` to `to` (the connected peer
    /// when `None`) from a socket of the family `v6` says: `Ok(len)` or
    /// `WouldBlock`. A readiness backend runs `direct` (the syscall); a
    /// completion backend copies the datagram into a buffer it owns, sends
    /// it in the background (`SENDMSG`, submitted with the loop's next
    /// `io_uring_enter`) and returns at once. What the kernel would refuse
    /// before sending (a datagram too large, an IPv6 address on an IPv4
    /// socket) fails here; an error the kernel reports for a datagram in
    /// flight is returned by the next send, naming that datagram's
    /// destination. At most [`DGRAM_SENDS`] datagrams (and
    /// [`DGRAM_SEND_BYTES`]) are in flight; past that the send waits for a
    /// completion (a writable event), as a full socket buffer would make it.
    pub(crate) fn send_to_with(
        &self,
        buf: &[u8],
        to: Option<std::net::SocketAddr>,
        v6: bool,
        direct: impl FnOnce(&[u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return direct(buf);
        }
        if to.is_some_and(|a| a.is_ipv6()) && !v6 {
            return Err(io::Error::from_raw_os_error(EAFNOSUPPORT));
        }
        if buf.len() > if v6 { DATAGRAM_MAX_V6 } else { DATAGRAM_MAX } {
            return Err(io::Error::from_raw_os_error(EMSGSIZE));
        }
        self.with_flow(true, |flow, fd, token, driver| {
            let Flow {
                dgram_sends,
                dgram_err,
                in_flight,
                ..
            } = flow;
            dgram_sends.retain(|&(op, len, dest)| {
                let Some((res, b)) = driver.take(op) else {
                    return true;
                };
                driver.recycle(b);
                *in_flight -= len;
                if res < 0 && dgram_err.is_none() {
                    *dgram_err = Some((-res, dest));
                }
                false
            });
            if let Some((errno, dest)) = dgram_err.take() {
                let e = io::Error::from_raw_os_error(errno);
                let what = match dest {
                    Some(a) => format!("an earlier datagram (to {a}) could not be sent: {e}"),
                    None => format!("an earlier datagram could not be sent: {e}"),
                };
                return Err(io::Error::new(e.kind(), what));
            }
            if dgram_sends.len() >= DGRAM_SENDS || *in_flight + buf.len() > DGRAM_SEND_BYTES {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut b = driver.buffer(buf.len());
            b.extend_from_slice(buf);
            let op = driver.submit_send_to(fd, token, b, to)?;
            dgram_sends.push((op, buf.len(), to));
            *in_flight += buf.len();
            Ok(buf.len())
        })
    }

    /// Runs `f` on this object's transfer state (made on first use) with
    /// its fd, its token and the driver. `quiet`: all the object's
    /// transfers complete through the driver (a datagram socket), so its
    /// readiness poll goes (see `completion_flow`): every datagram sent or
    /// received woke it.
    fn with_flow<R>(
        &self,
        quiet: bool,
        f: impl FnOnce(&mut Flow, i32, usize, &mut crate::backend::Driver) -> io::Result<R>,
    ) -> io::Result<R> {
        let inner = &self.lp.inner;
        let mut sources = inner.sources.borrow_mut();
        let Some(s) = sources.entries.get_mut(self.key) else {
            return Err(io::Error::other(Error::closed()));
        };
        let fd = s.fd;
        let mut driver = inner.driver.borrow_mut();
        let flow = if quiet {
            Registration::completion_flow(s, &mut driver)
        } else {
            s.flow.get_or_insert_with(Box::default)
        };
        f(flow, fd, self.key | SOURCE_TOKEN, &mut driver)
    }

    /// The transfer state of an object whose transfers all complete
    /// through the backend (a stream, a datagram socket), made on first use;
    /// from then on its transfers' completions are its events, so the
    /// backend drops the readiness poll that would only double them.
    fn completion_flow<'a>(
        s: &'a mut SourceState,
        driver: &mut crate::backend::Driver,
    ) -> &'a mut Flow {
        if s.flow.is_none() {
            driver.quiet_source(s.fd);
        }
        s.flow.get_or_insert_with(Box::default)
    }

    /// A non-blocking TCP accept: a connection and its peer, or
    /// `WouldBlock`. A readiness backend runs `direct` (the accept
    /// syscall); a completion backend keeps one `ACCEPT` in flight (a
    /// connection it accepts after the listener closed is closed).
    /// `wrap` turns a socket the backend accepted into the caller's type.
    pub(crate) fn accept_with<S>(
        &self,
        direct: impl FnOnce() -> io::Result<(S, std::net::SocketAddr)>,
        wrap: impl FnOnce(std::net::TcpStream) -> S,
    ) -> io::Result<(S, std::net::SocketAddr)> {
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return direct();
        }
        self.with_flow(false, |flow, fd, token, driver| {
            let got = match flow.read_op {
                Some(op) => match driver.take_accept(op) {
                    None => return Err(io::ErrorKind::WouldBlock.into()),
                    Some(r) => {
                        flow.read_op = None;
                        Some(r)
                    }
                },
                None => None,
            };
            match got {
                Some(r) => r.map(|(sock, peer)| (wrap(sock), peer)),
                None => {
                    flow.read_op = Some(driver.submit_accept(fd, token)?);
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
        })
    }

    /// Collects a finished send of `flow`, recording its error.
    fn collect_send(flow: &mut Flow, driver: &mut crate::backend::Driver) {
        if let Some(op) = flow.write_op {
            if let Some((res, b)) = driver.take(op) {
                flow.write_op = None;
                flow.in_flight = 0;
                driver.recycle(b);
                if res < 0 {
                    flow.write_err = Some(-res);
                }
            }
        }
    }

    /// A non-blocking stream write: `Ok(n)` once `n` bytes are the
    /// backend's to send (in order), or `WouldBlock`. A readiness backend
    /// runs `direct` (the write syscall).
    pub(crate) fn write_with(
        &self,
        buf: &[u8],
        direct: impl FnOnce(&[u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return direct(buf);
        }
        let mut sources = inner.sources.borrow_mut();
        let Some(s) = sources.entries.get_mut(self.key) else {
            return Err(io::Error::other(Error::closed()));
        };
        let fd = s.fd;
        let token = self.key | SOURCE_TOKEN;
        let flow = Registration::completion_flow(s, &mut inner.driver.borrow_mut());
        let mut driver = inner.driver.borrow_mut();
        Registration::collect_send(flow, &mut driver);
        if let Some(errno) = flow.write_err {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if flow.shut {
            return Err(io::Error::from_raw_os_error(EPIPE));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if flow.in_flight >= SEND_LIMIT {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(SEND_LIMIT - flow.in_flight);
        let queued = match flow.write_op {
            Some(op) => driver.extend_send(op, &buf[..n], false),
            None => false,
        };
        if !queued {
            Registration::collect_send(flow, &mut driver);
            let mut b = driver.buffer(n);
            b.extend_from_slice(&buf[..n]);
            flow.write_op = Some(driver.submit_send(fd, token, b, false)?);
        }
        flow.in_flight += n;
        Ok(n)
    }

    /// `Ok` once every write accepted so far is sent, `WouldBlock` before
    /// (then wait for the next write event); the error of a failed send.
    pub(crate) fn flush_sends(&self) -> io::Result<()> {
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return Ok(());
        }
        let mut sources = inner.sources.borrow_mut();
        let Some(s) = sources.entries.get_mut(self.key) else {
            return Err(io::Error::other(Error::closed()));
        };
        let Some(flow) = s.flow.as_mut() else {
            return Ok(());
        };
        Registration::collect_send(flow, &mut inner.driver.borrow_mut());
        if let Some(errno) = flow.write_err {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if flow.write_op.is_some() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Shuts a stream down with `shut` (the shutdown syscall), the write
    /// side after the writes accepted so far: when a completion backend is
    /// still sending, the backend shuts the write side down after its last
    /// send, and only the read side (for `Shutdown::Both`) goes down now.
    /// Later writes fail with `BrokenPipe`.
    pub(crate) fn shutdown_stream(
        &self,
        how: std::net::Shutdown,
        shut: impl Fn(std::net::Shutdown) -> io::Result<()>,
    ) -> io::Result<()> {
        use std::net::Shutdown;
        if how == Shutdown::Read {
            return shut(how);
        }
        let direct = || shut(how);
        let deferred = || match how {
            Shutdown::Both => shut(Shutdown::Read),
            _ => Ok(()),
        };
        let inner = &self.lp.inner;
        if !inner.driver.borrow().completions() {
            return direct();
        }
        {
            let mut sources = inner.sources.borrow_mut();
            if let Some(s) = sources.entries.get_mut(self.key) {
                let flow = Registration::completion_flow(s, &mut inner.driver.borrow_mut());
                let mut driver = inner.driver.borrow_mut();
                Registration::collect_send(flow, &mut driver);
                flow.shut = true;
                if let Some(op) = flow.write_op {
                    if driver.extend_send(op, &[], true) {
                        drop(driver);
                        drop(sources);
                        return deferred();
                    }
                    Registration::collect_send(flow, &mut driver);
                }
            }
        }
        direct()
    }

    /// Leaves the loop; call before the socket closes. Queued writes of a
    /// completion backend are still sent (as the kernel would send what a
    /// closed socket had buffered); a receive in flight is cancelled.
    pub(crate) fn deregister(&self, src: &mut impl Source) {
        self.leave(src, false);
    }

    /// Like [`deregister`](Registration::deregister), but writes still
    /// queued in a completion backend are dropped (`abort`).
    pub(crate) fn deregister_discarding(&self, src: &mut impl Source) {
        self.leave(src, true);
    }

    fn leave(&self, src: &mut impl Source, discard: bool) {
        let inner = &self.lp.inner;
        if inner.is_closed() {
            return;
        }
        let flow = inner
            .sources
            .borrow_mut()
            .entries
            .get_mut(self.key)
            .and_then(|s| s.flow.take());
        if let Some(flow) = flow {
            let mut driver = inner.driver.borrow_mut();
            for op in flow.read_op.into_iter().chain(flow.multi) {
                driver.release(op);
            }
            for op in flow
                .write_op
                .into_iter()
                .chain(flow.dgram_sends.iter().map(|&(op, ..)| op))
            {
                if discard {
                    driver.cancel_transfer(op);
                } else {
                    driver.release(op);
                }
            }
            driver.recycle(flow.stash);
        }
        let _ = inner.driver.borrow_mut().deregister_source(src);
        let state = inner.sources.borrow_mut().entries.try_remove(self.key);
        if let Some(h) = state.as_ref().and_then(|s| s.handler.as_ref()) {
            h.cancel();
        }
        drop(state);
    }
}

/// A datagram's sender was not an IP address (on an IP socket: never
/// expected).
fn not_ip() -> io::Error {
    io::Error::other("a datagram arrived from an address that is not an IP address")
}
