//! The runtimes under test, behind one small trait.
//!
//! Adding a peer = one `impl Runtime for NewPeer` (a dozen lines) plus one
//! line in [`RUNTIMES`]. Every benchmark body is generic over [`Runtime`], so
//! a new peer runs all of them.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::benches::{self, Outcome, Size};

/// What a benchmark needs from a single-threaded async runtime.
pub trait Runtime: 'static {
    /// Name on the command line and in the tables.
    const NAME: &'static str;
    /// How this runtime is built and driven (printed in the results).
    const ABOUT: &'static str;
    /// Whether the runtime has asyncio-style callbacks (`call_soon`,
    /// `call_later`). Peers without them run the benchmark's nearest
    /// equivalent (a tiny spawned task).
    const NATIVE_CALLBACKS: bool = false;

    /// What spawned code keeps to spawn more work (a loop or executor
    /// handle; `()` when the runtime has free functions).
    type Handle: Clone + 'static;
    /// A join handle whose output is the task's output (failures panic:
    /// no benchmark task fails).
    type Join<T: 'static>: Future<Output = T> + Unpin + 'static;

    /// Builds a fresh runtime on this thread and drives `main` to completion.
    /// The runtime is leaked, not torn down: each benchmark runs in its own
    /// short-lived process, and tearing down a million tasks measures nothing.
    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future;

    /// Spawns a task on the current thread's runtime.
    fn spawn<F>(h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static;

    /// Spawns a task nobody joins.
    fn spawn_detached<F>(h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static;

    /// Lets other ready tasks run once.
    fn yield_now() -> impl Future<Output = ()>;

    /// Sleeps on the running runtime's timer.
    fn sleep(d: Duration) -> impl Future<Output = ()>;

    /// `call_soon` (only called when [`Runtime::NATIVE_CALLBACKS`]).
    fn call_soon<F: FnOnce() + 'static>(_h: &Self::Handle, _f: F) {
        unreachable!("{} has no native callbacks", Self::NAME)
    }

    /// `call_later` (only called when [`Runtime::NATIVE_CALLBACKS`]).
    fn call_later<F: FnOnce() + 'static>(_h: &Self::Handle, _d: Duration, _f: F) {
        unreachable!("{} has no native callbacks", Self::NAME)
    }
}

/// Unwraps a join handle whose output is a `Result`.
#[derive(Debug)]
pub struct Unwrap<J>(J);

impl<J, T, E> Future for Unwrap<J>
where
    J: Future<Output = Result<T, E>> + Unpin,
    E: Debug,
{
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.expect("a benchmark task failed"))
    }
}

// ---------------------------------------------------------------------------
// aioloop

/// aioloop: `EventLoop::new()`, `run_until_complete`, `create_task`,
/// `call_soon` / `call_later`, `aioloop::sleep`, `aioloop::yield_now`.
#[derive(Debug)]
pub struct AioLoop;

impl Runtime for AioLoop {
    const NAME: &'static str = "aioloop";
    const ABOUT: &'static str = "aioloop: EventLoop::new() + run_until_complete; tasks with \
        EventLoop::create_task (handle passed down), aioloop::sleep, aioloop::yield_now, \
        EventLoop::call_soon / call_later";
    const NATIVE_CALLBACKS: bool = true;

    type Handle = aioloop::EventLoop;
    type Join<T: 'static> = Unwrap<aioloop::Task<T>>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let lp = aioloop::EventLoop::new().expect("aioloop: EventLoop::new");
        let out = lp
            .run_until_complete(main(lp.clone()))
            .expect("aioloop: run_until_complete");
        std::mem::forget(lp);
        out
    }

    fn spawn<F>(h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        Unwrap(h.create_task(fut))
    }

    fn spawn_detached<F>(h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        h.create_task(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> {
        aioloop::yield_now()
    }

    fn sleep(d: Duration) -> impl Future<Output = ()> {
        aioloop::sleep(d)
    }

    fn call_soon<F: FnOnce() + 'static>(h: &Self::Handle, f: F) {
        h.call_soon(f).expect("aioloop: call_soon");
    }

    fn call_later<F: FnOnce() + 'static>(h: &Self::Handle, d: Duration, f: F) {
        h.call_later(d, f).expect("aioloop: call_later");
    }
}

