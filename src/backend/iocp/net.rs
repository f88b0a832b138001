//! Sockets on the IOCP driver, and completions turned into readiness.
//!
//! Each socket has one [`SockShared`]: the socket itself and its state, shared
//! by the I/O object (a [`Stream`], [`Listener`] or [`Datagram`]) and by its
//! operations in flight. The I/O object offers the non-blocking calls the
//! loop's readiness contract expects (`read`, `write`, `accept`, `recv_from`,
//! `send_to` …, each returning `WouldBlock` when it must wait); underneath:
//!
//! - stream reads copy out of the buffer the last `WSARecv` filled, and submit
//!   the next `WSARecv` when it is empty (one in flight at a time);
//! - stream writes copy the caller's bytes into an owned buffer and submit a
//!   `WSASend`, while the bytes in flight stay under an emulated send buffer
//!   ([`SEND_BUDGET`]); a write-side shutdown waits until they completed;
//! - datagram receives queue what the `WSARecvFrom` kept in flight delivered
//!   (and, after each completion, what waits in the kernel's buffer); sends submit a `WSASendTo` / `WSASend` per datagram (a
//!   bounded number in flight);
//! - a listener keeps a few `AcceptEx` in flight and queues their sockets;
//! - a connect is one `ConnectEx`, submitted when the stream is registered.
//!
//! Each completion updates the state and becomes an [`Event`] for the
//! socket's registration token (if it has one at that moment).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::ManuallyDrop;
use std::net::{Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::windows::io::AsRawSocket;
use std::rc::Rc;
use std::sync::OnceLock;

use socket2::{Domain, SockAddr, Socket, Type};
use windows_sys::Win32::Foundation::ERROR_OPERATION_ABORTED;
use windows_sys::Win32::Networking::WinSock::{
    closesocket, ioctlsocket, recvfrom, setsockopt, AcceptEx, WSAIoctl, WSARecv, WSARecvFrom,
    WSASend, WSASendTo, AF_INET, AF_INET6, FIONREAD, LPFN_CONNECTEX,
    SIO_GET_EXTENSION_FUNCTION_POINTER, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_STORAGE,
    SOCKET, SOCKET_ERROR, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, SO_UPDATE_CONNECT_CONTEXT, WSABUF,
    WSAID_CONNECTEX,
};

use super::{Op, OpKind, Shared};
use crate::backend::Event;

/// The buffer one `WSARecv` fills.
const RECV_BUF: usize = 64 * 1024;
/// The bytes of stream sends in flight before `write` reports `WouldBlock`:
/// the emulated socket send buffer (the size Linux's loopback autotuning
/// reaches; Windows grows its ideal send backlog similarly).
const SEND_BUDGET: usize = 4 << 20;
/// The biggest datagram (and so the `WSARecvFrom` buffer).
const DGRAM_BUF: usize = 64 * 1024;
/// `WSARecvFrom` calls a UDP socket keeps in flight: one, so datagrams are
/// queued in the order they arrived (several pending receives may complete
/// out of order, and a drain beside a pending receive could overtake it);
/// bursts are taken by the drain that follows each completion.
const DGRAM_RECVS: usize = 1;
/// Datagrams received ahead of the program before receiving pauses.
const DGRAM_QUEUE: usize = 256;
/// Datagram sends in flight before `send_to` reports `WouldBlock`.
const DGRAM_SENDS: usize = 16;
/// `AcceptEx` calls a listener keeps in flight.
const ACCEPTS: usize = 8;
/// The address space `AcceptEx` needs per address.
const ACCEPT_ADDR_LEN: usize = std::mem::size_of::<SOCKADDR_STORAGE>() + 16;

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

fn is_aborted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32)
}

#[derive(Default)]
enum Connect {
    /// Not a connecting socket (or connected).
    #[default]
    None,
    /// `ConnectEx` to this address starts when the stream is registered.
    Pending(SocketAddr),
    InFlight,
}

/// What a socket is for: decides what it starts receiving when it joins a
/// driver.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Role {
    #[default]
    Stream,
    Listener,
    Datagram,
}

#[derive(Default)]
struct State {
    role: Role,
    /// The driver this socket is associated with (once, for good).
    shared: Option<Rc<Shared>>,
    /// The current registration's token.
    token: Option<usize>,

    // Stream reads: `rbuf[rpos..rlen]` is data not yet read.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    /// Receives in flight (at most one on a stream).
    recv_ops: Vec<*const Op>,
    eof: bool,
    rerr: Option<io::Error>,

