//! Networking on the loop: TCP streams and listeners that implement
//! `futures::io::AsyncRead` / `AsyncWrite`.
//!
//! Every object belongs to one loop (the running loop when it is made, or the
//! one named with an `*_on` constructor) and goes through the backend: this
//! module makes no system call itself.

/// `AsyncRead` + `AsyncWrite` + `Drop` for a stream type whose `io` field is
/// a backend stream socket (read and written through `&`) and whose `reg`
/// field is its [`Registration`](crate::event_loop::source::Registration).
/// Closing shuts the write side down; writes go straight to the kernel, so
/// flushing has nothing to do.
macro_rules! impl_stream_io {
    ($ty:ty) => {
        impl futures::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                use std::io::Read;
                let this = self.get_mut();
                let (reg, io) = (&this.reg, &this.io);
                reg.poll_stream(
                    cx,
                    crate::event_loop::source::Direction::Read,
                    buf.len(),
                    || reg.read_with(buf, |b| (&*io).read(b)),
                )
            }
        }

        impl futures::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                use std::io::Write;
                let this = self.get_mut();
                let (reg, io) = (&this.reg, &this.io);
                reg.poll_stream(
                    cx,
                    crate::event_loop::source::Direction::Write,
                    buf.len(),
                    || reg.write_with(buf, |b| (&*io).write(b)),
                )
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                use std::io::Write;
                let this = self.get_mut();
                let (reg, io) = (&this.reg, &this.io);
                if reg.completions() {
                    // The backend copies into its own buffer anyway: one
                    // slice at a time is as good as a gather.
                    let first = bufs
                        .iter()
                        .find(|b| !b.is_empty())
                        .map_or(&[][..], |b| &**b);
                    return reg.poll_stream(
                        cx,
                        crate::event_loop::source::Direction::Write,
                        first.len(),
                        || reg.write_with(first, |b| (&*io).write(b)),
                    );
                }
                reg.poll_io(cx, crate::event_loop::source::Direction::Write, || {
                    (&*io).write_vectored(bufs)
                })
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                // Writes go straight to the kernel on a readiness backend;
                // a completion backend may still be sending them.
                let reg = &self.reg;
                reg.poll_io(cx, crate::event_loop::source::Direction::Write, || {
                    reg.flush_sends()
                })
            }

            fn poll_close(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.as_mut().poll_flush(cx) {
                    std::task::Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                let this = &*self;
                let res = this
                    .reg
                    .shutdown_with(|| this.io.shutdown(std::net::Shutdown::Write), || Ok(()));
                match res {
                    Err(e) if e.kind() != std::io::ErrorKind::NotConnected => {
                        std::task::Poll::Ready(Err(e))
                    }
                    _ => std::task::Poll::Ready(Ok(())),
                }
            }
        }

        impl Drop for $ty {
            fn drop(&mut self) {
                self.reg.deregister(&mut self.io);
            }
        }
    };
}

mod dns;
mod protocol;
mod sock;
mod tcp;
mod udp;
#[cfg(unix)]
mod unix;

pub use protocol::{
    DatagramProtocol, DatagramTransport, ExtraInfo, Protocol, Server, Transport,
    ACCEPT_RETRY_DELAY, DEFAULT_HIGH_WATER, HARD_LIMIT_FACTOR,
};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
#[cfg(unix)]
pub use unix::{UnixDatagram, UnixListener, UnixStream};

use crate::{Error, EventLoop};

/// The running loop, or an error that says where I/O objects may be made.
fn running(what: &str) -> Result<EventLoop, Error> {
    crate::get_running_loop().map_err(|_| {
        Error::new(
            crate::ErrorKind::NoRunningLoop,
            format!(
                "{what} needs a running event loop: call it inside a task or aioloop::run(), \
                 or use the `*_on(&loop, ..)` constructor"
            ),
        )
    })
}
