//! # aioloop
//!
//! Python asyncio's event loop and *event loop policy* model, in Rust.
//!
//! - A process-wide, swappable **policy** ([`get_event_loop_policy`],
//!   [`set_event_loop_policy`]) decides which loop is current *here*, with
//!   [`get_event_loop`], [`set_event_loop`] and [`new_event_loop`] following
//!   Python 3.14 semantics (no implicit loop creation).
//! - **Contexts** say what "here" is: the thread ([`ThreadContext`], the
//!   default), the running task's context ([`TaskContext`]), or an id the
//!   embedding program supplies ([`HostContext`]). [`ContextPolicy`] keys
//!   loops by any of them.
//! - A real single-threaded **event loop** ([`EventLoop`]): callbacks,
//!   timers, tasks, cancellation, thread-safe wake-ups, a default executor,
//!   readiness callbacks on file descriptors, an exception handler and a
//!   debug mode, waiting in a pluggable [backend](Backend).
//!
//! # Examples
//!
//! The asyncio way: `aioloop::run` makes a loop, runs `main`, cleans up.
//!
//! ```
//! use std::time::Duration;
//!
//! let out = aioloop::run(async {
//!     let lp = aioloop::get_running_loop().unwrap();
//!     let slow = lp.create_task(async {
//!         aioloop::sleep(Duration::from_millis(2)).await;
//!         "slow"
//!     });
//!     let fast = lp.create_task(async { "fast" });
//!     (fast.await.unwrap(), slow.await.unwrap())
//! })
//! .unwrap();
//! assert_eq!(out, ("fast", "slow"));
//! ```
//!
//! Policies and a loop per thread:
//!
//! ```
//! use aioloop::ErrorKind;
//!
//! // Python 3.14: no current loop until one is set.
//! assert_eq!(aioloop::get_event_loop().unwrap_err().kind(), ErrorKind::NoCurrentLoop);
//! let lp = aioloop::new_event_loop().unwrap();
//! aioloop::set_event_loop(Some(lp.clone())).unwrap();
//! assert_eq!(aioloop::get_event_loop().unwrap(), lp);
//! std::thread::spawn(|| {
//!     // Another thread has its own slot.
//!     assert!(aioloop::get_event_loop().is_err());
//! })
//! .join()
//! .unwrap();
//! aioloop::set_event_loop(None).unwrap();
//! lp.close().unwrap();
//! ```
//!
//! ## On wasm32 (browsers, Node)
//!
//! On `wasm32-unknown-unknown` the same API compiles on a backend the JS
//! host drives (microtask turns, one host `setTimeout` per loop, turns
//! budgeted so pages keep painting): loops run as soon as they have work,
//! `EventLoop::run_once` / `start` / `stats` / `set_tick_budget` and
//! `Task::into_promise` replace the blocking entry points, which (with
//! threads, sockets, signals and subprocesses) do not exist there. The `js`
//! feature adds the JS API (`aioloop::js`, built into an npm package by
//! `scripts/build-wasm.sh`). See the README's WebAssembly section.
//!
//! ## Platforms
//!
//! Unix and Windows. Loops wait in a [backend](Backend): the selector (mio:
//! epoll, kqueue, Windows AFD) everywhere, and on Windows the IOCP proactor,
//! which is the default there as in asyncio. Signals (`signal`),
//! subprocesses and pipes (`process`), Unix sockets, asyncio's `sock_*`
//! calls and readiness callbacks on raw fds (`add_reader` …) are Unix-only:
//! they are absent from the Windows build, so using them there is a compile
//! error rather than a failure at run time (on Windows this example is a
//! `compile_fail` test):
//!
#![cfg_attr(windows, doc = "```compile_fail")]
#![cfg_attr(not(windows), doc = "```no_run")]
//! // Unix only.
//! use aioloop::net::UnixStream;
//! let lp = aioloop::new_event_loop().unwrap();
//! lp.add_reader(0, || {}).unwrap();
//! let _ = aioloop::signal::ctrl_c();
//! let _ = aioloop::process::Command::new("true");
//! ```
//!
//! ## Layers
//!
//! `policy` → `context` (which loop is current here?) and `event_loop` →
//! `backend` (how do we wait?); `task` and `time` hold the ready queue's
//! tasks and the timer store. Only `backend` touches the operating system.

#![warn(rustdoc::broken_intra_doc_links)]

mod backend;
mod context;
mod error;
mod event_loop;
#[cfg(not(target_arch = "wasm32"))]
mod executor;
#[cfg(all(target_arch = "wasm32", feature = "js"))]
pub mod js;
#[cfg(not(target_arch = "wasm32"))]
pub mod net;
mod policy;
#[cfg(unix)]
pub mod process;
#[cfg(not(target_arch = "wasm32"))]
mod runner;
#[cfg(unix)]
pub mod signal;
mod task;
mod time;

pub use backend::Backend;
pub use context::{
    enter_host_context, Context, HostContext, HostContextGuard, HostId, TaskContext, TaskContextId,
    ThreadContext,
};
pub use error::{Error, ErrorKind};
pub use event_loop::{
    EventLoop, ExceptionContext, ExceptionHandler, Handle, LoopBuilder, ThreadsafeHandle,
    TimerHandle,
};
#[cfg(not(target_arch = "wasm32"))]
pub use executor::ExecutorFuture;
pub use policy::{
    get_event_loop, get_event_loop_policy, get_running_loop, new_event_loop, set_event_loop,
    set_event_loop_policy, ContextPolicy, DefaultEventLoopPolicy, EventLoopPolicy,
};
#[cfg(not(target_arch = "wasm32"))]
pub use policy::{ProactorEventLoopPolicy, SelectorEventLoopPolicy};
#[cfg(windows)]
pub use policy::{WindowsProactorEventLoopPolicy, WindowsSelectorEventLoopPolicy};
#[cfg(not(target_arch = "wasm32"))]
pub use runner::{run, Runner};
pub use task::Task;
pub use time::{sleep, timeout, wait_for, yield_now, Instant, Sleep, Timeout, YieldNow};
// --- wasm32 (issue 6): host-driven loops ---
#[cfg(target_arch = "wasm32")]
pub use event_loop::wasm::{LoopStats, DEFAULT_TICK_BUDGET};
