//! Child processes and pipes (Unix) for `crate::process`: spawning, reaping
//! without blocking, and non-blocking pipe ends the loop can register.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus};

pub(crate) use mio::unix::pipe::{Receiver, Sender};

/// Starts `cmd` (stdio as configured on it).
pub(crate) fn spawn(cmd: &mut Command) -> io::Result<Child> {
    cmd.spawn()
}

/// Reaps `child` if it has exited; never blocks.
pub(crate) fn try_wait(child: &mut Child) -> io::Result<Option<ExitStatus>> {
    child.try_wait()
}

/// SIGKILL (a no-op once the child was reaped).
pub(crate) fn kill(child: &mut Child) -> io::Result<()> {
    child.kill()
}

/// A pipe's read end from any fd, made non-blocking.
pub(crate) fn receiver(fd: impl Into<OwnedFd>) -> io::Result<Receiver> {
    let rx = Receiver::from(fd.into());
    rx.set_nonblocking(true)?;
    Ok(rx)
}

/// A pipe's write end from any fd, made non-blocking.
pub(crate) fn sender(fd: impl Into<OwnedFd>) -> io::Result<Sender> {
    let tx = Sender::from(fd.into());
    tx.set_nonblocking(true)?;
    Ok(tx)
}

/// A new non-blocking pipe: (write end, read end).
pub(crate) fn pipe() -> io::Result<(Sender, Receiver)> {
    mio::unix::pipe::new()
}

pub(crate) fn read(rx: &Receiver, buf: &mut [u8]) -> io::Result<usize> {
    let mut r = rx;
    r.read(buf)
}

pub(crate) fn write(tx: &Sender, buf: &[u8]) -> io::Result<usize> {
    let mut w = tx;
    w.write(buf)
}
