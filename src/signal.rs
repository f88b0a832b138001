//! Unix signals on the loop: asyncio's `add_signal_handler` /
//! `remove_signal_handler`, and small futures ([`recv`], [`ctrl_c`]) that
//! wait for one delivery.
//!
//! A signal arrives in whatever thread the OS picks; the process-wide signal
//! handler only sets a flag and writes a byte to the watching loop's
//! self-pipe, which the loop's backend reports like any other readiness.
//! The callback then runs **on the loop's thread, as an ordinary callback**
//! (queued with [`call_soon`](EventLoop::call_soon)), so it may touch the loop
//! and anything else a callback may.
//!
//! A signal is delivered to **every** loop watching it (loops on several
//! threads each get it once per delivery). Deliveries that arrive before the
//! loop got round to the first are merged into one call, as the OS merges
//! pending signals.
//!
//! When the last loop of the process stops watching a signal (its handler is
//! removed, or its loop is closed), the signal's default action comes back:
//! a SIGINT then ends the process again. Real-time signals (`SIGRTMIN..`)
//! are the exception: after removal they are ignored.
//!
//! Close loops that watch signals: the watch keeps the loop alive until
//! [`EventLoop::close`] ends it.
//!
//! # Examples
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use aioloop::signal::consts::SIGUSR1;
//!
//! let lp = aioloop::EventLoop::new().unwrap();
//! let hits = Rc::new(Cell::new(0));
//! let (h, l2) = (hits.clone(), lp.clone());
//! lp.add_signal_handler(SIGUSR1, move || {
//!     h.set(h.get() + 1);
//!     l2.stop();
//! })
//! .unwrap();
//! aioloop::signal::raise(SIGUSR1).unwrap();
//! lp.run_forever().unwrap();
//! assert_eq!(hits.get(), 1);
//! assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
//! lp.close().unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::backend::signal as sys;
use crate::event_loop::handle::Callback;
use crate::event_loop::source::Registration;
use crate::{Error, ErrorKind, EventLoop};

/// Signal numbers of this platform (`SIGINT`, `SIGTERM`, `SIGUSR1`, …),
/// re-exported from `signal-hook`.
///
/// # Examples
///
/// ```
/// use aioloop::signal::consts::{SIGINT, SIGTERM};
/// assert_ne!(SIGINT, SIGTERM);
/// ```
pub use signal_hook::consts::signal as consts;

type Cb = Rc<RefCell<Box<dyn FnMut()>>>;

/// Internal subscribers: `fallback` ones run only while the signal has no
/// other listener on the loop (the runner's SIGINT → cancel).
struct Sub {
    id: u64,
    cb: Cb,
    fallback: bool,
}

struct Entry {
    pending: Arc<AtomicBool>,
    _watch: sys::Watch,
    user: Option<Cb>,
    subs: Vec<Sub>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.user.is_none() && self.subs.is_empty()
    }

    /// The callbacks one delivery runs, in order.
    fn targets(&self) -> Vec<Cb> {
        let primary = self.user.is_some() || self.subs.iter().any(|s| !s.fallback);
        self.user
            .iter()
            .cloned()
            .chain(
                self.subs
                    .iter()
                    .filter(|s| !(primary && s.fallback))
                    .map(|s| s.cb.clone()),
            )
            .collect()
    }
}

/// One loop's signal state: its self-pipe and what it watches.
struct LoopSignals {
    reg: Registration,
    pipe: RefCell<sys::SelfPipe>,
    entries: RefCell<HashMap<i32, Entry>>,
    next_id: Cell<u64>,
}

thread_local! {
    /// The loops of this thread that watch (or watched) signals.
    static LOOPS: RefCell<Vec<Rc<LoopSignals>>> = const { RefCell::new(Vec::new()) };
}

