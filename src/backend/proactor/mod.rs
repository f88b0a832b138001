//! The proactor backend: completion-based I/O.
//!
//! On Linux it is io_uring ([`uring`]); the kernel is probed once per process
//! ([`probe`]) and a refusal (no io_uring, forbidden by seccomp or
//! `kernel.io_uring_disabled`, an opcode missing) makes `Backend::Auto` fall
//! back to the selector, while an explicit `Backend::Proactor` gets an error
//! naming the cause.
//!
//! Miri cannot run io_uring code (the kernel writes into memory behind its
//! back, and Miri has no `io_uring_setup`; this machine has no nightly
//! toolchain either): the buffer-ownership rule is checked instead by the
//! stress tests in `tests/backend.rs` (thousands of reads dropped in flight,
//! a peer reset during a send, a loop closed with operations in flight).

pub(crate) mod uring;

use std::fmt;
use std::io;
use std::sync::OnceLock;

/// The environment variable that makes the io_uring probe fail on purpose
/// (a test hook): `enosys`, `eperm`, `disabled` or `noop-missing`.
pub(crate) const SIMULATE_ENV: &str = "AIOLOOP_URING_SIMULATE";

/// Why io_uring cannot be used.
#[derive(Clone, Debug)]
pub(crate) enum Refusal {
    /// `io_uring_setup` does not exist (ENOSYS): a kernel older than 5.1 or
    /// built without io_uring.
    NoSyscall,
    /// `io_uring_setup` was refused (EPERM): seccomp (containers) or
    /// `kernel.io_uring_disabled = 1` for a process outside the allowed group.
    Forbidden,
    /// `kernel.io_uring_disabled = 2`.
    Disabled,
    /// The kernel lacks an opcode or feature the backend needs.
    Missing(&'static str),
    /// Anything else `io_uring_setup` reported.
    Other(String),
    /// The [`SIMULATE_ENV`] hook names no outcome.
    BadSimulation(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSyscall => f.write_str(
                "io_uring_setup failed with ENOSYS: this kernel has no io_uring (older than 5.1 or built without it)",
            ),
            Refusal::Forbidden => f.write_str(
                "io_uring_setup failed with EPERM: io_uring is forbidden here (a seccomp profile, or kernel.io_uring_disabled=1)",
            ),
            Refusal::Disabled => {
                f.write_str("io_uring is disabled on this system (kernel.io_uring_disabled=2)")
            }
            Refusal::Missing(what) => write!(f, "this kernel's io_uring lacks {what}"),
            Refusal::Other(e) => write!(f, "io_uring_setup failed: {e}"),
            Refusal::BadSimulation(v) => write!(
                f,
                "{SIMULATE_ENV}={v:?} names no outcome: use enosys, eperm, disabled or noop-missing, or unset it"
            ),
        }
    }
}

/// Whether io_uring can run the proactor here: probed once per process.
pub(crate) fn probe() -> Result<(), Refusal> {
    static PROBE: OnceLock<Result<(), Refusal>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if let Ok(v) = std::env::var(SIMULATE_ENV) {
                return Err(match v.trim().to_ascii_lowercase().as_str() {
                    "enosys" => Refusal::NoSyscall,
                    "eperm" => Refusal::Forbidden,
                    "disabled" => Refusal::Disabled,
                    "noop-missing" => Refusal::Missing("the NOP opcode (simulated)"),
                    "" => return probe_kernel(),
                    _ => Refusal::BadSimulation(v),
                });
            }
            probe_kernel()
        })
        .clone()
}

fn probe_kernel() -> Result<(), Refusal> {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() == "2" {
            return Err(Refusal::Disabled);
        }
    }
    uring::check_kernel().map_err(|e| match e {
        uring::ProbeError::Setup(e) => match e.raw_os_error() {
            Some(libc::ENOSYS) => Refusal::NoSyscall,
            Some(libc::EPERM) => Refusal::Forbidden,
            _ => Refusal::Other(e.to_string()),
        },
        uring::ProbeError::Missing(what) => Refusal::Missing(what),
    })
}

/// The error a refused proactor turns into when the ring is set up (the
/// probe passed, but this ring could not start: out of memory, fds…).
pub(crate) fn setup_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("io_uring setup failed: {e}"))
}
