//! Tasks: [`Task`], cancellation, panics.
//!
//! A task is one `async-task` allocation holding the user's future inside a
//! small wrapper ([`TaskFuture`]) that sets the task context while polling,
//! contains panics, and honours cancellation. Its metadata (inside the
//! allocation's header padding, so free) names the task's slab key and its
//! loop, which keeps the [`Task`] handle one pointer wide. The loop keeps one
//! slab entry per live task (its waker and cancel flag) so that `cancel()`
//! and `cancel_all_tasks()` can reach a task that is waiting on something
//! else.
//!
//! Every task ends with an output, even when its loop closes (it then
//! completes with `Closed` without being polled again), so a handle never
//! waits forever. A failure travels in a [`Failure`] that reports itself to
//! the loop's exception handler if it is dropped unread.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWakerVTable, Waker};

use crate::event_loop::{ExceptionContext, Inner, Ready};
use crate::time::SleepTarget;
use crate::{Error, ErrorKind, EventLoop, TaskContextId};

/// A task's slab key (two halves) and its loop's registry index. Six bytes
/// of align 2 fit in async-task's header padding.
pub(crate) type TaskMeta = [u16; 3];
pub(crate) type Runnable = async_task::Runnable<TaskMeta>;

fn meta(key: usize, lp: &Inner) -> TaskMeta {
    let key = u32::try_from(key).unwrap_or(u32::MAX);
    [key as u16, (key >> 16) as u16, lp.registry_index()]
}

fn meta_key(m: &TaskMeta) -> usize {
    (usize::from(m[1]) << 16) | usize::from(m[0])
}

/// What async-task stores as a task's output.
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

/// What the loop knows about one live task.
pub(crate) struct TaskEntry {
    /// The task's own waker, from its first `Pending` on (see `WAKER_KEPT`):
    /// before that the task is on the ready queue and needs no waking.
    pub(crate) waker: Option<Waker>,
    /// The sequence number of the task's own sleep, 0 for none (see the
    /// timer store in `time.rs`). Fits in the padding: the entry stays 24 bytes.
    pub(crate) sleep_seq: u32,
    pub(crate) cancel_requested: bool,
    /// wasm32: whoever awaits the task's handle, so that a trap cutting a
    /// step short can wake it (async-task never will: see
    /// [`abandon_trapped_step`]).
    #[cfg(target_arch = "wasm32")]
    joiner: Option<Waker>,
    /// wasm32: the panic a trap ended the task with, until its handle
    /// takes it.
    #[cfg(target_arch = "wasm32")]
    trapped: Option<Error>,
}

impl TaskEntry {
    pub(crate) fn new() -> TaskEntry {
        TaskEntry {
            waker: None,
            sleep_seq: 0,
            cancel_requested: false,
            #[cfg(target_arch = "wasm32")]
            joiner: None,
            #[cfg(target_arch = "wasm32")]
            trapped: None,
        }
    }
}

/// After a trap in a turn of `lp` (wasm32): a task whose step the trap cut
/// short ends with `err`. Its async-task runnable died with the step, so the
/// task is marked in its entry and whoever awaits its handle is woken; the
/// handle then resolves to `err` (see `Task::poll`). Its future is leaked,
/// never dropped: after a trap it may be half-way through a change.
#[cfg(target_arch = "wasm32")]
pub(crate) fn abandon_trapped_step(lp: &Inner, mut err: Error) {
    let Some(key) = lp.host.stepping.take() else {
        return;
    };
    // The recovery reports the trap to the exception handler itself.
    err.mark_reported();
    let joiner = lp.tasks.try_borrow_mut().ok().and_then(|mut tasks| {
        let e = tasks.get_mut(key as usize)?;
        e.trapped = Some(err);
        e.joiner.take()
    });
    if let Some(w) = joiner {
        w.wake();
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
    // Waking schedules the task on the ready queue; it does not touch the
    // task table, so the borrow may stay open (and no waker is cloned).
    let tasks = lp.tasks.borrow();
    if let Some(w) = tasks.get(key as usize).and_then(|e| e.waker.as_ref()) {
        w.wake_by_ref();
    }
}

/// Tags a [`TaskFuture::key`] whose context is stored on the side.
const OWN_CONTEXT: u32 = 1 << 31;
/// Tags a [`TaskFuture::key`] whose creation site is in
/// `Inner::debug_locations` (created in debug mode).
const HAS_LOCATION: u32 = 1 << 30;
/// Tags a [`TaskFuture::key`] whose task entry holds the task's waker. The
/// waker is stored at the task's first `Pending`, not at spawn: a task that
/// finishes in its first step (most short ones) never clones or drops it.
/// Until then the task is on the ready queue, so nobody needs to wake it.
const WAKER_KEPT: u32 = 1 << 29;
const TAGS: u32 = OWN_CONTEXT | HAS_LOCATION | WAKER_KEPT;

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
    /// The user's future while it runs. The slab key lives in the variant so
    /// that it shares a word with the enum's tag.
    #[project = StageProj]
    enum Stage<F> {
        Running {
            #[pin]
            fut: F,
            // The slab key, plus OWN_CONTEXT when the task's context is not
            // the loop's default one (then it is in `Inner::task_contexts`).
            key: u32,
        },
        Done,
    }
}

