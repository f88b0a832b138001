//! Tasks: [`Task`], cancellation, panics.
//!
//! A task is one allocation, a [`TaskCell`] behind an `Rc`: its future in a
//! [`Stage`], and the part it shares with its handle ([`Shared`]: the
//! output, the handle's waker, the task's state). The loop holds the cell as
//! a [`Step`] trait object in the task's entry of the task table
//! ([`TaskEntry`], with the task's waker, its cancel flag and the sleep the
//! task itself waits on) until the task ends; the handle holds it typed by
//! the output, so that taking the output is a plain field access. A task's
//! future never leaves its loop's thread: only the waker, a small
//! `Send + Sync` [`TaskWaker`] naming the task by key and generation, is
//! shared, and waking it queues that key (on the ready queue when its loop
//! runs on the waking thread, else on the loop's remote queue). The only
//! `unsafe` is in `task_cell` (pinning the future inside the `Rc`).
//!
//! A step polls with a waker from the table's spare ones. If the future
//! keeps a clone, that waker becomes the task's own (its entry keeps it);
//! if not, it goes back to the spares, so a task that never hands its waker
//! out (it waits on its own sleeps, on handles, or on nothing) keeps none,
//! and loop-side wakes (cancel, its sleeps) queue it by key. A waker some
//! other code still holds is never reused, so a stale waker never wakes
//! another task. In a steady state a spawn allocates only the task itself.
//!
//! Every task ends with an output, even when its loop closes (it then
//! completes with `Closed` without being polled again), so a handle never
//! waits forever. A failure travels in a [`Failure`] that reports itself to
//! the loop's exception handler if it is dropped unread (a detached task's
//! output is dropped as soon as the task ends).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWakerVTable, Waker};

use futures::task::{waker_ref, ArcWake};

use crate::event_loop::{ExceptionContext, Inner, Ready, Remote};
use crate::task_cell::TaskCell;
use crate::time::SleepTarget;
use crate::{Error, ErrorKind, EventLoop, TaskContextId};

/// What a task stores as its output.
type Output<T> = Result<T, Failure>;

/// A failed task's error. Dropped unread (the handle was detached, or dropped
/// without being awaited), a panic is reported to the loop's exception
/// handler: "Task exception was never retrieved", as asyncio does.
pub(crate) struct Failure {
    err: Option<Error>,
    lp: Rc<Inner>,
}

impl Failure {
    fn into_error(mut self) -> Error {
        self.err.take().unwrap_or_else(Error::cancelled)
    }
}

impl Drop for Failure {
    fn drop(&mut self) {
        if let Some(err) = self.err.take() {
            if err.is_panic() && !err.is_reported() {
                let location = err.location();
                let lp = EventLoop {
                    inner: self.lp.clone(),
                };
                report(&lp, "Task exception was never retrieved", err, location);
            }
        }
    }
}

/// A task's waker: which task (slot key and generation) and how to reach
/// its loop from any thread. `scheduled` is set while the task is queued, so
/// that any number of wakes queue it once.
pub(crate) struct TaskWaker {
    /// Key and generation change only while the table holds the one
    /// reference (a spare waker lent to a step): a waker anyone else holds
    /// keeps naming its own task.
    key: AtomicU32,
    gen: AtomicU32,
    scheduled: AtomicBool,
    remote: Arc<Remote>,
}

impl ArcWake for TaskWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        if !arc_self.scheduled.load(Ordering::Acquire)
            && !arc_self.scheduled.swap(true, Ordering::AcqRel)
        {
            let key = arc_self.key.load(Ordering::Relaxed);
            let gen = arc_self.gen.load(Ordering::Relaxed);
            crate::event_loop::schedule_task(&arc_self.remote, key, gen);
        }
    }
}

/// What a task shares with its handle: where the task puts its output, the
/// waker of whoever awaits the handle, and how far the task got.
pub(crate) struct Shared<T> {
    out: Cell<Option<Output<T>>>,
    awaiter: Cell<Option<Waker>>,
    state: Cell<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Running, and the handle is gone: the output is dropped at the end.
    Detached,
    /// Finished: the output is in `out` until the handle takes it.
    Done,
    /// Dropped unfinished with its loop (which was never closed).
    Gone,
}

