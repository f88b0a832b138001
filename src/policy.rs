//! Event loop policies: the process-wide policy slot, the
//! [`EventLoopPolicy`] trait, the built-in policies and the module-level
//! helpers (`get_event_loop`, `set_event_loop`, …).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::context::{Context, ThreadContext};
use crate::{Backend, Error, ErrorKind, EventLoop};

/// A policy answers "which loop is current here?" and makes new loops
/// (asyncio's `AbstractEventLoopPolicy`).
///
/// To customise one, wrap [`DefaultEventLoopPolicy`] and delegate what you do
/// not change: the Rust form of subclassing it.
///
/// # Examples
///
/// A policy that counts the loops it hands out, installed process-wide:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use aioloop::{DefaultEventLoopPolicy, Error, EventLoop, EventLoopPolicy};
///
/// #[derive(Default)]
/// struct CountingPolicy {
///     base: DefaultEventLoopPolicy,
///     gets: AtomicUsize,
/// }
///
/// impl EventLoopPolicy for CountingPolicy {
///     fn get_event_loop(&self) -> Result<EventLoop, Error> {
///         let lp = self.base.get_event_loop()?;
///         self.gets.fetch_add(1, Ordering::Relaxed); // "do something with loop"
///         Ok(lp)
///     }
///     fn set_event_loop(&self, lp: Option<EventLoop>) -> Result<(), Error> {
///         self.base.set_event_loop(lp)
///     }
///     fn new_event_loop(&self) -> Result<EventLoop, Error> {
///         self.base.new_event_loop()
///     }
/// }
///
/// let policy = Arc::new(CountingPolicy::default());
/// aioloop::set_event_loop_policy(Some(policy.clone()));
/// let lp = aioloop::new_event_loop().unwrap();
/// aioloop::set_event_loop(Some(lp.clone())).unwrap();
/// assert_eq!(aioloop::get_event_loop().unwrap(), lp);
/// assert_eq!(policy.gets.load(Ordering::Relaxed), 1);
/// aioloop::set_event_loop(None).unwrap();
/// lp.close().unwrap();
/// aioloop::set_event_loop_policy(None); // back to the default
/// ```
pub trait EventLoopPolicy: Any + Send + Sync {
    /// The loop of the current context.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoCurrentLoop`] when none was set (Python 3.14: it is
    /// never created implicitly).
    fn get_event_loop(&self) -> Result<EventLoop, Error>;

    /// Makes `event_loop` the current context's loop; `None` clears it.
    ///
    /// # Errors
    ///
    /// When the current context cannot be named (for example
    /// [`ErrorKind::NoContext`] outside any host context).
    fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error>;

    /// A new loop. It is not made current.
    ///
    /// # Errors
    ///
    /// Only when the backend cannot start.
    fn new_event_loop(&self) -> Result<EventLoop, Error>;
}

impl dyn EventLoopPolicy {
    /// The policy as a concrete type, if it is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::DefaultEventLoopPolicy;
    ///
    /// let policy = aioloop::get_event_loop_policy();
    /// assert!(policy.downcast_ref::<DefaultEventLoopPolicy>().is_some());
    /// ```
    pub fn downcast_ref<T: EventLoopPolicy>(&self) -> Option<&T> {
        let any: &dyn Any = self;
        any.downcast_ref::<T>()
    }
}

impl fmt::Debug for dyn EventLoopPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn EventLoopPolicy")
    }
}

// ---------------------------------------------------------------------------
// ContextPolicy

static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's slots: policy id -> (context id -> loop), type-erased.
    static SLOTS: RefCell<HashMap<u64, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// A policy keyed by any [`Context`]: one current loop per context id (per
/// thread, since loops are single-threaded).
///
/// Every instance has its own slots: two policies never see each other's
/// loops. Slots live in thread-local storage (a loop can only run on its own
/// thread): dropping a policy clears the dropping thread's slots at once;
/// loops it holds for other threads are released when those threads exit or
/// clear them with `set_event_loop(None)`.
///
/// # Examples
///
/// ```
/// use aioloop::{ContextPolicy, EventLoopPolicy, TaskContext};
///
/// let policy = ContextPolicy::new(TaskContext);
/// let lp = policy.new_event_loop().unwrap();
/// policy.set_event_loop(Some(lp.clone())).unwrap();
/// assert_eq!(policy.get_event_loop().unwrap(), lp);
/// # lp.close().unwrap();
/// ```
pub struct ContextPolicy<C: Context> {
    context: C,
    id: u64,
    backend: Backend,
}