fn find(lp: &EventLoop) -> Option<Rc<LoopSignals>> {
    LOOPS
        .try_with(|l| {
            l.try_borrow()
                .ok()?
                .iter()
                .find(|s| s.reg.event_loop() == lp)
                .cloned()
        })
        .ok()
        .flatten()
}

/// Queued on every readiness event of a loop's self-pipe.
struct Dispatcher {
    target: RefCell<Weak<LoopSignals>>,
    cancelled: Cell<bool>,
    location: &'static Location<'static>,
}

impl Callback for Dispatcher {
    fn run(&self) {
        if self.cancelled.get() {
            return;
        }
        let Some(ls) = self.target.borrow().upgrade() else {
            return;
        };
        // Drain first, then read the flags: a signal that lands after the
        // drain writes a new byte, which brings us back.
        if let Err(e) = ls.pipe.borrow_mut().drain() {
            log::warn!("aioloop: reading the signal self-pipe failed: {e}");
        }
        let due: Vec<Cb> = ls
            .entries
            .borrow()
            .values()
            .filter(|e| e.pending.swap(false, Ordering::SeqCst))
            .flat_map(Entry::targets)
            .collect();
        let lp = ls.reg.event_loop().clone();
        for cb in due {
            let _ = lp.call_soon(move || {
                if let Ok(mut f) = cb.try_borrow_mut() {
                    f();
                }
            });
        }
    }

    fn cancel(&self) -> bool {
        if self.cancelled.replace(true) {
            return false;
        }
        // The loop is closing (or the pipe left it): stop watching.
        let me = self.target.borrow().upgrade();
        if let Some(me) = me {
            let removed = LOOPS
                .try_with(|l| {
                    l.try_borrow_mut().ok().and_then(|mut l| {
                        l.iter()
                            .position(|s| Rc::ptr_eq(s, &me))
                            .map(|i| l.swap_remove(i))
                    })
                })
                .ok()
                .flatten();
            let entries = std::mem::take(&mut *me.entries.borrow_mut());
            drop(entries);
            drop(removed);
        }
        true
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// This loop's signal state, made on first use.
#[track_caller]
fn loop_signals(lp: &EventLoop) -> Result<Rc<LoopSignals>, Error> {
    if lp.is_closed() {
        return Err(Error::closed());
    }
    if let Some(ls) = find(lp) {
        return Ok(ls);
    }
    let mut pipe = sys::SelfPipe::new()
        .map_err(|e| Error::io("creating the self-pipe that delivers signals", e))?;
    let dispatcher = Rc::new(Dispatcher {
        target: RefCell::new(Weak::new()),
        cancelled: Cell::new(false),
        location: Location::caller(),
    });
    let reg = Registration::with_handler(lp, &mut pipe.rx, dispatcher.clone())?;
    let ls = Rc::new(LoopSignals {
        reg,
        pipe: RefCell::new(pipe),
        entries: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
    });
    *dispatcher.target.borrow_mut() = Rc::downgrade(&ls);
    LOOPS
        .try_with(|l| l.borrow_mut().push(ls.clone()))
        .map_err(|_| Error::new(ErrorKind::Closed, "the thread is exiting"))?;
    Ok(ls)
}

fn check(signum: i32) -> Result<(), Error> {
    match sys::refuse(signum) {
        Some(why) => Err(Error::new(ErrorKind::InvalidInput, why)),
        None => Ok(()),
    }
}

fn watch_error(signum: i32, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::InvalidInput {
        Error::new(
            ErrorKind::InvalidInput,
            format!("signal {signum} cannot be handled on this platform: {e}"),
        )
    } else {
        Error::io(
            format_args!("installing a handler for {}", sys::signal_name(signum)),
            e,
        )
    }
}

impl LoopSignals {
    /// Runs `f` on the entry of `signum`, creating (and watching) it first.
    fn with_entry<R>(&self, signum: i32, f: impl FnOnce(&mut Entry) -> R) -> Result<R, Error> {
        let mut entries = self.entries.borrow_mut();
        let entry = match entries.entry(signum) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let pending = Arc::new(AtomicBool::new(false));
                let watch = sys::Watch::new(signum, &pending, &self.pipe.borrow())
                    .map_err(|e| watch_error(signum, e))?;
                v.insert(Entry {
                    pending,
                    _watch: watch,
                    user: None,
                    subs: Vec::new(),
                })
            }
        };
        Ok(f(entry))
    }

