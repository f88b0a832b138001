use std::thread::{self, ThreadId};

use super::Context;
use crate::Error;

/// Loops keyed by the calling thread: asyncio's default.
///
/// # Examples
///
/// ```
/// use aioloop::{Context, ThreadContext};
///
/// let id = ThreadContext.current_id().unwrap();
/// assert_eq!(id, std::thread::current().id());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadContext;

impl Context for ThreadContext {
    type Id = ThreadId;

    fn current_id(&self) -> Result<ThreadId, Error> {
        Ok(thread::current().id())
    }

    fn describe(&self, id: &ThreadId) -> String {
        let current = thread::current();
        if current.id() == *id {
            match current.name() {
                Some(name) => format!("thread '{name}'"),
                None => format!("thread {id:?}"),
            }
        } else {
            format!("thread {id:?}")
        }
    }
}