impl<C: Context> ContextPolicy<C> {
    /// A policy keyed by `context`, making loops on the default backend.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = aioloop::ContextPolicy::new(aioloop::HostContext);
    /// # drop(policy);
    /// ```
    pub fn new(context: C) -> ContextPolicy<C> {
        ContextPolicy {
            context,
            id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
            backend: Backend::Auto,
        }
    }

    /// Makes `new_event_loop` use `backend`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Backend, ContextPolicy, EventLoopPolicy, ThreadContext};
    ///
    /// let policy = ContextPolicy::new(ThreadContext).with_backend(Backend::Selector);
    /// let lp = policy.new_event_loop().unwrap();
    /// assert_eq!(lp.backend(), Backend::Selector);
    /// # lp.close().unwrap();
    /// ```
    pub fn with_backend(mut self, backend: Backend) -> ContextPolicy<C> {
        self.backend = backend;
        self
    }

    /// The context this policy keys loops by.
    ///
    /// # Examples
    ///
    /// ```
    /// let policy = aioloop::ContextPolicy::new(aioloop::ThreadContext);
    /// let _ctx: &aioloop::ThreadContext = policy.context();
    /// ```
    pub fn context(&self) -> &C {
        &self.context
    }

    fn with_slots<R>(&self, f: impl FnOnce(&mut HashMap<C::Id, EventLoop>) -> R) -> R {
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            let map = slots
                .entry(self.id)
                .or_insert_with(|| Box::new(HashMap::<C::Id, EventLoop>::new()));
            match map.downcast_mut::<HashMap<C::Id, EventLoop>>() {
                Some(map) => f(map),
                // Ids are unique per policy, so the type always matches.
                None => f(&mut HashMap::new()),
            }
        })
    }
}

impl<C: Context> EventLoopPolicy for ContextPolicy<C> {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        let id = self.context.current_id()?;
        self.with_slots(|m| m.get(&id).cloned()).ok_or_else(|| {
            Error::new(
                ErrorKind::NoCurrentLoop,
                format!(
                    "There is no current event loop in {}: create one with aioloop::new_event_loop() \
                     and make it current with aioloop::set_event_loop(Some(lp)), or run your main \
                     future with aioloop::run()",
                    self.context.describe(&id)
                ),
            )
        })
    }

    fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error> {
        let id = self.context.current_id()?;
        let old = self.with_slots(|m| match event_loop {
            Some(lp) => m.insert(id, lp),
            None => m.remove(&id),
        });
        drop(old);
        Ok(())
    }

    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        EventLoop::builder().backend(self.backend).build()
    }
}

impl<C: Context> Drop for ContextPolicy<C> {
    fn drop(&mut self) {
        let id = self.id;
        let old = SLOTS.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.remove(&id)));
        drop(old);
    }
}

impl<C: Context + fmt::Debug> fmt::Debug for ContextPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextPolicy")
            .field("context", &self.context)
            .field("backend", &self.backend)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Built-in thread-keyed policies

macro_rules! thread_policy {
    ($(#[$doc:meta])* $name:ident, $backend:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            inner: ContextPolicy<ThreadContext>,
        }

        impl $name {
            /// A policy with its own, empty per-thread slots.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let policy = aioloop::", stringify!($name), "::new();")]
            /// # drop(policy);
            /// ```
            pub fn new() -> $name {
                $name {
                    inner: ContextPolicy::new(ThreadContext).with_backend($backend),
                }
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name::new()
            }
        }

        impl EventLoopPolicy for $name {
            fn get_event_loop(&self) -> Result<EventLoop, Error> {
                self.inner.get_event_loop()
            }
            fn set_event_loop(&self, event_loop: Option<EventLoop>) -> Result<(), Error> {
                self.inner.set_event_loop(event_loop)
            }
            fn new_event_loop(&self) -> Result<EventLoop, Error> {
                self.inner.new_event_loop()
            }
        }
    };
}

