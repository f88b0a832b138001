//! Scheduled callbacks: [`Handle`] and [`TimerHandle`], and the cells behind
//! them.

use crate::time::Instant;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};

use super::Inner;
use crate::TaskContextId;

/// A unit of work the loop can run: a one-shot callback, a repeating
/// readiness callback, or a sleep's wake-up.
pub(crate) trait Callback {
    /// Runs the callback unless it was cancelled.
    fn run(&self);
    /// Cancels it; returns whether it was still pending.
    fn cancel(&self) -> bool;
    /// Whether `cancel` was called before it ran.
    fn is_cancelled(&self) -> bool;
    /// Where it was scheduled from (for debug reports).
    fn location(&self) -> &'static Location<'static>;
}

const PENDING: u8 = 0;
const DONE: u8 = 1;
const CANCELLED: u8 = 2;

/// A one-shot callback: one allocation holding state and closure.
/// It runs in the task context it was scheduled from (`None`: the thread's
/// root context), as asyncio runs a handle in the caller's `contextvars`.
pub(crate) struct Once<F> {
    state: Cell<u8>,
    ctx: Option<TaskContextId>,
    f: Cell<Option<F>>,
    location: &'static Location<'static>,
}

impl<F: FnOnce() + 'static> Once<F> {
    pub(crate) fn boxed(
        f: F,
        ctx: Option<TaskContextId>,
        location: &'static Location<'static>,
    ) -> Rc<dyn Callback> {
        Rc::new(Once {
            state: Cell::new(PENDING),
            ctx,
            f: Cell::new(Some(f)),
            location,
        })
    }
}

impl<F: FnOnce()> Callback for Once<F> {
    #[inline]
    fn run(&self) {
        if self.state.get() == PENDING {
            self.state.set(DONE);
            if let Some(f) = self.f.take() {
                let _ctx = self.ctx.map(crate::context::enter_task_context);
                f();
            }
        }
    }

    fn cancel(&self) -> bool {
        if self.state.get() != PENDING {
            return false;
        }
        self.state.set(CANCELLED);
        // Release what the closure captured now, as asyncio clears the callback.
        drop(self.f.take());
        true
    }

    fn is_cancelled(&self) -> bool {
        self.state.get() == CANCELLED
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// A callback that may run many times (readiness callbacks).
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) struct Repeating {
    cancelled: Cell<bool>,
    ctx: Option<TaskContextId>,
    f: RefCell<Box<dyn FnMut()>>,
    location: &'static Location<'static>,
}

#[cfg_attr(not(unix), allow(dead_code))]
impl Repeating {
    pub(crate) fn new(
        f: Box<dyn FnMut()>,
        ctx: Option<TaskContextId>,
        location: &'static Location<'static>,
    ) -> Rc<Repeating> {
        Rc::new(Repeating {
            cancelled: Cell::new(false),
            ctx,
            f: RefCell::new(f),
            location,
        })
    }
}

impl Callback for Repeating {
    fn run(&self) {
        if !self.cancelled.get() {
            if let Ok(mut f) = self.f.try_borrow_mut() {
                let _ctx = self.ctx.map(crate::context::enter_task_context);
                f();
            }
        }
    }

    fn cancel(&self) -> bool {
        !self.cancelled.replace(true)
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// A callback scheduled with [`EventLoop::call_soon`](crate::EventLoop::call_soon).
///
/// Cloning the handle does not clone the callback: every clone cancels the
/// same scheduled call.
///
/// # Examples
///
/// ```
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let handle = lp.call_soon(|| unreachable!("cancelled callbacks never run")).unwrap();
/// handle.cancel();
/// assert!(handle.cancelled());
/// lp.run_until_complete(aioloop::yield_now()).unwrap();
/// lp.close().unwrap();
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) cb: Rc<dyn Callback>,
}

impl Handle {
    /// Cancels the callback. Does nothing if it already ran or was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let h = lp.call_soon(|| {}).unwrap();
    /// h.cancel();
    /// h.cancel(); // idempotent
    /// # lp.close().unwrap();
    /// ```
    pub fn cancel(&self) {
        self.cb.cancel();
    }

    /// Whether [`cancel`](Handle::cancel) was called before the callback ran.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let h = lp.call_soon(|| {}).unwrap();
    /// assert!(!h.cancelled());
    /// # lp.close().unwrap();
    /// ```
    pub fn cancelled(&self) -> bool {
        self.cb.is_cancelled()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("cancelled", &self.cancelled())
            .field("scheduled_at", &format_args!("{}", self.cb.location()))
            .finish()
    }
}

/// A callback scheduled for a point in time with
/// [`EventLoop::call_later`](crate::EventLoop::call_later) or
/// [`EventLoop::call_at`](crate::EventLoop::call_at).
///
/// Cancelling is O(1): the entry is marked and skipped when its time comes
/// (and the timer store is compacted when most of it is cancelled).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let t = lp.call_later(Duration::from_secs(3600), || {}).unwrap();
/// assert!(t.when() > lp.time());
/// t.cancel();
/// assert!(t.cancelled());
/// lp.close().unwrap();
/// ```
#[derive(Clone)]
pub struct TimerHandle {
    pub(crate) cb: Rc<dyn Callback>,
    pub(crate) when: Instant,
    pub(crate) lp: Weak<Inner>,
    pub(crate) key: u32,
    pub(crate) seq: u32,
}

impl TimerHandle {
    /// Cancels the callback. Does nothing if it already ran or was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.call_later(Duration::from_millis(10), || unreachable!()).unwrap();
    /// t.cancel();
    /// lp.run_until_complete(aioloop::sleep(Duration::from_millis(20))).unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn cancel(&self) {
        if self.cb.cancel() {
            if let Some(inner) = self.lp.upgrade() {
                let slot = inner
                    .timers
                    .try_borrow_mut()
                    .ok()
                    .and_then(|mut t| t.cancel_callback(self.key, self.seq));
                drop(slot);
            }
        }
    }

    /// Whether [`cancel`](TimerHandle::cancel) was called before it ran.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.call_later(Duration::from_millis(10), || {}).unwrap();
    /// assert!(!t.cancelled());
    /// # lp.close().unwrap();
    /// ```
    pub fn cancelled(&self) -> bool {
        self.cb.is_cancelled()
    }

    /// When the callback is due, on the loop's clock ([`EventLoop::time`](crate::EventLoop::time)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let at = lp.time() + Duration::from_secs(1);
    /// let t = lp.call_at(at, || {}).unwrap();
    /// assert_eq!(t.when(), at);
    /// # lp.close().unwrap();
    /// ```
    pub fn when(&self) -> Instant {
        self.when
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when)
            .field("cancelled", &self.cancelled())
            .field("scheduled_at", &format_args!("{}", self.cb.location()))
            .finish()
    }
}
