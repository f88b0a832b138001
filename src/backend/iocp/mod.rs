//! The proactor backend on Windows: an I/O completion port (IOCP).
//!
//! Every socket operation is *submitted* (`WSARecv`, `WSASend`,
//! `WSARecvFrom`, `WSASendTo`, `AcceptEx`, `ConnectEx`) with an [`Op`] that
//! owns everything the kernel may touch until the operation's completion is
//! dequeued: the `OVERLAPPED`, the data buffer, the address buffers, and a
//! reference to the socket (so the socket cannot close under it). The kernel
//! holds one `Rc` count of the op, taken with `Rc::into_raw` at submission and
//! given back with `Rc::from_raw` when [`Driver::poll`] dequeues the
//! completion, never earlier: a future or I/O object dropped mid-operation
//! cancels with `CancelIoEx` and the op lives on until the cancellation's
//! completion arrives.
//!
//! The loop above speaks readiness (see the contract in `backend/mod.rs`);
//! [`net`] turns completions into readiness: a stream read copies out of the
//! buffer the last `WSARecv` filled (and submits the next when it is empty),
//! a write copies the caller's bytes into an owned buffer and submits a
//! `WSASend`, and each completion is reported as an event of its direction.
//!
//! Wake-ups are `PostQueuedCompletionStatus` packets with their own key;
//! timers are the timeout of `GetQueuedCompletionStatusEx`.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_OPERATION_ABORTED, HANDLE, WAIT_TIMEOUT};
use windows_sys::Win32::Networking::WinSock::{
    WSAGetLastError, WSAGetOverlappedResult, SOCKADDR_STORAGE, SOCKET, WSA_IO_PENDING,
};
use windows_sys::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatusEx, PostQueuedCompletionStatus,
    OVERLAPPED, OVERLAPPED_ENTRY,
};

use super::{Backend, Event};

pub(crate) mod net;

/// The completion key of a notifier wake-up; socket operations use
/// [`IO_KEY`].
const WAKE_KEY: usize = 1;
/// The completion key every socket is associated with.
const IO_KEY: usize = 0;
/// How many completions one `GetQueuedCompletionStatusEx` call may dequeue.
const ENTRIES: usize = 256;
/// How long closing a loop waits for the cancelled operations' completions.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// An owned completion port handle, closed when the last user drops it.
pub(crate) struct Port(HANDLE);

// SAFETY: an I/O completion port handle may be used from any thread; the
// Win32 calls on it (post, dequeue, associate) are thread-safe.
unsafe impl Send for Port {}
// SAFETY: as above: shared use from several threads is what IOCP is for.
unsafe impl Sync for Port {}

