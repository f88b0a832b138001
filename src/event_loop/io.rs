//! Readiness callbacks on raw file descriptors (Unix):
//! `add_reader` / `remove_reader` / `add_writer` / `remove_writer`.

use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::panic::Location;
use std::rc::Rc;

use slab::Slab;

use super::handle::{Callback, Repeating};
use super::EventLoop;
use crate::backend::{Event, Interest};
use crate::Error;

#[derive(Default)]
pub(crate) struct IoRegistry {
    by_fd: HashMap<RawFd, usize>,
    entries: Slab<FdEntry>,
}

struct FdEntry {
    fd: RawFd,
    reader: Option<Rc<Repeating>>,
    writer: Option<Rc<Repeating>>,
}

impl FdEntry {
    fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
        }
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

impl EventLoop {
    /// Calls `callback` whenever `fd` is readable, until
    /// [`remove_reader`](EventLoop::remove_reader) (level-triggered, as
    /// asyncio's `add_reader`). Replaces an earlier reader of the same fd.
    ///
    /// The loop does not own `fd`: remove the reader before closing it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop;
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the backend refuses the fd
    /// (not open, or a kind of file that cannot be polled, such as a regular file).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::{io::AsRawFd, net::UnixStream};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (mut a, b) = UnixStream::pair().unwrap();
    /// b.set_nonblocking(true).unwrap();
    /// let fd = b.as_raw_fd();
    /// let l2 = lp.clone();
    /// lp.add_reader(fd, move || {
    ///     let mut buf = [0; 16];
    ///     let n = (&b).read(&mut buf).unwrap();
    ///     assert_eq!(&buf[..n], b"ping");
    ///     l2.remove_reader(fd).unwrap();
    ///     l2.stop();
    /// })
    /// .unwrap();
    /// a.write_all(b"ping").unwrap();
    /// lp.run_forever().unwrap();
    /// lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn add_reader(&self, fd: RawFd, callback: impl FnMut() + 'static) -> Result<(), Error> {
        self.add_io(fd, Dir::Read, Box::new(callback), Location::caller())
    }

    /// Calls `callback` whenever `fd` is writable, until
    /// [`remove_writer`](EventLoop::remove_writer). See
    /// [`add_reader`](EventLoop::add_reader).
    ///
    /// # Errors
    ///
    /// As [`add_reader`](EventLoop::add_reader).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::{io::AsRawFd, net::UnixStream};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (a, _b) = UnixStream::pair().unwrap();
    /// let fd = a.as_raw_fd();
    /// let l2 = lp.clone();
    /// lp.add_writer(fd, move || {
    ///     l2.remove_writer(fd).unwrap();
    ///     l2.stop();
    /// })
    /// .unwrap();
    /// lp.run_forever().unwrap();
    /// lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn add_writer(&self, fd: RawFd, callback: impl FnMut() + 'static) -> Result<(), Error> {
        self.add_io(fd, Dir::Write, Box::new(callback), Location::caller())
    }

    /// Stops watching `fd` for reading. Returns whether a reader was
    /// registered.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the backend fails to update
    /// the registration.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.remove_reader(0).unwrap());
    /// # lp.close().unwrap();
    /// ```
    pub fn remove_reader(&self, fd: RawFd) -> Result<bool, Error> {
        self.remove_io(fd, Dir::Read)
    }

    /// Stops watching `fd` for writing. Returns whether a writer was
    /// registered.
    ///
    /// # Errors
    ///
    /// As [`remove_reader`](EventLoop::remove_reader).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.remove_writer(1).unwrap());
    /// # lp.close().unwrap();
    /// ```
    pub fn remove_writer(&self, fd: RawFd) -> Result<bool, Error> {
        self.remove_io(fd, Dir::Write)
    }

    fn add_io(
        &self,
        fd: RawFd,
        dir: Dir,
        f: Box<dyn FnMut()>,
        location: &'static Location<'static>,
    ) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let what = match dir {
            Dir::Read => "add_reader",
            Dir::Write => "add_writer",
        };
        if fd < 0 {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("{what}: {fd} is not a file descriptor"),
            ));
        }
        let cb = Repeating::new(f, crate::context::entered_task_context(), location);
        let mut io = self.inner.io.borrow_mut();
        let mut driver = self.inner.driver.borrow_mut();
        let old = match io.by_fd.get(&fd).copied() {
            Some(token) => {
                let entry = &mut io.entries[token];
                let slot = match dir {
                    Dir::Read => &mut entry.reader,
                    Dir::Write => &mut entry.writer,
                };
                let old = slot.replace(cb);
                let interest = entry.interest();
                let res = driver.reregister(fd, token, interest);
                // The fd may have been closed and reopened behind our back:
                // the kernel forgot it, so register it afresh.
                let res = match res {
                    Err(e) if e.raw_os_error() == Some(2) => driver.register(fd, token, interest),
                    r => r,
                };
                if let Err(e) = res {
                    let entry = &mut io.entries[token];
                    let slot = match dir {
                        Dir::Read => &mut entry.reader,
                        Dir::Write => &mut entry.writer,
                    };
                    let rejected = std::mem::replace(slot, old);
                    drop(driver);
                    drop(io);
                    // Dropped outside the borrows: it may run user code.
                    drop(rejected);
                    return Err(Error::io(format_args!("{what}(fd {fd})"), e));
                }
                old
            }
            None => {
                let entry = io.entries.vacant_entry();
                let token = entry.key();
                let mut fe = FdEntry {
                    fd,
                    reader: None,
                    writer: None,
                };
                match dir {
                    Dir::Read => fe.reader = Some(cb),
                    Dir::Write => fe.writer = Some(cb),
                }
                if let Err(e) = driver.register(fd, token, fe.interest()) {
                    drop(driver);
                    drop(io);
                    drop(fe);
                    return Err(Error::io(format_args!("{what}(fd {fd})"), e));
                }
                entry.insert(fe);
                io.by_fd.insert(fd, token);
                None
            }
        };
        drop(driver);
        drop(io);
        if let Some(old) = old {
            old.cancel();
        }
        Ok(())
    }

    fn remove_io(&self, fd: RawFd, dir: Dir) -> Result<bool, Error> {
        if self.is_closed() {
            return Ok(false);
        }
        let mut io = self.inner.io.borrow_mut();
        let Some(token) = io.by_fd.get(&fd).copied() else {
            return Ok(false);
        };
        let entry = &mut io.entries[token];
        let old = match dir {
            Dir::Read => entry.reader.take(),
            Dir::Write => entry.writer.take(),
        };
        let Some(old) = old else { return Ok(false) };
        old.cancel();
        let interest = entry.interest();
        let mut driver = self.inner.driver.borrow_mut();
        let res = if interest.is_empty() {
            io.entries.remove(token);
            io.by_fd.remove(&fd);
            driver.deregister(fd)
        } else {
            driver.reregister(fd, token, interest)
        };
        drop(driver);
        drop(io);
        drop(old);
        match res {
            // The fd was already closed: the kernel dropped it for us.
            Err(e) if matches!(e.raw_os_error(), Some(2) | Some(9)) => Ok(true),
            Err(e) => Err(Error::io(format_args!("removing fd {fd} from the loop"), e)),
            Ok(()) => Ok(true),
        }
    }

    /// Queues the callbacks of ready fds and re-arms them, so an fd that is
    /// still ready after its callback ran is reported again (level-triggered).
    pub(super) fn dispatch_io(&self, events: &[Event]) {
        let inner = &*self.inner;
        let io = inner.io.borrow();
        let mut driver = inner.driver.borrow_mut();
        for ev in events
            .iter()
            .filter(|e| e.token & super::source::SOURCE_TOKEN == 0)
        {
            let Some(entry) = io.entries.get(ev.token) else {
                continue;
            };
            if ev.readable {
                if let Some(r) = &entry.reader {
                    inner.push_ready(r.clone() as Rc<dyn Callback>);
                }
            }
            if ev.writable {
                if let Some(w) = &entry.writer {
                    inner.push_ready(w.clone() as Rc<dyn Callback>);
                }
            }
            let _ = driver.reregister(entry.fd, ev.token, entry.interest());
        }
    }

    pub(super) fn close_io(&self) {
        let io = std::mem::take(&mut *self.inner.io.borrow_mut());
        let mut driver = self.inner.driver.borrow_mut();
        for (_, entry) in io.entries.iter() {
            let _ = driver.deregister(entry.fd);
        }
        drop(driver);
        drop(io);
    }
}
