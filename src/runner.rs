//! `run()` and [`Runner`]: the high-level entry points (asyncio.run /
//! asyncio.Runner).

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::{Error, ErrorKind, EventLoop, TaskContextId};

/// How long closing waits for the default executor's threads (as asyncio).
const EXECUTOR_JOIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Rounds of "cancel what is left, let it unwind" before giving up.
const CANCEL_ROUNDS: usize = 100;

type LoopFactory = Box<dyn FnMut() -> Result<EventLoop, Error>>;

/// Runs `main` on a new loop and closes it (`asyncio.run`).
///
/// The loop is made the current loop while it runs (through the policy), and
/// when `main` finishes — or panics — every task still pending is cancelled,
/// the default executor is shut down, and the loop is closed.
///
/// # Errors
///
/// [`ErrorKind::AlreadyRunning`] when called from a running loop;
/// [`ErrorKind::Panicked`] when `main` panics; [`ErrorKind::Io`] when the
/// loop cannot start.
///
/// # Examples
///
/// ```
/// let answer = aioloop::run(async {
///     let lp = aioloop::get_running_loop().unwrap();
///     lp.create_task(async { 42 }).await.unwrap()
/// })
/// .unwrap();
/// assert_eq!(answer, 42);
/// ```
pub fn run<F: Future>(main: F) -> Result<F::Output, Error> {
    if crate::event_loop::running_loop().is_some() {
        return Err(Error::new(
            ErrorKind::AlreadyRunning,
            "aioloop::run() cannot be called from a running event loop: await the future, \
             or create a task on the running loop",
        ));
    }
    let mut runner = Runner::new();
    let result = runner.run(main);
    let closed = runner.close();
    let out = result?;
    closed?;
    Ok(out)
}

/// Runs several futures on one loop, then closes it (`asyncio.Runner`).
///
/// The loop is created lazily — by the current policy, or by the factory
/// given to [`with_loop_factory`](Runner::with_loop_factory), called once —
/// and every [`run`](Runner::run) shares one task context, so state keyed by
/// [`TaskContext`](crate::TaskContext) survives between runs. Dropping the
/// runner closes it.
///
/// # Examples
///
/// ```
/// use aioloop::Runner;
///
/// let mut runner = Runner::new();
/// assert_eq!(runner.run(async { 1 }).unwrap(), 1);
/// assert_eq!(runner.run(async { 2 }).unwrap(), 2);
/// let lp = runner.get_loop().unwrap();
/// runner.close().unwrap();
/// assert!(lp.is_closed());
/// ```
pub struct Runner {
    lp: Option<EventLoop>,
    factory: Option<LoopFactory>,
    debug: Option<bool>,
    set_event_loop: bool,
    closed: bool,
    context: TaskContextId,
}

impl Default for Runner {
    fn default() -> Runner {
        Runner::new()
    }
}

impl Runner {
    /// A runner whose loop comes from the current policy
    /// ([`new_event_loop`](crate::new_event_loop)) and is made current while
    /// the runner lives.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut r = aioloop::Runner::new();
    /// r.run(async {}).unwrap();
    /// ```
    pub fn new() -> Runner {
        Runner {
            lp: None,
            factory: None,
            debug: None,
            set_event_loop: false,
            closed: false,
            context: TaskContextId::new(),
        }
    }

    /// A runner whose loop is made by `factory`, called on first use and
    /// never again once it succeeded (a factory that fails is tried again by
    /// the next call). Such a loop is not made current through the policy
    /// (as asyncio).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Backend, EventLoop, Runner};
    ///
    /// let mut r = Runner::with_loop_factory(|| EventLoop::builder().backend(Backend::Selector).build());
    /// assert_eq!(r.get_loop().unwrap().backend(), Backend::Selector);
    /// ```
    pub fn with_loop_factory(
        factory: impl FnMut() -> Result<EventLoop, Error> + 'static,
    ) -> Runner {
        let mut runner = Runner::new();
        runner.factory = Some(Box::new(factory));
        runner
    }

    /// Sets the loop's debug mode when it is created (`debug=True`).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut r = aioloop::Runner::new().debug(true);
    /// assert!(r.get_loop().unwrap().get_debug());
    /// ```
    pub fn debug(mut self, debug: bool) -> Runner {
        self.debug = Some(debug);
        self
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed {
            Err(Error::new(
                ErrorKind::Closed,
                "Runner is closed: create a new Runner to run more work",
            ))
        } else {
            Ok(())
        }
    }

    fn lazy_init(&mut self) -> Result<EventLoop, Error> {
        self.check_open()?;
        if let Some(lp) = &self.lp {
            return Ok(lp.clone());
        }
        let lp = match self.factory.as_mut() {
            Some(factory) => {
                let lp = factory()?;
                self.factory = None;
                lp
            }
            None => {
                // In the runner's own task context, where `run` polls `main`,
                // so a policy keyed by TaskContext finds the loop there.
                let _ctx = crate::context::enter_task_context(self.context);
                let lp = crate::new_event_loop()?;
                crate::set_event_loop(Some(lp.clone()))?;
                self.set_event_loop = true;
                lp
            }
        };
        if let Some(debug) = self.debug {
            lp.set_debug(debug);
        }
        lp.prefer_context(self.context);
        self.lp = Some(lp.clone());
        Ok(lp)
    }