    /// Drops the entry of `signum` if nothing listens any more (stops the
    /// watch). Returns what was removed so the caller drops it outside the
    /// borrow.
    fn prune(&self, signum: i32) -> Option<Entry> {
        let mut entries = self.entries.borrow_mut();
        if entries.get(&signum).is_some_and(Entry::is_empty) {
            entries.remove(&signum)
        } else {
            None
        }
    }
}

impl EventLoop {
    /// Calls `callback` on this loop's thread whenever the process receives
    /// signal `signum` (asyncio's `add_signal_handler`). Replaces the
    /// handler this loop had for `signum`. Unix only.
    ///
    /// The callback runs as an ordinary callback of the loop, in the
    /// iteration after the one that noticed the signal; several deliveries
    /// before that merge into one call. Other loops watching the same signal
    /// get it too.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a number that is not a signal, or a
    /// signal that cannot be handled (SIGKILL, SIGSTOP; SIGSEGV, SIGILL and
    /// SIGFPE are refused too); [`ErrorKind::Closed`] on a closed loop;
    /// [`ErrorKind::Io`] if the OS refuses the handler.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::signal::consts::{SIGKILL, SIGUSR2};
    /// use aioloop::ErrorKind;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l2 = lp.clone();
    /// lp.add_signal_handler(SIGUSR2, move || l2.stop()).unwrap();
    /// aioloop::signal::raise(SIGUSR2).unwrap();
    /// lp.run_forever().unwrap(); // stopped by the handler
    ///
    /// let err = lp.add_signal_handler(SIGKILL, || {}).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// lp.close().unwrap(); // also removes the SIGUSR2 handler
    /// ```
    #[track_caller]
    pub fn add_signal_handler(
        &self,
        signum: i32,
        callback: impl FnMut() + 'static,
    ) -> Result<(), Error> {
        check(signum)?;
        let ls = loop_signals(self)?;
        let cb: Cb = Rc::new(RefCell::new(Box::new(callback)));
        let old = ls.with_entry(signum, |e| e.user.replace(cb))?;
        drop(old);
        Ok(())
    }

    /// Stops calling this loop's handler for `signum` (asyncio's
    /// `remove_signal_handler`). Returns whether there was one.
    ///
    /// When no loop of the process watches `signum` any more, its default
    /// action is restored.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a number that is not a signal that
    /// can be handled (as [`add_signal_handler`](EventLoop::add_signal_handler)).
    /// On a closed loop it returns `Ok(false)`: closing removed the handlers.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::signal::consts::SIGHUP;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.remove_signal_handler(SIGHUP).unwrap());
    /// lp.add_signal_handler(SIGHUP, || {}).unwrap();
    /// assert!(lp.remove_signal_handler(SIGHUP).unwrap());
    /// assert!(!lp.remove_signal_handler(SIGHUP).unwrap());
    /// lp.close().unwrap();
    /// ```
    pub fn remove_signal_handler(&self, signum: i32) -> Result<bool, Error> {
        check(signum)?;
        let Some(ls) = find(self) else {
            return Ok(false);
        };
        let old = ls
            .entries
            .borrow_mut()
            .get_mut(&signum)
            .and_then(|e| e.user.take());
        let had = old.is_some();
        drop(old);
        drop(ls.prune(signum));
        Ok(had)
    }
}

/// An internal listener for a signal on one loop; dropping it stops
/// listening.
pub(crate) struct Subscription {
    ls: Weak<LoopSignals>,
    signum: i32,
    id: u64,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("signum", &self.signum)
            .finish()
    }
}

