//! Time: the timer store, [`sleep`], [`timeout`] / [`wait_for`] and
//! [`yield_now`].

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::event_loop::handle::Callback;
use crate::{Error, ErrorKind, EventLoop};

// ---------------------------------------------------------------------------
// The timer store.
//
// A binary heap of 16-byte entries (deadline in nanoseconds since the loop's
// base instant, a scheduling sequence number for ties, a slot key) over two
// slabs of slots: one for `call_later` / `call_at` callbacks and one for
// sleeps. Insert is O(log n); cancelling frees the slot at once (O(1)) and
// leaves a stale heap entry that is skipped when it surfaces, or dropped by a
// compaction once more than half of a large heap is stale (as asyncio does).
//
// A sleep polled directly by one of the loop's tasks stores only that task's
// key: firing it wakes the task through the waker the loop already keeps for
// it. Sleeps polled through a combinator that wraps the waker keep a clone of
// that waker instead.

/// The slot key of a callback entry has this bit set; a sleep's does not.
const CALLBACK: u32 = 1 << 31;
/// A sleep target with this bit set indexes `wakers`; else it is a task key.
const OWN_WAKER: u32 = 1 << 31;
/// Below this many entries the heap is never compacted.
const COMPACT_MIN: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    when: u64,
    // Wraps after 2^32 timers; only the order of exactly equal deadlines
    // scheduled across the wrap could then differ.
    seq: u32,
    key: u32,
}

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

struct CallbackSlot {
    seq: u32,
    cb: Rc<dyn Callback>,
}

struct SleepSlot {
    seq: u32,
    target: u32,
}

/// Identifies one registered sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SleepId {
    key: u32,
    seq: u32,
}

/// Whom a sleep wakes.
pub(crate) enum SleepTarget<'a> {
    /// The loop's task with this slab key.
    Task(u32),
    Waker(&'a Waker),
}

/// What a due timer hands to the loop.
pub(crate) enum Fired {
    Callback(Rc<dyn Callback>),
    Task(u32),
    Waker(Waker),
}

pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    callbacks: Slab<CallbackSlot>,
    sleeps: Slab<SleepSlot>,
    wakers: Slab<Waker>,
    base: Instant,
    seq: u32,
    stale: usize,
}

impl Default for TimerHeap {
    fn default() -> TimerHeap {
        TimerHeap {
            heap: BinaryHeap::new(),
            callbacks: Slab::new(),
            sleeps: Slab::new(),
            wakers: Slab::new(),
            base: Instant::now(),
            seq: 0,
            stale: 0,
        }
    }
}

fn small_key(key: usize) -> u32 {
    // 2^31 live timers would need tens of gigabytes first.
    u32::try_from(key).unwrap_or(u32::MAX) & !CALLBACK
}