pin_project_lite::pin_project! {
    /// The future async-task runs: the user's future plus bookkeeping. For a
    /// small future this is 16 bytes, which keeps a pending task in glibc's
    /// 80-byte size class.
    struct TaskFuture<F> {
        #[pin]
        stage: Stage<F>,
        lp: Rc<Inner>,
    }

    impl<F> PinnedDrop for TaskFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let StageProj::Running { key, .. } = this.stage.project() {
                // Dropped before finishing (the loop closed): forget the entry.
                let tagged = *key;
                let key = slab_key(tagged);
                let entry = this
                    .lp
                    .tasks
                    .try_borrow_mut()
                    .ok()
                    .and_then(|mut t| t.try_remove(key));
                if entry.as_ref().is_some_and(|e| e.cancel_requested) {
                    this.lp.cancels.set(this.lp.cancels.get().saturating_sub(1));
                }
                forget_context(this.lp, tagged);
                let location = take_location(this.lp, tagged);
                if let (Some(_), true) = (entry, this.lp.debug.get()) {
                    let lp = EventLoop { inner: this.lp.clone() };
                    let mut ctx = ExceptionContext::new("Task was destroyed but it is pending");
                    ctx.location = location;
                    lp.call_exception_handler(&ctx);
                }
            }
        }
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = Output<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let StageProj::Running { fut, key: tagged } = this.stage.as_mut().project() else {
            // Unreachable: a finished task is never polled again by async-task.
            return Poll::Ready(Err(Failure {
                err: Some(Error::new(
                    ErrorKind::Closed,
                    "task polled after completion",
                )),
                lp: this.lp.clone(),
            }));
        };
        let tagged = *tagged;
        let key = slab_key(tagged);
        let ctx = if tagged & OWN_CONTEXT == 0 {
            this.lp.default_ctx.get()
        } else {
            this.lp.task_contexts.borrow()[&key]
        };
        if this.lp.is_closed() {
            // Run once more by `close()` only to end with an output.
            return Poll::Ready(finish(
                this.stage,
                this.lp,
                tagged,
                Err(closed_before_done()),
            ));
        }
        let _ctx = crate::context::enter_task_context(ctx);
        // The task's entry is read only while some cancellation is pending
        // anywhere in the loop: the common step touches no slab memory.
        let cancelled =
            |lp: &Inner| lp.cancels.get() > 0 && lp.tasks.borrow()[key].cancel_requested;
        if cancelled(this.lp) {
            return Poll::Ready(finish(this.stage, this.lp, tagged, Err(Error::cancelled())));
        }
        this.lp.current_task.set(CurrentTask {
            key: key as u32,
            data: cx.waker().data(),
            vtable: cx.waker().vtable(),
        });
        // A trap (wasm32: a panic aborts the step) ends the task from here.
        #[cfg(target_arch = "wasm32")]
        this.lp.host.stepping.set(Some(key as u32));
        let polled = catch_unwind(AssertUnwindSafe(|| fut.poll(cx)));
        #[cfg(target_arch = "wasm32")]
        this.lp.host.stepping.set(None);
        match polled {
            Ok(Poll::Ready(v)) => {
                // A cancel requested while this step ran wins, as in asyncio.
                let result = if cancelled(this.lp) {
                    Err(Error::cancelled())
                } else {
                    Ok(v)
                };
                Poll::Ready(finish(this.stage, this.lp, tagged, result))
            }
            Ok(Poll::Pending) => {
                if cancelled(this.lp) {
                    // Cancelled while it ran (for example by itself).
                    return Poll::Ready(finish(
                        this.stage,
                        this.lp,
                        tagged,
                        Err(Error::cancelled()),
                    ));
                }
                if tagged & WAKER_KEPT == 0 {
                    // The first wait: from now on cancel() and due sleeps
                    // wake the task through its entry. The task's own waker
                    // never changes, so this happens once.
                    if let Some(entry) = this.lp.tasks.borrow_mut().get_mut(key) {
                        entry.waker = Some(cx.waker().clone());
                    }
                    if let StageProj::Running { key, .. } = this.stage.project() {
                        *key |= WAKER_KEPT;
                    }
                }
                Poll::Pending
            }
            Err(payload) => {
                let err = Error::from_panic("a task", &*payload);
                drop(payload);
                Poll::Ready(finish(this.stage, this.lp, tagged, Err(err)))
            }
        }
    }
}

