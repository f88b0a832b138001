//! I/O objects on the loop: a [`Registration`] ties one backend socket to the
//! loop's readiness table, so futures can wait for a direction to be ready.
//!
//! The driver reports readiness edges; the table keeps one bit per direction,
//! set by an event and cleared when an operation reports `WouldBlock`, plus
//! the wakers of the tasks waiting in each direction (several tasks may wait
//! on one shared socket: all are woken, and each retries its operation).

use std::io;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::EventLoop;
use crate::backend::sys::net::Source;
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
    read_wakers: Vec<Waker>,
    write_wakers: Vec<Waker>,
}

/// The loop's readiness table.
#[derive(Default)]
pub(crate) struct Sources {
    entries: Slab<SourceState>,
}

impl Sources {
    /// Records one event and returns the wakers to call (outside the borrow).
    pub(crate) fn dispatch(&mut self, ev: &Event, wake: &mut Vec<Waker>) {
        let Some(s) = self.entries.get_mut(ev.token & !SOURCE_TOKEN) else {
            return;
        };
        if ev.readable {
            s.readable = true;
            wake.append(&mut s.read_wakers);
        }
        if ev.writable {
            s.writable = true;
            wake.append(&mut s.write_wakers);
        }
    }

    /// Empties the table (the loop is closing): waiters are woken and their
    /// next operation reports that the loop is closed.
    pub(crate) fn close(&mut self) -> Vec<Waker> {
        self.entries
            .drain()
            .flat_map(|s| s.read_wakers.into_iter().chain(s.write_wakers))
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
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let inner = &lp.inner;
        let key = inner.sources.borrow_mut().entries.insert(SourceState {
            readable: true,
            writable: true,
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
                    Direction::Read => (s.readable, &mut s.read_wakers),
                    Direction::Write => (s.writable, &mut s.write_wakers),
                };
                if !ready {
                    if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear(dir),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
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
        drop(state);
    }
}
