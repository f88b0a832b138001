use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use super::Context;
use crate::{Error, ErrorKind};

/// An id supplied by the embedding program: a tab, a worker, a request, a
/// tenant. See [`enter_host_context`].
///
/// # Examples
///
/// ```
/// use aioloop::HostId;
/// assert_eq!(HostId::from(7).as_u64(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(u64);

impl HostId {
    /// The number behind the id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(aioloop::HostId::from(3).as_u64(), 3);
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for HostId {
    fn from(id: u64) -> HostId {
        HostId(id)
    }
}

impl fmt::Debug for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostId({})", self.0)
    }
}

thread_local! {
    /// Entered contexts, innermost last, each tagged with its guard's serial.
    static STACK: RefCell<Vec<(u64, HostId)>> = const { RefCell::new(Vec::new()) };
    static NEXT_SERIAL: Cell<u64> = const { Cell::new(0) };
}

/// Makes `id` the current host context of this thread until the guard drops.
///
/// Guards nest: dropping one leaves its own context, so with properly nested
/// guards the context that was current before it comes back. A guard dropped
/// out of order removes only its own entry; the innermost remaining guard's
/// id stays current.
///
/// # Examples
///
/// ```
/// use aioloop::{enter_host_context, Context, HostContext, HostId};
///
/// assert!(HostContext.current_id().is_err());
/// {
///     let _outer = enter_host_context(1);
///     {
///         let _inner = enter_host_context(2);
///         assert_eq!(HostContext.current_id().unwrap(), HostId::from(2));
///     }
///     assert_eq!(HostContext.current_id().unwrap(), HostId::from(1));
/// }
/// assert!(HostContext.current_id().is_err());
/// ```
pub fn enter_host_context(id: impl Into<HostId>) -> HostContextGuard {
    let id = id.into();
    let serial = NEXT_SERIAL.with(|n| {
        let v = n.get();
        n.set(v + 1);
        v
    });
    STACK.with(|s| s.borrow_mut().push((serial, id)));
    HostContextGuard {
        serial,
        id,
        _not_send: PhantomData,
    }
}

/// Returned by [`enter_host_context`]; leaving the context happens on drop.
#[must_use = "the host context is left as soon as the guard is dropped"]
pub struct HostContextGuard {
    serial: u64,
    id: HostId,
    _not_send: PhantomData<*const ()>,
}

impl HostContextGuard {
    /// The id this guard entered.
    ///
    /// # Examples
    ///
    /// ```
    /// let g = aioloop::enter_host_context(9);
    /// assert_eq!(g.id().as_u64(), 9);
    /// ```
    pub fn id(&self) -> HostId {
        self.id
    }
}

impl fmt::Debug for HostContextGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostContextGuard")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .finish()
    }
}

impl Drop for HostContextGuard {
    fn drop(&mut self) {
        let serial = self.serial;
        let _ = STACK.try_with(|s| {
            let mut s = s.borrow_mut();
            if let Some(pos) = s.iter().rposition(|(n, _)| *n == serial) {
                s.remove(pos);
            }
        });
    }
}

/// Loops keyed by the [`HostId`] the embedding program entered with
/// [`enter_host_context`].
///
/// # Examples
///
/// ```
/// use aioloop::{enter_host_context, ContextPolicy, EventLoopPolicy, HostContext};
///
/// let policy = ContextPolicy::new(HostContext);
/// let lp = policy.new_event_loop().unwrap();
/// {
///     let _tab = enter_host_context(1);
///     policy.set_event_loop(Some(lp.clone())).unwrap();
///     assert_eq!(policy.get_event_loop().unwrap(), lp);
/// }
/// let _other = enter_host_context(2);
/// assert!(policy.get_event_loop().is_err());
/// # lp.close().unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HostContext;

impl Context for HostContext {
    type Id = HostId;

    fn current_id(&self) -> Result<HostId, Error> {
        STACK
            .with(|s| s.borrow().last().map(|(_, id)| *id))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NoContext,
                    "no host context is entered on this thread: call \
                     aioloop::enter_host_context(id) and keep the guard alive while you use the policy",
                )
            })
    }

    fn describe(&self, id: &HostId) -> String {
        format!("host context {}", id.0)
    }
}

// --- wasm32 (issue 6) ---
/// How many host contexts are entered on this thread.
#[cfg(target_arch = "wasm32")]
pub(crate) fn depth() -> usize {
    STACK
        .try_with(|s| s.try_borrow().map_or(0, |s| s.len()))
        .unwrap_or(0)
}

/// Leaves the host contexts entered above `depth` (after a trap on wasm32,
/// their guards never ran).
#[cfg(target_arch = "wasm32")]
pub(crate) fn truncate(depth: usize) {
    let _ = STACK.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.truncate(depth);
        }
    });
}