/// Drops the user's future (containing a panic in its destructor), removes the
/// task's entry and reports an error nobody will read.
fn finish<F: Future>(
    mut stage: Pin<&mut Stage<F>>,
    lp: &Rc<Inner>,
    tagged_key: u32,
    mut result: Result<F::Output, Error>,
) -> Output<F::Output> {
    let key = slab_key(tagged_key);
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| stage.set(Stage::Done))) {
        let err = Error::from_panic("dropping a task's future", &*p);
        result = Err(err);
    }
    let entry = lp.tasks.borrow_mut().try_remove(key);
    if entry.as_ref().is_some_and(|e| e.cancel_requested) {
        lp.cancels.set(lp.cancels.get().saturating_sub(1));
    }
    forget_context(lp, tagged_key);
    let location = take_location(lp, tagged_key);
    drop(entry);
    result.map_err(|mut err| {
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
    })
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
    let key = inner.tasks.borrow_mut().insert(TaskEntry::new());
    // 2^29 live tasks would need tens of gigabytes first.
    let mut tagged_key = u32::try_from(key).unwrap_or(WAKER_KEPT - 1) & !TAGS;
    if inner.debug.get() {
        inner.debug_locations.borrow_mut().insert(key, location);
        tagged_key |= HAS_LOCATION;
    }
    if ctx != inner.default_ctx.get() {
        inner.task_contexts.borrow_mut().insert(key, ctx);
        tagged_key |= OWN_CONTEXT;
    }
    let wrapper = TaskFuture {
        stage: Stage::Running {
            fut,
            key: tagged_key,
        },
        lp: inner.clone(),
    };
    let remote = inner.remote.clone();
    let (runnable, task) = async_task::Builder::new()
        .metadata(meta(key, inner))
        .spawn_local(
            move |_| wrapper,
            move |r| crate::event_loop::schedule_task(&remote, r),
        );
    // The entry gets the task's waker at its first wait (see WAKER_KEPT).
    if inner.is_closed() {
        // Never polls the future: ends at once with `Closed`.
        runnable.run();
    } else {
        inner.ready.borrow_mut().push_back(Ready::Task(runnable));
        // Inside a turn (tasks spawning tasks) the turn's end schedules the
        // next one: no host call per spawn.
        #[cfg(target_arch = "wasm32")]
        if !inner.is_running() {
            inner.wake_host();
        }
    }
    Task {
        raw: Some(task),
        _not_send: PhantomData,
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
    // One pointer: handles are often kept in arrays inside other futures.
    raw: Option<async_task::Task<Output<T>, TaskMeta>>,
    _not_send: PhantomData<*const ()>,
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
        let Some(raw) = &self.raw else { return false };
        if raw.is_finished() {
            return false;
        }
        // An unfinished task keeps its loop alive, so the registry has it.
        let Some(lp) = crate::event_loop::loop_by_index(raw.metadata()[2]) else {
            return false;
        };
        let inner = &lp.inner;
        let waker = {
            let mut tasks = inner.tasks.borrow_mut();
            match tasks.get_mut(meta_key(raw.metadata())) {
                Some(entry) => {
                    if !entry.cancel_requested {
                        entry.cancel_requested = true;
                        inner.cancels.set(inner.cancels.get() + 1);
                    }
                    entry.waker.clone()
                }
                None => return false,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
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
        let finished = self.raw.as_ref().is_none_or(|r| r.is_finished());
        #[cfg(target_arch = "wasm32")]
        let finished = finished || self.is_trapped();
        finished
    }

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
        if !self.raw.as_ref()?.is_finished() {
            return None;
        }
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match Pin::new(self).poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
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
        let raw = self.raw.as_ref()?;
        crate::event_loop::loop_by_index(raw.metadata()[2])
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
        let Some(raw) = self.raw.as_mut() else {
            return Poll::Ready(Err(Error::new(
                ErrorKind::InvalidInput,
                "the task's result was already taken: a Task resolves once",
            )));
        };
        match Pin::new(raw).poll(cx) {
            Poll::Ready(r) => {
                // The output is taken: detaching frees the task without the
                // cancel step a plain drop makes.
                if let Some(raw) = self.raw.take() {
                    raw.detach();
                }
                Poll::Ready(r.map_err(Failure::into_error))
            }
            #[cfg(target_arch = "wasm32")]
            Poll::Pending => match self.trapped(Some(cx.waker())) {
                Some(err) => {
                    // The runnable died with the trapped step: the task's
                    // allocation (and future) is leaked, never freed.
                    if let Some(raw) = self.raw.take() {
                        raw.detach();
                    }
                    Poll::Ready(Err(err))
                }
                None => Poll::Pending,
            },
            #[cfg(not(target_arch = "wasm32"))]
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl<T> Task<T> {
    /// wasm32: whether a trap ended the unfinished task.
    fn is_trapped(&self) -> bool {
        let Some(raw) = self.raw.as_ref() else {
            return false;
        };
        let Some(lp) = crate::event_loop::loop_by_index(raw.metadata()[2]) else {
            return false;
        };
        let tasks = lp.inner.tasks.try_borrow();
        tasks.is_ok_and(|t| {
            t.get(meta_key(raw.metadata()))
                .is_some_and(|e| e.trapped.is_some())
        })
    }

    /// wasm32: the panic a trap ended the unfinished task with, taken out of
    /// its entry (which then goes); else `None`, after noting `joiner` as
    /// the waker to wake if a trap ends it later.
    fn trapped(&self, joiner: Option<&Waker>) -> Option<Error> {
        let raw = self.raw.as_ref()?;
        let lp = crate::event_loop::loop_by_index(raw.metadata()[2])?;
        let key = meta_key(raw.metadata());
        let inner = &lp.inner;
        let mut tasks = inner.tasks.try_borrow_mut().ok()?;
        let e = tasks.get_mut(key)?;
        if e.trapped.is_none() {
            if let Some(w) = joiner {
                if !e.joiner.as_ref().is_some_and(|j| j.will_wake(w)) {
                    e.joiner = Some(w.clone());
                }
            }
            return None;
        }
        joiner?;
        let entry = tasks.remove(key);
        drop(tasks);
        if entry.cancel_requested {
            inner.cancels.set(inner.cancels.get().saturating_sub(1));
        }
        if let Ok(mut c) = inner.task_contexts.try_borrow_mut() {
            c.remove(&key);
        }
        if let Ok(mut d) = inner.debug_locations.try_borrow_mut() {
            d.remove(&key);
        }
        entry.trapped
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // Detach, not cancel: the task keeps running. A result nobody read is
        // dropped by async-task, and a `Failure` in it reports itself.
        if let Some(raw) = self.raw.take() {
            raw.detach();
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("done", &self.done()).finish()
    }
}
