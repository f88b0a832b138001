//! Subprocesses and pipes on the loop (Unix): asyncio's `subprocess_exec` /
//! `subprocess_shell`, a [`Command`] builder mirroring
//! [`std::process::Command`], and [`PipeReader`] / [`PipeWriter`]
//! (asyncio's `connect_read_pipe` / `connect_write_pipe`).
//!
//! A child's piped stdin / stdout / stderr are non-blocking pipes registered
//! with the loop, implementing `futures::io::AsyncWrite` / `AsyncRead`.
//!
//! **How exits are noticed.** Each running [`Child`] listens for SIGCHLD
//! through the loop's signal machinery (see [`crate::signal`]); on each
//! SIGCHLD it reaps *its own* pid without blocking (`waitpid(pid, WNOHANG)`),
//! so it never steals the exit status of a process it did not start, no
//! thread is spent per child, and loops on several threads may each run
//! children. Do not set SIGCHLD to "ignore" in a program that uses this
//! module (the kernel would then reap children itself and `wait` fails).
//!
//! Dropping a [`Child`] neither kills nor reaps it (as with `std`): call
//! [`Child::wait`] (or [`kill`](Child::kill) then `wait`).
//!
//! # Examples
//!
//! ```
//! use futures::io::AsyncReadExt;
//! use aioloop::process::{Command, Stdio};
//!
//! aioloop::run(async {
//!     let mut child = Command::new("echo").arg("hi").stdout(Stdio::piped()).spawn()?;
//!     let mut out = String::new();
//!     child.stdout.take().unwrap().read_to_string(&mut out).await?;
//!     let status = child.wait().await?;
//!     assert!(status.success());
//!     assert_eq!(out, "hi\n");
//!     Ok::<_, aioloop::Error>(())
//! })
//! .unwrap()
//! .unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitStatus;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::io::{AsyncRead, AsyncWrite};

pub use std::process::Stdio;

use crate::backend::process as sys;
use crate::event_loop::source::{Direction, Registration};
use crate::signal::{consts::SIGCHLD, subscribe, Subscription};
use crate::{Error, ErrorKind, EventLoop};

fn running(what: &str) -> Result<EventLoop, Error> {
    crate::get_running_loop().map_err(|_| {
        Error::new(
            ErrorKind::NoRunningLoop,
            format!(
                "{what} needs a running event loop: call it inside a task or aioloop::run(), \
                 or use the `*_on(&loop, ..)` form"
            ),
        )
    })
}

fn closed_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the pipe was closed")
}

/// The read end of a pipe on the loop: `futures::io::AsyncRead`. A child's
/// stdout and stderr are of this type; [`from_owned_fd`](PipeReader::from_owned_fd)
/// wraps any readable pipe or FIFO (asyncio's `connect_read_pipe`).
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
///
/// aioloop::run(async {
///     let (mut w, mut r) = aioloop::process::pipe()?;
///     w.write_all(b"through the pipe").await?;
///     drop(w);
///     let mut got = Vec::new();
///     r.read_to_end(&mut got).await?;
///     assert_eq!(got, b"through the pipe");
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct PipeReader {
    io: sys::Receiver,
    reg: Registration,
}

/// The write end of a pipe on the loop: `futures::io::AsyncWrite`. A
/// child's stdin is of this type; [`from_owned_fd`](PipeWriter::from_owned_fd)
/// wraps any writable pipe or FIFO (asyncio's `connect_write_pipe`).
///
/// `close().await` (from `AsyncWriteExt`) closes the pipe, so the reader
/// sees end-of-file; dropping it does too.
///
/// # Examples
///
/// See [`PipeReader`].
pub struct PipeWriter {
    io: Option<sys::Sender>,
    reg: Registration,
}

/// A child's stdin.
pub type ChildStdin = PipeWriter;
/// A child's stdout.
pub type ChildStdout = PipeReader;
/// A child's stderr.
pub type ChildStderr = PipeReader;

/// Makes a new pipe on the running loop: `(write end, read end)`.
///
/// # Errors
///
/// [`ErrorKind::NoRunningLoop`] outside a running loop; [`ErrorKind::Io`]
/// when the OS cannot make a pipe (too many open files).
///
/// # Examples
///
/// See [`PipeReader`].
pub fn pipe() -> Result<(PipeWriter, PipeReader), Error> {
    pipe_on(&running("aioloop::process::pipe")?)
}

