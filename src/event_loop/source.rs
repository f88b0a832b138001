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
use crate::backend::Event;
use crate::Error;

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
}

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

    /// Leaves the loop; call before the socket closes.
    pub(crate) fn deregister(&self, src: &mut impl Source) {
        let inner = &self.lp.inner;
        if inner.is_closed() {
            return;
        }
        let _ = inner.driver.borrow_mut().deregister_source(src);
        let state = inner.sources.borrow_mut().entries.try_remove(self.key);
        if let Some(h) = state.as_ref().and_then(|s| s.handler.as_ref()) {
            h.cancel();
        }
        drop(state);
    }
}