// ---------------------------------------------------------------------------
// tokio

/// tokio's current-thread runtime with a `LocalSet`.
///
/// `tokio::task::spawn_local` on a `LocalSet` measured as fast as (often
/// faster than) `tokio::spawn` on the bare current-thread runtime here
/// (spawn+join 169–190 vs 178–216 ns, chained spawn 131–155 vs 156–173 ns,
/// yield 37–43 vs 36–41 ns), and it takes `!Send` futures, as aioloop and
/// smol's `LocalExecutor` do.
#[derive(Debug)]
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    const ABOUT: &'static str =
        "tokio: Builder::new_current_thread().enable_all() + LocalSet::block_on; \
        tasks with tokio::task::spawn_local, tokio::time::sleep, tokio::task::yield_now";

    type Handle = ();
    type Join<T: 'static> = Unwrap<tokio::task::JoinHandle<T>>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio: build runtime");
        let local = tokio::task::LocalSet::new();
        let out = local.block_on(&rt, main(()));
        std::mem::forget(local);
        std::mem::forget(rt);
        out
    }

    fn spawn<F>(_h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        Unwrap(tokio::task::spawn_local(fut))
    }

    fn spawn_detached<F>(_h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        drop(tokio::task::spawn_local(fut));
    }

    fn yield_now() -> impl Future<Output = ()> {
        tokio::task::yield_now()
    }

    fn sleep(d: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(d)
    }
}

// ---------------------------------------------------------------------------
// smol

/// smol's single-threaded executor: `async_executor::LocalExecutor` driven by
/// `async_io::block_on(ex.run(..))` (exactly what `smol::block_on` and
/// `smol::LocalExecutor` are), timers from `async_io::Timer`.
#[derive(Debug)]
pub struct Smol;

impl Runtime for Smol {
    const NAME: &'static str = "smol";
    const ABOUT: &'static str = "smol: async_executor::LocalExecutor driven by \
        async_io::block_on(ex.run(..)); Rc<LocalExecutor> passed down, ex.spawn, \
        async_io::Timer::after, futures_lite::future::yield_now";

    type Handle = Rc<async_executor::LocalExecutor<'static>>;
    type Join<T: 'static> = async_executor::Task<T>;

    fn block_on<M, F>(main: M) -> F::Output
    where
        M: FnOnce(Self::Handle) -> F,
        F: Future,
    {
        let ex = Rc::new(async_executor::LocalExecutor::new());
        let out = async_io::block_on(ex.run(main(ex.clone())));
        std::mem::forget(ex);
        out
    }

    fn spawn<F>(h: &Self::Handle, fut: F) -> Self::Join<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        h.spawn(fut)
    }

    fn spawn_detached<F>(h: &Self::Handle, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        h.spawn(fut).detach();
    }

    fn yield_now() -> impl Future<Output = ()> {
        futures_lite::future::yield_now()
    }

    async fn sleep(d: Duration) {
        async_io::Timer::after(d).await;
    }
}

// ---------------------------------------------------------------------------
// The table

/// One runtime, type-erased: its name and the benchmark dispatcher
/// monomorphised for it.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeEntry {
    /// As on the command line.
    pub name: &'static str,
    /// How it is built and driven.
    pub about: &'static str,
    /// Runs one benchmark by name (`None`: unknown benchmark).
    pub run: fn(&str, Size) -> Option<Outcome>,
}

const fn entry<R: Runtime>() -> RuntimeEntry {
    RuntimeEntry {
        name: R::NAME,
        about: R::ABOUT,
        run: benches::run::<R>,
    }
}

/// Every runtime, aioloop first (the others are its peers).
pub const RUNTIMES: &[RuntimeEntry] = &[entry::<AioLoop>(), entry::<Tokio>(), entry::<Smol>()];

/// Looks a runtime up by name.
pub fn find(name: &str) -> Option<&'static RuntimeEntry> {
    RUNTIMES.iter().find(|r| r.name == name)
}
