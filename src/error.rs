//! The one error type of the crate: [`Error`] with a [`ErrorKind`].

use std::borrow::Cow;
use std::fmt;
use std::io;

/// What went wrong, in a form a program can match on.
///
/// The list grows as the runtime grows, so it is `#[non_exhaustive]`: keep a
/// `_ =>` arm when you match on it.
///
/// # Examples
///
/// ```
/// use aioloop::{get_running_loop, ErrorKind};
///
/// let err = get_running_loop().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NoRunningLoop);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The policy has no event loop set for the current context
    /// (Python 3.14's `get_event_loop()` `RuntimeError`).
    NoCurrentLoop,
    /// `get_running_loop()` was called outside a running loop.
    NoRunningLoop,
    /// The loop (or another loop on this thread) is already running.
    AlreadyRunning,
    /// The loop, the runner or the executor is closed.
    Closed,
    /// The task or operation was cancelled.
    Cancelled,
    /// A callback, task or executor job panicked.
    Panicked,
    /// A deadline passed before the work finished (`timeout` / `wait_for`).
    TimedOut,
    /// `stop()` ended `run_until_complete` before its future finished.
    Stopped,
    /// The program was interrupted (SIGINT / Ctrl-C) while `run()` ran its
    /// main future, which was cancelled (asyncio raises `KeyboardInterrupt`).
    Interrupted,
    /// The current context has no id (for example no host context was entered).
    NoContext,
    /// The argument is not acceptable; the message says why.
    InvalidInput,
    /// The operation does not exist on this platform or backend.
    Unsupported,
    /// An operating system error; [`std::error::Error::source`] holds the
    /// [`io::Error`].
    Io,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoCurrentLoop => "no current event loop",
            ErrorKind::NoRunningLoop => "no running event loop",
            ErrorKind::AlreadyRunning => "already running",
            ErrorKind::Closed => "closed",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Panicked => "panicked",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::NoContext => "no context",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "I/O error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned by every fallible aioloop operation.
///
/// It carries a [`kind`](Error::kind) to match on and a message written for
/// the person reading the log: it says what happened and what to do next.
///
/// # Examples
///
/// ```
/// use aioloop::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::InvalidInput, "the delay must be finite");
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert_eq!(err.to_string(), "the delay must be finite");
/// ```
#[derive(Clone)]
pub struct Error {
    // Boxed: a `Result<T, Error>` stays one word bigger than `T`, which keeps
    // every task's output slot small.
    repr: Box<Repr>,
}

#[derive(Clone)]
struct Repr {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<std::sync::Arc<io::Error>>,
    /// Already given to an exception handler: do not report it again.
    reported: bool,
    /// Where the failed task was created (debug mode only).
    location: Option<&'static std::panic::Location<'static>>,
}

impl Error {
    /// Creates an error of `kind` with a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind};
    /// let err = Error::new(ErrorKind::Unsupported, "no signals on this platform");
    /// assert!(err.to_string().contains("signals"));
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            repr: Box::new(Repr {
                kind,
                message: message.into(),
                source: None,
                reported: false,
                location: None,
            }),
        }
    }

    /// What kind of error this is.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Closed, "closed").kind(), ErrorKind::Closed);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.repr.kind
    }

    /// Whether this is a cancellation ([`ErrorKind::Cancelled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind};
    /// assert!(Error::new(ErrorKind::Cancelled, "cancelled").is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.repr.kind == ErrorKind::Cancelled
    }

    /// Whether this reports a panic ([`ErrorKind::Panicked`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind};
    /// assert!(Error::new(ErrorKind::Panicked, "boom").is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        self.repr.kind == ErrorKind::Panicked
    }

    /// The message, without the kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Closed, "gone").message(), "gone");
    /// ```
    pub fn message(&self) -> &str {
        &self.repr.message
    }

    /// The operating system error behind an [`ErrorKind::Io`] error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind};
    /// let err = Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
    /// assert_eq!(err.kind(), ErrorKind::Io);
    /// assert_eq!(err.io_error().unwrap().kind(), std::io::ErrorKind::BrokenPipe);
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        self.repr.source.as_deref()
    }

    pub(crate) fn io(context: impl fmt::Display, err: io::Error) -> Error {
        // An aioloop error carried through an `io::Error` (a closed loop seen
        // by an I/O object) keeps its own kind.
        if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            if inner.kind() != ErrorKind::Io {
                return inner.clone();
            }
        }
        Error {
            repr: Box::new(Repr {
                kind: ErrorKind::Io,
                message: format!("{context}: {err}").into(),
                source: Some(std::sync::Arc::new(err)),
                reported: false,
                location: None,
            }),
        }
    }

    pub(crate) fn is_reported(&self) -> bool {
        self.repr.reported
    }

    pub(crate) fn mark_reported(&mut self) {
        self.repr.reported = true;
    }

    pub(crate) fn set_location(&mut self, location: &'static std::panic::Location<'static>) {
        self.repr.location = Some(location);
    }

    pub(crate) fn location(&self) -> Option<&'static std::panic::Location<'static>> {
        self.repr.location
    }

    pub(crate) fn closed() -> Error {
        Error::new(
            ErrorKind::Closed,
            "Event loop is closed: create a new one with aioloop::new_event_loop() or use aioloop::run()",
        )
    }

    pub(crate) fn cancelled() -> Error {
        Error::new(ErrorKind::Cancelled, "the task was cancelled")
    }

    pub(crate) fn from_panic(what: &str, payload: &(dyn std::any::Any + Send)) -> Error {
        Error::new(
            ErrorKind::Panicked,
            format!("{what} panicked: {}", panic_message(payload)),
        )
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.repr.kind)
            .field("message", &self.repr.message);
        if let Some(src) = &self.repr.source {
            d.field("source", src);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.repr
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::io("I/O error", err)
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.repr.kind {
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::Io => err
                .repr
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, |e| e.kind()),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}