    // Writes: sends in flight, and their bytes.
    sending: usize,
    sending_bytes: usize,
    werr: Option<io::Error>,
    write_broken: bool,
    /// `shutdown(Write)` was asked for.
    write_shut: bool,
    /// … while a send was in flight: done when it completes.
    shutdown_pending: bool,

    // Datagrams received.
    dgrams: VecDeque<(Vec<u8>, SocketAddr)>,

    // Accepting.
    accepted: VecDeque<(Socket, SocketAddr)>,
    accept_ops: Vec<*const Op>,
    aerr: Option<io::Error>,

    // Connecting.
    connect: Connect,
    connect_err: Option<io::Error>,
}

/// A socket and its state, shared by the I/O object and its operations.
pub(crate) struct SockShared {
    /// Closed when the last owner drops it, or earlier by
    /// [`close_now`](SockShared::close_now) (then `closed` is set).
    socket: ManuallyDrop<Socket>,
    closed: Cell<bool>,
    st: RefCell<State>,
}

impl Drop for SockShared {
    fn drop(&mut self) {
        if !self.closed.get() {
            // SAFETY: dropped once, here, and only if `close_now` did not
            // close the handle already; nothing uses the field afterwards.
            unsafe { ManuallyDrop::drop(&mut self.socket) };
        }
    }
}

impl SockShared {
    fn new(socket: Socket, role: Role) -> io::Result<Rc<SockShared>> {
        // Overlapped calls do not need non-blocking mode; blocking mode keeps
        // the few synchronous calls (options, addresses) simple.
        socket.set_nonblocking(false)?;
        Ok(Rc::new(SockShared {
            socket: ManuallyDrop::new(socket),
            closed: Cell::new(false),
            st: RefCell::new(State {
                role,
                ..State::default()
            }),
        }))
    }

    pub(crate) fn raw(&self) -> SOCKET {
        self.socket.as_raw_socket() as SOCKET
    }

    /// Whether [`close_now`](SockShared::close_now) closed the handle: the
    /// completions still to come are cancellations, and the handle value
    /// must not be used again.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Closes the socket at once, though operations on it are still in
    /// flight (they complete as cancelled; their buffers live in the ops):
    /// a dropped listener must stop accepting now, not after its `AcceptEx`
    /// completions are dequeued.
    fn close_now(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.st.borrow_mut().token = None;
        // SAFETY: the handle is owned by `self.socket`, which is never
        // dropped or used after this (the `closed` flag guards both).
        unsafe { closesocket(self.raw()) };
    }

