//! The io_uring driver (Linux).
//!
//! One ring per loop. Every operation in flight has an entry in the driver's
//! operation table (`ops`, a slab whose key is the submission's `user_data`)
//! which OWNS everything the kernel may touch until the completion is reaped:
//! the read buffer of the notifier, and the buffers of completion-based
//! reads and writes. An entry that is no longer wanted (a dropped future, a
//! deregistered socket, a closing loop) is marked cancelled and a cancel is
//! submitted; the entry, and so its buffer, is freed only when the target's
//! own completion arrives. Submissions are queued and sent to the kernel by
//! the one `io_uring_enter` of [`Driver::poll`] (a full submission queue and
//! a socket deregistration, which must let go of the socket at once, flush
//! early).
//!
//! Stream reads use one multishot `RECV` per stream (Linux 6.0) that stays
//! armed and picks its buffers from a provided-buffer ring the driver owns
//! (`BufRing`, unregistered and freed only after `close` reaped every
//! operation); what it brings is queued per stream ([`Multi`]) until read,
//! and a stream more than `MULTI_CAP` buffers behind has its receive
//! cancelled until its reader catches up. A ring that runs dry (`ENOBUFS`)
//! makes a starved stream receive into a buffer of its own once. Datagram
//! sockets do the same with a multishot `RECVMSG` and a second ring of
//! 64 KiB buffers (one datagram each, never cut short).
//! `AIOLOOP_URING_LEGACY=1` (or an older kernel) keeps one `RECV` per
//! read and one `RECVMSG` per datagram, on a ring without deferred task work.
//!
//! The ring's fd is registered with the loop's thread
//! (`IORING_REGISTER_RING_FDS`, Linux 5.18) so each `io_uring_enter` skips
//! the fd lookup; a thread past its 16 slots (or legacy mode) enters by fd.
//!
//! Readiness (`add_reader`, I/O objects) is `POLL_ADD`: one-shot polls for
//! raw fds, re-armed by `reregister` (asyncio's level-triggered callbacks), and
//! one multishot poll per I/O object, which reports every wake-up like an
//! edge-triggered epoll registration.
#![allow(unsafe_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, EnterFlags, IoUring, Probe};
use slab::Slab;

use crate::backend::{Backend, DgramRead, Event, Interest, MultiRead};

/// `user_data` of cancels (`ASYNC_CANCEL`): their completions
/// are ignored (the target's own completion frees its entry).
const CANCEL: u64 = u64::MAX;

/// The `sources` entry of a registered object whose poll was cancelled
/// ([`Driver::quiet_source`]).
const QUIET: usize = usize::MAX;

/// Submission queue entries; the completion queue is four times larger.
/// With `IORING_FEAT_NODROP` (required by the probe) an overflowing
/// completion queue is buffered by the kernel, never dropped.
const ENTRIES: u32 = 256;

/// `IORING_RECVSEND_POLL_FIRST` (a receive's `ioprio`): arm the poll
/// without trying the receive first (Linux 5.19).
const RECV_POLL_FIRST: u16 = 1;

/// Multishot receives (`IORING_RECV_MULTISHOT`) take their buffers from one
/// provided-buffer ring per driver (made on first use): this many buffers
/// (a power of two) of this size, in buffer group `BUF_GROUP`.
const BUF_COUNT: u16 = 128;
const BUF_SIZE: usize = 16 * 1024;
const BUF_GROUP: u16 = 0;

/// Datagram sockets' multishot `RECVMSG`s take theirs from a second ring
/// (made on the first datagram receive): buffers large enough for the
/// `io_uring_recvmsg_out` header, the sender's address and the largest UDP
/// payload, so no datagram is cut short.
const DGRAM_BUF_COUNT: u16 = 32;
const DGRAM_BUF_SIZE: usize = 65_536 + 256;
const DGRAM_GROUP: u16 = 1;

/// Received chunks a multishot receive holds unread before it is stopped
/// (cancelled), so a reader that does not read cannot take every buffer;
/// it is armed again once the reader took them.
const MULTI_CAP: usize = 4;

/// The environment variable (`1`) that keeps to what io_uring offered before
/// Linux 6.0, as on such a kernel: no multishot receives (each stream read
/// is one `RECV` into a buffer of its own) and a ring without
/// `DEFER_TASKRUN`. Tests use it to cover the paths older kernels take.
pub(crate) const LEGACY_ENV: &str = "AIOLOOP_URING_LEGACY";

/// `IORING_REGISTER_RING_FDS`, `IORING_UNREGISTER_RING_FDS` (Linux 5.18)
/// and the `io_uring_enter` flag that takes such a registration's index
/// instead of the ring's fd (`IORING_ENTER_REGISTERED_RING`).
const REGISTER_RING_FDS: libc::c_long = 20;
const UNREGISTER_RING_FDS: libc::c_long = 21;
const ENTER_REGISTERED_RING: u32 = 1 << 4;

/// `struct io_uring_rsrc_update`, the argument of the ring fd
/// (un)registrations.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Registers `ring`'s fd with the calling thread (`IORING_REGISTER_RING_FDS`)
/// so its `io_uring_enter`s skip the fd lookup; returns the index, or `None`
/// when the kernel refuses (before 5.18, or the thread's 16 slots are taken:
/// the ring is then entered by its fd).
fn register_ring_fd(ring: &IoUring) -> Option<u32> {
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: ring.as_raw_fd() as u64,
    };
    // SAFETY: `up` is a live `io_uring_rsrc_update` for the one entry the
    // call is told about; the kernel writes the chosen index into it.
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd() as libc::c_long,
            REGISTER_RING_FDS,
            &mut up as *mut RsrcUpdate,
            1 as libc::c_long,
        )
    };
    (res == 1).then_some(up.offset)
}

/// Undoes [`register_ring_fd`] (on the thread that registered: the
/// registration is the thread's); returns whether the kernel took it back.
fn unregister_ring_fd(ring: &IoUring, index: u32) -> bool {
    let up = RsrcUpdate {
        offset: index,
        resv: 0,
        data: 0,
    };
    // SAFETY: `up` is a live `io_uring_rsrc_update` for the one entry the
    // call is told about; the kernel only reads it.
    let res = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd() as libc::c_long,
            UNREGISTER_RING_FDS,
            &up as *const RsrcUpdate,
            1 as libc::c_long,
        )
    };
    res == 1
}

fn legacy() -> bool {
    std::env::var(LEGACY_ENV).is_ok_and(|v| v.trim() == "1")
}

/// Opcodes the backend uses; the probe refuses a kernel that lacks one.
const REQUIRED: &[(u8, &str)] = &[
    (opcode::Nop::CODE, "the NOP opcode"),
    (opcode::Read::CODE, "the READ opcode"),
    (opcode::PollAdd::CODE, "the POLL_ADD opcode"),
    (opcode::AsyncCancel::CODE, "the ASYNC_CANCEL opcode"),
    (opcode::Recv::CODE, "the RECV opcode"),
    (opcode::Send::CODE, "the SEND opcode"),
    (opcode::RecvMsg::CODE, "the RECVMSG opcode"),
    (opcode::SendMsg::CODE, "the SENDMSG opcode"),
    (opcode::Accept::CODE, "the ACCEPT opcode"),
];

pub(crate) enum ProbeError {
    Setup(io::Error),
    Missing(&'static str),
}

/// Sets up a small ring and checks the opcodes and features we rely on.
pub(crate) fn check_kernel() -> Result<(), ProbeError> {
    let ring: IoUring = IoUring::new(8).map_err(ProbeError::Setup)?;
    check_ring(&ring)
}

fn check_ring(ring: &IoUring) -> Result<(), ProbeError> {
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(ProbeError::Missing(
            "IORING_FEAT_EXT_ARG (timed waits; Linux 5.11)",
        ));
    }
    if !params.is_feature_nodrop() {
        return Err(ProbeError::Missing("IORING_FEAT_NODROP (Linux 5.5)"));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|_| ProbeError::Missing("IORING_REGISTER_PROBE (Linux 5.6)"))?;
    for &(code, what) in REQUIRED {
        if !probe.is_supported(code) {
            return Err(ProbeError::Missing(what));
        }
    }
    Ok(())
}

/// The thread-safe wake-up: an eventfd the driver keeps a `READ` on.
pub(crate) struct Notifier {
    // A blocking eventfd: io_uring waits on it inside the kernel (a
    // non-blocking one would complete the READ at once with EAGAIN). Writes
    // never block in practice (the counter would have to reach 2^64 - 2).
    fd: File,
}

