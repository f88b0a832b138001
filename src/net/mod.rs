//! Networking on the loop: TCP streams and listeners that implement
//! `futures::io::AsyncRead` / `AsyncWrite`.
//!
//! Every object belongs to one loop (the running loop when it is made, or the
//! one named with an `*_on` constructor) and goes through the backend: this
//! module makes no system call itself.

/// `AsyncRead` + `AsyncWrite` + `Drop` for a stream type whose `io` field is
/// a backend stream socket (read and written through `&`) and whose `reg`
/// field is its [`Registration`](crate::event_loop::source::Registration).
/// On a readiness backend, reads smaller than [`ReadAhead::SIZE`] go
/// through the type's `ahead` field. Closing shuts the write side down; writes go straight to the
/// kernel, so flushing has nothing to do.
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
                let (io, reg) = (&this.io, &this.reg);
                let mut read = |into: &mut [u8]| {
                    reg.poll_stream(
                        cx,
                        crate::event_loop::source::Direction::Read,
                        into.len(),
                        || reg.read_with(into, |b| (&*io).read(b)),
                    )
                };
                if reg.completions() {
                    // The backend already reads ahead into its own buffer.
                    return read(buf);
                }
                this.ahead.poll_read(buf, read)
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
                    || {
                        reg.write_with(buf, |b| {
                            (&*io)
                                .write(b)
                                .map_err(crate::backend::sys::net::write_error)
                        })
                    },
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
                    (&*io)
                        .write_vectored(bufs)
                        .map_err(crate::backend::sys::net::write_error)
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
                    .shutdown_stream(std::net::Shutdown::Write, |h| this.io.shutdown(h));
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

/// Read-ahead for small stream reads.
///
/// A read that fills the caller's buffer exactly (a `read_exact` of one
/// message) cannot tell whether the socket has more: the next read must ask
/// the kernel and usually gets `WouldBlock`, one wasted system call per
/// message. So a read asking for fewer than [`SIZE`](ReadAhead::SIZE) bytes
/// reads up to `SIZE` into this buffer instead: a short read there proves
/// the socket drained (edge-triggered readiness reports the next byte), and
/// the rest of the message is served from memory. Larger reads, and every
/// read once this buffer is empty and the request is large, go straight
/// into the caller's slice (no copy). The buffer is allocated on the first
/// small read and kept for the stream's life.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadAhead {
    /// Reads asking for fewer bytes than this go through the buffer.
    pub(crate) const SIZE: usize = 8 * 1024;

    /// Serves `out` from the buffer, else reads with `read` (which polls
    /// the socket into the slice it is given) either into the buffer or,
    /// for a large `out`, straight into it.
    pub(crate) fn poll_read(
        &mut self,
        out: &mut [u8],
        read: impl FnOnce(&mut [u8]) -> std::task::Poll<std::io::Result<usize>>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if self.start == self.end {
            if out.len() >= Self::SIZE || out.is_empty() {
                return read(out);
            }
            if self.buf.is_empty() {
                self.buf = vec![0; Self::SIZE];
            }
            match read(&mut self.buf) {
                Poll::Ready(Ok(n)) => {
                    self.start = 0;
                    self.end = n;
                }
                other => return other,
            }
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Poll::Ready(Ok(n))
    }
}

mod dns;
mod protocol;
mod sock;
mod tcp;
mod udp;
#[cfg(unix)]
mod unix;

pub use protocol::{
    DatagramProtocol, DatagramTransport, ExtraInfo, Protocol, Server, ServerOptions, Transport,
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

#[cfg(test)]
mod tests {
    use super::ReadAhead;
    use std::task::Poll;

    /// A socket holding `data`; each read takes what fits.
    fn reader<'a>(
        data: &'a mut Vec<u8>,
        calls: &'a mut usize,
    ) -> impl FnMut(&mut [u8]) -> Poll<std::io::Result<usize>> + 'a {
        move |into| {
            *calls += 1;
            if data.is_empty() {
                return Poll::Pending;
            }
            let n = into.len().min(data.len());
            into[..n].copy_from_slice(&data[..n]);
            data.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn small_reads_are_served_from_one_socket_read_in_order() {
        let mut data: Vec<u8> = (0..200u8).collect();
        let mut calls = 0;
        let mut ahead = ReadAhead::default();
        let mut got = Vec::new();
        let mut read = reader(&mut data, &mut calls);
        for _ in 0..4 {
            let mut out = [0u8; 50];
            match ahead.poll_read(&mut out, &mut read) {
                Poll::Ready(Ok(n)) => got.extend_from_slice(&out[..n]),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            ahead.poll_read(&mut [0u8; 50], &mut read),
            Poll::Pending
        ));
        drop(read);
        assert_eq!(got, (0..200u8).collect::<Vec<_>>());
        assert_eq!(
            calls, 2,
            "one read for all 200 bytes, one that found nothing"
        );
    }

    #[test]
    fn a_large_read_drains_the_buffer_first_then_bypasses_it() {
        let mut data: Vec<u8> = (0..=255u8).cycle().take(3 * ReadAhead::SIZE).collect();
        let expect = data.clone();
        let mut calls = 0;
        let mut ahead = ReadAhead::default();
        let mut read = reader(&mut data, &mut calls);
        let mut got = Vec::new();
        let mut small = [0u8; 10];
        let Poll::Ready(Ok(n)) = ahead.poll_read(&mut small, &mut read) else {
            panic!()
        };
        got.extend_from_slice(&small[..n]);
        let mut big = vec![0u8; 2 * ReadAhead::SIZE];
        while got.len() < expect.len() {
            let Poll::Ready(Ok(n)) = ahead.poll_read(&mut big, &mut read) else {
                panic!()
            };
            assert!(n > 0);
            got.extend_from_slice(&big[..n]);
        }
        drop(read);
        assert_eq!(got, expect);
        // One 8 KiB read-ahead (served to the small read and the first big
        // one), then one straight 16 KiB read into the caller's slice.
        assert_eq!(calls, 2);
    }

    #[test]
    fn end_of_stream_and_errors_pass_through() {
        let mut ahead = ReadAhead::default();
        let eof = ahead.poll_read(&mut [0u8; 4], |_| Poll::Ready(Ok(0)));
        assert!(matches!(eof, Poll::Ready(Ok(0))));
        let err = ahead.poll_read(&mut [0u8; 4], |_| {
            Poll::Ready(Err(std::io::Error::other("reset")))
        });
        assert!(matches!(err, Poll::Ready(Err(_))));
        // An empty read asks the socket nothing and reads nothing.
        assert!(matches!(
            ahead.poll_read(&mut [], |_| Poll::Ready(Ok(0))),
            Poll::Ready(Ok(0))
        ));
    }
}
