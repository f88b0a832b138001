//! Time: the timer store, [`sleep`], [`timeout`] / [`wait_for`] and
//! [`yield_now`].

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use slab::Slab;

use crate::event_loop::handle::Callback;
use crate::task::TaskEntry;
use crate::{Error, ErrorKind, EventLoop};

/// The loop's clock: a monotonic instant, [`std::time::Instant`] itself on
/// native targets.
///
/// On `wasm32-unknown-unknown` std's `Instant::now()` panics, so there it is
/// [`web_time::Instant`](https://docs.rs/web-time), the same API over the
/// host's `performance.now()`. Write `aioloop::Instant` in code that builds
/// for both.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = aioloop::EventLoop::new().unwrap();
/// let when: aioloop::Instant = lp.time() + Duration::from_millis(1);
/// lp.call_at(when, || {}).unwrap();
/// # lp.close().unwrap();
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub use std::time::Instant;
/// The loop's clock (see the native documentation): `web_time::Instant`,
/// over the host's `performance.now()`.
#[cfg(target_arch = "wasm32")]
pub use web_time::Instant;

// ---------------------------------------------------------------------------
// The timer store.
//
// A binary heap of 16-byte entries (deadline in nanoseconds since a process
// base instant, a scheduling sequence number for ties, a tagged key) over the
// places that say whether an entry is still live:
//
// - `call_later` / `call_at` callbacks live in the `callbacks` slab;
// - a sleep polled directly by one of the loop's tasks lives in that task's
//   own entry (`TaskEntry::sleep_seq`): no allocation at all, and firing it
//   wakes the task through the waker the loop already keeps for it;
// - other sleeps (a second sleep of the same task, or a sleep polled through
//   a combinator that wraps the waker) live in the `sleeps` slab, with the
//   task's key or a clone of the waker they were polled with.
//
// Entries live in a binary heap, or, when an entry is due no earlier than
// every entry already in it, at the back of a sorted run (equal delays, the
// common case, make deadlines grow): O(1) in, O(1) out, popped in memory
// order. The earliest entry is the earlier of the two fronts.
//
// Insert is O(log n) at worst. Cancelling frees the slot at once (O(1)) and leaves a
// stale heap entry, skipped when it surfaces or dropped by a compaction once
// more than half of a large heap is stale (as asyncio does).

/// Key tag: the entry is a callback (`callbacks` slab).
const CALLBACK: u32 = 1 << 31;
/// Key tag: the entry is a sleep kept in the task entry with this key.
const IN_TASK: u32 = 1 << 30;
const KEY_MASK: u32 = IN_TASK - 1;
/// A sleep-slot target with this bit set indexes `wakers`; else a task key.
const OWN_WAKER: u32 = 1 << 31;
/// Below this many entries the heap is never compacted.
const COMPACT_MIN: usize = 100;

/// The instant all deadlines are counted from, as nanoseconds in a `u64`.
///
/// As early as the clock allows, up to a year before the first timer: an
/// instant a program took before that (a `call_at` base computed early) must
/// keep its own count, not saturate to 0 and tie with every other early
/// deadline (ties fire in scheduling order, not deadline order). Natively
/// the monotonic clock goes back a year; on wasm32 it starts at the page's
/// or process's time origin, found by halving the step.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| earliest_before(Instant::now(), Duration::from_secs(365 * 86_400)))
}

