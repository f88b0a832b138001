//! The selector backend: readiness through `mio` (epoll, kqueue, AFD).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Event};

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
    pub(crate) use mio::net::{TcpListener, TcpStream, UdpSocket};
    #[cfg(unix)]
    pub(crate) use mio::net::{UnixDatagram, UnixListener, UnixStream};

    use super::Driver;
    use std::io;

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
}

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