/// Anything: the future part of a task as its handle sees it (erased).
trait Erased {}

impl<T: ?Sized> Erased for T {}

/// A task as its loop's table keeps it (erased behind [`Step`]).
type TaskOf<F> = TaskCell<Shared<<F as Future>::Output>, Stage<F>>;

/// A task as its handle keeps it: typed by the output.
type Joined<T> = Pin<Rc<TaskCell<Shared<T>, dyn Erased>>>;

/// What the loop knows about one unfinished task.
pub(crate) struct TaskEntry {
    /// The task itself; `None` while one of its steps runs (the runner
    /// holds it) or after a trap abandoned that step (wasm32).
    cell: Option<Pin<Rc<dyn Step>>>,
    /// The task's own waker, once its future kept a clone of the waker it
    /// was polled with (taken out while a step runs).
    waker: Option<Arc<TaskWaker>>,
    /// The task's generation; the next vacant slot, while this one is
    /// vacant.
    gen: u32,
    /// The sequence number of the task's own sleep, 0 for none (see the
    /// timer store in `time.rs`).
    pub(crate) sleep_seq: u32,
    occupied: bool,
    /// On the ready queue (for a task without a waker of its own).
    queued: bool,
    pub(crate) cancel_requested: bool,
}

impl TaskEntry {
    fn vacant() -> TaskEntry {
        TaskEntry {
            cell: None,
            waker: None,
            gen: 0,
            sleep_seq: 0,
            occupied: false,
            queued: false,
            cancel_requested: false,
        }
    }
}

/// No slot (the end of the free list).
const NO_SLOT: u32 = u32::MAX;

/// A loop's unfinished tasks, by key.
pub(crate) struct TaskTable {
    slots: Vec<TaskEntry>,
    /// Wakers nobody else holds, lent to steps (see the module documentation).
    spare: Vec<Arc<TaskWaker>>,
    /// The first vacant slot.
    free: u32,
    /// Occupied slots: unfinished tasks.
    live: usize,
    /// The generation of the latest task (tells a slot's tasks apart).
    last_gen: u32,
}

impl Default for TaskTable {
    fn default() -> TaskTable {
        TaskTable {
            slots: Vec::new(),
            spare: Vec::new(),
            free: NO_SLOT,
            live: 0,
            last_gen: 0,
        }
    }
}

impl Drop for TaskTable {
    fn drop(&mut self) {
        // A loop dropped without being closed: its unfinished tasks go with
        // it, and their handles say so rather than wait forever.
        for (_, e) in self.iter_mut() {
            if let Some(cell) = &e.cell {
                cell.as_ref().abandon();
            }
        }
    }
}

impl TaskTable {
    /// The task in slot `key`, if the slot is occupied.
    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&TaskEntry> {
        self.slots.get(key).filter(|e| e.occupied)
    }