    fn shared(&self) -> io::Result<Rc<Shared>> {
        self.st.borrow().shared.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the socket is not registered with an IOCP loop",
            )
        })
    }

    fn event(&self, readable: bool, writable: bool, closed: bool) -> Option<Event> {
        self.st.borrow().token.map(|token| Event {
            token,
            readable,
            writable,
            read_closed: closed && readable,
            write_closed: closed && writable,
        })
    }

    /// Joins the driver `shared` under `token` (associating the socket with
    /// the port the first time).
    fn attach(self: &Rc<Self>, shared: &Rc<Shared>, token: usize) -> io::Result<()> {
        let mut st = self.st.borrow_mut();
        match &st.shared {
            Some(s) if Rc::ptr_eq(s, shared) => {}
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a socket registered with one IOCP loop cannot move to another \
                     (Windows binds a socket to one completion port for good)",
                ))
            }
            None => {
                shared.associate(self.raw())?;
                st.shared = Some(shared.clone());
            }
        }
        st.token = Some(token);
        if let Connect::Pending(addr) = st.connect {
            st.connect = Connect::InFlight;
            drop(st);
            if let Err(e) = self.start_connect(shared, addr) {
                let mut st = self.st.borrow_mut();
                st.connect = Connect::None;
                st.connect_err = Some(e);
            }
            return Ok(());
        }
        drop(st);
        self.start_receiving(shared);
        Ok(())
    }

    /// Starts the receive (or accepts) that will report the socket readable,
    /// as a readiness backend reports a socket's state when it is
    /// registered: callback-driven objects (transports, servers) only act on
    /// events. An error is kept for the next operation to report.
    fn start_receiving(self: &Rc<Self>, shared: &Shared) {
        let st = self.st.borrow();
        let idle = st.recv_ops.is_empty() && st.rerr.is_none();
        match st.role {
            Role::Stream if idle && !st.eof && st.rpos == st.rlen => {
                drop(st);
                if let Err(e) = self.submit_recv(shared) {
                    self.st.borrow_mut().rerr = Some(e);
                }
            }
            Role::Datagram => {
                drop(st);
                self.fill_recv_from(shared);
            }
            Role::Listener => {
                drop(st);
                if let Err(e) = self.fill_accepts() {
                    self.st.borrow_mut().aerr = Some(e);
                }
            }
            _ => {}
        }
    }

    fn detach(&self) {
        self.st.borrow_mut().token = None;
    }

    /// Cancels the reads and accepts in flight (the object was dropped);
    /// sends go on, so written bytes still reach the peer.
    fn cancel_reads(&self) {
        let st = self.st.borrow();
        let Some(shared) = st.shared.clone() else {
            return;
        };
        let ops: Vec<*const Op> = st.recv_ops.iter().chain(&st.accept_ops).copied().collect();
        drop(st);
        for op in ops {
            shared.cancel(op);
        }
    }

    // -- stream reads -------------------------------------------------------

    fn submit_recv(self: &Rc<Self>, shared: &Shared) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.st.borrow_mut().rbuf);
        if buf.len() != RECV_BUF {
            buf = vec![0; RECV_BUF];
        }
        let op = Rc::new(Op::new(OpKind::Recv, self, buf));
        let ptr = Rc::as_ptr(&op);
        let socket = self.raw();
        let res = shared.submit(op.clone(), |ov| {
            // SAFETY: the op is not in flight yet, so its buffer is ours.
            let b = unsafe { op.buf_mut() };
            let wsabuf = WSABUF {
                len: b.len() as u32,
                buf: b.as_mut_ptr(),
            };
            // SAFETY: the buffer and the flags live in the op, which the
            // kernel holds until the completion is dequeued; the WSABUF array
            // is only read during the call.
            unsafe {
                WSARecv(
                    socket,
                    &wsabuf,
                    1,
                    std::ptr::null_mut(),
                    op.flags.get(),
                    ov,
                    None,
                ) != SOCKET_ERROR
            }
        });
        match res {
            Ok(()) => {
                self.st.borrow_mut().recv_ops.push(ptr);
                Ok(())
            }
            Err(e) => {
                // SAFETY: the submission failed, so the kernel never took the
                // buffer.
                self.st.borrow_mut().rbuf = std::mem::take(unsafe { op.buf_mut() });
                Err(e)
            }
        }
    }

    fn read(self: &Rc<Self>, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.st.borrow_mut();
        if st.rpos < st.rlen {
            let n = buf.len().min(st.rlen - st.rpos);
            buf[..n].copy_from_slice(&st.rbuf[st.rpos..st.rpos + n]);
            st.rpos += n;
            if st.rpos == st.rlen && !st.eof && st.recv_ops.is_empty() && st.rerr.is_none() {
                // Drained: ask for more now, so it may be there next time.
                let shared = st.shared.clone();
                drop(st);
                if let Some(shared) = shared {
                    if let Err(e) = self.submit_recv(&shared) {
                        self.st.borrow_mut().rerr = Some(e);
                    }
                }
            }
            return Ok(n);
        }
        if let Some(e) = st.rerr.take() {
            st.eof = true;
            return Err(e);
        }
        if st.eof || buf.is_empty() {
            return Ok(0);
        }
        if !st.recv_ops.is_empty() {
            return Err(would_block());
        }
        drop(st);
        let shared = self.shared()?;
        self.submit_recv(&shared)?;
        Err(would_block())
    }

    fn recv_done(&self, op: &Op, res: io::Result<usize>) -> Option<Event> {
        let mut st = self.st.borrow_mut();
        st.recv_ops.clear();
        // SAFETY: the completion was dequeued: the kernel is done with it.
        st.rbuf = std::mem::take(unsafe { op.buf_mut() });
        st.rpos = 0;
        st.rlen = 0;
        match res {
            Ok(0) => {
                st.eof = true;
                drop(st);
                self.event(true, false, true)
            }
            Ok(n) => {
                st.rlen = n;
                drop(st);
                self.event(true, false, false)
            }
            Err(e) if is_aborted(&e) => None,
            Err(e) => {
                st.rerr = Some(e);
                drop(st);
                self.event(true, false, true)
            }
        }
    }

    // -- writes -------------------------------------------------------------

    fn write_check(&self) -> io::Result<()> {
        let mut st = self.st.borrow_mut();
        if let Some(e) = st.werr.take() {
            st.write_broken = true;
            return Err(e);
        }
        if st.write_shut || st.write_broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the socket's write side was shut down: nothing more can be written",
            ));
        }
        Ok(())
    }

    fn submit_send(
        self: &Rc<Self>,
        shared: &Shared,
        data: Vec<u8>,
        to: Option<SocketAddr>,
    ) -> io::Result<()> {
        let mut op = Op::new(
            if to.is_some() {
                OpKind::SendTo
            } else {
                OpKind::Send
            },
            self,
            data,
        );
        op.to = to.map(SockAddr::from);
        let op = Rc::new(op);
        let socket = self.raw();
        let len = op_len(&op);
        {
            let mut st = self.st.borrow_mut();
            st.sending += 1;
            st.sending_bytes += len;
        }
        let res = shared.submit(op.clone(), |ov| {
            // SAFETY: the op is not in flight yet.
            let b = unsafe { op.buf_mut() };
            let wsabuf = WSABUF {
                len: b.len() as u32,
                buf: b.as_mut_ptr(),
            };
            // SAFETY: the data and the target address live in the op until
            // its completion is dequeued; the WSABUF array is read during
            // the call only.
            unsafe {
                match &op.to {
                    Some(to) => {
                        WSASendTo(
                            socket,
                            &wsabuf,
                            1,
                            std::ptr::null_mut(),
                            0,
                            to.as_ptr() as *const SOCKADDR,
                            to.len(),
                            ov,
                            None,
                        ) != SOCKET_ERROR
                    }
                    None => {
                        WSASend(socket, &wsabuf, 1, std::ptr::null_mut(), 0, ov, None)
                            != SOCKET_ERROR
                    }
                }
            }
        });
        if res.is_err() {
            let mut st = self.st.borrow_mut();
            st.sending -= 1;
            st.sending_bytes -= len;
        }
        res
    }

    /// Room left in the emulated send buffer, or `WouldBlock`.
    fn send_room(&self) -> io::Result<usize> {
        let st = self.st.borrow();
        if st.sending_bytes >= SEND_BUDGET {
            return Err(would_block());
        }
        Ok(SEND_BUDGET - st.sending_bytes)
    }

    fn write(self: &Rc<Self>, data: &[u8]) -> io::Result<usize> {
        self.write_check()?;
        if data.is_empty() {
            return Ok(0);
        }
        let n = data.len().min(self.send_room()?);
        let shared = self.shared()?;
        self.submit_send(&shared, data[..n].to_vec(), None)?;
        Ok(n)
    }

    fn write_vectored(self: &Rc<Self>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_check()?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let room = self.send_room()?;
        let mut buf = Vec::new();
        for b in bufs {
            buf.extend_from_slice(&b[..b.len().min(room - buf.len())]);
            if buf.len() == room {
                break;
            }
        }
        let n = buf.len();
        let shared = self.shared()?;
        self.submit_send(&shared, buf, None)?;
        Ok(n)
    }

    fn send_done(&self, op: &Op, res: io::Result<usize>) -> Option<Event> {
        let mut st = self.st.borrow_mut();
        let len = op_len(op);
        st.sending -= 1;
        st.sending_bytes -= len;
        match res {
            Ok(n) if n < len => {
                // Only a failing connection completes a stream send
                // partially; the sends queued behind it cannot be resent in
                // order, so the stream is broken.
                st.werr = Some(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("a send completed with {n} of {len} bytes: the connection failed"),
                ));
                drop(st);
                self.event(false, true, true)
            }
            Ok(_) => {
                let shut = st.shutdown_pending && st.sending == 0;
                if shut {
                    st.shutdown_pending = false;
                }
                drop(st);
                if shut {
                    let _ = self.socket.shutdown(Shutdown::Write);
                }
                self.event(false, true, false)
            }
            Err(e) if is_aborted(&e) => None,
            Err(e) => {
                st.werr = Some(e);
                drop(st);
                self.event(false, true, true)
            }
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let mut st = self.st.borrow_mut();
        if how != Shutdown::Read {
            st.write_shut = true;
            if st.sending > 0 {
                // The FIN goes after the bytes already written.
                st.shutdown_pending = true;
                if how == Shutdown::Both {
                    drop(st);
                    return self.socket.shutdown(Shutdown::Read);
                }
                return Ok(());
            }
        }
        drop(st);
        self.socket.shutdown(how)
    }

    // -- datagrams ----------------------------------------------------------

    fn submit_recv_from(self: &Rc<Self>, shared: &Shared) -> io::Result<()> {
        let op = Rc::new(Op::new(OpKind::RecvFrom, self, vec![0; DGRAM_BUF]));
        let ptr = Rc::as_ptr(&op);
        let socket = self.raw();
        shared.submit(op.clone(), |ov| {
            // SAFETY: the op is not in flight yet.
            let b = unsafe { op.buf_mut() };
            let wsabuf = WSABUF {
                len: b.len() as u32,
                buf: b.as_mut_ptr(),
            };
            // SAFETY: buffer, address, address length and flags live in the
            // op until the completion is dequeued.
            unsafe {
                WSARecvFrom(
                    socket,
                    &wsabuf,
                    1,
                    std::ptr::null_mut(),
                    op.flags.get(),
                    op.addr.get() as *mut SOCKADDR,
                    op.addr_len.get(),
                    ov,
                    None,
                ) != SOCKET_ERROR
            }
        })?;
        self.st.borrow_mut().recv_ops.push(ptr);
        Ok(())
    }

    /// Keeps up to [`DGRAM_RECVS`] `WSARecvFrom` in flight while the queue of
    /// received datagrams is short, so datagrams leave the kernel's buffer
    /// (which a burst would overflow) at the pace they arrive, not at the
    /// pace the program asks. An error is kept for the next receive.
    fn fill_recv_from(self: &Rc<Self>, shared: &Shared) {
        loop {
            let st = self.st.borrow();
            if st.rerr.is_some()
                || st.recv_ops.len() >= DGRAM_RECVS
                || st.recv_ops.len() + st.dgrams.len() >= DGRAM_QUEUE
            {
                return;
            }
            drop(st);
            if let Err(e) = self.submit_recv_from(shared) {
                self.st.borrow_mut().rerr = Some(e);
                return;
            }
        }
    }

    fn recv_from(self: &Rc<Self>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut st = self.st.borrow_mut();
        if let Some((d, from)) = st.dgrams.pop_front() {
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            drop(st);
            if let Ok(shared) = self.shared() {
                self.fill_recv_from(&shared);
            }
            return Ok((n, from));
        }
        if let Some(e) = st.rerr.take() {
            return Err(e);
        }
        let idle = st.recv_ops.is_empty();
        drop(st);
        let shared = self.shared()?;
        if idle {
            // Nothing in flight: this one's error is this call's.
            self.submit_recv_from(&shared)?;
        }
        self.fill_recv_from(&shared);
        Err(would_block())
    }

    fn recv_from_done(
        self: &Rc<Self>,
        shared: &Shared,
        op: &Op,
        res: io::Result<usize>,
    ) -> Option<Event> {
        let mut st = self.st.borrow_mut();
        let ptr = op as *const Op;
        st.recv_ops.retain(|&p| p != ptr);
        match res {
            Ok(n) => {
                // SAFETY: the completion was dequeued: the kernel is done
                // with the buffer and the address.
                let (mut d, from) =
                    unsafe { (std::mem::take(op.buf_mut()), sockaddr(&*op.addr.get())) };
                d.truncate(n);
                match from {
                    Some(from) => st.dgrams.push_back((d, from)),
                    None => {
                        st.rerr = Some(io::Error::other(
                            "a datagram from an unknown address family",
                        ))
                    }
                }
            }
            Err(e) if is_aborted(&e) => return None,
            Err(e) => st.rerr = Some(e),
        }
        drop(st);
        self.drain_datagrams();
        self.fill_recv_from(shared);
        self.event(true, false, false)
    }

    /// Takes the datagrams already waiting in the kernel's buffer with
    /// plain `recvfrom` calls (each known not to block: `FIONREAD` says a
    /// datagram is there). One completion per datagram cannot keep up with a
    /// burst, and the kernel drops what overflows its buffer. Called only
    /// when no receive is in flight, so arrival order is kept.
    fn drain_datagrams(&self) {
        loop {
            let mut st = self.st.borrow_mut();
            if st.rerr.is_some() || !st.recv_ops.is_empty() || st.dgrams.len() >= DGRAM_QUEUE {
                return;
            }
            let mut avail = 0u32;
            // SAFETY: FIONREAD writes one u32 through the pointer given.
            let rc = unsafe { ioctlsocket(self.raw(), FIONREAD, &mut avail) };
            if rc == SOCKET_ERROR || avail == 0 {
                return;
            }
            let mut buf = vec![0u8; DGRAM_BUF];
            // SAFETY: SOCKADDR_STORAGE is a plain C struct; zero is valid.
            let mut from: SOCKADDR_STORAGE = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<SOCKADDR_STORAGE>() as i32;
            // SAFETY: buffer and address are live locals of the sizes given;
            // a datagram is queued, so the call returns without waiting.
            let n = unsafe {
                recvfrom(
                    self.raw(),
                    buf.as_mut_ptr(),
                    buf.len() as i32,
                    0,
                    (&mut from as *mut SOCKADDR_STORAGE).cast(),
                    &mut from_len,
                )
            };
            if n == SOCKET_ERROR {
                st.rerr = Some(io::Error::last_os_error());
                return;
            }
            buf.truncate(n as usize);
            match sockaddr(&from) {
                Some(from) => st.dgrams.push_back((buf, from)),
                None => return,
            }
        }
    }

    fn send_to(self: &Rc<Self>, data: &[u8], to: Option<SocketAddr>) -> io::Result<usize> {
        let mut st = self.st.borrow_mut();
        if let Some(e) = st.werr.take() {
            return Err(e);
        }
        if st.sending >= DGRAM_SENDS {
            return Err(would_block());
        }
        drop(st);
        let shared = self.shared()?;
        self.submit_send(&shared, data.to_vec(), to)?;
        Ok(data.len())
    }

    fn send_to_done(&self, op: &Op, res: io::Result<usize>) -> Option<Event> {
        let mut st = self.st.borrow_mut();
        st.sending -= 1;
        st.sending_bytes -= op_len(op);
        match res {
            Err(e) if is_aborted(&e) => return None,
            Err(e) => st.werr = Some(e),
            Ok(_) => {}
        }
        drop(st);
        self.event(false, true, false)
    }

    // -- accepting ----------------------------------------------------------

    fn submit_accept(self: &Rc<Self>, shared: &Shared) -> io::Result<()> {
        let domain =
            Domain::for_address(self.socket.local_addr()?.as_socket().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a listener without an IP address",
                )
            })?);
        let accept = Socket::new(domain, Type::STREAM, None)?;
        let accept_raw = accept.as_raw_socket() as SOCKET;
        let op = Rc::new(Op::new(OpKind::Accept, self, vec![0; 2 * ACCEPT_ADDR_LEN]));
        *op.accept.borrow_mut() = Some(accept);
        let ptr = Rc::as_ptr(&op);
        let listen = self.raw();
        shared.submit(op.clone(), |ov| {
            // SAFETY: the op is not in flight yet.
            let b = unsafe { op.buf_mut() };
            let mut bytes = 0u32;
            // SAFETY: the address buffer and the accept socket live in the op
            // until the completion is dequeued.
            unsafe {
                AcceptEx(
                    listen,
                    accept_raw,
                    b.as_mut_ptr().cast(),
                    0,
                    ACCEPT_ADDR_LEN as u32,
                    ACCEPT_ADDR_LEN as u32,
                    &mut bytes,
                    ov,
                ) != 0
            }
        })?;
        self.st.borrow_mut().accept_ops.push(ptr);
        Ok(())
    }

    /// Keeps [`ACCEPTS`] `AcceptEx` in flight; an error only if none is.
    fn fill_accepts(self: &Rc<Self>) -> io::Result<()> {
        let shared = self.shared()?;
        while self.st.borrow().accept_ops.len() < ACCEPTS {
            if let Err(e) = self.submit_accept(&shared) {
                if self.st.borrow().accept_ops.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
        Ok(())
    }

    fn accept(self: &Rc<Self>) -> io::Result<(Stream, SocketAddr)> {
        let next = self.st.borrow_mut().accepted.pop_front();
        if let Some((s, peer)) = next {
            let _ = self.fill_accepts();
            return Ok((Stream(SockShared::new(s, Role::Stream)?), peer));
        }
        if let Some(e) = self.st.borrow_mut().aerr.take() {
            return Err(e);
        }
        self.fill_accepts()?;
        Err(would_block())
    }

    fn accept_done(self: &Rc<Self>, op: &Op, res: io::Result<usize>) -> Option<Event> {
        let ptr = op as *const Op;
        self.st.borrow_mut().accept_ops.retain(|&p| p != ptr);
        let accepted = op.accept.borrow_mut().take();
        if self.is_closed() {
            return None;
        }
        match res {
            Err(e) if is_aborted(&e) => None,
            Err(e) => {
                // A connection reset before it was accepted: try again.
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) {
                    let _ = self.fill_accepts();
                    return None;
                }
                self.st.borrow_mut().aerr = Some(e);
                self.event(true, false, false)
            }
            Ok(_) => {
                let s = accepted?;
                let listen = self.raw();
                // SAFETY: `s` is the accepted socket, `listen` the listener;
                // the option value is the listener's SOCKET, as documented.
                let rc = unsafe {
                    setsockopt(
                        s.as_raw_socket() as SOCKET,
                        SOL_SOCKET,
                        SO_UPDATE_ACCEPT_CONTEXT,
                        (&listen as *const SOCKET).cast(),
                        std::mem::size_of::<SOCKET>() as i32,
                    )
                };
                let peer = if rc == SOCKET_ERROR {
                    Err(io::Error::last_os_error())
                } else {
                    s.peer_addr().and_then(|a| {
                        a.as_socket()
                            .ok_or_else(|| io::Error::other("a peer without an IP address"))
                    })
                };
                match peer {
                    Ok(peer) => self.st.borrow_mut().accepted.push_back((s, peer)),
                    Err(e) => self.st.borrow_mut().aerr = Some(e),
                }
                self.event(true, false, false)
            }
        }
    }

    // -- connecting ---------------------------------------------------------

    fn start_connect(self: &Rc<Self>, shared: &Shared, addr: SocketAddr) -> io::Result<()> {
        let connect_ex = connect_ex(self.raw())?;
        let mut op = Op::new(OpKind::Connect, self, Vec::new());
        op.to = Some(SockAddr::from(addr));
        let op = Rc::new(op);
        let socket = self.raw();
        shared.submit(op.clone(), |ov| {
            let to = op.to.as_ref().expect("set above");
            // SAFETY: the address lives in the op until the completion is
            // dequeued; no data is sent with the connect.
            unsafe {
                connect_ex(
                    socket,
                    to.as_ptr() as *const SOCKADDR,
                    to.len(),
                    std::ptr::null(),
                    0,
                    std::ptr::null_mut(),
                    ov,
                ) != 0
            }
        })
    }

    fn connect_done(self: &Rc<Self>, res: io::Result<usize>) -> Option<Event> {
        let mut st = self.st.borrow_mut();
        st.connect = Connect::None;
        let res = res.and_then(|_| {
            // SAFETY: a connected ConnectEx socket; the option takes no value.
            let rc = unsafe {
                setsockopt(
                    self.raw(),
                    SOL_SOCKET,
                    SO_UPDATE_CONNECT_CONTEXT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc == SOCKET_ERROR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
        let ok = res.is_ok();
        if let Err(e) = res {
            st.connect_err = Some(e);
        }
        let shared = st.shared.clone();
        drop(st);
        if let (true, Some(shared)) = (ok, shared) {
            self.start_receiving(&shared);
        }
        self.event(true, true, false)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        if let Some(e) = self.st.borrow_mut().connect_err.take() {
            return Ok(Some(e));
        }
        self.socket.take_error()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        if !matches!(self.st.borrow().connect, Connect::None) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        as_inet(self.socket.peer_addr()?)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        as_inet(self.socket.local_addr()?)
    }
}

/// The data length of a send op.
fn op_len(op: &Op) -> usize {
    // SAFETY: only the length is read, by the loop's thread; the kernel
    // never changes a send buffer's length (it reads the bytes only).
    unsafe { (*op.buf.get()).len() }
}

fn as_inet(a: SockAddr) -> io::Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| io::Error::other("the socket has no IP address"))
}

/// The `ConnectEx` extension function (looked up once per process).
type ConnectEx = unsafe extern "system" fn(
    SOCKET,
    *const SOCKADDR,
    i32,
    *const core::ffi::c_void,
    u32,
    *mut u32,
    *mut windows_sys::Win32::System::IO::OVERLAPPED,
) -> windows_sys::core::BOOL;

fn connect_ex(socket: SOCKET) -> io::Result<ConnectEx> {
    static FN: OnceLock<usize> = OnceLock::new();
    let addr = match FN.get() {
        Some(&a) => a,
        None => {
            let mut f: LPFN_CONNECTEX = None;
            let mut bytes = 0u32;
            // SAFETY: the input is the documented GUID, the output a function
            // pointer slot of the size given; the call is synchronous.
            let rc = unsafe {
                WSAIoctl(
                    socket,
                    SIO_GET_EXTENSION_FUNCTION_POINTER,
                    (&WSAID_CONNECTEX as *const windows_sys::core::GUID).cast(),
                    std::mem::size_of::<windows_sys::core::GUID>() as u32,
                    (&mut f as *mut LPFN_CONNECTEX).cast(),
                    std::mem::size_of::<LPFN_CONNECTEX>() as u32,
                    &mut bytes,
                    std::ptr::null_mut(),
                    None,
                )
            };
            let Some(f) = f.filter(|_| rc != SOCKET_ERROR) else {
                return Err(io::Error::last_os_error());
            };
            *FN.get_or_init(|| f as usize)
        }
    };
    // SAFETY: `addr` is the ConnectEx pointer stored above, of this type.
    Ok(unsafe { std::mem::transmute::<usize, ConnectEx>(addr) })
}

/// An IPv4 or IPv6 socket address from a `SOCKADDR_STORAGE`.
fn sockaddr(s: &SOCKADDR_STORAGE) -> Option<SocketAddr> {
    match s.ss_family {
        AF_INET => {
            // SAFETY: the family says the storage holds a SOCKADDR_IN, and
            // SOCKADDR_STORAGE is large and aligned enough for it.
            let a = unsafe { &*(s as *const SOCKADDR_STORAGE as *const SOCKADDR_IN) };
            // SAFETY: every variant of the address union is a plain integer.
            let ip = u32::from_be(unsafe { a.sin_addr.S_un.S_addr });
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip.into(),
                u16::from_be(a.sin_port),
            )))
        }
        AF_INET6 => {
            // SAFETY: as above, for SOCKADDR_IN6.
            let a = unsafe { &*(s as *const SOCKADDR_STORAGE as *const SOCKADDR_IN6) };
            // SAFETY: plain bytes in every variant.
            let ip = unsafe { a.sin6_addr.u.Byte };
            // SAFETY: plain integer in every variant.
            let scope = unsafe { a.Anonymous.sin6_scope_id };
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip.into(),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                scope,
            )))
        }
        _ => None,
    }
}