thread_policy! {
    /// The default policy: one current loop per thread, loops on the
    /// platform's default backend ([`Backend::Auto`]: io_uring on Linux when the
    /// kernel allows it, else the selector; the IOCP proactor on Windows, as
    /// asyncio since Python 3.8; the host-driven wasm backend on wasm32;
    /// `AIOLOOP_BACKEND` overrides it natively).
    ///
    /// As in Python 3.14, [`get_event_loop`](EventLoopPolicy::get_event_loop)
    /// never creates a loop: it errors until one is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{DefaultEventLoopPolicy, ErrorKind, EventLoopPolicy};
    ///
    /// let policy = DefaultEventLoopPolicy::new();
    /// assert_eq!(policy.get_event_loop().unwrap_err().kind(), ErrorKind::NoCurrentLoop);
    /// let lp = policy.new_event_loop().unwrap();
    /// policy.set_event_loop(Some(lp.clone())).unwrap();
    /// assert_eq!(policy.get_event_loop().unwrap(), lp);
    /// # lp.close().unwrap();
    /// ```
    DefaultEventLoopPolicy, Backend::Auto
}

#[cfg(not(target_arch = "wasm32"))]
thread_policy! {
    /// Like [`DefaultEventLoopPolicy`], but its loops always use the selector
    /// backend (asyncio's `SelectorEventLoop`).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Backend, EventLoopPolicy, SelectorEventLoopPolicy};
    ///
    /// let lp = SelectorEventLoopPolicy::new().new_event_loop().unwrap();
    /// assert_eq!(lp.backend(), Backend::Selector);
    /// # lp.close().unwrap();
    /// ```
    SelectorEventLoopPolicy, Backend::Selector
}

#[cfg(not(target_arch = "wasm32"))]
thread_policy! {
    /// Like [`DefaultEventLoopPolicy`], but its loops always use the proactor
    /// backend (asyncio's `ProactorEventLoop`): io_uring on Linux, IOCP on
    /// Windows. Where the kernel refuses io_uring (or on a platform without a
    /// proactor), `new_event_loop` returns an
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) error naming
    /// the cause instead of falling back.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Backend, ErrorKind, EventLoopPolicy, ProactorEventLoopPolicy};
    ///
    /// match ProactorEventLoopPolicy::new().new_event_loop() {
    ///     Ok(lp) => {
    ///         assert_eq!(lp.backend(), Backend::Proactor);
    ///         lp.close().unwrap();
    ///     }
    ///     Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported),
    /// }
    /// ```
    ProactorEventLoopPolicy, Backend::Proactor
}

#[cfg(windows)]
thread_policy! {
    /// Windows only: loops on the selector backend (mio over AFD socket
    /// polls), as asyncio's `WindowsSelectorEventLoopPolicy`. Sockets,
    /// protocols and timers work as on the proactor; pick it when a library
    /// needs readiness semantics.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Backend, EventLoopPolicy, WindowsSelectorEventLoopPolicy};
    ///
    /// aioloop::set_event_loop_policy(Some(std::sync::Arc::new(WindowsSelectorEventLoopPolicy::new())));
    /// let lp = aioloop::new_event_loop().unwrap();
    /// assert_eq!(lp.backend(), Backend::Selector);
    /// # lp.close().unwrap();
    /// # aioloop::set_event_loop_policy(None);
    /// ```
    WindowsSelectorEventLoopPolicy, Backend::Selector
}

#[cfg(windows)]
thread_policy! {
    /// Windows only: loops on the proactor backend (an I/O completion port),
    /// as asyncio's `WindowsProactorEventLoopPolicy`. This is what
    /// [`DefaultEventLoopPolicy`] does on Windows unless `AIOLOOP_BACKEND`
    /// says otherwise; this policy ignores the variable.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Backend, EventLoopPolicy, WindowsProactorEventLoopPolicy};
    ///
    /// let policy = WindowsProactorEventLoopPolicy::new();
    /// let lp = policy.new_event_loop().unwrap();
    /// assert_eq!(lp.backend(), Backend::Proactor);
    /// let echoed = lp
    ///     .run_until_complete(async {
    ///         let sock = aioloop::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///         sock.connect(sock.local_addr().unwrap()).unwrap();
    ///         sock.send(b"ping").await.unwrap();
    ///         let mut buf = [0; 8];
    ///         let n = sock.recv(&mut buf).await.unwrap();
    ///         buf[..n].to_vec()
    ///     })
    ///     .unwrap();
    /// assert_eq!(echoed, b"ping");
    /// # lp.close().unwrap();
    /// ```
    WindowsProactorEventLoopPolicy, Backend::Proactor
}