/// `now` minus the largest offset up to `max` the clock can represent
/// (within a microsecond).
fn earliest_before(now: Instant, max: Duration) -> Instant {
    if let Some(t) = now.checked_sub(max) {
        return t;
    }
    let (mut ok, mut bad) = (Duration::ZERO, max);
    while bad - ok > Duration::from_micros(1) {
        let mid = ok + (bad - ok) / 2;
        if now.checked_sub(mid).is_some() {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    now - ok
}

pub(crate) fn to_nanos(when: Instant) -> u64 {
    let d = when.saturating_duration_since(base());
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn from_nanos(ns: u64) -> Instant {
    base() + Duration::from_nanos(ns)
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    when: u64,
    // Wraps after 2^32 timers (skipping 0); only the order of exactly equal
    // deadlines scheduled across the wrap could then differ.
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

#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    /// Entries in increasing order, each pushed after all the others.
    sorted: VecDeque<Entry>,
    callbacks: Slab<CallbackSlot>,
    sleeps: Slab<SleepSlot>,
    wakers: Slab<Waker>,
    seq: u32,
    stale: usize,
}

fn small_key(key: usize) -> u32 {
    // 2^30 live timers would need tens of gigabytes first.
    u32::try_from(key).unwrap_or(KEY_MASK) & KEY_MASK
}

impl TimerHeap {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    /// Schedules a callback; returns its (key, seq) for cancelling.
    pub(crate) fn push_callback(&mut self, when: Instant, cb: Rc<dyn Callback>) -> (u32, u32) {
        let seq = self.next_seq();
        let key = small_key(self.callbacks.insert(CallbackSlot { seq, cb }));
        self.insert(Entry {
            when: to_nanos(when),
            seq,
            key: key | CALLBACK,
        });
        (key, seq)
    }

    /// Forgets a cancelled callback (its heap entry goes stale).
    pub(crate) fn cancel_callback(&mut self, key: u32, seq: u32) -> Option<Rc<dyn Callback>> {
        let key = key as usize;
        if self.callbacks.get(key).is_some_and(|s| s.seq == seq) {
            self.stale += 1;
            return Some(self.callbacks.remove(key).cb);
        }
        None
    }

    fn slot_target(&mut self, target: SleepTarget<'_>) -> u32 {
        match target {
            SleepTarget::Task(key) => key,
            SleepTarget::Waker(w) => small_key(self.wakers.insert(w.clone())) | OWN_WAKER,
        }
    }

    fn drop_slot_target(&mut self, target: u32) -> Option<Waker> {
        if target & OWN_WAKER != 0 {
            self.wakers.try_remove((target & !OWN_WAKER) as usize)
        } else {
            None
        }
    }

    /// Registers a sleep due at `when` (nanoseconds, see [`to_nanos`]).
    pub(crate) fn push_sleep(
        &mut self,
        when: u64,
        target: SleepTarget<'_>,
        tasks: &mut Slab<TaskEntry>,
    ) -> SleepId {
        let seq = self.next_seq();
        let key = match target {
            SleepTarget::Task(k) => match tasks.get_mut(k as usize) {
                Some(entry) if entry.sleep_seq == 0 => {
                    entry.sleep_seq = seq;
                    k | IN_TASK
                }
                _ => self.slab_sleep(seq, target),
            },
            SleepTarget::Waker(_) => self.slab_sleep(seq, target),
        };
        self.insert(Entry { when, seq, key });
        SleepId { key, seq }
    }

    fn slab_sleep(&mut self, seq: u32, target: SleepTarget<'_>) -> u32 {
        let target = self.slot_target(target);
        small_key(self.sleeps.insert(SleepSlot { seq, target }))
    }

    /// Whether the sleep is still waiting (not fired, not cancelled).
    pub(crate) fn sleep_pending(&self, id: SleepId, tasks: &Slab<TaskEntry>) -> bool {
        live(&self.callbacks, &self.sleeps, tasks, id.key, id.seq)
    }

    /// Points a waiting sleep at whoever polled it last. Returns its new id
    /// and a waker to drop outside the borrows.
    pub(crate) fn retarget_sleep(
        &mut self,
        id: SleepId,
        when: u64,
        target: SleepTarget<'_>,
        tasks: &mut Slab<TaskEntry>,
    ) -> (SleepId, Option<Waker>) {
        if id.key & IN_TASK != 0 {
            if matches!(target, SleepTarget::Task(k) if k == id.key & KEY_MASK) {
                return (id, None);
            }
            // Polled by someone else now: move it to the slab.
            let old = self.cancel_sleep(id, tasks);
            return (self.push_sleep(when, target, tasks), old);
        }
        let old = match self.sleeps.get(id.key as usize) {
            Some(slot) => slot.target,
            None => return (id, None),
        };
        match (&target, old & OWN_WAKER != 0) {
            (SleepTarget::Task(key), false) if *key == old => return (id, None),
            (SleepTarget::Waker(w), true) => {
                if let Some(cur) = self.wakers.get_mut((old & !OWN_WAKER) as usize) {
                    if cur.will_wake(w) {
                        return (id, None);
                    }
                    return (id, Some(std::mem::replace(cur, (*w).clone())));
                }
            }
            _ => {}
        }
        let new = self.slot_target(target);
        if let Some(slot) = self.sleeps.get_mut(id.key as usize) {
            slot.target = new;
        }
        (id, self.drop_slot_target(old))
    }

    /// Cancels a waiting sleep. Returns a waker to drop outside the borrows.
    pub(crate) fn cancel_sleep(
        &mut self,
        id: SleepId,
        tasks: &mut Slab<TaskEntry>,
    ) -> Option<Waker> {
        if !self.sleep_pending(id, tasks) {
            return None;
        }
        self.stale += 1;
        let old = if id.key & IN_TASK != 0 {
            if let Some(entry) = tasks.get_mut((id.key & KEY_MASK) as usize) {
                entry.sleep_seq = 0;
            }
            None
        } else {
            let slot = self.sleeps.remove(id.key as usize);
            self.drop_slot_target(slot.target)
        };
        self.maybe_compact(tasks);
        old
    }

    /// Drops stale entries when they are more than half of a large heap.
    pub(crate) fn maybe_compact(&mut self, tasks: &Slab<TaskEntry>) {
        let len = self.heap.len() + self.sorted.len();
        if len > COMPACT_MIN && self.stale * 2 > len {
            let (callbacks, sleeps) = (&self.callbacks, &self.sleeps);
            self.heap
                .retain(|e| live(callbacks, sleeps, tasks, e.key, e.seq));
            self.sorted
                .retain(|e| live(callbacks, sleeps, tasks, e.key, e.seq));
            self.stale = 0;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.sorted.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.sorted.len()
    }

    /// Adds an entry: to the sorted run when it comes after every entry
    /// there (the common case of equal delays: O(1), and popped in memory
    /// order), else to the heap.
    fn insert(&mut self, e: Entry) {
        match self.sorted.back() {
            Some(last) if e.when < last.when => self.heap.push(e),
            _ => self.sorted.push_back(e),
        }
    }

    /// The earliest entry of the two stores.
    fn peek(&self) -> Option<Entry> {
        match (self.heap.peek(), self.sorted.front()) {
            (Some(&h), Some(&s)) => Some(if (h.when, h.seq) < (s.when, s.seq) {
                h
            } else {
                s
            }),
            (h, s) => h.or(s).copied(),
        }
    }

    /// Removes the entry `peek` returned.
    fn pop(&mut self, e: Entry) {
        if self.sorted.front() == Some(&e) {
            self.sorted.pop_front();
        } else {
            self.heap.pop();
        }
    }

    /// The earliest live deadline, dropping stale entries on the way.
    pub(crate) fn next_deadline(&mut self, tasks: &Slab<TaskEntry>) -> Option<Instant> {
        while let Some(top) = self.peek() {
            if live(&self.callbacks, &self.sleeps, tasks, top.key, top.seq) {
                return Some(from_nanos(top.when));
            }
            self.pop(top);
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Hands every timer due at `now` (deadline <= now) to `due`, in order.
    pub(crate) fn pop_due(
        &mut self,
        now: Instant,
        tasks: &mut Slab<TaskEntry>,
        mut due: impl FnMut(Fired),
    ) {
        let now = to_nanos(now);
        while let Some(top) = self.peek() {
            if !live(&self.callbacks, &self.sleeps, tasks, top.key, top.seq) {
                self.pop(top);
                self.stale = self.stale.saturating_sub(1);
                continue;
            }
            if top.when > now {
                break;
            }
            self.pop(top);
            if top.key & CALLBACK != 0 {
                let slot = self.callbacks.remove((top.key & !CALLBACK) as usize);
                due(Fired::Callback(slot.cb));
            } else if top.key & IN_TASK != 0 {
                let key = top.key & KEY_MASK;
                if let Some(entry) = tasks.get_mut(key as usize) {
                    entry.sleep_seq = 0;
                }
                due(Fired::Task(key));
            } else {
                let slot = self.sleeps.remove(top.key as usize);
                match self.drop_slot_target(slot.target) {
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
        self.sorted.clear();
        self.sleeps.clear();
        self.stale = 0;
        let callbacks = self.callbacks.drain().map(|s| s.cb).collect();
        let wakers = self.wakers.drain().collect();
        (callbacks, wakers)
    }
}

fn live(
    callbacks: &Slab<CallbackSlot>,
    sleeps: &Slab<SleepSlot>,
    tasks: &Slab<TaskEntry>,
    key: u32,
    seq: u32,
) -> bool {
    if key & CALLBACK != 0 {
        callbacks
            .get((key & !CALLBACK) as usize)
            .is_some_and(|s| s.seq == seq)
    } else if key & IN_TASK != 0 {
        tasks
            .get((key & KEY_MASK) as usize)
            .is_some_and(|e| e.sleep_seq == seq)
    } else {
        sleeps.get(key as usize).is_some_and(|s| s.seq == seq)
    }
}

/// Identifies one registered sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SleepId {
    key: u32,
    seq: u32,
}

// ---------------------------------------------------------------------------
// Sleep

/// `Sleep::seq` when not registered; `Sleep::key` then tells new from done.
const UNARMED: u32 = 0;
const DONE: u32 = u32::MAX;

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
    // 24 bytes in all, so a task that sleeps stays small.
    deadline: u64,
    lp: Option<EventLoop>,
    key: u32,
    seq: u32,
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
        from_nanos(self.deadline)
    }

    fn id(&self) -> SleepId {
        SleepId {
            key: self.key,
            seq: self.seq,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.seq == UNARMED {
            if this.key == DONE {
                return Poll::Ready(());
            }
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
            let id = lp.inner.timers.borrow_mut().push_sleep(
                this.deadline,
                target,
                &mut lp.inner.tasks.borrow_mut(),
            );
            // Polled outside a turn (by a foreign executor): arm the host.
            #[cfg(target_arch = "wasm32")]
            lp.inner.wake_host();
            this.key = id.key;
            this.seq = id.seq;
            this.lp = Some(lp);
            return Poll::Pending;
        }
        let Some(lp) = &this.lp else {
            return Poll::Ready(());
        };
        let inner = &lp.inner;
        let mut tasks = inner.tasks.borrow_mut();
        let mut timers = inner.timers.borrow_mut();
        if !timers.sleep_pending(this.id(), &tasks) {
            this.seq = UNARMED;
            this.key = DONE;
            return Poll::Ready(());
        }
        let target = crate::task::sleep_target(inner, cx.waker());
        let (id, old) = timers.retarget_sleep(this.id(), this.deadline, target, &mut tasks);
        this.key = id.key;
        this.seq = id.seq;
        drop(timers);
        drop(tasks);
        drop(old);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.seq == UNARMED {
            return;
        }
        if let Some(lp) = &self.lp {
            let old = match (
                lp.inner.timers.try_borrow_mut(),
                lp.inner.tasks.try_borrow_mut(),
            ) {
                (Ok(mut timers), Ok(mut tasks)) => timers.cancel_sleep(self.id(), &mut tasks),
                _ => None,
            };
            drop(old);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline())
            .field("registered", &(self.seq != UNARMED))
            .finish()
    }
}

pub(crate) fn sleep_on(lp: Option<EventLoop>, deadline: Instant) -> Sleep {
    Sleep {
        deadline: to_nanos(deadline),
        lp,
        key: 0,
        seq: UNARMED,
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

    fn run_due(heap: &mut TimerHeap, tasks: &mut Slab<TaskEntry>, now: Instant) -> Vec<u32> {
        let mut woken = Vec::new();
        heap.pop_due(now, tasks, |f| match f {
            Fired::Callback(cb) => cb.run(),
            Fired::Task(k) => woken.push(k),
            Fired::Waker(w) => w.wake(),
        });
        woken
    }

    fn tasks(n: usize) -> Slab<TaskEntry> {
        let mut s = Slab::new();
        for _ in 0..n {
            s.insert(TaskEntry::new());
        }
        s
    }

    #[test]
    fn heap_pops_by_deadline_then_scheduling_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let mut tasks = tasks(8);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        heap.push_callback(t0 + ms(3), recorder(&log, 3));
        heap.push_callback(t0 + ms(1), recorder(&log, 1));
        heap.push_callback(t0 + ms(2), recorder(&log, 20));
        heap.push_sleep(to_nanos(t0 + ms(2)), SleepTarget::Task(7), &mut tasks);
        heap.push_callback(t0 + ms(2), recorder(&log, 22));
        let next = heap.next_deadline(&tasks).unwrap();
        assert!(next <= t0 + ms(1) && next + Duration::from_nanos(1) >= t0 + ms(1));
        let woken = run_due(&mut heap, &mut tasks, t0 + ms(2));
        assert_eq!(*log.borrow(), [1, 20, 22]);
        assert_eq!(woken, [7]);
        run_due(&mut heap, &mut tasks, t0 + ms(3));
        assert_eq!(*log.borrow(), [1, 20, 22, 3]);
        assert!(heap.is_empty());
    }

    #[test]
    fn sorted_run_and_heap_merge_in_deadline_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let mut tasks = tasks(0);
        let t0 = Instant::now();
        let us = |n: u64| t0 + Duration::from_micros(n);
        // 10, 20, 30 go to the sorted run; 15, 5 and the tie at 20 to the heap.
        for (at, id) in [(10, 1), (20, 2), (30, 3), (15, 4), (5, 5), (20, 6), (40, 7)] {
            heap.push_callback(us(at), recorder(&log, id));
        }
        assert!(!heap.sorted.is_empty() && !heap.heap.is_empty());
        run_due(&mut heap, &mut tasks, us(100));
        assert_eq!(*log.borrow(), [5, 1, 4, 2, 6, 3, 7]);
    }

    #[test]
    fn nothing_fires_before_its_deadline() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let mut tasks = tasks(0);
        let t0 = Instant::now() + Duration::from_secs(1);
        heap.push_callback(t0, recorder(&log, 1));
        run_due(&mut heap, &mut tasks, t0 - Duration::from_micros(1));
        assert!(log.borrow().is_empty());
        run_due(&mut heap, &mut tasks, t0);
        assert_eq!(*log.borrow(), [1]);
    }

    #[test]
    fn cancelled_entries_are_skipped_and_compacted() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut heap = TimerHeap::default();
        let mut tasks = tasks(1000);
        let t0 = Instant::now();
        let at = |i: u32| t0 + Duration::from_micros(u64::from(i));
        let ids: Vec<_> = (0..1000)
            .map(|i| heap.push_callback(at(i), recorder(&log, i)))
            .collect();
        let sleeps: Vec<_> = (0..1000)
            .map(|i| heap.push_sleep(to_nanos(at(i)), SleepTarget::Task(i), &mut tasks))
            .collect();
        // A second sleep of task 0 cannot live in its entry: it goes to the slab.
        let extra = heap.push_sleep(to_nanos(at(5)), SleepTarget::Task(0), &mut tasks);
        assert_eq!(heap.sleeps.len(), 1);
        for &(key, seq) in ids.iter().take(900) {
            assert!(heap.cancel_callback(key, seq).is_some());
            assert!(heap.cancel_callback(key, seq).is_none());
        }
        for &id in sleeps.iter().take(950) {
            assert!(heap.sleep_pending(id, &tasks));
            heap.cancel_sleep(id, &mut tasks);
            assert!(!heap.sleep_pending(id, &tasks));
        }
        heap.cancel_sleep(extra, &mut tasks);
        heap.maybe_compact(&tasks);
        assert!(heap.len() < 2001, "heap was not compacted: {}", heap.len());
        let woken = run_due(&mut heap, &mut tasks, t0 + Duration::from_secs(1));
        assert_eq!(*log.borrow(), (900..1000).collect::<Vec<_>>());
        assert_eq!(woken, (950..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_sleep_can_move_between_task_and_waker_targets() {
        let mut heap = TimerHeap::default();
        let mut tasks = tasks(8);
        let t0 = Instant::now();
        let when = to_nanos(t0);
        let id = heap.push_sleep(when, SleepTarget::Task(3), &mut tasks);
        assert_eq!(tasks[3].sleep_seq, id.seq);
        let w = futures::task::noop_waker();
        let (id, _) = heap.retarget_sleep(id, when, SleepTarget::Waker(&w), &mut tasks);
        assert_eq!(tasks[3].sleep_seq, 0);
        assert_eq!(heap.wakers.len(), 1);
        let (id, old) = heap.retarget_sleep(id, when, SleepTarget::Task(4), &mut tasks);
        assert!(old.is_some());
        assert_eq!(heap.wakers.len(), 0);
        assert_eq!(run_due(&mut heap, &mut tasks, t0), [4]);
        assert!(!heap.sleep_pending(id, &tasks));
    }
}