/// Makes a new pipe on the loop `lp`: `(write end, read end)`.
///
/// # Errors
///
/// As [`pipe`], and [`ErrorKind::Closed`] on a closed loop.
///
/// # Examples
///
/// ```
/// let lp = aioloop::EventLoop::new().unwrap();
/// let (w, r) = aioloop::process::pipe_on(&lp).unwrap();
/// drop((w, r));
/// lp.close().unwrap();
/// ```
pub fn pipe_on(lp: &EventLoop) -> Result<(PipeWriter, PipeReader), Error> {
    if lp.is_closed() {
        return Err(Error::closed());
    }
    let (tx, rx) = sys::pipe().map_err(|e| Error::io("creating a pipe", e))?;
    Ok((PipeWriter::register(lp, tx)?, PipeReader::register(lp, rx)?))
}

impl PipeReader {
    fn register(lp: &EventLoop, mut io: sys::Receiver) -> Result<PipeReader, Error> {
        let reg = Registration::new(lp, &mut io)?;
        Ok(PipeReader { io, reg })
    }

    /// Wraps the read end of a pipe (or FIFO, or character device that can
    /// be polled) on the running loop; the fd is made non-blocking and
    /// closed when the reader is dropped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`] outside a running loop; [`ErrorKind::Io`]
    /// when the fd cannot be polled (a regular file, for example).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::AsyncReadExt;
    /// use std::io::Write;
    ///
    /// aioloop::run(async {
    ///     // Any pollable fd will do: a FIFO, a pipe, a socket.
    ///     let (r, mut w) = std::os::unix::net::UnixStream::pair()?;
    ///     w.write_all(b"std pipe")?;
    ///     drop(w);
    ///     let mut r = aioloop::process::PipeReader::from_owned_fd(r)?;
    ///     let mut s = String::new();
    ///     r.read_to_string(&mut s).await?;
    ///     assert_eq!(s, "std pipe");
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    pub fn from_owned_fd(fd: impl Into<OwnedFd>) -> Result<PipeReader, Error> {
        PipeReader::from_owned_fd_on(&running("PipeReader::from_owned_fd")?, fd)
    }

    /// As [`from_owned_fd`](PipeReader::from_owned_fd), on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`from_owned_fd`](PipeReader::from_owned_fd), and
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let r = aioloop::process::PipeReader::from_owned_fd_on(&lp, r).unwrap();
    /// drop(r);
    /// lp.close().unwrap();
    /// ```
    pub fn from_owned_fd_on(lp: &EventLoop, fd: impl Into<OwnedFd>) -> Result<PipeReader, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let io = sys::receiver(fd).map_err(|e| Error::io("making a pipe non-blocking", e))?;
        PipeReader::register(lp, io)
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.reg
            .poll_io(cx, Direction::Read, || sys::read(&this.io, buf))
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.reg.deregister(&mut self.io);
    }
}

impl fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReader").finish_non_exhaustive()
    }
}

impl PipeWriter {
    fn register(lp: &EventLoop, mut io: sys::Sender) -> Result<PipeWriter, Error> {
        let reg = Registration::new(lp, &mut io)?;
        Ok(PipeWriter { io: Some(io), reg })
    }

    /// Wraps the write end of a pipe (or FIFO) on the running loop; the fd
    /// is made non-blocking and closed when the writer is dropped or closed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`] outside a running loop; [`ErrorKind::Io`]
    /// when the fd cannot be polled.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::AsyncWriteExt;
    /// use std::io::Read;
    ///
    /// aioloop::run(async {
    ///     let (mut r, w) = std::os::unix::net::UnixStream::pair()?;
    ///     let mut w = aioloop::process::PipeWriter::from_owned_fd(w)?;
    ///     w.write_all(b"to std").await?;
    ///     w.close().await?;
    ///     let mut s = String::new();
    ///     r.read_to_string(&mut s)?;
    ///     assert_eq!(s, "to std");
    ///     Ok::<_, aioloop::Error>(())
    /// })
    /// .unwrap()
    /// .unwrap();
    /// ```
    pub fn from_owned_fd(fd: impl Into<OwnedFd>) -> Result<PipeWriter, Error> {
        PipeWriter::from_owned_fd_on(&running("PipeWriter::from_owned_fd")?, fd)
    }

    /// As [`from_owned_fd`](PipeWriter::from_owned_fd), on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`from_owned_fd`](PipeWriter::from_owned_fd), and
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (_r, w) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let w = aioloop::process::PipeWriter::from_owned_fd_on(&lp, w).unwrap();
    /// drop(w);
    /// lp.close().unwrap();
    /// ```
    pub fn from_owned_fd_on(lp: &EventLoop, fd: impl Into<OwnedFd>) -> Result<PipeWriter, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let io = sys::sender(fd).map_err(|e| Error::io("making a pipe non-blocking", e))?;
        PipeWriter::register(lp, io)
    }

    fn shut(&mut self) {
        if let Some(mut io) = self.io.take() {
            self.reg.deregister(&mut io);
        }
    }
}

