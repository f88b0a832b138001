//! The event loop: [`EventLoop`], its builder and the scheduling API.
//!
//! The loop owns a ready queue, a timer store, the table of live tasks and
//! one backend driver. [`run.rs`](self) holds one iteration (asyncio's
//! `_run_once`); this file holds the public API.

pub(crate) mod exception;
pub(crate) mod handle;
#[cfg(unix)]
mod io;
mod run;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod source;
pub(crate) mod threadsafe;
#[cfg(target_arch = "wasm32")]
pub(crate) mod wasm;

pub(crate) use run::{running_loop, schedule_task};

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use slab::Slab;

#[cfg(not(target_arch = "wasm32"))]
use crate::backend::Event;
use crate::backend::{Backend, Driver};
#[cfg(not(target_arch = "wasm32"))]
use crate::executor::{Executor, ExecutorFuture};
use crate::task::{Runnable, Task, TaskEntry};
use crate::time::{self, Instant, Sleep, TimerHeap};
use crate::{Error, ErrorKind, TaskContextId};

pub use exception::{ExceptionContext, ExceptionHandler};
pub use handle::{Handle, TimerHandle};
pub use threadsafe::ThreadsafeHandle;

use handle::{Callback, Once};
use threadsafe::Remote;

/// One entry of the ready queue.
pub(crate) enum Ready {
    Callback(Rc<dyn Callback>),
    Task(Runnable),
    /// A due sleep of the task with this key: wake it.
    WakeTask(u32),
    /// A due sleep polled through a foreign waker.
    Wake(std::task::Waker),
    /// The future driven by `run_until_complete`.
    Main,
}

/// The state of one loop, shared by every [`EventLoop`] clone.
pub(crate) struct Inner {
    pub(crate) ready: RefCell<VecDeque<Ready>>,
    pub(crate) timers: RefCell<TimerHeap>,
    pub(crate) tasks: RefCell<Slab<TaskEntry>>,
    /// The task context of tasks that do not store one (most of them).
    pub(crate) default_ctx: Cell<TaskContextId>,
    /// The contexts of the other tasks, by slab key.
    pub(crate) task_contexts: RefCell<HashMap<usize, TaskContextId>>,
    /// See [`loop_by_index`].
    registry_index: Cell<u16>,
    /// How many live tasks have a cancellation requested.
    pub(crate) cancels: Cell<usize>,
    /// The task being polled (see `task::sleep_target`).
    pub(crate) current_task: Cell<crate::task::CurrentTask>,
    /// Where each task was created, recorded only in debug mode.
    pub(crate) debug_locations: RefCell<HashMap<usize, &'static Location<'static>>>,
    pub(crate) remote: Arc<Remote>,
    driver: RefCell<Driver>,
    #[cfg(not(target_arch = "wasm32"))]
    events: RefCell<Vec<Event>>,
    backend: Backend,
    running: Cell<bool>,
    /// Callbacks run since the backend was last polled.
    #[cfg(not(target_arch = "wasm32"))]
    run_since_poll: Cell<u32>,
    stopping: Cell<bool>,
    closed: Cell<bool>,
    pub(crate) debug: Cell<bool>,
    /// Set while `run` / `Runner` cancel the leftovers: task failures are
    /// reported even when a handle is still held (asyncio does the same).
    pub(crate) shutting_down: Cell<bool>,
    slow_callback: Cell<Duration>,
    handler: RefCell<Option<ExceptionHandler>>,
    #[cfg(not(target_arch = "wasm32"))]
    executor: RefCell<Option<Executor>>,
    /// `shutdown_default_executor` was called: no new pool is started.
    #[cfg(not(target_arch = "wasm32"))]
    executor_shut: Cell<bool>,
    #[cfg(not(target_arch = "wasm32"))]
    executor_threads: usize,
    #[cfg(unix)]
    io: RefCell<io::IoRegistry>,
    /// Readiness of the loop's I/O objects (sockets).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) sources: RefCell<source::Sources>,
    /// Host-driven turns: budget, figures, trap recovery (wasm32).
    #[cfg(target_arch = "wasm32")]
    pub(crate) host: wasm::HostLoop,
}