    /// The task in slot `key`, if the slot is occupied.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut TaskEntry> {
        self.slots.get_mut(key).filter(|e| e.occupied)
    }

    /// The occupied slots.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut TaskEntry)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.occupied)
    }

    /// Puts the task `make(key)` in a vacant slot; returns its key and
    /// generation.
    #[inline]
    fn insert_with(&mut self, make: impl FnOnce(usize) -> Pin<Rc<dyn Step>>) -> (usize, u32) {
        let key = if self.free == NO_SLOT {
            self.slots.push(TaskEntry::vacant());
            self.slots.len() - 1
        } else {
            let key = self.free as usize;
            self.free = self.slots[key].gen;
            key
        };
        self.last_gen = self.last_gen.wrapping_add(1);
        self.live += 1;
        let cell = make(key);
        let e = &mut self.slots[key];
        e.occupied = true;
        e.queued = true;
        e.gen = self.last_gen;
        e.cell = Some(cell);
        (key, self.last_gen)
    }

    /// How many tasks have not finished.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Frees slot `key` (occupied).
    #[inline]
    fn vacate(&mut self, key: usize) {
        let e = &mut self.slots[key];
        e.occupied = false;
        e.gen = self.free;
        e.queued = false;
        e.cancel_requested = false;
        e.sleep_seq = 0;
        let own = e.waker.take();
        self.live -= 1;
        self.free = key as u32;
        if let Some(w) = own {
            self.spare_waker(w);
        }
    }

    /// Keeps `waker` for later steps if nobody else holds it.
    #[inline]
    fn spare_waker(&mut self, waker: Arc<TaskWaker>) {
        if Arc::strong_count(&waker) == 1 {
            self.spare.push(waker);
        }
    }

    /// Asks every unfinished task not asked yet to cancel, and wakes it;
    /// returns how many were asked.
    pub(crate) fn cancel_all(&mut self, remote: &Arc<Remote>) -> usize {
        let asked: Vec<usize> = self
            .iter_mut()
            .filter(|(_, e)| !e.cancel_requested)
            .map(|(k, e)| {
                e.cancel_requested = true;
                k
            })
            .collect();
        for &key in &asked {
            self.wake(key, remote);
        }
        asked.len()
    }

    /// Queues the task in slot `key` for a wake from the loop itself (a
    /// cancel, a due sleep of its own).
    fn wake(&mut self, key: usize, remote: &Arc<Remote>) {
        let Some(e) = self.get_mut(key) else { return };
        if let Some(w) = &e.waker {
            ArcWake::wake_by_ref(w);
        } else if !e.queued && e.cell.is_some() {
            // (No cell: its own step runs now and sees the wake's cause
            // when it returns.) Queued as a waker would queue it: straight
            // onto the ready queue inside a turn, else through the remote
            // queue, which wakes the loop (or its host).
            e.queued = true;
            crate::event_loop::schedule_task(remote, key as u32, e.gen);
        }
    }

    /// A slot for tests of the timer store: no task behind it.
    #[cfg(test)]
    pub(crate) fn insert_for_test(&mut self) -> usize {
        let mut e = TaskEntry::vacant();
        e.occupied = true;
        self.slots.push(e);
        self.slots.len() - 1
    }
}

/// The task a loop is polling (or polled last): its slab key and its
/// waker's identity (data and vtable pointers, compared, never
/// dereferenced). Tasks never poll each other inline, so one slot per loop
/// is enough; a stale value only ever matches that task's own waker.
#[derive(Clone, Copy)]
pub(crate) struct CurrentTask {
    key: u32,
    data: *const (),
    vtable: *const RawWakerVTable,
}

impl Default for CurrentTask {
    fn default() -> CurrentTask {
        CurrentTask {
            key: 0,
            data: std::ptr::null(),
            vtable: std::ptr::null(),
        }
    }
}

/// Whom a sleep registered on `lp` and polled with `waker` should wake: the
/// task itself when `waker` is that task's own (the loop keeps it), or else
/// the waker.
pub(crate) fn sleep_target<'a>(lp: &Inner, waker: &'a Waker) -> SleepTarget<'a> {
    let cur = lp.current_task.get();
    if std::ptr::eq(cur.data, waker.data()) && std::ptr::eq(cur.vtable, waker.vtable()) {
        SleepTarget::Task(cur.key)
    } else {
        SleepTarget::Waker(waker)
    }
}

/// Wakes the task with slab key `key` (a due sleep), if it is still waiting.
pub(crate) fn wake_task(lp: &Inner, key: u32) {
    lp.tasks.borrow_mut().wake(key as usize, &lp.remote);
}

/// Tags a [`Stage::Running`] key whose context is stored on the side.
const OWN_CONTEXT: u32 = 1 << 31;
/// Tags a [`Stage::Running`] key whose creation site is in
/// `Inner::debug_locations` (created in debug mode).
const HAS_LOCATION: u32 = 1 << 30;
const TAGS: u32 = OWN_CONTEXT | HAS_LOCATION;

fn slab_key(tagged: u32) -> usize {
    (tagged & !TAGS) as usize
}

#[inline]
fn forget_context(lp: &Inner, tagged: u32) {
    if tagged & OWN_CONTEXT != 0 {
        forget_own_context(lp, tagged);
    }
}

#[cold]
fn forget_own_context(lp: &Inner, tagged: u32) {
    if let Ok(mut map) = lp.task_contexts.try_borrow_mut() {
        map.remove(&slab_key(tagged));
    }
}