    /// The runner's loop, created on first use.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] after [`close`](Runner::close); the factory's or
    /// the policy's error if the loop cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut r = aioloop::Runner::new();
    /// let lp = r.get_loop().unwrap();
    /// assert_eq!(r.get_loop().unwrap(), lp);
    /// ```
    pub fn get_loop(&mut self) -> Result<EventLoop, Error> {
        self.lazy_init()
    }

    /// Runs `fut` to completion on the runner's loop, in the runner's task
    /// context.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] after [`close`](Runner::close);
    /// [`ErrorKind::AlreadyRunning`] from inside a running loop;
    /// [`ErrorKind::Panicked`] when `fut` panics; the loop's errors.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut r = aioloop::Runner::new();
    /// let v = r.run(async { aioloop::yield_now().await; 3 }).unwrap();
    /// assert_eq!(v, 3);
    /// ```
    pub fn run<F: Future>(&mut self, fut: F) -> Result<F::Output, Error> {
        self.check_open()?;
        if crate::event_loop::running_loop().is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "Runner.run() cannot be called from a running event loop: await the future, \
                 or create a task on the running loop",
            ));
        }
        let lp = self.lazy_init()?;
        let interrupt = Rc::new(Cell::new(false));
        let _sigint = sigint_hook(&lp, &interrupt);
        lp.run_main(fut, self.context, Some(&interrupt))
    }

    /// Cancels the loop's remaining tasks, shuts its default executor down,
    /// clears the current loop it set, and closes the loop. Idempotent; after
    /// it the runner refuses work.
    ///
    /// # Errors
    ///
    /// The loop's error if it cannot be closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut r = aioloop::Runner::new();
    /// r.run(async {}).unwrap();
    /// r.close().unwrap();
    /// r.close().unwrap();
    /// assert_eq!(r.run(async {}).unwrap_err().kind(), aioloop::ErrorKind::Closed);
    /// ```
    pub fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let Some(lp) = self.lp.take() else {
            return Ok(());
        };
        let result = shutdown(&lp, self.context);
        if self.set_event_loop {
            let _ctx = crate::context::enter_task_context(self.context);
            let _ = crate::set_event_loop(None);
        }
        let closed = lp.close();
        result.and(closed)
    }
}

/// On the main thread of a Unix process, turns SIGINT (Ctrl-C) into
/// cancelling the main future, as asyncio's `Runner.run` does (a handler the
/// program installed for SIGINT keeps priority). Elsewhere, or when the hook
/// cannot be installed, SIGINT keeps its usual effect. The hook lasts while
/// the returned guard lives.
#[cfg(unix)]
fn sigint_hook(lp: &EventLoop, interrupt: &Rc<Cell<bool>>) -> Option<crate::signal::SigintGuard> {
    if std::thread::current().name() != Some("main") {
        return None;
    }
    let set = interrupt.clone();
    let l2 = lp.clone();
    crate::signal::install_sigint_cancel(lp, move || {
        set.set(true);
        l2.wake_main();
    })
    .ok()
}

#[cfg(not(unix))]
fn sigint_hook(_lp: &EventLoop, _interrupt: &Rc<Cell<bool>>) -> Option<()> {
    None
}

/// Cancels what is left, then waits for the executor: asyncio's
/// `_cancel_all_tasks` and `shutdown_default_executor`.
fn shutdown(lp: &EventLoop, ctx: TaskContextId) -> Result<(), Error> {
    if lp.is_closed() {
        return Ok(());
    }
    lp.inner.shutting_down.set(true);
    let l2 = lp.clone();
    let cancelled = lp.run_main(
        async move {
            for _ in 0..CANCEL_ROUNDS {
                if l2.pending_tasks() == 0 {
                    return true;
                }
                l2.cancel_all_tasks();
                crate::yield_now().await;
            }
            l2.pending_tasks() == 0
        },
        ctx,
        None,
    )?;
    if !cancelled {
        lp.call_exception_handler(&crate::ExceptionContext::new(format!(
            "{} tasks still pending after being cancelled {CANCEL_ROUNDS} times at shutdown",
            lp.pending_tasks()
        )));
    }
    let joined = lp.run_main(
        crate::timeout(EXECUTOR_JOIN_TIMEOUT, lp.shutdown_default_executor()),
        ctx,
        None,
    )?;
    match joined {
        Ok(r) => r,
        Err(_) => {
            log::warn!(
                target: "aioloop",
                "the default executor did not finish within {EXECUTOR_JOIN_TIMEOUT:?}; closing without it"
            );
            Ok(())
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!(target: "aioloop", "closing a Runner failed: {e}");
        }
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("loop", &self.lp)
            .field("closed", &self.closed)
            .field("context", &self.context)
            .finish()
    }
}