// ---------------------------------------------------------------------------
// The process-wide slot and module-level helpers

static POLICY: RwLock<Option<Arc<dyn EventLoopPolicy>>> = RwLock::new(None);

/// The process-wide policy; the same instance until it is replaced.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// let a = aioloop::get_event_loop_policy();
/// let b = aioloop::get_event_loop_policy();
/// assert!(Arc::ptr_eq(&a, &b));
/// ```
pub fn get_event_loop_policy() -> Arc<dyn EventLoopPolicy> {
    if let Some(p) = POLICY.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return p.clone();
    }
    POLICY
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| Arc::new(DefaultEventLoopPolicy::new()))
        .clone()
}

/// Replaces the process-wide policy; `None` restores a fresh
/// [`DefaultEventLoopPolicy`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use aioloop::{ContextPolicy, HostContext};
///
/// aioloop::set_event_loop_policy(Some(Arc::new(ContextPolicy::new(HostContext))));
/// aioloop::set_event_loop_policy(None);
/// assert!(aioloop::get_event_loop_policy()
///     .downcast_ref::<aioloop::DefaultEventLoopPolicy>()
///     .is_some());
/// ```
pub fn set_event_loop_policy(policy: Option<Arc<dyn EventLoopPolicy>>) {
    let old = std::mem::replace(
        &mut *POLICY.write().unwrap_or_else(|p| p.into_inner()),
        policy,
    );
    drop(old);
}

/// The running loop if there is one; otherwise the policy's current loop
/// (`asyncio.get_event_loop`).
///
/// # Errors
///
/// [`ErrorKind::NoCurrentLoop`] outside a running loop when the policy has
/// none set for this context.
///
/// # Examples
///
/// ```
/// let lp = aioloop::new_event_loop().unwrap();
/// let l2 = lp.clone();
/// // Inside a running loop, the running loop wins.
/// let same = lp.run_until_complete(async move { aioloop::get_event_loop().unwrap() == l2 }).unwrap();
/// assert!(same);
/// lp.close().unwrap();
/// ```
pub fn get_event_loop() -> Result<EventLoop, Error> {
    match crate::event_loop::running_loop() {
        Some(lp) => Ok(lp),
        None => get_event_loop_policy().get_event_loop(),
    }
}

/// Makes `event_loop` current for this context through the policy; `None`
/// clears it.
///
/// # Errors
///
/// As the policy's [`set_event_loop`](EventLoopPolicy::set_event_loop).
///
/// # Examples
///
/// ```
/// let lp = aioloop::new_event_loop().unwrap();
/// aioloop::set_event_loop(Some(lp.clone())).unwrap();
/// assert_eq!(aioloop::get_event_loop().unwrap(), lp);
/// aioloop::set_event_loop(None).unwrap();
/// lp.close().unwrap();
/// ```
pub fn set_event_loop(event_loop: Option<EventLoop>) -> Result<(), Error> {
    get_event_loop_policy().set_event_loop(event_loop)
}

/// A new loop from the policy (not made current).
///
/// # Errors
///
/// Only when the backend cannot start.
///
/// # Examples
///
/// ```
/// let lp = aioloop::new_event_loop().unwrap();
/// lp.close().unwrap();
/// ```
pub fn new_event_loop() -> Result<EventLoop, Error> {
    get_event_loop_policy().new_event_loop()
}

/// The loop running on this thread (`asyncio.get_running_loop`).
///
/// # Errors
///
/// [`ErrorKind::NoRunningLoop`] outside a running loop.
///
/// # Examples
///
/// ```
/// assert!(aioloop::get_running_loop().is_err());
/// aioloop::run(async {
///     assert!(aioloop::get_running_loop().unwrap().is_running());
/// })
/// .unwrap();
/// ```
pub fn get_running_loop() -> Result<EventLoop, Error> {
    crate::event_loop::running_loop().ok_or_else(|| {
        Error::new(
            ErrorKind::NoRunningLoop,
            "no running event loop: get_running_loop() works only inside a callback or task \
             running on an aioloop EventLoop; outside one, use get_event_loop() or aioloop::run()",
        )
    })
}