impl TimerHeap {
    fn nanos(&self, when: Instant) -> u64 {
        let d = when.saturating_duration_since(self.base);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Schedules a callback; returns its (key, seq) for cancelling.
    pub(crate) fn push_callback(&mut self, when: Instant, cb: Rc<dyn Callback>) -> (u32, u32) {
        let seq = self.next_seq();
        let key = small_key(self.callbacks.insert(CallbackSlot { seq, cb }));
        let when = self.nanos(when);
        self.heap.push(Entry {
            when,
            seq,
            key: key | CALLBACK,
        });
        (key, seq)
    }

    /// Forgets a cancelled callback (its heap entry goes stale).
    pub(crate) fn cancel_callback(&mut self, key: u32, seq: u32) -> Option<Rc<dyn Callback>> {
        let key = key as usize;
        if self.callbacks.get(key).is_some_and(|s| s.seq == seq) {
            let slot = self.callbacks.remove(key);
            self.note_stale();
            return Some(slot.cb);
        }
        None
    }

    fn target(&mut self, target: SleepTarget<'_>) -> u32 {
        match target {
            SleepTarget::Task(key) => key,
            SleepTarget::Waker(w) => small_key(self.wakers.insert(w.clone())) | OWN_WAKER,
        }
    }

    fn drop_target(&mut self, target: u32) -> Option<Waker> {
        if target & OWN_WAKER != 0 {
            self.wakers.try_remove((target & !OWN_WAKER) as usize)
        } else {
            None
        }
    }

    pub(crate) fn push_sleep(&mut self, when: Instant, target: SleepTarget<'_>) -> SleepId {
        let seq = self.next_seq();
        let target = self.target(target);
        let key = small_key(self.sleeps.insert(SleepSlot { seq, target }));
        let when = self.nanos(when);
        self.heap.push(Entry { when, seq, key });
        SleepId { key, seq }
    }

    /// Whether the sleep is still waiting (not fired, not cancelled).
    pub(crate) fn sleep_pending(&self, id: SleepId) -> bool {
        self.sleeps
            .get(id.key as usize)
            .is_some_and(|s| s.seq == id.seq)
    }

    /// Points a waiting sleep at whoever polled it last. Returns a waker to
    /// drop outside the borrow.
    pub(crate) fn retarget_sleep(&mut self, id: SleepId, target: SleepTarget<'_>) -> Option<Waker> {
        let Some(slot) = self.sleeps.get(id.key as usize) else {
            return None;
        };
        let old = slot.target;
        match (&target, old & OWN_WAKER != 0) {
            (SleepTarget::Task(key), false) if *key == old => return None,
            (SleepTarget::Waker(w), true) => {
                if let Some(cur) = self.wakers.get_mut((old & !OWN_WAKER) as usize) {
                    if cur.will_wake(w) {
                        return None;
                    }
                    return Some(std::mem::replace(cur, (*w).clone()));
                }
            }
            _ => {}
        }
        let new = self.target(target);
        if let Some(slot) = self.sleeps.get_mut(id.key as usize) {
            slot.target = new;
        }
        self.drop_target(old)
    }

    /// Cancels a waiting sleep. Returns a waker to drop outside the borrow.
    pub(crate) fn cancel_sleep(&mut self, id: SleepId) -> Option<Waker> {
        if !self.sleep_pending(id) {
            return None;
        }
        let slot = self.sleeps.remove(id.key as usize);
        self.note_stale();
        self.drop_target(slot.target)
    }

    fn note_stale(&mut self) {
        self.stale += 1;
        if self.heap.len() > COMPACT_MIN && self.stale * 2 > self.heap.len() {
            let (callbacks, sleeps) = (&self.callbacks, &self.sleeps);
            self.heap.retain(|e| live(callbacks, sleeps, e));
            self.stale = 0;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest live deadline, dropping stale entries on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if live(&self.callbacks, &self.sleeps, top) {
                return Some(self.base + Duration::from_nanos(top.when));
            }
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Hands every timer due at `now` (deadline <= now) to `due`, in order.
    pub(crate) fn pop_due(&mut self, now: Instant, mut due: impl FnMut(Fired)) {
        let now = self.nanos(now);
        while let Some(&top) = self.heap.peek() {
            if !live(&self.callbacks, &self.sleeps, &top) {
                self.heap.pop();
                self.stale = self.stale.saturating_sub(1);
                continue;
            }
            if top.when > now {
                break;
            }
            self.heap.pop();
            if top.key & CALLBACK != 0 {
                let slot = self.callbacks.remove((top.key & !CALLBACK) as usize);
                due(Fired::Callback(slot.cb));
            } else {
                let slot = self.sleeps.remove(top.key as usize);
                match self.drop_target(slot.target) {
                    Some(w) => due(Fired::Waker(w)),
                    None => due(Fired::Task(slot.target)),
                }
            }
        }
    }

    /// Empties the store (the loop is closing); the caller drops the result
    /// outside any borrow.
    pub(crate) fn take_all(&mut self) -> (Vec<Rc<dyn Callback>>, Vec<Waker>) {
        self.heap.clear();
        self.sleeps.clear();
        self.stale = 0;
        let callbacks = self.callbacks.drain().map(|s| s.cb).collect();
        let wakers = self.wakers.drain().collect();
        (callbacks, wakers)
    }
}

fn live(callbacks: &Slab<CallbackSlot>, sleeps: &Slab<SleepSlot>, e: &Entry) -> bool {
    if e.key & CALLBACK != 0 {
        callbacks
            .get((e.key & !CALLBACK) as usize)
            .is_some_and(|s| s.seq == e.seq)
    } else {
        sleeps.get(e.key as usize).is_some_and(|s| s.seq == e.seq)
    }
}

// ---------------------------------------------------------------------------
// Sleep

enum SleepState {
    New(Instant),
    Armed(SleepId),
    Done,
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
    state: SleepState,
    lp: Option<EventLoop>,
    deadline: Instant,
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
        match this.state {
            SleepState::New(deadline) => {
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
                if lp.inner.is_closed() {
                    // A closed loop never fires timers: never hang silently.
                    panic!("aioloop::sleep() on a closed event loop: the loop was closed before the sleep began");
                }
                let target = crate::task::sleep_target(&lp.inner, cx.waker());
                let id = lp.inner.timers.borrow_mut().push_sleep(deadline, target);
                this.state = SleepState::Armed(id);
                this.lp = Some(lp);
                Poll::Pending
            }
            SleepState::Armed(id) => {
                let Some(lp) = &this.lp else {
                    return Poll::Ready(());
                };
                let old = {
                    let mut timers = lp.inner.timers.borrow_mut();
                    if !timers.sleep_pending(id) {
                        drop(timers);
                        this.state = SleepState::Done;
                        return Poll::Ready(());
                    }
                    let target = crate::task::sleep_target(&lp.inner, cx.waker());
                    timers.retarget_sleep(id, target)
                };
                drop(old);
                Poll::Pending
            }
            SleepState::Done => Poll::Ready(()),
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (SleepState::Armed(id), Some(lp)) = (&self.state, &self.lp) {
            let old = lp
                .inner
                .timers
                .try_borrow_mut()
                .ok()
                .and_then(|mut t| t.cancel_sleep(*id));
            drop(old);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &matches!(self.state, SleepState::Armed(_)))
            .finish()
    }
}

pub(crate) fn sleep_on(lp: Option<EventLoop>, deadline: Instant) -> Sleep {
    Sleep {
        state: SleepState::New(deadline),
        lp,
        deadline,
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
pub fn sleep(delay: Duration) -> Sleep {
    sleep_on(None, deadline_after(delay))
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
        sleep: sleep_on(None, deadline_after(delay)),
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
    use std::panic::Location;

    fn recorder(log: &Rc<RefCell<Vec<u32>>>, n: u32) -> Rc<dyn Callback> {
        let log = log.clone();
        Once::boxed(move || log.borrow_mut().push(n), None, Location::caller())
    }

    fn run_due(heap: &mut TimerHeap, now: Instant) -> Vec<u32> {
        let mut tasks = Vec::new();
        heap.pop_due(now, |f| match f {
            Fired::Callback(cb) => cb.run(),
            Fired::Task(k) => tasks.push(k),
            Fired::Waker(w) => w.wake(),
        });
        tasks
    }

    #[test]
    fn heap_pops_by_deadline_then_scheduling_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        heap.push_callback(t0 + ms(3), recorder(&log, 3));
        heap.push_callback(t0 + ms(1), recorder(&log, 1));
        heap.push_callback(t0 + ms(2), recorder(&log, 20));
        heap.push_sleep(t0 + ms(2), SleepTarget::Task(7));
        heap.push_callback(t0 + ms(2), recorder(&log, 22));
        assert_eq!(heap.next_deadline(), Some(t0 + ms(1)));
        let tasks = run_due(&mut heap, t0 + ms(2));
        assert_eq!(*log.borrow(), [1, 20, 22]);
        assert_eq!(tasks, [7]);
        run_due(&mut heap, t0 + ms(3));
        assert_eq!(*log.borrow(), [1, 20, 22, 3]);
        assert!(heap.is_empty());
    }

    #[test]
    fn nothing_fires_before_its_deadline() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let t0 = Instant::now() + Duration::from_secs(1);
        heap.push_callback(t0, recorder(&log, 1));
        run_due(&mut heap, t0 - Duration::from_nanos(1));
        assert!(log.borrow().is_empty());
        run_due(&mut heap, t0);
        assert_eq!(*log.borrow(), [1]);
    }

    #[test]
    fn cancelled_entries_are_skipped_and_compacted() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for i in 0..1000 {
            let at = t0 + Duration::from_micros(u64::from(i));
            ids.push(heap.push_callback(at, recorder(&log, i)));
        }
        let mut sleeps = Vec::new();
        for i in 0..1000 {
            let at = t0 + Duration::from_micros(u64::from(i));
            sleeps.push(heap.push_sleep(at, SleepTarget::Task(i)));
        }
        for &(key, seq) in ids.iter().take(900) {
            assert!(heap.cancel_callback(key, seq).is_some());
            assert!(heap.cancel_callback(key, seq).is_none());
        }
        for &id in sleeps.iter().take(950) {
            assert!(heap.sleep_pending(id));
            heap.cancel_sleep(id);
            assert!(!heap.sleep_pending(id));
        }
        // More than half stale in a large heap: compacted.
        assert!(heap.len() < 2000, "heap was not compacted: {}", heap.len());
        assert_eq!(heap.next_deadline(), Some(t0 + Duration::from_micros(900)));
        let tasks = run_due(&mut heap, t0 + Duration::from_secs(1));
        assert_eq!(*log.borrow(), (900..1000).collect::<Vec<_>>());
        assert_eq!(tasks, (950..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_sleep_can_move_between_task_and_waker_targets() {
        let mut heap = TimerHeap::default();
        let t0 = Instant::now();
        let id = heap.push_sleep(t0, SleepTarget::Task(3));
        let w = futures::task::noop_waker();
        assert!(heap.retarget_sleep(id, SleepTarget::Waker(&w)).is_none());
        assert_eq!(heap.wakers.len(), 1);
        assert!(heap.retarget_sleep(id, SleepTarget::Task(4)).is_some());
        assert_eq!(heap.wakers.len(), 0);
        assert_eq!(run_due(&mut heap, t0), [4]);
        assert!(!heap.sleep_pending(id));
    }
}