impl AsyncWrite for PipeWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(io) = &this.io else {
            return Poll::Ready(Err(closed_pipe()));
        };
        this.reg
            .poll_io(cx, Direction::Write, || sys::write(io, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().shut();
        Poll::Ready(Ok(()))
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.shut();
    }
}

impl fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeWriter")
            .field("closed", &self.io.is_none())
            .finish_non_exhaustive()
    }
}

/// A process builder: [`std::process::Command`]'s methods, and
/// [`spawn`](Command::spawn) on the loop.
///
/// As with `std`, stdin/stdout/stderr are inherited unless set; pass
/// [`Stdio::piped()`] to get an async pipe in the [`Child`].
///
/// # Examples
///
/// ```
/// use aioloop::process::Command;
///
/// aioloop::run(async {
///     let status = Command::new("sh").arg("-c").arg("exit 3").spawn()?.wait().await?;
///     assert_eq!(status.code(), Some(3));
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct Command {
    inner: std::process::Command,
}

impl From<std::process::Command> for Command {
    fn from(inner: std::process::Command) -> Command {
        Command { inner }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl Command {
    /// A command running `program` (looked up in `PATH` when it has no `/`).
    ///
    /// # Examples
    ///
    /// See [`Command`].
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            inner: std::process::Command::new(program),
        }
    }

    /// Adds one argument.
    ///
    /// # Examples
    ///
    /// See [`Command`].
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = aioloop::process::Command::new("ls");
    /// cmd.args(["-l", "/"]);
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = aioloop::process::Command::new("env");
    /// cmd.env("GREETING", "hi");
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Removes an environment variable from the child's environment.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = aioloop::process::Command::new("env");
    /// cmd.env_remove("HOME");
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Starts the child with an empty environment.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = aioloop::process::Command::new("/usr/bin/env");
    /// cmd.env_clear();
    /// ```
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the child's working directory.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut cmd = aioloop::process::Command::new("pwd");
    /// cmd.current_dir("/");
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// Sets the child's stdin ([`Stdio::piped()`] gives [`Child::stdin`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::process::{Command, Stdio};
    /// let mut cmd = Command::new("cat");
    /// cmd.stdin(Stdio::piped()).stdout(Stdio::null());
    /// ```
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdin(cfg);
        self
    }

    /// Sets the child's stdout ([`Stdio::piped()`] gives [`Child::stdout`]).
    ///
    /// # Examples
    ///
    /// See [`stdin`](Command::stdin).
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdout(cfg);
        self
    }

    /// Sets the child's stderr ([`Stdio::piped()`] gives [`Child::stderr`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::process::{Command, Stdio};
    /// let mut cmd = Command::new("ls");
    /// cmd.stderr(Stdio::null());
    /// ```
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stderr(cfg);
        self
    }

    /// Starts the process on the running loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoRunningLoop`] outside a running loop (see
    /// [`spawn_on`](Command::spawn_on)); [`ErrorKind::Io`] when the program
    /// cannot be started (not found, not executable: the message names it).
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let err = aioloop::process::Command::new("no-such-program-xyz").spawn().unwrap_err();
    ///     assert_eq!(err.kind(), aioloop::ErrorKind::Io);
    ///     assert!(err.to_string().contains("no-such-program-xyz"));
    /// })
    /// .unwrap();
    /// ```
    pub fn spawn(&mut self) -> Result<Child, Error> {
        self.spawn_on(&running("Command::spawn")?)
    }

    /// Starts the process on the loop `lp`.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Command::spawn), and [`ErrorKind::Closed`] on a closed
    /// loop (nothing is started then).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let mut child = aioloop::process::Command::new("true").spawn_on(&lp).unwrap();
    /// let status = lp.run_until_complete(child.wait()).unwrap().unwrap();
    /// assert!(status.success());
    /// lp.close().unwrap();
    /// ```
    pub fn spawn_on(&mut self, lp: &EventLoop) -> Result<Child, Error> {
        if lp.is_closed() {
            return Err(Error::closed());
        }
        let program = self.inner.get_program().to_string_lossy().into_owned();
        let state = Rc::new(ChildState {
            child: RefCell::new(None),
            status: Cell::new(None),
            waker: RefCell::new(None),
        });
        // Listen before starting, so no SIGCHLD is missed.
        let s = state.clone();
        let sub = subscribe(lp, SIGCHLD, false, move || s.poll_exit())?;
        let mut child = sys::spawn(&mut self.inner)
            .map_err(|e| Error::io(format_args!("starting {program:?}"), e))?;
        let stdin = match child.stdin.take() {
            Some(p) => Some(
                sys::sender(p)
                    .map_err(|e| Error::io("making the child's stdin non-blocking", e))
                    .and_then(|io| PipeWriter::register(lp, io))?,
            ),
            None => None,
        };
        let stdout = match child.stdout.take() {
            Some(p) => Some(
                sys::receiver(p)
                    .map_err(|e| Error::io("making the child's stdout non-blocking", e))
                    .and_then(|io| PipeReader::register(lp, io))?,
            ),
            None => None,
        };
        let stderr = match child.stderr.take() {
            Some(p) => Some(
                sys::receiver(p)
                    .map_err(|e| Error::io("making the child's stderr non-blocking", e))
                    .and_then(|io| PipeReader::register(lp, io))?,
            ),
            None => None,
        };
        let pid = child.id();
        *state.child.borrow_mut() = Some(child);
        Ok(Child {
            stdin,
            stdout,
            stderr,
            pid,
            program,
            state,
            sub: Some(sub),
        })
    }
}

