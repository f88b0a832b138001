//! Running a loop: `run_forever`, `run_until_complete` and one iteration
//! (asyncio's `_run_once`).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;
use std::sync::Arc;

use super::handle::Callback;
use super::threadsafe::{Remote, RemoteItem};
use super::{EventLoop, ExceptionContext, Inner, Ready};
use crate::time::Instant;
use crate::{Error, ErrorKind};

// The blocking side (run_forever, run_until_complete, one iteration that
// waits in the backend) does not exist on wasm32, where the host drives the
// loop (event_loop/wasm.rs).
#[cfg(not(target_arch = "wasm32"))]
use {
    super::source::SOURCE_TOKEN,
    crate::time::Fired,
    std::future::Future,
    std::pin::pin,
    std::sync::atomic::{AtomicBool, Ordering},
    std::task::{Context, Poll, Wake, Waker},
    std::time::Duration,
};

/// While callbacks are ready, the backend is polled (without blocking) once
/// this many callbacks have run since the last poll (tokio checks I/O every
/// 61 ticks for the same reason).
#[cfg(not(target_arch = "wasm32"))]
const POLL_INTERVAL: u32 = 61;

/// A ready queue with room for more than this many entries (1.5 MiB), three
/// quarters unused, is shrunk back to this size: big bursts give their memory
/// back, ordinary ones do not pay for regrowing the queue every time.
#[cfg(not(target_arch = "wasm32"))]
const SHRINK_ABOVE: usize = 65_536;

thread_local! {
    /// The loop running on this thread, if any.
    static RUNNING: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
}

/// The loop running on this thread.
pub(crate) fn running_loop() -> Option<EventLoop> {
    RUNNING.try_with(|r| r.borrow().clone()).ok().flatten()
}

/// Queues a task woken by its waker: straight onto the ready queue when its
/// loop is the one running on this thread (no lock, no syscall), else through
/// the loop's remote queue.
pub(crate) fn schedule_task(remote: &Arc<Remote>, runnable: crate::task::Runnable) {
    let runnable = RUNNING
        .try_with(|r| {
            if let Ok(r) = r.try_borrow() {
                if let Some(lp) = r.as_ref() {
                    if Arc::ptr_eq(&lp.inner.remote, remote) {
                        lp.inner.ready.borrow_mut().push_back(Ready::Task(runnable));
                        return None;
                    }
                }
            }
            Some(runnable)
        })
        .unwrap_or(None);
    if let Some(runnable) = runnable {
        remote.push_task(runnable);
    }
}

/// Forgets this thread's running loop if it is `inner` (after a trap, the
/// [`RunningGuard`] of the abandoned turn never ran).
#[cfg(target_arch = "wasm32")]
pub(super) fn forget_running(inner: &Inner) {
    let _ = RUNNING.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if r.as_ref().is_some_and(|lp| std::ptr::eq(&*lp.inner, inner)) {
                *r = None;
            }
        }
    });
}

/// Takes this thread's running loop out of its slot (wasm32: at a top-level
/// host entry, a running loop can only be left over from an uncaught trap).
#[cfg(target_arch = "wasm32")]
pub(super) fn take_running() -> Option<EventLoop> {
    RUNNING
        .try_with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.take()))
        .ok()
        .flatten()
}

/// Marks this thread's running loop; restores the previous state on drop,
/// even if something unwinds through `run`.
pub(super) struct RunningGuard {
    inner: Rc<Inner>,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.inner.running.set(false);
        self.inner.stopping.set(false);
        let _ = RUNNING.try_with(|r| r.borrow_mut().take());
    }
}

/// The waker of the `run_until_complete` future.
#[cfg(not(target_arch = "wasm32"))]
struct MainWaker {
    remote: Arc<Remote>,
    queued: AtomicBool,
}

#[cfg(not(target_arch = "wasm32"))]
impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let pushed_locally = RUNNING
            .try_with(|r| match r.try_borrow() {
                Ok(r) => match r.as_ref() {
                    Some(lp) if Arc::ptr_eq(&lp.inner.remote, &self.remote) => {
                        lp.inner.ready.borrow_mut().push_back(Ready::Main);
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            })
            .unwrap_or(false);
        if !pushed_locally {
            let _ = self.remote.push(RemoteItem::Main);
        }
    }
}