impl Subscription {
    /// A check that says whether the loop stopped delivering signals (it
    /// was closed).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn loop_gone(&self) -> impl Fn() -> bool {
        let ls = self.ls.clone();
        move || ls.upgrade().is_none_or(|l| l.reg.event_loop().is_closed())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(ls) = self.ls.upgrade() else {
            return;
        };
        let old = ls.entries.try_borrow_mut().ok().and_then(|mut e| {
            let entry = e.get_mut(&self.signum)?;
            let i = entry.subs.iter().position(|s| s.id == self.id)?;
            Some(entry.subs.remove(i))
        });
        drop(old);
        if let Ok(pruned) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ls.prune(self.signum)))
        {
            drop(pruned);
        }
    }
}

/// Calls `f` on `lp`'s thread for each delivery of `signum`, alongside the
/// user's handler. A `fallback` listener runs only while nothing else on
/// the loop listens to `signum`.
#[track_caller]
pub(crate) fn subscribe(
    lp: &EventLoop,
    signum: i32,
    fallback: bool,
    f: impl FnMut() + 'static,
) -> Result<Subscription, Error> {
    check(signum)?;
    let ls = loop_signals(lp)?;
    let id = ls.next_id.get();
    ls.next_id.set(id + 1);
    let cb: Cb = Rc::new(RefCell::new(Box::new(f)));
    ls.with_entry(signum, |e| {
        e.subs.push(Sub { id, cb, fallback });
    })?;
    Ok(Subscription {
        ls: Rc::downgrade(&ls),
        signum,
        id,
    })
}

/// What `aioloop::run` holds while its main task runs: SIGINT cancels the
/// main task instead of killing the process. Dropping it restores the
/// previous SIGINT behaviour.
pub(crate) struct SigintGuard {
    _sub: Subscription,
    count: Rc<Cell<usize>>,
}

impl SigintGuard {
    /// How many SIGINTs arrived while the guard was installed.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.count.get()
    }
}

impl fmt::Debug for SigintGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigintGuard")
            .field("count", &self.count.get())
            .finish()
    }
}

/// Turns SIGINT into a call of `on_sigint` on `lp`'s thread (once per
/// delivery) while the returned guard lives: the runner cancels its main
/// task there and, once the task ended, reports `ErrorKind::Interrupted`.
///
/// The hook yields to the user: while the loop has its own SIGINT handler
/// (or a [`ctrl_c`] waiter) only that one runs, as asyncio's runner leaves a
/// user's SIGINT handler alone.
#[track_caller]
pub(crate) fn install_sigint_cancel(
    lp: &EventLoop,
    mut on_sigint: impl FnMut() + 'static,
) -> Result<SigintGuard, Error> {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let sub = subscribe(lp, consts::SIGINT, true, move || {
        c.set(c.get() + 1);
        on_sigint();
    })?;
    Ok(SigintGuard { _sub: sub, count })
}

