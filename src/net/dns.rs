//! Name resolution that never blocks the loop: `getaddrinfo` and
//! `getnameinfo` run on the loop's default executor (asyncio does the same).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::{Error, EventLoop};

impl EventLoop {
    /// Resolves `host` and `port` to socket addresses (`loop.getaddrinfo`),
    /// in the order the system resolver returns them (IPv6 and IPv4 alike).
    ///
    /// The lookup runs on the loop's default executor (see
    /// [`run_in_executor`](EventLoop::run_in_executor)), so the loop keeps
    /// running other callbacks and tasks meanwhile; it starts when this is
    /// called, and the returned future does not borrow the loop or `host`,
    /// so it can be handed to [`create_task`](EventLoop::create_task). An IP
    /// literal (`"127.0.0.1"`, `"::1"`) is answered at once without the
    /// executor.
    ///
    /// Unlike asyncio's 5-tuples, the answer is plain [`SocketAddr`]s: the
    /// family is the address's, and socket type and protocol are the
    /// caller's choice (TCP or UDP alike).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the name cannot be
    /// resolved or resolves to no address (the message names `host`);
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed loop or
    /// after [`shutdown_default_executor`](EventLoop::shutdown_default_executor).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let addrs = lp.run_until_complete(lp.getaddrinfo("localhost", 80)).unwrap().unwrap();
    /// assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 80));
    ///
    /// let err = lp
    ///     .run_until_complete(lp.getaddrinfo("no-such-host.invalid", 80))
    ///     .unwrap()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), aioloop::ErrorKind::Io);
    /// assert!(err.to_string().contains("no-such-host.invalid"));
    /// # lp.close().unwrap();
    /// ```
    pub fn getaddrinfo(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = Result<Vec<SocketAddr>, Error>> + 'static {
        let host = host.to_owned();
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .parse::<IpAddr>()
            .ok();
        let closed = self.is_closed();
        // Ok: an IP literal, answered here; Err: the lookup job.
        let job = literal.ok_or_else(|| {
            let h = host.clone();
            self.run_in_executor(move || {
                (h.as_str(), port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>())
            })
        });
        async move {
            if closed {
                return Err(Error::closed());
            }
            let addrs = match job {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(job) => job
                    .await?
                    .map_err(|e| Error::io(format_args!("resolving {host:?} (port {port})"), e))?,
            };
            if addrs.is_empty() {
                return Err(Error::io(
                    format_args!("resolving {host:?} (port {port})"),
                    io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"),
                ));
            }
            Ok(addrs)
        }
    }

    /// Looks up the host name and service name of `addr`
    /// (`loop.getnameinfo(sockaddr, 0)`), on the loop's default executor.
    ///
    /// As with the C call's default flags, an address with no name comes back
    /// in numeric form (`"192.0.2.1"`), and a port with no service name as
    /// its number (`"54321"`); so a host name is always returned unless the
    /// lookup itself fails. Uses the system's `getnameinfo` (through the
    /// `dns-lookup` crate), so `/etc/hosts` and `/etc/services` apply.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the system lookup fails
    /// (the message names `addr`); [`ErrorKind::Closed`](crate::ErrorKind::Closed)
    /// on a closed loop or after
    /// [`shutdown_default_executor`](EventLoop::shutdown_default_executor).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let (host, service) = lp
    ///     .run_until_complete(lp.getnameinfo("127.0.0.1:80".parse().unwrap()))
    ///     .unwrap()
    ///     .unwrap();
    /// assert!(!host.is_empty()); // "localhost" on most systems
    /// assert!(service == "http" || service == "80");
    /// # lp.close().unwrap();
    /// ```
    pub fn getnameinfo(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = Result<(String, String), Error>> + 'static {
        let closed = self.is_closed();
        let job = self.run_in_executor(move || dns_lookup::getnameinfo(&addr, 0));
        async move {
            if closed {
                return Err(Error::closed());
            }
            job.await?.map_err(|e| {
                Error::io(
                    format_args!("looking up the name of {addr}"),
                    io::Error::from(e),
                )
            })
        }
    }
}