struct ChildState {
    child: RefCell<Option<std::process::Child>>,
    status: Cell<Option<ExitStatus>>,
    waker: RefCell<Option<Waker>>,
}

impl ChildState {
    /// Reaps the child if it exited (never blocks); wakes the waiter.
    fn poll_exit(&self) {
        if self.status.get().is_some() {
            return;
        }
        let res = match self.child.borrow_mut().as_mut() {
            Some(c) => sys::try_wait(c),
            None => return,
        };
        match res {
            Ok(Some(st)) => {
                self.status.set(Some(st));
                if let Some(w) = self.waker.borrow_mut().take() {
                    w.wake();
                }
            }
            Ok(None) => {}
            Err(e) => log::warn!("aioloop: checking a child process failed: {e}"),
        }
    }
}

/// A running (or finished) child process on the loop.
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// use aioloop::process::{Command, Stdio};
///
/// aioloop::run(async {
///     let mut child = Command::new("cat")
///         .stdin(Stdio::piped())
///         .stdout(Stdio::piped())
///         .spawn()?;
///     let mut stdin = child.stdin.take().unwrap();
///     stdin.write_all(b"echo me").await?;
///     stdin.close().await?;
///     let mut out = Vec::new();
///     child.stdout.take().unwrap().read_to_end(&mut out).await?;
///     assert_eq!(out, b"echo me");
///     assert!(child.wait().await?.success());
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub struct Child {
    /// The child's stdin, when it was [`Stdio::piped()`].
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, when it was [`Stdio::piped()`].
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, when it was [`Stdio::piped()`].
    pub stderr: Option<ChildStderr>,
    pid: u32,
    program: String,
    state: Rc<ChildState>,
    sub: Option<Subscription>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("program", &self.program)
            .field("status", &self.state.status.get())
            .finish_non_exhaustive()
    }
}

impl Child {
    /// The child's process id.
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let mut child = aioloop::process::Command::new("true").spawn().unwrap();
    ///     assert!(child.id() > 0);
    ///     child.wait().await.unwrap();
    /// })
    /// .unwrap();
    /// ```
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// asyncio's `returncode`: `None` while the child runs, else its exit
    /// code, or minus the signal number that ended it (`-9` after
    /// [`kill`](Child::kill)). Never blocks.
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let mut child = aioloop::process::Command::new("sleep").arg("10").spawn().unwrap();
    ///     assert_eq!(child.returncode(), None);
    ///     child.kill().unwrap();
    ///     child.wait().await.unwrap();
    ///     assert_eq!(child.returncode(), Some(-9));
    /// })
    /// .unwrap();
    /// ```
    pub fn returncode(&self) -> Option<i32> {
        self.state.poll_exit();
        self.state
            .status
            .get()
            .map(|st| st.code().unwrap_or_else(|| -st.signal().unwrap_or(0)))
    }