/// Waits for the next delivery of `signum` to the process, on the running
/// loop. Deliveries before the first poll are not seen.
///
/// # Errors
///
/// [`ErrorKind::NoRunningLoop`] outside a running loop;
/// [`ErrorKind::InvalidInput`] for a signal that cannot be handled;
/// [`ErrorKind::Closed`] when the loop closes first.
///
/// # Examples
///
/// ```
/// use aioloop::signal::consts::SIGUSR1;
///
/// aioloop::run(async {
///     let lp = aioloop::get_running_loop()?;
///     let waiter = lp.create_task(aioloop::signal::recv(SIGUSR1));
///     aioloop::yield_now().await; // let it start listening
///     aioloop::signal::raise(SIGUSR1)?;
///     waiter.await??;
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub async fn recv(signum: i32) -> Result<(), Error> {
    let lp = crate::get_running_loop().map_err(|_| {
        Error::new(
            ErrorKind::NoRunningLoop,
            "aioloop::signal::recv needs a running event loop: await it inside a task or aioloop::run()",
        )
    })?;
    let state: Rc<(Cell<bool>, RefCell<Option<Waker>>)> = Rc::default();
    let s = state.clone();
    let sub = subscribe(&lp, signum, false, move || {
        s.0.set(true);
        if let Some(w) = s.1.borrow_mut().take() {
            w.wake();
        }
    })?;
    let ls = sub.ls.clone();
    poll_fn(|cx| {
        if state.0.get() {
            return Poll::Ready(Ok(()));
        }
        if lp.is_closed() || ls.strong_count() == 0 {
            return Poll::Ready(Err(Error::closed()));
        }
        *state.1.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Waits for the next Ctrl-C (SIGINT) on the running loop: [`recv`] for
/// `SIGINT`. While it waits, `aioloop::run` does not turn that SIGINT into
/// cancelling its main task.
///
/// # Errors
///
/// As [`recv`].
///
/// # Examples
///
/// ```
/// aioloop::run(async {
///     let lp = aioloop::get_running_loop()?;
///     let waiter = lp.create_task(aioloop::signal::ctrl_c());
///     aioloop::yield_now().await;
///     aioloop::signal::raise(aioloop::signal::consts::SIGINT)?;
///     waiter.await??;
///     println!("got Ctrl-C, shutting down");
///     Ok::<_, aioloop::Error>(())
/// })
/// .unwrap()
/// .unwrap();
/// ```
pub async fn ctrl_c() -> Result<(), Error> {
    recv(consts::SIGINT).await
}

/// Sends `signum` to the current process (C's `raise`); handy in tests.
///
/// # Errors
///
/// [`ErrorKind::Io`] when the OS refuses (for example an invalid number).
///
/// # Examples
///
/// ```
/// use aioloop::signal::consts::SIGUSR2;
///
/// let lp = aioloop::EventLoop::new().unwrap();
/// lp.add_signal_handler(SIGUSR2, || {}).unwrap();
/// aioloop::signal::raise(SIGUSR2).unwrap(); // handled, does not end the process
/// lp.close().unwrap();
/// ```
pub fn raise(signum: i32) -> Result<(), Error> {
    sys::raise(signum).map_err(|e| Error::io(format_args!("raising signal {signum}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run_until_stopped(lp: &EventLoop) {
        let t = lp
            .call_later(Duration::from_secs(20), || panic!("no SIGINT in 20 s"))
            .unwrap();
        lp.run_forever().unwrap();
        t.cancel();
    }

    #[test]
    fn sigint_cancel_hook_runs_and_yields_to_a_user_handler() {
        let lp = EventLoop::new().unwrap();
        let hits = Rc::new(Cell::new(0));
        let (h, l2) = (hits.clone(), lp.clone());
        let guard = install_sigint_cancel(&lp, move || {
            h.set(h.get() + 1);
            l2.stop();
        })
        .unwrap();
        raise(consts::SIGINT).unwrap();
        run_until_stopped(&lp);
        assert_eq!((hits.get(), guard.count()), (1, 1));

        // A user handler wins over the runner's hook.
        let user = Rc::new(Cell::new(0));
        let (u, l3) = (user.clone(), lp.clone());
        lp.add_signal_handler(consts::SIGINT, move || {
            u.set(u.get() + 1);
            l3.stop();
        })
        .unwrap();
        raise(consts::SIGINT).unwrap();
        run_until_stopped(&lp);
        assert_eq!((hits.get(), user.get()), (1, 1));
        assert!(lp.remove_signal_handler(consts::SIGINT).unwrap());

        // Without a user handler the hook is back.
        raise(consts::SIGINT).unwrap();
        run_until_stopped(&lp);
        assert_eq!(hits.get(), 2);
        drop(guard);
        lp.close().unwrap();
    }
}
