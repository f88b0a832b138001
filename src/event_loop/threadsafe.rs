//! The thread-safe side of a loop: [`ThreadsafeHandle`] and the remote queue.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

use crate::backend::Notifier;
use crate::task::Runnable;
use crate::Error;

pub(crate) enum RemoteItem {
    Callback(Box<dyn FnOnce() + Send>, &'static Location<'static>),
    Task(Runnable),
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // no run_until_complete there
    Main,
    Stop,
}

/// What other threads (and wakers) share with a loop.
pub(crate) struct Remote {
    queue: Mutex<RemoteQueue>,
    /// Set when the queue has items the loop has not drained yet; the notifier
    /// is signalled only on its false -> true edge.
    pending: AtomicBool,
    notifier: Arc<Notifier>,
    owner: ThreadId,
}

struct RemoteQueue {
    items: Vec<RemoteItem>,
    closed: bool,
}

impl Remote {
    pub(crate) fn new(notifier: Arc<Notifier>) -> Remote {
        Remote {
            queue: Mutex::new(RemoteQueue {
                items: Vec::new(),
                closed: false,
            }),
            pending: AtomicBool::new(false),
            notifier,
            owner: thread::current().id(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RemoteQueue> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` and wakes the loop; hands the item back if the loop is
    /// closed.
    pub(crate) fn push(&self, item: RemoteItem) -> Result<(), RemoteItem> {
        {
            let mut q = self.lock();
            if q.closed {
                return Err(item);
            }
            q.items.push(item);
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.notifier.notify() {
                log::error!("aioloop: could not wake the event loop: {e}");
            }
        }
        Ok(())
    }

    /// Queues a task woken off the loop (another thread, or the loop's thread
    /// while it is not running).
    pub(crate) fn push_task(&self, runnable: Runnable) {
        if let Err(RemoteItem::Task(runnable)) = self.push(RemoteItem::Task(runnable)) {
            // The loop is closed. On its own thread the task runs one last
            // step, which ends it with `Closed` without polling its future.
            // A local task may not be touched on another thread: there it is
            // leaked rather than dropped unsoundly.
            if thread::current().id() == self.owner {
                runnable.run();
            } else {
                std::mem::forget(runnable);
            }
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes everything queued so far.
    pub(crate) fn drain(&self, into: &mut Vec<RemoteItem>) {
        if self.pending.swap(false, Ordering::AcqRel) {
            into.append(&mut self.lock().items);
        }
    }

    /// Refuses further items and returns those still queued.
    pub(crate) fn close(&self) -> Vec<RemoteItem> {
        let mut q = self.lock();
        q.closed = true;
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut q.items)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// A `Send + Sync` handle to a loop, for other threads: schedule a callback
/// (`call_soon_threadsafe`) or stop the loop. Either wakes a loop that is
/// sleeping in its backend.
///
/// # Examples
///
/// ```
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let ts = lp.threadsafe();
/// let worker = std::thread::spawn(move || {
///     ts.call_soon_threadsafe(|| println!("hello from the loop thread")).unwrap();
///     ts.stop();
/// });
/// lp.run_forever().unwrap(); // returns once the worker's stop() arrives
/// worker.join().unwrap();
/// lp.close().unwrap();
/// ```
#[derive(Clone)]
pub struct ThreadsafeHandle {
    pub(crate) remote: Arc<Remote>,
}

impl ThreadsafeHandle {
    /// Schedules `f` to run on the loop's thread, in a later iteration, and
    /// wakes the loop.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) once the loop is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let ts = lp.threadsafe();
    /// std::thread::spawn(move || ts.call_soon_threadsafe(|| {}).unwrap()).join().unwrap();
    /// # lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        self.remote
            .push(RemoteItem::Callback(Box::new(f), Location::caller()))
            .map_err(|_| Error::closed())
    }

    /// Asks the loop to stop after its current iteration, as
    /// [`EventLoop::stop`](crate::EventLoop::stop); does nothing on a closed loop.
    ///
    /// # Examples
    ///
    /// ```
    /// # let lp = aioloop::EventLoop::new().unwrap();
    /// let ts = lp.threadsafe();
    /// std::thread::spawn(move || ts.stop()).join().unwrap();
    /// lp.run_forever().unwrap();
    /// # lp.close().unwrap();
    /// ```
    pub fn stop(&self) {
        let _ = self.remote.push(RemoteItem::Stop);
    }

    /// Whether the loop has been closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let ts = lp.threadsafe();
    /// lp.close().unwrap();
    /// assert!(ts.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.remote.is_closed()
    }
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadsafeHandle")
            .field("closed", &self.is_closed())
            .finish()
    }
}