/// Where the task with this tagged key was created, if the loop was in
/// debug mode then.
#[inline]
fn take_location(lp: &Inner, tagged: u32) -> Option<&'static Location<'static>> {
    if tagged & HAS_LOCATION == 0 {
        None
    } else {
        take_recorded_location(lp, tagged)
    }
}

#[cold]
fn take_recorded_location(lp: &Inner, tagged: u32) -> Option<&'static Location<'static>> {
    lp.debug_locations
        .try_borrow_mut()
        .ok()?
        .remove(&slab_key(tagged))
}

pin_project_lite::pin_project! {
    /// A task: its future while it runs. The key lives in the variant so
    /// that it shares a word with the enum's tag.
    #[project = StageProj]
    enum Stage<F: Future> {
        Running {
            #[pin]
            fut: F,
            // The task's key, plus the OWN_CONTEXT / HAS_LOCATION tags.
            key: u32,
        },
        Done,
    }
}

/// A task with its output type erased, as its loop's table keeps it.
trait Step {
    /// Runs one step: polls the future once, unless the task was cancelled
    /// or its loop closed, which end it without polling. Returns `true` once
    /// the task has finished (its output is with its handle, or dropped).
    fn step(self: Pin<&Self>, lp: &Rc<Inner>, cx: &mut Context<'_>) -> bool;

    /// The task is dropped unfinished with its loop: tell the handle.
    fn abandon(self: Pin<&Self>);
}

impl<F: Future + 'static> Step for TaskOf<F> {
    fn step(self: Pin<&Self>, lp: &Rc<Inner>, cx: &mut Context<'_>) -> bool {
        let shared = self.get_ref().shared();
        // A step never reaches its own task's stage again: `None` cannot
        // happen (it would leave the task queued for nothing).
        self.with_stage(|stage| step_stage(stage, shared, lp, cx))
            .unwrap_or(false)
    }

    fn abandon(self: Pin<&Self>) {
        // The future goes with its loop (its handle may keep the cell), a
        // panic in its destructor with it.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.with_stage(|mut stage| stage.set(Stage::Done))
        }));
        let shared = self.get_ref().shared();
        if matches!(shared.state.get(), State::Running | State::Detached) {
            shared.state.set(State::Gone);
            if let Some(w) = shared.awaiter.take() {
                w.wake();
            }
        }
    }
}

fn step_stage<F: Future>(
    mut stage: Pin<&mut Stage<F>>,
    shared: &Shared<F::Output>,
    lp: &Rc<Inner>,
    cx: &mut Context<'_>,
) -> bool {
    let StageProj::Running { fut, key: tagged } = stage.as_mut().project() else {
        return true;
    };
    let tagged = *tagged;
    let key = slab_key(tagged);
    if lp.is_closed() {
        // Run once more by `close()` only to end with an output.
        finish(stage, shared, lp, tagged, Err(closed_before_done()));
        return true;
    }
    let ctx = if tagged & OWN_CONTEXT == 0 {
        lp.default_ctx.get()
    } else {
        lp.task_contexts.borrow()[&key]
    };
    let _ctx = crate::context::enter_task_context(ctx);
    // The task's entry is read only while some cancellation is pending
    // anywhere in the loop: the common step touches no slab memory.
    let cancelled = |lp: &Inner| {
        lp.cancels.get() > 0
            && lp
                .tasks
                .borrow()
                .get(key)
                .is_some_and(|e| e.cancel_requested)
    };
    if cancelled(lp) {
        finish(stage, shared, lp, tagged, Err(Error::cancelled()));
        return true;
    }
    lp.current_task.set(CurrentTask {
        key: key as u32,
        data: cx.waker().data(),
        vtable: cx.waker().vtable(),
    });
    let result = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        // A cancel requested while this step ran wins, as in asyncio.
        Ok(Poll::Ready(_)) | Ok(Poll::Pending) if cancelled(lp) => Err(Error::cancelled()),
        Ok(Poll::Ready(v)) => Ok(v),
        Ok(Poll::Pending) => return false,
        Err(payload) => {
            let err = Error::from_panic("a task", &*payload);
            drop(payload);
            Err(err)
        }
    };
    finish(stage, shared, lp, tagged, result);
    true
}

