//! The exception handler: where panics in callbacks and tasks are reported.

use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use crate::{Error, EventLoop};

/// A handler installed with [`EventLoop::set_exception_handler`].
pub type ExceptionHandler = Rc<dyn Fn(&EventLoop, &ExceptionContext)>;

/// What is reported to the exception handler (asyncio's `context` dict).
///
/// # Examples
///
/// ```
/// use aioloop::{Error, ErrorKind, ExceptionContext};
///
/// let ctx = ExceptionContext::new("something failed")
///     .with_error(Error::new(ErrorKind::Io, "disk on fire"));
/// assert_eq!(ctx.message, "something failed");
/// assert_eq!(ctx.error.unwrap().kind(), ErrorKind::Io);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExceptionContext {
    /// What happened, for humans ("Exception in callback", "Task panicked", …).
    pub message: String,
    /// The error, if there is one.
    pub error: Option<Error>,
    /// Where the failing callback or task was scheduled (`call_soon`,
    /// `create_task`…), when known.
    pub location: Option<&'static Location<'static>>,
}

impl ExceptionContext {
    /// A context with a message only.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = aioloop::ExceptionContext::new("hello");
    /// assert!(ctx.error.is_none());
    /// ```
    pub fn new(message: impl Into<String>) -> ExceptionContext {
        ExceptionContext {
            message: message.into(),
            error: None,
            location: None,
        }
    }

    /// Adds the error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind, ExceptionContext};
    /// let ctx = ExceptionContext::new("m").with_error(Error::new(ErrorKind::Closed, "c"));
    /// assert!(ctx.error.is_some());
    /// ```
    pub fn with_error(mut self, error: Error) -> ExceptionContext {
        self.error = Some(error);
        self
    }

    /// Adds where the failing work was scheduled.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = aioloop::ExceptionContext::new("m").with_location(std::panic::Location::caller());
    /// assert!(ctx.location.is_some());
    /// ```
    pub fn with_location(mut self, location: &'static Location<'static>) -> ExceptionContext {
        self.location = Some(location);
        self
    }
}

impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        if let Some(loc) = self.location {
            write!(f, " (scheduled at {loc})")?;
        }
        Ok(())
    }
}
