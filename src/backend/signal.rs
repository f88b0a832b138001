//! Signal delivery (Unix) for `crate::signal`, through `signal-hook`.
//!
//! A loop that watches signals owns one self-pipe ([`SelfPipe`]); its read
//! end is registered with the loop's driver like any other I/O object. For
//! each (loop, signal) pair a [`Watch`] registers two `signal-hook` actions,
//! run in this order inside the process's signal handler: set the loop's
//! pending flag for that signal, then write one byte to the loop's pipe. The
//! loop drains the pipe and runs the handlers whose flag it swapped back.
//!
//! Every loop watching a signal gets it: the handler runs all actions.
//!
//! When the last watch of a signal in the process ends, the signal's
//! *default* action is restored (emulated by a `signal-hook` action that
//! runs only while nobody watches): a second SIGINT after removal
//! terminates the process again, as with `SIG_DFL`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use signal_hook::consts::FORBIDDEN;
use signal_hook::SigId;

pub(crate) use mio::unix::pipe::Receiver as PipeReceiver;

/// One loop's self-pipe: the read end is the loop's I/O source.
pub(crate) struct SelfPipe {
    pub(crate) rx: PipeReceiver,
    tx: mio::unix::pipe::Sender,
}

impl SelfPipe {
    pub(crate) fn new() -> io::Result<SelfPipe> {
        let (tx, rx) = mio::unix::pipe::new()?;
        Ok(SelfPipe { rx, tx })
    }

    /// Reads everything written so far (the pipe is non-blocking).
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match self.rx.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why a signal number cannot be watched, or `None` if it can be.
pub(crate) fn refuse(signum: i32) -> Option<String> {
    if FORBIDDEN.contains(&signum) {
        let name = signal_name(signum);
        return Some(format!(
            "signal {signum} ({name}) cannot be handled: SIGKILL and SIGSTOP cannot be caught, \
             and SIGSEGV, SIGILL and SIGFPE report faults of the thread that raised them"
        ));
    }
    if !(1..=64).contains(&signum) {
        return Some(format!("{signum} is not a valid signal number"));
    }
    None
}

/// The conventional name of `signum` (`"SIGINT"`), or `"signal N"`.
pub(crate) fn signal_name(signum: i32) -> String {
    signal_hook::low_level::signal_name(signum)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("signal {signum}"))
}

/// Process-wide: how many watches each signal has, and the flag that turns
/// on the default-action emulation when there are none.
struct Slot {
    watchers: usize,
    /// `None` for signals `signal-hook` cannot emulate (real-time ones).
    default_on: Option<Arc<AtomicBool>>,
}

fn slots() -> &'static Mutex<HashMap<i32, Slot>> {
    static SLOTS: std::sync::OnceLock<Mutex<HashMap<i32, Slot>>> = std::sync::OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

/// One loop watching one signal; dropping it stops the watch.
pub(crate) struct Watch {
    signum: i32,
    ids: [SigId; 2],
}

impl Watch {
    /// Starts delivering `signum` to `pipe`, setting `pending` first.
    pub(crate) fn new(
        signum: i32,
        pending: &Arc<AtomicBool>,
        pipe: &SelfPipe,
    ) -> io::Result<Watch> {
        if let Some(why) = refuse(signum) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let mut slots = slots().lock().unwrap_or_else(|p| p.into_inner());
        let slot = match slots.entry(signum) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let default_on = match signal_hook::low_level::signal_name(signum) {
                    Some(_) => {
                        let flag = Arc::new(AtomicBool::new(false));
                        // Registered once per process and kept: it acts
                        // only while the flag says nobody watches.
                        signal_hook::flag::register_conditional_default(signum, flag.clone())?;
                        Some(flag)
                    }
                    None => None,
                };
                v.insert(Slot {
                    watchers: 0,
                    default_on,
                })
            }
        };
        if let Some(f) = &slot.default_on {
            f.store(false, Ordering::SeqCst);
        }
        let result = (|| {
            let flag_id = signal_hook::flag::register(signum, pending.clone())?;
            let fd = match pipe.tx.as_fd().try_clone_to_owned() {
                Ok(fd) => fd,
                Err(e) => {
                    signal_hook::low_level::unregister(flag_id);
                    return Err(e);
                }
            };
            match signal_hook::low_level::pipe::register(signum, fd) {
                Ok(pipe_id) => Ok([flag_id, pipe_id]),
                Err(e) => {
                    signal_hook::low_level::unregister(flag_id);
                    Err(e)
                }
            }
        })();
        match result {
            Ok(ids) => {
                slot.watchers += 1;
                Ok(Watch { signum, ids })
            }
            Err(e) => {
                if slot.watchers == 0 {
                    if let Some(f) = &slot.default_on {
                        f.store(true, Ordering::SeqCst);
                    }
                }
                Err(e)
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for id in self.ids {
            signal_hook::low_level::unregister(id);
        }
        let mut slots = slots().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&self.signum) {
            slot.watchers = slot.watchers.saturating_sub(1);
            if slot.watchers == 0 {
                if let Some(f) = &slot.default_on {
                    f.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Sends `signum` to this process.
pub(crate) fn raise(signum: i32) -> io::Result<()> {
    signal_hook::low_level::raise(signum)
}