impl EventLoop {
    pub(super) fn enter_running(&self) -> Result<RunningGuard, Error> {
        if self.inner.closed.get() {
            return Err(Error::closed());
        }
        if self.inner.running.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "This event loop is already running: await the future inside the running loop instead of nesting run calls",
            ));
        }
        RUNNING.with(|r| {
            let mut r = r.borrow_mut();
            if r.is_some() {
                return Err(Error::new(
                    ErrorKind::AlreadyRunning,
                    "Cannot run the event loop while another loop is running on this thread: \
                     create a task on the running loop, or run the new loop on another thread",
                ));
            }
            *r = Some(self.clone());
            Ok(())
        })?;
        self.inner.running.set(true);
        Ok(RunningGuard {
            inner: self.inner.clone(),
        })
    }

    /// Runs until [`stop`](EventLoop::stop) is called.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::AlreadyRunning`]
    /// when this or another loop already runs on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let l2 = lp.clone();
    /// lp.call_later(Duration::from_millis(1), move || l2.stop()).unwrap();
    /// lp.run_forever().unwrap();
    /// lp.close().unwrap();
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_forever(&self) -> Result<(), Error> {
        let _guard = self.enter_running()?;
        loop {
            self.run_once(&mut || {});
            if self.inner.stopping.get() {
                return Ok(());
            }
        }
    }

    /// Runs until `fut` completes and returns its output.
    ///
    /// `fut` is driven as a task queued behind the callbacks already
    /// scheduled (asyncio's order); it need not be `'static`. A panic inside
    /// it is returned as [`ErrorKind::Panicked`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed loop; [`ErrorKind::AlreadyRunning`]
    /// when nested or when another loop runs on this thread;
    /// [`ErrorKind::Stopped`] when [`stop`](EventLoop::stop) ends the run
    /// before `fut` completes; [`ErrorKind::Panicked`] when `fut` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let name = String::from("borrowed");
    /// let len = lp.run_until_complete(async { name.len() }).unwrap();
    /// assert_eq!(len, 8);
    /// lp.close().unwrap();
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_until_complete<F: Future>(&self, fut: F) -> Result<F::Output, Error> {
        let ctx = crate::context::current_task_context();
        self.run_main(fut, ctx, None)
    }

    /// Queues the `run_until_complete` future for a poll (used to deliver an
    /// interruption to it).
    #[cfg_attr(not(unix), allow(dead_code))] // SIGINT exists on Unix only
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wake_main(&self) {
        self.inner.ready.borrow_mut().push_back(Ready::Main);
    }

    /// Drives `fut` as the main task in task context `ctx`. When
    /// `interrupt` is set (by a SIGINT hook, which then calls
    /// [`wake_main`](EventLoop::wake_main)), the future is cancelled at its
    /// next turn and the run returns `Err(Interrupted)`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn run_main<F: Future>(
        &self,
        fut: F,
        ctx: crate::TaskContextId,
        interrupt: Option<&std::cell::Cell<bool>>,
    ) -> Result<F::Output, Error> {
        let _guard = self.enter_running()?;
        let state = Arc::new(MainWaker {
            remote: self.inner.remote.clone(),
            queued: AtomicBool::new(true),
        });
        let waker = Waker::from(state.clone());
        let mut fut = pin!(fut);
        let mut output: Option<Result<F::Output, Error>> = None;
        self.inner.ready.borrow_mut().push_back(Ready::Main);
        {
            let mut poll_main = || {
                if output.is_some() {
                    return;
                }
                state.queued.store(false, Ordering::Release);
                if interrupt.is_some_and(std::cell::Cell::get) {
                    output = Some(Err(Error::new(
                        ErrorKind::Interrupted,
                        "interrupted by SIGINT (Ctrl-C): the main future was cancelled",
                    )));
                    self.stop();
                    return;
                }
                let mut cx = Context::from_waker(&waker);
                let _ctx = crate::context::enter_task_context(ctx);
                match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                    Ok(Poll::Pending) => return,
                    Ok(Poll::Ready(v)) => output = Some(Ok(v)),
                    Err(p) => {
                        output = Some(Err(Error::from_panic(
                            "the future passed to run_until_complete",
                            &*p,
                        )))
                    }
                }
                self.stop();
            };
            loop {
                self.run_once(&mut poll_main);
                if self.inner.stopping.get() {
                    break;
                }
            }
        }
        output.unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Stopped,
                "Event loop stopped before Future completed: stop() was called while run_until_complete was waiting",
            ))
        })
    }

    /// One iteration: wait for I/O until the next deadline (not at all when
    /// work is ready), queue I/O and due-timer callbacks, then run exactly the
    /// callbacks queued so far.
    ///
    /// One deliberate difference from asyncio: while callbacks are ready, the
    /// non-blocking I/O check (a syscall that usually finds nothing) is made
    /// only once at least [`POLL_INTERVAL`] callbacks have run since the last
    /// one, so its cost is shared by many callbacks. An iteration that stops
    /// the loop always checks.
    #[cfg(not(target_arch = "wasm32"))]
    fn run_once(&self, main: &mut dyn FnMut()) {
        let inner = &*self.inner;
        if !inner.ready.borrow().is_empty() && !inner.stopping.get() {
            if inner.run_since_poll.get() >= POLL_INTERVAL {
                self.poll_backend(Some(Duration::ZERO));
            }
        } else {
            let timeout = if inner.stopping.get() || inner.remote.has_pending() {
                Some(Duration::ZERO)
            } else {
                inner
                    .timers
                    .borrow_mut()
                    .next_deadline(&inner.tasks.borrow())
                    .map(|when| when.saturating_duration_since(Instant::now()))
            };
            self.poll_backend(timeout);
        }
        self.drain_remote();

        {
            let mut timers = inner.timers.borrow_mut();
            if !timers.is_empty() {
                let now = Instant::now();
                let mut ready = inner.ready.borrow_mut();
                let mut tasks = inner.tasks.borrow_mut();
                timers.maybe_compact(&tasks);
                timers.pop_due(now, &mut tasks, |fired| {
                    ready.push_back(match fired {
                        Fired::Callback(cb) => Ready::Callback(cb),
                        Fired::Task(key) => Ready::WakeTask(key),
                        Fired::Waker(w) => Ready::Wake(w),
                    })
                });
            }
        }

        let ntodo = inner.ready.borrow().len();
        inner
            .run_since_poll
            .set(inner.run_since_poll.get().saturating_add(ntodo as u32));
        let debug = inner.debug.get();
        for _ in 0..ntodo {
            let item = inner.ready.borrow_mut().pop_front();
            let Some(item) = item else { break };
            if debug {
                self.run_item_timed(item, main);
            } else {
                self.run_item(item, main);
            }
        }

        // Give back the memory of a burst (a million tasks spawned at once
        // leave a million-slot queue behind).
        let mut ready = inner.ready.borrow_mut();
        if ready.capacity() > SHRINK_ABOVE && ready.len() * 4 < ready.capacity() {
            let keep = (ready.len() * 2).max(SHRINK_ABOVE);
            ready.shrink_to(keep);
        }
    }

    #[inline]
    pub(super) fn run_item(&self, item: Ready, main: &mut dyn FnMut()) {
        match item {
            Ready::Task(runnable) => {
                runnable.run();
            }
            Ready::Callback(cb) => self.run_callback(&*cb),
            Ready::Main => main(),
            Ready::WakeTask(key) => crate::task::wake_task(&self.inner, key),
            Ready::Wake(w) => w.wake(),
        }
    }

    pub(super) fn run_item_timed(&self, item: Ready, main: &mut dyn FnMut()) {
        let what = match &item {
            Ready::Task(_) => "a task step".to_string(),
            Ready::Callback(cb) => format!("the callback scheduled at {}", cb.location()),
            Ready::Main => "the run_until_complete future".to_string(),
            Ready::WakeTask(_) | Ready::Wake(_) => "a timer wake-up".to_string(),
        };
        let start = Instant::now();
        self.run_item(item, main);
        let took = start.elapsed();
        if took >= self.inner.slow_callback.get() {
            log::warn!(
                target: "aioloop",
                "Executing {what} took {:.3} seconds",
                took.as_secs_f64()
            );
        }
    }

    #[inline]
    fn run_callback(&self, cb: &dyn Callback) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb.run())) {
            self.report_panic("Exception in callback", "a callback", &*p, cb.location());
        }
    }

    pub(crate) fn report_panic(
        &self,
        message: &str,
        what: &str,
        payload: &(dyn std::any::Any + Send),
        location: &'static Location<'static>,
    ) {
        self.call_exception_handler(
            &ExceptionContext::new(message)
                .with_error(Error::from_panic(what, payload))
                .with_location(location),
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn poll_backend(&self, timeout: Option<Duration>) {
        let inner = &*self.inner;
        inner.run_since_poll.set(0);
        let mut events = std::mem::take(&mut *inner.events.borrow_mut());
        let res = inner.driver.borrow_mut().poll(timeout, &mut events);
        if let Err(e) = res {
            self.call_exception_handler(
                &ExceptionContext::new("the backend failed to wait for events")
                    .with_error(Error::io("poll", e)),
            );
        }
        if !events.is_empty() {
            let mut wake = Vec::new();
            let mut handlers = Vec::new();
            {
                let mut sources = inner.sources.borrow_mut();
                for ev in events.iter().filter(|e| e.token & SOURCE_TOKEN != 0) {
                    sources.dispatch(ev, &mut wake, &mut handlers);
                }
            }
            for w in wake {
                w.wake();
            }
            for h in handlers {
                inner.ready.borrow_mut().push_back(Ready::Callback(h));
            }
            #[cfg(unix)]
            self.dispatch_io(&events);
            events.clear();
        }
        *inner.events.borrow_mut() = events;
    }

    pub(super) fn drain_remote(&self) {
        let inner = &*self.inner;
        if !inner.remote.has_pending() {
            return;
        }
        let mut items = Vec::new();
        inner.remote.drain(&mut items);
        let mut ready = inner.ready.borrow_mut();
        for item in items {
            match item {
                RemoteItem::Callback(f, location) => ready.push_back(Ready::Callback(
                    super::handle::Once::boxed(f, None, location),
                )),
                RemoteItem::Task(r) => ready.push_back(Ready::Task(r)),
                RemoteItem::Main => ready.push_back(Ready::Main),
                RemoteItem::Stop => inner.stopping.set(true),
            }
        }
    }
}

impl Inner {
    /// Pushes a batch of callbacks (I/O) onto the ready queue.
    #[cfg(unix)]
    pub(crate) fn push_ready(&self, cb: Rc<dyn Callback>) {
        self.ready.borrow_mut().push_back(Ready::Callback(cb));
    }
}