/// Drops the task's future (containing a panic in its destructor), forgets
/// what the loop kept on the side for it and hands its output to its handle
/// (or drops it, when the handle is gone).
fn finish<F: Future>(
    mut stage: Pin<&mut Stage<F>>,
    shared: &Shared<F::Output>,
    lp: &Rc<Inner>,
    tagged_key: u32,
    mut result: Result<F::Output, Error>,
) {
    let key = slab_key(tagged_key);
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| stage.set(Stage::Done))) {
        let err = Error::from_panic("dropping a task's future", &*p);
        result = Err(err);
    }
    if lp.cancels.get() > 0 {
        if let Some(e) = lp.tasks.borrow_mut().get_mut(key) {
            if std::mem::take(&mut e.cancel_requested) {
                lp.cancels.set(lp.cancels.get().saturating_sub(1));
            }
        }
    }
    forget_context(lp, tagged_key);
    let location = take_location(lp, tagged_key);
    let output = result.map_err(|mut err| {
        if let Some(location) = location {
            err.set_location(location);
        }
        if err.is_panic() && lp.shutting_down.get() {
            // asyncio reports leftovers' errors at run() shutdown even when
            // someone holds the task.
            let lp = EventLoop { inner: lp.clone() };
            let message = "unhandled panic in a task during aioloop::run() / Runner shutdown";
            report(&lp, message, err.clone(), location);
            err.mark_reported();
        }
        Failure {
            err: Some(err),
            lp: lp.clone(),
        }
    });
    // With its handle gone, the output is dropped here (a failure in it
    // reports itself).
    let detached = shared.state.get() == State::Detached;
    shared.state.set(State::Done);
    if detached {
        drop(output);
    } else {
        shared.out.set(Some(output));
        if let Some(w) = shared.awaiter.take() {
            w.wake();
        }
    }
}

fn report(lp: &EventLoop, message: &str, err: Error, location: Option<&'static Location<'static>>) {
    let mut ctx = ExceptionContext::new(message).with_error(err);
    if let (true, Some(location)) = (lp.get_debug(), location) {
        ctx = ctx.with_location(location);
    }
    lp.call_exception_handler(&ctx);
}

pub(crate) fn spawn<F: Future + 'static>(
    lp: &EventLoop,
    fut: F,
    ctx: TaskContextId,
    location: &'static Location<'static>,
) -> Task<F::Output> {
    let inner = &lp.inner;
    let mut joined = None;
    // The slot's waker is brought up to date at the task's first step:
    // until then the task is queued and nobody needs to wake it.
    let (key, gen) = inner.tasks.borrow_mut().insert_with(|key| {
        // 2^30 live tasks would need tens of gigabytes first.
        let mut tagged_key = u32::try_from(key).unwrap_or(HAS_LOCATION - 1) & !TAGS;
        if inner.debug.get() {
            inner.debug_locations.borrow_mut().insert(key, location);
            tagged_key |= HAS_LOCATION;
        }
        if ctx != inner.default_ctx.get() {
            inner.task_contexts.borrow_mut().insert(key, ctx);
            tagged_key |= OWN_CONTEXT;
        }
        let cell: Pin<Rc<TaskOf<F>>> = Rc::pin(TaskCell::new(
            Shared {
                out: Cell::new(None),
                awaiter: Cell::new(None),
                state: Cell::new(State::Running),
            },
            Stage::Running {
                fut,
                key: tagged_key,
            },
        ));
        joined = Some(cell.clone());
        cell
    });
    let key32 = (key as u32) & !TAGS;
    if inner.is_closed() {
        // Never polls the future: ends at once with `Closed`.
        run_task(inner, key32, gen);
    } else {
        inner.ready.borrow_mut().push_back(Ready::Task(key32, gen));
        // Inside a turn (tasks spawning tasks) the turn's end schedules the
        // next one: no host call per spawn.
        #[cfg(target_arch = "wasm32")]
        if !inner.is_running() {
            inner.wake_host();
        }
    }
    Task {
        cell: joined.map(|c| c as Joined<F::Output>),
        lp: Rc::downgrade(inner),
        key: key32,
        gen,
    }
}

