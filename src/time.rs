//! Time: the timer store, [`sleep`], [`timeout`] / [`wait_for`] and
//! [`yield_now`].

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::event_loop::handle::Callback;
use crate::{Error, ErrorKind, EventLoop};

// ---------------------------------------------------------------------------
// The timer store: a binary heap ordered by (deadline, scheduling order), with
// O(log n) insert, O(1) cancel (mark and skip) and compaction when more than
// half of a large heap is cancelled — the same bookkeeping as asyncio's.

struct Entry {
    when: Instant,
    seq: u64,
    cb: Rc<dyn Callback>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.when == other.when && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest first;
    // ties go to the one scheduled first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Below this many entries the heap is never compacted.
const COMPACT_MIN: usize = 100;

#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    seq: u64,
    cancelled: usize,
}

impl TimerHeap {
    pub(crate) fn push(&mut self, when: Instant, cb: Rc<dyn Callback>) {
        self.seq += 1;
        self.heap.push(Entry {
            when,
            seq: self.seq,
            cb,
        });
    }

    pub(crate) fn note_cancelled(&mut self) {
        self.cancelled += 1;
        if self.heap.len() > COMPACT_MIN && self.cancelled * 2 > self.heap.len() {
            self.heap.retain(|e| !e.cb.is_cancelled());
            self.cancelled = 0;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest live deadline, dropping cancelled entries on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if top.cb.is_cancelled() {
                self.heap.pop();
                self.cancelled = self.cancelled.saturating_sub(1);
            } else {
                return Some(top.when);
            }
        }
        None
    }

    /// Hands every entry due at `now` (deadline <= now) to `due`, in order.
    pub(crate) fn pop_due(&mut self, now: Instant, mut due: impl FnMut(Rc<dyn Callback>)) {
        while let Some(top) = self.heap.peek() {
            if top.cb.is_cancelled() {
                self.heap.pop();
                self.cancelled = self.cancelled.saturating_sub(1);
            } else if top.when <= now {
                if let Some(e) = self.heap.pop() {
                    due(e.cb);
                }
            } else {
                break;
            }
        }
    }

    pub(crate) fn take_all(&mut self) -> BinaryHeap<EntryBox> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap)
            .into_iter()
            .map(|e| EntryBox(e.cb))
            .collect()
    }
}