impl Inner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// This loop's index in the thread's loop registry.
    pub(crate) fn registry_index(&self) -> u16 {
        self.registry_index.get()
    }
}

/// Most loops alive at once on one thread (their registry index is a `u16`).
const MAX_LOOPS_PER_THREAD: usize = u16::MAX as usize;
const UNREGISTERED: u16 = u16::MAX;

thread_local! {
    /// The loops alive on this thread, so that a one-pointer `Task` handle
    /// can find its loop from the index in the task's metadata.
    static LOOPS: RefCell<Slab<Weak<Inner>>> = const { RefCell::new(Slab::new()) };
}

/// The live loop with registry index `index` on this thread.
pub(crate) fn loop_by_index(index: u16) -> Option<EventLoop> {
    LOOPS
        .try_with(|l| l.borrow().get(usize::from(index)).and_then(Weak::upgrade))
        .ok()
        .flatten()
        .map(|inner| EventLoop { inner })
}

impl Drop for Inner {
    fn drop(&mut self) {
        let index = self.registry_index.get();
        if index != UNREGISTERED {
            let _ = LOOPS.try_with(|l| {
                if let Ok(mut l) = l.try_borrow_mut() {
                    l.try_remove(usize::from(index));
                }
            });
        }
    }
}

/// A single-threaded event loop: asyncio's `AbstractEventLoop` in Rust.
///
/// `EventLoop` is a cheap handle (`Clone` is a reference-count increment);
/// clones compare equal (`==`) when they are the same loop. It is `!Send`:
/// use [`threadsafe`](EventLoop::threadsafe) to reach it from other threads.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// lp.call_soon(|| println!("first")).unwrap();
/// lp.call_later(Duration::from_millis(1), || println!("later")).unwrap();
/// let task = lp.create_task(async { 6 * 7 });
/// assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 42);
/// lp.close().unwrap();
/// ```
///
/// `EventLoop` cannot cross threads:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<aioloop::EventLoop>();
/// ```
#[derive(Clone)]
pub struct EventLoop {
    pub(crate) inner: Rc<Inner>,
}

impl PartialEq for EventLoop {
    fn eq(&self, other: &EventLoop) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for EventLoop {}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("backend", &self.inner.backend)
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .field("debug", &self.get_debug())
            .finish()
    }
}

/// Configures and builds an [`EventLoop`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aioloop::{Backend, EventLoop};
///
/// let lp = EventLoop::builder()
///     .backend(Backend::Auto)
///     .debug(true)
///     .slow_callback_duration(Duration::from_millis(50))
///     .executor_threads(4)
///     .build()
///     .unwrap();
/// assert!(lp.get_debug());
/// lp.close().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LoopBuilder {
    backend: Backend,
    debug: bool,
    slow_callback: Duration,
    executor_threads: Option<usize>,
}

impl Default for LoopBuilder {
    fn default() -> LoopBuilder {
        LoopBuilder {
            backend: Backend::Auto,
            debug: false,
            slow_callback: Duration::from_millis(100),
            executor_threads: None,
        }
    }
}

impl LoopBuilder {
    /// Which backend to wait in (default [`Backend::Auto`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = aioloop::EventLoop::builder().backend(aioloop::Backend::Selector);
    /// # drop(b);
    /// ```
    pub fn backend(mut self, backend: Backend) -> LoopBuilder {
        self.backend = backend;
        self
    }

    /// Starts the loop in debug mode (see [`EventLoop::set_debug`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::builder().debug(true).build().unwrap();
    /// assert!(lp.get_debug());
    /// # lp.close().unwrap();
    /// ```
    pub fn debug(mut self, debug: bool) -> LoopBuilder {
        self.debug = debug;
        self
    }

    /// In debug mode, callbacks and task steps slower than this are reported
    /// (default 100 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lp = aioloop::EventLoop::builder().slow_callback_duration(Duration::from_millis(5)).build().unwrap();
    /// assert_eq!(lp.slow_callback_duration(), Duration::from_millis(5));
    /// # lp.close().unwrap();
    /// ```
    pub fn slow_callback_duration(mut self, d: Duration) -> LoopBuilder {
        self.slow_callback = d;
        self
    }