/// Turns a dequeued completion into the state change and event it means.
pub(crate) fn complete(shared: &Shared, op: &Op, res: io::Result<usize>) -> Option<Event> {
    let sock = &op.sock;
    match op.kind {
        OpKind::Recv => sock.recv_done(op, res),
        OpKind::Send => sock.send_done(op, res),
        OpKind::RecvFrom => sock.recv_from_done(shared, op, res),
        OpKind::SendTo => sock.send_to_done(op, res),
        OpKind::Accept => sock.accept_done(op, res),
        OpKind::Connect => sock.connect_done(res),
    }
}

// ---------------------------------------------------------------------------
// The I/O objects

macro_rules! io_object {
    ($name:ident) => {
        impl $name {
            pub(crate) fn attach(&self, shared: &Rc<Shared>, token: usize) -> io::Result<()> {
                self.0.attach(shared, token)
            }
            pub(crate) fn detach(&self) {
                self.0.detach()
            }
            pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
                self.0.local_addr()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.detach();
                self.0.cancel_reads();
                if self.0.st.borrow().role == Role::Listener {
                    self.0.close_now();
                }
            }
        }
    };
}

/// A TCP stream on the IOCP driver.
pub(crate) struct Stream(Rc<SockShared>);
io_object!(Stream);

impl Stream {
    /// A stream that connects to `addr` (with `ConnectEx`) once registered.
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<Stream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        // ConnectEx needs a bound socket.
        let any: SocketAddr = match addr {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        socket.bind(&any.into())?;
        let s = SockShared::new(socket, Role::Stream)?;
        s.st.borrow_mut().connect = Connect::Pending(addr);
        Ok(Stream(s))
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.0.socket
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.0.shutdown(how)
    }
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.0.take_error()
    }
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

/// A TCP listener on the IOCP driver.
pub(crate) struct Listener(Rc<SockShared>);
io_object!(Listener);

impl Listener {
    pub(crate) fn from_socket(socket: Socket) -> io::Result<Listener> {
        Ok(Listener(SockShared::new(socket, Role::Listener)?))
    }

    pub(crate) fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        self.0.accept()
    }
}

/// A UDP socket on the IOCP driver.
pub(crate) struct Datagram(Rc<SockShared>);
io_object!(Datagram);

impl Datagram {
    pub(crate) fn from_socket(socket: Socket) -> io::Result<Datagram> {
        Ok(Datagram(SockShared::new(socket, Role::Datagram)?))
    }

    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf)
    }
    pub(crate) fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, Some(to))
    }
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_to(buf, None)
    }
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
    pub(crate) fn socket(&self) -> &Socket {
        &self.0.socket
    }
}