/// What `take_all` hands back: the callbacks, to be dropped outside any borrow.
pub(crate) struct EntryBox(#[allow(dead_code)] Rc<dyn Callback>);
impl PartialEq for EntryBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for EntryBox {}
impl PartialOrd for EntryBox {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EntryBox {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}

// ---------------------------------------------------------------------------
// Sleep

const SLEEP_PENDING: u8 = 0;
const SLEEP_FIRED: u8 = 1;
const SLEEP_CANCELLED: u8 = 2;

/// The timer entry of one [`Sleep`]: wakes the sleeping task when due.
struct SleepTimer {
    state: Cell<u8>,
    waker: Cell<Option<Waker>>,
    location: &'static Location<'static>,
}

impl Callback for SleepTimer {
    fn run(&self) {
        if self.state.get() == SLEEP_PENDING {
            self.state.set(SLEEP_FIRED);
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    fn cancel(&self) -> bool {
        if self.state.get() != SLEEP_PENDING {
            return false;
        }
        self.state.set(SLEEP_CANCELLED);
        drop(self.waker.take());
        true
    }

    fn is_cancelled(&self) -> bool {
        self.state.get() == SLEEP_CANCELLED
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// The future returned by [`sleep`] and [`EventLoop::sleep`].
///
/// It registers one timer on its first poll and cancels it when dropped
/// early. A zero delay still yields to the loop once, as `asyncio.sleep(0)`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// aioloop::run(aioloop::sleep(Duration::from_millis(5))).unwrap();
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    lp: Option<EventLoop>,
    timer: Option<Rc<SleepTimer>>,
    location: &'static Location<'static>,
}

impl Sleep {
    /// When the sleep ends.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let s = aioloop::sleep(Duration::from_secs(1));
    /// assert!(s.deadline() > Instant::now());
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &this.timer {
            None => {
                let lp = match this.lp.take() {
                    Some(lp) => lp,
                    None => match crate::get_running_loop() {
                        Ok(lp) => lp,
                        Err(_) => panic!(
                            "aioloop::sleep() was polled outside a running aioloop EventLoop; \
                             await it inside a task (EventLoop::create_task, aioloop::run) \
                             or use EventLoop::sleep"
                        ),
                    },
                };
                let timer = Rc::new(SleepTimer {
                    state: Cell::new(SLEEP_PENDING),
                    waker: Cell::new(Some(cx.waker().clone())),
                    location: this.location,
                });
                if lp.inner.is_closed() {
                    // A closed loop never fires timers: never hang silently.
                    panic!("aioloop::sleep() on a closed event loop: the loop was closed before the sleep began");
                }
                lp.inner
                    .timers
                    .borrow_mut()
                    .push(this.deadline, timer.clone());
                this.timer = Some(timer);
                this.lp = Some(lp);
                Poll::Pending
            }
            Some(timer) => {
                if timer.state.get() == SLEEP_FIRED {
                    return Poll::Ready(());
                }
                let w = timer.waker.take();
                match w {
                    Some(w) if w.will_wake(cx.waker()) => timer.waker.set(Some(w)),
                    _ => timer.waker.set(Some(cx.waker().clone())),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(timer), Some(lp)) = (&self.timer, &self.lp) {
            if timer.cancel() {
                if let Ok(mut timers) = lp.inner.timers.try_borrow_mut() {
                    timers.note_cancelled();
                }
            }
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.timer.is_some())
            .finish()
    }
}

pub(crate) fn sleep_on(
    lp: Option<EventLoop>,
    deadline: Instant,
    location: &'static Location<'static>,
) -> Sleep {
    Sleep {
        deadline,
        lp,
        timer: None,
        location,
    }
}

/// Sleeps for `delay` on the running loop (`asyncio.sleep`).
///
/// The deadline is fixed when `sleep` is called, not when the future is
/// first awaited (asyncio starts counting at the await; tokio, like us, at
/// the call). The same holds for [`timeout`].
///
/// # Panics
///
/// When polled outside a running aioloop loop; use [`EventLoop::sleep`] to
/// name the loop explicitly.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// aioloop::run(async {
///     aioloop::sleep(Duration::from_millis(1)).await;
/// })
/// .unwrap();
/// ```
#[track_caller]
pub fn sleep(delay: Duration) -> Sleep {
    sleep_on(None, deadline_after(delay), Location::caller())
}

/// `now + delay`, saturating far in the future for huge delays.
pub(crate) fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

// ---------------------------------------------------------------------------
// Timeout

pin_project_lite::pin_project! {
    /// The future returned by [`timeout`] and [`wait_for`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aioloop::ErrorKind;
    ///
    /// let r = aioloop::run(aioloop::timeout(Duration::from_millis(5), std::future::pending::<()>())).unwrap();
    /// assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: Sleep,
        delay: Duration,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "the operation did not finish within {:?}; the future was dropped (cancelled)",
                    this.delay
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("delay", &self.delay)
            .finish()
    }
}

/// Runs `fut` for at most `delay` (`asyncio.timeout`); on expiry the future is
/// dropped, which cancels it, and the result is an [`ErrorKind::TimedOut`]
/// error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let v = aioloop::run(aioloop::timeout(Duration::from_secs(5), async { 7 })).unwrap();
/// assert_eq!(v.unwrap(), 7);
/// ```
#[track_caller]
pub fn timeout<F: Future>(delay: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep_on(None, deadline_after(delay), Location::caller()),
        delay,
    }
}

/// asyncio's argument order for [`timeout`]: `wait_for(fut, delay)`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let r = aioloop::run(aioloop::wait_for(std::future::pending::<()>(), Duration::from_millis(1))).unwrap();
/// assert!(r.is_err());
/// ```
#[track_caller]
pub fn wait_for<F: Future>(fut: F, delay: Duration) -> Timeout<F> {
    timeout(delay, fut)
}

// ---------------------------------------------------------------------------
// Yield

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Lets the other ready work run once, then resumes (`await asyncio.sleep(0)`).
///
/// # Examples
///
/// ```
/// aioloop::run(async {
///     aioloop::yield_now().await;
/// })
/// .unwrap();
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::handle::Once;
    use std::cell::RefCell;

    fn recorder(log: &Rc<RefCell<Vec<u32>>>, n: u32) -> Rc<dyn Callback> {
        let log = log.clone();
        Once::boxed(move || log.borrow_mut().push(n), None, Location::caller())
    }

    #[test]
    fn heap_pops_by_deadline_then_scheduling_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        heap.push(t0 + ms(3), recorder(&log, 3));
        heap.push(t0 + ms(1), recorder(&log, 1));
        heap.push(t0 + ms(2), recorder(&log, 20));
        heap.push(t0 + ms(2), recorder(&log, 21));
        heap.push(t0 + ms(2), recorder(&log, 22));
        assert_eq!(heap.next_deadline(), Some(t0 + ms(1)));
        heap.pop_due(t0 + ms(2), |cb| cb.run());
        assert_eq!(*log.borrow(), [1, 20, 21, 22]);
        heap.pop_due(t0 + ms(3), |cb| cb.run());
        assert_eq!(*log.borrow(), [1, 20, 21, 22, 3]);
        assert_eq!(heap.len(), 0);
    }

    #[test]
    fn cancelled_entries_are_skipped_and_compacted() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let t0 = Instant::now();
        let mut cbs = Vec::new();
        for i in 0..1000 {
            let cb = recorder(&log, i);
            heap.push(t0 + Duration::from_micros(u64::from(i)), cb.clone());
            cbs.push(cb);
        }
        for cb in cbs.iter().take(900) {
            assert!(cb.cancel());
            heap.note_cancelled();
        }
        // More than half cancelled in a large heap: compacted.
        assert!(heap.len() < 1000, "heap was not compacted: {}", heap.len());
        assert_eq!(heap.next_deadline(), Some(t0 + Duration::from_micros(900)));
        heap.pop_due(t0 + Duration::from_secs(1), |cb| cb.run());
        assert_eq!(*log.borrow(), (900..1000).collect::<Vec<_>>());
    }
}
