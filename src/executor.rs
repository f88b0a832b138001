//! The default executor: a lazily started, bounded thread pool for blocking
//! work (`run_in_executor`).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};

use futures::channel::oneshot;

use crate::{Error, ErrorKind};

type Job = Box<dyn FnOnce() + Send>;

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    max_threads: usize,
}

struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: Vec<JoinHandle<()>>,
    shutdown: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned lock still holds valid state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Executor {
    shared: Arc<Shared>,
}

impl Executor {
    pub(crate) fn new(max_threads: usize) -> Executor {
        Executor {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: Vec::new(),
                    shutdown: false,
                }),
                work: Condvar::new(),
                max_threads,
            }),
        }
    }

    pub(crate) fn submit<F, R>(&self, f: F) -> ExecutorFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f))
                .map_err(|p| Error::from_panic("an executor job", &*p));
            let _ = tx.send(r);
        });
        let mut st = self.shared.lock();
        if st.shutdown {
            return ExecutorFuture::failed(executor_closed());
        }
        st.jobs.push_back(job);
        if st.idle > 0 {
            self.shared.work.notify_one();
        } else if st.threads.len() < self.shared.max_threads {
            let shared = self.shared.clone();
            let n = st.threads.len();
            match thread::Builder::new()
                .name(format!("aioloop-executor-{n}"))
                .spawn(move || worker(shared))
            {
                Ok(handle) => st.threads.push(handle),
                Err(e) if st.threads.is_empty() => {
                    drop(st.jobs.pop_back());
                    return ExecutorFuture::failed(Error::io(
                        "could not start an executor thread",
                        e,
                    ));
                }
                // Others will pick the job up.
                Err(_) => {}
            }
        }
        ExecutorFuture {
            state: FutState::Waiting(rx),
        }
    }

    /// Refuses new work; queued jobs still run; does not wait.
    pub(crate) fn shutdown(&self) -> Vec<JoinHandle<()>> {
        let mut st = self.shared.lock();
        st.shutdown = true;
        let threads = std::mem::take(&mut st.threads);
        drop(st);
        self.shared.work.notify_all();
        threads
    }

    /// Refuses new work and resolves once every thread has exited.
    pub(crate) fn shutdown_and_join(self) -> ExecutorFuture<()> {
        let threads = self.shutdown();
        if threads.is_empty() {
            return ExecutorFuture::ready(());
        }
        let (tx, rx) = oneshot::channel();
        let joiner = thread::Builder::new()
            .name("aioloop-executor-join".into())
            .spawn(move || {
                let mut panicked = false;
                for t in threads {
                    panicked |= t.join().is_err();
                }
                let _ = tx.send(if panicked {
                    Err(Error::new(
                        ErrorKind::Panicked,
                        "an executor thread panicked",
                    ))
                } else {
                    Ok(())
                });
            });
        match joiner {
            Ok(_) => ExecutorFuture {
                state: FutState::Waiting(rx),
            },
            Err(e) => ExecutorFuture::failed(Error::io("could not start the executor joiner", e)),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker(shared: Arc<Shared>) {
    let mut st = shared.lock();
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = shared.lock();
            continue;
        }
        if st.shutdown {
            return;
        }
        st.idle += 1;
        st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
        st.idle -= 1;
    }
}

fn executor_closed() -> Error {
    Error::new(
        ErrorKind::Closed,
        "the loop's default executor is shut down (the loop was closed or shutdown_default_executor was called)",
    )
}

enum FutState<R> {
    Waiting(oneshot::Receiver<Result<R, Error>>),
    Done(Option<Result<R, Error>>),
}

/// The future returned by
/// [`EventLoop::run_in_executor`](crate::EventLoop::run_in_executor): the
/// job's result, [`ErrorKind::Panicked`] if it panicked, or
/// [`ErrorKind::Closed`] if the executor shut down before running it.
///
/// Dropping it does not stop a job that already started.
///
/// # Examples
///
/// ```
/// let lp = aioloop::EventLoop::new().unwrap();
/// let r = lp.run_until_complete(lp.run_in_executor(|| panic!("oops"))).unwrap();
/// assert!(r.unwrap_err().is_panic());
/// # lp.close().unwrap();
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct ExecutorFuture<R> {
    state: FutState<R>,
}

impl<R> ExecutorFuture<R> {
    pub(crate) fn failed(err: Error) -> ExecutorFuture<R> {
        ExecutorFuture {
            state: FutState::Done(Some(Err(err))),
        }
    }

    pub(crate) fn ready(v: R) -> ExecutorFuture<R> {
        ExecutorFuture {
            state: FutState::Done(Some(Ok(v))),
        }
    }
}

impl<R> Future for ExecutorFuture<R> {
    type Output = Result<R, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, Error>> {
        match &mut self.state {
            FutState::Done(v) => Poll::Ready(v.take().unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::InvalidInput,
                    "an executor future was polled after it completed",
                ))
            })),
            FutState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    self.state = FutState::Done(None);
                    Poll::Ready(r.unwrap_or_else(|_| Err(executor_closed())))
                }
            },
        }
    }
}

impl<R> Unpin for ExecutorFuture<R> {}

impl<R> fmt::Debug for ExecutorFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = matches!(self.state, FutState::Done(_));
        f.debug_struct("ExecutorFuture")
            .field("done", &done)
            .finish()
    }
}