    /// The most threads the default executor starts (default
    /// `min(32, CPUs + 4)`, as Python's `ThreadPoolExecutor`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::builder().executor_threads(2).build().unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn executor_threads(mut self, n: usize) -> LoopBuilder {
        self.executor_threads = Some(n);
        self
    }

    /// Builds the loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for `executor_threads(0)`;
    /// [`ErrorKind::Io`] when the backend cannot start (out of file
    /// descriptors, for example).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = aioloop::EventLoop::builder().executor_threads(0).build().unwrap_err();
    /// assert_eq!(err.kind(), aioloop::ErrorKind::InvalidInput);
    /// ```
    pub fn build(self) -> Result<EventLoop, Error> {
        #[cfg(not(target_arch = "wasm32"))]
        let executor_threads = match self.executor_threads {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "executor_threads must be at least 1",
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_add(4)
                .min(32),
        };
        let backend = self.backend.resolve()?;
        let driver = Driver::new(backend)
            .map_err(|e| Error::io(format_args!("could not start the {backend} backend"), e))?;
        let backend = driver.kind();
        let remote = Arc::new(Remote::new(driver.notifier()));
        let inner = Rc::new(Inner {
            ready: RefCell::new(VecDeque::with_capacity(64)),
            timers: RefCell::new(TimerHeap::default()),
            tasks: RefCell::new(Slab::new()),
            debug_locations: RefCell::new(HashMap::new()),
            current_task: Cell::new(crate::task::CurrentTask::default()),
            cancels: Cell::new(0),
            registry_index: Cell::new(UNREGISTERED),
            default_ctx: Cell::new(crate::context::current_task_context()),
            task_contexts: RefCell::new(HashMap::new()),
            remote,
            driver: RefCell::new(driver),
            #[cfg(not(target_arch = "wasm32"))]
            events: RefCell::new(Vec::with_capacity(64)),
            backend,
            running: Cell::new(false),
            #[cfg(not(target_arch = "wasm32"))]
            run_since_poll: Cell::new(0),
            stopping: Cell::new(false),
            closed: Cell::new(false),
            debug: Cell::new(self.debug),
            shutting_down: Cell::new(false),
            slow_callback: Cell::new(self.slow_callback),
            handler: RefCell::new(None),
            #[cfg(not(target_arch = "wasm32"))]
            executor: RefCell::new(None),
            #[cfg(not(target_arch = "wasm32"))]
            executor_shut: Cell::new(false),
            #[cfg(not(target_arch = "wasm32"))]
            executor_threads,
            #[cfg(unix)]
            io: RefCell::new(io::IoRegistry::default()),
            #[cfg(not(target_arch = "wasm32"))]
            sources: RefCell::new(source::Sources::default()),
            #[cfg(target_arch = "wasm32")]
            host: wasm::HostLoop::default(),
        });
        let index = LOOPS.with(|l| {
            let mut l = l.borrow_mut();
            if l.len() >= MAX_LOOPS_PER_THREAD {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{MAX_LOOPS_PER_THREAD} event loops are already alive on this thread: \
                         close and drop loops you no longer use"
                    ),
                ));
            }
            Ok(l.insert(Rc::downgrade(&inner)))
        })?;
        inner
            .registry_index
            .set(u16::try_from(index).unwrap_or(UNREGISTERED));
        let lp = EventLoop { inner };
        #[cfg(target_arch = "wasm32")]
        wasm::attach(&lp);
        Ok(lp)
    }
}

impl EventLoop {
    /// A new loop on the default backend. It is not made current: see
    /// [`set_event_loop`](crate::set_event_loop).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the backend cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.is_running());
    /// lp.close().unwrap();
    /// ```
    pub fn new() -> Result<EventLoop, Error> {
        LoopBuilder::default().build()
    }

