//! Networking on the loop: TCP streams and listeners that implement
//! `futures::io::AsyncRead` / `AsyncWrite`.
//!
//! Every object belongs to one loop (the running loop when it is made, or the
//! one named with an `*_on` constructor) and goes through the backend: this
//! module makes no system call itself.

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
