//! What "here" means: the [`Context`] a policy keys its loops by.
//!
//! asyncio keeps one current loop *per thread*. aioloop lets a policy choose
//! its notion of "here":
//!
//! | context | id | "here" is |
//! |---|---|---|
//! | [`ThreadContext`] | [`std::thread::ThreadId`] | the calling thread (asyncio's default) |
//! | [`TaskContext`] | [`TaskContextId`] | the running task's context, inherited by the tasks it creates (like `contextvars`) |
//! | [`HostContext`] | [`HostId`] | an id the embedding program enters with [`enter_host_context`] (a request, a tab, a tenant…) |
//!
//! An event loop is single-threaded, so every policy keeps its slots per
//! thread first and per context id second: a loop set in host context 7 on
//! one thread is not visible to host context 7 on another thread, where it
//! could not run anyway.

mod host;
mod task;
mod thread;

pub use host::{enter_host_context, HostContext, HostContextGuard, HostId};
pub use task::{TaskContext, TaskContextId};
pub use thread::ThreadContext;

pub(crate) use task::{
    current_entered as entered_task_context, current_id as current_task_context,
    enter as enter_task_context,
};
#[cfg(target_arch = "wasm32")]
pub(crate) use {
    host::{depth as host_depth, truncate as truncate_host_contexts},
    task::reset_entered as reset_task_context,
};

use std::fmt::Debug;
use std::hash::Hash;

use crate::Error;

/// A notion of "here" that a [`ContextPolicy`](crate::ContextPolicy) keys its
/// loops by.
///
/// Implement it to key loops by anything your program can name from the
/// calling code: a request id kept in a thread-local, a worker index…
///
/// # Examples
///
/// ```
/// use aioloop::{Context, ContextPolicy, Error, EventLoopPolicy};
/// use std::cell::Cell;
///
/// thread_local!(static TENANT: Cell<u32> = Cell::new(0));
///
/// #[derive(Debug, Default)]
/// struct TenantContext;
///
/// impl Context for TenantContext {
///     type Id = u32;
///     fn current_id(&self) -> Result<u32, Error> {
///         Ok(TENANT.with(Cell::get))
///     }
///     fn describe(&self, id: &u32) -> String {
///         format!("tenant {id}")
///     }
/// }
///
/// let policy = ContextPolicy::new(TenantContext);
/// let a = policy.new_event_loop().unwrap();
/// policy.set_event_loop(Some(a.clone())).unwrap();
/// TENANT.with(|t| t.set(1));
/// assert!(policy.get_event_loop().is_err()); // tenant 1 has no loop yet
/// TENANT.with(|t| t.set(0));
/// assert_eq!(policy.get_event_loop().unwrap(), a);
/// # a.close().unwrap();
/// ```
pub trait Context: Send + Sync + 'static {
    /// The id loops are keyed by.
    type Id: Clone + Eq + Hash + Debug + 'static;

    /// The id of the calling code's context.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoContext`](crate::ErrorKind::NoContext) when the caller
    /// is in no context of this kind.
    fn current_id(&self) -> Result<Self::Id, Error>;

    /// Names the context in error messages ("thread 'main'", "host context 7").
    fn describe(&self, id: &Self::Id) -> String {
        format!("{id:?}")
    }
}