    /// A builder to choose the backend, debug mode and executor size.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::builder().build().unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn builder() -> LoopBuilder {
        LoopBuilder::default()
    }

    /// The backend this loop waits in.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert_ne!(lp.backend(), aioloop::Backend::Auto);
    /// # lp.close().unwrap();
    /// ```
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    fn check_open(&self) -> Result<(), Error> {
        #[cfg(target_arch = "wasm32")]
        if let Some(e) = self.inner.host.dead_error() {
            return Err(e);
        }
        if self.inner.closed.get() {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// Schedules `f` to run in the next iteration (FIFO with other
    /// `call_soon` callbacks).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let order = Rc::new(RefCell::new(Vec::new()));
    /// for i in 0..3 {
    ///     let order = order.clone();
    ///     lp.call_soon(move || order.borrow_mut().push(i)).unwrap();
    /// }
    /// lp.run_until_complete(aioloop::yield_now()).unwrap();
    /// assert_eq!(*order.borrow(), [0, 1, 2]);
    /// # lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn call_soon(&self, f: impl FnOnce() + 'static) -> Result<Handle, Error> {
        self.check_open()?;
        let cb = Once::boxed(
            f,
            crate::context::entered_task_context(),
            Location::caller(),
        );
        self.inner
            .ready
            .borrow_mut()
            .push_back(Ready::Callback(cb.clone()));
        #[cfg(target_arch = "wasm32")]
        self.inner.wake_host();
        Ok(Handle { cb })
    }

    /// Schedules `f` to run once `delay` has passed (never earlier).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let stopper = lp.clone();
    /// lp.call_later(Duration::from_millis(2), move || stopper.stop()).unwrap();
    /// lp.run_forever().unwrap();
    /// # lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn call_later(
        &self,
        delay: Duration,
        f: impl FnOnce() + 'static,
    ) -> Result<TimerHandle, Error> {
        let when = time::deadline_after(delay);
        self.call_at(when, f)
    }

    /// Schedules `f` to run at `when` on the loop's clock (never earlier).
    /// Callbacks due at the same instant run in the order they were scheduled.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let at = lp.time() + Duration::from_millis(1);
    /// let t = lp.call_at(at, || {}).unwrap();
    /// assert_eq!(t.when(), at);
    /// # lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> Result<TimerHandle, Error> {
        self.check_open()?;
        let cb = Once::boxed(
            f,
            crate::context::entered_task_context(),
            Location::caller(),
        );
        let (key, seq) = self
            .inner
            .timers
            .borrow_mut()
            .push_callback(when, cb.clone());
        #[cfg(target_arch = "wasm32")]
        self.inner.wake_host();
        Ok(TimerHandle {
            cb,
            when,
            lp: Rc::downgrade(&self.inner),
            key,
            seq,
        })
    }

    /// The loop's clock: a monotonic [`Instant`].
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let a = lp.time();
    /// assert!(lp.time() >= a);
    /// # lp.close().unwrap();
    /// ```
    pub fn time(&self) -> Instant {
        Instant::now()
    }

    /// A future that sleeps for `delay` on this loop.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.run_until_complete(lp.sleep(Duration::from_millis(1))).unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn sleep(&self, delay: Duration) -> Sleep {
        time::sleep_on(Some(self.clone()), time::deadline_after(delay))
    }

    /// Wraps `fut` in a task scheduled on this loop (`asyncio.create_task`).
    ///
    /// The task starts in the next iteration and runs whether or not the
    /// returned [`Task`] is awaited; dropping the `Task` detaches it. The task
    /// inherits the current [`TaskContextId`].
    ///
    /// On a closed loop the task never runs and resolves to an
    /// [`ErrorKind::Closed`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async { "done" });
    /// assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), "done");
    /// # lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn create_task<F: Future + 'static>(&self, fut: F) -> Task<F::Output> {
        crate::task::spawn(
            self,
            fut,
            crate::context::current_task_context(),
            Location::caller(),
        )
    }

    /// Like [`create_task`](EventLoop::create_task), in the task context `ctx`
    /// (asyncio's `create_task(..., context=ctx)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::TaskContextId;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let ctx = TaskContextId::new();
    /// let t = lp.create_task_in_context(ctx, async { TaskContextId::current() });
    /// assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), ctx);
    /// # lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn create_task_in_context<F: Future + 'static>(
        &self,
        ctx: TaskContextId,
        fut: F,
    ) -> Task<F::Output> {
        crate::task::spawn(self, fut, ctx, Location::caller())
    }

    /// Makes `ctx` the context most tasks are expected in (an optimisation:
    /// tasks in the default context store none). Only while no task lives.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn prefer_context(&self, ctx: TaskContextId) {
        if self.inner.tasks.borrow().is_empty() {
            self.inner.default_ctx.set(ctx);
        }
    }

    /// How many tasks of this loop have not finished yet.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async {});
    /// assert_eq!(lp.pending_tasks(), 1);
    /// lp.run_until_complete(t).unwrap().unwrap();
    /// assert_eq!(lp.pending_tasks(), 0);
    /// # lp.close().unwrap();
    /// ```
    pub fn pending_tasks(&self) -> usize {
        self.inner.tasks.borrow().len()
    }

    /// Asks every unfinished task to cancel (they end with
    /// [`ErrorKind::Cancelled`] at their next step). Returns how many were
    /// asked. [`run`](crate::run) and [`Runner`](crate::Runner) do this at
    /// shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(std::future::pending::<()>());
    /// assert_eq!(lp.cancel_all_tasks(), 1);
    /// assert!(lp.run_until_complete(t).unwrap().unwrap_err().is_cancelled());
    /// # lp.close().unwrap();
    /// ```
    // `run` and `Runner` do not exist on wasm32.
    #[cfg_attr(target_arch = "wasm32", allow(rustdoc::broken_intra_doc_links))]
    pub fn cancel_all_tasks(&self) -> usize {
        let wakers: Vec<_> = {
            let mut tasks = self.inner.tasks.borrow_mut();
            tasks
                .iter_mut()
                .filter(|(_, e)| !e.cancel_requested)
                .map(|(_, e)| {
                    e.cancel_requested = true;
                    e.waker.clone()
                })
                .collect()
        };
        let n = wakers.len();
        self.inner.cancels.set(self.inner.cancels.get() + n);
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
        n
    }

    /// Runs `fut` on `f`'s own thread pool (`run_in_executor(None, f)`) and
    /// returns a future of its result, to await on this loop.
    ///
    /// The pool is started lazily on first use, holds at most
    /// [`executor_threads`](LoopBuilder::executor_threads) threads, and shuts
    /// down with the loop (see
    /// [`shutdown_default_executor`](EventLoop::shutdown_default_executor)).
    ///
    /// The future resolves to [`ErrorKind::Panicked`] if `f` panics and
    /// [`ErrorKind::Closed`] if the loop closed before `f` could start.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let fut = lp.run_in_executor(|| (1..=10).sum::<u32>());
    /// assert_eq!(lp.run_until_complete(fut).unwrap().unwrap(), 55);
    /// # lp.close().unwrap();
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_in_executor<F, R>(&self, f: F) -> ExecutorFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.is_closed() {
            return ExecutorFuture::failed(Error::closed());
        }
        if self.inner.executor_shut.get() {
            return ExecutorFuture::failed(Error::new(
                ErrorKind::Closed,
                "run_in_executor after shutdown_default_executor(): the default executor is shut down",
            ));
        }
        let mut slot = self.inner.executor.borrow_mut();
        let exec = slot.get_or_insert_with(|| Executor::new(self.inner.executor_threads));
        exec.submit(f)
    }

    /// Stops the default executor from taking new work and returns a future
    /// that resolves once its threads have finished the work already queued
    /// (`loop.shutdown_default_executor()`). Later `run_in_executor` calls
    /// resolve to [`ErrorKind::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let job = lp.run_in_executor(|| 1);
    /// lp.run_until_complete(lp.shutdown_default_executor()).unwrap();
    /// assert_eq!(lp.run_until_complete(job).unwrap().unwrap(), 1);
    /// # lp.close().unwrap();
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn shutdown_default_executor(&self) -> ExecutorFuture<()> {
        self.inner.executor_shut.set(true);
        match self.inner.executor.borrow_mut().take() {
            Some(exec) => exec.shutdown_and_join(),
            None => ExecutorFuture::ready(()),
        }
    }

    /// Installs the handler that receives panics from callbacks and tasks and
    /// other errors nobody else can receive (`set_exception_handler`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let seen = Rc::new(Cell::new(false));
    /// let s = seen.clone();
    /// lp.set_exception_handler(move |_lp, ctx| {
    ///     assert!(ctx.error.as_ref().unwrap().is_panic());
    ///     s.set(true);
    /// });
    /// lp.call_soon(|| panic!("boom")).unwrap();
    /// lp.run_until_complete(aioloop::yield_now()).unwrap();
    /// assert!(seen.get());
    /// # lp.close().unwrap();
    /// ```
    pub fn set_exception_handler(&self, handler: impl Fn(&EventLoop, &ExceptionContext) + 'static) {
        *self.inner.handler.borrow_mut() = Some(Rc::new(handler));
    }

    /// Restores the default exception handler (asyncio's
    /// `set_exception_handler(None)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.set_exception_handler(|_, _| {});
    /// lp.clear_exception_handler();
    /// assert!(lp.get_exception_handler().is_none());
    /// # lp.close().unwrap();
    /// ```
    pub fn clear_exception_handler(&self) {
        *self.inner.handler.borrow_mut() = None;
    }

    /// The installed exception handler, `None` for the default.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(lp.get_exception_handler().is_none());
    /// # lp.close().unwrap();
    /// ```
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.inner.handler.borrow().clone()
    }

    /// Reports `context` to the installed handler, or the default one.
    /// A handler that panics is reported through the default handler.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.call_exception_handler(&aioloop::ExceptionContext::new("something odd happened"));
    /// # lp.close().unwrap();
    /// ```
    pub fn call_exception_handler(&self, context: &ExceptionContext) {
        let handler = self.inner.handler.borrow().clone();
        match handler {
            None => self.default_exception_handler(context),
            Some(h) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(self, context)));
                if let Err(p) = r {
                    self.default_exception_handler(
                        &ExceptionContext::new("Unhandled error in exception handler")
                            .with_error(Error::from_panic("the exception handler", &*p)),
                    );
                    self.default_exception_handler(context);
                }
            }
        }
    }

    /// The default handler: logs `context` at error level through the `log`
    /// crate.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.default_exception_handler(&aioloop::ExceptionContext::new("logged"));
    /// # lp.close().unwrap();
    /// ```
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        log::error!(target: "aioloop", "{context}");
        // wasm32 has no stderr: the host's console shows it.
        #[cfg(target_arch = "wasm32")]
        crate::backend::wasm::console_error(&format!("aioloop: {context}"));
    }

    /// Turns debug mode on or off. In debug mode the loop logs (warning
    /// level) every callback or task step that takes longer than
    /// [`slow_callback_duration`](EventLoop::slow_callback_duration), and the
    /// report of a task dropped with an unobserved error names where the task
    /// was created.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.set_debug(true);
    /// assert!(lp.get_debug());
    /// # lp.close().unwrap();
    /// ```
    pub fn set_debug(&self, enabled: bool) {
        self.inner.debug.set(enabled);
    }

    /// Whether debug mode is on.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.get_debug());
    /// # lp.close().unwrap();
    /// ```
    pub fn get_debug(&self) -> bool {
        self.inner.debug.get()
    }

    /// The threshold for slow-callback reports in debug mode (default 100 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert_eq!(lp.slow_callback_duration(), std::time::Duration::from_millis(100));
    /// # lp.close().unwrap();
    /// ```
    pub fn slow_callback_duration(&self) -> Duration {
        self.inner.slow_callback.get()
    }

    /// Sets the threshold for slow-callback reports.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.set_slow_callback_duration(Duration::from_millis(10));
    /// assert_eq!(lp.slow_callback_duration(), Duration::from_millis(10));
    /// # lp.close().unwrap();
    /// ```
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.inner.slow_callback.set(d);
    }

    /// A `Send + Sync` handle for other threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let ts = lp.threadsafe();
    /// std::thread::spawn(move || ts.stop()).join().unwrap();
    /// lp.run_forever().unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn threadsafe(&self) -> ThreadsafeHandle {
        ThreadsafeHandle {
            remote: self.inner.remote.clone(),
        }
    }

    /// Whether the loop is running (`run_forever` / `run_until_complete`;
    /// on wasm32, while one of its host-driven turns runs).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// assert!(!lp.is_running());
    /// let l2 = lp.clone();
    /// assert!(lp.run_until_complete(async move { l2.is_running() }).unwrap());
    /// # lp.close().unwrap();
    /// ```
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// Whether [`close`](EventLoop::close) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.close().unwrap();
    /// assert!(lp.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Asks the loop to stop: the current iteration finishes (every callback
    /// already queued for it runs), then `run_forever` returns. Called before
    /// the loop runs, the next `run_forever` runs one iteration and returns,
    /// as in asyncio.
    ///
    /// On wasm32, where the host drives the loop, `stop()` pauses that
    /// driving once the current turn ends (queued work stays queued);
    /// `start()` resumes it and `run_once()` still pumps the loop.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l2 = lp.clone();
    /// lp.call_soon(move || l2.stop()).unwrap();
    /// lp.run_forever().unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn stop(&self) {
        self.inner.stopping.set(true);
    }

    /// Closes the loop: drops every pending callback, timer and task (a task
    /// dropped this way resolves to [`ErrorKind::Closed`]), deregisters
    /// readiness callbacks and shuts the default executor down without
    /// waiting. Idempotent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyRunning`] while the loop runs: call
    /// [`stop`](EventLoop::stop) and close it after `run_forever` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// lp.close().unwrap();
    /// lp.close().unwrap(); // idempotent
    /// assert_eq!(lp.call_soon(|| {}).unwrap_err().kind(), aioloop::ErrorKind::Closed);
    /// ```
    pub fn close(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.running.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "Cannot close a running event loop: call stop() and close the loop after run_forever() returns",
            ));
        }
        #[cfg(target_arch = "wasm32")]
        if inner.host.is_dead() {
            // Its cells may be stuck borrowed: touch nothing but the host.
            inner.closed.set(true);
            inner.host_closed();
            return Ok(());
        }
        if inner.closed.replace(true) {
            return Ok(());
        }
        #[cfg(target_arch = "wasm32")]
        inner.host_closed();
        // Take everything out under short borrows, then drop it: dropping a
        // future runs user code, which may touch the loop again.
        let remote_items = inner.remote.close();
        let ready = std::mem::take(&mut *inner.ready.borrow_mut());
        let timers = inner.timers.borrow_mut().take_all();
        // Queued tasks run one last step, which ends them with `Closed`
        // without polling their futures again (so every handle resolves).
        for item in ready
            .into_iter()
            .chain(remote_items.into_iter().filter_map(|i| match i {
                threadsafe::RemoteItem::Task(r) => Some(Ready::Task(r)),
                _ => None,
            }))
        {
            if let Ready::Task(r) = item {
                r.run();
            }
        }
        drop(timers);
        // Tasks parked on something else: waking them now hands their
        // runnables to the closed remote queue, which runs that last step on
        // this thread, so each task ends (its handle resolves to `Closed`) and
        // its future is dropped.
        let wakers: Vec<_> = inner
            .tasks
            .borrow_mut()
            .iter_mut()
            .filter_map(|(_, e)| e.waker.take())
            .collect();
        for w in wakers {
            w.wake();
        }
        #[cfg(unix)]
        self.close_io();
        // Tasks waiting on sockets: their next operation reports `Closed`.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let waiters = inner.sources.borrow_mut().close();
            for w in waiters {
                w.wake();
            }
            // A completion backend cancels what is still in flight and reaps
            // it all before close returns (no buffer or file left to the
            // kernel).
            inner.driver.borrow_mut().close();
            let exec = inner.executor.borrow_mut().take();
            if let Some(exec) = exec {
                exec.shutdown();
            }
        }
        Ok(())
    }
}