impl Notifier {
    fn new() -> io::Result<Notifier> {
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh eventfd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Notifier { fd: File::from(fd) })
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        match (&self.fd).write(&1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// One operation in flight (or one whose result nobody collected yet).
struct Op {
    kind: OpKind,
    /// A cancel was submitted (or the operation is no longer wanted): its
    /// completion frees the entry and reports nothing.
    cancelled: bool,
}

enum OpKind {
    /// The notifier's eventfd `READ`; the kernel writes into this buffer.
    Wake(Box<[u8; 8]>),
    /// A one-shot poll of a raw fd (`add_reader` / `add_writer`).
    FdPoll { fd: RawFd },
    /// The multishot poll of an I/O object.
    SourcePoll { token: usize, fd: RawFd },
    /// A completion-based receive or send; see [`Transfer`].
    Transfer(Transfer),
    /// A stream's receive that stays armed; see [`Multi`].
    Multi(Multi),
    /// An `ACCEPT`: the kernel writes the peer's address into `addr`. A
    /// connection accepted after its owner let go is closed here.
    Accept {
        token: usize,
        addr: Box<(libc::sockaddr_storage, libc::socklen_t)>,
        result: Option<i32>,
    },
}

/// A stream's multishot `RECV` into the provided-buffer ring: every
/// completion brings a buffer of data (or the end), queued here until the
/// reader takes it. The same entry re-arms the receive after it ended for
/// lack of buffers (`ENOBUFS`: one plain `RECV` into a buffer of its own
/// first, so a connection is never starved by others holding the ring) or
/// because the reader fell `MULTI_CAP` chunks behind.
struct Multi {
    token: usize,
    fd: RawFd,
    /// Data received and not yet read; the first chunk from `pos` on.
    chunks: VecDeque<Chunk>,
    pos: usize,
    /// What is in flight.
    state: MultiState,
    /// The end of the stream after the chunks: 0 (EOF) or a negative errno.
    end: Option<i32>,
    /// The reader let go (or the driver is closing): the entry is freed
    /// once nothing is in flight.
    released: bool,
    /// A datagram socket's receive (`RECVMSG`, the datagram ring): the
    /// message header the kernel reads (and, for a plain receive, writes
    /// the sender into). Datagrams are read one at a time, and an error is
    /// one item of the queue, not the end.
    dgram: Option<Box<MsgParts>>,
}

enum Chunk {
    /// Buffer `bid` of the ring, `len` bytes (for a datagram: the
    /// `io_uring_recvmsg_out` header, the sender, the payload).
    Ring(u16, usize),
    /// A plain receive's own buffer.
    Owned(Vec<u8>),
    /// A plain datagram receive's datagram and sender.
    Dgram(Vec<u8>, Option<std::net::SocketAddr>),
    /// A datagram receive that failed (a negative errno).
    Failed(i32),
}

enum MultiState {
    /// The multishot receive is armed.
    Armed,
    /// Its cancel was submitted; its last completion has not come yet.
    Stopping,
    /// A plain `RECV` into this buffer is in flight (after `ENOBUFS`).
    Plain(Vec<u8>),
    /// Nothing in flight.
    Idle,
}

/// The provided-buffer ring: `BUF_COUNT` descriptors the kernel reads (page
/// aligned, as registration wants) and the buffers they point to. Both are
/// raw allocations, not Rust-owned slices, since the kernel writes into
/// buffers behind the program's back. Freed only after the driver
/// unregistered the ring with every receive reaped (`Driver::close`).
struct BufRing {
    ring: *mut types::BufRingEntry,
    mem: *mut u8,
    /// Buffers handed to the kernel so far (the ring's tail).
    tail: u16,
    /// How many buffers (a power of two: `BUF_COUNT`, fewer in tests).
    count: u16,
    /// The size of each.
    size: usize,
    /// Its buffer group id.
    group: u16,
}

impl BufRing {
    fn ring_layout(count: u16) -> Layout {
        let len = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        Layout::from_size_align(len.max(4096), 4096).expect("a valid layout")
    }

    fn mem_layout(count: u16, size: usize) -> Layout {
        Layout::from_size_align(usize::from(count) * size, 4096).expect("a valid layout")
    }

    /// Allocates a ring of `count` buffers (a power of two) of `size`
    /// bytes, registers it as buffer group `group` and provides every
    /// buffer.
    fn new(uring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<BufRing> {
        debug_assert!(count.is_power_of_two());
        // SAFETY: both layouts have a non-zero size.
        let ring =
            unsafe { alloc_zeroed(BufRing::ring_layout(count)) }.cast::<types::BufRingEntry>();
        // SAFETY: as above.
        let mem = unsafe { alloc_zeroed(BufRing::mem_layout(count, size)) };
        let mut b = BufRing {
            ring,
            mem,
            tail: 0,
            count,
            size,
            group,
        };
        if ring.is_null() || mem.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // SAFETY: the descriptors stay allocated until `Drop`, which runs
        // only after `Driver::close` unregistered the group (or, when an
        // operation could not be reaped, never: the ring is leaked).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, count, group, 0)?;
        }
        for bid in 0..count {
            b.provide(bid);
        }
        Ok(b)
    }

    /// Hands buffer `bid` (back) to the kernel.
    fn provide(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < `count` descriptors allocated in `new`. The
        // kernel reads only the descriptors between its head and our tail,
        // and this one is at the tail (it has consumed it, if it was ever
        // filled); the setters write its address, length and id, never the
        // tail field the first descriptor shares.
        let e = unsafe { &mut *self.ring.add(slot) };
        e.set_addr(self.mem as u64 + u64::from(bid) * self.size as u64);
        e.set_len(clamp_len(self.size));
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the aligned u16 the first descriptor holds,
        // shared with the kernel, which only reads it (atomically): the
        // release store publishes the descriptor written above.
        let tail = unsafe { AtomicU16::from_ptr(types::BufRingEntry::tail(self.ring).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`.
    fn data(&self, bid: u16, len: usize) -> &[u8] {
        debug_assert!(bid < self.count && len <= self.size);
        // SAFETY: the kernel wrote `len` bytes (at most the size) into
        // buffer `bid` and handed it over in a completion: it does not touch
        // it again until `provide` gives it back, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.mem.add(usize::from(bid) * self.size), len) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts (null when that
        // allocation failed); the kernel let go of them (see `new`).
        unsafe {
            if !self.ring.is_null() {
                dealloc(self.ring.cast(), BufRing::ring_layout(self.count));
            }
            if !self.mem.is_null() {
                dealloc(self.mem, BufRing::mem_layout(self.count, self.size));
            }
        }
    }
}

/// A `RECV` or `SEND` whose buffer the operation owns.
struct Transfer {
    token: usize,
    fd: RawFd,
    send: bool,
    /// The kernel reads from `buf[done..]` (send) or writes into
    /// `buf[..capacity]` (receive; `len` is set from the result).
    buf: Vec<u8>,
    /// Bytes sent so far: a short send is continued by the driver, so a
    /// send completes once with everything sent or an error.
    done: usize,
    /// Sent after `buf`, in order, by the same operation.
    then: Vec<u8>,
    /// Shut the write side down once everything is sent.
    shut_after: bool,
    /// Nobody collects the result: the entry is freed on completion.
    detached: bool,
    /// A detached send's own duplicate of the socket (`fd` is then its
    /// number): the owner closes its fd, the rest of the send goes on here.
    own_fd: Option<OwnedFd>,
    /// The completion, once it arrived: bytes, or a negative errno.
    result: Option<i32>,
    /// A `RECVMSG` or `SENDMSG` (datagrams): the header, its one iovec and
    /// the sender's (receive) or destination (send) address, boxed so the
    /// pointers between them stay valid. A datagram send is never
    /// continued: it completes whole or fails.
    msg: Option<Box<MsgParts>>,
    /// A receive submitted ahead of need (the socket was just drained):
    /// the kernel waits for data before trying it (`RECV_POLL_FIRST`).
    ahead: bool,
}

impl Transfer {
    /// A plain `RECV` (`send`: `SEND`) of `buf`, nothing queued behind it.
    fn new(fd: RawFd, token: usize, send: bool, buf: Vec<u8>) -> Transfer {
        Transfer {
            token,
            fd,
            send,
            buf,
            done: 0,
            then: Vec::new(),
            shut_after: false,
            detached: false,
            own_fd: None,
            result: None,
            msg: None,
            ahead: false,
        }
    }
}

/// What a `RECVMSG` / `SENDMSG` points the kernel to (besides the data
/// buffer).
struct MsgParts {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

/// A raw fd watched for `add_reader` / `add_writer`.
struct FdWatch {
    token: usize,
    interest: Interest,
    /// The poll in flight: its entry and its mask.
    armed: Option<(usize, u32)>,
}

pub(crate) struct Driver {
    ring: IoUring,
    /// The ring's registered index ([`register_ring_fd`]) for this thread
    /// (the loop is not `Send`: the thread that made the driver is the one
    /// that enters it); `None`: entered by its fd.
    ring_index: Option<u32>,
    ops: Slab<Op>,
    fds: HashMap<RawFd, FdWatch>,
    /// The multishot poll of each registered I/O object, by fd.
    sources: HashMap<RawFd, usize>,
    notifier: Arc<Notifier>,
    /// Completions taken from the ring, processed outside its borrow.
    cqes: Vec<(u64, i32, u32)>,
    /// Spare transfer buffers.
    pool: Vec<Vec<u8>>,
    /// Spare datagram message parts (each datagram send needs one). Boxed
    /// as the operations hold them (the kernel has their address): kept to
    /// reuse the allocation.
    #[allow(clippy::vec_box)]
    spare_msgs: Vec<Box<MsgParts>>,
    /// The kernel knows `RECV_POLL_FIRST` (it has `SEND_ZC`, Linux 6.0).
    poll_first: bool,
    /// Multishot receives: `Some(true)` once the buffer ring is set up,
    /// `Some(false)` when they are off (no Linux 6.0, the switch, or the
    /// ring could not be set up), `None` before the first stream asked.
    multishot: Option<bool>,
    bufs: Option<BufRing>,
    /// The buffer ring's size (`BUF_COUNT`; tests make it small).
    buf_count: u16,
    /// As `multishot` / `bufs` / `buf_count`, for datagram sockets.
    dgram_multishot: Option<bool>,
    dbufs: Option<BufRing>,
    dgram_buf_count: u16,
    closed: bool,
}

const SOURCE_MASK: u32 = (libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDHUP) as u32;

impl Driver {
    pub(crate) fn new(backend: Backend) -> io::Result<Driver> {
        debug_assert_eq!(backend, Backend::Proactor);
        // One thread submits (the loop is not `Send`), so the kernel may
        // defer the completion work of ready operations (a receive whose
        // data arrived) to our next `io_uring_enter` instead of
        // interrupting us for it (Linux 6.1). Older kernels refuse the
        // flags with EINVAL: the ring is then set up without them.
        let plain = || {
            IoUring::builder()
                .setup_cqsize(ENTRIES * 4)
                .build(ENTRIES)
                .map_err(super::setup_error)
        };
        let ring: IoUring = if legacy() {
            plain()?
        } else {
            match IoUring::builder()
                .setup_cqsize(ENTRIES * 4)
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .build(ENTRIES)
            {
                Ok(ring) => ring,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => plain()?,
                Err(e) => return Err(super::setup_error(e)),
            }
        };
        if let Err(ProbeError::Missing(what)) = check_ring(&ring) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("this kernel's io_uring lacks {what}"),
            ));
        }
        let mut probe = Probe::new();
        let poll_first = ring.submitter().register_probe(&mut probe).is_ok()
            && probe.is_supported(opcode::SendZc::CODE);
        // Legacy keeps to what a pre-6.0 kernel offers... and to the plain
        // fd, so the tests cover that path too.
        let ring_index = if legacy() {
            None
        } else {
            register_ring_fd(&ring)
        };
        let mut d = Driver {
            ring,
            ring_index,
            ops: Slab::with_capacity(64),
            fds: HashMap::new(),
            sources: HashMap::new(),
            notifier: Arc::new(Notifier::new()?),
            cqes: Vec::with_capacity(64),
            pool: Vec::new(),
            spare_msgs: Vec::new(),
            poll_first,
            multishot: None,
            bufs: None,
            buf_count: BUF_COUNT,
            dgram_multishot: None,
            dbufs: None,
            dgram_buf_count: DGRAM_BUF_COUNT,
            closed: false,
        };
        d.arm_wake(Box::new([0; 8]))?;
        Ok(d)
    }

    pub(crate) fn kind(&self) -> Backend {
        Backend::Proactor
    }

    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    /// Queues `entry`; flushes the submission queue first if it is full.
    ///
    /// # Safety
    ///
    /// Every buffer and fd `entry` points to must stay valid until its
    /// completion is reaped (callers keep them in the `ops` entry whose key
    /// is the `user_data`).
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {
                    // Make room in the completion queue and retry.
                    self.take_cqes();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn arm_wake(&mut self, buf: Box<[u8; 8]>) -> io::Result<()> {
        let key = self.ops.insert(Op {
            kind: OpKind::Wake(buf),
            cancelled: false,
        });
        let OpKind::Wake(buf) = &mut self.ops[key].kind else {
            unreachable!()
        };
        let entry = opcode::Read::new(types::Fd(self.notifier.fd.as_raw_fd()), buf.as_mut_ptr(), 8)
            .build()
            .user_data(key as u64);
        // SAFETY: the buffer is a Box owned by the entry `key`, which is
        // freed only once this read's completion is reaped (`complete`), and
        // the eventfd belongs to `self.notifier`, which the driver holds
        // until after `close` reaped everything.
        let res = unsafe { self.push(&entry) };
        if res.is_err() {
            self.ops.remove(key);
        }
        res
    }

    /// Asks the kernel to drop operation `key`; its completion frees it.
    fn cancel(&mut self, key: usize) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if op.cancelled {
            return;
        }
        op.cancelled = true;
        // ASYNC_CANCEL rather than POLL_REMOVE even for polls: a remove that
        // races with a wake-up of a multishot poll fails with EALREADY and
        // leaves the poll armed, while a cancel marks it for teardown.
        let entry = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(CANCEL);
        // SAFETY: a cancel points to no memory and no fd, only to the
        // `user_data` of its target.
        let _ = unsafe { self.push(&entry) };
    }

    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Event>,
    ) -> io::Result<()> {
        let ready = !self.ring.completion().is_empty();
        let res = if ready || timeout == Some(Duration::ZERO) {
            let sq = self.ring.submission();
            let needed = !sq.is_empty() || sq.cq_overflow() || sq.taskrun();
            drop(sq);
            if needed {
                self.enter_nowait()
            } else {
                Ok(0)
            }
        } else {
            let n = clamp_len(self.ring.submission().len());
            let flags = EnterFlags::GETEVENTS.bits();
            match timeout {
                None => self.enter(n, 1, flags, None),
                Some(d) => {
                    let ts = types::Timespec::from(d);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.enter(n, 1, flags | EnterFlags::EXT_ARG.bits(), Some(&args))
                }
            }
        };
        match res {
            Ok(_) => {}
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: the
            // completion queue is full (reaping below makes room).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap(out);
        Ok(())
    }

    /// Submits the queued entries and runs the completion work the kernel
    /// deferred to us (`GETEVENTS` with no minimum: never waits), so what
    /// the submissions finished (a cancelled poll letting go of its socket,
    /// a receive our own send fed) is complete when this returns.
    fn enter_nowait(&mut self) -> io::Result<usize> {
        let n = clamp_len(self.ring.submission().len());
        self.enter(n, 0, EnterFlags::GETEVENTS.bits(), None)
    }

    /// `io_uring_enter` through the registered index when there is one
    /// (no fd lookup in the kernel), else through the ring's fd. `args`
    /// goes with `EXT_ARG` in `flags`.
    fn enter(
        &mut self,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
        args: Option<&types::SubmitArgs<'_, '_>>,
    ) -> io::Result<usize> {
        let Some(index) = self.ring_index else {
            // SAFETY: `args`, if any, is a live `io_uring_getevents_arg`
            // (`SubmitArgs` is `repr(transparent)` over it) sized by the
            // call; the entries being submitted were pushed under `push`'s
            // contract.
            return unsafe {
                self.ring
                    .submitter()
                    .enter(to_submit, min_complete, flags, args)
            };
        };
        let (arg, size) = match args {
            Some(a) => (
                a as *const types::SubmitArgs<'_, '_> as *const libc::c_void,
                std::mem::size_of::<types::SubmitArgs<'_, '_>>(),
            ),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `index` is this thread's registration of this ring (made
        // in `new` on the thread that owns the loop, dropped only in
        // `close`); `arg` is null or a live `io_uring_getevents_arg` of
        // `size` bytes (`SubmitArgs` is `repr(transparent)` over it); the
        // entries being submitted were pushed under `push`'s contract.
        let res = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                index as libc::c_long,
                to_submit as libc::c_long,
                min_complete as libc::c_long,
                (flags | ENTER_REGISTERED_RING) as libc::c_long,
                arg,
                size as libc::c_long,
            )
        };
        if res >= 0 {
            return Ok(res as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBADF) {
            return Err(e);
        }
        // The thread no longer has the registration (the kernel refused the
        // index before looking at anything else): enter by fd from now on.
        log::warn!(
            target: "aioloop",
            "io_uring: the ring's registered index {index} is gone; entering by fd"
        );
        self.ring_index = None;
        self.enter(to_submit, min_complete, flags, args)
    }

    fn take_cqes(&mut self) {
        for cqe in self.ring.completion() {
            self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
    }

    fn reap(&mut self, out: &mut Vec<Event>) {
        self.take_cqes();
        let mut cqes = std::mem::take(&mut self.cqes);
        for &(user_data, res, flags) in &cqes {
            if user_data != CANCEL {
                self.complete(user_data as usize, res, flags, out);
            }
        }
        cqes.clear();
        if self.cqes.is_empty() {
            self.cqes = cqes;
        }
    }

    fn complete(&mut self, key: usize, res: i32, flags: u32, out: &mut Vec<Event>) {
        let Some(op) = self.ops.get(key) else {
            return;
        };
        let more = cqueue::more(flags);
        let cancelled = op.cancelled;
        match op.kind {
            OpKind::Wake(_) => {
                let Op {
                    kind: OpKind::Wake(buf),
                    ..
                } = self.ops.remove(key)
                else {
                    unreachable!()
                };
                if !cancelled && !self.closed {
                    // The eventfd counter was read (reset): wait for the next
                    // notification.
                    let _ = self.arm_wake(buf);
                }
            }
            OpKind::FdPoll { fd } => {
                if !more {
                    self.ops.remove(key);
                }
                if cancelled {
                    return;
                }
                let Some(w) = self.fds.get_mut(&fd) else {
                    return;
                };
                if w.armed.is_none_or(|(k, _)| k != key) {
                    return;
                }
                w.armed = None;
                if res >= 0 {
                    out.push(event(w.token, res as u32));
                }
            }
            OpKind::Transfer(_) => self.transferred(key, res, out),
            OpKind::Multi(_) => self.multi_completed(key, res, flags, out),
            OpKind::Accept { token, .. } => {
                if cancelled || self.closed {
                    self.ops.remove(key);
                    close_accepted(res);
                    return;
                }
                if let OpKind::Accept { result, .. } = &mut self.ops[key].kind {
                    *result = Some(res);
                }
                out.push(Event {
                    token,
                    readable: true,
                    writable: false,
                    read_closed: false,
                    write_closed: false,
                });
            }
            OpKind::SourcePoll { token, fd } => {
                if !more {
                    self.ops.remove(key);
                    if self.sources.get(&fd) == Some(&key) {
                        self.sources.remove(&fd);
                    }
                    if !cancelled && !self.closed && res != -libc::ECANCELED {
                        // The kernel ended the multishot poll (it does so
                        // under memory pressure or a CQ overflow): re-arm.
                        let _ = self.arm_source(fd, token);
                    }
                }
                if !cancelled && res >= 0 {
                    out.push(event(token, res as u32));
                }
            }
        }
    }

    // -----------------------------------------------------------------
    // Completion-based transfers: the operation owns its buffer.

    /// An empty buffer (from the pool) with room for at least `cap` bytes.
    pub(crate) fn buffer(&mut self, cap: usize) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b.reserve(cap);
        b
    }

    /// Gives a buffer back to the pool.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < 64 && buf.capacity() <= 256 * 1024 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// Starts a `RECV` of up to `buf.capacity()` bytes into `buf`; the
    /// completion is reported as a readable event with `token`. `ahead`:
    /// the socket was just drained, so the receive waits for data before
    /// trying (saves a receive that would fail).
    pub(crate) fn submit_recv(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        ahead: bool,
    ) -> io::Result<usize> {
        self.start_transfer(fd, token, false, buf, false, ahead)
    }

    /// Starts a `RECVMSG` of one datagram into `buf` (up to its capacity),
    /// keeping the sender's address; collect it with [`take_from`](Driver::take_from).
    /// `ahead` as for [`submit_recv`](Driver::submit_recv).
    pub(crate) fn submit_recv_msg(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        ahead: bool,
    ) -> io::Result<usize> {
        let mut parts = self.msg_parts();
        parts.hdr.msg_namelen = STORAGE_LEN;
        self.start_msg(fd, token, false, buf, parts, ahead)
    }

    /// Starts a `SEND` of all of `buf` (continued after short sends),
    /// then shuts the write side down if `shut_after`; the completion is
    /// reported as a writable event with `token`.
    pub(crate) fn submit_send(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        shut_after: bool,
    ) -> io::Result<usize> {
        self.start_transfer(fd, token, true, buf, shut_after, false)
    }

    /// Starts a `SENDMSG` of `buf` as one datagram to `to` (the connected
    /// peer when `None`); the completion is reported as a writable event
    /// with `token`; collect it with [`take`](Driver::take).
    pub(crate) fn submit_send_to(
        &mut self,
        fd: RawFd,
        token: usize,
        buf: Vec<u8>,
        to: Option<std::net::SocketAddr>,
    ) -> io::Result<usize> {
        let mut parts = self.msg_parts();
        parts.hdr.msg_namelen = match to {
            Some(to) => write_sockaddr(to, &mut parts.addr),
            None => 0,
        };
        self.start_msg(fd, token, true, buf, parts, false)
    }

    /// Zeroed message parts (a spare one from a collected datagram send,
    /// or a new one).
    fn msg_parts(&mut self) -> Box<MsgParts> {
        match self.spare_msgs.pop() {
            Some(mut parts) => {
                // SAFETY: all-zero is a valid value of these plain C structs.
                *parts = unsafe { std::mem::zeroed() };
                parts
            }
            // SAFETY: as above.
            None => Box::new(unsafe { std::mem::zeroed() }),
        }
    }

    fn start_msg(
        &mut self,
        fd: RawFd,
        token: usize,
        send: bool,
        buf: Vec<u8>,
        parts: Box<MsgParts>,
        ahead: bool,
    ) -> io::Result<usize> {
        self.start(Transfer {
            msg: Some(parts),
            ahead,
            ..Transfer::new(fd, token, send, buf)
        })
    }

    fn start_transfer(
        &mut self,
        fd: RawFd,
        token: usize,
        send: bool,
        buf: Vec<u8>,
        shut_after: bool,
        ahead: bool,
    ) -> io::Result<usize> {
        self.start(Transfer {
            shut_after,
            ahead,
            ..Transfer::new(fd, token, send, buf)
        })
    }

    /// Enters `t` in the table and queues its submission.
    fn start(&mut self, t: Transfer) -> io::Result<usize> {
        if self.closed {
            self.recycle(t.buf);
            return Err(closed());
        }
        let key = self.ops.insert(Op {
            kind: OpKind::Transfer(t),
            cancelled: false,
        });
        if let Err(e) = self.push_transfer(key) {
            if let OpKind::Transfer(t) = self.ops.remove(key).kind {
                self.recycle(t.buf);
            }
            return Err(e);
        }
        Ok(key)
    }

    fn push_transfer(&mut self, key: usize) -> io::Result<()> {
        let OpKind::Transfer(t) = &mut self.ops[key].kind else {
            unreachable!("a transfer key")
        };
        let ioprio = if t.ahead && self.poll_first {
            RECV_POLL_FIRST
        } else {
            0
        };
        let entry = if let Some(m) = t.msg.as_deref_mut() {
            m.iov.iov_base = t.buf.as_mut_ptr().cast();
            // `msg_namelen` was set by `submit_*`: the buffer's size for a
            // receive, the address's for a send (0: the connected peer).
            m.hdr.msg_name = if m.hdr.msg_namelen > 0 {
                std::ptr::addr_of_mut!(m.addr).cast()
            } else {
                std::ptr::null_mut()
            };
            m.hdr.msg_iov = std::ptr::addr_of_mut!(m.iov);
            m.hdr.msg_iovlen = 1;
            if t.send && self.poll_first {
                // Linux 6.0: a SEND with the destination is lighter than
                // a SENDMSG (no header and iovec to copy in).
                let (to, to_len) = if m.hdr.msg_namelen > 0 {
                    (std::ptr::addr_of!(m.addr).cast(), m.hdr.msg_namelen)
                } else {
                    (std::ptr::null(), 0)
                };
                opcode::Send::new(types::Fd(t.fd), t.buf.as_ptr(), clamp_len(t.buf.len()))
                    .dest_addr(to)
                    .dest_addr_len(to_len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            } else if t.send {
                m.iov.iov_len = t.buf.len();
                opcode::SendMsg::new(types::Fd(t.fd), std::ptr::addr_of!(m.hdr))
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            } else {
                m.iov.iov_len = t.buf.capacity();
                opcode::RecvMsg::new(types::Fd(t.fd), std::ptr::addr_of_mut!(m.hdr))
                    .ioprio(ioprio)
                    .build()
            }
        } else if t.send {
            let rest = &t.buf[t.done..];
            opcode::Send::new(types::Fd(t.fd), rest.as_ptr(), clamp_len(rest.len()))
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            let cap = t.buf.capacity();
            opcode::Recv::new(types::Fd(t.fd), t.buf.as_mut_ptr(), clamp_len(cap))
                .ioprio(ioprio)
                .build()
        }
        .user_data(key as u64);
        // SAFETY: the buffer's heap memory (and a RECVMSG's or SENDMSG's
        // boxed header, iovec and address) belongs to the entry `key` of
        // `ops`, which is neither freed nor resized until this submission's
        // completion is reaped: `take` only hands out completed transfers,
        // `cancel_transfer` and `close` keep the entry until the target's
        // own completion arrives, and moving the `Vec` (the slab growing)
        // does not move its heap buffer. The kernel takes its own reference
        // to the file at submission, so closing the fd cannot free it.
        unsafe { self.push(&entry) }
    }

    fn transferred(&mut self, key: usize, mut res: i32, out: &mut Vec<Event>) {
        let cancelled = self.ops[key].cancelled;
        let closed = self.closed;
        let OpKind::Transfer(t) = &mut self.ops[key].kind else {
            unreachable!("a transfer key")
        };
        if t.send && t.msg.is_none() && res > 0 && !cancelled && !closed {
            t.done += res as usize;
            let mut spent = None;
            if t.done >= t.buf.len() && !t.then.is_empty() {
                let next = std::mem::take(&mut t.then);
                spent = Some(std::mem::replace(&mut t.buf, next));
                t.done = 0;
            }
            let more = t.done < t.buf.len();
            if let Some(b) = spent {
                self.recycle(b);
            }
            if more {
                match self.push_transfer(key) {
                    Ok(()) => return,
                    Err(e) => res = -e.raw_os_error().unwrap_or(libc::EIO),
                }
            }
        }
        let OpKind::Transfer(t) = &mut self.ops[key].kind else {
            unreachable!("a transfer key")
        };
        if t.send && res >= 0 && t.shut_after && !cancelled && !closed {
            // The stream asked for the shutdown while its data was still
            // queued here; it is alive (dropping it clears `shut_after`),
            // so the fd is still its socket.
            // SAFETY: shutdown takes no pointers.
            unsafe { libc::shutdown(t.fd, libc::SHUT_WR) };
        }
        if cancelled || t.detached || closed {
            if let OpKind::Transfer(t) = self.ops.remove(key).kind {
                self.recycle(t.buf);
                self.recycle(t.then);
            }
            return;
        }
        if !t.send && res > 0 {
            // SAFETY: the kernel wrote `res` bytes (at most the capacity we
            // passed) at the start of the buffer.
            unsafe { t.buf.set_len(res as usize) };
        }
        t.result = Some(res);
        out.push(Event {
            token: t.token,
            readable: !t.send,
            writable: t.send,
            read_closed: false,
            write_closed: false,
        });
    }

    /// The result of a completed transfer (bytes, or a negative errno) and
    /// its buffer; `None` while it is in flight. Frees the entry.
    pub(crate) fn take(&mut self, key: usize) -> Option<(i32, Vec<u8>)> {
        match self.ops.get(key) {
            Some(Op {
                kind: OpKind::Transfer(t),
                cancelled: false,
            }) if t.result.is_some() => {}
            _ => return None,
        }
        match self.ops.remove(key).kind {
            OpKind::Transfer(t) => {
                if let Some(parts) = t.msg.filter(|_| self.spare_msgs.len() < 64) {
                    self.spare_msgs.push(parts);
                }
                Some((t.result.unwrap_or(-libc::EIO), t.buf))
            }
            _ => None,
        }
    }

    /// Like [`take`](Driver::take) for a `RECVMSG`, with the sender's
    /// address (when the kernel reported an IP address).
    pub(crate) fn take_from(
        &mut self,
        key: usize,
    ) -> Option<(i32, Vec<u8>, Option<std::net::SocketAddr>)> {
        match self.ops.get(key) {
            Some(Op {
                kind: OpKind::Transfer(t),
                cancelled: false,
            }) if t.result.is_some() => {}
            _ => return None,
        }
        match self.ops.remove(key).kind {
            OpKind::Transfer(t) => {
                let from = t
                    .msg
                    .as_deref()
                    .and_then(|m| sockaddr(&m.addr, m.hdr.msg_namelen));
                Some((t.result.unwrap_or(-libc::EIO), t.buf, from))
            }
            _ => None,
        }
    }

    // -----------------------------------------------------------------
    // Multishot stream receives (see `Multi`).

    /// Whether stream reads use multishot receives: Linux 6.0 (`SEND_ZC`
    /// is the probe for it), not turned off with [`LEGACY_ENV`], and the
    /// buffer ring set up (on the first call).
    pub(crate) fn recv_multishot(&mut self) -> bool {
        if let Some(on) = self.multishot {
            return on;
        }
        let wanted = self.poll_first && !self.closed && !legacy();
        if wanted {
            self.bufs = self.buf_ring(self.buf_count, BUF_SIZE, BUF_GROUP);
        }
        let on = self.bufs.is_some();
        self.multishot = Some(on);
        on
    }

    /// A provided-buffer ring (see [`BufRing::new`]), or `None` (said at
    /// debug level) when the kernel refuses it: receives then go one by one.
    fn buf_ring(&self, count: u16, size: usize, group: u16) -> Option<BufRing> {
        BufRing::new(&self.ring, count, size, group)
            .map_err(|e| {
                log::debug!(target: "aioloop", "io_uring: no provided-buffer ring {group} ({e}); one receive per read");
            })
            .ok()
    }

    /// Whether datagram receives use multishot `RECVMSG`s: as
    /// [`recv_multishot`](Driver::recv_multishot), with the datagram ring.
    pub(crate) fn dgram_multishot(&mut self) -> bool {
        if let Some(on) = self.dgram_multishot {
            return on;
        }
        if self.recv_multishot() {
            self.dbufs = self.buf_ring(self.dgram_buf_count, DGRAM_BUF_SIZE, DGRAM_GROUP);
        }
        let on = self.dbufs.is_some();
        self.dgram_multishot = Some(on);
        on
    }

    /// The buffer ring of a stream's (`false`) or a datagram socket's
    /// receives.
    fn ring_for(&mut self, dgram: bool) -> Option<&mut BufRing> {
        if dgram {
            self.dbufs.as_mut()
        } else {
            self.bufs.as_mut()
        }
    }

    /// Arms a multishot receive on stream `fd`; its data (and its end) is
    /// reported as readable events with `token` and read with
    /// [`read_multi`](Driver::read_multi). Needs [`recv_multishot`](Driver::recv_multishot).
    pub(crate) fn submit_recv_multi(&mut self, fd: RawFd, token: usize) -> io::Result<usize> {
        self.start_multi(fd, token, false)
    }

    /// Like [`submit_recv_multi`](Driver::submit_recv_multi) for datagram
    /// socket `fd` (read with [`read_dgram`](Driver::read_dgram)). Needs
    /// [`dgram_multishot`](Driver::dgram_multishot).
    pub(crate) fn submit_recv_dgram_multi(&mut self, fd: RawFd, token: usize) -> io::Result<usize> {
        self.start_multi(fd, token, true)
    }

    fn start_multi(&mut self, fd: RawFd, token: usize, dgram: bool) -> io::Result<usize> {
        if self.closed {
            return Err(closed());
        }
        if self.ring_for(dgram).is_none() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        // SAFETY: all-zero is a valid value of these plain C structs.
        let parts = dgram.then(|| Box::new(unsafe { std::mem::zeroed::<MsgParts>() }));
        let key = self.ops.insert(Op {
            kind: OpKind::Multi(Multi {
                token,
                fd,
                chunks: VecDeque::new(),
                pos: 0,
                state: MultiState::Idle,
                end: None,
                released: false,
                dgram: parts,
            }),
            cancelled: false,
        });
        if let Err(e) = self.arm_multi(key, false) {
            self.ops.remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Submits entry `key`'s multishot receive, or (`plain`) one `RECV`
    /// into a buffer of its own.
    fn arm_multi(&mut self, key: usize, plain: bool) -> io::Result<()> {
        let buf = if plain {
            Some(self.buffer(BUF_SIZE.max(DATAGRAM_CAP)))
        } else {
            None
        };
        let op = &mut self.ops[key];
        op.cancelled = false;
        let OpKind::Multi(m) = &mut op.kind else {
            unreachable!("a multishot key")
        };
        let fd = types::Fd(m.fd);
        let entry = match (buf, m.dgram.as_deref_mut()) {
            (Some(mut b), None) => {
                let entry = opcode::Recv::new(fd, b.as_mut_ptr(), clamp_len(BUF_SIZE)).build();
                m.state = MultiState::Plain(b);
                entry
            }
            (Some(mut b), Some(parts)) => {
                parts.iov.iov_base = b.as_mut_ptr().cast();
                parts.iov.iov_len = b.capacity();
                parts.hdr.msg_name = std::ptr::addr_of_mut!(parts.addr).cast();
                parts.hdr.msg_namelen = STORAGE_LEN;
                parts.hdr.msg_iov = std::ptr::addr_of_mut!(parts.iov);
                parts.hdr.msg_iovlen = 1;
                m.state = MultiState::Plain(b);
                opcode::RecvMsg::new(fd, std::ptr::addr_of_mut!(parts.hdr)).build()
            }
            (None, None) => {
                m.state = MultiState::Armed;
                opcode::RecvMulti::new(fd, BUF_GROUP).build()
            }
            (None, Some(parts)) => {
                // The header only sizes what each buffer starts with: the
                // sender (`STORAGE_LEN`), no control data; the data itself
                // goes into ring buffers.
                parts.hdr = dgram_template();
                m.state = MultiState::Armed;
                opcode::RecvMsgMulti::new(fd, std::ptr::addr_of!(parts.hdr), DGRAM_GROUP).build()
            }
        }
        .user_data(key as u64);
        // SAFETY: a multishot receive writes only into ring buffers, which
        // the driver keeps until `close` reaped every operation and
        // unregistered the ring; a plain one writes into the buffer held in
        // `MultiState::Plain` of the entry `key`, kept until its completion
        // (moving the `Vec` does not move its heap buffer). A datagram
        // receive's header, iovec and address are boxed in the entry, which
        // lives until its last completion. The kernel takes its own
        // reference to the socket.
        let res = unsafe { self.push(&entry) };
        if res.is_err() {
            if let OpKind::Multi(m) = &mut self.ops[key].kind {
                if let MultiState::Plain(b) = std::mem::replace(&mut m.state, MultiState::Idle) {
                    self.pool.push(b);
                }
            }
        }
        res
    }

    fn multi_completed(&mut self, key: usize, res: i32, flags: u32, out: &mut Vec<Event>) {
        let closed = self.closed;
        let OpKind::Multi(m) = &mut self.ops[key].kind else {
            unreachable!("a multishot key")
        };
        let mut news = false;
        let mut starved = false;
        match std::mem::replace(&mut m.state, MultiState::Idle) {
            MultiState::Plain(mut b) => {
                let retry = res == -libc::EAGAIN || res == -libc::EINTR || res == -libc::ECANCELED;
                match m.dgram.as_deref() {
                    // A datagram may be empty.
                    Some(parts) if res >= 0 => {
                        // SAFETY: the kernel wrote `res` bytes (at most the
                        // capacity passed) at the start of the buffer.
                        unsafe { b.set_len(res as usize) };
                        let from = sockaddr(&parts.addr, parts.hdr.msg_namelen);
                        m.chunks.push_back(Chunk::Dgram(b, from));
                        news = true;
                    }
                    Some(_) => {
                        self.pool.push(b);
                        if !retry {
                            m.chunks.push_back(Chunk::Failed(res));
                            news = true;
                        }
                    }
                    None if res > 0 => {
                        // SAFETY: as above.
                        unsafe { b.set_len(res as usize) };
                        m.chunks.push_back(Chunk::Owned(b));
                        news = true;
                    }
                    None => {
                        self.pool.push(b);
                        if !retry {
                            m.end = Some(res);
                            news = true;
                        }
                    }
                }
            }
            state @ (MultiState::Armed | MultiState::Stopping) => {
                let more = cqueue::more(flags);
                if more {
                    m.state = state;
                }
                let dgram = m.dgram.is_some();
                match cqueue::buffer_select(flags) {
                    Some(bid) if res > 0 => {
                        m.chunks.push_back(Chunk::Ring(bid, res as usize));
                        news = true;
                    }
                    Some(bid) => {
                        if let Some(b) = self.ring_for(dgram) {
                            b.provide(bid);
                        }
                    }
                    None => {}
                }
                let OpKind::Multi(m) = &mut self.ops[key].kind else {
                    unreachable!("a multishot key")
                };
                if !more {
                    match res {
                        r if r == -libc::ENOBUFS => starved = true,
                        r if r == -libc::ECANCELED || r == -libc::EAGAIN || r == -libc::EINTR => {}
                        // A datagram socket's error (an ICMP one) is for
                        // one receive; the socket goes on.
                        r if r < 0 && dgram => {
                            m.chunks.push_back(Chunk::Failed(r));
                            news = true;
                        }
                        r if r <= 0 && !dgram => {
                            m.end = Some(r);
                            news = true;
                        }
                        _ => {}
                    }
                } else if m.chunks.len() >= MULTI_CAP && matches!(m.state, MultiState::Armed) {
                    // The reader is behind: stop taking buffers.
                    m.state = MultiState::Stopping;
                    self.cancel(key);
                }
            }
            MultiState::Idle => {}
        }
        let OpKind::Multi(m) = &mut self.ops[key].kind else {
            unreachable!("a multishot key")
        };
        if m.released || closed {
            if matches!(m.state, MultiState::Idle) {
                self.free_multi(key);
            }
            return;
        }
        if news {
            // The end is sticky (read-closed), as a FIN is for the
            // selector: a short read that empties the chunks clears the
            // readiness, and the reader must still come back for the end.
            out.push(Event {
                token: m.token,
                readable: true,
                writable: false,
                read_closed: m.end.is_some(),
                write_closed: false,
            });
        }
        if matches!(m.state, MultiState::Idle) && m.end.is_none() && m.chunks.is_empty() {
            // Ended with nothing to read (out of buffers, or the kernel
            // stopped it): receive again at once, with a buffer of our own
            // if the ring is empty.
            if let Err(e) = self.arm_multi(key, starved) {
                if let OpKind::Multi(m) = &mut self.ops[key].kind {
                    m.end = Some(-e.raw_os_error().unwrap_or(libc::EIO));
                    out.push(Event {
                        token: m.token,
                        readable: true,
                        writable: false,
                        read_closed: true,
                        write_closed: false,
                    });
                }
            }
        }
    }

    /// Copies what multishot receive `key` brought into `buf` (across its
    /// chunks, so a short read means there is nothing more for now), giving
    /// drained buffers back to the ring, and re-arms a stopped receive once
    /// the reader caught up.
    pub(crate) fn read_multi(&mut self, key: usize, buf: &mut [u8]) -> MultiRead {
        let Some(Op {
            kind: OpKind::Multi(m),
            ..
        }) = self.ops.get_mut(key)
        else {
            return MultiRead::End(-libc::EBADF);
        };
        let mut n = 0;
        while n < buf.len() {
            let Some(chunk) = m.chunks.front() else {
                break;
            };
            let data = match chunk {
                Chunk::Ring(bid, len) => match self.bufs.as_ref() {
                    Some(b) => b.data(*bid, *len),
                    None => &[],
                },
                Chunk::Owned(v) | Chunk::Dgram(v, _) => &v[..],
                Chunk::Failed(_) => &[],
            };
            let k = (buf.len() - n).min(data.len() - m.pos);
            buf[n..n + k].copy_from_slice(&data[m.pos..m.pos + k]);
            n += k;
            m.pos += k;
            if m.pos == data.len() {
                m.pos = 0;
                match m.chunks.pop_front() {
                    Some(Chunk::Ring(bid, _)) => {
                        if let Some(b) = self.bufs.as_mut() {
                            b.provide(bid);
                        }
                    }
                    Some(Chunk::Owned(v)) if self.pool.len() < 64 => self.pool.push(v),
                    _ => {}
                }
            }
        }
        let idle = matches!(m.state, MultiState::Idle) && m.end.is_none();
        let end = m.end;
        let empty = m.chunks.is_empty();
        if idle && m.chunks.len() < MULTI_CAP / 2 {
            // Stopped for a slow reader that has caught up: arm again
            // (an error shows up as the end).
            if let Err(e) = self.arm_multi(key, false) {
                if let Some(Op {
                    kind: OpKind::Multi(m),
                    ..
                }) = self.ops.get_mut(key)
                {
                    m.end = Some(-e.raw_os_error().unwrap_or(libc::EIO));
                }
            }
        }
        match (n, end) {
            (0, Some(end)) if empty => MultiRead::End(end),
            (0, _) => MultiRead::Pending,
            (n, _) => MultiRead::Data(n),
        }
    }

    /// The next datagram multishot receive `key` brought: copied into
    /// `buf` (the rest of a longer one is dropped, as `recv_from` does)
    /// with its sender, or a receive's error; re-arms a stopped receive
    /// once the reader caught up.
    pub(crate) fn read_dgram(&mut self, key: usize, buf: &mut [u8]) -> DgramRead {
        let Some(Op {
            kind: OpKind::Multi(m),
            ..
        }) = self.ops.get_mut(key)
        else {
            return DgramRead::Failed(-libc::EBADF);
        };
        let got = match m.chunks.pop_front() {
            None => DgramRead::Pending,
            Some(Chunk::Failed(e)) => DgramRead::Failed(e),
            Some(Chunk::Dgram(v, from)) => {
                let n = buf.len().min(v.len());
                buf[..n].copy_from_slice(&v[..n]);
                if self.pool.len() < 64 {
                    self.pool.push(v);
                }
                DgramRead::Data(n, from)
            }
            Some(Chunk::Owned(_)) => DgramRead::Failed(-libc::EINVAL),
            Some(Chunk::Ring(bid, len)) => {
                let got = match self.dbufs.as_ref() {
                    Some(ring) => {
                        let hdr = dgram_template();
                        match types::RecvMsgOut::parse(ring.data(bid, len), &hdr) {
                            Ok(msg) => {
                                let data = msg.payload_data();
                                let n = buf.len().min(data.len());
                                buf[..n].copy_from_slice(&data[..n]);
                                DgramRead::Data(n, sockaddr_bytes(msg.name_data()))
                            }
                            Err(()) => DgramRead::Failed(-libc::EINVAL),
                        }
                    }
                    None => DgramRead::Failed(-libc::EINVAL),
                };
                if let Some(ring) = self.dbufs.as_mut() {
                    ring.provide(bid);
                }
                got
            }
        };
        if let Some(Op {
            kind: OpKind::Multi(m),
            ..
        }) = self.ops.get(key)
        {
            if matches!(m.state, MultiState::Idle) && m.chunks.len() < MULTI_CAP / 2 {
                // Stopped for a slow reader (or after an error): arm
                // again; a failure to is this receive's error.
                if let Err(e) = self.arm_multi(key, false) {
                    if let Some(Op {
                        kind: OpKind::Multi(m),
                        ..
                    }) = self.ops.get_mut(key)
                    {
                        m.chunks
                            .push_back(Chunk::Failed(-e.raw_os_error().unwrap_or(libc::EIO)));
                    }
                }
            }
        }
        got
    }

    /// Frees multishot entry `key` (nothing in flight), giving its unread
    /// ring buffers back.
    fn free_multi(&mut self, key: usize) {
        if let OpKind::Multi(m) = self.ops.remove(key).kind {
            let dgram = m.dgram.is_some();
            for chunk in m.chunks {
                match chunk {
                    Chunk::Ring(bid, _) => {
                        if let Some(b) = self.ring_for(dgram) {
                            b.provide(bid);
                        }
                    }
                    Chunk::Owned(v) | Chunk::Dgram(v, _) => self.recycle(v),
                    Chunk::Failed(_) => {}
                }
            }
        }
    }

    /// The reader of multishot receive `key` let go: stop it, free it once
    /// its last completion is in.
    fn release_multi(&mut self, key: usize) {
        let Some(Op {
            kind: OpKind::Multi(m),
            ..
        }) = self.ops.get_mut(key)
        else {
            return;
        };
        m.released = true;
        match m.state {
            MultiState::Idle => self.free_multi(key),
            MultiState::Armed | MultiState::Plain(_) => {
                if let OpKind::Multi(m) = &mut self.ops[key].kind {
                    if matches!(m.state, MultiState::Armed) {
                        m.state = MultiState::Stopping;
                    }
                }
                self.cancel(key);
            }
            MultiState::Stopping => {}
        }
    }

    /// Starts an `ACCEPT` on listening socket `fd`; the new connection
    /// (non-blocking, close-on-exec) is reported as a readable event with
    /// `token`; collect it with [`take_accept`](Driver::take_accept).
    pub(crate) fn submit_accept(&mut self, fd: RawFd, token: usize) -> io::Result<usize> {
        if self.closed {
            return Err(closed());
        }
        // SAFETY: all-zero is a valid sockaddr_storage.
        let storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let key = self.ops.insert(Op {
            kind: OpKind::Accept {
                token,
                addr: Box::new((storage, len)),
                result: None,
            },
            cancelled: false,
        });
        let OpKind::Accept { addr, .. } = &mut self.ops[key].kind else {
            unreachable!("an accept key")
        };
        let (storage, len) = &mut **addr;
        let entry = opcode::Accept::new(
            types::Fd(fd),
            std::ptr::from_mut(storage).cast(),
            std::ptr::from_mut(len),
        )
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build()
        .user_data(key as u64);
        // SAFETY: the address buffer is boxed in the entry `key`, which is
        // freed only after this accept's completion is reaped (a cancelled
        // one included); the kernel holds its own reference to the
        // listening socket.
        if let Err(e) = unsafe { self.push(&entry) } {
            self.ops.remove(key);
            return Err(e);
        }
        Ok(key)
    }

    /// A completed accept: the connection and the peer's address (or the
    /// error); `None` while in flight. Frees the entry.
    pub(crate) fn take_accept(
        &mut self,
        key: usize,
    ) -> Option<io::Result<(std::net::TcpStream, std::net::SocketAddr)>> {
        match self.ops.get(key) {
            Some(Op {
                kind: OpKind::Accept {
                    result: Some(_), ..
                },
                cancelled: false,
            }) => {}
            _ => return None,
        }
        let OpKind::Accept { addr, result, .. } = self.ops.remove(key).kind else {
            return None;
        };
        let res = result.unwrap_or(-libc::EIO);
        if res < 0 {
            return Some(Err(io::Error::from_raw_os_error(-res)));
        }
        // SAFETY: a successful ACCEPT returns a new descriptor that only
        // this operation owns.
        let stream = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(res) });
        Some(match sockaddr(&addr.0, addr.1) {
            Some(peer) => Ok((stream, peer)),
            None => stream.peer_addr().map(|peer| (stream, peer)),
        })
    }

    /// Frees a completed operation nobody will collect (closing an
    /// accepted connection, recycling a buffer).
    fn free_completed(&mut self, key: usize) {
        match self.ops.remove(key).kind {
            OpKind::Transfer(t) => self.recycle(t.buf),
            OpKind::Accept { result, .. } => close_accepted(result.unwrap_or(-1)),
            _ => {}
        }
    }

    /// Queues `more` after the bytes of send `key` (and the shutdown, if
    /// asked), as long as that send has not completed; `false` if it has
    /// (collect it with `take` and start another).
    pub(crate) fn extend_send(&mut self, key: usize, more: &[u8], shut_after: bool) -> bool {
        match self.ops.get_mut(key) {
            Some(Op {
                kind: OpKind::Transfer(t),
                cancelled: false,
            }) if t.send && t.result.is_none() && !t.detached => {
                // `then` is never in flight: growing it is safe.
                t.then.extend_from_slice(more);
                t.shut_after |= shut_after;
                true
            }
            _ => false,
        }
    }

    /// The owner of transfer `key` no longer wants it (a dropped read, a
    /// closed stream): a receive is cancelled, its buffer kept until the
    /// cancel's completion; a send goes on in the background until its
    /// bytes are out (as a closed socket's kernel buffer would), without
    /// the shutdown. A completed transfer is simply freed.
    pub(crate) fn release(&mut self, key: usize) {
        if let Some(Op {
            kind: OpKind::Multi(_),
            ..
        }) = self.ops.get(key)
        {
            self.release_multi(key);
            return;
        }
        if let Some(Op {
            kind: OpKind::Accept { result, .. },
            ..
        }) = self.ops.get(key)
        {
            if result.is_some() {
                self.free_completed(key);
            } else {
                self.cancel(key);
            }
            return;
        }
        let Some(Op {
            kind: OpKind::Transfer(t),
            ..
        }) = self.ops.get_mut(key)
        else {
            return;
        };
        if t.result.is_some() {
            if let OpKind::Transfer(t) = self.ops.remove(key).kind {
                self.recycle(t.buf);
            }
        } else if t.send && t.msg.is_some() {
            // A datagram is never continued: the kernel's own reference to
            // the file (taken at submission) carries it to the end.
            t.detached = true;
        } else if t.send {
            // The owner is about to close its fd, and a short send is
            // continued with a new submission: keep a duplicate for it.
            // SAFETY: fcntl takes no pointers; the result is checked.
            let dup = unsafe { libc::fcntl(t.fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                self.cancel(key);
                return;
            }
            // SAFETY: `dup` is a fresh descriptor nothing else owns.
            t.own_fd = Some(unsafe { OwnedFd::from_raw_fd(dup) });
            t.fd = dup;
            t.detached = true;
            t.shut_after = false;
        } else {
            self.cancel(key);
        }
    }

    /// Like [`release`](Driver::release), but a send is cancelled too
    /// (`abort`: the queued bytes are dropped).
    pub(crate) fn cancel_transfer(&mut self, key: usize) {
        if let Some(Op {
            kind: OpKind::Multi(_),
            ..
        }) = self.ops.get(key)
        {
            self.release_multi(key);
            return;
        }
        let done = matches!(
            self.ops.get(key),
            Some(Op { kind: OpKind::Transfer(t), .. }) if t.result.is_some()
        );
        if done {
            if let OpKind::Transfer(t) = self.ops.remove(key).kind {
                self.recycle(t.buf);
            }
        } else {
            self.cancel(key);
        }
    }

    fn arm_source(&mut self, fd: RawFd, token: usize) -> io::Result<()> {
        let key = self.ops.insert(Op {
            kind: OpKind::SourcePoll { token, fd },
            cancelled: false,
        });
        let entry = opcode::PollAdd::new(types::Fd(fd), SOURCE_MASK)
            .multi(true)
            .build()
            .user_data(key as u64);
        // SAFETY: a poll points to no memory; the kernel holds its own
        // reference to the file for as long as the poll is armed.
        if let Err(e) = unsafe { self.push(&entry) } {
            self.ops.remove(key);
            return Err(e);
        }
        self.sources.insert(fd, key);
        Ok(())
    }

    /// Joins an I/O object (both directions, reported on every change).
    pub(crate) fn register_source(&mut self, fd: RawFd, token: usize) -> io::Result<()> {
        if self.closed {
            return Err(closed());
        }
        check_pollable(fd)?;
        // One registration per fd, as epoll has it.
        if self.sources.contains_key(&fd) || self.fds.contains_key(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.arm_source(fd, token)
    }

    /// Leaves the driver. The poll's cancel is submitted at once: the poll
    /// holds a reference to the socket, which would otherwise stay open
    /// after the caller closes its fd until the next loop iteration.
    pub(crate) fn deregister_source(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(key) = self.sources.remove(&fd) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        if key != QUIET {
            self.cancel(key);
        }
        self.flush()
    }

    /// The object's transfers now all complete through this driver (a
    /// stream in completion mode): its readiness poll only doubles their
    /// events, so it is cancelled. The registration stays.
    pub(crate) fn quiet_source(&mut self, fd: RawFd) {
        if let Some(key) = self.sources.get_mut(&fd) {
            let old = std::mem::replace(key, QUIET);
            if old != QUIET {
                self.cancel(old);
            }
        }
    }

    /// Sends the queued submissions without waiting.
    fn flush(&mut self) -> io::Result<()> {
        loop {
            match self.enter_nowait() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    self.take_cqes();
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn register(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        if self.closed {
            return Err(closed());
        }
        check_pollable(fd)?;
        if self.fds.contains_key(&fd) || self.sources.contains_key(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.fds.insert(
            fd,
            FdWatch {
                token,
                interest: i,
                armed: None,
            },
        );
        self.arm_fd(fd)
    }

    pub(crate) fn reregister(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        let Some(w) = self.fds.get_mut(&fd) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        w.token = token;
        w.interest = i;
        self.arm_fd(fd)
    }

    pub(crate) fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(w) = self.fds.remove(&fd) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        if let Some((key, _)) = w.armed {
            self.cancel(key);
        }
        Ok(())
    }

    /// Makes the poll in flight for `fd` match its interest: a one-shot
    /// poll completes at once when the fd is ready (level-triggered).
    fn arm_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let w = &self.fds[&fd];
        let mut mask = 0u32;
        if w.interest.read {
            mask |= (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) as u32;
        }
        if w.interest.write {
            mask |= libc::POLLOUT as u32;
        }
        match w.armed {
            Some((_, m)) if m == mask => return Ok(()),
            Some((key, _)) => {
                self.fds.get_mut(&fd).expect("present").armed = None;
                self.cancel(key);
            }
            None => {}
        }
        if mask == 0 {
            return Ok(());
        }
        let key = self.ops.insert(Op {
            kind: OpKind::FdPoll { fd },
            cancelled: false,
        });
        let entry = opcode::PollAdd::new(types::Fd(fd), mask)
            .build()
            .user_data(key as u64);
        // SAFETY: a poll points to no memory; the kernel holds its own
        // reference to the file while the poll is armed.
        if let Err(e) = unsafe { self.push(&entry) } {
            self.ops.remove(key);
            return Err(e);
        }
        self.fds.get_mut(&fd).expect("present").armed = Some((key, mask));
        Ok(())
    }

    /// Cancels every operation in flight and reaps them all (buffers are
    /// freed, the kernel lets go of every file); later registrations fail.
    pub(crate) fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.fds.clear();
        self.sources.clear();
        let keys: Vec<usize> = self.ops.iter().map(|(k, _)| k).collect();
        for key in keys {
            let done = matches!(
                &self.ops[key].kind,
                OpKind::Transfer(Transfer {
                    result: Some(_),
                    ..
                }) | OpKind::Accept {
                    result: Some(_),
                    ..
                }
            );
            if matches!(self.ops[key].kind, OpKind::Multi(_)) {
                self.release_multi(key);
            } else if done {
                // Completed, never collected: the kernel is done with it.
                self.free_completed(key);
            } else {
                self.cancel(key);
            }
        }
        // Cancels complete promptly; the deadline only guards against a
        // kernel that never answers (the entries would then leak rather
        // than be freed under the kernel's feet).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ignored = Vec::new();
        while !self.ops.is_empty() && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(50));
            let args = types::SubmitArgs::new().timespec(&ts);
            let n = clamp_len(self.ring.submission().len());
            let flags = (EnterFlags::GETEVENTS | EnterFlags::EXT_ARG).bits();
            let _ = self.enter(n, 1, flags, Some(&args));
            self.reap(&mut ignored);
            ignored.clear();
        }
        if !self.ops.is_empty() {
            log::error!(
                target: "aioloop",
                "io_uring: {} operations did not complete after their cancel; their buffers are leaked rather than freed",
                self.ops.len()
            );
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(self.bufs.take());
            std::mem::forget(self.dbufs.take());
        } else {
            // Nothing can pick a buffer any more: let the kernel go of the
            // rings, then free them (leaked if the kernel refuses).
            for bufs in [self.bufs.take(), self.dbufs.take()].into_iter().flatten() {
                match self.ring.submitter().unregister_buf_ring(bufs.group) {
                    Ok(()) => drop(bufs),
                    Err(_) => std::mem::forget(bufs),
                }
            }
        }
        // Give the thread's slot back (it would otherwise keep the ring
        // alive until the thread exits); later enters use the fd.
        if let Some(index) = self.ring_index.take() {
            if !unregister_ring_fd(&self.ring, index) {
                log::warn!(
                    target: "aioloop",
                    "io_uring: could not unregister the ring's fd (slot {index})"
                );
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.close();
    }
}

/// The IP address the kernel wrote into `addr` (`len` bytes of it).
fn sockaddr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    match i32::from(addr.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for one.
            let a = unsafe { &*std::ptr::from_ref(addr).cast::<libc::sockaddr_in>() };
            Some(
                SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )
                .into(),
            )
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(addr).cast::<libc::sockaddr_in6>() };
            Some(
                SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

/// The size of a `sockaddr_storage`, as the kernel takes it.
const STORAGE_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// A plain datagram receive's buffer: the largest UDP payload fits.
const DATAGRAM_CAP: usize = 65_536;

/// The message header of a multishot `RECVMSG`: room for the sender, no
/// control data (each ring buffer starts with what this sizes).
fn dgram_template() -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_namelen = STORAGE_LEN;
    hdr
}

/// The IP address in `name` (a sockaddr the kernel wrote, maybe short).
fn sockaddr_bytes(name: &[u8]) -> Option<std::net::SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = name
        .len()
        .min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `n` bytes fit in `storage`, which the copy does not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::addr_of_mut!(storage).cast::<u8>(),
            n,
        );
    }
    sockaddr(&storage, n as libc::socklen_t)
}

/// Writes `addr` into `out` as the kernel wants it; returns its length.
fn write_sockaddr(addr: std::net::SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a
            // sockaddr_in, and every bit pattern is valid for one.
            let sin = unsafe { &mut *std::ptr::from_mut(out).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &mut *std::ptr::from_mut(out).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Closes the connection a late `ACCEPT` returned (`res` is its fd when
/// not negative).
fn close_accepted(res: i32) {
    if res >= 0 {
        // SAFETY: the descriptor came from a successful ACCEPT whose owner
        // let go: nothing else holds it.
        drop(unsafe { OwnedFd::from_raw_fd(res) });
    }
}

fn clamp_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn closed() -> io::Error {
    io::Error::other("the io_uring driver is closed")
}

/// Refuses what epoll refuses: a closed fd (EBADF), a regular file or a
/// directory (EPERM: always ready, so polling them is a mistake).
fn check_pollable(fd: RawFd) -> io::Result<()> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer we own; we read it only
    // when the call succeeded.
    let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it initialised the buffer.
    let st = unsafe { st.assume_init() };
    let fmt = st.st_mode & libc::S_IFMT;
    if fmt == libc::S_IFREG || fmt == libc::S_IFDIR {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

/// A poll result as a readiness event (as the selector reports them:
/// a hang-up or an error wakes both directions).
fn event(token: usize, revents: u32) -> Event {
    let has = |m: i16| revents & (m as u32) != 0;
    let err = has(libc::POLLERR);
    let hup = has(libc::POLLHUP);
    let read_closed = hup || err || has(libc::POLLRDHUP);
    let write_closed = hup || err;
    let broken = read_closed || write_closed;
    Event {
        token,
        readable: has(libc::POLLIN) || has(libc::POLLPRI) || broken,
        writable: has(libc::POLLOUT) || broken,
        read_closed,
        write_closed,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// A driver with multishot receives; `None` (the test passes without
    /// checking anything) when the run asked for the legacy paths.
    fn driver(buf_count: u16) -> Option<Driver> {
        if legacy() {
            return None;
        }
        let mut d = Driver::new(Backend::Proactor).expect("io_uring on the test machine");
        d.buf_count = buf_count;
        assert!(
            d.recv_multishot(),
            "this kernel (6.0 or later expected) has multishot receives"
        );
        Some(d)
    }

    /// A connected pair: (the writer, the non-blocking socket read here).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        c.set_nonblocking(true).unwrap();
        (c, s)
    }

    fn multi(d: &Driver, key: usize) -> &Multi {
        match &d.ops[key].kind {
            OpKind::Multi(m) => m,
            _ => panic!("not a multishot entry"),
        }
    }

    fn poll(d: &mut Driver) {
        let mut events = Vec::new();
        d.poll(Some(Duration::from_millis(5)), &mut events).unwrap();
    }

    /// Writes `data` until the socket stops taking it (nobody reads:
    /// the driver's receive must stop too), polling the driver meanwhile;
    /// returns how much was written.
    fn flood(d: &mut Driver, w: &mut TcpStream, data: &[u8]) -> usize {
        let mut sent = 0;
        let mut stuck = 0;
        while sent < data.len() && stuck < 20 {
            match w.write(&data[sent..]) {
                Ok(n) => {
                    sent += n;
                    stuck = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => stuck += 1,
                Err(e) => panic!("{e}"),
            }
            poll(d);
        }
        sent
    }

    /// Reads `n` bytes through multishot receive `key`.
    fn read_all(d: &mut Driver, key: usize, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < n {
            assert!(Instant::now() < deadline, "read {} of {n} bytes", got.len());
            match d.read_multi(key, &mut buf) {
                MultiRead::Data(k) => got.extend_from_slice(&buf[..k]),
                MultiRead::Pending => poll(d),
                MultiRead::End(e) => panic!("the stream ended ({e}) after {} bytes", got.len()),
            }
        }
        got
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A reader that does not read: the multishot receive is stopped with
    /// at most the ring's buffers taken, the rest stays in the socket (TCP
    /// flow control then holds the writer back), and reading later gets
    /// every byte in order, the receive armed again.
    #[test]
    fn a_slow_reader_holds_a_bounded_number_of_buffers() {
        let Some(mut d) = driver(BUF_COUNT) else {
            return;
        };
        let (mut w, r) = pair();
        let key = d.submit_recv_multi(r.as_raw_fd(), 1).unwrap();
        let data = payload(64 << 20);
        let sent = flood(&mut d, &mut w, &data);
        assert!(sent < data.len(), "the writer was never held back");
        let m = multi(&d, key);
        assert!(
            matches!(m.state, MultiState::Idle),
            "the receive is still armed"
        );
        assert!(m.chunks.len() <= usize::from(BUF_COUNT));
        let held: usize = m
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Ring(_, n) => *n,
                Chunk::Owned(v) | Chunk::Dgram(v, _) => v.len(),
                Chunk::Failed(_) => 0,
            })
            .sum();
        assert!(held <= usize::from(BUF_COUNT) * BUF_SIZE);
        assert!(held < sent, "the socket keeps what the driver did not take");
        let got = read_all(&mut d, key, sent);
        assert!(got == data[..sent], "bytes lost or reordered");
        // The receive runs again: more data comes in.
        w.write_all(&data[..10]).unwrap_or(());
        assert_eq!(read_all(&mut d, key, 10), data[..10]);
        d.release(key);
        d.close();
        assert!(d.ops.is_empty() && d.bufs.is_none());
    }

    /// When one connection holds every buffer of the ring, another one's
    /// receive ends with ENOBUFS and goes on with a plain receive of its
    /// own: it is not starved. Once buffers are back, multishot resumes.
    #[test]
    fn an_exhausted_ring_falls_back_to_a_plain_receive() {
        let Some(mut d) = driver(4) else {
            return;
        };
        let (mut wa, ra) = pair();
        let a = d.submit_recv_multi(ra.as_raw_fd(), 1).unwrap();
        let data = payload(4 << 20);
        let sent = flood(&mut d, &mut wa, &data);
        assert_eq!(multi(&d, a).chunks.len(), 4, "A holds the whole ring");
        let (mut wb, rb) = pair();
        let b = d.submit_recv_multi(rb.as_raw_fd(), 2).unwrap();
        wb.write_all(b"hello").unwrap();
        assert_eq!(read_all(&mut d, b, 5), b"hello");
        assert_eq!(read_all(&mut d, a, sent), data[..sent]);
        wb.write_all(b"again").unwrap();
        assert_eq!(read_all(&mut d, b, 5), b"again");
        // EOF after the data, sticky.
        drop(wb);
        let mut buf = [0u8; 8];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match d.read_multi(b, &mut buf) {
                MultiRead::End(0) => break,
                MultiRead::Pending if Instant::now() < deadline => poll(&mut d),
                _ => panic!("expected EOF"),
            }
        }
        d.release(a);
        d.release(b);
        d.close();
        assert!(d.ops.is_empty() && d.bufs.is_none());
    }

    fn udp_pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Reads one datagram through multishot receive `key`.
    fn read_one(d: &mut Driver, key: usize) -> (Vec<u8>, std::net::SocketAddr) {
        let mut buf = vec![0; 70_000];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match d.read_dgram(key, &mut buf) {
                DgramRead::Data(n, Some(from)) => return (buf[..n].to_vec(), from),
                DgramRead::Pending if Instant::now() < deadline => poll(d),
                DgramRead::Data(_, None) => panic!("no sender address"),
                DgramRead::Failed(e) => panic!("receive failed: {e}"),
                DgramRead::Pending => panic!("no datagram within 20 s"),
            }
        }
    }

    /// Datagrams through the datagram ring: whole (a 60 000-byte one is
    /// larger than a stream buffer), in order, with their sender; a reader
    /// that does not read holds at most the ring and its receive stops;
    /// with the ring exhausted, a second socket's receive falls back to a
    /// plain RECVMSG.
    #[test]
    fn datagrams_through_the_ring_are_whole_bounded_and_never_starved() {
        let Some(mut d) = driver(BUF_COUNT) else {
            return;
        };
        d.dgram_buf_count = 4;
        assert!(d.dgram_multishot());
        let (tx, rx) = udp_pair();
        let to = rx.local_addr().unwrap();
        let key = d.submit_recv_dgram_multi(rx.as_raw_fd(), 1).unwrap();
        let big = payload(60_000);
        tx.send_to(&big, to).unwrap();
        assert_eq!(read_one(&mut d, key), (big, tx.local_addr().unwrap()));
        for i in 0..20u8 {
            tx.send_to(&[i; 3], to).unwrap();
        }
        for _ in 0..20 {
            poll(&mut d);
        }
        let m = multi(&d, key);
        assert_eq!(m.chunks.len(), 4, "the reader holds the whole ring");
        assert!(!matches!(m.state, MultiState::Armed), "still armed");
        // The ring is empty now: another socket still gets its datagram.
        let (tx2, rx2) = udp_pair();
        let key2 = d.submit_recv_dgram_multi(rx2.as_raw_fd(), 2).unwrap();
        tx2.send_to(b"other", rx2.local_addr().unwrap()).unwrap();
        assert_eq!(read_one(&mut d, key2).0, b"other");
        for i in 0..20u8 {
            assert_eq!(read_one(&mut d, key).0, [i; 3], "datagram {i}");
        }
        d.release(key);
        d.release(key2);
        d.close();
        assert!(d.ops.is_empty() && d.dbufs.is_none());
    }

    /// Releasing a receive that holds buffers gives them back to the ring
    /// at once; one in flight is freed once its cancel completes; closing
    /// the driver unregisters and frees the ring.
    #[test]
    fn released_receives_give_their_buffers_back() {
        let Some(mut d) = driver(4) else {
            return;
        };
        let (mut wa, ra) = pair();
        let a = d.submit_recv_multi(ra.as_raw_fd(), 1).unwrap();
        flood(&mut d, &mut wa, &payload(1 << 20));
        assert_eq!(multi(&d, a).chunks.len(), 4);
        let tail = d.bufs.as_ref().unwrap().tail;
        d.release(a);
        assert_eq!(d.bufs.as_ref().unwrap().tail, tail.wrapping_add(4));
        assert!(d.ops.get(a).is_none(), "an idle receive is freed at once");
        let (_wb, rb) = pair();
        let b = d.submit_recv_multi(rb.as_raw_fd(), 2).unwrap();
        poll(&mut d);
        d.release(b);
        for _ in 0..100 {
            if d.ops.get(b).is_none() {
                break;
            }
            poll(&mut d);
        }
        assert!(d.ops.get(b).is_none(), "the armed receive was reaped");
        let mut buf = [0u8; 4];
        assert!(matches!(d.read_multi(b, &mut buf), MultiRead::End(_)));
        d.close();
        assert!(d.bufs.is_none());
    }

    /// A thread has 16 registered-ring slots: the drivers past them enter
    /// their ring by its fd and work the same; closing a driver gives its
    /// slot back.
    #[test]
    fn drivers_past_the_registered_ring_slots_enter_by_fd() {
        if legacy() {
            return;
        }
        // A thread of its own: its slots are all free.
        std::thread::spawn(|| {
            let mut drivers: Vec<Driver> = (0..20)
                .map(|_| Driver::new(Backend::Proactor).expect("io_uring on the test machine"))
                .collect();
            let registered = drivers.iter().filter(|d| d.ring_index.is_some()).count();
            assert_eq!(
                registered, 16,
                "a thread has 16 slots (Linux 5.18 or later)"
            );
            for (i, d) in drivers.iter_mut().enumerate() {
                let (mut w, r) = pair();
                let buf = d.buffer(64);
                let key = d.submit_recv(r.as_raw_fd(), i, buf, false).unwrap();
                w.write_all(b"ping").unwrap();
                let mut events = Vec::new();
                for _ in 0..100 {
                    d.poll(Some(Duration::from_millis(20)), &mut events)
                        .unwrap();
                    if !events.is_empty() {
                        break;
                    }
                }
                assert_eq!(events.len(), 1, "driver {i}: the receive completed");
                let (n, buf) = d.take(key).unwrap();
                assert_eq!((n, &buf[..]), (4, &b"ping"[..]), "driver {i}");
                // A timed wait with nothing to come times out cleanly.
                events.clear();
                d.poll(Some(Duration::from_millis(1)), &mut events).unwrap();
                assert!(events.is_empty());
            }
            drivers.truncate(4);
            let again = Driver::new(Backend::Proactor).unwrap();
            assert!(
                again.ring_index.is_some(),
                "closed drivers gave their slots back"
            );
        })
        .join()
        .unwrap();
    }

    /// A registration the thread lost (here: taken back behind the
    /// driver's back) makes the enter fail with EBADF: the driver goes on
    /// by fd and loses nothing.
    #[test]
    fn a_lost_ring_registration_falls_back_to_the_fd() {
        if legacy() {
            return;
        }
        std::thread::spawn(|| {
            let mut d = Driver::new(Backend::Proactor).unwrap();
            let index = d.ring_index.expect("a fresh thread has a free slot");
            assert!(unregister_ring_fd(&d.ring, index));
            let (mut w, r) = pair();
            let buf = d.buffer(64);
            let key = d.submit_recv(r.as_raw_fd(), 7, buf, false).unwrap();
            w.write_all(b"pong").unwrap();
            let mut events = Vec::new();
            for _ in 0..100 {
                d.poll(Some(Duration::from_millis(20)), &mut events)
                    .unwrap();
                if !events.is_empty() {
                    break;
                }
            }
            assert!(
                d.ring_index.is_none(),
                "the driver noticed and enters by fd"
            );
            assert_eq!(events.len(), 1);
            let (n, buf) = d.take(key).unwrap();
            assert_eq!((n, &buf[..]), (4, &b"pong"[..]));
            d.close();
            assert!(d.ops.is_empty());
        })
        .join()
        .unwrap();
    }
}