/// Runs one step of the task with slab key `key`, if it is still the task of
/// generation `gen` and has not finished (a queued wake can outlive it).
pub(crate) fn run_task(lp: &Rc<Inner>, key: u32, gen: u32) {
    let (cell, waker) = {
        let mut tasks = lp.tasks.borrow_mut();
        let tasks = &mut *tasks;
        let Some(e) = tasks
            .slots
            .get_mut(key as usize)
            .filter(|e| e.occupied && e.gen == gen)
        else {
            return;
        };
        let Some(cell) = e.cell.take() else {
            return;
        };
        e.queued = false;
        match e.waker.take() {
            Some(w) => (cell, w),
            None => {
                // A spare (nobody else holds it: it may be renamed).
                let w = match tasks.spare.pop() {
                    Some(w) => {
                        w.key.store(key, Ordering::Relaxed);
                        w.gen.store(gen, Ordering::Relaxed);
                        w
                    }
                    None => Arc::new(TaskWaker {
                        key: AtomicU32::new(key),
                        gen: AtomicU32::new(gen),
                        scheduled: AtomicBool::new(false),
                        remote: lp.remote.clone(),
                    }),
                };
                (cell, w)
            }
        }
    };
    // Wakes from now on queue the task again. (A swap, not a store: it
    // acquires what a waker on another thread published before waking.)
    waker.scheduled.swap(false, Ordering::AcqRel);
    let done = {
        let w = waker_ref(&waker);
        let mut cx = Context::from_waker(&w);
        cell.as_ref().step(lp, &mut cx)
    };
    let mut guard = lp.tasks.borrow_mut();
    let tasks = &mut *guard;
    let Some(e) = tasks.slots.get_mut(key as usize).filter(|e| e.occupied) else {
        // Unreachable: only the task itself frees its entry.
        return;
    };
    if done {
        tasks.vacate(key as usize);
        tasks.spare_waker(waker);
        drop(guard);
        // The handle may hold the cell still (for the output); if not, the
        // finished task is freed here, outside the borrow.
        drop(cell);
        return;
    }
    e.cell = Some(cell);
    if Arc::strong_count(&waker) > 1 || waker.scheduled.load(Ordering::Acquire) {
        // The future kept the waker (it is the task's own while someone
        // holds it), or woke it during the step (a yield: the task is queued
        // and its next step reuses it).
        e.waker = Some(waker);
    } else {
        // Nobody can wake it but the loop: back to the spares.
        tasks.spare.push(waker);
    }
}

/// Ends every unfinished task of a closing loop with `Closed`, without
/// polling their futures again (so every handle resolves).
pub(crate) fn close_all(lp: &Rc<Inner>) {
    let unfinished: Vec<(u32, u32)> = lp
        .tasks
        .borrow_mut()
        .iter_mut()
        .map(|(k, e)| (k as u32, e.gen))
        .collect();
    // One at a time: dropping a future runs user code, which may touch the
    // loop again (a task created now ends at once).
    for (key, gen) in unfinished {
        run_task(lp, key, gen);
    }
}

/// A handle to a task created with
/// [`EventLoop::create_task`](crate::EventLoop::create_task).
///
/// It is a future of `Result<T, Error>`: `Ok` with the task's output,
/// [`ErrorKind::Cancelled`] when it was cancelled, [`ErrorKind::Panicked`] when
/// it panicked, [`ErrorKind::Closed`] when its loop closed first.
///
/// Dropping the handle detaches the task: it keeps running. If a detached
/// task then fails (a panic), the error goes to the loop's exception handler
/// ("Task exception was never retrieved"), as it does when a handle whose
/// task failed is dropped without being awaited.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let lp = aioloop::EventLoop::new().unwrap();
/// let t = lp.create_task(async {
///     aioloop::sleep(Duration::from_secs(3600)).await;
/// });
/// assert!(!t.done());
/// assert!(t.cancel());
/// let r = lp.run_until_complete(t).unwrap();
/// assert!(r.unwrap_err().is_cancelled());
/// lp.close().unwrap();
/// ```
#[must_use = "a dropped Task keeps running detached; bind it to `_task` or call `.detach()` to say so"]
pub struct Task<T> {
    /// The task; `None` once the handle took the output.
    cell: Option<Joined<T>>,
    // Weak: a handle does not keep its loop alive.
    lp: Weak<Inner>,
    /// The task's key and generation in its loop's task table.
    key: u32,
    gen: u32,
}

