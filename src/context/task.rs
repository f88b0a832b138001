use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Context;
use crate::Error;

/// The id of a task context: which "logical flow" a task belongs to.
///
/// Every task carries one. A task created from inside another task inherits
/// its creator's id (like `contextvars` in asyncio); a task created from
/// outside any task gets the calling thread's root id; and
/// [`EventLoop::create_task_in_context`](crate::EventLoop::create_task_in_context)
/// starts a task in the id you choose, such as a fresh [`TaskContextId::new`].
///
/// # Examples
///
/// ```
/// use aioloop::TaskContextId;
///
/// let a = TaskContextId::new();
/// let b = TaskContextId::new();
/// assert_ne!(a, b);
/// // Outside any task, the current id is this thread's root id.
/// assert_eq!(TaskContextId::current(), TaskContextId::current());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskContextId(NonZeroU64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The context of the task (or `run_until_complete` future) being polled.
    static CURRENT: Cell<Option<TaskContextId>> = const { Cell::new(None) };
    /// This thread's root context, used outside any task.
    static ROOT: Cell<Option<TaskContextId>> = const { Cell::new(None) };
}

impl TaskContextId {
    /// A fresh id, distinct from every other in the process.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_ne!(aioloop::TaskContextId::new(), aioloop::TaskContextId::new());
    /// ```
    #[allow(clippy::new_without_default)]
    pub fn new() -> TaskContextId {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        TaskContextId(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
    }

    /// The id of the running task, or this thread's root id outside tasks.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{EventLoop, TaskContextId};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let outside = TaskContextId::current();
    /// let inside = lp.run_until_complete(lp.create_task(async { TaskContextId::current() })).unwrap().unwrap();
    /// assert_eq!(inside, outside); // inherited from the creator
    /// # lp.close().unwrap();
    /// ```
    pub fn current() -> TaskContextId {
        current_id()
    }

    /// The number behind the id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aioloop::TaskContextId::new().as_u64() > 0);
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for TaskContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskContextId({})", self.0)
    }
}

/// The context entered by a running task or callback; `None` at the top of
/// the thread (whose context is the root one).
#[inline]
pub(crate) fn current_entered() -> Option<TaskContextId> {
    CURRENT.with(Cell::get)
}

pub(crate) fn current_id() -> TaskContextId {
    CURRENT.with(Cell::get).unwrap_or_else(|| {
        ROOT.with(|root| match root.get() {
            Some(id) => id,
            None => {
                let id = TaskContextId::new();
                root.set(Some(id));
                id
            }
        })
    })
}

/// Restores the previous task context when dropped.
pub(crate) struct Enter {
    prev: Option<TaskContextId>,
}

#[inline]
pub(crate) fn enter(id: TaskContextId) -> Enter {
    Enter {
        prev: CURRENT.with(|c| c.replace(Some(id))),
    }
}

impl Drop for Enter {
    #[inline]
    fn drop(&mut self) {
        let prev = self.prev;
        let _ = CURRENT.try_with(|c| c.set(prev));
    }
}

/// Loops keyed by the running task's [`TaskContextId`].
///
/// Two tasks on the same thread in different task contexts see different
/// current loops; tasks they create share their creator's.
///
/// # Examples
///
/// ```
/// use aioloop::{Context, TaskContext, TaskContextId};
///
/// assert_eq!(TaskContext.current_id().unwrap(), TaskContextId::current());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskContext;

impl Context for TaskContext {
    type Id = TaskContextId;

    fn current_id(&self) -> Result<TaskContextId, Error> {
        Ok(current_id())
    }

    fn describe(&self, id: &TaskContextId) -> String {
        format!("task context {}", id.0)
    }
}

// --- wasm32 (issue 6) ---
/// Sets the entered task context back to `prev` (after a trap on wasm32,
/// the [`Enter`] guards of the abandoned turn never ran).
#[cfg(target_arch = "wasm32")]
pub(crate) fn reset_entered(prev: Option<TaskContextId>) {
    let _ = CURRENT.try_with(|c| c.set(prev));
}