impl Port {
    fn new() -> io::Result<Port> {
        // SAFETY: INVALID_HANDLE_VALUE with no existing port creates a new
        // port; no pointers are passed.
        let h = unsafe {
            CreateIoCompletionPort(
                windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE,
                std::ptr::null_mut(),
                0,
                1,
            )
        };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Port(h))
    }

    /// Associates `socket` with this port (once per socket: Windows cannot
    /// undo it).
    fn associate(&self, socket: SOCKET) -> io::Result<()> {
        // SAFETY: `socket` is an open socket owned by the caller; the port
        // handle is open while `self` lives.
        let h = unsafe { CreateIoCompletionPort(socket as HANDLE, self.0, IO_KEY, 0) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the handle is owned by this value and closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The thread-safe wake-up: a completion packet with [`WAKE_KEY`].
pub(crate) struct Notifier {
    port: Arc<Port>,
}

impl Notifier {
    pub(crate) fn notify(&self) -> io::Result<()> {
        // SAFETY: the port is open while `self.port` lives; a packet with a
        // null OVERLAPPED carries no memory to the dequeuing side.
        let ok = unsafe { PostQueuedCompletionStatus(self.port.0, 0, WAKE_KEY, std::ptr::null()) };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What a driver shares with the sockets associated with its port.
pub(crate) struct Shared {
    port: Arc<Port>,
    /// Operations the kernel holds: op address -> its socket (for
    /// `CancelIoEx` when the loop closes).
    in_flight: RefCell<HashMap<usize, SOCKET>>,
    /// The loop closed: no new operation is submitted.
    closed: Cell<bool>,
}

impl Shared {
    /// Submits `op` with `start`, which gets the op's `OVERLAPPED` and returns
    /// whether the call succeeded at once (`true`) or failed (`false`, the
    /// error is read from `WSAGetLastError`). Success and `WSA_IO_PENDING` both
    /// mean a completion will be queued: the kernel then holds one count of
    /// `op` until [`Driver::poll`] dequeues it. Any other error is returned and
    /// nothing is held.
    pub(crate) fn submit(
        &self,
        op: Rc<Op>,
        start: impl FnOnce(*mut OVERLAPPED) -> bool,
    ) -> io::Result<()> {
        if self.closed.get() {
            return Err(io::Error::other(crate::Error::closed()));
        }
        let socket = op.socket;
        let ptr = Rc::into_raw(op);
        // `Op` is `repr(C)` with the OVERLAPPED (in a transparent UnsafeCell)
        // first, so the op's address is the OVERLAPPED's.
        let ov = ptr as *mut OVERLAPPED;
        if !start(ov) {
            // SAFETY: FFI call with no arguments; reads this thread's error.
            let err = unsafe { WSAGetLastError() };
            if err != WSA_IO_PENDING {
                // SAFETY: `ptr` came from `Rc::into_raw` above and the kernel
                // did not take the operation (it failed at once), so this
                // is the only owner of that count.
                drop(unsafe { Rc::from_raw(ptr) });
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        self.in_flight.borrow_mut().insert(ptr as usize, socket);
        Ok(())
    }

    /// Asks the kernel to cancel `op` (if it is still in flight); its
    /// completion (usually `ERROR_OPERATION_ABORTED`) still arrives and
    /// releases it.
    pub(crate) fn cancel(&self, op: *const Op) {
        if let Some(&socket) = self.in_flight.borrow().get(&(op as usize)) {
            // SAFETY: the op is in flight, so the kernel's count keeps its
            // OVERLAPPED alive; the socket is kept open by the op. A
            // completion that already happened makes this fail harmlessly
            // (ERROR_NOT_FOUND).
            unsafe { CancelIoEx(socket as HANDLE, op as *const OVERLAPPED) };
        }
    }

    pub(crate) fn associate(&self, socket: SOCKET) -> io::Result<()> {
        self.port.associate(socket)
    }

    /// Takes back the kernel's count of the op whose OVERLAPPED is `ov`.
    fn reclaim(&self, ov: *mut OVERLAPPED) -> Rc<Op> {
        let removed = self.in_flight.borrow_mut().remove(&(ov as usize));
        debug_assert!(removed.is_some(), "a completion for an unknown operation");
        // SAFETY: every non-wake packet on this port carries the OVERLAPPED
        // of an op submitted through `Shared::submit`, which leaked exactly
        // one `Rc` count for it with `Rc::into_raw`; its completion is
        // dequeued exactly once, here.
        unsafe { Rc::from_raw(ov as *const Op) }
    }

    /// The result of a dequeued op, and the state change it means.
    fn finish(&self, ov: *mut OVERLAPPED) -> Option<Event> {
        let op = self.reclaim(ov);
        let res = if op.sock.is_closed() {
            // Closed early (a dropped listener): a cancellation, and the
            // handle value may already name another socket.
            Err(io::Error::from_raw_os_error(ERROR_OPERATION_ABORTED as i32))
        } else {
            op.result()
        };
        net::complete(self, &op, res)
    }
}

/// What an operation is, for [`net`]'s completion handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Recv,
    Send,
    RecvFrom,
    SendTo,
    Accept,
    Connect,
}

/// One submitted operation and everything the kernel may read or write
/// until its completion is dequeued.
#[repr(C)]
pub(crate) struct Op {
    /// Must stay first: the kernel's OVERLAPPED pointer is the op's address.
    overlapped: UnsafeCell<OVERLAPPED>,
    pub(crate) kind: OpKind,
    socket: SOCKET,
    /// The socket's state (and handle: it closes only when every op on it
    /// completed).
    pub(crate) sock: Rc<net::SockShared>,
    /// Data: filled by receives, read by sends.
    pub(crate) buf: UnsafeCell<Vec<u8>>,
    /// The peer address a `WSARecvFrom` fills, with its length.
    pub(crate) addr: UnsafeCell<SOCKADDR_STORAGE>,
    pub(crate) addr_len: UnsafeCell<i32>,
    /// `WSARecv` / `WSARecvFrom` flags (in/out).
    pub(crate) flags: UnsafeCell<u32>,
    /// The target of a `WSASendTo` / `ConnectEx`.
    pub(crate) to: Option<socket2::SockAddr>,
    /// The socket an `AcceptEx` accepts into.
    pub(crate) accept: RefCell<Option<socket2::Socket>>,
}

impl Op {
    pub(crate) fn new(kind: OpKind, sock: &Rc<net::SockShared>, buf: Vec<u8>) -> Op {
        Op {
            // SAFETY: OVERLAPPED and SOCKADDR_STORAGE are plain C structs for
            // which all-zero bytes are the documented initial state.
            overlapped: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            kind,
            socket: sock.raw(),
            sock: sock.clone(),
            buf: UnsafeCell::new(buf),
            // SAFETY: as above.
            addr: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            addr_len: UnsafeCell::new(std::mem::size_of::<SOCKADDR_STORAGE>() as i32),
            flags: UnsafeCell::new(0),
            to: None,
            accept: RefCell::new(None),
        }
    }

    /// The result of a dequeued operation: bytes transferred or the error.
    fn result(&self) -> io::Result<usize> {
        let mut bytes = 0u32;
        let mut flags = 0u32;
        // SAFETY: the operation completed (it was dequeued), so the kernel no
        // longer writes the OVERLAPPED; the socket is open (the op holds it).
        let ok = unsafe {
            WSAGetOverlappedResult(
                self.socket,
                self.overlapped.get(),
                &mut bytes,
                0,
                &mut flags,
            )
        };
        if ok == 0 {
            // SAFETY: FFI call with no arguments.
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        Ok(bytes as usize)
    }

    /// The data buffer, once the kernel is done with it (after the
    /// completion was dequeued) or before submission.
    ///
    /// # Safety
    ///
    /// The op must not be in flight.
    #[allow(clippy::mut_from_ref)] // an UnsafeCell under the rule above
    pub(crate) unsafe fn buf_mut(&self) -> &mut Vec<u8> {
        // SAFETY: the caller guarantees the kernel does not use the buffer,
        // and the op is only touched from the loop's thread, one borrow at a
        // time.
        unsafe { &mut *self.buf.get() }
    }
}

/// The IOCP driver of one loop.
pub(crate) struct Driver {
    shared: Rc<Shared>,
    notifier: Arc<Notifier>,
    entries: Vec<OVERLAPPED_ENTRY>,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        let port = Arc::new(Port::new()?);
        Ok(Driver {
            shared: Rc::new(Shared {
                port: port.clone(),
                in_flight: RefCell::new(HashMap::new()),
                closed: Cell::new(false),
            }),
            notifier: Arc::new(Notifier { port }),
            entries: vec![OVERLAPPED_ENTRY::default(); ENTRIES],
        })
    }

    pub(crate) fn kind(&self) -> Backend {
        Backend::Proactor
    }

    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    pub(crate) fn shared(&self) -> &Rc<Shared> {
        &self.shared
    }

    /// Dequeues completions for up to `timeout` (rounded up to whole
    /// milliseconds, so timers never fire early) and turns them into events.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Event>,
    ) -> io::Result<()> {
        let ms = match timeout {
            None => u32::MAX, // INFINITE
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(u32::MAX as u128 - 1) as u32,
        };
        let n = self.dequeue(ms)?;
        for i in 0..n {
            let e = self.entries[i];
            if e.lpCompletionKey == WAKE_KEY || e.lpOverlapped.is_null() {
                continue;
            }
            if let Some(ev) = self.shared.finish(e.lpOverlapped) {
                out.push(ev);
            }
        }
        Ok(())
    }

    /// One `GetQueuedCompletionStatusEx`: the number of entries filled.
    fn dequeue(&mut self, ms: u32) -> io::Result<usize> {
        let mut n = 0u32;
        // SAFETY: `entries` is a live buffer of ENTRIES entries; the port is
        // open while the driver lives.
        let ok = unsafe {
            GetQueuedCompletionStatusEx(
                self.shared.port.0,
                self.entries.as_mut_ptr(),
                self.entries.len() as u32,
                &mut n,
                ms,
                0,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(WAIT_TIMEOUT as i32) {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

impl Drop for Driver {
    /// Closing the loop: cancel every operation still in flight and wait
    /// (bounded) for their completions, so no buffer is freed while the
    /// kernel may still use it. An op whose completion does not come in
    /// time is leaked, never freed early.
    fn drop(&mut self) {
        self.shared.closed.set(true);
        let ops: Vec<(usize, SOCKET)> = self
            .shared
            .in_flight
            .borrow()
            .iter()
            .map(|(&o, &s)| (o, s))
            .collect();
        for (op, socket) in ops {
            // SAFETY: the op is in flight (the kernel's count keeps it
            // alive), the socket is open (the op holds it).
            unsafe { CancelIoEx(socket as HANDLE, op as *const OVERLAPPED) };
        }
        let deadline = Instant::now() + CLOSE_DRAIN;
        while !self.shared.in_flight.borrow().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "aioloop: {} IOCP operations did not complete within {CLOSE_DRAIN:?} of \
                     closing the loop; their buffers are leaked, not freed",
                    self.shared.in_flight.borrow().len()
                );
                break;
            }
            let ms = left.as_millis().max(1) as u32;
            let Ok(n) = self.dequeue(ms) else { break };
            for i in 0..n {
                let e = self.entries[i];
                if e.lpCompletionKey == WAKE_KEY || e.lpOverlapped.is_null() {
                    continue;
                }
                drop(self.shared.reclaim(e.lpOverlapped));
            }
        }
    }
}