    /// The exit status if the child has exited (reaping it), `None` while
    /// it runs. Never blocks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the OS cannot tell (the child was reaped by
    /// someone else).
    ///
    /// # Examples
    ///
    /// ```
    /// aioloop::run(async {
    ///     let mut child = aioloop::process::Command::new("true").spawn().unwrap();
    ///     let st = child.wait().await.unwrap();
    ///     assert_eq!(child.try_wait().unwrap(), Some(st));
    /// })
    /// .unwrap();
    /// ```
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if let Some(st) = self.state.status.get() {
            return Ok(Some(st));
        }
        let res = match self.state.child.borrow_mut().as_mut() {
            Some(c) => sys::try_wait(c),
            None => Ok(None),
        };
        let st = res.map_err(|e| {
            Error::io(
                format_args!("checking child {} ({:?})", self.pid, self.program),
                e,
            )
        })?;
        if st.is_some() {
            self.state.status.set(st);
        }
        Ok(st)
    }

    /// Kills the child (SIGKILL). Does nothing once it has exited and been
    /// waited for; call [`wait`](Child::wait) afterwards to reap it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the OS refuses.
    ///
    /// # Examples
    ///
    /// See [`returncode`](Child::returncode).
    pub fn kill(&mut self) -> Result<(), Error> {
        if self.state.status.get().is_some() {
            return Ok(());
        }
        let res = match self.state.child.borrow_mut().as_mut() {
            Some(c) => sys::kill(c),
            None => Ok(()),
        };
        res.map_err(|e| {
            Error::io(
                format_args!("killing child {} ({:?})", self.pid, self.program),
                e,
            )
        })
    }

    /// Waits for the child to exit, without blocking the loop, and returns
    /// its status. Closes the child's stdin first (as `tokio` does), so a
    /// child reading its input to the end can finish.
    ///
    /// Read the child's stdout/stderr pipes concurrently (or before): a
    /// child blocked on a full pipe never exits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the exit status cannot be read (the child was
    /// reaped by someone else, or SIGCHLD is ignored);
    /// [`ErrorKind::Closed`] when the loop closes first.
    ///
    /// # Examples
    ///
    /// See [`Command`].
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        let pid = self.pid;
        let program = self.program.clone();
        let state = self.state.clone();
        let closed = self.sub.as_ref().map(Subscription::loop_gone);
        let st = poll_fn(|cx| {
            if let Some(st) = state.status.get() {
                return Poll::Ready(Ok(st));
            }
            let res = match state.child.borrow_mut().as_mut() {
                Some(c) => sys::try_wait(c),
                None => Ok(None),
            };
            match res {
                Ok(Some(st)) => {
                    state.status.set(Some(st));
                    Poll::Ready(Ok(st))
                }
                Ok(None) => {
                    if closed.as_ref().is_some_and(|f| f()) {
                        return Poll::Ready(Err(Error::closed()));
                    }
                    *state.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(Error::io(
                    format_args!("waiting for child {pid} ({program:?})"),
                    e,
                ))),
            }
        })
        .await?;
        // Exited: stop listening for SIGCHLD.
        self.sub = None;
        Ok(st)
    }
}

impl EventLoop {
    /// Starts `program` with `args` on this loop, with stdin, stdout and
    /// stderr all piped (asyncio's `subprocess_exec` with `PIPE` for each).
    /// Use [`Command`] for other settings. Unix only.
    ///
    /// # Errors
    ///
    /// As [`Command::spawn_on`].
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::AsyncReadExt;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let out = lp
    ///     .run_until_complete(async {
    ///         let lp = aioloop::get_running_loop()?;
    ///         let mut child = lp.subprocess_exec("printf", ["%s-%s", "a", "b"])?;
    ///         let mut out = String::new();
    ///         child.stdout.take().unwrap().read_to_string(&mut out).await?;
    ///         child.wait().await?;
    ///         Ok::<_, aioloop::Error>(out)
    ///     })
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!(out, "a-b");
    /// lp.close().unwrap();
    /// ```
    pub fn subprocess_exec<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Result<Child, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_on(self)
    }

    /// Runs `cmd` with `/bin/sh -c` on this loop, with stdin, stdout and
    /// stderr piped (asyncio's `subprocess_shell`). Quote untrusted input
    /// yourself, or use [`subprocess_exec`](EventLoop::subprocess_exec).
    ///
    /// # Errors
    ///
    /// As [`Command::spawn_on`].
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let code = lp
    ///     .run_until_complete(async {
    ///         let lp = aioloop::get_running_loop()?;
    ///         let st = lp.subprocess_shell("exit 7")?.wait().await?;
    ///         Ok::<_, aioloop::Error>(st.code())
    ///     })
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!(code, Some(7));
    /// lp.close().unwrap();
    /// ```
    pub fn subprocess_shell(&self, cmd: impl AsRef<OsStr>) -> Result<Child, Error> {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_on(self)
    }
}