impl<T> Task<T> {
    /// Requests cancellation (`Task.cancel()`): at its next step the task's
    /// future is dropped and the task ends with [`ErrorKind::Cancelled`]. A
    /// task that has not started yet never runs. Returns `false` if the task
    /// is already done.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async { unreachable!("cancelled before it starts") });
    /// assert!(t.cancel());
    /// assert!(lp.run_until_complete(t).unwrap().unwrap_err().is_cancelled());
    /// # lp.close().unwrap();
    /// ```
    pub fn cancel(&self) -> bool {
        let Some(inner) = self.live_loop() else {
            return false;
        };
        let mut tasks = inner.tasks.borrow_mut();
        match tasks.get_mut(self.key as usize) {
            Some(entry) if entry.gen == self.gen => {
                if !entry.cancel_requested {
                    entry.cancel_requested = true;
                    inner.cancels.set(inner.cancels.get() + 1);
                }
            }
            _ => return false,
        }
        tasks.wake(self.key as usize, &inner.remote);
        true
    }

    /// What the task shares with this handle, until the output is taken.
    #[inline]
    fn shared(&self) -> Option<&Shared<T>> {
        self.cell.as_ref().map(|c| c.shared())
    }

    /// The task's loop, while the task runs.
    fn live_loop(&self) -> Option<Rc<Inner>> {
        if self.done() {
            None
        } else {
            self.lp.upgrade()
        }
    }

    /// Whether the task has finished (with a value, an error or a
    /// cancellation).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async {});
    /// assert!(!t.done());
    /// lp.run_until_complete(aioloop::yield_now()).unwrap();
    /// assert!(t.done());
    /// # lp.close().unwrap();
    /// ```
    pub fn done(&self) -> bool {
        self.shared()
            .is_none_or(|s| s.state.get() != State::Running)
    }

    /// Drops the handle on purpose: the task keeps running.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.create_task(async {}).detach();
    /// # lp.close().unwrap();
    /// ```
    pub fn detach(self) {}

    /// The loop the task runs on; `None` once the task has finished and its
    /// loop is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async {});
    /// assert_eq!(t.get_loop(), Some(lp.clone()));
    /// # lp.close().unwrap();
    /// ```
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.lp.upgrade().map(|inner| EventLoop { inner })
    }
}

impl<T> Task<T> {
    /// Takes the result if the task is done, without a loop (`Task.result()`).
    /// Returns `None` while the task runs, or after the result was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let mut t = lp.create_task(async { 5 });
    /// assert!(t.try_result().is_none());
    /// lp.run_until_complete(aioloop::yield_now()).unwrap();
    /// assert_eq!(t.try_result().unwrap().unwrap(), 5);
    /// # lp.close().unwrap();
    /// ```
    pub fn try_result(&mut self) -> Option<Result<T, Error>> {
        if self.cell.is_none() || !self.done() {
            return None;
        }
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match Pin::new(self).poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }
}

fn closed_before_done() -> Error {
    Error::new(
        ErrorKind::Closed,
        "the task's event loop was closed before the task finished",
    )
}

impl<T> Future for Task<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        let Some(shared) = self.shared() else {
            return Poll::Ready(Err(Error::new(
                ErrorKind::InvalidInput,
                "the task's result was already taken: a Task resolves once",
            )));
        };
        if let Some(r) = shared.out.take() {
            self.cell = None;
            return Poll::Ready(r.map_err(Failure::into_error));
        }
        if shared.state.get() == State::Running {
            // It wakes the latest awaiter when it ends.
            let w = match shared.awaiter.take() {
                Some(w) if w.will_wake(cx.waker()) => w,
                _ => cx.waker().clone(),
            };
            shared.awaiter.set(Some(w));
            return Poll::Pending;
        }
        // Dropped unfinished: its loop was dropped without being closed.
        self.cell = None;
        Poll::Ready(Err(Error::new(
            ErrorKind::Closed,
            "the task's event loop was dropped before the task finished",
        )))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // Detach, not cancel: the task keeps running, and drops its output
        // when it ends (a `Failure` in it reports itself). A result nobody
        // read is dropped with the cell.
        if let Some(shared) = self.shared() {
            if shared.state.get() == State::Running {
                shared.state.set(State::Detached);
            }
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("done", &self.done()).finish()
    }
}
